//! Time as the session table sees it.
//!
//! The table never reads the system clock itself: every operation is handed
//! `now`. That keeps lifetimes, sliding renewal and expiry testable with
//! simulated time (an hour of host polling runs in milliseconds), and it keeps
//! expiry immune to wall-clock jumps, because lifetimes are measured on a
//! monotonic clock. Wall time is only used for the `ts` field clients see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use types::Millis;

/// Source of time for the rendezvous.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, used for every lifetime.
    fn now(&self) -> Millis;
    /// Milliseconds since the Unix epoch, used only for the `ts` of offers.
    fn wall_ms(&self) -> u64;
}

/// The real clock: `Instant` for lifetimes, `SystemTime` for timestamps.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn wall_ms(&self) -> u64 {
        types::wall_ms()
    }
}

/// A clock that only moves when told to. Shared between a test and the
/// server it drives, so the test can advance time between real HTTP calls.
#[derive(Debug)]
pub struct ManualClock {
    mono_ms: AtomicU64,
    wall_origin_ms: u64,
}

impl ManualClock {
    /// Starts at monotonic 0 and at the real wall time of creation.
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock {
            mono_ms: AtomicU64::new(0),
            wall_origin_ms: SystemClock::new().wall_ms(),
        })
    }

    /// Moves both the monotonic and the wall clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.mono_ms.fetch_add(add, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.mono_ms.load(Ordering::SeqCst))
    }

    fn wall_ms(&self) -> u64 {
        self.wall_origin_ms + self.mono_ms.load(Ordering::SeqCst)
    }
}
