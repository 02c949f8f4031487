//! The extensions suite (`extensions/suite.rs`) against two instances
//! sharing one real `redis-server`, requests alternating between them:
//! long-polls woken across instances, answer protection, the sliding
//! lifetime and the guessing limiter, all through the shared store.
//!
//! Needs `redis-server` (`scripts/setup.sh` installs it).

mod common;

#[path = "harness/redis_pair.rs"]
mod harness;

#[path = "extensions/suite.rs"]
mod suite;
