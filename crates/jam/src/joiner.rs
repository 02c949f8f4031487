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
mod connect;
mod engine;
mod link;
mod session;
mod tcp;
mod view;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::rtc::shared::error::Error as WebrtcError;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use types::RendezvousUrl;

pub use address::{parse_address, url_for, AddressError, DEFAULT_PORT};
pub use link::{CONTROL_CHANNEL, MIDI_CHANNEL, MIDI_QUEUE};
pub use session::client_id;
pub use tcp::LanTarget;
pub use view::{
    JoinError, JoinEvent, JoinPeer, JoinPhase, JoinSong, JoinStep, JoinView, MidiSendError,
};

use crate::rtc::RtcConfig;
use engine::{run, Ctx};
use link::MidiShared;

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
        let (joiner, events) = Joiner::spawn(cfg, None);
        joiner.joined().await?;
        Ok((joiner, events))
    }

    /// Starts joining in the background and returns at once, with a
    /// receiver that has every event from the start; follow it, the
    /// [`watch`](Self::watch), or wait with [`joined`](Self::joined).
    pub fn start(cfg: JoinConfig) -> (Joiner, broadcast::Receiver<JoinEvent>) {
        Joiner::spawn(cfg, None)
    }

    /// Joins a MidiEditor **LAN Live** host over plain TCP, as MidiEditor's
    /// LAN joiner does: `target` comes from the host's `MIDIEDIT-PR-LAN`
    /// datagram (`lan::midieditor_lan::Listener`). `cfg`'s rendezvous URL,
    /// code, ICE settings and `midi` are not used (no rendezvous, no
    /// WebRTC, so no live-MIDI channel); its name, machine id and timeouts
    /// are (`connect` bounds the TCP connect). Same session, events and
    /// view as [`start`](Self::start); the view's `rendezvousUrl` reads
    /// `tcp://<addr>`.
    pub fn start_lan(
        cfg: JoinConfig,
        target: LanTarget,
    ) -> (Joiner, broadcast::Receiver<JoinEvent>) {
        Joiner::spawn(cfg, Some(target))
    }

    /// [`start_lan`](Self::start_lan), returning once welcomed.
    pub async fn join_lan(
        cfg: JoinConfig,
        target: LanTarget,
    ) -> Result<(Joiner, broadcast::Receiver<JoinEvent>), JoinError> {
        let (joiner, events) = Joiner::spawn(cfg, Some(target));
        joiner.joined().await?;
        Ok((joiner, events))
    }

    fn spawn(
        mut cfg: JoinConfig,
        lan: Option<LanTarget>,
    ) -> (Joiner, broadcast::Receiver<JoinEvent>) {
        if cfg.machine_id.trim().is_empty() {
            cfg.machine_id = crate::host::new_machine_id();
        }
        let (events, first) = broadcast::channel(EVENT_CAPACITY);
        let (view_tx, view) = watch::channel(JoinView {
            rendezvous_url: match &lan {
                Some(t) => format!("tcp://{}", t.addr),
                None => cfg.rendezvous_url.to_string(),
            },
            host_name: lan
                .as_ref()
                .filter(|t| !t.host_name.is_empty())
                .map(|t| t.host_name.clone()),
            code: match &lan {
                Some(t) => Some(normalise_code(&t.code)),
                None => cfg.code.as_deref().map(normalise_code),
            },
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
            lan,
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

#[cfg(test)]
mod tests {
    use super::connect::random_joiner_id;
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
    fn a_filetransfer_frame_gives_the_song_name_and_decoded_size() {
        let body = serde_json::json!({"type": "filetransfer", "filename": "jam.mid",
            "bytesB64": "TVRoZAAAAAYAAQ=="});
        let song = JoinSong::from_frame(&body).unwrap();
        assert_eq!(song.filename, "jam.mid");
        assert_eq!(song.bytes, 10);
        assert_eq!(
            JoinSong::from_frame(&serde_json::json!({"filename": "a", "bytesB64": "QUJD"}))
                .unwrap()
                .bytes,
            3
        );
        // Missing or mistyped fields: no song, no panic.
        for bad in [
            serde_json::json!({"type": "filetransfer"}),
            serde_json::json!({"filename": 7, "bytesB64": ""}),
            serde_json::json!({"filename": "x", "bytesB64": null}),
            serde_json::json!([]),
        ] {
            assert_eq!(JoinSong::from_frame(&bad), None, "{bad}");
        }
        let long = "n".repeat(1000);
        let s =
            JoinSong::from_frame(&serde_json::json!({"filename": long, "bytesB64": "="})).unwrap();
        assert_eq!(s.filename.len(), 256);
        assert_eq!(s.bytes, 0);
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
