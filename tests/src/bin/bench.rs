//! `bench`: measures the election service on real ZooKeeper and real
//! processes, against ZooKeeper's own round trip on the same machine, and
//! rewrites BENCHMARKS.md. Run it through `scripts/bench.sh` (release build).
//!
//! Every figure is a median (p99 where stated) over repeated runs; ratios are
//! taken between figures measured in this same run.

use futures::StreamExt;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use system_tests::{percentile, Cluster, ServiceOpts};
use zookeeper_client as zk;

const T: Duration = Duration::from_secs(5);

struct Args {
    bases: usize,
    failovers: usize,
    writes: usize,
    scale: usize,
    out: Option<String>,
    peers: bool,
    /// A second, larger scale run (e.g. 100,000), off by default.
    scale_also: Option<usize>,
    replicas: usize,
    /// Only the scale runs (and their recovery and report rows).
    only_scale: bool,
    /// Only the write rows.
    only_writes: bool,
    /// Only the latency rows (elections, failovers, writes, CLI), with the
    /// recipes beside them.
    only_latency: bool,
}

fn args() -> Args {
    let mut a = Args {
        bases: 500,
        failovers: 200,
        writes: 2000,
        scale: 10_000,
        out: None,
        peers: true,
        scale_also: None,
        replicas: 2_000,
        only_scale: false,
        only_writes: false,
        only_latency: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match flag.as_str() {
            "--bases" => a.bases = num("--bases"),
            "--failovers" => a.failovers = num("--failovers"),
            "--writes" => a.writes = num("--writes"),
            "--scale" => a.scale = num("--scale"),
            "--out" => a.out = it.next(),
            "--no-peers" => a.peers = false,
            "--scale-also" => a.scale_also = Some(num("--scale-also")),
            "--replicas" => a.replicas = num("--replicas"),
            "--only-scale" => a.only_scale = true,
            "--only-writes" => a.only_writes = true,
            "--only-latency" => a.only_latency = true,
            "--quick" => {
                a.bases = 100;
                a.failovers = 30;
                a.writes = 300;
                a.scale = 1_000;
                a.replicas = 300;
            }
            "-h" | "--help" => {
                println!("bench [--quick] [--bases N] [--failovers N] [--writes N] [--scale N] [--scale-also N]\n      [--replicas N] [--no-peers] [--only-scale] [--only-writes] [--only-latency] [--out BENCHMARKS.md]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other} (see --help)"),
        }
    }
    a
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn p50_p99(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    (percentile(v, 50.0), percentile(v, 99.0))
}

/// One result row: what, figure, detail.
struct Report {
    rows: Vec<(String, String, String)>,
}

impl Report {
    fn add(&mut self, what: &str, figure: String, detail: String) {
        eprintln!("  {what}: {figure}  ({detail})");
        self.rows.push((what.to_string(), figure, detail));
    }
}

/// ZooKeeper's create round trip (returned) and throughput (ops/s).
async fn zk_reference(c: &Cluster, r: &mut Report) -> (Duration, f64) {
    let client = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&c.zk.connect_string())
        .await
        .expect("zk");
    let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    client
        .mkdir(
            "/bench/rtt",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("mkdir");
    for _ in 0..200 {
        client
            .create("/bench/rtt/n-", b"x", &opts)
            .await
            .expect("create");
    }
    let mut v = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        client
            .create("/bench/rtt/n-", b"x", &opts)
            .await
            .expect("create");
        v.push(t.elapsed());
    }
    let (p50, p99) = p50_p99(&mut v);
    r.add(
        "ZooKeeper create round trip (1 in flight)",
        ms(p50),
        format!("p99 {}, 1000 creates", ms(p99)),
    );
    let t = Instant::now();
    let n = 10_000;
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|_| client.create("/bench/rtt/m-", b"x", &opts))
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok));
    let rate = n as f64 / t.elapsed().as_secs_f64();
    r.add(
        "ZooKeeper create throughput (64 in flight)",
        format!("{rate:.0} ops/s"),
        format!("{n} creates, one session"),
    );
    (p50, rate)
}

async fn cold_elections(
    c: &Cluster,
    bases: &[String],
    r: &mut Report,
    zk_rtt: Duration,
) -> (Duration, Duration) {
    let (mut v, mut to_master) = (Vec::new(), Vec::new());
    for b in bases {
        let t = Instant::now();
        // Each peer's answer timed on its own: the master's 200 is the
        // election's end as the recipes measure theirs.
        let calls = c.services.iter().map(|s| async {
            let a = c.call(&s.id, "status", b, T).await;
            (a, t.elapsed())
        });
        let answers = futures::future::join_all(calls).await;
        v.push(t.elapsed());
        if let Some((_, d)) = answers.iter().find(|(a, _)| a.status == 200) {
            to_master.push(*d);
        }
        let answers: Vec<_> = answers.into_iter().map(|(a, _)| a).collect();
        system_tests::one_master(&answers).unwrap_or_else(|e| panic!("{e}"));
    }
    let (m50, m99) = p50_p99(&mut to_master);
    r.add(
        "cold election, 1 base on 3 peers (first request to the master final)",
        ms(m50),
        format!("p99 {}", ms(m99)),
    );
    let (p50, p99) = p50_p99(&mut v);
    r.add(
        "cold election, 1 base on 3 peers (first request to all 3 final)",
        ms(p50),
        format!(
            "p99 {}, {} bases one at a time; {:.1} x the ZooKeeper create round trip",
            ms(p99),
            bases.len(),
            p50.as_secs_f64() / zk_rtt.as_secs_f64()
        ),
    );
    (m50, p50)
}

async fn leave_failovers(c: &Cluster, bases: &[String], r: &mut Report) -> (Duration, Duration) {
    let (mut to_master, mut to_write) = (Vec::new(), Vec::new());
    for b in bases {
        let old = c.wait_converged(b, T).await.expect("converged");
        let t = Instant::now();
        assert_eq!(c.call(&old, "leave", b, T).await.status, 200);
        loop {
            let others = c
                .services
                .iter()
                .filter(|s| s.id != old)
                .map(|s| c.call(&s.id, "status", b, T));
            if futures::future::join_all(others)
                .await
                .iter()
                .any(|a| a.status == 200)
            {
                break;
            }
        }
        to_master.push(t.elapsed());
        loop {
            if c.write(b, &[("k", "v")], T).await.0 == 200 {
                break;
            }
        }
        to_write.push(t.elapsed());
    }
    let (final_p50, p99) = p50_p99(&mut to_master);
    r.add(
        "leave-failover to the new master final",
        ms(final_p50),
        format!("p99 {}, {} leaves", ms(p99), bases.len()),
    );
    let (write_p50, p99) = p50_p99(&mut to_write);
    r.add(
        "leave-failover to the first acknowledged write",
        ms(write_p50),
        format!("p99 {}", ms(p99)),
    );
    (final_p50, write_p50)
}

/// One peer recipe's figures, as `bench/peers/*` print them (ms).
#[derive(serde::Deserialize)]
struct PeerRun {
    #[serde(rename = "impl")]
    name: String,
    version: String,
    create: PeerFigure,
    elect_fresh: PeerFigure,
    elect_parent: PeerFigure,
    leave_failover: PeerFigure,
    violations: u64,
}

#[derive(serde::Deserialize)]
struct PeerFigure {
    p50: f64,
    p99: f64,
}

/// kazoo's Election and Curator's LeaderLatch on the same ZooKeeper, measured
/// as reference/peer-elections.md defines (scripts/peers.sh).
fn peer_baselines(
    c: &Cluster,
    r: &mut Report,
    ours_elect: (Duration, Duration),
    ours_leave: (Duration, Duration),
) {
    let mut runs = Vec::new();
    for which in ["kazoo", "curator"] {
        eprintln!("bench: {which} baseline (20 warm-up + 200 repetitions per test)");
        let out = std::process::Command::new("scripts/peers.sh")
            .args([
                which,
                "--hosts",
                &c.zk.connect_string(),
                "--warmup",
                "20",
                "--reps",
                "200",
            ])
            .stderr(std::process::Stdio::inherit())
            .output();
        let parsed = out.map_err(|e| e.to_string()).and_then(|o| {
            if o.status.success() {
                serde_json::from_slice::<PeerRun>(&o.stdout).map_err(|e| e.to_string())
            } else {
                Err(format!("scripts/peers.sh {which} exited with {}", o.status))
            }
        });
        match parsed {
            Ok(run) => {
                let f = |x: &PeerFigure| format!("{:.2} ms (p99 {:.2})", x.p50, x.p99);
                r.add(
                    &format!(
                        "{} {}: elect one leader of 3, parent exists",
                        run.name, run.version
                    ),
                    format!("{:.2} ms", run.elect_parent.p50),
                    format!(
                        "p99 {:.2} ms; fresh path {}; create round trip {}; {} safety violations",
                        run.elect_parent.p99,
                        f(&run.elect_fresh),
                        f(&run.create),
                        run.violations
                    ),
                );
                r.add(
                    &format!("{} {}: leave-failover", run.name, run.version),
                    format!("{:.2} ms", run.leave_failover.p50),
                    format!("p99 {:.2} ms", run.leave_failover.p99),
                );
                runs.push(run);
            }
            Err(e) => r.add(
                &format!("{which} baseline"),
                "not measured".into(),
                format!("{e} (scripts/peers.sh install, as root, installs it)"),
            ),
        }
    }
    let ms_of = |d: Duration| d.as_secs_f64() * 1000.0;
    if let Some(best) = runs
        .iter()
        .min_by(|a, b| a.elect_parent.p50.total_cmp(&b.elect_parent.p50))
    {
        r.add(
            "ratio: our cold election, master final / the faster recipe's election (parent exists)",
            format!("{:.2} x", ms_of(ours_elect.0) / best.elect_parent.p50),
            format!(
                "{:.2} ms vs {} {:.2} ms; ours also compares the 3 replicas' versions; target <= 1",
                ms_of(ours_elect.0),
                best.name,
                best.elect_parent.p50
            ),
        );
        r.add(
            "ratio: our cold election, all 3 final / the faster recipe's election",
            format!("{:.2} x", ms_of(ours_elect.1) / best.elect_parent.p50),
            format!(
                "{:.2} ms vs {:.2} ms; target <= 1.5",
                ms_of(ours_elect.1),
                best.elect_parent.p50
            ),
        );
    }
    if let Some(curator) = runs.iter().find(|x| x.name == "curator") {
        let theirs = curator.leave_failover.p50;
        r.add(
            "ratio: our leave-failover (new master final) / Curator's",
            format!("{:.2} x", ms_of(ours_leave.0) / theirs),
            format!(
                "{:.2} ms vs {theirs:.2} ms; target <= 1",
                ms_of(ours_leave.0)
            ),
        );
        r.add(
            "ratio: our leave-failover to the first acknowledged write / Curator's leave-failover",
            format!("{:.2} x", ms_of(ours_leave.1) / theirs),
            format!(
                "{:.2} ms vs {theirs:.2} ms; target <= 2",
                ms_of(ours_leave.1)
            ),
        );
    }
}

async fn crash_failovers(c: &mut Cluster, base: &str, reps: usize, r: &mut Report) {
    let info = c.info(&c.services[0].id).await;
    let session = info["zookeeper"]["session_timeout_ms"]
        .as_u64()
        .unwrap_or(0);
    let mut v = Vec::new();
    for _ in 0..reps {
        let old = c
            .wait_converged(base, Duration::from_secs(15))
            .await
            .expect("converged");
        let t = Instant::now();
        c.service_mut(&old).kill9();
        loop {
            if c.write(base, &[("k", "v")], Duration::from_secs(1)).await.0 == 200 {
                break;
            }
        }
        v.push(t.elapsed());
        c.service_mut(&old).restart();
    }
    let (p50, _) = p50_p99(&mut v);
    r.add(
        "crash-failover (kill -9 master) to the first acknowledged write",
        ms(p50),
        format!(
            "max {}, {reps} crashes, negotiated session timeout {session} ms, tick {} ms; target session + tick + 50 ms = {} ms",
            ms(*v.last().unwrap_or(&Duration::ZERO)),
            c.zk.tick_ms,
            session + c.zk.tick_ms + 50
        ),
    );
}

async fn writes(c: &Cluster, base: &str, n: usize, r: &mut Report) {
    let master = c.wait_converged(base, T).await.expect("converged");
    // 512 writers fill batches (256 writes at most each): beyond what one
    // batch carries, pipelining keeps two in flight.
    for writers in [1usize, 32, 512] {
        let targets = vec![(master.clone(), base.to_string()); writers];
        write_load(c, &targets, n, r, &format!("{writers} writer(s), one base")).await;
    }
    // One writer per base, 32 bases (their masters spread over the peers).
    let mut targets = Vec::new();
    for i in 0..32 {
        let b = c.create_container("bench", &format!("many{i}")).await;
        let m = c.wait_converged(&b, T).await.expect("converged");
        targets.push((m, b));
    }
    write_load(c, &targets, n, r, "32 writers over 32 bases").await;
}

/// One loop per target (master, base), each making `n / targets` writes
/// one after the other; one row.
async fn write_load(
    c: &Cluster,
    targets: &[(String, String)],
    n: usize,
    r: &mut Report,
    what: &str,
) {
    let per = (n / targets.len()).max(1);
    let pipelined_before = pipelined(c).await;
    let pids: Vec<u32> = c.services.iter().filter_map(|s| s.pid()).collect();
    let cpu_before = (cpu_ms(&pids), cpu_ms(&[std::process::id()]));
    let t = Instant::now();
    let loops = targets
        .iter()
        .enumerate()
        .map(|(w, (master, base))| async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let key = format!("w{w}-{i}");
                let s = Instant::now();
                let (code, message) = c.write_to(master, base, &[(&key, "v")], T).await;
                assert_eq!(code, 200, "{message}");
                lat.push(s.elapsed());
            }
            lat
        });
    let mut lat: Vec<Duration> = futures::future::join_all(loops)
        .await
        .into_iter()
        .flatten()
        .collect();
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    // CPU per write: a second view of the write path's cost (it moves with
    // the machine's load as writes/s does).
    let services = cpu_ms(&pids) - cpu_before.0;
    let client = cpu_ms(&[std::process::id()]) - cpu_before.1;
    let count = lat.len() as f64;
    let per_write = |cpu: f64| cpu * 1000.0 / count;
    let (p50, p99) = p50_p99(&mut lat);
    let pipelined = pipelined(c).await - pipelined_before;
    r.add(
        &format!("acknowledged writes, 3 replicas, {what}"),
        format!("{rate:.0} writes/s"),
        format!(
            "p50 {}, p99 {}, {} writes; CPU per write: the 3 services {:.0} µs, this client {:.0} µs; {pipelined} batches pipelined",
            ms(p50),
            ms(p99),
            lat.len(),
            per_write(services),
            per_write(client)
        ),
    );
}

/// Batches begun behind others of their base, over the services
/// (`election_write_batches_pipelined_total`; 0 from a service that does
/// not count them).
async fn pipelined(c: &Cluster) -> u64 {
    let mut total = 0;
    for s in &c.services {
        let n = c
            .metric(&s.id, "election_write_batches_pipelined_total")
            .await;
        total += n.unwrap_or(0.0) as u64;
    }
    total
}

async fn cli_wall_time(c: &Cluster, r: &mut Report) {
    c.create_container("bench", "cli").await;
    let mut v = Vec::new();
    for _ in 0..20 {
        let run = c
            .openio(&["-a", "bench", "election", "status", "meta2", "cli"])
            .await;
        assert_eq!(run.code, 0, "{run:?}");
        v.push(run.took);
    }
    let (p50, _) = p50_p99(&mut v);
    r.add(
        "openio election status, healthy (process start to exit)",
        ms(p50),
        "20 runs".into(),
    );
    let hung = c.services[2].id.clone();
    c.service(&hung).pause();
    let mut v = Vec::new();
    for _ in 0..3 {
        let run = c
            .openio(&[
                "-a", "bench", "-t", "2", "election", "status", "meta2", "cli",
            ])
            .await;
        v.push(run.took);
    }
    c.service(&hung).resume();
    let (p50, _) = p50_p99(&mut v);
    r.add(
        "openio election status, one peer hanging, -t 2",
        ms(p50),
        format!(
            "{:+.0} ms over the timeout, 3 runs",
            (p50.as_secs_f64() - 2.0) * 1000.0
        ),
    );
}

/// CPU time used so far by the processes `pids`, all threads, user and
/// system (ms; /proc counts in ticks of 10 ms).
fn cpu_ms(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The fields after the command name, which may hold spaces.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let field = |n: usize| -> u64 {
                rest.split_whitespace()
                    .nth(n)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            // utime and stime: fields 14 and 15 of the line (the first
            // here is field 3).
            (field(11) + field(12)) as f64 * 10.0
        })
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn mntr(port: u16, key: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.write_all(b"mntr");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Many bases started together: directory entries written straight into
/// ZooKeeper (no replica files: every GETVERS answers "missing"), then one
/// ping per base to each peer.
async fn scale(c: &Cluster, n: usize, zk_rate: f64, r: &mut Report) {
    let client = zk::Client::connector()
        .connect(&c.zk.connect_string())
        .await
        .expect("zk");
    let layout = election_core::names::ZkLayout::new(
        election_core::names::Namespace::new("OPENIO").expect("ns"),
    );
    let t = election_core::names::ServiceType::new("meta2").expect("type");
    let peers: Vec<String> = c.ids();
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let bases: Vec<String> = (0..n)
        .map(|i| system_tests::base_of("scale", &format!("s{i}")))
        .collect();
    let paths: Vec<(String, Vec<u8>)> = bases
        .iter()
        .map(|b| {
            let base = election_core::names::BaseName::parse(b).expect("base");
            let entry = serde_json::json!({"base": b, "type": "meta2", "peers": peers});
            (
                layout.directory_node(&t, &base),
                serde_json::to_vec(&entry).expect("json"),
            )
        })
        .collect();
    let parents: std::collections::BTreeSet<&str> = paths
        .iter()
        .map(|(p, _)| p.rsplit_once('/').map(|(d, _)| d).unwrap_or("/"))
        .collect();
    mkdirs(&client, &parents).await;
    // Container creation makes each base's election directory
    // (directory.rs `register`); so does this, outside the measured storm.
    let dirs: std::collections::BTreeSet<String> = bases
        .iter()
        .map(|b| {
            let base = election_core::names::BaseName::parse(b).expect("base");
            layout.election_dir(&t, &election_core::names::ElectionKey::compute(&base, &t))
        })
        .collect();
    mkdirs(&client, &dirs.iter().map(String::as_str).collect()).await;
    let created: Vec<_> = futures::stream::iter(paths.iter())
        .map(|(p, d)| client.create(p, d, &opts))
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(created.iter().all(Result::is_ok));
    let rss_before: Vec<u64> = c
        .services
        .iter()
        .map(|s| rss_kib(s.pid().expect("pid")))
        .collect();
    let packets_before = mntr(c.zk.port, "zk_packets_received");
    let ops_before = zk_ops(c).await;
    let finals_before = final_elections(c).await;
    let t0 = Instant::now();
    ping_all(c, &bases).await;
    let target = finals_before + 3 * n as u64;
    // An election that fails under the storm (a ZooKeeper request timing out,
    // a session lost) goes idle until a client touches its base again: when
    // progress stalls for 5 s, every base is pinged again, as clients would.
    let (mut last, mut since, mut repings) = (0u64, Instant::now(), 0u32);
    loop {
        let finals = final_elections(c).await;
        if finals >= target {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "{finals} of {target} final after 10 min"
        );
        if finals != last {
            (last, since) = (finals, Instant::now());
        } else if since.elapsed() > Duration::from_secs(5) {
            eprintln!("bench: {finals} of {target} final and stalled: pinging every base again");
            repings += 1;
            ping_all(c, &bases).await;
            since = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = t0.elapsed();
    let packets = mntr(c.zk.port, "zk_packets_received").saturating_sub(packets_before);
    let mut ops = zk_ops(c).await;
    for (op, k) in &ops_before {
        if let Some(v) = ops.get_mut(op) {
            *v = v.saturating_sub(*k);
        }
    }
    let timed: u64 = ops.values().sum();
    let by_op = ops
        .iter()
        .map(|(op, k)| format!("{op} {:.1}", *k as f64 / n as f64))
        .chain(std::iter::once(format!(
            "other (pings, session set-up) {:.1}",
            packets.saturating_sub(timed) as f64 / n as f64
        )))
        .collect::<Vec<_>>()
        .join(", ");
    // The writes an election needs: one node per peer.
    let bound = 2.0 * (3 * n) as f64 / zk_rate;
    r.add(
        &format!("{n} bases on 3 peers, started together"),
        format!("{:.2} s to all final", took.as_secs_f64()),
        format!(
            "{:.0} elections/s; {:.1} ZooKeeper requests per election (3 peers: {by_op}); {:.1} x the bound 2 x ({} node creations / {zk_rate:.0} creates/s) = {bound:.1} s; {}",
            n as f64 / took.as_secs_f64(),
            packets as f64 / n as f64,
            took.as_secs_f64() / bound,
            3 * n,
            match repings {
                0 => "one ping per base and peer".to_string(),
                k => format!("stalled {k} time(s): failed elections went idle and every base was pinged again"),
            }
        ),
    );
    // Idle: a few seconds after the storm (a service hands the memory the
    // storm freed back to the system once no election is in flight).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let per: Vec<String> = c
        .services
        .iter()
        .zip(&rss_before)
        .map(|(s, before)| {
            format!(
                "{:.2}",
                (rss_kib(s.pid().expect("pid")).saturating_sub(*before)) as f64 / n as f64
            )
        })
        .collect();
    r.add(
        &format!("resident memory per idle election ({n} per service)"),
        format!("{} KiB", per.first().cloned().unwrap_or_default()),
        format!(
            "RSS growth / elections, per service: {} KiB (5 s after the last settled)",
            per.join(", ")
        ),
    );
    let mut states = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(Duration::from_millis(500), states.changed()).await;
}

/// `openio election report` over every base of the settled cluster (the
/// table, as an operator runs it), and each service's bulk list alone.
async fn fleet_report(c: &Cluster, n: usize, r: &mut Report) {
    let mut lists = Vec::new();
    for id in c.ids() {
        let t = Instant::now();
        let body = c
            .http
            .get(format!("http://{id}/v1/elections"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("/v1/elections")
            .bytes()
            .await
            .expect("/v1/elections body");
        let took = t.elapsed();
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let listed = doc["elections"].as_array().map_or(0, Vec::len);
        assert!(listed >= n, "{id} listed {listed} elections of {n}");
        lists.push(format!(
            "{:.2} s ({:.1} MB)",
            took.as_secs_f64(),
            body.len() as f64 / 1e6
        ));
    }
    let t = Instant::now();
    let run = c
        .openio(&["election", "report", "meta2", "--pending", "30"])
        .await;
    let took = t.elapsed();
    let summary = run.stdout.lines().next().unwrap_or_default().to_string();
    assert!(run.code == 0 || run.code == 1, "report failed: {run:?}");
    r.add(
        &format!("`openio election report` over {n} bases"),
        format!("{:.2} s", took.as_secs_f64()),
        format!(
            "the CLI's wall time (exit {}), \"{summary}\"; each service's streamed `/v1/elections` alone: {}",
            run.code,
            lists.join(", ")
        ),
    );
}

/// Makes persistent directories: their parents one by one, then the
/// directories themselves, 64 at a time (at most 65,536 of them).
async fn mkdirs(client: &zk::Client, dirs: &std::collections::BTreeSet<&str>) {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let parents: std::collections::BTreeSet<&str> = dirs
        .iter()
        .filter_map(|d| d.rsplit_once('/').map(|(p, _)| p))
        .collect();
    for p in parents {
        client.mkdir(p, &opts).await.expect("mkdir");
    }
    let made: Vec<_> = futures::stream::iter(dirs.iter())
        .map(|d| client.mkdir(d, &opts))
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(made.iter().all(Result::is_ok), "mkdir failed");
}

/// Every election back to one master with its slaves after ZooKeeper was
/// down for 5 s (killed, then started again on its data), with no client
/// request: the row of issue 13's recovery target.
async fn recovery(c: &mut Cluster, n: usize, r: &mut Report) {
    let outage = Duration::from_secs(5);
    let before = infos(c).await;
    let (masters0, slaves0) = roles(&before);
    let negotiated = before[0]["zookeeper"]["session_timeout_ms"]
        .as_u64()
        .unwrap_or(0);
    let (mut lowest, mut settled) = (u64::MAX, None);
    tokio::task::block_in_place(|| c.zk.kill());
    let t0 = Instant::now();
    while t0.elapsed() < outage {
        let (m, s) = roles(&infos(c).await);
        lowest = lowest.min(m + s);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::block_in_place(|| c.zk.restart());
    let back = t0.elapsed();
    let t1 = Instant::now();
    let mut after = Vec::new();
    while t1.elapsed() < Duration::from_secs(600) {
        after = infos(c).await;
        let (m, s) = roles(&after);
        lowest = lowest.min(m + s);
        let connected = after.iter().all(|i| i["zookeeper"]["state"] == "CONNECTED");
        if connected && m == masters0 && s == slaves0 {
            settled = Some(t1.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let epoch = |i: &serde_json::Value| i["zookeeper"]["epoch"].as_u64();
    let new_sessions = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| epoch(a) != epoch(b))
        .count();
    let Some(took) = settled else {
        panic!("recovery: {n} bases not back to one master and two slaves 10 min after a {outage:?} outage");
    };
    r.add(
        &format!("recovery of {n} settled bases after a 5 s ZooKeeper outage"),
        format!("{:.2} s after ZooKeeper was back", took.as_secs_f64()),
        format!(
            "ZooKeeper killed, started again on its data after {:?}, ready after {:.2} s in all; no client request; \
             {masters0} masters and {slaves0} slaves before and after; {} of them final at the lowest point; \
             {new_sessions} of 3 services on a new session (negotiated session timeout {negotiated} ms)",
            outage,
            back.as_secs_f64(),
            if lowest == u64::MAX { 0 } else { lowest },
        ),
    );
}

/// The election operations every service sent to ZooKeeper, by kind (the
/// `zookeeper_operation_seconds` histograms' counts).
async fn zk_ops(c: &Cluster) -> std::collections::BTreeMap<String, u64> {
    let mut ops = std::collections::BTreeMap::new();
    for s in &c.services {
        let Ok(resp) = c.http.get(format!("http://{}/metrics", s.id)).send().await else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        for line in text.lines() {
            let Some(rest) = line
                .split_once("zookeeper_operation_seconds_count{op=\"")
                .map(|(_, r)| r)
            else {
                continue;
            };
            let Some((op, value)) = rest.split_once("\"}") else {
                continue;
            };
            let k = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            *ops.entry(op.to_string()).or_insert(0) += k;
        }
    }
    ops
}

/// Every service's `/info`, asked in parallel.
async fn infos(c: &Cluster) -> Vec<serde_json::Value> {
    futures::future::join_all(c.services.iter().map(|s| c.info(&s.id))).await
}

/// MASTER and SLAVE elections over every service's `/info`.
fn roles(infos: &[serde_json::Value]) -> (u64, u64) {
    infos.iter().fold((0, 0), |(m, s), i| {
        (
            m + i["elections"]["master"].as_u64().unwrap_or(0),
            s + i["elections"]["slave"].as_u64().unwrap_or(0),
        )
    })
}

/// One ping per base to each peer, 64 in flight.
async fn ping_all(c: &Cluster, bases: &[String]) {
    let pings = bases
        .iter()
        .flat_map(|b| c.services.iter().map(move |s| (b, s.id.clone())))
        .map(|(b, id)| async move {
            let _ = c
                .http
                .post(format!("http://{id}/v1/election/ping"))
                .query(&[("base", b.as_str()), ("type", "meta2")])
                .send()
                .await;
        });
    futures::stream::iter(pings)
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// Memory and disk per idle base replica: bases created, then left idle
/// until their elections expire and are forgotten.
async fn replica_memory(n: usize, r: &mut Report) {
    eprintln!("bench: {n} idle base replicas");
    let extra = [
        "--expire-slave-s",
        "1",
        "--expire-master-s",
        "2",
        "--expire-none-s",
        "1",
    ];
    let c = Cluster::start_with_tick(
        3,
        ServiceOpts {
            session_timeout_ms: 10_000,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        },
        250,
    );
    let pids: Vec<u32> = c.services.iter().map(|s| s.pid().expect("pid")).collect();
    let before: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    let created: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let c = &c;
            async move { c.create_container("mem", &format!("r{i}")).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let started = Instant::now();
    loop {
        let mut live = 0;
        for s in &c.services {
            let info = c.info(&s.id).await;
            if let Some(m) = info["elections"].as_object() {
                live += m
                    .values()
                    .filter_map(serde_json::Value::as_u64)
                    .sum::<u64>();
            }
        }
        if live == 0 || started.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|(p, b)| rss_kib(*p).saturating_sub(*b) as f64 / n as f64)
        .collect();
    let disk: u64 = c
        .services
        .iter()
        .map(|s| {
            let path = s.replica_path(&created[0]);
            let root = path
                .parent()
                .and_then(|p| p.parent())
                .expect("bases dir")
                .to_path_buf();
            dir_bytes(&root)
        })
        .sum();
    r.add(
        &format!("resident memory per idle base replica ({n} bases, elections expired)"),
        format!("{:.2} KiB", per.iter().sum::<f64>() / per.len() as f64),
        format!(
            "RSS growth / replicas, per service: {}; on disk {:.1} KiB per replica",
            per.iter()
                .map(|k| format!("{k:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            disk as f64 / 1024.0 / (3 * n) as f64
        ),
    );
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// MASTER + SLAVE elections over every service.
async fn final_elections(c: &Cluster) -> u64 {
    let (masters, slaves) = roles(&infos(c).await);
    masters + slaves
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    format!("{cores} cores ({cpu}), {} GiB", mem >> 20)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let mut r = Report { rows: Vec::new() };
    let opts = ServiceOpts {
        session_timeout_ms: 2_000,
        extra: vec![],
    };
    eprintln!("bench: ZooKeeper (tickTime 250 ms) + 3 election-server processes");
    let mut c = Cluster::start_with_tick(3, opts, 250);

    let (rtt, zk_rate) = zk_reference(&c, &mut r).await;
    if a.only_writes {
        let base = c.create_container("bench", "w0").await;
        writes(&c, &base, a.writes, &mut r).await;
        write_report(&a, &r);
        return;
    }
    if !a.only_scale {
        latencies(&mut c, &a, &mut r, rtt).await;
    }
    if a.only_latency {
        write_report(&a, &r);
        return;
    }
    drop(c);
    // Scale on a fresh cluster with the production session timeout (10 s):
    // with 2 s, 30,000 elections on 2 shared cores can starve a session.
    eprintln!("bench: scale on a fresh cluster (session timeout 10 s)");
    let mut c = Cluster::start_with_tick(
        3,
        ServiceOpts {
            session_timeout_ms: 10_000,
            extra: vec![],
        },
        250,
    );
    scale(&c, a.scale, zk_rate, &mut r).await;
    recovery(&mut c, a.scale, &mut r).await;
    fleet_report(&c, a.scale, &mut r).await;
    drop(c);
    if let Some(n) = a.scale_also {
        eprintln!("bench: scale with {n} bases on a fresh cluster");
        let mut c = Cluster::start_with_tick(
            3,
            ServiceOpts {
                session_timeout_ms: 10_000,
                extra: vec![],
            },
            250,
        );
        scale(&c, n, zk_rate, &mut r).await;
        recovery(&mut c, n, &mut r).await;
        fleet_report(&c, n, &mut r).await;
    }
    if !a.only_scale {
        replica_memory(a.replicas, &mut r).await;
    }
    write_report(&a, &r);
}

/// The latency and write rows, on the first cluster.
async fn latencies(c: &mut Cluster, a: &Args, r: &mut Report, rtt: Duration) {
    let mut bases = Vec::new();
    for i in 0..a.bases.max(a.failovers) {
        bases.push(c.create_container("bench", &format!("b{i}")).await);
    }
    let elect = cold_elections(c, &bases[..a.bases], r, rtt).await;
    let leave = leave_failovers(c, &bases[..a.failovers], r).await;
    if a.peers {
        peer_baselines(c, r, elect, leave);
    }
    writes(c, &bases[0], a.writes, r).await;
    cli_wall_time(c, r).await;
    crash_failovers(c, &bases[1], 5, r).await;
}

/// BENCHMARKS.md (or stdout), from the rows.
fn write_report(a: &Args, r: &Report) {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(md, "Measured by `scripts/bench.sh` (release build, `cargo run --release -p system-tests --bin bench -- {}`)", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let _ = writeln!(md, "on {}, {} UTC: one standalone ZooKeeper (Debian 3.8, tickTime 250 ms) and 3 `election-server` processes", machine(), chrono_free_now());
    let _ = writeln!(md, "on loopback, all sharing the machine's cores with the benchmark driver. Session timeout requested: 2 s,");
    let _ = writeln!(md, "except for the scale, memory and recovery rows (fresh clusters asking for the production default of 10 s,");
    let _ = writeln!(md, "of which this ZooKeeper grants 5 s, its maxSessionTimeout of 20 ticks: with 2 s, 30,000 elections on 2 shared");
    let _ = writeln!(md, "cores starved a session, which is how two liveness bugs were found and fixed). The scale rows start from bases");
    let _ = writeln!(md, "as container creation leaves them (directory entry and election directory made); the recovery rows kill");
    let _ = writeln!(md, "ZooKeeper under the settled bases and start it again on its data 5 s later, with no client request after.");
    let _ = writeln!(
        md,
        "Figures are medians unless stated; ratios compare figures of this same run.\n"
    );
    let _ = writeln!(md, "| what | figure | detail |\n|---|---|---|");
    for (w, f, d) in &r.rows {
        let _ = writeln!(md, "| {w} | {f} | {d} |");
    }
    let _ = writeln!(md, "\nThe kazoo and Curator rows come from `scripts/peers.sh` (bench/peers/: three sessions in one process, 20 warm-up");
    let _ = writeln!(md, "and 200 measured repetitions, fresh path each, as ../shared/reference/peer-elections.md defines them), run");
    let _ = writeln!(md, "against the same ZooKeeper in the same run. `ZK_HEAP=1g scripts/bench.sh --scale-also 100000` adds a");
    let _ = writeln!(md, "100,000-base run.");
    let _ = writeln!(md, "\nWhere the time and the memory go, for the targets missed above: [docs/PROFILES.md](docs/PROFILES.md).");
    println!("{md}");
    if let Some(out) = &a.out {
        std::fs::write(out, md).expect("write the report");
        eprintln!("bench: wrote {out}");
    }
}

/// `YYYY-mm-dd HH:MM` in UTC, computed without a date library.
fn chrono_free_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}
