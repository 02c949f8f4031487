//! `midi-rdv join` and the app's LAN discovery (`app::discover`) against real
//! parts:
//!
//! - a MidiEditor-like host we did not write (`tests/interop/mini_host.py`,
//!   aiortc) on `midi-rdv serve`, in a namespace whose `lo` also has
//!   127.0.0.2 (aioice never offers 127.0.0.1);
//! - two "machines", namespaces A and B joined by a veth pair: `midi-rdv
//!   host --advertise-on vA --open` in A; in B our discovery lists it with
//!   its code, `midi-rdv join --browse-on vB` joins it end to end, and
//!   stopping the host makes it vanish;
//! - python-zeroconf registering a jam in A, listed by our discovery in B;
//! - the exit statuses, on loopback.
//!
//! Our discovery runs in this test process, on a thread that entered
//! namespace B with `setns(2)`: a network namespace is per thread on Linux,
//! and the threads it starts (the mDNS daemon's) inherit it, so nothing of it
//! ever touches the root namespace.
//!
//! Needs root (`ip netns`), iproute2 and `tests/interop/.venv`
//! (`bash scripts/setup.sh`); FAILS, never skips, without them. The exit
//! status test needs neither (loopback in the root namespace, no mDNS).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use app::discover::{Discovery, DiscoveryView, FoundJam, JamKind};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
const IP_A: &str = "10.77.0.1";
const IP_B: &str = "10.77.0.2";
/// Anything that takes a second or two when it works, on a busy machine.
const WITHIN: Duration = Duration::from_secs(20);

fn interop_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    d.canonicalize().unwrap_or(d)
}

fn python() -> PathBuf {
    let p = interop_dir().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/setup.sh` once",
        p.display()
    );
    p
}

#[path = "support/cli.rs"]
mod cli;
use cli::{command, plain};
use test_support::{send_signal, Netns, VethPair};

// ---------------------------------------------------------------- processes

/// A child whose stdout lines are read as JSON (other lines kept as
/// strings). Killed on drop: TERM, then KILL.
struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    exit: Option<i32>,
}

impl Proc {
    fn spawn(label: &str, mut cmd: Command, keep_stdin: bool) -> Proc {
        if keep_stdin {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot spawn: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < 1 << 20 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Proc {
            label: label.to_owned(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
            exit: None,
        }
    }

    fn pump(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
    }

    fn diag(&mut self) -> String {
        self.pump();
        let out: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let tail: Vec<&str> = err.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {0} stdout:\n{1}\n--- {0} stderr (end):\n{2}\n---",
            self.label,
            out.join("\n"),
            tail.join("\n")
        )
    }

    /// The first line matching `pred`, waiting up to `within`; panics with
    /// the process's output if none comes.
    fn wait_for(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.pump();
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let d = self.diag();
                    panic!("{}: no {what} within {within:?}\n{d}", self.label);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.try_wait().ok().flatten();
                    let d = self.diag();
                    panic!("{}: ended ({st:?}) before {what}\n{d}", self.label);
                }
            }
        }
    }

    fn events(&mut self, name: &str) -> Vec<Value> {
        self.pump();
        self.seen
            .iter()
            .filter(|v| v["event"] == name)
            .cloned()
            .collect()
    }

    /// Waits for the exit, reads the rest of stdout, returns the status.
    fn wait_exit(&mut self, within: Duration) -> i32 {
        if let Some(c) = self.exit {
            return c;
        }
        let deadline = Instant::now() + within;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => {
                    while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(50)) {
                        self.seen.push(v);
                    }
                }
                _ => {
                    let d = self.diag();
                    panic!("{}: still running after {within:?}\n{d}", self.label);
                }
            }
        };
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(v);
        }
        let code = status.code().unwrap_or(-1);
        self.exit = Some(code);
        code
    }

    fn close_stdin(&mut self) {
        self.stdin.take();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"quit\n");
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            send_signal(self.child.id(), "TERM");
            let until = Instant::now() + Duration::from_secs(3);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ------------------------------------------------ discovery in namespace B

/// `app::discover::Discovery` running in namespace `ns` on interface
/// `iface`; every new list comes out of `lists`. Stops on drop.
struct RemoteDiscovery {
    lists: Receiver<DiscoveryView>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    last: DiscoveryView,
}

impl RemoteDiscovery {
    fn start(ns: &Netns, iface: &str) -> RemoteDiscovery {
        let (tx, lists) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let iface = iface.to_owned();
        let thread = ns.spawn(move || {
            let d = Discovery::start(lan::InterfaceChoice::Named(vec![iface]))
                .expect("discovery starts");
            let mut last = d.view();
            let _ = tx.send(last.clone());
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(10))
            {
                let v = d.view();
                if v != last {
                    last = v.clone();
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
            d.stop();
        });
        RemoteDiscovery {
            lists,
            stop: Some(stop),
            thread: Some(thread),
            last: DiscoveryView::default(),
        }
    }

    /// Waits for a list matching `pred`; returns it and when it came.
    fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&[FoundJam]) -> bool,
    ) -> (Vec<FoundJam>, Instant) {
        if pred(&self.last.jams) {
            return (self.last.jams.clone(), Instant::now());
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lists.recv_timeout(left) {
                Ok(v) => {
                    let at = Instant::now();
                    self.last = v;
                    if pred(&self.last.jams) {
                        return (self.last.jams.clone(), at);
                    }
                }
                Err(_) => panic!(
                    "discovery: no {what} within {within:?}; last list {:?}",
                    self.last
                ),
            }
        }
    }
}

impl Drop for RemoteDiscovery {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// -------------------------------------------------------------------- tests

/// A MidiEditor-like host we did not write (aiortc), on our `serve`: our
/// joiner is welcomed, says hello the way MidiEditor does, opens no `midi`
/// channel by default (MidiEditor's host would take it for its own channel),
/// and with `--midi offer` the bytes round-trip through the host's echo.
#[test]
fn joins_a_midieditor_like_host_we_did_not_write() {
    let ns = Netns::with_loopback_alias("joinlo");
    let mut serve = Proc::spawn(
        "serve",
        command(
            &ns,
            Path::new(BIN),
            &["serve", "--bind", "127.0.0.1", "--port", "0"],
        ),
        false,
    );
    let listening = serve.wait_for("listening line", WITHIN, |v| {
        v.as_str()
            .is_some_and(|s| s.starts_with("midi-rdv listening on "))
    });
    let url = listening
        .as_str()
        .unwrap()
        .trim_start_matches("midi-rdv listening on ")
        .to_owned();
    let script = interop_dir().join("mini_host.py");
    let mut mini = Proc::spawn(
        "mini_host",
        command(
            &ns,
            &python(),
            &[
                "-u",
                script.to_str().unwrap(),
                "--url",
                &url,
                "--name",
                "Mini host",
                "--heartbeat-interval",
                "1",
            ],
        ),
        false,
    );
    let session = mini.wait_for("session", WITHIN, |v| v["event"] == "session");
    let code = session["code"].as_str().expect("code").to_owned();

    let mut join = Proc::spawn(
        "join",
        command(
            &ns,
            Path::new(BIN),
            &[
                "join",
                "--url",
                &url,
                "--code",
                &code,
                "--name",
                "Bob",
                "--ice-bind",
                "127.0.0.1",
                "--json",
                "--stay",
                "2.5",
            ],
        ),
        false,
    );
    let joined = join.wait_for("joined", WITHIN, |v| v["event"] == "joined");
    assert_eq!(
        joined["hostName"], "Mini host",
        "the name comes from GET /code"
    );
    assert_eq!(join.wait_exit(WITHIN), 0, "{}", join.diag());
    let done = join.events("done").pop().expect("done line");
    assert_eq!(done["ok"], true);
    eprintln!(
        "joined the aiortc host in {} ms (its 1 s offer poll included)",
        done["joinMs"]
    );
    assert!(
        join.events("midiOpen").is_empty(),
        "no midi channel without the host's offer"
    );
    assert!(
        join.events("peers").is_empty(),
        "a MidiEditor host sends no peer list"
    );

    // What the host saw: MidiEditor's hello fields plus our client, on the
    // midieditor channel only, and our heartbeats answered with its own.
    let hello = mini.wait_for("hello", WITHIN, |v| {
        v["event"] == "frame" && v["type"] == "hello"
    });
    let body = &hello["body"];
    assert_eq!(body["displayName"], "Bob");
    assert_eq!(body["currentHead"], "");
    assert_eq!(body["historyTailHashes"], serde_json::json!([]));
    assert!(body["machineId"].as_str().is_some_and(|m| m.len() == 36));
    assert!(body["client"]
        .as_str()
        .is_some_and(|c| c.starts_with("midi-jam/")));
    mini.pump();
    let labels: Vec<&str> = mini
        .seen
        .iter()
        .filter(|v| v["event"] == "channel")
        .filter_map(|v| v["label"].as_str())
        .collect();
    assert_eq!(labels, ["midieditor"]);

    // The midi channel in the offer: the host echoes what we send.
    let mut join = Proc::spawn(
        "join --midi offer",
        command(
            &ns,
            Path::new(BIN),
            &[
                "join",
                "--url",
                &url,
                "--code",
                &code,
                "--ice-bind",
                "127.0.0.1",
                "--json",
                "--stay",
                "2",
                "--midi",
                "offer",
                "--send-midi",
                "903c64",
            ],
        ),
        false,
    );
    let echo = join.wait_for("midi echo", WITHIN, |v| v["event"] == "midi");
    assert_eq!(echo["hex"], "903c64");
    assert_eq!(join.wait_exit(WITHIN), 0, "{}", join.diag());
    mini.wait_for("midi message at the host", WITHIN, |v| {
        v["event"] == "message" && v["label"] == "midi"
    });
}

/// Two machines: the host advertises an open jam on A's LAN; B's discovery
/// lists it with its code; `midi-rdv join --browse-on vB` joins it with
/// nothing typed; stopping the host withdraws it from B's list and ends the
/// joiner's jam.
#[test]
fn an_open_jam_found_on_the_lan_is_joined_and_vanishes_when_the_host_stops() {
    let ns = VethPair::new("join");
    let mut disco = RemoteDiscovery::start(&ns.b, "vB");

    // Nothing there yet: `--browse-on` says so with its own status.
    let mut nothing = Proc::spawn(
        "join (nothing yet)",
        command(
            &ns.b,
            Path::new(BIN),
            &[
                "join",
                "--browse-on",
                "vB",
                "--browse-timeout",
                "0.5",
                "--json",
            ],
        ),
        false,
    );
    assert_eq!(nothing.wait_exit(WITHIN), 8, "{}", nothing.diag());

    let mut host = Proc::spawn(
        "host",
        command(
            &ns.a,
            Path::new(BIN),
            &[
                "host",
                "--bind",
                IP_A,
                "--port",
                "0",
                "--ice-bind",
                IP_A,
                "--no-mdns",
                "--json",
                "--name",
                "Ada's jam",
                "--advertise-on",
                "vA",
                "--open",
            ],
        ),
        true,
    );
    let hosting = host.wait_for("hosting", WITHIN, |v| v["event"] == "hosting");
    let started = Instant::now();
    let code = hosting["code"].as_str().unwrap().to_owned();
    let url = hosting["urls"][0].as_str().unwrap().to_owned();

    let (jams, seen_at) = disco.wait_for("the open jam", WITHIN, |j| {
        j.iter()
            .any(|j| j.name == "Ada's jam" && j.kind == JamKind::MidiRdv)
    });
    eprintln!(
        "listed in B {:?} after the host printed its code",
        seen_at - started
    );
    let jam = jams
        .iter()
        .find(|j| j.name == "Ada's jam" && j.kind == JamKind::MidiRdv)
        .unwrap();
    assert_eq!(jam.url, url);
    assert_eq!(
        jam.url,
        format!("http://{IP_A}:{}", url.rsplit(':').next().unwrap())
    );
    assert!(jam.open);
    assert_eq!(jam.code.as_deref(), Some(code.as_str()));
    assert_eq!((jam.peers, jam.max_peers), (0, 8));
    assert!(jam.compatible && !jam.full);

    let mut join = Proc::spawn(
        "join --browse-on",
        command(
            &ns.b,
            Path::new(BIN),
            &[
                "join",
                "--browse-on",
                "vB",
                "--name",
                "Bob",
                "--ice-bind",
                IP_B,
                "--json",
                "--stay",
                "60",
            ],
        ),
        false,
    );
    let found = join.wait_for("found", WITHIN, |v| v["event"] == "found");
    assert_eq!(found["url"], url.as_str());
    assert_eq!(found["code"], code.as_str());
    let joined = join.wait_for("joined", WITHIN, |v| v["event"] == "joined");
    eprintln!("joined across the veth in {} ms", joined["ms"]);
    let peers = join.wait_for("peers", WITHIN, |v| v["event"] == "peers");
    assert_eq!(peers["peers"][0]["displayName"], "Bob");
    assert_eq!(peers["peers"][0]["you"], true);
    let connected = host.wait_for("peerConnected", WITHIN, |v| v["event"] == "peerConnected");
    assert_eq!(connected["peer"]["client"], "thisApp");
    assert_eq!(connected["peer"]["displayName"], "Bob");
    // The advertisement follows the peer count (TXT changes are spaced 3 s).
    disco.wait_for("peers 1/8", WITHIN, |j| {
        j.iter()
            .any(|j| j.name == "Ada's jam" && j.kind == JamKind::MidiRdv && j.peers == 1)
    });

    // The host stops: withdrawn from B's list, and the joiner's jam ends.
    send_signal(host.child.id(), "TERM");
    host.wait_for("stopped", WITHIN, |v| v["event"] == "stopped");
    let stopped = Instant::now();
    let (_, gone_at) = disco.wait_for("the jam gone", Duration::from_secs(10), |j| j.is_empty());
    eprintln!(
        "withdrawn from B's list {:?} after the host stopped",
        gone_at - stopped
    );
    let left = join.wait_for("left", WITHIN, |v| v["event"] == "left");
    assert_eq!(left["reason"], "The host ended the jam.");
    assert_eq!(
        join.wait_exit(WITHIN),
        7,
        "the jam ended before --stay ran out\n{}",
        join.diag()
    );
}

/// A jam registered by python-zeroconf (an mDNS stack we did not write) in A
/// is listed by our discovery in B, with the URL built from its address,
/// port and path, and leaves the list when it unregisters.
#[test]
fn our_discovery_lists_a_jam_python_zeroconf_registers() {
    let ns = VethPair::new("join");
    let mut disco = RemoteDiscovery::start(&ns.b, "vB");
    let probe = interop_dir().join("zeroconf_probe.py");
    let mut zc = Proc::spawn(
        "zeroconf register",
        command(
            &ns.a,
            &python(),
            &[
                "-u",
                probe.to_str().unwrap(),
                "register",
                "--ip",
                IP_A,
                "--name",
                "Zed's jam",
                "--port",
                "9000",
                "--txt",
                "v=3",
                "proto=joiner-initiated-multi-peer",
                "path=/rdv",
                "name=Zed's jam",
                "peers=2/4",
                "code=ABCD",
            ],
        ),
        true,
    );
    zc.wait_for("registered", WITHIN, |v| v["ev"] == "registered");
    let (jams, _) = disco.wait_for("Zed's jam", WITHIN, |j| {
        j.iter().any(|j| j.name == "Zed's jam")
    });
    let jam = jams.iter().find(|j| j.name == "Zed's jam").unwrap();
    assert_eq!(jam.url, format!("http://{IP_A}:9000/rdv"));
    assert_eq!(jam.addresses, [IP_A]);
    assert_eq!((jam.peers, jam.max_peers), (2, 4));
    assert!(jam.open && jam.compatible && !jam.full);
    assert_eq!(jam.code.as_deref(), Some("ABCD"));
    assert!(jam.id.starts_with("Zed's jam."), "{}", jam.id);

    // Unregistering (goodbye packets) empties the list.
    zc.close_stdin();
    disco.wait_for("the jam gone", WITHIN, |j| j.is_empty());
}

/// The exit statuses a script can rely on, on loopback in the root
/// namespace (no mDNS: the host runs with `--no-advertise --no-mdns`).
#[test]
fn join_exit_statuses_say_what_went_wrong() {
    let run = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        plain(&mut cmd);
        let mut p = Proc::spawn("join", cmd, false);
        let code = p.wait_exit(WITHIN);
        (code, p)
    };
    // Nothing listens: 5.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("127.0.0.1:{port}");
    let (code, mut p) = run(&[
        "join",
        "--url",
        &nowhere,
        "--code",
        "ABCD",
        "--ice-bind",
        "127.0.0.1",
        "--json",
    ]);
    assert_eq!(code, 5, "{}", p.diag());
    let done = p.events("done").pop().expect("done");
    assert!(done["message"]
        .as_str()
        .unwrap()
        .starts_with("Cannot reach the jam at http://127.0.0.1:"));
    // No target, or an unusable one: 2.
    assert_eq!(run(&["join", "--code", "ABCD"]).0, 2);
    assert_eq!(
        run(&["join", "--url", "10.0.0.5:port", "--code", "ABCD"]).0,
        2
    );

    let mut cmd = Command::new(BIN);
    cmd.args([
        "host",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--ice-bind",
        "127.0.0.1",
        "--no-advertise",
        "--no-mdns",
        "--json",
        "--max-peers",
        "1",
    ]);
    plain(&mut cmd);
    let mut host = Proc::spawn("host", cmd, true);
    let hosting = host.wait_for("hosting", WITHIN, |v| v["event"] == "hosting");
    let code = hosting["code"].as_str().unwrap().to_owned();
    let url = hosting["urls"][0].as_str().unwrap().to_owned();
    let wrong = if code == "ZZZZ" { "YYYY" } else { "ZZZZ" };

    // A wrong code: 3, and quickly.
    let t0 = Instant::now();
    let (c, mut p) = run(&[
        "join",
        "--url",
        &url,
        "--code",
        wrong,
        "--ice-bind",
        "127.0.0.1",
        "--json",
    ]);
    assert_eq!(c, 3, "{}", p.diag());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let (c, _) = run(&["join", "--url", &url, "--ice-bind", "127.0.0.1"]);
    assert_eq!(c, 3, "no code at all");

    // One place: the first joins and stays, the second is refused: 4.
    let mut cmd = Command::new(BIN);
    cmd.args([
        "join",
        "--url",
        &url,
        "--code",
        &code.to_lowercase(),
        "--ice-bind",
        "127.0.0.1",
        "--json",
        "--stay",
        "60",
    ]);
    plain(&mut cmd);
    let mut first = Proc::spawn("first joiner", cmd, false);
    first.wait_for("joined", WITHIN, |v| v["event"] == "joined");
    let (c, mut p) = run(&[
        "join",
        "--url",
        &url,
        "--code",
        &code,
        "--ice-bind",
        "127.0.0.1",
        "--json",
    ]);
    assert_eq!(c, 4, "{}", p.diag());
    let failed = p.events("failed").pop().expect("failed");
    assert_eq!(failed["error"]["kind"], "jamFull");

    // The host quits: the first joiner's jam ended early: 7.
    if let Some(mut s) = host.stdin.take() {
        let _ = s.write_all(b"quit\n");
    }
    assert_eq!(first.wait_exit(WITHIN), 7, "{}", first.diag());
    let left = first.events("left").pop().expect("left");
    assert_eq!(left["reason"], "The host ended the jam.");
}
