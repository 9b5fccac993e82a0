//! An in-memory model of the parts of ZooKeeper the elections use: sessions
//! with server-side expiry, persistent and ephemeral nodes, sequential names
//! from the parent's child version, and one-shot watches.
//!
//! It is synchronous: the world decides when a request reaches the server
//! and when answers and notifications reach the client. Its fidelity is
//! checked by the conformance scenarios in [`crate::conformance`], which run
//! against this model and against a real ZooKeeper.

use std::collections::{BTreeMap, BTreeSet};

pub type SessionId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkError {
    NoNode,
    NodeExists,
    NotEmpty,
    SessionExpired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Vec<u8>,
    /// The owning session of an ephemeral node, 0 for a persistent one.
    pub owner: SessionId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// When the server last heard from the client (µs).
    pub last_heard: u64,
    pub timeout_us: u64,
    pub expired: bool,
}

/// A watch that fired: deliver to `session`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub session: SessionId,
    pub path: String,
    pub kind: WatchKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchKind {
    Created,
    Deleted,
}

#[derive(Debug, Clone, Default)]
struct Dir {
    /// The counter sequential children are named after: bumped by every
    /// child creation, not by deletions (checked against ZooKeeper 3.8 by
    /// the conformance suite, which caught the model bumping it on both).
    cversion: i32,
    children: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, Default)]
pub struct ZkModel {
    dirs: BTreeMap<String, Dir>,
    sessions: BTreeMap<SessionId, Session>,
    next_session: SessionId,
    /// Path → sessions holding a one-shot watch on it.
    watches: BTreeMap<String, BTreeSet<SessionId>>,
}

fn split(path: &str) -> Option<(&str, &str)> {
    path.rsplit_once('/')
}

impl ZkModel {
    pub fn new() -> Self {
        Self {
            next_session: 0x1000,
            ..Self::default()
        }
    }

    pub fn open_session(&mut self, now: u64, timeout_us: u64) -> SessionId {
        self.next_session += 1;
        self.sessions.insert(
            self.next_session,
            Session {
                last_heard: now,
                timeout_us,
                expired: false,
            },
        );
        self.next_session
    }

    pub fn session(&self, s: SessionId) -> Option<&Session> {
        self.sessions.get(&s)
    }

    pub fn is_live(&self, s: SessionId) -> bool {
        self.sessions.get(&s).is_some_and(|x| !x.expired)
    }

    /// A request or ping from the client reached the server.
    pub fn touch(&mut self, s: SessionId, now: u64) {
        if let Some(x) = self.sessions.get_mut(&s) {
            if !x.expired {
                x.last_heard = x.last_heard.max(now);
            }
        }
    }

    /// A restarted server counts every session's timeout from its restart.
    pub fn restarted(&mut self, now: u64) {
        for x in self.sessions.values_mut() {
            x.last_heard = x.last_heard.max(now);
        }
    }

    /// Expires the sessions not heard from within their timeout.
    pub fn expire_due(&mut self, now: u64) -> (Vec<SessionId>, Vec<Fired>) {
        let due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, x)| !x.expired && now.saturating_sub(x.last_heard) > x.timeout_us)
            .map(|(s, _)| *s)
            .collect();
        let mut fired = Vec::new();
        for s in &due {
            fired.extend(self.close_session(*s));
        }
        (due, fired)
    }

    /// Ends a session (expiry or close): its ephemeral nodes go, its watches
    /// are forgotten.
    pub fn close_session(&mut self, s: SessionId) -> Vec<Fired> {
        if let Some(x) = self.sessions.get_mut(&s) {
            x.expired = true;
        }
        for set in self.watches.values_mut() {
            set.remove(&s);
        }
        let owned: Vec<String> = self
            .dirs
            .iter()
            .flat_map(|(d, dir)| {
                dir.children
                    .iter()
                    .filter(|(_, n)| n.owner == s)
                    .map(move |(name, _)| format!("{d}/{name}"))
            })
            .collect();
        let mut fired = Vec::new();
        for path in owned {
            fired.extend(self.remove(&path));
        }
        fired
    }

    fn check(&self, s: SessionId) -> Result<(), ZkError> {
        if self.is_live(s) {
            Ok(())
        } else {
            Err(ZkError::SessionExpired)
        }
    }

    pub fn ensure_dir(&mut self, dir: &str) {
        self.dirs.entry(dir.to_string()).or_default();
    }

    /// A directory's child version: how many children it ever had.
    pub fn cversion(&self, dir: &str) -> i32 {
        self.dirs.get(dir).map_or(0, |d| d.cversion)
    }

    /// Sets a directory's child version (to exercise sequence wrap-around).
    pub fn set_cversion(&mut self, dir: &str, v: i32) {
        self.dirs.entry(dir.to_string()).or_default().cversion = v;
    }

    /// EPHEMERAL|SEQUENTIAL (or PERSISTENT|SEQUENTIAL when `ephemeral` is
    /// false) child `<prefix><seq>` of `dir`; returns the name and the owner.
    pub fn create_seq(
        &mut self,
        s: SessionId,
        dir: &str,
        prefix: &str,
        data: &[u8],
        ephemeral: bool,
    ) -> Result<(String, i32), ZkError> {
        self.check(s)?;
        let d = self.dirs.get_mut(dir).ok_or(ZkError::NoNode)?;
        let seq = d.cversion;
        // Java's `%010d`: a negative value keeps its sign within the width.
        let name = if seq < 0 {
            format!("{prefix}-{:09}", i64::from(seq).unsigned_abs())
        } else {
            format!("{prefix}{seq:010}")
        };
        d.cversion = d.cversion.wrapping_add(1);
        d.children.insert(
            name.clone(),
            Node {
                data: data.to_vec(),
                owner: if ephemeral { s } else { 0 },
            },
        );
        // A sequential name is new: nobody can be watching it yet.
        Ok((name, seq))
    }

    /// A plain child (no sequence).
    pub fn create(
        &mut self,
        s: SessionId,
        path: &str,
        data: &[u8],
        ephemeral: bool,
    ) -> Result<Vec<Fired>, ZkError> {
        self.check(s)?;
        let (dir, name) = split(path).ok_or(ZkError::NoNode)?;
        let d = self.dirs.get_mut(dir).ok_or(ZkError::NoNode)?;
        if d.children.contains_key(name) {
            return Err(ZkError::NodeExists);
        }
        d.cversion = d.cversion.wrapping_add(1);
        d.children.insert(
            name.to_string(),
            Node {
                data: data.to_vec(),
                owner: if ephemeral { s } else { 0 },
            },
        );
        Ok(self.fire(path, WatchKind::Created))
    }

    pub fn delete(&mut self, s: SessionId, path: &str) -> Result<Vec<Fired>, ZkError> {
        self.check(s)?;
        if self.get(path).is_none() {
            return Err(ZkError::NoNode);
        }
        Ok(self.remove(path))
    }

    fn remove(&mut self, path: &str) -> Vec<Fired> {
        let Some((dir, name)) = split(path) else {
            return Vec::new();
        };
        if let Some(d) = self.dirs.get_mut(dir) {
            if d.children.remove(name).is_some() {
                return self.fire(path, WatchKind::Deleted);
            }
        }
        Vec::new()
    }

    fn fire(&mut self, path: &str, kind: WatchKind) -> Vec<Fired> {
        self.watches
            .remove(path)
            .unwrap_or_default()
            .into_iter()
            .map(|session| Fired {
                session,
                path: path.to_string(),
                kind,
            })
            .collect()
    }

    pub fn children(&self, s: SessionId, dir: &str) -> Result<Vec<String>, ZkError> {
        self.check(s)?;
        let d = self.dirs.get(dir).ok_or(ZkError::NoNode)?;
        Ok(d.children.keys().cloned().collect())
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        let (dir, name) = split(path)?;
        self.dirs.get(dir)?.children.get(name)
    }

    /// `exists` or `get` with a watch: answers the node, and leaves a
    /// one-shot watch that fires on its deletion (or creation, if absent).
    pub fn read_and_watch(&mut self, s: SessionId, path: &str) -> Result<Option<Node>, ZkError> {
        self.check(s)?;
        self.watches.entry(path.to_string()).or_default().insert(s);
        Ok(self.get(path).cloned())
    }

    /// Every child of `dir`, for checks.
    pub fn nodes(&self, dir: &str) -> Vec<(String, Node)> {
        self.dirs
            .get(dir)
            .map(|d| {
                d.children
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}
