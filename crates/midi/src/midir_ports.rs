//! The OS MIDI system through midir 0.11 (ALSA on Linux, CoreMIDI on
//! macOS, WinMM on Windows; JACK when midir is built with its `jack`
//! feature).
//!
//! midir's `MidiInput::new` fails with `InitError` where there is no MIDI
//! system (no ALSA sequencer in a container or on a server): that is
//! [`MidiStatus::Unavailable`] here, never a panic, and every call then
//! returns [`MidiError::NoMidiSystem`].
//!
//! midir's client objects are consumed by `connect`, so each open makes a
//! fresh client; listing keeps none open either (an ALSA client per poll is
//! cheap, and nothing stale is kept). Port ids are midir's own
//! (`MidiInputPort::id`), stable while a port exists.
//!
//! Input bytes go through a [`Parser`] per connection, so running status and
//! SysEx that an OS delivers in pieces (ALSA splits it into 256-byte chunks;
//! midir reassembles most of it) come out as whole messages.

use midir::{MidiInput, MidiInputConnection, MidiOutput, MidiOutputConnection};

use crate::message::{MidiMessage, Parser};
use crate::ports::{
    InputCallback, InputEvent, InputPort, MidiError, MidiStatus, MidiSystem, OutputPort, PortInfo,
};

/// The OS MIDI system, as a client named `client_name`.
#[derive(Debug, Clone)]
pub struct MidirSystem {
    client_name: String,
}

impl MidirSystem {
    /// Never fails: a machine without MIDI gives a system whose
    /// [`MidiSystem::status`] says so.
    pub fn new(client_name: &str) -> MidirSystem {
        MidirSystem {
            client_name: client_name.to_owned(),
        }
    }

    fn input(&self) -> Result<MidiInput, MidiError> {
        let mut input = MidiInput::new(&self.client_name)
            .map_err(|e| MidiError::NoMidiSystem(e.to_string()))?;
        // We want everything: SysEx, clock, active sensing. The router and
        // the output decide what to do with them.
        input.ignore(midir::Ignore::None);
        Ok(input)
    }

    fn output(&self) -> Result<MidiOutput, MidiError> {
        MidiOutput::new(&self.client_name).map_err(|e| MidiError::NoMidiSystem(e.to_string()))
    }
}

struct MidirInputConn {
    info: PortInfo,
    _conn: MidiInputConnection<()>,
}

impl InputPort for MidirInputConn {
    fn info(&self) -> &PortInfo {
        &self.info
    }
}

struct MidirOutputConn {
    info: PortInfo,
    conn: MidiOutputConnection,
}

impl OutputPort for MidirOutputConn {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn send(&mut self, message: &MidiMessage) -> Result<(), MidiError> {
        let conn = &mut self.conn;
        message
            .with_bytes(|b| conn.send(b))
            .map_err(|e| MidiError::Send(e.to_string()))
    }
}

/// The midir callback: raw bytes through a parser, whole messages out.
fn parsing(mut on_message: InputCallback) -> impl FnMut(u64, &[u8], &mut ()) + Send + 'static {
    let mut parser = Parser::new();
    move |time_us, bytes, _| {
        parser.feed(bytes, |message| on_message(InputEvent { time_us, message }));
    }
}

impl MidiSystem for MidirSystem {
    fn status(&self) -> MidiStatus {
        match MidiInput::new(&self.client_name) {
            Ok(_) => MidiStatus::Available,
            Err(e) => MidiStatus::Unavailable {
                reason: e.to_string(),
            },
        }
    }

    fn inputs(&self) -> Result<Vec<PortInfo>, MidiError> {
        let input = self.input()?;
        Ok(input
            .ports()
            .iter()
            .filter_map(|p| {
                Some(PortInfo {
                    id: p.id(),
                    name: input.port_name(p).ok()?,
                })
            })
            .collect())
    }

    fn outputs(&self) -> Result<Vec<PortInfo>, MidiError> {
        let output = self.output()?;
        Ok(output
            .ports()
            .iter()
            .filter_map(|p| {
                Some(PortInfo {
                    id: p.id(),
                    name: output.port_name(p).ok()?,
                })
            })
            .collect())
    }

    fn open_input(
        &self,
        id: &str,
        on_message: InputCallback,
    ) -> Result<Box<dyn InputPort>, MidiError> {
        let input = self.input()?;
        let port = input
            .find_port_by_id(id)
            .ok_or_else(|| MidiError::NoSuchPort(id.to_owned()))?;
        let name = input.port_name(&port).unwrap_or_else(|_| id.to_owned());
        let conn = input
            .connect(&port, "midi-jam input", parsing(on_message), ())
            .map_err(|e| MidiError::Connect(e.kind().to_string()))?;
        Ok(Box::new(MidirInputConn {
            info: PortInfo {
                id: id.to_owned(),
                name,
            },
            _conn: conn,
        }))
    }

    fn open_output(&self, id: &str) -> Result<Box<dyn OutputPort>, MidiError> {
        let output = self.output()?;
        let port = output
            .find_port_by_id(id)
            .ok_or_else(|| MidiError::NoSuchPort(id.to_owned()))?;
        let name = output.port_name(&port).unwrap_or_else(|_| id.to_owned());
        let conn = output
            .connect(&port, "midi-jam output")
            .map_err(|e| MidiError::Connect(e.kind().to_string()))?;
        Ok(Box::new(MidirOutputConn {
            info: PortInfo {
                id: id.to_owned(),
                name,
            },
            conn,
        }))
    }

    #[cfg(unix)]
    fn create_virtual_input(
        &self,
        name: &str,
        on_message: InputCallback,
    ) -> Result<Box<dyn InputPort>, MidiError> {
        use midir::os::unix::VirtualInput;
        let input = self.input()?;
        let conn = input
            .create_virtual(name, parsing(on_message), ())
            .map_err(|e| MidiError::Connect(e.kind().to_string()))?;
        Ok(Box::new(MidirInputConn {
            info: PortInfo {
                id: format!("virtual:{name}"),
                name: name.to_owned(),
            },
            _conn: conn,
        }))
    }

    #[cfg(not(unix))]
    fn create_virtual_input(
        &self,
        _name: &str,
        _on_message: InputCallback,
    ) -> Result<Box<dyn InputPort>, MidiError> {
        // WinMM has no virtual ports (loopMIDI and the like make them).
        Err(MidiError::VirtualUnsupported)
    }

    #[cfg(unix)]
    fn create_virtual_output(&self, name: &str) -> Result<Box<dyn OutputPort>, MidiError> {
        use midir::os::unix::VirtualOutput;
        let output = self.output()?;
        let conn = output
            .create_virtual(name)
            .map_err(|e| MidiError::Connect(e.kind().to_string()))?;
        Ok(Box::new(MidirOutputConn {
            info: PortInfo {
                id: format!("virtual:{name}"),
                name: name.to_owned(),
            },
            conn,
        }))
    }

    #[cfg(not(unix))]
    fn create_virtual_output(&self, _name: &str) -> Result<Box<dyn OutputPort>, MidiError> {
        Err(MidiError::VirtualUnsupported)
    }
}
