//! Two "machines" on a LAN: network namespaces A (the host) and B (a joiner
//! or an mDNS browser) joined by a veth pair and nothing else (no ICE
//! servers, never the machine's own interfaces or the root namespace). Two
//! topics use this setup:
//!
//! 1. `midi-rdv host` advertises its jam over mDNS: python zeroconf in B sees
//!    it with the protocol's TXT keys, follows the peer count as a joiner from
//!    B connects, and sees it go when the host stops.
//! 2. Browser joiners' `<uuid>.local` mDNS ICE candidates, end to end: the
//!    real `midi-rdv host` in A, headless Chromium
//!    (`tests/interop/chromium_joiner.mjs --mdns-candidates`) in B.
//!
//! ```text
//!  namespace A (host)                      namespace B (Chromium)
//!  vA 10.77.0.1/24, multicast on           vB 10.77.0.2/24, multicast on
//!  route 224.0.0.0/4 dev vA                default via 10.77.0.1
//! ```
//!
//! Why the two routes:
//! - B's default route: with `--mdns-candidates` the joiner grants no
//!   camera/microphone permission (with it Chromium offers raw IPs even with
//!   `WebRtcHideLocalIpsWithMdns` on), and then Chromium gathers only on the
//!   default route's interface. Without a default route it offers nothing.
//! - A's multicast route: webrtc-rs 0.21.1 opens its mDNS socket with
//!   `MulticastSocket::new()` (bound to 224.0.0.251:5353, group joined on
//!   `INADDR_ANY`), and the kernel picks the interface for that join by route
//!   lookup. With no route to 224.0.0.251 (no default route, no multicast
//!   route) the join fails with `ENODEV` ("No such device"), the host logs
//!   `cannot open the mDNS socket ...` once, and from then on answers with mDNS
//!   disabled: `.local` candidates are dropped and Chromium only connects
//!   through a peer-reflexive candidate. A default route in A works as well
//!   as the multicast route (checked by hand).
//!
//! What is asserted: Chromium's offer carries only a `.local` host candidate;
//! the joiner gets `sessionWelcome` first and a pong; the host's ICE agent
//! logs that its mDNS query for exactly that name was answered with B's
//! address and the candidate's port, and it never had to add a
//! peer-reflexive candidate, so the connected pair's remote candidate is the
//! resolved host candidate. The contrast test runs the host with
//! `--no-mdns`: the candidate is discarded and the join still succeeds via a
//! peer-reflexive candidate.
//!
//! Evidence comes from the host's own log (`rtc_ice=debug`): the host's
//! `route` statistic describes the *local* candidate only.
//!
//! Needs root (`ip netns`), iproute2, node and `tests/interop/node_modules`
//! (`bash scripts/setup.sh`); FAILS, never skips, without them. ~3-5 s per
//! test.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
const HOST_IP: &str = "10.77.0.1";
const JOINER_IP: &str = "10.77.0.2";
/// Host start to its `hosting` line.
const HOST_START: Duration = Duration::from_secs(15);
/// Joiner start to its `done` line (browser launch included, busy machine).
const JOIN_WITHIN: Duration = Duration::from_secs(40);
/// Host log directives: warnings (our own `cannot open the mDNS socket`),
/// plus the ICE agent's debug lines about mDNS and peer-reflexive candidates.
const HOST_LOG: &str = "warn,rtc_ice=debug,webrtc=off,rtc=off,rtc_sctp=off,rtc_dtls=off,rtc_datachannel=off,rtc_mdns=off,rtc_srtp=off";

fn interop_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    d.canonicalize().unwrap_or(d)
}

/// Fails (never skips) when the test cannot run here, saying why.
fn preflight() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned));
    assert_eq!(
        euid.as_deref(),
        Some("0"),
        "these tests must run as root (it creates network namespaces with `ip netns`); \
         effective uid is {euid:?}. Run it as root (CI does)."
    );
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        other => panic!("cannot run `ip -V` ({other:?}): install iproute2"),
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        other => panic!("cannot run `node` ({other:?}): run `bash scripts/setup.sh` once"),
    }
    let pw = interop_dir().join("node_modules/playwright-core");
    assert!(
        pw.exists(),
        "{} is missing: run `bash scripts/setup.sh` once",
        pw.display()
    );
}

#[path = "support/cli.rs"]
mod cli;
use test_support::{send_signal as signal, wait_until, Netns, VethPair};

/// Namespaces A (`vA`, 10.77.0.1) and B (`vB`, 10.77.0.2) joined by a veth
/// pair, plus the routes the module docs explain. Dropping it kills
/// whatever still runs in them and deletes both.
struct TwoNamespaces {
    a: Netns,
    b: Netns,
}

impl TwoNamespaces {
    fn new() -> TwoNamespaces {
        preflight();
        let VethPair { a, b, .. } = VethPair::new("mdns");
        // See the module docs for why each route is needed.
        a.route_multicast("vA");
        b.ip(&["route", "add", "default", "via", HOST_IP]);
        TwoNamespaces { a, b }
    }

    /// `program args...` inside namespace `ns`, no `MIDI_RDV_*` inherited.
    fn command(ns: &Netns, program: &Path, args: &[&str]) -> Command {
        cli::command(ns, program, args)
    }
}

/// A child whose stdout is JSON lines and whose stderr is kept. Killed on
/// drop (TERM, then KILL): the Chromium joiner closes its browser on TERM.
struct Proc {
    label: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(label: &'static str, mut cmd: Command, keep_stdin: bool) -> Proc {
        if keep_stdin {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot spawn: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
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
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < 8 << 20 {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Proc {
            label,
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for the first stdout line matching `pred`.
    fn wait_for(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return Some(v.clone());
        }
        let until = Instant::now() + within;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            let v = self.lines.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if pred(&v) {
                return Some(v);
            }
        }
    }

    fn event(&self, name: &str) -> Option<&Value> {
        self.seen.iter().find(|v| v["event"] == name)
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn diag(&mut self) -> String {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        let out: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        let err = self.stderr();
        let tail: Vec<&str> = err.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {0} stdout:\n{1}\n--- {0} stderr (last 60 lines):\n{2}\n---",
            self.label,
            out.join("\n"),
            tail.join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"quit\n");
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "TERM");
            let until = Instant::now() + Duration::from_secs(3);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What one join showed.
struct Join {
    /// The `.local` name and port of Chromium's offered UDP host candidate.
    name: String,
    port: u16,
    host_log: String,
}

/// Starts the host in A (mDNS resolution on unless `no_mdns`), joins it with
/// Chromium in B offering `.local` candidates, and checks the join itself:
/// the offer's candidates, `sessionWelcome` first, the pong.
fn join_with_mdns_candidates(no_mdns: bool) -> Join {
    let ns = TwoNamespaces::new();
    let mut args = vec![
        "host",
        "--bind",
        HOST_IP,
        "--port",
        "0",
        "--ice-bind",
        HOST_IP,
        "--json",
        "--log-level",
        HOST_LOG,
    ];
    if no_mdns {
        args.push("--no-mdns");
    }
    let mut host = Proc::spawn(
        "host",
        TwoNamespaces::command(&ns.a, Path::new(BIN), &args),
        true,
    );
    let Some(hosting) = host.wait_for(HOST_START, |v| v["event"] == "hosting") else {
        panic!("the host printed no hosting line\n{}", host.diag());
    };
    let code = hosting["code"].as_str().expect("code").to_owned();
    let url = hosting["urls"][0].as_str().expect("url").to_owned();
    assert!(url.contains(HOST_IP), "share URL {url} is not on {HOST_IP}");

    let script = interop_dir().join("chromium_joiner.mjs");
    let script = script.to_str().expect("utf-8 path");
    let node = Path::new("node");
    let mut joiner = Proc::spawn(
        "chromium joiner",
        TwoNamespaces::command(
            &ns.b,
            node,
            &[
                script,
                "--url",
                &url,
                "--code",
                &code,
                "--mdns-candidates",
                "--expect-first",
                "sessionWelcome",
                "--exit-on",
                "sessionWelcome",
                "--ping",
                "--stay",
                "10",
            ],
        ),
        false,
    );
    let done = joiner.wait_for(JOIN_WITHIN, |v| v["event"] == "done");
    let ctx = |h: &mut Proc, j: &mut Proc| format!("{}\n{}", j.diag(), h.diag());
    let Some(done) = done else {
        panic!(
            "the joiner did not finish within {JOIN_WITHIN:?}\n{}",
            ctx(&mut host, &mut joiner)
        );
    };

    // The offer: Chromium hid its address behind a `.local` name.
    let offer = joiner.event("offer").cloned().unwrap_or(Value::Null);
    let candidates: Vec<String> = offer["candidates"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let udp_host: Vec<(String, u16)> = candidates
        .iter()
        .filter_map(|c| {
            // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
            let f: Vec<&str> = c.split_whitespace().collect();
            (f.len() >= 8 && f[2].eq_ignore_ascii_case("udp") && f[7] == "host")
                .then(|| (f[4].to_owned(), f[5].parse().unwrap_or(0)))
        })
        .collect();
    assert!(
        !udp_host.is_empty() && udp_host.iter().all(|(a, _)| a.ends_with(".local")),
        "Chromium's offer should carry only <uuid>.local UDP host candidates, got {candidates:?}\n{}",
        ctx(&mut host, &mut joiner)
    );
    assert!(
        candidates.iter().all(|c| !c.contains(JOINER_IP)),
        "Chromium's offer leaks its raw address: {candidates:?}"
    );
    let (name, port) = udp_host[0].clone();

    // The join: welcome first, then the pong.
    assert_eq!(
        done["code"],
        0,
        "the joiner failed\n{}",
        ctx(&mut host, &mut joiner)
    );
    assert_eq!(done["first_type"], "sessionWelcome");
    assert_eq!(done["pong"], true);

    // The host's log catches up with the joiner's exit: the lines the
    // callers look for name the joiner's mDNS candidate. Not fatal here:
    // the callers' assertions say what is missing.
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        host.stderr().contains(&name)
    });
    let host_log = host.stderr();
    drop(joiner);
    drop(host);
    drop(ns);
    Join {
        name,
        port,
        host_log,
    }
}

/// With resolution on (the default), the host resolves Chromium's `.local`
/// candidate by mDNS and connects to the resolved host candidate; no
/// peer-reflexive candidate is needed.
#[test]
fn chromium_local_candidate_is_resolved_by_mdns() {
    let j = join_with_mdns_candidates(false);
    let log = &j.host_log;
    assert!(
        !log.contains("cannot open the mDNS socket"),
        "the host could not open its mDNS socket, so nothing was resolved:\n{log}"
    );
    assert!(
        !log.contains("mDNS is disabled"),
        "the host dropped the .local candidate as if mDNS were off:\n{log}"
    );
    // rtc-ice: "mDNS query id N answered Candidate udp4 host <name>:<port>
    // with resolved_addr <ip>:<port> is added into remote candidates"
    let resolved = format!(
        "{}:{} with resolved_addr {JOINER_IP}:{}",
        j.name, j.port, j.port
    );
    assert!(
        log.lines()
            .any(|l| l.contains("mDNS query id") && l.contains(&resolved)),
        "no log line shows {} resolved to {JOINER_IP}:{} (looked for {resolved:?}):\n{log}",
        j.name,
        j.port
    );
    assert!(
        !log.contains("adding a new peer-reflexive candidate"),
        "the host still had to add a peer-reflexive candidate, so the pair may not use \
         the resolved candidate:\n{log}"
    );
}

/// Contrast: with `--no-mdns` the `.local` candidate is discarded, and the
/// join still works because Chromium's checks make the host learn its address
/// as a peer-reflexive candidate.
#[test]
fn chromium_local_candidate_without_resolution_connects_peer_reflexive() {
    let j = join_with_mdns_candidates(true);
    let log = &j.host_log;
    assert!(
        log.lines()
            .any(|l| l.contains("mDNS is disabled") && l.contains(&j.name)),
        "expected the host to discard {} (\"remote mDNS candidate added, but mDNS is \
         disabled\"):\n{log}",
        j.name
    );
    assert!(
        !log.contains("mDNS query id"),
        "--no-mdns still resolved a .local candidate:\n{log}"
    );
    let prflx = format!(
        "adding a new peer-reflexive candidate: {JOINER_IP}:{}",
        j.port
    );
    assert!(
        log.contains(&prflx),
        "expected {prflx:?} in the host's log:\n{log}"
    );
}

#[test]
fn the_hosted_jam_is_advertised_followed_and_withdrawn_on_the_lan() {
    let python = interop_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh` once",
        python.display()
    );
    let ns = TwoNamespaces::new();
    let t0 = Instant::now();
    let probe = interop_dir().join("zeroconf_probe.py");
    let probe = probe.to_str().expect("utf-8 path");
    // stdin kept open: the probe browses until its stdin closes.
    let mut browser = Proc::spawn(
        "zeroconf browser",
        TwoNamespaces::command(&ns.b, &python, &["-u", probe, "browse", "--ip", JOINER_IP]),
        true,
    );
    if browser
        .wait_for(HOST_START, |v| v["ev"] == "browsing")
        .is_none()
    {
        panic!("the browser did not start\n{}", browser.diag());
    }

    let args = [
        "host",
        "--bind",
        HOST_IP,
        "--port",
        "0",
        "--ice-bind",
        HOST_IP,
        "--no-mdns",
        "--json",
        "--name",
        "Ada's jam",
        "--advertise-on",
        "vA",
        "--open",
    ];
    let mut host = Proc::spawn(
        "host",
        TwoNamespaces::command(&ns.a, Path::new(BIN), &args),
        true,
    );
    let Some(hosting) = host.wait_for(HOST_START, |v| v["event"] == "hosting") else {
        panic!("the host printed no hosting line\n{}", host.diag());
    };
    let code = hosting["code"].as_str().expect("code").to_owned();
    let url = hosting["urls"][0].as_str().expect("url").to_owned();
    let started = Instant::now();

    // Found on the other machine with exactly the protocol's TXT keys, and
    // the code, since this is an open jam.
    let Some(added) = browser.wait_for(Duration::from_secs(10), |v| {
        v["ev"] == "added" && v["txt"]["name"] == "Ada's jam"
    }) else {
        panic!(
            "the advertisement was not seen\n{}\n{}",
            browser.diag(),
            host.diag()
        );
    };
    eprintln!("advertisement seen {:?} after hosting", started.elapsed());
    let txt = &added["txt"];
    assert_eq!(txt["v"], "3");
    assert_eq!(txt["proto"], "joiner-initiated-multi-peer");
    assert_eq!(txt["path"], "/");
    assert_eq!(txt["peers"], "0/8");
    assert_eq!(txt["code"], code.as_str());
    assert_eq!(txt.as_object().map(|o| o.len()), Some(6), "{txt}");
    assert_eq!(added["addresses"][0], HOST_IP);
    assert_eq!(url, format!("http://{HOST_IP}:{}", added["port"]));

    // A joiner on the other machine, using what the advertisement says.
    let joiner_script = interop_dir().join("aiortc_joiner.py");
    let joiner_script = joiner_script.to_str().expect("utf-8 path");
    let mut joiner = Proc::spawn(
        "aiortc joiner",
        TwoNamespaces::command(
            &ns.b,
            &python,
            &[
                "-u",
                joiner_script,
                "--url",
                &url,
                "--code",
                txt["code"].as_str().expect("code in TXT"),
                "--expect-first",
                "sessionWelcome",
                "--stay",
                "20",
            ],
        ),
        false,
    );
    if joiner
        .wait_for(JOIN_WITHIN, |v| {
            v["event"] == "frame" && v["type"] == "sessionWelcome"
        })
        .is_none()
    {
        panic!(
            "the joiner was not welcomed\n{}\n{}",
            joiner.diag(),
            host.diag()
        );
    }
    assert!(host
        .wait_for(Duration::from_secs(5), |v| v["event"] == "peerConnected")
        .is_some());
    // The peer count follows (TXT changes go out at most every 3 s).
    if browser
        .wait_for(Duration::from_secs(10), |v| {
            v["ev"] == "updated" && v["txt"]["peers"] == "1/8"
        })
        .is_none()
    {
        panic!("peers=1/8 not seen\n{}", browser.diag());
    }

    // Stopping the host withdraws the advertisement (goodbye packets).
    signal(host.child.id(), "TERM");
    assert!(
        host.wait_for(Duration::from_secs(10), |v| v["event"] == "stopped")
            .is_some(),
        "{}",
        host.diag()
    );
    let stopped = Instant::now();
    assert!(
        browser
            .wait_for(Duration::from_secs(5), |v| v["ev"] == "removed")
            .is_some(),
        "{}",
        browser.diag()
    );
    eprintln!(
        "withdrawn {:?} after the host stopped; whole test {:?}",
        stopped.elapsed(),
        t0.elapsed()
    );
}
