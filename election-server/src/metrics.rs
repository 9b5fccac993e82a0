//! `/metrics` in Prometheus' text format, through the `prometheus-client`
//! crate. Counters and histograms are updated where things happen; gauges
//! that describe the present (elections per state, session state, flags)
//! are read when scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub from: String,
    pub event: String,
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub code: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latencies from 0.5 ms to about 30 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    elections: Family<StateLabel, Gauge>,
    pub transitions: Family<TransitionLabels, Counter>,
    pub failovers: Counter,
    pub time_to_final: Histogram,
    pub getvers: Family<OutcomeLabel, Counter>,
    /// GETVERS answers not waited for (a candidate's vouch, a farewell).
    pub getvers_skipped: Counter,
    zk_state: Family<StateLabel, Gauge>,
    zk_reconnects: Counter,
    pub zk_ops: Histograms<OpLabel>,
    pub replication: Histogram,
    pub replication_failures: Counter,
    /// Client writes per committed batch (group commit).
    pub batches: Histogram,
    /// Batches begun while others of the same base were still replicated.
    pub pipelined: Counter,
    pub resyncs: Counter,
    pub overtaken: Counter,
    stop_writes: Gauge,
    read_only: Gauge,
    pub http: Family<HttpLabels, Counter>,
    pub http_latency: Histograms<OpLabel>,
    /// Peer calls sent and not answered yet (the peer client's gauge).
    pub peer_calls: Gauge,
    /// How long the oldest election that is neither final nor idle has been
    /// so (0: none).
    oldest_unsettled: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Serialises scrapes (the gauges are set, then encoded).
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("election");
        let m = Metrics {
            elections: Family::default(),
            transitions: Family::default(),
            failovers: Counter::default(),
            time_to_final: latency(),
            getvers: Family::default(),
            getvers_skipped: Counter::default(),
            zk_state: Family::default(),
            zk_reconnects: Counter::default(),
            zk_ops: Family::new_with_constructor(latency),
            replication: latency(),
            replication_failures: Counter::default(),
            batches: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            pipelined: Counter::default(),
            resyncs: Counter::default(),
            overtaken: Counter::default(),
            stop_writes: Gauge::default(),
            read_only: Gauge::default(),
            http: Family::default(),
            http_latency: Family::new_with_constructor(latency),
            peer_calls: Gauge::default(),
            oldest_unsettled: Gauge::default(),
            registry: Registry::default(),
            scrape: Mutex::new(()),
        };
        registry.register(
            "elections",
            "Elections of this service, by state",
            m.elections.clone(),
        );
        registry.register(
            "oldest_unsettled_seconds",
            "Age of the oldest election that is neither MASTER, SLAVE nor idle (0: none): a base of this service without a settled master for that long",
            m.oldest_unsettled.clone(),
        );
        registry.register(
            "peer_calls_in_flight",
            "Calls to peers (USE, GETVERS, REPLICATE, copies) sent and not answered yet",
            m.peer_calls.clone(),
        );
        registry.register(
            "transitions",
            "State machine transitions, by (from, event, to)",
            m.transitions.clone(),
        );
        registry.register(
            "failovers",
            "Bases whose master changed while this service was a member (it took over, or follows a new master)",
            m.failovers.clone(),
        );
        registry.register(
            "time_to_final_seconds",
            "Time from leaving NONE to MASTER or SLAVE",
            m.time_to_final.clone(),
        );
        registry.register(
            "getvers_outcomes",
            "GETVERS rounds, by outcome (OK, KO, OLD, RACE)",
            m.getvers.clone(),
        );
        registry.register(
            "getvers_skipped",
            "GETVERS answers not waited for: a follower's to its master, whose own GETVERS as a candidate showed that the versions agree; a successor's to its peers, after its master's farewell told a final version equal to its own",
            m.getvers_skipped.clone(),
        );
        registry.register(
            "zookeeper_session_state",
            "1 for the current ZooKeeper link state",
            m.zk_state.clone(),
        );
        registry.register(
            "zookeeper_reconnects",
            "ZooKeeper sessions re-established",
            m.zk_reconnects.clone(),
        );
        registry.register(
            "zookeeper_operation_seconds",
            "ZooKeeper operation latency, by operation",
            m.zk_ops.clone(),
        );
        registry.register(
            "replication_seconds",
            "Latency of one replicated write to one slave",
            m.replication.clone(),
        );
        registry.register(
            "write_batch_size",
            "Client writes committed together in one batch (one transaction, one replication round)",
            m.batches.clone(),
        );
        registry.register(
            "write_batches_pipelined",
            "Batches begun and sent while earlier batches of the same base still waited for their majority",
            m.pipelined.clone(),
        );
        registry.register(
            "replication_failures",
            "Replicated writes a slave refused or did not answer",
            m.replication_failures.clone(),
        );
        registry.register(
            "resyncs",
            "Copies of a base from its master (this service as the slave)",
            m.resyncs.clone(),
        );
        registry.register(
            "replicate_overtaken",
            "Replicated writes that came before the write they follow, and waited for it",
            m.overtaken.clone(),
        );
        registry.register(
            "stop_writes",
            "1 while writes are stopped (low disk or memory)",
            m.stop_writes.clone(),
        );
        registry.register(
            "emergency_read_only",
            "1 while in emergency read-only mode",
            m.read_only.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests, by route and status code",
            m.http.clone(),
        );
        registry.register(
            "http_request_seconds",
            "HTTP request latency, by route",
            m.http_latency.clone(),
        );
        Metrics { registry, ..m }
    }
}

/// What a scrape reads from the service.
pub struct Present<'a> {
    pub states: &'a [(&'static str, i64)],
    pub zk_state: &'static str,
    pub zk_reconnects: u64,
    pub stop_writes: bool,
    pub read_only: bool,
    /// Seconds since the oldest unsettled election became so.
    pub oldest_unsettled_s: f64,
}

impl Metrics {
    pub fn transition(&self, from: &str, event: &str, to: &str) {
        self.transitions
            .get_or_create(&TransitionLabels {
                from: from.into(),
                event: event.into(),
                to: to.into(),
            })
            .inc();
    }

    pub fn getvers_outcome(&self, outcome: &str) {
        self.getvers
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Awaits a ZooKeeper operation, recording its latency.
    pub async fn timed<T>(&self, op: &str, fut: impl std::future::Future<Output = T>) -> T {
        let t = std::time::Instant::now();
        let out = fut.await;
        self.zk_ops
            .get_or_create(&OpLabel { op: op.into() })
            .observe(t.elapsed().as_secs_f64());
        out
    }

    pub fn http_request(&self, route: &str, code: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.into(),
                code: code.to_string(),
            })
            .inc();
        self.http_latency
            .get_or_create(&OpLabel { op: route.into() })
            .observe(took.as_secs_f64());
    }

    /// The text exposition, gauges set from `now` first.
    pub fn render(&self, now: &Present<'_>) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        for (state, n) in now.states {
            self.elections
                .get_or_create(&StateLabel {
                    state: (*state).into(),
                })
                .set(*n);
        }
        for s in [
            "CONNECTING",
            "CONNECTED",
            "DISCONNECTED",
            "EXPIRED",
            "CLOSED",
        ] {
            self.zk_state
                .get_or_create(&StateLabel { state: s.into() })
                .set(i64::from(s == now.zk_state));
        }
        let seen = self.zk_reconnects.get();
        if now.zk_reconnects > seen {
            self.zk_reconnects.inc_by(now.zk_reconnects - seen);
        }
        self.stop_writes.set(i64::from(now.stop_writes));
        self.read_only.set(i64::from(now.read_only));
        self.oldest_unsettled.set(now.oldest_unsettled_s);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }
}
