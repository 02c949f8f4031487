//! The port trait on the in-memory system, and the midir system on a
//! machine that may have no MIDI at all (these have no ALSA sequencer).

use midi::memory::MemoryMidi;
use midi::ports::{input_queue, MidiError, MidiStatus, MidiSystem, PortChange, PortWatcher};
use midi::MidiMessage;

#[test]
fn inputs_deliver_whole_messages_with_their_time_and_outputs_record() {
    let sys = MemoryMidi::new();
    let kb = sys.add_input("Keys");
    let synth = sys.add_output("Synth");
    assert_eq!(sys.inputs().unwrap(), vec![kb.info().clone()]);
    assert_eq!(sys.outputs().unwrap(), vec![synth.info().clone()]);

    let (cb, q) = input_queue(8);
    let port = sys.open_input(&kb.info().id, cb).unwrap();
    assert_eq!(port.info().name, "Keys");
    assert!(kb.is_open());
    kb.play(10, &[0x90, 60]);
    kb.play(20, &[100, 62, 90]); // completes one, then running status
    let got: Vec<(u64, MidiMessage)> = q
        .events
        .try_iter()
        .map(|e| (e.time_us, e.message))
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, 20);
    assert_eq!(
        got[1].1,
        MidiMessage::NoteOn {
            channel: 0,
            key: 62,
            velocity: 90
        }
    );

    let mut out = sys.open_output(&synth.info().id).unwrap();
    out.send(&got[0].1).unwrap();
    assert_eq!(synth.take(), vec![got[0].1.clone()]);
    drop(port);
    assert!(!kb.is_open());
}

#[test]
fn a_full_input_queue_drops_and_counts_instead_of_blocking() {
    let sys = MemoryMidi::new();
    let kb = sys.add_input("Keys");
    let (cb, q) = input_queue(2);
    let _port = sys.open_input(&kb.info().id, cb).unwrap();
    kb.play(0, &[0xF8, 0xF8, 0xF8, 0xF8, 0xF8]);
    assert_eq!(q.events.try_iter().count(), 2);
    assert_eq!(q.dropped(), 3);
}

#[test]
fn unplugged_ports_fail_cleanly_and_the_watcher_sees_them_come_and_go() {
    let sys = MemoryMidi::new();
    let mut w = PortWatcher::new();
    assert_eq!(
        w.poll(&sys),
        vec![PortChange::Status(MidiStatus::Available)]
    );
    let kb = sys.add_input("Keys");
    let synth = sys.add_output("Synth");
    assert_eq!(
        w.poll(&sys),
        vec![
            PortChange::InputAdded(kb.info().clone()),
            PortChange::OutputAdded(synth.info().clone())
        ]
    );
    assert_eq!(w.poll(&sys), vec![]);
    let mut out = sys.open_output(&synth.info().id).unwrap();
    sys.remove(&synth.info().id);
    assert!(matches!(
        out.send(&MidiMessage::Clock),
        Err(MidiError::NoSuchPort(_))
    ));
    assert_eq!(
        w.poll(&sys),
        vec![PortChange::OutputRemoved(synth.info().clone())]
    );
    assert!(matches!(
        sys.open_output(&synth.info().id),
        Err(MidiError::NoSuchPort(_))
    ));
    sys.remove(&kb.info().id);
    assert!(
        !kb.play(0, &[0xF8]),
        "an unplugged keyboard plays into nothing"
    );
    assert_eq!(
        w.poll(&sys),
        vec![PortChange::InputRemoved(kb.info().clone())]
    );
    assert!(w.inputs().is_empty());
}

#[test]
fn virtual_ports_are_seen_by_other_programs_the_other_way_round() {
    let sys = MemoryMidi::new();
    // Our virtual input: another program plays into it as an output.
    let (cb, q) = input_queue(8);
    let vin = sys.create_virtual_input("Jam In", cb).unwrap();
    let listed = sys.outputs().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "Jam In");
    let mut other = sys.open_output(&listed[0].id).unwrap();
    other.send(&MidiMessage::Start).unwrap();
    assert_eq!(q.events.try_recv().unwrap().message, MidiMessage::Start);
    drop(vin);
    assert!(sys.outputs().unwrap().is_empty());

    // Our virtual output: another program listens to it as an input.
    let mut vout = sys.create_virtual_output("Jam Out").unwrap();
    let listed = sys.inputs().unwrap();
    assert_eq!(listed[0].name, "Jam Out");
    let (cb, q) = input_queue(8);
    let _listener = sys.open_input(&listed[0].id, cb).unwrap();
    vout.send(&MidiMessage::Stop).unwrap();
    assert_eq!(q.events.try_recv().unwrap().message, MidiMessage::Stop);
}

#[test]
fn no_midi_system_is_a_state_not_a_failure() {
    let sys = MemoryMidi::unavailable("no ALSA sequencer");
    assert_eq!(
        sys.status(),
        MidiStatus::Unavailable {
            reason: "no ALSA sequencer".into()
        }
    );
    assert!(matches!(sys.inputs(), Err(MidiError::NoMidiSystem(_))));
    let (cb, _q) = input_queue(1);
    assert!(sys.create_virtual_input("x", cb).is_err());
    let mut w = PortWatcher::new();
    assert!(matches!(
        &w.poll(&sys)[..],
        [PortChange::Status(MidiStatus::Unavailable { .. })]
    ));
}

/// The OS system, whatever this machine has: without ALSA every call says
/// "no MIDI system"; with it, listing works. Never a panic.
#[cfg(feature = "midir")]
#[test]
fn the_midir_system_reports_what_the_machine_has() {
    let sys = midi::midir_ports::MidirSystem::new("jam-test");
    match sys.status() {
        MidiStatus::Unavailable { reason } => {
            assert!(!reason.is_empty());
            assert!(matches!(sys.inputs(), Err(MidiError::NoMidiSystem(_))));
            assert!(matches!(sys.outputs(), Err(MidiError::NoMidiSystem(_))));
            let (cb, _q) = input_queue(1);
            assert!(matches!(
                sys.open_input("nope", cb),
                Err(MidiError::NoMidiSystem(_))
            ));
            assert!(sys.create_virtual_output("Jam Out").is_err());
        }
        MidiStatus::Available => {
            assert!(sys.inputs().is_ok());
            assert!(sys.outputs().is_ok());
            let (cb, _q) = input_queue(1);
            assert!(matches!(
                sys.open_input("no such port", cb),
                Err(MidiError::NoSuchPort(_))
            ));
        }
    }
}
