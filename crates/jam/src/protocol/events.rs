//! The state machine's vocabulary towards the I/O layer: who a peer is
//! ([`PeerId`], [`ClientKind`], [`PeerInfo`]), what a call on the jam asks
//! for ([`Action`]) and reports ([`PeerEvent`]), and why a peer left or a
//! chat was dropped. Plain data, kept apart from the rules that produce it.

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use types::Millis;

use super::hello::Hello;
use crate::framing::FrameError;

/// A channel (one joiner's connection), named by the I/O layer. Ids must not
/// be reused while the old channel is still known to the [`Jam`](super::Jam); a counter
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
    /// The transport reported the link lost (ICE consent checks unanswered
    /// for ~5 s: a killed, unplugged or sleeping peer), long before the
    /// protocol's silence timeout would.
    LinkLost,
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
            LeaveReason::LinkLost => f.write_str("the connection was lost"),
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
