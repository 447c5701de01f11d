//! Rule transforms: the one-pass, byte-level decoders and normalizers a rule
//! applies to a target value before its matcher runs (SPEC §5 `transforms:`).
//!
//! # Contract
//!
//! * Every transform works on bytes: a value may stop being UTF-8 once
//!   decoded (`%ff`), so nothing here assumes `str`. Decoders that produce
//!   code points (`&#x3C;`, `\u003c`, `%u0027`, `\3c`) emit them as UTF-8.
//! * **One pass.** A transform decodes what is in its input and never
//!   re-scans its own output: `%253C` → `%3C` under `url_decode`. Multiple
//!   decoding is opt-in by listing a transform twice in a chain
//!   (`[url_decode, url_decode]`), so a rule author decides how deep to go
//!   and the cost stays proportional to the chain length.
//! * **Bounded and linear.** Each transform scans its input a constant number
//!   of times and looks ahead a bounded distance from any byte (or consumes
//!   what it looked at). Output is at most 1.5× the input (`lowercase` of
//!   `İ` and `css_decode` of `\0` are the only growers; every decoder
//!   shrinks). The unit tests check ≤ 4× on random and adversarial input.
//! * **Borrowed when unchanged.** Most values contain nothing to decode, so
//!   each transform looks for its trigger byte first and returns
//!   [`Cow::Borrowed`] without allocating when it makes no edit. A borrowed
//!   result is the input itself, except for `trim`, which borrows a
//!   sub-slice. Edits copy unchanged runs with `extend_from_slice` into one
//!   output buffer pre-sized to the input length.
//! * Malformed escapes are left as they are (`%zz`, `&#;`, `\xZZ` keeps the
//!   `xZZ`), never an error: a transform has no failure mode, so a rule
//!   cannot fail open because a value would not decode.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A transform named in a rule's `transforms:` list.
///
/// The derived order is declaration order; it only serves to make [`Chain`]
/// usable as a map key and carries no meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transform {
    /// `url_decode`: `%XX` → byte, `+` → space. Malformed `%` kept.
    UrlDecode,
    /// `url_decode_uni`: `url_decode` plus IIS `%uXXXX` → UTF-8 (surrogate
    /// pairs joined, lone surrogates → U+FFFD), with full-width forms
    /// `%uFF01`–`%uFF5E` folded to ASCII and `%u3000` to a space.
    UrlDecodeUni,
    /// `utf8_overlong`: overlong UTF-8 (`C0 AF`, `E0 80 AF`, up to the old
    /// 6-byte forms) → the shortest encoding of the same code point.
    Utf8Overlong,
    /// `html_entity_decode`: numeric references (`;` optional) and a common
    /// subset of named ones (case-sensitive as in HTML; `;` optional for
    /// HTML's legacy names such as `&lt`).
    HtmlEntityDecode,
    /// `js_decode`: JavaScript string escapes.
    JsDecode,
    /// `css_decode`: CSS escapes (`\HHHHHH` + one optional space, `\` + char).
    CssDecode,
    /// `base64_decode`: the whole value as base64 (standard or URL-safe,
    /// padding optional); unchanged unless it is valid.
    Base64Decode,
    /// `hex_decode`: the whole value as hex pairs; unchanged unless valid.
    HexDecode,
    /// `lowercase`: ASCII, plus Unicode lowercase for valid UTF-8 sequences.
    Lowercase,
    /// `compress_whitespace`: each whitespace run → one space.
    CompressWhitespace,
    /// `remove_whitespace`: delete all whitespace.
    RemoveWhitespace,
    /// `remove_nulls`: delete NUL bytes.
    RemoveNulls,
    /// `remove_comments`: delete SQL/C comments; keep the content of MySQL
    /// `/*! */` version comments.
    RemoveComments,
    /// `replace_comments`: `/* */` → one space; version-comment markers →
    /// spaces with their content kept.
    ReplaceComments,
    /// `normalize_path`: collapse `//`, resolve `.` and `..` (never above the
    /// root), keep a trailing slash.
    NormalizePath,
    /// `normalize_path_win`: `normalize_path` with `\` as a separator too.
    NormalizePathWin,
    /// `cmdline`: ModSecurity `t:cmdLine` plus `$IFS` and empty-expansion
    /// tricks.
    Cmdline,
    /// `fullwidth_to_ascii`: U+FF01–U+FF5E → ASCII, U+3000 → space.
    FullwidthToAscii,
    /// `trim`: strip leading and trailing whitespace.
    Trim,
}

/// Every YAML name, in [`Transform::ALL`] order, for error messages.
const NAMES: [&str; Transform::ALL.len()] = {
    let mut names = [""; Transform::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Transform::ALL[i].name();
        i += 1;
    }
    names
};

impl Transform {
    /// Every transform, in declaration order.
    pub const ALL: [Transform; 19] = [
        Transform::UrlDecode,
        Transform::UrlDecodeUni,
        Transform::Utf8Overlong,
        Transform::HtmlEntityDecode,
        Transform::JsDecode,
        Transform::CssDecode,
        Transform::Base64Decode,
        Transform::HexDecode,
        Transform::Lowercase,
        Transform::CompressWhitespace,
        Transform::RemoveWhitespace,
        Transform::RemoveNulls,
        Transform::RemoveComments,
        Transform::ReplaceComments,
        Transform::NormalizePath,
        Transform::NormalizePathWin,
        Transform::Cmdline,
        Transform::FullwidthToAscii,
        Transform::Trim,
    ];

    /// The name used in rule packs.
    pub const fn name(self) -> &'static str {
        match self {
            Transform::UrlDecode => "url_decode",
            Transform::UrlDecodeUni => "url_decode_uni",
            Transform::Utf8Overlong => "utf8_overlong",
            Transform::HtmlEntityDecode => "html_entity_decode",
            Transform::JsDecode => "js_decode",
            Transform::CssDecode => "css_decode",
            Transform::Base64Decode => "base64_decode",
            Transform::HexDecode => "hex_decode",
            Transform::Lowercase => "lowercase",
            Transform::CompressWhitespace => "compress_whitespace",
            Transform::RemoveWhitespace => "remove_whitespace",
            Transform::RemoveNulls => "remove_nulls",
            Transform::RemoveComments => "remove_comments",
            Transform::ReplaceComments => "replace_comments",
            Transform::NormalizePath => "normalize_path",
            Transform::NormalizePathWin => "normalize_path_win",
            Transform::Cmdline => "cmdline",
            Transform::FullwidthToAscii => "fullwidth_to_ascii",
            Transform::Trim => "trim",
        }
    }

    /// Parses a rule-pack name (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Transform> {
        Transform::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Applies this transform once; see [`apply`].
    pub fn apply(self, input: &[u8]) -> Cow<'_, [u8]> {
        apply(self, input)
    }

    /// An upper bound on the length of this transform's output for an
    /// input of `len` bytes: most transforms only shrink a value; Unicode
    /// lowercasing (`İ` → `i̇`) and a CSS `\0` (→ U+FFFD) grow it by at
    /// most half.
    pub fn max_output_len(self, len: usize) -> usize {
        match self {
            Transform::Lowercase | Transform::CssDecode => len + len.div_ceil(2),
            _ => len,
        }
    }

    /// Widens `set` to the input bytes an output byte in `set` can come
    /// from: afterwards, an input without a byte of the widened set gives
    /// an output without a byte of the original one. `false` (and `set`
    /// untouched) for transforms that can produce bytes from unrelated
    /// input (decoders, path and command-line normalisation).
    pub fn widen_to_source(self, set: &mut [bool; 256]) -> bool {
        match self {
            // Deletions: every output byte is an input byte.
            Transform::RemoveWhitespace
            | Transform::Trim
            | Transform::RemoveNulls
            | Transform::RemoveComments => true,
            // ASCII letters fold from their capitals, and a non-ASCII
            // character may lower to ASCII (the Kelvin sign to `k`, `İ` to
            // `i` + U+0307) or to other non-ASCII bytes.
            Transform::Lowercase => {
                let mut non_ascii = set[0x80..].iter().any(|&b| b);
                for b in b'a'..=b'z' {
                    if set[usize::from(b)] {
                        set[usize::from(b.to_ascii_uppercase())] = true;
                        non_ascii = true;
                    }
                }
                if non_ascii {
                    set[0x80..].fill(true);
                }
                true
            }
            // A space stands for a whitespace run (ASCII or not).
            Transform::CompressWhitespace => {
                if set[usize::from(b' ')] {
                    for b in [b'\t', b'\n', 0x0B, 0x0C, b'\r'] {
                        set[usize::from(b)] = true;
                    }
                    set[0x80..].fill(true);
                }
                true
            }
            // A space stands for a comment (`/*…*/`, or a version
            // comment's closing `*/`).
            Transform::ReplaceComments => {
                if set[usize::from(b' ')] {
                    set[usize::from(b'/')] = true;
                    set[usize::from(b'*')] = true;
                }
                true
            }
            // `cmdline` deletes bytes, folds ASCII capitals and emits a
            // space for a separator run (` , ;`, ASCII whitespace, `$IFS`).
            Transform::Cmdline => {
                for b in b'a'..=b'z' {
                    if set[usize::from(b)] {
                        set[usize::from(b.to_ascii_uppercase())] = true;
                    }
                }
                if set[usize::from(b' ')] {
                    for b in [b',', b';', b'\t', b'\n', b'\r', 0x0B, 0x0C, b'$'] {
                        set[usize::from(b)] = true;
                    }
                }
                true
            }
            // Decoders: a byte not copied from the input came from an
            // escape, which starts with `%` (`%XX`, `%uXXXX`; `+` is a
            // space), `&` (`&#NN;`, `&name;`) or a backslash.
            Transform::UrlDecode | Transform::UrlDecodeUni => {
                if set[usize::from(b' ')] {
                    set[usize::from(b'+')] = true;
                }
                set[usize::from(b'%')] = true;
                true
            }
            Transform::HtmlEntityDecode => {
                set[usize::from(b'&')] = true;
                true
            }
            Transform::JsDecode | Transform::CssDecode => {
                set[usize::from(b'\\')] = true;
                true
            }
            _ => false,
        }
    }

    /// Whether this transform can change a value with byte classes `c`
    /// (see [`classes`]). `false` is a promise: [`apply`] would return the
    /// value itself, so the engine skips the call. Most clean values
    /// (names, numbers, prose) contain none of a transform's trigger bytes.
    #[inline]
    pub fn may_change(self, c: Classes) -> bool {
        use class::*;
        let triggers = match self {
            Transform::UrlDecode | Transform::UrlDecodeUni => PERCENT_PLUS,
            Transform::Utf8Overlong | Transform::FullwidthToAscii => NON_ASCII,
            Transform::HtmlEntityDecode => AMP,
            Transform::JsDecode | Transform::CssDecode => BACKSLASH,
            // Whole-value decoders: unchanged unless every byte is in the
            // alphabet (and the value is not empty).
            Transform::Base64Decode => return c & (NOT_BASE64 | EMPTY) == 0,
            Transform::HexDecode => return c & (NOT_HEX | EMPTY) == 0,
            Transform::Lowercase => UPPER | NON_ASCII,
            Transform::CompressWhitespace => CTRL_WS | WS_RUN | NON_ASCII,
            Transform::RemoveWhitespace => SPACE | CTRL_WS | NON_ASCII,
            Transform::Trim => EDGE_WS,
            Transform::RemoveNulls => NUL,
            Transform::RemoveComments | Transform::ReplaceComments => COMMENT,
            Transform::NormalizePath => SLASH | DOT,
            Transform::NormalizePathWin => SLASH | DOT | BACKSLASH,
            Transform::Cmdline => CMDLINE | BACKSLASH | CTRL_WS | UPPER | WS_RUN | SPACE_BEFORE,
        };
        c & triggers != 0
    }
}

/// The byte classes present in a value, one bit each (see [`class`]):
/// computed in one pass, they let [`Transform::may_change`] rule out most
/// transforms of a clean value without running them.
pub type Classes = u32;

/// Bits of [`Classes`].
pub mod class {
    /// `%` or `+` (URL decoding).
    pub const PERCENT_PLUS: u32 = 1;
    /// A byte ≥ 0x80 (UTF-8: case, whitespace, full-width, overlong).
    pub const NON_ASCII: u32 = 1 << 1;
    pub const AMP: u32 = 1 << 2;
    pub const BACKSLASH: u32 = 1 << 3;
    pub const UPPER: u32 = 1 << 4;
    pub const SPACE: u32 = 1 << 5;
    /// `\t \n \v \f \r`.
    pub const CTRL_WS: u32 = 1 << 6;
    pub const NUL: u32 = 1 << 7;
    /// A comment marker: `#`, `--`, `//` or `/*`.
    pub const COMMENT: u32 = 1 << 8;
    /// `//` (a path's empty segment).
    pub const SLASH: u32 = 1 << 9;
    /// A dot segment may start: `.` first, or after `/` or `\`.
    pub const DOT: u32 = 1 << 10;
    /// What `cmdline` deletes or rewrites besides case and whitespace:
    /// `" ' ^ , ; $` and backtick.
    pub const CMDLINE: u32 = 1 << 11;
    /// Outside the base64 alphabet (`A-Z a-z 0-9 + / - _ =`).
    pub const NOT_BASE64: u32 = 1 << 12;
    /// Not a hex digit.
    pub const NOT_HEX: u32 = 1 << 13;
    /// Two whitespace bytes in a row.
    pub const WS_RUN: u32 = 1 << 14;
    /// A space right before `/` or `(` (`cmdline` deletes it).
    pub const SPACE_BEFORE: u32 = 1 << 15;
    /// The value is empty.
    pub const EMPTY: u32 = 1 << 16;
    /// The first or the last byte is whitespace or non-ASCII (what `trim`
    /// can remove: ASCII whitespace, or a multi-byte Unicode space).
    pub const EDGE_WS: u32 = 1 << 17;
    /// Not about transforms: a byte of a native detector's pre-filter
    /// (`detect::xss::PREFILTER`, `cmdi`, `path`). Without it the detector
    /// finds nothing, and the engine does not call it.
    pub const XSS_BYTES: u32 = 1 << 18;
    pub const CMDI_BYTES: u32 = 1 << 19;
    pub const PATH_BYTES: u32 = 1 << 20;
    /// The three above.
    pub const DETECTOR_BYTES: u32 = XSS_BYTES | CMDI_BYTES | PATH_BYTES;
    /// Not about transforms either: a byte that is not an ASCII letter,
    /// digit or whitespace (see [`is_plain`](super::is_plain)). A value without
    /// one is not scanned by the engine's databases whose every pattern
    /// needs such a byte (a quote, a bracket, an operator).
    pub const PUNCT: u32 = 1 << 21;
    /// A `PUNCT` byte that is not common in clean values (see
    /// [`is_common_punct`](super::is_common_punct)): a quote, a bracket, an
    /// operator. A value without one is not scanned by the databases whose
    /// every pattern needs such a byte.
    pub const RARE_PUNCT: u32 = 1 << 22;
}

/// The bytes of plain text: ASCII letters, digits and whitespace (see
/// [`class::PUNCT`]).
pub const fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Bytes outside plain text that clean values are full of: the
/// punctuation of prose, numbers, dates, identifiers, e-mail addresses and
/// URLs (`, . - _ : / @`), and non-ASCII text. The rest (quotes, brackets,
/// operators, `; | & $ ! ?` …) are rarer, and are what most injection
/// patterns need (see [`class::RARE_PUNCT`]).
pub const fn is_common_punct(b: u8) -> bool {
    b >= 0x80 || matches!(b, b',' | b'.' | b'-' | b'_' | b':' | b'/' | b'@')
}

/// How rare a byte is in clean values: 0 plain text ([`is_plain`]), 1
/// common punctuation ([`is_common_punct`]), 2 the rest (quotes, brackets,
/// operators). The engine gates databases on it, and its guards prefer
/// needed bytes of the rarer levels.
pub const fn rarity(b: u8) -> u8 {
    if is_plain(b) {
        0
    } else if is_common_punct(b) {
        1
    } else {
        2
    }
}

/// The rarity of a byte set: that of its commonest byte (a value of no
/// higher level holds none of the set); 0 for an empty set.
pub fn set_rarity(set: &[bool; 256]) -> u8 {
    (0..=255u8)
        .filter(|&b| set[usize::from(b)])
        .map(rarity)
        .min()
        .unwrap_or(0)
}

const CLASS_TABLE: [u32; 256] = {
    use class::*;
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c: u32 = 0;
        if b >= 0x80 {
            c |= NON_ASCII;
        }
        if b.is_ascii_uppercase() {
            c |= UPPER;
        }
        if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=')) {
            c |= NOT_BASE64;
        }
        if !b.is_ascii_hexdigit() {
            c |= NOT_HEX;
        }
        c |= match b {
            b'%' | b'+' => PERCENT_PLUS,
            b'&' => AMP,
            b'\\' => BACKSLASH,
            b' ' => SPACE,
            b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => CTRL_WS,
            0 => NUL,
            b'/' => COMMENT | SLASH,
            b'-' | b'#' | b'*' => COMMENT,
            b'.' => DOT,
            b'"' | b'\'' | b'^' | b',' | b';' | b'$' | b'`' => CMDLINE,
            _ => 0,
        };
        if !is_plain(b) {
            c |= PUNCT;
            if !is_common_punct(b) {
                c |= RARE_PUNCT;
            }
        }
        if crate::rules::detect::xss::PREFILTER[i] {
            c |= XSS_BYTES;
        }
        if crate::rules::detect::cmdi::PREFILTER[i] {
            c |= CMDI_BYTES;
        }
        if crate::rules::detect::path::PREFILTER[i] {
            c |= PATH_BYTES;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The [`Classes`] of `v`, in one pass.
pub fn classes(v: &[u8]) -> Classes {
    use class::*;
    if v.is_empty() {
        return EMPTY | NOT_BASE64 | NOT_HEX;
    }
    let mut c: u32 = 0;
    let mut prev: u32 = 0;
    for &b in v {
        let k = CLASS_TABLE[usize::from(b)];
        if prev & (SPACE | CTRL_WS) != 0 {
            if k & (SPACE | CTRL_WS) != 0 {
                c |= WS_RUN;
            }
            if prev & SPACE != 0 && (b == b'/' || b == b'(') {
                c |= SPACE_BEFORE;
            }
        }
        c |= k;
        prev = k;
    }
    let edge = |b: u8| CLASS_TABLE[usize::from(b)] & (SPACE | CTRL_WS | NON_ASCII) != 0;
    if edge(v[0]) || edge(v[v.len() - 1]) {
        c |= EDGE_WS;
    }
    if c & MARKS != 0 {
        c = (c & !MARKS) | marks(v);
    }
    c
}

/// The table's bits for `/ - * # .`, common in clean values (paths, dates,
/// ids), and refined by [`marks`].
const MARKS: u32 = class::COMMENT | class::SLASH | class::DOT;

/// What of [`MARKS`] can change a value: a comment (`#`, `--`, `//`, `/*`),
/// an empty path segment (`//`), a dot segment (`.` first, or after `/` or
/// `\`).
fn marks(v: &[u8]) -> Classes {
    use class::*;
    let mut m = if v.first() == Some(&b'.') { DOT } else { 0 };
    let mut prev = 0u8;
    for &b in v {
        m |= match (prev, b) {
            (_, b'#') | (b'-', b'-') | (b'/', b'*') => COMMENT,
            (b'/', b'/') => COMMENT | SLASH,
            (b'/' | b'\\', b'.') => DOT,
            _ => 0,
        };
        prev = b;
    }
    m
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A transform name that is not one of [`Transform::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transform `{name}`; expected one of: {known}", known = NAMES.join(", "))]
pub struct UnknownTransform {
    /// The name as written.
    pub name: String,
}

impl FromStr for Transform {
    type Err = UnknownTransform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transform::from_name(s).ok_or_else(|| UnknownTransform { name: s.to_owned() })
    }
}

// Hand-written rather than derived so `from_name` stays the one list of
// names, and an unknown name reports every valid one.
impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl Visitor<'_> for NameVisitor {
            type Value = Transform;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a transform name")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Transform, E> {
                Transform::from_name(v).ok_or_else(|| E::unknown_variant(v, &NAMES))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

impl Serialize for Transform {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// An ordered list of transforms, applied left to right.
///
/// Rules with equal chains see the same transformed value, so the engine can
/// group them by [`Chain::key`] and transform each target once per request.
/// The chain is kept exactly as written: order matters and a repeated
/// transform is a deliberate second decoding pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Chain(Vec<Transform>);

impl Chain {
    /// A chain applying `transforms` in order.
    pub fn new(transforms: Vec<Transform>) -> Chain {
        Chain(transforms)
    }

    /// Parses rule-pack names; the first unknown name is the error.
    pub fn from_names<'n>(
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<Chain, UnknownTransform> {
        names
            .into_iter()
            .map(Transform::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Chain)
    }

    /// The transforms in application order.
    pub fn transforms(&self) -> &[Transform] {
        &self.0
    }

    /// A grouping/caching key: equal keys mean equal outputs for any input.
    /// It is the transform list itself (cheap to hash, stable for the life
    /// of a compiled rule set).
    pub fn key(&self) -> &[Transform] {
        &self.0
    }

    /// True when the chain applies no transform (the value is used raw).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of transforms in the chain.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Applies every transform in order, allocating only when one changes
    /// the value. Borrowed output is (a sub-slice of) `input`.
    pub fn apply<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        let mut value = Cow::Borrowed(input);
        for &t in &self.0 {
            value = match value {
                Cow::Borrowed(s) => apply(t, s),
                Cow::Owned(v) => Cow::Owned(apply_owned(t, v)),
            };
        }
        value
    }
}

/// One step on an already-owned value: keeps the buffer when nothing
/// changed, copies only for a sub-slice (`trim`).
fn apply_owned(t: Transform, v: Vec<u8>) -> Vec<u8> {
    let next = match apply(t, &v) {
        Cow::Borrowed(s) if s.len() == v.len() => None,
        Cow::Borrowed(s) => Some(s.to_vec()),
        Cow::Owned(o) => Some(o),
    };
    next.unwrap_or(v)
}

impl From<Vec<Transform>> for Chain {
    fn from(transforms: Vec<Transform>) -> Chain {
        Chain(transforms)
    }
}

impl FromIterator<Transform> for Chain {
    fn from_iter<I: IntoIterator<Item = Transform>>(iter: I) -> Chain {
        Chain(iter.into_iter().collect())
    }
}

impl fmt::Display for Chain {
    /// The YAML form, `[url_decode, lowercase]`, for `rules explain` and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(t.name())?;
        }
        f.write_str("]")
    }
}

/// Applies `t` once to `input`.
///
/// Returns [`Cow::Borrowed`] (no allocation) when the transform makes no
/// edit; for `trim` the borrowed slice may be a sub-slice of `input`.
pub fn apply(t: Transform, input: &[u8]) -> Cow<'_, [u8]> {
    match t {
        Transform::UrlDecode => url_decode(input, false),
        Transform::UrlDecodeUni => url_decode(input, true),
        Transform::Utf8Overlong => utf8_overlong(input),
        Transform::HtmlEntityDecode => html_entity_decode(input),
        Transform::JsDecode => js_decode(input),
        Transform::CssDecode => css_decode(input),
        Transform::Base64Decode => base64_decode(input),
        Transform::HexDecode => hex_decode(input),
        Transform::Lowercase => lowercase(input),
        Transform::CompressWhitespace => compress_whitespace(input),
        Transform::RemoveWhitespace => remove_whitespace(input),
        Transform::RemoveNulls => remove_nulls(input),
        Transform::RemoveComments => strip_comments(input, false),
        Transform::ReplaceComments => strip_comments(input, true),
        Transform::NormalizePath => normalize_path(input, false),
        Transform::NormalizePathWin => normalize_path(input, true),
        Transform::Cmdline => cmdline(input),
        Transform::FullwidthToAscii => fullwidth_to_ascii(input),
        Transform::Trim => trim(input),
    }
}

// ---------------------------------------------------------------------------
// Shared machinery
// ---------------------------------------------------------------------------

/// Builds the output lazily: nothing is allocated until the first edit, and
/// unchanged runs between edits are copied in one `extend_from_slice`.
///
/// Edits must be made left to right and must not overlap; `copied` is the
/// input offset up to which the output is complete.
struct Rewriter<'a> {
    input: &'a [u8],
    out: Vec<u8>,
    copied: usize,
    changed: bool,
}

impl<'a> Rewriter<'a> {
    fn new(input: &'a [u8]) -> Self {
        Rewriter {
            input,
            out: Vec::new(),
            copied: 0,
            changed: false,
        }
    }

    /// Replaces `input[start..end]` with `with`.
    fn replace(&mut self, start: usize, end: usize, with: &[u8]) {
        if !self.changed {
            self.changed = true;
            // Decoders shrink, so the input length is enough for all but the
            // 1.5× growers, which then reallocate at most a couple of times.
            self.out.reserve(self.input.len());
        }
        self.out.extend_from_slice(&self.input[self.copied..start]);
        self.out.extend_from_slice(with);
        self.copied = end;
    }

    fn replace_char(&mut self, start: usize, end: usize, c: char) {
        let mut buf = [0u8; 4];
        self.replace(start, end, c.encode_utf8(&mut buf).as_bytes());
    }

    fn delete(&mut self, start: usize, end: usize) {
        self.replace(start, end, &[]);
    }

    fn finish(mut self) -> Cow<'a, [u8]> {
        if !self.changed {
            return Cow::Borrowed(self.input);
        }
        self.out.extend_from_slice(&self.input[self.copied..]);
        Cow::Owned(self.out)
    }
}

/// The first index at or after `from` holding `b` (vectorised).
#[inline]
fn find_byte(s: &[u8], from: usize, b: u8) -> Option<usize> {
    memchr::memchr(b, s.get(from..)?).map(|o| from + o)
}

/// The first index at or after `from` holding `a` or `b` (vectorised).
#[inline]
fn find_byte2(s: &[u8], from: usize, a: u8, b: u8) -> Option<usize> {
    memchr::memchr2(a, b, s.get(from..)?).map(|o| from + o)
}

/// The first index at or after `from` whose byte satisfies `pred`.
#[inline]
fn find(s: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> Option<usize> {
    s.get(from..)?
        .iter()
        .position(|&b| pred(b))
        .map(|o| from + o)
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Two hex digits at `s[i..i + 2]` as a byte.
#[inline]
fn hex_pair(s: &[u8], i: usize) -> Option<u8> {
    let hi = hex_val(*s.get(i)?)?;
    let lo = hex_val(*s.get(i + 1)?)?;
    Some(hi << 4 | lo)
}

/// Four hex digits at `s[i..i + 4]` as a UTF-16 code unit.
#[inline]
fn hex4(s: &[u8], i: usize) -> Option<u32> {
    let hi = hex_pair(s, i)?;
    let lo = hex_pair(s, i + 2)?;
    Some(u32::from(hi) << 8 | u32::from(lo))
}

/// Code points that cannot be emitted as UTF-8 (surrogates, beyond
/// U+10FFFF) become U+FFFD, so decoders never produce invalid UTF-8 from a
/// numeric escape.
#[inline]
fn scalar_or_replacement(cp: u32) -> char {
    char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER)
}

#[inline]
fn is_high_surrogate(cu: u32) -> bool {
    (0xD800..0xDC00).contains(&cu)
}

#[inline]
fn is_low_surrogate(cu: u32) -> bool {
    (0xDC00..0xE000).contains(&cu)
}

#[inline]
fn join_surrogates(hi: u32, lo: u32) -> u32 {
    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
}

/// IIS "best fit" for full-width forms: the server maps them to ASCII, so a
/// WAF must too or `%uFF1Cscript%uFF1E` walks past `<script>` rules.
#[inline]
fn fold_fullwidth(cp: u32) -> u32 {
    match cp {
        0xFF01..=0xFF5E => cp - 0xFEE0,
        0x3000 => 0x20,
        _ => cp,
    }
}

/// Length of the whitespace character starting at `s[i]`, or 0.
///
/// The set is exactly Rust's `char::is_whitespace` (ASCII space, `\t \n \v
/// \f \r`, U+0085, U+00A0 NBSP, U+1680, U+2000–U+200A, U+2028, U+2029,
/// U+202F, U+205F, U+3000), matched on UTF-8 byte sequences so invalid
/// UTF-8 around them does not matter. A lone Latin-1 `A0` byte is not
/// whitespace: it is also the second byte of valid characters such as `à`.
#[inline]
fn ws_len(s: &[u8], i: usize) -> usize {
    match s[i] {
        b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => 1,
        0xC2 => match s.get(i + 1) {
            Some(0x85 | 0xA0) => 2,
            _ => 0,
        },
        0xE1 => match s.get(i + 1..i + 3) {
            Some([0x9A, 0x80]) => 3,
            _ => 0,
        },
        0xE2 => match s.get(i + 1..i + 3) {
            Some([0x80, 0x80..=0x8A | 0xA8 | 0xA9 | 0xAF] | [0x81, 0x9F]) => 3,
            _ => 0,
        },
        0xE3 => match s.get(i + 1..i + 3) {
            Some([0x80, 0x80]) => 3,
            _ => 0,
        },
        _ => 0,
    }
}

/// Length of the whitespace character ending at `s[..end]`, or 0.
fn ws_len_before(s: &[u8], end: usize) -> usize {
    for len in 1..=3 {
        if end >= len && ws_len(s, end - len) == len {
            return len;
        }
    }
    0
}

/// The first byte that may start a whitespace character.
#[inline]
fn may_start_ws(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | 0xC2 | 0xE1 | 0xE2 | 0xE3
    )
}

// ---------------------------------------------------------------------------
// URL and UTF-8 decoding
// ---------------------------------------------------------------------------

/// `%XX` → byte and `+` → space; with `uni`, also `%uXXXX` (see
/// [`Transform::UrlDecodeUni`]). Anything malformed is copied as is.
fn url_decode(input: &[u8], uni: bool) -> Cow<'_, [u8]> {
    if memchr::memchr2(b'%', b'+', input).is_none() {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    if url_decode_into(input, uni, &mut out) || memchr::memchr(b'+', input).is_some() {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(input)
    }
}

/// [`url_decode`] appending to `out` (the form parser decodes every name
/// and value into one buffer); whether a `%` escape was decoded.
pub(crate) fn url_decode_into(input: &[u8], uni: bool, out: &mut Vec<u8>) -> bool {
    out.reserve(input.len());
    let mut changed = false;
    let mut i = 0;
    loop {
        // The run up to the next `%`, with `+` → space in one vectorised
        // pass (a form body alternates short words and `+`).
        let rest = &input[i..];
        let run = memchr::memchr(b'%', rest).unwrap_or(rest.len());
        out.extend(
            rest[..run]
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b }),
        );
        i += run;
        if i >= input.len() {
            return changed;
        }
        if uni
            && matches!(input.get(i + 1), Some(b'u' | b'U'))
            && let Some((c, end)) = percent_u(input, i)
        {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            changed = true;
            i = end;
            continue;
        }
        match hex_pair(input, i + 1) {
            Some(d) => {
                out.push(d);
                changed = true;
                i += 3;
            }
            None => {
                out.push(b'%');
                i += 1;
            }
        }
    }
}

/// Decodes `%uXXXX` at `p` (and a following `%uXXXX` low surrogate),
/// returning the character and the end offset.
fn percent_u(s: &[u8], p: usize) -> Option<(char, usize)> {
    let cu = hex4(s, p + 2)?;
    let mut end = p + 6;
    let mut cp = cu;
    if is_high_surrogate(cu)
        && matches!(s.get(end..end + 2), Some([b'%', b'u' | b'U']))
        && let Some(lo) = hex4(s, end + 2).filter(|&lo| is_low_surrogate(lo))
    {
        cp = join_surrogates(cu, lo);
        end += 6;
    }
    Some((scalar_or_replacement(fold_fullwidth(cp)), end))
}

/// Rewrites overlong UTF-8 to the shortest form: servers with lax decoders
/// read `C0 AF` as `/`, so `..\xC0\xAF` is a traversal.
fn utf8_overlong(input: &[u8]) -> Cow<'_, [u8]> {
    let mut rw = Rewriter::new(input);
    let mut i = 0;
    while let Some(p) = find(input, i, |b| {
        matches!(b, 0xC0 | 0xC1 | 0xE0 | 0xF0 | 0xF8 | 0xFC)
    }) {
        match overlong_at(input, p) {
            Some((c, len)) => {
                rw.replace_char(p, p + len, c);
                i = p + len;
            }
            None => i = p + 1,
        }
    }
    rw.finish()
}

/// An overlong sequence at `p`: the code point and the sequence length.
/// Only leads that can start an overlong form are candidates (`C0`, `C1`,
/// `E0`, `F0`, and the obsolete 5- and 6-byte leads `F8`, `FC`); the result
/// must be a Unicode scalar value, else the bytes are left alone.
fn overlong_at(s: &[u8], p: usize) -> Option<(char, usize)> {
    let lead = s[p];
    // (continuation bytes, smallest value that needs this length, payload
    // bits of the lead byte)
    let (extra, min, mask) = match lead {
        0xC0 | 0xC1 => (1, 0x80, 0x1F),
        0xE0 => (2, 0x800, 0x0F),
        0xF0 => (3, 0x1_0000, 0x07),
        0xF8 => (4, 0x20_0000, 0x03),
        0xFC => (5, 0x400_0000, 0x01),
        _ => return None,
    };
    let mut v = u32::from(lead & mask);
    for &b in s.get(p + 1..p + 1 + extra)? {
        if b & 0xC0 != 0x80 {
            return None;
        }
        v = v << 6 | u32::from(b & 0x3F);
    }
    if v >= min {
        return None;
    }
    Some((char::from_u32(v)?, 1 + extra))
}

// ---------------------------------------------------------------------------
// HTML entities
// ---------------------------------------------------------------------------

/// Named references: (name, value, legacy). Sorted by name bytes for binary
/// search (a unit test checks). `legacy` names are the ones HTML also
/// decodes without a trailing `;`. Names are case-sensitive as in HTML
/// (`&LT;` is `<` but `&Lt;` is U+226A, which is not listed).
///
/// Every value is at most as long as `&` + name, so decoding never grows.
static ENTITIES: &[(&[u8], &str, bool)] = &[
    (b"AMP", "&", true),
    (b"COPY", "\u{a9}", true),
    (b"GT", ">", true),
    (b"Hat", "^", false),
    (b"LT", "<", true),
    (b"NewLine", "\n", false),
    (b"NonBreakingSpace", "\u{a0}", false),
    (b"QUOT", "\"", true),
    (b"REG", "\u{ae}", true),
    (b"Tab", "\t", false),
    (b"UnderBar", "_", false),
    (b"VerticalLine", "|", false),
    (b"acute", "\u{b4}", true),
    (b"amp", "&", true),
    (b"apos", "'", false),
    (b"ast", "*", false),
    (b"brvbar", "\u{a6}", true),
    (b"bsol", "\\", false),
    (b"bull", "\u{2022}", false),
    (b"cent", "\u{a2}", true),
    (b"colon", ":", false),
    (b"comma", ",", false),
    (b"commat", "@", false),
    (b"copy", "\u{a9}", true),
    (b"deg", "\u{b0}", true),
    (b"divide", "\u{f7}", true),
    (b"dollar", "$", false),
    (b"emsp", "\u{2003}", false),
    (b"ensp", "\u{2002}", false),
    (b"equals", "=", false),
    (b"euro", "\u{20ac}", false),
    (b"excl", "!", false),
    (b"frac12", "\u{bd}", true),
    (b"frac14", "\u{bc}", true),
    (b"frac34", "\u{be}", true),
    (b"grave", "`", false),
    (b"gt", ">", true),
    (b"hellip", "\u{2026}", false),
    (b"hyphen", "\u{2010}", false),
    (b"iexcl", "\u{a1}", true),
    (b"iquest", "\u{bf}", true),
    (b"laquo", "\u{ab}", true),
    (b"lbrace", "{", false),
    (b"lbrack", "[", false),
    (b"lcub", "{", false),
    (b"ldquo", "\u{201c}", false),
    (b"lowbar", "_", false),
    (b"lpar", "(", false),
    (b"lrm", "\u{200e}", false),
    (b"lsqb", "[", false),
    (b"lsquo", "\u{2018}", false),
    (b"lt", "<", true),
    (b"mdash", "\u{2014}", false),
    (b"micro", "\u{b5}", true),
    (b"midast", "*", false),
    (b"middot", "\u{b7}", true),
    (b"nbsp", "\u{a0}", true),
    (b"ndash", "\u{2013}", false),
    (b"not", "\u{ac}", true),
    (b"num", "#", false),
    (b"para", "\u{b6}", true),
    (b"percnt", "%", false),
    (b"period", ".", false),
    (b"plus", "+", false),
    (b"plusmn", "\u{b1}", true),
    (b"pound", "\u{a3}", true),
    (b"quest", "?", false),
    (b"quot", "\"", true),
    (b"raquo", "\u{bb}", true),
    (b"rbrace", "}", false),
    (b"rbrack", "]", false),
    (b"rcub", "}", false),
    (b"rdquo", "\u{201d}", false),
    (b"reg", "\u{ae}", true),
    (b"rlm", "\u{200f}", false),
    (b"rpar", ")", false),
    (b"rsqb", "]", false),
    (b"rsquo", "\u{2019}", false),
    (b"sect", "\u{a7}", true),
    (b"semi", ";", false),
    (b"shy", "\u{ad}", true),
    (b"sol", "/", false),
    (b"sup1", "\u{b9}", true),
    (b"sup2", "\u{b2}", true),
    (b"sup3", "\u{b3}", true),
    (b"thinsp", "\u{2009}", false),
    (b"times", "\u{d7}", true),
    (b"trade", "\u{2122}", false),
    (b"uml", "\u{a8}", true),
    (b"verbar", "|", false),
    (b"vert", "|", false),
    (b"yen", "\u{a5}", true),
    (b"zwj", "\u{200d}", false),
    (b"zwnj", "\u{200c}", false),
];

/// Longest name in [`ENTITIES`]; a longer alphanumeric run cannot match, so
/// the scan after `&` is bounded.
const MAX_ENTITY_NAME: usize = 16;

fn lookup_entity(name: &[u8]) -> Option<(&'static str, bool)> {
    ENTITIES
        .binary_search_by(|(n, _, _)| n.cmp(&name))
        .ok()
        .map(|i| (ENTITIES[i].1, ENTITIES[i].2))
}

/// HTML character references as a browser decodes them in an attribute
/// value, where decoding matters (`href="javascript&colon;…"`).
///
/// * `&#DDD` / `&#xHHH` / `&#XHHH`, any number of leading zeros, `;`
///   optional. 0, surrogates and values past U+10FFFF become U+FFFD;
///   0x80–0x9F map through Windows-1252 as HTML5 specifies.
/// * `&name;` for the names in [`ENTITIES`]; legacy names also without
///   `;` unless followed by an alphanumeric or `=` (the attribute rule, so
///   `a=1&copy=2` and `AT&T` survive).
fn html_entity_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let mut rw = Rewriter::new(input);
    let mut i = 0;
    while let Some(p) = find_byte(input, i, b'&') {
        match entity_at(input, p) {
            Some((c, end)) => {
                match c {
                    EntityValue::Char(c) => rw.replace_char(p, end, c),
                    EntityValue::Str(s) => rw.replace(p, end, s.as_bytes()),
                }
                i = end;
            }
            None => i = p + 1,
        }
    }
    rw.finish()
}

enum EntityValue {
    Char(char),
    Str(&'static str),
}

/// A reference starting with the `&` at `p`: its value and end offset.
fn entity_at(s: &[u8], p: usize) -> Option<(EntityValue, usize)> {
    if s.get(p + 1) == Some(&b'#') {
        let hex = matches!(s.get(p + 2), Some(b'x' | b'X'));
        let start = if hex { p + 3 } else { p + 2 };
        let (radix, digit): (u32, fn(u8) -> Option<u8>) = if hex {
            (16, hex_val)
        } else {
            (10, |b| b.is_ascii_digit().then(|| b - b'0'))
        };
        let mut j = start;
        // Saturate just past the Unicode range: the digit run is consumed
        // whatever its length, so `&#99999999999;` is one U+FFFD.
        let mut v: u32 = 0;
        while let Some(d) = s.get(j).copied().and_then(digit) {
            v = (v * radix + u32::from(d)).min(0x11_0000);
            j += 1;
        }
        if j == start {
            return None;
        }
        if s.get(j) == Some(&b';') {
            j += 1;
        }
        return Some((EntityValue::Char(numeric_reference(v)), j));
    }
    let start = p + 1;
    let len = s[start..]
        .iter()
        .take(MAX_ENTITY_NAME + 1)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if len == 0 || len > MAX_ENTITY_NAME {
        return None;
    }
    let end = start + len;
    // `a=1&b=2`: a name followed by `=` is never decoded; say so before
    // looking it up (every field of a form body has one).
    if s.get(end) == Some(&b'=') {
        return None;
    }
    let (value, legacy) = lookup_entity(&s[start..end])?;
    match s.get(end) {
        Some(b';') => Some((EntityValue::Str(value), end + 1)),
        Some(b'=') => None,
        // The run stopped at a non-alphanumeric, so only `=` is left to
        // exclude from the attribute rule.
        _ if legacy => Some((EntityValue::Str(value), end)),
        _ => None,
    }
}

/// HTML5 numeric reference → character.
fn numeric_reference(v: u32) -> char {
    const WINDOWS_1252: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match v {
        0 => char::REPLACEMENT_CHARACTER,
        0x80..=0x9F => scalar_or_replacement(u32::from(WINDOWS_1252[(v - 0x80) as usize])),
        _ => scalar_or_replacement(v),
    }
}

// ---------------------------------------------------------------------------
// JavaScript and CSS escapes
// ---------------------------------------------------------------------------

/// JavaScript string-literal escapes: `\xHH`, `\uHHHH` (surrogate pairs
/// joined, lone surrogates → U+FFFD), `\u{H…}` (≤ U+10FFFF), legacy octal
/// `\0`–`\377`, `\n \t \r \b \f \v`, line continuations (backslash before
/// `\n`, `\r\n`, `\r`, U+2028, U+2029) removed. Any other escape, including a
/// malformed `\x`/`\u`, drops the backslash and keeps the next character, as
/// engines do for identity escapes. A trailing lone `\` is kept.
fn js_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let mut rw = Rewriter::new(input);
    let mut i = 0;
    while let Some(p) = find_byte(input, i, b'\\') {
        let Some(&e) = input.get(p + 1) else { break };
        let decoded: Option<(Option<char>, usize)> = match e {
            b'n' => Some((Some('\n'), p + 2)),
            b't' => Some((Some('\t'), p + 2)),
            b'r' => Some((Some('\r'), p + 2)),
            b'b' => Some((Some('\u{8}'), p + 2)),
            b'f' => Some((Some('\u{c}'), p + 2)),
            b'v' => Some((Some('\u{b}'), p + 2)),
            b'x' => hex_pair(input, p + 2).map(|b| (Some(char::from(b)), p + 4)),
            b'u' => js_unicode(input, p).map(|(c, end)| (Some(c), end)),
            b'0'..=b'7' => {
                // Legacy octal: up to three digits while the value stays
                // within \377, so `\400` is `\40` then `0`.
                let mut j = p + 1;
                let mut v: u8 = 0;
                while j < p + 4 {
                    match input.get(j) {
                        Some(&d @ b'0'..=b'7') if v <= 0o37 => {
                            v = v * 8 + (d - b'0');
                            j += 1;
                        }
                        _ => break,
                    }
                }
                Some((Some(char::from(v)), j))
            }
            // Line continuations decode to nothing.
            b'\n' => Some((None, p + 2)),
            b'\r' if input.get(p + 2) == Some(&b'\n') => Some((None, p + 3)),
            b'\r' => Some((None, p + 2)),
            0xE2 if matches!(input.get(p + 2..p + 4), Some([0x80, 0xA8 | 0xA9])) => {
                Some((None, p + 4))
            }
            _ => None,
        };
        match decoded {
            Some((Some(c), end)) => {
                rw.replace_char(p, end, c);
                i = end;
            }
            Some((None, end)) => {
                rw.delete(p, end);
                i = end;
            }
            None => {
                // Identity escape: drop the backslash, copy the next byte
                // verbatim (so `\\` is one backslash, not a new escape).
                rw.delete(p, p + 1);
                i = p + 2;
            }
        }
    }
    rw.finish()
}

/// `\uHHHH` (with a following `\uHHHH` low surrogate) or `\u{H…}` at `p`.
fn js_unicode(s: &[u8], p: usize) -> Option<(char, usize)> {
    if s.get(p + 2) == Some(&b'{') {
        let start = p + 3;
        let mut j = start;
        let mut v: u32 = 0;
        while let Some(d) = s.get(j).copied().and_then(hex_val) {
            // Leading zeros are legal in any number; saturating keeps the
            // scan linear and rejects anything past U+10FFFF below.
            v = (v * 16 + u32::from(d)).min(0x11_0000);
            j += 1;
        }
        if j == start || s.get(j) != Some(&b'}') || v > 0x10_FFFF {
            return None;
        }
        return Some((scalar_or_replacement(v), j + 1));
    }
    let cu = hex4(s, p + 2)?;
    let end = p + 6;
    if is_high_surrogate(cu)
        && s.get(end..end + 2) == Some(b"\\u")
        && let Some(lo) = hex4(s, end + 2).filter(|&lo| is_low_surrogate(lo))
    {
        return Some((scalar_or_replacement(join_surrogates(cu, lo)), end + 6));
    }
    Some((scalar_or_replacement(cu), end))
}

/// CSS escapes (CSS Syntax §4.3.7): `\` + 1–6 hex digits + one optional
/// whitespace (`\r\n` counts as one) → the code point (0, surrogates and
/// values past U+10FFFF → U+FFFD); `\` + newline removed; `\` + any other
/// character → that character; a trailing `\` is dropped.
fn css_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let mut rw = Rewriter::new(input);
    let mut i = 0;
    while let Some(p) = find_byte(input, i, b'\\') {
        let Some(&e) = input.get(p + 1) else {
            rw.delete(p, p + 1);
            break;
        };
        if hex_val(e).is_some() {
            let start = p + 1;
            let mut j = start;
            let mut v: u32 = 0;
            while j < start + 6 {
                match input.get(j).copied().and_then(hex_val) {
                    Some(d) => {
                        v = v * 16 + u32::from(d);
                        j += 1;
                    }
                    None => break,
                }
            }
            match input.get(j) {
                Some(b'\r') if input.get(j + 1) == Some(&b'\n') => j += 2,
                Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0C) => j += 1,
                _ => {}
            }
            let c = if v == 0 {
                char::REPLACEMENT_CHARACTER
            } else {
                scalar_or_replacement(v)
            };
            rw.replace_char(p, j, c);
            i = j;
            continue;
        }
        let end = match e {
            b'\r' if input.get(p + 2) == Some(&b'\n') => p + 3,
            b'\n' | b'\r' | 0x0C => p + 2,
            // Drop only the backslash; the escaped byte is copied verbatim.
            _ => p + 1,
        };
        rw.delete(p, end);
        i = end.max(p + 2);
    }
    rw.finish()
}

// ---------------------------------------------------------------------------
// Whole-value decoders
// ---------------------------------------------------------------------------

/// Base64 alphabet → 6-bit value, both the standard (`+/`) and URL-safe
/// (`-_`) alphabets, 0xFF for anything else.
const BASE64: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
};

/// The 6-bit value of a base64 character, standard or URL-safe alphabet.
pub(crate) fn base64_sextet(c: u8) -> Option<u8> {
    let v = BASE64[usize::from(c)];
    (v != 0xFF).then_some(v)
}

/// The whole value as base64. Padding is optional, but if present it must
/// make the length a multiple of 4; whitespace is not skipped (that would
/// make ordinary prose decode more often). Invalid input is returned as is,
/// so a rule sees the original rather than nothing.
fn base64_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let pad = input.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &input[..input.len() - pad];
    let valid_shape = !body.is_empty()
        && body.len() % 4 != 1
        && (pad == 0 || (pad <= 2 && input.len().is_multiple_of(4)));
    if !valid_shape {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in body {
        let v = BASE64[usize::from(b)];
        if v == 0xFF {
            return Cow::Borrowed(input);
        }
        acc = (acc << 6 | u32::from(v)) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits (fewer than 8) are padding bits; being lenient about
    // non-zero ones mirrors most decoders and costs nothing.
    Cow::Owned(out)
}

/// The whole value as hex pairs (either case, no `0x` prefix, no
/// separators); anything else is returned as is.
fn hex_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if input.is_empty() || !input.len().is_multiple_of(2) {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len() / 2);
    for pair in input.chunks_exact(2) {
        match hex_pair(pair, 0) {
            Some(b) => out.push(b),
            None => return Cow::Borrowed(input),
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------
// Case, whitespace, NULs, full-width
// ---------------------------------------------------------------------------

/// ASCII lowercase everywhere; Unicode lowercase (`char::to_lowercase`,
/// without the context-dependent final-sigma rule) inside valid UTF-8
/// sequences; invalid bytes are copied untouched.
fn lowercase(input: &[u8]) -> Cow<'_, [u8]> {
    if input.is_ascii() {
        let Some(first) = input.iter().position(u8::is_ascii_uppercase) else {
            return Cow::Borrowed(input);
        };
        let mut out = input.to_vec();
        out[first..].make_ascii_lowercase();
        return Cow::Owned(out);
    }
    let mut rw = Rewriter::new(input);
    let mut off = 0;
    for chunk in input.utf8_chunks() {
        let valid = chunk.valid();
        for (ci, c) in valid.char_indices() {
            let at = off + ci;
            if c.is_ascii() {
                if c.is_ascii_uppercase() {
                    rw.replace(at, at + 1, &[c.to_ascii_lowercase() as u8]);
                }
                continue;
            }
            let lower = c.to_lowercase();
            if lower.len() == 1 && lower.clone().next() == Some(c) {
                continue;
            }
            // At most three chars (U+0130 → "i\u{307}"), four bytes each.
            let mut buf = [0u8; 12];
            let mut n = 0;
            for l in lower {
                n += l.encode_utf8(&mut buf[n..]).len();
            }
            rw.replace(at, at + c.len_utf8(), &buf[..n]);
        }
        off += valid.len() + chunk.invalid().len();
    }
    rw.finish()
}

/// Each run of whitespace (see [`ws_len`]) → one ASCII space. A run that is
/// already a single space is not an edit. Ends are not trimmed.
fn compress_whitespace(input: &[u8]) -> Cow<'_, [u8]> {
    let mut rw = Rewriter::new(input);
    let mut i = 0;
    while let Some(p) = find(input, i, may_start_ws) {
        let mut q = p;
        loop {
            let w = if q < input.len() { ws_len(input, q) } else { 0 };
            if w == 0 {
                break;
            }
            q += w;
        }
        if q == p {
            i = p + 1;
            continue;
        }
        if !(q == p + 1 && input[p] == b' ') {
            rw.replace(p, q, b" ");
        }
        i = q;
    }
    rw.finish()
}

/// Deletes every whitespace character (see [`ws_len`]).
fn remove_whitespace(input: &[u8]) -> Cow<'_, [u8]> {
    // ASCII (most values): one filtering pass, not a copy call per word.
    if input.is_ascii() {
        let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
        let Some(first) = input.iter().position(ws) else {
            return Cow::Borrowed(input);
        };
        let mut out = Vec::with_capacity(input.len() - 1);
        out.extend_from_slice(&input[..first]);
        out.extend(input[first..].iter().filter(|b| !ws(b)));
        return Cow::Owned(out);
    }
    let mut rw = Rewriter::new(input);
    let mut i = 0;
    while let Some(p) = find(input, i, may_start_ws) {
        let w = ws_len(input, p);
        if w == 0 {
            i = p + 1;
            continue;
        }
        rw.delete(p, p + w);
        i = p + w;
    }
    rw.finish()
}

/// Deletes NUL bytes (a `%00` that survived decoding can split a keyword).
fn remove_nulls(input: &[u8]) -> Cow<'_, [u8]> {
    let mut rw = Rewriter::new(input);
    let mut i = 0;
    while let Some(p) = find_byte(input, i, 0) {
        let q = find(input, p, |b| b != 0).unwrap_or(input.len());
        rw.delete(p, q);
        i = q;
    }
    rw.finish()
}

/// Strips leading and trailing whitespace (see [`ws_len`]) by borrowing a
/// sub-slice: never allocates.
fn trim(input: &[u8]) -> Cow<'_, [u8]> {
    let mut start = 0;
    while start < input.len() {
        let w = ws_len(input, start);
        if w == 0 {
            break;
        }
        start += w;
    }
    let mut end = input.len();
    while end > start {
        let w = ws_len_before(input, end);
        if w == 0 || end - w < start {
            break;
        }
        end -= w;
    }
    Cow::Borrowed(&input[start..end])
}

/// Full-width forms (U+FF01–U+FF5E) → ASCII (U+0021–U+007E) and the
/// ideographic space U+3000 → space, on their UTF-8 encodings. Browsers and
/// some back ends fold these, so `＜ｓｃｒｉｐｔ＞` is `<script>`.
fn fullwidth_to_ascii(input: &[u8]) -> Cow<'_, [u8]> {
    let mut rw = Rewriter::new(input);
    let mut i = 0;
    while let Some(p) = find_byte2(input, i, 0xEF, 0xE3) {
        let ascii = match (input[p], input.get(p + 1..p + 3)) {
            // EF BC 81..BF = U+FF01..U+FF3F, EF BD 80..9E = U+FF40..U+FF5E.
            (0xEF, Some(&[b1 @ (0xBC | 0xBD), b2])) if (0x80..=0xBF).contains(&b2) => {
                let cp = 0xF000 | u32::from(b1 & 0x3F) << 6 | u32::from(b2 & 0x3F);
                (0xFF01..=0xFF5E).contains(&cp).then(|| (cp - 0xFEE0) as u8)
            }
            (0xE3, Some([0x80, 0x80])) => Some(b' '),
            _ => None,
        };
        match ascii {
            Some(b) => {
                rw.replace(p, p + 3, &[b]);
                i = p + 3;
            }
            None => i = p + 1,
        }
    }
    rw.finish()
}

// ---------------------------------------------------------------------------
// Comments
// ---------------------------------------------------------------------------

/// Offset of the first `*/` at or after `from`.
fn find_comment_end(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = find_byte(s, i, b'*') {
        if s.get(p + 1) == Some(&b'/') {
            return Some(p);
        }
        i = p + 1;
    }
    None
}

/// Offset of the end of the line containing `from` (the `\n`/`\r` itself is
/// kept, so line structure survives).
fn line_end(s: &[u8], from: usize) -> usize {
    find_byte2(s, from, b'\n', b'\r').unwrap_or(s.len())
}

/// If `s[p..]` opens a MySQL/MariaDB executable comment (`/*!`, `/*!NNNNN`,
/// `/*M!`, `/*M!NNNNNN`), the offset where its content starts.
fn version_comment_body(s: &[u8], p: usize) -> Option<usize> {
    let (q, max_digits) = match s.get(p + 2..p + 4) {
        Some([b'!', ..]) => (p + 3, 5),
        Some([b'M', b'!']) => (p + 4, 6),
        _ => return None,
    };
    let digits = s[q..]
        .iter()
        .take(max_digits)
        .take_while(|b| b.is_ascii_digit())
        .count();
    // The server reads a version only when the digits are all there
    // (MariaDB accepts 5 or 6); fewer digits are content (`/*!1*/` is 1).
    Some(if digits >= 5 { q + digits } else { q })
}

/// `remove_comments` (`replace == false`) and `replace_comments`.
///
/// * `/* … */` (unterminated: to the end) is deleted, or replaced by one
///   space.
/// * MySQL executes `/*! … */` (optionally versioned), so hiding its content
///   would hide the attack: only the markers and version digits go (deleted,
///   or each replaced by a space), the content stays and is scanned as usual.
/// * `remove_comments` only: `--`, `#` and `//` comments to end of line.
///
/// Quotes are not tracked: an attacker could open one to shield a comment
/// from the transform.
fn strip_comments(input: &[u8], replace: bool) -> Cow<'_, [u8]> {
    let filler: &[u8] = if replace { b" " } else { b"" };
    let mut rw = Rewriter::new(input);
    let mut in_version = false;
    let mut i = 0;
    while let Some(p) = find(input, i, |b| matches!(b, b'/' | b'-' | b'#' | b'*')) {
        match (input[p], input.get(p + 1)) {
            (b'/', Some(b'*')) => {
                if let Some(body) = version_comment_body(input, p) {
                    rw.replace(p, body, filler);
                    in_version = true;
                    i = body;
                } else {
                    let end = find_comment_end(input, p + 2).map_or(input.len(), |e| e + 2);
                    rw.replace(p, end, filler);
                    i = end;
                }
            }
            (b'*', Some(b'/')) if in_version => {
                rw.replace(p, p + 2, filler);
                in_version = false;
                i = p + 2;
            }
            (b'/', Some(b'/')) | (b'-', Some(b'-')) | (b'#', _) if !replace => {
                let end = line_end(input, p);
                rw.delete(p, end);
                i = end;
            }
            _ => i = p + 1,
        }
    }
    rw.finish()
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// True when [`normalize_path`] would change `input`: a `\` (Windows), an
/// empty interior segment (`//`), or a `.`/`..` segment.
fn path_needs_work(input: &[u8], win: bool) -> bool {
    if win && input.contains(&b'\\') {
        return true;
    }
    let mut segments = input.split(|&b| b == b'/').enumerate().peekable();
    while let Some((idx, seg)) = segments.next() {
        let last = segments.peek().is_none();
        if seg == b"." || seg == b".." || (seg.is_empty() && idx > 0 && !last) {
            return true;
        }
    }
    false
}

/// RFC 3986 dot-segment removal plus slash collapsing: `//` → `/`, `.`
/// dropped, `..` drops the previous segment but never climbs above the start
/// (absolute or relative: `a/../../b` → `b`, `/../etc` → `/etc`). A path
/// that ended in a separator, `.` or `..` ends in `/`. With `win`, `\` is a
/// separator too and comes out as `/`.
fn normalize_path(input: &[u8], win: bool) -> Cow<'_, [u8]> {
    if !path_needs_work(input, win) {
        return Cow::Borrowed(input);
    }
    let is_sep = |b: u8| b == b'/' || (win && b == b'\\');
    let absolute = input.first().is_some_and(|&b| is_sep(b));
    let mut out = Vec::with_capacity(input.len());
    if absolute {
        out.push(b'/');
    }
    let mut ends_as_dir = false;
    for seg in input.split(|&b| is_sep(b)) {
        match seg {
            b"" => {}
            b"." => ends_as_dir = true,
            b".." => {
                // `out` never ends in '/' except as the bare root, so the
                // last '/' starts the segment to drop. Each byte is popped
                // at most once: linear overall.
                match out.iter().rposition(|&b| b == b'/') {
                    Some(0) if absolute => out.truncate(1),
                    Some(slash) => out.truncate(slash),
                    None => out.clear(),
                }
                ends_as_dir = true;
            }
            _ => {
                if out.last().is_some_and(|&b| b != b'/') {
                    out.push(b'/');
                }
                out.extend_from_slice(seg);
                ends_as_dir = false;
            }
        }
    }
    let trailing_sep = input.last().is_some_and(|&b| is_sep(b));
    if (ends_as_dir || trailing_sep) && out.last().is_some_and(|&b| b != b'/') {
        out.push(b'/');
    }
    if out == input {
        return Cow::Borrowed(input);
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------
// Command lines
// ---------------------------------------------------------------------------

/// Length of a shell expansion at `s[p]` (a `$`) that yields the field
/// separator: `${IFS}`, or `$IFS` not followed by a name character (`$IFSX`
/// is another, empty, variable); either may be followed by `$` and a digit,
/// the usual `$IFS$9` trick (`$9` is empty). Case-insensitive so a
/// `lowercase` earlier in the chain does not defeat it.
fn ifs_len(s: &[u8], p: usize) -> Option<usize> {
    let rest = &s[p..];
    let len = if rest.len() >= 6 && rest[..6].eq_ignore_ascii_case(b"${IFS}") {
        6
    } else if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case(b"$IFS") {
        let next = rest.get(4).copied();
        if next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        4
    } else {
        return None;
    };
    match rest.get(len..len + 2) {
        Some([b'$', d]) if d.is_ascii_digit() => Some(len + 2),
        _ => Some(len),
    }
}

/// True when [`cmdline`] would leave `input` as is: no byte it deletes or
/// rewrites, no uppercase, and every space single and not before `/` or `(`.
fn cmdline_is_clean(input: &[u8]) -> bool {
    let mut prev_space = false;
    for &b in input {
        let bad = match b {
            b'\\' | b'"' | b'\'' | b'^' | b',' | b';' | b'$' | b'`' => true,
            b'\t' | b'\n' | b'\r' | 0x0B | 0x0C => true,
            b'A'..=b'Z' => true,
            b' ' => prev_space,
            b'/' | b'(' => prev_space,
            _ => false,
        };
        if bad {
            return false;
        }
        prev_space = b == b' ';
    }
    true
}

/// ModSecurity `t:cmdLine`, so CRS-style command patterns carry over:
/// delete `\ " ' ^`; `,` `;` and ASCII whitespace runs → one space; delete a
/// space before `/` or `(`; ASCII lowercase. Additions for common shell
/// evasions: `$IFS`/`${IFS}`/`$IFS$9` count as whitespace, and the empty
/// expansions `$@` and ``` `` ``` are deleted (`c$@at`, ``` ca``t ```).
/// Deleting quotes already undoes `c''at` and `c""at`.
fn cmdline(input: &[u8]) -> Cow<'_, [u8]> {
    if cmdline_is_clean(input) {
        return Cow::Borrowed(input);
    }
    /// What one position of the input contributes.
    enum Step {
        /// Delete this many bytes.
        Drop(usize),
        /// This many bytes are a separator: one space per run.
        Space(usize),
        /// Emit one (lowercased) byte.
        Keep(u8),
    }
    let mut out = Vec::with_capacity(input.len());
    // Whether `out` ends with a space this function emitted.
    let mut space = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        let step = match b {
            b'\\' | b'"' | b'\'' | b'^' => Step::Drop(1),
            b' ' | b',' | b';' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C => Step::Space(1),
            b'$' => match ifs_len(input, i) {
                Some(n) => Step::Space(n),
                None if input.get(i + 1) == Some(&b'@') => Step::Drop(2),
                None => Step::Keep(b'$'),
            },
            b'`' if input.get(i + 1) == Some(&b'`') => Step::Drop(2),
            _ => Step::Keep(b.to_ascii_lowercase()),
        };
        match step {
            Step::Drop(n) => i += n,
            Step::Space(n) => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
                i += n;
            }
            Step::Keep(c) => {
                if space && (c == b'/' || c == b'(') {
                    out.pop();
                }
                out.push(c);
                space = false;
                i += 1;
            }
        }
    }
    if out == input {
        return Cow::Borrowed(input);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `t` and returns the result as an owned vector.
    fn run(t: Transform, input: &[u8]) -> Vec<u8> {
        apply(t, input).into_owned()
    }

    /// Applies `t` to a `&str` and expects a (possibly lossy) string back.
    fn s(t: Transform, input: &str) -> String {
        String::from_utf8_lossy(&apply(t, input.as_bytes())).into_owned()
    }

    fn is_borrowed(t: Transform, input: &[u8]) -> bool {
        matches!(apply(t, input), Cow::Borrowed(b) if b == input)
    }

    use Transform::*;

    // --- names and chains -------------------------------------------------

    #[test]
    fn names_round_trip_and_are_unique() {
        for t in Transform::ALL {
            assert_eq!(Transform::from_name(t.name()), Some(t));
            assert_eq!(t.name().parse::<Transform>(), Ok(t));
            assert_eq!(t.to_string(), t.name());
        }
        let mut names = NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Transform::ALL.len());
        assert_eq!(Transform::from_name("URL_DECODE"), None);
        assert_eq!(Transform::from_name("length"), None);
        let err = "urldecode".parse::<Transform>().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`urldecode`") && msg.contains("url_decode_uni"),
            "{msg}"
        );
    }

    #[test]
    fn serde_uses_rule_pack_names() {
        let chain: Chain = serde_json::from_str(r#"["url_decode_uni", "lowercase"]"#).unwrap();
        assert_eq!(chain.key(), &[UrlDecodeUni, Lowercase]);
        assert_eq!(
            serde_json::to_string(&chain).unwrap(),
            r#"["url_decode_uni","lowercase"]"#
        );
        let err = serde_json::from_str::<Chain>(r#"["url_decode", "nope"]"#).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(err.to_string().contains("html_entity_decode"), "{err}");
    }

    #[test]
    fn chain_from_names_and_display() {
        let chain = Chain::from_names(["url_decode", "url_decode", "lowercase"]).unwrap();
        assert_eq!(chain.to_string(), "[url_decode, url_decode, lowercase]");
        assert_eq!(chain.len(), 3);
        assert!(!chain.is_empty());
        assert_eq!(
            Chain::from_names(["url_decode", "bogus"]).unwrap_err().name,
            "bogus"
        );
        assert_eq!(Chain::default().to_string(), "[]");
    }

    #[test]
    fn chain_keys_group_equal_chains() {
        let a = Chain::new(vec![UrlDecodeUni, Lowercase]);
        let b: Chain = [UrlDecodeUni, Lowercase].into_iter().collect();
        let c = Chain::from(vec![Lowercase, UrlDecodeUni]);
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        let mut map = std::collections::HashMap::new();
        map.insert(a.key().to_vec(), 1);
        assert_eq!(map.get(b.key()), Some(&1));
    }

    #[test]
    fn chain_applies_in_order_and_repeats_decode() {
        let once = Chain::new(vec![UrlDecode]);
        let twice = Chain::new(vec![UrlDecode, UrlDecode]);
        assert_eq!(&*once.apply(b"%253Cscript%253E"), b"%3Cscript%3E");
        assert_eq!(&*twice.apply(b"%253Cscript%253E"), b"<script>");
        // Owned value followed by a borrowing step (trim's sub-slice) and a
        // no-op step.
        let chain = Chain::new(vec![UrlDecode, Trim, RemoveNulls, Lowercase]);
        assert_eq!(&*chain.apply(b"+%20SeLeCt%09"), b"select");
        // Clean input passes the whole chain without allocating.
        let spec = Chain::new(vec![
            UrlDecodeUni,
            HtmlEntityDecode,
            Lowercase,
            CompressWhitespace,
        ]);
        assert!(matches!(spec.apply(b"hello world"), Cow::Borrowed(_)));
        assert!(matches!(Chain::default().apply(b"x"), Cow::Borrowed(b"x")));
        // Borrowed sub-slice survives a chain that never allocates.
        let t = Chain::new(vec![Trim, Lowercase]);
        assert!(matches!(t.apply(b"  abc  "), Cow::Borrowed(b"abc")));
    }

    #[test]
    fn chain_matches_stepwise_application() {
        let chain = Chain::new(Transform::ALL.to_vec());
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..500 {
            let input = rng.bytes(40);
            let mut expected = input.clone();
            for t in Transform::ALL {
                expected = run(t, &expected);
            }
            assert_eq!(
                chain.apply(&input).as_ref(),
                expected.as_slice(),
                "{input:?}"
            );
        }
    }

    // --- fast path ----------------------------------------------------------

    #[test]
    fn clean_input_is_borrowed_by_every_transform() {
        for input in [&b""[..], b"index.php", b"john.doe@example.com", b"a b c.d"] {
            for t in Transform::ALL {
                if t == RemoveWhitespace && input.contains(&b' ') {
                    continue;
                }
                assert!(
                    is_borrowed(t, input),
                    "{t} on {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        // Trigger bytes that turn out not to start anything still borrow.
        assert!(is_borrowed(UrlDecode, b"100% sure"));
        assert!(is_borrowed(UrlDecodeUni, b"%u12 and %zz"));
        assert!(is_borrowed(
            HtmlEntityDecode,
            b"AT&T & R&D &foo; &#; &ltscript"
        ));
        assert!(is_borrowed(JsDecode, b"trailing\\"));
        assert!(is_borrowed(Utf8Overlong, "é \u{800} ok".as_bytes()));
        assert!(is_borrowed(Lowercase, "déjà vu".as_bytes()));
        assert!(is_borrowed(CompressWhitespace, b"a b c"));
        assert!(is_borrowed(
            FullwidthToAscii,
            "\u{FF00}\u{FF5F}\u{3001}".as_bytes()
        ));
        assert!(is_borrowed(RemoveComments, b"1-2 / 3 * 4"));
        assert!(is_borrowed(ReplaceComments, b"a -- b # c // d"));
        assert!(is_borrowed(NormalizePath, b"/a/b/"));
        assert!(is_borrowed(NormalizePath, b"/a/..b/c."));
        assert!(is_borrowed(NormalizePathWin, b"/a/b"));
        assert!(is_borrowed(Cmdline, b"ls -la tmp/x"));
        assert!(is_borrowed(Cmdline, b"price $5"));
    }

    // --- URL ---------------------------------------------------------------

    #[test]
    fn url_decode_basics() {
        assert_eq!(s(UrlDecode, "%3Cscript%3E"), "<script>");
        assert_eq!(s(UrlDecode, "%3cscript%3e"), "<script>");
        assert_eq!(s(UrlDecode, "a+b%20c"), "a b c");
        assert_eq!(run(UrlDecode, b"%00%ff"), [0, 0xFF]);
        assert_eq!(s(UrlDecode, "%2541"), "%41", "one pass only");
        assert_eq!(
            s(UrlDecode, "%u0027"),
            "%u0027",
            "plain url_decode ignores %u"
        );
    }

    #[test]
    fn url_decode_malformed_is_kept() {
        assert_eq!(s(UrlDecode, "%4"), "%4");
        assert_eq!(s(UrlDecode, "%zz%41"), "%zzA");
        assert_eq!(s(UrlDecode, "%%41"), "%A");
        assert_eq!(s(UrlDecode, "%"), "%");
        assert_eq!(s(UrlDecode, "%4g"), "%4g");
    }

    #[test]
    fn url_decode_uni_percent_u() {
        assert_eq!(s(UrlDecodeUni, "%u0027 OR 1=1"), "' OR 1=1");
        assert_eq!(s(UrlDecodeUni, "%U003Cscript%u003E"), "<script>");
        assert_eq!(s(UrlDecodeUni, "%u00e9"), "é");
        assert_eq!(s(UrlDecodeUni, "%41%u0042+"), "AB ");
        assert_eq!(s(UrlDecodeUni, "%u12"), "%u12");
        assert_eq!(s(UrlDecodeUni, "%uzzzz"), "%uzzzz");
    }

    #[test]
    fn url_decode_uni_fullwidth_and_surrogates() {
        assert_eq!(s(UrlDecodeUni, "%uFF1Cscript%uff1e"), "<script>");
        assert_eq!(s(UrlDecodeUni, "%uFF0E%uFF0E%uFF0F"), "../");
        assert_eq!(s(UrlDecodeUni, "a%u3000b"), "a b");
        assert_eq!(s(UrlDecodeUni, "%uFF5F"), "\u{FF5F}");
        assert_eq!(s(UrlDecodeUni, "%uD83D%uDE00"), "😀");
        assert_eq!(s(UrlDecodeUni, "%uD800x"), "\u{FFFD}x");
        assert_eq!(s(UrlDecodeUni, "%uDE00"), "\u{FFFD}");
        assert_eq!(s(UrlDecodeUni, "%uD83D%u0041"), "\u{FFFD}A");
    }

    // --- overlong UTF-8 ------------------------------------------------------

    #[test]
    fn utf8_overlong_forms() {
        assert_eq!(run(Utf8Overlong, &[0xC0, 0xAF]), b"/");
        assert_eq!(run(Utf8Overlong, &[0xC0, 0xAE]), b".");
        assert_eq!(run(Utf8Overlong, &[0xC1, 0x9C]), b"\\");
        assert_eq!(run(Utf8Overlong, &[0xE0, 0x80, 0xAF]), b"/");
        assert_eq!(run(Utf8Overlong, &[0xE0, 0x81, 0x81]), b"A");
        assert_eq!(run(Utf8Overlong, &[0xE0, 0x82, 0x80]), [0xC2, 0x80]);
        assert_eq!(run(Utf8Overlong, &[0xF0, 0x80, 0x80, 0xAF]), b"/");
        assert_eq!(
            run(Utf8Overlong, &[0xF0, 0x80, 0xA0, 0x80]),
            "\u{800}".as_bytes()
        );
        assert_eq!(run(Utf8Overlong, &[0xF8, 0x80, 0x80, 0x80, 0xAF]), b"/");
        assert_eq!(
            run(Utf8Overlong, &[0xFC, 0x80, 0x80, 0x80, 0x80, 0xAF]),
            b"/"
        );
    }

    #[test]
    fn utf8_overlong_leaves_the_rest() {
        for bytes in [
            &[0xC0][..],
            &[0xC0, 0x41],
            &[0xE0, 0x80],
            &[0xE0, 0xA0, 0x80],             // valid U+0800
            &[0xF0, 0x90, 0x80, 0x80],       // valid U+10000
            &[0xF0, 0x8D, 0xA0, 0x80],       // overlong surrogate: not a scalar
            &[0xF8, 0x88, 0x80, 0x80, 0x80], // beyond Unicode
            &[0xC3, 0xA9],
        ] {
            assert!(is_borrowed(Utf8Overlong, bytes), "{bytes:02x?}");
        }
    }

    #[test]
    fn overlong_traversal_needs_url_decode_first() {
        let chain = Chain::new(vec![UrlDecode, Utf8Overlong]);
        assert_eq!(&*chain.apply(b"%c0%ae%c0%ae/etc"), b"../etc");
        assert_eq!(&*chain.apply(b"..%c0%af..%e0%80%afetc"), b"../../etc");
    }

    // --- HTML -----------------------------------------------------------------

    #[test]
    fn html_numeric_references() {
        assert_eq!(s(HtmlEntityDecode, "&#x3C;script&#62;"), "<script>");
        assert_eq!(s(HtmlEntityDecode, "&#0000060"), "<");
        assert_eq!(s(HtmlEntityDecode, "&#X3c;&#x3C&#60"), "<<<");
        assert_eq!(s(HtmlEntityDecode, "&#x00000003c;"), "<");
        assert_eq!(s(HtmlEntityDecode, "&#106&#97&#118&#97"), "java");
        assert_eq!(s(HtmlEntityDecode, "&#233;"), "é");
        assert_eq!(s(HtmlEntityDecode, "&#x1F600;"), "😀");
        assert_eq!(
            s(HtmlEntityDecode, "&#128;&#x96;"),
            "€–",
            "Windows-1252 remap"
        );
    }

    #[test]
    fn html_numeric_out_of_range_is_replacement() {
        for input in [
            "&#99999999999;",
            "&#0;",
            "&#xD800;",
            "&#x110000;",
            "&#xFFFFFFFFFFFF",
        ] {
            let out = run(HtmlEntityDecode, input.as_bytes());
            assert_eq!(std::str::from_utf8(&out), Ok("\u{FFFD}"), "{input}");
        }
    }

    #[test]
    fn html_named_references() {
        assert_eq!(s(HtmlEntityDecode, "&lt;&gt;&amp;&quot;&apos;"), "<>&\"'");
        assert_eq!(
            s(
                HtmlEntityDecode,
                "&Tab;&NewLine;&colon;&lpar;&rpar;&sol;&bsol;&grave;"
            ),
            "\t\n:()/\\`"
        );
        assert_eq!(
            s(HtmlEntityDecode, "javascript&colon;alert&lpar;1&rpar;"),
            "javascript:alert(1)"
        );
        assert_eq!(s(HtmlEntityDecode, "a&nbsp;b"), "a\u{A0}b");
        assert_eq!(s(HtmlEntityDecode, "&LT;&GT;"), "<>");
        assert_eq!(
            s(HtmlEntityDecode, "&lsqb;&rsqb;&lcub;&rcub;&semi;"),
            "[]{};"
        );
        assert_eq!(s(HtmlEntityDecode, "&amp;lt;"), "&lt;", "one pass only");
    }

    #[test]
    fn html_legacy_names_without_semicolon() {
        assert_eq!(s(HtmlEntityDecode, "&lt script"), "< script");
        assert_eq!(s(HtmlEntityDecode, "&lt"), "<");
        assert_eq!(s(HtmlEntityDecode, "&amp&quot"), "&\"");
        // Attribute rule: not before '=' or more letters; non-legacy names
        // need the ';'.
        assert_eq!(s(HtmlEntityDecode, "a=1&lt=2"), "a=1&lt=2");
        assert_eq!(
            s(HtmlEntityDecode, "a=1&field001=x&lt;&amp=3"),
            "a=1&field001=x<&amp=3"
        );
        assert_eq!(s(HtmlEntityDecode, "&ltscript"), "&ltscript");
        assert_eq!(s(HtmlEntityDecode, "&colon"), "&colon");
        assert_eq!(s(HtmlEntityDecode, "&Lt;"), "&Lt;");
    }

    #[test]
    fn html_malformed_is_kept() {
        for input in [
            "&", "&&", "&#", "&#;", "&#x;", "&#xZZ;", "&foo;", "&;", "& lt;",
        ] {
            assert!(is_borrowed(HtmlEntityDecode, input.as_bytes()), "{input}");
        }
        let long = format!("&{};", "a".repeat(40));
        assert!(is_borrowed(HtmlEntityDecode, long.as_bytes()));
    }

    #[test]
    fn entity_table_is_sorted_and_never_grows() {
        for w in ENTITIES.windows(2) {
            assert!(w[0].0 < w[1].0, "{:?} before {:?}", w[0].0, w[1].0);
        }
        for (name, value, _) in ENTITIES {
            assert!(name.len() <= MAX_ENTITY_NAME);
            assert!(value.len() <= name.len() + 1, "{value:?}");
            assert!(name.iter().all(u8::is_ascii_alphanumeric));
        }
        assert!(ENTITIES.len() >= 50);
    }

    // --- JavaScript -----------------------------------------------------------

    #[test]
    fn js_hex_and_unicode_escapes() {
        assert_eq!(s(JsDecode, r"\x3cscript\x3e"), "<script>");
        assert_eq!(s(JsDecode, r"\u003c"), "<");
        assert_eq!(s(JsDecode, r"\u003Cimg\u003E"), "<img>");
        assert_eq!(s(JsDecode, r"\u{3c}"), "<");
        assert_eq!(s(JsDecode, r"\u{0000000041}"), "A");
        assert_eq!(s(JsDecode, r"\u{1F600}"), "😀");
        assert_eq!(s(JsDecode, r"\uD83D\uDE00"), "😀");
        assert_eq!(s(JsDecode, r"\uD83Dx"), "\u{FFFD}x");
        assert_eq!(s(JsDecode, r"\xe9"), "é");
    }

    #[test]
    fn js_octal_and_simple_escapes() {
        assert_eq!(s(JsDecode, r"\74script\076"), "<script>");
        assert_eq!(s(JsDecode, r"\074"), "<");
        assert_eq!(run(JsDecode, br"\0"), [0]);
        assert_eq!(run(JsDecode, br"\08"), [0, b'8']);
        assert_eq!(s(JsDecode, r"\400"), " 0");
        assert_eq!(s(JsDecode, r"\377"), "\u{FF}");
        assert_eq!(run(JsDecode, br"\n\t\r\b\f\v"), b"\n\t\r\x08\x0c\x0b");
        assert_eq!(s(JsDecode, r#"\\ \' \""#), r#"\ ' ""#);
    }

    #[test]
    fn js_unknown_and_malformed_escapes_drop_the_backslash() {
        assert_eq!(s(JsDecode, r"\q\a\l\e\r\t"), "qale\r\t");
        assert_eq!(s(JsDecode, r"\xZZ"), "xZZ");
        assert_eq!(s(JsDecode, r"\x4"), "x4");
        assert_eq!(s(JsDecode, r"\u12"), "u12");
        assert_eq!(s(JsDecode, r"\u{110000}"), "u{110000}");
        assert_eq!(s(JsDecode, r"\u{}"), "u{}");
        assert_eq!(s(JsDecode, r"\u{41"), "u{41");
        assert_eq!(s(JsDecode, "a\\\nb\\\r\nc\\\u{2028}d"), "abcd");
        assert_eq!(s(JsDecode, "\\é"), "é");
        assert_eq!(s(JsDecode, r"\\x41"), r"\x41", "one pass only");
    }

    // --- CSS --------------------------------------------------------------

    #[test]
    fn css_escapes() {
        assert_eq!(s(CssDecode, r"\3c"), "<");
        assert_eq!(s(CssDecode, r"\3c script\3e"), "<script>");
        assert_eq!(s(CssDecode, r"\00003c"), "<");
        assert_eq!(
            s(CssDecode, r"\0000003c"),
            "\u{FFFD}3c",
            "six digits at most"
        );
        assert_eq!(s(CssDecode, r"\6a avascript"), "javascript");
        assert_eq!(s(CssDecode, "\\6a\r\navascript"), "javascript");
        assert_eq!(s(CssDecode, r"java\script"), "javascript");
        assert_eq!(s(CssDecode, r"e\xpression"), "expression");
        assert_eq!(s(CssDecode, r"\ab"), "\u{AB}");
        assert_eq!(s(CssDecode, r#"\"\\"#), r#""\"#);
        assert_eq!(s(CssDecode, "a\\\nb"), "ab");
        assert_eq!(s(CssDecode, r"\0"), "\u{FFFD}");
        assert_eq!(s(CssDecode, r"\110000"), "\u{FFFD}");
        assert_eq!(s(CssDecode, r"\d800"), "\u{FFFD}");
        assert_eq!(s(CssDecode, "x\\"), "x");
        assert_eq!(s(CssDecode, "\\é"), "é");
    }

    // --- base64 / hex ----------------------------------------------------------

    #[test]
    fn base64_standard_urlsafe_and_unpadded() {
        assert_eq!(s(Base64Decode, "PHNjcmlwdD4="), "<script>");
        assert_eq!(s(Base64Decode, "PHNjcmlwdD4"), "<script>");
        assert_eq!(
            s(Base64Decode, "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="),
            "<script>alert(1)</script>"
        );
        assert_eq!(
            s(Base64Decode, "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg"),
            "<script>alert(1)</script>"
        );
        assert_eq!(run(Base64Decode, b"+/8="), [0xFB, 0xFF]);
        assert_eq!(run(Base64Decode, b"-_8"), [0xFB, 0xFF]);
        assert_eq!(s(Base64Decode, "YQ=="), "a");
        assert_eq!(s(Base64Decode, "YWI="), "ab");
    }

    #[test]
    fn base64_invalid_is_unchanged() {
        for input in [
            "", "=", "==", "===", "YQ===", "YQ=", "abcde", "PHN*", "ab=c", "YW I=", "Y",
        ] {
            assert!(is_borrowed(Base64Decode, input.as_bytes()), "{input}");
        }
    }

    #[test]
    fn hex_decode_pairs_or_nothing() {
        assert_eq!(s(HexDecode, "3c7363726970743e"), "<script>");
        assert_eq!(s(HexDecode, "3C73"), "<s");
        assert_eq!(run(HexDecode, b"00ff"), [0, 0xFF]);
        for input in ["", "3c7", "zz", "0x3c", "3c 73"] {
            assert!(is_borrowed(HexDecode, input.as_bytes()), "{input}");
        }
    }

    // --- case, whitespace, NULs, full-width -------------------------------------

    #[test]
    fn lowercase_ascii_and_unicode() {
        assert_eq!(s(Lowercase, "SeLeCt * FROM"), "select * from");
        assert_eq!(s(Lowercase, "ÀÉÎ Straße"), "àéî straße");
        assert_eq!(s(Lowercase, "\u{212A}"), "k", "Kelvin sign");
        assert_eq!(s(Lowercase, "İ"), "i\u{307}");
        assert_eq!(s(Lowercase, "ＳＣＲＩＰＴ"), "ｓｃｒｉｐｔ");
        // Invalid UTF-8 bytes pass through; ASCII around them still folds.
        assert_eq!(
            run(Lowercase, &[0xC3, b'A', 0xFF, b'B']),
            [0xC3, b'a', 0xFF, b'b']
        );
    }

    #[test]
    fn lowercase_grows_at_most_half_per_char() {
        let mut buf = [0u8; 4];
        for c in (0..=0x10_FFFFu32).filter_map(char::from_u32) {
            let enc = c.encode_utf8(&mut buf).as_bytes();
            let out = run(Lowercase, enc);
            assert!(2 * out.len() <= 3 * enc.len(), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn compress_whitespace_runs() {
        assert_eq!(s(CompressWhitespace, "a \t\n b"), "a b");
        assert_eq!(s(CompressWhitespace, "a\tb"), "a b");
        assert_eq!(s(CompressWhitespace, "a\u{A0}\u{A0}b"), "a b");
        assert_eq!(s(CompressWhitespace, "a\x0b\x0cb"), "a b");
        assert_eq!(s(CompressWhitespace, "  a  "), " a ");
        assert_eq!(
            s(CompressWhitespace, "union\u{3000}\u{2003}select"),
            "union select"
        );
        // A0 inside "à" (C3 A0) is not NBSP.
        assert!(is_borrowed(CompressWhitespace, "voilà là".as_bytes()));
    }

    #[test]
    fn remove_whitespace_and_nulls() {
        assert_eq!(s(RemoveWhitespace, "s e\tl\u{3000}e\u{A0}ct"), "select");
        assert_eq!(s(RemoveWhitespace, " a b\t\r\n\x0b\x0cc "), "abc");
        assert!(is_borrowed(RemoveWhitespace, b"abc"));
        assert_eq!(run(RemoveNulls, b"a\0b\0\0c\0"), b"abc");
        assert!(is_borrowed(RemoveNulls, b"abc"));
    }

    #[test]
    fn ws_len_matches_char_is_whitespace() {
        let mut buf = [0u8; 4];
        for c in (0..=0x10_FFFFu32).filter_map(char::from_u32) {
            let enc = c.encode_utf8(&mut buf).as_bytes();
            let expected = if c.is_whitespace() { enc.len() } else { 0 };
            assert_eq!(ws_len(enc, 0), expected, "U+{:04X}", u32::from(c));
            if expected > 0 {
                assert!(may_start_ws(enc[0]));
                assert_eq!(ws_len_before(enc, enc.len()), expected);
            }
        }
    }

    #[test]
    fn trim_borrows_a_sub_slice() {
        assert!(matches!(apply(Trim, b"  a b \t"), Cow::Borrowed(b"a b")));
        assert_eq!(s(Trim, "\u{A0}x\u{3000}"), "x");
        assert_eq!(s(Trim, " \n "), "");
        assert_eq!(s(Trim, "à"), "à");
        assert_eq!(run(Trim, &[b' ', 0xA0, b' ']), [0xA0]);
    }

    #[test]
    fn fullwidth_folds_to_ascii() {
        assert_eq!(s(FullwidthToAscii, "＜ｓｃｒｉｐｔ＞"), "<script>");
        assert_eq!(s(FullwidthToAscii, "！～"), "!~");
        assert_eq!(s(FullwidthToAscii, "a\u{3000}b"), "a b");
        assert_eq!(s(FullwidthToAscii, "ｓｅｌｅｃｔ　１"), "select 1");
        // Truncated sequences are left alone.
        assert_eq!(run(FullwidthToAscii, &[0xEF, 0xBC]), [0xEF, 0xBC]);
    }

    // --- comments -----------------------------------------------------------

    #[test]
    fn remove_comments_sql_and_c() {
        assert_eq!(s(RemoveComments, "UNION/**/SELECT"), "UNIONSELECT");
        assert_eq!(s(RemoveComments, "UNION/*foo*/ SELECT"), "UNION SELECT");
        assert_eq!(s(RemoveComments, "1 -- x\n2"), "1 \n2");
        assert_eq!(s(RemoveComments, "1--x"), "1");
        assert_eq!(s(RemoveComments, "1#x\r\n2"), "1\r\n2");
        assert_eq!(s(RemoveComments, "a//b\nc"), "a\nc");
        assert_eq!(s(RemoveComments, "1/* unterminated"), "1");
        assert_eq!(s(RemoveComments, "/*/ x */y"), "y");
    }

    #[test]
    fn remove_comments_keeps_mysql_version_content() {
        assert_eq!(
            s(RemoveComments, "1/*!50000UNION*/ SELECT"),
            "1UNION SELECT"
        );
        assert_eq!(s(RemoveComments, "/*!UNION*/"), "UNION");
        assert_eq!(s(RemoveComments, "/*!1*/"), "1");
        assert_eq!(s(RemoveComments, "/*M!100000UNION*/"), "UNION");
        assert_eq!(s(RemoveComments, "/*!SELECT/*x*/1*/"), "SELECT1");
        assert_eq!(s(RemoveComments, "/*!SELECT 1"), "SELECT 1");
        // A stray `*/` outside any version comment is not ours to touch.
        assert_eq!(s(RemoveComments, "a*/b"), "a*/b");
    }

    #[test]
    fn replace_comments_uses_spaces() {
        assert_eq!(s(ReplaceComments, "UNION/**/SELECT"), "UNION SELECT");
        assert_eq!(
            s(ReplaceComments, "UNION/*!50000SELECT*/1"),
            "UNION SELECT 1"
        );
        assert_eq!(s(ReplaceComments, "1/*x"), "1 ");
        assert_eq!(s(ReplaceComments, "a/*x*/b/*y*/c"), "a b c");
    }

    // --- paths ------------------------------------------------------------

    #[test]
    fn normalize_path_resolves_dots() {
        assert_eq!(s(NormalizePath, "/a//b/./c/../d"), "/a/b/d");
        assert_eq!(s(NormalizePath, "/../../etc/passwd"), "/etc/passwd");
        assert_eq!(s(NormalizePath, "/a/b/.."), "/a/");
        assert_eq!(s(NormalizePath, "/a/."), "/a/");
        assert_eq!(s(NormalizePath, "/a/b/../"), "/a/");
        assert_eq!(s(NormalizePath, "a/../../b"), "b");
        assert_eq!(s(NormalizePath, "./a/b//"), "a/b/");
        assert_eq!(s(NormalizePath, "///"), "/");
        assert_eq!(s(NormalizePath, "/./"), "/");
        assert_eq!(s(NormalizePath, "/.."), "/");
        assert_eq!(s(NormalizePath, "//etc//passwd"), "/etc/passwd");
        assert_eq!(s(NormalizePath, "..\\..\\win.ini"), "..\\..\\win.ini");
    }

    #[test]
    fn normalize_path_win_treats_backslash_as_separator() {
        assert_eq!(
            s(NormalizePathWin, "..\\..\\windows\\win.ini"),
            "windows/win.ini"
        );
        assert_eq!(s(NormalizePathWin, "C:\\a\\..\\b\\"), "C:/b/");
        assert_eq!(s(NormalizePathWin, "/a\\./b"), "/a/b");
        assert_eq!(s(NormalizePathWin, "\\\\server\\share"), "/server/share");
    }

    #[test]
    fn url_decode_then_normalize_catches_encoded_traversal() {
        let chain = Chain::new(vec![UrlDecodeUni, Utf8Overlong, NormalizePathWin]);
        assert_eq!(
            &*chain.apply(b"/static/%2e%2e/%2e%2e/etc/passwd"),
            b"/etc/passwd"
        );
        assert_eq!(&*chain.apply(b"/a/..%5c..%5cwin.ini"), b"/win.ini");
    }

    // --- command lines -----------------------------------------------------------

    #[test]
    fn cmdline_modsecurity_semantics() {
        assert_eq!(s(Cmdline, r"c\a\t /e\tc/pa''sswd"), "cat/etc/passwd");
        assert_eq!(s(Cmdline, "C^A^T /ETC/PASSWD"), "cat/etc/passwd");
        assert_eq!(s(Cmdline, "ls;id,whoami"), "ls id whoami");
        assert_eq!(s(Cmdline, "ping  \t-c\n1"), "ping -c 1");
        assert_eq!(s(Cmdline, "echo (x)"), "echo(x)");
        assert_eq!(s(Cmdline, r#"w"h"o"am"i"#), "whoami");
    }

    #[test]
    fn cmdline_shell_expansion_tricks() {
        assert_eq!(s(Cmdline, "cat${IFS}/etc/passwd"), "cat/etc/passwd");
        assert_eq!(s(Cmdline, "cat$IFS$9/etc/passwd"), "cat/etc/passwd");
        assert_eq!(s(Cmdline, "cat${IFS}file"), "cat file");
        assert_eq!(s(Cmdline, "cat$IFS\"file\""), "cat file");
        assert_eq!(s(Cmdline, "cat${ifs}x"), "cat x");
        assert_eq!(s(Cmdline, "c$@at x"), "cat x");
        assert_eq!(s(Cmdline, "ca``t x"), "cat x");
        assert_eq!(s(Cmdline, "$IFSX"), "$ifsx", "another variable");
        assert_eq!(s(Cmdline, "a$"), "a$");
    }

    // --- robustness ---------------------------------------------------------

    /// A tiny xorshift64 generator so property tests need no crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// Bytes biased toward the triggers and fragments transforms react
        /// to, so random strings actually exercise the decoders.
        fn bytes(&mut self, max_len: usize) -> Vec<u8> {
            const PIECES: &[&[u8]] = &[
                b"%",
                b"%u",
                b"%U",
                b"+",
                b"&",
                b"&#",
                b"&#x",
                b";",
                b"\\",
                b"\\u",
                b"\\u{",
                b"}",
                b"\\x",
                b"/",
                b"/*",
                b"*/",
                b"/*!",
                b"/*M!",
                b"--",
                b"#",
                b"..",
                b"./",
                b"$IFS",
                b"${IFS}",
                b"$",
                b"@",
                b"`",
                b"'",
                b"\"",
                b"^",
                b",",
                b" ",
                b"\t",
                b"\n",
                b"\r",
                b"=",
                b"0",
                b"7",
                b"9",
                b"a",
                b"F",
                b"d8",
                b"DC",
                b"ff",
                b"lt",
                b"nbsp",
                b"colon",
                b"\0",
                &[0xC0],
                &[0xC1],
                &[0xE0],
                &[0xF0],
                &[0xF8],
                &[0xFC],
                &[0x80],
                &[0xAF],
                &[0xEF, 0xBC],
                &[0xE3, 0x80],
                &[0xC2, 0xA0],
                &[0xC4, 0xB0],
            ];
            let target = self.below(max_len + 1);
            let mut out = Vec::with_capacity(target + 8);
            while out.len() < target {
                if self.below(4) == 0 {
                    out.push(self.next() as u8);
                } else {
                    out.extend_from_slice(PIECES[self.below(PIECES.len())]);
                }
            }
            out
        }
    }

    /// Inputs for the guard properties: the biased generator, plus every
    /// named entity and the escapes that decode to the longest output.
    fn guard_inputs(rng: &mut XorShift, mut f: impl FnMut(&[u8])) {
        for (name, _, _) in ENTITIES {
            for tail in ["", ";", "x"] {
                f(format!("&{}{tail}", String::from_utf8_lossy(name)).as_bytes());
            }
        }
        for v in [
            "\\0",
            "_\\0",
            "\\10FFFF",
            "\\D800",
            "\\u{10FFFF}",
            "\\ud800",
            "%ud800",
            "%uD83D%uDE00",
            "&#0",
            "&#x10FFFF;",
            "İİ",
            "\u{212A}",
        ] {
            f(v.as_bytes());
        }
        for _ in 0..100_000 {
            f(&rng.bytes(24));
        }
    }

    #[test]
    fn max_output_len_bounds_every_transform() {
        let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
        guard_inputs(&mut rng, |input| {
            for t in Transform::ALL {
                let out = apply(t, input);
                assert!(
                    out.len() <= t.max_output_len(input.len()),
                    "{t:?} on {:?}: {} bytes",
                    String::from_utf8_lossy(input),
                    out.len()
                );
            }
        });
    }

    #[test]
    fn widened_sets_never_hide_an_output_byte() {
        let mut rng = XorShift(0xDDBA_11C0_FFEE);
        // Small sets: the single bytes guards use most, and random ones.
        let mut sets: Vec<[bool; 256]> = b" </(:'\"aAkKi;-"
            .iter()
            .map(|&b| {
                let mut set = [false; 256];
                set[usize::from(b)] = true;
                set
            })
            .collect();
        for _ in 0..40 {
            let mut set = [false; 256];
            for _ in 0..1 + rng.below(4) {
                set[rng.below(256)] = true;
            }
            sets.push(set);
        }
        let mut widenable = 0;
        for t in Transform::ALL {
            let widened: Vec<Option<[bool; 256]>> = sets
                .iter()
                .map(|s| {
                    let mut w = *s;
                    let ok = t.widen_to_source(&mut w);
                    assert!(ok || w == *s, "{t:?} changed a set it refused");
                    ok.then_some(w)
                })
                .collect();
            if widened.iter().all(Option::is_none) {
                continue;
            }
            widenable += 1;
            let mut rng = XorShift(0x5EED ^ t as u64);
            guard_inputs(&mut rng, |input| {
                let out = apply(t, input);
                for (set, w) in sets.iter().zip(&widened) {
                    let Some(w) = w else { continue };
                    if out.iter().any(|&b| set[usize::from(b)]) {
                        assert!(
                            input.iter().any(|&b| w[usize::from(b)]),
                            "{t:?}: {:?} -> {:?} has a byte the widened set misses",
                            String::from_utf8_lossy(input),
                            String::from_utf8_lossy(&out)
                        );
                    }
                }
            });
        }
        assert_eq!(widenable, 13);
    }

    /// A detector bit is set exactly when the value holds a byte of that
    /// detector's pre-filter, and a value without one is one the detector
    /// finds nothing in (so the engine may skip the call).
    #[test]
    fn detector_bits_follow_the_prefilters() {
        use crate::rules::detect::{cmdi, path, xss};
        let mut rng = XorShift(0x5851_F42D_4C95_7F2D);
        type Detect = fn(&[u8]) -> Option<crate::rules::detect::Detection>;
        let detectors: [(u32, &[bool; 256], Detect); 3] = [
            (class::XSS_BYTES, &xss::PREFILTER, xss::detect),
            (class::CMDI_BYTES, &cmdi::PREFILTER, cmdi::detect),
            (class::PATH_BYTES, &path::PREFILTER, path::detect),
        ];
        let pool: &[u8] = b"aZ0 -_.,;:/\\<>=(`'\"&|$%{}^\n\x00\xc0\xe2\xef\xffjavascript";
        for _ in 0..20_000 {
            let v: Vec<u8> = (0..rng.below(24))
                .map(|_| pool[rng.below(pool.len())])
                .collect();
            let c = classes(&v);
            for (bit, set, detect) in &detectors {
                let has = v.iter().any(|&b| set[usize::from(b)]);
                assert_eq!(c & bit != 0, has, "{v:?}");
                if !has {
                    assert!(detect(&v).is_none(), "{v:?}");
                }
            }
        }
    }

    #[test]
    fn may_change_false_means_unchanged() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut skipped = 0usize;
        for round in 0..60_000 {
            // Small random alphabets (clean text and single trigger bytes)
            // reach the "no trigger" side often; the biased generator
            // covers the rest.
            let input: Vec<u8> = if round % 2 == 0 {
                let alphabet: Vec<u8> = (0..1 + rng.below(5))
                    .map(|_| match rng.below(3) {
                        0 => b"aZ09 .-/+%&\\\t=_,;'\"(#*"[rng.below(22)],
                        1 => b"abcxyzQRS0123456789"[rng.below(19)],
                        _ => rng.next() as u8,
                    })
                    .collect();
                (0..rng.below(24))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect()
            } else {
                rng.bytes(32)
            };
            let c = classes(&input);
            for t in Transform::ALL {
                if !t.may_change(c) {
                    skipped += 1;
                    assert!(
                        matches!(apply(t, &input), Cow::Borrowed(b) if b == input.as_slice()),
                        "{t} changed {input:02x?} although may_change said no"
                    );
                }
            }
        }
        assert!(
            skipped > 100_000,
            "the test must reach the skip side: {skipped}"
        );
        // Clean prose skips everything but the transforms that act on it.
        let c = classes(b"The quick brown fox, 12 times");
        let changing: Vec<Transform> = Transform::ALL
            .into_iter()
            .filter(|t| t.may_change(c))
            .collect();
        assert_eq!(changing, vec![Lowercase, RemoveWhitespace, Cmdline]);
        assert!(Trim.may_change(classes(b" padded")) && Trim.may_change(classes(b"x\t")));
        // Plain text has no PUNCT byte; any other byte is one.
        assert_eq!(
            classes(b"Value number 1\tof the FORM\r\n") & class::PUNCT,
            0
        );
        for b in (0..=255u8).filter(|&b| !is_plain(b)) {
            assert_ne!(classes(&[b'a', b, b'1']) & class::PUNCT, 0, "{b:#04x}");
        }
        assert_eq!((0..=255u8).filter(|&b| is_plain(b)).count(), 62 + 6);
        // Rare punctuation: any byte neither plain nor common.
        assert_eq!(
            classes("Müller, J. - 2024-01-02 12:30 a_b@x.org/p".as_bytes()) & class::RARE_PUNCT,
            0
        );
        for b in (0..=255u8).filter(|&b| !is_plain(b) && !is_common_punct(b)) {
            assert_ne!(classes(&[b'a', b, b'1']) & class::RARE_PUNCT, 0, "{b:#04x}");
        }
    }

    #[test]
    fn random_bytes_never_panic_or_expand() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for _ in 0..4000 {
            let input = rng.bytes(64);
            for t in Transform::ALL {
                let out = apply(t, &input);
                assert!(
                    out.len() <= 4 * input.len(),
                    "{t} grew {} → {} on {input:02x?}",
                    input.len(),
                    out.len()
                );
                match &out {
                    // Borrowed is the input itself; only trim borrows less.
                    Cow::Borrowed(b) if t == Trim => {
                        let start = b.as_ptr() as usize - input.as_ptr() as usize;
                        assert_eq!(&input[start..start + b.len()], *b);
                    }
                    Cow::Borrowed(b) => assert_eq!(*b, input.as_slice(), "{t}"),
                    Cow::Owned(_) => {}
                }
            }
        }
    }

    #[test]
    fn valid_utf8_stays_valid() {
        // Everything but the byte decoders (%XX, base64, hex can make any
        // byte) must keep valid UTF-8 valid.
        let keeps = [
            Utf8Overlong,
            HtmlEntityDecode,
            JsDecode,
            CssDecode,
            Lowercase,
            CompressWhitespace,
            RemoveWhitespace,
            RemoveNulls,
            RemoveComments,
            ReplaceComments,
            NormalizePath,
            NormalizePathWin,
            Cmdline,
            FullwidthToAscii,
            Trim,
        ];
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        for _ in 0..3000 {
            let raw = rng.bytes(64);
            let input = String::from_utf8_lossy(&raw);
            for t in keeps {
                let out = apply(t, input.as_bytes());
                assert!(
                    std::str::from_utf8(&out).is_ok(),
                    "{t} on {input:?} → {out:02x?}"
                );
            }
        }
    }

    #[test]
    fn adversarial_repetitions_stay_linear() {
        // Quadratic behaviour on any of these would take minutes at this
        // size in a debug build; linear code takes milliseconds.
        const N: usize = 1 << 16;
        let patterns: &[&[u8]] = &[
            b"&#",
            b"&#x",
            b"&a",
            b"&",
            b"%",
            b"%u",
            b"%uD800",
            b"\\u{0",
            b"\\",
            b"\\uD800",
            b"/*",
            b"/*!",
            b"*",
            b"*/",
            b"../",
            b"/./",
            b"$IFS",
            b"$",
            b" ",
            b"\xC2\xA0",
            b"\xE0\x80",
            b"\xF8\x80\x80\x80",
            b"\xEF\xBC",
            b"-",
            b"#\n",
        ];
        for pat in patterns {
            let input = pat.repeat(N / pat.len());
            for t in Transform::ALL {
                let out = apply(t, &input);
                assert!(out.len() <= 4 * input.len());
            }
        }
        let digits = [b"&#".as_slice(), &b"0".repeat(N), b";"].concat();
        assert_eq!(run(HtmlEntityDecode, &digits), "\u{FFFD}".as_bytes());
        let braces = [b"\\u{".as_slice(), &b"0".repeat(N), b"41}"].concat();
        assert_eq!(run(JsDecode, &braces), b"A");
    }

    #[test]
    fn every_transform_handles_empty_input() {
        for t in Transform::ALL {
            assert!(is_borrowed(t, b""), "{t}");
        }
    }
}
