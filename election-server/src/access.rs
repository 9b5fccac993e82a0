//! What every HTTP request goes through: its request id, the shared secret
//! of protected routes, the access log line and the HTTP metrics.
//!
//! The request id is the caller's `x-oio-req-id` (as OpenIO's clients send
//! it) or a new one. It is echoed in the answer, carried by every log line
//! of the request (the `req{id=...}` span), and sent along with every call
//! this request makes to peers, so one grep follows a request across
//! services.

use crate::service::Service;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use tracing::Instrument;

use crate::reqid::{new_id, REQ_ID};
use election_client::SECRET_HEADER;

/// The caller's id if it is printable and short, else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-oio-req-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(new_id)
}

/// Routes that change the cluster or are peers' only: they need the secret.
fn protected(method: &Method, path: &str) -> bool {
    if path.starts_with("/v1/peer/") {
        return true;
    }
    if matches!(path, "/v1/election/leave" | "/v1/election/sync") {
        return true;
    }
    if path.starts_with("/v1/admin/") {
        return !(method == Method::GET && path == "/v1/admin/readonly");
    }
    // OpenIO's proxy routes: leave and sync.
    path.starts_with("/v3.0/") && (path.ends_with("/admin/leave") || path.ends_with("/admin/sync"))
}

/// Compares in time independent of where the first difference is.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let diff = given
        .iter()
        .zip(expected)
        .fold(given.len() ^ expected.len(), |acc, (a, b)| {
            acc | usize::from(a ^ b)
        });
    diff == 0
}

fn unauthorized() -> Response {
    crate::http::json_reply(
        401,
        &serde_json::json!({"status": 401, "message": "unauthorized"}),
    )
}

/// Quiet routes log at debug: peers' RPC, liveness and scrapes.
fn quiet(path: &str) -> bool {
    path.starts_with("/v1/peer/") || matches!(path, "/v1/ping" | "/metrics")
}

pub async fn around(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let allowed = match &svc.cfg.secret {
        Some(secret) if protected(&method, &path) => req
            .headers()
            .get(SECRET_HEADER)
            .is_some_and(|v| same_secret(v.as_bytes(), secret.expose().as_bytes())),
        _ => true,
    };
    let span = tracing::info_span!("req", id = %id);
    let mut resp = if allowed {
        REQ_ID
            .scope(id.clone(), next.run(req).instrument(span.clone()))
            .await
    } else {
        unauthorized()
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-oio-req-id", v);
    }
    let code = resp.status().as_u16();
    let took = started.elapsed();
    svc.metrics.http_request(&route, code, took);
    let _in = span.enter();
    let ms = took.as_secs_f64() * 1000.0;
    if !allowed {
        tracing::warn!(target: "access", "{method} {path} -> 401: no or wrong {SECRET_HEADER}");
    } else if quiet(&path) {
        tracing::debug!(target: "access", "{method} {path} -> {code} in {ms:.1} ms");
    } else {
        tracing::info!(target: "access", "{method} {path} -> {code} in {ms:.1} ms");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_routes() {
        for (m, p) in [
            (Method::POST, "/v1/peer/replicate"),
            (Method::GET, "/v1/peer/dump"),
            (Method::POST, "/v1/election/leave"),
            (Method::POST, "/v1/election/sync"),
            (Method::POST, "/v1/admin/balance"),
            (Method::POST, "/v1/admin/readonly/clear"),
            (Method::POST, "/v1/admin/set-aside"),
            (Method::POST, "/v1/admin/fault"),
            (Method::POST, "/v3.0/OPENIO/admin/leave"),
            (Method::POST, "/v3.0/OPENIO/admin/sync"),
        ] {
            assert!(protected(&m, p), "{m} {p}");
        }
        for (m, p) in [
            (Method::POST, "/v1/election/status"),
            (Method::GET, "/v1/admin/readonly"),
            (Method::GET, "/metrics"),
            (Method::POST, "/v3.0/OPENIO/admin/status"),
            (Method::POST, "/v1/container/set"),
        ] {
            assert!(!protected(&m, p), "{m} {p}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
