//! `midi-rdv host`: the hosted jam ([`hosted`]: the bundled rendezvous plus
//! the jam host and its LAN advert), headless. This file only maps flags to
//! a [`HostedConfig`] and prints the service's events: the code and the URL
//! to share; with `--json`, one JSON object per line for every event, so
//! scripts and tests can follow a jam.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hosted::{Hosted, HostedConfig, HostedEvent, Level, Phase, RendezvousChoice};
use jam::host::HostEvent;
use tokio::sync::broadcast;

use crate::LogFormat;

#[derive(clap::Args, Debug)]
pub struct HostArgs {
    /// Address the bundled rendezvous listens on (MidiEditor joiners reach it here).
    #[arg(long, env = "MIDI_RDV_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port of the bundled rendezvous (0 picks a free one).
    #[arg(long, env = "MIDI_RDV_PORT", default_value_t = 8787)]
    pub port: u16,
    /// Use this rendezvous instead of the bundled one (e.g. http://10.0.0.2:8787).
    /// Checked as the one rendezvous-URL type checks it (http:// or
    /// https://, a host, no ?query).
    #[arg(long, env = "MIDI_RDV_RENDEZVOUS_URL")]
    pub rendezvous_url: Option<jam::types::RendezvousUrl>,
    /// Your name as joiners see it.
    #[arg(long, env = "MIDI_RDV_NAME", default_value = "Jam host")]
    pub name: String,
    /// Peers in the jam at once; the next one is refused with a reason.
    #[arg(long, env = "MIDI_RDV_MAX_PEERS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_peers: u64,
    /// A STUN/TURN server (stun:host[:port], turn:user:pass@host[:port][?transport=udp]); repeatable. None by default.
    #[arg(long = "ice-server", env = "MIDI_RDV_ICE_SERVERS", value_delimiter = ',', value_parser = crate::parse_ice)]
    pub ice_servers: Vec<jam::rtc::IceServer>,
    /// Local address to gather ICE host candidates on; repeatable. Default: every interface.
    #[arg(long = "ice-bind", env = "MIDI_RDV_ICE_BIND", value_delimiter = ',')]
    pub ice_bind: Vec<IpAddr>,
    /// Longest wait for ICE gathering before an answer is sent, in milliseconds.
    #[arg(long, env = "MIDI_RDV_GATHER_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=30_000))]
    pub gather_timeout_ms: u64,
    /// Do not resolve joiners' `.local` (mDNS) candidates.
    #[arg(long, env = "MIDI_RDV_NO_MDNS")]
    pub no_mdns: bool,
    /// Advertise the jam over mDNS on this interface only (repeatable).
    /// Default: the physical LAN interfaces (no loopback, VPN or virtual adapters).
    #[arg(
        long = "advertise-on",
        env = "MIDI_RDV_ADVERTISE_ON",
        value_delimiter = ','
    )]
    pub advertise_on: Vec<String>,
    /// Do not advertise the jam on the LAN (mDNS).
    #[arg(long, env = "MIDI_RDV_NO_ADVERTISE")]
    pub no_advertise: bool,
    /// Open jam: publish the code in the LAN advertisement, so LAN joiners need not type it.
    #[arg(long, env = "MIDI_RDV_OPEN")]
    pub open: bool,
    /// Do not let MidiEditor find the jam with "Join LAN Live Session" (no
    /// TCP port for it, no MIDIEDIT-PR-LAN datagram). By default the
    /// datagram goes out once a second wherever the mDNS advert does.
    #[arg(long, env = "MIDI_RDV_NO_MIDIEDITOR_LAN")]
    pub no_midieditor_lan: bool,
    /// Share this Standard MIDI File with MidiEditor joiners: each gets it on
    /// joining, and their edits are applied, relayed and saved.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["new_song", "continue_song"])]
    pub song: Option<std::path::PathBuf>,
    /// Share a new empty song (2 tracks, 192 ticks per quarter).
    #[arg(long, conflicts_with = "continue_song")]
    pub new_song: bool,
    /// Continue the song saved by the last session (see --state-dir).
    #[arg(long = "continue")]
    pub continue_song: bool,
    /// Record from the start: notes live-MIDI peers play go into the shared
    /// song's "Live" track (stdin `record on` / `record off` switches it).
    #[arg(long)]
    pub record: bool,
    /// Where the host keeps its machine id and the saved song versions.
    /// Default: $XDG_STATE_HOME/midi-jam (or ~/.local/state/midi-jam).
    #[arg(long, env = "MIDI_RDV_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Write one JSON object per line for each event instead of text.
    #[arg(long)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(long, env = "MIDI_RDV_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (error, warn, info, debug, or a tracing directive). The
    /// default hides the WebRTC stack's own chatter (a peer closing its
    /// association is logged there as an error), which a musician cannot act on.
    #[arg(
        long,
        env = "MIDI_RDV_LOG",
        default_value = "warn,webrtc=off,rtc=off,rtc_sctp=off,rtc_dtls=off,rtc_ice=off,rtc_datachannel=off,rtc_mdns=off,rtc_srtp=off"
    )]
    pub log_level: String,
}

/// `s` made harmless for a terminal: peers choose their display names and
/// chat text, and an escape sequence in them would otherwise be run by the
/// host's terminal (clear the screen, retitle the window, fake a line). Every
/// control character (C0, DEL, C1: ESC, CR, LF and TAB included) and every
/// bidirectional override becomes U+FFFD; the JSON output escapes them
/// instead.
fn terminal_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Prints one event: a JSON line, or a line of text for people.
fn print(json: bool, e: &HostEvent) {
    let line = if json {
        e.to_json().to_string()
    } else {
        match e {
            HostEvent::Hosting {
                code,
                urls,
                renewed,
            } => {
                let mut s = if *renewed {
                    format!("The rendezvous lost the session; hosting again. Code: {code}")
                } else {
                    format!("Hosting. Code: {code}")
                };
                for u in urls {
                    s.push_str(&format!(
                        "\n  Rendezvous URL (MidiEditor: Settings > Collaboration): {u}"
                    ));
                }
                s
            }
            HostEvent::Peer(p) => {
                let v = e.to_json();
                let peer = p.peer();
                let via = peer.transport.label();
                // Why a peer left (kicked for an oversized frame, say).
                let why = match &v["reason"] {
                    serde_json::Value::Null => String::new(),
                    r => format!(
                        ": {}",
                        terminal_safe(r["reason"].as_str().or(r["code"].as_str()).unwrap_or(""))
                    ),
                };
                format!(
                    "{}: {} ({}{}{}){why}",
                    v["event"].as_str().unwrap_or("peer"),
                    terminal_safe(peer.display_name.as_deref().unwrap_or("(no name yet)")),
                    v["peer"]["state"].as_str().unwrap_or(""),
                    if via.is_empty() { "" } else { ", " },
                    via
                )
            }
            HostEvent::Chat { display_name, text } => {
                format!("{}: {}", terminal_safe(display_name), terminal_safe(text))
            }
            HostEvent::Error { message } => format!("error: {}", terminal_safe(message)),
            HostEvent::Song(v) => format!(
                "song: {} — {} tracks, {} events, {:.1} s, last edit by {}",
                terminal_safe(&v.name),
                v.tracks,
                v.events,
                v.seconds,
                terminal_safe(v.last_editor.as_deref().unwrap_or("nobody"))
            ),
            HostEvent::Stopped => "Stopped.".to_owned(),
        }
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop the jam.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The hosted jam `args` describe: exactly the given port (no fallback: a
/// script asked for it), no MIDI ports of its own (it relays), and a failed
/// start is final.
fn config(args: &HostArgs) -> Result<HostedConfig, String> {
    let rendezvous = match &args.rendezvous_url {
        Some(url) => RendezvousChoice::Remote(url.clone()),
        None => RendezvousChoice::Bundled {
            bind: args.bind,
            port: args.port,
            port_attempts: 1,
        },
    };
    Ok(HostedConfig {
        name: args.name.clone(),
        max_peers: usize::try_from(args.max_peers).unwrap_or(hosted::MAX_PEERS),
        rendezvous,
        ice_servers: args.ice_servers.clone(),
        gather_timeout: Duration::from_millis(args.gather_timeout_ms),
        ice_bind: args.ice_bind.clone(),
        resolve_mdns: !args.no_mdns,
        advertise: !args.no_advertise,
        advertise_on: args.advertise_on.clone(),
        open_jam: args.open,
        midieditor_lan: !args.no_midieditor_lan,
        midi: None,
        retry_every: None,
        song: None,
        machine_id: String::new(),
    })
}

/// `--state-dir`, or the XDG state directory.
fn state_dir(args: &HostArgs) -> std::path::PathBuf {
    if let Some(d) = &args.state_dir {
        return d.clone();
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("midi-jam")
}

/// Prints one event of the hosted jam. The service's own messages (the LAN
/// advert failed, say) print as `error` lines, as host errors do.
fn print_hosted(json: bool, e: HostedEvent) {
    match e {
        HostedEvent::Host(e) => print(json, &e),
        HostedEvent::Notice(n) => print(json, &HostEvent::Error { message: n.message }),
    }
}

fn print_skipped(json: bool, n: u64) {
    print(
        json,
        &HostEvent::Error {
            message: format!("{n} events skipped (output too slow)"),
        },
    );
}

/// Waits until the jam hosts (`Ok`) or its start failed (the reason).
async fn started(hosted: &Hosted) -> Result<(), String> {
    let mut view = hosted.subscribe();
    loop {
        {
            let v = view.borrow_and_update();
            match v.phase {
                Phase::Hosting => return Ok(()),
                Phase::Failed | Phase::Stopped => {
                    return Err(v
                        .notices
                        .iter()
                        .rev()
                        .find(|n| n.level == Level::Error)
                        .map(|n| n.message.clone())
                        .unwrap_or_else(|| "cannot host".to_owned()))
                }
                Phase::Starting => {}
            }
        }
        if view.changed().await.is_err() {
            return Err("the jam stopped before it hosted".to_owned());
        }
    }
}

pub async fn run(args: HostArgs) -> Result<(), String> {
    crate::init_logging_with(&args.log_level, args.log_format)?;
    let mut cfg = config(&args)?;
    let json = args.json;
    let state = jam::hub::StateDir::open(state_dir(&args))?;
    cfg.machine_id = state.machine_id()?;
    cfg.song = if let Some(file) = &args.song {
        Some(state.from_file(file)?)
    } else if args.new_song {
        Some(state.new_song("jam.mid")?)
    } else if args.continue_song {
        Some(state.resume()?)
    } else {
        if let Some(o) = state.offer() {
            // The next start offers the saved song; sharing it takes
            // --continue, so a plain start never replays an old session.
            let line = if json {
                serde_json::json!({"event": "songOffer", "offer": o}).to_string()
            } else {
                format!(
                    "A saved song can be continued: {} ({} tracks, {} events, last edit by {}). \
                     Start with --continue to share it.",
                    o.name,
                    o.tracks,
                    o.events,
                    o.last_editor.as_deref().unwrap_or("nobody")
                )
            };
            println!("{line}");
        }
        None
    };
    if let Some(s) = &cfg.song {
        print(json, &HostEvent::Song(s.view()));
    }
    // What `song` on stdin changes (the running jam's config otherwise).
    let mut current = cfg.clone();
    let (hosted, mut events) = Hosted::start(cfg);
    if let Err(why) = started(&hosted).await {
        hosted.stop().await;
        return Err(why);
    }
    let printer = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => print_hosted(json, e),
                Err(broadcast::error::RecvError::Lagged(n)) => print_skipped(json, n),
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    if args.record {
        hosted.set_record(true).await;
    }
    let hosted = Arc::new(hosted);
    // Commands on stdin, one per line: `kick <peer id> [reason]`,
    // `chat <text>`, `record on|off`, `song <file>|new`, `quit`. End of
    // input (or no terminal) changes nothing.
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::channel::<()>(1);
    // Lines are read on a plain thread: a blocking read of stdin cannot be
    // cancelled, and as a runtime task it would keep the process alive after
    // SIGTERM until someone pressed Enter. A plain thread dies with the process.
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<String>(16);
    let _ = std::thread::Builder::new()
        .name("stdin-commands".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if line_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    let commands = {
        let hosted = hosted.clone();
        tokio::spawn(async move {
            while let Some(line) = line_rx.recv().await {
                match parse_command(&line) {
                    Ok(Command::Kick(peer, reason)) => hosted.kick(peer.0, &reason).await,
                    Ok(Command::Chat(text)) => hosted.chat(&text).await,
                    Ok(Command::Record(on)) => hosted.set_record(on).await,
                    Ok(Command::Song(which)) => {
                        // Another shared song restarts the host under the
                        // same code; joiners are told to come back.
                        let state = state.clone();
                        let made = tokio::task::spawn_blocking(move || match which {
                            SongChoice::File(path) => state.from_file(&path),
                            SongChoice::New => state.new_song("jam.mid"),
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                        match made {
                            Ok(song) => {
                                print(json, &HostEvent::Song(song.view()));
                                current.song = Some(song);
                                hosted.apply(current.clone()).await;
                            }
                            Err(e) => print(
                                json,
                                &HostEvent::Error {
                                    message: format!("song: {e}; the shared song is unchanged"),
                                },
                            ),
                        }
                    }
                    Ok(Command::Quit) => {
                        let _ = quit_tx.send(()).await;
                        break;
                    }
                    Ok(Command::Nothing) => {}
                    Err(e) => print(json, &HostEvent::Error { message: e }),
                }
            }
        })
    };
    // End of stdin drops the sender; only an explicit `quit` stops the host.
    let quit = async move {
        if quit_rx.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = crate::shutdown_signal() => {}
        _ = quit => {}
    }
    commands.abort();
    let _ = commands.await;
    match Arc::try_unwrap(hosted) {
        Ok(h) => h.stop().await,
        Err(_) => return Err("the jam is still in use".to_owned()),
    }
    // The service is gone, so the printer sees the end of the events after
    // the host's last ones (`stopped`).
    let _ = tokio::time::timeout(Duration::from_secs(2), printer).await;
    Ok(())
}

/// A line typed on stdin while hosting.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Kick(jam::protocol::PeerId, String),
    Chat(String),
    Record(bool),
    /// Share another song: the host restarts under the same code.
    Song(SongChoice),
    Quit,
    Nothing,
}

/// What `song` shares.
#[derive(Debug, PartialEq, Eq)]
enum SongChoice {
    File(std::path::PathBuf),
    New,
}

fn parse_command(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "" => Ok(Command::Nothing),
        "kick" => {
            let (id, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let id: u64 = id.parse().map_err(|_| {
                format!("kick: {id:?} is not a peer id (the \"id\" of a peer event)")
            })?;
            let reason = if reason.trim().is_empty() {
                "removed by the host".to_owned()
            } else {
                reason.trim().to_owned()
            };
            Ok(Command::Kick(jam::protocol::PeerId(id), reason))
        }
        "chat" if !rest.is_empty() => Ok(Command::Chat(rest.to_owned())),
        "chat" => Err("chat: nothing to say".to_owned()),
        "quit" | "stop" => Ok(Command::Quit),
        "record" => match rest {
            "on" => Ok(Command::Record(true)),
            "off" => Ok(Command::Record(false)),
            _ => Err("record: say on or off".to_owned()),
        },
        "song" if rest == "new" => Ok(Command::Song(SongChoice::New)),
        "song" if !rest.is_empty() => Ok(Command::Song(SongChoice::File(rest.into()))),
        "song" => Err("song: give a MIDI file's path, or new".to_owned()),
        other => Err(format!(
            "unknown command {other:?}: use kick <id> [reason], chat <text>, record on|off, song <file>|new or quit"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_cannot_reach_the_terminal_as_control_sequences() {
        assert_eq!(terminal_safe("Ann"), "Ann");
        assert_eq!(
            terminal_safe("\u{1b}[2J\u{1b}]0;pwned\u{7}x"),
            "\u{fffd}[2J\u{fffd}]0;pwned\u{fffd}x"
        );
        assert_eq!(
            terminal_safe("a\r\nhost: fake"),
            "a\u{fffd}\u{fffd}host: fake"
        );
        assert_eq!(
            terminal_safe("\u{9b}31m\u{202e}abc"),
            "\u{fffd}31m\u{fffd}abc"
        );
        assert_eq!(terminal_safe("Zoë 🎹"), "Zoë 🎹");
    }

    #[test]
    fn stdin_commands_parse_or_explain() {
        assert_eq!(parse_command("record on"), Ok(Command::Record(true)));
        assert_eq!(parse_command(" record  off "), Ok(Command::Record(false)));
        assert!(parse_command("record loud").is_err());
        assert_eq!(
            parse_command("kick 3 too loud"),
            Ok(Command::Kick(jam::protocol::PeerId(3), "too loud".into()))
        );
        assert_eq!(
            parse_command(" kick 3 "),
            Ok(Command::Kick(
                jam::protocol::PeerId(3),
                "removed by the host".into()
            ))
        );
        assert_eq!(
            parse_command("chat hi all"),
            Ok(Command::Chat("hi all".into()))
        );
        assert_eq!(parse_command("quit"), Ok(Command::Quit));
        assert_eq!(
            parse_command("song /music/a b.mid"),
            Ok(Command::Song(SongChoice::File("/music/a b.mid".into())))
        );
        assert_eq!(
            parse_command("song new"),
            Ok(Command::Song(SongChoice::New))
        );
        assert!(parse_command("song").is_err());
        assert_eq!(parse_command(""), Ok(Command::Nothing));
        assert!(parse_command("kick x").is_err());
        assert!(parse_command("chat").is_err());
        assert!(parse_command("dance").is_err());
    }
}
