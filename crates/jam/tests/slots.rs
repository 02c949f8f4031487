//! The host's slots cannot be squatted (issue 15, item 5): on the bundled
//! rendezvous (in process, as `midi-rdv host` and the app run it), offers
//! that never become a peer free their rendezvous slot and their row
//! quickly, and a real joiner then gets in although every slot had been
//! taken. Real parts only: the rendezvous over HTTP on 127.0.0.1, our host,
//! webrtc-rs joiners (`tests/support/midi_peer.rs`) on loopback.

#[path = "support/midi_peer.rs"]
mod midi_peer;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use jam::host::{Host, HostConfig, HostEvent};
use jam::offer::Offerer;
use jam::protocol::LeaveReason;
use jam::registry::RegistryEvent;
use jam::signal::Target;
use midi_peer::{loopback, MidiPeer};
use rdv::{Config, Rendezvous, RunningServer};
use serde_json::json;
use tokio::sync::broadcast;

/// Offers the session takes at once (the rendezvous's per-session cap),
/// which is also the jam's peer limit here.
const SLOTS: usize = 2;

struct Jam {
    _server: RunningServer,
    _host: Host,
    base: String,
    code: String,
    events: broadcast::Receiver<HostEvent>,
}

async fn start_jam() -> Jam {
    let server = RunningServer::start(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        Rendezvous::new(Config::default()),
    )
    .await
    .expect("rendezvous on 127.0.0.1");
    server.rdv.set_max_peers(SLOTS);
    let base = server.url();
    let (host, mut events) = Host::start(HostConfig {
        display_name: "Squat test".into(),
        machine_id: String::new(),
        session_id: "slots".into(),
        max_peers: SLOTS,
        rtc: loopback(),
        target: Target::bundled(server.rdv.clone()),
        share_urls: vec![base.clone()],
        keep_code: None,
    })
    .await
    .expect("host starts");
    let code = match events.recv().await {
        Ok(HostEvent::Hosting { code, .. }) => code,
        other => panic!("expected Hosting, got {other:?}"),
    };
    Jam {
        _server: server,
        _host: host,
        base,
        code,
        events,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Posts `sdp` as joiner `joiner_id`; the HTTP status.
async fn post_offer(jam: &Jam, joiner_id: &str, sdp: &str) -> u16 {
    http()
        .post(format!("{}/code/{}/joiner-offer", jam.base, jam.code))
        .json(&json!({"joinerId": joiner_id, "sdp": sdp}))
        .send()
        .await
        .expect("POST joiner-offer")
        .status()
        .as_u16()
}

/// Joins as a real peer (hello, welcome), retrying while the rendezvous says
/// the session is full; how long it took.
async fn real_joiner_gets_in(jam: &Jam, within: Duration) -> (MidiPeer, Duration) {
    let t = Instant::now();
    loop {
        match MidiPeer::join(&jam.base, &jam.code, "Real player").await {
            Ok(peer) => return (peer, t.elapsed()),
            Err(e) if t.elapsed() < within => {
                assert!(e.contains("503"), "only a full session may refuse: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("the real joiner was kept out for {within:?}: {e}"),
        }
    }
}

/// Waits for `n` peers to leave; their reasons.
async fn left(events: &mut broadcast::Receiver<HostEvent>, n: usize) -> Vec<LeaveReason> {
    let mut reasons = Vec::new();
    let wait = async {
        while reasons.len() < n {
            match events.recv().await {
                Ok(HostEvent::Peer(RegistryEvent::Left { reason, .. })) => reasons.push(reason),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("host events ended: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the squatters leave in time");
    reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_offers_free_their_slots_at_once() {
    let mut jam = start_jam().await;
    let t = Instant::now();
    for k in 0..SLOTS {
        let status = post_offer(&jam, &format!("squatter{k}"), "v=0\r\nnot an offer\r\n").await;
        assert_eq!(status, 200, "the rendezvous takes the offer");
    }
    let reasons = left(&mut jam.events, SLOTS).await;
    let freed = t.elapsed();
    assert!(
        reasons.iter().all(|r| *r == LeaveReason::Closed),
        "{reasons:?}"
    );
    let (_peer, took) = real_joiner_gets_in(&jam, Duration::from_secs(5)).await;
    println!("garbage offers: slots freed after {freed:?}; a real joiner got in {took:?} later");
    assert!(
        freed < Duration::from_secs(3),
        "slots freed after {freed:?}"
    );
}

/// One squatter connects and opens its channel but never says hello; the
/// other posts a real offer and never uses the answer. Both slots are taken,
/// so the real joiner is refused at first and gets in once they are dropped
/// (hello: 5 s, connect: 10 s), far sooner than the offer's lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_and_dead_peers_are_dropped_and_a_real_joiner_gets_in() {
    let mut jam = start_jam().await;
    let t = Instant::now();
    let _mute = MidiPeer::join_with(&jam.base, &jam.code, "Mute", false)
        .await
        .expect("the mute peer connects");
    let dead = Offerer::new(&loopback(), "midieditor")
        .await
        .expect("an offer");
    assert_eq!(post_offer(&jam, "deadpeer", dead.offer_sdp()).await, 200);
    // Every slot is taken now.
    assert_eq!(
        post_offer(&jam, "latejoiner", dead.offer_sdp()).await,
        503,
        "the session is full"
    );

    let reasons = left(&mut jam.events, SLOTS).await;
    let freed = t.elapsed();
    assert!(
        reasons.iter().all(|r| *r == LeaveReason::HelloTimeout),
        "{reasons:?}"
    );
    let (_peer, took) = real_joiner_gets_in(&jam, Duration::from_secs(5)).await;
    println!(
        "mute and dead peers: slots freed after {freed:?}; a real joiner got in {took:?} later"
    );
    assert!(
        freed < Duration::from_secs(15),
        "slots freed after {freed:?}"
    );
    drop(dead);
}
