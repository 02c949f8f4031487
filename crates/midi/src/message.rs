//! MIDI 1.0 messages: a typed value, its canonical bytes, and two readers.
//!
//! - [`MidiMessage::read`] reads one message in **canonical** form: status
//!   byte always present, SysEx complete from `F0` to `F7` with nothing
//!   interleaved. That is the form the `midi` channel carries (see
//!   `docs/midi-frames.md`), so anything else there is an error.
//! - [`Parser`] reads a raw byte **stream** as a MIDI cable or an OS port
//!   delivers it: running status, real-time bytes interleaved anywhere (even
//!   inside a SysEx), SysEx split over several reads, undefined bytes. It
//!   never fails: what cannot be a message is skipped and counted, because a
//!   glitch on a cable must not stop the music.
//!
//! SysEx is bounded by a cap ([`SYSEX_MAX`] by default) so a stream that
//! opens a SysEx and never closes it cannot grow memory.

use std::fmt;

use bytes::Bytes;

/// Largest SysEx message kept, `F0` and `F7` included (64 KiB). Longer ones
/// are dropped whole: a truncated SysEx could reprogram a synth wrongly.
pub const SYSEX_MAX: usize = 64 * 1024;

/// A complete System Exclusive message, `F0 data… F7`, every data byte
/// below `0x80`. Cheap to clone (shared bytes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SysEx(Bytes);

/// Why bytes are not a SysEx message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SysExError {
    #[error("a SysEx message must start with F0 and end with F7")]
    Framing,
    #[error("a SysEx data byte is 0x80 or above")]
    DataByte,
    #[error("a SysEx message of {0} bytes is over the {SYSEX_MAX}-byte cap")]
    TooLong(usize),
}

impl SysEx {
    /// Takes a complete message (`F0 … F7`), checked.
    pub fn new(bytes: impl Into<Bytes>) -> Result<SysEx, SysExError> {
        let bytes = bytes.into();
        if bytes.len() > SYSEX_MAX {
            return Err(SysExError::TooLong(bytes.len()));
        }
        if bytes.len() < 2 || bytes[0] != 0xF0 || bytes[bytes.len() - 1] != 0xF7 {
            return Err(SysExError::Framing);
        }
        if bytes[1..bytes.len() - 1].iter().any(|b| *b >= 0x80) {
            return Err(SysExError::DataByte);
        }
        Ok(SysEx(bytes))
    }

    /// Wraps a payload (the bytes between `F0` and `F7`).
    pub fn from_payload(payload: &[u8]) -> Result<SysEx, SysExError> {
        let mut v = Vec::with_capacity(payload.len() + 2);
        v.push(0xF0);
        v.extend_from_slice(payload);
        v.push(0xF7);
        SysEx::new(v)
    }

    /// The whole message, `F0` to `F7`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes between `F0` and `F7`.
    pub fn payload(&self) -> &[u8] {
        &self.0[1..self.0.len() - 1]
    }

    /// Whole length, `F0` and `F7` included.
    #[allow(clippy::len_without_is_empty)] // never empty: F0 and F7 at least
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for SysEx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Long dumps make failing test output unreadable: show the head.
        write!(f, "SysEx({} bytes:", self.0.len())?;
        for b in self.0.iter().take(16) {
            write!(f, " {b:02X}")?;
        }
        if self.0.len() > 16 {
            f.write_str(" …")?;
        }
        f.write_str(")")
    }
}

/// One MIDI 1.0 message. Channels are `0..=15` (shown to people as 1-16),
/// data values `0..=127`, pitch bend and song position `0..=16383`. Values
/// out of range are masked when written, so what goes out is always valid
/// MIDI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MidiMessage {
    NoteOff {
        channel: u8,
        key: u8,
        velocity: u8,
    },
    /// Velocity 0 means Note Off (MIDI 1.0 §4); see [`MidiMessage::is_note_off`].
    NoteOn {
        channel: u8,
        key: u8,
        velocity: u8,
    },
    PolyPressure {
        channel: u8,
        key: u8,
        pressure: u8,
    },
    ControlChange {
        channel: u8,
        controller: u8,
        value: u8,
    },
    ProgramChange {
        channel: u8,
        program: u8,
    },
    ChannelPressure {
        channel: u8,
        pressure: u8,
    },
    /// 14 bits, 8192 is the centre.
    PitchBend {
        channel: u8,
        value: u16,
    },
    SysEx(SysEx),
    /// MTC quarter frame (`F1`).
    QuarterFrame(u8),
    /// Song position pointer (`F2`), in MIDI beats.
    SongPosition(u16),
    SongSelect(u8),
    TuneRequest,
    /// Real-time: timing clock (`F8`).
    Clock,
    Start,
    Continue,
    Stop,
    ActiveSensing,
    /// System reset (`FF`).
    Reset,
}

/// Controller numbers the note tracker acts on.
pub mod cc {
    /// Damper (sustain) pedal: 64 and above is down.
    pub const SUSTAIN: u8 = 64;
    pub const ALL_SOUND_OFF: u8 = 120;
    pub const RESET_ALL_CONTROLLERS: u8 = 121;
    pub const ALL_NOTES_OFF: u8 = 123;
}

/// Why canonical bytes are not one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("no bytes")]
    Empty,
    #[error("a data byte 0x{0:02X} where a status byte was expected (no running status here)")]
    NoStatus(u8),
    #[error("status 0x{0:02X} is undefined in MIDI 1.0")]
    Undefined(u8),
    #[error("the message is cut short")]
    Truncated,
    #[error("a data byte of the message is 0x80 or above")]
    DataByte,
    #[error("a SysEx message over the {SYSEX_MAX}-byte cap")]
    SysExTooLong,
}

/// Data bytes that follow a status byte, for every defined non-SysEx status;
/// `None` for undefined statuses, SysEx and a lone `F7`.
pub fn data_len(status: u8) -> Option<usize> {
    match status {
        0x80..=0xBF | 0xE0..=0xEF | 0xF2 => Some(2),
        0xC0..=0xDF | 0xF1 | 0xF3 => Some(1),
        0xF6 | 0xF8 | 0xFA | 0xFB | 0xFC | 0xFE | 0xFF => Some(0),
        _ => None,
    }
}

impl MidiMessage {
    /// Builds a message from a status byte and its data bytes. The caller
    /// guarantees `data.len() == data_len(status)`; data bytes are masked.
    fn from_parts(status: u8, data: &[u8]) -> Option<MidiMessage> {
        let d0 = data.first().map_or(0, |b| b & 0x7F);
        let d1 = data.get(1).map_or(0, |b| b & 0x7F);
        let channel = status & 0x0F;
        Some(match status {
            0x80..=0x8F => MidiMessage::NoteOff {
                channel,
                key: d0,
                velocity: d1,
            },
            0x90..=0x9F => MidiMessage::NoteOn {
                channel,
                key: d0,
                velocity: d1,
            },
            0xA0..=0xAF => MidiMessage::PolyPressure {
                channel,
                key: d0,
                pressure: d1,
            },
            0xB0..=0xBF => MidiMessage::ControlChange {
                channel,
                controller: d0,
                value: d1,
            },
            0xC0..=0xCF => MidiMessage::ProgramChange {
                channel,
                program: d0,
            },
            0xD0..=0xDF => MidiMessage::ChannelPressure {
                channel,
                pressure: d0,
            },
            0xE0..=0xEF => MidiMessage::PitchBend {
                channel,
                value: u16::from(d0) | (u16::from(d1) << 7),
            },
            0xF1 => MidiMessage::QuarterFrame(d0),
            0xF2 => MidiMessage::SongPosition(u16::from(d0) | (u16::from(d1) << 7)),
            0xF3 => MidiMessage::SongSelect(d0),
            0xF6 => MidiMessage::TuneRequest,
            0xF8 => MidiMessage::Clock,
            0xFA => MidiMessage::Start,
            0xFB => MidiMessage::Continue,
            0xFC => MidiMessage::Stop,
            0xFE => MidiMessage::ActiveSensing,
            0xFF => MidiMessage::Reset,
            _ => return None,
        })
    }

    /// Reads one canonical message from the start of `bytes`; returns it and
    /// how many bytes it took. Canonical: a status byte first (no running
    /// status), all data bytes present, a SysEx whole (`F0 … F7`, nothing
    /// interleaved, at most [`SYSEX_MAX`] bytes).
    pub fn read(bytes: &[u8]) -> Result<(MidiMessage, usize), MessageError> {
        let (&status, rest) = bytes.split_first().ok_or(MessageError::Empty)?;
        if status < 0x80 {
            return Err(MessageError::NoStatus(status));
        }
        if status == 0xF0 {
            let end = rest
                .iter()
                .position(|b| *b >= 0x80)
                .ok_or(MessageError::Truncated)?;
            if rest[end] != 0xF7 {
                return Err(MessageError::DataByte);
            }
            let len = end + 2;
            if len > SYSEX_MAX {
                return Err(MessageError::SysExTooLong);
            }
            let sysex = SysEx(Bytes::copy_from_slice(&bytes[..len]));
            return Ok((MidiMessage::SysEx(sysex), len));
        }
        let n = data_len(status).ok_or(MessageError::Undefined(status))?;
        let data = rest.get(..n).ok_or(MessageError::Truncated)?;
        if data.iter().any(|b| *b >= 0x80) {
            return Err(MessageError::DataByte);
        }
        let msg = MidiMessage::from_parts(status, data).ok_or(MessageError::Undefined(status))?;
        Ok((msg, 1 + n))
    }

    /// Checks that `bytes` starts with one canonical message and returns its
    /// length, without building it (the relay path only needs to know the
    /// frame is sound).
    pub fn check(bytes: &[u8]) -> Result<usize, MessageError> {
        let (&status, rest) = bytes.split_first().ok_or(MessageError::Empty)?;
        if status < 0x80 {
            return Err(MessageError::NoStatus(status));
        }
        if status == 0xF0 {
            let end = rest
                .iter()
                .position(|b| *b >= 0x80)
                .ok_or(MessageError::Truncated)?;
            if rest[end] != 0xF7 {
                return Err(MessageError::DataByte);
            }
            if end + 2 > SYSEX_MAX {
                return Err(MessageError::SysExTooLong);
            }
            return Ok(end + 2);
        }
        let n = data_len(status).ok_or(MessageError::Undefined(status))?;
        let data = rest.get(..n).ok_or(MessageError::Truncated)?;
        if data.iter().any(|b| *b >= 0x80) {
            return Err(MessageError::DataByte);
        }
        Ok(1 + n)
    }

    /// The canonical bytes of a short (non-SysEx) message: status and data,
    /// `len` of the 3 used.
    fn short_bytes(&self) -> ([u8; 3], usize) {
        let ch = |c: &u8| c & 0x0F;
        let d = |v: &u8| v & 0x7F;
        match self {
            MidiMessage::NoteOff {
                channel,
                key,
                velocity,
            } => ([0x80 | ch(channel), d(key), d(velocity)], 3),
            MidiMessage::NoteOn {
                channel,
                key,
                velocity,
            } => ([0x90 | ch(channel), d(key), d(velocity)], 3),
            MidiMessage::PolyPressure {
                channel,
                key,
                pressure,
            } => ([0xA0 | ch(channel), d(key), d(pressure)], 3),
            MidiMessage::ControlChange {
                channel,
                controller,
                value,
            } => ([0xB0 | ch(channel), d(controller), d(value)], 3),
            MidiMessage::ProgramChange { channel, program } => {
                ([0xC0 | ch(channel), d(program), 0], 2)
            }
            MidiMessage::ChannelPressure { channel, pressure } => {
                ([0xD0 | ch(channel), d(pressure), 0], 2)
            }
            MidiMessage::PitchBend { channel, value } => (
                [
                    0xE0 | ch(channel),
                    (value & 0x7F) as u8,
                    ((value >> 7) & 0x7F) as u8,
                ],
                3,
            ),
            MidiMessage::QuarterFrame(v) => ([0xF1, d(v), 0], 2),
            MidiMessage::SongPosition(v) => ([0xF2, (v & 0x7F) as u8, ((v >> 7) & 0x7F) as u8], 3),
            MidiMessage::SongSelect(v) => ([0xF3, d(v), 0], 2),
            MidiMessage::TuneRequest => ([0xF6, 0, 0], 1),
            MidiMessage::Clock => ([0xF8, 0, 0], 1),
            MidiMessage::Start => ([0xFA, 0, 0], 1),
            MidiMessage::Continue => ([0xFB, 0, 0], 1),
            MidiMessage::Stop => ([0xFC, 0, 0], 1),
            MidiMessage::ActiveSensing => ([0xFE, 0, 0], 1),
            MidiMessage::Reset => ([0xFF, 0, 0], 1),
            // Not reached: callers handle SysEx first.
            MidiMessage::SysEx(_) => ([0xF6, 0, 0], 1),
        }
    }

    /// Calls `f` with the canonical bytes, without allocating (what an OS
    /// MIDI port's `send(&[u8])` wants).
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            MidiMessage::SysEx(s) => f(s.as_bytes()),
            _ => {
                let (b, n) = self.short_bytes();
                f(&b[..n])
            }
        }
    }

    /// Appends the canonical bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.with_bytes(|b| out.extend_from_slice(b));
    }

    /// The canonical bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        self.with_bytes(<[u8]>::to_vec)
    }

    /// Length of the canonical bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            MidiMessage::SysEx(s) => s.len(),
            _ => self.short_bytes().1,
        }
    }

    /// The channel of a channel voice message.
    pub fn channel(&self) -> Option<u8> {
        match self {
            MidiMessage::NoteOff { channel, .. }
            | MidiMessage::NoteOn { channel, .. }
            | MidiMessage::PolyPressure { channel, .. }
            | MidiMessage::ControlChange { channel, .. }
            | MidiMessage::ProgramChange { channel, .. }
            | MidiMessage::ChannelPressure { channel, .. }
            | MidiMessage::PitchBend { channel, .. } => Some(channel & 0x0F),
            _ => None,
        }
    }

    /// A note that starts sounding: Note On with a velocity above 0.
    pub fn is_note_on(&self) -> bool {
        matches!(self, MidiMessage::NoteOn { velocity, .. } if velocity & 0x7F > 0)
    }

    /// A Note Off, or a Note On with velocity 0 (which means the same).
    pub fn is_note_off(&self) -> bool {
        match self {
            MidiMessage::NoteOff { .. } => true,
            MidiMessage::NoteOn { velocity, .. } => velocity & 0x7F == 0,
            _ => false,
        }
    }

    /// Real-time messages may appear anywhere in a stream, even inside a
    /// SysEx, and never touch running status.
    pub fn is_realtime(&self) -> bool {
        matches!(
            self,
            MidiMessage::Clock
                | MidiMessage::Start
                | MidiMessage::Continue
                | MidiMessage::Stop
                | MidiMessage::ActiveSensing
                | MidiMessage::Reset
        )
    }

    /// Note Off with the release velocity MIDI 1.0 asks of senders that do
    /// not measure one (64).
    pub fn note_off(channel: u8, key: u8) -> MidiMessage {
        MidiMessage::NoteOff {
            channel: channel & 0x0F,
            key: key & 0x7F,
            velocity: 64,
        }
    }

    pub fn control(channel: u8, controller: u8, value: u8) -> MidiMessage {
        MidiMessage::ControlChange {
            channel: channel & 0x0F,
            controller: controller & 0x7F,
            value: value & 0x7F,
        }
    }
}

/// Reads every canonical message in `bytes` (a frame body, say). All or
/// nothing: the first error fails the whole read.
pub fn read_all(bytes: &[u8]) -> Result<Vec<MidiMessage>, MessageError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (m, n) = MidiMessage::read(&bytes[at..])?;
        out.push(m);
        at += n;
    }
    Ok(out)
}

/// A streaming reader of raw MIDI bytes (an OS port, a cable, a file's
/// event data): running status, real-time bytes anywhere, SysEx over
/// several reads. Never fails; see the counters for what it skipped.
#[derive(Debug, Clone)]
pub struct Parser {
    /// Running status: the last channel status byte, cleared by system
    /// common messages and SysEx (MIDI 1.0 §4).
    running: Option<u8>,
    data: [u8; 2],
    have: usize,
    /// The SysEx being collected, `F0` included.
    sysex: Option<Vec<u8>>,
    /// The SysEx in progress went over the cap: skip to its end.
    sysex_overflow: bool,
    cap: usize,
    skipped: u64,
    sysex_dropped: u64,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser keeping SysEx up to [`SYSEX_MAX`] bytes.
    pub fn new() -> Parser {
        Parser::with_sysex_cap(SYSEX_MAX)
    }

    /// A parser keeping SysEx up to `cap` bytes (`F0` and `F7` included;
    /// at most [`SYSEX_MAX`]). Longer ones are dropped whole.
    pub fn with_sysex_cap(cap: usize) -> Parser {
        Parser {
            running: None,
            data: [0; 2],
            have: 0,
            sysex: None,
            sysex_overflow: false,
            cap: cap.clamp(2, SYSEX_MAX),
            skipped: 0,
            sysex_dropped: 0,
        }
    }

    /// Bytes that could not belong to any message (data without a status,
    /// undefined statuses, a stray `F7`).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// SysEx messages dropped for going over the cap.
    pub fn sysex_dropped(&self) -> u64 {
        self.sysex_dropped
    }

    /// Forgets a half-read message and running status (after a port was
    /// reopened, say).
    pub fn reset(&mut self) {
        self.running = None;
        self.have = 0;
        self.sysex = None;
        self.sysex_overflow = false;
    }

    /// Feeds bytes; calls `emit` for each complete message, in order.
    pub fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(MidiMessage)) {
        for &b in bytes {
            self.push(b, &mut emit);
        }
    }

    /// Feeds bytes and collects the messages.
    pub fn parse(&mut self, bytes: &[u8]) -> Vec<MidiMessage> {
        let mut out = Vec::new();
        self.feed(bytes, |m| out.push(m));
        out
    }

    /// Feeds one byte. At most two messages come out of one byte: a SysEx
    /// ended by a Tune Request, then the Tune Request.
    fn push(&mut self, b: u8, emit: &mut impl FnMut(MidiMessage)) {
        if b >= 0xF8 {
            // Real-time: passes through everything, changes nothing.
            match MidiMessage::from_parts(b, &[]) {
                Some(m) => emit(m),
                None => self.skipped += 1, // F9, FD: undefined
            }
            return;
        }
        if b >= 0x80 {
            // Any other status byte ends a SysEx in progress. `F7` is the
            // proper end; anything else ends it too (MIDI 1.0, "EOX"), and
            // the message is kept as if `F7` had come.
            let had_sysex = self.sysex.is_some();
            if let Some(m) = self.end_sysex() {
                emit(m);
            }
            self.have = 0;
            match b {
                0xF7 => {
                    if !had_sysex {
                        self.skipped += 1; // an EOX with no SysEx open
                    }
                }
                0xF0 => {
                    self.running = None;
                    self.sysex = Some(vec![0xF0]);
                    self.sysex_overflow = false;
                }
                0x80..=0xEF => self.running = Some(b),
                _ => {
                    // System common clears running status.
                    self.running = None;
                    match data_len(b) {
                        Some(0) => {
                            if let Some(m) = MidiMessage::from_parts(b, &[]) {
                                emit(m); // Tune Request
                            }
                        }
                        // Collected like a channel message, without
                        // running status afterwards.
                        Some(_) => self.running = Some(b),
                        None => self.skipped += 1, // F4, F5
                    }
                }
            }
            return;
        }
        // A data byte.
        if let Some(sx) = self.sysex.as_mut() {
            if self.sysex_overflow {
                return;
            }
            if sx.len() + 1 >= self.cap {
                // No room for this byte and the closing F7: drop it whole.
                self.sysex_overflow = true;
                *sx = Vec::new();
                self.sysex_dropped += 1;
                return;
            }
            sx.push(b);
            return;
        }
        let Some(status) = self.running else {
            self.skipped += 1;
            return;
        };
        let need = data_len(status).unwrap_or(0);
        if self.have < self.data.len() {
            self.data[self.have] = b;
        }
        self.have += 1;
        if self.have < need {
            return;
        }
        self.have = 0;
        if status >= 0xF0 {
            // System common messages leave no running status behind.
            self.running = None;
        }
        if let Some(m) = MidiMessage::from_parts(status, &self.data[..need]) {
            emit(m);
        }
    }

    /// Closes the SysEx in progress, if any; the message if it fitted.
    fn end_sysex(&mut self) -> Option<MidiMessage> {
        let mut sx = self.sysex.take()?;
        if std::mem::take(&mut self.sysex_overflow) {
            return None;
        }
        sx.push(0xF7);
        Some(MidiMessage::SysEx(SysEx(Bytes::from(sx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(channel: u8, key: u8, velocity: u8) -> MidiMessage {
        MidiMessage::NoteOn {
            channel,
            key,
            velocity,
        }
    }

    #[test]
    fn running_status_repeats_the_last_channel_status() {
        let mut p = Parser::new();
        // Note On ch 1, then two more notes and a velocity-0 release without
        // repeating the status byte.
        let got = p.parse(&[0x90, 60, 100, 64, 90, 67, 80, 60, 0]);
        assert_eq!(
            got,
            vec![on(0, 60, 100), on(0, 64, 90), on(0, 67, 80), on(0, 60, 0)]
        );
        assert!(got[3].is_note_off());
        // Program change (one data byte) with running status.
        assert_eq!(
            p.parse(&[0xC2, 5, 6]),
            vec![
                MidiMessage::ProgramChange {
                    channel: 2,
                    program: 5
                },
                MidiMessage::ProgramChange {
                    channel: 2,
                    program: 6
                }
            ]
        );
        assert_eq!(p.skipped(), 0);
    }

    #[test]
    fn realtime_bytes_interleave_without_breaking_messages_or_running_status() {
        let mut p = Parser::new();
        let got = p.parse(&[0x90, 0xF8, 60, 0xFE, 100, 0xF8, 62, 0xFA, 101]);
        assert_eq!(
            got,
            vec![
                MidiMessage::Clock,
                MidiMessage::ActiveSensing,
                on(0, 60, 100),
                MidiMessage::Clock,
                MidiMessage::Start,
                on(0, 62, 101),
            ]
        );
        // Inside a SysEx too.
        let got = p.parse(&[0xF0, 0x7E, 0xF8, 0x01, 0xF7]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], MidiMessage::Clock);
        assert_eq!(
            got[1],
            MidiMessage::SysEx(SysEx::from_payload(&[0x7E, 0x01]).unwrap())
        );
    }

    #[test]
    fn sysex_split_over_reads_comes_out_whole() {
        let mut p = Parser::new();
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 128) as u8).collect();
        let mut raw = vec![0xF0];
        raw.extend_from_slice(&payload);
        raw.push(0xF7);
        let mut got = Vec::new();
        for chunk in raw.chunks(256) {
            got.extend(p.parse(chunk));
        }
        assert_eq!(
            got,
            vec![MidiMessage::SysEx(SysEx::from_payload(&payload).unwrap())]
        );
    }

    #[test]
    fn sysex_over_the_cap_is_dropped_whole_and_parsing_resumes() {
        let mut p = Parser::with_sysex_cap(16);
        let mut raw = vec![0xF0];
        raw.extend(std::iter::repeat_n(0x11, 100));
        raw.extend_from_slice(&[0xF7, 0x90, 60, 1]);
        assert_eq!(p.parse(&raw), vec![on(0, 60, 1)]);
        assert_eq!(p.sysex_dropped(), 1);
        // Exactly at the cap is kept.
        let mut raw = vec![0xF0];
        raw.extend(std::iter::repeat_n(0x22, 14));
        raw.push(0xF7);
        let got = p.parse(&raw);
        assert!(matches!(&got[..], [MidiMessage::SysEx(s)] if s.len() == 16));
        // And the default cap holds a 64 KiB message.
        let mut p = Parser::new();
        let mut raw = vec![0xF0];
        raw.extend(std::iter::repeat_n(0x33, SYSEX_MAX - 2));
        raw.push(0xF7);
        assert!(matches!(&p.parse(&raw)[..], [MidiMessage::SysEx(s)] if s.len() == SYSEX_MAX));
    }

    #[test]
    fn a_status_byte_ends_an_open_sysex_as_midi_says() {
        let mut p = Parser::new();
        let got = p.parse(&[0xF0, 0x01, 0x02, 0x90, 60, 100]);
        assert_eq!(
            got,
            vec![
                MidiMessage::SysEx(SysEx::from_payload(&[1, 2]).unwrap()),
                on(0, 60, 100)
            ]
        );
        // A Tune Request ends it and is itself reported.
        let got = p.parse(&[0xF0, 0x05, 0xF6]);
        assert_eq!(
            got,
            vec![
                MidiMessage::SysEx(SysEx::from_payload(&[5]).unwrap()),
                MidiMessage::TuneRequest
            ]
        );
    }

    #[test]
    fn system_common_clears_running_status_and_junk_is_skipped() {
        let mut p = Parser::new();
        let got = p.parse(&[
            0x90, 60, 100, 0xF3, 7, 61, 100, 0xF4, 0xF7, 0xF9, 0x80, 60, 0,
        ]);
        assert_eq!(
            got,
            vec![
                on(0, 60, 100),
                MidiMessage::SongSelect(7),
                MidiMessage::NoteOff {
                    channel: 0,
                    key: 60,
                    velocity: 0
                }
            ]
        );
        // 61, 100 (no running status), F4, stray F7, F9.
        assert_eq!(p.skipped(), 5);
    }

    #[test]
    fn every_message_kind_reads_back_from_its_bytes() {
        let all = vec![
            MidiMessage::NoteOff {
                channel: 15,
                key: 127,
                velocity: 0,
            },
            on(3, 0, 127),
            MidiMessage::PolyPressure {
                channel: 1,
                key: 2,
                pressure: 3,
            },
            MidiMessage::control(4, 64, 127),
            MidiMessage::ProgramChange {
                channel: 5,
                program: 99,
            },
            MidiMessage::ChannelPressure {
                channel: 6,
                pressure: 7,
            },
            MidiMessage::PitchBend {
                channel: 7,
                value: 16383,
            },
            MidiMessage::PitchBend {
                channel: 7,
                value: 8192,
            },
            MidiMessage::SysEx(SysEx::from_payload(&[]).unwrap()),
            MidiMessage::SysEx(SysEx::from_payload(&[0x7F; 300]).unwrap()),
            MidiMessage::QuarterFrame(0x71),
            MidiMessage::SongPosition(12345),
            MidiMessage::SongSelect(3),
            MidiMessage::TuneRequest,
            MidiMessage::Clock,
            MidiMessage::Start,
            MidiMessage::Continue,
            MidiMessage::Stop,
            MidiMessage::ActiveSensing,
            MidiMessage::Reset,
        ];
        let mut bytes = Vec::new();
        for m in &all {
            let before = bytes.len();
            m.write(&mut bytes);
            assert_eq!(bytes.len() - before, m.encoded_len(), "{m:?}");
        }
        assert_eq!(read_all(&bytes).unwrap(), all);
        assert_eq!(Parser::new().parse(&bytes), all);
    }

    #[test]
    fn out_of_range_fields_are_masked_when_written() {
        let m = MidiMessage::NoteOn {
            channel: 17,
            key: 200,
            velocity: 255,
        };
        assert_eq!(m.to_vec(), vec![0x91, 200 & 0x7F, 0x7F]);
        assert!(MidiMessage::read(&m.to_vec()).is_ok());
    }

    #[test]
    fn canonical_reading_refuses_what_a_frame_must_not_hold() {
        use MessageError::*;
        assert_eq!(MidiMessage::read(&[]), Err(Empty));
        assert_eq!(MidiMessage::read(&[60, 100]), Err(NoStatus(60)));
        assert_eq!(MidiMessage::read(&[0x90, 60]), Err(Truncated));
        assert_eq!(MidiMessage::read(&[0x90, 60, 0x80]), Err(DataByte));
        assert_eq!(MidiMessage::read(&[0xF4]), Err(Undefined(0xF4)));
        assert_eq!(MidiMessage::read(&[0xF9]), Err(Undefined(0xF9)));
        assert_eq!(MidiMessage::read(&[0xF7]), Err(Undefined(0xF7)));
        assert_eq!(MidiMessage::read(&[0xF0, 1, 2]), Err(Truncated));
        assert_eq!(MidiMessage::read(&[0xF0, 1, 0xF8, 0xF7]), Err(DataByte));
        let mut big = vec![0xF0];
        big.extend(std::iter::repeat_n(0, SYSEX_MAX - 1));
        big.push(0xF7);
        assert_eq!(MidiMessage::read(&big), Err(SysExTooLong));
        assert_eq!(
            SysEx::from_payload(&[0x80]).unwrap_err(),
            SysExError::DataByte
        );
    }
}
