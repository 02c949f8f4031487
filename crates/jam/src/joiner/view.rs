//! What a join shows and says: its phase and steps, the view a UI renders,
//! the events, and the errors in a musician's words.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// The host ended the session saying it comes back at once under the
    /// same code (`sessionEnded` with `"restarting": true`): a front end
    /// may join again by itself.
    pub host_restarting: bool,
    /// Milliseconds from the start to the welcome.
    pub join_ms: Option<f64>,
    /// Something worth a look that is not an error (a legacy host, a shaky
    /// connection).
    pub notice: Option<String>,
    /// The last song the host sent (`filetransfer`): its file name and size
    /// in bytes. The bytes themselves are in the [`JoinEvent::Frame`] (up to
    /// [`super::MAX_EVENT_FRAME`]).
    pub song: Option<JoinSong>,
}

/// A song the host shared, as a Join screen shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinSong {
    pub filename: String,
    pub bytes: u64,
}

impl JoinSong {
    /// From a `filetransfer` frame: `filename` and the decoded size of
    /// `bytesB64` (counted from its length, without decoding it).
    pub fn from_frame(body: &serde_json::Value) -> Option<JoinSong> {
        let filename = body.get("filename")?.as_str()?.chars().take(256).collect();
        let b64 = body.get("bytesB64")?.as_str()?.trim_end();
        let pad = b64.bytes().rev().take_while(|&c| c == b'=').count().min(2) as u64;
        let bytes = (b64.len() as u64 / 4 * 3).saturating_sub(pad);
        Some(JoinSong { filename, bytes })
    }
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
    /// `body` is `null` for frames over [`MAX_EVENT_FRAME`](super::MAX_EVENT_FRAME) bytes (events are
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
    /// [`Joiner::leave`](super::Joiner::leave) before the join finished.
    #[error("Joining was cancelled.")]
    Cancelled,
}

/// Why [`Joiner::send_midi`](super::Joiner::send_midi) did not send.
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
