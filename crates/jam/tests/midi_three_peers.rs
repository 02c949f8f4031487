//! Live MIDI between three peers on loopback: our host (in process, with the
//! bundled rendezvous served over HTTP), an aiortc joiner speaking the
//! `midi` frame format from its own Python implementation
//! (`tests/interop/midi_joiner.py`, `midi_frames.py`, written from
//! `docs/midi-frames.md`), and a webrtc-rs joiner (`jam::offer::Offerer`).
//!
//! Everyone hears everyone (the host's local sink included), SysEx passes
//! intact, and a joiner that dies mid-chord leaves no note on: SIGKILLed
//! aiortc (no goodbye of any kind; it promised keep-alives, so the host
//! takes 1 s of silence as a stall, long before ICE consent notices the
//! lost link) and a dropped webrtc-rs joiner (its connection closes) each
//! get their notes and pedal released on the other joiner and on the host's
//! sink, and only where they were heard. The webrtc-rs joiner never
//! promised keep-alives (an older joiner): holding a chord in silence does
//! not get it released.
//!
//! aiortc never offers 127.0.0.1, so everything runs in a network namespace
//! of the test's own whose `lo` also has 127.0.0.2: the test re-runs itself
//! inside it (`ip netns exec <ns> <this test binary> --exact <name>`), so
//! the host, the rendezvous and both joiners share that loopback and nothing
//! leaves it. Needs root, iproute2 and `tests/interop/.venv` (from
//! `scripts/setup.sh`); without them the test fails saying so.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use jam::host::{HostControl, HostEvent, MidiEvent};
use jam::midi::frame::flags;
use jam::midi::message::cc;
use jam::midi::{MidiMessage, SysEx};
use jam::protocol::PeerId;
use jam::registry::RegistryEvent;
use serde_json::Value;
use test_support::tools::interop_dir;
use test_support::Netns;
use tokio::sync::broadcast;

#[path = "support/midi_peer.rs"]
mod midi_peer;
use midi_peer::{MidiPeer, STEP};

const INNER: &str = "JAM_MIDI_THREE_PEERS_INNER";
const TEST_NAME: &str = "three_peers_hear_each_other_and_no_note_is_left_on";
/// Waits on the aiortc joiner: its pure-Python SCTP is slow on a loaded
/// machine, and the wait only matters when something is wrong.
const PY_STEP: Duration = Duration::from_secs(30);
/// Bound on waiting for a dead joiner's releases: a closed connection is
/// seen in ms, a lost link by ICE consent in ~5 s; generous for a busy
/// machine (a stall has its own bound below).
const KILLED_RELEASED_WITHIN: Duration = Duration::from_secs(20);
/// A SIGKILLed joiner that promised keep-alives is released 1.0-1.1 s after
/// its last frame (at most 250 ms before the kill), where ICE consent would
/// take ~4.7 s: this bound tells the two apart, with room for a busy
/// machine.
const STALL_RELEASED_WITHIN: Duration = Duration::from_millis(2500);

#[test]
fn three_peers_hear_each_other_and_no_note_is_left_on() {
    if std::env::var_os(INNER).is_some() {
        inside();
        return;
    }
    let python = interop_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh` once",
        python.display()
    );
    let ns = Netns::with_loopback_alias("jammidi");
    let exe = std::env::current_exe().expect("test binary");
    // The inner run's output goes straight to ours (not captured), so a
    // failure shows every step and the joiners' reports.
    let status = ns
        .command(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .status()
        .expect("run the test inside the namespace");
    assert!(status.success(), "the test failed inside {}", ns.name());
}

// ------------------------------------------------------------ aiortc joiner

/// The aiortc joiner process: JSON lines out, MIDI hex lines in.
struct Aiortc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std_mpsc::Receiver<Value>,
    seen: Vec<Value>,
    label: String,
}

impl Aiortc {
    fn spawn(label: &str, url: &str, code: &str, machine_id: &str) -> Aiortc {
        let mut child = Command::new(interop_dir().join(".venv/bin/python"))
            .arg(interop_dir().join("midi_joiner.py"))
            .args(["--url", url, "--code", code, "--name", label])
            .args(["--machine-id", machine_id, "--midi-stdin", "--stay", "300"])
            .args(["--send-heartbeats", "--heartbeat-interval", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the aiortc joiner");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Aiortc {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            label: label.to_owned(),
        }
    }

    /// Sends one frame of these MIDI bytes.
    fn play(&mut self, hex: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{hex}").expect("write to the joiner");
        stdin.flush().expect("flush");
    }

    /// Waits (blocking, off the runtime) for a line matching `pred`.
    async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.seen.iter().position(&pred) {
                return self.seen.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::task::block_in_place(|| self.lines.recv_timeout(left));
            match got {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!(
                    "{}: no {what} within {within:?}; seen: {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Aiortc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn is_midi(v: &Value) -> bool {
    v["event"] == "midi"
}

fn midi_has(v: &Value, origin: u64, hex: &str) -> bool {
    is_midi(v)
        && v["origin"] == origin
        && v["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == hex))
}

// ------------------------------------------------------------ host side

/// Waits until the host welcomed every one of `machine_ids` (in any
/// order); their peer ids, in the same order.
async fn connected(
    events: &mut broadcast::Receiver<HostEvent>,
    machine_ids: &[&str],
) -> Vec<PeerId> {
    let mut ids: Vec<Option<PeerId>> = vec![None; machine_ids.len()];
    let r = tokio::time::timeout(Duration::from_secs(30), async {
        while ids.iter().any(Option::is_none) {
            match events.recv().await {
                Ok(HostEvent::Peer(RegistryEvent::Connected { peer })) => {
                    for (i, m) in machine_ids.iter().enumerate() {
                        if peer.machine_id.as_deref() == Some(*m) {
                            ids[i] = Some(peer.id);
                        }
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("host events ended: {e}"),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "not all of {machine_ids:?} were welcomed: {ids:?}"
    );
    ids.into_iter().flatten().collect()
}

/// Waits until the host's sink has seen every one of `want` from `peer`
/// (in any order, other messages in between allowed).
async fn sink_gets(
    sink: &mut broadcast::Receiver<MidiEvent>,
    peer: PeerId,
    release: bool,
    want: &[MidiMessage],
    within: Duration,
) {
    let mut missing: Vec<MidiMessage> = want.to_vec();
    let r = tokio::time::timeout(within, async {
        while !missing.is_empty() {
            match sink.recv().await {
                Ok(e) if e.peer == Some(peer) && e.release == release => {
                    missing.retain(|m| *m != e.message);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("sink lagged by {n}"),
                Err(e) => panic!("sink ended: {e}"),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "the host's sink did not get {missing:?} from {peer} (release {release})"
    );
}

/// Plays Active Sensing from the host until both joiners heard something:
/// then their `midi` channels are routed.
async fn until_routed(host: &HostControl, rust: &mut MidiPeer, py: &mut Aiortc) {
    let deadline = Instant::now() + STEP;
    let mut rust_ok = false;
    let mut py_ok = false;
    while !(rust_ok && py_ok) {
        assert!(Instant::now() < deadline, "joiners not routed in time");
        host.send_midi(&[0xFE]).expect("send");
        if !rust_ok {
            rust_ok = rust
                .frame_where(Duration::from_millis(100), |f| f.header.origin == 0)
                .await
                .is_some();
        }
        if !py_ok {
            py.pump();
            py_ok = py.seen.iter().any(|v| midi_has(v, 0, "fe"));
        }
        // Paces the probes of this condition loop.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Forget the probes.
    while rust.next_frame(Duration::from_millis(200)).await.is_some() {}
    py.pump();
    py.seen.retain(|v| !midi_has(v, 0, "fe"));
}

impl Aiortc {
    fn pump(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
    }
}

fn on(ch: u8, key: u8, vel: u8) -> MidiMessage {
    MidiMessage::NoteOn {
        channel: ch,
        key,
        velocity: vel,
    }
}

fn inside() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Run as a task, so that a failed assertion does not leave the runtime
    // dropped mid-unwind with the host still running.
    let result = rt.block_on(async { tokio::spawn(run()).await });
    rt.shutdown_timeout(Duration::from_secs(3));
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("{e}");
    }
}

/// Progress lines, with the time since the start.
fn step(t0: Instant, what: &str) {
    eprintln!("[{:>7.3} s] {what}", t0.elapsed().as_secs_f64());
}

async fn run() {
    let t0 = Instant::now();
    let midi_peer::Hosted {
        server,
        host,
        ctl,
        base,
        code,
        mut events,
    } = midi_peer::start_host("midi host").await;
    let mut sink = host.midi_events();

    step(t0, "host up");
    // Two joiners: aiortc (Python) and webrtc-rs.
    let mut py = Aiortc::spawn("aiortc", &base, &code, "aiortc-machine-1");
    let mut rust = MidiPeer::join(&base, &code, "rust")
        .await
        .expect("the webrtc-rs joiner joins");
    let ids = connected(&mut events, &["aiortc-machine-1", &rust.machine_id]).await;
    let (id_py, id_rust) = (ids[0], ids[1]);
    py.wait_for("open", PY_STEP, |v| v["event"] == "open").await;
    until_routed(&ctl, &mut rust, &mut py).await;
    eprintln!("routed: aiortc = {id_py}, webrtc-rs = {id_rust}");

    step(t0, "both joiners routed");
    // The host plays: both joiners hear it, origin 0.
    ctl.send_midi(&[0x90, 60, 100]).unwrap();
    let f = rust
        .frame_where(STEP, |f| f.messages.contains(&on(0, 60, 100)))
        .await
        .expect("webrtc-rs hears the host");
    assert_eq!(f.header.origin, 0);
    py.wait_for("the host's note", PY_STEP, |v| midi_has(v, 0, "903c64"))
        .await;
    ctl.send_midi(&[0x80, 60, 0]).unwrap();

    step(t0, "host -> both ok");
    // The webrtc-rs joiner plays: aiortc and the host's sink hear it,
    // with its peer id as origin.
    rust.play(&[on(1, 62, 90)]).await.unwrap();
    sink_gets(&mut sink, id_rust, false, &[on(1, 62, 90)], STEP).await;
    let v = py
        .wait_for("webrtc-rs's note", PY_STEP, |v| {
            midi_has(v, id_rust.0, "913e5a")
        })
        .await;
    eprintln!("webrtc-rs -> host -> aiortc: {} µs", v["latency_us"]);

    step(t0, "webrtc-rs -> aiortc + sink ok");
    // aiortc plays: webrtc-rs and the sink hear it.
    py.play("924064 824000");
    sink_gets(&mut sink, id_py, false, &[on(2, 64, 100)], STEP).await;
    let f = rust
        .frame_where(STEP, |f| f.messages.contains(&on(2, 64, 100)))
        .await
        .expect("webrtc-rs hears aiortc");
    assert_eq!(f.header.origin, id_py.0);
    assert_eq!(f.messages.len(), 2, "one frame, both messages: {f:?}");

    step(t0, "aiortc -> webrtc-rs + sink ok");
    // SysEx of 4 KiB from aiortc arrives intact.
    let payload: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 128) as u8).collect();
    let sysex = MidiMessage::SysEx(SysEx::from_payload(&payload).unwrap());
    let hex: String = sysex.to_vec().iter().map(|b| format!("{b:02x}")).collect();
    py.play(&hex);
    let f = rust
        .frame_where(STEP, |f| {
            matches!(f.messages.first(), Some(MidiMessage::SysEx(_)))
        })
        .await
        .expect("webrtc-rs gets the SysEx");
    assert_eq!(f.messages, vec![sysex.clone()], "SysEx intact");
    sink_gets(&mut sink, id_py, false, &[sysex], STEP).await;

    step(t0, "SysEx ok");
    // aiortc holds a chord with the pedal down, then is SIGKILLed.
    py.play("934864 934c64 934f64 b3407f");
    let chord = [on(3, 72, 100), on(3, 76, 100), on(3, 79, 100)];
    sink_gets(&mut sink, id_py, false, &chord, STEP).await;
    rust.frame_where(STEP, |f| f.messages.contains(&on(3, 79, 100)))
        .await
        .expect("webrtc-rs hears the chord");
    // It holds them for 2 s, twice the stall time: its keep-alives keep it
    // from being taken for stalled. (A negative check: nothing may be
    // released within that time, so a fixed sleep is the point.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    loop {
        match sink.try_recv() {
            Ok(e) => assert!(!e.release, "released while alive: {e:?}"),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    if let Some((f, _)) = rust.next_frame(Duration::from_millis(50)).await {
        panic!("webrtc-rs got {f:?} while aiortc held its chord");
    }
    assert_eq!(ctl.midi_stats().keepalive_stalls, 0, "stalled while alive");
    let killed_at = Instant::now();
    py.kill();
    let offs = [
        MidiMessage::note_off(3, 72),
        MidiMessage::note_off(3, 76),
        MidiMessage::note_off(3, 79),
        MidiMessage::control(3, cc::SUSTAIN, 0),
    ];
    let f = rust
        .frame_where(KILLED_RELEASED_WITHIN, |f| f.header.origin == id_py.0)
        .await
        .expect("webrtc-rs gets the killed joiner's releases");
    let released_after = killed_at.elapsed();
    eprintln!(
        "aiortc SIGKILLed: releases reached webrtc-rs after {released_after:?} (stall \
         detection; ICE consent alone took ~4.7 s)"
    );
    assert_eq!(
        f.header.flags,
        flags::RELEASE | flags::KEEPALIVE,
        "a release, with the host's own promise"
    );
    assert_eq!(f.messages, offs, "Note Offs in order, then the pedal");
    assert!(
        released_after < STALL_RELEASED_WITHIN,
        "the killed joiner's notes hung for {released_after:?}: its keep-alive promise was \
         not used (ICE consent takes ~4.7 s)"
    );
    assert_eq!(ctl.midi_stats().keepalive_stalls, 1, "released as a stall");
    sink_gets(&mut sink, id_py, true, &offs, Duration::from_secs(2)).await;

    step(t0, "SIGKILLed aiortc released everywhere");
    // A second aiortc joiner arrives; the webrtc-rs joiner holds a chord
    // with the pedal down and is dropped without a goodbye.
    let mut py2 = Aiortc::spawn("aiortc-2", &base, &code, "aiortc-machine-2");
    let id_py2 = connected(&mut events, &["aiortc-machine-2"]).await[0];
    eprintln!("aiortc-2 = {id_py2}");
    py2.wait_for("open", PY_STEP, |v| v["event"] == "open")
        .await;
    until_routed(&ctl, &mut rust, &mut py2).await;
    let chord = [on(5, 60, 80), on(5, 64, 80), on(5, 67, 80)];
    rust.play(&chord).await.unwrap();
    rust.play(&[MidiMessage::control(5, cc::SUSTAIN, 127)])
        .await
        .unwrap();
    py2.wait_for("webrtc-rs's chord", PY_STEP, |v| {
        ["953c50", "954050", "954350"]
            .iter()
            .all(|hex| midi_has(v, id_rust.0, hex))
    })
    .await;
    py2.wait_for("webrtc-rs's pedal", PY_STEP, |v| {
        midi_has(v, id_rust.0, "b5407f")
    })
    .await;
    sink_gets(&mut sink, id_rust, false, &chord, STEP).await;
    // It never promised keep-alives: silence longer than a stall releases
    // nothing of it. (A negative check, so a fixed sleep.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    py2.pump();
    assert!(
        !py2.seen
            .iter()
            .any(|v| is_midi(v) && v["origin"] == id_rust.0 && v["release"] == true),
        "a joiner that never promised keep-alives was released for silence"
    );
    loop {
        match sink.try_recv() {
            Ok(e) => assert!(
                !(e.peer == Some(id_rust) && e.release),
                "released for silence: {e:?}"
            ),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    let dropped_at = Instant::now();
    let rust_keepalives = rust.keepalives;
    rust.vanish();
    // aiortc-2 never heard the webrtc-rs joiner's earlier note (1, 62):
    // it gets only the chord's releases; the sink gets that note's too.
    let v = py2
        .wait_for(
            "the dropped joiner's releases",
            KILLED_RELEASED_WITHIN,
            |v| is_midi(v) && v["origin"] == id_rust.0 && v["release"] == true,
        )
        .await;
    assert_eq!(
        v["messages"],
        serde_json::json!(["853c40", "854040", "854340", "b54000"]),
        "{v}"
    );
    eprintln!(
        "webrtc-rs dropped: releases reached aiortc after {:?}",
        dropped_at.elapsed()
    );
    let mut offs: Vec<MidiMessage> = [60, 64, 67]
        .iter()
        .map(|k| MidiMessage::note_off(5, *k))
        .collect();
    offs.push(MidiMessage::note_off(1, 62));
    offs.push(MidiMessage::control(5, cc::SUSTAIN, 0));
    sink_gets(&mut sink, id_rust, true, &offs, Duration::from_secs(2)).await;

    step(t0, "dropped webrtc-rs released everywhere");
    let stats = ctl.midi_stats();
    eprintln!("host relay: {stats:?}, mean {} ns", stats.relay_ns_mean());
    assert_eq!(stats.frames_bad, 0);
    assert_eq!(stats.stalled, 0);
    assert_eq!(
        stats.keepalive_stalls, 1,
        "only the SIGKILLed aiortc joiner"
    );
    assert!(stats.keepalives_out > 0, "the host kept its own promise");
    eprintln!(
        "webrtc-rs joiner skipped {} keep-alives from the host",
        rust_keepalives
    );
    let activity = ctl.midi_activity().await;
    // Nobody still in the jam holds a note (the host released its own).
    assert!(
        activity.iter().all(|a| a.activity.sounding == 0),
        "{activity:?}"
    );
    drop(py2);
    host.stop().await;
    drop(server);
}
