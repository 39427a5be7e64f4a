//! In-memory transport (to be written).
