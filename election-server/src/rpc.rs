//! Peer-to-peer RPC over HTTP: wire types and the client side.
//!
//! | route | OpenIO | purpose |
//! |---|---|---|
//! | `POST /v1/peer/use` | DB_USE | start or refresh the receiver's election |
//! | `POST /v1/peer/getvers` | DB_VERS | the receiver's version vector (or why unknown) |
//! | `POST /v1/peer/getvers_many` | DB_VERS, batched | several GETVERS of one asker |
//! | `GET /v1/peer/dump` | DB_DUMP | a consistent copy of the receiver's replica |
//! | `POST /v1/peer/create` | (meta1 link) | create the receiver's replica of a new base |
//! | `POST /v1/peer/replicate` | (REPLICATE) | apply a master's write on a slave |
//! | `POST /v1/peer/replicates` | (REPLICATE), batched | several, for any bases, each answered as it is decided |

use crate::storage::BaseInfo;
use election_core::names::{BaseName, Seq, ServiceId, ServiceType};
use election_core::peer::Refusal;
use election_core::version::{ReplicaVersion, Vector, WriteOp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Several USEs to one peer in one call (`/v1/peer/uses`): in a storm a
/// service sends thousands, and an HTTP exchange each cost more CPU than
/// the elections themselves (docs/PROFILES.md, session 14).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UsesRequest {
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub from: ServiceId,
    pub uses: Vec<UseItem>,
}

/// One USE of a batch: `master` holds the sequence of the sender's node
/// when it announces its mastership (`UseRequest`'s `master` and `epoch`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UseItem {
    pub base: BaseName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<Seq>,
}

/// The most USEs in one call (about 100 bytes each).
pub const MAX_USES_PER_CALL: usize = 512;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UseRequest {
    pub base: BaseName,
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub from: ServiceId,
    /// Sent by a new master: a receiver that is master of an older node
    /// steps down.
    #[serde(default)]
    pub master: bool,
    /// The sequence of the new master's node. A claim without it is not
    /// acted on: a late one would depose a newer master (issue 14, Hm1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Seq>,
}

/// A master leaving its node `epoch` with no write in flight: `version` is
/// final for that epoch (`Effect::Farewell`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LeftRequest {
    pub base: BaseName,
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub from: ServiceId,
    pub epoch: Seq,
    pub version: ReplicaVersion,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetversRequest {
    pub base: BaseName,
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub from: ServiceId,
    /// When asking the master: the node the asker believes the receiver owns.
    #[serde(default)]
    pub master_seq: Option<Seq>,
    /// When a candidate asks: its own node. The receiver then refuses writes
    /// from masters of lower epochs (they are gone, or it would not lead).
    #[serde(default)]
    pub candidate_seq: Option<Seq>,
    /// A candidate's own version, read before asking: a receiver that later
    /// follows it at `candidate_seq`, unchanged meanwhile, need not ask it
    /// back when the two agree (`Input::CandidateVersions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ReplicaVersion>,
    /// The base's creation as the asker's directory read says. A receiver
    /// that knows another one reads the directory again; if they still
    /// differ, it refuses, naming its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<crate::storage::Incarnation>,
}

/// Several GETVERS to one peer in one call (`/v1/peer/getvers_many`): a
/// storm of elections makes four per election, and, as with USEs, an HTTP
/// exchange each cost more than the elections. One answer per question, in
/// the same order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetversBatch {
    pub asks: Vec<GetversRequest>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetversAnswers {
    pub answers: Vec<GetversAnswer>,
}

/// One question's answer: what `/v1/peer/getvers` answers, or the status
/// and message of its error.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetversAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<GetversReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<(u16, String)>,
}

/// The most GETVERS in one call (up to about 500 bytes each).
pub const MAX_GETVERS_PER_CALL: usize = 128;

/// A master's write, sent to each slave under its fencing epoch.
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

/// Several REPLICATEs from one master service to one slave service in one
/// call (`/v1/peer/replicates`): with many bases written at once, an HTTP
/// exchange per write and slave cost more CPU than the writes
/// (docs/PROFILES.md, sessions 15 and 18). The receiver hands them to its
/// engine in their order, answers at once with a streamed body, and writes
/// one `ReplicateLine` per write as each is decided: a write held on the
/// slave holds back no other.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReplicatesRequest {
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub from: ServiceId,
    pub items: Vec<ReplicateItem>,
}

/// One write of a `ReplicatesRequest`: a `ReplicateRequest` without the
/// fields the call carries once.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReplicateItem {
    pub base: BaseName,
    pub epoch: Seq,
    pub prev: Vector,
    pub next: Vector,
    pub ops: Vec<WriteOp>,
}

impl ReplicateItem {
    pub fn into_request(self, service_type: ServiceType, from: ServiceId) -> ReplicateRequest {
        ReplicateRequest {
            base: self.base,
            service_type,
            from,
            epoch: self.epoch,
            prev: self.prev,
            next: self.next,
            ops: self.ops,
        }
    }
}

/// The fate of the `i`th write of a `ReplicatesRequest`: applied, or why
/// not. One line of the answer's body each (newline-delimited JSON), in the
/// order they were decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicateLine {
    pub i: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

/// The most REPLICATEs in one call.
pub const MAX_REPLICATES_PER_CALL: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum GetversReply {
    Version {
        version: ReplicaVersion,
    },
    /// The receiver cannot vouch for what was asked (e.g. it does not own
    /// the master node the asker follows).
    Refused {
        reason: String,
        /// Set when the refusal is about the base's creation: the one the
        /// receiver's directory read names (the asker reads it again).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incarnation: Option<crate::storage::Incarnation>,
    },
}

/// Errors of a peer call, worded for the transition log and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{peer}: [errno=111] Connection refused")]
    Refused { peer: ServiceId },
    #[error("Connect timeout ({secs:.1}s) to {peer}")]
    ConnectTimeout { peer: ServiceId, secs: f64 },
    #[error("Timeout ({secs:.1}s) to {peer}")]
    Timeout { peer: ServiceId, secs: f64 },
    #[error("{peer}: HTTP {status}: {body}")]
    Status {
        peer: ServiceId,
        status: u16,
        /// The start of the answer's body, for people.
        body: String,
        /// Why the peer refused, when it said so (the `refusal` field of
        /// its JSON body): what the caller acts on.
        refusal: Option<Refusal>,
    },
    /// The connection failed otherwise (it was dropped while opening, for
    /// example): the request was never sent.
    #[error("{peer}: could not connect: {detail}")]
    Unconnected { peer: ServiceId, detail: String },
    #[error("{peer}: {detail}")]
    Other { peer: ServiceId, detail: String },
}

/// An error with its causes, `outer: inner: ...`: reqwest's own text
/// ("error sending request") does not say what failed underneath.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The typed reason in a refusal's whole body (not only the part kept for
/// people); None when the peer gave none or one this version does not know.
fn refusal_of(body: &[u8]) -> Option<Refusal> {
    #[derive(serde::Deserialize)]
    struct Refused {
        refusal: Option<Refusal>,
    }
    serde_json::from_slice::<Refused>(body).ok()?.refusal
}

#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    bulk: reqwest::Client,
    connect_timeout: Duration,
    /// Test-only fault switch (`--enable-fault-switches`): every replicated
    /// write is sent, then its acknowledgement is dropped, as if the answer
    /// had been lost after the slave applied it.
    pub lose_acks: Arc<AtomicBool>,
    /// Calls sent and not answered yet (`peer_calls_in_flight`).
    in_flight: prometheus_client::metrics::gauge::Gauge,
}

/// Counts a call in flight for as long as it lives (answered, failed or
/// dropped).
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn start(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

const MAX_ANSWER_BYTES: usize = 1 << 20;
const MAX_DUMP_BYTES: usize = 1 << 30;
/// The header of a copy that carries its batch floor (`StoreOp::Dump`):
/// the slave refuses batches decided before the copy, should they arrive
/// late.
pub const BATCH_FLOOR: &str = "x-oio-batch-floor";

impl PeerClient {
    /// `secret`: sent with every call (`x-election-secret`), marked sensitive.
    /// `http2`: one HTTP/2 connection per peer (h2c), else HTTP/1.1.
    /// `in_flight`: the gauge of calls not answered yet.
    pub fn new(
        connect_timeout: Duration,
        secret: Option<&election_client::Secret>,
        http2: bool,
        in_flight: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .default_headers(election_client::secret_headers(secret))
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(Duration::from_secs(30))
                .tcp_nodelay(true)
        };
        // Peer calls are small and many: one HTTP/2 connection per peer
        // carries them all (h2c; every service serves it). With HTTP/1, a
        // start storm left about 1,000 idle connections per peer, each
        // costing the peer ~40 KiB, and a cap on them made new connections
        // for every call beyond it (docs/ENGINE.md §0, step 7).
        let http = if http2 {
            builder().http2_prior_knowledge()
        } else {
            builder().http1_only()
        };
        let http = http.build().unwrap_or_else(|_| reqwest::Client::new());
        // Copies of whole bases go on connections of their own (HTTP/1), so
        // that a large one never holds the small calls up behind it.
        let bulk = builder()
            .http1_only()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            bulk,
            connect_timeout,
            lose_acks: Arc::default(),
            in_flight,
        }
    }

    /// The pooled HTTP client (redirects off), for calls built elsewhere.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn classify(&self, peer: &ServiceId, timeout: Duration, e: reqwest::Error) -> PeerError {
        let peer = peer.clone();
        match election_client::NoAnswer::of(&e) {
            election_client::NoAnswer::Refused => PeerError::Refused { peer },
            election_client::NoAnswer::ConnectTimeout => PeerError::ConnectTimeout {
                peer,
                secs: self.connect_timeout.as_secs_f64(),
            },
            election_client::NoAnswer::Timeout => PeerError::Timeout {
                peer,
                secs: timeout.as_secs_f64(),
            },
            election_client::NoAnswer::Other if e.is_connect() => PeerError::Unconnected {
                peer,
                detail: with_causes(&e),
            },
            election_client::NoAnswer::Other => PeerError::Other {
                peer,
                detail: with_causes(&e),
            },
        }
    }

    /// Sends a request (with the current request's id) and returns its
    /// answer once its status says 2xx; any other status is an error that
    /// carries the start of the body and the typed refusal it names.
    async fn send(
        &self,
        peer: &ServiceId,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, PeerError> {
        let mut req = req.timeout(timeout);
        if let Some(id) = crate::reqid::current() {
            req = req.header("x-oio-req-id", id);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.classify(peer, timeout, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.classify(peer, timeout, e))?;
        Err(PeerError::Status {
            peer: peer.clone(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
            refusal: refusal_of(&bytes),
        })
    }

    /// Sends a request and returns the body of a 2xx answer (bounded in size).
    async fn exchange(
        &self,
        peer: &ServiceId,
        req: reqwest::RequestBuilder,
        timeout: Duration,
        limit: usize,
    ) -> Result<Vec<u8>, PeerError> {
        self.exchange_with(peer, req, timeout, limit, None)
            .await
            .map(|(bytes, _)| bytes)
    }

    /// [`Self::exchange`], with the answer's `header` when asked for.
    async fn exchange_with(
        &self,
        peer: &ServiceId,
        req: reqwest::RequestBuilder,
        timeout: Duration,
        limit: usize,
        header: Option<&str>,
    ) -> Result<(Vec<u8>, Option<reqwest::header::HeaderValue>), PeerError> {
        let _counted = InFlight::start(&self.in_flight);
        let resp = self.send(peer, req, timeout).await?;
        let value = header.and_then(|h| resp.headers().get(h).cloned());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.classify(peer, timeout, e))?;
        if bytes.len() > limit {
            return Err(PeerError::Other {
                peer: peer.clone(),
                detail: format!("answer too large ({} bytes)", bytes.len()),
            });
        }
        Ok((bytes.to_vec(), value))
    }

    async fn post_json<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        peer: &ServiceId,
        route: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<R, PeerError> {
        let req = self.http.post(format!("http://{peer}{route}")).json(body);
        let bytes = self.exchange(peer, req, timeout, MAX_ANSWER_BYTES).await?;
        serde_json::from_slice(&bytes).map_err(|e| PeerError::Other {
            peer: peer.clone(),
            detail: format!("unparsable answer: {e}"),
        })
    }

    /// A one-way notice (`/v1/peer/use`, `/left`, `/resync`, `/drop`): only
    /// whether the peer took it matters, not what it answered.
    pub async fn notify<T: serde::Serialize>(
        &self,
        peer: &ServiceId,
        route: &'static str,
        req: &T,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        self.post_json::<_, serde_json::Value>(peer, route, req, timeout)
            .await
            .map(|_| ())
    }

    pub async fn getvers(
        &self,
        peer: &ServiceId,
        req: &GetversRequest,
        timeout: Duration,
    ) -> Result<GetversReply, PeerError> {
        self.post_json(peer, "/v1/peer/getvers", req, timeout).await
    }

    /// Several GETVERS in one call: one answer per question, in order.
    pub async fn getvers_many(
        &self,
        peer: &ServiceId,
        batch: &GetversBatch,
        timeout: Duration,
    ) -> Result<Vec<GetversAnswer>, PeerError> {
        let answers: GetversAnswers = self
            .post_json(peer, "/v1/peer/getvers_many", batch, timeout)
            .await?;
        if answers.answers.len() != batch.asks.len() {
            return Err(PeerError::Other {
                peer: peer.clone(),
                detail: format!(
                    "{} answers to {} GETVERS",
                    answers.answers.len(),
                    batch.asks.len()
                ),
            });
        }
        Ok(answers.answers)
    }

    pub async fn create_replica(
        &self,
        peer: &ServiceId,
        info: &BaseInfo,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        self.post_json::<_, serde_json::Value>(peer, "/v1/peer/create", info, timeout)
            .await
            .map(|_| ())
    }

    pub async fn replicate(
        &self,
        peer: &ServiceId,
        req: &ReplicateRequest,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        self.post_json::<_, serde_json::Value>(peer, "/v1/peer/replicate", req, timeout)
            .await?;
        if self.lose_acks.load(Ordering::Relaxed) {
            return Err(PeerError::Other {
                peer: peer.clone(),
                detail: "fault switch: acknowledgement dropped".into(),
            });
        }
        Ok(())
    }

    /// Several REPLICATEs in one call (`body`: a `ReplicatesRequest` of `n`
    /// items). Returns once the peer took them, before they are decided;
    /// [`ReplicateLines::next`] then gives each one's fate as it comes. The
    /// call, the reading included, lasts at most `timeout`. Writes with no
    /// line by then have no answer: the error says why.
    pub async fn replicates(
        &self,
        peer: &ServiceId,
        body: Vec<u8>,
        n: usize,
        timeout: Duration,
    ) -> Result<ReplicateLines, PeerError> {
        let counted = InFlight::start(&self.in_flight);
        let req = self
            .http
            .post(format!("http://{peer}/v1/peer/replicates"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = self.send(peer, req, timeout).await?;
        Ok(ReplicateLines {
            client: self.clone(),
            peer: peer.clone(),
            resp,
            timeout,
            left: n,
            buf: Vec::new(),
            _counted: counted,
        })
    }

    pub async fn dump(
        &self,
        peer: &ServiceId,
        base: &BaseName,
        stype: &ServiceType,
        from: &ServiceId,
        timeout: Duration,
    ) -> Result<(Vec<u8>, u64), PeerError> {
        let req = self
            .bulk
            .get(format!("http://{peer}/v1/peer/dump"))
            .query(&[
                ("base", base.as_str()),
                ("type", stype.as_str()),
                ("from", from.as_str()),
            ]);
        let (bytes, floor) = self
            .exchange_with(peer, req, timeout, MAX_DUMP_BYTES, Some(BATCH_FLOOR))
            .await?;
        // 0 from a master that sends none (an older version): no floor.
        let floor = floor
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        Ok((bytes, floor))
    }
}

/// The answer of a `/v1/peer/replicates` call, read line by line.
pub struct ReplicateLines {
    client: PeerClient,
    peer: ServiceId,
    resp: reqwest::Response,
    timeout: Duration,
    /// Lines still expected.
    left: usize,
    buf: Vec<u8>,
    _counted: InFlight,
}

impl ReplicateLines {
    /// The next write decided, `Ok(None)` once every write has its line.
    /// An error leaves the writes without a line unanswered.
    pub async fn next(&mut self) -> Result<Option<ReplicateLine>, PeerError> {
        loop {
            if self.left == 0 {
                return Ok(None);
            }
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let parsed: ReplicateLine =
                    serde_json::from_slice(&line).map_err(|e| PeerError::Other {
                        peer: self.peer.clone(),
                        detail: format!("unparsable line of a replicates answer: {e}"),
                    })?;
                self.left -= 1;
                if self.client.lose_acks.load(Ordering::Relaxed) {
                    return Err(PeerError::Other {
                        peer: self.peer.clone(),
                        detail: "fault switch: acknowledgement dropped".into(),
                    });
                }
                return Ok(Some(parsed));
            }
            if self.buf.len() > MAX_ANSWER_BYTES {
                return Err(PeerError::Other {
                    peer: self.peer.clone(),
                    detail: "a replicates answer's line too large".into(),
                });
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => {
                    return Err(PeerError::Other {
                        peer: self.peer.clone(),
                        detail: format!("the answer ended with {} write(s) undecided", self.left),
                    })
                }
                Err(e) => return Err(self.client.classify(&self.peer, self.timeout, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_read_from_the_whole_body() {
        let long = "x".repeat(400);
        let cases = [
            (
                format!(r#"{{"status":409,"message":"{long}","refusal":"fenced"}}"#),
                Some(Refusal::Fenced),
            ),
            (
                r#"{"status":473,"message":"IS_MASTER: a is master","refusal":"is_master"}"#.into(),
                Some(Refusal::IsMaster),
            ),
            // The text alone means nothing.
            (
                r#"{"status":409,"message":"not following a (epoch 3)"}"#.into(),
                None,
            ),
            (
                r#"{"status":409,"message":"m","refusal":"from_the_future"}"#.into(),
                None,
            ),
            ("not json".into(), None),
        ];
        for (body, expected) in cases {
            assert_eq!(refusal_of(body.as_bytes()), expected, "{body}");
        }
    }
}
