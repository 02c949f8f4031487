//! One STUN/TURN server, in MidiEditor's one-per-line syntax:
//! `scheme:[user[:pass]@]host[:port][?transport=udp|tcp|tls]`, with
//! percent-encoded credentials (RFC 7064/7065 URIs plus inline
//! credentials, which is how MidiEditor's `Collab/lan/iceServers` setting
//! carries TURN accounts).
//!
//! [`IceServer::parse`] reads a line of that list (a missing scheme means
//! `stun:`, as in MidiEditor); [`IceServer::parse_address`] reads just the
//! address of a settings row whose credentials have fields of their own.
//! [`fmt::Display`] writes the line back, so `parse(to_string(s)) == s`.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is encoded, so a user
/// name or password survives the `user:pass@host` syntax whatever it holds
/// (`:`, `@`, `%`, `?`, `#`, `/`, spaces, line breaks, non-ASCII).
const CREDENTIAL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `stun:`, `turn:` or `turns:` (TURN over TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceScheme {
    Stun,
    Turn,
    Turns,
}

impl IceScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            IceScheme::Stun => "stun",
            IceScheme::Turn => "turn",
            IceScheme::Turns => "turns",
        }
    }

    /// TURN, over UDP, TCP or TLS.
    pub fn is_turn(self) -> bool {
        self != IceScheme::Stun
    }
}

impl fmt::Display for IceScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `?transport=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceTransport {
    Udp,
    Tcp,
    Tls,
}

impl IceTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            IceTransport::Udp => "udp",
            IceTransport::Tcp => "tcp",
            IceTransport::Tls => "tls",
        }
    }
}

/// Why an entry is not a STUN/TURN server; the message says how to fix it
/// and never repeats the entry (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceUriError {
    #[error("Enter a server address such as stun:stun.example.org:3478.")]
    Empty,
    #[error("A server address cannot contain spaces.")]
    Spaces,
    #[error("The address must start with stun:, turn: or turns: (for example stun:stun.example.org:3478).")]
    Scheme,
    #[error(
        "Write the address without // after the colon (for example {0}:server.example.org:3478)."
    )]
    DoubleSlash(IceScheme),
    #[error("Leave out the part from # on.")]
    Fragment,
    #[error("The only option after ? is transport=udp, transport=tcp or transport=tls.")]
    Transport,
    #[error("A STUN address takes no ?transport= part: STUN always uses UDP.")]
    StunTransport,
    #[error("turns: always runs over TLS on TCP: use transport=tcp or leave the option out.")]
    TurnsOverUdp,
    #[error("A STUN server takes no user name or password; use a turn: address for a relay with an account.")]
    StunCredentials,
    #[error("Put the user name and password in their own fields, not in the address.")]
    CredentialsInAddress,
    #[error("Put the server's name or IP address after {0}:.")]
    NoHost(IceScheme),
    #[error("Put an IPv6 address in square brackets, for example {0}:[2001:db8::1]:3478.")]
    Ipv6Brackets(IceScheme),
    #[error("An IPv6 address needs its closing ].")]
    NoClosingBracket,
    #[error("This is not an IPv6 address.")]
    BadIpv6,
    #[error("A server name can only contain letters, digits, dots and dashes.")]
    HostChars,
    #[error("The port after the last : must be a number from 1 to 65535.")]
    Port,
}

/// A STUN or TURN server.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IceServer {
    scheme: IceScheme,
    /// A name or an IP address; IPv6 without brackets.
    host: String,
    /// As written; [`IceServer::port`] fills in the default.
    port: Option<u16>,
    /// As written; [`IceServer::transport`] fills in the default.
    transport: Option<IceTransport>,
    username: Option<String>,
    credential: Option<String>,
}

impl IceServer {
    /// One line of MidiEditor's list: a missing scheme means `stun:`;
    /// TURN credentials may be inline and percent-encoded.
    pub fn parse(line: &str) -> Result<IceServer, IceUriError> {
        parse(line, false)
    }

    /// Just an address (`stun:`/`turn:`/`turns:` + host + optional port +
    /// TURN's optional transport): the scheme is required and credentials
    /// are refused, because they have fields of their own. Add them with
    /// [`IceServer::with_credentials`].
    pub fn parse_address(address: &str) -> Result<IceServer, IceUriError> {
        parse(address, true)
    }

    /// The same server with these credentials (TURN), or none (`None`).
    /// [`IceServer::parse`] refuses credentials on STUN; this does not check
    /// it, because a settings row reports that next to its own fields.
    pub fn with_credentials(
        mut self,
        username: Option<String>,
        credential: Option<String>,
    ) -> Self {
        self.username = username;
        self.credential = credential;
        self
    }

    pub fn scheme(&self) -> IceScheme {
        self.scheme
    }

    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port: as written, else 5349 for TURN over TLS and 3478 otherwise.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.transport() {
            IceTransport::Tls => 5349,
            _ => 3478,
        })
    }

    /// The transport: `turns:` is TLS; otherwise as written, else UDP.
    pub fn transport(&self) -> IceTransport {
        match (self.scheme, self.transport) {
            (IceScheme::Turns, _) => IceTransport::Tls,
            (_, Some(t)) => t,
            _ => IceTransport::Udp,
        }
    }

    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    pub fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The URL a WebRTC stack takes: `scheme:host:port`, plus
    /// `?transport=` for TURN when one was written; no credentials.
    pub fn url(&self) -> String {
        let mut url = format!("{}:{}:{}", self.scheme, self.bracketed_host(), self.port());
        if let (true, Some(t)) = (self.scheme.is_turn(), self.transport) {
            url.push_str("?transport=");
            url.push_str(t.as_str());
        }
        url
    }

    /// The address as written (default port and transport left out), no
    /// credentials: what a settings row's address field holds.
    pub fn address(&self) -> String {
        let mut s = format!("{}:{}", self.scheme, self.bracketed_host());
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        if let Some(t) = self.transport {
            s.push_str("?transport=");
            s.push_str(t.as_str());
        }
        s
    }

    /// The MidiEditor line with the password replaced by `***`, for
    /// reports and logs.
    pub fn redacted(&self) -> String {
        self.line(true)
    }

    fn line(&self, redact: bool) -> String {
        let user = self.username.as_deref().unwrap_or("");
        let pass = self.credential.as_deref().unwrap_or("");
        if user.is_empty() && pass.is_empty() {
            return self.address();
        }
        let mut creds = utf8_percent_encode(user, CREDENTIAL).to_string();
        if !pass.is_empty() {
            creds.push(':');
            if redact {
                creds.push_str("***");
            } else {
                creds.extend(utf8_percent_encode(pass, CREDENTIAL));
            }
        }
        let address = self.address();
        let rest = &address[self.scheme.as_str().len() + 1..];
        format!("{}:{creds}@{rest}", self.scheme)
    }

    /// A list in MidiEditor's shape, one entry a line; blank lines and `#`
    /// comments are skipped. The first bad line is the error.
    pub fn parse_list(text: &str) -> Result<Vec<IceServer>, IceListError> {
        text.lines()
            .enumerate()
            .map(|(n, l)| (n + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .map(|(line, l)| IceServer::parse(l).map_err(|error| IceListError { line, error }))
            .collect()
    }
}

/// A bad line of a list, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct IceListError {
    pub line: usize,
    pub error: IceUriError,
}

/// MidiEditor's line: `scheme:[user[:pass]@]host[:port][?transport=t]`
/// with percent-encoded credentials.
impl fmt::Display for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line(false))
    }
}

/// Redacted: a `{:?}` in a log line never shows a password.
impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IceServer({})", self.redacted())
    }
}

impl FromStr for IceServer {
    type Err = IceUriError;
    fn from_str(s: &str) -> Result<IceServer, IceUriError> {
        IceServer::parse(s)
    }
}

impl serde::Serialize for IceServer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for IceServer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IceServer, D::Error> {
        let s = String::deserialize(d)?;
        IceServer::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An entry as typed, with any password replaced by `***`: for entries
/// that did not parse (a parsed one has [`IceServer::redacted`]).
pub fn redact_entry(raw: &str) -> String {
    let raw = raw.trim();
    let Some((creds, rest)) = raw.rsplit_once('@') else {
        return raw.to_owned();
    };
    // `creds` is `[scheme:]user[:pass]`.
    let (scheme, userpass) = match creds.split_once(':') {
        Some((s, up)) if scheme_of(s).is_some() => (Some(s), up),
        _ => (None, creds),
    };
    let user = match userpass.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userpass.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}:{user}@{rest}"),
        None => format!("{user}@{rest}"),
    }
}

fn scheme_of(s: &str) -> Option<IceScheme> {
    match s.to_ascii_lowercase().as_str() {
        "stun" => Some(IceScheme::Stun),
        "turn" => Some(IceScheme::Turn),
        "turns" => Some(IceScheme::Turns),
        _ => None,
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn parse(raw: &str, address_only: bool) -> Result<IceServer, IceUriError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(IceUriError::Empty);
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(IceUriError::Spaces);
    }
    let (scheme, rest) = match s.split_once(':') {
        Some((sc, rest)) if scheme_of(sc).is_some() => {
            (scheme_of(sc).unwrap_or(IceScheme::Stun), rest)
        }
        _ if address_only => return Err(IceUriError::Scheme),
        // Something that looks like a scheme rather than a host name
        // (`http:`, `bogus:`): refused rather than read as a host.
        Some((sc, _))
            if !sc.is_empty()
                && sc.chars().all(|c| c.is_ascii_alphabetic())
                && !sc.contains('.') =>
        {
            return Err(IceUriError::Scheme)
        }
        _ => (IceScheme::Stun, s),
    };
    if rest.starts_with("//") {
        return Err(IceUriError::DoubleSlash(scheme));
    }
    if rest.contains('#') {
        return Err(IceUriError::Fragment);
    }
    let (rest, transport) = match rest.split_once('?') {
        Some((r, q)) => {
            let t = match q
                .strip_prefix("transport=")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("udp") => IceTransport::Udp,
                Some("tcp") => IceTransport::Tcp,
                Some("tls") => IceTransport::Tls,
                _ => return Err(IceUriError::Transport),
            };
            if scheme == IceScheme::Stun {
                return Err(IceUriError::StunTransport);
            }
            if scheme == IceScheme::Turns && t == IceTransport::Udp {
                return Err(IceUriError::TurnsOverUdp);
            }
            (r, Some(t))
        }
        None => (rest, None),
    };
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some(_) if address_only => return Err(IceUriError::CredentialsInAddress),
        Some(_) if scheme == IceScheme::Stun => return Err(IceUriError::StunCredentials),
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let (host, port) = host_port(scheme, hostport)?;
    let (username, credential) = match creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(decode(u)), Some(decode(p))),
            None => (Some(decode(c)), None),
        },
        None => (None, None),
    };
    Ok(IceServer {
        scheme,
        host,
        port,
        transport,
        username,
        credential,
    })
}

/// `host[:port]`, `[v6]`, `[v6]:port`.
fn host_port(scheme: IceScheme, s: &str) -> Result<(String, Option<u16>), IceUriError> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or(IceUriError::NoClosingBracket)?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(IceUriError::BadIpv6);
        }
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':').ok_or(IceUriError::Port)?)),
        }
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.contains(':') {
            return Err(IceUriError::Ipv6Brackets(scheme));
        }
        if host.is_empty() {
            return Err(IceUriError::NoHost(scheme));
        }
        if !host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
            || host.starts_with(['.', '-'])
        {
            return Err(IceUriError::HostChars);
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => Some(n),
            _ => return Err(IceUriError::Port),
        },
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> IceServer {
        IceServer::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn stun_defaults_scheme_and_port() {
        assert_eq!(one("stun:127.0.0.1").url(), "stun:127.0.0.1:3478");
        assert_eq!(one("127.0.0.1:19302").url(), "stun:127.0.0.1:19302");
        assert_eq!(one("stun.example.org").url(), "stun:stun.example.org:3478");
        assert_eq!(one("STUN:h").scheme(), IceScheme::Stun);
    }

    #[test]
    fn turn_credentials_are_inline_and_percent_decoded() {
        let s = one("turn:al%3Aice:p%40ss@127.0.0.1:3478?transport=udp");
        assert_eq!(s.url(), "turn:127.0.0.1:3478?transport=udp");
        assert_eq!(s.username(), Some("al:ice"));
        assert_eq!(s.credential(), Some("p@ss"));
        assert_eq!(
            (s.host(), s.port(), s.transport()),
            ("127.0.0.1", 3478, IceTransport::Udp)
        );
    }

    #[test]
    fn turns_and_tls_default_to_5349() {
        assert_eq!(
            one("turns:u:p@relay.example").url(),
            "turns:relay.example:5349"
        );
        assert_eq!(
            one("turns:u:p@relay.example").transport(),
            IceTransport::Tls
        );
        assert_eq!(
            one("turn:u:p@relay.example?transport=tls").url(),
            "turn:relay.example:5349?transport=tls"
        );
        assert_eq!(one("turn:h?transport=tcp").transport(), IceTransport::Tcp);
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        let s = one("stun:[::1]:3478");
        assert_eq!(s.url(), "stun:[::1]:3478");
        assert_eq!(s.host(), "::1");
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        use IceUriError as E;
        for (s, e) in [
            ("", E::Empty),
            ("stun:ho st", E::Spaces),
            ("http:x", E::Scheme),
            ("bogus:x", E::Scheme),
            ("stun://h", E::DoubleSlash(IceScheme::Stun)),
            ("stun:h#x", E::Fragment),
            ("stun:host:0", E::Port),
            ("stun:host:99999", E::Port),
            ("stun:host:", E::Port),
            ("stun:host:+1", E::Port),
            ("turn:u:p@h?transport=sctp", E::Transport),
            ("turn:h?foo=bar", E::Transport),
            ("stun:h?transport=udp", E::StunTransport),
            ("turns:h?transport=udp", E::TurnsOverUdp),
            ("stun:u:p@h", E::StunCredentials),
            ("stun:", E::NoHost(IceScheme::Stun)),
            ("turn::3478", E::NoHost(IceScheme::Turn)),
            ("stun:::1", E::Ipv6Brackets(IceScheme::Stun)),
            ("stun:[::1", E::NoClosingBracket),
            ("stun:[zz]:1", E::BadIpv6),
            ("stun:ho$t", E::HostChars),
            ("stun:%", E::HostChars),
        ] {
            assert_eq!(IceServer::parse(s), Err(e), "{s:?}");
        }
        assert!(!E::StunCredentials.to_string().contains("u:p"));
    }

    #[test]
    fn addresses_need_a_scheme_and_take_no_credentials() {
        assert_eq!(
            IceServer::parse_address("stun.example.org:3478"),
            Err(IceUriError::Scheme)
        );
        assert_eq!(
            IceServer::parse_address("turn:u:p@host"),
            Err(IceUriError::CredentialsInAddress)
        );
        let s = IceServer::parse_address("turn:relay.example.org?transport=tcp")
            .unwrap()
            .with_credentials(Some("u:1".into()), Some("p@ss".into()));
        assert_eq!(s.address(), "turn:relay.example.org?transport=tcp");
        assert_eq!(
            s.to_string(),
            "turn:u%3A1:p%40ss@relay.example.org?transport=tcp"
        );
        assert_eq!(
            s.redacted(),
            "turn:u%3A1:***@relay.example.org?transport=tcp"
        );
        assert!(!format!("{s:?}").contains("p%40ss"));
    }

    #[test]
    fn lines_round_trip() {
        for user in ["", "u", "a b%", "日", ":@%41?#/\\\"=;,\t\n+~"] {
            for pass in [None, Some(""), Some("p"), Some("🎹 :@")] {
                for addr in [
                    "turn:relay.example.org:3478",
                    "turns:h",
                    "turn:[2001:db8::1]?transport=tcp",
                ] {
                    let s = IceServer::parse_address(addr).unwrap().with_credentials(
                        (!user.is_empty() || pass.is_some_and(|p| !p.is_empty()))
                            .then(|| user.to_owned()),
                        pass.filter(|p| !p.is_empty()).map(str::to_owned),
                    );
                    let back = IceServer::parse(&s.to_string()).unwrap();
                    assert_eq!(back.address(), s.address());
                    assert_eq!(back.username().unwrap_or(""), user, "{s}");
                    assert_eq!(back.credential().unwrap_or(""), pass.unwrap_or(""), "{s}");
                }
            }
        }
    }

    #[test]
    fn lists_skip_comments_and_blank_lines() {
        let l = IceServer::parse_list("# mine\nstun:127.0.0.1\n\n  turn:u:p@127.0.0.1 \n").unwrap();
        assert_eq!(l.len(), 2);
        let e = IceServer::parse_list("stun:127.0.0.1\nbogus:x").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: "));
    }

    #[test]
    fn entries_that_do_not_parse_are_redacted_too() {
        assert_eq!(
            redact_entry("turn:al:secret@h:3478?transport=udp"),
            "turn:al:***@h:3478?transport=udp"
        );
        assert_eq!(redact_entry("al:secret@h"), "al:***@h");
        assert_eq!(redact_entry("turn:al@h"), "turn:al@h");
        assert_eq!(redact_entry("stun:h:3478"), "stun:h:3478");
        assert_eq!(redact_entry("turn:a:b:c@d@h"), "turn:a:***@h");
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for s in test_support::rng::arbitrary_strings(
            b"0123456789abcdef:/[]%.@?#=sStTuUrnN \x00\xc3\xa9",
            20_000,
        ) {
            if let Ok(server) = IceServer::parse(&s) {
                let _ = (server.url(), server.redacted());
                assert_eq!(
                    IceServer::parse(&server.to_string()).as_ref(),
                    Ok(&server),
                    "{s:?}"
                );
            }
        }
    }
}
