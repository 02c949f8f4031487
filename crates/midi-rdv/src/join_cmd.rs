//! `midi-rdv join`: join a jam from a terminal, as the app's Join view does.
//!
//! The target is `--url` (a rendezvous URL, or an address as people type it:
//! `10.0.0.5`, `10.0.0.5:8787`) with `--code`, or `--browse-on IFACE` to find
//! the jam on the LAN (mDNS): the first open jam (its code is advertised),
//! or the one at `--url`, or any jam when `--code` is given. Then it stays
//! in the jam for `--stay` seconds (or until SIGINT/SIGTERM) and leaves.
//!
//! Output: a line of text per event, or with `--json` one JSON object per
//! line (`found`, then the joiner's events: `step`, `joined`, `peers`,
//! `peerJoined`, `peerLeft`, `chat`, `frame`, `midiOpen`, `midi`, `failed`,
//! `left`), always ending with `done`.
//!
//! Exit status: see [`EXIT_CODES`].

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jam::joiner::{JoinConfig, JoinError, JoinEvent, JoinTimeouts, Joiner, LanTarget, MidiChannel};
use jam::rtc::RtcConfig;
use serde_json::{json, Value};

use crate::LogFormat;

/// The exit statuses, for `--help` and the docs.
pub const EXIT_CODES: &str = "Exit status: 0 joined (and left after --stay or on SIGINT/SIGTERM); \
1 other error; 2 usage or unusable address; 3 wrong code or code needed; 4 jam full or refused by \
the host; 5 rendezvous or host unreachable (or not answering); 6 WebRTC connection failed; \
7 the jam ended or the connection was lost before --stay ran out; 8 --browse-on found no jam to join.";

const EXIT_OTHER: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_CODE: u8 = 3;
const EXIT_FULL: u8 = 4;
const EXIT_UNREACHABLE: u8 = 5;
const EXIT_CONNECT: u8 = 6;
const EXIT_ENDED: u8 = 7;
const EXIT_NOT_FOUND: u8 = 8;

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum MidiArg {
    /// Open the midi channel when the host offers it (our host does; MidiEditor does not).
    Auto,
    /// Open it in the offer (only for hosts known to be this app).
    Offer,
    /// Never open it.
    Off,
}

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct JoinArgs {
    /// The jam's address: a rendezvous URL (http://10.0.0.5:8787) or as typed (10.0.0.5, 10.0.0.5:8787).
    #[arg(long, env = "MIDI_RDV_JOIN_URL")]
    pub url: Option<String>,
    /// Find the jam on the LAN (mDNS) on this interface; repeatable. Joins the first open jam,
    /// or the one at --url, or any jam when --code is given.
    #[arg(long = "browse-on", value_delimiter = ',')]
    pub browse_on: Vec<String>,
    /// Join a MidiEditor "LAN Live" host with this code: listen for its
    /// `MIDIEDIT-PR-LAN` datagrams (239.42.42.42:42424) on the --browse-on
    /// interfaces and join over plain TCP, as MidiEditor's LAN joiner does
    /// (no rendezvous, no WebRTC, so no live-MIDI channel).
    #[arg(long = "lan-code")]
    pub lan_code: Option<String>,
    /// How long to look for a jam on the LAN, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub browse_timeout: f64,
    /// The jam's 4-character code (not needed for an open jam found with --browse-on).
    #[arg(long, env = "MIDI_RDV_CODE")]
    pub code: Option<String>,
    /// Your name as the others see it.
    #[arg(long, env = "MIDI_RDV_NAME", default_value = "Jam guest")]
    pub name: String,
    /// Your machine id (a UUID); a fresh one by default.
    #[arg(long)]
    pub machine_id: Option<String>,
    /// A STUN/TURN server (MidiEditor's syntax); repeatable. None by default.
    #[arg(long = "ice-server", value_delimiter = ',', value_parser = crate::parse_ice)]
    pub ice_servers: Vec<jam::rtc::IceServer>,
    /// Local address to gather ICE candidates on; repeatable. Default: every LAN interface.
    #[arg(long = "ice-bind", value_delimiter = ',')]
    pub ice_bind: Vec<IpAddr>,
    /// Longest ICE gathering before the offer is sent, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=30_000))]
    pub gather_timeout_ms: u64,
    /// Longest wait for the host's answer, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub answer_timeout: u64,
    /// When to open the live-MIDI data channel.
    #[arg(long, value_enum, default_value = "auto")]
    pub midi: MidiArg,
    /// Send these bytes (hex, e.g. 903c64) as one message on the midi channel once it opens.
    #[arg(long, value_parser = parse_hex)]
    pub send_midi: Option<MidiHex>,
    /// Seconds to stay in the jam before leaving. Default: until SIGINT/SIGTERM or the jam ends.
    #[arg(long)]
    pub stay: Option<f64>,
    /// Write one JSON object per line for each event instead of text.
    #[arg(long)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(long, env = "MIDI_RDV_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (error, warn, info, debug, or a tracing directive).
    #[arg(
        long,
        env = "MIDI_RDV_LOG",
        default_value = "warn,webrtc=off,rtc=off,rtc_sctp=off,rtc_dtls=off,rtc_ice=off,rtc_datachannel=off,rtc_mdns=off,rtc_srtp=off"
    )]
    pub log_level: String,
}

/// Bytes given in hex on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MidiHex(pub Vec<u8>);

fn parse_hex(s: &str) -> Result<MidiHex, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() || s.len() % 2 != 0 || s.len() > 2 * 65_536 {
        return Err("an even number of hex digits, at most 64 KiB".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("{s:?} is not hex")))
        .collect::<Result<Vec<u8>, String>>()
        .map(MidiHex)
}

fn hex(b: &[u8]) -> String {
    b.iter().take(256).map(|x| format!("{x:02x}")).collect()
}

/// Prints one line; a closed stdout must not stop the join.
fn line(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}").and_then(|()| out.flush());
}

fn emit(json: bool, v: Value, text: impl FnOnce() -> String) {
    if json {
        line(&v.to_string());
    } else {
        line(&text());
    }
}

fn exit_for(e: &JoinError) -> u8 {
    match e {
        JoinError::BadAddress { .. } => EXIT_USAGE,
        JoinError::CodeNeeded | JoinError::WrongCode { .. } | JoinError::TooManyTries => EXIT_CODE,
        JoinError::JamFull { .. } | JoinError::Rejected { .. } => EXIT_FULL,
        JoinError::Unreachable { .. }
        | JoinError::NotAJam { .. }
        | JoinError::Rendezvous { .. }
        | JoinError::NoAnswer { .. } => EXIT_UNREACHABLE,
        JoinError::ConnectionFailed { .. }
        | JoinError::NoWelcome { .. }
        | JoinError::Setup { .. } => EXIT_CONNECT,
        _ => EXIT_OTHER,
    }
}

fn event_text(e: &JoinEvent) -> String {
    match e {
        JoinEvent::Step { step, ms } => format!("[{ms:7.1} ms] {step:?}"),
        JoinEvent::Joined {
            host_name,
            ms,
            mode,
            ..
        } => format!(
            "Joined {} in {ms:.0} ms (mode {}).",
            host_name.as_deref().unwrap_or("the jam"),
            mode.as_deref().unwrap_or("?")
        ),
        JoinEvent::Peers { peers } => {
            let names: Vec<String> = peers
                .iter()
                .map(|p| format!("{}{}", p.display_name, if p.you { " (you)" } else { "" }))
                .collect();
            format!("Players: {}", names.join(", "))
        }
        JoinEvent::PeerJoined { peer } => format!("{} joined.", peer.display_name),
        JoinEvent::PeerLeft { peer } => format!("{} left.", peer.display_name),
        JoinEvent::Chat {
            display_name, text, ..
        } => format!("{display_name}: {text}"),
        JoinEvent::Frame { kind, .. } => format!("(frame: {kind})"),
        JoinEvent::MidiOpen => "Live MIDI channel open.".to_owned(),
        JoinEvent::MidiClosed => "Live MIDI channel closed.".to_owned(),
        JoinEvent::Failed { message, .. } => format!("Could not join: {message}"),
        JoinEvent::Left { reason } => reason.clone(),
    }
}

/// Finds the jam on the LAN: `(url, code)`.
/// Listens for MidiEditor's LAN Live datagrams on the `--browse-on`
/// interfaces until one carries `code` (or `--browse-timeout` runs out).
async fn find_lan_host(args: &JoinArgs, code: &str) -> Result<LanTarget, (u8, String)> {
    let code = code.trim().to_ascii_uppercase();
    if code.len() != 4 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err((
            EXIT_CODE,
            format!("{code:?} is not a 4-character LAN Live code"),
        ));
    }
    let ifaces = args.browse_on.clone();
    let listen_for = Duration::from_secs_f64(args.browse_timeout.clamp(0.1, 600.0));
    let json = args.json;
    tokio::task::spawn_blocking(move || {
        let listener = lan::midieditor_lan::Listener::start(lan::InterfaceChoice::Named(ifaces))
            .map_err(|e| (EXIT_OTHER, format!("cannot listen for LAN Live hosts: {e}")))?;
        let deadline = Instant::now() + listen_for;
        let found = loop {
            if let Some(h) = listener.find(&code) {
                break Some(h);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        listener.stop();
        let h = found.ok_or_else(|| {
            (
                EXIT_NOT_FOUND,
                format!(
                    "no MidiEditor LAN Live host announced the code {code} within {} s",
                    listen_for.as_secs_f64()
                ),
            )
        })?;
        let a = &h.announcement;
        emit(
            json,
            json!({"event": "found", "kind": "midiEditorLan", "name": a.display_name,
                "addr": h.addr.to_string(), "code": a.code, "sessionId": a.session_id}),
            || {
                format!(
                    "Found {} (MidiEditor LAN Live) at {}",
                    a.display_name, h.addr
                )
            },
        );
        Ok(LanTarget {
            addr: h.addr,
            session_id: a.session_id.clone(),
            host_name: a.display_name.clone(),
            code: a.code.clone(),
        })
    })
    .await
    .unwrap_or_else(|e| Err((EXIT_OTHER, format!("LAN Live listener failed: {e}"))))
}

async fn browse(
    args: &JoinArgs,
) -> Result<(jam::types::RendezvousUrl, Option<String>), (u8, String)> {
    let want_url = match &args.url {
        Some(u) => Some(jam::joiner::parse_address(u).map_err(|e| (EXIT_USAGE, e.message))?),
        None => None,
    };
    let ifaces = args.browse_on.clone();
    let browse_for = Duration::from_secs_f64(args.browse_timeout.clamp(0.1, 600.0));
    let have_code = args.code.is_some();
    let json = args.json;
    // The mDNS daemon and its channel are blocking APIs: one blocking task.
    let found = tokio::task::spawn_blocking(move || {
        let browser = lan::Browser::start(lan::BrowseConfig::new(lan::InterfaceChoice::Named(ifaces)))
            .map_err(|e| (EXIT_OTHER, format!("cannot browse the LAN: {e}")))?;
        let deadline = Instant::now() + browse_for;
        let mut told = std::collections::HashSet::new();
        let chosen = loop {
            let mut pick = None;
            for info in browser.jams() {
                let Some(url) = jam::joiner::url_for(&info.addresses, info.port, &info.path) else {
                    continue;
                };
                if told.insert((info.instance.clone(), info.peers, info.code.clone())) {
                    emit(
                        json,
                        json!({"event": "found", "name": info.name, "url": url, "peers": info.peers,
                            "maxPeers": info.max_peers, "open": info.code.is_some(), "code": info.code}),
                        || {
                            format!(
                                "Found {} at {url} ({}/{} players, {})",
                                info.name,
                                info.peers,
                                info.max_peers,
                                if info.code.is_some() { "open" } else { "code needed" }
                            )
                        },
                    );
                }
                let compatible = info.version == lan::VERSION;
                let wanted = match &want_url {
                    Some(u) => *u == url,
                    None => have_code || info.code.is_some(),
                };
                if pick.is_none() && compatible && wanted {
                    pick = Some((url, info.code.clone()));
                }
            }
            if let Some(p) = pick {
                break Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            let _ = browser.recv_timeout(left.min(Duration::from_millis(100)));
        };
        let _ = browser.stop();
        Ok::<_, (u8, String)>(chosen)
    })
    .await
    .map_err(|e| (EXIT_OTHER, format!("browsing failed: {e}")))??;
    found.ok_or_else(|| {
        (
            EXIT_NOT_FOUND,
            format!(
                "no {} found on {} within {:.1} s",
                if have_code || args.url.is_some() {
                    "matching jam"
                } else {
                    "open jam"
                },
                args.browse_on.join(", "),
                browse_for.as_secs_f64()
            ),
        )
    })
}

pub async fn run(args: JoinArgs) -> ExitCode {
    if let Err(e) = crate::init_logging_with(&args.log_level, args.log_format) {
        eprintln!("midi-rdv: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let json = args.json;
    let mut lan_target: Option<LanTarget> = None;
    let done = |code: u8, ok: bool, join_ms: Option<f64>, message: Option<String>| {
        if json {
            line(
                &json!({"event": "done", "code": code, "ok": ok, "joinMs": join_ms, "message": message})
                    .to_string(),
            );
        } else if let Some(m) = &message {
            if !ok {
                eprintln!("midi-rdv: {m}");
            }
        }
        ExitCode::from(code)
    };

    if let Some(lan_code) = &args.lan_code {
        if args.browse_on.is_empty() {
            return done(
                EXIT_USAGE,
                false,
                None,
                Some("--lan-code needs --browse-on IFACE (where to listen for MidiEditor's LAN Live datagrams)".into()),
            );
        }
        match find_lan_host(&args, lan_code).await {
            Ok(target) => lan_target = Some(target),
            Err((code, message)) => return done(code, false, None, Some(message)),
        }
    }
    let (url, code) = if lan_target.is_some() {
        // Not used by a TCP join; the view shows tcp://ADDR instead.
        match jam::joiner::parse_address("127.0.0.1") {
            Ok(url) => (url, None),
            Err(e) => return done(EXIT_OTHER, false, None, Some(e.message)),
        }
    } else if !args.browse_on.is_empty() {
        match browse(&args).await {
            Ok((url, advertised)) => (url, args.code.clone().or(advertised)),
            Err((code, message)) => return done(code, false, None, Some(message)),
        }
    } else {
        let Some(raw) = &args.url else {
            return done(
                EXIT_USAGE,
                false,
                None,
                Some("say where the jam is: --url ADDRESS, or --browse-on IFACE to find it on the LAN".into()),
            );
        };
        match jam::joiner::parse_address(raw) {
            Ok(url) => (url, args.code.clone()),
            Err(e) => return done(EXIT_USAGE, false, None, Some(e.message)),
        }
    };

    let cfg = JoinConfig {
        machine_id: args.machine_id.clone().unwrap_or_default(),
        rtc: RtcConfig {
            ice_servers: args.ice_servers.clone(),
            gather_timeout: Duration::from_millis(args.gather_timeout_ms),
            bind_ips: args.ice_bind.clone(),
            resolve_mdns: false,
        },
        timeouts: JoinTimeouts {
            answer: Duration::from_secs(args.answer_timeout),
            ..JoinTimeouts::default()
        },
        midi: match args.midi {
            MidiArg::Auto => MidiChannel::WhenHostOffers,
            MidiArg::Offer => MidiChannel::InOffer,
            MidiArg::Off => MidiChannel::Off,
        },
        ..JoinConfig::new(url, code, args.name.clone())
    };
    let (joiner, mut events) = match lan_target {
        Some(target) => Joiner::start_lan(cfg, target),
        None => Joiner::start(cfg),
    };
    let mut midi_rx = joiner.take_midi_receiver();
    let mut pending_midi = args.send_midi.clone().map(|m| m.0);
    let stay = args
        .stay
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e7)));
    let mut stay_until: Option<tokio::time::Instant> = None;
    let mut joined_ms: Option<f64> = None;
    // Why it ended, when it ended by itself.
    let mut last_word: Option<String> = None;
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);

    // The exit status once the loop ends, and whether we asked to leave.
    let status: u8 = loop {
        let stay_over = async {
            match stay_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let midi_in = async {
            match midi_rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = events.recv() => {
                let e = match e {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        emit(json, json!({"event": "error", "message": format!("{n} events skipped")}), || format!("({n} events skipped)"));
                        continue;
                    }
                    Err(_) => break EXIT_OTHER,
                };
                emit(json, serde_json::to_value(&e).unwrap_or(Value::Null), || event_text(&e));
                match &e {
                    JoinEvent::Joined { ms, .. } => {
                        joined_ms = Some(*ms);
                        stay_until = stay.map(|s| tokio::time::Instant::now() + s);
                    }
                    JoinEvent::MidiOpen => {
                        if let Some(bytes) = pending_midi.take() {
                            let r = joiner.send_midi(Bytes::from(bytes.clone())).await;
                            emit(json, json!({"event": "midiSent", "hex": hex(&bytes), "ok": r.is_ok(),
                                "error": r.as_ref().err().map(ToString::to_string)}),
                                || format!("MIDI sent: {}", hex(&bytes)));
                        }
                    }
                    JoinEvent::Failed { error, message } => {
                        last_word = Some(message.clone());
                        break exit_for(error);
                    }
                    JoinEvent::Left { reason } => {
                        last_word = Some(reason.clone());
                        break EXIT_ENDED;
                    }
                    _ => {}
                }
            }
            m = midi_in => match m {
                Some(bytes) => emit(json, json!({"event": "midi", "len": bytes.len(), "hex": hex(&bytes)}),
                    || format!("MIDI in: {}", hex(&bytes))),
                None => midi_rx = None,
            },
            _ = stay_over => break 0,
            _ = &mut shutdown => {
                break if joined_ms.is_some() { 0 } else { EXIT_OTHER };
            }
        }
    };
    let asked_to_leave = status == 0;
    joiner.leave().await;
    if asked_to_leave {
        emit(
            json,
            json!({"event": "left", "reason": "You left the jam."}),
            || "You left the jam.".to_owned(),
        );
    }
    // Taken from the events themselves: they are sent before the view changes.
    let message = if asked_to_leave { None } else { last_word };
    if json {
        done(status, status == 0, joined_ms, message)
    } else {
        // Text mode already printed the failure or the reason as an event.
        ExitCode::from(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_parsed_and_printed() {
        assert_eq!(parse_hex("90 3c 64"), Ok(MidiHex(vec![0x90, 0x3c, 0x64])));
        assert!(parse_hex("9").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("").is_err());
        assert_eq!(hex(&[0xf0, 0x7f]), "f07f");
    }

    #[test]
    fn every_error_has_its_exit_status() {
        assert_eq!(exit_for(&JoinError::WrongCode { code: "X".into() }), 3);
        assert_eq!(exit_for(&JoinError::CodeNeeded), 3);
        assert_eq!(
            exit_for(&JoinError::JamFull {
                detail: String::new()
            }),
            4
        );
        assert_eq!(
            exit_for(&JoinError::Unreachable {
                url: String::new(),
                detail: String::new()
            }),
            5
        );
        assert_eq!(exit_for(&JoinError::NoAnswer { secs: 1 }), 5);
        assert_eq!(
            exit_for(&JoinError::ConnectionFailed {
                detail: String::new()
            }),
            6
        );
        assert_eq!(exit_for(&JoinError::Cancelled), 1);
    }
}
