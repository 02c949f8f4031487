//! The jam engine: the app as the WebRTC host peer of its jam.
//!
//! - [`framing`]: MidiEditor's `[u32 BE length][JSON]` frames.
//! - [`protocol`]: MidiEditor's peer protocol as a state machine without I/O
//!   (hello / sessionWelcome / heartbeat / ghosts / chat / ping).
//! - [`registry`]: the peer list and the events it emits.
//! - [`rtc`]: webrtc-rs glue: answer one offer with one PeerConnection.
//! - [`signal`]: reaching the rendezvous, in process or over HTTP.
//! - [`host`]: ties them together into a running host.
//! - [`offer`]: the joiner's side of WebRTC (the connection test's offerer).
//! - [`check`]: "Test connection": rendezvous health, a WebRTC loopback
//!   through it, and STUN/TURN server checks.

pub mod check;
pub mod framing;
pub mod host;
pub mod ice;
pub mod net;
pub mod offer;
pub mod protocol;
pub mod registry;
pub mod rtc;
pub mod signal;
#[cfg(test)]
mod test_rng;
