//! From a host starting to a real MidiEditor LAN Live joiner getting
//! `sessionWelcome`: `midi-rdv host` against MidiEditor's own LAN host as
//! the side-by-side reference. Two namespaces joined by a veth pair (the
//! host in A, the joiner in B); needs root and the real MidiEditor
//! (`MIDIEDITOR_TOOL`), and says so instead of printing numbers without it.
//!
//! The joiner's clicks through menus take the same seconds whoever hosts,
//! so the phases are read from MidiEditor's own log and printed apart:
//!
//! - host start → code: until the code can be typed (ours: process start to
//!   its `hosting` line; MidiEditor's: `midieditor host lan`, its GUI clicks
//!   and a saved file included);
//! - listening → datagram matched: the joiner's wait for an announcement;
//! - matched → `sessionWelcome`: TCP connect, hello, welcome.
//!
//! `cargo bench -p midi-rdv --bench lan_live` (ROUNDS=n, default 3).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::netns::IF_A;
use test_support::{Netns, VethPair};

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");

fn me(ns: &Netns, dir: &Path, args: &[&str]) -> String {
    let script = test_support::tools::midieditor_tool().join("midieditor");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(script)
        .arg(args[0])
        .arg("--dir")
        .arg(dir)
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("midieditor");
    assert!(
        out.status.success() || args[0] == "stop",
        "midieditor {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Milliseconds of the day of a MidiEditor log line's timestamp.
fn stamp(line: &str) -> Option<f64> {
    let t = line.get(11..23)?; // HH:MM:SS.mmm
    let h: f64 = t.get(0..2)?.parse().ok()?;
    let m: f64 = t.get(3..5)?.parse().ok()?;
    let s: f64 = t.get(6..)?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
}

/// (listening → matched, matched → welcome) in ms, from the joiner's log
/// lines after `skip`.
fn phases(log: &Path, skip: usize) -> (f64, f64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().skip(skip).collect();
    let at = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .and_then(|l| stamp(l))
            .unwrap_or_else(|| panic!("no {needle:?} in the joiner's log"))
    };
    let ready = at("listen: ready");
    let matched = at("listen: matched code");
    let welcome = at("frame type= \"sessionWelcome\"");
    (matched - ready, welcome - matched)
}

fn log_len(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn main() {
    if !test_support::tools::midieditor_tool()
        .join("midieditor")
        .is_file()
    {
        println!("lan_live bench SKIPPED: the real MidiEditor is not there (set MIDIEDITOR_TOOL)");
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let pair = VethPair::new("lanbench");
    let tmp = std::env::temp_dir().join(format!("lanbench-{}", std::process::id()));
    let joiner = tmp.join("joiner");
    let ref_host = tmp.join("host");
    std::fs::create_dir_all(&joiner).unwrap();
    std::fs::create_dir_all(&ref_host).unwrap();
    let (joiner, ref_host): (PathBuf, PathBuf) = (
        joiner.canonicalize().unwrap(),
        ref_host.canonicalize().unwrap(),
    );
    let log = joiner.join("midieditor.log");
    me(
        &pair.b,
        &joiner,
        &["start", "--name", "BenchJoiner", "--mcp-port", "9481"],
    );
    me(
        &pair.a,
        &ref_host,
        &["start", "--name", "RefHost", "--mcp-port", "9482"],
    );

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..rounds {
        // Ours: process start to its code, then the join.
        let t = Instant::now();
        let mut host = Command::new("ip")
            .args([
                "netns",
                "exec",
                pair.a.name(),
                BIN,
                "host",
                "--json",
                "--port",
                "0",
            ])
            .args([
                "--no-mdns",
                "--advertise-on",
                IF_A,
                "--ice-bind",
                &pair.ip_a.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("midi-rdv host");
        let mut line = String::new();
        BufReader::new(host.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let to_code = t.elapsed();
        let v: serde_json::Value = serde_json::from_str(&line).expect("hosting line");
        let code = v["code"].as_str().unwrap().to_owned();
        let skip = log_len(&log);
        me(&pair.b, &joiner, &["join", "lan", &code, "--timeout", "20"]);
        let (wait, welcome) = phases(&log, skip);
        ours.push((to_code, wait, welcome));
        me(&pair.b, &joiner, &["leave"]);
        let _ = host.kill();
        let _ = host.wait();

        // MidiEditor's own LAN host.
        let t = Instant::now();
        let code = me(&pair.a, &ref_host, &["host", "lan"]);
        let to_code = t.elapsed();
        let skip = log_len(&log);
        me(
            &pair.b,
            &joiner,
            &["join", "lan", &code, "--timeout", "20", "--answer", "yes"],
        );
        let (wait, welcome) = phases(&log, skip);
        theirs.push((to_code, wait, welcome));
        me(&pair.b, &joiner, &["leave"]);
        me(&pair.a, &ref_host, &["leave", "--as", "host"]);
        std::thread::sleep(Duration::from_millis(500)); // the session ends on both sides
    }
    me(&pair.b, &joiner, &["stop"]);
    me(&pair.a, &ref_host, &["stop"]);
    let _ = std::fs::remove_dir_all(&tmp);

    println!("MidiEditor LAN Live join, {rounds} round(s), ms (host start → code | listening → datagram | datagram → sessionWelcome | host-side total)");
    for (name, rows) in [("midi-rdv host", &ours), ("MidiEditor host", &theirs)] {
        for (to_code, wait, welcome) in rows.iter() {
            let code_ms = to_code.as_secs_f64() * 1000.0;
            println!(
                "  {name:16} {code_ms:8.0} | {wait:8.0} | {welcome:8.0} | {:8.0}",
                code_ms + wait + welcome
            );
        }
    }
}
