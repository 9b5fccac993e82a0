//! (6) Acknowledged epochs do not overlap.
//!
//! - One epoch belongs to one master: two writes acknowledged under the same
//!   epoch were acknowledged by the same service.
//! - A write acknowledged under an older epoch after a write of a newer epoch
//!   was acknowledged (a master that resumes after a pause and finishes a
//!   write its slaves applied before the election) already precedes that
//!   write in the base's history: a majority of replicas hold both, the
//!   older epoch's first, and no replica holds them the other way round.
//!
//! Checked when the later write is acknowledged; each such pair is checked
//! again whenever a replica of its base is replaced by a copy, until the base
//! is deleted.

use super::violation;
use crate::world::{Acked, World};
use crate::Violation;
use election_core::names::seq_after;

/// How the replicas of `base` order writes `first` and `then`: the services
/// holding both with `first` before `then`, and those holding `then` first.
fn order(w: &World, base: usize, first: u64, then: u64) -> (Vec<usize>, Vec<usize>) {
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for (s, x) in w.svcs.iter().enumerate() {
        let h = &x.replicas[base].writes;
        let pos = |wid| h.iter().position(|v| *v == wid);
        match (pos(first), pos(then)) {
            (Some(f), Some(t)) if f < t => right.push(s),
            (Some(_), Some(_)) => wrong.push(s),
            _ => {}
        }
    }
    (right, wrong)
}

fn overlap_holds(w: &World, older: &Acked, newer: &Acked) -> Result<(), Violation> {
    let needed = w.svcs.len() / 2 + 1;
    let (right, wrong) = order(w, older.base, older.wid, newer.wid);
    if right.len() >= needed && wrong.is_empty() {
        return Ok(());
    }
    Err(violation(
        w,
        "acknowledged epochs do not overlap",
        format!(
            "base{}: write {} acknowledged by svc{} at epoch {} after write {} by svc{} at epoch {}: \
             {} replica(s) hold it before that write {right:?} ({needed} needed), {} after it {wrong:?}\n{}",
            older.base,
            older.wid,
            older.master,
            older.epoch,
            newer.wid,
            newer.master,
            newer.epoch,
            right.len(),
            wrong.len(),
            w.describe(older.base)
        ),
    ))
}

pub fn check(w: &mut World) -> Result<(), Violation> {
    let mut found = Vec::new();
    for &i in &w.new_acks {
        let last = &w.acked[i];
        for (j, a) in w.acked[..i].iter().enumerate() {
            // Election nodes keep their sequence across creations of a
            // base: epochs compare within one creation.
            if a.base != last.base || a.creation != last.creation {
                continue;
            }
            if a.epoch == last.epoch && a.master != last.master {
                return Err(violation(
                    w,
                    "acknowledged epochs do not overlap",
                    format!(
                        "base{}: epoch {} acknowledged by two masters: write {} by svc{}, write {} by svc{}\n{}",
                        last.base,
                        last.epoch,
                        a.wid,
                        a.master,
                        last.wid,
                        last.master,
                        w.describe(last.base)
                    ),
                ));
            }
            if seq_after(a.epoch, last.epoch) {
                overlap_holds(w, last, a)?;
                found.push((i, j));
            }
        }
    }
    for &(i, j) in &w.epoch_overlaps {
        let later = &w.acked[i];
        // A base deleted since (and perhaps created again) took its
        // replicas' writes with it: nothing is left to order (seed 17179).
        if w.replaced.contains(&later.base) && w.creation[later.base] == later.creation {
            overlap_holds(w, later, &w.acked[j])?;
        }
    }
    let late: std::collections::BTreeSet<usize> = found.iter().map(|(i, _)| *i).collect();
    for _ in late {
        w.stats.count("write acknowledged under an older epoch");
    }
    w.epoch_overlaps.extend(found);
    Ok(())
}
