//! The desktop app's two figures: time from process start to the code on
//! screen, and resident memory of the running app with 8 peers connected.
//!
//! Runs the real app under Xvfb in a namespace of its own (see
//! `tests/common/rig.rs`); 8 aiortc joiners come from the second namespace.
//! `cargo bench -p midi-jam --bench app_startup` (as root). Use a release
//! build of the app for figures worth quoting:
//! `cargo build --release -p midi-jam && MIDI_JAM_BIN=target/release/midi-jam cargo bench ...`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../tests/common/rig.rs"]
mod rig;
use rig::{repo, Rig};

const LAUNCHES: usize = 7;
const PEERS: usize = 8;

fn app_bin() -> String {
    std::env::var("MIDI_JAM_BIN")
        .map(|p| {
            let p = std::path::PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                repo().join(p)
            }
        })
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_midi-jam").into())
        .display()
        .to_string()
}

/// Starts the app directly (no WebDriver) and waits for its `codeShown`
/// line. Returns the child, the line, and the time from spawn to the line.
// The child is returned; the caller kills and reaps it. On the panic paths
// the benchmark ends and the rig's drop kills everything in its namespace.
#[allow(clippy::zombie_processes)]
fn start_app(rig: &Rig) -> (Child, Value, Duration) {
    let t = Instant::now();
    let mut child = Command::new(app_bin())
        .env("DISPLAY", &rig.display)
        .env("XDG_CONFIG_HOME", rig.config_home())
        .env("XDG_DATA_HOME", rig.dir.join("data"))
        // One cache for every launch: after the first (cold) launch, Mesa's
        // shader cache is warm, as on a musician's computer the second time.
        .env("XDG_CACHE_HOME", repo().join("target/bench-cache"))
        .env("HOME", &rig.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the app");
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines
            .next()
            .expect("the app ended before showing a code")
            .expect("read the app's stdout");
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["event"] == "codeShown" {
                return (child, v, t.elapsed());
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The app and every process below it (WebKit's web and network processes).
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces).
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(parent) && !all.contains(&p) {
                all.push(p);
            }
        }
        i += 1;
    }
    all
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("app: {}", app_bin());
    let mut spawn_ms = Vec::new();
    let mut own_ms = Vec::new();
    for i in 0..LAUNCHES {
        let rig = Rig::new(false);
        rig.seed_settings(json!({"advertise": false}));
        let (mut child, line, took) = start_app(&rig);
        let ms = took.as_secs_f64() * 1000.0;
        println!(
            "launch {i}: code {} on screen {ms:.0} ms after spawn (app's own clock {} ms)",
            line["code"], line["ms"]
        );
        // The first launch warms the disk and shader caches; shown, not counted.
        if i > 0 {
            spawn_ms.push(ms);
            own_ms.push(line["ms"].as_f64().unwrap_or(f64::NAN));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    spawn_ms.sort_by(f64::total_cmp);
    own_ms.sort_by(f64::total_cmp);
    println!(
        "start to code shown ({} warm launches): p50 {:.0} ms, max {:.0} ms (app's clock p50 {:.0} ms)",
        spawn_ms.len(),
        pct(&spawn_ms, 0.5),
        spawn_ms.last().unwrap(),
        pct(&own_ms, 0.5)
    );

    // Memory with 8 peers.
    let rig = Rig::new(false);
    rig.seed_settings(json!({"advertise": false}));
    let (mut app, line, _) = start_app(&rig);
    let pid = app.id();
    std::thread::sleep(Duration::from_secs(2));
    let idle_app = rss_kib(pid);
    let idle_all: u64 = tree(pid).into_iter().map(rss_kib).sum();
    let url = line["urls"][0].as_str().unwrap().to_owned();
    let code = line["code"].as_str().unwrap().to_owned();
    let mut joiners: Vec<Child> = (0..PEERS)
        .map(|i| rig.joiner(&url, &code, &format!("peer{i}"), 40.0))
        .collect();
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    for j in &mut joiners {
        let out = j.stdout.take().unwrap();
        let tx = tx.clone();
        // Reads to the end, so the joiner never writes into a closed pipe.
        std::thread::spawn(move || {
            let mut told = false;
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if !told && l.contains("sessionWelcome") {
                    told = true;
                    let _ = tx.send(());
                }
            }
        });
    }
    for _ in 0..PEERS {
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("a joiner was not welcomed (see {})", rig.dir.display()));
    }
    println!(
        "{PEERS} aiortc joiners welcomed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    let busy_app = rss_kib(pid);
    let procs = tree(pid);
    let busy_all: u64 = procs.iter().copied().map(rss_kib).sum();
    println!(
        "resident memory: idle {:.1} MiB (app process) / {:.1} MiB (with WebKit's processes); with {PEERS} peers {:.1} MiB / {:.1} MiB ({} processes)",
        idle_app as f64 / 1024.0,
        idle_all as f64 / 1024.0,
        busy_app as f64 / 1024.0,
        busy_all as f64 / 1024.0,
        procs.len()
    );
    for mut j in joiners {
        let _ = j.kill();
        let _ = j.wait();
    }
    let _ = app.kill();
    let _ = app.wait();
}
