//! Joining a jam: the app as a **joiner**, the way MidiEditor's joiner does
//! it, against any v3 rendezvous and any host (MidiEditor, or this app).
//!
//! [`Joiner::join`] runs the whole flow and returns once the host welcomed
//! us (or with a [`JoinError`] that says, in a musician's words, what went
//! wrong):
//!
//! 1. `GET /health` (3 s, MidiEditor's pre-flight); the answer also says
//!    whether the rendezvous long-polls (`extensions: ["long-poll"]`);
//! 2. `GET /code/<c>`: a 404 is a wrong code, found in milliseconds; the
//!    answer names the host and the session id `hello` carries;
//! 3. one PeerConnection, the offer after gathering completed (non-trickle);
//! 4. `POST /code/<c>/joiner-offer` and, in parallel, the answer: one
//!    `?wait=25000` long-poll at a time when offered, else MidiEditor's
//!    750 ms polls (404 = not yet; any other status ends the join). A 503
//!    "session is full" is [`JoinError::JamFull`];
//! 5. the answer applied; when `midieditor` opens, a framed `hello`
//!    (MidiEditor's fields plus `client: "midi-jam/<version>"`, which is how
//!    our host lists us as this app);
//! 6. the host's first frame: `sessionWelcome` (joined), or `joinrejected`
//!    (a full jam: [`JoinError::JamFull`]).
//!
//! Then the session runs until [`Joiner::leave`], the host ending the jam,
//! or the connection dying: heartbeats every 10 s, 30 s of silence from the
//! host is the host gone, chat and other frames become [`JoinEvent`]s, and
//! our host's peer-list frames ([`crate::roster`]) keep [`JoinView::peers`].
//!
//! # The `midi` channel, and why it waits for the host
//!
//! Our own joiners carry live MIDI on a second data channel, `midi`
//! (PEER-PROTOCOL.md). MidiEditor's host cannot take one: its responder
//! keeps **the last** data channel that arrives as *the* channel
//! (`onDataChannel([this](...) { _dc = dc; ... })` in `WebRtcTransport.cpp`)
//! and feeds every channel's messages into one frame reader. A `midi`
//! channel in the offer would make it send its welcome on `midi` and read
//! our MIDI bytes as frame lengths. So by default ([`MidiChannel::WhenHostOffers`])
//! the joiner offers `midieditor` alone and opens `midi` on the running
//! connection (in-band, no new offer) once the host's `peerList` lists the
//! `midi` feature, which only our host sends. [`MidiChannel::InOffer`]
//! opens it in the offer, for hosts known to be ours.
//!
//! The bytes on `midi` are the MIDI layer's business: [`Joiner::send_midi`]
//! sends one message, [`Joiner::take_midi_receiver`] yields each message
//! received (bounded; see [`MIDI_QUEUE`]).
//!
//! # State for a UI
//!
//! Everything a Join screen shows is in a [`JoinView`] on a `watch` channel
//! (no polling; a slow window sees only the newest state), serialised in
//! camelCase. Events ([`JoinEvent`]) go to a bounded broadcast channel, for
//! logs and the CLI's JSON lines.

mod address;
mod link;
mod session;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::rtc::shared::error::Error as WebrtcError;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use types::Millis;

pub use address::{parse_address, url_for, AddressError, DEFAULT_PORT};
pub use link::{CONTROL_CHANNEL, MIDI_CHANNEL, MIDI_QUEUE};
pub use session::client_id;

use crate::rendezvous::{Client, RendezvousError};
use crate::rtc::{LinkState, RtcConfig};
use link::{JoinLink, LinkMsg, MidiShared};
use session::{Out, Session, SessionConfig};
use types::{Code, RendezvousUrl};

/// Events kept for slow subscribers; older ones are skipped (`Lagged`).
const EVENT_CAPACITY: usize = 256;
/// Link events the engine may fall behind by (backpressure beyond).
const LINK_EVENTS: usize = 256;
/// Frames queued for the `midieditor` channel; a host that stops reading
/// fills it, and further frames are dropped (the host drops us anyway).
const WRITE_QUEUE: usize = 64;
/// Our long-poll wait (the protocol's maximum).
const LONG_POLL: Duration = Duration::from_millis(25_000);
/// MidiEditor's answer poll interval, used when there is no long-poll.
const POLL_EVERY: Duration = Duration::from_millis(750);
/// Without long-poll, the code is checked again every this many polls, so a
/// jam that ended while we wait is noticed in seconds, not at the timeout.
const REVERIFY_EVERY: u32 = 8;
/// Largest frame payload whose body a [`JoinEvent::Frame`] carries.
pub const MAX_EVENT_FRAME: usize = 64 * 1024;
/// How often the session's timers are checked.
const TICK: Duration = Duration::from_millis(500);

/// How long each part of a join may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTimeouts {
    /// `GET /health` (MidiEditor's pre-flight budget is 3 s).
    pub health: Duration,
    /// Each other plain request (verify, offer).
    pub request: Duration,
    /// From posting the offer to holding the host's answer. MidiEditor polls
    /// for up to 270 s; a jam host answers in milliseconds, and a person
    /// waiting wants to hear sooner that nobody answers.
    pub answer: Duration,
    /// From the answer to the `midieditor` channel open (ICE, DTLS, SCTP).
    pub connect: Duration,
    /// From `hello` to the host's first frame (our host's hello timeout is
    /// 10 s, so a host that waits longer has dropped us anyway).
    pub welcome: Duration,
    /// Our heartbeat interval (MidiEditor: 10 s).
    pub heartbeat_every: Duration,
    /// Host silence after which the jam is taken as lost (MidiEditor's host
    /// drops a peer after 30 s).
    pub silence: Duration,
}

impl Default for JoinTimeouts {
    fn default() -> Self {
        JoinTimeouts {
            health: Duration::from_secs(3),
            request: Duration::from_secs(5),
            answer: Duration::from_secs(30),
            connect: Duration::from_secs(15),
            welcome: Duration::from_secs(10),
            heartbeat_every: Duration::from_secs(10),
            silence: Duration::from_secs(30),
        }
    }
}

/// When the `midi` data channel is opened (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MidiChannel {
    /// Once the host says it takes one (our host's `peerList`). Safe with
    /// every host.
    #[default]
    WhenHostOffers,
    /// In the offer, next to `midieditor`. Only for hosts known to be ours:
    /// it breaks a MidiEditor host.
    InOffer,
    /// Never.
    Off,
}

/// What to join and as whom.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// The rendezvous base URL. Typed addresses become one through
    /// [`parse_address`]; an address from the LAN through [`url_for`].
    pub rendezvous_url: RendezvousUrl,
    /// The jam's 4-character code (case does not matter). `None` is only
    /// right for an open jam whose code the caller took from its LAN
    /// advertisement; without one the join fails with
    /// [`JoinError::CodeNeeded`].
    pub code: Option<String>,
    /// Our name as the host and the other players see it.
    pub display_name: String,
    /// Our machine id (a UUID, stable per installation: a host takes a second
    /// connection with the same id as a reconnect). Generated when empty.
    pub machine_id: String,
    /// ICE servers, addresses to gather on, gathering cap. `resolve_mdns` is
    /// ignored: a joiner never needs multicast (hosts answer with raw IPs).
    pub rtc: RtcConfig,
    pub timeouts: JoinTimeouts,
    pub midi: MidiChannel,
}

impl JoinConfig {
    /// Defaults for everything but the target and the name: a fresh machine
    /// id, no ICE servers, every LAN interface, a 2 s gathering cap.
    pub fn new(
        rendezvous_url: RendezvousUrl,
        code: Option<String>,
        display_name: impl Into<String>,
    ) -> Self {
        JoinConfig {
            rendezvous_url,
            code,
            display_name: display_name.into(),
            machine_id: String::new(),
            rtc: RtcConfig {
                resolve_mdns: false,
                ..RtcConfig::default()
            },
            timeouts: JoinTimeouts::default(),
            midi: MidiChannel::default(),
        }
    }
}

/// Where a join stands, for a UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JoinPhase {
    /// Reaching the rendezvous, connecting, greeting.
    #[default]
    Connecting,
    /// Welcomed by the host: in the jam.
    Connected,
    /// Could not join; [`JoinView::error`] says why.
    Failed,
    /// Was in the jam and is not any more; [`JoinView::left_reason`] says why.
    Left,
}

/// The step a join is at (finer than [`JoinPhase`], for a progress line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JoinStep {
    #[default]
    Starting,
    /// `GET /health`.
    CheckingRendezvous,
    /// `GET /code/<c>`.
    VerifyingCode,
    /// Building the connection and gathering candidates.
    Offering,
    /// Offer posted, waiting for the host's answer.
    WaitingForHost,
    /// ICE, DTLS, data channel.
    Connecting,
    /// `hello` sent, waiting for the welcome.
    Greeting,
    Joined,
    /// Over (failed or left).
    Done,
}

/// One player in the jam, as our host's peer list names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinPeer {
    /// The host's id for this player's connection.
    pub id: u64,
    pub display_name: String,
    pub machine_id: String,
    /// `midiEditor`, `thisApp`, `browser` or `unknown`.
    pub client: String,
    /// This is us.
    pub you: bool,
}

/// Everything a Join screen shows, replaced whole on every change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinView {
    pub phase: JoinPhase,
    pub step: JoinStep,
    pub rendezvous_url: String,
    pub code: Option<String>,
    /// Our own name and machine id.
    pub display_name: String,
    pub machine_id: String,
    /// The host's display name (from the rendezvous, then from the host).
    pub host_name: Option<String>,
    pub host_machine_id: Option<String>,
    /// `midi-jam/<version>` when the host is this app; `None` for MidiEditor
    /// (which does not say).
    pub host_client: Option<String>,
    /// The host's version, from its welcome.
    pub host_app_version: Option<String>,
    /// `edit` or `show`, from the welcome.
    pub mode: Option<String>,
    /// The host skipped the welcome (an older MidiEditor build).
    pub legacy_host: bool,
    /// The jam's size, when the host says.
    pub max_peers: Option<usize>,
    /// Every player the host told us about, us included (`you`). Empty with
    /// a MidiEditor host, whose joiners only ever see the host.
    pub peers: Vec<JoinPeer>,
    /// The `midi` channel is open.
    pub midi_open: bool,
    /// MIDI messages dropped because the application did not read them.
    pub midi_dropped: u64,
    /// Why joining failed (phase `failed`).
    pub error: Option<JoinError>,
    /// The same as a sentence.
    pub error_message: Option<String>,
    /// Why we are no longer in the jam (phase `left`).
    pub left_reason: Option<String>,
    /// Milliseconds from the start to the welcome.
    pub join_ms: Option<f64>,
    /// Something worth a look that is not an error (a legacy host, a shaky
    /// connection).
    pub notice: Option<String>,
}

/// Something that happened, in order. Serialised as
/// `{"event":"step"|"joined"|...,...}` in camelCase (the CLI's JSON lines).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum JoinEvent {
    /// A new step; `ms` since the start.
    Step {
        step: JoinStep,
        ms: f64,
    },
    /// Welcomed: in the jam.
    Joined {
        host_name: Option<String>,
        mode: Option<String>,
        ms: f64,
        /// The type of the host's first frame when it was not a welcome.
        legacy: Option<String>,
    },
    /// The whole peer list changed (first `peerList`).
    Peers {
        peers: Vec<JoinPeer>,
    },
    PeerJoined {
        peer: JoinPeer,
    },
    PeerLeft {
        peer: JoinPeer,
    },
    Chat {
        machine_id: String,
        display_name: String,
        text: String,
    },
    /// Any other frame from the host (`playback`, `hunks`, `filetransfer`...).
    /// `body` is `null` for frames over [`MAX_EVENT_FRAME`] bytes (events are
    /// kept for slow subscribers; a host must not make them hold megabytes).
    Frame {
        kind: String,
        body: Value,
        len: usize,
    },
    MidiOpen,
    MidiClosed,
    /// Joining failed.
    Failed {
        error: JoinError,
        message: String,
    },
    /// No longer in the jam.
    Left {
        reason: String,
    },
}

/// Why a join failed. Each message is a sentence a musician can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum JoinError {
    /// The address is not one a jam can be joined at.
    #[error("{detail}")]
    BadAddress { input: String, detail: String },
    #[error("This jam needs its code: ask the host for the 4-character code.")]
    CodeNeeded,
    /// `GET /code/<c>` (or the offer) answered 404.
    #[error("There is no jam with the code {code}. Check the code with the host: it may be mistyped, or the jam has ended.")]
    WrongCode { code: String },
    /// The rendezvous locked us out after too many unknown codes.
    #[error(
        "Too many wrong codes were tried from this computer. Wait two minutes, then try again."
    )]
    TooManyTries,
    /// No free slot: the rendezvous's 503, or the host's `joinrejected`.
    #[error("The jam is full ({detail}). Try again when someone leaves.")]
    JamFull { detail: String },
    /// The host refused us for another reason.
    #[error("The host did not let you in: {reason}.")]
    Rejected { reason: String },
    /// Nothing answers at the address (or not in time).
    #[error("Cannot reach the jam at {url}: {detail}. Check the address, and that the host is still hosting and on your network.")]
    Unreachable { url: String, detail: String },
    /// Something answers, but not a v3 rendezvous.
    #[error(
        "{url} answers, but it is not a jam's rendezvous: {detail}. Check the address and port."
    )]
    NotAJam { url: String, detail: String },
    /// The rendezvous answered something the protocol does not allow.
    #[error("The rendezvous refused to let us join: {detail}.")]
    Rendezvous { detail: String },
    /// The host never answered our offer.
    #[error("The host did not answer within {secs} s: it may have stopped hosting.")]
    NoAnswer { secs: u64 },
    /// ICE/DTLS/SCTP did not come up, or dropped before the welcome.
    #[error("Could not connect to the host: {detail}. A firewall may block the connection, or the two computers cannot reach each other directly.")]
    ConnectionFailed { detail: String },
    /// Connected, but the host never spoke.
    #[error(
        "The host connected but did not welcome us within {secs} s; it may not be a jam host."
    )]
    NoWelcome { secs: u64 },
    /// Our own side could not set up WebRTC.
    #[error("This computer could not set up the connection: {detail}.")]
    Setup { detail: String },
    /// [`Joiner::leave`] before the join finished.
    #[error("Joining was cancelled.")]
    Cancelled,
}

/// Why [`Joiner::send_midi`] did not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MidiSendError {
    #[error("the midi channel is not open")]
    NotOpen,
    #[error("the midi channel's send buffer is full (the host is not reading)")]
    Full,
    #[error("the message ({len} bytes) is larger than a data channel message may be")]
    TooLarge { len: usize },
    #[error("sending failed: {0}")]
    Failed(String),
}

/// Sends on a [`Joiner`]'s `midi` channel; cheap to clone. Sending after
/// the channel closed (or the join ended) is [`MidiSendError::NotOpen`].
#[derive(Clone)]
pub struct MidiSender {
    midi: Arc<MidiShared>,
}

impl MidiSender {
    /// See [`Joiner::send_midi`].
    pub async fn send(&self, message: Bytes) -> Result<(), MidiSendError> {
        if message.len() > crate::rtc::MAX_MESSAGE_SIZE {
            return Err(MidiSendError::TooLarge { len: message.len() });
        }
        let channel = self.midi.channel().ok_or(MidiSendError::NotOpen)?;
        channel
            .try_send(BytesMut::from(message))
            .await
            .map_err(|e| match e {
                WebrtcError::ErrSendBufferFull => MidiSendError::Full,
                WebrtcError::ErrDataChannelClosed
                | WebrtcError::ErrDataChannelNotOpen
                | WebrtcError::ErrConnectionClosed => MidiSendError::NotOpen,
                other => MidiSendError::Failed(other.to_string()),
            })
    }

    /// Whether the channel is open now.
    pub fn is_open(&self) -> bool {
        self.midi.open.load(Ordering::Acquire)
    }
}

enum Cmd {
    Leave(oneshot::Sender<()>),
    Chat(String, oneshot::Sender<Result<(), String>>),
    Frame(Value, oneshot::Sender<Result<(), String>>),
}

/// A join in progress or done. Dropping it leaves the jam (in the
/// background); [`Joiner::leave`] does so and waits.
pub struct Joiner {
    cmd: mpsc::Sender<Cmd>,
    view: watch::Receiver<JoinView>,
    events: broadcast::Sender<JoinEvent>,
    midi: Arc<MidiShared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Joiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joiner")
            .field("phase", &self.view.borrow().phase)
            .finish_non_exhaustive()
    }
}

impl Joiner {
    /// Joins, returning once the host welcomed us. The receiver has every
    /// event from the start. Must run inside a multi-threaded Tokio runtime.
    pub async fn join(
        cfg: JoinConfig,
    ) -> Result<(Joiner, broadcast::Receiver<JoinEvent>), JoinError> {
        let (joiner, events) = Joiner::spawn(cfg);
        joiner.joined().await?;
        Ok((joiner, events))
    }

    /// Starts joining in the background and returns at once, with a
    /// receiver that has every event from the start; follow it, the
    /// [`watch`](Self::watch), or wait with [`joined`](Self::joined).
    pub fn start(cfg: JoinConfig) -> (Joiner, broadcast::Receiver<JoinEvent>) {
        Joiner::spawn(cfg)
    }

    fn spawn(mut cfg: JoinConfig) -> (Joiner, broadcast::Receiver<JoinEvent>) {
        if cfg.machine_id.trim().is_empty() {
            cfg.machine_id = crate::host::new_machine_id();
        }
        let (events, first) = broadcast::channel(EVENT_CAPACITY);
        let (view_tx, view) = watch::channel(JoinView {
            rendezvous_url: cfg.rendezvous_url.to_string(),
            code: cfg.code.as_deref().map(normalise_code),
            display_name: cfg.display_name.clone(),
            machine_id: cfg.machine_id.clone(),
            ..JoinView::default()
        });
        let view_tx = Arc::new(view_tx);
        let (cmd, cmd_rx) = mpsc::channel(16);
        let midi = MidiShared::new();
        let ctx = Ctx {
            cfg,
            view: view_tx.clone(),
            events: events.clone(),
            started: Instant::now(),
            midi: midi.clone(),
        };
        let engine = tokio::spawn(run(ctx, cmd_rx));
        // webrtc-rs has panicked on hostile SDP before (see `rtc::answer_offer`);
        // if anything in the engine panics, the view says so instead of
        // staying "connecting" forever.
        let task = tokio::spawn(async move {
            if let Err(e) = engine.await {
                if e.is_panic() {
                    let error = JoinError::Setup {
                        detail: "internal error in the connection (please report it)".to_owned(),
                    };
                    let message = error.to_string();
                    view_tx.send_modify(|v| {
                        if matches!(v.phase, JoinPhase::Connecting | JoinPhase::Connected) {
                            v.phase = JoinPhase::Failed;
                            v.step = JoinStep::Done;
                            v.error = Some(error);
                            v.error_message = Some(message);
                        }
                    });
                }
            }
        });
        (
            Joiner {
                cmd,
                view,
                events,
                midi,
                task: Some(task),
            },
            first,
        )
    }

    /// Waits until the join succeeded or failed.
    pub async fn joined(&self) -> Result<(), JoinError> {
        let mut view = self.view.clone();
        let v = view
            .wait_for(|v| v.phase != JoinPhase::Connecting)
            .await
            .map(|v| v.clone())
            .unwrap_or_else(|_| self.view.borrow().clone());
        match v.phase {
            JoinPhase::Connected => Ok(()),
            JoinPhase::Failed => Err(v.error.unwrap_or(JoinError::Cancelled)),
            JoinPhase::Left | JoinPhase::Connecting => Err(JoinError::Cancelled),
        }
    }

    /// The current view.
    pub fn view(&self) -> JoinView {
        self.view.borrow().clone()
    }

    /// A receiver of every new view.
    pub fn watch(&self) -> watch::Receiver<JoinView> {
        self.view.clone()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JoinEvent> {
        self.events.subscribe()
    }

    /// Says something to the jam (the host relays it to everyone).
    pub async fn chat(&self, text: &str) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Chat(text.to_owned(), tx))
            .await
            .map_err(|_| "not in the jam".to_owned())?;
        rx.await
            .unwrap_or_else(|_| Err("not in the jam".to_owned()))
    }

    /// Sends one JSON frame (it must have a string `type`) on the
    /// `midieditor` channel: `playback` and the like.
    pub async fn send_frame(&self, frame: Value) -> Result<(), String> {
        if frame.get("type").and_then(Value::as_str).is_none() {
            return Err("a frame needs a string \"type\"".to_owned());
        }
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Frame(frame, tx))
            .await
            .map_err(|_| "not in the jam".to_owned())?;
        rx.await
            .unwrap_or_else(|_| Err("not in the jam".to_owned()))
    }

    /// Whether the `midi` channel is open.
    pub fn midi_open(&self) -> bool {
        self.midi.open.load(Ordering::Acquire)
    }

    /// Sends one message on the `midi` channel, without waiting: fails fast
    /// when the host has not acknowledged [`crate::rtc::SEND_BUFFER_LIMIT`]
    /// bytes yet, so a stalled host never blocks the player.
    pub async fn send_midi(&self, message: Bytes) -> Result<(), MidiSendError> {
        self.midi_sender().send(message).await
    }

    /// A handle that sends on the `midi` channel from another task (the
    /// app's MIDI bridge), for as long as this join's channel is open.
    pub fn midi_sender(&self) -> MidiSender {
        MidiSender {
            midi: self.midi.clone(),
        }
    }

    /// The messages received on the `midi` channel, each as sent (once; later
    /// calls get `None`). Bounded to [`MIDI_QUEUE`] messages: when full, new
    /// messages are dropped and counted in [`JoinView::midi_dropped`].
    pub fn take_midi_receiver(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.midi
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Leaves the jam (or stops joining) and waits until the connection is
    /// closed.
    pub async fn leave(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Leave(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Codes are shown upper-case and the routes are case-sensitive; MidiEditor
/// upper-cases what the user typed, and so do we.
fn normalise_code(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

// ------------------------------------------------------------------ engine

struct Ctx {
    cfg: JoinConfig,
    view: Arc<watch::Sender<JoinView>>,
    events: broadcast::Sender<JoinEvent>,
    started: Instant,
    midi: Arc<MidiShared>,
}

impl Ctx {
    /// Milliseconds since the start, to 0.01 ms (enough for a log line).
    fn ms(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0
    }

    fn now(&self) -> Millis {
        Millis(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn emit(&self, e: JoinEvent) {
        let _ = self.events.send(e);
    }

    fn step(&self, step: JoinStep) {
        self.emit(JoinEvent::Step {
            step,
            ms: self.ms(),
        });
        self.view.send_modify(|v| v.step = step);
    }

    // Events go out before the view changes, so that whoever wakes up on
    // the view (`Joiner::join` returning) finds the event already queued.

    fn fail(&self, error: JoinError) {
        let message = error.to_string();
        self.emit(JoinEvent::Failed {
            error: error.clone(),
            message: message.clone(),
        });
        self.view.send_modify(|v| {
            v.phase = JoinPhase::Failed;
            v.step = JoinStep::Done;
            v.error = Some(error);
            v.error_message = Some(message);
            v.midi_open = false;
        });
    }

    fn left(&self, reason: &str) {
        self.emit(JoinEvent::Left {
            reason: reason.to_owned(),
        });
        self.view.send_modify(|v| {
            v.phase = JoinPhase::Left;
            v.step = JoinStep::Done;
            v.left_reason = Some(reason.to_owned());
            v.midi_open = false;
        });
    }
}

/// What connecting hands to the session loop.
struct Connected {
    link: JoinLink,
    events: mpsc::Receiver<LinkMsg>,
    session_id: String,
}

async fn run(ctx: Ctx, mut cmd: mpsc::Receiver<Cmd>) {
    let connecting = connect(&ctx);
    tokio::pin!(connecting);
    let connected = loop {
        tokio::select! {
            r = &mut connecting => break r,
            c = cmd.recv() => match c {
                Some(Cmd::Leave(done)) => {
                    ctx.fail(JoinError::Cancelled);
                    let _ = done.send(());
                    return;
                }
                None => {
                    ctx.fail(JoinError::Cancelled);
                    return;
                }
                Some(Cmd::Chat(_, reply) | Cmd::Frame(_, reply)) => {
                    let _ = reply.send(Err("not in the jam yet".to_owned()));
                }
            },
        }
    };
    match connected {
        Err(e) => ctx.fail(e),
        Ok(c) => session(&ctx, c, &mut cmd).await,
    }
}

/// A fresh joinerId: a v4 UUID, 36 characters of `[0-9a-f-]`, within the
/// protocol's `^[A-Za-z0-9-]{8,64}$` (MidiEditor makes 16 characters; the
/// rendezvous accepts either).
fn random_joiner_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Up to the `midieditor` channel being open.
async fn connect(ctx: &Ctx) -> Result<Connected, JoinError> {
    let cfg = &ctx.cfg;
    let t = &cfg.timeouts;
    let url = &cfg.rendezvous_url;
    let code = match cfg.code.as_deref().map(normalise_code) {
        Some(c) if !c.is_empty() => c,
        _ => return Err(JoinError::CodeNeeded),
    };
    let Ok(code) = Code::parse(&code) else {
        return Err(JoinError::WrongCode { code });
    };

    ctx.step(JoinStep::CheckingRendezvous);
    let client = Client::new(url.clone(), t.request);
    let health = client
        .health(t.health)
        .await
        .map_err(|e| join_error(url, &code, Doing::Health, e))?;
    let long_poll = health.long_poll();

    ctx.step(JoinStep::VerifyingCode);
    let verified = client
        .verify(&code)
        .await
        .map_err(|e| join_error(url, &code, Doing::Verify, e))?;
    if !verified.display_name.is_empty() {
        let name = verified.display_name.clone();
        ctx.view.send_modify(|v| v.host_name = Some(name));
    }

    ctx.step(JoinStep::Offering);
    let mut rtc_cfg = cfg.rtc.clone();
    rtc_cfg.resolve_mdns = false;
    let (link, mut events) = JoinLink::new(
        &rtc_cfg,
        cfg.midi == MidiChannel::InOffer,
        ctx.midi.clone(),
        LINK_EVENTS,
    )
    .await
    .map_err(|e| match e {
        crate::rtc::RtcError::NoCandidates(_) => JoinError::Setup {
            detail: "no network address to connect from (no ICE candidate was gathered)".to_owned(),
        },
        other => JoinError::Setup {
            detail: other.to_string(),
        },
    })?;

    ctx.step(JoinStep::WaitingForHost);
    let joiner_id = random_joiner_id();
    let answer = exchange(&client, &code, &joiner_id, link.offer_sdp(), long_poll, t).await?;

    ctx.step(JoinStep::Connecting);
    link.accept(&answer)
        .await
        .map_err(|e| JoinError::ConnectionFailed {
            detail: format!("the host's answer is unusable ({e})"),
        })?;
    let mut state = link.state_watch();
    let opened = async {
        loop {
            tokio::select! {
                m = events.recv() => match m {
                    Some(LinkMsg::ControlOpen) => return Ok(()),
                    Some(LinkMsg::MidiOpen) => {
                        ctx.view.send_modify(|v| v.midi_open = true);
                        ctx.emit(JoinEvent::MidiOpen);
                    }
                    Some(_) => {}
                    None => return Err("the connection closed".to_owned()),
                },
                s = state.wait_for(|s| matches!(s, LinkState::Failed | LinkState::Closed)) => {
                    let _ = s;
                    return Err("the connection failed (no route between the two computers)".to_owned());
                }
            }
        }
    };
    match tokio::time::timeout(t.connect, opened).await {
        Ok(Ok(())) => {}
        Ok(Err(detail)) => return Err(JoinError::ConnectionFailed { detail }),
        Err(_) => {
            return Err(JoinError::ConnectionFailed {
                detail: format!("no connection within {} s", t.connect.as_secs()),
            })
        }
    }
    Ok(Connected {
        link,
        events,
        session_id: verified.session_id,
    })
}

/// Which request failed, for the words of [`JoinError::Rendezvous`].
#[derive(Clone, Copy)]
enum Doing {
    Health,
    Verify,
    Offer,
    Answer,
}

/// A rendezvous failure in a joiner's terms.
fn join_error(url: &RendezvousUrl, code: &Code, doing: Doing, e: RendezvousError) -> JoinError {
    use RendezvousError as R;
    let url = url.to_string();
    match e {
        R::NoSession { .. } => JoinError::WrongCode {
            code: code.to_string(),
        },
        R::TooManyTries => JoinError::TooManyTries,
        R::SessionFull { message } => JoinError::JamFull { detail: message },
        R::NotARendezvous { detail } => JoinError::NotAJam { url, detail },
        R::ProtocolTooOld { .. } | R::TooLarge { .. } => JoinError::NotAJam {
            url,
            detail: e.to_string(),
        },
        R::Status { .. } | R::Misbehaved { .. } => match doing {
            Doing::Health => JoinError::NotAJam {
                url,
                detail: e.to_string(),
            },
            Doing::Verify => JoinError::Rendezvous {
                detail: format!("checking the code got {e}"),
            },
            Doing::Offer => JoinError::Rendezvous {
                detail: format!("posting our offer got {e}"),
            },
            Doing::Answer => JoinError::Rendezvous {
                detail: format!("waiting for the host's answer got {e}"),
            },
        },
        R::ConnectionRefused { .. } => JoinError::Unreachable {
            url,
            detail: "nothing answers there (connection refused)".to_owned(),
        },
        R::TimedOut { ms } => JoinError::Unreachable {
            url,
            detail: format!("no answer within {:.1} s", ms as f64 / 1000.0),
        },
        other => JoinError::Unreachable {
            url,
            detail: other.to_string(),
        },
    }
}

/// Posts the offer and fetches the answer in parallel, as MidiEditor does.
async fn exchange(
    client: &Client,
    code: &Code,
    joiner_id: &str,
    sdp: &str,
    long_poll: bool,
    t: &JoinTimeouts,
) -> Result<String, JoinError> {
    let url = client.url();
    let post = async {
        client
            .post_offer(code, joiner_id, sdp)
            .await
            .map_err(|e| join_error(url, code, Doing::Offer, e))
    };
    let poll = poll_answer(client, code, joiner_id, long_poll);
    let deadline = tokio::time::sleep(t.answer);
    tokio::pin!(post, poll, deadline);
    let mut posted = false;
    loop {
        tokio::select! {
            r = &mut post, if !posted => {
                r?;
                posted = true;
            }
            r = &mut poll => return r,
            _ = &mut deadline => {
                return Err(JoinError::NoAnswer { secs: t.answer.as_secs() });
            }
        }
    }
}

async fn poll_answer(
    client: &Client,
    code: &Code,
    joiner_id: &str,
    long_poll: bool,
) -> Result<String, JoinError> {
    let mut polls: u32 = 0;
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !long_poll {
            tick.tick().await;
        }
        let started = Instant::now();
        let wait = long_poll.then_some(LONG_POLL);
        let url = client.url();
        if let Some(sdp) = client
            .poll_answer(code, joiner_id, wait)
            .await
            .map_err(|e| join_error(url, code, Doing::Answer, e))?
        {
            return Ok(sdp);
        }
        polls = polls.saturating_add(1);
        // A jam that ended while we wait: its code is gone.
        if long_poll || polls % REVERIFY_EVERY == 0 {
            client
                .verify(code)
                .await
                .map_err(|e| join_error(url, code, Doing::Verify, e))?;
        }
        // A long-poll answered at once (the first one races our offer, or
        // a server that does not really wait) must not spin.
        if long_poll && started.elapsed() < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Maps the roster to the view's peer list.
fn view_peers(session: &Session, me: &str) -> Vec<JoinPeer> {
    session
        .peers()
        .iter()
        .map(|p| JoinPeer {
            id: p.id,
            display_name: p.display_name.clone(),
            machine_id: p.machine_id.clone(),
            client: p.client.clone(),
            you: p.machine_id == me,
        })
        .collect()
}

/// Greeting, then the jam, until it ends one way or another.
async fn session(ctx: &Ctx, c: Connected, cmd: &mut mpsc::Receiver<Cmd>) {
    let Connected {
        mut link,
        mut events,
        session_id,
    } = c;
    let cfg = &ctx.cfg;
    let mut s = Session::new(
        SessionConfig {
            heartbeat_every: cfg.timeouts.heartbeat_every,
            silence_timeout: cfg.timeouts.silence,
            welcome_timeout: cfg.timeouts.welcome,
            max_frame: crate::framing::MIDIEDITOR_MAX_FRAME,
        },
        &cfg.machine_id,
        &cfg.display_name,
    );
    // One writer task: frames go out in order, and a host that stops
    // reading fills a bounded queue instead of stalling this loop.
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let control = link.control();
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if control.send(BytesMut::from(frame)).await.is_err() {
                break;
            }
        }
    });
    let send = |bytes: Vec<u8>| {
        // Full: the host is not reading; it will drop us, or we notice its
        // silence. Closed: the link is going away anyway.
        let _ = out_tx.try_send(Bytes::from(bytes));
    };
    ctx.step(JoinStep::Greeting);
    send(s.hello(ctx.now(), &session_id));

    let mut state = link.state_watch();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leave_reply: Option<oneshot::Sender<()>> = None;
    // What ended it: Ok(reason) → left, Err(error) → failed.
    let end: Result<String, JoinError> = loop {
        let outs = tokio::select! {
            m = events.recv() => match m {
                Some(LinkMsg::Control(data)) => s.on_message(ctx.now(), &data),
                Some(LinkMsg::MidiOpen) => {
                    ctx.view.send_modify(|v| v.midi_open = true);
                    ctx.emit(JoinEvent::MidiOpen);
                    continue;
                }
                Some(LinkMsg::MidiClosed) => {
                    ctx.view.send_modify(|v| v.midi_open = false);
                    ctx.emit(JoinEvent::MidiClosed);
                    continue;
                }
                Some(LinkMsg::ControlOpen) => continue,
                Some(LinkMsg::ControlClosed) | None => {
                    break if s.is_joined() {
                        Ok("The host closed the connection.".to_owned())
                    } else {
                        Err(JoinError::ConnectionFailed {
                            detail: "the host closed the connection before welcoming us".to_owned(),
                        })
                    };
                }
            },
            st = state.changed() => {
                let st = if st.is_ok() { *state.borrow_and_update() } else { LinkState::Closed };
                match st {
                    LinkState::Failed | LinkState::Closed => {
                        break if s.is_joined() {
                            Ok("Lost the connection to the host.".to_owned())
                        } else {
                            Err(JoinError::ConnectionFailed {
                                detail: "the connection dropped before the host welcomed us".to_owned(),
                            })
                        };
                    }
                    LinkState::Disconnected => {
                        ctx.view.send_modify(|v| {
                            v.notice = Some("The connection to the host is shaky.".to_owned())
                        });
                    }
                    LinkState::Connected => {
                        ctx.view.send_modify(|v| {
                            if v.notice.as_deref() == Some("The connection to the host is shaky.") {
                                v.notice = None;
                            }
                        });
                    }
                    _ => {}
                }
                continue;
            }
            _ = tick.tick() => {
                let dropped = ctx.midi.dropped.load(Ordering::Relaxed);
                if dropped != ctx.view.borrow().midi_dropped {
                    ctx.view.send_modify(|v| v.midi_dropped = dropped);
                }
                s.tick(ctx.now())
            }
            c = cmd.recv() => match c {
                Some(Cmd::Leave(done)) => {
                    leave_reply = Some(done);
                    break Ok("You left the jam.".to_owned());
                }
                None => break Ok("You left the jam.".to_owned()),
                Some(Cmd::Chat(text, reply)) => {
                    let r = if s.is_joined() {
                        let ts = types::wall_ms();
                        s.chat(&text, ts).map(send)
                    } else {
                        Err("not in the jam yet".to_owned())
                    };
                    let _ = reply.send(r);
                    continue;
                }
                Some(Cmd::Frame(value, reply)) => {
                    let r = if s.is_joined() {
                        send(crate::framing::encode_json(&value));
                        Ok(())
                    } else {
                        Err("not in the jam yet".to_owned())
                    };
                    let _ = reply.send(r);
                    continue;
                }
            },
        };
        if let Some(end) = apply(ctx, &mut s, &link, outs, &send).await {
            break end;
        }
    };
    drop(out_tx);
    // Let a queued frame (a last chat) go out, then close.
    let _ = tokio::time::timeout(Duration::from_millis(200), writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), link.close()).await;
    match end {
        Ok(reason) => {
            if ctx.view.borrow().phase == JoinPhase::Connected {
                ctx.left(&reason);
            } else {
                ctx.fail(JoinError::Cancelled);
            }
        }
        Err(e) => ctx.fail(e),
    }
    if let Some(done) = leave_reply {
        let _ = done.send(());
    }
}

/// Carries out what the session said; `Some` when the jam is over for us.
async fn apply(
    ctx: &Ctx,
    s: &mut Session,
    link: &JoinLink,
    outs: Vec<Out>,
    send: &impl Fn(Vec<u8>),
) -> Option<Result<String, JoinError>> {
    for o in outs {
        match o {
            Out::Send(bytes) => send(bytes),
            Out::Welcomed(w) => {
                let ms = ctx.ms();
                let host_name = ctx.view.borrow().host_name.clone();
                ctx.emit(JoinEvent::Step {
                    step: JoinStep::Joined,
                    ms,
                });
                ctx.emit(JoinEvent::Joined {
                    host_name,
                    mode: w.mode.clone(),
                    ms,
                    legacy: w.legacy.clone(),
                });
                ctx.view.send_modify(|v| {
                    v.phase = JoinPhase::Connected;
                    v.step = JoinStep::Joined;
                    v.join_ms = Some(ms);
                    v.mode = w.mode;
                    v.host_app_version = w.app_version;
                    if let Some(p) = w.presenter {
                        v.host_machine_id = Some(p);
                    }
                    if let Some(kind) = &w.legacy {
                        v.legacy_host = true;
                        v.notice = Some(format!(
                            "The host runs an older build: it sent \"{kind}\" instead of a welcome."
                        ));
                    }
                });
            }
            Out::Rejected(reason) => {
                if !s.is_joined() && ctx.view.borrow().phase == JoinPhase::Connecting {
                    return Some(Err(if reason.to_ascii_lowercase().contains("full") {
                        JoinError::JamFull { detail: reason }
                    } else {
                        JoinError::Rejected { reason }
                    }));
                }
                return Some(Ok(format!("The host removed you: {reason}.")));
            }
            Out::Ended => {
                if ctx.view.borrow().phase == JoinPhase::Connecting {
                    return Some(Err(JoinError::Rejected {
                        reason: "the host ended the jam".to_owned(),
                    }));
                }
                return Some(Ok("The host ended the jam.".to_owned()));
            }
            Out::NoWelcome => {
                return Some(Err(JoinError::NoWelcome {
                    secs: ctx.cfg.timeouts.welcome.as_secs(),
                }))
            }
            Out::Silent => {
                return Some(Ok(format!(
                    "The host went silent for {} s; the connection is lost.",
                    ctx.cfg.timeouts.silence.as_secs()
                )))
            }
            Out::Roster => {
                let before = ctx.view.borrow().peers.clone();
                let after = view_peers(s, &ctx.cfg.machine_id);
                let host = s.host().clone();
                let max = s.max_peers();
                ctx.view.send_modify(|v| {
                    v.peers = after.clone();
                    v.max_peers = max.or(v.max_peers);
                    if !host.display_name.is_empty() {
                        v.host_name = Some(host.display_name.clone());
                    }
                    if !host.machine_id.is_empty() {
                        v.host_machine_id = Some(host.machine_id.clone());
                    }
                    if !host.client.is_empty() {
                        v.host_client = Some(host.client.clone());
                    }
                });
                if before.is_empty() {
                    ctx.emit(JoinEvent::Peers { peers: after });
                } else {
                    for p in after
                        .iter()
                        .filter(|p| !before.iter().any(|q| q.id == p.id))
                    {
                        ctx.emit(JoinEvent::PeerJoined { peer: p.clone() });
                    }
                    for p in before
                        .iter()
                        .filter(|p| !after.iter().any(|q| q.id == p.id))
                    {
                        ctx.emit(JoinEvent::PeerLeft { peer: p.clone() });
                    }
                }
            }
            Out::MidiWelcome => {
                if ctx.cfg.midi == MidiChannel::WhenHostOffers {
                    if let Err(e) = link.open_midi().await {
                        ctx.view.send_modify(|v| {
                            v.notice = Some(format!("Live MIDI is not available: {e}"))
                        });
                    }
                }
            }
            Out::Chat {
                machine_id,
                display_name,
                text,
            } => ctx.emit(JoinEvent::Chat {
                machine_id,
                display_name,
                text,
            }),
            Out::Other { kind, body, len } => ctx.emit(JoinEvent::Frame {
                kind,
                body: if len <= MAX_EVENT_FRAME {
                    body
                } else {
                    Value::Null
                },
                len,
            }),
            Out::BadFrame(e) => {
                tracing::debug!(error = %e, "ignoring a malformed frame from the host")
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joiner_ids_match_the_protocol() {
        for _ in 0..100 {
            let id = random_joiner_id();
            assert!(types::is_valid_joiner_id(&id), "{id}");
        }
    }

    #[test]
    fn errors_serialise_with_a_kind_and_read_as_sentences() {
        let e = JoinError::WrongCode {
            code: "ABCD".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"kind": "wrongCode", "code": "ABCD"})
        );
        assert!(e
            .to_string()
            .starts_with("There is no jam with the code ABCD."));
        let e = JoinError::JamFull {
            detail: "8 players".into(),
        };
        assert_eq!(
            e.to_string(),
            "The jam is full (8 players). Try again when someone leaves."
        );
    }

    #[test]
    fn views_and_events_serialise_in_camel_case() {
        let v = JoinView {
            phase: JoinPhase::Connected,
            host_name: Some("Ada".into()),
            ..JoinView::default()
        };
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["phase"], "connected");
        assert_eq!(j["hostName"], "Ada");
        assert!(j.get("midiOpen").is_some());
        let e = JoinEvent::Joined {
            host_name: None,
            mode: Some("edit".into()),
            ms: 1.5,
            legacy: None,
        };
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["event"], "joined");
        assert_eq!(j["hostName"], serde_json::Value::Null);
        let e = JoinEvent::Step {
            step: JoinStep::WaitingForHost,
            ms: 0.0,
        };
        assert_eq!(serde_json::to_value(&e).unwrap()["step"], "waitingForHost");
    }
}
