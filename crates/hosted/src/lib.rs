//! The hosted-jam service: "host a jam" composed once.
//!
//! A hosted jam is the bundled rendezvous (or a remote one), the jam host
//! ([`jam::host`]), its LAN advertisement ([`lan`]) and this computer's MIDI
//! ports ([`local_midi`]), built from one [`HostedConfig`] and supervised by
//! one task. Front ends hold a [`Hosted`] handle: they render its
//! [`HostedView`] (a `watch` channel, pushed whole on every change), follow
//! its [`HostedEvent`]s (a `broadcast` channel, in order), and send intents.
//! The desktop app (`app::session`) and `midi-rdv host` are both thin
//! front ends of it; neither composes the parts itself.
//!
//! What a config change restarts is decided in one place, [`Impact::between`]:
//! the service acts on it in [`Hosted::apply`], and a front end calls it to
//! tell the user before saving.
//!
//! The MIDI backend is the caller's choice ([`MidiChoice::system`]): this
//! crate depends on `midi` without midir, so a headless host links no ALSA.

mod config;
pub mod local_midi;
mod service;
mod view;

pub use config::{HostedConfig, Impact, MidiChoice, RendezvousChoice, MAX_PEERS, PORT_ATTEMPTS};
pub use service::Hosted;
pub use view::{join_link, qr_svg, HostedEvent, HostedView, Level, Notice, PeerMidiView, Phase};
