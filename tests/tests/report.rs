//! `openio election report` on a real cluster (issue 17): one healthy
//! base, and one base per problem: two of its three peers killed, its
//! master paused beyond the session timeout, a rogue node planted in
//! ZooKeeper, a replica in emergency read-only. Each problem shows up as
//! its own finding, the healthy base does not, and the exit codes say so.

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use system_tests::{Cluster, ServiceOpts};

const T: Duration = Duration::from_secs(30);

/// Leaves exactly the services `on` (indexes into `ids`) running, so that
/// the next container is placed on them.
fn only_live(c: &mut Cluster, ids: &[String], on: &[usize]) {
    for (i, id) in ids.iter().enumerate() {
        let s = c.service_mut(id);
        match (on.contains(&i), s.is_running()) {
            (true, false) => s.restart(),
            (false, true) => {
                s.terminate();
            }
            _ => {}
        }
    }
}

/// The report's rows, by base, from `-f json`.
fn rows(stdout: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(stdout)
        .unwrap_or_else(|e| panic!("report -f json is not JSON ({e}): {stdout}"))
        .as_array()
        .expect("an array of rows")
        .clone()
}

fn findings(rows: &[Value], base: &str) -> BTreeSet<String> {
    rows.iter()
        .find(|r| r["Base"] == base)
        .map(|r| {
            r["Findings"]
                .as_str()
                .expect("findings")
                .split(',')
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Until `id` answers `status` for `base` with a master other than `not`.
async fn wait_master_other_than(c: &Cluster, id: &str, base: &str, not: &str) -> String {
    let started = Instant::now();
    loop {
        let a = c.call(id, "status", base, Duration::from_secs(3)).await;
        let master = match a.status {
            200 => Some(id.to_string()),
            303 => Some(a.message.clone()),
            _ => None,
        };
        match master {
            Some(m) if m != not => return m,
            _ if started.elapsed() > T => panic!("{id} never followed another master: {a:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Makes `id` the master of `base`: it is asked first, and should another
/// peer still get there first (the race is won by whoever's node reaches
/// ZooKeeper first), the master of the moment leaves until `id` leads.
async fn make_master(c: &Cluster, id: &str, base: &str) {
    let started = Instant::now();
    loop {
        let a = c.call(id, "status", base, T).await;
        if a.status == 200 {
            return;
        }
        assert!(
            started.elapsed() < T,
            "{id} never became master of {base}: {a:?}"
        );
        if let Some(master) = a.body["master"].as_str() {
            c.call(master, "leave", base, T).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_finds_each_problem_and_only_them() {
    let opts = ServiceOpts {
        extra: vec!["--enable-fault-switches".into()],
        ..ServiceOpts::default()
    };
    let mut c = Cluster::start(7, opts);
    let ids = c.ids();
    // Place each base on chosen services: only they are live when it is
    // created. The masters of `paused` and `readonly` are chosen
    // (`make_master`), once their last restart is over.
    only_live(&mut c, &ids, &[0, 1, 2]);
    let healthy = c.create_container("acct", "healthy").await;
    let rogue = c.create_container("acct", "rogue").await;
    only_live(&mut c, &ids, &[0, 3, 4]);
    let killed = c.create_container("acct", "killed").await;
    only_live(&mut c, &ids, &[1, 2, 5]);
    let paused = c.create_container("acct", "paused").await;
    only_live(&mut c, &ids, &[0, 1, 6]);
    let readonly = c.create_container("acct", "readonly").await;
    make_master(&c, &ids[6], &readonly).await;
    only_live(&mut c, &ids, &[0, 1, 2, 3, 4, 5, 6]);
    make_master(&c, &ids[5], &paused).await;
    for (base, on) in [
        (&healthy, [0, 1, 2]),
        (&rogue, [0, 1, 2]),
        (&killed, [0, 3, 4]),
        (&paused, [1, 2, 5]),
        (&readonly, [0, 1, 6]),
    ] {
        c.wait_converged_among(base, Some(&on.map(|i| ids[i].as_str())), T)
            .await
            .unwrap_or_else(|e| panic!("{base} never converged: {e}"));
    }

    // All healthy: exit 0, no row.
    let run = c
        .openio(&["election", "report", "meta2", "-t", "3", "--pending", "2"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("meta2: 5 bases (5 running an election), 5 healthy, 0 with findings"),
        "{run:?}"
    );

    // The problems.
    let zk = system_tests::connect_zookeeper(&c.zk.connect_string())
        .await
        .expect("ZooKeeper");
    let node = {
        use election_core::names::{BaseName, ElectionKey, Namespace, ServiceType, ZkLayout};
        let stype = ServiceType::new("meta2").expect("type");
        let key = ElectionKey::compute(&BaseName::parse(&rogue).expect("base"), &stype);
        let layout = ZkLayout::new(Namespace::new("OPENIO").expect("ns"));
        let opts = zookeeper_client::CreateMode::PersistentSequential
            .with_acls(zookeeper_client::Acls::anyone_all());
        let prefix = format!("{}-", layout.election_prefix(&stype, &key));
        let (_, seq) = zk
            .create(&prefix, b"10.9.9.9:6000", &opts)
            .await
            .expect("plant a rogue node");
        format!("{prefix}{seq}")
    };
    let ro_master = ids[6].clone();
    c.fault(&ro_master, "lose_acks", true).await;
    let (code, message) = c.write_to(&ro_master, &readonly, &[("a", "1")], T).await;
    assert_eq!(code, 503, "{message}");
    c.fault(&ro_master, "lose_acks", false).await;
    c.service_mut(&ids[3]).kill9();
    c.service_mut(&ids[4]).kill9();
    c.service(&ids[5]).pause();
    wait_master_other_than(&c, &ids[1], &paused, &ids[5]).await;

    let report = ["election", "report", "meta2", "-t", "3", "--pending", "2"];
    let run = c.openio(&[&report[..], &["-f", "json"]].concat()).await;
    assert_eq!(run.code, 1, "findings exit 1: {run:?}");
    let all = rows(&run.stdout);
    assert!(findings(&all, &healthy).is_empty(), "{healthy}: {all:#?}");
    assert_eq!(
        findings(&all, &rogue),
        BTreeSet::from(["rogue-node".to_string()]),
        "{all:#?}"
    );
    let row = all
        .iter()
        .find(|r| r["Base"] == rogue.as_str())
        .expect("row");
    let detail = row["Detail"].as_str().expect("detail");
    assert!(
        detail.contains(&node) && detail.contains("10.9.9.9:6000 is not a peer"),
        "{detail}"
    );
    let k = findings(&all, &killed);
    assert!(k.contains("peer-down"), "{k:?}");
    let row = all
        .iter()
        .find(|r| r["Base"] == killed.as_str())
        .expect("row");
    for dead in [&ids[3], &ids[4]] {
        assert!(
            row["Detail"]
                .as_str()
                .expect("detail")
                .contains(&format!("{dead}: not answering (connection refused)")),
            "{row:#?}"
        );
    }
    let p = findings(&all, &paused);
    assert!(p.contains("peer-down"), "{p:?}");
    let row = all
        .iter()
        .find(|r| r["Base"] == paused.as_str())
        .expect("row");
    assert!(
        row["Detail"].as_str().expect("detail").contains(&format!(
            "{}: not answering (timeout), not registered",
            ids[5]
        )),
        "{row:#?}"
    );
    assert_eq!(
        findings(&all, &readonly),
        BTreeSet::from(["read-only".to_string()]),
        "{all:#?}"
    );
    for (base, f) in [(&killed, &k), (&paused, &p)] {
        assert!(
            !f.contains("read-only") && !f.contains("rogue-node"),
            "{base}: {f:?}"
        );
    }
    assert!(
        run.stderr.contains("4 with findings")
            && run.stderr.contains("rogue-node 1")
            && run.stderr.contains("read-only 1"),
        "the summary goes to stderr with -f json: {run:?}"
    );

    // The table, the filters.
    let run = c.openio(&report).await;
    eprintln!("$ openio {}\n{}", report.join(" "), run.stdout);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("openio election check meta2"),
        "{run:?}"
    );
    let only = c
        .openio(&[&report[..], &["--finding", "rogue-node", "-f", "json"]].concat())
        .await;
    let only = rows(&only.stdout);
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0]["Base"], rogue.as_str());
    let on6 = c
        .openio(&[&report[..], &["--service-id", &ids[6], "-f", "json"]].concat())
        .await;
    let on6 = rows(&on6.stdout);
    assert_eq!(on6.len(), 1, "{on6:#?}");
    assert_eq!(on6[0]["Base"], readonly.as_str());
    let every = c
        .openio(&[&report[..], &["--all", "-f", "json"]].concat())
        .await;
    let every = rows(&every.stdout);
    assert_eq!(every.len(), 5, "{every:#?}");
    assert_eq!(
        findings(&every, &healthy),
        BTreeSet::from(["healthy".to_string()])
    );

    // An error: exit 2, and a message that says what to do.
    let run = c
        .openio(&[
            "election",
            "report",
            "meta2",
            "-t",
            "2",
            "--zookeeper",
            "127.0.0.1:1",
        ])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--zookeeper"), "{run:?}");
    c.service(&ids[5]).resume();
}
