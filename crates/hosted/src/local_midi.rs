//! This computer's MIDI ports in a jam: what the chosen input plays goes
//! into the jam, and what the jam plays comes out of the chosen output. The
//! jam is either the one this service hosts ([`HostControl`]) or one the app
//! joined (the app's `joined_midi`); both look the same from here
//! ([`JamPorts`]).
//!
//! The ports are found by the names the settings store, and followed: a
//! keyboard unplugged mid-jam is a message on the status line, and it plays
//! again as soon as it is plugged back in (the OS lists are compared once a
//! second, [`WATCH_EVERY`]; not every OS MIDI API notifies). A missing port
//! or a machine without MIDI is a message, never a failure of the jam.
//!
//! Closing ([`LocalMidi::close`]) first plays what is already queued for
//! the outputs: when a jam stops, its last events are the Note Offs of
//! everything still sounding, and an output closed before them would be
//! left with stuck notes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jam::host::{HostControl, MidiEvent};
use midi::ports::{input_queue, MidiStatus, MidiSystem, OutputPort, PortChange, PortWatcher};
use midi::MidiMessage;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::view::Level;

/// Input events waiting between the MIDI backend's thread and the jam.
const INPUT_QUEUE: usize = 4096;

/// How often the OS port lists are compared, to follow unplugged and
/// replugged ports.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How long closing waits for the outputs to play what was queued.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// The app's own virtual ports, as other programs see them: one to play
/// into the jam, one to hear it.
pub const VIRTUAL_IN: &str = "MIDI Jam in";
pub const VIRTUAL_OUT: &str = "MIDI Jam out";

/// Status-line messages from the ports (a port unplugged, back again).
pub type Notices = mpsc::Sender<(Level, String)>;

/// A jam as the local ports see it.
pub trait JamPorts: Send + Sync + 'static {
    /// What an input played, into the jam. Called on the port's reader
    /// thread: must not block (a full queue drops the message).
    fn play(&self, time_us: u64, message: MidiMessage);
    /// What the outputs sound from now on. When a receiver lags it has lost
    /// messages and silences its output (see [`JamPorts`]'s users).
    fn listen(&self) -> broadcast::Receiver<MidiEvent>;
    /// Releases every note and pedal this jam sounds here and holds
    /// elsewhere (the panic button). The host's own jam does it through
    /// [`HostControl::panic`] instead, so this defaults to nothing.
    fn panic(&self) {}
}

impl JamPorts for HostControl {
    fn play(&self, time_us: u64, message: MidiMessage) {
        let _ = self.send_midi_messages(time_us, vec![message]);
    }

    fn listen(&self) -> broadcast::Receiver<MidiEvent> {
        self.midi_events()
    }
}

/// The open ports. [`LocalMidi::close`] closes them after the outputs have
/// played what was queued; dropping closes them at once.
pub struct LocalMidi {
    finish: watch::Sender<bool>,
    manager: Option<JoinHandle<()>>,
}

impl LocalMidi {
    /// Plays what is already queued for the outputs, then closes every port.
    pub async fn close(mut self) {
        let _ = self.finish.send(true);
        if let Some(mut m) = self.manager.take() {
            if tokio::time::timeout(CLOSE_WAIT * 2, &mut m).await.is_err() {
                m.abort();
            }
        }
    }
}

impl Drop for LocalMidi {
    fn drop(&mut self) {
        let _ = self.finish.send(true);
        if let Some(m) = self.manager.take() {
            m.abort();
        }
    }
}

/// An input port being read on its own thread; stops (and closes the port)
/// when dropped.
struct Pump {
    stop: Arc<AtomicBool>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// An output port being played by its own task; aborted when dropped.
struct Player {
    task: Option<JoinHandle<()>>,
}

impl Player {
    /// Waits (bounded) for the task to play what is queued and end.
    async fn finish(mut self) {
        if let Some(mut t) = self.task.take() {
            if tokio::time::timeout(CLOSE_WAIT, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Everything the manager task owns.
struct Ports {
    system: Arc<dyn MidiSystem>,
    jam: Arc<dyn JamPorts>,
    input: String,
    output: String,
    notices: Notices,
    finish: watch::Receiver<bool>,
    watcher: PortWatcher,
    virtual_in: Option<Pump>,
    virtual_out: Option<Player>,
    chosen_in: Option<Pump>,
    chosen_out: Option<Player>,
}

/// Opens `input` and `output` (port names; empty: none) of `system`, plus
/// the app's virtual ports, and connects them to `jam`. Must run inside a
/// Tokio runtime. What the user should be told (a port not found, no MIDI
/// system, later: unplugged, back) goes to `notices`.
pub fn start(
    system: Arc<dyn MidiSystem>,
    jam: Arc<dyn JamPorts>,
    input: &str,
    output: &str,
    notices: Notices,
) -> LocalMidi {
    let (finish_tx, finish) = watch::channel(false);
    let mut ports = Ports {
        system,
        jam,
        input: input.to_owned(),
        output: output.to_owned(),
        notices,
        finish,
        watcher: PortWatcher::new(),
        virtual_in: None,
        virtual_out: None,
        chosen_in: None,
        chosen_out: None,
    };
    if let MidiStatus::Unavailable { reason } = ports.system.status() {
        if !input.is_empty() || !output.is_empty() {
            ports.notify(
                Level::Warning,
                format!(
                    "No MIDI system found ({reason}); the jam goes on without this computer's MIDI ports."
                ),
            );
        }
        return LocalMidi {
            finish: finish_tx,
            manager: None,
        };
    }
    ports.open_virtual();
    // The baseline for following ports: what is plugged in now.
    ports.watcher.poll(ports.system.as_ref());
    if !ports.input.is_empty() {
        if let Err(e) = ports.open_input() {
            ports.notify(Level::Warning, e);
        }
    }
    if !ports.output.is_empty() {
        if let Err(e) = ports.open_output() {
            ports.notify(Level::Warning, e);
        }
    }
    let manager = tokio::spawn(ports.run());
    LocalMidi {
        finish: finish_tx,
        manager: Some(manager),
    }
}

impl Ports {
    fn notify(&self, level: Level, message: String) {
        let _ = self.notices.try_send((level, message));
    }

    /// The app's own ports, so a DAW or soft synth on this computer can
    /// play into the jam and listen to it. Where the platform has no
    /// virtual ports (Windows) this is skipped without a word.
    fn open_virtual(&mut self) {
        let (callback, queue) = input_queue(INPUT_QUEUE);
        match self.system.create_virtual_input(VIRTUAL_IN, callback) {
            Ok(conn) => self.virtual_in = Some(pump(conn, queue, self.jam.clone())),
            Err(e) => tracing::info!("no virtual MIDI input: {e}"),
        }
        match self.system.create_virtual_output(VIRTUAL_OUT) {
            Ok(out) => self.virtual_out = Some(self.player(out)),
            Err(e) => tracing::info!("no virtual MIDI output: {e}"),
        }
    }

    fn player(&self, out: Box<dyn OutputPort>) -> Player {
        Player {
            task: Some(tokio::spawn(play(
                self.jam.listen(),
                out,
                self.finish.clone(),
            ))),
        }
    }

    /// Opens the chosen input; the error is the sentence to show.
    fn open_input(&mut self) -> Result<(), String> {
        let name = &self.input;
        let id = id_of(self.watcher.inputs(), name).ok_or_else(|| {
            format!("MIDI input \"{name}\" is not connected; it will be used as soon as it is plugged in.")
        })?;
        let (callback, queue) = input_queue(INPUT_QUEUE);
        let conn = self
            .system
            .open_input(&id, callback)
            .map_err(|e| format!("MIDI input \"{name}\": {e}"))?;
        self.chosen_in = Some(pump(conn, queue, self.jam.clone()));
        Ok(())
    }

    /// Opens the chosen output; the error is the sentence to show.
    fn open_output(&mut self) -> Result<(), String> {
        let name = &self.output;
        let id = id_of(self.watcher.outputs(), name).ok_or_else(|| {
            format!("MIDI output \"{name}\" is not connected; it will be used as soon as it is plugged in.")
        })?;
        let out = self
            .system
            .open_output(&id)
            .map_err(|e| format!("MIDI output \"{name}\": {e}"))?;
        self.chosen_out = Some(self.player(out));
        Ok(())
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut finish = self.finish.clone();
        loop {
            tokio::select! {
                r = finish.wait_for(|f| *f) => {
                    let _ = r;
                    break;
                }
                _ = tick.tick() => {
                    let changes = self.watcher.poll(self.system.as_ref());
                    for c in changes {
                        self.on_change(c);
                    }
                }
            }
        }
        // Inputs first (nothing new comes in), then let the outputs play
        // what is queued: the Note Offs of a jam that just ended.
        self.virtual_in = None;
        self.chosen_in = None;
        for p in [self.chosen_out.take(), self.virtual_out.take()]
            .into_iter()
            .flatten()
        {
            p.finish().await;
        }
    }

    /// Follows the chosen ports as they are unplugged and plugged back in.
    fn on_change(&mut self, change: PortChange) {
        match change {
            PortChange::InputRemoved(p) if p.name == self.input && self.chosen_in.is_some() => {
                self.chosen_in = None;
                self.notify(
                    Level::Warning,
                    format!(
                        "MIDI input \"{}\" was unplugged; it will be used again as soon as it is back.",
                        p.name
                    ),
                );
            }
            PortChange::InputAdded(p) if p.name == self.input && self.chosen_in.is_none() => {
                match self.open_input() {
                    Ok(()) => self.notify(
                        Level::Info,
                        format!(
                            "MIDI input \"{}\" is connected; it plays into the jam.",
                            p.name
                        ),
                    ),
                    Err(e) => self.notify(Level::Warning, e),
                }
            }
            PortChange::OutputRemoved(p) if p.name == self.output && self.chosen_out.is_some() => {
                self.chosen_out = None;
                self.notify(
                    Level::Warning,
                    format!(
                        "MIDI output \"{}\" was unplugged; the jam plays on it again as soon as it is back.",
                        p.name
                    ),
                );
            }
            PortChange::OutputAdded(p) if p.name == self.output && self.chosen_out.is_none() => {
                match self.open_output() {
                    Ok(()) => self.notify(
                        Level::Info,
                        format!(
                            "MIDI output \"{}\" is connected; the jam plays on it.",
                            p.name
                        ),
                    ),
                    Err(e) => self.notify(Level::Warning, e),
                }
            }
            _ => {}
        }
    }
}

/// The id of the port called `name` in a listing, if it is there.
fn id_of(list: &[midi::ports::PortInfo], name: &str) -> Option<String> {
    list.iter().find(|p| p.name == name).map(|p| p.id.clone())
}

/// Hands what an input port plays to the jam, on a plain thread: the
/// queue's receiver blocks, and the port (owned there) closes when the
/// returned [`Pump`] is dropped.
fn pump(
    conn: Box<dyn midi::ports::InputPort>,
    queue: midi::ports::InputQueue,
    jam: Arc<dyn JamPorts>,
) -> Pump {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = std::thread::Builder::new()
        .name("midi-input".into())
        .spawn(move || {
            let _conn = conn;
            while !flag.load(Ordering::SeqCst) {
                match queue.events.recv_timeout(Duration::from_millis(200)) {
                    Ok(ev) => jam.play(midi::wall_us(), ev.message),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(_) => break,
                }
            }
        });
    Pump { stop }
}

/// Silences an output: sustain off and All Notes Off on every channel.
fn silence(out: &mut Box<dyn OutputPort>) {
    for ch in 0..16 {
        let _ = out.send(&MidiMessage::control(ch, 64, 0));
        let _ = out.send(&MidiMessage::control(ch, 123, 0));
    }
}

/// Plays what the jam routes to this computer. When this falls behind and
/// events were skipped, a note-off may be among them: everything is
/// silenced rather than leave a note hanging. Once `finish` is set, what
/// is already queued is played and the task ends.
async fn play(
    mut events: broadcast::Receiver<MidiEvent>,
    mut out: Box<dyn OutputPort>,
    mut finish: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            ev = events.recv() => match ev {
                Ok(ev) => {
                    let _ = out.send(&ev.message);
                }
                Err(RecvError::Lagged(_)) => silence(&mut out),
                Err(RecvError::Closed) => return,
            },
            _ = finish.wait_for(|f| *f) => break,
        }
    }
    loop {
        match events.try_recv() {
            Ok(ev) => {
                let _ = out.send(&ev.message);
            }
            Err(TryRecvError::Lagged(_)) => silence(&mut out),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}
