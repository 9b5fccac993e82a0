//! Where the engine's time comes from. The shell reads it once per input and
//! hands it to the engine (`Engine::handle(now, ..)`), which never reads a
//! clock itself; the simulation gives it virtual, skewed clocks instead.
//!
//! Not everything uses it: the read lease (`Service::confirm_session`)
//! measures real elapsed time against ZooKeeper's own session clock, so it
//! keeps `Instant`, whatever clock the engine is given.

use election_core::Now;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Monotonic milliseconds since the service started, and the wall clock.
    fn now(&self) -> Now;

    /// Sets the wall clock `ms` off the machine's (a test-only fault: a
    /// machine whose clock is wrong). False when this clock cannot.
    fn set_wall_skew_ms(&self, _ms: i64) -> bool {
        false
    }
}

/// The machine's clocks, the wall clock possibly set off by a test.
#[derive(Debug)]
pub struct SystemClock {
    started: Instant,
    wall_skew_ms: AtomicI64,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            wall_skew_ms: AtomicI64::new(0),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now {
            mono_ms: self.started.elapsed().as_millis() as u64,
            wall_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
                .saturating_add_signed(self.wall_skew_ms.load(Ordering::Relaxed)),
        }
    }

    fn set_wall_skew_ms(&self, ms: i64) -> bool {
        self.wall_skew_ms.store(ms, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_starts_at_zero_and_never_goes_back() {
        let c = SystemClock::new();
        let a = c.now();
        assert!(a.mono_ms < 1_000, "monotonic time counts from the start");
        assert!(a.wall_ms > 1_700_000_000_000, "wall clock in ms since 1970");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = c.now();
        assert!(b.mono_ms >= a.mono_ms + 5);
    }

    #[test]
    fn a_skew_moves_the_wall_clock_only() {
        let c = SystemClock::new();
        assert!(c.set_wall_skew_ms(-60_000));
        let a = c.now();
        let machine = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        assert!(machine - a.wall_ms >= 59_000, "a minute behind");
        assert!(a.mono_ms < 1_000, "monotonic time is untouched");
    }
}
