//! Conformance scenarios: the behaviours of ZooKeeper the simulation relies
//! on, written against a small [`Coordinator`] interface. Each scenario
//! returns a trace; the same scenario run against [`ModelCoordinator`] and
//! against a real ZooKeeper (tests/tests/conformance.rs) must give the same
//! trace, and each trace is also checked against what ZooKeeper documents.
//!
//! Time is counted in session timeouts (`T`), so that the scenarios say the
//! same thing on the model's virtual clock and on a real server whatever its
//! tick. What a scenario records about time is a bound that holds however
//! slow the machine is (a node vanished *no earlier* than `T` after a given
//! instant) or one with a margin of a large fraction of `T`.

use crate::zk::{Fired, SessionId, WatchKind, ZkError, ZkModel};
use std::collections::{BTreeMap, BTreeSet};

/// The subset of a ZooKeeper client used by the scenarios. Sessions are
/// handles returned by [`Coordinator::open`]; errors are ZooKeeper's names
/// (`NoNode`, `NodeExists`, `NotEmpty`, `SessionExpired`).
pub trait Coordinator {
    fn open(&mut self) -> usize;
    /// Closes the session (the client says goodbye): its ephemerals vanish
    /// at once.
    fn close(&mut self, h: usize);
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
    /// Notifications received by `h` for changes made before this call,
    /// sorted: `deleted <path>` / `created <path>`.
    fn events(&mut self, h: usize) -> Vec<String>;

    /// Now, in session timeouts since the coordinator started.
    fn now(&mut self) -> f64;
    /// Lets time pass until `t`: every client that is not paused keeps its
    /// session alive (pings), and ZooKeeper expires the sessions it no
    /// longer hears from.
    fn sleep_until(&mut self, t: f64);
    /// The client of `h` goes silent: no request and no ping until
    /// [`Coordinator::resume`]. Its connection stays open.
    fn pause(&mut self, h: usize);
    /// The client of `h` speaks again, reconnecting to its session if its
    /// connection is gone; `Err("SessionExpired")` if ZooKeeper expired the
    /// session meanwhile.
    fn resume(&mut self, h: usize) -> Result<(), String>;
    /// ZooKeeper stops (kill -9), stays down for `outage` session timeouts
    /// and starts again with its data; returns once it serves. The clients
    /// that are not paused reconnect at once.
    fn restart_zk(&mut self, outage: f64);
    /// `getData` with a watch from `h`, sent without waiting for its reply.
    fn send_read_watch(&mut self, h: usize, path: &str);
    /// What `h` receives, in arrival order, up to the reply to the read sent
    /// by [`Coordinator::send_read_watch`] and then to one more request:
    /// `reply present` / `reply absent`, and notifications as in
    /// [`Coordinator::events`].
    fn receive(&mut self, h: usize) -> Vec<String>;
    /// A remark for whoever watches the run (not part of the trace).
    fn note(&mut self, _what: &str) {}
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
            "ephemerals vanish when their session closes, watchers hear it",
            ephemeral_close,
        ),
        ("watches fire once", one_shot),
        (
            "exists-watch on a missing node fires on creation",
            watch_missing,
        ),
        ("ephemeral owner is visible", ownership),
        ("errors", errors),
        ("any session may delete another's ephemeral", foreign_delete),
        (
            "a silent client's session expires one timeout after its last packet",
            silent_expiry,
        ),
        (
            "session timeouts count from a ZooKeeper restart",
            restart_timeouts,
        ),
        (
            "a notification never overtakes the reply that set its watch",
            no_overtaking,
        ),
    ]
}

/// How often a condition is probed while polling, in session timeouts.
pub const POLL: f64 = 0.05;

/// Probes every [`POLL`] until `probe` holds or `until` has passed;
/// returns when it held, measured after the probe's answer (so no earlier
/// than the moment ZooKeeper answered it).
fn poll(
    c: &mut dyn Coordinator,
    until: f64,
    mut probe: impl FnMut(&mut dyn Coordinator) -> bool,
) -> Option<f64> {
    loop {
        if probe(c) {
            return Some(c.now());
        }
        let now = c.now();
        if now >= until {
            return None;
        }
        c.sleep_until((now + POLL).min(until));
    }
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

fn ephemeral_close(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b) = (c.open(), c.open());
    let dir = format!("{root}/e");
    t.push(r(c.mkdir(a, &dir)));
    let name = c
        .create_seq(a, &format!("{dir}/K-"), b"a")
        .unwrap_or_default();
    let path = format!("{dir}/{name}");
    t.push(r(c.watch(b, &path)));
    c.close(a);
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

/// A client stops sending anything, its connection left open (a paused or
/// hung process): ZooKeeper expires its session one timeout after the last
/// packet it heard, deletes its ephemerals, fires the other sessions'
/// watches, and refuses the session when the client comes back.
fn silent_expiry(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b) = (c.open(), c.open());
    let dir = format!("{root}/s");
    t.push(r(c.mkdir(b, &dir)));
    let name = c
        .create_seq(a, &format!("{dir}/K-"), b"a")
        .unwrap_or_default();
    let path = format!("{dir}/{name}");
    // a's last packet is sent after `last`: its session cannot expire before
    // `last + 1`.
    let last = c.now();
    t.push(r(c.create(a, &format!("{dir}/plain"), b"p")));
    c.pause(a);
    t.push(r(c.watch(b, &path)));
    c.sleep_until(last + 0.5);
    t.push(format!(
        "half a timeout later: {} {}",
        r(c.get(b, &path)),
        r(c.children(b, &dir))
    ));
    t.push(format!("{:?}", c.events(b)));
    let gone = poll(c, last + 3.0, |c| matches!(c.get(b, &path), Ok(None)));
    c.note(&format!(
        "gone {:?} T after the last packet",
        gone.map(|g| g - last)
    ));
    t.push(format!(
        "gone no earlier than one timeout after the last packet: {}",
        gone.is_some_and(|g| g - last >= 1.0)
    ));
    t.push(format!(
        "gone within two timeouts: {}",
        gone.is_some_and(|g| g - last <= 2.0)
    ));
    t.push(format!("{:?}", c.events(b)));
    t.push(r(c.children(b, &dir)));
    t.push(format!("the silent client comes back: {}", r(c.resume(a))));
    t.push(r(c.children(a, &dir)));
    t.push(r(c.create(a, &format!("{dir}/again"), b"a")));
    t
}

/// How long ZooKeeper is down in [`restart_timeouts`], in session timeouts.
const OUTAGE: f64 = 0.75;

/// Two clients go silent just before ZooKeeper goes down for 3/4 of a
/// timeout. Counted from their last packets, both sessions would be gone a
/// quarter of a timeout after the restart. ZooKeeper counts from the
/// restart: the client that comes back half a timeout after it keeps its
/// session and its node; the other one's session expires one timeout after
/// the restart. A third client stays connected throughout (it reconnects as
/// soon as ZooKeeper is back).
fn restart_timeouts(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b, w) = (c.open(), c.open(), c.open());
    let dir = format!("{root}/r");
    let (pa, pb) = (format!("{dir}/a"), format!("{dir}/b"));
    t.push(r(c.mkdir(w, &dir)));
    t.push(r(c.create(a, &pa, b"a")));
    c.pause(a);
    t.push(r(c.create(b, &pb, b"b")));
    c.pause(b);
    let down = c.now();
    c.restart_zk(OUTAGE);
    // The server cannot have started before `restarted`; it serves from `up`.
    let (restarted, up) = (down + OUTAGE, c.now());
    c.sleep_until(up + 0.5);
    t.push(format!(
        "b comes back half a timeout after the restart: {}",
        r(c.resume(b))
    ));
    t.push(r(c.children(w, &dir)));
    let gone = poll(c, up + 3.0, |c| matches!(c.get(w, &pa), Ok(None)));
    c.note(&format!(
        "served {:.2} T after the outage began, a's node gone {:?} T after that",
        up - down,
        gone.map(|g| g - up)
    ));
    t.push(format!(
        "a's node gone no earlier than one timeout after the restart: {}",
        gone.is_some_and(|g| g - restarted >= 1.0)
    ));
    t.push(format!(
        "a's node gone within two timeouts of the restart: {}",
        gone.is_some_and(|g| g - up <= 2.0)
    ));
    t.push(r(c.children(w, &dir)));
    t.push(r(c.get(b, &pb)));
    t.push(format!("a comes back: {}", r(c.resume(a))));
    t.push(r(c.children(a, &dir)));
    t
}

/// Rounds of [`no_overtaking`].
const ROUNDS: usize = 20;

/// One session reads a node with a watch; another deletes the node at once,
/// without waiting for that read's reply. When the read was served first,
/// its reply must reach the reader before the notification of the deletion.
/// When the deletion was served first, the read answers "absent" and sets no
/// watch; which one ZooKeeper serves first is a race, so the trace records
/// that some round had the read first, and that no round at all saw the
/// notification first.
fn no_overtaking(c: &mut dyn Coordinator, root: &str) -> Vec<String> {
    let mut t = Vec::new();
    let (a, b) = (c.open(), c.open());
    let dir = format!("{root}/n");
    t.push(r(c.mkdir(a, &dir)));
    let (mut after, mut overtaken, mut unwatched) = (0, 0, 0);
    let mut other = Vec::new();
    for i in 0..ROUNDS {
        let path = format!("{dir}/n{i}");
        let made = c.create(a, &path, b"x");
        c.send_read_watch(b, &path);
        let deleted = c.delete(a, &path);
        let seen = c.receive(b);
        let note = format!("deleted {path}");
        let seen: Vec<&str> = seen.iter().map(String::as_str).collect();
        match (&made, &deleted, &seen[..]) {
            (Ok(()), Ok(()), ["reply present", n]) if *n == note => after += 1,
            (Ok(()), Ok(()), [n, "reply present"]) if *n == note => overtaken += 1,
            (Ok(()), Ok(()), ["reply absent"]) => unwatched += 1,
            _ => other.push(format!("{made:?} {deleted:?} {seen:?}")),
        }
    }
    c.note(&format!(
        "{after} of {ROUNDS} reads served before the deletion, {unwatched} after it"
    ));
    t.push(format!(
        "notification before the reply that set its watch: {overtaken} of {ROUNDS} rounds"
    ));
    t.push(format!(
        "some read served first, its watch fired after its reply: {}",
        after > 0
    ));
    t.push(format!("other outcomes: {other:?}"));
    t
}

/// One session timeout of the model's virtual time (µs).
const T_US: u64 = 1_000_000;
/// The model advances its clock, pings and expires sessions in steps of a
/// twentieth of a timeout (a real server's tick is `T / 20` in the tests).
const STEP_US: u64 = T_US / 20;

/// A message on its way from the model to a client.
enum Msg {
    /// The reply to a read sent by [`Coordinator::send_read_watch`].
    Reply {
        path: String,
        text: String,
    },
    Notify {
        path: String,
        text: String,
    },
}

/// The scenarios over [`ZkModel`], with a virtual clock.
#[derive(Default)]
pub struct ModelCoordinator {
    zk: ZkModel,
    /// Virtual time (µs).
    now: u64,
    zk_up: bool,
    sessions: Vec<SessionId>,
    paused: BTreeSet<usize>,
    events: BTreeMap<SessionId, Vec<String>>,
    /// Per session, the messages on their way with their arrival times. A
    /// reply takes longer than a notification sent after it, as the
    /// simulation's independent message delays allow.
    wire: BTreeMap<SessionId, Vec<(u64, Msg)>>,
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
            zk_up: true,
            ..Self::default()
        }
    }

    /// A request from `h` reaches the server: it hears from the session.
    fn op(&mut self, h: usize) -> SessionId {
        let s = self.sessions[h];
        self.zk.touch(s, self.now);
        s
    }

    /// Every client that is not paused pings.
    fn ping_all(&mut self) {
        for (h, s) in self.sessions.iter().enumerate() {
            if !self.paused.contains(&h) {
                self.zk.touch(*s, self.now);
            }
        }
    }

    fn expire_due(&mut self) {
        let (_, fired) = self.zk.expire_due(self.now);
        self.route(fired);
    }

    fn route(&mut self, fired: Vec<Fired>) {
        for f in fired {
            let what = match f.kind {
                WatchKind::Created => "created",
                WatchKind::Deleted => "deleted",
            };
            let text = format!("{what} {}", f.path);
            match self.wire.get_mut(&f.session) {
                Some(w) if !w.is_empty() => {
                    w.push((self.now + 1, Msg::Notify { path: f.path, text }))
                }
                _ => self.events.entry(f.session).or_default().push(text),
            }
        }
    }
}

fn name(e: ZkError) -> String {
    format!("{e:?}")
}

impl Coordinator for ModelCoordinator {
    fn open(&mut self) -> usize {
        let s = self.zk.open_session(self.now, T_US);
        self.sessions.push(s);
        self.sessions.len() - 1
    }

    fn close(&mut self, h: usize) {
        let fired = self.zk.close_session(self.sessions[h]);
        self.route(fired);
    }

    fn mkdir(&mut self, h: usize, path: &str) -> Result<(), String> {
        let s = self.op(h);
        let fired = self.zk.create(s, path, b"", false).map_err(name)?;
        self.zk.ensure_dir(path);
        self.route(fired);
        Ok(())
    }

    fn create_seq(&mut self, h: usize, prefix: &str, data: &[u8]) -> Result<String, String> {
        let s = self.op(h);
        let (dir, p) = prefix.rsplit_once('/').ok_or("NoNode")?;
        let (n, _) = self.zk.create_seq(s, dir, p, data, true).map_err(name)?;
        Ok(n)
    }

    fn create(&mut self, h: usize, path: &str, data: &[u8]) -> Result<(), String> {
        let s = self.op(h);
        let fired = self.zk.create(s, path, data, true).map_err(name)?;
        self.route(fired);
        Ok(())
    }

    fn delete(&mut self, h: usize, path: &str) -> Result<(), String> {
        let s = self.op(h);
        let fired = self.zk.delete(s, path).map_err(name)?;
        self.route(fired);
        Ok(())
    }

    fn children(&mut self, h: usize, dir: &str) -> Result<Vec<String>, String> {
        let s = self.op(h);
        let mut c = self.zk.children(s, dir).map_err(name)?;
        c.sort();
        Ok(c)
    }

    fn get(&mut self, h: usize, path: &str) -> Result<Option<(Vec<u8>, bool)>, String> {
        let s = self.op(h);
        if !self.zk.is_live(s) {
            return Err(name(ZkError::SessionExpired));
        }
        Ok(self.zk.get(path).map(|n| (n.data.clone(), n.owner == s)))
    }

    fn watch(&mut self, h: usize, path: &str) -> Result<bool, String> {
        let s = self.op(h);
        self.zk
            .read_and_watch(s, path)
            .map(|n| n.is_some())
            .map_err(name)
    }

    fn events(&mut self, h: usize) -> Vec<String> {
        let mut e = self.events.remove(&self.sessions[h]).unwrap_or_default();
        e.sort();
        e
    }

    fn now(&mut self) -> f64 {
        self.now as f64 / T_US as f64
    }

    fn sleep_until(&mut self, t: f64) {
        let until = (t * T_US as f64).round() as u64;
        while self.now < until {
            self.now = (self.now + STEP_US).min(until);
            if self.zk_up {
                self.ping_all();
                self.expire_due();
            }
        }
    }

    fn pause(&mut self, h: usize) {
        self.paused.insert(h);
    }

    fn resume(&mut self, h: usize) -> Result<(), String> {
        self.paused.remove(&h);
        let s = self.op(h);
        if self.zk.is_live(s) {
            Ok(())
        } else {
            Err(name(ZkError::SessionExpired))
        }
    }

    fn restart_zk(&mut self, outage: f64) {
        self.zk_up = false;
        self.now += (outage * T_US as f64).round() as u64;
        self.zk_up = true;
        self.zk.restarted(self.now);
        self.expire_due();
        self.ping_all();
    }

    fn send_read_watch(&mut self, h: usize, path: &str) {
        let s = self.op(h);
        let text = match self.zk.read_and_watch(s, path) {
            Ok(Some(_)) => "reply present".to_string(),
            Ok(None) => "reply absent".to_string(),
            Err(e) => format!("reply err {}", name(e)),
        };
        let reply = Msg::Reply {
            path: path.to_string(),
            text,
        };
        self.wire.entry(s).or_default().push((self.now + 2, reply));
    }

    fn receive(&mut self, h: usize) -> Vec<String> {
        let s = self.sessions[h];
        let mut msgs = self.wire.remove(&s).unwrap_or_default();
        msgs.sort_by_key(|(at, _)| *at);
        // The client holds a notification for a path whose read it has not
        // had the reply to yet, and hands it over right after that reply, as
        // the simulation's client does (world.rs, `Client::early`).
        let mut awaited: BTreeSet<String> = msgs
            .iter()
            .filter_map(|(_, m)| match m {
                Msg::Reply { path, .. } => Some(path.clone()),
                Msg::Notify { .. } => None,
            })
            .collect();
        let mut held: Vec<(String, String)> = Vec::new();
        let mut out = Vec::new();
        for (_, m) in msgs {
            match m {
                Msg::Reply { path, text } => {
                    out.push(text);
                    awaited.remove(&path);
                    let (now, later): (Vec<_>, Vec<_>) =
                        held.drain(..).partition(|(p, _)| *p == path);
                    held = later;
                    out.extend(now.into_iter().map(|(_, text)| text));
                }
                Msg::Notify { path, text } if awaited.contains(&path) => held.push((path, text)),
                Msg::Notify { text, .. } => out.push(text),
            }
        }
        out.extend(held.into_iter().map(|(_, text)| text));
        out.extend(self.events.remove(&s).unwrap_or_default());
        out
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
        let exp = &traces["ephemerals vanish when their session closes, watchers hear it"];
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
        let silent = &traces["a silent client's session expires one timeout after its last packet"];
        assert_eq!(
            silent[3..],
            [
                "half a timeout later: ok Some(([97], false)) ok [\"K-0000000000\", \"plain\"]",
                "[]",
                "gone no earlier than one timeout after the last packet: true",
                "gone within two timeouts: true",
                "[\"deleted /conf/s/K-0000000000\"]",
                "ok []",
                "the silent client comes back: err SessionExpired",
                "err SessionExpired",
                "err SessionExpired",
            ]
        );
        let restart = &traces["session timeouts count from a ZooKeeper restart"];
        assert_eq!(
            restart[3..],
            [
                "b comes back half a timeout after the restart: ok ()",
                "ok [\"a\", \"b\"]",
                "a's node gone no earlier than one timeout after the restart: true",
                "a's node gone within two timeouts of the restart: true",
                "ok [\"b\"]",
                "ok Some(([98], true))",
                "a comes back: err SessionExpired",
                "err SessionExpired",
            ]
        );
        let order = &traces["a notification never overtakes the reply that set its watch"];
        assert_eq!(
            order[1..],
            [
                "notification before the reply that set its watch: 0 of 20 rounds",
                "some read served first, its watch fired after its reply: true",
                "other outcomes: []",
            ]
        );
    }
}
