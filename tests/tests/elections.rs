//! Elections on real ZooKeeper with real `election-server` processes
//! (issue "Elections on real ZooKeeper", tests a–h).

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use system_tests::{base_of, one_master, percentile, Cluster, ServiceOpts};

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
                .any(|l| l.contains(":CREATING:CREATE_OK:WATCHING")),
            "{log:?}"
        );
        assert_eq!(d["peers"].as_array().map(Vec::len), Some(2));
    }
}

/// (b) leave on the master: another peer is master within 1 s, and the old
/// one rejoins as SLAVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_leave_fails_over_within_one_second() {
    let c = Cluster::start(3, ServiceOpts::default());
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
                started.elapsed() < Duration::from_secs(1),
                "round {round}: no new master within 1 s: {answers:?}"
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

/// One sample of every peer's view: base -> [(service, local node)] claiming
/// MASTER with a live session.
async fn live_masters(c: &Cluster) -> HashMap<String, Vec<(String, i64)>> {
    let futs = c
        .services
        .iter()
        .map(|s| async { (s.id.clone(), c.elections(&s.id).await) });
    let mut out: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for (id, v) in futures::future::join_all(futs).await {
        for e in v
            .and_then(|v| v["elections"].as_array().cloned())
            .unwrap_or_default()
        {
            if e["state"] == "MASTER" && e["session_live"] == true {
                let base = e["base"].as_str().unwrap_or_default().to_string();
                out.entry(base)
                    .or_default()
                    .push((id.clone(), e["local_id"].as_i64().unwrap_or(-1)));
            }
        }
    }
    out
}

/// (f) ZooKeeper restarted under 200 elections: all recover, and at no
/// sampled instant do two peers both claim MASTER for one base with live
/// sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_zookeeper_restart_under_200_elections() {
    let c = Cluster::start(3, ServiceOpts::default());
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
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = std::sync::Arc::new(tokio::sync::RwLock::new(c));
    let sampler = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples = 0;
            let mut violations = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let first = live_masters(&*c.read().await).await;
                let suspicious: Vec<_> = first.iter().filter(|(_, v)| v.len() > 1).collect();
                if !suspicious.is_empty() {
                    // Confirm: a claim seen in both rounds with the same node
                    // lasted the whole time between them, so they overlapped.
                    let second = live_masters(&*c.read().await).await;
                    for (base, claims) in suspicious {
                        let still: Vec<_> = claims
                            .iter()
                            .filter(|cl| second.get(base).is_some_and(|v| v.contains(cl)))
                            .collect();
                        if still.len() > 1 {
                            violations.push(format!("{base}: {still:?}"));
                        }
                    }
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (samples, violations)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Down longer than the session timeout (2 s): the clients declare their
    // sessions expired, every election is reset and re-run on new sessions.
    c.write().await.zk.restart_after(Duration::from_secs(3));
    let started = Instant::now();
    {
        // With no client request at all, every election that lost its
        // session comes back (MASTER or SLAVE) once a session is restored.
        let c = c.read().await;
        loop {
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
                r.unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
            }
        }
    }
    eprintln!(
        "all 200 bases converged {:?} after the ZooKeeper restart",
        started.elapsed()
    );
    for s in &c.read().await.services {
        let info = c.read().await.info(&s.id).await;
        assert!(
            info["zookeeper"]["reconnects"].as_u64() >= Some(1),
            "{} kept its session through a 3 s outage? {info}",
            s.id
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (samples, violations) = sampler.await.expect("sampler");
    assert!(samples >= 10, "only {samples} samples");
    assert!(violations.is_empty(), "two live masters: {violations:?}");
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
    let huge = c
        .http
        .post(format!("http://{}/v1/peer/getvers", m))
        .body(vec![b'{'; 200_000])
        .header("content-type", "application/json")
        .send()
        .await
        .expect("answer");
    assert_eq!(huge.status().as_u16(), 413, "oversized bodies are refused");
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
    let opts = ServiceOpts {
        session_timeout_ms: 4_000,
        ..ServiceOpts::default()
    };
    let mut c = Cluster::start(3, opts);
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
    assert!(took < Duration::from_secs(3), "clean exit took {took:?}");
    let started = Instant::now();
    for b in &mastered {
        let m = c
            .wait_converged(b, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        assert_ne!(m, victim);
    }
    let handover = started.elapsed();
    assert!(
        handover < Duration::from_secs(2),
        "handover {handover:?} should not wait for the 4 s session expiry"
    );
    assert!(c
        .service(&victim)
        .log_text()
        .contains("SIGTERM: leaving every election"));
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
    let slaves: Vec<String> = c.ids().into_iter().filter(|i| *i != master).collect();
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let d = c.debug(&master, &base).await;
    assert_eq!(
        d["local"]["state"], "MASTER",
        "the master outlives its slaves: {d}"
    );
    for s in &slaves {
        let d = c.debug(s, &base).await;
        // Either left (NONE) or already forgotten (null).
        if !d.is_null() {
            assert_eq!(d["local"]["state"], "NONE", "{s}: {d}");
            assert!(
                log_entries(&d)
                    .iter()
                    .any(|l| l.ends_with(":SLAVE:NONE:LEAVING")),
                "{d}"
            );
        }
    }
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

/// SIGINT exits at once; closing the session lets peers take over quickly too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_fast() {
    let opts = ServiceOpts {
        session_timeout_ms: 4_000,
        ..ServiceOpts::default()
    };
    let mut c = Cluster::start(3, opts);
    let base = c.create_container("acct", "sigint").await;
    let master = c
        .wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let took = c.service_mut(&master).interrupt();
    assert!(took < Duration::from_secs(1), "SIGINT exit took {took:?}");
    let started = Instant::now();
    let m = c
        .wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_ne!(m, master);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "takeover waited for the session expiry: {:?}",
        started.elapsed()
    );
}
