//! Elections on real ZooKeeper with real `election-server` processes
//! (issue "Elections on real ZooKeeper", tests a–h).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use system_tests::{
    base_of, one_master, percentile, Cluster, ElectionNode, MasterClaim, ServiceOpts,
};

const T: Duration = Duration::from_secs(5);

fn log_entries(debug: &Value) -> Vec<String> {
    debug["log"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// (a) 3 peers converge to exactly one MASTER and two SLAVEs naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_peers_converge() {
    let c = Cluster::start(3, ServiceOpts::default());
    let base = c.create_container("myaccount", "FVE0").await;
    assert_eq!(
        base,
        "697ECB056A5F9339B36C3B0A020B5AB17B4B0160FBEBEA203315EA1FC1B61605.1"
    );
    let answers = c.status_all(&base, T).await;
    let master = one_master(&answers).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    // Each peer's debug agrees, with the seed's fields.
    for s in &c.services {
        let d = c.debug(&s.id, &base).await;
        assert_eq!(
            d["base"]["zk"]
                .as_str()
                .map(|z| z
                    .ends_with("D9EAF7894DB54D52FDA5A0CCC26FF3E3EE2731FEDD9944B06298A22C6BE5FCD5")),
            Some(true),
            "{d}"
        );
        let state = d["local"]["state"].as_str().unwrap_or_default();
        if s.id == master {
            assert_eq!(state, "MASTER");
            assert!(d["master"]["url"].is_null());
            assert_eq!(d["master"]["id"], d["local"]["id"]);
        } else {
            assert_eq!(state, "SLAVE");
            assert_eq!(d["master"]["url"].as_str(), Some(master.as_str()));
        }
        let log = log_entries(&d);
        assert!(
            log.iter()
                .any(|l| l.contains(":CREATING:CREATE_OK:LISTING")),
            "{log:?}"
        );
        assert_eq!(d["peers"].as_array().map(Vec::len), Some(2));
    }
}

/// The earliest a dead client's session can expire on ZooKeeper, counted
/// from its death: the client was last heard at most one ping interval
/// earlier (our client pings after 3/20 of the session idle; Java's after
/// 1/3), so expiry comes at least 2/3 of the session timeout after the death.
/// A hand-over faster than this did not wait for an expiry.
fn expiry_floor(session_timeout: Duration) -> Duration {
    session_timeout * 2 / 3
}

/// (b) leave on the master: another peer is master without waiting for
/// anything on the scale of the session timeout, and the old one rejoins as
/// SLAVE. (The time itself is measured by scripts/bench.sh.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_leave_fails_over_without_waiting() {
    let opts = ServiceOpts {
        // The longest ZooKeeper allows with a 200 ms tick: the widest bound.
        session_timeout_ms: 4_000,
        ..ServiceOpts::default()
    };
    // A leave deletes the node: no expiry, no GETVERS timeout, no pending
    // deadline is involved, and each of them is longer than this bound.
    let bound = expiry_floor(Duration::from_millis(opts.session_timeout_ms));
    let c = Cluster::start(3, opts);
    let base = c.create_container("acct", "leave").await;
    let mut failovers = Vec::new();
    for round in 0..5 {
        let old = c
            .wait_converged(&base, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        let started = Instant::now();
        let left = c.call(&old, "leave", &base, T).await;
        assert_eq!(left.status, 200, "{left:?}");
        // Poll the other peers until one is master.
        let new = loop {
            let others: Vec<_> = c
                .services
                .iter()
                .filter(|s| s.id != old)
                .map(|s| c.call(&s.id, "status", &base, T))
                .collect();
            let answers = futures::future::join_all(others).await;
            if let Some(m) = answers.iter().find(|a| a.status == 200) {
                break m.id.clone();
            }
            assert!(
                started.elapsed() < bound,
                "round {round}: no new master within {bound:?}: {answers:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        failovers.push(started.elapsed());
        assert_ne!(new, old);
        let m = c
            .wait_converged(&base, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        assert_eq!(m, new);
        let back = c.call(&old, "status", &base, T).await;
        assert_eq!(
            (back.status, back.message.as_str()),
            (303, new.as_str()),
            "the old master rejoins as SLAVE"
        );
    }
    failovers.sort();
    eprintln!(
        "leave failover over {} rounds: p50 {:?}, max {:?}",
        failovers.len(),
        percentile(&failovers, 50.0),
        failovers.last()
    );
}

/// (c) kill -9 the master: a new master after its session expires; the
/// killed one, restarted, rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_crash_of_the_master() {
    let mut c = Cluster::start(3, ServiceOpts::default());
    let base = c.create_container("acct", "crash").await;
    let old = c
        .wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let started = Instant::now();
    c.service_mut(&old).kill9();
    let new = c
        .wait_converged(&base, Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let took = started.elapsed();
    eprintln!("crash failover: {took:?} (session timeout 2 s)");
    assert_ne!(new, old);
    assert!(
        took >= Duration::from_millis(1500),
        "a new master before the old session could expire ({took:?})?"
    );
    c.service_mut(&old).restart();
    let after = c
        .wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(
        after, new,
        "the restarted peer rejoins as SLAVE, the master stays"
    );
}

/// (d) The seed: with two of three peers down (one refused, one stopped), a
/// fresh election on the third fails with GETVERS_KO entries and status 500
/// `Election failed`; when a peer comes back, the base gets a master again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_seed_scenario_election_failed_then_recovers() {
    let opts = ServiceOpts {
        extra: vec!["--getvers-timeout-ms".into(), "500".into()],
        ..ServiceOpts::default()
    };
    let mut c = Cluster::start(3, opts);
    let base = c.create_container("myaccount", "FVE0").await;
    let ids = c.ids();
    let (alive, refused, stopped) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    c.service_mut(&refused).kill9();
    c.service(&stopped).pause();

    let status = c
        .call(&alive, "status", &base, Duration::from_secs(3))
        .await;
    assert_eq!(status.status, 500, "{status:?}");
    assert!(
        status
            .message
            .starts_with(&format!("Election failed for {base}.meta2")),
        "{}",
        status.message
    );
    let refused_answer = c
        .call(&refused, "status", &base, Duration::from_secs(1))
        .await;
    assert_eq!(
        (refused_answer.status, refused_answer.message.clone()),
        (2, format!("{refused}: [errno=111] Connection refused"))
    );
    let stopped_answer = c
        .call(&stopped, "status", &base, Duration::from_secs(1))
        .await;
    assert_eq!(
        (stopped_answer.status, stopped_answer.message.as_str()),
        (7, "Timeout")
    );

    // The candidate gives up (budget), then FAILED, with the seed's log entries.
    let started = Instant::now();
    let log = loop {
        let log = log_entries(&c.debug(&alive, &base).await);
        if log
            .iter()
            .any(|l| l.ends_with(":LEAVING_FAILING:LEAVE_OK:FAILED"))
        {
            break log;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never FAILED: {log:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        log.iter()
            .any(|l| l.contains(":CHECKING_SLAVES:GETVERS_KO:")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.ends_with(":CHECKING_SLAVES:GETVERS_KO:DELAYED_CHECKING_SLAVES")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.ends_with(":CHECKING_SLAVES:GETVERS_KO:LEAVING_FAILING")),
        "the budget ends: {log:?}"
    );

    // One peer comes back: the base gets a master again.
    c.service(&stopped).resume();
    let m = c
        .wait_converged(&base, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(m == alive || m == stopped);
}

/// (e) 200 bases on 3 peers all converge, masters spread across the peers.
/// Also measures the cold election of one base (first request to all 3
/// peers final), one base at a time, then 50 at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_two_hundred_bases_converge_and_spread() {
    let c = Cluster::start(3, ServiceOpts::default());
    let mut bases = Vec::new();
    for i in 0..250 {
        bases.push(c.create_container("acct", &format!("bulk-{i}")).await);
    }
    let mut masters: BTreeMap<String, usize> = BTreeMap::new();
    let mut times = Vec::new();
    for b in &bases[..200] {
        let started = Instant::now();
        let answers = c.status_all(b, T).await;
        times.push(started.elapsed());
        let m = one_master(&answers).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        *masters.entry(m).or_default() += 1;
    }
    times.sort();
    eprintln!(
        "cold election of one base on 3 peers, 200 bases one at a time: p50 {:?} p99 {:?} max {:?}",
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        times.last()
    );
    let started = Instant::now();
    let futs = bases[200..].iter().map(|b| c.status_all(b, T));
    for answers in futures::future::join_all(futs).await {
        let m = one_master(&answers).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        *masters.entry(m).or_default() += 1;
    }
    eprintln!(
        "50 bases started together: all final in {:?}; masters {masters:?}",
        started.elapsed()
    );
    assert_eq!(masters.values().sum::<usize>(), 250);
    assert_eq!(
        masters.len(),
        3,
        "every peer masters some bases: {masters:?}"
    );
    assert!(
        masters.values().all(|n| *n <= 200),
        "masters concentrated: {masters:?}"
    );
}

/// One sampling round: every service asked once, between `started` and `ended`.
#[derive(Debug)]
struct Round {
    started: Instant,
    ended: Instant,
    claims: Vec<MasterClaim>,
}

/// The election nodes of `bases`, read with the test's own ZooKeeper client
/// (reconnected as often as needed: ZooKeeper may be down, and our session
/// may expire with the others'). Every read starts after this call does.
async fn zk_snapshot(
    connect: &str,
    zk: &mut Option<zookeeper_client::Client>,
    bases: &BTreeSet<String>,
) -> HashMap<String, Vec<ElectionNode>> {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sampler could not read ZooKeeper for 60 s"
        );
        if zk.is_none() {
            *zk = system_tests::connect_zookeeper(connect).await;
            if zk.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let client = zk.as_ref().expect("connected above");
        let reads = bases.iter().map(|b| async move {
            system_tests::election_nodes(client, b)
                .await
                .map(|nodes| (b.clone(), nodes))
        });
        let read =
            tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(reads)).await;
        match read.map(|all| all.into_iter().collect::<Result<HashMap<_, _>, _>>()) {
            Ok(Ok(snapshot)) => return snapshot,
            _ => {
                *zk = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What one round's claims look like against a ZooKeeper snapshot taken
/// after the round ended.
///
/// The services' answers and our snapshot are never taken at the same
/// instant, so "two claims ZooKeeper backs at once" cannot be observed
/// directly; it is proved instead from two facts that hold whatever
/// happened between the answers and the snapshot:
/// - sequence numbers are handed out in creation order, so a node lower
///   than node N was created before N;
/// - a node name is never reused, so a node present in the snapshot existed
///   continuously from its creation until the snapshot.
///
/// A service that answered "MASTER on N" had created N before answering. If
/// the snapshot (taken later) holds a node M lower than N whose data is a
/// peer's id, M existed at the very instant of that answer: the claim was
/// not the lowest node, so ZooKeeper did not back it. No correct peer is ever
/// MASTER in that situation (a lower node of a peer is followed or waited
/// for; its own leftover is deleted first; only garbage and non-peer nodes
/// are skipped, and those are not counted here), and no node lower than a
/// legitimate master's can appear later; so this never flags a legitimate
/// master, however slow the sampling, and needs no "seen twice" filter.
///
/// A double master is two services claiming MASTER in one round on two
/// nodes ZooKeeper still holds under their own current sessions (node data
/// = claimant, ephemeralOwner = the session it reported before and after
/// its answer): the higher of the two is then flagged by the rule above,
/// the lower being the other master's node. A claim on a node that is gone
/// from the snapshot (a deposed master's stale view, e.g. during the
/// outage) is not backed by ZooKeeper and is not a violation by itself;
/// but any other service claiming MASTER above a node still held then is.
///
/// Returns the claims still held under the claimant's session, and the
/// violations.
fn check_round(
    round: &Round,
    snapshot: &HashMap<String, Vec<ElectionNode>>,
    peers: &[String],
    t0: Instant,
) -> (usize, Vec<String>) {
    let none = Vec::new();
    let held = |c: &MasterClaim| {
        snapshot
            .get(&c.base)
            .unwrap_or(&none)
            .iter()
            .any(|n| n.seq == c.node && n.owner == c.service && Some(n.session) == c.session)
    };
    let mut violations = Vec::new();
    for c in &round.claims {
        let lower: Vec<&ElectionNode> = snapshot
            .get(&c.base)
            .unwrap_or(&none)
            .iter()
            .filter(|n| {
                election_core::names::seq_offset(n.seq, c.node) < 0 && peers.contains(&n.owner)
            })
            .collect();
        if lower.is_empty() {
            continue;
        }
        let others: Vec<&MasterClaim> = round
            .claims
            .iter()
            .filter(|o| o.base == c.base && o.service != c.service)
            .filter(|o| held(o) && lower.iter().any(|n| n.seq == o.node))
            .collect();
        violations.push(format!(
            "{}: {} claimed MASTER on node {} (session {:?}, held: {}) between +{:?} and +{:?} \
             while ZooKeeper held the lower node(s) {lower:?}; {}",
            c.base,
            c.service,
            c.node,
            c.session.map(|s| format!("0x{s:x}")),
            held(c),
            round.started - t0,
            round.ended - t0,
            if others.is_empty() {
                "not backed by ZooKeeper".to_string()
            } else {
                format!("DOUBLE MASTER with the backed claim(s) {others:?}")
            }
        ));
    }
    let held_count = round.claims.iter().filter(|c| held(c)).count();
    (held_count, violations)
}

/// Panics with the sampler's violations, if any (checked while waiting, so
/// that a double master is reported as such and not as a timeout).
fn assert_no_violation(violations: &std::sync::Mutex<Vec<String>>) {
    let v = violations.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        v.is_empty(),
        "{} MASTER claim(s) not backed by ZooKeeper (first 20):\n{}",
        v.len(),
        v[..v.len().min(20)].join("\n")
    );
}

/// (f) ZooKeeper restarted under 200 elections: all recover by themselves,
/// and at no sampled instant, outage included, does a service claim MASTER
/// above a peer's node that ZooKeeper holds (see `check_round`). The sampler
/// holds no lock and asks ZooKeeper with a client of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_zookeeper_restart_under_200_elections() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    let mut c = Cluster::start(3, ServiceOpts::default());
    let mut bases = Vec::new();
    for i in 0..200 {
        bases.push(c.create_container("acct", &format!("zkr-{i}")).await);
    }
    for chunk in bases.chunks(25) {
        let futs = chunk
            .iter()
            .map(|b| c.wait_converged(b, Duration::from_secs(10)));
        for r in futures::future::join_all(futs).await {
            r.unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        }
    }
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Round>();
    // The claims: every service asked every 50 ms, outage included (HTTP
    // only, no lock, no ZooKeeper).
    let sampler = {
        let (ids, http, stop, rounds) = (c.ids(), c.http.clone(), stop.clone(), rounds.clone());
        tokio::spawn(async move {
            let mut times = Vec::new();
            while !stop.load(SeqCst) {
                let started = Instant::now();
                let claims = futures::future::join_all(
                    ids.iter().map(|id| system_tests::master_claims(&http, id)),
                )
                .await
                .concat();
                let ended = Instant::now();
                times.push((started, ended));
                let _ = tx.send(Round {
                    started,
                    ended,
                    claims,
                });
                rounds.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            times
        })
    };
    // The evidence: each batch of rounds against a ZooKeeper snapshot read
    // after the batch ended (during the outage: as soon as ZooKeeper is back).
    let checker = {
        let (ids, connect, violations) = (c.ids(), c.zk.connect_string(), violations.clone());
        tokio::spawn(async move {
            let mut zk = None;
            let (mut verified, mut claims, mut held, mut all_held) = (0, 0, 0, 0);
            let mut open = true;
            let mut pending: Vec<Round> = Vec::new();
            while open || !pending.is_empty() {
                if pending.is_empty() {
                    match rx.recv().await {
                        Some(r) => pending.push(r),
                        None => open = false,
                    }
                }
                while let Ok(r) = rx.try_recv() {
                    pending.push(r);
                }
                if pending.is_empty() {
                    continue;
                }
                let claimed: BTreeSet<String> = pending
                    .iter()
                    .flat_map(|r| r.claims.iter().map(|c| c.base.clone()))
                    .collect();
                let snapshot = zk_snapshot(&connect, &mut zk, &claimed).await;
                for r in pending.drain(..) {
                    let (h, v) = check_round(&r, &snapshot, &ids, t0);
                    verified += 1;
                    claims += r.claims.len();
                    held += h;
                    all_held += usize::from(h == 200);
                    violations
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(v);
                }
            }
            (verified, claims, held, all_held)
        })
    };
    let wait_rounds = |n: usize| {
        let (rounds, violations) = (rounds.clone(), violations.clone());
        async move {
            let target = rounds.load(SeqCst) + n;
            let started = Instant::now();
            while rounds.load(SeqCst) < target {
                assert_no_violation(&violations);
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the sampler is stuck"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_rounds(5).await;
    // Down longer than the session timeout (2 s): the clients declare their
    // sessions expired, every election is reset and re-run on new sessions.
    // Blocking, but on this worker only: the sampler and checker go on.
    let down_from = Instant::now();
    tokio::task::block_in_place(|| c.zk.restart_after(Duration::from_secs(3)));
    let down_until = Instant::now();
    let started = Instant::now();
    // With no client request at all, every election that lost its session
    // comes back (MASTER or SLAVE) once a session is restored.
    loop {
        assert_no_violation(&violations);
        let mut finals = 0;
        for s in &c.services {
            let v = c.elections(&s.id).await.unwrap_or(Value::Null);
            finals += v["elections"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|e| e["state"] == "MASTER" || e["state"] == "SLAVE")
                        .count()
                })
                .unwrap_or(0);
        }
        if finals == 600 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {finals} of 600 elections came back by themselves\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "all 600 elections back by themselves {:?} after the ZooKeeper restart",
        started.elapsed()
    );
    for chunk in bases.chunks(25) {
        let futs = chunk
            .iter()
            .map(|b| c.wait_converged(b, Duration::from_secs(30)));
        for r in futures::future::join_all(futs).await {
            assert_no_violation(&violations);
            r.unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        }
    }
    eprintln!(
        "all 200 bases converged {:?} after the ZooKeeper restart",
        started.elapsed()
    );
    for s in &c.services {
        let info = c.info(&s.id).await;
        assert!(
            info["zookeeper"]["reconnects"].as_u64() >= Some(1),
            "{} kept its session through a 3 s outage? {info}",
            s.id
        );
    }
    // A few rounds of the settled cluster, then the verdict.
    wait_rounds(5).await;
    stop.store(true, SeqCst);
    let times = sampler.await.expect("sampler");
    let (verified, claims, held, all_held) = checker.await.expect("checker");
    let during = times
        .iter()
        .filter(|(s, e)| *s >= down_from && *e <= down_until)
        .count();
    eprintln!(
        "sampler: {} rounds ({during} while ZooKeeper was down or starting), {verified} verified, \
         {claims} MASTER claims, {held} held by ZooKeeper under the claimant's session, \
         {all_held} rounds with all 200 bases held",
        times.len()
    );
    assert_no_violation(&violations);
    assert_eq!(
        verified,
        times.len(),
        "every round checked against ZooKeeper"
    );
    assert!(
        during >= 10,
        "only {during} rounds while ZooKeeper was down"
    );
    assert!(
        all_held >= 2,
        "the evidence is not read right: {all_held} rounds with every claim held"
    );
}

/// Connects a raw ZooKeeper session (the test's own, like an earlier
/// session of a service, or an operator's tool).
async fn raw_zk(c: &Cluster) -> zookeeper_client::Client {
    zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .connect(&c.zk.connect_string())
        .await
        .expect("raw zk session")
}

fn election_dir(base: &str) -> (String, String) {
    use election_core::names::{BaseName, ElectionKey, Namespace, ServiceType, ZkLayout};
    let t = ServiceType::new("meta2").expect("type");
    let key = ElectionKey::compute(&BaseName::parse(base).expect("base"), &t);
    let layout = ZkLayout::new(Namespace::new("OPENIO").expect("ns"));
    (layout.election_dir(&t, &key), key.to_string())
}

/// (g) A node left in ZooKeeper by an earlier session of the same service
/// never makes it master: here the lowest node carries the service's id but
/// belongs to another session (still alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_leftover_node_of_an_earlier_session() {
    let c = Cluster::start(3, ServiceOpts::default());
    let base = c.create_container("acct", "leftover").await;
    let (dir, key) = election_dir(&base);
    let zk = raw_zk(&c).await;
    zk.mkdir(
        &dir,
        &zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all()),
    )
    .await
    .expect("mkdir");
    let victim = c.services[0].id.clone();
    let (_, seq) = zk
        .create(
            &format!("{dir}/{key}-"),
            victim.as_bytes(),
            &zookeeper_client::CreateMode::EphemeralSequential
                .with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .expect("create the leftover node");
    let leftover = format!("{dir}/{key}-{seq}");
    // The victim is asked first: it must not take the leftover as its own.
    let first = c.call(&victim, "status", &base, T).await;
    assert!(first.status == 200 || first.status == 303, "{first:?}");
    let master = c
        .wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(
        zk.check_stat(&leftover).await.expect("stat").is_none(),
        "the leftover node was deleted"
    );
    let d = c.debug(&victim, &base).await;
    let log = log_entries(&d);
    assert!(
        log.iter()
            .any(|l| l.ends_with(":ASKING:MASTER_BAD:LISTING")),
        "victim's log: {log:?}"
    );
    if master == victim {
        let own = d["local"]["id"].as_i64().expect("local id");
        assert_ne!(
            own,
            seq.into_i64(),
            "mastership through our own current node only"
        );
    }

    // Same thing for real: kill -9 the master and restart it at once, while
    // its old session (and node) is still alive.
    let mut c = c;
    let old = c.wait_converged(&base, T).await.expect("converged");
    c.service_mut(&old).restart();
    let again = c.call(&old, "status", &base, T).await;
    assert!(
        again.status == 200 || again.status == 303,
        "{again:?}\n{}",
        c.logs()
    );
    let m = c
        .wait_converged(&base, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let d = c.debug(&m, &base).await;
    let node = d["local"]["id"].as_i64().expect("master node");
    let owner = zk
        .check_stat(&format!(
            "{dir}/{key}-{}",
            election_core::names::format_seq(node)
        ))
        .await
        .expect("stat")
        .expect("the master's node exists")
        .ephemeral_owner;
    assert_eq!(
        d["extra"]["zk_session"].as_str(),
        Some(format!("0x{owner:x}").as_str()),
        "the master's node is owned by its live session"
    );
}

/// (h) Garbage children in an election directory (wrong names, foreign ids,
/// invalid and huge data) neither crash nor stall the election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_garbage_children_do_not_stall() {
    let c = Cluster::start(3, ServiceOpts::default());
    let base = c.create_container("acct", "garbage").await;
    let (dir, key) = election_dir(&base);
    let zk = raw_zk(&c).await;
    let persistent =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    let seq_persistent = zookeeper_client::CreateMode::PersistentSequential
        .with_acls(zookeeper_client::Acls::anyone_all());
    zk.mkdir(&dir, &persistent).await.expect("mkdir");
    let other_key = "0".repeat(64);
    for name in [
        "garbage",
        &format!("{key}-abc"),
        &format!("{key}_0000000001"),
        &format!("{other_key}-0000000001"),
        &format!("{}-0000000002", key.to_lowercase()),
    ] {
        zk.create(&format!("{dir}/{name}"), b"x", &persistent)
            .await
            .expect("garbage node");
    }
    // Nodes with our key and a valid sequence, lower than any peer's, whose
    // data is not a usable peer id: invalid bytes, a foreign id, huge data.
    zk.create(
        &format!("{dir}/{key}-"),
        &[0xff, 0x00, 0xfe],
        &seq_persistent,
    )
    .await
    .expect("bad data");
    zk.create(&format!("{dir}/{key}-"), b"127.0.0.1:1", &seq_persistent)
        .await
        .expect("foreign id");
    zk.create(
        &format!("{dir}/{key}-"),
        &vec![b'a'; 512 * 1024],
        &seq_persistent,
    )
    .await
    .expect("huge data");
    let started = Instant::now();
    let m = c
        .wait_converged(&base, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    eprintln!(
        "converged on {m} in {:?} despite garbage",
        started.elapsed()
    );
    for s in &c.services {
        let info = c
            .http
            .get(format!("http://{}/info", s.id))
            .send()
            .await
            .expect("service alive");
        assert!(info.status().is_success());
    }
    // Malformed requests get clear errors, and the service keeps running.
    let bad = c
        .http
        .post(format!(
            "http://{}/v1/election/status?base=a/b&type=meta2",
            m
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status().as_u16(), 400);
    let body: Value = bad.json().await.expect("json error");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid"),
        "{body}"
    );
    let wrong_type = c
        .http
        .post(format!(
            "http://{}/v1/election/status?base=X.1&type=meta1",
            m
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong_type.status().as_u16(), 400);
    // One byte over the limit (max_body_bytes, 64 KiB by default) is
    // refused; at the limit, the body is read (and is no JSON). Much larger
    // bodies are refused as well, but the service closes without reading
    // them, and a client still sending may never see the answer.
    let limit = 64 * 1024;
    for (len, want) in [(limit + 1, 413), (limit, 400)] {
        let answer = c
            .http
            .post(format!("http://{m}/v1/peer/getvers"))
            .body(vec![b'{'; len])
            .header("content-type", "application/json")
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status().as_u16(), want, "a body of {len} bytes");
    }
    let nonsense = c
        .http
        .post(format!("http://{}/v1/peer/getvers", m))
        .body("{\"base\": 5}")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("answer");
    assert!(nonsense.status().is_client_error());
    c.wait_converged(&base, T).await.expect("still converged");
}

/// Several GETVERS in one call (`/v1/peer/getvers_many`, what a service
/// sends a peer when several wait): one answer per question, in order,
/// each what `/v1/peer/getvers` would answer; too many in one call is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_getvers_in_one_call_are_answered_in_order() {
    let c = Cluster::start(3, ServiceOpts::default());
    let base = c.create_container("acct", "batched").await;
    let m = c.wait_converged(&base, T).await.expect("converged");
    let other = c
        .services
        .iter()
        .map(|s| s.id.clone())
        .find(|s| *s != m)
        .expect("a slave");
    let ask = |extra: Value| {
        let mut a = serde_json::json!({"base": base.as_str(), "type": "meta2", "from": other});
        if let (Some(a), Some(extra)) = (a.as_object_mut(), extra.as_object()) {
            a.extend(extra.clone());
        }
        a
    };
    let asks = vec![
        // Names a node the master does not own: refused.
        ask(serde_json::json!({"master_seq": 987654})),
        ask(serde_json::json!({})),
        ask(serde_json::json!({"type": "meta1"})),
    ];
    let answer = c
        .http
        .post(format!("http://{m}/v1/peer/getvers_many"))
        .json(&serde_json::json!({ "asks": asks }))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = answer.json().await.expect("json");
    let answers = body["answers"].as_array().expect("answers");
    assert_eq!(answers.len(), 3, "{body}");
    assert_eq!(answers[0]["reply"]["result"], "refused", "{body}");
    assert_eq!(answers[1]["reply"]["result"], "version", "{body}");
    assert_eq!(answers[1]["reply"]["version"]["state"], "known", "{body}");
    assert_eq!(answers[2]["error"][0], 400, "{body}");

    let too_many = vec![ask(serde_json::json!({})); 129];
    let answer = c
        .http
        .post(format!("http://{m}/v1/peer/getvers_many"))
        .json(&serde_json::json!({ "asks": too_many }))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 400);
    assert_eq!(c.wait_converged(&base, T).await.expect("converged"), m);
}

/// A base nobody created is not managed: 431 (as 404), never an election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_base_is_not_managed() {
    let c = Cluster::start(1, ServiceOpts::default());
    let base = base_of("nobody", "nothing");
    let a = c.call(&c.services[0].id, "status", &base, T).await;
    assert_eq!(a.status, 431, "{a:?}");
    assert!(a.message.contains("Base not managed"), "{a:?}");
}

/// SIGTERM leaves every election cleanly: peers take over at once instead
/// of waiting for the session to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_over_without_waiting_for_expiry() {
    // A long session (tickTime 500 ms allows up to 10 s) so that "did not
    // wait for the expiry" has room on two shared cores.
    let (session, budget) = (Duration::from_secs(9), Duration::from_secs(8));
    let opts = ServiceOpts {
        session_timeout_ms: session.as_millis() as u64,
        ..ServiceOpts::default()
    };
    let opts = ServiceOpts {
        extra: vec!["--exit-budget-ms".into(), budget.as_millis().to_string()],
        ..opts
    };
    let mut c = Cluster::start_with_tick(3, opts, 500);
    let mut bases = Vec::new();
    for i in 0..20 {
        bases.push(c.create_container("acct", &format!("term-{i}")).await);
    }
    let mut mastered = Vec::new();
    let victim = c.services[0].id.clone();
    for b in &bases {
        if c.wait_converged(b, T).await.expect("converged") == victim {
            mastered.push(b.clone());
        }
    }
    assert!(!mastered.is_empty(), "the victim masters some base");
    let took = c.service_mut(&victim).terminate();
    eprintln!(
        "SIGTERM exit with {} mastership(s): {took:?}",
        mastered.len()
    );
    // Every election was left before the budget ran out (the service waits
    // 9/10 of it, then closes the session with elections still joined).
    let log = c.service(&victim).log_text();
    assert!(log.contains("SIGTERM: leaving every election"), "{log}");
    assert!(
        !log.contains("still members after the budget"),
        "elections not left within the budget: {log}"
    );
    assert!(took < budget.mul_f32(0.9), "clean exit took {took:?}");
    let started = Instant::now();
    for b in &mastered {
        // Long enough for a hand-over that waits for the expiry to finish,
        // so that the bound below says what went wrong.
        let m = c
            .wait_converged(b, session * 2)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        assert_ne!(m, victim);
    }
    let handover = started.elapsed();
    eprintln!(
        "hand-over of {} base(s) after the exit: {handover:?}",
        mastered.len()
    );
    assert!(
        handover < expiry_floor(session),
        "handover {handover:?} may have waited for the {session:?} session expiry"
    );
}

/// Idle elections expire, slaves before masters, then are forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_elections_expire_slaves_first() {
    let extra = [
        "--expire-slave-s",
        "1",
        "--expire-master-s",
        "3",
        "--expire-none-s",
        "1",
    ];
    let opts = ServiceOpts {
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..ServiceOpts::default()
    };
    let c = Cluster::start(3, opts);
    let base = c.create_container("acct", "idle").await;
    let master = c
        .wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    // The last access (debug does not touch an election).
    let idle_since = Instant::now();
    let slaves: Vec<String> = c.ids().into_iter().filter(|i| *i != master).collect();
    // Both slaves leave once idle for 1 s, and they must do so before the
    // master may (idle for 3 s): poll them until then.
    loop {
        let mut expired = 0;
        for s in &slaves {
            let d = c.debug(s, &base).await;
            // Either left (NONE, after SLAVE) or already forgotten (null).
            if d.is_null() {
                expired += 1;
            } else if d["local"]["state"] == "NONE" {
                assert!(
                    log_entries(&d)
                        .iter()
                        .any(|l| l.ends_with(":SLAVE:NONE:LEAVING")),
                    "{s} left, but not as an idle SLAVE: {d}"
                );
                expired += 1;
            }
        }
        if expired == slaves.len() {
            break;
        }
        assert!(
            idle_since.elapsed() < Duration::from_secs(3),
            "the idle slaves did not leave before the master could\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = c.debug(&master, &base).await;
    assert_eq!(
        d["local"]["state"],
        "MASTER",
        "the master outlives its slaves ({:?} idle): {d}",
        idle_since.elapsed()
    );
    let started = Instant::now();
    loop {
        let d = c.debug(&master, &base).await;
        if d.is_null() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the idle master never expired: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in &slaves {
        assert!(
            c.debug(s, &base).await.is_null(),
            "{s} still remembers the idle election"
        );
    }
    // A new request starts it again.
    c.wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}

/// SIGINT exits at once (no leave, no budget); closing the session lets
/// peers take over without waiting for its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_fast() {
    let (session, budget) = (Duration::from_secs(9), Duration::from_secs(8));
    let opts = ServiceOpts {
        session_timeout_ms: session.as_millis() as u64,
        ..ServiceOpts::default()
    };
    let opts = ServiceOpts {
        extra: vec!["--exit-budget-ms".into(), budget.as_millis().to_string()],
        ..opts
    };
    let mut c = Cluster::start_with_tick(3, opts, 500);
    let base = c.create_container("acct", "sigint").await;
    let master = c
        .wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let took = c.service_mut(&master).interrupt();
    eprintln!("SIGINT exit: {took:?}");
    let log = c.service(&master).log_text();
    assert!(log.contains("SIGINT: exiting fast"), "{log}");
    assert!(took < budget.mul_f32(0.9), "SIGINT exit took {took:?}");
    let started = Instant::now();
    let m = c
        .wait_converged(&base, session * 2)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_ne!(m, master);
    let takeover = started.elapsed();
    eprintln!("takeover after SIGINT: {takeover:?}");
    assert!(
        takeover < expiry_floor(session),
        "takeover {takeover:?} may have waited for the {session:?} session expiry"
    );
}

/// A storm of cold elections reads the directory in shared requests
/// (multi-reads), and every lookup still gets its own base's entry: here
/// four services hold 240 bases, each base on three of them, so an entry
/// handed to the wrong base would name the wrong peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_reads_the_directory_in_shared_requests() {
    use election_core::names::{BaseName, Namespace, ServiceType, ZkLayout};
    let c = Cluster::start(4, ServiceOpts::default());
    let ids = c.ids();
    let zk = raw_zk(&c).await;
    let layout = ZkLayout::new(Namespace::new("OPENIO").expect("ns"));
    let t = ServiceType::new("meta2").expect("type");
    let opts =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    let mut bases = Vec::new();
    for i in 0..240usize {
        let base = base_of("storm", &format!("r{i}"));
        let name = BaseName::parse(&base).expect("base");
        let mut peers: Vec<&String> = ids.iter().collect();
        peers.remove(i % 4);
        let entry = serde_json::json!({"base": base, "type": "meta2", "peers": peers});
        let path = layout.directory_node(&t, &name);
        let (parent, _) = path.rsplit_once('/').expect("parent");
        zk.mkdir(parent, &opts).await.expect("mkdir");
        zk.create(&path, &serde_json::to_vec(&entry).expect("json"), &opts)
            .await
            .expect("entry");
        let (dir, _) = election_dir(&base);
        zk.mkdir(&dir, &opts).await.expect("election dir");
        bases.push((base, ids[i % 4].clone()));
    }
    let answers = futures::future::join_all(bases.iter().map(|(b, _)| c.status_all(b, T))).await;
    for ((base, outsider), answers) in bases.iter().zip(&answers) {
        let (peers, others): (Vec<_>, Vec<_>) =
            answers.iter().cloned().partition(|a| a.id != *outsider);
        one_master(&peers).unwrap_or_else(|e| panic!("{base}: {e}\n{}", c.logs()));
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].status, 431, "{base}: {:?}", others[0]);
    }
    let mut shared = 0.0;
    for id in &ids {
        let text = c.metrics(id).await;
        let count = |op: &str| -> f64 {
            let want = format!("zookeeper_operation_seconds_count{{op=\"{op}\"}} ");
            text.lines()
                .find_map(|l| l.split_once(&want).map(|(_, v)| v))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let (single, multi) = (count("directory_get"), count("directory_multi_get"));
        eprintln!("{id}: 180 lookups or more, {single} gets, {multi} multi-reads");
        assert!(single + multi > 0.0, "{id} read no entry:\n{text}");
        shared += multi;
    }
    assert!(shared > 0.0, "no lookups shared a request");
}
