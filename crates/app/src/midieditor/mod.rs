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

//!
//! The code follows those seams: [`location`] (where the store is on each
//! OS), [`apply`](mod@apply) (validation, dispatch and the report), and one
//! module per store: `ini`, `plist`, `registry`.

mod apply;
mod ini;
mod location;
mod plist;
mod registry;

pub use apply::{apply, ice_value, ApplyError, ApplyReport, PreviousValue};
pub use ini::{
    apply_to_ini, parse_qt_ini, qt_escape_ini_key, qt_escape_ini_value, set_ini_values, QtValue,
};
pub use location::{default_settings_location, ini_location_from, Location};

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
