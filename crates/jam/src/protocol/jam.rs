//! The state machine, [`Jam`]: the peer table, channels opening and closing,
//! frames decoded and dispatched, kicks and broadcasts, and the two ways a
//! peer is removed. The rules with the most detail live in child modules,
//! which see the table's private parts: `welcome` (a `hello` answered with
//! `sessionWelcome`, a ghost replaced, a full jam refused), `chat` (relay and
//! limits) and `liveness` (heartbeats, silence and hello timeouts).

use std::time::Duration;

use serde_json::{json, Value};
use types::Millis;

use super::hello::{clean, MAX_REASON_CHARS};
use super::{Action, ClientKind, JamConfig, LeaveReason, PeerEvent, PeerId, PeerInfo};
use crate::framing::{self, Frame, FrameError};

mod chat;
mod liveness;
#[cfg(test)]
mod testkit;
mod welcome;

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    next_heartbeat: Millis,
    bad_in_row: u32,
    last_chat: Option<Millis>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Time from `since` to `now`, zero if the caller's clock went backwards.
fn elapsed(now: Millis, since: Millis) -> u64 {
    now.0.saturating_sub(since.0)
}

/// The host's jam: every connected peer and the rules listed in
/// [`crate::protocol`].
#[derive(Debug)]
pub struct Jam {
    cfg: JamConfig,
    /// In opening order; small (at most `max_peers + max_pending`), so a
    /// linear search beats a map and keeps output deterministic.
    peers: Vec<Peer>,
    heartbeat: Vec<u8>,
}

impl Jam {
    pub fn new(cfg: JamConfig) -> Self {
        Jam {
            cfg,
            peers: Vec::new(),
            heartbeat: framing::encode_json(&json!({"type": "heartbeat"})),
        }
    }

    pub fn config(&self) -> &JamConfig {
        &self.cfg
    }

    /// Changes the peer limits from now on, for a host whose settings
    /// changed while peers are in. Peers already welcomed (or pending) stay
    /// even above a lowered limit; the next `hello` is checked against it.
    pub fn set_limits(&mut self, max_peers: usize, max_pending: usize) {
        self.cfg.max_peers = max_peers;
        self.cfg.max_pending = max_pending;
    }

    /// Every known peer, welcomed or not, in opening order.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.iter().map(|p| &p.info)
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.iter().find(|p| p.info.id == id).map(|p| &p.info)
    }

    pub fn welcomed_count(&self) -> usize {
        self.peers.iter().filter(|p| p.info.is_welcomed()).count()
    }

    fn pending_count(&self) -> usize {
        self.peers.len() - self.welcomed_count()
    }

    fn index(&self, id: PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p.info.id == id)
    }

    /// A channel opened. It must say `hello` within `hello_timeout`. An id
    /// already known is ignored (the I/O layer reported it twice).
    #[must_use = "the actions must be carried out"]
    pub fn channel_opened(&mut self, now: Millis, peer: PeerId, hint: ClientKind) -> Vec<Action> {
        if self.index(peer).is_some() {
            return Vec::new();
        }
        if self.pending_count() >= self.cfg.max_pending {
            let reason = LeaveReason::TooManyPending;
            return vec![
                Action::Close {
                    peer,
                    reason: reason.clone(),
                },
                Action::Event(PeerEvent::Left {
                    peer,
                    machine_id: None,
                    reason,
                }),
            ];
        }
        self.peers.push(Peer {
            info: PeerInfo {
                id: peer,
                hint,
                hello: None,
                opened_at: now,
                welcomed_at: None,
                last_heard: now,
            },
            next_heartbeat: now,
            bad_in_row: 0,
            last_chat: None,
        });
        vec![Action::Event(PeerEvent::Opened { peer, hint })]
    }

    /// One WebRTC message from `peer`, which must be exactly one frame.
    /// Frames from unknown (already closed) peers are ignored.
    #[must_use = "the actions must be carried out"]
    pub fn frame_received(&mut self, now: Millis, peer: PeerId, msg: &[u8]) -> Vec<Action> {
        let frame =
            framing::decode_message(msg, self.cfg.max_frame).and_then(framing::parse_payload);
        self.received(now, peer, frame)
    }

    /// One already delimited payload from `peer`: what a stream reader gets
    /// from [`framing::FrameDecoder`]. A decoder error, by contrast, means
    /// the stream cannot be delimited any more: close it
    /// ([`kick`](Self::kick) or [`channel_closed`](Self::channel_closed)).
    #[must_use = "the actions must be carried out"]
    pub fn payload_received(&mut self, now: Millis, peer: PeerId, payload: &[u8]) -> Vec<Action> {
        let frame = framing::parse_payload(payload);
        self.received(now, peer, frame)
    }

    fn received(
        &mut self,
        now: Millis,
        peer: PeerId,
        frame: Result<Frame, FrameError>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(i) = self.index(peer) else {
            return out;
        };
        // Any frame is a sign of life, as with MidiEditor's host; garbage
        // cannot keep a peer forever because too much of it drops the peer.
        let p = &mut self.peers[i];
        p.info.last_heard = p.info.last_heard.max(now);
        match frame {
            Err(error) => {
                p.bad_in_row = p.bad_in_row.saturating_add(1);
                let in_row = p.bad_in_row;
                out.push(Action::Event(PeerEvent::BadFrame {
                    peer,
                    error,
                    in_row,
                }));
                if in_row >= self.cfg.max_bad_frames {
                    self.remove(i, LeaveReason::Garbage, &mut out);
                }
            }
            Ok(frame) => {
                p.bad_in_row = 0;
                self.handle(now, i, frame, &mut out);
            }
        }
        out
    }

    fn handle(&mut self, now: Millis, i: usize, frame: Frame, out: &mut Vec<Action>) {
        let peer = self.peers[i].info.id;
        let welcomed = self.peers[i].info.is_welcomed();
        match frame {
            Frame::Ping => out.push(Action::Send {
                peer,
                bytes: framing::encode(framing::PONG),
            }),
            Frame::Pong => {}
            // Before its hello a peer may only say hello: the welcome must be
            // the first thing it hears from us, and it has no identity yet.
            Frame::Json { kind, body } if !welcomed => {
                if kind == "hello" {
                    self.on_hello(now, i, &body, out);
                }
            }
            Frame::Json { kind, body } => match kind.as_str() {
                // A repeated hello on a welcomed connection changes nothing;
                // identity is fixed at welcome.
                "hello" | "heartbeat" => {}
                "chat" => self.on_chat(now, i, &body, out),
                _ => out.push(Action::Event(PeerEvent::Other { peer, kind, body })),
            },
        }
    }

    /// Sends `value` (a frame such as `playback`) to every welcomed peer.
    /// Never to peers still waiting for their welcome. The caller keeps it
    /// within what the transport carries.
    #[must_use = "the actions must be carried out"]
    pub fn broadcast(&self, value: &Value) -> Vec<Action> {
        let bytes = framing::encode_json(value);
        self.peers
            .iter()
            .filter(|p| p.info.is_welcomed())
            .map(|p| Action::Send {
                peer: p.info.id,
                bytes: bytes.clone(),
            })
            .collect()
    }

    /// The transport closed. Unknown peers (already dropped by us) are
    /// ignored, so each peer leaves exactly once.
    #[must_use = "the actions must be carried out"]
    pub fn channel_closed(&mut self, _now: Millis, peer: PeerId) -> Vec<Action> {
        let Some(i) = self.index(peer) else {
            return Vec::new();
        };
        let p = self.peers.remove(i);
        vec![Action::Event(PeerEvent::Left {
            peer,
            machine_id: p.info.machine_id().map(str::to_owned),
            reason: LeaveReason::Closed,
        })]
    }

    /// The host removes a peer. One not yet welcomed is refused with
    /// `joinrejected` first, which MidiEditor shows; a welcomed one is just
    /// closed, because `joinrejected` answers a `hello` and nothing else.
    #[must_use = "the actions must be carried out"]
    pub fn kick(&mut self, _now: Millis, peer: PeerId, reason: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(i) = self.index(peer) {
            let reason = LeaveReason::Kicked {
                reason: clean(reason, MAX_REASON_CHARS),
            };
            if self.peers[i].info.is_welcomed() {
                self.remove(i, reason, &mut out);
            } else {
                self.reject(i, reason, &mut out);
            }
        }
        out
    }

    /// Sends `joinrejected` then closes.
    fn reject(&mut self, i: usize, reason: LeaveReason, out: &mut Vec<Action>) {
        let msg = json!({"type": "joinrejected", "reason": reason.to_string()});
        out.push(Action::Send {
            peer: self.peers[i].info.id,
            bytes: framing::encode_json(&msg),
        });
        self.remove(i, reason, out);
    }

    /// Forgets peer `i`, closing its channel.
    fn remove(&mut self, i: usize, reason: LeaveReason, out: &mut Vec<Action>) {
        let p = self.peers.remove(i);
        let peer = p.info.id;
        out.push(Action::Close {
            peer,
            reason: reason.clone(),
        });
        out.push(Action::Event(PeerEvent::Left {
            peer,
            machine_id: p.info.machine_id().map(str::to_owned),
            reason,
        }));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::framing::{self, decode, encode, encode_json, Frame, FrameError};
    use crate::protocol::jam::testkit::*;
    use crate::protocol::{Action, ClientKind, Jam, JamConfig, LeaveReason, PeerEvent, PeerId};
    use test_support::rng::XorShift;

    #[test]
    fn frames_before_hello_are_ignored() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        for f in [
            json!({"type": "chat", "text": "hi"}),
            json!({"type": "heartbeat"}),
            json!({"type": "playback", "action": "start"}),
        ] {
            assert!(j
                .frame_received(t(1), PeerId(1), &encode_json(&f))
                .is_empty());
        }
        // And the welcome is still its first frame once it says hello.
        let a = j.frame_received(t(2), PeerId(1), &hello("m1", "Bob"));
        assert_eq!(kinds(&sent_to(&a, 1)), ["sessionWelcome"]);
    }

    #[test]
    fn raw_ping_is_answered_with_a_framed_raw_pong_before_and_after_hello() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        let a = j.frame_received(t(1), PeerId(1), &encode(framing::PING));
        assert_eq!(
            a,
            vec![Action::Send {
                peer: PeerId(1),
                bytes: encode(b"midieditor-pong")
            }]
        );
        assert!(j.peer(PeerId(1)).is_some_and(|p| !p.is_welcomed()));
        join(&mut j, 2, 2);
        let a = j.frame_received(t(3), PeerId(2), &encode(framing::PING));
        assert_eq!(sent_to(&a, 2), vec![Frame::Pong]);
        // A pong from a peer is only a sign of life.
        assert!(j
            .frame_received(t(4), PeerId(2), &encode(framing::PONG))
            .is_empty());
    }

    #[test]
    fn one_bad_frame_never_kills_a_peer() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let bad: [&[u8]; 5] = [
            &[0, 0],
            &[0, 0, 0, 9, b'x'],
            &encode(b"not json"),
            &encode(b"[1]"),
            &encode(br#"{"no":"type"}"#),
        ];
        for (k, f) in bad.iter().enumerate() {
            let a = j.frame_received(t(k as u64), PeerId(1), f);
            assert!(closes(&a).is_empty());
            assert!(
                matches!(events(&a)[..], [PeerEvent::BadFrame { in_row, .. }] if *in_row == k as u32 + 1)
            );
        }
        assert!(j.peer(PeerId(1)).is_some());
    }

    #[test]
    fn unprefixed_json_is_a_bad_frame() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let a = j.frame_received(t(1), PeerId(1), br#"{"type":"chat","text":"hi"}"#);
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::BadFrame {
                error: FrameError::TooLarge { .. },
                ..
            }]
        ));
    }

    #[test]
    fn twenty_bad_frames_in_a_row_drop_the_peer() {
        let mut j = jam();
        join(&mut j, 0, 1);
        for k in 1..20 {
            assert!(closes(&j.frame_received(t(k), PeerId(1), b"junk")).is_empty());
        }
        let a = j.frame_received(t(20), PeerId(1), b"junk");
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::Garbage)]);
        assert!(j.peer(PeerId(1)).is_none());
    }

    #[test]
    fn a_good_frame_resets_the_bad_frame_count() {
        let mut j = jam();
        join(&mut j, 0, 1);
        for round in 0..5 {
            for k in 0..19 {
                let _ = j.frame_received(t(round * 100 + k), PeerId(1), b"junk");
            }
            let _ = j.frame_received(
                t(round * 100 + 50),
                PeerId(1),
                &encode_json(&json!({"type": "heartbeat"})),
            );
        }
        assert!(j.peer(PeerId(1)).is_some());
    }

    #[test]
    fn garbage_before_hello_counts_too() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        let mut a = Vec::new();
        for k in 0..20 {
            a = j.frame_received(t(k), PeerId(1), b"junk");
        }
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::Garbage)]);
    }

    #[test]
    fn unknown_types_are_handed_up_and_otherwise_ignored() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let f = json!({"type": "playback", "action": "start", "tickPosition": 0});
        let a = j.frame_received(t(1), PeerId(1), &encode_json(&f));
        assert_eq!(
            a,
            vec![Action::Event(PeerEvent::Other {
                peer: PeerId(1),
                kind: "playback".into(),
                body: f
            })]
        );
        assert!(j
            .frame_received(t(1), PeerId(1), &encode_json(&json!({"type": "heartbeat"})))
            .is_empty());
    }

    #[test]
    fn inbound_frames_over_the_limit_are_bad_frames() {
        let mut j = Jam::new(JamConfig {
            max_frame: 16,
            ..cfg()
        });
        join(&mut j, 0, 1);
        let a = j.frame_received(
            t(1),
            PeerId(1),
            &encode_json(&json!({"type": "x", "pad": "0123456789"})),
        );
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::BadFrame {
                error: FrameError::TooLarge { .. },
                ..
            }]
        ));
    }

    #[test]
    fn payload_received_serves_stream_transports() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::MidiEditor);
        let mut d = framing::FrameDecoder::new(1024);
        d.push(&hello("m1", "Tcp")).unwrap();
        let p = d.next_frame().unwrap().unwrap();
        let a = j.payload_received(t(0), PeerId(1), &p);
        assert_eq!(kinds(&sent_to(&a, 1)), ["sessionWelcome"]);
    }

    #[test]
    fn channel_closed_reports_left_exactly_once() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let a = j.channel_closed(t(1), PeerId(1));
        assert!(closes(&a).is_empty(), "already closed");
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::Left { peer: PeerId(1), machine_id: Some(m), reason: LeaveReason::Closed }] if m == "m1"
        ));
        assert!(j.channel_closed(t(2), PeerId(1)).is_empty());
        assert!(j.frame_received(t(2), PeerId(1), &chat("late")).is_empty());
        assert!(j.tick(t(100_000)).is_empty());
    }

    #[test]
    fn kick_closes_a_welcomed_peer_and_refuses_a_pending_one() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let _ = j.channel_opened(t(0), PeerId(2), ClientKind::Unknown);
        let a = j.kick(t(1), PeerId(1), "bye");
        assert!(sent_to(&a, 1).is_empty());
        assert_eq!(
            closes(&a),
            [(
                PeerId(1),
                LeaveReason::Kicked {
                    reason: "bye".into()
                }
            )]
        );
        let a = j.kick(t(1), PeerId(2), "not now");
        let f = sent_to(&a, 2);
        assert_eq!(kinds(&f), ["joinrejected"]);
        assert_eq!(body(&f[0])["reason"], "removed by the host: not now");
        assert_eq!(closes(&a).len(), 1);
        assert!(j.kick(t(2), PeerId(1), "again").is_empty());
    }

    #[test]
    fn channels_waiting_for_hello_are_bounded() {
        let mut j = jam();
        for id in 1..=4 {
            assert!(closes(&j.channel_opened(t(0), PeerId(id), ClientKind::Unknown)).is_empty());
        }
        let a = j.channel_opened(t(0), PeerId(5), ClientKind::Unknown);
        assert_eq!(closes(&a), [(PeerId(5), LeaveReason::TooManyPending)]);
        assert_eq!(lefts(&a), [(PeerId(5), LeaveReason::TooManyPending)]);
        // Once one says hello, there is room again.
        let _ = j.frame_received(t(1), PeerId(1), &hello("m1", "A"));
        assert!(closes(&j.channel_opened(t(1), PeerId(5), ClientKind::Unknown)).is_empty());
    }

    #[test]
    fn a_duplicate_channel_opened_is_ignored() {
        let mut j = jam();
        join(&mut j, 0, 1);
        assert!(j
            .channel_opened(t(5), PeerId(1), ClientKind::Browser)
            .is_empty());
        assert!(j.peer(PeerId(1)).unwrap().is_welcomed());
    }

    #[test]
    fn broadcast_reaches_welcomed_peers_only() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let _ = j.channel_opened(t(0), PeerId(2), ClientKind::Unknown);
        let a = j.broadcast(&json!({"type": "playback", "action": "stop"}));
        assert_eq!(kinds(&sent_to(&a, 1)), ["playback"]);
        assert!(sent_to(&a, 2).is_empty());
    }

    #[test]
    fn random_traffic_never_panics_and_keeps_every_rule() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let mut j = Jam::new(JamConfig {
            max_peers: 3,
            max_pending: 2,
            ..cfg()
        });
        let mut now = 0u64;
        // Per peer id: whether the welcome has been sent on its current
        // channel, and whether it was closed by us.
        let mut welcomed = std::collections::HashSet::new();
        for step in 0..20_000 {
            now += rng.below(3000) as u64;
            let peer = PeerId(rng.below(8) as u64);
            let actions = match rng.below(10) {
                0 => j.channel_opened(t(now), peer, ClientKind::Unknown),
                1 => j.channel_closed(t(now), peer),
                2 => j.tick(t(now)),
                3 => j.kick(t(now), peer, "x"),
                4 => j.frame_received(t(now), peer, &hello(&format!("m{}", rng.below(5)), "N")),
                5 => j.frame_received(t(now), peer, &chat("hi")),
                6 => j.frame_received(t(now), peer, &encode(framing::PING)),
                7 => {
                    let n = rng.below(40);
                    let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                    j.frame_received(t(now), peer, &junk)
                }
                8 => j.host_chat("host", now).unwrap_or_default(),
                _ => {
                    let f = json!({"type": "hello", "machineId": rng.next_u64() % 3});
                    j.frame_received(t(now), peer, &encode_json(&f))
                }
            };
            for a in &actions {
                match a {
                    Action::Send { peer, bytes } => {
                        let f = decode(bytes, usize::MAX).expect("valid frame");
                        if !welcomed.contains(peer) {
                            assert!(
                                matches!(f.kind(), Some("sessionWelcome" | "joinrejected") | None),
                                "step {step}: {f:?} before welcome to {peer}"
                            );
                            if f.kind() == Some("sessionWelcome") {
                                welcomed.insert(*peer);
                            }
                        }
                    }
                    Action::Close { peer, .. } => {
                        welcomed.remove(peer);
                    }
                    Action::Event(PeerEvent::Left { peer, .. }) => {
                        welcomed.remove(peer);
                    }
                    Action::Event(_) => {}
                }
            }
            assert!(j.welcomed_count() <= 3);
            assert!(j.peers().count() <= 5);
            let mids: Vec<_> = j.peers().filter_map(|p| p.machine_id()).collect();
            let mut dedup = mids.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(mids.len(), dedup.len(), "one connection per machine");
        }
    }
}
