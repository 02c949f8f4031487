//! Who hears what, and the guarantee that nobody is left with a stuck note.
//!
//! [`Router`] is a state machine without I/O or clock: the async edge hands
//! it what arrived (a frame from a link, messages from the local input, a
//! link gone) with the current time, and carries out what it returns in a
//! [`Routed`]: frames to send on links, messages for the local output.
//!
//! # Routing
//!
//! - Local input goes to every link (never to the local output unless
//!   [`RouterConfig::local_thru`]: the player's own synth usually hears the
//!   keyboard directly).
//! - A link's messages go to the local output, unless their origin is muted,
//!   and **on the host** to every other link as well: the host is the hub
//!   of a star, and relays each frame with the origin set to the link it
//!   came from (what a joiner claims as origin is never trusted). A joiner
//!   relays nothing.
//!
//! # No stuck notes
//!
//! For every origin the router tracks which notes are sounding (channel,
//! key) and on which channels the sustain pedal (CC 64) is down, and for
//! each of them the exact set of outputs that played it: the local output
//! and the links it was sent to. When an origin goes away (its link closed,
//! was kicked, stalled; the app quits) the outputs that still hold its notes
//! get a Note Off for each one and a sustain-off for each held pedal, and
//! nothing is sent to outputs that never played them. Muting an origin
//! releases what it holds on the local output. [`Router::panic`] releases
//! everything everywhere and also sends All Notes Off on every channel of
//! the local output.
//!
//! An output that leaves is taken out of every set at once, so a later
//! release never targets a link that is gone, and a link that joins later
//! never gets note-offs for notes it never heard (harmless, but noise).
//!
//! # Keep-alive and stalls
//!
//! A player whose machine dies (killed, frozen, unplugged) says nothing,
//! and the only sign the WebRTC stack gives is ICE consent failing, about
//! 5 s later (~4.7 s measured with webrtc-rs): that long its notes would
//! hang on everyone's synth. Silence alone cannot be the sign either, since
//! a player may hold a chord for a minute without sending a byte. So the
//! `midi` channel has a promise (docs/midi-frames.md, "Keep-alive and
//! stalls"): a sender that sets [`flags::KEEPALIVE`] on its frames sends at
//! least one frame every 250 ms for as long as anything it sent still holds
//! a note or pedal, an empty frame when it has nothing to play. A link that
//! made that promise and then stays silent for 1 s while notes it played
//! sound anywhere has **stalled**: those notes are released on every output
//! that holds them, as for a link that closed, but the link stays routed
//! (the next frame from it ends the stall; a stall releases once).
//!
//! It is negotiated by the flag itself, per link, so peers that do not know
//! it are never affected: a receiver that does not know the flag ignores
//! it, and ignores empty frames too; a link that never set the flag is
//! never taken for stalled, however long it is silent.
//!
//! With [`RouterConfig::keepalive`] set (the default), the async edge calls
//! [`Router::tick`] about every 100 ms: it sends the keep-alives that are
//! due and releases stalled links. From its first tick on, every frame this
//! router makes carries the flag (its own input, relays, releases: a
//! relayed frame carries the relaying router's promise, never the
//! player's). An edge that never ticks (written before keep-alives) makes
//! no promise it would not keep.
//!
//! # Bounds
//!
//! At most [`MAX_LINKS`] routed links (each is one bit of a 64-bit set, so
//! tracking costs no allocation per output) and [`RouterConfig::max_origins`]
//! tracked origins; a voice holds at most 16 × 128 notes.

use std::collections::HashMap;

use bytes::Bytes;

use crate::frame::{self, flags, FrameError, FrameHeader, FrameRef, ORIGIN_SENDER};
use crate::message::{cc, MidiMessage};

/// Most links the router can route to at once.
pub const MAX_LINKS: usize = 63;

/// The bit of a [`DestSet`] that stands for the local output.
const LOCAL_BIT: u64 = 1 << 63;

/// The keep-alive promise of the `midi` channel: at most this long without
/// a frame on a link that holds our notes (docs/midi-frames.md).
pub const KEEPALIVE_EVERY_US: u64 = 250_000;

/// Silence after which a link that promised keep-alives, and whose notes
/// still sound, counts as stalled (docs/midi-frames.md).
pub const STALL_US: u64 = 1_000_000;

/// How a router keeps its keep-alive promise and spots stalled links (see
/// the module docs). Times in µs, on the clock of the routers' `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// The promise: the longest a link that holds this router's notes goes
    /// without a frame from it. [`Router::tick`] sends a keep-alive once
    /// waiting for the next tick (expected as far off as the last one was)
    /// could break it, so with ticks every 100 ms the gaps are ~200 ms.
    pub every_us: u64,
    /// Silence after which a link that announced keep-alives, and whose
    /// players' notes or pedals still sound, is released as stalled.
    pub stall_us: u64,
}

impl Default for KeepAlive {
    fn default() -> KeepAlive {
        KeepAlive {
            every_us: KEEPALIVE_EVERY_US,
            stall_us: STALL_US,
        }
    }
}

/// A connection to another peer: on the host one per joiner (the host's
/// peer id), on a joiner the one to its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Link(pub u64);

/// Who played a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// This machine's own MIDI input.
    Local,
    /// A player heard through link `via`. `player` is the frame's origin as
    /// the router understands it: on the host always `via`'s own id (see
    /// [`Origin::peer`]); on a joiner the origin the host wrote (0 for the
    /// host's own playing, otherwise the host's id of the player).
    Remote { via: Link, player: u64 },
}

impl Origin {
    /// The origin of everything that arrives on the host from `link`.
    pub fn peer(link: Link) -> Origin {
        Origin::Remote {
            via: link,
            player: link.0,
        }
    }

    /// The link it came through, if any.
    pub fn via(&self) -> Option<Link> {
        match self {
            Origin::Local => None,
            Origin::Remote { via, .. } => Some(*via),
        }
    }
}

/// Which side of the star this router is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The hub: relays every link's messages to every other link.
    Host,
    /// A leaf: its one link is the host; it relays nothing.
    Joiner,
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub role: Role,
    /// Also play the local input on the local output.
    pub local_thru: bool,
    /// Most origins tracked at once. On the host there is one per link;
    /// on a joiner one per player the host relays, which a hostile host
    /// could otherwise make unbounded. Idle origins are forgotten first.
    pub max_origins: usize,
    /// Promise keep-alives (set [`flags::KEEPALIVE`] on every frame made
    /// here) and release links that promised them and stalled, driven by
    /// [`Router::tick`], to be called about every 100 ms while links are
    /// routed. The promise starts with the first `tick` (call it once
    /// before any link is routed to have it on every frame): a router whose
    /// edge never ticks never promises, since the other side would take
    /// its silence for a stall and cut its held notes after
    /// [`KeepAlive::stall_us`]. `None`: no flag, and `tick` does nothing.
    pub keepalive: Option<KeepAlive>,
}

impl RouterConfig {
    pub fn host() -> RouterConfig {
        RouterConfig {
            role: Role::Host,
            local_thru: false,
            max_origins: 256,
            keepalive: Some(KeepAlive::default()),
        }
    }

    pub fn joiner() -> RouterConfig {
        RouterConfig {
            role: Role::Joiner,
            ..RouterConfig::host()
        }
    }
}

/// A message for the local output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub origin: Origin,
    /// The sender's timestamp (µs since the UNIX epoch; 0 if unknown), or
    /// the router's `now` for messages it made itself.
    pub time_us: u64,
    pub message: MidiMessage,
    /// Made by the release logic (a leave, a mute, a panic), not played.
    pub release: bool,
}

/// What the caller must do, in order per output. Reuse one across calls
/// ([`Routed::clear`]) and the relay path allocates only the frame it
/// forwards.
#[derive(Debug, Default, Clone)]
pub struct Routed {
    /// Frames to send, each on one link's `midi` channel. A frame relayed
    /// to several links is one shared buffer (so is a tick's keep-alive).
    pub sends: Vec<(Link, Bytes)>,
    /// Messages for the local output.
    pub local: Vec<Delivery>,
}

impl Routed {
    pub fn clear(&mut self) {
        self.sends.clear();
        self.local.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.local.is_empty()
    }
}

/// The activity light of an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Activity {
    /// `now` of its last message; `None` before the first.
    pub last_us: Option<u64>,
    /// Messages received from it.
    pub messages: u64,
    /// Notes it holds sounding right now.
    pub sounding: usize,
    /// Channels on which its sustain pedal is down.
    pub sustained: usize,
    pub muted: bool,
}

/// Counters for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterStats {
    pub frames_in: u64,
    pub messages_in: u64,
    /// Frames refused by the decoder.
    pub frames_bad: u64,
    /// Frames from links that are not routed (not open yet, or gone).
    pub frames_unrouted: u64,
    /// Frames dropped because [`RouterConfig::max_origins`] was reached.
    pub frames_no_room: u64,
    pub frames_out: u64,
    /// Note Offs and sustain-offs made by the release logic.
    pub releases: u64,
    /// Empty keep-alive frames sent by [`Router::tick`] (also counted in
    /// `frames_out`).
    pub keepalives_out: u64,
    /// Empty frames received with [`flags::KEEPALIVE`] on routed links.
    pub keepalives_in: u64,
    /// Times a link that promised keep-alives went silent while its
    /// players' notes sounded, and was released ([`Router::tick`]).
    pub stalls: u64,
}

/// A set of outputs: bit `i` for the link in slot `i`, [`LOCAL_BIT`] for
/// the local output.
type DestSet = u64;

/// What one origin holds.
#[derive(Debug, Default)]
struct Voice {
    /// (channel, key) → outputs that played its Note On.
    notes: HashMap<(u8, u8), DestSet>,
    /// Per channel: outputs that got its sustain pedal down.
    sustain: [DestSet; 16],
    last_us: Option<u64>,
    messages: u64,
}

impl Voice {
    fn is_idle(&self) -> bool {
        self.notes.is_empty() && self.sustain.iter().all(|s| *s == 0)
    }

    /// Every output on which one of its notes or pedals is held.
    fn held(&self) -> DestSet {
        let notes = self.notes.values().fold(0, |acc, d| acc | d);
        self.sustain.iter().fold(notes, |acc, d| acc | d)
    }

    /// Follows one message sent to `dests`.
    fn track(&mut self, m: &MidiMessage, dests: DestSet) {
        match *m {
            MidiMessage::NoteOn {
                channel,
                key,
                velocity,
            } if velocity & 0x7F > 0 => self.note_on(channel, key, dests),
            MidiMessage::NoteOn { channel, key, .. }
            | MidiMessage::NoteOff { channel, key, .. } => {
                // Sent to every current output, so wherever it still
                // sounded it is released now.
                self.notes.remove(&(channel & 0x0F, key & 0x7F));
            }
            MidiMessage::ControlChange {
                channel,
                controller,
                value,
            } => {
                let ch = usize::from(channel & 0x0F);
                match controller {
                    cc::SUSTAIN if value >= 64 => self.sustain[ch] |= dests,
                    cc::SUSTAIN | cc::RESET_ALL_CONTROLLERS => self.sustain[ch] = 0,
                    cc::ALL_NOTES_OFF | cc::ALL_SOUND_OFF => {
                        self.notes.retain(|(c, _), _| usize::from(*c) != ch)
                    }
                    _ => {}
                }
            }
            MidiMessage::Reset => {
                self.notes.clear();
                self.sustain = [0; 16];
            }
            _ => {}
        }
    }

    /// A note starts sounding on `dests` (added to where it already sounds:
    /// a key struck again before its Note Off).
    fn note_on(&mut self, channel: u8, key: u8, dests: DestSet) {
        if dests != 0 {
            *self.notes.entry((channel & 0x0F, key & 0x7F)).or_insert(0) |= dests;
        }
    }

    /// Takes `mask`'s outputs out of everything held.
    fn forget(&mut self, mask: DestSet) {
        self.notes.retain(|_, d| {
            *d &= !mask;
            *d != 0
        });
        for s in &mut self.sustain {
            *s &= !mask;
        }
    }

    /// The release messages for the outputs in `mask`, per output bit:
    /// Note Offs (in channel, key order) then sustain-offs. Forgets them.
    fn release(&mut self, mask: DestSet) -> Vec<(u64, Vec<MidiMessage>)> {
        let mut keys: Vec<((u8, u8), DestSet)> = self
            .notes
            .iter()
            .filter(|(_, d)| **d & mask != 0)
            .map(|(k, d)| (*k, *d & mask))
            .collect();
        keys.sort_unstable();
        let mut per: Vec<(u64, Vec<MidiMessage>)> = Vec::new();
        let mut add = |bit: u64, m: MidiMessage| match per.iter_mut().find(|(b, _)| *b == bit) {
            Some((_, v)) => v.push(m),
            None => per.push((bit, vec![m])),
        };
        for ((ch, key), d) in &keys {
            for bit in bits(*d) {
                add(bit, MidiMessage::note_off(*ch, *key));
            }
        }
        for (ch, d) in self.sustain.iter().enumerate() {
            for bit in bits(*d & mask) {
                add(bit, MidiMessage::control(ch as u8, cc::SUSTAIN, 0));
            }
        }
        self.forget(mask);
        per
    }
}

/// The single bits of a set, low to high.
fn bits(mut set: u64) -> impl Iterator<Item = u64> {
    std::iter::from_fn(move || {
        if set == 0 {
            return None;
        }
        let bit = set & set.wrapping_neg();
        set &= !bit;
        Some(bit)
    })
}

/// A routed link.
#[derive(Debug, Clone, Copy)]
struct LinkState {
    link: Link,
    /// Its bit index in a [`DestSet`].
    slot: u8,
    /// `now` of the last frame sent to it; `None` before the first.
    last_sent: Option<u64>,
    /// `now` of the last frame received from it (decoded, any content).
    last_recv: Option<u64>,
    /// A frame with [`flags::KEEPALIVE`] came from it since it was opened.
    announced: bool,
    /// `now` of the tick that found it stalled, until its next frame.
    stalled: Option<u64>,
}

impl LinkState {
    fn bit(&self) -> DestSet {
        1u64 << self.slot
    }
}

/// The routing and note-tracking state machine. See the module docs.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    /// Routed links, in opening order.
    links: Vec<LinkState>,
    /// Bits of all routed links.
    link_mask: DestSet,
    voices: HashMap<Origin, Voice>,
    muted: Vec<Origin>,
    /// `now` of the last [`Router::tick`].
    last_tick: Option<u64>,
    stats: RouterStats,
}

impl Router {
    pub fn new(cfg: RouterConfig) -> Router {
        Router {
            cfg,
            links: Vec::new(),
            link_mask: 0,
            voices: HashMap::new(),
            muted: Vec::new(),
            last_tick: None,
            stats: RouterStats::default(),
        }
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Routed links, in opening order.
    pub fn links(&self) -> impl Iterator<Item = Link> + '_ {
        self.links.iter().map(|l| l.link)
    }

    pub fn is_routed(&self, link: Link) -> bool {
        self.slot(link).is_some()
    }

    /// Whether a frame with [`flags::KEEPALIVE`] came on `link` since it
    /// was routed: only such a link can be taken for stalled.
    pub fn promised_keepalive(&self, link: Link) -> bool {
        self.links.iter().any(|l| l.link == link && l.announced)
    }

    /// While `link` counts as stalled (see [`Router::tick`]): the `now` of
    /// the tick that found it so. Its next frame ends that.
    pub fn stalled_since(&self, link: Link) -> Option<u64> {
        self.links
            .iter()
            .find(|l| l.link == link)
            .and_then(|l| l.stalled)
    }

    fn slot(&self, link: Link) -> Option<u64> {
        self.links
            .iter()
            .find(|l| l.link == link)
            .map(LinkState::bit)
    }

    /// The flags of every frame this router makes, besides `RELEASE`: it
    /// promises keep-alives once its timers have run (see
    /// [`RouterConfig::keepalive`]).
    fn own_flags(&self) -> u8 {
        if self.cfg.keepalive.is_some() && self.last_tick.is_some() {
            flags::KEEPALIVE
        } else {
            0
        }
    }

    /// A link's `midi` channel is open (on the host: and the peer was
    /// welcomed). From now on it gets what it should hear. Returns `false`
    /// when [`MAX_LINKS`] links are already routed (it then hears nothing);
    /// `true` if it is routed (also when it already was).
    pub fn link_opened(&mut self, link: Link) -> bool {
        if self.is_routed(link) {
            return true;
        }
        let Some(slot) = (0..MAX_LINKS as u8).find(|s| self.link_mask & (1u64 << s) == 0) else {
            return false;
        };
        self.links.push(LinkState {
            link,
            slot,
            last_sent: None,
            last_recv: None,
            announced: false,
            stalled: None,
        });
        self.link_mask |= 1u64 << slot;
        true
    }

    /// A link is gone (closed, kicked, stalled, its channel closed): it is
    /// taken out of every output set, and every origin heard through it is
    /// released on the outputs that still hold its notes, then forgotten.
    pub fn link_closed(&mut self, now: u64, link: Link, out: &mut Routed) {
        if let Some(bit) = self.slot(link) {
            for v in self.voices.values_mut() {
                v.forget(bit);
            }
            self.links.retain(|l| l.link != link);
            self.link_mask &= !bit;
        }
        let mut gone: Vec<Origin> = self
            .voices
            .keys()
            .filter(|o| o.via() == Some(link))
            .copied()
            .collect();
        gone.sort_unstable();
        for origin in gone {
            self.release_origin(now, origin, u64::MAX, out);
            self.voices.remove(&origin);
        }
        self.muted.retain(|o| o.via() != Some(link));
    }

    /// Mutes or unmutes an origin on the local output. Muting releases
    /// what it holds there; its messages are still relayed to the others.
    /// Muting [`Origin::Local`] does nothing (local input is never played
    /// locally, except with `local_thru`, and then it is the player's own).
    pub fn set_muted(&mut self, now: u64, origin: Origin, muted: bool, out: &mut Routed) {
        if origin == Origin::Local {
            return;
        }
        if muted {
            if !self.muted.contains(&origin) {
                // Bounded: an origin that is not tracked is only kept while
                // its link is routed, and links are bounded.
                if origin.via().is_some_and(|l| self.is_routed(l))
                    || self.voices.contains_key(&origin)
                {
                    self.muted.push(origin);
                }
            }
            self.release_origin(now, origin, LOCAL_BIT, out);
        } else {
            self.muted.retain(|o| *o != origin);
        }
    }

    pub fn is_muted(&self, origin: Origin) -> bool {
        self.muted.contains(&origin)
    }

    /// Every origin's notes and pedals are released on every output that
    /// holds them, then All Notes Off and sustain-off go to every channel of
    /// the local output (for notes no tracking knows of: a synth's own
    /// hanging notes). Links get only the targeted releases: a panic here
    /// must not cut off other players' own notes on their own synths.
    pub fn panic(&mut self, now: u64, out: &mut Routed) {
        self.release_all(now, out);
        for ch in 0..16u8 {
            for m in [
                MidiMessage::control(ch, cc::SUSTAIN, 0),
                MidiMessage::control(ch, cc::ALL_NOTES_OFF, 0),
            ] {
                out.local.push(Delivery {
                    origin: Origin::Local,
                    time_us: now,
                    message: m,
                    release: true,
                });
                self.stats.releases += 1;
            }
        }
    }

    /// Releases every origin's notes and pedals on every output that holds
    /// them (the app is quitting, or leaving the jam). Activity is kept.
    pub fn release_all(&mut self, now: u64, out: &mut Routed) {
        let mut origins: Vec<Origin> = self.voices.keys().copied().collect();
        origins.sort_unstable();
        for origin in origins {
            self.release_origin(now, origin, u64::MAX, out);
        }
    }

    /// Releases what `origin` holds on the outputs in `mask`.
    fn release_origin(&mut self, now: u64, origin: Origin, mask: DestSet, out: &mut Routed) {
        let Some(voice) = self.voices.get_mut(&origin) else {
            return;
        };
        let per = voice.release(mask);
        let wire_origin = self.wire_origin(origin);
        for (bit, messages) in per {
            self.stats.releases += messages.len() as u64;
            if bit == LOCAL_BIT {
                out.local
                    .extend(messages.into_iter().map(|message| Delivery {
                        origin,
                        time_us: now,
                        message,
                        release: true,
                    }));
            } else {
                let header = FrameHeader {
                    flags: flags::RELEASE | self.own_flags(),
                    origin: wire_origin,
                    time_us: now,
                };
                let Some(ls) = self.links.iter_mut().find(|l| l.bit() == bit) else {
                    continue;
                };
                ls.last_sent = Some(now);
                for f in frame::encode_split(&header, &messages) {
                    self.stats.frames_out += 1;
                    out.sends.push((ls.link, f));
                }
            }
        }
    }

    /// The origin written in frames this router sends for `origin`.
    fn wire_origin(&self, origin: Origin) -> u64 {
        match origin {
            Origin::Local => ORIGIN_SENDER,
            Origin::Remote { player, .. } => player,
        }
    }

    /// Makes room for a new origin: forgets the idle one heard from longest
    /// ago. `false` if every tracked origin holds notes.
    fn room_for(&mut self, origin: Origin) -> bool {
        if self.voices.contains_key(&origin) || self.voices.len() < self.cfg.max_origins {
            return true;
        }
        let oldest = self
            .voices
            .iter()
            .filter(|(o, v)| v.is_idle() && **o != Origin::Local)
            .min_by_key(|(_, v)| v.last_us)
            .map(|(o, _)| *o);
        match oldest {
            Some(o) => {
                self.voices.remove(&o);
                true
            }
            None => false,
        }
    }

    /// Messages from the local input (an OS port, the UI): sent to every
    /// routed link, stamped `time_us` (µs since the UNIX epoch when they
    /// were played). Batches larger than one frame are split.
    pub fn local_input(
        &mut self,
        now: u64,
        time_us: u64,
        messages: &[MidiMessage],
        out: &mut Routed,
    ) {
        if messages.is_empty() {
            return;
        }
        let dests = self.link_mask | if self.cfg.local_thru { LOCAL_BIT } else { 0 };
        let voice = self.voices.entry(Origin::Local).or_default();
        voice.last_us = Some(now);
        voice.messages += messages.len() as u64;
        for m in messages {
            voice.track(m, dests);
        }
        if self.cfg.local_thru {
            out.local.extend(messages.iter().map(|m| Delivery {
                origin: Origin::Local,
                time_us,
                message: m.clone(),
                release: false,
            }));
        }
        if self.link_mask == 0 {
            return;
        }
        let header = FrameHeader {
            flags: self.own_flags(),
            origin: ORIGIN_SENDER,
            time_us,
        };
        for f in frame::encode_split(&header, messages) {
            for ls in &mut self.links {
                ls.last_sent = Some(now);
                self.stats.frames_out += 1;
                out.sends.push((ls.link, f.clone()));
            }
        }
    }

    /// A frame arrived on `link`'s `midi` channel. Refused whole if it does
    /// not decode (nothing of it is routed); ignored if the link is not
    /// routed. Any frame from a routed link ends its stall, and one with
    /// [`flags::KEEPALIVE`] makes it a link that promised keep-alives; an
    /// empty frame does nothing more (not played, not relayed, not counted
    /// as activity). Returns the number of messages routed.
    pub fn frame(
        &mut self,
        now: u64,
        link: Link,
        data: &[u8],
        out: &mut Routed,
    ) -> Result<usize, FrameError> {
        let f = match FrameRef::decode(data) {
            Ok(f) => f,
            Err(e) => {
                self.stats.frames_bad += 1;
                return Err(e);
            }
        };
        self.stats.frames_in += 1;
        let Some(source) = self.links.iter_mut().find(|l| l.link == link) else {
            self.stats.frames_unrouted += 1;
            return Ok(0);
        };
        let source_bit = source.bit();
        source.last_recv = Some(now);
        source.stalled = None;
        if f.header.flags & flags::KEEPALIVE != 0 {
            source.announced = true;
        }
        if f.is_empty() {
            if f.header.flags & flags::KEEPALIVE != 0 {
                self.stats.keepalives_in += 1;
            }
            return Ok(0);
        }
        let origin = match self.cfg.role {
            Role::Host => Origin::peer(link),
            Role::Joiner => Origin::Remote {
                via: link,
                player: f.header.origin,
            },
        };
        if !self.room_for(origin) {
            self.stats.frames_no_room += 1;
            return Ok(0);
        }
        let local = if self.muted.contains(&origin) {
            0
        } else {
            LOCAL_BIT
        };
        let relay = match self.cfg.role {
            Role::Host => self.link_mask & !source_bit,
            Role::Joiner => 0,
        };
        let dests = local | relay;
        let voice = self.voices.entry(origin).or_default();
        voice.last_us = Some(now);
        let mut n = 0;
        for m in f.messages() {
            voice.track(&m, dests);
            n += 1;
            if local != 0 {
                out.local.push(Delivery {
                    origin,
                    time_us: f.header.time_us,
                    message: m,
                    release: false,
                });
            }
        }
        voice.messages += n as u64;
        self.stats.messages_in += n as u64;
        if relay != 0 && n > 0 {
            // The player's RELEASE bit, this router's own promise: the
            // player's KEEPALIVE (and any bit this router does not know)
            // is not passed on.
            let header = FrameHeader {
                flags: (f.header.flags & flags::RELEASE) | self.own_flags(),
                origin: self.wire_origin(origin),
                time_us: f.header.time_us,
            };
            let relayed = frame::encode_with_body(&header, f.body());
            for ls in &mut self.links {
                if relay & ls.bit() != 0 {
                    ls.last_sent = Some(now);
                    self.stats.frames_out += 1;
                    out.sends.push((ls.link, relayed.clone()));
                }
            }
        }
        Ok(n)
    }

    /// Timers, to be called about every 100 ms while links are routed (not
    /// needed while none is) with [`RouterConfig::keepalive`] set; does
    /// nothing without it. The first call starts the keep-alive promise:
    /// every frame made from then on carries [`flags::KEEPALIVE`].
    ///
    /// 1. **Stalls**: a routed link that promised keep-alives, from which
    ///    nothing came for [`KeepAlive::stall_us`] while notes or pedals of
    ///    players heard through it still sound somewhere, is released: those
    ///    players' notes and pedals on every output that holds them (frames
    ///    flagged `RELEASE` to links, deliveries to the local output), as
    ///    [`Router::link_closed`] would. The link stays routed and counts as
    ///    stalled ([`Router::stalled_since`]) until a frame comes from it
    ///    again, and then is served as before. Links that never promised
    ///    are never released here.
    /// 2. **Keep-alives**: an empty frame (origin 0, flags `KEEPALIVE`,
    ///    time `now`) to each routed link that holds a note or pedal this
    ///    router sent and would otherwise go [`KeepAlive::every_us`]
    ///    without a frame before the next tick (expected as far off as the
    ///    last one was). One buffer shared by all of them.
    pub fn tick(&mut self, now: u64, out: &mut Routed) {
        let Some(ka) = self.cfg.keepalive else {
            return;
        };
        let spacing = self
            .last_tick
            .map_or(0, |t| now.saturating_sub(t))
            .min(ka.every_us);
        self.last_tick = Some(now);

        for i in 0..self.links.len() {
            let ls = self.links[i];
            let silent = ls
                .last_recv
                .is_some_and(|t| now.saturating_sub(t) >= ka.stall_us);
            if !ls.announced || ls.stalled.is_some() || !silent {
                continue;
            }
            // Allocates only when a link really stalled.
            let mut holding: Vec<Origin> = self
                .voices
                .iter()
                .filter(|(o, v)| o.via() == Some(ls.link) && !v.is_idle())
                .map(|(o, _)| *o)
                .collect();
            if holding.is_empty() {
                continue;
            }
            holding.sort_unstable();
            self.links[i].stalled = Some(now);
            self.stats.stalls += 1;
            for origin in holding {
                self.release_origin(now, origin, u64::MAX, out);
            }
        }

        let held = self.voices.values().fold(0, |acc, v| acc | v.held()) & self.link_mask;
        if held == 0 {
            return;
        }
        let mut keepalive: Option<Bytes> = None;
        for ls in &mut self.links {
            if held & ls.bit() == 0 {
                continue;
            }
            let quiet = ls.last_sent.map_or(u64::MAX, |t| now.saturating_sub(t));
            if quiet.saturating_add(spacing) < ka.every_us {
                continue;
            }
            let f = keepalive.get_or_insert_with(|| {
                let header = FrameHeader {
                    flags: flags::KEEPALIVE,
                    origin: ORIGIN_SENDER,
                    time_us: now,
                };
                frame::encode_with_body(&header, &[])
            });
            ls.last_sent = Some(now);
            self.stats.frames_out += 1;
            self.stats.keepalives_out += 1;
            out.sends.push((ls.link, f.clone()));
        }
    }

    /// The activity light of every tracked origin.
    pub fn activity(&self) -> Vec<(Origin, Activity)> {
        let mut v: Vec<(Origin, Activity)> = self
            .voices
            .iter()
            .map(|(o, voice)| (*o, self.activity_of_voice(*o, voice)))
            .collect();
        v.sort_unstable_by_key(|(o, _)| *o);
        v
    }

    /// The activity light of one origin (all zero if never heard).
    pub fn activity_of(&self, origin: Origin) -> Activity {
        match self.voices.get(&origin) {
            Some(v) => self.activity_of_voice(origin, v),
            None => Activity {
                muted: self.is_muted(origin),
                ..Activity::default()
            },
        }
    }

    fn activity_of_voice(&self, origin: Origin, v: &Voice) -> Activity {
        Activity {
            last_us: v.last_us,
            messages: v.messages,
            sounding: v.notes.len(),
            sustained: v.sustain.iter().filter(|s| **s != 0).count(),
            muted: self.is_muted(origin),
        }
    }
}
