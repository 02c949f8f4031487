//! The jam's shared song: one MIDI document that MidiEditor AI joiners edit
//! together through the host.
//!
//! - [`Song`] holds events in the shape MidiEditor's live sync talks about
//!   ([`event`]) and applies `hunks` frames with its rules
//!   ([`Song::apply_hunks`]);
//! - [`smf`] loads a Standard MIDI File into a song and exports one, which
//!   is also what joiners receive as `filetransfer`;
//! - [`store`] keeps numbered versions on disk, written atomically.
//!
//! The rules were read from MidiEditor AI 2.0.1's source (`PrApply`,
//! `MidiDiff`, `MidiEventSerializer`, `LanLiveSession`) and checked against
//! the real client; `docs/session-hub.md` says where we differ.

pub mod doc;
pub mod event;
pub mod smf;
pub mod store;

pub use doc::{Applied, RefuseReason, Song, MAX_EVENTS, MAX_FRAME_ENTRIES};
pub use event::{Body, Event, EventError, Identity, Kind};
pub use store::{Saved, Store, StoreError};

#[cfg(test)]
mod tests;
