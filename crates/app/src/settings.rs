//! The app's settings: one serde struct with a default for every field, so a
//! settings file written by an older version (or edited by hand) still loads.
//!
//! - Loading is lenient, field by field ([`Settings::from_json_value`]): a
//!   missing field takes its default, an unknown one is ignored, a field of
//!   the wrong type takes its default *and* a warning, so one bad hand edit
//!   never costs the user the rest of their settings.
//! - Saving is strict ([`save_file`]): settings that do not
//!   [validate](Settings::validate) are refused, and the file is replaced
//!   atomically, so a crash mid-save leaves the old file.
//! - A file that is not JSON at all is renamed aside ([`load_file`]), never
//!   deleted: the user may want what was in it.
//! - The STUN/TURN list converts to the engine's [`IceServer`]s and to and
//!   from MidiEditor's one-URI-per-line text ([`export_midieditor_ice`],
//!   [`import_midieditor_ice`]).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jam::ice::parse_ice_uri;
use jam::rtc::IceServer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod form;
pub use form::from_form;

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
            max_peers: 8,
        }
    }
}

/// The key our settings live under in the settings file. The file is a JSON
/// object of keys, the layout `tauri-plugin-store` writes, so the Tauri shell
/// can use the store plugin on the same path and [`load_file`] still reads it.
pub const STORE_KEY: &str = "settings";

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
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
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
    /// Reads settings from the JSON a settings file held, as leniently as
    /// possible: every field is taken on its own, so a field of the wrong
    /// type (a hand edit) falls back to its default with a warning naming
    /// it, while the others keep their saved values. Missing fields take
    /// their defaults silently (a file from an older version), unknown
    /// fields are ignored (a file from a newer version).
    pub fn from_json_value(v: Value) -> (Settings, Vec<String>) {
        let mut warnings = Vec::new();
        let Value::Object(file) = v else {
            warnings.push(format!(
                "The saved settings were {} instead of a set of named values; \
                 the default settings are used.",
                json_kind(&v)
            ));
            return (Settings::default(), warnings);
        };
        let defaults = match serde_json::to_value(Settings::default()) {
            Ok(Value::Object(m)) => m,
            // Cannot happen for this struct; stay panic-free anyway.
            _ => return (Settings::default(), warnings),
        };
        let mut merged = defaults.clone();
        for (key, default_value) in &defaults {
            let Some(saved) = file.get(key) else {
                continue;
            };
            let candidate = match key.as_str() {
                "iceServers" => lenient_ice_rows(saved, &mut warnings),
                "mdnsInterfaces" => lenient_strings(key, saved, &mut warnings),
                _ => Some(saved.clone()),
            };
            let Some(candidate) = candidate else {
                continue;
            };
            let mut trial = merged.clone();
            trial.insert(key.clone(), candidate.clone());
            match serde_json::from_value::<Settings>(Value::Object(trial)) {
                Ok(_) => {
                    merged.insert(key.clone(), candidate);
                }
                Err(e) => warnings.push(format!(
                    "The saved value of \"{key}\" could not be used ({e}); \
                     it was reset to the default, {default_value}."
                )),
            }
        }
        match serde_json::from_value::<Settings>(Value::Object(merged)) {
            Ok(s) => (s, warnings),
            Err(e) => {
                warnings.push(format!(
                    "The saved settings could not be read ({e}); the default settings are used."
                ));
                (Settings::default(), warnings)
            }
        }
    }

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

/// [`Settings::from_json_value`] as a free function.
pub fn from_json_value(v: Value) -> (Settings, Vec<String>) {
    Settings::from_json_value(v)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty (null)",
        Value::Bool(_) => "a true/false value",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a set of named values",
    }
}

/// The STUN/TURN list, row by row: a bad row (or a bad field in a row) is
/// dropped or defaulted on its own instead of emptying the whole list.
/// `None` when the value is not a list at all (the caller then warns and
/// keeps the default).
fn lenient_ice_rows(saved: &Value, warnings: &mut Vec<String>) -> Option<Value> {
    let Value::Array(items) = saved else {
        return Some(saved.clone());
    };
    let mut rows = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            warnings.push(format!(
                "STUN/TURN server {} in the saved settings was {} instead of a server entry; it was left out.",
                i + 1,
                json_kind(item)
            ));
            continue;
        };
        let mut row = Map::new();
        for name in ["url", "username", "credential"] {
            match fields.get(name) {
                None => {}
                Some(Value::String(s)) => {
                    row.insert(name.to_owned(), Value::String(s.clone()));
                }
                Some(other) => warnings.push(format!(
                    "The saved value of \"iceServers[{i}].{name}\" was {} instead of text; it was left empty.",
                    json_kind(other)
                )),
            }
        }
        rows.push(Value::Object(row));
    }
    Some(Value::Array(rows))
}

/// A list of strings, skipping (with a warning) the entries that are not.
fn lenient_strings(key: &str, saved: &Value, warnings: &mut Vec<String>) -> Option<Value> {
    let Value::Array(items) = saved else {
        return Some(saved.clone());
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(_) => out.push(item.clone()),
            other => warnings.push(format!(
                "The saved value of \"{key}[{i}]\" was {} instead of text; it was left out.",
                json_kind(other)
            )),
        }
    }
    Some(Value::Array(out))
}

fn row_is_blank(row: &IceRow) -> bool {
    row.url.trim().is_empty() && row.username.trim().is_empty() && row.credential.is_empty()
}

/// Blank (the bundled rendezvous), or `http(s)://host[:port][/path]` with
/// no spaces, no user name, no `?query` and no `#fragment`: MidiEditor
/// appends its own paths (`/session`, `/code/...`) to this base URL, so
/// anything after the path would end up in the middle of every request.
pub fn check_rendezvous_url(raw: &str) -> Result<(), String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("A web address cannot contain spaces or line breaks.".to_owned());
    }
    let lower = s.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(
            "The address must start with http:// or https:// (for example https://rdv.example.org)."
                .to_owned(),
        );
    }
    if s.contains('\\') {
        return Err("Use / rather than \\ in a web address.".to_owned());
    }
    if s.contains('?') {
        return Err(
            "Give only the server and, if needed, a path: leave out the part from ? on.".to_owned(),
        );
    }
    if s.contains('#') {
        return Err("Leave out the part from # on: it is not sent to the server.".to_owned());
    }
    let url = match url::Url::parse(s) {
        Ok(u) => u,
        Err(url::ParseError::InvalidPort) => {
            return Err("The port after : must be a number from 1 to 65535.".to_owned())
        }
        Err(url::ParseError::EmptyHost) => {
            return Err(
                "Put the server's name or IP address after http:// or https://.".to_owned(),
            )
        }
        Err(_) => {
            return Err(
                "This is not a valid web address; it should look like https://rdv.example.org or http://192.168.1.20:8787."
                    .to_owned(),
            )
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err("Put the server's name or IP address after http:// or https://.".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Leave out the user name and password (the part before @).".to_owned());
    }
    if url.port() == Some(0) {
        return Err("The port after : must be a number from 1 to 65535.".to_owned());
    }
    Ok(())
}

/// What a valid STUN/TURN address is made of.
struct IceUrlParts {
    scheme: &'static str,
}

/// Checks one row's address and credentials; every problem of the row.
fn check_ice_row(i: usize, row: &IceRow) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let field = |f: &str| format!("iceServers[{i}].{f}");
    let parts = match check_ice_url(&row.url) {
        Ok(p) => p,
        Err(message) => {
            errors.push(FieldError::new(field("url"), message));
            return errors;
        }
    };
    if parts.scheme == "stun" {
        let message = "A STUN server takes no user name or password: leave these empty, or use a turn: address.";
        if !row.username.trim().is_empty() {
            errors.push(FieldError::new(field("username"), message));
        }
        if !row.credential.is_empty() {
            errors.push(FieldError::new(field("credential"), message));
        }
    } else {
        if row.username.trim().is_empty() {
            errors.push(FieldError::new(
                field("username"),
                "A TURN server needs the user name its operator gave you.",
            ));
        }
        if row.credential.is_empty() {
            errors.push(FieldError::new(
                field("credential"),
                "A TURN server needs the password its operator gave you.",
            ));
        }
    }
    errors
}

/// `stun:`/`turn:`/`turns:` + host + optional port + (TURN only) optional
/// `?transport=udp|tcp|tls`. Stricter than [`parse_ice_uri`] (which also
/// takes a missing scheme and inline credentials, as MidiEditor does):
/// the pane has separate fields, so the address must be just the address.
fn check_ice_url(raw: &str) -> Result<IceUrlParts, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(
            "Enter a server address such as stun:stun.example.org:3478, or remove this row."
                .to_owned(),
        );
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("A server address cannot contain spaces.".to_owned());
    }
    let scheme = match s.split_once(':').map(|(sc, _)| sc.to_ascii_lowercase()) {
        Some(sc) if sc == "stun" => "stun",
        Some(sc) if sc == "turn" => "turn",
        Some(sc) if sc == "turns" => "turns",
        _ => {
            return Err(
                "The address must start with stun:, turn: or turns: (for example stun:stun.example.org:3478)."
                    .to_owned(),
            )
        }
    };
    let rest = &s[scheme.len() + 1..];
    if rest.starts_with("//") {
        return Err(format!(
            "Write the address without // after the colon (for example {scheme}:server.example.org:3478)."
        ));
    }
    if rest.contains('@') {
        return Err(
            "Put the user name and password in their own fields, not in the address.".to_owned(),
        );
    }
    if rest.contains('#') {
        return Err("Leave out the part from # on.".to_owned());
    }
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query {
        if scheme == "stun" {
            return Err(
                "A STUN address takes no ?transport= part: STUN always uses UDP.".to_owned(),
            );
        }
        let transport = q
            .strip_prefix("transport=")
            .map(str::to_ascii_lowercase)
            .filter(|t| ["udp", "tcp", "tls"].contains(&t.as_str()));
        match transport.as_deref() {
            None => {
                return Err(
                    "The only option after ? is transport=udp, transport=tcp or transport=tls."
                        .to_owned(),
                )
            }
            Some("udp") if scheme == "turns" => return Err(
                "turns: always runs over TLS on TCP: use transport=tcp or leave the option out."
                    .to_owned(),
            ),
            Some(_) => {}
        }
    }
    check_host_port(scheme, hostport)?;
    // The engine's own parser must agree, or the jam would refuse the row.
    parse_ice_uri(s).map_err(|e| format!("This address cannot be used: {e}."))?;
    Ok(IceUrlParts { scheme })
}

fn check_host_port(scheme: &str, hostport: &str) -> Result<(), String> {
    let port_message = "The port after the last : must be a number from 1 to 65535.";
    let no_host = || format!("Put the server's name or IP address after {scheme}:.");
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err("An IPv6 address needs its closing ].".to_owned());
        };
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("This is not an IPv6 address.".to_owned());
        }
        match after {
            "" => (v6, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (v6, Some(p)),
                None => return Err(port_message.to_owned()),
            },
        }
    } else {
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if host.contains(':') {
            return Err(format!(
                "Put an IPv6 address in square brackets, for example {scheme}:[2001:db8::1]:3478."
            ));
        }
        if host.is_empty() {
            return Err(no_host());
        }
        if !host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
            || host.starts_with(['.', '-'])
        {
            return Err(
                "A server name can only contain letters, digits, dots and dashes.".to_owned(),
            );
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(no_host());
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => {}
            _ => return Err(port_message.to_owned()),
        }
    }
    Ok(())
}

/// The rows as the engine's ICE servers, skipping fully blank rows. The
/// first invalid row is the error (the settings pane validates every row
/// before saving, so this only fails on a hand-edited file).
pub fn ice_rows_to_servers(rows: &[IceRow]) -> Result<Vec<IceServer>, FieldError> {
    let mut servers = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row_is_blank(row) {
            continue;
        }
        if let Some(e) = check_ice_row(i, row).into_iter().next() {
            return Err(e);
        }
        let url = row.url.trim();
        let mut server = parse_ice_uri(url)
            .map_err(|e| FieldError::new(format!("iceServers[{i}].url"), e.to_string()))?;
        let is_stun = url.to_ascii_lowercase().starts_with("stun:");
        if is_stun {
            server.username = None;
            server.credential = None;
        } else {
            server.username = Some(row.username.trim().to_owned());
            server.credential = Some(row.credential.clone());
        }
        servers.push(server);
    }
    Ok(servers)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a
/// user name or password survives MidiEditor's `user:pass@host` syntax
/// whatever it holds (`:`, `@`, `%`, `?`, `#`, `/`, spaces, line breaks,
/// non-ASCII as UTF-8 bytes).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The rows in MidiEditor's `Collab/lan/iceServers` syntax: one URI a
/// line, TURN credentials inline and percent-encoded
/// (`turn:us%3Aer:p%40ss@host:3478?transport=tcp`). Fully blank rows are
/// skipped; an empty list gives an empty string (which MidiEditor reads
/// as "use my 10 Google STUN servers"; see `midieditor::ice_value`).
/// The rows are expected to be valid; an invalid one is written as it is
/// rather than dropped silently.
pub fn export_midieditor_ice(rows: &[IceRow]) -> String {
    let mut lines = Vec::new();
    for row in rows.iter().filter(|r| !row_is_blank(r)) {
        let url = row.url.trim();
        let user = row.username.trim();
        let pass = row.credential.as_str();
        if user.is_empty() && pass.is_empty() {
            lines.push(url.to_owned());
            continue;
        }
        let mut creds = percent_encode(user);
        if !pass.is_empty() {
            creds.push(':');
            creds.push_str(&percent_encode(pass));
        }
        match url.split_once(':') {
            Some((scheme, rest)) => lines.push(format!("{scheme}:{creds}@{rest}")),
            None => lines.push(format!("{creds}@{url}")),
        }
    }
    lines.join("\n")
}

/// Reads MidiEditor's one-URI-per-line text into rows: blank lines and `#`
/// comments are skipped (as MidiEditor does), a missing scheme means
/// `stun:` (as MidiEditor does), inline credentials are percent-decoded
/// into the username and credential fields. The address keeps the text as
/// written otherwise, so `import(export(rows)) == rows`. The first line
/// MidiEditor's grammar refuses is the error, naming the line.
pub fn import_midieditor_ice(text: &str) -> Result<Vec<IceRow>, FieldError> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = parse_ice_uri(line).map_err(|e| {
            FieldError::new(
                "iceServers",
                format!(
                    "Line {} cannot be used: {e}. Each line must look like stun:host:port or turn:user:password@host:port.",
                    n + 1
                ),
            )
        })?;
        let (scheme, rest) = match line.split_once(':') {
            Some((sc, rest))
                if ["stun", "turn", "turns"].contains(&sc.to_ascii_lowercase().as_str()) =>
            {
                (sc, rest)
            }
            _ => ("stun", line),
        };
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let hostpart = match rest.rsplit_once('@') {
            Some((_, h)) => h,
            None => rest,
        };
        rows.push(IceRow {
            url: format!("{scheme}:{hostpart}"),
            username: parsed.username.unwrap_or_default(),
            credential: parsed.credential.unwrap_or_default(),
        });
    }
    Ok(rows)
}

/// A ready-made STUN/TURN list the pane offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IcePreset {
    /// Stable identifier (`none`, `public-stun`).
    pub id: &'static str,
    /// What the pane shows.
    pub label: &'static str,
    /// The rows the preset puts in the list.
    pub rows: Vec<IceRow>,
}

/// The presets, default first. Data only: nothing here is ever contacted
/// by the app's tests.
///
/// - `none`: no servers, the default. On one LAN the peers reach each other
///   by their LAN addresses; a STUN server only adds a wait for an answer
///   that is of no use there (and a failure when the LAN is offline).
/// - `public-stun`: Google's and Cloudflare's public STUN servers, for
///   peers on different networks (home routers with ordinary NAT).
pub fn ice_presets() -> Vec<IcePreset> {
    let stun = |url: &str| IceRow {
        url: url.to_owned(),
        ..IceRow::default()
    };
    vec![
        IcePreset {
            id: "none",
            label: "None (LAN only)",
            rows: Vec::new(),
        },
        IcePreset {
            id: "public-stun",
            label: "Public STUN servers (Google, Cloudflare)",
            rows: vec![
                stun("stun:stun.l.google.com:19302"),
                stun("stun:stun1.l.google.com:19302"),
                stun("stun:stun2.l.google.com:19302"),
                stun("stun:stun3.l.google.com:19302"),
                stun("stun:stun4.l.google.com:19302"),
                stun("stun:stun.cloudflare.com:3478"),
            ],
        },
    ]
}

/// The preset whose rows these are, if any (so the pane can show which
/// one is selected).
pub fn matching_preset(rows: &[IceRow]) -> Option<&'static str> {
    let rows: Vec<IceRow> = Settings {
        ice_servers: rows.to_vec(),
        ..Settings::default()
    }
    .normalized()
    .ice_servers;
    ice_presets()
        .into_iter()
        .find(|p| p.rows == rows)
        .map(|p| p.id)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(url: &str, username: &str, credential: &str) -> IceRow {
        IceRow {
            url: url.to_owned(),
            username: username.to_owned(),
            credential: credential.to_owned(),
        }
    }

    /// The fields that fail for these settings.
    fn failing(s: &Settings) -> Vec<String> {
        match s.validate() {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    fn with_rows(rows: Vec<IceRow>) -> Settings {
        Settings {
            ice_servers: rows,
            ..Settings::default()
        }
    }

    fn ice_error(url: &str, username: &str, credential: &str) -> Vec<String> {
        failing(&with_rows(vec![row(url, username, credential)]))
    }

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
    fn rendezvous_url_rules() {
        let url = |u: &str| {
            failing(&Settings {
                rendezvous_url: u.to_owned(),
                ..Settings::default()
            })
        };
        for ok in [
            "",
            "  ",
            "http://192.168.1.20:8787",
            "https://rdv.example.org",
            "https://rdv.example.org/base/path/",
            "HTTP://[::1]:8787",
            " https://x.example ",
        ] {
            assert!(url(ok).is_empty(), "{ok:?}");
        }
        for bad in [
            "rdv.example.org",
            "ftp://x",
            "http:x",
            "http://",
            "http://x y",
            "http://x:99999",
            "http://x:0",
            "http://x/?a=b",
            "http://x/#frag",
            "http://u:p@x",
            "http:\\\\x",
            "stun:x",
        ] {
            assert_eq!(url(bad), ["rendezvousUrl"], "{bad:?}");
        }
    }

    #[test]
    fn ice_row_rules() {
        // Valid rows.
        for (u, user, pass) in [
            ("stun:stun.example.org:3478", "", ""),
            ("stun:127.0.0.1", "", ""),
            ("STUN:[::1]:3478", "", ""),
            ("turn:relay.example.org:3478?transport=udp", "u", "p"),
            ("turn:relay.example.org?transport=tcp", "u", "p"),
            ("turns:relay.example.org:5349", "u", "p w"),
            ("turns:relay.example.org?transport=tcp", "u", "p"),
        ] {
            assert!(ice_error(u, user, pass).is_empty(), "{u}");
        }
        let url_error = ["iceServers[0].url"];
        // A TURN URL without a host.
        assert_eq!(ice_error("turn:", "u", "p"), url_error);
        assert_eq!(ice_error("turn::3478", "u", "p"), url_error);
        // Bad ports.
        assert_eq!(ice_error("turn:host:99999", "u", "p"), url_error);
        assert_eq!(ice_error("stun:host:0", "", ""), url_error);
        assert_eq!(ice_error("stun:host:", "", ""), url_error);
        assert_eq!(ice_error("stun:host:+1", "", ""), url_error);
        // STUN takes no transport.
        assert_eq!(ice_error("stun:host?transport=tcp", "", ""), url_error);
        // Only transport=udp|tcp|tls; turns is never UDP.
        assert_eq!(ice_error("turn:host?transport=sctp", "u", "p"), url_error);
        assert_eq!(ice_error("turn:host?foo=bar", "u", "p"), url_error);
        assert_eq!(ice_error("turns:host?transport=udp", "u", "p"), url_error);
        // Not a STUN/TURN scheme.
        assert_eq!(ice_error("http://x", "", ""), url_error);
        assert_eq!(ice_error("stun.example.org:3478", "", ""), url_error);
        // Credentials belong in their fields; no //, spaces, #, bare IPv6.
        assert_eq!(ice_error("turn:u:p@host", "u", "p"), url_error);
        assert_eq!(ice_error("turn://host", "u", "p"), url_error);
        assert_eq!(ice_error("stun:ho st", "", ""), url_error);
        assert_eq!(ice_error("stun:host#x", "", ""), url_error);
        assert_eq!(ice_error("stun:::1", "", ""), url_error);
        assert_eq!(ice_error("stun:[zz]:1", "", ""), url_error);
        assert_eq!(ice_error("stun:ho$t", "", ""), url_error);
        // A row with credentials but no address.
        assert_eq!(ice_error("", "u", "p"), url_error);
        // TURN without credentials.
        assert_eq!(
            ice_error("turn:host", "", ""),
            ["iceServers[0].username", "iceServers[0].credential"]
        );
        assert_eq!(
            ice_error("turn:host", "u", ""),
            ["iceServers[0].credential"]
        );
        // STUN with credentials.
        assert_eq!(
            ice_error("stun:host", "u", "p"),
            ["iceServers[0].username", "iceServers[0].credential"]
        );
        // The index is the row's own, blank rows included.
        let s = with_rows(vec![
            row("stun:a", "", ""),
            row(" ", "", ""),
            row("http://x", "", ""),
        ]);
        assert_eq!(failing(&s), ["iceServers[2].url"]);
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
    fn rows_become_engine_servers() {
        let servers = ice_rows_to_servers(&[
            row("stun:stun.example.org", "", ""),
            row("", "", ""),
            row("turn:relay.example.org?transport=tcp", "u:1", "p@ss"),
        ])
        .unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:stun.example.org:3478"]);
        assert_eq!(servers[0].username, None);
        assert_eq!(
            servers[1].urls,
            ["turn:relay.example.org:3478?transport=tcp"]
        );
        assert_eq!(servers[1].username.as_deref(), Some("u:1"));
        assert_eq!(servers[1].credential.as_deref(), Some("p@ss"));
        let e = ice_rows_to_servers(&[row("stun:a", "", ""), row("turn:b", "", "")]).unwrap_err();
        assert_eq!(e.field, "iceServers[1].username");
        assert!(ice_rows_to_servers(&[]).unwrap().is_empty());
    }

    #[test]
    fn export_uses_midieditor_syntax() {
        let text = export_midieditor_ice(&[
            row("stun:stun.example.org:3478", "", ""),
            row("  ", "", ""),
            row("turn:host:3478?transport=tcp", "us:er", "p@ss"),
            row("turns:h", "a b%", "日"),
        ]);
        assert_eq!(
            text,
            "stun:stun.example.org:3478\n\
             turn:us%3Aer:p%40ss@host:3478?transport=tcp\n\
             turns:a%20b%25:%E6%97%A5@h"
        );
        assert_eq!(export_midieditor_ice(&[]), "");
        // MidiEditor's grammar (our engine's parser) reads it back right.
        let parsed = jam::ice::parse_ice_list(&text).unwrap();
        assert_eq!(parsed[1].username.as_deref(), Some("us:er"));
        assert_eq!(parsed[1].credential.as_deref(), Some("p@ss"));
        assert_eq!(parsed[2].username.as_deref(), Some("a b%"));
        assert_eq!(parsed[2].credential.as_deref(), Some("日"));
    }

    #[test]
    fn import_reads_midieditor_text() {
        let rows = import_midieditor_ice(
            "# my servers\n\n  stun:stun.l.google.com:19302  \r\n\
             stun1.l.google.com:3478\n\
             turn:us%3Aer:p%40ss@relay.example.org:3478?transport=tcp\n\
             turn:only-user@relay.example.org\n",
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                row("stun:stun.l.google.com:19302", "", ""),
                row("stun:stun1.l.google.com:3478", "", ""),
                row("turn:relay.example.org:3478?transport=tcp", "us:er", "p@ss"),
                row("turn:relay.example.org", "only-user", ""),
            ]
        );
        assert!(import_midieditor_ice("").unwrap().is_empty());
        assert!(import_midieditor_ice("# only a comment")
            .unwrap()
            .is_empty());
        let e = import_midieditor_ice("stun:a\n\nbogus:x\n").unwrap_err();
        assert_eq!(e.field, "iceServers");
        assert!(e.message.starts_with("Line 3 "), "{}", e.message);
    }

    /// A small deterministic generator, so the property test needs no crate
    /// and fails the same way every time.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    #[test]
    fn import_export_round_trip_property() {
        const AWKWARD: &[&str] = &[
            ":", "@", "%", "%41", " ", "é", "日本", "🎹", "?", "#", "/", "\\", "\"", "=", ";", ",",
            "\t", "\n", "+", "~", "a", "Z", "0", "-", "_", ".", "[", "]", "&",
        ];
        const TURN_URLS: &[&str] = &[
            "turn:relay.example.org:3478",
            "turn:relay.example.org?transport=tcp",
            "turn:10.0.0.1:3478?transport=udp",
            "turns:relay.example.org:5349",
            "turn:[2001:db8::1]:3478",
        ];
        const STUN_URLS: &[&str] = &[
            "stun:stun.example.org:3478",
            "stun:127.0.0.1",
            "stun:[::1]:19302",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let text = |rng: &mut Rng| -> String {
            let len = 1 + rng.next() % 8;
            (0..len).map(|_| rng.pick(AWKWARD)).collect()
        };
        for case in 0..500 {
            let n = rng.next() % 5;
            let rows: Vec<IceRow> = (0..n)
                .map(|_| {
                    if rng.next() % 3 == 0 {
                        row(rng.pick(STUN_URLS), "", "")
                    } else {
                        let user = text(&mut rng);
                        // Sometimes only a user name, or only a password.
                        let pass = match rng.next() % 6 {
                            0 => String::new(),
                            _ => text(&mut rng),
                        };
                        let user = if rng.next() % 6 == 0 {
                            String::new()
                        } else {
                            user
                        };
                        let user = user.trim().to_owned();
                        row(rng.pick(TURN_URLS), &user, &pass)
                    }
                })
                .collect();
            let exported = export_midieditor_ice(&rows);
            assert_eq!(
                exported.lines().count(),
                rows.len(),
                "case {case}: {exported:?}"
            );
            let back = import_midieditor_ice(&exported)
                .unwrap_or_else(|e| panic!("case {case}: {exported:?}: {e}"));
            assert_eq!(back, rows, "case {case}: {exported:?}");
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        const BITS: &[&str] = &[
            "stun:",
            "turn:",
            "turns:",
            "http://",
            "https://",
            "[",
            "]",
            ":",
            "@",
            "%",
            "%4",
            "?transport=",
            "udp",
            "#",
            "/",
            "\\",
            " ",
            "\n",
            "\u{0}",
            "é",
            "🎹",
            "x",
            "9",
            "99999",
            ".",
            "-",
        ];
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let text = |rng: &mut Rng| -> String {
            let len = rng.next() % 8;
            (0..len).map(|_| rng.pick(BITS)).collect()
        };
        for _ in 0..3000 {
            let (a, b, c) = (text(&mut rng), text(&mut rng), text(&mut rng));
            let s = Settings {
                display_name: a.clone(),
                rendezvous_url: b.clone(),
                ice_servers: vec![row(&a, &b, &c), row(&c, "", "")],
                mdns_interfaces: vec![c.clone()],
                ..Settings::default()
            };
            let _ = s.validate();
            let _ = s.normalized().validate();
            let _ = ice_rows_to_servers(&s.ice_servers);
            let exported = export_midieditor_ice(&s.ice_servers);
            let _ = import_midieditor_ice(&exported);
            let _ = import_midieditor_ice(&format!("{a}\n{b}\n{c}"));
            let _ = check_rendezvous_url(&a);
            let v = match rng.next() % 5 {
                0 => json!({ "displayName": a, "iceServers": [b, {"url": c}], "maxPeers": b }),
                1 => json!({ "iceServers": { "url": a }, "mdnsInterfaces": [1, a] }),
                2 => json!([a, b]),
                3 => json!({ "listenPort": -1, "gatherTimeoutMs": a }),
                _ => json!({ "settings": { "displayName": a } }),
            };
            let (loaded, _) = Settings::from_json_value(v);
            let _ = loaded.validate();
        }
    }

    #[test]
    fn presets_are_data_the_pane_can_show() {
        let presets = ice_presets();
        assert_eq!(presets[0].id, "none");
        assert!(presets[0].rows.is_empty());
        let public = presets.iter().find(|p| p.id == "public-stun").unwrap();
        assert!(public
            .rows
            .iter()
            .any(|r| r.url == "stun:stun.l.google.com:19302"));
        assert!(public
            .rows
            .iter()
            .any(|r| r.url == "stun:stun.cloudflare.com:3478"));
        assert!(public.rows.len() >= 5);
        assert_eq!(matching_preset(&[]), Some("none"));
        assert_eq!(matching_preset(&public.rows), Some("public-stun"));
        assert_eq!(matching_preset(&[row("stun:x", "", "")]), None);
        // The default settings use the "none" preset.
        assert_eq!(
            matching_preset(&Settings::default().ice_servers),
            Some("none")
        );
    }

    #[test]
    fn lenient_loading_keeps_what_it_can() {
        // An old file: only some fields.
        let (s, w) = Settings::from_json_value(json!({"displayName": "Ana"}));
        assert_eq!(s.display_name, "Ana");
        assert_eq!(s.listen_port, Settings::default().listen_port);
        assert!(w.is_empty());
        // Unknown fields are ignored silently.
        let (s, w) = Settings::from_json_value(json!({"maxPeers": 4, "futureThing": [1, 2]}));
        assert_eq!(s.max_peers, 4);
        assert!(w.is_empty());
        // Wrong types: default plus a warning naming the field; the rest kept.
        let (s, w) = Settings::from_json_value(json!({
            "displayName": "Ana",
            "listenPort": "8787",
            "maxPeers": -1,
            "gatherTimeoutMs": 1.5,
            "advertise": null,
            "openJam": true,
        }));
        assert_eq!(s.display_name, "Ana");
        assert!(s.open_jam);
        assert_eq!(s.listen_port, 8787);
        assert_eq!(s.max_peers, 8);
        assert_eq!(s.gather_timeout_ms, 2000);
        assert!(s.advertise);
        assert_eq!(w.len(), 4, "{w:#?}");
        for field in ["listenPort", "maxPeers", "gatherTimeoutMs", "advertise"] {
            assert!(w.iter().any(|m| m.contains(field)), "{field}: {w:#?}");
        }
        // Out of range for the type is a wrong type too.
        let (s, w) = Settings::from_json_value(json!({"listenPort": 70000}));
        assert_eq!(s.listen_port, 8787);
        assert_eq!(w.len(), 1);
        // Not an object at all.
        for v in [json!(null), json!([1]), json!("x"), json!(3)] {
            let (s, w) = Settings::from_json_value(v);
            assert_eq!(s, Settings::default());
            assert_eq!(w.len(), 1);
        }
    }

    #[test]
    fn lenient_loading_of_lists_is_per_item() {
        let (s, w) = Settings::from_json_value(json!({
            "iceServers": [
                {"url": "stun:a"},
                "stun:not-an-object",
                {"url": "turn:b", "username": 5, "credential": "p", "extra": 1},
            ],
            "mdnsInterfaces": ["eth0", 7, "en0"],
        }));
        assert_eq!(
            s.ice_servers,
            vec![row("stun:a", "", ""), row("turn:b", "", "p")]
        );
        assert_eq!(s.mdns_interfaces, vec!["eth0".to_owned(), "en0".to_owned()]);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w.iter().any(|m| m.contains("iceServers[2].username")));
        assert!(w.iter().any(|m| m.contains("mdnsInterfaces[1]")));
        // Not a list: default and a warning.
        let (s, w) = Settings::from_json_value(json!({"iceServers": "stun:a"}));
        assert!(s.ice_servers.is_empty());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("iceServers"));
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
