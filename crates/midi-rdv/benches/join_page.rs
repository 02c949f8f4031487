//! The browser join page, measured: bytes a phone downloads on first load,
//! and a key pressed on the page (a real touch through Chromium's input
//! pipeline) to the Note On at another peer through the host, on loopback.
//!
//! One namespace with only `lo` (127.0.0.1 plus 127.0.0.2 for aiortc):
//! `midi-rdv host` on 127.0.0.1, headless Chromium on the page
//! (`tests/interop/join_page.mjs --loopback`), and the aiortc peer
//! (`tests/interop/midi_joiner.py`). One machine, one clock: "press" is the
//! driver's wall clock just before it dispatches the touch, "arrival" is the
//! aiortc peer's wall clock when the frame is read (its `time_us` plus
//! `latency_us`). Needs root and `bash scripts/setup.sh`.
//!
//! `cargo bench -p midi-rdv --bench join_page` (PRESSES presses, ~20 s).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use test_support::Netns;

#[path = "../tests/support/cli.rs"]
mod cli;
#[path = "../tests/support/page.rs"]
mod page;
use page::{interop_dir, Page, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
const PRESSES: usize = 200;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Whether a reported `midi` frame holds a Note On (velocity > 0) of `key` (hex).
fn note_on(frame: &Value, key: &str) -> bool {
    frame["messages"].as_array().is_some_and(|m| {
        m.iter().any(|x| {
            x.as_str().is_some_and(|s| {
                s.len() == 6 && s.starts_with('9') && &s[2..4] == key && &s[4..] != "00"
            })
        })
    })
}

fn main() {
    test_support::require_root();
    let ns = Netns::with_loopback_alias("jpb");
    let args = [
        "host",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--ice-bind",
        "127.0.0.1",
        "--json",
        "--no-advertise",
        "--name",
        "Bench jam",
    ];
    let mut host = Proc::spawn("host", cli::command(&ns, Path::new(BIN), &args));
    let hosting = host
        .next(Duration::from_secs(15), |v| v["event"] == "hosting")
        .expect("host started");
    let code = hosting["code"].as_str().expect("code").to_owned();
    let url = hosting["urls"][0].as_str().expect("url").to_owned();

    let py = interop_dir().join(".venv/bin/python");
    let script = interop_dir().join("midi_joiner.py");
    let pargs = [
        script.to_str().expect("utf-8"),
        "--url",
        &url,
        "--code",
        &code,
        "--name",
        "peer",
        "--midi-stdin",
        "--stay",
        "300",
    ];
    let mut peer = Proc::spawn("aiortc", cli::command(&ns, &py, &pargs));
    if peer
        .next(Duration::from_secs(40), |v| v["event"] == "open")
        .is_none()
    {
        panic!("the aiortc peer did not join\n{}", peer.diag());
    }

    let mut page = Page::start(&ns, &["--loopback"]);
    let loaded = page.ok(json!({"cmd": "open", "url": format!("{url}/join/{code}")}));
    let bytes = loaded["bytes"].as_u64().unwrap_or(0);
    page.ok(json!({"cmd": "tap", "sel": "#join"}));
    page.wait("jamPage.phase() === 'joined'", Duration::from_secs(40));
    page.wait(
        "jamPage.state.midi && jamPage.state.midi.readyState === 'open'",
        Duration::from_secs(10),
    );

    let mut press_ms = Vec::with_capacity(PRESSES);
    let mut wire_ms = Vec::with_capacity(PRESSES);
    for _ in 0..PRESSES {
        let t = page.ok(json!({"cmd": "touch", "keys": [60]}))["t_us"]
            .as_f64()
            .expect("t_us");
        let Some(f) = peer.next(Duration::from_secs(5), |v| {
            v["event"] == "midi" && note_on(v, "3c")
        }) else {
            panic!("no note at the peer\n{}", peer.diag());
        };
        let sent = f["time_us"].as_f64().expect("time_us");
        let arrived = sent + f["latency_us"].as_f64().expect("latency_us");
        press_ms.push((arrived - t) / 1000.0);
        wire_ms.push((arrived - sent) / 1000.0);
        page.ok(json!({"cmd": "untouch"}));
        if peer
            .next(Duration::from_secs(5), |v| v["event"] == "midi")
            .is_none()
        {
            panic!("no note off at the peer\n{}", peer.diag());
        }
    }
    press_ms.sort_by(f64::total_cmp);
    wire_ms.sort_by(f64::total_cmp);
    println!(
        "join page: first load {bytes} bytes transferred ({:.1} KiB)",
        bytes as f64 / 1024.0
    );
    for (what, v) in [
        ("key press on page -> Note On at peer", &press_ms),
        ("page sends frame -> peer reads it", &wire_ms),
    ] {
        println!(
            "{what}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[v.len() - 1]
        );
    }
    page.ok(json!({"cmd": "quit"}));
}
