//! What callers get back from the answerer and a link: why something failed
//! ([`RtcError`]), the [`Answered`] bundle, and the [`LinkEvent`]s and
//! [`LinkState`]s of a link, mirrored from webrtc-rs so callers do not depend
//! on its types. Plain data; the tasks that produce it are in `link`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use webrtc::peer_connection::RTCPeerConnectionState;

use super::PeerLink;

/// Why answering or sending failed. Every variant's message is meant to be
/// shown or logged as-is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    /// The offer is not SDP webrtc-rs can use (unparseable, or rejected when
    /// applied as the remote description). Comes from the joiner's input.
    #[error("invalid SDP offer: {0}")]
    InvalidOffer(String),
    /// The offer has no `m=application` section, i.e. no data channel: a
    /// joiner that offers only audio/video cannot take part in a jam.
    #[error("the SDP offer has no data channel section (m=application)")]
    NoDataChannel,
    /// Building the connection or its answer failed on our side (socket
    /// binding, a malformed ICE server URL, no usable interface, ...).
    #[error("could not set up the WebRTC connection: {0}")]
    Setup(String),
    /// Gathering produced no candidate before the answer was due, so the
    /// joiner could not reach us; usually `bind_ips` names no local address.
    #[error("no ICE candidate was gathered within {0:?}; check bind_ips")]
    NoCandidates(Duration),
    /// No open data channel has this label (not opened yet, or closed).
    #[error("no open data channel labelled {0:?}")]
    NoSuchChannel(String),
    /// The message is larger than the negotiated maximum message size.
    #[error("a message of {len} bytes exceeds the negotiated maximum of {max} bytes")]
    MessageTooLarge {
        /// Size of the rejected message.
        len: usize,
        /// The negotiated maximum (at most [`MAX_MESSAGE_SIZE`](super::MAX_MESSAGE_SIZE)).
        max: usize,
    },
    /// [`PeerLink::try_send`] found [`SEND_BUFFER_LIMIT`](super::SEND_BUFFER_LIMIT) bytes already
    /// waiting for the joiner's acknowledgement.
    #[error("the send buffer of the data channel is full")]
    SendBufferFull,
    /// The link has been closed (by us, or after the connection failed).
    #[error("the WebRTC link is closed")]
    Closed,
    /// Any other failure reported by webrtc-rs while sending.
    #[error("sending failed: {0}")]
    Send(String),
    /// webrtc-rs panicked while processing the offer. Caught so a hostile
    /// offer can never take the host down; report it as a bug upstream.
    #[error("internal WebRTC error while answering: {0}")]
    Internal(String),
}

/// What [`answer_offer`](super::answer_offer) hands back for one joiner.
pub struct Answered {
    /// The complete answer SDP (non-trickle: candidates inline) to send back
    /// through the rendezvous.
    pub answer_sdp: String,
    /// Handle to send on and close the connection. Dropping the last clone
    /// closes the connection.
    pub link: PeerLink,
    /// The link's events; bounded, see the module docs. After the link
    /// closes it yields what is still queued, ending with `State(Closed)`,
    /// then `None`.
    pub events: mpsc::Receiver<LinkEvent>,
}

impl fmt::Debug for Answered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answered")
            .field("answer_sdp", &self.answer_sdp)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// Something that happened on a link, in order per data channel.
///
/// Events of different channels, and state events, are produced by different
/// tasks: their relative order is only approximately the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The joiner opened a data channel; [`PeerLink::send`] with this label
    /// works from now on.
    ChannelOpen {
        /// The label the joiner gave it (`midieditor`, `midi`, ...).
        label: String,
    },
    /// One whole message arrived on a channel.
    Message {
        /// Label of the channel it arrived on.
        label: String,
        /// The message payload (at most [`MAX_MESSAGE_SIZE`](super::MAX_MESSAGE_SIZE) bytes).
        data: Bytes,
        /// `true` for a text (string) message, `false` for binary. MidiEditor
        /// frames are binary; a text frame usually means a confused peer.
        is_text: bool,
    },
    /// A channel closed (the joiner closed it, or the link closed).
    ChannelClosed {
        /// Label of the closed channel.
        label: String,
    },
    /// The connection state changed. `Failed` and `Closed` are terminal: after
    /// `Failed` the link closes itself and `State(Closed)` follows.
    State(LinkState),
}

/// Connection state of a link, mirroring `RTCPeerConnectionState` (which
/// combines ICE and DTLS) so callers do not depend on webrtc-rs types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Nothing has happened yet.
    New,
    /// ICE checks or the DTLS handshake are in progress.
    Connecting,
    /// ICE and DTLS are up: data can flow.
    Connected,
    /// Consent checks stopped getting answers (≥ 5 s). May recover; becomes
    /// `Failed` after another 25 s. A MidiEditor joiner drops the session when
    /// *its* side sees this state.
    Disconnected,
    /// The connection is lost for good; the link closes itself.
    Failed,
    /// The link is closed; nothing more will happen on it.
    Closed,
}

impl From<RTCPeerConnectionState> for LinkState {
    fn from(state: RTCPeerConnectionState) -> Self {
        match state {
            RTCPeerConnectionState::Connecting => Self::Connecting,
            RTCPeerConnectionState::Connected => Self::Connected,
            RTCPeerConnectionState::Disconnected => Self::Disconnected,
            RTCPeerConnectionState::Failed => Self::Failed,
            RTCPeerConnectionState::Closed => Self::Closed,
            _ => Self::New,
        }
    }
}
