//! Where the CLI finds the namespace's ZooKeeper: `--zookeeper` >
//! `OIO_ZOOKEEPER` (both through clap) > the `[<NS>]` section, key
//! `zookeeper`, of `/etc/oio/sds.conf.d/*`, `/etc/oio/sds.conf`,
//! `~/.oio/sds.conf` (later files win).

use election_core::names::Namespace;
use std::path::PathBuf;

pub fn zookeeper_hosts(flag_or_env: Option<&str>, ns: &Namespace) -> anyhow::Result<String> {
    if let Some(z) = flag_or_env {
        return Ok(z.to_string());
    }
    let mut files: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/oio/sds.conf.d") {
        let mut v: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        v.sort();
        files.extend(v);
    }
    files.push(PathBuf::from("/etc/oio/sds.conf"));
    if let Some(home) = std::env::var_os("HOME") {
        files.push(PathBuf::from(home).join(".oio/sds.conf"));
    }
    let mut found = None;
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            if let Some(v) = ini_value(&text, ns.as_str(), "zookeeper") {
                found = Some(v);
            }
        }
    }
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "no ZooKeeper known for namespace {ns}: pass --zookeeper HOST:PORT, set OIO_ZOOKEEPER, \
             or add `zookeeper=HOST:PORT` to the [{ns}] section of ~/.oio/sds.conf"
        )
    })
}

pub fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    let mut out = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            in_section = &line[1..line.len() - 1] == section;
        } else if in_section && !line.starts_with('#') && !line.starts_with(';') {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    out = Some(v.trim().to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_lookup() {
        let text =
            "[OTHER]\nzookeeper=1.1.1.1:1\n[OPENIO]\n# zookeeper=no\nzookeeper = 127.0.0.1:2181\n";
        assert_eq!(
            ini_value(text, "OPENIO", "zookeeper").as_deref(),
            Some("127.0.0.1:2181")
        );
        assert_eq!(ini_value(text, "NOPE", "zookeeper"), None);
    }

    #[test]
    fn flag_wins() {
        let ns = Namespace::new("OPENIO").expect("ns");
        assert_eq!(zookeeper_hosts(Some("h:1"), &ns).expect("flag"), "h:1");
    }
}
