//! Operations: configuration precedence and validation through the real
//! binary, `/metrics` read by a Prometheus text-format parser, request ids
//! followed across peers, the shared secret, ZooKeeper ACLs, `balance`, and
//! the packaging helpers (`--version`, man pages, completions).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use system_tests::{server_bin, Cluster, ServiceOpts, TempDir};
use zookeeper_client as zk;

const T: Duration = Duration::from_secs(10);

/// Flags, environment, and the start of the expected error.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

fn server(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(server_bin());
    cmd.args(args);
    for v in ["OIO_NS", "OIO_ZOOKEEPER", "RUST_LOG", "ELECTION_CONFIG"] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run election-server");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// flag > environment > file > default, shown by --print-config; a bad
/// value stops the service with the key, the value, its source and the rule.
#[test]
fn configuration_precedence_and_validation() {
    let dir = TempDir::new("config");
    let file = dir.path().join("election.toml");
    std::fs::write(
        &file,
        "data_dir = \"/var/lib/x\"\nsession_timeout_ms = 3000\nwait_delay_ms = 4000\ngetvers_attempts = 7\n",
    )
    .expect("write");
    let f = file.to_str().expect("utf-8");
    let (code, out, err) = server(
        &[
            "--config",
            f,
            "--session-timeout-ms",
            "9000",
            "--print-config",
        ],
        &[
            ("ELECTION_SESSION_TIMEOUT_MS", "5000"),
            ("ELECTION_WAIT_DELAY_MS", "6000"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for line in [
        "session_timeout_ms = 9000  # flag --session-timeout-ms".to_string(),
        "wait_delay_ms = 6000  # environment ELECTION_WAIT_DELAY_MS".to_string(),
        format!("getvers_attempts = 7  # file {f}"),
        "pending_timeout_ms = 12000  # default".to_string(),
        format!("data_dir = \"/var/lib/x\"  # file {f}"),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} in\n{out}");
    }
    // The same file through ELECTION_CONFIG.
    let (code, out, _) = server(&["--print-config"], &[("ELECTION_CONFIG", f)]);
    assert_eq!(code, 0);
    assert!(out.contains("session_timeout_ms = 3000  # file"), "{out}");

    let cases: &[Case] = &[
        (
            &["--data-dir", "/d", "--session-timeout-ms", "10"],
            &[],
            "election-server: invalid configuration: `session_timeout_ms` = 10 (from flag --session-timeout-ms): must be between 500 and 600000",
        ),
        (
            &["--data-dir", "/d"],
            &[("ELECTION_LOG_FORMAT", "xml")],
            "election-server: invalid configuration: `log_format` = \"xml\" (from environment ELECTION_LOG_FORMAT): human or json",
        ),
        (
            &[],
            &[],
            "election-server: invalid configuration: `data_dir` = \"\" (from default): required",
        ),
        (
            &["--data-dir", "/d", "--expire-master-s", "10", "--expire-slave-s", "10"],
            &[],
            "election-server: invalid configuration: `expire_master_s` = 10 (from flag --expire-master-s): must exceed expire_slave_s (10)",
        ),
        (
            &["--config", "/nonexistent/election.toml"],
            &[],
            "election-server: cannot read the configuration file /nonexistent/election.toml",
        ),
    ];
    for (args, env, expected) in cases {
        let (code, _, err) = server(args, env);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with(expected), "{args:?}: {err}");
    }
    std::fs::write(&file, "data_dir = \"/d\"\nsesion_timeout_ms = 1\n").expect("write");
    let (code, _, err) = server(&["--config", f], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown key `sesion_timeout_ms` in file"),
        "{err}"
    );
}

/// `--version` carries the git revision; the man pages and completions
/// generated at build time are complete.
#[test]
fn version_man_pages_and_completions() {
    let (code, out, _) = server(&["--version"], &[]);
    assert_eq!(code, 0);
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match rev {
        Some(rev) => assert!(out.contains(&format!("(git {rev}")), "{out} vs HEAD {rev}"),
        None => assert!(out.contains("(git "), "{out}"),
    }
    let (_, man, _) = server(&["--man"], &[]);
    assert!(man.contains(".TH election-server 1"), "{man}");
    for flag in [
        "session\\-timeout\\-ms",
        "secret\\-file",
        "zk\\-digest\\-file",
        "print\\-config",
    ] {
        assert!(man.contains(flag), "{flag} in the man page");
    }
    // The packaged example configuration is valid, and systemd waits for
    // the clean leave before its SIGKILL.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let example = format!("{root}/packaging/election-server.toml");
    let (code, shown, err) = server(&["--config", &example, "--print-config"], &[]);
    assert_eq!(code, 0, "{err}");
    let budget_ms: u64 = shown
        .lines()
        .find_map(|l| l.strip_prefix("exit_budget_ms = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("exit_budget_ms");
    let unit =
        std::fs::read_to_string(format!("{root}/packaging/election-server.service")).expect("unit");
    let stop_s: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec");
    assert!(
        stop_s * 1000 > budget_ms,
        "TimeoutStopSec {stop_s} s vs exit budget {budget_ms} ms"
    );
    let (_, bash, _) = server(&["--completions", "bash"], &[]);
    assert!(bash.contains("--balance-rate"), "bash completion");
    let openio = |args: &[&str]| {
        let out = Command::new(system_tests::openio_bin())
            .args(args)
            .output()
            .expect("openio");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let man = openio(&["man"]);
    assert!(man.contains(".TH openio 1"), "{man}");
    assert!(man.contains(".TH openio-election"), "subcommand pages");
    assert!(man.contains("balance"));
    assert!(openio(&["completion", "zsh"]).contains("#compdef openio"));
}

/// Parses `/metrics` with a Prometheus text-format parser: name -> samples.
async fn scrape(c: &Cluster, id: &str) -> BTreeMap<String, Vec<prometheus_parse::Sample>> {
    let text = c.metrics(id).await;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let mut out: BTreeMap<String, Vec<prometheus_parse::Sample>> = BTreeMap::new();
    for s in parsed.samples {
        out.entry(s.metric.clone()).or_default().push(s);
    }
    out
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
        prometheus_parse::Value::Summary(_) => 0.0,
    }
}

fn sum(
    m: &BTreeMap<String, Vec<prometheus_parse::Sample>>,
    name: &str,
    label: Option<(&str, &str)>,
) -> f64 {
    m.get(name)
        .map(|v| {
            v.iter()
                .filter(|s| label.is_none_or(|(k, want)| s.labels.get(k) == Some(want)))
                .map(value)
                .sum()
        })
        .unwrap_or(0.0)
}

/// The families are there, and move when elections change; request ids
/// reach the peers' logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_request_ids_cross_peers() {
    let opts = ServiceOpts {
        extra: vec![
            "--log-filter".into(),
            "info,access=debug,zookeeper_client=warn".into(),
            "--log-format".into(),
            "json".into(),
        ],
        ..ServiceOpts::default()
    };
    let c = Cluster::start(3, opts);
    let ids = c.ids();
    let before = scrape(&c, &ids[0]).await;
    for family in [
        "election_elections",
        "election_zookeeper_session_state",
        "election_zookeeper_reconnects_total",
        "election_failovers_total",
        "election_replication_failures_total",
        "election_resyncs_total",
        "election_stop_writes",
        "election_emergency_read_only",
        "election_time_to_final_seconds_count",
    ] {
        assert!(
            before.contains_key(family),
            "{family} in {:?}",
            before.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(
        sum(
            &before,
            "election_zookeeper_session_state",
            Some(("state", "CONNECTED"))
        ),
        1.0
    );
    assert_eq!(
        sum(&before, "election_elections", Some(("state", "PEERING"))),
        0.0
    );

    let base = c.create_container("acct", "metrics").await;
    let master = c.wait_converged(&base, T).await.expect("converged");
    let (code, msg, _) = c.write(&base, &[("k", "v")], T).await;
    assert_eq!(code, 200, "{msg}");
    let after = scrape(&c, &master).await;
    assert_eq!(
        sum(&after, "election_elections", Some(("state", "MASTER"))),
        1.0
    );
    assert!(sum(&after, "election_transitions_total", Some(("to", "MASTER"))) >= 1.0);
    assert!(sum(&after, "election_time_to_final_seconds_count", None) >= 1.0);
    assert!(
        sum(
            &after,
            "election_getvers_outcomes_total",
            Some(("outcome", "OK"))
        ) >= 1.0
    );
    assert!(
        sum(
            &after,
            "election_zookeeper_operation_seconds_count",
            Some(("op", "create"))
        ) >= 1.0
    );
    assert!(sum(&after, "election_replication_seconds_count", None) >= 1.0);
    assert!(
        sum(
            &after,
            "election_http_requests_total",
            Some(("route", "/v1/container/set"))
        ) >= 1.0
    );

    // A leave moves the mastership: a failover, counted where it lands.
    assert_eq!(c.call(&master, "leave", &base, T).await.status, 200);
    let mut failovers = 0.0;
    let started = Instant::now();
    while failovers < 1.0 && started.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = c.wait_converged(&base, T).await;
        failovers = 0.0;
        for id in &ids {
            failovers += sum(&scrape(&c, id).await, "election_failovers_total", None);
        }
    }
    assert!(failovers >= 1.0, "a failover was counted");

    // One request id, from the client to the master and its slaves.
    let new_master = c.wait_converged(&base, T).await.expect("converged");
    let resp = c
        .http
        .post(format!("http://{new_master}/v1/container/set"))
        .query(&[("base", base.as_str()), ("type", "meta2")])
        .header("x-oio-req-id", "TRACE-42-across-peers")
        .json(&serde_json::json!({"properties": {"traced": "yes"}}))
        .send()
        .await
        .expect("write");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-oio-req-id"], "TRACE-42-across-peers");
    let started = Instant::now();
    loop {
        // JSON logs: the id is the `req` span's field on the peers' lines.
        let logged: Vec<&String> = ids
            .iter()
            .filter(|id| {
                c.service(id).log_text().lines().any(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("a JSON log line");
                    v["span"]["id"] == "TRACE-42-across-peers"
                        && v["fields"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("/v1/peer/replicate"))
                })
            })
            .collect();
        if logged.len() == 2 {
            assert!(
                !logged.contains(&&new_master),
                "the slaves logged the master's replication"
            );
            break;
        }
        assert!(
            started.elapsed() < T,
            "request id in both slaves' logs: {logged:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With a shared secret, protected routes answer 401 without it and work
/// with it; the cluster itself (peer RPC) works; the secret never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_secret_protects_peer_and_admin_routes() {
    let dir = TempDir::new("secret");
    let secret_file = dir.path().join("secret");
    let secret = "not-in-any-log-4b1d";
    std::fs::write(&secret_file, format!("{secret}\n")).expect("write");
    let sf = secret_file.to_str().expect("utf-8").to_string();
    let opts = ServiceOpts {
        extra: vec!["--secret-file".into(), sf.clone()],
        ..ServiceOpts::default()
    };
    let c = Cluster::start(3, opts);
    let ids = c.ids();
    let base = c.create_container("myaccount", "FVE0").await;
    let master = c
        .wait_converged(&base, T)
        .await
        .expect("elections work with the secret");
    let (code, msg, _) = c.write(&base, &[("a", "1")], T).await;
    assert_eq!(code, 200, "replication works with the secret: {msg}");

    let q = [("base", base.as_str()), ("type", "meta2")];
    let protected: &[(&str, &str)] = &[
        ("POST", "/v1/election/leave"),
        ("POST", "/v1/election/sync"),
        ("POST", "/v1/admin/balance"),
        ("POST", "/v1/admin/readonly/clear"),
        ("POST", "/v1/admin/fault"),
        ("POST", "/v1/peer/getvers"),
        ("POST", "/v1/peer/getvers_many"),
        ("POST", "/v1/peer/replicate"),
        ("POST", "/v1/peer/replicates"),
        ("GET", "/v1/peer/dump"),
        ("POST", "/v3.0/OPENIO/admin/leave"),
        ("POST", "/v3.0/OPENIO/admin/sync"),
    ];
    for (method, path) in protected {
        for wrong in [None, Some("wrong"), Some("not-in-any-log-4b1")] {
            let mut req = match *method {
                "GET" => c.http.get(format!("http://{master}{path}")),
                _ => c.http.post(format!("http://{master}{path}")),
            }
            .query(&q);
            if let Some(w) = wrong {
                req = req.header("x-election-secret", w);
            }
            let resp = req.send().await.expect("answer");
            assert_eq!(resp.status(), 401, "{method} {path} with {wrong:?}");
            assert_eq!(resp.headers()["content-type"], "application/json");
            let body: serde_json::Value = resp.json().await.expect("JSON body");
            assert_eq!(
                body,
                serde_json::json!({"status": 401, "message": "unauthorized"})
            );
        }
    }
    // Open routes stay open.
    for path in [
        "/v1/election/status",
        "/v1/election/debug",
        "/metrics",
        "/info",
    ] {
        let resp = c
            .http
            .post(format!("http://{master}{path}"))
            .query(&q)
            .send()
            .await
            .expect("answer");
        assert_ne!(resp.status(), 401, "{path}");
    }
    // With the secret: leave works through the API and through the CLI.
    let resp = c
        .http
        .post(format!("http://{master}/v1/election/leave"))
        .query(&q)
        .header("x-election-secret", secret)
        .send()
        .await
        .expect("leave");
    assert_eq!(resp.status(), 200);
    let run = c
        .openio(&[
            "-a",
            "myaccount",
            "--secret-file",
            &sf,
            "election",
            "sync",
            "meta2",
            "FVE0",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = c
        .openio(&["-a", "myaccount", "election", "leave", "meta2", "FVE0"])
        .await;
    assert!(
        run.table().iter().all(|r| r[1] == "401"),
        "without the secret: {run:?}"
    );
    assert!(
        run.stderr.contains("pass --secret-file FILE"),
        "says what to do: {run:?}"
    );

    // Never in logs, metrics, debug output or --print-config.
    let mut seen = c.logs();
    for id in &ids {
        seen.push_str(&c.metrics(id).await);
        seen.push_str(&c.debug(id, &base).await.to_string());
        seen.push_str(&c.info_text(id).await);
    }
    seen.push_str(
        &server(
            &["--data-dir", "/d", "--secret-file", &sf, "--print-config"],
            &[],
        )
        .1,
    );
    assert!(seen.contains("401"), "the refusals are logged");
    assert!(!seen.contains(secret), "the secret leaked");
}

/// With digest authentication, another ZooKeeper client can read our nodes
/// (for `openio election check`) but can neither delete them nor add any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_acls_keep_other_clients_out() {
    let dir = TempDir::new("digest");
    let digest = dir.path().join("digest");
    std::fs::write(&digest, "election:zk-s3cret\n").expect("write");
    let opts = ServiceOpts {
        extra: vec![
            "--zk-digest-file".into(),
            digest.to_str().expect("utf-8").into(),
            "--zk-chroot".into(),
            "/tenant/one".into(),
        ],
        ..ServiceOpts::default()
    };
    let c = Cluster::start(3, opts);
    let base = c.create_container("acct", "acl").await;
    c.wait_converged(&base, T).await.expect("converged");
    let debug = c.debug(&c.ids()[0], &base).await;
    // Under the chroot, which the service created; `base.zk` is the full
    // path and `base.zk_server` the plain hosts, as `election check` needs.
    let prefix = debug["base"]["zk"].as_str().expect("base.zk").to_string();
    assert!(
        prefix.starts_with("/tenant/one/hc/ns/OPENIO/el/meta2/"),
        "{prefix}"
    );
    assert_eq!(debug["base"]["zk_server"], c.zk.connect_string().as_str());
    let (parent, name) = prefix.rsplit_once('/').expect("parent");

    let stranger = zk::Client::connect(&c.zk.connect_string())
        .await
        .expect("connect");
    let nodes: Vec<String> = stranger
        .list_children(parent)
        .await
        .expect("anyone may list")
        .into_iter()
        .filter(|n| n.starts_with(name))
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let node = format!("{parent}/{}", nodes[0]);
    let (data, _) = stranger.get_data(&node).await.expect("anyone may read");
    assert!(c.ids().contains(&String::from_utf8(data).expect("utf-8")));
    assert_eq!(
        stranger.delete(&node, None).await,
        Err(zk::Error::NoAuth),
        "delete refused"
    );
    let rogue = stranger
        .create(
            &format!("{prefix}-"),
            b"127.0.0.1:1",
            &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
        )
        .await;
    assert_eq!(rogue.err(), Some(zk::Error::NoAuth), "no rogue node");
    let dir_node = "/tenant/one/hc/ns/OPENIO/dir/meta2";
    assert_eq!(
        stranger.delete(dir_node, None).await.err(),
        Some(zk::Error::NoAuth)
    );
    // With the digest, the owner's tools still can.
    let owner = zk::Client::connector()
        .with_auth("digest", b"election:zk-s3cret")
        .connect(&c.zk.connect_string())
        .await
        .expect("connect");
    assert!(owner.check_stat(&node).await.expect("stat").is_some());
    assert!(c.wait_converged(&base, T).await.is_ok());
}

/// `balance` hands masterships over, at most `max`, paced by balance_rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_moves_masterships_at_its_rate() {
    let opts = ServiceOpts {
        extra: vec!["--balance-rate".into(), "4".into()],
        ..ServiceOpts::default()
    };
    let c = Cluster::start(3, opts);
    let ids = c.ids();
    // Make ids[0] master of every base: other masters leave (and rejoin
    // behind) until it is.
    let mut bases = Vec::new();
    for i in 0..6 {
        let base = c.create_container("acct", &format!("bal{i}")).await;
        for _ in 0..10 {
            let master = c.wait_converged(&base, T).await.expect("converged");
            if master == ids[0] {
                break;
            }
            assert_eq!(c.call(&master, "leave", &base, T).await.status, 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bases.push(base);
    }
    assert_eq!(masters_of(&c, &ids[0]).await, 6);

    let run = c
        .openio(&[
            "election",
            "balance",
            "meta2",
            "--service-id",
            &ids[0],
            "--max",
            "3",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let table = run.table();
    assert_eq!(table.len(), 1, "{run:?}");
    assert_eq!(
        table[0][..5],
        [
            ids[0].clone(),
            "200".into(),
            "6".into(),
            "6".into(),
            "3".into()
        ]
    );
    assert!(run.stderr.contains("1/1 done"), "progress: {}", run.stderr);
    // 3 leaves at 4 per second: at least 2 pauses of 250 ms.
    assert!(
        run.took >= Duration::from_millis(500),
        "paced: {:?}",
        run.took
    );
    let log = c.service(&ids[0]).log_text();
    let took_ms: u64 = log
        .lines()
        .find_map(|l| {
            l.split("balance: left 3 of 6 eligible mastership(s) in ")
                .nth(1)
        })
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.trim().parse().ok())
        .expect("the balance line in the log");
    assert!(took_ms >= 500, "{took_ms} ms");
    // The masterships moved and every base still has one master.
    let started = Instant::now();
    loop {
        let mut ok = true;
        for b in &bases {
            ok &= c.wait_converged(b, T).await.is_ok();
        }
        if ok && masters_of(&c, &ids[0]).await == 3 {
            break;
        }
        assert!(started.elapsed() < T, "3 masterships left ids[0]");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (m1, m2) = (masters_of(&c, &ids[1]).await, masters_of(&c, &ids[2]).await);
    assert_eq!(m1 + m2, 3);
    // --average: only the services above the average, for their excess.
    // ids[0] keeps 3 of the 6 masterships; the other 3 are split between
    // ids[1] and ids[2] as the elections went. The average is 2 in every
    // case; the expected rows (Id, Status, Masters, Left), by split:
    let row = |i: usize, masters: &str, left: &str| {
        vec![
            ids[i].clone(),
            "200".to_string(),
            masters.into(),
            left.into(),
        ]
    };
    let mut expected = match (m1, m2) {
        (3, 0) => vec![row(0, "3", "1"), row(1, "3", "1")],
        (2, 1) | (1, 2) => vec![row(0, "3", "1")],
        (0, 3) => vec![row(0, "3", "1"), row(2, "3", "1")],
        split => panic!("masters of ids[1], ids[2]: {split:?}, not 3 in all"),
    };
    expected.sort();
    let run = c
        .openio(&["election", "balance", "meta2", "--average", "--no-rejoin"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let mut got: Vec<Vec<String>> = run
        .table()
        .into_iter()
        .map(|r| vec![r[0].clone(), r[1].clone(), r[2].clone(), r[4].clone()])
        .collect();
    got.sort();
    assert_eq!(got, expected, "split {m1}+{m2}: {run:?}");
}

async fn masters_of(c: &Cluster, id: &str) -> i64 {
    c.info(id).await["elections"]["master"]
        .as_i64()
        .expect("masters")
}

/// Issue 14, Hm2: `disconnect_grace_ms` was checked against the session
/// timeout asked for, not the one ZooKeeper granted (its maxSessionTimeout,
/// here 20 ticks of 200 ms). A grace of 30 s with a 4 s session kept
/// elections, and masters, alive for 26 s after ZooKeeper could have expired
/// the session and elected another master. Before the fix, this service ran
/// with "session 4s, grace 30s".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_never_outlasts_the_granted_session() {
    let opts = ServiceOpts {
        session_timeout_ms: 60_000,
        extra: vec!["--disconnect-grace-ms".into(), "30000".into()],
    };
    let c = Cluster::start(1, opts);
    let id = c.ids()[0].clone();
    let log = c.service(&id).log_text();
    assert!(log.contains("(session 4s, grace 2.666s)"), "{log}");
    assert!(
        log.contains("disconnect_grace_ms = 30000 is too long for the session ZooKeeper granted"),
        "{log}"
    );
    let info = c.info(&id).await;
    let zk = &info["zookeeper"];
    assert_eq!(zk["session_timeout_ms"], 4_000, "granted: {info}");
    assert_eq!(zk["disconnect_grace_ms"], 2_666, "two thirds of it: {info}");
}

/// Runs `promtool` (Debian's `prometheus` package, installed by
/// `scripts/test.sh`); a missing promtool fails the test.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is missing ({e}): run scripts/test.sh, or apt-get install prometheus")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The names a scrape can hold: each family's samples as Prometheus stores
/// them (a counter's `_total`, a histogram's `_bucket`, `_sum`, `_count`).
fn exported_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Every `election_*` name in `text`.
fn metric_names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("election_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if end > "election_".len() {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// packaging/'s alert rules pass promtool's checks and unit tests (each
/// alert fires from series like ours); every query of the Grafana dashboard
/// parses; and every metric either names is one a live service exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboard_use_live_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = root.join("packaging/prometheus/election-alerts.yml");
    let tests = root.join("packaging/prometheus/election-alerts.test.yml");
    let rules_path = rules.to_str().expect("utf-8");
    assert!(promtool(&["check", "rules", rules_path]).contains("SUCCESS: 6 rules found"));
    assert!(promtool(&["test", "rules", tests.to_str().expect("utf-8")]).contains("SUCCESS"));

    // The dashboard's queries, as recording rules, so that promtool parses
    // them ($instance as Grafana would expand "All").
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("packaging/grafana/election-server.json"))
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(|e| e.replace("$instance", ".*")))
        .collect();
    assert!(exprs.len() >= 16, "{} queries", exprs.len());
    let dir = TempDir::new("dashboard-rules");
    let as_rules = serde_json::json!({"groups": [{"name": "dashboard", "rules": exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:query{i}"), "expr": e}))
        .collect::<Vec<_>>()}]});
    let path = dir.path().join("dashboard-rules.json");
    std::fs::write(&path, as_rules.to_string()).expect("write");
    promtool(&["check", "rules", path.to_str().expect("utf-8")]);

    // A live service, after an election and a write.
    let c = Cluster::start(3, ServiceOpts::default());
    let base = c.create_container("acct", "alerts").await;
    let master = c.wait_converged(&base, T).await.expect("converged");
    assert_eq!(c.write(&base, &[("k", "v")], T).await.0, 200);
    let live = exported_names(&c.metrics(&master).await);
    let mut used = metric_names_in(&std::fs::read_to_string(&rules).expect("rules"));
    used.extend(exprs.iter().flat_map(|e| metric_names_in(e)));
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !live.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named in packaging/ but not exported: {missing:?}\nexported: {live:?}"
    );
}
