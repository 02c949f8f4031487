//! The hosted-jam service against real parts: its bundled rendezvous on a
//! loopback port the OS picks, real webrtc-rs joiners (`jam::joiner`) over
//! loopback, no ICE servers, no LAN advert.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hosted::{Hosted, HostedConfig, HostedEvent, HostedView, Impact, Phase, RendezvousChoice};
use jam::host::HostEvent;
use jam::joiner::{JoinConfig, JoinError, Joiner, MidiChannel};
use tokio::sync::broadcast;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A jam on loopback only: never a real interface from a test.
fn config(max_peers: usize) -> HostedConfig {
    HostedConfig {
        name: "Tester".into(),
        max_peers,
        rendezvous: RendezvousChoice::Bundled {
            bind: LOOPBACK,
            port: 0,
            port_attempts: 1,
        },
        ice_servers: Vec::new(),
        ice_bind: vec![LOOPBACK],
        resolve_mdns: false,
        advertise: false,
        retry_every: None,
        ..HostedConfig::default()
    }
}

/// The first view for which `ok` holds, within 20 s.
async fn wait_view(h: &Hosted, what: &str, ok: impl Fn(&HostedView) -> bool) -> HostedView {
    let mut rx = h.subscribe();
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            {
                let v = rx.borrow_and_update();
                if ok(&v) {
                    return v.clone();
                }
            }
            rx.changed().await.expect("view closed");
        }
    })
    .await;
    r.unwrap_or_else(|_| {
        let v = h.view();
        panic!(
            "timed out waiting for {what}: {:?} {:?} {:?}",
            v.phase, v.peers, v.notices
        )
    })
}

/// The next host event for which `ok` holds, within 20 s.
async fn wait_event(
    rx: &mut broadcast::Receiver<HostedEvent>,
    what: &str,
    ok: impl Fn(&HostEvent) -> bool,
) -> HostEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Ok(HostedEvent::Host(e)) if ok(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{what}: events ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn join_config(v: &HostedView, name: &str) -> JoinConfig {
    let mut cfg = JoinConfig::new(v.urls[0].parse().expect("url"), v.code.clone(), name);
    cfg.rtc.bind_ips = vec![LOOPBACK];
    cfg.midi = MidiChannel::Off;
    cfg
}

async fn join(v: &HostedView, name: &str) -> Result<Joiner, JoinError> {
    Joiner::join(join_config(v, name)).await.map(|(j, _)| j)
}

/// The issue-12 bug through the service: the bundled rendezvous had its own
/// cap of 8 and refused a jam's ninth and tenth joiner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jam_of_ten_takes_ten_joiners_at_once() {
    let (h, _events) = Hosted::start(config(10));
    let v = wait_view(&h, "a code", |v| v.code.is_some()).await;
    assert_eq!(v.phase, Phase::Hosting);
    let tasks: Vec<_> = (0..10)
        .map(|k| {
            let cfg = join_config(&v, &format!("Player {k}"));
            tokio::spawn(async move { Joiner::join(cfg).await.map(|(j, _)| j) })
        })
        .collect();
    let mut joined = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        match t.await.expect("join task") {
            Ok(j) => joined.push(j),
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert!(refused.is_empty(), "refused: {refused:?}");
    wait_view(&h, "ten connected", |v| v.connected() == 10).await;
    // The eleventh is refused, with the jam's number in the reason.
    match join(&v, "Eleventh").await {
        Err(JoinError::JamFull { detail }) => assert!(detail.contains("10"), "{detail}"),
        other => panic!("the eleventh got in: {:?}", other.map(|_| ())),
    }
    for j in joined {
        j.leave().await;
    }
    h.stop().await;
}

/// The second issue-12 bug, the service's side: a new peer limit, STUN/TURN
/// list and gathering cap are applied without a restart: the code stays,
/// the peer in stays, and the next joiner gets the new limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_change_keeps_the_code_and_the_peer_and_takes_the_new_limit() {
    let old = config(1);
    let (h, mut events) = Hosted::start(old.clone());
    let v = wait_view(&h, "a code", |v| v.code.is_some()).await;
    let code = v.code.clone().unwrap();
    let first = join(&v, "First").await.expect("the first joins");
    let v = wait_view(&h, "one connected", |v| v.connected() == 1).await;
    let first_id = v.peers[0].id;
    // Full at 1.
    assert!(
        matches!(join(&v, "Too early").await, Err(JoinError::JamFull { .. })),
        "a second joiner got into a jam of 1"
    );

    let new = HostedConfig {
        max_peers: 2,
        gather_timeout: Duration::from_millis(700),
        // A STUN server on loopback that nobody runs: gathering gives up at
        // the new cap, and the answer still carries the host candidate.
        ice_servers: vec![jam::rtc::IceServer {
            urls: vec!["stun:127.0.0.1:9".into()],
            username: None,
            credential: None,
        }],
        ..old.clone()
    };
    let impact = h.apply(new.clone()).await;
    assert_eq!(impact, Impact::between(&old, &new));
    assert!(impact.live && !impact.drops_peers(), "{impact:?}");

    let v = h.view();
    assert_eq!(v.code.as_deref(), Some(code.as_str()), "the code changed");
    assert_eq!(v.max_peers, 2);
    // The browser join page's next load gets the new STUN/TURN list.
    let page_cfg = reqwest::get(format!("{}/join/config.json", v.urls[0]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        page_cfg,
        r#"{"iceServers":[{"urls":["stun:127.0.0.1:9"]}]}"#
    );
    assert_eq!(v.connected(), 1);
    let second = join(&v, "Second").await.expect("the second joins");
    let v = wait_view(&h, "two connected", |v| v.connected() == 2).await;
    assert!(v.peers.iter().any(|p| p.id == first_id), "{:?}", v.peers);
    assert_eq!(v.code.as_deref(), Some(code.as_str()));
    // Nobody left and no new code was announced meanwhile.
    while let Ok(e) = events.try_recv() {
        if let HostedEvent::Host(e) = e {
            assert!(
                !matches!(e, HostEvent::Hosting { renewed: true, .. }),
                "{e:?}"
            );
            if let HostEvent::Peer(jam::registry::RegistryEvent::Left { peer, .. }) = &e {
                assert_ne!(peer.id, first_id, "the first peer was dropped");
            }
        }
    }
    second.leave().await;
    first.leave().await;
    h.stop().await;
}

/// A new name is the one change on the same rendezvous that restarts the
/// host: the peer in is dropped (which is why a front end asks first, from
/// [`Impact::drops_peers`]), and the jam comes back under the same code, so
/// the code people were told still lets them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_name_restarts_the_host_under_the_same_code_on_the_same_port() {
    let old = config(4);
    let (h, mut events) = Hosted::start(old.clone());
    let v = wait_view(&h, "a code", |v| v.code.is_some()).await;
    let (code, port) = (v.code.clone().unwrap(), v.port);
    let j = join(&v, "Player").await.expect("joins");
    wait_view(&h, "one connected", |v| v.connected() == 1).await;

    let new = HostedConfig {
        name: "Renamed".into(),
        ..old.clone()
    };
    let impact = h.apply(new).await;
    assert!(impact.host && !impact.rendezvous, "{impact:?}");
    wait_event(&mut events, "the peer leaves", |e| {
        matches!(
            e,
            HostEvent::Peer(jam::registry::RegistryEvent::Left { .. })
        )
    })
    .await;
    let v = wait_view(&h, "hosting again", |v| {
        v.phase == Phase::Hosting && v.code.is_some()
    })
    .await;
    assert_eq!(v.code.as_deref(), Some(code.as_str()), "the code stays");
    assert_eq!(v.port, port, "the rendezvous kept its port");
    assert_eq!(v.connected(), 0);
    // The joiner was told the jam comes back under the same code.
    let mut jv = j.watch();
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(r) = jv.borrow_and_update().left_reason.clone() {
                return r;
            }
            if jv.changed().await.is_err() {
                return String::new();
            }
        }
    })
    .await
    .expect("the joiner's left reason");
    assert!(
        left.contains("restarting the jam under the same code"),
        "{left}"
    );
    j.leave().await;
    // The same code lets the next joiner into the restarted host.
    let again = join(&v, "Player again").await.expect("joins again");
    let v = wait_view(&h, "one connected again", |v| v.connected() == 1).await;
    assert_eq!(v.peers[0].display_name.as_deref(), Some("Player again"));
    again.leave().await;
    h.stop().await;
}

/// What `midi-rdv host` prints: the first event is the code, the last the
/// host's `Stopped`, delivered before `stop` returns.
#[tokio::test]
async fn events_start_with_the_code_and_end_with_stopped() {
    let (h, mut events) = Hosted::start(config(2));
    let first = match events.recv().await.expect("an event") {
        HostedEvent::Host(e) => e,
        other => panic!("first event: {other:?}"),
    };
    let HostEvent::Hosting {
        code,
        urls,
        renewed,
    } = first
    else {
        panic!("first event: {first:?}")
    };
    assert!(!renewed);
    assert_eq!(code.len(), 4);
    assert!(urls[0].starts_with("http://127.0.0.1:"), "{urls:?}");
    let v = wait_view(&h, "the code", |v| v.code.is_some()).await;
    assert_eq!(v.code.as_deref(), Some(code.as_str()));
    assert_eq!(v.join_link, Some(format!("{}/join/{code}", urls[0])));
    assert!(v.qr_svg.is_some_and(|s| s.contains("<svg")));
    h.stop().await;
    let mut last = None;
    while let Ok(e) = events.try_recv() {
        last = Some(e);
    }
    assert_eq!(last, Some(HostedEvent::Host(HostEvent::Stopped)));
}

/// A port that is taken, with no other port to try, fails with the reason
/// and without retrying (the headless host's way); nothing else changes.
#[tokio::test]
async fn a_busy_port_without_fallback_fails_with_the_reason() {
    let held = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let mut cfg = config(2);
    cfg.rendezvous = RendezvousChoice::Bundled {
        bind: LOOPBACK,
        port,
        port_attempts: 1,
    };
    let (h, _events) = Hosted::start(cfg);
    let v = wait_view(&h, "the failure", |v| v.phase == Phase::Failed).await;
    let n = v.notices.last().expect("a notice");
    assert!(
        n.message
            .starts_with(&format!("Cannot listen on 127.0.0.1:{port}:")),
        "{}",
        n.message
    );
    assert!(!n.message.contains("Trying again"), "{}", n.message);
    assert_eq!(v.code, None);
    h.stop().await;
}
