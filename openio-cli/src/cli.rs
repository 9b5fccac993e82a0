// The command line of `openio`. This file only uses `clap` and
// `clap_complete`: build.rs includes it to generate the man page and the
// shell completions.

use clap::{Parser, Subcommand};

/// Output formats (`value`: values only, space-separated, no header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Value,
    Yaml,
}

pub const AFTER_HELP: &str = "\
Configuration precedence: command-line flag > environment (OIO_NS, OIO_ACCOUNT,
OIO_ZOOKEEPER) > the [<NS>] section, key `zookeeper`, of /etc/oio/sds.conf.d/*,
/etc/oio/sds.conf or ~/.oio/sds.conf (later files win).

Per-peer codes: 200 OK (master), 303 <master> (slave), 301 not SLAVE,
431 base not managed, 500 Election failed, 503 service exiting; and when the
peer could not be asked: 2 connection refused, 5 connect timeout, 7 timeout.

Exit codes: 0 every peer answered; 1 the command ran but some peer did not
answer (or a `check --clean` deletion failed); 2 usage or fatal error.";

/// Troubleshoot per-base elections of an OpenIO-style namespace.
#[derive(Debug, Parser)]
#[command(name = "openio", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Namespace.
    #[arg(long, env = "OIO_NS", default_value = "OPENIO", global = true)]
    pub ns: String,
    /// Account owning the reference.
    #[arg(short = 'a', long = "oio-account", env = "OIO_ACCOUNT", global = true)]
    pub account: Option<String>,
    /// The namespace's ZooKeeper (host:port[,host:port...]).
    #[arg(long, env = "OIO_ZOOKEEPER", global = true)]
    pub zookeeper: Option<String>,
    /// Seconds to wait for each peer (all peers are asked in parallel).
    #[arg(short = 't', long, default_value_t = 30.0, global = true, value_parser = parse_seconds)]
    pub timeout: f64,
    /// Output format (`value`: values only, space-separated, no header).
    #[arg(short = 'f', long, value_enum, default_value = "table", global = true)]
    pub format: Format,
    /// Request id sent to the services (x-oio-req-id).
    #[arg(long, global = true)]
    pub request_id: Option<String>,
    /// File whose first line is the services' shared secret (needed by
    /// leave, sync, set-aside, balance and clear-readonly when the services have one).
    #[arg(long, env = "OIO_ELECTION_SECRET_FILE", global = true)]
    pub secret_file: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Election troubleshooting.
    #[command(subcommand)]
    Election(ElectionCmd),
    /// Containers (bases) in the directory.
    #[command(subcommand)]
    Container(ContainerCmd),
    /// One service: INFO, emergency read-only mode.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Print the man page (roff, generated at build time).
    Man,
    /// Print a shell completion script (generated at build time).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What can be wrong with a base (`--finding` takes these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Finding {
    /// No peer that answered claims MASTER, and the election is not young.
    NoMaster,
    /// More than one peer claims MASTER.
    MultiMaster,
    /// Peers name different masters.
    Disagree,
    /// A peer's election is FAILED.
    Failed,
    /// A peer's election has been pending longer than `--pending`.
    Pending,
    /// A peer runs no election, or its node is not in ZooKeeper, while
    /// another peer runs it.
    MissingNode,
    /// An election node that no peer holds as its current node.
    RogueNode,
    /// A peer is in emergency read-only mode.
    ReadOnly,
    /// A peer stopped writes (low disk or memory).
    StopWrites,
    /// A peer is not registered, or did not answer.
    PeerDown,
}

impl Finding {
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::NoMaster => "no-master",
            Finding::MultiMaster => "multi-master",
            Finding::Disagree => "disagree",
            Finding::Failed => "failed",
            Finding::Pending => "pending",
            Finding::MissingNode => "missing-node",
            Finding::RogueNode => "rogue-node",
            Finding::ReadOnly => "read-only",
            Finding::StopWrites => "stop-writes",
            Finding::PeerDown => "peer-down",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Service type (meta2, ...).
    pub service_type: String,
    /// Container name (with --oio-account), or a container id with --cid.
    pub reference: String,
    /// Interpret the reference as a container id.
    #[arg(long)]
    pub cid: bool,
    /// Ask only these peers (repeatable); skips the directory lookup. With
    /// set-aside: the replicas whose copy to set aside (required).
    #[arg(long = "service-id")]
    pub service_ids: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ElectionCmd {
    /// Trigger or refresh the election on every peer (returns at once).
    Ping(Target),
    /// Get the status of the election, triggering it if needed (waits).
    Status {
        #[command(flatten)]
        target: Target,
        /// Add role, master, fencing epoch, base version, ZooKeeper session,
        /// time in state and reason per peer, and a verdict line.
        #[arg(long)]
        long: bool,
        /// Refresh every SECONDS, like watch(1), until interrupted.
        #[arg(short = 'W', long, value_name = "SECONDS")]
        watch: Option<f64>,
    },
    /// Dump each peer's view of the election, with its transition log.
    Debug {
        #[command(flatten)]
        target: Target,
        /// Show log entries as local dates: `YYYY-mm-dd HH:MM:SS.mmm PRE, EVENT -> POST`.
        #[arg(long)]
        human: bool,
    },
    /// Ask the peers to leave the election (they rejoin when asked again).
    Leave(Target),
    /// Ask slaves to re-copy the base from the master.
    Sync(Target),
    /// Diverged replicas: set aside the copies of the services named with
    /// --service-id (each moves its copy into <data>/set-aside/, one service
    /// at a time), so that they copy the base again from the replica that
    /// leads. The copies of the other replicas are the ones kept. See
    /// docs/OPERATIONS.md, "Diverged replicas".
    SetAside(Target),
    /// Ask services to hand masterships over to their peers (least recently
    /// used first, rate-limited by each service's balance_rate), with a
    /// progress line per service and a summary table.
    Balance {
        /// Service type (meta2, ...).
        service_type: String,
        /// Only these services (repeatable); default: every live service of the type.
        #[arg(long = "service-id")]
        service_ids: Vec<String>,
        /// At most this many masterships left per service.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// Only masters idle for at least this many seconds (0: any).
        #[arg(long, default_value_t = 0)]
        inactivity: u64,
        /// Only services above the average number of masters, each down to it.
        #[arg(long)]
        average: bool,
        /// Do not rejoin the elections left (the service stays out until asked again).
        #[arg(long)]
        no_rejoin: bool,
    },
    /// Merge the peers' transition logs into one timeline.
    History {
        #[command(flatten)]
        target: Target,
        /// Also draw it: one swimlane per peer coloured by state class
        /// (master, slave, pending, failed, none), the time axis in ms from
        /// the first transition, a mark per transition whose tooltip names
        /// it. Written to FILE as SVG.
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
        /// The same picture in an HTML page, with the merged table under it.
        #[arg(long, value_name = "FILE")]
        html: Option<std::path::PathBuf>,
    },
    /// The namespace's health: which bases of the type are unhealthy, and
    /// why. Reads the directory, the election nodes and every service's
    /// list of elections, each once and in bulk (never per base). Prints a
    /// summary line, then a table of the bases with findings and the
    /// command to look closer. Exit 0 when healthy, 1 on findings, 2 on
    /// error. Start every incident here.
    Report {
        /// Service type (meta2, ...).
        service_type: String,
        /// List every base, healthy ones included.
        #[arg(long)]
        all: bool,
        /// Only bases with a peer among these services (repeatable).
        #[arg(long = "service-id")]
        service_ids: Vec<String>,
        /// Only bases with this finding (repeatable).
        #[arg(long = "finding", value_enum)]
        findings: Vec<Finding>,
        /// Seconds an election may stay pending (or without a master)
        /// before it is a finding: younger ones are elections under way.
        #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
        pending: f64,
        /// Services asked at once for their elections.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Compare the base's peers with its election nodes in ZooKeeper.
    Check {
        #[command(flatten)]
        target: Target,
        /// Delete rogue nodes (owner not a peer, or not the owner's current node), last one first.
        #[arg(long)]
        clean: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// The service's INFO (`key:value` lines, or JSON with -f json).
    Info {
        /// The service (host:port).
        service_id: String,
    },
    /// Leave emergency read-only mode: accepted only once every replica of
    /// every affected base reports the same version (resync them first with
    /// `openio election sync`).
    ClearReadonly {
        /// The service (host:port).
        service_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// Create a container: its base is replicated on live services of the type.
    Create {
        reference: String,
        #[arg(long = "type", default_value = "meta2")]
        service_type: String,
        /// Number of replicas.
        #[arg(long, default_value_t = 3)]
        replicas: usize,
    },
    /// Show a container: its directory entry and properties.
    Show {
        reference: String,
        #[arg(long = "type", default_value = "meta2")]
        service_type: String,
        #[arg(long)]
        cid: bool,
    },
    /// Set properties (written on the master, replicated to a majority).
    Set {
        reference: String,
        /// KEY=VALUE (repeatable).
        #[arg(long = "property", required = true, value_parser = parse_property)]
        properties: Vec<(String, String)>,
        #[arg(long = "type", default_value = "meta2")]
        service_type: String,
        #[arg(long)]
        cid: bool,
    },
    /// Delete a container: its replicas are dropped and never elected again.
    Delete {
        reference: String,
        #[arg(long = "type", default_value = "meta2")]
        service_type: String,
        #[arg(long)]
        cid: bool,
    },
    /// List the account's containers.
    List {
        #[arg(long = "type", default_value = "meta2")]
        service_type: String,
    },
    /// Remove properties.
    Unset {
        reference: String,
        /// KEY (repeatable).
        #[arg(long = "property", required = true)]
        keys: Vec<String>,
        #[arg(long = "type", default_value = "meta2")]
        service_type: String,
        #[arg(long)]
        cid: bool,
    },
}

/// A positive, finite number of seconds.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}
