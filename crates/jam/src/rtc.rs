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
//!
//! # Where things are
//!
//! - `config`: [`RtcConfig`] and [`IceServer`], what the host's settings
//!   decide about a connection;
//! - `events`: what callers get back: [`RtcError`], [`Answered`],
//!   [`LinkEvent`] and [`LinkState`];
//! - `answer`: [`answer_offer`], from an offer to an answer SDP: parsing the
//!   offer, choosing the DTLS role and the sockets, building the connection
//!   and waiting for gathering;
//! - `early_dtls`: the connection's own runtime, which keeps a joiner's
//!   DTLS flight that arrives before our ICE agent has selected a pair
//!   (libdatachannel's ClientHello; `rtc` would drop it and the handshake
//!   would wait 1 s for a retransmission) and delivers it once it has;
//! - `link`: [`PeerLink`] and what runs under it for the life of the link:
//!   the state shared with webrtc-rs's callbacks, one forwarding task per
//!   data channel, closing, sending and statistics.

use std::time::Duration;

use ::rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;

mod answer;
mod config;
mod early_dtls;
mod events;
mod link;

pub use answer::answer_offer;
pub(crate) use answer::bind_addrs;
pub(crate) use config::to_webrtc_ice_server;
pub use config::{IceServer, RtcConfig};
pub use events::{Answered, LinkEvent, LinkState, RtcError};
pub use link::PeerLink;

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

// The route and statistics types are shared with the peer list, which
// shows them; they live with it so the pure registry needs nothing from here.
pub use crate::registry::{LinkStats, Route};
