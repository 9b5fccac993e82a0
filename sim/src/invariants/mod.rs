//! The invariants, one per file, checked after every step of the world
//! (convergence is checked once, after the faults have stopped and healed
//! and the writes have stopped).

pub mod acked_epochs;
pub mod convergence;
pub mod log_monotonic;
pub mod master_has_acked;
pub mod no_lost_write;
pub mod one_creation;
pub mod one_master;
pub mod published_version;

use crate::world::World;
use crate::Violation;

pub fn check_step(w: &mut World) -> Result<(), Violation> {
    one_master::check(w)?;
    master_has_acked::check(w)?;
    no_lost_write::check(w)?;
    one_creation::check(w)?;
    log_monotonic::check(w)?;
    published_version::check(w)?;
    acked_epochs::check(w)
}

pub(crate) fn violation(w: &World, invariant: &'static str, detail: String) -> Violation {
    Violation {
        invariant,
        seed: w.seed,
        at_ms: w.now / crate::world::MS,
        detail,
    }
}
