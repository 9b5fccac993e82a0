//! `openio election balance`: asks services to hand masterships over to
//! their peers. Each service leaves at most `--max` of its masterships,
//! least recently used first, paced by its own `balance_rate`; with
//! `--average`, only services above the average number of masters are
//! asked, each for its excess. Progress goes to stderr, the summary table
//! to stdout.

use crate::cli::Cli;
use crate::render::Cell;
use election_core::names::{Namespace, ServiceId, ServiceType};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// What to ask of each service.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub max: usize,
    pub inactivity: u64,
    pub average: bool,
    pub rejoin: bool,
}

/// Masters per service, from `/info` (None: it did not answer).
async fn masters(http: &reqwest::Client, s: &ServiceId) -> Option<i64> {
    let info: serde_json::Value = http
        .get(format!("http://{s}/info"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    info["elections"]["master"].as_i64()
}

/// How many masterships each service should leave: `max` each, or with
/// `average` the excess over the average (at most `max`), above-average
/// services only.
pub fn plan(counts: &[(ServiceId, Option<i64>)], ask: Ask) -> Vec<(ServiceId, usize)> {
    if !ask.average {
        return counts.iter().map(|(s, _)| (s.clone(), ask.max)).collect();
    }
    let known: Vec<i64> = counts.iter().filter_map(|(_, m)| *m).collect();
    if known.is_empty() {
        return Vec::new();
    }
    let avg = known.iter().sum::<i64>() as f64 / known.len() as f64;
    counts
        .iter()
        .filter_map(|(s, m)| {
            let excess = (m.map(|m| m as f64)? - avg).floor();
            (excess >= 1.0).then(|| (s.clone(), (excess as usize).min(ask.max)))
        })
        .collect()
}

fn progress(done: usize, total: usize, what: &str) {
    let width = 20;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
    let mut err = std::io::stderr().lock();
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let _ = write!(err, "\r\x1b[2K[{bar}] {done}/{total} {what}");
        if done == total {
            let _ = writeln!(err);
        }
    } else {
        let _ = writeln!(err, "[{bar}] {done}/{total} {what}");
    }
    let _ = err.flush();
}

pub async fn run(cli: &Cli, stype: &str, ids: &[String], ask: Ask) -> anyhow::Result<ExitCode> {
    let stype = ServiceType::new(stype.to_string())?;
    let services: Vec<ServiceId> = if ids.is_empty() {
        let ns = Namespace::new(cli.ns.clone())?;
        let hosts = crate::config::zookeeper_hosts(cli.zookeeper.as_deref(), &ns)?;
        let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
        let zk = crate::zkdir::Zk::connect(&hosts, &ns, timeout).await?;
        let live = zk.live_services(&stype).await;
        zk.close().await;
        live?
    } else {
        ids.iter()
            .map(|s| ServiceId::new(s.clone()))
            .collect::<Result<_, _>>()?
    };
    if services.is_empty() {
        anyhow::bail!(
            "no live {stype} service registered in namespace {}: nothing to balance",
            cli.ns
        );
    }
    let http = crate::service_client(cli)?;
    let counts: Vec<(ServiceId, Option<i64>)> = futures::future::join_all(
        services
            .iter()
            .map(|s| async { (s.clone(), masters(&http, s).await) }),
    )
    .await;
    let plan = plan(&counts, ask);
    if plan.is_empty() {
        eprintln!("nothing to balance: no service is above the average number of masters");
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for (i, (s, n)) in plan.iter().enumerate() {
        progress(
            i,
            plan.len(),
            &format!("asking {s} to leave up to {n} mastership(s)"),
        );
        // The service paces its leaves: give it one second per leave on top.
        let timeout =
            Duration::from_secs_f64(cli.timeout.max(0.1)) + Duration::from_secs(*n as u64);
        let sent = http
            .post(format!("http://{s}/v1/admin/balance"))
            .query(&[
                ("max", n.to_string()),
                ("inactivity", ask.inactivity.to_string()),
                ("rejoin", ask.rejoin.to_string()),
            ])
            .timeout(timeout)
            .send()
            .await;
        let before = counts
            .iter()
            .find(|(c, _)| c == s)
            .and_then(|(_, m)| *m)
            .map_or_else(|| "-".to_string(), |m| m.to_string());
        let (status, left, eligible, message) = match sent {
            Ok(resp) => {
                let http_status = i64::from(resp.status().as_u16());
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let status = body["status"].as_i64().unwrap_or(http_status);
                (
                    status,
                    body["count"].as_i64().map_or("-".into(), |c| c.to_string()),
                    body["eligible"]
                        .as_i64()
                        .map_or("-".into(), |c| c.to_string()),
                    body["message"].as_str().unwrap_or("").to_string(),
                )
            }
            Err(e) => (
                if e.is_timeout() { 7 } else { 2 },
                "-".into(),
                "-".into(),
                e.to_string(),
            ),
        };
        failed |= status != 200;
        rows.push(vec![
            Cell::Text(s.to_string()),
            Cell::Num(status),
            Cell::Text(before),
            Cell::Text(eligible),
            Cell::Text(left),
            Cell::Text(message),
        ]);
    }
    if !plan.is_empty() {
        progress(plan.len(), plan.len(), "done");
    }
    if rows.iter().any(|r| r.get(1) == Some(&Cell::Num(401))) {
        eprintln!("{}", crate::UNAUTHORIZED_HINT);
    }
    crate::print(
        cli.format,
        &["Id", "Status", "Masters", "Eligible", "Left", "Message"],
        &rows,
    );
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: u16) -> ServiceId {
        ServiceId::new(format!("127.0.0.1:{p}")).expect("valid")
    }

    #[test]
    fn average_asks_only_the_services_above_it_for_their_excess() {
        let counts = vec![
            (id(1), Some(9)),
            (id(2), Some(2)),
            (id(3), Some(1)),
            (id(4), None),
        ];
        let ask = Ask {
            max: 100,
            inactivity: 0,
            average: true,
            rejoin: true,
        };
        // Average 4: service 1 leaves 5, the others nothing.
        assert_eq!(plan(&counts, ask), vec![(id(1), 5)]);
        assert_eq!(plan(&counts, Ask { max: 3, ..ask }), vec![(id(1), 3)]);
        let even = vec![(id(1), Some(2)), (id(2), Some(2))];
        assert!(plan(&even, ask).is_empty());
        let all = plan(
            &counts,
            Ask {
                average: false,
                ..ask
            },
        );
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|(_, n)| *n == 100));
    }
}
