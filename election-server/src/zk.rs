//! The ZooKeeper session shared by every election of the service, and its
//! supervisor: it connects, reconnects after expiry, and tells the election
//! manager when the elections bound to a session must be reset.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use zookeeper_client as zk;

/// How an error from ZooKeeper must be treated (reference §1.2: the
/// "disconnected" class resets the election, the rest is an ordinary KO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The session is gone: every election bound to it must be reset.
    SessionLost,
    /// The node is not there.
    NoNode,
    /// Anything else: the operation failed, its outcome may be unknown.
    Failed,
}

pub fn classify(e: &zk::Error) -> ErrorClass {
    match e {
        zk::Error::NoNode => ErrorClass::NoNode,
        zk::Error::SessionExpired
        | zk::Error::AuthFailed
        | zk::Error::ClientClosed
        | zk::Error::MarshallingError
        | zk::Error::Unimplemented
        | zk::Error::RuntimeInconsistent
        | zk::Error::SessionMoved => ErrorClass::SessionLost,
        _ => ErrorClass::Failed,
    }
}

/// Creates the persistent directory `path`, creating only the missing
/// ancestors (deepest first tried: usually one write, never a walk from `/`).
pub async fn ensure_dir(
    client: &zk::Client,
    path: &str,
    acls: zk::Acls<'static>,
) -> Result<(), zk::Error> {
    let opts = zk::CreateMode::Persistent.with_acls(acls);
    let mut missing = vec![path.to_string()];
    while let Some(p) = missing.last().cloned() {
        match client.create(&p, b"", &opts).await {
            Ok(_) | Err(zk::Error::NodeExists) => {
                missing.pop();
            }
            Err(zk::Error::NoNode) => match p.rsplit_once('/') {
                Some((parent, _)) if !parent.is_empty() && missing.len() < 16 => {
                    missing.push(parent.to_string())
                }
                _ => return Err(zk::Error::NoNode),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The connection state as the rest of the service sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    Disconnected,
    Expired,
    Closed,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Connecting => "CONNECTING",
            Link::Connected => "CONNECTED",
            Link::Disconnected => "DISCONNECTED",
            Link::Expired => "EXPIRED",
            Link::Closed => "CLOSED",
        }
    }
}

/// What the supervisor publishes about the current session.
#[derive(Debug, Clone, Copy)]
pub struct SessionView {
    /// Increases with every new session (never with a mere reconnection).
    pub epoch: u64,
    pub session_id: i64,
    pub link: Link,
    pub since: Instant,
    pub negotiated_timeout: Duration,
}

impl SessionView {
    /// Live: connected, or disconnected for less than the grace period.
    pub fn is_live(&self, grace: Duration) -> bool {
        match self.link {
            Link::Connected => true,
            Link::Disconnected => self.since.elapsed() < grace,
            _ => false,
        }
    }
}

/// What the supervisor reports to the election manager, on one channel so
/// that they are never seen out of order. The grace period of a
/// disconnection is the engine's (`EngineConfig::grace_ms`).
#[derive(Debug, Clone, Copy)]
pub enum SessionEvent {
    /// The connection of session `epoch` dropped.
    Disconnected { epoch: u64 },
    /// Connected again to session `epoch`.
    Reconnected { epoch: u64 },
    /// Session `epoch` expired: reset every election bound to it.
    Lost { epoch: u64, why: &'static str },
    /// A new session (of `epoch`) after a loss.
    Restored { epoch: u64 },
}

/// Where ZooKeeper is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `host:port[,host:port...]`.
    pub hosts: String,
    /// `""` or `/path`: every path is under it.
    pub chroot: String,
    /// `user:password` for the digest scheme.
    pub digest: Option<election_client::Secret>,
}

/// With digest authentication: our identity may do anything, anyone may
/// read (so that `openio election check` and `zk stat` still work).
static OWNED_READABLE: [zk::Acl; 2] = [
    zk::Acl::new_const(zk::Permission::ALL, "auth", ""),
    zk::Acl::new_const(zk::Permission::READ, "world", "anyone"),
];

pub struct ZkSession {
    hosts: String,
    chroot: String,
    digest: Option<election_client::Secret>,
    requested_timeout: Duration,
    current: RwLock<Option<(zk::Client, u64)>>,
    view: watch::Sender<SessionView>,
    epoch: AtomicU64,
    reconnects: AtomicU64,
    closing: AtomicBool,
    chroot_ready: AtomicBool,
}

impl ZkSession {
    /// Connects the first session (retrying until `first_deadline`).
    pub async fn connect(
        conn: Connection,
        timeout: Duration,
        first_deadline: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let hosts = conn.hosts.clone();
        let (view, _) = watch::channel(SessionView {
            epoch: 0,
            session_id: 0,
            link: Link::Connecting,
            since: Instant::now(),
            negotiated_timeout: timeout,
        });
        let me = Arc::new(Self {
            hosts: conn.hosts,
            chroot: conn.chroot,
            digest: conn.digest,
            requested_timeout: timeout,
            current: RwLock::new(None),
            view,
            epoch: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            chroot_ready: AtomicBool::new(false),
        });
        let started = Instant::now();
        loop {
            match me.open().await {
                Ok(()) => return Ok(me),
                Err(e) if started.elapsed() < first_deadline => {
                    tracing::warn!("ZooKeeper {hosts} not reachable yet: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => anyhow::bail!(
                    "cannot connect to ZooKeeper at {hosts}: {e} (is it running? try scripts/zk.sh start)"
                ),
            }
        }
    }

    fn connector(&self) -> zk::Connector {
        let mut connector = zk::Client::connector().with_session_timeout(self.requested_timeout);
        if let Some(digest) = &self.digest {
            connector = connector.with_auth("digest", digest.expose().as_bytes());
        }
        connector
    }

    /// Creates the chroot itself (a chrooted client cannot), once.
    async fn ensure_chroot(&self) -> Result<(), zk::Error> {
        if self.chroot.is_empty() || self.chroot_ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        let root = self.connector().connect(&self.hosts).await?;
        let opts = zk::CreateMode::Persistent.with_acls(self.acls());
        let made = match root.mkdir(&self.chroot, &opts).await {
            Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(e),
        };
        drop(root);
        made?;
        self.chroot_ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn open(&self) -> Result<(), zk::Error> {
        self.ensure_chroot().await?;
        let client = self
            .connector()
            .connect(&format!("{}{}", self.hosts, self.chroot))
            .await?;
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let session_id = client.session_id().0;
        tracing::info!(
            "ZooKeeper session 0x{session_id:x} established (epoch {epoch}, timeout {:?})",
            client.session_timeout()
        );
        self.view.send_replace(SessionView {
            epoch,
            session_id,
            link: Link::Connected,
            since: Instant::now(),
            negotiated_timeout: client.session_timeout(),
        });
        if let Ok(mut cur) = self.current.write() {
            *cur = Some((client, epoch));
        }
        Ok(())
    }

    /// The current client and the epoch of its session.
    pub fn client(&self) -> Option<(zk::Client, u64)> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    pub fn view(&self) -> SessionView {
        *self.view.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<SessionView> {
        self.view.subscribe()
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The ACLs of the nodes we create.
    pub fn acls(&self) -> zk::Acls<'static> {
        if self.digest.is_some() {
            zk::Acls::new(&OWNED_READABLE)
        } else {
            zk::Acls::anyone_all()
        }
    }

    /// The chroot (`""` or `/path`) under which every path lives.
    pub fn chroot(&self) -> &str {
        &self.chroot
    }

    /// The hosts, without the chroot.
    pub fn hosts(&self) -> &str {
        &self.hosts
    }

    /// Watches the session: on expiry opens a new one; reports
    /// disconnections, reconnections, expiries and new sessions on
    /// `events`, in the order they happened.
    pub async fn supervise(self: Arc<Self>, events: mpsc::Sender<SessionEvent>) {
        loop {
            let Some((client, epoch)) = self.client() else {
                return;
            };
            let mut states = client.state_watcher();
            drop(client);
            loop {
                let link = match states.changed().await {
                    zk::SessionState::Disconnected => Link::Disconnected,
                    zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                        Link::Connected
                    }
                    zk::SessionState::Expired | zk::SessionState::AuthFailed => Link::Expired,
                    zk::SessionState::Closed => Link::Closed,
                };
                tracing::warn!("ZooKeeper session epoch {epoch}: {}", link.as_str());
                self.view.send_modify(|v| {
                    v.link = link;
                    v.since = Instant::now();
                });
                match link {
                    Link::Disconnected => {
                        let _ = events.send(SessionEvent::Disconnected { epoch }).await;
                    }
                    Link::Connected => {
                        let _ = events.send(SessionEvent::Reconnected { epoch }).await;
                    }
                    Link::Expired | Link::Closed => break,
                    Link::Connecting => {}
                }
            }
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            let _ = events
                .send(SessionEvent::Lost {
                    epoch,
                    why: "ZooKeeper session expired",
                })
                .await;
            if let Ok(mut cur) = self.current.write() {
                *cur = None;
            }
            let mut pause = Duration::from_millis(100);
            loop {
                if self.closing.load(Ordering::SeqCst) {
                    return;
                }
                match self.open().await {
                    Ok(()) => {
                        self.reconnects.fetch_add(1, Ordering::Relaxed);
                        let epoch = self.epoch.load(Ordering::SeqCst);
                        let _ = events.send(SessionEvent::Restored { epoch }).await;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("ZooKeeper reconnection failed: {e}; retrying in {pause:?}");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }

    /// Closes the session so that our ephemeral nodes vanish at once.
    pub async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let taken = self.current.write().ok().and_then(|mut c| c.take());
        if let Some((client, _)) = taken {
            let mut states = client.state_watcher();
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(2), states.changed()).await;
        }
    }
}
