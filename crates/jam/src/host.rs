//! A running jam host: registers a session, answers every joiner with its
//! own PeerConnection, speaks MidiEditor's peer protocol on each, and keeps
//! the peer list.
//!
//! Shape: one engine task owns the protocol state machine ([`Jam`]) and the
//! [`Registry`]; everything else (the signalling loop, one answering task per
//! joiner, one forwarder and one writer per link, the stats poller) talks to
//! it through one bounded command queue. Only the engine mutates state, so
//! there are no locks to get wrong, and the pure parts stay testable alone.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use types::{Code, Millis};

use crate::hub::{HubNote, Sender, SongShare, SongView};
use crate::protocol::{Action, ClientKind, Jam, JamConfig, LeaveReason, PeerEvent, PeerId};
use crate::registry::{Registry, RegistryEvent};
use crate::rtc::{self, LinkEvent, LinkState, RtcConfig};
use crate::signal::{HostSession, SignalError, Signaller, Target};

/// The data channel MidiEditor joiners open and speak framed JSON on.
pub const MIDIEDITOR_CHANNEL: &str = "midieditor";
/// The data channel our own joiners open for live MIDI (see
/// [`HostControl::send_midi`] and `docs/midi-frames.md`).
pub const MIDI_CHANNEL: &str = "midi";

mod link;
mod live;
pub mod record;
pub mod tcp;
use link::Link;
pub mod stream;
pub use live::{
    MidiEvent, MidiStats, PeerMidi, SendMidiError, MIDI_EVENTS, MIDI_QUEUE, RELAY_BUCKETS_US,
    RELAY_SLOW_NS,
};

/// Joiners being answered at once; more offers wait for the next round. A
/// flood of offers cannot start unbounded PeerConnections.
const MAX_ANSWERING: usize = 16;
/// Frames queued for one peer; a peer whose queue fills is stalled and is
/// dropped rather than let memory grow.
const PEER_QUEUE: usize = 256;
/// How often link statistics (RTT, route, bytes) are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// How often the protocol's timers (heartbeats, silence) are checked.
const TICK_EVERY: Duration = Duration::from_millis(500);
/// Longest time from our answer being posted to the joiner's `midieditor`
/// channel opening. A joiner polls for the answer (MidiEditor every ~1 s)
/// and then connects in tens of milliseconds, through TURN in a few
/// seconds; an offer whose peer never gets that far (a dead or forged
/// offer) would otherwise hold its rendezvous slot and its row until the
/// ICE agent gave up, or for the offer's whole lifetime.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time from the channel opening to the joiner's `hello`. Every
/// client we know sends it at once (MidiEditor within ~20 ms); the
/// protocol's default of 10 s would let a mute stranger hold a pending slot
/// twice as long.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a host needs to start.
#[derive(Clone)]
pub struct HostConfig {
    pub display_name: String,
    /// Sent as `presenterMachineId`; generated when empty.
    pub machine_id: String,
    /// The `sessionId` registered at the rendezvous (MidiEditor uses its
    /// file's id; a jam has no file, so any stable string will do).
    pub session_id: String,
    pub max_peers: usize,
    pub rtc: RtcConfig,
    pub target: Target,
    /// The rendezvous URLs to tell people (shown with the code).
    pub share_urls: Vec<String>,
    /// The code to host under again, on the bundled rendezvous, when no
    /// live session holds it: a jam restarted for another song or name
    /// keeps the code its people were told. `None`: a fresh code.
    pub keep_code: Option<Code>,
}

/// What a running host can change without dropping anyone (see
/// [`HostControl::reconfigure`]): peers already in keep their connection,
/// the next joiner is answered with these values. Everything else in
/// [`HostConfig`] (name, session, rendezvous) is fixed for a host's life.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub max_peers: usize,
    pub rtc: RtcConfig,
}

/// Channels waiting for a `hello` beyond the peer limit. Up to a whole jam's
/// worth of joiners may open their channels in the same millisecond; their
/// hellos are queued behind the opens, so fewer pending slots than peers
/// would refuse them.
fn max_pending(max_peers: usize) -> usize {
    max_peers + 4
}

/// What a host reports, in order. Serialised one JSON object per line by
/// `midi-rdv host --json`.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    /// Hosting under `code`; `renewed` when the rendezvous lost the previous
    /// session and this is its replacement.
    Hosting {
        code: String,
        urls: Vec<String>,
        renewed: bool,
    },
    /// The peer list changed.
    Peer(RegistryEvent),
    /// A chat message relayed in the jam.
    Chat { display_name: String, text: String },
    /// Something went wrong that the user may want to know; hosting goes on.
    Error { message: String },
    /// The shared song changed (an edit was applied and saved).
    Song(SongView),
    /// The host stopped.
    Stopped,
}

impl HostEvent {
    /// The JSON-lines form: `{"event":"hosting",...}`, `{"event":"peerJoined",
    /// "peer":{...}}`, `{"event":"chat",...}`, `{"event":"error",...}`,
    /// `{"event":"stopped"}`.
    pub fn to_json(&self) -> Value {
        match self {
            HostEvent::Hosting {
                code,
                urls,
                renewed,
            } => json!({"event": "hosting", "code": code, "urls": urls, "renewed": renewed}),
            HostEvent::Peer(e) => {
                let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
                if let Some(kind) = v.get("event").and_then(Value::as_str) {
                    let mut name = String::from("peer");
                    let mut chars = kind.chars();
                    if let Some(first) = chars.next() {
                        name.push(first.to_ascii_uppercase());
                        name.extend(chars);
                    }
                    v["event"] = Value::String(name);
                }
                v
            }
            HostEvent::Chat { display_name, text } => {
                json!({"event": "chat", "displayName": display_name, "text": text})
            }
            HostEvent::Error { message } => json!({"event": "error", "message": message}),
            HostEvent::Song(v) => json!({"event": "song", "song": v}),
            HostEvent::Stopped => json!({"event": "stopped"}),
        }
    }
}

enum Cmd {
    /// A joiner's offer is being answered: show it as connecting.
    Answering {
        peer: PeerId,
        joiner_id: String,
    },
    /// Answering failed before a link existed.
    AnswerFailed {
        peer: PeerId,
        why: String,
    },
    /// The answer is posted (or a TCP joiner connected); the link is ours.
    NewLink {
        peer: PeerId,
        link: Link,
    },
    Link {
        peer: PeerId,
        event: LinkEvent,
    },
    Stats {
        peer: PeerId,
        stats: rtc::LinkStats,
    },
    Kick {
        peer: PeerId,
        reason: String,
    },
    Chat {
        text: String,
    },
    /// Live MIDI: local input, mutes, panic, activity.
    Midi(live::MidiCmd),
    /// The Record switch (see [`record`]).
    Record(bool),
    Reconfigure {
        live: LiveConfig,
        done: oneshot::Sender<()>,
    },
    Stop {
        done: oneshot::Sender<()>,
        /// The same jam comes back at once under the same code (see
        /// [`Host::stop_for_restart`]).
        restarting: bool,
    },
}

/// A handle to a running host.
pub struct Host {
    cmd: mpsc::Sender<Cmd>,
    events: broadcast::Sender<HostEvent>,
    midi: live::MidiShared,
    engine: JoinHandle<()>,
}

impl Host {
    /// Starts hosting: checks the rendezvous, registers a session, and
    /// answers joiners until [`Host::stop`]. Returns the host and a receiver
    /// whose first event is `Hosting` with the code.
    pub async fn start(
        cfg: HostConfig,
    ) -> Result<(Host, broadcast::Receiver<HostEvent>), SignalError> {
        Host::start_with_song(cfg, None).await
    }

    /// [`Host::start`] as a session hub: every MidiEditor joiner receives
    /// `song` after its welcome, and edits are applied to it and relayed
    /// (see [`crate::hub`]).
    pub async fn start_with_song(
        mut cfg: HostConfig,
        song: Option<SongShare>,
    ) -> Result<(Host, broadcast::Receiver<HostEvent>), SignalError> {
        if cfg.machine_id.is_empty() {
            cfg.machine_id = new_machine_id();
        }
        let signaller = Signaller::new(cfg.target.clone());
        signaller.health().await?;
        let session = signaller
            .open(&cfg.session_id, &cfg.display_name, cfg.keep_code)
            .await?;

        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (events, first_rx) = broadcast::channel(1024);
        let _ = events.send(HostEvent::Hosting {
            code: session.code.to_string(),
            urls: cfg.share_urls.clone(),
            renewed: false,
        });
        let jam = Jam::new(JamConfig {
            max_peers: cfg.max_peers,
            max_pending: max_pending(cfg.max_peers),
            host_machine_id: cfg.machine_id.clone(),
            host_display_name: cfg.display_name.clone(),
            hello_timeout: HELLO_TIMEOUT,
            ..JamConfig::default()
        });
        let registry = Registry::for_jam(jam.config());
        let midi = live::MidiShared::new();
        let (session_tx, session_rx) = tokio::sync::watch::channel(session);
        let (rtc_tx, rtc_rx) = tokio::sync::watch::channel(cfg.rtc.clone());
        let signalling = tokio::spawn(signalling_loop(
            signaller.clone(),
            cfg.clone(),
            rtc_rx,
            session_tx,
            cmd_tx.clone(),
            events.clone(),
        ));
        let engine = Engine {
            jam,
            joiner_ids: HashMap::new(),
            signaller,
            session: session_rx,
            rtc: rtc_tx,
            registry,
            links: HashMap::new(),
            events: events.clone(),
            cmd: cmd_tx.clone(),
            origin: Instant::now(),
            live: live::Live::new(midi.clone()),
            hub: song,
            recording: None,
        };
        let task = tokio::spawn(engine.run(cmd_rx, signalling));
        Ok((
            Host {
                cmd: cmd_tx,
                events,
                midi,
                engine: task,
            },
            first_rx,
        ))
    }

    /// Another handle for sending commands (kick, chat) from elsewhere; it
    /// cannot stop the host.
    pub fn clone_handle(&self) -> HostControl {
        HostControl {
            cmd: self.cmd.clone(),
            midi: self.midi.clone(),
        }
    }

    /// Messages routed to the host's local MIDI output; see
    /// [`HostControl::midi_events`].
    pub fn midi_events(&self) -> broadcast::Receiver<MidiEvent> {
        self.midi.events_subscribe()
    }

    /// A receiver of every event from now on. Slow receivers skip events
    /// (and see a `Lagged` error) rather than slow the host down.
    pub fn subscribe(&self) -> broadcast::Receiver<HostEvent> {
        self.events.subscribe()
    }

    /// Drops a peer.
    pub async fn kick(&self, peer: PeerId, reason: &str) {
        self.clone_handle().kick(peer, reason).await;
    }

    /// Sends a chat message from the host to every peer.
    pub async fn chat(&self, text: &str) {
        self.clone_handle().chat(text).await;
    }

    /// Accepts MidiEditor LAN Live joiners over TCP on `addr` (port 0: any
    /// free one) into this same jam, at most `max_connections` at once
    /// (see [`tcp`]). Returns the bound address, whose port goes into the
    /// LAN announcement. Listening ends when the host stops.
    ///
    /// `admit` says which source addresses may connect at all: MidiEditor's
    /// LAN joiner needs no code at the TCP port, so the host lets in only
    /// the networks its announcement (which carries the code) reaches
    /// (`lan::LanSources`). Others are closed at accept, with a log line.
    pub async fn listen_lan_tcp(
        &self,
        addr: std::net::SocketAddr,
        max_connections: usize,
        admit: tcp::Admit,
    ) -> std::io::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(tcp::accept_loop(
            listener,
            self.cmd.clone(),
            max_connections,
            admit,
        ));
        Ok(bound)
    }

    /// Stops cleanly: peers are told and closed, the session is removed from
    /// the rendezvous (the bundled one at once; a remote one lapses).
    pub async fn stop(self) {
        self.stop_with(false).await;
    }

    /// Stops as [`stop`](Self::stop) does, telling the peers the jam comes
    /// back at once under the same code (another song or name on the same
    /// bundled rendezvous): the farewell chat says so, and `sessionEnded`
    /// carries `"restarting": true` (our extension; MidiEditor reads only
    /// the type), on which the join page and our joiner join again by
    /// themselves.
    pub async fn stop_for_restart(self) {
        self.stop_with(true).await;
    }

    async fn stop_with(self, restarting: bool) {
        let (done, wait) = oneshot::channel();
        if self.cmd.send(Cmd::Stop { done, restarting }).await.is_ok() {
            let _ = wait.await;
        }
        let _ = self.engine.await;
    }
}

/// Sends commands to a running host.
#[derive(Clone)]
pub struct HostControl {
    cmd: mpsc::Sender<Cmd>,
    midi: live::MidiShared,
}

impl HostControl {
    /// Drops a peer (a MidiEditor joiner sees its connection close).
    pub async fn kick(&self, peer: PeerId, reason: &str) {
        let _ = self
            .cmd
            .send(Cmd::Kick {
                peer,
                reason: reason.to_owned(),
            })
            .await;
    }

    /// Sends a chat message from the host to every peer.
    pub async fn chat(&self, text: &str) {
        let _ = self
            .cmd
            .send(Cmd::Chat {
                text: text.to_owned(),
            })
            .await;
    }

    /// Changes the peer limit and the WebRTC settings (STUN/TURN servers,
    /// gathering cap, addresses) while the jam runs: nobody is dropped and
    /// the code stays; every offer answered after this returns uses them.
    /// Peers above a lowered limit stay; only newcomers are refused.
    pub async fn reconfigure(&self, live: LiveConfig) {
        let (done, wait) = oneshot::channel();
        if self.cmd.send(Cmd::Reconfigure { live, done }).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// A random RFC 4122 version-4 UUID, the form MidiEditor uses for machineId.
pub fn new_machine_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

static NEXT_PEER: AtomicU64 = AtomicU64::new(1);

/// Registers, watches for offers, answers them, and registers again when the
/// rendezvous loses the session.
async fn signalling_loop(
    signaller: Signaller,
    cfg: HostConfig,
    rtc: tokio::sync::watch::Receiver<RtcConfig>,
    session_tx: tokio::sync::watch::Sender<HostSession>,
    cmd: mpsc::Sender<Cmd>,
    events: broadcast::Sender<HostEvent>,
) {
    let mut seen: HashSet<String> = HashSet::new();
    let answering = Arc::new(tokio::sync::Semaphore::new(MAX_ANSWERING));
    let mut failures: u32 = 0;
    loop {
        let session = session_tx.borrow().clone();
        let asked = Instant::now();
        match signaller.next_offers(&session, &seen).await {
            Ok(offers) => {
                failures = 0;
                // The bundled rendezvous waits until an offer comes; nothing
                // at once means it could not wait (its long-poll budget is
                // used up, or it is shutting down). Without a pause this
                // loop would spin a core and never yield to the runtime.
                if offers.is_empty() && asked.elapsed() < Duration::from_millis(50) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                for offer in offers {
                    // At most MAX_ANSWERING PeerConnections are being set up
                    // at once; further offers wait here for a free slot.
                    let Ok(permit) = answering.clone().acquire_owned().await else {
                        break;
                    };
                    // Bounded: a session holds a handful of live offers, and a
                    // joinerId can only come back after its offer lapsed.
                    if seen.len() >= 4096 {
                        seen.clear();
                    }
                    seen.insert(offer.joiner_id.clone());
                    let peer = PeerId(NEXT_PEER.fetch_add(1, Ordering::Relaxed));
                    let signaller = signaller.clone();
                    // Read per offer: the engine may have changed it.
                    let rtc_cfg = rtc.borrow().clone();
                    let cmd = cmd.clone();
                    let session = session.clone();
                    tokio::spawn(async move {
                        let _ = cmd
                            .send(Cmd::Answering {
                                peer,
                                joiner_id: offer.joiner_id.clone(),
                            })
                            .await;
                        answer_one(peer, offer, &rtc_cfg, &signaller, &session, &cmd, permit).await;
                    });
                }
            }
            Err(SignalError::SessionGone) => {
                // MidiEditor would end the jam here; we register again
                // (under the same code when the bundled rendezvous has it
                // free) and report the code, so the peers already in stay in.
                let lost = session_tx.borrow().code;
                match signaller
                    .open(&cfg.session_id, &cfg.display_name, Some(lost))
                    .await
                {
                    Ok(s) => {
                        seen.clear();
                        let _ = events.send(HostEvent::Hosting {
                            code: s.code.to_string(),
                            urls: cfg.share_urls.clone(),
                            renewed: true,
                        });
                        let _ = session_tx.send(s);
                    }
                    Err(e) => {
                        failures += 1;
                        report(&events, failures, format!("registering again failed: {e}"));
                        backoff(failures).await;
                    }
                }
            }
            Err(e) => {
                failures += 1;
                report(&events, failures, e.to_string());
                backoff(failures).await;
            }
        }
    }
}

/// Reports the first failure of a streak and then every tenth, so a
/// rendezvous that is down does not flood the log.
fn report(events: &broadcast::Sender<HostEvent>, failures: u32, message: String) {
    if failures == 1 || failures % 10 == 0 {
        let _ = events.send(HostEvent::Error { message });
    }
}

async fn backoff(failures: u32) {
    let secs = u64::from(failures.min(5));
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

/// Builds the answer for one offer and posts it; on failure the reason, in
/// words for the event stream (and no connection left open).
async fn answer_and_post(
    offer: &crate::signal::Offer,
    rtc_cfg: &RtcConfig,
    signaller: &Signaller,
    session: &HostSession,
) -> Result<rtc::Answered, String> {
    let answered = rtc::answer_offer(&offer.sdp, rtc_cfg)
        .await
        .map_err(|e| format!("could not answer a joiner: {e}"))?;
    if let Err(e) = signaller
        .answer(session, &offer.joiner_id, answered.answer_sdp.clone())
        .await
    {
        answered.link.close().await;
        return Err(format!("could not post an answer: {e}"));
    }
    Ok(answered)
}

async fn answer_one(
    peer: PeerId,
    offer: crate::signal::Offer,
    rtc_cfg: &RtcConfig,
    signaller: &Signaller,
    session: &HostSession,
    cmd: &mpsc::Sender<Cmd>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let answered = match answer_and_post(&offer, rtc_cfg, signaller, session).await {
        Ok(a) => a,
        Err(why) => {
            let _ = cmd.send(Cmd::AnswerFailed { peer, why }).await;
            return;
        }
    };
    // Answering is done: the slot goes to the next joiner, while this task
    // lives on as the link's forwarder.
    drop(permit);
    let mut link_events = answered.events;
    if cmd
        .send(Cmd::NewLink {
            peer,
            link: Link::Rtc(answered.link),
        })
        .await
        .is_err()
    {
        return;
    }
    while let Some(event) = link_events.recv().await {
        if cmd.send(Cmd::Link { peer, event }).await.is_err() {
            break;
        }
    }
}

struct LinkSlot {
    link: Link,
    /// Frames waiting to be written, in order.
    out: mpsc::Sender<Bytes>,
    /// Whether its `midieditor` channel was ever opened (the protocol knows
    /// the peer only from then on).
    channel_open: bool,
    /// The writer queue of its `midi` channel, while that is open.
    midi_out: Option<mpsc::Sender<Bytes>>,
    /// When our answer for it was posted (see [`CONNECT_TIMEOUT`]).
    answered_at: Instant,
    /// Frames longer than one message, being reassembled.
    inbound: stream::Inbound,
}

struct Engine {
    jam: Jam,
    /// The rendezvous joinerId of every peer we answered, to free its slot
    /// when it leaves.
    joiner_ids: HashMap<PeerId, String>,
    signaller: Signaller,
    session: tokio::sync::watch::Receiver<HostSession>,
    /// What the signalling loop answers the next offer with.
    rtc: tokio::sync::watch::Sender<RtcConfig>,
    registry: Registry,
    links: HashMap<PeerId, LinkSlot>,
    events: broadcast::Sender<HostEvent>,
    cmd: mpsc::Sender<Cmd>,
    origin: Instant,
    live: live::Live,
    /// The shared song, when hosting one.
    hub: Option<SongShare>,
    /// While Record is on (see [`record`]).
    recording: Option<record::Recording>,
}

impl Engine {
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, signalling: JoinHandle<()>) {
        let mut tick = tokio::time::interval(TICK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stats = tokio::time::interval(STATS_EVERY);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Live MIDI's keep-alives and stall checks; polled only while a
        // peer is routed, so an idle host sleeps.
        let mut midi_tick = tokio::time::interval(live::MIDI_TICK_EVERY);
        midi_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut record_tick = tokio::time::interval(record::FLUSH_EVERY);
        record_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (done, restarting) = loop {
            tokio::select! {
                c = rx.recv() => match c {
                    Some(Cmd::Stop { done, restarting }) => break (Some(done), restarting),
                    Some(c) => self.handle(c),
                    None => break (None, false),
                },
                _ = tick.tick() => {
                    let actions = self.jam.tick(self.now());
                    self.perform(actions);
                    self.drop_unopened_links();
                }
                _ = stats.tick() => self.poll_stats(),
                _ = midi_tick.tick(), if self.midi_timers_needed() => self.midi_tick(),
                _ = record_tick.tick(), if self.recording.is_some() => self.record_flush(false),
            }
        };
        signalling.abort();
        // Note Offs for everything still sounding go out before the links
        // close (the farewell gives the writers time to flush).
        self.midi_release_all();
        self.set_recording(false);
        let s = self.session.borrow().clone();
        self.signaller.close(&s).await;
        self.farewell(restarting).await;
        let _ = self.events.send(HostEvent::Stopped);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn emit(&mut self, e: HostEvent) {
        if let HostEvent::Peer(RegistryEvent::Left { peer, .. }) = &e {
            self.release_offer(peer.id);
            // Whatever made it leave, its notes are released everywhere.
            self.midi_peer_left(peer.id);
            if let Some(r) = self.recording.as_mut() {
                r.recorder.peer_gone(Instant::now(), peer.id);
            }
        }
        // Our own joiners hear who else is in the jam (crate::roster).
        if let HostEvent::Peer(p) = &e {
            let frames = crate::roster::frames_for(p, self.registry.peers(), self.jam.config());
            for (to, frame) in frames {
                if let Some(slot) = self.links.get(&to) {
                    let _ = slot.out.try_send(Bytes::from(frame));
                }
            }
        }
        let _ = self.events.send(e);
    }

    fn handle(&mut self, c: Cmd) {
        let now = self.now();
        match c {
            Cmd::Answering { peer, joiner_id } => {
                self.joiner_ids.insert(peer, joiner_id);
                if let Some(e) = self.registry.connecting(now, peer, ClientKind::Unknown) {
                    self.emit(HostEvent::Peer(e));
                }
            }
            Cmd::AnswerFailed { peer, why } => {
                // Its offer's slot at the rendezvous is free again at once,
                // even if the peer list had no row for it.
                self.release_offer(peer);
                self.emit(HostEvent::Error { message: why });
                if let Some(e) = self.registry.left(peer, LeaveReason::Closed) {
                    self.emit(HostEvent::Peer(e));
                }
            }
            Cmd::NewLink { peer, link } => {
                let (out, mut queue) = mpsc::channel::<Bytes>(PEER_QUEUE);
                let writer = link.clone();
                tokio::spawn(async move {
                    // The one writer of this peer: the pieces of a frame
                    // larger than a message follow each other unmixed.
                    let mut max = None;
                    'frames: while let Some(frame) = queue.recv().await {
                        if frame.len() > rtc::MAX_MESSAGE_SIZE.min(64 * 1024) && max.is_none() {
                            max = writer.max_message_size().await;
                        }
                        let limit = max.unwrap_or(64 * 1024).max(1024);
                        for piece in stream::pieces(frame, limit) {
                            if writer.send(MIDIEDITOR_CHANNEL, piece).await.is_err() {
                                break 'frames;
                            }
                        }
                    }
                });
                self.links.insert(
                    peer,
                    LinkSlot {
                        link,
                        out,
                        channel_open: false,
                        midi_out: None,
                        answered_at: Instant::now(),
                        inbound: stream::Inbound::new(self.jam.config().max_frame),
                    },
                );
            }
            Cmd::Link { peer, event } => self.on_link(peer, event),
            Cmd::Stats { peer, stats } => {
                if let Some(e) = self.registry.link_stats(peer, &stats) {
                    self.emit(HostEvent::Peer(e));
                }
            }
            Cmd::Kick { peer, reason } => {
                let actions = self.jam.kick(now, peer, &reason);
                self.perform(actions);
                // A peer still without a channel is only a link.
                if self.links.contains_key(&peer) {
                    self.drop_link(peer, LeaveReason::Kicked { reason });
                }
            }
            Cmd::Chat { text } => {
                let ts = wall_ms();
                match self.jam.host_chat(&text, ts) {
                    Ok(actions) => self.perform(actions),
                    Err(e) => self.emit(HostEvent::Error {
                        message: format!("chat not sent: {e}"),
                    }),
                }
            }
            Cmd::Midi(c) => self.on_midi_cmd(c),
            Cmd::Record(on) => self.set_recording(on),
            Cmd::Reconfigure { live, done } => {
                let max_peers = live.max_peers.max(1);
                self.jam.set_limits(max_peers, max_pending(max_peers));
                self.registry
                    .set_capacity(max_peers.saturating_add(max_pending(max_peers)));
                self.rtc.send_replace(live.rtc);
                let _ = done.send(());
            }
            Cmd::Stop { .. } => {}
        }
    }

    fn on_link(&mut self, peer: PeerId, event: LinkEvent) {
        let now = self.now();
        match event {
            LinkEvent::ChannelOpen { label } if label == MIDIEDITOR_CHANNEL => {
                if let Some(slot) = self.links.get_mut(&peer) {
                    slot.channel_open = true;
                }
                let actions = self.jam.channel_opened(now, peer, ClientKind::Unknown);
                self.perform(actions);
            }
            LinkEvent::Message { label, data, .. } if label == MIDIEDITOR_CHANNEL => {
                let pieces = match self.links.get_mut(&peer) {
                    Some(slot) => slot.inbound.push(&data),
                    None => return,
                };
                for piece in pieces {
                    let actions = match piece {
                        stream::Piece::Message(m) => self.jam.frame_received(now, peer, &m),
                        stream::Piece::Payload(p) => self.jam.payload_received(now, peer, &p),
                    };
                    self.perform(actions);
                }
            }
            LinkEvent::ChannelClosed { label } if label == MIDIEDITOR_CHANNEL => {
                self.drop_link(peer, LeaveReason::Closed);
            }
            LinkEvent::State(LinkState::Failed | LinkState::Closed) => {
                self.drop_link(peer, LeaveReason::Closed);
            }
            LinkEvent::Message { label, data, .. } if label == MIDI_CHANNEL => {
                self.on_midi_frame(peer, &data);
            }
            LinkEvent::ChannelOpen { label } if label == MIDI_CHANNEL => {
                self.midi_channel_opened(peer);
            }
            LinkEvent::ChannelClosed { label } if label == MIDI_CHANNEL => {
                self.midi_unroute(peer, true);
            }
            // The link is lost (no answer to consent checks for ~5 s: a
            // killed, unplugged or sleeping joiner). The peer is shown gone
            // and its notes are released now, not after the 25 s more it
            // takes ICE to fail or the protocol's 30 s silence timeout.
            // MidiEditor ends its session on this state too, so a joiner
            // that comes back joins again rather than resuming.
            LinkEvent::State(LinkState::Disconnected) => {
                self.drop_link(peer, LeaveReason::LinkLost);
            }
            LinkEvent::State(LinkState::Connected) => self.midi_maybe_route(peer),
            // Other channels and intermediate states are not this
            // engine's business.
            _ => {}
        }
    }

    /// Frees the rendezvous slot of `peer`'s offer (once; the bundled
    /// rendezvous only, a remote one lets it lapse).
    fn release_offer(&mut self, peer: PeerId) {
        if let Some(joiner_id) = self.joiner_ids.remove(&peer) {
            let session = self.session.borrow().clone();
            self.signaller.release(&session, &joiner_id);
        }
    }

    /// Drops the links whose `midieditor` channel has not opened within
    /// [`CONNECT_TIMEOUT`] of our answer, so that offers which never lead to
    /// a peer cannot hold the jam's slots.
    fn drop_unopened_links(&mut self) {
        let stale: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(_, slot)| !slot.channel_open && slot.answered_at.elapsed() > CONNECT_TIMEOUT)
            .map(|(&peer, _)| peer)
            .collect();
        for peer in stale {
            self.drop_link(peer, LeaveReason::HelloTimeout);
        }
    }

    /// Forgets a link, closing it, and reports the peer gone exactly once.
    fn drop_link(&mut self, peer: PeerId, reason: LeaveReason) {
        let Some(slot) = self.links.remove(&peer) else {
            return;
        };
        self.release_offer(peer);
        let link = slot.link.clone();
        tokio::spawn(async move { link.close().await });
        if slot.channel_open {
            let mut actions = self.jam.channel_closed(self.now(), peer);
            // The protocol only saw its channel close; the peer list and
            // the events say why.
            for action in &mut actions {
                if let Action::Event(PeerEvent::Left { reason: said, .. }) = action {
                    *said = reason.clone();
                }
            }
            self.perform(actions);
        }
        // If the protocol never knew the peer (or already let it go), the
        // registry row still has to go.
        if let Some(e) = self.registry.left(peer, reason) {
            self.emit(HostEvent::Peer(e));
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        let now = self.now();
        for a in actions {
            match a {
                Action::Send { peer, bytes } => {
                    let stalled = match self.links.get(&peer) {
                        Some(slot) => slot.out.try_send(Bytes::from(bytes)).is_err(),
                        None => false,
                    };
                    if stalled {
                        let more = self.jam.kick(now, peer, "stalled");
                        self.drop_link(
                            peer,
                            LeaveReason::Kicked {
                                reason: "stalled".into(),
                            },
                        );
                        // `kick` only yields events/closes for this peer.
                        self.perform(more);
                    }
                }
                Action::Close { peer, reason } => {
                    self.release_offer(peer);
                    // Let queued frames (a joinrejected) go out first: the
                    // writer drains its queue, then the link closes.
                    if let Some(slot) = self.links.remove(&peer) {
                        let link = slot.link;
                        drop(slot.out);
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            link.close().await;
                        });
                    }
                    if let Some(e) = self.registry.left(peer, reason) {
                        self.emit(HostEvent::Peer(e));
                    }
                }
                Action::Event(ev) => {
                    if let PeerEvent::Chat {
                        display_name, text, ..
                    } = &ev
                    {
                        self.emit(HostEvent::Chat {
                            display_name: display_name.clone(),
                            text: text.clone(),
                        });
                    }
                    for e in self.registry.apply(now, &ev) {
                        self.emit(HostEvent::Peer(e));
                    }
                    if let PeerEvent::Joined { peer, .. } = &ev {
                        self.midi_maybe_route(*peer);
                    }
                    self.song_event(&ev);
                }
            }
        }
    }

    /// What the shared song makes of a protocol event: the file for a
    /// newcomer, edits applied and relayed (see [`crate::hub`]).
    fn song_event(&mut self, ev: &PeerEvent) {
        let Some(hub) = self.hub.clone() else {
            return;
        };
        let (actions, notes) = match ev {
            PeerEvent::Joined { peer, .. } => (hub.lock().joined(*peer), Vec::new()),
            PeerEvent::Left { machine_id, .. } => {
                hub.lock().peer_left(machine_id.as_deref());
                return;
            }
            PeerEvent::Other { peer, kind, body } => {
                let Some(info) = self.jam.peer(*peer) else {
                    return;
                };
                let Some(hello) = info.hello.as_ref() else {
                    return;
                };
                let mut h = hub.lock();
                let presenter_peer = h.presenter().and_then(|m| {
                    self.jam
                        .peers()
                        .find(|p| p.machine_id() == Some(m))
                        .map(|p| p.id)
                });
                let others: Vec<PeerId> = self
                    .jam
                    .peers()
                    .filter(|p| p.is_welcomed() && p.id != *peer)
                    .map(|p| p.id)
                    .collect();
                let from = Sender {
                    id: *peer,
                    machine_id: &hello.machine_id,
                    display_name: &hello.display_name,
                    presenter_peer,
                };
                h.frame(from, kind, body, &others, self.jam.config())
            }
            _ => return,
        };
        self.perform(actions);
        for n in notes {
            match n {
                HubNote::Changed(v) => self.emit(HostEvent::Song(v)),
                HubNote::Problem(message) => self.emit(HostEvent::Error { message }),
            }
        }
    }

    fn poll_stats(&self) {
        for (&peer, slot) in &self.links {
            let link = slot.link.clone();
            let cmd = self.cmd.clone();
            tokio::spawn(async move {
                let stats = link.stats().await;
                let _ = cmd.try_send(Cmd::Stats { peer, stats });
            });
        }
    }

    /// Tells every peer the jam is over (or, `restarting`, that it comes
    /// back at once under the same code), then closes every link.
    async fn farewell(&mut self, restarting: bool) {
        let text = if restarting {
            "The host is restarting the jam under the same code: join again in a moment."
        } else {
            "The host ended the jam."
        };
        let bye = crate::framing::encode_json(&json!({
            "type": "chat",
            "sender": self.jam.config().host_machine_id,
            "displayName": self.jam.config().host_display_name,
            "text": text,
            "timestamp": wall_ms(),
        }));
        let ended = crate::framing::encode_json(&if restarting {
            json!({"type": "sessionEnded", "restarting": true})
        } else {
            json!({"type": "sessionEnded"})
        });
        let peers: Vec<PeerId> = self.links.keys().copied().collect();
        for peer in peers {
            if let Some(slot) = self.links.remove(&peer) {
                if slot.channel_open {
                    let _ = slot.out.try_send(Bytes::from(bye.clone()));
                    let _ = slot.out.try_send(Bytes::from(ended.clone()));
                }
                drop(slot.out);
                // Give the writer a moment to flush, then close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                slot.link.close().await;
                if let Some(e) = self.registry.left(peer, LeaveReason::Closed) {
                    self.emit(HostEvent::Peer(e));
                }
            }
        }
    }
}

fn wall_ms() -> u64 {
    types::wall_ms()
}
