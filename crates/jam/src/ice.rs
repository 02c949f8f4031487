//! STUN/TURN server entries as users write them: MidiEditor's grammar,
//! `scheme:[user[:pass]@]host[:port][?transport=udp|tcp|tls]`, with inline,
//! percent-encoded TURN credentials.

use crate::rtc::IceServer;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceUriError {
    #[error("{0:?}: the scheme must be stun, turn or turns")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{0:?}: the port must be a number from 1 to 65535")]
    Port(String),
    #[error("{0:?}: transport must be udp, tcp or tls")]
    Transport(String),
    #[error("{0:?}: a STUN server takes no user name or password")]
    StunCredentials(String),
}

/// Parses one entry. A missing scheme means `stun`; a missing port 3478
/// (5349 for `turns` or `transport=tls`).
pub fn parse_ice_uri(raw: &str) -> Result<IceServer, IceUriError> {
    let s = raw.trim();
    let err_str = || s.to_owned();
    let (scheme, rest) = match s.split_once(':') {
        Some((sc, rest))
            if ["stun", "turn", "turns"].contains(&sc.to_ascii_lowercase().as_str()) =>
        {
            (sc.to_ascii_lowercase(), rest)
        }
        Some((sc, _))
            if sc.chars().all(|c| c.is_ascii_alphabetic())
                && !sc.is_empty()
                && !looks_like_host(sc) =>
        {
            return Err(IceUriError::Scheme(err_str()))
        }
        _ => ("stun".to_owned(), s),
    };
    let (rest, transport) = match rest.split_once('?') {
        Some((r, q)) => {
            let t = q
                .strip_prefix("transport=")
                .map(str::to_ascii_lowercase)
                .filter(|t| ["udp", "tcp", "tls"].contains(&t.as_str()))
                .ok_or_else(|| IceUriError::Transport(err_str()))?;
            (r, Some(t))
        }
        None => (rest, None),
    };
    let rest = rest.trim_start_matches("//");
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    if creds.is_some() && scheme == "stun" {
        return Err(IceUriError::StunCredentials(err_str()));
    }
    let (host, port) = split_host_port(hostport).ok_or_else(|| IceUriError::Port(err_str()))?;
    if host.is_empty() {
        return Err(IceUriError::NoHost(err_str()));
    }
    let default_port = if scheme == "turns" || transport.as_deref() == Some("tls") {
        5349
    } else {
        3478
    };
    let port = port.unwrap_or(default_port);
    let mut url = format!("{scheme}:{host}:{port}");
    if let Some(t) = &transport {
        if scheme != "stun" {
            url.push_str("?transport=");
            url.push_str(t);
        }
    }
    let (username, credential) = match creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
            None => (Some(percent_decode(c)), None),
        },
        None => (None, None),
    };
    Ok(IceServer {
        urls: vec![url],
        username,
        credential,
    })
}

/// Parses a list, one entry per line; blank lines and `#` comments are
/// skipped (the shape of MidiEditor's `iceServers` setting).
pub fn parse_ice_list(text: &str) -> Result<Vec<IceServer>, IceUriError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_ice_uri)
        .collect()
}

fn looks_like_host(s: &str) -> bool {
    s.contains('.')
}

/// `host[:port]`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((format!("[{h}]"), Some(port(p)?))),
            None if after.is_empty() => Some((format!("[{h}]"), None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), Some(port(p)?))),
        None => Some((s.to_owned(), None)),
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> IceServer {
        parse_ice_uri(s).unwrap()
    }

    #[test]
    fn stun_defaults_scheme_and_port() {
        assert_eq!(one("stun:127.0.0.1").urls, vec!["stun:127.0.0.1:3478"]);
        assert_eq!(one("127.0.0.1:19302").urls, vec!["stun:127.0.0.1:19302"]);
        assert_eq!(
            one("stun.example.org").urls,
            vec!["stun:stun.example.org:3478"]
        );
    }

    #[test]
    fn turn_credentials_are_inline_and_percent_decoded() {
        let s = one("turn:al%3Aice:p%40ss@127.0.0.1:3478?transport=udp");
        assert_eq!(s.urls, vec!["turn:127.0.0.1:3478?transport=udp"]);
        assert_eq!(s.username.as_deref(), Some("al:ice"));
        assert_eq!(s.credential.as_deref(), Some("p@ss"));
    }

    #[test]
    fn turns_and_tls_default_to_5349() {
        assert_eq!(
            one("turns:u:p@relay.example").urls,
            vec!["turns:relay.example:5349"]
        );
        assert_eq!(
            one("turn:u:p@relay.example?transport=tls").urls,
            vec!["turn:relay.example:5349?transport=tls"]
        );
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        assert_eq!(one("stun:[::1]:3478").urls, vec!["stun:[::1]:3478"]);
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        assert!(matches!(
            parse_ice_uri("http:x"),
            Err(IceUriError::Scheme(_))
        ));
        assert!(matches!(
            parse_ice_uri("stun:host:0"),
            Err(IceUriError::Port(_))
        ));
        assert!(matches!(
            parse_ice_uri("stun:host:99999"),
            Err(IceUriError::Port(_))
        ));
        assert!(matches!(
            parse_ice_uri("turn:u:p@h?transport=sctp"),
            Err(IceUriError::Transport(_))
        ));
        assert!(matches!(
            parse_ice_uri("stun:u:p@h"),
            Err(IceUriError::StunCredentials(_))
        ));
        assert!(matches!(
            parse_ice_uri("stun:"),
            Err(IceUriError::NoHost(_))
        ));
        assert!(parse_ice_uri("stun:%").is_ok());
    }

    #[test]
    fn lists_skip_comments_and_blank_lines() {
        let l = parse_ice_list("# mine\nstun:127.0.0.1\n\n  turn:u:p@127.0.0.1 \n").unwrap();
        assert_eq!(l.len(), 2);
        assert!(parse_ice_list("stun:127.0.0.1\nbogus:x").is_err());
    }
}
