//! The election state machine of one base on one service.
//!
//! It follows OpenIO's transition table (reference §1.5) with these
//! deliberate differences (DESIGN §4, reference §7.2):
//! - every pending state has a deadline, not only CREATING; on expiry the
//!   event is logged as `TIMEOUT`;
//! - retries back off exponentially with jitter and have a real budget: a
//!   candidate without quorum gives up, a follower's budget is not halved,
//!   FAILED waits longer after each consecutive failure;
//! - LEAVE and SYNC requests are never dropped (a LEAVE during PEERING is
//!   honoured; a SYNC requested while pending runs once the peer is SLAVE);
//! - a failed copy never yields SLAVE: it retries, then fails;
//! - nodes we may have left behind (timeouts, disconnections) are deleted
//!   before we create a new one, and a node carrying our id that is not our
//!   current node is deleted instead of being followed;
//! - a peer refusing mastership (`allow_master = false`) backs off instead of
//!   re-creating its node in a tight loop;
//! - a candidate does not wait for its last GETVERS answers once they cannot
//!   change the verdict (`Election::wins_already`): with 3 replicas, the
//!   first peer at its version elects it.
//!
//! Completions carry the [`OpId`] of the action that asked for them; a
//! completion for anything but the pending operation is ignored, except a
//! late `CREATE_OK`, whose node is deleted at once.

use crate::log::TransitionLog;
use crate::maybe::Maybe;
use crate::names::{Seq, ServiceId};
use crate::state::{Action, Event, GetversOutcome, MasterBadReason, OpId, State};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The current time, as given by the driver: a monotonic clock for
/// deadlines and the wall clock for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono_ms: u64,
    pub wall_ms: u64,
}

impl Now {
    pub fn at(mono_ms: u64) -> Self {
        Self {
            mono_ms,
            wall_ms: mono_ms,
        }
    }
}

const NO_PEERS: &str =
    "no peers found for this base (is it in the directory? see `openio container show`)";

/// Timers and budgets (reference §4.12 names in comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// GETVERS retry budget per round of checks (`repo.getvers_attempts`).
    pub getvers_attempts: u32,
    /// First delay between GETVERS rounds, doubled each retry (`repo.getvers_delay`).
    pub getvers_delay_ms: u64,
    pub getvers_delay_max_ms: u64,
    /// First delay before retrying after FAILED, doubled each consecutive failure.
    pub retry_failed_ms: u64,
    pub retry_failed_max_ms: u64,
    /// Deadline of every pending state waiting on ZooKeeper or a peer.
    pub pending_timeout_ms: u64,
    /// Deadline of SYNCING (a full copy).
    pub sync_timeout_ms: u64,
    /// Idle SLAVE leaves after this long without access.
    pub expire_slave_ms: u64,
    /// Idle MASTER leaves after this long without access (longer than slaves).
    pub expire_master_ms: u64,
    /// May this service become master?
    pub allow_master: bool,
    /// Minimum interval between two non-master USE broadcasts.
    pub use_interval_ms: u64,
    pub log_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            getvers_attempts: 5,
            getvers_delay_ms: 100,
            getvers_delay_max_ms: 2_000,
            retry_failed_ms: 250,
            retry_failed_max_ms: 8_000,
            pending_timeout_ms: 12_000,
            sync_timeout_ms: 240_000,
            expire_slave_ms: 210 * 60_000,
            expire_master_ms: 240 * 60_000,
            allow_master: true,
            use_interval_ms: 1_000,
            log_capacity: TransitionLog::DEFAULT_CAPACITY,
        }
    }
}

/// Is `event` the kind of completion `state` waits for?
fn completes(state: State, event: &Event) -> bool {
    use Event as E;
    use State as S;
    matches!(
        (state, event),
        (
            S::Peering | S::RefreshCheckingMaster | S::RefreshCheckingSlaves,
            E::GetpeersDone { .. }
        ) | (S::Creating, E::CreateOk { .. } | E::CreateKo { .. })
            | (S::Watching, E::ExistsOk { .. } | E::ExistsKo { .. })
            | (S::Listing, E::ListOk { .. } | E::ListKo { .. })
            | (
                S::Asking,
                E::MasterOk { .. } | E::MasterKo { .. } | E::MasterBad { .. }
            )
            | (S::Syncing, E::SyncOk { .. } | E::SyncKo { .. })
            | (
                S::Leaving | S::LeavingFailing,
                E::LeaveOk { .. } | E::LeaveKo { .. }
            )
    )
}

/// Deferred requests received while an operation was in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Flags {
    leave: bool,
    left_self: bool,
    left_master: bool,
    sync: bool,
    /// Restart as soon as the election is back in NONE.
    rejoin: bool,
    /// Bypass caches at the next peer resolution.
    decache: bool,
}

/// One round of GETVERS requests.
#[derive(Debug, Clone, Default)]
struct GetversRound {
    op: OpId,
    pending: BTreeSet<ServiceId>,
    ok: u32,
    old: u32,
    /// Answers of peers without a copy, as we are (`GetversOutcome::NoCopy`).
    no_copy: u32,
    /// Peers whose copy diverged from ours (as a candidate) or that are
    /// behind us (as a follower asking its master).
    race: Vec<ServiceId>,
    errors: Vec<(ServiceId, String)>,
}

impl GetversRound {
    /// Peers that failed to answer or have not answered yet.
    fn failed(&self) -> u32 {
        (self.errors.len() + self.pending.len()) as u32
    }
}

/// Whether `failed` peers of a group of `group` (the candidate included)
/// leave too few answers to elect it: it and the peers that answered must
/// be a strict majority.
fn no_quorum(failed: u32, group: u32) -> bool {
    failed > 0 && failed >= group.div_ceil(2)
}

/// The watch on our own node. Only a candidate sets one, beside its GETVERS
/// round, and it leads once the round succeeded and the watch was asked for
/// (OpenIO has every member set it before listing: one request and one watch
/// more per follower). See `take_mastership` for why the answer need not be
/// awaited; a master whose watch fails steps down.
///
/// Why a follower needs none: a follower never takes writes of its own, and
/// its node matters to the others only as a place in the queue. If the node
/// goes away (its session's expiry comes through the session stream, not
/// through this watch), the others simply no longer see it; the follower
/// learns at its next listing, which happens when the node it follows goes
/// and which fails when its own node is missing (the election restarts).
/// Why a master needs one: once its node is gone, the next node is free to
/// lead; the master must stop at once rather than when its successor's
/// GETVERS fence or USE reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelfWatch {
    None,
    /// EXISTS with a watch sent, under this op id.
    Pending(OpId),
    Armed,
}

/// The election of one base as seen by one service.
#[derive(Debug, Clone)]
pub struct Election {
    /// Shared by every election of a service (one copy, not one each).
    config: Arc<Config>,
    /// Masterships allowed (stop-writes and exit clear it).
    allow_master: bool,
    jitter_seed: u64,
    state: State,
    local_id: Maybe<Seq>,
    master_id: Maybe<Seq>,
    master: Option<ServiceId>,
    /// Shared with the other elections of the same peer set.
    peers: Option<Arc<[ServiceId]>>,
    generation: u64,
    next_op: OpId,
    pending_op: Maybe<OpId>,
    /// The GETVERS round under way (boxed: a settled election holds none).
    getvers: Option<Box<GetversRound>>,
    /// GETVERS retries left in the current round of checks.
    retries_left: u32,
    flags: Flags,
    exiting: bool,
    /// A rejoin waits in NONE for the caller to restart it (admission
    /// control) instead of restarting at once.
    hold_rejoin: bool,
    entered_mono: u64,
    /// Start of the current unstable period (None when final or NONE).
    unstable_since: Maybe<u64>,
    last_access: u64,
    last_use_sent: Maybe<u64>,
    /// When DELAYED_* or FAILED may proceed.
    wake_at: Maybe<u64>,
    /// Consecutive failed memberships (drives the FAILED back-off).
    failures: u32,
    /// Nodes of ours that may still exist and must be deleted.
    stale_nodes: Vec<Seq>,
    last_error: Option<String>,
    log: TransitionLog,
    self_watch: SelfWatch,
}

impl Election {
    /// `jitter_seed` spreads retries of different services and bases apart;
    /// derive it from the election key and the service id.
    pub fn new(config: impl Into<Arc<Config>>, jitter_seed: u64, now: Now) -> Self {
        let config = config.into();
        let log = TransitionLog::new(config.log_capacity);
        Self {
            allow_master: config.allow_master,
            config,
            jitter_seed,
            state: State::None,
            local_id: Maybe::NONE,
            master_id: Maybe::NONE,
            master: None,
            peers: None,
            generation: 0,
            next_op: 1,
            pending_op: Maybe::NONE,
            getvers: None,
            retries_left: 0,
            flags: Flags::default(),
            exiting: false,
            hold_rejoin: false,
            entered_mono: now.mono_ms,
            unstable_since: Maybe::NONE,
            last_access: now.mono_ms,
            last_use_sent: Maybe::NONE,
            wake_at: Maybe::NONE,
            failures: 0,
            stale_nodes: Vec::new(),
            last_error: None,
            log,
            self_watch: SelfWatch::None,
        }
    }

    // ----- read-only views, for status, debug and the driver -----

    pub fn state(&self) -> State {
        self.state
    }
    pub fn local_id(&self) -> Option<Seq> {
        self.local_id.get()
    }
    pub fn master_id(&self) -> Option<Seq> {
        self.master_id.get()
    }
    /// The master we follow (None when we are master or do not know).
    pub fn master(&self) -> Option<&ServiceId> {
        self.master.as_ref()
    }
    pub fn peers(&self) -> Option<&[ServiceId]> {
        self.peers.as_deref()
    }
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// What spreads this election's retries apart from its peers'.
    pub fn jitter_seed(&self) -> u64 {
        self.jitter_seed
    }
    pub fn log(&self) -> &TransitionLog {
        &self.log
    }
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
    pub fn getvers_pending(&self) -> usize {
        if matches!(self.state, State::CheckingMaster | State::CheckingSlaves) {
            self.getvers.as_ref().map_or(0, |g| g.pending.len())
        } else {
            0
        }
    }
    pub fn is_syncing(&self) -> bool {
        self.state == State::Syncing
    }
    pub fn sync_requested(&self) -> bool {
        self.flags.sync
    }
    pub fn entered_mono(&self) -> u64 {
        self.entered_mono
    }
    pub fn last_access(&self) -> u64 {
        self.last_access
    }
    pub fn unstable_since(&self) -> Option<u64> {
        self.unstable_since.get()
    }
    pub fn is_exiting(&self) -> bool {
        self.exiting
    }
    /// Operations in flight (the OpenIO `refcount` minus the index's own reference).
    pub fn in_flight(&self) -> usize {
        usize::from(self.pending_op.is_some()) + self.getvers_pending().saturating_sub(1)
    }

    /// Records a client access (keeps idle expiry away).
    pub fn touch(&mut self, now: Now) {
        self.last_access = self.last_access.max(now.mono_ms);
    }

    /// Allows or refuses future masterships (stop-writes, operator choice).
    /// A current MASTER is not affected: the caller asks it to leave.
    pub fn set_allow_master(&mut self, allow: bool) {
        self.allow_master = allow;
    }

    /// Refuses future masterships and any restart: the service is stopping.
    pub fn set_exiting(&mut self) {
        self.exiting = true;
        self.flags.rejoin = false;
    }

    /// The next instant at which a `NONE` poke may change something.
    pub fn next_deadline(&self) -> Option<u64> {
        match self.state {
            State::None => None,
            State::DelayedCheckingMaster | State::DelayedCheckingSlaves | State::Failed => {
                self.wake_at.get()
            }
            State::Slave => Some(self.last_access.saturating_add(self.config.expire_slave_ms)),
            State::Master => Some(
                self.last_access
                    .saturating_add(self.config.expire_master_ms),
            ),
            State::Syncing => Some(
                self.entered_mono
                    .saturating_add(self.config.sync_timeout_ms),
            ),
            _ => Some(
                self.entered_mono
                    .saturating_add(self.config.pending_timeout_ms),
            ),
        }
    }

    /// How long this election has been in NONE with nothing pending, if it is.
    pub fn idle_for(&self, now: Now) -> Option<u64> {
        (self.state == State::None && !self.flags.rejoin)
            .then(|| now.mono_ms.saturating_sub(self.entered_mono))
    }

    /// A one-line explanation of what this election is doing or waiting for.
    pub fn reason(&self, now: Now) -> String {
        let attempt = || {
            let total = self.config.getvers_attempts + 1;
            format!("attempt {}/{}", total - self.retries_left, total)
        };
        let err = || {
            self.last_error
                .clone()
                .unwrap_or_else(|| "unknown error".into())
        };
        let seq = |s: Option<Seq>| {
            s.map(crate::names::format_seq)
                .unwrap_or_else(|| "?".into())
        };
        match self.state {
            State::None => match &self.last_error {
                Some(e)
                    if self
                        .log
                        .iter()
                        .next()
                        .is_some_and(|l| l.event == "DISCONNECTED") =>
                {
                    format!("idle after losing the ZooKeeper session ({e})")
                }
                _ => "idle: not a member of the election (a request or ping starts it)".into(),
            },
            State::Peering => "resolving the peers of the base from the directory".into(),
            State::Creating => "creating our node in ZooKeeper".into(),
            State::Watching => format!(
                "the slaves agreed; setting a watch on our node {} before leading",
                seq(self.local_id.get())
            ),
            State::Listing => "listing the election's nodes in ZooKeeper".into(),
            State::Asking => format!(
                "reading the master's node {} (the lowest)",
                seq(self.master_id.get())
            ),
            State::CheckingMaster => format!(
                "waiting for GETVERS from master {} ({})",
                self.master.as_ref().map(ServiceId::as_str).unwrap_or("?"),
                attempt()
            ),
            State::CheckingSlaves => {
                let pending: Vec<&str> = self
                    .getvers
                    .iter()
                    .flat_map(|g| g.pending.iter().map(ServiceId::as_str))
                    .collect();
                format!(
                    "candidate: waiting for GETVERS from {} ({})",
                    pending.join(", "),
                    attempt()
                )
            }
            State::Syncing => format!(
                "copying the base from master {}",
                self.master.as_ref().map(ServiceId::as_str).unwrap_or("?")
            ),
            State::DelayedCheckingMaster | State::DelayedCheckingSlaves => format!(
                "retrying GETVERS in {} ms ({}) after: {}",
                self.wake_at.get().unwrap_or(0).saturating_sub(now.mono_ms),
                attempt(),
                err()
            ),
            State::RefreshCheckingMaster | State::RefreshCheckingSlaves => {
                format!("re-resolving peers without cache after: {}", err())
            }
            State::Leaving => format!("leaving: deleting our node {}", seq(self.local_id.get())),
            State::LeavingFailing => format!(
                "failing: deleting our node {} after: {}",
                seq(self.local_id.get()),
                err()
            ),
            State::Failed => format!(
                "failed ({} in a row): {}; retry in {} ms",
                self.failures,
                err(),
                self.wake_at.get().unwrap_or(0).saturating_sub(now.mono_ms)
            ),
            State::Slave => format!(
                "not master: {} holds the lowest node {} (ours is {})",
                self.master.as_ref().map(ServiceId::as_str).unwrap_or("?"),
                seq(self.master_id.get()),
                seq(self.local_id.get())
            ),
            State::Master => format!(
                "master: our node {} is the lowest and the peers agreed on versions",
                seq(self.local_id.get())
            ),
        }
    }

    // ----- the transition function -----

    /// Feeds one event; returns the actions to execute, in order.
    pub fn handle(&mut self, now: Now, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        let pre = self.state;
        if let Some(logged) = self.dispatch(now, event, &mut out) {
            self.log.push(now.wall_ms, pre, logged, self.state);
        }
        // Post-transition hook (reference §1.6.2): a requested rejoin restarts at once.
        if self.state == State::None && self.flags.rejoin && !self.exiting && !self.hold_rejoin {
            let pre = self.state;
            self.flags.rejoin = false;
            self.start(now, &mut out);
            self.log.push(now.wall_ms, pre, "NONE", self.state);
        }
        self.debug_check_invariants();
        out
    }

    /// Returns the event name to log, or None when nothing worth logging happened.
    fn dispatch(&mut self, now: Now, event: Event, out: &mut Vec<Action>) -> Option<&'static str> {
        let name = event.name();
        // The watch on our node is set while the slaves are checked; its
        // answer is recorded whatever the state. Only WATCHING waits for it;
        // a master whose watch failed steps down (and comes back).
        if let Event::ExistsOk { op } | Event::ExistsKo { op, .. } = &event {
            if self.self_watch != SelfWatch::Pending(*op) {
                return None;
            }
            self.self_watch = match &event {
                Event::ExistsOk { .. } => SelfWatch::Armed,
                _ => SelfWatch::None,
            };
            if self.state != State::Watching || self.pending_op.get() != Some(*op) {
                let Event::ExistsKo { error, .. } = &event else {
                    return None;
                };
                self.last_error = Some(format!("exists on our node failed: {error}"));
                if self.state != State::Master {
                    return None;
                }
                self.flags.rejoin = true;
                self.enter(now, State::Leaving, out);
                return Some(name);
            }
        }
        // Completions of operations we no longer wait for.
        if let Some(op) = event.op() {
            let current = match &event {
                Event::Getvers { peer, .. } => {
                    matches!(self.state, State::CheckingMaster | State::CheckingSlaves)
                        && self
                            .getvers
                            .as_ref()
                            .is_some_and(|g| g.op == op && g.pending.contains(peer))
                }
                // The op must be ours, and the event must be the kind of
                // answer the state waits for (an answer of the wrong kind
                // carrying our op id left CREATING with nothing pending:
                // found by the `fsm` fuzz target).
                _ => self.pending_op.get() == Some(op) && completes(self.state, &event),
            };
            if !current {
                if let Event::CreateOk { seq, .. } = event {
                    out.push(Action::Delete { op: None, seq });
                }
                return None;
            }
            if !matches!(event, Event::Getvers { .. }) {
                self.pending_op = Maybe::NONE;
            }
        }
        // Watches of an older membership or about another node.
        match &event {
            Event::LeftSelf { generation, seq }
                if *generation != self.generation || Some(*seq) != self.local_id.get() =>
            {
                return None;
            }
            Event::LeftMaster { generation, seq }
                if *generation != self.generation || Some(*seq) != self.master_id.get() =>
            {
                return None;
            }
            _ => {}
        }

        if event == Event::Disconnected {
            if self.state == State::None {
                return None;
            }
            self.last_error = Some("ZooKeeper session lost".into());
            if let Some(seq) = self.local_id.get() {
                self.remember_stale(seq);
            }
            self.reset_membership();
            self.enter(now, State::None, out);
            return Some(name);
        }

        if event == Event::None {
            if let Some(timeout_to) = self.expired_pending(now) {
                self.last_error = Some(format!("{} timed out", self.state));
                if matches!(
                    self.state,
                    State::Leaving | State::LeavingFailing | State::Creating
                ) {
                    if let Some(seq) = self.local_id.get() {
                        self.remember_stale(seq);
                    }
                }
                self.pending_op = Maybe::NONE;
                self.enter(now, timeout_to, out);
                return Some("TIMEOUT");
            }
        }

        let before = self.state;
        let logged = self.transition(now, event, out);
        match logged {
            Logged::Always => Some(name),
            Logged::IfChanged if self.state != before => Some(name),
            _ => None,
        }
    }

    /// Where a pending state goes when its deadline passed, if it did.
    fn expired_pending(&self, now: Now) -> Option<State> {
        let deadline = match self.state {
            State::None
            | State::Slave
            | State::Master
            | State::Failed
            | State::DelayedCheckingMaster
            | State::DelayedCheckingSlaves => return None,
            _ => self.next_deadline()?,
        };
        if now.mono_ms < deadline {
            return None;
        }
        Some(match self.state {
            State::Peering | State::Creating | State::Leaving | State::LeavingFailing => {
                State::Failed
            }
            _ => State::LeavingFailing,
        })
    }

    fn transition(&mut self, now: Now, event: Event, out: &mut Vec<Action>) -> Logged {
        use Event as E;
        use State as S;
        match (self.state, event) {
            // ---------------- NONE ----------------
            (S::None, E::None) => {
                self.flags.rejoin = false;
                if self.exiting {
                    return Logged::Never;
                }
                self.start(now, out);
                Logged::IfChanged
            }
            (S::None, E::SyncReq) => {
                self.flags.sync = true;
                self.flags.rejoin = !self.exiting;
                Logged::Always
            }
            (S::None, _) => Logged::Never,

            // ---------------- PEERING ----------------
            (S::Peering, E::LeaveReq) => {
                // OpenIO drops it; we honour it: nothing was created yet.
                self.flags = Flags {
                    sync: self.flags.sync,
                    ..Flags::default()
                };
                self.pending_op = Maybe::NONE;
                self.enter(now, S::None, out);
                Logged::Always
            }
            (S::Peering, E::SyncReq) => self.flag(|f| f.sync = true),
            (S::Peering, E::GetpeersDone { peers, .. }) => {
                match peers.filter(|p| !p.is_empty()) {
                    None => {
                        self.last_error = Some(NO_PEERS.into());
                        self.enter(now, S::Failed, out);
                    }
                    Some(p) => {
                        self.peers = Some(p);
                        self.enter(now, S::Creating, out);
                    }
                }
                Logged::Always
            }

            // ---------------- CREATING ----------------
            (S::Creating, E::LeaveReq) => self.flag(|f| f.leave = true),
            (S::Creating, E::SyncReq) => self.flag(|f| f.sync = true),
            (S::Creating, E::CreateKo { error, .. }) => {
                self.last_error = Some(format!("create failed: {error}"));
                self.enter(now, S::Failed, out);
                Logged::Always
            }
            (S::Creating, E::CreateOk { seq, .. }) => {
                self.local_id = Maybe::some(seq);
                if self.flags.leave {
                    self.enter(now, S::Leaving, out);
                } else {
                    self.enter(now, S::Listing, out);
                }
                Logged::Always
            }

            // ---------------- WATCHING ----------------
            // The slaves agreed; the watch on our node is not set yet.
            (S::Watching, E::SyncReq) => self.flag(|f| f.sync = true),
            (S::Watching, E::LeaveReq) => self.flag(|f| f.leave = true),
            (S::Watching, E::LeftSelf { .. }) => self.flag(|f| f.left_self = true),
            (S::Watching, E::ExistsKo { error, .. }) => {
                self.last_error = Some(format!("exists on our node failed: {error}"));
                self.enter(now, S::Leaving, out);
                Logged::Always
            }
            (S::Watching, E::ExistsOk { .. }) => {
                if self.flags.leave || self.exiting {
                    self.enter(now, S::Leaving, out);
                } else if self.flags.left_self {
                    self.restart_after_left_self(now, out);
                } else if !self.allow_master {
                    self.last_error = Some("mastership refused: allow_master is false".into());
                    self.flags.rejoin = true;
                    self.enter(now, S::LeavingFailing, out);
                } else {
                    self.enter(now, S::Master, out);
                }
                Logged::Always
            }

            // ---------------- LISTING ----------------
            (S::Listing, E::SyncReq) => self.flag(|f| f.sync = true),
            (S::Listing, E::LeaveReq) => self.flag(|f| f.leave = true),
            (S::Listing, E::LeftSelf { .. }) => self.flag(|f| f.left_self = true),
            (S::Listing, E::ListKo { error, .. }) => {
                self.last_error = Some(format!("listing failed: {error}"));
                self.enter(now, S::LeavingFailing, out);
                Logged::Always
            }
            (S::Listing, E::ListOk { lowest, .. }) => {
                if self.flags.leave {
                    self.enter(now, S::Leaving, out);
                } else if self.flags.left_self {
                    self.restart_after_left_self(now, out);
                } else if Some(lowest) == self.local_id.get() {
                    if self.allow_master && !self.exiting {
                        self.master_id = self.local_id;
                        self.enter(now, S::CheckingSlaves, out);
                    } else if self.exiting {
                        self.enter(now, S::Leaving, out);
                    } else {
                        // Step aside, and come back after a back-off rather
                        // than at once (OpenIO loops here).
                        self.last_error = Some("mastership refused: allow_master is false".into());
                        self.flags.rejoin = true;
                        self.enter(now, S::LeavingFailing, out);
                    }
                } else {
                    self.master_id = Maybe::some(lowest);
                    self.enter(now, S::Asking, out);
                }
                Logged::Always
            }

            // ---------------- ASKING ----------------
            (S::Asking, E::SyncReq) => self.flag(|f| f.sync = true),
            (S::Asking, E::LeaveReq) => self.flag(|f| f.leave = true),
            (S::Asking, E::LeftSelf { .. }) => self.flag(|f| f.left_self = true),
            (S::Asking, E::LeftMaster { .. }) => self.flag(|f| f.left_master = true),
            (S::Asking, E::MasterKo { error, .. }) => {
                self.last_error = Some(format!("reading the master node failed: {error}"));
                if self.flags.left_self || self.flags.leave {
                    self.enter(now, S::Leaving, out);
                } else if self.flags.left_master {
                    self.enter(now, S::Listing, out);
                } else {
                    self.enter(now, S::LeavingFailing, out);
                }
                Logged::Always
            }
            (S::Asking, E::MasterBad { reason, .. }) => {
                match reason {
                    MasterBadReason::Rogue(seq) => {
                        // A leftover of ours: delete it, then list again; the
                        // session's FIFO order makes the list see the delete.
                        self.last_error = Some(format!(
                            "deleted our leftover node {}",
                            crate::names::format_seq(seq)
                        ));
                        out.push(Action::Delete { op: None, seq });
                        if self.flags.leave || self.flags.left_self {
                            self.enter(now, S::Leaving, out);
                        } else {
                            self.enter(now, S::Listing, out);
                        }
                    }
                    MasterBadReason::UnknownPeer(id) => {
                        self.last_error =
                            Some(format!("master node names {id}, not a peer of this base"));
                        self.flags.decache = true;
                        self.enter(now, S::LeavingFailing, out);
                    }
                    MasterBadReason::Invalid(why) => {
                        self.last_error = Some(format!("master node unusable: {why}"));
                        self.enter(now, S::LeavingFailing, out);
                    }
                }
                Logged::Always
            }
            (S::Asking, E::MasterOk { master, .. }) => {
                if self.flags.leave {
                    self.enter(now, S::Leaving, out);
                } else if self.flags.left_self {
                    self.restart_after_left_self(now, out);
                } else if self.flags.left_master {
                    self.enter(now, S::Listing, out);
                } else {
                    self.master = Some(master);
                    self.retries_left = self.config.getvers_attempts;
                    self.enter(now, S::CheckingMaster, out);
                }
                Logged::Always
            }

            // ---------------- CHECKING_MASTER ----------------
            (S::CheckingMaster, E::SyncReq) => self.flag(|f| f.sync = true),
            (S::CheckingMaster, E::LeaveReq) => self.flag(|f| f.leave = true),
            (S::CheckingMaster, E::LeftSelf { .. }) => self.flag(|f| f.left_self = true),
            (S::CheckingMaster, E::LeftMaster { .. }) => self.flag(|f| f.left_master = true),
            (S::CheckingMaster, E::Getvers { peer, outcome, .. }) => {
                self.count_getvers(peer, outcome.clone());
                self.getvers = None;
                let left_master = std::mem::take(&mut self.flags.left_master);
                if self.flags.leave {
                    self.enter(now, S::Leaving, out);
                } else if left_master {
                    self.enter(now, S::Listing, out);
                } else if matches!(outcome, GetversOutcome::Race | GetversOutcome::Old) {
                    // A pending LEFT_SELF stays flagged: SYNCING acts on it when
                    // the copy ends (taking it here left a SLAVE without a node).
                    self.enter(now, S::Syncing, out);
                } else if std::mem::take(&mut self.flags.left_self) {
                    self.restart_without_our_node(now, out);
                } else if let GetversOutcome::Ko(e) = outcome {
                    self.last_error = Some(format!("GETVERS to master failed: {e}"));
                    self.retry_or_fail(now, S::DelayedCheckingMaster, out);
                } else {
                    self.enter(now, S::Slave, out);
                }
                Logged::Always
            }

            // ---------------- CHECKING_SLAVES ----------------
            (S::CheckingSlaves, E::SyncReq) => self.flag(|f| f.sync = true),
            (S::CheckingSlaves, E::LeaveReq) => self.flag(|f| f.leave = true),
            (S::CheckingSlaves, E::LeftSelf { .. }) => self.flag(|f| f.left_self = true),
            (S::CheckingSlaves, E::Getvers { peer, outcome, .. }) => {
                self.count_getvers(peer, outcome);
                let group = self.peers.as_ref().map_or(0, |p| p.len()) as u32 + 1;
                if let Some(round) = self.getvers.as_deref() {
                    if !round.pending.is_empty() && !self.wins_already(round, group) {
                        return Logged::Always;
                    }
                }
                let left_self = std::mem::take(&mut self.flags.left_self);
                self.flags.left_master = false;
                let round = self.getvers.take().map(|g| *g).unwrap_or_default();
                // Peers still silent count as failed: we only get here with
                // some pending when they cannot change the verdict (see
                // `wins_already`).
                let errors = round.failed();
                if self.flags.leave {
                    self.enter(now, S::Leaving, out);
                } else if left_self {
                    self.restart_without_our_node(now, out);
                } else if round.old > 0 {
                    // A peer is ahead of us: let it lead, and come back at
                    // once as its slave.
                    self.last_error = Some(format!(
                        "a peer has newer data ({} ahead, {} diverged): stepping aside",
                        round.old,
                        round.race.len()
                    ));
                    self.flags.rejoin = true;
                    self.enter(now, S::Leaving, out);
                } else if !round.race.is_empty() && round.ok < group / 2 {
                    // Diverged peers, and no majority holds our copy. Either
                    // side may hold an acknowledged write: no automatic
                    // winner. Stepping aside made every candidate do the
                    // same, for ever (issue 14, H8); failing gives the
                    // engine's back-off, and the operator a reason.
                    let names: Vec<String> = round.race.iter().map(ToString::to_string).collect();
                    self.last_error = Some(format!(
                        "replicas diverged: {} and this replica each hold writes the other lacks, \
                         and no majority holds one copy; an operator must choose the copy to \
                         keep (docs/OPERATIONS.md, \"Diverged replicas\")",
                        names.join(", ")
                    ));
                    self.enter(now, S::LeavingFailing, out);
                } else if no_quorum(errors, group) {
                    let detail: Vec<String> = round
                        .errors
                        .iter()
                        .map(|(p, e)| format!("{p}: {e}"))
                        .collect();
                    self.last_error = Some(format!(
                        "no quorum: {} of {} peers answered GETVERS, {} needed ({})",
                        round.ok,
                        group - 1,
                        group / 2,
                        detail.join("; ")
                    ));
                    self.retry_or_fail(now, S::DelayedCheckingSlaves, out);
                } else if round.no_copy > 0 && errors > 0 {
                    // We hold no copy, nor do the peers that answered (one
                    // with a copy makes us step aside, above). A silent one
                    // may hold the only copy: leading without it left the
                    // base with a master that has nothing to serve, and the
                    // copy's holder failing for ever to copy from it (issue
                    // 14, H3, a system test). A base that no replica holds
                    // (only registered) still gets a master once all answer.
                    let silent: Vec<String> =
                        round.errors.iter().map(|(p, _)| p.to_string()).collect();
                    self.last_error = Some(format!(
                        "this replica holds no copy of the base, nor do the peers that answered; \
                         it leads only once every peer has answered, and {} did not: it retries; \
                         check that peer, or restore a copy of the base on one replica",
                        silent.join(", ")
                    ));
                    self.retry_or_fail(now, S::DelayedCheckingSlaves, out);
                } else {
                    // Diverged peers may remain, outvoted: we and the `ok`
                    // peers (at or behind our version) are a majority, and
                    // none of us holds their extra writes. An acknowledged
                    // write is on a majority, which meets ours, so none of
                    // those was acknowledged. They re-copy from us.
                    self.take_mastership(now, out);
                }
                Logged::Always
            }

            // ---------------- DELAYED_CHECKING_MASTER / _SLAVES ----------------
            (s @ (S::DelayedCheckingMaster | S::DelayedCheckingSlaves), E::None) => {
                if self.wake_at.get().is_some_and(|t| now.mono_ms >= t) {
                    let refresh = std::mem::take(&mut self.flags.decache);
                    let to = match (s, refresh) {
                        (S::DelayedCheckingMaster, true) => S::RefreshCheckingMaster,
                        (S::DelayedCheckingMaster, false) => S::CheckingMaster,
                        (_, true) => S::RefreshCheckingSlaves,
                        (_, false) => S::CheckingSlaves,
                    };
                    self.enter(now, to, out);
                }
                Logged::IfChanged
            }
            (S::DelayedCheckingMaster | S::DelayedCheckingSlaves, E::SyncReq) => {
                self.flag(|f| f.sync = true)
            }
            (S::DelayedCheckingMaster | S::DelayedCheckingSlaves, E::LeaveReq) => {
                self.enter(now, S::Leaving, out);
                Logged::Always
            }
            (S::DelayedCheckingMaster | S::DelayedCheckingSlaves, E::LeftSelf { .. }) => {
                self.restart_without_our_node(now, out);
                Logged::Always
            }
            (S::DelayedCheckingMaster, E::LeftMaster { .. }) => {
                self.enter(now, S::Listing, out);
                Logged::Always
            }

            // ---------------- REFRESH_CHECKING_MASTER / _SLAVES ----------------
            (S::RefreshCheckingMaster | S::RefreshCheckingSlaves, E::SyncReq) => {
                self.flag(|f| f.sync = true)
            }
            (S::RefreshCheckingMaster | S::RefreshCheckingSlaves, E::LeaveReq) => {
                self.flag(|f| f.leave = true)
            }
            (S::RefreshCheckingMaster | S::RefreshCheckingSlaves, E::LeftSelf { .. }) => {
                self.flag(|f| f.left_self = true)
            }
            (S::RefreshCheckingMaster, E::LeftMaster { .. }) => self.flag(|f| f.left_master = true),
            (
                s @ (S::RefreshCheckingMaster | S::RefreshCheckingSlaves),
                E::GetpeersDone { peers, .. },
            ) => {
                let follower = s == S::RefreshCheckingMaster;
                let peers = peers.filter(|p| !p.is_empty());
                if let Some(p) = &peers {
                    self.peers = Some(p.clone());
                }
                let left_master = std::mem::take(&mut self.flags.left_master);
                if self.flags.leave {
                    self.enter(now, S::Leaving, out);
                } else if self.flags.left_self && peers.is_some() {
                    // The directory was just read: start again on its answer.
                    self.last_error =
                        Some("our node disappeared before the election settled".into());
                    self.flags.left_self = false;
                    self.forget_ids();
                    self.start(now, out);
                } else if self.flags.left_self {
                    self.restart_after_left_self(now, out);
                } else if follower && left_master {
                    self.enter(now, S::Listing, out);
                } else if peers.is_none() {
                    self.last_error = Some(NO_PEERS.into());
                    self.enter(now, S::LeavingFailing, out);
                } else if follower {
                    self.enter(now, S::CheckingMaster, out);
                } else {
                    self.enter(now, S::CheckingSlaves, out);
                }
                Logged::Always
            }

            // ---------------- SYNCING ----------------
            (S::Syncing, E::SyncReq) => self.flag(|f| f.sync = true),
            (S::Syncing, E::LeaveReq) => self.flag(|f| f.leave = true),
            (S::Syncing, E::LeftSelf { .. }) => self.flag(|f| f.left_self = true),
            (S::Syncing, E::LeftMaster { .. }) => {
                // The master is gone: its copy may never come (a paused
                // process); stop waiting for it (OpenIO waits for the copy).
                self.pending_op = Maybe::NONE;
                self.enter(now, S::Listing, out);
                Logged::Always
            }
            (S::Syncing, ev @ (E::SyncOk { .. } | E::SyncKo { .. })) => {
                if self.flags.leave {
                    self.enter(now, S::Leaving, out);
                } else if self.flags.left_self {
                    self.restart_after_left_self(now, out);
                } else if std::mem::take(&mut self.flags.left_master) {
                    self.enter(now, S::Listing, out);
                } else if let E::SyncKo { error, .. } = ev {
                    // Never serve a copy we failed to refresh.
                    self.last_error = Some(format!("copy from master failed: {error}"));
                    self.retry_or_fail(now, S::DelayedCheckingMaster, out);
                } else {
                    self.enter(now, S::Slave, out);
                }
                Logged::Always
            }

            // ---------------- LEAVING ----------------
            (S::Leaving, E::None) => {
                self.flags.rejoin = !self.exiting;
                Logged::Never
            }
            (S::Leaving, E::SyncReq) => {
                self.flags.sync = true;
                self.flags.rejoin = !self.exiting;
                Logged::Always
            }
            (S::Leaving, E::LeaveKo { error, .. }) => {
                self.last_error = Some(format!("deleting our node failed: {error}"));
                self.enter(now, S::LeavingFailing, out);
                Logged::Always
            }
            (S::Leaving, E::LeaveOk { .. }) => {
                self.forget_ids();
                self.enter(now, S::None, out);
                Logged::Always
            }

            // ---------------- LEAVING_FAILING ----------------
            (S::LeavingFailing, E::None) => {
                self.flags.rejoin = !self.exiting;
                Logged::Never
            }
            (S::LeavingFailing, E::SyncReq) => {
                self.flags.sync = true;
                self.flags.rejoin = !self.exiting;
                Logged::Always
            }
            (S::LeavingFailing, ev @ (E::LeaveOk { .. } | E::LeaveKo { .. })) => {
                if let (E::LeaveKo { .. }, Some(seq)) = (&ev, self.local_id.get()) {
                    self.remember_stale(seq);
                }
                self.forget_ids();
                self.enter(now, S::Failed, out);
                Logged::Always
            }

            // ---------------- FAILED ----------------
            (S::Failed, E::None) => {
                if self.wake_at.get().is_some_and(|t| now.mono_ms >= t) {
                    if std::mem::take(&mut self.flags.rejoin) && !self.exiting {
                        self.start(now, out);
                    } else {
                        self.delete_leftovers(out);
                        self.enter(now, S::None, out);
                    }
                } else if !self.exiting {
                    // Someone is interested: retry when the back-off ends.
                    self.flags.rejoin = true;
                }
                Logged::IfChanged
            }
            (S::Failed, E::LeaveReq) => {
                self.flags = Flags {
                    sync: self.flags.sync,
                    ..Flags::default()
                };
                self.delete_leftovers(out);
                self.enter(now, S::None, out);
                Logged::Always
            }
            (S::Failed, E::SyncReq) => {
                self.flags.sync = true;
                Logged::Always
            }

            // ---------------- SLAVE ----------------
            (S::Slave, E::None) => {
                if now.mono_ms.saturating_sub(self.last_access) >= self.config.expire_slave_ms {
                    self.flags.rejoin = false;
                    self.enter(now, S::Leaving, out);
                }
                Logged::IfChanged
            }
            (S::Slave, E::LeaveReq) => {
                self.enter(now, S::Leaving, out);
                Logged::Always
            }
            (S::Slave, E::LeftSelf { .. }) => {
                self.last_error = Some("our node disappeared".into());
                self.restart_without_our_node(now, out);
                Logged::Always
            }
            (S::Slave, E::LeftMaster { .. }) => {
                self.enter(now, S::Listing, out);
                Logged::Always
            }
            (S::Slave, E::SyncReq) => {
                self.enter(now, S::Syncing, out);
                Logged::Always
            }

            // ---------------- MASTER ----------------
            (S::Master, E::None) => {
                if now.mono_ms.saturating_sub(self.last_access) >= self.config.expire_master_ms {
                    self.flags.rejoin = false;
                    self.enter(now, S::Leaving, out);
                }
                Logged::IfChanged
            }
            (S::Master, E::LeaveReq) => {
                self.enter(now, S::Leaving, out);
                Logged::Always
            }
            (S::Master, E::LeftSelf { .. }) => {
                self.last_error = Some("our node disappeared".into());
                self.restart_without_our_node(now, out);
                Logged::Always
            }
            (S::Master, E::SyncReq) => Logged::Always,

            // A poke in a pending state (deadlines were handled above): someone
            // wants this election, so if the attempt fails it rejoins after its
            // back-off instead of going idle. (OpenIO drops it, and a follower
            // that fails while its master is slow stays without a role.)
            (_, E::None) => {
                self.flags.rejoin = !self.exiting;
                Logged::Never
            }
            // Anything else is abnormal in this state: stay, but keep a trace.
            _ => Logged::Always,
        }
    }

    // ----- helpers -----

    fn flag(&mut self, set: impl FnOnce(&mut Flags)) -> Logged {
        set(&mut self.flags);
        Logged::Always
    }

    fn op(&mut self) -> OpId {
        let op = self.next_op;
        self.next_op += 1;
        op
    }

    fn jitter(&self, base: u64, salt: u64) -> u64 {
        // Deterministic "equal jitter": a value in [base/2, base].
        let mut x = self.jitter_seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        base / 2 + x % (base / 2 + 1)
    }

    fn backoff(&self, first: u64, max: u64, n: u32, salt: u64) -> u64 {
        let raw = first.saturating_mul(1u64 << n.min(20)).min(max);
        self.jitter(raw, salt)
    }

    /// An election that stays out deletes the nodes a failed leave left
    /// behind: its peers would follow such a node as their master's for as
    /// long as our session lives (sim seed 12749: an operator's leave during
    /// a ZooKeeper outage). A membership deletes them when it starts.
    fn delete_leftovers(&mut self, out: &mut Vec<Action>) {
        for seq in std::mem::take(&mut self.stale_nodes) {
            out.push(Action::Delete { op: None, seq });
        }
    }

    fn remember_stale(&mut self, seq: Seq) {
        if !self.stale_nodes.contains(&seq) {
            self.stale_nodes.push(seq);
        }
    }

    /// Sets the watch on our node (EXISTS); returns its op.
    fn watch_self(&mut self, out: &mut Vec<Action>) -> OpId {
        let op = self.op();
        self.self_watch = SelfWatch::Pending(op);
        out.push(Action::WatchSelf {
            op,
            seq: self.local_id.get().unwrap_or_default(),
            generation: self.generation,
        });
        op
    }

    /// MASTER once the watch on our node is set or asked for; WATCHING
    /// (asking again) when asking failed. Waiting for the answer would add
    /// nothing: ZooKeeper orders the EXISTS within our session, so a node
    /// gone before it is processed is reported by its answer (LEFT_SELF),
    /// and one gone after, by the watch. Either way the master learns
    /// within one round trip, as it would from a notification in flight.
    fn take_mastership(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.self_watch == SelfWatch::None {
            self.enter(now, State::Watching, out);
        } else {
            self.enter(now, State::Master, out);
        }
    }

    fn forget_ids(&mut self) {
        self.local_id = Maybe::NONE;
        self.self_watch = SelfWatch::None;
        self.master_id = Maybe::NONE;
        self.master = None;
    }

    fn reset_membership(&mut self) {
        self.forget_ids();
        self.peers = None;
        self.pending_op = Maybe::NONE;
        self.getvers = None;
        self.wake_at = Maybe::NONE;
    }

    /// Whether a candidate's round, with answers still pending, already
    /// elects it whatever those answers say, so that it need not wait for
    /// the slowest peer (OpenIO waits for the last reply).
    ///
    /// Why that is safe: it is the verdict the round would give if the
    /// silent peers' answers were errors, and a round already elects a
    /// candidate despite errors, from a majority that answered: we and the
    /// peers at or behind our version are a majority; an acknowledged write
    /// is on a majority, which meets ours, so we hold it. Each peer that
    /// answered is fenced (it refuses writes of older masters), and so are
    /// we, so no older master reaches a majority again. A silent peer that
    /// is ahead of us holds only writes never acknowledged; it copies the
    /// base from us once it follows us, as a peer that failed to answer
    /// would. A silent answer that comes after is ignored (`step`).
    ///
    /// Only for the plain case: nothing ahead, diverged or without a copy
    /// has answered, and no leave is asked. Those wait for every answer, as
    /// before: a copy-less candidate must know whether a silent peer holds
    /// the only copy.
    fn wins_already(&self, round: &GetversRound, group: u32) -> bool {
        !self.flags.leave
            && !self.flags.left_self
            && round.old == 0
            && round.race.is_empty()
            && round.no_copy == 0
            && !no_quorum(round.failed(), group)
    }

    fn count_getvers(&mut self, peer: ServiceId, outcome: GetversOutcome) {
        // Only answers of the round under way get here (see `step`).
        let Some(round) = self.getvers.as_deref_mut() else {
            return;
        };
        round.pending.remove(&peer);
        match outcome {
            GetversOutcome::Ok => round.ok += 1,
            GetversOutcome::NoCopy => {
                round.ok += 1;
                round.no_copy += 1;
            }
            GetversOutcome::Old => round.old += 1,
            GetversOutcome::Race => round.race.push(peer),
            GetversOutcome::Ko(e) => round.errors.push((peer, e)),
        }
    }

    fn retry_or_fail(&mut self, now: Now, delayed: State, out: &mut Vec<Action>) {
        if self.retries_left == 0 {
            self.enter(now, State::LeavingFailing, out);
        } else {
            self.retries_left -= 1;
            self.enter(now, delayed, out);
        }
    }

    /// Our node vanished while an operation was pending: start over cleanly.
    fn restart_after_left_self(&mut self, now: Now, out: &mut Vec<Action>) {
        self.last_error = Some("our node disappeared before the election settled".into());
        self.flags.left_self = false;
        self.flags.left_master = false;
        self.restart_without_our_node(now, out);
    }

    /// Our node was deleted, and not by us: someone changed the group
    /// behind our back (an operator, or a deletion of the base, which
    /// deletes every node of its election). The restart reads the
    /// directory afresh instead of reusing the peers it knew: a deleted
    /// base is no longer ours, and a base created again names another
    /// creation (issue 14, H3).
    fn restart_without_our_node(&mut self, now: Now, out: &mut Vec<Action>) {
        self.forget_ids();
        self.peers = None;
        self.flags.decache = true;
        self.start(now, out);
    }

    /// START: to PEERING, or straight to CREATING when peers are cached.
    fn start(&mut self, now: Now, out: &mut Vec<Action>) {
        self.unstable_since = Maybe::some(now.mono_ms);
        if self.peers.as_ref().is_some_and(|p| !p.is_empty()) {
            self.enter(now, State::Creating, out);
        } else {
            self.enter(now, State::Peering, out);
        }
    }

    /// The only place where the state changes: entry actions of each state.
    fn enter(&mut self, now: Now, to: State, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        self.entered_mono = now.mono_ms;
        self.wake_at = Maybe::NONE;
        if !to.is_final() && to != State::None && self.unstable_since.is_none() {
            self.unstable_since = Maybe::some(now.mono_ms);
        }
        match to {
            State::None => {
                self.forget_ids();
                self.peers = None;
                self.pending_op = Maybe::NONE;
                self.unstable_since = Maybe::NONE;
            }
            State::Peering => {
                let op = self.op();
                self.pending_op = Maybe::some(op);
                out.push(Action::ResolvePeers {
                    op,
                    decache: std::mem::take(&mut self.flags.decache),
                });
            }
            State::Creating => {
                self.flags.rejoin = false;
                if self.exiting {
                    self.enter(now, State::None, out);
                    return;
                }
                for seq in std::mem::take(&mut self.stale_nodes) {
                    out.push(Action::Delete { op: None, seq });
                }
                let peers = self.peers.clone().unwrap_or_default();
                let due = self
                    .last_use_sent
                    .get()
                    .is_none_or(|t| now.mono_ms >= t + self.config.use_interval_ms);
                if due && !peers.is_empty() {
                    self.last_use_sent = Maybe::some(now.mono_ms);
                    out.push(Action::SendUse {
                        peers,
                        master: false,
                    });
                }
                self.generation += 1;
                let op = self.op();
                self.pending_op = Maybe::some(op);
                out.push(Action::Create {
                    op,
                    generation: self.generation,
                });
            }
            State::Watching => {
                let op = match self.self_watch {
                    SelfWatch::Pending(op) => op,
                    _ => self.watch_self(out),
                };
                self.pending_op = Maybe::some(op);
            }
            State::Listing => {
                self.flags.left_master = false;
                self.master_id = Maybe::NONE;
                self.master = None;
                let op = self.op();
                self.pending_op = Maybe::some(op);
                out.push(Action::List {
                    op,
                    seq: self.local_id.get().unwrap_or_default(),
                });
            }
            State::Asking => {
                let op = self.op();
                self.pending_op = Maybe::some(op);
                let seq = self.master_id.get().unwrap_or_default();
                out.push(Action::GetMaster {
                    op,
                    seq,
                    generation: self.generation,
                });
            }
            State::CheckingMaster => {
                let op = self.op();
                let master = self.master.clone();
                let mut round = GetversRound {
                    op,
                    ..GetversRound::default()
                };
                if let Some(peer) = master {
                    round.pending.insert(peer.clone());
                    out.push(Action::SendGetvers {
                        op,
                        peer,
                        master_seq: self.master_id.get(),
                    });
                }
                self.getvers = Some(Box::new(round));
            }
            State::CheckingSlaves => {
                if from == State::Listing {
                    // Fresh budget only for a fresh candidacy (OpenIO resets it
                    // on every retry and so never gives up).
                    self.retries_left = self.config.getvers_attempts;
                }
                if self.self_watch == SelfWatch::None {
                    // Beside the GETVERS round, not before it: the watch is
                    // usually set before the slaves answer.
                    self.watch_self(out);
                }
                let op = self.op();
                let mut round = GetversRound {
                    op,
                    ..GetversRound::default()
                };
                for peer in self.peers.clone().unwrap_or_default().iter().cloned() {
                    round.pending.insert(peer.clone());
                    out.push(Action::SendGetvers {
                        op,
                        peer,
                        master_seq: None,
                    });
                }
                if round.pending.is_empty() {
                    // A group of one: nobody to ask.
                    self.getvers = None;
                    self.take_mastership(now, out);
                } else {
                    self.getvers = Some(Box::new(round));
                }
            }
            State::Syncing => {
                self.flags.sync = false;
                self.unstable_since = Maybe::some(now.mono_ms);
                let op = self.op();
                self.pending_op = Maybe::some(op);
                if let Some(master) = self.master.clone() {
                    out.push(Action::Sync { op, master });
                }
            }
            State::DelayedCheckingMaster | State::DelayedCheckingSlaves => {
                let used = self
                    .config
                    .getvers_attempts
                    .saturating_sub(self.retries_left);
                let delay = self.backoff(
                    self.config.getvers_delay_ms,
                    self.config.getvers_delay_max_ms,
                    used.saturating_sub(1),
                    u64::from(used) + self.generation * 31,
                );
                self.wake_at = Maybe::some(now.mono_ms + delay);
            }
            State::RefreshCheckingMaster | State::RefreshCheckingSlaves => {
                let op = self.op();
                self.pending_op = Maybe::some(op);
                out.push(Action::ResolvePeers { op, decache: true });
            }
            State::Leaving | State::LeavingFailing => {
                self.flags.leave = false;
                self.flags.left_self = false;
                self.flags.left_master = false;
                self.master_id = Maybe::NONE;
                self.master = None;
                self.peers = None;
                match self.local_id.get() {
                    Some(seq) => {
                        let op = self.op();
                        self.pending_op = Maybe::some(op);
                        out.push(Action::Delete { op: Some(op), seq });
                    }
                    None => {
                        // Nothing to delete: conclude at once.
                        let next = if to == State::Leaving {
                            State::None
                        } else {
                            State::Failed
                        };
                        self.enter(now, next, out);
                    }
                }
            }
            State::Failed => {
                self.forget_ids();
                self.peers = None;
                self.pending_op = Maybe::NONE;
                self.last_use_sent = Maybe::some(now.mono_ms);
                self.failures = self.failures.saturating_add(1);
                let delay = self.backoff(
                    self.config.retry_failed_ms,
                    self.config.retry_failed_max_ms,
                    self.failures - 1,
                    u64::from(self.failures) * 7 + 3,
                );
                self.wake_at = Maybe::some(now.mono_ms + delay);
            }
            State::Slave => {
                self.unstable_since = Maybe::NONE;
                self.failures = 0;
                self.pending_op = Maybe::NONE;
                self.flags.rejoin = false;
                if self.flags.sync {
                    self.enter(now, State::Syncing, out);
                }
            }
            State::Master => {
                self.unstable_since = Maybe::NONE;
                self.failures = 0;
                self.pending_op = Maybe::NONE;
                self.flags.rejoin = false;
                // A resync makes no sense on the master; the API answers 301.
                self.flags.sync = false;
                self.last_error = None;
                let peers = self.peers.clone().unwrap_or_default();
                if !peers.is_empty() {
                    out.push(Action::SendUse {
                        peers,
                        master: true,
                    });
                }
            }
        }
    }

    /// From now on, an election that rejoins (it stepped aside for a newer
    /// replica, was asked to leave and come back, or to resync while idle)
    /// stops in NONE with [`Self::rejoin_requested`] set, and the caller
    /// restarts it with `Event::None` when its admission control lets it. A
    /// rejoin that restarted at once kept its admission slot forever and
    /// starved the elections queued behind it (sim seed 23959).
    pub fn hold_rejoins(&mut self) {
        self.hold_rejoin = true;
    }

    /// Is a restart requested for when the election is back in NONE?
    pub fn rejoin_requested(&self) -> bool {
        self.flags.rejoin
    }

    /// The invariants of reference §1.3, checked in debug builds.
    fn debug_check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let s = self.state;
        match s {
            State::None => {
                debug_assert!(
                    self.local_id.is_none() && self.master_id.is_none(),
                    "{s}: ids set"
                );
                debug_assert!(self.pending_op.is_none(), "{s}: op pending");
                debug_assert!(self.unstable_since.is_none(), "{s}: unstable");
            }
            State::Creating => {
                debug_assert!(self.local_id.is_none() && self.pending_op.is_some(), "{s}")
            }
            State::Listing => {
                debug_assert!(self.local_id.is_some() && self.master_id.is_none(), "{s}")
            }
            State::Watching => {
                debug_assert!(
                    self.local_id.is_some() && self.master_id.get() == self.local_id.get(),
                    "{s}"
                );
                debug_assert!(
                    matches!(self.self_watch, SelfWatch::Pending(op) if self.pending_op.get() == Some(op)),
                    "{s}: waits for no watch"
                )
            }
            State::Asking => {
                debug_assert!(
                    self.local_id.is_some()
                        && self.master_id.is_some()
                        && self.master_id.get() != self.local_id.get(),
                    "{s}"
                );
                debug_assert!(self.master.is_none(), "{s}: master url known");
            }
            State::CheckingMaster
            | State::Syncing
            | State::DelayedCheckingMaster
            | State::RefreshCheckingMaster
            | State::Slave => {
                debug_assert!(
                    self.master_id.is_some() && self.master_id.get() != self.local_id.get(),
                    "{s}"
                );
                debug_assert!(self.master.is_some(), "{s}: no master url");
            }
            State::CheckingSlaves
            | State::DelayedCheckingSlaves
            | State::RefreshCheckingSlaves
            | State::Master => {
                debug_assert!(
                    self.master_id.is_some() && self.master_id.get() == self.local_id.get(),
                    "{s}"
                );
                debug_assert!(self.master.is_none(), "{s}: follows someone");
                debug_assert!(
                    s != State::Master || self.self_watch != SelfWatch::None,
                    "{s}: our node is not watched"
                );
            }
            State::Leaving | State::LeavingFailing => {
                debug_assert!(self.local_id.is_some() && self.master_id.is_none(), "{s}")
            }
            State::Failed => {
                debug_assert!(self.local_id.is_none() && self.master_id.is_none(), "{s}")
            }
            State::Peering => {}
        }
        if s.is_final() {
            debug_assert!(
                self.peers.is_some() && self.pending_op.is_none() && self.unstable_since.is_none(),
                "{s}"
            );
        }
    }
}

enum Logged {
    Always,
    IfChanged,
    Never,
}

#[cfg(test)]
mod tests;
