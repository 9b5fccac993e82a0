//! The part of OpenIO's proxy (oioproxy) HTTP API that the real Python
//! `openio` CLI uses, served by every service, so that operators can point
//! their existing tools at this product (`--oio-proxy <any service>`):
//!
//! - `POST /v3.0/{NS}/admin/{ping,status,debug,leave,sync}`: asks every peer
//!   of the base **in parallel** and answers 200 with one entry per peer,
//!   unreachable ones included with OpenIO's transport codes;
//! - `POST /v3.0/{NS}/container/{create,create_many,set_properties,
//!   get_properties,destroy}`: a write reaching a slave is forwarded to the
//!   master here, so the caller never sees an HTTP redirect;
//! - the account service's `GET /v1.0/account/containers` (`openio
//!   container list`), from the directory's per-account index, and
//!   `GET /v3.0/{NS}/lb/choose?type=account`, which names this service:
//!   `account=<any service>` in sds.conf, or no account at all, works.
//!
//! The wire rules come from hands-on runs of the real CLI
//! (reference/oio-proxy-compat.md): replies carry exactly
//! `Content-Type: application/json`, request bodies come without a content
//! type, errors are `{"status": <oio code>, "message": ...}` with the HTTP
//! status OpenIO derives from the code, and success without a body is 201
//! or 204.

use crate::http::json_reply;
use crate::service::Service;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use election_client::Target;
use election_core::names::{BaseName, ContainerId, ServiceId, ServiceType};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

type Svc = State<Arc<Service>>;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/v3.0/{ns}/admin/{action}", post(admin))
        .route("/v3.0/{ns}/container/create", post(create))
        .route("/v3.0/{ns}/container/create_many", post(create_many))
        .route("/v3.0/{ns}/container/set_properties", post(set_properties))
        .route("/v3.0/{ns}/container/get_properties", post(get_properties))
        .route("/v3.0/{ns}/container/destroy", post(destroy))
        .route("/v3.0/{ns}/lb/choose", get(lb_choose))
        .route("/v1.0/account/containers", get(account_containers))
}

/// What the proxy answers to a path it does not serve.
pub async fn no_handler() -> Response {
    json_reply(404, &json!({"status": 404, "message": "No handler found"}))
}

/// The HTTP status OpenIO's proxy gives an oio code (proxy/reply.c).
pub fn http_status(code: i64) -> u16 {
    match code {
        406 | 409 | 418 | 420 | 431 | 453 | 454 => 404,
        400 | 480 => 400,
        2..=10 | 305 | 436 | 481 | 503 | 504 | 509 | 511 => 503,
        421 | 424 | 433 | 438 => 409,
        403 | 440 | 441 => 403,
        427 => 410,
        _ => 500,
    }
}

/// An error as the proxy sends it: the oio code and message, the HTTP status
/// derived from the code, the peers that failed, `Retry-After` on 503.
#[derive(Debug)]
pub struct OioError {
    code: i64,
    message: String,
    failed: Vec<String>,
}

impl OioError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            failed: Vec::new(),
        }
    }
}

impl IntoResponse for OioError {
    fn into_response(self) -> Response {
        let http = http_status(self.code);
        let mut resp = json_reply(http, &json!({"status": self.code, "message": self.message}));
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.failed.join(",")) {
            h.insert("x-backend-service-id", v);
        }
        if http == 503 {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Success without a body (201 created, 204 done).
fn empty(http: StatusCode) -> Response {
    http.into_response()
}

/// The query of every route; unknown parameters (`urgent`, `local`, ...)
/// are accepted and ignored, as the real proxy does.
#[derive(Debug, Default, serde::Deserialize)]
struct OioQuery {
    #[serde(rename = "type")]
    service_type: Option<String>,
    acct: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    cid: Option<String>,
    service_id: Option<String>,
    check_type: Option<String>,
}

/// The caller's budget (`x-oio-timeout`; 30 s without it, as the CLI's
/// default), less the margin.
fn budget(headers: &HeaderMap) -> Duration {
    let asked = crate::http::oio_timeout(headers)
        .unwrap_or(Duration::from_secs(30))
        .min(Duration::from_secs(300));
    crate::http::less_margin(asked).max(Duration::from_millis(50))
}

/// A request for one base, checked: namespace, type, name.
struct Request {
    stype: ServiceType,
    base: BaseName,
    /// `acct` and `ref`, when the base was named so.
    names: Option<(String, String)>,
    req_id: String,
    budget: Duration,
}

fn check_ns(svc: &Service, ns: &str) -> Result<(), OioError> {
    if ns == svc.layout.namespace().as_str() {
        Ok(())
    } else {
        Err(OioError::new(
            400,
            format!(
                "Invalid parameter: namespace {ns:?} (this service belongs to {:?})",
                svc.layout.namespace().as_str()
            ),
        ))
    }
}

fn parse_request(
    svc: &Service,
    ns: &str,
    q: &OioQuery,
    headers: &HeaderMap,
    default_type: bool,
) -> Result<Request, OioError> {
    check_ns(svc, ns)?;
    let stype = match (&q.service_type, default_type) {
        (Some(t), _) => {
            ServiceType::new(t.clone()).map_err(|e| OioError::new(400, e.to_string()))?
        }
        (None, true) => svc.stype.clone(),
        (None, false) => return Err(OioError::new(400, "No service type")),
    };
    let bad = |e: election_core::names::NameError| OioError::new(400, e.to_string());
    let (base, names) = match (&q.acct, &q.reference, &q.cid) {
        (Some(a), Some(r), None) if !a.is_empty() && !r.is_empty() => {
            if a.len() > 256 || r.len() > 1024 {
                return Err(OioError::new(400, "account and reference must be 1-256 and 1-1024 bytes"));
            }
            (ContainerId::compute(a, r).meta2_base(), Some((a.clone(), r.clone())))
        }
        (None, None, Some(cid)) => {
            // `<CID>` or `<CID>.<seq>`, as the real proxy accepts.
            let base = match cid.split_once('.') {
                Some((c, seq)) if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) => {
                    ContainerId::parse(c).map_err(bad)?;
                    BaseName::parse(&format!("{}.{seq}", c.to_ascii_uppercase())).map_err(bad)?
                }
                _ => ContainerId::parse(cid).map_err(bad)?.meta2_base(),
            };
            (base, None)
        }
        _ => {
            return Err(OioError::new(
                400,
                "Missing value for account and reference or cid: give acct=<account>&ref=<reference>, or cid=<container id>"))
        }
    };
    Ok(Request {
        stype,
        base,
        names,
        req_id: crate::reqid::current().unwrap_or_else(crate::reqid::new_id),
        budget: budget(headers),
    })
}

/// The peers to ask: the directory's entry for the base, or the subset
/// named by `service_id` (comma-separated). Unlike OpenIO's proxy, a
/// service id that is not a peer of the base is refused: the proxy never
/// sends requests to an address a caller made up.
async fn peers(
    svc: &Service,
    r: &Request,
    service_id: Option<&str>,
) -> Result<Vec<ServiceId>, OioError> {
    let peers = match svc.directory.lookup(&r.stype, &r.base).await {
        Ok(Some(entry)) if !entry.peers.is_empty() => entry.peers,
        Ok(_) => return Err(OioError::new(431, "No service located")),
        Err(e) => return Err(OioError::new(503, format!("directory unavailable: {e}"))),
    };
    let Some(ids) = service_id.filter(|s| !s.is_empty()) else {
        return Ok(peers);
    };
    let mut chosen = Vec::new();
    for id in ids.split(',') {
        match peers.iter().find(|p| p.as_str() == id) {
            Some(p) if !chosen.contains(p) => chosen.push(p.clone()),
            Some(_) => {}
            None => {
                let all: Vec<&str> = peers.iter().map(ServiceId::as_str).collect();
                let why = format!(
                    "Invalid parameter: service_id {id:?} is not a peer of {} (peers: {})",
                    r.base,
                    all.join(",")
                );
                return Err(OioError::new(400, why));
            }
        }
    }
    Ok(chosen)
}

fn target<'a>(svc: &'a Service, r: &'a Request, peers: &'a [ServiceId]) -> Target<'a> {
    Target {
        http: svc.rpc.http(),
        peers,
        base: &r.base,
        stype: &r.stype,
        timeout: r.budget,
        request_id: Some(&r.req_id),
    }
}

// ---------------- admin routes ----------------

async fn admin(
    State(svc): Svc,
    Path((ns, action)): Path<(String, String)>,
    Query(q): Query<OioQuery>,
    headers: HeaderMap,
) -> Result<Response, OioError> {
    if !matches!(
        action.as_str(),
        "ping" | "status" | "debug" | "leave" | "sync"
    ) {
        return Ok(no_handler().await);
    }
    let r = parse_request(&svc, &ns, &q, &headers, false)?;
    if let Some(ct) = &q.check_type {
        if !matches!(ct.as_str(), "-1" | "0" | "1" | "2") {
            return Err(OioError::new(
                400,
                format!("check_type {ct:?}: expected -1, 0, 1 or 2"),
            ));
        }
    }
    let peers = peers(&svc, &r, q.service_id.as_deref()).await?;
    let rows = election_client::fan_out(&target(&svc, &r, &peers), &action).await;
    let mut out = Map::new();
    for row in &rows {
        // As the real proxy: a success is "OK" whatever the peer said; the
        // body is the peer's (debug, sync) or "".
        let message = if row.status == 200 {
            "OK"
        } else {
            row.message.as_str()
        };
        let body = match (action.as_str(), row.answer.get("body")) {
            ("debug" | "sync", Some(b)) if row.status < 300 || action == "debug" => b.clone(),
            _ => Value::String(String::new()),
        };
        out.insert(
            row.id.clone(),
            json!({"status": {"status": row.status, "message": message}, "body": body}),
        );
    }
    let summary: Vec<String> = rows
        .iter()
        .map(|r| format!("{}={}", r.id, r.status))
        .collect();
    tracing::info!(
        "oio admin/{action} {} ({}): {}",
        r.base,
        r.stype,
        summary.join(" ")
    );
    Ok(json_reply(200, &Value::Object(out)))
}

// ---------------- container routes ----------------

/// `{"properties": {...}, "system": {...}}`, both optional, values strings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PropsBody {
    #[serde(default)]
    properties: Option<BTreeMap<String, String>>,
    #[serde(default)]
    system: Option<BTreeMap<String, String>>,
}

impl PropsBody {
    fn is_empty(&self) -> bool {
        self.properties.as_ref().is_none_or(BTreeMap::is_empty)
            && self.system.as_ref().is_none_or(BTreeMap::is_empty)
    }
    fn to_json(&self) -> Value {
        json!({"properties": self.properties.clone().unwrap_or_default(),
               "system": self.system.clone().unwrap_or_default()})
    }
}

/// Parses a body sent without a content type; empty or `null` is "nothing".
fn props_body(bytes: &[u8]) -> Result<PropsBody, OioError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(PropsBody::default());
    }
    match serde_json::from_slice::<Option<PropsBody>>(bytes) {
        Ok(b) => Ok(b.unwrap_or_default()),
        Err(e) => Err(OioError::new(
            400,
            format!("Invalid JSON body: {e} (expected {{\"properties\": {{\"k\": \"v\"}}, \"system\": {{\"sys.k\": \"v\"}}}})"))),
    }
}

/// The answer of a forwarded request, as the proxy reports it: success
/// (< 300) is handed to `ok`, anything else becomes an oio error.
fn forwarded(
    r: &Request,
    outcome: Result<election_client::Answer, election_client::NoPeerAnswered>,
    ok: impl FnOnce(election_client::Answer) -> Response,
) -> Result<Response, OioError> {
    match outcome {
        Ok(a) if a.status < 300 => Ok(ok(a)),
        Ok(a) => {
            tracing::info!(
                "oio {}: {} answered ({}) {}",
                r.base,
                a.from,
                a.status,
                a.message
            );
            let mut e = OioError::new(a.status, a.message);
            if a.status >= 500 {
                e.failed.push(a.from);
            }
            Err(e)
        }
        Err(e) => {
            tracing::warn!("oio {}: {e}", r.base);
            Err(OioError::new(503, e.to_string()))
        }
    }
}

async fn create(
    State(svc): Svc,
    Path(ns): Path<String>,
    Query(q): Query<OioQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OioError> {
    let r = parse_request(&svc, &ns, &q, &headers, true)?;
    let props = props_body(&body)?;
    create_one(&svc, &r, &props).await
}

/// Creates one container; `Ok` is 201 (created) or 204 (existed).
async fn create_one(
    svc: &Arc<Service>,
    r: &Request,
    props: &PropsBody,
) -> Result<Response, OioError> {
    let Some((account, reference)) = &r.names else {
        return Err(OioError::new(
            400,
            "container creation needs acct=<account>&ref=<reference>",
        ));
    };
    if r.stype != svc.stype {
        return Err(OioError::new(
            453,
            format!(
                "service type {} not managed here (this service runs {})",
                r.stype, svc.stype
            ),
        ));
    }
    let created = crate::client::create_base(svc, account, reference, 3)
        .await
        .map_err(|e| OioError::new(i64::from(e.code), e.message))?;
    tracing::info!(
        "oio container/create {} ({account}/{reference}): created={}",
        r.base,
        created.created
    );
    if !created.created {
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    if props.is_empty() {
        return Ok(empty(StatusCode::CREATED));
    }
    // The initial properties are the container's first write.
    let body = props.to_json();
    let outcome = election_client::to_base(
        &target(svc, r, &created.peers),
        reqwest::Method::POST,
        "/v1/container/set",
        Some(&body),
    )
    .await;
    forwarded(
        r,
        outcome.map(|mut a| {
            if a.status >= 300 {
                a.message = format!(
                    "container created, but its properties were not set (set them again): {}",
                    a.message
                );
            }
            a
        }),
        |_| empty(StatusCode::CREATED),
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManyBody {
    containers: Vec<ManyItem>,
}

#[derive(serde::Deserialize)]
struct ManyItem {
    name: String,
    #[serde(default)]
    properties: Option<BTreeMap<String, String>>,
    #[serde(default)]
    system: Option<BTreeMap<String, String>>,
}

/// At most this many containers per `create_many` (413 beyond: the client
/// splits the batch).
const MAX_BATCH: usize = 100;

async fn create_many(
    State(svc): Svc,
    Path(ns): Path<String>,
    Query(q): Query<OioQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OioError> {
    check_ns(&svc, &ns)?;
    let Some(account) = q.acct.clone().filter(|a| !a.is_empty()) else {
        return Err(OioError::new(
            400,
            "container creation needs acct=<account>",
        ));
    };
    let batch: ManyBody = serde_json::from_slice(&body).map_err(|e| {
        OioError::new(
            400,
            format!("Invalid JSON body: {e} (expected {{\"containers\": [{{\"name\": ...}}]}})"),
        )
    })?;
    if batch.containers.len() > MAX_BATCH {
        return Ok(json_reply(
            413,
            &json!({"status": 413, "message": format!("at most {MAX_BATCH} containers per request")}),
        ));
    }
    let mut results = Vec::new();
    for item in batch.containers {
        let q = OioQuery {
            service_type: q.service_type.clone(),
            acct: Some(account.clone()),
            reference: Some(item.name.clone()),
            ..OioQuery::default()
        };
        let props = PropsBody {
            properties: item.properties,
            system: item.system,
        };
        let outcome = match parse_request(&svc, &ns, &q, &headers, true) {
            Ok(r) => create_one(&svc, &r, &props).await,
            Err(e) => Err(e),
        };
        let (status, message) = match outcome {
            Ok(resp) => (resp.status().as_u16(), "ok".to_string()),
            Err(e) => (http_status(e.code), e.message),
        };
        results.push(json!({"name": item.name, "status": status, "message": message}));
    }
    Ok(json_reply(200, &json!({"containers": results})))
}

async fn set_properties(
    State(svc): Svc,
    Path(ns): Path<String>,
    Query(q): Query<OioQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OioError> {
    let r = parse_request(&svc, &ns, &q, &headers, true)?;
    let props = props_body(&body)?;
    if props.is_empty() {
        return Err(OioError::new(400, "No properties found in JSON object"));
    }
    let outcome = to_container(
        &svc,
        &r,
        reqwest::Method::POST,
        "/v1/container/set",
        Some(&props.to_json()),
    )
    .await?;
    forwarded(&r, outcome, |a| {
        tracing::info!(
            "oio container/set_properties {}: version {} by {}",
            r.base,
            a.body["version"],
            a.from
        );
        empty(StatusCode::NO_CONTENT)
    })
}

/// Sends one request to the container named by `q`, following its master;
/// a base the directory does not know is a missing container.
async fn to_container(
    svc: &Arc<Service>,
    r: &Request,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Result<election_client::Answer, election_client::NoPeerAnswered>, OioError> {
    let peers = peers(svc, r, None)
        .await
        .map_err(|e| container_not_found(e, r))?;
    Ok(election_client::to_base(&target(svc, r, &peers), method, path, body).await)
}

/// A base the directory does not know is a missing container (oio 431).
fn container_not_found(e: OioError, r: &Request) -> OioError {
    if e.code == 431 {
        OioError::new(
            431,
            format!("Container not found: no directory entry for {}", r.base),
        )
    } else {
        e
    }
}

async fn get_properties(
    State(svc): Svc,
    Path(ns): Path<String>,
    Query(q): Query<OioQuery>,
    headers: HeaderMap,
) -> Result<Response, OioError> {
    let r = parse_request(&svc, &ns, &q, &headers, true)?;
    let outcome = to_container(&svc, &r, reqwest::Method::GET, "/v1/container/props", None).await?;
    forwarded(&r, outcome, |a| {
        let mut system = a.body["system"].as_object().cloned().unwrap_or_default();
        // Our own fields, under names the CLI shows as they are.
        system.insert("sys.m2.version".into(), a.body["version"].clone());
        system.insert("sys.m2.role".into(), a.body["role"].clone());
        json_reply(
            200,
            &json!({"properties": a.body["properties"], "system": system}),
        )
    })
}

async fn destroy(
    State(svc): Svc,
    Path(ns): Path<String>,
    Query(q): Query<OioQuery>,
    headers: HeaderMap,
) -> Result<Response, OioError> {
    let r = parse_request(&svc, &ns, &q, &headers, true)?;
    let outcome = to_container(
        &svc,
        &r,
        reqwest::Method::POST,
        "/v1/container/delete",
        None,
    )
    .await?;
    forwarded(&r, outcome, |a| {
        tracing::info!("oio container/destroy {}: {}", r.base, a.body["replicas"]);
        empty(StatusCode::NO_CONTENT)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_openio_http_statuses() {
        for (code, http) in [
            (431, 404),
            (453, 404),
            (400, 400),
            (2, 503),
            (7, 503),
            (503, 503),
            (305, 503),
            (438, 409),
            (433, 409),
            (403, 403),
            (427, 410),
            (500, 500),
            (473, 500),
        ] {
            assert_eq!(http_status(code), http, "{code}");
        }
    }

    #[test]
    fn budget_leaves_a_margin_and_has_a_default() {
        let mut h = HeaderMap::new();
        assert_eq!(budget(&h), Duration::from_millis(28_500));
        h.insert("x-oio-timeout", HeaderValue::from_static("29700000"));
        assert_eq!(budget(&h), Duration::from_micros(29_700_000 * 19 / 20));
        h.insert("x-oio-timeout", HeaderValue::from_static("1000000"));
        assert_eq!(budget(&h), Duration::from_millis(850));
        h.insert("x-oio-timeout", HeaderValue::from_static("garbage"));
        assert_eq!(budget(&h), Duration::from_millis(28_500));
    }

    #[test]
    fn bodies_without_content_type_parse() {
        assert!(props_body(b"").expect("empty").is_empty());
        assert!(props_body(b"null").expect("null").is_empty());
        let p = props_body(br#"{"properties": {"a": "1"}, "system": {}}"#).expect("python json");
        assert_eq!(p.to_json(), json!({"properties": {"a": "1"}, "system": {}}));
        assert!(
            props_body(br#"{"properties": {"a": 1}}"#).is_err(),
            "values are strings"
        );
        assert!(props_body(b"[1").is_err());
    }
}

// ---------------- the account service's routes ----------------

#[derive(Debug, Default, serde::Deserialize)]
struct LbQuery {
    #[serde(rename = "type")]
    service_type: Option<String>,
}

/// `GET /v3.0/{NS}/lb/choose?type=account&size=1`: the CLI's way to find
/// an account service when sds.conf names none. Every service is one.
async fn lb_choose(
    State(svc): Svc,
    Path(ns): Path<String>,
    Query(q): Query<LbQuery>,
) -> Result<Response, OioError> {
    check_ns(&svc, &ns)?;
    match q.service_type.as_deref() {
        Some("account") => Ok(json_reply(
            200,
            &json!([{"addr": svc.me, "id": svc.me, "score": 100, "tags": {}}]),
        )),
        other => Err(OioError::new(
            453,
            format!(
                "Service type not managed: {:?} (this service only chooses the account service)",
                other.unwrap_or_default()
            ),
        )),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct AccountQuery {
    id: Option<String>,
    limit: Option<String>,
    marker: Option<String>,
    end_marker: Option<String>,
    prefix: Option<String>,
}

/// Containers listed per page, by default and at most (the account
/// service's own figures).
const LISTING_DEFAULT: usize = 1_000;
const LISTING_MAX: usize = 10_000;

/// `GET /v1.0/account/containers?id=<account>`: the account's containers
/// (`openio container list`), after `marker`, before `end_marker`, starting
/// with `prefix`, `limit` of them; `truncated` and `next_marker` say there
/// are more. Bases hold properties, not objects: counts and bytes are 0.
async fn account_containers(
    State(svc): Svc,
    Query(q): Query<AccountQuery>,
) -> Result<Response, Response> {
    let account =
        q.id.filter(|a| !a.is_empty())
            .ok_or_else(|| account_error(400, "Missing Account ID (id=...)".into()))?;
    let limit = match q.limit.as_deref() {
        None | Some("") => LISTING_DEFAULT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| account_error(400, format!("Invalid limit {l:?}: a positive number")))?
            .min(LISTING_MAX),
    };
    let refs = svc
        .directory
        .account_references(&svc.stype, &account)
        .await
        .map_err(|e| account_error(503, format!("directory unavailable: {e}")))?
        .ok_or_else(|| account_error(404, format!("Account not found: {account}")))?;
    let total = refs.len();
    let prefix = q.prefix.unwrap_or_default();
    let mut page: Vec<String> = refs
        .into_iter()
        .filter(|r| r.starts_with(&prefix))
        .filter(|r| {
            q.marker
                .as_deref()
                .is_none_or(|m| m.is_empty() || r.as_str() > m)
        })
        .filter(|r| {
            q.end_marker
                .as_deref()
                .is_none_or(|m| m.is_empty() || r.as_str() < m)
        })
        .take(limit + 1)
        .collect();
    let truncated = page.len() > limit;
    page.truncate(limit);
    let mtimes = svc
        .directory
        .index_mtimes(&svc.stype, &account, &page)
        .await
        .map_err(|e| account_error(503, format!("directory unavailable: {e}")))?;
    let listing: Vec<Value> = page
        .iter()
        .zip(&mtimes)
        .filter_map(|(r, m)| m.map(|m| json!([r, 0, 0, 0, m as f64 / 1e3])))
        .collect();
    let secs = |m: Option<&i64>| m.map_or(0.0, |m| *m as f64 / 1e3);
    let (oldest, newest) = (
        secs(mtimes.iter().flatten().min()),
        secs(mtimes.iter().flatten().max()),
    );
    let mut body = json!({
        "id": account, "listing": listing, "truncated": truncated,
        "containers": total, "objects": 0, "bytes": 0, "buckets": 0, "shards": 0,
        "ctime": oldest, "mtime": newest, "metadata": {}, "regions": {},
    });
    if truncated {
        body["next_marker"] = json!(page.last());
    }
    Ok(json_reply(200, &body))
}

/// An error as the account service sends it: the HTTP status, and the
/// same in the JSON body.
fn account_error(http: u16, message: String) -> Response {
    json_reply(http, &json!({"status": http, "message": message}))
}
