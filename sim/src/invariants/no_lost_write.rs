//! (3) No acknowledged write is lost: each stays on a majority of replicas
//! (durable copies, whether their service is up or not).
//!
//! Appending never removes a write, so the full check runs where a replica
//! was replaced by a copy; each new acknowledgement is checked on its own.
//! A write is held by the replicas of its base's creation; one of a creation
//! since deleted went with it (fault 14).

use super::violation;
use crate::world::{Acked, World};
use crate::Violation;
use std::collections::HashSet;

fn lost(w: &World, a: &Acked, holders: usize, needed: usize) -> Violation {
    violation(
        w,
        "no acknowledged write lost",
        format!(
            "base{}: write {} (acknowledged by svc{} at epoch {}) is on {holders} replica(s), {needed} needed\n{}",
            a.base,
            a.wid,
            a.master,
            a.epoch,
            w.describe(a.base)
        ),
    )
}

pub fn check(w: &World) -> Result<(), Violation> {
    let needed = w.svcs.len() / 2 + 1;
    for &b in &w.replaced {
        let copies: Vec<(u64, HashSet<u64>)> = w
            .svcs
            .iter()
            .map(|x| {
                let r = &x.replicas[b];
                (r.creation, r.writes.iter().copied().collect())
            })
            .collect();
        for a in w.acked.iter().filter(|a| a.base == b && w.current(a)) {
            let holders = copies
                .iter()
                .filter(|(c, writes)| *c == a.creation && writes.contains(&a.wid))
                .count();
            if holders < needed {
                return Err(lost(w, a, holders, needed));
            }
        }
    }
    for &i in &w.new_acks {
        let a = &w.acked[i];
        if !w.current(a) {
            continue;
        }
        let holders = w
            .svcs
            .iter()
            .map(|x| &x.replicas[a.base])
            .filter(|r| r.creation == a.creation && r.writes.contains(&a.wid))
            .count();
        if holders < needed {
            return Err(lost(w, a, holders, needed));
        }
    }
    Ok(())
}
