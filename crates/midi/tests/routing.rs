//! Routing and release on a simulated jam: one host router and joiner
//! routers, each with in-memory MIDI ports (a keyboard played as raw bytes,
//! a synth that records what it gets), frames carried between them in
//! memory, and simulated time. No sleeps, no sockets. Timers
//! (`Router::tick`: keep-alives and stalls) run on a 100 ms grid when a
//! test lets time pass with [`Jam::advance`]; a frozen peer's router does
//! not tick or play (a killed or hung process).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use midi::frame::{flags, Frame};
use midi::memory::{MemoryInput, MemoryMidi, MemoryOutput};
use midi::message::cc;
use midi::ports::{input_queue, InputPort, InputQueue, MidiSystem, OutputPort};
use midi::router::{RouterStats, KEEPALIVE_EVERY_US, STALL_US};
use midi::{Link, MidiMessage, Origin, Routed, Router, RouterConfig, SysEx};

/// The host's id for itself in this harness; joiners are 1, 2, ...
const HOST: u64 = 0;
/// The link id a joiner uses for its host.
const TO_HOST: Link = Link(1000);
/// How often the async edge runs the routers' timers.
const TICK: u64 = 100_000;

struct Peer {
    router: Router,
    keyboard: MemoryInput,
    keys: InputQueue,
    _keys_port: Box<dyn InputPort>,
    synth: MemoryOutput,
    synth_port: Box<dyn OutputPort>,
}

impl Peer {
    fn new(cfg: RouterConfig) -> Peer {
        let system = MemoryMidi::new();
        let keyboard = system.add_input("keyboard");
        let synth = system.add_output("synth");
        let (callback, keys) = input_queue(1024);
        let keys_port = system
            .open_input(&keyboard.info().id, callback)
            .expect("open keyboard");
        let synth_port = system.open_output(&synth.info().id).expect("open synth");
        Peer {
            router: Router::new(cfg),
            keyboard,
            keys,
            _keys_port: keys_port,
            synth,
            synth_port,
        }
    }
}

struct Jam {
    now: u64,
    peers: BTreeMap<u64, Peer>,
    wire: VecDeque<(u64, u64, Bytes)>,
    /// Every frame delivered, as (from, to, frame), for assertions.
    seen: Vec<(u64, u64, Frame)>,
    /// When each frame of `seen` was delivered.
    seen_at: Vec<u64>,
    /// Peers whose routers neither tick nor play.
    frozen: BTreeSet<u64>,
}

fn on(ch: u8, key: u8, vel: u8) -> MidiMessage {
    MidiMessage::NoteOn {
        channel: ch,
        key,
        velocity: vel,
    }
}

fn off(ch: u8, key: u8) -> MidiMessage {
    MidiMessage::note_off(ch, key)
}

impl Jam {
    fn new() -> Jam {
        let mut peers = BTreeMap::new();
        let mut host = Peer::new(RouterConfig::host());
        // As every edge does: the timers start with the router (nothing to
        // send yet), so it promises keep-alives from its first frame.
        host.router.tick(1_000_000, &mut Routed::default());
        peers.insert(HOST, host);
        Jam {
            now: 1_000_000,
            peers,
            wire: VecDeque::new(),
            seen: Vec::new(),
            seen_at: Vec::new(),
            frozen: BTreeSet::new(),
        }
    }

    /// A joiner connects and opens its `midi` channel.
    fn join(&mut self, id: u64) {
        self.join_with(id, RouterConfig::joiner());
    }

    fn join_with(&mut self, id: u64, cfg: RouterConfig) {
        let mut p = Peer::new(cfg);
        p.router.tick(self.now, &mut Routed::default());
        assert!(p.router.link_opened(TO_HOST));
        self.peers.insert(id, p);
        assert!(self.host().router.link_opened(Link(id)));
    }

    fn host(&mut self) -> &mut Peer {
        self.peers.get_mut(&HOST).expect("host")
    }

    fn peer(&mut self, id: u64) -> &mut Peer {
        self.peers.get_mut(&id).expect("peer")
    }

    fn tick(&mut self, us: u64) {
        self.now += us;
    }

    /// Time passes with every router's timers running on a 100 ms grid, as
    /// the async edge runs them, except for frozen peers.
    fn advance(&mut self, us: u64) {
        let end = self.now + us;
        loop {
            let next = (self.now / TICK + 1) * TICK;
            if next > end {
                break;
            }
            self.now = next;
            let ids: Vec<u64> = self
                .peers
                .keys()
                .copied()
                .filter(|id| !self.frozen.contains(id))
                .collect();
            for id in ids {
                let mut out = Routed::default();
                self.peer(id).router.tick(next, &mut out);
                self.apply(id, out);
            }
        }
        self.now = end;
    }

    /// Frames delivered from `from` to `to` since the `since`-th one seen,
    /// with their delivery time.
    fn frames(&self, from: u64, to: u64, since: usize) -> Vec<(u64, &Frame)> {
        self.seen
            .iter()
            .zip(&self.seen_at)
            .skip(since)
            .filter(|((f, t, _), _)| *f == from && *t == to)
            .map(|((_, _, frame), at)| (*at, frame))
            .collect()
    }

    /// Carries out what `from` must do.
    fn apply(&mut self, from: u64, routed: Routed) {
        let p = self.peer(from);
        for d in routed.local {
            p.synth_port.send(&d.message).expect("synth takes it");
        }
        for (link, frame) in routed.sends {
            let to = if from == HOST { link.0 } else { HOST };
            self.wire.push_back((from, to, frame));
        }
        self.pump();
    }

    /// Delivers every frame in flight, in order.
    fn pump(&mut self) {
        while let Some((from, to, frame)) = self.wire.pop_front() {
            let Some(p) = self.peers.get_mut(&to) else {
                continue; // it left while the frame was in flight
            };
            let link = if to == HOST { Link(from) } else { TO_HOST };
            let mut out = Routed::default();
            let now = self.now;
            p.router
                .frame(now, link, &frame, &mut out)
                .expect("frames between routers decode");
            self.seen
                .push((from, to, Frame::decode(&frame).expect("decodes")));
            self.seen_at.push(now);
            self.apply(to, out);
        }
    }

    /// `id` plays raw bytes on its keyboard.
    fn play(&mut self, id: u64, bytes: &[u8]) {
        let now = self.now;
        let p = self.peer(id);
        assert!(p.keyboard.play(now, bytes));
        let msgs: Vec<MidiMessage> = p.keys.events.try_iter().map(|e| e.message).collect();
        let mut out = Routed::default();
        p.router.local_input(now, now, &msgs, &mut out);
        self.apply(id, out);
    }

    fn play_msgs(&mut self, id: u64, msgs: &[MidiMessage]) {
        let mut bytes = Vec::new();
        for m in msgs {
            m.write(&mut bytes);
        }
        self.play(id, &bytes);
    }

    /// `id` leaves without a word (killed, unplugged): the host sees its
    /// link close; its own router sees the host go.
    fn vanish(&mut self, id: u64) {
        self.peers.remove(&id);
        let now = self.now;
        let mut out = Routed::default();
        self.host().router.link_closed(now, Link(id), &mut out);
        self.apply(HOST, out);
    }

    /// `id` loses its host: its router releases what it was hearing.
    fn lose_host(&mut self, id: u64) {
        let now = self.now;
        let mut out = Routed::default();
        self.peer(id).router.link_closed(now, TO_HOST, &mut out);
        self.apply(id, out);
    }

    fn synth(&mut self, id: u64) -> Vec<MidiMessage> {
        self.peer(id).synth.take()
    }

    fn stats(&mut self, id: u64) -> RouterStats {
        self.peer(id).router.stats()
    }
}

/// A synth's view of what it received: notes sounding and pedals down.
#[derive(Default, Debug)]
struct SynthState {
    sounding: BTreeSet<(u8, u8)>,
    pedal: BTreeSet<u8>,
}

impl SynthState {
    fn apply(&mut self, msgs: &[MidiMessage]) {
        for m in msgs {
            match *m {
                MidiMessage::NoteOn {
                    channel,
                    key,
                    velocity,
                } if velocity > 0 => {
                    self.sounding.insert((channel, key));
                }
                MidiMessage::NoteOn { channel, key, .. }
                | MidiMessage::NoteOff { channel, key, .. } => {
                    self.sounding.remove(&(channel, key));
                }
                MidiMessage::ControlChange {
                    channel,
                    controller: cc::SUSTAIN,
                    value,
                } => {
                    if value >= 64 {
                        self.pedal.insert(channel);
                    } else {
                        self.pedal.remove(&channel);
                    }
                }
                MidiMessage::ControlChange {
                    channel,
                    controller: cc::ALL_NOTES_OFF,
                    ..
                } => self.sounding.retain(|(c, _)| *c != channel),
                _ => {}
            }
        }
    }

    fn is_silent(&self) -> bool {
        self.sounding.is_empty() && self.pedal.is_empty()
    }
}

/// What every synth in `jam` received since last time, applied to `synths`.
fn hear_all(jam: &mut Jam, synths: &mut BTreeMap<u64, SynthState>) {
    let ids: Vec<u64> = jam.peers.keys().copied().collect();
    for id in ids {
        let heard = jam.synth(id);
        synths.entry(id).or_default().apply(&heard);
    }
}

/// Joiner `id` loses the host and goes: its own synth must end silent.
fn joiner_leaves(jam: &mut Jam, synths: &mut BTreeMap<u64, SynthState>, id: u64, seed: u64) {
    jam.lose_host(id);
    let heard = jam.synth(id);
    let s = synths.entry(id).or_default();
    s.apply(&heard);
    assert!(s.is_silent(), "seed {seed}: {id} left with {s:?}");
    jam.vanish(id);
}

/// Everyone leaves: the joiners lose the host (their synths hear their
/// releases), the host sees them go, then the host quits.
fn everyone_leaves(jam: &mut Jam, synths: &mut BTreeMap<u64, SynthState>) {
    let ids: Vec<u64> = jam.peers.keys().copied().filter(|i| *i != HOST).collect();
    for id in ids {
        jam.lose_host(id);
        let heard = jam.synth(id);
        synths.entry(id).or_default().apply(&heard);
        jam.vanish(id);
    }
    let mut out = Routed::default();
    let now = jam.now;
    jam.host().router.release_all(now, &mut out);
    jam.apply(HOST, out);
    let heard = jam.synth(HOST);
    synths.entry(HOST).or_default().apply(&heard);
}

#[test]
fn everyone_hears_everyone_through_the_host() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.play(1, &[0x90, 60, 100]);
    assert_eq!(jam.synth(HOST), vec![on(0, 60, 100)]);
    assert_eq!(jam.synth(2), vec![on(0, 60, 100)]);
    assert_eq!(jam.synth(1), vec![], "nobody hears themselves back");
    jam.play(2, &[0x91, 62, 90]);
    assert_eq!(jam.synth(HOST), vec![on(1, 62, 90)]);
    assert_eq!(jam.synth(1), vec![on(1, 62, 90)]);
    jam.play(HOST, &[0x92, 64, 80]);
    assert_eq!(jam.synth(1), vec![on(2, 64, 80)]);
    assert_eq!(jam.synth(2), vec![on(2, 64, 80)]);
    assert_eq!(jam.synth(HOST), vec![], "no local thru by default");

    // Relayed frames name the player; the host's own frames say "sender".
    let relayed: Vec<&Frame> = jam
        .seen
        .iter()
        .filter(|(from, to, _)| *from == HOST && *to == 2)
        .map(|(_, _, f)| f)
        .collect();
    assert_eq!(relayed[0].header.origin, 1);
    assert_eq!(relayed[1].header.origin, 0);
}

#[test]
fn a_note_held_by_a_leaver_is_released_on_every_output_that_played_it() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.tick(5_000);
    // Peer 1 plays a chord and vanishes mid-chord.
    jam.play(1, &[0x90, 60, 100, 64, 100, 67, 100]);
    jam.play(1, &[0x80, 64, 0]); // one key lifted before
    let host_heard = jam.synth(HOST);
    assert_eq!(host_heard.len(), 4);
    jam.synth(2);
    jam.tick(1_000_000);
    jam.vanish(1);
    assert_eq!(jam.synth(HOST), vec![off(0, 60), off(0, 67)]);
    assert_eq!(jam.synth(2), vec![off(0, 60), off(0, 67)]);
    // The release frames say who and why.
    let (_, _, f) = jam.seen.last().expect("a release frame");
    assert_eq!(f.header.origin, 1);
    assert_eq!(f.header.flags & flags::RELEASE, flags::RELEASE);
    assert_eq!(f.header.time_us, jam.now);
    assert_eq!(
        jam.peer(2)
            .router
            .activity_of(Origin::Remote {
                via: TO_HOST,
                player: 1
            })
            .sounding,
        0
    );
    assert!(jam.stats(HOST).releases >= 2);
}

#[test]
fn sustain_held_then_leave_sends_note_offs_and_sustain_off() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    // Pedal down on channel 3, a note played and lifted (held by the
    // pedal), another still down; pedal also down on channel 4.
    jam.play(
        1,
        &[
            0xB3, 64, 127, 0x93, 50, 90, 0x83, 50, 0, 0x93, 55, 90, 0xB4, 64, 100,
        ],
    );
    jam.synth(HOST);
    jam.synth(2);
    jam.vanish(1);
    let expect = vec![
        off(3, 55),
        MidiMessage::control(3, cc::SUSTAIN, 0),
        MidiMessage::control(4, cc::SUSTAIN, 0),
    ];
    assert_eq!(jam.synth(HOST), expect);
    assert_eq!(jam.synth(2), expect);

    // A pedal lifted before leaving is not lifted again.
    jam.join(3);
    jam.play(3, &[0xB0, 64, 127, 0xB0, 64, 0, 0x90, 40, 1]);
    jam.synth(HOST);
    jam.vanish(3);
    assert_eq!(jam.synth(HOST), vec![off(0, 40)]);
}

#[test]
fn muting_releases_locally_and_keeps_relaying_to_the_others() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.play(1, &[0xB0, 64, 127, 0x90, 60, 100]);
    jam.synth(HOST);
    jam.synth(2);
    let mut out = Routed::default();
    let now = jam.now;
    jam.host()
        .router
        .set_muted(now, Origin::peer(Link(1)), true, &mut out);
    assert!(out.sends.is_empty(), "a mute touches the local output only");
    jam.apply(HOST, out);
    assert_eq!(
        jam.synth(HOST),
        vec![off(0, 60), MidiMessage::control(0, cc::SUSTAIN, 0)]
    );
    assert_eq!(jam.synth(2), vec![]);
    // Muted: not played here, still relayed.
    jam.play(1, &[0x90, 62, 100]);
    assert_eq!(jam.synth(HOST), vec![]);
    assert_eq!(jam.synth(2), vec![on(0, 62, 100)]);
    assert!(jam.host().router.activity_of(Origin::peer(Link(1))).muted);
    // Unmuted: played again. Leaving releases only what each output holds.
    let mut out = Routed::default();
    jam.host()
        .router
        .set_muted(now, Origin::peer(Link(1)), false, &mut out);
    assert!(out.is_empty());
    jam.play(1, &[0x90, 64, 100]);
    assert_eq!(jam.synth(HOST), vec![on(0, 64, 100)]);
    jam.synth(2);
    jam.vanish(1);
    assert_eq!(jam.synth(HOST), vec![off(0, 64)]);
    assert_eq!(
        jam.synth(2),
        vec![
            off(0, 60),
            off(0, 62),
            off(0, 64),
            MidiMessage::control(0, cc::SUSTAIN, 0)
        ]
    );
}

#[test]
fn panic_releases_everything_everywhere_and_silences_every_local_channel() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.play(1, &[0x90, 60, 100]);
    jam.play(2, &[0x95, 70, 100, 0xB5, 64, 127]);
    jam.play(HOST, &[0x9F, 30, 100]);
    for id in [HOST, 1, 2] {
        jam.synth(id);
    }
    let mut out = Routed::default();
    let now = jam.now;
    jam.host().router.panic(now, &mut out);
    jam.apply(HOST, out);
    let host = jam.synth(HOST);
    // Targeted releases first, then sustain-off and All Notes Off on all 16.
    assert_eq!(
        &host[..3],
        &[
            off(0, 60),
            off(5, 70),
            MidiMessage::control(5, cc::SUSTAIN, 0)
        ]
    );
    assert_eq!(host.len(), 3 + 32);
    for ch in 0..16 {
        assert!(host.contains(&MidiMessage::control(ch, cc::ALL_NOTES_OFF, 0)));
        assert!(host.contains(&MidiMessage::control(ch, cc::SUSTAIN, 0)));
    }
    // Joiners get exactly the notes that went through the host to them.
    assert_eq!(
        jam.synth(1),
        // Origins in order: the host's own first, then peer 2's.
        vec![
            off(15, 30),
            off(5, 70),
            MidiMessage::control(5, cc::SUSTAIN, 0)
        ]
    );
    assert_eq!(jam.synth(2), vec![off(15, 30), off(0, 60)]);
    // Nothing is left to release.
    let mut out = Routed::default();
    jam.host().router.release_all(now, &mut out);
    assert!(out.is_empty());
}

#[test]
fn sysex_passes_intact_and_running_status_arrives_as_whole_messages() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    let payload: Vec<u8> = (0..65_000u32).map(|i| (i * 7 % 128) as u8).collect();
    let mut raw = vec![0xF0];
    raw.extend_from_slice(&payload);
    raw.push(0xF7);
    // The keyboard sends it in pieces, with a clock byte in the middle.
    let (a, b) = raw.split_at(30_000);
    let mut pieces = a.to_vec();
    pieces.push(0xF8);
    pieces.extend_from_slice(b);
    jam.play(1, &pieces);
    let want = vec![
        MidiMessage::Clock,
        MidiMessage::SysEx(SysEx::from_payload(&payload).unwrap()),
    ];
    assert_eq!(jam.synth(HOST), want);
    assert_eq!(jam.synth(2), want);

    // Running status on the keyboard: whole messages on the wire and out.
    jam.play(2, &[0x94, 60, 100, 62, 100, 60, 0, 62, 0]);
    let want = vec![on(4, 60, 100), on(4, 62, 100), on(4, 60, 0), on(4, 62, 0)];
    assert_eq!(jam.synth(HOST), want);
    assert_eq!(jam.synth(1), want);
    // Velocity-0 Note Ons released them: nothing to release on leave.
    jam.vanish(2);
    assert_eq!(jam.synth(HOST), vec![]);
    assert_eq!(jam.synth(1), vec![]);
}

#[test]
fn a_late_joiner_gets_no_release_for_notes_it_never_heard() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.play(1, &[0x90, 60, 100]);
    jam.join(2);
    jam.play(1, &[0x90, 62, 100]);
    jam.synth(HOST);
    assert_eq!(jam.synth(2), vec![on(0, 62, 100)]);
    jam.vanish(1);
    assert_eq!(jam.synth(HOST), vec![off(0, 60), off(0, 62)]);
    assert_eq!(jam.synth(2), vec![off(0, 62)]);
}

#[test]
fn a_joiner_that_loses_its_host_releases_what_it_was_hearing() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.play(HOST, &[0x90, 60, 100]);
    jam.play(2, &[0x91, 61, 100, 0xB1, 64, 127]);
    jam.synth(1);
    jam.lose_host(1);
    assert_eq!(
        jam.synth(1),
        vec![
            off(0, 60),
            off(1, 61),
            MidiMessage::control(1, cc::SUSTAIN, 0)
        ]
    );
}

#[test]
fn the_host_never_trusts_the_origin_a_joiner_claims() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    // Peer 1 forges a frame claiming to be peer 2.
    let forged = midi::frame::encode(
        &midi::FrameHeader {
            flags: 0,
            origin: 2,
            time_us: 5,
        },
        &[on(0, 60, 100)],
    )
    .unwrap();
    jam.wire.push_back((1, HOST, Bytes::from(forged)));
    jam.pump();
    let (_, to, f) = jam.seen.last().unwrap();
    assert_eq!(*to, 2);
    assert_eq!(f.header.origin, 1);
    // And peer 2 leaving does not release peer 1's note.
    jam.synth(HOST);
    jam.vanish(2);
    assert_eq!(jam.synth(HOST), vec![]);
    jam.vanish(1);
    assert_eq!(jam.synth(HOST), vec![off(0, 60)]);
}

#[test]
fn quitting_releases_the_hosts_own_notes_on_every_joiner() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.play(HOST, &[0x90, 48, 100, 0xB0, 64, 127]);
    jam.synth(1);
    jam.synth(2);
    let mut out = Routed::default();
    let now = jam.now;
    jam.host().router.release_all(now, &mut out);
    jam.apply(HOST, out);
    let want = vec![off(0, 48), MidiMessage::control(0, cc::SUSTAIN, 0)];
    assert_eq!(jam.synth(1), want);
    assert_eq!(jam.synth(2), want);
}

#[test]
fn activity_lights_follow_simulated_time() {
    let mut jam = Jam::new();
    jam.join(1);
    let t0 = jam.now;
    jam.play(1, &[0x90, 60, 100, 0x80, 60, 0]);
    jam.tick(250_000);
    jam.play(1, &[0xF8]);
    let a = jam.host().router.activity_of(Origin::peer(Link(1)));
    assert_eq!(a.messages, 3);
    assert_eq!(a.last_us, Some(t0 + 250_000));
    assert_eq!(a.sounding, 0);
    let all = jam.host().router.activity();
    assert_eq!(all.len(), 1);
    // Never heard: all zero.
    let none = jam.host().router.activity_of(Origin::peer(Link(9)));
    assert_eq!(none.last_us, None);
}

#[test]
fn garbage_frames_are_refused_whole_and_counted() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    let mut out = Routed::default();
    let now = jam.now;
    // A valid note then a running-status data byte: all or nothing.
    let mut bad = midi::frame::encode(&midi::FrameHeader::default(), &[on(0, 60, 100)]).unwrap();
    bad.push(61);
    assert!(jam
        .host()
        .router
        .frame(now, Link(1), &bad, &mut out)
        .is_err());
    assert!(out.is_empty());
    assert_eq!(jam.stats(HOST).frames_bad, 1);
    // From a link that is not routed: ignored.
    let good = midi::frame::encode(&midi::FrameHeader::default(), &[on(0, 60, 100)]).unwrap();
    assert_eq!(
        jam.host().router.frame(now, Link(77), &good, &mut out),
        Ok(0)
    );
    assert!(out.is_empty());
    assert_eq!(jam.stats(HOST).frames_unrouted, 1);
}

#[test]
fn a_joiner_tracks_a_bounded_number_of_players() {
    let mut r = Router::new(RouterConfig {
        max_origins: 4,
        ..RouterConfig::joiner()
    });
    r.link_opened(TO_HOST);
    let mut out = Routed::default();
    let frame = |origin: u64, m: MidiMessage| {
        midi::frame::encode(
            &midi::FrameHeader {
                flags: 0,
                origin,
                time_us: 0,
            },
            &[m],
        )
        .unwrap()
    };
    // Four players hold notes: a fifth cannot be tracked and is dropped.
    for p in 1..=4 {
        assert_eq!(
            r.frame(p, TO_HOST, &frame(p, on(0, 60, 1)), &mut out),
            Ok(1)
        );
    }
    assert_eq!(
        r.frame(9, TO_HOST, &frame(5, on(0, 60, 1)), &mut out),
        Ok(0)
    );
    assert_eq!(r.stats().frames_no_room, 1);
    // One goes idle: the newcomer takes its place.
    assert_eq!(r.frame(10, TO_HOST, &frame(2, off(0, 60)), &mut out), Ok(1));
    assert_eq!(
        r.frame(11, TO_HOST, &frame(5, on(0, 60, 1)), &mut out),
        Ok(1)
    );
    assert_eq!(r.activity().len(), 4);
}

/// A tiny reproducible generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Random jams: players come and go, play notes and pedals, mute each
/// other, the host panics now and then. Whatever happens, once everybody
/// has left (and the host quit) every synth that heard anything is silent.
#[test]
fn no_synth_is_left_sounding_whatever_happens() {
    for seed in 1..=40u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut jam = Jam::new();
        let mut synths: BTreeMap<u64, SynthState> = BTreeMap::new();
        let mut next_id = 1;
        for _ in 0..400 {
            jam.tick(rng.below(20_000));
            let ids: Vec<u64> = jam.peers.keys().copied().collect();
            match rng.below(20) {
                0 | 1 if ids.len() < 6 => {
                    jam.join(next_id);
                    next_id += 1;
                }
                2 if ids.len() > 1 => {
                    let id = ids[1 + rng.below(ids.len() as u64 - 1) as usize];
                    let heard = jam.synth(id);
                    synths.entry(id).or_default().apply(&heard);
                    joiner_leaves(&mut jam, &mut synths, id, seed);
                }
                3 if ids.len() > 1 => {
                    let id = ids[1 + rng.below(ids.len() as u64 - 1) as usize];
                    let mut out = Routed::default();
                    let now = jam.now;
                    let muted = rng.below(2) == 0;
                    jam.host()
                        .router
                        .set_muted(now, Origin::peer(Link(id)), muted, &mut out);
                    jam.apply(HOST, out);
                }
                4 if rng.below(10) == 0 => {
                    let mut out = Routed::default();
                    let now = jam.now;
                    jam.host().router.panic(now, &mut out);
                    jam.apply(HOST, out);
                }
                _ => {
                    let id = ids[rng.below(ids.len() as u64) as usize];
                    let ch = rng.below(3) as u8;
                    let key = 60 + rng.below(6) as u8;
                    let m = match rng.below(6) {
                        0 | 1 => on(ch, key, 1 + rng.below(127) as u8),
                        2 => on(ch, key, 0),
                        3 => off(ch, key),
                        4 => MidiMessage::control(
                            ch,
                            cc::SUSTAIN,
                            if rng.below(2) == 0 { 0 } else { 127 },
                        ),
                        _ => MidiMessage::PitchBend {
                            channel: ch,
                            value: rng.below(16384) as u16,
                        },
                    };
                    jam.play_msgs(id, &[m]);
                }
            }
            hear_all(&mut jam, &mut synths);
        }
        everyone_leaves(&mut jam, &mut synths);
        let s = &synths[&HOST];
        // The host's own notes went to joiners only; its synth heard the
        // others, all of whom left.
        assert!(s.is_silent(), "seed {seed}: host synth left with {s:?}");
    }
}

/// Anything on the wire, links opening and closing at random, mutes and
/// panics: the router never panics, and stays within its bounds.
#[test]
fn the_router_survives_arbitrary_frames_and_events() {
    let mut rng = XorShift(0xBADC_0FFE_E0DD_F00D);
    for role in [RouterConfig::host(), RouterConfig::joiner()] {
        let mut r = Router::new(RouterConfig {
            max_origins: 16,
            ..role
        });
        let mut out = Routed::default();
        for step in 0..50_000u64 {
            out.clear();
            let link = Link(rng.below(70));
            match rng.below(10) {
                0 => {
                    r.link_opened(link);
                }
                1 => r.link_closed(step, link, &mut out),
                2 => r.set_muted(
                    step,
                    Origin::Remote {
                        via: link,
                        player: rng.below(40),
                    },
                    rng.below(2) == 0,
                    &mut out,
                ),
                3 if rng.below(50) == 0 => r.panic(step, &mut out),
                4 => {
                    let n = rng.below(40) as usize;
                    let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    let _ = r.frame(step, link, &junk, &mut out);
                }
                _ => {
                    let n = 1 + rng.below(4) as usize;
                    let msgs: Vec<MidiMessage> = (0..n)
                        .map(|_| {
                            let ch = rng.below(16) as u8;
                            let key = rng.below(128) as u8;
                            match rng.below(4) {
                                0 => on(ch, key, rng.below(128) as u8),
                                1 => off(ch, key),
                                2 => MidiMessage::control(
                                    ch,
                                    rng.below(128) as u8,
                                    rng.below(128) as u8,
                                ),
                                _ => MidiMessage::Reset,
                            }
                        })
                        .collect();
                    if rng.below(3) == 0 {
                        r.local_input(step, step, &msgs, &mut out);
                    } else {
                        let f = midi::frame::encode(
                            &midi::FrameHeader {
                                flags: rng.next() as u8,
                                origin: rng.below(40),
                                time_us: step,
                            },
                            &msgs,
                        )
                        .unwrap();
                        let _ = r.frame(step, link, &f, &mut out);
                    }
                }
            }
            assert!(r.links().count() <= midi::router::MAX_LINKS);
            assert!(r.activity().len() <= 16 + 1);
            for (l, f) in &out.sends {
                assert!(r.is_routed(*l), "a frame for a link that is not routed");
                assert!(midi::Frame::decode(f).is_ok());
            }
        }
    }
}

// ------------------------------------------------------------ keep-alives

fn is_keepalive(f: &Frame) -> bool {
    f.messages.is_empty()
}

/// The host holds a note on its joiners: each gets an empty keep-alive
/// frame whenever it would otherwise go 250 ms without one, and only then;
/// a joiner that holds nothing of the host's gets none; once nothing is
/// held, the links go quiet. A joiner's own keep-alives reach the host and
/// go no further.
#[test]
fn keepalives_go_out_only_while_our_notes_sound_and_only_on_quiet_links() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    // Nothing sounds: the timers send nothing.
    jam.advance(2_000_000);
    assert!(jam.seen.is_empty(), "{:?}", jam.seen);

    let start = jam.seen.len();
    let t0 = jam.now;
    jam.play(HOST, &[0x90, 60, 100]);
    // Peer 3 arrives after the note: it holds nothing of the host's.
    jam.join(3);
    jam.advance(1_000_000);
    let to1 = jam.frames(HOST, 1, start);
    let times: Vec<u64> = to1.iter().map(|(at, _)| at - t0).collect();
    // The note, then a keep-alive every other 100 ms tick: waiting for the
    // next tick would have left the link quiet for 300 ms.
    assert_eq!(
        times,
        vec![0, 200_000, 400_000, 600_000, 800_000, 1_000_000],
        "{to1:?}"
    );
    for (at, f) in &to1[1..] {
        assert!(is_keepalive(f));
        assert_eq!(
            f.header.flags,
            flags::KEEPALIVE,
            "no RELEASE on a keep-alive"
        );
        assert_eq!(f.header.origin, 0);
        assert_eq!(f.header.time_us, *at);
    }
    assert_eq!(jam.frames(HOST, 2, start).len(), 6);
    assert!(jam.frames(HOST, 3, start).is_empty(), "3 holds nothing");
    assert_eq!(jam.stats(HOST).keepalives_out, 10);

    // Peer 1 plays (off the tick grid) and holds a note: it sends its own
    // keep-alives to the host, which neither plays nor relays them, and
    // the relay to 2 and 3 counts as the host's frame to them.
    let start = jam.seen.len();
    jam.tick(30_000);
    jam.play(1, &[0x91, 62, 100]);
    jam.advance(2_000_000);
    assert_eq!(
        jam.synth(HOST),
        vec![on(1, 62, 100)],
        "keep-alives are not played"
    );
    assert_eq!(jam.synth(2), vec![on(0, 60, 100), on(1, 62, 100)]);
    assert_eq!(jam.synth(3), vec![on(1, 62, 100)]);
    assert!(jam.stats(HOST).keepalives_in >= 8);
    for to in [2, 3] {
        let relayed: Vec<&Frame> = jam
            .frames(HOST, to, start)
            .into_iter()
            .map(|(_, f)| f)
            .filter(|f| f.header.origin == 1)
            .collect();
        assert_eq!(relayed.len(), 1, "only the note is relayed: {relayed:?}");
        assert_eq!(relayed[0].messages, vec![on(1, 62, 100)]);
    }
    // On every link both ways: never 250 ms without a frame while notes
    // are held there, and never a keep-alive sooner than a tick before
    // that was due.
    for (from, to) in [(HOST, 1), (HOST, 2), (HOST, 3), (1, HOST)] {
        let fs = jam.frames(from, to, start);
        assert!(fs.len() >= 8, "{from} -> {to}: {fs:?}");
        for w in fs.windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!(
                gap <= KEEPALIVE_EVERY_US,
                "{from} -> {to}: a gap of {gap} µs"
            );
            if is_keepalive(w[1].1) {
                assert!(gap >= KEEPALIVE_EVERY_US - TICK, "{from} -> {to}: {gap} µs");
            }
        }
    }
    // Everything the routers sent carried the promise.
    assert!(jam
        .seen
        .iter()
        .all(|(_, _, f)| f.header.flags & flags::KEEPALIVE != 0));

    // Everyone lets go: the links go quiet.
    jam.play(HOST, &[0x80, 60, 0]);
    jam.play(1, &[0x81, 62, 0]);
    let start = jam.seen.len();
    jam.advance(3_000_000);
    assert!(jam.seen[start..].is_empty(), "{:?}", &jam.seen[start..]);
    for id in [HOST, 1, 2, 3] {
        assert_eq!(jam.stats(id).stalls, 0);
    }
}

/// Peer 1 promised keep-alives, holds a note and the pedal, then freezes
/// (killed: no goodbye, nothing more on the wire). 1 s after its last
/// frame its notes are released, once, on every output that heard them
/// and nowhere else; other players' notes stay; its link stays routed.
#[test]
fn a_silent_player_who_promised_keepalives_is_released_once_where_heard() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.play(1, &[0xB0, 64, 127, 0x90, 60, 100]);
    jam.join(3);
    jam.play(1, &[0x90, 64, 100]);
    jam.play(2, &[0x91, 50, 100]);
    jam.advance(600_000);
    for id in [HOST, 2, 3] {
        jam.synth(id);
    }
    jam.synth(1);
    assert!(jam.host().router.promised_keepalive(Link(1)));

    jam.frozen.insert(1);
    let start = jam.seen.len();
    let last_from_1 = *jam
        .seen
        .iter()
        .zip(&jam.seen_at)
        .filter(|((from, _, _), _)| *from == 1)
        .map(|(_, at)| at)
        .next_back()
        .expect("1 sent frames");
    // Nothing happens before the stall time.
    while jam.now + TICK < last_from_1 + STALL_US {
        jam.advance(TICK);
        assert_eq!(jam.synth(HOST), vec![], "released early at {}", jam.now);
    }
    jam.advance(TICK);
    let released_at = jam.now;
    let all = vec![
        off(0, 60),
        off(0, 64),
        MidiMessage::control(0, cc::SUSTAIN, 0),
    ];
    assert_eq!(jam.synth(HOST), all);
    assert!(released_at - last_from_1 >= STALL_US);
    assert!(released_at - last_from_1 < STALL_US + TICK);
    assert_eq!(jam.synth(2), all);
    // 3 joined after the pedal and C: only E.
    assert_eq!(jam.synth(3), vec![off(0, 64)]);
    for to in [2, 3] {
        let releases: Vec<(u64, &Frame)> = jam
            .frames(HOST, to, start)
            .into_iter()
            .filter(|(_, f)| !is_keepalive(f))
            .collect();
        assert_eq!(releases.len(), 1, "{releases:?}");
        let h = releases[0].1.header;
        assert_eq!(h.origin, 1);
        assert_eq!(h.flags, flags::RELEASE | flags::KEEPALIVE);
        assert_eq!(h.time_us, released_at);
    }
    assert_eq!(jam.stats(HOST).stalls, 1);
    assert!(jam.host().router.is_routed(Link(1)));
    assert_eq!(jam.host().router.stalled_since(Link(1)), Some(released_at));
    // Peer 2's note is untouched; peer 1 is silent now.
    assert_eq!(
        jam.host()
            .router
            .activity_of(Origin::peer(Link(2)))
            .sounding,
        1
    );
    let a = jam.host().router.activity_of(Origin::peer(Link(1)));
    assert_eq!((a.sounding, a.sustained, a.messages), (0, 0, 3));

    // Released once: more silence releases nothing more.
    jam.advance(3_000_000);
    for id in [HOST, 2, 3] {
        assert_eq!(jam.synth(id), vec![], "{id}");
    }
    assert_eq!(jam.stats(HOST).stalls, 1);
    // And when its link finally closes, there is nothing left to release.
    jam.vanish(1);
    for id in [HOST, 2, 3] {
        assert_eq!(jam.synth(id), vec![], "{id}");
    }
}

/// A joiner that never sets the flag (an older one, or MidiEditor's
/// future self) may hold a note in silence as long as it likes.
#[test]
fn a_player_who_never_promised_keepalives_is_never_released_for_silence() {
    let mut jam = Jam::new();
    jam.join_with(
        1,
        RouterConfig {
            keepalive: None,
            ..RouterConfig::joiner()
        },
    );
    jam.join(2);
    jam.play(1, &[0xB0, 64, 127, 0x90, 60, 100]);
    let (_, _, f) = jam
        .seen
        .iter()
        .find(|(from, _, _)| *from == 1)
        .expect("1's frame");
    assert_eq!(f.header.flags, 0, "no promise, no flag");
    // A hand-made frame without the flag, as any old sender writes it.
    let raw = midi::frame::encode(&midi::FrameHeader::default(), &[on(2, 40, 90)]).unwrap();
    jam.wire.push_back((1, HOST, Bytes::from(raw)));
    jam.pump();
    jam.synth(HOST);
    jam.synth(2);
    jam.advance(10_000_000);
    assert_eq!(jam.synth(HOST), vec![]);
    assert_eq!(jam.synth(2), vec![]);
    assert_eq!(jam.stats(HOST).stalls, 0);
    assert!(!jam.host().router.promised_keepalive(Link(1)));
    // Its keep-alive-less router sent nothing while it held the note.
    assert_eq!(jam.stats(1).keepalives_out, 0);
    assert_eq!(
        jam.frames(1, HOST, 0).len(),
        2,
        "the note and the raw frame"
    );
    // The host, which does promise, kept its promise to 2.
    assert!(jam.stats(HOST).keepalives_out >= 40);
    // Its link closing still releases it.
    jam.vanish(1);
    let want = vec![
        off(0, 60),
        off(2, 40),
        MidiMessage::control(0, cc::SUSTAIN, 0),
    ];
    assert_eq!(jam.synth(HOST), want);
    assert_eq!(jam.synth(2), want);
}

/// A player who stalled and comes back (a frozen process resumed) is
/// served as before, and a second stall releases only what it played
/// since.
#[test]
fn a_stalled_player_who_comes_back_is_served_again() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.play(1, &[0x90, 60, 100]);
    jam.frozen.insert(1);
    jam.advance(1_500_000);
    assert_eq!(jam.synth(HOST), vec![on(0, 60, 100), off(0, 60)]);
    assert_eq!(jam.synth(2), vec![on(0, 60, 100), off(0, 60)]);
    assert!(jam.host().router.stalled_since(Link(1)).is_some());

    // It resumes: its router still holds 60, so its keep-alives flow and
    // end the stall; it is never released while it keeps its promise.
    jam.frozen.remove(&1);
    jam.advance(300_000);
    assert_eq!(jam.host().router.stalled_since(Link(1)), None);
    jam.play(1, &[0x90, 67, 100]);
    assert_eq!(jam.synth(HOST), vec![on(0, 67, 100)]);
    assert_eq!(jam.synth(2), vec![on(0, 67, 100)]);
    jam.advance(5_000_000);
    assert_eq!(jam.synth(HOST), vec![]);
    assert_eq!(jam.stats(HOST).stalls, 1);

    // Frozen again: only 67 is left to release.
    jam.frozen.insert(1);
    jam.advance(1_500_000);
    assert_eq!(jam.synth(HOST), vec![off(0, 67)]);
    assert_eq!(jam.synth(2), vec![off(0, 67)]);
    assert_eq!(jam.stats(HOST).stalls, 2);
}

/// The same on the other side of the star: a joiner whose host stalls
/// releases everything it heard through it, every player's.
#[test]
fn a_joiner_releases_what_it_heard_when_its_host_stalls() {
    let mut jam = Jam::new();
    jam.join(1);
    jam.join(2);
    jam.play(HOST, &[0x90, 48, 100]);
    jam.play(2, &[0x91, 50, 100, 0xB1, 64, 127]);
    jam.play(1, &[0x92, 52, 100]);
    jam.synth(1);
    jam.frozen.insert(HOST);
    jam.advance(1_500_000);
    assert_eq!(
        jam.synth(1),
        vec![
            off(0, 48),
            off(1, 50),
            MidiMessage::control(1, cc::SUSTAIN, 0)
        ]
    );
    assert_eq!(jam.stats(1).stalls, 1);
    assert!(jam.peer(1).router.stalled_since(TO_HOST).is_some());
}

/// Random jams with the timers running: players come and go, play, hold
/// notes and pedals through long silences; in half of them players also
/// freeze and thaw. A player who never froze is never taken for stalled
/// (on the host, and no joiner takes the host for stalled); one frozen
/// for 1.1 s holds nothing anywhere; and once everybody has left every
/// synth is silent.
#[test]
fn random_jams_with_timers_release_only_silent_players_and_end_silent() {
    let mut stalls = 0;
    for seed in 1..=30u64 {
        let mut rng = XorShift(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
        let freezing = seed % 2 == 0;
        let mut jam = Jam::new();
        let mut synths: BTreeMap<u64, SynthState> = BTreeMap::new();
        let mut ever_frozen: BTreeSet<u64> = BTreeSet::new();
        let mut frozen_at: BTreeMap<u64, u64> = BTreeMap::new();
        let mut next_id = 1;
        for _ in 0..300 {
            let ids: Vec<u64> = jam.peers.keys().copied().collect();
            let joiners: Vec<u64> = ids.iter().copied().filter(|i| *i != HOST).collect();
            match rng.below(16) {
                0 | 1 if ids.len() < 5 => {
                    jam.join(next_id);
                    next_id += 1;
                }
                2 if !joiners.is_empty() && rng.below(3) == 0 => {
                    let id = joiners[rng.below(joiners.len() as u64) as usize];
                    joiner_leaves(&mut jam, &mut synths, id, seed);
                    jam.frozen.remove(&id);
                    frozen_at.remove(&id);
                }
                3 | 4 => jam.advance(rng.below(1_500_000)),
                5 if freezing && !joiners.is_empty() => {
                    let id = joiners[rng.below(joiners.len() as u64) as usize];
                    if jam.frozen.remove(&id) {
                        frozen_at.remove(&id);
                    } else {
                        jam.frozen.insert(id);
                        ever_frozen.insert(id);
                        frozen_at.insert(id, jam.now);
                    }
                }
                _ => {
                    let live: Vec<u64> = ids
                        .iter()
                        .copied()
                        .filter(|i| !jam.frozen.contains(i))
                        .collect();
                    let id = live[rng.below(live.len() as u64) as usize];
                    let ch = rng.below(3) as u8;
                    let key = 60 + rng.below(6) as u8;
                    let m = match rng.below(5) {
                        0 | 1 => on(ch, key, 1 + rng.below(127) as u8),
                        2 => off(ch, key),
                        _ => MidiMessage::control(
                            ch,
                            cc::SUSTAIN,
                            if rng.below(2) == 0 { 0 } else { 127 },
                        ),
                    };
                    jam.advance(rng.below(20_000));
                    jam.play_msgs(id, &[m]);
                }
            }
            let ids: Vec<u64> = jam.peers.keys().copied().collect();
            for id in &ids {
                let heard = jam.synth(*id);
                synths.entry(*id).or_default().apply(&heard);
                if *id != HOST {
                    assert_eq!(
                        jam.peer(*id).router.stalled_since(TO_HOST),
                        None,
                        "seed {seed}: {id} took the host for stalled"
                    );
                    if !ever_frozen.contains(id) {
                        assert_eq!(
                            jam.host().router.stalled_since(Link(*id)),
                            None,
                            "seed {seed}: {id} never froze"
                        );
                    }
                }
            }
            let now = jam.now;
            for (id, since) in frozen_at.clone() {
                if now < since + STALL_US + TICK {
                    continue;
                }
                let a = jam.host().router.activity_of(Origin::peer(Link(id)));
                assert_eq!(
                    (a.sounding, a.sustained),
                    (0, 0),
                    "seed {seed}: {id} frozen since {since}, now {now}"
                );
                for other in ids.iter().copied().filter(|o| *o != HOST && *o != id) {
                    let a = jam.peer(other).router.activity_of(Origin::Remote {
                        via: TO_HOST,
                        player: id,
                    });
                    assert_eq!((a.sounding, a.sustained), (0, 0), "seed {seed}");
                }
            }
            if !freezing {
                for id in &ids {
                    assert_eq!(jam.stats(*id).stalls, 0, "seed {seed}: {id}");
                }
            }
        }
        stalls += jam.stats(HOST).stalls;
        everyone_leaves(&mut jam, &mut synths);
        for (id, s) in &synths {
            assert!(s.is_silent(), "seed {seed}: {id}'s synth left with {s:?}");
        }
    }
    assert!(stalls > 10, "frozen players stalled only {stalls} times");
}

/// An edge written before keep-alives never calls `tick`: its router must
/// not promise what it would not keep, or the other side would cut its
/// held notes after 1 s of silence. The promise starts with the first
/// tick, and is then on every frame: relays and releases too.
#[test]
fn a_router_promises_keepalives_only_once_its_timers_run() {
    let mut r = Router::new(RouterConfig::joiner());
    assert!(r.config().keepalive.is_some(), "on by default");
    r.link_opened(TO_HOST);
    let mut out = Routed::default();
    r.local_input(1, 1, &[on(0, 60, 100)], &mut out);
    let f = Frame::decode(&out.sends[0].1).unwrap();
    assert_eq!(f.header.flags, 0, "no timers yet, no promise");
    out.clear();
    r.tick(2, &mut out);
    r.local_input(3, 3, &[on(0, 62, 100)], &mut out);
    let f = Frame::decode(&out.sends[0].1).unwrap();
    assert_eq!(f.header.flags, flags::KEEPALIVE);

    let mut host = Router::new(RouterConfig::host());
    host.tick(0, &mut out);
    out.clear();
    host.link_opened(Link(1));
    host.link_opened(Link(2));
    // A player's frame with a RELEASE and an unknown bit: the host keeps
    // RELEASE, puts its own promise, drops the rest.
    let frame = midi::frame::encode(
        &midi::FrameHeader {
            flags: flags::RELEASE | 0x80,
            origin: 0,
            time_us: 7,
        },
        &[on(0, 60, 100)],
    )
    .unwrap();
    host.frame(10, Link(1), &frame, &mut out).unwrap();
    let relayed = Frame::decode(&out.sends[0].1).unwrap();
    assert_eq!(relayed.header.flags, flags::RELEASE | flags::KEEPALIVE);
    assert!(
        !host.promised_keepalive(Link(1)),
        "no KEEPALIVE from 1, no promise"
    );
    out.clear();
    host.link_closed(20, Link(1), &mut out);
    let release = Frame::decode(&out.sends[0].1).unwrap();
    assert_eq!(release.header.flags, flags::RELEASE | flags::KEEPALIVE);
}
