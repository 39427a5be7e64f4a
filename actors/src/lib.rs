//! agora-actors: what every agora node shares — typed ids, the resource algebra, the messages,
//! the codec, the transports (TCP and in-memory) and the framework SDK.

pub mod codec;
pub mod constraints;
pub mod ids;
pub mod messages;
pub mod metrics;
pub mod resources;
pub mod sdk;
pub mod time;
pub mod transport;

pub use constraints::{AttributeConstraint, OfferFilters};
pub use ids::*;
pub use messages::*;
pub use resources::{Milli, Ranges, ResourceError, Resources};
pub use time::Time;
