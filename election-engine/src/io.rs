//! What goes into the engine ([`Input`]) and what comes out ([`Effect`]).
//!
//! Every effect that carries an `id` is answered by exactly one input with
//! the same id (a result, or a failure). Ids are drawn from one counter per
//! engine, so a trace reads in order. A watch fires at most once.

use election_core::names::{BaseName, Seq, ServiceId};
use election_core::peer::Refusal;
use election_core::version::{Incarnation, ReplicaVersion, Vector, WriteOp};
use election_core::State;
use std::fmt;
use std::sync::Arc;

/// Correlates an effect with its result.
pub type Id = u64;

/// Names a request the shell is waiting on (a client's write, a peer's
/// call): the engine answers it with exactly one effect naming it.
pub type ReqId = u64;

/// Names a ZooKeeper watch set by an `Exists` or `Get` op.
pub type WatchId = u64;

/// The ZooKeeper session an op ran in: `epoch` grows with every new session
/// (never with a mere reconnection), `id` is ZooKeeper's session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTag {
    pub epoch: u64,
    pub id: i64,
}

/// A ZooKeeper operation. The shell submits ops to the session in the order
/// they are emitted: the engine relies on a session's FIFO (a DELETE before
/// the CREATE that follows it, the LIST sent right behind an EXISTS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkOp {
    /// `<prefix>` EPHEMERAL|SEQUENTIAL with `data`. When the group directory
    /// `dir` is missing, create it (and its missing parents) and retry once.
    CreateSeq {
        prefix: String,
        data: Vec<u8>,
        dir: String,
    },
    /// The node's ephemeral owner (0 for a persistent node), or none. With a
    /// watch, the shell reports the node's deletion as `WatchFired`.
    Exists {
        path: String,
        watch: Option<WatchId>,
    },
    /// The node's data. With a watch, as for `Exists`.
    Get {
        path: String,
        watch: WatchId,
    },
    List {
        dir: String,
    },
    Delete {
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkOk {
    /// `owner` is the node's ephemeral owner as create's Stat reports it.
    Created {
        seq: Seq,
        owner: i64,
    },
    /// `Some(ephemeral owner)` when the node exists.
    Stat(Option<i64>),
    Data(Vec<u8>),
    Children(Vec<String>),
    Deleted,
}

/// How a ZooKeeper op failed, already classified by the shell (reference
/// §1.2: the session class resets the election, the rest is an ordinary KO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkFailure {
    NoNode,
    /// No session to send it on.
    NotConnected,
    /// The session is gone (expired, closed, moved, auth failed).
    SessionLost(String),
    /// Anything else, connection loss included: the outcome may be unknown.
    Failed(String),
}

impl fmt::Display for ZkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZkFailure::NoNode => f.write_str("no node"),
            ZkFailure::NotConnected => f.write_str("ZooKeeper not connected"),
            ZkFailure::SessionLost(why) | ZkFailure::Failed(why) => f.write_str(why),
        }
    }
}

/// The directory's entry for a base: every peer (ourselves included) and
/// which creation of the base it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub peers: Vec<ServiceId>,
    pub incarnation: Incarnation,
    /// The creation of our replica, read with the entry when we hold one
    /// (compared as `Input::Creation` is).
    pub replica: Option<Incarnation>,
}

/// A peer's answer to GETVERS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteVersion {
    Version(ReplicaVersion),
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `next_wakeup()` has come.
    Tick,
    /// A client or a peer touched the base: start or refresh its election
    /// (OpenIO's DB_USE). `touch` records an access (keeps expiry away).
    Poke { base: BaseName, touch: bool },
    /// Leave, without creating the election when it is absent.
    Leave { base: BaseName },
    /// Leave and come back at once as a new member (stop-writes, balance, a
    /// deposed master).
    LeaveAndRejoin { base: BaseName },
    /// Re-copy the base from the master (creates the election).
    SyncReq { base: BaseName },
    /// A peer's USE: `master` holds the sequence of its node when it
    /// announces its mastership (a claim without one is not a claim).
    UseReceived {
        base: BaseName,
        from: ServiceId,
        master: Option<Seq>,
    },
    /// Stop-writes entered (`true`) or left: refuse (or allow again)
    /// masterships, and hand every current one over.
    StopWrites(bool),
    /// SIGTERM: refuse new masterships and leave every election.
    Exit,
    /// SIGINT: refuse everything from now on, without leaving.
    ExitFast,
    /// A new session is established.
    SessionConnected(SessionTag),
    /// The connection to ZooKeeper dropped; the session of `epoch` may still
    /// be valid. Past the grace period (`EngineConfig::grace_ms`) with no
    /// `Reconnected`, the elections bound to it are reset, as on
    /// `SessionLost`: ours may have expired unnoticed, and a successor may
    /// lead.
    Disconnected { epoch: u64 },
    /// Connected again to the session of `epoch`: the elections its grace
    /// period reset rejoin.
    Reconnected { epoch: u64 },
    /// The session of `epoch` is gone (expired, or disconnected past the
    /// grace period): every election bound to it is reset.
    SessionLost { epoch: u64 },
    /// A usable session is back: the elections reset by the loss rejoin.
    SessionRestored,
    Zk {
        id: Id,
        /// The session the op ran in (none when it could not be sent).
        session: Option<SessionTag>,
        result: Result<ZkOk, ZkFailure>,
    },
    /// A watched node changed: `deleted` when it was deleted.
    WatchFired { watch: WatchId, deleted: bool },
    /// The directory's answer for `ResolvePeers`: the base's entry, or
    /// `None` when we are not one of its peers.
    Peers {
        id: Id,
        result: Result<Option<Membership>, String>,
    },
    /// A route's directory read found `base` at creation `directory` while
    /// our replica of it is of creation `replica` (the election's own reads
    /// carry both in `Peers`). A replica of another creation is set aside
    /// (`Effect::SetAside`).
    Creation {
        base: BaseName,
        directory: Incarnation,
        replica: Incarnation,
    },
    /// The remote's answer to GETVERS, and our own version read after it.
    Getvers {
        id: Id,
        remote: Result<RemoteVersion, String>,
        local: Result<ReplicaVersion, String>,
    },
    /// The copy of sync `id` arrived from the master and is being
    /// installed (`Synced` follows): the master took it, so writes it sends
    /// from now on follow the copy, and wait for it.
    SyncFetched { id: Id },
    /// The copy from the master was installed, or failed. `floor`: the
    /// master's batch floor sent with the copy (see `StoreOp::Dump`; 0 when
    /// the master named none).
    Synced {
        id: Id,
        result: Result<(), String>,
        floor: u64,
    },
    /// A client's write, on a service whose election of `base` was final
    /// when the shell looked. Answered by `WriteDone`.
    Write {
        req: ReqId,
        base: BaseName,
        ops: Vec<WriteOp>,
    },
    /// A write replicated to us by `from`, master at `epoch` (its node's
    /// sequence). Answered by `ReplicateDone`.
    Replicate {
        req: ReqId,
        from: ServiceId,
        base: BaseName,
        epoch: Seq,
        prev: Vector,
        next: Vector,
        ops: Arc<[WriteOp]>,
    },
    /// A peer's GETVERS; `master_seq` when it asks us as its master,
    /// `candidate_seq` when it is a candidate. Answered by `GetversServed`.
    GetversReq {
        req: ReqId,
        base: BaseName,
        master_seq: Option<Seq>,
        candidate_seq: Option<Seq>,
        /// The creation of the base the asker's directory read named.
        incarnation: Option<Incarnation>,
    },
    /// What a candidate's GETVERS showed, once we answered it: `from` holds
    /// node `seq` with version `theirs`, and we answered `ours`. Should we
    /// then follow `from` at `seq` with no write of ours in between, this
    /// is what our own GETVERS to it would find: that round trip is skipped.
    CandidateVersions {
        base: BaseName,
        from: ServiceId,
        seq: Seq,
        theirs: ReplicaVersion,
        ours: ReplicaVersion,
    },
    /// Our master `from` left its node `epoch` and told its final version,
    /// `theirs`; `ours` was read as it arrived (`Effect::Farewell`).
    MasterLeft {
        base: BaseName,
        from: ServiceId,
        epoch: Seq,
        theirs: ReplicaVersion,
        ours: ReplicaVersion,
    },
    /// A slave asks for a copy of the base. Answered by `DumpRefused`, or by
    /// a `Store{Dump{req}}` whose executor answers the slave.
    DumpReq { req: ReqId, base: BaseName },
    /// The outcome of `Effect::Store`.
    Stored {
        id: Id,
        result: Result<StoreOk, StoreFailure>,
    },
    /// A slave's answer to `Effect::Replicate`.
    Replicated {
        id: Id,
        result: Result<(), ReplicateFailure>,
    },
    /// The operator checked that the replicas of these bases agree again:
    /// they leave emergency read-only mode (all of them: the service leaves
    /// it).
    ClearReadOnly { bases: Vec<BaseName> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Zk {
        id: Id,
        op: ZkOp,
    },
    /// Ask the directory for the peers of `base`; `decache` bypasses caches.
    ResolvePeers {
        id: Id,
        base: BaseName,
        decache: bool,
    },
    /// Fire and forget: ask a peer to start (or refresh) its side. A new
    /// master announces itself with the sequence of its node.
    Use {
        to: ServiceId,
        base: BaseName,
        master: Option<Seq>,
    },
    /// Fire and forget: we leave our mastership at node `epoch` with no
    /// write in flight, so our version, read now, is final for that epoch.
    /// Tell it to `to` (`Input::MasterLeft` on their side): a slave holding
    /// it that becomes the next candidate leads without a GETVERS round.
    Farewell {
        to: Vec<ServiceId>,
        base: BaseName,
        epoch: Seq,
    },
    /// Ask a peer's version; `master_seq` when asking our master (it must own
    /// that node), `candidate_seq` when we are a candidate (it fences older
    /// masters). Answer with `Input::Getvers`, our own version read after
    /// the remote answered.
    Getvers {
        id: Id,
        to: ServiceId,
        base: BaseName,
        master_seq: Option<Seq>,
        candidate_seq: Option<Seq>,
        /// The creation of the base our directory read named, for the peer
        /// to compare with its own (none before our first read).
        incarnation: Option<Incarnation>,
    },
    /// Our replica of `base` is of creation `found`, not the directory's
    /// `current` (a container deleted and created again while we missed
    /// it): move it away, never to be elected or served (issue 14, H3). The
    /// replica reports an unknown version from now until it is gone.
    SetAside {
        base: BaseName,
        found: Incarnation,
        current: Incarnation,
    },
    /// Copy the base from `master` and install it; answer `Input::Synced`.
    /// The replica reports an unknown version from now until the answer or
    /// an `AbortSync` (the seed's rookie rule).
    Sync {
        id: Id,
        base: BaseName,
        master: ServiceId,
    },
    /// The election left SYNCING: stop the copy `id` (its answer is ignored).
    AbortSync {
        id: Id,
        base: BaseName,
    },
    /// A store operation on one base; the engine issues at most one per
    /// base at a time. Answer with `Input::Stored`.
    Store {
        id: Id,
        base: BaseName,
        op: StoreOp,
    },
    /// Send a write to a slave; answer with `Input::Replicated`.
    Replicate {
        id: Id,
        to: ServiceId,
        base: BaseName,
        epoch: Seq,
        prev: Vector,
        next: Vector,
        ops: Arc<[WriteOp]>,
    },
    /// Fire and forget: tell a slave that missed a committed write to copy
    /// the base again.
    Resync {
        to: ServiceId,
        base: BaseName,
    },
    /// The answer to `Input::Write`.
    WriteDone {
        req: ReqId,
        base: BaseName,
        result: Result<Written, WriteRefusal>,
    },
    /// The answer to `Input::Replicate`.
    ReplicateDone {
        req: ReqId,
        result: Result<(), Refusal>,
    },
    /// The answer to `Input::GetversReq`: on `Ok`, reply with the local
    /// version, read now.
    GetversServed {
        req: ReqId,
        base: BaseName,
        result: Result<(), GetversRefusal>,
    },
    /// The answer to `Input::DumpReq` when no copy may be given.
    DumpRefused {
        req: ReqId,
        state: State,
        session_live: bool,
    },
    /// For metrics and waiters.
    Observe(Observation),
    /// For people.
    Log(LogEvent),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Every change of state. Waiters wake on it.
    Transition {
        base: BaseName,
        pre: State,
        event: &'static str,
        post: State,
    },
    /// A GETVERS exchange concluded: `OK`, `KO`, `OLD` or `RACE`.
    Getvers(&'static str),
    /// A follower's GETVERS to its master not sent: the master's own
    /// GETVERS as a candidate answered it (`Input::CandidateVersions`).
    GetversSkipped,
    /// A successor's GETVERS to a peer not waited for: its master's
    /// farewell answered it (`Input::MasterLeft`).
    FarewellTaken,
    /// From leaving NONE to MASTER or SLAVE.
    TimeToFinal { ms: u64 },
    /// The settled master changed.
    Failover,
    /// A copy from the master was installed.
    Resynced,
    /// A write from a master was refused because we vouched for a newer
    /// candidate.
    WriteFenced,
    /// A replicated write came before the write it follows (two REPLICATE
    /// calls overtook each other): it waits for it.
    Overtaken,
    /// A batch of `writes` client writes was committed.
    Committed { writes: usize },
    /// A batch was begun while `ahead` batches of the same base were still
    /// waiting for their majority (pipelined replication).
    Pipelined { ahead: usize },
}

/// What the store does for the engine. Ops of one base come one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Master: apply `ops` in a transaction left open, and say which
    /// version it moves the base from and to (`Begun`). The bumped table's
    /// stamp records `writer` (see `TableVersion::writer`). `behind`
    /// batches of the base are in flight (the pipeline window): their
    /// transaction is open, and this batch goes in a savepoint inside it,
    /// from the version they left; a batch that fails is undone alone. A
    /// store that holds another count of open batches refuses.
    Begin {
        ops: Arc<[WriteOp]>,
        writer: u64,
        behind: usize,
    },
    /// Master: commit, or roll back, the open transaction (every batch in
    /// it).
    Commit,
    Rollback,
    /// Master: undo the batches of the open transaction after its first
    /// `keep` (at least 1), which stay open.
    RollbackTo {
        keep: usize,
    },
    /// Slave: apply `ops`, only if the local version is `prev` (`Applied`);
    /// already at `next` is a success too.
    Apply {
        prev: Vector,
        next: Vector,
        ops: Arc<[WriteOp]>,
    },
    /// Master: copy the base and hand the copy to the slave asking (`req`),
    /// with `floor`: every batch whose writer stamp is below it (same epoch,
    /// serial order) was decided before the copy was made, so a slave
    /// holding this copy refuses it as `Refusal::Stale` should it arrive
    /// late. The executor sends it with the copy (`x-oio-batch-floor`).
    Dump {
        req: ReqId,
        floor: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOk {
    Begun { prev: Vector, next: Vector },
    Committed,
    RolledBack,
    Applied,
    Dumped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The write does not follow the local version.
    OutOfOrder(String),
    /// No local copy of the base.
    Missing,
    Restoring,
    Loading,
    Failed(String),
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreFailure::OutOfOrder(why) | StoreFailure::Failed(why) => f.write_str(why),
            StoreFailure::Missing => f.write_str("no local copy of the base"),
            StoreFailure::Restoring => f.write_str("base is being restored"),
            StoreFailure::Loading => f.write_str("base is still loading"),
        }
    }
}

/// Why a slave did not acknowledge a replicated write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicateFailure {
    /// It answered, without applying it.
    Refused(Refusal),
    /// The call never reached it (connection refused): not applied.
    Unreachable(String),
    /// No answer: it may have applied it.
    Unknown(String),
}

impl ReplicateFailure {
    /// The slave does not hold the write.
    pub fn missed(&self) -> bool {
        !matches!(self, ReplicateFailure::Refused(r) if r.deposes_master() || *r == Refusal::Stale)
    }
}

impl fmt::Display for ReplicateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicateFailure::Refused(r) => write!(f, "refused ({r:?})"),
            ReplicateFailure::Unreachable(why) => write!(f, "unreachable ({why})"),
            ReplicateFailure::Unknown(why) => write!(f, "no answer ({why})"),
        }
    }
}

/// A write acknowledged by a majority: the base's version after it, and the
/// master's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub next: Vector,
    pub epoch: Seq,
}

/// Why a write was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRefusal {
    /// We are a slave: write to the master.
    Redirect(ServiceId),
    /// Not master with a live session any more (or not yet).
    StatusChanged {
        state: State,
        session_live: bool,
    },
    /// A candidate holding node `fence` asked our version: our node `epoch`
    /// is gone and we had not heard yet. We leave.
    Superseded {
        epoch: Seq,
        fence: Seq,
    },
    /// Emergency read-only mode.
    ReadOnly,
    StopWrites,
    Exiting,
    /// Too many writes wait for this base.
    Overloaded {
        queued: usize,
    },
    /// Too many writes wait on this service, over all its bases.
    ServiceOverloaded {
        queued: usize,
    },
    /// Not enough replicas acknowledged: rolled back.
    NoQuorum {
        acked: usize,
        group: usize,
        needed: usize,
        detail: String,
    },
    /// The local store failed.
    Failed(String),
}

/// One base whose replicas may differ from the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub base: BaseName,
    pub detail: String,
    pub since_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    NotManaged {
        base: BaseName,
    },
    PeersFailed {
        base: BaseName,
        error: String,
    },
    IgnoredNode {
        base: BaseName,
        path: String,
        why: String,
    },
    /// The seed's rookie: no promotion until every version is known.
    Rookie {
        base: BaseName,
        why: String,
    },
    /// A peer announced a mastership newer than ours: we leave.
    DoubleMaster {
        base: BaseName,
        from: ServiceId,
    },
    /// A peer's announcement of a mastership older than ours arrived late:
    /// ignored (issue 14, Hm1).
    StaleMasterClaim {
        base: BaseName,
        from: ServiceId,
        epoch: Seq,
        ours: Seq,
    },
    /// The lowest node, taken as `from`'s on its own word, was gone or not
    /// its when read: we list again.
    ClaimUnconfirmed {
        base: BaseName,
        seq: Seq,
        from: ServiceId,
    },
    LeftoverDeleted {
        base: BaseName,
        seq: Seq,
    },
    Restored {
        base: BaseName,
        master: ServiceId,
    },
    StopWrites {
        masters: usize,
    },
    /// CRITICAL: a write could not be propagated safely; the service
    /// refuses writes until an operator clears it.
    ReadOnly {
        base: BaseName,
        detail: String,
    },
    /// A peer's refusal (or a candidate's GETVERS) says another master leads.
    Deposed {
        base: BaseName,
        why: String,
    },
    /// Disconnected from ZooKeeper for the whole grace period.
    GraceSpent {
        epoch: u64,
        grace_ms: u64,
    },
}

impl LogEvent {
    /// Warnings are worth an operator's attention; the rest is information.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            LogEvent::PeersFailed { .. }
                | LogEvent::IgnoredNode { .. }
                | LogEvent::Rookie { .. }
                | LogEvent::DoubleMaster { .. }
                | LogEvent::StopWrites { .. }
                | LogEvent::ReadOnly { .. }
                | LogEvent::Deposed { .. }
                | LogEvent::GraceSpent { .. }
        )
    }
}

impl fmt::Display for LogEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogEvent::NotManaged { base } => write!(f, "{base}: base not managed by this service"),
            LogEvent::PeersFailed { base, error } => {
                write!(f, "{base}: peer resolution failed: {error}")
            }
            LogEvent::IgnoredNode { base, path, why } => {
                write!(f, "{base}: ignoring election node {path}: {why}")
            }
            LogEvent::Rookie { base, why } => write!(
                f,
                "{base}: ROOKIE: {why}: no promotion until every version is known"
            ),
            LogEvent::DoubleMaster { base, from } => write!(
                f,
                "{base}: suspicious double master: {from} claims mastership too; leaving"
            ),
            LogEvent::StaleMasterClaim {
                base,
                from,
                epoch,
                ours,
            } => write!(
                f,
                "{base}: ignored a late master announcement from {from} (node {epoch}, older than ours, {ours})"
            ),
            LogEvent::ClaimUnconfirmed { base, seq, from } => write!(
                f,
                "{base}: node {seq}, which {from} said was its own, is gone or not its: listing again"
            ),
            LogEvent::LeftoverDeleted { base, seq } => {
                write!(f, "{base}: deleted leftover node {seq}")
            }
            LogEvent::Restored { base, master } => {
                write!(f, "{base}: replica restored from {master}")
            }
            LogEvent::StopWrites { masters } => write!(
                f,
                "stop-writes: handing {masters} mastership(s) over to healthy peers"
            ),
            LogEvent::ReadOnly { base, detail } => write!(
                f,
                "CRITICAL emergency read-only mode: write on {base} could not be propagated safely: {detail}"
            ),
            LogEvent::Deposed { base, why } => write!(f, "{base}: deposed ({why}); leaving"),
            LogEvent::GraceSpent { epoch, grace_ms } => write!(
                f,
                "ZooKeeper disconnected for more than {grace_ms} ms: resetting elections of session epoch {epoch}"
            ),
        }
    }
}

/// Why a peer's GETVERS was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetversRefusal {
    /// It named our node as its master's, and we do not own that node.
    NotOwner(NotOwner),
    /// Its directory read names another creation of the base than ours:
    /// one of us missed a deletion. We read the directory again; the asker
    /// does so when it retries.
    OtherCreation { ours: Incarnation },
}

impl fmt::Display for GetversRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetversRefusal::NotOwner(n) => n.fmt(f),
            GetversRefusal::OtherCreation { ours } => write!(
                f,
                "another creation of the base: our directory read names incarnation {}",
                ours.id
            ),
        }
    }
}

/// Why a peer's GETVERS naming our node was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOwner {
    pub seq: Seq,
    pub owned: Option<Seq>,
    pub state: State,
}

impl fmt::Display for NotOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not the owner of master node {} (our node: {:?}, state {})",
            self.seq, self.owned, self.state
        )
    }
}
