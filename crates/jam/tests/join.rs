//! The joiner (`jam::joiner`) against real parts on loopback: the bundled
//! rendezvous on 127.0.0.1:0 over real HTTP, our jam host (`jam::host`) or a
//! hand-rolled host built from the rendezvous's in-process API and
//! `jam::rtc::answer_offer`, and webrtc-rs on 127.0.0.1 only. No ICE
//! servers, no mDNS, nothing but 127.0.0.1.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jam::framing::{self, Frame};
use jam::host::{Host, HostConfig, HostEvent};
use jam::joiner::{
    JoinConfig, JoinError, JoinEvent, JoinPhase, JoinTimeouts, JoinView, Joiner, MidiChannel,
};
use jam::protocol::ClientKind;
use jam::registry::RegistryEvent;
use jam::rtc::{LinkEvent, RtcConfig};
use jam::signal::Target;
use rdv::code::Code;
use rdv::table::TableLimits;
use rdv::{Config, Rendezvous, RunningServer};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Bound on anything that takes milliseconds when it works.
const WITHIN: Duration = Duration::from_secs(10);

fn rtc() -> RtcConfig {
    RtcConfig {
        ice_servers: Vec::new(),
        gather_timeout: Duration::from_secs(2),
        bind_ips: vec![LOCALHOST],
        resolve_mdns: false,
    }
}

fn join_cfg(url: &str, code: &str, name: &str) -> JoinConfig {
    JoinConfig {
        rtc: rtc(),
        ..JoinConfig::new(
            url.parse().expect("a rendezvous URL"),
            Some(code.to_owned()),
            name,
        )
    }
}

async fn rendezvous(table: TableLimits) -> RunningServer {
    let config = Config {
        table,
        ..Config::default()
    };
    RunningServer::start(SocketAddr::new(LOCALHOST, 0), Rendezvous::new(config))
        .await
        .expect("rendezvous binds 127.0.0.1")
}

struct Hosted {
    server: RunningServer,
    host: Host,
    events: broadcast::Receiver<HostEvent>,
    url: String,
    code: String,
}

async fn host(max_peers: usize, table: TableLimits) -> Hosted {
    let server = rendezvous(table).await;
    let (host, mut events) = Host::start(HostConfig {
        display_name: "Ada's jam".into(),
        machine_id: String::new(),
        session_id: "join-test".into(),
        max_peers,
        rtc: rtc(),
        target: Target::bundled(server.rdv.clone()),
        share_urls: vec![server.url()],
        keep_code: None,
    })
    .await
    .expect("host starts");
    let code = match events.recv().await {
        Ok(HostEvent::Hosting { code, .. }) => code,
        other => panic!("first host event: {other:?}"),
    };
    let url = server.url();
    Hosted {
        server,
        host,
        events,
        url,
        code,
    }
}

/// The next host peer event matching `pred`.
async fn host_event(
    events: &mut broadcast::Receiver<HostEvent>,
    pred: impl Fn(&RegistryEvent) -> bool,
) -> RegistryEvent {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(HostEvent::Peer(e)) if pred(&e) => return e,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("host events ended: {e}"),
            }
        }
    };
    tokio::time::timeout(WITHIN, wait)
        .await
        .expect("host event in time")
}

async fn view_until(
    view: &mut watch::Receiver<JoinView>,
    what: &str,
    pred: impl Fn(&JoinView) -> bool,
) -> JoinView {
    let got = match tokio::time::timeout(WITHIN, view.wait_for(|v| pred(v))).await {
        Ok(Ok(v)) => Some(v.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("{what}: not within {WITHIN:?}; view: {:?}", view.borrow()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_is_welcomed_and_listed_by_the_host_as_this_app() {
    let mut h = host(8, TableLimits::default()).await;
    let t0 = Instant::now();
    // Codes are typed in any case.
    let cfg = join_cfg(&h.url, &h.code.to_lowercase(), "Bob");
    let (joiner, mut events) = Joiner::join(cfg).await.expect("joins");
    let took = t0.elapsed();
    let v = joiner.view();
    assert_eq!(v.phase, JoinPhase::Connected);
    assert_eq!(v.code.as_deref(), Some(h.code.as_str()));
    assert_eq!(v.host_name.as_deref(), Some("Ada's jam"));
    assert_eq!(v.mode.as_deref(), Some("edit"));
    assert!(v.join_ms.is_some());
    eprintln!("joined in {took:?} (view: {:?} ms)", v.join_ms);

    let connected = host_event(&mut h.events, |e| {
        matches!(e, RegistryEvent::Connected { .. })
    })
    .await;
    let peer = connected.peer();
    assert_eq!(peer.client, ClientKind::ThisApp, "{peer:?}");
    assert_eq!(peer.display_name.as_deref(), Some("Bob"));
    assert_eq!(peer.machine_id.as_deref(), Some(v.machine_id.as_str()));

    // Our host's peer list arrives, names us, and offers the midi channel,
    // which the joiner then opens on the running connection.
    let mut w = joiner.watch();
    let v = view_until(&mut w, "peer list and midi", |v| {
        !v.peers.is_empty() && v.midi_open
    })
    .await;
    assert_eq!(v.peers.len(), 1);
    assert!(v.peers[0].you);
    assert_eq!(v.peers[0].client, "thisApp");
    assert!(v
        .host_client
        .as_deref()
        .is_some_and(|c| c.starts_with("midi-jam/")));
    assert!(v.host_machine_id.is_some());

    // The events tell the same story, in order.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    let steps: Vec<String> = seen
        .iter()
        .filter_map(|e| match e {
            JoinEvent::Step { step, .. } => Some(format!("{step:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "CheckingRendezvous",
            "VerifyingCode",
            "Offering",
            "WaitingForHost",
            "Connecting",
            "Greeting",
            "Joined"
        ]
    );
    assert!(seen.iter().any(|e| matches!(e, JoinEvent::Joined { .. })));
    joiner.leave().await;
    h.host.stop().await;
    let _ = h.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_joiner_sees_the_first_and_the_first_hears_of_the_second() {
    let h = host(8, TableLimits::default()).await;
    let (first, _) = Joiner::join(join_cfg(&h.url, &h.code, "First"))
        .await
        .expect("first joins");
    let mut w1 = first.watch();
    view_until(&mut w1, "first's own list", |v| v.peers.len() == 1).await;
    let (second, _) = Joiner::join(join_cfg(&h.url, &h.code, "Second"))
        .await
        .expect("second joins");
    let mut w2 = second.watch();
    let v2 = view_until(&mut w2, "second sees both", |v| v.peers.len() == 2).await;
    let names: HashSet<&str> = v2.peers.iter().map(|p| p.display_name.as_str()).collect();
    assert_eq!(names, HashSet::from(["First", "Second"]));
    let me: Vec<&str> = v2
        .peers
        .iter()
        .filter(|p| p.you)
        .map(|p| p.display_name.as_str())
        .collect();
    assert_eq!(me, ["Second"]);
    let first_entry = v2.peers.iter().find(|p| p.display_name == "First").unwrap();
    assert_eq!(first_entry.machine_id, first.view().machine_id);
    let v1 = view_until(&mut w1, "first hears of the second", |v| v.peers.len() == 2).await;
    assert!(v1
        .peers
        .iter()
        .any(|p| p.display_name == "Second" && !p.you));

    // The second leaves: the first hears of it.
    second.leave().await;
    view_until(&mut w1, "first hears the second left", |v| {
        v.peers.len() == 1
    })
    .await;
    first.leave().await;
    h.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_fails_fast() {
    let h = host(8, TableLimits::default()).await;
    let wrong = if h.code == "ZZZZ" { "YYYY" } else { "ZZZZ" };
    let t0 = Instant::now();
    let err = Joiner::join(join_cfg(&h.url, wrong, "Bob"))
        .await
        .expect_err("wrong code");
    assert_eq!(err, JoinError::WrongCode { code: wrong.into() });
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert!(err.to_string().contains("There is no jam with the code"));
    // Not a code at all: refused without asking anyone.
    let err = Joiner::join(join_cfg(&h.url, "AB", "Bob"))
        .await
        .expect_err("short code");
    assert!(matches!(err, JoinError::WrongCode { .. }), "{err:?}");
    h.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_jam_is_reported_as_full_by_the_host_and_by_the_rendezvous() {
    // The host's cap: joinrejected after hello.
    let mut h = host(1, TableLimits::default()).await;
    let (first, _) = Joiner::join(join_cfg(&h.url, &h.code, "First"))
        .await
        .expect("first joins");
    let err = Joiner::join(join_cfg(&h.url, &h.code, "Second"))
        .await
        .expect_err("the jam is full");
    assert!(
        matches!(&err, JoinError::JamFull { detail } if detail.contains("full")),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("The jam is full"), "{err}");
    let left = host_event(&mut h.events, |e| {
        matches!(
            e,
            RegistryEvent::Left {
                reason: jam::protocol::LeaveReason::Full { .. },
                ..
            }
        )
    })
    .await;
    // Refused at hello: the host never listed it by name.
    assert_eq!(left.peer().display_name, None);
    first.leave().await;
    h.host.stop().await;

    // The rendezvous's slot cap: 503 on the offer.
    let h = host(
        8,
        TableLimits {
            max_peers: 1,
            ..TableLimits::default()
        },
    )
    .await;
    let (first, _) = Joiner::join(join_cfg(&h.url, &h.code, "First"))
        .await
        .expect("first joins");
    let err = Joiner::join(join_cfg(&h.url, &h.code, "Second"))
        .await
        .expect_err("no slot");
    assert!(
        matches!(&err, JoinError::JamFull { detail } if detail.contains("session is full")),
        "{err:?}"
    );
    first.leave().await;
    h.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_is_seen_by_the_host_and_stopping_the_host_is_seen_by_the_joiner() {
    let mut h = host(8, TableLimits::default()).await;
    let (a, _) = Joiner::join(join_cfg(&h.url, &h.code, "Leaver"))
        .await
        .expect("joins");
    let (b, _) = Joiner::join(join_cfg(&h.url, &h.code, "Stayer"))
        .await
        .expect("joins");
    host_event(&mut h.events, |e| {
        matches!(e, RegistryEvent::Connected { peer } if peer.display_name.as_deref() == Some("Stayer"))
    })
    .await;
    let t0 = Instant::now();
    a.leave().await;
    let left = host_event(&mut h.events, |e| matches!(e, RegistryEvent::Left { .. })).await;
    assert_eq!(left.peer().display_name.as_deref(), Some("Leaver"));
    eprintln!("leave seen by the host after {:?}", t0.elapsed());

    let mut w = b.watch();
    let mut events = b.subscribe();
    h.host.stop().await;
    let v = view_until(&mut w, "the joiner sees the jam end", |v| {
        v.phase == JoinPhase::Left
    })
    .await;
    assert_eq!(v.left_reason.as_deref(), Some("The host ended the jam."));
    let mut chat = false;
    while let Ok(e) = events.try_recv() {
        chat |= matches!(&e, JoinEvent::Chat { text, .. } if text == "The host ended the jam.");
    }
    assert!(chat, "the host's farewell chat reached the joiner");
    b.leave().await;
    let _ = h.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_unusable_addresses_are_reported_plainly() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    let err = Joiner::join(join_cfg(&url, "ABCD", "Bob"))
        .await
        .expect_err("nothing there");
    assert!(
        matches!(&err, JoinError::Unreachable { url: u, .. } if *u == url),
        "{err:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert!(
        err.to_string().starts_with("Cannot reach the jam at"),
        "{err}"
    );

    // An address without a scheme is no rendezvous URL; the typed-address
    // helper makes one of it.
    let err = "10.0.0.5:8787"
        .parse::<jam::types::RendezvousUrl>()
        .expect_err("no scheme");
    assert!(err.to_string().contains("http://"), "{err}");
    assert_eq!(
        jam::joiner::parse_address("10.0.0.5:8787")
            .unwrap()
            .as_str(),
        "http://10.0.0.5:8787"
    );
    let err = Joiner::join(JoinConfig {
        rtc: rtc(),
        ..JoinConfig::new(url.parse().unwrap(), None, "Bob")
    })
    .await
    .expect_err("no code");
    assert_eq!(err, JoinError::CodeNeeded);

    // Something answers, but it is not a rendezvous.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = "<html>router</html>";
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    let err = Joiner::join(join_cfg(&format!("http://{addr}"), "ABCD", "Bob"))
        .await
        .expect_err("a web page");
    assert!(matches!(&err, JoinError::NotAJam { .. }), "{err:?}");
}

// ------------------------------------------------- a hand-rolled host

/// How the hand-rolled host behaves.
#[derive(Clone, Copy)]
struct Script {
    /// Malformed messages sent before the welcome.
    garbage_first: bool,
    /// Send a welcome at all.
    welcome: bool,
    /// Send our `peerList` offering the midi channel.
    roster: bool,
    /// Answer heartbeats (and send one) or stay silent after the welcome.
    heartbeats: bool,
}

/// A host made of the rendezvous's in-process API and `jam::rtc`: answers
/// one joiner, then does what `script` says, echoes every `midi` message,
/// and reports what it received.
async fn scripted_host(
    server: &RunningServer,
    script: Script,
) -> (String, tokio::sync::mpsc::Receiver<(String, Bytes)>) {
    let rdv = server.rdv.clone();
    let created = rdv
        .host_open("scripted", "Scripted host", true)
        .expect("session");
    let code = created.code.to_string();
    let token = created.host_token.clone();
    let (seen_tx, seen_rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        let c = Code::parse_route(&code).unwrap();
        let offers = loop {
            match rdv
                .host_next_offers(c, &token, &HashSet::new(), Duration::from_secs(20))
                .await
            {
                Some(o) if !o.is_empty() => break o,
                Some(_) => continue,
                None => return,
            }
        };
        let offer = &offers[0];
        let mut answered = jam::rtc::answer_offer(&offer.sdp, &rtc())
            .await
            .expect("answer");
        rdv.host_answer(c, &token, &offer.joiner_id, answered.answer_sdp.clone())
            .expect("answer posted");
        let link = answered.link.clone();
        while let Some(ev) = answered.events.recv().await {
            match ev {
                LinkEvent::ChannelOpen { label } => {
                    let _ = seen_tx.send((format!("open:{label}"), Bytes::new())).await;
                }
                LinkEvent::Message { label, data, .. } if label == "midi" => {
                    let _ = seen_tx.send(("midi".into(), data.clone())).await;
                    let _ = link.send("midi", data).await;
                }
                LinkEvent::Message { label, data, .. } => {
                    let kind = match framing::decode(&data, usize::MAX) {
                        Ok(Frame::Json { kind, .. }) => kind,
                        other => format!("{other:?}"),
                    };
                    let _ = seen_tx.send((kind.clone(), data.clone())).await;
                    if kind != "hello" {
                        continue;
                    }
                    let send = |v: Value| link.send(&label, Bytes::from(framing::encode_json(&v)));
                    if script.garbage_first {
                        for junk in [
                            &b"\x00\x00"[..],
                            b"{\"type\":\"x\"}",
                            &[0xff; 9],
                            &framing::encode(b"not json"),
                        ] {
                            let _ = link.send(&label, Bytes::copy_from_slice(junk)).await;
                        }
                    }
                    if script.welcome {
                        let _ = send(json!({"type": "sessionWelcome", "mode": "show", "presenterMachineId": "scripted-host"})).await;
                    }
                    if script.roster {
                        let _ = send(json!({"type": "peerList", "host": {"machineId": "scripted-host", "displayName": "Scripted host",
                            "client": "midi-jam/0.0.0", "features": ["midi"]}, "maxPeers": 2,
                            "peers": [{"id": 7, "machineId": "someone", "displayName": "Someone", "client": "midiEditor"}]}))
                        .await;
                    }
                    if script.heartbeats {
                        let _ = send(json!({"type": "heartbeat"})).await;
                    }
                }
                LinkEvent::State(s) => {
                    let _ = seen_tx.send((format!("state:{s:?}"), Bytes::new())).await;
                }
                LinkEvent::ChannelClosed { label } => {
                    let _ = seen_tx
                        .send((format!("closed:{label}"), Bytes::new()))
                        .await;
                }
            }
        }
    });
    (created.code.to_string(), seen_rx)
}

async fn host_saw(seen: &mut tokio::sync::mpsc::Receiver<(String, Bytes)>, what: &str) -> Bytes {
    let wait = async {
        while let Some((k, b)) = seen.recv().await {
            if k == what {
                return b;
            }
        }
        panic!("the scripted host ended before {what}");
    };
    tokio::time::timeout(WITHIN, wait)
        .await
        .unwrap_or_else(|_| panic!("host never saw {what}"))
}

fn fast(mut cfg: JoinConfig) -> JoinConfig {
    cfg.timeouts = JoinTimeouts {
        welcome: Duration::from_secs(2),
        silence: Duration::from_secs(2),
        heartbeat_every: Duration::from_millis(500),
        ..JoinTimeouts::default()
    };
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_midi_channel_opens_when_the_host_offers_it_and_carries_bytes_both_ways() {
    let server = rendezvous(TableLimits::default()).await;
    let script = Script {
        garbage_first: true,
        welcome: true,
        roster: true,
        heartbeats: true,
    };
    let (code, mut seen) = scripted_host(&server, script).await;
    let mut cfg = join_cfg(&server.url(), &code, "Midi");
    cfg.timeouts.heartbeat_every = Duration::from_millis(500);
    let (joiner, _) = Joiner::join(cfg).await.expect("joins through garbage");
    let hello = host_saw(&mut seen, "hello").await;
    let Ok(Frame::Json { body, .. }) = framing::decode(&hello, usize::MAX) else {
        panic!("hello is a frame")
    };
    assert_eq!(body["sessionId"], "scripted");
    assert_eq!(body["displayName"], "Midi");
    assert!(body["client"].as_str().unwrap().starts_with("midi-jam/"));
    let mut w = joiner.watch();
    let v = view_until(&mut w, "midi open", |v| v.midi_open).await;
    assert_eq!(v.mode.as_deref(), Some("show"));
    assert_eq!(v.host_machine_id.as_deref(), Some("scripted-host"));
    assert_eq!(v.max_peers, Some(2));
    assert_eq!(v.peers.len(), 1);
    assert!(!v.peers[0].you);
    host_saw(&mut seen, "open:midi").await;

    let mut rx = joiner.take_midi_receiver().expect("receiver");
    assert!(joiner.take_midi_receiver().is_none(), "taken once");
    let note_on = Bytes::from_static(&[0x01, 0x90, 0x3c, 0x64]);
    joiner.send_midi(note_on.clone()).await.expect("sent");
    assert_eq!(host_saw(&mut seen, "midi").await, note_on);
    let echoed = tokio::time::timeout(WITHIN, rx.recv())
        .await
        .expect("echo in time");
    assert_eq!(echoed, Some(note_on));
    // Heartbeats keep flowing (every 500 ms here).
    host_saw(&mut seen, "heartbeat").await;
    joiner.leave().await;
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_midi_channel_can_be_in_the_offer_and_stays_shut_for_hosts_that_do_not_offer_it() {
    let server = rendezvous(TableLimits::default()).await;
    let plain = Script {
        garbage_first: false,
        welcome: true,
        roster: false,
        heartbeats: true,
    };
    // A MidiEditor-like host: welcome, no peer list. No midi channel.
    let (code, mut seen) = scripted_host(&server, plain).await;
    let (joiner, _) = Joiner::join(join_cfg(&server.url(), &code, "Plain"))
        .await
        .expect("joins");
    host_saw(&mut seen, "hello").await;
    // A negative check (no midi channel appears), so a fixed wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!joiner.view().midi_open);
    while let Ok((k, _)) = seen.try_recv() {
        assert_ne!(k, "open:midi", "no midi channel without the host's offer");
    }
    assert!(matches!(
        joiner.send_midi(Bytes::from_static(&[0x90])).await,
        Err(jam::joiner::MidiSendError::NotOpen)
    ));
    joiner.leave().await;

    // In the offer: both channels open together.
    let (code, mut seen) = scripted_host(&server, plain).await;
    let cfg = JoinConfig {
        midi: MidiChannel::InOffer,
        ..join_cfg(&server.url(), &code, "Offer")
    };
    let (joiner, _) = Joiner::join(cfg).await.expect("joins");
    let mut w = joiner.watch();
    view_until(&mut w, "midi open", |v| v.midi_open).await;
    joiner
        .send_midi(Bytes::from_static(&[0xf8]))
        .await
        .expect("sent");
    assert_eq!(
        host_saw(&mut seen, "midi").await,
        Bytes::from_static(&[0xf8])
    );
    joiner.leave().await;
    let _ = server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_welcomes_or_falls_silent_is_reported() {
    let server = rendezvous(TableLimits::default()).await;
    let mute = Script {
        garbage_first: true,
        welcome: false,
        roster: false,
        heartbeats: false,
    };
    let (code, _seen) = scripted_host(&server, mute).await;
    let err = Joiner::join(fast(join_cfg(&server.url(), &code, "Waiting")))
        .await
        .expect_err("no welcome");
    assert_eq!(err, JoinError::NoWelcome { secs: 2 });

    let silent = Script {
        garbage_first: false,
        welcome: true,
        roster: false,
        heartbeats: false,
    };
    let (code, _seen) = scripted_host(&server, silent).await;
    let (joiner, _) = Joiner::join(fast(join_cfg(&server.url(), &code, "Lonely")))
        .await
        .expect("joins");
    let mut w = joiner.watch();
    let v = view_until(&mut w, "silence noticed", |v| v.phase == JoinPhase::Left).await;
    assert!(
        v.left_reason
            .as_deref()
            .unwrap_or("")
            .contains("went silent"),
        "{v:?}"
    );
    joiner.leave().await;
    let _ = server.stop().await;
}

/// End to end through our host's relay (`jam::host`, `docs/midi-frames.md`):
/// a frame one joiner sends on `midi` reaches the other, re-stamped with the
/// sender's id from the peer list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_midi_from_one_joiner_reaches_the_other_through_our_host() {
    let h = host(8, TableLimits::default()).await;
    let (a, _) = Joiner::join(join_cfg(&h.url, &h.code, "A"))
        .await
        .expect("A joins");
    let (b, _) = Joiner::join(join_cfg(&h.url, &h.code, "B"))
        .await
        .expect("B joins");
    let mut wb = b.watch();
    let v = view_until(&mut wb, "B's midi open and A listed", |v| {
        v.midi_open && v.peers.iter().any(|p| p.display_name == "A")
    })
    .await;
    let a_id = v.peers.iter().find(|p| p.display_name == "A").unwrap().id;
    let mut wa = a.watch();
    view_until(&mut wa, "A's midi open", |v| v.midi_open).await;
    let mut rx = b.take_midi_receiver().expect("receiver");
    // Version 1, no flags, origin 0 (a joiner always writes 0), time 0,
    // then one Note On.
    let frame = Bytes::from_static(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0x3c, 0x64]);
    // The host routes a peer once both its channels are up: retry briefly.
    let got = tokio::time::timeout(WITHIN, async {
        loop {
            a.send_midi(frame.clone()).await.expect("sent");
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                break m;
            }
        }
    })
    .await
    .expect("relayed in time");
    assert_eq!(got[0], 1, "version");
    assert!(a_id < 128, "one-byte varint in this test");
    assert_eq!(u64::from(got[2]), a_id, "origin is the sender's peer id");
    assert_eq!(&got[got.len() - 3..], &[0x90, 0x3c, 0x64]);
    a.leave().await;
    b.leave().await;
    h.host.stop().await;
}
