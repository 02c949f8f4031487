//! Liveness: what the passing of time does. Heartbeats to welcomed peers,
//! silent peers and mute channels dropped, and the next moment any of that
//! is due, so the I/O layer can sleep until then.

use types::Millis;

use super::{elapsed, ms, Jam};
use crate::protocol::{Action, LeaveReason};

impl Jam {
    /// Time passes: heartbeats fall due, silent peers and mute channels are
    /// dropped. Call it at least every second, or at
    /// [`next_deadline`](Self::next_deadline).
    #[must_use = "the actions must be carried out"]
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        let silence = ms(self.cfg.silence_timeout);
        let hello_timeout = ms(self.cfg.hello_timeout);
        let mut i = 0;
        while i < self.peers.len() {
            let p = &mut self.peers[i];
            if p.info.is_welcomed() {
                if elapsed(now, p.info.last_heard) >= silence {
                    self.remove(i, LeaveReason::Silent, &mut out);
                    continue;
                }
                if now >= p.next_heartbeat {
                    // From now, not from the missed deadline: after a stall
                    // one heartbeat goes out, not a burst.
                    p.next_heartbeat = now.after(self.cfg.heartbeat_every);
                    out.push(Action::Send {
                        peer: p.info.id,
                        bytes: self.heartbeat.clone(),
                    });
                }
            } else if elapsed(now, p.info.opened_at) >= hello_timeout {
                self.remove(i, LeaveReason::HelloTimeout, &mut out);
                continue;
            }
            i += 1;
        }
        out
    }

    /// The earliest time at which [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.peers
            .iter()
            .map(|p| {
                if p.info.is_welcomed() {
                    p.next_heartbeat
                        .min(p.info.last_heard.after(self.cfg.silence_timeout))
                } else {
                    p.info.opened_at.after(self.cfg.hello_timeout)
                }
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::framing::{self, decode, encode, encode_json};
    use crate::protocol::jam::testkit::*;
    use crate::protocol::{Action, ClientKind, LeaveReason, PeerEvent, PeerId};

    #[test]
    fn heartbeats_go_to_every_welcomed_peer_every_10s() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let _ = j.channel_opened(t(0), PeerId(3), ClientKind::Unknown);
        let mut beats = Vec::new();
        for now in (0..=25_000).step_by(500) {
            // Keep them alive so only heartbeats are at stake.
            for id in 1..=2 {
                let _ = j.frame_received(
                    t(now),
                    PeerId(id),
                    &encode_json(&json!({"type": "heartbeat"})),
                );
            }
            for a in j.tick(t(now)) {
                if let Action::Send { peer, bytes } = a {
                    assert_eq!(decode(&bytes, 100).unwrap().kind(), Some("heartbeat"));
                    beats.push((now, peer.0));
                }
            }
        }
        assert_eq!(
            beats,
            [(10_000, 1), (10_000, 2), (20_000, 1), (20_000, 2)],
            "never to a peer still without hello"
        );
    }

    #[test]
    fn a_late_tick_sends_one_heartbeat_not_a_burst() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let _ = j.frame_received(t(25_000), PeerId(1), &encode(framing::PONG));
        assert_eq!(sent_to(&j.tick(t(25_000)), 1).len(), 1);
        assert!(sent_to(&j.tick(t(25_001)), 1).is_empty());
        assert_eq!(sent_to(&j.tick(t(35_000)), 1).len(), 1);
    }

    #[test]
    fn silent_peer_is_dropped_after_30s() {
        let mut j = jam();
        join(&mut j, 0, 1);
        for now in (1000..30_000).step_by(1000) {
            assert!(closes(&j.tick(t(now))).is_empty(), "at {now}");
        }
        assert!(closes(&j.tick(t(29_999))).is_empty());
        let a = j.tick(t(30_000));
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::Silent)]);
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::Left { peer: PeerId(1), machine_id: Some(m), reason: LeaveReason::Silent }]
                if m == "m1"
        ));
        assert_eq!(j.peers().count(), 0);
        assert!(j.tick(t(40_000)).is_empty(), "dropped once");
    }

    #[test]
    fn any_frame_counts_as_life() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let frames = [
            encode_json(&json!({"type": "heartbeat"})),
            encode_json(&json!({"type": "somethingNew"})),
            encode(framing::PONG),
            encode(b"garbage"),
        ];
        let mut now = 0;
        for f in frames.iter().cycle().take(12) {
            now += 25_000;
            let _ = j.frame_received(t(now), PeerId(1), f);
            assert!(closes(&j.tick(t(now + 29_999))).is_empty(), "at {now}");
        }
        assert_eq!(
            closes(&j.tick(t(now + 30_000))),
            [(PeerId(1), LeaveReason::Silent)]
        );
    }

    #[test]
    fn channel_without_hello_is_dropped_after_hello_timeout() {
        let mut j = jam();
        let _ = j.channel_opened(t(1000), PeerId(1), ClientKind::Unknown);
        // Frames other than hello do not extend the wait.
        let _ = j.frame_received(t(5000), PeerId(1), &encode(framing::PING));
        assert!(closes(&j.tick(t(10_999))).is_empty());
        let a = j.tick(t(11_000));
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::HelloTimeout)]);
        assert!(sent_to(&a, 1).is_empty(), "no joinrejected, it never asked");
        assert_eq!(lefts(&a), [(PeerId(1), LeaveReason::HelloTimeout)]);
    }

    #[test]
    fn next_deadline_names_the_next_tick_with_work() {
        let mut j = jam();
        assert_eq!(j.next_deadline(), None);
        let _ = j.channel_opened(t(1000), PeerId(1), ClientKind::Unknown);
        assert_eq!(j.next_deadline(), Some(t(11_000)));
        let _ = j.frame_received(t(2000), PeerId(1), &hello("m1", "A"));
        assert_eq!(j.next_deadline(), Some(t(12_000)));
        let _ = j.tick(t(12_000));
        assert_eq!(j.next_deadline(), Some(t(22_000)));
        let _ = j.tick(t(22_000));
        assert_eq!(j.next_deadline(), Some(t(32_000)), "silence deadline");
    }

    #[test]
    fn time_going_backwards_does_not_panic_or_drop() {
        let mut j = jam();
        join(&mut j, 50_000, 1);
        assert!(closes(&j.tick(t(0))).is_empty());
        let _ = j.frame_received(t(10), PeerId(1), &chat("x"));
        let _ = j.frame_received(t(5), PeerId(1), &chat("y"));
        assert!(j.peer(PeerId(1)).is_some());
    }
}
