//! Drivers shared by `tests/join_page.rs` and `benches/join_page.rs`: a
//! child process speaking JSON lines ([`Proc`]) and the browser join page in
//! headless Chromium through `tests/interop/join_page.mjs` ([`Page`]). Needs
//! `mod cli` (`support/cli.rs`) at the including crate's root.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{send_signal as signal, Netns};

/// Longest wait for one page command (browser launch, a join).
pub const PAGE_WITHIN: Duration = Duration::from_secs(40);

pub fn interop_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    d.canonicalize().unwrap_or(d)
}

/// A child whose stdout is JSON lines. Killed on drop (TERM, then KILL).
pub struct Proc {
    label: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(label: &'static str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot spawn: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < 4 << 20 {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Proc {
            label,
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("{}: stdin: {e}", self.label));
        stdin.flush().expect("flush");
    }

    /// The next line matching `pred` that was not already taken.
    pub fn next(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let until = Instant::now() + within;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            let v = self.lines.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if pred(&v) {
                return Some(v);
            }
        }
    }

    pub fn diag(&mut self) -> String {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        let out: Vec<String> = self
            .seen
            .iter()
            .rev()
            .take(80)
            .map(Value::to_string)
            .collect();
        let out: Vec<String> = out.into_iter().rev().collect();
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let tail: Vec<&str> = err.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {0} stdout (last 80):\n{1}\n--- {0} stderr (last 40):\n{2}\n---",
            self.label,
            out.join("\n"),
            tail.join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), "TERM");
            let until = Instant::now() + Duration::from_secs(3);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The page driver: one command in, one `{"id":..,"ok":..}` line out.
pub struct Page(pub Proc);

impl Page {
    pub fn start(ns: &Netns, extra: &[&str]) -> Page {
        let script = interop_dir().join("join_page.mjs");
        let mut args = vec![script.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        let cmd = crate::cli::command(ns, Path::new("node"), &args);
        Page(Proc::spawn("page", cmd))
    }

    pub fn run(&mut self, cmd: Value, within: Duration) -> Value {
        self.0.send_line(&cmd.to_string());
        match self.0.next(within, |v| v.get("id").is_some()) {
            Some(v) => v,
            None => panic!("page: no answer to {cmd}\n{}", self.0.diag()),
        }
    }

    /// Runs `cmd` and insists it worked.
    pub fn ok(&mut self, cmd: Value) -> Value {
        let r = self.run(cmd.clone(), PAGE_WITHIN);
        if r["ok"] != true {
            panic!("page: {cmd} failed: {r}\n{}", self.0.diag());
        }
        r
    }

    pub fn eval(&mut self, js: &str) -> Value {
        self.ok(json!({"cmd": "eval", "js": js}))["value"].clone()
    }

    /// Polls `js` in the page until it is truthy.
    pub fn wait(&mut self, js: &str, within: Duration) -> Value {
        let ms = within.as_millis() as u64;
        let r = self.run(json!({"cmd": "wait", "js": js, "ms": ms}), within * 2);
        if r["ok"] != true {
            let state = self.run(
                json!({"cmd": "eval", "js": "[jamPage.phase(), jamPage.problem(), document.getElementById('status').textContent]"}),
                PAGE_WITHIN,
            );
            panic!(
                "page: `{js}` never held ({r}); page: {state}\n{}",
                self.0.diag()
            );
        }
        r["value"].clone()
    }
}
