//! `midi-rdv host` advertises its jam on the LAN: an independent mDNS
//! browser (python zeroconf) on a second "machine" sees it with the protocol's
//! TXT keys, follows the peer count as a joiner from that machine connects, and
//! sees it go when the host stops. Two network namespaces joined by a veth
//! pair stand for the two machines; nothing touches the real interface.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (needs root and iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (these tests need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces, A (10.79.0.1 on vA) and B (10.79.0.2 on vB).
struct Machines {
    a: String,
    b: String,
}

impl Machines {
    fn new() -> Machines {
        let id = format!("advt-{}", std::process::id());
        let m = Machines {
            a: format!("{id}-a"),
            b: format!("{id}-b"),
        };
        ip(&["netns", "add", &m.a]);
        ip(&["netns", "add", &m.b]);
        ip(&[
            "-n", &m.a, "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns", &m.b,
        ]);
        ip(&["-n", &m.a, "addr", "add", "10.79.0.1/24", "dev", "vA"]);
        ip(&["-n", &m.b, "addr", "add", "10.79.0.2/24", "dev", "vB"]);
        for (ns, dev) in [(&m.a, "vA"), (&m.b, "vB")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "multicast", "on", "up"]);
        }
        // mdns-sd only uses interfaces that are already up.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let up = |ns: &str, dev: &str| {
                Command::new("ip")
                    .args(["-n", ns, "link", "show", dev])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("state UP"))
                    .unwrap_or(false)
            };
            if up(&m.a, "vA") && up(&m.b, "vB") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child process whose stdout lines (JSON) arrive on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Proc {
    fn spawn(ns: &str, program: &str, args: &[&str]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn under ip netns exec");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line matching `pred`; panics with everything seen if none
    /// comes in time.
    fn wait_for(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("no {what} within {within:?}; seen: {:#?}", self.seen),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal("-TERM");
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_hosted_jam_is_advertised_followed_and_withdrawn_on_the_lan() {
    let interop = workspace().join("tests/interop");
    let python = interop.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh`",
        python.display()
    );
    let m = Machines::new();
    let t0 = Instant::now();
    let probe = interop.join("zeroconf_probe.py");
    let mut browser = Proc::spawn(
        &m.b,
        python.to_str().unwrap(),
        &["-u", probe.to_str().unwrap(), "browse", "--ip", "10.79.0.2"],
    );
    browser.wait_for("browsing", Duration::from_secs(10), |v| {
        v["ev"] == "browsing"
    });

    let mut host = Proc::spawn(
        &m.a,
        env!("CARGO_BIN_EXE_midi-rdv"),
        &[
            "host",
            "--bind",
            "10.79.0.1",
            "--port",
            "0",
            "--ice-bind",
            "10.79.0.1",
            "--no-mdns",
            "--json",
            "--name",
            "Ada's jam",
            "--advertise-on",
            "vA",
            "--open",
        ],
    );
    let hosting = host.wait_for("hosting", Duration::from_secs(10), |v| {
        v["event"] == "hosting"
    });
    let code = hosting["code"].as_str().unwrap().to_owned();
    let url = hosting["urls"][0].as_str().unwrap().to_owned();
    let started = Instant::now();

    // Found on the other machine, with exactly the protocol's TXT keys and
    // the code, since this is an open jam.
    let added = browser.wait_for("the advertisement", Duration::from_secs(10), |v| {
        v["ev"] == "added" && v["txt"]["name"] == "Ada's jam"
    });
    eprintln!("advertisement seen {:?} after hosting", started.elapsed());
    let txt = &added["txt"];
    assert_eq!(txt["v"], "3");
    assert_eq!(txt["proto"], "joiner-initiated-multi-peer");
    assert_eq!(txt["path"], "/");
    assert_eq!(txt["peers"], "0/8");
    assert_eq!(txt["code"], code.as_str());
    assert_eq!(added["addresses"][0], "10.79.0.1");
    assert_eq!(url, format!("http://10.79.0.1:{}", added["port"]));

    // A joiner from the other machine, using what the advertisement says.
    let joiner_script = interop.join("aiortc_joiner.py");
    let mut joiner = Proc::spawn(
        &m.b,
        python.to_str().unwrap(),
        &[
            "-u",
            joiner_script.to_str().unwrap(),
            "--url",
            &url,
            "--code",
            txt["code"].as_str().unwrap(),
            "--expect-first",
            "sessionWelcome",
            "--stay",
            "20",
        ],
    );
    joiner.wait_for("the welcome", Duration::from_secs(20), |v| {
        v["event"] == "frame" && v["type"] == "sessionWelcome"
    });
    host.wait_for("peerConnected", Duration::from_secs(5), |v| {
        v["event"] == "peerConnected"
    });
    // The peer count follows (TXT updates are at most one per 3 s).
    browser.wait_for("peers=1/8", Duration::from_secs(10), |v| {
        v["ev"] == "updated" && v["txt"]["peers"] == "1/8"
    });

    // Stopping the host withdraws the advertisement (goodbye packets).
    host.signal("-TERM");
    host.wait_for("stopped", Duration::from_secs(10), |v| {
        v["event"] == "stopped"
    });
    let stop = Instant::now();
    browser.wait_for("removal", Duration::from_secs(5), |v| v["ev"] == "removed");
    eprintln!(
        "withdrawn {:?} after the host stopped; whole test {:?}",
        stop.elapsed(),
        t0.elapsed()
    );
}
