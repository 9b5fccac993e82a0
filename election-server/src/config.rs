//! The service's configuration: one set of keys (`cli::KEYS`), four layers.
//!
//! Precedence, highest first:
//! 1. the command-line flag (`--session-timeout-ms`);
//! 2. the environment (`ELECTION_SESSION_TIMEOUT_MS`; also `OIO_NS`,
//!    `OIO_ZOOKEEPER` and `RUST_LOG` for `ns`, `zk` and `log_filter`);
//! 3. the TOML file (`--config FILE` or `ELECTION_CONFIG`);
//! 4. the defaults.
//!
//! The resolved configuration is validated as a whole; an error names the
//! key, the value, where it came from and what is allowed.
//! `election-server --print-config` shows the result with the source of
//! every value. Secrets are only ever read from files (`secret_file`,
//! `zk_digest_file`), never printed.

use election_client::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting; what each means, and its default, is in `cli::KEYS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub ns: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub listen: String,
    pub id: String,
    pub data_dir: String,
    pub zk: String,
    pub zk_chroot: String,
    pub zk_digest_file: String,
    pub session_timeout_ms: u64,
    pub disconnect_grace_ms: u64,
    pub wait_delay_ms: u64,
    pub pending_timeout_ms: u64,
    pub getvers_attempts: u32,
    pub getvers_delay_ms: u64,
    pub getvers_timeout_ms: u64,
    pub use_timeout_ms: u64,
    pub sync_timeout_ms: u64,
    pub replicate_timeout_ms: u64,
    pub retry_failed_ms: u64,
    pub expire_slave_s: u64,
    pub expire_master_s: u64,
    pub expire_none_s: u64,
    pub max_elections_in_flight: u64,
    pub max_queued_writes: u64,
    pub pipeline_window: u64,
    pub max_batch_writes: u64,
    pub exit_budget_ms: u64,
    pub no_master: bool,
    pub min_avail_pct: f64,
    pub memory_budget_mb: u64,
    pub stop_writes_pct: f64,
    pub max_body_bytes: u64,
    pub balance_rate: f64,
    pub secret_file: String,
    pub log_format: String,
    pub durability: String,
    pub log_filter: String,
    pub peer_http1: bool,
    pub enable_fault_switches: bool,
    pub fault_slow_load_ms: u64,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A configuration that cannot be used, said so that it can be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {why}")]
    Unreadable { path: String, why: String },
    #[error("invalid configuration file {path}: {why}")]
    Syntax { path: String, why: String },
    #[error("unknown key `{key}` in {origin}; known keys: {known}")]
    UnknownKey {
        key: String,
        origin: String,
        known: String,
    },
    #[error("invalid configuration: `{key}` = {value} (from {origin}): {allowed}")]
    Invalid {
        key: String,
        value: String,
        origin: String,
        allowed: String,
    },
}

/// The resolved configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub settings: Settings,
    pub sources: BTreeMap<String, Source>,
    /// Read once, from `secret_file`.
    pub secret: Option<Secret>,
    /// ZooKeeper's `user:password`, read once from `zk_digest_file`.
    pub zk_digest: Option<Secret>,
}

/// The variable of a key: `ELECTION_<KEY>`.
pub fn env_name(key: &str) -> String {
    format!("ELECTION_{}", key.to_ascii_uppercase())
}

/// The flag of a key: `--<key with dashes>`.
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// Older variables kept as aliases (the env layer, below `ELECTION_*`).
const ENV_ALIASES: [(&str, &str); 3] = [
    ("ns", "OIO_NS"),
    ("zk", "OIO_ZOOKEEPER"),
    ("log_filter", "RUST_LOG"),
];

/// The defaults, typed, from `cli::KEYS`.
fn defaults_table() -> toml::Table {
    use crate::cli::Kind;
    crate::cli::KEYS
        .iter()
        .map(|k| {
            let v = match k.kind {
                Kind::Int => toml::Value::Integer(k.default.parse().unwrap_or(0)),
                Kind::Float => toml::Value::Float(k.default.parse().unwrap_or(0.0)),
                Kind::Bool => toml::Value::Boolean(k.default == "true"),
                Kind::Str => toml::Value::String(k.default.to_string()),
            };
            (k.name.to_string(), v)
        })
        .collect()
}

/// A raw string (environment, flag) as a value of the key's type.
fn typed(
    key: &str,
    like: &toml::Value,
    raw: &str,
    source: &Source,
) -> Result<toml::Value, ConfigError> {
    let invalid = |allowed: &str| ConfigError::Invalid {
        key: key.into(),
        value: format!("{raw:?}"),
        origin: source.to_string(),
        allowed: allowed.into(),
    };
    Ok(match like {
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse::<u64>()
                .ok()
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| invalid("expected a whole number >= 0"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| invalid("expected a number"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" | "" => false,
            _ => return Err(invalid("expected true or false")),
        }),
        _ => toml::Value::String(raw.to_string()),
    })
}

/// Merges the layers. `file` is the path and text of the TOML file; `env`
/// reads a variable; `flags` are the keys given on the command line with
/// their raw values.
pub fn resolve(
    file: Option<(PathBuf, String)>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[(String, String)],
) -> Result<Resolved, ConfigError> {
    let defaults = defaults_table();
    let known = || {
        crate::cli::KEYS
            .iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut merged = defaults.clone();
    let mut sources: BTreeMap<String, Source> = defaults
        .keys()
        .map(|k| (k.clone(), Source::Default))
        .collect();
    if let Some((path, text)) = file {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?;
        for (k, v) in table {
            let Some(like) = defaults.get(&k) else {
                return Err(ConfigError::UnknownKey {
                    key: k,
                    origin: format!("file {}", path.display()),
                    known: known(),
                });
            };
            let source = Source::File(path.clone());
            // An integer where a float is expected is fine (`min_avail_pct = 5`).
            let v = match (like, v) {
                (toml::Value::Float(_), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
                (like, v) if like.same_type(&v) => v,
                (like, v) => {
                    return Err(ConfigError::Invalid {
                        key: k,
                        value: v.to_string(),
                        origin: source.to_string(),
                        allowed: format!("expected a value of type {}", like.type_str()),
                    })
                }
            };
            merged.insert(k.clone(), v);
            sources.insert(k, source);
        }
    }
    for (k, like) in &defaults {
        let names = ENV_ALIASES
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, var)| var.to_string())
            .chain(std::iter::once(env_name(k)));
        // The last one set wins: `ELECTION_*` over the aliases.
        for var in names {
            if let Some(raw) = env(&var) {
                let source = Source::Env(var);
                merged.insert(k.clone(), typed(k, like, &raw, &source)?);
                sources.insert(k.clone(), source);
            }
        }
    }
    for (k, raw) in flags {
        let Some(like) = defaults.get(k) else {
            return Err(ConfigError::UnknownKey {
                key: k.clone(),
                origin: "the command line".into(),
                known: known(),
            });
        };
        let source = Source::Flag(flag_name(k));
        merged.insert(k.clone(), typed(k, like, raw, &source)?);
        sources.insert(k.clone(), source);
    }
    let settings: Settings =
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: "(merged)".into(),
                why: e.to_string(),
            })?;
    let mut resolved = Resolved {
        settings,
        sources,
        secret: None,
        zk_digest: None,
    };
    resolved.validate()?;
    resolved.secret = resolved.read_secret("secret_file")?;
    resolved.zk_digest = resolved.read_secret("zk_digest_file")?;
    Ok(resolved)
}

impl Resolved {
    fn invalid(&self, key: &str, value: impl std::fmt::Display, allowed: &str) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            origin: self
                .sources
                .get(key)
                .map(ToString::to_string)
                .unwrap_or_else(|| "default".into()),
            allowed: allowed.into(),
        }
    }

    /// Every rule a value must follow; the first broken one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use election_core::names::{Namespace, ServiceId, ServiceType};
        let s = &self.settings;
        let range = |key: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(self.invalid(key, v, &format!("must be between {lo} and {hi}")))
            }
        };
        let pct = |key: &str, v: f64| {
            if (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(self.invalid(key, v, "a percentage: 0 to 100"))
            }
        };
        Namespace::new(s.ns.clone())
            .map_err(|e| self.invalid("ns", format!("{:?}", s.ns), &e.to_string()))?;
        ServiceType::new(s.service_type.clone())
            .map_err(|e| self.invalid("type", format!("{:?}", s.service_type), &e.to_string()))?;
        if s.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.invalid(
                "listen",
                format!("{:?}", s.listen),
                "an IP address and port, e.g. 127.0.0.1:6015",
            ));
        }
        let id = if s.id.is_empty() { &s.listen } else { &s.id };
        ServiceId::new(id.clone())
            .map_err(|e| self.invalid("id", format!("{id:?}"), &e.to_string()))?;
        if s.data_dir.is_empty() {
            return Err(self.invalid(
                "data_dir",
                "\"\"",
                "required: the directory of the base replicas (data_dir in the file, ELECTION_DATA_DIR or --data-dir)",
            ));
        }
        let hosts_ok = !s.zk.is_empty()
            && s.zk.split(',').all(|h| {
                h.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                })
            });
        if !hosts_ok {
            return Err(self.invalid(
                "zk",
                format!("{:?}", s.zk),
                "host:port[,host:port...] (put a chroot in zk_chroot)",
            ));
        }
        if !s.zk_chroot.is_empty()
            && (!s.zk_chroot.starts_with('/')
                || s.zk_chroot.ends_with('/')
                || s.zk_chroot.contains("//"))
        {
            return Err(self.invalid(
                "zk_chroot",
                format!("{:?}", s.zk_chroot),
                "empty, or an absolute path without a trailing /",
            ));
        }
        range("session_timeout_ms", s.session_timeout_ms, 500, 600_000)?;
        if s.disconnect_grace_ms != 0 {
            range(
                "disconnect_grace_ms",
                s.disconnect_grace_ms,
                100,
                s.session_timeout_ms,
            )
            .map_err(|_| {
                self.invalid(
                    "disconnect_grace_ms",
                    s.disconnect_grace_ms,
                    &format!(
                        "0 (automatic) or 100 to session_timeout_ms ({})",
                        s.session_timeout_ms
                    ),
                )
            })?;
        }
        range("wait_delay_ms", s.wait_delay_ms, 100, 600_000)?;
        range("pending_timeout_ms", s.pending_timeout_ms, 100, 3_600_000)?;
        range("getvers_attempts", u64::from(s.getvers_attempts), 1, 100)?;
        range("getvers_delay_ms", s.getvers_delay_ms, 1, 60_000)?;
        range("getvers_timeout_ms", s.getvers_timeout_ms, 10, 600_000)?;
        range("use_timeout_ms", s.use_timeout_ms, 10, 600_000)?;
        range("sync_timeout_ms", s.sync_timeout_ms, 100, 3_600_000)?;
        range("replicate_timeout_ms", s.replicate_timeout_ms, 10, 600_000)?;
        range("retry_failed_ms", s.retry_failed_ms, 1, 600_000)?;
        range("expire_none_s", s.expire_none_s, 1, 7 * 86_400)?;
        range(
            "max_elections_in_flight",
            s.max_elections_in_flight,
            1,
            10_000_000,
        )?;
        range("expire_slave_s", s.expire_slave_s, 1, 7 * 86_400)?;
        if s.expire_master_s <= s.expire_slave_s {
            return Err(self.invalid(
                "expire_master_s",
                s.expire_master_s,
                &format!(
                    "must exceed expire_slave_s ({}): idle slaves must leave first",
                    s.expire_slave_s
                ),
            ));
        }
        range("exit_budget_ms", s.exit_budget_ms, 100, 600_000)?;
        pct("min_avail_pct", s.min_avail_pct)?;
        pct("stop_writes_pct", s.stop_writes_pct)?;
        range("max_body_bytes", s.max_body_bytes, 1024, 16 << 20)?;
        range("max_queued_writes", s.max_queued_writes, 1, 1_000_000)?;
        range("pipeline_window", s.pipeline_window, 1, 64)?;
        range("max_batch_writes", s.max_batch_writes, 1, 1_024)?;
        if !(s.balance_rate > 0.0 && s.balance_rate <= 1000.0) {
            return Err(self.invalid(
                "balance_rate",
                s.balance_rate,
                "leaves per second: more than 0, at most 1000",
            ));
        }
        if crate::storage::Durability::parse(&s.durability).is_none() {
            return Err(self.invalid(
                "durability",
                format!("{:?}", s.durability),
                "process (a commit survives kill -9 of any process) or power (it also survives a power loss: an fsync per commit)",
            ));
        }
        if !matches!(s.log_format.as_str(), "human" | "json") {
            return Err(self.invalid("log_format", format!("{:?}", s.log_format), "human or json"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&s.log_filter) {
            return Err(self.invalid(
                "log_filter",
                format!("{:?}", s.log_filter),
                &format!("a tracing filter such as info,election_server=debug ({e})"),
            ));
        }
        if s.fault_slow_load_ms > 0 && !s.enable_fault_switches {
            return Err(self.invalid(
                "fault_slow_load_ms",
                s.fault_slow_load_ms,
                "a test-only fault: it needs enable_fault_switches",
            ));
        }
        Ok(())
    }

    /// The secret held by the file of `key`, if one is set: the first line.
    fn read_secret(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        let path = match key {
            "secret_file" => &self.settings.secret_file,
            _ => &self.settings.zk_digest_file,
        };
        if path.is_empty() {
            return Ok(None);
        }
        let secret = Secret::from_file(path).map_err(|why| {
            self.invalid(
                key,
                format!("{path:?}"),
                &format!("a readable file whose first line is the secret ({why})"),
            )
        })?;
        if key == "zk_digest_file" && !secret.expose().contains(':') {
            return Err(self.invalid(
                key,
                format!("{path:?}"),
                "a file whose first line is user:password",
            ));
        }
        Ok(Some(secret))
    }

    /// The effective configuration as TOML, each key with its source.
    /// Secrets are files: only their paths appear.
    pub fn render(&self) -> String {
        let table = toml::Table::try_from(&self.settings).unwrap_or_default();
        let mut out = String::from("# effective configuration of election-server (precedence: flag > environment > file > default)\n");
        for k in crate::cli::KEYS {
            let Some(v) = table.get(k.name) else { continue };
            let source = self.sources.get(k.name).cloned().unwrap_or(Source::Default);
            out.push_str(&format!("{} = {v}  # {source}\n", k.name));
        }
        out
    }
}

/// The disconnect grace period actually used. Elections must be reset well
/// before ZooKeeper can expire the session it granted, which may be shorter
/// than the one asked for (the server's maxSessionTimeout decides), so the
/// check at start-up against `session_timeout_ms` is not enough (issue 14,
/// Hm2). Automatic (0): half the negotiated timeout; a configured value is
/// capped at two thirds of it. `true` when it was capped.
pub fn effective_grace(configured_ms: u64, negotiated: Duration) -> (Duration, bool) {
    let cap = Duration::from_millis(negotiated.as_millis() as u64 * 2 / 3);
    match configured_ms {
        0 => (negotiated / 2, false),
        ms if Duration::from_millis(ms) > cap => (cap, true),
        ms => (Duration::from_millis(ms), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn flags(f: &[(&str, &str)]) -> Vec<(String, String)> {
        f.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> Option<(PathBuf, String)> {
        Some((PathBuf::from("/etc/election.toml"), text.to_string()))
    }

    #[test]
    fn every_key_has_a_typed_default_and_a_field() {
        let table = defaults_table();
        assert_eq!(table.len(), crate::cli::KEYS.len(), "no duplicate key");
        for k in crate::cli::KEYS {
            let shown = table[k.name].to_string();
            let raw = shown.trim_matches('"');
            assert!(
                raw == k.default || raw.parse::<f64>().ok() == k.default.parse().ok(),
                "{}: {shown}",
                k.name
            );
        }
        let mut t = table;
        t.insert("data_dir".into(), toml::Value::String("/d".into()));
        let s: Settings = toml::Value::Table(t)
            .try_into()
            .expect("every key is a field");
        assert_eq!(s.expire_slave_s, 210 * 60);
        assert_eq!(s.expire_master_s, 240 * 60);
    }

    #[test]
    fn precedence_is_flag_env_file_default() {
        let text = "data_dir = \"/d\"\nsession_timeout_ms = 3000\nwait_delay_ms = 4000\ngetvers_attempts = 7\n";
        let env = env_of(&[
            ("ELECTION_SESSION_TIMEOUT_MS", "5000"),
            ("ELECTION_WAIT_DELAY_MS", "6000"),
        ]);
        let r =
            resolve(file(text), &env, &flags(&[("session_timeout_ms", "9000")])).expect("valid");
        let s = &r.settings;
        assert_eq!(
            s.session_timeout_ms, 9000,
            "flag over environment over file"
        );
        assert_eq!(s.wait_delay_ms, 6000, "environment over file");
        assert_eq!(s.getvers_attempts, 7, "file over default");
        assert_eq!(s.pending_timeout_ms, 12_000, "default");
        assert_eq!(
            r.sources["session_timeout_ms"],
            Source::Flag("--session-timeout-ms".into())
        );
        assert_eq!(
            r.sources["wait_delay_ms"],
            Source::Env("ELECTION_WAIT_DELAY_MS".into())
        );
        assert_eq!(
            r.sources["getvers_attempts"],
            Source::File("/etc/election.toml".into())
        );
        assert_eq!(r.sources["pending_timeout_ms"], Source::Default);
        let shown = r.render();
        assert!(
            shown.contains("session_timeout_ms = 9000  # flag --session-timeout-ms"),
            "{shown}"
        );
        assert!(
            shown.contains("getvers_attempts = 7  # file /etc/election.toml"),
            "{shown}"
        );
    }

    #[test]
    fn aliases_sit_below_the_election_variables() {
        let env = env_of(&[
            ("OIO_NS", "ALIAS"),
            ("ELECTION_DATA_DIR", "/d"),
            ("OIO_ZOOKEEPER", "h:1"),
        ]);
        let r = resolve(None, &env, &[]).expect("valid");
        assert_eq!(
            (r.settings.ns.as_str(), r.settings.zk.as_str()),
            ("ALIAS", "h:1")
        );
        let env = env_of(&[
            ("OIO_NS", "ALIAS"),
            ("ELECTION_NS", "MINE"),
            ("ELECTION_DATA_DIR", "/d"),
        ]);
        assert_eq!(resolve(None, &env, &[]).expect("valid").settings.ns, "MINE");
    }

    /// Each rule, broken once: the message names the key, the value, the
    /// source and what is allowed.
    #[test]
    fn every_validation_error_names_key_value_source_and_rule() {
        let base = "data_dir = \"/d\"\n";
        let cases: &[(&str, &str)] = &[
            ("ns = \"bad ns!\"", "`ns` = \"bad ns!\" (from file /etc/election.toml)"),
            ("type = \"\"", "`type` = \"\""),
            ("listen = \"localhost\"", "`listen` = \"localhost\" (from file /etc/election.toml): an IP address and port"),
            ("id = \"\\n\"", "`id` ="),
            ("zk = \"h\"", "`zk` = \"h\" (from file /etc/election.toml): host:port[,host:port...]"),
            ("zk = \"h:1,h:0\"", "`zk` = \"h:1,h:0\""),
            ("zk_chroot = \"x\"", "`zk_chroot` = \"x\""),
            ("zk_chroot = \"/x/\"", "`zk_chroot` = \"/x/\""),
            ("session_timeout_ms = 10", "`session_timeout_ms` = 10 (from file /etc/election.toml): must be between 500 and 600000"),
            ("disconnect_grace_ms = 20000", "`disconnect_grace_ms` = 20000 (from file /etc/election.toml): 0 (automatic) or 100 to session_timeout_ms (10000)"),
            ("wait_delay_ms = 0", "`wait_delay_ms` = 0"),
            ("pending_timeout_ms = 1", "`pending_timeout_ms` = 1"),
            ("getvers_attempts = 0", "`getvers_attempts` = 0"),
            ("getvers_delay_ms = 0", "`getvers_delay_ms` = 0"),
            ("getvers_timeout_ms = 1", "`getvers_timeout_ms` = 1"),
            ("use_timeout_ms = 1", "`use_timeout_ms` = 1"),
            ("sync_timeout_ms = 1", "`sync_timeout_ms` = 1"),
            ("replicate_timeout_ms = 1", "`replicate_timeout_ms` = 1"),
            ("retry_failed_ms = 0", "`retry_failed_ms` = 0"),
            ("expire_none_s = 0", "`expire_none_s` = 0"),
            (
                "max_elections_in_flight = 0",
                "`max_elections_in_flight` = 0",
            ),
            ("expire_slave_s = 0", "`expire_slave_s` = 0"),
            ("expire_master_s = 60\nexpire_slave_s = 60", "`expire_master_s` = 60 (from file /etc/election.toml): must exceed expire_slave_s (60)"),
            ("exit_budget_ms = 5", "`exit_budget_ms` = 5"),
            ("min_avail_pct = 101", "`min_avail_pct` = 101 (from file /etc/election.toml): a percentage: 0 to 100"),
            ("stop_writes_pct = -1", "`stop_writes_pct` = -1"),
            ("max_body_bytes = 10", "`max_body_bytes` = 10"),
            ("balance_rate = 0", "`balance_rate` = 0"),
            ("log_format = \"xml\"", "`log_format` = \"xml\" (from file /etc/election.toml): human or json"),
            ("log_filter = \"info,=[\"", "`log_filter` ="),
            ("fault_slow_load_ms = 5", "`fault_slow_load_ms` = 5 (from file /etc/election.toml): a test-only fault: it needs enable_fault_switches"),
            ("secret_file = \"/nonexistent/secret\"", "`secret_file` = \"/nonexistent/secret\" (from file /etc/election.toml): a readable file"),
            ("zk_digest_file = \"/nonexistent/digest\"", "`zk_digest_file` = \"/nonexistent/digest\""),
            ("session_timeout_ms = \"ten\"", "`session_timeout_ms` = \"ten\" (from file /etc/election.toml): expected a value of type integer"),
            ("no_such_key = 1", "unknown key `no_such_key` in file /etc/election.toml; known keys: ns, type,"),
        ];
        for (line, expected) in cases {
            let err = resolve(file(&format!("{base}{line}\n")), &env_of(&[]), &[]).expect_err(line);
            assert!(err.to_string().contains(expected), "{line}: {err}");
        }
        let err = resolve(None, &env_of(&[]), &[]).expect_err("no data_dir");
        assert!(
            err.to_string()
                .contains("`data_dir` = \"\" (from default): required"),
            "{err}"
        );
        let err = resolve(file("data_dir = [1"), &env_of(&[]), &[]).expect_err("syntax");
        assert!(
            err.to_string()
                .starts_with("invalid configuration file /etc/election.toml"),
            "{err}"
        );
        let env = env_of(&[
            ("ELECTION_DATA_DIR", "/d"),
            ("ELECTION_WAIT_DELAY_MS", "soon"),
        ]);
        let err = resolve(None, &env, &[]).expect_err("env");
        assert_eq!(
            err.to_string(),
            "invalid configuration: `wait_delay_ms` = \"soon\" (from environment ELECTION_WAIT_DELAY_MS): expected a whole number >= 0"
        );
        let err =
            resolve(file(base), &env_of(&[]), &flags(&[("no_master", "maybe")])).expect_err("flag");
        assert_eq!(
            err.to_string(),
            "invalid configuration: `no_master` = \"maybe\" (from flag --no-master): expected true or false"
        );
    }

    #[test]
    fn the_grace_fits_the_negotiated_session() {
        let five = Duration::from_secs(5);
        assert_eq!(
            effective_grace(0, five),
            (Duration::from_millis(2_500), false)
        );
        assert_eq!(
            effective_grace(3_000, five),
            (Duration::from_secs(3), false)
        );
        // Valid against the 60 s asked for, not against the 5 s granted.
        assert_eq!(
            effective_grace(30_000, five),
            (Duration::from_millis(3_333), true)
        );
    }

    #[test]
    fn secrets_come_from_files_and_are_never_rendered() {
        let dir = std::env::temp_dir().join(format!("cfg-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cr3t-value\n").expect("write");
        let text = format!(
            "data_dir = \"/d\"\nsecret_file = {:?}\n",
            secret.display().to_string()
        );
        let r = resolve(file(&text), &env_of(&[]), &[]).expect("valid");
        assert_eq!(r.secret.as_ref().map(Secret::expose), Some("s3cr3t-value"));
        assert!(
            !format!("{r:?}").contains("s3cr3t-value"),
            "Debug redacts it"
        );
        assert!(!r.render().contains("s3cr3t-value"));
        std::fs::write(&secret, "\n").expect("write");
        let err = resolve(file(&text), &env_of(&[]), &[]).expect_err("empty secret");
        assert!(
            err.to_string().contains("first line is the secret"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
