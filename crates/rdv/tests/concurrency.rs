//! The concurrency suite (`concurrency/suite.rs`) against one in-memory
//! server on a real loopback port.

mod common;

/// How the suite starts its server: one in-memory rendezvous.
mod harness {
    pub use super::common::{client, start};
}

#[path = "concurrency/suite.rs"]
mod suite;
