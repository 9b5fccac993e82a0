// The command line of election-server. This file only uses `clap`: build.rs
// includes it to generate the man page and the shell completions.

/// The type of a configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Bool,
    Str,
}

/// One configuration key: the same name in the TOML file, the flag
/// (`--session-timeout-ms`) and the variable (`ELECTION_SESSION_TIMEOUT_MS`).
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub help: &'static str,
}

const fn key(name: &'static str, kind: Kind, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        kind,
        default,
        help,
    }
}

/// Every key, with its default; OpenIO's name where there is one
/// (reference/openio-election.md §4.12).
pub const KEYS: &[Key] = &[
    key("ns", Kind::Str, "OPENIO", "Namespace name (also OIO_NS)."),
    key("type", Kind::Str, "meta2", "Service type served (one per process)."),
    key("listen", Kind::Str, "127.0.0.1:6015", "Address to listen on (loopback by default: choose deliberately)."),
    key("id", Kind::Str, "", "Service id written into election nodes; empty: the listen address."),
    key("data_dir", Kind::Str, "", "Where base replicas live (created if missing). Required."),
    key("zk", Kind::Str, "127.0.0.1:2181", "ZooKeeper hosts: host:port[,host:port...] (also OIO_ZOOKEEPER)."),
    key("zk_chroot", Kind::Str, "", "ZooKeeper chroot for every path: empty or /path."),
    key("zk_digest_file", Kind::Str, "", "File whose first line is user:password: authenticate with ZooKeeper's digest scheme; the nodes the service creates are then writable by that identity only (readable by anyone)."),
    key("session_timeout_ms", Kind::Int, "10000", "sqliterepo.zk.timeout: ZooKeeper session timeout requested, in ms (the server clamps it to 2-20 ticks)."),
    key("disconnect_grace_ms", Kind::Int, "0", "Reset our elections when ZooKeeper stays disconnected this long, in ms; 0: half the negotiated session timeout. Capped at two thirds of the timeout ZooKeeper granted, which its maxSessionTimeout may make shorter than session_timeout_ms."),
    key("wait_delay_ms", Kind::Int, "20000", "sqliterepo.election.wait.delay: longest wait of a request for a final election state, in ms."),
    key("pending_timeout_ms", Kind::Int, "12000", "sqliterepo.election.delay.expire_pending: deadline of every pending election state, in ms."),
    key("getvers_attempts", Kind::Int, "5", "sqliterepo.repo.getvers_attempts: GETVERS rounds before giving up."),
    key("getvers_delay_ms", Kind::Int, "100", "sqliterepo.repo.getvers_delay: first delay between GETVERS rounds, in ms (doubles each round)."),
    key("getvers_timeout_ms", Kind::Int, "4000", "sqliterepo.outgoing.timeout.req.getvers: one GETVERS call to a peer, in ms."),
    key("use_timeout_ms", Kind::Int, "1000", "sqliterepo.outgoing.timeout.req.use: one USE call to a peer, in ms."),
    key("sync_timeout_ms", Kind::Int, "240000", "sqliterepo.outgoing.timeout.req.resync: one copy of a base from the master, in ms."),
    key("replicate_timeout_ms", Kind::Int, "5000", "sqliterepo.outgoing.timeout.req.replicate: one replicated write to a slave, in ms."),
    key("retry_failed_ms", Kind::Int, "250", "sqliterepo.election.delay.retry_failed: first delay before retrying a FAILED election, in ms (doubles each time)."),
    key("expire_slave_s", Kind::Int, "12600", "sqliterepo.election.delay.expire_slave: an idle SLAVE leaves its election after this long, in s."),
    key("expire_master_s", Kind::Int, "14400", "sqliterepo.election.delay.expire_master: an idle MASTER leaves after this long, in s (above expire_slave_s)."),
    key("max_elections_in_flight", Kind::Int, "1000", "Elections started at once, at most; the others wait their turn in NONE, their deadlines not yet running (admission control)."),
    key("max_batch_writes", Kind::Int, "256", "Client writes of one base committed and replicated together at most (group commit: the writes that queue while a batch is in flight form the next one)."),
    key("pipeline_window", Kind::Int, "4", "Batches of one base a master keeps in flight at most (pipelined replication): when the queued writes fill a whole batch (max_batch_writes), the next batch is begun and sent while earlier ones still wait for their majority, in one transaction (a savepoint per batch); clients are answered once every batch of the window has its majority and the transaction committed. 1 sends a base's batches one after the other."),
    key("max_queued_writes", Kind::Int, "8192", "Client writes waiting over all the bases of the service, at most (each base also holds at most 1024); beyond, writes are refused with 503 overloaded and Retry-After: bounded memory under overload."),
    key("expire_none_s", Kind::Int, "1800", "sqliterepo.election.delay.expire_none: an idle election in NONE is forgotten after this long, in s."),
    key("exit_budget_ms", Kind::Int, "10000", "sqliterepo.service.exit_ttl: SIGTERM's budget to leave every election cleanly, in ms (systemd's TimeoutStopSec must exceed it)."),
    key("no_master", Kind::Bool, "false", "sqliterepo.election.allow_master=false: never become master (the service still follows and replicates)."),
    key("min_avail_pct", Kind::Float, "5", "Stop client writes below this share of free space on the data volume (%)."),
    key("memory_budget_mb", Kind::Int, "0", "Memory budget of the service, in MiB (0: no memory threshold)."),
    key("stop_writes_pct", Kind::Float, "90", "Stop client writes at this share of the memory budget (%)."),
    key("max_body_bytes", Kind::Int, "65536", "Largest request body accepted, in bytes (413 beyond)."),
    key("durability", Kind::Str, "process", "What a replica's commit waits for. process: the operating system has it (no fsync): an acknowledged write, on a majority of replicas, survives kill -9 of any process and the loss of any minority of machines; a power loss may lose a replica's last commits or damage its file. power: an fsync per commit on every replica: it also survives a power loss of every machine at once, at the cost of write latency. See docs/OPERATIONS.md, Durability."),
    key("balance_rate", Kind::Float, "5", "openio election balance: at most this many masterships left per second by one service."),
    key("secret_file", Kind::Str, "", "File whose first line is the shared secret: peer RPC and admin routes (leave, sync, balance, read-only clear, fault switches) then refuse requests without it (401)."),
    key("log_format", Kind::Str, "human", "Log format: human or json."),
    key("log_filter", Kind::Str, "info,zookeeper_client=warn", "Log filter, tracing's EnvFilter syntax (also RUST_LOG)."),
    key("peer_http1", Kind::Bool, "false", "Call peers over HTTP/1.1, one connection per call in flight, instead of one HTTP/2 (h2c) connection per peer: for a rolling upgrade from a version whose services do not serve HTTP/2 (before 2026-12-01)."),
    key("enable_fault_switches", Kind::Bool, "false", "Test-only fault switches on POST /v1/admin/fault (never in production)."),
    key("fault_slow_load_ms", Kind::Int, "0", "Test-only: every base reads as still loading for this long after start, in ms (needs enable_fault_switches)."),
];

pub const AFTER_HELP: &str = "\
Every setting is a key with the same name in the TOML file (--config), the
flag (--session-timeout-ms) and the environment (ELECTION_SESSION_TIMEOUT_MS).
Precedence: flag > environment > file > default. A bad value stops the service
with a message naming the key, the value, its source and what is allowed.
--print-config shows the effective configuration and where each value came
from. Secrets are read from files only (secret_file, zk_digest_file).

Signals: SIGTERM leaves every election cleanly within exit_budget_ms (peers
take over at once), then closes the ZooKeeper session; SIGINT closes it at once.
See docs/OPERATIONS.md for the runbook.";

/// The command line: `--config`, `--print-config`, `--man`, `--completions`
/// and one flag per key.
pub fn command(version: &'static str) -> clap::Command {
    use clap::{Arg, ArgAction, Command};
    let mut cmd = Command::new("election-server")
        .version(version)
        .about("Runs the per-base elections of a meta service on ZooKeeper, replicates its bases, and answers the openio CLI (ours and OpenIO's).")
        .after_help(AFTER_HELP)
        .arg(
            Arg::new("config")
                .long("config")
                .env("ELECTION_CONFIG")
                .value_name("FILE")
                .help("TOML file of settings (keys below, without dashes)."),
        )
        .arg(
            Arg::new("print_config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("Print the effective configuration, with the source of each value, and exit."),
        )
        .arg(
            Arg::new("man")
                .long("man")
                .action(ArgAction::SetTrue)
                .help("Print the man page (roff, generated at build time) and exit."),
        )
        .arg(
            Arg::new("completions")
                .long("completions")
                .value_name("SHELL")
                .value_parser(["bash", "zsh", "fish"])
                .help("Print a shell completion script (generated at build time) and exit."),
        );
    for k in KEYS {
        let flag = k.name.replace('_', "-");
        let mut arg = Arg::new(k.name).long(flag).help(k.help);
        arg = match k.kind {
            Kind::Bool => arg.action(ArgAction::SetTrue),
            Kind::Int => arg.value_name("N"),
            Kind::Float => arg.value_name("X"),
            Kind::Str => arg.value_name("TEXT"),
        };
        if !k.default.is_empty() && k.kind != Kind::Bool {
            arg = arg.help(format!("{} [default: {}]", k.help, k.default));
        }
        cmd = cmd.arg(arg);
    }
    cmd
}
