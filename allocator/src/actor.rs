//! The allocator actor shell (to be written).
pub struct AllocatorActor;
pub struct Allocations;
pub struct AllocatorConfig;
