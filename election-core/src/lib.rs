//! The pure core of the election service.
//!
//! Nothing here does I/O, reads a clock or draws random numbers: the server's
//! driver feeds [`Election::handle`] with the current time and an [`Event`],
//! executes the returned [`Action`]s in order and turns their results into
//! new events.
//!
//! - [`names`]: container ids, base names, election keys and ZooKeeper paths
//!   (bit-compatible with OpenIO SDS).
//! - [`version`]: version vectors of a base replica and their comparison.
//! - [`state`]: the 18 states, the events (OpenIO's names) and the actions.
//! - [`log`]: the bounded transition log (`<ms>:<PRE>:<EVENT>:<POST>`).
//! - [`maybe`]: optional integers in the integer's own size.
//! - [`election`]: the state machine itself, with its timers and retry budgets.
//! - [`peer`]: the driver's pure decisions (master node, GETVERS outcome,
//!   a slave's verdict on a replicated write), shared with the simulation.

pub mod election;
pub mod log;
pub mod maybe;
pub mod names;
pub mod peer;
pub mod state;
pub mod version;

pub use election::{Config, Election, Now};
pub use state::{Action, Event, GetversOutcome, MasterBadReason, OpId, State};
