//! The Record switch with an independent live-MIDI peer: the aiortc joiner
//! (`tests/interop/midi_joiner.py`, our documented frame format from its
//! own Python implementation) plays four notes with Record on, and they
//! are in the host's shared song on the "Live" track with their pitches
//! and durations, and so is a note of the host's own MIDI input; played
//! with Record off, nothing is written.
//!
//! aiortc never offers 127.0.0.1, so the test re-runs itself inside a
//! network namespace of its own whose `lo` also has 127.0.0.2 (as
//! `midi_three_peers.rs` does). Needs root, iproute2 and
//! `tests/interop/.venv` (from `scripts/setup.sh`).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use jam::host::{Host, HostConfig, HostControl, HostEvent};
use jam::hub::{Hub, SongShare};
use jam::registry::RegistryEvent;
use jam::rtc::RtcConfig;
use jam::signal::Target;
use rdv::{Config, Rendezvous, RunningServer};
use serde_json::Value;
use song::{Body, Song};
use test_support::tools::interop_dir;
use test_support::Netns;

const INNER: &str = "JAM_RECORD_INNER";
const TEST_NAME: &str = "notes_played_with_record_on_land_in_the_song";
const STEP: Duration = Duration::from_secs(30);

#[test]
fn notes_played_with_record_on_land_in_the_song() {
    if std::env::var_os(INNER).is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let result = rt.block_on(async { tokio::spawn(run()).await });
        rt.shutdown_timeout(Duration::from_secs(3));
        if let Err(e) = result {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("{e}");
        }
        return;
    }
    let python = interop_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh` once",
        python.display()
    );
    let ns = Netns::with_loopback_alias("jamrec");
    let exe = std::env::current_exe().expect("test binary");
    let status = ns
        .command(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .status()
        .expect("run the test inside the namespace");
    assert!(status.success(), "the test failed inside {}", ns.name());
}

/// The four notes: (key, hex on, hex off).
const NOTES: [u8; 4] = [60, 62, 64, 67];
/// How long each is held.
const HOLD_MS: u64 = 200;

fn live_notes(share: &SongShare) -> Vec<(u8, u32, u32)> {
    let h = share.lock();
    let song = h.song();
    let Some(track) = (0..song.tracks).find(|t| song.track_name(*t) == Some("Live")) else {
        return Vec::new();
    };
    song.events()
        .filter(|e| e.track == track)
        .filter_map(|e| match e.body {
            Body::Note { note, duration, .. } => Some((note, e.tick, duration)),
            _ => None,
        })
        .collect()
}

async fn wait_routed(ctl: &HostControl) {
    let deadline = Instant::now() + STEP;
    loop {
        if ctl.midi_activity().await.iter().any(|r| r.routed) {
            return;
        }
        assert!(Instant::now() < deadline, "the joiner was never routed");
        // Polls a condition; nothing to wait on.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn play(stdin: &mut std::process::ChildStdin, keys: &[u8]) {
    for k in keys {
        writeln!(stdin, "90{k:02x}64").expect("write");
        writeln!(stdin, "sleep {HOLD_MS}").expect("write");
        writeln!(stdin, "80{k:02x}00").expect("write");
        writeln!(stdin, "sleep 50").expect("write");
    }
    stdin.flush().expect("flush");
}

async fn run() {
    let server = RunningServer::start(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        Rendezvous::new(Config::default()),
    )
    .await
    .expect("rendezvous");
    let base = server.url();
    let share = SongShare::new(Hub::new(Song::new(), "jam.mid", None));
    let (host, mut events) = Host::start_with_song(
        HostConfig {
            display_name: "record host".into(),
            machine_id: String::new(),
            session_id: "rec".into(),
            max_peers: 4,
            rtc: RtcConfig {
                ice_servers: Vec::new(),
                gather_timeout: Duration::from_secs(2),
                bind_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                resolve_mdns: false,
            },
            target: Target::bundled(server.rdv.clone()),
            share_urls: vec![base.clone()],
            keep_code: None,
        },
        Some(share.clone()),
    )
    .await
    .expect("host starts");
    let code = match events.recv().await {
        Ok(HostEvent::Hosting { code, .. }) => code,
        other => panic!("expected Hosting, got {other:?}"),
    };
    let ctl = host.clone_handle();
    let mut sink = host.midi_events();

    let mut child: Child = Command::new(interop_dir().join(".venv/bin/python"))
        .arg(interop_dir().join("midi_joiner.py"))
        .args(["--url", &base, "--code", &code, "--name", "player"])
        .args(["--machine-id", "player-1", "--midi-stdin", "--stay", "120"])
        .args(["--send-heartbeats", "--heartbeat-interval", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the aiortc joiner");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, _lines) = std_mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if tx.send(v).is_err() {
                break;
            }
        }
    });

    // Welcomed and routed.
    let welcomed = tokio::time::timeout(STEP, async {
        loop {
            if let Ok(HostEvent::Peer(RegistryEvent::Connected { peer })) = events.recv().await {
                if peer.machine_id.as_deref() == Some("player-1") {
                    return;
                }
            }
        }
    })
    .await;
    assert!(welcomed.is_ok(), "the joiner was not welcomed");
    wait_routed(&ctl).await;

    // Record off: the note is heard (the host's sink) but not written.
    play(&mut stdin, &[72]);
    let heard = tokio::time::timeout(STEP, async {
        loop {
            if let Ok(e) = sink.recv().await {
                if matches!(e.message, jam::midi::MidiMessage::NoteOff { key: 72, .. }) {
                    return;
                }
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "the host never heard the joiner's note");
    // Two flush periods: a recorder would have written it by now.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let events_before = share.lock().song().len();
    assert!(
        live_notes(&share).is_empty(),
        "Record off wrote {:?}",
        live_notes(&share)
    );

    // Record on: four notes.
    ctl.set_record(true).await;
    let played = Instant::now();
    play(&mut stdin, &NOTES);
    let last_off_at = played + Duration::from_millis(NOTES.len() as u64 * (HOLD_MS + 50) - 50);
    let deadline = Instant::now() + STEP;
    let got = loop {
        let got = live_notes(&share);
        if got.len() >= NOTES.len() {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "only {got:?} recorded within {STEP:?}"
        );
        // Polls the shared song; the test's own clock of the delay.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let delay = Instant::now().saturating_duration_since(last_off_at);
    eprintln!("last Note Off played -> in the host's song: ~{delay:?}");
    let mut keys: Vec<u8> = got.iter().map(|n| n.0).collect();
    keys.sort_unstable();
    assert_eq!(keys, NOTES.to_vec(), "recorded {got:?}");
    let tpq = u32::from(share.lock().song().ticks_per_quarter);
    // 120 bpm (the new song's tempo): 200 ms is 0.4 quarter.
    let want = tpq * 2 * u32::try_from(HOLD_MS).unwrap_or(0) / 1000;
    let mut by_tick = got.clone();
    by_tick.sort_by_key(|n| n.1);
    for (i, (key, _, duration)) in by_tick.iter().enumerate() {
        assert_eq!(*key, NOTES[i], "played in order: {by_tick:?}");
        assert!(
            *duration >= want / 2 && *duration <= want * 4,
            "note {key}: duration {duration} ticks, ~{want} expected ({by_tick:?})"
        );
    }
    for w in by_tick.windows(2) {
        assert!(w[1].1 > w[0].1, "onsets increase: {by_tick:?}");
    }
    assert!(share.lock().song().len() > events_before);

    // The musician at the host plays along on its own MIDI input: recorded
    // too, on the same track, after the joiner's notes.
    ctl.send_midi(&[0x90, 48, 90]).expect("host input");
    tokio::time::sleep(Duration::from_millis(HOLD_MS)).await;
    ctl.send_midi(&[0x80, 48, 0]).expect("host input");
    let deadline = Instant::now() + STEP;
    let host_note = loop {
        if let Some(n) = live_notes(&share).into_iter().find(|n| n.0 == 48) {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the host's own note was not recorded: {:?}",
            live_notes(&share)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        host_note.1 > by_tick.last().unwrap().1,
        "the host's note comes after the joiner's: {host_note:?} {by_tick:?}"
    );
    assert!(
        host_note.2 >= want / 2 && host_note.2 <= want * 4,
        "host note duration {} ticks, ~{want} expected",
        host_note.2
    );
    // A note the host holds when Panic is pressed ends there.
    ctl.send_midi(&[0x90, 50, 90]).expect("host input");
    tokio::time::sleep(Duration::from_millis(HOLD_MS)).await;
    ctl.panic().await;
    let deadline = Instant::now() + STEP;
    while !live_notes(&share).iter().any(|n| n.0 == 50) {
        assert!(
            Instant::now() < deadline,
            "Panic did not end the host's held note: {:?}",
            live_notes(&share)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Record off again: nothing more is written.
    ctl.set_record(false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = live_notes(&share).len();
    play(&mut stdin, &[74]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        live_notes(&share).len(),
        after,
        "Record off still wrote: {:?}",
        live_notes(&share)
    );

    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    host.stop().await;
}
