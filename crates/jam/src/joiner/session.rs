//! The joiner's side of MidiEditor's peer protocol, as a state machine with
//! explicit time and no I/O (the host's side is [`crate::protocol`]).
//!
//! The engine hands it every message of the `midieditor` channel and a tick
//! now and then; it answers with [`Out`]s: bytes to send, and what happened.
//! The rules, from MidiEditor's joiner and `PEER-PROTOCOL.md`:
//!
//! - on open the joiner says `hello` (MidiEditor's fields, plus our `client`
//!   so that our host lists us as this app);
//! - the host's first frame should be `sessionWelcome`. `joinrejected` means
//!   refused (a full jam). Anything else first is what an older MidiEditor
//!   host does: MidiEditor shows a note and stays, and so do we
//!   ([`Out::Welcomed`] with `legacy`);
//! - no welcome within `welcome_timeout` (the host's own hello timeout is
//!   10 s) means the host is not speaking the protocol;
//! - `heartbeat` every 10 s; 30 s without any message from the host means it
//!   is gone (MidiEditor's joiner never checks this and waits for its
//!   transport to notice; a silent host is as good as gone for a jam);
//! - a raw `midieditor-ping` is answered with `midieditor-pong`;
//! - `sessionEnded` is the host ending the jam;
//! - the roster frames ([`crate::roster`]) keep the peer list.
//!
//! Nothing from the network can make it panic or grow without bound: frames
//! are checked by [`framing`], strings are capped, the peer list holds at
//! most [`MAX_ROSTER`] entries.

use std::time::Duration;

use serde_json::{json, Value};
use types::Millis;

use crate::framing::{self, Frame, FrameError};
use crate::protocol::{MAX_ID_BYTES, MAX_NAME_CHARS};
use crate::registry::CLIENT_APP;
use crate::roster::{self, RosterHost, RosterPeer, RosterUpdate, MAX_ROSTER};

/// What the joiner says it is, in `hello`'s `client` field.
pub fn client_id() -> String {
    format!("{CLIENT_APP}/{}", env!("CARGO_PKG_VERSION"))
}

#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub heartbeat_every: Duration,
    pub silence_timeout: Duration,
    pub welcome_timeout: Duration,
    /// Largest inbound frame payload (MidiEditor's own limit is 32 MiB).
    pub max_frame: usize,
}

/// What the host said in its welcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Welcome {
    pub mode: Option<String>,
    pub presenter: Option<String>,
    pub app_version: Option<String>,
    /// The type of the host's first frame when it was not a welcome.
    pub legacy: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Out {
    /// Send these bytes (one framed message) on the `midieditor` channel.
    Send(Vec<u8>),
    Welcomed(Welcome),
    /// `joinrejected`, with the host's reason.
    Rejected(String),
    /// `sessionEnded`: the host ended the jam; `restarting` when it said
    /// the jam comes back at once under the same code (our extension).
    Ended {
        restarting: bool,
    },
    /// No welcome within the timeout.
    NoWelcome,
    /// Nothing from the host for the silence timeout.
    Silent,
    /// The peer list or the host's description changed.
    Roster,
    /// The host said it takes our `midi` channel.
    MidiWelcome,
    Chat {
        machine_id: String,
        display_name: String,
        text: String,
    },
    /// Any other JSON frame, for the application (`playback`, `hunks`, ...);
    /// `len` is its payload size.
    Other {
        kind: String,
        body: Value,
        len: usize,
    },
    /// A message that is not a valid frame; ignored.
    BadFrame(FrameError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Created, hello not sent yet.
    Idle,
    /// Hello sent at this time, no welcome yet.
    Greeting(Millis),
    Joined,
    /// Refused, ended, timed out: everything is ignored.
    Over,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn clean(s: &str, max: usize) -> String {
    let kept: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    kept.trim().to_owned()
}

pub(crate) struct Session {
    cfg: SessionConfig,
    machine_id: String,
    display_name: String,
    phase: Phase,
    last_heard: Millis,
    next_heartbeat: Millis,
    host: RosterHost,
    max_peers: Option<usize>,
    peers: Vec<RosterPeer>,
    heartbeat: Vec<u8>,
    midi_announced: bool,
}

impl Session {
    pub fn new(cfg: SessionConfig, machine_id: &str, display_name: &str) -> Session {
        Session {
            cfg,
            machine_id: machine_id.to_owned(),
            display_name: display_name.to_owned(),
            phase: Phase::Idle,
            last_heard: Millis(0),
            next_heartbeat: Millis(0),
            host: RosterHost::default(),
            max_peers: None,
            peers: Vec::new(),
            heartbeat: framing::encode_json(&json!({"type": "heartbeat"})),
            midi_announced: false,
        }
    }

    /// The `hello` to send when the channel opens, as MidiEditor 2.0.1 sends
    /// it (`sessionId` from `GET /code`, empty history fields) plus `client`.
    pub fn hello(&mut self, now: Millis, session_id: &str) -> Vec<u8> {
        self.phase = Phase::Greeting(now);
        self.last_heard = now;
        framing::encode_json(&json!({
            "type": "hello",
            "sessionId": session_id,
            "displayName": self.display_name,
            "machineId": self.machine_id,
            "appVersion": env!("CARGO_PKG_VERSION"),
            "client": client_id(),
            "currentHead": "",
            "historyTailHashes": [],
        }))
    }

    pub fn is_joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    pub fn host(&self) -> &RosterHost {
        &self.host
    }

    pub fn max_peers(&self) -> Option<usize> {
        self.max_peers
    }

    pub fn peers(&self) -> &[RosterPeer] {
        &self.peers
    }

    /// One message from the `midieditor` channel.
    pub fn on_message(&mut self, now: Millis, msg: &[u8]) -> Vec<Out> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Over | Phase::Idle) {
            return out;
        }
        // Any message is a sign of life, as on MidiEditor's host.
        self.last_heard = self.last_heard.max(now);
        let frame =
            framing::decode_message(msg, self.cfg.max_frame).and_then(framing::parse_payload);
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                out.push(Out::BadFrame(e));
                return out;
            }
        };
        let (kind, body) = match frame {
            Frame::Ping => {
                out.push(Out::Send(framing::encode(framing::PONG)));
                return out;
            }
            Frame::Pong => return out,
            Frame::Json { kind, body } => (kind, body),
        };
        if let Phase::Greeting(_) = self.phase {
            match kind.as_str() {
                "sessionWelcome" => {
                    let text = |k: &str| {
                        body.get(k)
                            .and_then(Value::as_str)
                            .map(|s| clean(s, 128))
                            .filter(|s| !s.is_empty())
                    };
                    self.join(
                        now,
                        &mut out,
                        Welcome {
                            mode: text("mode"),
                            presenter: text("presenterMachineId"),
                            app_version: text("appVersion"),
                            legacy: None,
                        },
                    );
                    if let Some(p) = text("presenterMachineId") {
                        self.host.machine_id = clean(&p, MAX_ID_BYTES);
                    }
                    return out;
                }
                "joinrejected" => {
                    self.phase = Phase::Over;
                    out.push(Out::Rejected(reason(&body)));
                    return out;
                }
                "sessionEnded" => {
                    self.phase = Phase::Over;
                    out.push(ended(&body));
                    return out;
                }
                other => {
                    // An older MidiEditor host sends no welcome; MidiEditor
                    // shows a note and carries on.
                    let legacy = Some(clean(other, 64));
                    self.join(
                        now,
                        &mut out,
                        Welcome {
                            legacy,
                            ..Welcome::default()
                        },
                    );
                }
            }
        }
        let len = msg.len().saturating_sub(framing::HEADER_LEN);
        self.handle(kind, body, len, &mut out);
        out
    }

    fn join(&mut self, now: Millis, out: &mut Vec<Out>, welcome: Welcome) {
        self.phase = Phase::Joined;
        self.next_heartbeat = now.after(self.cfg.heartbeat_every);
        out.push(Out::Welcomed(welcome));
    }

    fn handle(&mut self, kind: String, body: Value, len: usize, out: &mut Vec<Out>) {
        match kind.as_str() {
            "heartbeat" | "sessionWelcome" => {}
            "joinrejected" => {
                self.phase = Phase::Over;
                out.push(Out::Rejected(reason(&body)));
            }
            "sessionEnded" => {
                self.phase = Phase::Over;
                out.push(ended(&body));
            }
            "chat" => {
                let text = body.get("text").and_then(Value::as_str).unwrap_or("");
                if text.is_empty() {
                    return;
                }
                out.push(Out::Chat {
                    machine_id: body
                        .get("sender")
                        .and_then(Value::as_str)
                        .map(|s| clean(s, MAX_ID_BYTES))
                        .unwrap_or_default(),
                    display_name: body
                        .get("displayName")
                        .and_then(Value::as_str)
                        .map(|s| clean(s, MAX_NAME_CHARS))
                        .unwrap_or_default(),
                    // MidiEditor's own limit on chat text.
                    text: text.chars().take(crate::protocol::CHAT_MAX_BYTES).collect(),
                });
            }
            k @ (roster::PEER_LIST | roster::PEER_JOINED | roster::PEER_LEFT) => {
                let Some(update) = roster::parse(k, &body) else {
                    return;
                };
                self.apply_roster(update, out);
            }
            _ => out.push(Out::Other { kind, body, len }),
        }
    }

    fn apply_roster(&mut self, update: RosterUpdate, out: &mut Vec<Out>) {
        match update {
            RosterUpdate::List {
                host,
                peers,
                max_peers,
            } => {
                let midi = host.features.iter().any(|f| f == roster::FEATURE_MIDI);
                if !host.machine_id.is_empty() || self.host.machine_id.is_empty() {
                    self.host = host;
                } else {
                    // Keep the machine id from the welcome.
                    self.host = RosterHost {
                        machine_id: std::mem::take(&mut self.host.machine_id),
                        ..host
                    };
                }
                self.peers = peers;
                self.max_peers = max_peers;
                out.push(Out::Roster);
                if midi && !self.midi_announced {
                    self.midi_announced = true;
                    out.push(Out::MidiWelcome);
                }
            }
            RosterUpdate::Joined(p) => {
                self.peers.retain(|q| q.id != p.id);
                if self.peers.len() < MAX_ROSTER {
                    self.peers.push(p);
                }
                out.push(Out::Roster);
            }
            RosterUpdate::Left { peer, .. } => {
                let before = self.peers.len();
                self.peers.retain(|q| q.id != peer.id);
                if self.peers.len() != before {
                    out.push(Out::Roster);
                }
            }
        }
    }

    /// Time passes: heartbeats fall due, a silent host or a missing welcome
    /// is noticed. Call it at least every second.
    pub fn tick(&mut self, now: Millis) -> Vec<Out> {
        let mut out = Vec::new();
        match self.phase {
            Phase::Greeting(since) => {
                if now.0.saturating_sub(since.0) >= ms(self.cfg.welcome_timeout) {
                    self.phase = Phase::Over;
                    out.push(Out::NoWelcome);
                }
            }
            Phase::Joined => {
                if now.0.saturating_sub(self.last_heard.0) >= ms(self.cfg.silence_timeout) {
                    self.phase = Phase::Over;
                    out.push(Out::Silent);
                } else if now >= self.next_heartbeat {
                    // From now, not from the missed deadline: one heartbeat
                    // after a stall, not a burst.
                    self.next_heartbeat = now.after(self.cfg.heartbeat_every);
                    out.push(Out::Send(self.heartbeat.clone()));
                }
            }
            Phase::Idle | Phase::Over => {}
        }
        out
    }

    /// A chat frame from us, as MidiEditor's joiner sends it. The host
    /// rewrites the sender; the text limit is MidiEditor's.
    pub fn chat(&self, text: &str, timestamp_ms: u64) -> Result<Vec<u8>, String> {
        if text.is_empty() {
            return Err("nothing to say".into());
        }
        if text.len() > crate::protocol::CHAT_MAX_BYTES {
            return Err(format!(
                "a chat message holds at most {} bytes",
                crate::protocol::CHAT_MAX_BYTES
            ));
        }
        Ok(framing::encode_json(&json!({
            "type": "chat",
            "sender": self.machine_id,
            "displayName": self.display_name,
            "text": text,
            "timestamp": timestamp_ms,
        })))
    }
}

fn reason(body: &Value) -> String {
    body.get("reason")
        .and_then(Value::as_str)
        .map(|s| clean(s, 200))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "no reason given".to_owned())
}

/// `sessionEnded`, with our `restarting` extension read (only a JSON
/// `true` counts).
fn ended(body: &Value) -> Out {
    Out::Ended {
        restarting: body.get("restarting") == Some(&Value::Bool(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{encode, encode_json};

    fn cfg() -> SessionConfig {
        SessionConfig {
            heartbeat_every: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(30),
            welcome_timeout: Duration::from_secs(10),
            max_frame: 1 << 20,
        }
    }

    fn t(ms: u64) -> Millis {
        Millis(ms)
    }

    fn greeting() -> Session {
        let mut s = Session::new(cfg(), "me-1", "Ann");
        let _ = s.hello(t(0), "sid");
        s
    }

    fn welcome() -> Vec<u8> {
        encode_json(
            &json!({"type": "sessionWelcome", "mode": "edit", "presenterMachineId": "host-1", "appVersion": "2.0.1"}),
        )
    }

    fn sent(out: &[Out]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Out::Send(b) => match framing::decode(b, usize::MAX) {
                    Ok(Frame::Json { body, .. }) => Some(body),
                    Ok(Frame::Pong) => Some(json!("pong")),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn session_ended_says_whether_the_host_comes_back_under_the_same_code() {
        for (frame, restarting) in [
            (json!({"type": "sessionEnded"}), false),
            (json!({"type": "sessionEnded", "restarting": true}), true),
            (json!({"type": "sessionEnded", "restarting": "yes"}), false),
            (json!({"type": "sessionEnded", "restarting": 1}), false),
        ] {
            let mut s = greeting();
            let _ = s.on_message(t(1), &welcome());
            let out = s.on_message(t(2), &encode_json(&frame));
            assert!(out.contains(&Out::Ended { restarting }), "{frame}: {out:?}");
        }
    }

    #[test]
    fn hello_carries_midieditors_fields_and_our_client() {
        let mut s = Session::new(cfg(), "me-1", "Ann");
        let hello = s.hello(t(0), "sid-9");
        let Ok(Frame::Json { kind, body }) = framing::decode(&hello, usize::MAX) else {
            panic!("not a frame");
        };
        assert_eq!(kind, "hello");
        assert_eq!(body["sessionId"], "sid-9");
        assert_eq!(body["displayName"], "Ann");
        assert_eq!(body["machineId"], "me-1");
        assert_eq!(body["currentHead"], "");
        assert_eq!(body["historyTailHashes"], json!([]));
        assert!(body["client"].as_str().unwrap().starts_with("midi-jam/"));
        // What our host makes of it.
        let h = crate::protocol::Hello::from_json(&body).unwrap();
        assert_eq!(
            crate::registry::classify(crate::protocol::ClientKind::Unknown, &h),
            crate::protocol::ClientKind::ThisApp
        );
    }

    #[test]
    fn welcome_first_joins_and_heartbeats_follow_every_10_s() {
        let mut s = greeting();
        let out = s.on_message(t(5), &welcome());
        let Out::Welcomed(w) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(w.mode.as_deref(), Some("edit"));
        assert_eq!(w.legacy, None);
        assert_eq!(s.host().machine_id, "host-1");
        assert!(s.is_joined());
        assert!(s.tick(t(10_004)).is_empty());
        let hb = s.tick(t(10_005));
        assert_eq!(sent(&hb), [json!({"type": "heartbeat"})]);
        // After a stall, one heartbeat, not a burst.
        let _ = s.on_message(t(29_000), &encode_json(&json!({"type": "heartbeat"})));
        assert_eq!(sent(&s.tick(t(29_500))).len(), 1);
        assert!(s.tick(t(29_600)).is_empty());
    }

    #[test]
    fn thirty_seconds_of_silence_is_the_host_gone() {
        let mut s = greeting();
        let _ = s.on_message(t(0), &welcome());
        let _ = s.on_message(t(20_000), &encode_json(&json!({"type": "heartbeat"})));
        assert!(!s.tick(t(49_999)).contains(&Out::Silent));
        assert_eq!(s.tick(t(50_000)), [Out::Silent]);
        assert!(s.tick(t(90_000)).is_empty(), "reported once");
        assert!(s.on_message(t(90_001), &welcome()).is_empty());
    }

    #[test]
    fn joinrejected_first_is_a_refusal() {
        let mut s = greeting();
        let out = s.on_message(
            t(1),
            &encode_json(&json!({"type": "joinrejected", "reason": "the jam is full (1 players)"})),
        );
        assert_eq!(out, [Out::Rejected("the jam is full (1 players)".into())]);
        assert!(s.tick(t(100_000)).is_empty());
    }

    #[test]
    fn no_welcome_in_time_is_reported() {
        let mut s = greeting();
        assert!(s.tick(t(9_999)).is_empty());
        assert_eq!(s.tick(t(10_000)), [Out::NoWelcome]);
    }

    #[test]
    fn another_frame_first_is_an_older_host_and_is_kept() {
        let mut s = greeting();
        let f = encode_json(&json!({"type": "filetransfer", "filename": "a.mid"}));
        let out = s.on_message(t(1), &f);
        assert!(matches!(&out[0], Out::Welcomed(w) if w.legacy.as_deref() == Some("filetransfer")));
        assert!(matches!(&out[1], Out::Other { kind, .. } if kind == "filetransfer"));
        assert!(s.is_joined());
    }

    #[test]
    fn ping_is_answered_and_frames_before_hello_are_ignored() {
        let mut s = Session::new(cfg(), "me", "N");
        assert!(s.on_message(t(0), &welcome()).is_empty());
        let _ = s.hello(t(0), "");
        assert_eq!(
            sent(&s.on_message(t(1), &encode(framing::PING))),
            [json!("pong")]
        );
    }

    #[test]
    fn roster_frames_keep_the_peer_list() {
        let mut s = greeting();
        let _ = s.on_message(t(0), &welcome());
        let list = json!({"type": "peerList", "host": {"machineId": "host-1", "displayName": "Hosty", "client": "midi-jam/0.1.0", "features": ["midi"]},
            "maxPeers": 8, "peers": [{"id": 1, "machineId": "a", "displayName": "A", "client": "thisApp"}, {"id": 2, "machineId": "me-1", "displayName": "Ann", "client": "thisApp"}]});
        let out = s.on_message(t(1), &encode_json(&list));
        assert_eq!(out, [Out::Roster, Out::MidiWelcome]);
        assert_eq!(s.host().display_name, "Hosty");
        assert_eq!(s.max_peers(), Some(8));
        let joined = json!({"type": "peerJoined", "peer": {"id": 3, "machineId": "b", "displayName": "B", "client": "midiEditor"}});
        assert_eq!(s.on_message(t(2), &encode_json(&joined)), [Out::Roster]);
        let left = json!({"type": "peerLeft", "peer": {"id": 1, "machineId": "a", "displayName": "A"}, "reason": "connection closed"});
        assert_eq!(s.on_message(t(3), &encode_json(&left)), [Out::Roster]);
        let ids: Vec<u64> = s.peers().iter().map(|p| p.id).collect();
        assert_eq!(ids, [2, 3]);
        // Leaving someone unknown changes nothing.
        assert!(s.on_message(t(4), &encode_json(&left)).is_empty());
        // A second list does not announce midi again.
        assert_eq!(s.on_message(t(5), &encode_json(&list)), [Out::Roster]);
    }

    #[test]
    fn chat_is_read_capped_and_written_as_midieditor_does() {
        let mut s = greeting();
        let _ = s.on_message(t(0), &welcome());
        let out = s.on_message(
            t(1),
            &encode_json(&json!({"type": "chat", "sender": "x", "displayName": "X", "text": "hi"})),
        );
        assert_eq!(
            out,
            [Out::Chat {
                machine_id: "x".into(),
                display_name: "X".into(),
                text: "hi".into()
            }]
        );
        assert!(s.chat("", 0).is_err());
        assert!(s.chat(&"x".repeat(4097), 0).is_err());
        let f = s.chat("yo", 7).unwrap();
        let Ok(Frame::Json { body, .. }) = framing::decode(&f, usize::MAX) else {
            panic!()
        };
        assert_eq!(body["sender"], "me-1");
        assert_eq!(body["timestamp"], 7);
    }

    #[test]
    fn random_messages_never_panic_and_never_grow_the_list() {
        let mut rng = test_support::rng::XorShift(0x0bad_cafe_dead_beef);
        let mut s = greeting();
        let mut now = 0u64;
        let kinds = [
            "sessionWelcome",
            "heartbeat",
            "peerList",
            "peerJoined",
            "peerLeft",
            "chat",
            "joinrejected",
            "x",
        ];
        for _ in 0..20_000 {
            now += rng.below(2000) as u64;
            let msg = match rng.below(4) {
                0 => {
                    let n = rng.below(40);
                    rng.bytes(n)
                }
                1 => {
                    let n = rng.below(30);
                    encode(&rng.bytes(n))
                }
                _ => {
                    let kind = kinds[rng.below(kinds.len())];
                    let id = rng.below(200);
                    encode_json(
                        &json!({"type": kind, "peer": {"id": id, "machineId": format!("m{id}")},
                        "peers": [{"id": id, "machineId": "q"}], "text": "t", "reason": 5}),
                    )
                }
            };
            let _ = s.on_message(t(now), &msg);
            let _ = s.tick(t(now));
            assert!(s.peers().len() <= MAX_ROSTER);
            if rng.below(500) == 0 {
                s = greeting();
                now = 0;
            }
        }
    }
}
