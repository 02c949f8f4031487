//! WebRTC glue: our app as the **answering** peer of one joiner.
//!
//! A joiner (MidiEditor, our own app in join mode, a browser page) creates the
//! offer and its data channel(s); we answer. [`answer_offer`] builds one
//! webrtc-rs `PeerConnection` for that joiner and returns the answer SDP, a
//! cheap [`PeerLink`] handle to send on and inspect, and a bounded stream of
//! [`LinkEvent`]s (channels opening and closing, messages, connection state).
//!
//! # Why it is shaped like this
//!
//! - **Non-trickle.** MidiEditor (libdatachannel) publishes a complete SDP and
//!   expects one back: it never trickles candidates through the rendezvous.
//!   So the answer is only returned once ICE gathering completes, or once
//!   [`RtcConfig::gather_timeout`] expires — whichever comes first — with every
//!   candidate gathered so far inline. An unreachable STUN/TURN server
//!   therefore costs a joiner at most that cap.
//! - **Raw-IP host candidates only.** libjuice cannot resolve `xxxx.local`
//!   mDNS candidates, so we never gather them (webrtc-rs's default mDNS mode
//!   would not either, but it opens a multicast socket per connection). With
//!   [`RtcConfig::resolve_mdns`] we still *resolve* the `.local` candidates
//!   browsers send; without it no multicast socket is opened at all.
//! - **Fast loopback/LAN setup.** webrtc-rs paces connectivity checks at
//!   200 ms; we check every 20 ms while connecting. Once connected the agent
//!   falls back to its 200 ms housekeeping tick and 2 s consent checks. We
//!   also take the DTLS *server* role when the offer allows it (see
//!   `answering_dtls_role` in the source for the webrtc-rs driver stall this
//!   avoids).
//!   Measured on loopback (debug build): offer → channel open ~32 ms with a
//!   prompt offerer; ~430 ms with a stock webrtc-rs 0.21.1 offerer, all of it
//!   spent in the *offerer's* driver (see `tests/rtc_loopback.rs`).
//! - **Consent for the life of the link.** MidiEditor treats the states
//!   Disconnected, Failed and Closed as fatal. The connection's driver task
//!   answers ICE consent checks for as long as the [`PeerLink`] lives; nothing
//!   here ever blocks that task (callbacks only hand work to other tasks).
//!
//! # Max message size: what we ship and why
//!
//! The answer advertises `a=max-message-size:262144` ([`MAX_MESSAGE_SIZE`],
//! 256 KiB), and that is both what a joiner may send us and what we may send.
//! It is the hard ceiling of `rtc` 0.21.1, found in its source:
//!
//! - `SctpMaxMessageSize::as_usize()` clamps every setting, `Unbounded`
//!   included, to `SctpMaxMessageSize::MAX_MESSAGE_SIZE = 262144`
//!   (`rtc/src/peer_connection/configuration/setting_engine.rs`); that clamped
//!   value is what `internal.rs` writes into the SDP's `a=max-message-size`.
//! - When SCTP starts (`rtc/src/peer_connection/transport/sctp/mod.rs`), the
//!   negotiated size `min(remote max-message-size, 262144)` sizes the
//!   reassembly buffer (`internal_buffer`) and the SCTP association's
//!   `max_message_size`. Inbound messages are reassembled with
//!   `chunks.to_payload(internal_buffer.len())`, which fails on anything
//!   larger, and outbound `send()` rejects anything larger with
//!   `ErrOutboundPacketTooLarge`.
//!
//! So advertising more than 256 KiB (e.g. by editing the SDP) would invite a
//! joiner to send messages this stack cannot reassemble: `to_payload` fails,
//! the error is only logged, and the message is lost on a channel the joiner
//! believes reliable. 256 KiB is the largest value that really works, and an
//! integration test sends exactly that much, both ways (~11 ms on loopback).
//! MidiEditor honours the answer's value (it sends at most
//! `min(answer, 16 MiB)`), so its frames to us must fit in 256 KiB; bigger
//! payloads (file transfer, the "several MiB") need application-level
//! chunking or a patched `rtc`. Without the attribute in the answer it would
//! be 64 KiB.
//!
//! Raising the ceiling with a patched `rtc` (only the constant above) was
//! tried outside this workspace: 4 MiB and 16 MiB messages then arrive intact,
//! **provided** the receiver's SCTP receive buffer
//! (`with_sctp_max_receive_buffer_size`, default 1 MiB) is at least the
//! message size; with the default window a 2 MiB or 4 MiB message stalls
//! forever and a 1,000,000-byte one takes 3 s. The assertion below fails to
//! compile if the constant changes, so that both are revisited together.
//!
//! # Backpressure and bounds
//!
//! - Events: one bounded channel of [`EVENT_CHANNEL_CAPACITY`] per link. A
//!   slow consumer gets **backpressure, not loss**: our per-channel forwarding
//!   task waits for room, webrtc-rs then holds further messages in its own
//!   bounded per-channel queue (256), stops draining SCTP, the receive window
//!   (1 MiB) closes and the joiner's sends stall. The connection itself (ICE
//!   consent, DTLS, SCTP timers) keeps running, so a slow consumer never
//!   disconnects a joiner. Recovery is not instant, though: the joiner
//!   resumes at its own zero-window-probe pace (a stock webrtc-rs sender took
//!   0.8–6.6 s to deliver a 3 MB backlog once we read again), so the consumer
//!   should keep up rather than rely on this. Connection-state events are
//!   coalesced: a lagging
//!   consumer may skip an intermediate state, but always sees the latest one,
//!   and `State(Closed)` is always the last event of the stream.
//! - Sends: each channel may have at most [`SEND_BUFFER_LIMIT`] bytes queued
//!   but not yet acknowledged. [`PeerLink::send`] waits for room (use
//!   `tokio::time::timeout` around it to bound the wait); [`PeerLink::try_send`]
//!   fails fast with [`RtcError::SendBufferFull`] instead, which suits a hub
//!   relaying to many peers where one stalled peer must not hold up the rest.
//!
//! # Runtime requirements
//!
//! Everything here must run inside a Tokio runtime: the connection's driver is
//! spawned on the ambient runtime. Use a multi-threaded runtime and never block
//! its threads: a blocked driver cannot answer consent checks.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ::rtc::ice::mdns::MulticastDnsMode;
use ::rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use ::rtc::peer_connection::transport::RTCDtlsRole;
use ::rtc::shared::error::Error as WebrtcError;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch, OnceCell};
use tracing::{debug, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateType, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState,
    RTCSessionDescription, RTCStatsReportEntry, SettingEngineBuilder, StatsSelector,
};

/// The `a=max-message-size` our answers advertise, in bytes (256 KiB).
///
/// It is the largest message `rtc` 0.21.1 can send or reassemble; see the
/// module documentation for the evidence. Exposed so callers can split larger
/// payloads before they reach [`PeerLink::send`].
pub const MAX_MESSAGE_SIZE: usize = 262_144;

// If a future `rtc` moves its ceiling, this fails to compile rather than
// silently advertising a size the stack clamps to something else.
const _: () = assert!(MAX_MESSAGE_SIZE == SctpMaxMessageSize::MAX_MESSAGE_SIZE as usize);

/// Capacity of each link's event channel. Bounded so a stalled consumer
/// pushes back on the joiner (see the module docs) instead of growing memory.
pub const EVENT_CHANNEL_CAPACITY: usize = 256;

/// Per-channel cap on bytes handed to a send but not yet acknowledged by the
/// joiner (1 MiB: four maximum-size messages, about one SCTP receive window).
/// Without a cap webrtc-rs buffers sends to a stalled peer without limit.
pub const SEND_BUFFER_LIMIT: usize = 1 << 20;

/// ICE connectivity-check interval while connecting. webrtc-rs defaults to
/// 200 ms, which quantises connection setup to 200 ms steps; 20 ms brings a
/// loopback or LAN setup down to tens of milliseconds. It only applies while
/// checking: once connected the agent uses its normal keep-alive cadence.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// A STUN or TURN server, as the host's settings list them.
///
/// Our own type rather than webrtc-rs's, so callers (settings, the UI) do not
/// depend on the WebRTC crate and its exact version.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, ... (several URLs of
    /// one server share its credentials).
    pub urls: Vec<String>,
    /// TURN user name; `None` for STUN.
    pub username: Option<String>,
    /// TURN password; `None` for STUN.
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    // Hand-written so a logged configuration never leaks a TURN password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The WebRTC form of a parsed STUN/TURN entry: its URL with the default
/// port filled in, and its credentials (a STUN server has none).
impl From<&types::IceServer> for IceServer {
    fn from(server: &types::IceServer) -> Self {
        let turn = server.scheme().is_turn();
        IceServer {
            urls: vec![server.url()],
            username: server.username().filter(|_| turn).map(str::to_owned),
            credential: server.credential().filter(|_| turn).map(str::to_owned),
        }
    }
}

impl From<types::IceServer> for IceServer {
    fn from(server: types::IceServer) -> Self {
        IceServer::from(&server)
    }
}

/// How [`answer_offer`] builds a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcConfig {
    /// STUN/TURN servers used to gather server-reflexive and relay
    /// candidates. Empty for LAN-only use (and always in tests: no traffic may
    /// leave the machine there).
    pub ice_servers: Vec<IceServer>,
    /// Hard cap on ICE gathering. The answer is returned with whatever was
    /// gathered by then, so an unreachable STUN/TURN server can never hold a
    /// joiner longer than this. Without ICE servers gathering takes a few ms.
    pub gather_timeout: Duration,
    /// Addresses to gather host candidates from, one UDP socket each on an
    /// ephemeral port. Empty means every non-loopback, non-link-local address
    /// of the machine. Loopback is never picked implicitly, so loopback use
    /// (tests) must list `127.0.0.1` explicitly.
    pub bind_ips: Vec<IpAddr>,
    /// Resolve the `xxxx.local` candidates browsers send, by mDNS (opens a
    /// multicast socket on port 5353 per connection). When `false`, no
    /// multicast is done and such candidates are ignored (a browser joiner
    /// may still connect through peer-reflexive candidates). Our own
    /// candidates are raw IPs either way: MidiEditor cannot resolve `.local`.
    pub resolve_mdns: bool,
}

impl Default for RtcConfig {
    /// Production defaults for a LAN host: no ICE servers, a 2 s gathering cap
    /// (MidiEditor's own minimum gathering timeout), every interface, and
    /// browser `.local` candidates resolved.
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            gather_timeout: Duration::from_secs(2),
            bind_ips: Vec::new(),
            resolve_mdns: true,
        }
    }
}

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
        /// The negotiated maximum (at most [`MAX_MESSAGE_SIZE`]).
        max: usize,
    },
    /// [`PeerLink::try_send`] found [`SEND_BUFFER_LIMIT`] bytes already
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

/// What [`answer_offer`] hands back for one joiner.
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
        /// The message payload (at most [`MAX_MESSAGE_SIZE`] bytes).
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

// The route and statistics types are shared with the peer list, which
// shows them; they live with it so the pure registry needs nothing from here.
pub use crate::registry::{LinkStats, Route};

/// Cheap, clonable handle to one joiner's connection.
///
/// The connection lives as long as any clone does: dropping the last clone
/// closes it (in a spawned task), so keep one wherever the joiner is tracked.
/// Prefer [`PeerLink::close`], which finishes before it returns.
#[derive(Clone)]
pub struct PeerLink {
    inner: Arc<LinkInner>,
}

impl fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerLink")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Owns the connection; exists once per link so its `Drop` runs when the
/// last [`PeerLink`] goes.
struct LinkInner {
    core: Arc<Core>,
    pc: Arc<dyn PeerConnection>,
}

impl Drop for LinkInner {
    fn drop(&mut self) {
        // The driver task holds the connection's internals, not this handle:
        // without an explicit close it would keep its sockets and keep
        // answering consent checks forever.
        if self.core.closed.load(Ordering::Acquire) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (core, pc) = (self.core.clone(), self.pc.clone());
                runtime.spawn(async move { shutdown(&core, &pc).await });
            }
            Err(_) => warn!("PeerLink dropped outside a Tokio runtime; connection not closed"),
        }
    }
}

/// State shared between the link handle, the webrtc-rs event handler (which
/// runs on the connection's driver task) and the forwarding tasks.
struct Core {
    /// Handed to each new channel's forwarding task; taken on close, so the
    /// event stream ends once the running tasks finish.
    forwarding: Mutex<Option<Forwarding>>,
    /// Open channels by label (the latest one wins if a label repeats).
    channels: Mutex<HashMap<String, Arc<dyn DataChannel>>>,
    /// Latest connection state. A watch, so the driver's callback never waits
    /// for our consumer.
    state_tx: watch::Sender<LinkState>,
    /// Becomes `true` when ICE gathering completes.
    gathered_tx: watch::Sender<bool>,
    /// Set as soon as closing starts.
    closed: AtomicBool,
    /// Runs the close sequence once; concurrent closers wait for it.
    close_once: OnceCell<()>,
    /// The connection, weakly (it owns the handler that owns this), for
    /// closing the link from a forwarding task after `Failed`.
    pc: OnceLock<Weak<dyn PeerConnection>>,
}

/// Locks a std mutex, ignoring poisoning: every critical section here is a
/// plain map or option update that cannot leave the data half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Closes the connection once and reports `Closed`; later or concurrent
/// calls wait for the first to finish.
async fn shutdown(core: &Arc<Core>, pc: &Arc<dyn PeerConnection>) {
    core.close_once
        .get_or_init(|| async {
            core.closed.store(true, Ordering::Release);
            // No new forwarding tasks: the stream ends when the running ones
            // have delivered their last events.
            lock(&core.forwarding).take();
            if let Err(err) = pc.close().await {
                debug!("closing the peer connection: {err}");
            }
            lock(&core.channels).clear();
            core.state_tx.send_replace(LinkState::Closed);
        })
        .await;
}

/// Receives webrtc-rs callbacks. They run on the connection's driver task,
/// which also answers consent checks, so each one only records or spawns.
struct Handler {
    core: Arc<Core>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.core.gathered_tx.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!("peer connection state: {state}");
        // After close we have already reported `Closed` ourselves.
        if !self.core.closed.load(Ordering::Acquire) {
            self.core.state_tx.send_replace(state.into());
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let Some(forwarding) = lock(&self.core.forwarding).clone() else {
            return;
        };
        tokio::spawn(forward_channel(self.core.clone(), channel, forwarding));
    }
}

/// What a channel's forwarding task needs: where events go, and a token
/// whose drop tells the state task that this channel has said its last word.
#[derive(Clone)]
struct Forwarding {
    events: mpsc::Sender<LinkEvent>,
    /// Never sent on; the receiver in `forward_states` sees the channel
    /// close once every forwarding task (and `Core`'s copy) has dropped it.
    _alive: mpsc::Sender<()>,
}

/// Hands an event to the consumer, waiting for room (backpressure). A
/// dropped receiver is not an error: the events are discarded so that the
/// channel keeps draining and the connection stays healthy.
async fn deliver(events: &mpsc::Sender<LinkEvent>, event: LinkEvent) {
    let _ = events.send(event).await;
}

/// One task per data channel: registers it for [`PeerLink::send`] when it
/// opens and forwards its events in order until it closes.
async fn forward_channel(core: Arc<Core>, channel: Arc<dyn DataChannel>, forwarding: Forwarding) {
    let events = &forwarding.events;
    let Ok(label) = channel.label().await else {
        return; // closed before we could look at it
    };
    let id = channel.id();
    let mut opened = false;
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                lock(&core.channels).insert(label.clone(), channel.clone());
                opened = true;
                let label = label.clone();
                deliver(events, LinkEvent::ChannelOpen { label }).await;
            }
            DataChannelEvent::OnMessage(message) => {
                let event = LinkEvent::Message {
                    label: label.clone(),
                    data: message.data.freeze(),
                    is_text: message.is_string,
                };
                deliver(events, event).await;
            }
            DataChannelEvent::OnClose => break,
            DataChannelEvent::OnError => debug!("data channel {label:?} reported an error"),
            _ => {}
        }
    }
    {
        let mut channels = lock(&core.channels);
        if channels.get(&label).is_some_and(|open| open.id() == id) {
            channels.remove(&label);
        }
    }
    if opened {
        deliver(events, LinkEvent::ChannelClosed { label }).await;
    }
}

/// Forwards connection-state changes. After `Failed` it closes the link (an
/// ICE agent in `Failed` has discarded its candidates and cannot recover
/// without a restart we never do), so `Closed` follows. `Closed` is held back
/// until every channel task has delivered its `ChannelClosed`, so that it is
/// the stream's last event.
async fn forward_states(
    core: Arc<Core>,
    mut states: watch::Receiver<LinkState>,
    events: mpsc::Sender<LinkEvent>,
    mut channel_tasks_alive: mpsc::Receiver<()>,
) {
    while states.changed().await.is_ok() {
        let state = *states.borrow_and_update();
        if state == LinkState::Closed {
            while channel_tasks_alive.recv().await.is_some() {}
            deliver(&events, LinkEvent::State(state)).await;
            break;
        }
        deliver(&events, LinkEvent::State(state)).await;
        if state == LinkState::Failed {
            if let Some(pc) = core.pc.get().and_then(Weak::upgrade) {
                shutdown(&core, &pc).await;
            }
        }
    }
}

/// Answers one joiner's offer: builds a connection, applies the offer,
/// creates the answer, waits for ICE gathering to complete or for
/// [`RtcConfig::gather_timeout`], and returns the complete answer SDP.
///
/// Must be called inside a Tokio runtime. The work runs in a spawned task, so
/// a panic inside webrtc-rs on a hostile offer becomes
/// [`RtcError::Internal`] instead of unwinding into the caller, and dropping
/// this future midway still cleans the connection up.
pub async fn answer_offer(offer_sdp: &str, cfg: &RtcConfig) -> Result<Answered, RtcError> {
    let (offer_sdp, cfg) = (offer_sdp.to_owned(), cfg.clone());
    match tokio::spawn(answer(offer_sdp, cfg)).await {
        Ok(result) => result,
        Err(err) if err.is_panic() => {
            let payload = err.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_owned());
            Err(RtcError::Internal(message))
        }
        Err(err) => Err(RtcError::Internal(err.to_string())),
    }
}

/// When a connection last failed to open its mDNS socket, so the joiners
/// right after it do not pay for the failed attempt again. The failure is
/// not taken as permanent: on Linux it usually means no route to the mDNS
/// group yet (a network still coming up), so it is retried after
/// [`MDNS_RETRY_AFTER`].
static MDNS_FAILED_AT: Mutex<Option<Instant>> = Mutex::new(None);
const MDNS_RETRY_AFTER: Duration = Duration::from_secs(60);

fn mdns_recently_failed() -> bool {
    MDNS_FAILED_AT
        .lock()
        .map(|t| t.is_some_and(|at| at.elapsed() < MDNS_RETRY_AFTER))
        .unwrap_or(false)
}

/// Builds one connection with our settings; `mdns` chooses whether remote
/// `.local` candidates are resolved (we never gather them).
async fn build_connection(
    cfg: &RtcConfig,
    dtls_role: RTCDtlsRole,
    udp_addrs: &[SocketAddr],
    core: &Arc<Core>,
    mdns: bool,
) -> Result<impl PeerConnection + 'static, WebrtcError> {
    let setting_engine = SettingEngineBuilder::new()
        // Never gather `.local` candidates; resolve the remote ones only on
        // request, since that opens a multicast socket.
        .with_multicast_dns_mode(if mdns {
            MulticastDnsMode::QueryOnly
        } else {
            MulticastDnsMode::Disabled
        })
        // We choose the bound addresses ourselves; loopback ones are only
        // there when listed explicitly, and then they are wanted.
        .with_include_loopback_candidate(true)
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), None)
        .with_answering_dtls_role(dtls_role)
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(MAX_MESSAGE_SIZE as u32))
        .build();
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(cfg.ice_servers.iter().map(to_webrtc_ice_server).collect())
        .build();

    PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_setting_engine(setting_engine)
        .with_handler(Arc::new(Handler { core: core.clone() }))
        .with_udp_addrs(udp_addrs.to_vec())
        .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
        .build()
        .await
}

async fn answer(offer_sdp: String, cfg: RtcConfig) -> Result<Answered, RtcError> {
    let (offer, dtls_role) = parse_offer(offer_sdp)?;
    let udp_addrs = bind_addrs(&cfg.bind_ips)?;

    let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let (alive_tx, alive_rx) = mpsc::channel(1);
    let (state_tx, state_rx) = watch::channel(LinkState::New);
    let (gathered_tx, mut gathered_rx) = watch::channel(false);
    let core = Arc::new(Core {
        forwarding: Mutex::new(Some(Forwarding {
            events: events_tx.clone(),
            _alive: alive_tx,
        })),
        channels: Mutex::new(HashMap::new()),
        state_tx,
        gathered_tx,
        closed: AtomicBool::new(false),
        close_once: OnceCell::new(),
        pc: OnceLock::new(),
    });

    // Resolving `.local` candidates needs a multicast socket, which some
    // hosts cannot open (no multicast-capable interface, a sandbox). Then we
    // answer without it rather than refuse every joiner: raw-IP candidates
    // (MidiEditor's, and browsers' with a routable address) still work.
    let want_mdns = cfg.resolve_mdns && !mdns_recently_failed();
    let pc = match build_connection(&cfg, dtls_role, &udp_addrs, &core, want_mdns).await {
        Ok(pc) => pc,
        Err(err) if want_mdns => {
            if let Ok(mut at) = MDNS_FAILED_AT.lock() {
                *at = Some(Instant::now());
            }
            warn!("cannot open the mDNS socket ({err}); .local candidates will not be resolved");
            build_connection(&cfg, dtls_role, &udp_addrs, &core, false)
                .await
                .map_err(|err| RtcError::Setup(err.to_string()))?
        }
        Err(err) => return Err(RtcError::Setup(err.to_string())),
    };
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let _ = core.pc.set(Arc::downgrade(&pc));
    // From here on the link owns the connection: any early return drops it,
    // and dropping it closes the connection.
    let link = PeerLink {
        inner: Arc::new(LinkInner {
            core: core.clone(),
            pc: pc.clone(),
        }),
    };

    pc.set_remote_description(offer)
        .await
        .map_err(|err| RtcError::InvalidOffer(err.to_string()))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|err| RtcError::Setup(format!("creating the answer: {err}")))?;
    pc.set_local_description(answer)
        .await
        .map_err(|err| RtcError::Setup(format!("applying the answer: {err}")))?;

    let gathered = tokio::time::timeout(cfg.gather_timeout, gathered_rx.wait_for(|done| *done))
        .await
        .is_ok();
    if !gathered {
        debug!(
            "ICE gathering still running after {:?}; answering with the candidates so far",
            cfg.gather_timeout
        );
    }
    let answer_sdp = pc
        .local_description()
        .await
        .map(|description| description.sdp)
        .ok_or_else(|| RtcError::Setup("no local description after answering".to_owned()))?;
    if !answer_sdp.contains("a=candidate:") {
        return Err(RtcError::NoCandidates(cfg.gather_timeout));
    }

    tokio::spawn(forward_states(core, state_rx, events_tx, alive_rx));
    Ok(Answered {
        answer_sdp,
        link,
        events: events_rx,
    })
}

/// Parses the offer and checks it carries a data channel, so that anything
/// unusable is refused with a clear error before sockets are opened.
fn parse_offer(offer_sdp: String) -> Result<(RTCSessionDescription, RTCDtlsRole), RtcError> {
    if offer_sdp.trim().is_empty() {
        return Err(RtcError::InvalidOffer("the offer is empty".to_owned()));
    }
    let offer = RTCSessionDescription::offer(offer_sdp)
        .map_err(|err| RtcError::InvalidOffer(err.to_string()))?;
    let parsed = offer
        .unmarshal()
        .map_err(|err| RtcError::InvalidOffer(err.to_string()))?;
    let Some(data_section) = parsed
        .media_descriptions
        .iter()
        .find(|media| media.media_name.media == "application")
    else {
        return Err(RtcError::NoDataChannel);
    };
    let setup = data_section
        .attribute("setup")
        .flatten()
        .or_else(|| parsed.attribute("setup").map(String::as_str));
    Ok((offer, answering_dtls_role(setup)))
}

/// Our DTLS role for an offer's `a=setup` value (RFC 5763 §5).
///
/// When the offerer lets us choose (`actpass`, what MidiEditor and browsers
/// send) we take the DTLS **server** role (`a=setup:passive`), against
/// webrtc-rs's default of client. The reason is a latency bug in the webrtc
/// 0.21.1 driver: packets the core produces while the driver pumps events
/// (the DTLS ClientHello after ICE connects, the SCTP INIT after DTLS
/// completes, the DCEP OPEN after SCTP connects) are not flushed until the
/// driver's next timer tick, which is 200 ms once ICE is connected. The DTLS
/// client also starts SCTP, so as client we measured offer → channel open at
/// ~430 ms on loopback. As server every packet we send answers one we received,
/// and replies are flushed at once. An offer that fixes the roles is obeyed.
fn answering_dtls_role(offer_setup: Option<&str>) -> RTCDtlsRole {
    match offer_setup.map(str::trim) {
        Some(value) if value.eq_ignore_ascii_case("passive") => RTCDtlsRole::Client,
        _ => RTCDtlsRole::Server,
    }
}

/// The UDP sockets to bind: one ephemeral port per configured address, or,
/// with none configured, per usable interface address. We enumerate
/// interfaces ourselves rather than binding a wildcard, because webrtc-rs
/// binds the bare wildcard when it finds no usable interface, and a `0.0.0.0`
/// or `::` candidate in an answer is useless to the joiner.
pub(crate) fn bind_addrs(bind_ips: &[IpAddr]) -> Result<Vec<SocketAddr>, RtcError> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if bind_ips.is_empty() {
        let interfaces = ::rtc::shared::ifaces::ifaces()
            .map_err(|err| RtcError::Setup(format!("listing network interfaces: {err}")))?;
        for ip in interfaces
            .iter()
            .filter_map(|interface| interface.addr)
            .map(|a| a.ip())
        {
            if !ip.is_loopback()
                && !ip.is_unspecified()
                && !is_link_local(&ip)
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
        }
        if ips.is_empty() {
            return Err(RtcError::Setup(
                "no usable network interface (only loopback or link-local addresses); \
                 list addresses in bind_ips"
                    .to_owned(),
            ));
        }
    } else {
        for ip in bind_ips {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
    }
    Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect())
}

/// Link-local addresses (`169.254/16`, `fe80::/10`) make useless candidates:
/// an IPv6 one is meaningless without its scope id, which SDP cannot carry.
fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => (ip.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Whether a stats entry id is the one a reference field points at. In rtc
/// 0.21.1 a pair's `local_candidate_id` is the bare `candidate:<id>` while the
/// candidate's own stats id is `RTCLocalIceCandidate_candidate:<id>`, so an
/// exact comparison never matches; accept both forms.
fn refers_to(stats_id: &str, reference: &str) -> bool {
    stats_id == reference
        || stats_id
            .strip_suffix(reference)
            .is_some_and(|prefix| prefix.ends_with('_'))
}

pub(crate) fn to_webrtc_ice_server(server: &IceServer) -> RTCIceServer {
    RTCIceServer {
        urls: server.urls.clone(),
        username: server.username.clone().unwrap_or_default(),
        credential: server.credential.clone().unwrap_or_default(),
    }
}

impl PeerLink {
    /// Sends one binary message on the channel with that label, waiting while
    /// [`SEND_BUFFER_LIMIT`] bytes are already unacknowledged on it.
    ///
    /// Resolves once the message is queued, not when it is delivered. Fails
    /// with [`RtcError::NoSuchChannel`] before that channel's
    /// [`LinkEvent::ChannelOpen`], [`RtcError::MessageTooLarge`] above the
    /// negotiated size, and [`RtcError::Closed`] once the link is closed.
    pub async fn send(&self, label: &str, data: Bytes) -> Result<(), RtcError> {
        let channel = self.channel(label)?;
        let len = data.len();
        match channel.send(BytesMut::from(data)).await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.send_error(label, len, err).await),
        }
    }

    /// Like [`PeerLink::send`] but never waits: fails with
    /// [`RtcError::SendBufferFull`] when the joiner is not keeping up, so a
    /// hub can decide per peer (drop the frame, drop the peer) without one
    /// stalled joiner holding up the others.
    pub async fn try_send(&self, label: &str, data: Bytes) -> Result<(), RtcError> {
        let channel = self.channel(label)?;
        let len = data.len();
        match channel.try_send(BytesMut::from(data)).await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.send_error(label, len, err).await),
        }
    }

    /// Closes the connection: the data channels close, the joiner sees the
    /// connection end, and the event stream yields `ChannelClosed` for each
    /// open channel and `State(Closed)`, then `None`. Idempotent; returns
    /// once the connection's driver has stopped (within ~100 ms).
    pub async fn close(&self) {
        shutdown(&self.inner.core, &self.inner.pc).await;
    }

    /// Current connection state (the latest value, even if the event stream
    /// has not been read yet).
    pub fn state(&self) -> LinkState {
        *self.inner.core.state_tx.borrow()
    }

    /// Labels of the channels currently open, for diagnostics.
    pub fn open_channels(&self) -> Vec<String> {
        let mut labels: Vec<String> = lock(&self.inner.core.channels).keys().cloned().collect();
        labels.sort();
        labels
    }

    /// The negotiated maximum message size: `min(joiner's offer, MAX_MESSAGE_SIZE)`.
    /// `None` until the SCTP association is set up (or after close).
    pub async fn max_message_size(&self) -> Option<usize> {
        let sctp = self.inner.pc.sctp().await?;
        sctp.max_message_size().await.ok().map(|size| size as usize)
    }

    /// Transport statistics of the selected candidate pair, for the UI.
    /// All fields are zero/`None`/`Unknown` before a pair is selected and
    /// after close.
    pub async fn stats(&self) -> LinkStats {
        if self.inner.core.closed.load(Ordering::Acquire) {
            return LinkStats::default();
        }
        let report = self
            .inner
            .pc
            .get_stats(Instant::now(), StatsSelector::None)
            .await;

        let mut stats = LinkStats::default();
        let mut selected_pair_id = String::new();
        for entry in report.iter() {
            if let RTCStatsReportEntry::Transport(transport) = entry {
                stats.bytes_out += transport.bytes_sent;
                stats.bytes_in += transport.bytes_received;
                if selected_pair_id.is_empty() {
                    selected_pair_id = transport.selected_candidate_pair_id.clone();
                }
            }
        }

        // The selected pair; failing an id, the nominated one.
        let pair = report.iter().find_map(|entry| match entry {
            RTCStatsReportEntry::IceCandidatePair(pair)
                if (!selected_pair_id.is_empty() && pair.stats.id == selected_pair_id)
                    || (selected_pair_id.is_empty() && pair.nominated) =>
            {
                Some(pair)
            }
            _ => None,
        });
        let Some(pair) = pair else {
            return stats;
        };
        if pair.responses_received > 0 && pair.current_round_trip_time.is_finite() {
            stats.rtt = Some(Duration::from_secs_f64(
                pair.current_round_trip_time.max(0.0),
            ));
        }
        if stats.bytes_out == 0 && stats.bytes_in == 0 {
            stats.bytes_out = pair.bytes_sent;
            stats.bytes_in = pair.bytes_received;
        }
        stats.route = report
            .iter()
            .find_map(|entry| match entry {
                RTCStatsReportEntry::LocalCandidate(candidate)
                    if refers_to(&candidate.stats.id, &pair.local_candidate_id) =>
                {
                    Some(match candidate.candidate_type {
                        RTCIceCandidateType::Host => Route::Host,
                        RTCIceCandidateType::Srflx => Route::Srflx,
                        RTCIceCandidateType::Prflx => Route::Prflx,
                        RTCIceCandidateType::Relay => Route::Relay,
                        _ => Route::Unknown,
                    })
                }
                _ => None,
            })
            .unwrap_or_default();
        stats
    }

    fn channel(&self, label: &str) -> Result<Arc<dyn DataChannel>, RtcError> {
        if self.inner.core.closed.load(Ordering::Acquire) {
            return Err(RtcError::Closed);
        }
        lock(&self.inner.core.channels)
            .get(label)
            .cloned()
            .ok_or_else(|| RtcError::NoSuchChannel(label.to_owned()))
    }

    async fn send_error(&self, label: &str, len: usize, err: WebrtcError) -> RtcError {
        if self.inner.core.closed.load(Ordering::Acquire) {
            return RtcError::Closed;
        }
        match err {
            WebrtcError::ErrOutboundPacketTooLarge => RtcError::MessageTooLarge {
                len,
                max: self.max_message_size().await.unwrap_or(MAX_MESSAGE_SIZE),
            },
            WebrtcError::ErrSendBufferFull => RtcError::SendBufferFull,
            WebrtcError::ErrDataChannelClosed | WebrtcError::ErrDataChannelNotOpen => {
                RtcError::NoSuchChannel(label.to_owned())
            }
            other => RtcError::Send(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_take_the_dtls_server_role_unless_the_offerer_insists_on_it() {
        assert_eq!(answering_dtls_role(Some("actpass")), RTCDtlsRole::Server);
        assert_eq!(answering_dtls_role(None), RTCDtlsRole::Server);
        assert_eq!(answering_dtls_role(Some("active")), RTCDtlsRole::Server);
        assert_eq!(answering_dtls_role(Some("passive")), RTCDtlsRole::Client);
        assert_eq!(answering_dtls_role(Some(" PASSIVE ")), RTCDtlsRole::Client);
    }

    #[test]
    fn stats_references_match_with_or_without_the_type_prefix() {
        let id = "RTCLocalIceCandidate_candidate:abc/def";
        assert!(refers_to(id, "candidate:abc/def"));
        assert!(refers_to(id, id));
        assert!(!refers_to(id, "candidate:bc/def"));
        assert!(!refers_to(id, "abc/def"));
    }

    #[test]
    fn explicit_bind_ips_are_bound_once_each_on_ephemeral_ports() {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let addrs = bind_addrs(&[loopback, loopback]).unwrap();
        assert_eq!(addrs, vec![SocketAddr::new(loopback, 0)]);
    }

    #[test]
    fn link_local_addresses_are_recognised() {
        assert!(is_link_local(&IpAddr::from([169, 254, 1, 2])));
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(!is_link_local(&IpAddr::from([192, 168, 1, 2])));
        assert!(!is_link_local(&"2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn ice_server_debug_output_hides_the_credential() {
        let server = IceServer {
            urls: vec!["turn:turn.example:3478".to_owned()],
            username: Some("user".to_owned()),
            credential: Some("hunter2".to_owned()),
        };
        let shown = format!("{server:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user"), "{shown}");
    }
}
