//! What a check finds: stages, verdicts, server rows, and the words for
//! them (a summary sentence, the "copy details" text).

use serde::{Deserialize, Serialize};

use super::HealthInfo;
use super::{GOOD_HANDSHAKE_MS, GOOD_RENDEZVOUS_MS, MIN_PROTOCOL_VERSION};
use crate::rendezvous::RendezvousError;

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
    pub(crate) fn is_transport_or_timeout(&self) -> bool {
        matches!(
            self,
            CheckError::WebRtc { .. }
                | CheckError::ConnectFailed { .. }
                | CheckError::TimedOut { .. }
        )
    }
}

impl From<RendezvousError> for CheckError {
    /// The client's failures in the check's (serialised) terms.
    fn from(e: RendezvousError) -> Self {
        use RendezvousError as R;
        match e {
            R::Unresolvable { host } => CheckError::Unresolvable { host },
            R::ConnectionRefused { addr } => CheckError::ConnectionRefused { addr },
            R::Tls { detail } => CheckError::Tls { detail },
            R::TimedOut { ms } => CheckError::TimedOut { ms },
            R::Network { detail } => CheckError::Network { detail },
            R::TooLarge { cap } => CheckError::NotARendezvous {
                detail: format!("it sent more than {} KiB", cap / 1024),
            },
            R::NotARendezvous { detail } => CheckError::NotARendezvous { detail },
            R::ProtocolTooOld { version } => CheckError::ProtocolTooOld { version },
            R::NoSession { code } => CheckError::Rendezvous {
                detail: format!("it has no session for the code {code}"),
            },
            R::TooManyTries => CheckError::HttpStatus {
                status: 429,
                message: Some("too many unknown codes; slow down".to_owned()),
            },
            R::SessionFull { message } => CheckError::HttpStatus {
                status: 503,
                message: Some(message),
            },
            R::Status { status, message } => CheckError::HttpStatus { status, message },
            R::Misbehaved { detail } => CheckError::Rendezvous { detail },
        }
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

// ----------------------------------------------------------------- words

pub(crate) fn summarize(
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
    use crate::check::servers::failed_row;

    #[test]
    fn verdict_thresholds_are_midieditors() {
        assert_eq!(Verdict::for_success(3000.0, 4000.0), Verdict::Good);
        assert_eq!(Verdict::for_success(3000.1, 10.0), Verdict::Acceptable);
        assert_eq!(Verdict::for_success(10.0, 4000.1), Verdict::Acceptable);
        assert!(Verdict::Acceptable.is_pass());
        assert!(!Verdict::Inconclusive.is_pass());
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
