//! A rendezvous base URL: `http(s)://host[:port][/base/path]`.
//!
//! MidiEditor appends the protocol's paths (`/session`, `/code/...`) to the
//! base URL as they are, so anything after the path (a `?query`, a
//! `#fragment`) would land in the middle of every request, and a user name
//! in it would be sent to whoever listens. Those are refused here, once;
//! a trailing `/` is dropped, as MidiEditor drops it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Code;

/// A checked rendezvous base URL, without a trailing `/`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RendezvousUrl {
    /// `scheme://host[:port][/path]`, as `url` normalises it (lower-case
    /// scheme and host, default port dropped), no trailing `/`.
    base: String,
    host: String,
    port: u16,
}

/// Why a text is not a rendezvous URL; the message says how to fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("Enter the rendezvous address, for example http://192.168.1.20:8787.")]
    Empty,
    #[error("A web address cannot contain spaces or line breaks.")]
    Spaces,
    #[error(
        "The address must start with http:// or https:// (for example https://rdv.example.org)."
    )]
    Scheme,
    #[error("Use / rather than \\ in a web address.")]
    Backslash,
    #[error("Give only the server and, if needed, a path: leave out the ?query part.")]
    Query,
    #[error("Leave out the part from # on: it is not sent to the server.")]
    Fragment,
    #[error("The port after : must be a number from 1 to 65535.")]
    Port,
    #[error("Put the server's name or IP address after http:// or https://.")]
    NoHost,
    #[error("Leave out the user name and password (the part before @).")]
    UserInfo,
    #[error("This is not a valid web address; it should look like https://rdv.example.org or http://192.168.1.20:8787.")]
    Invalid,
}

impl RendezvousUrl {
    /// Parses a base URL; surrounding spaces and a trailing `/` are ignored.
    pub fn parse(raw: &str) -> Result<RendezvousUrl, UrlError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(UrlError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Spaces);
        }
        let lower = s.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(UrlError::Scheme);
        }
        if s.contains('\\') {
            return Err(UrlError::Backslash);
        }
        if s.contains('?') {
            return Err(UrlError::Query);
        }
        if s.contains('#') {
            return Err(UrlError::Fragment);
        }
        let url = url::Url::parse(s).map_err(|e| match e {
            url::ParseError::InvalidPort => UrlError::Port,
            url::ParseError::EmptyHost => UrlError::NoHost,
            _ => UrlError::Invalid,
        })?;
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => return Err(UrlError::NoHost),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::UserInfo);
        }
        if url.port() == Some(0) {
            return Err(UrlError::Port);
        }
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(RendezvousUrl {
            base: url.as_str().trim_end_matches('/').to_owned(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// The host name or IP address (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://`.
    pub fn is_https(&self) -> bool {
        self.base.starts_with("https:")
    }

    fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn with_wait(mut url: String, wait: Option<Duration>) -> String {
        if let Some(w) = wait {
            url.push_str(&format!("?wait={}", w.as_millis()));
        }
        url
    }

    /// `GET /health`.
    pub fn health(&self) -> String {
        self.join("/health")
    }

    /// `POST /session`.
    pub fn session(&self) -> String {
        self.join("/session")
    }

    /// `GET /code/<c>`: verify a code.
    pub fn code(&self, code: &Code) -> String {
        self.join(&format!("/code/{code}"))
    }

    /// `POST /code/<c>/joiner-offer`.
    pub fn joiner_offer(&self, code: &Code) -> String {
        self.join(&format!("/code/{code}/joiner-offer"))
    }

    /// `GET /code/<c>/joiner-offers`, long-polled with `?wait=` when given.
    pub fn joiner_offers(&self, code: &Code, wait: Option<Duration>) -> String {
        Self::with_wait(self.join(&format!("/code/{code}/joiner-offers")), wait)
    }

    /// `POST /code/<c>/host-answer`.
    pub fn host_answer(&self, code: &Code) -> String {
        self.join(&format!("/code/{code}/host-answer"))
    }

    /// `GET /code/<c>/host-answer/<joinerId>`, long-polled with `?wait=`
    /// when given. The joinerId must follow the protocol's rule
    /// ([`crate::is_valid_joiner_id`]), which keeps it URL-safe.
    pub fn answer_for(&self, code: &Code, joiner_id: &str, wait: Option<Duration>) -> String {
        Self::with_wait(
            self.join(&format!("/code/{code}/host-answer/{joiner_id}")),
            wait,
        )
    }
}

/// Compares the normalised form, so `url == "http://h:1"` reads naturally.
impl PartialEq<str> for RendezvousUrl {
    fn eq(&self, other: &str) -> bool {
        self.base == other
    }
}

impl PartialEq<&str> for RendezvousUrl {
    fn eq(&self, other: &&str) -> bool {
        self.base == *other
    }
}

impl PartialEq<String> for RendezvousUrl {
    fn eq(&self, other: &String) -> bool {
        self.base == *other
    }
}

impl FromStr for RendezvousUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<RendezvousUrl, UrlError> {
        RendezvousUrl::parse(s)
    }
}

impl fmt::Display for RendezvousUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Debug for RendezvousUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RendezvousUrl({})", self.base)
    }
}

impl serde::Serialize for RendezvousUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.base)
    }
}

impl<'de> serde::Deserialize<'de> for RendezvousUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RendezvousUrl, D::Error> {
        let s = String::deserialize(d)?;
        RendezvousUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> RendezvousUrl {
        RendezvousUrl::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn good_urls_are_normalised() {
        assert_eq!(
            ok(" http://127.0.0.1:8787/ ").as_str(),
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            ok("https://h.example/rdv/").as_str(),
            "https://h.example/rdv"
        );
        assert_eq!(ok("HTTP://Host:9/rdv/").as_str(), "http://host:9/rdv");
        assert_eq!(ok("HTTP://[::1]:8787").as_str(), "http://[::1]:8787");
        assert_eq!(ok("HTTP://[::1]:8787").host(), "::1");
        assert_eq!(ok("https://rdv.example.org").port(), 443);
        assert_eq!(ok("http://x").port(), 80);
        assert!(ok("https://x").is_https());
    }

    #[test]
    fn endpoints_join_onto_the_base_path() {
        let u = ok("http://h:1/rdv/");
        let c = Code::parse_route("M7P3").unwrap();
        assert_eq!(u.health(), "http://h:1/rdv/health");
        assert_eq!(u.session(), "http://h:1/rdv/session");
        assert_eq!(u.code(&c), "http://h:1/rdv/code/M7P3");
        assert_eq!(u.joiner_offer(&c), "http://h:1/rdv/code/M7P3/joiner-offer");
        assert_eq!(
            u.joiner_offers(&c, None),
            "http://h:1/rdv/code/M7P3/joiner-offers"
        );
        assert_eq!(
            u.joiner_offers(&c, Some(Duration::from_secs(3))),
            "http://h:1/rdv/code/M7P3/joiner-offers?wait=3000"
        );
        assert_eq!(u.host_answer(&c), "http://h:1/rdv/code/M7P3/host-answer");
        assert_eq!(
            u.answer_for(&c, "abcdefgh", None),
            "http://h:1/rdv/code/M7P3/host-answer/abcdefgh"
        );
    }

    #[test]
    fn bad_urls_say_what_to_fix() {
        for (bad, why) in [
            ("", UrlError::Empty),
            ("  ", UrlError::Empty),
            ("rdv.example.org", UrlError::Scheme),
            ("127.0.0.1:8787", UrlError::Scheme),
            ("ftp://x", UrlError::Scheme),
            ("stun:x", UrlError::Scheme),
            ("http:x", UrlError::Scheme),
            ("http://", UrlError::NoHost),
            ("http://x y", UrlError::Spaces),
            ("http://x:99999", UrlError::Port),
            ("http://x:0", UrlError::Port),
            ("http://x/?a=b", UrlError::Query),
            ("http://x/#frag", UrlError::Fragment),
            ("http://u:p@x", UrlError::UserInfo),
            ("http:\\\\x", UrlError::Scheme),
            ("http://x\\y", UrlError::Backslash),
        ] {
            assert_eq!(RendezvousUrl::parse(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for s in test_support::rng::arbitrary_strings(
            b"0123456789abcdef:/[]%.@?#hHtTpPs \\\x00\xc3\xa9",
            20_000,
        ) {
            let s = format!("http://{s}");
            let _ = RendezvousUrl::parse(&s);
        }
    }

    #[test]
    fn serde_round_trips_through_a_string() {
        let u = ok("http://h:1/x/");
        let j = serde_json::to_string(&u).unwrap();
        assert_eq!(j, "\"http://h:1/x\"");
        assert_eq!(serde_json::from_str::<RendezvousUrl>(&j).unwrap(), u);
        assert!(serde_json::from_str::<RendezvousUrl>("\"ftp://x\"").is_err());
    }
}
