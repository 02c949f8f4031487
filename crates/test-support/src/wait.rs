//! Waiting for a condition rather than sleeping a fixed time.
//!
//! A fixed sleep before a positive assertion is either too short on a
//! loaded machine (the test flakes) or too long on an idle one (the suite
//! crawls). These poll a condition until it holds or a deadline passes.
//! A sleep is still right to show that something does *not* happen within
//! a time, or to pace a load: those call sites say so.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `condition` every `poll` until it returns true (then `true`) or
/// `timeout` has passed (then `false`, after one last look).
pub fn wait_until(timeout: Duration, poll: Duration, mut condition: impl FnMut() -> bool) -> bool {
    wait_until_some(timeout, poll, || condition().then_some(())).is_some()
}

/// Polls `f` every `poll` until it returns `Some` (its value) or `timeout`
/// has passed (then `None`, after one last look).
pub fn wait_until_some<T>(
    timeout: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(poll.min(deadline - now));
    }
}

/// [`wait_until`] that panics with `what` when the time is up: for a
/// condition the test cannot go on without.
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    if !wait_until(timeout, Duration::from_millis(20), condition) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// [`wait_until`] for async tests: `condition` is an async closure, and the
/// pauses are Tokio sleeps, so the runtime keeps driving the code under test.
pub async fn wait_until_async<F, Fut>(timeout: Duration, poll: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_some_async(timeout, poll, || {
        let c = condition();
        async move { c.await.then_some(()) }
    })
    .await
    .is_some()
}

/// [`wait_until_some`] for async tests.
pub async fn wait_until_some_async<T, F, Fut>(
    timeout: Duration,
    poll: Duration,
    mut f: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn returns_as_soon_as_the_condition_holds() {
        let n = AtomicU32::new(0);
        let t = Instant::now();
        assert!(wait_until(
            Duration::from_secs(10),
            Duration::from_millis(1),
            || { n.fetch_add(1, Ordering::Relaxed) == 3 }
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(n.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn gives_up_after_the_timeout_having_looked_at_the_end() {
        let t = Instant::now();
        let mut looks = 0;
        assert!(!wait_until(
            Duration::from_millis(50),
            Duration::from_millis(20),
            || {
                looks += 1;
                false
            }
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(looks >= 3, "{looks}");
        assert_eq!(
            wait_until_some(Duration::ZERO, Duration::from_millis(1), || Some(7)),
            Some(7)
        );
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible")]
    fn wait_for_names_what_it_waited_for() {
        wait_for("the impossible", Duration::from_millis(10), || false);
    }

    #[tokio::test]
    async fn the_async_form_lets_the_runtime_run_while_it_waits() {
        let (tx, rx) = tokio::sync::watch::channel(0);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(5);
        });
        let got = wait_until_some_async(Duration::from_secs(5), Duration::from_millis(10), || {
            let v = *rx.borrow();
            async move { (v == 5).then_some(v) }
        })
        .await;
        assert_eq!(got, Some(5));
        assert!(
            !wait_until_async(
                Duration::from_secs(1),
                Duration::from_millis(10),
                || async { false }
            )
            .await
        );
    }
}
