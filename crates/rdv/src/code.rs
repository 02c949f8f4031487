//! Pairing codes, joinerIds, host tokens, and the randomness behind them.

use std::fmt;

/// The 31 code symbols: A-Z and 2-9 without I, L, O (and 0, 1), so a code
/// read aloud or off a screen is never ambiguous.
pub const ALPHABET: &[u8; 31] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A 4-character pairing code. Only ever built from [`ALPHABET`] by
/// [`Code::random`], or parsed from a URL with [`Code::parse_route`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code([u8; 4]);

impl Code {
    /// Draws a uniformly random code. Rejection sampling keeps every symbol
    /// equally likely: 248 is the largest multiple of 31 that fits a byte.
    pub fn random(entropy: &mut dyn Entropy) -> Code {
        let mut out = [0u8; 4];
        let mut filled = 0;
        let mut buf = [0u8; 16];
        while filled < 4 {
            entropy.fill(&mut buf);
            for &b in &buf {
                if b < 248 && filled < 4 {
                    out[filled] = ALPHABET[usize::from(b % 31)];
                    filled += 1;
                }
            }
        }
        Code(out)
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

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII bytes, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("????")
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

/// `^[A-Za-z0-9-]{8,64}$`, the joinerId rule shared by the body check and the
/// answer-poll route.
pub fn is_valid_joiner_id(s: &str) -> bool {
    (8..=64).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// A source of unpredictable bytes. Production uses the operating system's
/// CSPRNG ([`OsEntropy`]); tests can substitute a scripted sequence to force
/// collisions.
pub trait Entropy: Send {
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's CSPRNG (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        // getrandom only fails when the OS has no entropy source at all, which
        // no supported platform lacks; refusing to run is safer than handing
        // out predictable codes, so this is the one deliberate panic.
        getrandom::fill(buf).expect("the operating system's random source failed");
    }
}

/// A host token: 32 random bytes (256 bits) as 64 lowercase hex digits.
pub fn new_host_token(entropy: &mut dyn Entropy) -> String {
    let mut raw = [0u8; 32];
    entropy.fill(&mut raw);
    let mut s = String::with_capacity(64);
    for b in raw {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// Compares two secrets in time that depends only on their lengths, so a
/// token cannot be recovered byte by byte from response timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scripted(Vec<u8>, usize);
    impl Entropy for Scripted {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.0[self.1 % self.0.len()];
                self.1 += 1;
            }
        }
    }

    #[test]
    fn random_codes_use_only_the_alphabet() {
        let mut e = OsEntropy;
        for _ in 0..2000 {
            let c = Code::random(&mut e);
            assert!(c.as_str().bytes().all(|b| ALPHABET.contains(&b)));
        }
    }

    #[test]
    fn bytes_at_or_above_248_are_rejected_not_folded() {
        // 248..=255 would bias the first 8 symbols if folded with `% 31`.
        let mut e = Scripted(vec![250, 255, 248, 0, 30, 249, 31, 1], 0);
        assert_eq!(Code::random(&mut e).as_str(), "A9AB");
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
    fn joiner_id_rule() {
        assert!(is_valid_joiner_id("abcdEFGH"));
        assert!(is_valid_joiner_id(&"a-".repeat(32)));
        assert!(!is_valid_joiner_id("abcdEFG"));
        assert!(!is_valid_joiner_id(&"a".repeat(65)));
        assert!(!is_valid_joiner_id("abcd_EFGH"));
        assert!(!is_valid_joiner_id("abcdéFGH"));
    }

    #[test]
    fn host_tokens_are_256_bit_hex_and_differ() {
        let mut e = OsEntropy;
        let a = new_host_token(&mut e);
        let b = new_host_token(&mut e);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn debug_never_shows_the_code() {
        let c = Code::parse_route("M7P3").unwrap();
        assert!(!format!("{c:?}").contains("M7P3"));
    }
}
