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
//!
//! Where each part lives: `model` (the struct, its bounds, validation),
//! `lenient` (reading an old or hand-edited file), `file` (load and atomic
//! save), `form` (the settings pane's values as typed), `presets`; the
//! rendezvous URL and STUN/TURN checks and conversions are in this file.

use jam::rtc::IceServer;
use jam::types::{IceScheme, IceServer as IceUri, RendezvousUrl};

mod file;
mod form;
mod lenient;
mod model;
mod presets;

pub use file::{load_file, save_file, LoadOutcome, STORE_KEY};
pub(crate) use file::{unix_seconds, unused_sibling, write_atomic};
pub use form::from_form;
pub use lenient::from_json_value;
pub use model::{
    FieldError, IceRow, InvalidSettings, Settings, GATHER_TIMEOUT_MS, MAX_DISPLAY_NAME_CHARS,
    MAX_PEERS,
};
pub use presets::{ice_presets, matching_preset, IcePreset};

fn row_is_blank(row: &IceRow) -> bool {
    row.url.trim().is_empty() && row.username.trim().is_empty() && row.credential.is_empty()
}

/// Blank (the bundled rendezvous), or `http(s)://host[:port][/path]` with
/// no spaces, no user name, no `?query` and no `#fragment`: MidiEditor
/// appends its own paths (`/session`, `/code/...`) to this base URL, so
/// anything after the path would end up in the middle of every request.
pub fn check_rendezvous_url(raw: &str) -> Result<(), String> {
    if raw.trim().is_empty() {
        return Ok(());
    }
    RendezvousUrl::parse(raw)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks one row's address and credentials; every problem of the row.
fn check_ice_row(i: usize, row: &IceRow) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let field = |f: &str| format!("iceServers[{i}].{f}");
    let address = match row_address(row) {
        Ok(a) => a,
        Err(message) => {
            errors.push(FieldError::new(field("url"), message));
            return errors;
        }
    };
    if address.scheme() == IceScheme::Stun {
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

/// The row's address field, parsed as an address alone (the scheme
/// written out, no inline credentials: the row has fields for those).
fn row_address(row: &IceRow) -> Result<IceUri, String> {
    IceUri::parse_address(&row.url).map_err(|e| match e {
        jam::types::IceUriError::Empty => {
            "Enter a server address such as stun:stun.example.org:3478, or remove this row."
                .to_owned()
        }
        other => other.to_string(),
    })
}

/// The row as a parsed server: its address with the row's credentials
/// (TURN), or none (STUN).
fn row_server(row: &IceRow) -> Result<IceUri, String> {
    let address = row_address(row)?;
    if address.scheme() == IceScheme::Stun {
        return Ok(address);
    }
    let user = row.username.trim();
    let pass = row.credential.as_str();
    Ok(address.with_credentials(
        (!user.is_empty() || !pass.is_empty()).then(|| user.to_owned()),
        (!pass.is_empty()).then(|| pass.to_owned()),
    ))
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
        let server = row_server(row)
            .map_err(|message| FieldError::new(format!("iceServers[{i}].url"), message))?;
        let mut server = IceServer::from(&server);
        if server.username.is_some() || server.credential.is_some() {
            // A TURN row always hands both over (validated non-empty).
            server.username = Some(row.username.trim().to_owned());
            server.credential = Some(row.credential.clone());
        }
        servers.push(server);
    }
    Ok(servers)
}

/// The rows in MidiEditor's `Collab/lan/iceServers` syntax: one URI a
/// line, TURN credentials inline and percent-encoded
/// (`turn:us%3Aer:p%40ss@host:3478?transport=tcp`). Fully blank rows are
/// skipped; an empty list gives an empty string (which MidiEditor reads
/// as "use my 10 Google STUN servers"; see `midieditor::ice_value`).
/// The rows are expected to be valid; of an invalid one the address is
/// written as typed rather than the line dropped silently.
pub fn export_midieditor_ice(rows: &[IceRow]) -> String {
    let mut lines = Vec::new();
    for row in rows.iter().filter(|r| !row_is_blank(r)) {
        match row_server(row) {
            Ok(server) => lines.push(server.to_string()),
            // Not expected (rows are validated before they are saved); the
            // address is kept, as typed, rather than the line dropped.
            Err(_) => lines.push(row.url.trim().to_owned()),
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
        let parsed = IceUri::parse(line).map_err(|e| {
            FieldError::new(
                "iceServers",
                format!(
                    "Line {} cannot be used: {e} Each line must look like stun:host:port or turn:user:password@host:port.",
                    n + 1
                ),
            )
        })?;
        rows.push(IceRow {
            url: parsed.address(),
            username: parsed.username().unwrap_or_default().to_owned(),
            credential: parsed.credential().unwrap_or_default().to_owned(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn row(url: &str, username: &str, credential: &str) -> IceRow {
        IceRow {
            url: url.to_owned(),
            username: username.to_owned(),
            credential: credential.to_owned(),
        }
    }

    /// The fields that fail for these settings.
    pub(crate) fn failing(s: &Settings) -> Vec<String> {
        match s.validate() {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    pub(crate) fn with_rows(rows: Vec<IceRow>) -> Settings {
        Settings {
            ice_servers: rows,
            ..Settings::default()
        }
    }

    pub(crate) fn ice_error(url: &str, username: &str, credential: &str) -> Vec<String> {
        failing(&with_rows(vec![row(url, username, credential)]))
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
        let parsed = IceUri::parse_list(&text).unwrap();
        assert_eq!(parsed[1].username(), Some("us:er"));
        assert_eq!(parsed[1].credential(), Some("p@ss"));
        assert_eq!(parsed[2].username(), Some("a b%"));
        assert_eq!(parsed[2].credential(), Some("日"));
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
}
