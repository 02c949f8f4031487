//! The document and MidiEditor's rules for applying `hunks` to it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::{
    Body, Event, EventError, Identity, MAX_TICK, MAX_TRACKS, TEXT_CHANNEL, TRACK_NAME,
};

/// Events a song may hold; a hunk that would go beyond is refused whole.
pub const MAX_EVENTS: usize = 1_000_000;
/// Entries (removed + added + modified) one `hunks` frame may carry.
pub const MAX_FRAME_ENTRIES: usize = 200_000;
/// Ticks per quarter of a new empty song (MidiEditor's default).
pub const DEFAULT_TPQ: u16 = 192;

/// Events by (tick, channel).
type Buckets = BTreeMap<(u32, u8), Vec<Event>>;

/// A MIDI document: tracks of events at ticks, and the file length.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Song {
    pub ticks_per_quarter: u16,
    /// Number of tracks (a track may be empty).
    pub tracks: u16,
    /// The file length MidiEditor calls `endTick` and sends as
    /// `fileMaxTick`.
    pub end_tick: u32,
    /// Events in (tick, channel) buckets, each in insertion order, which is
    /// also the order in which stacked events are matched.
    #[serde(with = "bucket_list")]
    buckets: Buckets,
    len: usize,
}

/// The outcome of one `hunks` frame, as `hunksAck` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: usize,
    pub removed: usize,
    pub modified: usize,
    pub skipped: usize,
    /// The whole frame was refused (malformed or hostile); nothing changed.
    pub refused: bool,
    /// Whether `fileMaxTick` changed the length.
    pub length_changed: bool,
}

impl Applied {
    /// What MidiEditor's `hunksAck.applied` counts.
    pub fn applied(&self) -> usize {
        self.added + self.removed + self.modified
    }

    /// Whether the document changed.
    pub fn changed(&self) -> bool {
        self.applied() > 0 || self.length_changed
    }
}

/// Why a whole frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefuseReason {
    #[error("`hunks` is not an array of objects")]
    Shape,
    #[error("{0} entries is more than one frame may carry")]
    TooManyEntries(usize),
    #[error("entry {index}: {error}")]
    Event { index: usize, error: EventError },
    #[error("the song would hold more than {MAX_EVENTS} events")]
    TooManyEvents,
}

enum Op {
    Remove(Identity),
    Modify(Identity, Event),
    Add(Event),
}

impl Default for Song {
    fn default() -> Self {
        Song::new()
    }
}

impl Song {
    /// A new empty song like MidiEditor's: two tracks, 192 ticks per quarter.
    pub fn new() -> Song {
        Song {
            ticks_per_quarter: DEFAULT_TPQ,
            tracks: 2,
            end_tick: 0,
            buckets: BTreeMap::new(),
            len: 0,
        }
    }

    pub fn empty(ticks_per_quarter: u16, tracks: u16) -> Song {
        Song {
            ticks_per_quarter: ticks_per_quarter.max(1),
            tracks,
            ..Song::new()
        }
    }

    /// Gives the song what MidiEditor adds to every file it opens that
    /// lacks them: a tempo (120 bpm) and a time signature (4/4) at tick 0
    /// on track 0. With them the host's song holds exactly what each
    /// joiner's copy holds after opening it.
    pub fn add_midieditor_defaults(&mut self) {
        let at0 = |s: &Song, kind: crate::event::Kind| {
            s.buckets
                .range((0, 0)..(1, 0))
                .flat_map(|(_, b)| b)
                .any(|e| e.body.kind() == kind)
        };
        if !at0(self, crate::event::Kind::Tempo) {
            self.insert(Event {
                track: 0,
                channel: crate::event::TEMPO_CHANNEL,
                tick: 0,
                body: Body::Tempo {
                    micros_per_quarter: 500_000,
                },
            });
        }
        if !at0(self, crate::event::Kind::TimeSig) {
            self.insert(Event {
                track: 0,
                channel: crate::event::TIME_SIG_CHANNEL,
                tick: 0,
                body: Body::TimeSig {
                    num: 4,
                    denom_midi: 2,
                    midi_clocks: 24,
                    num32_in4: 8,
                },
            });
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every event, by tick then channel, stacked ones in insertion order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.buckets.values().flatten()
    }

    /// Inserts an event (no validation beyond the song's own bounds: for
    /// loaders). Grows the track count and the length to fit.
    pub fn insert(&mut self, e: Event) {
        self.tracks = self.tracks.max(e.track.saturating_add(1));
        self.end_tick = self.end_tick.max(e.end());
        self.buckets.entry((e.tick, e.channel)).or_default().push(e);
        self.len += 1;
    }

    /// Removes the first event `id` names; whether there was one.
    pub fn remove(&mut self, id: &Identity) -> bool {
        let key = (id.tick, id.channel);
        let Some(bucket) = self.buckets.get_mut(&key) else {
            return false;
        };
        let Some(i) = bucket.iter().position(|e| e.matches(id)) else {
            return false;
        };
        bucket.remove(i);
        if bucket.is_empty() {
            self.buckets.remove(&key);
        }
        self.len -= 1;
        true
    }

    pub fn find(&self, id: &Identity) -> Option<&Event> {
        self.buckets
            .get(&(id.tick, id.channel))
            .and_then(|b| b.iter().find(|e| e.matches(id)))
    }

    /// A track's name: its first track-name text event.
    pub fn track_name(&self, track: u16) -> Option<&str> {
        self.events().find_map(|e| match &e.body {
            Body::Text { text_type, text }
                if e.track == track && e.channel == TEXT_CHANNEL && *text_type == TRACK_NAME =>
            {
                Some(text.as_str())
            }
            _ => None,
        })
    }

    /// The length in seconds, following the tempo changes (120 bpm until
    /// the first).
    pub fn seconds(&self) -> f64 {
        let tpq = f64::from(self.ticks_per_quarter.max(1));
        let mut secs = 0.0;
        let mut at = 0u32;
        let mut mpq = 500_000f64;
        for e in self.events() {
            if e.tick > self.end_tick {
                break;
            }
            if let Body::Tempo { micros_per_quarter } = e.body {
                secs += f64::from(e.tick - at) / tpq * mpq / 1e6;
                at = e.tick;
                mpq = f64::from(micros_per_quarter);
            }
        }
        secs + f64::from(self.end_tick.saturating_sub(at)) / tpq * mpq / 1e6
    }

    /// Applies a `hunks` frame's body with MidiEditor's rules (`PrApply`
    /// in its source): per hunk, `removed` entries are found by identity
    /// and removed (a missing one is skipped), `modified` entries remove
    /// `before` if found and insert `after`, `added` entries are inserted;
    /// a track index past the end creates tracks up to it. Then a valid
    /// `fileMaxTick` sets the length, and a shorter length drops the
    /// events that start after it.
    ///
    /// Unlike MidiEditor, which skips bad entries one by one, a frame with
    /// any unusable entry (unknown type, a value out of range, a track past
    /// the 256 MidiEditor allows) is refused whole: a peer sending that is
    /// broken or hostile, and applying half of it would leave the shared
    /// song in a state nobody made. A refused frame changes nothing and
    /// counts every entry as skipped.
    pub fn apply_hunks(&mut self, frame: &Value) -> Result<Applied, (RefuseReason, Applied)> {
        let entries = count_entries(frame);
        let refuse = |why: RefuseReason| {
            (
                why,
                Applied {
                    skipped: entries,
                    refused: true,
                    ..Applied::default()
                },
            )
        };
        if entries > MAX_FRAME_ENTRIES {
            return Err(refuse(RefuseReason::TooManyEntries(entries)));
        }
        let ops = parse_ops(frame).map_err(refuse)?;
        let adds = ops.iter().filter(|o| !matches!(o, Op::Remove(_))).count();
        if self.len.saturating_add(adds) > MAX_EVENTS {
            return Err(refuse(RefuseReason::TooManyEvents));
        }
        let mut r = Applied::default();
        for op in ops {
            match op {
                Op::Remove(id) => {
                    if self.remove(&id) {
                        r.removed += 1;
                    } else {
                        r.skipped += 1;
                    }
                }
                Op::Modify(before, after) => {
                    self.remove(&before);
                    self.insert(after);
                    r.modified += 1;
                }
                Op::Add(e) => {
                    self.insert(e);
                    r.added += 1;
                }
            }
        }
        if let Some(max) = frame
            .get("fileMaxTick")
            .and_then(Value::as_i64)
            .filter(|m| (0..=i64::from(MAX_TICK)).contains(m))
        {
            r.length_changed = self.set_end_tick(max as u32);
        }
        Ok(r)
    }

    /// Sets the length; a shorter one removes the events starting after it
    /// (as MidiEditor's joiners do, so everyone keeps the same events).
    pub fn set_end_tick(&mut self, end: u32) -> bool {
        if end == self.end_tick {
            return false;
        }
        if end < self.end_tick {
            let cut: Vec<_> = self
                .buckets
                .range((end + 1, 0)..)
                .map(|(k, _)| *k)
                .collect();
            for k in cut {
                if let Some(b) = self.buckets.remove(&k) {
                    self.len -= b.len();
                }
            }
        }
        self.end_tick = end;
        true
    }

    /// A track exists for every index below `tracks`, created empty when a
    /// hunk names it.
    pub fn ensure_tracks(&mut self, tracks: usize) {
        self.tracks = self.tracks.max(tracks.min(MAX_TRACKS) as u16);
    }
}

fn count_entries(frame: &Value) -> usize {
    let Some(hunks) = frame.get("hunks").and_then(Value::as_array) else {
        return 0;
    };
    hunks
        .iter()
        .map(|h| {
            ["removed", "added", "modified"]
                .iter()
                .map(|k| h.get(k).and_then(Value::as_array).map_or(0, Vec::len))
                .sum::<usize>()
        })
        .sum()
}

fn parse_ops(frame: &Value) -> Result<Vec<Op>, RefuseReason> {
    let hunks = match frame.get("hunks") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(h)) => h,
        Some(_) => return Err(RefuseReason::Shape),
    };
    let mut ops = Vec::new();
    let mut index = 0;
    let bad = |index: usize| move |error| RefuseReason::Event { index, error };
    for h in hunks {
        let h = h.as_object().ok_or(RefuseReason::Shape)?;
        let list = |k: &str| -> Result<&[Value], RefuseReason> {
            match h.get(k) {
                None | Some(Value::Null) => Ok(&[]),
                Some(Value::Array(a)) => Ok(a),
                Some(_) => Err(RefuseReason::Shape),
            }
        };
        // MidiEditor's order within a hunk: removals, modifications, adds.
        for v in list("removed")? {
            ops.push(Op::Remove(Identity::from_json(v).map_err(bad(index))?));
            index += 1;
        }
        for v in list("modified")? {
            let before = v
                .get("before")
                .ok_or(EventError::Missing("before"))
                .and_then(Identity::from_json)
                .map_err(bad(index))?;
            let after = v
                .get("after")
                .ok_or(EventError::Missing("after"))
                .and_then(Event::from_json)
                .map_err(bad(index))?;
            ops.push(Op::Modify(before, after));
            index += 1;
        }
        for v in list("added")? {
            ops.push(Op::Add(Event::from_json(v).map_err(bad(index))?));
            index += 1;
        }
    }
    Ok(ops)
}

/// The buckets are stored as a flat event list (a map with tuple keys has
/// no JSON form).
mod bucket_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Buckets;
    use crate::event::Event;

    pub fn serialize<S: Serializer>(b: &Buckets, s: S) -> Result<S::Ok, S::Error> {
        let all: Vec<&Event> = b.values().flatten().collect();
        all.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Buckets, D::Error> {
        let all = Vec::<Event>::deserialize(d)?;
        let mut b = Buckets::new();
        for e in all {
            b.entry((e.tick, e.channel)).or_default().push(e);
        }
        Ok(b)
    }
}

impl Song {
    /// Restores a song saved with serde (the store's format), checking the
    /// bounds a hand-edited file could break.
    pub fn from_saved(json: &[u8]) -> Result<Song, String> {
        let mut s: Song = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        s.len = s.buckets.values().map(Vec::len).sum();
        if s.len > MAX_EVENTS || usize::from(s.tracks) > MAX_TRACKS {
            return Err("saved song is over the limits".into());
        }
        s.ticks_per_quarter = s.ticks_per_quarter.max(1);
        Ok(s)
    }
}
