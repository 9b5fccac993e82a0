//! (5) Once faults stop and heal, and after the final quiet period without
//! writes, every base has:
//! - one MASTER, holding the lowest node, and SLAVEs that name it;
//! - a master whose replica holds every write acknowledged for the base;
//! - replicas that agree: none is being restored, and every replica holds
//!   exactly the master's writes, in the master's order.
//!
//! One exception, by design (`election-server/src/writes.rs`): a master in
//! emergency read-only mode refuses writes until an operator resyncs the
//! slaves, so its slaves may still differ from it. Even then, a slave
//! follows the master's history up to the point where they part, and holds
//! no acknowledged write past that point: it may only lack writes, or hold
//! writes the master rolled back.
//!
//! Another, for the seeds whose clients stop writing while faults still run
//! (`World::lag_allowed`): a slave that missed the last writes learns it only
//! from the next write, or from a resync request, which is not retried
//! (docs/ENGINE.md §8.10). Such a slave may hold a strict prefix of the
//! master's history. A service that restarted, or was told to leave, has no
//! reason to take part again with no request (elections start on use), so it
//! may have no election, and its replica is checked when it takes part again
//! (it compares versions first). Every acknowledged write must still be on a
//! majority of replicas.

use super::violation;
use crate::world::World;
use crate::Violation;
use election_core::State;
use std::collections::HashSet;

pub fn check(w: &World) -> Result<(), Violation> {
    w.converged()
        .and_then(|()| replicas_agree(w))
        .map_err(|detail| violation(w, "convergence after faults", detail))
}

/// The master of base `b`, if exactly one service is MASTER.
fn master(w: &World, b: usize) -> Option<usize> {
    let mut masters = (0..w.svcs.len()).filter(|s| {
        w.elec(*s, b)
            .is_some_and(|e| e.fsm.state() == State::Master)
    });
    masters.next().filter(|_| masters.next().is_none())
}

/// Bases whose master is in emergency read-only mode, each with whether
/// some replica differs from the master's.
pub fn read_only_bases(w: &World) -> Vec<(usize, bool)> {
    (0..w.bases.len())
        .filter_map(|b| {
            let m = master(w, b).filter(|m| w.readonly(*m, b))?;
            let reference = &w.svcs[m].replicas[b].writes;
            Some((b, w.svcs.iter().any(|x| x.replicas[b].writes != *reference)))
        })
        .collect()
}

/// Every replica of each base holds its master's history (see the module
/// documentation for a master in emergency read-only mode), and that history
/// holds every acknowledged write.
pub fn replicas_agree(w: &World) -> Result<(), String> {
    let acked = |b: usize, wid: u64| {
        w.acked
            .iter()
            .any(|a| a.base == b && a.wid == wid && w.current(a))
    };
    for b in 0..w.bases.len() {
        if w.lag_allowed && !acked_on_majority(w, b) {
            return Err(format!(
                "base{b}: an acknowledged write is on fewer than a majority of replicas\n{}",
                w.describe(b)
            ));
        }
        if w.lag_allowed && (0..w.svcs.len()).all(|s| w.absent(s, b)) {
            continue; // dormant: see the module documentation
        }
        let Some(m) = master(w, b) else {
            return Err(format!("base{b}: not one master\n{}", w.describe(b)));
        };
        let readonly = w.readonly(m, b);
        let reference = &w.svcs[m].replicas[b].writes;
        let held: HashSet<u64> = reference.iter().copied().collect();
        if w.svcs[m].replicas[b].creation != w.creation[b] {
            return Err(format!(
                "base{b}: the master svc{m} holds a replica of creation {}, the directory names {}\n{}",
                w.svcs[m].replicas[b].creation,
                w.creation[b],
                w.describe(b)
            ));
        }
        if let Some(a) = w
            .acked
            .iter()
            .find(|a| a.base == b && w.current(a) && !held.contains(&a.wid))
        {
            return Err(format!(
                "base{b}: the master svc{m} lacks write {} acknowledged by svc{} (epoch {})\n{}",
                a.wid,
                a.master,
                a.epoch,
                w.describe(b)
            ));
        }
        for (s, x) in w.svcs.iter().enumerate() {
            if w.lag_allowed && w.absent(s, b) {
                continue; // it syncs when it takes part again
            }
            let r = &x.replicas[b];
            if r.restoring {
                return Err(format!(
                    "base{b}: svc{s}'s replica is still being restored\n{}",
                    w.describe(b)
                ));
            }
            if r.creation != w.creation[b] {
                return Err(format!(
                    "base{b}: svc{s} holds a replica of creation {}, the directory names {}\n{}",
                    r.creation,
                    w.creation[b],
                    w.describe(b)
                ));
            }
            if r.writes == *reference {
                continue;
            }
            // Where the replica leaves the master's history.
            let at = r
                .writes
                .iter()
                .zip(reference)
                .take_while(|(x, y)| x == y)
                .count();
            let (lacks, extra) = (&reference[at..], &r.writes[at..]);
            let extra_acked: Vec<u64> = extra.iter().copied().filter(|x| acked(b, *x)).collect();
            if readonly && extra_acked.is_empty() {
                continue;
            }
            if w.lag_allowed && extra.is_empty() && acked_on_majority(w, b) {
                continue;
            }
            let lacks_acked: Vec<u64> = lacks.iter().copied().filter(|x| acked(b, *x)).collect();
            return Err(format!(
                "base{b}: replicas differ: svc{s} holds {} writes, the master svc{m}{} {}; \
                 from #{at}, svc{s} lacks {lacks:?} (acknowledged: {lacks_acked:?}) \
                 and holds {extra:?} instead (acknowledged: {extra_acked:?})\n{}",
                r.writes.len(),
                if readonly { " (read-only)" } else { "" },
                reference.len(),
                w.describe(b)
            ));
        }
    }
    Ok(())
}

/// Is every write acknowledged for base `b` held by a majority of replicas?
fn acked_on_majority(w: &World, b: usize) -> bool {
    let needed = w.svcs.len() / 2 + 1;
    w.acked
        .iter()
        .filter(|a| a.base == b && w.current(a))
        .all(|a| {
            w.svcs
                .iter()
                .map(|x| &x.replicas[b])
                .filter(|r| r.creation == a.creation && r.writes.contains(&a.wid))
                .count()
                >= needed
        })
}

/// Slaves whose replica is a strict prefix of their master's (see the
/// module documentation).
pub fn lagging_slaves(w: &World) -> usize {
    (0..w.bases.len())
        .filter_map(|b| master(w, b).map(|m| (b, m)))
        .map(|(b, m)| {
            let reference = &w.svcs[m].replicas[b].writes;
            w.svcs
                .iter()
                .filter(|x| {
                    let r = &x.replicas[b].writes;
                    r.len() < reference.len() && reference.starts_with(r)
                })
                .count()
        })
        .sum()
}

/// Bases where some service takes no part (see the module documentation).
pub fn bases_with_absent_services(w: &World) -> usize {
    (0..w.bases.len())
        .filter(|&b| (0..w.svcs.len()).any(|s| w.absent(s, b)))
        .count()
}
