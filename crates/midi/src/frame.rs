//! The frame format of the `midi` data channel, version 1.
//!
//! The normative description, precise enough to implement elsewhere, is
//! `docs/midi-frames.md`; this is the reference implementation. In short,
//! one WebRTC message is one frame:
//!
//! ```text
//! version (u8 = 1) | flags (u8) | origin (LEB128 u64) | time_us (u64 BE) | messages…
//! ```
//!
//! where `messages` is zero or more canonical MIDI 1.0 messages back to back
//! (status byte always present, SysEx whole from `F0` to `F7`).
//!
//! Why this shape:
//! - **Compact**: a Note On is a 14-byte frame. MIDI's own bytes are already
//!   the most compact encoding of MIDI, and they need no schema.
//! - **Self-delimiting body**: every MIDI status byte says how many data
//!   bytes follow, and SysEx ends at `F7`, so several messages (a chord, a
//!   burst from a port) share one frame without length prefixes.
//! - **Origin** lets the host relay without a per-peer channel: a star with
//!   the host as hub, where every joiner still knows who played what (and
//!   whose notes to release when someone leaves).
//! - **Sender timestamp** in wall-clock microseconds measures latency end to
//!   end wherever clocks agree (always on one machine).
//! - **Version first**, so a receiver can tell a frame it cannot read from a
//!   broken one and skip it without guessing.
//!
//! Decoding is all or nothing and never panics: a frame with any defect is
//! refused whole, so a half-applied frame can never leave a note on.

use bytes::Bytes;

use crate::message::{MessageError, MidiMessage};

/// The only version this code writes and reads.
pub const VERSION: u8 = 1;

/// Largest frame, in bytes: the `midi` channel's message size limit (the
/// host advertises 256 KiB, the most its WebRTC stack can reassemble).
pub const MAX_FRAME: usize = 262_144;

/// Largest header: version, flags, a 10-byte LEB128 origin, 8-byte time.
pub const MAX_HEADER: usize = 1 + 1 + 10 + 8;

/// Flag bits. Senders set only the bits defined here; receivers ignore the
/// others, so new bits can be added without a new version.
pub mod flags {
    /// The messages were made by the host's release logic (the origin left,
    /// stalled, was muted, or a panic), not played. Routed like any other
    /// message; a UI may show them differently.
    pub const RELEASE: u8 = 0x01;
    /// The sender promises to send at least one frame every 250 ms on this
    /// channel for as long as anything it sent on this channel still holds
    /// a note or pedal (an empty frame when it has nothing to play). A
    /// sender that sets it sets it on every frame it sends; a receiver may
    /// then take 1 s without a frame, while that sender's notes sound, as
    /// a stall and release them (docs/midi-frames.md, "Keep-alive and
    /// stalls"). Never copied when relaying: a relayed frame carries the
    /// relaying sender's own promise.
    pub const KEEPALIVE: u8 = 0x02;
}

/// Origin value meaning "the peer that sent this frame on this channel".
pub const ORIGIN_SENDER: u64 = 0;

/// The fixed part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameHeader {
    pub flags: u8,
    /// [`ORIGIN_SENDER`] (0), or the host's id of the peer who played.
    pub origin: u64,
    /// Microseconds since the UNIX epoch on the sender's clock when the
    /// messages were played; 0 when unknown.
    pub time_us: u64,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("frame version {0} is not supported (this side reads version {VERSION})")]
    Version(u8),
    #[error("the frame header is cut short")]
    Truncated,
    #[error("the origin does not fit in 64 bits")]
    Origin,
    #[error("a frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("MIDI message at byte {offset} of the frame: {error}")]
    Message { offset: usize, error: MessageError },
}

/// A decoded, fully checked frame that borrows the received bytes: the
/// relay path reads it without copying the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub header: FrameHeader,
    body: &'a [u8],
    body_offset: usize,
}

impl<'a> FrameRef<'a> {
    /// Decodes and checks a whole frame: header, then every message.
    pub fn decode(data: &'a [u8]) -> Result<FrameRef<'a>, FrameError> {
        if data.len() > MAX_FRAME {
            return Err(FrameError::TooLarge(data.len()));
        }
        let (&version, rest) = data.split_first().ok_or(FrameError::Empty)?;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let (&flags, rest) = rest.split_first().ok_or(FrameError::Truncated)?;
        let (origin, n) = read_varint(rest)?;
        let rest = &rest[n..];
        let time: [u8; 8] = rest
            .get(..8)
            .and_then(|t| t.try_into().ok())
            .ok_or(FrameError::Truncated)?;
        let body = &rest[8..];
        let body_offset = data.len() - body.len();
        let mut at = 0;
        while at < body.len() {
            at += MidiMessage::check(&body[at..]).map_err(|error| FrameError::Message {
                offset: body_offset + at,
                error,
            })?;
        }
        Ok(FrameRef {
            header: FrameHeader {
                flags,
                origin,
                time_us: u64::from_be_bytes(time),
            },
            body,
            body_offset,
        })
    }

    /// The messages' bytes, back to back (already checked).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Where the body starts in the frame.
    pub fn body_offset(&self) -> usize {
        self.body_offset
    }

    /// Whether the frame carries no message (a keep-alive).
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The messages, in order.
    pub fn messages(&self) -> Messages<'a> {
        Messages { rest: self.body }
    }
}

/// Iterator over the messages of a checked frame.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl Iterator for Messages<'_> {
    type Item = MidiMessage;

    fn next(&mut self) -> Option<MidiMessage> {
        // The body was checked when the frame was decoded; an error here
        // cannot happen, and would end the iteration rather than panic.
        let (m, n) = MidiMessage::read(self.rest).ok()?;
        self.rest = &self.rest[n..];
        Some(m)
    }
}

/// An owned frame, for code that is not on a hot path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub header: FrameHeader,
    pub messages: Vec<MidiMessage>,
}

impl Frame {
    pub fn decode(data: &[u8]) -> Result<Frame, FrameError> {
        let f = FrameRef::decode(data)?;
        Ok(Frame {
            header: f.header,
            messages: f.messages().collect(),
        })
    }

    /// Encodes the frame; fails only when it would be over [`MAX_FRAME`]
    /// (see [`encode_split`] for any number of messages).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        encode(&self.header, &self.messages)
    }
}

/// Appends `v` as unsigned LEB128 (7 bits a byte, low group first, high
/// bit set on every byte but the last).
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Reads unsigned LEB128; the value and bytes used. At most 10 bytes, and
/// the value must fit in 64 bits. Non-minimal encodings are accepted.
pub fn read_varint(data: &[u8]) -> Result<(u64, usize), FrameError> {
    let mut v: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(10) {
        let group = u64::from(b & 0x7F);
        if i == 9 && group > 1 {
            return Err(FrameError::Origin);
        }
        v |= group << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    if data.len() >= 10 {
        Err(FrameError::Origin)
    } else {
        Err(FrameError::Truncated)
    }
}

/// Appends a header to `out`.
pub fn write_header(out: &mut Vec<u8>, header: &FrameHeader) {
    out.push(VERSION);
    out.push(header.flags);
    write_varint(out, header.origin);
    out.extend_from_slice(&header.time_us.to_be_bytes());
}

/// One frame with these messages; fails when it would be over [`MAX_FRAME`].
pub fn encode(header: &FrameHeader, messages: &[MidiMessage]) -> Result<Vec<u8>, FrameError> {
    let len = MAX_HEADER + messages.iter().map(MidiMessage::encoded_len).sum::<usize>();
    let mut out = Vec::with_capacity(len.min(MAX_FRAME));
    write_header(&mut out, header);
    for m in messages {
        m.write(&mut out);
    }
    if out.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(out.len()));
    }
    Ok(out)
}

/// A frame whose body is `body`, bytes already known to be canonical
/// messages (the body of a [`FrameRef`]). The relay path: a new header, the
/// same messages.
pub fn encode_with_body(header: &FrameHeader, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(MAX_HEADER + body.len());
    write_header(&mut out, header);
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// As many frames as it takes to carry `messages` in order, each at most
/// [`MAX_FRAME`] bytes. A message can never be too large for one frame (a
/// SysEx is capped at 64 KiB), so this always succeeds. No messages, no
/// frames.
pub fn encode_split(header: &FrameHeader, messages: &[MidiMessage]) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for m in messages {
        if !cur.is_empty() && cur.len() + m.encoded_len() > MAX_FRAME {
            frames.push(Bytes::from(std::mem::take(&mut cur)));
        }
        if cur.is_empty() {
            write_header(&mut cur, header);
        }
        m.write(&mut cur);
    }
    if !cur.is_empty() {
        frames.push(Bytes::from(cur));
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SysEx;

    /// A small reproducible generator (no property-testing dependency).
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

        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }

        fn message(&mut self) -> MidiMessage {
            let ch = self.below(16) as u8;
            let d = |r: &mut XorShift| r.below(128) as u8;
            match self.below(12) {
                0 => MidiMessage::NoteOn {
                    channel: ch,
                    key: d(self),
                    velocity: d(self),
                },
                1 => MidiMessage::NoteOff {
                    channel: ch,
                    key: d(self),
                    velocity: d(self),
                },
                2 => MidiMessage::control(ch, d(self), d(self)),
                3 => MidiMessage::PitchBend {
                    channel: ch,
                    value: self.below(16384) as u16,
                },
                4 => MidiMessage::ProgramChange {
                    channel: ch,
                    program: d(self),
                },
                5 => MidiMessage::ChannelPressure {
                    channel: ch,
                    pressure: d(self),
                },
                6 => MidiMessage::PolyPressure {
                    channel: ch,
                    key: d(self),
                    pressure: d(self),
                },
                7 => {
                    let n = if self.below(20) == 0 {
                        self.below(70_000)
                    } else {
                        self.below(40)
                    };
                    let payload: Vec<u8> = (0..n.min(crate::message::SYSEX_MAX - 2))
                        .map(|_| d(self))
                        .collect();
                    MidiMessage::SysEx(SysEx::from_payload(&payload).unwrap())
                }
                8 => MidiMessage::SongPosition(self.below(16384) as u16),
                9 => MidiMessage::QuarterFrame(d(self)),
                10 => MidiMessage::TuneRequest,
                _ => [
                    MidiMessage::Clock,
                    MidiMessage::Start,
                    MidiMessage::Continue,
                    MidiMessage::Stop,
                    MidiMessage::ActiveSensing,
                    MidiMessage::Reset,
                ][self.below(6)]
                .clone(),
            }
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The examples printed in docs/midi-frames.md, byte for byte.
    #[test]
    fn the_documented_examples_encode_and_decode_as_printed() {
        let t = 1_700_000_000_123_456u64;
        let note_on = MidiMessage::NoteOn {
            channel: 0,
            key: 60,
            velocity: 100,
        };
        let h = FrameHeader {
            flags: 0,
            origin: 0,
            time_us: t,
        };
        let f = encode(&h, std::slice::from_ref(&note_on)).unwrap();
        assert_eq!(f, hex("01 00 00 00 06 0A 24 18 20 22 40 90 3C 64"));
        assert_eq!(f.len(), 14);

        let h = FrameHeader {
            flags: 0,
            origin: 300,
            time_us: t,
        };
        let chord = [
            note_on.clone(),
            MidiMessage::NoteOn {
                channel: 0,
                key: 64,
                velocity: 90,
            },
            MidiMessage::control(0, 64, 127),
        ];
        let f = encode(&h, &chord).unwrap();
        assert_eq!(
            f,
            hex("01 00 AC 02 00 06 0A 24 18 20 22 40 90 3C 64 90 40 5A B0 40 7F")
        );

        let h = FrameHeader {
            flags: flags::RELEASE,
            origin: 5,
            time_us: t,
        };
        let sx = MidiMessage::SysEx(SysEx::from_payload(&[0x7E, 0x7F, 0x09, 0x01]).unwrap());
        let off = MidiMessage::note_off(0, 60);
        let f = encode(&h, &[off.clone(), sx.clone()]).unwrap();
        assert_eq!(
            f,
            hex("01 01 05 00 06 0A 24 18 20 22 40 80 3C 40 F0 7E 7F 09 01 F7")
        );
        let back = Frame::decode(&f).unwrap();
        assert_eq!(back.header, h);
        assert_eq!(back.messages, vec![off, sx]);

        // A keep-alive: no messages.
        let f = encode(&FrameHeader::default(), &[]).unwrap();
        assert_eq!(f, hex("01 00 00 00 00 00 00 00 00 00 00"));
        assert!(FrameRef::decode(&f).unwrap().is_empty());

        // A sender that promised keep-alives: the flag on a note, and on
        // the empty frame that keeps the promise.
        let h = FrameHeader {
            flags: flags::KEEPALIVE,
            origin: 0,
            time_us: t,
        };
        let f = encode(&h, std::slice::from_ref(&note_on)).unwrap();
        assert_eq!(f, hex("01 02 00 00 06 0A 24 18 20 22 40 90 3C 64"));
        let f = encode(&h, &[]).unwrap();
        assert_eq!(f, hex("01 02 00 00 06 0A 24 18 20 22 40"));
        let back = FrameRef::decode(&f).unwrap();
        assert!(back.is_empty());
        assert_eq!(back.header.flags & flags::KEEPALIVE, flags::KEEPALIVE);
    }

    #[test]
    fn varints_round_trip_and_overflow_is_refused() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(read_varint(&out), Ok((v, out.len())), "{v}");
        }
        // Non-minimal but in range: accepted.
        assert_eq!(read_varint(&[0x80, 0x00]), Ok((0, 2)));
        // 11 bytes, or a 10th byte carrying more than the 64th bit.
        assert_eq!(read_varint(&[0xFF; 11]), Err(FrameError::Origin));
        let mut too_big = vec![0xFF; 9];
        too_big.push(0x02);
        assert_eq!(read_varint(&too_big), Err(FrameError::Origin));
        assert_eq!(read_varint(&[0x80, 0x80]), Err(FrameError::Truncated));
    }

    #[test]
    fn defects_are_refused_whole() {
        let good = encode(
            &FrameHeader {
                flags: 0,
                origin: 7,
                time_us: 42,
            },
            &[MidiMessage::NoteOn {
                channel: 0,
                key: 60,
                velocity: 1,
            }],
        )
        .unwrap();
        assert!(FrameRef::decode(&good).is_ok());
        assert_eq!(FrameRef::decode(&[]), Err(FrameError::Empty));
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(FrameRef::decode(&v2), Err(FrameError::Version(2)));
        for cut in 1..11 {
            assert_eq!(
                FrameRef::decode(&good[..cut]),
                Err(FrameError::Truncated),
                "{cut}"
            );
        }
        // Cut inside the message.
        assert!(matches!(
            FrameRef::decode(&good[..good.len() - 1]),
            Err(FrameError::Message { offset: 11, .. })
        ));
        // Running status is not allowed in a frame.
        let mut rs = good.clone();
        rs.extend_from_slice(&[62, 1]);
        assert!(matches!(
            FrameRef::decode(&rs),
            Err(FrameError::Message { offset: 14, .. })
        ));
        let huge = vec![1u8; MAX_FRAME + 1];
        assert_eq!(
            FrameRef::decode(&huge),
            Err(FrameError::TooLarge(MAX_FRAME + 1))
        );
    }

    /// Random message lists survive encode → decode; splitting keeps every
    /// frame under the limit and the messages in order.
    #[test]
    fn random_frames_round_trip() {
        let mut rng = XorShift(0x5EED_1234_ABCD_0001);
        for _ in 0..2_000 {
            let n = rng.below(12);
            let messages: Vec<MidiMessage> = (0..n).map(|_| rng.message()).collect();
            let header = FrameHeader {
                flags: rng.next() as u8,
                origin: rng.next() >> rng.below(64),
                time_us: rng.next(),
            };
            let frames = encode_split(&header, &messages);
            let mut back = Vec::new();
            for f in &frames {
                assert!(f.len() <= MAX_FRAME);
                let d = Frame::decode(f).unwrap();
                assert_eq!(d.header, header);
                assert!(!d.messages.is_empty());
                back.extend(d.messages);
            }
            assert_eq!(back, messages);
            if let (Ok(one), false) = (encode(&header, &messages), messages.is_empty()) {
                assert_eq!(frames.len(), 1);
                assert_eq!(&one[..], &frames[0][..]);
            }
        }
    }

    /// Arbitrary bytes, and valid frames with bytes flipped, cut or spliced:
    /// the decoder never panics, and whatever it accepts re-encodes to a
    /// frame that decodes to the same thing.
    #[test]
    fn the_decoder_survives_any_byte_stream() {
        let mut rng = XorShift(0xF022_0000_0000_0007);
        let mut accepted = 0;
        for i in 0..50_000 {
            let data: Vec<u8> = if i % 2 == 0 {
                let n = rng.below(64);
                let mut d: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                if !d.is_empty() && rng.below(2) == 0 {
                    d[0] = VERSION;
                }
                d
            } else {
                let messages: Vec<MidiMessage> = (0..rng.below(5)).map(|_| rng.message()).collect();
                let header = FrameHeader {
                    flags: rng.next() as u8,
                    origin: rng.next() >> rng.below(64),
                    time_us: rng.next(),
                };
                let mut d = encode_split(&header, &messages)
                    .first()
                    .map(|b| b.to_vec())
                    .unwrap_or_else(|| encode(&header, &[]).unwrap());
                match rng.below(4) {
                    0 => {
                        let at = rng.below(d.len());
                        d[at] = rng.next() as u8;
                    }
                    1 => d.truncate(rng.below(d.len() + 1)),
                    2 => {
                        let at = rng.below(d.len() + 1);
                        let extra: Vec<u8> = (0..rng.below(6)).map(|_| rng.next() as u8).collect();
                        d.splice(at..at, extra);
                    }
                    _ => {}
                }
                d
            };
            if let Ok(f) = Frame::decode(&data) {
                accepted += 1;
                let again = Frame::decode(&f.encode().unwrap()).unwrap();
                assert_eq!(again, f);
                // The borrowed view agrees with the owned one.
                let r = FrameRef::decode(&data).unwrap();
                assert_eq!(r.messages().collect::<Vec<_>>(), f.messages);
                assert_eq!(&data[r.body_offset()..], r.body());
            }
        }
        assert!(accepted > 1_000, "only {accepted} frames were valid");
    }

    #[test]
    fn a_relayed_frame_keeps_the_body_and_takes_the_new_header() {
        let messages = [MidiMessage::NoteOn {
            channel: 9,
            key: 36,
            velocity: 127,
        }];
        let f = encode(
            &FrameHeader {
                flags: 0,
                origin: 0,
                time_us: 99,
            },
            &messages,
        )
        .unwrap();
        let r = FrameRef::decode(&f).unwrap();
        let relayed = encode_with_body(
            &FrameHeader {
                flags: 0,
                origin: 1234,
                time_us: r.header.time_us,
            },
            r.body(),
        );
        let back = Frame::decode(&relayed).unwrap();
        assert_eq!(back.header.origin, 1234);
        assert_eq!(back.header.time_us, 99);
        assert_eq!(back.messages, messages);
    }
}
