//! `election-server`: a meta service running per-base elections on ZooKeeper.
//!
//! Modules: [`zk`] (the shared session and its supervisor), [`directory`]
//! (service registry and peers of each base), [`storage`] (SQLite replicas),
//! [`rpc`] (peer calls), [`service`] (election tasks and the driver that runs
//! `election-core`'s actions), [`api`] (HTTP routes).

mod access;
mod api;
mod cli;
mod client;
mod clock;
mod config;
mod dashboard;
mod directory;
mod guard;
mod http;
#[cfg(test)]
mod layers;
mod metrics;
mod oioproxy;
mod reqid;
mod rpc;
mod service;
mod storage;
mod zk;

use anyhow::Context;
use election_core::names::{Namespace, ServiceId, ServiceType};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One stop-writes check (every second, and when a fault switch changes).
/// `0.1.0 (git 1b55450)`: the git revision is read at build time.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("ELECTION_GIT_REV"),
    ")"
);

fn main() -> std::process::ExitCode {
    use clap::parser::ValueSource;
    use std::process::ExitCode;
    let matches = cli::command(VERSION).get_matches();
    if matches.get_flag("man") {
        print!(
            "{}",
            include_str!(concat!(env!("OUT_DIR"), "/election-server.1"))
        );
        return ExitCode::SUCCESS;
    }
    if let Some(shell) = matches.get_one::<String>("completions") {
        let script = match shell.as_str() {
            "bash" => include_str!(concat!(env!("OUT_DIR"), "/election-server.bash")),
            "zsh" => include_str!(concat!(env!("OUT_DIR"), "/_election-server")),
            _ => include_str!(concat!(env!("OUT_DIR"), "/election-server.fish")),
        };
        print!("{script}");
        return ExitCode::SUCCESS;
    }
    let file = match matches.get_one::<String>("config") {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some((PathBuf::from(path), text)),
            Err(e) => {
                eprintln!(
                    "election-server: {}",
                    config::ConfigError::Unreadable {
                        path: path.clone(),
                        why: e.to_string()
                    }
                );
                return ExitCode::from(2);
            }
        },
    };
    let flags: Vec<(String, String)> = cli::KEYS
        .iter()
        .filter(|k| matches.value_source(k.name) == Some(ValueSource::CommandLine))
        .map(|k| {
            let raw = match k.kind {
                cli::Kind::Bool => matches.get_flag(k.name).to_string(),
                _ => matches
                    .get_one::<String>(k.name)
                    .cloned()
                    .unwrap_or_default(),
            };
            (k.name.to_string(), raw)
        })
        .collect();
    let resolved = match config::resolve(file, &|var| std::env::var(var).ok(), &flags) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("election-server: {e}");
            return ExitCode::from(2);
        }
    };
    if matches.get_flag("print_config") {
        print!("{}", resolved.render());
        return ExitCode::SUCCESS;
    }
    let s = &resolved.settings;
    let filter = tracing_subscriber::EnvFilter::new(&s.log_filter);
    if s.log_format == "json" {
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
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(resolved)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("election-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(resolved: config::Resolved) -> anyhow::Result<()> {
    let s = resolved.settings.clone();
    let ns = Namespace::new(s.ns.clone())?;
    let stype = ServiceType::new(s.service_type.clone())?;
    let listen = s.listen.clone();
    let me = ServiceId::new(if s.id.is_empty() {
        listen.clone()
    } else {
        s.id.clone()
    })?;
    let data_dir = PathBuf::from(&s.data_dir);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (in use? choose another `listen`)"))?;
    let durability =
        storage::Durability::parse(&s.durability).context("durability was validated")?;
    let store = storage::BaseStore::open(&data_dir, durability)
        .with_context(|| format!("cannot use data_dir {}", data_dir.display()))?;
    let session = zk::ZkSession::connect(
        zk::Connection {
            hosts: s.zk.clone(),
            chroot: s.zk_chroot.clone(),
            digest: resolved.zk_digest.clone(),
        },
        Duration::from_millis(s.session_timeout_ms),
        Duration::from_secs(30),
    )
    .await?;
    let negotiated = session.view().negotiated_timeout;
    let (grace, capped) = config::effective_grace(s.disconnect_grace_ms, negotiated);
    if capped {
        tracing::warn!(
            "disconnect_grace_ms = {} is too long for the session ZooKeeper granted ({negotiated:?}; {} ms were asked, \
             its maxSessionTimeout decides): using {grace:?}, so that elections reset before ZooKeeper can expire the session",
            s.disconnect_grace_ms,
            s.session_timeout_ms
        );
    }
    let election = election_core::Config {
        getvers_attempts: s.getvers_attempts,
        getvers_delay_ms: s.getvers_delay_ms,
        retry_failed_ms: s.retry_failed_ms,
        pending_timeout_ms: s.pending_timeout_ms,
        expire_slave_ms: s.expire_slave_s * 1000,
        expire_master_ms: s.expire_master_s * 1000,
        allow_master: !s.no_master,
        ..election_core::Config::default()
    };
    let cfg = service::ServiceConfig {
        election,
        wait_delay: Duration::from_millis(s.wait_delay_ms),
        expire_none: Duration::from_secs(s.expire_none_s),
        max_in_flight: s.max_elections_in_flight as usize,
        max_queued_writes: s.max_queued_writes as usize,
        pipeline_window: s.pipeline_window as usize,
        max_batch_writes: s.max_batch_writes as usize,
        getvers_timeout: Duration::from_millis(s.getvers_timeout_ms),
        use_timeout: Duration::from_millis(s.use_timeout_ms),
        sync_timeout: Duration::from_millis(s.sync_timeout_ms),
        disconnect_grace: grace,
        exit_budget: Duration::from_millis(s.exit_budget_ms),
        replicate_timeout: Duration::from_millis(s.replicate_timeout_ms),
        fault_switches: s.enable_fault_switches,
        peer_http2: !s.peer_http1,
        max_body_bytes: s.max_body_bytes as usize,
        balance_rate: s.balance_rate,
        secret: resolved.secret.clone(),
    };
    if s.enable_fault_switches {
        tracing::warn!("test-only fault switches are ENABLED: never run like this in production");
    }
    if s.fault_slow_load_ms > 0 {
        store.simulate_slow_load(Duration::from_millis(s.fault_slow_load_ms));
    }
    let guard = guard::Guard::new(
        &data_dir,
        guard::Thresholds {
            min_avail_pct: s.min_avail_pct,
            memory_budget_bytes: (s.memory_budget_mb > 0).then_some(s.memory_budget_mb << 20),
            stop_writes_pct: s.stop_writes_pct,
        },
    );
    let svc = service::Service::new(
        cfg,
        me.clone(),
        ns,
        stype.clone(),
        service::Adapters {
            zk: session.clone(),
            store,
            guard,
            clock: Arc::new(clock::SystemClock::new()),
        },
    );
    svc.check_resources();
    {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                svc.check_resources();
            }
        });
    }
    svc.directory
        .bootstrap(&stype)
        .await
        .context("cannot create the namespace's ZooKeeper tree")?;
    svc.directory
        .register(&stype, &me, &listen)
        .await
        .context("cannot register the service")?;

    // Session supervision: reset elections of lost sessions, re-register.
    // Bounded: a slow consumer holds the supervisor back, in order.
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(session.clone().supervise(events_tx));
    {
        let svc = svc.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                match event {
                    zk::SessionEvent::Disconnected { epoch } => svc.session_link(epoch, false),
                    zk::SessionEvent::Reconnected { epoch } => svc.session_link(epoch, true),
                    zk::SessionEvent::Lost { epoch, why } => {
                        tracing::warn!("{why}: resetting elections bound to session epoch {epoch}");
                        svc.session_lost(epoch);
                    }
                    zk::SessionEvent::Restored { epoch } => {
                        tracing::info!("ZooKeeper session usable again (epoch {epoch}): elections reset by the loss rejoin");
                        svc.session_restored();
                    }
                }
            }
        });
    }
    {
        let (svc, stype, me, listen) = (svc.clone(), stype.clone(), me.clone(), listen.clone());
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
        listen,
        session.hosts(),
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
