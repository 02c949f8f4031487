//! One event of the song, in the shape MidiEditor's `hunks` talk about: the
//! JSON objects of its event serializer (`type`, `tick`, `channel`, `track`
//! and per-type fields), with a note as one event carrying its duration.
//!
//! MidiEditor puts non-voice events on pseudo channels: 16 for text and key
//! signatures, 17 for tempo, 18 for time signatures. Event identity (what a
//! `removed` or `modified.before` entry is matched by) is the channel, the
//! track, the tick, the type and, for some types, one more field: the note
//! (notes, key pressure), the controller (cc) or the text type (text).

use serde_json::{json, Map, Value};

/// Pseudo channel of text and key-signature events.
pub const TEXT_CHANNEL: u8 = 16;
/// Pseudo channel of tempo events.
pub const TEMPO_CHANNEL: u8 = 17;
/// Pseudo channel of time-signature events.
pub const TIME_SIG_CHANNEL: u8 = 18;
/// MidiEditor refuses to create more tracks than this from a hunk (its
/// guard against `track: 1e9`); so do we.
pub const MAX_TRACKS: usize = 256;
/// Ticks are 32-bit signed in MidiEditor; anything above cannot be real.
pub const MAX_TICK: u32 = i32::MAX as u32;
/// Longest text event accepted from the network, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// The text type MidiEditor uses for a track's name.
pub const TRACK_NAME: u8 = 3;

/// What an event is, without its position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Body {
    Note {
        note: u8,
        velocity: u8,
        duration: u32,
    },
    Cc {
        control: u8,
        value: u8,
    },
    PitchBend {
        value: u16,
    },
    Program {
        program: u8,
    },
    /// Kept as the file stores it; MidiEditor's JSON shows whole beats per
    /// minute, which would lose precision on a round trip.
    Tempo {
        micros_per_quarter: u32,
    },
    TimeSig {
        num: u8,
        denom_midi: u8,
        midi_clocks: u8,
        num32_in4: u8,
    },
    KeySig {
        tonality: i8,
        minor: bool,
    },
    Text {
        text_type: u8,
        text: String,
    },
    ChanPressure {
        value: u8,
    },
    KeyPressure {
        note: u8,
        value: u8,
    },
}

/// One event at its place in the song.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub track: u16,
    pub channel: u8,
    pub tick: u32,
    pub body: Body,
}

/// What a `removed` entry (or `modified.before`) is matched by. `track` is
/// `None` when the entry had none: MidiEditor then matches any track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: Kind,
    pub channel: u8,
    pub track: Option<u16>,
    pub tick: u32,
    /// The note, controller or text type, for the kinds that have one.
    pub extra: Option<u8>,
}

/// The event types MidiEditor's serializer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Note,
    Cc,
    PitchBend,
    Program,
    Tempo,
    TimeSig,
    KeySig,
    Text,
    ChanPressure,
    KeyPressure,
}

impl Kind {
    fn from_wire(s: &str) -> Option<Kind> {
        Some(match s {
            "note" => Kind::Note,
            "cc" => Kind::Cc,
            "pitch_bend" => Kind::PitchBend,
            "program_change" => Kind::Program,
            "tempo" => Kind::Tempo,
            "time_sig" => Kind::TimeSig,
            "key_sig" => Kind::KeySig,
            "text" => Kind::Text,
            "chan_pressure" => Kind::ChanPressure,
            "key_pressure" => Kind::KeyPressure,
            _ => return None,
        })
    }

    fn is_meta(self) -> bool {
        matches!(
            self,
            Kind::Tempo | Kind::TimeSig | Kind::KeySig | Kind::Text
        )
    }
}

/// Why one event of a hunk is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is not a JSON object")]
    NotObject,
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("field {0} is missing or not an integer")]
    Missing(&'static str),
    #[error("field {field} = {value} is out of range")]
    Range { field: &'static str, value: i64 },
    #[error("text of {0} bytes is too long")]
    TextTooLong(usize),
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Note { .. } => Kind::Note,
            Body::Cc { .. } => Kind::Cc,
            Body::PitchBend { .. } => Kind::PitchBend,
            Body::Program { .. } => Kind::Program,
            Body::Tempo { .. } => Kind::Tempo,
            Body::TimeSig { .. } => Kind::TimeSig,
            Body::KeySig { .. } => Kind::KeySig,
            Body::Text { .. } => Kind::Text,
            Body::ChanPressure { .. } => Kind::ChanPressure,
            Body::KeyPressure { .. } => Kind::KeyPressure,
        }
    }

    fn extra(&self) -> Option<u8> {
        match self {
            Body::Note { note, .. } | Body::KeyPressure { note, .. } => Some(*note),
            Body::Cc { control, .. } => Some(*control),
            Body::Text { text_type, .. } => Some(*text_type),
            _ => None,
        }
    }
}

impl Event {
    /// Whether this event is what `id` names (MidiEditor's
    /// `findMatchingEvent`).
    pub fn matches(&self, id: &Identity) -> bool {
        self.channel == id.channel
            && self.tick == id.tick
            && id.track.is_none_or(|t| t == self.track)
            && self.body.kind() == id.kind
            && (id.extra.is_none() || self.body.extra() == id.extra)
    }

    /// The last tick the event covers (a note's end).
    pub fn end(&self) -> u32 {
        match &self.body {
            Body::Note { duration, .. } => self.tick.saturating_add(*duration).min(MAX_TICK),
            _ => self.tick,
        }
    }

    /// MidiEditor's JSON form (what its `hunks` carry).
    pub fn to_json(&self) -> Value {
        let mut o = match &self.body {
            Body::Note {
                note,
                velocity,
                duration,
            } => json!({"type": "note", "note": note, "velocity": velocity, "duration": duration}),
            Body::Cc { control, value } => {
                json!({"type": "cc", "control": control, "value": value})
            }
            Body::PitchBend { value } => json!({"type": "pitch_bend", "value": value}),
            Body::Program { program } => json!({"type": "program_change", "program": program}),
            Body::Tempo { micros_per_quarter } => {
                json!({"type": "tempo", "bpm": 60_000_000 / (*micros_per_quarter).max(1)})
            }
            Body::TimeSig {
                num,
                denom_midi,
                midi_clocks,
                num32_in4,
            } => json!({"type": "time_sig", "num": num, "denomMidi": denom_midi,
                        "denom": 1u32 << (*denom_midi).min(31), "midiClocks": midi_clocks,
                        "num32In4": num32_in4}),
            Body::KeySig { tonality, minor } => {
                json!({"type": "key_sig", "tonality": tonality, "minor": minor})
            }
            Body::Text { text_type, text } => {
                json!({"type": "text", "textType": text_type, "text": text})
            }
            Body::ChanPressure { value } => json!({"type": "chan_pressure", "value": value}),
            Body::KeyPressure { note, value } => {
                json!({"type": "key_pressure", "note": note, "value": value})
            }
        };
        o["tick"] = json!(self.tick);
        o["channel"] = json!(self.channel);
        o["track"] = json!(self.track);
        o
    }

    /// An event to insert, read from a hunk's `added` or `modified.after`
    /// entry with MidiEditor's rules: required fields per type, ranges
    /// checked; a missing or negative track means track 0; a note's
    /// velocity 0 becomes 1 and its duration at least 1. Stricter than
    /// MidiEditor where it would silently move a voice event to channel
    /// 15 or truncate a non-integer: such an entry is refused.
    pub fn from_json(v: &Value) -> Result<Event, EventError> {
        let o = v.as_object().ok_or(EventError::NotObject)?;
        let kind = kind_of(o)?;
        let tick = tick_of(o)?;
        let channel = channel_of(o, kind)?;
        let track = match o.get("track") {
            None | Some(Value::Null) => 0,
            Some(t) => {
                let t = t.as_i64().ok_or(EventError::Missing("track"))?;
                if t < 0 {
                    0
                } else if t as u64 >= MAX_TRACKS as u64 {
                    return Err(EventError::Range {
                        field: "track",
                        value: t,
                    });
                } else {
                    t as u16
                }
            }
        };
        let body = match kind {
            Kind::Note => Body::Note {
                note: ranged(o, "note", 0, 127)? as u8,
                velocity: ranged(o, "velocity", 0, 127)?.max(1) as u8,
                duration: ranged(o, "duration", i64::MIN, i64::from(MAX_TICK))?.max(1) as u32,
            },
            Kind::Cc => Body::Cc {
                control: ranged(o, "control", 0, 127)? as u8,
                value: ranged(o, "value", 0, 127)? as u8,
            },
            Kind::PitchBend => Body::PitchBend {
                value: ranged(o, "value", 0, 16383)? as u16,
            },
            Kind::Program => Body::Program {
                program: ranged(o, "program", 0, 127)? as u8,
            },
            Kind::Tempo => Body::Tempo {
                micros_per_quarter: (60_000_000 / ranged(o, "bpm", 1, 999)?) as u32,
            },
            Kind::TimeSig => Body::TimeSig {
                num: ranged(o, "num", 1, 32)? as u8,
                denom_midi: ranged(o, "denomMidi", 0, 5)? as u8,
                midi_clocks: optional(o, "midiClocks", 24, 0, 255)? as u8,
                num32_in4: optional(o, "num32In4", 8, 0, 255)? as u8,
            },
            Kind::KeySig => Body::KeySig {
                tonality: ranged(o, "tonality", -7, 7)? as i8,
                minor: o.get("minor").and_then(Value::as_bool).unwrap_or(false),
            },
            Kind::Text => {
                let text = o
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or(EventError::Missing("text"))?;
                if text.len() > MAX_TEXT_BYTES {
                    return Err(EventError::TextTooLong(text.len()));
                }
                Body::Text {
                    text_type: optional(o, "textType", 1, 1, 127)? as u8,
                    text: text.to_owned(),
                }
            }
            Kind::ChanPressure => Body::ChanPressure {
                value: ranged(o, "value", 0, 127)? as u8,
            },
            Kind::KeyPressure => Body::KeyPressure {
                note: ranged(o, "note", 0, 127)? as u8,
                value: ranged(o, "value", 0, 127)? as u8,
            },
        };
        Ok(Event {
            track,
            channel,
            tick,
            body,
        })
    }
}

impl Identity {
    /// The identity named by a `removed` or `modified.before` entry. Only
    /// the identity fields are read.
    pub fn from_json(v: &Value) -> Result<Identity, EventError> {
        let o = v.as_object().ok_or(EventError::NotObject)?;
        let kind = kind_of(o)?;
        let tick = tick_of(o)?;
        let channel = channel_of(o, kind)?;
        let track = match o.get("track").and_then(Value::as_i64) {
            Some(t) if t >= 0 => {
                if t as u64 >= MAX_TRACKS as u64 {
                    return Err(EventError::Range {
                        field: "track",
                        value: t,
                    });
                }
                Some(t as u16)
            }
            _ => None,
        };
        let extra = match kind {
            Kind::Note | Kind::KeyPressure => Some(ranged(o, "note", 0, 127)? as u8),
            Kind::Cc => Some(ranged(o, "control", 0, 127)? as u8),
            // MidiEditor matches any text type when the entry has none.
            Kind::Text => match o.get("textType") {
                None => None,
                Some(_) => Some(ranged(o, "textType", 1, 127)? as u8),
            },
            _ => None,
        };
        Ok(Identity {
            kind,
            channel,
            track,
            tick,
            extra,
        })
    }
}

fn kind_of(o: &Map<String, Value>) -> Result<Kind, EventError> {
    let t = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or(EventError::Missing("type"))?;
    Kind::from_wire(t).ok_or_else(|| EventError::UnknownType(t.chars().take(40).collect()))
}

fn tick_of(o: &Map<String, Value>) -> Result<u32, EventError> {
    Ok(ranged(o, "tick", 0, i64::from(MAX_TICK))? as u32)
}

fn channel_of(o: &Map<String, Value>, kind: Kind) -> Result<u8, EventError> {
    let max = if kind.is_meta() { 18 } else { 15 };
    Ok(ranged(o, "channel", 0, max)? as u8)
}

fn ranged(
    o: &Map<String, Value>,
    field: &'static str,
    lo: i64,
    hi: i64,
) -> Result<i64, EventError> {
    let v = o
        .get(field)
        .and_then(Value::as_i64)
        .ok_or(EventError::Missing(field))?;
    if v < lo || v > hi {
        return Err(EventError::Range { field, value: v });
    }
    Ok(v)
}

fn optional(
    o: &Map<String, Value>,
    field: &'static str,
    default: i64,
    lo: i64,
    hi: i64,
) -> Result<i64, EventError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(_) => ranged(o, field, lo, hi),
    }
}
