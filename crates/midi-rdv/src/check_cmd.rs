//! `midi-rdv check`: MidiEditor's "Test connection" from a terminal.
//!
//! Checks a rendezvous (`/health`, then a full WebRTC loopback through it on
//! a session of its own, so a jam running there is not disturbed) and any
//! STUN/TURN servers given, all at once; prints each stage as it finishes
//! and then the verdict with hints. See `docs/connection-test.md`.
//!
//! Exit status: 0 when the verdict is Good or Acceptable and no listed
//! STUN/TURN server failed; 1 otherwise (Inconclusive, Failed, or a server
//! that is unreachable, refuses the credentials or is not a valid entry);
//! 2 for a bad command line. Servers this check does not speak (TCP/TLS)
//! are reported as not checked and do not fail it.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use jam::check::{details_text, run_check, CheckConfig, Progress, Status};

use crate::LogFormat;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when the verdict is Good or Acceptable and every listed \
STUN/TURN server works (or is not checked: TCP/TLS); 1 otherwise; 2 for a bad command line."
)]
pub struct CheckArgs {
    /// The rendezvous to test (http:// or https://, with its base path if any).
    #[arg(
        long,
        env = "MIDI_RDV_RENDEZVOUS_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    pub rendezvous_url: String,
    /// A STUN/TURN server to check (stun:host[:port], turn:user:pass@host[:port][?transport=udp]); repeatable.
    /// A malformed entry is reported as a bad URL, not refused.
    #[arg(
        long = "ice-server",
        value_name = "URI",
        env = "MIDI_RDV_ICE_SERVERS",
        value_delimiter = ','
    )]
    pub ice_servers: Vec<String>,
    /// Local address the two test peers gather ICE candidates on; repeatable.
    /// Default: every non-loopback interface (use 127.0.0.1 on a machine without a LAN).
    #[arg(long = "ice-bind", env = "MIDI_RDV_ICE_BIND", value_delimiter = ',')]
    pub ice_bind: Vec<IpAddr>,
    /// Budget of the whole rendezvous + WebRTC loopback, in milliseconds.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(500..=300_000))]
    pub timeout_ms: u64,
    /// Budget of `GET /health`, in milliseconds (MidiEditor uses 3000).
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub health_timeout_ms: u64,
    /// Budget of each STUN/TURN server, in milliseconds.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub server_timeout_ms: u64,
    /// Print the report as one JSON object (camelCase) instead of text; no progress lines.
    #[arg(long)]
    pub json: bool,
    /// Log filter for stderr (the WebRTC stack's own chatter is off by default).
    #[arg(
        long,
        env = "MIDI_RDV_LOG",
        default_value = "warn,webrtc=off,rtc=off,rtc_sctp=off,rtc_dtls=off,rtc_ice=off,rtc_datachannel=off,rtc_mdns=off,rtc_srtp=off"
    )]
    pub log_level: String,
}

impl CheckArgs {
    fn config(&self) -> CheckConfig {
        CheckConfig {
            ice_servers: self
                .ice_servers
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            bind_ips: self.ice_bind.clone(),
            health_timeout: Duration::from_millis(self.health_timeout_ms),
            server_timeout: Duration::from_millis(self.server_timeout_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            ..CheckConfig::new(self.rendezvous_url.trim())
        }
    }
}

/// One progress line for people, e.g. `  ok    Session created (host)  0.6 ms  code AB12`.
fn progress_line(event: &Progress) -> Option<String> {
    let tag = |status: Status| match status {
        Status::Passed => "ok  ",
        Status::Failed => "FAIL",
        Status::Skipped => "skip",
        Status::NotChecked => "n/a ",
        Status::Pending | Status::Running => "... ",
    };
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1} ms")).unwrap_or_default();
    match event {
        Progress::StageStarted { label, .. } => Some(format!("  ...   {label}")),
        Progress::StageFinished { report } if report.status == Status::Skipped => None,
        Progress::StageFinished { report } => Some(format!(
            "  {}  {}  {}  {}",
            tag(report.status),
            report.label,
            ms(report.duration_ms),
            report.detail.as_deref().unwrap_or("")
        )),
        Progress::ServerStarted { uri, .. } => Some(format!("  ...   {uri}")),
        Progress::ServerFinished { report, .. } => Some(format!(
            "  {}  {}  {}",
            tag(report.status),
            report.uri,
            report.detail
        )),
    }
}

/// Runs the check and returns the process exit status (see the module docs).
pub async fn run(args: CheckArgs) -> ExitCode {
    if let Err(e) = crate::init_logging_with(&args.log_level, LogFormat::Text) {
        eprintln!("midi-rdv: {e}");
        return ExitCode::from(2);
    }
    let cfg = args.config();
    let json = args.json;
    if !json {
        println!("Testing the rendezvous at {}", cfg.rendezvous_url);
    }
    let report = run_check(&cfg, move |event| {
        if json {
            return;
        }
        if let Some(line) = progress_line(&event) {
            // A closed stdout must not stop the check (nor panic).
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    })
    .await;

    let mut out = std::io::stdout().lock();
    let written = if json {
        match serde_json::to_string(&report) {
            Ok(text) => writeln!(out, "{text}"),
            Err(e) => writeln!(out, "{{\"error\":\"cannot serialise the report: {e}\"}}"),
        }
    } else {
        writeln!(out, "\n{}", details_text(&report))
    };
    let _ = written.and_then(|()| out.flush());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
