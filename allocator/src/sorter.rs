//! Sorters (to be written).
