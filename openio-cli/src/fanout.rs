//! Asks every peer in parallel, each with its own timeout: a dead or hanging
//! peer costs one timeout, never the sum, and never hides the other rows.

use election_core::names::{BaseName, ServiceId, ServiceType};
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

pub async fn fan_out(
    peers: &[ServiceId],
    route: &str,
    base: &BaseName,
    stype: &ServiceType,
    timeout: Duration,
    request_id: Option<&str>,
) -> Vec<Row> {
    let connect_timeout = timeout.min(Duration::from_secs(5));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    // The peers' budget: 99 % of ours (as OpenIO's SDK), so they answer first.
    let budget_us = (timeout.as_micros() as u64) * 99 / 100;
    let calls = peers.iter().map(|peer| {
        let http = http.clone();
        async move {
            let mut req = http
                .post(format!("http://{peer}/v1/election/{route}"))
                .query(&[("base", base.as_str()), ("type", stype.as_str())])
                .header("x-oio-timeout", budget_us.to_string())
                .timeout(timeout);
            if let Some(id) = request_id {
                req = req.header("x-oio-req-id", id);
            }
            let id = peer.to_string();
            match req.send().await {
                Ok(resp) => {
                    let http_status = resp.status().as_u16();
                    match resp.json::<Value>().await {
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
    let text = format!("{e:?}");
    let (status, message) = if e.is_connect() && text.contains("ConnectionRefused") {
        (2, format!("{id}: [errno=111] Connection refused"))
    } else if e.is_connect() && e.is_timeout() {
        (
            5,
            format!(
                "Connect timeout ({:.1}s) to {id}",
                connect_timeout.as_secs_f64()
            ),
        )
    } else if e.is_timeout() {
        (7, "Timeout".to_string())
    } else {
        (10, format!("{id}: {e}"))
    };
    Row {
        id,
        status,
        message,
        answer: Value::Null,
    }
}
