//! How long a real MidiEditor AI (a libdatachannel joiner) takes to get into
//! a jam hosted by `midi-rdv host` over WAN Live, from its own log:
//!
//! - offer → answer: MidiEditor polls the rendezvous for our answer on its
//!   own timer, so this is mostly its poll interval, not ours;
//! - answer → connected: ICE + DTLS + SCTP after it applied our answer. The
//!   part the issue-17 fault lived in (a dropped first ClientHello: ~1,014 ms);
//! - answer → `sessionWelcome`, and offer → `sessionWelcome` in all.
//!
//! Run as root (it makes a network namespace with a veth pair inside, as
//! MidiEditor needs): `cargo bench -p midi-rdv --bench midieditor_join`.
//! `MIDIEDITOR_JOINS` sets the number of joins (default 5); `MIDI_RDV_BIN`
//! measures another `midi-rdv` binary (for a before/after comparison).
//! Without the tool (`MIDIEDITOR_TOOL`, default `../shared/tools/midieditor`)
//! it prints why and measures nothing.

#[path = "../tests/support/midieditor.rs"]
mod midieditor;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use midieditor::log_ms_of_day;
use serde_json::Value;
use test_support::tools::midieditor_tool;
use test_support::Netns;

const HOST_IP: &str = "10.231.0.1";
const JOINER_IP: &str = "10.231.0.2";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The join's milestones in MidiEditor's log lines written since `from`.
fn milestones(log: &str) -> Option<[f64; 4]> {
    let find = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split_whitespace().next())
            .and_then(log_ms_of_day)
    };
    Some([
        find("postJoinerOffer OK")?,
        find("remote answer set")?,
        find("pc state → \"Connected\"")?,
        find("frame type= \"sessionWelcome\"")?,
    ])
}

fn p50(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run(ns: &Netns, tool: &Path, args: &[&str]) -> (bool, String) {
    let out = ns
        .command(tool.join("midieditor"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the midieditor script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn main() {
    let tool = midieditor_tool();
    if !tool.join("midieditor").exists() {
        println!(
            "midieditor_join: skipped, no MidiEditor tool at {} (set MIDIEDITOR_TOOL)",
            tool.display()
        );
        return;
    }
    let joins: usize = std::env::var("MIDIEDITOR_JOINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let bin = std::env::var_os("MIDI_RDV_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_midi-rdv")));

    let ns = Netns::new("mejoin");
    ns.ip(&[
        "link", "add", "mjv0", "type", "veth", "peer", "name", "mjv1",
    ]);
    ns.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "mjv0"]);
    ns.ip(&["addr", "add", &format!("{JOINER_IP}/24"), "dev", "mjv1"]);
    ns.ip(&["link", "set", "mjv0", "up"]);
    ns.ip(&["link", "set", "mjv1", "up"]);

    let mut host = ns.command(&bin);
    host.args([
        "host",
        "--json",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--ice-bind",
        HOST_IP,
        "--no-mdns",
        "--no-advertise",
        "--name",
        "Bench host",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut host = Killed(host.spawn().expect("midi-rdv host starts"));
    let mut lines = BufReader::new(host.0.stdout.take().expect("stdout")).lines();
    let hosting: Value = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| serde_json::from_str(&l).ok())
        .expect("the hosting line");
    let code = hosting["code"].as_str().expect("a code").to_owned();
    let url = hosting["urls"][0].as_str().expect("a URL").to_owned();
    // Keep reading, so the host never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let dir = std::env::temp_dir().join(format!("midieditor-join-{}", std::process::id()));
    let dir_s = dir.to_string_lossy().into_owned();
    let (ok, out) = run(
        &ns,
        &tool,
        &[
            "start",
            "--dir",
            &dir_s,
            "--mcp-port",
            "9461",
            "--rendezvous-url",
            &url,
        ],
    );
    assert!(ok, "MidiEditor starts: {out}");

    let log_path = dir.join("midieditor.log");
    let (mut to_answer, mut to_connected, mut to_welcome, mut total) =
        (vec![], vec![], vec![], vec![]);
    let started = Instant::now();
    for k in 0..joins {
        let before = std::fs::read_to_string(&log_path).unwrap_or_default().len();
        let (ok, out) = run(&ns, &tool, &["join", "wan", &code, "--dir", &dir_s]);
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let new = log.get(before..).unwrap_or("");
        match (ok, milestones(new)) {
            (true, Some([offer, answer, connected, welcome])) => {
                println!(
                    "join {}: offer->answer {:.0} ms, answer->connected {:.0} ms, answer->welcome {:.0} ms, offer->welcome {:.0} ms",
                    k + 1,
                    answer - offer,
                    connected - answer,
                    welcome - answer,
                    welcome - offer
                );
                to_answer.push(answer - offer);
                to_connected.push(connected - answer);
                to_welcome.push(welcome - answer);
                total.push(welcome - offer);
            }
            _ => println!("join {}: failed or incomplete log: {}", k + 1, out.trim()),
        }
        let _ = run(&ns, &tool, &["leave", "--dir", &dir_s]);
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = run(&ns, &tool, &["stop", "--dir", &dir_s]);
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);

    if total.is_empty() {
        println!("midieditor_join: no join completed");
        std::process::exit(1);
    }
    println!(
        "midieditor_join ({} of {joins} joins, {:.0} s, host {}): p50 offer->answer {:.0} ms, answer->connected {:.0} ms, answer->sessionWelcome {:.0} ms, offer->sessionWelcome {:.0} ms",
        total.len(),
        started.elapsed().as_secs_f64(),
        bin.display(),
        p50(&mut to_answer),
        p50(&mut to_connected),
        p50(&mut to_welcome),
        p50(&mut total),
    );
}
