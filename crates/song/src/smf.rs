//! Standard MIDI Files in and out.
//!
//! Loading keeps what MidiEditor's event model has (notes with durations,
//! controllers, pitch bend, program, pressure, tempo, time and key
//! signatures, text); SysEx and other meta events are not part of the
//! shared song and are dropped. Track numbers are the file's track
//! indices, as in MidiEditor.

use std::collections::{HashMap, VecDeque};

use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use crate::doc::{Song, MAX_EVENTS};
use crate::event::{
    Body, Event, MAX_TICK, MAX_TRACKS, TEMPO_CHANNEL, TEXT_CHANNEL, TIME_SIG_CHANNEL,
};

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SmfError {
    #[error("not a Standard MIDI File: {0}")]
    Parse(String),
    #[error("SMPTE timing is not supported (only ticks per quarter note)")]
    Timecode,
    #[error("the file has {0} tracks; at most {MAX_TRACKS} are supported")]
    TooManyTracks(usize),
    #[error("the file has more than {MAX_EVENTS} events")]
    TooManyEvents,
    #[error("could not write the file: {0}")]
    Write(String),
}

/// Reads a Standard MIDI File.
pub fn load(bytes: &[u8]) -> Result<Song, SmfError> {
    let smf = Smf::parse(bytes).map_err(|e| SmfError::Parse(e.to_string()))?;
    let tpq = match smf.header.timing {
        Timing::Metrical(t) => t.as_int().max(1),
        Timing::Timecode(..) => return Err(SmfError::Timecode),
    };
    if smf.tracks.len() > MAX_TRACKS {
        return Err(SmfError::TooManyTracks(smf.tracks.len()));
    }
    let mut song = Song::empty(tpq, smf.tracks.len() as u16);
    let mut end = 0u32;
    for (ti, track) in smf.tracks.iter().enumerate() {
        let ti = ti as u16;
        let mut tick = 0u32;
        // Open notes per (channel, key), first in first out.
        let mut open: HashMap<(u8, u8), VecDeque<(u32, u8)>> = HashMap::new();
        for ev in track {
            tick = tick.saturating_add(ev.delta.as_int()).min(MAX_TICK);
            end = end.max(tick);
            let mut put = |channel: u8, body: Body| -> Result<(), SmfError> {
                if song.len() >= MAX_EVENTS {
                    return Err(SmfError::TooManyEvents);
                }
                song.insert(Event {
                    track: ti,
                    channel,
                    tick,
                    body,
                });
                Ok(())
            };
            match ev.kind {
                TrackEventKind::Midi { channel, message } => {
                    let ch = channel.as_int();
                    match message {
                        MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                            open.entry((ch, key.as_int()))
                                .or_default()
                                .push_back((tick, vel.as_int()));
                        }
                        MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                            if let Some((start, vel)) = open
                                .get_mut(&(ch, key.as_int()))
                                .and_then(VecDeque::pop_front)
                            {
                                let note = Body::Note {
                                    note: key.as_int(),
                                    velocity: vel,
                                    // A zero-length note would not survive
                                    // export (its off sorts first).
                                    duration: (tick - start).max(1),
                                };
                                insert_at(&mut song, ti, ch, start, note)?;
                            }
                        }
                        MidiMessage::Controller { controller, value } => put(
                            ch,
                            Body::Cc {
                                control: controller.as_int(),
                                value: value.as_int(),
                            },
                        )?,
                        MidiMessage::PitchBend { bend } => put(
                            ch,
                            Body::PitchBend {
                                value: bend.0.as_int(),
                            },
                        )?,
                        MidiMessage::ProgramChange { program } => put(
                            ch,
                            Body::Program {
                                program: program.as_int(),
                            },
                        )?,
                        MidiMessage::ChannelAftertouch { vel } => put(
                            ch,
                            Body::ChanPressure {
                                value: vel.as_int(),
                            },
                        )?,
                        MidiMessage::Aftertouch { key, vel } => put(
                            ch,
                            Body::KeyPressure {
                                note: key.as_int(),
                                value: vel.as_int(),
                            },
                        )?,
                    }
                }
                TrackEventKind::Meta(m) => {
                    let text = |t: u8, b: &[u8]| Body::Text {
                        text_type: t,
                        text: String::from_utf8_lossy(b).into_owned(),
                    };
                    match m {
                        MetaMessage::Tempo(t) => put(
                            TEMPO_CHANNEL,
                            Body::Tempo {
                                micros_per_quarter: t.as_int().max(1),
                            },
                        )?,
                        MetaMessage::TimeSignature(num, denom, clocks, n32) => put(
                            TIME_SIG_CHANNEL,
                            Body::TimeSig {
                                num,
                                denom_midi: denom,
                                midi_clocks: clocks,
                                num32_in4: n32,
                            },
                        )?,
                        MetaMessage::KeySignature(tonality, minor) => {
                            put(TEXT_CHANNEL, Body::KeySig { tonality, minor })?
                        }
                        MetaMessage::Text(b) => put(TEXT_CHANNEL, text(1, b))?,
                        MetaMessage::Copyright(b) => put(TEXT_CHANNEL, text(2, b))?,
                        MetaMessage::TrackName(b) => put(TEXT_CHANNEL, text(3, b))?,
                        MetaMessage::InstrumentName(b) => put(TEXT_CHANNEL, text(4, b))?,
                        MetaMessage::Lyric(b) => put(TEXT_CHANNEL, text(5, b))?,
                        MetaMessage::Marker(b) => put(TEXT_CHANNEL, text(6, b))?,
                        MetaMessage::CuePoint(b) => put(TEXT_CHANNEL, text(7, b))?,
                        _ => {}
                    }
                }
                TrackEventKind::SysEx(_) | TrackEventKind::Escape(_) => {}
            }
        }
        // A note still sounding at the end of its track lasts until there.
        for ((ch, key), starts) in open {
            for (start, vel) in starts {
                let note = Body::Note {
                    note: key,
                    velocity: vel,
                    duration: tick.saturating_sub(start).max(1),
                };
                insert_at(&mut song, ti, ch, start, note)?;
            }
        }
    }
    song.end_tick = song.end_tick.max(end);
    song.add_midieditor_defaults();
    Ok(song)
}

fn insert_at(
    song: &mut Song,
    track: u16,
    channel: u8,
    tick: u32,
    body: Body,
) -> Result<(), SmfError> {
    if song.len() >= MAX_EVENTS {
        return Err(SmfError::TooManyEvents);
    }
    song.insert(Event {
        track,
        channel,
        tick,
        body,
    });
    Ok(())
}

/// Writes the song as a format 1 Standard MIDI File, one file track per
/// song track, each ending at the song's length.
pub fn export(song: &Song) -> Result<Vec<u8>, SmfError> {
    let tracks = usize::from(song.tracks.max(1));
    // (tick, order, kind): note-offs sort before everything else at a tick,
    // so a note ending where the next starts never swallows it.
    let mut per_track: Vec<Vec<(u32, u8, TrackEventKind<'_>)>> = vec![Vec::new(); tracks];
    let u7c = |v: u8| u7::new(v.min(127));
    for e in song.events() {
        let Some(out) = per_track.get_mut(usize::from(e.track)) else {
            continue;
        };
        let ch = u4::new(e.channel.min(15));
        let midi = |message| TrackEventKind::Midi {
            channel: ch,
            message,
        };
        match &e.body {
            Body::Note { note, velocity, .. } => {
                out.push((
                    e.tick,
                    2,
                    midi(MidiMessage::NoteOn {
                        key: u7c(*note),
                        vel: u7c((*velocity).max(1)),
                    }),
                ));
                out.push((
                    e.end(),
                    0,
                    midi(MidiMessage::NoteOff {
                        key: u7c(*note),
                        vel: u7::new(0),
                    }),
                ));
            }
            Body::Cc { control, value } => out.push((
                e.tick,
                2,
                midi(MidiMessage::Controller {
                    controller: u7c(*control),
                    value: u7c(*value),
                }),
            )),
            Body::PitchBend { value } => out.push((
                e.tick,
                2,
                midi(MidiMessage::PitchBend {
                    bend: midly::PitchBend(midly::num::u14::new((*value).min(16383))),
                }),
            )),
            Body::Program { program } => out.push((
                e.tick,
                2,
                midi(MidiMessage::ProgramChange {
                    program: u7c(*program),
                }),
            )),
            Body::ChanPressure { value } => out.push((
                e.tick,
                2,
                midi(MidiMessage::ChannelAftertouch { vel: u7c(*value) }),
            )),
            Body::KeyPressure { note, value } => out.push((
                e.tick,
                2,
                midi(MidiMessage::Aftertouch {
                    key: u7c(*note),
                    vel: u7c(*value),
                }),
            )),
            Body::Tempo { micros_per_quarter } => out.push((
                e.tick,
                1,
                TrackEventKind::Meta(MetaMessage::Tempo(u24::new(
                    (*micros_per_quarter).clamp(1, 0xFF_FFFF),
                ))),
            )),
            Body::TimeSig {
                num,
                denom_midi,
                midi_clocks,
                num32_in4,
            } => out.push((
                e.tick,
                1,
                TrackEventKind::Meta(MetaMessage::TimeSignature(
                    *num,
                    *denom_midi,
                    *midi_clocks,
                    *num32_in4,
                )),
            )),
            Body::KeySig { tonality, minor } => out.push((
                e.tick,
                1,
                TrackEventKind::Meta(MetaMessage::KeySignature(*tonality, *minor)),
            )),
            Body::Text { text_type, text } => {
                let b = text.as_bytes();
                let m = match text_type {
                    2 => MetaMessage::Copyright(b),
                    3 => MetaMessage::TrackName(b),
                    4 => MetaMessage::InstrumentName(b),
                    5 => MetaMessage::Lyric(b),
                    6 => MetaMessage::Marker(b),
                    7 => MetaMessage::CuePoint(b),
                    _ => MetaMessage::Text(b),
                };
                out.push((e.tick, 1, TrackEventKind::Meta(m)));
            }
        }
    }
    let mut smf_tracks = Vec::with_capacity(tracks);
    for mut evs in per_track {
        evs.sort_by_key(|(t, o, _)| (*t, *o));
        let mut track = Vec::with_capacity(evs.len() + 1);
        let mut at = 0u32;
        for (tick, _, kind) in evs {
            track.push(TrackEvent {
                delta: u28::new((tick - at).min(0x0FFF_FFFF)),
                kind,
            });
            at = tick;
        }
        let end = song.end_tick.max(at);
        track.push(TrackEvent {
            delta: u28::new((end - at).min(0x0FFF_FFFF)),
            kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
        });
        smf_tracks.push(track);
    }
    let smf = Smf {
        header: Header::new(
            Format::Parallel,
            Timing::Metrical(u15::new(song.ticks_per_quarter.clamp(1, 0x7FFF))),
        ),
        tracks: smf_tracks,
    };
    let mut out = Vec::new();
    smf.write_std(&mut out)
        .map_err(|e| SmfError::Write(e.to_string()))?;
    Ok(out)
}
