//! Masking of secrets and personal data before anything is stored or logged.
//!
//! Audit records and logs outlive the requests they describe and are read by
//! more people than the application's users trust with their passwords. So
//! whatever the gateway keeps about a request (arguments, headers, bodies,
//! matched fragments) passes through a [`Masker`] first. Two complementary
//! checks:
//!
//! * **By name.** A field, parameter, header or JSON key whose name says it
//!   holds a secret (`password`, `X-Api-Key`, `Cookie`, `cvv`, and the names
//!   of the config key `audit.mask_fields`) has its whole value replaced by
//!   `[masked]`, whatever the value looks like. Names are compared
//!   case-insensitively, percent-decoded, with separators removed, so
//!   `New-Password_confirm` and `pass%77ord` count.
//! * **By shape.** Values under other names are scanned for what is a secret
//!   wherever it appears, and only that is replaced: `name=value`,
//!   `name: value` and `"name": value` pairs with a sensitive name (query
//!   strings, form bodies, header dumps and JSON inside free text), `Bearer`
//!   and `Basic` credentials, JWTs, PEM private keys, URL passwords, well-known
//!   API-key formats (AWS, Stripe, GitHub, Slack, GitLab) and payment card
//!   numbers. A card keeps its last four digits (`[card ****1111]`), which
//!   PCI DSS allows and which is what an analyst needs to tell cards apart.
//!
//! Masking errs on the side of hiding: a value whose end cannot be found
//! (an unterminated quote, a header value) is masked to the end of the line
//! or text rather than half shown, and a named field is masked even when
//! empty (whether a password was blank is not for the log to say). Only in
//! free text is an empty value left alone: `Password:` there is usually a
//! label, not a value. What it does not try to recognise in free
//! text is personal data without a reliable shape (names, e-mail addresses,
//! phone numbers): fields holding those should be listed in
//! `audit.mask_fields`.
//!
//! Text with nothing to mask is returned as [`Cow::Borrowed`]: a cheap
//! pre-scan (enough digits for a card, a `=` or `:`, one of a few literal
//! prefixes) skips the regexes entirely for most values.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::rules::transform::{Transform, apply};

/// What a masked value becomes.
pub const MASKED: &str = "[masked]";
/// What a JSON Web Token becomes (its kind is worth keeping; its content is
/// a bearer credential and often personal data).
pub const MASKED_JWT: &str = "[masked-jwt]";

/// Built-in sensitive names, matched whole after normalisation.
const DEFAULT_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pw",
    "pass",
    "passphrase",
    "passcode",
    "secret",
    "secret_key",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "api_key",
    "apikey",
    "key",
    "private_key",
    "auth",
    "authorization",
    "proxy_authorization",
    "credential",
    "credentials",
    "signature",
    "x-amz-signature",
    "cookie",
    "set_cookie",
    "session",
    "sessionid",
    "sid",
    "jsessionid",
    "phpsessid",
    "csrf",
    "xsrf",
    "otp",
    "totp",
    "pin",
    "pin_code",
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "security_code",
    "card",
    "card_number",
    "card_no",
    "cc_number",
    "credit_card",
    "pan",
    "ssn",
    "iban",
    "account_number",
];

/// Substrings of a normalised name that make it sensitive wherever they
/// appear (`user_password`, `X-Auth-Token`, `sessionCookie`). Only words
/// that are hardly ever part of an innocent name: `key`, `pass` or `pin`
/// here would catch `keyword`, `passenger` and `spinner`.
const MARKERS: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"passphrase",
    b"secret",
    b"token",
    b"apikey",
    b"authorization",
    b"cookie",
    b"cardnumber",
    b"creditcard",
    b"privatekey",
    b"sessionid",
];

/// Short words that make a name sensitive when they are a whole word of it
/// (split at separators and camelCase humps): `card_cvv`, `userPin`,
/// `db_pass`, but not `spinner` or `passenger`.
const SEGMENT_WORDS: &[&[u8]] = &[
    b"pass", b"passwd", b"pwd", b"pw", b"pin", b"cvv", b"cvv2", b"cvc", b"cvc2", b"ssn", b"iban",
    b"otp", b"totp", b"csrf", b"xsrf",
];

/// A card number has 13 to 19 digits.
const CARD_MIN_DIGITS: usize = 13;
const CARD_MAX_DIGITS: usize = 19;

/// Names up to this length (normalised) are checked without allocating.
const NAME_STACK: usize = 64;

// The patterns below are constants, so `expect` cannot fire outside a build
// that already fails its tests.
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex")
}

/// Literal prefixes of the shape detectors other than pairs and cards; if
/// none occurs, those detectors cannot match. Case-insensitive because the
/// auth schemes are.
static LITERALS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)-----BEGIN|eyJ|bearer|basic|AKIA|ASIA|[sr]k_(?:live|test)_|gh[pousr]_|github_pat_|xox[abposr]-|glpat-",
    )
});

/// PEM private keys of any algorithm (and PGP key blocks). A block cut off by
/// a body limit has no END line: it is masked to the end of the text.
static PEM: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
    )
});

/// The name and separator of a pair: `"name":`, `'name':`, `\"name\":`
/// (JSON inside a JSON string) or a bare `name=` / `name:`. The value's
/// extent depends on the syntax, so it is found by [`value_span`].
/// Groups: 1 = escaped quote, 2 = double-quoted name, 3 = single-quoted
/// name, 4 = bare name, 5 = separator.
static PAIR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?:(\\)?"([^"\\\r\n]{1,128})\\?"|'([^'\\\r\n]{1,128})'|([A-Za-z0-9_.\-\[\]%]{1,128}))[ \t]*([=:])[ \t]*"#,
    )
});

/// The password of `scheme://user:password@host`.
static URL_USERINFO: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?-u:\b)[a-z][a-z0-9+.\-]*://[^/?#@\s:]*:([^/?#@\s]+)@"));

/// A JWT: base64url header and payload, both JSON objects (`{"` encodes as
/// `eyJ`), then a signature that is empty for `alg: none`.
static JWT: LazyLock<Regex> =
    LazyLock::new(|| re(r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"));

/// `Bearer <token>` / `Basic <base64>` (RFC 6750 b64token characters).
static AUTH: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?-u:\b)(bearer|basic)[ \t]+([A-Za-z0-9\-._~+/]+=*)"));

/// Credentials recognisable by their documented prefix: AWS access key ids,
/// Stripe secret and restricted keys, GitHub, Slack and GitLab tokens.
static API_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?-u:\b)(?:",
        r"(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)",
        r"|[sr]k_(?:live|test)_[0-9A-Za-z]{10,}",
        r"|gh[pousr]_[A-Za-z0-9]{30,}",
        r"|github_pat_[A-Za-z0-9_]{30,}",
        r"|xox[abposr]-[A-Za-z0-9\-]{10,}",
        r"|glpat-[A-Za-z0-9_\-]{20,}",
        r")"
    ))
});

/// A run of ASCII digits, single spaces or dashes allowed between them.
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9](?:[ \-]?[0-9])*"));

/// Decides which names are sensitive and masks values accordingly. Build one
/// from the configuration and share it; it is immutable.
#[derive(Debug, Clone)]
pub struct Masker {
    /// Normalised names (lowercase ASCII letters and digits only) matched
    /// whole: the defaults plus `audit.mask_fields`.
    names: HashSet<Box<[u8]>>,
}

impl Default for Masker {
    fn default() -> Self {
        Masker::new(&[])
    }
}

impl Masker {
    /// `extra`: names from the config key `audit.mask_fields` (e.g.
    /// `["password","token","card"]`), added to the built-in defaults. They
    /// are matched whole (after the same normalisation as the defaults), not
    /// as substrings: a short configured name like `dob` must not catch
    /// every name that happens to contain it.
    pub fn new(extra: &[String]) -> Masker {
        let names = DEFAULT_NAMES
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
            .map(|n| normalise(&percent_decode(n.as_bytes())).into_boxed_slice())
            .filter(|n| !n.is_empty())
            .collect();
        Masker { names }
    }

    /// True when a field, parameter, header or JSON key with this name holds
    /// a secret. The name is percent-decoded and lowercased, and everything
    /// but letters and digits is dropped (`X-Api-Key` → `xapikey`,
    /// `user[password]` → `userpassword`); it is sensitive when that is a
    /// default or configured name, when it contains a strong marker
    /// (`password`, `token`, `secret`, ...), or when one of its words is a
    /// short sensitive word (`card_cvv`, `userPin`).
    pub fn is_sensitive_name(&self, name: &str) -> bool {
        let raw = percent_decode(name.as_bytes());
        let mut stack = [0u8; NAME_STACK];
        let heap;
        let norm: &[u8] = if raw.len() <= NAME_STACK {
            let mut len = 0;
            for c in raw.iter().copied().filter(|&c| keep_in_name(c)) {
                stack[len] = c.to_ascii_lowercase();
                len += 1;
            }
            &stack[..len]
        } else {
            heap = normalise(&raw);
            &heap
        };
        !norm.is_empty()
            && (self.names.contains(norm)
                || MARKERS.iter().any(|m| contains(norm, m))
                || has_sensitive_word(&raw))
    }

    /// Masks a value. With a sensitive `name` the whole value becomes
    /// `[masked]`, even an empty one. Otherwise the text is scanned and only recognised
    /// secrets are replaced (see the module documentation).
    ///
    /// Returns [`Cow::Borrowed`] when nothing changed, without allocating.
    pub fn mask_value<'a>(&self, name: Option<&str>, value: &'a str) -> Cow<'a, str> {
        if name.is_some_and(|n| self.is_sensitive_name(n)) {
            return Cow::Owned(MASKED.to_owned());
        }
        self.mask_text(value)
    }

    /// Recursively masks a JSON value in place: the value of a sensitive key
    /// becomes `"[masked]"` whatever its type (an object under `password`
    /// is no less secret); other strings go through [`Masker::mask_value`],
    /// and integers long enough to be card numbers are checked as such.
    /// Strings under a key named `query` are read as urlencoded queries.
    pub fn mask_json(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    if self.is_sensitive_name(k) {
                        *val = Value::String(MASKED.to_owned());
                    } else if let (QUERY_KEY, Value::String(q)) = (k.as_str(), &mut *val) {
                        // A query string is urlencoded: its values are
                        // decoded before they are judged (`4111%201111…`).
                        if let Cow::Owned(m) = self.mask_query(q) {
                            *q = m;
                        }
                        self.mask_json(val);
                    } else {
                        self.mask_json(val);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.mask_json(x)),
            Value::String(s) => {
                if let Cow::Owned(m) = self.mask_text(s) {
                    *s = m;
                }
            }
            Value::Number(n) => {
                // Only integers of 13+ digits can be cards; skip the rest
                // without formatting them.
                if let Some(x) = n.as_u64().filter(|&x| x >= 1_000_000_000_000)
                    && let Some(m) = mask_cards(&x.to_string())
                {
                    *v = Value::String(m);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// Masks an urlencoded query or form string: names are kept as they are,
    /// the values of sensitive names become `[masked]`, and other values are
    /// percent-decoded and scanned like [`Masker::mask_value`] (a card
    /// number sent as `4111+1111+...` is still a card). A value that needed
    /// masking is written back encoded just enough to keep the string
    /// parseable. Parameters are split at `&` only.
    pub fn mask_query<'a>(&self, qs: &'a str) -> Cow<'a, str> {
        let mut ed = Edits::new(qs);
        let mut start = 0;
        for part in qs.split('&') {
            let end = start + part.len();
            let value_at = match part.find('=') {
                Some(eq) if self.is_sensitive_name(&part[..eq]) => {
                    ed.replace(start + eq + 1..end, MASKED);
                    start = end + 1;
                    continue;
                }
                Some(eq) => start + eq + 1,
                // A parameter without `=` is a bare value.
                None => start,
            };
            // Borrowed all the way when the value has no escapes.
            let decoded = percent_decode(&qs.as_bytes()[value_at..end]);
            if let Cow::Owned(m) = self.mask_text(&String::from_utf8_lossy(&decoded)) {
                ed.replace(value_at..end, &encode_component(&m));
            }
            start = end + 1;
        }
        ed.finish().map_or(Cow::Borrowed(qs), Cow::Owned)
    }

    /// Scans free text for secrets by shape (no name given, or a name that is
    /// not sensitive).
    fn mask_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let b = text.as_bytes();
        // The pre-scan: each detector needs its trigger, and most values have
        // none. Separated card numbers have short digit runs, so it is the
        // count of digits that decides, not the longest run.
        let pairs = b.iter().any(|&c| c == b'=' || c == b':');
        let cards = b
            .iter()
            .filter(|c| c.is_ascii_digit())
            .take(CARD_MIN_DIGITS)
            .count()
            == CARD_MIN_DIGITS;
        let literals = LITERALS.is_match(text);
        if !(pairs || cards || literals) {
            return Cow::Borrowed(text);
        }
        let mut out = Cow::Borrowed(text);
        // PEM first: its base64 lines and headers (`Proc-Type: 4,ENCRYPTED`)
        // would otherwise be taken apart by the other detectors.
        if literals {
            out = then(out, mask_pem);
        }
        // Pairs before shapes: `password=eyJ...` is masked whole, not as a
        // JWT that leaves the name's intent unstated.
        if pairs {
            out = then(out, |t| self.mask_pairs(t));
            out = then(out, mask_url_password);
        }
        if literals {
            // JWTs before auth schemes: `Bearer [masked-jwt]` says more than
            // `Bearer [masked]`.
            out = then(out, mask_jwts);
            out = then(out, mask_auth_schemes);
            out = then(out, mask_api_keys);
        }
        if cards {
            out = then(out, mask_cards);
        }
        out
    }

    /// Masks the values of `name=value`, `name: value` and `"name": value`
    /// pairs with a sensitive name. After a pair whose name is not sensitive,
    /// scanning resumes right after its separator, so a pair nested in that
    /// value (`q=password=x`, `"note":"token: x"`) is still found.
    fn mask_pairs(&self, text: &str) -> Option<String> {
        let b = text.as_bytes();
        let mut ed = Edits::new(text);
        let mut locs = PAIR.capture_locations();
        let mut pos = 0;
        while let Some(m) = PAIR.captures_read_at(&mut locs, text, pos) {
            pos = m.end();
            let group = |i| locs.get(i).map(|(s, e): (usize, usize)| &text[s..e]);
            let (name, quote) = match (group(2), group(3), group(4)) {
                (Some(n), ..) => (n, if group(1).is_some() { "\\\"" } else { "\"" }),
                (_, Some(n), _) => (n, "'"),
                (.., Some(n)) => (n, ""),
                _ => continue,
            };
            if !self.is_sensitive_name(name) {
                continue;
            }
            let sep = locs.get(5).map_or(b'=', |(s, _)| b[s]);
            let v = value_span(b, m.end(), sep, quote);
            // An empty value in free text is usually no value at all (a
            // `Password:` label, a heading before a block): nothing to hide.
            if v.mask.is_empty() {
                continue;
            }
            if v.requote {
                ed.replace(v.mask, &format!("{quote}{MASKED}{quote}"));
            } else {
                ed.replace(v.mask, MASKED);
            }
            pos = v.resume;
        }
        ed.finish()
    }
}

/// Luhn check on the digits of `s`, ignoring spaces and dashes. False when
/// `s` has no digits or any other character.
/// The record key whose string value is an urlencoded query.
const QUERY_KEY: &str = "query";

pub fn luhn_valid(s: &str) -> bool {
    let mut sum = 0;
    let mut n = 0;
    for c in s.bytes().rev() {
        match c {
            b'0'..=b'9' => {
                let d = u32::from(c - b'0');
                // Every second digit from the right is doubled; a two-digit
                // result counts as the sum of its digits (d*2 - 9).
                sum += if n % 2 == 1 {
                    (d * 2) - if d > 4 { 9 } else { 0 }
                } else {
                    d
                };
                n += 1;
            }
            b' ' | b'-' => {}
            _ => return false,
        }
    }
    n > 0 && sum % 10 == 0
}

/// Letters and digits are what a name is compared on; non-ASCII bytes are
/// kept as they are (case folding beyond ASCII is not needed for the names
/// in use).
fn keep_in_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || !c.is_ascii()
}

fn normalise(raw: &[u8]) -> Vec<u8> {
    raw.iter()
        .copied()
        .filter(|&c| keep_in_name(c))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether one word of `raw` is in [`SEGMENT_WORDS`]. Words are split at
/// anything but ASCII letters and digits, and before an upper-case letter
/// that follows a lower-case one (`cardCvv` → `card`, `Cvv`).
fn has_sensitive_word(raw: &[u8]) -> bool {
    let mut start = 0;
    for i in 0..=raw.len() {
        let c = raw.get(i).copied();
        let split = match c {
            None => true,
            Some(c) if !c.is_ascii_alphanumeric() => true,
            Some(c) => i > start && c.is_ascii_uppercase() && raw[i - 1].is_ascii_lowercase(),
        };
        if !split {
            continue;
        }
        let word = &raw[start..i];
        if !word.is_empty() && SEGMENT_WORDS.iter().any(|w| word.eq_ignore_ascii_case(w)) {
            return true;
        }
        start = if c.is_some_and(|c| c.is_ascii_alphanumeric()) {
            i
        } else {
            i + 1
        };
    }
    false
}

/// `%XX` and `+` decoded (the rules' `url_decode`); borrowed when there is
/// nothing to decode.
fn percent_decode(b: &[u8]) -> Cow<'_, [u8]> {
    apply(Transform::UrlDecode, b)
}

/// Percent-encodes what would change how a query string parses (`%`, `&`,
/// `+`, `#`, whitespace and control characters) and nothing else, so the
/// masked value stays readable: `[card ****1111]` → `[card%20****1111]`.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(c, '%' | '&' | '+' | '#') || c.is_ascii_whitespace() || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Builds an edited copy lazily: nothing is allocated until the first
/// replacement. Replacements go left to right and must not overlap.
struct Edits<'a> {
    src: &'a str,
    out: Option<String>,
    copied: usize,
}

impl<'a> Edits<'a> {
    fn new(src: &'a str) -> Self {
        Edits {
            src,
            out: None,
            copied: 0,
        }
    }

    fn replace(&mut self, range: Range<usize>, with: &str) {
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(self.src.len() + 16));
        out.push_str(&self.src[self.copied..range.start]);
        out.push_str(with);
        self.copied = range.end;
    }

    /// The edited text, or None when nothing was replaced.
    fn finish(self) -> Option<String> {
        let mut out = self.out?;
        out.push_str(&self.src[self.copied..]);
        Some(out)
    }
}

/// Runs one detector over the text so far, keeping it borrowed when the
/// detector changed nothing.
fn then<'a>(text: Cow<'a, str>, pass: impl FnOnce(&str) -> Option<String>) -> Cow<'a, str> {
    match pass(&text) {
        Some(s) => Cow::Owned(s),
        None => text,
    }
}

/// Where a pair's value lies and how to mask it.
struct ValueSpan {
    /// The bytes replaced.
    mask: Range<usize>,
    /// The replacement needs the name's quotes around it (an unquoted JSON
    /// scalar or object replaced by a string, so JSON text stays JSON).
    requote: bool,
    /// Where scanning resumes.
    resume: usize,
}

/// The value that starts at `at`, after separator `sep` (`=` or `:`) of a
/// name quoted with `quote` (`"`, `'`, `\"` or nothing):
///
/// - a quoted string: its content, up to the closing quote;
/// - after a quoted name and `:` (JSON and its relatives): a whole object or
///   array, or a scalar up to `,` `}` `]` or whitespace;
/// - after `=`: up to `&`, `;`, `"` or whitespace (query strings, form
///   bodies, cookies, `key=value` logs);
/// - after a bare name and `:` (header dumps, YAML): the rest of the line.
///
/// Anything unterminated runs to the end of the text.
fn value_span(b: &[u8], at: usize, sep: u8, quote: &str) -> ValueSpan {
    let until = |from: usize, stop: &dyn Fn(u8) -> bool| {
        b[from..]
            .iter()
            .position(|&c| stop(c))
            .map_or(b.len(), |p| from + p)
    };
    match b.get(at) {
        Some(&q @ (b'"' | b'\'')) => {
            let close = closing_quote(b, at + 1, q);
            ValueSpan {
                mask: at + 1..close,
                requote: false,
                resume: (close + 1).min(b.len()),
            }
        }
        Some(b'\\') if b.get(at + 1) == Some(&b'"') => {
            let close = b[at + 2..]
                .windows(2)
                .position(|w| w == b"\\\"")
                .map_or(b.len(), |p| at + 2 + p);
            ValueSpan {
                mask: at + 2..close,
                requote: false,
                resume: (close + 2).min(b.len()),
            }
        }
        Some(b'{' | b'[') if sep == b':' && !quote.is_empty() => {
            let end = json_container_end(b, at);
            ValueSpan {
                mask: at..end,
                requote: true,
                resume: end,
            }
        }
        _ => {
            let (end, requote) = if sep == b'=' {
                let stop = |c: u8| matches!(c, b'&' | b';' | b'"') || c.is_ascii_whitespace();
                (until(at, &stop), false)
            } else if !quote.is_empty() {
                let stop = |c: u8| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace();
                (until(at, &stop), true)
            } else {
                let eol = until(at, &|c| c == b'\r' || c == b'\n');
                let trimmed = b[at..eol].iter().rposition(|&c| c != b' ' && c != b'\t');
                (trimmed.map_or(at, |p| at + p + 1), false)
            };
            ValueSpan {
                mask: at..end,
                requote,
                resume: end,
            }
        }
    }
}

/// The index of the quote `q` that closes a string whose content starts at
/// `from`, honouring backslash escapes; `b.len()` when there is none.
fn closing_quote(b: &[u8], from: usize, q: u8) -> usize {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// The end (exclusive) of the JSON object or array opening at `at`, strings
/// skipped; `b.len()` when it is not closed.
fn json_container_end(b: &[u8], at: usize) -> usize {
    let mut depth = 0usize;
    let mut i = at;
    while i < b.len() {
        match b[i] {
            b'"' => i = closing_quote(b, i + 1, b'"'),
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn mask_pem(text: &str) -> Option<String> {
    let mut ed = Edits::new(text);
    PEM.find_iter(text)
        .for_each(|m| ed.replace(m.range(), MASKED));
    ed.finish()
}

fn mask_url_password(text: &str) -> Option<String> {
    let mut ed = Edits::new(text);
    for c in URL_USERINFO.captures_iter(text) {
        if let Some(pw) = c.get(1) {
            ed.replace(pw.range(), MASKED);
        }
    }
    ed.finish()
}

fn mask_jwts(text: &str) -> Option<String> {
    let mut ed = Edits::new(text);
    JWT.find_iter(text)
        .for_each(|m| ed.replace(m.range(), MASKED_JWT));
    ed.finish()
}

/// `Bearer x` and `Basic x` keep the scheme and lose the credentials. The
/// words are common in prose, so the credentials must look the part: a
/// bearer token of 8+ characters, a Basic value that decodes to
/// `user:password`.
fn mask_auth_schemes(text: &str) -> Option<String> {
    let mut ed = Edits::new(text);
    for c in AUTH.captures_iter(text) {
        let (Some(scheme), Some(tok)) = (c.get(1), c.get(2)) else {
            continue;
        };
        let credentials = if scheme.as_str().eq_ignore_ascii_case("basic") {
            base64_has_colon(tok.as_str())
        } else {
            tok.len() >= 8
        };
        if credentials {
            ed.replace(tok.range(), MASKED);
        }
    }
    ed.finish()
}

/// Whether `s` decodes as base64 (standard or URL-safe, padding optional) to
/// bytes containing `:`.
fn base64_has_colon(s: &str) -> bool {
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let Some(v) = crate::rules::transform::base64_sextet(c) else {
            return false;
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if (acc >> bits) & 0xff == u32::from(b':') {
                return true;
            }
            acc &= (1 << bits) - 1;
        }
    }
    false
}

fn mask_api_keys(text: &str) -> Option<String> {
    let mut ed = Edits::new(text);
    API_KEY
        .find_iter(text)
        .for_each(|m| ed.replace(m.range(), MASKED));
    ed.finish()
}

/// Masks payment card numbers, keeping the last four digits.
///
/// Within a run of digits (single spaces or dashes allowed between groups),
/// a card is a stretch of whole groups with 13–19 digits that passes Luhn and
/// starts with 2–6 (the major industry identifiers of payment cards: this
/// spares millisecond timestamps and most IDs that pass Luhn by chance, one in
/// ten). When a stretch spans several groups, each has 3+ digits, as cards are
/// written (4-4-4-4, 4-6-5); dates and phone numbers run together
/// (`2024-01-15 2024-01-16`) are not cards. Starting at each group in turn,
/// the longest valid stretch wins, so a number next to a card
/// (`qty 2 4111 1111 1111 1111`) does not hide it.
fn mask_cards(text: &str) -> Option<String> {
    let mut ed = Edits::new(text);
    let mut groups: Vec<Range<usize>> = Vec::new();
    for run in DIGIT_RUN.find_iter(text) {
        if run.as_str().bytes().filter(u8::is_ascii_digit).count() < CARD_MIN_DIGITS {
            continue;
        }
        groups.clear();
        // Groups of digits, split at the single separators.
        let mut g = run.start();
        for (i, c) in run.as_str().bytes().enumerate() {
            if !c.is_ascii_digit() {
                groups.push(g..run.start() + i);
                g = run.start() + i + 1;
            }
        }
        groups.push(g..run.end());
        let mut i = 0;
        while i < groups.len() {
            let Some(j) = card_at(text, &groups, i) else {
                i += 1;
                continue;
            };
            let span = groups[i].start..groups[j].end;
            let digits: String = text[span.clone()]
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            let last4 = &digits[digits.len() - 4..];
            ed.replace(span, &format!("[card ****{last4}]"));
            i = j + 1;
        }
    }
    ed.finish()
}

/// The last group of the longest card number starting at group `i`.
fn card_at(text: &str, groups: &[Range<usize>], i: usize) -> Option<usize> {
    if !(b'2'..=b'6').contains(&text.as_bytes()[groups[i].start]) {
        return None;
    }
    let mut digits = 0;
    let mut best = None;
    for (j, g) in groups.iter().enumerate().skip(i) {
        if j > i && (g.len() < 3 || groups[i].len() < 3) {
            break;
        }
        digits += g.len();
        if digits > CARD_MAX_DIGITS {
            break;
        }
        if digits >= CARD_MIN_DIGITS && luhn_valid(&text[groups[i].start..g.end]) {
            best = Some(j);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn masker() -> Masker {
        Masker::default()
    }

    /// Masks free text and checks that `secret` is gone from the output.
    #[track_caller]
    fn masked(text: &str, secret: &str) -> String {
        let out = masker().mask_value(None, text);
        assert!(matches!(out, Cow::Owned(_)), "nothing masked in {text:?}");
        assert!(!out.contains(secret), "{secret:?} left in {out:?}");
        out.into_owned()
    }

    #[track_caller]
    fn untouched(text: &str) {
        let out = masker().mask_value(None, text);
        assert!(matches!(out, Cow::Borrowed(_)), "{text:?} became {out:?}");
    }

    #[test]
    fn default_names_in_any_case_and_separator_style() {
        let m = masker();
        for name in [
            "password",
            "PASSWORD",
            "Pass-Word",
            "passwd",
            "pwd",
            "pass",
            "secret",
            "token",
            "access_token",
            "refreshToken",
            "ID-Token",
            "api_key",
            "apikey",
            "key",
            "private.key",
            "client_secret",
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Set-Cookie",
            "session",
            "SessionId",
            "JSESSIONID",
            "csrf",
            "XSRF",
            "otp",
            "pin",
            "cvv",
            "CVC",
            "card",
            "card number",
            "ccNumber",
            "pan",
            "ssn",
            "IBAN",
        ] {
            assert!(m.is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn marker_and_word_names() {
        let m = masker();
        for name in [
            "user_password",
            "new_password_confirm",
            "X-Api-Key",
            "X-Auth-Token",
            "X-CSRF-Token",
            "csrfmiddlewaretoken",
            "aws_secret_access_key",
            "sessionCookie",
            "billing.cardNumber",
            "user[password]",
            "card_cvv",
            "cardCvv",
            "userPin",
            "db_pass",
            "tokenizer_name",
        ] {
            assert!(m.is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn innocent_names() {
        let m = masker();
        for name in [
            "",
            "-",
            "user",
            "username",
            "email",
            "keyword",
            "monkey",
            "passenger",
            "spinner",
            "compass",
            "bypass",
            "id",
            "q",
            "page",
            "order_id",
            "card_type_hint_x",
            "pinned",
        ] {
            assert!(!m.is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn percent_encoded_and_long_names() {
        let m = masker();
        assert!(m.is_sensitive_name("pass%77ord"));
        assert!(m.is_sensitive_name("api%5Fkey"));
        assert!(m.is_sensitive_name("user%5Bpassword%5D"));
        // Past the stack buffer, the heap path gives the same answers.
        let long = format!("{}_password", "x".repeat(100));
        assert!(m.is_sensitive_name(&long));
        assert!(!m.is_sensitive_name(&"x".repeat(100)));
    }

    #[test]
    fn configured_names_are_added() {
        let plain = masker();
        let m = Masker::new(&["x-internal-ref".to_owned(), "DOB".to_owned(), "".to_owned()]);
        assert!(!plain.is_sensitive_name("X_Internal_Ref"));
        assert!(m.is_sensitive_name("X_Internal_Ref"));
        assert!(m.is_sensitive_name("dob"));
        // Whole names, not substrings, and the defaults still hold.
        assert!(!m.is_sensitive_name("dobby"));
        assert!(m.is_sensitive_name("password"));
        // An empty configured name does not make everything sensitive.
        assert!(!m.is_sensitive_name("--"));
        assert_eq!(m.mask_value(Some("dob"), "1990-01-01"), MASKED);
        assert_eq!(m.mask_query("dob=1990-01-01&x=1"), "dob=[masked]&x=1");
        assert_eq!(plain.mask_query("dob=1990-01-01&x=1"), "dob=1990-01-01&x=1");
    }

    #[test]
    fn sensitive_name_masks_whole_value() {
        let m = masker();
        assert_eq!(m.mask_value(Some("Password"), "hunter2"), MASKED);
        assert_eq!(m.mask_value(Some("X-Api-Key"), "abc 123"), MASKED);
        assert_eq!(m.mask_value(Some("password"), ""), MASKED);
        assert!(matches!(
            m.mask_value(Some("username"), "bob"),
            Cow::Borrowed("bob")
        ));
    }

    #[test]
    fn clean_text_is_borrowed() {
        for text in [
            "",
            "hello world",
            "GET /index.html",
            "https://example.com/a/b?x",
            "at 12:30 on 2024-01-15",
            "user=bob&lang=en",
            "{\"user\":\"bob\",\"n\":1}",
            "order 1234567890123",
            "ts 1700000000000",
            "call +1 555-123-4567 now",
            "the basic idea",
            "a bearer of news",
            "Basic plan",
            "visit Asia",
        ] {
            untouched(text);
        }
        // With a name that is not sensitive, too.
        assert!(matches!(
            masker().mask_value(Some("q"), "plain"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(luhn_valid("4111-1111-1111-1111"));
        assert!(luhn_valid("79927398713"));
        assert!(luhn_valid("378282246310005"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(!luhn_valid("79927398710"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid(" - "));
        assert!(!luhn_valid("4111x1111111111111"));
    }

    #[test]
    fn card_numbers_keep_last_four() {
        for (text, want) in [
            (
                "paid with 4111 1111 1111 1111.",
                "paid with [card ****1111].",
            ),
            ("4111-1111-1111-1111", "[card ****1111]"),
            ("cc=4111111111111111x", "cc=[card ****1111]x"),
            ("amex 3782 822463 10005 ok", "amex [card ****0005] ok"),
            ("mc 5555555555554444", "mc [card ****4444]"),
            ("qty 2 4111 1111 1111 1111", "qty 2 [card ****1111]"),
            (
                "4111 1111 1111 1111 5555 5555 5555 4444",
                "[card ****1111] [card ****4444]",
            ),
        ] {
            let out = masker().mask_value(None, text);
            assert_eq!(out, want, "{text}");
            assert!(!out.contains("4111 1111 1111") && !out.contains("411111111111"));
        }
    }

    #[test]
    fn digit_runs_that_are_not_cards() {
        // Fails Luhn.
        untouched("4111 1111 1111 1112");
        untouched("4111111111111112");
        // Luhn-valid but 20 digits, or a leading 1 (a millisecond timestamp's
        // digit), or short groups (dates).
        assert!(luhn_valid("41111111111111111115"));
        untouched("41111111111111111115");
        assert!(luhn_valid("1000000000009"));
        untouched("1000000000009");
        untouched("2024-01-15 2024-01-16 2024-01-17");
        // 12 digits.
        untouched("4111 1111 1111");
    }

    #[test]
    fn pairs_in_query_and_form_text() {
        let m = masker();
        assert_eq!(
            m.mask_value(None, "user=bob&password=hunter2"),
            "user=bob&password=[masked]"
        );
        assert_eq!(
            m.mask_value(None, "/login?user=bob&pass%77ord=hunter2&next=/"),
            "/login?user=bob&pass%77ord=[masked]&next=/"
        );
        assert_eq!(
            m.mask_value(None, "q=password=hunter2"),
            "q=password=[masked]"
        );
        assert_eq!(
            m.mask_value(None, "password = hunter2 ok"),
            "password = [masked] ok"
        );
        assert_eq!(
            m.mask_value(None, "sid=abc; theme=dark"),
            "sid=[masked]; theme=dark"
        );
        assert_eq!(
            m.mask_value(None, "password=\"hunter 2\" x"),
            "password=\"[masked]\" x"
        );
        // Nothing to hide in an empty value.
        assert!(matches!(
            m.mask_value(None, "password=&a=1"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            m.mask_value(None, "Password:\n"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn pairs_in_header_dumps() {
        let text = "Host: example.com\r\nAuthorization: Bearer abc.def\r\nCookie: a=1; sid=xyz  \r\nAccept: */*";
        let out = masked(text, "abc.def");
        assert_eq!(
            out,
            "Host: example.com\r\nAuthorization: [masked]\r\nCookie: [masked]  \r\nAccept: */*"
        );
        assert_eq!(
            masked("X-Api-Key:k3y\nnext", "k3y"),
            "X-Api-Key:[masked]\nnext"
        );
    }

    #[test]
    fn pairs_in_json_text() {
        let m = masker();
        assert_eq!(
            m.mask_value(None, r#"{"user":"bob","password":"hu\"nter2","n":1}"#),
            r#"{"user":"bob","password":"[masked]","n":1}"#
        );
        assert_eq!(
            m.mask_value(None, r#"{"pin": 1234, "a": 1}"#),
            r#"{"pin": "[masked]", "a": 1}"#
        );
        assert_eq!(
            m.mask_value(None, r#"{"secret": {"v": [1, "}"]}, "a": 2}"#),
            r#"{"secret": "[masked]", "a": 2}"#
        );
        assert_eq!(
            m.mask_value(None, "{'token': 'abc', 'x': 1}"),
            "{'token': '[masked]', 'x': 1}"
        );
        // JSON inside a JSON string.
        assert_eq!(
            m.mask_value(None, r#"{"body":"{\"password\":\"hunter2\",\"u\":1}"}"#),
            r#"{"body":"{\"password\":\"[masked]\",\"u\":1}"}"#
        );
        // Unterminated: hidden to the end.
        assert_eq!(
            m.mask_value(None, r#"{"password":"hunt"#),
            r#"{"password":"[masked]"#
        );
        let masked_json = m.mask_value(None, r#"{"note":"x","api_key":"sk-123"}"#);
        assert!(!masked_json.contains("sk-123"));
        assert!(serde_json::from_str::<Value>(&masked_json).is_ok());
    }

    #[test]
    fn auth_schemes() {
        assert_eq!(
            masked("sent Bearer abcdef123456 ok", "abcdef123456"),
            "sent Bearer [masked] ok"
        );
        assert_eq!(
            masked("got bearer abcdefgh", "abcdefgh"),
            "got bearer [masked]"
        );
        // base64("user:pass")
        assert_eq!(
            masked("hdr Basic dXNlcjpwYXNz end", "dXNlcjpwYXNz"),
            "hdr Basic [masked] end"
        );
        // Words after "basic" that do not decode to user:password stay.
        untouched("Basic authentication is basic stuff");
        untouched("Bearer short");
    }

    #[test]
    fn jwts() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl-_x";
        assert_eq!(masked(&format!("t={jwt} end"), jwt), "t=[masked-jwt] end");
        assert_eq!(masked(&format!("Bearer {jwt}"), jwt), "Bearer [masked-jwt]");
        let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.";
        assert_eq!(masked(unsigned, "eyJzdWIiOiIxIn0"), MASKED_JWT);
    }

    #[test]
    fn pem_private_keys() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            masked(&format!("key:\n{pem}\nbye"), "MIIEow"),
            "key:\n[masked]\nbye"
        );
        let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----";
        assert_eq!(masked(openssh, "b3BlbnNzaC1rZXk"), MASKED);
        // Cut off by a body limit.
        assert_eq!(
            masked("x -----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN", "MIIEvQ"),
            "x [masked]"
        );
        // A certificate is public.
        untouched("-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----");
    }

    #[test]
    fn api_key_prefixes() {
        for (text, secret) in [
            ("id AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
            ("ASIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE"),
            (
                "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "4eC39HqLyjWDarjtT1zdp7dc",
            ),
            (
                "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "ghp_abcdefghij",
            ),
            ("slack xoxb-1234567890-abcdefghij", "1234567890-abcdefghij"),
            ("slack xoxp-1234567890-abcdefghij", "1234567890-abcdefghij"),
            ("gitlab glpat-abcdefghij0123456789", "glpat-abcdefghij"),
        ] {
            let out = masked(text, secret);
            assert!(out.contains(MASKED), "{out}");
        }
        // Too long for an access key id.
        untouched("AKIAIOSFODNN7EXAMPLEX");
    }

    #[test]
    fn url_passwords() {
        assert_eq!(
            masked("db postgres://app:s3cr3t@db:5432/x", "s3cr3t"),
            "db postgres://app:[masked]@db:5432/x"
        );
        untouched("see https://example.com:8443/path");
    }

    #[test]
    fn mask_json_nested() {
        let m = masker();
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2ln";
        let mut v = json!({
            "user": "bob",
            "Password": "hunter2",
            "profile": {
                "api_key": {"id": 1, "value": "k-9999"},
                "cards": [
                    {"number": "4111 1111 1111 1111", "cvv": 123},
                    {"number": 5555555555554444u64, "pin": null}
                ],
                "notes": ["call me", format!("auth {jwt}")],
                "count": 12,
                "big": 1700000000000u64
            },
            "tokens": ["a", "b"]
        });
        m.mask_json(&mut v);
        assert_eq!(
            v,
            json!({
                "user": "bob",
                "Password": "[masked]",
                "profile": {
                    "api_key": "[masked]",
                    "cards": [
                        {"number": "[card ****1111]", "cvv": "[masked]"},
                        {"number": "[card ****4444]", "pin": "[masked]"}
                    ],
                    "notes": ["call me", "auth [masked-jwt]"],
                    "count": 12,
                    "big": 1700000000000u64
                },
                "tokens": "[masked]"
            })
        );
        let text = v.to_string();
        for secret in ["hunter2", "k-9999", "4111 1111", "555555555555", "123", jwt] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn mask_query_strings() {
        let m = masker();
        assert_eq!(
            m.mask_query("user=bob&password=hunter2"),
            "user=bob&password=[masked]"
        );
        assert_eq!(
            m.mask_query("pass%77ord=hunter2&a=1"),
            "pass%77ord=[masked]&a=1"
        );
        assert_eq!(
            m.mask_query("user%5Bpassword%5D=x"),
            "user%5Bpassword%5D=[masked]"
        );
        assert_eq!(
            m.mask_query("Api-Key=abc&api+key=def"),
            "Api-Key=[masked]&api+key=[masked]"
        );
        assert_eq!(m.mask_query("password=&x"), "password=[masked]&x");
        // Values are decoded before they are scanned.
        assert_eq!(
            m.mask_query("cc=4111+1111+1111+1111&n=2"),
            "cc=[card%20****1111]&n=2"
        );
        assert_eq!(
            m.mask_query("cc=4111%2D1111%2D1111%2D1111"),
            "cc=[card%20****1111]"
        );
        assert_eq!(
            m.mask_query("h=Authorization%3A%20Bearer%20abcdefgh123"),
            "h=Authorization:%20[masked]"
        );
        // A bare value.
        assert_eq!(m.mask_query("4111111111111111"), "[card%20****1111]");
        // Nothing to mask: borrowed, byte for byte.
        for qs in ["", "a=1&b=2", "q=hello+world&page=2", "x=%41%42&&y", "=&="] {
            assert!(
                matches!(m.mask_query(qs), Cow::Borrowed(s) if s == qs),
                "{qs}"
            );
        }
    }

    #[test]
    fn masked_output_never_holds_the_secret() {
        let m = Masker::new(&["acct".to_owned()]);
        let secret = "Zq9xSECRETv4lue";
        for (name, text) in [
            (Some("password"), secret.to_owned()),
            (Some("acct"), secret.to_owned()),
            (None, format!("password={secret}")),
            (None, format!("acct: {secret}")),
            (None, format!("{{\"client_secret\": \"{secret}\"}}")),
            (None, format!("a=1&new-password={secret}&b=2")),
            (None, format!("Cookie: session={secret}; x=1")),
            (None, format!("token={secret}&x")),
            (None, format!("Proxy-Authorization: Basic {secret}")),
            (None, format!("https://u:{secret}@host/")),
        ] {
            let out = m.mask_value(name, &text);
            assert!(!out.contains(secret), "{text:?} → {out:?}");
        }
        let qs = format!("acct={secret}&q=token%3D{secret}");
        let out = m.mask_query(&qs);
        assert!(!out.contains(secret), "{out}");
        let mut v = json!({"a": [{"acct": secret}, format!("password: {secret}")]});
        m.mask_json(&mut v);
        assert!(!v.to_string().contains(secret), "{v}");
    }

    #[test]
    fn random_text_never_panics() {
        // Fragments that start and cut off every detector, glued at random:
        // edits must stay in order and on character boundaries whatever
        // the input.
        const PARTS: &[&str] = &[
            "password",
            "token",
            "=",
            ":",
            " ",
            "\"",
            "'",
            "\\",
            "{",
            "}",
            "[",
            "]",
            ",",
            "&",
            ";",
            "\n",
            "é",
            "東",
            "4111",
            "1111",
            "-",
            "eyJhbGci",
            ".",
            "Bearer ",
            "Basic ",
            "dXNlcjpwYXNz",
            "-----BEGIN RSA PRIVATE KEY-----",
            "AKIA",
            "https://a:",
            "@",
            "%77",
            "+",
            "5555",
            "2",
        ];
        let m = masker();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(PARTS[(seed % PARTS.len() as u64) as usize]);
            }
            let _ = m.mask_value(None, &text);
            let _ = m.mask_query(&text);
            let mut v = Value::String(text);
            m.mask_json(&mut v);
        }
    }

    #[test]
    fn non_ascii_text_is_safe() {
        // Byte offsets must stay on character boundaries around the edits.
        let m = masker();
        assert_eq!(
            m.mask_value(None, "mot de passe=été&password=ünï"),
            "mot de passe=été&password=[masked]"
        );
        assert_eq!(
            m.mask_value(None, "é 4111 1111 1111 1111 é"),
            "é [card ****1111] é"
        );
        untouched("naïve café – 東京");
    }
}
