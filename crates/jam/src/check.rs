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

//!
//! The parts: [`report`] (what a check finds, in words), `loopback` (the
//! rendezvous stages and the WebRTC loopback, through the one
//! [`crate::rendezvous::Client`]), `servers` (STUN/TURN servers) and
//! `stun` (the STUN/TURN messages they need).

mod loopback;
pub mod report;
mod servers;
pub(crate) mod stun;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use crate::rendezvous::{Health as HealthInfo, MIN_PROTOCOL_VERSION};
pub use loopback::check_health;
pub use report::*;
pub use servers::{check_ice_server, check_ice_servers};
pub use types::redact_entry as redact;

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
/// The data channel label MidiEditor's joiners open.
pub const CHANNEL_LABEL: &str = "midieditor";

/// Longest single HTTP request of the loopback (long-polls add their wait).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `?wait=` of each long-poll when the rendezvous offers the extension.
pub(crate) const LONG_POLL_MS: u64 = 3000;
/// Poll intervals without long-poll: MidiEditor's own (host 1 s, joiner
/// 750 ms), so the timings compare with what MidiEditor would see.
pub(crate) const HOST_POLL: Duration = Duration::from_millis(1000);
pub(crate) const JOINER_POLL: Duration = Duration::from_millis(750);

/// What to check, and how long each part may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// Base URL of the rendezvous, `http://` or `https://`, optionally with a
    /// base path (`http://host:8787/rdv`); a trailing `/` is ignored.
    pub rendezvous_url: String,
    /// STUN/TURN servers as users write them (MidiEditor's grammar, see
    /// [`types::IceServer`]); each is checked on its own, a bad one never stops
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

pub(crate) type Sink = Arc<dyn Fn(Progress) + Send + Sync>;

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
        loopback::loopback(cfg, sink.clone()),
        servers::check_servers(&cfg.ice_servers, cfg.server_timeout, sink.clone()),
    );
    let timings = loopback.timings;
    let summary = report::summarize(
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

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}
