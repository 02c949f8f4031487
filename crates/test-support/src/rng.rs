//! A small seeded generator for the fuzz-style unit tests of several crates,
//! so they are reproducible without a property-testing dependency and the
//! generator is written once.

/// Xorshift64: fast, seeded, and good enough to shake a parser.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// `count` strings of up to 23 bytes drawn from `alphabet` (which may hold
/// partial UTF-8, made lossy), the same sequence on every run: the input of
/// the parsers' "arbitrary input never panics" tests.
pub fn arbitrary_strings(alphabet: &[u8], count: usize) -> impl Iterator<Item = String> + '_ {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    (0..count).map(move |_| {
        let x = rng.next_u64();
        let len = (x % 24) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| alphabet[((x >> (i % 8 * 8)) as usize + i) % alphabet.len()])
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
