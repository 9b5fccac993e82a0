//! The service registry and the directory of bases, both in ZooKeeper
//! (this product has no meta0/meta1):
//!
//! - `/hc/ns/<NS>/srv/<type>/<service id>`: EPHEMERAL, one per live service,
//!   data = JSON `{"id","addr","type","ctime"}`;
//! - `/hc/ns/<NS>/dir/<type>/<KEY[0:2]>/<KEY[2:4]>/<base>`: PERSISTENT, the
//!   peers of a base fixed at creation, data = JSON [`DirectoryEntry`].

use crate::metrics::Metrics;
use crate::zk::{classify, ErrorClass, ZkSession};
use election_core::names::{BaseName, ServiceId, ServiceType, ZkLayout};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use zookeeper_client as zk;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub base: BaseName,
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub reference: String,
    pub peers: Vec<ServiceId>,
    #[serde(default)]
    pub ctime_ms: u64,
    /// Which creation of the base this is: drawn at random when the entry
    /// is created, and recorded in every replica. A container deleted and
    /// created again has the same base name but another incarnation (0: an
    /// entry written before incarnations were recorded).
    #[serde(default)]
    pub incarnation: u64,
}

impl DirectoryEntry {
    pub fn incarnation(&self) -> crate::storage::Incarnation {
        crate::storage::Incarnation {
            id: self.incarnation,
            ctime_ms: self.ctime_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("ZooKeeper is not connected")]
    NotConnected,
    #[error("ZooKeeper: {0}")]
    Zk(#[from] zk::Error),
    #[error("directory entry {path} is corrupt: {why}")]
    Corrupt { path: String, why: String },
    #[error("only {live} live {stype} service(s) registered, {wanted} needed")]
    NotEnoughServices {
        live: usize,
        wanted: usize,
        stype: ServiceType,
    },
}

#[derive(Clone)]
pub struct Directory {
    zk: Arc<ZkSession>,
    layout: ZkLayout,
    metrics: Arc<Metrics>,
    reads: Arc<Mutex<Reads>>,
}

const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// Entry reads that come together share one ZooKeeper request, the way a
/// group commit shares one fsync: while [`READS_IN_FLIGHT`] requests are
/// out, new reads wait, and the next request (a multi-read) takes up to
/// [`READS_PER_REQUEST`] of them. A lone read goes at once, alone. A storm
/// of cold elections (every service reads every base's entry) then costs
/// ZooKeeper a few requests per hundred bases instead of one per base and
/// service.
const READS_IN_FLIGHT: usize = 2;
const READS_PER_REQUEST: usize = 64;

type Read = Result<Option<Vec<u8>>, DirectoryError>;

#[derive(Default)]
struct Reads {
    in_flight: usize,
    waiting: VecDeque<(String, oneshot::Sender<Read>)>,
}

/// Gives a request slot back should its server be cancelled or panic. A
/// server that ends normally gives it back itself, under the lock in which
/// it saw nothing waiting: released any later, a read queued in between
/// would find every slot taken and wait for the next read to be served.
struct Slot(Option<Arc<Mutex<Reads>>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(reads) = &self.0 {
            lock(reads).in_flight -= 1;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Directory {
    pub fn new(zk: Arc<ZkSession>, layout: ZkLayout, metrics: Arc<Metrics>) -> Self {
        Self {
            zk,
            layout,
            metrics,
            reads: Arc::default(),
        }
    }

    /// The data of the node at `path` (`None`: no such node), read alone
    /// or together with others (see [`READS_IN_FLIGHT`]).
    async fn read(&self, path: String) -> Read {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut reads = lock(&self.reads);
            reads.waiting.push_back((path, tx));
            let start = reads.in_flight < READS_IN_FLIGHT;
            if start {
                reads.in_flight += 1;
            }
            start
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.serve_reads().await });
        }
        rx.await.unwrap_or(Err(DirectoryError::NotConnected))
    }

    /// Sends what waits, one request at a time, until nothing does.
    async fn serve_reads(&self) {
        let mut slot = Slot(Some(self.reads.clone()));
        loop {
            let batch: Vec<(String, oneshot::Sender<Read>)> = {
                let mut reads = lock(&self.reads);
                if reads.waiting.is_empty() {
                    reads.in_flight -= 1;
                    slot.0 = None;
                    return;
                }
                let n = reads.waiting.len().min(READS_PER_REQUEST);
                reads.waiting.drain(..n).collect()
            };
            let paths: Vec<&str> = batch.iter().map(|(p, _)| p.as_str()).collect();
            let results = self.read_now(&paths).await;
            for ((_, tx), result) in batch.into_iter().zip(results) {
                let _ = tx.send(result);
            }
        }
    }

    /// One request for every path: a get, or a multi-read. A multi-read
    /// the server refuses as a whole (too large a reply, say) is retried
    /// one path at a time.
    async fn read_now(&self, paths: &[&str]) -> Vec<Read> {
        let c = match self.client() {
            Ok(c) => c,
            Err(_) => {
                return paths
                    .iter()
                    .map(|_| Err(DirectoryError::NotConnected))
                    .collect()
            }
        };
        if let [path] = paths {
            let got = self.metrics.timed("directory_get", c.get_data(path)).await;
            return vec![entry_data(got.map(|(data, _)| data))];
        }
        let mut multi = c.new_multi_reader();
        // A path the client refuses is retried alone below, with its error.
        let got = match paths.iter().try_for_each(|p| multi.add_get_data(p)) {
            Ok(()) => {
                self.metrics
                    .timed("directory_multi_get", multi.commit())
                    .await
            }
            Err(e) => Err(e),
        };
        match got {
            Ok(results) if results.len() == paths.len() => results
                .into_iter()
                .map(|r| match r {
                    zk::MultiReadResult::Data { data, .. } => entry_data(Ok(data)),
                    zk::MultiReadResult::Error { err } => entry_data(Err(err)),
                    _ => Err(DirectoryError::Zk(zk::Error::UnexpectedError(
                        "a multi-read answered a get with something else".into(),
                    ))),
                })
                .collect(),
            Err(e)
                if classify(&e) == ErrorClass::SessionLost
                    || matches!(e, zk::Error::ConnectionLoss | zk::Error::Timeout) =>
            {
                paths
                    .iter()
                    .map(|_| Err(DirectoryError::Zk(e.clone())))
                    .collect()
            }
            _ => {
                let mut out = Vec::with_capacity(paths.len());
                for path in paths.iter().copied() {
                    let got = self.metrics.timed("directory_get", c.get_data(path)).await;
                    out.push(entry_data(got.map(|(data, _)| data)));
                }
                out
            }
        }
    }

    fn client(&self) -> Result<zk::Client, DirectoryError> {
        self.zk
            .client()
            .map(|(c, _)| c)
            .ok_or(DirectoryError::NotConnected)
    }

    /// Creates the fixed parts of the tree (idempotent, `openio zk bootstrap`).
    pub async fn bootstrap(&self, stype: &ServiceType) -> Result<(), DirectoryError> {
        let c = self.client()?;
        let opts = zk::CreateMode::Persistent.with_acls(self.zk.acls());
        for path in [
            self.layout.election_root(stype),
            self.layout.services_dir(stype),
            format!("{}/dir/{stype}", self.layout.ns_root()),
        ] {
            c.mkdir(&path, &opts).await?;
        }
        Ok(())
    }

    /// Registers this service (again, after a new session).
    pub async fn register(
        &self,
        stype: &ServiceType,
        me: &ServiceId,
        addr: &str,
    ) -> Result<(), DirectoryError> {
        let c = self.client()?;
        let path = format!("{}/{}", self.layout.services_dir(stype), me);
        let data = serde_json::json!({"id": me, "addr": addr, "type": stype, "ctime": now_ms()})
            .to_string();
        let opts = zk::CreateMode::Ephemeral.with_acls(self.zk.acls());
        for _ in 0..3 {
            match c.create(&path, data.as_bytes(), &opts).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => {
                    // Left by an earlier session of ours: replace it.
                    match c.check_stat(&path).await? {
                        Some(stat) if stat.ephemeral_owner == c.session_id().0 => return Ok(()),
                        Some(_) => match c.delete(&path, None).await {
                            Ok(()) | Err(zk::Error::NoNode) => {}
                            Err(e) => return Err(e.into()),
                        },
                        None => {}
                    }
                }
                Err(zk::Error::NoNode) => {
                    self.bootstrap(stype).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DirectoryError::Zk(zk::Error::NodeExists))
    }

    /// Live services of a type, sorted.
    pub async fn live_services(
        &self,
        stype: &ServiceType,
    ) -> Result<Vec<ServiceId>, DirectoryError> {
        let c = self.client()?;
        let mut out: Vec<ServiceId> = match c.list_children(&self.layout.services_dir(stype)).await
        {
            Ok(names) => names
                .into_iter()
                .filter_map(|n| ServiceId::new(n).ok())
                .collect(),
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        out.sort();
        Ok(out)
    }

    /// The directory entry of a base, if the base exists.
    pub async fn lookup(
        &self,
        stype: &ServiceType,
        base: &BaseName,
    ) -> Result<Option<DirectoryEntry>, DirectoryError> {
        let path = self.layout.directory_node(stype, base);
        match self.read(path.clone()).await? {
            Some(data) => {
                if data.len() > MAX_ENTRY_BYTES {
                    return Err(DirectoryError::Corrupt {
                        path,
                        why: format!("{} bytes", data.len()),
                    });
                }
                let entry: DirectoryEntry =
                    serde_json::from_slice(&data).map_err(|e| DirectoryError::Corrupt {
                        path: path.clone(),
                        why: e.to_string(),
                    })?;
                if entry.base != *base || entry.service_type != *stype {
                    return Err(DirectoryError::Corrupt {
                        path,
                        why: format!("it names {} of type {}", entry.base, entry.service_type),
                    });
                }
                Ok(Some(entry))
            }
            None => Ok(None),
        }
    }

    /// Records a new base with `replicas` peers chosen among live services by
    /// rendezvous hashing (stable, spreads bases). Idempotent: an existing
    /// entry is returned as is, with `false`.
    pub async fn create(
        &self,
        stype: &ServiceType,
        base: &BaseName,
        account: &str,
        reference: &str,
        replicas: usize,
    ) -> Result<(DirectoryEntry, bool), DirectoryError> {
        if let Some(entry) = self.lookup(stype, base).await? {
            return Ok((entry, false));
        }
        let live = self.live_services(stype).await?;
        if live.len() < replicas {
            return Err(DirectoryError::NotEnoughServices {
                live: live.len(),
                wanted: replicas,
                stype: stype.clone(),
            });
        }
        let mut ranked: Vec<(String, ServiceId)> = live
            .into_iter()
            .map(|s| {
                let h = election_core::names::ContainerId::compute(base.as_str(), s.as_str());
                (h.as_str().to_string(), s)
            })
            .collect();
        ranked.sort();
        let mut peers: Vec<ServiceId> = ranked.into_iter().take(replicas).map(|(_, s)| s).collect();
        peers.sort();
        let entry = DirectoryEntry {
            base: base.clone(),
            service_type: stype.clone(),
            account: account.to_string(),
            reference: reference.to_string(),
            peers,
            ctime_ms: now_ms(),
            incarnation: random_incarnation(base),
        };
        let path = self.layout.directory_node(stype, base);
        let c = self.client()?;
        let opts = zk::CreateMode::Persistent.with_acls(self.zk.acls());
        let data = serde_json::to_vec(&entry).map_err(|e| DirectoryError::Corrupt {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let parent = path
            .rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        // The base's election group directory, so its first election does
        // not pay for it.
        let key = election_core::names::ElectionKey::compute(base, stype);
        crate::zk::ensure_dir(&c, &self.layout.election_dir(stype, &key), self.zk.acls()).await?;
        for _ in 0..2 {
            match c.create(&path, &data, &opts).await {
                Ok(_) => {
                    self.index(stype, account, reference, base).await?;
                    return Ok((entry, true));
                }
                Err(zk::Error::NodeExists) => {
                    return match self.lookup(stype, base).await? {
                        Some(e) => Ok((e, false)),
                        None => Err(DirectoryError::Zk(zk::Error::NodeExists)),
                    };
                }
                Err(zk::Error::NoNode) => {
                    crate::zk::ensure_dir(&c, &parent, self.zk.acls()).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DirectoryError::Zk(zk::Error::NoNode))
    }
}

impl Directory {
    /// The references of an account's containers, sorted (`None`: the
    /// account has none, or never had).
    pub async fn account_references(
        &self,
        stype: &ServiceType,
        account: &str,
    ) -> Result<Option<Vec<String>>, DirectoryError> {
        let c = self.client()?;
        let names = match c
            .list_children(&self.index_path(stype, account, None))
            .await
        {
            Ok(n) => n,
            Err(zk::Error::NoNode) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut refs: Vec<String> = names
            .iter()
            .filter_map(|n| election_core::names::index_name(n))
            .collect();
        refs.sort();
        Ok(Some(refs))
    }

    /// When each reference's index entry was written (ms since the epoch;
    /// `None`: gone meanwhile), read 128 to a request.
    pub async fn index_mtimes(
        &self,
        stype: &ServiceType,
        account: &str,
        refs: &[String],
    ) -> Result<Vec<Option<i64>>, DirectoryError> {
        let c = self.client()?;
        let mut out = Vec::with_capacity(refs.len());
        for chunk in refs.chunks(128) {
            let mut multi = c.new_multi_reader();
            for r in chunk {
                multi.add_get_data(&self.index_path(stype, account, Some(r)))?;
            }
            for got in multi.commit().await? {
                out.push(match got {
                    zk::MultiReadResult::Data { stat, .. } => Some(stat.mtime),
                    _ => None,
                });
            }
        }
        Ok(out)
    }

    fn index_path(&self, stype: &ServiceType, account: &str, reference: Option<&str>) -> String {
        self.layout.account_index(stype, account, reference)
    }

    async fn index(
        &self,
        stype: &ServiceType,
        account: &str,
        reference: &str,
        base: &BaseName,
    ) -> Result<(), DirectoryError> {
        let c = self.client()?;
        crate::zk::ensure_dir(&c, &self.index_path(stype, account, None), self.zk.acls()).await?;
        let opts = zk::CreateMode::Persistent.with_acls(self.zk.acls());
        match c
            .create(
                &self.index_path(stype, account, Some(reference)),
                base.as_str().as_bytes(),
                &opts,
            )
            .await
        {
            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a base from the directory (and the account index): no
    /// service will manage it any more.
    pub async fn remove(
        &self,
        stype: &ServiceType,
        entry: &DirectoryEntry,
    ) -> Result<(), DirectoryError> {
        let c = self.client()?;
        for path in [
            self.layout.directory_node(stype, &entry.base),
            self.index_path(stype, &entry.account, Some(&entry.reference)),
        ] {
            match c.delete(&path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// A node's data, `None` when there is no such node.
fn entry_data(got: Result<Vec<u8>, zk::Error>) -> Read {
    match got {
        Ok(data) => Ok(Some(data)),
        Err(e) if classify(&e) == ErrorClass::NoNode => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A non-zero id that no earlier creation of `base` drew (64 random bits).
fn random_incarnation(base: &BaseName) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    base.hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .hash(&mut h);
    h.finish().max(1)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
