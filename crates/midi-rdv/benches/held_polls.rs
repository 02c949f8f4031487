//! Whether holding plain polls (`midi-rdv serve --hold-plain-polls-ms`)
//! makes unmodified clients faster, with the real MidiEditor AI as the
//! **host** of a WAN Live session on `midi-rdv serve`, the hold off (0) and
//! at its default (600 ms), side by side:
//!
//! - `midi-rdv join` joiners (they stay in): the time each takes from start
//!   to `sessionWelcome`, as it prints it. The MidiEditor host finds offers
//!   by polling `joiner-offers` every 1000 ms; held, that poll returns the
//!   moment an offer arrives.
//! - a MidiEditor joiner (MidiEditor on both ends, nothing of ours but the
//!   rendezvous): offer → `sessionWelcome` from the joiner's log. Its answer
//!   poll (every 750 ms) is held as well.
//!
//! The MidiEditor host gathers ICE for its answer until its gathering
//! timeout (the tool sets 3 s; its ICE list points at a STUN server nobody
//! runs, as on an offline LAN), which is most of every join here and the
//! same in both runs.
//!
//! MidiEditor's own "Test connection" is not measured: on these machines its
//! Settings dialog crashes the app (no ALSA sequencer; see docs/rendezvous.md).
//!
//! Run as root (a network namespace with a veth pair inside, as MidiEditor
//! needs): `cargo bench -p midi-rdv --bench held_polls`. `HELD_POLLS_JOINS`
//! sets the MidiEditor joins per run (default 5; ours are at most 3, for
//! the 8-peer cap); `KEEP_TEST_DIRS=1` keeps the instances' logs. Without the tool
//! (`MIDIEDITOR_TOOL`) it prints why and measures nothing.

#[path = "../tests/support/midieditor.rs"]
mod midieditor;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use midieditor::{log_ms_of_day, namespace, tool, Editor, TempDir, BIN};
use test_support::Netns;

const PORT: u16 = 8791;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Offer posted → `sessionWelcome`, from a MidiEditor joiner's new log lines.
fn offer_to_welcome(log: &str) -> Option<f64> {
    let at = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split_whitespace().next())
            .and_then(log_ms_of_day)
    };
    let d = at("frame type= \"sessionWelcome\"")? - at("postJoinerOffer OK")?;
    (d >= 0.0).then_some(d)
}

fn summary(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "no join completed".to_owned();
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!(
        "n {}, p50 {:.0} ms, mean {:.0} ms, min {:.0} ms, max {:.0} ms",
        v.len(),
        v[v.len() / 2],
        mean,
        v[0],
        v[v.len() - 1]
    )
}

/// One run with the hold at `hold_ms`: (our joiners' times, MidiEditor
/// joiner's times), in ms.
fn run(ns: &Netns, script: &std::path::Path, hold_ms: u64, joins: usize) -> (Vec<f64>, Vec<f64>) {
    let mut serve = ns.command(BIN);
    serve
        .args(["serve", "--bind", "127.0.0.1", "--port", &PORT.to_string()])
        .arg(format!("--hold-plain-polls-ms={hold_ms}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut serve = Killed(serve.spawn().expect("midi-rdv serve starts"));
    let mut first = String::new();
    BufReader::new(serve.0.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the listening line");
    assert!(first.contains("listening"), "serve said {first:?}");
    let url = format!("http://127.0.0.1:{PORT}");

    let work = TempDir::new(&format!("held-polls-{hold_ms}"));
    let host = Editor::start(ns, script, work.0.join("host"), 9471, PORT);
    let code = host
        .run(&["host", "wan"])
        .unwrap_or_else(|e| panic!("MidiEditor hosts: {e}"))
        .trim()
        .to_owned();

    // Our joiners, each staying in (a MidiEditor host that loses its last
    // peer may stop hosting; see docs/rendezvous.md). The slots: a
    // MidiEditor joiner that leaves keeps its slot until its offer lapses
    // (the host cannot release it over HTTP), so ours plus MidiEditor's
    // joins stay within the 8-peer cap.
    let mut ours = Vec::new();
    let mut kept = Vec::new();
    for k in 0..joins.min(3) {
        let mut join = ns.command(BIN);
        join.args(["join", "--url", &url, "--code", &code])
            .arg(format!("--name=Bench {k}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = Killed(join.spawn().expect("midi-rdv join starts"));
        let lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                // "Joined NAME in 3374 ms (mode edit)."
                if let Some(rest) = line.strip_prefix("Joined ") {
                    let ms = rest
                        .rsplit_once(" in ")
                        .and_then(|(_, t)| t.split_whitespace().next())
                        .and_then(|t| t.parse::<f64>().ok());
                    let _ = tx.send(ms);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(ms)) => {
                println!("hold {hold_ms} ms: midi-rdv join {}: {ms:.0} ms", k + 1);
                ours.push(ms);
            }
            _ => println!("hold {hold_ms} ms: midi-rdv join {}: no join", k + 1),
        }
        kept.push(child);
        // Joins start at unrelated moments of the host's poll timer.
        std::thread::sleep(Duration::from_millis(300 + 137 * k as u64 % 700));
    }

    // A MidiEditor joiner, in and out, while ours stay in.
    let joiner = Editor::start(ns, script, work.0.join("joiner"), 9472, PORT);
    let log_path = joiner.dir.join("midieditor.log");
    let mut theirs = Vec::new();
    for k in 0..joins {
        let before = std::fs::read_to_string(&log_path).unwrap_or_default().len();
        let joined = joiner.run(&["join", "wan", &code]);
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        match (joined, offer_to_welcome(log.get(before..).unwrap_or(""))) {
            (Ok(_), Some(ms)) => {
                println!("hold {hold_ms} ms: MidiEditor join {}: {ms:.0} ms", k + 1);
                theirs.push(ms);
            }
            (Err(e), _) => println!("hold {hold_ms} ms: MidiEditor join {}: failed: {e}", k + 1),
            (Ok(_), None) => println!(
                "hold {hold_ms} ms: MidiEditor join {}: no offer/welcome in its log",
                k + 1
            ),
        }
        let _ = joiner.run(&["leave"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(joiner);
    drop(kept);
    drop(host);
    drop(serve);
    (ours, theirs)
}

fn main() {
    let script = match tool() {
        Ok(s) => s,
        Err(why) => {
            println!("held_polls: skipped: {why}");
            return;
        }
    };
    let joins: usize = std::env::var("HELD_POLLS_JOINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);

    let ns = namespace("heldpoll");
    let mut rows = Vec::new();
    for hold in [0u64, 600] {
        let (mut ours, mut theirs) = run(&ns, &script, hold, joins);
        rows.push(format!(
            "held_polls: hold {hold} ms, MidiEditor host: midi-rdv join start->welcome {}; MidiEditor join offer->welcome {}",
            summary(&mut ours),
            summary(&mut theirs)
        ));
    }
    for row in rows {
        println!("{row}");
    }
}
