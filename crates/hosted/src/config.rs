//! The one config a hosted jam is built from, and [`Impact`]: the one
//! decision of what a change of it restarts.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jam::rtc::{IceServer, RtcConfig};
use jam::types::RendezvousUrl;
use serde::Serialize;

/// How many ports after the configured one the desktop app tries when it is
/// busy (another program, or a second copy of the app, holds it).
pub const PORT_ATTEMPTS: u16 = 20;

/// The highest peer limit a hosted jam takes (the Settings range and
/// `midi-rdv host --max-peers`).
pub const MAX_PEERS: usize = 64;

/// Where joiners meet the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RendezvousChoice {
    /// A rendezvous run by this service on `bind`:`port`. When the port is
    /// busy, the next `port_attempts - 1` ports are tried in turn (1: only
    /// `port`; port 0 lets the OS pick).
    Bundled {
        bind: IpAddr,
        port: u16,
        port_attempts: u16,
    },
    /// A rendezvous elsewhere, by its base URL (`http://10.0.0.2:8787`),
    /// parsed once where it was typed.
    Remote(RendezvousUrl),
}

impl RendezvousChoice {
    pub fn is_bundled(&self) -> bool {
        matches!(self, RendezvousChoice::Bundled { .. })
    }

    /// The same rendezvous as `other`: a remote URL compared in its parsed
    /// form (blanks and a trailing `/` are gone), and the bundled one without
    /// `port_attempts` (trying more ports does not move a running jam).
    fn same_place(&self, other: &RendezvousChoice) -> bool {
        match (self, other) {
            (
                RendezvousChoice::Bundled { bind, port, .. },
                RendezvousChoice::Bundled {
                    bind: b2, port: p2, ..
                },
            ) => bind == b2 && port == p2,
            (RendezvousChoice::Remote(a), RendezvousChoice::Remote(b)) => a == b,
            _ => false,
        }
    }
}

/// This computer's MIDI ports in the jam: a MIDI system (midir, chosen by
/// the app; in-memory in tests) and the ports to open by name (empty: none;
/// the service's own virtual ports are always opened).
#[derive(Clone)]
pub struct MidiChoice {
    pub system: Arc<dyn midi::ports::MidiSystem>,
    pub input: String,
    pub output: String,
}

impl fmt::Debug for MidiChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MidiChoice")
            .field("input", &self.input)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl MidiChoice {
    fn same(&self, other: &MidiChoice) -> bool {
        Arc::ptr_eq(&self.system, &other.system)
            && self.input == other.input
            && self.output == other.output
    }
}

/// Everything a hosted jam is built from. Front ends map their own settings
/// (the app's `Settings`, `midi-rdv host`'s flags) to this; what a change of
/// it restarts is [`Impact::between`].
#[derive(Debug, Clone)]
pub struct HostedConfig {
    /// The host's name as joiners and the LAN see it.
    pub name: String,
    /// Peers in the jam at once (1 to [`MAX_PEERS`]); the next is refused
    /// with a reason. The bundled rendezvous takes at least as many.
    pub max_peers: usize,
    pub rendezvous: RendezvousChoice,
    /// STUN/TURN servers for the answers; empty for LAN-only use (tests).
    pub ice_servers: Vec<IceServer>,
    /// Longest wait for ICE gathering before an answer is sent.
    pub gather_timeout: Duration,
    /// Addresses ICE host candidates are gathered on; empty = every LAN one.
    pub ice_bind: Vec<IpAddr>,
    /// Resolve browsers' `.local` candidates by mDNS.
    pub resolve_mdns: bool,
    /// Announce the jam on the LAN (mDNS; only with the bundled rendezvous).
    pub advertise: bool,
    /// Interfaces the advert goes out on; empty: the physical LAN ones.
    pub advertise_on: Vec<String>,
    /// Publish the code in the advert, so LAN joiners need not type it.
    pub open_jam: bool,
    /// "Let MidiEditor find this jam on the LAN": accept MidiEditor's LAN
    /// Live joiners over TCP and, while the jam is advertised, send its
    /// `MIDIEDIT-PR-LAN` datagram on the advert's interfaces.
    pub midieditor_lan: bool,
    /// This computer's MIDI ports, or `None` (a headless host only relays).
    pub midi: Option<MidiChoice>,
    /// A failed start is tried again this often (the app); `None`: a failed
    /// start is final (`midi-rdv host` exits with the reason).
    pub retry_every: Option<Duration>,
    /// The shared song MidiEditor joiners receive and edit (`None`: a jam
    /// without one). Shared by reference: a restarted host keeps it.
    pub song: Option<jam::hub::SongShare>,
    /// The host's `machineId` (MidiEditor's presenter id); kept across
    /// restarts by the front end. Empty: a new one per start.
    pub machine_id: String,
}

impl Default for HostedConfig {
    /// What a user gets: the bundled rendezvous on every address, port 8787
    /// and the ones after it, no STUN/TURN, advertised on the LAN.
    fn default() -> Self {
        HostedConfig {
            name: "Jam host".into(),
            max_peers: 8,
            rendezvous: RendezvousChoice::Bundled {
                bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                port: 8787,
                port_attempts: PORT_ATTEMPTS,
            },
            ice_servers: Vec::new(),
            gather_timeout: Duration::from_millis(2000),
            ice_bind: Vec::new(),
            resolve_mdns: true,
            advertise: true,
            advertise_on: Vec::new(),
            open_jam: false,
            midieditor_lan: true,
            midi: None,
            retry_every: Some(Duration::from_secs(5)),
            song: None,
            machine_id: String::new(),
        }
    }
}

impl HostedConfig {
    /// The peer limit in force: at least 1, at most [`MAX_PEERS`].
    pub fn peer_limit(&self) -> usize {
        self.max_peers.clamp(1, MAX_PEERS)
    }

    /// The WebRTC settings every answer is built with.
    pub fn rtc(&self) -> RtcConfig {
        RtcConfig {
            ice_servers: self.ice_servers.clone(),
            gather_timeout: self.gather_timeout,
            bind_ips: self.ice_bind.clone(),
            resolve_mdns: self.resolve_mdns,
        }
    }

    /// Whether the jam is announced on the LAN with this config.
    pub(crate) fn advertised(&self) -> bool {
        self.advertise && self.rendezvous.is_bundled()
    }

    /// Whether MidiEditor's LAN Live datagram is sent: on the same
    /// condition and interfaces as the mDNS advert, and the setting.
    pub(crate) fn lan_live(&self) -> bool {
        self.advertised() && self.midieditor_lan
    }

    /// The interfaces the advert and the LAN Live datagram use.
    pub(crate) fn interfaces(&self) -> lan::InterfaceChoice {
        if self.advertise_on.is_empty() {
            lan::InterfaceChoice::DefaultLan
        } else {
            lan::InterfaceChoice::Named(self.advertise_on.clone())
        }
    }
}

/// What changing a hosted jam's config from one [`HostedConfig`] to another
/// does to the running jam: the ONE decision of it, used by the service's
/// `apply` and by front ends to tell the user before they save.
///
/// Only two things cost the peers their place: moving the rendezvous (its
/// address is what joiners reach) and a new host name (the rendezvous
/// registered the session under the old one). Everything the host reads per
/// joiner (peer limit, STUN/TURN list, gathering cap, ICE addresses) is
/// applied live; the advert and the MIDI ports restart on their own
/// without touching the peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Impact {
    /// The jam moves to another rendezvous (bundled port or bind address,
    /// another URL, bundled to remote or back): a new address, everyone is
    /// dropped (the code stays while the rendezvous is a bundled one).
    pub rendezvous: bool,
    /// The jam host restarts on the same rendezvous (a new name or shared
    /// song): everyone is dropped; the code stays (the bundled rendezvous
    /// gives the restarted host its old code again).
    pub host: bool,
    /// Applied while the jam runs (peer limit, STUN/TURN servers, gathering
    /// cap, ICE addresses): the code stays, nobody is dropped; the next
    /// joiner gets the new values.
    pub live: bool,
    /// The LAN advertisement is withdrawn and announced again (on/off,
    /// interfaces, open jam): LAN browsers see the jam go and come back.
    pub advert: bool,
    /// This computer's MIDI ports are closed and opened again.
    pub midi: bool,
}

impl Impact {
    /// What moving from `old` to `new` restarts.
    pub fn between(old: &HostedConfig, new: &HostedConfig) -> Impact {
        let rendezvous = !old.rendezvous.same_place(&new.rendezvous);
        // Another shared song restarts the host: every joiner then receives
        // it as its `filetransfer`, and no edit made to the old one can land
        // in the new one.
        let host = !rendezvous && (old.name != new.name || old.song != new.song);
        let live = old.peer_limit() != new.peer_limit() || old.rtc() != new.rtc();
        let drops = rendezvous || host;
        let advert = (drops && (old.advertised() || new.advertised()))
            || old.advertised() != new.advertised()
            || (new.advertised()
                && (old.advertise_on != new.advertise_on
                    || old.open_jam != new.open_jam
                    || old.midieditor_lan != new.midieditor_lan));
        let midi = match (&old.midi, &new.midi) {
            (Some(a), Some(b)) => !a.same(b),
            (None, None) => false,
            _ => true,
        };
        Impact {
            rendezvous,
            host,
            // A restart applies everything anyway.
            live: live && !drops,
            advert,
            midi,
        }
    }

    /// Whether the running jam ends: every connected peer has to join
    /// again.
    pub fn drops_peers(&self) -> bool {
        self.rendezvous || self.host
    }

    /// Whether nothing visible happens.
    pub fn is_none(&self) -> bool {
        *self == Impact::default()
    }

    /// One sentence for the user, `None` when nothing visible happens.
    pub fn describe(&self) -> Option<String> {
        if self.rendezvous {
            Some(
                "The jam moves to the new address: everyone connected is dropped and has to join again there."
                    .into(),
            )
        } else if self.host {
            Some(
                "The jam restarts (its code stays the same): everyone connected is dropped and has to join again."
                    .into(),
            )
        } else if self.live || self.advert || self.midi {
            let mut parts = Vec::new();
            if self.live {
                parts.push("new joiners get the new peer limit and connection settings");
            }
            if self.advert {
                parts.push("the LAN announcement is renewed");
            }
            if self.midi {
                parts.push("your MIDI ports are reopened");
            }
            Some(format!(
                "The jam goes on with the same code and nobody is dropped; {}.",
                parts.join(", ")
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_moving_the_rendezvous_or_renaming_drops_peers() {
        let a = HostedConfig::default();
        assert!(Impact::between(&a, &a).is_none());
        assert_eq!(Impact::between(&a, &a).describe(), None);

        let renamed = HostedConfig {
            name: "Other".into(),
            ..a.clone()
        };
        let i = Impact::between(&a, &renamed);
        assert!(
            i.host && !i.rendezvous && i.drops_peers() && i.advert,
            "{i:?}"
        );

        let moved = HostedConfig {
            rendezvous: RendezvousChoice::Bundled {
                bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                port: 9000,
                port_attempts: PORT_ATTEMPTS,
            },
            ..a.clone()
        };
        let i = Impact::between(&a, &moved);
        assert!(i.rendezvous && !i.host && i.drops_peers(), "{i:?}");
        assert!(i.describe().unwrap().contains("new address"));

        let remote = HostedConfig {
            rendezvous: RendezvousChoice::Remote("http://10.0.0.2:8787/ ".parse().unwrap()),
            ..a.clone()
        };
        assert!(Impact::between(&a, &remote).rendezvous);
        let same_remote = HostedConfig {
            rendezvous: RendezvousChoice::Remote("http://10.0.0.2:8787".parse().unwrap()),
            ..a.clone()
        };
        assert!(Impact::between(&remote, &same_remote).is_none());

        for live in [
            HostedConfig {
                max_peers: 12,
                ..a.clone()
            },
            HostedConfig {
                gather_timeout: Duration::from_millis(500),
                ..a.clone()
            },
            HostedConfig {
                ice_servers: vec![IceServer {
                    urls: vec!["stun:127.0.0.1:3478".into()],
                    username: None,
                    credential: None,
                }],
                ..a.clone()
            },
        ] {
            let i = Impact::between(&a, &live);
            assert!(i.live && !i.drops_peers() && !i.advert, "{i:?}");
            assert!(i.describe().unwrap().contains("nobody is dropped"));
        }

        let open = HostedConfig {
            open_jam: true,
            ..a.clone()
        };
        let i = Impact::between(&a, &open);
        assert!(i.advert && !i.drops_peers() && !i.live, "{i:?}");
        // Not advertised at all: the open flag changes nothing visible.
        let quiet = HostedConfig {
            advertise: false,
            ..a.clone()
        };
        let quiet_open = HostedConfig {
            open_jam: true,
            ..quiet.clone()
        };
        assert!(Impact::between(&quiet, &quiet_open).is_none());
        // Trying more ports does not move a running jam.
        let more_ports = HostedConfig {
            rendezvous: RendezvousChoice::Bundled {
                bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                port: 8787,
                port_attempts: 1,
            },
            ..a.clone()
        };
        assert!(Impact::between(&a, &more_ports).is_none());
    }

    #[test]
    fn new_midi_ports_reopen_only_the_ports() {
        let system: Arc<dyn midi::ports::MidiSystem> = Arc::new(midi::memory::MemoryMidi::new());
        let a = HostedConfig {
            midi: Some(MidiChoice {
                system: system.clone(),
                input: "Keys".into(),
                output: String::new(),
            }),
            ..HostedConfig::default()
        };
        let b = HostedConfig {
            midi: Some(MidiChoice {
                system,
                input: "Other keys".into(),
                output: String::new(),
            }),
            ..a.clone()
        };
        let i = Impact::between(&a, &b);
        assert_eq!(
            i,
            Impact {
                midi: true,
                ..Impact::default()
            }
        );
        assert!(i.describe().unwrap().contains("MIDI ports are reopened"));
    }
}
