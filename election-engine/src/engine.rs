//! The engine: every election of one service, its timers, and the driver
//! that turns the state machine's [`Action`]s into [`Effect`]s and their
//! results into [`Event`]s.

mod writes;

pub use writes::MAX_QUEUED_WRITES;

use crate::io::{
    Divergence, Effect, Id, Input, LogEvent, NotOwner, Observation, RemoteVersion, SessionTag,
    WatchId, ZkFailure, ZkOk, ZkOp,
};
use election_core::maybe::Maybe;
use election_core::names::{
    parse_node_name, seq_after, seq_latest, seq_offset, BaseName, ElectionKey, Seq, ServiceId,
    ServiceType, ZkLayout,
};
use election_core::peer::{getvers_outcome, master_from_node};
use election_core::version::{Incarnation, ReplicaVersion};
use election_core::{Action, Config, Election, Event, GetversOutcome, MasterBadReason, Now, State};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Settings of the engine (election timers are in `election`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub election: Config,
    /// An idle NONE election is forgotten after this long.
    pub expire_none_ms: u64,
    /// Disconnected from ZooKeeper this long, the elections bound to the
    /// session are reset (the server caps it below the session timeout).
    pub grace_ms: u64,
    /// At most this many elections between NONE and a final state at once;
    /// the others wait in NONE, their deadlines not yet running.
    pub max_in_flight: usize,
    /// At most this many client writes wait over all the bases (each base
    /// also holds at most `MAX_QUEUED_WRITES`): beyond, a clear refusal.
    pub max_queued_writes: usize,
    /// A replicated write that reaches a slave before the one it follows
    /// (two REPLICATE calls overtaking each other) waits this long for it,
    /// then is refused as behind and the base copied again. Keep it well
    /// under the masters' replicate timeout; 0 refuses at once.
    pub gap_wait_ms: u64,
    /// At most this many batches of one base in flight at once (pipelined
    /// replication): once the queued writes fill a whole batch, the next
    /// batch is begun, in a savepoint of the same transaction, and sent
    /// while the earlier ones wait for their majority. 1 sends a base's
    /// batches one after the other.
    pub pipeline_window: usize,
    /// A batch takes at most this many client writes.
    pub max_batch_writes: usize,
    /// Faults planted on purpose, for the simulation's mutation tests only:
    /// nothing in the server's configuration can set them.
    #[doc(hidden)]
    pub mutations: Mutations,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            election: Config::default(),
            expire_none_ms: 600_000,
            grace_ms: 5_000,
            max_in_flight: 1_000,
            max_queued_writes: 8_192,
            gap_wait_ms: 100,
            pipeline_window: 1,
            max_batch_writes: 256,
            mutations: Mutations::default(),
        }
    }
}

#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct Mutations {
    /// LISTING always finds our own node lowest (two masters follow).
    pub self_lowest: bool,
    /// A wanted election that falls back to NONE waits for a request.
    pub no_retry: bool,
    /// No fence: slaves accept writes from masters older than a candidate
    /// they vouched for, and masters serve copies without a live session.
    pub no_fence: bool,
    /// Copies are served while a write is half-applied.
    pub no_dump_lock: bool,
    /// Slaves apply batches decided before the copy they hold.
    pub no_copy_floor: bool,
    /// A farewell is kept whatever the states in between, and used even
    /// after a newer candidate asked us.
    pub farewell_unguarded: bool,
}

/// A watch the election relies on: its firing means the node is gone.
#[derive(Debug, Clone, Copy)]
struct Armed {
    watch: WatchId,
    generation: u64,
    seq: Seq,
}

/// A lower node read (with a watch) while LISTING: reading the master's node
/// reuses it instead of asking again (one round trip less for followers).
#[derive(Debug, Clone)]
struct MasterNode {
    seq: Seq,
    session: i64,
    data: Vec<u8>,
    watch: WatchId,
    deleted: bool,
}

/// What stands in for GETVERS answers (issue 15). Valid while our replica
/// does not change: any write, apply or copy here drops it.
#[derive(Debug, Clone)]
enum Vouch {
    /// A candidate's GETVERS, seen from the peer it asked, when its version
    /// and ours agreed: what a GETVERS of ours to that candidate, as our
    /// master at `seq`, would find. The candidate names the node its
    /// session created, so while `seq` is in our listing it is the
    /// candidate's; its version cannot change before it leads (a candidate
    /// takes no write), and after, only by its own writes, which reach us in
    /// order as they would after a real GETVERS answered a moment earlier
    /// (a gap makes us copy). Writes it made before we followed would not
    /// reach us: our GETVERS is still sent, and an answer showing the
    /// master ahead makes us copy at once (`Pending::Verify`).
    Candidate { from: ServiceId, seq: Seq },
    /// Our master's farewell, while we followed it from our node `node`,
    /// when its final version and ours agreed. If that node becomes the
    /// lowest right after, we lead without waiting for GETVERS answers:
    /// every acknowledged write went through that master, which took none
    /// after telling its version (it tells only with no batch in flight,
    /// and leaves before any other), so ours holds them all. Masters older
    /// than it were fenced by its own round. Kept only along SLAVE ->
    /// LISTING -> CHECKING_SLAVES, and void once a newer candidate asked us
    /// (our fence passed `epoch`): then another master may have written.
    Farewell { epoch: Seq, node: Seq },
}

/// The group's listing, asked right behind the create of our node (a
/// session's requests are processed in order, so it sees the node): the
/// listing LISTING asks for next. `seq` is our node's, `None` until the
/// create (request `create`) answers.
#[derive(Debug, Clone)]
enum Prefetch {
    InFlight {
        create: Id,
        seq: Option<Seq>,
        id: Id,
        /// LISTING already asked for it: its op.
        wanted: Option<u64>,
    },
    Ready {
        create: Id,
        seq: Option<Seq>,
        session: Option<SessionTag>,
        result: Result<ZkOk, ZkFailure>,
    },
}

/// One election and what the driver keeps about its operations.
#[derive(Debug, Clone)]
pub struct Slot {
    uid: u64,
    pub base: BaseName,
    pub fsm: Election,
    /// The session epoch our node was created in.
    pub bound_epoch: u64,
    /// Highest node of a candidate we answered a GETVERS for: writes from
    /// masters of lower epochs are refused.
    pub fence: Maybe<Seq>,
    rejoin_when_restored: bool,
    /// Our latest node and its ephemeral owner (create's Stat).
    node_owner: Option<(Seq, i64)>,
    /// Boxed, like the other transient parts: an idle election holds a
    /// pointer, not the state of a listing or a read (issue 13's 2 KiB).
    prefetch: Option<Box<Prefetch>>,
    master_node: Option<Box<MasterNode>>,
    self_watch: Option<Armed>,
    master_watch: Option<Armed>,
    sync: Maybe<Id>,
    timer_at: Maybe<u64>,
    /// When the election left NONE (time to final), and the last master it
    /// settled on (failovers).
    started: Maybe<u64>,
    last_master: Option<ServiceId>,
    /// Asked for by a client, or settled once: when it falls back to NONE it
    /// starts again after `retry_at`, with no request needed.
    pub want: bool,
    retries: u8,
    retry_at: Maybe<u64>,
    /// Waiting for admission.
    pub queued: bool,
    /// Writes waiting or in flight, and what waits for them.
    ops: Option<Box<writes::BaseOps>>,
    /// The batch floor of the last copy installed from a master (0: none).
    copy_floor: u64,
    /// What answers our next GETVERS without asking.
    vouch: Option<Box<Vouch>>,
    /// The creation of the base our last directory read named (none before
    /// the first): our GETVERS carries it, a peer's is compared with it.
    creation: Option<Incarnation>,
}

impl Slot {
    /// This election's identity within the engine: one forgotten by idle
    /// expiry and created again is another, and its log starts over.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// Keeps the latest candidate node we vouched for (serial order, so the
    /// fence survives the sequence wrap).
    fn raise_fence(&mut self, seq: Seq) {
        self.fence = Maybe::some(self.fence.get().map_or(seq, |f| seq_latest(f, seq)));
    }
}

/// What an op in flight is for.
#[derive(Debug, Clone)]
enum Pending {
    Peers {
        op: u64,
    },
    /// A directory read of our own, after a peer named another creation.
    Recheck,
    Create {
        op: u64,
    },
    Exists {
        op: u64,
        seq: Seq,
        generation: u64,
        watch: WatchId,
    },
    Prefetch,
    List {
        op: u64,
        seq: Seq,
    },
    /// Reading a lower node while LISTING; `rest` are the next candidates.
    Scan {
        op: u64,
        ours: Seq,
        seq: Seq,
        rest: Vec<Seq>,
        watch: WatchId,
    },
    /// A GETVERS to our master whose answer we did not wait for (its word
    /// as a candidate stood for it): if it shows the master ahead by now
    /// (it wrote before we followed), we copy from it at once.
    Verify {
        peer: ServiceId,
        seq: Seq,
    },
    /// The lowest node read (with a watch) on a candidate's word that it
    /// is `from`'s: the listing did not wait for it; a read that does not
    /// confirm it makes us list again.
    ClaimCheck {
        seq: Seq,
        from: ServiceId,
        generation: u64,
    },
    OwnerCheck {
        op: u64,
    },
    GetMaster {
        op: u64,
        seq: Seq,
        generation: u64,
        watch: WatchId,
    },
    Delete {
        op: Option<u64>,
        seq: Seq,
    },
    Getvers {
        op: u64,
        peer: ServiceId,
        master_seq: Option<Seq>,
    },
    Sync {
        op: u64,
        master: ServiceId,
        /// The copy arrived and is being installed (`Input::SyncFetched`).
        fetched: bool,
    },
    Store(writes::StoreKind),
    /// A REPLICATE of the batch whose Begin was `batch`; `decided` once
    /// the batch committed (`true`) or rolled back.
    Replicate {
        batch: Id,
        peer: ServiceId,
        decided: Option<bool>,
    },
}

#[derive(Debug, Clone)]
struct InFlight {
    slot: u32,
    uid: u64,
    what: Pending,
}

/// The elections, in chunks of `SLAB_CHUNK` entries. A chunk is one large
/// allocation, which the allocator maps apart from its small-object heap:
/// 100,000 slots are not 100,000 small allocations among which a start
/// storm's short-lived ones stay stuck (at 100,000, glibc kept 0.6 KiB per
/// election of freed memory it could not return, docs/PROFILES.md). A free
/// entry is reused before a chunk is added; chunks are never given back.
struct Slab {
    chunks: Vec<Box<[Option<Slot>]>>,
    /// Entries handed out so far (the next new index).
    len: usize,
}

const SLAB_CHUNK: usize = 1024;

impl Slab {
    fn new() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: u32) -> Option<&Slot> {
        let i = i as usize;
        self.chunks.get(i / SLAB_CHUNK)?[i % SLAB_CHUNK].as_ref()
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut Slot> {
        let i = i as usize;
        self.chunks.get_mut(i / SLAB_CHUNK)?[i % SLAB_CHUNK].as_mut()
    }

    /// Fills entry `i`: a free one, or the next new one.
    fn put(&mut self, i: u32, slot: Slot) {
        let i = i as usize;
        debug_assert!(i <= self.len);
        if i / SLAB_CHUNK == self.chunks.len() {
            self.chunks.push((0..SLAB_CHUNK).map(|_| None).collect());
        }
        self.len = self.len.max(i + 1);
        self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK] = Some(slot);
    }

    fn take(&mut self, i: u32) -> Option<Slot> {
        let i = i as usize;
        self.chunks.get_mut(i / SLAB_CHUNK)?[i % SLAB_CHUNK].take()
    }

    /// The filled entries from index `from` on, in order.
    fn iter_from(&self, from: usize) -> impl Iterator<Item = (usize, &Slot)> {
        self.chunks
            .iter()
            .enumerate()
            .skip(from / SLAB_CHUNK)
            .flat_map(|(c, chunk)| {
                chunk
                    .iter()
                    .enumerate()
                    .filter_map(move |(j, s)| s.as_ref().map(|s| (c * SLAB_CHUNK + j, s)))
            })
            .filter(move |(i, _)| *i >= from)
    }
}

/// Every election of one service. See the crate's documentation for the
/// contract with the code that runs it.
pub struct Engine {
    cfg: EngineConfig,
    me: ServiceId,
    stype: ServiceType,
    layout: ZkLayout,
    slots: Slab,
    free: Vec<u32>,
    /// Slot by base name: hashed with a fixed hasher (runs replay) and
    /// compared with the slot's own name, so no second copy of every name.
    index: hashbrown::HashTable<u32>,
    timers: BTreeSet<(u64, u32)>,
    inflight: HashMap<Id, InFlight>,
    next_id: u64,
    effects: VecDeque<Effect>,
    /// Events produced while executing actions, fed after the current one.
    queue: VecDeque<(u32, u64, Event)>,
    /// Elections that settled with replicated writes waiting (slot, uid).
    resettle: Vec<(u32, u64)>,
    session: Option<SessionTag>,
    /// The current session was reported lost and no usable one is back:
    /// retries wait for `SessionRestored` instead of failing in a loop.
    session_down: bool,
    /// Disconnected: the session's epoch and when its grace period ends.
    disconnected: Option<(u64, u64)>,
    /// The session whose grace period was spent, until it is back or gone.
    grace_spent: Option<u64>,
    allow_master: bool,
    /// Stop-writes is on: no write is taken.
    stopped: bool,
    /// Emergency read-only mode: why, per base.
    readonly: Vec<Divergence>,
    exiting: bool,
    /// Elections between NONE and a final state, and those waiting to start
    /// (urgent ones are waited on by a client).
    in_flight: usize,
    urgent: VecDeque<(u32, u64)>,
    background: VecDeque<(u32, u64)>,
    /// Client writes waiting in every base's queue (not yet in a batch).
    queued_writes: usize,
    /// Nodes of ours whose deletion failed, waiting to be deleted again,
    /// and those being deleted (rare: a leave during a ZooKeeper outage).
    leftovers: Vec<Leftover>,
    leftover_calls: HashMap<Id, Leftover>,
    /// One copy of each peer set (ourselves left out): most bases of a
    /// service share a few, and every election keeps its own. A set is not
    /// dropped with its last election; the table is cleared when it holds
    /// 100,000 (elections keep their copies).
    peer_sets: std::collections::HashSet<Arc<[ServiceId]>>,
    /// `cfg.election`, shared by every election.
    election: Arc<election_core::Config>,
}

/// A node of ours that a leave or a cleanup failed to delete. It is deleted
/// again, with back-off, until ZooKeeper says it is gone, or its session is
/// (an ephemeral node goes with it). Kept by path, not by slot: the
/// election may be forgotten meanwhile.
#[derive(Debug, Clone)]
struct Leftover {
    path: String,
    base: BaseName,
    seq: Seq,
    /// The session the node was created in.
    epoch: u64,
    at: u64,
    tries: u32,
}

impl Engine {
    pub fn new(cfg: EngineConfig, me: ServiceId, stype: ServiceType, layout: ZkLayout) -> Self {
        let allow_master = cfg.election.allow_master;
        let election = Arc::new(cfg.election.clone());
        Self {
            cfg,
            me,
            stype,
            layout,
            slots: Slab::new(),
            free: Vec::new(),
            index: hashbrown::HashTable::new(),
            timers: BTreeSet::new(),
            inflight: HashMap::new(),
            next_id: 0,
            effects: VecDeque::new(),
            queue: VecDeque::new(),
            resettle: Vec::new(),
            session: None,
            session_down: false,
            disconnected: None,
            grace_spent: None,
            allow_master,
            stopped: false,
            readonly: Vec::new(),
            exiting: false,
            in_flight: 0,
            urgent: VecDeque::new(),
            queued_writes: 0,
            background: VecDeque::new(),
            leftovers: Vec::new(),
            leftover_calls: HashMap::new(),
            peer_sets: Default::default(),
            election,
        }
    }

    /// The shared copy of a base's peers as the directory names them,
    /// ourselves left out.
    fn intern_peers(&mut self, all: Vec<ServiceId>) -> Arc<[ServiceId]> {
        const MAX_SETS: usize = 100_000;
        let others: Vec<ServiceId> = all.into_iter().filter(|p| *p != self.me).collect();
        if let Some(known) = self.peer_sets.get(others.as_slice()) {
            return known.clone();
        }
        if self.peer_sets.len() >= MAX_SETS {
            self.peer_sets.clear();
        }
        let set: Arc<[ServiceId]> = others.into();
        self.peer_sets.insert(set.clone());
        set
    }

    /// Elections between NONE and a final state.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Elections waiting for admission.
    pub fn queued(&self) -> usize {
        self.elections().filter(|s| s.queued).count()
    }

    pub fn me(&self) -> &ServiceId {
        &self.me
    }

    pub fn is_exiting(&self) -> bool {
        self.exiting
    }

    /// May our elections become master (configured, and not stopped)?
    pub fn allows_master(&self) -> bool {
        self.allow_master
    }

    /// The effects emitted so far, in emission order.
    pub fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    /// A start storm grows the queues to its peak (hundreds of bytes per
    /// election at 20,000); once drained, that memory goes back.
    fn give_back_buffers(&mut self) {
        const KEEP: usize = 1024;
        if self.effects.is_empty() && self.effects.capacity() > 4 * KEEP {
            self.effects.shrink_to(KEEP);
        }
        if self.queue.is_empty() && self.queue.capacity() > 4 * KEEP {
            self.queue.shrink_to(KEEP);
        }
    }

    /// When to call `handle(now, Input::Tick)` next (monotonic ms).
    pub fn next_wakeup(&self) -> Option<u64> {
        let timer = self.timers.first().map(|(at, _)| *at);
        let leftover = self.leftovers.iter().map(|l| l.at).min();
        let grace = self.disconnected.map(|(_, at)| at);
        [timer, leftover, grace].into_iter().flatten().min()
    }

    pub fn key(&self, base: &BaseName) -> ElectionKey {
        ElectionKey::compute(base, &self.stype)
    }

    /// The election of `base`, if it exists.
    pub fn view(&self, base: &BaseName) -> Option<&Slot> {
        self.find(base).and_then(|i| self.slots.get(i))
    }

    /// The election of `base`, to change by hand: for the simulation's
    /// mutation tests only.
    #[doc(hidden)]
    pub fn view_mut(&mut self, base: &BaseName) -> Option<&mut Slot> {
        let i = self.find(base)?;
        self.slots.get_mut(i)
    }

    /// Drops the election of `base` at once: for the simulation's mutation
    /// tests only (the engine itself forgets elections by idle expiry).
    #[doc(hidden)]
    pub fn forget(&mut self, base: &BaseName) {
        if let Some(i) = self.find(base) {
            self.remove(i);
        }
    }

    /// Every election, in slot order.
    pub fn elections(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter_from(0).map(|(_, s)| s)
    }

    /// The masterships a balance hands over: masters idle for at least
    /// `idle_ms`, least recently used first, at most `max` of them; and how
    /// many were eligible. The caller leaves them at its own pace (Leave or
    /// LeaveAndRejoin).
    pub fn balance_candidates(&self, now: Now, max: usize, idle_ms: u64) -> (usize, Vec<BaseName>) {
        let mut masters: Vec<(u64, &BaseName)> = self
            .elections()
            .filter(|s| s.fsm.state() == State::Master)
            .map(|s| (s.fsm.last_access(), &s.base))
            .filter(|(last, _)| now.mono_ms.saturating_sub(*last) >= idle_ms)
            .collect();
        let eligible = masters.len();
        masters.sort();
        masters.truncate(max);
        (
            eligible,
            masters.into_iter().map(|(_, b)| b.clone()).collect(),
        )
    }

    /// The elections from slot `from` on, each with its slot: a cursor to
    /// page through them in several short borrows. An election created or
    /// forgotten between two pages may be missed or seen twice.
    pub fn elections_from(&self, from: usize) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots.iter_from(from)
    }

    /// Elections that are members (neither NONE nor FAILED).
    pub fn members(&self) -> usize {
        self.elections()
            .filter(|s| !matches!(s.fsm.state(), State::None | State::Failed))
            .count()
    }

    pub fn fence(&self, base: &BaseName) -> Option<Seq> {
        self.view(base).and_then(|s| s.fence.get())
    }

    /// A candidate holding node `seq` asked our version: from now on, writes
    /// from masters of lower epochs are refused. Such a master's node is gone
    /// (the candidate saw none lower than its own), but it may not know yet,
    /// and a write it replicated to us after we answered would be missing
    /// from the candidate's copy (found by the simulation, see sim/README).
    /// The caller makes sure no write to the base is half-applied: a shell
    /// sends `Input::GetversReq`, which orders this with the writes (this
    /// entry is for tests).
    #[doc(hidden)]
    pub fn raise_fence(&mut self, now: Now, base: &BaseName, seq: Seq) {
        let i = self.ensure(now, base);
        self.slot_mut(i).raise_fence(seq);
    }

    /// A peer's GETVERS: like OpenIO's DB_VERS it starts our side of the
    /// election. When it names our node (`master_seq`), we must own it. A
    /// shell sends `Input::GetversReq` (which also fences, in order with
    /// the writes); this entry is for tests.
    #[doc(hidden)]
    pub fn serve_getvers(
        &mut self,
        now: Now,
        base: &BaseName,
        master_seq: Option<Seq>,
    ) -> Result<(), NotOwner> {
        if !self.exiting {
            self.handle(
                now,
                Input::Poke {
                    base: base.clone(),
                    touch: false,
                },
            );
        }
        let Some(seq) = master_seq else {
            return Ok(());
        };
        let (owned, state) = self
            .view(base)
            .map_or((None, State::None), |s| (s.fsm.local_id(), s.fsm.state()));
        if owned == Some(seq) {
            Ok(())
        } else {
            Err(NotOwner { seq, owned, state })
        }
    }

    pub fn handle(&mut self, now: Now, input: Input) {
        self.give_back_buffers();
        match input {
            Input::Tick => self.tick(now),
            Input::Poke { base, touch } => {
                let i = self.ensure(now, &base);
                if touch {
                    let slot = self.slot_mut(i);
                    slot.fsm.touch(now);
                    slot.want = true;
                }
                self.start(now, i, touch);
            }
            Input::Leave { base } => {
                if let Some(i) = self.find(&base) {
                    self.farewell(i);
                    let slot = self.slot_mut(i);
                    slot.want = false;
                    slot.retry_at = Maybe::NONE;
                    self.feed(now, i, Event::LeaveReq);
                }
            }
            Input::Creation {
                base,
                directory,
                replica,
            } => self.creation_read(now, base, directory, replica),
            Input::LeaveAndRejoin { base } => {
                if let Some(i) = self.find(&base) {
                    self.farewell(i);
                    self.leave_and_rejoin(now, i);
                }
            }
            Input::SyncReq { base } => {
                let i = self.ensure(now, &base);
                self.feed(now, i, Event::SyncReq);
            }
            Input::UseReceived { base, from, master } => {
                if let (Some(epoch), Some(i)) = (master, self.find(&base)) {
                    let fsm = &self.slot_mut(i).fsm;
                    match (fsm.state(), fsm.local_id()) {
                        // A claim from a node older than ours is late: its
                        // holder was master before us. Leaving on it would
                        // depose the current master for nothing.
                        (State::Master, Some(ours)) if !seq_after(epoch, ours) => {
                            self.effects
                                .push_back(Effect::Log(LogEvent::StaleMasterClaim {
                                    base: base.clone(),
                                    from,
                                    epoch,
                                    ours,
                                }));
                        }
                        (State::Master, _) => {
                            self.effects.push_back(Effect::Log(LogEvent::DoubleMaster {
                                base: base.clone(),
                                from,
                            }));
                            self.feed(now, i, Event::LeaveReq);
                        }
                        _ => {}
                    }
                }
                let i = self.ensure(now, &base);
                self.start(now, i, false);
            }
            Input::StopWrites(stopped) => self.stop_writes(now, stopped),
            Input::Exit => {
                self.exiting = true;
                for i in self.slot_indices() {
                    self.farewell(i);
                    let slot = self.slot_mut(i);
                    slot.fsm.set_exiting();
                    slot.want = false;
                    slot.retry_at = Maybe::NONE;
                    self.feed(now, i, Event::LeaveReq);
                }
            }
            Input::ExitFast => self.exiting = true,
            Input::SessionConnected(tag) => {
                if self.session.is_none_or(|s| s.epoch <= tag.epoch) {
                    self.session = Some(tag);
                    self.session_down = false;
                }
            }
            Input::SessionLost { epoch } => {
                if self.disconnected.is_some_and(|(e, _)| e == epoch) {
                    self.disconnected = None;
                }
                if self.grace_spent == Some(epoch) {
                    self.grace_spent = None;
                }
                self.session_lost(now, epoch);
            }
            Input::SessionRestored => self.session_restored(now),
            Input::Disconnected { epoch } => {
                let current = self.session.is_none_or(|s| s.epoch == epoch);
                if current && self.disconnected.is_none() && self.grace_spent != Some(epoch) {
                    self.disconnected = Some((epoch, now.mono_ms + self.cfg.grace_ms));
                }
            }
            Input::Reconnected { epoch } => {
                if self.disconnected.is_some_and(|(e, _)| e == epoch) {
                    self.disconnected = None;
                }
                if self.grace_spent == Some(epoch) {
                    self.grace_spent = None;
                    self.session_restored(now);
                }
            }
            Input::Zk {
                id,
                session,
                result,
            } => {
                if let Some(s) = session {
                    if self.session.is_none_or(|c| c.epoch < s.epoch) {
                        self.session = Some(s);
                    }
                }
                if let Some(f) = self.inflight.remove(&id) {
                    self.zk_done(now, f, id, session, result);
                } else if let Some(l) = self.leftover_calls.remove(&id) {
                    self.leftover_done(now, l, result);
                }
            }
            Input::WatchFired { watch, deleted } => self.watch_fired(now, watch, deleted),
            Input::Peers { id, result } => {
                let Some(f) = self.inflight.remove(&id) else {
                    return;
                };
                let Some(base) = self.live(f.slot, f.uid).map(|s| s.base.clone()) else {
                    return;
                };
                if let Ok(Some(entry)) = &result {
                    self.slot_mut(f.slot).creation = Some(entry.incarnation);
                    if let Some(replica) = entry.replica {
                        self.creation_read(now, base.clone(), entry.incarnation, replica);
                    }
                }
                let Pending::Peers { op } = f.what else {
                    return;
                };
                let peers = match result {
                    Ok(Some(entry)) => Some(self.intern_peers(entry.peers)),
                    Ok(None) => {
                        self.slot_mut(f.slot).want = false;
                        self.effects
                            .push_back(Effect::Log(LogEvent::NotManaged { base }));
                        None
                    }
                    Err(error) => {
                        self.effects
                            .push_back(Effect::Log(LogEvent::PeersFailed { base, error }));
                        None
                    }
                };
                self.feed(now, f.slot, Event::GetpeersDone { op, peers });
            }
            Input::Getvers { id, remote, local } => {
                let Some(f) = self.inflight.remove(&id) else {
                    return;
                };
                if let Pending::Verify { peer, seq } = &f.what {
                    if self.live(f.slot, f.uid).is_some() {
                        self.verified(now, f.slot, peer, *seq, remote, local);
                    }
                    return;
                }
                let Pending::Getvers {
                    op,
                    peer,
                    master_seq,
                } = f.what
                else {
                    return;
                };
                let Some(base) = self.live(f.slot, f.uid).map(|s| s.base.clone()) else {
                    return;
                };
                let (outcome, unknown) = match (local, remote) {
                    (Err(e), _) => (
                        GetversOutcome::Ko(format!("reading the local version failed: {e}")),
                        false,
                    ),
                    (_, Err(e)) => (GetversOutcome::Ko(e), false),
                    (_, Ok(RemoteVersion::Refused(reason))) => (
                        GetversOutcome::Ko(format!("{peer} refused: {reason}")),
                        false,
                    ),
                    (Ok(local), Ok(RemoteVersion::Version(version))) => (
                        getvers_outcome(&local, &version, &peer, master_seq.is_some()),
                        local.is_unknown() || version.is_unknown(),
                    ),
                };
                if let (GetversOutcome::Ko(why), true) = (&outcome, unknown) {
                    self.effects.push_back(Effect::Log(LogEvent::Rookie {
                        base,
                        why: why.clone(),
                    }));
                }
                self.feed(now, f.slot, Event::Getvers { op, peer, outcome });
            }
            Input::SyncFetched { id } => {
                if let Some(Pending::Sync { fetched, .. }) =
                    self.inflight.get_mut(&id).map(|f| &mut f.what)
                {
                    *fetched = true;
                }
            }
            Input::Synced { id, result, floor } => {
                let Some(f) = self.inflight.remove(&id) else {
                    return;
                };
                let Pending::Sync { op, master, .. } = f.what else {
                    return;
                };
                let Some(slot) = self.live_mut(f.slot, f.uid) else {
                    return;
                };
                if result.is_ok() {
                    // Installed, whether or not the election still waits
                    // for it: batches decided before it are stale here.
                    slot.copy_floor = floor;
                }
                if slot.sync.get() != Some(id) {
                    return;
                }
                slot.sync = Maybe::NONE;
                let base = slot.base.clone();
                let ev = match result {
                    Ok(()) => {
                        self.effects
                            .push_back(Effect::Observe(Observation::Resynced));
                        self.effects
                            .push_back(Effect::Log(LogEvent::Restored { base, master }));
                        Event::SyncOk { op }
                    }
                    Err(error) => Event::SyncKo { op, error },
                };
                self.feed(now, f.slot, ev);
            }
            Input::Write { req, base, ops } => self.client_write(now, req, base, ops),
            Input::Replicate {
                req,
                from,
                base,
                epoch,
                prev,
                next,
                ops,
            } => {
                let w = writes::ReplicaWrite {
                    req,
                    from,
                    epoch,
                    prev,
                    next,
                    ops,
                    came: now.mono_ms,
                };
                self.replicate_input(now, base, w)
            }
            Input::GetversReq {
                req,
                base,
                master_seq,
                candidate_seq,
                incarnation,
            } => self.getvers_input(now, req, base, master_seq, candidate_seq, incarnation),
            Input::CandidateVersions {
                base,
                from,
                seq,
                theirs,
                ours,
            } => {
                let Some(i) = self.find(&base) else { return };
                let slot = self.slot_mut(i);
                // Only a member that may still follow it keeps it: a settled
                // one may apply writes before it would be used. Only
                // agreement is taken on trust; anything else is asked.
                if !matches!(slot.fsm.state(), State::Master | State::Slave) {
                    let agree = getvers_outcome(&ours, &theirs, &from, true) == GetversOutcome::Ok;
                    slot.vouch = agree.then(|| Box::new(Vouch::Candidate { from, seq }));
                }
            }
            Input::MasterLeft {
                base,
                from,
                epoch,
                theirs,
                ours,
            } => {
                let Some(i) = self.find(&base) else { return };
                let unguarded = self.cfg.mutations.farewell_unguarded;
                let slot = self.slot_mut(i);
                let fsm = &slot.fsm;
                let following = fsm.state() == State::Slave
                    && fsm.master() == Some(&from)
                    && fsm.master_id() == Some(epoch);
                let fenced = !unguarded && slot.fence.get().is_some_and(|f| seq_after(f, epoch));
                let agree = getvers_outcome(&ours, &theirs, &from, true) == GetversOutcome::Ok;
                if let (true, false, true, Some(node)) = (following, fenced, agree, fsm.local_id())
                {
                    slot.vouch = Some(Box::new(Vouch::Farewell { epoch, node }));
                }
            }
            Input::DumpReq { req, base } => self.dump_input(now, req, base),
            Input::Stored { id, result } => {
                let Some(f) = self.inflight.remove(&id) else {
                    return;
                };
                if let (Pending::Store(kind), true) = (f.what, self.live(f.slot, f.uid).is_some()) {
                    self.stored(now, f.slot, kind, result);
                }
            }
            Input::Replicated { id, result } => {
                let Some(f) = self.inflight.remove(&id) else {
                    return;
                };
                if let (
                    Pending::Replicate {
                        batch,
                        peer,
                        decided,
                    },
                    true,
                ) = (f.what, self.live(f.slot, f.uid).is_some())
                {
                    self.replicated(now, f.slot, id, batch, peer, decided, result);
                }
            }
            Input::ClearReadOnly { bases } => self.clear_readonly(&bases),
        }
        self.run_queue(now);
        self.settle_waiting(now);
        self.admit(now);
    }

    // ----- registry -----

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        self.slots.get_mut(i).expect("slot exists")
    }

    fn live(&self, i: u32, uid: u64) -> Option<&Slot> {
        self.slots.get(i).filter(|s| s.uid == uid)
    }

    fn live_mut(&mut self, i: u32, uid: u64) -> Option<&mut Slot> {
        self.slots.get_mut(i).filter(|s| s.uid == uid)
    }

    fn slot_indices(&self) -> Vec<u32> {
        self.slots.iter_from(0).map(|(i, _)| i as u32).collect()
    }

    fn find(&self, base: &BaseName) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(name_hash(base), |&i| {
                slots.get(i).is_some_and(|s| s.base == *base)
            })
            .copied()
    }

    fn ensure(&mut self, now: Now, base: &BaseName) -> u32 {
        if let Some(i) = self.find(base) {
            return i;
        }
        let key = self.key(base);
        let mut fsm = Election::new(self.election.clone(), jitter_seed(&key, &self.me), now);
        // Rejoins go through admission, like every start from NONE.
        fsm.hold_rejoins();
        if self.exiting {
            fsm.set_exiting();
        }
        // Stop-writes reaches elections created after it (issue 14, H5).
        fsm.set_allow_master(self.allow_master);
        self.next_id += 1;
        let slot = Slot {
            uid: self.next_id,
            base: base.clone(),
            fsm,
            bound_epoch: 0,
            fence: Maybe::NONE,
            rejoin_when_restored: false,
            node_owner: None,
            prefetch: None,
            master_node: None,
            self_watch: None,
            master_watch: None,
            sync: Maybe::NONE,
            timer_at: Maybe::NONE,
            started: Maybe::NONE,
            last_master: None,
            want: false,
            retries: 0,
            retry_at: Maybe::NONE,
            queued: false,
            ops: None,
            copy_floor: 0,
            vouch: None,
            creation: None,
        };
        let i = self.free.pop().unwrap_or(self.slots.len() as u32);
        self.slots.put(i, slot);
        let slots = &self.slots;
        self.index.insert_unique(name_hash(base), i, |&j| {
            slots.get(j).map_or(0, |s| name_hash(&s.base))
        });
        self.rearm(now, i);
        i
    }

    fn remove(&mut self, i: u32) {
        if let Some(slot) = self.slots.take(i) {
            if in_flight(slot.fsm.state()) {
                self.in_flight -= 1;
            }
            if let Some(at) = slot.timer_at.get() {
                self.timers.remove(&(at, i));
            }
            if let Ok(entry) = self.index.find_entry(name_hash(&slot.base), |&j| j == i) {
                entry.remove();
            }
            self.free.push(i);
        }
    }

    fn id(&mut self) -> Id {
        self.next_id += 1;
        self.next_id
    }

    /// A watch id names its slot, so a firing finds its election without a
    /// table; the slot keeps the ids it still relies on.
    fn watch_id(&mut self, i: u32) -> WatchId {
        (u64::from(i) << 32) | (self.id() & 0xffff_ffff)
    }

    // ----- timers -----

    fn rearm(&mut self, now: Now, i: u32) {
        let expire_none = self.cfg.expire_none_ms;
        let slot = self.slots.get_mut(i).expect("slot exists");
        let wake = match slot.fsm.state() {
            State::None => {
                let expiry = slot
                    .fsm
                    .entered_mono()
                    .saturating_add(expire_none)
                    .max(now.mono_ms.saturating_add(1));
                Some(slot.retry_at.get().map_or(expiry, |r| r.min(expiry)))
            }
            _ => slot.fsm.next_deadline(),
        };
        let wake = match (wake, self.unsettled_deadline(i)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let slot = self.slots.get_mut(i).expect("slot exists");
        if wake == slot.timer_at.get() {
            return;
        }
        if let Some(at) = slot.timer_at.take() {
            self.timers.remove(&(at, i));
        }
        if let Some(at) = wake {
            slot.timer_at = Maybe::some(at);
            self.timers.insert((at, i));
        }
    }

    /// The session of `epoch` is gone, or unusable past its grace period:
    /// every election bound to it is reset, and rejoins when a usable
    /// session is back.
    fn session_lost(&mut self, now: Now, epoch: u64) {
        if self.session.is_some_and(|s| s.epoch == epoch) {
            self.session_down = true;
        }
        for i in self.slot_indices() {
            let exiting = self.exiting;
            let slot = self.slot_mut(i);
            if slot.bound_epoch != epoch || slot.fsm.state() == State::None {
                continue;
            }
            slot.rejoin_when_restored = !exiting;
            self.feed(now, i, Event::Disconnected);
        }
    }

    /// A usable session is back: the elections its loss reset rejoin, and
    /// wanted ones whose retry waited for it start.
    fn session_restored(&mut self, now: Now) {
        self.session_down = false;
        for i in self.slot_indices() {
            let slot = self.slot_mut(i);
            let rejoin = std::mem::take(&mut slot.rejoin_when_restored);
            // Wanted elections whose retry waited for the session.
            let waited = slot.want && slot.retry_at.is_none();
            if !(rejoin || waited) || slot.fsm.state() != State::None {
                continue;
            }
            slot.retry_at = Maybe::NONE;
            self.start(now, i, false);
        }
    }

    fn tick(&mut self, now: Now) {
        if let Some((epoch, at)) = self.disconnected {
            if at <= now.mono_ms {
                self.disconnected = None;
                self.grace_spent = Some(epoch);
                let grace_ms = self.cfg.grace_ms;
                self.effects
                    .push_back(Effect::Log(LogEvent::GraceSpent { epoch, grace_ms }));
                self.session_lost(now, epoch);
            }
        }
        self.retry_leftovers(now);
        while let Some(&(at, i)) = self.timers.first() {
            if at > now.mono_ms {
                break;
            }
            self.timers.remove(&(at, i));
            self.slot_mut(i).timer_at = Maybe::NONE;
            self.expire_unsettled(now, i);
            let expire_none = self.cfg.expire_none_ms;
            let slot = self.slot_mut(i);
            if slot.fsm.state() == State::None {
                if slot.retry_at.get().is_some_and(|r| r <= now.mono_ms) {
                    // Wanted, and back in NONE: start again, no request needed;
                    // without a session, wait for it to come back.
                    slot.retry_at = Maybe::NONE;
                    if self.session_down {
                        self.rearm(now, i);
                        continue;
                    }
                    self.start(now, i, false);
                    self.rearm(now, i);
                    self.run_queue(now);
                    continue;
                }
                // Idle expiry: forget the election. Not a member any more, so
                // its fence goes too: a new membership follows a master whose
                // node exists, above any fence.
                let idle = slot.fsm.idle_for(now).is_some_and(|d| d >= expire_none);
                // A wanted election (its retry pending, or waiting for the
                // session) is kept.
                let busy = slot.fsm.in_flight() > 0
                    || slot.sync.is_some()
                    || slot.queued
                    || slot.want
                    || slot.ops.is_some();
                if idle && !busy {
                    self.remove(i);
                } else {
                    let slot = self.slot_mut(i);
                    let at = now.mono_ms.saturating_add(expire_none.max(1));
                    slot.timer_at = Maybe::some(at);
                    self.timers.insert((at, i));
                }
                continue;
            }
            if slot.fsm.next_deadline().is_some_and(|d| d <= now.mono_ms) {
                if matches!(slot.fsm.state(), State::Master | State::Slave) {
                    // Idle expiry of a settled election: it leaves for good.
                    slot.want = false;
                }
                self.feed(now, i, Event::None);
            } else {
                self.rearm(now, i);
            }
            self.run_queue(now);
        }
    }

    // ----- leftover nodes -----

    fn leftover_later(&mut self, now: Now, mut l: Leftover) {
        let (base_ms, max_ms) = (
            self.cfg.election.retry_failed_ms.max(1),
            self.cfg.election.retry_failed_max_ms.max(1),
        );
        l.at = now.mono_ms + base_ms.saturating_mul(1 << l.tries.min(16)).min(max_ms);
        l.tries = l.tries.saturating_add(1);
        self.leftovers.push(l);
    }

    fn retry_leftovers(&mut self, now: Now) {
        if self.leftovers.iter().all(|l| l.at > now.mono_ms) {
            return;
        }
        let (due, later): (Vec<Leftover>, Vec<Leftover>) = std::mem::take(&mut self.leftovers)
            .into_iter()
            .partition(|l| l.at <= now.mono_ms);
        self.leftovers = later;
        for l in due {
            if self.session.is_some_and(|s| s.epoch != l.epoch) {
                // A new session: the one holding the node expired, and the
                // node with it.
                continue;
            }
            if self.session_down || self.exiting {
                self.leftover_later(now, l);
                continue;
            }
            let id = self.id();
            let path = l.path.clone();
            self.effects.push_back(Effect::Zk {
                id,
                op: ZkOp::Delete { path },
            });
            self.leftover_calls.insert(id, l);
        }
    }

    fn leftover_done(&mut self, now: Now, l: Leftover, result: Result<ZkOk, ZkFailure>) {
        match result {
            Ok(_) => self
                .effects
                .push_back(Effect::Log(LogEvent::LeftoverDeleted {
                    base: l.base,
                    seq: l.seq,
                })),
            Err(ZkFailure::Failed(_) | ZkFailure::NotConnected) => self.leftover_later(now, l),
            Err(ZkFailure::NoNode | ZkFailure::SessionLost(_)) => {}
        }
    }

    // ----- the state machine -----

    fn run_queue(&mut self, now: Now) {
        while let Some((i, uid, ev)) = self.queue.pop_front() {
            if self.live(i, uid).is_some() {
                self.feed(now, i, ev);
            }
        }
    }

    /// Leaves and comes back at once as a new member (stop-writes, a deposed
    /// master, an operator's order).
    /// A directory read and our replica name creations of the base: one of
    /// another creation (a container deleted and created again while we
    /// missed it) must never be elected or served. It is set aside, and the
    /// election rejoins to copy the current base; until the replica is
    /// gone, it reports an unknown version (the rookie rule).
    fn creation_read(
        &mut self,
        now: Now,
        base: BaseName,
        directory: Incarnation,
        replica: Incarnation,
    ) {
        let slot = self.find(&base);
        if let Some(i) = slot {
            self.slot_mut(i).creation = Some(directory);
        }
        if directory.holds(&replica) {
            return;
        }
        self.effects.push_back(Effect::SetAside {
            base,
            found: replica,
            current: directory,
        });
        if let Some(i) = slot {
            self.leave_and_rejoin(now, i);
        }
    }

    /// A peer's GETVERS names creation `theirs` of the base, and our last
    /// directory read another: refused, and we read the directory again
    /// (whichever of us is stale sets its replica aside on its next read).
    fn other_creation(&mut self, i: u32, theirs: Option<Incarnation>) -> Option<Incarnation> {
        let ours = self.slot_mut(i).creation?;
        if theirs.is_none_or(|t| ours.holds(&t)) {
            return None;
        }
        let base = self.slot_mut(i).base.clone();
        let id = self.pending(i, Pending::Recheck);
        self.effects.push_back(Effect::ResolvePeers {
            id,
            base,
            decache: true,
        });
        Some(ours)
    }

    fn leave_and_rejoin(&mut self, now: Now, i: u32) {
        self.feed(now, i, Event::LeaveReq);
        self.feed(now, i, Event::None);
    }

    /// A master about to leave with no write in flight tells its peers that
    /// its version is final for its epoch (see `Vouch::Farewell`). Not a
    /// master deposed by a newer candidate (it may have missed writes), nor
    /// one whose session may be gone.
    fn farewell(&mut self, i: u32) {
        let live = self.session_live_for(i);
        let slot = self.slot_mut(i);
        let Some(epoch) = slot.fsm.local_id() else {
            return;
        };
        let writing = slot.ops.as_ref().is_some_and(|o| o.writing());
        if slot.fsm.state() != State::Master
            || !live
            || writing
            || slot.fence.get().is_some_and(|f| seq_after(f, epoch))
        {
            return;
        }
        let to = slot
            .fsm
            .peers()
            .map(<[ServiceId]>::to_vec)
            .unwrap_or_default();
        let base = slot.base.clone();
        self.effects.push_back(Effect::Farewell { to, base, epoch });
    }

    fn emit(&mut self, i: u32, ev: Event) {
        let uid = self.slot_mut(i).uid;
        self.queue.push_back((i, uid, ev));
    }

    fn feed(&mut self, now: Now, i: u32, event: Event) {
        let unguarded = self.cfg.mutations.farewell_unguarded;
        let slot = self.slot_mut(i);
        let pre = slot.fsm.state();
        let event_name = event.name();
        let actions = slot.fsm.handle(now, event);
        for action in actions {
            self.execute(i, action);
        }
        let slot = self.slot_mut(i);
        let post = slot.fsm.state();
        // Writes held for the election are checked again once it settles,
        // or once it waits for a copy (they are refused then).
        let recheck = !in_flight(post) || post == State::Syncing;
        if pre != post && recheck && slot.ops.as_ref().is_some_and(|o| o.has_unsettled()) {
            let uid = slot.uid;
            self.resettle.push((i, uid));
        }
        let slot = self.slot_mut(i);
        if pre != post {
            let keep = match slot.vouch.as_deref() {
                Some(Vouch::Farewell { .. }) => {
                    unguarded
                        || matches!(
                            (pre, post),
                            (State::Slave, State::Listing)
                                | (State::Listing, State::CheckingSlaves)
                        )
                }
                Some(Vouch::Candidate { .. }) => !matches!(post, State::Master | State::Slave),
                None => true,
            };
            if !keep {
                slot.vouch = None;
            }
        }
        if post != State::Syncing {
            if let Some(id) = slot.sync.take() {
                // The master went away mid-copy: stop it.
                let base = slot.base.clone();
                self.inflight.remove(&id);
                self.effects.push_back(Effect::AbortSync { id, base });
            }
        }
        if let Some(outcome) = event_name.strip_prefix("GETVERS_") {
            self.effects
                .push_back(Effect::Observe(Observation::Getvers(outcome)));
        }
        if post != pre {
            self.transitioned(now, i, pre, event_name, post);
        }
        let slot = self.slot_mut(i);
        if post == State::None && slot.fsm.rejoin_requested() && !slot.queued {
            // A rejoin queues behind the elections already waiting: one that
            // stepped aside for a newer replica, restarted at once, could
            // hold the only admission slot while the newer replica's own
            // election waited behind ours on its service (sim seed 23959).
            slot.queued = true;
            let entry = (i, slot.uid);
            self.background.push_back(entry);
        }
        self.rearm(now, i);
    }

    /// Bookkeeping of a change of state: admission, `want` and the retry
    /// of a wanted election back in NONE, and what metrics observe.
    fn transitioned(&mut self, now: Now, i: u32, pre: State, event: &'static str, post: State) {
        match (in_flight(pre), in_flight(post)) {
            (true, false) => self.in_flight -= 1,
            (false, true) => self.in_flight += 1,
            _ => {}
        }
        let retry = !self.exiting && !self.cfg.mutations.no_retry;
        let (base_ms, max_ms) = (
            self.cfg.election.retry_failed_ms.max(1),
            self.cfg.election.retry_failed_max_ms.max(1),
        );
        let me = &self.me;
        let slot = self.slots.get_mut(i).expect("slot exists");
        let mut observed = vec![Observation::Transition {
            base: slot.base.clone(),
            pre,
            event,
            post,
        }];
        match post {
            State::None => {
                slot.started = Maybe::NONE;
                if slot.want && retry {
                    let delay = base_ms
                        .saturating_mul(1 << slot.retries.min(16))
                        .min(max_ms);
                    let jitter = slot.fsm.jitter_seed() >> (slot.retries % 32);
                    let spread = jitter % (delay / 2 + 1);
                    slot.retry_at = Maybe::some(now.mono_ms + delay / 2 + spread);
                    slot.retries = slot.retries.saturating_add(1);
                }
            }
            State::Master | State::Slave => {
                slot.want = true;
                slot.retries = 0;
                slot.retry_at = Maybe::NONE;
                if let Some(t) = slot.started.take() {
                    observed.push(Observation::TimeToFinal {
                        ms: now.mono_ms.saturating_sub(t),
                    });
                }
                let master = match post {
                    State::Master => Some(me),
                    _ => slot.fsm.master(),
                };
                if master.is_some() {
                    if slot.last_master.is_some() && slot.last_master.as_ref() != master {
                        observed.push(Observation::Failover);
                    }
                    slot.last_master = master.cloned();
                }
            }
            _ if pre == State::None => slot.started = Maybe::some(now.mono_ms),
            _ => {}
        }
        if pre == State::None {
            // Started by other means: a pending retry is moot.
            slot.retry_at = Maybe::NONE;
        }
        self.effects
            .extend(observed.into_iter().map(Effect::Observe));
    }

    /// Starts the election of slot `i`, or pokes it when it already runs. A
    /// start from NONE waits for admission while `max_in_flight` elections
    /// are in flight; `urgent` when a client waits on it.
    fn start(&mut self, now: Now, i: u32, urgent: bool) {
        let max = self.cfg.max_in_flight;
        let in_flight = self.in_flight;
        let slot = self.slot_mut(i);
        if slot.fsm.state() != State::None || in_flight < max {
            slot.queued = false;
            return self.feed(now, i, Event::None);
        }
        if !slot.queued || urgent {
            slot.queued = true;
            let entry = (i, slot.uid);
            if urgent {
                self.urgent.push_back(entry);
            } else {
                self.background.push_back(entry);
            }
        }
    }

    /// Starts queued elections while there is room.
    fn admit(&mut self, now: Now) {
        while self.in_flight < self.cfg.max_in_flight {
            let Some((i, uid)) = self
                .urgent
                .pop_front()
                .or_else(|| self.background.pop_front())
            else {
                break;
            };
            let Some(slot) = self.live_mut(i, uid) else {
                continue;
            };
            if !std::mem::take(&mut slot.queued) {
                continue;
            }
            self.feed(now, i, Event::None);
            self.run_queue(now);
        }
    }

    fn stop_writes(&mut self, now: Now, stopped: bool) {
        let allow = self.cfg.election.allow_master && !stopped;
        self.allow_master = allow;
        self.stopped = stopped;
        let mut masters = Vec::new();
        for i in self.slot_indices() {
            let slot = self.slot_mut(i);
            slot.fsm.set_allow_master(allow);
            // Masters, and candidates whose round of GETVERS is under way
            // (the core checks `allow_master` only when LISTING ends: H5).
            if matches!(
                slot.fsm.state(),
                State::Master
                    | State::CheckingSlaves
                    | State::DelayedCheckingSlaves
                    | State::RefreshCheckingSlaves
            ) {
                masters.push(i);
            }
        }
        if stopped {
            self.effects.push_back(Effect::Log(LogEvent::StopWrites {
                masters: masters.len(),
            }));
            for i in masters {
                self.farewell(i);
                self.leave_and_rejoin(now, i);
            }
        }
    }

    // ----- the driver -----

    /// The election key of slot `i`, computed when a path needs it (a
    /// slot keeps its base's name only: 64 bytes less per election).
    fn slot_key(&self, i: u32) -> ElectionKey {
        self.key(&self.slots.get(i).expect("slot exists").base)
    }

    fn node(&self, i: u32, seq: Seq) -> String {
        self.layout
            .election_node(&self.stype, &self.slot_key(i), seq)
    }

    fn dir(&self, i: u32) -> String {
        self.layout.election_dir(&self.stype, &self.slot_key(i))
    }

    fn zk(&mut self, i: u32, op: ZkOp, what: Pending) -> Id {
        let id = self.id();
        let uid = self.slot_mut(i).uid;
        self.inflight.insert(id, InFlight { slot: i, uid, what });
        self.effects.push_back(Effect::Zk { id, op });
        id
    }

    fn pending(&mut self, i: u32, what: Pending) -> Id {
        let id = self.id();
        let uid = self.slot_mut(i).uid;
        self.inflight.insert(id, InFlight { slot: i, uid, what });
        id
    }

    fn execute(&mut self, i: u32, action: Action) {
        match action {
            Action::ResolvePeers { op, decache } => {
                let id = self.pending(i, Pending::Peers { op });
                let base = self.slot_mut(i).base.clone();
                self.effects
                    .push_back(Effect::ResolvePeers { id, base, decache });
            }
            Action::Create { op, generation: _ } => {
                if let Some(s) = self.session {
                    self.slot_mut(i).bound_epoch = s.epoch;
                }
                let key = self.slot_key(i);
                let prefix = format!("{}-", self.layout.election_prefix(&self.stype, &key));
                let dir = self.dir(i);
                let data = self.me.as_str().as_bytes().to_vec();
                let create = self.zk(
                    i,
                    ZkOp::CreateSeq {
                        prefix,
                        data,
                        dir: dir.clone(),
                    },
                    Pending::Create { op },
                );
                let id = self.zk(i, ZkOp::List { dir }, Pending::Prefetch);
                self.slot_mut(i).prefetch = Some(Box::new(Prefetch::InFlight {
                    create,
                    seq: None,
                    id,
                    wanted: None,
                }));
            }
            Action::WatchSelf {
                op,
                seq,
                generation,
            } => {
                let path = self.node(i, seq);
                let watch = self.watch_id(i);
                self.zk(
                    i,
                    ZkOp::Exists {
                        path,
                        watch: Some(watch),
                    },
                    Pending::Exists {
                        op,
                        seq,
                        generation,
                        watch,
                    },
                );
            }
            Action::List { op, seq } => {
                let slot = self.slot_mut(i);
                match slot.prefetch.take().map(|p| *p) {
                    Some(Prefetch::Ready {
                        seq: s,
                        session,
                        result,
                        ..
                    }) if s == Some(seq) => self.listed(i, op, seq, session, result),
                    Some(Prefetch::InFlight {
                        create, seq: s, id, ..
                    }) if s == Some(seq) => {
                        slot.prefetch = Some(Box::new(Prefetch::InFlight {
                            create,
                            seq: s,
                            id,
                            wanted: Some(op),
                        }));
                    }
                    _ => {
                        let dir = self.dir(i);
                        self.zk(i, ZkOp::List { dir }, Pending::List { op, seq });
                    }
                }
            }
            Action::GetMaster {
                op,
                seq,
                generation,
            } => {
                // LISTING took the candidate's word for this node's owner and
                // its read is under way, our watch with it.
                let watched = self
                    .slot_mut(i)
                    .master_watch
                    .is_some_and(|a| a.seq == seq && a.generation == generation);
                if let (true, Some(master)) = (watched, self.vouched_owner(i, seq)) {
                    return self.emit(i, Event::MasterOk { op, master });
                }
                let current = self.session.map(|s| s.id);
                let slot = self.slot_mut(i);
                let read = slot
                    .master_node
                    .take()
                    .filter(|n| n.seq == seq && Some(n.session) == current);
                match read {
                    // LISTING read this node with a watch, in this session.
                    Some(n) => self.master_read(
                        i,
                        op,
                        seq,
                        generation,
                        n.watch,
                        if n.deleted { None } else { Some(n.data) },
                    ),
                    None => self.get_watched(i, seq, |watch| Pending::GetMaster {
                        op,
                        seq,
                        generation,
                        watch,
                    }),
                }
            }
            Action::Delete { op, seq } => {
                let path = self.node(i, seq);
                self.zk(i, ZkOp::Delete { path }, Pending::Delete { op, seq });
            }
            Action::SendUse { peers, master } => {
                let slot = self.slot_mut(i);
                let base = slot.base.clone();
                let master = slot.fsm.local_id().filter(|_| master);
                for to in peers.iter().cloned() {
                    self.effects.push_back(Effect::Use {
                        to,
                        base: base.clone(),
                        master,
                    });
                }
            }
            Action::SendGetvers {
                op,
                peer,
                master_seq,
            } => {
                let unguarded = self.cfg.mutations.farewell_unguarded;
                let slot = self.slot_mut(i);
                let vouched = match (slot.vouch.as_deref(), master_seq) {
                    (Some(Vouch::Candidate { from, seq }), Some(asked)) => {
                        *seq == asked && *from == peer
                    }
                    (Some(Vouch::Farewell { epoch, node }), None) => {
                        Some(*node) == slot.fsm.local_id()
                            && (unguarded
                                || !slot.fence.get().is_some_and(|f| seq_after(f, *epoch)))
                    }
                    _ => false,
                };
                if vouched {
                    self.effects.push_back(Effect::Observe(match master_seq {
                        Some(_) => Observation::GetversSkipped,
                        None => Observation::FarewellTaken,
                    }));
                    self.emit(
                        i,
                        Event::Getvers {
                            op,
                            peer: peer.clone(),
                            outcome: GetversOutcome::Ok,
                        },
                    );
                    if let Some(seq) = master_seq {
                        // Asked all the same, not waited for: the master may
                        // have written since its word.
                        let slot = self.slot_mut(i);
                        slot.vouch = None;
                        let base = slot.base.clone();
                        let incarnation = slot.creation;
                        let what = Pending::Verify {
                            peer: peer.clone(),
                            seq,
                        };
                        let id = self.pending(i, what);
                        self.effects.push_back(Effect::Getvers {
                            id,
                            to: peer,
                            base,
                            master_seq,
                            candidate_seq: None,
                            incarnation,
                        });
                        return;
                    }
                    // A successor still asks, not waiting for the answers:
                    // the question fences older masters and vouches for it.
                    let slot = self.slot_mut(i);
                    let candidate_seq = slot.fsm.local_id();
                    let base = slot.base.clone();
                    let incarnation = slot.creation;
                    let id = self.id();
                    self.effects.push_back(Effect::Getvers {
                        id,
                        to: peer,
                        base,
                        master_seq: None,
                        candidate_seq,
                        incarnation,
                    });
                    return;
                }
                let candidate_seq = slot.fsm.local_id().filter(|_| master_seq.is_none());
                let base = slot.base.clone();
                let incarnation = slot.creation;
                let id = self.pending(
                    i,
                    Pending::Getvers {
                        op,
                        peer: peer.clone(),
                        master_seq,
                    },
                );
                self.effects.push_back(Effect::Getvers {
                    id,
                    to: peer,
                    base,
                    master_seq,
                    candidate_seq,
                    incarnation,
                });
            }
            Action::Sync { op, master } => {
                let id = self.pending(
                    i,
                    Pending::Sync {
                        op,
                        master: master.clone(),
                        fetched: false,
                    },
                );
                let slot = self.slot_mut(i);
                slot.sync = Maybe::some(id);
                slot.vouch = None;
                let base = slot.base.clone();
                self.effects.push_back(Effect::Sync { id, base, master });
            }
        }
    }

    fn zk_done(
        &mut self,
        now: Now,
        f: InFlight,
        id: Id,
        session: Option<SessionTag>,
        result: Result<ZkOk, ZkFailure>,
    ) {
        let i = f.slot;
        if self.live(i, f.uid).is_none() {
            return;
        }
        match f.what {
            Pending::Create { op } => match result {
                Ok(ZkOk::Created { seq, owner }) => {
                    let slot = self.slot_mut(i);
                    if owner != 0 {
                        slot.node_owner = Some((seq, owner));
                    }
                    if let Some(
                        Prefetch::InFlight { create, seq: s, .. }
                        | Prefetch::Ready { create, seq: s, .. },
                    ) = slot.prefetch.as_deref_mut()
                    {
                        if *create == id {
                            *s = Some(seq);
                        }
                    }
                    if let Some(s) = session {
                        slot.bound_epoch = s.epoch;
                    }
                    self.emit(i, Event::CreateOk { op, seq });
                }
                other => {
                    self.emit(i, ko(other, |error| Event::CreateKo { op, error }));
                }
            },
            Pending::Exists {
                op,
                seq,
                generation,
                watch,
            } => match result {
                Ok(ZkOk::Stat(None)) => {
                    self.emit(i, Event::LeftSelf { generation, seq });
                    self.emit(i, Event::ExistsOk { op });
                }
                Ok(ZkOk::Stat(Some(_))) => {
                    self.slot_mut(i).self_watch = Some(Armed {
                        watch,
                        generation,
                        seq,
                    });
                    self.emit(i, Event::ExistsOk { op });
                }
                other => {
                    self.emit(i, ko(other, |error| Event::ExistsKo { op, error }));
                }
            },
            Pending::Prefetch => {
                let slot = self.slot_mut(i);
                match slot.prefetch.as_deref() {
                    Some(&Prefetch::InFlight {
                        create,
                        seq,
                        id: pid,
                        wanted,
                    }) if pid == id => match (wanted, seq) {
                        (Some(op), Some(seq)) => {
                            slot.prefetch = None;
                            self.listed(i, op, seq, session, result);
                        }
                        _ => {
                            slot.prefetch = Some(Box::new(Prefetch::Ready {
                                create,
                                seq,
                                session,
                                result,
                            }))
                        }
                    },
                    _ => {}
                }
            }
            Pending::List { op, seq } => self.listed(i, op, seq, session, result),
            Pending::Scan {
                op,
                ours,
                seq,
                rest,
                watch,
            } => match result {
                Ok(ZkOk::Data(data)) => {
                    let me = self.me.clone();
                    let slot = self.slot_mut(i);
                    let peers = slot
                        .fsm
                        .peers()
                        .map(<[ServiceId]>::to_vec)
                        .unwrap_or_default();
                    match master_from_node(&data, &me, Some(&peers)) {
                        Ok(_) | Err(MasterBadReason::Rogue(_)) => {
                            slot.master_node = session.map(|s| {
                                Box::new(MasterNode {
                                    seq,
                                    session: s.id,
                                    data,
                                    watch,
                                    deleted: false,
                                })
                            });
                            self.emit(i, Event::ListOk { op, lowest: seq });
                        }
                        Err(why) => {
                            let base = slot.base.clone();
                            let path = self.node(i, seq);
                            self.effects.push_back(Effect::Log(LogEvent::IgnoredNode {
                                base,
                                path,
                                why: format!("{why:?}"),
                            }));
                            self.scan(i, op, ours, rest, session);
                        }
                    }
                }
                Err(ZkFailure::NoNode) => self.scan(i, op, ours, rest, session),
                other => {
                    self.emit(i, ko(other, |error| Event::ListKo { op, error }));
                }
            },
            Pending::OwnerCheck { op } => {
                let ev = match result {
                    Ok(ZkOk::Stat(Some(owner))) if session.is_some_and(|s| s.id == owner) => {
                        let lowest = self.slot_mut(i).fsm.local_id();
                        match lowest {
                            Some(lowest) => Event::ListOk { op, lowest },
                            None => return,
                        }
                    }
                    Ok(ZkOk::Stat(Some(_))) => Event::Disconnected,
                    Ok(ZkOk::Stat(None)) => Event::ListKo {
                        op,
                        error: "our node vanished".into(),
                    },
                    other => ko(other, |error| Event::ListKo { op, error }),
                };
                self.emit(i, ev);
            }
            Pending::ClaimCheck {
                seq,
                from,
                generation,
            } => {
                let me = self.me.clone();
                let slot = self.slot_mut(i);
                let confirmed = match &result {
                    Ok(ZkOk::Data(data)) => {
                        master_from_node(data, &me, slot.fsm.peers()).is_ok_and(|m| m == from)
                    }
                    _ => false,
                };
                if !confirmed {
                    // Gone, or not whose the candidate said: list again if we
                    // still follow it (the event is ignored otherwise).
                    if slot.master_watch.is_some_and(|a| a.seq == seq) {
                        slot.master_watch = None;
                    }
                    let base = slot.base.clone();
                    self.effects
                        .push_back(Effect::Log(LogEvent::ClaimUnconfirmed { base, seq, from }));
                    self.emit(i, Event::LeftMaster { generation, seq });
                }
            }
            Pending::GetMaster {
                op,
                seq,
                generation,
                watch,
            } => match result {
                Ok(ZkOk::Data(data)) => self.master_read(i, op, seq, generation, watch, Some(data)),
                Err(ZkFailure::NoNode) => self.master_read(i, op, seq, generation, watch, None),
                other => {
                    self.emit(i, ko(other, |error| Event::MasterKo { op, error }));
                }
            },
            Pending::Delete { op, seq } => match (op, result) {
                (Some(op), Ok(_)) | (Some(op), Err(ZkFailure::NoNode)) => {
                    self.emit(i, Event::LeaveOk { op })
                }
                (Some(op), other) => {
                    self.emit(i, ko(other, |error| Event::LeaveKo { op, error }));
                }
                (None, Ok(_)) => {
                    let base = self.slot_mut(i).base.clone();
                    self.effects
                        .push_back(Effect::Log(LogEvent::LeftoverDeleted { base, seq }));
                }
                (None, Err(ZkFailure::Failed(_) | ZkFailure::NotConnected)) => {
                    let slot = self.slot_mut(i);
                    let (base, epoch) = (slot.base.clone(), slot.bound_epoch);
                    let path = self.node(i, seq);
                    let l = Leftover {
                        path,
                        base,
                        seq,
                        epoch,
                        at: 0,
                        tries: 0,
                    };
                    self.leftover_later(now, l);
                }
                // Gone, or gone with its session.
                (None, Err(_)) => {}
            },
            Pending::Peers { .. }
            | Pending::Recheck
            | Pending::Getvers { .. }
            | Pending::Verify { .. }
            | Pending::Sync { .. }
            | Pending::Store(_)
            | Pending::Replicate { .. } => {}
        }
    }

    /// The group's listing for our node `ours`: find the lowest node a peer
    /// may follow. Nodes below ours whose data is not a service id, or names
    /// a service that is not a peer of the base, are skipped (every peer
    /// applies the same rule, so all agree). Nodes carrying our own id are
    /// kept: the state machine deletes them.
    fn listed(
        &mut self,
        i: u32,
        op: u64,
        ours: Seq,
        session: Option<SessionTag>,
        result: Result<ZkOk, ZkFailure>,
    ) {
        let children = match result {
            Ok(ZkOk::Children(c)) => c,
            other => {
                return self.emit(i, ko(other, |error| Event::ListKo { op, error }));
            }
        };
        if self.cfg.mutations.self_lowest {
            return self.emit(i, Event::ListOk { op, lowest: ours });
        }
        let key = self.slot_key(i);
        let mut seqs: Vec<Seq> = children
            .iter()
            .filter_map(|c| parse_node_name(c))
            .filter(|(k, _)| *k == key.as_str())
            .map(|(_, s)| s)
            .collect();
        if !seqs.contains(&ours) {
            return self.emit(
                i,
                Event::ListKo {
                    op,
                    error: format!("our node {ours} is not in the group"),
                },
            );
        }
        // Creation order, across the 32-bit wrap of ZooKeeper's counter.
        seqs.sort_unstable_by_key(|s| seq_offset(*s, ours));
        let lower: Vec<Seq> = seqs
            .into_iter()
            .take_while(|s| seq_offset(*s, ours) < 0)
            .collect();
        self.scan(i, op, ours, lower, session);
    }

    /// Reads the next lower node, or concludes that ours is the lowest.
    fn scan(
        &mut self,
        i: u32,
        op: u64,
        ours: Seq,
        mut rest: Vec<Seq>,
        session: Option<SessionTag>,
    ) {
        if rest.is_empty() {
            // Never lead on a node that is not our current session's: known
            // from create's Stat, else asked.
            let known = self.slot_mut(i).node_owner.filter(|(s, _)| *s == ours);
            if known.is_some_and(|(_, owner)| session.is_some_and(|s| s.id == owner)) {
                return self.emit(i, Event::ListOk { op, lowest: ours });
            }
            let path = self.node(i, ours);
            self.zk(
                i,
                ZkOp::Exists { path, watch: None },
                Pending::OwnerCheck { op },
            );
            return;
        }
        let seq = rest.remove(0);
        if let Some(from) = self.vouched_owner(i, seq) {
            // The candidate holding `seq` told us so in its GETVERS: no need
            // to wait for the read, which still sets our watch on its node.
            let generation = self.slot_mut(i).fsm.generation();
            let watch = self.watch_id(i);
            let path = self.node(i, seq);
            self.slot_mut(i).master_watch = Some(Armed {
                watch,
                generation,
                seq,
            });
            let check = Pending::ClaimCheck {
                seq,
                from,
                generation,
            };
            self.zk(i, ZkOp::Get { path, watch }, check);
            return self.emit(i, Event::ListOk { op, lowest: seq });
        }
        self.get_watched(i, seq, |watch| Pending::Scan {
            op,
            ours,
            seq,
            rest,
            watch,
        });
    }

    /// The answer to a GETVERS we did not wait for (`Pending::Verify`): a
    /// master ahead of us, which we still follow at `seq`, is copied from.
    fn verified(
        &mut self,
        now: Now,
        i: u32,
        peer: &ServiceId,
        seq: Seq,
        remote: Result<RemoteVersion, String>,
        local: Result<ReplicaVersion, String>,
    ) {
        let (Ok(RemoteVersion::Version(theirs)), Ok(ours)) = (remote, local) else {
            return;
        };
        let fsm = &self.slot_mut(i).fsm;
        let following = fsm.state() == State::Slave
            && fsm.master() == Some(peer)
            && fsm.master_id() == Some(seq);
        let outcome = getvers_outcome(&ours, &theirs, peer, true);
        if following && matches!(outcome, GetversOutcome::Old | GetversOutcome::Race) {
            self.feed(now, i, Event::SyncReq);
        }
    }

    /// The peer a candidate's GETVERS named as holding node `seq`, if it
    /// agreed with our version (`Vouch::Candidate`).
    fn vouched_owner(&mut self, i: u32, seq: Seq) -> Option<ServiceId> {
        let me = self.me.clone();
        let slot = self.slot_mut(i);
        match slot.vouch.as_deref() {
            Some(Vouch::Candidate { from, seq: s })
                if *s == seq
                    && *from != me
                    && slot.fsm.peers().is_some_and(|p| p.contains(from)) =>
            {
                Some(from.clone())
            }
            _ => None,
        }
    }

    /// Reads node `seq` with a watch; `what` learns the watch's id.
    fn get_watched(&mut self, i: u32, seq: Seq, what: impl FnOnce(WatchId) -> Pending) {
        let path = self.node(i, seq);
        let watch = self.watch_id(i);
        self.zk(i, ZkOp::Get { path, watch }, what(watch));
    }

    /// The master's node was read (`None`: it is gone).
    fn master_read(
        &mut self,
        i: u32,
        op: u64,
        seq: Seq,
        generation: u64,
        watch: WatchId,
        data: Option<Vec<u8>>,
    ) {
        let Some(data) = data else {
            self.emit(i, Event::LeftMaster { generation, seq });
            self.emit(
                i,
                Event::MasterKo {
                    op,
                    error: "master node vanished".into(),
                },
            );
            return;
        };
        let me = self.me.clone();
        let slot = self.slot_mut(i);
        let ev = match master_from_node(&data, &me, slot.fsm.peers()) {
            Ok(master) => Event::MasterOk { op, master },
            Err(MasterBadReason::Rogue(_)) => Event::MasterBad {
                op,
                reason: MasterBadReason::Rogue(seq),
            },
            Err(reason) => Event::MasterBad { op, reason },
        };
        slot.master_watch = Some(Armed {
            watch,
            generation,
            seq,
        });
        self.emit(i, ev);
    }

    fn watch_fired(&mut self, now: Now, watch: WatchId, deleted: bool) {
        let i = (watch >> 32) as u32;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let mut ev = None;
        if slot.self_watch.is_some_and(|a| a.watch == watch) {
            let a = slot.self_watch.take().expect("armed");
            ev = Some(Event::LeftSelf {
                generation: a.generation,
                seq: a.seq,
            });
        } else if slot.master_watch.is_some_and(|a| a.watch == watch) {
            let a = slot.master_watch.take().expect("armed");
            ev = Some(Event::LeftMaster {
                generation: a.generation,
                seq: a.seq,
            });
        } else if let Some(n) = slot.master_node.as_mut().filter(|n| n.watch == watch) {
            n.deleted |= deleted;
        }
        if let (Some(ev), true) = (ev, deleted) {
            self.feed(now, i, ev);
            self.run_queue(now);
        }
    }
}

/// How a failed (or unexpected) ZooKeeper result maps to an event: a lost
/// session resets the election, anything else is the op's KO.
fn ko(result: Result<ZkOk, ZkFailure>, make: impl FnOnce(String) -> Event) -> Event {
    match result {
        Err(ZkFailure::SessionLost(_)) => Event::Disconnected,
        Err(e) => make(e.to_string()),
        Ok(other) => make(format!("unexpected answer {other:?}")),
    }
}

/// The index's hash of a base name: SipHash with fixed keys, so runs replay.
fn name_hash(base: &BaseName) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    base.hash(&mut h);
    h.finish()
}

/// Between NONE and a final state: what admission control bounds.
fn in_flight(state: State) -> bool {
    !matches!(
        state,
        State::None | State::Failed | State::Master | State::Slave
    )
}

/// A per-election jitter seed: stable across runs, different per service.
pub fn jitter_seed(key: &ElectionKey, me: &ServiceId) -> u64 {
    let mut seed = key.spread();
    for b in me.as_str().bytes() {
        seed = seed.rotate_left(5) ^ u64::from(b);
        seed = seed.wrapping_mul(0x100_0000_01B3);
    }
    seed
}
