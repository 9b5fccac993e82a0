//! One request to a base, wherever its master is: slaves answer 303 with
//! the master's id, and the redirect is followed here.

use crate::Target;
use serde_json::Value;
use std::time::Duration;

/// The final answer of the base (never a 303: too many redirects is 305).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The OpenIO code from the body (the HTTP status if the body has none).
    pub status: i64,
    pub message: String,
    pub body: Value,
    pub http: u16,
    /// The peer that gave this answer.
    pub from: String,
}

/// No peer answered before the deadline; one line per failed attempt.
#[derive(Debug, Clone)]
pub struct NoPeerAnswered {
    pub base: String,
    pub errors: Vec<String>,
}

impl std::fmt::Display for NoPeerAnswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no peer of {} answered before the deadline: {}",
            self.base,
            self.errors.join("; ")
        )
    }
}

impl std::error::Error for NoPeerAnswered {}

/// Sends `path` to the base: to the first peer that answers, following 303
/// redirects (at most 4, pausing 200, 400, 800 ms before the 2nd..4th, as
/// OpenIO's client does). A redirect to a master that just died fails with a
/// network error until the election moves on, so the peers are tried again
/// in rounds, with growing pauses, until the deadline.
pub async fn to_base(
    target: &Target<'_>,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, NoPeerAnswered> {
    let send = |peer: &str| {
        let mut req = target.request(method.clone(), peer, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send()
    };
    let deadline = tokio::time::Instant::now() + target.timeout;
    let mut errors = Vec::new();
    let mut pause = Duration::from_millis(250);
    loop {
        for first in target.peers {
            let mut peer = first.to_string();
            let mut redirects = 0u32;
            loop {
                let resp = match send(&peer).await {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push(format!("{peer}: {e}"));
                        break;
                    }
                };
                let http = resp.status().as_u16();
                let body = crate::read_json(resp).await.unwrap_or_default();
                let status = body["status"].as_i64().unwrap_or(i64::from(http));
                let message = body["message"].as_str().unwrap_or("").to_string();
                // Only to a peer of the base: a confused peer must not send
                // us (and our request) anywhere else.
                let known = target.peers.iter().any(|p| p.as_str() == message);
                if status == 303 && !known {
                    errors.push(format!(
                        "{peer}: redirected to {message:?}, not a peer of the base"
                    ));
                    break;
                }
                if status == 303 && redirects < 4 {
                    if redirects > 0 {
                        tokio::time::sleep(Duration::from_millis(200 << (redirects - 1))).await;
                    }
                    redirects += 1;
                    peer = message;
                    continue;
                }
                if status == 303 {
                    return Ok(Answer {
                        status: 305,
                        message: format!("Too many redirections (last: {message})"),
                        body,
                        http: 503,
                        from: peer,
                    });
                }
                return Ok(Answer {
                    status,
                    message,
                    body,
                    http,
                    from: peer,
                });
            }
        }
        if tokio::time::Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    errors.dedup();
    Err(NoPeerAnswered {
        base: target.base.to_string(),
        errors,
    })
}
