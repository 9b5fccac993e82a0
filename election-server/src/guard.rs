//! Stop-writes (seed 001): resource guard-rails checked every second.
//!
//! Past `--min-avail-pct` free space on the data volume, or
//! `--stop-writes-pct` of `--memory-budget-mb` resident memory, the service
//! refuses client writes with an error naming the threshold and the measured
//! value, hands the master role of its bases to healthy peers and refuses to
//! become master, while it keeps accepting replication and resyncs. It
//! clears by itself when the resource recovers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct Thresholds {
    pub min_avail_pct: f64,
    pub memory_budget_bytes: Option<u64>,
    pub stop_writes_pct: f64,
}

pub struct Guard {
    dir: PathBuf,
    limits: Thresholds,
    reason: Mutex<Option<String>>,
    /// Test-only: report the volume as full.
    pub fault_low_disk: AtomicBool,
}

/// What the volume and the process look like right now.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub avail_pct: f64,
    pub rss_bytes: u64,
}

impl Guard {
    pub fn new(dir: &Path, limits: Thresholds) -> Self {
        Self {
            dir: dir.to_path_buf(),
            limits,
            reason: Mutex::new(None),
            fault_low_disk: AtomicBool::new(false),
        }
    }

    pub fn read(&self) -> std::io::Result<Reading> {
        let st = rustix::fs::statvfs(&self.dir).map_err(std::io::Error::from)?;
        let total = (st.f_blocks as f64) * (st.f_frsize as f64);
        let avail = (st.f_bavail as f64) * (st.f_frsize as f64);
        let mut avail_pct = if total > 0.0 {
            100.0 * avail / total
        } else {
            0.0
        };
        if self.fault_low_disk.load(Ordering::Relaxed) {
            avail_pct = 0.0;
        }
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Reading {
            avail_pct,
            rss_bytes: pages * rustix::param::page_size() as u64,
        })
    }

    /// Why writes must stop, if they must.
    pub fn judge(&self, r: &Reading) -> Option<String> {
        if r.avail_pct < self.limits.min_avail_pct {
            return Some(format!(
                "min-avail-pct breached: {:.1}% of the data volume ({}) available, threshold {}%",
                r.avail_pct,
                self.dir.display(),
                self.limits.min_avail_pct
            ));
        }
        if let Some(budget) = self.limits.memory_budget_bytes.filter(|b| *b > 0) {
            let pct = 100.0 * r.rss_bytes as f64 / budget as f64;
            if pct >= self.limits.stop_writes_pct {
                return Some(format!(
                    "stop-writes-pct breached: resident memory {} MiB is {pct:.0}% of the {} MiB budget, threshold {}%",
                    r.rss_bytes >> 20,
                    budget >> 20,
                    self.limits.stop_writes_pct
                ));
            }
        }
        None
    }

    /// Records the new state; returns Some(now stopped?) when it changed.
    pub fn update(&self, reason: Option<String>) -> Option<bool> {
        let mut cur = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        let changed = cur.is_some() != reason.is_some();
        *cur = reason;
        changed.then_some(cur.is_some())
    }

    pub fn stopped(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(budget: Option<u64>) -> Guard {
        Guard::new(
            Path::new("/"),
            Thresholds {
                min_avail_pct: 5.0,
                memory_budget_bytes: budget,
                stop_writes_pct: 90.0,
            },
        )
    }

    #[test]
    fn thresholds_name_themselves_and_the_measure() {
        let g = guard(Some(100 << 20));
        assert_eq!(
            g.judge(&Reading {
                avail_pct: 50.0,
                rss_bytes: 10 << 20
            }),
            None
        );
        let disk = g
            .judge(&Reading {
                avail_pct: 2.5,
                rss_bytes: 0,
            })
            .expect("disk breach");
        assert!(
            disk.starts_with(
                "min-avail-pct breached: 2.5% of the data volume (/) available, threshold 5%"
            ),
            "{disk}"
        );
        let mem = g
            .judge(&Reading {
                avail_pct: 50.0,
                rss_bytes: 95 << 20,
            })
            .expect("memory breach");
        assert_eq!(mem, "stop-writes-pct breached: resident memory 95 MiB is 95% of the 100 MiB budget, threshold 90%");
        assert_eq!(
            guard(None).judge(&Reading {
                avail_pct: 50.0,
                rss_bytes: u64::MAX
            }),
            None,
            "no budget, no memory limit"
        );
    }

    #[test]
    fn transitions_and_real_readings() {
        let g = guard(None);
        assert_eq!(g.update(None), None);
        assert_eq!(g.update(Some("x".into())), Some(true));
        assert_eq!(g.update(Some("y".into())), None);
        assert_eq!(g.stopped().as_deref(), Some("y"));
        assert_eq!(g.update(None), Some(false));
        let r = g.read().expect("statvfs on /");
        assert!(
            r.avail_pct > 0.0 && r.avail_pct <= 100.0 && r.rss_bytes > 0,
            "{r:?}"
        );
        g.fault_low_disk.store(true, Ordering::Relaxed);
        assert_eq!(g.read().expect("read").avail_pct, 0.0);
    }
}
