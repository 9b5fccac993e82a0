//! The running service: one actor task per election, the driver that turns
//! [`Action`]s into ZooKeeper and peer calls and their results into
//! [`Event`]s, waiters, idle expiry, and the clean exit.
//!
//! Each election is owned by its own task and fed through a channel, so no
//! lock is shared by all elections (OpenIO's global mutex). The registry
//! lock is only held to find or create an election's channel.

use crate::directory::Directory;
use crate::rpc::{GetversReply, GetversRequest, PeerClient, UseRequest};
use crate::storage::BaseStore;
use crate::zk::{classify, ErrorClass, Link, ZkSession};
use election_core::names::{
    parse_node_name, BaseName, ElectionKey, Namespace, Seq, ServiceId, ServiceType, ZkLayout,
};
use election_core::peer::{getvers_outcome, master_from_node};
use election_core::{Action, Election, Event, GetversOutcome, MasterBadReason, Now, State};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use zookeeper_client as zk;

/// Timers and limits of the service (election timers are in `election`).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub election: election_core::Config,
    /// Longest wait of a request for a final state (`election.wait.delay`).
    pub wait_delay: Duration,
    /// An idle NONE election is forgotten after this long.
    pub expire_none: Duration,
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
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// `balance`: masterships left per second, at most.
    pub balance_rate: f64,
    /// The shared secret of peer RPC and admin routes, if any.
    pub secret: Option<election_client::Secret>,
}

/// What an election looks like from outside its task.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub base: BaseName,
    pub key: ElectionKey,
    pub fsm: Election,
    /// The ZooKeeper session epoch our node was created in.
    pub bound_epoch: u64,
}

enum Msg {
    Event(Event),
    /// The session that owns a node we just created (from create's Stat).
    NodeOwner {
        seq: Seq,
        owner: i64,
    },
    /// The lower node LISTING chose, read with a watch: ASKING uses it
    /// instead of reading it again (one round trip less for followers).
    MasterNode(MasterNode),
    /// A usable session is back (new, or reconnected after the grace period).
    SessionRestored,
    AllowMaster(bool),
    Poke {
        touch: bool,
    },
    SessionLost {
        epoch: u64,
    },
    Exit,
}

struct Slot {
    tx: mpsc::UnboundedSender<Msg>,
    view: watch::Receiver<Arc<Snapshot>>,
}

pub struct Service {
    pub cfg: ServiceConfig,
    pub metrics: crate::metrics::Metrics,
    pub me: ServiceId,
    pub stype: ServiceType,
    pub layout: ZkLayout,
    pub zk: Arc<ZkSession>,
    pub store: BaseStore,
    pub directory: Directory,
    pub rpc: PeerClient,
    pub writes: crate::writes::Writes,
    pub guard: crate::guard::Guard,
    /// May our elections become master (configured, and not in stop-writes)?
    allow_master: AtomicBool,
    started: Instant,
    exiting: AtomicBool,
    slots: Mutex<HashMap<ElectionKey, Slot>>,
    /// Peers of the bases we host: fixed at creation, so positive answers
    /// are kept (bounded); a `decache` resolution bypasses and refreshes it.
    peers_cache: Mutex<HashMap<BaseName, Arc<Vec<ServiceId>>>>,
    /// Per base, the highest node of a candidate we answered a GETVERS for:
    /// writes from masters of lower epochs are refused (see `raise_fence`).
    fences: Mutex<HashMap<ElectionKey, Seq>>,
}

const PEERS_CACHE_MAX: usize = 200_000;

/// Why waiting for a final state failed.
#[derive(Debug)]
pub enum WaitError {
    Exiting,
    Timeout(Arc<Snapshot>),
}

impl Service {
    pub fn new(
        cfg: ServiceConfig,
        me: ServiceId,
        ns: Namespace,
        stype: ServiceType,
        zk: Arc<ZkSession>,
        store: BaseStore,
        guard: crate::guard::Guard,
    ) -> Arc<Self> {
        let layout = ZkLayout::new(ns);
        let allow_master = AtomicBool::new(cfg.election.allow_master);
        let directory = Directory::new(zk.clone(), layout.clone());
        let rpc = PeerClient::new(Duration::from_secs(1), cfg.secret.as_ref());
        Arc::new(Self {
            cfg,
            me,
            stype,
            layout,
            zk,
            store,
            directory,
            rpc,
            writes: crate::writes::Writes::default(),
            guard,
            allow_master,
            started: Instant::now(),
            exiting: AtomicBool::new(false),
            slots: Mutex::new(HashMap::new()),
            peers_cache: Mutex::new(HashMap::new()),
            fences: Mutex::new(HashMap::new()),
            metrics: crate::metrics::Metrics::default(),
        })
    }

    pub fn now(&self) -> Now {
        Now {
            mono_ms: self.started.elapsed().as_millis() as u64,
            wall_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::SeqCst)
    }

    pub fn key(&self, base: &BaseName) -> ElectionKey {
        ElectionKey::compute(base, &self.stype)
    }

    /// Sends to the election of `base`, creating it when `create` is set.
    /// Returns a view on it, or None when it does not exist.
    fn send(
        self: &Arc<Self>,
        base: &BaseName,
        msg: Msg,
        create: bool,
    ) -> Option<watch::Receiver<Arc<Snapshot>>> {
        let key = self.key(base);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut msg = msg;
        for _ in 0..2 {
            if let Some(slot) = slots.get(&key) {
                match slot.tx.send(msg) {
                    Ok(()) => return Some(slot.view.clone()),
                    Err(mpsc::error::SendError(m)) => {
                        msg = m;
                        slots.remove(&key);
                    }
                }
            }
            if !create {
                return None;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let fsm = Election::new(
                self.cfg.election.clone(),
                jitter_seed(&key, &self.me),
                self.now(),
            );
            let snap = Arc::new(Snapshot {
                base: base.clone(),
                key: key.clone(),
                fsm,
                bound_epoch: 0,
            });
            let (view_tx, view) = watch::channel(snap);
            slots.insert(
                key.clone(),
                Slot {
                    tx: tx.clone(),
                    view,
                },
            );
            tokio::spawn(run_election(
                self.clone(),
                base.clone(),
                key.clone(),
                tx,
                rx,
                view_tx,
            ));
        }
        None
    }

    /// Starts (or refreshes) the election of `base`: OpenIO's DB_USE.
    pub fn poke(self: &Arc<Self>, base: &BaseName, touch: bool) {
        self.send(base, Msg::Poke { touch }, true);
    }

    /// Asks the election to leave, without creating it when absent.
    pub fn leave(self: &Arc<Self>, base: &BaseName) -> bool {
        self.send(base, Msg::Event(Event::LeaveReq), false)
            .is_some()
    }

    /// Enters or leaves stop-writes: refuse (or allow again) masterships, and
    /// hand every current mastership over to healthy peers.
    pub fn apply_stop_writes(self: &Arc<Self>, stopped: bool) {
        let allow = self.cfg.election.allow_master && !stopped;
        self.allow_master.store(allow, Ordering::SeqCst);
        let masters: Vec<BaseName> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            for slot in slots.values() {
                let _ = slot.tx.send(Msg::AllowMaster(allow));
            }
            slots
                .values()
                .map(|s| s.view.borrow().clone())
                .filter(|s| s.fsm.state() == State::Master)
                .map(|s| s.base.clone())
                .collect()
        };
        if stopped {
            for base in &masters {
                self.leave_and_rejoin(base);
            }
            tracing::warn!(
                "stop-writes: handing {} mastership(s) over to healthy peers",
                masters.len()
            );
        }
    }

    /// Forgets the cached peers of a base (deleted, or moved).
    pub fn forget_peers(&self, base: &BaseName) {
        self.peers_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(base);
    }

    /// A candidate holding node `seq` asked our version: from now on, writes
    /// from masters of lower epochs are refused. Such a master's node is gone
    /// (the candidate saw none lower than its own), but it may not know yet,
    /// and a write it replicated to us after we answered would be missing
    /// from the candidate's copy (found by the simulation, see sim/README).
    /// The caller holds the base's write lock, so no write is half-applied.
    pub fn raise_fence(&self, base: &BaseName, seq: Seq) {
        let mut fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
        let f = fences.entry(self.key(base)).or_insert(seq);
        *f = election_core::names::seq_latest(*f, seq);
    }

    pub fn fence(&self, base: &BaseName) -> Option<Seq> {
        let fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
        fences.get(&self.key(base)).copied()
    }

    /// Leaves the election and comes back at once (as a new member).
    pub fn leave_and_rejoin(self: &Arc<Self>, base: &BaseName) {
        self.send(base, Msg::Event(Event::LeaveReq), false);
        self.send(base, Msg::Poke { touch: false }, false);
    }

    pub fn request_sync(self: &Arc<Self>, base: &BaseName) {
        self.send(base, Msg::Event(Event::SyncReq), true);
    }

    /// A new master told us it leads: if we believe we lead too, step down
    /// and come back (reference §4.9.3).
    pub fn master_announced(self: &Arc<Self>, base: &BaseName, from: &ServiceId) {
        if self
            .snapshot(base)
            .is_some_and(|s| s.fsm.state() == State::Master)
        {
            tracing::warn!(base = %base, "suspicious double master: {from} claims mastership too; leaving");
            self.send(base, Msg::Event(Event::LeaveReq), false);
        }
        self.poke(base, false);
    }

    pub fn snapshot(&self, base: &BaseName) -> Option<Arc<Snapshot>> {
        let key = self.key(base);
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(&key).map(|s| s.view.borrow().clone())
    }

    pub fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.values().map(|s| s.view.borrow().clone()).collect()
    }

    /// Election counts per class, for `/info` (PEERING counts as pending).
    pub fn counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut out: std::collections::BTreeMap<&'static str, usize> =
            ["none", "pending", "failed", "slave", "master"]
                .into_iter()
                .map(|k| (k, 0))
                .collect();
        for s in self.snapshots() {
            *out.entry(s.fsm.state().class()).or_default() += 1;
        }
        out
    }

    /// Pokes the election until it reaches MASTER or SLAVE, or `budget` ends.
    pub async fn wait_final(
        self: &Arc<Self>,
        base: &BaseName,
        budget: Duration,
    ) -> Result<Arc<Snapshot>, WaitError> {
        let deadline = tokio::time::Instant::now() + budget;
        let quantum = Duration::from_millis(500);
        let mut view = self.send(base, Msg::Poke { touch: true }, true);
        loop {
            if self.is_exiting() {
                return Err(WaitError::Exiting);
            }
            let Some(rx) = view.as_mut() else {
                view = self.send(base, Msg::Poke { touch: true }, true);
                continue;
            };
            let snap = rx.borrow_and_update().clone();
            if snap.fsm.state().is_final() {
                return Ok(snap);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout(snap));
            }
            let wake = (now + quantum).min(deadline);
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        view = None;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    view = self.send(base, Msg::Poke { touch: true }, true);
                }
            }
        }
    }

    /// Resets every election bound to a lost session.
    pub fn session_lost(&self, epoch: u64) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for slot in slots.values() {
            let _ = slot.tx.send(Msg::SessionLost { epoch });
        }
    }

    /// A session is usable again: elections reset by its loss rejoin.
    pub fn session_restored(&self) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for slot in slots.values() {
            let _ = slot.tx.send(Msg::SessionRestored);
        }
    }

    /// SIGTERM: refuse new masterships, leave every election, and wait
    /// (bounded) until none is a member any more.
    pub async fn exit_cleanly(&self, budget: Duration) -> usize {
        self.exiting.store(true, Ordering::SeqCst);
        {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            for slot in slots.values() {
                let _ = slot.tx.send(Msg::Exit);
            }
        }
        let deadline = Instant::now() + budget;
        loop {
            let members = self
                .snapshots()
                .iter()
                .filter(|s| !matches!(s.fsm.state(), State::None | State::Failed))
                .count();
            if members == 0 || Instant::now() >= deadline {
                return members;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Marks the service as exiting without leaving (SIGINT).
    pub fn exit_fast(&self) {
        self.exiting.store(true, Ordering::SeqCst);
    }

    /// Is this service a peer of `base` according to the directory? Returns
    /// all its peers (self included) when it is.
    pub async fn manages(
        &self,
        base: &BaseName,
        decache: bool,
    ) -> Result<Option<Arc<Vec<ServiceId>>>, crate::directory::DirectoryError> {
        if !decache {
            let cache = self.peers_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(peers) = cache.get(base) {
                return Ok(Some(peers.clone()));
            }
        }
        let peers = self
            .directory
            .lookup(&self.stype, base)
            .await?
            .filter(|e| e.peers.contains(&self.me))
            .map(|e| Arc::new(e.peers));
        let mut cache = self.peers_cache.lock().unwrap_or_else(|p| p.into_inner());
        match &peers {
            Some(p) => {
                if cache.len() >= PEERS_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(base.clone(), p.clone());
            }
            None => {
                cache.remove(base);
            }
        }
        Ok(peers)
    }
}

fn jitter_seed(key: &ElectionKey, me: &ServiceId) -> u64 {
    let mut seed = key.spread();
    for b in me.as_str().bytes() {
        seed = seed.rotate_left(5) ^ u64::from(b);
        seed = seed.wrapping_mul(0x100_0000_01B3);
    }
    seed
}

/// The task owning one election.
async fn run_election(
    svc: Arc<Service>,
    base: BaseName,
    key: ElectionKey,
    tx: mpsc::UnboundedSender<Msg>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    view_tx: watch::Sender<Arc<Snapshot>>,
) {
    let mut fsm = view_tx.borrow().fsm.clone();
    if svc.is_exiting() {
        fsm.set_exiting();
    }
    let mut op = OpState::default();
    // Reset by a lost session while a member: rejoin once a session is back.
    let mut rejoin_when_restored = false;
    let driver = Driver {
        svc: svc.clone(),
        base: base.clone(),
        key: key.clone(),
        tx,
    };
    let expire_none = svc.cfg.expire_none.as_millis() as u64;
    // Metrics: when the election left NONE, and the last master it settled on.
    let mut started: Option<Instant> = None;
    let mut last_master: Option<ServiceId> = None;
    loop {
        let now = svc.now();
        let wake = match fsm.state() {
            State::None => fsm.entered_mono() + expire_none,
            _ => fsm.next_deadline().unwrap_or(u64::MAX),
        };
        let sleep = Duration::from_millis(wake.saturating_sub(now.mono_ms).min(86_400_000));
        let msg = tokio::select! {
            biased;
            m = rx.recv() => m,
            _ = tokio::time::sleep(sleep) => None,
        };
        let now = svc.now();
        let event = match msg {
            Some(Msg::Event(e)) => e,
            Some(Msg::Poke { touch }) => {
                if touch {
                    fsm.touch(now);
                }
                Event::None
            }
            Some(Msg::SessionLost { epoch }) => {
                if epoch != op.bound_epoch || fsm.state() == State::None {
                    continue;
                }
                rejoin_when_restored = !svc.is_exiting();
                Event::Disconnected
            }
            Some(Msg::NodeOwner { seq, owner }) => {
                op.node_owner = Some((seq, owner));
                continue;
            }
            Some(Msg::MasterNode(node)) => {
                op.master_node = Some(node);
                continue;
            }
            Some(Msg::SessionRestored) => {
                if !std::mem::take(&mut rejoin_when_restored) || fsm.state() != State::None {
                    continue;
                }
                Event::None
            }
            Some(Msg::AllowMaster(allow)) => {
                fsm.set_allow_master(allow);
                continue;
            }
            Some(Msg::Exit) => {
                fsm.set_exiting();
                Event::LeaveReq
            }
            None if fsm.state() == State::None => {
                // Idle expiry: forget the election if nobody waits on it.
                if fsm.idle_for(now).is_some_and(|idle| idle >= expire_none)
                    && view_tx.receiver_count() <= 1
                {
                    let mut slots = svc.slots.lock().unwrap_or_else(|p| p.into_inner());
                    if rx.is_empty() {
                        slots.remove(&key);
                        // Not a member any more: a new membership follows a
                        // master whose node exists, above any fence.
                        svc.fences
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                        return;
                    }
                }
                continue;
            }
            None => Event::None,
        };
        let pre = fsm.state();
        let event_name = event.name();
        let actions = fsm.handle(now, event);
        for action in actions {
            driver.execute(&fsm, action, &mut op);
        }
        if fsm.state() != State::Syncing {
            if let Some(task) = op.sync_task.take() {
                if !task.is_finished() {
                    // The master went away mid-copy: stop, and our copy is
                    // current again (the rename is atomic, nothing half-done).
                    task.abort();
                    svc.store.abort_restore(&key);
                }
            }
        }
        if let Some(outcome) = event_name.strip_prefix("GETVERS_") {
            svc.metrics.getvers_outcome(outcome);
        }
        let post = fsm.state();
        if post != pre {
            tracing::debug!(base = %base, "{pre} -> {post}");
            svc.metrics
                .transition(pre.as_str(), event_name, post.as_str());
            match post {
                State::None => started = None,
                State::Master | State::Slave => {
                    if let Some(t) = started.take() {
                        svc.metrics.time_to_final.observe(t.elapsed().as_secs_f64());
                    }
                    let master = match post {
                        State::Master => Some(svc.me.clone()),
                        _ => fsm.master().cloned(),
                    };
                    if last_master.is_some() && master.is_some() && last_master != master {
                        svc.metrics.failovers.inc();
                    }
                    if master.is_some() {
                        last_master = master;
                    }
                }
                _ if pre == State::None => started = Some(Instant::now()),
                _ => {}
            }
        }
        view_tx.send_replace(Arc::new(Snapshot {
            base: base.clone(),
            key: key.clone(),
            fsm: fsm.clone(),
            bound_epoch: op.bound_epoch,
        }));
    }
}

struct Driver {
    svc: Arc<Service>,
    base: BaseName,
    key: ElectionKey,
    tx: mpsc::UnboundedSender<Msg>,
}

/// How a failed ZooKeeper call maps to an event.
fn zk_failure(e: &zk::Error, ko: Event) -> Event {
    match classify(e) {
        ErrorClass::SessionLost => Event::Disconnected,
        _ => ko,
    }
}

impl Driver {
    fn emit(&self, ev: Event) {
        let _ = self.tx.send(Msg::Event(ev));
    }

    fn node(&self, seq: Seq) -> String {
        self.svc
            .layout
            .election_node(&self.svc.stype, &self.key, seq)
    }

    fn execute(&self, fsm: &Election, action: Action, op_state: &mut OpState) {
        let svc = &self.svc;
        let client = svc.zk.client();
        match action {
            Action::ResolvePeers { op, decache } => {
                let (svc, base, tx) = (svc.clone(), self.base.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let peers = match svc.manages(&base, decache).await {
                        Ok(Some(peers)) => {
                            Some(peers.iter().filter(|p| **p != svc.me).cloned().collect())
                        }
                        Ok(None) => {
                            tracing::info!(base = %base, "base not managed by this service");
                            None
                        }
                        Err(e) => {
                            tracing::warn!(base = %base, "peer resolution failed: {e}");
                            None
                        }
                    };
                    let _ = tx.send(Msg::Event(Event::GetpeersDone { op, peers }));
                });
            }
            Action::Create { op, generation: _ } => {
                let Some((client, epoch)) = client else {
                    return self.emit(Event::CreateKo {
                        op,
                        error: "ZooKeeper not connected".into(),
                    });
                };
                op_state.bound_epoch = epoch;
                let prefix = format!("{}-", svc.layout.election_prefix(&svc.stype, &self.key));
                let dir = svc.layout.election_dir(&svc.stype, &self.key);
                let me = svc.me.clone();
                let tx = self.tx.clone();
                let acls = svc.zk.acls();
                let svc = svc.clone();
                tokio::spawn(async move {
                    let opts = zk::CreateMode::EphemeralSequential.with_acls(acls);
                    let create = client.create(&prefix, me.as_str().as_bytes(), &opts);
                    let mut result = svc.metrics.timed("create", create).await;
                    if matches!(result, Err(zk::Error::NoNode)) {
                        // Group directories are created on demand (and at container
                        // creation), never all 65,536 up front.
                        if crate::zk::ensure_dir(&client, &dir, acls).await.is_ok() {
                            result = client.create(&prefix, me.as_str().as_bytes(), &opts).await;
                        }
                    }
                    if let Ok((stat, seq)) = &result {
                        if stat.ephemeral_owner != 0 {
                            let _ = tx.send(Msg::NodeOwner {
                                seq: seq.into_i64(),
                                owner: stat.ephemeral_owner,
                            });
                        }
                    }
                    let ev = match result {
                        Ok((_, seq)) => Event::CreateOk {
                            op,
                            seq: seq.into_i64(),
                        },
                        Err(e) => zk_failure(
                            &e,
                            Event::CreateKo {
                                op,
                                error: e.to_string(),
                            },
                        ),
                    };
                    let _ = tx.send(Msg::Event(ev));
                });
            }
            Action::WatchSelf {
                op,
                seq,
                generation,
            } => {
                let Some((client, _)) = client else {
                    return self.emit(Event::ExistsKo {
                        op,
                        error: "ZooKeeper not connected".into(),
                    });
                };
                let path = self.node(seq);
                let tx = self.tx.clone();
                // LIST goes right behind EXISTS (a session's requests are
                // processed in order): the listing LISTING would ask for next.
                let dir = svc.layout.election_dir(&svc.stype, &self.key);
                let (listing_tx, listing_rx) = tokio::sync::oneshot::channel();
                op_state.prefetched = Some((seq, listing_rx));
                let svc = svc.clone();
                tokio::spawn(async move {
                    let exists = svc
                        .metrics
                        .timed("exists", client.check_and_watch_stat(&path));
                    let listing = svc.metrics.timed("list", client.list_children(&dir));
                    let (exists, listing) = futures::join!(exists, listing);
                    let _ = listing_tx.send(listing);
                    match exists {
                        Ok((None, _)) => {
                            let _ = tx.send(Msg::Event(Event::LeftSelf { generation, seq }));
                            let _ = tx.send(Msg::Event(Event::ExistsOk { op }));
                        }
                        Ok((Some(_), watcher)) => {
                            let _ = tx.send(Msg::Event(Event::ExistsOk { op }));
                            drop(client);
                            let ev = watcher.changed().await;
                            if ev.event_type == zk::EventType::NodeDeleted {
                                let _ = tx.send(Msg::Event(Event::LeftSelf { generation, seq }));
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Msg::Event(zk_failure(
                                &e,
                                Event::ExistsKo {
                                    op,
                                    error: e.to_string(),
                                },
                            )));
                        }
                    }
                });
            }
            Action::List { op, seq } => {
                let Some((client, _)) = client else {
                    return self.emit(Event::ListKo {
                        op,
                        error: "ZooKeeper not connected".into(),
                    });
                };
                let dir = svc.layout.election_dir(&svc.stype, &self.key);
                let (key, tx, me) = (self.key.clone(), self.tx.clone(), svc.me.clone());
                let peers: Vec<ServiceId> =
                    fsm.peers().map(<[ServiceId]>::to_vec).unwrap_or_default();
                let base = self.base.clone();
                let known_owner = op_state
                    .node_owner
                    .filter(|(s, _)| *s == seq)
                    .map(|(_, o)| o);
                let listing = op_state
                    .prefetched
                    .take()
                    .filter(|(s, _)| *s == seq)
                    .map(|(_, rx)| rx);
                tokio::spawn(async move {
                    let children = match listing {
                        Some(rx) => match rx.await {
                            Ok(result) => result,
                            Err(_) => client.list_children(&dir).await,
                        },
                        None => client.list_children(&dir).await,
                    };
                    let ev =
                        match lowest_valid(&client, children, &dir, &key, seq, &me, &peers, &base)
                            .await
                        {
                            // Never lead on a node that is not our current session's:
                            // known from create's Stat, else asked.
                            Ok((lowest, _))
                                if lowest == seq && known_owner == Some(client.session_id().0) =>
                            {
                                Event::ListOk { op, lowest }
                            }
                            Ok((lowest, _)) if lowest == seq => {
                                let own = format!(
                                    "{dir}/{key}-{}",
                                    election_core::names::format_seq(seq)
                                );
                                match client.check_stat(&own).await {
                                    Ok(Some(stat))
                                        if stat.ephemeral_owner == client.session_id().0 =>
                                    {
                                        Event::ListOk { op, lowest }
                                    }
                                    Ok(Some(_)) => Event::Disconnected,
                                    Ok(None) => Event::ListKo {
                                        op,
                                        error: "our node vanished".into(),
                                    },
                                    Err(e) => zk_failure(
                                        &e,
                                        Event::ListKo {
                                            op,
                                            error: e.to_string(),
                                        },
                                    ),
                                }
                            }
                            Ok((lowest, node)) => {
                                // Ahead of the answer, on the same channel.
                                if let Some(node) = node {
                                    let _ = tx.send(Msg::MasterNode(node));
                                }
                                Event::ListOk { op, lowest }
                            }
                            Err(ev) => match ev {
                                ListFailure::Zk(e) => zk_failure(
                                    &e,
                                    Event::ListKo {
                                        op,
                                        error: e.to_string(),
                                    },
                                ),
                                ListFailure::Missing => Event::ListKo {
                                    op,
                                    error: format!("our node {seq} is not in the group"),
                                },
                            },
                        };
                    let _ = tx.send(Msg::Event(ev));
                });
            }
            Action::GetMaster {
                op,
                seq,
                generation,
            } => {
                let Some((client, _)) = client else {
                    return self.emit(Event::MasterKo {
                        op,
                        error: "ZooKeeper not connected".into(),
                    });
                };
                let path = self.node(seq);
                let tx = self.tx.clone();
                let me = svc.me.clone();
                let peers: Option<Vec<ServiceId>> = fsm.peers().map(<[ServiceId]>::to_vec);
                // LISTING read this node with a watch, in this session: use it.
                let read = op_state
                    .master_node
                    .take()
                    .filter(|n| n.seq == seq && n.session == client.session_id().0);
                let svc = svc.clone();
                tokio::spawn(async move {
                    let got = match read {
                        Some(n) => Ok((n.data, n.watcher)),
                        None => svc
                            .metrics
                            .timed("get", client.get_and_watch_data(&path))
                            .await
                            .map(|(data, _, watcher)| (data, watcher)),
                    };
                    match got {
                        Ok((data, watcher)) => {
                            let ev = match master_from_node(&data, &me, peers.as_deref()) {
                                Ok(master) => Event::MasterOk { op, master },
                                Err(MasterBadReason::Rogue(_)) => Event::MasterBad {
                                    op,
                                    reason: MasterBadReason::Rogue(seq),
                                },
                                Err(reason) => Event::MasterBad { op, reason },
                            };
                            let _ = tx.send(Msg::Event(ev));
                            drop(client);
                            let ev = watcher.changed().await;
                            if ev.event_type == zk::EventType::NodeDeleted {
                                let _ = tx.send(Msg::Event(Event::LeftMaster { generation, seq }));
                            }
                        }
                        Err(zk::Error::NoNode) => {
                            let _ = tx.send(Msg::Event(Event::LeftMaster { generation, seq }));
                            let _ = tx.send(Msg::Event(Event::MasterKo {
                                op,
                                error: "master node vanished".into(),
                            }));
                        }
                        Err(e) => {
                            let _ = tx.send(Msg::Event(zk_failure(
                                &e,
                                Event::MasterKo {
                                    op,
                                    error: e.to_string(),
                                },
                            )));
                        }
                    }
                });
            }
            Action::Delete { op, seq } => {
                let Some((client, _)) = client else {
                    if let Some(op) = op {
                        self.emit(Event::LeaveKo {
                            op,
                            error: "ZooKeeper not connected".into(),
                        });
                    }
                    return;
                };
                // The request is sent now, before any later action's request.
                let fut = client.delete(&self.node(seq), None);
                let tx = self.tx.clone();
                let base = self.base.clone();
                let svc = svc.clone();
                tokio::spawn(async move {
                    let result = svc.metrics.timed("delete", fut).await;
                    match (op, result) {
                        (Some(op), Ok(())) | (Some(op), Err(zk::Error::NoNode)) => {
                            let _ = tx.send(Msg::Event(Event::LeaveOk { op }));
                        }
                        (Some(op), Err(e)) => {
                            let _ = tx.send(Msg::Event(zk_failure(
                                &e,
                                Event::LeaveKo {
                                    op,
                                    error: e.to_string(),
                                },
                            )));
                        }
                        (None, Ok(())) => {
                            tracing::info!(base = %base, "deleted leftover node {seq}")
                        }
                        (None, Err(_)) => {}
                    }
                });
            }
            Action::SendUse { peers, master } => {
                for peer in peers {
                    let svc = svc.clone();
                    let req = UseRequest {
                        base: self.base.clone(),
                        service_type: svc.stype.clone(),
                        from: svc.me.clone(),
                        master,
                    };
                    tokio::spawn(async move {
                        if let Err(e) = svc.rpc.use_(&peer, &req, svc.cfg.use_timeout).await {
                            tracing::debug!(base = %req.base, "USE to {peer} failed: {e}");
                        }
                    });
                }
            }
            Action::SendGetvers {
                op,
                peer,
                master_seq,
            } => {
                let svc = svc.clone();
                let (base, key, tx) = (self.base.clone(), self.key.clone(), self.tx.clone());
                let candidate_seq = fsm.local_id().filter(|_| master_seq.is_none());
                tokio::spawn(async move {
                    let req = GetversRequest {
                        base,
                        service_type: svc.stype.clone(),
                        from: svc.me.clone(),
                        master_seq,
                        candidate_seq,
                    };
                    let remote = svc.rpc.getvers(&peer, &req, svc.cfg.getvers_timeout).await;
                    let svc2 = svc.clone();
                    let local = tokio::task::spawn_blocking(move || svc2.store.version(&key)).await;
                    let (outcome, unknown) = match (local, remote) {
                        (Err(e), _) => (
                            GetversOutcome::Ko(format!("reading the local version failed: {e}")),
                            false,
                        ),
                        (_, Err(e)) => (GetversOutcome::Ko(e.to_string()), false),
                        (_, Ok(GetversReply::Refused { reason })) => (
                            GetversOutcome::Ko(format!("{peer} refused: {reason}")),
                            false,
                        ),
                        (Ok(local), Ok(GetversReply::Version { version })) => (
                            getvers_outcome(&local, &version, &peer, master_seq.is_some()),
                            local.is_unknown() || version.is_unknown(),
                        ),
                    };
                    if let (GetversOutcome::Ko(why), true) = (&outcome, unknown) {
                        // The seed's rookie: never promote on an unknown version.
                        tracing::warn!(base = %req.base, "ROOKIE: {why}: no promotion until every version is known");
                    }
                    let _ = tx.send(Msg::Event(Event::Getvers { op, peer, outcome }));
                });
            }
            Action::Sync { op, master } => {
                let svc = svc.clone();
                let (base, key, tx) = (self.base.clone(), self.key.clone(), self.tx.clone());
                svc.store.begin_restore(&key);
                op_state.sync_task = Some(tokio::spawn(async move {
                    let dumped = svc
                        .rpc
                        .dump(&master, &base, &svc.stype, &svc.me, svc.cfg.sync_timeout)
                        .await;
                    let ev = match dumped {
                        Ok(bytes) => {
                            let svc2 = svc.clone();
                            let k2 = key.clone();
                            match tokio::task::spawn_blocking(move || {
                                svc2.store.restore(&k2, &bytes)
                            })
                            .await
                            {
                                Ok(Ok(())) => {
                                    svc.metrics.resyncs.inc();
                                    tracing::info!(base = %base, "replica restored from {master}");
                                    Event::SyncOk { op }
                                }
                                Ok(Err(e)) => Event::SyncKo {
                                    op,
                                    error: e.to_string(),
                                },
                                Err(e) => Event::SyncKo {
                                    op,
                                    error: e.to_string(),
                                },
                            }
                        }
                        Err(e) => Event::SyncKo {
                            op,
                            error: e.to_string(),
                        },
                    };
                    svc.store.abort_restore(&key);
                    let _ = tx.send(Msg::Event(ev));
                }));
            }
        }
    }
}

/// What one election's task keeps about its operations in flight.
#[derive(Default)]
struct OpState {
    /// The ZooKeeper session epoch our node was created in.
    bound_epoch: u64,
    /// Our latest node and the session that created it (create's Stat).
    node_owner: Option<(Seq, i64)>,
    /// The group's listing, sent right behind our node's EXISTS.
    prefetched: Option<Prefetch>,
    /// The lower node LISTING read (with its watch), for ASKING.
    master_node: Option<MasterNode>,
    /// The copy from the master while SYNCING (aborted if we leave SYNCING).
    sync_task: Option<tokio::task::JoinHandle<()>>,
}

/// A listing requested ahead of LISTING, for our node `Seq`.
type Prefetch = (
    Seq,
    tokio::sync::oneshot::Receiver<Result<Vec<String>, zk::Error>>,
);

/// A lower node read with a watch while LISTING: its sequence, its data,
/// and the watch that reports its deletion.
struct MasterNode {
    seq: Seq,
    session: i64,
    data: Vec<u8>,
    watcher: zk::OneshotWatcher,
}

enum ListFailure {
    Zk(zk::Error),
    Missing,
}

/// The lowest node of the election that a peer may follow: nodes below ours
/// whose data is not a service id, or names a service that is not a peer of
/// the base, are skipped (every peer applies the same rule, so all agree).
/// Nodes carrying our own id are kept: the FSM deletes them.
#[allow(clippy::too_many_arguments)]
async fn lowest_valid(
    client: &zk::Client,
    children: Result<Vec<String>, zk::Error>,
    dir: &str,
    key: &ElectionKey,
    ours: Seq,
    me: &ServiceId,
    peers: &[ServiceId],
    base: &BaseName,
) -> Result<(Seq, Option<MasterNode>), ListFailure> {
    let children = children.map_err(ListFailure::Zk)?;
    let mut seqs: Vec<Seq> = children
        .iter()
        .filter_map(|c| parse_node_name(c))
        .filter(|(k, _)| *k == key.as_str())
        .map(|(_, s)| s)
        .collect();
    if !seqs.contains(&ours) {
        return Err(ListFailure::Missing);
    }
    // Creation order, across the 32-bit wrap of ZooKeeper's counter.
    seqs.sort_unstable_by_key(|s| election_core::names::seq_offset(*s, ours));
    for s in seqs
        .into_iter()
        .take_while(|s| election_core::names::seq_offset(*s, ours) < 0)
    {
        let path = format!("{dir}/{key}-{}", election_core::names::format_seq(s));
        match client.get_and_watch_data(&path).await {
            Ok((data, _, watcher)) => match master_from_node(&data, me, Some(peers)) {
                Ok(_) | Err(MasterBadReason::Rogue(_)) => {
                    return Ok((
                        s,
                        Some(MasterNode {
                            seq: s,
                            session: client.session_id().0,
                            data,
                            watcher,
                        }),
                    ))
                }
                Err(why) => tracing::warn!(base = %base, "ignoring election node {path}: {why:?}"),
            },
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(ListFailure::Zk(e)),
        }
    }
    Ok((ours, None))
}

/// Is the session our node lives in still ours and usable?
pub fn session_live(svc: &Service, bound_epoch: u64) -> bool {
    let view = svc.zk.view();
    view.epoch == bound_epoch
        && view.is_live(svc.cfg.disconnect_grace)
        && view.link != Link::Expired
}
