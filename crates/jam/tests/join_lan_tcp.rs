//! The joiner's LAN Live path (`Joiner::join_lan`, plain TCP as
//! MidiEditor's LAN joiner speaks it) against our own host's TCP listener
//! (`Host::listen_lan_tcp`), all on 127.0.0.1: no MidiEditor needed, so CI
//! covers the path everywhere. The real-MidiEditor counterpart is
//! `crates/midi-rdv/tests/join_lan_live.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use jam::host::{Host, HostConfig, HostEvent};
use jam::joiner::{JoinConfig, JoinEvent, JoinPhase, Joiner, LanTarget, MidiChannel};
use jam::registry::RegistryEvent;
use jam::rtc::RtcConfig;
use jam::signal::Target;
use rdv::{Config, Rendezvous, RunningServer};
use tokio::sync::broadcast;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WITHIN: Duration = Duration::from_secs(10);

fn rtc() -> RtcConfig {
    RtcConfig {
        ice_servers: Vec::new(),
        gather_timeout: Duration::from_secs(2),
        bind_ips: vec![LOCALHOST],
        resolve_mdns: false,
    }
}

async fn next_chat(events: &mut broadcast::Receiver<JoinEvent>, want: &str) -> String {
    tokio::time::timeout(WITHIN, async {
        loop {
            match events.recv().await {
                Ok(JoinEvent::Chat {
                    display_name, text, ..
                }) if text == want => return display_name,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("joiner events ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no chat {want:?} in time"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_joiner_joins_our_host_over_lan_tcp_and_chats_both_ways() {
    let server = RunningServer::start(
        SocketAddr::new(LOCALHOST, 0),
        Rendezvous::new(Config::default()),
    )
    .await
    .expect("rendezvous binds 127.0.0.1");
    let (host, mut host_events) = Host::start(HostConfig {
        display_name: "Ada's jam".into(),
        machine_id: String::new(),
        session_id: "lan-tcp-test".into(),
        max_peers: 4,
        rtc: rtc(),
        target: Target::bundled(server.rdv.clone()),
        share_urls: vec![server.url()],
        keep_code: None,
    })
    .await
    .expect("host starts");
    let code = match host_events.recv().await {
        Ok(HostEvent::Hosting { code, .. }) => code,
        other => panic!("first host event: {other:?}"),
    };
    let tcp = host
        .listen_lan_tcp(
            SocketAddr::new(LOCALHOST, 0),
            8,
            jam::host::tcp::admit_all(),
        )
        .await
        .expect("TCP listener on 127.0.0.1");

    // What the datagram would carry.
    let target = LanTarget {
        addr: tcp,
        session_id: "lan-tcp-test".into(),
        host_name: "Ada's jam".into(),
        code: code.clone(),
    };
    let mut cfg = JoinConfig::new(server.url().parse().expect("url"), None, "Bea");
    cfg.midi = MidiChannel::WhenHostOffers;
    let (joiner, mut events) = tokio::time::timeout(WITHIN, Joiner::join_lan(cfg, target))
        .await
        .expect("welcomed in time")
        .expect("the TCP join succeeds");
    let v = joiner.view();
    assert_eq!(v.phase, JoinPhase::Connected);
    assert_eq!(v.rendezvous_url, format!("tcp://{tcp}"));
    assert_eq!(v.code.as_deref(), Some(code.as_str()));
    assert_eq!(v.host_name.as_deref(), Some("Ada's jam"));
    assert!(v.join_ms.is_some());

    // Presence: our host's peer list names us, over TCP.
    let mut watch = joiner.watch();
    tokio::time::timeout(WITHIN, watch.wait_for(|v| v.peers.iter().any(|p| p.you)))
        .await
        .expect("listed in time")
        .expect("view open");

    // Chat, host → joiner and joiner → host.
    host.chat("hello over TCP").await;
    assert_eq!(next_chat(&mut events, "hello over TCP").await, "Ada's jam");
    joiner.chat("hi from Bea").await.expect("chat sent");
    tokio::time::timeout(WITHIN, async {
        loop {
            match host_events.recv().await {
                Ok(HostEvent::Chat { display_name, text }) if text == "hi from Bea" => {
                    return display_name
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("host events ended: {e}"),
            }
        }
    })
    .await
    .map(|name| assert_eq!(name, "Bea"))
    .expect("the host hears Bea");
    // No live-MIDI channel over TCP, and the joiner says so rather than hangs.
    assert!(!joiner.midi_open());

    // Leaving closes the TCP link; the host's list empties.
    joiner.leave().await;
    tokio::time::timeout(WITHIN, async {
        loop {
            match host_events.recv().await {
                Ok(HostEvent::Peer(RegistryEvent::Left { .. })) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("host events ended: {e}"),
            }
        }
    })
    .await
    .expect("the host drops Bea after she leaves");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lan_join_to_a_closed_port_fails_with_a_reason() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind((LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let target = LanTarget {
        addr: SocketAddr::new(LOCALHOST, port),
        session_id: "x".into(),
        host_name: "Nobody".into(),
        code: "ABCD".into(),
    };
    let cfg = JoinConfig::new("http://127.0.0.1:1".parse().expect("url"), None, "Bea");
    let err = tokio::time::timeout(WITHIN, Joiner::join_lan(cfg, target))
        .await
        .expect("fails in time")
        .expect_err("nothing listens");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}
