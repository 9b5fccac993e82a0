//! HTTP calls to the services holding a base, shared by the `openio` CLI
//! and by the services' OpenIO-compatible proxy routes:
//!
//! - [`fan_out`] asks every peer in parallel and keeps one row per peer,
//!   transport failures included (OpenIO's codes 2, 5, 7, 10);
//! - [`to_base`] sends one request to the base, following the 303 answers of
//!   slaves to the master, so that the caller never sees a redirect;
//! - [`timeline`] draws a base's merged transition logs as SVG.

mod fanout;
mod master;
pub mod timeline;

pub use fanout::{fan_out, fan_out_path, Row};
pub use master::{to_base, Answer, NoPeerAnswered};

use election_core::names::{BaseName, ServiceId, ServiceType};
use std::time::Duration;

/// Who to ask about which base, and within which budget.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub http: &'a reqwest::Client,
    pub peers: &'a [ServiceId],
    pub base: &'a BaseName,
    pub stype: &'a ServiceType,
    /// The whole budget of the call; peers are given 99 % of it.
    pub timeout: Duration,
    /// Propagated as `x-oio-req-id`.
    pub request_id: Option<&'a str>,
}

impl Target<'_> {
    /// A request to `http://<peer><path>` naming the base, carrying the
    /// peer's budget (`x-oio-timeout`, microseconds) and the request id.
    fn request(&self, method: reqwest::Method, peer: &str, path: &str) -> reqwest::RequestBuilder {
        let budget_us = (self.timeout.as_micros() as u64) * 99 / 100;
        let mut req = self
            .http
            .request(method, format!("http://{peer}{path}"))
            .query(&[("base", self.base.as_str()), ("type", self.stype.as_str())])
            .header("x-oio-timeout", budget_us.to_string())
            .timeout(self.timeout);
        if let Some(id) = self.request_id {
            req = req.header("x-oio-req-id", id);
        }
        req
    }
}

/// The connect timeout of [`client`]: a peer that does not accept a TCP
/// connection within it is reported with code 5.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The header carrying the services' shared secret.
pub const SECRET_HEADER: &str = "x-election-secret";

/// The services' shared secret. Its `Debug` never shows it: a secret held
/// in a configuration that gets logged stays out of the log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The first line of `path`, trimmed; an error says what is wrong.
    pub fn from_file(path: &str) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        match text.lines().next().map(str::trim) {
            Some(line) if !line.is_empty() => Ok(Secret(line.to_string())),
            _ => Err(format!("{path}: the first line must hold the secret")),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A new request id, `<prefix>-<16 hex digits>`.
pub fn new_request_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!("{prefix}-{:016x}", h.finish())
}

/// Why a call got no answer, as OpenIO's clients classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// Code 2: nothing listens.
    Refused,
    /// Code 5: no TCP connection within the connect timeout.
    ConnectTimeout,
    /// Code 7: connected, no answer in time.
    Timeout,
    /// Code 10: anything else.
    Other,
}

impl NoAnswer {
    pub fn of(e: &reqwest::Error) -> NoAnswer {
        let text = format!("{e:?}");
        let refused = text.contains("ConnectionRefused") || text.contains("Connection refused");
        if e.is_connect() && refused {
            NoAnswer::Refused
        } else if e.is_connect() && e.is_timeout() {
            NoAnswer::ConnectTimeout
        } else if e.is_timeout() {
            NoAnswer::Timeout
        } else {
            NoAnswer::Other
        }
    }

    /// OpenIO's per-peer code.
    pub fn code(self) -> i64 {
        match self {
            NoAnswer::Refused => 2,
            NoAnswer::ConnectTimeout => 5,
            NoAnswer::Timeout => 7,
            NoAnswer::Other => 10,
        }
    }
}

/// An HTTP client for peers: redirects are never followed by the transport
/// (a 303 is an answer to report, or to follow ourselves), Nagle is off;
/// `secret` goes with every request, marked sensitive (never printed).
pub fn client(connect_timeout: Duration, secret: Option<&Secret>) -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(secret_headers(secret))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The most a peer's answer may weigh; a longer one is "nonsense".
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Reads an answer as JSON, refusing more than [`MAX_ANSWER_BYTES`].
async fn read_json(mut resp: reqwest::Response) -> Result<serde_json::Value, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("answer longer than {MAX_ANSWER_BYTES} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// The default headers that carry `secret`, marked sensitive.
pub fn secret_headers(secret: Option<&Secret>) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(mut v) =
        secret.and_then(|s| reqwest::header::HeaderValue::from_str(s.expose()).ok())
    {
        v.set_sensitive(true);
        headers.insert(SECRET_HEADER, v);
    }
    headers
}
