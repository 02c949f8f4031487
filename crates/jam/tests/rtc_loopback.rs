//! `jam::rtc` against a webrtc-rs offerer in the same process, on loopback.
//!
//! The offerer plays a MidiEditor joiner: it binds 127.0.0.1 only, uses no ICE
//! servers, creates an in-band `midieditor` channel (reliable, ordered,
//! binary), gathers completely before publishing its offer (non-trickle) and
//! advertises `a=max-message-size:16777216` as libdatachannel does. Nothing
//! here leaves 127.0.0.0/8: no STUN/TURN, no mDNS, no other interface.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use jam::rtc::{
    answer_offer, Answered, LinkEvent, LinkState, Route, RtcConfig, RtcError, MAX_MESSAGE_SIZE,
};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, RTCStatsReportEntry,
    SettingEngineBuilder, StatsSelector,
};

/// Generous bound for anything that should take milliseconds on loopback.
const STEP: Duration = Duration::from_secs(10);

fn loopback_config() -> RtcConfig {
    RtcConfig {
        ice_servers: Vec::new(),
        gather_timeout: Duration::from_secs(2),
        bind_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        resolve_mdns: false,
    }
}

/// What the offerer's data channels and connection report, in one stream.
#[derive(Debug)]
enum OffererEvent {
    Open(String),
    Message(String, Bytes),
    Closed(String),
}

struct OffererHandler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for OffererHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }
}

/// The joiner side of a test.
struct Offerer {
    pc: Arc<dyn PeerConnection>,
    channels: HashMap<String, Arc<dyn DataChannel>>,
    events: mpsc::UnboundedReceiver<OffererEvent>,
    state: watch::Receiver<RTCPeerConnectionState>,
    /// The offer SDP as published (complete, with candidates).
    offer_sdp: String,
}

impl Offerer {
    /// Builds an offerer with one in-band channel per label and gathers
    /// completely, like MidiEditor before it publishes its offer.
    async fn new(labels: &[&str]) -> Offerer {
        let (gathered_tx, mut gathered_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
            .with_sctp_max_message_size(SctpMaxMessageSize::Unbounded)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_handler(Arc::new(OffererHandler {
                gathered: gathered_tx,
                state: state_tx,
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("offerer builds");
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let (events_tx, events) = mpsc::unbounded_channel();
        let mut channels = HashMap::new();
        for label in labels {
            // Default init: in-band (DCEP), reliable, ordered.
            let channel = pc
                .create_data_channel(label, None)
                .await
                .expect("offerer creates its data channel");
            tokio::spawn(pump(label.to_string(), channel.clone(), events_tx.clone()));
            channels.insert(label.to_string(), channel);
        }

        let offer = pc.create_offer(None).await.expect("offer");
        pc.set_local_description(offer).await.expect("local offer");
        tokio::time::timeout(STEP, gathered_rx.wait_for(|done| *done))
            .await
            .expect("offerer gathers on loopback")
            .unwrap();
        let sdp = pc.local_description().await.expect("local description").sdp;
        // libdatachannel offers 16 MiB; the answer decides what is used.
        let offer_sdp = set_max_message_size(&sdp, 16_777_216);

        Offerer {
            pc,
            channels,
            events,
            state: state_rx,
            offer_sdp,
        }
    }

    async fn accept(&self, answer_sdp: &str) {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned()).expect("answer parses");
        self.pc
            .set_remote_description(answer)
            .await
            .expect("offerer accepts our answer");
    }

    async fn send(&self, label: &str, data: &[u8]) {
        self.channels[label]
            .send(BytesMut::from(data))
            .await
            .expect("offerer sends");
    }

    /// STUN responses the offerer received on its selected candidate pair,
    /// i.e. how many of its checks (consent checks, once connected) we answered.
    async fn consent_responses_received(&self) -> u64 {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let responses = report.iter().find_map(|entry| match entry {
            RTCStatsReportEntry::IceCandidatePair(pair) if pair.nominated => {
                Some(pair.responses_received)
            }
            _ => None,
        });
        responses.expect("the offerer has a nominated pair")
    }

    async fn next(&mut self) -> OffererEvent {
        tokio::time::timeout(STEP, self.events.recv())
            .await
            .expect("offerer event in time")
            .expect("offerer event stream open")
    }

    /// Waits until every listed channel has opened on the offerer's side.
    async fn wait_open(&mut self, labels: &[&str]) {
        let mut pending: Vec<&str> = labels.to_vec();
        while !pending.is_empty() {
            if let OffererEvent::Open(open) = self.next().await {
                pending.retain(|label| *label != open);
            }
        }
    }

    async fn next_message(&mut self) -> (String, Bytes) {
        loop {
            if let OffererEvent::Message(label, data) = self.next().await {
                return (label, data);
            }
        }
    }
}

async fn pump(
    label: String,
    channel: Arc<dyn DataChannel>,
    events: mpsc::UnboundedSender<OffererEvent>,
) {
    while let Some(event) = channel.poll().await {
        let event = match event {
            DataChannelEvent::OnOpen => OffererEvent::Open(label.clone()),
            DataChannelEvent::OnMessage(message) => {
                OffererEvent::Message(label.clone(), message.data.freeze())
            }
            DataChannelEvent::OnClose => OffererEvent::Closed(label.clone()),
            _ => continue,
        };
        let _ = events.send(event);
    }
}

fn set_max_message_size(sdp: &str, size: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut replaced = false;
    for line in sdp.split("\r\n") {
        if line.starts_with("a=max-message-size:") {
            lines.push(format!("a=max-message-size:{size}"));
            replaced = true;
        } else {
            lines.push(line.to_owned());
        }
    }
    assert!(
        replaced,
        "offer carries a max-message-size to replace:\n{sdp}"
    );
    lines.join("\r\n")
}

/// Next event from our side of the link, within [`STEP`].
async fn next_event(answered: &mut Answered) -> LinkEvent {
    tokio::time::timeout(STEP, answered.events.recv())
        .await
        .expect("link event in time")
        .expect("link event stream still open")
}

/// Waits until every listed channel has opened on our side.
async fn wait_channels_open(answered: &mut Answered, labels: &[&str]) {
    let mut pending: Vec<&str> = labels.to_vec();
    while !pending.is_empty() {
        if let LinkEvent::ChannelOpen { label: open } = next_event(answered).await {
            pending.retain(|label| *label != open);
        }
    }
}

async fn next_message(answered: &mut Answered) -> (String, Bytes, bool) {
    loop {
        if let LinkEvent::Message {
            label,
            data,
            is_text,
        } = next_event(answered).await
        {
            return (label, data, is_text);
        }
    }
}

/// A connected pair: the offerer and our answer, every listed channel open on
/// both sides. Also returns offer→open time measured on our side.
async fn connect(labels: &[&str]) -> (Offerer, Answered, Duration) {
    connect_with(labels, false).await
}

/// [`connect`], optionally working around the offerer's own driver stall.
///
/// webrtc-rs 0.21.1's driver only flushes what its core queued while pumping
/// events (DTLS ClientHello after ICE connects, SCTP INIT after DTLS, DCEP OPEN
/// after SCTP) on its next wake-up, up to 200 ms later once connected. As the
/// DTLS/SCTP client the *offerer* hits this twice (~400 ms); our answerer, as
/// server, only ever replies and is not affected. `nudge` wakes the offerer's
/// driver every millisecond until its channels open (any data-channel call
/// wakes it), which makes it behave like a peer with a prompt event loop
/// (libdatachannel, browsers), so the time measured is the time our side needs.
async fn connect_with(labels: &[&str], nudge: bool) -> (Offerer, Answered, Duration) {
    let mut offerer = Offerer::new(labels).await;
    let started = Instant::now();
    let mut answered = answer_offer(&offerer.offer_sdp, &loopback_config())
        .await
        .expect("we answer a well-formed offer");
    offerer.accept(&answered.answer_sdp).await;
    let nudger = nudge.then(|| {
        let channel = offerer.channels[labels[0]].clone();
        tokio::spawn(async move {
            loop {
                let _ = channel.set_buffered_amount_low_threshold(0).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    });
    wait_channels_open(&mut answered, labels).await;
    let offer_to_open = started.elapsed();
    offerer.wait_open(labels).await;
    if let Some(nudger) = nudger {
        nudger.abort();
    }
    (offerer, answered, offer_to_open)
}

fn candidate_lines(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|line| line.starts_with("a=candidate:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_is_complete_sdp_with_raw_loopback_candidates_and_256k_max_message_size() {
    let offerer = Offerer::new(&["midieditor"]).await;
    let started = Instant::now();
    let answered = answer_offer(&offerer.offer_sdp, &loopback_config())
        .await
        .expect("answer");
    eprintln!(
        "answer_offer (build + apply offer + answer + gather): {:?}",
        started.elapsed()
    );
    let sdp = &answered.answer_sdp;

    assert!(
        sdp.contains("m=application"),
        "answer accepts the data section:\n{sdp}"
    );
    let candidates = candidate_lines(sdp);
    assert!(
        !candidates.is_empty(),
        "non-trickle answer carries its candidates:\n{sdp}"
    );
    for line in &candidates {
        // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields.get(4).expect("candidate has an address");
        assert!(!address.ends_with(".local"), "no mDNS candidate: {line}");
        let ip: IpAddr = address.parse().unwrap_or_else(|_| panic!("raw IP: {line}"));
        assert_eq!(
            ip,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "bound to loopback only: {line}"
        );
        assert_eq!(fields.get(7), Some(&"host"), "host candidate: {line}");
    }
    assert!(
        !sdp.contains(".local"),
        "no .local anywhere in the answer:\n{sdp}"
    );
    assert!(
        sdp.contains(&format!("a=max-message-size:{MAX_MESSAGE_SIZE}\r\n")),
        "answer advertises {MAX_MESSAGE_SIZE}:\n{sdp}"
    );
    assert_eq!(MAX_MESSAGE_SIZE, 262_144);
    answered.link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midieditor_channel_opens_and_carries_binary_both_ways() {
    let mut timings = Vec::new();
    for round in 0..5 {
        let (mut offerer, mut answered, offer_to_open) = connect(&["midieditor"]).await;
        timings.push(offer_to_open);
        assert!(
            answered.answer_sdp.contains("a=setup:passive"),
            "we take the DTLS server role when the offerer lets us choose"
        );

        if round == 0 {
            // Joiner → host: a MidiEditor-style frame, [u32 BE length][JSON].
            let hello = br#"{"type":"hello","displayName":"Bob"}"#;
            let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(hello);
            offerer.send("midieditor", &frame).await;
            let (label, data, is_text) = next_message(&mut answered).await;
            assert_eq!(label, "midieditor");
            assert_eq!(&data[..], &frame[..]);
            assert!(!is_text, "binary in, binary out");

            // Host → joiner, and many in a row stay in order.
            for i in 0u32..100 {
                answered
                    .link
                    .send("midieditor", Bytes::from(i.to_be_bytes().to_vec()))
                    .await
                    .expect("we send");
            }
            for i in 0u32..100 {
                let (label, data) = offerer.next_message().await;
                assert_eq!(label, "midieditor");
                assert_eq!(&data[..], &i.to_be_bytes());
            }
            assert_eq!(answered.link.state(), LinkState::Connected);
            assert_eq!(answered.link.open_channels(), vec!["midieditor".to_owned()]);
        }
        answered.link.close().await;
    }
    report_timings("offer -> channel open, webrtc-rs offerer as is", timings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_opens_within_tens_of_ms_of_the_offer_with_a_prompt_offerer() {
    let mut timings = Vec::new();
    for _ in 0..5 {
        let (_offerer, answered, offer_to_open) = connect_with(&["midieditor"], true).await;
        timings.push(offer_to_open);
        answered.link.close().await;
    }
    let median = report_timings("offer -> channel open, prompt offerer", timings);
    // Loose bound (debug build, shared CI machine); typically 30-40 ms.
    assert!(median < Duration::from_millis(150), "median {median:?}");
}

fn report_timings(what: &str, mut timings: Vec<Duration>) -> Duration {
    let runs = timings.clone();
    timings.sort();
    let median = timings[timings.len() / 2];
    eprintln!(
        "{what}, {} runs: {runs:?} (min {:?}, median {median:?}, max {:?})",
        runs.len(),
        timings[0],
        timings[timings.len() - 1]
    );
    median
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_advertised_message_arrives_intact_both_ways_and_larger_is_refused() {
    let (mut offerer, mut answered, _) = connect(&["midieditor"]).await;
    assert_eq!(
        answered.link.max_message_size().await,
        Some(MAX_MESSAGE_SIZE)
    );

    let big: Vec<u8> = (0..MAX_MESSAGE_SIZE)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let started = Instant::now();
    offerer.send("midieditor", &big).await;
    let (label, data, _) = next_message(&mut answered).await;
    eprintln!(
        "{} bytes joiner -> host: {:?}",
        big.len(),
        started.elapsed()
    );
    assert_eq!(label, "midieditor");
    assert_eq!(data.len(), big.len());
    assert!(data[..] == big[..], "payload intact");

    let started = Instant::now();
    answered
        .link
        .send("midieditor", Bytes::from(big.clone()))
        .await
        .expect("we may send the negotiated maximum");
    let (_, data) = offerer.next_message().await;
    eprintln!(
        "{} bytes host -> joiner: {:?}",
        big.len(),
        started.elapsed()
    );
    assert!(data[..] == big[..], "payload intact");

    let too_big = Bytes::from(vec![0u8; MAX_MESSAGE_SIZE + 1]);
    match answered.link.send("midieditor", too_big).await {
        Err(RtcError::MessageTooLarge { len, max }) => {
            assert_eq!((len, max), (MAX_MESSAGE_SIZE + 1, MAX_MESSAGE_SIZE));
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    // The refused send did not hurt the link.
    answered
        .link
        .send("midieditor", Bytes::from_static(b"still here"))
        .await
        .unwrap();
    assert_eq!(&offerer.next_message().await.1[..], b"still here");
    answered.link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_host_route_rtt_and_byte_counts_after_traffic() {
    let (mut offerer, mut answered, _) = connect(&["midieditor"]).await;
    for _ in 0..20 {
        offerer.send("midieditor", &[1, 2, 3, 4]).await;
        next_message(&mut answered).await;
        answered
            .link
            .send("midieditor", Bytes::from_static(&[5, 6, 7, 8]))
            .await
            .unwrap();
        offerer.next_message().await;
    }
    let stats = answered.link.stats().await;
    eprintln!("stats after traffic: {stats:?}");
    assert_eq!(stats.route, Route::Host);
    let rtt = stats.rtt.expect("an ICE round trip was measured");
    assert!(
        rtt < Duration::from_secs(1),
        "loopback rtt is small: {rtt:?}"
    );
    assert!(stats.bytes_out > 80, "{stats:?}");
    assert!(stats.bytes_in > 80, "{stats:?}");
    answered.link.close().await;
    assert_eq!(answered.link.stats().await.route, Route::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_joiners_second_midi_channel_is_accepted_and_addressed_by_label() {
    let (mut offerer, mut answered, _) = connect(&["midieditor", "midi"]).await;
    assert_eq!(
        answered.link.open_channels(),
        vec!["midi".to_owned(), "midieditor".to_owned()]
    );

    offerer.send("midi", &[0x90, 60, 100]).await;
    let (label, data, _) = next_message(&mut answered).await;
    assert_eq!((label.as_str(), &data[..]), ("midi", &[0x90, 60, 100][..]));

    answered
        .link
        .send("midi", Bytes::from_static(&[0x80, 60, 0]))
        .await
        .unwrap();
    answered
        .link
        .send("midieditor", Bytes::from_static(b"frame"))
        .await
        .unwrap();
    let mut got = vec![offerer.next_message().await, offerer.next_message().await];
    got.sort();
    assert_eq!(
        got,
        vec![
            ("midi".to_owned(), Bytes::from_static(&[0x80, 60, 0])),
            ("midieditor".to_owned(), Bytes::from_static(b"frame")),
        ]
    );

    match answered.link.send("nope", Bytes::new()).await {
        Err(RtcError::NoSuchChannel(label)) => assert_eq!(label, "nope"),
        other => panic!("expected NoSuchChannel, got {other:?}"),
    }
    answered.link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_the_event_stream_refuses_sends_and_tells_the_joiner() {
    let (mut offerer, mut answered, _) = connect(&["midieditor"]).await;
    let link = answered.link.clone();
    link.close().await;
    link.close().await; // idempotent

    let mut rest = Vec::new();
    while let Some(event) = tokio::time::timeout(STEP, answered.events.recv())
        .await
        .expect("the stream ends after close")
    {
        rest.push(event);
    }
    assert!(
        rest.contains(&LinkEvent::ChannelClosed {
            label: "midieditor".to_owned()
        }),
        "{rest:?}"
    );
    assert_eq!(
        rest.last(),
        Some(&LinkEvent::State(LinkState::Closed)),
        "{rest:?}"
    );
    assert_eq!(link.state(), LinkState::Closed);
    assert!(link.open_channels().is_empty());
    assert!(matches!(
        link.send("midieditor", Bytes::from_static(b"x")).await,
        Err(RtcError::Closed)
    ));

    // The joiner learns it: its channel closes (SCTP abort) and its
    // connection leaves Connected (here the abort closes it at once).
    let closed = tokio::time::timeout(STEP, async {
        loop {
            if let OffererEvent::Closed(label) = offerer.next().await {
                return label;
            }
        }
    })
    .await
    .expect("joiner sees its channel close");
    assert_eq!(closed, "midieditor");
    offerer.pc.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_link_stays_connected_through_consent_checks() {
    let (offerer, mut answered, _) = connect(&["midieditor"]).await;
    let answered_before = offerer.consent_responses_received().await;
    // Past ICE's 5 s disconnected timeout with no application traffic: only
    // the consent checks (every 2 s) keep both sides Connected. The idle
    // time is the scenario itself, so a fixed sleep.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let answered_after = offerer.consent_responses_received().await;
    eprintln!("joiner's checks answered by us while idle: {answered_before} -> {answered_after}");
    assert!(
        answered_after >= answered_before + 2,
        "we answered the joiner's consent checks ({answered_before} -> {answered_after})"
    );
    assert_eq!(answered.link.state(), LinkState::Connected);
    assert_eq!(*offerer.state.borrow(), RTCPeerConnectionState::Connected);
    while let Ok(event) = answered.events.try_recv() {
        assert!(
            !matches!(
                event,
                LinkEvent::State(LinkState::Disconnected | LinkState::Failed | LinkState::Closed)
            ),
            "unexpected {event:?}"
        );
    }
    offerer.send("midieditor", b"after idle").await;
    assert_eq!(&next_message(&mut answered).await.1[..], b"after idle");
    answered.link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_offers_are_rejected_with_a_clear_error() {
    let cfg = loopback_config();
    for garbage in [
        "",
        "   \r\n",
        "hello",
        "v=0",
        "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application",
        "\u{0}\u{1}\u{2}\u{ff}",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
    ] {
        let err = answer_offer(garbage, &cfg)
            .await
            .expect_err("garbage is refused");
        let message = err.to_string();
        eprintln!("{garbage:?} -> {message}");
        assert!(
            matches!(err, RtcError::InvalidOffer(_) | RtcError::NoDataChannel),
            "{garbage:?} -> {err:?}"
        );
        assert!(
            message.contains("offer"),
            "message names the offer: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_without_data_channel_is_refused() {
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
                 a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
                 a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
                 a=setup:actpass\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";
    let err = answer_offer(offer, &loopback_config()).await.unwrap_err();
    assert!(matches!(err, RtcError::NoDataChannel), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_real_offers_never_panic() {
    let offerer = Offerer::new(&["midieditor"]).await;
    let lines: Vec<&str> = offerer.offer_sdp.split("\r\n").collect();
    let mut variants = Vec::new();
    for cut in 0..lines.len() {
        // Truncated after `cut` lines, and with line `cut` removed.
        variants.push(lines[..cut].join("\r\n"));
        let mut without = lines.clone();
        without.remove(cut);
        variants.push(without.join("\r\n"));
        // Line `cut` with its value garbled.
        let mut garbled = lines.clone();
        let mangled = match lines[cut].split_once(':') {
            Some((key, _)) => format!("{key}:\u{1}ÿ 99999999999999999999 -1 ::: typ"),
            None => format!("{}=", lines[cut]),
        };
        garbled[cut] = &mangled;
        variants.push(garbled.join("\r\n"));
    }
    let cfg = loopback_config();
    let (mut accepted, mut refused) = (0, 0);
    for variant in &variants {
        match answer_offer(variant, &cfg).await {
            Ok(answered) => {
                accepted += 1;
                answered.link.close().await;
            }
            Err(err) => {
                refused += 1;
                assert!(
                    !matches!(err, RtcError::Internal(_)),
                    "panic inside webrtc: {err}"
                );
            }
        }
    }
    eprintln!(
        "{} mangled offers: {accepted} answered, {refused} refused, none panicked",
        variants.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_gets_backpressure_not_loss_and_link_stays_up() {
    let (offerer, mut answered, _) = connect(&["midieditor"]).await;
    // 3000 × 1 KiB: far more than our event queue (256) + webrtc-rs's channel
    // queue (256) + the SCTP receive window (1 MiB) can hold unread.
    const COUNT: u32 = 3000;
    for i in 0..COUNT {
        let mut message = i.to_be_bytes().to_vec();
        message.resize(1024, 0xAB);
        offerer.send("midieditor", &message).await;
    }
    // Nobody reads for longer than the 2 s consent interval (the scenario
    // itself, so a fixed sleep).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(answered.link.state(), LinkState::Connected);
    assert_eq!(*offerer.state.borrow(), RTCPeerConnectionState::Connected);

    let started = Instant::now();
    for i in 0..COUNT {
        let (_, data, _) = next_message(&mut answered).await;
        assert_eq!(data.len(), 1024);
        assert_eq!(
            &data[..4],
            &i.to_be_bytes(),
            "message {i} in order, none lost"
        );
    }
    eprintln!(
        "drained {COUNT} backlogged 1 KiB messages in {:?}",
        started.elapsed()
    );
    answered.link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_that_fixes_the_dtls_roles_is_obeyed() {
    // An actpass offerer accepts either answer role, so rewriting its offer
    // checks that we follow what the offer says instead of our preference.
    for (offered, expected) in [("passive", "active"), ("active", "passive")] {
        let mut offerer = Offerer::new(&["midieditor"]).await;
        assert!(offerer.offer_sdp.contains("a=setup:actpass"));
        let offer = offerer
            .offer_sdp
            .replace("a=setup:actpass", &format!("a=setup:{offered}"));
        let mut answered = answer_offer(&offer, &loopback_config()).await.unwrap();
        assert!(
            answered
                .answer_sdp
                .contains(&format!("a=setup:{expected}\r\n")),
            "offer setup:{offered} -> answer setup:{expected}:\n{}",
            answered.answer_sdp
        );
        offerer.accept(&answered.answer_sdp).await;
        wait_channels_open(&mut answered, &["midieditor"]).await;
        offerer.wait_open(&["midieditor"]).await;
        offerer.send("midieditor", b"ok").await;
        assert_eq!(&next_message(&mut answered).await.1[..], b"ok");
        answered.link.close().await;
    }
}

/// A UDP socket on loopback that swallows everything: a STUN/TURN server
/// that never answers, without sending a packet off the machine.
async fn black_hole() -> (tokio::net::UdpSocket, u16) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback UDP port");
    let port = sock.local_addr().unwrap().port();
    (sock, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_stun_and_turn_servers_cost_a_joiner_at_most_the_gathering_cap() {
    let (_stun, stun_port) = black_hole().await;
    let (_turn, turn_port) = black_hole().await;
    let cap = Duration::from_millis(600);
    let cfg = RtcConfig {
        ice_servers: vec![
            format!("stun:127.0.0.1:{stun_port}")
                .parse::<jam::types::IceServer>()
                .unwrap()
                .into(),
            format!("turn:user:pass@127.0.0.1:{turn_port}?transport=udp")
                .parse::<jam::types::IceServer>()
                .unwrap()
                .into(),
        ],
        gather_timeout: cap,
        ..loopback_config()
    };
    let mut offerer = Offerer::new(&["midieditor"]).await;
    let started = Instant::now();
    let mut answered = answer_offer(&offerer.offer_sdp, &cfg)
        .await
        .expect("an answer despite silent servers");
    let took = started.elapsed();
    eprintln!("answer with two silent ICE servers took {took:?} (cap {cap:?})");
    assert!(took < cap + Duration::from_millis(400), "took {took:?}");
    // The answer still carries our raw-IP host candidate, and it works.
    let candidates = candidate_lines(&answered.answer_sdp);
    assert!(
        candidates
            .iter()
            .any(|c| c.contains("127.0.0.1") && c.contains("typ host")),
        "{candidates:?}"
    );
    offerer.accept(&answered.answer_sdp).await;
    wait_channels_open(&mut answered, &["midieditor"]).await;
    offerer.wait_open(&["midieditor"]).await;
    answered.link.close().await;
}
