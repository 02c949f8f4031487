//! "Test connection": is this rendezvous usable, does WebRTC connect through
//! it, and do my STUN/TURN servers work?
//!
//! Three checks, run in parallel and reported together in a [`Report`]:
//!
//! 1. **Rendezvous health**: `GET {url}/health` within
//!    [`CheckConfig::health_timeout`] (3 s, MidiEditor's pre-flight budget),
//!    with a reason a person can act on when it fails ([`CheckError`]): the
//!    name does not resolve, the connection is refused, TLS failed, it timed
//!    out, HTTP status N, something answered that is not a midi-rdv
//!    rendezvous, or one that speaks a protocol older than v3.
//! 2. **A full WebRTC loopback through that rendezvous**, the way
//!    MidiEditor's own connection test does it: post a session (host side),
//!    verify the code (joiner side), the joiner makes an offer with a
//!    `midieditor` data channel and posts it, the host side reads it and
//!    answers with its own PeerConnection ([`crate::rtc::answer_offer`]),
//!    the joiner polls the answer, ICE + DTLS connect, and a
//!    `midieditor-ping` / `midieditor-pong` crosses the channel. Timed per
//!    stage, with MidiEditor's verdicts ([`Verdict`]). It uses a session and
//!    PeerConnections of its own, so a jam running on the same rendezvous is
//!    never disturbed; it speaks plain HTTP to the rendezvous, so it checks
//!    the bundled one and a remote one alike.
//! 3. **Each STUN/TURN server** in a list, all at once, each bounded by
//!    [`CheckConfig::server_timeout`]: a STUN Binding (the mapped address is
//!    the server-reflexive candidate a peer would get) or a TURN Allocate
//!    with the given long-term credentials (the relay address is the relay
//!    candidate). A wrong password is an authentication failure, a silent
//!    server is unreachable, a typo is a bad URL: see [`ServerError`].
//!
//! Progress is reported stage by stage through a callback ([`Progress`]) so
//! a UI can tick stages off; [`details_text`] renders a report for a "copy
//! details" button. Everything is bounded: the whole check ends within
//! about `max(timeout, server_timeout)` whatever the network does.
//!
//! # MidiEditor's verdict rules
//!
//! Timings follow MidiEditor's `WanConnectionTest`: *rendezvous* runs from
//! the start (before `/health`) until the host side has posted its answer;
//! *handshake* from then until the data channel is open on both sides (the
//! joiner's answer poll, ICE, DTLS, SCTP); *round trip* is the ping/pong.
//!
//! - **Good**: everything worked, rendezvous ≤ 3000 ms and handshake ≤ 4000 ms.
//! - **Acceptable**: everything worked, but slower than that.
//! - **Inconclusive**: a code was obtained, then the WebRTC transport failed
//!   or the test ran out of time: the rendezvous works, the local network
//!   setup (addresses, firewall) is what needs a look.
//! - **Failed**: the rendezvous itself failed, at the stage named.

mod stun;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::framing;
use crate::ice::parse_ice_uri;
use crate::offer::{Offerer, OffererEvent};
use crate::rtc::{answer_offer, Answered, LinkEvent, LinkState, RtcConfig};

/// MidiEditor's pre-flight budget for `GET /health`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Default bound on each STUN/TURN server.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on the whole rendezvous + WebRTC loopback.
pub const LOOPBACK_TIMEOUT: Duration = Duration::from_secs(20);
/// ICE gathering cap of both test peers (MidiEditor's test uses 2000 ms).
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// "Good" needs the rendezvous part within this many milliseconds...
pub const GOOD_RENDEZVOUS_MS: f64 = 3000.0;
/// ...and the handshake within this many.
pub const GOOD_HANDSHAKE_MS: f64 = 4000.0;
/// Oldest rendezvous protocol version that works with MidiEditor 2.x.
pub const MIN_PROTOCOL_VERSION: u64 = 3;
/// The data channel label MidiEditor's joiners open.
pub const CHANNEL_LABEL: &str = "midieditor";

/// Largest `/health` body read; a real one is ~300 bytes.
const MAX_HEALTH_BODY: usize = 64 * 1024;
/// Largest body read from any other rendezvous request (an SDP is ≤ 64 K
/// UTF-16 units; a list of 8 offers fits easily).
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Longest single HTTP request of the loopback (long-polls add their wait).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `?wait=` of each long-poll when the rendezvous offers the extension.
const LONG_POLL_MS: u64 = 3000;
/// Poll intervals without long-poll: MidiEditor's own (host 1 s, joiner
/// 750 ms), so the timings compare with what MidiEditor would see.
const HOST_POLL: Duration = Duration::from_millis(1000);
const JOINER_POLL: Duration = Duration::from_millis(750);

/// What to check, and how long each part may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// Base URL of the rendezvous, `http://` or `https://`, optionally with a
    /// base path (`http://host:8787/rdv`); a trailing `/` is ignored.
    pub rendezvous_url: String,
    /// STUN/TURN servers as users write them (MidiEditor's grammar, see
    /// [`crate::ice`]); each is checked on its own, a bad one never stops
    /// the others.
    pub ice_servers: Vec<String>,
    /// Addresses the two test peers gather host candidates on. Empty means
    /// every non-loopback interface (what a jam uses); tests and machines
    /// without a LAN use `127.0.0.1`.
    pub bind_ips: Vec<IpAddr>,
    /// Budget of `GET /health`.
    pub health_timeout: Duration,
    /// Budget of each STUN/TURN server.
    pub server_timeout: Duration,
    /// Budget of the whole loopback, health included.
    pub timeout: Duration,
    /// ICE gathering cap of each test peer.
    pub gather_timeout: Duration,
}

impl CheckConfig {
    /// Defaults for `url`: no ICE servers, every interface, MidiEditor's budgets.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            rendezvous_url: url.into(),
            ice_servers: Vec::new(),
            bind_ips: Vec::new(),
            health_timeout: HEALTH_TIMEOUT,
            server_timeout: SERVER_TIMEOUT,
            timeout: LOOPBACK_TIMEOUT,
            gather_timeout: GATHER_TIMEOUT,
        }
    }
}

/// The stages of the loopback, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StageId {
    /// `GET /health`.
    Health,
    /// Host side: `POST /session`, a code comes back.
    Session,
    /// Joiner side: `GET /code/<c>`.
    Verify,
    /// Joiner side: build the PeerConnection, gather, post the offer.
    Offer,
    /// Host side: read the offer, answer it, post the answer.
    Answer,
    /// Joiner gets the answer; ICE + DTLS + data channel open on both sides.
    Connect,
    /// `midieditor-ping` host → joiner, `midieditor-pong` back.
    RoundTrip,
}

impl StageId {
    /// Every stage, in the order they run.
    pub const ALL: [StageId; 7] = [
        StageId::Health,
        StageId::Session,
        StageId::Verify,
        StageId::Offer,
        StageId::Answer,
        StageId::Connect,
        StageId::RoundTrip,
    ];

    /// A short name for people.
    pub fn label(self) -> &'static str {
        match self {
            StageId::Health => "Rendezvous reachable (/health)",
            StageId::Session => "Session created (host)",
            StageId::Verify => "Code verified (joiner)",
            StageId::Offer => "Offer posted (joiner)",
            StageId::Answer => "Answer posted (host)",
            StageId::Connect => "ICE + DTLS connected",
            StageId::RoundTrip => "Ping / pong",
        }
    }
}

/// Where a stage (or a server row) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Not started yet.
    Pending,
    /// In progress.
    Running,
    /// Done and fine.
    Passed,
    /// Done and failed: see the error and hint.
    Failed,
    /// Not run because an earlier stage failed.
    Skipped,
    /// Deliberately not checked (a STUN/TURN transport this check does not speak).
    NotChecked,
}

/// Why a rendezvous or WebRTC stage failed. The message is meant to be shown
/// as-is; [`CheckError::hint`] says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum CheckError {
    /// The URL is not `http://` or `https://` with a host.
    #[error("{url:?} is not a usable rendezvous URL: {detail}")]
    BadUrl { url: String, detail: String },
    /// DNS has no address for the host name.
    #[error("the name {host:?} does not resolve")]
    Unresolvable { host: String },
    /// The host answered, but nothing listens on the port.
    #[error("connection refused by {addr}")]
    ConnectionRefused { addr: String },
    /// The TLS handshake failed (certificate, or not TLS at all).
    #[error("TLS problem: {detail}")]
    Tls { detail: String },
    /// No answer within the stage's budget.
    #[error("timed out after {ms} ms")]
    TimedOut { ms: u64 },
    /// The server answered with an unexpected HTTP status.
    #[error("HTTP status {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    HttpStatus {
        status: u16,
        message: Option<String>,
    },
    /// Something answered 200, but not a midi-rdv / MidiEditor rendezvous.
    #[error("this server answers, but it is not a midi-rdv rendezvous: {detail}")]
    NotARendezvous { detail: String },
    /// A rendezvous, but one speaking an older protocol than MidiEditor 2.x.
    #[error("the rendezvous speaks protocol version {}, older than v{MIN_PROTOCOL_VERSION}", version.map(|v| v.to_string()).unwrap_or_else(|| "(none given)".to_owned()))]
    ProtocolTooOld { version: Option<u64> },
    /// The rendezvous answered something the protocol does not allow.
    #[error("the rendezvous misbehaved: {detail}")]
    Rendezvous { detail: String },
    /// Any other network error talking to the rendezvous.
    #[error("network error: {detail}")]
    Network { detail: String },
    /// Setting up a test peer failed (no usable address, a bad SDP).
    #[error("WebRTC setup failed: {detail}")]
    WebRtc { detail: String },
    /// ICE/DTLS did not connect, or the connection dropped.
    #[error("the WebRTC connection failed: {detail}")]
    ConnectFailed { detail: String },
}

impl CheckError {
    /// What a person can do about it, in plain words.
    pub fn hint(&self) -> String {
        match self {
            CheckError::BadUrl { .. } => {
                "Type the full URL including http:// or https://, e.g. http://192.168.1.20:8787.".into()
            }
            CheckError::Unresolvable { .. } => {
                "Check the spelling of the host name, or use the server's IP address. If the name is right, this computer's DNS cannot see it (offline, VPN, or a LAN-only name).".into()
            }
            CheckError::ConnectionRefused { .. } => {
                "The computer is there but no rendezvous runs on that port: start it (`midi-rdv serve` or the app's host mode) or fix the port number.".into()
            }
            CheckError::Tls { .. } => {
                "Secure connection failed. If the server speaks plain HTTP, use http:// instead of https://; otherwise its certificate is invalid, expired, or replaced by antivirus or proxy software.".into()
            }
            CheckError::TimedOut { .. } => {
                "No answer in time. The server may be down, a firewall may drop the traffic, or the network is very slow. Try again; if it persists, check the firewall on both ends.".into()
            }
            CheckError::HttpStatus { status: 404, .. } => {
                "The web server has nothing at this path: check the URL, especially a base path such as /rdv.".into()
            }
            CheckError::HttpStatus { status: 401 | 403 | 407, .. } => {
                "Access is blocked by a login page or proxy between you and the rendezvous.".into()
            }
            CheckError::HttpStatus { status, .. } if *status >= 500 => {
                "The server has a problem of its own (or a proxy in front of it cannot reach it). Try again later or ask whoever runs it.".into()
            }
            CheckError::HttpStatus { .. } => {
                "The rendezvous refused a request. Make sure the URL points at a midi-rdv rendezvous and that it is up to date.".into()
            }
            CheckError::NotARendezvous { .. } => {
                "Another web server answers at this address (a router page, a web site). Check the host and port, and the base path if the rendezvous runs under one.".into()
            }
            CheckError::ProtocolTooOld { .. } => {
                "The rendezvous is an old version. Update it (or the Cloudflare Worker) to protocol v3.".into()
            }
            CheckError::Rendezvous { .. } => {
                "The rendezvous does not behave as protocol v3 requires. If several servers share this URL (a load balancer), they must share their sessions; otherwise update the server.".into()
            }
            CheckError::Network { .. } => {
                "Check this computer's network connection and any proxy or firewall software.".into()
            }
            CheckError::WebRtc { .. } => {
                "This computer could not set up a WebRTC peer. Check that it has a network address (or test with --ice-bind 127.0.0.1) and that no security software blocks UDP sockets.".into()
            }
            CheckError::ConnectFailed { .. } => {
                "The rendezvous works, but the peers could not connect directly. A firewall may block UDP between the addresses used, or the chosen addresses are not reachable from each other.".into()
            }
        }
    }

    /// A transport problem after the rendezvous worked (or the test's own
    /// clock running out): MidiEditor rates those Inconclusive, not Failed.
    fn is_transport_or_timeout(&self) -> bool {
        matches!(
            self,
            CheckError::WebRtc { .. }
                | CheckError::ConnectFailed { .. }
                | CheckError::TimedOut { .. }
        )
    }
}

/// One stage's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageReport {
    pub stage: StageId,
    pub label: String,
    pub status: Status,
    /// How long the stage took (also set on failure).
    pub duration_ms: Option<f64>,
    /// What happened, in words (an address, a code, the error's message).
    pub detail: Option<String>,
    /// The failure, machine-readable.
    pub error: Option<CheckError>,
    /// What to do about the failure.
    pub hint: Option<String>,
}

/// What `/health` said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthInfo {
    /// Request to complete body.
    pub latency_ms: f64,
    pub service: String,
    pub version: u64,
    pub protocol: Option<String>,
    pub max_peers_per_session: Option<u64>,
    /// Our extensions the rendezvous advertises (`long-poll`, ...).
    pub extensions: Vec<String>,
}

/// MidiEditor's four verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Good,
    Acceptable,
    Inconclusive,
    Failed,
}

impl Verdict {
    /// Good or Acceptable: a jam through this rendezvous should work.
    pub fn is_pass(self) -> bool {
        matches!(self, Verdict::Good | Verdict::Acceptable)
    }

    /// Applies MidiEditor's thresholds to a successful run.
    pub fn for_success(rendezvous_ms: f64, handshake_ms: f64) -> Verdict {
        if rendezvous_ms <= GOOD_RENDEZVOUS_MS && handshake_ms <= GOOD_HANDSHAKE_MS {
            Verdict::Good
        } else {
            Verdict::Acceptable
        }
    }
}

/// The loopback's timings (see the module docs for where each starts and ends).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    pub rendezvous_ms: Option<f64>,
    pub handshake_ms: Option<f64>,
    pub round_trip_ms: Option<f64>,
    /// The loopback from start to end (health included), as MidiEditor's
    /// `totalMs`; the STUN/TURN checks are not part of it.
    pub total_ms: f64,
}

/// STUN or TURN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServerKind {
    Stun,
    Turn,
    /// The entry could not be parsed.
    Unknown,
}

/// Why a STUN/TURN server check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum ServerError {
    /// The entry does not follow `scheme:[user[:pass]@]host[:port][?transport=...]`.
    #[error("bad URL: {detail}")]
    BadUrl { detail: String },
    /// DNS has no address for the host.
    #[error("the name {host:?} does not resolve")]
    Unresolvable { host: String },
    /// Nothing answered: no reply within the bound, or the host said the
    /// port is closed.
    #[error("unreachable: {detail}")]
    Unreachable { detail: String },
    /// The TURN server rejected the user name or password.
    #[error(
        "authentication failed: the server rejected the user name or password ({code} {reason})"
    )]
    AuthFailed { code: u16, reason: String },
    /// A TURN server that wants credentials, and the entry has none.
    #[error("the TURN server requires a user name and password, and none are given")]
    NoCredentials,
    /// The server answered with a STUN error other than an auth failure.
    #[error("the server refused: {code} {reason}")]
    Refused { code: u16, reason: String },
    /// It answered, but not with STUN we could use.
    #[error("unexpected answer: {detail}")]
    BadResponse { detail: String },
    /// A local socket problem.
    #[error("local error: {detail}")]
    Local { detail: String },
}

impl ServerError {
    /// What to do about it, in plain words.
    pub fn hint(&self) -> String {
        match self {
            ServerError::BadUrl { .. } => "Write it as stun:host[:port] or turn:user:password@host[:port][?transport=udp]; percent-encode ':' (%3A) and '@' (%40) inside a user name or password.".into(),
            ServerError::Unresolvable { .. } => "Check the spelling of the host name, or use its IP address.".into(),
            ServerError::Unreachable { .. } => "Check the host and port. The server may be down, or a firewall may block UDP to it (STUN/TURN use UDP port 3478 by default).".into(),
            ServerError::AuthFailed { .. } => "Check the TURN user name and password (and that the account still exists; some providers issue credentials that expire).".into(),
            ServerError::NoCredentials => "Add the credentials to the entry: turn:user:password@host:port.".into(),
            ServerError::Refused { code: 486 | 508, .. } => "The TURN server is at its allocation limit; try later or ask its operator.".into(),
            ServerError::Refused { .. } => "The server does not accept this request; it may not be a TURN server, or not allow this account.".into(),
            ServerError::BadResponse { .. } => "Something answers on that port, but it is not a working STUN/TURN server. Check the port.".into(),
            ServerError::Local { .. } => "This computer could not open a UDP socket; check security software.".into(),
        }
    }
}

/// One STUN/TURN server's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerReport {
    /// The entry as given, with any password replaced by `***`.
    pub uri: String,
    pub kind: ServerKind,
    /// `udp`, `tcp` or `tls`; empty for a bad URL.
    pub transport: String,
    pub status: Status,
    /// The address the server saw us at: our server-reflexive candidate.
    pub mapped_address: Option<String>,
    /// The TURN relay address allocated for us: our relay candidate.
    pub relay_address: Option<String>,
    /// Time from the first request to the answer that settled it.
    pub rtt_ms: Option<f64>,
    pub duration_ms: f64,
    /// What happened, in words.
    pub detail: String,
    pub error: Option<ServerError>,
    pub hint: Option<String>,
}

/// Progress events, in order, for a UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Progress {
    /// A loopback stage began.
    StageStarted { stage: StageId, label: String },
    /// A loopback stage ended (passed, failed, or skipped).
    StageFinished { report: StageReport },
    /// A server check began.
    ServerStarted { index: usize, uri: String },
    /// A server check ended.
    ServerFinished { index: usize, report: ServerReport },
}

/// Everything a check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub rendezvous_url: String,
    /// MidiEditor's verdict on the rendezvous + WebRTC loopback.
    pub verdict: Verdict,
    /// The verdict in plain words, with the failing stage and servers.
    pub summary: String,
    /// The stage that failed, if any.
    pub failed_stage: Option<StageId>,
    /// The test session's code, once obtained.
    pub code: Option<String>,
    pub health: Option<HealthInfo>,
    /// Every stage, in order.
    pub stages: Vec<StageReport>,
    pub timings: Timings,
    /// One row per listed STUN/TURN server, in the order given.
    pub ice_servers: Vec<ServerReport>,
    /// The whole check, loopback and servers (they run in parallel).
    pub duration_ms: f64,
}

impl Report {
    /// Good/Acceptable, and no listed STUN/TURN server failed (rows that
    /// were not checked do not count against it).
    pub fn passed(&self) -> bool {
        self.verdict.is_pass() && self.ice_servers.iter().all(|s| s.status != Status::Failed)
    }
}

type Sink = Arc<dyn Fn(Progress) + Send + Sync>;

/// Runs the whole check: health and the loopback on `cfg.rendezvous_url`,
/// and every STUN/TURN server in `cfg.ice_servers`, in parallel.
/// `on_progress` is called as stages and servers start and finish. Stage
/// events come in order; server events come from one task per server, so
/// they may interleave with them and with each other. It must not block
/// (hand the event to a channel or a UI event loop).
///
/// Must run inside a multi-threaded Tokio runtime. Never panics on bad
/// input; returns within about `max(cfg.timeout, cfg.server_timeout)`.
pub async fn run_check<F>(cfg: &CheckConfig, on_progress: F) -> Report
where
    F: Fn(Progress) + Send + Sync + 'static,
{
    let sink: Sink = Arc::new(on_progress);
    let started = Instant::now();
    let (loopback, ice_servers) = tokio::join!(
        loopback(cfg, sink.clone()),
        check_servers(&cfg.ice_servers, cfg.server_timeout, sink.clone()),
    );
    let timings = loopback.timings;
    let summary = summarize(
        loopback.verdict,
        loopback.failed_stage,
        &loopback.stages,
        &timings,
        &ice_servers,
    );
    Report {
        rendezvous_url: cfg.rendezvous_url.trim().to_owned(),
        verdict: loopback.verdict,
        summary,
        failed_stage: loopback.failed_stage,
        code: loopback.code,
        health: loopback.health,
        stages: loopback.stages,
        timings,
        ice_servers,
        duration_ms: ms(started.elapsed()),
    }
}

/// [`run_check`] without progress reports.
pub async fn run_check_quiet(cfg: &CheckConfig) -> Report {
    run_check(cfg, |_| {}).await
}

// ------------------------------------------------------------------ health

/// The rendezvous base URL without a trailing `/`, checked: `http(s)://host...`.
fn base_url(raw: &str) -> Result<String, CheckError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let bad = |detail: &str| CheckError::BadUrl {
        url: raw.trim().to_owned(),
        detail: detail.to_owned(),
    };
    let url = reqwest::Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("it must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host name"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a rendezvous URL has no ?query or #fragment"));
    }
    Ok(trimmed.to_owned())
}

/// The shared HTTP client settings: HTTP/1.1 (what MidiEditor speaks), no
/// proxy from the environment (as [`crate::signal`] does), bounded connects.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .connect_timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// `GET {url}/health` within `timeout`, the way MidiEditor probes a
/// rendezvous, but reading the body too, so that "something answered" and
/// "a v3 rendezvous answered" are told apart.
pub async fn check_health(url: &str, timeout: Duration) -> Result<HealthInfo, CheckError> {
    check_health_with(&http_client(), url, timeout).await
}

async fn check_health_with(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<HealthInfo, CheckError> {
    let base = base_url(url)?;
    let started = Instant::now();
    let fetch = async {
        let response = http
            .get(format!("{base}/health"))
            .send()
            .await
            .map_err(|e| classify(&e, &base, timeout))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(CheckError::HttpStatus {
                status,
                message: None,
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = read_capped(response, MAX_HEALTH_BODY)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => CheckError::NotARendezvous {
                    detail: format!("/health sent more than {} KiB", MAX_HEALTH_BODY / 1024),
                },
                ReadError::Http(e) => classify(&e, &base, timeout),
            })?;
        Ok((content_type, body))
    };
    let (content_type, body) =
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| CheckError::TimedOut {
                ms: timeout.as_millis() as u64,
            })??;
    let latency_ms = ms(started.elapsed());
    parse_health(&content_type, &body, latency_ms)
}

/// Reads `/health`'s body as a v3 rendezvous's JSON.
fn parse_health(
    content_type: &str,
    body: &[u8],
    latency_ms: f64,
) -> Result<HealthInfo, CheckError> {
    let not = |detail: String| CheckError::NotARendezvous { detail };
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).to_ascii_lowercase();
            let what = if text.contains("<html") || text.contains("<!doctype") {
                "it sent a web page (HTML)".to_owned()
            } else if body.is_empty() {
                "it sent an empty answer".to_owned()
            } else if content_type.is_empty() {
                "its answer is not JSON".to_owned()
            } else {
                format!("its answer is not JSON ({content_type})")
            };
            return Err(not(what));
        }
    };
    let Some(object) = value.as_object() else {
        return Err(not("its answer is JSON but not an object".to_owned()));
    };
    match object.get("service").and_then(Value::as_str) {
        Some("midi-rdv") => {}
        Some(other) => {
            return Err(not(format!(
                "it says it is {:?}, not \"midi-rdv\"",
                other.chars().take(40).collect::<String>()
            )))
        }
        None => return Err(not("its JSON has no \"service\": \"midi-rdv\"".to_owned())),
    }
    let version = object.get("version").and_then(Value::as_u64);
    match version {
        Some(v) if v >= MIN_PROTOCOL_VERSION => {}
        other => return Err(CheckError::ProtocolTooOld { version: other }),
    }
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(80).collect::<String>())
    };
    Ok(HealthInfo {
        latency_ms,
        service: "midi-rdv".to_owned(),
        version: version.unwrap_or(MIN_PROTOCOL_VERSION),
        protocol: text("protocol"),
        max_peers_per_session: object.get("maxPeersPerSession").and_then(Value::as_u64),
        extensions: object
            .get("extensions")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .take(32)
                    .map(|s| s.chars().take(40).collect())
                    .collect()
            })
            .unwrap_or_default(),
    })
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// Reads a body, refusing more than `cap` bytes (a misconfigured URL can
/// point at a huge download).
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns a reqwest error into a reason a person can act on, by looking at
/// the whole chain of causes (reqwest wraps hyper wraps the I/O or TLS error).
fn classify(err: &reqwest::Error, base: &str, timeout: Duration) -> CheckError {
    let mut io_kinds = Vec::new();
    let mut text = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut depth = 0;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kinds.push(io.kind());
        }
        text.push_str(&e.to_string().to_ascii_lowercase());
        text.push_str(" | ");
        source = e.source();
        depth += 1;
        if depth > 16 {
            break;
        }
    }
    classify_parts(err.is_timeout(), &io_kinds, &text, base, timeout)
}

fn classify_parts(
    is_timeout: bool,
    io_kinds: &[std::io::ErrorKind],
    text: &str,
    base: &str,
    timeout: Duration,
) -> CheckError {
    use std::io::ErrorKind;
    let url = reqwest::Url::parse(base).ok();
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let addr = url
        .as_ref()
        .map(|u| format!("{host}:{}", u.port_or_known_default().unwrap_or(0)))
        .unwrap_or_default();
    if is_timeout || io_kinds.contains(&ErrorKind::TimedOut) {
        return CheckError::TimedOut {
            ms: timeout.as_millis() as u64,
        };
    }
    if io_kinds.contains(&ErrorKind::ConnectionRefused) || text.contains("connection refused") {
        return CheckError::ConnectionRefused { addr };
    }
    if text.contains("dns error")
        || text.contains("failed to lookup address")
        || text.contains("name or service not known")
        || text.contains("no such host")
        || text.contains("nodename nor servname")
    {
        return CheckError::Unresolvable { host };
    }
    if text.contains("tls")
        || text.contains("certificate")
        || text.contains("corrupt message")
        || text.contains("invalidcontenttype")
        || text.contains("handshake")
        || text.contains("unknownissuer")
    {
        let detail = text
            .split(" | ")
            .filter(|part| !part.is_empty())
            .last()
            .unwrap_or("handshake failed")
            .chars()
            .take(200)
            .collect();
        return CheckError::Tls { detail };
    }
    if io_kinds.contains(&ErrorKind::ConnectionReset)
        || io_kinds.contains(&ErrorKind::ConnectionAborted)
    {
        return CheckError::Network {
            detail: "the connection was closed before an answer (a proxy, firewall or non-HTTP service?)".to_owned(),
        };
    }
    let detail: String = text
        .split(" | ")
        .filter(|p| !p.is_empty())
        .last()
        .unwrap_or("unknown error")
        .chars()
        .take(200)
        .collect();
    CheckError::Network { detail }
}

// ---------------------------------------------------------------- loopback

/// Records stage outcomes and reports them as they happen.
struct Recorder {
    stages: Vec<StageReport>,
    sink: Sink,
    running: Option<(StageId, Instant)>,
}

impl Recorder {
    fn new(sink: Sink) -> Self {
        let stages = StageId::ALL
            .iter()
            .map(|&stage| StageReport {
                stage,
                label: stage.label().to_owned(),
                status: Status::Pending,
                duration_ms: None,
                detail: None,
                error: None,
                hint: None,
            })
            .collect();
        Recorder {
            stages,
            sink,
            running: None,
        }
    }

    fn slot(&mut self, stage: StageId) -> &mut StageReport {
        let index = StageId::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        &mut self.stages[index]
    }

    fn start(&mut self, stage: StageId) {
        self.running = Some((stage, Instant::now()));
        self.slot(stage).status = Status::Running;
        (self.sink)(Progress::StageStarted {
            stage,
            label: stage.label().to_owned(),
        });
    }

    fn elapsed(&self, stage: StageId) -> Option<f64> {
        self.running
            .filter(|(s, _)| *s == stage)
            .map(|(_, at)| ms(at.elapsed()))
    }

    fn pass(&mut self, stage: StageId, detail: String) {
        let duration = self.elapsed(stage);
        let slot = self.slot(stage);
        slot.status = Status::Passed;
        slot.duration_ms = duration;
        slot.detail = Some(detail);
        let report = slot.clone();
        self.running = None;
        (self.sink)(Progress::StageFinished { report });
    }

    fn fail(&mut self, stage: StageId, error: CheckError) {
        let duration = self.elapsed(stage);
        let slot = self.slot(stage);
        slot.status = Status::Failed;
        slot.duration_ms = duration;
        slot.detail = Some(error.to_string());
        slot.hint = Some(error.hint());
        slot.error = Some(error);
        let report = slot.clone();
        self.running = None;
        (self.sink)(Progress::StageFinished { report });
    }

    /// Marks every stage that never ran as skipped.
    fn skip_rest(&mut self) {
        for i in 0..self.stages.len() {
            if self.stages[i].status == Status::Pending {
                self.stages[i].status = Status::Skipped;
                let report = self.stages[i].clone();
                (self.sink)(Progress::StageFinished { report });
            }
        }
    }
}

struct LoopbackOutcome {
    verdict: Verdict,
    failed_stage: Option<StageId>,
    code: Option<String>,
    health: Option<HealthInfo>,
    stages: Vec<StageReport>,
    timings: Timings,
}

/// What the stages found, filled in as they go (so a timeout keeps it).
#[derive(Default)]
struct Found {
    code: Option<String>,
    health: Option<HealthInfo>,
    answer_posted_at: Option<Instant>,
    connected_at: Option<Instant>,
    round_trip: Option<Duration>,
}

async fn loopback(cfg: &CheckConfig, sink: Sink) -> LoopbackOutcome {
    let started = Instant::now();
    let mut rec = Recorder::new(sink);
    let mut found = Found::default();
    let result =
        match tokio::time::timeout(cfg.timeout, run_stages(cfg, &mut rec, &mut found)).await {
            Ok(result) => result,
            Err(_) => {
                let error = CheckError::TimedOut {
                    ms: cfg.timeout.as_millis() as u64,
                };
                let stage = rec.running.map(|(s, _)| s).unwrap_or(StageId::Health);
                rec.fail(stage, error.clone());
                Err((stage, error))
            }
        };
    rec.skip_rest();

    let at = |instant: Option<Instant>| instant.map(|i| ms(i.duration_since(started)));
    let rendezvous_ms = at(found.answer_posted_at);
    let handshake_ms = match (found.answer_posted_at, found.connected_at) {
        (Some(a), Some(c)) => Some(ms(c.duration_since(a))),
        _ => None,
    };
    let timings = Timings {
        rendezvous_ms,
        handshake_ms,
        round_trip_ms: found.round_trip.map(ms),
        total_ms: ms(started.elapsed()),
    };
    let (verdict, failed_stage) = match &result {
        Ok(()) => (
            Verdict::for_success(
                rendezvous_ms.unwrap_or(f64::MAX),
                handshake_ms.unwrap_or(f64::MAX),
            ),
            None,
        ),
        Err((stage, error)) => {
            let inconclusive = found.code.is_some() && error.is_transport_or_timeout();
            (
                if inconclusive {
                    Verdict::Inconclusive
                } else {
                    Verdict::Failed
                },
                Some(*stage),
            )
        }
    };
    LoopbackOutcome {
        verdict,
        failed_stage,
        code: found.code,
        health: found.health,
        stages: rec.stages,
        timings,
    }
}

/// Runs `f` as stage `stage`: records the start, and the pass or failure.
async fn stage<T, Fut>(
    rec: &mut Recorder,
    stage: StageId,
    f: Fut,
    describe: impl FnOnce(&T) -> String,
) -> Result<T, (StageId, CheckError)>
where
    Fut: Future<Output = Result<T, CheckError>>,
{
    rec.start(stage);
    match f.await {
        Ok(value) => {
            rec.pass(stage, describe(&value));
            Ok(value)
        }
        Err(error) => {
            rec.fail(stage, error.clone());
            Err((stage, error))
        }
    }
}

/// A spawned task aborted when dropped, so that a timeout or an early
/// return never leaves a poller or a half-made connection behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> AbortOnDrop<T> {
    async fn join(&mut self) -> Result<T, CheckError> {
        (&mut self.0).await.map_err(|e| CheckError::WebRtc {
            detail: format!("internal task failed: {e}"),
        })
    }
}

/// The rendezvous, seen from one side, over plain HTTP.
#[derive(Clone)]
struct RdvClient {
    http: reqwest::Client,
    base: String,
    long_poll: bool,
}

impl RdvClient {
    /// One request with a JSON reply; any status but 200 is an error except
    /// those the caller accepts (`ok_404`), which give `None`.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        extra_wait: Duration,
        ok_404: bool,
    ) -> Result<Option<Value>, CheckError> {
        let timeout = REQUEST_TIMEOUT + extra_wait;
        let exchange = async {
            let response = req
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| classify(&e, &self.base, timeout))?;
            let status = response.status().as_u16();
            let body = read_capped(response, MAX_BODY).await.map_err(|e| match e {
                ReadError::TooLarge => CheckError::Rendezvous {
                    detail: "an answer larger than 2 MiB".to_owned(),
                },
                ReadError::Http(e) => classify(&e, &self.base, timeout),
            })?;
            Ok::<_, CheckError>((status, body))
        };
        let (status, body) = exchange.await?;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match status {
            200 => Ok(Some(value)),
            404 if ok_404 => Ok(None),
            _ => Err(CheckError::HttpStatus {
                status,
                message: value
                    .get("error")
                    .and_then(Value::as_str)
                    .map(|m| m.chars().take(200).collect()),
            }),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The host side's session.
struct HostSession {
    code: String,
    token: Option<String>,
}

async fn run_stages(
    cfg: &CheckConfig,
    rec: &mut Recorder,
    found: &mut Found,
) -> Result<(), (StageId, CheckError)> {
    let rtc = RtcConfig {
        ice_servers: Vec::new(),
        gather_timeout: cfg.gather_timeout,
        bind_ips: cfg.bind_ips.clone(),
        resolve_mdns: false,
    };

    // Health.
    let host_http = http_client();
    let health = stage(
        rec,
        StageId::Health,
        check_health_with(&host_http, &cfg.rendezvous_url, cfg.health_timeout),
        |h: &HealthInfo| {
            let mut text = format!("midi-rdv v{}", h.version);
            if let Some(p) = &h.protocol {
                text.push_str(&format!(" ({p})"));
            }
            if !h.extensions.is_empty() {
                text.push_str(&format!(", extensions: {}", h.extensions.join(", ")));
            }
            text
        },
    )
    .await?;
    let long_poll = health.extensions.iter().any(|e| e == "long-poll");
    found.health = Some(health);
    // base_url succeeded inside the health check.
    let base = base_url(&cfg.rendezvous_url).map_err(|e| (StageId::Health, e))?;
    let host = RdvClient {
        http: host_http,
        base: base.clone(),
        long_poll,
    };
    let joiner = RdvClient {
        http: http_client(),
        base,
        long_poll,
    };

    // Session (host side).
    let session_id = format!("connection-test-{}", random_id(12));
    let session = stage(
        rec,
        StageId::Session,
        post_session(&host, &session_id),
        |s: &HostSession| format!("code {}", s.code),
    )
    .await?;
    found.code = Some(session.code.clone());
    let session = Arc::new(session);

    // From now on the host side waits for our offer, as MidiEditor's host
    // starts polling right after its session is posted.
    let joiner_id = random_id(16);
    let mut host_task = AbortOnDrop(tokio::spawn(host_side(
        host.clone(),
        session.clone(),
        joiner_id.clone(),
        rtc.clone(),
    )));

    // Verify (joiner side).
    let code = session.code.clone();
    stage(
        rec,
        StageId::Verify,
        verify_code(&joiner, &code, &session_id),
        |_| format!("code {code} found"),
    )
    .await?;

    // Offer (joiner side).
    let mut offerer = stage(
        rec,
        StageId::Offer,
        make_and_post_offer(&joiner, &code, &joiner_id, &rtc),
        |o: &Offerer| {
            let candidates = o
                .offer_sdp()
                .lines()
                .filter(|l| l.starts_with("a=candidate:"))
                .count();
            format!("offer with {candidates} candidate(s) posted")
        },
    )
    .await?;

    // The joiner polls for the answer in parallel with the host's work, as
    // MidiEditor starts polling right after posting its offer.
    let mut answer_poll = AbortOnDrop(tokio::spawn(poll_answer(
        joiner.clone(),
        code.clone(),
        joiner_id.clone(),
    )));

    // Answer (host side).
    let mut answered = stage(
        rec,
        StageId::Answer,
        async { host_task.join().await? },
        |a: &Answered| {
            let candidates = a
                .answer_sdp
                .lines()
                .filter(|l| l.starts_with("a=candidate:"))
                .count();
            format!("answer with {candidates} candidate(s) posted")
        },
    )
    .await?;
    found.answer_posted_at = Some(Instant::now());

    // Connect: the joiner gets the answer, ICE + DTLS + SCTP.
    stage(
        rec,
        StageId::Connect,
        async {
            let answer_sdp = answer_poll.join().await??;
            offerer
                .accept(&answer_sdp)
                .await
                .map_err(|e| CheckError::WebRtc {
                    detail: e.to_string(),
                })?;
            wait_both_open(&mut answered, &mut offerer).await
        },
        |_| "data channel open on both sides".to_owned(),
    )
    .await?;
    found.connected_at = Some(Instant::now());

    // Round trip.
    let rtt = stage(
        rec,
        StageId::RoundTrip,
        ping_pong(&mut answered, &mut offerer),
        |rtt: &Duration| format!("{:.1} ms", ms(*rtt)),
    )
    .await?;
    found.round_trip = Some(rtt);

    answered.link.close().await;
    offerer.close().await;
    Ok(())
}

async fn post_session(host: &RdvClient, session_id: &str) -> Result<HostSession, CheckError> {
    let body = serde_json::json!({
        "sessionId": session_id,
        "displayName": "Connection test",
        "protectAnswers": true,
    });
    let value = host
        .call(
            host.http.post(host.url("/session")).json(&body),
            Duration::ZERO,
            false,
        )
        .await?
        .unwrap_or(Value::Null);
    let code = value
        .get("code")
        .and_then(Value::as_str)
        .filter(|c| rdv::code::Code::parse_route(c).is_some())
        .ok_or_else(|| CheckError::Rendezvous {
            detail: "POST /session returned no valid code".to_owned(),
        })?;
    Ok(HostSession {
        code: code.to_owned(),
        token: value
            .get("hostToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
    })
}

async fn verify_code(joiner: &RdvClient, code: &str, session_id: &str) -> Result<(), CheckError> {
    let value = joiner
        .call(
            joiner.http.get(joiner.url(&format!("/code/{code}"))),
            Duration::ZERO,
            true,
        )
        .await?
        .ok_or_else(|| CheckError::Rendezvous {
            detail: format!("it does not know the code {code} it just gave out"),
        })?;
    match value.get("sessionId").and_then(Value::as_str) {
        Some(id) if id == session_id => Ok(()),
        _ => Err(CheckError::Rendezvous {
            detail: format!("GET /code/{code} did not return our session"),
        }),
    }
}

async fn make_and_post_offer(
    joiner: &RdvClient,
    code: &str,
    joiner_id: &str,
    rtc: &RtcConfig,
) -> Result<Offerer, CheckError> {
    let offerer = Offerer::new(rtc, CHANNEL_LABEL)
        .await
        .map_err(|e| CheckError::WebRtc {
            detail: e.to_string(),
        })?;
    let body = serde_json::json!({ "joinerId": joiner_id, "sdp": offerer.offer_sdp() });
    joiner
        .call(
            joiner
                .http
                .post(joiner.url(&format!("/code/{code}/joiner-offer")))
                .json(&body),
            Duration::ZERO,
            false,
        )
        .await?;
    Ok(offerer)
}

/// The host side: waits for our joiner's offer, answers it with its own
/// PeerConnection, posts the answer.
async fn host_side(
    host: RdvClient,
    session: Arc<HostSession>,
    joiner_id: String,
    rtc: RtcConfig,
) -> Result<Answered, CheckError> {
    let path = format!("/code/{}/joiner-offers", session.code);
    let mut first = true;
    let offer_sdp = loop {
        let (url, wait) = if host.long_poll {
            (
                format!("{}?wait={LONG_POLL_MS}", host.url(&path)),
                Duration::from_millis(LONG_POLL_MS),
            )
        } else {
            if !first {
                tokio::time::sleep(HOST_POLL).await;
            }
            (host.url(&path), Duration::ZERO)
        };
        first = false;
        let mut req = host.http.get(url);
        if let Some(token) = &session.token {
            req = req.bearer_auth(token);
        }
        let value = host
            .call(req, wait, true)
            .await?
            .ok_or_else(|| CheckError::Rendezvous {
                detail: "the session vanished from the rendezvous (404 on joiner-offers)"
                    .to_owned(),
            })?;
        let offers = value
            .get("offers")
            .and_then(Value::as_array)
            .ok_or_else(|| CheckError::Rendezvous {
                detail: "joiner-offers has no offers list".to_owned(),
            })?;
        let ours = offers.iter().find_map(|o| {
            (o.get("joinerId").and_then(Value::as_str) == Some(joiner_id.as_str()))
                .then(|| o.get("sdp").and_then(Value::as_str).map(str::to_owned))
                .flatten()
        });
        if let Some(sdp) = ours {
            break sdp;
        }
    };
    let answered = answer_offer(&offer_sdp, &rtc)
        .await
        .map_err(|e| CheckError::WebRtc {
            detail: e.to_string(),
        })?;
    let body = serde_json::json!({ "joinerId": joiner_id, "sdp": answered.answer_sdp });
    let mut req = host
        .http
        .post(host.url(&format!("/code/{}/host-answer", session.code)))
        .json(&body);
    if let Some(token) = &session.token {
        req = req.bearer_auth(token);
    }
    host.call(req, Duration::ZERO, false).await?;
    Ok(answered)
}

/// The joiner's answer poll: 404 "not yet" until the host has answered.
async fn poll_answer(
    joiner: RdvClient,
    code: String,
    joiner_id: String,
) -> Result<String, CheckError> {
    let path = format!("/code/{code}/host-answer/{joiner_id}");
    let mut first = true;
    loop {
        let (url, wait) = if joiner.long_poll {
            (
                format!("{}?wait={LONG_POLL_MS}", joiner.url(&path)),
                Duration::from_millis(LONG_POLL_MS),
            )
        } else {
            if !first {
                tokio::time::sleep(JOINER_POLL).await;
            }
            (joiner.url(&path), Duration::ZERO)
        };
        first = false;
        if let Some(value) = joiner.call(joiner.http.get(url), wait, true).await? {
            return value
                .get("sdp")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| CheckError::Rendezvous {
                    detail: "host-answer returned no SDP".to_owned(),
                });
        }
    }
}

/// Waits until the channel is open on both sides, or either side fails.
async fn wait_both_open(answered: &mut Answered, offerer: &mut Offerer) -> Result<(), CheckError> {
    let (mut host_open, mut joiner_open) = (false, false);
    let mut joiner_state = offerer.state_watch();
    while !(host_open && joiner_open) {
        tokio::select! {
            event = answered.events.recv(), if !host_open => match event {
                Some(LinkEvent::ChannelOpen { .. }) => host_open = true,
                Some(LinkEvent::State(LinkState::Failed | LinkState::Closed)) | None => {
                    return Err(CheckError::ConnectFailed {
                        detail: "the host side's connection failed (ICE found no working address pair, or DTLS failed)".to_owned(),
                    })
                }
                Some(_) => {}
            },
            event = offerer.next_event(), if !joiner_open => match event {
                Some(OffererEvent::Open) => joiner_open = true,
                Some(OffererEvent::Closed) | None => {
                    return Err(CheckError::ConnectFailed {
                        detail: "the joiner's data channel closed before opening".to_owned(),
                    })
                }
                Some(OffererEvent::Message(_)) => {}
            },
            changed = joiner_state.wait_for(|s| matches!(s, LinkState::Failed | LinkState::Closed)) => {
                let _ = changed;
                return Err(CheckError::ConnectFailed {
                    detail: "the joiner's connection failed (ICE found no working address pair, or DTLS failed)".to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Host sends `midieditor-ping` (framed), the joiner answers
/// `midieditor-pong`; returns the round-trip time.
async fn ping_pong(answered: &mut Answered, offerer: &mut Offerer) -> Result<Duration, CheckError> {
    let ping = Bytes::from(framing::encode(framing::PING));
    let pong = Bytes::from(framing::encode(framing::PONG));
    let sent = Instant::now();
    answered
        .link
        .send(CHANNEL_LABEL, ping.clone())
        .await
        .map_err(|e| CheckError::ConnectFailed {
            detail: format!("sending the ping: {e}"),
        })?;
    loop {
        tokio::select! {
            event = offerer.next_event() => match event {
                Some(OffererEvent::Message(data)) if data == ping => {
                    offerer.send(pong.clone()).await.map_err(|e| CheckError::ConnectFailed {
                        detail: format!("sending the pong: {e}"),
                    })?;
                }
                Some(OffererEvent::Closed) | None => {
                    return Err(CheckError::ConnectFailed { detail: "the joiner's channel closed".to_owned() })
                }
                Some(_) => {}
            },
            event = answered.events.recv() => match event {
                Some(LinkEvent::Message { data, .. }) if data == pong => return Ok(sent.elapsed()),
                Some(LinkEvent::State(LinkState::Failed | LinkState::Closed)) | None => {
                    return Err(CheckError::ConnectFailed { detail: "the host side's connection closed".to_owned() })
                }
                Some(_) => {}
            },
        }
    }
}

/// `len` characters from `[A-Za-z0-9-]`, the joinerId alphabet.
fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
    let mut bytes = vec![0u8; len];
    if getrandom::fill(&mut bytes).is_err() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(7);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> (i % 4 * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

// ------------------------------------------------------------ ICE servers

/// Checks each server in parallel, each bounded by `timeout`; rows come
/// back in the order given.
pub async fn check_ice_servers(uris: &[String], timeout: Duration) -> Vec<ServerReport> {
    check_servers(uris, timeout, Arc::new(|_| {})).await
}

async fn check_servers(uris: &[String], timeout: Duration, sink: Sink) -> Vec<ServerReport> {
    let mut set = tokio::task::JoinSet::new();
    for (index, uri) in uris.iter().enumerate() {
        let (uri, sink) = (uri.clone(), sink.clone());
        set.spawn(async move {
            sink(Progress::ServerStarted {
                index,
                uri: redact(&uri),
            });
            let report = check_ice_server(&uri, timeout).await;
            sink(Progress::ServerFinished {
                index,
                report: report.clone(),
            });
            (index, report)
        });
    }
    let mut rows: Vec<Option<ServerReport>> = vec![None; uris.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((index, report)) = joined {
            rows[index] = Some(report);
        }
    }
    rows.into_iter()
        .enumerate()
        .map(|(index, row)| {
            row.unwrap_or_else(|| {
                failed_row(
                    &uris[index],
                    ServerKind::Unknown,
                    "",
                    0.0,
                    ServerError::Local {
                        detail: "the check task failed".to_owned(),
                    },
                )
            })
        })
        .collect()
}

/// Checks one STUN or TURN server within `timeout`: a Binding for `stun:`,
/// an Allocate with the entry's credentials for `turn:` (released at once).
pub async fn check_ice_server(uri: &str, timeout: Duration) -> ServerReport {
    let started = Instant::now();
    let deadline = started + timeout;
    let server = match parse_ice_uri(uri) {
        Ok(server) => server,
        Err(e) => {
            return failed_row(
                uri,
                ServerKind::Unknown,
                "",
                0.0,
                ServerError::BadUrl {
                    detail: e
                        .to_string()
                        .replace(&format!("{:?}", uri.trim()), &format!("{:?}", redact(uri))),
                },
            )
        }
    };
    let Some(target) = server.urls.first().and_then(|u| split_server_url(u)) else {
        return failed_row(
            uri,
            ServerKind::Unknown,
            "",
            0.0,
            ServerError::BadUrl {
                detail: "no host and port".to_owned(),
            },
        );
    };
    let kind = if target.scheme == "stun" {
        ServerKind::Stun
    } else {
        ServerKind::Turn
    };
    if target.transport != "udp" {
        return ServerReport {
            uri: redact(uri),
            kind,
            transport: target.transport.clone(),
            status: Status::NotChecked,
            mapped_address: None,
            relay_address: None,
            rtt_ms: None,
            duration_ms: 0.0,
            detail: format!(
                "not checked: this test speaks UDP only, and this entry uses {} (MidiEditor's libjuice also uses UDP only)",
                target.transport.to_ascii_uppercase()
            ),
            error: None,
            hint: None,
        };
    }
    let bounded = tokio::time::timeout_at(deadline, async {
        let addr = resolve(&target.host, target.port, deadline).await?;
        match kind {
            ServerKind::Turn => {
                turn_allocate(
                    addr,
                    server.username.as_deref(),
                    server.credential.as_deref(),
                    deadline,
                )
                .await
            }
            _ => stun_binding(addr, deadline).await,
        }
    })
    .await;
    let duration_ms = ms(started.elapsed());
    let outcome = bounded.unwrap_or_else(|_| {
        Err(ServerError::Unreachable {
            detail: format!("no answer within {:.1} s", timeout.as_secs_f64()),
        })
    });
    match outcome {
        Ok(probe) => {
            let mut detail = match (&probe.relay, &probe.mapped) {
                (Some(relay), Some(mapped)) => format!("relay {relay} allocated; seen as {mapped}"),
                (Some(relay), None) => format!("relay {relay} allocated"),
                (None, Some(mapped)) => format!("seen as {mapped}"),
                (None, None) => "answered".to_owned(),
            };
            if let Some(lifetime) = probe.lifetime {
                detail.push_str(&format!(" (granted for {lifetime} s, released at once)"));
            }
            ServerReport {
                uri: redact(uri),
                kind,
                transport: "udp".to_owned(),
                status: Status::Passed,
                mapped_address: probe.mapped.map(|a| a.to_string()),
                relay_address: probe.relay.map(|a| a.to_string()),
                rtt_ms: Some(ms(probe.rtt)),
                duration_ms,
                detail,
                error: None,
                hint: None,
            }
        }
        Err(error) => failed_row(uri, kind, "udp", duration_ms, error),
    }
}

fn failed_row(
    uri: &str,
    kind: ServerKind,
    transport: &str,
    duration_ms: f64,
    error: ServerError,
) -> ServerReport {
    ServerReport {
        uri: redact(uri),
        kind,
        transport: transport.to_owned(),
        status: Status::Failed,
        mapped_address: None,
        relay_address: None,
        rtt_ms: None,
        duration_ms,
        detail: error.to_string(),
        hint: Some(error.hint()),
        error: Some(error),
    }
}

struct ServerUrl {
    scheme: String,
    host: String,
    port: u16,
    transport: String,
}

/// Splits the normalised `scheme:host:port[?transport=t]` that
/// [`parse_ice_uri`] produces.
fn split_server_url(url: &str) -> Option<ServerUrl> {
    let (scheme, rest) = url.split_once(':')?;
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let (host, port) = hostport.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let transport = match (scheme, query.and_then(|q| q.strip_prefix("transport="))) {
        ("turns", _) => "tls".to_owned(),
        (_, Some(t)) => t.to_ascii_lowercase(),
        _ => "udp".to_owned(),
    };
    Some(ServerUrl {
        scheme: scheme.to_owned(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        transport,
    })
}

/// An entry with any password replaced by `***`, for reports and logs.
pub fn redact(uri: &str) -> String {
    let uri = uri.trim();
    let Some((creds, rest)) = uri.rsplit_once('@') else {
        return uri.to_owned();
    };
    // `creds` is `[scheme:]user[:pass]`.
    let (scheme, userpass) = match creds.split_once(':') {
        Some((s, up)) if ["stun", "turn", "turns"].contains(&s.to_ascii_lowercase().as_str()) => {
            (Some(s), up)
        }
        _ => (None, creds),
    };
    let user = match userpass.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userpass.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}:{user}@{rest}"),
        None => format!("{user}@{rest}"),
    }
}

async fn resolve(host: &str, port: u16, deadline: Instant) -> Result<SocketAddr, ServerError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let lookup = tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port))).await;
    match lookup {
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| ServerError::Unresolvable {
            host: host.to_owned(),
        }),
        Ok(Err(_)) => Err(ServerError::Unresolvable {
            host: host.to_owned(),
        }),
        Err(_) => Err(ServerError::Unreachable {
            detail: format!("looking up {host:?} took too long"),
        }),
    }
}

struct Probe {
    mapped: Option<SocketAddr>,
    relay: Option<SocketAddr>,
    /// The allocation's LIFETIME the server granted, in seconds.
    lifetime: Option<u32>,
    rtt: Duration,
}

fn stun_error(e: stun::StunError) -> ServerError {
    match e {
        stun::StunError::Timeout(after) => ServerError::Unreachable {
            detail: format!("no answer within {:.1} s", after.as_secs_f64()),
        },
        stun::StunError::Unreachable(detail) => ServerError::Unreachable { detail },
        stun::StunError::Malformed(detail) => ServerError::BadResponse { detail },
        stun::StunError::Socket(detail) => ServerError::Local { detail },
    }
}

async fn stun_binding(addr: SocketAddr, deadline: Instant) -> Result<Probe, ServerError> {
    let client = stun::Client::connect(addr).await.map_err(stun_error)?;
    let (response, rtt) = client
        .transact(&stun::binding_request(stun::new_txid()), deadline)
        .await
        .map_err(stun_error)?;
    match response.msg_type {
        stun::BINDING_SUCCESS => {
            let mapped = response
                .xor_address(stun::ATTR_XOR_MAPPED_ADDRESS)
                .or_else(|| response.plain_address())
                .ok_or_else(|| ServerError::BadResponse {
                    detail: "a Binding success without a mapped address".to_owned(),
                })?;
            Ok(Probe {
                mapped: Some(mapped),
                relay: None,
                lifetime: None,
                rtt,
            })
        }
        stun::BINDING_ERROR => {
            let (code, reason) = response.error_code().unwrap_or((0, String::new()));
            Err(ServerError::Refused { code, reason })
        }
        other => Err(ServerError::BadResponse {
            detail: format!("message type 0x{other:04x} in answer to a Binding request"),
        }),
    }
}

/// TURN Allocate with the long-term credential mechanism (RFC 5766 §6,
/// RFC 5389 §10.2): an unauthenticated try, the server's 401 with REALM and
/// NONCE, then a signed try. A 401 (or 441) on the signed try means the
/// credentials are wrong; a 438 (stale nonce) is retried once with the new
/// nonce. A successful allocation is released at once.
async fn turn_allocate(
    addr: SocketAddr,
    username: Option<&str>,
    password: Option<&str>,
    deadline: Instant,
) -> Result<Probe, ServerError> {
    let client = stun::Client::connect(addr).await.map_err(stun_error)?;
    let (first, first_rtt) = client
        .transact(&stun::allocate_request(stun::new_txid(), None), deadline)
        .await
        .map_err(stun_error)?;
    let challenge = match first.msg_type {
        stun::ALLOCATE_SUCCESS => {
            // A server without authentication: nothing to sign.
            return allocated(&first, first_rtt, None, &client).await;
        }
        stun::ALLOCATE_ERROR => first,
        stun::BINDING_SUCCESS | stun::BINDING_ERROR => {
            return Err(ServerError::BadResponse {
                detail: "it answers STUN but not TURN Allocate".to_owned(),
            })
        }
        other => {
            return Err(ServerError::BadResponse {
                detail: format!("message type 0x{other:04x} in answer to an Allocate"),
            })
        }
    };
    let (code, reason) = challenge.error_code().unwrap_or((0, String::new()));
    if code != 401 {
        return Err(ServerError::Refused { code, reason });
    }
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ServerError::NoCredentials);
    };
    let mut realm = challenge.text(stun::ATTR_REALM).unwrap_or_default();
    let mut nonce = challenge
        .text(stun::ATTR_NONCE)
        .ok_or_else(|| ServerError::BadResponse {
            detail: "a 401 without a NONCE".to_owned(),
        })?;
    let mut stale_retried = false;
    loop {
        let auth = stun::Auth {
            username,
            realm: &realm,
            nonce: &nonce,
            key: stun::long_term_key(username, &realm, password),
        };
        let (response, rtt) = client
            .transact(
                &stun::allocate_request(stun::new_txid(), Some(&auth)),
                deadline,
            )
            .await
            .map_err(stun_error)?;
        match response.msg_type {
            stun::ALLOCATE_SUCCESS => {
                if response.integrity_ok(&auth.key) == Some(false) {
                    return Err(ServerError::BadResponse {
                        detail: "the allocation's MESSAGE-INTEGRITY does not verify with these credentials"
                            .to_owned(),
                    });
                }
                return allocated(&response, rtt, Some(&auth), &client).await;
            }
            stun::ALLOCATE_ERROR => {
                let (code, reason) = response.error_code().unwrap_or((0, String::new()));
                match code {
                    401 | 441 => return Err(ServerError::AuthFailed { code, reason }),
                    438 if !stale_retried => {
                        stale_retried = true;
                        if let Some(new_nonce) = response.text(stun::ATTR_NONCE) {
                            nonce = new_nonce;
                        }
                        if let Some(new_realm) = response.text(stun::ATTR_REALM) {
                            realm = new_realm;
                        }
                    }
                    _ => return Err(ServerError::Refused { code, reason }),
                }
            }
            other => {
                return Err(ServerError::BadResponse {
                    detail: format!("message type 0x{other:04x} in answer to an Allocate"),
                })
            }
        }
    }
}

/// Reads the addresses of an Allocate success and releases the allocation.
async fn allocated(
    response: &stun::Message,
    rtt: Duration,
    auth: Option<&stun::Auth<'_>>,
    client: &stun::Client,
) -> Result<Probe, ServerError> {
    let relay = response
        .xor_address(stun::ATTR_XOR_RELAYED_ADDRESS)
        .ok_or_else(|| ServerError::BadResponse {
            detail: "an Allocate success without a relayed address".to_owned(),
        })?;
    let mapped = response.xor_address(stun::ATTR_XOR_MAPPED_ADDRESS);
    if let Some(auth) = auth {
        client
            .send_once(&stun::release_request(stun::new_txid(), auth))
            .await;
    }
    Ok(Probe {
        mapped,
        relay: Some(relay),
        lifetime: response.lifetime(),
        rtt,
    })
}

// ----------------------------------------------------------------- words

fn summarize(
    verdict: Verdict,
    failed_stage: Option<StageId>,
    stages: &[StageReport],
    timings: &Timings,
    servers: &[ServerReport],
) -> String {
    let failure = failed_stage
        .and_then(|id| stages.iter().find(|s| s.stage == id))
        .and_then(|s| s.error.as_ref().map(|e| (s.label.as_str(), e)));
    let mut text = match (verdict, failure) {
        (Verdict::Good, _) => format!(
            "Good: the rendezvous works and peers connect quickly (rendezvous {}, handshake {}).",
            fmt_ms(timings.rendezvous_ms),
            fmt_ms(timings.handshake_ms)
        ),
        (Verdict::Acceptable, _) => format!(
            "Acceptable: everything works, but slowly (rendezvous {}, handshake {}; good is under {} and {} ms).",
            fmt_ms(timings.rendezvous_ms),
            fmt_ms(timings.handshake_ms),
            GOOD_RENDEZVOUS_MS,
            GOOD_HANDSHAKE_MS
        ),
        (Verdict::Inconclusive, Some((label, error))) => format!(
            "Inconclusive: the rendezvous works, but the direct connection did not complete at \"{label}\": {error}."
        ),
        (Verdict::Failed, Some((label, error))) => format!("Failed at \"{label}\": {error}."),
        (Verdict::Inconclusive | Verdict::Failed, None) => format!("{verdict:?}."),
    };
    let failed: Vec<&ServerReport> = servers
        .iter()
        .filter(|s| s.status == Status::Failed)
        .collect();
    let not_checked = servers
        .iter()
        .filter(|s| s.status == Status::NotChecked)
        .count();
    if !servers.is_empty() {
        if failed.is_empty() {
            text.push_str(&format!(
                " STUN/TURN: {} of {} server(s) work",
                servers.len() - not_checked,
                servers.len()
            ));
            if not_checked > 0 {
                text.push_str(&format!(", {not_checked} not checked (UDP only)"));
            }
            text.push('.');
        } else {
            text.push_str(&format!(
                " STUN/TURN: {} of {} server(s) failed ({}).",
                failed.len(),
                servers.len(),
                failed
                    .iter()
                    .map(|s| format!(
                        "{}: {}",
                        s.uri,
                        s.error.as_ref().map(short_server_error).unwrap_or("failed")
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    text
}

fn short_server_error(e: &ServerError) -> &'static str {
    match e {
        ServerError::BadUrl { .. } => "bad URL",
        ServerError::Unresolvable { .. } => "name does not resolve",
        ServerError::Unreachable { .. } => "unreachable",
        ServerError::AuthFailed { .. } => "wrong user name or password",
        ServerError::NoCredentials => "no credentials",
        ServerError::Refused { .. } => "refused",
        ServerError::BadResponse { .. } => "not a working STUN/TURN server",
        ServerError::Local { .. } => "local error",
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => "-".to_owned(),
    }
}

/// The report as plain text, for a "copy details" button or a terminal.
/// Contains no password (server entries are redacted) and no SDP.
pub fn details_text(report: &Report) -> String {
    let mut out = String::new();
    let status_tag = |s: Status| match s {
        Status::Passed => "ok  ",
        Status::Failed => "FAIL",
        Status::Skipped => "skip",
        Status::Pending => "....",
        Status::Running => "run ",
        Status::NotChecked => "n/a ",
    };
    out.push_str("midi-rdv connection test\n");
    out.push_str(&format!("Rendezvous: {}\n", report.rendezvous_url));
    out.push_str(&format!("Verdict: {:?}\n", report.verdict));
    out.push_str(&format!("{}\n", report.summary));
    if let Some(code) = &report.code {
        out.push_str(&format!("Test session code: {code}\n"));
    }
    out.push_str("\nStages:\n");
    for s in &report.stages {
        out.push_str(&format!(
            "  [{}] {:<32} {:>9}",
            status_tag(s.status),
            s.label,
            fmt_ms(s.duration_ms)
        ));
        if let Some(detail) = &s.detail {
            out.push_str(&format!("  {detail}"));
        }
        out.push('\n');
        if let Some(hint) = &s.hint {
            out.push_str(&format!("         hint: {hint}\n"));
        }
    }
    let t = &report.timings;
    out.push_str(&format!(
        "\nTimings: rendezvous {}, handshake {}, round trip {}, total {}\n",
        fmt_ms(t.rendezvous_ms),
        fmt_ms(t.handshake_ms),
        fmt_ms(t.round_trip_ms),
        fmt_ms(Some(t.total_ms))
    ));
    out.push_str(&format!(
        "Whole check: {}\n",
        fmt_ms(Some(report.duration_ms))
    ));
    out.push_str(&format!(
        "Rules: Good if rendezvous <= {GOOD_RENDEZVOUS_MS} ms and handshake <= {GOOD_HANDSHAKE_MS} ms.\n"
    ));
    if !report.ice_servers.is_empty() {
        out.push_str("\nSTUN/TURN servers:\n");
        for s in &report.ice_servers {
            out.push_str(&format!(
                "  [{}] {}  {}",
                status_tag(s.status),
                s.uri,
                s.detail
            ));
            if let Some(rtt) = s.rtt_ms {
                out.push_str(&format!(" ({})", fmt_ms(Some(rtt))));
            }
            out.push('\n');
            if let Some(hint) = &s.hint {
                out.push_str(&format!("         hint: {hint}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn verdict_thresholds_are_midieditors() {
        assert_eq!(Verdict::for_success(3000.0, 4000.0), Verdict::Good);
        assert_eq!(Verdict::for_success(3000.1, 10.0), Verdict::Acceptable);
        assert_eq!(Verdict::for_success(10.0, 4000.1), Verdict::Acceptable);
        assert!(Verdict::Acceptable.is_pass());
        assert!(!Verdict::Inconclusive.is_pass());
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert_eq!(
            base_url(" http://127.0.0.1:8787/ ").unwrap(),
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            base_url("https://h.example/rdv/").unwrap(),
            "https://h.example/rdv"
        );
        for bad in [
            "127.0.0.1:8787",
            "ftp://h",
            "http://",
            "",
            "http://h/?x=1",
            "not a url",
        ] {
            assert!(
                matches!(base_url(bad), Err(CheckError::BadUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn health_bodies_are_told_apart() {
        let ok = br#"{"service":"midi-rdv","version":3,"protocol":"joiner-initiated-multi-peer","maxPeersPerSession":8,"docs":"x","extensions":["long-poll"]}"#;
        let info = parse_health("application/json", ok, 1.0).unwrap();
        assert_eq!(info.version, 3);
        assert_eq!(info.extensions, vec!["long-poll".to_owned()]);
        assert_eq!(info.max_peers_per_session, Some(8));

        let html = b"<!DOCTYPE html><html><body>router</body></html>";
        match parse_health("text/html", html, 1.0) {
            Err(CheckError::NotARendezvous { detail }) => {
                assert!(detail.contains("HTML"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_health("application/json", br#"{"status":"ok"}"#, 1.0),
            Err(CheckError::NotARendezvous { .. })
        ));
        assert!(matches!(
            parse_health("application/json", br#"[1,2]"#, 1.0),
            Err(CheckError::NotARendezvous { .. })
        ));
        assert_eq!(
            parse_health(
                "application/json",
                br#"{"service":"midi-rdv","version":2}"#,
                1.0
            ),
            Err(CheckError::ProtocolTooOld { version: Some(2) })
        );
        assert_eq!(
            parse_health("application/json", br#"{"service":"midi-rdv"}"#, 1.0),
            Err(CheckError::ProtocolTooOld { version: None })
        );
    }

    #[test]
    fn reqwest_error_chains_are_classified() {
        let base = "http://rdv.example:8787";
        let t = Duration::from_secs(3);
        assert_eq!(
            classify_parts(false, &[ErrorKind::ConnectionRefused], "", base, t),
            CheckError::ConnectionRefused {
                addr: "rdv.example:8787".to_owned()
            }
        );
        assert_eq!(
            classify_parts(
                false,
                &[],
                "error sending request | client error (connect) | dns error: failed to lookup address information: name or service not known | ",
                base,
                t
            ),
            CheckError::Unresolvable {
                host: "rdv.example".to_owned()
            }
        );
        assert!(matches!(
            classify_parts(
                false,
                &[],
                "client error (connect) | invalid peer certificate: unknownissuer | ",
                base,
                t
            ),
            CheckError::Tls { .. }
        ));
        assert_eq!(
            classify_parts(true, &[], "operation timed out", base, t),
            CheckError::TimedOut { ms: 3000 }
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("turn:al:secret@h:3478?transport=udp"),
            "turn:al:***@h:3478?transport=udp"
        );
        assert_eq!(redact("al:secret@h"), "al:***@h");
        assert_eq!(redact("turn:al@h"), "turn:al@h");
        assert_eq!(redact("stun:h:3478"), "stun:h:3478");
        assert_eq!(redact("turn:a:b:c@d@h"), "turn:a:***@h");
    }

    #[test]
    fn server_urls_split_into_parts() {
        let u = split_server_url("turn:127.0.0.1:3478?transport=udp").unwrap();
        assert_eq!(
            (
                u.scheme.as_str(),
                u.host.as_str(),
                u.port,
                u.transport.as_str()
            ),
            ("turn", "127.0.0.1", 3478, "udp")
        );
        let u = split_server_url("stun:[::1]:19302").unwrap();
        assert_eq!((u.host.as_str(), u.transport.as_str()), ("::1", "udp"));
        assert_eq!(split_server_url("turns:h:5349").unwrap().transport, "tls");
        assert_eq!(
            split_server_url("turn:h:3478?transport=tcp")
                .unwrap()
                .transport,
            "tcp"
        );
    }

    #[test]
    fn random_ids_are_valid_joiner_ids() {
        for _ in 0..100 {
            let id = random_id(16);
            assert!(rdv::code::is_valid_joiner_id(&id), "{id}");
        }
    }

    #[test]
    fn reports_serialise_in_camel_case() {
        let report = Report {
            rendezvous_url: "http://x".into(),
            verdict: Verdict::Failed,
            summary: "s".into(),
            failed_stage: Some(StageId::RoundTrip),
            code: None,
            health: None,
            stages: vec![],
            timings: Timings::default(),
            ice_servers: vec![failed_row(
                "turn:u:p@h",
                ServerKind::Turn,
                "udp",
                1.0,
                ServerError::NoCredentials,
            )],
            duration_ms: 2.0,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["failedStage"], "roundTrip");
        assert_eq!(json["verdict"], "failed");
        assert_eq!(json["iceServers"][0]["error"]["kind"], "noCredentials");
        assert_eq!(json["iceServers"][0]["uri"], "turn:u:***@h");
        let error = serde_json::to_value(CheckError::HttpStatus {
            status: 502,
            message: None,
        })
        .unwrap();
        assert_eq!(
            error,
            serde_json::json!({"kind": "httpStatus", "status": 502, "message": null})
        );
    }
}
