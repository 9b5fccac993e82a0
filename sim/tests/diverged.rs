//! Issue 14, H8: replicas of a base that diverged (each holds a write the
//! other lacks at the same counter) with no master up. Before the fix,
//! every candidate that saw a diverged peer stepped aside and rejoined at
//! once, so the base never elected and its elections churned for ever.

use election_core::State;
use election_sim::invariants::convergence;
use election_sim::world::{Stamp, World, MS};
use election_sim::Options;

/// No faults; clients write for the first 2 s only, so that after that
/// only the engines retry.
fn world(seed: u64) -> World {
    let mut w = World::new(
        seed,
        Options {
            faults: false,
            ..Options::default()
        },
    );
    w.writes_until = 2_000 * MS;
    w
}

/// Gives service `s` a copy of base 0 holding one write, `wid`, stamped by
/// `writer`: copies with different writers diverged at version 1.
fn plant(w: &mut World, s: usize, wid: u64, writer: u64) {
    let r = &mut w.svcs[s].replicas[0];
    r.writes = vec![wid];
    r.stamp = Stamp { when: 1, writer };
}

/// How many candidacies base 0 saw: nodes ever created in its directory.
fn candidacies(w: &World) -> i32 {
    w.zk.cversion(&w.dirs[0])
}

/// Two copies agree and one diverged: the majority's copy leads, and the
/// odd one re-copies it (its write was never acknowledged: a majority
/// lacks it). The old rule got there too, but only by luck: a candidate
/// led once the odd replica answered "unknown" while trying to copy from a
/// master that did not exist. The engine's exact-effect test
/// `a_candidate_held_by_a_majority_leads_past_a_diverged_peer` pins the
/// rule itself.
#[test]
fn the_copy_a_majority_holds_leads_and_the_odd_one_recopies() {
    for seed in 1..=5 {
        let mut w = world(seed);
        plant(&mut w, 0, 9_001, 1 << 32);
        plant(&mut w, 1, 9_002, 2 << 32);
        plant(&mut w, 2, 9_002, 2 << 32);
        if let Err(v) = w.run_until(30_000 * MS) {
            panic!("seed {seed}: {v}");
        }
        w.converged()
            .unwrap_or_else(|e| panic!("seed {seed}: base 0 did not converge: {e}"));
        convergence::check(&w).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        let master = (0..3)
            .find(|s| {
                w.elec(*s, 0)
                    .is_some_and(|e| e.fsm.state() == State::Master)
            })
            .expect("a master");
        assert_ne!(master, 0, "seed {seed}: the odd copy leads");
        assert_eq!(
            w.svcs[0].replicas[0].writes[0], 9_002,
            "seed {seed}: the odd copy was replaced"
        );
    }
}

/// Three copies, each diverged from the others: no copy has a majority,
/// so none leads. Each election fails, names the diverged peers and the
/// runbook, and retries with back-off, instead of churning.
#[test]
fn without_a_majority_copy_elections_fail_with_a_reason_and_back_off() {
    for seed in 1..=5 {
        let mut w = world(seed);
        for s in 0..3 {
            plant(&mut w, s, 9_000 + s as u64, (s as u64 + 1) << 32);
        }
        if let Err(v) = w.run_until(2_000 * MS) {
            panic!("seed {seed}: {v}");
        }
        let early = candidacies(&w);
        if let Err(v) = w.run_until(40_000 * MS) {
            panic!("seed {seed}: {v}");
        }
        let late = candidacies(&w) - early;
        for s in 0..3 {
            let e = w.elec(s, 0).expect("the election is kept");
            assert_ne!(e.fsm.state(), State::Master, "seed {seed}: svc{s} leads");
            let why = e.fsm.last_error().unwrap_or_default();
            assert!(
                why.contains("replicas diverged") && why.contains("OPERATIONS.md"),
                "seed {seed}: svc{s}: {why:?}"
            );
        }
        // 38 s with no client: 3 services whose retries back off to 8 s
        // make about 30 attempts. Stepping aside made thousands.
        assert!(
            late < 60,
            "seed {seed}: {late} candidacies in 38 s without a client"
        );
    }
}
