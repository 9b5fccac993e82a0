//! Version vectors of a base and their comparison (reference §4.2–4.3).
//!
//! Each base keeps, per table, a counter bumped by every replicated
//! transaction and the time of that bump. Two replicas compare their vectors
//! over the tables both know.

use std::collections::BTreeMap;

/// Which creation of a base a replica (or a directory entry) belongs to.
/// The same account and reference always name the same base: a container
/// deleted and created again is another incarnation, and a replica left
/// over from the first must never be elected or served (issue 14, H3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Incarnation {
    /// Drawn at random when the directory entry is created (0: an entry or
    /// replica from before incarnations were recorded).
    pub id: u64,
    /// The creation time, in ms (recorded by every version).
    pub ctime_ms: u64,
}

impl Incarnation {
    /// Does a replica of incarnation `replica` belong to this creation? By
    /// id when both have one, by creation time otherwise.
    pub fn holds(&self, replica: &Incarnation) -> bool {
        if self.id != 0 && replica.id != 0 {
            self.id == replica.id
        } else {
            self.ctime_ms == replica.ctime_ms
        }
    }
}

/// One table's version: the counter, when it was last bumped (ms, by the
/// writer's clock) and who bumped it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableVersion {
    pub version: i64,
    pub when: i64,
    /// The write's author: its master's fencing epoch and batch number,
    /// unique by construction (0 in bases written before it existed).
    /// Clocks can repeat a `when` (issue 14, H2); this never repeats.
    #[serde(default)]
    pub writer: u64,
}

/// A base's version vector: per table, its version.
pub type Vector = BTreeMap<String, TableVersion>;

/// Renders a vector compactly: `admin=1 properties=7`.
pub fn render_vector(v: &Vector) -> String {
    v.iter()
        .map(|(t, tv)| format!("{}={}", t.trim_start_matches("main."), tv.version))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One change of a write, replicated as is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteOp {
    Set {
        key: String,
        value: String,
    },
    Unset {
        key: String,
    },
    /// A system property (`sys.*`, OpenIO's container settings such as
    /// `sys.m2.policy.version` or `sys.status`), kept in the admin table.
    SetSystem {
        key: String,
        value: String,
    },
}

/// What a replica says about its copy of a base.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReplicaVersion {
    /// The base is present and readable: here is its vector.
    Known {
        tables: BTreeMap<String, TableVersion>,
    },
    /// This replica holds no copy of the base at all (never created or lost).
    Missing,
    /// The base is loading, restoring, syncing or unreadable: its version is
    /// unknown and must never be taken for "version 0".
    Unknown { reason: String },
}

impl ReplicaVersion {
    /// Loading, restoring, syncing or unreadable: no version to compare.
    pub fn is_unknown(&self) -> bool {
        matches!(self, ReplicaVersion::Unknown { .. })
    }
}

/// The outcome of comparing the local copy with a remote one, from the
/// local point of view (over the tables both know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionDiff {
    /// Same versions.
    Equal,
    /// The local copy is behind: it must be refreshed from the remote.
    LocalBehind,
    /// The local copy has writes the remote lacks. A candidate may lead
    /// (the remote will catch up); a follower must refresh from its master.
    LocalAhead,
    /// Each side has writes the other lacks.
    Diverged,
    /// One side's version is unknown: no conclusion can be drawn.
    Unknown(String),
}

/// Compares `local` and `remote` as OpenIO's `version_validate_diff` does,
/// with three deliberate differences: equal counters with different stamps
/// are diverged writes, not equal; a side with no copy at all is behind a
/// side holding the base (an empty replica never looks "caught up"), and
/// "ahead by one" is reported as ahead rather than equal (the caller decides).
pub fn compare(local: &ReplicaVersion, remote: &ReplicaVersion) -> VersionDiff {
    use ReplicaVersion::*;
    match (local, remote) {
        (Unknown { reason }, _) => VersionDiff::Unknown(format!("local base: {reason}")),
        (_, Unknown { reason }) => VersionDiff::Unknown(format!("remote base: {reason}")),
        (Missing, Missing) => VersionDiff::Equal,
        (Missing, Known { .. }) => VersionDiff::LocalBehind,
        (Known { .. }, Missing) => VersionDiff::LocalAhead,
        (Known { tables: l }, Known { tables: r }) => compare_tables(l, r),
    }
}

fn compare_tables(
    local: &BTreeMap<String, TableVersion>,
    remote: &BTreeMap<String, TableVersion>,
) -> VersionDiff {
    let (mut min_d, mut max_d) = (0i64, 0i64);
    let mut other_write = false;
    for (table, l) in local {
        if let Some(r) = remote.get(table) {
            let d = l.version.saturating_sub(r.version);
            min_d = min_d.min(d);
            max_d = max_d.max(d);
            // Same counter, different stamp: each side holds a different
            // write at that version (one a master rolled back). Counting
            // alone took them for equal and elected a copy without an
            // acknowledged write (found by the simulation, seed 10885).
            // The writer tells them apart even when the clocks repeat a
            // `when` (issue 14, H2).
            other_write |= d == 0 && (l.when != r.when || l.writer != r.writer);
            // More writes, but the other side's last one is by a later
            // master: along one history masters' epochs never go back (a
            // slave follows only its master, and only one past the older
            // masters it fenced), so the extra writes are an older master's
            // that the later one never saw: a rolled-back batch applied late,
            // or after a failed commit. Counting took them for newer and
            // elected a copy without the later master's acknowledged writes
            // (found by the simulation's disk errors, seed 611).
            other_write |= d > 0 && later_master(r, l) || d < 0 && later_master(l, r);
        }
    }
    match (min_d < 0, max_d > 0) {
        _ if other_write => VersionDiff::Diverged,
        (true, true) => VersionDiff::Diverged,
        (true, false) => VersionDiff::LocalBehind,
        (false, true) => VersionDiff::LocalAhead,
        (false, false) => VersionDiff::Equal,
    }
}

/// Was `a`'s last write made by a later master than `b`'s? A writer holds
/// its master's epoch (the sequence of its election node) in its high 32
/// bits, compared in serial order across the wrap. Writers of 0 (bases
/// written before writers existed) tell nothing. Only tables whose counters
/// differ come here: the admin table's writer, which names the creation
/// instead, stays at version 1.
fn later_master(a: &TableVersion, b: &TableVersion) -> bool {
    let epoch = |w: u64| (w >> 32) as u32;
    a.writer != 0 && b.writer != 0 && (epoch(a.writer).wrapping_sub(epoch(b.writer)) as i32) > 0
}

/// The vector's versions only (the `when` parts are informative).
pub fn same_versions(
    a: &BTreeMap<String, TableVersion>,
    b: &BTreeMap<String, TableVersion>,
) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(t, v)| b.get(t).is_some_and(|w| w.version == v.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(v: &[(&str, i64)]) -> ReplicaVersion {
        ReplicaVersion::Known {
            tables: v
                .iter()
                .map(|(t, n)| {
                    (
                        t.to_string(),
                        TableVersion {
                            version: *n,
                            ..TableVersion::default()
                        },
                    )
                })
                .collect(),
        }
    }

    fn stamped(v: &[(&str, i64, i64)]) -> ReplicaVersion {
        ReplicaVersion::Known {
            tables: v
                .iter()
                .map(|(t, n, w)| {
                    (
                        t.to_string(),
                        TableVersion {
                            version: *n,
                            when: *w,
                            writer: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn comparisons() {
        use VersionDiff::*;
        let cases: Vec<(ReplicaVersion, ReplicaVersion, VersionDiff)> = vec![
            (
                known(&[("main.admin", 3)]),
                known(&[("main.admin", 3)]),
                Equal,
            ),
            (
                known(&[("main.admin", 4)]),
                known(&[("main.admin", 3)]),
                LocalAhead,
            ),
            (
                known(&[("main.admin", 5)]),
                known(&[("main.admin", 3)]),
                LocalAhead,
            ),
            (
                known(&[("main.admin", 2)]),
                known(&[("main.admin", 3)]),
                LocalBehind,
            ),
            (
                known(&[("main.admin", 1)]),
                known(&[("main.admin", 3)]),
                LocalBehind,
            ),
            (
                known(&[("a", 2), ("b", 1)]),
                known(&[("a", 1), ("b", 2)]),
                Diverged,
            ),
            (known(&[("a", 2), ("b", 1)]), known(&[("a", 1)]), LocalAhead),
            (known(&[("a", 1)]), known(&[("a", 1), ("b", 5)]), Equal),
            (known(&[("a", 1), ("b", 1)]), known(&[("a", 1)]), Equal),
            (stamped(&[("a", 4, 10)]), stamped(&[("a", 4, 11)]), Diverged),
            (
                stamped(&[("a", 5, 10)]),
                stamped(&[("a", 4, 11)]),
                LocalAhead,
            ),
            (ReplicaVersion::Missing, known(&[("a", 0)]), LocalBehind),
            (known(&[("a", 0)]), ReplicaVersion::Missing, LocalAhead),
            (ReplicaVersion::Missing, ReplicaVersion::Missing, Equal),
        ];
        for (l, r, want) in cases {
            assert_eq!(compare(&l, &r), want, "{l:?} vs {r:?}");
        }
    }

    /// One table at `version`, last written by `writer` (at a fixed time).
    fn written(version: i64, writer: u64) -> ReplicaVersion {
        ReplicaVersion::Known {
            tables: [(
                "main.properties".to_string(),
                TableVersion {
                    version,
                    when: 1_000,
                    writer,
                },
            )]
            .into(),
        }
    }

    /// Seed 611 (disk errors): a longer copy whose last write is by an older
    /// master than the other copy's last is another history, not a newer one.
    #[test]
    fn more_writes_of_an_older_master_are_another_history() {
        // 40 writes, the last by master 3; 34, the last by master 4.
        assert_eq!(
            compare(&written(40, 3 << 32 | 9), &written(34, 4 << 32 | 1)),
            VersionDiff::Diverged
        );
        assert_eq!(
            compare(&written(34, 4 << 32 | 1), &written(40, 3 << 32 | 9)),
            VersionDiff::Diverged
        );
        // Ahead by writes of the same or a later master: the same history.
        assert_eq!(
            compare(&written(40, 4 << 32 | 9), &written(34, 4 << 32 | 1)),
            VersionDiff::LocalAhead
        );
        assert_eq!(
            compare(&written(34, 4 << 32 | 1), &written(40, 6 << 32 | 1)),
            VersionDiff::LocalBehind
        );
        // Across the sequence wrap, and without writers.
        let top = (u32::MAX as u64) << 32;
        assert_eq!(
            compare(&written(40, top | 9), &written(34, 2 << 32 | 1)),
            VersionDiff::Diverged
        );
        assert_eq!(
            compare(&written(40, 0), &written(34, 4 << 32 | 1)),
            VersionDiff::LocalAhead
        );
    }

    /// Issue 14, H2: two writes at the same counter whose clocks gave the
    /// same `when` are still told apart by their writers.
    #[test]
    fn a_repeated_when_with_another_writer_is_another_write() {
        let at = |writer: u64| written(4, writer);
        assert_eq!(
            compare(&at(7 << 32 | 1), &at(7 << 32 | 2)),
            VersionDiff::Diverged
        );
        assert_eq!(
            compare(&at(7 << 32 | 1), &at(9 << 32 | 1)),
            VersionDiff::Diverged
        );
        assert_eq!(
            compare(&at(7 << 32 | 1), &at(7 << 32 | 1)),
            VersionDiff::Equal
        );
    }

    #[test]
    fn unknown_is_never_version_zero() {
        let unknown = ReplicaVersion::Unknown {
            reason: "loading".into(),
        };
        assert!(matches!(
            compare(&known(&[("a", 0)]), &unknown),
            VersionDiff::Unknown(_)
        ));
        assert!(matches!(
            compare(&unknown, &known(&[("a", 0)])),
            VersionDiff::Unknown(_)
        ));
    }
}
