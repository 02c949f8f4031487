//! The v3 conformance suite (`conformance/suite.rs`) against two
//! rendezvous instances sharing one real `redis-server` on loopback, with
//! every request alternating between them: a small round-robin TCP proxy
//! in front hands each new connection to the other instance, and the
//! suite's client opens a new connection per request. Both instances run
//! on the test's clock, so the lifetime tests that move a fake clock hold
//! the shared store to the same rules.
//!
//! Needs `redis-server` (Debian's package; `scripts/setup.sh` installs it):
//! without it every test here fails saying so.

mod common;

#[path = "harness/redis_pair.rs"]
mod harness;

#[path = "conformance/suite.rs"]
mod suite;
