//! `openio`: the troubleshooting CLI.
//!
//! `openio election ping|status|debug|leave|sync|history|check` finds the
//! peers of a base in the ZooKeeper directory (or takes them from
//! `--service-id`), asks them all in parallel, each with its own timeout,
//! and prints one row per peer, sorted by id, in the seed's format.
//! `openio container create|show|list` manage the directory.
//!
//! Modules: [`config`] (where ZooKeeper is), [`zkdir`] (directory and
//! election nodes in ZooKeeper), [`fanout`] (parallel peer calls),
//! [`election`] (tables, verdict, history, check), [`render`] (formats).

mod balance;
mod cli;
mod config;
mod election;
mod render;
mod report;
mod zkdir;

use clap::Parser;
use cli::{AdminCmd, Cli, Command, ContainerCmd, ElectionCmd, Format};
use election_client::{Answer, Row};
use election_core::names::{BaseName, ContainerId, Namespace, ServiceId, ServiceType};
use render::{render, Cell};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Prints a failed write the way the seed shows it.
fn write_failure(a: &Answer) -> String {
    // "Election failed [<base>][<type>]: ..." -> the seed's "Open/lock: ..." line.
    if let Some(rest) = a.message.strip_prefix("Election failed [") {
        if let Some(end) = rest.find("]:") {
            return format!(
                "Open/lock: Election failed [{}] (HTTP {}) (STATUS {})",
                &rest[..end],
                a.http,
                a.status
            );
        }
    }
    format!("{} (HTTP {}) (STATUS {})", a.message, a.http, a.status)
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

/// Everything a command needs to reach a base.
struct Ctx {
    ns: Namespace,
    stype: ServiceType,
    base: BaseName,
    timeout: Duration,
    zk_hosts: Option<String>,
    secret: Option<election_client::Secret>,
}

impl Ctx {
    fn new(cli: &Cli, stype: &str, reference: &str, cid: bool) -> anyhow::Result<Ctx> {
        let ns = Namespace::new(cli.ns.clone())?;
        let stype = ServiceType::new(stype.to_string())?;
        let base = if cid {
            ContainerId::parse(reference)?.meta2_base()
        } else {
            ContainerId::compute(&account(cli)?, reference).meta2_base()
        };
        Ok(Ctx {
            ns,
            stype,
            base,
            timeout: Duration::from_secs_f64(cli.timeout),
            zk_hosts: cli.zookeeper.clone(),
            secret: secret(cli)?,
        })
    }

    async fn zk(&self) -> anyhow::Result<zkdir::Zk> {
        let hosts = config::zookeeper_hosts(self.zk_hosts.as_deref(), &self.ns)?;
        zkdir::Zk::connect(&hosts, &self.ns, self.timeout).await
    }

    fn target<'a>(
        &'a self,
        http: &'a reqwest::Client,
        peers: &'a [ServiceId],
        request_id: Option<&'a str>,
    ) -> election_client::Target<'a> {
        election_client::Target {
            http,
            peers,
            base: &self.base,
            stype: &self.stype,
            timeout: self.timeout,
            request_id,
        }
    }

    /// Asks every peer in parallel (`POST /v1/election/<route>`).
    async fn fan_out(
        &self,
        peers: &[ServiceId],
        route: &str,
        request_id: Option<&str>,
    ) -> Vec<Row> {
        let http = election_client::client(
            self.timeout.min(election_client::CONNECT_TIMEOUT),
            self.secret.as_ref(),
        );
        election_client::fan_out(&self.target(&http, peers, request_id), route).await
    }

    /// Sends one request to the base, following slaves to the master.
    async fn to_base(
        &self,
        peers: &[ServiceId],
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        request_id: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let http = election_client::client(
            self.timeout.min(election_client::CONNECT_TIMEOUT),
            self.secret.as_ref(),
        );
        let target = self.target(&http, peers, request_id);
        Ok(election_client::to_base(&target, method, path, body.as_ref()).await?)
    }

    /// `--service-id`s, or the peers recorded in the directory.
    async fn peers(&self, ids: &[String]) -> anyhow::Result<Vec<ServiceId>> {
        if !ids.is_empty() {
            return Ok(ids
                .iter()
                .map(|s| ServiceId::new(s.clone()))
                .collect::<Result<Vec<_>, _>>()?);
        }
        let zk = self.zk().await?;
        let peers = zk.peers(&self.stype, &self.base).await;
        zk.close().await;
        peers
    }
}

/// The strings of a JSON array (empty when it is not one).
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The shared secret, from `--secret-file` (first line).
fn secret(cli: &Cli) -> anyhow::Result<Option<election_client::Secret>> {
    cli.secret_file
        .as_deref()
        .map(election_client::Secret::from_file)
        .transpose()
        .map_err(|why| anyhow::anyhow!("--secret-file: {why}"))
}

/// An HTTP client with the global timeout and the secret, for one service.
pub(crate) fn service_client(cli: &Cli) -> anyhow::Result<reqwest::Client> {
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(election_client::secret_headers(secret(cli)?.as_ref()))
        .build()?)
}

fn account(cli: &Cli) -> anyhow::Result<String> {
    cli.account
        .clone()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("no account: pass --oio-account/-a or set OIO_ACCOUNT (or use --cid)")
        })
}

pub(crate) fn print(format: Format, columns: &[&str], rows: &[Vec<Cell>]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(render(format, columns, rows).as_bytes());
    let _ = out.flush();
}

/// What to do about a 401: the services have a shared secret.
pub(crate) const UNAUTHORIZED_HINT: &str =
    "401 unauthorized: the services require their shared secret; \
pass --secret-file FILE or set OIO_ELECTION_SECRET_FILE (the file the services' secret_file names)";

/// The exit code of a table of peers; says what to do about 401 rows.
fn exit_for(rows: &[Row]) -> ExitCode {
    if rows.iter().any(|r| r.status == 401) {
        eprintln!("{UNAUTHORIZED_HINT}");
    }
    if rows.iter().all(Row::answered) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    // As OpenIO's CLI: every run has a request id, so that one grep finds
    // its lines on every service it reached.
    if cli.request_id.is_none() {
        cli.request_id = Some(election_client::new_request_id("CLI"));
    }
    match &cli.command {
        Command::Man => {
            print!("{}", include_str!(concat!(env!("OUT_DIR"), "/openio.1")));
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion { shell } => {
            let script = match shell {
                clap_complete::Shell::Bash => {
                    include_str!(concat!(env!("OUT_DIR"), "/openio.bash"))
                }
                clap_complete::Shell::Zsh => include_str!(concat!(env!("OUT_DIR"), "/openio.zsh")),
                clap_complete::Shell::Fish => {
                    include_str!(concat!(env!("OUT_DIR"), "/openio.fish"))
                }
                clap_complete::Shell::Elvish => {
                    include_str!(concat!(env!("OUT_DIR"), "/openio.elvish"))
                }
                _ => include_str!(concat!(env!("OUT_DIR"), "/openio.powershell")),
            };
            print!("{script}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Election(cmd) => run_election(&cli, cmd).await,
        Command::Container(cmd) => run_container(&cli, cmd).await,
        Command::Admin(cmd) => run_admin(&cli, cmd).await,
    }
}

async fn run_election(cli: &Cli, cmd: &ElectionCmd) -> anyhow::Result<ExitCode> {
    let req_id = cli.request_id.as_deref();
    let (route, target) = match cmd {
        ElectionCmd::Report {
            service_type,
            all,
            service_ids,
            findings,
            pending,
            concurrency,
        } => {
            return report::run(
                cli,
                report::Ask {
                    stype: service_type,
                    all: *all,
                    service_ids,
                    findings,
                    pending: *pending,
                    concurrency: *concurrency,
                },
            )
            .await
        }
        ElectionCmd::Balance {
            service_type,
            service_ids,
            max,
            inactivity,
            average,
            no_rejoin,
        } => {
            let ask = balance::Ask {
                max: *max,
                inactivity: *inactivity,
                average: *average,
                rejoin: !*no_rejoin,
            };
            return balance::run(cli, service_type, service_ids, ask).await;
        }
        ElectionCmd::SetAside(t) => return set_aside(cli, t).await,
        ElectionCmd::Ping(t) => ("ping", t),
        ElectionCmd::Status { target, .. } => ("status", target),
        ElectionCmd::Debug { target, .. }
        | ElectionCmd::History { target, .. }
        | ElectionCmd::Check { target, .. } => ("debug", target),
        ElectionCmd::Leave(t) => ("leave", t),
        ElectionCmd::Sync(t) => ("sync", t),
    };
    let ctx = Ctx::new(cli, &target.service_type, &target.reference, target.cid)?;
    let peers = ctx.peers(&target.service_ids).await?;
    match cmd {
        ElectionCmd::Status {
            long,
            watch: Some(every),
            ..
        } => {
            if !(every.is_finite() && *every > 0.0) {
                anyhow::bail!("--watch needs a positive number of seconds");
            }
            loop {
                let started = std::time::Instant::now();
                let frame = status_frame(cli, &ctx, &peers, *long, req_id).await?;
                print!(
                    "\x1b[2J\x1b[HEvery {every}s: openio election status {} {}    {}\n\n{frame}",
                    target.service_type,
                    target.reference,
                    chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
                );
                let _ = std::io::stdout().flush();
                tokio::time::sleep(
                    Duration::from_secs_f64(*every).saturating_sub(started.elapsed()),
                )
                .await;
            }
        }
        ElectionCmd::Status { long, .. } => {
            let rows = ctx.fan_out(&peers, "status", req_id).await;
            if *long {
                let (cols, cells) = election::long_rows(&rows);
                print(cli.format, &cols, &cells);
                let verdict = long_verdict(&ctx, &rows, &peers).await;
                if cli.format == Format::Table {
                    println!("{verdict}");
                } else {
                    eprintln!("{verdict}");
                }
            } else {
                let (cols, cells) = election::basic_rows(&rows, false, false);
                print(cli.format, &cols, &cells);
            }
            Ok(exit_for(&rows))
        }
        ElectionCmd::History { svg, html, .. } => {
            let rows = ctx.fan_out(&peers, "debug", req_id).await;
            let (cols, cells) = election::history_rows(&rows);
            if svg.is_some() || html.is_some() {
                let title = format!(
                    "openio election history {} {}",
                    target.service_type, target.reference
                );
                let lanes = election_client::timeline::lanes(&rows);
                if let Some(path) = svg {
                    std::fs::write(path, election_client::timeline::svg(&title, &lanes))
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                }
                if let Some(path) = html {
                    let table: Vec<[String; 3]> = cells
                        .iter()
                        .map(|r| {
                            std::array::from_fn(|i| r.get(i).map(Cell::text).unwrap_or_default())
                        })
                        .collect();
                    std::fs::write(
                        path,
                        election_client::timeline::html(&title, &lanes, &table),
                    )
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                }
            }
            print(cli.format, &cols, &cells);
            for r in rows.iter().filter(|r| !r.answered()) {
                eprintln!("{}: no history ({})", r.id, r.message);
            }
            Ok(exit_for(&rows))
        }
        ElectionCmd::Check { clean, .. } => check(cli, &ctx, &peers, *clean).await,
        _ => {
            let rows = ctx.fan_out(&peers, route, req_id).await;
            let human = matches!(cmd, ElectionCmd::Debug { human: true, .. });
            let (cols, cells) =
                election::basic_rows(&rows, matches!(route, "debug" | "sync"), human);
            print(cli.format, &cols, &cells);
            Ok(exit_for(&rows))
        }
    }
}

/// `openio election set-aside`: one service at a time, so that each one
/// checks that another copy remains before it moves its own.
async fn set_aside(cli: &Cli, target: &cli::Target) -> anyhow::Result<ExitCode> {
    if target.service_ids.is_empty() {
        anyhow::bail!(
            "name the replicas whose copy to set aside with --service-id (repeatable); \
             the copies of the other replicas are the ones kept"
        );
    }
    let ctx = Ctx::new(cli, &target.service_type, &target.reference, target.cid)?;
    let chosen = ctx.peers(&target.service_ids).await?;
    let all = ctx.peers(&[]).await?;
    if let Some(stranger) = chosen.iter().find(|id| !all.contains(id)) {
        anyhow::bail!("{stranger} is not a replica of this base (its replicas: {all:?})");
    }
    if all.iter().all(|p| chosen.contains(p)) {
        anyhow::bail!("--service-id names every replica of the base: keep at least one copy");
    }
    // Leaving the election and stopping it takes up to 10 s on the service.
    let budget = Duration::from_secs_f64(cli.timeout).max(Duration::from_secs(15));
    let http = election_client::client(election_client::CONNECT_TIMEOUT, ctx.secret.as_ref());
    let mut rows = Vec::new();
    for id in &chosen {
        let mut t = ctx.target(&http, std::slice::from_ref(id), cli.request_id.as_deref());
        t.timeout = budget;
        rows.extend(election_client::fan_out_path(&t, "/v1/admin/set-aside").await);
    }
    let (cols, cells) = election::basic_rows(&rows, true, false);
    print(cli.format, &cols, &cells);
    exit_for(&rows);
    Ok(if rows.iter().all(|r| r.status == 200) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn status_frame(
    cli: &Cli,
    ctx: &Ctx,
    peers: &[ServiceId],
    long: bool,
    req_id: Option<&str>,
) -> anyhow::Result<String> {
    let rows = ctx.fan_out(peers, "status", req_id).await;
    Ok(if long {
        let (cols, cells) = election::long_rows(&rows);
        format!(
            "{}{}\n",
            render(cli.format, &cols, &cells),
            long_verdict(ctx, &rows, peers).await
        )
    } else {
        let (cols, cells) = election::basic_rows(&rows, false, false);
        render(cli.format, &cols, &cells)
    })
}

async fn long_verdict(ctx: &Ctx, rows: &[Row], peers: &[ServiceId]) -> String {
    let nodes = match ctx.zk().await {
        Ok(zk) => {
            let nodes = zk.election_nodes(&ctx.stype, &ctx.base).await;
            zk.close().await;
            nodes.ok()
        }
        Err(_) => None,
    };
    let v = election::verdict(rows, nodes.as_deref(), peers);
    if nodes.is_none() {
        format!("Verdict: {v} (ZooKeeper not consulted)")
    } else {
        format!("Verdict: {v}")
    }
}

async fn check(cli: &Cli, ctx: &Ctx, peers: &[ServiceId], clean: bool) -> anyhow::Result<ExitCode> {
    let rows = ctx.fan_out(peers, "debug", cli.request_id.as_deref()).await;
    let current: Vec<(String, Option<i64>)> = rows
        .iter()
        .filter(|r| r.status == 200 && !r.answer["body"].is_null())
        .map(|r| (r.id.clone(), r.answer["body"]["local"]["id"].as_i64()))
        .collect();
    let zk = ctx.zk().await?;
    let nodes = zk.election_nodes(&ctx.stype, &ctx.base).await?;
    let verdicts = election::classify_nodes(&nodes, peers, &current);
    let mut actions = vec![String::new(); nodes.len()];
    let mut failed = false;
    if clean {
        // Last one first: deleting a lower node first would hand the lead to
        // the next rogue for a moment.
        for i in (0..nodes.len()).rev().filter(|i| verdicts[*i].rogue) {
            actions[i] = match zk.delete(&nodes[i]).await {
                Ok(()) => "deleted".into(),
                Err(e) => {
                    failed = true;
                    e.to_string()
                }
            };
        }
    }
    zk.close().await;
    let cells: Vec<Vec<Cell>> = nodes
        .iter()
        .zip(&verdicts)
        .zip(&actions)
        .map(|((n, v), a)| {
            vec![
                Cell::Text(n.name.clone()),
                Cell::Text(n.owner.clone()),
                Cell::Text(v.status.clone()),
                Cell::Text(a.clone()),
            ]
        })
        .collect();
    print(cli.format, &["Node", "Host", "Status", "Action"], &cells);
    for r in rows.iter().filter(|r| !r.answered()) {
        eprintln!(
            "{}: not asked for its current node ({}); its nodes are judged on ownership only",
            r.id, r.message
        );
    }
    Ok(if failed || !rows.iter().all(Row::answered) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_container(cli: &Cli, cmd: &ContainerCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerCmd::Create {
            reference,
            service_type,
            replicas,
        } => {
            let ctx = Ctx::new(cli, service_type, reference, false)?;
            let zk = ctx.zk().await?;
            let services = zk.live_services(&ctx.stype).await;
            zk.close().await;
            let services = services?;
            if services.is_empty() {
                anyhow::bail!(
                    "no live {} service registered in namespace {}: start election-server first",
                    ctx.stype,
                    ctx.ns
                );
            }
            let http = reqwest::Client::builder().timeout(ctx.timeout).build()?;
            let account = account(cli)?;
            let mut last_err = String::new();
            for s in &services {
                let resp = http
                    .post(format!("http://{s}/v1/container/create"))
                    .query(&[
                        ("acct", account.as_str()),
                        ("ref", reference.as_str()),
                        ("type", ctx.stype.as_str()),
                    ])
                    .query(&[("replicas", replicas)])
                    .send()
                    .await;
                match resp {
                    Ok(r) => {
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        let status = body["status"].as_i64().unwrap_or(0);
                        if status == 200 || status == 201 {
                            let peers: Vec<String> = strings(&body["peers"]);
                            let created = if status == 201 { "True" } else { "False" };
                            print(
                                cli.format,
                                &["Name", "Created", "Peers"],
                                &[vec![
                                    Cell::Text(reference.clone()),
                                    Cell::Text(created.into()),
                                    Cell::Text(peers.join(",")),
                                ]],
                            );
                            return Ok(ExitCode::SUCCESS);
                        }
                        anyhow::bail!(
                            "{s} refused: ({status}) {}",
                            body["message"].as_str().unwrap_or("")
                        );
                    }
                    Err(e) => last_err = format!("{s}: {e}"),
                }
            }
            anyhow::bail!("no live service answered: {last_err}")
        }
        ContainerCmd::Show {
            reference,
            service_type,
            cid,
        } => {
            let ctx = Ctx::new(cli, service_type, reference, *cid)?;
            let zk = ctx.zk().await?;
            let entry = zk.entry(&ctx.stype, &ctx.base).await;
            zk.close().await;
            let entry = entry?;
            let text = |k: &str| entry[k].as_str().unwrap_or("").to_string();
            let peers: Vec<String> = strings(&entry["peers"]);
            let ctime = entry["ctime_ms"]
                .as_i64()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let rows = vec![
                vec![Cell::Text("account".into()), Cell::Text(text("account"))],
                vec![
                    Cell::Text("base_name".into()),
                    Cell::Text(ctx.base.to_string()),
                ],
                vec![
                    Cell::Text("container".into()),
                    Cell::Text(text("reference")),
                ],
                vec![Cell::Text("ctime".into()), Cell::Text(ctime)],
                vec![Cell::Text("peers".into()), Cell::Text(peers.join(","))],
                vec![Cell::Text("type".into()), Cell::Text(ctx.stype.to_string())],
            ];
            let mut rows = rows;
            let peers: Vec<ServiceId> = peers
                .iter()
                .filter_map(|p| ServiceId::new(p.clone()).ok())
                .collect();
            match ctx
                .to_base(
                    &peers,
                    reqwest::Method::GET,
                    "/v1/container/props",
                    None,
                    cli.request_id.as_deref(),
                )
                .await
            {
                Ok(a) if a.status == 200 => {
                    rows.push(vec![
                        Cell::Text("version".into()),
                        Cell::Text(a.body["version"].as_str().unwrap_or("").into()),
                    ]);
                    for (k, v) in a.body["properties"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                    {
                        rows.push(vec![
                            Cell::Text(format!("meta.{k}")),
                            Cell::Text(v.as_str().unwrap_or("").into()),
                        ]);
                    }
                }
                Ok(a) => eprintln!("properties unavailable: {}", write_failure(&a)),
                Err(e) => eprintln!("properties unavailable: {e:#}"),
            }
            print(cli.format, &["Field", "Value"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        ContainerCmd::Set {
            reference,
            properties,
            service_type,
            cid,
        } => {
            let props: serde_json::Map<String, serde_json::Value> = properties
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            write_command(
                cli,
                service_type,
                reference,
                *cid,
                "/v1/container/set",
                serde_json::json!({ "properties": props }),
            )
            .await
        }
        ContainerCmd::Delete {
            reference,
            service_type,
            cid,
        } => {
            let ctx = Ctx::new(cli, service_type, reference, *cid)?;
            let peers = ctx.peers(&[]).await?;
            let a = ctx
                .to_base(
                    &peers,
                    reqwest::Method::POST,
                    "/v1/container/delete",
                    None,
                    cli.request_id.as_deref(),
                )
                .await?;
            if a.status != 200 {
                eprintln!("{}", write_failure(&a));
                return Ok(ExitCode::from(1));
            }
            let rows: Vec<Vec<Cell>> = a.body["replicas"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(p, o)| {
                    vec![
                        Cell::Text(p),
                        Cell::Text(o.as_str().unwrap_or("").to_string()),
                    ]
                })
                .collect();
            print(cli.format, &["Id", "Replica"], &rows);
            let all_dropped = rows
                .iter()
                .all(|r| r.get(1) == Some(&Cell::Text("dropped".into())));
            Ok(if all_dropped {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ContainerCmd::List { service_type } => {
            let ns = Namespace::new(cli.ns.clone())?;
            let stype = ServiceType::new(service_type.clone())?;
            let account = account(cli)?;
            let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
            let hosts = config::zookeeper_hosts(cli.zookeeper.as_deref(), &ns)?;
            let zk = zkdir::Zk::connect(&hosts, &ns, timeout).await?;
            let refs = zk.references(&stype, &account).await;
            zk.close().await;
            let rows: Vec<Vec<Cell>> = refs?.into_iter().map(|r| vec![Cell::Text(r)]).collect();
            print(cli.format, &["Name"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        ContainerCmd::Unset {
            reference,
            keys,
            service_type,
            cid,
        } => {
            write_command(
                cli,
                service_type,
                reference,
                *cid,
                "/v1/container/unset",
                serde_json::json!({ "keys": keys }),
            )
            .await
        }
    }
}

async fn write_command(
    cli: &Cli,
    stype: &str,
    reference: &str,
    cid: bool,
    route: &str,
    body: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(cli, stype, reference, cid)?;
    let peers = ctx.peers(&[]).await?;
    let a = ctx
        .to_base(
            &peers,
            reqwest::Method::POST,
            route,
            Some(body),
            cli.request_id.as_deref(),
        )
        .await?;
    if a.status == 200 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{}", write_failure(&a));
        Ok(ExitCode::from(1))
    }
}

async fn run_admin(cli: &Cli, cmd: &AdminCmd) -> anyhow::Result<ExitCode> {
    let http = service_client(cli)?;
    match cmd {
        AdminCmd::Info { service_id } => {
            let id = ServiceId::new(service_id.clone())?;
            let text_form = cli.format != Format::Json;
            let mut req = http.get(format!("http://{id}/info"));
            if text_form {
                req = req.query(&[("format", "text")]);
            }
            let body = req
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{id}: {e}"))?
                .text()
                .await?;
            print!("{body}");
            if !text_form {
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminCmd::ClearReadonly { service_id } => {
            let id = ServiceId::new(service_id.clone())?;
            let resp = http
                .post(format!("http://{id}/v1/admin/readonly/clear"))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let status = body["status"].as_i64().unwrap_or(0);
            if status == 200 {
                println!(
                    "{id}: emergency read-only mode {}",
                    if body["emergency_read_only_mode"] == 0 {
                        "cleared"
                    } else {
                        "still on for other bases"
                    }
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{id}: {}", body["message"].as_str().unwrap_or("no answer"));
                if status == 401 {
                    eprintln!("{UNAUTHORIZED_HINT}");
                }
                Ok(ExitCode::from(1))
            }
        }
    }
}
