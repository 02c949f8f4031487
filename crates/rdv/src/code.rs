//! Pairing codes, joinerIds, host tokens, and the randomness behind them.
//! The [`Code`] type itself lives in the `types` crate (the jam engine
//! parses codes too); this is where codes are drawn.

pub use types::{is_valid_joiner_id, Code, ALPHABET};

/// Draws a uniformly random code. Rejection sampling keeps every symbol
/// equally likely: 248 is the largest multiple of 31 that fits a byte.
pub fn random_code(entropy: &mut dyn Entropy) -> Code {
    let mut out = [0u8; 4];
    let mut filled = 0;
    let mut buf = [0u8; 16];
    while filled < 4 {
        entropy.fill(&mut buf);
        for &b in &buf {
            if b < 248 && filled < 4 {
                out[filled] = b % 31;
                filled += 1;
            }
        }
    }
    Code::from_symbols(out)
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
            let c = random_code(&mut e);
            assert!(c.as_str().bytes().all(|b| ALPHABET.contains(&b)));
            // So the same code works for MidiEditor's LAN Live join too.
            assert!(c.in_both_alphabets());
            assert!(c.as_str().bytes().all(|b| types::LAN_ALPHABET.contains(&b)));
        }
    }

    #[test]
    fn bytes_at_or_above_248_are_rejected_not_folded() {
        // 248..=255 would bias the first 8 symbols if folded with `% 31`.
        let mut e = Scripted(vec![250, 255, 248, 0, 30, 249, 31, 1], 0);
        assert_eq!(random_code(&mut e).as_str(), "A9AB");
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
}
