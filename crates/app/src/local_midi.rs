//! This computer's MIDI ports in the jam: what the chosen input plays goes
//! to every peer (through the host), and what peers play comes out of the
//! chosen output. The ports are found by the names the settings store; a
//! missing port or a machine without MIDI is a message, never a failure of
//! the jam.

use std::sync::Arc;
use std::time::Duration;

use jam::host::{HostControl, MidiEvent};
use midi::ports::{input_queue, MidiSystem, OutputPort};
use midi::MidiMessage;
use tokio::sync::broadcast::error::RecvError;

/// Input events waiting between the MIDI backend's thread and the host.
const INPUT_QUEUE: usize = 4096;

/// The app's own virtual ports, as other programs see them: one to play
/// into the jam, one to hear it.
pub const VIRTUAL_IN: &str = "MIDI Jam in";
pub const VIRTUAL_OUT: &str = "MIDI Jam out";

/// The open ports; closing happens on drop.
pub struct LocalMidi {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for LocalMidi {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens `input` and `output` (port names; empty: none) of `system` and
/// connects them to the host. Returns the ports and what the user should
/// be told (a port not found, no MIDI system).
pub fn start(
    system: Arc<dyn MidiSystem>,
    host: HostControl,
    input: &str,
    output: &str,
) -> (LocalMidi, Vec<String>) {
    let mut notes = Vec::new();
    let mut local = LocalMidi {
        tasks: Vec::new(),
        stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    if let midi::ports::MidiStatus::Unavailable { reason } = system.status() {
        if !input.is_empty() || !output.is_empty() {
            notes.push(format!(
                "No MIDI system found ({reason}); the jam goes on without this computer's MIDI ports."
            ));
        }
        return (local, notes);
    }
    // The app's own ports, so a DAW or soft synth on this computer can play
    // into the jam and listen to it. Where the platform has no virtual
    // ports (Windows) this is skipped without a word.
    let (callback, queue) = input_queue(INPUT_QUEUE);
    match system.create_virtual_input(VIRTUAL_IN, callback) {
        Ok(conn) => pump(conn, queue, host.clone(), local.stop.clone()),
        Err(e) => tracing::info!("no virtual MIDI input: {e}"),
    }
    match system.create_virtual_output(VIRTUAL_OUT) {
        Ok(out) => local
            .tasks
            .push(tokio::spawn(play(host.midi_events(), out))),
        Err(e) => tracing::info!("no virtual MIDI output: {e}"),
    }
    if !input.is_empty() {
        let (callback, queue) = input_queue(INPUT_QUEUE);
        match id_of(system.inputs(), input).map(|id| system.open_input(&id, callback)) {
            None => notes.push(format!("MIDI input \"{input}\" is not connected.")),
            Some(Err(e)) => notes.push(format!("MIDI input \"{input}\": {e}")),
            Some(Ok(conn)) => pump(conn, queue, host.clone(), local.stop.clone()),
        }
    }
    if !output.is_empty() {
        match id_of(system.outputs(), output).map(|id| system.open_output(&id)) {
            None => notes.push(format!("MIDI output \"{output}\" is not connected.")),
            Some(Err(e)) => notes.push(format!("MIDI output \"{output}\": {e}")),
            Some(Ok(out)) => local
                .tasks
                .push(tokio::spawn(play(host.midi_events(), out))),
        }
    }
    (local, notes)
}

/// The id of the port called `name` in a listing, if it is there.
fn id_of(
    list: Result<Vec<midi::ports::PortInfo>, midi::ports::MidiError>,
    name: &str,
) -> Option<String> {
    list.ok()?
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.id)
}

/// Hands what an input port plays to the host, on a plain thread: the
/// queue's receiver blocks, and the port (owned there) closes when it ends.
fn pump(
    conn: Box<dyn midi::ports::InputPort>,
    queue: midi::ports::InputQueue,
    host: HostControl,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let _ = std::thread::Builder::new()
        .name("midi-input".into())
        .spawn(move || {
            let _conn = conn;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match queue.events.recv_timeout(Duration::from_millis(200)) {
                    Ok(ev) => {
                        let _ = host.send_midi_messages(midi::wall_us(), vec![ev.message]);
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(_) => break,
                }
            }
        });
}

/// Plays what the host routes to this computer. When this falls behind and
/// events were skipped, a note-off may be among them: everything is
/// silenced (All Notes Off and sustain off on every channel) rather than
/// leave a note hanging.
async fn play(
    mut events: tokio::sync::broadcast::Receiver<MidiEvent>,
    mut out: Box<dyn OutputPort>,
) {
    loop {
        match events.recv().await {
            Ok(ev) => {
                let _ = out.send(&ev.message);
            }
            Err(RecvError::Lagged(_)) => {
                for ch in 0..16 {
                    let _ = out.send(&MidiMessage::control(ch, 64, 0));
                    let _ = out.send(&MidiMessage::control(ch, 123, 0));
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
}
