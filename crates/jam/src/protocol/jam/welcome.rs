//! Admission: a joiner's `hello` answered with `sessionWelcome` (always its
//! first frame from us), the ghost of a returning machine closed, and a full
//! jam or an unusable `hello` refused with `joinrejected`.

use serde_json::{json, Value};
use types::Millis;

use super::Jam;
use crate::framing;
use crate::protocol::{Action, Hello, LeaveReason, PeerEvent};

impl Jam {
    pub(super) fn on_hello(&mut self, now: Millis, i: usize, body: &Value, out: &mut Vec<Action>) {
        let peer = self.peers[i].info.id;
        let hello = match Hello::from_json(body) {
            Ok(h) => h,
            Err(why) => return self.reject(i, LeaveReason::BadHello { why }, out),
        };
        if hello.machine_id == self.cfg.host_machine_id {
            // It would be attributed the host's chat and presenter role.
            let why = "machineId is the host's".to_owned();
            return self.reject(i, LeaveReason::BadHello { why }, out);
        }
        // The old connection of a returning machine is a ghost: it will never
        // speak again, and keeping it would hold a slot for 30 s.
        if let Some(g) = self.peers.iter().position(|p| {
            p.info.id != peer && p.info.machine_id() == Some(hello.machine_id.as_str())
        }) {
            self.remove(g, LeaveReason::Ghost, out);
        }
        let Some(i) = self.index(peer) else {
            return;
        };
        if self.welcomed_count() >= self.cfg.max_peers {
            let max = self.cfg.max_peers;
            return self.reject(i, LeaveReason::Full { max }, out);
        }
        let mut welcome = json!({
            "type": "sessionWelcome",
            "mode": self.cfg.mode.as_str(),
            "presenterMachineId": self.cfg.host_machine_id,
        });
        // MidiEditor compares `appVersion` with its own release string and
        // warns "Host is on vX" on any difference; our version numbers are
        // not MidiEditor's. We speak the protocol of the version the joiner
        // says it runs, so we answer with that version; a joiner that sent
        // none (our own, a browser) gets ours. Without the field MidiEditor
        // would log the host as "<unknown>".
        welcome["appVersion"] = json!(hello
            .app_version
            .clone()
            .unwrap_or_else(|| self.cfg.app_version.clone()));
        out.push(Action::Send {
            peer,
            bytes: framing::encode_json(&welcome),
        });
        let p = &mut self.peers[i];
        p.info.hello = Some(hello.clone());
        p.info.welcomed_at = Some(now);
        p.next_heartbeat = now.after(self.cfg.heartbeat_every);
        out.push(Action::Event(PeerEvent::Joined {
            peer,
            hello,
            hint: p.info.hint,
        }));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::framing::encode_json;
    use crate::protocol::jam::testkit::*;
    use crate::protocol::{
        Action, ClientKind, Jam, JamConfig, LeaveReason, PeerEvent, PeerId, SessionMode,
        DEFAULT_DISPLAY_NAME, MAX_ID_BYTES, MAX_NAME_CHARS,
    };

    #[test]
    fn first_frame_after_hello_is_session_welcome() {
        let mut j = jam();
        let a = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        assert!(sent_to(&a, 1).is_empty(), "nothing is sent before hello");
        let a = j.frame_received(t(5), PeerId(1), &hello("m1", "Bob"));
        let frames = sent_to(&a, 1);
        assert_eq!(kinds(&frames), ["sessionWelcome"]);
        assert_eq!(
            body(&frames[0]),
            &json!({
                "type": "sessionWelcome",
                "mode": "edit",
                "presenterMachineId": HOST,
                "appVersion": "2.0.1",
            })
        );
        // A joiner that names no version gets ours.
        let _ = j.channel_opened(t(6), PeerId(2), ClientKind::Unknown);
        let a2 = j.frame_received(
            t(6),
            PeerId(2),
            &encode_json(&json!({"type": "hello", "machineId": "m2"})),
        );
        assert_eq!(body(&sent_to(&a2, 2)[0])["appVersion"], "0.1.0");
        // The Send comes before the Joined event, so an I/O layer that sends
        // other frames on Joined cannot get ahead of the welcome.
        assert!(matches!(a[0], Action::Send { .. }));
        assert!(matches!(
            &a[1],
            Action::Event(PeerEvent::Joined { peer: PeerId(1), hello, hint: ClientKind::Unknown })
                if hello.machine_id == "m1" && hello.display_name == "Bob"
                    && hello.app_version.as_deref() == Some("2.0.1") && hello.has_history
        ));
        assert_eq!(j.welcomed_count(), 2);
        assert_eq!(j.peer(PeerId(1)).unwrap().welcomed_at, Some(t(5)));
    }

    #[test]
    fn welcome_announces_show_mode_when_configured() {
        let mut j = Jam::new(JamConfig {
            mode: SessionMode::Show,
            ..cfg()
        });
        let a = join(&mut j, 0, 1);
        assert_eq!(body(&sent_to(&a, 1)[0])["mode"], "show");
    }

    #[test]
    fn welcome_is_sent_as_compact_prefixed_json() {
        let mut j = jam();
        let a = join(&mut j, 0, 1);
        let Some(Action::Send { bytes, .. }) = a.iter().find(|x| matches!(x, Action::Send { .. }))
        else {
            panic!("{a:?}")
        };
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        assert!(!bytes[4..].contains(&b' ') && !bytes[4..].contains(&b'\n'));
    }

    #[test]
    fn second_hello_with_same_machine_id_closes_the_ghost() {
        let mut j = jam();
        join(&mut j, 0, 1);
        join(&mut j, 0, 2);
        let _ = j.channel_opened(t(100), PeerId(3), ClientKind::Unknown);
        let a = j.frame_received(t(100), PeerId(3), &hello("m1", "Bob again"));
        assert_eq!(closes(&a), [(PeerId(1), LeaveReason::Ghost)]);
        assert!(sent_to(&a, 1).is_empty(), "the ghost is just closed");
        assert_eq!(kinds(&sent_to(&a, 3)), ["sessionWelcome"]);
        // The ghost goes before the new one joins.
        let ev = events(&a);
        assert!(matches!(
            ev[0],
            PeerEvent::Left {
                peer: PeerId(1),
                reason: LeaveReason::Ghost,
                ..
            }
        ));
        assert!(matches!(
            ev[1],
            PeerEvent::Joined {
                peer: PeerId(3),
                ..
            }
        ));
        let ids: Vec<_> = j.peers().map(|p| p.id.0).collect();
        assert_eq!(ids, [2, 3]);
        // The ghost's late frames and close are ignored.
        assert!(j.frame_received(t(200), PeerId(1), &chat("boo")).is_empty());
        assert!(j.channel_closed(t(200), PeerId(1)).is_empty());
    }

    #[test]
    fn a_returning_machine_replaces_its_ghost_even_when_the_jam_is_full() {
        let mut j = jam();
        for id in 1..=8 {
            join(&mut j, 0, id);
        }
        let _ = j.channel_opened(t(1), PeerId(9), ClientKind::Unknown);
        let a = j.frame_received(t(1), PeerId(9), &hello("m4", "P4"));
        assert_eq!(closes(&a), [(PeerId(4), LeaveReason::Ghost)]);
        assert_eq!(kinds(&sent_to(&a, 9)), ["sessionWelcome"]);
        assert_eq!(j.welcomed_count(), 8);
    }

    #[test]
    fn ninth_peer_gets_joinrejected_then_close() {
        let mut j = jam();
        for id in 1..=8 {
            assert_eq!(
                kinds(&sent_to(&join(&mut j, 0, id), id)),
                ["sessionWelcome"]
            );
        }
        let a = join(&mut j, 1, 9);
        let frames = sent_to(&a, 9);
        assert_eq!(kinds(&frames), ["joinrejected"]);
        assert_eq!(body(&frames[0])["reason"], "the jam is full (8 players)");
        let send_at = a
            .iter()
            .position(|x| matches!(x, Action::Send { .. }))
            .unwrap();
        let close_at = a
            .iter()
            .position(|x| matches!(x, Action::Close { .. }))
            .unwrap();
        assert!(send_at < close_at, "joinrejected goes out before the close");
        assert_eq!(closes(&a), [(PeerId(9), LeaveReason::Full { max: 8 })]);
        assert!(j.peer(PeerId(9)).is_none());
        // A slot freed by a leaver is available again.
        let _ = j.channel_closed(t(2), PeerId(3));
        assert_eq!(
            kinds(&sent_to(&join(&mut j, 3, 10), 10)),
            ["sessionWelcome"]
        );
    }

    #[test]
    fn max_peers_is_configurable() {
        let mut j = Jam::new(JamConfig {
            max_peers: 1,
            ..cfg()
        });
        join(&mut j, 0, 1);
        assert_eq!(
            closes(&join(&mut j, 0, 2)),
            [(PeerId(2), LeaveReason::Full { max: 1 })]
        );
    }

    #[test]
    fn hello_without_a_usable_machine_id_is_rejected() {
        for bad in [
            json!({"type": "hello", "displayName": "x"}),
            json!({"type": "hello", "machineId": ""}),
            json!({"type": "hello", "machineId": "   "}),
            json!({"type": "hello", "machineId": 7}),
            json!({"type": "hello", "machineId": "a\u{7}b"}),
            json!({"type": "hello", "machineId": "x".repeat(MAX_ID_BYTES + 1)}),
        ] {
            let mut j = jam();
            let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
            let a = j.frame_received(t(0), PeerId(1), &encode_json(&bad));
            assert_eq!(kinds(&sent_to(&a, 1)), ["joinrejected"], "{bad}");
            assert!(matches!(
                &closes(&a)[..],
                [(PeerId(1), LeaveReason::BadHello { .. })]
            ));
        }
    }

    #[test]
    fn hello_with_the_hosts_machine_id_is_rejected() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        let a = j.frame_received(t(0), PeerId(1), &hello(HOST, "Impostor"));
        assert_eq!(kinds(&sent_to(&a, 1)), ["joinrejected"]);
        assert_eq!(j.welcomed_count(), 0);
    }

    #[test]
    fn hello_strings_are_sanitised_and_bounded() {
        let mut j = jam();
        let _ = j.channel_opened(t(0), PeerId(1), ClientKind::Browser);
        let long = "é".repeat(1000);
        let f = encode_json(&json!({
            "type": "hello", "machineId": " m1 ", "displayName": format!("  Bo\u{0}b\n{long}"),
            "appVersion": 3, "client": "midi-jam-web/0.1",
        }));
        let a = j.frame_received(t(0), PeerId(1), &f);
        let Some(PeerEvent::Joined { hello, hint, .. }) = events(&a).into_iter().next() else {
            panic!("{a:?}")
        };
        assert_eq!(*hint, ClientKind::Browser);
        assert_eq!(hello.machine_id, "m1");
        assert!(hello.display_name.starts_with("Bob"));
        assert_eq!(hello.display_name.chars().count(), MAX_NAME_CHARS - 2);
        assert_eq!(hello.app_version, None);
        assert_eq!(hello.client.as_deref(), Some("midi-jam-web/0.1"));
        assert!(!hello.has_history);

        let f = encode_json(&json!({"type": "hello", "machineId": "m2", "displayName": "\n "}));
        let _ = j.channel_opened(t(0), PeerId(2), ClientKind::Unknown);
        let a = j.frame_received(t(0), PeerId(2), &f);
        assert!(
            matches!(events(&a)[0], PeerEvent::Joined { hello, .. } if hello.display_name == DEFAULT_DISPLAY_NAME)
        );
    }

    #[test]
    fn a_second_hello_on_a_welcomed_connection_changes_nothing() {
        let mut j = jam();
        join(&mut j, 0, 1);
        let a = j.frame_received(t(1), PeerId(1), &hello("other", "Eve"));
        assert!(a.is_empty());
        assert_eq!(j.peer(PeerId(1)).unwrap().machine_id(), Some("m1"));
    }
}
