//! The writer path: master-only writes replicated to a majority, with the
//! fencing epoch; the slaves' side; and emergency read-only mode.
//!
//! A write on the master: wait (bounded) for a final election state; a SLAVE
//! answers 303 with its master; the MASTER re-checks its role and session
//! under the base's write lock, applies the write in an SQLite transaction,
//! sends it with its epoch (its election node's sequence) and the resulting
//! version vector to the slaves, and commits only when a majority of the
//! group, itself included, acknowledged. Otherwise it rolls back and answers
//! 503. A slave applies a write only from the master it follows, under that
//! master's epoch, and only in version order; anything else is refused (and
//! a slave that finds itself behind resyncs from the master).
//!
//! If a slave may have applied a write the master then rolled back (its
//! answer was lost), replicas may differ from the master: the service enters
//! emergency read-only mode (seed 000) until an operator clears it once every
//! replica reports the same version, or the service restarts.

use crate::rpc::PeerError;
use crate::service::{session_live, Service, Snapshot, WaitError};
use crate::storage::{render_vector, StoreError, Vector, WriteOp};
use election_core::names::{BaseName, Seq, ServiceId, ServiceType};
use election_core::peer::{replica_verdict, Refusal, ReplicaVerdict};
use election_core::State;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const READONLY_MESSAGE: &str =
    "READONLY Server is in emergency read-only mode due to a critical propagation failure.";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReplicateRequest {
    pub base: BaseName,
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub from: ServiceId,
    /// The master's fencing epoch: the sequence of its election node.
    pub epoch: Seq,
    pub prev: Vector,
    pub next: Vector,
    pub ops: Vec<WriteOp>,
}

/// Why a write was not acknowledged.
#[derive(Debug)]
pub enum WriteError {
    /// This peer is a slave: write to the master.
    Redirect(ServiceId),
    /// The election could not serve the request (the seed's 503), and why.
    ElectionFailed(Failure, String),
    Exiting,
    NotManaged(String),
    ReadOnly,
    /// Not enough replicas acknowledged: the write was rolled back.
    NoQuorum(String),
    /// A resource threshold is breached (seed 001).
    StopWrites(String),
    Invalid(String),
    Internal(String),
}

/// Why the election could not serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No final state within the request's budget.
    Timeout,
    /// The directory could not say who holds the base.
    DirectoryUnavailable,
    /// The role or the session changed while the write waited.
    StatusChanged,
    /// A candidate with a higher node asked our version: we are deposed.
    Superseded,
}

/// What went wrong, as a stable name in the answer's `reason` field:
/// scripts and tests act on it, people read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NotMaster,
    ElectionTimeout,
    DirectoryUnavailable,
    StatusChanged,
    Superseded,
    Exiting,
    NotManaged,
    ReadOnly,
    NoQuorum,
    StopWrites,
    Invalid,
    Internal,
}

impl WriteError {
    pub fn reason(&self) -> Reason {
        match self {
            WriteError::Redirect(_) => Reason::NotMaster,
            WriteError::ElectionFailed(Failure::Timeout, _) => Reason::ElectionTimeout,
            WriteError::ElectionFailed(Failure::DirectoryUnavailable, _) => {
                Reason::DirectoryUnavailable
            }
            WriteError::ElectionFailed(Failure::StatusChanged, _) => Reason::StatusChanged,
            WriteError::ElectionFailed(Failure::Superseded, _) => Reason::Superseded,
            WriteError::Exiting => Reason::Exiting,
            WriteError::NotManaged(_) => Reason::NotManaged,
            WriteError::ReadOnly => Reason::ReadOnly,
            WriteError::NoQuorum(_) => Reason::NoQuorum,
            WriteError::StopWrites(_) => Reason::StopWrites,
            WriteError::Invalid(_) => Reason::Invalid,
            WriteError::Internal(_) => Reason::Internal,
        }
    }

    /// (OpenIO code, message).
    pub fn code_and_message(&self) -> (u16, String) {
        match self {
            WriteError::Redirect(m) => (303, m.to_string()),
            WriteError::ElectionFailed(_, m) => (503, m.clone()),
            WriteError::Exiting => (503, "service exiting".into()),
            WriteError::NotManaged(m) => (431, m.clone()),
            WriteError::ReadOnly => (503, READONLY_MESSAGE.into()),
            WriteError::NoQuorum(m) => (503, m.clone()),
            WriteError::StopWrites(reason) => (
                503,
                format!(
                    "STOP_WRITES {reason}: this service is handing its bases over to healthy peers"
                ),
            ),
            WriteError::Invalid(m) => (400, m.clone()),
            WriteError::Internal(m) => (500, m.clone()),
        }
    }
}

/// One base whose replicas may differ from the master.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Divergence {
    pub base: BaseName,
    pub detail: String,
    pub since_ms: u64,
}

/// Per-service write state: per-base write locks and the read-only mode.
#[derive(Default)]
pub struct Writes {
    locks: Mutex<HashMap<BaseName, Arc<tokio::sync::Mutex<()>>>>,
    readonly: Mutex<Vec<Divergence>>,
    /// Test-only fault switch: pretend every slave's answer to a write was
    /// lost after it applied it (`--enable-fault-switches`).
    pub fault_lose_acks: std::sync::atomic::AtomicBool,
}

impl Writes {
    /// The per-base lock held by a write from its local apply to its commit
    /// or rollback (and by a copy handed to a slave: see `api::peer_dump`).
    pub fn lock(&self, base: &BaseName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() > 100_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(base.clone()).or_default().clone()
    }

    pub fn readonly(&self) -> Vec<Divergence> {
        self.readonly
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn enter_readonly(&self, d: Divergence) {
        tracing::error!(
            base = %d.base,
            "CRITICAL emergency read-only mode: write on {} could not be propagated safely: {}",
            d.base,
            d.detail
        );
        self.readonly
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(d);
    }

    fn clear_readonly(&self, bases: &[BaseName]) {
        self.readonly
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|d| !bases.contains(&d.base));
    }
}

fn validate(ops: &[WriteOp]) -> Result<(), WriteError> {
    if ops.is_empty() {
        return Err(WriteError::Invalid(
            "nothing to write: give at least one property".into(),
        ));
    }
    if ops.len() > 1000 {
        return Err(WriteError::Invalid(format!(
            "{} changes in one write; at most 1000",
            ops.len()
        )));
    }
    for op in ops {
        let (WriteOp::Set { key, .. } | WriteOp::Unset { key } | WriteOp::SetSystem { key, .. }) =
            op;
        if key.is_empty() || key.len() > 256 || key.chars().any(char::is_control) {
            return Err(WriteError::Invalid(format!(
                "property key {key:?}: 1 to 256 printable characters"
            )));
        }
        if let WriteOp::SetSystem { .. } = op {
            crate::storage::check_system_key(key).map_err(WriteError::Invalid)?;
        }
        if let WriteOp::Set { value, .. } | WriteOp::SetSystem { value, .. } = op {
            if value.len() > 16 * 1024 {
                return Err(WriteError::Invalid(format!(
                    "value of {key:?} is {} bytes; at most 16384",
                    value.len()
                )));
            }
        }
    }
    Ok(())
}

fn not_managed(svc: &Service, base: &BaseName) -> WriteError {
    WriteError::NotManaged(format!(
        "Base not managed: {base} is not hosted by {}",
        svc.me
    ))
}

/// The common start of client requests on a base: we must host it, and its
/// election must reach a final state within the caller's budget.
async fn settled(
    svc: &Arc<Service>,
    base: &BaseName,
    budget: Duration,
) -> Result<Arc<Snapshot>, WriteError> {
    match svc.manages(base, false).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(not_managed(svc, base)),
        Err(e) => {
            return Err(WriteError::ElectionFailed(
                Failure::DirectoryUnavailable,
                format!("directory unavailable: {e}"),
            ))
        }
    }
    wait_settled(svc, base, budget).await
}

/// Waits (bounded) for a final election state; a timeout is the seed's
/// `Election failed [<base>][<type>]`.
async fn wait_settled(
    svc: &Arc<Service>,
    base: &BaseName,
    budget: Duration,
) -> Result<Arc<Snapshot>, WriteError> {
    match svc.wait_final(base, budget).await {
        Ok(s) => Ok(s),
        Err(WaitError::Exiting) => Err(WriteError::Exiting),
        Err(WaitError::Timeout(s)) => Err(WriteError::ElectionFailed(Failure::Timeout, format!(
            "Election failed [{base}][{}]: (503) TIMEOUT! (waiting for election status) step={}: {}",
            svc.stype,
            s.fsm.state(),
            s.fsm.reason(svc.now())
        ))),
    }
}

/// A client write, on whichever peer received it.
pub async fn write(
    svc: &Arc<Service>,
    base: &BaseName,
    ops: Vec<WriteOp>,
    budget: Duration,
) -> Result<(Vector, Seq), WriteError> {
    validate(&ops)?;
    if !svc.writes.readonly().is_empty() {
        return Err(WriteError::ReadOnly);
    }
    let snap = settled(svc, base, budget).await?;
    if let Some(master) = snap.fsm.master() {
        return Err(WriteError::Redirect(master.clone()));
    }
    let lock = svc.writes.lock(base);
    let _guard = lock.lock().await;
    // Re-check under the lock: the role may have changed while we waited.
    let snap = svc.snapshot(base).ok_or_else(|| {
        WriteError::ElectionFailed(Failure::StatusChanged, "election vanished".into())
    })?;
    match (snap.fsm.state(), snap.fsm.master()) {
        (_, Some(master)) => return Err(WriteError::Redirect(master.clone())),
        (State::Master, None) if session_live(svc, snap.bound_epoch) => {}
        (state, None) => {
            return Err(WriteError::ElectionFailed(Failure::StatusChanged, format!(
                "Election failed [{base}][{}]: election status changed during the write (now {state}, session live: {})",
                svc.stype,
                session_live(svc, snap.bound_epoch)
            )))
        }
    }
    if let Some(reason) = svc.guard.stopped() {
        return Err(WriteError::StopWrites(reason));
    }
    let epoch = snap
        .fsm
        .local_id()
        .ok_or_else(|| WriteError::Internal("master without a node".into()))?;
    if let Some(fence) = svc
        .fence(base)
        .filter(|f| election_core::names::seq_after(*f, epoch))
    {
        // A candidate holding a higher node asked our version: our node is
        // gone and we have not heard yet (found by the simulation, seed 2368).
        tracing::warn!(base = %base, "deposed: a candidate with node {fence} asked our version; leaving");
        svc.leave_and_rejoin(base);
        return Err(WriteError::ElectionFailed(Failure::Superseded, format!(
            "Election failed [{base}][{}]: this master (node {epoch}) was superseded by a candidate with node {fence}",
            svc.stype
        )));
    }
    let peers: Vec<ServiceId> = snap
        .fsm
        .peers()
        .map(<[ServiceId]>::to_vec)
        .unwrap_or_default();
    let group = peers.len() + 1;
    let needed = group / 2 + 1;

    // Apply in a transaction held open while the slaves are asked; commit
    // only with a majority. The blocking thread drives the async calls.
    let (svc2, base2, key) = (svc.clone(), base.clone(), svc.key(base));
    let handle = tokio::runtime::Handle::current();
    // The blocking thread does not inherit the request id: carry it.
    let req_id = crate::access::current();
    let outcome = tokio::task::spawn_blocking(move || -> Result<(Vector, Seq), WriteError> {
        let store_err = |e: StoreError| WriteError::Internal(format!("local write failed: {e}"));
        let when = i64::try_from(svc2.now().wall_ms).unwrap_or(0);
        let mut pending = svc2.store.begin_write(&key, &ops, when).map_err(store_err)?;
        let req = ReplicateRequest {
            base: base2.clone(),
            service_type: svc2.stype.clone(),
            from: svc2.me.clone(),
            epoch,
            prev: pending.prev.clone(),
            next: pending.next.clone(),
            ops,
        };
        let (answers, mut late) = handle.block_on(crate::access::with_id(
            req_id.clone(),
            replicate(&svc2, &peers, &req, needed),
        ));
        let acked = 1 + answers.iter().filter(|(_, a)| matches!(a, Ack::Applied)).count();
        if acked >= needed {
            pending.commit().map_err(|e| {
                // The slaves have it and we do not: replicas differ.
                svc2.writes.enter_readonly(Divergence {
                    base: base2.clone(),
                    detail: format!("local commit failed after {acked} acknowledgements: {e}"),
                    since_ms: svc2.now().wall_ms,
                });
                WriteError::ReadOnly
            })?;
            // Slaves that did not apply it (settling, unreachable) are told to
            // re-copy the base, so they do not wait for the next write to find
            // out they are behind. A slave still answering is only told if it
            // ends up not applying it: resyncing every slower slave turned each
            // write into a full copy (found by the simulation).
            let (svc, base) = (svc2.clone(), base2.clone());
            let mut behind: Vec<ServiceId> = answers
                .iter()
                .filter(|(_, a)| a.missed())
                .map(|(p, _)| p.clone())
                .collect();
            handle.spawn(crate::access::with_id(req_id.clone(), async move {
                use futures::StreamExt;
                loop {
                    for peer in behind.drain(..) {
                        request_resync(&svc, &base, peer).await;
                    }
                    match late.next().await {
                        Some(Ok((peer, ack))) if ack.missed() => behind.push(peer),
                        Some(_) => {}
                        None => break,
                    }
                }
            }));
            return Ok((req.next, epoch));
        }
        pending.rollback();
        let detail: Vec<String> = answers.iter().map(|(p, a)| format!("{p}: {a}")).collect();
        let message = format!(
            "no quorum: {acked} of {group} replicas acknowledged, {needed} needed; the write was rolled back ({})",
            detail.join("; ")
        );
        // A slave that did not answer (timeout, or still pending when the
        // outcome was decided) may hold the write we are rolling back.
        if answers.iter().any(|(_, a)| matches!(a, Ack::Unknown(_) | Ack::Pending)) {
            svc2.writes.enter_readonly(Divergence {
                base: base2.clone(),
                detail: format!("write {} -> {} may be on some replicas: {}", render_vector(&req.prev), render_vector(&req.next), detail.join("; ")),
                since_ms: svc2.now().wall_ms,
            });
        }
        if answers.iter().any(|(_, a)| matches!(a, Ack::Deposed(_))) {
            // Another master leads: step down; we rejoin as its slave.
            tracing::warn!(base = %base2, "write refused by a peer following another master: leaving");
            svc2.leave_and_rejoin(&base2);
        }
        Err(WriteError::NoQuorum(message))
    })
    .await
    .map_err(|e| WriteError::Internal(e.to_string()))?;
    outcome
}

/// A slave's answer to one replicated write.
#[derive(Debug)]
enum Ack {
    Applied,
    /// Refused before applying (out of order, not settled...).
    Refused(String),
    /// Refused because it follows another master or is master itself.
    Deposed(String),
    /// No answer: it may or may not have applied the write.
    Unknown(String),
    /// Not answered yet when the outcome was decided.
    Pending,
}

impl Ack {
    /// The slave answered, or gave up, without the write.
    fn missed(&self) -> bool {
        matches!(self, Ack::Refused(_) | Ack::Unknown(_))
    }
}

/// Tells a slave that missed a committed write to re-copy the base.
async fn request_resync(svc: &Arc<Service>, base: &BaseName, peer: ServiceId) {
    let req = crate::rpc::UseRequest {
        base: base.clone(),
        service_type: svc.stype.clone(),
        from: svc.me.clone(),
        master: false,
    };
    if let Err(e) = svc.rpc.resync(&peer, &req, svc.cfg.use_timeout).await {
        tracing::debug!(base = %base, "resync request to {peer} failed: {e}");
    }
}

/// Replication calls still running when the outcome was decided.
type LateAnswers = futures::stream::FuturesUnordered<tokio::task::JoinHandle<(ServiceId, Ack)>>;

impl std::fmt::Display for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ack::Applied => f.write_str("applied"),
            Ack::Refused(m) => write!(f, "refused ({m})"),
            Ack::Deposed(m) => write!(f, "refused ({m})"),
            Ack::Unknown(m) => write!(f, "no answer ({m})"),
            Ack::Pending => f.write_str("still pending"),
        }
    }
}

/// Sends the write to every slave and returns as soon as the outcome is
/// decided: `needed - 1` slaves applied it, or too many refused for that to
/// happen. Slower slaves keep receiving it in the background; their calls
/// are returned with the answers.
async fn replicate(
    svc: &Arc<Service>,
    peers: &[ServiceId],
    req: &ReplicateRequest,
    needed: usize,
) -> (Vec<(ServiceId, Ack)>, LateAnswers) {
    use futures::StreamExt;
    let lose = svc
        .writes
        .fault_lose_acks
        .load(std::sync::atomic::Ordering::Relaxed);
    let req = Arc::new(req.clone());
    let mut calls: futures::stream::FuturesUnordered<_> = peers
        .iter()
        .map(|peer| {
            let (svc, req, peer) = (svc.clone(), req.clone(), peer.clone());
            // Spawned: a call still running when we decide goes on by itself.
            tokio::spawn(crate::access::inherit(async move {
                let sent = std::time::Instant::now();
                let answer = svc
                    .rpc
                    .replicate(&peer, &req, svc.cfg.replicate_timeout)
                    .await;
                svc.metrics
                    .replication
                    .observe(sent.elapsed().as_secs_f64());
                if answer.is_err() {
                    svc.metrics.replication_failures.inc();
                }
                let ack = match answer {
                    Ok(()) if lose => Ack::Unknown("fault switch: acknowledgement dropped".into()),
                    Ok(()) => Ack::Applied,
                    Err(PeerError::Status {
                        refusal: Some(refusal),
                        body,
                        ..
                    }) if refusal.deposes_master() => Ack::Deposed(body),
                    Err(PeerError::Status { body, .. }) => Ack::Refused(body),
                    Err(e @ (PeerError::Refused { .. } | PeerError::ConnectTimeout { .. })) => {
                        Ack::Refused(e.to_string())
                    }
                    Err(e) => Ack::Unknown(e.to_string()),
                };
                (peer, ack)
            }))
        })
        .collect();
    let total = peers.len();
    let mut answers = Vec::new();
    while let Some(done) = calls.next().await {
        let Ok(answer) = done else { continue };
        answers.push(answer);
        let applied = answers
            .iter()
            .filter(|(_, a)| matches!(a, Ack::Applied))
            .count();
        let failed = answers.len() - applied;
        if 1 + applied >= needed || 1 + total - failed < needed {
            break;
        }
    }
    let pending: Vec<ServiceId> = peers
        .iter()
        .filter(|p| !answers.iter().any(|(a, _)| a == *p))
        .cloned()
        .collect();
    answers.extend(pending.into_iter().map(|p| (p, Ack::Pending)));
    (answers, calls)
}

/// The slave's answer to a replicated write: applied, or refused with a
/// typed reason (the master acts on it) and a message (for people).
#[derive(Debug)]
pub enum Applied {
    Ok,
    Refused {
        code: u16,
        refusal: Refusal,
        message: String,
    },
}

impl Applied {
    fn refused(code: u16, refusal: Refusal, message: impl Into<String>) -> Self {
        Applied::Refused {
            code,
            refusal,
            message: message.into(),
        }
    }
}

/// The slave's side of a replicated write.
pub async fn apply_replicated(svc: &Arc<Service>, req: ReplicateRequest) -> Applied {
    let base = &req.base;
    // A write right after an election may reach us before our side settled
    // (still checking the master): wait for it, briefly, rather than refuse.
    let settle = (svc.cfg.replicate_timeout / 2).min(Duration::from_secs(2));
    let snap = match svc.snapshot(base) {
        Some(s) if s.fsm.state().is_final() => s,
        _ => match svc.wait_final(base, settle).await {
            Ok(s) => s,
            Err(WaitError::Timeout(s)) => s,
            Err(WaitError::Exiting) => {
                return Applied::refused(503, Refusal::Exiting, "service exiting")
            }
        },
    };
    if let Err(refusal) = verdict(svc, &snap, &req) {
        return refusal;
    }
    let lock = svc.writes.lock(base);
    let _guard = lock.lock().await;
    // Re-check under the lock: our role may have changed, or we may have
    // vouched for a new candidate, while this write waited.
    let Some(now) = svc.snapshot(base) else {
        return Applied::refused(
            503,
            Refusal::NotSettled,
            format!("election of {base} not settled here (state NONE)"),
        );
    };
    if let Err(refusal) = verdict(svc, &now, &req) {
        return refusal;
    }
    let (svc2, key) = (svc.clone(), svc.key(base));
    let result = tokio::task::spawn_blocking(move || {
        svc2.store
            .apply_replica(&key, &req.ops, &req.prev, &req.next)
    })
    .await;
    match result {
        Ok(Ok(_)) => Applied::Ok,
        Ok(Err(e @ (StoreError::OutOfOrder { .. } | StoreError::Missing))) => {
            // Behind (or without a copy): fetch the master's copy.
            svc.request_sync(base);
            Applied::refused(
                409,
                Refusal::Behind,
                format!("{e}; resyncing from the master"),
            )
        }
        Ok(Err(StoreError::Restoring)) => {
            Applied::refused(503, Refusal::Restoring, "base is being restored")
        }
        Ok(Err(StoreError::Loading)) => {
            Applied::refused(503, Refusal::Loading, "base is still loading")
        }
        Ok(Err(e)) => Applied::refused(
            500,
            Refusal::StoreFailed,
            format!("replica write failed: {e}"),
        ),
        Err(e) => Applied::refused(500, Refusal::StoreFailed, e.to_string()),
    }
}

/// The slave's checks before applying a replicated write: Err is the answer.
fn verdict(svc: &Arc<Service>, snap: &Snapshot, req: &ReplicateRequest) -> Result<(), Applied> {
    let base = &req.base;
    let fsm = &snap.fsm;
    let verdict = replica_verdict(
        fsm.state(),
        fsm.master(),
        fsm.master_id(),
        svc.fence(base),
        &req.from,
        req.epoch,
    );
    let Some(refusal) = verdict.refusal() else {
        return Ok(());
    };
    let (code, message) = match verdict {
        ReplicaVerdict::Apply => return Ok(()),
        ReplicaVerdict::IsMaster => (
            473,
            format!(
                "IS_MASTER: {} is master of {base} (epoch {:?})",
                svc.me,
                fsm.local_id()
            ),
        ),
        ReplicaVerdict::NotFollowing { master, epoch } => (
            409,
            format!(
                "not following {} (epoch {}): following {} (epoch {epoch:?})",
                req.from,
                req.epoch,
                master.as_ref().map_or("nobody", ServiceId::as_str)
            ),
        ),
        ReplicaVerdict::Fenced { fence } => (
            409,
            format!(
                "not following {} (epoch {}): a candidate with node {fence} was answered since",
                req.from, req.epoch
            ),
        ),
        ReplicaVerdict::NotSettled(state) => {
            if matches!(state, State::None | State::Failed) {
                // A live master replicates to us: we should be its slave.
                svc.poke(base, false);
            }
            (
                503,
                format!("election of {base} not settled here (state {state})"),
            )
        }
    };
    Err(Applied::refused(code, refusal, message))
}

/// Reads, on master or slave (`master_only`: slaves redirect).
pub async fn read(
    svc: &Arc<Service>,
    base: &BaseName,
    master_only: bool,
    budget: Duration,
) -> Result<(crate::storage::Properties, &'static str), WriteError> {
    let snap = settled(svc, base, budget).await?;
    let role = match snap.fsm.master() {
        Some(m) if master_only => return Err(WriteError::Redirect(m.clone())),
        Some(_) => "SLAVE",
        None => "MASTER",
    };
    let (svc2, key) = (svc.clone(), svc.key(base));
    let props = tokio::task::spawn_blocking(move || svc2.store.properties(&key))
        .await
        .map_err(|e| WriteError::Internal(e.to_string()))?
        .map_err(|e| WriteError::Internal(format!("read failed: {e}")))?;
    Ok((props, role))
}

/// Clears emergency read-only mode, but only once every replica of every
/// affected base reports the same version as this service.
pub async fn clear_readonly(svc: &Arc<Service>) -> Result<Vec<BaseName>, String> {
    let divergent = svc.writes.readonly();
    let mut cleared = Vec::new();
    for d in &divergent {
        let peers = match svc.manages(&d.base, true).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                cleared.push(d.base.clone());
                continue;
            }
            Err(e) => return Err(format!("{}: directory unavailable: {e}", d.base)),
        };
        let (svc2, key) = (svc.clone(), svc.key(&d.base));
        let local = tokio::task::spawn_blocking(move || svc2.store.version(&key))
            .await
            .map_err(|e| e.to_string())?;
        for peer in peers.iter().filter(|p| **p != svc.me) {
            let req = crate::rpc::GetversRequest {
                base: d.base.clone(),
                service_type: svc.stype.clone(),
                from: svc.me.clone(),
                master_seq: None,
                candidate_seq: None,
            };
            match svc.rpc.getvers(peer, &req, svc.cfg.getvers_timeout).await {
                Ok(crate::rpc::GetversReply::Version { version }) if version == local => {}
                Ok(crate::rpc::GetversReply::Version { version }) => {
                    return Err(format!(
                        "{}: {peer} is at {version:?}, this service at {local:?}: resync it first (openio election sync)",
                        d.base
                    ))
                }
                Ok(other) => return Err(format!("{}: {peer} answered {other:?}", d.base)),
                Err(e) => return Err(format!("{}: {e}", d.base)),
            }
        }
        cleared.push(d.base.clone());
    }
    svc.writes.clear_readonly(&cleared);
    Ok(cleared)
}

/// Deletes a container: on the master (ordered with writes), removes the
/// directory entry, so that no replica can ever be elected again (even one
/// that missed the deletion), then asks every peer to drop its replica.
pub async fn delete(
    svc: &Arc<Service>,
    base: &BaseName,
    budget: Duration,
) -> Result<Vec<(ServiceId, String)>, WriteError> {
    let entry = match svc.directory.lookup(&svc.stype, base).await {
        Ok(Some(e)) if e.peers.contains(&svc.me) => e,
        Ok(_) => return Err(not_managed(svc, base)),
        Err(e) => {
            return Err(WriteError::ElectionFailed(
                Failure::DirectoryUnavailable,
                format!("directory unavailable: {e}"),
            ))
        }
    };
    let snap = wait_settled(svc, base, budget).await?;
    if let Some(master) = snap.fsm.master() {
        return Err(WriteError::Redirect(master.clone()));
    }
    let lock = svc.writes.lock(base);
    let _guard = lock.lock().await;
    svc.directory
        .remove(&svc.stype, &entry)
        .await
        .map_err(|e| WriteError::Internal(format!("directory: {e}")))?;
    svc.forget_peers(base);
    let calls = entry.peers.iter().map(|peer| {
        let svc = svc.clone();
        let req = crate::rpc::UseRequest {
            base: base.clone(),
            service_type: svc.stype.clone(),
            from: svc.me.clone(),
            master: false,
        };
        async move {
            let outcome = match svc
                .rpc
                .drop_replica(peer, &req, svc.cfg.replicate_timeout)
                .await
            {
                Ok(()) => "dropped".to_string(),
                Err(e) => format!("not dropped ({e}); it can no longer be elected"),
            };
            (peer.clone(), outcome)
        }
    });
    Ok(futures::future::join_all(calls).await)
}

/// A peer's side of a deletion: only once the directory no longer lists the
/// base, leave its election and remove the local replica.
pub async fn drop_replica(svc: &Arc<Service>, base: &BaseName) -> (u16, String) {
    svc.forget_peers(base);
    match svc.manages(base, true).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return (
                409,
                format!("{base} is still in the directory: not dropped"),
            )
        }
        Err(e) => return (503, format!("directory unavailable: {e}")),
    }
    svc.leave(base);
    let (svc2, key) = (svc.clone(), svc.key(base));
    match tokio::task::spawn_blocking(move || svc2.store.remove(&key)).await {
        Ok(Ok(_)) => {
            tracing::info!(base = %base, "replica dropped (container deleted)");
            (200, "OK".into())
        }
        Ok(Err(e)) => (500, format!("cannot remove the replica: {e}")),
        Err(e) => (500, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_stable_reason() {
        let table = [
            (
                WriteError::Redirect(ServiceId::new("127.0.0.1:1").expect("id")),
                "not_master",
                303,
            ),
            (
                WriteError::ElectionFailed(Failure::Timeout, "m".into()),
                "election_timeout",
                503,
            ),
            (
                WriteError::ElectionFailed(Failure::DirectoryUnavailable, "m".into()),
                "directory_unavailable",
                503,
            ),
            (
                WriteError::ElectionFailed(Failure::StatusChanged, "m".into()),
                "status_changed",
                503,
            ),
            (
                WriteError::ElectionFailed(Failure::Superseded, "m".into()),
                "superseded",
                503,
            ),
            (WriteError::Exiting, "exiting", 503),
            (WriteError::NotManaged("m".into()), "not_managed", 431),
            (WriteError::ReadOnly, "read_only", 503),
            (WriteError::NoQuorum("m".into()), "no_quorum", 503),
            (WriteError::StopWrites("m".into()), "stop_writes", 503),
            (WriteError::Invalid("m".into()), "invalid", 400),
            (WriteError::Internal("m".into()), "internal", 500),
        ];
        for (error, reason, code) in table {
            assert_eq!(
                serde_json::to_value(error.reason()).expect("json"),
                reason,
                "{error:?}"
            );
            assert_eq!(error.code_and_message().0, code, "{error:?}");
        }
    }
}
