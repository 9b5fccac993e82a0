//! The running service: the shell around `election-engine`. The engine
//! holds every election of the service and takes every decision; this shell
//! feeds it inputs (requests, ZooKeeper results and watches, peer answers,
//! session events, timer ticks) and executes the effects it emits.
//!
//! One lock guards the engine. Whoever has an input takes it, handles the
//! input, and starts the effects in emission order before releasing it, so
//! ZooKeeper requests reach the session in the order the engine emitted them
//! (each request is sent when its future is first polled: see [`primed`]).
//! Results come back from spawned tasks as new inputs; nothing is fed to the
//! engine while it is being handled. One timer task ticks the engine at its
//! next wake-up.
//!
//! Requests that wait for the engine's answer (a client's write, a peer's
//! REPLICATE, GETVERS or DUMP) register a reply under a fresh [`ReqId`]; the
//! effect that answers them sends on it. Store ops run on blocking threads;
//! a master's batch keeps its transaction open in the store, not a thread.

use crate::directory::Directory;
use crate::rpc::{
    GetversReply, GetversRequest, LeftRequest, PeerClient, ReplicateRequest, UseRequest,
};
use crate::storage::BaseStore;
use crate::zk::{classify, ErrorClass, Link, ZkSession};
use election_core::names::{
    BaseName, ElectionKey, Namespace, Seq, ServiceId, ServiceType, ZkLayout,
};
use election_core::peer::Refusal;
use election_core::version::{ReplicaVersion, WriteOp};
use election_core::{Election, Now, State};
use election_engine::{
    Divergence, Effect, Engine, EngineConfig, GetversRefusal, Id, Input, LogEvent, Membership,
    NotOwner, Observation, RemoteVersion, ReplicateFailure, ReqId, SessionTag, StoreFailure,
    StoreOk, StoreOp, WriteRefusal, Written, ZkFailure, ZkOk, ZkOp,
};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};
use zookeeper_client as zk;

/// Timers and limits of the service (election timers are in `election`).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub election: election_core::Config,
    /// Longest wait of a request for a final state (`election.wait.delay`).
    pub wait_delay: Duration,
    /// An idle NONE election is forgotten after this long.
    pub expire_none: Duration,
    /// Elections between NONE and a final state, at most (admission).
    pub max_in_flight: usize,
    /// Client writes waiting over all the bases, at most (503 beyond).
    pub max_queued_writes: usize,
    /// Batches of one base in flight at once, at most (pipelining).
    pub pipeline_window: usize,
    /// Client writes per batch, at most.
    pub max_batch_writes: usize,
    pub getvers_timeout: Duration,
    pub use_timeout: Duration,
    pub sync_timeout: Duration,
    /// A disconnected session resets our elections after this long.
    pub disconnect_grace: Duration,
    /// SIGTERM: time allowed to leave every election cleanly.
    pub exit_budget: Duration,
    /// Timeout of one replicated write to a slave.
    pub replicate_timeout: Duration,
    /// Test-only fault switches may be set through the admin API.
    pub fault_switches: bool,
    /// Peer calls share one HTTP/2 connection per peer (else HTTP/1.1).
    pub peer_http2: bool,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// `balance`: masterships left per second, at most.
    pub balance_rate: f64,
    /// The shared secret of peer RPC and admin routes, if any.
    pub secret: Option<election_client::Secret>,
}

/// What an election looks like from outside the engine: a copy.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub base: BaseName,
    pub key: ElectionKey,
    pub fsm: Election,
    /// The ZooKeeper session epoch our node was created in.
    pub bound_epoch: u64,
}

/// The engine, the copies in flight it may abandon, and the requests that
/// wait for its answer.
struct Shell {
    engine: Engine,
    syncs: HashMap<Id, (tokio::task::JoinHandle<()>, crate::storage::RestoreTicket)>,
    replies: HashMap<ReqId, Reply>,
    next_req: ReqId,
}

/// Where the engine's answer to a request goes.
enum Reply {
    Write(oneshot::Sender<Result<Written, WriteRefusal>>),
    Replicate(oneshot::Sender<Result<(), Refusal>>),
    Getvers(oneshot::Sender<Result<(), GetversRefusal>>),
    Dump(oneshot::Sender<Dumped>),
}

/// The answer to a slave's request for a copy.
#[derive(Debug)]
pub enum Dumped {
    /// Only a master whose session holds its node gives one.
    Refused { state: State, session_live: bool },
    /// The copy, and the batch floor it fences (`StoreOp::Dump`).
    Copy(Result<Vec<u8>, StoreFailure>, u64),
}

pub struct Service {
    pub cfg: ServiceConfig,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub me: ServiceId,
    pub stype: ServiceType,
    pub layout: ZkLayout,
    pub zk: Arc<ZkSession>,
    pub store: BaseStore,
    pub directory: Directory,
    pub rpc: PeerClient,
    pub guard: crate::guard::Guard,
    /// The engine's time (injected: see `crate::clock`).
    clock: Arc<dyn crate::clock::Clock>,
    /// A copy of the engine's flag, read by every route without the lock.
    exiting: AtomicBool,
    shell: Mutex<Shell>,
    /// The engine's next wake-up as the timer task knows it (u64::MAX: none).
    timer_at: AtomicU64,
    timer: Notify,
    /// Requests waiting for a base's election to change state.
    waiters: Mutex<HashMap<BaseName, Vec<oneshot::Sender<()>>>>,
    /// The peers that announced themselves masters lately (their USE), per
    /// base: a client write reaching us while our election is under way is
    /// sent to that master at once instead of waiting for ours to settle.
    announced: Mutex<HashMap<BaseName, (ServiceId, Instant)>>,
    /// Peers and incarnation of the bases we host, as the directory gave
    /// them (bounded). An entry is used while it is younger than
    /// `PEERS_CACHE_TTL_MS` and our session is the one it was read in; a
    /// `decache` resolution bypasses and refreshes it.
    /// Keyed by the first 128 bits of the election key's digest (unique in
    /// practice, and no copy of the base's name: issue 13's 2 KiB).
    peers_cache: Mutex<HashMap<u128, CachedPeers>>,
    /// Until when ZooKeeper cannot have expired our session (its epoch),
    /// from the last round trip we made to it: master reads are served
    /// within it only (issue 14, H4).
    read_lease: Mutex<Option<(u64, Instant)>>,
    /// One confirmation round trip at a time.
    confirming: tokio::sync::Mutex<()>,
    /// One copy of each distinct peer set (most bases share a few).
    peer_sets: Mutex<std::collections::HashSet<Arc<Vec<ServiceId>>>>,
    /// Armed ZooKeeper watches, polled by one task (`route_watches`): no
    /// task and no channel per watch, and no queue that could grow.
    watches: Mutex<futures::stream::FuturesUnordered<WatchFuture>>,
    /// A watch was armed: the router polls the set again.
    watch_armed: Notify,
    /// USEs per peer: one call in flight to each, and the USEs emitted
    /// meanwhile go together in the next (no delay when none is in flight).
    uses: PeerQueues<crate::rpc::UseItem>,
    /// GETVERS per peer, likewise (with the engine's id of each).
    getvers: PeerQueues<(election_engine::Id, GetversRequest)>,
    /// Replicated writes per slave: one call being handed over to each at a
    /// time (until the slave took it, not until its writes are decided),
    /// and the writes emitted meanwhile go together in the next.
    replicates: PeerQueues<QueuedReplicate>,
}

/// A replicated write waiting for its call to the slave.
struct QueuedReplicate {
    id: election_engine::Id,
    item: crate::rpc::ReplicateItem,
    queued: Instant,
    /// The id of the request it serves, sent along when its call carries
    /// no other request's writes.
    req_id: Option<String>,
}

/// Requests waiting per peer while a call to it is in flight: the next call
/// takes them together.
struct PeerQueues<T>(Mutex<HashMap<ServiceId, PeerQueue<T>>>);

struct PeerQueue<T> {
    sending: bool,
    waiting: Vec<T>,
}

impl<T> Default for PeerQueues<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T> PeerQueues<T> {
    /// Queues `item` for `to`; true when no call to `to` is in flight, so
    /// the caller starts the sender.
    fn push(&self, to: &ServiceId, item: T) -> bool {
        let mut queues = lock(&self.0);
        let q = queues.entry(to.clone()).or_insert(PeerQueue {
            sending: false,
            waiting: Vec::new(),
        });
        q.waiting.push(item);
        !std::mem::replace(&mut q.sending, true)
    }

    /// At most `n` of the requests waiting for `to`, oldest first; `None`
    /// when none waits, and the sender stops.
    fn take(&self, to: &ServiceId, n: usize) -> Option<Vec<T>> {
        let mut queues = lock(&self.0);
        let q = queues.get_mut(to)?;
        if q.waiting.is_empty() {
            queues.remove(to);
            return None;
        }
        let n = q.waiting.len().min(n);
        Some(q.waiting.drain(..n).collect())
    }
}

/// A watch waiting to fire: its id, and whether the node was deleted.
type WatchFuture = Pin<Box<dyn Future<Output = (election_engine::WatchId, bool)> + Send>>;

const PEERS_CACHE_MAX: usize = 200_000;

/// The share of the negotiated session timeout a confirmed round trip to
/// ZooKeeper vouches for: the server expires a session no sooner than the
/// timeout after it last heard from it, which is after we sent the request;
/// the rest is a margin for the two clocks' rates.
const READ_LEASE: f64 = 0.75;

/// While our session lasts, a base's directory entry changes only by a
/// deletion (and maybe a re-creation) whose notice we may have missed: an
/// entry is read again at most this long after (a busy service of 100,000
/// bases reads about 170 entries a second for it).
const PEERS_CACHE_TTL_MS: u64 = 600_000;

/// A base's directory entry, as `Service::entry` gives it.
struct Entry {
    peers: Arc<Vec<ServiceId>>,
    incarnation: crate::storage::Incarnation,
    /// Our replica's creation, read with a fresh entry only.
    replica: Option<crate::storage::Incarnation>,
}

struct CachedPeers {
    peers: Arc<Vec<ServiceId>>,
    incarnation: crate::storage::Incarnation,
    /// `Service::now`'s monotonic clock.
    read_at_ms: u64,
    session_epoch: u64,
}

/// Why waiting for a final state failed.
#[derive(Debug)]
pub enum WaitError {
    Exiting,
    Timeout(Arc<Snapshot>),
}

/// How a client write's wait for the election ended.
pub enum Settled {
    Final(Arc<Snapshot>),
    /// A peer announced itself master of the base moments ago, while our
    /// election is still under way.
    Announced(ServiceId),
}

/// How long a master's announcement (its USE) redirects the clients of a
/// peer whose election is still under way.
const ANNOUNCED_FOR: Duration = Duration::from_secs(2);

/// Announcements kept at most (a start storm makes one per base and peer).
const ANNOUNCED_MAX: usize = 4_096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the shell runs the engine's effects and inputs through.
pub struct Adapters {
    pub zk: Arc<ZkSession>,
    pub store: BaseStore,
    pub guard: crate::guard::Guard,
    pub clock: Arc<dyn crate::clock::Clock>,
}

impl Service {
    pub fn new(
        cfg: ServiceConfig,
        me: ServiceId,
        ns: Namespace,
        stype: ServiceType,
        adapters: Adapters,
    ) -> Arc<Self> {
        let Adapters {
            zk,
            store,
            guard,
            clock,
        } = adapters;
        let layout = ZkLayout::new(ns);
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let directory = Directory::new(zk.clone(), layout.clone(), metrics.clone());
        let rpc = PeerClient::new(
            Duration::from_secs(1),
            cfg.secret.as_ref(),
            cfg.peer_http2,
            metrics.peer_calls.clone(),
        );
        let engine = Engine::new(
            EngineConfig {
                election: cfg.election.clone(),
                expire_none_ms: cfg.expire_none.as_millis() as u64,
                grace_ms: cfg.disconnect_grace.as_millis() as u64,
                max_in_flight: cfg.max_in_flight,
                max_queued_writes: cfg.max_queued_writes,
                // A quarter of the masters' wait for an answer, at most the
                // engine's default: the write it waited for usually comes
                // within a millisecond.
                gap_wait_ms: (cfg.replicate_timeout.as_millis() as u64 / 4)
                    .min(EngineConfig::default().gap_wait_ms),
                pipeline_window: cfg.pipeline_window,
                max_batch_writes: cfg.max_batch_writes,
                mutations: Default::default(),
            },
            me.clone(),
            stype.clone(),
            layout.clone(),
        );
        let svc = Arc::new(Self {
            cfg,
            me,
            stype,
            layout,
            zk,
            store,
            directory,
            rpc,
            guard,
            clock,
            exiting: AtomicBool::new(false),
            shell: Mutex::new(Shell {
                engine,
                syncs: HashMap::new(),
                replies: HashMap::new(),
                next_req: 0,
            }),
            timer_at: AtomicU64::new(u64::MAX),
            timer: Notify::new(),
            waiters: Mutex::new(HashMap::new()),
            announced: Mutex::new(HashMap::new()),
            peers_cache: Mutex::new(HashMap::new()),
            read_lease: Mutex::new(None),
            confirming: tokio::sync::Mutex::new(()),
            peer_sets: Mutex::new(std::collections::HashSet::new()),
            watches: Mutex::new(futures::stream::FuturesUnordered::new()),
            watch_armed: Notify::new(),
            uses: PeerQueues::default(),
            getvers: PeerQueues::default(),
            replicates: PeerQueues::default(),
            metrics,
        });
        tokio::spawn(route_watches(svc.clone()));
        let view = svc.zk.view();
        svc.input(Input::SessionConnected(SessionTag {
            epoch: view.epoch,
            id: view.session_id,
        }));
        tokio::spawn(run_timer(svc.clone()));
        tokio::spawn(trim_when_quiet(svc.clone()));
        svc
    }

    pub fn now(&self) -> Now {
        self.clock.now()
    }

    /// Sets the engine's wall clock `ms` off the machine's (the test-only
    /// fault switch `clock_skew_ms`).
    pub fn set_clock_skew(&self, ms: i64) -> bool {
        self.clock.set_wall_skew_ms(ms)
    }

    pub fn uptime(&self) -> Duration {
        Duration::from_millis(self.now().mono_ms)
    }

    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::SeqCst)
    }

    pub fn key(&self, base: &BaseName) -> ElectionKey {
        ElectionKey::compute(base, &self.stype)
    }

    /// Feeds one input to the engine and starts the effects it emits.
    fn input(self: &Arc<Self>, input: Input) {
        let mut shell = lock(&self.shell);
        if let Input::Synced { id, .. } = &input {
            shell.syncs.remove(id);
        }
        let now = self.now();
        shell.engine.handle(now, input);
        self.run_effects(&mut shell);
    }

    fn run_effects(self: &Arc<Self>, shell: &mut Shell) {
        let effects: Vec<Effect> = shell.engine.drain().collect();
        for effect in effects {
            self.execute(shell, effect);
        }
        if let Some(at) = shell.engine.next_wakeup() {
            if at < self.timer_at.load(Ordering::SeqCst) {
                self.timer_at.store(at, Ordering::SeqCst);
                self.timer.notify_one();
            }
        }
    }

    /// Starts (or refreshes) the election of `base`: OpenIO's DB_USE.
    pub fn poke(self: &Arc<Self>, base: &BaseName, touch: bool) {
        self.input(Input::Poke {
            base: base.clone(),
            touch,
        });
    }

    /// Asks the election to leave, without creating it when absent.
    pub fn leave(self: &Arc<Self>, base: &BaseName) {
        self.input(Input::Leave { base: base.clone() });
    }

    /// Enters or leaves stop-writes: refuse (or allow again) masterships, and
    /// hand every current mastership over to healthy peers.
    pub fn apply_stop_writes(self: &Arc<Self>, stopped: bool) {
        self.input(Input::StopWrites(stopped));
    }

    /// Forgets the cached peers of a base (deleted, or moved).
    pub fn forget_peers(&self, base: &BaseName) {
        lock(&self.peers_cache).remove(&self.key(base).digest_prefix());
    }

    /// Feeds an input that names a request, and returns where its answer
    /// will come. The reply is registered before the input is handled: the
    /// answer may be among the effects it emits.
    fn ask<T>(
        self: &Arc<Self>,
        reply: impl FnOnce(oneshot::Sender<T>) -> Reply,
        input: impl FnOnce(ReqId) -> Input,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let mut shell = lock(&self.shell);
        shell.next_req += 1;
        let req = shell.next_req;
        shell.replies.insert(req, reply(tx));
        let now = self.now();
        shell.engine.handle(now, input(req));
        self.run_effects(&mut shell);
        rx
    }

    /// A client's write, once the election of `base` was seen final: the
    /// engine queues it into the base's next batch and answers once a
    /// majority acknowledged it, or why not.
    pub async fn write(
        self: &Arc<Self>,
        base: &BaseName,
        ops: Vec<WriteOp>,
    ) -> Result<Written, WriteRefusal> {
        let base = base.clone();
        let rx = self.ask(Reply::Write, |req| Input::Write { req, base, ops });
        rx.await
            .unwrap_or_else(|_| Err(WriteRefusal::Failed("the write was dropped".into())))
    }

    /// A master's write replicated to us: applied in order, or refused.
    pub async fn replicate(self: &Arc<Self>, r: ReplicateRequest) -> Result<(), Refusal> {
        self.replicate_start(r)
            .await
            .unwrap_or(Err(Refusal::StoreFailed))
    }

    /// A master's replicated write, handed to the engine now (writes of one
    /// call keep their order); the answer comes once it is decided.
    pub fn replicate_start(
        self: &Arc<Self>,
        r: ReplicateRequest,
    ) -> oneshot::Receiver<Result<(), Refusal>> {
        self.ask(Reply::Replicate, |req| Input::Replicate {
            req,
            from: r.from,
            base: r.base,
            epoch: r.epoch,
            prev: r.prev,
            next: r.next,
            ops: r.ops.into(),
        })
    }

    /// A peer's GETVERS: starts our side; when it names our node as master
    /// we must own it; a candidate's is answered once no write is
    /// half-applied here, and fences older masters. On `Ok`, read the
    /// local version and answer it.
    pub async fn getvers(
        self: &Arc<Self>,
        base: &BaseName,
        master_seq: Option<Seq>,
        candidate_seq: Option<Seq>,
        incarnation: Option<crate::storage::Incarnation>,
    ) -> Result<(), GetversRefusal> {
        let base = base.clone();
        let rx = self.ask(Reply::Getvers, |req| Input::GetversReq {
            req,
            base,
            master_seq,
            candidate_seq,
            incarnation,
        });
        rx.await.unwrap_or(Err(GetversRefusal::NotOwner(NotOwner {
            seq: master_seq.unwrap_or(0),
            owned: None,
            state: State::None,
        })))
    }

    /// Our replica's version of a base: from memory when it is there (no
    /// blocking thread: GETVERS rounds wait on it), else read from disk.
    pub async fn local_version(
        self: &Arc<Self>,
        key: &ElectionKey,
    ) -> Result<ReplicaVersion, String> {
        if let Some(v) = self.store.version_in_memory(key) {
            return Ok(v);
        }
        let (svc, key) = (self.clone(), key.clone());
        tokio::task::spawn_blocking(move || svc.store.version(&key))
            .await
            .map_err(|e| e.to_string())
    }

    /// What a candidate's GETVERS showed: its version and the one we
    /// answered (see `Input::CandidateVersions`).
    pub fn candidate_versions(
        self: &Arc<Self>,
        base: &BaseName,
        from: &ServiceId,
        seq: Seq,
        theirs: ReplicaVersion,
        ours: ReplicaVersion,
    ) {
        self.input(Input::CandidateVersions {
            base: base.clone(),
            from: from.clone(),
            seq,
            theirs,
            ours,
        });
    }

    /// Our master's farewell (see `Input::MasterLeft`).
    pub fn master_left(
        self: &Arc<Self>,
        base: &BaseName,
        from: &ServiceId,
        epoch: Seq,
        theirs: ReplicaVersion,
        ours: ReplicaVersion,
    ) {
        self.input(Input::MasterLeft {
            base: base.clone(),
            from: from.clone(),
            epoch,
            theirs,
            ours,
        });
    }

    /// A slave asks for a copy of `base`: taken once no write is half-applied.
    pub async fn dump(self: &Arc<Self>, base: &BaseName) -> Dumped {
        let base = base.clone();
        let rx = self.ask(Reply::Dump, |req| Input::DumpReq { req, base });
        rx.await
            .unwrap_or_else(|_| Dumped::Copy(Err(StoreFailure::Failed("copy dropped".into())), 0))
    }

    /// Emergency read-only mode: the bases whose replicas may differ.
    pub fn readonly(&self) -> Vec<Divergence> {
        lock(&self.shell).engine.readonly().to_vec()
    }

    /// Is the service in emergency read-only mode? (No copy of the list.)
    pub fn is_read_only(&self) -> bool {
        !lock(&self.shell).engine.readonly().is_empty()
    }

    /// The operator checked that the replicas of `bases` agree again.
    pub fn clear_readonly(self: &Arc<Self>, bases: Vec<BaseName>) {
        self.input(Input::ClearReadOnly { bases });
    }

    /// Leaves the election and comes back at once (as a new member).
    pub fn leave_and_rejoin(self: &Arc<Self>, base: &BaseName) {
        self.input(Input::LeaveAndRejoin { base: base.clone() });
    }

    pub fn request_sync(self: &Arc<Self>, base: &BaseName) {
        self.input(Input::SyncReq { base: base.clone() });
    }

    /// A peer's USE; `master` is its node's sequence when it announces its
    /// mastership (if we lead from an older node, we step down and come
    /// back: reference §4.9.3).
    pub fn use_received(self: &Arc<Self>, base: &BaseName, from: &ServiceId, master: Option<Seq>) {
        if master.is_some() && *from != self.me {
            self.announce(base, from);
        }
        self.input(Input::UseReceived {
            base: base.clone(),
            from: from.clone(),
            master,
        });
    }

    /// The state of the election of `base`, without copying the election.
    pub fn state(&self, base: &BaseName) -> Option<State> {
        lock(&self.shell).engine.view(base).map(|s| s.fsm.state())
    }

    pub fn snapshot(&self, base: &BaseName) -> Option<Arc<Snapshot>> {
        let key = self.key(base);
        lock(&self.shell)
            .engine
            .view(base)
            .map(|s| snapshot_of(s, key))
    }

    /// Reads the data volume and memory, and enters or leaves stop-writes
    /// as the guard judges them.
    pub fn check_resources(self: &Arc<Self>) {
        let reason = match self.guard.read() {
            Ok(r) => self.guard.judge(&r),
            Err(e) => {
                tracing::warn!("cannot read the data volume's usage: {e}");
                return;
            }
        };
        match self.guard.update(reason.clone()) {
            Some(true) => {
                tracing::warn!("STOP-WRITES: {}", reason.unwrap_or_default());
                self.apply_stop_writes(true);
            }
            Some(false) => {
                tracing::warn!("stop-writes cleared: resources back under their thresholds");
                self.apply_stop_writes(false);
            }
            None => {}
        }
    }

    /// See `Engine::balance_candidates`.
    pub fn balance_candidates(&self, now: Now, max: usize, idle_ms: u64) -> (usize, Vec<BaseName>) {
        lock(&self.shell)
            .engine
            .balance_candidates(now, max, idle_ms)
    }

    /// Runs `f` over every election, under the engine's lock and without
    /// copying them: keep `f` short (100,000 elections take milliseconds).
    pub fn with_elections<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = &election_engine::Slot>) -> R,
    ) -> R {
        let shell = lock(&self.shell);
        let mut all = shell.engine.elections();
        f(&mut all)
    }

    /// `with_elections` from slot `from` on (`Engine::elections_from`).
    pub fn with_elections_from<R>(
        &self,
        from: usize,
        f: impl FnOnce(&mut dyn Iterator<Item = (usize, &election_engine::Slot)>) -> R,
    ) -> R {
        let shell = lock(&self.shell);
        let mut all = shell.engine.elections_from(from);
        f(&mut all)
    }

    /// Election counts per class, for `/info` (PEERING counts as pending).
    pub fn counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut out: std::collections::BTreeMap<&'static str, usize> =
            ["none", "pending", "failed", "slave", "master"]
                .into_iter()
                .map(|k| (k, 0))
                .collect();
        for s in lock(&self.shell).engine.elections() {
            *out.entry(s.fsm.state().class()).or_default() += 1;
        }
        out
    }

    /// Records `from`'s announcement that it leads `base`, and wakes the
    /// requests waiting for the base's election.
    fn announce(&self, base: &BaseName, from: &ServiceId) {
        let now = Instant::now();
        {
            let mut announced = lock(&self.announced);
            if announced.len() >= ANNOUNCED_MAX {
                announced.retain(|_, (_, at)| now.duration_since(*at) < ANNOUNCED_FOR);
                if announced.len() >= ANNOUNCED_MAX {
                    announced.clear();
                }
            }
            announced.insert(base.clone(), (from.clone(), now));
        }
        self.wake_waiters(base);
    }

    /// Wakes the requests waiting for the election of `base` (they look at
    /// it again).
    fn wake_waiters(&self, base: &BaseName) {
        if let Some(list) = lock(&self.waiters).remove(base) {
            for tx in list {
                let _ = tx.send(());
            }
        }
    }

    /// The peer that announced itself master of `base` within
    /// `ANNOUNCED_FOR`, if it is one of `peers`.
    fn announced_master(&self, base: &BaseName, peers: &[ServiceId]) -> Option<ServiceId> {
        let (from, at) = lock(&self.announced).get(base).cloned()?;
        (at.elapsed() < ANNOUNCED_FOR && peers.contains(&from)).then_some(from)
    }

    /// Pokes the election until it reaches MASTER or SLAVE, or `budget` ends.
    /// Woken by the election's transitions; pokes again every 500 ms.
    pub async fn wait_final(
        self: &Arc<Self>,
        base: &BaseName,
        budget: Duration,
    ) -> Result<Arc<Snapshot>, WaitError> {
        match self.wait_final_for(base, budget, None).await? {
            Settled::Final(snap) => Ok(snap),
            Settled::Announced(_) => unreachable!("no announcement is looked for"),
        }
    }

    /// `wait_final` for a client write: while our election is under way, one
    /// of `peers` that announced itself master moments ago ends the wait,
    /// and the client is sent to it. A peer that left its election (a
    /// leave, a balance) settles again only after a create, a listing and a
    /// read; its clients need not wait for that. Only a redirect: the write
    /// is decided by the master it names.
    pub async fn wait_final_or_announced(
        self: &Arc<Self>,
        base: &BaseName,
        budget: Duration,
        peers: &[ServiceId],
    ) -> Result<Settled, WaitError> {
        self.wait_final_for(base, budget, Some(peers)).await
    }

    async fn wait_final_for(
        self: &Arc<Self>,
        base: &BaseName,
        budget: Duration,
        peers: Option<&[ServiceId]>,
    ) -> Result<Settled, WaitError> {
        let deadline = tokio::time::Instant::now() + budget;
        let quantum = Duration::from_millis(500);
        let mut poke_at = tokio::time::Instant::now();
        loop {
            if self.is_exiting() {
                return Err(WaitError::Exiting);
            }
            let (tx, rx) = oneshot::channel();
            {
                let mut waiters = lock(&self.waiters);
                let list = waiters.entry(base.clone()).or_default();
                list.retain(|t| !t.is_closed());
                list.push(tx);
            }
            let now = tokio::time::Instant::now();
            if now >= poke_at {
                self.poke(base, true);
                poke_at = now + quantum;
            }
            let Some(snap) = self.snapshot(base) else {
                continue;
            };
            if snap.fsm.state().is_final() {
                return Ok(Settled::Final(snap));
            }
            if let Some(master) = peers.and_then(|p| self.announced_master(base, p)) {
                return Ok(Settled::Announced(master));
            }
            if now >= deadline {
                return Err(WaitError::Timeout(snap));
            }
            tokio::select! {
                _ = rx => {}
                _ = tokio::time::sleep_until(poke_at.min(deadline)) => {}
            }
        }
    }

    /// Resets every election bound to a lost session.
    pub fn session_lost(self: &Arc<Self>, epoch: u64) {
        self.input(Input::SessionLost { epoch });
    }

    /// The connection dropped (the engine starts the grace period), or is
    /// back to the same session (`connected`).
    pub fn session_link(self: &Arc<Self>, epoch: u64, connected: bool) {
        self.input(if connected {
            Input::Reconnected { epoch }
        } else {
            Input::Disconnected { epoch }
        });
    }

    /// A session is usable again: elections reset by its loss rejoin.
    pub fn session_restored(self: &Arc<Self>) {
        let view = self.zk.view();
        self.input(Input::SessionConnected(SessionTag {
            epoch: view.epoch,
            id: view.session_id,
        }));
        self.input(Input::SessionRestored);
    }

    /// SIGTERM: refuse new masterships, leave every election, and wait
    /// (bounded) until none is a member any more.
    pub async fn exit_cleanly(self: &Arc<Self>, budget: Duration) -> usize {
        self.exiting.store(true, Ordering::SeqCst);
        self.input(Input::Exit);
        let deadline = Instant::now() + budget;
        loop {
            let members = lock(&self.shell).engine.members();
            if members == 0 || Instant::now() >= deadline {
                return members;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Marks the service as exiting without leaving (SIGINT).
    pub fn exit_fast(self: &Arc<Self>) {
        self.exiting.store(true, Ordering::SeqCst);
        self.input(Input::ExitFast);
    }

    /// Is this service a peer of `base` according to the directory? Returns
    /// all its peers (self included) when it is.
    pub async fn manages(
        self: &Arc<Self>,
        base: &BaseName,
        decache: bool,
    ) -> Result<Option<Arc<Vec<ServiceId>>>, crate::directory::DirectoryError> {
        let Some(entry) = self.entry(base, decache).await? else {
            return Ok(None);
        };
        if let Some(replica) = entry.replica {
            self.input(Input::Creation {
                base: base.clone(),
                directory: entry.incarnation,
                replica,
            });
        }
        Ok(Some(entry.peers))
    }

    /// The directory's entry for `base` when we are one of its peers. A
    /// fresh read made while we hold a replica also reads the replica's
    /// creation, for the engine to compare (it decides whether the replica
    /// is set aside).
    async fn entry(
        self: &Arc<Self>,
        base: &BaseName,
        decache: bool,
    ) -> Result<Option<Entry>, crate::directory::DirectoryError> {
        let epoch = self.zk.view().epoch;
        let cached_as = self.key(base).digest_prefix();
        if !decache {
            let now = self.now().mono_ms;
            if let Some(c) = lock(&self.peers_cache).get(&cached_as) {
                if c.session_epoch == epoch && c.read_at_ms + PEERS_CACHE_TTL_MS > now {
                    return Ok(Some(Entry {
                        peers: c.peers.clone(),
                        incarnation: c.incarnation,
                        replica: None,
                    }));
                }
            }
        }
        let entry = self
            .directory
            .lookup(&self.stype, base)
            .await?
            .filter(|e| e.peers.contains(&self.me));
        let Some(entry) = entry else {
            lock(&self.peers_cache).remove(&cached_as);
            return Ok(None);
        };
        let incarnation = entry.incarnation();
        let replica = self.replica_creation(base).await;
        let peers = self.intern(entry.peers);
        let mut cache = lock(&self.peers_cache);
        if cache.len() >= PEERS_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            cached_as,
            CachedPeers {
                peers: peers.clone(),
                incarnation,
                read_at_ms: self.now().mono_ms,
                session_epoch: epoch,
            },
        );
        Ok(Some(Entry {
            peers,
            incarnation,
            replica,
        }))
    }

    /// Confirms that ZooKeeper still holds our session `epoch`, so that a
    /// master may serve a read: nobody else can lead a base of ours before
    /// the session expires. Within the lease of an earlier round trip this
    /// costs nothing; otherwise it makes one (`sync`). The disconnect grace
    /// is not enough: it counts from when our client noticed a
    /// disconnection, which may come well after the server last heard us.
    pub async fn confirm_session(&self, epoch: u64) -> Result<(), String> {
        let leased = |svc: &Self| {
            lock(&svc.read_lease).is_some_and(|(e, until)| e == epoch && Instant::now() < until)
        };
        if leased(self) {
            return Ok(());
        }
        let _one = self.confirming.lock().await;
        if leased(self) {
            return Ok(());
        }
        let Some((client, current)) = self.zk.client() else {
            return Err("ZooKeeper is not connected".into());
        };
        if current != epoch {
            return Err("the ZooKeeper session changed".into());
        }
        let timeout = self.zk.view().negotiated_timeout;
        let sent = Instant::now();
        match tokio::time::timeout(timeout / 2, client.sync("/")).await {
            Ok(Ok(())) => {
                *lock(&self.read_lease) = Some((epoch, sent + timeout.mul_f64(READ_LEASE)));
                Ok(())
            }
            Ok(Err(e)) => Err(format!("ZooKeeper: {e}")),
            Err(_) => Err(format!(
                "ZooKeeper did not answer within {} ms",
                (timeout / 2).as_millis()
            )),
        }
    }

    /// Deletes every node of `base`'s election, whoever owns it (a deletion
    /// of the base). A peer that misses its drop (down, cut off, or the
    /// call lost) sees its node deleted, steps down and reads the directory
    /// again before it runs for the base again: a peer that missed the
    /// deletion cannot go on taking writes for a base that is gone, or that
    /// was created again (issue 14, H3). Returns how many were deleted.
    pub async fn delete_election_nodes(&self, base: &BaseName) -> Result<usize, String> {
        let Some((client, _)) = self.zk.client() else {
            return Err("ZooKeeper is not connected".into());
        };
        let key = self.key(base);
        let dir = self.layout.election_dir(&self.stype, &key);
        let children = match client.list_children(&dir).await {
            Ok(children) => children,
            Err(zk::Error::NoNode) => return Ok(0),
            Err(e) => return Err(format!("listing {dir}: {e}")),
        };
        let mut deleted = 0;
        // The directory holds the nodes of other bases too: ours only.
        for name in children.iter().filter(|c| {
            election_core::names::parse_node_name(c).is_some_and(|(k, _)| k == key.as_str())
        }) {
            let path = format!("{dir}/{name}");
            match client.delete(&path, None).await {
                Ok(()) => deleted += 1,
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(format!("deleting {path}: {e}")),
            }
        }
        Ok(deleted)
    }

    /// The creation of our replica of `base`, when we hold one that says.
    async fn replica_creation(
        self: &Arc<Self>,
        base: &BaseName,
    ) -> Option<crate::storage::Incarnation> {
        let key = self.key(base);
        // Most lookups find no file (a base seen first by its election):
        // one stat here, no blocking thread.
        if !self.store.has_replica(&key) {
            return None;
        }
        let svc = self.clone();
        match tokio::task::spawn_blocking(move || svc.store.incarnation_of(&key)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(base = %base, "cannot read the creation of our replica: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// Moves a replica of another creation of `base` away (the engine's
    /// `SetAside`). From the call on, its version reads as unknown: no
    /// candidacy of ours is promoted with it and no write applies to it.
    fn set_aside(
        self: &Arc<Self>,
        base: BaseName,
        found: crate::storage::Incarnation,
        current: crate::storage::Incarnation,
    ) {
        let key = self.key(&base);
        let ticket = self.store.begin_restore(&key);
        let svc = self.clone();
        tokio::spawn(async move {
            let (svc2, k) = (svc.clone(), key.clone());
            let moved = tokio::task::spawn_blocking(move || svc2.store.set_aside(&k, ticket))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            svc.store.abort_restore(&key, ticket);
            match moved {
                Ok(path) => tracing::warn!(
                    base = %base,
                    "replica of another creation of the base (incarnation {}, the directory's is {}) set aside as {}",
                    found.id,
                    current.id,
                    path.display()
                ),
                Err(e) => {
                    tracing::error!(base = %base, "cannot set aside a replica of another creation: {e}")
                }
            }
        });
    }

    /// Sends the USEs waiting for `to`, a batch at a time, until none is
    /// left. A peer that does not know batches (an older version: 404), or
    /// takes smaller bodies (413), gets them one by one.
    async fn send_uses(self: Arc<Self>, to: ServiceId) {
        // About 100 bytes each: a batch stays within the bodies we take.
        let per_call = (self.cfg.max_body_bytes / 128).clamp(1, crate::rpc::MAX_USES_PER_CALL);
        while let Some(batch) = self.uses.take(&to, per_call) {
            let req = crate::rpc::UsesRequest {
                service_type: self.stype.clone(),
                from: self.me.clone(),
                uses: batch,
            };
            let timeout = self.cfg.use_timeout;
            match self.rpc.notify(&to, "/v1/peer/uses", &req, timeout).await {
                Err(crate::rpc::PeerError::Status {
                    status: 404 | 413, ..
                }) => {
                    for u in req.uses {
                        let one = UseRequest {
                            base: u.base,
                            service_type: self.stype.clone(),
                            from: self.me.clone(),
                            master: u.master.is_some(),
                            epoch: u.master,
                        };
                        if let Err(e) = self.rpc.notify(&to, "/v1/peer/use", &one, timeout).await {
                            tracing::debug!(base = %one.base, "USE to {to} failed: {e}");
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("{} USE(s) to {to} failed: {e}", req.uses.len());
                }
                Ok(()) => {}
            }
        }
    }

    /// Sends the replicated writes waiting for `to`, in their order: one call
    /// at a time until the slave took it (its writes are then in the
    /// slave's engine, so no later call overtakes them), the writes of a
    /// call within the slave's body limit.
    async fn send_replicates(self: Arc<Self>, to: ServiceId) {
        let timeout = self.cfg.replicate_timeout;
        let room = self.cfg.max_body_bytes.saturating_sub(1024).max(1);
        let head = format!(
            "{{\"type\":{},\"from\":{},\"items\":[",
            serde_json::to_string(&self.stype).unwrap_or_default(),
            serde_json::to_string(&self.me).unwrap_or_default()
        );
        while let Some(batch) = self
            .replicates
            .take(&to, crate::rpc::MAX_REPLICATES_PER_CALL)
        {
            let mut call: Vec<QueuedReplicate> = Vec::new();
            let mut body = head.clone().into_bytes();
            for q in batch {
                if q.queued.elapsed() >= timeout {
                    // Never sent: the calls before it took all its time.
                    let why = format!("{to}: not sent within {timeout:?}, its calls were slow");
                    self.replicated(q.id, q.queued, Err(ReplicateFailure::Unreachable(why)));
                    continue;
                }
                let json = serde_json::to_vec(&q.item).unwrap_or_default();
                if !call.is_empty() && body.len() + json.len() + 2 > room {
                    body.extend_from_slice(b"]}");
                    let full = std::mem::replace(&mut body, head.clone().into_bytes());
                    self.replicates_call(&to, std::mem::take(&mut call), full)
                        .await;
                }
                if !call.is_empty() {
                    body.push(b',');
                }
                body.extend_from_slice(&json);
                call.push(q);
            }
            if !call.is_empty() {
                body.extend_from_slice(b"]}");
                self.replicates_call(&to, call, body).await;
            }
        }
    }

    /// One `/v1/peer/replicates` call: returns once the slave took it, and
    /// reads its answers in a task of their own.
    async fn replicates_call(
        self: &Arc<Self>,
        to: &ServiceId,
        call: Vec<QueuedReplicate>,
        body: Vec<u8>,
    ) {
        use crate::rpc::PeerError;
        let timeout = self.cfg.replicate_timeout;
        let first = call.first().and_then(|q| q.req_id.clone());
        let one_id = first.filter(|id| call.iter().all(|q| q.req_id.as_ref() == Some(id)));
        let taken =
            crate::reqid::with_id(one_id, self.rpc.replicates(to, body, call.len(), timeout));
        match taken.await {
            Ok(mut lines) => {
                let svc = self.clone();
                tokio::spawn(async move {
                    let mut open: Vec<Option<(election_engine::Id, Instant)>> =
                        call.iter().map(|q| Some((q.id, q.queued))).collect();
                    let error = loop {
                        match lines.next().await {
                            Ok(Some(line)) => {
                                let Some((id, queued)) =
                                    open.get_mut(line.i).and_then(Option::take)
                                else {
                                    continue;
                                };
                                let result = match line.refusal {
                                    None => Ok(()),
                                    Some(r) => Err(ReplicateFailure::Refused(r)),
                                };
                                svc.replicated(id, queued, result);
                            }
                            Ok(None) => break "no answer for it in the call's answer".to_string(),
                            Err(e) => break e.to_string(),
                        }
                    };
                    // Taken, never answered: it may have been applied.
                    for (id, queued) in open.into_iter().flatten() {
                        svc.replicated(id, queued, Err(ReplicateFailure::Unknown(error.clone())));
                    }
                });
            }
            Err(PeerError::Status {
                status: 404 | 413, ..
            }) => {
                // An older peer, or too large a call: one by one.
                for q in call {
                    let svc = self.clone();
                    let to = to.clone();
                    tokio::spawn(crate::reqid::with_id(q.req_id, async move {
                        let req = q.item.into_request(svc.stype.clone(), svc.me.clone());
                        let answer = svc.rpc.replicate(&to, &req, timeout).await;
                        svc.replicated(q.id, q.queued, answer.map_err(replicate_failure));
                    }));
                }
            }
            Err(e) => {
                let failure = replicate_failure(e);
                for q in call {
                    self.replicated(q.id, q.queued, Err(failure.clone()));
                }
            }
        }
    }

    /// A slave's answer to a replicated write, to the engine.
    fn replicated(
        self: &Arc<Self>,
        id: election_engine::Id,
        queued: Instant,
        result: Result<(), ReplicateFailure>,
    ) {
        self.metrics
            .replication
            .observe(queued.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.replication_failures.inc();
        }
        self.input(Input::Replicated { id, result });
    }

    fn queue_getvers(
        self: &Arc<Self>,
        to: ServiceId,
        id: election_engine::Id,
        req: GetversRequest,
    ) {
        if self.getvers.push(&to, (id, req)) {
            let svc = self.clone();
            tokio::spawn(async move { svc.send_getvers(to).await });
        }
    }

    /// Sends the GETVERS waiting for `to`, a batch at a time, until none is
    /// left, and gives each answer to the engine. One alone goes by
    /// `/v1/peer/getvers`; a peer that does not know batches (404), or
    /// takes smaller bodies (413), gets them one by one.
    async fn send_getvers(self: Arc<Self>, to: ServiceId) {
        use crate::rpc::PeerError;
        // Up to about 500 bytes each.
        let per_call = (self.cfg.max_body_bytes / 512).clamp(1, crate::rpc::MAX_GETVERS_PER_CALL);
        let timeout = self.cfg.getvers_timeout;
        while let Some(batch) = self.getvers.take(&to, per_call) {
            let (ids, asks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let bases: Vec<BaseName> = asks.iter().map(|a| a.base.clone()).collect();
            let answers: Vec<Result<GetversReply, String>> = if asks.len() == 1 {
                self.getvers_one_by_one(&to, &asks).await
            } else {
                let batch = crate::rpc::GetversBatch { asks };
                match self.rpc.getvers_many(&to, &batch, timeout).await {
                    Ok(answers) => answers
                        .into_iter()
                        .map(|a| match (a.reply, a.error) {
                            (Some(reply), _) => Ok(reply),
                            (None, Some((status, message))) => {
                                Err(format!("{to}: HTTP {status}: {message}"))
                            }
                            (None, None) => Err(format!("{to}: an empty answer")),
                        })
                        .collect(),
                    Err(PeerError::Status {
                        status: 404 | 413, ..
                    }) => self.getvers_one_by_one(&to, &batch.asks).await,
                    Err(e) => {
                        let e = e.to_string();
                        batch.asks.iter().map(|_| Err(e.clone())).collect()
                    }
                }
            };
            for ((id, base), answer) in ids.into_iter().zip(bases).zip(answers) {
                self.getvers_answered(id, base, answer).await;
            }
        }
    }

    async fn getvers_one_by_one(
        &self,
        to: &ServiceId,
        asks: &[GetversRequest],
    ) -> Vec<Result<GetversReply, String>> {
        let timeout = self.cfg.getvers_timeout;
        let calls = asks.iter().map(|req| async move {
            self.rpc
                .getvers(to, req, timeout)
                .await
                .map_err(|e| e.to_string())
        });
        futures::future::join_all(calls).await
    }

    /// One GETVERS answer, with our version read after it, to the engine.
    async fn getvers_answered(
        self: &Arc<Self>,
        id: election_engine::Id,
        base: BaseName,
        answer: Result<GetversReply, String>,
    ) {
        let remote = match answer {
            Ok(GetversReply::Version { version }) => Ok(RemoteVersion::Version(version)),
            Ok(GetversReply::Refused {
                reason,
                incarnation,
            }) => {
                if incarnation.is_some() {
                    // The peer's directory read names another creation of
                    // the base: ours may be stale.
                    self.forget_peers(&base);
                }
                Ok(RemoteVersion::Refused(reason))
            }
            Err(e) => Err(e),
        };
        let local = self.local_version(&self.key(&base)).await;
        self.input(Input::Getvers { id, remote, local });
    }

    /// The shared copy of a peer set.
    fn intern(&self, peers: Vec<ServiceId>) -> Arc<Vec<ServiceId>> {
        let mut sets = lock(&self.peer_sets);
        if let Some(known) = sets.get(&peers) {
            return known.clone();
        }
        if sets.len() >= PEERS_CACHE_MAX {
            sets.clear();
        }
        let set = Arc::new(peers);
        sets.insert(set.clone());
        set
    }

    /// Hands an armed watch to the router task.
    fn route_watch(&self, watch: election_engine::WatchId, watcher: zk::OneshotWatcher) {
        let fired: WatchFuture = Box::pin(async move {
            let ev = watcher.changed().await;
            (watch, ev.event_type == zk::EventType::NodeDeleted)
        });
        lock(&self.watches).push(fired);
        self.watch_armed.notify_one();
    }

    // ----- effects -----

    fn execute(self: &Arc<Self>, shell: &mut Shell, effect: Effect) {
        match effect {
            Effect::Zk { id, op } => self.zk_op(id, op),
            Effect::ResolvePeers { id, base, decache } => {
                let svc = self.clone();
                tokio::spawn(async move {
                    let result = match svc.entry(&base, decache).await {
                        Ok(entry) => Ok(entry.map(|e| Membership {
                            peers: e.peers.as_ref().clone(),
                            incarnation: e.incarnation,
                            replica: e.replica,
                        })),
                        Err(e) => Err(e.to_string()),
                    };
                    svc.input(Input::Peers { id, result });
                });
            }
            Effect::SetAside {
                base,
                found,
                current,
            } => self.set_aside(base, found, current),
            Effect::Farewell { to, base, epoch } => {
                let svc = self.clone();
                tokio::spawn(async move {
                    let Ok(version) = svc.local_version(&svc.key(&base)).await else {
                        return;
                    };
                    let req = LeftRequest {
                        base,
                        service_type: svc.stype.clone(),
                        from: svc.me.clone(),
                        epoch,
                        version,
                    };
                    let calls = to.iter().map(|peer| {
                        svc.rpc
                            .notify(peer, "/v1/peer/left", &req, svc.cfg.use_timeout)
                    });
                    for (peer, r) in to.iter().zip(futures::future::join_all(calls).await) {
                        if let Err(e) = r {
                            tracing::debug!(base = %req.base, "farewell to {peer} failed: {e}");
                        }
                    }
                });
            }
            Effect::Use { to, base, master } => {
                if self.uses.push(&to, crate::rpc::UseItem { base, master }) {
                    let svc = self.clone();
                    tokio::spawn(async move { svc.send_uses(to).await });
                }
            }
            Effect::Getvers {
                id,
                to,
                base,
                master_seq,
                candidate_seq,
                incarnation,
            } => {
                let req = GetversRequest {
                    base,
                    service_type: self.stype.clone(),
                    from: self.me.clone(),
                    master_seq,
                    candidate_seq,
                    version: None,
                    incarnation,
                };
                // A candidate tells its version (it takes no write until
                // it leads), from memory when it is there; the answer is
                // still compared with a read made after it, as every
                // GETVERS is.
                let key = self.key(&req.base);
                match candidate_seq.map(|_| self.store.version_in_memory(&key)) {
                    None => self.queue_getvers(to, id, req),
                    Some(Some(version)) => {
                        let version = Some(version);
                        self.queue_getvers(to, id, GetversRequest { version, ..req })
                    }
                    Some(None) => {
                        let svc = self.clone();
                        tokio::spawn(async move {
                            let version = svc.local_version(&key).await.ok();
                            svc.queue_getvers(to, id, GetversRequest { version, ..req });
                        });
                    }
                }
            }
            Effect::Sync { id, base, master } => {
                let key = self.key(&base);
                let ticket = self.store.begin_restore(&key);
                let svc = self.clone();
                let task = tokio::spawn(async move {
                    let dumped = svc
                        .rpc
                        .dump(&master, &base, &svc.stype, &svc.me, svc.cfg.sync_timeout)
                        .await;
                    let mut floor = 0;
                    let result = match dumped {
                        Ok((bytes, f)) => {
                            floor = f;
                            // The master's writes from now on follow this
                            // copy: they wait for its install.
                            svc.input(Input::SyncFetched { id });
                            let (svc2, k2) = (svc.clone(), key.clone());
                            match tokio::task::spawn_blocking(move || {
                                svc2.store.restore(&k2, ticket, &bytes)
                            })
                            .await
                            {
                                Ok(Ok(())) => Ok(()),
                                Ok(Err(e)) => Err(e.to_string()),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    svc.store.abort_restore(&key, ticket);
                    svc.input(Input::Synced { id, result, floor });
                });
                shell.syncs.insert(id, (task, ticket));
            }
            Effect::AbortSync { id, base } => {
                if let Some((task, ticket)) = shell.syncs.remove(&id) {
                    // The master went away mid-copy: stop, and our copy is
                    // current again. A copy already on a blocking thread
                    // finishes there, but its ticket is void: it is not
                    // installed (issue 14, H1).
                    task.abort();
                    self.store.abort_restore(&self.key(&base), ticket);
                }
            }
            Effect::Store { id, base, op } => self.store_op(shell, id, base, op),
            Effect::Replicate {
                id,
                to,
                base,
                epoch,
                prev,
                next,
                ops,
            } => {
                let queued = QueuedReplicate {
                    id,
                    item: crate::rpc::ReplicateItem {
                        base,
                        epoch,
                        prev,
                        next,
                        ops: ops.to_vec(),
                    },
                    queued: Instant::now(),
                    req_id: crate::reqid::current(),
                };
                if self.replicates.push(&to, queued) {
                    let svc = self.clone();
                    tokio::spawn(async move { svc.send_replicates(to).await });
                }
            }
            Effect::Resync { to, base } => {
                let svc = self.clone();
                tokio::spawn(crate::reqid::inherit(async move {
                    let req = UseRequest {
                        base,
                        service_type: svc.stype.clone(),
                        from: svc.me.clone(),
                        master: false,
                        epoch: None,
                    };
                    if let Err(e) = svc
                        .rpc
                        .notify(&to, "/v1/peer/resync", &req, svc.cfg.use_timeout)
                        .await
                    {
                        tracing::debug!(base = %req.base, "resync request to {to} failed: {e}");
                    }
                }));
            }
            Effect::WriteDone { req, result, .. } => {
                if let Some(Reply::Write(tx)) = shell.replies.remove(&req) {
                    let _ = tx.send(result);
                }
            }
            Effect::ReplicateDone { req, result } => {
                if let Some(Reply::Replicate(tx)) = shell.replies.remove(&req) {
                    let _ = tx.send(result);
                }
            }
            Effect::GetversServed { req, result, .. } => {
                if let Some(Reply::Getvers(tx)) = shell.replies.remove(&req) {
                    let _ = tx.send(result);
                }
            }
            Effect::DumpRefused {
                req,
                state,
                session_live,
            } => {
                if let Some(Reply::Dump(tx)) = shell.replies.remove(&req) {
                    let _ = tx.send(Dumped::Refused {
                        state,
                        session_live,
                    });
                }
            }
            Effect::Observe(o) => self.observe(o),
            Effect::Log(event) => {
                if event.is_warning() {
                    tracing::warn!("{event}");
                } else if matches!(event, LogEvent::Restored { .. }) {
                    tracing::info!("{event}");
                } else {
                    tracing::debug!("{event}");
                }
            }
        }
    }

    /// Runs a store op on a blocking thread and feeds its outcome back. A
    /// copy goes to the slave that asked before the engine hears it is done.
    fn store_op(self: &Arc<Self>, shell: &mut Shell, id: Id, base: BaseName, op: StoreOp) {
        let key = self.key(&base);
        let svc = self.clone();
        let when = i64::try_from(self.now().wall_ms).unwrap_or(0);
        let reply = match &op {
            StoreOp::Dump { req, .. } => match shell.replies.remove(req) {
                Some(Reply::Dump(tx)) => Some(tx),
                _ => None,
            },
            _ => None,
        };
        if self.store.durability().runs_inline(&op) {
            tokio::spawn(crate::reqid::inherit(async move {
                let result = svc.store.run(&key, &op, when);
                svc.input(Input::Stored { id, result });
            }));
            return;
        }
        tokio::spawn(crate::reqid::inherit(async move {
            let svc2 = svc.clone();
            let run = tokio::task::spawn_blocking(move || match op {
                StoreOp::Dump { floor, .. } => {
                    let copy = svc2.store.dump(&key).map_err(StoreFailure::from);
                    let result = match &copy {
                        Ok(_) => Ok(StoreOk::Dumped),
                        Err(e) => Err(e.clone()),
                    };
                    if let Some(tx) = reply {
                        let _ = tx.send(Dumped::Copy(copy, floor));
                    }
                    result
                }
                op => svc2.store.run(&key, &op, when),
            });
            let result = run
                .await
                .unwrap_or_else(|e| Err(StoreFailure::Failed(e.to_string())));
            svc.input(Input::Stored { id, result });
        }));
    }

    fn observe(&self, o: Observation) {
        match o {
            Observation::Transition {
                base,
                pre,
                event,
                post,
            } => {
                tracing::debug!(base = %base, "{pre} -> {post}");
                self.metrics.transition(pre.as_str(), event, post.as_str());
                self.wake_waiters(&base);
            }
            Observation::Getvers(outcome) => self.metrics.getvers_outcome(outcome),
            Observation::GetversSkipped | Observation::FarewellTaken => {
                self.metrics.getvers_skipped.inc();
            }
            Observation::TimeToFinal { ms } => {
                self.metrics.time_to_final.observe(ms as f64 / 1000.0);
            }
            Observation::Failover => {
                self.metrics.failovers.inc();
            }
            Observation::Resynced => {
                self.metrics.resyncs.inc();
            }
            Observation::WriteFenced => {}
            Observation::Overtaken => {
                self.metrics.overtaken.inc();
            }
            Observation::Committed { writes } => {
                self.metrics.batches.observe(writes as f64);
            }
            Observation::Pipelined { .. } => {
                self.metrics.pipelined.inc();
            }
        }
    }

    /// Sends one ZooKeeper request now (in emission order), and feeds its
    /// result back when it comes, then its watch's firing, if any.
    fn zk_op(self: &Arc<Self>, id: Id, op: ZkOp) {
        let svc = self.clone();
        let Some((client, epoch)) = self.zk.client() else {
            tokio::spawn(async move {
                svc.input(Input::Zk {
                    id,
                    session: None,
                    result: Err(ZkFailure::NotConnected),
                });
            });
            return;
        };
        let session = Some(SessionTag {
            epoch,
            id: client.session_id().0,
        });
        let reply = move |svc: &Arc<Service>, result: Result<ZkOk, ZkFailure>| {
            svc.input(Input::Zk {
                id,
                session,
                result,
            })
        };
        match op {
            ZkOp::CreateSeq { prefix, data, dir } => {
                let acls = self.zk.acls();
                let fut = primed(async move {
                    let opts = zk::CreateMode::EphemeralSequential.with_acls(acls);
                    let mut result = client.create(&prefix, &data, &opts).await;
                    if matches!(result, Err(zk::Error::NoNode)) {
                        // Group directories are created on demand (and at
                        // container creation), never all 65,536 up front.
                        if crate::zk::ensure_dir(&client, &dir, acls).await.is_ok() {
                            result = client.create(&prefix, &data, &opts).await;
                        }
                    }
                    result
                });
                tokio::spawn(async move {
                    let result = svc.metrics.timed("create", fut).await;
                    let result = result
                        .map(|(stat, seq)| ZkOk::Created {
                            seq: seq.into_i64(),
                            owner: stat.ephemeral_owner,
                        })
                        .map_err(failure);
                    reply(&svc, result);
                });
            }
            ZkOp::Exists { path, watch } => match watch {
                Some(watch) => {
                    let fut = primed(async move { client.check_and_watch_stat(&path).await });
                    tokio::spawn(async move {
                        let result = svc.metrics.timed("exists", fut).await;
                        match result {
                            Ok((Some(stat), watcher)) => {
                                reply(&svc, Ok(ZkOk::Stat(Some(stat.ephemeral_owner))));
                                svc.route_watch(watch, watcher);
                            }
                            Ok((None, _)) => reply(&svc, Ok(ZkOk::Stat(None))),
                            Err(e) => reply(&svc, Err(failure(e))),
                        }
                    });
                }
                None => {
                    let fut = primed(async move { client.check_stat(&path).await });
                    tokio::spawn(async move {
                        let result = svc.metrics.timed("exists", fut).await;
                        let result = result
                            .map(|stat| ZkOk::Stat(stat.map(|s| s.ephemeral_owner)))
                            .map_err(failure);
                        reply(&svc, result);
                    });
                }
            },
            ZkOp::Get { path, watch } => {
                let fut = primed(async move { client.get_and_watch_data(&path).await });
                tokio::spawn(async move {
                    let result = svc.metrics.timed("get", fut).await;
                    match result {
                        Ok((data, _, watcher)) => {
                            reply(&svc, Ok(ZkOk::Data(data)));
                            svc.route_watch(watch, watcher);
                        }
                        Err(e) => reply(&svc, Err(failure(e))),
                    }
                });
            }
            ZkOp::List { dir } => {
                let fut = primed(async move { client.list_children(&dir).await });
                tokio::spawn(async move {
                    let result = svc.metrics.timed("list", fut).await;
                    reply(&svc, result.map(ZkOk::Children).map_err(failure));
                });
            }
            ZkOp::Delete { path } => {
                let fut = primed(async move { client.delete(&path, None).await });
                tokio::spawn(async move {
                    let result = svc.metrics.timed("delete", fut).await;
                    reply(&svc, result.map(|()| ZkOk::Deleted).map_err(failure));
                });
            }
        }
    }
}

fn snapshot_of(s: &election_engine::Slot, key: ElectionKey) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        base: s.base.clone(),
        key,
        fsm: s.fsm.clone(),
        bound_epoch: s.bound_epoch,
    })
}

/// How a slave's answer to a replicated write reaches the engine: a typed
/// refusal, a call that never reached it, or no answer (it may have
/// applied it).
fn replicate_failure(e: crate::rpc::PeerError) -> ReplicateFailure {
    use crate::rpc::PeerError;
    match e {
        PeerError::Status {
            refusal: Some(refusal),
            ..
        } => ReplicateFailure::Refused(refusal),
        // Never reached it, or refused before reading it (authentication,
        // a malformed or oversized request): not applied.
        PeerError::Refused { .. }
        | PeerError::ConnectTimeout { .. }
        | PeerError::Unconnected { .. } => ReplicateFailure::Unreachable(e.to_string()),
        PeerError::Status { status, .. } if status < 500 => {
            ReplicateFailure::Unreachable(e.to_string())
        }
        e => ReplicateFailure::Unknown(e.to_string()),
    }
}

/// How a ZooKeeper error reaches the engine (reference §1.2: the session
/// class resets the election, the rest is an ordinary KO).
fn failure(e: zk::Error) -> ZkFailure {
    match classify(&e) {
        ErrorClass::NoNode => ZkFailure::NoNode,
        ErrorClass::SessionLost => ZkFailure::SessionLost(e.to_string()),
        ErrorClass::Failed => ZkFailure::Failed(e.to_string()),
    }
}

/// A future polled once right away: zookeeper-client sends a request when
/// its method is called, which, inside an `async` block, happens at the
/// first poll. Priming it while the engine's lock is held keeps the session
/// FIFO in the order the engine emitted its requests.
fn primed<T: Send + 'static>(
    fut: impl Future<Output = T> + Send + 'static,
) -> Pin<Box<dyn Future<Output = T> + Send>> {
    let mut fut: Pin<Box<dyn Future<Output = T> + Send>> = Box::pin(fut);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Box::pin(std::future::ready(out)),
        Poll::Pending => fut,
    }
}

/// Waits on every armed watch in one task and feeds each firing to the
/// engine (a watch costs its future, not a task).
async fn route_watches(svc: Arc<Service>) {
    use futures::StreamExt;
    use std::task::Poll;
    loop {
        // The set's lock is held only while polling, never with the shell's.
        let fired = std::future::poll_fn(|cx| match lock(&svc.watches).poll_next_unpin(cx) {
            Poll::Ready(Some(fired)) => Poll::Ready(fired),
            // Empty (no waker kept), or nothing fired yet: an armed watch
            // wakes us through `watch_armed` (a permit, so none is missed).
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        });
        tokio::select! {
            _ = svc.watch_armed.notified() => {}
            (watch, deleted) = fired => svc.input(Input::WatchFired { watch, deleted }),
        }
    }
}

/// glibc keeps what a start storm freed: at 100,000 elections, RSS stayed
/// well above the live heap (docs/PROFILES.md). Once no election is in
/// flight, hand that memory back to the system. Not during a storm: the trim
/// holds the allocator's lock while it walks the free lists.
async fn trim_when_quiet(svc: Arc<Service>) {
    let mut busy = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if lock(&svc.shell).engine.in_flight() > 0 {
            busy = true;
            continue;
        }
        if std::mem::take(&mut busy) {
            let started = Instant::now();
            let heap = tokio::task::spawn_blocking(release_free_memory).await;
            if let Ok(Some((used, free))) = heap {
                tracing::info!(
                    "elections quiet: freed memory handed back to the system in {} ms \
                     (heap: {} KiB in use, {} KiB free kept by the allocator)",
                    started.elapsed().as_millis(),
                    used >> 10,
                    free >> 10
                );
            }
        }
    }
}

/// Trims, then tells the heap's bytes in use and free (kept by glibc), when
/// this glibc can say (`mallinfo2` came with 2.33: it is looked up, so that
/// the binary still starts on an older system).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() -> Option<(usize, usize)> {
    type MallInfo2 = unsafe extern "C" fn() -> libc::mallinfo2;
    // SAFETY: malloc_trim takes no pointer; it only walks glibc's own free
    // lists (and madvises their pages away). dlsym is given a NUL-ended
    // name; a non-null result for "mallinfo2" is that function, whose C
    // type is `struct mallinfo2 mallinfo2(void)`.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
        let found = libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr());
        if found.is_null() {
            return None;
        }
        let mallinfo2 = std::mem::transmute::<*mut libc::c_void, MallInfo2>(found);
        let info = mallinfo2();
        Some((info.uordblks + info.hblkhd, info.fordblks))
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> Option<(usize, usize)> {
    None
}

/// Ticks the engine at its next wake-up, for as long as the service lives.
async fn run_timer(svc: Arc<Service>) {
    loop {
        let at = lock(&svc.shell).engine.next_wakeup();
        svc.timer_at.store(at.unwrap_or(u64::MAX), Ordering::SeqCst);
        let now = svc.now().mono_ms;
        let sleep = at.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(at.saturating_sub(now))
        });
        tokio::select! {
            _ = svc.timer.notified() => {}
            _ = tokio::time::sleep(sleep) => svc.input(Input::Tick),
        }
    }
}

/// Is the session our node lives in still ours and usable?
pub fn session_live(svc: &Service, bound_epoch: u64) -> bool {
    let view = svc.zk.view();
    view.epoch == bound_epoch
        && view.is_live(svc.cfg.disconnect_grace)
        && view.link != Link::Expired
}
