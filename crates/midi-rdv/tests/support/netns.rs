//! Network namespaces for the tests that run peers as separate "machines":
//! created with `ip netns`, deleted on drop with whatever still runs in
//! them, so nothing a test starts ever reaches the real interface.
//! Shared by `host_interop.rs`, `join_lan.rs` and `two_machines.rs` (`#[path]`).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `ip` with these arguments; `Err` with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!(
            "ip {} failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Sends `sig` (TERM, KILL, ...) to one pid with the system's `kill`.
pub fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Piped stdout/stderr, no stdin, and no `MIDI_RDV_*` from the environment.
pub fn plain(cmd: &mut Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MIDI_RDV_") {
            cmd.env_remove(k);
        }
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Namespaces of our own. [`Namespaces::lo`] makes one with `lo` up and
/// 127.0.0.2 added (aiortc never offers 127.0.0.1); [`Namespaces::pair`]
/// makes A (`vA`, 10.77.0.1) and B (`vB`, 10.77.0.2) joined by a veth pair
/// created inside them (its ends never exist in the root namespace).
pub struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn create(names: Vec<String>) -> Namespaces {
        for n in &names {
            let _ = ip(&["netns", "del", n]); // a leftover with the same pid
        }
        let ns = Namespaces { names };
        for n in &ns.names {
            ip(&["netns", "add", n]).unwrap_or_else(|e| panic!("{e}"));
            ip(&["-n", n, "link", "set", "lo", "up"]).unwrap_or_else(|e| panic!("{e}"));
        }
        ns
    }

    pub fn lo(prefix: &str) -> Namespaces {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = Namespaces::create(vec![format!("{prefix}-{}-{n}", std::process::id())]);
        ip(&["-n", ns.a(), "addr", "add", "127.0.0.2/8", "dev", "lo"])
            .unwrap_or_else(|e| panic!("{e}"));
        ns
    }

    pub fn pair(prefix: &str) -> Namespaces {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let ns = Namespaces::create(vec![
            format!("{prefix}A-{pid}-{n}"),
            format!("{prefix}B-{pid}-{n}"),
        ]);
        let (a, b) = (ns.a(), ns.b());
        for step in [
            vec![
                "-n", a, "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns", b,
            ],
            vec!["-n", a, "addr", "add", "10.77.0.1/24", "dev", "vA"],
            vec!["-n", b, "addr", "add", "10.77.0.2/24", "dev", "vB"],
            vec!["-n", a, "link", "set", "vA", "multicast", "on", "up"],
            vec!["-n", b, "link", "set", "vB", "multicast", "on", "up"],
        ] {
            ip(&step).unwrap_or_else(|e| panic!("{e}"));
        }
        // mdns-sd only takes interfaces that are operationally up (and looks
        // again only every few seconds): wait for the carrier.
        let up = |ns: &str, dev: &str| {
            ip(&["-n", ns, "-o", "link", "show", dev]).is_ok_and(|s| s.contains("state UP"))
        };
        let until = Instant::now() + Duration::from_secs(5);
        while !(up(a, "vA") && up(b, "vB")) {
            assert!(Instant::now() < until, "veth pair not up after 5 s");
            thread::sleep(Duration::from_millis(10));
        }
        ns
    }

    pub fn a(&self) -> &str {
        &self.names[0]
    }

    pub fn b(&self) -> &str {
        &self.names[1]
    }

    /// `program args...` inside namespace `ns`, see [`plain`]. `ip netns
    /// exec` execs the program, so the child's pid is the program's.
    pub fn command(ns: &str, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program).args(args);
        plain(&mut cmd);
        cmd
    }

    pub fn pids(&self) -> Vec<u32> {
        self.names
            .iter()
            .flat_map(|n| {
                ip(&["netns", "pids", n])
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Whatever is still in here was started by this test (a browser that
        // outlived its driver, say): TERM, a moment, then KILL.
        for p in self.pids() {
            let cmdline = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
            eprintln!(
                "still running at teardown: pid {p} ({})",
                cmdline.replace('\0', " ").trim()
            );
            send_signal(p, "TERM");
        }
        let until = Instant::now() + Duration::from_secs(2);
        while !self.pids().is_empty() && Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        for p in self.pids() {
            send_signal(p, "KILL");
        }
        for n in &self.names {
            if let Err(e) = ip(&["netns", "del", n]) {
                eprintln!("could not delete namespace: {e}");
            }
        }
    }
}
