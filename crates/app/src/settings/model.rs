//! The settings themselves: one struct with a default for every field, the
//! bounds the pane enforces, and validation with one message per field.

use serde::{Deserialize, Serialize};

use super::{check_ice_row, check_rendezvous_url, row_is_blank};

/// One STUN/TURN server row as the settings pane edits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct IceRow {
    /// `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp|tls]`, `turns:...`.
    pub url: String,
    /// TURN user name (empty for STUN).
    pub username: String,
    /// TURN password (empty for STUN).
    pub credential: String,
}

/// Everything the settings pane persists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// The name other musicians see.
    pub display_name: String,
    /// Blank: the bundled rendezvous. Otherwise an `http(s)://` URL.
    pub rendezvous_url: String,
    /// STUN/TURN servers; empty by default (a LAN needs none).
    pub ice_servers: Vec<IceRow>,
    /// Longest wait for ICE gathering before answering, in milliseconds.
    pub gather_timeout_ms: u64,
    /// Port of the bundled rendezvous; the next free one is used when busy.
    pub listen_port: u16,
    /// MIDI input port name; empty means none.
    pub midi_input: String,
    /// MIDI output port name; empty means none.
    pub midi_output: String,
    /// Interfaces to advertise on; empty means the physical LAN interfaces.
    pub mdns_interfaces: Vec<String>,
    /// Advertise the jam on the LAN (mDNS).
    pub advertise: bool,
    /// Publish the code in the LAN advertisement (one-click join on the LAN).
    pub open_jam: bool,
    /// "Let MidiEditor find this jam on the LAN": MidiEditor's LAN Live
    /// datagram on the advert's interfaces, and a TCP port for its joiners.
    pub midieditor_lan: bool,
    /// Peers in the jam at once.
    pub max_peers: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            display_name: "Jam host".to_owned(),
            rendezvous_url: String::new(),
            ice_servers: Vec::new(),
            gather_timeout_ms: 2000,
            listen_port: 8787,
            midi_input: String::new(),
            midi_output: String::new(),
            mdns_interfaces: Vec::new(),
            advertise: true,
            open_jam: false,
            midieditor_lan: true,
            max_peers: 8,
        }
    }
}
/// Longest display name, in characters: it has to fit a peer list and the
/// LAN advertisement.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// Bounds of the ICE gathering cap, in milliseconds: below 100 ms even LAN
/// candidates may be missed; above 30 s a joiner gives up waiting anyway.
pub const GATHER_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=30_000;

/// Bounds of the number of peers in one jam.
pub const MAX_PEERS: std::ops::RangeInclusive<u32> = 1..=64;

/// A settings field the user has to fix, for the settings pane to show next
/// to that field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's JSON path as the front end names it, e.g.
    /// `iceServers[2].url`.
    pub field: String,
    /// What is wrong and what to do, in a sentence a musician understands.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Settings refused by [`save_file`]; carried inside the `io::Error` (kind
/// `InvalidInput`) so the caller can get the field list back with
/// `err.get_ref().and_then(|e| e.downcast_ref::<InvalidSettings>())`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the settings were not saved: {}", describe_errors(.0))]
pub struct InvalidSettings(pub Vec<FieldError>);

fn describe_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Settings {
    /// Checks every field; returns all the problems at once so the pane can
    /// mark each field. Strings are judged as [`normalized`](Self::normalized)
    /// would leave them (trimmed), and fully blank STUN/TURN rows are
    /// ignored, as `normalized` drops them (a row is easy to leave blank in
    /// the pane); a blank interface name is reported.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();

        let name = self.display_name.trim();
        if name.is_empty() {
            errors.push(FieldError::new(
                "displayName",
                "Enter the name the other musicians will see.",
            ));
        } else if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
            errors.push(FieldError::new(
                "displayName",
                format!(
                    "Keep the name to {MAX_DISPLAY_NAME_CHARS} characters or fewer (it has {}).",
                    name.chars().count()
                ),
            ));
        } else if name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "displayName",
                "The name cannot contain line breaks, tabs or other invisible control characters.",
            ));
        }

        if let Err(message) = check_rendezvous_url(&self.rendezvous_url) {
            errors.push(FieldError::new("rendezvousUrl", message));
        }

        for (i, row) in self.ice_servers.iter().enumerate() {
            if !row_is_blank(row) {
                errors.extend(check_ice_row(i, row));
            }
        }

        if !GATHER_TIMEOUT_MS.contains(&self.gather_timeout_ms) {
            errors.push(FieldError::new(
                "gatherTimeoutMs",
                format!(
                    "Choose a wait from {} to {} milliseconds (0.1 to 30 seconds).",
                    GATHER_TIMEOUT_MS.start(),
                    GATHER_TIMEOUT_MS.end()
                ),
            ));
        }

        if self.listen_port == 0 {
            errors.push(FieldError::new(
                "listenPort",
                "Choose a port from 1 to 65535 (8787 is the usual one).",
            ));
        }

        if !MAX_PEERS.contains(&self.max_peers) {
            errors.push(FieldError::new(
                "maxPeers",
                format!(
                    "Allow from {} to {} musicians in the jam.",
                    MAX_PEERS.start(),
                    MAX_PEERS.end()
                ),
            ));
        }

        for (i, iface) in self.mdns_interfaces.iter().enumerate() {
            let t = iface.trim();
            if t.is_empty() {
                errors.push(FieldError::new(
                    format!("mdnsInterfaces[{i}]"),
                    "Enter a network interface name (such as eth0 or en0) or remove this entry.",
                ));
            } else if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(FieldError::new(
                    format!("mdnsInterfaces[{i}]"),
                    "A network interface name has no spaces (such as eth0 or en0).",
                ));
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The settings as they should be stored: names, URLs and STUN/TURN
    /// addresses and user names trimmed, fully blank STUN/TURN rows and
    /// blank interface names dropped.
    ///
    /// Left exactly as typed: TURN passwords (a space can be part of one)
    /// and MIDI port names (they must match the system's name byte for
    /// byte).
    pub fn normalized(&self) -> Settings {
        Settings {
            display_name: self.display_name.trim().to_owned(),
            rendezvous_url: self.rendezvous_url.trim().to_owned(),
            ice_servers: self
                .ice_servers
                .iter()
                .filter(|r| !row_is_blank(r))
                .map(|r| IceRow {
                    url: r.url.trim().to_owned(),
                    username: r.username.trim().to_owned(),
                    credential: r.credential.clone(),
                })
                .collect(),
            mdns_interfaces: self
                .mdns_interfaces
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ice_presets;
    use crate::settings::tests::{failing, row, with_rows};

    #[test]
    fn defaults_validate() {
        assert_eq!(Settings::default().validate(), Ok(()));
        for preset in ice_presets() {
            assert_eq!(with_rows(preset.rows).validate(), Ok(()), "{}", preset.id);
        }
    }

    #[test]
    fn display_name_rules() {
        let name = |n: &str| Settings {
            display_name: n.to_owned(),
            ..Settings::default()
        };
        assert_eq!(failing(&name("")), ["displayName"]);
        assert_eq!(failing(&name("   ")), ["displayName"]);
        assert_eq!(failing(&name("a\u{7}b")), ["displayName"]);
        assert_eq!(failing(&name("two\nlines")), ["displayName"]);
        assert_eq!(failing(&name(&"x".repeat(65))), ["displayName"]);
        assert!(failing(&name(&"é".repeat(64))).is_empty());
        assert!(failing(&name("  Ana's band 🎹  ")).is_empty());
    }

    #[test]
    fn numeric_and_interface_rules() {
        let d = Settings::default;
        assert_eq!(
            failing(&Settings {
                gather_timeout_ms: 99,
                ..d()
            }),
            ["gatherTimeoutMs"]
        );
        assert_eq!(
            failing(&Settings {
                gather_timeout_ms: 30_001,
                ..d()
            }),
            ["gatherTimeoutMs"]
        );
        assert!(failing(&Settings {
            gather_timeout_ms: 100,
            ..d()
        })
        .is_empty());
        assert!(failing(&Settings {
            gather_timeout_ms: 30_000,
            ..d()
        })
        .is_empty());
        assert_eq!(
            failing(&Settings {
                listen_port: 0,
                ..d()
            }),
            ["listenPort"]
        );
        assert!(failing(&Settings {
            listen_port: 65535,
            ..d()
        })
        .is_empty());
        assert_eq!(
            failing(&Settings {
                max_peers: 0,
                ..d()
            }),
            ["maxPeers"]
        );
        assert_eq!(
            failing(&Settings {
                max_peers: 65,
                ..d()
            }),
            ["maxPeers"]
        );
        assert!(failing(&Settings {
            max_peers: 64,
            ..d()
        })
        .is_empty());
        assert_eq!(
            failing(&Settings {
                mdns_interfaces: vec!["eth0".into(), " ".into(), "wl an0".into()],
                ..d()
            }),
            ["mdnsInterfaces[1]", "mdnsInterfaces[2]"]
        );
    }

    #[test]
    fn all_errors_come_at_once_with_readable_messages() {
        let s = Settings {
            display_name: String::new(),
            rendezvous_url: "x".into(),
            gather_timeout_ms: 0,
            listen_port: 0,
            max_peers: 0,
            ..Settings::default()
        };
        let errors = s.validate().unwrap_err();
        assert_eq!(errors.len(), 5);
        for e in &errors {
            assert!(e.message.ends_with('.'), "{e}");
            assert!(
                e.message.chars().next().is_some_and(char::is_uppercase),
                "{e}"
            );
        }
        let json = serde_json::to_value(&errors[0]).unwrap();
        assert_eq!(json["field"], "displayName");
        assert!(json["message"].is_string());
    }

    #[test]
    fn normalized_trims_and_drops_blank_rows() {
        let s = Settings {
            display_name: "  Ana  ".into(),
            rendezvous_url: " https://x.example/ ".into(),
            ice_servers: vec![
                row(" stun:a:1 ", "", ""),
                row("  ", " ", ""),
                row("turn:t:1", " user ", " pass "),
            ],
            midi_input: " Port 1 ".into(),
            mdns_interfaces: vec![" eth0 ".into(), "".into()],
            ..Settings::default()
        };
        let n = s.normalized();
        assert_eq!(n.display_name, "Ana");
        assert_eq!(n.rendezvous_url, "https://x.example/");
        assert_eq!(
            n.ice_servers,
            vec![row("stun:a:1", "", ""), row("turn:t:1", "user", " pass ")]
        );
        assert_eq!(n.midi_input, " Port 1 ");
        assert_eq!(n.mdns_interfaces, vec!["eth0".to_owned()]);
        assert_eq!(n.normalized(), n);
        assert_eq!(n.validate(), Ok(()));
        // A blank interface entry is reported (normalized drops it).
        assert_eq!(failing(&s), ["mdnsInterfaces[1]"]);
    }

    #[test]
    fn settings_round_trip_through_json() {
        let s = Settings {
            display_name: "Ana".into(),
            ice_servers: vec![row("turn:t", "u", "p")],
            mdns_interfaces: vec!["eth0".into()],
            ..Settings::default()
        };
        let (back, w) = Settings::from_json_value(serde_json::to_value(&s).unwrap());
        assert_eq!(back, s);
        assert!(w.is_empty());
    }
}
