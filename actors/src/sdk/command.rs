//! Command executor (being written).
