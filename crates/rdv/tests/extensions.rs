//! The extensions suite (`extensions/suite.rs`) against one in-memory
//! server on a real loopback port.

mod common;

/// How the suite starts its server: one in-memory rendezvous.
mod harness {
    pub use super::common::{client, start, start_with_clock};
    /// Every request reaches the same instance (and its metrics).
    pub const ONE_INSTANCE: bool = true;
}

#[path = "extensions/suite.rs"]
mod suite;
