//! The joiner's WebRTC connection: the offering side, with MidiEditor's
//! `midieditor` channel and, when the host takes it, our `midi` channel.
//!
//! Built like [`crate::offer::Offerer`] (non-trickle, complete gathering
//! before the offer is published, `a=max-message-size:16777216` as
//! libdatachannel offers, raw-IP candidates only, the driver "nudge" against
//! the webrtc-rs 0.21.1 offerer stall; see that module), with two
//! differences: a second channel, which may be created after the connection
//! is up (in-band DCEP needs no renegotiation), and a send-buffer cap per
//! channel, so a host that stops reading cannot make us buffer without
//! bound.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, RTCSessionDescription};

use crate::offer::{nudge, with_max_message_size, CloseOnDrop, Handler, OFFERED_MAX_MESSAGE_SIZE};
use crate::rtc::{LinkState, RtcConfig, RtcError, SEND_BUFFER_LIMIT};

/// MidiEditor's channel: framed JSON.
pub const CONTROL_CHANNEL: &str = "midieditor";
/// Our live-MIDI channel (PEER-PROTOCOL.md, "Live MIDI"): reliable, ordered,
/// binary; its message format belongs to the MIDI layer, not to the joiner.
pub const MIDI_CHANNEL: &str = "midi";

/// Messages of the `midi` channel waiting for the application. When it does
/// not read them (or never took the receiver) the newest are dropped and
/// counted, rather than letting the host's MIDI stall our `midieditor`
/// channel too (both share one SCTP association).
pub const MIDI_QUEUE: usize = 1024;

/// What the link reports to the joiner's engine, in order per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkMsg {
    ControlOpen,
    Control(Bytes),
    ControlClosed,
    MidiOpen,
    MidiClosed,
}

/// The `midi` channel as the application sees it, shared between the link's
/// pump (which fills it) and the [`Joiner`](super::Joiner) handle.
pub(crate) struct MidiShared {
    pub channel: Mutex<Option<Arc<dyn DataChannel>>>,
    pub tx: mpsc::Sender<Bytes>,
    pub rx: Mutex<Option<mpsc::Receiver<Bytes>>>,
    pub dropped: AtomicU64,
    pub open: AtomicBool,
}

impl MidiShared {
    pub fn new() -> Arc<MidiShared> {
        let (tx, rx) = mpsc::channel(MIDI_QUEUE);
        Arc::new(MidiShared {
            channel: Mutex::new(None),
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            open: AtomicBool::new(false),
        })
    }

    pub fn channel(&self) -> Option<Arc<dyn DataChannel>> {
        self.channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_channel(&self, c: Option<Arc<dyn DataChannel>>) {
        self.open.store(c.is_some(), Ordering::Release);
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = c;
    }
}

/// A channel and the flag that turns true when it opens.
type ChannelToNudge = (Arc<dyn DataChannel>, watch::Receiver<bool>);

pub(crate) struct JoinLink {
    pc: Arc<dyn PeerConnection>,
    control: Arc<dyn DataChannel>,
    midi: Arc<MidiShared>,
    /// For the pumps of channels created later.
    events_tx: mpsc::Sender<LinkMsg>,
    state: watch::Receiver<LinkState>,
    control_open: watch::Receiver<bool>,
    /// A midi channel was created (in the offer, or later).
    midi_created: AtomicBool,
    /// The offer's midi channel and its "opened" flag, nudged from
    /// [`accept`](Self::accept) like the `midieditor` one.
    midi_nudge: Mutex<Option<ChannelToNudge>>,
    offer_sdp: String,
    closed: bool,
}

impl JoinLink {
    /// Builds the connection, its channel(s) and the complete offer.
    /// `events` capacity bounds what the engine may fall behind by; a full
    /// queue pushes back on the `midieditor` channel.
    pub async fn new(
        cfg: &RtcConfig,
        midi_in_offer: bool,
        midi: Arc<MidiShared>,
        events: usize,
    ) -> Result<(JoinLink, mpsc::Receiver<LinkMsg>), RtcError> {
        let udp_addrs: Vec<SocketAddr> = crate::rtc::bind_addrs(&cfg.bind_ips)?;
        let (gathered_tx, mut gathered_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(LinkState::New);
        // Our candidates are raw IPs (libjuice cannot resolve `.local`), and
        // a host's answer carries raw IPs too: no multicast socket.
        let (settings, configuration) = crate::offer::offerer_setup(cfg);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(settings)
            .with_handler(Arc::new(Handler {
                gathered: gathered_tx,
                state: state_tx,
            }))
            .with_udp_addrs(udp_addrs)
            .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
            .build()
            .await
            .map_err(|err| RtcError::Setup(err.to_string()))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let mut closer = CloseOnDrop(Some(pc.clone()));

        let (events_tx, events_rx) = mpsc::channel(events.max(1));
        let (open_tx, control_open) = watch::channel(false);
        // MidiEditor's channel first: tools that mimic MidiEditor (and the
        // interop joiners) expect `midieditor` to be the first one.
        let control = pc
            .create_data_channel(CONTROL_CHANNEL, None)
            .await
            .map_err(|err| RtcError::Setup(format!("creating the data channel: {err}")))?;
        tokio::spawn(pump_control(control.clone(), events_tx.clone(), open_tx));
        let mut midi_nudge = None;
        if midi_in_offer {
            let ch = pc
                .create_data_channel(MIDI_CHANNEL, None)
                .await
                .map_err(|err| RtcError::Setup(format!("creating the midi channel: {err}")))?;
            let (open_tx, open_rx) = watch::channel(false);
            midi_nudge = Some((ch.clone(), open_rx));
            tokio::spawn(pump_midi(ch, midi.clone(), events_tx.clone(), open_tx));
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
        closer.0 = None;
        Ok((
            JoinLink {
                pc,
                control,
                midi,
                events_tx,
                state: state_rx,
                control_open,
                midi_created: AtomicBool::new(midi_in_offer),
                midi_nudge: Mutex::new(midi_nudge),
                offer_sdp,
                closed: false,
            },
            events_rx,
        ))
    }

    pub fn offer_sdp(&self) -> &str {
        &self.offer_sdp
    }

    pub fn state_watch(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    pub fn control(&self) -> Arc<dyn DataChannel> {
        self.control.clone()
    }

    /// Applies the host's answer and nudges the driver until the
    /// `midieditor` channel opens (see [`crate::offer`], "The nudge").
    pub async fn accept(&self, answer_sdp: &str) -> Result<(), RtcError> {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned())
            .map_err(|err| RtcError::InvalidOffer(format!("the answer: {err}")))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|err| RtcError::InvalidOffer(format!("the answer: {err}")))?;
        tokio::spawn(nudge(
            self.control.clone(),
            self.control_open.clone(),
            self.state.clone(),
        ));
        let midi = self
            .midi_nudge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((ch, opened)) = midi {
            tokio::spawn(nudge(ch, opened, self.state.clone()));
        }
        Ok(())
    }

    /// Opens the `midi` channel on the running connection (once): in-band
    /// DCEP on the SCTP association the `midieditor` channel already uses,
    /// so no new offer/answer is needed.
    pub async fn open_midi(&self) -> Result<(), RtcError> {
        if self.midi_created.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let ch = self
            .pc
            .create_data_channel(MIDI_CHANNEL, None)
            .await
            .map_err(|err| RtcError::Setup(format!("creating the midi channel: {err}")))?;
        let (open_tx, open_rx) = watch::channel(false);
        tokio::spawn(nudge(ch.clone(), open_rx, self.state.clone()));
        tokio::spawn(pump_midi(
            ch,
            self.midi.clone(),
            self.events_tx.clone(),
            open_tx,
        ));
        Ok(())
    }

    /// Closes the connection and returns once webrtc-rs has stopped it.
    pub async fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.midi.set_channel(None);
            let _ = self.pc.close().await;
        }
    }
}

impl Drop for JoinLink {
    fn drop(&mut self) {
        if !self.closed {
            self.midi.set_channel(None);
            drop(CloseOnDrop(Some(self.pc.clone())));
        }
    }
}

/// Forwards the `midieditor` channel's events until it closes.
async fn pump_control(
    channel: Arc<dyn DataChannel>,
    events: mpsc::Sender<LinkMsg>,
    opened: watch::Sender<bool>,
) {
    while let Some(event) = channel.poll().await {
        let msg = match event {
            DataChannelEvent::OnOpen => {
                opened.send_replace(true);
                LinkMsg::ControlOpen
            }
            DataChannelEvent::OnMessage(m) => LinkMsg::Control(m.data.freeze()),
            DataChannelEvent::OnClose => break,
            _ => continue,
        };
        // A full queue waits (backpressure); a gone engine is not an error.
        let _ = events.send(msg).await;
    }
    let _ = events.send(LinkMsg::ControlClosed).await;
}

/// Forwards the `midi` channel: messages to the application's queue, opening
/// and closing to the engine.
async fn pump_midi(
    channel: Arc<dyn DataChannel>,
    midi: Arc<MidiShared>,
    events: mpsc::Sender<LinkMsg>,
    opened: watch::Sender<bool>,
) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                opened.send_replace(true);
                midi.set_channel(Some(channel.clone()));
                let _ = events.send(LinkMsg::MidiOpen).await;
            }
            DataChannelEvent::OnMessage(m) => {
                if let Err(mpsc::error::TrySendError::Full(_)) = midi.tx.try_send(m.data.freeze()) {
                    midi.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    midi.set_channel(None);
    let _ = events.send(LinkMsg::MidiClosed).await;
}
