//! The midi-rdv v3 rendezvous: 4-character pairing codes and the exchange of
//! one offer and one answer SDP per joiner, over the small HTTP protocol that
//! MidiEditor AI's collaboration feature speaks (see `docs/rendezvous.md`).
//!
//! Layers, from the inside out:
//! - [`table`] and [`guard`]: state machines with no I/O, driven by an
//!   explicit [`clock`]. All protocol rules about state live here.
//! - [`wire`]: body parsing and response shapes, byte-compatible with the
//!   public Worker.
//! - [`server`]: the axum handler, long-polls, metrics and graceful shutdown.
//! - [`redis_store`]: the optional shared store (Redis or Valkey) that
//!   lets several instances serve one set of sessions.
//! - `accept` (private), [`conn`] and [`tls`]: the connection layer of an
//!   open-internet server: HTTP/1.1 only, header and body deadlines,
//!   per-source connection caps, JSON errors from the HTTP layer, HTTPS.
//!
//! This crate knows nothing of WebRTC, MIDI or windows, so the headless
//! `midi-rdv` server builds without any GUI library.

mod accept;
pub mod clock;
pub mod code;
pub mod conn;
pub mod guard;
mod in_process;
pub mod join_page;
pub mod metrics;
pub mod redis_store;
pub mod server;
pub mod table;
pub mod tls;
pub mod wire;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use server::{router, serve, Config, Rendezvous, RunningServer};
