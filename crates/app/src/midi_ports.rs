//! The MIDI ports the settings pane offers. Where the system has no MIDI
//! (no ALSA sequencer, as on a server or in a container) the pane says so
//! instead of failing: the jam still hosts, joins and relays without it.

use serde::Serialize;

/// The ports found, or why there are none.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MidiPorts {
    /// False when no MIDI system could be opened.
    pub available: bool,
    /// A sentence for the pane when `available` is false.
    pub message: Option<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// Lists input and output ports by name (blocking: the backend may take a
/// moment to answer).
pub fn list() -> MidiPorts {
    let input = midir::MidiInput::new("midi-jam-list");
    let output = midir::MidiOutput::new("midi-jam-list");
    match (input, output) {
        (Ok(i), Ok(o)) => MidiPorts {
            available: true,
            message: None,
            inputs: i
                .ports()
                .iter()
                .filter_map(|p| i.port_name(p).ok())
                .collect(),
            outputs: o
                .ports()
                .iter()
                .filter_map(|p| o.port_name(p).ok())
                .collect(),
        },
        (Err(e), _) => none(&e.to_string()),
        (_, Err(e)) => none(&e.to_string()),
    }
}

fn none(why: &str) -> MidiPorts {
    MidiPorts {
        available: false,
        message: Some(format!(
            "No MIDI system found ({why}). The jam works without one; connect a MIDI device or start a MIDI service to play from here."
        )),
        inputs: Vec::new(),
        outputs: Vec::new(),
    }
}
