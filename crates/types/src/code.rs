//! The pairing code and the joinerId rule (PROTOCOL.md, "Codes and ids").

use std::fmt;
use std::str::FromStr;

/// The 31 code symbols: A-Z and 2-9 without I, L, O (and 0, 1), so a code
/// read aloud or off a screen is never ambiguous.
pub const ALPHABET: &[u8; 31] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// MidiEditor's LAN Live alphabet: 32 symbols, [`ALPHABET`] plus `L`
/// (read from MidiEditor 2.0.1, `LanDiscovery::generatePairingCode`). Every
/// code we draw is in both, so one code serves a WAN join through the
/// rendezvous and a LAN Live join by datagram; a code typed for a
/// MidiEditor LAN host may contain an `L`, which [`Code::parse`] takes.
pub const LAN_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A 4-character pairing code.
///
/// Built three ways: by a rendezvous drawing one from [`ALPHABET`]
/// ([`Code::from_symbols`]), from a URL route ([`Code::parse_route`]), or
/// from what a person typed ([`Code::parse`], which forgives case and
/// spaces).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code([u8; 4]);

/// Why a typed code is not a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("Enter the jam's 4-character code (ask the host for it).")]
    Empty,
    #[error("A code has exactly 4 letters or digits, like M7P3.")]
    Shape,
}

impl Code {
    /// The code made of `ALPHABET[i]` for each index (taken modulo 31), for
    /// a rendezvous that draws the indices from a CSPRNG.
    pub fn from_symbols(indices: [u8; 4]) -> Code {
        Code(indices.map(|i| ALPHABET[usize::from(i % 31)]))
    }

    /// Accepts what the v3 routes accept: exactly four of `[A-Z0-9]`. That is
    /// wider than the alphabet on purpose (an `O` or a `1` is a valid route
    /// that simply finds no session) and case-sensitive on purpose (a
    /// lowercase code is not a code route at all and gets the generic 404).
    pub fn parse_route(s: &str) -> Option<Code> {
        let b = s.as_bytes();
        if b.len() == 4
            && b.iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            Some(Code([b[0], b[1], b[2], b[3]]))
        } else {
            None
        }
    }

    /// A code as a person typed it: surrounding spaces dropped and
    /// upper-cased (MidiEditor upper-cases what its user typed, and so do
    /// we), then the route rule.
    pub fn parse(typed: &str) -> Result<Code, CodeError> {
        let s = typed.trim().to_ascii_uppercase();
        if s.is_empty() {
            return Err(CodeError::Empty);
        }
        Code::parse_route(&s).ok_or(CodeError::Shape)
    }

    /// Whether MidiEditor could have drawn this code for a WAN session
    /// ([`ALPHABET`]) and for a LAN one ([`LAN_ALPHABET`]).
    pub fn in_both_alphabets(&self) -> bool {
        self.0.iter().all(|b| ALPHABET.contains(b))
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII bytes, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }
}

impl FromStr for Code {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Code, CodeError> {
        Code::parse(s)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Codes are deliberately redacted in `Debug` so a stray `{:?}` in a log line
/// cannot leak a live pairing code.
impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(****)")
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        let s = String::deserialize(d)?;
        Code::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `^[A-Za-z0-9-]{8,64}$`, the joinerId rule shared by the body check and the
/// answer-poll route. A hyphenated UUID (36 characters) satisfies it.
pub fn is_valid_joiner_id(s: &str) -> bool {
    (8..=64).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wan_alphabet_is_the_lan_one_without_l() {
        let mut wan: Vec<u8> = ALPHABET.to_vec();
        wan.push(b'L');
        wan.sort_unstable();
        let mut lan = LAN_ALPHABET.to_vec();
        lan.sort_unstable();
        assert_eq!(wan, lan);
        for i in 0..=255u8 {
            let c = Code::from_symbols([i, i.wrapping_add(7), i / 3, 255 - i]);
            assert!(c.in_both_alphabets(), "{c}");
            assert!(c.as_str().bytes().all(|b| LAN_ALPHABET.contains(&b)));
        }
        // A MidiEditor LAN code with an L parses, and is LAN-only.
        let lan_only = Code::parse("ql9z").unwrap();
        assert_eq!(lan_only.as_str(), "QL9Z");
        assert!(!lan_only.in_both_alphabets());
    }

    #[test]
    fn symbols_come_from_the_alphabet() {
        assert_eq!(Code::from_symbols([0, 30, 31, 1]).as_str(), "A9AB");
    }

    #[test]
    fn route_codes_are_four_uppercase_or_digits() {
        assert!(Code::parse_route("M7P3").is_some());
        assert!(Code::parse_route("O0I1").is_some());
        assert!(Code::parse_route("m7p3").is_none());
        assert!(Code::parse_route("M7P").is_none());
        assert!(Code::parse_route("M7P33").is_none());
        assert!(Code::parse_route("M7-3").is_none());
    }

    #[test]
    fn typed_codes_forgive_case_and_spaces() {
        assert_eq!(Code::parse(" m7p3 ").unwrap().as_str(), "M7P3");
        assert_eq!(Code::parse("  "), Err(CodeError::Empty));
        assert_eq!(Code::parse("M7P"), Err(CodeError::Shape));
        assert_eq!(Code::parse("é7P3"), Err(CodeError::Shape));
        assert!(CodeError::Shape.to_string().contains("4 letters"));
    }

    #[test]
    fn joiner_id_rule() {
        assert!(is_valid_joiner_id("abcdEFGH"));
        assert!(is_valid_joiner_id(&"a-".repeat(32)));
        assert!(is_valid_joiner_id("0b9a7c0e-5a1f-4c3e-9d2b-7f00aa11bb22"));
        assert!(!is_valid_joiner_id("abcdEFG"));
        assert!(!is_valid_joiner_id(&"a".repeat(65)));
        assert!(!is_valid_joiner_id("abcd_EFGH"));
        assert!(!is_valid_joiner_id("abcdéFGH"));
    }

    #[test]
    fn debug_never_shows_the_code() {
        let c = Code::parse_route("M7P3").unwrap();
        assert!(!format!("{c:?}").contains("M7P3"));
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"M7P3\"");
    }
}
