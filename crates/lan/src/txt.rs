//! The TXT record of a jam advertisement: building it from a host's state and
//! reading it back from a resolved service. Pure functions, so the rules are
//! unit-tested without any network.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::LanError;

/// The `v` key: the rendezvous protocol version being served.
pub const VERSION: u32 = 3;
/// The `proto` key: how joiners connect.
pub const PROTO: &str = "joiner-initiated-multi-peer";

/// A DNS label (the instance name) holds at most 63 bytes.
const MAX_INSTANCE_BYTES: usize = 63;
/// One TXT string is `key=value` in at most 255 bytes; this leaves room for
/// the key and keeps the whole record well under one packet.
const MAX_NAME_BYTES: usize = 200;
const MAX_PATH_BYTES: usize = 128;
const MAX_CODE_BYTES: usize = 16;

/// A jam seen on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JamInfo {
    /// The full service instance name (`Alice (2)._midi-rdv._tcp.local.`):
    /// unique on the link, the key that [`BrowseEvent::Lost`](crate::BrowseEvent::Lost)
    /// reports. Not for display; use [`name`](Self::name).
    pub instance: String,
    /// The host's display name (TXT `name`, or the instance label when absent).
    pub name: String,
    /// Addresses of the host on the browsed interfaces, sorted.
    pub addresses: Vec<IpAddr>,
    /// The rendezvous port.
    pub port: u16,
    /// The rendezvous base path (TXT `path`, `/` when absent).
    pub path: String,
    pub peers: usize,
    pub max_peers: usize,
    /// The open session's code, only when the host advertises one.
    pub code: Option<String>,
    /// TXT `v`: the rendezvous protocol version.
    pub version: u32,
    /// TXT `proto` (empty when absent).
    pub proto: String,
}

/// Why a resolved service is not taken as a jam.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxtError {
    #[error("TXT has no numeric `v`")]
    BadVersion,
    #[error("TXT has no `peers=<connected>/<max>`")]
    BadPeers,
}

/// What a host advertises, checked and trimmed to fit the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advert {
    pub instance: String,
    pub name: String,
    pub path: String,
    pub code: Option<String>,
    pub peers: (usize, usize),
}

/// Truncates to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) fn check_code(code: Option<String>) -> Result<Option<String>, LanError> {
    match code {
        None => Ok(None),
        Some(c)
            if !c.is_empty()
                && c.len() <= MAX_CODE_BYTES
                && c.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Ok(Some(c))
        }
        Some(c) => Err(LanError::InvalidConfig(format!(
            "code {c:?} is not 1-{MAX_CODE_BYTES} ASCII letters or digits"
        ))),
    }
}

impl Advert {
    /// Checks a host's settings. Over-long names are shortened rather than
    /// refused: a long display name must not stop a jam from being found.
    pub fn new(
        name: &str,
        base_path: &str,
        code: Option<String>,
        peers: (usize, usize),
    ) -> Result<Advert, LanError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(LanError::InvalidConfig("empty display name".into()));
        }
        if name.chars().any(char::is_control) {
            return Err(LanError::InvalidConfig(
                "control character in display name".into(),
            ));
        }
        if !base_path.starts_with('/')
            || base_path.len() > MAX_PATH_BYTES
            || !base_path.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(LanError::InvalidConfig(format!(
                "base path {base_path:?} must start with '/' and be at most {MAX_PATH_BYTES} printable ASCII bytes"
            )));
        }
        Ok(Advert {
            instance: truncate(name, MAX_INSTANCE_BYTES).trim_end().to_string(),
            name: truncate(name, MAX_NAME_BYTES).to_string(),
            path: base_path.to_string(),
            code: check_code(code)?,
            peers,
        })
    }

    /// The TXT key/value pairs, in the order PROTOCOL.md lists them.
    pub fn txt(&self) -> Vec<(String, String)> {
        let mut kv = vec![
            ("v".to_string(), VERSION.to_string()),
            ("proto".to_string(), PROTO.to_string()),
            ("path".to_string(), self.path.clone()),
            ("name".to_string(), self.name.clone()),
            (
                "peers".to_string(),
                format!("{}/{}", self.peers.0, self.peers.1),
            ),
        ];
        if let Some(code) = &self.code {
            kv.push(("code".to_string(), code.clone()));
        }
        kv
    }
}

/// The instance label of a full service name, unescaped enough for display
/// (`Alice\.B._midi-rdv._tcp.local.` -> `Alice.B`).
fn instance_label(fullname: &str) -> String {
    let label = fullname
        .strip_suffix(crate::SERVICE_TYPE)
        .map(|s| s.strip_suffix('.').unwrap_or(s))
        .unwrap_or(fullname);
    label.replace("\\.", ".").replace("\\\\", "\\")
}

fn parse_peers(s: &str) -> Option<(usize, usize)> {
    let (a, b) = s.split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

impl JamInfo {
    /// Reads a resolved service. A record without a numeric `v` or a
    /// well-formed `peers` is not one of ours (or is broken) and is skipped by
    /// the browser; everything else is lenient.
    pub fn from_txt(
        instance: &str,
        mut addresses: Vec<IpAddr>,
        port: u16,
        txt: &HashMap<String, String>,
    ) -> Result<JamInfo, TxtError> {
        let version = txt
            .get("v")
            .and_then(|v| v.trim().parse().ok())
            .ok_or(TxtError::BadVersion)?;
        let (peers, max_peers) = txt
            .get("peers")
            .and_then(|p| parse_peers(p))
            .ok_or(TxtError::BadPeers)?;
        addresses.sort();
        addresses.dedup();
        Ok(JamInfo {
            instance: instance.to_string(),
            name: txt
                .get("name")
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| instance_label(instance)),
            addresses,
            port,
            path: txt
                .get("path")
                .filter(|p| !p.is_empty())
                .cloned()
                .unwrap_or_else(|| "/".to_string()),
            peers,
            max_peers,
            code: txt.get("code").filter(|c| !c.is_empty()).cloned(),
            version,
            proto: txt.get("proto").cloned().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(String, String)]) -> HashMap<String, String> {
        kv.iter().cloned().collect()
    }

    #[test]
    fn txt_has_exactly_the_protocol_keys() {
        let a = Advert::new("Alice", "/", None, (1, 8)).unwrap();
        let keys: Vec<_> = a.txt().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["v", "proto", "path", "name", "peers"]);
        let a = Advert::new("Alice", "/", Some("AB12".into()), (1, 8)).unwrap();
        let txt = map(&a.txt());
        assert_eq!(txt["v"], "3");
        assert_eq!(txt["proto"], "joiner-initiated-multi-peer");
        assert_eq!(txt["path"], "/");
        assert_eq!(txt["name"], "Alice");
        assert_eq!(txt["peers"], "1/8");
        assert_eq!(txt["code"], "AB12");
    }

    #[test]
    fn bad_settings_are_refused_and_long_names_shortened() {
        assert!(Advert::new("  ", "/", None, (0, 8)).is_err());
        assert!(Advert::new("A\nB", "/", None, (0, 8)).is_err());
        assert!(Advert::new("A", "rdv", None, (0, 8)).is_err());
        assert!(Advert::new("A", "/a b", None, (0, 8)).is_err());
        assert!(Advert::new("A", "/", Some("AB-1".into()), (0, 8)).is_err());
        assert!(Advert::new("A", "/", Some(String::new()), (0, 8)).is_err());
        let long = "é".repeat(300);
        let a = Advert::new(&long, "/", None, (0, 8)).unwrap();
        assert!(a.instance.len() <= 63 && a.name.len() <= 200);
        assert!(a.name.chars().all(|c| c == 'é'));
    }

    #[test]
    fn round_trip_and_lenient_parse() {
        let a = Advert::new("Bob's jam", "/rdv/", Some("XY9Z".into()), (2, 4)).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let j = JamInfo::from_txt(
            "Bob's jam._midi-rdv._tcp.local.",
            vec![ip, ip],
            8787,
            &map(&a.txt()),
        )
        .unwrap();
        assert_eq!(j.name, "Bob's jam");
        assert_eq!(j.addresses, vec![ip]);
        assert_eq!((j.peers, j.max_peers, j.version), (2, 4, 3));
        assert_eq!(j.path, "/rdv/");
        assert_eq!(j.code.as_deref(), Some("XY9Z"));

        let mut m = HashMap::new();
        m.insert("v".to_string(), "3".to_string());
        m.insert("peers".to_string(), "0/8".to_string());
        let j = JamInfo::from_txt("A\\.B (2)._midi-rdv._tcp.local.", vec![], 1, &m).unwrap();
        assert_eq!(j.name, "A.B (2)");
        assert_eq!(j.path, "/");
        assert_eq!(j.code, None);

        m.insert("peers".to_string(), "lots".to_string());
        assert_eq!(
            JamInfo::from_txt("x", vec![], 1, &m),
            Err(TxtError::BadPeers)
        );
        m.remove("v");
        assert_eq!(
            JamInfo::from_txt("x", vec![], 1, &m),
            Err(TxtError::BadVersion)
        );
    }
}
