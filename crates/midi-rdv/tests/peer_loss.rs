//! A killed joiner is shown lost as soon as its link says so (issue 17):
//! `midi-rdv host` and a real joiner process (`midi-rdv join`) on loopback;
//! the joiner is killed with SIGKILL, so it says nothing, and the host must
//! report the peer gone as `linkLost` within seconds (ICE consent), well
//! before the protocol's 30 s silence timeout that used to decide it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
/// The protocol's silence timeout, which decided before.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process killed on drop, with its stdout lines as JSON values.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Proc {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MIDI_RDV_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("midi-rdv starts");
    let out = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    Proc { child, lines }
}

impl Proc {
    /// The first line for which `ok` holds, within `within`.
    fn wait_for(&self, what: &str, within: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        loop {
            let left = within.saturating_sub(t.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(v) if ok(&v) => return v,
                Ok(_) => {}
                Err(e) => panic!("{what}: no such line within {within:?} ({e:?})"),
            }
        }
    }
}

#[test]
fn a_killed_joiner_process_is_shown_lost_within_seconds() {
    let host = start(&[
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
        "--name",
        "Loss test",
    ]);
    let hosting = host.wait_for("hosting", Duration::from_secs(20), |v| {
        v["event"] == "hosting"
    });
    let url = hosting["urls"][0].as_str().expect("a URL").to_owned();
    let code = hosting["code"].as_str().expect("a code").to_owned();

    let mut joiner = start(&[
        "join",
        "--json",
        "--url",
        &url,
        "--code",
        &code,
        "--name",
        "Doomed",
        "--ice-bind",
        "127.0.0.1",
        "--midi",
        "auto",
    ]);
    let connected = host.wait_for("the joiner connected", Duration::from_secs(20), |v| {
        v["event"] == "peerConnected"
    });
    let id = connected["peer"]["id"].clone();

    joiner.child.kill().expect("SIGKILL the joiner");
    let killed = Instant::now();
    let _ = joiner.child.wait();
    let left = host.wait_for("the peer reported gone", SILENCE_TIMEOUT, |v| {
        v["event"] == "peerLeft" && v["peer"]["id"] == id
    });
    let took = killed.elapsed();
    println!("a killed joiner was reported lost after {took:?}: {left}");
    assert_eq!(left["reason"]["code"], "linkLost", "{left}");
    assert!(
        took < Duration::from_secs(12),
        "reported after {took:?}, not within a few seconds"
    );
}
