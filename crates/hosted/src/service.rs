//! The running hosted jam: one supervisor task owns the bundled rendezvous
//! (or the remote one's URL), the jam host, the LAN advert and the MIDI
//! ports. Front ends hold a [`Hosted`] handle: they read the view, follow the
//! events, and send intents (kick, mute, apply a new config, stop) through
//! one bounded queue, so only the supervisor changes anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jam::host::{Host, HostConfig, HostEvent, LiveConfig};
use jam::registry::RegistryEvent;
use jam::signal::Target;
use rdv::table::TableLimits;
use rdv::{Config, Rendezvous, RunningServer};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::{HostedConfig, Impact, RendezvousChoice};
use crate::local_midi::{self, JamPorts, LocalMidi};
use crate::view::{join_link, qr_svg, HostedEvent, HostedView, Level, Notice, PeerMidiView, Phase};

mod lan_live;

/// How often the MIDI activity lights are read.
const ACTIVITY_EVERY: Duration = Duration::from_millis(500);

/// Port messages (unplugged, back) waiting for the supervisor.
const PORT_NOTICES: usize = 32;

/// The newest status-line messages kept in the view.
const MAX_NOTICES: usize = 8;

/// Events kept for a slow reader before it skips (and is told so).
const EVENTS: usize = 1024;

/// Intents waiting for the supervisor.
const COMMANDS: usize = 64;

/// How long the first `Hosting` event (the code) may take after the host
/// started: it is sent before `Host::start` returns, so this only bounds a
/// broken host.
const FIRST_EVENT: Duration = Duration::from_secs(2);

/// Joiner slots of the bundled rendezvous for a jam of `max_peers`: never
/// fewer than the jam takes (the rendezvous's own default of 8 refused a
/// jam's ninth joiner), and never below that default, so that a small jam
/// refuses an extra joiner itself, with the reason MidiEditor shows
/// (`joinrejected`: "the jam is full"), rather than with the rendezvous's 503.
fn rendezvous_slots(max_peers: usize) -> usize {
    max_peers.max(TableLimits::default().max_peers)
}

/// Whether two handles are the same jam's ports.
fn same(a: &Arc<dyn JamPorts>, b: &Arc<dyn JamPorts>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

enum Cmd {
    Kick(u64, String),
    Chat(String),
    Mute(u64, bool),
    Panic,
    Record(bool),
    Notice(Level, String),
    Apply(Box<HostedConfig>, oneshot::Sender<Impact>),
    /// Connect the MIDI ports to this jam (`None`: back to our own).
    RoutePorts(Option<Arc<dyn JamPorts>>, oneshot::Sender<()>),
    /// Give the ports back to our own jam if they are connected to this one.
    ReturnPorts(Arc<dyn JamPorts>, oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// A handle to the running hosted jam.
pub struct Hosted {
    cmd: mpsc::Sender<Cmd>,
    view: watch::Receiver<HostedView>,
    events: broadcast::Sender<HostedEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Hosted {
    /// Starts hosting with `cfg` in the background (inside a Tokio
    /// runtime). The first view (phase `Starting`) is there at once and the
    /// code follows. The receiver gets every event from the very first (the
    /// host's `Hosting` with the code); [`Hosted::events`] gives more.
    pub fn start(cfg: HostedConfig) -> (Hosted, broadcast::Receiver<HostedEvent>) {
        let (view_tx, view_rx) = watch::channel(HostedView {
            max_peers: cfg.peer_limit(),
            bundled: cfg.rendezvous.is_bundled(),
            song: cfg.song.as_ref().map(|s| s.view()),
            ..HostedView::default()
        });
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS);
        let (events, first) = broadcast::channel(EVENTS);
        let (port_notices, port_notices_rx) = mpsc::channel(PORT_NOTICES);
        let sup = Supervisor {
            cfg,
            view: view_tx,
            events: events.clone(),
            server: None,
            host: None,
            host_events: None,
            advertiser: None,
            lan_live: lan_live::LanLive::default(),
            notice_seq: 0,
            local_midi: None,
            ports_to: None,
            port_notices,
            last_code: None,
        };
        let task = tokio::spawn(sup.run(cmd_rx, port_notices_rx));
        (
            Hosted {
                cmd: cmd_tx,
                view: view_rx,
                events,
                task,
            },
            first,
        )
    }

    /// A receiver of every new view.
    pub fn subscribe(&self) -> watch::Receiver<HostedView> {
        self.view.clone()
    }

    /// The current view.
    pub fn view(&self) -> HostedView {
        self.view.borrow().clone()
    }

    /// A receiver of every event from now on. A slow reader skips events
    /// (and sees `Lagged`) rather than slow the jam down.
    pub fn events(&self) -> broadcast::Receiver<HostedEvent> {
        self.events.subscribe()
    }

    /// Drops a peer from the jam, telling it `reason`.
    pub async fn kick(&self, peer: u64, reason: &str) {
        let _ = self.cmd.send(Cmd::Kick(peer, reason.to_owned())).await;
    }

    /// Sends a chat message from the host to every peer.
    pub async fn chat(&self, text: &str) {
        let _ = self.cmd.send(Cmd::Chat(text.to_owned())).await;
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

    /// The Record switch: live MIDI played by peers is written into the
    /// shared song (see `jam::host::record`); kept across a host restart.
    /// Without a shared song it stays off.
    pub async fn set_record(&self, on: bool) {
        let _ = self.cmd.send(Cmd::Record(on)).await;
    }

    /// Puts a front end's own message on the status line (and out as a
    /// [`HostedEvent::Notice`]). Never waits: when the command queue is full
    /// the message is dropped, as a status line would soon hide it anyway.
    pub fn notice(&self, level: Level, message: impl Into<String>) {
        let _ = self.cmd.try_send(Cmd::Notice(level, message.into()));
    }

    /// Connects this computer's MIDI ports to another jam (one the app
    /// joined), or with `None` back to this one. This jam keeps hosting
    /// meanwhile, without them.
    pub async fn route_ports(&self, ports: Option<Arc<dyn JamPorts>>) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::RoutePorts(ports, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Gives the ports back to this jam if they are still connected to
    /// `ports` (a joined jam that ended), and not to a newer one.
    pub async fn return_ports(&self, ports: Arc<dyn JamPorts>) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::ReturnPorts(ports, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Moves the jam to `cfg`, doing what [`Impact::between`] the current
    /// config and `cfg` says: live changes keep the code and the peers.
    /// Returns when the change is made (the code may still be on its way).
    pub async fn apply(&self, cfg: HostedConfig) -> Impact {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Apply(Box::new(cfg), tx)).await.is_ok() {
            if let Ok(i) = rx.await {
                return i;
            }
        }
        Impact::default()
    }

    /// Stops: peers told, session removed, advert withdrawn, ports closed
    /// after they played their last Note Offs. The host's last events
    /// (`Stopped` included) reach the event receivers before this returns.
    pub async fn stop(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

struct Supervisor {
    cfg: HostedConfig,
    view: watch::Sender<HostedView>,
    events: broadcast::Sender<HostedEvent>,
    server: Option<RunningServer>,
    host: Option<Host>,
    host_events: Option<broadcast::Receiver<HostEvent>>,
    advertiser: Option<lan::Advertiser>,
    /// MidiEditor's LAN Live: the TCP port and the datagram.
    lan_live: lan_live::LanLive,
    notice_seq: u64,
    /// This computer's MIDI ports, connected while hosting (or to
    /// `ports_to`).
    local_midi: Option<LocalMidi>,
    /// A joined jam the ports play in instead of ours.
    ports_to: Option<Arc<dyn JamPorts>>,
    port_notices: local_midi::Notices,
    /// The code of the jam before its host last stopped: a restart on the
    /// bundled rendezvous (another song, another name) asks for it again,
    /// so the code people were told keeps working.
    last_code: Option<jam::types::Code>,
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
            let retry = self.cfg.retry_every.filter(|_| failed);
            let midi = self.cfg.midi.is_some() && !failed;
            tokio::select! {
                c = cmd.recv() => match c {
                    Some(Cmd::Stop(done)) => {
                        self.shut_down().await;
                        self.view.send_modify(|v| v.phase = Phase::Stopped);
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.handle(c).await,
                    None => {
                        self.shut_down().await;
                        return;
                    }
                },
                e = next_event(&mut self.host_events) => self.on_event(e),
                Some((level, message)) = port_notices.recv() => self.notice(level, message),
                () = sleep_or_never(retry) => self.start_all().await,
                _ = activity.tick(), if midi => self.refresh_midi().await,
            }
        }
    }

    async fn handle(&mut self, c: Cmd) {
        match c {
            Cmd::Kick(id, reason) => {
                if let Some(h) = &self.host {
                    h.kick(jam::protocol::PeerId(id), &reason).await;
                }
            }
            Cmd::Chat(text) => {
                if let Some(h) = &self.host {
                    h.chat(&text).await;
                }
            }
            Cmd::Mute(id, muted) => {
                if let Some(h) = &self.host {
                    h.clone_handle()
                        .set_muted(jam::protocol::PeerId(id), muted)
                        .await;
                }
                self.refresh_midi().await;
            }
            Cmd::Panic => {
                if let Some(h) = &self.host {
                    h.clone_handle().panic().await;
                }
                if let Some(j) = &self.ports_to {
                    j.panic();
                }
                self.notice(Level::Info, "All notes released (panic).");
            }
            Cmd::Record(on) => {
                let on = on && self.cfg.song.is_some();
                if let Some(h) = &self.host {
                    h.clone_handle().set_record(on).await;
                }
                self.view.send_modify(|v| v.recording = on);
            }
            Cmd::Notice(level, message) => self.notice(level, message),
            Cmd::Apply(new, done) => {
                let impact = self.apply(*new).await;
                let _ = done.send(impact);
            }
            Cmd::RoutePorts(to, done) => {
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
            Cmd::ReturnPorts(from, done) => {
                if self.ports_to.as_ref().is_some_and(|p| same(p, &from)) {
                    self.ports_to = None;
                    self.start_local_midi().await;
                    self.notice(Level::Info, "Your MIDI ports are back in your own jam.");
                }
                let _ = done.send(());
            }
            Cmd::Stop(_) => {}
        }
    }

    async fn shut_down(&mut self) {
        self.stop_host(false).await;
        self.stop_server().await;
    }

    /// Sends `e` to the event receivers, if there are any (a window that
    /// only reads the view costs no clone per event).
    fn emit(&self, e: impl FnOnce() -> HostedEvent) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(e());
        }
    }

    /// Reads the relay's per-peer counters and open channels into the
    /// view's MIDI lights (one engine round trip, at most 63 rows).
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
                    channel_open: p.routed,
                })
            })
            .collect();
        if lights != old {
            self.view.send_modify(|v| v.midi = lights);
        }
    }

    /// (Re)connects the MIDI ports the config names to the jam they play
    /// in: a joined one, or the running host.
    async fn start_local_midi(&mut self) {
        self.close_local_midi().await;
        let Some(choice) = &self.cfg.midi else { return };
        let jam: Arc<dyn JamPorts> = match (&self.ports_to, &self.host) {
            (Some(to), _) => to.clone(),
            (None, Some(h)) => Arc::new(h.clone_handle()),
            (None, None) => return,
        };
        self.local_midi = Some(local_midi::start(
            choice.system.clone(),
            jam,
            &choice.input,
            &choice.output,
            self.port_notices.clone(),
        ));
    }

    /// Closes the ports after they played what was queued for them.
    async fn close_local_midi(&mut self) {
        if let Some(l) = self.local_midi.take() {
            l.close().await;
        }
    }

    fn notice(&mut self, level: Level, message: impl Into<String>) {
        let n = self.push_notice(level, message.into());
        self.emit(|| HostedEvent::Notice(n));
    }

    /// Adds a notice to the view only (the host's errors, which the event
    /// receivers already get as they are).
    fn push_notice(&mut self, level: Level, message: String) -> Notice {
        // The log keeps what the status line said: a user's log file (and
        // the packaged-app test, which has no window to read) sees it.
        tracing::info!("status line ({level:?}): {message}");
        self.notice_seq += 1;
        let n = Notice {
            level,
            message,
            seq: self.notice_seq,
        };
        let shown = n.clone();
        self.view.send_modify(|v| {
            v.notices.push(shown);
            if v.notices.len() > MAX_NOTICES {
                let extra = v.notices.len() - MAX_NOTICES;
                v.notices.drain(..extra);
            }
        });
        n
    }

    async fn apply(&mut self, new: HostedConfig) -> Impact {
        let impact = Impact::between(&self.cfg, &new);
        // Peers are told to come back only when they can: the same bundled
        // rendezvous (same address), which gives the restarted host its
        // code again (`keep_code`).
        let same_code = !impact.rendezvous && new.rendezvous.is_bundled();
        self.cfg = new;
        if impact.advert {
            self.stop_advert().await;
        }
        if impact.drops_peers() {
            self.stop_host(same_code).await;
        }
        if impact.rendezvous {
            self.stop_server().await;
        }
        if impact.drops_peers() || self.host.is_none() {
            // A jam that failed to start tries again with the new config.
            self.start_all().await;
            return impact;
        }
        if impact.live {
            self.apply_live().await;
        }
        if impact.advert {
            self.start_advert().await;
        }
        if impact.midi {
            self.start_local_midi().await;
        }
        impact
    }

    /// The peer limit and WebRTC settings, into the running host and the
    /// bundled rendezvous's slot cap; the code and the peers stay.
    async fn apply_live(&mut self) {
        let max = self.cfg.peer_limit();
        if let Some(s) = &self.server {
            s.rdv.set_max_peers(rendezvous_slots(max));
            // The join page's next load uses the new STUN/TURN list too.
            s.rdv
                .config()
                .join_ice_servers
                .set(self.cfg.ice_servers.iter().map(web_ice_server).collect());
        }
        if let Some(h) = &self.host {
            h.clone_handle()
                .reconfigure(LiveConfig {
                    max_peers: max,
                    rtc: self.cfg.rtc(),
                })
                .await;
        }
        self.view.send_modify(|v| v.max_peers = max);
        let connected = self.view.borrow().connected();
        if let Some(a) = self.advertiser.as_mut() {
            let _ = a.set_peers(connected, max);
        }
    }

    /// Binds the bundled rendezvous (moving up from a busy port), then hosts.
    async fn start_all(&mut self) {
        self.view.send_modify(|v| {
            v.phase = Phase::Starting;
            v.bundled = self.cfg.rendezvous.is_bundled();
            v.max_peers = self.cfg.peer_limit();
        });
        let (target, urls) = match self.cfg.rendezvous.clone() {
            RendezvousChoice::Bundled {
                bind,
                port,
                port_attempts,
            } => {
                if self.server.is_none() {
                    match self.bind(bind, port, port_attempts).await {
                        Ok(s) => self.server = Some(s),
                        Err(message) => {
                            self.failed(message);
                            return;
                        }
                    }
                }
                let Some(server) = &self.server else { return };
                // A rendezvous kept across a host restart follows the limit.
                server
                    .rdv
                    .set_max_peers(rendezvous_slots(self.cfg.peer_limit()));
                (
                    Target::bundled(server.rdv.clone()),
                    jam::net::share_urls(server.addr, ""),
                )
            }
            RendezvousChoice::Remote(url) => {
                let base = url.to_string();
                (Target::Remote(url), vec![base])
            }
        };
        let cfg = HostConfig {
            display_name: self.cfg.name.clone(),
            machine_id: self.cfg.machine_id.clone(),
            session_id: {
                self.lan_live.session_id = format!("jam-{}", jam::host::new_machine_id());
                self.lan_live.session_id.clone()
            },
            max_peers: self.cfg.peer_limit(),
            rtc: self.cfg.rtc(),
            keep_code: if matches!(target, Target::Bundled(_)) {
                self.last_code
            } else {
                None
            },
            target,
            share_urls: urls.clone(),
        };
        match Host::start_with_song(cfg, self.cfg.song.clone()).await {
            Ok((host, events)) => {
                self.host = Some(host);
                self.host_events = Some(events);
                let port = self.server.as_ref().map(|s| s.addr.port());
                let song = self.cfg.song.as_ref().map(|s| s.view());
                let recording = self.view.borrow().recording && song.is_some();
                if recording {
                    if let Some(h) = &self.host {
                        h.clone_handle().set_record(true).await;
                    }
                }
                self.view.send_modify(|v| {
                    v.recording = recording;
                    v.urls = urls;
                    v.port = port;
                    v.peers.clear();
                    v.song = song;
                });
                if self.ports_to.is_none() {
                    self.start_local_midi().await;
                }
                self.start_lan_tcp().await;
                // The code arrives as the first event; the advert needs it.
                if self.first_event_is_hosting().await {
                    self.start_advert().await;
                }
            }
            Err(e) => {
                let where_ = match &self.cfg.rendezvous {
                    RendezvousChoice::Bundled { .. } => "the bundled rendezvous".to_owned(),
                    RendezvousChoice::Remote(url) => url.to_string(),
                };
                self.failed(format!("Cannot host at {where_}: {e}."));
            }
        }
    }

    /// Could not host: the reason on the status line (and whether it is
    /// tried again), phase `Failed`.
    fn failed(&mut self, message: String) {
        let message = if self.cfg.retry_every.is_some() {
            format!("{message} Trying again in a few seconds.")
        } else {
            message
        };
        self.notice(Level::Error, message);
        self.view.send_modify(|v| {
            v.phase = Phase::Failed;
            v.code = None;
            v.join_link = None;
            v.qr_svg = None;
        });
    }

    /// Handles the `Hosting` event the host sends first, so the view has
    /// the code before anything else happens.
    async fn first_event_is_hosting(&mut self) -> bool {
        let Some(rx) = self.host_events.as_mut() else {
            return false;
        };
        let Ok(Ok(e)) = tokio::time::timeout(FIRST_EVENT, rx.recv()).await else {
            return false;
        };
        let hosting = matches!(e, HostEvent::Hosting { .. });
        self.on_event(Some(e));
        hosting
    }

    /// The bundled rendezvous on `bind`:`port`, or on one of the ports after
    /// it when that is busy, with [`rendezvous_slots`] joiner slots.
    async fn bind(
        &mut self,
        bind: std::net::IpAddr,
        wanted: u16,
        attempts: u16,
    ) -> Result<RunningServer, String> {
        let max_peers = rendezvous_slots(self.cfg.peer_limit());
        let defaults = TableLimits::default();
        let config = Config {
            table: TableLimits {
                max_peers,
                max_records_per_session: defaults
                    .max_records_per_session
                    .max(max_peers.saturating_mul(4)),
                ..defaults
            },
            join_ice_servers: rdv::join_page::JoinIce::new(
                self.cfg.ice_servers.iter().map(web_ice_server).collect(),
            ),
            ..Config::default()
        };
        let attempts = attempts.max(1);
        let mut last = None;
        for i in 0..attempts {
            let Some(port) = wanted.checked_add(i) else {
                break;
            };
            let addr = SocketAddr::new(bind, port);
            match RunningServer::start(addr, Rendezvous::new(config.clone())).await {
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
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts > 1 => {
                    last = Some(e)
                }
                Err(e) => return Err(format!("Cannot listen on {addr}: {e}.")),
            }
        }
        Err(format!(
            "Ports {wanted} to {} are all busy ({}). Choose another listen port in Settings.",
            wanted.saturating_add(attempts - 1),
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    async fn start_advert(&mut self) {
        self.start_announcer();
        if self.lan_live.stun.is_none() {
            self.start_stun().await;
        }
        if !self.cfg.advertised() || self.advertiser.is_some() {
            return;
        }
        let (Some(server), Some(code)) = (&self.server, self.view.borrow().code.clone()) else {
            return;
        };
        let cfg = lan::AdvertiseConfig {
            interfaces: self.cfg.interfaces(),
            port: server.addr.port(),
            base_path: "/".into(),
            name: self.cfg.name.clone(),
            code: self.cfg.open_jam.then_some(code),
            peers: (self.view.borrow().connected(), self.cfg.peer_limit()),
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
        self.stop_announcer();
        if let Some(a) = self.advertiser.take() {
            // Goodbye packets, so LAN browsers drop the jam at once.
            let _ = tokio::task::spawn_blocking(move || a.stop()).await;
        }
        self.view.send_modify(|v| v.advertised = false);
    }

    /// Stops the jam host; `restarting`: it comes back at once under the
    /// same code, and its peers are told so ([`Host::stop_for_restart`]).
    async fn stop_host(&mut self, restarting: bool) {
        self.stop_advert().await;
        let rest = self.host_events.take();
        if let Some(h) = self.host.take() {
            if restarting {
                h.stop_for_restart().await;
            } else {
                h.stop().await;
            }
        }
        // The host's last events (peers told and gone, `Stopped`) go to the
        // event receivers; the view is cleared below anyway.
        if let Some(mut rx) = rest {
            loop {
                match rx.try_recv() {
                    Ok(e) => self.emit(|| HostedEvent::Host(e)),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        }
        // After the host stopped: its last events are the Note Offs of what
        // peers left sounding here, and the outputs play them before closing.
        if self.ports_to.is_none() {
            self.close_local_midi().await;
        }
        self.lan_live.tcp = None;
        if let Some(code) = self.view.borrow().code.as_deref() {
            self.last_code = code.parse().ok();
        }
        self.view.send_modify(|v| {
            v.peers.clear();
            v.midi.clear();
            v.lan_tcp_port = None;
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
            self.host_events = None;
            return;
        };
        self.emit(|| HostedEvent::Host(e.clone()));
        match e {
            HostEvent::Hosting {
                code,
                urls,
                renewed,
            } => {
                if renewed {
                    let same = self.view.borrow().code.as_deref() == Some(code.as_str());
                    self.push_notice(
                        Level::Warning,
                        if same {
                            format!("The rendezvous lost the session; it is open again under the same code {code}.")
                        } else {
                            format!("The rendezvous lost the session; the new code is {code}.")
                        },
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
                if self.cfg.open_jam {
                    if let Some(a) = self.advertiser.as_mut() {
                        let _ = a.set_open_code(Some(code));
                    }
                }
                // A renewed code goes into the datagram too.
                if renewed && self.lan_live.announcer.is_some() {
                    self.start_announcer();
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
                if let Some(a) = self.advertiser.as_mut() {
                    let connected = self.view.borrow().connected();
                    let _ = a.set_peers(connected, self.cfg.peer_limit());
                }
            }
            HostEvent::Song(song) => self.view.send_modify(|v| v.song = Some(song)),
            HostEvent::Chat { .. } => {}
            HostEvent::Error { message } => {
                self.push_notice(Level::Warning, message);
            }
            HostEvent::Stopped => {
                self.host_events = None;
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

/// Sleeps `d`, or forever without one.
async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// The host's ICE server as the browser join page hands it to
/// `RTCPeerConnection` (the page must use the same STUN/TURN as the host).
fn web_ice_server(s: &jam::rtc::IceServer) -> rdv::join_page::WebIceServer {
    rdv::join_page::WebIceServer {
        urls: s.urls.clone(),
        username: s.username.clone(),
        credential: s.credential.clone(),
    }
}
