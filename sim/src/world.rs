//! The simulated cluster: services running the real election state machine
//! over the ZooKeeper model, peer RPC with delay, loss and partitions, a
//! write workload, and the faults. One seed drives every choice.
//!
//! The driver below mirrors `election-server`'s (service.rs, writes.rs and
//! the peer routes): which request each action sends, what each answer turns
//! into, the session supervisor's grace period and expiry handling, and the
//! slave's checks on replicated writes. The pure parts are shared through
//! `election_core::peer`.

use crate::rng::Rng;
use crate::zk::{Fired, SessionId, WatchKind, ZkError, ZkModel};
use crate::{invariants, Mutation, Options, Stats, Violation};
use election_core::names::{
    parse_node_name, seq_after, seq_latest, seq_offset, BaseName, ContainerId, ElectionKey,
    Namespace, Seq, ServiceId, ServiceType, ZkLayout,
};
use election_core::peer::{
    getvers_outcome, master_from_node, replica_verdict, Refusal, ReplicaVerdict,
};
use election_core::version::{ReplicaVersion, TableVersion};
use election_core::{
    Action, Config, Election, Event, GetversOutcome, MasterBadReason, Now, OpId, State,
};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// Microseconds per millisecond: the world's clock counts µs.
pub const MS: u64 = 1_000;

/// One replica of a base: the ids of the writes it holds, in order. It
/// survives crashes (it stands for the SQLite file).
#[derive(Debug, Clone, Default)]
pub struct Replica {
    pub writes: Vec<u64>,
    pub restoring: bool,
}

impl Replica {
    /// The version vector GETVERS reports: one table, bumped per write and
    /// stamped with it (unless `stamps` is off: counters only).
    pub fn version(&self, stamps: bool) -> ReplicaVersion {
        if self.restoring {
            return ReplicaVersion::Unknown {
                reason: "restoring".into(),
            };
        }
        let (version, when) = self.vector();
        ReplicaVersion::Known {
            tables: [(
                "main".to_string(),
                TableVersion {
                    version: version as i64,
                    when: if stamps { when as i64 } else { 0 },
                },
            )]
            .into(),
        }
    }

    /// What a replicated write names as `prev`: count and last write.
    pub fn vector(&self) -> (usize, u64) {
        (self.writes.len(), self.writes.last().copied().unwrap_or(0))
    }
}

/// One election as the server's per-election task holds it.
pub struct Elec {
    pub fsm: Election,
    pub bound_epoch: u64,
    rejoin_when_restored: bool,
    node_owner: Option<(Seq, SessionId)>,
    prefetched: Option<(Seq, Result<Vec<String>, ZkError>)>,
    sync_op: Option<OpId>,
    timer_at: Option<u64>,
    /// Highest node of a candidate we answered a GETVERS for.
    pub fence: Option<Seq>,
    writing: bool,
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connected,
    Disconnected { since: u64 },
}

#[derive(Debug, Clone, Copy)]
enum WatchFor {
    SelfNode { generation: u64, seq: Seq },
    Master { generation: u64, seq: Seq },
}

pub struct Client {
    pub session: SessionId,
    pub epoch: u64,
    conn: u64,
    pub link: Link,
    grace_reported: bool,
    watchers: Vec<(String, usize, WatchFor)>,
    fired: Vec<(String, usize, WatchFor)>,
    /// Notifications that arrived while disconnected (delivered on reconnect).
    held: Vec<String>,
    /// Notifications for a watch whose answer is still on its way: ZooKeeper
    /// delivers a session's answers and notifications in order, so they are
    /// handed over right after that answer.
    early: Vec<String>,
}

impl Client {
    /// A fresh client on a new session, without watches.
    fn connected(session: SessionId, epoch: u64, conn: u64) -> Client {
        Client {
            session,
            epoch,
            conn,
            link: Link::Connected,
            grace_reported: false,
            watchers: Vec::new(),
            fired: Vec::new(),
            held: Vec::new(),
            early: Vec::new(),
        }
    }
}

#[derive(Clone)]
struct PendingWrite {
    base: usize,
    wid: u64,
    prev: (usize, u64),
    epoch: Seq,
    peers: Vec<usize>,
    answers: BTreeMap<usize, Ack>,
    /// Decided (and committed when `true`); later answers still count.
    decided: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ack {
    Applied,
    Refused,
    Deposed,
    Unknown,
}

pub struct Svc {
    pub id: ServiceId,
    pub up: bool,
    pub inc: u64,
    pub paused_until: Option<u64>,
    deferred: Vec<Ev>,
    zk_cut: bool,
    pub client: Client,
    pub elecs: BTreeMap<usize, Elec>,
    pub replicas: Vec<Replica>,
    /// ZooKeeper requests in flight: what to answer if the connection drops.
    outstanding: BTreeMap<u64, (usize, Option<Event>)>,
    calls: BTreeMap<u64, Call>,
    writes: BTreeMap<u64, PendingWrite>,
}

#[derive(Debug, Clone)]
enum Call {
    Getvers {
        base: usize,
        op: OpId,
        peer: usize,
        master_seq: Option<Seq>,
    },
    Dump {
        base: usize,
        op: OpId,
    },
    Replicate {
        wid: u64,
        peer: usize,
    },
}

#[derive(Debug, Clone)]
enum EMsg {
    Event(Event),
    Poke,
    SessionLost { epoch: u64 },
    SessionRestored,
    NodeOwner { seq: Seq, owner: SessionId },
}

#[derive(Debug, Clone)]
enum ZkReq {
    Create {
        op: OpId,
    },
    WatchSelf {
        op: OpId,
        seq: Seq,
        generation: u64,
    },
    List {
        op: OpId,
        seq: Seq,
        listing: Option<Result<Vec<String>, ZkError>>,
        known_owner: Option<SessionId>,
        peers: Vec<ServiceId>,
    },
    GetMaster {
        op: OpId,
        seq: Seq,
        generation: u64,
        peers: Option<Vec<ServiceId>>,
    },
    Delete {
        op: Option<OpId>,
        seq: Seq,
    },
}

#[derive(Debug, Clone)]
struct ZkAns {
    msgs: Vec<EMsg>,
    watch: Option<(String, WatchFor)>,
    listing: Option<(Seq, Result<Vec<String>, ZkError>)>,
}

#[derive(Debug, Clone)]
enum Rpc {
    Use {
        base: usize,
        master: bool,
    },
    Getvers {
        base: usize,
        master_seq: Option<Seq>,
        candidate_seq: Option<Seq>,
    },
    Dump {
        base: usize,
    },
    Replicate {
        base: usize,
        epoch: Seq,
        prev: (usize, u64),
        wid: u64,
        waited: u64,
    },
    Resync {
        base: usize,
    },
}

#[derive(Debug, Clone)]
enum RpcAns {
    Version(ReplicaVersion),
    Refused,
    Copy(Vec<u64>),
    Applied,
    Deposed,
}

#[derive(Debug, Clone)]
enum Ev {
    ZkArrive {
        svc: usize,
        inc: u64,
        conn: u64,
        session: SessionId,
        req_id: u64,
        base: usize,
        req: ZkReq,
    },
    ZkAnswer {
        svc: usize,
        inc: u64,
        conn: u64,
        req_id: u64,
        base: usize,
        ans: ZkAns,
    },
    Notify {
        svc: usize,
        inc: u64,
        session: SessionId,
        path: String,
        dup: bool,
    },
    Local {
        svc: usize,
        inc: u64,
        base: usize,
        msg: EMsg,
    },
    RpcArrive {
        from: usize,
        from_inc: u64,
        to: usize,
        call: Option<u64>,
        rpc: Rpc,
    },
    RpcAnswer {
        svc: usize,
        inc: u64,
        call: u64,
        ans: RpcAns,
    },
    RpcTimeout {
        svc: usize,
        inc: u64,
        call: u64,
    },
    Timer {
        svc: usize,
        inc: u64,
        base: usize,
        at: u64,
    },
    Ping {
        svc: usize,
        inc: u64,
    },
    LinkCheck {
        svc: usize,
        inc: u64,
    },
    Grace {
        svc: usize,
        inc: u64,
        epoch: u64,
        since: u64,
    },
    ClientWrite {
        svc: usize,
        base: usize,
        wid: u64,
        hops: u32,
    },
    ZkTick,
    Fault,
    Workload,
    Restart {
        svc: usize,
    },
    Resume {
        svc: usize,
    },
    ZkUp,
    ZkRelink {
        svc: usize,
    },
    Unblock {
        a: usize,
        b: usize,
    },
    CloseForeign {
        session: SessionId,
    },
}

impl Ev {
    /// The service (and incarnation) an event is addressed to, if any.
    fn target(&self) -> Option<(usize, Option<u64>)> {
        match self {
            Ev::ZkAnswer { svc, inc, .. }
            | Ev::Notify { svc, inc, .. }
            | Ev::Local { svc, inc, .. }
            | Ev::RpcAnswer { svc, inc, .. }
            | Ev::RpcTimeout { svc, inc, .. }
            | Ev::Timer { svc, inc, .. }
            | Ev::Ping { svc, inc }
            | Ev::LinkCheck { svc, inc }
            | Ev::Grace { svc, inc, .. } => Some((*svc, Some(*inc))),
            Ev::RpcArrive { to, .. } => Some((*to, None)),
            Ev::ClientWrite { svc, .. } => Some((*svc, None)),
            _ => None,
        }
    }
}

struct Item {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// An acknowledged write, as the client saw it.
#[derive(Debug, Clone)]
pub struct Acked {
    pub base: usize,
    pub wid: u64,
    pub master: usize,
    pub epoch: Seq,
    pub at: u64,
}

pub struct World {
    pub opts: Options,
    pub seed: u64,
    pub now: u64,
    rng: Rng,
    queue: BinaryHeap<Item>,
    next_seq: u64,
    next_id: u64,
    pub zk: ZkModel,
    pub zk_up: bool,
    pub svcs: Vec<Svc>,
    blocked: BTreeSet<(usize, usize)>,
    pub stype: ServiceType,
    pub bases: Vec<BaseName>,
    pub keys: Vec<ElectionKey>,
    pub dirs: Vec<String>,
    pub layout: ZkLayout,
    config: Config,
    pub acked: Vec<Acked>,
    pub stats: Stats,
    /// Elections touched by the current step (for the per-step checks).
    pub touched: BTreeSet<(usize, usize)>,
    pub data_changed: BTreeSet<usize>,
    /// Bases where a replica was replaced by a copy in the current step.
    pub replaced: BTreeSet<usize>,
    /// Writes acknowledged in the current step (indices into `acked`).
    pub new_acks: Vec<usize>,
    /// Pairs of indices into `acked` (older epoch, newer epoch): a write
    /// acknowledged under an older epoch after one of a newer epoch
    /// (kept by `acked_epochs`, which re-checks them when a copy lands).
    pub epoch_overlaps: Vec<(usize, usize)>,
    pub log_seen: BTreeMap<(usize, u64, usize), u64>,
    pub faults_until: u64,
    /// The workload stops here, so that the final check sees a quiet cluster.
    pub writes_until: u64,
    pub trace: Vec<String>,
}

impl World {
    pub fn new(seed: u64, opts: Options) -> Self {
        let stype = ServiceType::new("meta2").expect("valid type");
        let layout = ZkLayout::new(Namespace::new("SIM").expect("valid namespace"));
        let bases: Vec<BaseName> = (0..opts.bases)
            .map(|i| ContainerId::compute("sim", &format!("c{i}")).meta2_base())
            .collect();
        let keys: Vec<ElectionKey> = bases
            .iter()
            .map(|b| ElectionKey::compute(b, &stype))
            .collect();
        let dirs: Vec<String> = keys
            .iter()
            .map(|k| layout.election_dir(&stype, k))
            .collect();
        let mut zk = ZkModel::new();
        let timeout = opts.session_timeout_ms * MS;
        let mut rng = Rng::new(seed);
        for d in &dirs {
            zk.ensure_dir(d);
            if opts.wrap && rng.chance(0.5) {
                zk.set_cversion(d, i32::MAX - rng.range(0, 40) as i32);
            }
        }
        let svcs = (0..opts.services)
            .map(|i| {
                let session = zk.open_session(0, timeout);
                Svc {
                    id: ServiceId::new(format!("127.0.0.1:60{i:02}")).expect("valid id"),
                    up: true,
                    inc: 1,
                    paused_until: None,
                    deferred: Vec::new(),
                    zk_cut: false,
                    client: Client::connected(session, 1, 1),
                    elecs: BTreeMap::new(),
                    replicas: vec![Replica::default(); opts.bases],
                    outstanding: BTreeMap::new(),
                    calls: BTreeMap::new(),
                    writes: BTreeMap::new(),
                }
            })
            .collect();
        let config = Config {
            pending_timeout_ms: 3_000,
            sync_timeout_ms: 5_000,
            retry_failed_max_ms: 4_000,
            ..Config::default()
        };
        let faults_until = opts.fault_ms * MS;
        let mut w = Self {
            opts,
            seed,
            now: 0,
            rng,
            queue: BinaryHeap::new(),
            next_seq: 0,
            next_id: 0,
            zk,
            zk_up: true,
            svcs,
            blocked: BTreeSet::new(),
            stype,
            bases,
            keys,
            dirs,
            layout,
            config,
            acked: Vec::new(),
            stats: Stats::default(),
            touched: BTreeSet::new(),
            data_changed: BTreeSet::new(),
            replaced: BTreeSet::new(),
            new_acks: Vec::new(),
            epoch_overlaps: Vec::new(),
            log_seen: BTreeMap::new(),
            faults_until,
            writes_until: u64::MAX,
            trace: Vec::new(),
        };
        for s in 0..w.svcs.len() {
            w.schedule_ping(s);
        }
        w.push(0, Ev::ZkTick);
        w.push(MS, Ev::Workload);
        if w.opts.faults {
            w.push(500 * MS, Ev::Fault);
        }
        w
    }

    fn push(&mut self, delay: u64, ev: Ev) {
        self.next_seq += 1;
        self.queue.push(Item {
            at: self.now + delay,
            seq: self.next_seq,
            ev,
        });
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn net_delay(&mut self) -> u64 {
        if self.rng.chance(0.02) {
            self.rng.range(5 * MS, 40 * MS)
        } else {
            self.rng.range(100, 1_500)
        }
    }

    fn timeout(&self) -> u64 {
        self.opts.session_timeout_ms * MS
    }

    fn grace(&self) -> u64 {
        self.timeout() / 2
    }

    fn in_fault_window(&self) -> bool {
        self.opts.faults && self.now < self.faults_until
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.opts.trace {
            let line = format!("{:>9.3} {}", self.now as f64 / 1000.0, what());
            self.trace.push(line);
        }
    }

    /// Runs until `end_us`; checks the invariants after every step.
    pub fn run_until(&mut self, end_us: u64) -> Result<(), Violation> {
        while let Some(item) = self.queue.pop() {
            if item.at > end_us {
                self.queue.push(item);
                break;
            }
            self.now = item.at;
            self.stats.steps += 1;
            self.step(item.ev);
            invariants::check_step(self)?;
            self.touched.clear();
            self.data_changed.clear();
            self.replaced.clear();
            self.new_acks.clear();
        }
        self.now = end_us;
        Ok(())
    }

    fn step(&mut self, ev: Ev) {
        if let Some((s, inc)) = ev.target() {
            let svc = &mut self.svcs[s];
            if inc.is_some_and(|i| i != svc.inc) {
                return;
            }
            if !svc.up {
                if let Ev::RpcArrive {
                    from,
                    from_inc,
                    call: Some(call),
                    ..
                } = ev
                {
                    // Connection refused, answered at once.
                    let d = self.net_delay();
                    self.push(
                        d,
                        Ev::RpcAnswer {
                            svc: from,
                            inc: from_inc,
                            call,
                            ans: RpcAns::Refused,
                        },
                    );
                }
                if matches!(ev, Ev::ClientWrite { .. }) {
                    self.stats.writes_failed += 1;
                }
                return;
            }
            if svc.paused_until.is_some() {
                svc.deferred.push(ev);
                return;
            }
        }
        match ev {
            Ev::ZkArrive {
                svc,
                inc,
                conn,
                session,
                req_id,
                base,
                req,
            } => self.zk_arrive(svc, inc, conn, session, req_id, base, req),
            Ev::ZkAnswer {
                svc,
                conn,
                req_id,
                base,
                ans,
                ..
            } => self.zk_answer(svc, conn, req_id, base, ans),
            Ev::Notify {
                svc,
                session,
                path,
                dup,
                ..
            } => self.notify(svc, session, path, dup),
            Ev::Local { svc, base, msg, .. } => self.feed(svc, base, msg),
            Ev::RpcArrive {
                from,
                from_inc,
                to,
                call,
                rpc,
            } => self.rpc_arrive(from, from_inc, to, call, rpc),
            Ev::RpcAnswer { svc, call, ans, .. } => self.rpc_answer(svc, call, Some(ans)),
            Ev::RpcTimeout { svc, call, .. } => self.rpc_answer(svc, call, None),
            Ev::Timer { svc, base, at, .. } => {
                let now_ms = self.now / MS;
                let Some(e) = self.svcs[svc].elecs.get_mut(&base) else {
                    return;
                };
                if e.timer_at == Some(at) {
                    e.timer_at = None;
                }
                if e.fsm.next_deadline().is_some_and(|d| d <= now_ms) {
                    self.feed(svc, base, EMsg::Event(Event::None));
                } else {
                    self.schedule_timer(svc, base);
                }
            }
            Ev::Ping { svc, .. } => {
                let c = &self.svcs[svc].client;
                if c.link == Link::Connected {
                    if self.physically_up(svc) && self.zk.is_live(c.session) {
                        let session = c.session;
                        self.zk.touch(session, self.now);
                    } else if self.physically_up(svc) {
                        // The server closed our connection (session expired).
                        self.push(
                            MS,
                            Ev::LinkCheck {
                                svc,
                                inc: self.svcs[svc].inc,
                            },
                        );
                    }
                }
                self.schedule_ping(svc);
            }
            Ev::LinkCheck { svc, .. } => self.link_check(svc),
            Ev::Grace {
                svc, epoch, since, ..
            } => {
                let c = &mut self.svcs[svc].client;
                if c.epoch == epoch && c.link == (Link::Disconnected { since }) && !c.grace_reported
                {
                    c.grace_reported = true;
                    self.note(|| format!("svc{svc} grace expired: reset epoch {epoch}"));
                    self.broadcast(svc, EMsg::SessionLost { epoch });
                }
            }
            Ev::ClientWrite {
                svc,
                base,
                wid,
                hops,
            } => self.client_write(svc, base, wid, hops),
            Ev::ZkTick => {
                if self.zk_up {
                    let (expired, fired) = self.zk.expire_due(self.now);
                    for s in expired {
                        self.note(|| format!("zk: session {s:#x} expired"));
                    }
                    self.deliver_fired(fired);
                }
                self.push(50 * MS, Ev::ZkTick);
            }
            Ev::Workload => self.workload(),
            Ev::Fault => self.fault(),
            Ev::Restart { svc } => self.restart(svc),
            Ev::Resume { svc } => self.resume(svc),
            Ev::ZkUp => {
                self.zk_up = true;
                self.zk.restarted(self.now);
                self.note(|| "zk: up".into());
            }
            Ev::ZkRelink { svc } => self.svcs[svc].zk_cut = false,
            Ev::Unblock { a, b } => {
                self.blocked.remove(&(a, b));
            }
            Ev::CloseForeign { session } => {
                let fired = self.zk.close_session(session);
                self.deliver_fired(fired);
            }
        }
    }

    fn physically_up(&self, s: usize) -> bool {
        self.zk_up && self.svcs[s].up && !self.svcs[s].zk_cut
    }

    fn schedule_ping(&mut self, s: usize) {
        let period = self.timeout() / 3;
        let inc = self.svcs[s].inc;
        self.push(period, Ev::Ping { svc: s, inc });
    }

    fn schedule_timer(&mut self, s: usize, b: usize) {
        let inc = self.svcs[s].inc;
        let Some(e) = self.svcs[s].elecs.get_mut(&b) else {
            return;
        };
        if e.fsm.state() == State::None {
            return;
        }
        let Some(d) = e.fsm.next_deadline() else {
            return;
        };
        let at = d.saturating_mul(MS);
        if e.timer_at == Some(at) {
            return;
        }
        e.timer_at = Some(at);
        let delay = at.saturating_sub(self.now);
        self.push(
            delay,
            Ev::Timer {
                svc: s,
                inc,
                base: b,
                at,
            },
        );
    }

    /// Sends a message to every election of a service.
    fn broadcast(&mut self, s: usize, msg: EMsg) {
        let bases: Vec<usize> = self.svcs[s].elecs.keys().copied().collect();
        for b in bases {
            self.feed(s, b, msg.clone());
        }
    }

    fn local(&mut self, s: usize, b: usize, delay: u64, msg: EMsg) {
        let inc = self.svcs[s].inc;
        self.push(
            delay,
            Ev::Local {
                svc: s,
                inc,
                base: b,
                msg,
            },
        );
    }

    fn ensure_elec(&mut self, s: usize, b: usize) {
        if self.svcs[s].elecs.contains_key(&b) {
            return;
        }
        let jitter = self.seed ^ ((s as u64) << 32) ^ (b as u64).wrapping_mul(0x9E37_79B9);
        let fsm = Election::new(self.config.clone(), jitter, Now::at(self.now / MS));
        self.svcs[s].elecs.insert(
            b,
            Elec {
                fsm,
                bound_epoch: 0,
                rejoin_when_restored: false,
                node_owner: None,
                prefetched: None,
                sync_op: None,
                timer_at: None,
                fence: None,
                writing: false,
                readonly: false,
            },
        );
    }

    /// Delivers a message to an election, as the server's `run_election` does.
    fn feed(&mut self, s: usize, b: usize, msg: EMsg) {
        if matches!(msg, EMsg::Poke) {
            self.ensure_elec(s, b);
        }
        let now = Now::at(self.now / MS);
        let Some(e) = self.svcs[s].elecs.get_mut(&b) else {
            return;
        };
        let event = match msg {
            EMsg::Event(ev) => ev,
            EMsg::Poke => Event::None,
            EMsg::SessionLost { epoch } => {
                if epoch != e.bound_epoch || e.fsm.state() == State::None {
                    return;
                }
                e.rejoin_when_restored = true;
                Event::Disconnected
            }
            EMsg::SessionRestored => {
                if !std::mem::take(&mut e.rejoin_when_restored) || e.fsm.state() != State::None {
                    return;
                }
                Event::None
            }
            EMsg::NodeOwner { seq, owner } => {
                e.node_owner = Some((seq, owner));
                return;
            }
        };
        let pre = e.fsm.state();
        let name = event.name();
        let actions = e.fsm.handle(now, event);
        let post = e.fsm.state();
        if pre != post {
            self.note(|| format!("svc{s} base{b} {pre}:{name}:{post}"));
        }
        self.touched.insert((s, b));
        for a in actions {
            self.execute(s, b, a);
        }
        let e = self.svcs[s].elecs.get_mut(&b).expect("election exists");
        if e.fsm.state() != State::Syncing && e.sync_op.take().is_some() {
            self.svcs[s].replicas[b].restoring = false;
        }
        self.schedule_timer(s, b);
    }

    fn node_path(&self, b: usize, seq: Seq) -> String {
        self.layout.election_node(&self.stype, &self.keys[b], seq)
    }

    /// Sends a ZooKeeper request on the current connection, or fails it at
    /// once when disconnected (connection loss).
    fn zk_send(&mut self, s: usize, b: usize, req: ZkReq, on_loss: Option<Event>) {
        let inc = self.svcs[s].inc;
        let c = &self.svcs[s].client;
        if c.link != Link::Connected {
            if let Some(ev) = on_loss {
                self.local(s, b, 100, EMsg::Event(ev));
            }
            return;
        }
        let (conn, session) = (c.conn, c.session);
        let req_id = self.id();
        self.svcs[s].outstanding.insert(req_id, (b, on_loss));
        let d = self.net_delay();
        self.push(
            d,
            Ev::ZkArrive {
                svc: s,
                inc,
                conn,
                session,
                req_id,
                base: b,
                req,
            },
        );
    }

    fn execute(&mut self, s: usize, b: usize, action: Action) {
        let me = self.svcs[s].id.clone();
        match action {
            Action::ResolvePeers { op, .. } => {
                let peers: Vec<ServiceId> = self
                    .svcs
                    .iter()
                    .filter(|x| x.id != me)
                    .map(|x| x.id.clone())
                    .collect();
                self.local(
                    s,
                    b,
                    50,
                    EMsg::Event(Event::GetpeersDone {
                        op,
                        peers: Some(peers),
                    }),
                );
            }
            Action::Create { op, .. } => {
                let epoch = self.svcs[s].client.epoch;
                let e = self.svcs[s].elecs.get_mut(&b).expect("election exists");
                e.bound_epoch = epoch;
                self.zk_send(
                    s,
                    b,
                    ZkReq::Create { op },
                    Some(Event::CreateKo {
                        op,
                        error: "connection loss".into(),
                    }),
                );
            }
            Action::WatchSelf {
                op,
                seq,
                generation,
            } => self.zk_send(
                s,
                b,
                ZkReq::WatchSelf {
                    op,
                    seq,
                    generation,
                },
                Some(Event::ExistsKo {
                    op,
                    error: "connection loss".into(),
                }),
            ),
            Action::List { op, seq } => {
                let session = self.svcs[s].client.session;
                let e = self.svcs[s].elecs.get_mut(&b).expect("election exists");
                let listing = e
                    .prefetched
                    .take()
                    .filter(|(p, _)| *p == seq)
                    .map(|(_, l)| l);
                let known_owner = e
                    .node_owner
                    .filter(|(p, _)| *p == seq)
                    .map(|(_, o)| o)
                    .filter(|o| *o == session);
                let peers = e.fsm.peers().map(<[ServiceId]>::to_vec).unwrap_or_default();
                self.zk_send(
                    s,
                    b,
                    ZkReq::List {
                        op,
                        seq,
                        listing,
                        known_owner,
                        peers,
                    },
                    Some(Event::ListKo {
                        op,
                        error: "connection loss".into(),
                    }),
                );
            }
            Action::GetMaster {
                op,
                seq,
                generation,
            } => {
                let peers = self.svcs[s].elecs[&b]
                    .fsm
                    .peers()
                    .map(<[ServiceId]>::to_vec);
                self.zk_send(
                    s,
                    b,
                    ZkReq::GetMaster {
                        op,
                        seq,
                        generation,
                        peers,
                    },
                    Some(Event::MasterKo {
                        op,
                        error: "connection loss".into(),
                    }),
                );
            }
            Action::Delete { op, seq } => self.zk_send(
                s,
                b,
                ZkReq::Delete { op, seq },
                op.map(|op| Event::LeaveKo {
                    op,
                    error: "connection loss".into(),
                }),
            ),
            Action::SendUse { peers, master } => {
                for p in peers {
                    let to = self.index_of(&p);
                    self.rpc(s, to, None, Rpc::Use { base: b, master });
                }
            }
            Action::SendGetvers {
                op,
                peer,
                master_seq,
            } => {
                let to = self.index_of(&peer);
                let candidate_seq = match master_seq {
                    None => self.svcs[s].elecs[&b].fsm.local_id(),
                    Some(_) => None,
                };
                let call = self.call(
                    s,
                    Call::Getvers {
                        base: b,
                        op,
                        peer: to,
                        master_seq,
                    },
                    1_000 * MS,
                );
                self.rpc(
                    s,
                    to,
                    Some(call),
                    Rpc::Getvers {
                        base: b,
                        master_seq,
                        candidate_seq,
                    },
                );
            }
            Action::Sync { op, master } => {
                let to = self.index_of(&master);
                self.svcs[s].replicas[b].restoring = true;
                self.svcs[s]
                    .elecs
                    .get_mut(&b)
                    .expect("election exists")
                    .sync_op = Some(op);
                let call = self.call(s, Call::Dump { base: b, op }, 3_000 * MS);
                self.rpc(s, to, Some(call), Rpc::Dump { base: b });
            }
        }
    }

    fn index_of(&self, id: &ServiceId) -> usize {
        self.svcs
            .iter()
            .position(|x| &x.id == id)
            .expect("peers are services of the world")
    }

    fn call(&mut self, s: usize, call: Call, timeout: u64) -> u64 {
        let id = self.id();
        self.svcs[s].calls.insert(id, call);
        let inc = self.svcs[s].inc;
        self.push(
            timeout,
            Ev::RpcTimeout {
                svc: s,
                inc,
                call: id,
            },
        );
        id
    }

    fn rpc(&mut self, from: usize, to: usize, call: Option<u64>, rpc: Rpc) {
        if self.blocked.contains(&(from.min(to), from.max(to))) {
            return;
        }
        if self.in_fault_window() && self.rng.chance(0.01) {
            self.stats.count("rpc lost");
            return;
        }
        let from_inc = self.svcs[from].inc;
        let d = self.net_delay();
        self.push(
            d,
            Ev::RpcArrive {
                from,
                from_inc,
                to,
                call,
                rpc,
            },
        );
    }

    /// Hands a request back to the receiver later: it waits on the base's
    /// write lock, or for its election to settle, as the server does.
    fn redeliver(
        &mut self,
        delay: u64,
        from: usize,
        from_inc: u64,
        to: usize,
        call: Option<u64>,
        rpc: Rpc,
    ) {
        self.push(
            delay,
            Ev::RpcArrive {
                from,
                from_inc,
                to,
                call,
                rpc,
            },
        );
    }

    fn answer(&mut self, from: usize, to: usize, to_inc: u64, call: Option<u64>, ans: RpcAns) {
        let Some(call) = call else { return };
        if self.blocked.contains(&(from.min(to), from.max(to))) {
            return;
        }
        let d = self.net_delay();
        self.push(
            d,
            Ev::RpcAnswer {
                svc: to,
                inc: to_inc,
                call,
                ans,
            },
        );
    }

    // ----- ZooKeeper server side -----

    #[allow(clippy::too_many_arguments)]
    fn zk_arrive(
        &mut self,
        s: usize,
        inc: u64,
        conn: u64,
        session: SessionId,
        req_id: u64,
        b: usize,
        req: ZkReq,
    ) {
        if !self.zk_up || self.svcs[s].zk_cut || self.svcs[s].inc != inc {
            return; // lost with the connection
        }
        if self.zk.is_live(session) {
            self.zk.touch(session, self.now);
        }
        let me = self.svcs[s].id.clone();
        let dir = self.dirs[b].clone();
        let expired = |ev: Event| -> Vec<EMsg> { vec![EMsg::Event(ev)] };
        let mut ans = ZkAns {
            msgs: Vec::new(),
            watch: None,
            listing: None,
        };
        match req {
            ZkReq::Create { op } => {
                let prefix = format!("{}-", self.keys[b]);
                match self
                    .zk
                    .create_seq(session, &dir, &prefix, me.as_str().as_bytes(), true)
                {
                    Ok((_, seq)) => {
                        if seq < 0 {
                            self.stats.count("node created past the 32-bit wrap");
                        }
                        let seq = Seq::from(seq);
                        ans.msgs = vec![
                            EMsg::NodeOwner {
                                seq,
                                owner: session,
                            },
                            EMsg::Event(Event::CreateOk { op, seq }),
                        ];
                    }
                    Err(ZkError::SessionExpired) => ans.msgs = expired(Event::Disconnected),
                    Err(e) => {
                        ans.msgs = vec![EMsg::Event(Event::CreateKo {
                            op,
                            error: format!("{e:?}"),
                        })]
                    }
                }
            }
            ZkReq::WatchSelf {
                op,
                seq,
                generation,
            } => {
                let path = self.node_path(b, seq);
                match self.zk.read_and_watch(session, &path) {
                    Ok(None) => {
                        ans.msgs = vec![
                            EMsg::Event(Event::LeftSelf { generation, seq }),
                            EMsg::Event(Event::ExistsOk { op }),
                        ]
                    }
                    Ok(Some(_)) => {
                        ans.msgs = vec![EMsg::Event(Event::ExistsOk { op })];
                        ans.watch = Some((path, WatchFor::SelfNode { generation, seq }));
                    }
                    Err(_) => ans.msgs = expired(Event::Disconnected),
                }
                ans.listing = Some((seq, self.zk.children(session, &dir)));
            }
            ZkReq::List {
                op,
                seq,
                listing,
                known_owner,
                peers,
            } => {
                let children = listing.unwrap_or_else(|| self.zk.children(session, &dir));
                let ev = match children {
                    Err(_) => Event::Disconnected,
                    Ok(children) => {
                        self.lowest_valid(b, &children, seq, &me, &peers, op, session, known_owner)
                    }
                };
                ans.msgs = vec![EMsg::Event(ev)];
            }
            ZkReq::GetMaster {
                op,
                seq,
                generation,
                peers,
            } => {
                let path = self.node_path(b, seq);
                match self.zk.read_and_watch(session, &path) {
                    Ok(Some(node)) => {
                        let ev = match master_from_node(&node.data, &me, peers.as_deref()) {
                            Ok(master) => Event::MasterOk { op, master },
                            Err(MasterBadReason::Rogue(_)) => Event::MasterBad {
                                op,
                                reason: MasterBadReason::Rogue(seq),
                            },
                            Err(reason) => Event::MasterBad { op, reason },
                        };
                        ans.msgs = vec![EMsg::Event(ev)];
                        ans.watch = Some((path, WatchFor::Master { generation, seq }));
                    }
                    Ok(None) => {
                        ans.msgs = vec![
                            EMsg::Event(Event::LeftMaster { generation, seq }),
                            EMsg::Event(Event::MasterKo {
                                op,
                                error: "master node vanished".into(),
                            }),
                        ]
                    }
                    Err(_) => ans.msgs = expired(Event::Disconnected),
                }
            }
            ZkReq::Delete { op, seq } => {
                let path = self.node_path(b, seq);
                match self.zk.delete(session, &path) {
                    Ok(fired) => {
                        self.deliver_fired(fired);
                        ans.msgs = op
                            .map(|op| EMsg::Event(Event::LeaveOk { op }))
                            .into_iter()
                            .collect();
                    }
                    Err(ZkError::NoNode) => {
                        ans.msgs = op
                            .map(|op| EMsg::Event(Event::LeaveOk { op }))
                            .into_iter()
                            .collect();
                    }
                    Err(ZkError::SessionExpired) => {
                        ans.msgs = op
                            .map(|_| EMsg::Event(Event::Disconnected))
                            .into_iter()
                            .collect()
                    }
                    Err(e) => {
                        ans.msgs = op
                            .map(|op| {
                                EMsg::Event(Event::LeaveKo {
                                    op,
                                    error: format!("{e:?}"),
                                })
                            })
                            .into_iter()
                            .collect()
                    }
                }
            }
        }
        let d = self.net_delay();
        self.push(
            d,
            Ev::ZkAnswer {
                svc: s,
                inc,
                conn,
                req_id,
                base: b,
                ans,
            },
        );
    }

    /// The server's `lowest_valid` and the ownership check of LISTING.
    #[allow(clippy::too_many_arguments)]
    fn lowest_valid(
        &self,
        b: usize,
        children: &[String],
        ours: Seq,
        me: &ServiceId,
        peers: &[ServiceId],
        op: OpId,
        session: SessionId,
        known_owner: Option<SessionId>,
    ) -> Event {
        if self.opts.mutation == Some(Mutation::SelfLowest) {
            return Event::ListOk { op, lowest: ours };
        }
        let key = self.keys[b].as_str();
        let mut seqs: Vec<Seq> = children
            .iter()
            .filter_map(|c| parse_node_name(c))
            .filter(|(k, _)| *k == key)
            .map(|(_, s)| s)
            .collect();
        if !seqs.contains(&ours) {
            return Event::ListKo {
                op,
                error: format!("our node {ours} is not in the group"),
            };
        }
        seqs.sort_unstable_by_key(|s| seq_offset(*s, ours));
        let mut lowest = ours;
        for s in seqs.into_iter().take_while(|s| seq_offset(*s, ours) < 0) {
            let Some(node) = self.zk.get(&self.node_path(b, s)) else {
                continue;
            };
            match master_from_node(&node.data, me, Some(peers)) {
                Ok(_) | Err(MasterBadReason::Rogue(_)) => {
                    lowest = s;
                    break;
                }
                Err(_) => continue,
            }
        }
        if lowest != ours {
            return Event::ListOk { op, lowest };
        }
        if known_owner == Some(session) {
            return Event::ListOk { op, lowest };
        }
        match self.zk.get(&self.node_path(b, ours)) {
            Some(n) if n.owner == session => Event::ListOk { op, lowest },
            Some(_) => Event::Disconnected,
            None => Event::ListKo {
                op,
                error: "our node vanished".into(),
            },
        }
    }

    fn deliver_fired(&mut self, fired: Vec<Fired>) {
        for f in fired {
            if f.kind != WatchKind::Deleted {
                continue;
            }
            let Some(s) = self.svcs.iter().position(|x| x.client.session == f.session) else {
                continue;
            };
            let inc = self.svcs[s].inc;
            let d = self.net_delay();
            self.push(
                d,
                Ev::Notify {
                    svc: s,
                    inc,
                    session: f.session,
                    path: f.path.clone(),
                    dup: false,
                },
            );
            if self.rng.chance(0.03) {
                self.stats.count("notification duplicated");
                let d = self.net_delay() * 4;
                self.push(
                    d,
                    Ev::Notify {
                        svc: s,
                        inc,
                        session: f.session,
                        path: f.path,
                        dup: true,
                    },
                );
            }
        }
    }

    // ----- client side -----

    fn zk_answer(&mut self, s: usize, conn: u64, req_id: u64, b: usize, ans: ZkAns) {
        if self.svcs[s].client.conn != conn {
            return; // already failed as a connection loss
        }
        if self.svcs[s].outstanding.remove(&req_id).is_none() {
            return;
        }
        let mut early = None;
        if let Some((path, w)) = ans.watch {
            let c = &mut self.svcs[s].client;
            if let Some(i) = c.early.iter().position(|p| *p == path) {
                early = Some(c.early.swap_remove(i));
            }
            c.watchers.push((path, b, w));
        }
        if let Some(listing) = ans.listing {
            if let Some(e) = self.svcs[s].elecs.get_mut(&b) {
                e.prefetched = Some(listing);
            }
        }
        for m in ans.msgs {
            self.feed(s, b, m);
        }
        if let Some(path) = early {
            let session = self.svcs[s].client.session;
            self.notify(s, session, path, false);
        }
    }

    fn notify(&mut self, s: usize, session: SessionId, path: String, dup: bool) {
        let c = &mut self.svcs[s].client;
        if c.session != session {
            return;
        }
        if matches!(c.link, Link::Disconnected { .. }) {
            c.held.push(path);
            return;
        }
        if !dup && !c.watchers.iter().any(|(p, _, _)| *p == path) {
            // The answer that set this watch has not arrived yet.
            c.early.push(path);
            self.stats
                .count("notification held until its watch's answer");
            return;
        }
        let hits: Vec<(String, usize, WatchFor)> = if dup {
            c.fired
                .iter()
                .filter(|(p, _, _)| *p == path)
                .cloned()
                .collect()
        } else {
            let (hit, keep): (Vec<_>, Vec<_>) =
                c.watchers.drain(..).partition(|(p, _, _)| *p == path);
            c.watchers = keep;
            c.fired.extend(hit.iter().cloned());
            let excess = c.fired.len().saturating_sub(32);
            c.fired.drain(..excess);
            hit
        };
        for (_, b, w) in hits {
            let ev = match w {
                WatchFor::SelfNode { generation, seq } => Event::LeftSelf { generation, seq },
                WatchFor::Master { generation, seq } => Event::LeftMaster { generation, seq },
            };
            self.feed(s, b, EMsg::Event(ev));
        }
    }

    fn link_check(&mut self, s: usize) {
        let now = self.now;
        let up = self.physically_up(s);
        let inc = self.svcs[s].inc;
        let live = self.zk.is_live(self.svcs[s].client.session);
        match self.svcs[s].client.link {
            Link::Connected => {
                if up && live {
                    return;
                }
                self.note(|| format!("svc{s} zk: disconnected"));
                let c = &mut self.svcs[s].client;
                c.link = Link::Disconnected { since: now };
                c.conn += 1;
                let epoch = c.epoch;
                let failed: Vec<(usize, Option<Event>)> =
                    std::mem::take(&mut self.svcs[s].outstanding)
                        .into_values()
                        .collect();
                for (b, ev) in failed {
                    if let Some(ev) = ev {
                        self.feed(s, b, EMsg::Event(ev));
                    }
                }
                let grace = self.grace();
                self.push(
                    grace,
                    Ev::Grace {
                        svc: s,
                        inc,
                        epoch,
                        since: now,
                    },
                );
                let retry = self.rng.range(50 * MS, 300 * MS);
                self.push(retry, Ev::LinkCheck { svc: s, inc });
            }
            Link::Disconnected { .. } if !up => {
                let retry = self.rng.range(100 * MS, 300 * MS);
                self.push(retry, Ev::LinkCheck { svc: s, inc });
            }
            Link::Disconnected { .. } if live => {
                let c = &mut self.svcs[s].client;
                c.link = Link::Connected;
                c.conn += 1;
                let session = c.session;
                let restored = std::mem::take(&mut c.grace_reported);
                let held = std::mem::take(&mut c.held);
                self.zk.touch(session, now);
                self.note(|| format!("svc{s} zk: reconnected (restored: {restored})"));
                for path in held {
                    self.notify(s, session, path, false);
                }
                if restored {
                    self.broadcast(s, EMsg::SessionRestored);
                }
            }
            Link::Disconnected { .. } => {
                let c = &mut self.svcs[s].client;
                let old = c.epoch;
                self.note(|| format!("svc{s} zk: session expired, opening a new one"));
                self.broadcast(s, EMsg::SessionLost { epoch: old });
                let session = self.zk.open_session(now, self.timeout());
                let c = &mut self.svcs[s].client;
                c.session = session;
                c.epoch += 1;
                c.conn += 1;
                c.link = Link::Connected;
                c.grace_reported = false;
                c.watchers.clear();
                c.fired.clear();
                c.held.clear();
                c.early.clear();
                self.stats.count("session re-established");
                self.broadcast(s, EMsg::SessionRestored);
            }
        }
    }

    /// `session_live` of the write path: our node's session, usable.
    pub fn session_live(&self, s: usize, bound_epoch: u64) -> bool {
        let c = &self.svcs[s].client;
        c.epoch == bound_epoch
            && match c.link {
                Link::Connected => true,
                Link::Disconnected { since } => self.now - since < self.grace(),
            }
    }

    // ----- peer RPC -----

    fn rpc_arrive(&mut self, from: usize, from_inc: u64, to: usize, call: Option<u64>, rpc: Rpc) {
        match rpc {
            Rpc::Use { base, master } => {
                if master
                    && self.svcs[to]
                        .elecs
                        .get(&base)
                        .is_some_and(|e| e.fsm.state() == State::Master)
                {
                    self.stats.count("double master announced");
                    self.feed(to, base, EMsg::Event(Event::LeaveReq));
                }
                self.feed(to, base, EMsg::Poke);
            }
            Rpc::Getvers {
                base,
                master_seq,
                candidate_seq,
            } => {
                let busy = self.svcs[to].elecs.get(&base).is_some_and(|e| e.writing);
                if self.opts.fence && candidate_seq.is_some() && busy {
                    // Answered under the base's write lock, after the write.
                    self.redeliver(
                        2 * MS,
                        from,
                        from_inc,
                        to,
                        call,
                        Rpc::Getvers {
                            base,
                            master_seq,
                            candidate_seq,
                        },
                    );
                    return;
                }
                self.feed(to, base, EMsg::Poke);
                let e = self.svcs[to].elecs.get_mut(&base).expect("poked");
                let ans = match master_seq {
                    Some(seq) if e.fsm.local_id() != Some(seq) => RpcAns::Refused,
                    _ => {
                        if self.opts.fence {
                            if let Some(c) = candidate_seq {
                                e.fence = Some(e.fence.map_or(c, |f| seq_latest(f, c)));
                            }
                        }
                        RpcAns::Version(self.svcs[to].replicas[base].version(self.opts.stamps))
                    }
                };
                self.answer(to, from, from_inc, call, ans);
            }
            Rpc::Dump { base } => {
                // The copy is taken under the base's write lock: a write in
                // flight may already be applied (and acknowledged) by the
                // slave asking, and must be in the copy if it commits.
                let busy = self.svcs[to].elecs.get(&base).is_some_and(|e| e.writing);
                if self.opts.dump_locked && busy {
                    self.redeliver(2 * MS, from, from_inc, to, call, Rpc::Dump { base });
                    return;
                }
                let ok = self.svcs[to].elecs.get(&base).is_some_and(|e| {
                    e.fsm.state() == State::Master
                        && (!self.opts.fence || self.session_live(to, e.bound_epoch))
                });
                let ans = if ok {
                    RpcAns::Copy(self.svcs[to].replicas[base].writes.clone())
                } else {
                    RpcAns::Refused
                };
                self.answer(to, from, from_inc, call, ans);
            }
            Rpc::Resync { base } => self.feed(to, base, EMsg::Event(Event::SyncReq)),
            Rpc::Replicate {
                base,
                epoch,
                prev,
                wid,
                waited,
            } => {
                let settled = self.svcs[to]
                    .elecs
                    .get(&base)
                    .is_some_and(|e| e.fsm.state().is_final());
                if !settled && waited < 500 * MS {
                    // The server waits, briefly, for its side to settle.
                    self.redeliver(
                        10 * MS,
                        from,
                        from_inc,
                        to,
                        call,
                        Rpc::Replicate {
                            base,
                            epoch,
                            prev,
                            wid,
                            waited: waited + 10 * MS,
                        },
                    );
                    return;
                }
                let from_id = self.svcs[from].id.clone();
                let verdict = match self.svcs[to].elecs.get(&base) {
                    None => ReplicaVerdict::NotSettled(State::None),
                    Some(e) => replica_verdict(
                        e.fsm.state(),
                        e.fsm.master(),
                        e.fsm.master_id(),
                        e.fence.filter(|_| self.opts.fence),
                        &from_id,
                        epoch,
                    ),
                };
                let ans = match verdict {
                    ReplicaVerdict::Apply => {
                        let r = &mut self.svcs[to].replicas[base];
                        if r.restoring {
                            RpcAns::Refused
                        } else if r.vector() == prev {
                            r.writes.push(wid);
                            self.data_changed.insert(base);
                            RpcAns::Applied
                        } else if r.vector() == (prev.0 + 1, wid) {
                            // Already here (a copy taken after it committed).
                            RpcAns::Applied
                        } else {
                            self.feed(to, base, EMsg::Event(Event::SyncReq));
                            RpcAns::Refused
                        }
                    }
                    ReplicaVerdict::IsMaster
                    | ReplicaVerdict::NotFollowing { .. }
                    | ReplicaVerdict::Fenced { .. } => {
                        if matches!(verdict, ReplicaVerdict::Fenced { .. }) {
                            self.stats.count("write fenced");
                        }
                        // The server's rule: the master steps down on the
                        // typed refusal it is sent back.
                        if verdict.refusal().is_some_and(Refusal::deposes_master) {
                            RpcAns::Deposed
                        } else {
                            RpcAns::Refused
                        }
                    }
                    ReplicaVerdict::NotSettled(state) => {
                        if matches!(state, State::None | State::Failed) {
                            self.feed(to, base, EMsg::Poke);
                        }
                        RpcAns::Refused
                    }
                };
                self.answer(to, from, from_inc, call, ans);
            }
        }
    }

    fn rpc_answer(&mut self, s: usize, call: u64, ans: Option<RpcAns>) {
        let Some(c) = self.svcs[s].calls.remove(&call) else {
            return;
        };
        match c {
            Call::Getvers {
                base,
                op,
                peer,
                master_seq,
            } => {
                let peer_id = self.svcs[peer].id.clone();
                let outcome = match ans {
                    Some(RpcAns::Version(remote)) => {
                        let local = self.svcs[s].replicas[base].version(self.opts.stamps);
                        getvers_outcome(&local, &remote, &peer_id, master_seq.is_some())
                    }
                    Some(_) => GetversOutcome::Ko(format!("{peer_id} refused")),
                    None => GetversOutcome::Ko("timeout".into()),
                };
                self.feed(
                    s,
                    base,
                    EMsg::Event(Event::Getvers {
                        op,
                        peer: peer_id,
                        outcome,
                    }),
                );
            }
            Call::Dump { base, op } => {
                let e = self.svcs[s].elecs.get_mut(&base);
                let current = e.is_some_and(|e| e.sync_op == Some(op));
                if !current {
                    return;
                }
                let ev = match ans {
                    Some(RpcAns::Copy(writes)) => {
                        let r = &mut self.svcs[s].replicas[base];
                        r.writes = writes;
                        r.restoring = false;
                        self.data_changed.insert(base);
                        self.replaced.insert(base);
                        self.stats.count("replica restored");
                        Event::SyncOk { op }
                    }
                    _ => {
                        self.svcs[s].replicas[base].restoring = false;
                        Event::SyncKo {
                            op,
                            error: "dump failed".into(),
                        }
                    }
                };
                if let Some(e) = self.svcs[s].elecs.get_mut(&base) {
                    e.sync_op = None;
                }
                self.feed(s, base, EMsg::Event(ev));
            }
            Call::Replicate { wid, peer } => {
                let ack = match ans {
                    Some(RpcAns::Applied) => Ack::Applied,
                    Some(RpcAns::Deposed) => Ack::Deposed,
                    Some(_) => Ack::Refused,
                    None => Ack::Unknown,
                };
                self.write_answer(s, wid, peer, ack);
            }
        }
    }

    // ----- writes -----

    fn workload(&mut self) {
        let interval = self.opts.write_interval_ms * MS;
        let next = self.rng.range(interval / 2, interval * 3 / 2);
        self.push(next.max(1), Ev::Workload);
        if self.now >= self.writes_until {
            return;
        }
        let (base, svc) = (
            self.rng.pick(self.bases.len()),
            self.rng.pick(self.svcs.len()),
        );
        let wid = self.id();
        self.stats.writes_sent += 1;
        self.push(
            100,
            Ev::ClientWrite {
                svc,
                base,
                wid,
                hops: 0,
            },
        );
    }

    fn client_write(&mut self, s: usize, b: usize, wid: u64, hops: u32) {
        let retry = |w: &mut Self, to: usize, delay: u64| {
            if hops >= 24 {
                w.stats.writes_failed += 1;
            } else {
                w.push(
                    delay,
                    Ev::ClientWrite {
                        svc: to,
                        base: b,
                        wid,
                        hops: hops + 1,
                    },
                );
            }
        };
        self.feed(s, b, EMsg::Poke);
        let e = &self.svcs[s].elecs[&b];
        if !e.fsm.state().is_final() {
            return retry(self, s, 20 * MS);
        }
        if let Some(m) = e.fsm.master() {
            let to = self.index_of(m);
            return retry(self, to, 200);
        }
        if e.writing {
            return retry(self, s, 5 * MS);
        }
        let (bound, readonly, epoch) = (e.bound_epoch, e.readonly, e.fsm.local_id());
        if self.opts.fence
            && e.fence
                .is_some_and(|f| epoch.is_some_and(|ep| seq_after(f, ep)))
        {
            // A candidate with a higher node asked our version: our node is
            // gone, we just have not heard yet. Step down.
            self.stats.count("master fenced");
            self.stats.writes_failed += 1;
            self.feed(s, b, EMsg::Event(Event::LeaveReq));
            self.feed(s, b, EMsg::Poke);
            return;
        }
        let Some(epoch) = epoch.filter(|_| !readonly && self.session_live(s, bound)) else {
            self.stats.writes_failed += 1;
            return;
        };
        let peers: Vec<usize> = (0..self.svcs.len()).filter(|p| *p != s).collect();
        let prev = self.svcs[s].replicas[b].vector();
        self.svcs[s]
            .elecs
            .get_mut(&b)
            .expect("election exists")
            .writing = true;
        self.svcs[s].writes.insert(
            wid,
            PendingWrite {
                base: b,
                wid,
                prev,
                epoch,
                peers: peers.clone(),
                answers: BTreeMap::new(),
                decided: None,
            },
        );
        for p in peers {
            let call = self.call(s, Call::Replicate { wid, peer: p }, 1_000 * MS);
            self.rpc(
                s,
                p,
                Some(call),
                Rpc::Replicate {
                    base: b,
                    epoch,
                    prev,
                    wid,
                    waited: 0,
                },
            );
        }
    }

    fn write_answer(&mut self, s: usize, wid: u64, peer: usize, ack: Ack) {
        let Some(w) = self.svcs[s].writes.get_mut(&wid) else {
            return;
        };
        w.answers.insert(peer, ack.clone());
        if let Some(committed) = w.decided {
            let base = w.base;
            if w.answers.len() == w.peers.len() {
                self.svcs[s].writes.remove(&wid);
            }
            // A late answer to a committed write: a slave that did not apply
            // it re-copies the base (one that did needs nothing).
            if committed && matches!(ack, Ack::Refused | Ack::Unknown) {
                self.rpc(s, peer, None, Rpc::Resync { base });
            }
            return;
        }
        let total = w.peers.len();
        let group = total + 1;
        let needed = group / 2 + 1;
        let applied = w.answers.values().filter(|a| **a == Ack::Applied).count();
        let failed = w.answers.len() - applied;
        if 1 + applied < needed && 1 + total - failed >= needed {
            return;
        }
        w.decided = Some(1 + applied >= needed);
        let w = if w.answers.len() == total {
            self.svcs[s].writes.remove(&wid).expect("pending write")
        } else {
            self.svcs[s].writes[&wid].clone()
        };
        let b = w.base;
        if let Some(e) = self.svcs[s].elecs.get_mut(&b) {
            e.writing = false;
        }
        if 1 + applied >= needed {
            let r = &mut self.svcs[s].replicas[b];
            if r.vector() != w.prev || r.restoring {
                if let Some(e) = self.svcs[s].elecs.get_mut(&b) {
                    e.readonly = true;
                }
                self.stats.count("emergency read-only");
                return;
            }
            r.writes.push(w.wid);
            self.data_changed.insert(b);
            self.new_acks.push(self.acked.len());
            self.acked.push(Acked {
                base: b,
                wid: w.wid,
                master: s,
                epoch: w.epoch,
                at: self.now,
            });
            self.stats.writes_acked += 1;
            let behind: Vec<usize> = w
                .peers
                .iter()
                .copied()
                .filter(|p| matches!(w.answers.get(p), Some(Ack::Refused | Ack::Unknown)))
                .collect();
            for p in behind {
                self.rpc(s, p, None, Rpc::Resync { base: b });
            }
            return;
        }
        self.stats.writes_failed += 1;
        let unanswered =
            w.peers.len() > w.answers.len() || w.answers.values().any(|a| *a == Ack::Unknown);
        if unanswered {
            if let Some(e) = self.svcs[s].elecs.get_mut(&b) {
                e.readonly = true;
            }
            self.stats.count("emergency read-only");
        }
        if w.answers.values().any(|a| *a == Ack::Deposed) {
            self.feed(s, b, EMsg::Event(Event::LeaveReq));
            self.feed(s, b, EMsg::Poke);
        }
    }

    // ----- faults -----

    fn fault(&mut self) {
        if !self.in_fault_window() {
            return;
        }
        let next = self.rng.range(300 * MS, 1_500 * MS);
        self.push(next, Ev::Fault);
        let s = self.rng.pick(self.svcs.len());
        let timeout = self.timeout();
        match self.rng.pick(8) {
            0 if self.svcs[s].up && self.svcs[s].paused_until.is_none() => {
                self.stats.count("crash");
                self.note(|| format!("FAULT svc{s} crash"));
                self.crash(s);
                let after = self.rng.range(100 * MS, 3_000 * MS);
                self.push(after, Ev::Restart { svc: s });
            }
            1 if self.svcs[s].up && self.svcs[s].paused_until.is_none() => {
                let long = self.rng.chance(0.6);
                self.stats.count(if long {
                    "pause beyond the session timeout"
                } else {
                    "short pause"
                });
                let d = if long {
                    timeout + self.rng.range(200 * MS, 2_000 * MS)
                } else {
                    self.rng.range(50 * MS, timeout / 2)
                };
                self.note(|| format!("FAULT svc{s} paused {} ms", d / MS));
                self.svcs[s].paused_until = Some(self.now + d);
                self.push(d, Ev::Resume { svc: s });
            }
            2 if self.zk_up => {
                self.stats.count("zookeeper outage");
                let d = self.rng.range(200 * MS, 2 * timeout);
                self.note(|| format!("FAULT zookeeper down {} ms", d / MS));
                self.zk_up = false;
                for x in 0..self.svcs.len() {
                    let inc = self.svcs[x].inc;
                    let detect = self.rng.range(MS, 5 * MS);
                    self.push(detect, Ev::LinkCheck { svc: x, inc });
                }
                self.push(d, Ev::ZkUp);
            }
            3 if !self.svcs[s].zk_cut => {
                self.stats.count("partition from zookeeper");
                let d = self.rng.range(200 * MS, 3 * timeout);
                self.note(|| format!("FAULT svc{s} cut from zookeeper {} ms", d / MS));
                self.svcs[s].zk_cut = true;
                let inc = self.svcs[s].inc;
                self.push(timeout * 2 / 3, Ev::LinkCheck { svc: s, inc });
                self.push(d, Ev::ZkRelink { svc: s });
            }
            4 => {
                let t = (s + 1 + self.rng.pick(self.svcs.len() - 1)) % self.svcs.len();
                let (a, b) = (s.min(t), s.max(t));
                self.stats.count("partition between services");
                let d = self.rng.range(200 * MS, 3_000 * MS);
                self.note(|| format!("FAULT partition svc{a}-svc{b} {} ms", d / MS));
                self.blocked.insert((a, b));
                self.push(d, Ev::Unblock { a, b });
            }
            5 if self.svcs[s].up && self.svcs[s].paused_until.is_none() => {
                self.stats.count("leave storm");
                self.note(|| format!("FAULT svc{s} leave storm"));
                self.broadcast(s, EMsg::Event(Event::LeaveReq));
            }
            6 if self.zk_up => {
                self.stats.count("garbage node planted");
                self.plant_garbage();
            }
            7 => {
                let b = self.rng.pick(self.bases.len());
                self.note(|| format!("FAULT svc{s} base{b} sync request"));
                self.stats.count("sync request");
                if self.svcs[s].up && self.svcs[s].paused_until.is_none() {
                    self.feed(s, b, EMsg::Event(Event::SyncReq));
                }
            }
            _ => {}
        }
    }

    fn plant_garbage(&mut self) {
        let b = self.rng.pick(self.bases.len());
        let dir = self.dirs[b].clone();
        let lifetime = self.rng.range(200 * MS, 4_000 * MS);
        let session = self.zk.open_session(self.now, lifetime);
        let data: Vec<u8> = match self.rng.pick(5) {
            0 => Vec::new(),
            1 => vec![0xff, 0xfe, 0x00],
            2 => b"10.9.9.9:6000".to_vec(),
            3 => vec![b'x'; 4096],
            _ => b"127.0.0.1:6000 extra words".to_vec(),
        };
        self.note(|| format!("FAULT garbage node in base{b} ({} bytes)", data.len()));
        let prefix = format!("{}-", self.keys[b]);
        let _ = self.zk.create_seq(session, &dir, &prefix, &data, true);
        if self.rng.chance(0.3) {
            let name = format!("{dir}/junk-{}", self.id());
            let _ = self.zk.create(session, &name, b"junk", true);
        }
        self.push(lifetime, Ev::CloseForeign { session });
    }

    fn crash(&mut self, s: usize) {
        let x = &mut self.svcs[s];
        x.up = false;
        x.inc += 1;
        x.elecs.clear();
        x.outstanding.clear();
        x.calls.clear();
        x.writes.clear();
        x.deferred.clear();
        for r in &mut x.replicas {
            r.restoring = false;
        }
    }

    fn restart(&mut self, s: usize) {
        let session = self.zk.open_session(self.now, self.timeout());
        let up = self.physically_up_after_restart(s);
        let x = &mut self.svcs[s];
        x.up = true;
        x.client = Client::connected(session, x.client.epoch + 1, x.client.conn + 1);
        self.note(|| format!("svc{s} restarted"));
        self.schedule_ping(s);
        if !up {
            let inc = self.svcs[s].inc;
            self.push(MS, Ev::LinkCheck { svc: s, inc });
        }
    }

    fn physically_up_after_restart(&self, s: usize) -> bool {
        self.zk_up && !self.svcs[s].zk_cut
    }

    fn resume(&mut self, s: usize) {
        self.svcs[s].paused_until = None;
        self.note(|| format!("svc{s} resumed"));
        let deferred = std::mem::take(&mut self.svcs[s].deferred);
        for (i, ev) in deferred.into_iter().enumerate() {
            self.push(i as u64, ev);
        }
        // The client library notices a connection the server closed.
        let inc = self.svcs[s].inc;
        let detect = self.rng.range(MS, 5 * MS);
        self.push(detect, Ev::LinkCheck { svc: s, inc });
    }

    /// Bases whose elections or replicas changed in the current step.
    pub fn bases_touched(&self) -> BTreeSet<usize> {
        self.touched
            .iter()
            .map(|(_, b)| *b)
            .chain(self.data_changed.iter().copied())
            .collect()
    }

    /// After the faults: has every base one master that its peers follow?
    pub fn converged(&self) -> Result<(), String> {
        for b in 0..self.bases.len() {
            let masters: Vec<usize> = (0..self.svcs.len())
                .filter(|s| {
                    self.svcs[*s]
                        .elecs
                        .get(&b)
                        .is_some_and(|e| e.fsm.state() == State::Master)
                })
                .collect();
            let [m] = masters[..] else {
                return Err(format!(
                    "base{b}: {} masters\n{}",
                    masters.len(),
                    self.describe(b)
                ));
            };
            let mid = &self.svcs[m].id;
            for s in (0..self.svcs.len()).filter(|s| *s != m) {
                let ok = self.svcs[s]
                    .elecs
                    .get(&b)
                    .is_some_and(|e| e.fsm.state() == State::Slave && e.fsm.master() == Some(mid));
                if !ok {
                    return Err(format!(
                        "base{b}: svc{s} does not follow svc{m}\n{}",
                        self.describe(b)
                    ));
                }
            }
            let ours = self.svcs[m].elecs[&b].fsm.local_id();
            let lowest = self
                .zk
                .nodes(&self.dirs[b])
                .into_iter()
                .filter_map(|(n, _)| parse_node_name(&n).map(|(_, s)| s))
                .min_by_key(|s| ours.map_or(0, |o| seq_offset(*s, o)));
            if lowest != ours {
                return Err(format!(
                    "base{b}: master svc{m} holds node {ours:?}, the lowest is {lowest:?}\n{}",
                    self.describe(b)
                ));
            }
        }
        Ok(())
    }

    /// The state of one base everywhere, for violation reports.
    pub fn describe(&self, b: usize) -> String {
        let mut out = String::new();
        let t = self.now / MS;
        for (i, x) in self.svcs.iter().enumerate() {
            let line = match x.elecs.get(&b) {
                Some(e) => format!(
                    "  svc{i} {} up={} paused={} link={:?} epoch={} bound={} state={} node={:?} master={:?}/{:?} fence={:?} data={:?}{} reason: {}\n    log: {}\n",
                    x.id,
                    x.up,
                    x.paused_until.is_some(),
                    x.client.link,
                    x.client.epoch,
                    e.bound_epoch,
                    e.fsm.state(),
                    e.fsm.local_id(),
                    e.fsm.master().map(ServiceId::as_str),
                    e.fsm.master_id(),
                    e.fence,
                    x.replicas[b].vector(),
                    if e.readonly { " READ-ONLY" } else { "" },
                    e.fsm.reason(Now::at(t)),
                    e.fsm.log().rendered().into_iter().take(12).collect::<Vec<_>>().join(" ")
                ),
                None => format!("  svc{i} {} up={} no election; data={:?}\n", x.id, x.up, x.replicas[b].vector()),
            };
            out.push_str(&line);
        }
        let nodes: Vec<String> = self
            .zk
            .nodes(&self.dirs[b])
            .into_iter()
            .map(|(n, node)| {
                let short = n.rsplit('-').next().unwrap_or(&n).to_string();
                format!(
                    "{short}:{}:{:#x}",
                    String::from_utf8_lossy(&node.data)
                        .chars()
                        .take(20)
                        .collect::<String>(),
                    node.owner
                )
            })
            .collect();
        out.push_str(&format!("  zk nodes: {}\n", nodes.join(" ")));
        out
    }
}
