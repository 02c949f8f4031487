//! `midi-rdv host` as a subprocess on loopback only (no advert, ICE on
//! 127.0.0.1, no ICE servers), joined by real webrtc-rs joiners
//! (`jam::joiner`) in the test process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");

/// A running `midi-rdv host --json`, killed on drop; its stdout lines as
/// JSON values.
struct Host {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    fn start(extra: &[&str]) -> Host {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("MIDI_RDV_") {
                cmd.env_remove(k);
            }
        }
        cmd.args([
            "host",
            "--json",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--ice-bind",
            "127.0.0.1",
            "--no-mdns",
            "--no-advertise",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("midi-rdv host starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("not a JSON line: {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Host {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line for which `ok` holds (earlier ones are kept).
    fn wait_for(&mut self, what: &str, within: Duration, ok: impl Fn(&[Value]) -> bool) {
        let t = Instant::now();
        while !ok(&self.seen) {
            let left = within.saturating_sub(t.elapsed());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(v) => self.seen.push(v),
                Err(mpsc::RecvTimeoutError::Timeout) if t.elapsed() < within => {}
                Err(e) => panic!("{what}: {e:?}; lines so far: {:#?}", self.seen),
            }
        }
    }
}

fn count(lines: &[Value], event: &str) -> usize {
    lines.iter().filter(|v| v["event"] == event).count()
}

/// The issue-12 bug through the binary: `--max-peers 10` hosted on a
/// bundled rendezvous that still had its default cap of 8, so the ninth and
/// tenth joiners were refused ("session is full (8 peers)").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_with_max_peers_10_takes_ten_joiners() {
    let mut host = Host::start(&["--max-peers", "10", "--name", "Ten"]);
    host.wait_for("the hosting line", Duration::from_secs(20), |l| {
        !l.is_empty()
    });
    let first = host.seen[0].clone();
    assert_eq!(first["event"], "hosting", "{first}");
    let url = first["urls"][0].as_str().expect("a URL").to_owned();
    let code = first["code"].as_str().expect("a code").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let tasks: Vec<_> = (0..10)
        .map(|k| {
            let mut cfg = jam::joiner::JoinConfig::new(
                url.parse().expect("a rendezvous URL"),
                Some(code.clone()),
                format!("Player {k}"),
            );
            cfg.rtc.bind_ips = vec!["127.0.0.1".parse().unwrap()];
            cfg.midi = jam::joiner::MidiChannel::Off;
            tokio::spawn(async move { jam::joiner::Joiner::join(cfg).await.map(|(j, _)| j) })
        })
        .collect();
    let mut joined = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        match t.await.expect("join task") {
            Ok(j) => joined.push(j),
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert!(refused.is_empty(), "refused: {refused:?}");
    host.wait_for("ten peerConnected lines", Duration::from_secs(20), |l| {
        count(l, "peerConnected") >= 10
    });
    for j in joined {
        j.leave().await;
    }
    host.wait_for("ten peerLeft lines", Duration::from_secs(20), |l| {
        count(l, "peerLeft") >= 10
    });
}
