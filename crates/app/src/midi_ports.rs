//! The MIDI ports the settings pane offers. Where the system has no MIDI
//! (no ALSA sequencer, as on a server or in a container) the pane says so
//! instead of failing: the jam still hosts, joins and relays without it.
//! The names are those of the `midi` crate's ports, which is what the jam
//! opens them by.

use midi::ports::{MidiStatus, MidiSystem};
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

/// Lists the system's input and output ports by name (blocking: the
/// backend may take a moment to answer).
pub fn list() -> MidiPorts {
    list_of(&midi::midir_ports::MidirSystem::new("midi-jam-list"))
}

/// Lists the ports of `system`.
pub fn list_of(system: &dyn MidiSystem) -> MidiPorts {
    if let MidiStatus::Unavailable { reason } = system.status() {
        return none(&reason);
    }
    match (system.inputs(), system.outputs()) {
        (Ok(i), Ok(o)) => MidiPorts {
            available: true,
            message: None,
            inputs: names(i),
            outputs: names(o),
        },
        (Err(e), _) | (_, Err(e)) => none(&e.to_string()),
    }
}

/// Port names, without the app's own virtual ports: choosing one of those
/// would feed the jam back into itself.
fn names(ports: Vec<midi::ports::PortInfo>) -> Vec<String> {
    use crate::local_midi::{VIRTUAL_IN, VIRTUAL_OUT};
    ports
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n != VIRTUAL_IN && n != VIRTUAL_OUT)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use midi::memory::MemoryMidi;

    #[test]
    fn ports_are_listed_by_name_without_the_apps_own_virtual_ones() {
        let m = MemoryMidi::new();
        let _k = m.add_input("Keys");
        let _s = m.add_output("Synth");
        let _own = m
            .create_virtual_output(crate::local_midi::VIRTUAL_OUT)
            .unwrap();
        let p = list_of(&m);
        assert!(p.available);
        assert_eq!(p.inputs, vec!["Keys"]);
        assert_eq!(p.outputs, vec!["Synth"]);
    }

    #[test]
    fn no_midi_system_is_a_sentence_not_an_error() {
        let p = list_of(&MemoryMidi::unavailable("no ALSA"));
        assert!(!p.available);
        assert!(p
            .message
            .unwrap()
            .starts_with("No MIDI system found (no ALSA)"));
    }
}
