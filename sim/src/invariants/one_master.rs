//! (1) At most one MASTER per base among services whose ZooKeeper session is
//! live, whose election is bound to their current session, and whose node
//! still exists. A master whose node is already gone but who has not heard
//! yet is the window the write fencing covers: see `acked_epochs` and
//! `no_lost_write`.

use super::violation;
use crate::world::World;
use crate::Violation;
use election_core::State;

/// Services that currently hold a valid claim on base `b`.
pub fn claimants(w: &World, b: usize) -> Vec<usize> {
    (0..w.svcs.len())
        .filter(|&s| {
            let x = &w.svcs[s];
            let Some(e) = w.elec(s, b) else {
                return false;
            };
            if !x.up || e.fsm.state() != State::Master || e.bound_epoch != x.client.epoch {
                return false;
            }
            let Some(seq) = e.fsm.local_id() else {
                return false;
            };
            let path = w.layout.election_node(&w.stype, &w.keys[b], seq);
            w.zk.is_live(x.client.session)
                && w.zk.get(&path).is_some_and(|n| n.owner == x.client.session)
        })
        .collect()
}

/// A claim appears only through a transition, so the bases touched by the
/// step are the ones to check.
pub fn check(w: &World) -> Result<(), Violation> {
    for b in w.bases_touched() {
        let c = claimants(w, b);
        if c.len() > 1 {
            return Err(violation(
                w,
                "one master",
                format!("base{b} has {} masters: {c:?}\n{}", c.len(), w.describe(b)),
            ));
        }
    }
    Ok(())
}
