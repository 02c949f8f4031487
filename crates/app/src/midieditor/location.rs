//! Where MidiEditor keeps its settings on each OS.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[cfg(target_os = "macos")]
use super::MAC_DOMAIN;
#[cfg(windows)]
use super::REGISTRY_KEY;

/// Where MidiEditor's settings are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Location {
    /// A Qt INI file (Linux and other Unixes; also any INI file a user
    /// points us at, such as a portable install's).
    IniFile {
        /// The `.conf`/`.ini` file.
        path: PathBuf,
    },
    /// A macOS preferences property list.
    Plist {
        /// `~/Library/Preferences/com.midieditor.NONE.plist`.
        path: PathBuf,
    },
    /// A Windows registry key under `HKEY_CURRENT_USER`.
    Registry {
        /// `Software\MidiEditor\NONE`.
        key: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::IniFile { path } | Location::Plist { path } => {
                write!(f, "{}", path.display())
            }
            Location::Registry { key } => write!(f, r"HKEY_CURRENT_USER\{key}"),
        }
    }
}

/// MidiEditor's settings file on Linux and other Unixes:
/// `$XDG_CONFIG_HOME/MidiEditor/NONE.conf`, or `~/.config/...` when
/// `XDG_CONFIG_HOME` is unset, empty or relative (Qt's `QStandardPaths`
/// ignores a relative one too).
pub fn ini_location_from(xdg_config_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    let base = match xdg_config_home.map(Path::new) {
        Some(x) if x.is_absolute() => x.to_path_buf(),
        _ => {
            let home = home.filter(|h| !h.is_empty())?;
            Path::new(home).join(".config")
        }
    };
    Some(base.join("MidiEditor").join("NONE.conf"))
}

/// Where MidiEditor keeps its settings on this OS; `None` when that cannot
/// be known (no home folder).
#[cfg(all(not(windows), not(target_os = "macos")))]
pub fn default_settings_location() -> Option<Location> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME");
    let home = std::env::var_os("HOME");
    ini_location_from(xdg.as_deref(), home.as_deref()).map(|path| Location::IniFile { path })
}

/// Where MidiEditor keeps its settings on this OS; `None` when that cannot
/// be known (no home folder).
#[cfg(target_os = "macos")]
pub fn default_settings_location() -> Option<Location> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(Location::Plist {
        path: Path::new(&home)
            .join("Library/Preferences")
            .join(format!("{MAC_DOMAIN}.plist")),
    })
}

/// Where MidiEditor keeps its settings on this OS.
#[cfg(windows)]
pub fn default_settings_location() -> Option<Location> {
    Some(Location::Registry {
        key: REGISTRY_KEY.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_location_follows_xdg_config_home() {
        assert_eq!(
            ini_location_from(Some(OsStr::new("/x/cfg")), Some(OsStr::new("/home/a"))),
            Some(PathBuf::from("/x/cfg/MidiEditor/NONE.conf"))
        );
        assert_eq!(
            ini_location_from(None, Some(OsStr::new("/home/a"))),
            Some(PathBuf::from("/home/a/.config/MidiEditor/NONE.conf"))
        );
        // Relative or empty XDG_CONFIG_HOME is ignored, as Qt does.
        assert_eq!(
            ini_location_from(Some(OsStr::new("rel")), Some(OsStr::new("/home/a"))),
            Some(PathBuf::from("/home/a/.config/MidiEditor/NONE.conf"))
        );
        assert_eq!(
            ini_location_from(Some(OsStr::new("")), Some(OsStr::new("/home/a"))),
            Some(PathBuf::from("/home/a/.config/MidiEditor/NONE.conf"))
        );
        assert_eq!(ini_location_from(None, None), None);
    }

    #[test]
    fn default_location_matches_this_os() {
        let loc = default_settings_location();
        #[cfg(all(not(windows), not(target_os = "macos")))]
        if let Some(Location::IniFile { path }) = &loc {
            assert!(path.ends_with("MidiEditor/NONE.conf"));
        } else {
            assert!(std::env::var_os("HOME").is_none());
        }
        #[cfg(target_os = "macos")]
        assert!(matches!(loc, Some(Location::Plist { .. })));
        #[cfg(windows)]
        assert_eq!(
            loc.map(|l| l.to_string()).as_deref(),
            Some(r"HKEY_CURRENT_USER\Software\MidiEditor\NONE")
        );
    }
}
