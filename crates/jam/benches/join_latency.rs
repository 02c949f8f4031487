//! Join latency of a running jam host on loopback, as a joiner sees it.
//!
//! `cargo bench -p jam --bench join_latency` prints a table; it asserts
//! nothing. Everything stays on 127.0.0.1: a bundled rendezvous
//! (`RunningServer` on 127.0.0.1:0), a [`Host`] registered on it in process
//! (`Target::bundled`), and webrtc-rs 0.21.1 offerers playing MidiEditor
//! joiners (127.0.0.1 only, no ICE servers, no mDNS).
//!
//! Per join, with `t0` taken just before the joiner's
//! `POST /code/<c>/joiner-offer` (real HTTP, after the offerer gathered, as
//! MidiEditor publishes a complete offer):
//!
//! - **answer**: the joiner holds the host's answer SDP (from
//!   `GET /code/<c>/host-answer/<id>`, started in parallel with the POST);
//! - **open**: its `midieditor` data channel opened on the joiner's side;
//! - **welcome**: it sent a framed `hello` on open and received the framed
//!   `sessionWelcome`.
//!
//! The joiner then closes, and the next join starts once the host reported
//! the peer gone, so the jam's 8-peer cap is never hit.
//!
//! Answer fetching comes in two forms: `long-poll` (`?wait=25000`, our
//! rendezvous extension, so the joiner's polling does not dominate) and
//! `poll-750ms` (MidiEditor 2.0.1 as shipped: one poll at once, then one every
//! 750 ms whether or not the previous one finished).
//!
//! Offerers: a stock webrtc-rs 0.21.1 offerer stalls ~200 ms twice in its own
//! driver (DTLS ClientHello and SCTP INIT wait for the driver's next wake-up;
//! see `tests/rtc_loopback.rs` and the module doc of `jam::rtc`). The
//! `nudged` offerer wakes its driver every millisecond from `t0` until its
//! channel opens, which makes it behave like a prompt peer (libdatachannel,
//! browsers), so what is measured is the host. `stock` rows run it as is.
//!
//! The host (and its rendezvous) and the joiners run on two separate tokio
//! runtimes. Knobs (environment): `JOIN_BENCH_SEQ` (120 sequential joins),
//! `JOIN_BENCH_BURSTS` (10 bursts of 8), `JOIN_BENCH_POLL_SEQ` (20),
//! `JOIN_BENCH_POLL_BURSTS` (3), `JOIN_BENCH_STOCK_SEQ` (20),
//! `JOIN_BENCH_STOCK_BURSTS` (3), `JOIN_BENCH_THREADS` (worker threads per
//! runtime, default 2), `JOIN_BENCH_OFFERER_CHECK_MS` (the offerer's ICE
//! check pacing, default 20: one such interval is part of every join, since
//! the offerer nominates on its next check). A count of 0 skips its series.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use jam::host::{Host, HostConfig, HostEvent};
use jam::registry::RegistryEvent;
use jam::rtc::RtcConfig;
use jam::signal::Target;
use rdv::table::TableLimits;
use rdv::{Config, Rendezvous, RunningServer};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch, Barrier};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    SettingEngineBuilder,
};

/// Bound on any one step that takes milliseconds when things work.
const STEP: Duration = Duration::from_secs(10);
/// Joiners in one burst: the jam's peer cap.
const BURST: usize = 8;
/// Joins run first and not recorded (connection pools, allocator, caches).
const WARMUP: usize = 3;
const LABEL: &str = "midieditor";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ offerer

/// The offerer's ICE check pacing (`JOIN_BENCH_OFFERER_CHECK_MS`, default
/// 20 ms, the pacing `jam::rtc` uses; webrtc-rs's own default is 200 ms).
fn offerer_check_interval() -> Duration {
    Duration::from_millis(env_or("JOIN_BENCH_OFFERER_CHECK_MS", 20) as u64)
}

#[derive(Debug)]
enum OffererEvent {
    Open,
    Message(Bytes),
    Closed,
}

/// When the offerer's ICE and its whole connection (ICE + DTLS) first
/// reported Connected.
#[derive(Default, Clone, Copy)]
struct Stamps {
    ice: Option<Instant>,
    dtls: Option<Instant>,
}

struct OffererHandler {
    gathered: watch::Sender<bool>,
    stamps: Arc<Mutex<Stamps>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for OffererHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Connected {
            let now = Instant::now();
            let mut s = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            s.ice.get_or_insert(now);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let now = Instant::now();
            let mut s = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            s.dtls.get_or_insert(now);
        }
    }
}

/// A joiner as MidiEditor builds it: one in-band `midieditor` channel
/// (reliable, ordered), complete gathering before the offer is published,
/// `a=max-message-size:16777216` as libdatachannel advertises.
struct Offerer {
    pc: Arc<dyn PeerConnection>,
    channel: Arc<dyn DataChannel>,
    events: mpsc::UnboundedReceiver<OffererEvent>,
    offer_sdp: String,
    stamps: Arc<Mutex<Stamps>>,
}

impl Offerer {
    async fn new() -> Result<Offerer, String> {
        let (gathered_tx, mut gathered_rx) = watch::channel(false);
        let stamps = Arc::new(Mutex::new(Stamps::default()));
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .with_ice_connection_attempts(Some(offerer_check_interval()), None)
            .with_sctp_max_message_size(SctpMaxMessageSize::Unbounded)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_handler(Arc::new(OffererHandler {
                gathered: gathered_tx,
                stamps: stamps.clone(),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .map_err(|e| format!("offerer build: {e}"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let channel = pc
            .create_data_channel(LABEL, None)
            .await
            .map_err(|e| format!("offerer data channel: {e}"))?;
        let (events_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(pump(channel.clone(), events_tx));
        let offer = pc
            .create_offer(None)
            .await
            .map_err(|e| format!("create offer: {e}"))?;
        pc.set_local_description(offer)
            .await
            .map_err(|e| format!("set local offer: {e}"))?;
        tokio::time::timeout(STEP, gathered_rx.wait_for(|done| *done))
            .await
            .map_err(|_| "offerer did not finish gathering".to_owned())?
            .map_err(|_| "offerer gone while gathering".to_owned())?;
        let sdp = pc
            .local_description()
            .await
            .ok_or("offerer has no local description")?
            .sdp;
        Ok(Offerer {
            pc,
            channel,
            events,
            offer_sdp: with_max_message_size(&sdp, 16_777_216),
            stamps,
        })
    }

    async fn accept(&self, answer_sdp: String) -> Result<(), String> {
        let answer =
            RTCSessionDescription::answer(answer_sdp).map_err(|e| format!("bad answer: {e}"))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| format!("offerer refused the answer: {e}"))
    }

    async fn next(&mut self) -> Result<OffererEvent, String> {
        tokio::time::timeout(STEP, self.events.recv())
            .await
            .map_err(|_| "no offerer event in time".to_owned())?
            .ok_or_else(|| "offerer event stream ended".to_owned())
    }

    /// Wakes the offerer's driver every millisecond (any data-channel call
    /// does) until the returned task is aborted.
    fn nudger(&self) -> tokio::task::JoinHandle<()> {
        let channel = self.channel.clone();
        tokio::spawn(async move {
            loop {
                let _ = channel.set_buffered_amount_low_threshold(0).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    }

    async fn close(self) {
        let _ = self.pc.close().await;
    }
}

async fn pump(channel: Arc<dyn DataChannel>, events: mpsc::UnboundedSender<OffererEvent>) {
    while let Some(event) = channel.poll().await {
        let event = match event {
            DataChannelEvent::OnOpen => OffererEvent::Open,
            DataChannelEvent::OnMessage(message) => OffererEvent::Message(message.data.freeze()),
            DataChannelEvent::OnClose => OffererEvent::Closed,
            _ => continue,
        };
        if events.send(event).is_err() {
            break;
        }
    }
}

fn with_max_message_size(sdp: &str, size: usize) -> String {
    sdp.split("\r\n")
        .map(|line| {
            if line.starts_with("a=max-message-size:") {
                format!("a=max-message-size:{size}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

// ------------------------------------------------------------------ framing

fn frame(value: &Value) -> Vec<u8> {
    let payload = serde_json::to_vec(value).unwrap_or_default();
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

/// The `type` of a framed JSON message, if it is one.
fn frame_type(msg: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(msg.get(..4)?.try_into().ok()?) as usize;
    let payload = msg.get(4..)?;
    if payload.len() != len {
        return None;
    }
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("type")?.as_str().map(str::to_owned)
}

fn joiner_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS randomness");
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

// ------------------------------------------------------------------ one join

#[derive(Clone, Copy, PartialEq, Eq)]
enum Polling {
    /// `?wait=25000` long-polls, one after the other.
    Long,
    /// MidiEditor 2.0.1: a poll at once, then every 750 ms, each fired
    /// whether or not the previous one finished.
    Every750,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Driver {
    Nudged,
    Stock,
}

#[derive(Clone)]
struct Rdv {
    base: String,
    code: String,
}

/// Offsets from `t0` of one join.
#[derive(Clone, Copy)]
struct Sample {
    t0: Instant,
    answer: Duration,
    /// The offerer's ICE connected.
    ice: Duration,
    /// The offerer's connection connected (DTLS done).
    dtls: Duration,
    open: Duration,
    welcome: Duration,
}

/// A joiner ready to post: gathered, with its own HTTP client (a fresh
/// MidiEditor has no warm connection to the rendezvous either).
struct Ready {
    offerer: Offerer,
    http: reqwest::Client,
    id: String,
}

async fn ready() -> Result<Ready, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    Ok(Ready {
        offerer: Offerer::new().await?,
        http,
        id: joiner_id(),
    })
}

async fn post_offer(r: &Ready, rdv: &Rdv) -> Result<(), String> {
    let resp = r
        .http
        .post(format!("{}/code/{}/joiner-offer", rdv.base, rdv.code))
        .json(&json!({"joinerId": r.id, "sdp": r.offerer.offer_sdp}))
        .send()
        .await
        .map_err(|e| format!("POST joiner-offer: {e}"))?;
    let status = resp.status().as_u16();
    if status == 200 {
        Ok(())
    } else {
        let body = resp.text().await.unwrap_or_default();
        Err(format!("POST joiner-offer answered {status}: {body}"))
    }
}

/// One `GET host-answer/<id>`: `Ok(Some(sdp))` on 200, `Ok(None)` on 404.
async fn get_answer(http: reqwest::Client, url: String) -> Result<Option<String>, String> {
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET host-answer: {e}"))?;
    match resp.status().as_u16() {
        200 => {
            let v: Value = resp
                .json()
                .await
                .map_err(|e| format!("host-answer body: {e}"))?;
            Ok(v["sdp"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned))
        }
        404 => Ok(None),
        other => Err(format!("GET host-answer answered {other}")),
    }
}

async fn fetch_answer(r: &Ready, rdv: &Rdv, polling: Polling) -> Result<String, String> {
    let url = format!("{}/code/{}/host-answer/{}", rdv.base, rdv.code, r.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    match polling {
        Polling::Long => loop {
            if tokio::time::Instant::now() > deadline {
                return Err("no answer within 30 s".into());
            }
            let url = format!("{url}?wait=25000");
            if let Some(sdp) = get_answer(r.http.clone(), url).await? {
                return Ok(sdp);
            }
        },
        Polling::Every750 => {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut polls = tokio::task::JoinSet::new();
            let mut timer = tokio::time::interval(Duration::from_millis(750));
            loop {
                tokio::select! {
                    _ = timer.tick() => {
                        if tokio::time::Instant::now() > deadline {
                            return Err("no answer within 30 s".into());
                        }
                        let (http, url, tx) = (r.http.clone(), url.clone(), tx.clone());
                        polls.spawn(async move {
                            let _ = tx.send(get_answer(http, url).await);
                        });
                    }
                    Some(got) = rx.recv() => {
                        if let Some(sdp) = got? {
                            // Dropping the set aborts polls still in flight.
                            return Ok(sdp);
                        }
                    }
                }
            }
        }
    }
}

/// Runs one join from `t0` to the welcome, then closes the joiner. The
/// offer post and the answer polling start together, as MidiEditor does.
async fn join(mut r: Ready, rdv: Rdv, polling: Polling, driver: Driver) -> Result<Sample, String> {
    let t0 = Instant::now();
    let nudger = (driver == Driver::Nudged).then(|| r.offerer.nudger());
    let result = async {
        let (_, answer_sdp) =
            tokio::try_join!(post_offer(&r, &rdv), fetch_answer(&r, &rdv, polling))?;
        let answer = t0.elapsed();
        r.offerer.accept(answer_sdp).await?;
        let mut open = None;
        loop {
            match r.offerer.next().await? {
                OffererEvent::Open => {
                    open = Some(t0.elapsed());
                    let hello = frame(&json!({
                        "type": "hello",
                        "sessionId": "s",
                        "displayName": "bench",
                        "machineId": jam::host::new_machine_id(),
                        "appVersion": "2.0.1",
                    }));
                    r.offerer
                        .channel
                        .send(BytesMut::from(&hello[..]))
                        .await
                        .map_err(|e| format!("send hello: {e}"))?;
                }
                OffererEvent::Message(data) => match frame_type(&data).as_deref() {
                    Some("sessionWelcome") => {
                        let welcome = t0.elapsed();
                        let open = open.ok_or("welcome before the channel opened")?;
                        let stamps = *r.offerer.stamps.lock().unwrap_or_else(|p| p.into_inner());
                        let since = |t: Option<Instant>| t.map_or(open, |t| t - t0);
                        return Ok(Sample {
                            t0,
                            answer,
                            ice: since(stamps.ice),
                            dtls: since(stamps.dtls),
                            open,
                            welcome,
                        });
                    }
                    other => return Err(format!("first frame was {other:?}, not sessionWelcome")),
                },
                OffererEvent::Closed => return Err("channel closed before the welcome".into()),
            }
        }
    }
    .await;
    if let Some(n) = nudger {
        n.abort();
    }
    r.offerer.close().await;
    result
}

// ------------------------------------------------------------------ the host

/// What the host's event stream said, for pacing and for the report.
#[derive(Default, Clone)]
struct HostCounts {
    joined: u64,
    welcomed: u64,
    left: u64,
    /// Why peers left, and how often.
    left_reasons: HashMap<String, u64>,
    errors: Vec<String>,
    lagged: u64,
}

impl HostCounts {
    fn live(&self) -> u64 {
        self.joined.saturating_sub(self.left)
    }
}

struct Hosted {
    server: RunningServer,
    host: Host,
    rdv: Rdv,
    counts: watch::Receiver<HostCounts>,
}

async fn start_host() -> Hosted {
    let table = TableLimits {
        // Every offer stays live for the TTL (300 s), so the rendezvous's
        // slot cap would count all of this run's joiners.
        max_peers: 100_000,
        max_records_per_session: 100_000,
        max_sessions_per_source: 100_000,
        // All of them come from 127.0.0.1: the per-source SDP budget of an
        // open-internet server would stop the run part-way.
        max_sdp_bytes_per_source: usize::MAX,
        max_sdp_bytes_total: usize::MAX,
        ..TableLimits::default()
    };
    let config = Config {
        table,
        ..Config::default()
    };
    let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let server = RunningServer::start(bind, Rendezvous::new(config))
        .await
        .expect("rendezvous binds 127.0.0.1");
    let (host, mut events) = Host::start(HostConfig {
        display_name: "bench host".into(),
        machine_id: String::new(),
        session_id: "bench".into(),
        max_peers: BURST,
        rtc: RtcConfig {
            ice_servers: Vec::new(),
            gather_timeout: Duration::from_secs(2),
            bind_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            resolve_mdns: false,
        },
        target: Target::bundled(server.rdv.clone()),
        share_urls: vec![server.url()],
        keep_code: None,
    })
    .await
    .expect("host starts");
    let code = match events.recv().await {
        Ok(HostEvent::Hosting { code, .. }) => code,
        other => panic!("expected Hosting first, got {other:?}"),
    };
    let (counts_tx, counts) = watch::channel(HostCounts::default());
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(HostEvent::Peer(e)) => counts_tx.send_modify(|c| match e {
                    RegistryEvent::Joined { .. } => c.joined += 1,
                    RegistryEvent::Connected { .. } => c.welcomed += 1,
                    RegistryEvent::Left { reason, .. } => {
                        c.left += 1;
                        *c.left_reasons.entry(reason.to_string()).or_default() += 1;
                    }
                    RegistryEvent::Changed { .. } => {}
                }),
                Ok(HostEvent::Error { message }) => {
                    counts_tx.send_modify(|c| c.errors.push(message));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => counts_tx.send_modify(|c| c.lagged += n),
                Err(RecvError::Closed) => break,
            }
        }
    });
    let rdv = Rdv {
        base: server.url(),
        code,
    };
    Hosted {
        server,
        host,
        rdv,
        counts,
    }
}

/// Waits until the host lists no peer; returns how long that took, or None
/// if it did not happen within [`STEP`].
async fn host_idle(counts: &watch::Receiver<HostCounts>) -> Option<Duration> {
    let started = Instant::now();
    let mut counts = counts.clone();
    tokio::time::timeout(STEP, counts.wait_for(|c| c.live() == 0))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|_| started.elapsed())
}

// ------------------------------------------------------------------ series

#[derive(Default)]
struct Series {
    name: String,
    polling: Option<Polling>,
    samples: Vec<Sample>,
    /// Per burst: first `t0` to last welcome.
    bursts: Vec<Duration>,
    failures: Vec<String>,
    /// Joiner closed → host lists no peer.
    teardown: Vec<Duration>,
    teardown_timeouts: usize,
}

impl Series {
    fn note_idle(&mut self, idle: Option<Duration>) {
        match idle {
            Some(d) => self.teardown.push(d),
            None => self.teardown_timeouts += 1,
        }
    }
}

async fn sequential(
    name: &str,
    n: usize,
    rdv: &Rdv,
    counts: &watch::Receiver<HostCounts>,
    polling: Polling,
    driver: Driver,
) -> Series {
    let mut s = Series {
        name: name.to_owned(),
        polling: Some(polling),
        ..Series::default()
    };
    for i in 0..WARMUP + n {
        let r = match ready().await {
            Ok(r) => r,
            Err(e) => {
                s.failures.push(e);
                continue;
            }
        };
        let got = join(r, rdv.clone(), polling, driver).await;
        let idle = host_idle(counts).await;
        if i < WARMUP {
            continue;
        }
        s.note_idle(idle);
        match got {
            Ok(sample) => s.samples.push(sample),
            Err(e) => s.failures.push(e),
        }
    }
    s
}

async fn bursts(
    name: &str,
    n: usize,
    rdv: &Rdv,
    counts: &watch::Receiver<HostCounts>,
    polling: Polling,
    driver: Driver,
) -> Series {
    let mut s = Series {
        name: name.to_owned(),
        polling: Some(polling),
        ..Series::default()
    };
    for _ in 0..n {
        let mut joiners = Vec::with_capacity(BURST);
        for _ in 0..BURST {
            match ready().await {
                Ok(r) => joiners.push(r),
                Err(e) => s.failures.push(e),
            }
        }
        let barrier = Arc::new(Barrier::new(joiners.len()));
        let tasks: Vec<_> = joiners
            .into_iter()
            .map(|r| {
                let (rdv, barrier) = (rdv.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    join(r, rdv, polling, driver).await
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(sample)) => got.push(sample),
                Ok(Err(e)) => s.failures.push(e),
                Err(e) => s.failures.push(format!("joiner task: {e}")),
            }
        }
        if got.len() == BURST {
            let start = got.iter().map(|x| x.t0).min().expect("8 samples");
            let end = got
                .iter()
                .map(|x| x.t0 + x.welcome)
                .max()
                .expect("8 samples");
            s.bursts.push(end - start);
        }
        s.samples.extend(got);
        let idle = host_idle(counts).await;
        s.note_idle(idle);
    }
    s
}

// ------------------------------------------------------------------ report

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn row(series: &str, what: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        return;
    }
    v.sort();
    println!(
        "{series:<34} {what:<16} {:>4} {:>8} {:>8} {:>8} {:>8}",
        v.len(),
        ms(pct(&v, 50.0)),
        ms(pct(&v, 90.0)),
        ms(pct(&v, 99.0)),
        ms(v[v.len() - 1]),
    );
}

fn report(all: &[Series]) {
    println!();
    println!(
        "{:<34} {:<16} {:>4} {:>8} {:>8} {:>8} {:>8}",
        "series", "metric (ms)", "n", "p50", "p90", "p99", "max"
    );
    println!("{}", "-".repeat(34 + 16 + 4 + 4 * 8 + 8));
    println!(
        "(ice/dtls conn: the joiner's ICE / whole connection reported Connected; \
         burst welcomed: first t0 to last welcome of a burst, complete bursts only; \
         close->host idle: joiner closed to host listing no peer)"
    );
    println!();
    for s in all {
        row(
            &s.name,
            "offer->answer",
            s.samples.iter().map(|x| x.answer).collect(),
        );
        row(
            &s.name,
            "offer->ice conn",
            s.samples.iter().map(|x| x.ice).collect(),
        );
        row(
            &s.name,
            "offer->dtls conn",
            s.samples.iter().map(|x| x.dtls).collect(),
        );
        row(
            &s.name,
            "offer->open",
            s.samples.iter().map(|x| x.open).collect(),
        );
        row(
            &s.name,
            "offer->welcome",
            s.samples.iter().map(|x| x.welcome).collect(),
        );
        row(
            &s.name,
            "open->welcome",
            s.samples.iter().map(|x| x.welcome - x.open).collect(),
        );
        row(&s.name, "burst welcomed", s.bursts.clone());
        row(&s.name, "close->host idle", s.teardown.clone());
        println!();
    }
    for s in all {
        if s.polling == Some(Polling::Every750) && !s.samples.is_empty() {
            let first = s
                .samples
                .iter()
                .filter(|x| x.answer < Duration::from_millis(375))
                .count();
            println!(
                "{}: the immediate first poll already found the answer in {first} of {} joins; \
                 the rest waited for the 750 ms poll",
                s.name,
                s.samples.len()
            );
        }
    }
    for s in all {
        if !s.failures.is_empty() || s.teardown_timeouts > 0 {
            println!(
                "{}: {} failed joins, {} waits for the host to drop the peer timed out ({:?})",
                s.name,
                s.failures.len(),
                s.teardown_timeouts,
                STEP
            );
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for f in &s.failures {
                *seen.entry(f.as_str()).or_default() += 1;
            }
            for (f, n) in seen {
                println!("  {n} x {f}");
            }
        }
    }
}

fn runtime(threads: usize, name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `f` on the joiners' runtime.
fn on<F: Future>(rt: &Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn main() {
    let threads = env_or("JOIN_BENCH_THREADS", 2).max(1);
    let seq = env_or("JOIN_BENCH_SEQ", 120);
    let bursts_n = env_or("JOIN_BENCH_BURSTS", 10);
    let poll_seq = env_or("JOIN_BENCH_POLL_SEQ", 20);
    let poll_bursts = env_or("JOIN_BENCH_POLL_BURSTS", 3);
    let stock_seq = env_or("JOIN_BENCH_STOCK_SEQ", 20);
    let stock_bursts = env_or("JOIN_BENCH_STOCK_BURSTS", 3);

    let host_rt = runtime(threads, "host");
    let joiner_rt = runtime(threads, "joiners");
    let hosted = host_rt.block_on(start_host());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "join latency on loopback: bundled rendezvous {} (code {}), jam max_peers {BURST}, \
         host and joiners on separate tokio runtimes ({threads} workers each, {cpus} CPUs)",
        hosted.rdv.base, hosted.rdv.code
    );
    println!(
        "joiner = webrtc-rs 0.21.1 offerer, 127.0.0.1 only, no ICE servers; \
         'nudged' = driver woken every 1 ms until open (a prompt peer, measures our host), \
         'stock' = as is (includes its own ~2 x 200 ms driver stalls)"
    );
    println!("t0 = just before POST joiner-offer; {WARMUP} warm-up joins per sequential series are not counted");

    let plan: Vec<(String, usize, bool, Polling, Driver)> = vec![
        (
            "seq    long-poll  nudged".into(),
            seq,
            false,
            Polling::Long,
            Driver::Nudged,
        ),
        (
            "burst8 long-poll  nudged".into(),
            bursts_n,
            true,
            Polling::Long,
            Driver::Nudged,
        ),
        (
            "seq    poll-750ms nudged".into(),
            poll_seq,
            false,
            Polling::Every750,
            Driver::Nudged,
        ),
        (
            "burst8 poll-750ms nudged".into(),
            poll_bursts,
            true,
            Polling::Every750,
            Driver::Nudged,
        ),
        (
            "seq    long-poll  stock".into(),
            stock_seq,
            false,
            Polling::Long,
            Driver::Stock,
        ),
        (
            "burst8 long-poll  stock".into(),
            stock_bursts,
            true,
            Polling::Long,
            Driver::Stock,
        ),
    ];
    let started = Instant::now();
    let mut all = Vec::new();
    for (name, n, burst, polling, driver) in plan {
        if n == 0 {
            continue;
        }
        let t = Instant::now();
        let s = if burst {
            on(
                &joiner_rt,
                bursts(&name, n, &hosted.rdv, &hosted.counts, polling, driver),
            )
        } else {
            on(
                &joiner_rt,
                sequential(&name, n, &hosted.rdv, &hosted.counts, polling, driver),
            )
        };
        eprintln!(
            "{name}: {} joins in {:.1} s",
            s.samples.len(),
            t.elapsed().as_secs_f64()
        );
        all.push(s);
    }
    report(&all);

    let counts = hosted.counts.borrow().clone();
    println!(
        "host events: {} joined, {} welcomed, {} left, {} errors{}; total run {:.1} s",
        counts.joined,
        counts.welcomed,
        counts.left,
        counts.errors.len(),
        if counts.lagged > 0 {
            format!(", {} events lost to lag", counts.lagged)
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    let mut reasons: Vec<_> = counts.left_reasons.iter().collect();
    reasons.sort();
    for (reason, n) in reasons {
        println!("  left: {n} x {reason}");
    }
    for e in counts.errors.iter().take(10) {
        println!("  host error: {e}");
    }
    host_rt.block_on(async move {
        hosted.host.stop().await;
        let _ = hosted.server.stop().await;
    });
}
