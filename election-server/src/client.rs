//! What a client's request on a base does, around the engine: validate it,
//! check that we host the base, wait (bounded) for its election to be
//! final, hand it over, and word the engine's verdict for people (an OpenIO
//! code, a message) and for scripts (a stable `reason`).
//!
//! The decisions are the engine's (`election_engine`, `engine/writes.rs`):
//! who may write, batching, quorum, commit and rollback, fencing, resync and
//! emergency read-only mode. Reads, deletions and the operator's clearing of
//! read-only mode gather what they need here, then act.

use crate::http::ApiError;
use crate::service::{Service, Settled, Snapshot, WaitError};
use crate::storage::{BaseInfo, Vector, WriteOp};
use election_core::names::ContainerId;
use election_core::names::{BaseName, Seq, ServiceId};
use election_core::State;
use election_engine::WriteRefusal;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const READONLY_MESSAGE: &str =
    "READONLY Server is in emergency read-only mode due to a critical propagation failure.";

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
    /// Too many writes wait for this base already.
    Overloaded(usize),
    /// Too many writes wait on this service, over all its bases.
    ServiceOverloaded(usize),
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
    Overloaded,
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
            WriteError::Overloaded(_) | WriteError::ServiceOverloaded(_) => Reason::Overloaded,
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
            WriteError::Overloaded(queued) => (
                503,
                format!("overloaded: {queued} writes already wait for this base; retry later"),
            ),
            WriteError::ServiceOverloaded(queued) => (
                503,
                format!("overloaded: {queued} writes already wait on this service; retry later"),
            ),
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
    hosted(svc, base).await?;
    wait_settled(svc, base, budget).await
}

/// The peers of `base`, when we are one of them.
async fn hosted(svc: &Arc<Service>, base: &BaseName) -> Result<Arc<Vec<ServiceId>>, WriteError> {
    match svc.manages(base, false).await {
        Ok(Some(peers)) => Ok(peers),
        Ok(None) => Err(not_managed(svc, base)),
        Err(e) => Err(WriteError::ElectionFailed(
            Failure::DirectoryUnavailable,
            format!("directory unavailable: {e}"),
        )),
    }
}

/// Waits (bounded) for a final election state; a timeout is the seed's
/// `Election failed [<base>][<type>]`.
async fn wait_settled(
    svc: &Arc<Service>,
    base: &BaseName,
    budget: Duration,
) -> Result<Arc<Snapshot>, WriteError> {
    svc.wait_final(base, budget)
        .await
        .map_err(|e| wait_failed(svc, base, e))
}

fn wait_failed(svc: &Service, base: &BaseName, e: WaitError) -> WriteError {
    match e {
        WaitError::Exiting => WriteError::Exiting,
        WaitError::Timeout(s) => WriteError::ElectionFailed(Failure::Timeout, format!(
            "Election failed [{base}][{}]: (503) TIMEOUT! (waiting for election status) step={}: {}",
            svc.stype,
            s.fsm.state(),
            s.fsm.reason(svc.now())
        )),
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
    let peers = hosted(svc, base).await?;
    match svc.wait_final_or_announced(base, budget, &peers).await {
        Ok(Settled::Final(_)) => {}
        Ok(Settled::Announced(master)) => return Err(WriteError::Redirect(master)),
        Err(e) => return Err(wait_failed(svc, base, e)),
    }
    match svc.write(base, ops).await {
        Ok(written) => Ok((written.next, written.epoch)),
        Err(refusal) => Err(worded(svc, base, refusal)),
    }
}

/// The engine's refusal of a write, worded.
fn worded(svc: &Service, base: &BaseName, refusal: WriteRefusal) -> WriteError {
    let stype = &svc.stype;
    match refusal {
        WriteRefusal::Redirect(master) => WriteError::Redirect(master),
        WriteRefusal::StatusChanged {
            state,
            session_live,
        } => WriteError::ElectionFailed(
            Failure::StatusChanged,
            format!(
                "Election failed [{base}][{stype}]: election status changed during the write (now {state}, session live: {session_live})"
            ),
        ),
        WriteRefusal::Superseded { epoch, fence } => WriteError::ElectionFailed(
            Failure::Superseded,
            format!(
                "Election failed [{base}][{stype}]: this master (node {epoch}) was superseded by a candidate with node {fence}"
            ),
        ),
        WriteRefusal::ReadOnly => WriteError::ReadOnly,
        WriteRefusal::StopWrites => WriteError::StopWrites(
            svc.guard
                .stopped()
                .unwrap_or_else(|| "stop-writes".to_string()),
        ),
        WriteRefusal::Exiting => WriteError::Exiting,
        WriteRefusal::Overloaded { queued } => WriteError::Overloaded(queued),
        WriteRefusal::ServiceOverloaded { queued } => WriteError::ServiceOverloaded(queued),
        WriteRefusal::NoQuorum {
            acked,
            group,
            needed,
            detail,
        } => WriteError::NoQuorum(format!(
            "no quorum: {acked} of {group} replicas acknowledged, {needed} needed; the write was rolled back ({detail})"
        )),
        WriteRefusal::Failed(why) => WriteError::Internal(why),
    }
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
    if role == "MASTER" {
        // A read labelled MASTER promises the latest acknowledged write:
        // only while no other service can lead (issue 14, H4).
        svc.confirm_session(snap.bound_epoch).await.map_err(|why| {
            WriteError::ElectionFailed(
                Failure::StatusChanged,
                format!("master of {base}, but its ZooKeeper session is unconfirmed: {why}"),
            )
        })?;
    }
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
    let divergent = svc.readonly();
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
        let local = svc.local_version(&svc.key(&d.base)).await?;
        for peer in peers.iter().filter(|p| **p != svc.me) {
            let req = crate::rpc::GetversRequest {
                base: d.base.clone(),
                service_type: svc.stype.clone(),
                from: svc.me.clone(),
                master_seq: None,
                candidate_seq: None,
                version: None,
                incarnation: None,
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
    svc.clear_readonly(cleared.clone());
    Ok(cleared)
}

/// Deletes a container: on the master, removes the directory entry, so that
/// no replica can ever be elected again (even one that missed the deletion),
/// then asks every peer to drop its replica. A write still in flight may
/// commit meanwhile: the two overlap, so it is ordered before the deletion,
/// whose replicas drop it with the rest.
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
    svc.directory
        .remove(&svc.stype, &entry)
        .await
        .map_err(|e| WriteError::Internal(format!("directory: {e}")))?;
    svc.forget_peers(base);
    // Its election goes with it: whoever misses the drop below steps down
    // when its node is deleted, and finds the base gone when it reads the
    // directory again.
    match svc.delete_election_nodes(base).await {
        Ok(n) => tracing::info!(base = %base, "deleted: {n} election node(s) removed"),
        Err(e) => tracing::warn!(
            base = %base,
            "deleted from the directory, but its election nodes were not all removed: {e}"
        ),
    }
    let calls = entry.peers.iter().map(|peer| {
        let svc = svc.clone();
        let req = crate::rpc::UseRequest {
            base: base.clone(),
            service_type: svc.stype.clone(),
            from: svc.me.clone(),
            master: false,
            epoch: None,
        };
        async move {
            let outcome = match svc
                .rpc
                .notify(peer, "/v1/peer/drop", &req, svc.cfg.replicate_timeout)
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

/// The operator's way out of diverged replicas (docs/OPERATIONS.md,
/// "Diverged replicas"): this service's copy of `base` is moved into
/// `<data>/set-aside/`, and the election starts again without it, so that
/// this service copies the base from the replica that leads. Refused on the
/// master. Returns the path of the copy set aside.
pub async fn set_aside(svc: &Arc<Service>, base: &BaseName) -> Result<PathBuf, (u16, String)> {
    let refuse_master = || {
        (
            409,
            format!(
                "{base}: this service is MASTER: its copy is the one the others follow; \
                 set aside the copies of the other replicas instead"
            ),
        )
    };
    if svc.state(base) == Some(State::Master) {
        return Err(refuse_master());
    }
    // Never the last copy: another replica must report one.
    let peers = match svc.manages(base, true).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err((404, format!("{base} is not managed by this service"))),
        Err(e) => return Err((503, format!("directory unavailable: {e}"))),
    };
    let mut another_copy = false;
    for peer in peers.iter().filter(|p| **p != svc.me) {
        let req = crate::rpc::GetversRequest {
            base: base.clone(),
            service_type: svc.stype.clone(),
            from: svc.me.clone(),
            master_seq: None,
            candidate_seq: None,
            version: None,
            incarnation: None,
        };
        if let Ok(crate::rpc::GetversReply::Version {
            version: election_core::version::ReplicaVersion::Known { .. },
        }) = svc.rpc.getvers(peer, &req, svc.cfg.getvers_timeout).await
        {
            another_copy = true;
            break;
        }
    }
    if !another_copy {
        return Err((
            409,
            format!(
                "{base}: no other replica reports a copy: setting this one aside could lose \
                 the base; nothing was moved"
            ),
        ));
    }
    let key = svc.key(base);
    // From here our version reads as unknown: no candidacy of ours can be
    // promoted with the copy we are about to remove (the rookie rule).
    let ticket = svc.store.begin_restore(&key);
    if svc.state(base) == Some(State::Master) {
        svc.store.abort_restore(&key, ticket);
        return Err(refuse_master());
    }
    svc.leave(base);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !matches!(svc.state(base), None | Some(State::None | State::Failed)) {
        if std::time::Instant::now() > deadline {
            svc.store.abort_restore(&key, ticket);
            svc.poke(base, true);
            return Err((
                503,
                format!(
                    "{base}: the election did not stop within 10 s: nothing was moved, try again"
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (svc2, k2) = (svc.clone(), key.clone());
    let moved = tokio::task::spawn_blocking(move || svc2.store.set_aside(&k2, ticket)).await;
    svc.poke(base, true);
    match moved {
        Ok(Ok(path)) => {
            tracing::warn!(base = %base, "replica set aside by an operator as {}", path.display());
            Ok(path)
        }
        Ok(Err(crate::storage::StoreError::Missing)) => Err((
            404,
            format!("{base}: this service holds no copy: nothing to set aside"),
        )),
        Ok(Err(e)) => {
            svc.store.abort_restore(&key, ticket);
            Err((500, format!("{base}: cannot set the copy aside: {e}")))
        }
        Err(e) => {
            svc.store.abort_restore(&key, ticket);
            Err((500, e.to_string()))
        }
    }
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

/// A container just created (or found existing) and its replicas.
pub struct Created {
    pub created: bool,
    pub cid: ContainerId,
    pub base: BaseName,
    pub peers: Vec<election_core::names::ServiceId>,
    /// Per peer: "OK", or why its replica could not be created.
    pub replicas: serde_json::Map<String, Value>,
}

/// Records the container in the directory (the peers are chosen once, here)
/// and creates every replica; an existing container gets its missing
/// replicas created again.
pub async fn create_base(
    svc: &Arc<Service>,
    account: &str,
    reference: &str,
    replicas: usize,
) -> Result<Created, ApiError> {
    if account.is_empty() || reference.is_empty() || account.len() > 256 || reference.len() > 1024 {
        return Err(ApiError::bad_request(
            "account and reference must be 1-256 and 1-1024 bytes",
        ));
    }
    if !(2..=9).contains(&replicas) {
        return Err(ApiError::bad_request("replicas must be between 2 and 9"));
    }
    let cid = ContainerId::compute(account, reference);
    let base = cid.meta2_base();
    let (entry, created) = svc
        .directory
        .create(&svc.stype, &base, account, reference, replicas)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot create container: {e}")))?;
    let info = BaseInfo {
        base: base.clone(),
        service_type: svc.stype.clone(),
        account: account.to_string(),
        reference: reference.to_string(),
        peers: entry.peers.clone(),
        ctime_ms: entry.ctime_ms,
        incarnation: entry.incarnation,
    };
    let calls = entry.peers.iter().map(|p| {
        let (svc, info) = (svc.clone(), info.clone());
        async move {
            (
                p.clone(),
                svc.rpc
                    .create_replica(p, &info, Duration::from_secs(5))
                    .await,
            )
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut replicas_out = serde_json::Map::new();
    for (peer, r) in results {
        replicas_out.insert(
            peer.to_string(),
            json!(r
                .map(|_| "OK".to_string())
                .unwrap_or_else(|e| e.to_string())),
        );
    }
    Ok(Created {
        created,
        cid,
        base,
        peers: entry.peers,
        replicas: replicas_out,
    })
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
            (WriteError::Overloaded(1024), "overloaded", 503),
            (WriteError::ServiceOverloaded(8192), "overloaded", 503),
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
