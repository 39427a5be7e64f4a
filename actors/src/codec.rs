//! The wire codec: bincode (serde) behind one module, so swapping it stays a one-file change.
//! (Filled in by the transport work.)
