//! The v3 conformance suite (`conformance/suite.rs`) against one
//! in-memory server on a real loopback port.

mod common;

/// How the suite starts its server: one in-memory rendezvous.
mod harness {
    pub use super::common::{client, start, start_with_clock};
    pub type Server = rdv::RunningServer;
}

#[path = "conformance/suite.rs"]
mod suite;
