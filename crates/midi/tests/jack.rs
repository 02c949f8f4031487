//! The midir backend with real ports, through a JACK server with the dummy
//! driver (no sound card needed): `cargo test -p midi --features jack`.
//! Needs `jackd` (Debian `jackd2`) and `libjack-jackd2-dev`. The test
//! starts its own server under a server name of its own and stops it.
//!
//! JACK keeps a machine-wide registry of servers in `/dev/shm` with room
//! for 8, and an entry whose server died without a clean exit is only
//! reclaimed by a server of the same name. Killed test servers had filled
//! it on the CI machine ("Too many servers already active"), so the test
//! re-runs itself in a mount namespace of its own with a fresh tmpfs on
//! `/dev/shm` (needs root and `unshare`, as CI has): its server and its
//! client meet there, whatever the machine's registry holds, and nothing
//! is left behind. The server is also stopped with SIGTERM first, which
//! unregisters it.
#![cfg(feature = "jack")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use midi::midir_ports::MidirSystem;
use midi::ports::{input_queue, InputQueue, MidiStatus, MidiSystem, OutputPort};
use midi::{MidiMessage, SysEx};
use test_support::wait_until;

/// A `jackd` child and the file its output goes to (shown when it fails).
struct Jackd {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Jackd {
    /// SIGTERM first: a server that exits cleanly leaves the registry;
    /// SIGKILL only when it has not gone within 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let gone = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            !matches!(self.child.try_wait(), Ok(None))
        });
        if !gone {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Set in the re-run inside the private `/dev/shm`.
const INNER: &str = "MIDI_JACK_TEST_INNER";

/// Runs `test` of this binary again in a mount namespace with a fresh
/// tmpfs on `/dev/shm` (see the module doc); true when this call is that
/// inner run, which then runs the test body.
fn in_private_shm(test: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args([
            "sh",
            "-c",
            "mount -t tmpfs -o size=512m,mode=1777 jamtest-shm /dev/shm && exec \"$0\" \"$@\"",
        ])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .status()
        .expect("unshare (util-linux) must be installed");
    assert!(status.success(), "{test} failed in its private /dev/shm");
    false
}

impl Jackd {
    fn start(server: &str) -> Jackd {
        let log = std::env::temp_dir().join(format!("{server}.jackd.log"));
        let out = std::fs::File::create(&log).expect("create the jackd log");
        let err = out.try_clone().expect("clone the log handle");
        let child = Command::new("jackd")
            .args([
                "-n", server, "-r", "-d", "dummy", "-r", "48000", "-p", "128",
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("jackd (Debian: jackd2) must be installed");
        Jackd { child, log }
    }

    /// What went wrong, for the failure message: whether the server
    /// exited, and what it printed.
    fn report(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("jackd exited ({status})"),
            Ok(None) => "jackd still running".to_owned(),
            Err(e) => format!("jackd state unknown ({e})"),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("{state}; its output:\n{log}")
    }
}

/// Starts a server under a name of its own and waits until `sys` reaches
/// it. A server that has not come up in time (seen once in CI, on a loaded
/// machine, with no trace of why) is replaced by a fresh one under a new
/// name; after the last try the failure carries every server's output.
fn jack_up(sys_name: &str) -> (Jackd, MidirSystem) {
    let mut reports = Vec::new();
    for attempt in 1..=3 {
        let server = format!("jamtest{}-{attempt}", std::process::id());
        // libjack reads the server name from the environment.
        std::env::set_var("JACK_DEFAULT_SERVER", &server);
        std::env::set_var("JACK_NO_START_SERVER", "1");
        let mut jackd = Jackd::start(&server);
        let sys = MidirSystem::new(sys_name);
        let t0 = Instant::now();
        // Stops early when the server has exited: no use waiting for it.
        wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            sys.status() == MidiStatus::Available || !matches!(jackd.child.try_wait(), Ok(None))
        });
        if sys.status() == MidiStatus::Available {
            eprintln!("JACK server {server} up in {:?}", t0.elapsed());
            return (jackd, sys);
        }
        let report = jackd.report();
        eprintln!("attempt {attempt}: JACK did not come up; {report}");
        reports.push(report);
    }
    panic!(
        "JACK never came up in 3 tries:\n{}",
        reports.join("\n---\n")
    );
}

/// Waits until JACK carries what `out` sends to the input behind `q`: a
/// new connection becomes active at the server's next cycle, and what is
/// sent before that is lost. Probes with Tune Request (harmless, and not
/// among what the test sends) and drops the probes that arrive.
fn connected(out: &mut dyn OutputPort, q: &InputQueue) {
    let probe = MidiMessage::TuneRequest;
    let heard = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        out.send(&probe).expect("send a probe");
        q.events
            .recv_timeout(Duration::from_millis(20))
            .is_ok_and(|e| e.message == probe)
    });
    assert!(heard, "the JACK connection never carried a message");
    // Probes still under way.
    while q.events.recv_timeout(Duration::from_millis(50)).is_ok() {}
}

#[test]
fn virtual_ports_carry_messages_through_jack() {
    if !in_private_shm("virtual_ports_carry_messages_through_jack") {
        return;
    }
    let (_jackd, sys) = jack_up("jam-test");

    // Our virtual output, heard by our own input connected to it.
    let mut out = sys
        .create_virtual_output("virtual-out")
        .expect("virtual output");
    let port = sys
        .inputs()
        .unwrap()
        .into_iter()
        .find(|p| p.name.ends_with(":virtual-out"))
        .expect("the virtual output is listed as an input");
    let (cb, q) = input_queue(256);
    let _in = sys.open_input(&port.id, cb).expect("open it");
    connected(&mut *out, &q);

    let payload: Vec<u8> = (0..200u8).map(|i| i % 128).collect();
    let sent = vec![
        MidiMessage::NoteOn {
            channel: 2,
            key: 60,
            velocity: 100,
        },
        MidiMessage::control(2, 64, 127),
        MidiMessage::SysEx(SysEx::from_payload(&payload).unwrap()),
        MidiMessage::note_off(2, 60),
    ];
    let t0 = Instant::now();
    for m in &sent {
        out.send(m).expect("send");
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match q.events.recv_timeout(Duration::from_secs(5)) {
            Ok(e) => got.push(e.message),
            Err(_) => panic!("got only {got:?}"),
        }
    }
    eprintln!("4 messages through JACK in {:?}", t0.elapsed());
    assert_eq!(got, sent);

    // A virtual input: what another client plays into it arrives.
    let (cb, q) = input_queue(16);
    let _vin = sys
        .create_virtual_input("virtual-in", cb)
        .expect("virtual input");
    let target = sys
        .outputs()
        .unwrap()
        .into_iter()
        .find(|p| p.name.ends_with(":virtual-in"))
        .expect("the virtual input is listed as an output");
    let mut other = sys.open_output(&target.id).expect("open it");
    connected(&mut *other, &q);
    let note = MidiMessage::NoteOn {
        channel: 0,
        key: 61,
        velocity: 1,
    };
    other.send(&note).unwrap();
    let e = q.events.recv_timeout(Duration::from_secs(5)).expect("note");
    assert_eq!(e.message, note);
    other.send(&MidiMessage::Start).unwrap();
    let e = q
        .events
        .recv_timeout(Duration::from_secs(5))
        .expect("Start");
    assert_eq!(e.message, MidiMessage::Start);
}
