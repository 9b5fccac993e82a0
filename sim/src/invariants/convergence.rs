//! (5) Once faults stop and heal, every base reaches one MASTER, holding the
//! lowest node, and SLAVEs that name it, within the run's settle bound.

use super::violation;
use crate::world::World;
use crate::Violation;

pub fn check(w: &World) -> Result<(), Violation> {
    w.converged()
        .map_err(|detail| violation(w, "convergence after faults", detail))
}
