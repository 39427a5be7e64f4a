//! DRF allocator (to be written).
pub struct DrfAllocator;
