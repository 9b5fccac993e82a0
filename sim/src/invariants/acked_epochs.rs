//! No two acknowledged writes of one base under different masters with
//! overlapping epochs: when a write is acknowledged under an older epoch
//! after writes of a newer epoch were acknowledged (a master that resumes
//! after a pause and finishes a write its slaves applied before the
//! election), it must already precede those writes in the base's history.
//! One epoch also belongs to one master.

use super::violation;
use crate::world::World;
use crate::Violation;
use election_core::names::seq_after;

pub fn check(w: &World) -> Result<(), Violation> {
    for &i in &w.new_acks {
        let last = &w.acked[i];
        let earlier = w.acked[..i].iter().filter(|a| a.base == last.base);
        for a in earlier {
            let bad = if a.epoch == last.epoch {
                a.master != last.master
            } else if seq_after(a.epoch, last.epoch) {
                // Some replica must hold both, the older epoch's write first.
                !w.svcs.iter().any(|x| {
                    let h = &x.replicas[last.base].writes;
                    let pos = |wid| h.iter().position(|v| *v == wid);
                    matches!((pos(last.wid), pos(a.wid)), (Some(o), Some(n)) if o < n)
                })
            } else {
                false
            };
            if bad {
                return Err(violation(
                    w,
                    "acknowledged epochs do not overlap",
                    format!(
                        "base{}: write {} acknowledged by svc{} at epoch {} after write {} by svc{} at epoch {}, and no replica holds it before that write\n{}",
                        last.base,
                        last.wid,
                        last.master,
                        last.epoch,
                        a.wid,
                        a.master,
                        a.epoch,
                        w.describe(last.base)
                    ),
                ));
            }
        }
    }
    Ok(())
}
