//! Who is in the jam, told to our own joiners: an extension of MidiEditor's
//! peer protocol (`docs/joining.md`, "Peer list frames").
//!
//! MidiEditor's joiner only ever sees its host ("we don't have a peer-list
//! (the joiner only sees the host)", in its source), so MidiEditor's protocol
//! has no frame naming the other peers. A jam wants one: a player should see
//! who else plays. Three frames on the `midieditor` channel, only ever sent
//! **after** `sessionWelcome` and only to peers whose `hello` named them as
//! ours (client kind [`ClientKind::ThisApp`] or [`ClientKind::Browser`]);
//! MidiEditor never gets them (it would ignore them anyway):
//!
//! - `peerList` to a peer just welcomed: the host (with its `client` and
//!   `features`) and every welcomed peer, the newcomer included;
//! - `peerJoined` to the others when a peer is welcomed;
//! - `peerLeft` to the others when a welcomed peer leaves, with the reason.
//!
//! Peers are keyed by the host's `id` for them (a reconnecting machine keeps
//! its `machineId` but gets a new `id`, and the ghost's `peerLeft` may cross
//! the newcomer's `peerJoined`).
//!
//! The host's `features` list is how a joiner knows the host is ours: it
//! opens its `midi` channel only when `midi` is listed (see
//! [`crate::joiner`] for why it must not with a MidiEditor host).
//!
//! Both directions live here: [`frames_for`] builds what the host sends, and
//! [`parse`] reads it on the joiner, tolerating anything (strings are
//! cleaned and capped, lists bounded by [`MAX_ROSTER`]).

use serde::Serialize;
use serde_json::{json, Value};

use crate::framing;
use crate::protocol::{ClientKind, JamConfig, PeerId, MAX_ID_BYTES, MAX_NAME_CHARS};
use crate::registry::{PeerEntry, PeerState, RegistryEvent, CLIENT_APP};

/// Frame types (the `type` field).
pub const PEER_LIST: &str = "peerList";
pub const PEER_JOINED: &str = "peerJoined";
pub const PEER_LEFT: &str = "peerLeft";

/// The `features` our host announces: it takes a `midi` data channel.
pub const FEATURE_MIDI: &str = "midi";

/// Most peers a joiner keeps from a `peerList`; a real jam has at most a few
/// dozen, and a hostile host must not make a joiner hold a million.
pub const MAX_ROSTER: usize = 64;

/// One peer as the roster frames name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RosterPeer {
    /// The host's id for this connection.
    pub id: u64,
    pub machine_id: String,
    pub display_name: String,
    /// The host's guess at the program (`midiEditor`, `thisApp`, `browser`,
    /// `unknown`; anything else is kept as sent, capped).
    pub client: String,
}

/// The host as a `peerList` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RosterHost {
    pub machine_id: String,
    pub display_name: String,
    /// `midi-jam/<version>` for our host.
    pub client: String,
    /// What the host speaks beyond MidiEditor's protocol ([`FEATURE_MIDI`]).
    pub features: Vec<String>,
}

/// A roster frame, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterUpdate {
    /// The whole list (the recipient included), and the jam's size.
    List {
        host: RosterHost,
        peers: Vec<RosterPeer>,
        max_peers: Option<usize>,
    },
    Joined(RosterPeer),
    Left {
        peer: RosterPeer,
        reason: String,
    },
}

fn client_str(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::MidiEditor => "midiEditor",
        ClientKind::ThisApp => "thisApp",
        ClientKind::Browser => "browser",
        ClientKind::Unknown => "unknown",
    }
}

fn peer_json(p: &PeerEntry) -> Value {
    json!({
        "id": p.id.0,
        "machineId": p.machine_id.as_deref().unwrap_or(""),
        "displayName": p.display_name.as_deref().unwrap_or(""),
        "client": client_str(p.client),
    })
}

/// Whether a peer gets roster frames: welcomed, and one of ours.
fn is_ours(p: &PeerEntry) -> bool {
    p.state == PeerState::Connected && matches!(p.client, ClientKind::ThisApp | ClientKind::Browser)
}

/// What the host sends after one registry change: `(recipient, frame)`
/// pairs, already framed. `peers` is the registry's list *after* the change.
/// Sent after the welcome because a peer's `Connected` event follows the
/// queued `sessionWelcome` in the host engine.
pub fn frames_for(
    event: &RegistryEvent,
    peers: &[PeerEntry],
    jam: &JamConfig,
) -> Vec<(PeerId, Vec<u8>)> {
    let mut out = Vec::new();
    match event {
        RegistryEvent::Connected { peer } => {
            if is_ours(peer) {
                let list: Vec<Value> = peers
                    .iter()
                    .filter(|p| p.state == PeerState::Connected)
                    .map(peer_json)
                    .collect();
                let frame = json!({
                    "type": PEER_LIST,
                    "host": {
                        "machineId": jam.host_machine_id,
                        "displayName": jam.host_display_name,
                        "client": format!("{CLIENT_APP}/{}", jam.app_version),
                        "features": [FEATURE_MIDI],
                    },
                    "maxPeers": jam.max_peers,
                    "peers": list,
                });
                out.push((peer.id, framing::encode_json(&frame)));
            }
            let joined =
                framing::encode_json(&json!({"type": PEER_JOINED, "peer": peer_json(peer)}));
            for p in peers.iter().filter(|p| is_ours(p) && p.id != peer.id) {
                out.push((p.id, joined.clone()));
            }
        }
        RegistryEvent::Left { peer, reason } if peer.machine_id.is_some() => {
            let left = framing::encode_json(&json!({
                "type": PEER_LEFT,
                "peer": peer_json(peer),
                "reason": reason.to_string(),
            }));
            for p in peers.iter().filter(|p| is_ours(p) && p.id != peer.id) {
                out.push((p.id, left.clone()));
            }
        }
        _ => {}
    }
    out
}

/// Drops control characters, keeps at most `max` characters, trims.
fn clean(s: &str, max: usize) -> String {
    let kept: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    kept.trim().to_owned()
}

fn text(v: &Value, key: &str, max: usize) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .map(|s| clean(s, max))
        .unwrap_or_default()
}

fn parse_peer(v: &Value) -> Option<RosterPeer> {
    let id = v.get("id")?.as_u64()?;
    let machine_id = text(v, "machineId", MAX_ID_BYTES);
    if machine_id.is_empty() {
        return None;
    }
    Some(RosterPeer {
        id,
        machine_id,
        display_name: text(v, "displayName", MAX_NAME_CHARS),
        client: text(v, "client", 32),
    })
}

/// Reads a roster frame; `None` for other types and for frames too broken to
/// use (a missing `peer`, a peer without `id` or `machineId`).
pub fn parse(kind: &str, body: &Value) -> Option<RosterUpdate> {
    match kind {
        PEER_LIST => {
            let h = body.get("host").cloned().unwrap_or(Value::Null);
            let host = RosterHost {
                machine_id: text(&h, "machineId", MAX_ID_BYTES),
                display_name: text(&h, "displayName", MAX_NAME_CHARS),
                client: text(&h, "client", 64),
                features: h
                    .get("features")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .take(16)
                            .map(|s| clean(s, 32))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let mut peers: Vec<RosterPeer> = Vec::new();
            for p in body
                .get("peers")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(parse_peer)
            {
                if peers.len() >= MAX_ROSTER {
                    break;
                }
                if !peers.iter().any(|q| q.id == p.id) {
                    peers.push(p);
                }
            }
            let max_peers = body
                .get("maxPeers")
                .and_then(Value::as_u64)
                .and_then(|m| usize::try_from(m).ok());
            Some(RosterUpdate::List {
                host,
                peers,
                max_peers,
            })
        }
        PEER_JOINED => parse_peer(body.get("peer")?).map(RosterUpdate::Joined),
        PEER_LEFT => Some(RosterUpdate::Left {
            peer: parse_peer(body.get("peer")?)?,
            reason: text(body, "reason", 200),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::decode;
    use crate::protocol::LeaveReason;
    use crate::registry::Route;
    use types::Millis;

    fn entry(id: u64, name: &str, client: ClientKind, state: PeerState) -> PeerEntry {
        PeerEntry {
            id: PeerId(id),
            display_name: Some(name.into()),
            machine_id: Some(format!("m{id}")),
            client,
            state,
            rtt: None,
            route: Route::Unknown,
            transport: crate::registry::Transport::Unknown,
            bytes_in: 0,
            bytes_out: 0,
            joined_at: Millis(0),
            connected_at: Some(Millis(1)),
        }
    }

    fn jam() -> JamConfig {
        JamConfig {
            host_machine_id: "host-m".into(),
            host_display_name: "Hosty".into(),
            app_version: "9.9.9".into(),
            max_peers: 4,
            ..JamConfig::default()
        }
    }

    fn body(bytes: &[u8]) -> (String, Value) {
        match decode(bytes, usize::MAX).expect("frame") {
            crate::framing::Frame::Json { kind, body } => (kind, body),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_welcomed_joiner_of_ours_gets_the_list_and_the_others_a_joined() {
        use ClientKind::*;
        use PeerState::*;
        let peers = vec![
            entry(1, "Ed", MidiEditor, Connected),
            entry(2, "Ann", ThisApp, Connected),
            entry(3, "Web", Browser, Connected),
            entry(4, "Half", ThisApp, PeerState::Connecting),
            entry(5, "New", ThisApp, Connected),
        ];
        let ev = RegistryEvent::Connected {
            peer: peers[4].clone(),
        };
        let out = frames_for(&ev, &peers, &jam());
        let to: Vec<u64> = out.iter().map(|(p, _)| p.0).collect();
        assert_eq!(to, [5, 2, 3], "list to the newcomer, joined to ours only");
        let (kind, list) = body(&out[0].1);
        assert_eq!(kind, PEER_LIST);
        assert_eq!(list["host"]["client"], "midi-jam/9.9.9");
        assert_eq!(list["host"]["features"], json!(["midi"]));
        assert_eq!(list["maxPeers"], 4);
        let names: Vec<&str> = list["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["displayName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Ed", "Ann", "Web", "New"], "welcomed peers only");
        let (kind, joined) = body(&out[1].1);
        assert_eq!(kind, PEER_JOINED);
        assert_eq!(joined["peer"]["machineId"], "m5");

        // Round trip through the joiner's parser.
        match parse(PEER_LIST, &list) {
            Some(RosterUpdate::List {
                host,
                peers,
                max_peers,
            }) => {
                assert_eq!(host.display_name, "Hosty");
                assert_eq!(host.features, ["midi"]);
                assert_eq!(peers.len(), 4);
                assert_eq!(peers[0].client, "midiEditor");
                assert_eq!(max_peers, Some(4));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_midieditor_joiner_gets_nothing_but_is_announced() {
        let peers = vec![
            entry(1, "Ann", ClientKind::ThisApp, PeerState::Connected),
            entry(2, "Ed", ClientKind::MidiEditor, PeerState::Connected),
        ];
        let out = frames_for(
            &RegistryEvent::Connected {
                peer: peers[1].clone(),
            },
            &peers,
            &jam(),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, PeerId(1));
    }

    #[test]
    fn leaving_is_told_only_for_welcomed_peers() {
        let peers = vec![entry(1, "Ann", ClientKind::ThisApp, PeerState::Connected)];
        let mut gone = entry(2, "Bob", ClientKind::ThisApp, PeerState::Left);
        let out = frames_for(
            &RegistryEvent::Left {
                peer: gone.clone(),
                reason: LeaveReason::Silent,
            },
            &peers,
            &jam(),
        );
        assert_eq!(out.len(), 1);
        let (kind, b) = body(&out[0].1);
        assert_eq!(kind, PEER_LEFT);
        assert_eq!(b["reason"], "no sign of life for too long");
        match parse(&kind, &b) {
            Some(RosterUpdate::Left { peer, reason }) => {
                assert_eq!(peer.id, 2);
                assert!(reason.contains("no sign"));
            }
            other => panic!("{other:?}"),
        }
        // Never welcomed: nobody knew it, nobody is told.
        gone.machine_id = None;
        let out = frames_for(
            &RegistryEvent::Left {
                peer: gone,
                reason: LeaveReason::HelloTimeout,
            },
            &peers,
            &jam(),
        );
        assert!(out.is_empty());
    }

    #[test]
    fn hostile_roster_frames_are_bounded_and_cleaned() {
        let many: Vec<Value> = (0..1000)
            .map(|i| json!({"id": i, "machineId": format!("m{i}"), "displayName": "x\u{7}".repeat(500)}))
            .collect();
        let b = json!({"type": "peerList", "host": 5, "peers": many});
        match parse(PEER_LIST, &b) {
            Some(RosterUpdate::List { host, peers, .. }) => {
                assert_eq!(host, RosterHost::default());
                assert_eq!(peers.len(), MAX_ROSTER);
                assert_eq!(peers[0].display_name.chars().count(), MAX_NAME_CHARS);
                assert!(!peers[0].display_name.contains('\u{7}'));
            }
            other => panic!("{other:?}"),
        }
        for b in [
            json!({}),
            json!({"peer": 1}),
            json!({"peer": {"id": "x", "machineId": "m"}}),
            json!({"peer": {"id": 1}}),
            json!({"peer": {"id": 1, "machineId": ""}}),
        ] {
            assert_eq!(parse(PEER_JOINED, &b), None, "{b}");
            assert_eq!(parse(PEER_LEFT, &b), None, "{b}");
        }
        assert_eq!(parse("chat", &json!({})), None);
        assert!(matches!(
            parse(PEER_LIST, &json!([])),
            Some(RosterUpdate::List { .. })
        ));
    }
}
