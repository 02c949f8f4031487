//! `midi-rdv check`, the real binary as a subprocess, against a rendezvous
//! this test runs in process on 127.0.0.1 (or a port where nothing listens).
//! The test peers bind 127.0.0.1 only (`--ice-bind`); nothing leaves loopback.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdv::{Config, Rendezvous, RunningServer};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");

/// Runs `midi-rdv check ARGS` with no `MIDI_RDV_*` variable inherited.
async fn check(args: &[&str]) -> (Output, Duration) {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MIDI_RDV_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("check")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The check runs for well under a second here; the bound keeps a hung
    // child from hanging the test suite.
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = cmd.spawn().expect("midi-rdv starts");
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("midi-rdv check did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = child.wait_with_output().expect("output");
        (output, started.elapsed())
    })
    .await
    .unwrap()
}

async fn bundled() -> RunningServer {
    RunningServer::start(
        (Ipv4Addr::LOCALHOST, 0).into(),
        Rendezvous::new(Config::default()),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_a_running_rendezvous_is_good_and_exits_0() {
    let server = bundled().await;
    let url = server.url();
    let (out, _) = check(&[
        "--rendezvous-url",
        &url,
        "--ice-bind",
        "127.0.0.1",
        "--json",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(report["verdict"], "good");
    assert_eq!(report["rendezvousUrl"], url.as_str());
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 7);
    for stage in stages {
        assert_eq!(stage["status"], "passed", "{stage}");
        assert!(stage["durationMs"].is_number(), "{stage}");
    }
    for timing in ["rendezvousMs", "handshakeMs", "roundTripMs", "totalMs"] {
        assert!(report["timings"][timing].is_number(), "{timing}");
    }

    // Text mode: progress lines, then the verdict.
    let (out, _) = check(&["--rendezvous-url", &url, "--ice-bind", "127.0.0.1"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok    Ping / pong"), "{stdout}");
    assert!(stdout.contains("Verdict: Good"), "{stdout}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_nothing_fails_at_health_with_connection_refused_and_exits_1() {
    let port = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let (out, took) = check(&["--rendezvous-url", &url, "--ice-bind", "127.0.0.1"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("Verdict: Failed"), "{stdout}");
    assert!(stdout.contains("connection refused"), "{stdout}");
    assert!(stdout.contains("hint:"), "{stdout}");
    assert!(took < Duration::from_secs(3), "fast: {took:?}");

    let (out, _) = check(&["--rendezvous-url", &url, "--json"]).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["failedStage"], "health");
    assert_eq!(report["stages"][0]["error"]["kind"], "connectionRefused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_ice_server_entry_is_reported_and_exits_1_though_the_rendezvous_is_good() {
    let server = bundled().await;
    let url = server.url();
    let (out, _) = check(&[
        "--rendezvous-url",
        &url,
        "--ice-bind",
        "127.0.0.1",
        "--ice-server",
        "turn:user:hunter2@127.0.0.1:99999",
        "--json",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["verdict"], "good");
    assert_eq!(report["iceServers"][0]["status"], "failed");
    assert_eq!(report["iceServers"][0]["error"]["kind"], "badUrl");
    assert!(!stdout.contains("hunter2"), "the password is never printed");
    server.stop().await.unwrap();
}
