//! docs/OPERATIONS.md, exercised: every `openio` and `election-server`
//! command of its code blocks is run here, as written (placeholders
//! substituted), in the incident it belongs to; the test fails if the page
//! lists a command this test does not run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use system_tests::{openio_bin, server_bin, Cluster, ServiceOpts, TempDir};

const T: Duration = Duration::from_secs(10);

/// The commands of the runbook's code blocks.
fn runbook_commands() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md");
    let text = std::fs::read_to_string(path).expect("docs/OPERATIONS.md");
    let mut in_block = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block && (l.starts_with("openio ") || l.starts_with("election-server ")) {
            out.insert(l.to_string());
        }
    }
    out
}

/// Runs the runbook's lines against one cluster's ZooKeeper and records them.
struct Runbook {
    zk: String,
    ran: BTreeSet<String>,
    file: String,
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The data rows of the table printed on stdout, trimmed cells.
    fn rows(&self) -> Vec<Vec<String>> {
        system_tests::table_rows(&self.stdout)
    }
}

impl Runbook {
    /// Runs one line of the runbook, `<ID>` being `id`.
    fn run(&mut self, line: &str, id: &str) -> Run {
        self.ran.insert(line.to_string());
        let line = line.replace("<ID>", id).replace("<FILE>", &self.file);
        let words: Vec<&str> = line.split_whitespace().collect();
        let bin = match words[0] {
            "openio" => openio_bin(),
            _ => server_bin(),
        };
        let out = std::process::Command::new(bin)
            .args(&words[1..])
            .env("OIO_NS", "OPENIO")
            .env("OIO_ACCOUNT", "myaccount")
            .env("OIO_ZOOKEEPER", &self.zk)
            .env_remove("OIO_ELECTION_SECRET_FILE")
            .output()
            .expect("run");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("$ {line}\n{}{}(exit {})", run.stdout, run.stderr, run.code);
        run
    }

    fn ok(&mut self, line: &str, id: &str) -> Run {
        let run = self.run(line, id);
        assert_eq!(run.code, 0, "{line}: {run:?}");
        run
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_command_runs_in_its_incident() {
    let documented = runbook_commands();
    assert!(documented.len() >= 10, "{documented:?}");
    let opts = ServiceOpts {
        extra: vec![
            "--enable-fault-switches".into(),
            "--balance-rate".into(),
            "50".into(),
        ],
        ..ServiceOpts::default()
    };
    let mut c = Cluster::start(3, opts);
    let dir = TempDir::new("runbook");
    let file = dir.path().join("election-server.toml");
    std::fs::write(
        &file,
        "data_dir = \"/var/lib/oio/meta2-1\"\nsession_timeout_ms = 6000\n",
    )
    .expect("write");
    let base = c.create_container("myaccount", "FVE0").await;
    let master = c.wait_converged(&base, T).await.expect("converged");
    let mut rb = Runbook {
        zk: c.zk.connect_string(),
        ran: BTreeSet::new(),
        file: file.to_str().expect("utf-8").to_string(),
    };

    // 1. Configuration.
    let run = rb.ok("election-server --config <FILE> --print-config", &master);
    assert!(
        run.stdout.contains("session_timeout_ms = 6000  # file"),
        "{run:?}"
    );

    // 2. Watching.
    let run = rb.ok("openio election report meta2", &master);
    assert!(
        run.stdout
            .starts_with("meta2: 1 bases (1 running an election), 1 healthy, 0 with findings"),
        "{run:?}"
    );
    let run = rb.ok("openio election status meta2 FVE0 --long", &master);
    assert!(run.stdout.contains("Verdict"), "{run:?}");
    let run = rb.ok("openio admin info <ID>", &master);
    assert!(run.stdout.contains("elections_master:1"), "{run:?}");

    // 3. Election failed: two of three peers down.
    let others: Vec<String> = c.ids().into_iter().filter(|i| *i != master).collect();
    c.service_mut(&others[0]).kill9();
    c.service_mut(&others[1]).kill9();
    let run = rb.run("openio election report meta2 --finding peer-down", &master);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&base) && run.stdout.contains("peer-down"),
        "{run:?}"
    );
    let run = rb.run("openio election status meta2 FVE0 --long", &master);
    assert_eq!(run.code, 1, "some peers did not answer: {run:?}");
    assert!(run.stdout.contains("Connection refused"), "{run:?}");
    for line in [
        "openio election debug meta2 FVE0 --human",
        "openio election history meta2 FVE0",
    ] {
        let run = rb.run(line, &master);
        assert_eq!(run.code, 1, "the dead peers are reported: {run:?}");
        assert!(
            run.stdout.contains(&master),
            "the live peer's view: {run:?}"
        );
    }
    // The live master's node is the lowest, the dead peers' nodes (until
    // their sessions expire) are judged on ownership only; exit 1 because
    // two peers were not asked.
    let own = c.debug(&master, &base).await["local"]["id"]
        .as_i64()
        .expect("the master's node");
    let run = rb.run("openio election check meta2 FVE0", &master);
    assert_eq!(run.code, 1, "two peers were not asked: {run:?}");
    let rows = run.rows();
    assert_eq!(
        rows.first().map(|r| &r[1..]),
        Some(&[master.clone(), "master".into(), String::new()][..]),
        "{run:?}"
    );
    assert!(
        rows[0][0].ends_with(&format!("-{}", election_core::names::format_seq(own))),
        "{run:?}"
    );
    for r in &rows[1..] {
        assert!(
            others.contains(&r[1]) && r[2..] == ["slave", ""],
            "a dead peer's node, kept: {run:?}"
        );
    }
    for o in &others {
        assert!(
            run.stderr
                .contains(&format!("{o}: not asked for its current node")),
            "{o} reported: {run:?}"
        );
    }
    c.service_mut(&others[0]).restart();
    c.service_mut(&others[1]).restart();
    rb.ok("openio election ping meta2 FVE0", &master);
    let master = c.wait_converged(&base, T).await.expect("re-elected");
    rb.ok(
        "openio election leave meta2 FVE0 --service-id <ID>",
        &master,
    );
    let master = c
        .wait_converged(&base, T)
        .await
        .expect("re-elected after leave");

    // 4. Emergency read-only: the slaves' acknowledgements are "lost".
    assert_eq!(c.write_to(&master, &base, &[("a", "1")], T).await.0, 200);
    c.fault(&master, "lose_acks", true).await;
    let (code, message) = c.write_to(&master, &base, &[("b", "2")], T).await;
    assert_eq!(code, 503, "{message}");
    c.fault(&master, "lose_acks", false).await;
    let run = rb.run("openio election report meta2 --finding read-only", &master);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&base) && run.stdout.contains("read-only"),
        "{run:?}"
    );
    let run = rb.ok("openio admin info <ID>", &master);
    assert!(run.stdout.contains("emergency_read_only_mode:1"), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("emergency_read_only_base:{base}")),
        "{run:?}"
    );
    assert!(c.service(&master).log_text().contains(&format!(
        "CRITICAL emergency read-only mode: write on {base}"
    )));
    rb.ok("openio election status meta2 FVE0 --long", &master);
    let run = rb.ok("openio election sync meta2 FVE0", &master);
    assert!(run.stdout.contains("not SLAVE"), "{run:?}");
    let started = Instant::now();
    loop {
        let run = rb.run("openio admin clear-readonly <ID>", &master);
        if run.code == 0 {
            assert!(run.stdout.contains("cleared"), "{run:?}");
            break;
        }
        assert!(run.stderr.contains("not cleared"), "{run:?}");
        assert!(started.elapsed() < T, "never cleared: {run:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.write_to(&master, &base, &[("c", "3")], T).await.0, 200);

    // 5. Stop-writes on the master: it hands the mastership over.
    c.fault(&master, "low_disk", true).await;
    let run = rb.run(
        "openio election report meta2 --finding stop-writes",
        &master,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&base) && run.stdout.contains("stop-writes"),
        "{run:?}"
    );
    let run = rb.ok("openio admin info <ID>", &master);
    assert!(run.stdout.contains("stop_writes:1"), "{run:?}");
    assert!(c.service(&master).log_text().contains("STOP-WRITES:"));
    let new_master = c.wait_converged(&base, T).await.expect("handed over");
    assert_ne!(new_master, master, "a stopped service does not lead");
    c.fault(&master, "low_disk", false).await;
    // One base, mastered by one service: 1 master against an average of
    // 1/3 is no excess of a whole mastership, so nobody is asked.
    let run = rb.ok("openio election balance meta2 --average", &master);
    assert!(
        run.stderr
            .contains("nothing to balance: no service is above the average number of masters"),
        "{run:?}"
    );
    assert_eq!(run.rows(), Vec::<Vec<String>>::new(), "{run:?}");

    // 7. Balancing, one service and the idle ones.
    let master = c.wait_converged(&base, T).await.expect("converged");
    let run = rb.ok(
        "openio election balance meta2 --service-id <ID> --max 10",
        &master,
    );
    assert!(run.stdout.contains(&master), "{run:?}");
    let master = c
        .wait_converged(&base, T)
        .await
        .expect("converged after balance");
    let run = rb.ok(
        "openio election balance meta2 --inactivity 60 --no-rejoin",
        &master,
    );
    assert!(run.stdout.contains("Left"), "{run:?}");

    // 8. Between two upgrades.
    c.wait_converged(&base, T).await.expect("converged");
    rb.ok("openio election status meta2 FVE0", &master);

    // 9. Diverged replicas (issue 14, H8). S holds a write its master M
    // rolled back; M is restarted (which clears read-only) and commits
    // another write at the same version with T while S is down; then T goes
    // down and M and S start again: they diverged, no majority holds a copy.
    let m = c.wait_converged(&base, T).await.expect("converged");
    let others: Vec<String> = c.ids().into_iter().filter(|i| *i != m).collect();
    let (s, t) = (others[0].clone(), others[1].clone());
    c.service_mut(&t).kill9();
    c.fault(&m, "lose_acks", true).await;
    let (code, message) = c.write_to(&m, &base, &[("d", "rolled back")], T).await;
    assert_eq!(code, 503, "{message}");
    c.fault(&m, "lose_acks", false).await;
    c.service_mut(&s).kill9();
    c.service_mut(&m).restart();
    c.service_mut(&t).restart();
    let started = Instant::now();
    loop {
        let (code, message, _) = c.writer().write(&base, &[("d", "kept")], T).await;
        if code == 200 {
            break;
        }
        assert!(
            started.elapsed() < 3 * T,
            "no write after the restart: {code} {message}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // T goes down; M and S start again together (with a master up, S
    // would simply copy its base: no incident).
    c.service_mut(&t).kill9();
    c.service_mut(&m).kill9();
    c.service_mut(&m).restart();
    c.service_mut(&s).restart();
    let started = Instant::now();
    let run = loop {
        let run = rb.run("openio election status meta2 FVE0 --long", &s);
        if run.stdout.contains("replicas diverged") {
            break run;
        }
        assert!(started.elapsed() < 3 * T, "never reported: {run:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(run.code, 1, "{run:?}");
    let versions: Vec<String> = run
        .rows()
        .iter()
        .filter(|r| r[0] == s || r[0] == m)
        .map(|r| {
            r.iter()
                .find(|c| c.contains("properties="))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert!(
        versions.len() == 2
            && versions[0] != versions[1]
            && versions.iter().all(|v| v.contains('@')),
        "each copy with its writer's epoch: {run:?}"
    );
    rb.run("openio election debug meta2 FVE0 --human", &s);
    let started = Instant::now();
    loop {
        let run = rb.run("openio election report meta2 --finding no-master", &s);
        if run.code == 1 && run.stdout.contains(&base) {
            break;
        }
        assert!(started.elapsed() < 3 * T, "never reported: {run:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Keep M's copy (the newer epoch): set S's aside.
    let run = rb.ok("openio election set-aside meta2 FVE0 --service-id <ID>", &s);
    assert!(run.stdout.contains("set-aside"), "{run:?}");
    let aside = c.service(&s).replica_path(&base);
    let aside = aside
        .ancestors()
        .nth(3)
        .expect("the data directory")
        .join("set-aside");
    assert_eq!(
        std::fs::read_dir(&aside).map(|d| d.count()).unwrap_or(0),
        1,
        "S's copy is kept in {}",
        aside.display()
    );
    // M leads with S (whose copy is now missing), and S copies M's.
    let master = c.wait_converged(&base, 3 * T).await.expect("elected again");
    assert_eq!(master, m, "the kept copy leads");
    let started = Instant::now();
    loop {
        let (code, props, _) = c.props(&s, &base).await;
        if code == 200 && props["d"] == "kept" {
            break;
        }
        assert!(
            started.elapsed() < T,
            "S never copied M's base: {code} {props}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Refused on the master, with the reason.
    let run = rb.run("openio election set-aside meta2 FVE0 --service-id <ID>", &m);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("MASTER"), "{run:?}");
    c.service_mut(&t).restart();
    c.wait_converged(&base, T).await.expect("all back");

    let missing: Vec<&String> = documented.difference(&rb.ran).collect();
    assert!(
        missing.is_empty(),
        "runbook commands never run here: {missing:?}"
    );
    let extra: Vec<&String> = rb.ran.difference(&documented).collect();
    assert!(
        extra.is_empty(),
        "commands run here but not in the runbook: {extra:?}"
    );
}
