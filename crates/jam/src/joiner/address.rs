//! Turning what a musician types, or what the LAN advertises, into a
//! rendezvous base URL.
//!
//! MidiEditor wants a full `http://host:port` URL. People joining a jam on
//! the next desk type `192.168.1.20`, or copy `192.168.1.20:8787` from the
//! host's screen, so [`parse_address`] accepts those and fills in the
//! scheme and the bundled rendezvous's usual port. A full URL is taken as
//! typed (its port included), because whoever typed a scheme meant a server.
//!
//! Either way the result is a [`RendezvousUrl`], checked by its one
//! parser. Pure functions: tested without any network.

use std::net::IpAddr;

use types::RendezvousUrl;

/// The port the bundled rendezvous listens on unless told otherwise (the
/// app's and `midi-rdv host`'s default), assumed when an address has none.
pub const DEFAULT_PORT: u16 = 8787;

/// Why a typed address cannot be used. The message is meant to be shown as
/// is, next to the input field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AddressError {
    /// What was typed (trimmed).
    pub input: String,
    /// What is wrong, and what a good one looks like.
    pub message: String,
}

fn bad(input: &str, why: &str) -> AddressError {
    AddressError {
        input: input.to_owned(),
        message: format!(
            "{why} Type the host's address as shown on its screen, e.g. 192.168.1.20, \
             192.168.1.20:8787 or http://192.168.1.20:8787."
        ),
    }
}

/// A typed address as a rendezvous base URL:
///
/// - `10.0.0.5` → `http://10.0.0.5:8787`
/// - `10.0.0.5:9000` → `http://10.0.0.5:9000`
/// - `studio.local:9000/rdv/` → `http://studio.local:9000/rdv`
/// - `fe80::1` or `[fe80::1]:9000` → `http://[fe80::1]:8787` / `...:9000`
/// - `http://host:port/path`, `https://...` → as typed, trailing `/` removed
pub fn parse_address(input: &str) -> Result<RendezvousUrl, AddressError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(bad(s, "The address is empty."));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(s, "An address has no spaces."));
    }
    let lower = s.to_ascii_lowercase();
    let candidate = if lower.starts_with("http://") || lower.starts_with("https://") {
        s.to_owned()
    } else if let Some((scheme, _)) = s.split_once("://") {
        return Err(bad(
            s,
            &format!(
                "\"{scheme}://\" is not a web address; a rendezvous speaks http:// or https://."
            ),
        ));
    } else {
        with_default_port(s).map_err(|why| bad(s, &why))?
    };
    RendezvousUrl::parse(&candidate).map_err(|e| bad(s, &e.to_string()))
}

/// `host[:port][/path]` with `http://` in front and the default port filled
/// in; bare IPv6 addresses get their brackets.
fn with_default_port(s: &str) -> Result<String, String> {
    // A bare IPv6 address (several colons, no brackets) has no port.
    if !s.starts_with('[') && s.matches(':').count() > 1 {
        let (addr, path) = s.split_once('/').map_or((s, ""), |(a, p)| (a, p));
        return match addr.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => Ok(format!("http://[{v6}]:{DEFAULT_PORT}/{path}")),
            Err(_) => Err("It looks like an IPv6 address, but is not one.".to_owned()),
        };
    }
    let (authority, path) = s.split_once('/').map_or((s, ""), |(a, p)| (a, p));
    if authority.is_empty() || authority.starts_with(':') {
        return Err("It has no host name or IP address.".to_owned());
    }
    let has_port = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']')
            .map(|(_, after)| after.starts_with(':'))
            .ok_or_else(|| "An opening [ has no closing ].".to_owned())?
    } else {
        authority.contains(':')
    };
    if has_port {
        let port = authority.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
        match port.parse::<u32>() {
            Ok(p) if (1..=65_535).contains(&p) => {}
            _ => return Err(format!("\"{port}\" is not a port number (1 to 65535).")),
        }
        Ok(format!("http://{authority}/{path}"))
    } else {
        Ok(format!("http://{authority}:{DEFAULT_PORT}/{path}"))
    }
}

/// The base URL of a rendezvous advertised on the LAN: `http://ip:port` plus
/// the advertised base path (nothing for `/`). The first IPv4 address wins
/// (what people read and type); IPv6 only when there is no IPv4, and never a
/// link-local one, which would need a zone id. `None` when no address is
/// usable.
pub fn url_for(addresses: &[IpAddr], port: u16, path: &str) -> Option<RendezvousUrl> {
    if port == 0 {
        return None;
    }
    let ip = addresses
        .iter()
        .find(|ip| ip.is_ipv4() && !ip.is_unspecified())
        .or_else(|| {
            addresses.iter().find(|ip| match ip {
                IpAddr::V6(v6) => !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
                IpAddr::V4(_) => false,
            })
        })?;
    let path = path.trim().trim_end_matches('/');
    let path = if path.is_empty() || path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let url = match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}{path}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}{path}"),
    };
    // An advertised path with a `?`, spaces or the like is no base path.
    RendezvousUrl::parse(&url).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_http_and_the_default_port() {
        let ok = |s: &str| {
            parse_address(s)
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .to_string()
        };
        assert_eq!(ok("10.0.0.5"), "http://10.0.0.5:8787");
        assert_eq!(ok("  10.0.0.5 "), "http://10.0.0.5:8787");
        assert_eq!(ok("10.0.0.5:9000"), "http://10.0.0.5:9000");
        assert_eq!(ok("10.0.0.5:8787/"), "http://10.0.0.5:8787");
        assert_eq!(ok("studio.local"), "http://studio.local:8787");
        assert_eq!(ok("Studio.LOCAL:9000/rdv/"), "http://studio.local:9000/rdv");
        assert_eq!(ok("fe80::1"), "http://[fe80::1]:8787");
        assert_eq!(ok("[fe80::1]:9000"), "http://[fe80::1]:9000");
        assert_eq!(ok("[::1]"), "http://[::1]:8787");
    }

    #[test]
    fn full_urls_are_kept_as_typed() {
        let ok = |s: &str| {
            parse_address(s)
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .to_string()
        };
        assert_eq!(ok("http://host:8787"), "http://host:8787");
        assert_eq!(ok("http://host:8787/"), "http://host:8787");
        assert_eq!(ok("HTTP://Host:9/rdv/"), "http://host:9/rdv");
        assert_eq!(ok("https://rdv.example.org"), "https://rdv.example.org");
        assert_eq!(ok("http://[::1]:8787"), "http://[::1]:8787");
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (s, needle) in [
            ("", "empty"),
            ("   ", "empty"),
            ("10.0.0.5 8787", "no spaces"),
            ("ftp://host", "ftp://"),
            ("10.0.0.5:0", "not a port"),
            ("10.0.0.5:99999", "not a port"),
            ("10.0.0.5:abc", "not a port"),
            ("10.0.0.5:", "not a port"),
            (":8787", "no host"),
            ("/rdv", "no host"),
            ("[fe80::1", "closing ]"),
            ("fe80::zz", "IPv6"),
            ("http://", "name or IP address"),
            ("http://host:8787/?x=1", "?query"),
            ("http://user:pw@host", "user name"),
            ("http://host:0", "1 to 65535"),
        ] {
            let e = parse_address(s).expect_err(s);
            assert!(e.message.contains(needle), "{s:?}: {}", e.message);
            assert!(e.message.contains("e.g. 192.168.1.20"), "{}", e.message);
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for s in test_support::rng::arbitrary_strings(
            b"0123456789abcdef:/[]%.@?#hHtTpP sx\x00\xc3\xa9",
            20_000,
        ) {
            let _ = parse_address(&s);
        }
    }

    #[test]
    fn advertised_jams_prefer_ipv4_and_keep_the_base_path() {
        let v4: IpAddr = "10.77.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let ll: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            url_for(&[v6, v4], 8787, "/")
                .map(|u| u.to_string())
                .as_deref(),
            Some("http://10.77.0.1:8787")
        );
        assert_eq!(
            url_for(&[v4], 9000, "/rdv/")
                .map(|u| u.to_string())
                .as_deref(),
            Some("http://10.77.0.1:9000/rdv")
        );
        assert_eq!(
            url_for(&[v4], 9000, "rdv")
                .map(|u| u.to_string())
                .as_deref(),
            Some("http://10.77.0.1:9000/rdv")
        );
        assert_eq!(
            url_for(&[ll, v6], 1, "/").map(|u| u.to_string()).as_deref(),
            Some("http://[2001:db8::1]:1")
        );
        assert_eq!(url_for(&[ll], 1, "/"), None);
        assert_eq!(url_for(&[], 1, "/"), None);
        assert_eq!(url_for(&[v4], 0, "/"), None);
    }
}
