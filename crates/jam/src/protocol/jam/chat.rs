//! Chat: a peer's message relayed to everyone else under its real identity,
//! within MidiEditor's size and rate limits, and the host's own chat.

use serde_json::{Map, Value};
use types::Millis;

use super::{elapsed, ms, Jam};
use crate::framing;
use crate::protocol::{Action, ChatDrop, PeerEvent, PeerId};

impl Jam {
    pub(super) fn on_chat(&mut self, now: Millis, i: usize, body: &Value, out: &mut Vec<Action>) {
        let peer = self.peers[i].info.id;
        let dropped = |why| Action::Event(PeerEvent::ChatDropped { peer, why });
        let text = match body.get("text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => t,
            _ => return out.push(dropped(ChatDrop::NoText)),
        };
        if text.len() > self.cfg.chat_max_bytes {
            let (bytes, max) = (text.len(), self.cfg.chat_max_bytes);
            return out.push(dropped(ChatDrop::TooLong { bytes, max }));
        }
        let p = &mut self.peers[i];
        // Only relayed messages start a new interval, so a flooder still gets
        // one message through per interval and no more.
        if p.last_chat
            .is_some_and(|t| elapsed(now, t) < ms(self.cfg.chat_min_interval))
        {
            return out.push(dropped(ChatDrop::TooFast));
        }
        p.last_chat = Some(now);
        let Some(hello) = p.info.hello.as_ref() else {
            return;
        };
        let (machine_id, display_name) = (hello.machine_id.clone(), hello.display_name.clone());
        let timestamp = body.get("timestamp").and_then(Value::as_u64);
        self.relay_chat(
            Some(peer),
            machine_id,
            display_name,
            text.to_owned(),
            timestamp,
            out,
        );
    }

    /// Sends a chat to every welcomed peer but `from`, rebuilt from scratch:
    /// `sender` and `displayName` are the real sender's whatever the frame
    /// claimed, and unknown fields are not carried along.
    fn relay_chat(
        &self,
        from: Option<PeerId>,
        machine_id: String,
        display_name: String,
        text: String,
        timestamp: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        let mut msg = Map::new();
        msg.insert("type".into(), "chat".into());
        msg.insert("sender".into(), machine_id.clone().into());
        msg.insert("displayName".into(), display_name.clone().into());
        msg.insert("text".into(), text.clone().into());
        if let Some(ts) = timestamp {
            msg.insert("timestamp".into(), ts.into());
        }
        let bytes = framing::encode_json(&Value::Object(msg));
        for p in &self.peers {
            if p.info.is_welcomed() && Some(p.info.id) != from {
                out.push(Action::Send {
                    peer: p.info.id,
                    bytes: bytes.clone(),
                });
            }
        }
        out.push(Action::Event(PeerEvent::Chat {
            from,
            machine_id,
            display_name,
            text,
            timestamp,
        }));
    }

    /// The host's own chat, to every welcomed peer, under the host's
    /// identity. Same size limit as peers' chat; no rate limit.
    pub fn host_chat(&mut self, text: &str, timestamp_ms: u64) -> Result<Vec<Action>, ChatDrop> {
        if text.is_empty() {
            return Err(ChatDrop::NoText);
        }
        if text.len() > self.cfg.chat_max_bytes {
            return Err(ChatDrop::TooLong {
                bytes: text.len(),
                max: self.cfg.chat_max_bytes,
            });
        }
        let mut out = Vec::new();
        self.relay_chat(
            None,
            self.cfg.host_machine_id.clone(),
            self.cfg.host_display_name.clone(),
            text.to_owned(),
            Some(timestamp_ms),
            &mut out,
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::framing::encode_json;
    use crate::protocol::jam::testkit::*;
    use crate::protocol::{Action, ChatDrop, ClientKind, PeerEvent, PeerId};

    #[test]
    fn chat_is_relayed_to_everyone_except_the_sender() {
        let mut j = jam();
        for id in 1..=3 {
            join(&mut j, 0, id);
        }
        let _ = j.channel_opened(t(0), PeerId(4), ClientKind::Unknown);
        let a = j.frame_received(t(1), PeerId(2), &chat("hello all"));
        assert!(sent_to(&a, 2).is_empty());
        assert!(sent_to(&a, 4).is_empty(), "not to peers without welcome");
        for id in [1, 3] {
            let f = sent_to(&a, id);
            assert_eq!(kinds(&f), ["chat"]);
            assert_eq!(body(&f[0])["text"], "hello all");
        }
        assert!(events(&a).iter().any(|e| matches!(e,
            PeerEvent::Chat { from: Some(PeerId(2)), text, .. } if text == "hello all")));
    }

    #[test]
    fn relayed_chat_carries_the_real_senders_identity() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let a = j.frame_received(t(1), PeerId(2), &chat("I am the host"));
        let f = sent_to(&a, 1);
        assert_eq!(
            body(&f[0]),
            &json!({
                "type": "chat",
                "sender": "m2",
                "displayName": "P2",
                "text": "I am the host",
                "timestamp": 1_700_000_000_000u64,
            })
        );
    }

    #[test]
    fn relayed_chat_drops_unknown_fields_and_bad_timestamps() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let f =
            encode_json(&json!({"type": "chat", "text": "x", "timestamp": "soon", "evil": [1]}));
        let a = j.frame_received(t(1), PeerId(2), &f);
        assert_eq!(
            body(&sent_to(&a, 1)[0]),
            &json!({"type": "chat", "sender": "m2", "displayName": "P2", "text": "x"})
        );
    }

    #[test]
    fn chat_over_4kb_is_dropped() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        // 4096 bytes of UTF-8 (2048 two-byte characters) is still fine...
        let a = j.frame_received(t(1000), PeerId(2), &chat(&"é".repeat(2048)));
        assert_eq!(kinds(&sent_to(&a, 1)), ["chat"]);
        // ...one byte more is not, even though it is far fewer than 4096
        // characters.
        let text = format!("{}x", "é".repeat(2048));
        let a = j.frame_received(t(2000), PeerId(2), &chat(&text));
        assert!(sent_to(&a, 1).is_empty());
        assert_eq!(
            events(&a),
            [&PeerEvent::ChatDropped {
                peer: PeerId(2),
                why: ChatDrop::TooLong {
                    bytes: 4097,
                    max: 4096
                }
            }]
        );
        assert!(
            j.peer(PeerId(2)).is_some(),
            "an oversized chat does not drop the peer"
        );
    }

    #[test]
    fn more_than_one_chat_per_200ms_per_sender_is_dropped() {
        let mut j = jam();
        for id in 1..=3 {
            join(&mut j, 0, id);
        }
        let relayed = |a: &[Action]| !sent_to(a, 1).is_empty();
        assert!(relayed(&j.frame_received(t(1000), PeerId(2), &chat("a"))));
        let a = j.frame_received(t(1199), PeerId(2), &chat("b"));
        assert!(!relayed(&a));
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::ChatDropped {
                why: ChatDrop::TooFast,
                ..
            }]
        ));
        // Another sender has its own budget.
        assert!(!sent_to(&j.frame_received(t(1199), PeerId(3), &chat("c")), 2).is_empty());
        // The interval runs from the last relayed message.
        assert!(relayed(&j.frame_received(t(1200), PeerId(2), &chat("d"))));
        // A flood every 100 ms gets every other message through.
        let through = (13..=22)
            .filter(|k| relayed(&j.frame_received(t(k * 100), PeerId(2), &chat("f"))))
            .count();
        assert_eq!(through, 5);
    }

    #[test]
    fn chat_without_text_is_dropped() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        for f in [
            json!({"type": "chat"}),
            json!({"type": "chat", "text": ""}),
            json!({"type": "chat", "text": 5}),
        ] {
            let a = j.frame_received(t(1), PeerId(2), &encode_json(&f));
            assert!(matches!(
                events(&a)[..],
                [PeerEvent::ChatDropped {
                    why: ChatDrop::NoText,
                    ..
                }]
            ));
        }
    }

    #[test]
    fn host_chat_goes_to_every_welcomed_peer_as_the_host() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let _ = j.channel_opened(t(0), PeerId(3), ClientKind::Unknown);
        let a = j.host_chat("welcome!", 1234).unwrap();
        for id in [1, 2] {
            assert_eq!(
                body(&sent_to(&a, id)[0]),
                &json!({"type": "chat", "sender": HOST, "displayName": "Hosty", "text": "welcome!", "timestamp": 1234})
            );
        }
        assert!(sent_to(&a, 3).is_empty());
        assert!(matches!(
            events(&a)[..],
            [PeerEvent::Chat { from: None, .. }]
        ));
        // No rate limit for the host, but the same size limit.
        assert!(j.host_chat("again", 1235).is_ok());
        assert_eq!(j.host_chat("", 0), Err(ChatDrop::NoText));
        assert!(matches!(
            j.host_chat(&"x".repeat(4097), 0),
            Err(ChatDrop::TooLong { .. })
        ));
    }
}
