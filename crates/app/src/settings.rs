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

use jam::ice::parse_ice_uri;
use jam::rtc::IceServer;

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
}
