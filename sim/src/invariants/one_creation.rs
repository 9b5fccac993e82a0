//! (8) Once a base is deleted and created again (fault 14), no replica of
//! the old creation acknowledges a write sent to the new one. Such a write
//! would be void: it lives in a replica that is set aside as soon as its
//! service reads the directory, and the client would never see it again.
//!
//! A write acknowledged by the creation it was sent to is fine (should that
//! creation be deleted meanwhile, the write was concurrent with the deletion
//! and went with it), and so is one acknowledged by the creation current
//! when it was acknowledged (it was sent before the base was created again
//! and is ordered after). Checked for each write acknowledged in the step.

use super::violation;
use crate::world::World;
use crate::Violation;

pub fn check(w: &World) -> Result<(), Violation> {
    for &i in &w.new_acks {
        let a = &w.acked[i];
        if a.creation != a.sent_to && !w.current(a) {
            return Err(violation(
                w,
                "a write is acknowledged by the creation it was sent to",
                format!(
                    "base{}: write {} sent to creation {} was acknowledged by svc{} (epoch {}) from a replica of creation {}\n{}",
                    a.base,
                    a.wid,
                    a.sent_to,
                    a.master,
                    a.epoch,
                    a.creation,
                    w.describe(a.base)
                ),
            ));
        }
    }
    Ok(())
}
