//! A live link: the [`PeerLink`] handle and what runs under it. `Core` is the
//! state shared by the handle, webrtc-rs's callbacks (`Handler`, on the
//! connection's driver task) and the forwarding tasks (one per data channel,
//! one for connection states); `shutdown` is the one close sequence. The
//! answerer builds these pieces, hence the `pub(super)` fields; nothing
//! outside `rtc` sees them.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ::rtc::shared::error::Error as WebrtcError;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch, OnceCell};
use tracing::{debug, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateType, RTCIceConnectionState,
    RTCIceGatheringState, RTCPeerConnectionState, RTCStatsReportEntry, StatsSelector,
};

use super::{LinkEvent, LinkState, LinkStats, Route, RtcError, MAX_MESSAGE_SIZE};

/// Cheap, clonable handle to one joiner's connection.
///
/// The connection lives as long as any clone does: dropping the last clone
/// closes it (in a spawned task), so keep one wherever the joiner is tracked.
/// Prefer [`PeerLink::close`], which finishes before it returns.
#[derive(Clone)]
pub struct PeerLink {
    pub(super) inner: Arc<LinkInner>,
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
pub(super) struct LinkInner {
    pub(super) core: Arc<Core>,
    pub(super) pc: Arc<dyn PeerConnection>,
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
pub(super) struct Core {
    /// Handed to each new channel's forwarding task; taken on close, so the
    /// event stream ends once the running tasks finish.
    pub(super) forwarding: Mutex<Option<Forwarding>>,
    /// Open channels by label (the latest one wins if a label repeats).
    pub(super) channels: Mutex<HashMap<String, Arc<dyn DataChannel>>>,
    /// Latest connection state. A watch, so the driver's callback never waits
    /// for our consumer.
    pub(super) state_tx: watch::Sender<LinkState>,
    /// Becomes `true` when ICE gathering completes.
    pub(super) gathered_tx: watch::Sender<bool>,
    /// Set as soon as closing starts.
    pub(super) closed: AtomicBool,
    /// Runs the close sequence once; concurrent closers wait for it.
    pub(super) close_once: OnceCell<()>,
    /// The connection, weakly (it owns the handler that owns this), for
    /// closing the link from a forwarding task after `Failed`.
    pub(super) pc: OnceLock<Weak<dyn PeerConnection>>,
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
pub(super) struct Handler {
    pub(super) core: Arc<Core>,
    /// Opened once ICE has selected a pair (see `early_dtls`).
    pub(super) dtls_gate: Arc<super::early_dtls::DtlsGate>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.core.gathered_tx.send_replace(true);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if matches!(
            state,
            RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
        ) {
            self.dtls_gate.open();
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
pub(super) struct Forwarding {
    pub(super) events: mpsc::Sender<LinkEvent>,
    /// Never sent on; the receiver in `forward_states` sees the channel
    /// close once every forwarding task (and `Core`'s copy) has dropped it.
    pub(super) _alive: mpsc::Sender<()>,
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
pub(super) async fn forward_states(
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

impl PeerLink {
    /// Sends one binary message on the channel with that label, waiting while
    /// [`SEND_BUFFER_LIMIT`](super::SEND_BUFFER_LIMIT) bytes are already unacknowledged on it.
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
    fn stats_references_match_with_or_without_the_type_prefix() {
        let id = "RTCLocalIceCandidate_candidate:abc/def";
        assert!(refers_to(id, "candidate:abc/def"));
        assert!(refers_to(id, id));
        assert!(!refers_to(id, "candidate:bc/def"));
        assert!(!refers_to(id, "abc/def"));
    }
}
