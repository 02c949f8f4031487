//! The app's hosted jam: the user's [`Settings`] mapped to a
//! [`hosted::HostedConfig`], and the [`hosted::Hosted`] service that runs
//! it (bundled rendezvous or a remote one, the jam host, the LAN advert,
//! this computer's MIDI ports). The front end gets a [`JamView`] snapshot
//! every time something it shows changes and sends intents (kick, apply
//! settings, stop); what a settings change restarts is [`impact`].
//!
//! Nothing is composed here: what is app-specific is only the mapping
//! (where the app listens, the midir MIDI system, retrying a failed start).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hosted::{Hosted, HostedConfig, MidiChoice, RendezvousChoice};
use tokio::sync::watch;

pub use hosted::local_midi::JamPorts;
pub use hosted::{join_link, qr_svg, Impact, Level, Notice, PeerMidiView, Phase, PORT_ATTEMPTS};

use crate::settings::{ice_rows_to_servers, Settings};

/// Everything the host screen shows, pushed whole on every change.
pub type JamView = hosted::HostedView;

/// A failed start (remote rendezvous unreachable, say) is retried this often.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Where and how the jam runs, beyond the user's settings. The defaults are
/// for real users; tests narrow them to loopback.
#[derive(Debug, Clone)]
pub struct JamOptions {
    /// Address the bundled rendezvous listens on.
    pub bind_ip: IpAddr,
    /// Addresses ICE host candidates are gathered on; empty = every LAN one.
    pub ice_bind: Vec<IpAddr>,
    /// Resolve browsers' `.local` candidates by mDNS.
    pub resolve_mdns: bool,
}

impl Default for JamOptions {
    fn default() -> Self {
        JamOptions {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ice_bind: Vec::new(),
            resolve_mdns: true,
        }
    }
}

/// The hosted jam `settings` describe, on `options`, with the ports of
/// `midi_system`. A STUN/TURN list or a rendezvous address that does not
/// parse (only a hand-edited file can hold one: saved settings are
/// validated) is left out, and the reasons returned for the status line.
pub fn hosted_config(
    settings: &Settings,
    options: &JamOptions,
    midi_system: Arc<dyn midi::ports::MidiSystem>,
) -> (HostedConfig, Option<String>) {
    let url = settings.rendezvous_url.trim();
    let mut warnings = Vec::new();
    let ice_servers = ice_rows_to_servers(&settings.ice_servers).unwrap_or_else(|e| {
        warnings.push(format!("STUN/TURN list ignored: {}", e.message));
        Vec::new()
    });
    // Saved settings are validated; only a hand-edited file holds an address
    // that does not parse. The jam then hosts on the bundled rendezvous and
    // says why, rather than not hosting at all.
    let remote = match url {
        "" => None,
        u => match jam::types::RendezvousUrl::parse(u) {
            Ok(u) => Some(u),
            Err(e) => {
                warnings.push(format!(
                    "Rendezvous address ignored ({e}); the jam uses the bundled rendezvous."
                ));
                None
            }
        },
    };
    let cfg = HostedConfig {
        name: settings.display_name.clone(),
        max_peers: usize::try_from(settings.max_peers).unwrap_or(usize::MAX),
        rendezvous: match remote {
            None => RendezvousChoice::Bundled {
                bind: options.bind_ip,
                port: settings.listen_port,
                port_attempts: PORT_ATTEMPTS,
            },
            Some(url) => RendezvousChoice::Remote(url),
        },
        ice_servers,
        gather_timeout: Duration::from_millis(settings.gather_timeout_ms),
        ice_bind: options.ice_bind.clone(),
        resolve_mdns: options.resolve_mdns,
        advertise: settings.advertise,
        advertise_on: settings.mdns_interfaces.clone(),
        open_jam: settings.open_jam,
        midieditor_lan: settings.midieditor_lan,
        midi: Some(MidiChoice {
            system: midi_system,
            input: settings.midi_input.clone(),
            output: settings.midi_output.clone(),
        }),
        retry_every: Some(RETRY_EVERY),
        song: None,
        machine_id: String::new(),
    };
    (cfg, (!warnings.is_empty()).then(|| warnings.join(" ")))
}

/// What saving `new` over `old` does to the running jam (the window asks
/// before a save that drops peers): [`Impact::between`] of the two configs.
pub fn impact(old: &Settings, new: &Settings) -> Impact {
    // The MIDI system is the same before and after a save; only the port
    // names compare.
    static SYSTEM: OnceLock<Arc<dyn midi::ports::MidiSystem>> = OnceLock::new();
    let system = SYSTEM.get_or_init(|| Arc::new(midi::memory::MemoryMidi::new()));
    let options = JamOptions::default();
    let (a, _) = hosted_config(old, &options, system.clone());
    let (b, _) = hosted_config(new, &options, system.clone());
    Impact::between(&a, &b)
}

/// The session hub's part of the config, which the settings do not hold:
/// the shared song and the host's stable machine id (both from the app's
/// state folder, see [`crate::song`]).
#[derive(Debug, Clone, Default)]
pub struct Hub {
    pub song: Option<jam::hub::SongShare>,
    pub machine_id: String,
}

/// A handle to the running jam.
pub struct Jam {
    hosted: Hosted,
    options: JamOptions,
    midi_system: Arc<dyn midi::ports::MidiSystem>,
    /// What the last config was built from, so a new song restarts the
    /// jam with the same settings and a settings save keeps the song.
    last: std::sync::Mutex<(Settings, Hub)>,
}

impl Jam {
    /// Starts hosting with `settings` in the background; the first view
    /// (phase `Starting`) is there at once and the code follows. The MIDI
    /// ports are the system's (midir).
    pub fn start(settings: Settings, options: JamOptions) -> Jam {
        Jam::start_with_midi(
            settings,
            options,
            Arc::new(midi::midir_ports::MidirSystem::new("MIDI Jam")),
        )
    }

    /// Like [`Jam::start`] with the MIDI ports of `midi_system` (the
    /// in-memory one in tests).
    pub fn start_with_midi(
        settings: Settings,
        options: JamOptions,
        midi_system: Arc<dyn midi::ports::MidiSystem>,
    ) -> Jam {
        Jam::start_hub(settings, options, midi_system, Hub::default())
    }

    /// Like [`Jam::start_with_midi`], as a session hub sharing `hub`'s song.
    pub fn start_hub(
        settings: Settings,
        options: JamOptions,
        midi_system: Arc<dyn midi::ports::MidiSystem>,
        hub: Hub,
    ) -> Jam {
        let (mut cfg, warning) = hosted_config(&settings, &options, midi_system.clone());
        cfg.song = hub.song.clone();
        cfg.machine_id = hub.machine_id.clone();
        // The window reads the view; nobody here follows the event stream.
        let (hosted, _) = Hosted::start(cfg);
        if let Some(message) = warning {
            hosted.notice(Level::Warning, message);
        }
        Jam {
            hosted,
            options,
            midi_system,
            last: std::sync::Mutex::new((settings, hub)),
        }
    }

    fn last(&self) -> std::sync::MutexGuard<'_, (Settings, Hub)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shares `song` from now on: the host restarts (the code stays;
    /// everyone joins again and receives it).
    pub async fn share_song(&self, song: jam::hub::SongShare) -> Impact {
        let settings = {
            let mut last = self.last();
            last.1.song = Some(song);
            last.0.clone()
        };
        self.apply(settings).await
    }

    /// A receiver of every new view.
    pub fn subscribe(&self) -> watch::Receiver<JamView> {
        self.hosted.subscribe()
    }

    /// The current view.
    pub fn view(&self) -> JamView {
        self.hosted.view()
    }

    /// The service itself, for what this wrapper does not repeat (its event
    /// stream, chat).
    pub fn hosted(&self) -> &Hosted {
        &self.hosted
    }

    /// Drops a peer from the jam.
    pub async fn kick(&self, peer: u64) {
        self.hosted.kick(peer, "removed by the host").await;
    }

    /// Mutes (or unmutes) a peer on this computer's MIDI output; the other
    /// peers still hear it. Muting releases the notes it holds here.
    pub async fn set_muted(&self, peer: u64, muted: bool) {
        self.hosted.set_muted(peer, muted).await;
    }

    /// Releases every note and pedal on every output that plays one.
    pub async fn panic(&self) {
        self.hosted.panic().await;
    }

    /// The Record switch (see `hosted::Hosted::set_record`).
    pub async fn set_record(&self, on: bool) {
        self.hosted.set_record(on).await;
    }

    /// Connects this computer's MIDI ports to another jam (one this app
    /// joined, [`crate::joined_midi`]), or with `None` back to our own.
    /// Our own jam keeps hosting meanwhile, without them.
    pub async fn route_ports(&self, ports: Option<Arc<dyn JamPorts>>) {
        self.hosted.route_ports(ports).await;
    }

    /// Gives the ports back to our own jam if they are still connected to
    /// `ports` (a joined jam that ended), and not to a newer one.
    pub async fn return_ports(&self, ports: Arc<dyn JamPorts>) {
        self.hosted.return_ports(ports).await;
    }

    /// Moves the jam to new settings, doing what [`impact`] says: a new
    /// rendezvous, port or name means everyone dropped (a remote
    /// rendezvous also gives a new code; the bundled one keeps it); the
    /// peer limit, STUN/TURN list and gathering cap apply live. Returns when
    /// the change is made (the code may still be on its way).
    pub async fn apply(&self, settings: Settings) -> Impact {
        let (mut cfg, warning) = hosted_config(&settings, &self.options, self.midi_system.clone());
        {
            let mut last = self.last();
            last.0 = settings;
            cfg.song = last.1.song.clone();
            cfg.machine_id = last.1.machine_id.clone();
        }
        if let Some(message) = warning {
            self.hosted.notice(Level::Warning, message);
        }
        self.hosted.apply(cfg).await
    }

    /// Stops: peers told, session removed, advertisement withdrawn.
    pub async fn stop(self) {
        self.hosted.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_change_restarts_the_host_and_a_peer_limit_applies_live() {
        let a = Settings::default();
        let b = Settings {
            display_name: "Other".into(),
            ..a.clone()
        };
        let i = impact(&a, &b);
        assert!(i.host && !i.rendezvous, "{i:?}");
        let c = Settings {
            listen_port: 9000,
            ..a.clone()
        };
        assert!(impact(&a, &c).rendezvous);
        let d = Settings {
            open_jam: true,
            ..a.clone()
        };
        let i = impact(&a, &d);
        assert!(i.advert && !i.drops_peers(), "{i:?}");
        let e = Settings {
            max_peers: 12,
            gather_timeout_ms: 500,
            ..a.clone()
        };
        let i = impact(&a, &e);
        assert!(i.live && !i.drops_peers(), "{i:?}");
        let f = Settings {
            midi_input: "Keys".into(),
            ..a.clone()
        };
        let i = impact(&a, &f);
        assert!(i.midi && !i.drops_peers() && !i.live, "{i:?}");
        assert!(impact(&a, &a).is_none());
        // With a remote rendezvous the listen port is not used.
        let remote = Settings {
            rendezvous_url: "http://10.0.0.2:8787".into(),
            ..a.clone()
        };
        let remote_port = Settings {
            listen_port: 9000,
            ..remote.clone()
        };
        assert!(impact(&remote, &remote_port).is_none());
    }
}
