//! The real MidiEditor AI and `midi-rdv host --song` in one network
//! namespace of the test's own (a veth pair with both ends inside: libjuice
//! ignores 127.x candidates), driven through the tool's `midieditor` script
//! (its README): start, join over WAN Live, MCP edits and queries, stop.
//! Shared by `tests/session_hub.rs` and the `session_hub`, `held_polls` and
//! `midieditor_join` benches.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::netns::{send_signal, Netns};

pub const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
const HOST_IP: &str = "10.97.0.1";

/// The tool folder, or why the MidiEditor tests cannot run here (they are
/// then reported as skipped with this reason).
pub fn tool() -> Result<PathBuf, String> {
    let dir = test_support::tools::midieditor_tool();
    let script = dir.join("midieditor");
    if script.is_file() {
        Ok(script)
    } else {
        Err(format!(
            "the real MidiEditor is not at {} (set {} to its folder)",
            dir.display(),
            test_support::tools::MIDIEDITOR_TOOL_ENV
        ))
    }
}

/// Milliseconds of the day of a MidiEditor log stamp such as
/// `2026-12-05T07:54:20.004` (the first word of each of its log lines).
/// Only the time of day is used: a measured span never crosses midnight in
/// practice, and callers drop negative spans.
pub fn log_ms_of_day(stamp: &str) -> Option<f64> {
    let time = stamp.split('T').nth(1)?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
}

/// A namespace with the veth pair inside.
pub fn namespace(prefix: &str) -> Netns {
    let ns = Netns::new(prefix);
    ns.ip(&["link", "add", "hv0", "type", "veth", "peer", "name", "hv1"]);
    ns.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "hv0"]);
    ns.ip(&["addr", "add", "10.97.0.2/24", "dev", "hv1"]);
    ns.ip(&["link", "set", "hv0", "up"]);
    ns.ip(&["link", "set", "hv1", "up"]);
    ns
}

/// A running `midi-rdv host` and the JSON lines it printed.
pub struct HubHost {
    child: Child,
    pub lines: Arc<Mutex<Vec<Value>>>,
}

impl HubHost {
    pub fn start(ns: &Netns, state: &Path, port: u16, song: &[&str]) -> HubHost {
        let mut child = ns
            .command(BIN)
            .args(["host", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--ice-bind",
                HOST_IP,
                "--no-advertise",
                "--json",
                "--name",
                "Hub",
            ])
            .arg("--state-dir")
            .arg(state)
            .args(song)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start midi-rdv host");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    l2.lock().unwrap().push(v);
                }
            }
        });
        HubHost { child, lines }
    }

    /// The first line whose `event` is `event`, waiting up to `within`.
    pub fn wait_event(&self, event: &str, within: Duration) -> Option<Value> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(v) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["event"] == event)
            {
                return Some(v.clone());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn code(&self) -> String {
        let v = self
            .wait_event("hosting", Duration::from_secs(15))
            .expect("host printed no code");
        v["code"].as_str().unwrap().to_owned()
    }

    /// SIGTERM, as a user's Ctrl+C or a service manager: the host stops.
    pub fn stop(mut self) {
        send_signal(self.child.id(), "TERM");
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HubHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One MidiEditor instance (its own `--dir`, display and MCP port).
pub struct Editor<'a> {
    ns: &'a Netns,
    script: PathBuf,
    pub dir: PathBuf,
}

impl<'a> Editor<'a> {
    pub fn start(
        ns: &'a Netns,
        script: &Path,
        dir: PathBuf,
        mcp_port: u16,
        rdv_port: u16,
    ) -> Editor<'a> {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let e = Editor {
            ns,
            script: script.to_owned(),
            dir,
        };
        let url = format!("http://127.0.0.1:{rdv_port}");
        e.run(&[
            "start",
            "--name",
            &name,
            "--mcp-port",
            &mcp_port.to_string(),
            "--rendezvous-url",
            &url,
        ])
        .unwrap_or_else(|e| panic!("midieditor start: {e}"));
        e
    }

    /// Runs a subcommand with this instance's `--dir`; its stdout, or the
    /// failure with both outputs.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let o = self
            .ns
            .command(&self.script)
            .arg(args[0])
            .arg("--dir")
            .arg(&self.dir)
            .args(&args[1..])
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(format!(
                "{:?} failed ({}): {}\n{}",
                args,
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    }

    /// Joins over WAN Live, answering the song prompt with Yes.
    /// The GUI is driven by clicks on a loaded 2-core machine; a join whose
    /// menu step misses is tried once more (the script already retries its
    /// menu clicks three times).
    pub fn join(&self, code: &str) -> String {
        match self.run(&["join", "wan", code, "--timeout", "40"]) {
            Ok(out) => out,
            Err(first) => {
                eprintln!("join failed once, trying again: {first}");
                self.run(&["join", "wan", code, "--timeout", "40"])
                    .unwrap_or_else(|e| panic!("join: {first}\nthen: {e}"))
            }
        }
    }

    pub fn tool(&self, name: &str, args: Value) -> Value {
        let out = self
            .run(&["tool", name, &args.to_string()])
            .unwrap_or_else(|e| panic!("tool {name}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("tool {name} output {out:?}: {e}"))
    }

    pub fn insert_note(&self, track: u32, tick: u32, note: u8) {
        let ev = json!([{"type": "note", "tick": tick, "note": note, "velocity": 90, "duration": 24,
                         "channel": null}]);
        let r = self.tool(
            "insert_events",
            json!({"trackIndex": track, "channel": 0, "events": ev}),
        );
        assert_eq!(r["success"], true, "{r}");
    }

    /// Whether the active document has `note` at `tick` on `track`.
    pub fn has_note(&self, track: u32, tick: u32, note: u8) -> bool {
        let r = self.tool(
            "query_events",
            json!({"trackIndex": track, "startTick": tick, "endTick": tick}),
        );
        r["events"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["note"] == note && e["tick"] == tick))
    }

    /// Time until `has_note` holds, polled; `None` after `within`.
    pub fn wait_note(&self, track: u32, tick: u32, note: u8, within: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self.has_note(track, tick, note) {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_tail(&self) -> String {
        self.run(&["logtail", "40"]).unwrap_or_default()
    }
}

impl Drop for Editor<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("{tag}-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
