//! Native detectors: tokenizers that decide whether an input, placed in the
//! contexts an application would use, forms injected structure.

pub mod cmdi;
pub mod path;
pub mod sqli;
pub mod xss;

/// What a detector found, for logs and `rules explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The context in which the input forms structure (e.g. `sql:single-quoted`).
    pub context: &'static str,
    /// A short description of the structure found (e.g. a token fingerprint).
    pub detail: String,
}

/// Test helper shared by the detectors: 3,000 pseudo-random inputs (a few up
/// to 10 KB), three bytes in four drawn from `alphabet` (the bytes a
/// tokenizer branches on), the rest arbitrary. xorshift: no crates needed.
#[cfg(test)]
pub(crate) fn random_inputs(alphabet: &[u8], seed: u64, mut f: impl FnMut(&[u8])) {
    let mut x = seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..3000 {
        let len = (next() % if round % 100 == 0 { 10_000 } else { 200 }) as usize;
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if r % 4 == 0 {
                    (r >> 8) as u8
                } else {
                    alphabet[(r >> 8) as usize % alphabet.len()]
                }
            })
            .collect();
        f(&buf);
    }
}
