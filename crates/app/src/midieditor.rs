//! "Apply to MidiEditor": writing our rendezvous URL and STUN/TURN list into
//! MidiEditor AI's own settings, so its users need not type them.
//!
//! MidiEditor keeps its settings with `QSettings("MidiEditor", "NONE")`, in
//! Qt's native store for the OS (see `docs/` and PEER-PROTOCOL.md, section
//! "MidiEditor's settings"):
//!
//! | OS | store | our two keys |
//! | --- | --- | --- |
//! | Linux, BSD | INI file `$XDG_CONFIG_HOME/MidiEditor/NONE.conf` | `[Collab]` `wan\rendezvousUrl=`, `lan\iceServers=` |
//! | macOS | `~/Library/Preferences/com.midieditor.NONE.plist` | `Collab.wan.rendezvousUrl`, `Collab.lan.iceServers` |
//! | Windows | registry `HKCU\Software\MidiEditor\NONE` | key `Collab\wan` value `rendezvousUrl`, key `Collab\lan` value `iceServers`, both `REG_SZ` |
//!
//! Both are plain strings: MidiEditor reads them with
//! `value(key).toString()` every time it starts a WAN session or a WebRTC
//! connection, so it picks them up without a restart. One catch: its
//! Settings dialog writes its own rendezvous URL back when saved, so it
//! should be closed (without saving) while we apply.
//!
//! Every other key, section, comment and line is left exactly as it was: the
//! INI file is edited in place, never rewritten from a parsed model, and the
//! original is copied to a `.bak-<unix-seconds>` file first.
//!
//! # Qt's INI format, as far as it matters here
//!
//! Taken from `qsettings.cpp` (Qt 5 and Qt 6 agree on all of it except the
//! encoding of non-ASCII text, see [`qt_escape_ini_value`]):
//!
//! - A key `a/b/c` is written in section `[a]` as `b\c=...`: the first path
//!   segment is the section, `\` separates the rest. Keys without a `/` go
//!   to `[General]`. Key characters other than letters, digits, `_`, `-` and
//!   `.` are written `%XX` (or `%UXXXX` above U+00FF).
//! - Values: `\` and `"` are escaped with `\`, control characters as `\n`,
//!   `\t`, ... or `\xNN`; the value is put in double quotes only when it
//!   contains `;` (which otherwise starts a comment), `,` (which otherwise
//!   makes a string list) or `=`, or starts or ends with a space. So a
//!   multi-line ICE list is one line, `stun:a\nturn:b`, quoted when a
//!   `?transport=` in it brings an `=`. A string starting with `@` is
//!   written `@@...`, as `@` introduces typed values (`@ByteArray(...)`,
//!   `@Variant(...)`, `@Invalid()`).
//! - Reading: a line starting with `;` is a comment, as is the rest of a line
//!   after an unquoted `;`; a `\` at the end of a line continues it; a line
//!   break inside double quotes does not end it. A `#` line is *not* a
//!   comment to Qt (it is a malformed line, skipped), which is why our
//!   sample file uses `;` comments.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::settings::{
    check_rendezvous_url, export_midieditor_ice, ice_rows_to_servers, unix_seconds, unused_sibling,
    write_atomic, FieldError, IceRow,
};

/// MidiEditor's rendezvous URL key (blank: its public default).
pub const KEY_RENDEZVOUS_URL: &str = "Collab/wan/rendezvousUrl";

/// MidiEditor's STUN/TURN list key: one multi-line string. (Its manual says
/// `Collab/wan/iceServers`; its code reads this one.)
pub const KEY_ICE_SERVERS: &str = "Collab/lan/iceServers";

/// What we write as MidiEditor's ICE list when ours is empty.
///
/// MidiEditor cannot be told "no STUN": `IceConfig::load()` returns its 10
/// Google STUN servers when the value is blank *and* when every line is
/// blank or a `#` comment (checked in MidiEditor AI's source, and in its
/// test `load_returnsDefaultsWhenAllLinesAreCommentsOrBlank`). So this
/// comment gives exactly what a blank value gives (Google STUN), while
/// telling whoever opens the file why; [`ApplyReport::notes`] tells the
/// user. On a LAN the Google servers only add server-reflexive candidates
/// (or a failed lookup when offline); the LAN candidates still connect.
pub const EMPTY_ICE_LIST: &str =
    "# none (LAN only) - MidiEditor then uses its built-in Google STUN servers";

/// The registry key under `HKEY_CURRENT_USER` (Windows).
pub const REGISTRY_KEY: &str = r"Software\MidiEditor\NONE";

/// The preferences domain (macOS): Qt turns the organization "MidiEditor"
/// into the domain `midieditor.com`, reversed, plus the application name.
pub const MAC_DOMAIN: &str = "com.midieditor.NONE";

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

/// QSettings' `variantToString` for a plain string: a leading `@` is
/// doubled, as `@` starts a typed value (`@ByteArray(...)`).
fn qt_variant_string(s: &str) -> String {
    if s.starts_with('@') {
        format!("@{s}")
    } else {
        s.to_owned()
    }
}

/// The reverse of [`qt_variant_string`].
#[cfg_attr(not(any(windows, target_os = "macos", test)), allow(dead_code))]
fn qt_string_from_variant(s: &str) -> String {
    match s.strip_prefix("@@") {
        Some(rest) => format!("@{rest}"),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------- INI ----

/// Writes the two keys into a Qt INI file, in place. See the module
/// documentation for the format. A missing file (and its folder) is
/// created; an existing one is first copied to `<name>.bak-<unix-seconds>`
/// (with the same permissions: MidiEditor's file also holds AI API keys),
/// then replaced atomically. When both keys already hold these values
/// nothing is written and no backup is made.
pub fn apply_to_ini(
    path: &Path,
    rendezvous_url: &str,
    ice_list: &str,
) -> Result<ApplyReport, ApplyError> {
    let original = match fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ApplyError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let values = [
        (KEY_RENDEZVOUS_URL, rendezvous_url),
        (KEY_ICE_SERVERS, ice_list),
    ];
    let old: &[u8] = original.as_deref().unwrap_or_default();
    let before = parse_qt_ini(old);
    let previous = values
        .iter()
        .map(|(k, _)| PreviousValue {
            key: (*k).to_owned(),
            value: before.get(*k).and_then(QtValue::to_text),
        })
        .collect();
    let updated = set_ini_values(old, &values);
    // Read the result back as Qt would: a hand-edited file with, say, an
    // unclosed quote can hide the lines we wrote; then write nothing.
    let check = parse_qt_ini(&updated);
    if let Some((key, _)) = values
        .iter()
        .find(|(k, v)| check.get(*k) != Some(&QtValue::Text((*v).to_owned())))
    {
        return Err(ApplyError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "after the change MidiEditor would not read {key} back; an unclosed \" in the file?"
            ),
        });
    }
    let changed = original.as_deref() != Some(updated.as_slice());
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
        write_atomic(path, &updated).map_err(|source| ApplyError::Write {
            path: path.to_path_buf(),
            source,
        })?;
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

/// Creates `path` (never replacing a file) holding `bytes`, with the
/// permissions of `like`.
fn write_new_file(path: &Path, bytes: &[u8], like: &Path) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    if let Ok(meta) = fs::metadata(like) {
        f.set_permissions(meta.permissions())?;
    }
    f.write_all(bytes)?;
    f.sync_all()
}

/// A value as QSettings reads it from an INI file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QtValue {
    /// A string (also any `@Type(...)` value, left as its text).
    Text(String),
    /// A string list (unquoted commas).
    List(Vec<String>),
    /// `@Invalid()`: an empty list or no value.
    Invalid,
}

impl QtValue {
    /// The value as text: a list's items joined with `, `.
    pub fn to_text(&self) -> Option<String> {
        match self {
            QtValue::Text(s) => Some(s.clone()),
            QtValue::List(items) => Some(items.join(", ")),
            QtValue::Invalid => None,
        }
    }
}

/// One logical line of an INI file, as byte offsets.
#[derive(Debug, Clone, Copy)]
struct Line {
    /// End of the content: before the line break or an unquoted `;`.
    end: usize,
    /// The first `=` outside double quotes.
    equals: Option<usize>,
    /// End of the physical line (its line break, or the end of the file),
    /// past any trailing comment.
    line_end: usize,
}

#[derive(Debug)]
enum Item {
    /// `[name]`, `name` as a logical key prefix without the `/` (empty for
    /// `[General]`).
    Section { name: String, line: Line },
    /// `key=value`, `key` as the full logical key.
    Entry { key: String, line: Line },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn end_of_physical_line(data: &[u8], mut i: usize) -> usize {
    while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
        i += 1;
    }
    i
}

/// Splits an INI file into sections and entries exactly as Qt's
/// `readIniLine`/`readIniFile` do (comments, continuation lines, quoted
/// line breaks), keeping byte offsets so edits can be made in place.
fn scan(data: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    let n = data.len();
    let mut pos = if data.starts_with(BOM) { BOM.len() } else { 0 };
    let mut prefix = String::new();
    while pos < n {
        while pos < n && matches!(data[pos], b' ' | b'\t' | b'\r' | b'\n') {
            pos += 1;
        }
        if pos >= n {
            break;
        }
        if data[pos] == b';' {
            pos = end_of_physical_line(data, pos);
            continue;
        }
        let start = pos;
        let mut i = pos;
        let mut in_quotes = false;
        let mut equals = None;
        let end = loop {
            if i >= n {
                break n;
            }
            match data[i] {
                b'=' => {
                    if !in_quotes && equals.is_none() {
                        equals = Some(i);
                    }
                    i += 1;
                }
                b'\n' | b'\r' if !in_quotes => break i,
                b'\\' => {
                    i += 1;
                    if i < n {
                        let ch = data[i];
                        i += 1;
                        if i < n {
                            let ch2 = data[i];
                            if (ch == b'\n' && ch2 == b'\r') || (ch == b'\r' && ch2 == b'\n') {
                                i += 1;
                            }
                        }
                    }
                }
                b'"' => {
                    in_quotes = !in_quotes;
                    i += 1;
                }
                b';' if !in_quotes => break i,
                _ => i += 1,
            }
        };
        let line_end = end_of_physical_line(data, end);
        let line = Line {
            end,
            equals,
            line_end,
        };
        let content = &data[start..end];
        if content.first() == Some(&b'[') {
            let inner = match content.iter().position(|&b| b == b']') {
                Some(idx) => &content[1..idx],
                None => &content[1..],
            };
            let inner = inner.trim_ascii();
            let name = if inner.eq_ignore_ascii_case(b"general") {
                String::new()
            } else if inner.eq_ignore_ascii_case(b"%general") {
                String::from_utf8_lossy(&inner[1..]).into_owned()
            } else {
                normalized_key(&unescape_ini_key(inner))
            };
            prefix = if name.is_empty() {
                String::new()
            } else {
                format!("{name}/")
            };
            items.push(Item::Section { name, line });
        } else if let Some(eq) = equals {
            let key = data[start..eq].trim_ascii();
            let key = normalized_key(&format!("{prefix}{}", unescape_ini_key(key)));
            items.push(Item::Entry { key, line });
        }
        // Anything else is a malformed line: Qt skips it, and so do we
        // (leaving it in the file untouched).
        pos = line_end;
    }
    items
}

/// QSettings' key normalization: no leading, trailing or doubled `/`.
fn normalized_key(key: &str) -> String {
    key.split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn hex_value(units: &[u16]) -> Option<u16> {
    let mut v: u16 = 0;
    for &u in units {
        let d = char::from_u32(u32::from(u))?.to_digit(16)?;
        v = v.checked_mul(16)?.checked_add(d as u16)?;
    }
    Some(v)
}

/// Qt's `iniUnescapedKey`: `\` is `/`, `%XX` and `%UXXXX` are characters.
fn unescape_ini_key(raw: &[u8]) -> String {
    let units: Vec<u16> = String::from_utf8_lossy(raw).encode_utf16().collect();
    let mut out: Vec<u16> = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if u == u16::from(b'\\') {
            out.push(u16::from(b'/'));
            i += 1;
            continue;
        }
        if u != u16::from(b'%') || i == units.len() - 1 {
            out.push(u);
            i += 1;
            continue;
        }
        let (first, digits) = if units[i + 1] == u16::from(b'U') {
            (i + 2, 4)
        } else {
            (i + 1, 2)
        };
        match units.get(first..first + digits).and_then(hex_value) {
            Some(v) => {
                out.push(v);
                i = first + digits;
            }
            None => {
                out.push(u);
                i += 1;
            }
        }
    }
    String::from_utf16_lossy(&out)
}

/// Qt's `iniEscapedKey` for one key (`/` becomes `\`).
pub fn qt_escape_ini_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for u in key.encode_utf16() {
        match u {
            0x2F => out.push('\\'),
            _ if u < 0x80
                && (u8::try_from(u).is_ok_and(|b| b.is_ascii_alphanumeric())
                    || u == 0x5F
                    || u == 0x2D
                    || u == 0x2E) =>
            {
                out.push(char::from(u as u8));
            }
            _ if u <= 0xFF => out.push_str(&format!("%{u:02X}")),
            _ => out.push_str(&format!("%U{u:04X}")),
        }
    }
    out
}

/// Qt's `iniEscapedString` for a string value (after `variantToString`).
///
/// One deliberate choice: characters above U+007E are written as `\xNNNN`
/// escapes (what Qt 5 writes without an INI codec) rather than as raw UTF-8
/// (what Qt 6 writes). Both Qt 5 and Qt 6 read the escapes back exactly,
/// while raw UTF-8 would come out garbled in a Qt 5 build. After such an
/// escape a following hex digit is escaped too, so it cannot be taken as
/// part of the number.
pub fn qt_escape_ini_value(value: &str) -> String {
    let s = qt_variant_string(value);
    let mut out = String::with_capacity(s.len() + 2);
    let mut needs_quotes = false;
    let mut escape_next_if_digit = false;
    for u in s.encode_utf16() {
        if u == u16::from(b';') || u == u16::from(b',') || u == u16::from(b'=') {
            needs_quotes = true;
        }
        let is_hex_digit = u < 0x80 && (u as u8).is_ascii_hexdigit();
        if escape_next_if_digit && is_hex_digit {
            out.push_str(&format!("\\x{u:x}"));
            continue;
        }
        escape_next_if_digit = false;
        match u {
            0 => {
                out.push_str("\\0");
                escape_next_if_digit = true;
            }
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x0C => out.push_str("\\f"),
            0x0A => out.push_str("\\n"),
            0x0D => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x0B => out.push_str("\\v"),
            0x22 | 0x5C => {
                out.push('\\');
                out.push(char::from(u as u8));
            }
            _ if u <= 0x1F || u >= 0x7F => {
                out.push_str(&format!("\\x{u:x}"));
                escape_next_if_digit = true;
            }
            _ => out.push(char::from(u as u8)),
        }
    }
    if needs_quotes || out.starts_with(' ') || out.ends_with(' ') {
        format!("\"{out}\"")
    } else {
        out
    }
}

fn chop_trailing_spaces(s: &mut Vec<u16>, limit: usize) {
    while s.len() > limit && matches!(s.last(), Some(0x20 | 0x09)) {
        s.pop();
    }
}

/// Qt's `iniUnescapedStringList` (and `stringToVariant` for `@@` and
/// `@Invalid()`): reads a raw value the way QSettings does.
fn unescape_ini_value(raw: &[u8]) -> QtValue {
    let n = raw.len();
    let mut list: Option<Vec<String>> = None;
    let mut cur: Vec<u16> = Vec::new();
    let mut in_quotes = false;
    let mut cur_quoted = false;
    let mut i = 0;
    let skip_spaces = |i: &mut usize| {
        while *i < n && (raw[*i] == b' ' || raw[*i] == b'\t') {
            *i += 1;
        }
    };
    skip_spaces(&mut i);
    let mut chop_limit = 0;
    let mut chop_at_end = true;
    while i < n {
        match raw[i] {
            b'\\' => {
                i += 1;
                if i >= n {
                    chop_at_end = false;
                    break;
                }
                let ch = raw[i];
                i += 1;
                let simple = match ch {
                    b'a' => Some(0x07),
                    b'b' => Some(0x08),
                    b'f' => Some(0x0C),
                    b'n' => Some(0x0A),
                    b'r' => Some(0x0D),
                    b't' => Some(0x09),
                    b'v' => Some(0x0B),
                    b'"' | b'?' | b'\'' | b'\\' => Some(u16::from(ch)),
                    _ => None,
                };
                if let Some(c) = simple {
                    cur.push(c);
                } else if ch == b'x' {
                    if i < n && raw[i].is_ascii_hexdigit() {
                        let mut v: u16 = 0;
                        while i < n && raw[i].is_ascii_hexdigit() {
                            let d = (raw[i] as char).to_digit(16).unwrap_or(0) as u16;
                            v = v.wrapping_shl(4).wrapping_add(d);
                            i += 1;
                        }
                        cur.push(v);
                    }
                } else if (b'0'..=b'7').contains(&ch) {
                    let mut v = u16::from(ch - b'0');
                    while i < n && (b'0'..=b'7').contains(&raw[i]) {
                        v = v.wrapping_shl(3).wrapping_add(u16::from(raw[i] - b'0'));
                        i += 1;
                    }
                    cur.push(v);
                } else if (ch == b'\n' || ch == b'\r')
                    && i < n
                    && (raw[i] == b'\n' || raw[i] == b'\r')
                    && raw[i] != ch
                {
                    // A continued line ending in \r\n or \n\r.
                    i += 1;
                }
                // Any other escaped character is dropped, as Qt does.
                chop_limit = cur.len();
            }
            b'"' => {
                i += 1;
                cur_quoted = true;
                in_quotes = !in_quotes;
                if !in_quotes {
                    skip_spaces(&mut i);
                    chop_limit = cur.len();
                }
            }
            b',' if !in_quotes => {
                if !cur_quoted {
                    chop_trailing_spaces(&mut cur, chop_limit);
                }
                list.get_or_insert_with(Vec::new)
                    .push(String::from_utf16_lossy(&cur));
                cur.clear();
                cur_quoted = false;
                i += 1;
                skip_spaces(&mut i);
                chop_limit = 0;
            }
            _ => {
                let mut j = i + 1;
                while j < n && !matches!(raw[j], b'\\' | b'"' | b',') {
                    j += 1;
                }
                cur.extend(String::from_utf8_lossy(&raw[i..j]).encode_utf16());
                i = j;
            }
        }
    }
    if chop_at_end && !cur_quoted {
        chop_trailing_spaces(&mut cur, chop_limit);
    }
    let last = String::from_utf16_lossy(&cur);
    match list {
        Some(mut items) => {
            items.push(last);
            QtValue::List(
                items
                    .into_iter()
                    .map(|s| match s.strip_prefix("@@") {
                        Some(rest) => format!("@{rest}"),
                        None => s,
                    })
                    .collect(),
            )
        }
        None if last == "@Invalid()" => QtValue::Invalid,
        None => QtValue::Text(match last.strip_prefix("@@") {
            Some(rest) => format!("@{rest}"),
            None => last,
        }),
    }
}

/// Every key of a Qt INI file as QSettings reads it (`Collab/wan/x` for
/// `[Collab]` `wan\x=`; `[General]` keys without a section). When a key
/// appears more than once the last one wins.
pub fn parse_qt_ini(bytes: &[u8]) -> BTreeMap<String, QtValue> {
    let mut map = BTreeMap::new();
    for item in scan(bytes) {
        if let Item::Entry { key, line } = item {
            if let Some(eq) = line.equals {
                map.insert(key, unescape_ini_value(&bytes[eq + 1..line.end]));
            }
        }
    }
    map
}

/// `original` with each `(key, value)` set, edited in place:
///
/// - a key already present (in whatever spelling Qt would read as that key,
///   e.g. `[Collab]` `wan\rendezvousUrl` or `[General]`
///   `Collab\wan\rendezvousUrl`) has its value replaced where it stands,
///   every occurrence of it;
/// - a missing key is added after the last entry of the last section named
///   as its first path segment (`[Collab]`);
/// - a missing section is appended at the end, after a blank line.
///
/// Every other byte stays as it was; new lines use the file's line breaks.
pub fn set_ini_values(original: &[u8], values: &[(&str, &str)]) -> Vec<u8> {
    let items = scan(original);
    let eol: &[u8] = if original.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    // (from, to, replacement): a replacement, or an insertion when from == to.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut new_sections: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in values {
        let key = normalized_key(key);
        let escaped = qt_escape_ini_value(value);
        let mut found = false;
        for item in &items {
            if let Item::Entry { key: k, line } = item {
                if *k == key {
                    if let Some(eq) = line.equals {
                        edits.push((eq + 1, line.end, escaped.clone().into_bytes()));
                        found = true;
                    }
                }
            }
        }
        if found {
            continue;
        }
        let (section, sub) = match key.split_once('/') {
            Some((s, rest)) => (s.to_owned(), rest.to_owned()),
            None => (String::new(), key.clone()),
        };
        let text = format!("{}={escaped}", qt_escape_ini_key(&sub));
        match insertion_point(&items, &section) {
            Some(pos) => {
                let mut bytes = eol.to_vec();
                if pos == original.len() && ends_with_continuation(original) {
                    // `x=a\` at the very end: our line break would only
                    // continue that line; a second one ends it.
                    bytes.extend_from_slice(eol);
                }
                bytes.extend_from_slice(text.as_bytes());
                edits.push((pos, pos, bytes));
            }
            None if section.is_empty() => {
                // Before the first section: where Qt reads [General] keys.
                let pos = if original.starts_with(BOM) {
                    BOM.len()
                } else {
                    0
                };
                let mut bytes = text.into_bytes();
                bytes.extend_from_slice(eol);
                edits.push((pos, pos, bytes));
            }
            None => match new_sections.iter_mut().find(|(s, _)| *s == section) {
                Some((_, lines)) => lines.push(text),
                None => new_sections.push((section, vec![text])),
            },
        }
    }
    edits.sort_by_key(|(from, _, _)| *from);
    let mut out = Vec::with_capacity(original.len() + 256);
    let mut cursor = 0;
    for (from, to, bytes) in edits {
        if from < cursor {
            continue; // Overlap: cannot happen with distinct entries; be safe.
        }
        out.extend_from_slice(&original[cursor..from]);
        out.extend_from_slice(&bytes);
        cursor = to;
    }
    out.extend_from_slice(&original[cursor..]);
    for (section, lines) in new_sections {
        if !out.is_empty() {
            if out.last() == Some(&b'\r') && eol == b"\n" {
                // A lone CR and our LF would pair up as one line break
                // (which a continuation `\` before it would swallow).
                out.extend_from_slice(eol);
            }
            if !matches!(out.last(), Some(b'\n' | b'\r')) {
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(eol);
        }
        let header = if section.eq_ignore_ascii_case("general") {
            format!("[%{section}]")
        } else {
            format!("[{}]", qt_escape_ini_key(&section))
        };
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(eol);
        for line in lines {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol);
        }
    }
    out
}

/// Whether `data` ends in an odd number of backslashes: a `\` escaping
/// whatever comes next, so a line break added there would continue the
/// line instead of ending it.
fn ends_with_continuation(data: &[u8]) -> bool {
    data.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// Where a new key of `section` goes: after the last entry of the last
/// `[section]` (or after its header when it has none).
fn insertion_point(items: &[Item], section: &str) -> Option<usize> {
    let header = items
        .iter()
        .rposition(|it| matches!(it, Item::Section { name, .. } if name == section))?;
    let mut pos = match &items[header] {
        Item::Section { line, .. } | Item::Entry { line, .. } => line.line_end,
    };
    for item in &items[header + 1..] {
        match item {
            Item::Section { .. } => break,
            Item::Entry { line, .. } => pos = line.line_end,
        }
    }
    Some(pos)
}

// -------------------------------------------------------------- macOS ----

/// The plist side, pure so it is tested on every OS.
#[cfg(any(target_os = "macos", test))]
mod plist_prefs {
    use super::{qt_string_from_variant, qt_variant_string, PreviousValue};

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
fn apply_to_plist(
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
fn apply_to_plist(_: &Path, _: &str, _: &str) -> Result<ApplyReport, ApplyError> {
    Err(ApplyError::Unsupported {
        what: "a macOS preferences file",
        os: "macOS",
    })
}

// ------------------------------------------------------------ Windows ----

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
fn apply_to_registry(
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
fn apply_to_registry(_: &str, _: &str, _: &str) -> Result<ApplyReport, ApplyError> {
    Err(ApplyError::Unsupported {
        what: "the Windows registry",
        os: "Windows",
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

    #[test]
    fn keys_escape_like_qt() {
        assert_eq!(qt_escape_ini_key("wan/rendezvousUrl"), r"wan\rendezvousUrl");
        assert_eq!(qt_escape_ini_key("a b=c"), "a%20b%3Dc");
        assert_eq!(qt_escape_ini_key("é€"), "%E9%U20AC");
        assert_eq!(unescape_ini_key(br"wan\x%20y%U20AC"), "wan/x y€");
        // A lone or malformed % stays literal.
        assert_eq!(unescape_ini_key(b"a%"), "a%");
        assert_eq!(unescape_ini_key(b"a%zz"), "a%zz");
    }

    #[test]
    fn values_escape_like_qt() {
        assert_eq!(
            qt_escape_ini_value("https://rdv.example.org"),
            "https://rdv.example.org"
        );
        // Multi-line: one line with \n escapes; no quotes unless ; , = or
        // outer spaces.
        assert_eq!(
            qt_escape_ini_value("stun:a:1\nstun:b:2"),
            r"stun:a:1\nstun:b:2"
        );
        assert_eq!(
            qt_escape_ini_value("turn:h:3478?transport=tcp"),
            r#""turn:h:3478?transport=tcp""#
        );
        assert_eq!(qt_escape_ini_value(" x"), r#"" x""#);
        assert_eq!(qt_escape_ini_value("a;b"), r#""a;b""#);
        assert_eq!(qt_escape_ini_value("a,b"), r#""a,b""#);
        assert_eq!(qt_escape_ini_value(r#"say "hi" \o/"#), r#"say \"hi\" \\o/"#);
        assert_eq!(qt_escape_ini_value("@x"), "@@x");
        // Non-ASCII as \x escapes; a hex digit after one is escaped too.
        assert_eq!(qt_escape_ini_value("Müller"), r"M\xfcller");
        assert_eq!(qt_escape_ini_value("é1"), r"\xe9\x31");
        assert_eq!(qt_escape_ini_value("a\0b"), r"a\0\x62");
        assert_eq!(qt_escape_ini_value("🎹"), r"\xd83c\xdfb9");
        assert_eq!(qt_escape_ini_value("%41"), "%41");
    }

    #[test]
    fn values_unescape_like_qt() {
        let text = |s: &str| QtValue::Text(s.to_owned());
        assert_eq!(unescape_ini_value(br"a\nb"), text("a\nb"));
        assert_eq!(unescape_ini_value(br#""a;b, c""#), text("a;b, c"));
        assert_eq!(
            unescape_ini_value(b"a , b"),
            QtValue::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(unescape_ini_value(b"  x  "), text("x"));
        assert_eq!(unescape_ini_value(br#"" x ""#), text(" x "));
        assert_eq!(unescape_ini_value(br"M\xfcller"), text("Müller"));
        assert_eq!(unescape_ini_value("Müller".as_bytes()), text("Müller"));
        assert_eq!(unescape_ini_value(br"\xd83c\xdfb9"), text("🎹"));
        assert_eq!(unescape_ini_value(br"\101"), text("A"));
        assert_eq!(unescape_ini_value(b"@@x"), text("@x"));
        assert_eq!(unescape_ini_value(b"@Invalid()"), QtValue::Invalid);
        assert_eq!(unescape_ini_value(b""), text(""));
        // Whatever bytes come, no panic.
        for raw in [&b"\\"[..], b"\\x", b"\"", b"\\\r", b",", b"\xff\xfe"] {
            let _ = unescape_ini_value(raw);
        }
    }

    #[test]
    fn escaping_round_trips_awkward_strings() {
        for s in [
            "",
            " ",
            "plain",
            "a\nb\r\nc\td",
            "; not a comment",
            "x=y, z",
            "\"quoted\"",
            "back\\slash",
            "é1 ü 日本 🎹 0",
            "\u{7f}\u{1}9",
            "@ByteArray(x)",
            "trailing \\",
            "# none (LAN only)",
        ] {
            let escaped = qt_escape_ini_value(s);
            let file = format!("[S]\nk={escaped}\n");
            assert_eq!(
                parse_qt_ini(file.as_bytes()).get("S/k"),
                Some(&QtValue::Text(s.to_owned())),
                "{s:?} escaped as {escaped:?}"
            );
        }
    }

    #[test]
    fn scanner_follows_qt_line_rules() {
        let ini = b"\xEF\xBB\xBF; comment\n[General]\ntop=1\n[A%20B]\nk=v ; trailing\n\
                    q=\"multi\nline\"\ncont=a\\\nb\n# not a comment\n[%General]\ng=2\n[C\\D]\ne=3\n";
        let map = parse_qt_ini(ini);
        assert_eq!(map.get("top"), Some(&QtValue::Text("1".into())));
        assert_eq!(map.get("A B/k"), Some(&QtValue::Text("v".into())));
        assert_eq!(map.get("A B/q"), Some(&QtValue::Text("multi\nline".into())));
        assert_eq!(map.get("A B/cont"), Some(&QtValue::Text("ab".into())));
        assert_eq!(map.get("General/g"), Some(&QtValue::Text("2".into())));
        assert_eq!(map.get("C/D/e"), Some(&QtValue::Text("3".into())));
        assert_eq!(map.len(), 6);
    }

    #[test]
    fn set_values_edits_in_place_adds_and_appends() {
        let vals = [
            (KEY_RENDEZVOUS_URL, "http://h:1"),
            (KEY_ICE_SERVERS, "stun:a:1"),
        ];
        // Present in an unusual spelling: replaced where it stands.
        let ini = b"[General]\nCollab\\wan\\rendezvousUrl=old\n[Collab\\lan]\niceServers=x\n";
        let out = set_ini_values(ini, &vals);
        assert_eq!(
            out,
            b"[General]\nCollab\\wan\\rendezvousUrl=http://h:1\n[Collab\\lan]\niceServers=stun:a:1\n"
        );
        // Section present, keys missing: added after its last entry.
        let ini = b"[Collab]\nenabled=true\n\n[MIDI]\nx=1";
        let out = String::from_utf8(set_ini_values(ini, &vals)).unwrap();
        assert_eq!(
            out,
            "[Collab]\nenabled=true\nwan\\rendezvousUrl=http://h:1\nlan\\iceServers=stun:a:1\n\n[MIDI]\nx=1"
        );
        // No section, no final line break, CRLF: appended in kind.
        let ini = b"[MIDI]\r\nx=1";
        let out = String::from_utf8(set_ini_values(ini, &vals)).unwrap();
        assert_eq!(
            out,
            "[MIDI]\r\nx=1\r\n\r\n[Collab]\r\nwan\\rendezvousUrl=http://h:1\r\nlan\\iceServers=stun:a:1\r\n"
        );
        // Empty file.
        let out = String::from_utf8(set_ini_values(b"", &vals)).unwrap();
        assert_eq!(
            out,
            "[Collab]\nwan\\rendezvousUrl=http://h:1\nlan\\iceServers=stun:a:1\n"
        );
        // Keys without a section go to the top (General).
        let out = String::from_utf8(set_ini_values(b"[A]\nb=1\n", &[("top", "v")])).unwrap();
        assert_eq!(out, "top=v\n[A]\nb=1\n");
    }

    #[test]
    fn multi_line_values_and_continuations_are_replaced_whole() {
        let ini = b"[Collab]\nlan\\iceServers=\"a\nb\"\nwan\\rendezvousUrl=x\\\ny ; note\nz=1\n";
        let vals = [(KEY_RENDEZVOUS_URL, "u"), (KEY_ICE_SERVERS, "i")];
        let out = String::from_utf8(set_ini_values(ini, &vals)).unwrap();
        assert_eq!(
            out,
            "[Collab]\nlan\\iceServers=i\nwan\\rendezvousUrl=u; note\nz=1\n"
        );
        let map = parse_qt_ini(out.as_bytes());
        assert_eq!(
            map.get(KEY_RENDEZVOUS_URL),
            Some(&QtValue::Text("u".into()))
        );
        assert_eq!(map.get("Collab/z"), Some(&QtValue::Text("1".into())));
    }

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

    #[test]
    fn an_unclosed_quote_is_refused_not_half_written() {
        let dir = std::env::temp_dir().join(format!("app-me-quote-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("NONE.conf");
        let original = b"[AI]\nmodel=\"oops\n[MIDI]\nthru=false\n";
        fs::write(&path, original).unwrap();
        let err = apply_to_ini(&path, "http://h:1", "stun:a:1").unwrap_err();
        assert!(matches!(err, ApplyError::Format { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), original);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no backup, no temp file"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// Arbitrary files, built from the bytes that matter to the format:
    /// nothing panics, and whenever the edit is accepted Qt's reading of
    /// the result gives our values.
    #[test]
    fn arbitrary_files_never_panic() {
        const PIECES: &[&[u8]] = &[
            b"[",
            b"]",
            b"=",
            b";",
            b"\"",
            b"\\",
            b"\n",
            b"\r",
            b"\r\n",
            b" ",
            b"\t",
            b",",
            b"%",
            b"%U",
            b"@",
            b"Collab",
            b"wan",
            b"lan",
            b"General",
            b"rendezvousUrl",
            b"iceServers",
            b"x",
            b"0",
            b"\xff",
            b"\xc3\xa9",
            b"\xEF\xBB\xBF",
            b"/",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let values = [
            (KEY_RENDEZVOUS_URL, "http://h:1"),
            (KEY_ICE_SERVERS, "a\nb=c"),
        ];
        let mut accepted = 0;
        for _ in 0..3000 {
            let len = next() % 40;
            let file: Vec<u8> = (0..len)
                .flat_map(|_| {
                    PIECES[(next() % PIECES.len() as u64) as usize]
                        .iter()
                        .copied()
                })
                .collect();
            let _ = parse_qt_ini(&file);
            let out = set_ini_values(&file, &values);
            let back = parse_qt_ini(&out);
            let ok = values
                .iter()
                .all(|(k, v)| back.get(*k) == Some(&QtValue::Text((*v).to_owned())));
            if !file.contains(&b'"') {
                assert!(
                    ok,
                    "{:?} -> {:?}",
                    String::from_utf8_lossy(&file),
                    String::from_utf8_lossy(&out)
                );
            }
            accepted += usize::from(ok);
        }
        assert!(accepted > 2000, "{accepted}");
    }
}
