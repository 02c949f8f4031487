//! The midir backend with real ports, through a JACK server with the dummy
//! driver (no sound card needed): `cargo test -p midi --features jack`.
//! Needs `jackd` (Debian `jackd2`) and `libjack-jackd2-dev`. The test
//! starts its own server under a server name of its own and stops it.
#![cfg(feature = "jack")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use midi::midir_ports::MidirSystem;
use midi::ports::{input_queue, InputQueue, MidiStatus, MidiSystem, OutputPort};
use midi::{MidiMessage, SysEx};
use test_support::{wait_for, wait_until};

struct Jackd(Child);

impl Drop for Jackd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_jackd(server: &str) -> Jackd {
    let child = Command::new("jackd")
        .args([
            "-n", server, "-r", "-d", "dummy", "-r", "48000", "-p", "128",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("jackd (Debian: jackd2) must be installed");
    Jackd(child)
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
    let server = format!("jamtest{}", std::process::id());
    // libjack reads the server name from the environment.
    std::env::set_var("JACK_DEFAULT_SERVER", &server);
    std::env::set_var("JACK_NO_START_SERVER", "1");
    let _jackd = start_jackd(&server);
    let sys = MidirSystem::new("jam-test");
    wait_for("JACK to come up", Duration::from_secs(10), || {
        sys.status() == MidiStatus::Available
    });

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
