//! The state machine under arbitrary event sequences (late, duplicated,
//! out of order, with random op ids and sequences): never a panic, and its
//! own invariants (checked after every event in debug builds) hold.
#![no_main]
use election_core::names::ServiceId;
use election_core::{Action, Config, Election, Event, GetversOutcome, MasterBadReason, Now};
use libfuzzer_sys::fuzz_target;

fn event(b: &[u8], ops: u64, seq_hint: i64) -> Event {
    let op = if b[1] % 4 == 0 { u64::from(b[2]) } else { ops };
    let seq = if b[1] % 3 == 0 {
        i64::from(b[3]) - 8
    } else {
        seq_hint
    };
    let peer = |i: u8| ServiceId::new(format!("127.0.0.1:600{}", i % 4)).expect("id");
    let generation = u64::from(b[3] % 4);
    match b[0] % 22 {
        0 => Event::None,
        1 => Event::Disconnected,
        2 => Event::LeaveReq,
        3 => Event::SyncReq,
        4 => Event::LeftSelf { generation, seq },
        5 => Event::LeftMaster { generation, seq },
        6 => Event::GetpeersDone {
            op,
            peers: (b[2] % 3 != 0).then(|| (1..=(b[2] % 3)).map(peer).collect()),
        },
        7 => Event::Getvers {
            op,
            peer: peer(b[2]),
            outcome: match b[3] % 5 {
                0 => GetversOutcome::Ok,
                1 => GetversOutcome::Old,
                2 => GetversOutcome::Race,
                3 => GetversOutcome::NoCopy,
                _ => GetversOutcome::Ko("x".into()),
            },
        },
        8 => Event::MasterOk {
            op,
            master: peer(b[2]),
        },
        9 => Event::MasterKo {
            op,
            error: "x".into(),
        },
        10 => Event::MasterBad {
            op,
            reason: match b[2] % 3 {
                0 => MasterBadReason::Rogue(seq),
                1 => MasterBadReason::UnknownPeer(peer(b[3])),
                _ => MasterBadReason::Invalid("x".into()),
            },
        },
        11 => Event::CreateOk { op, seq },
        12 => Event::CreateKo {
            op,
            error: "x".into(),
        },
        13 => Event::ExistsOk { op },
        14 => Event::ExistsKo {
            op,
            error: "x".into(),
        },
        15 => Event::ListOk {
            op,
            lowest: seq - i64::from(b[2] % 3),
        },
        16 => Event::ListKo {
            op,
            error: "x".into(),
        },
        17 => Event::LeaveOk { op },
        18 => Event::LeaveKo {
            op,
            error: "x".into(),
        },
        19 => Event::SyncOk { op },
        20 => Event::SyncKo {
            op,
            error: "x".into(),
        },
        _ => Event::None,
    }
}

/// The operation an action asks an answer for.
fn op_of(a: &Action) -> Option<u64> {
    match a {
        Action::ResolvePeers { op, .. }
        | Action::Create { op, .. }
        | Action::WatchSelf { op, .. }
        | Action::List { op, .. }
        | Action::GetMaster { op, .. }
        | Action::SendGetvers { op, .. }
        | Action::Sync { op, .. } => Some(*op),
        Action::Delete { op, .. } => *op,
        Action::SendUse { .. } => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut fsm = Election::new(Config::default(), 7, Now::at(0));
    let mut now = 0u64;
    let mut last_op = 0u64;
    let mut last_seq = 0i64;
    for b in data.chunks_exact(4) {
        now += u64::from(b[1]) * 37;
        let actions = fsm.handle(Now::at(now), event(b, last_op, last_seq));
        // Answer the newest request most of the time, as a driver would.
        if let Some(op) = actions.iter().rev().find_map(op_of) {
            last_op = op;
        }
        if let Some(s) = fsm.local_id() {
            last_seq = s;
        }
        let _ = fsm.reason(Now::at(now));
        let _ = fsm.next_deadline();
    }
});
