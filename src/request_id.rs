//! Request ids: keep a well-formed incoming `X-Request-Id`, else mint a
//! UUIDv7 (time-ordered, so ids sort by arrival across logs and stores).
//!
//! Generated without a syscall per request: the random bits come from a
//! per-thread xorshift generator seeded once from the OS (via `RandomState`).

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// Longest incoming id we keep.
pub const MAX_ID_LEN: usize = 128;

/// An incoming id is kept when it is 1–128 characters of `[A-Za-z0-9._:+/=@-]`.
pub fn is_valid(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_ID_LEN
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:+/=@-".contains(b))
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish() | 1
}

fn next_random() -> u64 {
    RNG.with(|c| {
        // xorshift64*
        let mut x = c.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A new UUIDv7 as a header value, e.g. `019a8c3e-7b2a-7c4d-9e1f-0a1b2c3d4e5f`.
pub fn generate() -> HeaderValue {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let r1 = next_random();
    let r2 = next_random();
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | ((r1 >> 56) as u8 & 0x0f);
    b[7] = (r1 >> 48) as u8;
    b[8..16].copy_from_slice(&r2.to_be_bytes());
    b[8] = 0x80 | (b[8] & 0x3f);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut j = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[j] = b'-';
            j += 1;
        }
        out[j] = HEX[(byte >> 4) as usize];
        out[j + 1] = HEX[(byte & 0xf) as usize];
        j += 2;
    }
    // Only hex digits and dashes: always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static(
        "00000000-0000-7000-8000-000000000000",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_v7_and_ordered() {
        let a = generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = generate();
        let (a, b) = (
            a.to_str().unwrap().to_string(),
            b.to_str().unwrap().to_string(),
        );
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert!(a < b, "{a} < {b}");
        assert!(is_valid(a.as_bytes()));
    }

    #[test]
    fn validity() {
        assert!(is_valid(b"req-123_abc.def"));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(b"x\"y"));
        assert!(!is_valid(&[b'a'; 129]));
    }
}
