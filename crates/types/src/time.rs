//! Engine time and the wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point on a monotonic clock, in milliseconds from an arbitrary origin.
/// State machines take it as an argument instead of reading a clock, so
/// tests drive them with simulated time and wall-clock steps never shorten
/// or stretch a lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + d`, saturating rather than wrapping on absurd durations.
    pub fn after(self, d: Duration) -> Millis {
        let add = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(add))
    }
}

/// Milliseconds since the Unix epoch: only for timestamps people or peers
/// read (an offer's `ts`, a chat line), never to measure a duration. A
/// clock set before 1970 reads as 0.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_saturates() {
        assert_eq!(Millis(5).after(Duration::from_millis(7)), Millis(12));
        assert_eq!(
            Millis(u64::MAX).after(Duration::from_secs(1)),
            Millis(u64::MAX)
        );
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(wall_ms() > 1_577_836_800_000);
    }
}
