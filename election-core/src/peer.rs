//! Pure decisions the driver takes on behalf of the state machine: reading a
//! master node, concluding a GETVERS exchange, and a slave's verdict on a
//! replicated write. The server and the deterministic simulation share them,
//! so the simulation checks the rules the server applies.

use crate::names::{seq_after, Seq, ServiceId};
use crate::state::{GetversOutcome, MasterBadReason, State};
use crate::version::{compare, ReplicaVersion, VersionDiff};

/// Largest election node payload accepted (a service id is far shorter).
pub const MAX_NODE_DATA: usize = 256;

/// Reads the owner id written in an election node. `peers` are the base's
/// other replicas; a node naming ourselves is a leftover of ours (`Rogue`).
pub fn master_from_node(
    data: &[u8],
    me: &ServiceId,
    peers: Option<&[ServiceId]>,
) -> Result<ServiceId, MasterBadReason> {
    if data.is_empty() || data.len() > MAX_NODE_DATA {
        return Err(MasterBadReason::Invalid(format!(
            "node data of {} bytes",
            data.len()
        )));
    }
    let text = std::str::from_utf8(data)
        .map_err(|_| MasterBadReason::Invalid("node data is not UTF-8".into()))?;
    let id = ServiceId::new(text.trim()).map_err(|e| MasterBadReason::Invalid(e.to_string()))?;
    if &id == me {
        return Err(MasterBadReason::Rogue(0));
    }
    // The peer set's copy is returned: it shares its text with every
    // election of the same peers (no allocation kept per election).
    match peers {
        Some(p) => p
            .iter()
            .find(|known| **known == id)
            .cloned()
            .ok_or(MasterBadReason::UnknownPeer(id)),
        None => Err(MasterBadReason::Invalid("no peers known".into())),
    }
}

/// Concludes a GETVERS exchange from the asker's side. `asking_master` is set
/// when a follower checks its master: a follower ahead of its master holds a
/// write the master never acknowledged and must take the master's copy,
/// whereas a candidate simply leads peers that are behind (they catch up).
pub fn getvers_outcome(
    local: &ReplicaVersion,
    remote: &ReplicaVersion,
    peer: &ServiceId,
    asking_master: bool,
) -> GetversOutcome {
    // Two replicas without a copy compare equal, but agree on nothing: a
    // candidate without a copy that counted such peers led while the only
    // copy sat on a peer that had not answered yet (a peer whose old copy
    // of a deleted base was set aside, seen in
    // `a_container_created_again_never_gets_its_old_data_back`). The round
    // tells this agreement apart (`Election`'s CHECKING_SLAVES).
    if matches!(
        (local, remote),
        (ReplicaVersion::Missing, ReplicaVersion::Missing)
    ) {
        return GetversOutcome::NoCopy;
    }
    match compare(local, remote) {
        VersionDiff::Equal => GetversOutcome::Ok,
        VersionDiff::LocalAhead if !asking_master => GetversOutcome::Ok,
        VersionDiff::LocalAhead | VersionDiff::Diverged => GetversOutcome::Race,
        VersionDiff::LocalBehind => GetversOutcome::Old,
        VersionDiff::Unknown(why) => GetversOutcome::Ko(format!("{peer}: version unknown ({why})")),
    }
}

/// A slave's verdict on a write replicated to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaVerdict {
    /// Apply it (if it follows the local version).
    Apply,
    /// We are master ourselves.
    IsMaster,
    /// We follow another master, or another epoch of it.
    NotFollowing {
        master: Option<ServiceId>,
        epoch: Option<Seq>,
    },
    /// We vouched for a candidate whose node is above this epoch: that
    /// candidate may already lead, so the older master is deposed.
    Fenced { fence: Seq },
    /// Our side of the election is not final.
    NotSettled(State),
}

impl ReplicaVerdict {
    /// Why the write is refused, as the wire carries it (None: apply it).
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            ReplicaVerdict::Apply => None,
            ReplicaVerdict::IsMaster => Some(Refusal::IsMaster),
            ReplicaVerdict::NotFollowing { .. } => Some(Refusal::NotFollowing),
            ReplicaVerdict::Fenced { .. } => Some(Refusal::Fenced),
            ReplicaVerdict::NotSettled(_) => Some(Refusal::NotSettled),
        }
    }
}

/// Why a slave refused a replicated write, carried on the wire beside the
/// human message (the `refusal` field of the answer's JSON body). The master
/// acts on this value, never on the message's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The receiver is master of the base itself.
    IsMaster,
    /// The receiver follows another master, or another epoch of it.
    NotFollowing,
    /// The receiver vouched for a candidate whose node is above the sender's.
    Fenced,
    /// The receiver's side of the election is not final.
    NotSettled,
    /// The write does not follow the receiver's version (or it has no
    /// copy): it fetches the master's copy.
    Behind,
    /// The receiver's copy is being restored.
    Restoring,
    /// The receiver's copy is still loading.
    Loading,
    /// The receiver is shutting down.
    Exiting,
    /// The receiver failed to write its replica.
    StoreFailed,
    /// The write's batch was decided (committed or rolled back) before the
    /// copy the receiver holds was made: a request that arrived late, after
    /// a resync. A rolled-back batch applied there would leave that replica
    /// with a write its master does not have.
    Stale,
}

impl Refusal {
    /// The sender is not master of the base any more (another master leads,
    /// or a candidate above it may): it must step down.
    pub fn deposes_master(self) -> bool {
        matches!(
            self,
            Refusal::IsMaster | Refusal::NotFollowing | Refusal::Fenced
        )
    }
}

/// Decides whether a write from `from` at `epoch` (its node's sequence) may
/// be applied, given our election's state and `fence`, the highest node of a
/// candidate we answered a GETVERS for.
pub fn replica_verdict(
    state: State,
    master: Option<&ServiceId>,
    master_id: Option<Seq>,
    fence: Option<Seq>,
    from: &ServiceId,
    epoch: Seq,
) -> ReplicaVerdict {
    match state {
        State::Master => ReplicaVerdict::IsMaster,
        State::Slave if master != Some(from) || master_id != Some(epoch) => {
            ReplicaVerdict::NotFollowing {
                master: master.cloned(),
                epoch: master_id,
            }
        }
        State::Slave => match fence {
            Some(fence) if seq_after(fence, epoch) => ReplicaVerdict::Fenced { fence },
            _ => ReplicaVerdict::Apply,
        },
        other => ReplicaVerdict::NotSettled(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_depose_the_master_and_their_wire_names() {
        let table = [
            (Refusal::IsMaster, true, "\"is_master\""),
            (Refusal::NotFollowing, true, "\"not_following\""),
            (Refusal::Fenced, true, "\"fenced\""),
            (Refusal::NotSettled, false, "\"not_settled\""),
            (Refusal::Behind, false, "\"behind\""),
            (Refusal::Restoring, false, "\"restoring\""),
            (Refusal::Loading, false, "\"loading\""),
            (Refusal::Exiting, false, "\"exiting\""),
            (Refusal::StoreFailed, false, "\"store_failed\""),
            (Refusal::Stale, false, "\"stale\""),
        ];
        for (refusal, deposes, wire) in table {
            assert_eq!(refusal.deposes_master(), deposes, "{refusal:?}");
            assert_eq!(serde_json::to_string(&refusal).expect("json"), wire);
            assert_eq!(
                serde_json::from_str::<Refusal>(wire).expect("json"),
                refusal
            );
        }
        let me = id("127.0.0.1:1");
        let verdicts = [
            (ReplicaVerdict::Apply, None),
            (ReplicaVerdict::IsMaster, Some(Refusal::IsMaster)),
            (
                ReplicaVerdict::NotFollowing {
                    master: Some(me),
                    epoch: Some(3),
                },
                Some(Refusal::NotFollowing),
            ),
            (ReplicaVerdict::Fenced { fence: 9 }, Some(Refusal::Fenced)),
            (
                ReplicaVerdict::NotSettled(State::Listing),
                Some(Refusal::NotSettled),
            ),
        ];
        for (verdict, refusal) in verdicts {
            assert_eq!(verdict.refusal(), refusal, "{verdict:?}");
        }
    }

    fn id(s: &str) -> ServiceId {
        ServiceId::new(s).expect("valid id")
    }

    #[test]
    fn master_nodes() {
        let (me, a, z) = (id("127.0.0.1:1"), id("127.0.0.1:2"), id("127.0.0.1:9"));
        let peers = [a.clone()];
        assert_eq!(master_from_node(b"127.0.0.1:2", &me, Some(&peers)), Ok(a));
        assert_eq!(
            master_from_node(b"127.0.0.1:1", &me, Some(&peers)),
            Err(MasterBadReason::Rogue(0))
        );
        assert_eq!(
            master_from_node(b"127.0.0.1:9", &me, Some(&peers)),
            Err(MasterBadReason::UnknownPeer(z))
        );
        for bad in [&b""[..], b"\xff\xfe", b"two words", &[b'a'; 300]] {
            assert!(matches!(
                master_from_node(bad, &me, Some(&peers)),
                Err(MasterBadReason::Invalid(_))
            ));
        }
    }

    /// Two replicas without a copy agree on nothing (`NoCopy`, not `Ok`);
    /// one without a copy is behind one with a copy.
    #[test]
    fn replicas_without_a_copy_agree_on_nothing() {
        use crate::version::TableVersion;
        let peer = id("127.0.0.1:2");
        let copy = ReplicaVersion::Known {
            tables: [(
                "main".to_string(),
                TableVersion {
                    version: 1,
                    when: 0,
                    writer: 0,
                },
            )]
            .into(),
        };
        let missing = ReplicaVersion::Missing;
        for asking_master in [false, true] {
            assert_eq!(
                getvers_outcome(&missing, &missing, &peer, asking_master),
                GetversOutcome::NoCopy
            );
            assert_eq!(
                getvers_outcome(&missing, &copy, &peer, asking_master),
                GetversOutcome::Old
            );
        }
        assert_eq!(
            getvers_outcome(&copy, &missing, &peer, false),
            GetversOutcome::Ok
        );
    }

    #[test]
    fn verdicts() {
        let (m, o) = (id("m:1"), id("o:1"));
        let v = |state, fence| replica_verdict(state, Some(&m), Some(5), fence, &m, 5);
        assert_eq!(v(State::Slave, None), ReplicaVerdict::Apply);
        assert_eq!(v(State::Slave, Some(5)), ReplicaVerdict::Apply);
        assert_eq!(
            v(State::Slave, Some(6)),
            ReplicaVerdict::Fenced { fence: 6 }
        );
        assert_eq!(v(State::Master, None), ReplicaVerdict::IsMaster);
        assert_eq!(
            v(State::Asking, None),
            ReplicaVerdict::NotSettled(State::Asking)
        );
        assert!(matches!(
            replica_verdict(State::Slave, Some(&m), Some(5), None, &o, 5),
            ReplicaVerdict::NotFollowing { .. }
        ));
        assert!(matches!(
            replica_verdict(State::Slave, Some(&m), Some(4), None, &m, 5),
            ReplicaVerdict::NotFollowing { .. }
        ));
    }
}
