//! MidiEditor's LAN Live mode for the hosted jam: the host's TCP listener
//! (joiners land in the same jam as WebRTC ones, `jam::host::tcp`) and the
//! once-a-second `MIDIEDIT-PR-LAN` datagram on the chosen interfaces
//! (`lan::midieditor_lan`). The supervisor calls in here next to the mDNS
//! advert: the datagram goes out on the same interfaces, and only while the
//! jam is advertised and "Let MidiEditor find this jam on the LAN" is on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use lan::midieditor_lan::{Announcement, Announcer};

use super::Supervisor;
use crate::config::RendezvousChoice;
use crate::view::Level;

/// The LAN Live part of a running hosted jam.
#[derive(Default)]
pub(super) struct LanLive {
    /// Where the host accepts TCP joiners, while it does.
    pub(super) tcp: Option<SocketAddr>,
    pub(super) announcer: Option<Announcer>,
    /// The session id the host registered (and announces).
    pub(super) session_id: String,
    /// The LAN STUN server MidiEditor's WAN joiners can be pointed at.
    pub(super) stun: Option<jam::stun_responder::StunResponder>,
}

/// TCP connections at once for a jam of `peers`: its peers, as many
/// half-open ones (the protocol's own pending limit is `peers + 4`), and a
/// few more so a flood's refusals do not hit a joiner that is only slow.
fn tcp_connections(peers: usize) -> usize {
    peers * 2 + 8
}

impl Supervisor {
    /// Opens the host's TCP port for MidiEditor LAN joiners (after the host
    /// started). On the rendezvous's bind address, so `--bind 10.0.0.2`
    /// keeps both on one address; port 0: any free one. Connections are
    /// taken only from this machine and the subnets of the advert's
    /// interfaces: the port asks no code, the datagram that carries the
    /// code goes only there.
    pub(super) async fn start_lan_tcp(&mut self) {
        self.lan_live.tcp = None;
        if !self.cfg.midieditor_lan {
            return;
        }
        let Some(host) = &self.host else { return };
        let ip = match &self.cfg.rendezvous {
            RendezvousChoice::Bundled { bind, .. } => *bind,
            RendezvousChoice::Remote(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let max = tcp_connections(self.cfg.peer_limit());
        // Only the networks the datagram (and so the code) reaches.
        let sources = Arc::new(lan::LanSources::new(self.cfg.interfaces()));
        let admit: jam::host::tcp::Admit = Arc::new(move |ip| sources.admits(ip));
        match host
            .listen_lan_tcp(SocketAddr::new(ip, 0), max, admit)
            .await
        {
            Ok(addr) => {
                self.lan_live.tcp = Some(addr);
                self.view
                    .send_modify(|v| v.lan_tcp_port = Some(addr.port()));
            }
            Err(e) => self.notice(
                Level::Warning,
                format!("MidiEditor's LAN Live join is off: cannot open a TCP port ({e})."),
            ),
        }
    }

    /// Starts the datagram when everything it needs is there: the jam is
    /// advertised, the setting is on, the TCP port is open, the code known.
    pub(super) fn start_announcer(&mut self) {
        self.stop_announcer();
        if !self.cfg.lan_live() {
            return;
        }
        let (Some(tcp), Some(code)) = (self.lan_live.tcp, self.view.borrow().code.clone()) else {
            return;
        };
        let announcement = Announcement {
            session_id: self.lan_live.session_id.clone(),
            display_name: self.cfg.name.clone(),
            tcp_port: tcp.port(),
            code,
        };
        match Announcer::start(self.cfg.interfaces(), &announcement) {
            Ok(a) => {
                self.lan_live.announcer = Some(a);
                self.view.send_modify(|v| v.lan_live = true);
            }
            Err(e) => self.notice(
                Level::Warning,
                format!("MidiEditor cannot find this jam on the LAN ({e}); it can still join over WAN Live."),
            ),
        }
    }

    /// Stops the datagram (within a tick; the thread is joined) and the
    /// STUN responder.
    pub(super) fn stop_announcer(&mut self) {
        if let Some(a) = self.lan_live.announcer.take() {
            a.stop();
        }
        self.lan_live.stun = None;
        self.view.send_modify(|v| {
            v.lan_live = false;
            v.stun_servers.clear();
        });
    }

    /// Answers STUN Binding requests on UDP 3478 (or the next free port) of
    /// the advert's interfaces while the jam is advertised, so that "Apply
    /// to MidiEditor" can give MidiEditor a STUN server that answers
    /// offline (`jam::stun_responder`).
    pub(super) async fn start_stun(&mut self) {
        self.lan_live.stun = None;
        if !self.cfg.advertised() {
            return;
        }
        let ips: Vec<IpAddr> = lan::midieditor_lan::interface_addrs(&self.cfg.interfaces())
            .into_iter()
            .map(|(_, ip)| IpAddr::V4(ip))
            .collect();
        if ips.is_empty() {
            return;
        }
        match jam::stun_responder::StunResponder::start(&ips).await {
            Ok(s) => {
                let uris = s.uris();
                self.lan_live.stun = Some(s);
                self.view.send_modify(|v| v.stun_servers = uris);
            }
            Err(e) => tracing::warn!("no LAN STUN responder: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_for_every_peer_and_the_half_open_ones() {
        for peers in 1..=64 {
            assert!(tcp_connections(peers) >= peers + peers + 4);
        }
    }
}
