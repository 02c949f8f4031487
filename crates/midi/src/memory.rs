//! A MIDI system in memory: for tests (play into an input, see what an
//! output received), and for machines without MIDI, where it keeps the app's
//! port code on one path.
//!
//! Devices are added by the test: [`MemoryMidi::add_input`] makes a port the
//! app can open as an input, with a handle that plays raw bytes into it
//! (running status, split SysEx and all, through the same [`Parser`] as a
//! real port); [`MemoryMidi::add_output`] makes a port the app can open as
//! an output, with a handle that shows what arrived. Virtual ports behave as
//! on ALSA: a virtual input is listed among the outputs (others play into
//! it), a virtual output among the inputs.
//!
//! Callbacks run on the caller's thread while the system is locked, like a
//! backend thread: they must not call back into the same [`MemoryMidi`].

use std::sync::{Arc, Mutex, MutexGuard};

use crate::message::{MidiMessage, Parser};
use crate::ports::{
    InputCallback, InputEvent, InputPort, MidiError, MidiStatus, MidiSystem, OutputPort, PortInfo,
};

/// Messages kept per output for tests to read; older ones are dropped.
pub const MEMORY_OUTPUT_KEEP: usize = 65_536;

struct Listener {
    conn: u64,
    parser: Parser,
    callback: InputCallback,
}

/// A port the app can open as an input.
struct Source {
    info: PortInfo,
    listeners: Vec<Listener>,
}

/// A port the app can open as an output.
struct Sink {
    info: PortInfo,
    received: Vec<MidiMessage>,
    /// A virtual input: what is played into it goes here.
    virtual_callback: Option<InputCallback>,
}

#[derive(Default)]
struct Hub {
    unavailable: Option<String>,
    next: u64,
    sources: Vec<Source>,
    sinks: Vec<Sink>,
}

impl Hub {
    fn id(&mut self, name: &str) -> PortInfo {
        self.next += 1;
        PortInfo {
            id: format!("mem:{}", self.next),
            name: name.to_owned(),
        }
    }

    fn check(&self) -> Result<(), MidiError> {
        match &self.unavailable {
            Some(why) => Err(MidiError::NoMidiSystem(why.clone())),
            None => Ok(()),
        }
    }

    fn play(&mut self, id: &str, time_us: u64, bytes: &[u8]) -> bool {
        let Some(src) = self.sources.iter_mut().find(|s| s.info.id == id) else {
            return false;
        };
        for l in &mut src.listeners {
            let cb = &mut l.callback;
            l.parser
                .feed(bytes, |message| cb(InputEvent { time_us, message }));
        }
        true
    }

    fn deliver(&mut self, id: &str, message: &MidiMessage) -> Result<(), MidiError> {
        let Some(sink) = self.sinks.iter_mut().find(|s| s.info.id == id) else {
            return Err(MidiError::NoSuchPort(id.to_owned()));
        };
        if sink.received.len() >= MEMORY_OUTPUT_KEEP {
            sink.received.remove(0);
        }
        sink.received.push(message.clone());
        if let Some(cb) = sink.virtual_callback.as_mut() {
            cb(InputEvent {
                time_us: 0,
                message: message.clone(),
            });
        }
        Ok(())
    }
}

/// An in-memory MIDI system; clones share it.
#[derive(Clone, Default)]
pub struct MemoryMidi {
    hub: Arc<Mutex<Hub>>,
}

impl std::fmt::Debug for MemoryMidi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hub = self.lock();
        f.debug_struct("MemoryMidi")
            .field("unavailable", &hub.unavailable)
            .field("inputs", &hub.sources.len())
            .field("outputs", &hub.sinks.len())
            .finish()
    }
}

impl MemoryMidi {
    pub fn new() -> MemoryMidi {
        MemoryMidi::default()
    }

    /// A system that reports "no MIDI" like a machine without ALSA.
    pub fn unavailable(reason: &str) -> MemoryMidi {
        let m = MemoryMidi::new();
        m.lock().unavailable = Some(reason.to_owned());
        m
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plugs in a device the app can read from (a keyboard).
    pub fn add_input(&self, name: &str) -> MemoryInput {
        let mut hub = self.lock();
        let info = hub.id(name);
        hub.sources.push(Source {
            info: info.clone(),
            listeners: Vec::new(),
        });
        MemoryInput {
            midi: self.clone(),
            info,
        }
    }

    /// Plugs in a device the app can play into (a synth).
    pub fn add_output(&self, name: &str) -> MemoryOutput {
        let mut hub = self.lock();
        let info = hub.id(name);
        hub.sinks.push(Sink {
            info: info.clone(),
            received: Vec::new(),
            virtual_callback: None,
        });
        MemoryOutput {
            midi: self.clone(),
            info,
        }
    }

    /// Unplugs a port (input or output); open connections to it go dead.
    pub fn remove(&self, id: &str) {
        let mut hub = self.lock();
        hub.sources.retain(|s| s.info.id != id);
        hub.sinks.retain(|s| s.info.id != id);
    }
}

/// Test handle of an input device.
#[derive(Clone)]
pub struct MemoryInput {
    midi: MemoryMidi,
    info: PortInfo,
}

impl MemoryInput {
    pub fn info(&self) -> &PortInfo {
        &self.info
    }

    /// The device sends these raw bytes at `time_us` (its clock). Returns
    /// `false` once it is unplugged.
    pub fn play(&self, time_us: u64, bytes: &[u8]) -> bool {
        self.midi.lock().play(&self.info.id, time_us, bytes)
    }

    /// Whether the app has it open.
    pub fn is_open(&self) -> bool {
        let hub = self.midi.lock();
        hub.sources
            .iter()
            .any(|s| s.info.id == self.info.id && !s.listeners.is_empty())
    }
}

/// Test handle of an output device.
#[derive(Clone)]
pub struct MemoryOutput {
    midi: MemoryMidi,
    info: PortInfo,
}

impl MemoryOutput {
    pub fn info(&self) -> &PortInfo {
        &self.info
    }

    /// Everything it received so far (the last [`MEMORY_OUTPUT_KEEP`]).
    pub fn received(&self) -> Vec<MidiMessage> {
        let hub = self.midi.lock();
        hub.sinks
            .iter()
            .find(|s| s.info.id == self.info.id)
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// Everything it received, and forgets it.
    pub fn take(&self) -> Vec<MidiMessage> {
        let mut hub = self.midi.lock();
        hub.sinks
            .iter_mut()
            .find(|s| s.info.id == self.info.id)
            .map(|s| std::mem::take(&mut s.received))
            .unwrap_or_default()
    }
}

struct MemoryInputConn {
    midi: MemoryMidi,
    info: PortInfo,
    conn: u64,
    /// A virtual input owns its port: dropping it removes the port.
    owns_port: bool,
}

impl InputPort for MemoryInputConn {
    fn info(&self) -> &PortInfo {
        &self.info
    }
}

impl Drop for MemoryInputConn {
    fn drop(&mut self) {
        let mut hub = self.midi.lock();
        if self.owns_port {
            hub.sinks.retain(|s| s.info.id != self.info.id);
        } else if let Some(src) = hub.sources.iter_mut().find(|s| s.info.id == self.info.id) {
            src.listeners.retain(|l| l.conn != self.conn);
        }
    }
}

struct MemoryOutputConn {
    midi: MemoryMidi,
    info: PortInfo,
    /// A virtual output: sends go to the listeners of the source it made.
    owns_port: bool,
}

impl OutputPort for MemoryOutputConn {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn send(&mut self, message: &MidiMessage) -> Result<(), MidiError> {
        let mut hub = self.midi.lock();
        if self.owns_port {
            let bytes = message.to_vec();
            if hub.play(&self.info.id, 0, &bytes) {
                Ok(())
            } else {
                Err(MidiError::NoSuchPort(self.info.id.clone()))
            }
        } else {
            hub.deliver(&self.info.id, message)
        }
    }
}

impl Drop for MemoryOutputConn {
    fn drop(&mut self) {
        if self.owns_port {
            let mut hub = self.midi.lock();
            hub.sources.retain(|s| s.info.id != self.info.id);
        }
    }
}

impl MidiSystem for MemoryMidi {
    fn status(&self) -> MidiStatus {
        match &self.lock().unavailable {
            Some(reason) => MidiStatus::Unavailable {
                reason: reason.clone(),
            },
            None => MidiStatus::Available,
        }
    }

    fn inputs(&self) -> Result<Vec<PortInfo>, MidiError> {
        let hub = self.lock();
        hub.check()?;
        Ok(hub.sources.iter().map(|s| s.info.clone()).collect())
    }

    fn outputs(&self) -> Result<Vec<PortInfo>, MidiError> {
        let hub = self.lock();
        hub.check()?;
        Ok(hub.sinks.iter().map(|s| s.info.clone()).collect())
    }

    fn open_input(
        &self,
        id: &str,
        on_message: InputCallback,
    ) -> Result<Box<dyn InputPort>, MidiError> {
        let mut hub = self.lock();
        hub.check()?;
        hub.next += 1;
        let conn = hub.next;
        let src = hub
            .sources
            .iter_mut()
            .find(|s| s.info.id == id)
            .ok_or_else(|| MidiError::NoSuchPort(id.to_owned()))?;
        src.listeners.push(Listener {
            conn,
            parser: Parser::new(),
            callback: on_message,
        });
        Ok(Box::new(MemoryInputConn {
            midi: self.clone(),
            info: src.info.clone(),
            conn,
            owns_port: false,
        }))
    }

    fn open_output(&self, id: &str) -> Result<Box<dyn OutputPort>, MidiError> {
        let hub = self.lock();
        hub.check()?;
        let info = hub
            .sinks
            .iter()
            .find(|s| s.info.id == id)
            .map(|s| s.info.clone())
            .ok_or_else(|| MidiError::NoSuchPort(id.to_owned()))?;
        Ok(Box::new(MemoryOutputConn {
            midi: self.clone(),
            info,
            owns_port: false,
        }))
    }

    fn create_virtual_input(
        &self,
        name: &str,
        on_message: InputCallback,
    ) -> Result<Box<dyn InputPort>, MidiError> {
        let mut hub = self.lock();
        hub.check()?;
        let info = hub.id(name);
        hub.sinks.push(Sink {
            info: info.clone(),
            received: Vec::new(),
            virtual_callback: Some(on_message),
        });
        Ok(Box::new(MemoryInputConn {
            midi: self.clone(),
            info,
            conn: 0,
            owns_port: true,
        }))
    }

    fn create_virtual_output(&self, name: &str) -> Result<Box<dyn OutputPort>, MidiError> {
        let mut hub = self.lock();
        hub.check()?;
        let info = hub.id(name);
        hub.sources.push(Source {
            info: info.clone(),
            listeners: Vec::new(),
        });
        Ok(Box::new(MemoryOutputConn {
            midi: self.clone(),
            info,
            owns_port: true,
        }))
    }
}
