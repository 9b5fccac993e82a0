//! Each of the eight invariants, shown a deliberately broken world or history,
//! reports a violation: the checks can fail. Most cases settle a world
//! without faults, break one thing in it, and call the invariant directly;
//! `one_master` is broken through a whole run (`Mutation::SelfLowest`).

use election_core::{Config, Election, Event, Now, State};
use election_sim::invariants::{
    acked_epochs, convergence, log_monotonic, master_has_acked, no_lost_write, one_creation,
    published_version,
};
use election_sim::world::{Acked, World, MS};
use election_sim::{run, Mutation, Options, Violation};

/// No faults: the breaks below are the only thing wrong.
fn quiet() -> Options {
    Options {
        faults: false,
        ..Options::default()
    }
}

/// A world without faults where every base has a master, its slaves and
/// acknowledged writes; the workload stops at 3 s and the world runs on to 5 s.
fn settled() -> World {
    let mut w = World::new(1, quiet());
    w.writes_until = 3_000 * MS;
    if let Err(v) = w.run_until(5_000 * MS) {
        panic!("a quiet world holds every invariant:\n{v}");
    }
    w.converged().expect("a quiet world converges");
    convergence::check(&w).expect("a quiet world's replicas agree");
    assert!(
        (0..4).all(|b| w.acked.iter().filter(|a| a.base == b).count() > 10),
        "every base took writes"
    );
    w
}

/// The master of base `b`, and its slaves.
fn roles(w: &World, b: usize) -> (usize, Vec<usize>) {
    let state = |s: usize| w.elec(s, b).map(|e| e.fsm.state());
    let m = (0..w.svcs.len())
        .find(|s| state(*s) == Some(State::Master))
        .expect("a master");
    (m, (0..w.svcs.len()).filter(|s| *s != m).collect())
}

/// The last write acknowledged on base `b`.
fn last_ack(w: &World, b: usize) -> Acked {
    w.acked
        .iter()
        .rev()
        .find(|a| a.base == b)
        .cloned()
        .expect("an acknowledged write")
}

/// The check failed, naming `invariant`, with `detail` in its report.
fn fails(r: Result<(), Violation>, invariant: &str, detail: &str) {
    let v = r.expect_err("the broken world must fail the check");
    assert_eq!(v.invariant, invariant, "{v}");
    assert!(v.detail.contains(detail), "expected {detail:?} in:\n{v}");
}

/// (1) Every candidate reads its own node as the lowest: each leads.
#[test]
fn one_master_sees_a_second_master() {
    for opts in [quiet(), Options::default()] {
        assert!(run(0, &opts).violation.is_none(), "seed 0 holds");
        let broken = Options {
            mutation: Some(Mutation::SelfLowest),
            ..opts
        };
        let v = run(0, &broken)
            .violation
            .expect("with every candidate leading, seed 0 must fail");
        assert_eq!(v.invariant, "one master", "{v}");
        assert!(v.detail.contains("has 2 masters"), "{v}");
    }
}

/// (2) The master lost an acknowledged write.
#[test]
fn master_has_acked_sees_a_master_without_a_write() {
    let mut w = settled();
    master_has_acked::check(&w).expect("holds before the break");
    let a = last_ack(&w, 0);
    let (m, _) = roles(&w, 0);
    w.svcs[m].replicas[0].writes.retain(|x| *x != a.wid);
    // Found where the base had a transition...
    w.touched.insert((m, 0));
    fails(
        master_has_acked::check(&w),
        "master holds every acknowledged write",
        &format!("master svc{m} lacks write {}", a.wid),
    );
    // ...and when a write the master does not hold is acknowledged.
    w.touched.clear();
    acknowledge(&mut w, m, a.epoch, a.wid);
    fails(
        master_has_acked::check(&w),
        "master holds every acknowledged write",
        &format!("lacks write {}", a.wid),
    );
}

/// (7) A master told a final version without a write acknowledged before.
#[test]
fn published_version_sees_a_farewell_without_a_write() {
    let mut w = settled();
    let a = last_ack(&w, 0);
    let (m, _) = roles(&w, 0);
    let epoch = w.elec(m, 0).and_then(|e| e.fsm.local_id()).expect("a node");
    let mut writes = w.svcs[m].replicas[0].writes.clone();
    w.farewells.push((m, 0, epoch, writes.clone()));
    published_version::check(&w).expect("holds with every write");
    writes.retain(|x| *x != a.wid);
    w.farewells = vec![(m, 0, epoch, writes)];
    fails(
        published_version::check(&w),
        "a published version holds every acknowledged write",
        &format!(
            "svc{m} left node {epoch} telling a version without write {}",
            a.wid
        ),
    );
}

/// (3) Both slaves restored a copy that predates an acknowledged write.
#[test]
fn no_lost_write_sees_a_write_on_one_replica() {
    let mut w = settled();
    let a = last_ack(&w, 0);
    let (_, slaves) = roles(&w, 0);
    for s in slaves {
        w.svcs[s].replicas[0].writes.retain(|x| *x != a.wid);
    }
    w.replaced.insert(0);
    fails(
        no_lost_write::check(&w),
        "no acknowledged write lost",
        &format!(
            "write {} (acknowledged by svc{} at epoch {}) is on 1 replica(s), 2 needed",
            a.wid, a.master, a.epoch
        ),
    );
}

/// (8) The base is deleted and created again (creation 2), and a replica of
/// the first creation acknowledges a write sent to the second; one sent
/// before the deletion, or acknowledged by the current creation, passes.
#[test]
fn one_creation_sees_a_write_taken_by_a_deleted_creation() {
    let mut w = settled();
    let (m, _) = roles(&w, 0);
    w.creation[0] = 2;
    let push = |w: &mut World, sent_to: u64, creation: u64| {
        w.new_acks = vec![w.acked.len()];
        w.acked.push(Acked {
            base: 0,
            wid: LATE,
            master: m,
            epoch: 1,
            at: w.now,
            creation,
            sent_to,
        });
    };
    push(&mut w, 1, 1);
    one_creation::check(&w).expect("sent before the deletion: went with it");
    push(&mut w, 1, 2);
    one_creation::check(&w).expect("sent before, taken by the new creation");
    push(&mut w, 2, 1);
    fails(
        one_creation::check(&w),
        "a write is acknowledged by the creation it was sent to",
        &format!("base0: write {LATE} sent to creation 2 was acknowledged by svc{m} (epoch 1) from a replica of creation 1"),
    );
}

/// (4) An election restarted within one process incarnation: its log starts
/// again below the entries already seen.
#[test]
fn log_monotonic_sees_a_log_going_back() {
    let mut w = settled();
    let (_, slaves) = roles(&w, 0);
    let s = slaves[0];
    let now = Now::at(w.now / MS);
    let base = w.bases[0].clone();
    let e = w.svcs[s].engine.view_mut(&base).expect("an election");
    let newest = e.fsm.log().iter().next().expect("a log").seq;
    assert!(newest > 0);
    e.fsm = Election::new(Config::default(), 0, now);
    e.fsm.handle(now, Event::None);
    w.touched.insert((s, 0));
    fails(
        log_monotonic::check(&mut w),
        "log sequence monotonic",
        &format!("svc{s} base0: newest entry went from Some({newest}) back to 0"),
    );
}

/// Records write `wid` as acknowledged by `master` under `epoch`, in this step.
fn acknowledge(w: &mut World, master: usize, epoch: i64, wid: u64) {
    w.new_acks.push(w.acked.len());
    w.acked.push(Acked {
        base: 0,
        wid,
        master,
        epoch,
        at: w.now,
        creation: 1,
        sent_to: 1,
    });
}

/// (6) One epoch acknowledged by two masters.
#[test]
fn acked_epochs_sees_an_epoch_with_two_masters() {
    let mut w = settled();
    let a = last_ack(&w, 0);
    let other = (a.master + 1) % 3;
    for s in 0..3 {
        w.svcs[s].replicas[0].writes.push(LATE);
    }
    acknowledge(&mut w, other, a.epoch, 1_000_000);
    fails(
        acked_epochs::check(&mut w),
        "acknowledged epochs do not overlap",
        &format!("epoch {} acknowledged by two masters", a.epoch),
    );
}

/// (6) A write acknowledged under an older epoch after the newer epoch's
/// writes: first in the history of `before` of the three replicas, last in
/// the others'.
fn late_write(before: usize) -> (World, Result<(), Violation>) {
    let mut w = settled();
    let newer = last_ack(&w, 0);
    for s in 0..3 {
        let h = &mut w.svcs[s].replicas[0].writes;
        h.insert(if s < before { 0 } else { h.len() }, LATE);
    }
    // An older master (a lower node) finishes its write after the election.
    acknowledge(&mut w, (newer.master + 1) % 3, newer.epoch - 1, LATE);
    let r = acked_epochs::check(&mut w);
    (w, r)
}

const LATE: u64 = 1_000_000;

#[test]
fn acked_epochs_needs_the_older_write_first_on_a_majority() {
    // In order on one replica: enough for the rule before the majority.
    fails(
        late_write(1).1,
        "acknowledged epochs do not overlap",
        "1 replica(s) hold it before that write [0] (2 needed), 2 after it [1, 2]",
    );
    // In order on a majority, the other way round on one replica.
    fails(
        late_write(2).1,
        "acknowledged epochs do not overlap",
        "2 replica(s) hold it before that write [0, 1] (2 needed), 1 after it [2]",
    );
    // In order on all three: the overlap holds, and is checked again when a
    // replica of the base is replaced by a copy that reverses it.
    let (mut w, r) = late_write(3);
    r.expect("in order on every replica");
    assert!(!w.epoch_overlaps.is_empty(), "the pairs are kept");
    w.new_acks.clear();
    let h = &mut w.svcs[2].replicas[0].writes;
    h.retain(|x| *x != LATE);
    h.push(LATE);
    w.replaced.insert(0);
    fails(
        acked_epochs::check(&mut w),
        "acknowledged epochs do not overlap",
        "2 replica(s) hold it before that write [0, 1] (2 needed), 1 after it [2]",
    );
}

/// (5) After the quiet period: a slave that lacks a write, one that holds a
/// write the master never made, a replica still being restored, a slave
/// that follows nobody. A master in emergency read-only mode may have
/// slaves that lack or add unacknowledged writes, not more.
#[test]
fn convergence_sees_replicas_that_differ() {
    let w0 = settled();
    let (m, slaves) = roles(&w0, 0);
    let s = slaves[0];
    let last = last_ack(&w0, 0).wid;

    let mut w = settled();
    w.svcs[s].replicas[0].writes.pop();
    fails(
        convergence::check(&w),
        "convergence after faults",
        &format!("base0: replicas differ: svc{s} holds"),
    );
    // The emergency read-only exception: a slave lacking a write passes.
    let base = w.bases[0].clone();
    w.svcs[m].engine.plant_readonly(&base);
    convergence::check(&w).expect("a read-only master's slave may lag");

    let mut w = settled();
    w.svcs[s].replicas[0].writes.push(LATE);
    fails(
        convergence::check(&w),
        "convergence after faults",
        &format!("holds [{LATE}] instead (acknowledged: [])"),
    );
    // A write the read-only master rolled back passes...
    let base = w.bases[0].clone();
    w.svcs[m].engine.plant_readonly(&base);
    convergence::check(&w).expect("a read-only master's slave may hold a rolled-back write");
    // ...an acknowledged write out of the master's order does not.
    let h = &mut w.svcs[s].replicas[0].writes;
    h.retain(|x| *x != last);
    h.push(last);
    fails(
        convergence::check(&w),
        "convergence after faults",
        &format!("(acknowledged: [{last}])"),
    );

    let mut w = settled();
    w.svcs[s].replicas[0].restoring = true;
    fails(
        convergence::check(&w),
        "convergence after faults",
        "replica is still being restored",
    );

    let mut w = settled();
    let base = w.bases[0].clone();
    w.svcs[s].engine.forget(&base);
    fails(
        convergence::check(&w),
        "convergence after faults",
        &format!("base0: svc{s} does not follow svc{m}"),
    );

    // The same data everywhere, but an acknowledged write on no replica.
    let mut w = settled();
    for x in &mut w.svcs {
        x.replicas[0].writes.retain(|x| *x != last);
    }
    fails(
        convergence::check(&w),
        "convergence after faults",
        &format!("the master svc{m} lacks write {last}"),
    );
}
