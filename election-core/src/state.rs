//! States, events and actions of one election, with OpenIO's names.

use crate::names::{Seq, ServiceId};
use std::fmt;

/// The 18 states of an election (OpenIO's order; `>= Slave` means final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    None,
    Peering,
    Creating,
    Watching,
    Listing,
    Asking,
    CheckingMaster,
    CheckingSlaves,
    Syncing,
    DelayedCheckingMaster,
    RefreshCheckingMaster,
    DelayedCheckingSlaves,
    RefreshCheckingSlaves,
    Leaving,
    LeavingFailing,
    Failed,
    Slave,
    Master,
}

impl State {
    pub const ALL: [State; 18] = [
        State::None,
        State::Peering,
        State::Creating,
        State::Watching,
        State::Listing,
        State::Asking,
        State::CheckingMaster,
        State::CheckingSlaves,
        State::Syncing,
        State::DelayedCheckingMaster,
        State::RefreshCheckingMaster,
        State::DelayedCheckingSlaves,
        State::RefreshCheckingSlaves,
        State::Leaving,
        State::LeavingFailing,
        State::Failed,
        State::Slave,
        State::Master,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::None => "NONE",
            State::Peering => "PEERING",
            State::Creating => "CREATING",
            State::Watching => "WATCHING",
            State::Listing => "LISTING",
            State::Asking => "ASKING",
            State::CheckingMaster => "CHECKING_MASTER",
            State::CheckingSlaves => "CHECKING_SLAVES",
            State::Syncing => "SYNCING",
            State::DelayedCheckingMaster => "DELAYED_CHECKING_MASTER",
            State::RefreshCheckingMaster => "REFRESH_CHECKING_MASTER",
            State::DelayedCheckingSlaves => "DELAYED_CHECKING_SLAVES",
            State::RefreshCheckingSlaves => "REFRESH_CHECKING_SLAVES",
            State::Leaving => "LEAVING",
            State::LeavingFailing => "LEAVING_FAILING",
            State::Failed => "FAILED",
            State::Slave => "SLAVE",
            State::Master => "MASTER",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// MASTER and SLAVE: the only states a waiting request accepts.
    pub fn is_final(self) -> bool {
        matches!(self, State::Slave | State::Master)
    }

    /// The counting class used by `/info` (PEERING counts as pending, unlike OpenIO).
    pub fn class(self) -> &'static str {
        match self {
            State::None => "none",
            State::Failed => "failed",
            State::Slave => "slave",
            State::Master => "master",
            _ => "pending",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one asynchronous operation requested by the state machine; its
/// completion must carry it back, so that late answers to abandoned
/// operations are recognised and ignored.
pub type OpId = u64;

/// What a peer's GETVERS exchange concluded, from the asker's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetversOutcome {
    /// Versions agree (or the remote is behind, which is not our problem).
    Ok,
    /// No usable answer: network error, peer loading/unknown, refused.
    Ko(String),
    /// We are behind the remote.
    Old,
    /// Both sides have writes the other lacks.
    Race,
    /// Neither side holds a copy of the base: they agree, on nothing. A
    /// candidate without a copy leads only when every peer says so, since
    /// one that did not answer may hold the only copy.
    NoCopy,
}

/// Why the master node's content cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterBadReason {
    /// Empty, oversized or not a service id.
    Invalid(String),
    /// The node carries our own id but is not our current node: a leftover
    /// of one of our earlier memberships or sessions. It is deleted.
    Rogue(Seq),
    /// A service that is not among the base's peers.
    UnknownPeer(ServiceId),
}

/// Inputs of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A poke: timer, waiting request, peer USE, explicit start.
    None,
    /// The ZooKeeper session is gone (or must be considered gone).
    Disconnected,
    LeaveReq,
    SyncReq,
    /// Our node was deleted (watch fired, or exists said no node).
    LeftSelf {
        generation: u64,
        seq: Seq,
    },
    /// The master's node was deleted.
    LeftMaster {
        generation: u64,
        seq: Seq,
    },
    GetpeersDone {
        op: OpId,
        /// Shared: most bases of a service have one of a few peer sets.
        peers: Option<std::sync::Arc<[ServiceId]>>,
    },
    Getvers {
        op: OpId,
        peer: ServiceId,
        outcome: GetversOutcome,
    },
    MasterOk {
        op: OpId,
        master: ServiceId,
    },
    MasterKo {
        op: OpId,
        error: String,
    },
    MasterBad {
        op: OpId,
        reason: MasterBadReason,
    },
    CreateOk {
        op: OpId,
        seq: Seq,
    },
    CreateKo {
        op: OpId,
        error: String,
    },
    ExistsOk {
        op: OpId,
    },
    ExistsKo {
        op: OpId,
        error: String,
    },
    /// The group was listed: `lowest` is the lowest sequence among the
    /// nodes of this election.
    ListOk {
        op: OpId,
        lowest: Seq,
    },
    ListKo {
        op: OpId,
        error: String,
    },
    LeaveOk {
        op: OpId,
    },
    LeaveKo {
        op: OpId,
        error: String,
    },
    SyncOk {
        op: OpId,
    },
    SyncKo {
        op: OpId,
        error: String,
    },
}

impl Event {
    /// OpenIO's event name, as written in the transition log.
    pub fn name(&self) -> &'static str {
        match self {
            Event::None => "NONE",
            Event::Disconnected => "DISCONNECTED",
            Event::LeaveReq => "LEAVE_REQ",
            Event::SyncReq => "SYNC_REQ",
            Event::LeftSelf { .. } => "LEFT_SELF",
            Event::LeftMaster { .. } => "LEFT_MASTER",
            Event::GetpeersDone { .. } => "GETPEERS_DONE",
            Event::Getvers { outcome, .. } => match outcome {
                GetversOutcome::Ok | GetversOutcome::NoCopy => "GETVERS_OK",
                GetversOutcome::Ko(_) => "GETVERS_KO",
                GetversOutcome::Old => "GETVERS_OLD",
                GetversOutcome::Race => "GETVERS_RACE",
            },
            Event::MasterOk { .. } => "MASTER_OK",
            Event::MasterKo { .. } => "MASTER_KO",
            Event::MasterBad { .. } => "MASTER_BAD",
            Event::CreateOk { .. } => "CREATE_OK",
            Event::CreateKo { .. } => "CREATE_KO",
            Event::ExistsOk { .. } => "EXISTS_OK",
            Event::ExistsKo { .. } => "EXISTS_KO",
            Event::ListOk { .. } => "LIST_OK",
            Event::ListKo { .. } => "LIST_KO",
            Event::LeaveOk { .. } => "LEAVE_OK",
            Event::LeaveKo { .. } => "LEAVE_KO",
            Event::SyncOk { .. } => "SYNC_OK",
            Event::SyncKo { .. } => "SYNC_KO",
        }
    }

    /// The operation this event completes, if it is a completion.
    pub fn op(&self) -> Option<OpId> {
        match self {
            Event::GetpeersDone { op, .. }
            | Event::Getvers { op, .. }
            | Event::MasterOk { op, .. }
            | Event::MasterKo { op, .. }
            | Event::MasterBad { op, .. }
            | Event::CreateOk { op, .. }
            | Event::CreateKo { op, .. }
            | Event::ExistsOk { op }
            | Event::ExistsKo { op, .. }
            | Event::ListOk { op, .. }
            | Event::ListKo { op, .. }
            | Event::LeaveOk { op }
            | Event::LeaveKo { op, .. }
            | Event::SyncOk { op }
            | Event::SyncKo { op, .. } => Some(*op),
            _ => None,
        }
    }
}

/// What the driver must do, in order. Every action that expects an answer
/// carries the [`OpId`] its completion event must return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Resolve the peers of the base (self excluded); answer `GetpeersDone`.
    ResolvePeers { op: OpId, decache: bool },
    /// Create `<dir>/<KEY>-` EPHEMERAL|SEQUENTIAL with our id as data;
    /// answer `CreateOk`/`CreateKo`. Watches set later carry `generation`.
    Create { op: OpId, generation: u64 },
    /// exists+watch on our node; answer `ExistsOk`/`ExistsKo`, and later
    /// `LeftSelf` when it is deleted.
    WatchSelf { op: OpId, seq: Seq, generation: u64 },
    /// List the group; answer `ListOk { lowest }` or `ListKo`. When the
    /// lowest node is ours, the driver checks that its ephemeral owner is the
    /// current session (else answers `Disconnected`).
    List { op: OpId, seq: Seq },
    /// get+watch on the master's node; answer `MasterOk`/`MasterKo`/`MasterBad`,
    /// and later `LeftMaster` when it is deleted.
    GetMaster { op: OpId, seq: Seq, generation: u64 },
    /// Delete one of our nodes. With an op, answer `LeaveOk`/`LeaveKo`
    /// (no-node counts as OK); without, fire and forget (cleanup).
    Delete { op: Option<OpId>, seq: Seq },
    /// Ask the peers to start (or refresh) their side of the election.
    SendUse {
        peers: std::sync::Arc<[ServiceId]>,
        master: bool,
    },
    /// Ask one peer for its version vector and compare it with ours; answer
    /// `Getvers`. `master_seq` is set when asking the master, which must
    /// confirm it owns that node.
    SendGetvers {
        op: OpId,
        peer: ServiceId,
        master_seq: Option<Seq>,
    },
    /// Copy the base from the master; answer `SyncOk`/`SyncKo`.
    Sync { op: OpId, master: ServiceId },
}
