//! The host's live-MIDI controls over real WebRTC on 127.0.0.1 (webrtc-rs
//! joiners only, so no namespace is needed): mutes, panic, kicks, garbage,
//! a stranger who never said hello, a MidiEditor-style joiner in the same
//! jam that must see nothing of it, and the releases sent when the host
//! stops. `tests/midi_three_peers.rs` covers the other stacks and crashes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use jam::host::{Host, HostConfig, HostControl, HostEvent, MidiEvent};
use jam::midi::frame::flags;
use jam::midi::message::cc;
use jam::midi::MidiMessage;
use jam::offer::{Offerer, OffererEvent};
use jam::protocol::PeerId;
use jam::registry::{PeerState, RegistryEvent};
use jam::signal::Target;
use rdv::{Config, Rendezvous, RunningServer};
use serde_json::{json, Value};
use tokio::sync::broadcast;

#[path = "support/midi_peer.rs"]
mod midi_peer;
use midi_peer::{loopback, MidiPeer, STEP};

const QUIET: Duration = Duration::from_millis(300);

fn on(ch: u8, key: u8, vel: u8) -> MidiMessage {
    MidiMessage::NoteOn {
        channel: ch,
        key,
        velocity: vel,
    }
}

async fn connected(events: &mut broadcast::Receiver<HostEvent>, machine_id: &str) -> PeerId {
    tokio::time::timeout(STEP, async {
        loop {
            if let Ok(HostEvent::Peer(RegistryEvent::Connected { peer })) = events.recv().await {
                if peer.machine_id.as_deref() == Some(machine_id) {
                    return peer.id;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{machine_id} not welcomed"))
}

/// The sink's next events within `within`.
async fn sink_take(sink: &mut broadcast::Receiver<MidiEvent>, within: Duration) -> Vec<MidiEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, sink.recv()).await {
        out.push(e);
    }
    out
}

async fn routed(ctl: &HostControl, peers: &mut [&mut MidiPeer]) {
    for p in peers.iter_mut() {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "not routed");
            ctl.send_midi(&[0xFE]).unwrap();
            if p.next_frame(Duration::from_millis(50)).await.is_some() {
                break;
            }
        }
    }
    for p in peers.iter_mut() {
        while p.next_frame(Duration::from_millis(100)).await.is_some() {}
    }
}

fn framed(v: &Value) -> Bytes {
    let payload = serde_json::to_vec(v).unwrap();
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_relays_mutes_panics_and_releases_over_webrtc() {
    let server = RunningServer::start(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        Rendezvous::new(Config::default()),
    )
    .await
    .unwrap();
    let base = server.url();
    let (host, mut events) = Host::start(HostConfig {
        display_name: "h".into(),
        machine_id: String::new(),
        session_id: "s".into(),
        max_peers: 8,
        rtc: loopback(),
        target: Target::bundled(server.rdv.clone()),
        share_urls: vec![base.clone()],
        keep_code: None,
    })
    .await
    .unwrap();
    let code = match events.recv().await {
        Ok(HostEvent::Hosting { code, .. }) => code,
        other => panic!("{other:?}"),
    };
    let ctl = host.clone_handle();
    let mut sink = host.midi_events();

    // A MidiEditor-style joiner: `midieditor` only, MidiEditor's hello.
    let mut me = Offerer::new(&loopback(), "midieditor").await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    http.post(format!("{base}/code/{code}/joiner-offer"))
        .json(&json!({"joinerId": "midieditor-joiner1", "sdp": me.offer_sdp()}))
        .send()
        .await
        .unwrap();
    let answer: Value = http
        .get(format!(
            "{base}/code/{code}/host-answer/midieditor-joiner1?wait=25000"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me.accept(answer["sdp"].as_str().unwrap()).await.unwrap();
    assert_eq!(me.next_event().await, Some(OffererEvent::Open));
    me.send(framed(
        &json!({"type": "hello", "sessionId": "s", "displayName": "ME",
        "machineId": "midieditor-machine", "appVersion": "2.0.1", "currentHead": "",
        "historyTailHashes": []}),
    ))
    .await
    .unwrap();
    let Some(OffererEvent::Message(first)) = me.next_event().await else {
        panic!("no welcome");
    };
    assert!(String::from_utf8_lossy(&first).contains("sessionWelcome"));
    let id_me = connected(&mut events, "midieditor-machine").await;

    let mut a = MidiPeer::join(&base, &code, "a").await.unwrap();
    let id_a = connected(&mut events, &a.machine_id).await;
    let mut b = MidiPeer::join(&base, &code, "b").await.unwrap();
    let id_b = connected(&mut events, &b.machine_id).await;
    routed(&ctl, &mut [&mut a, &mut b]).await;
    sink_take(&mut sink, QUIET).await;
    // Routed peers are listed before they play (a front end shows their
    // channel open, a test waits on it); MidiEditor, without `midi`, is not.
    let rows = ctl.midi_activity().await;
    for id in [id_a, id_b] {
        let row = rows.iter().find(|r| r.peer == Some(id));
        assert!(
            row.is_some_and(|r| r.routed && r.activity.messages == 0),
            "{id}: {rows:?}"
        );
    }
    assert!(rows.iter().all(|r| r.peer != Some(id_me)), "{rows:?}");

    // A stranger opens `midi` but never says hello: not routed either way.
    let mut stranger = MidiPeer::join_with(&base, &code, "x", false).await.unwrap();
    stranger.play(&[on(9, 1, 1)]).await.unwrap();
    a.play(&[on(0, 60, 100)]).await.unwrap();
    let f = b.frame_where(STEP, |_| true).await.unwrap();
    assert_eq!(f.header.origin, id_a.0, "the stranger's note was relayed");
    assert_eq!(f.messages, vec![on(0, 60, 100)]);
    let got = sink_take(&mut sink, QUIET).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].peer, Some(id_a));
    assert!(
        stranger.next_frame(QUIET).await.is_none(),
        "the stranger heard the jam"
    );

    // Mute A: its held note is released on the sink only; B still hears it.
    ctl.set_muted(id_a, true).await;
    let got = sink_take(&mut sink, QUIET).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].message, MidiMessage::note_off(0, 60));
    assert!(got[0].release);
    a.play(&[on(0, 62, 100)]).await.unwrap();
    let f = b.frame_where(STEP, |_| true).await.unwrap();
    assert_eq!(f.messages, vec![on(0, 62, 100)]);
    assert!(
        sink_take(&mut sink, QUIET).await.is_empty(),
        "muted A was played"
    );
    ctl.set_muted(id_a, false).await;
    let rows = ctl.midi_activity().await;
    assert!(
        rows.iter()
            .all(|r| r.routed == (r.peer == Some(id_a) || r.peer == Some(id_b))),
        "only A and B are routed (not the stranger, not the host's input): {rows:?}"
    );
    let row = rows
        .iter()
        .find(|r| r.peer == Some(id_a))
        .expect("A's light");
    assert_eq!(row.activity.messages, 2);
    assert_eq!(row.activity.sounding, 2);
    assert!(!row.activity.muted);

    // Garbage on `midi`: dropped and counted, nothing relayed, A stays.
    a.midi
        .send(Bytes::from_static(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3C]))
        .await
        .unwrap();
    a.midi.send(Bytes::from_static(b"\x02hello")).await.unwrap();
    assert!(b.next_frame(QUIET).await.is_none());
    assert_eq!(ctl.midi_stats().frames_bad, 2);

    // The host plays and holds a note; panic releases everything.
    ctl.send_midi(&[0x9F, 30, 100]).unwrap();
    for p in [&mut a, &mut b] {
        let f = p.frame_where(STEP, |_| true).await.unwrap();
        assert_eq!((f.header.origin, f.messages), (0, vec![on(15, 30, 100)]));
    }
    ctl.panic().await;
    // B held A's 60 and 62 and the host's 30; A held the host's 30.
    let mut b_offs = Vec::new();
    while let Some(f) = b.frame_where(QUIET, |_| true).await {
        assert_eq!(f.header.flags & flags::RELEASE, flags::RELEASE);
        b_offs.extend(f.messages);
    }
    b_offs.sort_by_key(|m| m.to_vec());
    assert_eq!(
        b_offs,
        vec![
            MidiMessage::note_off(0, 60),
            MidiMessage::note_off(0, 62),
            MidiMessage::note_off(15, 30)
        ]
    );
    let f = a.frame_where(STEP, |_| true).await.unwrap();
    assert_eq!(f.messages, vec![MidiMessage::note_off(15, 30)]);
    let got = sink_take(&mut sink, QUIET).await;
    // 62 (A was unmuted while it sounded elsewhere, never here): only the
    // blanket: sustain-off and All Notes Off on all 16 channels.
    assert_eq!(got.len(), 32, "{got:?}");
    assert!(got.iter().all(|e| e.release && e.peer.is_none()));
    assert!(got
        .iter()
        .any(|e| e.message == MidiMessage::control(7, cc::ALL_NOTES_OFF, 0)));

    // Kick B while it holds a chord: A and the sink get the Note Offs.
    b.play(&[on(2, 50, 90), on(2, 53, 90)]).await.unwrap();
    a.frame_where(STEP, |f| f.messages.contains(&on(2, 53, 90)))
        .await
        .unwrap();
    sink_take(&mut sink, QUIET).await;
    host.kick(id_b, "test").await;
    let f = a
        .frame_where(STEP, |f| f.header.origin == id_b.0)
        .await
        .expect("B's releases");
    assert_eq!(
        f.messages,
        vec![MidiMessage::note_off(2, 50), MidiMessage::note_off(2, 53)]
    );
    let got = sink_take(&mut sink, QUIET).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|e| e.release && e.peer == Some(id_b)));

    // The MidiEditor joiner is still in, and got nothing but protocol.
    me.send(framed(&json!({"type": "heartbeat"})))
        .await
        .unwrap();
    let mut types = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(QUIET, me.next_event()).await {
        if let OffererEvent::Message(m) = ev {
            let v: Value = serde_json::from_slice(&m[4..]).unwrap();
            types.push(v["type"].as_str().unwrap_or("").to_owned());
        }
    }
    assert!(
        types.iter().all(|t| t == "heartbeat"),
        "the MidiEditor joiner got {types:?}"
    );
    assert!(!events_left(&mut events, id_me));

    // The host stops with A holding the host's note: A gets its release.
    ctl.send_midi(&[0x90, 40, 100]).unwrap();
    a.frame_where(STEP, |f| f.messages.contains(&on(0, 40, 100)))
        .await
        .unwrap();
    host.stop().await;
    let f = a
        .frame_where(STEP, |f| f.header.flags & flags::RELEASE != 0)
        .await
        .expect("release before the host went");
    assert_eq!(f.messages, vec![MidiMessage::note_off(0, 40)]);
    me.close().await;
    drop(server);
}

/// Whether `peer` left (per the events so far).
fn events_left(events: &mut broadcast::Receiver<HostEvent>, peer: PeerId) -> bool {
    let mut left = false;
    while let Ok(e) = events.try_recv() {
        if let HostEvent::Peer(RegistryEvent::Left { peer: p, .. }) = e {
            if p.id == peer {
                assert_eq!(p.state, PeerState::Left);
                left = true;
            }
        }
    }
    left
}
