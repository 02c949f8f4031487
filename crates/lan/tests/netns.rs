//! LAN tests across two network namespaces joined by a veth pair, which each
//! test creates and removes itself: mDNS never touches the machine's own
//! interfaces or root namespace.
//!
//! The mDNS daemon is a thread of whatever process starts it, and a thread
//! lives in its creator's network namespace, so the Rust side runs in a child
//! process: this test binary re-executed under `ip netns exec` with
//! `LAN_PROBE` set, which makes [`probe_child`] act as a small advertise or
//! browse tool speaking JSON lines. The independent peer is python-zeroconf
//! (`tests/interop/zeroconf_probe.py`). Needs root (for `ip netns`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use test_support::netns::{Netns, VethPair, IF_A, IF_B};
use test_support::tools::interop_dir;
use test_support::wait::wait_until;

use lan::{AdvertiseConfig, Advertiser, BrowseConfig, BrowseEvent, Browser, InterfaceChoice};
use serde_json::{json, Value};

const IP_A: &str = "10.77.0.1";
const IP_B: &str = "10.77.0.2";
/// Marks our JSON lines among libtest's own output in the child.
const TAG: &str = "LANPROBE ";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- namespaces

/// Two fresh namespaces, A (`vA`, 10.77.0.1) and B (`vB`, 10.77.0.2),
/// joined by a veth pair; deleted on drop, also when a test panics.
fn netns_pair() -> VethPair {
    VethPair::new("lan")
}

// ------------------------------------------------------------ child processes

/// A process in a namespace, emitting JSON lines. Killed on drop.
struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Proc {
    fn spawn(what: &str, mut cmd: Command, tagged: bool) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let body = if tagged {
                    // libtest may print "test probe_child ... " on the same line.
                    match line.find(TAG) {
                        Some(i) => line[i + TAG.len()..].to_string(),
                        None => continue,
                    }
                } else {
                    line
                };
                if let Ok(v) = serde_json::from_str::<Value>(&body) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Proc {
            what: what.to_string(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Our own probe: this test binary, re-run inside `ns`.
    fn probe(ns: &Netns, role: &str, cfg: Value) -> Proc {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = ns.command(exe);
        cmd.args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
            .env("LAN_PROBE", role)
            .env("LAN_PROBE_CFG", cfg.to_string());
        Proc::spawn(&format!("{role} probe in {}", ns.name()), cmd, true)
    }

    /// python-zeroconf inside `ns`.
    fn zeroconf(ns: &Netns, args: &[&str]) -> Proc {
        let interop = interop_dir();
        let python = interop.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `bash scripts/setup.sh` (installs zeroconf)",
            python.display()
        );
        let mut cmd = ns.command(python);
        cmd.arg("-u")
            .arg(interop.join("zeroconf_probe.py"))
            .args(args);
        Proc::spawn(
            &format!("zeroconf {} in {}", args[0], ns.name()),
            cmd,
            false,
        )
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .expect("writing to probe");
    }

    /// Closes stdin: the probes then withdraw and exit.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the first line (after those already consumed) matching `pred`.
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {WAIT:?}; saw {:#?}",
                    self.what, self.seen
                ),
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        if !self.wait_exit(Duration::from_secs(3)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ----------------------------------------------------------- the child side

fn emit(t0: Instant, mut v: Value) {
    v["t_ms"] = json!(t0.elapsed().as_millis() as u64);
    println!("{TAG}{v}");
}

fn jam_json(j: &lan::JamInfo) -> Value {
    json!({
        "instance": j.instance, "name": j.name, "port": j.port, "path": j.path,
        "peers": j.peers, "max_peers": j.max_peers, "code": j.code, "version": j.version,
        "proto": j.proto,
        "addresses": j.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    })
}

/// Stdin lines on a channel; `None` at end of input.
fn stdin_lines() -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    rx
}

fn child_advertise(cfg: &Value) {
    let t0 = Instant::now();
    let s = |k: &str| cfg[k].as_str().map(str::to_string);
    let n = |k: &str, i: usize| cfg[k][i].as_u64().unwrap_or(0) as usize;
    let mut adv = Advertiser::start(AdvertiseConfig {
        interfaces: InterfaceChoice::Named(vec![s("iface").expect("iface")]),
        port: cfg["port"].as_u64().unwrap_or(8787) as u16,
        base_path: s("path").unwrap_or_else(|| "/".into()),
        name: s("name").expect("name"),
        code: s("code"),
        peers: (n("peers", 0), n("peers", 1)),
    })
    .expect("advertiser starts");
    emit(
        t0,
        json!({"ev": "started", "instance": adv.instance_name()}),
    );
    let input = stdin_lines();
    while let Ok(Some(line)) = input.recv() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let result = match words.as_slice() {
            ["peers", c, m] => adv.set_peers(c.parse().unwrap_or(0), m.parse().unwrap_or(0)),
            ["code", c] => adv.set_open_code(Some(c.to_string())),
            ["nocode"] => adv.set_open_code(None),
            ["stop"] => break,
            _ => Ok(()),
        };
        emit(t0, json!({"ev": "done", "cmd": line, "ok": result.is_ok()}));
    }
    let stopped = adv.stop();
    emit(t0, json!({"ev": "stopped", "ok": stopped.is_ok()}));
}

fn child_browse(cfg: &Value) {
    let t0 = Instant::now();
    let iface = cfg["iface"].as_str().expect("iface").to_string();
    let browser =
        Browser::start(BrowseConfig::new(InterfaceChoice::Named(vec![iface]))).expect("browser");
    emit(t0, json!({"ev": "browsing"}));
    let input = stdin_lines();
    loop {
        match input.try_recv() {
            Ok(None) | Err(mpsc::TryRecvError::Disconnected) => break,
            Ok(Some(_)) | Err(mpsc::TryRecvError::Empty) => {}
        }
        match browser.recv_timeout(Duration::from_millis(20)) {
            Some(BrowseEvent::Found(j)) => emit(t0, json!({"ev": "found", "jam": jam_json(&j)})),
            Some(BrowseEvent::Lost(i)) => emit(t0, json!({"ev": "lost", "instance": i})),
            None => {}
        }
    }
    let _ = browser.stop();
    emit(t0, json!({"ev": "stopped"}));
}

/// Not a test on its own: the entry point of the child processes above.
/// Does nothing unless `LAN_PROBE` is set.
#[test]
fn probe_child() {
    let Ok(role) = std::env::var("LAN_PROBE") else {
        return;
    };
    // LAN_PROBE_LOG=debug (or mdns_sd=trace, ...) shows the daemon's own log
    // on stderr; the test passes it through from its environment.
    if let Ok(filter) = std::env::var("LAN_PROBE_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let cfg: Value = std::env::var("LAN_PROBE_CFG")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or(Value::Null);
    match role.as_str() {
        "advertise" => child_advertise(&cfg),
        "browse" => child_browse(&cfg),
        other => panic!("unknown LAN_PROBE role {other}"),
    }
}

// ------------------------------------------------------------------- tests

fn txt(v: &Value) -> &serde_json::Map<String, Value> {
    v["txt"].as_object().expect("txt object")
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = txt(v).keys().cloned().collect();
    k.sort();
    k
}

fn advertise(ns: &VethPair, name: &str, code: Option<&str>, peers: (usize, usize)) -> Proc {
    let mut adv = Proc::probe(
        &ns.a,
        "advertise",
        json!({"iface": IF_A, "port": 8787, "name": name, "code": code,
               "peers": [peers.0, peers.1]}),
    );
    adv.expect("started", |v| v["ev"] == "started");
    adv
}

/// (a) python-zeroconf in B finds our advertisement in A, with exactly the
/// protocol's TXT keys, and sees `code` only while the session is open.
#[test]
fn zeroconf_finds_our_advertisement_and_code_only_when_open() {
    let ns = netns_pair();
    let mut py = Proc::zeroconf(&ns.b, &["browse", "--ip", IP_B]);
    py.expect("browsing", |v| v["ev"] == "browsing");
    let started = Instant::now();
    let mut adv = advertise(&ns, "Alice's jam", None, (1, 8));

    let found = py.expect("added", |v| v["ev"] == "added");
    eprintln!(
        "zeroconf found our advertisement in {:?} (browser first)",
        started.elapsed()
    );
    assert_eq!(
        keys(&found),
        ["name", "path", "peers", "proto", "v"],
        "{found}"
    );
    let t = txt(&found);
    assert_eq!(t["v"], "3");
    assert_eq!(t["proto"], "joiner-initiated-multi-peer");
    assert_eq!(t["path"], "/");
    assert_eq!(t["name"], "Alice's jam");
    assert_eq!(t["peers"], "1/8");
    assert_eq!(found["port"], 8787);
    assert_eq!(found["name"], "Alice's jam._midi-rdv._tcp.local.");
    assert!(
        found["addresses"]
            .as_array()
            .unwrap()
            .contains(&json!(IP_A)),
        "{found}"
    );

    let t0 = Instant::now();
    adv.send("code AB12");
    let open = py.expect("TXT with code", |v| {
        v["ev"] == "updated" && v["txt"].get("code").is_some()
    });
    eprintln!("zeroconf saw the open code after {:?}", t0.elapsed());
    assert_eq!(txt(&open)["code"], "AB12");
    assert_eq!(keys(&open), ["code", "name", "path", "peers", "proto", "v"]);

    // python-zeroconf reports no change when a TXT reverts to one still in
    // its cache (the no-code TXT of a minute ago), though it stores it; our
    // own browser does report it (see stopping_the_advertiser_makes_it_vanish).
    // So closing the session goes out together with a peers change, which
    // coalesces into one new TXT.
    let t0 = Instant::now();
    adv.send("nocode");
    adv.send("peers 2 8");
    let closed = py.expect("TXT without code", |v| {
        v["ev"] == "updated" && v["txt"]["peers"] == "2/8"
    });
    eprintln!("zeroconf saw the code withdrawn after {:?}", t0.elapsed());
    assert_eq!(
        keys(&closed),
        ["name", "path", "peers", "proto", "v"],
        "{closed}"
    );
}

/// (a') An advertisement started with an open session carries `code` from
/// the first announcement.
#[test]
fn open_session_advertises_code_from_the_start() {
    let ns = netns_pair();
    let mut adv = advertise(&ns, "Open jam", Some("ZX9Q"), (0, 4));
    // Browser after the advertiser: the already-registered case. This sleep
    // only shapes the scenario (probing + announce take ~1 s); what the test
    // asserts is waited for by `expect` below.
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let mut py = Proc::zeroconf(&ns.b, &["browse", "--ip", IP_B]);
    let found = py.expect("added", |v| v["ev"] == "added");
    eprintln!(
        "zeroconf found an already-announced service in {:?} (including python start-up)",
        started.elapsed()
    );
    assert_eq!(txt(&found)["code"], "ZX9Q");
    assert_eq!(txt(&found)["peers"], "0/4");
    let gone = Instant::now();
    adv.send("stop");
    py.expect("removed", |v| v["ev"] == "removed");
    eprintln!("zeroconf saw our goodbye {:?} after stop", gone.elapsed());
    adv.expect("stopped", |v| v["ev"] == "stopped" && v["ok"] == true);
}

/// (b) Our Browser in B finds a service python-zeroconf registers in A.
#[test]
fn our_browser_finds_a_zeroconf_service() {
    let ns = netns_pair();
    let mut browser = Proc::probe(&ns.b, "browse", json!({"iface": IF_B}));
    browser.expect("browsing", |v| v["ev"] == "browsing");
    let started = Instant::now();
    let mut py = Proc::zeroconf(
        &ns.a,
        &[
            "register",
            "--ip",
            IP_A,
            "--name",
            "Bob",
            "--port",
            "9000",
            "--txt",
            "v=3",
            "proto=joiner-initiated-multi-peer",
            "path=/rdv/",
            "name=Bob the host",
            "peers=2/6",
            "code=QW3E",
        ],
    );
    py.expect("registered", |v| v["ev"] == "registered");
    let found = browser.expect("found", |v| v["ev"] == "found");
    eprintln!(
        "our browser found the zeroconf service in {:?} (incl. python start-up)",
        started.elapsed()
    );
    let jam = &found["jam"];
    assert_eq!(jam["instance"], "Bob._midi-rdv._tcp.local.");
    assert_eq!(jam["name"], "Bob the host");
    assert_eq!(jam["port"], 9000);
    assert_eq!(jam["path"], "/rdv/");
    assert_eq!(
        (jam["peers"].as_u64(), jam["max_peers"].as_u64()),
        (Some(2), Some(6))
    );
    assert_eq!(jam["code"], "QW3E");
    assert_eq!(jam["version"], 3);
    assert_eq!(jam["proto"], "joiner-initiated-multi-peer");
    assert_eq!(jam["addresses"], json!([IP_A]));

    // zeroconf's goodbye on unregister reaches us as Lost.
    let gone = Instant::now();
    py.close_stdin();
    browser.expect("lost", |v| {
        v["ev"] == "lost" && v["instance"] == "Bob._midi-rdv._tcp.local."
    });
    eprintln!(
        "our browser saw the zeroconf goodbye after {:?}",
        gone.elapsed()
    );
}

/// (c) Our Browser in B sees our advertisement in A appear, follows the open
/// code coming and going, and sees it vanish when the advertiser stops.
#[test]
fn stopping_the_advertiser_makes_it_vanish() {
    let ns = netns_pair();
    let mut browser = Proc::probe(&ns.b, "browse", json!({"iface": IF_B}));
    browser.expect("browsing", |v| v["ev"] == "browsing");
    let started = Instant::now();
    let mut adv = advertise(&ns, "Carol", None, (0, 8));
    let found = browser.expect("found", |v| v["ev"] == "found");
    eprintln!(
        "our browser found our advertisement in {:?} (browser first)",
        started.elapsed()
    );
    let jam = &found["jam"];
    assert_eq!(jam["name"], "Carol");
    assert_eq!(jam["code"], Value::Null);
    assert_eq!(
        jam["addresses"]
            .as_array()
            .map(|a| a.contains(&json!(IP_A))),
        Some(true)
    );
    let instance = jam["instance"].clone();

    let t0 = Instant::now();
    adv.send("code AB12");
    browser.expect("found with code", |v| {
        v["ev"] == "found" && v["jam"]["code"] == "AB12"
    });
    eprintln!(
        "our browser saw the open code {:?} after set_open_code",
        t0.elapsed()
    );
    let t0 = Instant::now();
    adv.send("nocode");
    browser.expect("found without code", |v| {
        v["ev"] == "found" && v["jam"]["code"].is_null()
    });
    eprintln!(
        "our browser saw the code withdrawn {:?} after set_open_code(None)",
        t0.elapsed()
    );

    let t0 = Instant::now();
    adv.send("stop");
    adv.expect("stopped", |v| v["ev"] == "stopped" && v["ok"] == true);
    browser.expect("lost", |v| v["ev"] == "lost" && v["instance"] == instance);
    eprintln!(
        "our browser saw the advertisement vanish {:?} after stop",
        t0.elapsed()
    );
}

/// (d) set_peers changes the TXT python-zeroconf sees; our own browser sees
/// it as a new Found for the same instance.
#[test]
fn set_peers_updates_the_txt_seen_elsewhere() {
    let ns = netns_pair();
    let mut py = Proc::zeroconf(&ns.b, &["browse", "--ip", IP_B]);
    py.expect("browsing", |v| v["ev"] == "browsing");
    let mut adv = advertise(&ns, "Dave", None, (0, 8));
    let found = py.expect("added", |v| v["ev"] == "added");
    assert_eq!(txt(&found)["peers"], "0/8");

    let t0 = Instant::now();
    adv.send("peers 3 8");
    adv.expect("peers applied", |v| v["ev"] == "done" && v["ok"] == true);
    py.expect("peers=3/8", |v| {
        v["ev"] == "updated" && v["txt"]["peers"] == "3/8"
    });
    eprintln!("zeroconf saw peers=3/8 {:?} after set_peers", t0.elapsed());

    let mut browser = Proc::probe(&ns.b, "browse", json!({"iface": IF_B}));
    browser.expect("found 3/8", |v| {
        v["ev"] == "found" && v["jam"]["peers"] == 3
    });
    let t0 = Instant::now();
    adv.send("peers 4 8");
    browser.expect("found 4/8", |v| {
        v["ev"] == "found" && v["jam"]["peers"] == 4
    });
    eprintln!(
        "our browser saw peers=4/8 {:?} after set_peers",
        t0.elapsed()
    );
}
