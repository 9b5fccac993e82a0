//! `openio election report <type>`: which bases of the namespace are
//! unhealthy, and why.
//!
//! Three sources, each asked once and in bulk, never per base: the
//! directory (every entry, listed and read with multi-reads), the election
//! nodes (every group directory listed the same way), and the
//! `/v1/elections` list of every service (registered, or named by the
//! directory), a few at a time. [`analyse`] turns what was seen into
//! findings; it reads nothing, so that the rules are tested on their own.
//!
//! The sources are read one after the other, while elections go on: what
//! is younger than the read (a state entered after the nodes were listed,
//! a node gone since) is not held against a base, and so that a cold
//! election is not reported, a pending state is a finding only once it
//! is older than `--pending`.

use crate::cli::Cli;
use crate::render::Cell;
use election_core::names::{BaseName, ElectionKey, Namespace, Seq, ServiceId, ServiceType};
use election_core::State;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub use crate::cli::Finding;

/// A base as the directory records it.
#[derive(Debug, Clone)]
pub struct DirBase {
    pub base: BaseName,
    /// `account/reference`, when the entry names them.
    pub container: Option<String>,
    pub peers: Vec<ServiceId>,
}

/// One election node, as listed.
#[derive(Debug, Clone)]
pub struct NodeSeen {
    pub path: String,
    pub seq: Seq,
    /// Read only for the nodes no peer holds (`None`: not read, or gone
    /// when read).
    pub owner: Option<String>,
}

/// One peer's election of one base, from its service's `/v1/elections`.
#[derive(Debug, Clone)]
pub struct PeerSeen {
    pub state: State,
    /// The master it follows (a MASTER names none).
    pub master: Option<ServiceId>,
    pub local_id: Option<Seq>,
    /// Time in its state when the service answered.
    pub since_ms: u64,
    pub reason: Option<String>,
}

/// One service: registered or not, and its answer or why there is none.
#[derive(Debug, Clone)]
pub struct ServiceSeen {
    pub registered: bool,
    pub answer: Result<ServiceView, String>,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceView {
    /// The bases whose divergence put it in emergency read-only mode.
    pub readonly: Vec<String>,
    pub stop_writes: Option<String>,
    pub elections: HashMap<BaseName, PeerSeen>,
    /// How long after the election nodes were listed it answered: a state
    /// younger than this may postdate the listing.
    pub answered_after_listing_ms: u64,
}

/// Everything seen, for [`analyse`].
#[derive(Debug)]
pub struct Seen {
    pub stype: ServiceType,
    pub bases: Vec<DirBase>,
    /// Election nodes per key.
    pub nodes: HashMap<String, Vec<NodeSeen>>,
    /// Children of the election directories that are no `<KEY>-<seq>`.
    pub garbage: Vec<String>,
    pub services: BTreeMap<ServiceId, ServiceSeen>,
    /// States pending for less long are not findings.
    pub pending_ms: u64,
}

/// One base's findings, with what an operator needs to look closer.
#[derive(Debug, Clone, Default)]
pub struct BaseReport {
    /// The base; for nodes of no known base, `?` and their key.
    pub base: String,
    pub container: Option<String>,
    pub findings: BTreeSet<Finding>,
    /// One line per peer: `id STATE`, `id -` (no election), `id down`.
    pub peers: Vec<String>,
    pub details: Vec<String>,
    /// Some peer runs its election, or it has nodes. A base nobody used
    /// lately runs none: that is healthy.
    pub running: bool,
    /// Its directory peers (or, for nodes of no known base, their owners):
    /// what `--service-id` selects on.
    pub services: Vec<ServiceId>,
}

impl BaseReport {
    fn flag(&mut self, f: Finding, detail: String) {
        self.findings.insert(f);
        self.details.push(detail);
    }
}

fn answered(seen: &Seen) -> impl Iterator<Item = (&ServiceId, &ServiceView)> {
    seen.services
        .iter()
        .filter_map(|(id, s)| s.answer.as_ref().ok().map(|v| (id, v)))
}

/// The current node of every election that the base's own peers run (as
/// they answered), per key: the nodes somebody holds. A node of a service
/// that is not a peer of the base is held by nobody: a clone or an old
/// host running the election is what `rogue-node` is for. Keys of no base
/// in the directory: any service's.
fn held_nodes(seen: &Seen) -> HashMap<String, HashSet<Seq>> {
    let peers: HashMap<&BaseName, &[ServiceId]> =
        seen.bases.iter().map(|b| (&b.base, &b.peers[..])).collect();
    let mut held: HashMap<String, HashSet<Seq>> = HashMap::new();
    for (id, view) in answered(seen) {
        for (base, p) in &view.elections {
            if peers.get(base).is_some_and(|ps| !ps.contains(id)) {
                continue;
            }
            if let Some(seq) = p.local_id.filter(|_| p.state != State::None) {
                let key = ElectionKey::compute(base, &seen.stype);
                held.entry(key.as_str().to_string())
                    .or_default()
                    .insert(seq);
            }
        }
    }
    held
}

/// The nodes whose owner must be read (paths): those no peer holds.
pub fn unheld_nodes(seen: &Seen) -> Vec<String> {
    let held = held_nodes(seen);
    seen.nodes
        .iter()
        .flat_map(|(key, nodes)| {
            let h = held.get(key);
            nodes
                .iter()
                .filter(move |n| !h.is_some_and(|h| h.contains(&n.seq)))
                .map(|n| n.path.clone())
        })
        .collect()
}

/// Every base's findings: the directory's bases in its order, then the
/// nodes of no known base. Healthy bases are included (no findings).
pub fn analyse(seen: &Seen) -> Vec<BaseReport> {
    let held = held_nodes(seen);
    let mut known = HashSet::new();
    let mut out = Vec::with_capacity(seen.bases.len());
    for b in &seen.bases {
        let key = ElectionKey::compute(&b.base, &seen.stype);
        let nodes = seen.nodes.get(key.as_str()).map_or(&[][..], |n| &n[..]);
        out.push(analyse_base(seen, b, nodes, held.get(key.as_str())));
        known.insert(key.as_str().to_string());
    }
    let mut orphans: Vec<_> = seen
        .nodes
        .iter()
        .filter(|(k, n)| !known.contains(*k) && !n.is_empty())
        .collect();
    orphans.sort_by(|a, b| a.0.cmp(b.0));
    for (key, nodes) in orphans {
        let mut r = BaseReport {
            base: format!("? {key}"),
            running: true,
            services: nodes
                .iter()
                .filter_map(|n| n.owner.as_deref().and_then(|o| ServiceId::new(o).ok()))
                .collect(),
            ..Default::default()
        };
        for n in nodes {
            let owner = n.owner.as_deref().unwrap_or("?");
            r.flag(
                Finding::RogueNode,
                format!(
                    "{}: owner {owner}, no base of the directory has this key",
                    n.path
                ),
            );
        }
        out.push(r);
    }
    if !seen.garbage.is_empty() {
        let mut r = BaseReport {
            base: "?".into(),
            running: true,
            ..Default::default()
        };
        for path in &seen.garbage {
            r.flag(
                Finding::RogueNode,
                format!("{path}: not a <KEY>-<seq> name"),
            );
        }
        out.push(r);
    }
    out
}

/// What a directory peer looks like in the report.
enum Peer<'a> {
    Down,
    Up(&'a ServiceView, Option<&'a PeerSeen>),
}

fn analyse_base(
    seen: &Seen,
    b: &DirBase,
    nodes: &[NodeSeen],
    held: Option<&HashSet<Seq>>,
) -> BaseReport {
    let mut r = BaseReport {
        base: b.base.to_string(),
        container: b.container.clone(),
        services: b.peers.clone(),
        ..Default::default()
    };
    let mut peers = Vec::with_capacity(b.peers.len());
    for p in &b.peers {
        let s = seen.services.get(p);
        let registered = s.is_some_and(|s| s.registered);
        let peer = match s.map(|s| &s.answer) {
            Some(Ok(view)) => {
                let e = view.elections.get(&b.base);
                r.peers
                    .push(format!("{p} {}", e.map_or("-", |e| e.state.as_str())));
                if !registered {
                    r.flag(
                        Finding::PeerDown,
                        format!("{p}: answers, but is not registered"),
                    );
                }
                if !view.readonly.is_empty() {
                    let on_this = view.readonly.iter().any(|x| x == b.base.as_str());
                    r.flag(
                        Finding::ReadOnly,
                        format!(
                            "{p}: emergency read-only mode ({} diverged base(s){})",
                            view.readonly.len(),
                            if on_this { ", this one among them" } else { "" }
                        ),
                    );
                }
                if let Some(why) = &view.stop_writes {
                    r.flag(Finding::StopWrites, format!("{p}: stop-writes: {why}"));
                }
                Peer::Up(view, e)
            }
            other => {
                r.peers.push(format!("{p} down"));
                let why = match other {
                    Some(Err(why)) => why.as_str(),
                    _ => "not asked",
                };
                let reg = if registered { "" } else { ", not registered" };
                r.flag(
                    Finding::PeerDown,
                    format!("{p}: not answering ({why}){reg}"),
                );
                Peer::Down
            }
        };
        peers.push((p, peer));
    }
    let running: Vec<(&ServiceId, &PeerSeen)> = peers
        .iter()
        .filter_map(|(p, peer)| match peer {
            Peer::Up(_, Some(e)) if e.state != State::None => Some((*p, *e)),
            _ => None,
        })
        .collect();
    r.running = !running.is_empty() || !nodes.is_empty();
    if !peers.is_empty() && peers.iter().all(|(_, p)| matches!(p, Peer::Down)) {
        r.flag(Finding::NoMaster, "no peer answers".into());
    }
    if !r.running {
        return r;
    }
    let pending_ms = seen.pending_ms;
    let masters: Vec<&ServiceId> = running
        .iter()
        .filter(|(_, e)| e.state == State::Master)
        .map(|(p, _)| *p)
        .collect();
    if masters.len() > 1 {
        let names: Vec<String> = masters.iter().map(|m| m.to_string()).collect();
        r.flag(
            Finding::MultiMaster,
            format!("{} all claim MASTER", names.join(", ")),
        );
    }
    let young = running
        .iter()
        .all(|(_, e)| !e.state.is_final() && e.state != State::Failed && e.since_ms < pending_ms);
    let up = peers.iter().any(|(_, p)| matches!(p, Peer::Up(..)));
    if masters.is_empty() && up && !young {
        let follows: Vec<String> = running
            .iter()
            .filter_map(|(p, e)| e.master.as_ref().map(|m| format!("{p} follows {m}")))
            .collect();
        let detail = if follows.is_empty() {
            "no peer claims MASTER".to_string()
        } else {
            format!("no peer claims MASTER ({})", follows.join(", "))
        };
        r.flag(Finding::NoMaster, detail);
    }
    let mut named: BTreeMap<&ServiceId, Vec<&ServiceId>> = BTreeMap::new();
    for (p, e) in &running {
        if e.state == State::Slave {
            if let Some(m) = &e.master {
                named.entry(m).or_default().push(*p);
            }
        }
    }
    let agreed = match masters.as_slice() {
        [m] => named.keys().all(|n| n == m),
        _ => named.len() <= 1,
    };
    if !agreed {
        let who: Vec<String> = named
            .iter()
            .map(|(m, by)| {
                let by: Vec<String> = by.iter().map(|p| p.to_string()).collect();
                format!("{m} (by {})", by.join(", "))
            })
            .chain(masters.iter().map(|m| format!("{m} (by itself)")))
            .collect();
        r.flag(
            Finding::Disagree,
            format!("peers name different masters: {}", who.join("; ")),
        );
    }
    for (p, e) in &running {
        let reason = e.reason.as_deref().unwrap_or("");
        if e.state == State::Failed {
            r.flag(Finding::Failed, format!("{p}: FAILED: {reason}"));
        } else if !e.state.is_final() && e.since_ms >= pending_ms {
            r.flag(
                Finding::Pending,
                format!(
                    "{p}: {} for {:.1} s: {reason}",
                    e.state,
                    e.since_ms as f64 / 1e3
                ),
            );
        }
    }
    // Idle expiry takes slaves out before their master (3.5 hours against
    // 4 by default), and a base only read keeps its master only: a peer out
    // of the election is a finding only beside a running slave.
    let slave_runs = running.iter().any(|(_, e)| e.state == State::Slave);
    let listed: HashSet<Seq> = nodes.iter().map(|n| n.seq).collect();
    for (p, peer) in &peers {
        let Peer::Up(view, e) = peer else { continue };
        match e {
            Some(e) if e.state != State::None => {
                let Some(seq) = e.local_id else { continue };
                if !listed.contains(&seq) && e.since_ms > view.answered_after_listing_ms {
                    r.flag(
                        Finding::MissingNode,
                        format!(
                            "{p}: its node {} is not in ZooKeeper",
                            election_core::names::format_seq(seq)
                        ),
                    );
                }
            }
            _ if slave_runs => r.flag(
                Finding::MissingNode,
                format!("{p}: runs no election while its peers do"),
            ),
            _ => {}
        }
    }
    for (id, s) in &seen.services {
        let Ok(view) = &s.answer else { continue };
        if b.peers.contains(id) {
            continue;
        }
        if let Some(e) = view
            .elections
            .get(&b.base)
            .filter(|e| e.state != State::None)
        {
            r.flag(
                Finding::RogueNode,
                format!(
                    "{id}: runs this base's election ({}) but is not one of its peers",
                    e.state
                ),
            );
        }
    }
    let is_peer = |o: &str| b.peers.iter().any(|p| p.as_str() == o);
    for n in nodes {
        if held.is_some_and(|h| h.contains(&n.seq)) {
            continue;
        }
        // Not read (held when listed), or gone when read: nothing wrong.
        let Some(owner) = n.owner.as_deref() else {
            continue;
        };
        if !is_peer(owner) {
            r.flag(
                Finding::RogueNode,
                format!("{}: owner {owner} is not a peer", n.path),
            );
            continue;
        }
        let current = peers.iter().find_map(|(p, peer)| match peer {
            Peer::Up(_, e) if p.as_str() == owner => Some(e.and_then(|e| {
                e.local_id
                    .filter(|_| e.state != State::None)
                    .map(election_core::names::format_seq)
            })),
            _ => None,
        });
        match current {
            // A down peer's node is its own business (peer-down says so).
            None => {}
            Some(None) => r.flag(
                Finding::RogueNode,
                format!("{}: {owner} runs no election", n.path),
            ),
            Some(Some(cur)) => r.flag(
                Finding::RogueNode,
                format!("{}: {owner}'s current node is {cur}", n.path),
            ),
        }
    }
    r
}

// ----- reading the sources -----

/// The answer of `/v1/elections`.
#[derive(serde::Deserialize)]
struct ElectionsDoc {
    #[serde(default)]
    readonly: Vec<String>,
    #[serde(default)]
    stop_writes: Option<String>,
    elections: Vec<ElectionEntry>,
}

#[derive(serde::Deserialize)]
struct ElectionEntry {
    base: String,
    state: String,
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    local_id: Option<Seq>,
    #[serde(default)]
    since_ms: u64,
    #[serde(default)]
    reason: Option<String>,
}

/// A progress line on stderr when it is a terminal (hidden otherwise).
struct Progress(indicatif::ProgressBar);

impl Progress {
    fn new(what: &str, total: Option<usize>) -> Progress {
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n as u64).with_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>22} [{bar:30}] {pos}/{len} ({elapsed})",
                )
                .expect("template")
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{msg:>22} {spinner} {pos} ({elapsed})")
                    .expect("template"),
            ),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message(what.to_string());
        Progress(bar)
    }
    fn inc(&self, n: usize) {
        self.0.inc(n as u64);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Reads the three sources: election nodes first (so that a state older
/// than their listing can be checked against it), then the directory,
/// then every service, then the owners of the nodes nobody holds.
pub async fn gather(
    zk: &crate::zkdir::Zk,
    stype: &ServiceType,
    http: &reqwest::Client,
    pending_ms: u64,
    concurrency: usize,
) -> anyhow::Result<Seen> {
    let layout = zk.layout().clone();
    let listed_at = std::time::Instant::now();
    let (depth, _) = stype.hash_layout();
    let mut seen = Seen {
        stype: stype.clone(),
        bases: Vec::new(),
        nodes: HashMap::new(),
        garbage: Vec::new(),
        services: BTreeMap::new(),
        pending_ms,
    };
    {
        let p = Progress::new("election directories", None);
        let dirs = zk
            .tree_leaves(&layout.election_root(stype), depth, &|n| p.inc(n))
            .await?;
        let p = Progress::new("election nodes", Some(dirs.len()));
        let children = zk.bulk_children(&dirs, &|n| p.inc(n)).await?;
        for (dir, names) in dirs.iter().zip(children) {
            for name in names.unwrap_or_default() {
                let path = format!("{dir}/{name}");
                match election_core::names::parse_node_name(&name) {
                    Some((key, seq)) => {
                        seen.nodes
                            .entry(key.to_string())
                            .or_default()
                            .push(NodeSeen {
                                path,
                                seq,
                                owner: None,
                            })
                    }
                    None => seen.garbage.push(path),
                }
            }
        }
    }
    {
        let root = format!("{}/dir/{stype}", layout.ns_root());
        let p = Progress::new("directory", None);
        let dirs = zk.tree_leaves(&root, 2, &|n| p.inc(n)).await?;
        let children = zk.bulk_children(&dirs, &|n| p.inc(n)).await?;
        let paths: Vec<String> = dirs
            .iter()
            .zip(children)
            .flat_map(|(dir, c)| {
                c.unwrap_or_default()
                    .into_iter()
                    .map(move |name| format!("{dir}/{name}"))
            })
            .collect();
        let p = Progress::new("directory entries", Some(paths.len()));
        let entries = zk.bulk_data(&paths, &|n| p.inc(n)).await?;
        for (path, data) in paths.iter().zip(entries) {
            let Some(data) = data else { continue }; // deleted meanwhile
            match dir_base(&data) {
                Ok(b) => seen.bases.push(b),
                Err(why) => eprintln!("openio: directory entry {path} is corrupt ({why}): skipped"),
            }
        }
    }
    let registered: BTreeSet<ServiceId> = zk.live_services(stype).await?.into_iter().collect();
    let mut ids: BTreeSet<ServiceId> = registered.clone();
    ids.extend(seen.bases.iter().flat_map(|b| b.peers.iter().cloned()));
    {
        use futures::StreamExt;
        let p = Progress::new("services", Some(ids.len()));
        let answers: Vec<(ServiceId, Result<ServiceView, String>)> = futures::stream::iter(ids)
            .map(|id| {
                let p = &p;
                async move {
                    // Taken once the whole list is in: every state's time
                    // in it is then older than this.
                    let got = service_elections(http, &id).await.map(|mut v| {
                        v.answered_after_listing_ms = listed_at.elapsed().as_millis() as u64;
                        v
                    });
                    p.inc(1);
                    (id, got)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (id, answer) in answers {
            let registered = registered.contains(&id);
            seen.services.insert(id, ServiceSeen { registered, answer });
        }
    }
    let unheld = unheld_nodes(&seen);
    if !unheld.is_empty() {
        let p = Progress::new("unheld nodes", Some(unheld.len()));
        let owners = zk.bulk_data(&unheld, &|n| p.inc(n)).await?;
        let owners: HashMap<&String, Option<Vec<u8>>> = unheld.iter().zip(owners).collect();
        for nodes in seen.nodes.values_mut() {
            for n in nodes.iter_mut() {
                if let Some(Some(data)) = owners.get(&n.path) {
                    n.owner = Some(owner_text(data));
                }
            }
        }
    }
    Ok(seen)
}

/// A directory entry's base, container and peers.
fn dir_base(data: &[u8]) -> Result<DirBase, String> {
    let v: serde_json::Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let base = v["base"]
        .as_str()
        .ok_or("no base")
        .and_then(|b| BaseName::parse(b).map_err(|_| "a malformed base"))?;
    let peers = v["peers"]
        .as_array()
        .ok_or("no peers")?
        .iter()
        .filter_map(|p| p.as_str().and_then(|s| ServiceId::new(s).ok()))
        .collect();
    let container = match (v["account"].as_str(), v["reference"].as_str()) {
        (Some(a), Some(r)) if !a.is_empty() => Some(format!("{a}/{r}")),
        _ => None,
    };
    Ok(DirBase {
        base,
        container,
        peers,
    })
}

/// A node's data as the owner it should name (lossy, truncated).
fn owner_text(data: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&data[..data.len().min(256)]).into_owned();
    if data.len() > 256 {
        s.push_str(&format!("… ({} bytes)", data.len()));
    }
    s
}

/// One service's elections, or why it could not give them.
async fn service_elections(http: &reqwest::Client, id: &ServiceId) -> Result<ServiceView, String> {
    let resp = http
        .get(format!("http://{id}/v1/elections"))
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let code = resp.status();
    if !code.is_success() {
        return Err(format!("HTTP {}", code.as_u16()));
    }
    let body = resp.bytes().await.map_err(|e| transport_error(&e))?;
    let doc: ElectionsDoc =
        serde_json::from_slice(&body).map_err(|e| format!("answered nonsense: {e}"))?;
    let mut elections = HashMap::with_capacity(doc.elections.len());
    for e in doc.elections {
        let (Ok(base), Some(state)) = (BaseName::parse(&e.base), State::parse(&e.state)) else {
            return Err(format!(
                "answered nonsense: election {:?} in state {:?}",
                e.base, e.state
            ));
        };
        let master = e.master.and_then(|m| ServiceId::new(m).ok());
        elections.insert(
            base,
            PeerSeen {
                state,
                master,
                local_id: e.local_id,
                since_ms: e.since_ms,
                reason: e.reason,
            },
        );
    }
    Ok(ServiceView {
        readonly: doc.readonly,
        stop_writes: doc.stop_writes,
        elections,
        answered_after_listing_ms: 0,
    })
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        e.to_string()
    }
}

// ----- the command -----

/// What `openio election report` was asked.
pub struct Ask<'a> {
    pub stype: &'a str,
    pub all: bool,
    pub service_ids: &'a [String],
    pub findings: &'a [Finding],
    pub pending: f64,
    pub concurrency: usize,
}

pub async fn run(cli: &Cli, ask: Ask<'_>) -> anyhow::Result<std::process::ExitCode> {
    if !(ask.pending.is_finite() && ask.pending >= 0.0) {
        anyhow::bail!("--pending must be a number of seconds, 0 or more");
    }
    let ns = Namespace::new(cli.ns.clone())?;
    let stype = ServiceType::new(ask.stype.to_string())?;
    let only: Vec<ServiceId> = ask
        .service_ids
        .iter()
        .map(|s| {
            ServiceId::new(s.clone())
                .map_err(|e| anyhow::anyhow!("--service-id {s:?}: {e} (expected host:port)"))
        })
        .collect::<anyhow::Result<_>>()?;
    let hosts = crate::config::zookeeper_hosts(cli.zookeeper.as_deref(), &ns)?;
    let timeout = std::time::Duration::from_secs_f64(cli.timeout);
    let started = std::time::Instant::now();
    let zk = crate::zkdir::Zk::connect(&hosts, &ns, timeout).await?;
    let http = crate::service_client(cli)?;
    let pending_ms = (ask.pending * 1e3) as u64;
    let seen = gather(&zk, &stype, &http, pending_ms, ask.concurrency).await;
    zk.close().await;
    let seen = seen?;
    let took = started.elapsed();
    let reports: Vec<BaseReport> = analyse(&seen)
        .into_iter()
        .filter(|r| only.is_empty() || r.services.iter().any(|s| only.contains(s)))
        .collect();
    let shown: Vec<&BaseReport> = reports
        .iter()
        .filter(|r| ask.all || !r.findings.is_empty())
        .filter(|r| ask.findings.is_empty() || ask.findings.iter().any(|f| r.findings.contains(f)))
        .collect();
    let line = summary(&stype, &reports, &seen, took);
    let rows: Vec<Vec<Cell>> = shown.iter().map(|r| row(&stype, r)).collect();
    if cli.format == crate::cli::Format::Table {
        println!("{line}");
        if !rows.is_empty() {
            crate::print(cli.format, &COLUMNS, &rows);
        }
    } else {
        eprintln!("{line}");
        crate::print(cli.format, &COLUMNS, &rows);
    }
    if seen
        .services
        .values()
        .any(|s| matches!(&s.answer, Err(e) if e == "HTTP 401"))
    {
        eprintln!("{}", crate::UNAUTHORIZED_HINT);
    }
    let unhealthy = shown.iter().any(|r| !r.findings.is_empty());
    Ok(std::process::ExitCode::from(u8::from(unhealthy)))
}

const COLUMNS: [&str; 6] = [
    "Base",
    "Container",
    "Findings",
    "Peers",
    "Detail",
    "Look closer",
];

/// `meta2: 12 bases (10 running an election), 8 healthy, 4 with findings:
/// no-master 1, peer-down 3 (read in 0.8 s)`.
fn summary(
    stype: &ServiceType,
    reports: &[BaseReport],
    seen: &Seen,
    took: std::time::Duration,
) -> String {
    let bases = reports.iter().filter(|r| !r.base.starts_with('?')).count();
    let running = reports.iter().filter(|r| r.running).count();
    let sick = reports.iter().filter(|r| !r.findings.is_empty()).count();
    let mut line = format!(
        "{stype}: {bases} bases ({running} running an election), {} healthy, {sick} with findings",
        reports.len() - sick
    );
    let counts: Vec<String> = <Finding as clap::ValueEnum>::value_variants()
        .iter()
        .filter_map(|f| {
            let n = reports.iter().filter(|r| r.findings.contains(f)).count();
            (n > 0).then(|| format!("{} {n}", f.as_str()))
        })
        .collect();
    if !counts.is_empty() {
        line.push_str(": ");
        line.push_str(&counts.join(", "));
    }
    let answered = seen.services.values().filter(|s| s.answer.is_ok()).count();
    line.push_str(&format!(
        " ({} of {} services answered, read in {:.1} s)",
        answered,
        seen.services.len(),
        took.as_secs_f64()
    ));
    line
}

fn row(stype: &ServiceType, r: &BaseReport) -> Vec<Cell> {
    let findings: Vec<&str> = r.findings.iter().map(|f| f.as_str()).collect();
    let findings = if findings.is_empty() {
        if r.running { "healthy" } else { "idle" }.to_string()
    } else {
        findings.join(",")
    };
    vec![
        Cell::Text(r.base.clone()),
        Cell::Text(r.container.clone().unwrap_or_else(|| "-".into())),
        Cell::Text(findings),
        Cell::Text(r.peers.join("\n")),
        Cell::Text(if r.details.is_empty() {
            "-".into()
        } else {
            r.details.join("\n")
        }),
        Cell::Text(look_closer(stype, r)),
    ]
}

/// The command that shows more about a base's findings.
fn look_closer(stype: &ServiceType, r: &BaseReport) -> String {
    let Some(cid) = BaseName::parse(&r.base).ok().and_then(|b| b.container_id()) else {
        return "-".into();
    };
    let nodes =
        r.findings.contains(&Finding::RogueNode) || r.findings.contains(&Finding::MissingNode);
    let verb = if nodes {
        "check"
    } else if r.findings.contains(&Finding::Failed) {
        "history"
    } else {
        "status"
    };
    let long = if verb == "status" { " --long" } else { "" };
    format!("openio election {verb} {stype} {cid} --cid{long}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> ServiceId {
        ServiceId::new(format!("127.0.0.1:{n}")).expect("id")
    }

    fn base() -> BaseName {
        BaseName::parse(&format!("{}.1", "A".repeat(64))).expect("base")
    }

    fn peer(state: State, master: Option<u16>, seq: Option<Seq>, since_ms: u64) -> PeerSeen {
        PeerSeen {
            state,
            master: master.map(id),
            local_id: seq,
            since_ms,
            reason: Some("why".into()),
        }
    }

    /// One base on 1, 2, 3; each peer's election (None: it runs none),
    /// and the nodes listed.
    fn seen(peers: [Option<PeerSeen>; 3], nodes: &[(Seq, Option<&str>)]) -> Seen {
        let stype = ServiceType::new("meta2").expect("type");
        let b = base();
        let key = ElectionKey::compute(&b, &stype);
        let mut services = BTreeMap::new();
        for (i, p) in peers.into_iter().enumerate() {
            let mut view = ServiceView {
                answered_after_listing_ms: 100,
                ..Default::default()
            };
            if let Some(p) = p {
                view.elections.insert(b.clone(), p);
            }
            services.insert(
                id(i as u16 + 1),
                ServiceSeen {
                    registered: true,
                    answer: Ok(view),
                },
            );
        }
        let nodes = nodes
            .iter()
            .map(|(seq, owner)| NodeSeen {
                path: format!("/el/{key}-{}", election_core::names::format_seq(*seq)),
                seq: *seq,
                owner: owner.map(String::from),
            })
            .collect();
        Seen {
            stype,
            bases: vec![DirBase {
                base: b,
                container: Some("a/r".into()),
                peers: vec![id(1), id(2), id(3)],
            }],
            nodes: HashMap::from([(key.as_str().to_string(), nodes)]),
            garbage: Vec::new(),
            services,
            pending_ms: 10_000,
        }
    }

    fn found(s: &Seen) -> Vec<&'static str> {
        let r = analyse(s);
        assert_eq!(r.len(), 1, "{r:?}");
        r[0].findings.iter().map(|f| f.as_str()).collect()
    }

    const SETTLED: u64 = 60_000;

    fn healthy() -> [Option<PeerSeen>; 3] {
        [
            Some(peer(State::Master, None, Some(1), SETTLED)),
            Some(peer(State::Slave, Some(1), Some(2), SETTLED)),
            Some(peer(State::Slave, Some(1), Some(3), SETTLED)),
        ]
    }

    #[test]
    fn a_settled_base_and_an_idle_one_are_healthy() {
        let s = seen(healthy(), &[(1, None), (2, None), (3, None)]);
        assert!(found(&s).is_empty());
        assert!(unheld_nodes(&s).is_empty());
        let idle = seen([None, None, None], &[]);
        assert!(found(&idle).is_empty());
        assert!(!analyse(&idle)[0].running);
    }

    #[test]
    fn masters_counted_and_named() {
        let mut p = healthy();
        p[1] = Some(peer(State::Master, None, Some(2), SETTLED));
        let s = seen(p, &[(1, None), (2, None), (3, None)]);
        assert_eq!(found(&s), ["multi-master"]);
        let mut p = healthy();
        p[2] = Some(peer(State::Slave, Some(2), Some(3), SETTLED));
        let s = seen(p, &[(1, None), (2, None), (3, None)]);
        assert_eq!(found(&s), ["disagree"]);
        let mut p = healthy();
        p[0] = Some(peer(State::Failed, None, None, SETTLED));
        let s = seen(p, &[(2, None), (3, None)]);
        assert_eq!(found(&s), ["no-master", "failed"]);
    }

    #[test]
    fn a_young_election_is_not_a_finding_an_old_one_is() {
        let young = [
            Some(peer(State::CheckingSlaves, None, Some(1), 50)),
            Some(peer(State::Listing, None, Some(2), 50)),
            None,
        ];
        let s = seen(young, &[(1, None), (2, None)]);
        assert!(found(&s).is_empty(), "{:?}", found(&s));
        let old = [
            Some(peer(State::CheckingSlaves, None, Some(1), 20_000)),
            Some(peer(State::Listing, None, Some(2), 50)),
            None,
        ];
        let s = seen(old, &[(1, None), (2, None)]);
        assert_eq!(found(&s), ["no-master", "pending"]);
    }

    #[test]
    fn nodes_missing_or_held_by_nobody() {
        // A settled election with a peer out of it.
        let mut p = healthy();
        p[2] = None;
        let s = seen(p, &[(1, None), (2, None)]);
        assert_eq!(found(&s), ["missing-node"]);
        // Both slaves out, the master still in: idle expiry's order, or a
        // base only read. Healthy.
        let mut p = healthy();
        p[1] = None;
        p[2] = None;
        let s = seen(p, &[(1, None)]);
        assert!(found(&s).is_empty(), "{:?}", found(&s));
        // A node a peer claims is not listed: a finding only when its
        // state is older than the listing.
        let s = seen(healthy(), &[(1, None), (2, None)]);
        assert_eq!(found(&s), ["missing-node"]);
        let mut p = healthy();
        p[2] = Some(peer(State::Slave, Some(1), Some(3), 20));
        let s = seen(p, &[(1, None), (2, None)]);
        assert!(found(&s).is_empty());
        // Nodes nobody holds: a stranger's, a peer's old one, one gone.
        let s = seen(
            healthy(),
            &[
                (1, None),
                (2, None),
                (3, None),
                (7, Some("10.0.0.1:1")),
                (8, Some("127.0.0.1:2")),
                (9, None),
            ],
        );
        assert_eq!(unheld_nodes(&s).len(), 3);
        assert_eq!(found(&s), ["rogue-node"]);
        let details = &analyse(&s)[0].details;
        assert!(
            details[0].ends_with("owner 10.0.0.1:1 is not a peer"),
            "{details:?}"
        );
        assert!(
            details[1].ends_with("127.0.0.1:2's current node is 0000000002"),
            "{details:?}"
        );
    }

    /// `--finding` takes the names the report prints.
    #[test]
    fn finding_names_are_the_flag_values() {
        use clap::ValueEnum;
        for f in Finding::value_variants() {
            let value = f.to_possible_value().expect("a value");
            assert_eq!(value.get_name(), f.as_str());
        }
    }

    /// A service that is not a peer (a clone, an old host) runs the
    /// election: its node is held by nobody, and it is named.
    #[test]
    fn a_stranger_running_the_election_is_rogue() {
        let mut s = seen(healthy(), &[(1, None), (2, None), (3, None), (7, None)]);
        let mut view = ServiceView::default();
        view.elections
            .insert(base(), peer(State::Master, None, Some(7), SETTLED));
        s.services.insert(
            id(9),
            ServiceSeen {
                registered: true,
                answer: Ok(view),
            },
        );
        assert_eq!(unheld_nodes(&s).len(), 1, "the stranger's node is read");
        for n in s.nodes.values_mut().flatten() {
            if n.seq == 7 {
                n.owner = Some("127.0.0.1:9".into());
            }
        }
        assert_eq!(found(&s), ["rogue-node"]);
        let details = &analyse(&s)[0].details;
        assert!(
            details[0].starts_with("127.0.0.1:9: runs this base's election (MASTER)"),
            "{details:?}"
        );
        assert!(
            details[1].ends_with("owner 127.0.0.1:9 is not a peer"),
            "{details:?}"
        );
    }

    #[test]
    fn services_down_read_only_or_stopped() {
        let mut s = seen(healthy(), &[(1, None), (2, None), (3, None)]);
        s.services.get_mut(&id(3)).expect("3").answer = Err("connection refused".into());
        s.services.get_mut(&id(3)).expect("3").registered = false;
        let view = s
            .services
            .get_mut(&id(2))
            .expect("2")
            .answer
            .as_mut()
            .expect("up");
        view.readonly = vec!["X.1".into()];
        view.stop_writes = Some("disk 99% full".into());
        assert_eq!(found(&s), ["read-only", "stop-writes", "peer-down"]);
        let r = &analyse(&s)[0];
        assert!(
            r.details.contains(
                &"127.0.0.1:3: not answering (connection refused), not registered".to_string()
            ),
            "{r:?}"
        );
        assert_eq!(r.peers[2], "127.0.0.1:3 down");
        for p in s.services.values_mut() {
            p.answer = Err("timeout".into());
        }
        assert_eq!(found(&s), ["no-master", "peer-down"]);
    }
}
