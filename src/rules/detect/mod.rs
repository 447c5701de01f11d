//! Native detectors: tokenizers that decide whether an input, placed in the
//! contexts an application would use, forms injected structure.

pub mod cmdi;
pub mod encoded;
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

/// A set of bytes as a lookup table, built at compile time.
pub(crate) const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

/// Does `s` hold a byte of `set`? The pre-filters' question on every clean
/// value: one table load per byte, OR-ed branch-free over 16-byte blocks
/// (a chain of comparisons per byte cost ~1.5 ns a byte).
#[inline]
pub(crate) fn has_any(s: &[u8], set: &[bool; 256]) -> bool {
    s.chunks(16)
        .any(|c| c.iter().fold(false, |a, &b| a | set[usize::from(b)]))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_any_finds_a_member_anywhere() {
        const SET: [bool; 256] = byte_set(b";|");
        assert!(!has_any(b"", &SET));
        assert!(!has_any(b"value number 5 of the form", &SET));
        for len in 1..40 {
            for at in 0..len {
                let mut v = vec![b'a'; len];
                v[at] = b'|';
                assert!(has_any(&v, &SET), "{len} {at}");
            }
        }
    }
}
