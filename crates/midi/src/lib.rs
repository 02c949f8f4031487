//! MIDI for the jam, with no dependency on the rest of the workspace.
//!
//! - [`message`]: MIDI 1.0 messages, their canonical bytes, and a streaming
//!   [`Parser`] for raw port input (running status, real-time bytes
//!   interleaved, SysEx up to a cap).
//! - [`frame`]: the `midi` data channel's frame format (version byte, origin
//!   peer, sender timestamp, MIDI messages), specified in
//!   `docs/midi-frames.md`.
//! - [`router`]: routing and note tracking as a state machine without I/O:
//!   who hears whom, mutes, activity lights, and the release logic that
//!   leaves no note hanging when a player leaves.
//! - [`ports`]: MIDI ports behind a small trait, with [`memory`] (tests,
//!   machines without MIDI) and, with the default `midir` feature,
//!   [`midir_ports`] (the OS MIDI system).

pub mod frame;
pub mod memory;
pub mod message;
#[cfg(feature = "midir")]
pub mod midir_ports;
pub mod ports;
pub mod router;

pub use frame::{Frame, FrameError, FrameHeader, FrameRef};
pub use message::{MidiMessage, Parser, SysEx};
pub use router::{Activity, Delivery, Link, Origin, Role, Routed, Router, RouterConfig};

/// Microseconds since the UNIX epoch on this machine's clock: the timestamp
/// frames carry. 0 if the clock is before 1970.
pub fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
