//! The host side of MidiEditor AI's peer protocol, as a state machine without
//! I/O (see `PEER-PROTOCOL.md`).
//!
//! The async edge (webrtc-rs callbacks, or a TCP reader for MidiEditor's LAN
//! mode) turns what happens on the wire into calls on [`Jam`], each handed the
//! current [`Millis`], and carries out the [`Action`]s they return: send these
//! bytes (already framed), close that channel, tell the registry/UI this
//! event. Nothing here reads a clock, sleeps or touches a socket, so every
//! rule below is tested with simulated time.
//!
//! The rules a MidiEditor joiner depends on:
//! - the host's **first** frame after the joiner's `hello` is
//!   `sessionWelcome`; anything else first makes MidiEditor show a modal
//!   "host is on an older build". So nothing but a raw pong or a
//!   `joinrejected` is ever sent to a peer before its welcome;
//! - `heartbeat` every 10 s to every welcomed peer; a peer silent for 30 s
//!   is dropped (any frame counts as life);
//! - a second `hello` with a `machineId` already connected means the old
//!   connection is a ghost (the joiner restarted or its network changed):
//!   the old one is closed, the new one kept;
//! - a full jam answers `joinrejected` and closes.
//!
//! Everything the table holds is bounded: at most `max_peers` welcomed peers
//! plus `max_pending` channels still waiting for their `hello` (which wait at
//! most `hello_timeout`), with bounded strings in each.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};
use types::Millis;

use crate::framing::{self, Frame, FrameError};

/// A channel (one joiner's connection), named by the I/O layer. Ids must not
/// be reused while the old channel is still known to the [`Jam`]; a counter
/// is the simplest way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer-{}", self.0)
    }
}

/// What kind of program is at the other end. Given as a hint by the I/O
/// layer when it knows (for instance from how the joiner arrived), refined by
/// the registry from the `hello` (see `registry::classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientKind {
    /// MidiEditor AI, unmodified.
    MidiEditor,
    /// Another copy of this app, in join mode.
    ThisApp,
    /// Our browser join page.
    Browser,
    #[default]
    Unknown,
}

/// The session mode announced in `sessionWelcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionMode {
    /// Everyone may edit.
    #[default]
    Edit,
    /// Joiners follow the presenter.
    Show,
}

impl SessionMode {
    /// The wire value: `"edit"` or `"show"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Edit => "edit",
            SessionMode::Show => "show",
        }
    }
}

/// Chat limits MidiEditor's own host enforces; a peer used to them will not
/// notice ours.
pub const CHAT_MAX_BYTES: usize = 4096;
pub const CHAT_MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Bounds on the strings kept from a `hello`. Names are shown in lists and
/// relayed in every chat, so a hostile one must not be a megabyte.
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_ID_BYTES: usize = 128;
const MAX_FIELD_CHARS: usize = 128;
const MAX_REASON_CHARS: usize = 200;

/// Display name used when a `hello` carries none worth showing.
pub const DEFAULT_DISPLAY_NAME: &str = "Guest";

#[derive(Debug, Clone)]
pub struct JamConfig {
    /// Welcomed peers at once; the next `hello` gets `joinrejected`.
    pub max_peers: usize,
    /// Channels open but still without a `hello`. Bounds what a stranger
    /// opening channels and staying mute can hold.
    pub max_pending: usize,
    /// Sent as `presenterMachineId`, and the `sender` of the host's chat.
    pub host_machine_id: String,
    /// The `displayName` of the host's chat.
    pub host_display_name: String,
    /// Sent as `appVersion` in `sessionWelcome`; a MidiEditor joiner on a
    /// different version only shows a note.
    pub app_version: String,
    pub mode: SessionMode,
    pub heartbeat_every: Duration,
    /// A welcomed peer with no frame for this long is dropped.
    pub silence_timeout: Duration,
    /// A channel with no `hello` for this long after it opened is dropped.
    pub hello_timeout: Duration,
    /// Largest inbound frame payload; MidiEditor's own limit is 32 MiB.
    pub max_frame: usize,
    /// Malformed frames in a row that get a peer dropped. One bad frame never
    /// does: a glitch should not end a jam.
    pub max_bad_frames: u32,
    pub chat_max_bytes: usize,
    /// At most one chat message per sender in this interval.
    pub chat_min_interval: Duration,
}

impl Default for JamConfig {
    fn default() -> Self {
        JamConfig {
            max_peers: 8,
            max_pending: 4,
            host_machine_id: String::new(),
            host_display_name: "Host".into(),
            app_version: env!("CARGO_PKG_VERSION").into(),
            mode: SessionMode::Edit,
            heartbeat_every: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            max_frame: framing::MIDIEDITOR_MAX_FRAME,
            max_bad_frames: 20,
            chat_max_bytes: CHAT_MAX_BYTES,
            chat_min_interval: CHAT_MIN_INTERVAL,
        }
    }
}

/// What a joiner said about itself in its `hello`, sanitised: control
/// characters removed and lengths capped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub machine_id: String,
    pub display_name: String,
    pub app_version: Option<String>,
    pub session_id: Option<String>,
    /// Our own joiners name themselves here (`midi-jam/<version>` or
    /// `midi-jam-web/<version>`); MidiEditor sends no such field.
    pub client: Option<String>,
    /// Whether it carried MidiEditor's edit-history fields (`currentHead`,
    /// `historyTailHashes`).
    pub has_history: bool,
}

impl Hello {
    /// Reads a `hello` object. Only a usable `machineId` is required: it is
    /// what ghost detection and chat attribution rest on.
    pub fn from_json(body: &Value) -> Result<Hello, String> {
        let machine_id = match body.get("machineId") {
            Some(Value::String(s)) => s.trim(),
            Some(_) => return Err("machineId is not a string".into()),
            None => return Err("no machineId".into()),
        };
        if machine_id.is_empty() {
            return Err("empty machineId".into());
        }
        if machine_id.len() > MAX_ID_BYTES {
            return Err("machineId too long".into());
        }
        if machine_id.chars().any(char::is_control) {
            return Err("machineId has control characters".into());
        }
        let field = |k: &str, max: usize| {
            body.get(k)
                .and_then(Value::as_str)
                .map(|s| clean(s, max))
                .filter(|s| !s.is_empty())
        };
        Ok(Hello {
            machine_id: machine_id.to_owned(),
            display_name: field("displayName", MAX_NAME_CHARS)
                .unwrap_or_else(|| DEFAULT_DISPLAY_NAME.into()),
            app_version: field("appVersion", MAX_FIELD_CHARS),
            session_id: field("sessionId", MAX_FIELD_CHARS),
            client: field("client", MAX_FIELD_CHARS),
            has_history: body.get("currentHead").is_some()
                || body.get("historyTailHashes").is_some(),
        })
    }
}

/// Drops control characters, keeps at most `max` characters, trims.
fn clean(s: &str, max: usize) -> String {
    let kept: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    kept.trim().to_owned()
}

/// Why a peer is no longer in the jam. Serialised as `{"code": "...", ...}`
/// in the registry's JSON events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "camelCase")]
pub enum LeaveReason {
    /// The transport closed (the I/O layer called `channel_closed`).
    Closed,
    /// Replaced by a newer connection with the same `machineId`.
    Ghost,
    /// No frame for `silence_timeout`.
    Silent,
    /// No `hello` within `hello_timeout` of the channel opening.
    HelloTimeout,
    /// `max_bad_frames` malformed frames in a row.
    Garbage,
    /// Refused at `hello`: the jam already had `max` welcomed peers.
    Full { max: usize },
    /// Refused at `hello`: the `hello` was unusable.
    BadHello { why: String },
    /// Refused at open: too many channels were waiting for their `hello`.
    TooManyPending,
    /// Removed by the host.
    Kicked { reason: String },
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaveReason::Closed => f.write_str("connection closed"),
            LeaveReason::Ghost => {
                f.write_str("replaced by a newer connection from the same machine")
            }
            LeaveReason::Silent => f.write_str("no sign of life for too long"),
            LeaveReason::HelloTimeout => f.write_str("no hello in time"),
            LeaveReason::Garbage => f.write_str("too many malformed frames"),
            LeaveReason::Full { max } => write!(f, "the jam is full ({max} players)"),
            LeaveReason::BadHello { why } => write!(f, "unusable hello: {why}"),
            LeaveReason::TooManyPending => f.write_str("too many connections are opening"),
            LeaveReason::Kicked { reason } => write!(f, "removed by the host: {reason}"),
        }
    }
}

/// Why a chat message was not relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatDrop {
    #[error("chat text of {bytes} bytes is over {max}")]
    TooLong { bytes: usize, max: usize },
    #[error("more than one chat message per interval")]
    TooFast,
    #[error("chat without text")]
    NoText,
}

/// What happened, for the registry, the UI and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A channel opened; no `hello` yet.
    Opened {
        peer: PeerId,
        hint: ClientKind,
    },
    /// Its `hello` was accepted and `sessionWelcome` sent.
    Joined {
        peer: PeerId,
        hello: Hello,
        hint: ClientKind,
    },
    /// The peer is gone, whatever the cause. Emitted exactly once for every
    /// peer that was `Opened` (and for a channel refused at open).
    Left {
        peer: PeerId,
        machine_id: Option<String>,
        reason: LeaveReason,
    },
    /// A chat message that was relayed; `from` is `None` for the host's own.
    /// `machine_id` and `display_name` are the real sender's, not what the
    /// frame claimed.
    Chat {
        from: Option<PeerId>,
        machine_id: String,
        display_name: String,
        text: String,
        timestamp: Option<u64>,
    },
    ChatDropped {
        peer: PeerId,
        why: ChatDrop,
    },
    /// A malformed frame; `in_row` counts them since the last good one.
    BadFrame {
        peer: PeerId,
        error: FrameError,
        in_row: u32,
    },
    /// A JSON frame of a type the protocol itself does not act on (from a
    /// welcomed peer), handed up for the host to use or ignore.
    Other {
        peer: PeerId,
        kind: String,
        body: Value,
    },
}

/// What the I/O layer must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send one framed message (one WebRTC message, or bytes on the TCP
    /// stream).
    Send {
        peer: PeerId,
        bytes: Vec<u8>,
    },
    /// Close the channel (and its connection). The peer is already forgotten.
    Close {
        peer: PeerId,
        reason: LeaveReason,
    },
    Event(PeerEvent),
}

/// One peer as the protocol sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub id: PeerId,
    pub hint: ClientKind,
    /// `Some` once welcomed.
    pub hello: Option<Hello>,
    pub opened_at: Millis,
    pub welcomed_at: Option<Millis>,
    /// When its last frame (of any kind) arrived, or when it opened.
    pub last_heard: Millis,
}

impl PeerInfo {
    pub fn is_welcomed(&self) -> bool {
        self.hello.is_some()
    }

    pub fn machine_id(&self) -> Option<&str> {
        self.hello.as_ref().map(|h| h.machine_id.as_str())
    }
}

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    next_heartbeat: Millis,
    bad_in_row: u32,
    last_chat: Option<Millis>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Time from `since` to `now`, zero if the caller's clock went backwards.
fn elapsed(now: Millis, since: Millis) -> u64 {
    now.0.saturating_sub(since.0)
}

/// The host's jam: every connected peer and the rules above.
#[derive(Debug)]
pub struct Jam {
    cfg: JamConfig,
    /// In opening order; small (at most `max_peers + max_pending`), so a
    /// linear search beats a map and keeps output deterministic.
    peers: Vec<Peer>,
    heartbeat: Vec<u8>,
}

impl Jam {
    pub fn new(cfg: JamConfig) -> Self {
        Jam {
            cfg,
            peers: Vec::new(),
            heartbeat: framing::encode_json(&json!({"type": "heartbeat"})),
        }
    }

    pub fn config(&self) -> &JamConfig {
        &self.cfg
    }

    /// Changes the peer limits from now on, for a host whose settings
    /// changed while peers are in. Peers already welcomed (or pending) stay
    /// even above a lowered limit; the next `hello` is checked against it.
    pub fn set_limits(&mut self, max_peers: usize, max_pending: usize) {
        self.cfg.max_peers = max_peers;
        self.cfg.max_pending = max_pending;
    }

    /// Every known peer, welcomed or not, in opening order.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.iter().map(|p| &p.info)
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.iter().find(|p| p.info.id == id).map(|p| &p.info)
    }

    pub fn welcomed_count(&self) -> usize {
        self.peers.iter().filter(|p| p.info.is_welcomed()).count()
    }

    fn pending_count(&self) -> usize {
        self.peers.len() - self.welcomed_count()
    }

    fn index(&self, id: PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p.info.id == id)
    }

    /// A channel opened. It must say `hello` within `hello_timeout`. An id
    /// already known is ignored (the I/O layer reported it twice).
    #[must_use = "the actions must be carried out"]
    pub fn channel_opened(&mut self, now: Millis, peer: PeerId, hint: ClientKind) -> Vec<Action> {
        if self.index(peer).is_some() {
            return Vec::new();
        }
        if self.pending_count() >= self.cfg.max_pending {
            let reason = LeaveReason::TooManyPending;
            return vec![
                Action::Close {
                    peer,
                    reason: reason.clone(),
                },
                Action::Event(PeerEvent::Left {
                    peer,
                    machine_id: None,
                    reason,
                }),
            ];
        }
        self.peers.push(Peer {
            info: PeerInfo {
                id: peer,
                hint,
                hello: None,
                opened_at: now,
                welcomed_at: None,
                last_heard: now,
            },
            next_heartbeat: now,
            bad_in_row: 0,
            last_chat: None,
        });
        vec![Action::Event(PeerEvent::Opened { peer, hint })]
    }

    /// One WebRTC message from `peer`, which must be exactly one frame.
    /// Frames from unknown (already closed) peers are ignored.
    #[must_use = "the actions must be carried out"]
    pub fn frame_received(&mut self, now: Millis, peer: PeerId, msg: &[u8]) -> Vec<Action> {
        let frame =
            framing::decode_message(msg, self.cfg.max_frame).and_then(framing::parse_payload);
        self.received(now, peer, frame)
    }

    /// One already delimited payload from `peer`: what a stream reader gets
    /// from [`framing::FrameDecoder`]. A decoder error, by contrast, means
    /// the stream cannot be delimited any more: close it
    /// ([`kick`](Self::kick) or [`channel_closed`](Self::channel_closed)).
    #[must_use = "the actions must be carried out"]
    pub fn payload_received(&mut self, now: Millis, peer: PeerId, payload: &[u8]) -> Vec<Action> {
        let frame = framing::parse_payload(payload);
        self.received(now, peer, frame)
    }

    fn received(
        &mut self,
        now: Millis,
        peer: PeerId,
        frame: Result<Frame, FrameError>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(i) = self.index(peer) else {
            return out;
        };
        // Any frame is a sign of life, as with MidiEditor's host; garbage
        // cannot keep a peer forever because too much of it drops the peer.
        let p = &mut self.peers[i];
        p.info.last_heard = p.info.last_heard.max(now);
        match frame {
            Err(error) => {
                p.bad_in_row = p.bad_in_row.saturating_add(1);
                let in_row = p.bad_in_row;
                out.push(Action::Event(PeerEvent::BadFrame {
                    peer,
                    error,
                    in_row,
                }));
                if in_row >= self.cfg.max_bad_frames {
                    self.remove(i, LeaveReason::Garbage, &mut out);
                }
            }
            Ok(frame) => {
                p.bad_in_row = 0;
                self.handle(now, i, frame, &mut out);
            }
        }
        out
    }

    fn handle(&mut self, now: Millis, i: usize, frame: Frame, out: &mut Vec<Action>) {
        let peer = self.peers[i].info.id;
        let welcomed = self.peers[i].info.is_welcomed();
        match frame {
            Frame::Ping => out.push(Action::Send {
                peer,
                bytes: framing::encode(framing::PONG),
            }),
            Frame::Pong => {}
            // Before its hello a peer may only say hello: the welcome must be
            // the first thing it hears from us, and it has no identity yet.
            Frame::Json { kind, body } if !welcomed => {
                if kind == "hello" {
                    self.on_hello(now, i, &body, out);
                }
            }
            Frame::Json { kind, body } => match kind.as_str() {
                // A repeated hello on a welcomed connection changes nothing;
                // identity is fixed at welcome.
                "hello" | "heartbeat" => {}
                "chat" => self.on_chat(now, i, &body, out),
                _ => out.push(Action::Event(PeerEvent::Other { peer, kind, body })),
            },
        }
    }

    fn on_hello(&mut self, now: Millis, i: usize, body: &Value, out: &mut Vec<Action>) {
        let peer = self.peers[i].info.id;
        let hello = match Hello::from_json(body) {
            Ok(h) => h,
            Err(why) => return self.reject(i, LeaveReason::BadHello { why }, out),
        };
        if hello.machine_id == self.cfg.host_machine_id {
            // It would be attributed the host's chat and presenter role.
            let why = "machineId is the host's".to_owned();
            return self.reject(i, LeaveReason::BadHello { why }, out);
        }
        // The old connection of a returning machine is a ghost: it will never
        // speak again, and keeping it would hold a slot for 30 s.
        if let Some(g) = self.peers.iter().position(|p| {
            p.info.id != peer && p.info.machine_id() == Some(hello.machine_id.as_str())
        }) {
            self.remove(g, LeaveReason::Ghost, out);
        }
        let Some(i) = self.index(peer) else {
            return;
        };
        if self.welcomed_count() >= self.cfg.max_peers {
            let max = self.cfg.max_peers;
            return self.reject(i, LeaveReason::Full { max }, out);
        }
        let welcome = json!({
            "type": "sessionWelcome",
            "mode": self.cfg.mode.as_str(),
            "presenterMachineId": self.cfg.host_machine_id,
            "appVersion": self.cfg.app_version,
        });
        out.push(Action::Send {
            peer,
            bytes: framing::encode_json(&welcome),
        });
        let p = &mut self.peers[i];
        p.info.hello = Some(hello.clone());
        p.info.welcomed_at = Some(now);
        p.next_heartbeat = now.after(self.cfg.heartbeat_every);
        out.push(Action::Event(PeerEvent::Joined {
            peer,
            hello,
            hint: p.info.hint,
        }));
    }

    fn on_chat(&mut self, now: Millis, i: usize, body: &Value, out: &mut Vec<Action>) {
        let peer = self.peers[i].info.id;
        let dropped = |why| Action::Event(PeerEvent::ChatDropped { peer, why });
        let text = match body.get("text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => t,
            _ => return out.push(dropped(ChatDrop::NoText)),
        };
        if text.len() > self.cfg.chat_max_bytes {
            let (bytes, max) = (text.len(), self.cfg.chat_max_bytes);
            return out.push(dropped(ChatDrop::TooLong { bytes, max }));
        }
        let p = &mut self.peers[i];
        // Only relayed messages start a new interval, so a flooder still gets
        // one message through per interval and no more.
        if p.last_chat
            .is_some_and(|t| elapsed(now, t) < ms(self.cfg.chat_min_interval))
        {
            return out.push(dropped(ChatDrop::TooFast));
        }
        p.last_chat = Some(now);
        let Some(hello) = p.info.hello.as_ref() else {
            return;
        };
        let (machine_id, display_name) = (hello.machine_id.clone(), hello.display_name.clone());
        let timestamp = body.get("timestamp").and_then(Value::as_u64);
        self.relay_chat(
            Some(peer),
            machine_id,
            display_name,
            text.to_owned(),
            timestamp,
            out,
        );
    }

    /// Sends a chat to every welcomed peer but `from`, rebuilt from scratch:
    /// `sender` and `displayName` are the real sender's whatever the frame
    /// claimed, and unknown fields are not carried along.
    fn relay_chat(
        &self,
        from: Option<PeerId>,
        machine_id: String,
        display_name: String,
        text: String,
        timestamp: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        let mut msg = Map::new();
        msg.insert("type".into(), "chat".into());
        msg.insert("sender".into(), machine_id.clone().into());
        msg.insert("displayName".into(), display_name.clone().into());
        msg.insert("text".into(), text.clone().into());
        if let Some(ts) = timestamp {
            msg.insert("timestamp".into(), ts.into());
        }
        let bytes = framing::encode_json(&Value::Object(msg));
        for p in &self.peers {
            if p.info.is_welcomed() && Some(p.info.id) != from {
                out.push(Action::Send {
                    peer: p.info.id,
                    bytes: bytes.clone(),
                });
            }
        }
        out.push(Action::Event(PeerEvent::Chat {
            from,
            machine_id,
            display_name,
            text,
            timestamp,
        }));
    }

    /// The host's own chat, to every welcomed peer, under the host's
    /// identity. Same size limit as peers' chat; no rate limit.
    pub fn host_chat(&mut self, text: &str, timestamp_ms: u64) -> Result<Vec<Action>, ChatDrop> {
        if text.is_empty() {
            return Err(ChatDrop::NoText);
        }
        if text.len() > self.cfg.chat_max_bytes {
            return Err(ChatDrop::TooLong {
                bytes: text.len(),
                max: self.cfg.chat_max_bytes,
            });
        }
        let mut out = Vec::new();
        self.relay_chat(
            None,
            self.cfg.host_machine_id.clone(),
            self.cfg.host_display_name.clone(),
            text.to_owned(),
            Some(timestamp_ms),
            &mut out,
        );
        Ok(out)
    }

    /// Sends `value` (a frame such as `playback`) to every welcomed peer.
    /// Never to peers still waiting for their welcome. The caller keeps it
    /// within what the transport carries.
    #[must_use = "the actions must be carried out"]
    pub fn broadcast(&self, value: &Value) -> Vec<Action> {
        let bytes = framing::encode_json(value);
        self.peers
            .iter()
            .filter(|p| p.info.is_welcomed())
            .map(|p| Action::Send {
                peer: p.info.id,
                bytes: bytes.clone(),
            })
            .collect()
    }

    /// The transport closed. Unknown peers (already dropped by us) are
    /// ignored, so each peer leaves exactly once.
    #[must_use = "the actions must be carried out"]
    pub fn channel_closed(&mut self, _now: Millis, peer: PeerId) -> Vec<Action> {
        let Some(i) = self.index(peer) else {
            return Vec::new();
        };
        let p = self.peers.remove(i);
        vec![Action::Event(PeerEvent::Left {
            peer,
            machine_id: p.info.machine_id().map(str::to_owned),
            reason: LeaveReason::Closed,
        })]
    }

    /// The host removes a peer. One not yet welcomed is refused with
    /// `joinrejected` first, which MidiEditor shows; a welcomed one is just
    /// closed, because `joinrejected` answers a `hello` and nothing else.
    #[must_use = "the actions must be carried out"]
    pub fn kick(&mut self, _now: Millis, peer: PeerId, reason: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(i) = self.index(peer) {
            let reason = LeaveReason::Kicked {
                reason: clean(reason, MAX_REASON_CHARS),
            };
            if self.peers[i].info.is_welcomed() {
                self.remove(i, reason, &mut out);
            } else {
                self.reject(i, reason, &mut out);
            }
        }
        out
    }

    /// Time passes: heartbeats fall due, silent peers and mute channels are
    /// dropped. Call it at least every second, or at
    /// [`next_deadline`](Self::next_deadline).
    #[must_use = "the actions must be carried out"]
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        let silence = ms(self.cfg.silence_timeout);
        let hello_timeout = ms(self.cfg.hello_timeout);
        let mut i = 0;
        while i < self.peers.len() {
            let p = &mut self.peers[i];
            if p.info.is_welcomed() {
                if elapsed(now, p.info.last_heard) >= silence {
                    self.remove(i, LeaveReason::Silent, &mut out);
                    continue;
                }
                if now >= p.next_heartbeat {
                    // From now, not from the missed deadline: after a stall
                    // one heartbeat goes out, not a burst.
                    p.next_heartbeat = now.after(self.cfg.heartbeat_every);
                    out.push(Action::Send {
                        peer: p.info.id,
                        bytes: self.heartbeat.clone(),
                    });
                }
            } else if elapsed(now, p.info.opened_at) >= hello_timeout {
                self.remove(i, LeaveReason::HelloTimeout, &mut out);
                continue;
            }
            i += 1;
        }
        out
    }

    /// The earliest time at which [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.peers
            .iter()
            .map(|p| {
                if p.info.is_welcomed() {
                    p.next_heartbeat
                        .min(p.info.last_heard.after(self.cfg.silence_timeout))
                } else {
                    p.info.opened_at.after(self.cfg.hello_timeout)
                }
            })
            .min()
    }

    /// Sends `joinrejected` then closes.
    fn reject(&mut self, i: usize, reason: LeaveReason, out: &mut Vec<Action>) {
        let msg = json!({"type": "joinrejected", "reason": reason.to_string()});
        out.push(Action::Send {
            peer: self.peers[i].info.id,
            bytes: framing::encode_json(&msg),
        });
        self.remove(i, reason, out);
    }

    /// Forgets peer `i`, closing its channel.
    fn remove(&mut self, i: usize, reason: LeaveReason, out: &mut Vec<Action>) {
        let p = self.peers.remove(i);
        let peer = p.info.id;
        out.push(Action::Close {
            peer,
            reason: reason.clone(),
        });
        out.push(Action::Event(PeerEvent::Left {
            peer,
            machine_id: p.info.machine_id().map(str::to_owned),
            reason,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{decode, encode, encode_json};

    const HOST: &str = "host-machine";

    fn cfg() -> JamConfig {
        JamConfig {
            host_machine_id: HOST.into(),
            host_display_name: "Hosty".into(),
            app_version: "0.1.0".into(),
            ..JamConfig::default()
        }
    }

    fn jam() -> Jam {
        Jam::new(cfg())
    }

    fn t(ms: u64) -> Millis {
        Millis(ms)
    }

    fn hello(machine_id: &str, name: &str) -> Vec<u8> {
        encode_json(&json!({
            "type": "hello",
            "sessionId": "sess",
            "displayName": name,
            "machineId": machine_id,
            "appVersion": "2.0.1",
            "currentHead": "abc",
            "historyTailHashes": ["abc"],
        }))
    }

    fn chat(text: &str) -> Vec<u8> {
        encode_json(&json!({
            "type": "chat",
            "sender": "someone-else",
            "displayName": "The Host",
            "text": text,
            "timestamp": 1_700_000_000_000u64,
        }))
    }

    /// Opens peer `id` and says hello as machine `m<id>` named `P<id>`.
    fn join(j: &mut Jam, now: u64, id: u64) -> Vec<Action> {
        let mut a = j.channel_opened(t(now), PeerId(id), ClientKind::Unknown);
        a.extend(j.frame_received(
            t(now),
            PeerId(id),
            &hello(&format!("m{id}"), &format!("P{id}")),
        ));
        a
    }

    /// Every frame sent to `peer`, parsed (raw pings/pongs included).
    fn sent_to(actions: &[Action], peer: u64) -> Vec<Frame> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { peer: p, bytes } if *p == PeerId(peer) => {
                    Some(decode(bytes, usize::MAX).expect("we send valid frames"))
                }
                _ => None,
            })
            .collect()
    }

    fn kinds(frames: &[Frame]) -> Vec<&str> {
        frames.iter().map(|f| f.kind().unwrap_or("<raw>")).collect()
    }

    fn body(f: &Frame) -> &Value {
        match f {
            Frame::Json { body, .. } => body,
            other => panic!("not JSON: {other:?}"),
        }
    }

    fn closes(actions: &[Action]) -> Vec<(PeerId, LeaveReason)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Close { peer, reason } => Some((*peer, reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn events(actions: &[Action]) -> Vec<&PeerEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn lefts(actions: &[Action]) -> Vec<(PeerId, LeaveReason)> {
        events(actions)
            .into_iter()
            .filter_map(|e| match e {
                PeerEvent::Left { peer, reason, .. } => Some((*peer, reason.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_frame_after_hello_is_session_welcome() {
        let mut j = jam();
        let a = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        assert!(sent_to(&a, 1).is_empty(), "nothing is sent before hello");
        let a = j.frame_received(t(5), PeerId(1), &hello("m1", "Bob"));
        let frames = sent_to(&a, 1);
        assert_eq!(kinds(&frames), ["sessionWelcome"]);
        assert_eq!(
            body(&frames[0]),
            &json!({
                "type": "sessionWelcome",
                "mode": "edit",
                "presenterMachineId": HOST,
                "appVersion": "0.1.0",
            })
        );
        // The Send comes before the Joined event, so an I/O layer that sends
        // other frames on Joined cannot get ahead of the welcome.
        assert!(matches!(a[0], Action::Send { .. }));
        assert!(matches!(
            &a[1],
            Action::Event(PeerEvent::Joined { peer: PeerId(1), hello, hint: ClientKind::Unknown })
                if hello.machine_id == "m1" && hello.display_name == "Bob"
                    && hello.app_version.as_deref() == Some("2.0.1") && hello.has_history
        ));
        assert_eq!(j.welcomed_count(), 1);
        assert_eq!(j.peer(PeerId(1)).unwrap().welcomed_at, Some(t(5)));
    }

    #[test]
    fn welcome_announces_show_mode_when_configured() {
        let mut j = Jam::new(JamConfig {
            mode: SessionMode::Show,
            ..cfg()
        });
        let a = join(&mut j, 0, 1);
        assert_eq!(body(&sent_to(&a, 1)[0])["mode"], "show");
    }

    #[test]
    fn welcome_is_sent_as_compact_prefixed_json() {
        let mut j = jam();
        let a = join(&mut j, 0, 1);
        let Some(Action::Send { bytes, .. }) = a.iter().find(|x| matches!(x, Action::Send { .. }))
        else {
            panic!("{a:?}")
        };
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        assert!(!bytes[4..].contains(&b' ') && !bytes[4..].contains(&b'\n'));
    }

    #[test]
    fn frames_before_hello_are_ignored() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        for f in [
            json!({"type": "chat", "text": "hi"}),
            json!({"type": "heartbeat"}),
            json!({"type": "playback", "action": "start"}),
        ] {
            assert!(j
                .frame_received(t(1), PeerId(1), &encode_json(&f))
                .is_empty());
        }
        // And the welcome is still its first frame once it says hello.
        let a = j.frame_received(t(2), PeerId(1), &hello("m1", "Bob"));
        assert_eq!(kinds(&sent_to(&a, 1)), ["sessionWelcome"]);
    }

    #[test]
    fn raw_ping_is_answered_with_a_framed_raw_pong_before_and_after_hello() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        let a = j.frame_received(t(1), PeerId(1), &encode(framing::PING));
        assert_eq!(
            a,
            vec![Action::Send {
                peer: PeerId(1),
                bytes: encode(b"midieditor-pong")
            }]
        );
        assert!(j.peer(PeerId(1)).is_some_and(|p| !p.is_welcomed()));
        join(&mut j, 2, 2);
        let a = j.frame_received(t(3), PeerId(2), &encode(framing::PING));
        assert_eq!(sent_to(&a, 2), vec![Frame::Pong]);
        // A pong from a peer is only a sign of life.
        assert!(j
            .frame_received(t(4), PeerId(2), &encode(framing::PONG))
            .is_empty());
    }

    #[test]
    fn heartbeats_go_to_every_welcomed_peer_every_10s() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let _ = j.channel_opened(t(0), PeerId(3), ClientKind::Unknown);
        let mut beats = Vec::new();
        for now in (0..=25_000).step_by(500) {
            // Keep them alive so only heartbeats are at stake.
            for id in 1..=2 {
                let _ = j.frame_received(
                    t(now),
                    PeerId(id),
                    &encode_json(&json!({"type": "heartbeat"})),
                );
            }
            for a in j.tick(t(now)) {
                if let Action::Send { peer, bytes } = a {
                    assert_eq!(decode(&bytes, 100).unwrap().kind(), Some("heartbeat"));
                    beats.push((now, peer.0));
                }
            }
        }
        assert_eq!(
            beats,
            [(10_000, 1), (10_000, 2), (20_000, 1), (20_000, 2)],
            "never to a peer still without hello"
        );
    }

    #[test]
    fn a_late_tick_sends_one_heartbeat_not_a_burst() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let _ = j.frame_received(t(25_000), PeerId(1), &encode(framing::PONG));
        assert_eq!(sent_to(&j.tick(t(25_000)), 1).len(), 1);
        assert!(sent_to(&j.tick(t(25_001)), 1).is_empty());
        assert_eq!(sent_to(&j.tick(t(35_000)), 1).len(), 1);
    }

    #[test]
    fn silent_peer_is_dropped_after_30s() {
        let mut j = jam();
        join(&mut j, 0, 1);
        for now in (1000..30_000).step_by(1000) {
            assert!(closes(&j.tick(t(now))).is_empty(), "at {now}");
        }
        assert!(closes(&j.tick(t(29_999))).is_empty());
        let a = j.tick(t(30_000));
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::Silent)]);
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::Left { peer: PeerId(1), machine_id: Some(m), reason: LeaveReason::Silent }]
                if m == "m1"
        ));
        assert_eq!(j.peers().count(), 0);
        assert!(j.tick(t(40_000)).is_empty(), "dropped once");
    }

    #[test]
    fn any_frame_counts_as_life() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let frames = [
            encode_json(&json!({"type": "heartbeat"})),
            encode_json(&json!({"type": "somethingNew"})),
            encode(framing::PONG),
            encode(b"garbage"),
        ];
        let mut now = 0;
        for f in frames.iter().cycle().take(12) {
            now += 25_000;
            let _ = j.frame_received(t(now), PeerId(1), f);
            assert!(closes(&j.tick(t(now + 29_999))).is_empty(), "at {now}");
        }
        assert_eq!(
            closes(&j.tick(t(now + 30_000))),
            [(PeerId(1), LeaveReason::Silent)]
        );
    }

    #[test]
    fn channel_without_hello_is_dropped_after_hello_timeout() {
        let mut j = jam();
        let _ = j.channel_opened(t(1000), PeerId(1), ClientKind::Unknown);
        // Frames other than hello do not extend the wait.
        let _ = j.frame_received(t(5000), PeerId(1), &encode(framing::PING));
        assert!(closes(&j.tick(t(10_999))).is_empty());
        let a = j.tick(t(11_000));
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::HelloTimeout)]);
        assert!(sent_to(&a, 1).is_empty(), "no joinrejected, it never asked");
        assert_eq!(lefts(&a), [(PeerId(1), LeaveReason::HelloTimeout)]);
    }

    #[test]
    fn second_hello_with_same_machine_id_closes_the_ghost() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let _ = j.channel_opened(t(100), PeerId(3), ClientKind::Unknown);
        let a = j.frame_received(t(100), PeerId(3), &hello("m1", "Bob again"));
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::Ghost)]);
        assert!(sent_to(&a, 1).is_empty(), "the ghost is just closed");
        assert_eq!(kinds(&sent_to(&a, 3)), ["sessionWelcome"]);
        // The ghost goes before the new one joins.
        let ev = events(&a);
        assert!(matches!(
            ev[0],
            PeerEvent::Left {
                peer: PeerId(1),
                reason: LeaveReason::Ghost,
                ..
            }
        ));
        assert!(matches!(
            ev[1],
            PeerEvent::Joined {
                peer: PeerId(3),
                ..
            }
        ));
        let ids: Vec<_> = j.peers().map(|p| p.id.0).collect();
        assert_eq!(ids, [2, 3]);
        // The ghost's late frames and close are ignored.
        assert!(j.frame_received(t(200), PeerId(1), &chat("boo")).is_empty());
        assert!(j.channel_closed(t(200), PeerId(1)).is_empty());
    }

    #[test]
    fn a_returning_machine_replaces_its_ghost_even_when_the_jam_is_full() {
        let mut j = jam();
        for id in 1..=8 {
            join(&mut j, 0, id);
        }
        let _ = j.channel_opened(t(1), PeerId(9), ClientKind::Unknown);
        let a = j.frame_received(t(1), PeerId(9), &hello("m4", "P4"));
        assert_eq!(closes(&a), [(PeerId(4), LeaveReason::Ghost)]);
        assert_eq!(kinds(&sent_to(&a, 9)), ["sessionWelcome"]);
        assert_eq!(j.welcomed_count(), 8);
    }

    #[test]
    fn ninth_peer_gets_joinrejected_then_close() {
        let mut j = jam();
        for id in 1..=8 {
            assert_eq!(
                kinds(&sent_to(&join(&mut j, 0, id), id)),
                ["sessionWelcome"]
            );
        }
        let a = join(&mut j, 1, 9);
        let frames = sent_to(&a, 9);
        assert_eq!(kinds(&frames), ["joinrejected"]);
        assert_eq!(body(&frames[0])["reason"], "the jam is full (8 players)");
        let send_at = a
            .iter()
            .position(|x| matches!(x, Action::Send { .. }))
            .unwrap();
        let close_at = a
            .iter()
            .position(|x| matches!(x, Action::Close { .. }))
            .unwrap();
        assert!(send_at < close_at, "joinrejected goes out before the close");
        assert_eq!(closes(&a), [(PeerId(9), LeaveReason::Full { max: 8 })]);
        assert!(j.peer(PeerId(9)).is_none());
        // A slot freed by a leaver is available again.
        let _ = j.channel_closed(t(2), PeerId(3));
        assert_eq!(
            kinds(&sent_to(&join(&mut j, 3, 10), 10)),
            ["sessionWelcome"]
        );
    }

    #[test]
    fn max_peers_is_configurable() {
        let mut j = Jam::new(JamConfig {
            max_peers: 1,
            ..cfg()
        });
        join(&mut j, 0, 1);
        assert_eq!(
            closes(&join(&mut j, 0, 2)),
            [(PeerId(2), LeaveReason::Full { max: 1 })]
        );
    }

    #[test]
    fn hello_without_a_usable_machine_id_is_rejected() {
        for bad in [
            json!({"type": "hello", "displayName": "x"}),
            json!({"type": "hello", "machineId": ""}),
            json!({"type": "hello", "machineId": "   "}),
            json!({"type": "hello", "machineId": 7}),
            json!({"type": "hello", "machineId": "a\u{7}b"}),
            json!({"type": "hello", "machineId": "x".repeat(MAX_ID_BYTES + 1)}),
        ] {
            let mut j = jam();
            let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
            let a = j.frame_received(t(0), PeerId(1), &encode_json(&bad));
            assert_eq!(kinds(&sent_to(&a, 1)), ["joinrejected"], "{bad}");
            assert!(matches!(
                &closes(&a)[..],
                [(PeerId(1), LeaveReason::BadHello { .. })]
            ));
        }
    }

    #[test]
    fn hello_with_the_hosts_machine_id_is_rejected() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        let a = j.frame_received(t(0), PeerId(1), &hello(HOST, "Impostor"));
        assert_eq!(kinds(&sent_to(&a, 1)), ["joinrejected"]);
        assert_eq!(j.welcomed_count(), 0);
    }

    #[test]
    fn hello_strings_are_sanitised_and_bounded() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Browser);
        let long = "é".repeat(1000);
        let f = encode_json(&json!({
            "type": "hello", "machineId": " m1 ", "displayName": format!("  Bo\u{0}b\n{long}"),
            "appVersion": 3, "client": "midi-jam-web/0.1",
        }));
        let a = j.frame_received(t(0), PeerId(1), &f);
        let Some(PeerEvent::Joined { hello, hint, .. }) = events(&a).into_iter().next() else {
            panic!("{a:?}")
        };
        assert_eq!(*hint, ClientKind::Browser);
        assert_eq!(hello.machine_id, "m1");
        assert!(hello.display_name.starts_with("Bob"));
        assert_eq!(hello.display_name.chars().count(), MAX_NAME_CHARS - 2);
        assert_eq!(hello.app_version, None);
        assert_eq!(hello.client.as_deref(), Some("midi-jam-web/0.1"));
        assert!(!hello.has_history);

        let f = encode_json(&json!({"type": "hello", "machineId": "m2", "displayName": "\n "}));
        let _ = j.channel_opened(t(0), PeerId(2), ClientKind::Unknown);
        let a = j.frame_received(t(0), PeerId(2), &f);
        assert!(
            matches!(events(&a)[0], PeerEvent::Joined { hello, .. } if hello.display_name == DEFAULT_DISPLAY_NAME)
        );
    }

    #[test]
    fn a_second_hello_on_a_welcomed_connection_changes_nothing() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let a = j.frame_received(t(1), PeerId(1), &hello("other", "Eve"));
        assert!(a.is_empty());
        assert_eq!(j.peer(PeerId(1)).unwrap().machine_id(), Some("m1"));
    }

    #[test]
    fn chat_is_relayed_to_everyone_except_the_sender() {
        let mut j = jam();
        for id in 1..=3 {
            join(&mut j, 0, id);
        }
        let _ = j.channel_opened(t(0), PeerId(4), ClientKind::Unknown);
        let a = j.frame_received(t(1), PeerId(2), &chat("hello all"));
        assert!(sent_to(&a, 2).is_empty());
        assert!(sent_to(&a, 4).is_empty(), "not to peers without welcome");
        for id in [1, 3] {
            let f = sent_to(&a, id);
            assert_eq!(kinds(&f), ["chat"]);
            assert_eq!(body(&f[0])["text"], "hello all");
        }
        assert!(events(&a).iter().any(|e| matches!(e,
            PeerEvent::Chat { from: Some(PeerId(2)), text, .. } if text == "hello all")));
    }

    #[test]
    fn relayed_chat_carries_the_real_senders_identity() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let a = j.frame_received(t(1), PeerId(2), &chat("I am the host"));
        let f = sent_to(&a, 1);
        assert_eq!(
            body(&f[0]),
            &json!({
                "type": "chat",
                "sender": "m2",
                "displayName": "P2",
                "text": "I am the host",
                "timestamp": 1_700_000_000_000u64,
            })
        );
    }

    #[test]
    fn relayed_chat_drops_unknown_fields_and_bad_timestamps() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let f =
            encode_json(&json!({"type": "chat", "text": "x", "timestamp": "soon", "evil": [1]}));
        let a = j.frame_received(t(1), PeerId(2), &f);
        assert_eq!(
            body(&sent_to(&a, 1)[0]),
            &json!({"type": "chat", "sender": "m2", "displayName": "P2", "text": "x"})
        );
    }

    #[test]
    fn chat_over_4kb_is_dropped() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        // 4096 bytes of UTF-8 (2048 two-byte characters) is still fine...
        let a = j.frame_received(t(1000), PeerId(2), &chat(&"é".repeat(2048)));
        assert_eq!(kinds(&sent_to(&a, 1)), ["chat"]);
        // ...one byte more is not, even though it is far fewer than 4096
        // characters.
        let text = format!("{}x", "é".repeat(2048));
        let a = j.frame_received(t(2000), PeerId(2), &chat(&text));
        assert!(sent_to(&a, 1).is_empty());
        assert_eq!(
            events(&a),
            [&PeerEvent::ChatDropped {
                peer: PeerId(2),
                why: ChatDrop::TooLong {
                    bytes: 4097,
                    max: 4096
                }
            }]
        );
        assert!(
            j.peer(PeerId(2)).is_some(),
            "an oversized chat does not drop the peer"
        );
    }

    #[test]
    fn more_than_one_chat_per_200ms_per_sender_is_dropped() {
        let mut j = jam();
        for id in 1..=3 {
            join(&mut j, 0, id);
        }
        let relayed = |a: &[Action]| !sent_to(a, 1).is_empty();
        assert!(relayed(&j.frame_received(t(1000), PeerId(2), &chat("a"))));
        let a = j.frame_received(t(1199), PeerId(2), &chat("b"));
        assert!(!relayed(&a));
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::ChatDropped {
                why: ChatDrop::TooFast,
                ..
            }]
        ));
        // Another sender has its own budget.
        assert!(!sent_to(&j.frame_received(t(1199), PeerId(3), &chat("c")), 2).is_empty());
        // The interval runs from the last relayed message.
        assert!(relayed(&j.frame_received(t(1200), PeerId(2), &chat("d"))));
        // A flood every 100 ms gets every other message through.
        let through = (13..=22)
            .filter(|k| relayed(&j.frame_received(t(k * 100), PeerId(2), &chat("f"))))
            .count();
        assert_eq!(through, 5);
    }

    #[test]
    fn chat_without_text_is_dropped() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        for f in [
            json!({"type": "chat"}),
            json!({"type": "chat", "text": ""}),
            json!({"type": "chat", "text": 5}),
        ] {
            let a = j.frame_received(t(1), PeerId(2), &encode_json(&f));
            assert!(matches!(
                events(&a)[..],
                [PeerEvent::ChatDropped {
                    why: ChatDrop::NoText,
                    ..
                }]
            ));
        }
    }

    #[test]
    fn host_chat_goes_to_every_welcomed_peer_as_the_host() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let _ = j.channel_opened(t(0), PeerId(3), ClientKind::Unknown);
        let a = j.host_chat("welcome!", 1234).unwrap();
        for id in [1, 2] {
            assert_eq!(
                body(&sent_to(&a, id)[0]),
                &json!({"type": "chat", "sender": HOST, "displayName": "Hosty", "text": "welcome!", "timestamp": 1234})
            );
        }
        assert!(sent_to(&a, 3).is_empty());
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::Chat { from: None, .. }]
        ));
        // No rate limit for the host, but the same size limit.
        assert!(j.host_chat("again", 1235).is_ok());
        assert_eq!(j.host_chat("", 0), Err(ChatDrop::NoText));
        assert!(matches!(
            j.host_chat(&"x".repeat(4097), 0),
            Err(ChatDrop::TooLong { .. })
        ));
    }

    #[test]
    fn one_bad_frame_never_kills_a_peer() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let bad: [&[u8]; 5] = [
            &[0, 0],
            &[0, 0, 0, 9, b'x'],
            &encode(b"not json"),
            &encode(b"[1]"),
            &encode(br#"{"no":"type"}"#),
        ];
        for (k, f) in bad.iter().enumerate() {
            let a = j.frame_received(t(k as u64), PeerId(1), f);
            assert!(closes(&a).is_empty());
            assert!(
                matches!(events(&a)[..], [PeerEvent::BadFrame { in_row, .. }] if *in_row == k as u32 + 1)
            );
        }
        assert!(j.peer(PeerId(1)).is_some());
    }

    #[test]
    fn unprefixed_json_is_a_bad_frame() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let a = j.frame_received(t(1), PeerId(1), br#"{"type":"chat","text":"hi"}"#);
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::BadFrame {
                error: FrameError::TooLarge { .. },
                ..
            }]
        ));
    }

    #[test]
    fn twenty_bad_frames_in_a_row_drop_the_peer() {
        let mut j = jam();
        join(&mut j, 0, 1);
        for k in 1..20 {
            assert!(closes(&j.frame_received(t(k), PeerId(1), b"junk")).is_empty());
        }
        let a = j.frame_received(t(20), PeerId(1), b"junk");
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::Garbage)]);
        assert!(j.peer(PeerId(1)).is_none());
    }

    #[test]
    fn a_good_frame_resets_the_bad_frame_count() {
        let mut j = jam();
        join(&mut j, 0, 1);
        for round in 0..5 {
            for k in 0..19 {
                let _ = j.frame_received(t(round * 100 + k), PeerId(1), b"junk");
            }
            let _ = j.frame_received(
                t(round * 100 + 50),
                PeerId(1),
                &encode_json(&json!({"type": "heartbeat"})),
            );
        }
        assert!(j.peer(PeerId(1)).is_some());
    }

    #[test]
    fn garbage_before_hello_counts_too() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        let mut a = Vec::new();
        for k in 0..20 {
            a = j.frame_received(t(k), PeerId(1), b"junk");
        }
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::Garbage)]);
    }

    #[test]
    fn unknown_types_are_handed_up_and_otherwise_ignored() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let f = json!({"type": "playback", "action": "start", "tickPosition": 0});
        let a = j.frame_received(t(1), PeerId(1), &encode_json(&f));
        assert_eq!(
            a,
            vec![Action::Event(PeerEvent::Other {
                peer: PeerId(1),
                kind: "playback".into(),
                body: f
            })]
        );
        assert!(j
            .frame_received(t(1), PeerId(1), &encode_json(&json!({"type": "heartbeat"})))
            .is_empty());
    }

    #[test]
    fn inbound_frames_over_the_limit_are_bad_frames() {
        let mut j = Jam::new(JamConfig {
            max_frame: 16,
            ..cfg()
        });
        join(&mut j, 0, 1);
        let a = j.frame_received(
            t(1),
            PeerId(1),
            &encode_json(&json!({"type": "x", "pad": "0123456789"})),
        );
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::BadFrame {
                error: FrameError::TooLarge { .. },
                ..
            }]
        ));
    }

    #[test]
    fn payload_received_serves_stream_transports() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::MidiEditor);
        let mut d = framing::FrameDecoder::new(1024);
        d.push(&hello("m1", "Tcp")).unwrap();
        let p = d.next_frame().unwrap().unwrap();
        let a = j.payload_received(t(0), PeerId(1), &p);
        assert_eq!(kinds(&sent_to(&a, 1)), ["sessionWelcome"]);
    }

    #[test]
    fn channel_closed_reports_left_exactly_once() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let a = j.channel_closed(t(1), PeerId(1));
        assert!(closes(&a).is_empty(), "already closed");
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::Left { peer: PeerId(1), machine_id: Some(m), reason: LeaveReason::Closed }] if m == "m1"
        ));
        assert!(j.channel_closed(t(2), PeerId(1)).is_empty());
        assert!(j.frame_received(t(2), PeerId(1), &chat("late")).is_empty());
        assert!(j.tick(t(100_000)).is_empty());
    }

    #[test]
    fn kick_closes_a_welcomed_peer_and_refuses_a_pending_one() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let _ = j.channel_opened(t(0), PeerId(2), ClientKind::Unknown);
        let a = j.kick(t(1), PeerId(1), "bye");
        assert!(sent_to(&a, 1).is_empty());
        assert_eq!(
            closes(&a),
            [(
                PeerId(1),
                LeaveReason::Kicked {
                    reason: "bye".into()
                }
            )]
        );
        let a = j.kick(t(1), PeerId(2), "not now");
        let f = sent_to(&a, 2);
        assert_eq!(kinds(&f), ["joinrejected"]);
        assert_eq!(body(&f[0])["reason"], "removed by the host: not now");
        assert_eq!(closes(&a).len(), 1);
        assert!(j.kick(t(2), PeerId(1), "again").is_empty());
    }

    #[test]
    fn channels_waiting_for_hello_are_bounded() {
        let mut j = jam();
        for id in 1..=4 {
            assert!(closes(&j.channel_opened(t(0), PeerId(id), ClientKind::Unknown)).is_empty());
        }
        let a = j.channel_opened(t(0), PeerId(5), ClientKind::Unknown);
        assert_eq!(closes(&a), [(PeerId(5), LeaveReason::TooManyPending)]);
        assert_eq!(lefts(&a), [(PeerId(5), LeaveReason::TooManyPending)]);
        // Once one says hello, there is room again.
        let _ = j.frame_received(t(1), PeerId(1), &hello("m1", "A"));
        assert!(closes(&j.channel_opened(t(1), PeerId(5), ClientKind::Unknown)).is_empty());
    }

    #[test]
    fn a_duplicate_channel_opened_is_ignored() {
        let mut j = jam();
        join(&mut j, 0, 1);
        assert!(j
            .channel_opened(t(5), PeerId(1), ClientKind::Browser)
            .is_empty());
        assert!(j.peer(PeerId(1)).unwrap().is_welcomed());
    }

    #[test]
    fn broadcast_reaches_welcomed_peers_only() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let _ = j.channel_opened(t(0), PeerId(2), ClientKind::Unknown);
        let a = j.broadcast(&json!({"type": "playback", "action": "stop"}));
        assert_eq!(kinds(&sent_to(&a, 1)), ["playback"]);
        assert!(sent_to(&a, 2).is_empty());
    }

    #[test]
    fn next_deadline_names_the_next_tick_with_work() {
        let mut j = jam();
        assert_eq!(j.next_deadline(), None);
        let _ = j.channel_opened(t(1000), PeerId(1), ClientKind::Unknown);
        assert_eq!(j.next_deadline(), Some(t(11_000)));
        let _ = j.frame_received(t(2000), PeerId(1), &hello("m1", "A"));
        assert_eq!(j.next_deadline(), Some(t(12_000)));
        let _ = j.tick(t(12_000));
        assert_eq!(j.next_deadline(), Some(t(22_000)));
        let _ = j.tick(t(22_000));
        assert_eq!(j.next_deadline(), Some(t(32_000)), "silence deadline");
    }

    #[test]
    fn time_going_backwards_does_not_panic_or_drop() {
        let mut j = jam();
        join(&mut j, 50_000, 1);
        assert!(closes(&j.tick(t(0))).is_empty());
        let _ = j.frame_received(t(10), PeerId(1), &chat("x"));
        let _ = j.frame_received(t(5), PeerId(1), &chat("y"));
        assert!(j.peer(PeerId(1)).is_some());
    }

    use crate::test_rng::XorShift;

    #[test]
    fn random_traffic_never_panics_and_keeps_every_rule() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let mut j = Jam::new(JamConfig {
            max_peers: 3,
            max_pending: 2,
            ..cfg()
        });
        let mut now = 0u64;
        // Per peer id: whether the welcome has been sent on its current
        // channel, and whether it was closed by us.
        let mut welcomed = std::collections::HashSet::new();
        for step in 0..20_000 {
            now += rng.below(3000) as u64;
            let peer = PeerId(rng.below(8) as u64);
            let actions = match rng.below(10) {
                0 => j.channel_opened(t(now), peer, ClientKind::Unknown),
                1 => j.channel_closed(t(now), peer),
                2 => j.tick(t(now)),
                3 => j.kick(t(now), peer, "x"),
                4 => j.frame_received(t(now), peer, &hello(&format!("m{}", rng.below(5)), "N")),
                5 => j.frame_received(t(now), peer, &chat("hi")),
                6 => j.frame_received(t(now), peer, &encode(framing::PING)),
                7 => {
                    let n = rng.below(40);
                    let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    j.frame_received(t(now), peer, &junk)
                }
                8 => j.host_chat("host", now).unwrap_or_default(),
                _ => {
                    let f = json!({"type": "hello", "machineId": rng.next() % 3});
                    j.frame_received(t(now), peer, &encode_json(&f))
                }
            };
            for a in &actions {
                match a {
                    Action::Send { peer, bytes } => {
                        let f = decode(bytes, usize::MAX).expect("valid frame");
                        if !welcomed.contains(peer) {
                            assert!(
                                matches!(f.kind(), Some("sessionWelcome" | "joinrejected") | None),
                                "step {step}: {f:?} before welcome to {peer}"
                            );
                            if f.kind() == Some("sessionWelcome") {
                                welcomed.insert(*peer);
                            }
                        }
                    }
                    Action::Close { peer, .. } => {
                        welcomed.remove(peer);
                    }
                    Action::Event(PeerEvent::Left { peer, .. }) => {
                        welcomed.remove(peer);
                    }
                    Action::Event(_) => {}
                }
            }
            assert!(j.welcomed_count() <= 3);
            assert!(j.peers().count() <= 5);
            let mids: Vec<_> = j.peers().filter_map(|p| p.machine_id()).collect();
            let mut dedup = mids.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(mids.len(), dedup.len(), "one connection per machine");
        }
    }
}
