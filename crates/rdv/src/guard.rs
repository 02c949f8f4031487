//! The limit on guessing codes: failed lookups of unknown codes counted per
//! source, as a state machine driven by explicit time like the table.
//!
//! Only lookups that can reveal whether a code exists are counted and
//! limited. The joiner's answer poll is never counted or refused: its 404
//! "not yet" is the normal state while the host prepares an answer, and any
//! status other than 200/404 there would end a MidiEditor join.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::clock::Millis;

#[derive(Debug, Clone)]
pub struct GuardLimits {
    /// Failed lookups allowed per source in one window before lockout. The
    /// protocol forbids locking anyone out before 30 failures in a minute.
    pub max_failures: u32,
    pub window: Duration,
    /// How long a locked-out source is refused.
    pub lockout: Duration,
    /// Sources tracked at once; beyond it, new sources go uncounted until
    /// room frees up (failing open bounds memory; an attacker with that many
    /// addresses is beyond a per-source limit anyway).
    pub max_sources: usize,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_failures: 30,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(120),
            max_sources: 65_536,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Millis,
    failures: u32,
    locked_until: Option<Millis>,
}

/// Per-source counters of failed code lookups.
#[derive(Debug)]
pub struct GuessGuard {
    limits: GuardLimits,
    sources: HashMap<IpAddr, Entry>,
    lockouts_total: u64,
}

impl GuessGuard {
    pub fn new(limits: GuardLimits) -> Self {
        GuessGuard {
            limits,
            sources: HashMap::new(),
            lockouts_total: 0,
        }
    }

    /// Whether `source` is locked out now.
    pub fn is_locked(&self, now: Millis, source: IpAddr) -> bool {
        self.sources
            .get(&source)
            .and_then(|e| e.locked_until)
            .is_some_and(|t| now < t)
    }

    /// Records one failed lookup. Returns true if this failure started a
    /// lockout (so the caller can log it once).
    pub fn record_failure(&mut self, now: Millis, source: IpAddr) -> bool {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.limits.max_sources {
            self.sweep(now);
            if self.sources.len() >= self.limits.max_sources {
                return false;
            }
        }
        let window = self.limits.window;
        let e = self.sources.entry(source).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
        if e.locked_until.is_some_and(|t| now >= t) {
            e.locked_until = None;
            e.failures = 0;
            e.window_start = now;
        }
        if now >= e.window_start.after(window) {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        if e.locked_until.is_none() && e.failures > self.limits.max_failures {
            e.locked_until = Some(now.after(self.limits.lockout));
            self.lockouts_total += 1;
            return true;
        }
        false
    }

    /// Forgets sources whose window and lockout are both over.
    pub fn sweep(&mut self, now: Millis) {
        let window = self.limits.window;
        self.sources.retain(|_, e| {
            e.locked_until.is_some_and(|t| now < t) || now < e.window_start.after(window)
        });
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    pub fn locked(&self, now: Millis) -> usize {
        self.sources
            .values()
            .filter(|e| e.locked_until.is_some_and(|t| now < t))
            .count()
    }

    pub fn lockouts_total(&self) -> u64 {
        self.lockouts_total
    }
}

/// The unit a per-source limit applies to: an IPv4 address, or an IPv6 /64
/// (one subscriber usually holds a whole /64, so counting single IPv6
/// addresses would let one host rotate past any limit). IPv4-mapped IPv6
/// addresses count as their IPv4 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    source_key_prefix(ip, 64)
}

/// [`source_key`] with a chosen IPv6 prefix length (clamped to 1..=128):
/// providers that hand each subscriber a /56 or /48 need a shorter one, or
/// one subscriber counts as 256 or 65,536 sources.
pub fn source_key_prefix(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u32::from(v6_prefix.clamp(1, 128));
            let mask = u128::MAX << (128 - bits);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn thirty_failures_in_a_minute_never_lock_out() {
        let mut g = GuessGuard::new(GuardLimits::default());
        for i in 0..30 {
            assert!(!g.record_failure(Millis(i * 1000), A));
            assert!(!g.is_locked(Millis(i * 1000), A));
        }
        assert!(g.record_failure(Millis(30_000), A));
        assert!(g.is_locked(Millis(30_000), A));
        assert!(
            !g.is_locked(Millis(30_000), B),
            "other sources are unaffected"
        );
    }

    #[test]
    fn lockout_is_bounded_in_time() {
        let mut g = GuessGuard::new(GuardLimits::default());
        for _ in 0..31 {
            g.record_failure(Millis(0), A);
        }
        assert!(g.is_locked(Millis(119_999), A));
        assert!(!g.is_locked(Millis(120_000), A));
        // After the lockout the count starts again from zero.
        assert!(!g.record_failure(Millis(120_000), A));
        assert!(!g.is_locked(Millis(120_001), A));
    }

    #[test]
    fn failures_spread_over_windows_do_not_add_up() {
        let mut g = GuessGuard::new(GuardLimits::default());
        for minute in 0..10u64 {
            for i in 0..30 {
                g.record_failure(Millis(minute * 60_000 + i), A);
            }
        }
        assert!(!g.is_locked(Millis(600_000), A));
    }

    #[test]
    fn memory_is_bounded() {
        let mut g = GuessGuard::new(GuardLimits {
            max_sources: 4,
            ..GuardLimits::default()
        });
        for i in 0..100u8 {
            g.record_failure(Millis(0), IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)));
        }
        assert_eq!(g.tracked(), 4);
        g.sweep(Millis(60_000));
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn ipv6_sources_group_by_slash_64() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a.into()), source_key(b.into()));
        assert_ne!(source_key(a.into()), source_key(c.into()));
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_key(mapped.into()), A);
    }

    #[test]
    fn ipv6_prefix_is_configurable() {
        let a: Ipv6Addr = "2001:db8:1:2aa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2bb::1".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3aa::1".parse().unwrap();
        assert_eq!(
            source_key_prefix(a.into(), 56),
            source_key_prefix(b.into(), 56)
        );
        assert_ne!(
            source_key_prefix(a.into(), 56),
            source_key_prefix(c.into(), 56)
        );
        assert_ne!(
            source_key_prefix(a.into(), 64),
            source_key_prefix(b.into(), 64)
        );
        assert_eq!(source_key_prefix(a.into(), 128), IpAddr::V6(a));
        assert_eq!(source_key_prefix(A, 8), A);
    }
}
