//! Key and id encodings. Keys are big-endian so byte order is time order.
//!
//! An event or incident key is `time (µs since the epoch, u64) ‖ random
//! (u32)`: time-ordered, unique without coordination between writers. Its
//! public id (`EVT-<unix seconds>-<µs within the second><random hex>`, the
//! seeds' `EVT-<unix>-<random>` shape) encodes the key, so an id finds its
//! record without an index.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

pub const TIME_KEY_LEN: usize = 12;

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub fn time_key(ts_us: u64, rand: u32) -> [u8; TIME_KEY_LEN] {
    let mut k = [0u8; TIME_KEY_LEN];
    k[..8].copy_from_slice(&ts_us.to_be_bytes());
    k[8..].copy_from_slice(&rand.to_be_bytes());
    k
}

/// The smallest key at or after `ts_us`.
pub fn time_floor(ts_us: u64) -> [u8; 8] {
    ts_us.to_be_bytes()
}

pub fn split_time_key(k: &[u8]) -> Option<(u64, u32)> {
    if k.len() < TIME_KEY_LEN {
        return None;
    }
    let ts = u64::from_be_bytes(k[..8].try_into().ok()?);
    let r = u32::from_be_bytes(k[8..12].try_into().ok()?);
    Some((ts, r))
}

/// `PREFIX-<secs>-<µs:06><rand:08x>` for a time key.
pub fn id_of(prefix: &str, ts_us: u64, rand: u32) -> String {
    format!(
        "{prefix}-{}-{:06}{:08x}",
        ts_us / 1_000_000,
        ts_us % 1_000_000,
        rand
    )
}

/// The time key an id names, when it has the right prefix and shape.
pub fn key_of(prefix: &str, id: &str) -> Option<[u8; TIME_KEY_LEN]> {
    let rest = id.strip_prefix(prefix)?.strip_prefix('-')?;
    let (secs, tail) = rest.split_once('-')?;
    if tail.len() != 14 || !tail.is_ascii() {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = tail[..6].parse().ok()?;
    let rand = u32::from_str_radix(&tail[6..], 16).ok()?;
    if micros >= 1_000_000 {
        return None;
    }
    Some(time_key(
        secs.checked_mul(1_000_000)?.checked_add(micros)?,
        rand,
    ))
}

/// 16 bytes: IPv4 mapped into IPv6, so one index orders both families.
pub fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// `name ‖ 0 ‖ tail`: an index key under a text value.
pub fn text_index(name: &str, tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + tail.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(tail);
    k
}

/// RFC 3339 UTC with microseconds, from µs since the epoch.
pub fn rfc3339_micros(ts_us: u64) -> String {
    let secs = ts_us / 1_000_000;
    let (y, mo, d, h, mi, s) = civil(secs);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
        ts_us % 1_000_000
    )
}

fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let (y, m, d) = crate::accesslog::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Parses `2026-11-23T05:06:07Z`, with optional fraction and `+hh:mm`
/// offset, or a bare date (midnight UTC), or unix seconds; µs since the epoch.
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok()?.checked_mul(1_000_000);
    }
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let mo: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut h, mut mi, mut sec, mut frac_us, mut offset) = (0u32, 0u32, 0u32, 0u64, 0i64);
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 {
            return None;
        }
        h = s.get(11..13)?.parse().ok()?;
        mi = s.get(14..16)?.parse().ok()?;
        sec = s.get(17..19)?.parse().ok()?;
        let mut rest = s.get(19..)?;
        if let Some(f) = rest.strip_prefix('.') {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            let digits = &f[..n];
            let mut us = 0u64;
            for (i, c) in digits.bytes().take(6).enumerate() {
                us += u64::from(c - b'0') * 10u64.pow(5 - i as u32);
            }
            frac_us = us;
            rest = &f[n..];
        }
        match rest {
            "Z" | "z" | "" => {}
            r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
                let oh: i64 = r.get(1..3)?.parse().ok()?;
                let om: i64 = r.get(4..6)?.parse().ok()?;
                offset = (oh * 3600 + om * 60) * if r.starts_with('-') { -1 } else { 1 };
            }
            _ => return None,
        }
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
    }
    // days from civil
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * i64::from(mm) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec) - offset;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(frac_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_to_keys() {
        let ts = 1_763_870_400_123_456u64;
        let id = id_of("EVT", ts, 0xdeadbeef);
        assert_eq!(id, "EVT-1763870400-123456deadbeef");
        assert_eq!(key_of("EVT", &id), Some(time_key(ts, 0xdeadbeef)));
        assert_eq!(key_of("INC", &id), None);
        assert_eq!(key_of("EVT", "EVT-1-xyz"), None);
        assert_eq!(key_of("EVT", "EVT-1763870400-999999Xdeadbee"), None);
    }

    #[test]
    fn time_keys_order_by_time() {
        assert!(time_key(1, u32::MAX) < time_key(2, 0));
        assert!(time_key(256, 0) > time_key(255, u32::MAX));
    }

    #[test]
    fn times_format_and_parse() {
        let ts = 1_763_870_400_123_456u64;
        let s = rfc3339_micros(ts);
        assert_eq!(s, "2025-11-23T04:00:00.123456Z");
        assert_eq!(parse_time(&s), Some(ts));
        assert_eq!(parse_time("2025-11-23"), Some(1_763_856_000_000_000));
        assert_eq!(
            parse_time("2025-11-23T05:00:00+01:00"),
            Some(1_763_870_400_000_000)
        );
        assert_eq!(parse_time("1763870400"), Some(1_763_870_400_000_000));
        assert_eq!(
            parse_time("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000)
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2025-13-01"), None);
    }

    #[test]
    fn ipv4_maps_into_the_v6_index() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_bytes(a), ip_bytes(b));
    }
}
