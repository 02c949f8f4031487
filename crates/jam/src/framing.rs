//! MidiEditor's frames: `[u32 big-endian length][payload]`.
//!
//! Every message on the `midieditor` data channel, and on MidiEditor's LAN
//! TCP transport, is one such frame whose payload is a compact UTF-8 JSON
//! object with a `"type"` field, except the connection test's raw
//! `midieditor-ping` / `midieditor-pong` payloads.
//!
//! Two ways of receiving them exist, and both are here:
//! - over WebRTC, one binary message carries exactly one frame, so
//!   [`decode_message`] insists that the declared length matches the message;
//! - over TCP, frames arrive as a byte stream cut anywhere, so
//!   [`FrameDecoder`] reassembles them in a buffer with a hard upper bound.
//!
//! Nothing here panics on any input: lengths come from the network, so every
//! length is checked against a maximum before anything is allocated for it,
//! and JSON parsing relies on serde_json's recursion limit.

use serde_json::Value;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// MidiEditor closes the channel on inbound frames over 32 MiB; it is the
/// largest frame any peer of ours can legitimately send or expect.
pub const MIDIEDITOR_MAX_FRAME: usize = 32 * 1024 * 1024;

/// Raw payload of the connection test's ping (not JSON).
pub const PING: &[u8] = b"midieditor-ping";
/// Raw payload of the connection test's answer (not JSON).
pub const PONG: &[u8] = b"midieditor-pong";

/// How much a [`FrameDecoder`] may hold beyond one maximal frame: room for
/// the next read while a frame is still incomplete. A reader that pushes at
/// most this much between drains never sees [`FrameError::BufferFull`].
pub const READ_SLACK: usize = 64 * 1024;

/// Buffers that grew past this are shrunk back once empty, so one large frame
/// does not pin its memory for the life of the connection.
const SHRINK_ABOVE: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message is shorter than the 4-byte length prefix.
    #[error("message of {len} bytes is shorter than the length prefix")]
    Truncated { len: usize },
    /// The declared length is over the limit. An unprefixed JSON text (`{"ty`
    /// read as a length is about 2 GB) ends up here.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: u64, max: usize },
    /// One message, one frame: the declared length must match exactly.
    #[error("frame declares {declared} bytes but the message carries {actual}")]
    LengthMismatch { declared: u64, actual: usize },
    /// A stream reader pushed more than the decoder may hold; drain frames
    /// and push the rest again. Nothing was consumed.
    #[error("decoder buffer full: {buffered} buffered + {incoming} incoming > {limit}")]
    BufferFull {
        buffered: usize,
        incoming: usize,
        limit: usize,
    },
    /// The payload is neither JSON nor a raw ping/pong.
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object.
    #[error("payload is JSON but not an object")]
    NotJsonObject,
    /// A JSON object without a string `"type"`.
    #[error("JSON object has no string \"type\"")]
    MissingType,
}

/// One parsed payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A JSON object; `kind` is its `"type"`, `body` the whole object
    /// (`"type"` included).
    Json { kind: String, body: Value },
    /// Raw `midieditor-ping`.
    Ping,
    /// Raw `midieditor-pong`.
    Pong,
}

impl Frame {
    /// The `"type"` of a JSON frame.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Frame::Json { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// Frames `payload`.
///
/// A payload over `u32::MAX` bytes cannot be framed; it gets the length
/// `u32::MAX`, which is over every reader's limit, so the peer rejects it
/// instead of misreading it. Senders should keep payloads within the
/// receiver's limit in the first place (see [`try_encode`]).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Frames `payload` if it is at most `max` bytes (and fits the prefix).
pub fn try_encode(payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    if payload.len() > max || u32::try_from(payload.len()).is_err() {
        return Err(FrameError::TooLarge {
            len: payload.len() as u64,
            max,
        });
    }
    Ok(encode(payload))
}

/// Frames `value` as compact JSON, as MidiEditor writes it.
pub fn encode_json(value: &Value) -> Vec<u8> {
    // Serialising a `Value` into memory cannot fail (its keys are strings and
    // its numbers finite); if it ever did, `{}` is a frame every reader
    // ignores, which beats a panic in the middle of a jam.
    match serde_json::to_vec(value) {
        Ok(payload) => encode(&payload),
        Err(_) => encode(b"{}"),
    }
}

/// Reads the length prefix of `bytes`, which must hold at least 4 bytes.
fn declared_len(bytes: &[u8]) -> Option<u32> {
    let head: [u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(head))
}

/// Checks a declared length against `max`, returning it as a `usize`.
fn check_len(len: u32, max: usize) -> Result<usize, FrameError> {
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        }),
    }
}

/// Unwraps one frame from one message (the WebRTC case): the prefix must
/// declare at most `max` bytes and exactly the bytes that follow it.
pub fn decode_message(msg: &[u8], max: usize) -> Result<&[u8], FrameError> {
    let len = declared_len(msg).ok_or(FrameError::Truncated { len: msg.len() })?;
    let len = check_len(len, max)?;
    let payload = &msg[HEADER_LEN..];
    if payload.len() != len {
        return Err(FrameError::LengthMismatch {
            declared: len as u64,
            actual: payload.len(),
        });
    }
    Ok(payload)
}

/// Interprets a payload: a JSON object with a string `"type"`, or a raw
/// ping/pong. Anything else is an error the caller counts, not a reason to
/// give up on the connection.
pub fn parse_payload(payload: &[u8]) -> Result<Frame, FrameError> {
    if payload == PING {
        return Ok(Frame::Ping);
    }
    if payload == PONG {
        return Ok(Frame::Pong);
    }
    // serde_json validates UTF-8 and limits nesting depth (128), so hostile
    // input can neither smuggle bad text nor overflow the stack.
    let body: Value =
        serde_json::from_slice(payload).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let kind = match &body {
        Value::Object(map) => match map.get("type") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(FrameError::MissingType),
        },
        _ => return Err(FrameError::NotJsonObject),
    };
    Ok(Frame::Json { kind, body })
}

/// [`decode_message`] then [`parse_payload`].
pub fn decode(msg: &[u8], max: usize) -> Result<Frame, FrameError> {
    parse_payload(decode_message(msg, max)?)
}

/// Reassembles frames from a byte stream (MidiEditor's LAN TCP transport).
///
/// Push what the socket gave, then pop frames until `Ok(None)`. The buffer
/// never holds more than `limit` bytes: one maximal frame plus
/// [`READ_SLACK`] by default. A reader that pushes more than the room left
/// gets [`FrameError::BufferFull`] without anything being consumed.
///
/// A length over `max_frame` means the stream can no longer be delimited
/// (and is what MidiEditor closes the connection for), so the decoder then
/// stays failed: every later call returns that same error, and the caller
/// should close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes before `start` were already handed out; dropping them is
    /// deferred to the next push so popping many small frames stays linear.
    start: usize,
    max_frame: usize,
    limit: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder for frames of at most `max_frame` payload bytes.
    pub fn new(max_frame: usize) -> Self {
        let limit = max_frame
            .saturating_add(HEADER_LEN)
            .saturating_add(READ_SLACK);
        Self::with_limit(max_frame, limit)
    }

    /// Like [`new`](Self::new) with an explicit buffer bound. The bound is
    /// raised to one maximal frame if lower, or no maximal frame could ever
    /// complete.
    pub fn with_limit(max_frame: usize, limit: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_frame,
            limit: limit.max(max_frame.saturating_add(HEADER_LEN)),
            failed: None,
        }
    }

    /// Bytes held and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// How many bytes the next [`push`](Self::push) accepts.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.buffered())
    }

    /// The error that stopped this decoder, if any.
    pub fn failed(&self) -> Option<&FrameError> {
        self.failed.as_ref()
    }

    /// Appends bytes from the stream. Fails, consuming nothing, when they
    /// would exceed the buffer bound; fails for good when a frame header
    /// declares more than `max_frame`. The header is checked as soon as its
    /// four bytes are in, so an unprefixed JSON text is refused at once
    /// rather than after waiting for gigabytes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if bytes.len() > self.room() {
            return Err(FrameError::BufferFull {
                buffered: self.buffered(),
                incoming: bytes.len(),
                limit: self.limit,
            });
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.check_head()
    }

    /// Validates the header of the frame at the front, if it is complete.
    fn check_head(&mut self) -> Result<(), FrameError> {
        if let Some(len) = declared_len(&self.buf[self.start..]) {
            if let Err(e) = check_len(len, self.max_frame) {
                self.fail(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: FrameError) {
        self.failed = Some(e);
        self.buf = Vec::new();
        self.start = 0;
    }

    /// The next complete frame's payload, `Ok(None)` if more bytes are
    /// needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let rest = &self.buf[self.start..];
        let Some(len) = declared_len(rest) else {
            return Ok(None);
        };
        let len = match check_len(len, self.max_frame) {
            Ok(n) => n,
            Err(e) => {
                self.fail(e.clone());
                return Err(e);
            }
        };
        // `len <= max_frame` may still be near `usize::MAX` on 32-bit
        // targets; such a frame can never complete.
        let Some(end) = HEADER_LEN.checked_add(len) else {
            return Ok(None);
        };
        let Some(payload) = rest.get(HEADER_LEN..end) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.start += end;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf.shrink_to(READ_SLACK);
            }
        }
        // A bad header behind this frame is reported by the next call, so
        // this good frame is still delivered first.
        Ok(Some(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use test_support::rng::XorShift;

    fn drain(d: &mut FrameDecoder) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn encode_prefixes_a_big_endian_length() {
        assert_eq!(encode(b"abc"), vec![0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(encode(b""), vec![0, 0, 0, 0]);
        let big = vec![7u8; 0x0001_0203];
        assert_eq!(&encode(&big)[..4], &[0, 1, 2, 3]);
    }

    #[test]
    fn encode_json_is_compact() {
        let f = encode_json(&json!({"type": "heartbeat"}));
        assert_eq!(&f[4..], br#"{"type":"heartbeat"}"#);
        assert_eq!(
            decode_message(&f, 1024).unwrap(),
            br#"{"type":"heartbeat"}"#
        );
    }

    #[test]
    fn try_encode_refuses_payloads_over_the_limit() {
        assert_eq!(try_encode(b"abcd", 4).unwrap(), encode(b"abcd"));
        assert_eq!(
            try_encode(b"abcde", 4),
            Err(FrameError::TooLarge { len: 5, max: 4 })
        );
    }

    #[test]
    fn a_message_must_carry_exactly_its_declared_length() {
        let f = encode(b"hello");
        assert_eq!(decode_message(&f, 100), Ok(&b"hello"[..]));
        assert_eq!(
            decode_message(&f[..f.len() - 1], 100),
            Err(FrameError::LengthMismatch {
                declared: 5,
                actual: 4
            })
        );
        let mut long = f.clone();
        long.push(0);
        assert_eq!(
            decode_message(&long, 100),
            Err(FrameError::LengthMismatch {
                declared: 5,
                actual: 6
            })
        );
        for n in 0..4 {
            assert_eq!(
                decode_message(&f[..n], 100),
                Err(FrameError::Truncated { len: n })
            );
        }
    }

    #[test]
    fn a_message_over_the_limit_is_refused_before_its_length_is_compared() {
        let f = encode(&[1u8; 10]);
        assert_eq!(
            decode_message(&f, 9),
            Err(FrameError::TooLarge { len: 10, max: 9 })
        );
        assert_eq!(decode_message(&f, 10).unwrap().len(), 10);
    }

    #[test]
    fn unprefixed_json_text_reads_as_a_huge_length_and_is_rejected() {
        let text = br#"{"type":"hello","machineId":"x"}"#;
        let err = decode_message(text, MIDIEDITOR_MAX_FRAME).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len, .. } if len == 0x7b22_7479),
            "{err:?}"
        );
        assert!(matches!(
            decode(text, MIDIEDITOR_MAX_FRAME),
            Err(FrameError::TooLarge { .. })
        ));
        let mut d = FrameDecoder::new(MIDIEDITOR_MAX_FRAME);
        assert!(matches!(d.push(text), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn payloads_parse_into_frames() {
        assert_eq!(parse_payload(PING), Ok(Frame::Ping));
        assert_eq!(parse_payload(PONG), Ok(Frame::Pong));
        let f = parse_payload(br#"{"type":"chat","text":"hi"}"#).unwrap();
        assert_eq!(f.kind(), Some("chat"));
        assert_eq!(
            f,
            Frame::Json {
                kind: "chat".into(),
                body: json!({"type": "chat", "text": "hi"})
            }
        );
        assert_eq!(Frame::Ping.kind(), None);
    }

    #[test]
    fn payloads_that_are_not_typed_json_objects_are_errors() {
        assert!(matches!(
            parse_payload(b"not json"),
            Err(FrameError::NotJson(_))
        ));
        assert!(matches!(parse_payload(b""), Err(FrameError::NotJson(_))));
        assert!(matches!(
            parse_payload(b"{\"type\":\"x\"} trailing"),
            Err(FrameError::NotJson(_))
        ));
        assert!(matches!(
            parse_payload(b"\"{\\\"type\\\":1}\"\xff"),
            Err(FrameError::NotJson(_))
        ));
        assert_eq!(parse_payload(b"[1,2]"), Err(FrameError::NotJsonObject));
        assert_eq!(parse_payload(b"\"chat\""), Err(FrameError::NotJsonObject));
        assert_eq!(parse_payload(b"{}"), Err(FrameError::MissingType));
        assert_eq!(
            parse_payload(br#"{"type":3}"#),
            Err(FrameError::MissingType)
        );
        assert_eq!(
            parse_payload(br#"{"Type":"chat"}"#),
            Err(FrameError::MissingType)
        );
        // Near misses of the raw test payloads are not pings.
        assert!(parse_payload(b"midieditor-ping\n").is_err());
        assert!(parse_payload(b"MIDIEDITOR-PING").is_err());
    }

    #[test]
    fn invalid_utf8_in_json_is_an_error() {
        assert!(matches!(
            parse_payload(b"{\"type\":\"\xc3\x28\"}"),
            Err(FrameError::NotJson(_))
        ));
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let mut p = b"{\"type\":\"x\",\"a\":".to_vec();
        p.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(matches!(parse_payload(&p), Err(FrameError::NotJson(_))));
    }

    #[test]
    fn decoder_reassembles_frames_split_anywhere() {
        let frames: Vec<Vec<u8>> = vec![b"one".to_vec(), vec![], b"three".to_vec()];
        let stream: Vec<u8> = frames.iter().flat_map(|f| encode(f)).collect();
        for cut in 0..=stream.len() {
            let mut d = FrameDecoder::new(64);
            d.push(&stream[..cut]).unwrap();
            let mut got = drain(&mut d).unwrap();
            d.push(&stream[cut..]).unwrap();
            got.extend(drain(&mut d).unwrap());
            assert_eq!(got, frames, "cut at {cut}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn decoder_waits_for_a_whole_frame() {
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0, 0, 5, b'a']).unwrap();
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 5);
        d.push(b"bcd").unwrap();
        assert_eq!(d.next_frame(), Ok(None));
        d.push(b"e").unwrap();
        assert_eq!(d.next_frame(), Ok(Some(b"abcde".to_vec())));
        assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn decoder_fails_for_good_on_an_oversized_header() {
        let mut d = FrameDecoder::new(16);
        let mut s = encode(b"ok");
        s.extend_from_slice(&[0, 0, 0, 17, b'x']);
        d.push(&s).unwrap();
        // The good frame in front is still delivered, then the bad header.
        assert_eq!(d.next_frame(), Ok(Some(b"ok".to_vec())));
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
        assert!(d.failed().is_some());
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        assert!(matches!(
            d.push(&encode(b"x")),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(d.buffered(), 0, "a failed decoder holds nothing");
    }

    #[test]
    fn decoder_refuses_a_bad_header_at_the_front_as_soon_as_it_is_complete() {
        let mut d = FrameDecoder::new(16);
        let mut s = encode(b"ok");
        s.extend_from_slice(&[0, 0]);
        d.push(&s).unwrap();
        assert_eq!(d.next_frame(), Ok(Some(b"ok".to_vec())));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(
            d.push(&[1, 0]),
            Err(FrameError::TooLarge { len: 256, max: 16 })
        );
    }

    #[test]
    fn decoder_buffer_is_bounded_and_refuses_without_consuming() {
        let mut d = FrameDecoder::with_limit(8, 24);
        assert_eq!(d.room(), 24);
        d.push(&encode(b"12345678")).unwrap();
        d.push(&encode(b"abcdefgh")).unwrap();
        assert_eq!(d.buffered(), 24);
        assert_eq!(
            d.push(b"x"),
            Err(FrameError::BufferFull {
                buffered: 24,
                incoming: 1,
                limit: 24
            })
        );
        assert!(d.failed().is_none(), "a full buffer is not fatal");
        assert_eq!(d.next_frame(), Ok(Some(b"12345678".to_vec())));
        assert_eq!(d.room(), 12);
        d.push(&encode(b"z")).unwrap();
        assert_eq!(
            drain(&mut d).unwrap(),
            vec![b"abcdefgh".to_vec(), b"z".to_vec()]
        );
    }

    #[test]
    fn decoder_limit_always_fits_one_maximal_frame() {
        let mut d = FrameDecoder::with_limit(100, 1);
        d.push(&encode(&[9; 100])).unwrap();
        assert_eq!(d.next_frame().unwrap().unwrap().len(), 100);
    }

    #[test]
    fn decoder_with_absurd_limits_does_not_overflow() {
        let mut d = FrameDecoder::new(usize::MAX);
        d.push(&[0xff, 0xff, 0xff, 0xff, 1, 2]).unwrap();
        assert_eq!(d.next_frame(), Ok(None));
        let mut d = FrameDecoder::new(0);
        d.push(&encode(b"")).unwrap();
        assert_eq!(d.next_frame(), Ok(Some(vec![])));
        assert!(d.push(&encode(b"a")).is_err());
    }

    #[test]
    fn random_bytes_never_panic_anything() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let n = rng.below(64);
            let mut msg = rng.bytes(n);
            // Often make the header plausible, so the deeper paths run too.
            if n >= 4 && rng.below(2) == 0 {
                let len = rng.below(n) as u32;
                msg[..4].copy_from_slice(&len.to_be_bytes());
            }
            let max = rng.below(80);
            let _ = decode_message(&msg, max);
            let _ = decode(&msg, max);
            let _ = parse_payload(&msg);

            let mut d = FrameDecoder::with_limit(max, rng.below(200));
            let mut at = 0;
            while at < msg.len() {
                let step = 1 + rng.below(msg.len() - at);
                let chunk = &msg[at..at + step];
                match d.push(chunk) {
                    Ok(()) => at += step,
                    Err(FrameError::BufferFull { .. }) => {}
                    Err(_) => break,
                }
                match drain(&mut d) {
                    Ok(frames) => {
                        for f in frames {
                            assert!(f.len() <= max);
                            let _ = parse_payload(&f);
                        }
                    }
                    Err(_) => break,
                }
                assert!(d.buffered() <= max + HEADER_LEN + 200);
            }
        }
    }

    #[test]
    fn random_json_like_payloads_never_panic() {
        let alphabet = br#"{}[]":,\ type chat 0123456789.-e+truefalsenull"#;
        let mut rng = XorShift(42);
        for _ in 0..5000 {
            let n = rng.below(40);
            let p: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let _ = parse_payload(&p);
            let _ = decode(&encode(&p), 64);
        }
    }

    #[test]
    fn valid_frames_split_at_random_points_decode_identically() {
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        for round in 0..300 {
            let frames: Vec<Vec<u8>> = (0..1 + rng.below(12))
                .map(|_| {
                    let n = rng.below(300);
                    rng.bytes(n)
                })
                .collect();
            let stream: Vec<u8> = frames.iter().flat_map(|f| encode(f)).collect();
            let mut d = FrameDecoder::new(300);
            let mut got = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let step = (1 + rng.below(97)).min(stream.len() - at);
                d.push(&stream[at..at + step]).unwrap();
                at += step;
                got.extend(drain(&mut d).unwrap());
            }
            assert_eq!(got, frames, "round {round}");
            assert_eq!(d.buffered(), 0);
            // The same frames, one per message, decode identically too.
            for f in &frames {
                assert_eq!(decode_message(&encode(f), 300).unwrap(), &f[..]);
            }
        }
    }
}
