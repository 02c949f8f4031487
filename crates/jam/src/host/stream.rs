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

/// The smallest message that may be the first piece of a longer frame.
/// Senders that split fill each piece up to the message size (ours: 64 KiB
/// or the negotiated maximum; 16 KiB is the smallest any WebRTC stack
/// uses), so a shorter message announcing more is simply malformed.
pub const MIN_PIECE: usize = 16 * 1024;

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
                    // Only a full-size piece starts a reassembly: a short
                    // message announcing more is garbage (one bad frame),
                    // and must not swallow the messages after it.
                    Some(len)
                        if msg.len() >= MIN_PIECE
                            && len > msg.len() - HEADER_LEN
                            && len <= self.max_frame =>
                    {
                        let mut d = FrameDecoder::new(self.max_frame);
                        if d.push(msg).is_err() {
                            out.push(Piece::Message(msg.to_vec()));
                        } else {
                            self.partial = Some(d);
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
        let big = encode(&vec![b'x'; 100_000]);
        let mut inb = Inbound::new(1 << 20);
        let mut got = Vec::new();
        for p in pieces(Bytes::from(big), MIN_PIECE) {
            got.extend(inb.push(&p));
        }
        assert_eq!(got, [Piece::Payload(vec![b'x'; 100_000])]);
        // Then ordinary one-frame messages pass as they are.
        let small = encode(b"{}");
        assert_eq!(inb.push(&small), [Piece::Message(small.clone())]);
        // Garbage is handed on as a message to count as a bad frame; a
        // short message announcing more does not swallow the next one.
        assert_eq!(inb.push(b"junk"), [Piece::Message(b"junk".to_vec())]);
        let liar = [&100u32.to_be_bytes()[..], b"0123456789"].concat();
        assert_eq!(inb.push(&liar), [Piece::Message(liar.clone())]);
        assert_eq!(inb.push(&small), [Piece::Message(small.clone())]);
    }

    #[test]
    fn random_frames_split_by_the_writer_come_back_whole() {
        let mut rng = test_support::rng::XorShift(77);
        let mut inb = Inbound::new(1 << 20);
        for _ in 0..100 {
            let n = 1 + rng.below(200_000);
            let f = encode(&rng.bytes(n));
            let max = MIN_PIECE + rng.below(100_000);
            let mut got = Vec::new();
            for p in pieces(Bytes::from(f.clone()), max) {
                got.extend(inb.push(&p));
            }
            let payload = match got.as_slice() {
                [Piece::Message(m)] => m[HEADER_LEN..].to_vec(),
                [Piece::Payload(p)] => p.clone(),
                other => panic!("{} pieces", other.len()),
            };
            assert_eq!(payload, f[HEADER_LEN..]);
        }
    }
}
