//! The per-election transition log, in the seed's `<ms>:<PRE>:<EVENT>:<POST>` form.
//!
//! Stored packed (8 bytes an entry: the wall clock in 44 bits, up to the
//! year 2527, and three small indexes) and allocated at the first transition: a service holds one log
//! per election, 100,000 of them or more.

use crate::state::State;
use std::collections::VecDeque;

/// One transition: when (wall clock, ms), from, why, to, and its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Monotonic per election (never reused, survives the ring's wrap).
    pub seq: u64,
    pub wall_ms: u64,
    pub pre: State,
    pub event: &'static str,
    pub post: State,
}

impl LogEntry {
    pub fn render(&self) -> String {
        format!("{}:{}:{}:{}", self.wall_ms, self.pre, self.event, self.post)
    }
}

/// Every event name a log records (`Event::name`, and `TIMEOUT` for a
/// deadline), stored as its index here.
const EVENT_NAMES: [&str; 25] = [
    "NONE",
    "DISCONNECTED",
    "LEAVE_REQ",
    "SYNC_REQ",
    "LEFT_SELF",
    "LEFT_MASTER",
    "GETPEERS_DONE",
    "GETVERS_OK",
    "GETVERS_KO",
    "GETVERS_OLD",
    "GETVERS_RACE",
    "MASTER_OK",
    "MASTER_KO",
    "MASTER_BAD",
    "CREATE_OK",
    "CREATE_KO",
    "EXISTS_OK",
    "EXISTS_KO",
    "LIST_OK",
    "LIST_KO",
    "LEAVE_OK",
    "LEAVE_KO",
    "SYNC_OK",
    "SYNC_KO",
    "TIMEOUT",
];

/// A name missing from the table (a bug, caught by a debug assertion).
const UNKNOWN_EVENT: &str = "UNKNOWN";

fn event_index(name: &str) -> u8 {
    let found = EVENT_NAMES.iter().position(|n| *n == name);
    debug_assert!(found.is_some(), "event {name} missing from EVENT_NAMES");
    found.map_or(u8::MAX, |i| i as u8)
}

/// `wall_ms << 20 | pre << 14 | event << 6 | post`: a state index takes 6
/// bits, an event index 8 (`u8::MAX` is the unknown event).
#[derive(Debug, Clone, Copy)]
struct Packed(u64);

impl Packed {
    const WALL_MAX: u64 = (1 << 44) - 1;

    fn new(wall_ms: u64, pre: u8, event: u8, post: u8) -> Self {
        debug_assert!(pre < 64 && post < 64);
        Self(
            wall_ms.min(Self::WALL_MAX) << 20
                | u64::from(pre & 63) << 14
                | u64::from(event) << 6
                | u64::from(post & 63),
        )
    }
    fn wall_ms(self) -> u64 {
        self.0 >> 20
    }
    fn pre(self) -> u8 {
        (self.0 >> 14 & 63) as u8
    }
    fn event(self) -> u8 {
        (self.0 >> 6) as u8
    }
    fn post(self) -> u8 {
        (self.0 & 63) as u8
    }
}

/// A bounded ring, newest first when read. Unlike OpenIO's, a NONE→NONE
/// entry never hides older ones.
#[derive(Debug, Clone)]
pub struct TransitionLog {
    entries: VecDeque<Packed>,
    capacity: usize,
    next_seq: u64,
}

impl TransitionLog {
    pub const DEFAULT_CAPACITY: usize = 64;

    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    pub fn push(&mut self, wall_ms: u64, pre: State, event: &'static str, post: State) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        } else if self.entries.len() == self.entries.capacity() {
            // Grown by 4 entries at a time, not doubled: a settled election
            // has made 6 to 10 transitions (issue 13's 2 KiB).
            let room = (self.capacity - self.entries.len()).min(4);
            self.entries.reserve_exact(room);
        }
        self.entries.push_back(Packed::new(
            wall_ms,
            pre as u8,
            event_index(event),
            post as u8,
        ));
        self.next_seq += 1;
    }

    /// Newest first.
    pub fn iter(&self) -> impl Iterator<Item = LogEntry> + '_ {
        let newest = self.next_seq.wrapping_sub(1);
        self.entries.iter().rev().enumerate().map(move |(i, p)| {
            let state = |s: u8| {
                State::ALL
                    .get(usize::from(s))
                    .copied()
                    .unwrap_or(State::None)
            };
            LogEntry {
                seq: newest - i as u64,
                wall_ms: p.wall_ms(),
                pre: state(p.pre()),
                event: EVENT_NAMES
                    .get(usize::from(p.event()))
                    .copied()
                    .unwrap_or(UNKNOWN_EVENT),
                post: state(p.post()),
            }
        })
    }

    pub fn rendered(&self) -> Vec<String> {
        self.iter().map(|e| e.render()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Event, GetversOutcome};

    #[test]
    fn bounded_newest_first_and_monotonic() {
        let mut log = TransitionLog::new(3);
        for i in 0..5 {
            log.push(1000 + i, State::None, "NONE", State::None);
        }
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4, 3, 2]);
        assert_eq!(log.rendered()[0], "1004:NONE:NONE:NONE");
        assert_eq!(log.len(), 3, "NONE:NONE entries are kept, not truncating");
    }

    #[test]
    fn every_state_and_event_name_survives_packing() {
        let events = [
            Event::None,
            Event::Disconnected,
            Event::LeaveReq,
            Event::SyncReq,
            Event::LeftSelf {
                generation: 0,
                seq: 0,
            },
            Event::LeftMaster {
                generation: 0,
                seq: 0,
            },
            Event::GetpeersDone { op: 0, peers: None },
            Event::MasterKo {
                op: 0,
                error: String::new(),
            },
            Event::CreateOk { op: 0, seq: 0 },
            Event::CreateKo {
                op: 0,
                error: String::new(),
            },
            Event::ExistsOk { op: 0 },
            Event::ExistsKo {
                op: 0,
                error: String::new(),
            },
            Event::ListOk { op: 0, lowest: 0 },
            Event::ListKo {
                op: 0,
                error: String::new(),
            },
            Event::LeaveOk { op: 0 },
            Event::LeaveKo {
                op: 0,
                error: String::new(),
            },
            Event::SyncOk { op: 0 },
            Event::SyncKo {
                op: 0,
                error: String::new(),
            },
        ];
        let mut names: Vec<&'static str> = events.iter().map(Event::name).collect();
        for outcome in [
            GetversOutcome::Ok,
            GetversOutcome::Ko(String::new()),
            GetversOutcome::Old,
            GetversOutcome::Race,
        ] {
            names.push(
                Event::Getvers {
                    op: 0,
                    peer: crate::names::ServiceId::new("127.0.0.1:1").expect("id"),
                    outcome,
                }
                .name(),
            );
        }
        names.extend(["MASTER_OK", "MASTER_BAD", "TIMEOUT"]);
        let mut log = TransitionLog::new(64);
        for (i, name) in names.iter().enumerate() {
            let (pre, post) = (
                State::ALL[i % State::ALL.len()],
                State::ALL[(i + 5) % State::ALL.len()],
            );
            log.push(i as u64, pre, name, post);
            let e = log.iter().next().expect("entry");
            assert_eq!((e.pre, e.event, e.post), (pre, *name, post));
        }
        assert_eq!(std::mem::size_of::<Packed>(), 8);
        assert!(State::ALL.len() <= 64 && EVENT_NAMES.len() < 255);
        // Today's wall clock survives the packing.
        log.push(1_764_600_000_123, State::Master, "TIMEOUT", State::None);
        let e = log.iter().next().expect("entry");
        assert_eq!(
            (e.wall_ms, e.pre, e.event, e.post),
            (1_764_600_000_123, State::Master, "TIMEOUT", State::None)
        );
        for (i, s) in State::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "State::ALL is in declaration order");
        }
    }
}
