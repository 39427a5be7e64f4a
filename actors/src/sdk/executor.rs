//! Executor driver (to be written).
