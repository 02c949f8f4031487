//! macOS preferences property lists.

use std::path::Path;
#[cfg(target_os = "macos")]
use std::{fs, io};

#[cfg(target_os = "macos")]
use super::{ini::write_new_file, KEY_ICE_SERVERS, KEY_RENDEZVOUS_URL, MAC_DOMAIN};
use super::{ApplyError, ApplyReport};
#[cfg(target_os = "macos")]
use crate::settings::{unix_seconds, unused_sibling, write_atomic};

/// The plist side, pure so it is tested on every OS.
#[cfg(any(target_os = "macos", test))]
mod plist_prefs {
    use super::super::{qt_string_from_variant, qt_variant_string, PreviousValue};

    /// Qt's key mapping on macOS (`rotateSlashesDotsAndMiddots`): `/`
    /// becomes `.`, `.` becomes `·`, `·` becomes `/`.
    pub(super) fn mac_key(key: &str) -> String {
        key.chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '\u{b7}',
                '\u{b7}' => '/',
                c => c,
            })
            .collect()
    }

    /// The edited plist (binary if the original was, or is new; XML if the
    /// original was XML), the previous values, and whether anything changed.
    pub(super) fn set_values(
        original: Option<&[u8]>,
        values: &[(&str, &str)],
    ) -> Result<(Vec<u8>, Vec<PreviousValue>, bool), String> {
        let mut binary = true;
        let mut dict = match original {
            None => plist::Dictionary::new(),
            Some(b) if b.iter().all(u8::is_ascii_whitespace) => plist::Dictionary::new(),
            Some(b) => {
                binary = b.starts_with(b"bplist");
                match plist::Value::from_reader(std::io::Cursor::new(b)) {
                    Ok(plist::Value::Dictionary(d)) => d,
                    Ok(_) => return Err("it is not a set of named settings".to_owned()),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        let mut previous = Vec::new();
        let mut changed = false;
        for (key, value) in values {
            let k = mac_key(key);
            let before = dict.get(&k).cloned();
            let new = qt_variant_string(value);
            previous.push(PreviousValue {
                key: (*key).to_owned(),
                value: before
                    .as_ref()
                    .and_then(plist::Value::as_string)
                    .map(qt_string_from_variant),
            });
            if before.as_ref().and_then(plist::Value::as_string) != Some(new.as_str()) {
                dict.insert(k, plist::Value::String(new));
                changed = true;
            }
        }
        let mut out = Vec::new();
        let value = plist::Value::Dictionary(dict);
        let written = if binary {
            value.to_writer_binary(&mut out)
        } else {
            value.to_writer_xml(&mut out)
        };
        written.map_err(|e| e.to_string())?;
        Ok((out, previous, changed))
    }
}

/// Writes the two keys into MidiEditor's preferences (macOS).
///
/// The preferences daemon (`cfprefsd`) caches every domain and may write
/// its copy back over a file edited behind its back. So the current values
/// are read with `defaults export` and the new ones handed over with
/// `defaults import` (both go through the daemon); the plist itself is
/// edited with the `plist` crate, keeping every other key. Only if
/// `defaults` cannot be run is the file written directly.
#[cfg(target_os = "macos")]
pub(super) fn apply_to_plist(
    path: &Path,
    rendezvous_url: &str,
    ice_list: &str,
) -> Result<ApplyReport, ApplyError> {
    use std::process::{Command, Stdio};
    const DEFAULTS: &str = "/usr/bin/defaults";

    let exported = Command::new(DEFAULTS)
        .args(["export", MAC_DOMAIN, "-"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty())
        .map(|o| o.stdout);
    let original = match exported {
        Some(b) => Some(b),
        None => match fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ApplyError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        },
    };
    let values = [
        (KEY_RENDEZVOUS_URL, rendezvous_url),
        (KEY_ICE_SERVERS, ice_list),
    ];
    let (updated, previous, changed) = plist_prefs::set_values(original.as_deref(), &values)
        .map_err(|reason| ApplyError::Format {
            path: path.to_path_buf(),
            reason,
        })?;
    let mut backup = None;
    if changed {
        if let Some(orig) = &original {
            let b = unused_sibling(path, &format!(".bak-{}", unix_seconds()));
            write_new_file(&b, orig, path).map_err(|source| ApplyError::Backup {
                path: b.clone(),
                source,
            })?;
            backup = Some(b);
        }
        let staged = std::env::temp_dir().join(format!(
            "{MAC_DOMAIN}.{}-{}.plist",
            std::process::id(),
            unix_seconds()
        ));
        let imported = write_atomic(&staged, &updated).is_ok()
            && Command::new(DEFAULTS)
                .arg("import")
                .arg(MAC_DOMAIN)
                .arg(&staged)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        let _ = fs::remove_file(&staged);
        if !imported {
            write_atomic(path, &updated).map_err(|source| ApplyError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(ApplyReport {
        path: path.to_path_buf(),
        backup,
        keys_written: values.iter().map(|(k, _)| (*k).to_owned()).collect(),
        changed,
        previous,
        notes: Vec::new(),
    })
}

#[cfg(not(target_os = "macos"))]
pub(super) fn apply_to_plist(_: &Path, _: &str, _: &str) -> Result<ApplyReport, ApplyError> {
    Err(ApplyError::Unsupported {
        what: "a macOS preferences file",
        os: "macOS",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midieditor::{KEY_ICE_SERVERS, KEY_RENDEZVOUS_URL};

    #[test]
    fn plist_keys_and_values_follow_qsettings() {
        assert_eq!(
            plist_prefs::mac_key(KEY_RENDEZVOUS_URL),
            "Collab.wan.rendezvousUrl"
        );
        assert_eq!(plist_prefs::mac_key("4.0/x"), "4\u{b7}0.x");

        let vals = [
            (KEY_RENDEZVOUS_URL, "http://h:1"),
            (KEY_ICE_SERVERS, "stun:a:1\nstun:b:2"),
        ];
        // An existing binary plist with another key: kept, ours added.
        let mut dict = plist::Dictionary::new();
        dict.insert("AI.model".into(), plist::Value::String("m".into()));
        dict.insert(
            "Collab.wan.rendezvousUrl".into(),
            plist::Value::String("@@old".into()),
        );
        let mut orig = Vec::new();
        plist::Value::Dictionary(dict)
            .to_writer_binary(&mut orig)
            .unwrap();
        let (out, previous, changed) = plist_prefs::set_values(Some(&orig), &vals).unwrap();
        assert!(changed);
        assert!(out.starts_with(b"bplist"));
        assert_eq!(previous[0].value.as_deref(), Some("@old"));
        assert_eq!(previous[1].value, None);
        let back = plist::Value::from_reader(std::io::Cursor::new(&out)).unwrap();
        let back = back.as_dictionary().unwrap();
        assert_eq!(back.get("AI.model").and_then(|v| v.as_string()), Some("m"));
        assert_eq!(
            back.get("Collab.lan.iceServers")
                .and_then(|v| v.as_string()),
            Some("stun:a:1\nstun:b:2")
        );
        // Again: nothing to change.
        let (_, _, changed) = plist_prefs::set_values(Some(&out), &vals).unwrap();
        assert!(!changed);
        // XML stays XML; new is binary; garbage is refused.
        let mut xml = Vec::new();
        plist::Value::Dictionary(plist::Dictionary::new())
            .to_writer_xml(&mut xml)
            .unwrap();
        let (out, _, _) = plist_prefs::set_values(Some(&xml), &vals).unwrap();
        assert!(out.starts_with(b"<?xml"));
        let (out, _, _) = plist_prefs::set_values(None, &vals).unwrap();
        assert!(out.starts_with(b"bplist"));
        assert!(plist_prefs::set_values(Some(b"not a plist"), &vals).is_err());
    }
}
