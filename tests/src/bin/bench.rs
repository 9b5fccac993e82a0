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
}

fn args() -> Args {
    let mut a = Args {
        bases: 500,
        failovers: 200,
        writes: 2000,
        scale: 10_000,
        out: None,
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
            "--quick" => {
                a.bases = 100;
                a.failovers = 30;
                a.writes = 300;
                a.scale = 1_000;
            }
            "-h" | "--help" => {
                println!("bench [--quick] [--bases N] [--failovers N] [--writes N] [--scale N] [--out BENCHMARKS.md]");
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

async fn zk_reference(c: &Cluster, r: &mut Report) -> Duration {
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
    p50
}

async fn cold_elections(c: &Cluster, bases: &[String], r: &mut Report, zk_rtt: Duration) {
    let mut v = Vec::new();
    for b in bases {
        let t = Instant::now();
        let answers = c.status_all(b, T).await;
        v.push(t.elapsed());
        system_tests::one_master(&answers).unwrap_or_else(|e| panic!("{e}"));
    }
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
}

async fn leave_failovers(c: &Cluster, bases: &[String], r: &mut Report) {
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
    let (p50, p99) = p50_p99(&mut to_master);
    r.add(
        "leave-failover to the new master final",
        ms(p50),
        format!("p99 {}, {} leaves", ms(p99), bases.len()),
    );
    let (p50, p99) = p50_p99(&mut to_write);
    r.add(
        "leave-failover to the first acknowledged write",
        ms(p50),
        format!("p99 {}", ms(p99)),
    );
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
            "max {}, {reps} crashes, negotiated session timeout {session} ms, tick {} ms",
            ms(*v.last().unwrap_or(&Duration::ZERO)),
            c.zk.tick_ms
        ),
    );
}

async fn writes(c: &Cluster, base: &str, n: usize, r: &mut Report) {
    let master = c.wait_converged(base, T).await.expect("converged");
    for writers in [1usize, 32] {
        let per = (n / writers).max(1);
        let t = Instant::now();
        let loops = (0..writers).map(|w| {
            let master = master.clone();
            async move {
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let key = format!("w{w}-{i}");
                    let s = Instant::now();
                    let (code, message) = c.write_to(&master, base, &[(&key, "v")], T).await;
                    assert_eq!(code, 200, "{message}");
                    lat.push(s.elapsed());
                }
                lat
            }
        });
        let mut lat: Vec<Duration> = futures::future::join_all(loops)
            .await
            .into_iter()
            .flatten()
            .collect();
        let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
        let (p50, p99) = p50_p99(&mut lat);
        r.add(
            &format!("acknowledged writes, 3 replicas, {writers} writer(s), one base"),
            format!("{rate:.0} writes/s"),
            format!("p50 {}, p99 {}, {} writes", ms(p50), ms(p99), lat.len()),
        );
    }
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
async fn scale(c: &Cluster, n: usize, r: &mut Report) {
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
    for (p, _) in &paths {
        let parent = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
        client.mkdir(parent, &opts).await.expect("mkdir");
    }
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
    let finals_before = final_elections(c).await;
    let t0 = Instant::now();
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
    let target = finals_before + 3 * n as u64;
    loop {
        let finals = final_elections(c).await;
        if finals >= target {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "{finals} of {target} final after 10 min"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = t0.elapsed();
    let packets = mntr(c.zk.port, "zk_packets_received").saturating_sub(packets_before);
    r.add(
        &format!("{n} bases on 3 peers, started together"),
        format!("{:.2} s to all final", took.as_secs_f64()),
        format!(
            "{:.0} elections/s; {:.1} ZooKeeper requests per election (3 peers)",
            n as f64 / took.as_secs_f64(),
            packets as f64 / n as f64
        ),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
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
            "RSS growth / elections, per service: {} KiB",
            per.join(", ")
        ),
    );
    let mut states = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(Duration::from_millis(500), states.changed()).await;
}

/// MASTER + SLAVE elections over every service.
async fn final_elections(c: &Cluster) -> u64 {
    let mut finals = 0;
    for s in &c.services {
        let info = c.info(&s.id).await;
        finals += info["elections"]["master"].as_u64().unwrap_or(0)
            + info["elections"]["slave"].as_u64().unwrap_or(0);
    }
    finals
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

    let rtt = zk_reference(&c, &mut r).await;
    let mut bases = Vec::new();
    for i in 0..a.bases.max(a.failovers) {
        bases.push(c.create_container("bench", &format!("b{i}")).await);
    }
    cold_elections(&c, &bases[..a.bases], &mut r, rtt).await;
    leave_failovers(&c, &bases[..a.failovers], &mut r).await;
    writes(&c, &bases[0], a.writes, &mut r).await;
    cli_wall_time(&c, &mut r).await;
    crash_failovers(&mut c, &bases[1], 5, &mut r).await;
    drop(c);
    // Scale on a fresh cluster with the production session timeout (10 s):
    // with 2 s, 30,000 elections on 2 shared cores can starve a session.
    eprintln!("bench: scale on a fresh cluster (session timeout 10 s)");
    let c = Cluster::start_with_tick(
        3,
        ServiceOpts {
            session_timeout_ms: 10_000,
            extra: vec![],
        },
        250,
    );
    scale(&c, a.scale, &mut r).await;

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(md, "Measured by `scripts/bench.sh` (release build, `cargo run --release -p system-tests --bin bench -- {}`)", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let _ = writeln!(md, "on {}, {} UTC: one standalone ZooKeeper (Debian 3.8, tickTime 250 ms) and 3 `election-server` processes", machine(), chrono_free_now());
    let _ = writeln!(md, "on loopback, all sharing the machine's cores with the benchmark driver. Session timeout requested: 2 s,");
    let _ = writeln!(md, "except for the last two rows (a fresh cluster with the production default of 10 s: with 2 s, 30,000");
    let _ = writeln!(md, "elections on 2 shared cores starved a session, which is how two liveness bugs were found and fixed).");
    let _ = writeln!(
        md,
        "Figures are medians unless stated; ratios compare figures of this same run.\n"
    );
    let _ = writeln!(md, "| what | figure | detail |\n|---|---|---|");
    for (w, f, d) in &r.rows {
        let _ = writeln!(md, "| {w} | {f} | {d} |");
    }
    let _ = writeln!(md, "\nNot measured yet (issue \"Benchmarks\"): the kazoo `Election` and Curator `LeaderLatch` baselines in the same run,");
    let _ = writeln!(md, "100,000 bases, memory per idle base replica (replicas are SQLite files opened per request).");
    println!("{md}");
    if let Some(out) = a.out {
        std::fs::write(&out, md).expect("write the report");
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
