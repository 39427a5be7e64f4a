//! Executor driver (being written).
