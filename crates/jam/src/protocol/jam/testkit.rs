//! Helpers shared by the state machine's tests: a jam with a known host,
//! frames a joiner sends, and filters over the actions a call returns.

use serde_json::{json, Value};
use types::Millis;

use crate::framing::{decode, encode_json, Frame};
use crate::protocol::{Action, ClientKind, Jam, JamConfig, LeaveReason, PeerEvent, PeerId};

pub(super) const HOST: &str = "host-machine";

pub(super) fn cfg() -> JamConfig {
    JamConfig {
        host_machine_id: HOST.into(),
        host_display_name: "Hosty".into(),
        app_version: "0.1.0".into(),
        ..JamConfig::default()
    }
}

pub(super) fn jam() -> Jam {
    Jam::new(cfg())
}

pub(super) fn t(ms: u64) -> Millis {
    Millis(ms)
}

pub(super) fn hello(machine_id: &str, name: &str) -> Vec<u8> {
    encode_json(&json!({
        "type": "hello",
        "sessionId": "sess",
        "displayName": name,
        "machineId": machine_id,
        "appVersion": "2.0.1",
        "currentHead": "abc",
        "historyTailHashes": ["abc"],
    }))
}

pub(super) fn chat(text: &str) -> Vec<u8> {
    encode_json(&json!({
        "type": "chat",
        "sender": "someone-else",
        "displayName": "The Host",
        "text": text,
        "timestamp": 1_700_000_000_000u64,
    }))
}

/// Opens peer `id` and says hello as machine `m<id>` named `P<id>`.
pub(super) fn join(j: &mut Jam, now: u64, id: u64) -> Vec<Action> {
    let mut a = j.channel_opened(t(now), PeerId(id), ClientKind::Unknown);
    a.extend(j.frame_received(
        t(now),
        PeerId(id),
        &hello(&format!("m{id}"), &format!("P{id}")),
    ));
    a
}

/// Every frame sent to `peer`, parsed (raw pings/pongs included).
pub(super) fn sent_to(actions: &[Action], peer: u64) -> Vec<Frame> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { peer: p, bytes } if *p == PeerId(peer) => {
                Some(decode(bytes, usize::MAX).expect("we send valid frames"))
            }
            _ => None,
        })
        .collect()
}

pub(super) fn kinds(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.kind().unwrap_or("<raw>")).collect()
}

pub(super) fn body(f: &Frame) -> &Value {
    match f {
        Frame::Json { body, .. } => body,
        other => panic!("not JSON: {other:?}"),
    }
}

pub(super) fn closes(actions: &[Action]) -> Vec<(PeerId, LeaveReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { peer, reason } => Some((*peer, reason.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn events(actions: &[Action]) -> Vec<&PeerEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

pub(super) fn lefts(actions: &[Action]) -> Vec<(PeerId, LeaveReason)> {
    events(actions)
        .into_iter()
        .filter_map(|e| match e {
            PeerEvent::Left { peer, reason, .. } => Some((*peer, reason.clone())),
            _ => None,
        })
        .collect()
}
