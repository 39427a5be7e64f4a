//! Scheduler driver (to be written).
