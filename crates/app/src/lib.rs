//! The desktop app's engine, free of any GUI so it can be tested with
//! `cargo test` and driven by the Tauri shell through commands and events.
//!
//! - [`settings`]: the one settings struct, its per-field defaults, lenient
//!   loading of old or hand-edited files, validation, and the STUN/TURN list
//!   in MidiEditor's one-URI-per-line syntax.
//! - [`midieditor`]: writing the rendezvous URL and ICE list into MidiEditor
//!   AI's own settings, keeping every other key, after a backup.
//! - [`session`]: the hosted jam: the settings mapped to the [`hosted`]
//!   service (bundled rendezvous, host, LAN advert, MIDI ports), its view
//!   for the front end, and what a settings change restarts.
//! - [`shared_song`]: the session hub's song (continued on start, a file
//!   opened, a new one, exported) and the stable machine id.
//! - [`discover`]: the jams on the LAN for the Join view, and typed
//!   addresses turned into rendezvous URLs.
//! - [`facade`]: [`App`], the one object a front end drives: it owns the
//!   hosted jam, the joined jam with its MIDI port hand-over, discovery,
//!   the settings file and the connection test, and decides everything
//!   about them; a front end only maps its commands and events onto it.

pub mod check;
pub mod discover;
pub mod facade;
pub mod joined_midi;
pub mod joining;
pub use hosted::local_midi;
pub mod midi_ports;
pub mod midieditor;
pub mod session;
pub mod settings;
pub mod shared_song;

pub use facade::{App, AppConfig, CloseAnswer, Event};
