//! Deterministic simulation of the election service.
//!
//! N services × M bases run the real [`election_core::Election`] over an
//! in-memory ZooKeeper model ([`zk`]) and simulated peer RPC ([`world`]),
//! with crashes, pauses beyond the session timeout, ZooKeeper outages,
//! partitions, leave storms, garbage nodes, lost RPCs and delayed or
//! duplicated notifications. Everything is drawn from one seed, so a failing
//! seed replays exactly. The invariants in [`invariants`] are checked after
//! every step; a violation names the seed to replay.

pub mod conformance;
pub mod invariants;
pub mod rng;
pub mod world;
pub mod zk;

use std::collections::BTreeMap;
use std::fmt;

/// The shape of one simulated run.
#[derive(Debug, Clone)]
pub struct Options {
    pub services: usize,
    pub bases: usize,
    /// Faults are injected during the first `fault_ms` of virtual time.
    pub fault_ms: u64,
    /// After the faults stop (and the last one healed), every base must have
    /// one master followed by its peers within this bound.
    pub settle_ms: u64,
    pub session_timeout_ms: u64,
    /// Mean interval between two client writes.
    pub write_interval_ms: u64,
    pub faults: bool,
    /// Slaves fence older masters once they answered a candidate's GETVERS
    /// (the fix; off reproduces the race it closes).
    pub fence: bool,
    /// Masters hand out copies under the base's write lock (the fix; off
    /// lets a slave restore a copy older than a write it acknowledged).
    pub dump_locked: bool,
    /// A copy's batch floor makes its slave refuse batches decided before
    /// it (the fix; off lets a late REPLICATE of a rolled-back batch land
    /// on a replica just resynced).
    pub copy_floor: bool,
    /// Versions carry the writing master's stamp, so two different writes at
    /// one counter compare as diverged (the fix; off compares counters only).
    pub stamps: bool,
    /// Stamps name their writer (the engine's epoch and batch), so that two
    /// writes stamped alike by skewed clocks still differ (the fix of issue
    /// 14, H2; off stamps by clock only, as the server did before).
    pub writers: bool,
    /// A successor leads on its master's farewell only if it followed that
    /// master right up to its candidacy and no newer candidate asked it (the
    /// fix; off trusts any farewell from the master it once followed).
    pub farewell_guarded: bool,
    /// Start some election directories' sequence counters near the 32-bit wrap.
    pub wrap: bool,
    /// A deliberate bug, to show that an invariant can fail (none by default).
    pub mutation: Option<Mutation>,
    /// Keep a trace of transitions and faults (printed on failure).
    pub trace: bool,
    /// On one seed in four, clients stop writing when faults stop being
    /// injected (the last ones still running): every base must still heal
    /// and converge, with no request at all.
    pub quiet_end: bool,
    /// On one seed in five, one election at a time per service (admission
    /// control); otherwise the engine's default.
    pub tight_admission: bool,
    /// Faults of operations and of the environment: SIGTERM and SIGINT,
    /// a nearly full volume (stop-writes), disk errors, directory errors,
    /// and a session loss reported after the new session.
    pub operations: bool,
    /// On one seed in seven, clients write in bursts: several writes to one
    /// base at once, so that batches of several writes (group commit) meet
    /// the faults.
    pub bursts: bool,
    /// On two seeds in three, a master keeps up to 2 or 3 batches of a base
    /// in flight (pipelined replication, `pipeline_window`); otherwise one.
    pub pipeline: bool,
    /// With `operations`, on one seed in nine: containers are deleted and
    /// created again (fault 14), and some peers miss the deletion.
    pub recreate: bool,
    /// A deletion deletes every node of the base's election, so that a peer
    /// that missed it steps down and reads the directory again, as the
    /// server does (off lets such a peer go on taking writes for the
    /// deleted creation: seed 2230).
    pub delete_nodes: bool,
    /// On one seed in eight, after the convergence check: hours without a
    /// request (idle expiry, with defaults of 3.5 and 4 hours), then writes
    /// again and a second convergence check.
    pub idle_hours: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            services: 3,
            bases: 4,
            fault_ms: 12_000,
            settle_ms: 20_000,
            session_timeout_ms: 2_000,
            write_interval_ms: 25,
            faults: true,
            fence: true,
            dump_locked: true,
            copy_floor: true,
            stamps: true,
            writers: true,
            farewell_guarded: true,
            wrap: false,
            mutation: None,
            trace: false,
            quiet_end: true,
            tight_admission: true,
            bursts: true,
            pipeline: true,
            recreate: true,
            delete_nodes: true,
            operations: true,
            idle_hours: true,
        }
    }
}

/// A deliberate bug planted in the world, so that a test can see an
/// invariant fail in a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// LISTING reports every candidate's own node as the lowest of the group:
    /// each candidate leads, which `one_master` must catch.
    SelfLowest,
    /// Wanted elections do not start again by themselves after a failure or
    /// a lost session: with no client request, some bases never heal.
    NoRetry,
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub steps: u64,
    pub writes_sent: u64,
    pub writes_acked: u64,
    pub writes_failed: u64,
    /// Faults and notable events by kind.
    pub counts: BTreeMap<&'static str, u64>,
}

impl Stats {
    pub fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Stats) {
        self.steps += other.steps;
        self.writes_sent += other.writes_sent;
        self.writes_acked += other.writes_acked;
        self.writes_failed += other.writes_failed;
        for (k, v) in &other.counts {
            *self.counts.entry(k).or_default() += v;
        }
    }
}

/// An invariant that did not hold.
#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub seed: u64,
    pub at_ms: u64,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant `{}` violated at {} ms (virtual), seed {}:\n{}\nREPRODUCE WITH: cargo run --release -p election-sim -- --seed {} --trace",
            self.invariant, self.at_ms, self.seed, self.detail, self.seed
        )
    }
}

/// The result of one seed.
pub struct Outcome {
    pub stats: Stats,
    pub violation: Option<Violation>,
    pub trace: Vec<String>,
}

/// Hours without a request from `from_ms` on (the default idle expiry lets
/// slaves go after 3.5 hours, masters after 4, and forgets a NONE election
/// 10 minutes later), then writes again for 10 s, then the convergence check
/// once more: expired elections come back with every acknowledged write. On
/// half of these seeds ZooKeeper goes away for a few seconds in between.
fn idle_hours(w: &mut world::World, from_ms: u64, seed: u64) -> Result<(), Violation> {
    const HOUR: u64 = 3_600_000;
    w.stats.count("hours without a request");
    w.idle = true;
    let back = from_ms + 4 * HOUR + HOUR / 2;
    if seed % 16 == 14 {
        w.run_until((from_ms + 2 * HOUR) * world::MS)?;
        w.zookeeper_outage((500 + seed % 3_500) * world::MS);
    }
    w.run_until(back * world::MS)?;
    for _ in 0..w.settled_elections() {
        w.stats
            .count("election still settled after hours without a request");
    }
    w.idle = false;
    w.writes_until = (back + 10_000) * world::MS;
    w.run_until((back + 25_000) * world::MS)?;
    invariants::convergence::check(w)
}

/// Runs one seed: faults, then healing, then the convergence check.
pub fn run(seed: u64, opts: &Options) -> Outcome {
    let mut w = world::World::new(seed, opts.clone());
    if opts.tight_admission && seed % 5 == 4 {
        w.stats.count("one election in flight at a time");
    }
    if world::bursty(seed, opts) {
        w.stats.count("clients write in bursts");
    }
    if world::recreates(seed, opts) {
        w.stats.count("containers deleted and created again");
    }
    // The last fault heals at most ~3 session timeouts after it started.
    let healed = opts.fault_ms + 3 * opts.session_timeout_ms + 3_000;
    let end = healed + opts.settle_ms;
    w.writes_until = if opts.quiet_end && seed % 4 == 1 {
        w.stats.count("no client request after the faults");
        w.lag_allowed = true;
        opts.fault_ms * world::MS
    } else {
        end.saturating_sub(3_000) * world::MS
    };
    let mut violation = w.run_until(end * world::MS).err();
    if violation.is_none() {
        violation = invariants::convergence::check(&w).err();
    }
    if w.lag_allowed {
        for _ in 0..invariants::convergence::bases_with_absent_services(&w) {
            w.stats
                .count("base converged without a restarted or departed service");
        }
    }
    for _ in 0..invariants::convergence::lagging_slaves(&w) {
        w.stats.count("slave left behind, no write to catch up");
    }
    if violation.is_none() && opts.idle_hours && seed % 8 == 6 {
        violation = idle_hours(&mut w, end, seed).err();
    }
    for (_, apart) in invariants::convergence::read_only_bases(&w) {
        w.stats.count("base left in emergency read-only");
        if apart {
            w.stats
                .count("base left in emergency read-only, replicas apart");
        }
    }
    Outcome {
        stats: std::mem::take(&mut w.stats),
        violation,
        trace: std::mem::take(&mut w.trace),
    }
}
