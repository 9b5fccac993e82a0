//! Base replicas: one SQLite file per base, named after its election key
//! (hex only: no user string ever becomes a path).
//!
//! Durability ([`Durability`], the `durability` setting): write-ahead log
//! (`journal_mode=WAL`, `<file>-wal` beside the file while a connection is
//! open), and either no fsync per commit (`process`: a committed
//! transaction is in the operating system's cache, which a killed process
//! does not lose; replication to a majority covers the loss of a minority
//! of machines) or one per commit (`power`: `synchronous=FULL`, a committed
//! transaction also survives a power loss). A copy received from the master
//! is written to a temporary file, fsynced, then renamed over the replica,
//! whatever the setting, once no connection to the replica is open and its
//! log is folded in (`BaseStore::quiesce`).

use election_core::names::{BaseName, ElectionKey, ServiceId, ServiceType};
use election_core::version::{ReplicaVersion, TableVersion};
use election_engine::{StoreFailure, StoreOk, StoreOp};
use rusqlite::{params, Connection, OpenFlags};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("base not found on this service")]
    Missing,
    #[error("out of order: the local copy is at {local}, the write expects {expected}")]
    OutOfOrder { local: String, expected: String },
    #[error("base is being restored")]
    Restoring,
    #[error("the copy was abandoned: the election moved on, the replica is left as it is")]
    Abandoned,
    #[error("base is still loading")]
    Loading,
    #[error("the open transaction was rolled back: {0}")]
    RolledBack(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub use election_core::version::{render_vector, Vector, WriteOp};

impl From<StoreError> for StoreFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Missing => StoreFailure::Missing,
            StoreError::OutOfOrder { .. } => StoreFailure::OutOfOrder(e.to_string()),
            StoreError::Restoring | StoreError::Abandoned => StoreFailure::Restoring,
            StoreError::Loading => StoreFailure::Loading,
            StoreError::RolledBack(_) | StoreError::Sqlite(_) | StoreError::Io(_) => {
                StoreFailure::Failed(e.to_string())
            }
        }
    }
}

/// Admin keys written at creation that name the base: never changed by a
/// write (nor are the `version:*` keys, which hold the version vector).
const IDENTITY_KEYS: [&str; 7] = [
    "sys.name",
    "sys.type",
    "sys.account",
    "sys.user.name",
    "sys.peers",
    "sys.m2.ctime",
    "sys.m2.incarnation",
];

pub use election_core::version::Incarnation;

/// Whether a client may set this system property, and why not.
pub fn check_system_key(key: &str) -> Result<(), String> {
    if !key.starts_with("sys.") {
        return Err(format!("system property {key:?} must start with \"sys.\""));
    }
    if IDENTITY_KEYS.contains(&key) {
        return Err(format!(
            "system property {key:?} names the base and is set at creation only"
        ));
    }
    Ok(())
}

/// The replicas' version vectors, kept in memory so that GETVERS does not
/// open SQLite. Every mutation goes through the store, which updates it; a
/// per-key generation stops a read that raced with a mutation from caching
/// a stale vector.
#[derive(Default)]
pub struct VersionCache {
    entries: Mutex<HashMap<ElectionKey, Cached>>,
}

/// What is known of one replica without opening it.
#[derive(Default)]
struct Cached {
    generation: u64,
    vector: Option<Vector>,
    /// The creation the replica's file records, once read or written
    /// (`BaseStore::incarnation_of`). A write never changes it: only a
    /// file replaced, set aside or removed, each under the replica's lease.
    incarnation: Option<Incarnation>,
}

impl VersionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ElectionKey, Cached>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn invalidate(&self, key: &ElectionKey) {
        let mut m = self.lock();
        let e = m.entry(key.clone()).or_default();
        e.generation += 1;
        e.vector = None;
    }

    fn set(&self, key: &ElectionKey, v: Vector) {
        let mut m = self.lock();
        let e = m.entry(key.clone()).or_default();
        e.generation += 1;
        e.vector = Some(v);
    }

    /// The cached vector, or the generation to quote when caching a read.
    fn get(&self, key: &ElectionKey) -> Result<Vector, u64> {
        let m = self.lock();
        match m.get(key) {
            Some(Cached {
                vector: Some(v), ..
            }) => Ok(v.clone()),
            Some(e) => Err(e.generation),
            None => Err(0),
        }
    }

    fn fill(&self, key: &ElectionKey, generation: u64, v: Vector) {
        let mut m = self.lock();
        let e = m.entry(key.clone()).or_default();
        if e.generation == generation {
            e.vector = Some(v);
        }
    }

    fn forget(&self, key: &ElectionKey) {
        // Also for a key never cached: a read in flight must not fill it.
        self.invalidate(key);
    }

    fn incarnation(&self, key: &ElectionKey) -> Option<Incarnation> {
        self.lock().get(key).and_then(|e| e.incarnation)
    }

    fn set_incarnation(&self, key: &ElectionKey, incarnation: Option<Incarnation>) {
        let mut m = self.lock();
        match (m.get_mut(key), incarnation) {
            (Some(e), i) => e.incarnation = i,
            (None, Some(i)) => {
                m.insert(
                    key.clone(),
                    Cached {
                        incarnation: Some(i),
                        ..Cached::default()
                    },
                );
            }
            (None, None) => {}
        }
    }
}

/// A write applied inside an open transaction on the master, waiting for the
/// slaves' answers. Dropped without `commit`, it is rolled back.
pub struct PendingWrite {
    /// Given back to the pool (its lease ended) when this is dropped.
    conn: Option<Connection>,
    pool: std::sync::Arc<Pooled>,
    /// The pool generation the connection was leased in.
    generation: u64,
    key: ElectionKey,
    cache: std::sync::Arc<VersionCache>,
    /// The committed version the transaction started from.
    pub prev: Vector,
    /// The version after each batch in it, oldest first; the batches after
    /// the first are in savepoints `b1`, `b2`... (pipelined replication).
    nexts: Vec<Vector>,
    open: bool,
}

/// The savepoint before batch `n` (counted from 0) of an open transaction.
fn savepoint(n: usize) -> String {
    format!("b{n}")
}

impl PendingWrite {
    fn conn(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("the connection of an unfinished write")
    }

    /// The version after its last batch.
    pub fn next(&self) -> &Vector {
        self.nexts.last().unwrap_or(&self.prev)
    }

    /// The versions its last batch moved the base from and to.
    fn last_batch(&self) -> (Vector, Vector) {
        let from = self.nexts.iter().rev().nth(1).unwrap_or(&self.prev);
        (from.clone(), self.next().clone())
    }

    pub fn commit(&mut self) -> Result<(), StoreError> {
        if !self.open {
            return Err(StoreError::RolledBack(
                "a savepoint could not be rolled back to".into(),
            ));
        }
        self.open = false;
        let conn = self.conn();
        if let Err(e) = exec(conn, "COMMIT") {
            let _ = exec(conn, "ROLLBACK");
            self.cache.invalidate(&self.key);
            return Err(e.into());
        }
        self.cache.set(&self.key, self.next().clone());
        Ok(())
    }

    pub fn rollback(&mut self) {
        if std::mem::take(&mut self.open) {
            if let Some(conn) = &self.conn {
                let _ = exec(conn, "ROLLBACK");
            }
        }
    }

    /// Undoes the batches after the first `keep`; should that fail, the
    /// whole transaction, so that its commit fails too.
    fn rollback_to(&mut self, keep: usize) -> Result<(), StoreError> {
        if keep == 0 || keep >= self.nexts.len() || !self.open {
            self.rollback();
            return Err(StoreError::RolledBack(format!(
                "no savepoint before batch {keep}"
            )));
        }
        let name = savepoint(keep);
        let undone = exec(self.conn(), &format!("ROLLBACK TO {name}"))
            .and_then(|()| exec(self.conn(), &format!("RELEASE {name}")));
        if let Err(e) = undone {
            self.rollback();
            return Err(e.into());
        }
        self.nexts.truncate(keep);
        Ok(())
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        self.rollback();
        self.pool
            .give_back(&self.key, self.generation, self.conn.take());
    }
}

/// The admin table's version rows (`version:<table>`), read as a range of
/// its key: `LIKE 'version:%'` read every row of the table (SQLite's LIKE
/// is case-insensitive, so it cannot use the key's order).
const VERSION_ROWS: &str = "SELECT k, v FROM admin WHERE k >= 'version:' AND k < 'version;'";

/// Sets one admin key (a system property or a table's version).
const SET_ADMIN: &str = "INSERT OR REPLACE INTO admin (k, v) VALUES (?1, ?2)";

/// Runs one statement without parameters, prepared once per connection
/// (parsing `BEGIN IMMEDIATE` or `COMMIT` again for every write was a
/// visible share of a store operation's CPU).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// A write transaction on a leased connection, rolled back when dropped
/// uncommitted (a failed `COMMIT` included); its `BEGIN IMMEDIATE` and
/// `COMMIT` come from the statement cache (rusqlite's `Transaction` parses
/// them each time).
struct Immediate<'c>(&'c Connection);

impl<'c> Immediate<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        exec(conn, "BEGIN IMMEDIATE")?;
        Ok(Self(conn))
    }

    fn commit(self) -> rusqlite::Result<()> {
        exec(self.0, "COMMIT")
    }
}

impl std::ops::Deref for Immediate<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0
    }
}

impl Drop for Immediate<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = exec(self.0, "ROLLBACK");
        }
    }
}

/// Connections to the replicas used lately, kept open: opening a base's
/// file anew for every operation (open, lock and stat calls, the schema
/// parsed, close) was a large share of a store operation's CPU.
///
/// A replica has at most one connection at a time, leased to one user:
/// connections hold their file's lock for as long as they are open
/// (`locking_mode=EXCLUSIVE`: no lock call and no hot-journal check per
/// transaction, which took 11 % of the CPU of writes to many bases), so a
/// second connection to the file would wait for the first to close.
#[derive(Default)]
struct Pool {
    idle: HashMap<ElectionKey, Connection>,
    /// The replicas whose connection is leased: another user waits.
    leased: std::collections::HashSet<ElectionKey>,
    /// Bumped when a replica's file is replaced or removed: a connection
    /// leased before it is to the old file and is never taken back.
    generation: HashMap<ElectionKey, u64>,
}

/// The pool, and the signal that a lease ended.
#[derive(Default)]
struct Pooled {
    pool: Mutex<Pool>,
    returned: std::sync::Condvar,
}

impl Pooled {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the lease of `key`'s connection: `conn` goes back to the pool
    /// if its file is still the replica's and no transaction is open on
    /// it; else it is closed (before the next user may open another).
    fn give_back(&self, key: &ElectionKey, generation: u64, conn: Option<Connection>) {
        let keep = conn.filter(|c| c.is_autocommit());
        let mut pool = self.lock();
        pool.leased.remove(key);
        let current = pool.generation.get(key).copied().unwrap_or(0) == generation;
        if let (Some(conn), true) = (keep, current) {
            if pool.idle.len() >= POOL_MAX && !pool.idle.contains_key(key) {
                let victim = pool.idle.keys().next().cloned();
                if let Some(v) = victim {
                    pool.idle.remove(&v);
                }
            }
            pool.idle.insert(key.clone(), conn);
        }
        drop(pool);
        self.returned.notify_all();
    }
}

/// How long a user waits for a replica's connection held by another (a
/// master's batch holds it until the slaves answer).
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A replica's write-ahead log is folded into its file once it holds this
/// many pages (SQLite's default, about 4 MiB), and is cut back to that size
/// after: at most `POOL_MAX` logs of 4 MiB. With 256 pages, 32 writers over
/// 32 bases made 4,818 and 5,127 writes/s against 5,448 and 5,707 (more
/// folds of the same pages).
const WAL_PAGES: i64 = 1000;

/// Idle connections kept, at most (each holds a file descriptor).
const POOL_MAX: usize = 64;

/// A connection to one replica, given back to the pool when dropped (unless
/// its file was replaced meanwhile, or a transaction is still open).
pub struct Lease<'a> {
    store: &'a BaseStore,
    key: ElectionKey,
    generation: u64,
    conn: Option<Connection>,
    /// The connection went on to a `PendingWrite`, which ends the lease.
    handed_on: bool,
}

impl Lease<'_> {
    fn into_parts(mut self) -> (Connection, u64) {
        self.handed_on = true;
        (self.conn.take().expect("leased"), self.generation)
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("leased")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("leased")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.handed_on {
            self.store
                .pooled
                .give_back(&self.key, self.generation, self.conn.take());
        }
    }
}

/// What a read of a replica returns.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    pub user: BTreeMap<String, String>,
    pub system: BTreeMap<String, String>,
    pub vector: Vector,
}

/// Metadata written into a replica's admin table at creation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BaseInfo {
    pub base: BaseName,
    pub service_type: ServiceType,
    pub account: String,
    pub reference: String,
    pub peers: Vec<ServiceId>,
    pub ctime_ms: u64,
    #[serde(default)]
    pub incarnation: u64,
}

impl BaseInfo {
    pub fn incarnation(&self) -> Incarnation {
        Incarnation {
            id: self.incarnation,
            ctime_ms: self.ctime_ms,
        }
    }
}

/// One copy being installed. Only the copy holding the base's current
/// ticket may replace the replica: an abandoned one never lands later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreTicket(u64);

/// What a commit waits for on one replica (docs/OPERATIONS.md, "Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The commit is handed to the operating system (`synchronous=OFF`):
    /// it survives kill -9 of the process, not a power loss of the machine,
    /// which may also leave the file damaged (SQLite's documentation).
    Process,
    /// The commit is on disk (`synchronous=FULL`, fsyncs): it survives a
    /// power loss too.
    Power,
}

impl Durability {
    pub fn parse(s: &str) -> Option<Durability> {
        match s {
            "process" => Some(Durability::Process),
            "power" => Some(Durability::Power),
            _ => None,
        }
    }

    /// Whether `op` is quick enough to run on an async worker instead of
    /// a blocking thread: without fsyncs (`Process`), ending a transaction
    /// or applying a few changes takes tens of microseconds, less than the
    /// two thread wake-ups of the hop to a blocking thread.
    pub fn runs_inline(self, op: &StoreOp) -> bool {
        /// Changes applied inline at most (a big batch takes milliseconds).
        const INLINE_OPS: usize = 64;
        self == Durability::Process
            && match op {
                StoreOp::Commit | StoreOp::Rollback | StoreOp::RollbackTo { .. } => true,
                StoreOp::Begin { ops, .. } | StoreOp::Apply { ops, .. } => ops.len() <= INLINE_OPS,
                StoreOp::Dump { .. } => false,
            }
    }

    fn synchronous(self) -> &'static str {
        match self {
            Durability::Process => "OFF",
            Durability::Power => "FULL",
        }
    }
}

pub struct BaseStore {
    root: PathBuf,
    durability: Durability,
    restoring: Mutex<HashMap<ElectionKey, RestoreTicket>>,
    tickets: std::sync::atomic::AtomicU64,
    /// Test-only: bases read as "loading" until then (slow start).
    loading_until: Mutex<Option<std::time::Instant>>,
    versions: std::sync::Arc<VersionCache>,
    /// The masters' batches applied in a transaction left open until the
    /// engine commits or rolls them back (at most one per base).
    open: Mutex<HashMap<ElectionKey, PendingWrite>>,
    pooled: std::sync::Arc<Pooled>,
}

impl BaseStore {
    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn open(data_dir: &Path, durability: Durability) -> std::io::Result<Self> {
        let root = data_dir.join("bases");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(data_dir.join("tmp"))?;
        Ok(Self {
            root,
            durability,
            restoring: Mutex::new(HashMap::new()),
            tickets: std::sync::atomic::AtomicU64::new(1),
            loading_until: Mutex::new(None),
            versions: std::sync::Arc::default(),
            open: Mutex::new(HashMap::new()),
            pooled: std::sync::Arc::default(),
        })
    }

    fn path(&self, key: &ElectionKey) -> PathBuf {
        self.root
            .join(&key.as_str()[..2])
            .join(format!("{key}.sqlite3"))
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.with_file_name("tmp")
    }

    fn connect(&self, path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The file's lock is taken once and kept while the connection is
        // open: a replica has one connection at a time (`Pool`). Set before
        // WAL, so that the log's index lives in this process's memory (no
        // `-shm` file, no shared-memory calls).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        // WAL: a commit appends each changed page once to `<file>-wal`,
        // instead of copying the old page to a rollback journal and then
        // writing the new one in place (the journal's copies and the
        // second write were a fifth of the CPU of writes to many bases).
        // The log is folded back into the file every `WAL_PAGES` pages
        // (then cut back to that size), and when the connection closes,
        // which then removes it. A commit in the log survives kill -9 like
        // one in the file: both are in the operating system's cache.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "{}: SQLite kept journal mode {mode:?} instead of WAL",
                path.display()
            ))));
        }
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", WAL_PAGES * 4096)?;
        // A rollback journal left by an earlier version of this service
        // holds nothing once the file is in WAL (a hot one was rolled back
        // when the mode was read); it goes when the file is replaced or
        // removed (`remove_sidecars`), not at every open.
        conn.pragma_update(None, "synchronous", self.durability.synchronous())?;
        Ok(conn)
    }

    /// Creates the replica if absent. Returns false when it already existed.
    pub fn create(&self, key: &ElectionKey, info: &BaseInfo) -> Result<bool, StoreError> {
        let path = self.path(key);
        if path.exists() {
            match self.incarnation_of(key) {
                // A replica of a deleted container of the same name: it
                // must not come back with the new one.
                Ok(Some(found)) if !info.incarnation().holds(&found) => {
                    self.set_aside_stale(key)?;
                }
                _ => return Ok(false),
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self
            .tmp_dir()
            .join(format!("{key}.create.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = {
            let mut conn = self.connect(
                &tmp,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )?;
            let tx = conn.transaction()?;
            tx.execute_batch(
                // Keyed by `k` alone (WITHOUT ROWID): a write touches one
                // b-tree per table instead of the rows' and the key index's.
                "CREATE TABLE admin (k TEXT PRIMARY KEY NOT NULL, v BLOB) WITHOUT ROWID;
                 CREATE TABLE properties (k TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL) WITHOUT ROWID;",
            )?;
            let peers: Vec<&str> = info.peers.iter().map(ServiceId::as_str).collect();
            let rows = [
                // The admin table's version names the creation: replicas
                // of two creations of one base always compare as diverged.
                (
                    "version:main.admin".to_string(),
                    render_table_version(&TableVersion {
                        version: 1,
                        when: info.ctime_ms as i64,
                        writer: info.incarnation,
                    }),
                ),
                (
                    "version:main.properties".to_string(),
                    format!("0:{}", info.ctime_ms),
                ),
                // OpenIO's names and units: `openio container show` reads them.
                ("sys.name".to_string(), info.base.to_string()),
                ("sys.type".to_string(), info.service_type.to_string()),
                ("sys.account".to_string(), info.account.clone()),
                ("sys.user.name".to_string(), info.reference.clone()),
                ("sys.peers".to_string(), peers.join(",")),
                (
                    "sys.m2.ctime".to_string(),
                    (info.ctime_ms * 1000).to_string(),
                ),
                ("sys.status".to_string(), "0".to_string()),
                (
                    "sys.m2.incarnation".to_string(),
                    info.incarnation.to_string(),
                ),
            ];
            for (k, v) in &rows {
                tx.execute("INSERT INTO admin (k, v) VALUES (?1, ?2)", params![k, v])?;
            }
            tx.commit()?;
            rows.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("version:")?.to_string(), v)))
                .map(|(t, v)| parse_table_version(v).map(|tv| (t, tv)))
                .collect::<Option<Vector>>()
        };
        // Closed above: its log is folded in and removed.
        std::fs::File::open(&tmp)?.sync_all()?;
        remove_sidecars(&tmp)?;
        // No replica here (or it was set aside): files left beside the
        // path belong to none.
        self.replacing(key);
        remove_sidecars(&path)?;
        std::fs::rename(&tmp, &path)?;
        // Known: the vector just written. The first GETVERS of the base's
        // election (usually right after its creation) is answered from
        // memory.
        match written {
            Some(v) => self.versions.set(key, v),
            None => self.versions.invalidate(key),
        }
        self.versions.set_incarnation(key, Some(info.incarnation()));
        sync_dir(path.parent())?;
        Ok(true)
    }

    /// Test-only fault: every base reads as still loading for `d`.
    pub fn simulate_slow_load(&self, d: std::time::Duration) {
        *self.loading_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now() + d);
    }

    fn loading(&self) -> bool {
        self.loading_until
            .lock()
            .map(|l| l.is_some_and(|t| std::time::Instant::now() < t))
            .unwrap_or(true)
    }

    /// The version vector of the local replica, or why it is not known.
    pub fn version(&self, key: &ElectionKey) -> ReplicaVersion {
        if let Some(unknown) = self.unknown_now(key) {
            return unknown;
        }
        let generation = match self.versions.get(key) {
            Ok(tables) => return ReplicaVersion::Known { tables },
            Err(g) => g,
        };
        // Through the pool: a fresh connection (open, pragmas, the schema
        // parsed) cost more than the read, on the path of every GETVERS
        // round whose version memory did not know.
        let conn = match self.open_rw(key) {
            Ok(conn) => conn,
            Err(StoreError::Missing) => return ReplicaVersion::Missing,
            Err(e) => {
                return ReplicaVersion::Unknown {
                    reason: format!("base unreadable: {e}"),
                }
            }
        };
        match Self::read_versions(&conn) {
            Ok(tables) => {
                self.versions.fill(key, generation, tables.clone());
                ReplicaVersion::Known { tables }
            }
            Err(e) => ReplicaVersion::Unknown {
                reason: format!("base unreadable: {e}"),
            },
        }
    }

    /// The version when memory knows it (cached, or unknown while loading or
    /// restoring): no disk read, so no blocking thread. `None`: ask `version`.
    pub fn version_in_memory(&self, key: &ElectionKey) -> Option<ReplicaVersion> {
        self.unknown_now(key).or_else(|| {
            self.versions
                .get(key)
                .ok()
                .map(|tables| ReplicaVersion::Known { tables })
        })
    }

    fn unknown_now(&self, key: &ElectionKey) -> Option<ReplicaVersion> {
        if self.loading() {
            return Some(ReplicaVersion::Unknown {
                reason: "base is still loading".into(),
            });
        }
        if self.is_restoring(key) {
            return Some(ReplicaVersion::Unknown {
                reason: "base is being restored from the master".into(),
            });
        }
        None
    }

    fn read_versions(conn: &Connection) -> rusqlite::Result<BTreeMap<String, TableVersion>> {
        let mut stmt = conn.prepare_cached(VERSION_ROWS)?;
        let mut rows = stmt.query([])?;
        let mut out = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let k: String = row.get(0)?;
            let v: String = row.get(1)?;
            let table = k.trim_start_matches("version:").to_string();
            let Some(tv) = parse_table_version(&v) else {
                return Err(rusqlite::Error::InvalidColumnType(
                    1,
                    k,
                    rusqlite::types::Type::Text,
                ));
            };
            out.insert(table, tv);
        }
        if out.is_empty() {
            return Err(rusqlite::Error::QueryReturnedNoRows);
        }
        Ok(out)
    }

    fn open_rw(&self, key: &ElectionKey) -> Result<Lease<'_>, StoreError> {
        if self.loading() {
            return Err(StoreError::Loading);
        }
        if self.is_restoring(key) {
            return Err(StoreError::Restoring);
        }
        let path = self.path(key);
        if !path.exists() {
            return Err(StoreError::Missing);
        }
        self.lease(key)
    }

    /// `key`'s connection, once no other user holds it (at most
    /// `LEASE_WAIT`): the one kept in the pool, or a new one.
    fn lease(&self, key: &ElectionKey) -> Result<Lease<'_>, StoreError> {
        let mut lease = self.lease_slot(key)?;
        if lease.conn.is_none() {
            let conn = self.connect(&self.path(key), OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            lease.conn = Some(conn);
        }
        Ok(lease)
    }

    /// `key`'s lease, once no other user holds it, with the connection kept
    /// in the pool if there is one (none is opened).
    fn lease_slot(&self, key: &ElectionKey) -> Result<Lease<'_>, StoreError> {
        let deadline = std::time::Instant::now() + LEASE_WAIT;
        let mut pool = self.pooled.lock();
        while pool.leased.contains(key) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the replica stayed busy for {LEASE_WAIT:?} (a write waiting for \
                         its slaves holds it): try again; if it lasts, look for a slave \
                         that does not answer (openio election status)"
                    ),
                )));
            }
            pool = self
                .pooled
                .returned
                .wait_timeout(pool, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        pool.leased.insert(key.clone());
        let generation = pool.generation.get(key).copied().unwrap_or(0);
        let idle = pool.idle.remove(key);
        drop(pool);
        // Leased from here: the lease ends when it drops, whatever happens
        // next.
        Ok(Lease {
            store: self,
            key: key.clone(),
            generation,
            conn: idle,
            handed_on: false,
        })
    }

    /// The replica's file is about to be replaced or removed: waits for its
    /// connection's user, closes the connection, and folds into the file
    /// what a log left beside it holds (a crash leaves one; closing removes
    /// it otherwise). Until the returned lease drops, no connection to the
    /// file is open and none can be: a connection to the old file would
    /// remove the new file's log by name when it closes, and its writes
    /// would land in the old file. The replica's remembered creation is
    /// forgotten: `incarnation_of` reads it under the lease held here.
    fn quiesce(&self, key: &ElectionKey) -> Result<Lease<'_>, StoreError> {
        let mut lease = self.lease_slot(key)?;
        drop(lease.conn.take());
        self.replacing(key);
        self.versions.set_incarnation(key, None);
        let path = self.path(key);
        if path.exists() && sidecar(&path, "-wal").exists() {
            let folded = self
                .connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
                .and_then(|conn| {
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                    Ok(())
                });
            if let Err(e) = folded {
                tracing::warn!(
                    %key,
                    error = %e,
                    "the write-ahead log left beside the replica could not be folded into it"
                );
            }
        }
        Ok(lease)
    }

    /// The replica's file is about to be replaced or removed: connections
    /// to it are closed, and those leased are not taken back.
    fn replacing(&self, key: &ElectionKey) {
        let stale = {
            let mut pool = self.pooled.lock();
            *pool.generation.entry(key.clone()).or_insert(0) += 1;
            pool.idle.remove(key)
        };
        drop(stale);
    }

    fn vector_in(tx: &Connection) -> Result<Vector, StoreError> {
        let mut stmt = tx.prepare_cached(VERSION_ROWS)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vector::new();
        for row in rows {
            let (k, v) = row?;
            let tv = parse_table_version(&v).unwrap_or(TableVersion {
                version: -1,
                ..TableVersion::default()
            });
            out.insert(k.trim_start_matches("version:").to_string(), tv);
        }
        Ok(out)
    }

    fn apply_ops(tx: &Connection, ops: &[WriteOp]) -> Result<(), StoreError> {
        for op in ops {
            match op {
                WriteOp::Set { key, value } => {
                    tx.prepare_cached("INSERT OR REPLACE INTO properties (k, v) VALUES (?1, ?2)")?
                        .execute(params![key, value])?;
                }
                WriteOp::Unset { key } => {
                    tx.prepare_cached("DELETE FROM properties WHERE k = ?1")?
                        .execute(params![key])?;
                }
                WriteOp::SetSystem { key, value } => {
                    // Checked by the master before the write; checked again
                    // here so that no replicated op can touch the vector.
                    check_system_key(key).map_err(|why| {
                        StoreError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, why))
                    })?;
                    tx.prepare_cached(SET_ADMIN)?.execute(params![key, value])?;
                }
            }
        }
        Ok(())
    }

    /// Writes the version rows of `next` that differ from `prev`, the
    /// vector the file holds (a write bumps one table's; rewriting the
    /// others cost a statement each).
    fn store_vector(tx: &Connection, prev: &Vector, next: &Vector) -> Result<(), StoreError> {
        for (table, tv) in next.iter().filter(|(t, tv)| prev.get(*t) != Some(tv)) {
            tx.prepare_cached(SET_ADMIN)?.execute(params![
                format!("version:{table}"),
                render_table_version(tv)
            ])?;
        }
        Ok(())
    }

    /// Runs one of the engine's store ops, on a blocking thread. A batch's
    /// transaction stays open between `Begin` and `Commit` or `Rollback`,
    /// held here, not by a thread. `Dump` hands bytes to a peer: see `dump`.
    pub fn run(
        &self,
        key: &ElectionKey,
        op: &StoreOp,
        when_ms: i64,
    ) -> Result<StoreOk, StoreFailure> {
        let take = || {
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key)
        };
        match op {
            StoreOp::Begin {
                ops,
                writer,
                behind,
            } => {
                let pending = match take() {
                    None if *behind == 0 => self.begin_write(key, ops, when_ms, *writer)?,
                    // A batch behind others in flight: in a savepoint.
                    Some(pending) if pending.open && pending.nexts.len() == *behind => {
                        self.extend_write(pending, ops, when_ms, *writer)?
                    }
                    other => {
                        // The batches before it were rolled back (a failed
                        // ROLLBACK TO), or never begun here: a transaction
                        // left is kept, so that their commit fails too.
                        let held = other.as_ref().map_or(0, |p| p.nexts.len());
                        if let Some(dead) = other {
                            self.open
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(key.clone(), dead);
                        }
                        return Err(StoreFailure::Failed(format!(
                            "{behind} batches in flight before this one, {held} open here"
                        )));
                    }
                };
                let (prev, next) = pending.last_batch();
                let begun = StoreOk::Begun { prev, next };
                self.open
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), pending);
                Ok(begun)
            }
            StoreOp::Commit => {
                let mut pending =
                    take().ok_or_else(|| StoreFailure::Failed("no open batch to commit".into()))?;
                let committed = pending.commit();
                // Its connection goes back to the pool.
                drop(pending);
                committed?;
                Ok(StoreOk::Committed)
            }
            StoreOp::Rollback => {
                if let Some(mut pending) = take() {
                    pending.rollback();
                }
                Ok(StoreOk::RolledBack)
            }
            StoreOp::RollbackTo { keep } => {
                let mut pending = take()
                    .ok_or_else(|| StoreFailure::Failed("no open batch to roll back".into()))?;
                let undone = pending.rollback_to(*keep);
                // Kept even when rolled back whole: the commit that follows
                // then fails, as it must.
                self.open
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), pending);
                undone?;
                Ok(StoreOk::RolledBack)
            }
            StoreOp::Apply { prev, next, ops } => {
                self.apply_replica(key, ops, prev, next)?;
                Ok(StoreOk::Applied)
            }
            StoreOp::Dump { .. } => Err(StoreFailure::Failed(
                "a copy is taken with BaseStore::dump".into(),
            )),
        }
    }

    /// Starts the master's side of a write: `ops` applied and the properties
    /// version bumped inside an open transaction, committed or rolled back
    /// later (after the slaves answered).
    pub fn begin_write(
        &self,
        key: &ElectionKey,
        ops: &[WriteOp],
        when_ms: i64,
        writer: u64,
    ) -> Result<PendingWrite, StoreError> {
        let (conn, generation) = self.open_rw(key)?.into_parts();
        // Dropping `pending` on an error below rolls the transaction back
        // and ends the connection's lease.
        let mut pending = PendingWrite {
            key: key.clone(),
            cache: self.versions.clone(),
            conn: Some(conn),
            pool: self.pooled.clone(),
            generation,
            prev: Vector::new(),
            nexts: Vec::new(),
            open: false,
        };
        exec(pending.conn(), "BEGIN IMMEDIATE")?;
        pending.open = true;
        self.versions.invalidate(key);
        let prev = Self::vector_in(pending.conn())?;
        // The committed version until the batch commits: a version read
        // meanwhile is answered from memory, not after the batch (its
        // connection is leased until then).
        self.versions.set(key, prev.clone());
        let next = Self::write_batch(pending.conn(), &prev, ops, when_ms, writer)?;
        pending.prev = prev;
        pending.nexts.push(next);
        Ok(pending)
    }

    /// A batch behind others in flight: applied in a savepoint of their
    /// transaction, from the version they left. On an error only this
    /// batch is undone; the others stay open.
    pub fn extend_write(
        &self,
        mut pending: PendingWrite,
        ops: &[WriteOp],
        when_ms: i64,
        writer: u64,
    ) -> Result<PendingWrite, StoreError> {
        let name = savepoint(pending.nexts.len());
        let prev = pending.next().clone();
        let written = exec(pending.conn(), &format!("SAVEPOINT {name}"))
            .map_err(StoreError::from)
            .and_then(|()| Self::write_batch(pending.conn(), &prev, ops, when_ms, writer));
        match written {
            Ok(next) => {
                pending.nexts.push(next);
                Ok(pending)
            }
            Err(e) => {
                let undone = exec(pending.conn(), &format!("ROLLBACK TO {name}"))
                    .and_then(|()| exec(pending.conn(), &format!("RELEASE {name}")));
                if undone.is_err() {
                    // Ends the whole transaction: the batches before it
                    // then fail to commit.
                    pending.rollback();
                }
                let key = pending.key.clone();
                self.open
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, pending);
                Err(e)
            }
        }
    }

    /// Applies one batch's `ops` at version `prev` and bumps the properties
    /// version, stamped: the version after it.
    fn write_batch(
        conn: &Connection,
        prev: &Vector,
        ops: &[WriteOp],
        when_ms: i64,
        writer: u64,
    ) -> Result<Vector, StoreError> {
        Self::apply_ops(conn, ops)?;
        let mut next = prev.clone();
        let entry = next.entry("main.properties".to_string()).or_default();
        entry.version += 1;
        // The stamp tells two writes at one version apart (see
        // `election_core::version::compare`). `when` is for people and can
        // repeat across clocks; `writer`, chosen by the engine, cannot.
        entry.when = when_ms.max(entry.when + 1);
        entry.writer = writer;
        Self::store_vector(conn, prev, &next)?;
        Ok(next)
    }

    /// A write committed at once (tests: the master's path waits for slaves).
    #[cfg(test)]
    pub fn apply(
        &self,
        key: &ElectionKey,
        ops: &[WriteOp],
        when_ms: i64,
    ) -> Result<(Vector, Vector), StoreError> {
        let mut pending = self.begin_write(key, ops, when_ms, 0)?;
        let committed = pending.commit();
        let vectors = (pending.prev.clone(), pending.next().clone());
        drop(pending);
        committed.map(|()| vectors)
    }

    /// A slave's side: applies a write only if the local copy is exactly at
    /// `prev` (or already at `next`: a retried write), so no write is ever
    /// applied out of order or twice.
    pub fn apply_replica(
        &self,
        key: &ElectionKey,
        ops: &[WriteOp],
        prev: &Vector,
        next: &Vector,
    ) -> Result<bool, StoreError> {
        let conn = self.open_rw(key)?;
        let tx = Immediate::begin(&conn)?;
        self.versions.invalidate(key);
        let local = Self::vector_in(&tx)?;
        // Whole vectors, timestamps included (they are the master's, copied
        // verbatim): a copy holding a different write at the same version
        // numbers (one the master rolled back) is out of order, not "done".
        if local == *next {
            return Ok(false);
        }
        if local != *prev {
            return Err(StoreError::OutOfOrder {
                local: render_vector(&local),
                expected: render_vector(prev),
            });
        }
        Self::apply_ops(&tx, ops)?;
        Self::store_vector(&tx, &local, next)?;
        tx.commit()?;
        if self.is_restoring(key) {
            // A copy from the master is replacing this file: its vector wins.
            self.versions.invalidate(key);
        } else {
            self.versions.set(key, next.clone());
        }
        Ok(true)
    }

    /// The properties of the local replica: the user's, the system ones
    /// (admin keys other than the version vector), and its vector.
    pub fn properties(&self, key: &ElectionKey) -> Result<Properties, StoreError> {
        let mut conn = self.open_rw(key)?;
        let tx = conn.transaction()?;
        let vector = Self::vector_in(&tx)?;
        let read = |sql: &str| -> Result<BTreeMap<String, String>, StoreError> {
            let mut stmt = tx.prepare(sql)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        };
        Ok(Properties {
            user: read("SELECT k, v FROM properties")?,
            system: read("SELECT k, CAST(v AS TEXT) FROM admin WHERE k NOT LIKE 'version:%'")?,
            vector,
        })
    }

    /// Removes the local replica (its container was deleted).
    pub fn remove(&self, key: &ElectionKey) -> Result<bool, StoreError> {
        self.versions.forget(key);
        let quiet = self.quiesce(key)?;
        let path = self.path(key);
        let removed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        remove_sidecars(&path)?;
        drop(quiet);
        Ok(removed)
    }

    /// One admin key of the local replica.
    #[cfg(test)]
    pub fn admin_value(&self, key: &ElectionKey, k: &str) -> Result<Option<String>, StoreError> {
        let path = self.path(key);
        if !path.exists() {
            return Err(StoreError::Missing);
        }
        let conn = self.lease(key)?;
        Self::admin_in(&conn, k)
    }

    fn admin_in(conn: &Connection, k: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(conn
            .query_row("SELECT v FROM admin WHERE k = ?1", [k], |r| {
                r.get::<_, String>(0)
            })
            .optional()?)
    }

    /// A consistent snapshot of the replica, as bytes (for a peer's resync).
    pub fn dump(&self, key: &ElectionKey) -> Result<Vec<u8>, StoreError> {
        if self.is_restoring(key) {
            return Err(StoreError::Restoring);
        }
        let path = self.path(key);
        if !path.exists() {
            return Err(StoreError::Missing);
        }
        let tmp = self
            .tmp_dir()
            .join(format!("{key}.dump.{:x}", rand_suffix()));
        let _ = std::fs::remove_file(&tmp);
        let conn = self.lease(key)?;
        conn.execute("VACUUM INTO ?1", [tmp.to_string_lossy()])?;
        let bytes = std::fs::read(&tmp);
        let _ = std::fs::remove_file(&tmp);
        let _ = remove_sidecars(&tmp);
        Ok(bytes?)
    }

    /// Marks the replica as restoring: its version is unknown until the copy
    /// holding the returned ticket is installed, fails, or is abandoned. A
    /// new ticket voids the previous one.
    pub fn begin_restore(&self, key: &ElectionKey) -> RestoreTicket {
        let ticket = RestoreTicket(
            self.tickets
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        self.restoring_set().insert(key.clone(), ticket);
        ticket
    }

    /// Abandons the copy holding `ticket`: it will not be installed, and
    /// the replica is readable again. Once this returns, no rename of that
    /// copy can happen (issue 14, H1: a copy finishing on a blocking thread
    /// after its election moved on overwrote writes acknowledged since).
    pub fn abort_restore(&self, key: &ElectionKey, ticket: RestoreTicket) {
        let mut set = self.restoring_set();
        if set.get(key) == Some(&ticket) {
            set.remove(key);
        }
    }

    fn restoring_set(&self) -> std::sync::MutexGuard<'_, HashMap<ElectionKey, RestoreTicket>> {
        self.restoring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_restoring(&self, key: &ElectionKey) -> bool {
        self.restoring_set().contains_key(key)
    }

    /// Replaces the replica with a copy received from the master, after
    /// checking that the copy is a readable base, unless the copy was
    /// abandoned meanwhile (`StoreError::Abandoned`). Ends the restore.
    pub fn restore(
        &self,
        key: &ElectionKey,
        ticket: RestoreTicket,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let result = self
            .prepare_restore(key, bytes)
            .and_then(|tmp| self.install_restore(key, ticket, tmp));
        self.abort_restore(key, ticket);
        result
    }

    /// Moves the replica out of the way, into `<data>/set-aside/`, kept
    /// for forensics or a manual restore: the base is then missing here,
    /// and the election copies it from whichever replica leads. `ticket`
    /// (from `begin_restore`, taken before the election was left) keeps the
    /// replica unknown meanwhile, so that it cannot lead with this copy.
    pub fn set_aside(
        &self,
        key: &ElectionKey,
        ticket: RestoreTicket,
    ) -> Result<PathBuf, StoreError> {
        let path = self.path(key);
        let dir = self.root.with_file_name("set-aside");
        std::fs::create_dir_all(&dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let dest = dir.join(format!("{key}.{stamp}.sqlite3"));
        // Taken before the restoring set's lock: the wait for a batch in
        // flight must not hold every other base's restore.
        let quiet = self.quiesce(key)?;
        {
            let mut set = self.restoring_set();
            if set.get(key) != Some(&ticket) {
                return Err(StoreError::Abandoned);
            }
            if !path.exists() {
                set.remove(key);
                return Err(StoreError::Missing);
            }
            std::fs::rename(&path, &dest)?;
            // What the copy holds beside it goes with it: a write-ahead log
            // that could not be folded in, a hot rollback journal (left by
            // a crash of an earlier version of this service). A journal
            // that is not hot (`journal_mode=PERSIST` zeroed its header)
            // holds nothing, and is removed.
            let log = sidecar(&path, "-wal");
            if log.exists() {
                std::fs::rename(&log, sidecar(&dest, "-wal"))?;
            }
            let journal = sidecar(&path, "-journal");
            if journal_is_hot(&journal) {
                std::fs::rename(&journal, sidecar(&dest, "-journal"))?;
            }
            remove_sidecars(&path)?;
            self.versions.invalidate(key);
            set.remove(key);
        }
        drop(quiet);
        sync_dir(path.parent())?;
        sync_dir(Some(&dir))?;
        Ok(dest)
    }

    /// Is there a replica file for `key` (one `stat`, no SQLite)?
    pub fn has_replica(&self, key: &ElectionKey) -> bool {
        self.path(key).exists()
    }

    /// The incarnation of the local replica (None: no replica here). Read
    /// once, then from memory: a write never changes it, and whatever
    /// replaces the file does so under the replica's lease (`quiesce`,
    /// which forgets it), held here until the read is remembered. A ZooKeeper session lost makes every
    /// election ask again: 100,000 of them opened 100,000 files for it.
    pub fn incarnation_of(&self, key: &ElectionKey) -> Result<Option<Incarnation>, StoreError> {
        let path = self.path(key);
        if !path.exists() {
            return Ok(None);
        }
        if let Some(known) = self.versions.incarnation(key) {
            return Ok(Some(known));
        }
        let conn = self.lease(key)?;
        let read = |k: &str| -> Result<u64, StoreError> {
            Ok(Self::admin_in(&conn, k)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0))
        };
        let found = Incarnation {
            id: read("sys.m2.incarnation")?,
            // Recorded in µs, as OpenIO does.
            ctime_ms: read("sys.m2.ctime")? / 1000,
        };
        self.versions.set_incarnation(key, Some(found));
        drop(conn);
        Ok(Some(found))
    }

    /// Sets aside a replica of another incarnation (see `set_aside`).
    pub fn set_aside_stale(&self, key: &ElectionKey) -> Result<PathBuf, StoreError> {
        let ticket = self.begin_restore(key);
        let moved = self.set_aside(key, ticket);
        self.abort_restore(key, ticket);
        moved
    }

    /// Writes the copy to a temporary file, synced, and checks it is a base.
    fn prepare_restore(&self, key: &ElectionKey, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let tmp = self
            .tmp_dir()
            .join(format!("{key}.restore.{:x}", rand_suffix()));
        let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes));
        let checked = written.map_err(StoreError::from).and_then(|()| {
            // Opening it puts it in WAL (a header write); closing it folds
            // the log in and removes it. Then the whole file is synced.
            let conn = self.connect(&tmp, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            Self::read_versions(&conn)?;
            drop(conn);
            std::fs::File::open(&tmp)?.sync_all()?;
            remove_sidecars(&tmp)?;
            Ok(())
        });
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&tmp);
            let _ = remove_sidecars(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    /// Renames a prepared copy over the replica if `ticket` is still the
    /// base's current one. The check and the rename happen under the lock
    /// `abort_restore` takes, so an abort and an install never interleave.
    fn install_restore(
        &self,
        key: &ElectionKey,
        ticket: RestoreTicket,
        tmp: PathBuf,
    ) -> Result<(), StoreError> {
        let path = self.path(key);
        // Taken before the restoring set's lock: the wait for a batch in
        // flight must not hold every other base's restore.
        let installed = self.quiesce(key).and_then(|quiet| {
            let mut set = self.restoring_set();
            if set.get(key) != Some(&ticket) {
                return Err(StoreError::Abandoned);
            }
            // Files beside the replica belong to the copy being replaced:
            // replayed into the new one, a log or journal would corrupt it.
            // Its log was folded in (`quiesce`); one that could not be
            // holds writes of a copy this one supersedes.
            let renamed = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| remove_sidecars(&path))
                .and_then(|()| std::fs::rename(&tmp, &path));
            self.versions.invalidate(key);
            if renamed.is_ok() {
                set.remove(key);
            }
            drop(quiet);
            renamed.map_err(StoreError::from)
        });
        if installed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        installed?;
        sync_dir(path.parent())?;
        Ok(())
    }
}

/// A table's version as the admin table keeps it: `version:when`, and
/// `:writer` when there is one (bases written before it read as writer 0).
fn render_table_version(tv: &TableVersion) -> String {
    if tv.writer == 0 {
        format!("{}:{}", tv.version, tv.when)
    } else {
        format!("{}:{}:{}", tv.version, tv.when, tv.writer)
    }
}

fn parse_table_version(v: &str) -> Option<TableVersion> {
    let mut parts = v.splitn(3, ':');
    let version = parts.next()?.parse().ok()?;
    let when = parts.next().map_or(Some(0), |w| w.parse().ok())?;
    let writer = parts.next().map_or(Some(0), |w| w.parse().ok())?;
    Some(TableVersion {
        version,
        when,
        writer,
    })
}

/// Whether a rollback journal would be replayed: it exists and its header
/// is not zeroed (SQLite reads a journal whose first byte is 0 as empty).
fn journal_is_hot(journal: &Path) -> bool {
    use std::io::Read;
    let mut first = [0u8; 1];
    std::fs::File::open(journal)
        .and_then(|mut f| f.read(&mut first))
        .is_ok_and(|n| n == 1 && first[0] != 0)
}

/// `<path><suffix>`: one of the files SQLite keeps beside a base (`-wal`,
/// `-journal`, `-shm`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes `<path><suffix>`, if any.
fn remove_sidecar(path: &Path, suffix: &str) -> std::io::Result<()> {
    match std::fs::remove_file(sidecar(path, suffix)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes every file SQLite keeps beside `path`. Only while no connection
/// to `path` is open, and only once what they hold is folded in or not
/// wanted: a log or journal left beside another file would be replayed
/// into it, and corrupt it.
fn remove_sidecars(path: &Path) -> std::io::Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        remove_sidecar(path, suffix)?;
    }
    Ok(())
}

fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    if let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use election_core::version::{compare, same_versions, VersionDiff};

    fn info(base: &BaseName) -> BaseInfo {
        BaseInfo {
            base: base.clone(),
            service_type: ServiceType::new("meta2").expect("valid"),
            account: "acct".into(),
            reference: "ref".into(),
            peers: vec![ServiceId::new("127.0.0.1:1").expect("valid")],
            ctime_ms: 5,
            incarnation: 77,
        }
    }

    /// A store in a fresh directory named after `tag`, holding one new base.
    fn store_with(
        tag: &str,
        durability: Durability,
        base: &str,
    ) -> (PathBuf, BaseStore, BaseName, ElectionKey) {
        let dir = std::env::temp_dir().join(format!("store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = BaseStore::open(&dir, durability).expect("open");
        let b = BaseName::parse(base).expect("valid");
        let key = ElectionKey::compute(&b, &ServiceType::new("meta2").expect("valid"));
        store.create(&key, &info(&b)).expect("create");
        (dir, store, b, key)
    }

    /// A replica has one connection at a time (it keeps the file's lock):
    /// a reader waits for the batch that holds it, and a batch that fails
    /// half-way gives it back.
    #[test]
    fn a_replica_has_one_connection_at_a_time() {
        let (dir, store, _b, key) = store_with("lease", Durability::Process, "AB.1");
        let set = vec![WriteOp::Set {
            key: "a".into(),
            value: "1".into(),
        }];
        let pending = store.begin_write(&key, &set, 1, 1).expect("begin");
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let started = std::time::Instant::now();
                let read = store.properties(&key).expect("read after the batch");
                (started.elapsed(), read)
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut pending = pending;
            pending.commit().expect("commit");
            drop(pending);
            let (waited, read) = reader.join().expect("reader");
            assert!(
                waited >= std::time::Duration::from_millis(150),
                "{waited:?}"
            );
            assert_eq!(read.user.get("a").map(String::as_str), Some("1"));
        });
        // A batch whose op is refused half-way (a version key) is dropped:
        // its lease ends with it.
        let bad = vec![WriteOp::SetSystem {
            key: "version:main.admin".into(),
            value: "9".into(),
        }];
        assert!(store.begin_write(&key, &bad, 2, 2).is_err());
        let started = std::time::Instant::now();
        store.properties(&key).expect("read");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Pipelined batches share one transaction: each after the first in a
    /// savepoint, from the version the one before left. A batch refused
    /// half-way, or rolled back to its savepoint, is undone alone; the
    /// others commit together.
    #[test]
    fn pipelined_batches_are_undone_alone_and_commit_together() {
        let (dir, store, _b, key) = store_with("window", Durability::Process, "AB.1");
        let set = |k: &str| -> std::sync::Arc<[WriteOp]> {
            vec![WriteOp::Set {
                key: k.into(),
                value: "v".into(),
            }]
            .into()
        };
        let begin = |ops: std::sync::Arc<[WriteOp]>, writer: u64, behind: usize| {
            store.run(
                &key,
                &StoreOp::Begin {
                    ops,
                    writer,
                    behind,
                },
                10,
            )
        };
        let begun = |result: Result<StoreOk, StoreFailure>| match result {
            Ok(StoreOk::Begun { prev, next }) => (prev, next),
            other => panic!("begin: {other:?}"),
        };
        let version = || match store.version(&key) {
            ReplicaVersion::Known { tables } => tables,
            other => panic!("version: {other:?}"),
        };
        let committed = store.properties(&key).expect("props").vector;
        let (p1, n1) = begun(begin(set("a"), 1, 0));
        // A Begin that counts other batches in flight than the transaction
        // holds is refused, and the transaction stays.
        assert!(begin(set("x"), 9, 0).is_err());
        assert!(begin(set("x"), 9, 2).is_err());
        let (p2, n2) = begun(begin(set("b"), 2, 1));
        assert!(same_versions(&p1, &committed));
        assert!(same_versions(&p2, &n1), "the second follows the first");
        assert_eq!(n2["main.properties"].writer, 2);
        // A version read meanwhile is the committed one.
        assert!(same_versions(&version(), &committed));
        // Refused half-way (a version key): undone alone.
        let bad: std::sync::Arc<[WriteOp]> = vec![
            WriteOp::Set {
                key: "c".into(),
                value: "v".into(),
            },
            WriteOp::SetSystem {
                key: "version:main.admin".into(),
                value: "9".into(),
            },
        ]
        .into();
        assert!(begin(bad, 3, 2).is_err());
        let (p4, _) = begun(begin(set("d"), 4, 2));
        assert!(same_versions(&p4, &n2), "after the refused batch, from b's");
        // The last one fails its majority: rolled back to its savepoint.
        assert_eq!(
            store.run(&key, &StoreOp::RollbackTo { keep: 2 }, 10),
            Ok(StoreOk::RolledBack)
        );
        assert_eq!(
            store.run(&key, &StoreOp::Commit, 10),
            Ok(StoreOk::Committed)
        );
        let after = store.properties(&key).expect("props");
        let keys: Vec<&str> = after.user.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["a", "b"]);
        assert!(same_versions(&after.vector, &n2));
        assert!(same_versions(&version(), &n2));
        // A window rolled back whole leaves nothing.
        begun(begin(set("e"), 5, 0));
        begun(begin(set("f"), 6, 1));
        assert_eq!(
            store.run(&key, &StoreOp::Rollback, 10),
            Ok(StoreOk::RolledBack)
        );
        assert!(same_versions(
            &store.properties(&key).expect("props").vector,
            &n2
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A connection kept open for a replica is never used once its file was
    /// replaced (a copy installed, the replica set aside): writes land in
    /// the file the replica is now.
    #[test]
    fn a_kept_connection_never_writes_to_a_replaced_file() {
        let (dir, store, b, key) = store_with("pool", Durability::Process, "AB.1");
        let empty = store.dump(&key).expect("dump");
        let set = |k: &str| {
            vec![WriteOp::Set {
                key: k.into(),
                value: "v".into(),
            }]
        };
        store.apply(&key, &set("a"), 1).expect("a");
        assert_eq!(store.pooled.lock().idle.len(), 1, "kept open");
        let ticket = store.begin_restore(&key);
        store.restore(&key, ticket, &empty).expect("restored");
        store.apply(&key, &set("b"), 2).expect("b");
        // Read the file itself, not through the store's connections (the
        // pooled one closed first: it keeps the file's lock).
        store.pooled.lock().idle.clear();
        let file = Connection::open(store.path(&key)).expect("the replica's file");
        let keys: Vec<String> = file
            .prepare("SELECT k FROM properties ORDER BY k")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            keys,
            ["b"],
            "the write after the copy is in the new file only"
        );
        drop(file);
        let path = store.path(&key);
        assert!(
            !sidecar(&path, "-wal").exists() && !sidecar(&path, "-journal").exists(),
            "a closed connection folds its log in and removes it"
        );
        let ticket = store.begin_restore(&key);
        let aside = store.set_aside(&key, ticket).expect("set aside");
        store.create(&key, &info(&b)).expect("created again");
        store.apply(&key, &set("c"), 3).expect("c");
        assert!(
            sidecar(&path, "-wal").exists(),
            "WAL, while a connection is open"
        );
        let old = Connection::open(&aside).expect("the set-aside copy");
        let n: i64 = old
            .query_row("SELECT count(*) FROM properties WHERE k = 'c'", [], |r| {
                r.get(0)
            })
            .expect("count");
        assert_eq!(n, 0, "nothing written to the copy set aside");
        drop(old);
        // A hot rollback journal (a crash of an earlier version, mid-commit)
        // goes with its copy.
        let journal = sidecar(&path, "-journal");
        std::fs::write(&journal, [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7])
            .expect("journal");
        assert!(journal_is_hot(&journal));
        let ticket = store.begin_restore(&key);
        let aside = store.set_aside(&key, ticket).expect("set aside again");
        assert!(!journal.exists());
        assert!(sidecar(&aside, "-journal").exists(), "kept with its copy");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The replica's file and its write-ahead log as kill -9 leaves them
    /// after `k` was committed: the log not folded in.
    fn crashed_with(store: &BaseStore, key: &ElectionKey, k: &str, n: i64) {
        let set = vec![WriteOp::Set {
            key: k.into(),
            value: "v".into(),
        }];
        store.apply(key, &set, n).expect("write");
        let path = store.path(key);
        let image = [path.clone(), sidecar(&path, "-wal")].map(|p| {
            let copy = sidecar(&p, ".crash");
            std::fs::copy(&p, &copy).expect("copy");
            copy
        });
        store.pooled.lock().idle.clear();
        assert!(!sidecar(&path, "-wal").exists());
        std::fs::rename(&image[0], &path).expect("the file as it was");
        std::fs::rename(&image[1], sidecar(&path, "-wal")).expect("its log");
    }

    /// What a crash leaves in a replica's write-ahead log is never lost
    /// when the replica is set aside, and never replayed into the copy
    /// that replaces it.
    #[test]
    fn a_log_left_by_a_crash_stays_with_its_file() {
        let (dir, store, b, key) = store_with("crash-wal", Durability::Process, "AB.1");
        let empty = store.dump(&key).expect("dump");
        let path = store.path(&key);
        crashed_with(&store, &key, "kept", 1);
        let ticket = store.begin_restore(&key);
        let aside = store.set_aside(&key, ticket).expect("set aside");
        assert!(!sidecar(&path, "-wal").exists());
        let old = Connection::open(&aside).expect("the set-aside copy");
        let n: i64 = old
            .query_row(
                "SELECT count(*) FROM properties WHERE k = 'kept'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(n, 1, "the write in the log is in the copy set aside");
        drop(old);
        store.create(&key, &info(&b)).expect("created again");
        crashed_with(&store, &key, "replaced", 2);
        let ticket = store.begin_restore(&key);
        store.restore(&key, ticket, &empty).expect("restored");
        assert!(!sidecar(&path, "-wal").exists());
        let props = store.properties(&key).expect("the copy reads");
        assert!(props.user.is_empty(), "exactly the copy: {:?}", props.user);
        let conn = store.lease(&key).expect("lease");
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        assert_eq!(check, "ok");
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A replica's creation is read from its file once, then from memory,
    /// and read again once the file is replaced by a copy of another.
    #[test]
    fn a_replicas_creation_is_remembered_until_its_file_is_replaced() {
        let (dir, store, b, key) = store_with("incarnation", Durability::Process, "AB.1");
        let created = info(&b).incarnation();
        assert_eq!(store.incarnation_of(&key).expect("read"), Some(created));
        store.versions.set_incarnation(&key, None);
        assert_eq!(store.incarnation_of(&key).expect("read"), Some(created));
        assert_eq!(
            store.versions.incarnation(&key),
            Some(created),
            "remembered"
        );
        // A copy of another creation of the base replaces the file.
        let (dir2, other, _, key2) = store_with("incarnation-2", Durability::Process, "AB.1");
        assert_eq!(key, key2);
        let mut info2 = info(&b);
        info2.incarnation = 99;
        let ticket = other.begin_restore(&key);
        other.set_aside(&key, ticket).expect("set aside");
        other.create(&key, &info2).expect("created again");
        let copy = other.dump(&key).expect("dump");
        let ticket = store.begin_restore(&key);
        store.restore(&key, ticket, &copy).expect("restored");
        assert_eq!(
            store.incarnation_of(&key).expect("read").map(|i| i.id),
            Some(99),
            "read again from the new file"
        );
        store.remove(&key).expect("removed");
        assert_eq!(store.incarnation_of(&key).expect("read"), None);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }

    #[test]
    fn each_durability_sets_its_sync_level() {
        for (d, level) in [(Durability::Process, 0), (Durability::Power, 2)] {
            let dir =
                std::env::temp_dir().join(format!("store-sync-{level}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let store = BaseStore::open(&dir, d).expect("open");
            let b = BaseName::parse("AB.1").expect("valid");
            let key = ElectionKey::compute(&b, &ServiceType::new("meta2").expect("valid"));
            store.create(&key, &info(&b)).expect("create");
            let conn = store.open_rw(&key).expect("open the replica");
            let got: i64 = conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .expect("pragma");
            assert_eq!(got, level, "{d:?}");
            let mode: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .expect("pragma");
            assert_eq!(mode, "wal", "{d:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
        assert_eq!(Durability::parse("power"), Some(Durability::Power));
        assert_eq!(Durability::parse("fsync"), None);
    }

    #[test]
    fn system_properties_never_touch_identity_or_versions() {
        let (dir, store, _, key) = store_with("sys", Durability::Power, "AB.1");
        let p = store.properties(&key).expect("props");
        assert_eq!(p.system["sys.name"], "AB.1");
        assert_eq!(p.system["sys.m2.ctime"], "5000", "microseconds, as OpenIO");
        assert_eq!(p.system["sys.status"], "0");
        assert!(!p.system.keys().any(|k| k.starts_with("version:")));
        let set = |k: &str| {
            vec![WriteOp::SetSystem {
                key: k.into(),
                value: "9".into(),
            }]
        };
        for k in ["version:main.properties", "sys.name", "sys.peers", "user.x"] {
            assert!(check_system_key(k).is_err(), "{k}");
            store.apply(&key, &set(k), 7).expect_err(k);
        }
        let (_, next) = store.apply(&key, &set("sys.status"), 7).expect("apply");
        let p = store.properties(&key).expect("props");
        assert_eq!(p.system["sys.status"], "9");
        assert_eq!(p.vector, next, "a system write bumps the vector");
        assert!(p.user.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn create_version_dump_restore() {
        let dir = std::env::temp_dir().join(format!("store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = BaseStore::open(&dir, Durability::Power).expect("open");
        let base = BaseName::parse("ABC.1").expect("valid");
        let key = ElectionKey::compute(&base, &ServiceType::new("meta2").expect("valid"));
        assert_eq!(store.version(&key), ReplicaVersion::Missing);
        assert!(store.create(&key, &info(&base)).expect("create"));
        // The vector just written is known without reading the file (the
        // first GETVERS is answered from memory), and equals the file's.
        let remembered = store.version_in_memory(&key).expect("in memory");
        let disk = store
            .connect(&store.path(&key), OpenFlags::SQLITE_OPEN_READ_WRITE)
            .expect("open");
        assert_eq!(
            remembered,
            ReplicaVersion::Known {
                tables: BaseStore::read_versions(&disk).expect("disk")
            }
        );
        drop(disk);
        assert!(!store.create(&key, &info(&base)).expect("idempotent"));
        let v = store.version(&key);
        let ReplicaVersion::Known { tables } = &v else {
            panic!("{v:?}")
        };
        assert_eq!(tables["main.admin"].version, 1);
        assert_eq!(
            compare(&ReplicaVersion::Missing, &v),
            VersionDiff::LocalBehind
        );
        let bytes = store.dump(&key).expect("dump");
        let ticket = store.begin_restore(&key);
        assert!(
            matches!(store.version(&key), ReplicaVersion::Unknown { .. }),
            "restoring is unknown"
        );
        assert!(
            store.restore(&key, ticket, b"not a database").is_err(),
            "garbage is refused"
        );
        assert_eq!(
            store.version(&key),
            v,
            "the replica is untouched by a refused copy"
        );
        let ticket = store.begin_restore(&key);
        store.restore(&key, ticket, &bytes).expect("restore");
        assert_eq!(store.version(&key), v);
        assert_eq!(
            store
                .admin_value(&key, "sys.account")
                .expect("read")
                .as_deref(),
            Some("acct")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store in a fresh directory named after `tag`, holding two new
    /// bases: `M.1` (written as a master) and `S.1` (as its slave).
    fn two_bases(tag: &str) -> (PathBuf, BaseStore, ElectionKey, ElectionKey) {
        let (dir, store, _, master) = store_with(tag, Durability::Power, "M.1");
        let sb = BaseName::parse("S.1").expect("valid");
        let slave = ElectionKey::compute(&sb, &ServiceType::new("meta2").expect("valid"));
        store.create(&slave, &info(&sb)).expect("create");
        (dir, store, master, slave)
    }

    /// Issue 14, H1: a slave copying the base from master M1 abandons the
    /// copy (M1 left), follows M2 and acknowledges a write W. The copy,
    /// still being written on a blocking thread that cannot be cancelled,
    /// must not land over W afterwards.
    #[test]
    fn an_abandoned_copy_never_lands() {
        let (dir, store, _, key) = store_with("abandon", Durability::Power, "A.1");
        let m1_copy = store.dump(&key).expect("dump");

        let slow = store.begin_restore(&key);
        let prepared = store.prepare_restore(&key, &m1_copy).expect("prepared");
        store.abort_restore(&key, slow);
        let w = vec![WriteOp::Set {
            key: "w".into(),
            value: "acknowledged".into(),
        }];
        store.apply(&key, &w, 99).expect("W");
        let late = store.install_restore(&key, slow, prepared);
        assert!(matches!(late, Err(StoreError::Abandoned)), "{late:?}");
        let props = store.properties(&key).expect("readable");
        assert_eq!(
            props.user.get("w").map(String::as_str),
            Some("acknowledged")
        );

        // A new copy voids the one before it; the current one lands.
        let first = store.begin_restore(&key);
        let second = store.begin_restore(&key);
        let voided = store.restore(&key, first, &m1_copy);
        assert!(matches!(voided, Err(StoreError::Abandoned)), "{voided:?}");
        assert!(matches!(
            store.version(&key),
            ReplicaVersion::Unknown { .. }
        ));
        store.restore(&key, second, &m1_copy).expect("installed");
        assert!(store.properties(&key).expect("readable").user.is_empty());
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("tmp"))
            .expect("tmp")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(
            leftovers.is_empty(),
            "no copy left behind in tmp/: {leftovers:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 14, H2: after a master whose clock ran ahead, every later
    /// writer stamps `prev.when + 1`, so a rolled-back write W1 and the
    /// committed W2 at the same counter got identical vectors, and a slave
    /// holding W1 acknowledged W2 as "already applied" without applying it.
    /// The writer in the stamp tells them apart: the slave refuses W2 as
    /// out of order (and copies the master's base).
    #[test]
    fn a_repeated_clock_stamp_is_not_taken_for_the_same_write() {
        let (dir, store, master, slave) = two_bases("stamps");
        let one = |value: &str| {
            vec![WriteOp::Set {
                key: "k".into(),
                value: value.into(),
            }]
        };
        // A master with a fast clock wrote the previous version.
        let fast = 5_000_000;
        let (p0, n0) = store.apply(&master, &one("v0"), fast).expect("v0");
        store
            .apply_replica(&slave, &one("v0"), &p0, &n0)
            .expect("the slave follows");
        // A master with a slow clock: W1 reaches the slave, then is rolled
        // back on the master; W2 is written at the same counter.
        let slow = 1_000;
        let mut w1 = store
            .begin_write(&master, &one("W1"), slow, 7 << 32 | 10)
            .expect("W1");
        store
            .apply_replica(&slave, &one("W1"), &w1.prev, w1.next())
            .expect("W1 on the slave");
        w1.rollback();
        let w1_next = w1.next().clone();
        // Ends its lease of the connection, as `run` does.
        drop(w1);
        let mut w2 = store
            .begin_write(&master, &one("W2"), slow, 7 << 32 | 11)
            .expect("W2");
        assert_eq!(
            w1_next["main.properties"].when,
            w2.next()["main.properties"].when,
            "the clocks repeat the stamp"
        );
        let answer = store.apply_replica(&slave, &one("W2"), &w2.prev, w2.next());
        assert!(
            matches!(answer, Err(StoreError::OutOfOrder { .. })),
            "W2 taken for W1: {answer:?}"
        );
        w2.commit().expect("W2");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writes_apply_in_order_only() {
        let (dir, store, master, slave) = two_bases("writes");
        let t = ServiceType::new("meta2").expect("valid");
        let start = store.properties(&slave).expect("props").vector;

        // The master applies and bumps the properties version.
        let set = vec![WriteOp::Set {
            key: "a".into(),
            value: "1".into(),
        }];
        let (prev1, next1) = store.apply(&master, &set, 77).expect("apply");
        assert!(same_versions(&prev1, &start));
        assert_eq!(
            next1["main.properties"].version,
            prev1["main.properties"].version + 1
        );
        let unset = vec![WriteOp::Unset { key: "a".into() }];
        let (prev2, next2) = store.apply(&master, &unset, 78).expect("apply");
        assert!(same_versions(&prev2, &next1));

        // A copy at the same version numbers but holding another write (other
        // timestamps: one the master rolled back) is not taken as done.
        let ib = BaseName::parse("I.1").expect("valid");
        let other = ElectionKey::compute(&ib, &t);
        store.create(&other, &info(&ib)).expect("create");
        let mut impostor = next1.clone();
        if let Some(tv) = impostor.get_mut("main.properties") {
            tv.when += 1;
        }
        let rolled_back = vec![WriteOp::Set {
            key: "a".into(),
            value: "rolled back".into(),
        }];
        assert!(store
            .apply_replica(&other, &rolled_back, &start, &impostor)
            .expect("applied"));
        let err = store
            .apply_replica(&other, &set, &start, &next1)
            .expect_err("same numbers, other write");
        assert!(matches!(err, StoreError::OutOfOrder { .. }), "{err}");
        // A replica refuses a write it cannot apply in order...
        let err = store
            .apply_replica(&slave, &unset, &prev2, &next2)
            .expect_err("out of order");
        assert!(matches!(err, StoreError::OutOfOrder { .. }), "{err}");
        // ...applies them in order, and a retried write is a no-op.
        assert!(store
            .apply_replica(&slave, &set, &prev1, &next1)
            .expect("first"));
        assert!(!store
            .apply_replica(&slave, &set, &prev1, &next1)
            .expect("retry"));
        assert_eq!(
            store
                .properties(&slave)
                .expect("props")
                .user
                .get("a")
                .map(String::as_str),
            Some("1")
        );
        assert!(store
            .apply_replica(&slave, &unset, &prev2, &next2)
            .expect("second"));
        let (s, m) = (
            store.properties(&slave).expect("props"),
            store.properties(&master).expect("props"),
        );
        assert_eq!((s.user, s.vector), (m.user, m.vector));
        // An uncommitted write is invisible and vanishes on rollback.
        let mut pending = store.begin_write(&master, &set, 79, 79).expect("begin");
        assert!(same_versions(&pending.prev, &next2));
        let ReplicaVersion::Known { tables } = store.version(&master) else {
            panic!("readable while pending")
        };
        assert!(
            same_versions(&tables, &next2),
            "readers see the committed state"
        );
        pending.rollback();
        // Its connection is leased until the batch ends (`run` drops it).
        drop(pending);
        assert!(same_versions(
            &store.properties(&master).expect("props").vector,
            &next2
        ));
        let mut pending = store.begin_write(&master, &set, 80, 80).expect("begin");
        pending.commit().expect("commit");
        drop(pending);
        assert_eq!(
            store.properties(&master).expect("props").vector["main.properties"].version,
            next2["main.properties"].version + 1
        );
        drop(store.begin_write(&master, &unset, 81, 81).expect("begin"));
        assert_eq!(
            store
                .properties(&master)
                .expect("props")
                .user
                .get("a")
                .map(String::as_str),
            Some("1"),
            "dropped = rolled back"
        );
        // The in-memory vectors always equal the files.
        for k in [&master, &slave] {
            let ReplicaVersion::Known { tables } = store.version(k) else {
                panic!("known")
            };
            let disk = store.lease(k).expect("the replica's connection");
            assert!(same_versions(
                &tables,
                &BaseStore::read_versions(&disk).expect("disk")
            ));
        }
        assert!(store.remove(&slave).expect("remove"));
        assert!(!store.remove(&slave).expect("removing twice is fine"));
        assert_eq!(store.version(&slave), ReplicaVersion::Missing);
        assert!(matches!(
            store.apply(&slave, &set, 1),
            Err(StoreError::Missing)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
