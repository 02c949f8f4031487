//! MIDI ports behind a small trait, so the app runs the same with an OS
//! MIDI system ([`crate::midir_ports`]), in memory ([`crate::memory`]: tests,
//! and machines without MIDI), or with none at all.
//!
//! "No MIDI system" is a value ([`MidiStatus::Unavailable`]) and every call
//! returns an error instead of panicking: a jam hosts, joins and relays
//! without any MIDI port, and the UI says why there are none.
//!
//! Ports come and go (a USB keyboard is unplugged); OS MIDI APIs do not all
//! notify, so [`PortWatcher`] diffs the lists between polls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::message::MidiMessage;

/// A port as listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortInfo {
    /// What [`MidiSystem::open_input`] / [`MidiSystem::open_output`] take.
    /// Stable while the port exists; it may change when it reappears.
    pub id: String,
    /// The name to show.
    pub name: String,
}

/// Whether a MIDI system is there at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MidiStatus {
    Available,
    /// No MIDI system (no ALSA sequencer, say), with the reason to show.
    Unavailable {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MidiError {
    #[error("no MIDI system: {0}")]
    NoMidiSystem(String),
    #[error("no MIDI port {0:?} (it may have been unplugged)")]
    NoSuchPort(String),
    #[error("virtual MIDI ports are not supported here")]
    VirtualUnsupported,
    #[error("could not connect to the MIDI port: {0}")]
    Connect(String),
    #[error("could not send to the MIDI port: {0}")]
    Send(String),
}

/// One message from an input port, with the time it arrived in
/// microseconds on the port's own clock (monotonic, arbitrary origin, fixed
/// for the life of the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputEvent {
    pub time_us: u64,
    pub message: MidiMessage,
}

/// Called for each message an input port delivers, on the backend's own
/// thread: it must return quickly (hand the event to a queue, see
/// [`input_queue`]).
pub type InputCallback = Box<dyn FnMut(InputEvent) + Send + 'static>;

/// An open input; closes when dropped.
pub trait InputPort: Send {
    fn info(&self) -> &PortInfo;
}

/// An open output; closes when dropped.
pub trait OutputPort: Send {
    fn info(&self) -> &PortInfo;
    fn send(&mut self, message: &MidiMessage) -> Result<(), MidiError>;
}

/// A MIDI system: lists ports, opens them, makes virtual ones.
pub trait MidiSystem: Send + Sync {
    fn status(&self) -> MidiStatus;
    fn inputs(&self) -> Result<Vec<PortInfo>, MidiError>;
    fn outputs(&self) -> Result<Vec<PortInfo>, MidiError>;
    fn open_input(
        &self,
        id: &str,
        on_message: InputCallback,
    ) -> Result<Box<dyn InputPort>, MidiError>;
    fn open_output(&self, id: &str) -> Result<Box<dyn OutputPort>, MidiError>;
    /// A port other programs see as a MIDI *output* they can play into;
    /// what they play arrives at `on_message`.
    fn create_virtual_input(
        &self,
        name: &str,
        on_message: InputCallback,
    ) -> Result<Box<dyn InputPort>, MidiError>;
    /// A port other programs see as a MIDI *input* they can listen to.
    fn create_virtual_output(&self, name: &str) -> Result<Box<dyn OutputPort>, MidiError>;
}

/// The receiving end of [`input_queue`], with a count of what did not fit.
pub struct InputQueue {
    pub events: Receiver<InputEvent>,
    dropped: Arc<AtomicU64>,
}

impl InputQueue {
    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A bounded queue between an input port's callback (the backend's thread,
/// which must never block) and the app: a full queue drops the event and
/// counts it rather than stall the MIDI system.
pub fn input_queue(capacity: usize) -> (InputCallback, InputQueue) {
    let (tx, rx): (SyncSender<InputEvent>, Receiver<InputEvent>) =
        std::sync::mpsc::sync_channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    let callback: InputCallback = Box::new(move |ev| match tx.try_send(ev) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    (
        callback,
        InputQueue {
            events: rx,
            dropped,
        },
    )
}

/// A change seen between two polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortChange {
    InputAdded(PortInfo),
    InputRemoved(PortInfo),
    OutputAdded(PortInfo),
    OutputRemoved(PortInfo),
    /// The MIDI system became available or went away.
    Status(MidiStatus),
}

/// Notices ports appearing and disappearing by polling the lists.
#[derive(Debug, Clone, Default)]
pub struct PortWatcher {
    status: Option<MidiStatus>,
    inputs: Vec<PortInfo>,
    outputs: Vec<PortInfo>,
}

impl PortWatcher {
    pub fn new() -> PortWatcher {
        PortWatcher::default()
    }

    /// Lists again and reports what changed since the last poll (the first
    /// poll reports the status and every port as added).
    pub fn poll(&mut self, system: &dyn MidiSystem) -> Vec<PortChange> {
        let mut out = Vec::new();
        let status = system.status();
        if self.status.as_ref() != Some(&status) {
            out.push(PortChange::Status(status.clone()));
            self.status = Some(status);
        }
        let inputs = system.inputs().unwrap_or_default();
        let outputs = system.outputs().unwrap_or_default();
        diff(
            &self.inputs,
            &inputs,
            &mut out,
            PortChange::InputRemoved,
            PortChange::InputAdded,
        );
        diff(
            &self.outputs,
            &outputs,
            &mut out,
            PortChange::OutputRemoved,
            PortChange::OutputAdded,
        );
        self.inputs = inputs;
        self.outputs = outputs;
        out
    }

    pub fn inputs(&self) -> &[PortInfo] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[PortInfo] {
        &self.outputs
    }
}

fn diff(
    old: &[PortInfo],
    new: &[PortInfo],
    out: &mut Vec<PortChange>,
    removed: fn(PortInfo) -> PortChange,
    added: fn(PortInfo) -> PortChange,
) {
    out.extend(
        old.iter()
            .filter(|p| !new.contains(p))
            .cloned()
            .map(removed),
    );
    out.extend(new.iter().filter(|p| !old.contains(p)).cloned().map(added));
}
