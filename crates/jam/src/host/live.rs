//! Live MIDI on the host: the `midi` data channel of our own joiners,
//! relayed through the host (the hub of a star), plus the host's own input
//! and output.
//!
//! The routing and the "no stuck notes" logic are `midi::Router`, a pure
//! state machine; this is its async edge inside the engine task:
//!
//! - a peer is **routed** once its `midi` channel is open *and* it was
//!   welcomed on `midieditor` (so a stranger cannot play without counting
//!   towards `max_peers`), and stops being routed when the channel closes,
//!   the link is lost (ICE `Disconnected`: consent checks went unanswered
//!   for ~5 s, the sign of a killed or unplugged joiner, which a SCTP close
//!   never announces), or it leaves the jam for any reason (closed, kicked,
//!   silent, ghost, stalled). Each of those releases the notes and pedals it
//!   left sounding, on every output that played them: the other peers get
//!   a release frame, the local output Note Offs on [`HostControl::midi_events`].
//!   A lost link also takes the peer out of the jam (see `on_link`).
//! - a routed peer that promised keep-alives (the `KEEPALIVE` flag of
//!   `docs/midi-frames.md`: our aiortc test joiner does) and then sends
//!   nothing for 1 s while its notes sound has **stalled**: its notes and
//!   pedals are released the same way, ~1 s after a kill instead of the ~5 s
//!   ICE takes, but it stays routed and is served again from its next
//!   frame. Peers that never set the flag are never released for silence.
//!   The host makes the same promise on every frame it sends. Both need
//!   the router's timers: [`MIDI_TICK_EVERY`], only while a peer is routed,
//!   so an idle host does not wake up.
//! - frames from a routed peer go to the local output (unless muted) and to
//!   every other routed peer, re-stamped with the sender's peer id as origin.
//! - MidiEditor joiners never open `midi`: none of this touches them.
//!
//! Each routed peer has its own writer task and a bounded queue of
//! [`MIDI_QUEUE`] frames; a peer whose queue is full is kicked as stalled
//! (its releases still go out to the others), rather than let one dead link
//! hold MIDI back for everyone or grow memory.
//!
//! The relay stays on the engine task: routing a note frame (decode, track,
//! re-stamp, queue for each peer) takes ~0.25 µs; with the wake-ups of the
//! writer and local-output tasks it is a few µs, tens on a busy VM
//! ([`MidiStats`] measures it in place, with a histogram). That is far
//! below the WebRTC stack's own cost, and it keeps every MIDI state change
//! on one task, ordered with the joins and leaves that release notes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::midi::router::Routed;
use ::midi::{Activity, Link, MidiMessage, Origin, Parser, Router, RouterConfig};
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{Cmd, Engine, HostControl, MIDI_CHANNEL};
use crate::protocol::{LeaveReason, PeerId};

/// Frames queued for one peer's `midi` channel; when full, the peer is
/// kicked as stalled. 4096 frames (~0.5 MB at most) hold several seconds of
/// a whole band's playing, and ~150 ms of a benchmark's 28,000 frames a
/// second to one peer: enough to ride out a busy machine (1024 was seen to
/// fill under a saturating benchmark on 2 loaded cores), small enough that
/// a dead link is noticed.
pub const MIDI_QUEUE: usize = 4096;

/// The relay time goal per frame (50 µs); slower frames are counted in
/// [`MidiStats::relay_slow`].
pub const RELAY_SLOW_NS: u64 = 50_000;

/// Upper bounds (µs) of the relay-time histogram's buckets; the last bucket
/// takes everything slower.
pub const RELAY_BUCKETS_US: [u64; 9] = [1, 2, 5, 10, 20, 50, 100, 1000, u64::MAX];

/// Routed messages kept for slow local-output receivers (see
/// [`HostControl::midi_events`]).
pub const MIDI_EVENTS: usize = 4096;

/// How often the router's timers run while a peer is routed: keep-alives to
/// peers that hold the host's notes (the promise is a frame every 250 ms),
/// and the release of peers that stalled (1 s of silence), found 1.0 to
/// 1.1 s after their last frame.
pub(super) const MIDI_TICK_EVERY: Duration = Duration::from_millis(100);

/// A message for the host's local MIDI output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MidiEvent {
    /// The peer who played it; `None` for the host's own (a panic's All
    /// Notes Off).
    pub peer: Option<PeerId>,
    /// The sender's timestamp, µs since the UNIX epoch (0 if unknown).
    pub time_us: u64,
    pub message: MidiMessage,
    /// Made by the release logic (the peer left or stalled, a mute, a
    /// panic), not played.
    pub release: bool,
}

/// One row of [`HostControl::midi_activity`]: the light next to a peer.
/// Its `activity.last_us` is in µs since the UNIX epoch (the host's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMidi {
    /// `None` for the host's own input.
    pub peer: Option<PeerId>,
    pub activity: Activity,
    /// The relay routes this peer: its `midi` channel is open, it was
    /// welcomed and its link is up, so it hears the jam and is heard from
    /// now on. Known the moment it happens, unlike `activity`, which stays
    /// empty until the peer plays; `false` for the host's own input.
    pub routed: bool,
}

/// Counters of the relay, readable at any time without asking the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MidiStats {
    /// Frames received on `midi` channels (valid or not).
    pub frames_in: u64,
    /// Frames refused by the decoder.
    pub frames_bad: u64,
    /// Frames queued for peers (relayed, local input, releases).
    pub frames_out: u64,
    /// Messages handed to the local output receivers.
    pub local_out: u64,
    /// Time the engine spent per received frame, from the event to every
    /// frame queued and every local message broadcast.
    pub relay_ns_total: u64,
    pub relay_ns_max: u64,
    /// Received frames whose relay took over [`RELAY_SLOW_NS`] (the goal
    /// is that none does; a preempted engine thread is the usual cause).
    pub relay_slow: u64,
    /// Received frames per relay time, by [`RELAY_BUCKETS_US`].
    pub relay_histogram: [u64; 9],
    /// Peers kicked because their `midi` queue was full.
    pub stalled: u64,
    /// Empty keep-alive frames queued for peers that hold the host's notes
    /// (also counted in `frames_out`).
    pub keepalives_out: u64,
    /// Times a peer that promised keep-alives went silent for 1 s while
    /// its notes sounded, and its notes were released (it stays in).
    pub keepalive_stalls: u64,
}

impl MidiStats {
    /// Mean time per received frame, in nanoseconds.
    pub fn relay_ns_mean(&self) -> u64 {
        self.relay_ns_total.checked_div(self.frames_in).unwrap_or(0)
    }

    /// The bucket bound (µs, from [`RELAY_BUCKETS_US`]) under which `p`
    /// percent of the relays took place; `None` before any frame.
    pub fn relay_percentile_us(&self, p: f64) -> Option<u64> {
        let total: u64 = self.relay_histogram.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (total as f64 * p / 100.0).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.relay_histogram.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(RELAY_BUCKETS_US[i]);
            }
        }
        RELAY_BUCKETS_US.last().copied()
    }
}

#[derive(Default)]
struct Counters {
    frames_in: AtomicU64,
    frames_bad: AtomicU64,
    frames_out: AtomicU64,
    local_out: AtomicU64,
    relay_ns_total: AtomicU64,
    relay_ns_max: AtomicU64,
    relay_slow: AtomicU64,
    relay_histogram: [AtomicU64; 9],
    stalled: AtomicU64,
    keepalives_out: AtomicU64,
    keepalive_stalls: AtomicU64,
}

/// What [`Host`](super::Host) and every [`HostControl`] share for MIDI.
#[derive(Clone)]
pub(super) struct MidiShared {
    events: broadcast::Sender<MidiEvent>,
    counters: Arc<Counters>,
}

impl MidiShared {
    pub(super) fn new() -> MidiShared {
        MidiShared {
            events: broadcast::channel(MIDI_EVENTS).0,
            counters: Arc::default(),
        }
    }

    pub(super) fn events_subscribe(&self) -> broadcast::Receiver<MidiEvent> {
        self.events.subscribe()
    }
}

/// MIDI commands for the engine.
pub(super) enum MidiCmd {
    Local {
        time_us: u64,
        messages: Vec<MidiMessage>,
    },
    Mute {
        peer: PeerId,
        muted: bool,
    },
    Panic,
    Activity {
        reply: oneshot::Sender<Vec<PeerMidi>>,
    },
}

/// The engine's MIDI state.
pub(super) struct Live {
    router: Router,
    /// Reused for every frame so the relay path allocates only the frame
    /// it forwards.
    routed: Routed,
    shared: MidiShared,
    /// Peers muted by the host, kept until they leave the jam (the router
    /// forgets an origin's mute when its link is unrouted, which a lost
    /// link or a reopened channel also does). Bounded by the peers known.
    muted: Vec<PeerId>,
    /// The router's clock: the wall clock when the host started, advanced
    /// by the monotonic clock. It reads as µs since the UNIX epoch (what
    /// release frames and activity lights carry), and a step of the wall
    /// clock (NTP setting it) can neither fake a stall nor hide one.
    clock: (Instant, u64),
}

impl Live {
    pub(super) fn new(shared: MidiShared) -> Live {
        let mut live = Live {
            router: Router::new(RouterConfig::host()),
            routed: Routed::default(),
            shared,
            muted: Vec::new(),
            clock: (Instant::now(), ::midi::wall_us()),
        };
        // The timers start now (with no link, this tick does nothing else):
        // the host promises keep-alives from its very first frame, and the
        // engine ticks from the first routed peer on.
        let now = live.now_us();
        live.router.tick(now, &mut live.routed);
        live
    }

    /// `now` for the router, in µs since the UNIX epoch (see `clock`).
    fn now_us(&self) -> u64 {
        let (started, wall) = self.clock;
        let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        wall.saturating_add(elapsed)
    }
}

/// Why [`HostControl::send_midi`] did not take the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendMidiError {
    #[error("the host's command queue is full; the MIDI was dropped")]
    Busy,
    #[error("the host has stopped")]
    Stopped,
}

fn link(peer: PeerId) -> Link {
    Link(peer.0)
}

fn peer_of(origin: Origin) -> Option<PeerId> {
    origin.via().map(|l| PeerId(l.0))
}

impl HostControl {
    /// Plays raw MIDI bytes from the host's own input (whole messages, as an
    /// OS port's callback delivers them; running status inside one call is
    /// fine) to every peer with a `midi` channel, stamped now.
    ///
    /// Never waits, so it can be called from a MIDI backend's thread:
    /// fails with [`SendMidiError::Busy`] when the engine is that far behind.
    pub fn send_midi(&self, bytes: &[u8]) -> Result<(), SendMidiError> {
        let messages = Parser::new().parse(bytes);
        self.send_midi_messages(::midi::wall_us(), messages)
    }

    /// Like [`send_midi`](Self::send_midi) with parsed messages and their
    /// own timestamp (µs since the UNIX epoch).
    pub fn send_midi_messages(
        &self,
        time_us: u64,
        messages: Vec<MidiMessage>,
    ) -> Result<(), SendMidiError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.cmd
            .try_send(Cmd::Midi(MidiCmd::Local { time_us, messages }))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendMidiError::Busy,
                mpsc::error::TrySendError::Closed(_) => SendMidiError::Stopped,
            })
    }

    /// Every message routed to the host's local output from now on: peers'
    /// playing (unless muted) and the Note Offs of the release logic.
    ///
    /// Bounded ([`MIDI_EVENTS`]): a receiver that falls behind gets
    /// `Lagged` and has lost messages, Note Offs possibly among them, so it
    /// should silence its output then (All Notes Off on every channel).
    pub fn midi_events(&self) -> broadcast::Receiver<MidiEvent> {
        self.midi.events_subscribe()
    }

    /// Mutes (or unmutes) a peer on the local output. Muting releases the
    /// notes it holds there; it is still heard by the other peers.
    pub async fn set_muted(&self, peer: PeerId, muted: bool) {
        let _ = self
            .cmd
            .send(Cmd::Midi(MidiCmd::Mute { peer, muted }))
            .await;
    }

    /// Releases every sounding note and pedal on every output that holds
    /// one, and sends All Notes Off on every channel of the local output.
    pub async fn panic(&self) {
        let _ = self.cmd.send(Cmd::Midi(MidiCmd::Panic)).await;
    }

    /// The activity light of every peer that is routed (its `midi` channel
    /// open, see [`PeerMidi::routed`]) or played, and of the host's own
    /// input once it played, for the peer list. In order of peer id, the
    /// host's input first.
    pub async fn midi_activity(&self) -> Vec<PeerMidi> {
        let (reply, wait) = oneshot::channel();
        if self
            .cmd
            .send(Cmd::Midi(MidiCmd::Activity { reply }))
            .await
            .is_err()
        {
            return Vec::new();
        }
        wait.await.unwrap_or_default()
    }

    /// The relay's counters so far.
    pub fn midi_stats(&self) -> MidiStats {
        let c = &self.midi.counters;
        MidiStats {
            frames_in: c.frames_in.load(Ordering::Relaxed),
            frames_bad: c.frames_bad.load(Ordering::Relaxed),
            frames_out: c.frames_out.load(Ordering::Relaxed),
            local_out: c.local_out.load(Ordering::Relaxed),
            relay_ns_total: c.relay_ns_total.load(Ordering::Relaxed),
            relay_ns_max: c.relay_ns_max.load(Ordering::Relaxed),
            relay_slow: c.relay_slow.load(Ordering::Relaxed),
            relay_histogram: std::array::from_fn(|i| c.relay_histogram[i].load(Ordering::Relaxed)),
            stalled: c.stalled.load(Ordering::Relaxed),
            keepalives_out: c.keepalives_out.load(Ordering::Relaxed),
            keepalive_stalls: c.keepalive_stalls.load(Ordering::Relaxed),
        }
    }
}

impl Engine {
    pub(super) fn on_midi_cmd(&mut self, c: MidiCmd) {
        let now = self.live.now_us();
        let mut out = std::mem::take(&mut self.live.routed);
        match c {
            MidiCmd::Local { time_us, messages } => {
                if let Some(r) = self.recording.as_mut() {
                    let at = Instant::now();
                    for m in &messages {
                        r.recorder.message(at, super::record::HOST, m);
                    }
                }
                self.live
                    .router
                    .local_input(now, time_us, &messages, &mut out);
            }
            MidiCmd::Mute { peer, muted } => {
                self.live.muted.retain(|p| *p != peer);
                if muted && self.links.contains_key(&peer) {
                    self.live.muted.push(peer);
                }
                self.live
                    .router
                    .set_muted(now, Origin::peer(link(peer)), muted, &mut out);
            }
            MidiCmd::Panic => {
                // The peers' held notes end through the Note Offs the
                // router hands to the local output; the host's own here.
                if let Some(r) = self.recording.as_mut() {
                    r.recorder.peer_gone(Instant::now(), super::record::HOST);
                }
                self.live.router.panic(now, &mut out)
            }
            MidiCmd::Activity { reply } => {
                let router = &self.live.router;
                let mut rows: Vec<PeerMidi> = router
                    .activity()
                    .into_iter()
                    .map(|(origin, activity)| PeerMidi {
                        peer: peer_of(origin),
                        activity,
                        routed: origin.via().is_some_and(|l| router.is_routed(l)),
                    })
                    .collect();
                // Routed peers that have not played yet have no voice in
                // the router; they get a quiet row, so a front end (and a
                // test) sees the channel open before the first note. At
                // most `MAX_LINKS` links, so this stays cheap.
                for l in router.links() {
                    let origin = Origin::peer(l);
                    if !rows.iter().any(|r| r.peer == peer_of(origin)) {
                        rows.push(PeerMidi {
                            peer: peer_of(origin),
                            activity: router.activity_of(origin),
                            routed: true,
                        });
                    }
                }
                rows.sort_unstable_by_key(|r| r.peer);
                let _ = reply.send(rows);
            }
        }
        self.deliver_midi(&mut out);
        self.live.routed = out;
    }

    /// A frame on a peer's `midi` channel: the relay's hot path.
    pub(super) fn on_midi_frame(&mut self, peer: PeerId, data: &[u8]) {
        let started = Instant::now();
        let counters = self.live.shared.counters.clone();
        counters.frames_in.fetch_add(1, Ordering::Relaxed);
        let mut out = std::mem::take(&mut self.live.routed);
        let now = self.live.now_us();
        if self
            .live
            .router
            .frame(now, link(peer), data, &mut out)
            .is_err()
        {
            counters.frames_bad.fetch_add(1, Ordering::Relaxed);
        }
        self.deliver_midi(&mut out);
        self.live.routed = out;
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counters.relay_ns_total.fetch_add(ns, Ordering::Relaxed);
        counters.relay_ns_max.fetch_max(ns, Ordering::Relaxed);
        if ns > RELAY_SLOW_NS {
            counters.relay_slow.fetch_add(1, Ordering::Relaxed);
        }
        let us = ns.div_ceil(1000);
        let bucket = RELAY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(RELAY_BUCKETS_US.len() - 1);
        counters.relay_histogram[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The `midi` channel of `peer` opened: give it a writer, and route it
    /// if it is welcomed already.
    pub(super) fn midi_channel_opened(&mut self, peer: PeerId) {
        let Some(slot) = self.links.get_mut(&peer) else {
            return;
        };
        let (tx, mut rx) = mpsc::channel::<Bytes>(MIDI_QUEUE);
        let writer = slot.link.clone();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if writer.send(MIDI_CHANNEL, frame).await.is_err() {
                    break;
                }
            }
        });
        slot.midi_out = Some(tx);
        self.midi_maybe_route(peer);
    }

    /// Routes `peer` if its `midi` channel is open, it was welcomed and its
    /// link is up (called on each of those events).
    pub(super) fn midi_maybe_route(&mut self, peer: PeerId) {
        let ready = self.links.get(&peer).is_some_and(|s| {
            s.midi_out.is_some() && s.link.state() != crate::rtc::LinkState::Disconnected
        }) && self.jam.peer(peer).is_some_and(|p| p.is_welcomed());
        if !ready || self.live.router.is_routed(link(peer)) {
            return;
        }
        if !self.live.router.link_opened(link(peer)) {
            let _ = self.events.send(super::HostEvent::Error {
                message: format!("{peer} cannot get live MIDI: too many MIDI peers"),
            });
            return;
        }
        if self.live.muted.contains(&peer) {
            // Nothing sounds yet, so this releases nothing.
            let mut out = Routed::default();
            let now = self.live.now_us();
            self.live
                .router
                .set_muted(now, Origin::peer(link(peer)), true, &mut out);
            self.deliver_midi(&mut out);
        }
    }

    /// `peer` left the jam (for any reason): released everywhere, and its
    /// mute forgotten.
    pub(super) fn midi_peer_left(&mut self, peer: PeerId) {
        self.live.muted.retain(|p| *p != peer);
        self.midi_unroute(peer, true);
    }

    /// `peer` no longer takes part in MIDI (channel closed, link lost, or
    /// gone from the jam): release what it left sounding everywhere.
    /// `forget_writer` when its channel is gone for good.
    pub(super) fn midi_unroute(&mut self, peer: PeerId, forget_writer: bool) {
        if forget_writer {
            if let Some(slot) = self.links.get_mut(&peer) {
                slot.midi_out = None;
            }
        }
        let mut out = Routed::default();
        let now = self.live.now_us();
        self.live.router.link_closed(now, link(peer), &mut out);
        self.deliver_midi(&mut out);
    }

    /// The host stops: every note it relayed or played is released on the
    /// peers and the local output before the links close.
    pub(super) fn midi_release_all(&mut self) {
        let mut out = Routed::default();
        let now = self.live.now_us();
        self.live.router.release_all(now, &mut out);
        self.deliver_midi(&mut out);
    }

    /// Whether the router's timers have anything to watch (a peer routed).
    pub(super) fn midi_timers_needed(&self) -> bool {
        self.live.router.links().next().is_some()
    }

    /// The router's timers, every [`MIDI_TICK_EVERY`] while a peer is
    /// routed: keep-alives to the peers that hold the host's notes, and the
    /// release of peers that promised keep-alives and went silent.
    pub(super) fn midi_tick(&mut self) {
        let now = self.live.now_us();
        let mut out = std::mem::take(&mut self.live.routed);
        let before = self.live.router.stats();
        self.live.router.tick(now, &mut out);
        let after = self.live.router.stats();
        if after.stalls != before.stalls {
            for l in self.live.router.links() {
                if self.live.router.stalled_since(l) == Some(now) {
                    tracing::info!(
                        peer = l.0,
                        "{} stalled (promised keep-alives, silent for 1 s); its notes were released",
                        PeerId(l.0)
                    );
                }
            }
        }
        let c = &self.live.shared.counters;
        c.keepalives_out.fetch_add(
            after.keepalives_out - before.keepalives_out,
            Ordering::Relaxed,
        );
        c.keepalive_stalls
            .fetch_add(after.stalls - before.stalls, Ordering::Relaxed);
        self.deliver_midi(&mut out);
        self.live.routed = out;
    }

    /// Carries out the router's output: frames onto the peers' queues,
    /// local messages onto the broadcast. Leaves `out` empty.
    fn deliver_midi(&mut self, out: &mut Routed) {
        let counters = self.live.shared.counters.clone();
        let mut stalled: Vec<PeerId> = Vec::new();
        for (l, frame) in out.sends.drain(..) {
            let peer = PeerId(l.0);
            let Some(tx) = self.links.get(&peer).and_then(|s| s.midi_out.as_ref()) else {
                continue;
            };
            match tx.try_send(frame) {
                Ok(()) => {
                    counters.frames_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !stalled.contains(&peer) {
                        stalled.push(peer);
                    }
                }
                // The writer ended: the channel is closing, its close
                // event will unroute the peer.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        if !out.local.is_empty() {
            counters
                .local_out
                .fetch_add(out.local.len() as u64, Ordering::Relaxed);
            for d in out.local.drain(..) {
                if let (Some(r), Some(p)) = (self.recording.as_mut(), peer_of(d.origin)) {
                    r.recorder.message(Instant::now(), p, &d.message);
                }
                // No receiver is fine: the host may have no MIDI output.
                let _ = self.live.shared.events.send(MidiEvent {
                    peer: peer_of(d.origin),
                    time_us: d.time_us,
                    message: d.message,
                    release: d.release,
                });
            }
        }
        for peer in stalled {
            counters.stalled.fetch_add(1, Ordering::Relaxed);
            // As for a full `midieditor` queue: the peer is dropped, and
            // leaving releases its notes on everyone else.
            let now = self.now();
            let actions = self.jam.kick(now, peer, "stalled");
            self.perform(actions);
            self.drop_link(
                peer,
                LeaveReason::Kicked {
                    reason: "stalled".into(),
                },
            );
        }
    }
}
