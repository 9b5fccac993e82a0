//! Helpers every route module shares: OpenIO's reply shape and its
//! timeout header. No route imports another for these.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::time::Duration;

/// An error with the code and message the caller sees (answered by the
/// route modules, each in its own shape).
#[derive(Debug)]
pub struct ApiError {
    pub code: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: 503,
            message: message.into(),
        }
    }
}

/// A JSON reply whose content type is exactly `application/json`: the
/// Python client compares the string, parameters included.
pub fn json_reply(http: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The caller's budget from `x-oio-timeout` (microseconds, as OpenIO's SDK
/// sends it), if the header is there and sane.
pub fn oio_timeout(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("x-oio-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|us| *us > 0)
        .map(Duration::from_micros)
}

/// A budget less a margin (5 %, at least 150 ms), so that our answer
/// reaches the caller before it gives up.
pub fn less_margin(budget: Duration) -> Duration {
    budget.saturating_sub((budget / 20).max(Duration::from_millis(150)))
}
