//! Frames larger than one data-channel message.
//!
//! webrtc-rs 0.21 caps a message at 256 KiB, but a song sent as
//! `filetransfer` (or a big edit relayed) can be far larger. MidiEditor
//! reads its channel as a byte stream of length-prefixed frames, so the
//! host cuts a large frame into consecutive messages, all through the one
//! writer of that peer so nothing can come between the pieces
//! ([`pieces`]). Inbound, [`Inbound`] reads messages the same way: a
//! message that is exactly one frame is handed on as is (so a malformed
//! one is still one bad frame, as before), and a frame announced longer
//! than its message is completed from the messages that follow.

use bytes::Bytes;

use crate::framing::{FrameDecoder, HEADER_LEN};

/// The pieces `frame` is sent as, none over `max` bytes.
pub fn pieces(frame: Bytes, max: usize) -> impl Iterator<Item = Bytes> {
    let max = max.max(1);
    let n = frame.len().div_ceil(max).max(1);
    (0..n).map(move |i| frame.slice(i * max..((i + 1) * max).min(frame.len())))
}

/// What one inbound message yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A whole message to decode as one frame (prefix included).
    Message(Vec<u8>),
    /// A payload reassembled from several messages (prefix removed).
    Payload(Vec<u8>),
}

/// One peer's inbound stream state.
#[derive(Debug)]
pub struct Inbound {
    max_frame: usize,
    /// `Some` while a frame longer than its first message is being read.
    partial: Option<FrameDecoder>,
}

impl Inbound {
    pub fn new(max_frame: usize) -> Inbound {
        Inbound {
            max_frame,
            partial: None,
        }
    }

    /// Feeds one message; returns the frames it completes, in order. A
    /// stream that cannot be delimited any more (a length over the maximum
    /// inside a reassembly) yields the rest as one bad message.
    pub fn push(&mut self, msg: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        match self.partial.as_mut() {
            None => {
                let declared = declared_len(msg);
                match declared {
                    Some(len) if len > msg.len() - HEADER_LEN && len <= self.max_frame => {
                        let mut d = FrameDecoder::new(self.max_frame);
                        if d.push(msg).is_err() {
                            out.push(Piece::Message(msg.to_vec()));
                        } else {
                            self.partial = Some(d);
                        }
                    }
                    // Several frames in one message: read them as a stream.
                    Some(len) if len < msg.len() - HEADER_LEN => {
                        let mut d = FrameDecoder::new(self.max_frame);
                        if d.push(msg).is_err() {
                            out.push(Piece::Message(msg.to_vec()));
                        } else {
                            self.partial = Some(d);
                            self.drain(&mut out);
                        }
                    }
                    _ => out.push(Piece::Message(msg.to_vec())),
                }
            }
            Some(d) => {
                if d.push(msg).is_err() {
                    self.partial = None;
                    out.push(Piece::Message(msg.to_vec()));
                } else {
                    self.drain(&mut out);
                }
            }
        }
        out
    }

    fn drain(&mut self, out: &mut Vec<Piece>) {
        let Some(d) = self.partial.as_mut() else {
            return;
        };
        loop {
            match d.next_frame() {
                Ok(Some(p)) => out.push(Piece::Payload(p)),
                Ok(None) => break,
                Err(_) => {
                    self.partial = None;
                    out.push(Piece::Message(Vec::new()));
                    return;
                }
            }
        }
        if d.buffered() == 0 {
            self.partial = None;
        }
    }
}

fn declared_len(msg: &[u8]) -> Option<usize> {
    let head: [u8; HEADER_LEN] = msg.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(head) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::encode;

    #[test]
    fn pieces_cover_the_frame_in_order_and_respect_the_maximum() {
        let f = Bytes::from((0..1000u32).map(|i| i as u8).collect::<Vec<_>>());
        for max in [1, 7, 999, 1000, 5000] {
            let p: Vec<_> = pieces(f.clone(), max).collect();
            assert!(p.iter().all(|x| x.len() <= max));
            assert_eq!(p.concat(), f.to_vec());
        }
        assert_eq!(pieces(Bytes::new(), 10).count(), 1);
    }

    #[test]
    fn a_frame_cut_into_messages_is_reassembled() {
        let big = encode(&vec![b'x'; 10_000]);
        let mut inb = Inbound::new(1 << 20);
        let mut got = Vec::new();
        for p in pieces(Bytes::from(big), 3000) {
            got.extend(inb.push(&p));
        }
        assert_eq!(got, [Piece::Payload(vec![b'x'; 10_000])]);
        // Then ordinary one-frame messages pass as they are.
        let small = encode(b"{}");
        assert_eq!(inb.push(&small), [Piece::Message(small.clone())]);
        // Garbage is handed on as a message to count as a bad frame.
        assert_eq!(inb.push(b"junk"), [Piece::Message(b"junk".to_vec())]);
        // Two frames in one message are both read.
        let two = [encode(b"a"), encode(b"b")].concat();
        assert_eq!(
            inb.push(&two),
            [Piece::Payload(b"a".to_vec()), Piece::Payload(b"b".to_vec())]
        );
    }

    #[test]
    fn random_cuts_never_panic_or_lose_frames() {
        let mut rng = test_support::rng::XorShift(77);
        for _ in 0..200 {
            let frames: Vec<Vec<u8>> = (0..1 + rng.below(4))
                .map(|_| {
                    let n = 1 + rng.below(3000);
                    encode(&rng.bytes(n))
                })
                .collect();
            let stream = frames.concat();
            let mut inb = Inbound::new(1 << 20);
            let mut got = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let n = (1 + rng.below(4000)).min(stream.len() - at);
                got.extend(inb.push(&stream[at..at + n]));
                at += n;
            }
            let payloads: Vec<Vec<u8>> = got
                .into_iter()
                .map(|p| match p {
                    Piece::Message(m) => m[HEADER_LEN..].to_vec(),
                    Piece::Payload(p) => p,
                })
                .collect();
            let want: Vec<Vec<u8>> = frames.iter().map(|f| f[HEADER_LEN..].to_vec()).collect();
            assert_eq!(payloads, want);
        }
    }
}
