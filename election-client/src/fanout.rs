//! Asks every peer in parallel, each with its own timeout: a dead or hanging
//! peer costs one timeout, never the sum, and never hides the other rows.

use crate::Target;
use serde_json::Value;
use std::time::Duration;

/// One peer's answer, with OpenIO's client-side codes for transport errors:
/// 2 connection refused, 5 connect timeout, 7 timeout, 10 other.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub status: i64,
    pub message: String,
    /// The whole answer (status, message, body, and the extra fields).
    pub answer: Value,
}

impl Row {
    /// Did the peer answer at all (whatever it said)?
    pub fn answered(&self) -> bool {
        self.status >= 100
    }
}

/// `POST /v1/election/<route>` to every peer of `target`; rows sorted by id.
pub async fn fan_out(target: &Target<'_>, route: &str) -> Vec<Row> {
    fan_out_path(target, &format!("/v1/election/{route}")).await
}

/// Like `fan_out`, to any POST route that names the base the same way.
pub async fn fan_out_path(target: &Target<'_>, path: &str) -> Vec<Row> {
    let connect_timeout = target.timeout.min(crate::CONNECT_TIMEOUT);
    let calls = target.peers.iter().map(|peer| {
        let req = target.request(reqwest::Method::POST, peer.as_str(), path);
        async move {
            let id = peer.to_string();
            match req.send().await {
                Ok(resp) => {
                    let http_status = resp.status().as_u16();
                    match crate::read_json(resp).await {
                        Ok(v) => Row {
                            id,
                            status: v["status"].as_i64().unwrap_or(i64::from(http_status)),
                            message: v["message"].as_str().unwrap_or("").to_string(),
                            answer: v,
                        },
                        Err(e) => Row {
                            id,
                            status: 10,
                            message: format!("unparsable answer (HTTP {http_status}): {e}"),
                            answer: Value::Null,
                        },
                    }
                }
                Err(e) => transport_error(id, &e, connect_timeout),
            }
        }
    });
    let mut rows = futures::future::join_all(calls).await;
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    rows
}

fn transport_error(id: String, e: &reqwest::Error, connect_timeout: Duration) -> Row {
    let why = crate::NoAnswer::of(e);
    let message = match why {
        crate::NoAnswer::Refused => format!("{id}: [errno=111] Connection refused"),
        crate::NoAnswer::ConnectTimeout => format!(
            "Connect timeout ({:.1}s) to {id}",
            connect_timeout.as_secs_f64()
        ),
        crate::NoAnswer::Timeout => "Timeout".to_string(),
        crate::NoAnswer::Other => format!("{id}: {e}"),
    };
    Row {
        id,
        status: why.code(),
        message,
        answer: Value::Null,
    }
}
