//! `election-sim`: runs the deterministic simulation over a range of seeds.
//!
//!     election-sim --seeds 0..500            # what CI runs (through cargo test)
//!     election-sim --seeds 0..20000 --jobs 2 # a long sweep
//!     election-sim --seed 1234 --trace       # replay one seed with its trace

use election_sim::{run, Mutation, Options, Stats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const USAGE: &str = "usage: election-sim [--seed N | --seeds A..B] [--jobs J] [--trace]
       [--services N] [--bases N] [--fault-ms MS] [--settle-ms MS] [--wrap]
       [--no-fence | --no-dump-lock | --no-copy-floor | --no-stamps | --no-writers
        | --no-farewell-guards | --no-delete-nodes]   (turn one fix off: the run must fail)
       [--mutate self-lowest]   (plant a bug: every candidate leads; one_master must fail)
       [--mutate no-retry]   (plant a bug: wanted elections wait for a request; convergence fails)
       [--no-operations]   (no SIGTERM, SIGINT, stop-writes, disk or directory errors, late loss notices)
       [--no-idle-hours]   (no hours-long idle phase on seeds = 6 mod 8)
       [--no-pipeline]   (one batch of a base in flight; otherwise 1 + seed mod 3)
       [--reaching COUNTER]   (list the seeds whose run counted COUNTER, to pin one)
Runs the real election engine over an in-memory ZooKeeper with faults,
checking the invariants after every step. Exit code 1 when a seed fails.";

fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once("..")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn main() {
    let mut opts = Options::default();
    let (mut from, mut to, mut jobs) = (0u64, 100u64, 1usize);
    let mut reaching: Option<String> = None;
    let mut args = std::env::args().skip(1);
    let fail = |msg: String| -> ! {
        eprintln!("election-sim: {msg}\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        };
        let num = |name: &str, v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| fail(format!("{name}: not a number: {v}")))
        };
        match a.as_str() {
            "--seed" => {
                from = num("--seed", value("--seed"));
                to = from + 1;
            }
            "--seeds" => {
                let v = value("--seeds");
                (from, to) =
                    parse_range(&v).unwrap_or_else(|| fail(format!("--seeds wants A..B, got {v}")));
            }
            "--jobs" => jobs = num("--jobs", value("--jobs")).max(1) as usize,
            "--services" => opts.services = num("--services", value("--services")) as usize,
            "--bases" => opts.bases = num("--bases", value("--bases")) as usize,
            "--fault-ms" => opts.fault_ms = num("--fault-ms", value("--fault-ms")),
            "--settle-ms" => opts.settle_ms = num("--settle-ms", value("--settle-ms")),
            "--trace" => opts.trace = true,
            "--reaching" => reaching = Some(value("--reaching")),
            "--no-fence" => opts.fence = false,
            "--no-dump-lock" => opts.dump_locked = false,
            "--no-copy-floor" => opts.copy_floor = false,
            "--no-stamps" => opts.stamps = false,
            "--no-writers" => opts.writers = false,
            "--no-pipeline" => opts.pipeline = false,
            "--no-farewell-guards" => opts.farewell_guarded = false,
            "--no-delete-nodes" => opts.delete_nodes = false,
            "--wrap" => opts.wrap = true,
            "--no-operations" => opts.operations = false,
            "--no-idle-hours" => opts.idle_hours = false,
            "--mutate" => match value("--mutate").as_str() {
                "self-lowest" => opts.mutation = Some(Mutation::SelfLowest),
                "no-retry" => opts.mutation = Some(Mutation::NoRetry),
                other => fail(format!("--mutate: unknown mutation {other}")),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(format!("unknown argument {other}")),
        }
    }
    if opts.services < 2 || opts.bases == 0 {
        fail("needs at least 2 services and 1 base".into());
    }
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(from));
    let total = Arc::new(Mutex::new(Stats::default()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let reached = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (next, total, failed, opts) =
                (next.clone(), total.clone(), failed.clone(), opts.clone());
            let (reached, reaching) = (reached.clone(), reaching.clone());
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= to {
                    return;
                }
                let out = run(seed, &opts);
                if let Some(counter) = &reaching {
                    if out
                        .stats
                        .counts
                        .get(counter.as_str())
                        .is_some_and(|n| *n > 0)
                    {
                        if let Ok(mut r) = reached.lock() {
                            r.push(seed);
                        }
                    }
                }
                if let Ok(mut t) = total.lock() {
                    t.merge(&out.stats);
                }
                if let Some(v) = out.violation {
                    if opts.trace {
                        for line in &out.trace {
                            eprintln!("{line}");
                        }
                    }
                    eprintln!("FAILED {v}\n");
                    if let Ok(mut f) = failed.lock() {
                        f.push(seed);
                    }
                }
                if seed % 1000 == 999 {
                    eprintln!("... seed {seed} done ({:.0?})", started.elapsed());
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let total = total.lock().map(|t| t.clone()).unwrap_or_default();
    let failed = failed.lock().map(|f| f.clone()).unwrap_or_default();
    println!(
        "seeds {from}..{to}: {} passed, {} failed in {:.1?} ({} steps, {} writes acknowledged, {} refused or failed)",
        (to - from) as usize - failed.len(),
        failed.len(),
        started.elapsed(),
        total.steps,
        total.writes_acked,
        total.writes_failed
    );
    for (what, n) in &total.counts {
        println!("  {what}: {n}");
    }
    if let Some(counter) = &reaching {
        let mut seeds = reached.lock().map(|r| r.clone()).unwrap_or_default();
        seeds.sort_unstable();
        println!("seeds reaching `{counter}`: {seeds:?}");
    }
    if !failed.is_empty() {
        println!("failed seeds: {failed:?}");
        std::process::exit(1);
    }
}
