//! Conformance scenarios: the behaviours of ZooKeeper the simulation relies
//! on, written against a small [`Coordinator`] interface. Each scenario
//! returns a trace; the same scenario run against [`ModelCoordinator`] and
//! against a real ZooKeeper (tests/tests/conformance.rs) must give the same
//! trace, and each trace is also checked against what ZooKeeper documents.

use crate::zk::{Fired, SessionId, WatchKind, ZkError, ZkModel};
use std::collections::BTreeMap;

/// The subset of a ZooKeeper client used by the scenarios. Sessions are
/// handles returned by [`Coordinator::open`]; errors are ZooKeeper's names
/// (`NoNode`, `NodeExists`, `NotEmpty`, `SessionExpired`).
pub trait Coordinator {
    fn open(&mut self) -> usize;
    /// Ends a session as a crash would after expiry (its ephemerals vanish).
    fn expire(&mut self, h: usize);
    fn mkdir(&mut self, h: usize, path: &str) -> Result<(), String>;
    /// EPHEMERAL|SEQUENTIAL `<prefix><seq>`; returns the child's name.
    fn create_seq(&mut self, h: usize, prefix: &str, data: &[u8]) -> Result<String, String>;
    /// A plain ephemeral node.
    fn create(&mut self, h: usize, path: &str, data: &[u8]) -> Result<(), String>;
    fn delete(&mut self, h: usize, path: &str) -> Result<(), String>;
    /// Sorted child names.
    fn children(&mut self, h: usize, dir: &str) -> Result<Vec<String>, String>;
    /// Data, and whether the node is an ephemeral of session `h`.
    fn get(&mut self, h: usize, path: &str) -> Result<Option<(Vec<u8>, bool)>, String>;
    /// `exists` with a one-shot watch; returns whether the node exists.
    fn watch(&mut self, h: usize, path: &str) -> Result<bool, String>;
    /// Notifications received by `h` since the last call, sorted:
    /// `deleted <path>` / `created <path>`.
    fn events(&mut self, h: usize) -> Vec<String>;
}

pub type Scenario = fn(&mut dyn Coordinator, &str) -> Vec<String>;

/// Every scenario, by name. `root` is an existing, empty persistent node.
pub fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        (
            "sequence numbers count creations, not deletions",
            seq_numbers,
        ),
        (
            "ephemerals vanish with their session, watchers hear it",
            ephemeral_expiry,
        ),
        ("watches fire once", one_shot),
        (
            "exists-watch on a missing node fires on creation",
            watch_missing,
        ),
        ("ephemeral owner is visible", ownership),
        ("errors", errors),
        ("any session may delete another's ephemeral", foreign_delete),
    ]
}

fn r<T: std::fmt::Debug>(x: Result<T, String>) -> String {
    match x {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("err {e}"),
    }
}

fn seq_numbers(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let h = c.open();
    let dir = format!("{root}/g");
    t.push(r(c.mkdir(h, &dir)));
    let prefix = format!("{dir}/K-");
    for _ in 0..3 {
        t.push(r(c.create_seq(h, &prefix, b"a")));
    }
    t.push(r(c.delete(h, &format!("{dir}/K-0000000001"))));
    t.push(r(c.create_seq(h, &prefix, b"a")));
    t.push(r(c.create(h, &format!("{dir}/plain"), b"p")));
    t.push(r(c.create_seq(h, &prefix, b"a")));
    t.push(r(c.children(h, &dir)));
    t
}

fn ephemeral_expiry(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b) = (c.open(), c.open());
    let dir = format!("{root}/e");
    t.push(r(c.mkdir(a, &dir)));
    let name = c
        .create_seq(a, &format!("{dir}/K-"), b"a")
        .unwrap_or_default();
    let path = format!("{dir}/{name}");
    t.push(r(c.watch(b, &path)));
    c.expire(a);
    t.push(format!("{:?}", c.events(b)));
    t.push(r(c.children(b, &dir)));
    t
}

fn one_shot(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b) = (c.open(), c.open());
    let dir = format!("{root}/o");
    t.push(r(c.mkdir(a, &dir)));
    let path = format!("{dir}/n");
    t.push(r(c.create(a, &path, b"1")));
    t.push(r(c.watch(b, &path)));
    t.push(r(c.delete(a, &path)));
    t.push(format!("{:?}", c.events(b)));
    t.push(r(c.create(a, &path, b"2")));
    t.push(r(c.delete(a, &path)));
    t.push(format!("{:?}", c.events(b)));
    t
}

fn watch_missing(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b) = (c.open(), c.open());
    let dir = format!("{root}/m");
    t.push(r(c.mkdir(a, &dir)));
    let path = format!("{dir}/later");
    t.push(r(c.watch(b, &path)));
    t.push(r(c.create(a, &path, b"x")));
    t.push(format!("{:?}", c.events(b)));
    t
}

fn ownership(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b) = (c.open(), c.open());
    let dir = format!("{root}/w");
    t.push(r(c.mkdir(a, &dir)));
    let name = c
        .create_seq(a, &format!("{dir}/K-"), b"svc-a")
        .unwrap_or_default();
    let path = format!("{dir}/{name}");
    t.push(r(c.get(a, &path)));
    t.push(r(c.get(b, &path)));
    t.push(r(c.get(b, &format!("{dir}/none"))));
    t
}

fn errors(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let a = c.open();
    let dir = format!("{root}/x");
    t.push(r(c.mkdir(a, &dir)));
    t.push(r(c.delete(a, &format!("{dir}/none"))));
    t.push(r(c.create(a, &format!("{dir}/n"), b"1")));
    t.push(r(c.create(a, &format!("{dir}/n"), b"1")));
    t.push(r(c.children(a, &format!("{dir}/missing"))));
    t.push(r(c.create_seq(a, &format!("{dir}/missing/K-"), b"1")));
    t.push(r(c.create(a, &format!("{dir}/missing/n"), b"1")));
    t
}

fn foreign_delete(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b) = (c.open(), c.open());
    let dir = format!("{root}/f");
    t.push(r(c.mkdir(a, &dir)));
    let name = c
        .create_seq(a, &format!("{dir}/K-"), b"a")
        .unwrap_or_default();
    let path = format!("{dir}/{name}");
    t.push(r(c.watch(a, &path)));
    t.push(r(c.delete(b, &path)));
    t.push(format!("{:?}", c.events(a)));
    t.push(r(c.children(a, &dir)));
    t
}

/// The scenarios over [`ZkModel`].
#[derive(Default)]
pub struct ModelCoordinator {
    zk: ZkModel,
    sessions: Vec<SessionId>,
    events: BTreeMap<SessionId, Vec<String>>,
}

impl ModelCoordinator {
    pub fn new(root: &str) -> Self {
        let mut zk = ZkModel::new();
        let mut prefix = String::new();
        for part in root.split('/').filter(|p| !p.is_empty()) {
            prefix = format!("{prefix}/{part}");
            zk.ensure_dir(&prefix);
        }
        Self {
            zk,
            ..Self::default()
        }
    }

    fn route(&mut self, fired: Vec<Fired>) {
        for f in fired {
            let what = match f.kind {
                WatchKind::Created => "created",
                WatchKind::Deleted => "deleted",
            };
            self.events
                .entry(f.session)
                .or_default()
                .push(format!("{what} {}", f.path));
        }
    }
}

fn name(e: ZkError) -> String {
    format!("{e:?}")
}

impl Coordinator for ModelCoordinator {
    fn open(&mut self) -> usize {
        let s = self.zk.open_session(0, u64::MAX / 2);
        self.sessions.push(s);
        self.sessions.len() - 1
    }

    fn expire(&mut self, h: usize) {
        let fired = self.zk.close_session(self.sessions[h]);
        self.route(fired);
    }

    fn mkdir(&mut self, h: usize, path: &str) -> Result<(), String> {
        let fired = self
            .zk
            .create(self.sessions[h], path, b"", false)
            .map_err(name)?;
        self.zk.ensure_dir(path);
        self.route(fired);
        Ok(())
    }

    fn create_seq(&mut self, h: usize, prefix: &str, data: &[u8]) -> Result<String, String> {
        let (dir, p) = prefix.rsplit_once('/').ok_or("NoNode")?;
        let (n, _) = self
            .zk
            .create_seq(self.sessions[h], dir, p, data, true)
            .map_err(name)?;
        Ok(n)
    }

    fn create(&mut self, h: usize, path: &str, data: &[u8]) -> Result<(), String> {
        let fired = self
            .zk
            .create(self.sessions[h], path, data, true)
            .map_err(name)?;
        self.route(fired);
        Ok(())
    }

    fn delete(&mut self, h: usize, path: &str) -> Result<(), String> {
        let fired = self.zk.delete(self.sessions[h], path).map_err(name)?;
        self.route(fired);
        Ok(())
    }

    fn children(&mut self, h: usize, dir: &str) -> Result<Vec<String>, String> {
        let mut c = self.zk.children(self.sessions[h], dir).map_err(name)?;
        c.sort();
        Ok(c)
    }

    fn get(&mut self, h: usize, path: &str) -> Result<Option<(Vec<u8>, bool)>, String> {
        Ok(self
            .zk
            .get(path)
            .map(|n| (n.data.clone(), n.owner == self.sessions[h])))
    }

    fn watch(&mut self, h: usize, path: &str) -> Result<bool, String> {
        self.zk
            .read_and_watch(self.sessions[h], path)
            .map(|n| n.is_some())
            .map_err(name)
    }

    fn events(&mut self, h: usize) -> Vec<String> {
        let mut e = self.events.remove(&self.sessions[h]).unwrap_or_default();
        e.sort();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ZooKeeper documents, checked on the model (the real-server run
    /// in tests/tests/conformance.rs compares the whole traces).
    #[test]
    fn the_model_behaves_as_documented() {
        let root = "/conf";
        let traces: BTreeMap<&str, Vec<String>> = scenarios()
            .into_iter()
            .map(|(n, f)| (n, f(&mut ModelCoordinator::new(root), root)))
            .collect();
        let seq = &traces["sequence numbers count creations, not deletions"];
        assert_eq!(seq[1], "ok \"K-0000000000\"");
        assert_eq!(seq[3], "ok \"K-0000000002\"");
        assert_eq!(seq[5], "ok \"K-0000000003\"", "a deletion does not count");
        assert_eq!(seq[7], "ok \"K-0000000005\"", "a plain child counts");
        let exp = &traces["ephemerals vanish with their session, watchers hear it"];
        assert!(exp[2].contains("deleted /conf/e/K-0000000000"), "{exp:?}");
        assert_eq!(exp[3], "ok []");
        let once = &traces["watches fire once"];
        assert_eq!(once[4], "[\"deleted /conf/o/n\"]");
        assert_eq!(once[7], "[]");
        let missing = &traces["exists-watch on a missing node fires on creation"];
        assert_eq!(missing[1], "ok false");
        assert_eq!(missing[3], "[\"created /conf/m/later\"]");
        let own = &traces["ephemeral owner is visible"];
        assert_eq!(own[1], "ok Some(([115, 118, 99, 45, 97], true))");
        assert_eq!(own[2], "ok Some(([115, 118, 99, 45, 97], false))");
        assert_eq!(own[3], "ok None");
        let errs = &traces["errors"];
        assert_eq!(
            errs[1..],
            [
                "err NoNode",
                "ok ()",
                "err NodeExists",
                "err NoNode",
                "err NoNode",
                "err NoNode"
            ]
        );
        let foreign = &traces["any session may delete another's ephemeral"];
        assert_eq!(foreign[2], "ok ()");
        assert_eq!(foreign[4], "ok []");
    }
}
