//! The `openio` CLI against a real cluster: the seed's story, table by table.

use std::time::{Duration, Instant};
use system_tests::{Cluster, ServiceOpts};

const T: Duration = Duration::from_secs(5);

fn statuses(rows: &[Vec<String>]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
}

/// Healthy base: one 200 and two 303 naming it; `--long` says OK; leave on
/// the master moves mastership; history merges every peer's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_table_long_view_leave_and_history() {
    let c = Cluster::start(3, ServiceOpts::default());
    let create = c
        .openio(&["-a", "myaccount", "container", "create", "FVE0"])
        .await;
    assert_eq!(create.code, 0, "{create:?}");
    assert!(create.stdout.contains("| FVE0 | True"), "{}", create.stdout);
    let again = c
        .openio(&["-a", "myaccount", "container", "create", "FVE0"])
        .await;
    assert!(
        again.stdout.contains("| FVE0 | False"),
        "idempotent: {}",
        again.stdout
    );

    let run = c
        .openio(&["-a", "myaccount", "election", "status", "meta2", "FVE0"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let rows = statuses(&run.table());
    assert_eq!(rows.len(), 3, "{}", run.stdout);
    let ids = c.ids();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        sorted,
        "rows sorted by Id"
    );
    let masters: Vec<_> = rows.iter().filter(|r| r.1 == "200").collect();
    assert_eq!(masters.len(), 1, "{}", run.stdout);
    let master = masters[0].0.clone();
    assert_eq!(masters[0].2, "OK");
    for r in rows.iter().filter(|r| r.0 != master) {
        assert_eq!(
            (r.1.as_str(), r.2.as_str()),
            ("303", master.as_str()),
            "{}",
            run.stdout
        );
    }
    eprintln!("openio election status (healthy): {:?}", run.took);

    let long = c
        .openio(&[
            "-a",
            "myaccount",
            "election",
            "status",
            "meta2",
            "FVE0",
            "--long",
        ])
        .await;
    assert_eq!(long.code, 0, "{long:?}");
    assert!(
        long.stdout.contains(&format!(
            "Verdict: OK: one master, {master}; 2 slave(s) follow it"
        )),
        "{}",
        long.stdout
    );
    assert!(
        long.stdout.contains("admin=1 properties=0"),
        "base version shown: {}",
        long.stdout
    );
    assert!(long.stdout.contains("CONNECTED"), "{}", long.stdout);

    let json = c
        .openio(&[
            "-a",
            "myaccount",
            "-f",
            "json",
            "election",
            "status",
            "meta2",
            "FVE0",
        ])
        .await;
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).expect("valid JSON output");
    assert_eq!(parsed.as_array().map(Vec::len), Some(3));

    let debug = c
        .openio(&[
            "-a",
            "myaccount",
            "election",
            "debug",
            "meta2",
            "FVE0",
            "--human",
        ])
        .await;
    assert_eq!(debug.code, 0);
    assert!(
        debug.stdout.contains("CREATING, CREATE_OK -> LISTING"),
        "{}",
        debug.stdout
    );
    assert!(debug.stdout.contains("\"zk\": \"/hc/ns/OPENIO/el/meta2/D9/EA/D9EAF7894DB54D52FDA5A0CCC26FF3E3EE2731FEDD9944B06298A22C6BE5FCD5\""), "{}", debug.stdout);

    let leave = c
        .openio(&[
            "-a",
            "myaccount",
            "election",
            "leave",
            "meta2",
            "FVE0",
            "--service-id",
            &master,
        ])
        .await;
    assert_eq!(
        statuses(&leave.table()),
        vec![(master.clone(), "200".into(), "OK".into())]
    );
    let started = Instant::now();
    let new = loop {
        let run = c
            .openio(&["-a", "myaccount", "election", "status", "meta2", "FVE0"])
            .await;
        let rows = statuses(&run.table());
        if let Some(m) = rows.iter().find(|r| r.1 == "200") {
            if m.0 != master && rows.iter().filter(|r| r.1 == "303").all(|r| r.2 == m.0) {
                break m.0.clone();
            }
        }
        assert!(
            started.elapsed() < T,
            "mastership did not move: {}",
            run.stdout
        );
    };
    assert_ne!(new, master);

    let history = c
        .openio(&["-a", "myaccount", "election", "history", "meta2", "FVE0"])
        .await;
    assert_eq!(history.code, 0);
    let rows = history.table();
    assert!(
        rows.iter()
            .any(|r| r[1] == master && r[2] == "MASTER, LEAVE_REQ -> LEAVING"),
        "{}",
        history.stdout
    );
    let times: Vec<&String> = rows.iter().map(|r| &r[0]).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");

    // The same history as a picture: one lane per peer, one mark per
    // transition of the merged table, each mark's tooltip naming it; and
    // in a page with the table under it.
    let dir = system_tests::TempDir::new("history-svg");
    let (svg, page) = (dir.path().join("h.svg"), dir.path().join("h.html"));
    let (svg_arg, page_arg) = (svg.to_str().expect("utf-8"), page.to_str().expect("utf-8"));
    let drawn = c
        .openio(&[
            "-a",
            "myaccount",
            "election",
            "history",
            "meta2",
            "FVE0",
            "--svg",
            svg_arg,
            "--html",
            page_arg,
        ])
        .await;
    assert_eq!(drawn.code, 0, "{drawn:?}");
    let rows = drawn.table();
    let text = std::fs::read_to_string(&svg).expect("svg written");
    let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
    let lanes: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("lane"))
        .collect();
    let mut lane_peers: Vec<&str> = lanes
        .iter()
        .filter_map(|n| n.attribute("data-peer"))
        .collect();
    lane_peers.sort();
    assert_eq!(
        lane_peers,
        sorted.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let tips: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("mark"))
        .filter_map(|n| {
            n.children()
                .find(|c| c.has_tag_name("title"))?
                .text()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(tips.len(), rows.len(), "one mark per transition:\n{text}");
    assert!(
        tips.iter()
            .any(|t| t.ends_with("MASTER, LEAVE_REQ -> LEAVING")),
        "{tips:?}"
    );
    let html = std::fs::read_to_string(&page).expect("page written");
    assert!(html.contains("<svg") && html.contains("MASTER, LEAVE_REQ -&gt; LEAVING</td>"));

    let show = c
        .openio(&["-a", "myaccount", "container", "show", "FVE0"])
        .await;
    assert!(
        show.stdout
            .contains("697ECB056A5F9339B36C3B0A020B5AB17B4B0160FBEBEA203315EA1FC1B61605.1"),
        "{}",
        show.stdout
    );
    let missing = c
        .openio(&["-a", "myaccount", "election", "status", "meta2", "NOPE"])
        .await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("check the account and reference"),
        "{}",
        missing.stderr
    );
    let no_account = c.openio(&["election", "status", "meta2", "FVE0"]).await;
    assert_eq!(no_account.code, 2);
    assert!(
        no_account.stderr.contains("--oio-account"),
        "{}",
        no_account.stderr
    );
}

/// The seed: a refused peer and a hanging peer never hide the other rows;
/// the command costs one timeout; the live peer answers 500 before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_hanging_peers_and_election_failure() {
    let mut c = Cluster::start(3, ServiceOpts::default());
    c.create_container("myaccount", "FVE0").await;
    let ids = c.ids();
    let (alive, refused, stopped) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    c.service_mut(&refused).kill9();
    c.service(&stopped).pause();

    let t = Duration::from_secs(3);
    let run = c
        .openio(&[
            "-a",
            "myaccount",
            "-t",
            &t.as_secs().to_string(),
            "election",
            "status",
            "meta2",
            "FVE0",
        ])
        .await;
    eprintln!(
        "openio election status -t 3 with one hanging peer: {:?}",
        run.took
    );
    assert_eq!(run.code, 1, "some peer did not answer: {run:?}");
    // One timeout: the hanging peer's row costs all of it, and the live peer
    // answers 500 just before it (its wait ends 5% or 150 ms early). Peers
    // asked one after the other would cost nearly two timeouts; half a
    // timeout is left for starting the CLI and reading the directory.
    assert!(
        run.took >= t && run.took < t * 3 / 2,
        "took {:?}: not one timeout of {t:?}",
        run.took
    );
    let rows = statuses(&run.table());
    let by_id = |id: &str| {
        rows.iter()
            .find(|r| r.0 == id)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {id}: {}", run.stdout))
    };
    assert_eq!(
        by_id(&refused),
        (
            refused.clone(),
            "2".into(),
            format!("{refused}: [errno=111] Connection refused")
        )
    );
    assert_eq!(
        by_id(&stopped),
        (stopped.clone(), "7".into(), "Timeout".into())
    );
    let live = by_id(&alive);
    assert_eq!(live.1, "500", "{}", run.stdout);
    assert!(live.2.starts_with("Election failed for 697ECB056A5F9339B36C3B0A020B5AB17B4B0160FBEBEA203315EA1FC1B61605.1.meta2"), "{}", live.2);

    let long = c
        .openio(&[
            "-a",
            "myaccount",
            "-t",
            "2",
            "election",
            "status",
            "meta2",
            "FVE0",
            "--long",
        ])
        .await;
    assert!(
        long.stdout.contains("Verdict: NO MASTER"),
        "{}",
        long.stdout
    );

    let debug = c
        .openio(&[
            "-a",
            "myaccount",
            "-t",
            "2",
            "election",
            "debug",
            "meta2",
            "FVE0",
        ])
        .await;
    let rows = debug.table();
    assert!(
        rows.iter()
            .any(|r| r.len() == 4 && r[3].contains("CHECKING_SLAVES:GETVERS_KO:")),
        "{}",
        debug.stdout
    );
    c.service(&stopped).resume();
}

/// `check` finds a rogue node planted in ZooKeeper; `--clean` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_and_cleans_a_rogue_node() {
    let c = Cluster::start(3, ServiceOpts::default());
    let base = c.create_container("acct", "rogue").await;
    c.wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let healthy = c
        .openio(&["-a", "acct", "election", "check", "meta2", "rogue"])
        .await;
    assert_eq!(healthy.code, 0, "{healthy:?}");
    let statuses: Vec<String> = healthy.table().iter().map(|r| r[2].clone()).collect();
    assert_eq!(statuses, ["master", "slave", "slave"], "{}", healthy.stdout);

    // Plant a persistent node owned by a service that is not a peer.
    let key = election_core::names::ElectionKey::compute(
        &election_core::names::BaseName::parse(&base).expect("base"),
        &election_core::names::ServiceType::new("meta2").expect("type"),
    );
    let dir = election_core::names::ZkLayout::new(
        election_core::names::Namespace::new("OPENIO").expect("ns"),
    )
    .election_dir(
        &election_core::names::ServiceType::new("meta2").expect("type"),
        &key,
    );
    let zk = zookeeper_client::Client::connector()
        .connect(&c.zk.connect_string())
        .await
        .expect("zk");
    let opts = zookeeper_client::CreateMode::PersistentSequential
        .with_acls(zookeeper_client::Acls::anyone_all());
    let (_, seq) = zk
        .create(&format!("{dir}/{key}-"), b"127.0.0.1:1", &opts)
        .await
        .expect("plant");
    let planted = format!("{key}-{seq}");

    let found = c
        .openio(&["-a", "acct", "election", "check", "meta2", "rogue"])
        .await;
    let row = found
        .table()
        .into_iter()
        .find(|r| r[0] == planted)
        .unwrap_or_else(|| panic!("{}", found.stdout));
    assert_eq!(
        (row[1].as_str(), row[2].as_str(), row[3].as_str()),
        ("127.0.0.1:1", "rogue: owner is not a peer", "")
    );

    let cleaned = c
        .openio(&[
            "-a", "acct", "election", "check", "meta2", "rogue", "--clean",
        ])
        .await;
    assert_eq!(cleaned.code, 0, "{cleaned:?}");
    let row = cleaned
        .table()
        .into_iter()
        .find(|r| r[0] == planted)
        .unwrap_or_else(|| panic!("{}", cleaned.stdout));
    assert_eq!(row[3], "deleted");
    assert!(zk
        .check_stat(&format!("{dir}/{planted}"))
        .await
        .expect("stat")
        .is_none());
    let after = c
        .openio(&["-a", "acct", "election", "check", "meta2", "rogue"])
        .await;
    assert!(
        after.table().iter().all(|r| !r[2].starts_with("rogue")),
        "{}",
        after.stdout
    );
    c.wait_converged(&base, T)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_and_completion() {
    let c = Cluster::start(1, ServiceOpts::default());
    let bad = c.openio(&["election", "frobnicate"]).await;
    assert_eq!(bad.code, 2);
    let completion = c.openio(&["completion", "bash"]).await;
    assert_eq!(completion.code, 0);
    assert!(
        completion.stdout.contains("_openio()"),
        "{}",
        &completion.stdout[..200.min(completion.stdout.len())]
    );
    let help = c.openio(&["--help"]).await;
    assert!(help.stdout.contains("Exit codes: 0 every peer answered"));
    let version = c.openio(&["--version"]).await;
    assert!(version.stdout.starts_with("openio "));
}

/// `status -W` refreshes until interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_refreshes() {
    let c = Cluster::start(3, ServiceOpts::default());
    c.create_container("acct", "watched").await;
    let mut child = tokio::process::Command::new(system_tests::openio_bin())
        .args([
            "-a", "acct", "election", "status", "meta2", "watched", "-W", "0.3",
        ])
        .env("OIO_ZOOKEEPER", c.zk.connect_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    // Read the output as it comes (a thread reads the pipe) until three
    // frames, each with the master's row, have been printed, or the deadline
    // passes; then interrupt.
    let stdout = child.stdout.take().expect("stdout");
    let mut pipe = std::fs::File::from(stdout.into_owned_fd().expect("pipe fd"));
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let complete = |text: &str| {
        text.matches("Every 0.3s: openio election status meta2 watched")
            .count()
            >= 3
            && text.matches("|    200 | OK").count() >= 3
    };
    let started = Instant::now();
    let mut text = String::new();
    while !complete(&text) && started.elapsed() < Duration::from_secs(20) {
        match tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_millis(500))) {
            Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    assert_eq!(
        child.try_wait().expect("try_wait"),
        None,
        "-W exited by itself:\n{text}"
    );
    child.start_kill().expect("kill");
    child.wait().await.expect("wait");
    assert!(
        complete(&text),
        "not 3 frames with the master's row in {:?}:\n{text}",
        started.elapsed()
    );
}
