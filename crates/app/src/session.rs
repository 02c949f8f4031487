//! The running jam: the bundled rendezvous (or a remote one), the jam host,
//! and the LAN advertisement, supervised by one task. The front end never
//! sees these parts; it gets a [`JamView`] snapshot every time something it
//! shows changes (a `watch` channel: no polling, and a slow window only ever
//! sees the newest state), and sends intents (kick, apply settings, stop).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use jam::host::{Host, HostConfig, HostEvent};
use jam::registry::{PeerEntry, RegistryEvent};
use jam::rtc::RtcConfig;
use jam::signal::Target;
use rdv::{Config, Rendezvous, RunningServer};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::local_midi::JamPorts;
use crate::settings::{ice_rows_to_servers, Settings};

/// How many ports after the configured one are tried when it is busy.
pub const PORT_ATTEMPTS: u16 = 20;

/// A failed start (remote rendezvous unreachable, say) is retried this often.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// How often the MIDI activity lights are read.
const ACTIVITY_EVERY: Duration = Duration::from_millis(500);

/// Port messages (unplugged, back) waiting for the supervisor.
const PORT_NOTICES: usize = 32;

/// Whether two handles are the same jam's ports.
fn same(a: &Arc<dyn JamPorts>, b: &Arc<dyn JamPorts>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

/// The newest status-line messages kept for the window.
const MAX_NOTICES: usize = 8;

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

/// What phase the jam is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Binding the port, registering the session.
    #[default]
    Starting,
    /// The code is valid; joiners can come.
    Hosting,
    /// Could not host; retried every few seconds.
    Failed,
    /// Stopped for good (the app is closing).
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
    /// Increases with every notice, so the window can tell new from old.
    pub seq: u64,
}

/// Everything the host screen shows, pushed whole on every change.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JamView {
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
    pub max_peers: usize,
    /// Peers in order of arrival.
    pub peers: Vec<PeerEntry>,
    /// Newest last.
    pub notices: Vec<Notice>,
    /// Live-MIDI state per peer id (peers that opened a `midi` channel or
    /// played): activity light, notes sounding, muted here.
    pub midi: Vec<PeerMidiView>,
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
}

impl JamView {
    /// Peers that said hello and were welcomed.
    pub fn connected(&self) -> usize {
        self.peers
            .iter()
            .filter(|p| p.state == jam::registry::PeerState::Connected)
            .count()
    }
}

enum Cmd {
    Kick(u64),
    Mute(u64, bool),
    Panic,
    Apply(Settings, oneshot::Sender<()>),
    /// Connect the MIDI ports to this jam (`None`: back to our own).
    RoutePorts(Option<Arc<dyn JamPorts>>, oneshot::Sender<()>),
    /// Give the ports back to our own jam if they are connected to this one.
    ReturnPorts(Arc<dyn JamPorts>, oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// A handle to the running jam.
pub struct Jam {
    cmd: mpsc::Sender<Cmd>,
    view: watch::Receiver<JamView>,
    task: tokio::task::JoinHandle<()>,
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
        let (view_tx, view_rx) = watch::channel(JamView {
            max_peers: settings.max_peers as usize,
            bundled: settings.rendezvous_url.trim().is_empty(),
            ..JamView::default()
        });
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (port_notices, port_notices_rx) = mpsc::channel(PORT_NOTICES);
        let sup = Supervisor {
            settings,
            options,
            view: view_tx,
            server: None,
            host: None,
            events: None,
            advertiser: None,
            notice_seq: 0,
            midi_system,
            local_midi: None,
            ports_to: None,
            port_notices,
        };
        let task = tokio::spawn(sup.run(cmd_rx, port_notices_rx));
        Jam {
            cmd: cmd_tx,
            view: view_rx,
            task,
        }
    }

    /// A receiver of every new view.
    pub fn subscribe(&self) -> watch::Receiver<JamView> {
        self.view.clone()
    }

    /// The current view.
    pub fn view(&self) -> JamView {
        self.view.borrow().clone()
    }

    /// Drops a peer from the jam.
    pub async fn kick(&self, peer: u64) {
        let _ = self.cmd.send(Cmd::Kick(peer)).await;
    }

    /// Mutes (or unmutes) a peer on this computer's MIDI output; the other
    /// peers still hear it. Muting releases the notes it holds here.
    pub async fn set_muted(&self, peer: u64, muted: bool) {
        let _ = self.cmd.send(Cmd::Mute(peer, muted)).await;
    }

    /// Releases every note and pedal on every output that plays one.
    pub async fn panic(&self) {
        let _ = self.cmd.send(Cmd::Panic).await;
    }

    /// Connects this computer's MIDI ports to another jam (one this app
    /// joined, [`crate::joined_midi`]), or with `None` back to our own.
    /// Our own jam keeps hosting meanwhile, without them.
    pub async fn route_ports(&self, ports: Option<Arc<dyn JamPorts>>) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::RoutePorts(ports, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Gives the ports back to our own jam if they are still connected to
    /// `ports` (a joined jam that ended), and not to a newer one.
    pub async fn return_ports(&self, ports: Arc<dyn JamPorts>) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::ReturnPorts(ports, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Moves the jam to new settings: what changed is restarted (a new
    /// rendezvous or port means a new code), the rest is kept. Returns when
    /// the change is made (the new code may still be on its way).
    pub async fn apply(&self, settings: Settings) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Apply(settings, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops: peers told, session removed, advertisement withdrawn.
    pub async fn stop(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

struct Supervisor {
    settings: Settings,
    options: JamOptions,
    view: watch::Sender<JamView>,
    server: Option<RunningServer>,
    host: Option<Host>,
    events: Option<broadcast::Receiver<HostEvent>>,
    advertiser: Option<lan::Advertiser>,
    notice_seq: u64,
    midi_system: Arc<dyn midi::ports::MidiSystem>,
    /// This computer's MIDI ports, connected while hosting (or to
    /// `ports_to`).
    local_midi: Option<crate::local_midi::LocalMidi>,
    /// A joined jam the ports play in instead of ours.
    ports_to: Option<Arc<dyn JamPorts>>,
    port_notices: crate::local_midi::Notices,
}

/// Which parts a settings change touches: (rendezvous, host, advert).
/// Public for `facade::save_impact` until `hosted::Impact::between` takes over.
pub fn needs_restart(old: &Settings, new: &Settings) -> (bool, bool, bool) {
    let server = old.listen_port != new.listen_port
        || old.rendezvous_url.trim() != new.rendezvous_url.trim();
    let host = server
        || old.display_name != new.display_name
        || old.ice_servers != new.ice_servers
        || old.gather_timeout_ms != new.gather_timeout_ms
        || old.max_peers != new.max_peers;
    let advert = host
        || old.advertise != new.advertise
        || old.open_jam != new.open_jam
        || old.mdns_interfaces != new.mdns_interfaces;
    (server, host, advert)
}

impl Supervisor {
    async fn run(
        mut self,
        mut cmd: mpsc::Receiver<Cmd>,
        mut port_notices: mpsc::Receiver<(Level, String)>,
    ) {
        self.start_all().await;
        // The activity lights are read from the relay twice a second; the
        // view is only republished when one changes.
        let mut activity = tokio::time::interval(ACTIVITY_EVERY);
        activity.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let failed = self.host.is_none();
            tokio::select! {
                c = cmd.recv() => match c {
                    Some(Cmd::Kick(id)) => {
                        if let Some(h) = &self.host {
                            h.kick(jam::protocol::PeerId(id), "removed by the host").await;
                        }
                    }
                    Some(Cmd::Mute(id, muted)) => {
                        if let Some(h) = &self.host {
                            h.clone_handle().set_muted(jam::protocol::PeerId(id), muted).await;
                        }
                        self.refresh_midi().await;
                    }
                    Some(Cmd::Panic) => {
                        if let Some(h) = &self.host {
                            h.clone_handle().panic().await;
                        }
                        if let Some(j) = &self.ports_to {
                            j.panic();
                        }
                        self.notice(Level::Info, "All notes released (panic).");
                    }
                    Some(Cmd::Apply(new, done)) => {
                        self.apply(new).await;
                        let _ = done.send(());
                    }
                    Some(Cmd::RoutePorts(to, done)) => {
                        let joined = to.is_some();
                        let was_joined = self.ports_to.is_some();
                        self.ports_to = to;
                        self.start_local_midi().await;
                        if joined {
                            self.notice(Level::Info, "Your MIDI ports play in the jam you joined.");
                        } else if was_joined {
                            self.notice(Level::Info, "Your MIDI ports are back in your own jam.");
                        }
                        let _ = done.send(());
                    }
                    Some(Cmd::ReturnPorts(from, done)) => {
                        if self.ports_to.as_ref().is_some_and(|p| same(p, &from)) {
                            self.ports_to = None;
                            self.start_local_midi().await;
                            self.notice(Level::Info, "Your MIDI ports are back in your own jam.");
                        }
                        let _ = done.send(());
                    }
                    Some(Cmd::Stop(done)) => {
                        self.stop_host().await;
                        self.stop_server().await;
                        self.view.send_modify(|v| v.phase = Phase::Stopped);
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop_host().await;
                        self.stop_server().await;
                        return;
                    }
                },
                e = next_event(&mut self.events) => self.on_event(e),
                Some((level, message)) = port_notices.recv() => self.notice(level, message),
                () = tokio::time::sleep(RETRY_EVERY), if failed => {
                    self.start_all().await;
                }
                _ = activity.tick(), if !failed => self.refresh_midi().await,
            }
        }
    }

    /// Reads the relay's per-peer counters into the view's MIDI lights.
    async fn refresh_midi(&mut self) {
        let Some(h) = &self.host else { return };
        let now = h.clone_handle().midi_activity().await;
        let old = self.view.borrow().midi.clone();
        let lights: Vec<PeerMidiView> = now
            .iter()
            .filter_map(|p| {
                let id = p.peer?.0;
                let before = old.iter().find(|o| o.peer == id).map(|o| o.messages);
                Some(PeerMidiView {
                    peer: id,
                    active: before.map_or(p.activity.messages > 0, |b| p.activity.messages > b),
                    messages: p.activity.messages,
                    sounding: p.activity.sounding,
                    muted: p.activity.muted,
                })
            })
            .collect();
        if lights != old {
            self.view.send_modify(|v| v.midi = lights);
        }
    }

    /// (Re)connects the MIDI ports the settings name to the jam they play
    /// in: a joined one, or the running host.
    async fn start_local_midi(&mut self) {
        self.close_local_midi().await;
        let jam: Arc<dyn JamPorts> = match (&self.ports_to, &self.host) {
            (Some(to), _) => to.clone(),
            (None, Some(h)) => Arc::new(h.clone_handle()),
            (None, None) => return,
        };
        self.local_midi = Some(crate::local_midi::start(
            self.midi_system.clone(),
            jam,
            &self.settings.midi_input,
            &self.settings.midi_output,
            self.port_notices.clone(),
        ));
    }

    /// Closes the ports after they played what was queued for them.
    async fn close_local_midi(&mut self) {
        if let Some(l) = self.local_midi.take() {
            l.close().await;
        }
    }

    fn bundled(&self) -> bool {
        self.settings.rendezvous_url.trim().is_empty()
    }

    fn notice(&mut self, level: Level, message: impl Into<String>) {
        self.notice_seq += 1;
        let n = Notice {
            level,
            message: message.into(),
            seq: self.notice_seq,
        };
        self.view.send_modify(|v| {
            v.notices.push(n);
            if v.notices.len() > MAX_NOTICES {
                let extra = v.notices.len() - MAX_NOTICES;
                v.notices.drain(..extra);
            }
        });
    }

    async fn apply(&mut self, new: Settings) {
        let (server, host, advert) = needs_restart(&self.settings, &new);
        let midi_changed = self.settings.midi_input != new.midi_input
            || self.settings.midi_output != new.midi_output;
        self.settings = new;
        if advert {
            self.stop_advert().await;
        }
        if host {
            self.stop_host().await;
        }
        if server {
            self.stop_server().await;
        }
        if host || server {
            self.start_all().await;
        } else {
            if advert {
                self.start_advert().await;
            }
            if midi_changed {
                self.start_local_midi().await;
            }
        }
    }

    /// Binds the bundled rendezvous (moving up from a busy port), then hosts.
    async fn start_all(&mut self) {
        self.view.send_modify(|v| {
            v.phase = Phase::Starting;
            v.bundled = self.settings.rendezvous_url.trim().is_empty();
            v.max_peers = self.settings.max_peers as usize;
        });
        let target = if self.bundled() {
            if self.server.is_none() {
                match self.bind().await {
                    Ok(s) => self.server = Some(s),
                    Err(message) => {
                        self.notice(Level::Error, message);
                        self.view.send_modify(|v| v.phase = Phase::Failed);
                        return;
                    }
                }
            }
            let Some(server) = &self.server else { return };
            Target::Bundled(server.rdv.clone())
        } else {
            Target::Remote(self.settings.rendezvous_url.trim().to_owned())
        };
        let urls = match (&target, &self.server) {
            (Target::Bundled(_), Some(s)) => jam::net::share_urls(s.addr, ""),
            _ => vec![self
                .settings
                .rendezvous_url
                .trim()
                .trim_end_matches('/')
                .to_owned()],
        };
        let ice = match ice_rows_to_servers(&self.settings.ice_servers) {
            Ok(ice) => ice,
            Err(e) => {
                // Saved settings are validated; this is a hand-edited file.
                self.notice(
                    Level::Warning,
                    format!("STUN/TURN list ignored: {}", e.message),
                );
                Vec::new()
            }
        };
        let cfg = HostConfig {
            display_name: self.settings.display_name.clone(),
            machine_id: String::new(),
            session_id: format!("jam-{}", jam::host::new_machine_id()),
            max_peers: self.settings.max_peers.max(1) as usize,
            rtc: RtcConfig {
                ice_servers: ice,
                gather_timeout: Duration::from_millis(self.settings.gather_timeout_ms),
                bind_ips: self.options.ice_bind.clone(),
                resolve_mdns: self.options.resolve_mdns,
            },
            target,
            share_urls: urls.clone(),
        };
        match Host::start(cfg).await {
            Ok((host, events)) => {
                self.host = Some(host);
                self.events = Some(events);
                let port = self.server.as_ref().map(|s| s.addr.port());
                self.view.send_modify(|v| {
                    v.urls = urls;
                    v.port = port;
                    v.peers.clear();
                });
                if self.ports_to.is_none() {
                    self.start_local_midi().await;
                }
                // The code arrives as the first event; the advert needs it.
                if let Some(HostEvent::Hosting { .. }) = self.peek_hosting().await {
                    self.start_advert().await;
                }
            }
            Err(e) => {
                let where_ = if self.bundled() {
                    "the bundled rendezvous".to_owned()
                } else {
                    self.settings.rendezvous_url.trim().to_owned()
                };
                self.notice(
                    Level::Error,
                    format!("Cannot host at {where_}: {e}. Trying again in a few seconds."),
                );
                self.view.send_modify(|v| {
                    v.phase = Phase::Failed;
                    v.code = None;
                    v.join_link = None;
                    v.qr_svg = None;
                });
            }
        }
    }

    /// Handles the `Hosting` event the host sends first, so the view has
    /// the code before anything else happens.
    async fn peek_hosting(&mut self) -> Option<HostEvent> {
        let rx = self.events.as_mut()?;
        let e = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .ok()?
            .ok()?;
        self.on_event(Some(e.clone()));
        Some(e)
    }

    async fn bind(&mut self) -> Result<RunningServer, String> {
        let wanted = self.settings.listen_port;
        let mut last = None;
        for i in 0..PORT_ATTEMPTS {
            let Some(port) = wanted.checked_add(i) else {
                break;
            };
            let addr = SocketAddr::new(self.options.bind_ip, port);
            match RunningServer::start(addr, Rendezvous::new(Config::default())).await {
                Ok(s) => {
                    if i > 0 {
                        self.notice(
                            Level::Warning,
                            format!(
                                "Port {wanted} is busy (another program uses it), so the jam uses port {port}. Share the address shown here."
                            ),
                        );
                    }
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => {
                    return Err(format!("Cannot listen on port {port}: {e}."));
                }
            }
        }
        Err(format!(
            "Ports {wanted} to {} are all busy ({}). Choose another listen port in Settings.",
            wanted.saturating_add(PORT_ATTEMPTS - 1),
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    async fn start_advert(&mut self) {
        if !self.bundled() || !self.settings.advertise || self.advertiser.is_some() {
            return;
        }
        let (Some(server), Some(code)) = (&self.server, self.view.borrow().code.clone()) else {
            return;
        };
        let cfg = lan::AdvertiseConfig {
            interfaces: if self.settings.mdns_interfaces.is_empty() {
                lan::InterfaceChoice::DefaultLan
            } else {
                lan::InterfaceChoice::Named(self.settings.mdns_interfaces.clone())
            },
            port: server.addr.port(),
            base_path: "/".into(),
            name: self.settings.display_name.clone(),
            code: self.settings.open_jam.then_some(code),
            peers: (
                self.view.borrow().connected(),
                self.settings.max_peers as usize,
            ),
        };
        match tokio::task::spawn_blocking(move || lan::Advertiser::start(cfg)).await {
            Ok(Ok(a)) => {
                self.advertiser = Some(a);
                self.view.send_modify(|v| v.advertised = true);
            }
            Ok(Err(e)) => self.notice(
                Level::Warning,
                format!("Not announced on the LAN ({e}); joiners can still type the address."),
            ),
            Err(_) => {}
        }
    }

    async fn stop_advert(&mut self) {
        if let Some(a) = self.advertiser.take() {
            // Goodbye packets, so LAN browsers drop the jam at once.
            let _ = tokio::task::spawn_blocking(move || a.stop()).await;
        }
        self.view.send_modify(|v| v.advertised = false);
    }

    async fn stop_host(&mut self) {
        self.stop_advert().await;
        self.events = None;
        if let Some(h) = self.host.take() {
            h.stop().await;
        }
        // After the host stopped: its last events are the Note Offs of what
        // peers left sounding here, and the outputs play them before closing.
        if self.ports_to.is_none() {
            self.close_local_midi().await;
        }
        self.view.send_modify(|v| {
            v.peers.clear();
            v.code = None;
            v.join_link = None;
            v.qr_svg = None;
        });
    }

    async fn stop_server(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop().await;
        }
        self.view.send_modify(|v| v.port = None);
    }

    fn on_event(&mut self, e: Option<HostEvent>) {
        let Some(e) = e else {
            // The host's event stream ended: it stopped by itself.
            self.events = None;
            return;
        };
        match e {
            HostEvent::Hosting {
                code,
                urls,
                renewed,
            } => {
                if renewed {
                    self.notice(
                        Level::Warning,
                        format!("The rendezvous lost the session; the new code is {code}."),
                    );
                }
                let link = urls.first().map(|u| join_link(u, &code));
                let svg = link.as_deref().and_then(qr_svg);
                self.view.send_modify(|v| {
                    v.phase = Phase::Hosting;
                    v.code = Some(code.clone());
                    v.urls = urls;
                    v.join_link = link;
                    v.qr_svg = svg;
                });
                if self.settings.open_jam {
                    if let Some(a) = self.advertiser.as_mut() {
                        let _ = a.set_open_code(Some(code));
                    }
                }
            }
            HostEvent::Peer(ev) => {
                let left = matches!(ev, RegistryEvent::Left { .. });
                let peer = ev.peer().clone();
                self.view.send_modify(|v| {
                    let at = v.peers.iter().position(|p| p.id == peer.id);
                    match (left, at) {
                        (true, Some(i)) => {
                            v.peers.remove(i);
                        }
                        (true, None) => {}
                        (false, Some(i)) => v.peers[i] = peer,
                        (false, None) => v.peers.push(peer),
                    }
                });
                let connected = self.view.borrow().connected();
                let max = self.settings.max_peers as usize;
                if let Some(a) = self.advertiser.as_mut() {
                    let _ = a.set_peers(connected, max);
                }
            }
            HostEvent::Chat { .. } => {}
            HostEvent::Error { message } => self.notice(Level::Warning, message),
            HostEvent::Stopped => {
                self.events = None;
            }
        }
    }
}

/// Waits for the next host event; never resolves while there is no host.
async fn next_event(rx: &mut Option<broadcast::Receiver<HostEvent>>) -> Option<HostEvent> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match r.recv().await {
            Ok(e) => return Some(e),
            // Skipped events only delay the view; the next one carries the
            // peer's whole row.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// The link the QR code carries: the rendezvous URL with the code, which a
/// phone opens and a join page (or a person) reads the code from.
pub fn join_link(url: &str, code: &str) -> String {
    format!("{}/?code={code}", url.trim_end_matches('/'))
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
    fn a_name_change_restarts_the_host_but_keeps_the_port() {
        let a = Settings::default();
        let b = Settings {
            display_name: "Other".into(),
            ..a.clone()
        };
        assert_eq!(needs_restart(&a, &b), (false, true, true));
        let c = Settings {
            listen_port: 9000,
            ..a.clone()
        };
        assert_eq!(needs_restart(&a, &c), (true, true, true));
        let d = Settings {
            open_jam: true,
            ..a.clone()
        };
        assert_eq!(needs_restart(&a, &d), (false, false, true));
        assert_eq!(needs_restart(&a, &a), (false, false, false));
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_join_link() {
        let link = join_link("http://192.168.1.20:8787/", "AB2C");
        assert_eq!(link, "http://192.168.1.20:8787/?code=AB2C");
        let svg = qr_svg(&link).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(qr_svg(&"x".repeat(10_000)).is_none());
    }
}
