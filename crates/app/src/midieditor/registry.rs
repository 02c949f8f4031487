//! The Windows registry.

#[cfg(windows)]
use std::io;
#[cfg(windows)]
use std::path::PathBuf;

#[cfg(windows)]
use super::{
    qt_string_from_variant, qt_variant_string, PreviousValue, KEY_ICE_SERVERS, KEY_RENDEZVOUS_URL,
};
use super::{ApplyError, ApplyReport};

/// Where QSettings puts `qt_key` under `base` in the registry: the key path
/// up to the last `/` (with `\` separators; Qt swaps `/` and `\`) and the
/// value name after it. MidiEditor writes plain strings, which QSettings
/// stores as `REG_SZ` (a line break is just a character of a `REG_SZ`; only
/// a string holding NUL would become `REG_BINARY`), and reads back from
/// `REG_SZ` with `stringToVariant`.
#[cfg(any(windows, test))]
fn registry_value_path(base: &str, qt_key: &str) -> (String, String) {
    let swapped: String = qt_key
        .chars()
        .map(|c| match c {
            '/' => '\\',
            '\\' => '/',
            c => c,
        })
        .collect();
    match swapped.rsplit_once('\\') {
        Some((path, name)) => (format!(r"{base}\{path}"), name.to_owned()),
        None => (base.to_owned(), swapped),
    }
}

/// Writes the two keys as `REG_SZ` values under `HKEY_CURRENT_USER\key`
/// (Windows). No file to back up: the previous values are in the report.
#[cfg(windows)]
pub(super) fn apply_to_registry(
    key: &str,
    rendezvous_url: &str,
    ice_list: &str,
) -> Result<ApplyReport, ApplyError> {
    use winreg::enums::HKEY_CURRENT_USER;
    use winreg::RegKey;

    let hkcu = RegKey::predef(HKEY_CURRENT_USER);
    let values = [
        (KEY_RENDEZVOUS_URL, rendezvous_url),
        (KEY_ICE_SERVERS, ice_list),
    ];
    let mut previous = Vec::new();
    let mut changed = false;
    for (qt_key, value) in values {
        let (sub, name) = registry_value_path(key, qt_key);
        let value = qt_variant_string(value);
        if value.contains('\0') {
            return Err(ApplyError::Registry {
                key: sub,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the value contains a NUL character",
                ),
            });
        }
        let (reg, _) = hkcu
            .create_subkey(&sub)
            .map_err(|source| ApplyError::Registry {
                key: sub.clone(),
                source,
            })?;
        let before: Option<String> = reg.get_value::<String, _>(&name).ok();
        if before.as_deref() != Some(value.as_str()) {
            reg.set_value(&name, &value)
                .map_err(|source| ApplyError::Registry {
                    key: sub.clone(),
                    source,
                })?;
            changed = true;
        }
        previous.push(PreviousValue {
            key: qt_key.to_owned(),
            value: before.as_deref().map(qt_string_from_variant),
        });
    }
    Ok(ApplyReport {
        path: PathBuf::from(format!(r"HKEY_CURRENT_USER\{key}")),
        backup: None,
        keys_written: values.iter().map(|(k, _)| (*k).to_owned()).collect(),
        changed,
        previous,
        notes: Vec::new(),
    })
}

#[cfg(not(windows))]
pub(super) fn apply_to_registry(_: &str, _: &str, _: &str) -> Result<ApplyReport, ApplyError> {
    Err(ApplyError::Unsupported {
        what: "the Windows registry",
        os: "Windows",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midieditor::{KEY_ICE_SERVERS, KEY_RENDEZVOUS_URL, REGISTRY_KEY};

    #[test]
    fn registry_paths_follow_qsettings() {
        assert_eq!(
            registry_value_path(REGISTRY_KEY, KEY_RENDEZVOUS_URL),
            (
                r"Software\MidiEditor\NONE\Collab\wan".to_owned(),
                "rendezvousUrl".to_owned()
            )
        );
        assert_eq!(
            registry_value_path(REGISTRY_KEY, KEY_ICE_SERVERS),
            (
                r"Software\MidiEditor\NONE\Collab\lan".to_owned(),
                "iceServers".to_owned()
            )
        );
    }
}
