//! `election-server`: a meta service running per-base elections on ZooKeeper.
//!
//! Modules: [`zk`] (the shared session and its supervisor), [`directory`]
//! (service registry and peers of each base), [`storage`] (SQLite replicas),
//! [`rpc`] (peer calls), [`service`] (election tasks and the driver that runs
//! `election-core`'s actions), [`api`] (HTTP routes).

mod api;
mod directory;
mod guard;
mod oioproxy;
mod rpc;
mod service;
mod storage;
mod writes;
mod zk;

use anyhow::Context;
use clap::Parser;
use election_core::names::{Namespace, ServiceId, ServiceType};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Runs the elections of the bases hosted by this service, on ZooKeeper.
///
/// Every base (container) is replicated on several services; for each base
/// the services holding it elect one MASTER through ephemeral-sequential
/// nodes under /hc/ns/<NS>/el/<type>/. See README.md and docs/API.md.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Namespace name.
    #[arg(long, env = "OIO_NS", default_value = "OPENIO")]
    ns: String,
    /// Service type served (one per process).
    #[arg(long = "type", default_value = "meta2")]
    service_type: String,
    /// Address to listen on (loopback by default; choose deliberately).
    #[arg(long, default_value = "127.0.0.1:6015")]
    listen: String,
    /// Service id written into election nodes (default: the listen address).
    #[arg(long)]
    id: Option<String>,
    /// ZooKeeper connection string: host:port[,host:port...].
    #[arg(long, env = "OIO_ZOOKEEPER", default_value = "127.0.0.1:2181")]
    zk: String,
    /// Where base replicas live (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// ZooKeeper session timeout requested, in ms (the server clamps it to 2-20 ticks).
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u64,
    /// Reset our elections when ZooKeeper stays disconnected this long (ms);
    /// default: half the negotiated session timeout.
    #[arg(long)]
    disconnect_grace_ms: Option<u64>,
    /// Longest wait of a request for a final election state, in ms.
    #[arg(long, default_value_t = 20_000)]
    wait_delay_ms: u64,
    /// Deadline of every pending election state, in ms.
    #[arg(long, default_value_t = 12_000)]
    pending_timeout_ms: u64,
    /// GETVERS rounds retried before giving up.
    #[arg(long, default_value_t = 5)]
    getvers_attempts: u32,
    /// First delay between GETVERS rounds, in ms (doubles each retry).
    #[arg(long, default_value_t = 100)]
    getvers_delay_ms: u64,
    /// Timeout of one GETVERS call to a peer, in ms.
    #[arg(long, default_value_t = 4_000)]
    getvers_timeout_ms: u64,
    /// First delay before retrying a FAILED election, in ms (doubles each time).
    #[arg(long, default_value_t = 250)]
    retry_failed_ms: u64,
    /// An idle SLAVE leaves its election after this long, in s.
    #[arg(long, default_value_t = 210 * 60)]
    expire_slave_s: u64,
    /// An idle MASTER leaves after this long, in s (keep it above the slaves').
    #[arg(long, default_value_t = 240 * 60)]
    expire_master_s: u64,
    /// An idle election in NONE is forgotten after this long, in s.
    #[arg(long, default_value_t = 30 * 60)]
    expire_none_s: u64,
    /// SIGTERM: time allowed to leave every election cleanly, in ms.
    #[arg(long, default_value_t = 10_000)]
    exit_budget_ms: u64,
    /// Timeout of one replicated write to a slave, in ms.
    #[arg(long, default_value_t = 5_000)]
    replicate_timeout_ms: u64,
    /// Accept test-only fault switches on POST /v1/admin/fault (never in production).
    #[arg(long)]
    enable_fault_switches: bool,
    /// Stop client writes below this share of free space on the data volume (%).
    #[arg(long, default_value_t = 5.0)]
    min_avail_pct: f64,
    /// Memory budget of the service, in MiB (0: no memory threshold).
    #[arg(long, default_value_t = 0)]
    memory_budget_mb: u64,
    /// Stop client writes at this share of the memory budget (%).
    #[arg(long, default_value_t = 90.0)]
    stop_writes_pct: f64,
    /// Test-only: every base reads as still loading for this long after start, in ms
    /// (needs --enable-fault-switches).
    #[arg(long, default_value_t = 0)]
    fault_slow_load_ms: u64,
    /// Never become master (the service still follows and replicates).
    #[arg(long)]
    no_master: bool,
    /// Log format.
    #[arg(long, value_parser = ["human", "json"], default_value = "human")]
    log_format: String,
}

/// One stop-writes check (every second, and when a fault switch changes).
pub(crate) fn check_resources(svc: &Arc<service::Service>) {
    let reason = match svc.guard.read() {
        Ok(r) => svc.guard.judge(&r),
        Err(e) => {
            tracing::warn!("cannot read the data volume's usage: {e}");
            return;
        }
    };
    match svc.guard.update(reason.clone()) {
        Some(true) => {
            tracing::warn!("STOP-WRITES: {}", reason.unwrap_or_default());
            svc.apply_stop_writes(true);
        }
        Some(false) => {
            tracing::warn!("stop-writes cleared: resources back under their thresholds");
            svc.apply_stop_writes(false);
        }
        None => {}
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,zookeeper_client=warn"));
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let ns = Namespace::new(args.ns.clone())?;
    let stype = ServiceType::new(args.service_type.clone())?;
    let me = ServiceId::new(args.id.clone().unwrap_or_else(|| args.listen.clone()))?;
    if args.expire_master_s <= args.expire_slave_s {
        anyhow::bail!(
            "--expire-master-s ({}) must exceed --expire-slave-s ({}): idle slaves must leave first",
            args.expire_master_s,
            args.expire_slave_s
        );
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (in use? choose another --listen)",
                args.listen
            )
        })?;
    let store = storage::BaseStore::open(&args.data_dir)
        .with_context(|| format!("cannot use --data-dir {}", args.data_dir.display()))?;
    let session = zk::ZkSession::connect(
        &args.zk,
        Duration::from_millis(args.session_timeout_ms),
        Duration::from_secs(30),
    )
    .await?;
    let negotiated = session.view().negotiated_timeout;
    let grace = args
        .disconnect_grace_ms
        .map(Duration::from_millis)
        .unwrap_or(negotiated / 2);
    let election = election_core::Config {
        getvers_attempts: args.getvers_attempts,
        getvers_delay_ms: args.getvers_delay_ms,
        retry_failed_ms: args.retry_failed_ms,
        pending_timeout_ms: args.pending_timeout_ms,
        expire_slave_ms: args.expire_slave_s * 1000,
        expire_master_ms: args.expire_master_s * 1000,
        allow_master: !args.no_master,
        ..election_core::Config::default()
    };
    let cfg = service::ServiceConfig {
        election,
        wait_delay: Duration::from_millis(args.wait_delay_ms),
        expire_none: Duration::from_secs(args.expire_none_s),
        getvers_timeout: Duration::from_millis(args.getvers_timeout_ms),
        use_timeout: Duration::from_secs(1),
        sync_timeout: Duration::from_secs(240),
        disconnect_grace: grace,
        exit_budget: Duration::from_millis(args.exit_budget_ms),
        replicate_timeout: Duration::from_millis(args.replicate_timeout_ms),
        fault_switches: args.enable_fault_switches,
    };
    if args.enable_fault_switches {
        tracing::warn!("test-only fault switches are ENABLED: never run like this in production");
    }
    if !(0.0..=100.0).contains(&args.min_avail_pct)
        || !(0.0..=100.0).contains(&args.stop_writes_pct)
    {
        anyhow::bail!("--min-avail-pct and --stop-writes-pct are percentages: 0 to 100");
    }
    if args.fault_slow_load_ms > 0 {
        if !args.enable_fault_switches {
            anyhow::bail!(
                "--fault-slow-load-ms is a test-only fault: it needs --enable-fault-switches"
            );
        }
        store.simulate_slow_load(Duration::from_millis(args.fault_slow_load_ms));
    }
    let guard = guard::Guard::new(
        &args.data_dir,
        guard::Thresholds {
            min_avail_pct: args.min_avail_pct,
            memory_budget_bytes: (args.memory_budget_mb > 0).then_some(args.memory_budget_mb << 20),
            stop_writes_pct: args.stop_writes_pct,
        },
    );
    let svc = service::Service::new(
        cfg,
        me.clone(),
        ns,
        stype.clone(),
        session.clone(),
        store,
        guard,
    );
    check_resources(&svc);
    {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                check_resources(&svc);
            }
        });
    }
    svc.directory
        .bootstrap(&stype)
        .await
        .context("cannot create the namespace's ZooKeeper tree")?;
    svc.directory
        .register(&stype, &me, &args.listen)
        .await
        .context("cannot register the service")?;

    // Session supervision: reset elections of lost sessions, re-register.
    let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel();
    let (restored_tx, mut restored_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    tokio::spawn(session.clone().supervise(grace, lost_tx, restored_tx));
    {
        let svc = svc.clone();
        tokio::spawn(async move {
            while let Some(epoch) = restored_rx.recv().await {
                tracing::info!("ZooKeeper session usable again (epoch {epoch}): elections reset by the loss rejoin");
                svc.session_restored();
            }
        });
    }
    {
        let svc = svc.clone();
        tokio::spawn(async move {
            while let Some(lost) = lost_rx.recv().await {
                tracing::warn!(
                    "{}: resetting elections bound to session epoch {}",
                    lost.why,
                    lost.epoch
                );
                svc.session_lost(lost.epoch);
            }
        });
    }
    {
        let (svc, stype, me, listen) =
            (svc.clone(), stype.clone(), me.clone(), args.listen.clone());
        let mut views = session.subscribe();
        tokio::spawn(async move {
            let mut epoch = views.borrow().epoch;
            while views.changed().await.is_ok() {
                let v = *views.borrow();
                if v.epoch != epoch && v.link == zk::Link::Connected {
                    epoch = v.epoch;
                    if let Err(e) = svc.directory.register(&stype, &me, &listen).await {
                        tracing::error!("re-registration after a new session failed: {e}");
                    }
                }
            }
        });
    }

    let app = api::router(svc.clone());
    tracing::info!(
        "election-server {me} ({stype}) listening on {}, ZooKeeper {} (session {:?}, grace {:?})",
        args.listen,
        args.zk,
        negotiated,
        grace
    );
    // Peer RPCs are small request/response pairs: Nagle + delayed ACK would add ~40 ms each.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {
            let budget = svc.cfg.exit_budget.mul_f32(0.9);
            tracing::info!("SIGTERM: leaving every election (budget {budget:?})");
            let left = svc.exit_cleanly(budget).await;
            if left > 0 {
                tracing::warn!("{left} election(s) still members after the budget; closing the session");
            }
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: exiting fast");
            svc.exit_fast();
        }
        r = server => {
            r??;
        }
    }
    session.close().await;
    tracing::info!("stopped");
    Ok(())
}
