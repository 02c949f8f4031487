//! The settings file: read without ever failing (a corrupt file is set
//! aside, never deleted), written only when valid, replaced atomically.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{InvalidSettings, Settings};

/// The key our settings live under in the settings file. The file is a JSON
/// object of keys, the layout `tauri-plugin-store` writes, so the Tauri shell
/// can use the store plugin on the same path and [`load_file`] still reads it.
pub const STORE_KEY: &str = "settings";

/// What [`load_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOutcome {
    /// The settings to use (defaults for anything that could not be read).
    pub settings: Settings,
    /// Sentences for the user: fields reset, a file set aside.
    pub warnings: Vec<String>,
    /// Where an unreadable settings file was moved to.
    pub set_aside: Option<PathBuf>,
}

pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `path` with `suffix` added to its file name, plus `-1`, `-2`, ... if
/// that name is taken: a backup or set-aside file never replaces another.
pub(crate) fn unused_sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "settings".to_owned());
    let first = path.with_file_name(format!("{name}{suffix}"));
    if fs::symlink_metadata(&first).is_err() {
        return first;
    }
    for n in 1..10_000 {
        let p = path.with_file_name(format!("{name}{suffix}-{n}"));
        if fs::symlink_metadata(&p).is_err() {
            return p;
        }
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    path.with_file_name(format!("{name}{suffix}-{nanos}"))
}

/// Moves an unreadable file to `<name>.corrupt-<unix-seconds>` (copying it
/// when it cannot be renamed), so it is kept and out of the way.
fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let aside = unused_sibling(path, &format!(".corrupt-{}", unix_seconds()));
    match fs::rename(path, &aside) {
        Ok(()) => Ok(aside),
        Err(_) => {
            fs::copy(path, &aside)?;
            Ok(aside)
        }
    }
}

/// Reads the settings file. Never fails: a missing file gives the defaults
/// (first start); a file that is not a JSON object is moved aside to
/// `<name>.corrupt-<unix-seconds>` and the defaults are used, with a warning
/// saying where the old file went; a readable file is read leniently
/// ([`Settings::from_json_value`]).
pub fn load_file(path: &Path) -> LoadOutcome {
    let mut outcome = LoadOutcome {
        settings: Settings::default(),
        warnings: Vec::new(),
        set_aside: None,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return outcome,
        Err(e) => {
            outcome.warnings.push(format!(
                "The settings file {} could not be read ({e}); the default settings are used for now.",
                path.display()
            ));
            return outcome;
        }
    };
    let root = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(root)) => root,
        Ok(_) | Err(_) => {
            match set_aside(path) {
                Ok(aside) => {
                    outcome.warnings.push(format!(
                        "The settings file was damaged and could not be read. It was kept as {} and the default settings are used.",
                        aside.display()
                    ));
                    outcome.set_aside = Some(aside);
                }
                Err(e) => outcome.warnings.push(format!(
                    "The settings file {} was damaged and could not be read, nor moved aside ({e}); the default settings are used.",
                    path.display()
                )),
            }
            return outcome;
        }
    };
    if let Some(v) = root.get(STORE_KEY) {
        let (settings, warnings) = Settings::from_json_value(v.clone());
        outcome.settings = settings;
        outcome.warnings = warnings;
    }
    outcome
}

/// Writes the settings file, if the settings validate: otherwise nothing is
/// written and the error (kind `InvalidInput`) carries [`InvalidSettings`].
/// The [`normalized`](Settings::normalized) settings are stored under
/// [`STORE_KEY`]; other keys of an existing store file are kept; a damaged
/// existing file is set aside first. The file is replaced atomically.
pub fn save_file(path: &Path, settings: &Settings) -> io::Result<()> {
    let settings = settings.normalized();
    settings
        .validate()
        .map_err(|errors| io::Error::new(io::ErrorKind::InvalidInput, InvalidSettings(errors)))?;
    let mut root = match fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(root)) => root,
            _ => {
                set_aside(path)?;
                Map::new()
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e),
    };
    let value = serde_json::to_value(&settings).map_err(io::Error::other)?;
    root.insert(STORE_KEY.to_owned(), value);
    let mut text = serde_json::to_vec_pretty(&Value::Object(root)).map_err(io::Error::other)?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either
/// the old file or the new one, never half of one: the bytes go to a
/// temporary file in the same folder (same file system, so the rename is
/// atomic), are flushed to disk, then renamed over `path`. The folder is
/// created if missing; an existing file's permissions are kept, a new file
/// is readable by its owner only (Unix).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "settings".to_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        // A new file is private (it may hold TURN passwords), as QSettings
        // makes its own files; an existing file's permissions are kept below.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        if let Ok(meta) = fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else {
        // Make the rename itself durable where the OS allows syncing a folder.
        #[cfg(unix)]
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
    }
    result
}
