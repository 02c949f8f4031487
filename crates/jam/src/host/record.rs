//! The "Record" switch: live MIDI written into the shared song.
//!
//! While recording, every note the relay hands to the host's local output
//! (what routed peers play: our app, browser pages), and every note of the
//! host's own MIDI input (the musician at the host plays along), is paired Note On to
//! Note Off per peer, channel and key, placed on the song's tick grid by
//! the wall clock since recording started (at the song's first tempo, so
//! tick 0 is the moment Record was switched on: an overdub from the top),
//! and flushed every [`FLUSH_EVERY`] as one host-authored `hunks` frame.
//! The hub applies it like any edit and relays it to every MidiEditor peer
//! (no ack: the host is its author), so their piano roll shows the jam
//! about a second after it was played (their own 1 s sync tick included).
//!
//! A note still held at a flush stays pending and goes out with the flush
//! after its release. Both maps are bounded ([`MAX_PENDING`],
//! [`MAX_DONE`]): a peer flooding Note Ons cannot grow the host's memory;
//! notes past the bound are dropped and counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ::midi::MidiMessage;
use serde_json::{json, Value};

use super::{Cmd, Engine, HostControl, HostEvent};
use crate::hub::HubNote;
use crate::protocol::PeerId;

/// How often recorded notes go into the song: short enough that a
/// MidiEditor peer (which shows remote edits at its own 1 s tick) sees the
/// jam within about a second, long enough to batch a chord in one frame.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Notes held at once (all peers); more Note Ons are dropped.
pub(super) const MAX_PENDING: usize = 1024;
/// Finished notes waiting for the next flush.
pub(super) const MAX_DONE: usize = 8192;
/// The player id the host's own input is recorded under: peer ids start
/// at 1, so 0 is never a peer's, and a peer leaving never ends a note the
/// host holds.
pub(super) const HOST: PeerId = PeerId(0);
/// The name of the track recorded notes go to (created on first use).
pub const TRACK_NAME: &str = "Live";
/// MidiEditor's pseudo channel of text events, and the track-name type.
const TEXT_CHANNEL: u8 = 16;
const TRACK_NAME_TYPE: u8 = 3;

/// A finished note on the tick grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note {
    pub channel: u8,
    pub key: u8,
    pub velocity: u8,
    pub tick: u32,
    pub duration: u32,
}

/// Pairs notes and maps time to ticks; see the module doc.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    ticks_per_quarter: u32,
    micros_per_quarter: u32,
    pending: HashMap<(PeerId, u8, u8), (u32, u8)>,
    done: Vec<Note>,
    last_flush: Instant,
    /// Notes dropped at the bounds.
    pub dropped: u64,
}

impl Recorder {
    /// Recording from `started` at this grid (`micros_per_quarter` 0 is
    /// taken as 120 bpm).
    pub fn new(started: Instant, ticks_per_quarter: u16, micros_per_quarter: u32) -> Recorder {
        Recorder {
            started,
            ticks_per_quarter: u32::from(ticks_per_quarter.max(1)),
            micros_per_quarter: if micros_per_quarter == 0 {
                500_000
            } else {
                micros_per_quarter
            },
            pending: HashMap::new(),
            done: Vec::new(),
            last_flush: started,
            dropped: 0,
        }
    }

    /// The tick of `at` (saturating; before the start is tick 0).
    pub fn tick_at(&self, at: Instant) -> u32 {
        let us = at.saturating_duration_since(self.started).as_micros();
        let t = us * u128::from(self.ticks_per_quarter) / u128::from(self.micros_per_quarter);
        u32::try_from(t).unwrap_or(u32::MAX)
    }

    /// One message `peer` played at `at`.
    pub fn message(&mut self, at: Instant, peer: PeerId, m: &MidiMessage) {
        let tick = self.tick_at(at);
        match *m {
            MidiMessage::NoteOn {
                channel,
                key,
                velocity,
            } if velocity > 0 => {
                // A repeated Note On ends the note it restrikes.
                self.end(peer, channel, key, tick);
                if self.pending.len() >= MAX_PENDING {
                    self.dropped += 1;
                    return;
                }
                self.pending.insert((peer, channel, key), (tick, velocity));
            }
            MidiMessage::NoteOn { channel, key, .. }
            | MidiMessage::NoteOff { channel, key, .. } => {
                self.end(peer, channel, key, tick);
            }
            // All Sound Off / All Notes Off end what the peer holds there.
            MidiMessage::ControlChange {
                channel,
                controller: 120 | 123,
                ..
            } => {
                let keys: Vec<(PeerId, u8, u8)> = self
                    .pending
                    .keys()
                    .filter(|(p, c, _)| *p == peer && *c == channel)
                    .copied()
                    .collect();
                for (p, c, k) in keys {
                    self.end(p, c, k, tick);
                }
            }
            _ => {}
        }
    }

    /// Ends every note `peer` holds (it left).
    pub fn peer_gone(&mut self, at: Instant, peer: PeerId) {
        let tick = self.tick_at(at);
        let keys: Vec<(PeerId, u8, u8)> = self
            .pending
            .keys()
            .filter(|(p, _, _)| *p == peer)
            .copied()
            .collect();
        for (p, c, k) in keys {
            self.end(p, c, k, tick);
        }
    }

    fn end(&mut self, peer: PeerId, channel: u8, key: u8, tick: u32) {
        let Some((start, velocity)) = self.pending.remove(&(peer, channel, key)) else {
            return;
        };
        if self.done.len() >= MAX_DONE {
            self.dropped += 1;
            return;
        }
        self.done.push(Note {
            channel,
            key,
            velocity,
            tick: start,
            duration: tick.saturating_sub(start).max(1),
        });
    }

    /// Whether a flush is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY
    }

    /// The finished notes since the last flush (held ones stay pending).
    pub fn take(&mut self, now: Instant) -> Vec<Note> {
        self.last_flush = now;
        std::mem::take(&mut self.done)
    }

    /// Notes held right now.
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

/// The `hunks` frame adding `notes` to `track` (named [`TRACK_NAME`] when
/// `name_it`), by the host, with the song's length extended to cover them.
pub fn hunks_frame(
    notes: &[Note],
    track: u16,
    name_it: bool,
    end_tick: u32,
    frame_id: u64,
    author: &str,
    machine_id: &str,
) -> Value {
    let mut added: Vec<Value> = Vec::with_capacity(notes.len() + 1);
    if name_it {
        added.push(
            json!({"type": "text", "textType": TRACK_NAME_TYPE, "text": TRACK_NAME,
                          "tick": 0, "channel": TEXT_CHANNEL, "track": track}),
        );
    }
    let mut max_end = end_tick;
    for n in notes {
        max_end = max_end.max(n.tick.saturating_add(n.duration));
        added.push(
            json!({"type": "note", "tick": n.tick, "channel": n.channel, "track": track,
                          "note": n.key, "velocity": n.velocity, "duration": n.duration}),
        );
    }
    json!({"type": "hunks", "author": author, "machineId": machine_id, "frameId": frame_id,
           "fileMaxTick": max_end,
           "hunks": [{"added": added, "removed": [], "modified": []}]})
}

/// The engine's recording state.
#[derive(Debug)]
pub(super) struct Recording {
    pub(super) recorder: Recorder,
    /// The song track notes go to, and whether its name is still to add.
    track: Option<(u16, bool)>,
    frames: u64,
}

impl HostControl {
    /// Switches Record on or off. On: from now on, notes that live-MIDI
    /// peers play go into the shared song (from tick 0 at its first tempo)
    /// on the track named [`TRACK_NAME`]. Off: what was played is written,
    /// notes still held are written as ending now. Without a shared song
    /// nothing is recorded.
    pub async fn set_record(&self, on: bool) {
        let _ = self.cmd.send(Cmd::Record(on)).await;
    }
}

impl Engine {
    pub(super) fn set_recording(&mut self, on: bool) {
        match (on, self.recording.is_some()) {
            (true, false) => {
                let Some(hub) = self.hub.as_ref() else {
                    self.emit(HostEvent::Error {
                        message: "Record needs a shared song".into(),
                    });
                    return;
                };
                let (tpq, tempo) = {
                    let h = hub.lock();
                    (h.song().ticks_per_quarter, h.first_tempo())
                };
                self.recording = Some(Recording {
                    recorder: Recorder::new(Instant::now(), tpq, tempo),
                    track: None,
                    frames: 0,
                });
            }
            (false, true) => {
                self.record_flush(true);
                self.recording = None;
            }
            _ => {}
        }
    }

    /// Writes the finished notes into the song (every [`FLUSH_EVERY`]);
    /// `last`: also the held ones, ending now.
    pub(super) fn record_flush(&mut self, last: bool) {
        let (Some(hub), Some(rec)) = (self.hub.clone(), self.recording.as_mut()) else {
            return;
        };
        let now = Instant::now();
        if last {
            let peers: Vec<PeerId> = rec.recorder.pending.keys().map(|k| k.0).collect();
            for p in peers {
                rec.recorder.peer_gone(now, p);
            }
        } else if !rec.recorder.due(now) {
            return;
        }
        let notes = rec.recorder.take(now);
        if notes.is_empty() {
            return;
        }
        let cfg = self.jam.config();
        let to: Vec<PeerId> = self
            .jam
            .peers()
            .filter(|p| p.is_welcomed())
            .map(|p| p.id)
            .collect();
        let (actions, hub_notes) = {
            let mut h = hub.lock();
            let (track, name_it) = *rec.track.get_or_insert_with(|| {
                let song = h.song();
                match (0..song.tracks).find(|t| song.track_name(*t) == Some(TRACK_NAME)) {
                    Some(t) => (t, false),
                    None => (song.tracks, true),
                }
            });
            rec.frames += 1;
            let frame = hunks_frame(
                &notes,
                track,
                name_it,
                h.song().end_tick,
                rec.frames,
                &cfg.host_display_name,
                &cfg.host_machine_id,
            );
            let r = h.host_edit(&frame, &to, &cfg.host_display_name);
            if name_it && h.song().track_name(track) == Some(TRACK_NAME) {
                rec.track = Some((track, false));
            }
            r
        };
        self.perform(actions);
        for n in hub_notes {
            match n {
                HubNote::Changed(v) => self.emit(HostEvent::Song(v)),
                HubNote::Problem(message) => self.emit(HostEvent::Error { message }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(key: u8) -> MidiMessage {
        MidiMessage::NoteOn {
            channel: 0,
            key,
            velocity: 90,
        }
    }
    fn off(key: u8) -> MidiMessage {
        MidiMessage::NoteOff {
            channel: 0,
            key,
            velocity: 0,
        }
    }

    #[test]
    fn wall_clock_maps_to_ticks_at_the_tempo() {
        let t0 = Instant::now();
        // 120 bpm, 480 ticks a quarter: one second is 960 ticks.
        let r = Recorder::new(t0, 480, 500_000);
        assert_eq!(r.tick_at(t0), 0);
        assert_eq!(r.tick_at(t0 + Duration::from_secs(1)), 960);
        assert_eq!(r.tick_at(t0 + Duration::from_millis(250)), 240);
        // 60 bpm: half as many.
        let r = Recorder::new(t0, 480, 1_000_000);
        assert_eq!(r.tick_at(t0 + Duration::from_secs(1)), 480);
        // Tempo 0 is read as 120 bpm, not a division by zero.
        let r = Recorder::new(t0, 480, 0);
        assert_eq!(r.tick_at(t0 + Duration::from_secs(1)), 960);
    }

    #[test]
    fn notes_pair_per_peer_and_held_ones_stay_pending() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Recorder::new(t0, 480, 500_000);
        let (a, b) = (PeerId(1), PeerId(2));
        r.message(ms(0), a, &on(60));
        r.message(ms(100), b, &on(60));
        // b's Note Off does not end a's note.
        r.message(ms(200), b, &off(60));
        // Velocity-0 Note On is a Note Off.
        r.message(
            ms(500),
            a,
            &MidiMessage::NoteOn {
                channel: 0,
                key: 60,
                velocity: 0,
            },
        );
        r.message(ms(600), a, &on(64));
        let got = r.take(ms(700));
        assert_eq!(got.len(), 2);
        assert!(got.contains(&Note {
            channel: 0,
            key: 60,
            velocity: 90,
            tick: 96,
            duration: 96
        }));
        assert!(got.contains(&Note {
            channel: 0,
            key: 60,
            velocity: 90,
            tick: 0,
            duration: 480
        }));
        assert_eq!(r.held(), 1);
        // An off with no on adds nothing; the held note ends when its peer goes.
        r.message(ms(800), b, &off(70));
        r.peer_gone(ms(1100), a);
        let got = r.take(ms(1200));
        assert_eq!(
            got,
            vec![Note {
                channel: 0,
                key: 64,
                velocity: 90,
                tick: 576,
                duration: 480
            }]
        );
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn a_restruck_key_ends_the_note_it_restrikes() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, 480, 500_000);
        let p = PeerId(1);
        r.message(t0, p, &on(60));
        r.message(t0 + Duration::from_millis(100), p, &on(60));
        r.message(t0 + Duration::from_millis(300), p, &off(60));
        let got = r.take(t0);
        let spans: Vec<(u32, u32)> = got.iter().map(|n| (n.tick, n.duration)).collect();
        assert_eq!(spans, vec![(0, 96), (96, 192)]);
    }

    #[test]
    fn all_notes_off_ends_held_notes_and_the_maps_are_bounded() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, 96, 500_000);
        let p = PeerId(3);
        for i in 0..(MAX_PENDING + 10) {
            let ch = (i / 128) as u8;
            r.message(
                t0,
                p,
                &MidiMessage::NoteOn {
                    channel: ch % 16,
                    key: (i % 128) as u8,
                    velocity: 1,
                },
            );
        }
        assert_eq!(r.held(), MAX_PENDING);
        assert_eq!(r.dropped, 10);
        for ch in 0..16 {
            r.message(
                t0 + Duration::from_millis(10),
                p,
                &MidiMessage::ControlChange {
                    channel: ch,
                    controller: 123,
                    value: 0,
                },
            );
        }
        assert_eq!(r.held(), 0);
        let got = r.take(t0);
        assert_eq!(got.len(), MAX_PENDING);
        assert!(got.iter().all(|n| n.duration >= 1));
    }

    #[test]
    fn the_frame_is_applied_by_the_song_rules() {
        let mut song = song::Song::new();
        let track = song.tracks;
        let notes = [Note {
            channel: 2,
            key: 67,
            velocity: 80,
            tick: 1000,
            duration: 200,
        }];
        let f = hunks_frame(&notes, track, true, song.end_tick, 1, "host", "m");
        let r = song.apply_hunks(&f).expect("applies");
        assert_eq!(r.added, 2);
        assert_eq!(song.track_name(track), Some(TRACK_NAME));
        assert!(song.end_tick >= 1200);
    }
}
