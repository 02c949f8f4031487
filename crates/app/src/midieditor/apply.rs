//! "Apply to MidiEditor": validate, dispatch to the store of the location,
//! and report what changed and what MidiEditor will make of the list.

use std::io;
use std::path::PathBuf;

use serde::Serialize;

use super::ini::apply_to_ini;
use super::plist::apply_to_plist;
use super::registry::apply_to_registry;
use super::{Location, EMPTY_ICE_LIST};
use crate::settings::{
    check_rendezvous_url, export_midieditor_ice, ice_rows_to_servers, FieldError, IceRow,
};

/// A key's value before we wrote ours, so the UI can show it or undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousValue {
    /// The QSettings key, e.g. `Collab/wan/rendezvousUrl`.
    pub key: String,
    /// Its text then; `None` when it was not set.
    pub value: Option<String>,
}

/// What [`apply`] did, for the UI to tell the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    /// The file written (for the registry: `HKEY_CURRENT_USER\...`).
    pub path: PathBuf,
    /// The copy of the file as it was, when there was a file and it changed.
    pub backup: Option<PathBuf>,
    /// The QSettings keys that now hold our values.
    pub keys_written: Vec<String>,
    /// False when both keys already held these values (nothing was written).
    pub changed: bool,
    /// The values before.
    pub previous: Vec<PreviousValue>,
    /// Things the user should know about how MidiEditor will use the list.
    pub notes: Vec<String>,
}

/// Why MidiEditor's settings could not be written. In every case the old
/// settings are left as they were.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The URL or a STUN/TURN row is not valid.
    #[error("{}", .0.message)]
    Invalid(FieldError),
    /// The settings file exists but could not be read.
    #[error("Could not read MidiEditor's settings at {}: {source}. Nothing was changed.", .path.display())]
    Read {
        /// The settings file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The backup copy could not be made.
    #[error("Could not make a backup copy of MidiEditor's settings at {}: {source}. Nothing was changed.", .path.display())]
    Backup {
        /// The backup file we tried to create.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The new settings could not be written.
    #[error("Could not write MidiEditor's settings at {}: {source}. They are unchanged.", .path.display())]
    Write {
        /// The settings file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The settings file is not one we can edit safely.
    #[error("MidiEditor's settings at {} are not in a form this app can edit ({reason}). Nothing was changed.", .path.display())]
    Format {
        /// The settings file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A registry key could not be opened or written (Windows).
    #[error(r"Could not write MidiEditor's settings in the Windows registry (HKEY_CURRENT_USER\{key}): {source}.")]
    Registry {
        /// The key, under `HKEY_CURRENT_USER`.
        key: String,
        /// The OS error.
        source: io::Error,
    },
    /// That kind of store does not exist on this OS.
    #[error("MidiEditor's settings in {what} can only be written on {os}.")]
    Unsupported {
        /// The store ("the Windows registry", "a macOS preferences file").
        what: &'static str,
        /// The OS it lives on.
        os: &'static str,
    },
}

/// The ICE list value we write for these rows: MidiEditor's syntax, or
/// [`EMPTY_ICE_LIST`] when there are none.
pub fn ice_value(rows: &[IceRow]) -> String {
    let list = export_midieditor_ice(rows);
    if list.is_empty() {
        EMPTY_ICE_LIST.to_owned()
    } else {
        list
    }
}

/// What MidiEditor will make of the list (its WebRTC library, libjuice,
/// uses one STUN server, picked at random, and at most two TURN servers,
/// over UDP only).
fn notes(rows: &[IceRow]) -> Vec<String> {
    let mut notes = Vec::new();
    let urls: Vec<String> = rows
        .iter()
        .map(|r| r.url.trim().to_ascii_lowercase())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        notes.push(
            "MidiEditor cannot be told to use no STUN server: with an empty list it uses its 10 \
             built-in Google STUN servers. On a LAN that does no harm; the LAN connection still works."
                .to_owned(),
        );
    }
    let stun = urls.iter().filter(|u| u.starts_with("stun:")).count();
    if stun > 1 {
        notes.push(format!(
            "MidiEditor uses only one of the {stun} STUN servers, picked at random each time."
        ));
    }
    let turn: Vec<&String> = urls.iter().filter(|u| !u.starts_with("stun:")).collect();
    let not_udp = turn
        .iter()
        .filter(|u| {
            u.starts_with("turns:") || u.ends_with("transport=tcp") || u.ends_with("transport=tls")
        })
        .count();
    if not_udp > 0 {
        notes.push(
            "MidiEditor uses TURN over UDP only: its TURN over TCP or TLS entries are skipped."
                .to_owned(),
        );
    }
    if turn.len() - not_udp > 2 {
        notes.push("MidiEditor uses at most two TURN servers: the first two.".to_owned());
    }
    notes.push(
        "If MidiEditor's Settings dialog is open, close it without saving: saving it writes its \
         own rendezvous URL back."
            .to_owned(),
    );
    notes
}

/// Writes the rendezvous URL (blank: MidiEditor's public default) and the
/// STUN/TURN rows into MidiEditor's settings at `location`. Invalid input is
/// refused before anything is touched.
pub fn apply(
    location: &Location,
    rendezvous_url: &str,
    rows: &[IceRow],
) -> Result<ApplyReport, ApplyError> {
    check_rendezvous_url(rendezvous_url).map_err(|message| {
        ApplyError::Invalid(FieldError {
            field: "rendezvousUrl".to_owned(),
            message,
        })
    })?;
    ice_rows_to_servers(rows).map_err(ApplyError::Invalid)?;
    let url = rendezvous_url.trim();
    let ice = ice_value(rows);
    let mut report = match location {
        Location::IniFile { path } => apply_to_ini(path, url, &ice)?,
        Location::Plist { path } => apply_to_plist(path, url, &ice)?,
        Location::Registry { key } => apply_to_registry(key, url, &ice)?,
    };
    report.notes = notes(rows);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midieditor::{qt_escape_ini_value, REGISTRY_KEY};

    #[test]
    fn empty_list_writes_a_comment_midieditor_treats_as_blank() {
        assert_eq!(ice_value(&[]), EMPTY_ICE_LIST);
        // MidiEditor's IceConfig::load(): every line trimmed; '#' lines
        // skipped; nothing left -> its Google defaults, as for a blank value.
        assert!(EMPTY_ICE_LIST
            .split('\n')
            .map(str::trim)
            .all(|l| l.is_empty() || l.starts_with('#')));
        // And it survives the INI escaping unquoted (no ; , =).
        assert!(!qt_escape_ini_value(EMPTY_ICE_LIST).starts_with('"'));
    }

    #[test]
    fn notes_say_what_midieditor_will_do() {
        let row = |u: &str, user: &str| IceRow {
            url: u.into(),
            username: user.into(),
            credential: if user.is_empty() { "" } else { "p" }.into(),
        };
        let n = notes(&[]);
        assert!(n[0].contains("Google"));
        let n = notes(&[
            row("stun:a:1", ""),
            row("stun:b:1", ""),
            row("turn:t:1?transport=tcp", "u"),
        ]);
        assert!(n.iter().any(|s| s.contains("only one of the 2 STUN")));
        assert!(n.iter().any(|s| s.contains("UDP only")));
    }

    #[test]
    fn apply_refuses_invalid_input_before_touching_anything() {
        let dir = std::env::temp_dir().join(format!("app-me-invalid-{}", std::process::id()));
        let path = dir.join("NONE.conf");
        let loc = Location::IniFile { path: path.clone() };
        let bad_row = IceRow {
            url: "turn:h:99999".into(),
            username: "u".into(),
            credential: "p".into(),
        };
        assert!(matches!(
            apply(&loc, "", &[bad_row]),
            Err(ApplyError::Invalid(e)) if e.field == "iceServers[0].url"
        ));
        assert!(matches!(
            apply(&loc, "ftp://x", &[]),
            Err(ApplyError::Invalid(e)) if e.field == "rendezvousUrl"
        ));
        assert!(!dir.exists());
    }

    #[test]
    fn other_os_stores_are_refused_here() {
        #[cfg(not(windows))]
        assert!(matches!(
            apply(
                &Location::Registry {
                    key: REGISTRY_KEY.into()
                },
                "",
                &[]
            ),
            Err(ApplyError::Unsupported { .. })
        ));
        #[cfg(not(target_os = "macos"))]
        assert!(matches!(
            apply(
                &Location::Plist {
                    path: "/nonexistent/x.plist".into()
                },
                "",
                &[]
            ),
            Err(ApplyError::Unsupported { .. })
        ));
    }
}
