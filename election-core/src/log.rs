//! The per-election transition log, in the seed's `<ms>:<PRE>:<EVENT>:<POST>` form.

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

/// A bounded ring, newest first when read. Unlike OpenIO's, a NONE→NONE
/// entry never hides older ones.
#[derive(Debug, Clone)]
pub struct TransitionLog {
    entries: VecDeque<LogEntry>,
    capacity: usize,
    next_seq: u64,
}

impl TransitionLog {
    pub const DEFAULT_CAPACITY: usize = 64;

    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::with_capacity(capacity.min(8)),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    pub fn push(&mut self, wall_ms: u64, pre: State, event: &'static str, post: State) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(LogEntry {
            seq: self.next_seq,
            wall_ms,
            pre,
            event,
            post,
        });
        self.next_seq += 1;
    }

    /// Newest first.
    pub fn iter(&self) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter().rev()
    }

    pub fn rendered(&self) -> Vec<String> {
        self.iter().map(LogEntry::render).collect()
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
}
