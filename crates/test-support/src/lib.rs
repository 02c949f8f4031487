//! What the workspace's tests and benchmarks share, so each crate's tests
//! do not carry their own copy: used only as a dev-dependency.
//!
//! - [`netns`]: network namespaces of the test's own, so that nothing a test
//!   starts (mDNS daemons, browsers, peers) ever reaches a real interface.
//! - [`wait`]: waiting for a condition instead of sleeping a fixed time, so
//!   a positive assertion neither flakes on a loaded machine nor wastes time
//!   on an idle one.
//! - [`redis`]: a real `redis-server` on loopback for the rendezvous'
//!   shared store.
//! - [`tools`]: where the tests find tools that live outside the repository.

pub mod netns;
pub mod redis;
pub mod rng;
pub mod tools;
pub mod wait;

pub use netns::{ip, require_root, send_signal, Netns, VethPair};
pub use wait::{wait_for, wait_until, wait_until_async, wait_until_some, wait_until_some_async};
