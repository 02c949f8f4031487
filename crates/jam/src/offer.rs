//! WebRTC glue for the **offering** side: a joiner, as MidiEditor is one.
//!
//! The jam host only ever answers ([`crate::rtc`]); this side exists for the
//! connection test ([`crate::check`]), which plays host *and* joiner in one
//! process the way MidiEditor's own "Test connection" does, and for tests and
//! benchmarks that need a joiner.
//!
//! An [`Offerer`] builds one webrtc-rs `PeerConnection` with one in-band
//! (DCEP) data channel, reliable, ordered and binary, like MidiEditor's
//! `midieditor` channel; gathers completely before its offer is published
//! (non-trickle, capped by [`RtcConfig::gather_timeout`]); and advertises
//! `a=max-message-size:16777216` as libdatachannel does.
//!
//! # The nudge
//!
//! A stock webrtc-rs 0.21.1 *offerer* stalls about 400 ms on every connection:
//! its driver only flushes what the core queued while it pumped events (the
//! DTLS ClientHello after ICE connects, the SCTP INIT after DTLS completes)
//! on its next wake-up, which comes up to 200 ms later once ICE is connected.
//! As the DTLS/SCTP client, the offerer hits that twice (see
//! `tests/rtc_loopback.rs` and the module docs of [`crate::rtc`]). Any call
//! into a data channel wakes the driver, so from [`Offerer::accept`] until the
//! channel opens (or [`NUDGE_LIMIT`] passes) a small task pokes the channel
//! every millisecond. The offerer then behaves like a peer with a prompt event
//! loop (libdatachannel, browsers), and a connection test measures the
//! network rather than this stall. The nudge stops by itself; it costs one
//! cheap lock per millisecond for the ~30-100 ms a loopback setup takes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::rtc::ice::mdns::MulticastDnsMode;
use ::rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use ::rtc::peer_connection::configuration::setting_engine::SettingEngine;
use ::rtc::peer_connection::configuration::RTCConfiguration;

use crate::rtc::{to_webrtc_ice_server, LinkState, RtcConfig, RtcError};

/// The setting engine and configuration of every offering side we build
/// (this test/bench offerer, the app's joiner, the connection test): no
/// multicast socket (our candidates and a host's are raw IPs), loopback
/// candidates allowed, the short ICE check interval, the largest SCTP
/// message size `rtc` allows, and the configured STUN/TURN servers.
pub(crate) fn offerer_setup(cfg: &RtcConfig) -> (SettingEngine, RTCConfiguration) {
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), None)
        .with_sctp_max_message_size(SctpMaxMessageSize::Unbounded)
        .build();
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(cfg.ice_servers.iter().map(to_webrtc_ice_server).collect())
        .build();
    (settings, configuration)
}

/// What MidiEditor (libdatachannel) puts in its offer's `a=max-message-size`.
pub const OFFERED_MAX_MESSAGE_SIZE: usize = 16_777_216;

/// Longest time the driver is nudged after [`Offerer::accept`]; past it the
/// connection is slow for reasons of its own and the nudge would not help.
pub const NUDGE_LIMIT: Duration = Duration::from_secs(15);

/// Capacity of the offerer's event channel. Bounded: a consumer that stops
/// reading pushes back on the data channel instead of growing memory.
const EVENT_CAPACITY: usize = 64;

/// Capacity of each extra channel's event queue (a `midi` channel carries
/// many small messages); bounded for the same reason.
const EXTRA_EVENT_CAPACITY: usize = 1024;

/// Same ICE check pacing as our answerer (see [`crate::rtc`]): webrtc-rs's
/// 200 ms default quantises connection setup.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// What the offerer's data channel reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffererEvent {
    /// The channel is open: [`Offerer::send`] works from now on.
    Open,
    /// One binary (or text) message.
    Message(Bytes),
    /// The channel closed; nothing more will arrive on it.
    Closed,
}

/// Turns the connection's callbacks into watch values: gathering done, and
/// the connection state. Shared with the app's joiner (`joiner/link.rs`).
pub(crate) struct Handler {
    pub(crate) gathered: watch::Sender<bool>,
    pub(crate) state: watch::Sender<LinkState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state.into());
    }
}

/// A joiner's connection: one PeerConnection, one data channel, a complete
/// offer. Dropping it closes the connection (in a spawned task); prefer
/// [`Offerer::close`], which finishes before it returns.
pub struct Offerer {
    pc: Arc<dyn PeerConnection>,
    channel: Arc<dyn DataChannel>,
    events: mpsc::Receiver<OffererEvent>,
    state: watch::Receiver<LinkState>,
    /// Becomes `true` when the channel opens; ends the nudge.
    opened: watch::Receiver<bool>,
    offer_sdp: String,
    /// Channels opened next to the main one ([`Offerer::with_channels`]),
    /// until taken.
    extra: Vec<OffererChannel>,
    /// Set by [`Offerer::close`] so that `Drop` does not close a second time.
    closed: bool,
}

/// One more data channel of an [`Offerer`] (our joiners' `midi` channel),
/// with its own events. Taken out with [`Offerer::take_channel`]; it works
/// while the offerer's connection lives. Its events must be read: once
/// 1024 wait, the connection stops reading (backpressure, as in
/// [`crate::rtc`]).
pub struct OffererChannel {
    label: String,
    channel: Arc<dyn DataChannel>,
    events: mpsc::Receiver<OffererEvent>,
}

impl std::fmt::Debug for OffererChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffererChannel")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl OffererChannel {
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends one binary message (after [`OffererEvent::Open`]).
    pub async fn send(&self, data: Bytes) -> Result<(), RtcError> {
        self.channel
            .send(BytesMut::from(data))
            .await
            .map_err(|err| RtcError::Send(err.to_string()))
    }

    /// The next event of this channel; `None` once it is gone.
    pub async fn next_event(&mut self) -> Option<OffererEvent> {
        self.events.recv().await
    }

    /// A handle that only sends, for a task other than the one reading.
    pub fn sender(&self) -> OffererSender {
        OffererSender {
            channel: self.channel.clone(),
        }
    }
}

/// Sends on an [`OffererChannel`] from anywhere; cheap to clone.
#[derive(Clone)]
pub struct OffererSender {
    channel: Arc<dyn DataChannel>,
}

impl std::fmt::Debug for OffererSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffererSender").finish_non_exhaustive()
    }
}

impl OffererSender {
    /// Sends one binary message (after the channel opened).
    pub async fn send(&self, data: Bytes) -> Result<(), RtcError> {
        self.channel
            .send(BytesMut::from(data))
            .await
            .map_err(|err| RtcError::Send(err.to_string()))
    }
}

impl std::fmt::Debug for Offerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offerer")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Offerer {
    /// Builds the connection and its data channel `label`, creates the offer
    /// and gathers candidates until gathering completes or
    /// `cfg.gather_timeout` passes. Uses `cfg.bind_ips` (empty: every
    /// non-loopback interface) and `cfg.ice_servers`; never gathers or
    /// resolves `.local` candidates.
    ///
    /// Must run inside a multi-threaded Tokio runtime.
    pub async fn new(cfg: &RtcConfig, label: &str) -> Result<Offerer, RtcError> {
        Self::with_channels(cfg, label, &[]).await
    }

    /// Like [`Offerer::new`], with more in-band channels (reliable, ordered)
    /// created after `label`, in order, and offered with it: what our own
    /// joiners do with `midi`. Take each with [`Offerer::take_channel`].
    pub async fn with_channels(
        cfg: &RtcConfig,
        label: &str,
        extra: &[&str],
    ) -> Result<Offerer, RtcError> {
        let udp_addrs: Vec<SocketAddr> = crate::rtc::bind_addrs(&cfg.bind_ips)?;
        let (gathered_tx, mut gathered_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(LinkState::New);
        let (settings, configuration) = offerer_setup(cfg);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(settings)
            .with_handler(Arc::new(Handler {
                gathered: gathered_tx,
                state: state_tx,
            }))
            .with_udp_addrs(udp_addrs)
            .build()
            .await
            .map_err(|err| RtcError::Setup(err.to_string()))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        // From here on, an early return must close the connection.
        let mut closer = CloseOnDrop(Some(pc.clone()));

        let channel = pc
            .create_data_channel(label, None)
            .await
            .map_err(|err| RtcError::Setup(format!("creating the data channel: {err}")))?;
        let (events_tx, events) = mpsc::channel(EVENT_CAPACITY);
        let (opened_tx, opened) = watch::channel(false);
        tokio::spawn(pump(channel.clone(), events_tx, opened_tx));
        let mut extra_channels = Vec::new();
        for extra_label in extra {
            let ch = pc
                .create_data_channel(extra_label, None)
                .await
                .map_err(|err| RtcError::Setup(format!("creating {extra_label:?}: {err}")))?;
            let (tx, rx) = mpsc::channel(EXTRA_EVENT_CAPACITY);
            // Its own "opened" flag is not needed: the nudge ends when the
            // main channel opens, and every channel opens with the same
            // SCTP association.
            tokio::spawn(pump(ch.clone(), tx, watch::channel(false).0));
            extra_channels.push(OffererChannel {
                label: (*extra_label).to_owned(),
                channel: ch,
                events: rx,
            });
        }

        let offer = pc
            .create_offer(None)
            .await
            .map_err(|err| RtcError::Setup(format!("creating the offer: {err}")))?;
        pc.set_local_description(offer)
            .await
            .map_err(|err| RtcError::Setup(format!("applying the offer: {err}")))?;
        // Whatever was gathered by the cap is published, as MidiEditor does.
        let _ = tokio::time::timeout(cfg.gather_timeout, gathered_rx.wait_for(|done| *done)).await;
        let sdp = pc
            .local_description()
            .await
            .map(|description| description.sdp)
            .ok_or_else(|| RtcError::Setup("no local description after the offer".to_owned()))?;
        if !sdp.contains("a=candidate:") {
            return Err(RtcError::NoCandidates(cfg.gather_timeout));
        }
        let offer_sdp = with_max_message_size(&sdp, OFFERED_MAX_MESSAGE_SIZE);
        closer.0 = None; // the Offerer closes it from now on
        Ok(Offerer {
            pc,
            channel,
            events,
            state: state_rx,
            opened,
            offer_sdp,
            extra: extra_channels,
            closed: false,
        })
    }

    /// The complete offer SDP, candidates included, to publish.
    pub fn offer_sdp(&self) -> &str {
        &self.offer_sdp
    }

    /// Applies the host's answer; ICE, DTLS and SCTP then start. Also starts
    /// the driver nudge described in the module docs.
    pub async fn accept(&self, answer_sdp: &str) -> Result<(), RtcError> {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned())
            .map_err(|err| RtcError::InvalidOffer(format!("the answer: {err}")))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|err| RtcError::InvalidOffer(format!("the answer: {err}")))?;
        tokio::spawn(nudge(
            self.channel.clone(),
            self.opened.clone(),
            self.state.clone(),
        ));
        Ok(())
    }

    /// Sends one binary message on the data channel (after [`OffererEvent::Open`]).
    pub async fn send(&self, data: Bytes) -> Result<(), RtcError> {
        self.channel
            .send(BytesMut::from(data))
            .await
            .map_err(|err| RtcError::Send(err.to_string()))
    }

    /// Takes the extra channel `label` (see [`Offerer::with_channels`]);
    /// `None` if there is none or it was taken.
    pub fn take_channel(&mut self, label: &str) -> Option<OffererChannel> {
        let i = self.extra.iter().position(|c| c.label == label)?;
        Some(self.extra.remove(i))
    }

    /// The next channel event; `None` once the channel is gone and every
    /// event has been read.
    pub async fn next_event(&mut self) -> Option<OffererEvent> {
        self.events.recv().await
    }

    /// Current connection state (ICE + DTLS).
    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// A receiver of the connection state, to wait for `Failed` while doing
    /// something else.
    pub fn state_watch(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Closes the connection and returns once webrtc-rs has stopped it.
    pub async fn close(mut self) {
        self.closed = true;
        let _ = self.pc.close().await;
    }
}

impl Drop for Offerer {
    fn drop(&mut self) {
        // The driver task holds the connection's internals, not this handle:
        // without an explicit close it would keep its sockets open.
        if !self.closed {
            drop(CloseOnDrop(Some(self.pc.clone())));
        }
    }
}

/// Closes a connection when dropped, in a spawned task (`close` is async).
pub(crate) struct CloseOnDrop(pub(crate) Option<Arc<dyn PeerConnection>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(pc) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = pc.close().await;
                });
            }
        }
    }
}

/// Pokes `channel` every millisecond until `opened` turns true, the
/// connection fails, or [`NUDGE_LIMIT`] passes: any call into a data channel
/// wakes webrtc-rs's driver, which otherwise flushes the offerer's DTLS and
/// SCTP handshakes up to 200 ms late (see the module docs).
pub(crate) async fn nudge(
    channel: Arc<dyn DataChannel>,
    mut opened: watch::Receiver<bool>,
    mut state: watch::Receiver<LinkState>,
) {
    let poke = async {
        loop {
            if channel.set_buffered_amount_low_threshold(0).await.is_err() {
                return; // the channel or the connection is gone
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        _ = poke => {}
        _ = opened.wait_for(|open| *open) => {}
        _ = state.wait_for(|s| matches!(s, LinkState::Failed | LinkState::Closed)) => {}
        _ = tokio::time::sleep(NUDGE_LIMIT) => {}
    }
}

/// Forwards the channel's events, in order, until it closes.
async fn pump(
    channel: Arc<dyn DataChannel>,
    events: mpsc::Sender<OffererEvent>,
    opened: watch::Sender<bool>,
) {
    while let Some(event) = channel.poll().await {
        let event = match event {
            DataChannelEvent::OnOpen => {
                opened.send_replace(true);
                OffererEvent::Open
            }
            DataChannelEvent::OnMessage(message) => OffererEvent::Message(message.data.freeze()),
            DataChannelEvent::OnClose => {
                let _ = events.send(OffererEvent::Closed).await;
                return;
            }
            _ => continue,
        };
        // A consumer that went away is not an error: keep draining.
        let _ = events.send(event).await;
    }
    let _ = events.send(OffererEvent::Closed).await;
}

/// Rewrites (or adds, after the `a=sctp-port` line) `a=max-message-size`.
pub(crate) fn with_max_message_size(sdp: &str, size: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut done = false;
    for line in sdp.split("\r\n") {
        if line.starts_with("a=max-message-size:") {
            if !done {
                out.push(format!("a=max-message-size:{size}"));
                done = true;
            }
            continue;
        }
        out.push(line.to_owned());
        if !done && line.starts_with("a=sctp-port:") {
            out.push(format!("a=max-message-size:{size}"));
            done = true;
        }
    }
    out.join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_message_size_is_replaced_or_added_once() {
        let sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\na=max-message-size:65536\r\n";
        let out = with_max_message_size(sdp, 16_777_216);
        assert_eq!(out.matches("a=max-message-size:").count(), 1, "{out}");
        assert!(out.contains("a=max-message-size:16777216\r\n"), "{out}");

        let sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n";
        let out = with_max_message_size(sdp, 1234);
        assert!(
            out.contains("a=sctp-port:5000\r\na=max-message-size:1234\r\n"),
            "{out}"
        );
    }
}
