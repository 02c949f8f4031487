//! The host side of MidiEditor AI's peer protocol, as a state machine without
//! I/O (see `PEER-PROTOCOL.md`).
//!
//! The async edge (webrtc-rs callbacks, or a TCP reader for MidiEditor's LAN
//! mode) turns what happens on the wire into calls on [`Jam`], each handed the
//! current [`Millis`](types::Millis), and carries out the [`Action`]s they return: send these
//! bytes (already framed), close that channel, tell the registry/UI this
//! event. Nothing here reads a clock, sleeps or touches a socket, so every
//! rule below is tested with simulated time.
//!
//! The rules a MidiEditor joiner depends on:
//! - the host's **first** frame after the joiner's `hello` is
//!   `sessionWelcome`; anything else first makes MidiEditor show a modal
//!   "host is on an older build". So nothing but a raw pong or a
//!   `joinrejected` is ever sent to a peer before its welcome;
//! - `heartbeat` every 10 s to every welcomed peer; a peer silent for 30 s
//!   is dropped (any frame counts as life);
//! - a second `hello` with a `machineId` already connected means the old
//!   connection is a ghost (the joiner restarted or its network changed):
//!   the old one is closed, the new one kept;
//! - a full jam answers `joinrejected` and closes.
//!
//! Everything the table holds is bounded: at most `max_peers` welcomed peers
//! plus `max_pending` channels still waiting for their `hello` (which wait at
//! most `hello_timeout`), with bounded strings in each.
//!
//! The parts, each in its own file so that a rule and its tests sit together:
//! - `config`: [`JamConfig`] and the session mode, the knobs of a jam;
//! - `hello`: reading and sanitising a joiner's `hello` ([`Hello`]), the only
//!   inbound message whose fields the host keeps;
//! - `events`: what every call on [`Jam`] returns ([`Action`], [`PeerEvent`])
//!   and the peer's identity and state ([`PeerId`], [`PeerInfo`], ...);
//! - `jam`: the state machine itself, [`Jam`], with its rules split further
//!   into admission (welcome, ghosts, a full jam), chat, and liveness
//!   (heartbeats and timeouts).

mod config;
mod events;
mod hello;
mod jam;

pub use config::{JamConfig, SessionMode, CHAT_MAX_BYTES, CHAT_MIN_INTERVAL};
pub use events::{Action, ChatDrop, ClientKind, LeaveReason, PeerEvent, PeerId, PeerInfo};
pub use hello::{Hello, DEFAULT_DISPLAY_NAME, MAX_ID_BYTES, MAX_NAME_CHARS};
pub use jam::Jam;
