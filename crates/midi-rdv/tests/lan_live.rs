//! MidiEditor's LAN Live mode against `midi-rdv host` (docs/lan-live.md):
//! the host's `MIDIEDIT-PR-LAN` datagram and its TCP transport, with
//!
//! - the real MidiEditor AI (`test_support::tools::midieditor_tool()`): its
//!   "Join LAN Live Session" finds our host by the code alone and gets
//!   `sessionWelcome`; a MidiEditor LAN joiner and a MidiEditor WAN joiner
//!   in the same jam both hear the host's chat and a third peer's chat.
//!   Skipped, with the reason printed, when the tool is absent;
//! - an independent LAN client written from the protocol text
//!   (`tests/interop/lan_client.py`, Python stdlib): discovery, and the bad
//!   inputs a real MidiEditor never sends (a frame over 32 MiB, unframed
//!   JSON, a trickled frame, no hello, a flood of connections), each
//!   dropped with a log line while a joiner already in stays.
//!
//! Two "machines": namespaces A (the host, on `vA`) and B (the joiners, on
//! `vB`) joined by a veth pair, so the multicast datagrams never leave the
//! test's namespaces. Needs root and iproute2 (FAILS without them: CI runs
//! as root); python3 for the client.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::netns::{IF_A, IF_B};
use test_support::{wait_until, Netns, VethPair};

#[path = "support/cli.rs"]
mod cli;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
const WITHIN: Duration = Duration::from_secs(20);

fn lan_client() -> PathBuf {
    test_support::tools::interop_dir().join("lan_client.py")
}

/// A `midi-rdv host --json` in a namespace: its JSON lines collected, its
/// stderr (the log) collected, its stdin open for `chat` commands.
struct HostProc {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<String>>,
}

impl HostProc {
    fn start(ns: &Netns, ip: &str, extra: &[&str]) -> HostProc {
        let mut args = vec![
            "host",
            "--json",
            "--port",
            "0",
            "--no-mdns",
            "--ice-bind",
            ip,
            "--log-level",
            "warn,jam=info,webrtc=off,rtc=off,rtc_sctp=off,rtc_dtls=off,rtc_ice=off",
        ];
        args.extend_from_slice(extra);
        let mut cmd = cli::command(ns, Path::new(BIN), &args);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("start midi-rdv host");
        let stdin = child.stdin.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    l.lock().unwrap().push(v);
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let g = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = g.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        HostProc {
            child,
            stdin,
            lines,
            log,
        }
    }

    fn code(&self) -> String {
        let mut code = None;
        assert!(
            wait_until(WITHIN, Duration::from_millis(20), || {
                code = self
                    .find(|v| v["event"] == "hosting")
                    .map(|v| v["code"].clone());
                code.is_some()
            }),
            "no hosting line; log:\n{}",
            self.log.lock().unwrap()
        );
        code.unwrap().as_str().unwrap().to_owned()
    }

    fn find(&self, f: impl Fn(&Value) -> bool) -> Option<Value> {
        self.lines.lock().unwrap().iter().find(|v| f(v)).cloned()
    }

    fn wait(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut got = None;
        if !wait_until(WITHIN, Duration::from_millis(20), || {
            got = self.find(&f);
            got.is_some()
        }) {
            panic!(
                "host never printed {what}; lines: {:#?}\nlog:\n{}",
                self.lines.lock().unwrap(),
                self.log.lock().unwrap()
            );
        }
        got.unwrap()
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for HostProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the LAN client in `ns` to the end; its JSON lines.
fn client(ns: &Netns, args: &[&str]) -> Vec<Value> {
    let out = cli::command(ns, Path::new("python3"), &[])
        .arg(lan_client())
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "lan_client {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The client in the background (joined later).
fn client_bg(ns: &Netns, args: &[&str]) -> thread::JoinHandle<Vec<Value>> {
    let ns_name = ns.name().to_owned();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    thread::spawn(move || {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns_name, "python3"])
            .arg(lan_client())
            .args(&args);
        cli::plain(&mut cmd);
        let out = cmd.output().expect("python3");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    })
}

/// The host's datagram, as the independent client hears it in B.
fn discover(pair: &VethPair, code: &str) -> (String, u16, u64) {
    let ip_b = pair.ip_b.to_string();
    let found = client(
        &pair.b,
        &["find", code, "--iface-ip", &ip_b, "--timeout", "10"],
    );
    let f = &found[0]["found"];
    assert!(f.is_object(), "datagram not heard in B: {found:?}");
    assert_eq!(f["code"], code);
    (
        f["host"].as_str().unwrap().to_owned(),
        u16::try_from(f["port"].as_u64().unwrap()).unwrap(),
        found[0]["afterMs"].as_u64().unwrap(),
    )
}

#[test]
fn the_datagram_and_the_tcp_port_serve_the_chosen_interface_only_and_nothing_is_sent_when_advertising_is_off(
) {
    let pair = VethPair::new("lanlv1");
    // A third machine C, wired to A by a second veth (`vC` in A) that the
    // host was not told to use.
    let c = Netns::new("lanlv1C");
    pair.a.ip(&[
        "link",
        "add",
        "vC",
        "type",
        "veth",
        "peer",
        "name",
        "vC2",
        "netns",
        c.name(),
    ]);
    pair.a.ip(&["addr", "add", "10.78.0.1/24", "dev", "vC"]);
    pair.a.ip(&["link", "set", "vC", "multicast", "on", "up"]);
    c.ip(&["addr", "add", "10.78.0.2/24", "dev", "vC2"]);
    c.ip(&["link", "set", "vC2", "multicast", "on", "up"]);
    let ip_a = pair.ip_a.to_string();
    let host = HostProc::start(&pair.a, &ip_a, &["--advertise-on", IF_A]);
    let code = host.code();
    let (addr, port, after_ms) = discover(&pair, &code);
    assert_eq!(addr, ip_a, "the datagram's source is the TCP address");
    assert!(port > 0);
    println!("datagram heard {after_ms} ms after listening began");
    // The LAN STUN responder answers on the chosen interface only.
    let stun = client(&pair.b, &["stun", &ip_a, "3478"]);
    let mapped = stun[0]["mapped"].as_str().unwrap_or_default();
    assert!(
        mapped.starts_with("10.77.0.2:"),
        "STUN on {ip_a}:3478: {stun:?}"
    );
    let local_port = stun[0]["local"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    assert!(mapped.ends_with(&format!(":{local_port}")), "{stun:?}");
    let stun_c = client(&c, &["stun", "10.78.0.1", "3478"]);
    assert_eq!(
        stun_c[0]["mapped"],
        Value::Null,
        "STUN on an unchosen interface"
    );
    let in_c = client(
        &c,
        &["find", &code, "--iface-ip", "10.78.0.2", "--timeout", "2.5"],
    );
    assert_eq!(
        in_c[0]["found"],
        Value::Null,
        "sent on an unchosen interface"
    );
    // The TCP port asks no code (MidiEditor's LAN joiner sends none), so it
    // lets in only the subnets the datagram reaches: B joins; C, which can
    // reach the port through vC, is closed at once without a frame.
    let port_s = port.to_string();
    let from_b = client(
        &pair.b,
        &["session", &ip_a, &port_s, "--name", "InB", "--seconds", "2"],
    );
    assert_eq!(from_b[0]["frame"]["type"], "sessionWelcome", "{from_b:?}");
    let from_c = client(
        &c,
        &[
            "session",
            "10.78.0.1",
            &port_s,
            "--name",
            "InC",
            "--seconds",
            "5",
        ],
    );
    assert_eq!(from_c.len(), 1, "C got frames: {from_c:?}");
    assert_eq!(from_c[0]["closed"], true, "{from_c:?}");
    assert!(
        from_c[0]["atMs"].as_u64().unwrap() < 2000,
        "closed at accept, not by the hello timeout: {from_c:?}"
    );
    assert!(
        wait_until(WITHIN, Duration::from_millis(20), || host
            .log
            .lock()
            .unwrap()
            .contains("refused a TCP connection from 10.78.0.2")),
        "no log line for C; log:\n{}",
        host.log.lock().unwrap()
    );
    assert!(
        host.find(|v| v["event"] == "peerConnected" && v["peer"]["displayName"] == "InC")
            .is_none(),
        "C was let in"
    );
    drop(host);

    for off in [
        &["--advertise-on", IF_A, "--no-advertise"][..],
        &["--advertise-on", IF_A, "--no-midieditor-lan"][..],
    ] {
        let host = HostProc::start(&pair.a, &ip_a, off);
        let code = host.code();
        let ip_b = pair.ip_b.to_string();
        let heard = client(
            &pair.b,
            &["find", &code, "--iface-ip", &ip_b, "--timeout", "2.5"],
        );
        assert_eq!(
            heard[0]["found"],
            Value::Null,
            "{off:?}: a datagram was sent"
        );
    }
    let _ = IF_B;
}

#[test]
fn bad_lan_inputs_are_dropped_with_a_log_line_and_a_joiner_already_in_stays() {
    let pair = VethPair::new("lanlv2");
    let ip_a = pair.ip_a.to_string();
    let mut host = HostProc::start(
        &pair.a,
        &ip_a,
        &["--advertise-on", IF_A, "--max-peers", "2"],
    );
    let code = host.code();
    let (addr, port, _) = discover(&pair, &code);
    let port_s = port.to_string();
    let target = [addr.as_str(), port_s.as_str()];
    let with = |cmd: &str, more: &[&str]| -> Vec<String> {
        let mut v = vec![cmd.to_owned(), target[0].to_owned(), target[1].to_owned()];
        v.extend(more.iter().map(|s| (*s).to_owned()));
        v
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    // A good joiner first; it stays for the whole test.
    let good_args = with("session", &["--name", "Steady", "--seconds", "18"]);
    let good = client_bg(&pair.b, &args(&good_args));
    host.wait("Steady connected over TCP", |v| {
        v["event"] == "peerConnected"
            && v["peer"]["displayName"] == "Steady"
            && v["peer"]["transport"] == "LAN (TCP)"
    });

    let started = Instant::now();
    let bad: Vec<(&str, thread::JoinHandle<Vec<Value>>)> = vec![
        (
            "oversize",
            client_bg(&pair.b, &args(&with("oversize", &["--seconds", "5"]))),
        ),
        (
            "garbage",
            client_bg(&pair.b, &args(&with("garbage", &["--seconds", "5"]))),
        ),
        (
            "slowloris",
            client_bg(&pair.b, &args(&with("slowloris", &["--seconds", "16"]))),
        ),
        (
            "nohello",
            client_bg(
                &pair.b,
                &args(&with("session", &["--no-hello", "--seconds", "12"])),
            ),
        ),
    ];
    // The four are in (each a row of its own) before the flood takes the
    // remaining slots.
    assert!(
        wait_until(WITHIN, Duration::from_millis(20), || {
            host.lines
                .lock()
                .unwrap()
                .iter()
                .filter(|v| v["event"] == "peerJoined")
                .count()
                >= 5
        }),
        "the bad clients never connected"
    );
    let flood = client(
        &pair.b,
        &args(&with("flood", &["--count", "40", "--hold", "2"])),
    );
    println!("flood: {}", flood[0]);
    // 2 peers: 12 connections at once (2 × 2 + 8), one taken by Steady and
    // up to four by the other bad clients: most of the 40 are closed at once.
    assert!(
        flood[0]["closedWithin1s"].as_u64().unwrap() >= 40 - 12,
        "flood not refused: {}",
        flood[0]
    );
    host.say("chat after the storm");
    let mut results = std::collections::HashMap::new();
    for (name, h) in bad {
        let lines = h.join().unwrap();
        println!("{name}: {lines:?}");
        results.insert(name, lines.last().cloned().unwrap());
    }
    let closed_at = |name: &str| -> u64 {
        let r = &results[name];
        assert_eq!(r["closed"], true, "{name} was never dropped: {r}");
        r["atMs"].as_u64().unwrap()
    };
    assert!(closed_at("oversize") < 3000, "oversize dropped late");
    assert!(closed_at("garbage") < 3000, "unframed JSON dropped late");
    let slow = closed_at("slowloris");
    assert!(
        (4_000..9_000).contains(&slow),
        "slowloris dropped at {slow} ms"
    );
    // The host drops a peer that has not said hello after 5 s (its
    // hello_timeout; see docs/jam-host.md, "Slots cannot be squatted").
    let mute = closed_at("nohello");
    assert!(
        (4_000..9_000).contains(&mute),
        "no-hello dropped at {mute} ms"
    );
    println!("bad inputs done after {:?}", started.elapsed());

    let good = good.join().unwrap();
    assert!(
        good.iter()
            .any(|l| l["frame"]["type"] == "chat" && l["frame"]["text"] == "after the storm"),
        "the joiner already in missed the host's chat: {good:?}"
    );
    assert_eq!(
        good.last().unwrap()["closed"],
        false,
        "the good joiner was dropped"
    );
    assert_eq!(good[0]["frame"]["type"], "sessionWelcome");

    let log = host.log.lock().unwrap().clone();
    for needle in [
        "over MidiEditor's 32 MiB cap",
        "did not arrive within",
        "refused a TCP connection",
    ] {
        assert!(log.contains(needle), "no log line with {needle:?}:\n{log}");
    }
    // The drops are in the event stream too, with their reasons.
    host.wait("a kick for the oversized frame", |v| {
        v["event"] == "peerLeft"
            && v["reason"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("32 MiB"))
    });
    host.wait("the mute one timing out", |v| {
        v["event"] == "peerLeft" && v["reason"]["code"] == "helloTimeout"
    });
}

// ------------------------------------------------------ the real MidiEditor

struct Me {
    script: PathBuf,
    ns: String,
    dir: PathBuf,
}

impl Me {
    fn start(ns: &Netns, dir: &Path, name: &str, mcp: u16, extra: &[&str]) -> Me {
        let script = test_support::tools::midieditor_tool().join("midieditor");
        // The script resolves --dir with `readlink -f`, which yields nothing
        // (and so the filesystem root) when the parent does not exist yet.
        std::fs::create_dir_all(dir).expect("instance dir");
        let dir = &dir.canonicalize().expect("instance dir");
        let me = Me {
            script,
            ns: ns.name().to_owned(),
            dir: dir.to_owned(),
        };
        let mcp = mcp.to_string();
        let mut args = vec!["start", "--name", name, "--mcp-port", &mcp];
        args.extend_from_slice(extra);
        let out = me.run(&args);
        assert!(out.0, "midieditor start in {}: {}", dir.display(), out.1);
        me
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(&self.script)
            .args(&args[..1])
            .arg("--dir")
            .arg(&self.dir)
            .args(&args[1..]);
        cli::plain(&mut cmd);
        let out = cmd.output().expect("midieditor");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("midieditor.log")).unwrap_or_default()
    }
}

impl Drop for Me {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

/// The tool, or `None` with the reason printed (never a silent pass).
fn tool_or_skip(test: &str) -> Option<()> {
    let script = test_support::tools::midieditor_tool().join("midieditor");
    if script.is_file() {
        Some(())
    } else {
        println!(
            "SKIPPED {test}: the real MidiEditor is not at {} (set {})",
            script.display(),
            test_support::tools::MIDIEDITOR_TOOL_ENV
        );
        None
    }
}

#[test]
fn midieditor_lan_and_wan_joiners_share_one_jam_and_its_chat() {
    if tool_or_skip("midieditor_lan_and_wan_joiners_share_one_jam_and_its_chat").is_none() {
        return;
    }
    let pair = VethPair::new("lanlv3");
    let ip_a = pair.ip_a.to_string();
    let mut host = HostProc::start(&pair.a, &ip_a, &["--advertise-on", IF_A]);
    let code = host.code();
    let rdv = host.wait("the rendezvous URL", |v| v["event"] == "hosting")["urls"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let tmp = std::env::temp_dir().join(format!("lanlv3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let lan = Me::start(&pair.b, &tmp.join("lan"), "LanJoe", 9471, &[]);
    let wan = Me::start(
        &pair.b,
        &tmp.join("wan"),
        "WanAnn",
        9472,
        &["--rendezvous-url", &rdv],
    );

    let t = Instant::now();
    let (ok, out) = lan.run(&["join", "lan", &code, "--timeout", "20"]);
    assert!(ok, "MidiEditor's LAN join failed:\n{out}\n{}", lan.log());
    println!(
        "MidiEditor LAN join (menu, code, datagram, TCP, welcome): {:?}",
        t.elapsed()
    );
    assert!(lan.log().contains("frame type= \"sessionWelcome\""));
    host.wait("LanJoe over TCP", |v| {
        v["event"] == "peerConnected"
            && v["peer"]["displayName"] == "LanJoe"
            && v["peer"]["client"] == "midiEditor"
            && v["peer"]["transport"] == "LAN (TCP)"
    });

    let (ok, out) = wan.run(&["join", "wan", &code, "--timeout", "30"]);
    assert!(ok, "MidiEditor's WAN join failed:\n{out}\n{}", wan.log());
    host.wait("WanAnn over WebRTC", |v| {
        v["event"] == "peerConnected" && v["peer"]["displayName"] == "WanAnn"
    });

    // The host's chat reaches both transports; a third peer's (the Python
    // LAN client's) reaches the WAN joiner through the same hub.
    host.say("chat hello both");
    let (addr, port, _) = discover(&pair, &code);
    let port = port.to_string();
    let py = client(
        &pair.b,
        &[
            "session",
            &addr,
            &port,
            "--name",
            "PyLan",
            "--chat",
            "from the LAN",
            "--seconds",
            "2",
        ],
    );
    assert_eq!(py[0]["frame"]["type"], "sessionWelcome", "{py:?}");
    host.wait("PyLan's chat at the hub", |v| {
        v["event"] == "chat" && v["text"] == "from the LAN"
    });
    for (me, who) in [(&lan, "LAN"), (&wan, "WAN")] {
        assert!(
            wait_until(WITHIN, Duration::from_millis(100), || {
                me.log().matches("frame type= \"chat\"").count() >= 2
            }),
            "MidiEditor {who} joiner did not get both chats:\n{}\nhost: {:#?}",
            me.log(),
            host.lines.lock().unwrap()
        );
    }
    let wan_route = host.wait("WanAnn's route", |v| {
        v["peer"]["displayName"] == "WanAnn" && v["peer"]["transport"] != ""
    });
    assert_eq!(wan_route["peer"]["transport"], "Direct (LAN)");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Another song restarts the jam under the same code (`song new` on the
/// host's stdin): the real MidiEditor is told the session ended (with our
/// `restarting` flag, which it must take as the plain frame), and its "Join
/// LAN Live Session" with the same code gets it back in, song and all.
#[test]
fn a_new_song_restarts_the_jam_and_midieditor_joins_again_with_the_same_code() {
    let test = "a_new_song_restarts_the_jam_and_midieditor_joins_again_with_the_same_code";
    if tool_or_skip(test).is_none() {
        return;
    }
    let pair = VethPair::new("lanlv4");
    let ip_a = pair.ip_a.to_string();
    let tmp = std::env::temp_dir().join(format!("lanlv4-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("state")).unwrap();
    let state = tmp.join("state").display().to_string();
    let mut host = HostProc::start(
        &pair.a,
        &ip_a,
        &["--advertise-on", IF_A, "--new-song", "--state-dir", &state],
    );
    let code = host.code();
    let lan = Me::start(&pair.b, &tmp.join("lan"), "LanJoe", 9473, &[]);
    let (ok, out) = lan.run(&["join", "lan", &code, "--timeout", "20"]);
    assert!(ok, "MidiEditor's LAN join failed:\n{out}\n{}", lan.log());
    host.wait("LanJoe in", |v| {
        v["event"] == "peerConnected" && v["peer"]["displayName"] == "LanJoe"
    });
    let welcomes = lan.log().matches("frame type= \"sessionWelcome\"").count();

    let t = Instant::now();
    host.say("song new");
    host.wait("LanJoe dropped by the restart", |v| {
        v["event"] == "peerLeft"
    });
    assert!(
        wait_until(WITHIN, Duration::from_millis(100), || lan
            .log()
            .contains("sessionEnded")),
        "MidiEditor never saw sessionEnded:\n{}",
        lan.log()
    );
    let hosting: Vec<Value> = host
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v["event"] == "hosting")
        .cloned()
        .collect();
    assert!(
        hosting.iter().all(|v| v["code"] == code.as_str()),
        "the code changed: {hosting:?}"
    );
    let after: String = lan
        .log()
        .lines()
        .skip_while(|l| !l.contains("sessionEnded"))
        .take(8)
        .collect::<Vec<_>>()
        .join("\n");
    println!("MidiEditor after sessionEnded {{restarting: true}}:\n{after}");

    let (ok, out) = lan.run(&["join", "lan", &code, "--timeout", "20"]);
    assert!(
        ok,
        "MidiEditor's second LAN join with the same code failed:\n{out}\n{}",
        lan.log()
    );
    println!(
        "song new -> MidiEditor joined again with the same code: {:?}",
        t.elapsed()
    );
    assert!(lan.log().matches("frame type= \"sessionWelcome\"").count() > welcomes);
    let joe_in = |v: &Value| v["event"] == "peerConnected" && v["peer"]["displayName"] == "LanJoe";
    assert!(
        wait_until(WITHIN, Duration::from_millis(20), || host
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| joe_in(v))
            .count()
            >= 2),
        "the host never had LanJoe back: {:#?}",
        host.lines.lock().unwrap()
    );
    drop(lan);
    let _ = std::fs::remove_dir_all(&tmp);
}
