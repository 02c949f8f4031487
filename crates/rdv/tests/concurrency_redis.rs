//! The concurrency suite (`concurrency/suite.rs`) against two instances
//! sharing one real `redis-server`, requests alternating between them: the
//! slot cap, the 409 rules, code allocation and the session caps must be
//! as atomic across instances as within one (each is one Lua script).
//!
//! Needs `redis-server` (`scripts/setup.sh` installs it).

mod common;

#[path = "harness/redis_pair.rs"]
mod harness;

#[path = "concurrency/suite.rs"]
mod suite;
