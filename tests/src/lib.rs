//! Whole-system test harness: a real ZooKeeper (standalone, temporary data
//! dir, free loopback port, short tickTime) and N real `election-server`
//! processes on free loopback ports, with helpers to kill -9, SIGSTOP/SIGCONT,
//! restart a service, and restart ZooKeeper. Every process is stopped by PID
//! when its handle drops, also when a test panics.
//!
//! ZooKeeper comes from Debian's `zookeeper` package (`scripts/zk.sh install`).
//! A missing ZooKeeper is a test failure, never a skip.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("oio-election-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A number from the environment (to replay or lengthen a randomised test),
/// else `default`.
pub fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A seed from the environment, else one drawn from the clock (odd, never 0).
pub fn env_seed(var: &str) -> u64 {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    env_u64(var, clock | 1)
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY-free: libc::kill is a plain syscall wrapper; we only signal
    // processes this harness spawned, by their PID.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Asks ZooKeeper's `srvr` four-letter word; Some(answer) when serving.
pub fn srvr(port: u16) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_millis(300),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"srvr").ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("Mode:").then_some(out)
}

/// One ZooKeeper server process.
struct ZkMember {
    id: usize,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

/// ZooKeeper: a standalone server, or an ensemble of servers on loopback.
pub struct Zk {
    /// The first server's client port.
    pub port: u16,
    pub tick_ms: u64,
    members: Vec<ZkMember>,
    /// `server.N=...` lines of an ensemble (empty when standalone).
    servers: String,
}

impl Zk {
    pub fn start(tick_ms: u64) -> Zk {
        Self::start_servers(1, tick_ms)
    }

    /// A 3-server (or `n`-server) ensemble on loopback.
    pub fn start_ensemble(n: usize, tick_ms: u64) -> Zk {
        Self::start_servers(n, tick_ms)
    }

    fn start_servers(n: usize, tick_ms: u64) -> Zk {
        assert!(
            Path::new(ZK_JAR).exists(),
            "ZooKeeper is not installed ({ZK_JAR} missing): run `scripts/zk.sh install` (Debian package zookeeper)"
        );
        let members: Vec<ZkMember> = (1..=n)
            .map(|id| ZkMember {
                id,
                port: free_port(),
                dir: TempDir::new(&format!("zk{id}")),
                child: None,
            })
            .collect();
        let servers = if n > 1 {
            (1..=n)
                .map(|id| format!("server.{id}=127.0.0.1:{}:{}\n", free_port(), free_port()))
                .collect()
        } else {
            String::new()
        };
        let mut zk = Zk {
            port: members[0].port,
            tick_ms,
            members,
            servers,
        };
        for i in 0..zk.members.len() {
            zk.spawn_member(i);
        }
        for i in 0..zk.members.len() {
            zk.wait_member(i);
        }
        zk
    }

    fn spawn_member(&mut self, i: usize) {
        let m = &mut self.members[i];
        let d = m.dir.path().to_path_buf();
        std::fs::create_dir_all(d.join("data")).expect("zk data dir");
        let mut cfg = format!(
            "tickTime={}\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
             4lw.commands.whitelist=ruok,srvr,stat,mntr,conf,cons,envi\nmaxClientCnxns=0\n",
            self.tick_ms,
            d.join("data").display(),
            m.port
        );
        if !self.servers.is_empty() {
            cfg.push_str("initLimit=10\nsyncLimit=5\n");
            cfg.push_str(&self.servers);
            std::fs::write(d.join("data").join("myid"), format!("{}\n", m.id)).expect("myid");
        }
        std::fs::write(d.join("zoo.cfg"), cfg).expect("write zoo.cfg");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("out.log"))
            .expect("zk log");
        let cp = format!("/etc/zookeeper/conf:{ZK_JAR}:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar");
        let main = if self.servers.is_empty() {
            "org.apache.zookeeper.server.ZooKeeperServerMain"
        } else {
            "org.apache.zookeeper.server.quorum.QuorumPeerMain"
        };
        // ZK_HEAP raises the heap for large runs (100,000 bases need ~1 GB).
        let heap = std::env::var("ZK_HEAP").unwrap_or_else(|_| "128m".into());
        let child = Command::new("java")
            .arg(format!("-Xmx{heap}"))
            .args([
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dzookeeper.root.logger=WARN,CONSOLE",
            ])
            .arg(format!("-Dzookeeper.log.dir={}", d.display()))
            .args(["-cp", &cp, main])
            .arg(d.join("zoo.cfg"))
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start java (is a JRE installed? scripts/zk.sh install)");
        m.child = Some(child);
    }

    fn wait_member(&self, i: usize) {
        let m = &self.members[i];
        let started = Instant::now();
        while srvr(m.port).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ZooKeeper did not serve on port {} within 30 s; log: {}",
                m.port,
                std::fs::read_to_string(m.dir.path().join("out.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops every server (kill -9: sessions are not closed).
    pub fn kill(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Starts every server again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.restart_after(Duration::ZERO);
    }

    /// Down for `outage`, then started again on the same ports with the same data.
    pub fn restart_after(&mut self, outage: Duration) {
        self.kill();
        std::thread::sleep(outage);
        for i in 0..self.members.len() {
            self.spawn_member(i);
        }
        for i in 0..self.members.len() {
            self.wait_member(i);
        }
    }

    /// Ensembles: kill -9 the current leader; returns its index.
    pub fn kill_leader(&mut self) -> Option<usize> {
        let i = self
            .members
            .iter()
            .position(|m| srvr(m.port).is_some_and(|s| s.contains("Mode: leader")))?;
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Some(i)
    }

    /// Starts one killed server again (it rejoins the ensemble).
    pub fn start_member(&mut self, i: usize) {
        if self.members[i].child.is_none() {
            self.spawn_member(i);
            self.wait_member(i);
        }
    }
}

impl Drop for Zk {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A binary built next to this program: tests run from `target/<profile>/deps/`,
/// the benchmark from `target/<profile>/`.
fn sibling_bin(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let bin = d.join(name);
        if bin.exists() {
            return bin;
        }
    }
    panic!(
        "{name} is missing next to {}: run `cargo build --bins` first (scripts/test.sh does)",
        exe.display()
    );
}

/// The `election-server` binary built by `cargo build` next to the tests.
pub fn server_bin() -> PathBuf {
    sibling_bin("election-server", "ELECTION_SERVER_BIN")
}

/// The `openio` binary built next to the tests.
pub fn openio_bin() -> PathBuf {
    sibling_bin("openio", "OPENIO_BIN")
}

/// One run of the `openio` CLI.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl CliRun {
    /// The data rows of a simple table: one `Vec` of trimmed cells per row.
    pub fn table(&self) -> Vec<Vec<String>> {
        table_rows(&self.stdout)
    }
}

/// The data rows of a simple table printed by the CLI (header skipped): one
/// `Vec` of trimmed cells per row.
pub fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// Options of the services a cluster starts.
#[derive(Debug, Clone)]
pub struct ServiceOpts {
    pub session_timeout_ms: u64,
    pub extra: Vec<String>,
}

impl Default for ServiceOpts {
    fn default() -> Self {
        Self {
            session_timeout_ms: 2_000,
            extra: Vec::new(),
        }
    }
}

/// One `election-server` process.
pub struct Service {
    pub port: u16,
    pub id: String,
    data: TempDir,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    relay: Option<ZkRelay>,
}

impl Service {
    /// Cuts this service from ZooKeeper, or heals the cut (needs
    /// `Cluster::start_with_relays`). Its peers and clients still reach it.
    pub fn cut_from_zookeeper(&self, cut: bool) {
        self.relay
            .as_ref()
            .expect("cut_from_zookeeper needs Cluster::start_with_relays")
            .cut(cut);
    }

    /// Starts the process again with `extra` flags for this start only.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.kill9();
        let saved = self.args.clone();
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn();
        self.args = saved;
    }

    /// Where this service keeps its replica of `base` (meta2).
    pub fn replica_path(&self, base: &str) -> PathBuf {
        use election_core::names::{BaseName, ElectionKey, ServiceType};
        let key = ElectionKey::compute(
            &BaseName::parse(base).expect("base"),
            &ServiceType::new("meta2").expect("type"),
        );
        self.data
            .path()
            .join("bases")
            .join(&key.as_str()[..2])
            .join(format!("{key}.sqlite3"))
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("service log");
        let child = Command::new(server_bin())
            .args(&self.args)
            .arg("--data-dir")
            .arg(self.data.path())
            // `SERVICE_LOG` sets the services' log filter (for example
            // `election_server=debug,election_engine=debug` to see why).
            .env(
                "RUST_LOG",
                std::env::var("SERVICE_LOG")
                    .unwrap_or_else(|_| "info,zookeeper_client=warn".into()),
            )
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start election-server");
        self.child = Some(child);
        let started = Instant::now();
        while !http_ok(self.port) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited with {status}; log:\n{}",
                    self.id,
                    self.log_text()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} not ready; log:\n{}",
                self.id,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process was started by the harness and has not exited (a
    /// stopped one counts as running). Asks the kernel without reaping, so a
    /// service that crashed on its own is seen as dead.
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(|pid| !has_exited(pid))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9: no clean leave, the session lingers until it expires.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit (clean leave).
    pub fn terminate(&mut self) -> Duration {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// SIGINT, then wait for the exit (fast exit).
    pub fn interrupt(&mut self) -> Duration {
        self.signal_and_wait(libc::SIGINT)
    }

    fn signal_and_wait(&mut self, sig: libc::c_int) -> Duration {
        let started = Instant::now();
        if let Some(mut c) = self.child.take() {
            signal(c.id(), sig);
            let _ = c.wait();
        }
        started.elapsed()
    }

    /// SIGSTOP, and returns once every thread of the process is stopped:
    /// the signal takes effect asynchronously, and a request sent right
    /// after it could still be handled (a zombie-master test once saw its
    /// first queued write begin before the stop).
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGSTOP);
            let started = Instant::now();
            while !all_threads_stopped(pid) && started.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGCONT);
        }
    }

    /// Starts the process again, same port, id and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

/// Whether every thread of `pid` is stopped (state `T` in
/// `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true; // gone: nothing runs
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|c| c == 'T' || c == 't')
        })
    })
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGCONT);
        }
        self.kill9();
    }
}

/// Whether our child `pid` has exited, without reaping it (`waitid` with
/// `WNOWAIT`), so that `Child::wait` still works afterwards.
fn has_exited(pid: u32) -> bool {
    // SAFETY: `info` is a plain C struct that waitid fills in; zeroed is a
    // valid value for it, and `si_pid` is read only after waitid returned 0.
    #[allow(unsafe_code)]
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // rc < 0: not our child any more (already reaped): exited.
        rc < 0 || info.si_pid() != 0
    }
}

fn http_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// A TCP relay from one service to ZooKeeper that a test can cut. While
/// cut it moves no byte either way but keeps every connection open, as a
/// network that drops packets would: both ends hear nothing, ZooKeeper
/// expires the session after its timeout, and the service finds out on its
/// own. Healed, the bytes held flow again (TCP would retransmit them).
pub struct ZkRelay {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ZkRelay {
    /// Relays 127.0.0.1:<a free port> to ZooKeeper's `zk_port`.
    pub fn start(zk_port: u16) -> ZkRelay {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay addr").port();
        listener.set_nonblocking(true).expect("nonblocking relay");
        let (cut, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (cut2, stop2) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", zk_port)) else {
                    continue; // ZooKeeper down: the client sees a closed connection
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to) = (from.try_clone(), to.try_clone());
                    let (cut, stop) = (cut2.clone(), stop2.clone());
                    if let (Ok(from), Ok(to)) = (from, to) {
                        std::thread::spawn(move || pump(from, to, &cut, &stop));
                    }
                }
            }
        });
        ZkRelay { port, cut, stop }
    }

    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for ZkRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes, holding everything while `cut`.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    cut: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(SeqCst) {
        if cut.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// ZooKeeper plus N services.
pub struct Cluster {
    pub zk: Zk,
    pub services: Vec<Service>,
    pub http: reqwest::Client,
    _dir: TempDir,
}

/// One peer's answer to an election route.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: String,
    pub status: u16,
    pub message: String,
    pub body: Value,
}

impl Cluster {
    pub fn start(n: usize, opts: ServiceOpts) -> Cluster {
        Self::start_with_tick(n, opts, 200)
    }

    pub fn start_with_tick(n: usize, opts: ServiceOpts, tick_ms: u64) -> Cluster {
        Self::start_on(Zk::start(tick_ms), n, opts)
    }

    /// N services on a given ZooKeeper (standalone or ensemble).
    pub fn start_on(zk: Zk, n: usize, opts: ServiceOpts) -> Cluster {
        Self::start_services(zk, n, opts, false)
    }

    /// N services on a standalone ZooKeeper, each reaching it through a
    /// `ZkRelay` of its own, so that a test can cut one from ZooKeeper alone
    /// (`Service::cut_from_zookeeper`).
    pub fn start_with_relays(n: usize, opts: ServiceOpts) -> Cluster {
        Self::start_services(Zk::start(200), n, opts, true)
    }

    fn start_services(zk: Zk, n: usize, opts: ServiceOpts, relays: bool) -> Cluster {
        let dir = TempDir::new("cluster");
        let mut services = Vec::new();
        for i in 0..n {
            let port = free_port();
            let id = format!("127.0.0.1:{port}");
            let relay = relays.then(|| ZkRelay::start(zk.port));
            let mut args = vec![
                "--listen".to_string(),
                id.clone(),
                "--zk".to_string(),
                relay
                    .as_ref()
                    .map_or_else(|| zk.connect_string(), |r| format!("127.0.0.1:{}", r.port)),
                "--session-timeout-ms".to_string(),
                opts.session_timeout_ms.to_string(),
            ];
            args.extend(opts.extra.iter().cloned());
            let mut s = Service {
                port,
                id,
                data: TempDir::new(&format!("svc{i}")),
                args,
                child: None,
                log: dir.path().join(format!("svc{i}.log")),
                relay,
            };
            s.spawn();
            services.push(s);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client");
        Cluster {
            zk,
            services,
            http,
            _dir: dir,
        }
    }

    pub fn service(&self, id: &str) -> &Service {
        self.services
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no service {id}"))
    }

    pub fn service_mut(&mut self, id: &str) -> &mut Service {
        self.services
            .iter_mut()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no service {id}"))
    }

    pub fn ids(&self) -> Vec<String> {
        self.services.iter().map(|s| s.id.clone()).collect()
    }

    /// All service logs, for failure messages.
    pub fn logs(&self) -> String {
        self.services
            .iter()
            .map(|s| format!("===== {} =====\n{}", s.id, s.log_text()))
            .collect()
    }

    /// Runs `openio` against this cluster's ZooKeeper (namespace OPENIO).
    pub async fn openio(&self, args: &[&str]) -> CliRun {
        let started = Instant::now();
        let out = tokio::process::Command::new(openio_bin())
            .args(args)
            .env("OIO_ZOOKEEPER", self.zk.connect_string())
            .env("OIO_NS", "OPENIO")
            .env_remove("OIO_ACCOUNT")
            .output()
            .await
            .expect("run openio");
        CliRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: started.elapsed(),
        }
    }

    /// Creates a container through the first running service; returns its base name.
    pub async fn create_container(&self, account: &str, reference: &str) -> String {
        let s = self
            .services
            .iter()
            .find(|s| s.is_running())
            .expect("a running service");
        let url = format!("http://{}/v1/container/create", s.id);
        let resp = self
            .http
            .post(url)
            .query(&[("acct", account), ("ref", reference), ("type", "meta2")])
            .send()
            .await
            .expect("create container");
        let code = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert!(code.is_success(), "container creation failed: {body}");
        body["base"].as_str().expect("base").to_string()
    }

    /// Sets a test-only fault switch (`lose_acks`, `low_disk`, ...) on one
    /// service started with `--enable-fault-switches`.
    pub async fn fault(&self, id: &str, switch: &str, on: bool) {
        let resp = self
            .http
            .post(format!("http://{id}/v1/admin/fault?{switch}={on}"))
            .send()
            .await
            .expect("fault switch");
        assert!(
            resp.status().is_success(),
            "fault switch {switch}={on} on {id}"
        );
    }

    /// Calls an election route on one peer, OpenIO-style: transport errors
    /// become codes 2 (refused), 7 (timeout), 10 (other).
    pub async fn call(&self, id: &str, route: &str, base: &str, timeout: Duration) -> Answer {
        let url = format!("http://{id}/v1/election/{route}");
        let fut = self
            .http
            .post(url)
            .query(&[("base", base), ("type", "meta2")])
            .header("x-oio-timeout", (timeout.as_micros() as u64).to_string())
            .timeout(timeout)
            .send();
        match fut.await {
            Ok(resp) => {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                Answer {
                    id: id.to_string(),
                    status: body["status"].as_u64().unwrap_or(0) as u16,
                    message: body["message"].as_str().unwrap_or_default().to_string(),
                    body,
                }
            }
            Err(e) if e.is_timeout() => Answer {
                id: id.into(),
                status: 7,
                message: "Timeout".into(),
                body: Value::Null,
            },
            Err(e) if e.is_connect() => Answer {
                id: id.into(),
                status: 2,
                message: format!("{id}: [errno=111] Connection refused"),
                body: Value::Null,
            },
            Err(e) => Answer {
                id: id.into(),
                status: 10,
                message: e.to_string(),
                body: Value::Null,
            },
        }
    }

    /// A client of this cluster's peers that needs no access to the cluster
    /// itself: tasks write with it while the test kills and restarts
    /// processes.
    pub fn writer(&self) -> Writer {
        Writer {
            http: self.http.clone(),
            ids: self.ids(),
        }
    }

    /// A write sent to one peer, without following redirects: (status, message).
    pub async fn write_to(
        &self,
        id: &str,
        base: &str,
        props: &[(&str, &str)],
        timeout: Duration,
    ) -> (u16, String) {
        self.writer().write_to(id, base, props, timeout).await
    }

    /// A write sent like a client does: to a running peer, following up to
    /// 4 redirects. Returns (status, message, the peer that answered).
    pub async fn write(
        &self,
        base: &str,
        props: &[(&str, &str)],
        timeout: Duration,
    ) -> (u16, String, String) {
        let running = self
            .services
            .iter()
            .filter(|s| s.is_running())
            .map(|s| s.id.clone())
            .collect();
        Writer {
            http: self.http.clone(),
            ids: running,
        }
        .write(base, props, timeout)
        .await
    }

    /// The properties as one peer serves them: (status, properties, version).
    pub async fn props(&self, id: &str, base: &str) -> (u16, Value, String) {
        let resp = self
            .http
            .get(format!("http://{id}/v1/container/props"))
            .query(&[("base", base), ("type", "meta2")])
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match resp {
            Ok(r) => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                (
                    v["status"].as_u64().unwrap_or(0) as u16,
                    v["properties"].clone(),
                    v["version"].as_str().unwrap_or("").to_string(),
                )
            }
            Err(_) => (2, Value::Null, String::new()),
        }
    }

    /// `/info` (JSON) of one peer.
    pub async fn info(&self, id: &str) -> Value {
        match self.http.get(format!("http://{id}/info")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// `/info?format=text` of one peer.
    pub async fn info_text(&self, id: &str) -> String {
        match self
            .http
            .get(format!("http://{id}/info?format=text"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }

    /// One sample of a peer's `/metrics`: the value of `series` (its name
    /// and labels, as written), or None when the peer does not export it.
    pub async fn metric(&self, id: &str, series: &str) -> Option<f64> {
        let text = self.metrics(id).await;
        sample(&text, series)
    }

    /// `/metrics` of one peer, as text (panics when it does not answer).
    pub async fn metrics(&self, id: &str) -> String {
        self.http
            .get(format!("http://{id}/metrics"))
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("/metrics text")
    }

    /// `status` on every running peer, in parallel.
    pub async fn status_all(&self, base: &str, timeout: Duration) -> Vec<Answer> {
        let futs = self
            .services
            .iter()
            .filter(|s| s.is_running())
            .map(|s| self.call(&s.id, "status", base, timeout));
        let mut out = futures::future::join_all(futs).await;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The debug body of one peer (Null when it has no election for the base).
    pub async fn debug(&self, id: &str, base: &str) -> Value {
        self.call(id, "debug", base, Duration::from_secs(5))
            .await
            .body["body"]
            .clone()
    }

    /// `/v1/elections` of one peer.
    pub async fn elections(&self, id: &str) -> Option<Value> {
        let resp = self
            .http
            .get(format!("http://{id}/v1/elections"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// After `old` was told to leave: polls until the running peers agree on
    /// a master other than `old`. A leave is answered before it is carried
    /// out, so right after it the peers may still agree on `old`.
    pub async fn wait_new_master(
        &self,
        base: &str,
        old: &str,
        within: Duration,
    ) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let left = within.saturating_sub(started.elapsed());
            match self.wait_converged(base, left).await {
                Ok(m) if m != old => return Ok(m),
                Ok(_) if started.elapsed() < within => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Ok(m) => return Err(format!("{m} still leads after it was told to leave")),
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls `status` on the running peers until they agree on one master.
    pub async fn wait_converged(&self, base: &str, within: Duration) -> Result<String, String> {
        self.wait_converged_among(base, None, within).await
    }

    /// `wait_converged`, asking only `peers` when given (a cluster whose
    /// services hold different bases).
    pub async fn wait_converged_among(
        &self,
        base: &str,
        peers: Option<&[&str]>,
        within: Duration,
    ) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let answers = match peers {
                None => self.status_all(base, Duration::from_secs(3)).await,
                Some(ids) => {
                    let calls = ids
                        .iter()
                        .map(|id| self.call(id, "status", base, Duration::from_secs(3)));
                    futures::future::join_all(calls).await
                }
            };
            match one_master(&answers) {
                Ok(m) => return Ok(m),
                Err(e) if started.elapsed() > within => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Writes as a client makes them, given only the peers' ids.
#[derive(Clone)]
pub struct Writer {
    http: reqwest::Client,
    ids: Vec<String>,
}

impl Writer {
    /// A write sent to one peer, without following redirects: (status,
    /// message). Transport failures are 7 (timeout) or 2 (anything else).
    pub async fn write_to(
        &self,
        id: &str,
        base: &str,
        props: &[(&str, &str)],
        timeout: Duration,
    ) -> (u16, String) {
        let body = serde_json::json!({"properties": props.iter().map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string()))).collect::<serde_json::Map<_, _>>()});
        let resp = self
            .http
            .post(format!("http://{id}/v1/container/set"))
            .query(&[("base", base), ("type", "meta2")])
            .header("x-oio-timeout", (timeout.as_micros() as u64).to_string())
            .timeout(timeout)
            .json(&body)
            .send()
            .await;
        match resp {
            Ok(r) => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                (
                    v["status"].as_u64().unwrap_or(0) as u16,
                    v["message"].as_str().unwrap_or("").to_string(),
                )
            }
            Err(e) => (if e.is_timeout() { 7 } else { 2 }, e.to_string()),
        }
    }

    /// A write sent like a client does: to each peer in turn until one
    /// answers, following up to 4 redirects. Returns (status, message, the
    /// peer that answered).
    pub async fn write(
        &self,
        base: &str,
        props: &[(&str, &str)],
        timeout: Duration,
    ) -> (u16, String, String) {
        let mut last = (0, "no running peer".to_string(), String::new());
        for id in &self.ids {
            let mut target = id.clone();
            for _ in 0..5 {
                let (code, message) = self.write_to(&target, base, props, timeout).await;
                if code == 303 {
                    target = message;
                    continue;
                }
                last = (code, message, target.clone());
                break;
            }
            if last.0 == 200 || (last.0 >= 100 && last.0 != 303) {
                return last;
            }
        }
        last
    }
}

/// Exactly one 200 and every other answer a 303 naming it.
pub fn one_master(answers: &[Answer]) -> Result<String, String> {
    let masters: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    if masters.len() != 1 {
        return Err(format!("{} masters: {answers:?}", masters.len()));
    }
    let m = masters[0].id.clone();
    for a in answers.iter().filter(|a| a.status != 200) {
        if a.status != 303 || a.message != m {
            return Err(format!(
                "{} answers {} {:?}, expected 303 {m}",
                a.id, a.status, a.message
            ));
        }
    }
    Ok(m)
}

/// The p-th percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The container id of `account`/`reference`, as the servers compute it.
pub fn base_of(account: &str, reference: &str) -> String {
    election_core::names::ContainerId::compute(account, reference)
        .meta2_base()
        .to_string()
}

/// One election node as ZooKeeper holds it: the independent evidence that
/// services' claims (MASTER, epoch, session) are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElectionNode {
    /// The node's sequence number: the epoch of a master elected on it.
    pub seq: i64,
    /// The node's data: the owner's service id.
    pub owner: String,
    /// The `ephemeralOwner` of the node: the owner's ZooKeeper session.
    pub session: i64,
}

/// The election nodes of a meta2 `base` of namespace OPENIO, lowest first,
/// read with the caller's own ZooKeeper client (never through a service).
/// Nodes that vanish between the listing and their read are skipped.
pub async fn election_nodes(
    zk: &zookeeper_client::Client,
    base: &str,
) -> Result<Vec<ElectionNode>, zookeeper_client::Error> {
    use election_core::names::{
        format_seq, parse_node_name, BaseName, ElectionKey, Namespace, ServiceType, ZkLayout,
    };
    let stype = ServiceType::new("meta2").expect("type");
    let key = ElectionKey::compute(&BaseName::parse(base).expect("base name"), &stype);
    let layout = ZkLayout::new(Namespace::new("OPENIO").expect("namespace"));
    let dir = layout.election_dir(&stype, &key);
    let children = match zk.list_children(&dir).await {
        Ok(c) => c,
        Err(zookeeper_client::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut seqs: Vec<i64> = children
        .iter()
        .filter_map(|n| parse_node_name(n).filter(|(k, _)| *k == key.as_str()))
        .map(|(_, s)| s)
        .collect();
    seqs.sort_by(|a, b| election_core::names::seq_offset(*a, *b).cmp(&0));
    let mut out = Vec::new();
    for seq in seqs {
        let path = format!("{dir}/{key}-{}", format_seq(seq));
        match zk.get_data(&path).await {
            Ok((data, stat)) => out.push(ElectionNode {
                seq,
                owner: String::from_utf8_lossy(&data).into_owned(),
                session: stat.ephemeral_owner,
            }),
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One MASTER claim: `service` said it was MASTER of `base` on its node
/// `node`. `session` is the ZooKeeper session the election is bound to,
/// when that can be told: the service reported the same session (and
/// session epoch) just before and just after listing its elections, and the
/// election is bound to that epoch. Otherwise None.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MasterClaim {
    pub service: String,
    pub base: String,
    pub node: i64,
    pub session: Option<i64>,
}

/// One service's MASTER claims, from its `/v1/elections` (empty when it
/// does not answer), each tied to its session where possible.
pub async fn master_claims(http: &reqwest::Client, id: &str) -> Vec<MasterClaim> {
    let get = |route: &'static str| async move {
        http.get(format!("http://{id}{route}"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()
    };
    // (session id, session epoch) from `/info`.
    let session = |info: Option<Value>| -> Option<(i64, i64)> {
        let info = info?;
        let hex = info["zookeeper"]["session"].as_str()?.strip_prefix("0x")?;
        let sid = u64::from_str_radix(hex, 16).ok()? as i64;
        Some((sid, info["zookeeper"]["epoch"].as_i64()?)).filter(|(sid, _)| *sid != 0)
    };
    let before = session(get("/info").await);
    let list = get("/v1/elections").await;
    let after = session(get("/info").await);
    let current = before.filter(|_| before == after);
    list.and_then(|v| v["elections"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["state"] == "MASTER")
        .filter_map(|e| {
            Some(MasterClaim {
                service: id.to_string(),
                base: e["base"].as_str()?.to_string(),
                node: e["local_id"].as_i64()?,
                session: current
                    .filter(|(_, epoch)| e["epoch"].as_i64() == Some(*epoch))
                    .map(|(sid, _)| sid),
            })
        })
        .collect()
}

/// A ZooKeeper client of the test's own: one attempt, bounded (2 s), with a
/// 4 s session. None while ZooKeeper cannot be reached.
pub async fn connect_zookeeper(connect: &str) -> Option<zookeeper_client::Client> {
    let connecting = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .connect(connect);
    tokio::time::timeout(Duration::from_secs(2), connecting)
        .await
        .ok()?
        .ok()
}

/// The value of `series` (a metric's name and labels, as written) in
/// Prometheus text `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod sample_tests {
    #[test]
    fn a_sample_is_found_by_its_whole_series() {
        let text = "# TYPE election_write_batch_size histogram\n\
                    election_write_batch_size_bucket{le=\"1.0\"} 3\n\
                    election_write_batch_size_count 5\n\
                    election_write_batches_pipelined_total 181\n";
        assert_eq!(
            super::sample(text, "election_write_batch_size_count"),
            Some(5.0)
        );
        assert_eq!(
            super::sample(text, "election_write_batch_size_bucket{le=\"1.0\"}"),
            Some(3.0)
        );
        assert_eq!(
            super::sample(text, "election_write_batches_pipelined_total"),
            Some(181.0)
        );
        // A prefix of a series is not the series.
        assert_eq!(super::sample(text, "election_write_batch_size"), None);
    }
}
