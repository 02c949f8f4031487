//! Benchmark: an edit on MidiEditor joiner A (an MCP note insert) until it
//! is visible on joiner B (an MCP query), p50 over 20 edits, through
//! `midi-rdv host --new-song` and, side by side, through a real MidiEditor
//! host (WAN Live over `midi-rdv serve`). Both ends are the real MidiEditor
//! AI 2.0.1, whose 1 s sync tick bounds both figures; the rest is the
//! host's apply and relay plus the MCP polling (one query every ~20 ms
//! plus its own run time).
//!
//! Run as root: `MIDIEDITOR_TOOL=/path/to/tools/midieditor cargo bench -p
//! midi-rdv --bench session_hub`. Without the tool it prints why and
//! measures nothing.

#[path = "../tests/support/midieditor.rs"]
mod midieditor;

use std::process::Stdio;
use std::time::Duration;

use midieditor::{namespace, tool, Editor, HubHost, TempDir, BIN};

const EDITS: usize = 20;

fn measure(a: &Editor<'_>, b: &Editor<'_>) -> Vec<f64> {
    let mut ms = Vec::new();
    for i in 0..EDITS {
        let tick = 48 + 24 * i as u32;
        let note = 50 + (i % 30) as u8;
        a.insert_note(1, tick, note);
        let t = b
            .wait_note(1, tick, note, Duration::from_secs(10))
            .expect("edit never arrived");
        ms.push(t.as_secs_f64() * 1000.0);
    }
    ms
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "{what}: edit on A visible on B over {} edits: p50 {:.0} ms, p90 {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms.len(),
        q(0.5),
        q(0.9),
        ms[0],
        ms[ms.len() - 1]
    );
}

fn main() {
    let script = match tool() {
        Ok(s) => s,
        Err(why) => {
            println!("session_hub bench skipped: {why}");
            return;
        }
    };
    let ns = namespace("hubb");
    let work = TempDir::new("hubbench");

    // Through our host.
    {
        let port = 8795;
        let host = HubHost::start(&ns, &work.0.join("state"), port, &["--new-song"]);
        let code = host.code();
        let a = Editor::start(&ns, &script, work.0.join("a"), 9471, port);
        let b = Editor::start(&ns, &script, work.0.join("b"), 9472, port);
        a.join(&code);
        b.join(&code);
        report("midi-rdv host", measure(&a, &b));
        drop((a, b));
        host.stop();
    }

    // Through a MidiEditor host, the same two joiners' way.
    {
        let port = 8796;
        let mut rdv = ns
            .command(BIN)
            .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("midi-rdv serve");
        std::thread::sleep(Duration::from_millis(500));
        let h = Editor::start(&ns, &script, work.0.join("h"), 9473, port);
        let code = h
            .run(&["host", "wan"])
            .unwrap_or_else(|e| panic!("MidiEditor host: {e}"))
            .trim()
            .to_owned();
        let a = Editor::start(&ns, &script, work.0.join("a2"), 9474, port);
        let b = Editor::start(&ns, &script, work.0.join("b2"), 9475, port);
        a.join(&code);
        b.join(&code);
        report("MidiEditor host", measure(&a, &b));
        drop((a, b, h));
        let _ = rdv.kill();
        let _ = rdv.wait();
    }
}
