//! The HTTP API: per-base admin routes (ping, status, debug, leave, sync),
//! service routes (info, elections), container creation, and the peer RPC
//! handlers. Every route is documented in docs/API.md.
//!
//! Election routes answer a JSON body `{"status": <code>, "message": ...}`
//! whose `status` is the OpenIO per-peer code (200, 303, 301, 431, 500,
//! 503); the HTTP status is the same code, except 431 which travels as 404.

use crate::http::{less_margin, oio_timeout, ApiError};
use crate::rpc::{GetversReply, GetversRequest, LeftRequest, ReplicateRequest, UseRequest};
use crate::service::{session_live, Dumped, Service, Snapshot, WaitError};
use crate::storage::BaseInfo;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use election_core::names::{BaseName, ContainerId, Seq, ServiceId, ServiceType};
use election_core::peer::Refusal;
use election_engine::GetversRefusal;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

type Svc = State<Arc<Service>>;

pub fn router(svc: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/v1/ping", get(|| async { "OK" }))
        .route("/info", get(info))
        .route("/v1/elections", get(elections))
        .route("/v1/election/ping", post(ping))
        .route("/v1/election/status", post(status).get(status))
        .route("/v1/election/debug", post(debug).get(debug))
        .route("/v1/election/leave", post(leave))
        .route("/v1/election/sync", post(sync))
        .route("/v1/container/create", post(create_container))
        .route("/v1/container/show", get(show_container))
        .route("/v1/container/set", post(set_properties))
        .route("/v1/container/unset", post(unset_properties))
        .route("/v1/container/props", get(get_properties))
        .route("/v1/admin/readonly", get(readonly_status))
        .route("/v1/admin/readonly/clear", post(readonly_clear))
        .route("/v1/admin/set-aside", post(set_aside))
        .route("/v1/admin/fault", post(fault_switch))
        .route("/v1/peer/replicate", post(peer_replicate))
        .route("/v1/peer/replicates", post(peer_replicates))
        .route("/v1/container/delete", post(delete_container))
        .route("/v1/peer/drop", post(peer_drop))
        .route("/v1/peer/resync", post(peer_resync))
        .route("/v1/peer/use", post(peer_use))
        .route("/v1/peer/uses", post(peer_uses))
        .route("/v1/peer/left", post(peer_left))
        .route("/v1/peer/getvers", post(peer_getvers))
        .route("/v1/peer/getvers_many", post(peer_getvers_many))
        .route("/v1/peer/create", post(peer_create))
        .route("/v1/peer/dump", get(peer_dump))
        .merge(crate::oioproxy::routes())
        .route("/metrics", get(metrics))
        .route("/v1/admin/balance", post(balance))
        .route_layer(axum::middleware::from_fn_with_state(
            svc.clone(),
            crate::access::around,
        ))
        .fallback(crate::oioproxy::no_handler)
        .layer(DefaultBodyLimit::max(svc.cfg.max_body_bytes))
        .with_state(svc)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        reply(self.code, &self.message, json!({}))
    }
}

/// A reply carrying an OpenIO code; `extra` fields are merged into the body.
fn reply(code: u16, message: &str, extra: Value) -> Response {
    let mut body = json!({"status": code, "message": message});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let http = match code {
        431 => StatusCode::NOT_FOUND,
        c => StatusCode::from_u16(c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let mut resp = (http, Json(body)).into_response();
    if code == 303 {
        if let Ok(v) = axum::http::HeaderValue::from_str(message) {
            resp.headers_mut().insert(axum::http::header::LOCATION, v);
        }
    }
    if code == 503 {
        // Overloaded, exiting, stop-writes, an election under way: all
        // worth another try soon.
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    resp
}

/// How a request names a base: `base`, or `cid`, or `acct` + `ref`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct BaseQuery {
    #[serde(rename = "type")]
    service_type: Option<String>,
    base: Option<String>,
    cid: Option<String>,
    acct: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// Seconds the caller is willing to wait.
    timeout: Option<f64>,
    replicas: Option<usize>,
    /// Reads: only the master may answer (slaves redirect).
    master_only: Option<bool>,
}

fn check_type(svc: &Service, t: Option<&str>) -> Result<(), ApiError> {
    match t {
        None => Ok(()),
        Some(t) => {
            let t = ServiceType::new(t).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if t == svc.stype {
                Ok(())
            } else {
                Err(ApiError::bad_request(format!(
                    "this service serves type {}, not {t}",
                    svc.stype
                )))
            }
        }
    }
}

fn resolve(svc: &Service, q: &BaseQuery) -> Result<BaseName, ApiError> {
    check_type(svc, q.service_type.as_deref())?;
    let bad = |e: election_core::names::NameError| ApiError::bad_request(e.to_string());
    match (&q.base, &q.cid, &q.acct, &q.reference) {
        (Some(b), None, None, None) => BaseName::parse(b).map_err(bad),
        (None, Some(c), None, None) => Ok(ContainerId::parse(c).map_err(bad)?.meta2_base()),
        (None, None, Some(a), Some(r)) if !a.is_empty() && !r.is_empty() => Ok(ContainerId::compute(a, r).meta2_base()),
        _ => Err(ApiError::bad_request(
            "name the base with exactly one of: base=<name>, cid=<64 hex>, or acct=<account>&ref=<reference>",
        )),
    }
}

/// How long a waiting route may wait: the caller's budget (`x-oio-timeout`,
/// or `timeout` in seconds) less the margin, capped by `wait_delay`.
fn wait_budget(svc: &Service, q: &BaseQuery, headers: &HeaderMap) -> Duration {
    let from_query = q
        .timeout
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(Duration::from_secs_f64);
    match oio_timeout(headers).or(from_query) {
        Some(budget) => less_margin(budget).min(svc.cfg.wait_delay),
        None => svc.cfg.wait_delay,
    }
}

async fn info(
    State(svc): Svc,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let counts = svc.counts();
    let total: usize = counts.values().sum();
    let view = svc.zk.view();
    if q.get("format").map(String::as_str) == Some("text") {
        let mut text = String::from("# server\n");
        text.push_str(&format!(
            "service_id:{}\nservice_type:{}\n",
            svc.me, svc.stype
        ));
        text.push_str(&format!(
            "uptime_in_seconds:{}\nexiting:{}\n",
            svc.uptime().as_secs(),
            u8::from(svc.is_exiting())
        ));
        text.push_str(&format!(
            "zookeeper_state:{}\nzookeeper_session:0x{:x}\n",
            view.link.as_str(),
            view.session_id
        ));
        let ro = svc.readonly();
        text.push_str(&format!(
            "emergency_read_only_mode:{}\n",
            u8::from(!ro.is_empty())
        ));
        for d in &ro {
            text.push_str(&format!(
                "emergency_read_only_base:{} {}\n",
                d.base, d.detail
            ));
        }
        let stop = svc.guard.stopped();
        text.push_str(&format!("stop_writes:{}\n", u8::from(stop.is_some())));
        if let Some(reason) = &stop {
            text.push_str(&format!("stop_writes_reason:{reason}\n"));
        }
        text.push_str("# elections\n");
        text.push_str(&format!("elections_total:{total}\n"));
        for (k, v) in &counts {
            text.push_str(&format!("elections_{k}:{v}\n"));
        }
        return (StatusCode::OK, text).into_response();
    }
    let mut elections = json!({"total": total});
    for (k, v) in counts {
        elections[k] = json!(v);
    }
    Json(json!({
        "service": {"id": svc.me, "type": svc.stype, "ns": svc.layout.namespace(),
                    "uptime_s": svc.uptime().as_secs(), "exiting": svc.is_exiting(),
                    "emergency_read_only_mode": u8::from(svc.is_read_only()),
                    "stop_writes": u8::from(svc.guard.stopped().is_some()),
                    "stop_writes_reason": svc.guard.stopped()},
        "elections": elections,
        "zookeeper": {"hosts": svc.zk.hosts(), "state": view.link.as_str(), "session": format!("0x{:x}", view.session_id),
                      "epoch": view.epoch, "session_timeout_ms": view.negotiated_timeout.as_millis() as u64,
                      "disconnect_grace_ms": svc.cfg.disconnect_grace.as_millis() as u64,
                      "reconnects": svc.zk.reconnects()},
    }))
    .into_response()
}

/// Elections listed per page of the streamed `/v1/elections`: the engine's
/// lock is held while one page is copied, never across the whole list.
const ELECTIONS_PAGE: usize = 1024;

/// Every election of this service, for `openio election report`: one
/// JSON document, streamed a page at a time, so that 100,000 elections
/// take bounded memory. The service's own state (read-only, stop-writes,
/// ZooKeeper) comes first; an election created or forgotten while the
/// list streams may be missed or listed twice.
async fn elections(State(svc): Svc) -> Response {
    let view = svc.zk.view();
    let readonly: Vec<BaseName> = svc.readonly().into_iter().map(|d| d.base).collect();
    let mut head = serde_json::to_vec(&json!({
        "id": svc.me,
        "type": svc.stype,
        "readonly": readonly,
        "stop_writes": svc.guard.stopped(),
        "zk_state": view.link.as_str(),
        "zk_session": format!("0x{:x}", view.session_id),
    }))
    .expect("json");
    head.pop(); // the closing brace: the list follows
    head.extend_from_slice(b",\"elections\":[");
    let first = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(head) });
    let pages = futures::stream::unfold(Some((svc, 0usize, false)), |cursor| async move {
        let (svc, from, mut listed) = cursor?;
        let (chunk, next) = elections_page(&svc, from, &mut listed);
        Some((Ok(chunk), next.map(|n| (svc, n, listed))))
    });
    let body = axum::body::Body::from_stream(futures::StreamExt::chain(first, pages));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// One page of `/v1/elections` from slot `from` (its JSON, a comma before
/// every entry but the document's first: `listed` says whether one was
/// written), and where the next one starts; the last page closes the
/// document.
fn elections_page(svc: &Service, from: usize, listed: &mut bool) -> (Vec<u8>, Option<usize>) {
    let now = svc.now();
    let mut next = None;
    let rows: Vec<_> = svc.with_elections_from(from, |all| {
        let mut rows = Vec::with_capacity(ELECTIONS_PAGE);
        for (i, s) in all {
            if rows.len() == ELECTIONS_PAGE {
                next = Some(i);
                break;
            }
            let fsm = &s.fsm;
            let state = fsm.state();
            rows.push((
                s.base.clone(),
                state,
                fsm.master().cloned(),
                (fsm.local_id(), fsm.master_id()),
                s.bound_epoch,
                now.mono_ms.saturating_sub(fsm.entered_mono()),
                (!state.is_final() && state != election_core::State::None).then(|| fsm.reason(now)),
            ));
        }
        rows
    });
    let mut out = Vec::with_capacity(rows.len() * 200 + 2);
    for (base, state, master, (local_id, master_id), epoch, since_ms, reason) in rows {
        if std::mem::replace(listed, true) {
            out.push(b',');
        }
        let entry = json!({
            "base": base, "state": state.as_str(), "master": master,
            "local_id": local_id, "master_id": master_id,
            "epoch": epoch, "session_live": session_live(svc, epoch),
            "since_ms": since_ms, "reason": reason,
        });
        serde_json::to_writer(&mut out, &entry).expect("json");
    }
    if next.is_none() {
        out.extend_from_slice(b"]}");
    }
    (out, next)
}

async fn ping(State(svc): Svc, Query(q): Query<BaseQuery>) -> Result<Response, ApiError> {
    let base = resolve(&svc, &q)?;
    if svc.is_exiting() {
        return Ok(reply(503, "service exiting", json!({})));
    }
    svc.poke(&base, true);
    Ok(reply(200, "OK", json!({})))
}

fn step(snap: &Snapshot) -> String {
    let s = snap.fsm.state();
    let idx = election_core::State::ALL
        .iter()
        .position(|x| *x == s)
        .unwrap_or(0);
    format!("{idx}/{s}")
}

/// What `status` adds to its code, for `openio election status --long`.
async fn status_extra(svc: &Arc<Service>, snap: &Snapshot) -> Value {
    let now = svc.now();
    let view = svc.zk.view();
    let version = svc.local_version(&snap.key).await.ok();
    json!({
        "state": snap.fsm.state().as_str(),
        "master": snap.fsm.master(),
        "local_id": snap.fsm.local_id(),
        "epoch": snap.fsm.master_id(),
        "reason": snap.fsm.reason(now),
        "since_ms": now.mono_ms.saturating_sub(snap.fsm.entered_mono()),
        "version": version,
        "zk_session": format!("0x{:x}", view.session_id),
        "zk_state": view.link.as_str(),
        "zk_session_live": session_live(svc, snap.bound_epoch),
    })
}

/// Checks that we are a peer of `base` (431 otherwise).
async fn ensure_managed(svc: &Arc<Service>, base: &BaseName) -> Result<(), ApiError> {
    ensure_managed_as(svc, base, false).await
}

/// `ensure_managed`, reading the directory again when `decache`.
async fn ensure_managed_as(
    svc: &Arc<Service>,
    base: &BaseName,
    decache: bool,
) -> Result<(), ApiError> {
    match svc.manages(base, decache).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ApiError {
            code: 431,
            message: format!("Base not managed: {base} is not hosted by {}", svc.me),
        }),
        Err(e) => Err(ApiError::unavailable(format!("directory unavailable: {e}"))),
    }
}

async fn election_failed(svc: &Arc<Service>, base: &BaseName, err: WaitError) -> Response {
    match err {
        WaitError::Exiting => reply(503, "service exiting", json!({})),
        WaitError::Timeout(snap) => {
            let msg = format!(
                "Election failed for {base}.{}: (503) TIMEOUT! (waiting for election status) step={}: {}",
                svc.stype,
                step(&snap),
                snap.fsm.reason(svc.now())
            );
            reply(500, &msg, status_extra(svc, &snap).await)
        }
    }
}

/// The common part of `status` and `sync`: resolve, check we host the base,
/// wait (bounded) for a final state. `Err` is the answer to give at once.
async fn wait_for_role(
    svc: &Arc<Service>,
    q: &BaseQuery,
    headers: &HeaderMap,
) -> Result<(BaseName, Result<Arc<Snapshot>, WaitError>), Response> {
    let base = resolve(svc, q).map_err(IntoResponse::into_response)?;
    if svc.is_exiting() {
        return Err(reply(503, "service exiting", json!({})));
    }
    ensure_managed(svc, &base)
        .await
        .map_err(IntoResponse::into_response)?;
    let budget = wait_budget(svc, q, headers);
    let outcome = svc.wait_final(&base, budget).await;
    Ok((base, outcome))
}

async fn status(State(svc): Svc, Query(q): Query<BaseQuery>, headers: HeaderMap) -> Response {
    let (base, outcome) = match wait_for_role(&svc, &q, &headers).await {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    match outcome {
        Ok(snap) => match snap.fsm.master() {
            None => reply(200, "OK", status_extra(&svc, &snap).await),
            Some(master) => reply(303, master.as_str(), status_extra(&svc, &snap).await),
        },
        Err(e) => election_failed(&svc, &base, e).await,
    }
}

async fn debug(State(svc): Svc, Query(q): Query<BaseQuery>) -> Result<Response, ApiError> {
    let base = resolve(&svc, &q)?;
    let body = match svc.snapshot(&base) {
        Some(snap) => debug_body(&svc, &snap),
        None => Value::Null,
    };
    Ok(reply(200, "OK", json!({"body": body})))
}

/// The seed's debug JSON, plus `extra` (session, epoch, reason).
pub fn debug_body(svc: &Service, snap: &Snapshot) -> Value {
    let now = svc.now();
    let fsm = &snap.fsm;
    let view = svc.zk.view();
    let master_url = fsm.master().map(|m| m.as_str().to_string());
    json!({
        "#": {
            "refcount": 1 + fsm.in_flight(),
            "pipefrom": u8::from(fsm.is_syncing()),
            "getvers": fsm.getvers_pending(),
            "seconds_since_last_access": now.mono_ms.saturating_sub(fsm.last_access()) / 1000,
            "seconds_since_last_status": now.mono_ms.saturating_sub(fsm.entered_mono()) / 1000,
        },
        "base": {
            "name": snap.base,
            "type": svc.stype,
            "zk": format!("{}{}", svc.zk.chroot(), svc.layout.election_prefix(&svc.stype, &snap.key)),
            "zk_server": svc.zk.hosts(),
        },
        "local": {"id": fsm.local_id(), "url": svc.me, "state": fsm.state().as_str()},
        "master": {"id": fsm.master_id(), "url": master_url},
        "peers": fsm.peers(),
        "log": fsm.log().rendered(),
        "extra": {
            "reason": fsm.reason(now),
            "last_error": fsm.last_error(),
            "fencing_epoch": fsm.master_id(),
            "generation": fsm.generation(),
            "zk_session": format!("0x{:x}", view.session_id),
            "zk_session_state": view.link.as_str(),
            "zk_session_epoch": snap.bound_epoch,
            "zk_session_live": session_live(svc, snap.bound_epoch),
            "sync_requested": fsm.sync_requested(),
            "exiting": fsm.is_exiting(),
        },
    })
}

async fn leave(State(svc): Svc, Query(q): Query<BaseQuery>) -> Result<Response, ApiError> {
    let base = resolve(&svc, &q)?;
    svc.leave(&base);
    Ok(reply(200, "OK", json!({})))
}

async fn sync(State(svc): Svc, Query(q): Query<BaseQuery>, headers: HeaderMap) -> Response {
    let (base, outcome) = match wait_for_role(&svc, &q, &headers).await {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    match outcome {
        Ok(snap) if snap.fsm.master().is_none() => {
            reply(301, "not SLAVE", status_extra(&svc, &snap).await)
        }
        Ok(snap) => {
            svc.request_sync(&base);
            reply(
                200,
                "resync triggered",
                json!({"body": {"master": snap.fsm.master()}}),
            )
        }
        Err(e) => election_failed(&svc, &base, e).await,
    }
}

async fn create_container(
    State(svc): Svc,
    Query(q): Query<BaseQuery>,
) -> Result<Response, ApiError> {
    check_type(&svc, q.service_type.as_deref())?;
    let (Some(account), Some(reference)) = (q.acct.as_deref(), q.reference.as_deref()) else {
        return Err(ApiError::bad_request(
            "container creation needs acct=<account>&ref=<reference>",
        ));
    };
    let c = crate::client::create_base(&svc, account, reference, q.replicas.unwrap_or(3)).await?;
    let code = if c.created { 201 } else { 200 };
    Ok(reply(
        code,
        if c.created { "Created" } else { "Exists" },
        json!({"cid": c.cid, "base": c.base, "peers": c.peers, "replicas": c.replicas}),
    ))
}

async fn show_container(State(svc): Svc, Query(q): Query<BaseQuery>) -> Result<Response, ApiError> {
    let base = resolve(&svc, &q)?;
    match svc.directory.lookup(&svc.stype, &base).await {
        Ok(Some(entry)) => Ok(reply(200, "OK", json!({"entry": entry}))),
        Ok(None) => Err(ApiError {
            code: 431,
            message: format!("Base not managed: no directory entry for {base}"),
        }),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

// ---------------- peer RPC ----------------

async fn peer_use(State(svc): Svc, Json(req): Json<UseRequest>) -> Result<Response, ApiError> {
    check_type(&svc, Some(req.service_type.as_str()))?;
    if svc.is_exiting() {
        return Ok(reply(503, "service exiting", json!({})));
    }
    let claim = req.epoch.filter(|_| req.master);
    svc.use_received(&req.base, &req.from, claim);
    Ok(reply(200, "OK", json!({})))
}

/// Several USEs from one peer (`rpc::UsesRequest`), each handled as
/// `peer_use` handles one.
async fn peer_uses(
    State(svc): Svc,
    Json(req): Json<crate::rpc::UsesRequest>,
) -> Result<Response, ApiError> {
    check_type(&svc, Some(req.service_type.as_str()))?;
    if svc.is_exiting() {
        return Ok(reply(503, "service exiting", json!({})));
    }
    if req.uses.len() > crate::rpc::MAX_USES_PER_CALL {
        return Err(ApiError::bad_request(format!(
            "{} USEs in one call, at most {}",
            req.uses.len(),
            crate::rpc::MAX_USES_PER_CALL
        )));
    }
    for u in &req.uses {
        svc.use_received(&u.base, &req.from, u.master);
    }
    Ok(reply(200, "OK", json!({"taken": req.uses.len()})))
}

/// Our master's farewell: its final version, compared with ours by the
/// engine (`Input::MasterLeft`).
async fn peer_left(State(svc): Svc, Json(req): Json<LeftRequest>) -> Result<Response, ApiError> {
    check_type(&svc, Some(req.service_type.as_str()))?;
    let ours = svc
        .local_version(&svc.key(&req.base))
        .await
        .map_err(ApiError::unavailable)?;
    svc.master_left(&req.base, &req.from, req.epoch, req.version, ours);
    Ok(reply(200, "OK", json!({})))
}

async fn peer_getvers(
    State(svc): Svc,
    Json(req): Json<GetversRequest>,
) -> Result<Json<GetversReply>, ApiError> {
    answer_getvers(&svc, req).await.map(Json)
}

/// Several GETVERS from one peer (`rpc::GetversBatch`), each answered as
/// `peer_getvers` answers one, all at once.
async fn peer_getvers_many(
    State(svc): Svc,
    Json(batch): Json<crate::rpc::GetversBatch>,
) -> Result<Json<crate::rpc::GetversAnswers>, ApiError> {
    if batch.asks.len() > crate::rpc::MAX_GETVERS_PER_CALL {
        return Err(ApiError::bad_request(format!(
            "{} GETVERS in one call, at most {}",
            batch.asks.len(),
            crate::rpc::MAX_GETVERS_PER_CALL
        )));
    }
    let answers = batch.asks.into_iter().map(|req| answer_getvers(&svc, req));
    let answers = futures::future::join_all(answers)
        .await
        .into_iter()
        .map(|answer| match answer {
            Ok(reply) => crate::rpc::GetversAnswer {
                reply: Some(reply),
                error: None,
            },
            Err(e) => crate::rpc::GetversAnswer {
                reply: None,
                error: Some((e.code, e.message)),
            },
        })
        .collect();
    Ok(Json(crate::rpc::GetversAnswers { answers }))
}

async fn answer_getvers(
    svc: &Arc<crate::service::Service>,
    req: GetversRequest,
) -> Result<GetversReply, ApiError> {
    check_type(svc, Some(req.service_type.as_str()))?;
    // Like OpenIO's DB_VERS, asking our version starts our side of the
    // election; when it names our node as master, we must own it. A
    // candidate's question fences older masters, once no write is
    // half-applied here: a replicated write is either in the version we
    // answer or refused. An asker naming another creation of the base than
    // our directory read is refused (the engine reads the directory again).
    if let Err(refused) = svc
        .getvers(
            &req.base,
            req.master_seq,
            req.candidate_seq,
            req.incarnation,
        )
        .await
    {
        let incarnation = match &refused {
            GetversRefusal::OtherCreation { ours } => Some(*ours),
            GetversRefusal::NotOwner(_) => None,
        };
        return Ok(GetversReply::Refused {
            reason: refused.to_string(),
            incarnation,
        });
    }
    let version = svc
        .local_version(&svc.key(&req.base))
        .await
        .map_err(ApiError::unavailable)?;
    if let (Some(seq), Some(theirs)) = (req.candidate_seq, req.version) {
        svc.candidate_versions(&req.base, &req.from, seq, theirs, version.clone());
    }
    Ok(GetversReply::Version { version })
}

async fn peer_create(State(svc): Svc, Json(info): Json<BaseInfo>) -> Result<Response, ApiError> {
    check_type(&svc, Some(info.service_type.as_str()))?;
    // Read afresh: a replica of an earlier creation of this base is set
    // aside, and the cache learns the new incarnation.
    ensure_managed_as(&svc, &info.base, true).await?;
    let key = svc.key(&info.base);
    let svc2 = svc.clone();
    let created = tokio::task::spawn_blocking(move || svc2.store.create(&key, &info))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(|e| ApiError {
            code: 500,
            message: format!("cannot create the replica: {e}"),
        })?;
    Ok(reply(200, "OK", json!({"created": created})))
}

#[derive(serde::Deserialize)]
struct DumpQuery {
    base: String,
    #[serde(rename = "type")]
    service_type: String,
}

async fn peer_dump(State(svc): Svc, Query(q): Query<DumpQuery>) -> Result<Response, ApiError> {
    check_type(&svc, Some(&q.service_type))?;
    let base = BaseName::parse(&q.base).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Only a master whose session still holds its node hands out copies (a
    // slave's copy, or a deposed master's, may be stale), and only once no
    // write is half-applied: a slave may already have applied, and
    // acknowledged, a write that then commits (found by the simulation,
    // seed 93).
    match svc.dump(&base).await {
        Dumped::Copy(Ok(bytes), floor) => Ok((
            StatusCode::OK,
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "application/octet-stream".to_string(),
                ),
                (
                    axum::http::HeaderName::from_static(crate::rpc::BATCH_FLOOR),
                    floor.to_string(),
                ),
            ],
            bytes,
        )
            .into_response()),
        Dumped::Copy(Err(e), _) => Err(ApiError {
            code: 500,
            message: format!("dump failed: {e}"),
        }),
        Dumped::Refused {
            state,
            session_live,
        } => Err(ApiError {
            code: 409,
            message: format!("not master of {base} (state {state}, session live: {session_live})"),
        }),
    }
}

// ---------------- writes and reads ----------------

/// `properties` are the user's; `system` holds `sys.*` settings (OpenIO's
/// container options), kept apart so that a user key never shadows one.
#[derive(serde::Deserialize)]
pub struct SetBody {
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub system: std::collections::BTreeMap<String, String>,
}

impl SetBody {
    pub fn ops(self) -> Vec<crate::storage::WriteOp> {
        use crate::storage::WriteOp;
        let user = self
            .properties
            .into_iter()
            .map(|(key, value)| WriteOp::Set { key, value });
        let system = self
            .system
            .into_iter()
            .map(|(key, value)| WriteOp::SetSystem { key, value });
        user.chain(system).collect()
    }
}

#[derive(serde::Deserialize)]
struct UnsetBody {
    keys: Vec<String>,
}

async fn do_write(
    svc: &Arc<Service>,
    q: &BaseQuery,
    headers: &HeaderMap,
    ops: Vec<crate::storage::WriteOp>,
) -> Response {
    let base = match resolve(svc, q) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let budget = wait_budget(svc, q, headers);
    match crate::client::write(svc, &base, ops, budget).await {
        // Who acknowledged it, under which fencing epoch (for audits).
        Ok((next, epoch)) => reply(
            200,
            "OK",
            json!({"version": crate::storage::render_vector(&next), "master": svc.me, "epoch": epoch}),
        ),
        Err(e) => {
            let (code, message) = e.code_and_message();
            reply(code, &message, json!({"reason": e.reason()}))
        }
    }
}

async fn set_properties(
    State(svc): Svc,
    Query(q): Query<BaseQuery>,
    headers: HeaderMap,
    body: Option<Json<SetBody>>,
) -> Response {
    let Some(Json(body)) = body else {
        return ApiError::bad_request(
            "expected a JSON body {\"properties\": {\"key\": \"value\"}, \"system\": {\"sys.key\": \"value\"}}",
        )
        .into_response();
    };
    do_write(&svc, &q, &headers, body.ops()).await
}

async fn unset_properties(
    State(svc): Svc,
    Query(q): Query<BaseQuery>,
    headers: HeaderMap,
    body: Option<Json<UnsetBody>>,
) -> Response {
    let Some(Json(body)) = body else {
        return ApiError::bad_request("expected a JSON body {\"keys\": [\"key\"]}").into_response();
    };
    let ops = body
        .keys
        .into_iter()
        .map(|key| crate::storage::WriteOp::Unset { key })
        .collect();
    do_write(&svc, &q, &headers, ops).await
}

async fn get_properties(
    State(svc): Svc,
    Query(q): Query<BaseQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let base = resolve(&svc, &q)?;
    let budget = wait_budget(&svc, &q, &headers);
    Ok(
        match crate::client::read(&svc, &base, q.master_only.unwrap_or(false), budget).await {
            Ok((props, role)) => reply(
                200,
                "OK",
                json!({"properties": props.user, "system": props.system,
                       "version": crate::storage::render_vector(&props.vector), "role": role}),
            ),
            Err(e) => {
                let (code, message) = e.code_and_message();
                reply(code, &message, json!({"reason": e.reason()}))
            }
        },
    )
}

async fn readonly_status(State(svc): Svc) -> Response {
    let ro = svc.readonly();
    let bases: Vec<Value> = ro
        .iter()
        .map(|d| json!({"base": d.base, "detail": d.detail, "since_ms": d.since_ms}))
        .collect();
    Json(json!({"emergency_read_only_mode": u8::from(!ro.is_empty()), "bases": bases}))
        .into_response()
}

/// Diverged replicas: move this service's copy of a base aside, so that
/// it copies the base again from the replica that leads.
async fn set_aside(State(svc): Svc, Query(q): Query<BaseQuery>) -> Result<Response, ApiError> {
    let base = resolve(&svc, &q)?;
    Ok(match crate::client::set_aside(&svc, &base).await {
        Ok(path) => reply(
            200,
            "OK",
            json!({"base": base, "body": {"set_aside": path.display().to_string()}}),
        ),
        Err((code, message)) => reply(code, &message, json!({"base": base})),
    })
}

async fn readonly_clear(State(svc): Svc) -> Response {
    match crate::client::clear_readonly(&svc).await {
        Ok(cleared) => {
            tracing::warn!(
                "emergency read-only mode cleared by an operator for {} base(s)",
                cleared.len()
            );
            reply(
                200,
                "OK",
                json!({"cleared": cleared, "emergency_read_only_mode": u8::from(svc.is_read_only())}),
            )
        }
        Err(why) => reply(409, &format!("not cleared: {why}"), json!({})),
    }
}

#[derive(serde::Deserialize)]
struct FaultQuery {
    lose_acks: Option<bool>,
    low_disk: Option<bool>,
    /// The wall clock set this far off the machine's (stamps, logs).
    clock_skew_ms: Option<i64>,
}

async fn fault_switch(State(svc): Svc, Query(q): Query<FaultQuery>) -> Response {
    if !svc.cfg.fault_switches {
        return reply(
            403,
            "fault switches are disabled (start with --enable-fault-switches, tests only)",
            json!({}),
        );
    }
    if let Some(v) = q.lose_acks {
        svc.rpc
            .lose_acks
            .store(v, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!("fault switch lose_acks = {v}");
    }
    if let Some(v) = q.low_disk {
        svc.guard
            .fault_low_disk
            .store(v, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!("fault switch low_disk = {v}");
        svc.check_resources();
    }
    if let Some(ms) = q.clock_skew_ms {
        if !svc.set_clock_skew(ms) {
            return reply(409, "this service's clock cannot be set off", json!({}));
        }
        tracing::warn!("fault switch clock_skew_ms = {ms}");
    }
    reply(
        200,
        "OK",
        json!({"lose_acks": svc.rpc.lose_acks.load(std::sync::atomic::Ordering::SeqCst),
               "low_disk": svc.guard.fault_low_disk.load(std::sync::atomic::Ordering::SeqCst)}),
    )
}

async fn peer_replicate(
    State(svc): Svc,
    Json(req): Json<ReplicateRequest>,
) -> Result<Response, ApiError> {
    check_type(&svc, Some(req.service_type.as_str()))?;
    let base = req.base.clone();
    // A write that reaches us before our side settled waits in the engine
    // (briefly) for it to settle, rather than being refused.
    let (from, epoch, prev) = (req.from.clone(), req.epoch, req.prev.clone());
    Ok(match svc.replicate(req).await {
        Ok(()) => reply(200, "OK", json!({})),
        Err(refusal) => {
            let (code, message) = replicate_refusal(&svc, &base, &from, epoch, &prev, refusal);
            reply(code, &message, json!({ "refusal": refusal }))
        }
    })
}

/// Several REPLICATEs from one master service (`rpc::ReplicatesRequest`),
/// each handled as `peer_replicate` handles one: handed to the engine in
/// their order, before the answer starts. The answer is streamed: one
/// `rpc::ReplicateLine` per write as it is decided, so that a write held
/// here (for our election to settle, or for the write it follows) holds
/// back no other.
async fn peer_replicates(
    State(svc): Svc,
    Json(req): Json<crate::rpc::ReplicatesRequest>,
) -> Result<Response, ApiError> {
    use futures::StreamExt;
    check_type(&svc, Some(req.service_type.as_str()))?;
    if req.items.len() > crate::rpc::MAX_REPLICATES_PER_CALL {
        return Err(ApiError::bad_request(format!(
            "{} replicated writes in one call, at most {}",
            req.items.len(),
            crate::rpc::MAX_REPLICATES_PER_CALL
        )));
    }
    let crate::rpc::ReplicatesRequest {
        service_type,
        from,
        items,
    } = req;
    let decided: futures::stream::FuturesUnordered<_> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let rx = svc.replicate_start(item.into_request(service_type.clone(), from.clone()));
            async move { (i, rx.await.unwrap_or(Err(Refusal::StoreFailed))) }
        })
        .collect();
    let lines = decided.map(|(i, result)| {
        let line = crate::rpc::ReplicateLine {
            i,
            refusal: result.err(),
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes)
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

/// A slave's refusal of a replicated write: its code and, for people, why
/// (the master acts on the typed `refusal` only).
fn replicate_refusal(
    svc: &Service,
    base: &BaseName,
    from: &ServiceId,
    epoch: Seq,
    prev: &crate::storage::Vector,
    refusal: Refusal,
) -> (u16, String) {
    let snap = svc.snapshot(base);
    let state = snap
        .as_ref()
        .map_or(election_core::State::None, |s| s.fsm.state());
    match refusal {
        Refusal::IsMaster => (
            473,
            format!(
                "IS_MASTER: {} is master of {base} (epoch {:?})",
                svc.me,
                snap.as_ref().and_then(|s| s.fsm.local_id())
            ),
        ),
        Refusal::NotFollowing => (
            409,
            format!(
                "not following {from} (epoch {epoch}): following {} (epoch {:?})",
                snap.as_ref()
                    .and_then(|s| s.fsm.master().map(ServiceId::to_string))
                    .unwrap_or_else(|| "nobody".into()),
                snap.as_ref().and_then(|s| s.fsm.master_id())
            ),
        ),
        Refusal::Fenced => (
            409,
            format!(
                "not following {from} (epoch {epoch}): a candidate with a higher node was answered since"
            ),
        ),
        Refusal::NotSettled => (
            503,
            format!("election of {base} not settled here (state {state})"),
        ),
        Refusal::Behind => (
            409,
            format!(
                "out of order: the write expects {}, not the local copy; resyncing from the master",
                crate::storage::render_vector(prev)
            ),
        ),
        Refusal::Restoring => (503, "base is being restored".into()),
        Refusal::Loading => (503, "base is still loading".into()),
        Refusal::Exiting => (503, "service exiting".into()),
        Refusal::StoreFailed => (500, "replica write failed".into()),
        Refusal::Stale => (
            409,
            "stale: the batch was decided before the copy this replica holds".into(),
        ),
    }
}

async fn delete_container(
    State(svc): Svc,
    Query(q): Query<BaseQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let base = resolve(&svc, &q)?;
    let budget = wait_budget(&svc, &q, &headers);
    Ok(match crate::client::delete(&svc, &base, budget).await {
        Ok(peers) => {
            let peers: serde_json::Map<String, Value> = peers
                .into_iter()
                .map(|(p, o)| (p.to_string(), Value::String(o)))
                .collect();
            reply(200, "Deleted", json!({"replicas": peers}))
        }
        Err(e) => {
            let (code, message) = e.code_and_message();
            reply(code, &message, json!({"reason": e.reason()}))
        }
    })
}

async fn peer_drop(State(svc): Svc, Json(req): Json<UseRequest>) -> Result<Response, ApiError> {
    check_type(&svc, Some(req.service_type.as_str()))?;
    let (code, message) = crate::client::drop_replica(&svc, &req.base).await;
    Ok(reply(code, &message, json!({})))
}

/// The master says we missed a write: re-copy the base (now if SLAVE, or as
/// soon as our election settles as SLAVE).
async fn peer_resync(State(svc): Svc, Json(req): Json<UseRequest>) -> Result<Response, ApiError> {
    check_type(&svc, Some(req.service_type.as_str()))?;
    if svc.is_exiting() {
        return Ok(reply(503, "service exiting", json!({})));
    }
    svc.request_sync(&req.base);
    Ok(reply(200, "resync triggered", json!({})))
}

/// Prometheus' text format.
async fn metrics(State(svc): Svc) -> Response {
    let mut states: Vec<(&'static str, i64)> = election_core::State::ALL
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
    let now = svc.now().mono_ms;
    let mut oldest: Option<u64> = None;
    svc.with_elections(|all| {
        for e in all {
            let name = e.fsm.state().as_str();
            if let Some(slot) = states.iter_mut().find(|(s, _)| *s == name) {
                slot.1 += 1;
            }
            if let Some(since) = e.fsm.unstable_since() {
                oldest = Some(oldest.map_or(since, |o| o.min(since)));
            }
        }
    });
    let text = svc.metrics.render(&crate::metrics::Present {
        states: &states,
        zk_state: svc.zk.view().link.as_str(),
        zk_reconnects: svc.zk.reconnects(),
        stop_writes: svc.guard.stopped().is_some(),
        read_only: svc.is_read_only(),
        oldest_unsettled_s: oldest.map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
    });
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct BalanceQuery {
    /// At most this many masterships left (default 100).
    max: Option<usize>,
    /// Only masters idle for at least this many seconds (0: any).
    inactivity: Option<u64>,
    /// Rejoin after leaving, as a candidate behind the others (default true).
    rejoin: Option<bool>,
}

/// Hands masterships over to the other peers, least recently used first,
/// at most `balance_rate` per second. Unlike OpenIO's DB_BALM, whose test
/// is inverted (reference §4.11), `inactivity` keeps the masters idle for
/// *at least* that long.
async fn balance(State(svc): Svc, Query(q): Query<BalanceQuery>) -> Result<Response, ApiError> {
    let max = q.max.unwrap_or(100);
    if max > 100_000 {
        return Err(ApiError::bad_request(
            "max: at most 100000 masterships per call",
        ));
    }
    let rejoin = q.rejoin.unwrap_or(true);
    let now = svc.now();
    let idle_ms = q.inactivity.unwrap_or(0).saturating_mul(1000);
    let (eligible, masters) = svc.balance_candidates(now, max, idle_ms);
    let pause = Duration::from_secs_f64(1.0 / svc.cfg.balance_rate);
    let started = std::time::Instant::now();
    let mut left = Vec::new();
    for (i, base) in masters.into_iter().enumerate() {
        if svc.is_exiting() {
            break;
        }
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if rejoin {
            svc.leave_and_rejoin(&base);
        } else {
            svc.leave(&base);
        }
        left.push(base);
    }
    tracing::info!(
        "balance: left {} of {eligible} eligible mastership(s) in {} ms (max {max}, inactivity {} s, rejoin {rejoin})",
        left.len(),
        started.elapsed().as_millis(),
        q.inactivity.unwrap_or(0)
    );
    Ok(reply(
        200,
        "OK",
        json!({"count": left.len(), "eligible": eligible, "bases": left,
               "rate_per_s": svc.cfg.balance_rate, "took_ms": started.elapsed().as_millis() as u64}),
    ))
}
