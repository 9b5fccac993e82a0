//! (2) A master's replica holds every write acknowledged for its base.
//!
//! Checked in full where a transition happened in the step (a new claim),
//! and for each write acknowledged in the step (every claimant must hold it).
//! Writes and masters of the base's current creation only: a master of a
//! deleted creation is `one_creation`'s concern.

use super::one_master::claimants;
use super::violation;
use crate::world::{Acked, World};
use crate::Violation;
use std::collections::HashSet;

fn lacks(w: &World, b: usize, m: usize, a: &Acked) -> Violation {
    violation(
        w,
        "master holds every acknowledged write",
        format!(
            "base{b}: master svc{m} lacks write {} acknowledged by svc{} (epoch {}) at {} ms\n{}",
            a.wid,
            a.master,
            a.epoch,
            a.at / crate::world::MS,
            w.describe(b)
        ),
    )
}

pub fn check(w: &World) -> Result<(), Violation> {
    let transitions: HashSet<usize> = w.touched.iter().map(|(_, b)| *b).collect();
    let of_creation = |m: usize, b: usize| w.svcs[m].replicas[b].creation == w.creation[b];
    for &b in &transitions {
        for m in claimants(w, b).into_iter().filter(|m| of_creation(*m, b)) {
            let held: HashSet<u64> = w.svcs[m].replicas[b].writes.iter().copied().collect();
            if let Some(a) = w
                .acked
                .iter()
                .find(|a| a.base == b && w.current(a) && !held.contains(&a.wid))
            {
                return Err(lacks(w, b, m, a));
            }
        }
    }
    for &i in &w.new_acks {
        let a = &w.acked[i];
        if !w.current(a) {
            continue;
        }
        for m in claimants(w, a.base)
            .into_iter()
            .filter(|m| of_creation(*m, a.base))
        {
            if !w.svcs[m].replicas[a.base].writes.contains(&a.wid) {
                return Err(lacks(w, a.base, m, a));
            }
        }
    }
    Ok(())
}
