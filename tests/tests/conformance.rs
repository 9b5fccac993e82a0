//! The ZooKeeper model of the simulation against a real ZooKeeper: every
//! conformance scenario of `election_sim::conformance` must produce the same
//! trace on both.
//!
//! The real side speaks ZooKeeper's wire protocol itself, over one TCP
//! connection per session, from this thread only. Nothing happens behind the
//! scenario's back: a client sends a ping only while the scenario lets time
//! pass and the client is not paused, so a paused client is silent for real
//! (its connection stays open, as a stopped process's would), and every
//! frame is read in the order ZooKeeper sent it, so the order of a reply and
//! a notification is what came over the wire. No fixed sleep synchronises
//! anything: a request whose reply has been read was served, and ZooKeeper
//! sends a session its notifications and replies in order, so the reply to
//! one more request brings every notification of the changes made before it.

use election_sim::conformance::{scenarios, Coordinator, ModelCoordinator};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use system_tests::Zk;

/// ZooKeeper's tick in this test; sessions ask for the largest timeout the
/// server grants (20 ticks), 3 s.
const TICK_MS: u64 = 150;

// Opcodes and error codes of ZooKeeper's protocol (ZooDefs.OpCode,
// KeeperException.Code).
const OP_CREATE: i32 = 1;
const OP_DELETE: i32 = 2;
const OP_EXISTS: i32 = 3;
const OP_GET_DATA: i32 = 4;
const OP_GET_CHILDREN: i32 = 8;
const OP_PING: i32 = 11;
const OP_CLOSE: i32 = -11;
const XID_NOTIFICATION: i32 = -1;
const XID_PING: i32 = -2;

fn error_name(code: i32) -> String {
    match code {
        -101 => "NoNode".into(),
        -110 => "NodeExists".into(),
        -111 => "NotEmpty".into(),
        -112 => "SessionExpired".into(),
        other => format!("error {other}"),
    }
}

/// Jute encoding: big-endian integers, length-prefixed buffers and strings.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn int(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn long(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn buf(self, b: &[u8]) -> Self {
        let mut s = self.int(b.len() as i32);
        s.0.extend_from_slice(b);
        s
    }
    fn str(self, s: &str) -> Self {
        self.buf(s.as_bytes())
    }
    fn bool(mut self, v: bool) -> Self {
        self.0.push(u8::from(v));
        self
    }
    /// One ACL: world:anyone, every permission.
    fn open_acl(self) -> Self {
        self.int(1).int(31).str("world").str("anyone")
    }
}

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short frame"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn int(&mut self) -> io::Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn long(&mut self) -> io::Result<i64> {
        let hi = self.int()? as u32;
        let lo = self.int()? as u32;
        Ok(((u64::from(hi) << 32) | u64::from(lo)) as i64)
    }
    fn buf(&mut self) -> io::Result<Vec<u8>> {
        let n = self.int()?;
        Ok(if n < 0 {
            Vec::new()
        } else {
            self.take(n as usize)?.to_vec()
        })
    }
    fn str(&mut self) -> io::Result<String> {
        Ok(String::from_utf8_lossy(&self.buf()?).into_owned())
    }
}

/// One frame from the server after the handshake.
struct Frame {
    xid: i32,
    zxid: i64,
    err: i32,
    body: Vec<u8>,
}

/// One client session over one TCP connection.
struct Wire {
    /// `None` once the connection broke (it is reopened on the session).
    stream: Option<TcpStream>,
    session: i64,
    passwd: Vec<u8>,
    /// The last zxid seen, sent when reconnecting.
    zxid: i64,
    xid: i32,
    last_send: Instant,
    paused: bool,
    /// ZooKeeper refused the session (expired) or it was closed.
    ended: bool,
    /// Notifications read so far.
    events: Vec<String>,
    /// The xid of a read sent by `send_read_watch`, reply not read yet.
    pending: Option<i32>,
}

struct Real<'z> {
    zk: &'z mut Zk,
    addr: SocketAddr,
    /// The session timeout asked for and granted.
    timeout: Duration,
    start: Instant,
    wires: Vec<Wire>,
}

fn write_frame(s: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let mut f = Vec::with_capacity(payload.len() + 4);
    f.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    f.extend_from_slice(payload);
    s.write_all(&f)
}

fn read_frame(s: &mut TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(0..=1 << 20).contains(&len) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame length"));
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

fn notification(body: &[u8]) -> io::Result<String> {
    let mut r = In(body);
    let kind = r.int()?;
    let _state = r.int()?;
    let path = r.str()?;
    let what = match kind {
        1 => "created",
        2 => "deleted",
        3 => "changed",
        4 => "children",
        _ => "other",
    };
    Ok(format!("{what} {path}"))
}

impl<'z> Real<'z> {
    fn new(zk: &'z mut Zk) -> Self {
        let addr = format!("127.0.0.1:{}", zk.port)
            .parse()
            .expect("ZooKeeper address");
        let timeout = Duration::from_millis(20 * zk.tick_ms);
        Real {
            zk,
            addr,
            timeout,
            start: Instant::now(),
            wires: Vec::new(),
        }
    }

    /// Opens a connection and a session (`session` 0: a new one). `None`
    /// when ZooKeeper refuses the session: it expired.
    fn handshake(
        &self,
        session: i64,
        passwd: &[u8],
        zxid: i64,
    ) -> io::Result<Option<(TcpStream, i64, Vec<u8>)>> {
        let mut s = TcpStream::connect_timeout(&self.addr, self.timeout / 4)?;
        s.set_nodelay(true)?;
        let req = Out::default()
            .int(0)
            .long(zxid)
            .int(self.timeout.as_millis() as i32)
            .long(session)
            .buf(passwd)
            .bool(false);
        write_frame(&mut s, &req.0)?;
        let body = read_frame(&mut s, Instant::now() + self.timeout)?;
        let mut r = In(&body);
        let _version = r.int()?;
        let granted = r.int()?;
        let id = r.long()?;
        let passwd = r.buf()?;
        if id == 0 || granted <= 0 {
            return Ok(None);
        }
        assert_eq!(
            i64::from(granted),
            self.timeout.as_millis() as i64,
            "ZooKeeper granted another session timeout than asked"
        );
        Ok(Some((s, id, passwd)))
    }

    /// Reopens the session of `h` on a new connection; marks it ended if
    /// ZooKeeper says it expired.
    fn reconnect(&mut self, h: usize) -> io::Result<()> {
        let w = &self.wires[h];
        match self.handshake(w.session, &w.passwd, w.zxid)? {
            Some((s, _, passwd)) => {
                let w = &mut self.wires[h];
                w.stream = Some(s);
                w.passwd = passwd;
                w.last_send = Instant::now();
            }
            None => {
                let w = &mut self.wires[h];
                w.ended = true;
                w.stream = None;
            }
        }
        Ok(())
    }

    fn send(&mut self, h: usize, xid: Option<i32>, op: i32, body: &[u8]) -> io::Result<i32> {
        let w = &mut self.wires[h];
        let xid = xid.unwrap_or_else(|| {
            w.xid += 1;
            w.xid
        });
        let s = w.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        let mut payload = Out::default().int(xid).int(op).0;
        payload.extend_from_slice(body);
        write_frame(s, &payload)?;
        w.last_send = Instant::now();
        Ok(xid)
    }

    /// Reads frames until the reply to `xid`; returns the notifications read
    /// before it, in order, and the reply. A broken connection is dropped.
    fn await_reply(&mut self, h: usize, xid: i32) -> io::Result<(Vec<String>, Frame)> {
        let deadline = Instant::now() + self.timeout;
        let mut notes = Vec::new();
        let w = &mut self.wires[h];
        let result = (|| loop {
            let s = w.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let body = read_frame(s, deadline)?;
            let mut r = In(&body);
            let f = Frame {
                xid: r.int()?,
                zxid: r.long()?,
                err: r.int()?,
                body: r.0.to_vec(),
            };
            if f.xid == XID_NOTIFICATION {
                notes.push(notification(&f.body)?);
            } else if f.xid == xid {
                if f.xid >= 0 {
                    w.zxid = w.zxid.max(f.zxid);
                }
                return Ok(f);
            }
        })();
        match result {
            Ok(f) => Ok((notes, f)),
            Err(e) => {
                w.stream = None;
                w.events.extend(notes);
                Err(e)
            }
        }
    }

    /// One request and its reply's body; ZooKeeper's error name otherwise.
    /// Notifications read on the way are kept for `events`.
    fn call(&mut self, h: usize, op: i32, body: &[u8]) -> Result<Vec<u8>, String> {
        assert!(!self.wires[h].paused, "a paused client sends nothing");
        if self.wires[h].ended {
            return Err("SessionExpired".into());
        }
        if self.wires[h].stream.is_none() {
            self.reconnect(h).map_err(|e| format!("connection: {e}"))?;
            if self.wires[h].ended {
                return Err("SessionExpired".into());
            }
        }
        let xid = self.send(h, None, op, body).map_err(|e| {
            self.wires[h].stream = None;
            format!("connection: {e}")
        })?;
        let (notes, f) = self
            .await_reply(h, xid)
            .map_err(|e| format!("connection: {e}"))?;
        self.wires[h].events.extend(notes);
        if f.err == 0 {
            Ok(f.body)
        } else {
            Err(error_name(f.err))
        }
    }

    fn ping(&mut self, h: usize) -> io::Result<()> {
        let xid = self.send(h, Some(XID_PING), OP_PING, &[])?;
        let (notes, _) = self.await_reply(h, xid)?;
        self.wires[h].events.extend(notes);
        Ok(())
    }

    /// Every client that is not paused pings once a quarter of a timeout
    /// has passed since it last sent something, and reconnects if its
    /// connection broke.
    fn keep_alive(&mut self) {
        for h in 0..self.wires.len() {
            let w = &self.wires[h];
            if w.paused || w.ended {
                continue;
            }
            if w.stream.is_none() {
                let _ = self.reconnect(h);
            } else if w.last_send.elapsed() >= self.timeout / 4 {
                let _ = self.ping(h);
            }
        }
    }

    fn create_node(
        &mut self,
        h: usize,
        path: &str,
        data: &[u8],
        flags: i32,
    ) -> Result<String, String> {
        let body = Out::default().str(path).buf(data).open_acl().int(flags);
        let reply = self.call(h, OP_CREATE, &body.0)?;
        In(&reply).str().map_err(|e| e.to_string())
    }
}

impl Drop for Real<'_> {
    /// Closes the sessions still open (without waiting), so that their
    /// ephemerals do not linger for a timeout.
    fn drop(&mut self) {
        for w in &mut self.wires {
            if let (Some(s), false) = (w.stream.as_mut(), w.ended) {
                let _ = write_frame(s, &Out::default().int(w.xid + 1).int(OP_CLOSE).0);
            }
        }
    }
}

impl Coordinator for Real<'_> {
    fn open(&mut self) -> usize {
        let (stream, session, passwd) = self
            .handshake(0, &[0; 16], 0)
            .expect("connect to the test ZooKeeper")
            .expect("a new session");
        self.wires.push(Wire {
            stream: Some(stream),
            session,
            passwd,
            zxid: 0,
            xid: 0,
            last_send: Instant::now(),
            paused: false,
            ended: false,
            events: Vec::new(),
            pending: None,
        });
        self.wires.len() - 1
    }

    fn close(&mut self, h: usize) {
        self.call(h, OP_CLOSE, &[]).expect("close the session");
        let w = &mut self.wires[h];
        w.ended = true;
        w.stream = None;
    }

    fn mkdir(&mut self, h: usize, path: &str) -> Result<(), String> {
        self.create_node(h, path, b"", 0).map(|_| ())
    }

    fn create_seq(&mut self, h: usize, prefix: &str, data: &[u8]) -> Result<String, String> {
        let path = self.create_node(h, prefix, data, 3)?;
        Ok(path.rsplit('/').next().unwrap_or(&path).to_string())
    }

    fn create(&mut self, h: usize, path: &str, data: &[u8]) -> Result<(), String> {
        self.create_node(h, path, data, 1).map(|_| ())
    }

    fn delete(&mut self, h: usize, path: &str) -> Result<(), String> {
        let body = Out::default().str(path).int(-1);
        self.call(h, OP_DELETE, &body.0).map(|_| ())
    }

    fn children(&mut self, h: usize, dir: &str) -> Result<Vec<String>, String> {
        let body = Out::default().str(dir).bool(false);
        let reply = self.call(h, OP_GET_CHILDREN, &body.0)?;
        let mut r = In(&reply);
        let n = r.int().map_err(|e| e.to_string())?;
        let mut c = (0..n.max(0))
            .map(|_| r.str())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        c.sort();
        Ok(c)
    }

    fn get(&mut self, h: usize, path: &str) -> Result<Option<(Vec<u8>, bool)>, String> {
        let body = Out::default().str(path).bool(false);
        match self.call(h, OP_GET_DATA, &body.0) {
            Ok(reply) => {
                let mut r = In(&reply);
                let mut parse = || -> io::Result<(Vec<u8>, i64)> {
                    let data = r.buf()?;
                    // Stat: czxid, mzxid, ctime, mtime, version, cversion,
                    // aversion, then ephemeralOwner.
                    r.take(8 * 4 + 4 * 3)?;
                    Ok((data, r.long()?))
                };
                let (data, owner) = parse().map_err(|e| e.to_string())?;
                Ok(Some((data, owner == self.wires[h].session)))
            }
            Err(e) if e == "NoNode" => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn watch(&mut self, h: usize, path: &str) -> Result<bool, String> {
        let body = Out::default().str(path).bool(true);
        match self.call(h, OP_EXISTS, &body.0) {
            Ok(_) => Ok(true),
            Err(e) if e == "NoNode" => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn events(&mut self, h: usize) -> Vec<String> {
        // The reply to this read comes after every notification of the
        // changes that were made before it.
        let body = Out::default().str("/").bool(false);
        self.call(h, OP_EXISTS, &body.0)
            .expect("a read on a live session");
        let mut e = std::mem::take(&mut self.wires[h].events);
        e.sort();
        e
    }

    fn now(&mut self) -> f64 {
        self.start.elapsed().as_secs_f64() / self.timeout.as_secs_f64()
    }

    fn sleep_until(&mut self, t: f64) {
        let step = self.timeout / 20;
        loop {
            self.keep_alive();
            let left = t - self.now();
            if left <= 0.0 {
                return;
            }
            std::thread::sleep(step.min(self.timeout.mul_f64(left)));
        }
    }

    fn pause(&mut self, h: usize) {
        self.wires[h].paused = true;
    }

    fn resume(&mut self, h: usize) -> Result<(), String> {
        self.wires[h].paused = false;
        if !self.wires[h].ended && self.wires[h].stream.is_some() && self.ping(h).is_err() {
            // The connection died while we were silent: ZooKeeper closes
            // the connection of a session it expires, and a restarted
            // ZooKeeper has none of the old connections.
            self.wires[h].stream = None;
        }
        if !self.wires[h].ended && self.wires[h].stream.is_none() {
            self.reconnect(h).map_err(|e| format!("connection: {e}"))?;
        }
        if self.wires[h].ended {
            Err("SessionExpired".into())
        } else {
            Ok(())
        }
    }

    fn restart_zk(&mut self, outage: f64) {
        self.zk.restart_after(self.timeout.mul_f64(outage));
        for w in &mut self.wires {
            w.stream = None;
        }
        // Every client that is not paused reconnects, within a quarter of a
        // timeout (a reconnection refused while the server settles is
        // retried every twentieth).
        let deadline = Instant::now() + self.timeout / 4;
        loop {
            self.keep_alive();
            let waiting: Vec<usize> = (0..self.wires.len())
                .filter(|h| {
                    let w = &self.wires[*h];
                    !w.paused && !w.ended && w.stream.is_none()
                })
                .collect();
            if waiting.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "clients {waiting:?} could not reconnect to the restarted ZooKeeper"
            );
            std::thread::sleep(self.timeout / 20);
        }
    }

    fn send_read_watch(&mut self, h: usize, path: &str) {
        assert!(self.wires[h].pending.is_none(), "one read at a time");
        let body = Out::default().str(path).bool(true);
        let xid = self
            .send(h, None, OP_GET_DATA, &body.0)
            .expect("send a read");
        self.wires[h].pending = Some(xid);
    }

    fn receive(&mut self, h: usize) -> Vec<String> {
        let xid = self.wires[h].pending.take().expect("a read was sent");
        let (mut seen, f) = self.await_reply(h, xid).expect("the read's reply");
        seen.push(match f.err {
            0 => "reply present".to_string(),
            -101 => "reply absent".to_string(),
            e => format!("reply err {}", error_name(e)),
        });
        let barrier = Out::default().str("/").bool(false);
        let xid = self
            .send(h, None, OP_EXISTS, &barrier.0)
            .expect("send a read");
        let (notes, _) = self.await_reply(h, xid).expect("the read's reply");
        seen.extend(notes);
        seen
    }

    fn note(&mut self, what: &str) {
        eprintln!("  {what}");
    }
}

#[test]
fn the_model_matches_a_real_zookeeper() {
    let mut server = Zk::start(TICK_MS);
    let mut failures = Vec::new();
    for (i, (name, scenario)) in scenarios().into_iter().enumerate() {
        let root = format!("/conformance{i}");
        let started = Instant::now();
        let mut real = Real::new(&mut server);
        let setup = real.open();
        real.mkdir(setup, &root)
            .expect("create the scenario's root");
        let want = scenario(&mut ModelCoordinator::new(&root), &root);
        let got = scenario(&mut real, &root);
        drop(real);
        if want != got {
            failures.push(format!("{name}:\n  model: {want:?}\n  real:  {got:?}"));
        } else {
            eprintln!(
                "{name}: {} steps agree ({:.1} s)",
                want.len(),
                started.elapsed().as_secs_f64()
            );
            if std::env::var_os("CONFORMANCE_TRACES").is_some() {
                for step in &got {
                    eprintln!("    {step}");
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the model differs from ZooKeeper:\n{}",
        failures.join("\n")
    );
}
