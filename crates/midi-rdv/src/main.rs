//! `midi-rdv serve`: the rendezvous without a window, for a server that
//! replaces the public Cloudflare Worker. Every flag has an environment
//! variable twin so it can be configured from a service manager.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

mod check_cmd;
mod host_cmd;
mod join_cmd;
use rdv::guard::GuardLimits;
use rdv::table::TableLimits;
use rdv::{Config, Rendezvous};

#[derive(Parser, Debug)]
#[command(
    name = "midi-rdv",
    version,
    about = "The midi-rdv v3 rendezvous server (MidiEditor AI compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the rendezvous over HTTP until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Host a jam: the bundled rendezvous plus the WebRTC host peer, until SIGINT or SIGTERM.
    Host(host_cmd::HostArgs),
    /// Test a rendezvous, a WebRTC connection through it, and STUN/TURN servers.
    ///
    /// MidiEditor's "Test connection" from a terminal. Exit status 0 when the
    /// verdict is Good or Acceptable and every listed STUN/TURN server works,
    /// 1 otherwise (see docs/connection-test.md).
    Check(check_cmd::CheckArgs),
    /// Join a jam (hosted by MidiEditor or by this app) and stay in it.
    ///
    /// By address (--url, with --code) or found on the LAN (--browse-on).
    /// Exit status 0 when joined; 3 wrong code, 4 jam full, 5 unreachable,
    /// 6 WebRTC connection failed, 7 the jam ended early, 8 no jam found
    /// (see docs/joining.md).
    Join(join_cmd::JoinArgs),
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MIDI_RDV_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// TCP port (0 picks a free one; the startup line says which).
    #[arg(long, env = "MIDI_RDV_PORT", default_value_t = 8787)]
    port: u16,
    /// Path prefix to serve under, e.g. /rdv (clients then use http://host:port/rdv).
    #[arg(long, env = "MIDI_RDV_BASE_PATH", default_value = "")]
    base_path: String,
    /// Session lifetime after the host's last poll, and offer/answer lifetime, in seconds.
    #[arg(long, env = "MIDI_RDV_TTL_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ttl_secs: u64,
    /// Live sessions on the server.
    #[arg(long, env = "MIDI_RDV_MAX_SESSIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=500_000))]
    max_sessions: u64,
    /// Live sessions one source (IPv4 address or IPv6 /64) may hold.
    #[arg(long, env = "MIDI_RDV_MAX_SESSIONS_PER_SOURCE", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=500_000))]
    max_sessions_per_source: u64,
    /// Joiners with a live offer per session (reported in /health).
    #[arg(long, env = "MIDI_RDV_MAX_PEERS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    max_peers: u64,
    /// Largest request body in bytes; larger ones get 413 before being read whole.
    #[arg(long, env = "MIDI_RDV_MAX_BODY_BYTES", default_value_t = Config::default().max_body_bytes as u64, value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024))]
    max_body_bytes: u64,
    /// Long-polls (?wait=) held open at once; beyond it they answer immediately.
    #[arg(long, env = "MIDI_RDV_MAX_WAITERS", default_value_t = 4096)]
    max_waiters: usize,
    /// Milliseconds a plain answer/offers poll (no ?wait=) that has nothing new is held, answering the moment something arrives; keep it below MidiEditor's 750 ms poll timer. 0 = off.
    #[arg(long, env = "MIDI_RDV_HOLD_PLAIN_POLLS_MS", default_value_t = rdv::server::DEFAULT_HOLD_PLAIN_POLLS.as_millis() as u64, value_parser = clap::value_parser!(u64).range(0..=25_000))]
    hold_plain_polls_ms: u64,
    /// TCP connections open at once; further clients wait until one closes.
    #[arg(long, env = "MIDI_RDV_MAX_CONNECTIONS", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Seconds a connection may sit without moving a byte before it is closed (at least 30).
    #[arg(long, env = "MIDI_RDV_IDLE_TIMEOUT_SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(30..=3600))]
    idle_timeout_secs: u64,
    /// Failed code lookups a source may make per minute before it is locked out (at least 30).
    #[arg(long, env = "MIDI_RDV_GUESS_LIMIT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(30..))]
    guess_limit: u32,
    /// How long a source that guessed too many codes is refused code lookups, in seconds.
    #[arg(long, env = "MIDI_RDV_GUESS_LOCKOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    guess_lockout_secs: u64,
    /// Header holding the client address when behind a reverse proxy (e.g. x-forwarded-for).
    #[arg(long, env = "MIDI_RDV_CLIENT_IP_HEADER", value_parser = parse_header_name)]
    client_ip_header: Option<String>,
    /// Reverse proxies in front that append to --client-ip-header: the client is that many entries from the right.
    #[arg(long, env = "MIDI_RDV_TRUSTED_PROXIES", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    trusted_proxies: u64,
    /// IPv6 prefix length that counts as one source in every per-source limit (e.g. 56 or 48).
    #[arg(long, env = "MIDI_RDV_IPV6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(16..=128))]
    ipv6_prefix: u8,
    /// TCP connections one source (IPv4 address or IPv6 prefix) may hold open; more are closed at once.
    #[arg(long, env = "MIDI_RDV_MAX_CONNECTIONS_PER_SOURCE", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections_per_source: u64,
    /// Seconds a request head may take to arrive in full (also the keep-alive idle limit between requests).
    #[arg(long, env = "MIDI_RDV_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    header_timeout_secs: u64,
    /// Seconds a request body may take to arrive in full; slower ones get 408.
    #[arg(long, env = "MIDI_RDV_BODY_TIMEOUT_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    body_timeout_secs: u64,
    /// Largest request head (request line plus headers) in bytes; larger ones get 431.
    #[arg(long, env = "MIDI_RDV_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(8192..=1024 * 1024))]
    max_header_bytes: u64,
    /// SDP bytes one session may store (never less than 32 KiB per peer slot).
    #[arg(long, env = "MIDI_RDV_MAX_SDP_BYTES_PER_SESSION", default_value_t = TableLimits::default().max_sdp_bytes_per_session as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    max_sdp_bytes_per_session: u64,
    /// SDP bytes one source may have stored across all sessions.
    #[arg(long, env = "MIDI_RDV_MAX_SDP_BYTES_PER_SOURCE", default_value_t = TableLimits::default().max_sdp_bytes_per_source as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    max_sdp_bytes_per_source: u64,
    /// SDP bytes stored on the whole server.
    #[arg(long, env = "MIDI_RDV_MAX_SDP_BYTES_TOTAL", default_value_t = TableLimits::default().max_sdp_bytes_total as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    max_sdp_bytes_total: u64,
    /// Seconds without a host poll after which a session is idle and evicted first when the server is full.
    #[arg(long, env = "MIDI_RDV_IDLE_SESSION_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_session_secs: u64,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key); the files are re-read when they change.
    #[arg(long, env = "MIDI_RDV_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "MIDI_RDV_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// How often to check the TLS files for a renewed certificate, in seconds.
    #[arg(long, env = "MIDI_RDV_TLS_RELOAD_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    tls_reload_secs: u64,
    /// URL reported as "docs" in /health.
    #[arg(long, env = "MIDI_RDV_DOCS_URL", default_value = rdv::server::DEFAULT_DOCS_URL)]
    docs_url: String,
    /// Log format on stderr.
    #[arg(long, env = "MIDI_RDV_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter (error, warn, info, debug, or a tracing directive).
    #[arg(long, env = "MIDI_RDV_LOG", default_value = "info")]
    log_level: String,
    /// Longest wait on shutdown for requests already in a handler or responses being written, in seconds
    /// (idle connections and half-sent requests are dropped at once).
    #[arg(long, env = "MIDI_RDV_SHUTDOWN_GRACE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    shutdown_grace_secs: u64,
    /// Keep sessions in a shared Redis or Valkey (redis://host:port/db) instead of in memory, so several
    /// instances behind one load balancer serve one set of sessions and sessions survive a restart.
    /// Blank: in memory (the default, and the fastest).
    #[arg(long, env = "MIDI_RDV_STORE", default_value = "")]
    store: String,
    /// Prefix of every key (and of the wake-up channel) in the shared store: instances with the same
    /// store and prefix serve the same sessions.
    #[arg(long, env = "MIDI_RDV_STORE_PREFIX", default_value = rdv::redis_store::DEFAULT_PREFIX)]
    store_prefix: String,
}

impl ServeArgs {
    /// The shared store named by `--store`, if any (blank means memory).
    fn store(&self) -> Result<Option<rdv::redis_store::RedisConfig>, String> {
        let url = self.store.trim();
        if url.is_empty() {
            return Ok(None);
        }
        rdv::redis_store::validate_url(url)?;
        Ok(Some(rdv::redis_store::RedisConfig {
            url: url.to_owned(),
            prefix: self.store_prefix.clone(),
        }))
    }

    fn config(&self) -> Config {
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let max_peers = to_usize(self.max_peers);
        Config {
            table: TableLimits {
                ttl: Duration::from_secs(self.ttl_secs),
                max_sessions: to_usize(self.max_sessions),
                max_sessions_per_source: to_usize(self.max_sessions_per_source),
                max_peers,
                max_records_per_session: max_peers.saturating_mul(4),
                max_sdp_bytes_per_session: to_usize(self.max_sdp_bytes_per_session),
                max_sdp_bytes_per_source: to_usize(self.max_sdp_bytes_per_source),
                max_sdp_bytes_total: to_usize(self.max_sdp_bytes_total),
                idle_after: Duration::from_secs(self.idle_session_secs),
            },
            guard: GuardLimits {
                max_failures: self.guess_limit,
                lockout: Duration::from_secs(self.guess_lockout_secs),
                ..GuardLimits::default()
            },
            max_body_bytes: to_usize(self.max_body_bytes),
            max_waiters: self.max_waiters,
            hold_plain_polls: Duration::from_millis(self.hold_plain_polls_ms),
            max_connections: to_usize(self.max_connections),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            base_path: self.base_path.clone(),
            client_ip_header: self.client_ip_header.clone(),
            trusted_proxies: to_usize(self.trusted_proxies),
            ipv6_prefix: self.ipv6_prefix,
            max_connections_per_source: to_usize(self.max_connections_per_source),
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_header_bytes: to_usize(self.max_header_bytes),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(rdv::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    reload_interval: Duration::from_secs(self.tls_reload_secs),
                }),
                _ => None,
            },
            docs_url: self.docs_url.clone(),
            ..Config::default()
        }
    }
}

/// Accepts only a valid HTTP header name, lowercased, so a typo fails at
/// startup instead of silently never matching.
/// `--ice-server`, shared by `host` and `join`: MidiEditor's STUN/TURN entry
/// syntax, parsed by the one parser (`types::IceServer`), handed to webrtc-rs.
fn parse_ice(s: &str) -> Result<jam::rtc::IceServer, String> {
    s.parse::<jam::types::IceServer>()
        .map(Into::into)
        .map_err(|e| e.to_string())
}

fn parse_header_name(s: &str) -> Result<String, String> {
    axum::http::HeaderName::from_bytes(s.trim().as_bytes())
        .map(|h| h.as_str().to_owned())
        .map_err(|_| format!("{s:?} is not a valid HTTP header name"))
}

fn init_logging(args: &ServeArgs) -> Result<(), String> {
    init_logging_with(&args.log_level, args.log_format)
}

fn init_logging_with(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run_serve(args: ServeArgs) -> Result<(), String> {
    init_logging(&args)?;
    let mut config = args.config();
    config.store = args.store()?;
    if let Some(files) = &config.tls {
        rdv::tls::check_files(files).map_err(|e| format!("cannot use the TLS files: {e}"))?;
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let store = config.store.clone();
    let rdv = Rendezvous::try_with_clock(config, Arc::new(rdv::SystemClock::new()))?;
    let bind = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let base = rdv.config().base_path.clone();
    // One plain line on stdout, whatever the log format: scripts and tests
    // read the real port from it when started with --port 0.
    // A closed stdout (the reader went away) must not stop the server.
    {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "midi-rdv listening on {scheme}://{addr}{base}")
            .and_then(|()| out.flush())
            .is_err()
        {
            tracing::warn!("stdout is closed; startup line not printed");
        }
    }
    tracing::info!(%addr, base_path = %base, ttl_secs = args.ttl_secs, "rendezvous ready");
    if let Some(store) = &store {
        tracing::info!(prefix = %store.prefix, "sessions in the shared store");
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rdv::serve(listener, rdv, async move {
        let _ = stop_rx.await;
    }));
    shutdown_signal().await;
    tracing::info!("shutting down: answering in-flight requests");
    let _ = stop_tx.send(());
    // The server itself gives busy connections the grace period and drops
    // the rest; this outer bound only guards against a bug in that.
    let bound = Duration::from_secs(args.shutdown_grace_secs) + Duration::from_secs(5);
    match tokio::time::timeout(bound, server).await {
        Ok(Ok(Ok(()))) => {
            tracing::info!("stopped");
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(format!("server error: {e}")),
        Ok(Err(e)) => Err(format!("server task failed: {e}")),
        Err(_) => {
            tracing::warn!("connections still open past the shutdown grace period; dropped");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("midi-rdv: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(run_serve(args)),
        Command::Host(args) => runtime.block_on(host_cmd::run(args)),
        Command::Check(args) => return runtime.block_on(check_cmd::run(args)),
        Command::Join(args) => return runtime.block_on(join_cmd::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("midi-rdv: {e}");
            ExitCode::FAILURE
        }
    }
}
