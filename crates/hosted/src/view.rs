//! What the hosted jam shows and says: one [`HostedView`] snapshot (pushed
//! whole on every change, over a `watch` channel, so a slow front end only
//! ever sees the newest state) and [`HostedEvent`]s in order (a `broadcast`
//! channel, for front ends that print a log, like `midi-rdv host`).

use jam::host::HostEvent;
use jam::registry::{PeerEntry, PeerState};
use serde::Serialize;

/// What phase the jam is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Binding the port, registering the session.
    #[default]
    Starting,
    /// The code is valid; joiners can come.
    Hosting,
    /// Could not host; retried every few seconds when the config asks for it.
    Failed,
    /// Stopped for good.
    Stopped,
}

/// How serious a status-line message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// One status-line message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub level: Level,
    pub message: String,
    /// Increases with every notice, so a front end can tell new from old.
    pub seq: u64,
}

/// Everything the host screen shows, pushed whole on every change.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostedView {
    pub phase: Phase,
    /// The 4-character code, once registered.
    pub code: Option<String>,
    /// Rendezvous URLs to paste into MidiEditor (each LAN address and port).
    pub urls: Vec<String>,
    /// What the QR code encodes: the first URL with the code.
    pub join_link: Option<String>,
    /// The QR code of `join_link`, as an SVG document.
    pub qr_svg: Option<String>,
    /// True when the bundled rendezvous is used.
    pub bundled: bool,
    /// Port of the bundled rendezvous, when it runs.
    pub port: Option<u16>,
    /// True while the jam is advertised on the LAN.
    pub advertised: bool,
    /// True while MidiEditor's LAN Live datagram goes out (MidiEditor's
    /// "Join LAN Live Session" finds the jam by its code).
    pub lan_live: bool,
    /// The TCP port MidiEditor LAN Live joiners connect to, while open.
    pub lan_tcp_port: Option<u16>,
    /// This host's LAN STUN server(s), `stun:ip:port`, while advertised:
    /// what "Apply to MidiEditor" writes when the user has no STUN/TURN
    /// servers of their own.
    pub stun_servers: Vec<String>,
    pub max_peers: usize,
    /// Peers in order of arrival.
    pub peers: Vec<PeerEntry>,
    /// Newest last.
    pub notices: Vec<Notice>,
    /// Live-MIDI state per peer id (peers whose `midi` channel is open, or
    /// that played and still hold notes being released): activity light,
    /// notes sounding, muted here, channel open.
    pub midi: Vec<PeerMidiView>,
    /// The shared song MidiEditor joiners receive and edit (name, length,
    /// tracks, last editor); `None`: a jam without one.
    pub song: Option<jam::hub::SongView>,
    /// The Record switch is on: live MIDI goes into the song.
    pub recording: bool,
}

/// One peer's live-MIDI light for the peer list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerMidiView {
    pub peer: u64,
    /// Played in the last activity period (half a second).
    pub active: bool,
    pub messages: u64,
    pub sounding: usize,
    pub muted: bool,
    /// Its `midi` channel is open and the relay carries it (it was
    /// welcomed, its link is up): it hears the jam and is heard. Listed as
    /// soon as that is so, before it plays a note, so "connected for live
    /// MIDI" shows (and can be waited for) without anyone playing.
    pub channel_open: bool,
}

impl HostedView {
    /// Peers that said hello and were welcomed.
    pub fn connected(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| p.state == PeerState::Connected)
            .count()
    }
}

/// What the service reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum HostedEvent {
    /// What the jam host reported, as it reported it (its `Hosting` with the
    /// code comes first; `Stopped` when a host stops). A host's `Error` is
    /// also a warning in the view's notices.
    Host(HostEvent),
    /// A message of the service's own (a busy port, the LAN advert failed,
    /// a MIDI port unplugged); also in the view's notices.
    Notice(Notice),
}

/// The link the QR code carries: the browser join page of the bundled
/// rendezvous (`rdv::join_page`) with the code in its path, so a phone that
/// scans it lands on a page that joins the jam in one tap.
pub fn join_link(url: &str, code: &str) -> String {
    format!("{}/join/{code}", url.trim_end_matches('/'))
}

/// An SVG QR code for `text`; `None` if it cannot be encoded (too long).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(160, 160)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_an_svg_of_the_join_link() {
        let link = join_link("http://192.168.1.20:8787/", "AB2C");
        assert_eq!(link, "http://192.168.1.20:8787/join/AB2C");
        let svg = qr_svg(&link).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(qr_svg(&"x".repeat(10_000)).is_none());
    }
}
