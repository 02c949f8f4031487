//! `midi-rdv host --new-song --record` with the real, unmodified MidiEditor
//! AI 2.0.1 as a joiner: an independent live-MIDI peer (the aiortc
//! `tests/interop/midi_joiner.py`) plays four notes, and they appear in
//! MidiEditor's own document (queried through its MCP tools) on the
//! "Live" track the recording created. Prints the delay from the last
//! note's release to MidiEditor showing it. Needs root (network namespace);
//! without the MidiEditor tool it is reported as skipped, with the reason.

#[path = "support/midieditor.rs"]
mod midieditor;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use midieditor::{namespace, tool, Editor, HubHost, TempDir};
use serde_json::{json, Value};
use test_support::tools::interop_dir;

const NOTES: [u8; 4] = [60, 62, 64, 67];

#[test]
fn notes_recorded_from_live_midi_reach_a_midieditor_joiner() {
    let script = match tool() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("SKIPPED notes_recorded_from_live_midi_reach_a_midieditor_joiner: {why}");
            return;
        }
    };
    let python = interop_dir().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing", python.display());
    let ns = namespace("rec");
    let work = TempDir::new("rectest");
    let state = work.0.join("state");
    let port = 8793;
    let host = HubHost::start(&ns, &state, port, &["--new-song", "--record"]);
    let code = host.code();

    let ed = Editor::start(&ns, &script, work.0.join("j1"), 9471, port);
    let out = ed.join(&code);
    assert!(out.contains("file prompt: yes"), "{out}");

    let mut player = ns
        .command(&python)
        .arg(interop_dir().join("midi_joiner.py"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--code",
            &code,
        ])
        .args(["--name", "player", "--machine-id", "player-1"])
        .args(["--midi-stdin", "--stay", "120"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the aiortc joiner");
    let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
    let l2 = lines.clone();
    let stdout = player.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                l2.lock().unwrap().push(v);
            }
        }
    });
    test_support::wait::wait_for("the player welcomed", Duration::from_secs(30), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|v| v["event"] == "frame" && v["type"] == "sessionWelcome")
    });
    // Its `midi` channel is routed right after the welcome.
    std::thread::sleep(Duration::from_millis(500));
    let mut stdin = player.stdin.take().expect("stdin");
    for k in NOTES {
        writeln!(stdin, "90{k:02x}64\nsleep 200\n80{k:02x}00\nsleep 50").unwrap();
    }
    stdin.flush().unwrap();
    let released = Instant::now() + Duration::from_millis(950);

    // A new song has 2 tracks: the recording's "Live" track is track 2.
    let deadline = Instant::now() + Duration::from_secs(20);
    let notes = loop {
        // Until the first recorded frame arrives track 2 does not exist, and
        // the tool says so with an error.
        let args = json!({"trackIndex": 2, "startTick": 0, "endTick": 100_000}).to_string();
        let r: Value = ed
            .run(&["tool", "query_events", &args])
            .ok()
            .and_then(|out| serde_json::from_str(&out).ok())
            .unwrap_or(Value::Null);
        let notes: Vec<(u64, u64)> = r["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["note"].is_u64())
                    .map(|e| {
                        (
                            e["note"].as_u64().unwrap_or(0),
                            e["duration"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if notes.len() >= NOTES.len() {
            break notes;
        }
        assert!(
            Instant::now() < deadline,
            "MidiEditor shows only {r} on track 2\n{}",
            ed.log_tail()
        );
        // Polls MidiEditor's document through MCP.
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "last note released -> in MidiEditor's document: ~{} ms",
        Instant::now()
            .saturating_duration_since(released)
            .as_millis()
    );
    let mut keys: Vec<u64> = notes.iter().map(|n| n.0).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        NOTES.iter().map(|k| u64::from(*k)).collect::<Vec<_>>()
    );
    assert!(notes.iter().all(|n| n.1 > 0), "durations: {notes:?}");
    let info = ed.tool("get_track_info", json!({"trackIndex": 2}));
    eprintln!("MidiEditor's track 2: {info}");
    assert!(info.to_string().contains("\"Live\""), "{info}");
    drop(stdin);
    let _ = player.kill();
    let _ = player.wait();
    drop(ed);
    host.stop();
}
