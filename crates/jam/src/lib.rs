//! The jam engine: the app as the WebRTC host peer of its jam.
//!
//! - [`framing`]: MidiEditor's `[u32 BE length][JSON]` frames.
//! - [`protocol`]: MidiEditor's peer protocol as a state machine without I/O
//!   (hello / sessionWelcome / heartbeat / ghosts / chat / ping).
//! - [`registry`]: the peer list and the events it emits.
//! - [`rtc`]: webrtc-rs glue: answer one offer with one PeerConnection.
//! - [`rendezvous`]: the one HTTP client of a v3 rendezvous (host, joiner
//!   and connection test all use it).
//! - [`signal`]: reaching the rendezvous as a host, in process (through
//!   [`types::InProcessRendezvous`]) or over HTTP.
//! - [`host`]: ties them together into a running host.
//! - [`hub`]: the shared song a host holds for MidiEditor joiners.
//! - [`offer`]: the joiner's side of WebRTC (the connection test's offerer).
//! - [`joiner`]: the app as a joiner: join a jam hosted by MidiEditor or by
//!   this app, keep the session and the peer list.
//! - [`roster`]: the peer-list frames our host sends our joiners.
//! - [`check`]: "Test connection": rendezvous health, a WebRTC loopback
//!   through it, and STUN/TURN server checks.

pub mod check;
pub mod framing;
pub mod host;
pub mod hub;
pub mod joiner;
pub mod net;
pub mod offer;
pub mod protocol;
pub mod registry;
pub mod rendezvous;
pub mod roster;
pub mod rtc;
pub mod signal;
pub mod stun_responder;
/// The MIDI crate the host relays with (frames, router, ports), re-exported
/// so users of the jam need no second dependency to speak the `midi` channel.
pub use midi;
/// The typed boundary values (code, rendezvous URL, ICE server, time),
/// re-exported so users of the jam need no second dependency.
pub use types;
