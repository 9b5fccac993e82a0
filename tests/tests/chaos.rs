//! Real-process chaos: 3 services on real ZooKeeper, 4 writers on 50 bases
//! and 4 more on 2 hot bases (concurrent writes to one base: batches of
//! several writes, at most 2 each so that masters pipeline them, issue 16)
//! that keep writing through every fault, and for
//! a bounded time faults
//! drawn at random (each kind at least once): kill -9 and restart a service,
//! SIGSTOP beyond the session timeout then SIGCONT (the zombie master),
//! leave storms, a ZooKeeper restart (or, on an ensemble, its leader
//! killed), one service cut from ZooKeeper alone. No lock is held around
//! client I/O, so faults land on writes in flight.
//!
//! The test reads ZooKeeper itself meanwhile (its own client), and samples
//! the services' MASTER claims. The checkers then verify, from the client
//! history, that evidence and every replica's data: no acknowledged write
//! lost and overwritten keys at their last acknowledged value; each fencing
//! epoch acknowledged by one master, the one ZooKeeper says created it;
//! every claim on a node ZooKeeper gives to that service and session; no
//! acknowledgement under an older epoch after a newer one; after healing,
//! one master per base on the lowest node, owned by its session, and
//! identical replicas.
//!
//! `CHAOS_SECONDS` (default 25) sets the fault period, `CHAOS_SEED` the
//! seed (printed: `REPRODUCE WITH: CHAOS_SEED=<n> ...`). `scripts/chaos.sh
//! --minutes N` runs long ones.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use system_tests::{Cluster, ServiceOpts};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One client write, as the client saw it.
#[derive(Debug, Clone)]
struct Attempt {
    base: String,
    key: String,
    value: String,
    sent: Instant,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
enum Outcome {
    /// Acknowledged: by which master, under which fencing epoch, when.
    Acked {
        master: String,
        epoch: i64,
        at: Instant,
    },
    /// Anything else: refused, timed out, or no answer. The write may or may
    /// not have been applied.
    NotAcked,
}

/// What the writers share with the fault injector: never a lock held across
/// a request, so a fault lands while writes are in flight.
#[derive(Default)]
struct Traffic {
    stop: AtomicBool,
    /// Each writer's request in flight: the peer it was sent to.
    in_flight: std::sync::Mutex<HashMap<u64, String>>,
    history: std::sync::Mutex<Vec<Attempt>>,
}

impl Traffic {
    /// (writes in flight, how many of them were sent to `id`).
    fn in_flight_on(&self, id: &str) -> (usize, usize) {
        let f = self.in_flight.lock().expect("in-flight lock");
        (f.len(), f.values().filter(|t| *t == id).count())
    }
}

/// One writer of the chaos: its number and its own client of the peers.
struct ChaosWriter {
    number: u64,
    http: reqwest::Client,
    ids: Vec<String>,
    traffic: Arc<Traffic>,
}

impl ChaosWriter {
    /// One write as a client makes it: to peer `first`, following redirects,
    /// and on to the next peer when one refuses connections. Needs no cluster:
    /// only the peers' ids.
    async fn write_once(
        &self,
        first: usize,
        base: &str,
        key: &str,
        value: &str,
    ) -> Option<(String, i64)> {
        let ids = &self.ids;
        let mut next = first;
        let mut target = ids[next % ids.len()].clone();
        for _ in 0..6 {
            self.traffic
                .in_flight
                .lock()
                .expect("in-flight lock")
                .insert(self.number, target.clone());
            let body = serde_json::json!({"properties": {key: value}});
            let resp = self
                .http
                .post(format!("http://{target}/v1/container/set"))
                .query(&[("base", base), ("type", "meta2")])
                .header("x-oio-timeout", "1500000")
                .timeout(Duration::from_millis(1500))
                .json(&body)
                .send()
                .await;
            let v: Value = match resp {
                Ok(r) => r.json().await.ok()?,
                Err(e) if e.is_connect() => {
                    next += 1;
                    target = ids[next % ids.len()].clone();
                    continue;
                }
                Err(_) => return None,
            };
            match v["status"].as_u64() {
                Some(303) => target = v["message"].as_str()?.to_string(),
                Some(200) => {
                    return Some((v["master"].as_str()?.to_string(), v["epoch"].as_i64()?))
                }
                _ => return None,
            }
        }
        None
    }
}

fn settings(test: &str, default_seconds: u64) -> (u64, u64) {
    let seconds = system_tests::env_u64("CHAOS_SECONDS", default_seconds);
    let seed = system_tests::env_seed("CHAOS_SEED");
    eprintln!("REPRODUCE WITH: CHAOS_SEED={seed} CHAOS_SECONDS={seconds} cargo test -p system-tests --test chaos -- --nocapture {test}");
    (seconds, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_no_lost_write_no_double_master() {
    let (seconds, seed) = settings("chaos_no_lost_write_no_double_master", 25);
    run_chaos(
        Cluster::start_with_relays(3, small_batches()),
        seconds,
        seed,
        false,
    )
    .await;
}

/// The same on a 3-server ZooKeeper ensemble, whose leader gets killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_a_zookeeper_ensemble() {
    let (seconds, seed) = settings("chaos_on_a_zookeeper_ensemble", 20);
    let zk = system_tests::Zk::start_ensemble(3, 200);
    run_chaos(
        Cluster::start_on(zk, 3, small_batches()),
        seconds,
        seed,
        true,
    )
    .await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    Kill,
    Pause,
    LeaveStorm,
    /// Standalone: ZooKeeper restarted. Ensemble: its leader killed.
    ZooKeeper,
    /// One service cut from ZooKeeper alone (standalone only: the relays
    /// lead to one server).
    Cut,
}

fn every_fault(ensemble: bool) -> Vec<Fault> {
    let mut all = vec![
        Fault::Kill,
        Fault::Pause,
        Fault::LeaveStorm,
        Fault::ZooKeeper,
    ];
    if !ensemble {
        all.push(Fault::Cut);
    }
    all
}

/// What the test saw for itself, beside what the services say.
#[derive(Default)]
struct Evidence {
    /// (base, node seq) -> (owner's service id, ephemeralOwner), read from
    /// ZooKeeper with the test's own client during the chaos. A node's
    /// owner never changes, so this is true whenever it was read.
    nodes: std::sync::Mutex<HashMap<(String, i64), (String, i64)>>,
    /// Full rounds over every base.
    zk_rounds: AtomicU64,
    /// (service, base, node seq, session): MASTER claims read from the
    /// services during the chaos, with the session they were bound to.
    claims: std::sync::Mutex<HashSet<(String, String, i64, i64)>>,
    claim_rounds: AtomicU64,
}

/// Reads every base's election nodes from ZooKeeper, again and again, with
/// a client of the test's own (reconnecting after an outage).
async fn sample_zookeeper(
    connect: String,
    bases: Vec<String>,
    traffic: Arc<Traffic>,
    ev: Arc<Evidence>,
) {
    let mut client: Option<zookeeper_client::Client> = None;
    while !traffic.stop.load(Ordering::SeqCst) {
        if client.is_none() {
            client = system_tests::connect_zookeeper(&connect).await;
        }
        let Some(zk) = client.clone() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let reads = bases.iter().map(|b| system_tests::election_nodes(&zk, b));
        let mut complete = true;
        for (base, read) in bases.iter().zip(futures::future::join_all(reads).await) {
            match read {
                Ok(nodes) => {
                    let mut seen = ev.nodes.lock().expect("evidence lock");
                    for n in nodes {
                        seen.insert((base.clone(), n.seq), (n.owner, n.session));
                    }
                }
                Err(
                    zookeeper_client::Error::SessionExpired | zookeeper_client::Error::ClientClosed,
                ) => {
                    client = None;
                    complete = false;
                }
                Err(_) => complete = false,
            }
        }
        if complete {
            ev.zk_rounds.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every service's MASTER claims again and again, keeping those tied
/// to the session their election is bound to.
async fn sample_claims(
    http: reqwest::Client,
    ids: Vec<String>,
    traffic: Arc<Traffic>,
    ev: Arc<Evidence>,
) {
    while !traffic.stop.load(Ordering::SeqCst) {
        let rounds = ids.iter().map(|id| system_tests::master_claims(&http, id));
        for claims in futures::future::join_all(rounds).await {
            ev.claims.lock().expect("evidence lock").extend(
                claims
                    .into_iter()
                    .filter_map(|c| Some((c.service, c.base, c.node, c.session?))),
            );
        }
        ev.claim_rounds.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Batches of 2 or more client writes committed, summed over the running
/// services (`election_write_batch_size`: its count less its `le="1"`
/// bucket; a service restarted meanwhile counts from its restart).
/// Batches of 2 writes at most, so that the hot bases' writers fill them
/// and the masters pipeline them (`pipeline_window`): batches begun behind
/// others meet every fault.
fn small_batches() -> ServiceOpts {
    ServiceOpts {
        extra: vec!["--max-batch-writes".into(), "2".into()],
        ..ServiceOpts::default()
    }
}

/// Over the services up: the committed batches of several writes, and the
/// batches begun behind others in flight.
async fn several_writes_batches(c: &Cluster) -> (u64, u64) {
    let (mut total, mut pipelined) = (0, 0);
    for id in c.ids() {
        if !c.service(&id).is_running() {
            continue;
        }
        let text = c.metrics(&id).await;
        let value = |series: &str| system_tests::sample(&text, series).unwrap_or(0.0);
        let count = value("election_write_batch_size_count");
        let single = value("election_write_batch_size_bucket{le=\"1.0\"}")
            .max(value("election_write_batch_size_bucket{le=\"1\"}"));
        total += (count - single).max(0.0) as u64;
        pipelined += value("election_write_batches_pipelined_total") as u64;
    }
    (total, pipelined)
}

async fn run_chaos(mut c: Cluster, seconds: u64, seed: u64, ensemble: bool) {
    let mut bases = Vec::new();
    for i in 0..50 {
        bases.push(c.create_container("chaos", &format!("c{i}")).await);
    }
    // The writers and samplers get the peers' ids and their own clients:
    // nothing they do waits for the fault injector, nor it for them.
    let ids = c.ids();
    let traffic = Arc::new(Traffic::default());
    let evidence = Arc::new(Evidence::default());
    // Writers 4 to 7 share the first 2 bases: their writes meet in batches.
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let bases = bases.clone();
            let writer = ChaosWriter {
                number: w,
                http: c.http.clone(),
                ids: ids.clone(),
                traffic: traffic.clone(),
            };
            tokio::spawn(async move {
                let (ids, traffic) = (&writer.ids, &writer.traffic);
                let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut n = 0u64;
                while !traffic.stop.load(Ordering::SeqCst) {
                    let spread = if w < 4 { bases.len() as u64 } else { 2 };
                    let base = bases[rng.below(spread) as usize].clone();
                    // Half the writes overwrite one of 4 keys of this writer
                    // (a stale overwrite or a reordering then shows in the
                    // final value), half write a key once.
                    let key = if rng.below(2) == 0 {
                        format!("w{w}-k{}", rng.below(4))
                    } else {
                        format!("w{w}-u{n}")
                    };
                    let value = format!("w{w}-v{n}");
                    n += 1;
                    let first = rng.below(ids.len() as u64) as usize;
                    let sent = Instant::now();
                    let acked = writer.write_once(first, &base, &key, &value).await;
                    traffic.in_flight.lock().expect("in-flight lock").remove(&w);
                    let outcome = match acked {
                        Some((master, epoch)) => Outcome::Acked {
                            master,
                            epoch,
                            at: Instant::now(),
                        },
                        None => Outcome::NotAcked,
                    };
                    let refused = matches!(outcome, Outcome::NotAcked);
                    traffic.history.lock().expect("history lock").push(Attempt {
                        base,
                        key,
                        value,
                        sent,
                        outcome,
                    });
                    if refused {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    let samplers = [
        tokio::spawn(sample_zookeeper(
            c.zk.connect_string(),
            bases.clone(),
            traffic.clone(),
            evidence.clone(),
        )),
        tokio::spawn(sample_claims(
            c.http.clone(),
            ids.clone(),
            traffic.clone(),
            evidence.clone(),
        )),
    ];

    // Every kind of fault once, in a seeded order, then drawn at random.
    let mut rng = Rng(seed);
    let every = every_fault(ensemble);
    let mut schedule = every.clone();
    for i in (1..schedule.len()).rev() {
        schedule.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut faults: Vec<(Fault, String)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds)
        || every.iter().any(|k| !faults.iter().any(|(f, _)| f == k))
    {
        tokio::time::sleep(Duration::from_millis(1_000 + rng.below(2_000))).await;
        let round = faults.len();
        let kind = match (schedule.get(round), rng.below(10)) {
            (Some(k), _) => *k,
            // On an ensemble, every third fault kills its leader.
            (None, _) if ensemble && round % 3 == 2 => Fault::ZooKeeper,
            (None, 0..=2) => Fault::Kill,
            (None, 3..=4) => Fault::Pause,
            (None, 5) if !ensemble => Fault::Cut,
            (None, 5) => Fault::Pause,
            (None, 6..=8) => Fault::LeaveStorm,
            (None, _) => Fault::ZooKeeper,
        };
        let victim = ids[rng.below(ids.len() as u64) as usize].clone();
        // Strike while the victim has writes in flight (waiting at most 1 s).
        let deadline = Instant::now() + Duration::from_secs(1);
        let (total, on_victim) = loop {
            let (total, on_victim) = traffic.in_flight_on(&victim);
            if on_victim > 0 || Instant::now() > deadline {
                break (total, on_victim);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let in_flight = format!("{total} writes in flight, {on_victim} on {victim}");
        match kind {
            Fault::Kill => {
                tokio::task::block_in_place(|| c.service_mut(&victim).kill9());
                faults.push((kind, format!("kill -9 {victim} ({in_flight})")));
                tokio::time::sleep(Duration::from_millis(500 + rng.below(2_500))).await;
                tokio::task::block_in_place(|| c.service_mut(&victim).restart());
            }
            Fault::Pause => {
                c.service(&victim).pause();
                faults.push((kind, format!("SIGSTOP {victim} 3 s ({in_flight})")));
                tokio::time::sleep(Duration::from_secs(3)).await;
                c.service(&victim).resume();
            }
            Fault::Cut => {
                let cut = Duration::from_millis(1_000 + rng.below(3_000));
                c.service(&victim).cut_from_zookeeper(true);
                faults.push((
                    kind,
                    format!("{victim} cut from ZooKeeper for {cut:?} ({in_flight})"),
                ));
                tokio::time::sleep(cut).await;
                c.service(&victim).cut_from_zookeeper(false);
            }
            Fault::LeaveStorm => {
                faults.push((kind, format!("leave storm on 10 bases ({in_flight})")));
                for _ in 0..10 {
                    let b = &bases[rng.below(bases.len() as u64) as usize];
                    for id in &ids {
                        let _ = c.call(id, "leave", b, Duration::from_millis(500)).await;
                    }
                }
            }
            Fault::ZooKeeper if ensemble => {
                match tokio::task::block_in_place(|| c.zk.kill_leader()) {
                    Some(i) => {
                        faults.push((
                            kind,
                            format!(
                                "kill -9 the ZooKeeper leader (server {}; {in_flight})",
                                i + 1
                            ),
                        ));
                        tokio::time::sleep(Duration::from_millis(1_000 + rng.below(1_000))).await;
                        tokio::task::block_in_place(|| c.zk.start_member(i));
                    }
                    None => eprintln!("chaos: no ZooKeeper leader to kill"),
                }
            }
            Fault::ZooKeeper => {
                faults.push((kind, format!("ZooKeeper restart after 1 s ({in_flight})")));
                tokio::task::block_in_place(|| c.zk.restart_after(Duration::from_secs(1)));
            }
        }
    }
    traffic.stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    for s in samplers {
        s.await.expect("sampler");
    }
    let history = traffic.history.lock().expect("history lock").clone();
    let acked: Vec<(&Attempt, &str, i64, Instant)> = history
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Acked { master, epoch, at } => Some((a, master.as_str(), *epoch, *at)),
            Outcome::NotAcked => None,
        })
        .collect();
    eprintln!(
        "chaos: {} faults, {} writes acknowledged, {} not",
        faults.len(),
        acked.len(),
        history.len() - acked.len()
    );
    for (_, f) in &faults {
        eprintln!("chaos:   {f}");
    }
    for kind in every {
        assert!(
            faults.iter().any(|(f, _)| *f == kind),
            "no {kind:?} fault was injected: {faults:?}"
        );
    }
    assert!(!acked.is_empty(), "some writes were acknowledged");
    check_history(&acked, &evidence, seed);
    let (batched, pipelined) = several_writes_batches(&c).await;
    eprintln!(
        "chaos: {batched} batches of several writes committed, {pipelined} batches pipelined, on the services up at the end"
    );
    assert!(batched > 0, "the hot bases' writers never met in a batch");

    // Healing: one master per base, replicas identical, every acked write there.
    let heal = Instant::now();
    let mut by_base: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in &history {
        by_base.entry(a.base.as_str()).or_default().push(a);
    }
    let zk = zookeeper_client::Client::connector()
        .connect(&c.zk.connect_string())
        .await
        .expect("zk");
    let mut overwritten = 0;
    for base in &bases {
        let master = c
            .wait_converged(base, Duration::from_secs(40))
            .await
            .unwrap_or_else(|e| {
                panic!("{base} did not heal: {e} (CHAOS_SEED={seed})\n{}", c.logs())
            });
        let props = loop {
            let mut seen = Vec::new();
            for s in &c.services {
                seen.push(c.props(&s.id, base).await);
            }
            if seen
                .iter()
                .all(|(code, p, v)| *code == 200 && *p == seen[0].1 && *v == seen[0].2)
            {
                break seen[0].1.clone();
            }
            if heal.elapsed() > Duration::from_secs(90) {
                let mut why = String::new();
                for (s, (code, _, v)) in c.services.iter().zip(&seen) {
                    let d = c.debug(&s.id, base).await;
                    let info = c.info_text(&s.id).await;
                    let ro = info
                        .lines()
                        .find(|l| l.starts_with("emergency_read_only_mode"))
                        .unwrap_or("");
                    why.push_str(&format!(
                        "\n  {}: {code} {v} state {} master {} err {} {ro} log {:?}",
                        s.id,
                        d["local"]["state"],
                        d["master"]["url"],
                        d["extra"]["last_error"],
                        d["log"]
                            .as_array()
                            .map(|l| l.iter().take(6).collect::<Vec<_>>())
                    ));
                }
                panic!("{base}: replicas differ (CHAOS_SEED={seed}):{why}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        overwritten += check_final_values(
            base,
            by_base.get(base.as_str()).map(Vec::as_slice).unwrap_or(&[]),
            &props,
            seed,
        );
        // The master's own node is the lowest of the election in ZooKeeper,
        // and is owned by the session the master says it has.
        let d = c.debug(&master, base).await;
        let own = d["local"]["id"].as_i64().expect("master node");
        let nodes = system_tests::election_nodes(&zk, base)
            .await
            .expect("read the election nodes");
        let lowest = nodes
            .first()
            .unwrap_or_else(|| panic!("{base}: no election node"));
        assert_eq!(
            (lowest.seq, lowest.owner.as_str()),
            (own, master.as_str()),
            "{base}: the master's node is not the lowest: {nodes:?} (CHAOS_SEED={seed})"
        );
        assert_eq!(
            d["extra"]["zk_session"].as_str(),
            Some(format!("0x{:x}", lowest.session).as_str()),
            "{base}: the master's node is not owned by the master's session (CHAOS_SEED={seed})"
        );
    }
    eprintln!(
        "chaos: healed and checked {} bases in {:?}; {overwritten} keys overwritten by 2 or more acknowledged writes",
        bases.len(),
        heal.elapsed()
    );
}

/// What the client history and the test's own ZooKeeper reads must agree on.
fn check_history(acked: &[(&Attempt, &str, i64, Instant)], ev: &Evidence, seed: u64) {
    let nodes = ev.nodes.lock().expect("evidence lock");
    // Each fencing epoch of a base was acknowledged by one master only, and
    // by the service that ZooKeeper says created that node.
    let mut by_epoch: HashMap<(&str, i64), &str> = HashMap::new();
    let mut verified: HashSet<(&str, i64)> = HashSet::new();
    for (a, master, epoch, _) in acked {
        let owner = by_epoch.entry((a.base.as_str(), *epoch)).or_insert(master);
        assert_eq!(
            owner, master,
            "{} epoch {epoch}: acknowledged by two masters (CHAOS_SEED={seed})",
            a.base
        );
        if let Some((creator, _)) = nodes.get(&(a.base.clone(), *epoch)) {
            assert_eq!(
                creator, master,
                "{} epoch {epoch}: acknowledged by {master}, but ZooKeeper's node {epoch} belongs to {creator} (CHAOS_SEED={seed})",
                a.base
            );
            verified.insert((a.base.as_str(), *epoch));
        }
    }
    // Masters hold their node for far longer than a sampling round: almost
    // every acknowledged epoch must have been seen in ZooKeeper.
    let rounds = ev.zk_rounds.load(Ordering::Relaxed);
    eprintln!(
        "chaos: {} of {} acknowledged epochs seen in ZooKeeper by the test's own client ({rounds} rounds, {} nodes)",
        verified.len(),
        by_epoch.len(),
        nodes.len()
    );
    assert!(
        verified.len() * 10 >= by_epoch.len() * 9,
        "the ZooKeeper sampler saw too few of the acknowledged epochs: {} of {} (CHAOS_SEED={seed})",
        verified.len(),
        by_epoch.len()
    );
    // Every MASTER claim a service made names a node that ZooKeeper says is
    // its own, under the session it was bound to.
    let claims = ev.claims.lock().expect("evidence lock");
    let mut backed = 0;
    for (id, base, node, session) in claims.iter() {
        if let Some((creator, owner)) = nodes.get(&(base.clone(), *node)) {
            assert_eq!(
                (creator, owner),
                (id, session),
                "{base}: {id} claimed MASTER on node {node} under session 0x{session:x}; ZooKeeper says that node is {creator}'s, session 0x{owner:x} (CHAOS_SEED={seed})"
            );
            backed += 1;
        }
    }
    eprintln!(
        "chaos: {} MASTER claims sampled in {} rounds, {backed} matched against ZooKeeper's nodes",
        claims.len(),
        ev.claim_rounds.load(Ordering::Relaxed)
    );
    assert!(
        backed > 0,
        "no MASTER claim could be checked against ZooKeeper"
    );
    // Per base, acknowledgements follow the masters in order: a write sent
    // after another was acknowledged never gets an older epoch.
    let mut per_base: HashMap<&str, Vec<(Instant, Instant, i64)>> = HashMap::new();
    for (a, _, epoch, at) in acked {
        per_base
            .entry(a.base.as_str())
            .or_default()
            .push((a.sent, *at, *epoch));
    }
    for (base, mut writes) in per_base {
        let mut by_ack = writes.clone();
        by_ack.sort_by_key(|w| w.1);
        writes.sort_by_key(|w| w.0);
        let (mut i, mut newest): (usize, Option<i64>) = (0, None);
        for (sent, _, epoch) in writes {
            while i < by_ack.len() && by_ack[i].1 < sent {
                newest = Some(newest.map_or(by_ack[i].2, |n| {
                    election_core::names::seq_latest(n, by_ack[i].2)
                }));
                i += 1;
            }
            if let Some(n) = newest {
                assert!(
                    !election_core::names::seq_after(n, epoch),
                    "{base}: a write sent after epoch {n} was acknowledged got the older epoch {epoch} (CHAOS_SEED={seed})"
                );
            }
        }
    }
}

/// Each key of `base` holds the value of its last acknowledged write, or of
/// a write sent after it that got no acknowledgement (it may have been
/// applied); a key never acknowledged may also be absent. Keys belong to one
/// writer, which writes them one at a time, so their attempts are in order.
/// Returns how many keys were overwritten by acknowledged writes.
fn check_final_values(base: &str, attempts: &[&Attempt], props: &Value, seed: u64) -> usize {
    let mut per_key: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in attempts {
        per_key.entry(a.key.as_str()).or_default().push(a);
    }
    let mut overwritten = 0;
    for (key, list) in per_key {
        let acks: Vec<usize> = (0..list.len())
            .filter(|i| matches!(list[*i].outcome, Outcome::Acked { .. }))
            .collect();
        overwritten += usize::from(acks.len() > 1);
        let allowed: Vec<&str> = list[acks.last().copied().unwrap_or(0)..]
            .iter()
            .map(|a| a.value.as_str())
            .collect();
        let found = props.get(key).and_then(Value::as_str);
        let ok = match found {
            Some(v) => allowed.contains(&v),
            None => acks.is_empty(),
        };
        assert!(
            ok,
            "{base}: {key} = {found:?}, expected one of {allowed:?} (the last acknowledged value, or a later unacknowledged one); history {:?} (CHAOS_SEED={seed})",
            list.iter().map(|a| (&a.value, matches!(a.outcome, Outcome::Acked { .. }))).collect::<Vec<_>>()
        );
    }
    overwritten
}

/// The checkers, fed deliberately broken histories: each must fail.
mod broken_histories {
    use super::*;

    const B: &str = "BASE.1";

    fn attempt(key: &str, value: &str, sent_ms: u64, acked: Option<(&str, i64, u64)>) -> Attempt {
        let t0 = *T0;
        Attempt {
            base: B.into(),
            key: key.into(),
            value: value.into(),
            sent: t0 + Duration::from_millis(sent_ms),
            outcome: match acked {
                Some((master, epoch, at)) => Outcome::Acked {
                    master: master.into(),
                    epoch,
                    at: t0 + Duration::from_millis(at),
                },
                None => Outcome::NotAcked,
            },
        }
    }

    static T0: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

    /// ZooKeeper saw nodes 5 (svc-a, session 0xa) and 9 (svc-b, session 0xb).
    fn evidence() -> Evidence {
        let ev = Evidence::default();
        {
            let mut nodes = ev.nodes.lock().expect("lock");
            nodes.insert((B.into(), 5), ("svc-a".into(), 0xa));
            nodes.insert((B.into(), 9), ("svc-b".into(), 0xb));
            ev.claims
                .lock()
                .expect("lock")
                .insert(("svc-a".into(), B.into(), 5, 0xa));
        }
        ev
    }

    fn check(attempts: &[Attempt], ev: &Evidence) {
        let acked: Vec<_> = attempts
            .iter()
            .filter_map(|a| match &a.outcome {
                Outcome::Acked { master, epoch, at } => Some((a, master.as_str(), *epoch, *at)),
                Outcome::NotAcked => None,
            })
            .collect();
        check_history(&acked, ev, 0);
    }

    #[test]
    fn a_sound_history_passes() {
        check(
            &[
                attempt("k", "1", 0, Some(("svc-a", 5, 10))),
                attempt("k", "2", 20, Some(("svc-b", 9, 30))),
            ],
            &evidence(),
        );
    }

    #[test]
    #[should_panic(expected = "acknowledged by two masters")]
    fn one_epoch_two_masters() {
        check(
            &[
                attempt("k", "1", 0, Some(("svc-a", 5, 10))),
                attempt("j", "1", 0, Some(("svc-b", 5, 10))),
            ],
            &evidence(),
        );
    }

    #[test]
    #[should_panic(expected = "but ZooKeeper's node 9 belongs to svc-b")]
    fn an_epoch_that_zookeeper_gave_to_another() {
        check(&[attempt("k", "1", 0, Some(("svc-a", 9, 10)))], &evidence());
    }

    #[test]
    #[should_panic(expected = "got the older epoch 5")]
    fn an_old_master_acknowledges_after_the_new_one() {
        check(
            &[
                attempt("k", "1", 0, Some(("svc-b", 9, 10))),
                attempt("j", "1", 20, Some(("svc-a", 5, 30))),
            ],
            &evidence(),
        );
    }

    #[test]
    #[should_panic(expected = "saw too few of the acknowledged epochs")]
    fn a_blind_sampler() {
        check(
            &[attempt("k", "1", 0, Some(("svc-a", 5, 10)))],
            &Evidence::default(),
        );
    }

    #[test]
    #[should_panic(expected = "claimed MASTER on node 5 under session 0xc")]
    fn a_master_claim_under_a_session_that_does_not_own_the_node() {
        let ev = evidence();
        ev.claims
            .lock()
            .expect("lock")
            .insert(("svc-a".into(), B.into(), 5, 0xc));
        check(&[attempt("k", "1", 0, Some(("svc-a", 5, 10)))], &ev);
    }

    fn finals(attempts: &[Attempt], props: Value) {
        let refs: Vec<&Attempt> = attempts.iter().collect();
        check_final_values(B, &refs, &props, 0);
    }

    #[test]
    fn a_later_unacknowledged_value_may_win() {
        let h = [
            attempt("k", "1", 0, Some(("svc-a", 5, 10))),
            attempt("k", "2", 20, None),
        ];
        finals(&h, serde_json::json!({"k": "2"}));
        finals(&h, serde_json::json!({"k": "1"}));
        finals(&[attempt("u", "1", 0, None)], serde_json::json!({}));
    }

    #[test]
    #[should_panic(expected = "k = Some(\"1\"), expected one of [\"2\"")]
    fn a_stale_overwrite() {
        finals(
            &[
                attempt("k", "1", 0, Some(("svc-a", 5, 10))),
                attempt("k", "2", 20, Some(("svc-a", 5, 30))),
            ],
            serde_json::json!({"k": "1"}),
        );
    }

    #[test]
    #[should_panic(expected = "k = Some(\"0\"), expected one of [\"1\"")]
    fn an_unacknowledged_write_from_before_the_last_ack_comes_back() {
        finals(
            &[
                attempt("k", "0", 0, None),
                attempt("k", "1", 20, Some(("svc-a", 5, 30))),
            ],
            serde_json::json!({"k": "0"}),
        );
    }

    #[test]
    #[should_panic(expected = "k = None")]
    fn a_lost_acknowledged_write() {
        finals(
            &[attempt("k", "1", 0, Some(("svc-a", 5, 10)))],
            serde_json::json!({}),
        );
    }
}
