//! `midi-rdv host`: the bundled rendezvous plus the jam host, headless.
//! Prints the code and the URL to share; with `--json`, one JSON object per
//! line for every event, so scripts and tests can follow a jam.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use jam::host::{Host, HostConfig, HostEvent};
use jam::rtc::RtcConfig;
use jam::signal::Target;
use rdv::{Config, Rendezvous, RunningServer};

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
    #[arg(long = "ice-server", env = "MIDI_RDV_ICE_SERVERS", value_delimiter = ',', value_parser = parse_ice)]
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

fn parse_ice(s: &str) -> Result<jam::rtc::IceServer, String> {
    s.parse::<jam::types::IceServer>()
        .map(Into::into)
        .map_err(|e| e.to_string())
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
                    format!("The rendezvous lost the session; new code: {code}")
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
                format!(
                    "{}: {} ({})",
                    v["event"].as_str().unwrap_or("peer"),
                    peer.display_name.as_deref().unwrap_or("(no name yet)"),
                    v["peer"]["state"].as_str().unwrap_or("")
                )
            }
            HostEvent::Chat { display_name, text } => format!("{display_name}: {text}"),
            HostEvent::Error { message } => format!("error: {message}"),
            HostEvent::Stopped => "Stopped.".to_owned(),
        }
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop the jam.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

pub async fn run(args: HostArgs) -> Result<(), String> {
    crate::init_logging_with(&args.log_level, args.log_format)?;
    let (server, target, urls) = match &args.rendezvous_url {
        Some(url) => (None, Target::Remote(url.clone()), vec![url.to_string()]),
        None => {
            let rdv = Rendezvous::new(Config::default());
            let bind = SocketAddr::new(args.bind, args.port);
            let server = RunningServer::start(bind, rdv.clone())
                .await
                .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
            let urls = jam::net::share_urls(server.addr, "");
            (Some(server), Target::bundled(rdv), urls)
        }
    };
    let cfg = HostConfig {
        display_name: args.name.clone(),
        machine_id: String::new(),
        session_id: format!("jam-{}", jam::host::new_machine_id()),
        max_peers: usize::try_from(args.max_peers).unwrap_or(8),
        rtc: RtcConfig {
            ice_servers: args.ice_servers.clone(),
            gather_timeout: Duration::from_millis(args.gather_timeout_ms),
            bind_ips: args.ice_bind.clone(),
            resolve_mdns: !args.no_mdns,
        },
        target,
        share_urls: urls,
    };
    let (host, mut events) = match Host::start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            if let Some(s) = server {
                let _ = s.stop().await;
            }
            return Err(format!("cannot host: {e}"));
        }
    };
    let json = args.json;
    // The first event names the code, which an open jam advertises.
    let code = match events.recv().await {
        Ok(e) => {
            print(json, &e);
            match e {
                HostEvent::Hosting { code, .. } => Some(code),
                _ => None,
            }
        }
        Err(_) => None,
    };
    let max_peers = usize::try_from(args.max_peers).unwrap_or(8);
    let mut advertiser = match (&server, args.no_advertise) {
        (Some(server), false) => {
            let cfg = lan::AdvertiseConfig {
                interfaces: if args.advertise_on.is_empty() {
                    lan::InterfaceChoice::DefaultLan
                } else {
                    lan::InterfaceChoice::Named(args.advertise_on.clone())
                },
                port: server.addr.port(),
                base_path: "/".into(),
                name: args.name.clone(),
                code: if args.open { code.clone() } else { None },
                peers: (0, max_peers),
            };
            match tokio::task::spawn_blocking(move || lan::Advertiser::start(cfg)).await {
                Ok(Ok(a)) => Some(a),
                Ok(Err(e)) => {
                    // Hosting goes on: joiners can still type the address.
                    print(
                        json,
                        &HostEvent::Error {
                            message: format!("not advertised on the LAN: {e}"),
                        },
                    );
                    None
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    let open = args.open;
    let printer = tokio::spawn(async move {
        let mut connected = std::collections::HashSet::new();
        loop {
            match events.recv().await {
                Ok(e) => {
                    let stop = e == HostEvent::Stopped;
                    print(json, &e);
                    if let Some(a) = advertiser.as_mut() {
                        update_advert(a, &e, &mut connected, max_peers, open);
                    }
                    if stop {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    print(
                        json,
                        &HostEvent::Error {
                            message: format!("{n} events skipped (output too slow)"),
                        },
                    );
                }
                Err(_) => break,
            }
        }
        if let Some(a) = advertiser {
            // Goodbye packets, so LAN browsers drop the jam at once.
            let _ = tokio::task::spawn_blocking(move || a.stop()).await;
        }
    });
    // Commands on stdin, one per line: `kick <peer id> [reason]`,
    // `chat <text>`, `quit`. End of input (or no terminal) changes nothing.
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
        let host = host.clone_handle();
        tokio::spawn(async move {
            while let Some(line) = line_rx.recv().await {
                match parse_command(&line) {
                    Ok(Command::Kick(peer, reason)) => host.kick(peer, &reason).await,
                    Ok(Command::Chat(text)) => host.chat(&text).await,
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
    host.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), printer).await;
    if let Some(s) = server {
        s.stop()
            .await
            .map_err(|e| format!("rendezvous error: {e}"))?;
    }
    Ok(())
}

/// Keeps the LAN advertisement's peer count (and an open jam's code) current.
fn update_advert(
    a: &mut lan::Advertiser,
    e: &HostEvent,
    connected: &mut std::collections::HashSet<u64>,
    max_peers: usize,
    open: bool,
) {
    use jam::registry::RegistryEvent;
    match e {
        HostEvent::Peer(RegistryEvent::Connected { peer }) => {
            connected.insert(peer.id.0);
        }
        HostEvent::Peer(RegistryEvent::Left { peer, .. }) => {
            connected.remove(&peer.id.0);
        }
        HostEvent::Hosting { code, .. } if open => {
            let _ = a.set_open_code(Some(code.clone()));
            return;
        }
        _ => return,
    }
    let _ = a.set_peers(connected.len(), max_peers);
}

/// A line typed on stdin while hosting.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Kick(jam::protocol::PeerId, String),
    Chat(String),
    Quit,
    Nothing,
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
        other => Err(format!(
            "unknown command {other:?}: use kick <id> [reason], chat <text> or quit"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_commands_parse_or_explain() {
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
        assert_eq!(parse_command(""), Ok(Command::Nothing));
        assert!(parse_command("kick x").is_err());
        assert!(parse_command("chat").is_err());
        assert!(parse_command("dance").is_err());
    }
}
