//! The real `midi-rdv host` binary against joiners whose WebRTC stacks we did
//! not write (aiortc and headless Chromium, `tests/interop/`), all inside a
//! network namespace made for each test: loopback only, no ICE servers.
//!
//! Every test makes its own namespace `rdvt-<pid>-<n>` (lo up, plus
//! 127.0.0.2/8 because aioice never offers 127.0.0.1), so tests run in
//! parallel without seeing each other. Guards kill every process started in
//! it and delete it, also when a test panics.
//!
//! Needs root (`ip netns`), iproute2, and the joiners installed by
//! `bash scripts/setup.sh`. Without them these tests FAIL with a message
//! saying what is missing: CI runs as root, and a silent pass would hide
//! that nothing was tested.
//!
//! The host is always started with `--no-mdns` (resolving `.local`
//! candidates does not work yet in a lo-only namespace) and
//! `--ice-bind 127.0.0.1`, and with its stdin an open pipe nobody writes to
//! (as under a terminal or a supervisor), except in the stdin-at-EOF test.
//!
//! Runtime (2 cores, default 2 test threads): ~55 s for the file, most of it
//! the vanished-joiner test (~32 s: webrtc-rs needs ~30 s to declare ICE
//! failed for a joiner that never answers). The others take 2-12 s each.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");

/// How long the host may take to print its `hosting` line.
const HOST_START: Duration = Duration::from_secs(15);
/// Longest a plain join (process start, offer, answer, ICE, DTLS, SCTP,
/// hello, welcome) may take, Chromium's launch included, on a busy 2-core
/// machine running other tests in parallel.
const JOIN_WITHIN: Duration = Duration::from_secs(25);
/// A joiner that vanished after posting its offer never opens its channel;
/// the host drops such a link 10 s after its answer (`CONNECT_TIMEOUT` in
/// `jam::host`; before, it waited ~30 s for webrtc-rs to fail ICE). 20 s
/// leaves room for a loaded machine, no more.
const VANISHED_PEER_GONE_WITHIN: Duration = Duration::from_secs(20);

// ------------------------------------------------------------ preconditions

fn interop_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    d.canonicalize().unwrap_or(d)
}

fn python() -> PathBuf {
    interop_dir().join(".venv/bin/python")
}

/// Fails (never skips) when the tests cannot run here, saying why.
fn preflight() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned));
        if euid.as_deref() != Some("0") {
            return Err(format!(
                "host_interop tests must run as root (they create network namespaces \
                 with `ip netns`); effective uid is {euid:?}. Run them as root (CI does)."
            ));
        }
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "`ip -V` failed ({}): is iproute2 installed?",
                    o.status
                ))
            }
            Err(e) => return Err(format!("cannot run `ip` (iproute2): {e}; install iproute2")),
        }
        let dir = interop_dir();
        if !python().exists() {
            return Err(format!(
                "{} is missing: run `bash scripts/setup.sh` once",
                python().display()
            ));
        }
        if !dir.join("node_modules/playwright-core").exists() {
            return Err(format!(
                "{}/node_modules/playwright-core is missing: run `bash scripts/setup.sh` once",
                dir.display()
            ));
        }
        match Command::new("node").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => return Err("cannot run `node`: run `bash scripts/setup.sh` once".into()),
        }
        Ok(())
    });
    if let Err(why) = r {
        panic!("host_interop: {why}");
    }
}

#[path = "support/cli.rs"]
mod cli;
use test_support::send_signal;

// ------------------------------------------------------------ the namespace

/// One namespace of our own (`lo` with 127.0.0.2), deleted on drop with
/// every process still running in it.
struct Netns(test_support::Netns);

impl Netns {
    fn new() -> Netns {
        preflight();
        Netns(test_support::Netns::with_loopback_alias("rdvt"))
    }

    /// `program args...` run inside the namespace, with no `MIDI_RDV_*`
    /// variable inherited.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        cli::command(&self.0, program, args)
    }
}

// ------------------------------------------------------------ processes

/// A process in a namespace whose stdout is JSON lines. Killed on drop
/// (TERM first: the Chromium joiner closes its browser on TERM).
struct Proc {
    label: String,
    child: Child,
    /// Each stdout line with when it was read (by the reader thread, so
    /// the time is right even if the test looks later).
    lines: Receiver<(Instant, Value)>,
    /// Every stdout line read so far, parsed (a non-JSON line is kept as a
    /// string), in order.
    seen: Vec<Value>,
    /// When each line of `seen` was read.
    seen_at: Vec<Instant>,
    stderr: Arc<Mutex<String>>,
    exit: Option<i32>,
}

impl Proc {
    fn spawn(label: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot spawn: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send((Instant::now(), v)).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                // Bounded: keep the end, which is what explains a failure.
                if s.len() > 256 * 1024 {
                    let cut = s.len() - 128 * 1024;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                    s.drain(..cut);
                }
            }
        });
        Proc {
            label: label.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            seen_at: Vec::new(),
            stderr,
            exit: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn push(&mut self, (at, v): (Instant, Value)) {
        self.seen.push(v);
        self.seen_at.push(at);
    }

    /// Takes in every line already printed, without waiting.
    fn pump(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.push(v);
        }
    }

    /// Stdout so far and the end of stderr, for failure messages.
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
            "--- {} stdout ({} lines):\n{}\n--- {} stderr (last lines):\n{}\n---",
            self.label,
            out.len(),
            out.join("\n"),
            self.label,
            tail.join("\n")
        )
    }

    /// Index of the first line (of everything seen so far) matching `pred`.
    fn position(&mut self, pred: impl Fn(&Value) -> bool) -> Option<usize> {
        self.pump();
        self.seen.iter().position(pred)
    }

    /// The first line matching `pred`, waiting up to `within` for it; panics
    /// (with this process's output) if none comes.
    fn wait_for(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> usize {
        let deadline = Instant::now() + within;
        if let Some(i) = self.position(&pred) {
            return i;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = pred(&line.1);
                    self.push(line);
                    if hit {
                        return self.seen.len() - 1;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let d = self.diag();
                    panic!("{}: no {what} within {within:?}\n{d}", self.label);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.try_wait().ok().flatten();
                    let d = self.diag();
                    panic!(
                        "{}: ended ({st:?}) before {what} was printed\n{d}",
                        self.label
                    );
                }
            }
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the exit (failing the test if it takes over `within`) and
    /// reads the rest of its stdout. Returns the exit code.
    fn wait_exit(&mut self, within: Duration) -> i32 {
        match self.try_wait_exit(within) {
            Some(c) => c,
            None => {
                let d = self.diag();
                panic!("{}: still running after {within:?}\n{d}", self.label);
            }
        }
    }

    /// The exit code, or `None` if it is still running after `within`.
    fn try_wait_exit(&mut self, within: Duration) -> Option<i32> {
        if let Some(c) = self.exit {
            return Some(c);
        }
        let deadline = Instant::now() + within;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => {
                    while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(50)) {
                        self.push(v);
                    }
                }
                Ok(None) => return None,
                Err(e) => panic!("{}: wait failed: {e}", self.label),
            }
        };
        // The rest of stdout: EOF comes right after the exit.
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.push(v),
                Err(_) => break,
            }
        }
        let code = status.code().unwrap_or(-1);
        self.exit = Some(code);
        Some(code)
    }

    fn signal(&self, sig: &str) {
        send_signal(self.pid(), sig);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("TERM");
            let until = Instant::now() + Duration::from_secs(3);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn event(v: &Value) -> &str {
    v["event"].as_str().unwrap_or("")
}

// ------------------------------------------------------------ the host

/// A running `midi-rdv host --json` and what its first line said.
struct HostProc {
    p: Proc,
    url: String,
    code: String,
}

fn start_host(ns: &Netns, extra: &[&str]) -> HostProc {
    // Kept open (and unused) for the host's life: `host` reads commands on
    // stdin. See `host_keeps_hosting_when_its_stdin_is_at_end_of_file`.
    start_host_with(ns, extra, Stdio::piped())
}

fn start_host_with(ns: &Netns, extra: &[&str], stdin: Stdio) -> HostProc {
    let mut args = vec![
        "host",
        "--ice-bind",
        "127.0.0.1",
        "--no-mdns",
        "--json",
        "--name",
        "Hosty",
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--rendezvous-url") {
        args.extend_from_slice(&["--bind", "127.0.0.1", "--port", "0"]);
    }
    let mut cmd = ns.command(Path::new(BIN), &args);
    cmd.stdin(stdin);
    let mut p = Proc::spawn("host", cmd);
    let i = p.wait_for("hosting line", HOST_START, |v| event(v) == "hosting");
    let h = p.seen[i].clone();
    assert_eq!(i, 0, "hosting must be the first line: {h}");
    assert_eq!(h["renewed"], false, "{h}");
    let code = h["code"].as_str().expect("code").to_owned();
    let url = h["urls"][0].as_str().expect("urls[0]").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{h}");
    assert_eq!(code.len(), 4, "{h}");
    HostProc { p, url, code }
}

/// Index of the first host line `event` for peer `id`.
fn host_peer_line(host: &mut Proc, ev: &str, id: &Value) -> Option<usize> {
    host.position(|v| event(v) == ev && &v["peer"]["id"] == id)
}

/// Waits for a `peerConnected` line carrying this machineId; returns its
/// index and the peer id.
fn wait_connected(host: &mut Proc, machine_id: &str, within: Duration) -> (usize, Value) {
    let i = host.wait_for(&format!("peerConnected of {machine_id}"), within, |v| {
        event(v) == "peerConnected" && v["peer"]["machineId"] == machine_id
    });
    (i, host.seen[i]["peer"]["id"].clone())
}

// ------------------------------------------------------------ the joiners

#[derive(Clone, Copy, Debug)]
enum Stack {
    Aiortc,
    Chromium,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A fresh RFC 4122 v4-shaped machineId, unique in this run.
fn machine_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed) as u64;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        std::process::id(),
        n & 0xffff,
        (t >> 12) & 0xfff,
        t & 0xfff,
        (t >> 24) & 0xffff_ffff_ffff
    )
}

fn joiner(ns: &Netns, stack: Stack, label: &str, url: &str, code: &str, extra: &[&str]) -> Proc {
    let dir = interop_dir();
    let mut args: Vec<&str> = vec!["--url", url, "--code", code];
    args.extend_from_slice(extra);
    let cmd = match stack {
        Stack::Aiortc => {
            let script = dir.join("aiortc_joiner.py");
            let script = script.to_str().expect("utf-8 path").to_owned();
            let mut a = vec![script.as_str()];
            a.extend_from_slice(&args);
            ns.command(&python(), &a)
        }
        Stack::Chromium => {
            let script = dir.join("chromium_joiner.mjs");
            let script = script.to_str().expect("utf-8 path").to_owned();
            let mut a = vec![script.as_str()];
            a.extend_from_slice(&args);
            ns.command(Path::new("node"), &a)
        }
    };
    Proc::spawn(label, cmd)
}

/// The joiner's `done` line (it must have exited).
fn done(j: &mut Proc) -> Value {
    let i = j.position(|v| event(v) == "done");
    match i {
        Some(i) => j.seen[i].clone(),
        None => {
            let d = j.diag();
            panic!("{}: no done line\n{d}", j.label)
        }
    }
}

fn frames(j: &mut Proc) -> Vec<Value> {
    j.pump();
    j.seen
        .iter()
        .filter(|v| event(v) == "frame")
        .cloned()
        .collect()
}

/// Exit code `want`, or a failure showing both sides.
fn assert_exit(j: &mut Proc, host: &mut Proc, within: Duration, want: i32) {
    let code = j.wait_exit(within);
    if code != want {
        let (dj, dh) = (j.diag(), host.diag());
        panic!("{} exited {code}, expected {want}\n{dj}\n{dh}", j.label);
    }
}

/// A joiner that did the whole MidiEditor handshake: exit 0, its first frame
/// was `sessionWelcome` from this host, and its ping got a pong.
fn assert_welcomed_and_ponged(j: &mut Proc, host: &mut Proc) {
    let d = done(j);
    let welcome = frames(j)
        .into_iter()
        .find(|f| f["type"] == "sessionWelcome");
    let ok = d["ok"] == true
        && d["first_type"] == "sessionWelcome"
        && d["pong"] == true
        && welcome.as_ref().is_some_and(|w| {
            w["body"]["mode"] == "edit"
                && w["body"]["presenterMachineId"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
        });
    if !ok {
        let (dj, dh) = (j.diag(), host.diag());
        panic!("{}: not welcomed and ponged: {d}\n{dj}\n{dh}", j.label);
    }
}

fn elapsed(t0: Instant) -> String {
    format!("{:.1} s", t0.elapsed().as_secs_f64())
}

// ------------------------------------------------------------ tests

/// One joiner through our bundled rendezvous: welcomed first, pinged, and
/// listed by the host as joined → connected (name, machineId, MidiEditor)
/// → left once it hung up.
fn joiner_is_welcomed_and_listed(stack: Stack) {
    let t0 = Instant::now();
    let ns = Netns::new();
    let mut host = start_host(&ns, &[]);
    let mid = machine_id();
    let name = format!("Alice {stack:?}");
    let mut j = joiner(
        &ns,
        stack,
        &format!("{stack:?} joiner"),
        &host.url,
        &host.code,
        &[
            "--name",
            &name,
            "--machine-id",
            &mid,
            "--expect-first",
            "sessionWelcome",
            "--exit-on",
            "sessionWelcome",
            "--ping",
            "--stay",
            "15",
        ],
    );
    assert_exit(&mut j, &mut host.p, JOIN_WITHIN, 0);
    assert_welcomed_and_ponged(&mut j, &mut host.p);
    // The joiner prints `done` right after closing its PeerConnection.
    let di = j.position(|v| event(v) == "done").expect("done line");
    let hung_up = j.seen_at[di];

    let (ci, id) = wait_connected(&mut host.p, &mid, Duration::from_secs(5));
    let li = host.p.wait_for(
        "peerLeft after the joiner hung up",
        Duration::from_secs(10),
        |v| event(v) == "peerLeft" && v["peer"]["id"] == id,
    );
    let (a, b) = (host.p.seen_at[li], hung_up);
    let left_ms = if a >= b {
        (a - b).as_secs_f64() * 1e3
    } else {
        -((b - a).as_secs_f64() * 1e3)
    };
    let d = host.p.diag();
    let ji = host_peer_line(&mut host.p, "peerJoined", &id).unwrap_or_else(|| panic!("{d}"));
    assert!(ji < ci && ci < li, "joined, connected, left in order\n{d}");
    let joined = &host.p.seen[ji]["peer"];
    assert_eq!(joined["state"], "connecting", "{d}");
    let c = &host.p.seen[ci]["peer"];
    assert_eq!(c["state"], "connected", "{d}");
    assert_eq!(c["displayName"], name.as_str(), "{d}");
    assert_eq!(c["machineId"], mid.as_str(), "{d}");
    assert_eq!(c["client"], "midiEditor", "{d}");
    let l = &host.p.seen[li];
    assert_eq!(l["peer"]["state"], "left", "{d}");
    assert_eq!(l["peer"]["machineId"], mid.as_str(), "{d}");
    assert_eq!(l["reason"]["code"], "closed", "{d}");
    // Exactly one of each for this peer.
    for ev in ["peerJoined", "peerConnected", "peerLeft"] {
        let n = host
            .p
            .seen
            .iter()
            .filter(|v| event(v) == ev && v["peer"]["id"] == id)
            .count();
        assert_eq!(n, 1, "{ev} for peer {id}\n{d}");
    }
    eprintln!(
        "{stack:?}: welcomed and listed in {}; host's peerLeft {left_ms:+.0} ms from the \
         joiner's done line",
        elapsed(t0)
    );
}

#[test]
fn aiortc_joiner_is_welcomed_first_gets_pong_and_is_listed_joined_connected_left() {
    joiner_is_welcomed_and_listed(Stack::Aiortc);
}

#[test]
fn chromium_joiner_is_welcomed_first_gets_pong_and_is_listed_joined_connected_left() {
    joiner_is_welcomed_and_listed(Stack::Chromium);
}

#[test]
fn joiner_vanishing_after_its_offer_is_dropped_after_the_connect_timeout_and_blocks_nobody() {
    let t0 = Instant::now();
    let ns = Netns::new();
    let mut host = start_host(&ns, &[]);

    let mut ghost = joiner(
        &ns,
        Stack::Aiortc,
        "vanishing joiner",
        &host.url,
        &host.code,
        &["--vanish-after-offer"],
    );
    assert_exit(&mut ghost, &mut host.p, JOIN_WITHIN, 0);
    let vanished_at = Instant::now();
    assert!(
        ghost.position(|v| event(v) == "vanished").is_some(),
        "{}",
        ghost.diag()
    );
    let ji = host.p.wait_for(
        "peerJoined of the vanished joiner",
        Duration::from_secs(10),
        |v| event(v) == "peerJoined",
    );
    let vid = host.p.seen[ji]["peer"]["id"].clone();
    assert_eq!(host.p.seen[ji]["peer"]["state"], "connecting");

    // While it is still half-open, another joiner gets in.
    let mid = machine_id();
    let mut b = joiner(
        &ns,
        Stack::Aiortc,
        "joiner during the vanished one",
        &host.url,
        &host.code,
        &[
            "--machine-id",
            &mid,
            "--expect-first",
            "sessionWelcome",
            "--exit-on",
            "sessionWelcome",
            "--ping",
            "--stay",
            "15",
        ],
    );
    assert_exit(&mut b, &mut host.p, JOIN_WITHIN, 0);
    assert_welcomed_and_ponged(&mut b, &mut host.p);
    let (_, bid) = wait_connected(&mut host.p, &mid, Duration::from_secs(5));
    assert_ne!(bid, vid);

    let li = host.p.wait_for(
        "peerLeft of the vanished joiner",
        VANISHED_PEER_GONE_WITHIN.saturating_sub(vanished_at.elapsed()),
        |v| event(v) == "peerLeft" && v["peer"]["id"] == vid,
    );
    let gone_after = host.p.seen_at[li].saturating_duration_since(vanished_at);
    let d = host.p.diag();
    assert!(
        host_peer_line(&mut host.p, "peerConnected", &vid).is_none(),
        "a joiner that never connected was shown connected\n{d}"
    );
    let left = &host.p.seen[li];
    assert_eq!(left["peer"]["state"], "left", "{d}");
    assert!(left["peer"]["machineId"].is_null(), "{d}");
    assert_eq!(left["reason"]["code"], "helloTimeout", "{d}");

    // And after it is gone, joining still works.
    let mid = machine_id();
    let mut c = joiner(
        &ns,
        Stack::Aiortc,
        "joiner after the vanished one",
        &host.url,
        &host.code,
        &[
            "--machine-id",
            &mid,
            "--expect-first",
            "sessionWelcome",
            "--exit-on",
            "sessionWelcome",
            "--ping",
            "--stay",
            "15",
        ],
    );
    assert_exit(&mut c, &mut host.p, JOIN_WITHIN, 0);
    assert_welcomed_and_ponged(&mut c, &mut host.p);
    wait_connected(&mut host.p, &mid, Duration::from_secs(5));
    eprintln!(
        "vanished joiner: host dropped it {gone_after:?} after it vanished; test took {}",
        elapsed(t0)
    );
}

#[test]
fn garbage_frames_never_drop_a_peer_below_the_limit_and_the_host_keeps_serving() {
    let t0 = Instant::now();
    let ns = Netns::new();
    let mut host = start_host(&ns, &[]);
    // 15 malformed messages each (README: "Garbage kinds"), fewer than the
    // host's 20-in-a-row limit: neither peer may be dropped. The ping goes
    // after the garbage, so the pong proves the channel still works.
    let runs: [(&str, Stack, &[&str]); 3] = [
        (
            "aiortc garbage after welcome",
            Stack::Aiortc,
            &["--send-garbage"],
        ),
        (
            "aiortc garbage before hello",
            Stack::Aiortc,
            &["--send-garbage", "--garbage-first"],
        ),
        (
            "chromium garbage before hello",
            Stack::Chromium,
            &["--send-garbage", "--garbage-first"],
        ),
    ];
    let mut joiners = Vec::new();
    for (label, stack, flags) in runs {
        let mid = machine_id();
        let mut args: Vec<&str> = flags.to_vec();
        args.extend_from_slice(&[
            "--machine-id",
            &mid,
            "--expect-first",
            "sessionWelcome",
            "--ping",
            "--stay",
            "3",
        ]);
        let j = joiner(&ns, stack, label, &host.url, &host.code, &args);
        joiners.push((j, mid));
    }
    for (j, mid) in &mut joiners {
        // Exit 0 after --stay, not 6: the host never closed it.
        assert_exit(j, &mut host.p, JOIN_WITHIN, 0);
        assert_welcomed_and_ponged(j, &mut host.p);
        let sent = j
            .seen
            .iter()
            .filter(|v| event(v) == "sent" && v["what"] == "garbage")
            .count();
        assert_eq!(sent, 15, "{}", j.diag());
        // The garbage went out before the ping, so the pong answers after it.
        let last_garbage = j
            .seen
            .iter()
            .rposition(|v| event(v) == "sent" && v["what"] == "garbage");
        let pong = j.seen.iter().position(|v| event(v) == "pong");
        assert!(last_garbage < pong, "{}", j.diag());
        let (_, id) = wait_connected(&mut host.p, mid, Duration::from_secs(5));
        let li = host.p.wait_for(
            "peerLeft after the joiner hung up",
            Duration::from_secs(10),
            |v| event(v) == "peerLeft" && v["peer"]["id"] == id,
        );
        let d = host.p.diag();
        assert_eq!(
            host.p.seen[li]["reason"]["code"], "closed",
            "{} was dropped by the host (15 bad frames < the 20-in-a-row limit)\n{d}",
            j.label
        );
    }
    // The host still serves a well-behaved joiner.
    let mid = machine_id();
    let mut ok = joiner(
        &ns,
        Stack::Aiortc,
        "joiner after the garbage",
        &host.url,
        &host.code,
        &[
            "--machine-id",
            &mid,
            "--expect-first",
            "sessionWelcome",
            "--exit-on",
            "sessionWelcome",
            "--ping",
            "--stay",
            "15",
        ],
    );
    assert_exit(&mut ok, &mut host.p, JOIN_WITHIN, 0);
    assert_welcomed_and_ponged(&mut ok, &mut host.p);
    wait_connected(&mut host.p, &mid, Duration::from_secs(5));
    assert!(host.p.is_running(), "{}", host.p.diag());
    eprintln!("garbage: test took {}", elapsed(t0));
}

#[test]
fn with_max_peers_2_a_third_joiner_gets_joinrejected_first_and_the_two_stay() {
    let t0 = Instant::now();
    let ns = Netns::new();
    let mut host = start_host(&ns, &["--max-peers", "2"]);
    let stay_args = |mid: &str| -> Vec<String> {
        [
            "--machine-id",
            mid,
            "--expect-first",
            "sessionWelcome",
            "--ping",
            "--stay",
            "10",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let mut two = Vec::new();
    for (k, stack) in [Stack::Aiortc, Stack::Aiortc].into_iter().enumerate() {
        let mid = machine_id();
        let args = stay_args(&mid);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let label = format!("member {}", k + 1);
        two.push((
            joiner(&ns, stack, &label, &host.url, &host.code, &args),
            mid,
        ));
    }
    let mut ids = Vec::new();
    for (_, mid) in &two {
        ids.push(wait_connected(&mut host.p, mid, JOIN_WITHIN).1);
    }

    let mid3 = machine_id();
    let mut third = joiner(
        &ns,
        Stack::Aiortc,
        "third joiner",
        &host.url,
        &host.code,
        &[
            "--machine-id",
            &mid3,
            "--expect-first",
            "joinrejected",
            "--stay",
            "10",
        ],
    );
    // 6: the host closed it before --stay ended.
    assert_exit(&mut third, &mut host.p, JOIN_WITHIN, 6);
    let d = third.diag();
    let fr = frames(&mut third);
    assert_eq!(done(&mut third)["first_type"], "joinrejected", "{d}");
    assert_eq!(fr.len(), 1, "only joinrejected, then the close\n{d}");
    let reason = fr[0]["body"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("full"), "{d}");
    assert!(
        third
            .seen
            .iter()
            .any(|v| event(v) == "closed" && v["by"] == "remote"),
        "{d}"
    );
    let li = host.p.wait_for(
        "peerLeft of the rejected joiner",
        Duration::from_secs(5),
        |v| event(v) == "peerLeft" && v["reason"]["code"] == "full",
    );
    let d = host.p.diag();
    assert_eq!(host.p.seen[li]["reason"]["max"], 2, "{d}");
    assert!(!ids.contains(&host.p.seen[li]["peer"]["id"]), "{d}");

    // The two members were not disturbed: still in the jam now, and each
    // stays its whole --stay (exit 0, not 6) and leaves on its own.
    for id in &ids {
        assert!(
            host_peer_line(&mut host.p, "peerLeft", id).is_none(),
            "member {id} left while the third was refused\n{}",
            host.p.diag()
        );
    }
    for (j, _) in &mut two {
        assert!(j.is_running(), "{}", j.diag());
    }
    for (j, _) in &mut two {
        assert_exit(j, &mut host.p, Duration::from_secs(20), 0);
        assert_welcomed_and_ponged(j, &mut host.p);
    }
    for id in &ids {
        let li = host
            .p
            .wait_for("members' peerLeft", Duration::from_secs(10), |v| {
                event(v) == "peerLeft" && &v["peer"]["id"] == id
            });
        assert_eq!(host.p.seen[li]["reason"]["code"], "closed");
    }
    eprintln!("max peers: test took {}", elapsed(t0));
}

#[test]
fn a_second_joiner_with_the_same_machine_id_is_kept_and_the_ghost_is_closed() {
    let t0 = Instant::now();
    let ns = Netns::new();
    let mut host = start_host(&ns, &[]);
    let mid = machine_id();
    let mut first = joiner(
        &ns,
        Stack::Aiortc,
        "first connection",
        &host.url,
        &host.code,
        &[
            "--machine-id",
            &mid,
            "--name",
            "First",
            "--expect-first",
            "sessionWelcome",
            "--stay",
            "30",
        ],
    );
    let (_, first_id) = wait_connected(&mut host.p, &mid, JOIN_WITHIN);
    let mut second = joiner(
        &ns,
        Stack::Aiortc,
        "second connection",
        &host.url,
        &host.code,
        &[
            "--machine-id",
            &mid,
            "--name",
            "Second",
            "--expect-first",
            "sessionWelcome",
            "--ping",
            "--stay",
            "4",
        ],
    );
    let gi = host.p.wait_for("peerLeft of the ghost", JOIN_WITHIN, |v| {
        event(v) == "peerLeft" && v["peer"]["id"] == first_id
    });
    let d = host.p.diag();
    assert_eq!(host.p.seen[gi]["reason"]["code"], "ghost", "{d}");
    let ci = host
        .p
        .wait_for("peerConnected of the second", Duration::from_secs(5), |v| {
            event(v) == "peerConnected"
                && v["peer"]["machineId"] == mid.as_str()
                && v["peer"]["id"] != first_id
        });
    let second_id = host.p.seen[ci]["peer"]["id"].clone();
    assert_eq!(host.p.seen[ci]["peer"]["displayName"], "Second");

    // The ghost's connection really is closed by the host.
    assert_exit(&mut first, &mut host.p, Duration::from_secs(10), 6);
    assert!(
        first
            .seen
            .iter()
            .any(|v| event(v) == "closed" && v["by"] == "remote"),
        "{}",
        first.diag()
    );
    // The new one stays its whole --stay and is not dropped.
    assert_exit(&mut second, &mut host.p, Duration::from_secs(20), 0);
    assert_welcomed_and_ponged(&mut second, &mut host.p);
    let li = host
        .p
        .wait_for("peerLeft of the second", Duration::from_secs(10), |v| {
            event(v) == "peerLeft" && v["peer"]["id"] == second_id
        });
    assert_eq!(host.p.seen[li]["reason"]["code"], "closed");
    eprintln!("ghost: test took {}", elapsed(t0));
}

#[test]
fn a_host_on_a_remote_rendezvous_that_lost_its_session_registers_a_new_code() {
    let t0 = Instant::now();
    let ns = Netns::new();
    let serve = |port: &str| {
        let mut p = Proc::spawn(
            "serve",
            ns.command(
                Path::new(BIN),
                &["serve", "--bind", "127.0.0.1", "--port", port],
            ),
        );
        let i = p.wait_for("startup line", HOST_START, |v| {
            v.as_str()
                .is_some_and(|s| s.starts_with("midi-rdv listening on "))
        });
        let url = p.seen[i].as_str().unwrap_or("")["midi-rdv listening on ".len()..].to_owned();
        (p, url)
    };
    let (mut rdv, url) = serve("0");
    let port = url.rsplit(':').next().expect("port").to_owned();
    let mut host = start_host(&ns, &["--rendezvous-url", &url]);
    assert_eq!(host.url, url);
    let old = host.code.clone();

    // All sessions gone: the rendezvous restarts on the same port.
    rdv.child.kill().expect("kill serve");
    rdv.wait_exit(Duration::from_secs(5));
    let (_rdv2, url2) = serve(&port);
    assert_eq!(url2, url);
    let restarted = Instant::now();

    let i = host
        .p
        .wait_for("a renewed hosting line", Duration::from_secs(8), |v| {
            event(v) == "hosting" && v["renewed"] == true
        });
    let renewed_after = host.p.seen_at[i].saturating_duration_since(restarted);
    let h = host.p.seen[i].clone();
    let new = h["code"].as_str().unwrap_or("").to_owned();
    assert_ne!(new, old, "{h}");
    assert_eq!(new.len(), 4, "{h}");
    assert_eq!(h["urls"][0], url.as_str(), "{h}");

    let mid = machine_id();
    let mut j = joiner(
        &ns,
        Stack::Aiortc,
        "joiner on the new code",
        &url,
        &new,
        &[
            "--machine-id",
            &mid,
            "--expect-first",
            "sessionWelcome",
            "--exit-on",
            "sessionWelcome",
            "--ping",
            "--stay",
            "15",
        ],
    );
    assert_exit(&mut j, &mut host.p, JOIN_WITHIN, 0);
    assert_welcomed_and_ponged(&mut j, &mut host.p);
    wait_connected(&mut host.p, &mid, Duration::from_secs(5));
    eprintln!(
        "renewal: new code {renewed_after:?} after the rendezvous came back; test took {}",
        elapsed(t0)
    );
}

#[test]
fn sigterm_on_the_host_tells_connected_joiners_and_stops_with_exit_0() {
    let t0 = Instant::now();
    let ns = Netns::new();
    let mut host = start_host(&ns, &[]);
    let mut joiners = Vec::new();
    for stack in [Stack::Aiortc, Stack::Chromium] {
        let mid = machine_id();
        let j = joiner(
            &ns,
            stack,
            &format!("{stack:?} joiner"),
            &host.url,
            &host.code,
            &[
                "--machine-id",
                &mid,
                "--expect-first",
                "sessionWelcome",
                "--ping",
                "--stay",
                "40",
            ],
        );
        joiners.push((j, mid));
    }
    let mut ids = Vec::new();
    for (_, mid) in &joiners {
        ids.push(wait_connected(&mut host.p, mid, JOIN_WITHIN).1);
    }
    for (j, _) in &mut joiners {
        j.wait_for("pong", Duration::from_secs(5), |v| event(v) == "pong");
    }

    let signalled = Instant::now();
    host.p.signal("TERM");

    // Each joiner hears of it: the farewell chat, or at least the close
    // (exit 6: closed by the host before --stay ended).
    for (j, _) in &mut joiners {
        assert_exit(j, &mut host.p, Duration::from_secs(15), 6);
        let told = frames(j)
            .iter()
            .any(|f| f["type"] == "chat" && f["body"]["text"] == "The host ended the jam.");
        let closed = j
            .seen
            .iter()
            .any(|v| event(v) == "closed" && v["by"] == "remote");
        assert!(told || closed, "{}", j.diag());
        eprintln!("sigterm: {} told={told} closed={closed}", j.label);
    }

    // The host lists them gone, prints `stopped` last, and exits 0. Its
    // stdin is an open pipe nobody writes to, as under a terminal or a
    // supervisor that keeps it.
    let si = host.p.wait_for("stopped", Duration::from_secs(10), |v| {
        event(v) == "stopped"
    });
    let printed_after = host.p.seen_at[si].saturating_duration_since(signalled);
    for id in &ids {
        let d = host.p.diag();
        let li = host_peer_line(&mut host.p, "peerLeft", id)
            .unwrap_or_else(|| panic!("no peerLeft for {id} on stop\n{d}"));
        assert!(li < si, "{d}");
    }
    let code = host.p.try_wait_exit(Duration::from_secs(10));
    let d = host.p.diag();
    let Some(code) = code else {
        panic!(
            "the host printed stopped {printed_after:?} after SIGTERM but was still running \
             {:?} after it (stdin: an open pipe)\n{d}",
            signalled.elapsed()
        );
    };
    let exited_after = signalled.elapsed();
    assert_eq!(code, 0, "host exit code\n{d}");
    assert_eq!(si, host.p.seen.len() - 1, "stopped is the last line\n{d}");
    eprintln!(
        "sigterm: host printed stopped {printed_after:?} and exited {exited_after:?} after \
         SIGTERM; test took {}",
        elapsed(t0)
    );
}

#[test]
fn host_keeps_hosting_when_its_stdin_is_at_end_of_file() {
    // As under a service manager, `nohup`, or `midi-rdv host ... </dev/null &`:
    // stdin is at EOF from the start. host_cmd.rs says "End of input (or no
    // terminal) changes nothing": the jam must go on until a signal.
    let t0 = Instant::now();
    let ns = Netns::new();
    let mut host = start_host_with(&ns, &[], Stdio::null());
    // A negative check (the jam must not stop), so a fixed wait.
    thread::sleep(Duration::from_secs(2));
    host.p.pump();
    let d = host.p.diag();
    assert!(
        host.p.is_running() && host.p.position(|v| event(v) == "stopped").is_none(),
        "the host stopped by itself with stdin at EOF\n{d}"
    );
    let mid = machine_id();
    let mut j = joiner(
        &ns,
        Stack::Aiortc,
        "joiner",
        &host.url,
        &host.code,
        &[
            "--machine-id",
            &mid,
            "--expect-first",
            "sessionWelcome",
            "--exit-on",
            "sessionWelcome",
            "--ping",
            "--stay",
            "15",
        ],
    );
    assert_exit(&mut j, &mut host.p, JOIN_WITHIN, 0);
    assert_welcomed_and_ponged(&mut j, &mut host.p);
    wait_connected(&mut host.p, &mid, Duration::from_secs(5));
    host.p.signal("TERM");
    assert_eq!(
        host.p.wait_exit(Duration::from_secs(15)),
        0,
        "{}",
        host.p.diag()
    );
    eprintln!("stdin at EOF: test took {}", elapsed(t0));
}

#[test]
fn with_the_default_cap_of_8_a_ninth_joiner_is_refused_and_the_eight_stay() {
    let t0 = Instant::now();
    let ns = Netns::new();
    // Default --max-peers: 8 on the host and 8 slots on the bundled rendezvous.
    let mut host = start_host(&ns, &[]);
    let mut eight = Vec::new();
    for k in 0..8 {
        let mid = machine_id();
        let label = format!("member {}", k + 1);
        let j = joiner(
            &ns,
            Stack::Aiortc,
            &label,
            &host.url,
            &host.code,
            &[
                "--machine-id",
                &mid,
                "--expect-first",
                "sessionWelcome",
                "--stay",
                "25",
            ],
        );
        eight.push((j, mid));
    }
    let mut ids = Vec::new();
    for (_, mid) in &eight {
        ids.push(wait_connected(&mut host.p, mid, Duration::from_secs(40)).1);
    }

    // The ninth is refused at the rendezvous with the protocol's 503, which
    // MidiEditor shows as "session is full"; it never reaches the host.
    let mut ninth = joiner(
        &ns,
        Stack::Aiortc,
        "ninth joiner",
        &host.url,
        &host.code,
        &["--machine-id", &machine_id(), "--stay", "5"],
    );
    assert_exit(&mut ninth, &mut host.p, JOIN_WITHIN, 3);
    let d = ninth.diag();
    let err = ninth
        .seen
        .iter()
        .find(|v| event(v) == "error")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(err["stage"], "offer", "{d}");
    assert_eq!(err["status"], 503, "{d}");
    assert!(
        err["body"]
            .as_str()
            .unwrap_or("")
            .contains("session is full (8 peers)"),
        "{d}"
    );
    // All eight are still in the jam.
    for id in &ids {
        assert!(
            host_peer_line(&mut host.p, "peerLeft", id).is_none(),
            "member {id} left when the ninth was refused\n{}",
            host.p.diag()
        );
    }
    for (j, _) in &mut eight {
        assert!(j.is_running(), "{}", j.diag());
    }
    eprintln!("ninth joiner: test took {}", elapsed(t0));
}
