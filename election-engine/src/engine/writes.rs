//! The write path: a master's batches, replicated to a majority under its
//! fencing epoch; a slave's side; the ordering of copies and candidates'
//! GETVERS around them; and emergency read-only mode.
//!
//! Each base has at most one store operation in flight (`BaseOps::busy`): a
//! master's window of batches (each Begin, then one Commit or Rollback for
//! the window), a slave's Apply, or a Dump. What must not interleave with it
//! waits in `BaseOps`, in arrival order, instead of behind a lock:
//! - client writes, which join the next batch (group commit: one vector
//!   bump and one REPLICATE per slave for all the writes that queued while
//!   a batch was begun);
//! - a slave's DUMP: the copy must hold a write that a slave may already
//!   have applied and that may still commit;
//! - a candidate's GETVERS: we fence older masters only once no write of
//!   theirs is half-applied here, and report the version after it;
//! - further replicated writes (a slave applies in order).
//!
//! Two REPLICATE calls can overtake each other on the way (the slower slave
//! gets batch n+1 while batch n is still in transit): a write that does not
//! follow the local version waits a moment (`gap_wait_ms`) for the one it
//! follows, and is applied after it, instead of costing a copy of the base.
//!
//! Pipelined replication: while a master's batches wait for their slaves,
//! the next one may be begun and sent (at most `pipeline_window` in flight)
//! once the writes that queued fill a whole batch (fewer all go in the next
//! batch: group commit).
//! They share one transaction, each batch after the first in a savepoint,
//! and each follows the version the one before it left; slaves apply them
//! in that order. The window stops growing as soon as one of its batches is
//! decided, or a copy or a candidate's GETVERS waits, and is then decided
//! as a whole: it commits once every batch in it has its majority (clients
//! are answered after that COMMIT), and a batch whose majority became
//! impossible is rolled back with every batch after it (a savepoint keeps
//! the ones before it), since those follow it. Why no acknowledged write is
//! lost: a client hears of its write only after the COMMIT of a window
//! whose every batch a majority applied, so the write is on the master and
//! on a majority, like a batch alone; a slave applies a batch only from the
//! version the one before it left, so no replica holds a later batch
//! without the earlier ones; and the store refuses a Begin whose count of
//! batches in flight is not the transaction's (`behind`), so a window is
//! never committed as a transaction that lost some of its batches.
//!
//! A batch commits when a majority of the group, the master included,
//! applied it; it rolls back as soon as a majority is impossible. A slave
//! whose answer came too late, or that refused, is told to copy the base
//! again once the batch committed. A slave that may hold a rolled-back batch
//! (no answer) may now differ from the master: the service enters emergency
//! read-only mode until an operator clears it.

use super::{Engine, Pending};
use crate::io::{
    Divergence, Effect, GetversRefusal, Id, LogEvent, Observation, ReplicateFailure, ReqId,
    StoreFailure, StoreOk, StoreOp, WriteRefusal, Written,
};
use election_core::names::{seq_after, BaseName, Seq, ServiceId};
use election_core::peer::{replica_verdict, Refusal, ReplicaVerdict};
use election_core::version::{render_vector, Incarnation, Vector, WriteOp};
use election_core::{Event, Now, State};
use std::collections::VecDeque;
use std::sync::Arc;

/// At most this many client writes wait per base: beyond, a clear refusal.
pub const MAX_QUEUED_WRITES: usize = 1_024;

/// At most this many replicated writes wait per base for its election to
/// settle; beyond, they are refused at once.
const MAX_UNSETTLED: usize = 64;
/// A replicated write that waited this long for the election to settle is
/// refused rather than applied: its master has likely given up on it.
const UNSETTLED_WAIT_MS: u64 = 500;

/// At most this many replicated writes wait per base for the write they
/// follow; beyond, they are refused as behind at once.
const MAX_GAP: usize = 64;

/// A batch takes at most `max_batch_writes` client writes, and this many
/// changes (one write has at most 1,000).
const MAX_BATCH_OPS: usize = 10_000;

/// The writes of one base and what waits for its store op. Allocated on the
/// first write or deferred request, freed when empty.
#[derive(Debug, Clone, Default)]
pub(super) struct BaseOps {
    queue: VecDeque<(ReqId, Vec<WriteOp>)>,
    busy: Option<Busy>,
    deferred: VecDeque<Deferred>,
    /// Replicated writes that came while our election was under way, with
    /// when they came: checked again once it settles (a new master's first
    /// writes wait a moment for their slaves instead of failing).
    unsettled: Vec<(u64, ReplicaWrite)>,
    /// Replicated writes that came before the write they follow, waiting
    /// for it (each until `came + gap_wait_ms`); tried again after each
    /// write applied here.
    gap: Vec<ReplicaWrite>,
}

impl BaseOps {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
            && self.busy.is_none()
            && self.deferred.is_empty()
            && self.unsettled.is_empty()
            && self.gap.is_empty()
    }

    pub(super) fn has_unsettled(&self) -> bool {
        !self.unsettled.is_empty()
    }
}

#[derive(Debug, Clone)]
enum Busy {
    /// Our batches in flight, oldest first: one open transaction.
    Batches(VecDeque<Batch>),
    Apply(Box<ReplicaWrite>),
    Dump,
}

#[derive(Debug, Clone)]
enum Deferred {
    Apply(Box<ReplicaWrite>),
    Getvers { req: ReqId, candidate: Seq },
    Dump { req: ReqId },
}

/// A write replicated to us.
#[derive(Debug, Clone)]
pub(super) struct ReplicaWrite {
    pub(super) req: ReqId,
    pub(super) from: ServiceId,
    pub(super) epoch: Seq,
    pub(super) prev: Vector,
    pub(super) next: Vector,
    pub(super) ops: Arc<[WriteOp]>,
    /// When it reached us (monotonic ms).
    pub(super) came: u64,
}

#[derive(Debug, Clone)]
struct Batch {
    /// The id of its Begin: names the batch in its REPLICATE calls.
    id: Id,
    reqs: Vec<ReqId>,
    epoch: Seq,
    ops: Arc<[WriteOp]>,
    vectors: Option<(Vector, Vector)>,
    /// Every slave, with its answer once it came.
    answers: Vec<(ServiceId, Option<Result<(), ReplicateFailure>>)>,
    calls: Vec<Id>,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its Begin runs.
    Begin,
    /// Sent; waiting for a majority.
    Replicating,
    /// A majority applied it: it commits with its window.
    Ready,
    /// A majority is impossible: it is rolled back, with the batches after
    /// it.
    Failed,
    /// The window's COMMIT runs.
    Commit,
    /// Its ROLLBACK (or ROLLBACK TO the savepoint before it) runs.
    Rollback,
}

impl Phase {
    /// Has a store op of the window in flight.
    fn storing(self) -> bool {
        matches!(self, Phase::Begin | Phase::Commit | Phase::Rollback)
    }
}

/// What a store op in flight is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum StoreKind {
    Begin,
    Commit,
    /// A ROLLBACK, or a ROLLBACK TO.
    Rollback,
    Apply,
    Dump,
}

impl BaseOps {
    /// A batch of ours is begun and not decided yet.
    pub(super) fn writing(&self) -> bool {
        matches!(self.busy, Some(Busy::Batches(_)))
    }

    fn window(&self) -> Option<&VecDeque<Batch>> {
        match self.busy.as_ref()? {
            Busy::Batches(w) => Some(w),
            _ => None,
        }
    }

    fn window_mut(&mut self) -> Option<&mut VecDeque<Batch>> {
        match self.busy.as_mut()? {
            Busy::Batches(w) => Some(w),
            _ => None,
        }
    }

    /// May another batch join the window? Only a full one (group commit
    /// takes every write that waits into the next batch anyway: splitting
    /// them over several batches costs a transaction and a round of
    /// REPLICATE calls each, for nothing unless one batch cannot hold
    /// them), only while every batch in it is sent and undecided, and only
    /// while nothing waits for the window to end.
    fn may_extend(&self, limit: usize, max_writes: usize) -> bool {
        self.window().is_some_and(|w| {
            w.len() < limit
                && w.iter().all(|b| b.phase == Phase::Replicating)
                && self.deferred.is_empty()
                && self.fills_a_batch(max_writes)
        })
    }

    /// Do the queued writes fill a whole batch?
    fn fills_a_batch(&self, max_writes: usize) -> bool {
        let mut changes = 0;
        for (n, (_, w)) in self.queue.iter().enumerate() {
            changes += w.len();
            if n + 1 >= max_writes || changes >= MAX_BATCH_OPS {
                return true;
            }
        }
        false
    }
}

impl Batch {
    fn applied(&self) -> usize {
        self.answers
            .iter()
            .filter(|(_, a)| matches!(a, Some(Ok(()))))
            .count()
    }

    fn detail(&self) -> String {
        self.answers
            .iter()
            .map(|(peer, a)| match a {
                None => format!("{peer}: still pending"),
                Some(Ok(())) => format!("{peer}: applied"),
                Some(Err(e)) => format!("{peer}: {e}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Replicating, it becomes Ready at a majority (the master included),
    /// and Failed as soon as a majority is impossible.
    fn tally(&mut self) {
        if self.phase != Phase::Replicating {
            return;
        }
        let (group, needed) = self.group();
        let applied = self.applied();
        let failed = self.answers.iter().filter(|(_, a)| a.is_some()).count() - applied;
        if 1 + applied >= needed {
            self.phase = Phase::Ready;
        } else if group - failed < needed {
            self.phase = Phase::Failed;
        }
    }

    /// The group (the master and its slaves) and its majority.
    fn group(&self) -> (usize, usize) {
        let group = self.answers.len() + 1;
        (group, group / 2 + 1)
    }

    fn no_quorum(&self) -> WriteRefusal {
        let (group, needed) = self.group();
        WriteRefusal::NoQuorum {
            acked: 1 + self.applied(),
            group,
            needed,
            detail: self.detail(),
        }
    }
}

impl Engine {
    /// Is the session our node of slot `i` was created in still usable?
    pub(super) fn session_live_for(&self, i: u32) -> bool {
        let slot = self.slots.get(i).expect("slot exists");
        !self.session_down && self.session.is_some_and(|s| s.epoch == slot.bound_epoch)
    }

    /// Emergency read-only mode: the bases whose replicas may differ.
    pub fn readonly(&self) -> &[Divergence] {
        &self.readonly
    }

    fn ops_mut(&mut self, i: u32) -> &mut BaseOps {
        self.slot_mut(i).ops.get_or_insert_with(Box::default)
    }

    fn write_done(&mut self, req: ReqId, i: u32, result: Result<Written, WriteRefusal>) {
        let base = self.slot_mut(i).base.clone();
        self.effects
            .push_back(Effect::WriteDone { req, base, result });
    }

    pub(super) fn client_write(&mut self, now: Now, req: ReqId, base: BaseName, ops: Vec<WriteOp>) {
        let Some(i) = self.find(&base) else {
            let result = Err(if self.exiting {
                WriteRefusal::Exiting
            } else {
                WriteRefusal::StatusChanged {
                    state: State::None,
                    session_live: false,
                }
            });
            self.effects
                .push_back(Effect::WriteDone { req, base, result });
            return;
        };
        if let Err(refusal) = self.write_check(now, i) {
            return self.write_done(req, i, Err(refusal));
        }
        // Read without allocating the base's ops: a refused write must not
        // leave an empty one behind (it would keep idle expiry away).
        let queued = self.slot_mut(i).ops.as_ref().map_or(0, |o| o.queue.len());
        if queued >= MAX_QUEUED_WRITES {
            return self.write_done(req, i, Err(WriteRefusal::Overloaded { queued }));
        }
        if self.queued_writes >= self.cfg.max_queued_writes {
            let queued = self.queued_writes;
            return self.write_done(req, i, Err(WriteRefusal::ServiceOverloaded { queued }));
        }
        self.ops_mut(i).queue.push_back((req, ops));
        self.queued_writes += 1;
        self.next_op(now, i);
    }

    /// May slot `i` write now? Its epoch if so. A master superseded by a
    /// candidate we vouched for leaves at once.
    fn write_check(&mut self, now: Now, i: u32) -> Result<Seq, WriteRefusal> {
        if self.exiting {
            return Err(WriteRefusal::Exiting);
        }
        if !self.readonly.is_empty() {
            return Err(WriteRefusal::ReadOnly);
        }
        let live = self.session_live_for(i);
        let no_fence = self.cfg.mutations.no_fence;
        let stopped = self.stopped;
        let slot = self.slot_mut(i);
        if let Some(master) = slot.fsm.master() {
            return Err(WriteRefusal::Redirect(master.clone()));
        }
        let state = slot.fsm.state();
        if state != State::Master || !live {
            return Err(WriteRefusal::StatusChanged {
                state,
                session_live: live,
            });
        }
        if stopped {
            return Err(WriteRefusal::StopWrites);
        }
        let Some(epoch) = slot.fsm.local_id() else {
            return Err(WriteRefusal::Failed("master without a node".into()));
        };
        if let Some(fence) = slot
            .fence
            .get()
            .filter(|f| !no_fence && seq_after(*f, epoch))
        {
            // A candidate holding a higher node asked our version: our node
            // is gone and we have not heard yet (sim seed 2368).
            let base = slot.base.clone();
            self.effects.push_back(Effect::Log(LogEvent::Deposed {
                base,
                why: format!("a candidate with node {fence} asked our version"),
            }));
            self.leave_and_rejoin(now, i);
            return Err(WriteRefusal::Superseded { epoch, fence });
        }
        Ok(epoch)
    }

    /// A base's store is idle: serve what waited, in order, then start the
    /// next batch; or, with batches in flight, add one to their window.
    fn next_op(&mut self, now: Now, i: u32) {
        let (limit, max_writes) = (self.cfg.pipeline_window.max(1), self.cfg.max_batch_writes);
        loop {
            let ops = self.ops_mut(i);
            if ops.busy.is_some() {
                if ops.may_extend(limit, max_writes) {
                    self.start_batch(now, i);
                }
                return;
            }
            if let Some(d) = ops.deferred.pop_front() {
                match d {
                    Deferred::Getvers { req, candidate } => self.getvers_served(i, req, candidate),
                    Deferred::Apply(w) => self.apply(now, i, *w),
                    Deferred::Dump { req } => self.dump(i, req),
                }
                continue;
            }
            if ops.queue.is_empty() {
                break;
            }
            self.start_batch(now, i);
        }
        if self.slot_mut(i).ops.as_ref().is_some_and(|o| o.is_empty()) {
            self.slot_mut(i).ops = None;
        }
    }

    fn start_batch(&mut self, now: Now, i: u32) {
        let epoch = self.write_check(now, i);
        let max_writes = self.cfg.max_batch_writes;
        let ops = self.ops_mut(i);
        let mut reqs = Vec::new();
        let mut all = Vec::new();
        while let Some((_, w)) = ops.queue.front() {
            let fits = reqs.len() < max_writes && all.len() + w.len() <= MAX_BATCH_OPS;
            if !fits && !reqs.is_empty() {
                break;
            }
            let (req, w) = ops.queue.pop_front().expect("front");
            reqs.push(req);
            all.extend(w);
        }
        self.queued_writes -= reqs.len();
        let epoch = match epoch {
            Ok(epoch) => epoch,
            Err(refusal) => {
                // The same answer for everything queued: the role is gone.
                let rest: Vec<ReqId> = self.ops_mut(i).queue.drain(..).map(|(r, _)| r).collect();
                self.queued_writes -= rest.len();
                for req in reqs.into_iter().chain(rest) {
                    self.write_done(req, i, Err(refusal.clone()));
                }
                return;
            }
        };
        let slaves: Vec<ServiceId> = self
            .slot_mut(i)
            .fsm
            .peers()
            .map(<[ServiceId]>::to_vec)
            .unwrap_or_default();
        let ops: Arc<[WriteOp]> = all.into();
        self.slot_mut(i).vouch = None;
        let id = self.pending(i, Pending::Store(StoreKind::Begin));
        let base = self.slot_mut(i).base.clone();
        let behind = self.ops_mut(i).window().map_or(0, VecDeque::len);
        self.effects.push_back(Effect::Store {
            id,
            base,
            op: StoreOp::Begin {
                ops: ops.clone(),
                writer: writer_stamp(epoch, id),
                behind,
            },
        });
        let batch = Batch {
            id,
            reqs,
            epoch,
            ops,
            vectors: None,
            answers: slaves.into_iter().map(|s| (s, None)).collect(),
            calls: Vec::new(),
            phase: Phase::Begin,
        };
        let base_ops = self.ops_mut(i);
        match base_ops.window_mut() {
            Some(window) => {
                window.push_back(batch);
                self.effects
                    .push_back(Effect::Observe(Observation::Pipelined { ahead: behind }));
            }
            None => base_ops.busy = Some(Busy::Batches(VecDeque::from([batch]))),
        }
    }

    fn batch_mut(&mut self, i: u32, id: Id) -> Option<&mut Batch> {
        self.slot_mut(i)
            .ops
            .as_mut()?
            .window_mut()?
            .iter_mut()
            .find(|b| b.id == id)
    }

    pub(super) fn stored(
        &mut self,
        now: Now,
        i: u32,
        kind: StoreKind,
        result: Result<StoreOk, StoreFailure>,
    ) {
        match kind {
            StoreKind::Begin => self.begun(now, i, result),
            StoreKind::Commit => self.committed(now, i, result),
            StoreKind::Rollback => self.rolled_back(now, i),
            StoreKind::Apply => self.applied(now, i, result),
            StoreKind::Dump => {
                let ops = self.ops_mut(i);
                if matches!(ops.busy, Some(Busy::Dump)) {
                    ops.busy = None;
                }
                self.next_op(now, i);
            }
        }
    }

    fn begun(&mut self, now: Now, i: u32, result: Result<StoreOk, StoreFailure>) {
        let base = self.slot_mut(i).base.clone();
        let Some(window) = self.ops_mut(i).window_mut() else {
            return;
        };
        let Some(batch) = window.back_mut().filter(|b| b.phase == Phase::Begin) else {
            return;
        };
        let (prev, next) = match result {
            Ok(StoreOk::Begun { prev, next }) => (prev, next),
            other => {
                let missing = matches!(other, Err(StoreFailure::Missing));
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(ok) => format!("unexpected store answer {ok:?}"),
                };
                // Undone alone: the batches before it stay open.
                let reqs = window.pop_back().map(|b| b.reqs).unwrap_or_default();
                if window.is_empty() {
                    self.ops_mut(i).busy = None;
                }
                for req in reqs {
                    let refusal = WriteRefusal::Failed(format!("local write failed: {why}"));
                    self.write_done(req, i, Err(refusal));
                }
                if missing && self.slot_mut(i).fsm.state() == State::Master {
                    // We lead without a copy (no replica held one when we
                    // were elected, and ours never came): step down, so that
                    // a replica created since leads and we copy from it.
                    self.effects.push_back(Effect::Log(LogEvent::Deposed {
                        base,
                        why: "this replica holds no copy of the base: a replica that \
                              holds one must lead (we copy from it)"
                            .into(),
                    }));
                    self.leave_and_rejoin(now, i);
                }
                self.advance(now, i);
                return self.next_op(now, i);
            }
        };
        batch.vectors = Some((prev.clone(), next.clone()));
        if window.iter().any(|b| b.phase == Phase::Failed) {
            // It follows a batch that will be rolled back: not sent, it
            // goes with it.
            if let Some(batch) = window.back_mut() {
                batch.phase = Phase::Failed;
            }
            self.advance(now, i);
            return self.next_op(now, i);
        }
        let batch = window.back_mut().expect("the batch begun");
        batch.phase = Phase::Replicating;
        let (batch_id, epoch, ops) = (batch.id, batch.epoch, batch.ops.clone());
        let slaves: Vec<ServiceId> = batch.answers.iter().map(|(s, _)| s.clone()).collect();
        let mut calls = Vec::new();
        for to in slaves {
            let id = self.pending(
                i,
                Pending::Replicate {
                    batch: batch_id,
                    peer: to.clone(),
                    decided: None,
                },
            );
            calls.push(id);
            self.effects.push_back(Effect::Replicate {
                id,
                to,
                base: base.clone(),
                epoch,
                prev: prev.clone(),
                next: next.clone(),
                ops: ops.clone(),
            });
        }
        if let Some(batch) = self.batch_mut(i, batch_id) {
            batch.calls = calls;
            batch.tally();
        }
        self.advance(now, i);
        self.next_op(now, i);
    }

    /// A slave's answer to a REPLICATE.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replicated(
        &mut self,
        now: Now,
        i: u32,
        id: Id,
        batch_id: Id,
        peer: ServiceId,
        decided: Option<bool>,
        result: Result<(), ReplicateFailure>,
    ) {
        if let Some(committed) = decided {
            // A late answer to a decided batch: a slave that did not apply a
            // committed write copies the base again.
            if committed && result.as_ref().is_err_and(ReplicateFailure::missed) {
                let base = self.slot_mut(i).base.clone();
                self.effects.push_back(Effect::Resync { to: peer, base });
            }
            return;
        }
        let Some(batch) = self.batch_mut(i, batch_id) else {
            return;
        };
        batch.calls.retain(|c| *c != id);
        if let Some((_, a)) = batch.answers.iter_mut().find(|(p, _)| *p == peer) {
            *a = Some(result);
        }
        if batch.phase == Phase::Replicating {
            batch.tally();
            self.advance(now, i);
            self.next_op(now, i);
        }
    }

    /// Decides the window once no store op of it runs: the first batch
    /// whose majority became impossible is rolled back with every batch
    /// after it (they follow it); once every batch has its majority, the
    /// window commits.
    fn advance(&mut self, now: Now, i: u32) {
        let Some(window) = self.ops_mut(i).window_mut() else {
            return;
        };
        if window.iter().any(|b| b.phase.storing()) {
            return;
        }
        // The batches kept when some roll back; None to commit them all.
        let undo = if let Some(keep) = window.iter().position(|b| b.phase == Phase::Failed) {
            Some(keep)
        } else if window.iter().all(|b| b.phase == Phase::Ready) {
            None
        } else {
            return;
        };
        let (kind, phase, op) = match undo {
            None => (StoreKind::Commit, Phase::Commit, StoreOp::Commit),
            Some(0) => (StoreKind::Rollback, Phase::Rollback, StoreOp::Rollback),
            Some(keep) => (
                StoreKind::Rollback,
                Phase::Rollback,
                StoreOp::RollbackTo { keep },
            ),
        };
        for b in window.iter_mut().skip(undo.unwrap_or(0)) {
            b.phase = phase;
        }
        let id = self.pending(i, Pending::Store(kind));
        let base = self.slot_mut(i).base.clone();
        self.effects.push_back(Effect::Store { id, base, op });
        if let Some(keep) = undo {
            self.roll_back(now, i, keep);
        }
    }

    /// The batches from `keep` on are rolled back: what their answers say
    /// about the replicas and about our role.
    fn roll_back(&mut self, now: Now, i: u32, keep: usize) {
        let base = self.slot_mut(i).base.clone();
        let Some(window) = self.ops_mut(i).window_mut() else {
            return;
        };
        let mut calls = Vec::new();
        let mut deposed = false;
        for b in window.iter_mut().skip(keep) {
            calls.append(&mut b.calls);
            deposed |= b.answers.iter().any(
                |(_, a)| matches!(a, Some(Err(ReplicateFailure::Refused(r))) if r.deposes_master()),
            );
        }
        // A slave that did not answer may hold the write we roll back. The
        // batches after it follow it: a slave holds one of them only if it
        // holds the first, so the first's answers tell.
        let first = &window[keep];
        let unknown = first
            .answers
            .iter()
            .any(|(_, a)| matches!(a, None | Some(Err(ReplicateFailure::Unknown(_)))));
        let detail = first.detail();
        let vectors = first.vectors.clone();
        self.decided(&calls, false);
        if unknown {
            let (prev, next) = vectors.unwrap_or_default();
            self.enter_readonly(
                now,
                base.clone(),
                format!(
                    "write {} -> {} may be on some replicas: {detail}",
                    render_vector(&prev),
                    render_vector(&next)
                ),
            );
        }
        if deposed {
            self.effects.push_back(Effect::Log(LogEvent::Deposed {
                base,
                why: "a peer follows another master".into(),
            }));
            self.leave_and_rejoin(now, i);
        }
    }

    /// Marks the calls still out for a batch as decided, so their answers
    /// are read as late ones.
    fn decided(&mut self, calls: &[Id], committed: bool) {
        for id in calls {
            if let Some(f) = self.inflight.get_mut(id) {
                if let Pending::Replicate { decided, .. } = &mut f.what {
                    *decided = Some(committed);
                }
            }
        }
    }

    fn enter_readonly(&mut self, now: Now, base: BaseName, detail: String) {
        self.effects.push_back(Effect::Log(LogEvent::ReadOnly {
            base: base.clone(),
            detail: detail.clone(),
        }));
        self.readonly.push(Divergence {
            base,
            detail,
            since_ms: now.wall_ms,
        });
    }

    /// Puts the service in emergency read-only mode for `base` by hand: for
    /// the simulation's mutation tests only.
    #[doc(hidden)]
    pub fn plant_readonly(&mut self, base: &BaseName) {
        self.readonly.push(Divergence {
            base: base.clone(),
            detail: "planted".into(),
            since_ms: 0,
        });
    }

    pub(super) fn clear_readonly(&mut self, bases: &[BaseName]) {
        self.readonly.retain(|d| !bases.contains(&d.base));
    }

    fn committed(&mut self, now: Now, i: u32, result: Result<StoreOk, StoreFailure>) {
        let base = self.slot_mut(i).base.clone();
        let ops = self.ops_mut(i);
        if !ops
            .window()
            .is_some_and(|w| w.iter().all(|b| b.phase == Phase::Commit))
        {
            return;
        }
        let Some(Busy::Batches(window)) = ops.busy.take() else {
            return;
        };
        let calls: Vec<Id> = window.iter().flat_map(|b| b.calls.clone()).collect();
        match result {
            Ok(_) => {
                self.decided(&calls, true);
                for batch in window {
                    let (_, next) = batch.vectors.clone().unwrap_or_default();
                    // Slaves that did not apply it (settling, unreachable)
                    // copy the base again; those still answering only if
                    // they end up not applying it (resyncing every slower
                    // slave turned each write into a full copy).
                    for (peer, a) in &batch.answers {
                        if matches!(a, Some(Err(e)) if e.missed()) {
                            self.effects.push_back(Effect::Resync {
                                to: peer.clone(),
                                base: base.clone(),
                            });
                        }
                    }
                    self.effects
                        .push_back(Effect::Observe(Observation::Committed {
                            writes: batch.reqs.len(),
                        }));
                    for req in batch.reqs {
                        let written = Written {
                            next: next.clone(),
                            epoch: batch.epoch,
                        };
                        self.write_done(req, i, Ok(written));
                    }
                }
            }
            Err(e) => {
                // The slaves have it and we do not: replicas differ.
                self.decided(&calls, false);
                let acked = window.iter().map(|b| 1 + b.applied()).min().unwrap_or(1);
                self.enter_readonly(
                    now,
                    base,
                    format!("local commit failed after {acked} acknowledgements: {e}"),
                );
                for req in window.into_iter().flat_map(|b| b.reqs) {
                    self.write_done(req, i, Err(WriteRefusal::ReadOnly));
                }
            }
        }
        self.next_op(now, i);
    }

    /// The batches being rolled back are undone: their writers hear why the
    /// first of them failed. The batches before them stay, and may commit.
    fn rolled_back(&mut self, now: Now, i: u32) {
        let Some(window) = self.ops_mut(i).window_mut() else {
            return;
        };
        let Some(keep) = window.iter().position(|b| b.phase == Phase::Rollback) else {
            return;
        };
        let undone: Vec<Batch> = window.drain(keep..).collect();
        if window.is_empty() {
            self.ops_mut(i).busy = None;
        }
        let refusal = undone[0].no_quorum();
        for req in undone.into_iter().flat_map(|b| b.reqs) {
            self.write_done(req, i, Err(refusal.clone()));
        }
        self.advance(now, i);
        self.next_op(now, i);
    }

    // ----- the slave's side -----

    pub(super) fn replicate_input(&mut self, now: Now, base: BaseName, w: ReplicaWrite) {
        let req = w.req;
        let i = match self.find(&base) {
            Some(i) => i,
            // Unknown here: start it (the check below makes it wanted), and
            // the write waits for it like any other.
            None if !self.exiting => self.ensure(now, &base),
            None => return self.replicate_done(req, Err(Refusal::Exiting)),
        };
        if !self.exiting {
            // A replicated write is an access: a slave of a base that is only
            // written must not expire (issue 14, H6).
            self.slot_mut(i).fsm.touch(now);
        }
        match self.replica_check(now, i, &w) {
            Ok(()) => {}
            Err(Refusal::NotSettled) if self.awaits_copy(i) => {
                // We wait for a copy from the master, and the master makes
                // the copy wait for its batch in flight: held here, this
                // write would hold both until the wait ran out, and then
                // fail the batch anyway (a write of a batch decided before
                // the copy is stale after it). Refused at once, the master
                // decides without us. Once the copy has arrived, a write
                // waits for its install as before: its batch began after
                // the copy was made, and follows it.
                return self.replicate_done(req, Err(Refusal::Restoring));
            }
            Err(Refusal::NotSettled) if super::in_flight(self.slot_mut(i).fsm.state()) => {
                let ops = self.ops_mut(i);
                if ops.unsettled.len() < MAX_UNSETTLED {
                    ops.unsettled.push((now.mono_ms, w));
                    // Refused when its wait is over, settled or not.
                    return self.rearm(now, i);
                }
                return self.replicate_done(req, Err(Refusal::NotSettled));
            }
            Err(refusal) => return self.replicate_done(req, Err(refusal)),
        }
        let ops = self.ops_mut(i);
        if ops.busy.is_some() {
            ops.deferred.push_back(Deferred::Apply(Box::new(w)));
        } else {
            self.apply(now, i, w);
        }
    }

    /// Whether slot `i` waits for its master's copy, which has not
    /// arrived yet.
    fn awaits_copy(&self, i: u32) -> bool {
        let Some(slot) = self.slots.get(i) else {
            return false;
        };
        slot.fsm.state() == State::Syncing
            && !slot.sync.get().is_some_and(|id| {
                matches!(
                    self.inflight.get(&id).map(|f| &f.what),
                    Some(Pending::Sync { fetched: true, .. })
                )
            })
    }

    /// Elections that settled (or gave up, or wait for a copy) with
    /// replicated writes waiting: each write is checked again, as if it came
    /// now, unless it waited too long.
    pub(super) fn settle_waiting(&mut self, now: Now) {
        while let Some((i, uid)) = self.resettle.pop() {
            let Some(slot) = self.live_mut(i, uid) else {
                continue;
            };
            let base = slot.base.clone();
            let waiting = slot
                .ops
                .as_mut()
                .map(|o| std::mem::take(&mut o.unsettled))
                .unwrap_or_default();
            for (at, w) in waiting {
                if now.mono_ms.saturating_sub(at) > UNSETTLED_WAIT_MS {
                    self.replicate_done(w.req, Err(Refusal::NotSettled));
                } else {
                    self.replicate_input(now, base.clone(), w);
                }
            }
            self.run_queue(now);
            if self.slot_mut(i).ops.as_ref().is_some_and(|o| o.is_empty()) {
                self.slot_mut(i).ops = None;
            }
        }
    }

    /// When the oldest replicated write waiting for slot `i` to settle must
    /// be refused.
    pub(super) fn unsettled_deadline(&self, i: u32) -> Option<u64> {
        let ops = self.slots.get(i)?.ops.as_ref()?;
        let unsettled = ops
            .unsettled
            .first()
            .map(|(at, _)| at.saturating_add(UNSETTLED_WAIT_MS));
        let gap = ops
            .gap
            .iter()
            .map(|w| w.came.saturating_add(self.cfg.gap_wait_ms))
            .min();
        match (unsettled, gap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a replicated write that does not follow our version may wait
    /// for the one it follows: it came a moment ago, and few wait.
    fn hold_for_gap(&self, now: Now, i: u32, w: &ReplicaWrite) -> bool {
        let waiting = self
            .slots
            .get(i)
            .and_then(|s| s.ops.as_ref())
            .map_or(0, |o| o.gap.len());
        waiting < MAX_GAP && now.mono_ms.saturating_sub(w.came) < self.cfg.gap_wait_ms
    }

    /// Refuses the replicated writes that waited their time for slot `i` to
    /// settle: their master must hear a refusal before it gives up on them
    /// (an unknown outcome would put it in emergency read-only mode).
    pub(super) fn expire_unsettled(&mut self, now: Now, i: u32) {
        let Some(ops) = self.slot_mut(i).ops.as_mut() else {
            return;
        };
        let over = ops
            .unsettled
            .partition_point(|(at, _)| now.mono_ms.saturating_sub(*at) >= UNSETTLED_WAIT_MS);
        let expired: Vec<ReqId> = ops.unsettled.drain(..over).map(|(_, w)| w.req).collect();
        let wait = self.cfg.gap_wait_ms;
        let ops = self.slot_mut(i).ops.as_mut().expect("ops");
        let (behind, still): (Vec<_>, Vec<_>) = std::mem::take(&mut ops.gap)
            .into_iter()
            .partition(|w| now.mono_ms.saturating_sub(w.came) >= wait);
        ops.gap = still;
        if ops.is_empty() {
            self.slot_mut(i).ops = None;
        }
        for req in expired {
            self.replicate_done(req, Err(Refusal::NotSettled));
        }
        if !behind.is_empty() {
            // The writes they follow never came: our copy is behind, fetch
            // the master's.
            self.feed(now, i, Event::SyncReq);
            for w in behind {
                self.replicate_done(w.req, Err(Refusal::Behind));
            }
        }
    }

    fn replicate_done(&mut self, req: ReqId, result: Result<(), Refusal>) {
        self.effects
            .push_back(Effect::ReplicateDone { req, result });
    }

    /// A slave applies a write only from the master it follows, under that
    /// master's epoch, and not from a master older than a candidate it
    /// vouched for.
    fn replica_check(&mut self, now: Now, i: u32, w: &ReplicaWrite) -> Result<(), Refusal> {
        if self.exiting {
            return Err(Refusal::Exiting);
        }
        let no_fence = self.cfg.mutations.no_fence;
        let no_copy_floor = self.cfg.mutations.no_copy_floor;
        let slot = self.slot_mut(i);
        let verdict = replica_verdict(
            slot.fsm.state(),
            slot.fsm.master(),
            slot.fsm.master_id(),
            slot.fence.get().filter(|_| !no_fence),
            &w.from,
            w.epoch,
        );
        let floor = if no_copy_floor { 0 } else { slot.copy_floor };
        match verdict {
            ReplicaVerdict::Apply if decided_before(floor, w) => Err(Refusal::Stale),
            ReplicaVerdict::Apply => Ok(()),
            ReplicaVerdict::NotSettled(_) => {
                // A master writes this base: it is wanted. Start it, or, if
                // it is pending or leaving (an idle slave's expiry), have it
                // rejoin once that ends.
                self.slot_mut(i).want = true;
                self.start(now, i, false);
                Err(Refusal::NotSettled)
            }
            ReplicaVerdict::Fenced { .. } => {
                self.effects
                    .push_back(Effect::Observe(Observation::WriteFenced));
                Err(Refusal::Fenced)
            }
            other => Err(other.refusal().unwrap_or(Refusal::NotSettled)),
        }
    }

    fn apply(&mut self, now: Now, i: u32, w: ReplicaWrite) {
        // Checked again: our role may have changed while it waited.
        if let Err(refusal) = self.replica_check(now, i, &w) {
            return self.replicate_done(w.req, Err(refusal));
        }
        let id = self.pending(i, Pending::Store(StoreKind::Apply));
        self.slot_mut(i).vouch = None;
        let base = self.slot_mut(i).base.clone();
        let op = StoreOp::Apply {
            prev: w.prev.clone(),
            next: w.next.clone(),
            ops: w.ops.clone(),
        };
        self.ops_mut(i).busy = Some(Busy::Apply(Box::new(w)));
        self.effects.push_back(Effect::Store { id, base, op });
    }

    fn applied(&mut self, now: Now, i: u32, result: Result<StoreOk, StoreFailure>) {
        let Some(Busy::Apply(w)) = self.ops_mut(i).busy.take() else {
            return;
        };
        let req = w.req;
        let answer = match result {
            Ok(_) => {
                // The writes that waited for this one may follow it now:
                // tried again first, in the order they came.
                let ops = self.ops_mut(i);
                for w in std::mem::take(&mut ops.gap).into_iter().rev() {
                    ops.deferred.push_front(Deferred::Apply(Box::new(w)));
                }
                Ok(())
            }
            Err(StoreFailure::OutOfOrder(_)) if self.hold_for_gap(now, i, &w) => {
                self.ops_mut(i).gap.push(*w);
                self.effects
                    .push_back(Effect::Observe(Observation::Overtaken));
                self.rearm(now, i);
                return self.next_op(now, i);
            }
            Err(StoreFailure::OutOfOrder(_) | StoreFailure::Missing) => {
                // Behind, or without a copy: fetch the master's.
                self.feed(now, i, Event::SyncReq);
                Err(Refusal::Behind)
            }
            Err(StoreFailure::Restoring) => Err(Refusal::Restoring),
            Err(StoreFailure::Loading) => Err(Refusal::Loading),
            Err(StoreFailure::Failed(_)) => Err(Refusal::StoreFailed),
        };
        self.replicate_done(req, answer);
        self.next_op(now, i);
    }

    // ----- copies and versions served to peers -----

    /// A peer's GETVERS: like OpenIO's DB_VERS it starts our side of the
    /// election. When it names our node (`master_seq`), we must own it. A
    /// candidate's is answered once no write is half-applied here, and
    /// fences older masters.
    pub(super) fn getvers_input(
        &mut self,
        now: Now,
        req: ReqId,
        base: BaseName,
        master_seq: Option<Seq>,
        candidate_seq: Option<Seq>,
        incarnation: Option<Incarnation>,
    ) {
        if let Some(ours) = self
            .find(&base)
            .and_then(|i| self.other_creation(i, incarnation))
        {
            self.effects.push_back(Effect::GetversServed {
                req,
                base,
                result: Err(GetversRefusal::OtherCreation { ours }),
            });
            return;
        }
        if let Err(e) = self.serve_getvers(now, &base, master_seq) {
            self.effects.push_back(Effect::GetversServed {
                req,
                base,
                result: Err(GetversRefusal::NotOwner(e)),
            });
            return;
        }
        let Some(candidate) = candidate_seq.filter(|_| !self.cfg.mutations.no_fence) else {
            self.effects.push_back(Effect::GetversServed {
                req,
                base,
                result: Ok(()),
            });
            return;
        };
        let i = self.ensure(now, &base);
        let ops = self.ops_mut(i);
        if ops.busy.is_some() {
            ops.deferred.push_back(Deferred::Getvers { req, candidate });
        } else {
            self.getvers_served(i, req, candidate);
            self.next_op(now, i);
        }
    }

    fn getvers_served(&mut self, i: u32, req: ReqId, candidate: Seq) {
        let slot = self.slot_mut(i);
        slot.raise_fence(candidate);
        let base = slot.base.clone();
        self.effects.push_back(Effect::GetversServed {
            req,
            base,
            result: Ok(()),
        });
    }

    /// A slave asks for a copy: only a master with a live session gives one,
    /// and never while a write is half-applied.
    pub(super) fn dump_input(&mut self, now: Now, req: ReqId, base: BaseName) {
        let Some(i) = self.find(&base) else {
            self.effects.push_back(Effect::DumpRefused {
                req,
                state: State::None,
                session_live: false,
            });
            return;
        };
        let locked = !self.cfg.mutations.no_dump_lock;
        let ops = self.ops_mut(i);
        if ops.busy.is_some() && locked {
            ops.deferred.push_back(Deferred::Dump { req });
            return;
        }
        self.dump(i, req);
        self.next_op(now, i);
    }

    fn dump(&mut self, i: u32, req: ReqId) {
        let live = self.session_live_for(i);
        let no_fence = self.cfg.mutations.no_fence;
        let state = self.slot_mut(i).fsm.state();
        if state != State::Master || !(live || no_fence) {
            self.effects.push_back(Effect::DumpRefused {
                req,
                state,
                session_live: live,
            });
            return;
        }
        let id = self.pending(i, Pending::Store(StoreKind::Dump));
        let slot = self.slot_mut(i);
        let base = slot.base.clone();
        // No batch is in flight (the copy waits for it), and ids only grow:
        // every batch below the next id is decided.
        let floor = writer_stamp(slot.fsm.local_id().unwrap_or_default(), self.next_id + 1);
        let ops = self.ops_mut(i);
        if ops.busy.is_none() {
            ops.busy = Some(Busy::Dump);
        }
        self.effects.push_back(Effect::Store {
            id,
            base,
            op: StoreOp::Dump { req, floor },
        });
    }
}

/// Was the batch of `w` decided before the copy whose floor is `floor` was
/// made? Only a batch of the same master epoch can tell: its id (the low
/// 32 bits of its writer stamp, in serial order) is below the floor's.
/// The batch's stamp is the writer of the tables it changes.
fn decided_before(floor: u64, w: &ReplicaWrite) -> bool {
    if floor == 0 {
        return false;
    }
    let batch = w
        .next
        .iter()
        .filter(|(table, v)| w.prev.get(*table) != Some(*v))
        .map(|(_, v)| v.writer)
        .next();
    batch.is_some_and(|stamp| {
        stamp >> 32 == floor >> 32 && ((stamp as u32).wrapping_sub(floor as u32) as i32) < 0
    })
}

/// Who made a batch, unique by construction (issue 14, H2): the fencing
/// epoch (our node's sequence, never reused under an election directory)
/// in the high 32 bits, and the engine's id of the batch's `Begin` (never
/// reused by this engine) in the low 32. Two batches at the same version
/// counters, one committed and one rolled back, never carry the same stamp,
/// whatever the clocks say.
pub(crate) fn writer_stamp(epoch: Seq, id: Id) -> u64 {
    ((epoch as u64 & 0xFFFF_FFFF) << 32) | (id & 0xFFFF_FFFF)
}
