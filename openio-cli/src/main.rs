//! `openio`: the troubleshooting CLI. `openio election ping|status|debug|leave|sync`
//! finds the peers of a base in the ZooKeeper directory (or takes them from
//! `--service-id`), asks them all in parallel, each with its own timeout,
//! and prints one row per peer, sorted by id, in the seed's format.
//!
//! Modules: [`render`] (output formats).

mod render;

use clap::{Parser, Subcommand};
use election_core::names::{BaseName, ContainerId, Namespace, ServiceId, ServiceType, ZkLayout};
use render::{pretty_json, render, Cell, Format};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const AFTER_HELP: &str = "\
Configuration precedence: command-line flag > environment (OIO_NS, OIO_ACCOUNT,
OIO_ZOOKEEPER) > the [<NS>] section, key `zookeeper`, of /etc/oio/sds.conf.d/*,
/etc/oio/sds.conf or ~/.oio/sds.conf (later files win).

Exit codes: 0 every peer answered; 1 the command ran but some peer did not
answer (refused, timeout); 2 usage or fatal error.";

/// Troubleshoot per-base elections of an OpenIO-style namespace.
#[derive(Debug, Parser)]
#[command(name = "openio", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Namespace.
    #[arg(long, env = "OIO_NS", default_value = "OPENIO", global = true)]
    ns: String,
    /// Account owning the reference.
    #[arg(short = 'a', long = "oio-account", env = "OIO_ACCOUNT", global = true)]
    account: Option<String>,
    /// The namespace's ZooKeeper (host:port[,host:port...]).
    #[arg(long, env = "OIO_ZOOKEEPER", global = true)]
    zookeeper: Option<String>,
    /// Seconds to wait for each peer (all peers are asked in parallel).
    #[arg(short = 't', long, default_value_t = 30.0, global = true)]
    timeout: f64,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table", global = true)]
    format: Format,
    /// Request id sent to the services (x-oio-req-id).
    #[arg(long, global = true)]
    request_id: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Election troubleshooting.
    #[command(subcommand)]
    Election(ElectionCmd),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// Service type (meta2, ...).
    service_type: String,
    /// Container name (with --oio-account), or a container id with --cid.
    reference: String,
    /// Interpret the reference as a container id.
    #[arg(long)]
    cid: bool,
    /// Ask only these peers (repeatable); skips the directory lookup.
    #[arg(long = "service-id")]
    service_ids: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum ElectionCmd {
    /// Trigger or refresh the election on every peer (returns at once).
    Ping(Target),
    /// Get the status of the election, triggering it if needed (waits).
    Status(Target),
    /// Dump each peer's view of the election, with its transition log.
    Debug {
        #[command(flatten)]
        target: Target,
        /// Show log entries as local dates: `YYYY-mm-dd HH:MM:SS.mmm PRE, EVENT -> POST`.
        #[arg(long)]
        human: bool,
    },
    /// Ask the peers to leave the election.
    Leave(Target),
    /// Ask slaves to re-copy the base from the master.
    Sync(Target),
}

struct Row {
    id: String,
    status: i64,
    message: String,
    body: Option<Value>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openio: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("openio: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Command::Election(cmd) = &cli.command;
    let (route, target, human) = match cmd {
        ElectionCmd::Ping(t) => ("ping", t, false),
        ElectionCmd::Status(t) => ("status", t, false),
        ElectionCmd::Debug { target, human } => ("debug", target, *human),
        ElectionCmd::Leave(t) => ("leave", t, false),
        ElectionCmd::Sync(t) => ("sync", t, false),
    };
    if !(cli.timeout.is_finite() && cli.timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let ns = Namespace::new(cli.ns.clone())?;
    let stype = ServiceType::new(target.service_type.clone())?;
    let base = if target.cid {
        ContainerId::parse(&target.reference)?.meta2_base()
    } else {
        let account = cli.account.clone().ok_or_else(|| {
            anyhow::anyhow!("no account: pass --oio-account/-a or set OIO_ACCOUNT (or use --cid)")
        })?;
        ContainerId::compute(&account, &target.reference).meta2_base()
    };
    let timeout = Duration::from_secs_f64(cli.timeout);
    let peers = if target.service_ids.is_empty() {
        let hosts = zookeeper_hosts(&cli, &ns)?;
        directory_peers(&hosts, &ns, &stype, &base, timeout).await?
    } else {
        target
            .service_ids
            .iter()
            .map(|s| ServiceId::new(s.clone()))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut rows = fan_out(
        &peers,
        route,
        &base,
        &stype,
        timeout,
        cli.request_id.as_deref(),
    )
    .await;
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let with_body = matches!(route, "debug" | "sync");
    let columns: Vec<&str> = if with_body {
        vec!["Id", "Status", "Message", "Body"]
    } else {
        vec!["Id", "Status", "Message"]
    };
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
                Cell::Text(r.id.clone()),
                Cell::Num(r.status),
                Cell::Text(r.message.clone()),
            ];
            if with_body {
                let body = match &r.body {
                    None | Some(Value::Null) => String::new(),
                    Some(b) if human => pretty_json(&humanize(b)),
                    Some(b) => pretty_json(b),
                };
                row.push(Cell::Text(body));
            }
            row
        })
        .collect();
    print!("{}", render(cli.format, &columns, &cells));
    let all_answered = rows.iter().all(|r| r.status >= 100);
    Ok(if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// flag > environment (both via clap) > sds.conf files.
fn zookeeper_hosts(cli: &Cli, ns: &Namespace) -> anyhow::Result<String> {
    if let Some(z) = &cli.zookeeper {
        return Ok(z.clone());
    }
    let mut files: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/oio/sds.conf.d") {
        let mut v: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        v.sort();
        files.extend(v);
    }
    files.push(PathBuf::from("/etc/oio/sds.conf"));
    if let Some(home) = std::env::var_os("HOME") {
        files.push(PathBuf::from(home).join(".oio/sds.conf"));
    }
    let mut found = None;
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            if let Some(v) = ini_value(&text, ns.as_str(), "zookeeper") {
                found = Some(v);
            }
        }
    }
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "no ZooKeeper known for namespace {ns}: pass --zookeeper HOST:PORT, set OIO_ZOOKEEPER, \
             or add `zookeeper=HOST:PORT` to the [{ns}] section of ~/.oio/sds.conf"
        )
    })
}

fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    let mut out = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            in_section = &line[1..line.len() - 1] == section;
        } else if in_section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    out = Some(v.trim().to_string());
                }
            }
        }
    }
    out
}

async fn directory_peers(
    hosts: &str,
    ns: &Namespace,
    stype: &ServiceType,
    base: &BaseName,
    timeout: Duration,
) -> anyhow::Result<Vec<ServiceId>> {
    let connect = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_connection_timeout(timeout.min(Duration::from_secs(5)))
        .connect(hosts);
    let client = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| anyhow::anyhow!("ZooKeeper {hosts} did not answer within {timeout:?}"))?
        .map_err(|e| anyhow::anyhow!("cannot reach ZooKeeper {hosts}: {e}"))?;
    let path = ZkLayout::new(ns.clone()).directory_node(stype, base);
    let result = tokio::time::timeout(timeout, client.get_data(&path)).await;
    let mut states = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(Duration::from_millis(500), states.changed()).await;
    let data = match result {
        Err(_) => anyhow::bail!("ZooKeeper {hosts} did not answer within {timeout:?}"),
        Ok(Err(zookeeper_client::Error::NoNode)) => anyhow::bail!(
            "no {stype} base {base} in namespace {ns} (directory node {path} missing): check the account and reference, or pass --service-id"
        ),
        Ok(Err(e)) => anyhow::bail!("reading {path}: {e}"),
        Ok(Ok((data, _))) => data,
    };
    let entry: Value = serde_json::from_slice(&data)
        .map_err(|e| anyhow::anyhow!("directory node {path} is corrupt: {e}"))?;
    let peers = entry["peers"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("directory node {path} has no peers"))?
        .iter()
        .filter_map(|p| p.as_str().and_then(|s| ServiceId::new(s).ok()))
        .collect();
    Ok(peers)
}

async fn fan_out(
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
                            body: v.get("body").cloned(),
                        },
                        Err(e) => Row {
                            id,
                            status: 10,
                            message: format!("unparsable answer (HTTP {http_status}): {e}"),
                            body: None,
                        },
                    }
                }
                Err(e) => transport_error(id, &e, timeout, connect_timeout),
            }
        }
    });
    futures::future::join_all(calls).await
}

fn transport_error(
    id: String,
    e: &reqwest::Error,
    timeout: Duration,
    connect_timeout: Duration,
) -> Row {
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
        let _ = timeout;
        (7, "Timeout".to_string())
    } else {
        (10, format!("{id}: {e}"))
    };
    Row {
        id,
        status,
        message,
        body: None,
    }
}

/// Rewrites `"<ms>:<PRE>:<EVENT>:<POST>"` log entries as local dates.
fn humanize(body: &Value) -> Value {
    let mut out = body.clone();
    if let Some(log) = out.get_mut("log").and_then(Value::as_array_mut) {
        for entry in log.iter_mut() {
            if let Some(s) = entry.as_str() {
                *entry = Value::String(human_entry(s));
            }
        }
    }
    out
}

fn human_entry(s: &str) -> String {
    let parts: Vec<&str> = s.splitn(4, ':').collect();
    let [ms, pre, event, post] = parts[..] else {
        return s.to_string();
    };
    let Ok(ms) = ms.parse::<i64>() else {
        return s.to_string();
    };
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return s.to_string();
    };
    let local = t.with_timezone(&chrono::Local);
    format!(
        "{} {pre}, {event} -> {post}",
        local.format("%Y-%m-%d %H:%M:%S%.3f")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_lookup() {
        let text =
            "[OTHER]\nzookeeper=1.1.1.1:1\n[OPENIO]\n# comment\nzookeeper = 127.0.0.1:2181\n";
        assert_eq!(
            ini_value(text, "OPENIO", "zookeeper").as_deref(),
            Some("127.0.0.1:2181")
        );
        assert_eq!(ini_value(text, "NOPE", "zookeeper"), None);
    }

    #[test]
    fn human_log_entries() {
        let h = human_entry("1712345678901:LISTING:LIST_OK:ASKING");
        assert!(h.ends_with(" LISTING, LIST_OK -> ASKING"), "{h}");
        assert_eq!(
            h.len(),
            "2024-04-05 19:34:38.901".len() + " LISTING, LIST_OK -> ASKING".len()
        );
        assert!(h.contains(".901 "), "{h}");
        assert_eq!(human_entry("garbage"), "garbage");
        let key = election_core::names::ElectionKey::compute(
            &ContainerId::compute("myaccount", "FVE0").meta2_base(),
            &ServiceType::new("meta2").expect("t"),
        );
        assert!(key.as_str().starts_with("D9EAF789"));
    }
}
