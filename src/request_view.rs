//! Request view: the bounded, normalised picture of one request that every
//! rule target of SPEC §5 reads; built once per request after `read_body`.
//!
//! Why one view, built once: every rule, detector and exclusion must see the
//! same decoding of the same bytes. Parsing lazily per rule invites two
//! answers to "what is argument `q`?", and that gap is where parameter
//! pollution and content-type confusion live. Whatever this module cannot
//! read unambiguously it refuses ([`ViewError`]) instead of guessing.
//!
//! # Targets
//!
//! Every target is a list of [`Field`]s `(kind, name, value)`; values are
//! bytes (they may be non-UTF-8 after `%XX` decoding).
//!
//! | target              | name                          | value                                  |
//! |---------------------|-------------------------------|----------------------------------------|
//! | `method`, `uri`, `path`, `query` | empty            | raw, as received (no decoding)         |
//! | `args_get`          | decoded query key             | decoded query value                    |
//! | `args_post`         | form key / multipart field / JSON path | decoded value / part body / JSON leaf |
//! | `args`              | selector: `args_get` ∪ `args_post` |                                   |
//! | `args_names`        | the name                      | the name (one per occurrence)          |
//! | `headers`           | lower-case header name        | each value, raw                        |
//! | `header_names`      | the name                      | the name (one per distinct header)     |
//! | `cookies`           | cookie name                   | cookie value, raw                      |
//! | `cookie_names`      | the name                      | the name                               |
//! | `body`              | empty                         | body after Content-Encoding and latin-1 → UTF-8 (multipart: not transcoded) |
//! | `json`              | path (`user.roles[0]`)        | a key ([`FieldRole::Key`]) or a leaf    |
//! | `xml`               | `elem` (text) or `elem@attr`  | text node / CDATA / attribute value    |
//! | `files`             | multipart field name          | upload file name                       |
//! | `files_content`     | multipart field name          | first `max_file_bytes` of the upload   |
//! | `multipart_headers` | lower-case part header name   | part header value (not in SPEC §5: extra, for rules on part headers) |
//!
//! Repeated query or form keys (`a=1&a=2`) give one field per occurrence
//! *and* one [`FieldRole::Joined`] field (`1,2`, the ASP.NET reading), so a
//! payload split across repeats is still seen whole. JSON leaves are also
//! copied into `args_post` (name = path) so `args` rules cover JSON APIs.
//! An argument, JSON leaf or cookie that is wholly base64 of text also
//! yields the decoded text as a field of the same kind and name (see
//! `base64_texts`), as GraphQL string literals do.
//!
//! # Decoding done here, exactly once
//!
//! - Query and urlencoded form: `%XX` → byte and `+` → space, once. Invalid
//!   escapes (`%zz`, `%u1234`, a trailing `%`) stay literal, as most
//!   backends keep them. `&` is the only separator: `;` is *not* one (only a
//!   few legacy stacks split on it); `a=1;b=2` is the single argument
//!   `a` = `1;b=2`, which rules therefore see whole. Empty pieces (`&&`) are
//!   skipped; `k` without `=` is `k` = empty; `=v` is the empty name.
//! - Everything else stays raw: further transforms (`url_decode_uni`, HTML
//!   entities, lower-casing) are the rule engine's, so applying them here
//!   would decode twice.
//! - Cookies are split on `;`, trimmed, split at the first `=`, and *not*
//!   URL-decoded (RFC 6265 defines no decoding; quotes are kept).
//! - JSON strings have their JSON escapes decoded; numbers appear in
//!   canonical form (`1.0e2` → `100.0`).
//! - XML: the five predefined entities and character references are decoded;
//!   any other `&name;` is left verbatim — entities are never expanded.
//! - `path`, `query`, `uri`: raw, as received.
//!
//! # Refusals and the status the caller should answer
//!
//! | error                   | status | when                                          |
//! |-------------------------|--------|-----------------------------------------------|
//! | `Malformed(reason)`     | 400    | syntax we refuse to guess about (strict multipart, bad JSON, bad Content-Type, corrupt gzip) |
//! | `Ambiguous(reason)`     | 400    | two readings possible (two Content-Types, charset vs BOM/XML declaration) |
//! | `TooComplex(reason)`    | 413    | more fields or deeper nesting than the limits |
//! | `TooLarge`              | 413    | decoded body over `max_body` (complete bodies only) |
//! | `DecompressionBomb`     | 413    | decoded/encoded ratio over the limit          |
//! | `UnsupportedEncoding(_)`| 415    | `br`, `zstd`, `compress`, unknown or stacked codings |
//! | `UnsupportedCharset(_)` | 415    | any charset but UTF-8 / US-ASCII / ISO-8859-1; UTF-16/32 by BOM or NUL pattern |
//!
//! Limits are 413 rather than 400: the request may be well-formed, we just
//! will not inspect that much of it.
//!
//! A body the caller could not read whole (`truncated`) is exposed as raw
//! `body` only (urlencoded forms are also parsed, a prefix of a form is
//! still a form); structured parsers never run on a prefix, and what to do
//! with an uninspected rest (`over_inspect_limit`) is the caller's decision.

use std::borrow::Cow;
use std::fmt;
use std::io::{ErrorKind, Read, Write as _};

use bytes::{Bytes, BytesMut};
use flate2::bufread::{DeflateDecoder, GzDecoder, ZlibDecoder};
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Inspected body bytes (raw and after decompression): the gateway's default
/// `inspect_body_bytes`.
pub const DEFAULT_MAX_BODY: usize = crate::config::DEFAULT_INSPECT_BODY_BYTES;
/// Counted fields per request (see [`ViewLimits::max_fields`]).
pub const DEFAULT_MAX_FIELDS: usize = 4096;
/// Nesting depth of JSON containers and XML elements.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;
/// Bytes of each uploaded file exposed as `files_content`.
pub const DEFAULT_MAX_FILE_BYTES: usize = 64 * 1024;
/// Length of a JSON path used as a field name; longer paths are cut (the
/// key itself is still a full `json` value, so nothing escapes inspection).
pub const DEFAULT_MAX_NAME_BYTES: usize = 1024;
/// Decompressed bytes allowed per compressed byte ...
pub const DEFAULT_MAX_DECOMPRESS_RATIO: usize = 100;
/// ... once the output exceeds this (small bodies compress very well).
pub const DEFAULT_RATIO_FREE_BYTES: usize = 64 * 1024;
/// RFC 2046: a boundary is 1 to 70 characters.
pub const MAX_BOUNDARY_LEN: usize = 70;
/// serde_json stops at 128 levels with a syntax error; our depth check has to
/// fire first so a deep body is `TooComplex`, not `Malformed`.
const JSON_DEPTH_CEILING: usize = 120;

/// Bounds on what one request may make the view hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewLimits {
    /// Body bytes inspected, raw and after decompression.
    pub max_body: usize,
    /// Fields an attacker can multiply: each query/form argument, JSON key
    /// and leaf, XML text node and attribute, multipart part and part header,
    /// cookie and header. Derived copies (`*_names`, joined repeats, the
    /// `args_post` copy of JSON leaves, `files_content`) are not counted, so
    /// the view holds at most about 4 × this many fields.
    pub max_fields: usize,
    /// Nesting depth of JSON and XML (capped at 120).
    pub max_json_depth: usize,
    /// Bytes of each upload exposed in `files_content`.
    pub max_file_bytes: usize,
    /// Length of a JSON path used as a name.
    pub max_name_bytes: usize,
    /// Decompressed : compressed ratio allowed past `ratio_free_bytes`.
    pub max_decompress_ratio: usize,
    pub ratio_free_bytes: usize,
}

impl Default for ViewLimits {
    fn default() -> Self {
        ViewLimits {
            max_body: DEFAULT_MAX_BODY,
            max_fields: DEFAULT_MAX_FIELDS,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_decompress_ratio: DEFAULT_MAX_DECOMPRESS_RATIO,
            ratio_free_bytes: DEFAULT_RATIO_FREE_BYTES,
        }
    }
}

/// Why a request cannot be inspected; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("ambiguous request: {0}")]
    Ambiguous(&'static str),
    #[error("request too complex to inspect: {0}")]
    TooComplex(&'static str),
    #[error("decoded body exceeds the inspection limit")]
    TooLarge,
    #[error("decompression ratio exceeds the limit")]
    DecompressionBomb,
    #[error("unsupported content encoding: {0}")]
    UnsupportedEncoding(&'static str),
    #[error("unsupported charset: {0}")]
    UnsupportedCharset(&'static str),
}

impl ViewError {
    /// Suggested response status (400, 413 or 415; see the module docs).
    pub fn status(&self) -> u16 {
        match self {
            ViewError::Malformed(_) | ViewError::Ambiguous(_) => 400,
            ViewError::TooComplex(_) | ViewError::TooLarge | ViewError::DecompressionBomb => 413,
            ViewError::UnsupportedEncoding(_) | ViewError::UnsupportedCharset(_) => 415,
        }
    }

    /// Stable detail for logs and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ViewError::Malformed(r)
            | ViewError::Ambiguous(r)
            | ViewError::TooComplex(r)
            | ViewError::UnsupportedEncoding(r)
            | ViewError::UnsupportedCharset(r) => r,
            ViewError::TooLarge => "body_too_large",
            ViewError::DecompressionBomb => "decompression_bomb",
        }
    }
}

/// A rule target (SPEC §5, request side), plus `multipart_headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// Selector only: matches `ArgsGet` and `ArgsPost` fields.
    Args,
    ArgsGet,
    ArgsPost,
    ArgsNames,
    Path,
    Query,
    Uri,
    Method,
    Headers,
    HeaderNames,
    Cookies,
    CookieNames,
    Body,
    Json,
    Xml,
    Files,
    FilesContent,
    MultipartHeaders,
}

impl TargetKind {
    pub const ALL: [TargetKind; 18] = [
        TargetKind::Args,
        TargetKind::ArgsGet,
        TargetKind::ArgsPost,
        TargetKind::ArgsNames,
        TargetKind::Path,
        TargetKind::Query,
        TargetKind::Uri,
        TargetKind::Method,
        TargetKind::Headers,
        TargetKind::HeaderNames,
        TargetKind::Cookies,
        TargetKind::CookieNames,
        TargetKind::Body,
        TargetKind::Json,
        TargetKind::Xml,
        TargetKind::Files,
        TargetKind::FilesContent,
        TargetKind::MultipartHeaders,
    ];

    /// The name used in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Args => "args",
            TargetKind::ArgsGet => "args_get",
            TargetKind::ArgsPost => "args_post",
            TargetKind::ArgsNames => "args_names",
            TargetKind::Path => "path",
            TargetKind::Query => "query",
            TargetKind::Uri => "uri",
            TargetKind::Method => "method",
            TargetKind::Headers => "headers",
            TargetKind::HeaderNames => "header_names",
            TargetKind::Cookies => "cookies",
            TargetKind::CookieNames => "cookie_names",
            TargetKind::Body => "body",
            TargetKind::Json => "json",
            TargetKind::Xml => "xml",
            TargetKind::Files => "files",
            TargetKind::FilesContent => "files_content",
            TargetKind::MultipartHeaders => "multipart_headers",
        }
    }

    pub fn parse(s: &str) -> Option<TargetKind> {
        TargetKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a stored field of kind `stored` belongs to this target.
    fn covers(self, stored: TargetKind) -> bool {
        self == stored
            || (self == TargetKind::Args
                && matches!(stored, TargetKind::ArgsGet | TargetKind::ArgsPost))
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a field's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRole {
    /// An ordinary value (for `*_names` targets the value is the name).
    Value,
    /// All values of a repeated key joined with `,`.
    Joined,
    /// A JSON object key (name = path of the key, value = the key).
    Key,
}

/// One inspectable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub kind: TargetKind,
    pub name: Bytes,
    pub value: Bytes,
    pub role: FieldRole,
}

impl Field {
    pub fn name_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    pub fn value_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

/// Which body parser produced the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    /// No body.
    #[default]
    None,
    /// Raw `body` only (unknown or missing type, truncated, malformed XML).
    Raw,
    Form,
    Json,
    Multipart,
    Xml,
}

/// The Content-Encoding that was undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentCoding {
    #[default]
    Identity,
    Gzip,
    Deflate,
}

/// The only charsets inspected; anything else is refused. The single-byte
/// ones are transcoded to UTF-8 before inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    /// UTF-8, or US-ASCII (read as its UTF-8 superset).
    #[default]
    Utf8,
    /// ISO-8859-1.
    Latin1,
    /// ISO-8859-15 (Latin-1 with €, Š, š, Ž, ž, Œ, œ, Ÿ).
    Latin9,
    /// Windows-1252 (Latin-1 with printable characters in 0x80–0x9F).
    Windows1252,
}

/// The normalised, bounded view of one request.
#[derive(Debug, Clone, Default)]
pub struct RequestView {
    fields: Vec<Field>,
    pub body_kind: BodyKind,
    pub content_coding: ContentCoding,
    pub charset: Charset,
    /// The body seen is a prefix (longer than `max_body`, or shorter than its
    /// Content-Length, or built with [`RequestView::build_prefix`]).
    pub truncated: bool,
    /// A `text/plain` body that parsed as JSON and is exposed as `json`
    /// (backends that parse by sniffing would read it as JSON).
    pub json_sniffed: bool,
    /// The XML body has a DOCTYPE.
    pub xml_has_doctype: bool,
    /// The DOCTYPE declares entities (`<!ENTITY`): the XXE signal.
    pub xml_entities: bool,
    /// The DOCTYPE names an external id (`SYSTEM` / `PUBLIC`).
    pub xml_external_dtd: bool,
    /// The body claimed XML but is not well-formed: only `body` is exposed.
    pub xml_malformed: bool,
}

impl RequestView {
    /// Builds the view. `body` may be longer than `limits.max_body` (only the
    /// first `max_body` bytes are inspected and `truncated` is set) or a
    /// prefix shorter than the declared Content-Length (`truncated` too).
    /// Copies `body` once; [`RequestView::build_bytes`] avoids even that.
    pub fn build(
        parts: &Parts,
        body: &[u8],
        limits: &ViewLimits,
    ) -> Result<RequestView, ViewError> {
        let keep = body.len().min(limits.max_body);
        let complete = body.len() <= limits.max_body && !shorter_than_declared(parts, body.len());
        build_inner(
            parts,
            Bytes::copy_from_slice(&body[..keep]),
            complete,
            limits,
        )
    }

    /// [`RequestView::build`] on a shared buffer: values that needed no
    /// decoding are slices of `body`, not copies.
    pub fn build_bytes(
        parts: &Parts,
        body: Bytes,
        limits: &ViewLimits,
    ) -> Result<RequestView, ViewError> {
        let keep = body.len().min(limits.max_body);
        let complete = body.len() <= limits.max_body && !shorter_than_declared(parts, body.len());
        build_inner(parts, body.slice(..keep), complete, limits)
    }

    /// For a body the caller knows is incomplete (a streamed body's
    /// buffered prefix): always `truncated`.
    pub fn build_prefix(
        parts: &Parts,
        body: Bytes,
        limits: &ViewLimits,
    ) -> Result<RequestView, ViewError> {
        let keep = body.len().min(limits.max_body);
        build_inner(parts, body.slice(..keep), false, limits)
    }

    /// Every field, in build order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The fields of a target (`Args` yields `ArgsGet` and `ArgsPost`,
    /// including [`FieldRole::Joined`] fields). A linear scan: fields are
    /// bounded and a rule set walks each target once per transform chain.
    pub fn values(&self, kind: TargetKind) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(move |f| kind.covers(f.kind))
    }

    /// `kind:name` — every match, joined fields included. Header and part
    /// header names compare case-insensitively; other names exactly.
    pub fn get_all<'a>(
        &'a self,
        kind: TargetKind,
        name: &'a [u8],
    ) -> impl Iterator<Item = &'a Field> {
        let ci = matches!(kind, TargetKind::Headers | TargetKind::MultipartHeaders);
        self.values(kind).filter(move |f| {
            if ci {
                f.name.eq_ignore_ascii_case(name)
            } else {
                f.name[..] == *name
            }
        })
    }

    /// The first value of `kind:name` (for a repeated key: its first
    /// occurrence). Joined fields and JSON keys are skipped; use
    /// [`RequestView::get_all`] to see every match.
    pub fn get(&self, kind: TargetKind, name: impl AsRef<[u8]>) -> Option<&Field> {
        let name = name.as_ref();
        let ci = matches!(kind, TargetKind::Headers | TargetKind::MultipartHeaders);
        self.values(kind).find(|f| {
            f.role == FieldRole::Value
                && if ci {
                    f.name.eq_ignore_ascii_case(name)
                } else {
                    f.name[..] == *name
                }
        })
    }

    /// Was the body parsed into argument fields (a urlencoded form or a
    /// JSON document), each of its bytes in an `args_post` value or an
    /// `args_names` name? (A multipart body is not: its uploads are not
    /// arguments.)
    pub fn body_as_args(&self) -> bool {
        matches!(self.body_kind, BodyKind::Form | BodyKind::Json)
    }

    /// The inspected body (decoded), if there was one.
    pub fn body(&self) -> Option<&Bytes> {
        self.values(TargetKind::Body).next().map(|f| &f.value)
    }
}

fn shorter_than_declared(parts: &Parts, have: usize) -> bool {
    parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > have as u64)
}

fn build_inner(
    parts: &Parts,
    body: Bytes,
    complete: bool,
    limits: &ViewLimits,
) -> Result<RequestView, ViewError> {
    // Two Content-Types: a backend may take either; we cannot know which.
    let mut cts = parts.headers.get_all(header::CONTENT_TYPE).iter();
    let ct = cts.next();
    if cts.next().is_some() {
        return Err(ViewError::Ambiguous("content_type"));
    }
    let mut col = Collector::new(estimate_fields(parts), limits.max_fields);
    request_line_and_headers(parts, &mut col)?;
    let mut view = RequestView {
        truncated: !complete,
        ..RequestView::default()
    };
    if !body.is_empty() {
        parse_body(
            &mut view,
            &mut col,
            &parts.headers,
            ct,
            body,
            complete,
            limits,
        )?;
    }
    graphql_literals(&mut col)?;
    base64_texts(&mut col)?;
    view.fields = col.fields;
    Ok(view)
}

// ---------------------------------------------------------------------------
// Base64 of text

/// At most this many decoded values of one request become fields.
const MAX_BASE64_TEXTS: usize = 64;

/// An argument, JSON leaf or cookie whose whole value is base64 of text
/// (`?data=JyBPUiAxPTEtLQ==`, a base64 JSON member; see
/// `detect::encoded` for what counts) is handed to the application, which
/// decodes it and passes the text on: that text becomes a field of its own
/// (same kind and name, so exclusions by name still apply), and every rule
/// reads it as it reads a value sent in plain. Tokens, hashes, ids and
/// binary blobs do not decode to text and add nothing.
fn base64_texts(col: &mut Collector) -> Result<(), ViewError> {
    let candidates: Vec<(TargetKind, Bytes, Bytes)> = col
        .fields
        .iter()
        .enumerate()
        .filter(|&(i, f)| {
            // A JSON leaf's `args_post` copy follows it, same bytes: it is
            // decoded once (and copied below).
            let json_copy = f.kind == TargetKind::ArgsPost
                && i.checked_sub(1)
                    .and_then(|j| col.fields.get(j))
                    .is_some_and(|prev| {
                        prev.kind == TargetKind::Json
                            && prev.value.as_ptr() == f.value.as_ptr()
                            && prev.value.len() == f.value.len()
                    });
            f.role == FieldRole::Value
                && !json_copy
                && matches!(
                    f.kind,
                    TargetKind::ArgsGet
                        | TargetKind::ArgsPost
                        | TargetKind::Json
                        | TargetKind::Cookies
                )
        })
        .filter_map(|(_, f)| {
            let text = crate::rules::detect::encoded::decoded_text(&f.value)?;
            Some((f.kind, f.name.clone(), Bytes::from(text)))
        })
        .take(MAX_BASE64_TEXTS)
        .collect();
    for (kind, name, text) in &candidates {
        col.push(*kind, name.clone(), text.clone(), FieldRole::Value)?;
        if *kind == TargetKind::Json {
            col.alias(
                TargetKind::ArgsPost,
                name.clone(),
                text.clone(),
                FieldRole::Value,
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// GraphQL

/// At most this many string literals of one GraphQL document become fields.
const MAX_GRAPHQL_LITERALS: usize = 256;

/// A GraphQL document carried in a `query` parameter or JSON member
/// (`{"query": "query { user(name: \"…\") { id } }"}`, `GET
/// /graphql?query=…`): each string literal in it is an argument the
/// resolver hands on as a parameter, so it becomes a field of its own
/// (same kind and name as the document: `json` + `args_post`, or
/// `args_get`). Judged inside the whole document, a payload is followed by
/// the rest of the query (`admin'--") { id } }`) and reads differently.
/// Variables are JSON members already.
fn graphql_literals(col: &mut Collector) -> Result<(), ViewError> {
    let docs: Vec<(TargetKind, Bytes, Bytes)> = col
        .fields
        .iter()
        .filter(|f| {
            f.role == FieldRole::Value
                && matches!(f.kind, TargetKind::Json | TargetKind::ArgsGet)
                && (f.name == "query" || f.name.ends_with(b".query"))
                && looks_like_graphql(&f.value)
        })
        .map(|f| (f.kind, f.name.clone(), f.value.clone()))
        .collect();
    for (kind, name, doc) in docs {
        for lit in string_literals(&doc).into_iter().take(MAX_GRAPHQL_LITERALS) {
            let lit = Bytes::from(lit);
            col.push(kind, name.clone(), lit.clone(), FieldRole::Value)?;
            if kind == TargetKind::Json {
                col.alias(TargetKind::ArgsPost, name.clone(), lit, FieldRole::Value);
            }
        }
    }
    Ok(())
}

/// A GraphQL executable document: a selection set, or an operation or
/// fragment keyword, first.
fn looks_like_graphql(v: &[u8]) -> bool {
    let v = v.trim_ascii_start();
    if v.first() == Some(&b'{') {
        // Not JSON text (`{"a": 1}`): a selection starts with a name.
        return v[1..]
            .trim_ascii_start()
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_' || *b == b'.');
    }
    ["query", "mutation", "subscription", "fragment"]
        .iter()
        .any(|k| {
            v.strip_prefix(k.as_bytes()).is_some_and(|rest| {
                rest.first()
                    .is_some_and(|b| b.is_ascii_whitespace() || matches!(b, b'{' | b'('))
            })
        })
}

/// The values of the string literals of a GraphQL document: `"…"` with its
/// escapes decoded, and `"""…"""` block strings as written; `#` comments
/// skipped. Empty literals are left out.
fn string_literals(doc: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < doc.len() {
        match doc[i] {
            b'#' => {
                i = doc[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(doc.len(), |e| i + e + 1);
            }
            b'"' if doc[i..].starts_with(b"\"\"\"") => {
                let start = i + 3;
                let mut j = start;
                let end = loop {
                    match doc.get(j..j + 3) {
                        None => break doc.len(),
                        Some(b"\"\"\"") if doc[j - 1] != b'\\' => break j,
                        _ => j += 1,
                    }
                };
                out.push(doc[start..end].to_vec());
                i = end + 3;
            }
            b'"' => {
                let mut lit = Vec::new();
                let mut j = i + 1;
                while j < doc.len() && doc[j] != b'"' && doc[j] != b'\n' {
                    if doc[j] == b'\\' && j + 1 < doc.len() {
                        j += 1;
                        match doc[j] {
                            b'n' => lit.push(b'\n'),
                            b'r' => lit.push(b'\r'),
                            b't' => lit.push(b'\t'),
                            b'b' => lit.push(0x08),
                            b'f' => lit.push(0x0C),
                            b'u' => {
                                let hex = doc.get(j + 1..j + 5).and_then(|h| {
                                    std::str::from_utf8(h)
                                        .ok()
                                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                                });
                                match hex {
                                    Some(cp) => {
                                        let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
                                        let mut buf = [0u8; 4];
                                        lit.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                                        j += 4;
                                    }
                                    None => lit.push(b'u'),
                                }
                            }
                            other => lit.push(other),
                        }
                    } else {
                        lit.push(doc[j]);
                    }
                    j += 1;
                }
                out.push(lit);
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    out.retain(|l| !l.is_empty());
    out
}

// ---------------------------------------------------------------------------
// Field collection

/// Pushes fields and enforces `max_fields` on the counted ones.
struct Collector {
    fields: Vec<Field>,
    counted: usize,
    max_fields: usize,
}

impl Collector {
    fn new(capacity: usize, max_fields: usize) -> Collector {
        Collector {
            fields: Vec::with_capacity(capacity),
            counted: 0,
            max_fields,
        }
    }

    /// A field the attacker can multiply: counted against `max_fields`.
    fn push(
        &mut self,
        kind: TargetKind,
        name: Bytes,
        value: Bytes,
        role: FieldRole,
    ) -> Result<(), ViewError> {
        self.counted += 1;
        if self.counted > self.max_fields {
            return Err(ViewError::TooComplex("too_many_fields"));
        }
        self.alias(kind, name, value, role);
        Ok(())
    }

    /// A derived copy of a counted field (or a singleton like `path`).
    fn alias(&mut self, kind: TargetKind, name: Bytes, value: Bytes, role: FieldRole) {
        self.fields.push(Field {
            kind,
            name,
            value,
            role,
        });
    }

    /// Room for about `more` fields a body parser is about to push (a
    /// hint counted from separators, so the list grows once instead of
    /// doubling through a large body; bounded by what `max_fields` lets
    /// through, each counted field with its two aliases).
    fn expect(&mut self, more: usize) {
        let room = self
            .max_fields
            .saturating_sub(self.counted)
            .saturating_mul(3);
        self.fields.reserve(more.min(room));
    }

    fn mark(&self) -> (usize, usize) {
        (self.fields.len(), self.counted)
    }

    fn rollback(&mut self, mark: (usize, usize)) {
        self.fields.truncate(mark.0);
        self.counted = mark.1;
    }
}

/// One allocation for the field list of a typical request: sized from what
/// the request line and headers will produce (body fields grow it later).
fn estimate_fields(parts: &Parts) -> usize {
    let count = |s: &[u8], b: u8| s.iter().filter(|&&c| c == b).count() + 1;
    let args = parts.uri.query().map_or(0, |q| count(q.as_bytes(), b'&'));
    let cookies: usize = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| count(v.as_bytes(), b';'))
        .sum();
    5 + parts.headers.len() + parts.headers.keys_len() + 3 * args + 2 * cookies
}

/// Adds a `Joined` field for every key of `kind` that repeats among the
/// fields pushed since `start`.
fn join_repeats(col: &mut Collector, start: usize, kind: TargetKind) {
    let fields = &col.fields;
    let mut idx: Vec<usize> = (start..fields.len())
        .filter(|&i| fields[i].kind == kind && fields[i].role == FieldRole::Value)
        .collect();
    if idx.len() < 2 {
        return;
    }
    // Stable: values keep their request order within a key.
    idx.sort_by(|&a, &b| fields[a].name.cmp(&fields[b].name));
    let mut joined = Vec::new();
    let mut g = 0;
    while g < idx.len() {
        let mut e = g + 1;
        while e < idx.len() && fields[idx[e]].name == fields[idx[g]].name {
            e += 1;
        }
        if e - g > 1 {
            let len = idx[g..e].iter().map(|&i| fields[i].value.len() + 1).sum();
            let mut v = Vec::with_capacity(len);
            for (n, &i) in idx[g..e].iter().enumerate() {
                if n > 0 {
                    v.push(b',');
                }
                v.extend_from_slice(&fields[i].value);
            }
            joined.push((fields[idx[g]].name.clone(), Bytes::from(v)));
        }
        g = e;
    }
    for (name, value) in joined {
        col.alias(kind, name, value, FieldRole::Joined);
    }
}

// ---------------------------------------------------------------------------
// Request line, headers, cookies, query

/// At most this many tails of one path are inspected besides the whole path.
const MAX_PATH_TAILS: usize = 8;

/// Where the `path` values of a request start: the whole path (offset 0),
/// then — when the path holds a byte a route slug does not — each tail that
/// begins at a segment holding one. An application that routes
/// `/proxy/{url}` or `/files/{name}` splices that segment as it would a
/// parameter, and a payload there (`/p/| id`, `/p/{{7*7}}`,
/// `/fetch/http://169.254.169.254/`) starts at the segment, not at the
/// first `/`; rules written for values (anchored at the start, judging the
/// whole value) read the tail as they read a parameter. The payload may
/// itself hold `/`, so a tail runs to the end of the path rather than to
/// the next `/`. Plain paths (`/api/v1/users/42`) get no tails: they cost
/// nothing more.
fn path_tails(path: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let slug = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~');
    let plain = path.iter().all(slug);
    let mut starts = Vec::new();
    if !plain {
        let mut seg = 0;
        while seg < path.len() && starts.len() < MAX_PATH_TAILS {
            let end = path[seg..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |e| seg + e);
            if seg > 0 && !path[seg..end].iter().all(slug) {
                starts.push(seg);
            }
            seg = end + 1;
        }
    }
    std::iter::once(0).chain(starts)
}

/// Copies the method, URI and every header into one buffer (one allocation,
/// whatever the header bytes) and exposes slices of it.
fn request_line_and_headers(parts: &Parts, col: &mut Collector) -> Result<(), ViewError> {
    let uri = &parts.uri;
    let method = parts.method.as_str();
    let prefix = match (uri.scheme_str(), uri.authority()) {
        (Some(s), Some(a)) => [s, "://", a.as_str()],
        (None, Some(a)) => ["", "", a.as_str()],
        _ => ["", "", ""],
    };
    let pq = uri.path_and_query().map_or("", |p| p.as_str());
    let path = uri.path();
    let query = uri.query();
    let headers = &parts.headers;

    let mut len = method.len() + prefix.iter().map(|s| s.len()).sum::<usize>();
    len += pq.len() + path.len() + query.map_or(0, str::len);
    for name in headers.keys() {
        len += name.as_str().len();
        len += headers
            .get_all(name)
            .iter()
            .map(HeaderValue::len)
            .sum::<usize>();
    }
    let mut buf = BytesMut::with_capacity(len);
    buf.extend_from_slice(method.as_bytes());
    for p in prefix {
        buf.extend_from_slice(p.as_bytes());
    }
    buf.extend_from_slice(pq.as_bytes());
    let uri_end = buf.len();
    buf.extend_from_slice(path.as_bytes());
    let path_end = buf.len();
    if let Some(q) = query {
        buf.extend_from_slice(q.as_bytes());
    }
    let query_end = buf.len();
    for name in headers.keys() {
        buf.extend_from_slice(name.as_str().as_bytes());
        for v in headers.get_all(name) {
            buf.extend_from_slice(v.as_bytes());
        }
    }
    let arena = buf.freeze();

    let none = Bytes::new();
    let m = method.len();
    col.alias(
        TargetKind::Method,
        none.clone(),
        arena.slice(..m),
        FieldRole::Value,
    );
    col.alias(
        TargetKind::Uri,
        none.clone(),
        arena.slice(m..uri_end),
        FieldRole::Value,
    );
    let whole = arena.slice(uri_end..path_end);
    for start in path_tails(&whole) {
        col.alias(
            TargetKind::Path,
            none.clone(),
            whole.slice(start..),
            FieldRole::Value,
        );
    }
    if query.is_some() {
        let q = arena.slice(path_end..query_end);
        col.alias(TargetKind::Query, none, q.clone(), FieldRole::Value);
        parse_pairs(&q, TargetKind::ArgsGet, col, Charset::Utf8)?;
    }

    // Same walk as the copy above, so the offsets line up.
    let mut off = query_end;
    for name in headers.keys() {
        let n = arena.slice(off..off + name.as_str().len());
        off += n.len();
        col.alias(
            TargetKind::HeaderNames,
            n.clone(),
            n.clone(),
            FieldRole::Value,
        );
        let cookie = name == header::COOKIE;
        for v in headers.get_all(name) {
            let value = arena.slice(off..off + v.len());
            off += v.len();
            col.push(
                TargetKind::Headers,
                n.clone(),
                value.clone(),
                FieldRole::Value,
            )?;
            if cookie {
                parse_cookies(&value, col)?;
            }
        }
    }
    Ok(())
}

/// `a=1; b=2`: split on `;`, trim, split at the first `=`; no decoding.
fn parse_cookies(v: &Bytes, col: &mut Collector) -> Result<(), ViewError> {
    for (a, b) in pieces(v, b';') {
        let (a, b) = trim_range(v, a, b);
        if a == b {
            continue;
        }
        let (name, value) = match v[a..b].iter().position(|&c| c == b'=') {
            Some(eq) => {
                let (na, nb) = trim_range(v, a, a + eq);
                let (va, vb) = trim_range(v, a + eq + 1, b);
                (v.slice(na..nb), v.slice(va..vb))
            }
            None => (v.slice(a..b), Bytes::new()),
        };
        col.push(TargetKind::Cookies, name.clone(), value, FieldRole::Value)?;
        col.alias(
            TargetKind::CookieNames,
            name.clone(),
            name,
            FieldRole::Value,
        );
    }
    Ok(())
}

/// Query string or urlencoded body: `&`-separated `name=value` pairs,
/// decoded once (see the module docs), repeats joined.
fn parse_pairs(
    src: &Bytes,
    kind: TargetKind,
    col: &mut Collector,
    cs: Charset,
) -> Result<(), ViewError> {
    let start = col.fields.len();
    // Every name and value is decoded into one buffer, and the fields are
    // slices of it (or of the source, when nothing is escaped): one
    // allocation per query or body at most, not two per pair.
    // A value and its name per pair.
    col.expect(2 * (memchr::memchr_iter(b'&', src).count() + 1));
    let escaped = memchr::memchr2(b'%', b'+', src).is_some();
    let mut buf = Vec::with_capacity(if escaped { src.len() } else { 0 });
    let mut spans = Vec::new();
    for (a, b) in pieces(src, b'&') {
        if a == b {
            continue;
        }
        let eq = memchr::memchr(b'=', &src[a..b]).map(|e| a + e);
        let (name, value) = match eq {
            Some(eq) => (a..eq, eq + 1..b),
            None => (a..b, b..b),
        };
        if !escaped {
            spans.push((name, value));
            continue;
        }
        let n0 = buf.len();
        url_decode_into(&src[name], &mut buf);
        let n1 = buf.len();
        url_decode_into(&src[value], &mut buf);
        spans.push((n0..n1, n1..buf.len()));
    }
    let buf = if escaped {
        Bytes::from(buf)
    } else {
        src.clone()
    };
    for (n, v) in spans {
        let (mut name, mut value) = (buf.slice(n), buf.slice(v));
        if cs != Charset::Utf8 {
            // The escapes encode single-byte-charset bytes, so transcode
            // after decoding.
            name = to_utf8(&name, cs);
            value = to_utf8(&value, cs);
        }
        col.push(kind, name.clone(), value, FieldRole::Value)?;
        col.alias(TargetKind::ArgsNames, name.clone(), name, FieldRole::Value);
    }
    join_repeats(col, start, kind);
    Ok(())
}

/// `%XX` → byte, `+` → space; anything else (including bad escapes) stays.
/// Appends to `out` (the `url_decode` transform's decoder).
fn url_decode_into(s: &[u8], out: &mut Vec<u8>) {
    crate::rules::transform::url_decode_into(s, false, out);
}

/// Windows-1252 0x80–0x9F (the five unassigned bytes keep their C1 code
/// points, as the WHATWG Encoding Standard does).
const CP1252_HIGH: [u32; 32] = [
    0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
];

/// The code point of byte `c` in a single-byte charset.
fn single_byte_char(c: u8, cs: Charset) -> u32 {
    match (cs, c) {
        (Charset::Windows1252, 0x80..=0x9F) => CP1252_HIGH[usize::from(c - 0x80)],
        (Charset::Latin9, 0xA4) => 0x20AC,
        (Charset::Latin9, 0xA6) => 0x0160,
        (Charset::Latin9, 0xA8) => 0x0161,
        (Charset::Latin9, 0xB4) => 0x017D,
        (Charset::Latin9, 0xB8) => 0x017E,
        (Charset::Latin9, 0xBC) => 0x0152,
        (Charset::Latin9, 0xBD) => 0x0153,
        (Charset::Latin9, 0xBE) => 0x0178,
        _ => u32::from(c),
    }
}

/// A single-byte charset → UTF-8 (UTF-8 input is returned as is).
fn to_utf8(b: &Bytes, cs: Charset) -> Bytes {
    if cs == Charset::Utf8 || b.is_ascii() {
        return b.clone();
    }
    let mut out = Vec::with_capacity(b.len() + b.len() / 2);
    let mut buf = [0u8; 4];
    for &c in b.iter() {
        if c < 0x80 {
            out.push(c);
        } else {
            let ch = char::from_u32(single_byte_char(c, cs)).unwrap_or('\u{FFFD}');
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
    }
    Bytes::from(out)
}

// ---------------------------------------------------------------------------
// Body: coding, charset, dispatch

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Raw,
    /// `text/plain`: raw, and JSON when it parses as JSON.
    Text,
    Form,
    Json,
    Xml,
    Multipart(Vec<u8>),
}

#[allow(clippy::too_many_arguments)]
fn parse_body(
    view: &mut RequestView,
    col: &mut Collector,
    headers: &HeaderMap,
    ct: Option<&HeaderValue>,
    raw: Bytes,
    complete: bool,
    limits: &ViewLimits,
) -> Result<(), ViewError> {
    let mt = match ct {
        None => None,
        Some(v) => Some(MediaType::parse(v.as_bytes()).map_err(|e| match e {
            MtError::Syntax => ViewError::Malformed("content_type_syntax"),
            MtError::DuplicateBoundary => ViewError::Malformed("multipart_duplicate_boundary"),
            MtError::DuplicateParam => ViewError::Ambiguous("content_type_param"),
        })?),
    };
    let coding = content_coding(headers)?;
    let (body, complete) = decode_coding(&raw, coding, complete, limits)?;
    view.content_coding = coding;
    view.truncated = !complete;

    let kind = classify(mt.as_ref())?;
    let declared = match mt.as_ref().and_then(|m| m.param("charset")) {
        Some(p) => Some(charset_from(&p.value)?),
        None => None,
    };
    let textual = matches!(kind, Kind::Text | Kind::Form | Kind::Json | Kind::Xml)
        || mt.as_ref().is_some_and(|m| m.essence.starts_with("text/"));
    let utf8_bom = textual && check_text_encoding(&body)?;
    let skip = if utf8_bom { 3 } else { 0 };
    let mut charset = declared.unwrap_or_default();
    if kind == Kind::Xml
        && let Some(enc) = xml_decl_encoding(&body[skip..])
    {
        let c = charset_from(enc)?;
        if declared.is_some_and(|d| d != c) {
            return Err(ViewError::Ambiguous("charset"));
        }
        charset = c;
    }
    if utf8_bom && charset != Charset::Utf8 {
        return Err(ViewError::Ambiguous("charset_bom"));
    }
    view.charset = charset;
    // multipart/form-data has no body-wide charset (RFC 7578 §5.1); parts
    // carry their own, and uploads must keep their bytes.
    let multipart = matches!(kind, Kind::Multipart(_));
    let text = if !multipart {
        to_utf8(&body, charset)
    } else {
        body.clone()
    };
    col.alias(
        TargetKind::Body,
        Bytes::new(),
        text.clone(),
        FieldRole::Value,
    );
    view.body_kind = BodyKind::Raw;

    if !complete {
        if kind == Kind::Form {
            parse_pairs(&body, TargetKind::ArgsPost, col, charset)?;
            view.body_kind = BodyKind::Form;
        }
        return Ok(());
    }
    match kind {
        Kind::Raw => {}
        Kind::Form => {
            parse_pairs(&body, TargetKind::ArgsPost, col, charset)?;
            view.body_kind = BodyKind::Form;
        }
        Kind::Json => {
            parse_json(&text.slice(skip..), col, limits)?;
            view.body_kind = BodyKind::Json;
        }
        Kind::Text => {
            let t = text.slice(skip..);
            let first = t
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
            if matches!(first, Some(b'{' | b'[')) {
                let mark = col.mark();
                match parse_json(&t, col, limits) {
                    Ok(()) => {
                        view.body_kind = BodyKind::Json;
                        view.json_sniffed = true;
                    }
                    // Not JSON after all: plain text.
                    Err(ViewError::Malformed(_)) => col.rollback(mark),
                    // Too deep or too many fields is refused as for a JSON
                    // type, or a sniffing backend would get it uninspected.
                    Err(e) => return Err(e),
                }
            }
        }
        Kind::Xml => {
            view.body_kind = BodyKind::Xml;
            let mut flags = XmlFlags::default();
            let mark = col.mark();
            let depth = limits.max_json_depth;
            let res = parse_xml(&text.slice(skip..), col, depth, &mut flags);
            view.xml_has_doctype = flags.doctype;
            view.xml_entities = flags.entities;
            view.xml_external_dtd = flags.external;
            match res {
                Ok(()) => {}
                Err(XmlFail::Malformed) => {
                    col.rollback(mark);
                    view.xml_malformed = true;
                    view.body_kind = BodyKind::Raw;
                }
                Err(XmlFail::Limit(e)) => return Err(e),
            }
        }
        Kind::Multipart(boundary) => {
            parse_multipart(&body, &boundary, charset, col, limits)?;
            view.body_kind = BodyKind::Multipart;
        }
    }
    Ok(())
}

fn classify(mt: Option<&MediaType>) -> Result<Kind, ViewError> {
    let Some(m) = mt else {
        // No type: nobody agreed on a format, so only the raw body.
        return Ok(Kind::Raw);
    };
    let e = m.essence.as_str();
    let sub = e.split_once('/').map_or("", |(_, s)| s);
    Ok(match e {
        "application/x-www-form-urlencoded" => Kind::Form,
        "multipart/form-data" => Kind::Multipart(boundary(m)?),
        "application/json" => Kind::Json,
        "text/xml" | "application/xml" => Kind::Xml,
        "text/plain" => Kind::Text,
        _ if sub.ends_with("+json") => Kind::Json,
        _ if sub.ends_with("+xml") => Kind::Xml,
        _ => Kind::Raw,
    })
}

/// RFC 2046 boundary: 1–70 of `bchars`, not ending in a space, no escapes.
fn boundary(m: &MediaType) -> Result<Vec<u8>, ViewError> {
    let p = m
        .param("boundary")
        .ok_or(ViewError::Malformed("multipart_no_boundary"))?;
    let b = &p.value;
    let bchar = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    if p.escaped
        || b.is_empty()
        || b.len() > MAX_BOUNDARY_LEN
        || b.last() == Some(&b' ')
        || !b.iter().all(|&c| bchar(c))
    {
        return Err(ViewError::Malformed("multipart_boundary_syntax"));
    }
    Ok(b.clone())
}

fn charset_from(v: &[u8]) -> Result<Charset, ViewError> {
    let is = |names: &[&str]| names.iter().any(|n| v.eq_ignore_ascii_case(n.as_bytes()));
    let starts = |p: &str| v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    if is(&["utf-8", "utf8", "us-ascii", "ascii"]) {
        Ok(Charset::Utf8)
    } else if is(&[
        "iso-8859-1",
        "iso_8859-1",
        "iso8859-1",
        "latin1",
        "latin-1",
        "l1",
    ]) {
        Ok(Charset::Latin1)
    } else if is(&[
        "iso-8859-15",
        "iso_8859-15",
        "iso8859-15",
        "latin9",
        "latin-9",
        "l9",
    ]) {
        Ok(Charset::Latin9)
    } else if is(&["windows-1252", "cp1252", "x-cp1252"]) {
        Ok(Charset::Windows1252)
    } else if starts("utf-16") || starts("utf16") || starts("ucs-2") {
        Err(ViewError::UnsupportedCharset("utf-16"))
    } else if starts("utf-32") || starts("utf32") || starts("ucs-4") {
        Err(ViewError::UnsupportedCharset("utf-32"))
    } else {
        Err(ViewError::UnsupportedCharset("unsupported_charset"))
    }
}

/// Refuses UTF-16/32 text (by BOM, or by the NUL bytes ASCII characters
/// leave in them, RFC 4627 §3); returns whether a UTF-8 BOM leads.
fn check_text_encoding(b: &[u8]) -> Result<bool, ViewError> {
    if b.starts_with(&[0, 0, 0xFE, 0xFF]) || b.starts_with(&[0xFF, 0xFE, 0, 0]) {
        return Err(ViewError::UnsupportedCharset("utf-32"));
    }
    if b.starts_with(&[0xFE, 0xFF]) || b.starts_with(&[0xFF, 0xFE]) {
        return Err(ViewError::UnsupportedCharset("utf-16"));
    }
    if b.len() >= 2 && (b[0] == 0 || b[1] == 0) {
        let utf32 = b.len() >= 4 && (b[..3] == [0, 0, 0] || b[1..4] == [0, 0, 0]);
        return Err(ViewError::UnsupportedCharset(if utf32 {
            "utf-32"
        } else {
            "utf-16"
        }));
    }
    Ok(b.starts_with(&[0xEF, 0xBB, 0xBF]))
}

/// The Content-Encoding of a message, when it is one the view can undo
/// (`identity`, `gzip`, `deflate`, a single layer); `None` otherwise (`br`,
/// `zstd`, stacked or unknown codings).
pub fn decodable_coding(headers: &HeaderMap) -> Option<ContentCoding> {
    content_coding(headers).ok()
}

/// For the response phase: what the first bytes `raw` of a body in
/// `coding` decode to, at most `cap` bytes of it (a prefix of a stream
/// gives what its bytes decode to). An error when nothing decoded from a
/// stream that did not end (corrupt from its first bytes), or when it
/// expands beyond the decompression ratio; a stream of nothing is empty.
pub fn decode_body_prefix(
    raw: &Bytes,
    coding: ContentCoding,
    cap: usize,
) -> Result<Bytes, ViewError> {
    let limits = ViewLimits {
        max_body: cap,
        ..ViewLimits::default()
    };
    if coding == ContentCoding::Identity {
        return Ok(raw.slice(..raw.len().min(cap)));
    }
    let (out, ended, _) = inflate_coding(raw, coding, false, &limits)?;
    if out.is_empty() && !raw.is_empty() && !ended {
        return Err(ViewError::Malformed("compressed_corrupt"));
    }
    Ok(Bytes::from(out))
}

fn content_coding(headers: &HeaderMap) -> Result<ContentCoding, ViewError> {
    let mut found = ContentCoding::Identity;
    let mut n = 0;
    for v in headers.get_all(header::CONTENT_ENCODING) {
        for (a, b) in pieces(v.as_bytes(), b',') {
            let t = trim_ows(&v.as_bytes()[a..b]);
            if t.is_empty() || t.eq_ignore_ascii_case(b"identity") {
                continue;
            }
            let is = |names: &[&str]| names.iter().any(|n| t.eq_ignore_ascii_case(n.as_bytes()));
            let c = if is(&["gzip", "x-gzip"]) {
                ContentCoding::Gzip
            } else if is(&["deflate"]) {
                ContentCoding::Deflate
            } else if is(&["br"]) {
                return Err(ViewError::UnsupportedEncoding("br"));
            } else if is(&["zstd"]) {
                return Err(ViewError::UnsupportedEncoding("zstd"));
            } else if is(&["compress", "x-compress"]) {
                return Err(ViewError::UnsupportedEncoding("compress"));
            } else {
                return Err(ViewError::UnsupportedEncoding("unknown_encoding"));
            };
            n += 1;
            // Stacked codings are legal but a classic way to make the WAF
            // and the backend decode different numbers of layers.
            if n > 1 {
                return Err(ViewError::UnsupportedEncoding("stacked_encodings"));
            }
            found = c;
        }
    }
    Ok(found)
}

/// Undoes the Content-Encoding; returns the body and whether it is complete.
fn decode_coding(
    raw: &Bytes,
    coding: ContentCoding,
    complete: bool,
    limits: &ViewLimits,
) -> Result<(Bytes, bool), ViewError> {
    if coding == ContentCoding::Identity {
        return Ok((raw.clone(), complete));
    }
    let (out, done, rest) = inflate_coding(raw, coding, complete, limits)?;
    // Bytes after the compressed stream (a second gzip member, junk): some
    // decoders read on, others stop; refuse rather than pick one.
    if complete && done && rest > 0 {
        return Err(ViewError::Malformed("compressed_trailing_data"));
    }
    Ok((Bytes::from(out), complete && done))
}

/// Inflates `raw` (see [`inflate`]): the output, whether the stream ended,
/// and how many input bytes were left after it.
fn inflate_coding(
    raw: &Bytes,
    coding: ContentCoding,
    complete: bool,
    limits: &ViewLimits,
) -> Result<(Vec<u8>, bool, usize), ViewError> {
    Ok(match coding {
        ContentCoding::Identity => (raw.to_vec(), true, 0),
        ContentCoding::Gzip => {
            let mut d = GzDecoder::new(&raw[..]);
            let (out, done) = inflate(&mut d, raw.len(), complete, limits, "gzip_corrupt")?;
            (out, done, d.into_inner().len())
        }
        ContentCoding::Deflate if is_zlib_header(raw) => {
            let mut d = ZlibDecoder::new(&raw[..]);
            let (out, done) = inflate(&mut d, raw.len(), complete, limits, "deflate_corrupt")?;
            (out, done, d.into_inner().len())
        }
        // "deflate" is zlib by RFC 9110, but some clients send raw deflate.
        ContentCoding::Deflate => {
            let mut d = DeflateDecoder::new(&raw[..]);
            let (out, done) = inflate(&mut d, raw.len(), complete, limits, "deflate_corrupt")?;
            (out, done, d.into_inner().len())
        }
    })
}

fn is_zlib_header(b: &[u8]) -> bool {
    b.len() >= 2
        && b[0] & 0x0F == 8
        && b[0] >> 4 <= 7
        && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0
}

/// Reads a decoder to its end, never holding more than the caps allow:
/// output stops at `max(ratio_free_bytes, ratio × input)` (bomb) and at
/// `max_body` (too large, or for a prefix: just stop); the buffer never
/// reserves past that cap. Returns whether the stream ended.
fn inflate<R: Read>(
    r: &mut R,
    in_len: usize,
    complete: bool,
    limits: &ViewLimits,
    corrupt: &'static str,
) -> Result<(Vec<u8>, bool), ViewError> {
    let ratio_cap = limits
        .ratio_free_bytes
        .max(in_len.saturating_mul(limits.max_decompress_ratio));
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok((out, true)),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A prefix of a stream ends mid-way; what came out is inspected.
            Err(_) if !complete => return Ok((out, false)),
            Err(_) => return Err(ViewError::Malformed(corrupt)),
        };
        if out.len() + n > ratio_cap {
            return Err(ViewError::DecompressionBomb);
        }
        if out.len() + n > limits.max_body {
            if complete {
                return Err(ViewError::TooLarge);
            }
            let room = limits.max_body - out.len();
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, false));
        }
        // Grow by doubling, but never past the cap (plain `extend` could
        // reserve up to twice it).
        if out.capacity() < out.len() + n {
            let cap = ratio_cap.min(limits.max_body);
            let want = (out.len() * 2).clamp(out.len() + n, cap.max(out.len() + n));
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------
// Media types (Content-Type of the request and of multipart parts)

#[derive(Debug)]
struct MediaType {
    /// Lower-case `type/subtype`.
    essence: String,
    params: Vec<Param>,
}

#[derive(Debug)]
struct Param {
    /// Lower-case.
    name: String,
    value: Vec<u8>,
    /// The quoted value used a quoted-pair (`\x`).
    escaped: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum MtError {
    Syntax,
    DuplicateBoundary,
    DuplicateParam,
}

impl MediaType {
    /// RFC 9110 §8.3.1: `type/subtype *( OWS ";" OWS [ name=value ] )`.
    /// Empty parameters (`;;`, trailing `;`) are tolerated; duplicates not.
    fn parse(s: &[u8]) -> Result<MediaType, MtError> {
        let s = trim_ows(s);
        let te = token_end(s, 0);
        if te == 0 || s.get(te) != Some(&b'/') {
            return Err(MtError::Syntax);
        }
        let se = token_end(s, te + 1);
        if se == te + 1 {
            return Err(MtError::Syntax);
        }
        let essence = String::from_utf8_lossy(&s[..se]).to_ascii_lowercase();
        let mut params: Vec<Param> = Vec::new();
        let mut i = se;
        loop {
            i = skip_ows(s, i);
            if i == s.len() {
                break;
            }
            if s[i] != b';' {
                return Err(MtError::Syntax);
            }
            i = skip_ows(s, i + 1);
            if i == s.len() || s[i] == b';' {
                continue;
            }
            let ne = token_end(s, i);
            if ne == i || s.get(ne) != Some(&b'=') {
                return Err(MtError::Syntax);
            }
            let name = String::from_utf8_lossy(&s[i..ne]).to_ascii_lowercase();
            let (value, escaped, next) = param_value(s, ne + 1)?;
            i = next;
            if params.iter().any(|p| p.name == name) {
                return Err(if name == "boundary" {
                    MtError::DuplicateBoundary
                } else {
                    MtError::DuplicateParam
                });
            }
            params.push(Param {
                name,
                value,
                escaped,
            });
        }
        Ok(MediaType { essence, params })
    }

    fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// A token or a quoted-string starting at `i`; returns (value, escaped, end).
fn param_value(s: &[u8], i: usize) -> Result<(Vec<u8>, bool, usize), MtError> {
    if s.get(i) != Some(&b'"') {
        let e = token_end(s, i);
        if e == i {
            return Err(MtError::Syntax);
        }
        return Ok((s[i..e].to_vec(), false, e));
    }
    let mut v = Vec::new();
    let mut escaped = false;
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Ok((v, escaped, j + 1)),
            b'\\' if j + 1 < s.len() => {
                escaped = true;
                v.push(s[j + 1]);
                j += 2;
            }
            c if c == b'\t' || (c >= 0x20 && c != 0x7F && c != b'\\') => {
                v.push(c);
                j += 1;
            }
            _ => return Err(MtError::Syntax),
        }
    }
    Err(MtError::Syntax)
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn token_end(s: &[u8], i: usize) -> usize {
    i + s
        .get(i..)
        .map_or(0, |r| r.iter().take_while(|&&c| is_tchar(c)).count())
}

fn skip_ows(s: &[u8], i: usize) -> usize {
    i + s.get(i..).map_or(0, |r| {
        r.iter().take_while(|&&c| c == b' ' || c == b'\t').count()
    })
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let (a, b) = trim_range(s, 0, s.len());
    &s[a..b]
}

fn trim_range(s: &[u8], mut a: usize, mut b: usize) -> (usize, usize) {
    while a < b && matches!(s[a], b' ' | b'\t') {
        a += 1;
    }
    while b > a && matches!(s[b - 1], b' ' | b'\t') {
        b -= 1;
    }
    (a, b)
}

/// Ranges of `s` between `sep` bytes (empty pieces included).
fn pieces(s: &[u8], sep: u8) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match memchr::memchr(sep, &s[start..]) {
            Some(p) => {
                let r = (start, start + p);
                start += p + 1;
                Some(r)
            }
            None => {
                done = true;
                Some((start, s.len()))
            }
        }
    })
}

/// Naive search for short needles (`?>`, `-->`, `]]>`) from `from`.
fn find_sub(s: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn contains_ci(s: &[u8], needle: &[u8]) -> bool {
    s.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

// ---------------------------------------------------------------------------
// JSON: every key and leaf with its path, streamed (no `Value` tree)

struct JsonWalk<'a> {
    col: &'a mut Collector,
    input: &'a Bytes,
    path: Vec<u8>,
    depth: usize,
    max_depth: usize,
    max_name: usize,
    /// Set when a limit stopped the walk (serde only carries a message).
    hit: Option<ViewError>,
    /// Every field name (a key path) of the document, back to back: the
    /// fields are pushed with an empty name and get their slice of this
    /// buffer when the walk ends (`named`), one allocation for all names
    /// instead of one per name plus one per shared copy.
    names: Vec<u8>,
    /// (field index, its name in `names`, the value is the name too).
    named: Vec<(usize, std::ops::Range<usize>, bool)>,
    /// Leaf texts that are not slices of the input (numbers, strings with
    /// escapes), back to back, given out like `names` (`texts`).
    texts: Vec<u8>,
    /// (field index, its value in `texts`).
    valued: Vec<(usize, std::ops::Range<usize>)>,
}

impl JsonWalk<'_> {
    /// The current path (cut at `max_name`), appended to `names`.
    fn name(&mut self) -> std::ops::Range<usize> {
        let start = self.names.len();
        self.names
            .extend_from_slice(&self.path[..self.path.len().min(self.max_name)]);
        start..self.names.len()
    }

    /// Gives the fields pushed during the walk their names, and the leaves
    /// of `texts` their values.
    fn finish_names(&mut self) {
        let texts = Bytes::from(std::mem::take(&mut self.texts));
        for (i, r) in self.valued.drain(..) {
            if let Some(f) = self.col.fields.get_mut(i) {
                f.value = texts.slice(r);
            }
        }
        let names = Bytes::from(std::mem::take(&mut self.names));
        for (i, r, value_too) in self.named.drain(..) {
            if let Some(f) = self.col.fields.get_mut(i) {
                f.name = names.slice(r.clone());
                if value_too {
                    f.value = f.name.clone();
                }
            }
        }
    }

    fn fail<E: de::Error>(&mut self, e: ViewError) -> E {
        self.hit = Some(e);
        E::custom("inspection limit")
    }

    fn leaf<E: de::Error>(&mut self, v: Bytes) -> Result<(), E> {
        let name = self.name();
        let i = self.col.fields.len();
        if let Err(e) = self
            .col
            .push(TargetKind::Json, Bytes::new(), v.clone(), FieldRole::Value)
        {
            return Err(self.fail(e));
        }
        self.col
            .alias(TargetKind::ArgsPost, Bytes::new(), v, FieldRole::Value);
        self.col.alias(
            TargetKind::ArgsNames,
            Bytes::new(),
            Bytes::new(),
            FieldRole::Value,
        );
        self.named.push((i, name.clone(), false));
        self.named.push((i + 1, name.clone(), false));
        self.named.push((i + 2, name, true));
        Ok(())
    }

    /// A leaf whose text `write` appends to `texts`.
    fn leaf_text<E: de::Error>(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), E> {
        let start = self.texts.len();
        write(&mut self.texts);
        let r = start..self.texts.len();
        let i = self.col.fields.len();
        self.leaf(Bytes::new())?;
        // The `json` field and its `args_post` copy.
        self.valued.push((i, r.clone()));
        self.valued.push((i + 1, r));
        Ok(())
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.fail(ViewError::TooComplex("json_depth")));
        }
        Ok(())
    }
}

/// A slice of `input` when `s` lies inside it (serde_json hands out borrowed
/// strings for escape-free text), else a copy.
fn sub_bytes(input: &Bytes, s: &[u8]) -> Bytes {
    let base = input.as_ptr() as usize;
    let p = s.as_ptr() as usize;
    if p >= base && p + s.len() <= base + input.len() {
        input.slice(p - base..p - base + s.len())
    } else {
        Bytes::copy_from_slice(s)
    }
}

struct Node<'w, 'a>(&'w mut JsonWalk<'a>);

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0
            .leaf(Bytes::from_static(if v { b"true" } else { b"false" }))
    }

    // Writing into a Vec cannot fail.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.leaf_text(|t| {
            let _ = write!(t, "{v}");
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.leaf_text(|t| {
            let _ = write!(t, "{v}");
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // serde_json's shortest form (`1e300`, not 301 digits).
        self.0.leaf_text(|t| {
            let _ = match serde_json::Number::from_f64(v) {
                Some(n) => write!(t, "{n}"),
                None => write!(t, "{v}"),
            };
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.leaf(Bytes::from_static(b"null"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.leaf_text(|t| t.extend_from_slice(v.as_bytes()))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        let b = sub_bytes(self.0.input, v.as_bytes());
        self.0.leaf(b)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.0.leaf_text(|t| t.extend_from_slice(v.as_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let w = self.0;
        w.enter()?;
        let base = w.path.len();
        let mut i = 0usize;
        loop {
            w.path.truncate(base);
            // Writing into a Vec cannot fail.
            let _ = write!(w.path, "[{i}]");
            if seq.next_element_seed(Node(&mut *w))?.is_none() {
                break;
            }
            i += 1;
        }
        w.path.truncate(base);
        w.depth -= 1;
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let w = self.0;
        w.enter()?;
        let base = w.path.len();
        while let Some(key) = map.next_key_seed(KeySeed(w.input))? {
            w.path.truncate(base);
            if base > 0 {
                w.path.push(b'.');
            }
            w.path.extend_from_slice(&key);
            let name = w.name();
            let i = w.col.fields.len();
            if let Err(e) = w
                .col
                .push(TargetKind::Json, Bytes::new(), key, FieldRole::Key)
            {
                return Err(w.fail(e));
            }
            w.named.push((i, name, false));
            map.next_value_seed(Node(&mut *w))?;
        }
        w.path.truncate(base);
        w.depth -= 1;
        Ok(())
    }
}

/// An object key as bytes, borrowed from the input when possible.
struct KeySeed<'a>(&'a Bytes);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Bytes;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Bytes, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Bytes, E> {
        Ok(sub_bytes(self.0, v.as_bytes()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }
}

/// Walks one JSON document (trailing data refused). Keys and leaves go to
/// `json`; leaves also to `args_post` and their paths to `args_names`.
fn parse_json(input: &Bytes, col: &mut Collector, limits: &ViewLimits) -> Result<(), ViewError> {
    // A field per key; three (`json`, `args_post`, `args_names`) per leaf,
    // and a leaf ends at a `,` or at the document's end.
    let expected = memchr::memchr_iter(b':', input).count()
        + 3 * (memchr::memchr_iter(b',', input).count() + 1);
    col.expect(expected);
    let mut walk = JsonWalk {
        col,
        input,
        path: Vec::new(),
        depth: 0,
        max_depth: limits.max_json_depth.min(JSON_DEPTH_CEILING),
        max_name: limits.max_name_bytes,
        hit: None,
        names: Vec::with_capacity(input.len()),
        named: Vec::with_capacity(expected.min(limits.max_fields.saturating_mul(3))),
        texts: Vec::new(),
        valued: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(input);
    let res = Node(&mut walk).deserialize(&mut de).and_then(|()| de.end());
    walk.finish_names();
    match (walk.hit.take(), res) {
        (Some(e), _) => Err(e),
        (None, Ok(())) => Ok(()),
        (None, Err(_)) => Err(ViewError::Malformed("json_syntax")),
    }
}

// ---------------------------------------------------------------------------
// multipart/form-data: strict (RFC 2046 / 7578, minus what parsers disagree on)

/// Knuth–Morris–Pratt: linear time whatever the boundary and body (a naive
/// search is quadratic on `-----…` boundaries over `-----…` bodies).
struct Finder {
    needle: Vec<u8>,
    fail: Vec<usize>,
}

impl Finder {
    fn new(needle: Vec<u8>) -> Finder {
        let mut fail = vec![0; needle.len()];
        let mut k = 0;
        for i in 1..needle.len() {
            while k > 0 && needle[i] != needle[k] {
                k = fail[k - 1];
            }
            if needle[i] == needle[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Finder { needle, fail }
    }

    fn find(&self, hay: &[u8], from: usize) -> Option<usize> {
        let m = self.needle.len();
        if m == 0 {
            return Some(from);
        }
        let mut k = 0;
        for (i, &c) in hay.iter().enumerate().skip(from) {
            while k > 0 && c != self.needle[k] {
                k = self.fail[k - 1];
            }
            if c == self.needle[k] {
                k += 1;
            }
            if k == m {
                return Some(i + 1 - m);
            }
        }
        None
    }
}

/// The body must be exactly `--b CRLF part (CRLF --b CRLF part)* CRLF --b--`
/// with at most one CRLF after the close. Rejected, because parsers disagree
/// on them: a preamble or epilogue (data outside parts), transport padding
/// or anything else after a delimiter, LF-only or lone-CR line ends, the
/// boundary string anywhere but at a delimiter, a missing close.
fn parse_multipart(
    body: &Bytes,
    boundary: &[u8],
    charset: Charset,
    col: &mut Collector,
    limits: &ViewLimits,
) -> Result<(), ViewError> {
    use ViewError::Malformed as M;
    let s = &body[..];
    let mut dash = Vec::with_capacity(boundary.len() + 2);
    dash.extend_from_slice(b"--");
    dash.extend_from_slice(boundary);
    let finder = Finder::new(dash);
    let dl = finder.needle.len();
    match finder.find(s, 0) {
        None => return Err(M("multipart_boundary_not_found")),
        Some(0) => {}
        Some(_) => return Err(M("multipart_preamble")),
    }
    let start = col.fields.len();
    let mut pos = dl;
    loop {
        let after = &s[pos..];
        if let Some(epilogue) = after.strip_prefix(b"--") {
            return match epilogue {
                b"" | b"\r\n" => {
                    join_repeats(col, start, TargetKind::ArgsPost);
                    Ok(())
                }
                b"\n" => Err(M("multipart_bare_lf")),
                _ => Err(M("multipart_epilogue")),
            };
        }
        if after.starts_with(b"\r\n") {
            pos += 2;
        } else if after.is_empty() {
            return Err(M("multipart_missing_close"));
        } else if after.starts_with(b"\n") {
            return Err(M("multipart_bare_lf"));
        } else {
            return Err(M("multipart_delimiter_suffix"));
        }
        let next = finder.find(s, pos).ok_or(M("multipart_missing_close"))?;
        if next < pos + 2 {
            return Err(M("multipart_empty_part"));
        }
        if &s[next - 2..next] != b"\r\n" {
            return Err(M(if s[next - 1] == b'\n' {
                "multipart_bare_lf"
            } else {
                "multipart_boundary_in_content"
            }));
        }
        parse_part(&body.slice(pos..next - 2), charset, col, limits)?;
        pos = next + dl;
    }
}

/// One part: CRLF-terminated headers, an empty line, the content.
fn parse_part(
    part: &Bytes,
    charset_default: Charset,
    col: &mut Collector,
    limits: &ViewLimits,
) -> Result<(), ViewError> {
    use ViewError::Malformed as M;
    let s = &part[..];
    let mut i = 0;
    let mut disposition: Option<(Bytes, Option<Bytes>)> = None;
    let mut seen_ct = false;
    let mut seen_cte = false;
    let mut charset: Option<Result<Charset, ViewError>> = None;
    loop {
        let nl = s[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + i)
            .ok_or(M("multipart_headers_unterminated"))?;
        if nl == i || s[nl - 1] != b'\r' {
            return Err(M("multipart_bare_lf"));
        }
        let (ls, le) = (i, nl - 1);
        i = nl + 1;
        let line = &s[ls..le];
        if line.is_empty() {
            break;
        }
        if line.contains(&b'\r') {
            return Err(M("multipart_bare_cr"));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(M("multipart_obs_fold"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(M("multipart_header_syntax"))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
            return Err(M("multipart_header_syntax"));
        }
        let (va, vb) = trim_range(s, ls + colon + 1, le);
        if s[va..vb]
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7F)
        {
            return Err(M("multipart_header_syntax"));
        }
        let lname = if name.iter().any(u8::is_ascii_uppercase) {
            Bytes::from(name.to_ascii_lowercase())
        } else {
            part.slice(ls..ls + colon)
        };
        let value = part.slice(va..vb);
        col.push(
            TargetKind::MultipartHeaders,
            lname.clone(),
            value.clone(),
            FieldRole::Value,
        )?;
        match &lname[..] {
            b"content-disposition" => {
                if disposition.is_some() {
                    return Err(M("multipart_duplicate_disposition"));
                }
                disposition = Some(parse_disposition(&value)?);
            }
            b"content-type" => {
                if seen_ct {
                    return Err(M("multipart_duplicate_content_type"));
                }
                seen_ct = true;
                let mt = MediaType::parse(&value).map_err(|_| M("multipart_part_content_type"))?;
                if mt.essence.starts_with("multipart/") {
                    return Err(M("multipart_nested"));
                }
                charset = mt.param("charset").map(|p| charset_from(&p.value));
            }
            b"content-transfer-encoding" => {
                if seen_cte {
                    return Err(M("multipart_duplicate_transfer_encoding"));
                }
                seen_cte = true;
                // base64 / quoted-printable would hide the content from us
                // while a backend decodes it (RFC 7578 §4.7 deprecates it).
                let ok = ["7bit", "8bit", "binary"]
                    .iter()
                    .any(|e| value.eq_ignore_ascii_case(e.as_bytes()));
                if !ok {
                    return Err(M("multipart_transfer_encoding"));
                }
            }
            _ => {}
        }
    }
    let (name, filename) = disposition.ok_or(M("multipart_no_disposition"))?;
    let content = part.slice(i..);
    match filename {
        Some(f) => {
            // Uploads keep their bytes: no charset applies to files.
            col.push(TargetKind::Files, name.clone(), f, FieldRole::Value)?;
            let n = content.len().min(limits.max_file_bytes);
            col.alias(
                TargetKind::FilesContent,
                name.clone(),
                content.slice(..n),
                FieldRole::Value,
            );
        }
        None => {
            let cs = match charset {
                Some(c) => c?,
                None => charset_default,
            };
            let value = to_utf8(&content, cs);
            col.push(TargetKind::ArgsPost, name.clone(), value, FieldRole::Value)?;
        }
    }
    col.alias(TargetKind::ArgsNames, name.clone(), name, FieldRole::Value);
    Ok(())
}

/// `form-data; name="x"[; filename="y"]` and nothing else. Quoted values are
/// taken literally (browsers percent-encode `"` and send `\` as is); `\"`
/// is refused since an escaping parser would end the value elsewhere.
fn parse_disposition(v: &Bytes) -> Result<(Bytes, Option<Bytes>), ViewError> {
    use ViewError::Malformed as M;
    let s = &v[..];
    let t = token_end(s, 0);
    if !s[..t].eq_ignore_ascii_case(b"form-data") {
        return Err(M("multipart_disposition_type"));
    }
    let mut name = None;
    let mut filename = None;
    let mut i = t;
    loop {
        i = skip_ows(s, i);
        if i == s.len() {
            break;
        }
        if s[i] != b';' {
            return Err(M("multipart_disposition_syntax"));
        }
        i = skip_ows(s, i + 1);
        let pe = token_end(s, i);
        if pe == i || s.get(pe) != Some(&b'=') {
            return Err(M("multipart_disposition_syntax"));
        }
        let pname = &s[i..pe];
        let (va, vb) = if s.get(pe + 1) == Some(&b'"') {
            let start = pe + 2;
            let mut j = start;
            loop {
                match s.get(j) {
                    None => return Err(M("multipart_disposition_syntax")),
                    Some(b'"') => break,
                    Some(b'\\') if s.get(j + 1) == Some(&b'"') => {
                        return Err(M("multipart_disposition_escape"));
                    }
                    Some(_) => j += 1,
                }
            }
            i = j + 1;
            (start, j)
        } else {
            let e = token_end(s, pe + 1);
            if e == pe + 1 {
                return Err(M("multipart_disposition_syntax"));
            }
            i = e;
            (pe + 1, e)
        };
        let val = v.slice(va..vb);
        let dup = if pname.eq_ignore_ascii_case(b"name") {
            name.replace(val).is_some()
        } else if pname.eq_ignore_ascii_case(b"filename") {
            filename.replace(val).is_some()
        } else if pname.eq_ignore_ascii_case(b"filename*") {
            // RFC 5987 names: some backends prefer them, others ignore them.
            return Err(M("multipart_filename_star"));
        } else if pname.last() == Some(&b'*') {
            return Err(M("multipart_extended_param"));
        } else {
            return Err(M("multipart_disposition_param"));
        };
        if dup {
            return Err(M("multipart_duplicate_param"));
        }
    }
    let name = name.ok_or(M("multipart_disposition_no_name"))?;
    Ok((name, filename))
}

// ---------------------------------------------------------------------------
// XML: a small tokenizer; text and attribute values, never entity expansion

#[derive(Debug, Default)]
struct XmlFlags {
    doctype: bool,
    entities: bool,
    external: bool,
}

#[derive(Debug)]
enum XmlFail {
    Malformed,
    Limit(ViewError),
}

fn is_xml_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_xml_ws(s: &[u8], i: usize) -> usize {
    i + s
        .get(i..)
        .map_or(0, |r| r.iter().take_while(|&&c| is_xml_ws(c)).count())
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'-' | b'.') || c >= 0x80
}

/// End of the XML name starting at `i` (== `i` when there is none).
fn name_end(s: &[u8], i: usize) -> usize {
    match s.get(i) {
        Some(&c) if is_name_byte(c) && !c.is_ascii_digit() && c != b'-' && c != b'.' => {
            i + s[i..].iter().take_while(|&&c| is_name_byte(c)).count()
        }
        _ => i,
    }
}

/// The `encoding` of a leading `<?xml … ?>` declaration.
fn xml_decl_encoding(s: &[u8]) -> Option<&[u8]> {
    if !s.starts_with(b"<?xml") || !s.get(5).is_some_and(|&c| is_xml_ws(c)) {
        return None;
    }
    let decl = &s[..find_sub(s, 5, b"?>")?];
    let at = find_sub(decl, 5, b"encoding")?;
    let mut i = skip_xml_ws(decl, at + 8);
    if decl.get(i) != Some(&b'=') {
        return None;
    }
    i = skip_xml_ws(decl, i + 1);
    let q = *decl.get(i)?;
    if q != b'"' && q != b'\'' {
        return None;
    }
    let e = decl[i + 1..].iter().position(|&c| c == q)?;
    Some(&decl[i + 1..i + 1 + e])
}

/// Well-formedness is checked as far as it decides what is text and what is
/// markup (tags balance, one root, quoted attributes, no duplicate
/// attributes, references terminated); DTDs are skipped, only flagged.
fn parse_xml(
    src: &Bytes,
    col: &mut Collector,
    max_depth: usize,
    flags: &mut XmlFlags,
) -> Result<(), XmlFail> {
    use XmlFail::Malformed as M;
    let s = &src[..];
    let n = s.len();
    let mut i = 0;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut attrs: Vec<(usize, usize)> = Vec::new();
    let mut root_seen = false;
    let push = |col: &mut Collector, name: Bytes, v: Bytes| {
        col.push(TargetKind::Xml, name, v, FieldRole::Value)
            .map_err(XmlFail::Limit)
    };
    while i < n {
        if s[i] != b'<' {
            let end = s[i..].iter().position(|&c| c == b'<').map_or(n, |p| p + i);
            match stack.last() {
                Some(&(a, b)) => {
                    let v = xml_unescape(src, i, end)?;
                    if !v.iter().all(|&c| is_xml_ws(c)) {
                        push(col, src.slice(a..b), v)?;
                    }
                }
                None if s[i..end].iter().all(|&c| is_xml_ws(c)) => {}
                None => return Err(M),
            }
            i = end;
            continue;
        }
        let rest = &s[i..];
        if rest.starts_with(b"<?") {
            let end = find_sub(s, i + 2, b"?>").ok_or(M)?;
            let te = name_end(s, i + 2);
            // The XML declaration may only open the document.
            if s[i + 2..te].eq_ignore_ascii_case(b"xml") && i != 0 {
                return Err(M);
            }
            i = end + 2;
        } else if rest.starts_with(b"<!--") {
            i = find_sub(s, i + 4, b"-->").ok_or(M)? + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            let &(a, b) = stack.last().ok_or(M)?;
            let end = find_sub(s, i + 9, b"]]>").ok_or(M)?;
            if end > i + 9 {
                push(col, src.slice(a..b), src.slice(i + 9..end))?;
            }
            i = end + 3;
        } else if rest.len() >= 9
            && rest[..2] == *b"<!"
            && rest[2..9].eq_ignore_ascii_case(b"DOCTYPE")
        {
            // Flag first (even `<!doctype`, even a second one): XXE rules
            // must see it whether or not the rest is well-formed.
            let again = flags.doctype;
            flags.doctype = true;
            let end = scan_doctype(s, i + 9, flags)?;
            if again || root_seen || rest[2..9] != *b"DOCTYPE" {
                return Err(M);
            }
            i = end;
        } else if rest.starts_with(b"<!") {
            return Err(M);
        } else if rest.starts_with(b"</") {
            let ne = name_end(s, i + 2);
            let j = skip_xml_ws(s, ne);
            if ne == i + 2 || s.get(j) != Some(&b'>') {
                return Err(M);
            }
            let (a, b) = stack.pop().ok_or(M)?;
            if s[a..b] != s[i + 2..ne] {
                return Err(M);
            }
            i = j + 1;
        } else {
            if root_seen && stack.is_empty() {
                return Err(M);
            }
            let (ea, eb) = (i + 1, name_end(s, i + 1));
            if ea == eb {
                return Err(M);
            }
            attrs.clear();
            let mut j = eb;
            let open;
            loop {
                let k = skip_xml_ws(s, j);
                match s.get(k) {
                    None => return Err(M),
                    Some(b'>') => {
                        open = true;
                        j = k + 1;
                        break;
                    }
                    Some(b'/') => {
                        if s.get(k + 1) != Some(&b'>') {
                            return Err(M);
                        }
                        open = false;
                        j = k + 2;
                        break;
                    }
                    Some(_) => {
                        let an = name_end(s, k);
                        if k == j || an == k {
                            return Err(M);
                        }
                        let mut p = skip_xml_ws(s, an);
                        if s.get(p) != Some(&b'=') {
                            return Err(M);
                        }
                        p = skip_xml_ws(s, p + 1);
                        let q = match s.get(p) {
                            Some(&c @ (b'"' | b'\'')) => c,
                            _ => return Err(M),
                        };
                        let ve = s[p + 1..]
                            .iter()
                            .position(|&c| c == q)
                            .map(|e| e + p + 1)
                            .ok_or(M)?;
                        if s[p + 1..ve].contains(&b'<') {
                            return Err(M);
                        }
                        // Duplicates: parsers keep the first or the last.
                        if attrs.iter().any(|&(x, y)| s[x..y] == s[k..an]) {
                            return Err(M);
                        }
                        attrs.push((k, an));
                        let v = xml_unescape(src, p + 1, ve)?;
                        if !v.is_empty() {
                            let mut name = Vec::with_capacity(eb - ea + 1 + an - k);
                            name.extend_from_slice(&s[ea..eb]);
                            name.push(b'@');
                            name.extend_from_slice(&s[k..an]);
                            push(col, Bytes::from(name), v)?;
                        }
                        j = ve + 1;
                    }
                }
            }
            root_seen = true;
            if open {
                stack.push((ea, eb));
                if stack.len() > max_depth {
                    return Err(XmlFail::Limit(ViewError::TooComplex("xml_depth")));
                }
            }
            i = j;
        }
    }
    if !stack.is_empty() || !root_seen {
        return Err(M);
    }
    Ok(())
}

/// Skips a DOCTYPE from just after `<!DOCTYPE`; returns the index after its
/// `>`. Sets the flags from the whole declaration, or from the rest of the
/// body when it never ends.
fn scan_doctype(s: &[u8], start: usize, flags: &mut XmlFlags) -> Result<usize, XmlFail> {
    let mark = |region: &[u8], flags: &mut XmlFlags| {
        if contains_ci(region, b"<!ENTITY") {
            flags.entities = true;
        }
        if contains_ci(region, b"SYSTEM") || contains_ci(region, b"PUBLIC") {
            flags.external = true;
        }
    };
    let mut p = start;
    let mut in_subset = false;
    while p < s.len() {
        match s[p] {
            q @ (b'"' | b'\'') => match s[p + 1..].iter().position(|&c| c == q) {
                Some(e) => {
                    p += e + 2;
                    continue;
                }
                None => break,
            },
            b'[' => in_subset = true,
            b']' => in_subset = false,
            b'>' if !in_subset => {
                mark(&s[start..p], flags);
                return Ok(p + 1);
            }
            _ => {}
        }
        p += 1;
    }
    mark(&s[start..], flags);
    Err(XmlFail::Malformed)
}

/// Decodes the predefined entities and character references in
/// `src[a..b]`; other references stay verbatim (never expanded). A slice of
/// `src` when there is no `&`.
fn xml_unescape(src: &Bytes, a: usize, b: usize) -> Result<Bytes, XmlFail> {
    let s = &src[a..b];
    if !s.contains(&b'&') {
        return Ok(src.slice(a..b));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'&' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let semi = s[i + 1..]
            .iter()
            .take(32)
            .position(|&c| c == b';')
            .map(|p| p + i + 1)
            .ok_or(XmlFail::Malformed)?;
        let r = &s[i + 1..semi];
        let mut utf8 = [0u8; 4];
        let rep: &[u8] = match r {
            b"lt" => b"<",
            b"gt" => b">",
            b"amp" => b"&",
            b"quot" => b"\"",
            b"apos" => b"'",
            [b'#', rest @ ..] => {
                let (digits, radix) = match rest {
                    [b'x', h @ ..] => (h, 16),
                    d => (d, 10),
                };
                let ok = !digits.is_empty()
                    && digits.len() <= 8
                    && digits.iter().all(|&c| (c as char).is_digit(radix));
                let cp = ok
                    .then(|| {
                        digits.iter().try_fold(0u32, |acc, &c| {
                            acc.checked_mul(radix)?
                                .checked_add((c as char).to_digit(radix)?)
                        })
                    })
                    .flatten()
                    .and_then(char::from_u32)
                    .filter(|&c| c != '\0')
                    .ok_or(XmlFail::Malformed)?;
                cp.encode_utf8(&mut utf8).as_bytes()
            }
            _ => {
                if name_end(r, 0) != r.len() || r.is_empty() {
                    return Err(XmlFail::Malformed);
                }
                &s[i..=semi]
            }
        };
        out.extend_from_slice(rep);
        i = semi + 1;
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form decoder (and so the `url_decode` transform) agrees with a
    /// byte-by-byte reference on values generated from the bytes that
    /// matter (escapes, good and bad, `+`, runs of plain text).
    #[test]
    fn form_decoding_agrees_with_a_byte_by_byte_reference() {
        use crate::rules::transform::{Transform, apply};
        fn reference(s: &[u8]) -> Vec<u8> {
            let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
            let mut out = Vec::new();
            let mut i = 0;
            while i < s.len() {
                match (s[i], hex(s.get(i + 1)), hex(s.get(i + 2))) {
                    (b'+', _, _) => out.push(b' '),
                    (b'%', Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    (b, _, _) => out.push(b),
                }
                i += 1;
            }
            out
        }
        let atoms: [&[u8]; 9] = [
            b"%", b"+", b"%4", b"%41", b"%zz", b"%2B", b"ab", b"%%", b"\xc3",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let mut v = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut x = seed;
            for _ in 0..(x % 12) {
                x /= 12;
                v.extend_from_slice(atoms[(x % 9) as usize]);
                x = x.rotate_left(5);
            }
            let mut out = Vec::new();
            url_decode_into(&v, &mut out);
            let want = reference(&v);
            assert_eq!(out, want, "{:?}", String::from_utf8_lossy(&v));
            assert_eq!(apply(Transform::UrlDecode, &v).as_ref(), want.as_slice());
        }
    }
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use std::io::Write;

    fn parts(method: &str, uri: &str, headers: &[(&str, &[u8])]) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, HeaderValue::from_bytes(v).unwrap());
        }
        b.body(()).unwrap().into_parts().0
    }

    fn post(ct: &str, body: &[u8]) -> Result<RequestView, ViewError> {
        let p = parts("POST", "/", &[("content-type", ct.as_bytes())]);
        RequestView::build(&p, body, &ViewLimits::default())
    }

    fn post_with(
        headers: &[(&str, &[u8])],
        body: &[u8],
        limits: &ViewLimits,
    ) -> Result<RequestView, ViewError> {
        RequestView::build(&parts("POST", "/", headers), body, limits)
    }

    /// `(name, value)` pairs of a target, lossy, joined fields marked `+`.
    fn pairs(v: &RequestView, kind: TargetKind) -> Vec<(String, String)> {
        v.values(kind)
            .map(|f| {
                let mut n = f.name_str().into_owned();
                if f.role == FieldRole::Joined {
                    n.push('+');
                }
                (n, f.value_str().into_owned())
            })
            .collect()
    }

    fn p(n: &str, v: &str) -> (String, String) {
        (n.to_string(), v.to_string())
    }

    fn has(v: &RequestView, kind: TargetKind, name: &str, value: &str) -> bool {
        v.get_all(kind, name.as_bytes())
            .any(|f| f.value[..] == *value.as_bytes())
    }

    // -- request line, query, headers, cookies ---------------------------

    #[test]
    fn request_line_targets_are_raw() {
        let pr = parts("GET", "/a%2Fb/c?x=%41&y", &[]);
        let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
        assert_eq!(v.get(TargetKind::Method, "").unwrap().value, "GET");
        assert_eq!(v.get(TargetKind::Path, "").unwrap().value, "/a%2Fb/c");
        assert_eq!(v.get(TargetKind::Query, "").unwrap().value, "x=%41&y");
        assert_eq!(
            v.get(TargetKind::Uri, "").unwrap().value,
            "/a%2Fb/c?x=%41&y"
        );
        assert_eq!(v.body_kind, BodyKind::None);
        assert!(v.body().is_none());
        let abs = parts("GET", "http://example.com/p?q=1", &[]);
        let v = RequestView::build(&abs, b"", &ViewLimits::default()).unwrap();
        assert_eq!(
            v.get(TargetKind::Uri, "").unwrap().value,
            "http://example.com/p?q=1"
        );
        assert_eq!(v.get(TargetKind::Path, "").unwrap().value, "/p");
    }

    #[test]
    fn a_path_with_an_unusual_segment_is_also_seen_from_that_segment_on() {
        let paths = |uri: &str| {
            let pr = parts("GET", uri, &[]);
            let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
            v.get_all(TargetKind::Path, b"")
                .map(|f| String::from_utf8_lossy(&f.value).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(paths("/api/v1/users/42.json"), ["/api/v1/users/42.json"]);
        assert_eq!(
            paths("/fetch/http://169.254.169.254/latest"),
            [
                "/fetch/http://169.254.169.254/latest",
                "http://169.254.169.254/latest"
            ]
        );
        assert_eq!(
            paths("/%7B%7B7*7%7D%7D/x/%7C%20id"),
            [
                "/%7B%7B7*7%7D%7D/x/%7C%20id",
                "%7B%7B7*7%7D%7D/x/%7C%20id",
                "%7C%20id"
            ]
        );
        let many = format!("/a{}", "/%20".repeat(40));
        assert_eq!(paths(&many).len(), 1 + MAX_PATH_TAILS);
    }

    #[test]
    fn query_args_decode_once_and_join_repeats() {
        let pr = parts("GET", "/?a=1&a=2&b&=x&c=%41%zz+y;d=1&&e=&f=%2541%", &[]);
        let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
        assert_eq!(
            pairs(&v, TargetKind::ArgsGet),
            vec![
                p("a", "1"),
                p("a", "2"),
                p("b", ""),
                p("", "x"),
                // `;` is not a separator; a bad escape stays literal.
                p("c", "A%zz y;d=1"),
                p("e", ""),
                // Decoded once only: `%2541` → `%41`, not `A`.
                p("f", "%41%"),
                p("a+", "1,2"),
            ]
        );
        assert_eq!(v.get(TargetKind::Args, "a").unwrap().value, "1");
        assert_eq!(v.get_all(TargetKind::Args, b"a").count(), 3);
        let names: Vec<_> = pairs(&v, TargetKind::ArgsNames)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(names, ["a", "a", "b", "", "c", "e", "f"]);
        // Non-UTF-8 after decoding stays bytes.
        let pr = parts("GET", "/?k=%FF%00", &[]);
        let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
        assert_eq!(
            &v.get(TargetKind::ArgsGet, "k").unwrap().value[..],
            b"\xff\x00"
        );
    }

    #[test]
    fn headers_lower_case_with_every_value() {
        let pr = parts(
            "GET",
            "/",
            &[
                ("X-Multi", b"one"),
                ("x-multi", b"two"),
                ("User-Agent", b"curl/8"),
                ("X-Bin", b"caf\xe9"),
            ],
        );
        let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
        assert_eq!(
            v.get_all(TargetKind::Headers, b"X-MULTI")
                .map(|f| f.value_str().into_owned())
                .collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(
            v.get(TargetKind::Headers, "user-agent").unwrap().value,
            "curl/8"
        );
        assert_eq!(
            &v.get(TargetKind::Headers, "x-bin").unwrap().value[..],
            b"caf\xe9"
        );
        let names: Vec<_> = pairs(&v, TargetKind::HeaderNames)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(names, ["x-multi", "user-agent", "x-bin"]);
    }

    #[test]
    fn cookies_from_every_header_without_decoding() {
        let pr = parts(
            "GET",
            "/",
            &[
                ("cookie", b"a=1; b=%41;c = \"q=r\" ;;"),
                ("cookie", b"d; e="),
            ],
        );
        let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
        assert_eq!(
            pairs(&v, TargetKind::Cookies),
            vec![
                p("a", "1"),
                p("b", "%41"),
                p("c", "\"q=r\""),
                p("d", ""),
                p("e", "")
            ]
        );
        let names: Vec<_> = pairs(&v, TargetKind::CookieNames)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn get_with_ten_args_slices_one_buffer() {
        // Allocation is not counted here (that needs an unsafe global
        // allocator, which the style forbids); instead: every undecoded value
        // must be a slice of one buffer holding the request line and headers.
        let long = vec![b'x'; 4000];
        let q: String = (0..10)
            .map(|i| format!("k{i}=v{i}"))
            .collect::<Vec<_>>()
            .join("&");
        let pr = parts(
            "GET",
            &format!("/search?{q}"),
            &[
                ("user-agent", &long),
                ("cookie", b"s=abc; t=def"),
                ("accept", b"*/*"),
            ],
        );
        let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
        let arena_len = 3 + 2 * (8 + q.len()) + q.len() + 10 + 4000 + 6 + 12 + 6 + 3;
        let slices: Vec<&Bytes> = v
            .fields()
            .iter()
            .filter(|f| !f.value.is_empty())
            .map(|f| &f.value)
            .collect();
        assert_eq!(v.values(TargetKind::ArgsGet).count(), 10);
        let lo = slices.iter().map(|b| b.as_ptr() as usize).min().unwrap();
        let hi = slices
            .iter()
            .map(|b| b.as_ptr() as usize + b.len())
            .max()
            .unwrap();
        assert!(hi - lo <= arena_len, "{} > {arena_len}", hi - lo);
        // And the field list was sized once.
        assert!(v.fields.capacity() >= v.fields.len());
        assert!(v.fields.capacity() < 2 * v.fields.len() + 8);
    }

    // -- urlencoded ---------------------------------------------------------

    #[test]
    fn form_body() {
        let v = post(
            "application/x-www-form-urlencoded",
            b"user=bob&pw=a%27+or+1%3D1&pw=x",
        )
        .unwrap();
        assert_eq!(v.body_kind, BodyKind::Form);
        assert_eq!(
            pairs(&v, TargetKind::ArgsPost),
            vec![
                p("user", "bob"),
                p("pw", "a' or 1=1"),
                p("pw", "x"),
                p("pw+", "a' or 1=1,x")
            ]
        );
        assert!(has(&v, TargetKind::Args, "user", "bob"));
        assert_eq!(v.body().unwrap(), "user=bob&pw=a%27+or+1%3D1&pw=x");
    }

    #[test]
    fn response_body_prefixes_decode_to_at_most_the_cap() {
        let text: Vec<u8> = (0..4000u32)
            .flat_map(|i| format!("line {i} of the page\n").into_bytes())
            .collect();
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(&text).unwrap();
        let gz = Bytes::from(e.finish().unwrap());
        // The whole stream, cut at the cap.
        let out = decode_body_prefix(&gz, ContentCoding::Gzip, 1000).unwrap();
        assert_eq!(&out[..], &text[..1000]);
        // A prefix of the stream: what its bytes decode to.
        let out =
            decode_body_prefix(&gz.slice(..gz.len() / 2), ContentCoding::Gzip, 1 << 20).unwrap();
        assert!(out.len() > 1000 && out.len() < text.len(), "{}", out.len());
        assert_eq!(&out[..], &text[..out.len()]);
        // Deflate (zlib-wrapped) likewise; identity is returned as is.
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(&text).unwrap();
        let z = Bytes::from(e.finish().unwrap());
        assert_eq!(
            &decode_body_prefix(&z, ContentCoding::Deflate, 500).unwrap()[..],
            &text[..500]
        );
        // An empty body, compressed, is empty text.
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b"").unwrap();
        let empty = Bytes::from(e.finish().unwrap());
        assert_eq!(
            decode_body_prefix(&empty, ContentCoding::Gzip, 100).unwrap(),
            Bytes::new()
        );
        // A bomb stops at the cap; garbage is an error, not text.
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        e.write_all(&vec![b'a'; 8 << 20]).unwrap();
        let bomb = Bytes::from(e.finish().unwrap());
        let out = decode_body_prefix(&bomb, ContentCoding::Gzip, 128 * 1024);
        assert!(out.is_err() || out.unwrap().len() <= 128 * 1024);
        assert!(
            decode_body_prefix(
                &Bytes::from_static(b"not gzip at all"),
                ContentCoding::Gzip,
                100
            )
            .is_err()
        );
    }

    #[test]
    fn large_bodies_size_the_field_list_once() {
        // 1,100 pairs: a list that doubled its way up would hold room for
        // 4,096 fields; one sized from the body's separators holds about
        // what it needs.
        let form: Vec<String> = (0..1100).map(|i| format!("f{i}=v+{i}")).collect();
        let v = post(
            "application/x-www-form-urlencoded",
            form.join("&").as_bytes(),
        )
        .unwrap();
        assert!(v.fields.len() > 2200);
        assert!(
            v.fields.capacity() < v.fields.len() + 64,
            "{}",
            v.fields.capacity()
        );
        // JSON: a field per key, three per leaf.
        let items: Vec<String> = (0..400).map(|i| format!("{{\"k\":{i}}}")).collect();
        let v = post(
            "application/json",
            format!("[{}]", items.join(",")).as_bytes(),
        )
        .unwrap();
        assert!(v.fields.len() > 1600);
        assert!(
            v.fields.capacity() < v.fields.len() + 64,
            "{}",
            v.fields.capacity()
        );
    }

    #[test]
    fn latin1_form_is_transcoded_after_decoding() {
        let v = post(
            "application/x-www-form-urlencoded; charset=ISO-8859-1",
            b"n=caf%E9&m=\xe9",
        )
        .unwrap();
        assert_eq!(v.charset, Charset::Latin1);
        assert_eq!(v.get(TargetKind::ArgsPost, "n").unwrap().value, "café");
        assert_eq!(v.get(TargetKind::ArgsPost, "m").unwrap().value, "é");
        assert_eq!(v.body().unwrap(), "n=caf%E9&m=é");
    }

    #[test]
    fn windows_1252_and_latin9_are_transcoded_with_their_own_tables() {
        // 0x93/0x94 are curly quotes in Windows-1252 (C1 controls in
        // Latin-1): an injection written with them must reach the rules as
        // the characters the application will see.
        let v = post(
            "application/x-www-form-urlencoded; charset=windows-1252",
            b"q=%93hi%94&e=%80",
        )
        .unwrap();
        assert_eq!(v.charset, Charset::Windows1252);
        assert_eq!(
            v.get(TargetKind::ArgsPost, "q").unwrap().value,
            "\u{201C}hi\u{201D}"
        );
        assert_eq!(v.get(TargetKind::ArgsPost, "e").unwrap().value, "€");
        let v = post(
            "application/x-www-form-urlencoded; charset=ISO-8859-15",
            b"p=5%A4&s=\xa6",
        )
        .unwrap();
        assert_eq!(v.charset, Charset::Latin9);
        assert_eq!(v.get(TargetKind::ArgsPost, "p").unwrap().value, "5€");
        assert_eq!(v.get(TargetKind::ArgsPost, "s").unwrap().value, "Š");
        // Multipart parts may name them too.
        let mp = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain; charset=windows-1252\r\n\r\n\x93x\x94\r\n--XyZ--\r\n";
        let v = post("multipart/form-data; boundary=XyZ", mp).unwrap();
        assert_eq!(
            v.get(TargetKind::ArgsPost, "a").unwrap().value,
            "\u{201C}x\u{201D}"
        );
        // Anything else is still refused.
        assert_eq!(
            post("application/x-www-form-urlencoded; charset=koi8-r", b"a=b").unwrap_err(),
            ViewError::UnsupportedCharset("unsupported_charset")
        );
    }

    // -- JSON ---------------------------------------------------------------

    #[test]
    fn json_paths_for_nested_objects_and_arrays() {
        let body = br#"{"user":{"roles":["admin",{"x":1.5}],"ok":true,"n":null},"a":[[1,-2],[3]],"s":"q\"\u0041"}"#;
        let v = post("application/json; charset=utf-8", body).unwrap();
        assert_eq!(v.body_kind, BodyKind::Json);
        let leaves: Vec<_> = v
            .values(TargetKind::Json)
            .filter(|f| f.role == FieldRole::Value)
            .map(|f| (f.name_str().into_owned(), f.value_str().into_owned()))
            .collect();
        assert_eq!(
            leaves,
            vec![
                p("user.roles[0]", "admin"),
                p("user.roles[1].x", "1.5"),
                p("user.ok", "true"),
                p("user.n", "null"),
                p("a[0][0]", "1"),
                p("a[0][1]", "-2"),
                p("a[1][0]", "3"),
                p("s", "q\"A"),
            ]
        );
        let keys: Vec<_> = v
            .values(TargetKind::Json)
            .filter(|f| f.role == FieldRole::Key)
            .map(|f| (f.name_str().into_owned(), f.value_str().into_owned()))
            .collect();
        assert_eq!(
            keys,
            vec![
                p("user", "user"),
                p("user.roles", "roles"),
                p("user.roles[1].x", "x"),
                p("user.ok", "ok"),
                p("user.n", "n"),
                p("a", "a"),
                p("s", "s"),
            ]
        );
        // Leaves are args too, so `args` rules cover JSON APIs.
        assert!(has(&v, TargetKind::Args, "user.roles[0]", "admin"));
        assert!(
            v.values(TargetKind::ArgsNames)
                .any(|f| f.value == "a[1][0]")
        );
        // Names are slices of one buffer, filled in when the walk ends:
        // every field has its own path (the argument names as values too).
        assert!(v.values(TargetKind::ArgsNames).all(|f| f.name == f.value));
        assert_eq!(
            v.values(TargetKind::ArgsPost)
                .map(|f| f.name_str().into_owned())
                .collect::<Vec<_>>(),
            leaves.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        );
        // Escape-free strings are slices of the body, not copies.
        let admin = v.get(TargetKind::Json, "user.roles[0]").unwrap();
        let body_field = v.body().unwrap();
        let base = body_field.as_ptr() as usize;
        let at = admin.value.as_ptr() as usize;
        assert!(at >= base && at < base + body_field.len());
    }

    #[test]
    fn json_scalars_suffix_types_and_bom() {
        let v = post("application/vnd.api+json", b"\xef\xbb\xbf \"top\" ").unwrap();
        assert_eq!(pairs(&v, TargetKind::Json), vec![p("", "top")]);
        let v = post("application/json", b"[1e300]").unwrap();
        assert_eq!(v.get(TargetKind::Json, "[0]").unwrap().value, "1e+300");
    }

    #[test]
    fn json_depth_limit() {
        let ok = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(post("application/json", ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        assert_eq!(
            post("application/json", deep.as_bytes()).unwrap_err(),
            ViewError::TooComplex("json_depth")
        );
        // Deeper than serde_json's own limit: still our error, not a syntax one.
        let deeper = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
        let e = post("application/json", deeper.as_bytes()).unwrap_err();
        assert_eq!(e, ViewError::TooComplex("json_depth"));
        assert_eq!(e.status(), 413);
    }

    #[test]
    fn json_field_limit_and_name_cap() {
        let limits = ViewLimits {
            max_fields: 10,
            ..ViewLimits::default()
        };
        let body = format!("[{}]", vec!["1"; 20].join(","));
        let h: &[(&str, &[u8])] = &[("content-type", b"application/json")];
        assert_eq!(
            post_with(h, body.as_bytes(), &limits).unwrap_err(),
            ViewError::TooComplex("too_many_fields")
        );
        let small = format!("[{}]", ["1"; 5].join(","));
        assert!(post_with(h, small.as_bytes(), &limits).is_ok());

        let limits = ViewLimits {
            max_name_bytes: 8,
            ..ViewLimits::default()
        };
        let body = format!("{{\"{}\":{{\"b\":\"v\"}}}}", "k".repeat(50));
        let v = post_with(h, body.as_bytes(), &limits).unwrap();
        let leaf = v
            .values(TargetKind::Json)
            .find(|f| f.role == FieldRole::Value)
            .unwrap();
        assert_eq!(leaf.name, "kkkkkkkk");
        // The long key itself is still inspected whole.
        assert!(v.values(TargetKind::Json).any(|f| f.value.len() == 50));
    }

    #[test]
    fn graphql_string_literals_are_fields_of_their_own() {
        let body = br#"{"query": "query Q { user(name: \"admin'--\", note: \"\\u003cb\\u003e \\\"x\\\"\") { id } } # \"not\"", "variables": {"id": "7"}}"#;
        let v = post("application/json", body).unwrap();
        let lits: Vec<String> = v
            .get_all(TargetKind::Json, b"query")
            .filter(|f| f.role == FieldRole::Value)
            .skip(1)
            .map(|f| String::from_utf8_lossy(&f.value).into_owned())
            .collect();
        assert_eq!(lits, ["admin'--", "<b> \"x\""]);
        assert!(has(&v, TargetKind::ArgsPost, "query", "admin'--"));
        assert!(has(&v, TargetKind::Json, "variables.id", "7"));
        // Block strings, batched operations, and GET.
        let batch =
            br#"[{"query": "mutation { post(body: \"\"\"line \"one\"\n;id\"\"\") { id } }"}]"#;
        let v = post("application/json", batch).unwrap();
        assert!(has(&v, TargetKind::Json, "[0].query", "line \"one\"\n;id"));
        let pr = parts(
            "GET",
            "/graphql?query=%7Bu(n%3A%22x%27--%22)%7Bid%7D%7D",
            &[],
        );
        let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
        assert!(has(&v, TargetKind::ArgsGet, "query", "x'--"));
        // JSON text or prose under a `query` key is not GraphQL.
        for not_gql in [
            &br#"{"query": "{\"a\": \"b\"}"}"#[..],
            br#"{"query": "queryable \"x\""}"#,
        ] {
            let v = post("application/json", not_gql).unwrap();
            let values = v.get_all(TargetKind::Json, b"query");
            assert_eq!(values.filter(|f| f.role == FieldRole::Value).count(), 1);
        }
    }

    #[test]
    fn base64_of_text_is_a_field_of_its_own() {
        // `' OR 1=1--` and `{"$ne": null}`, base64; a hex id, a random
        // token and a word stay single fields.
        let pr = parts(
            "GET",
            "/?data=JyBPUiAxPTEtLQ%3D%3D&id=5f2b9c0d1e7a4b3c&tok=q7ZxW2kP9mLrT4vB&w=Passwords",
            &[("cookie", b"pref=eyIkbmUiOiBudWxsfQ==")],
        );
        let v = RequestView::build(&pr, b"", &ViewLimits::default()).unwrap();
        assert!(has(&v, TargetKind::ArgsGet, "data", "JyBPUiAxPTEtLQ=="));
        assert!(has(&v, TargetKind::ArgsGet, "data", "' OR 1=1--"));
        assert!(has(&v, TargetKind::Cookies, "pref", "{\"$ne\": null}"));
        for name in ["id", "tok", "w"] {
            assert_eq!(
                v.get_all(TargetKind::ArgsGet, name.as_bytes()).count(),
                1,
                "{name}"
            );
        }
        // A JSON leaf: the text once as `json` and once as `args_post`.
        let v = post(
            "application/json",
            br#"{"q": "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="}"#,
        )
        .unwrap();
        let texts = |kind| {
            v.get_all(kind, b"q")
                .filter(|f| f.value[..] == b"<script>alert(1)</script>"[..])
                .count()
        };
        assert_eq!(
            (texts(TargetKind::Json), texts(TargetKind::ArgsPost)),
            (1, 1)
        );
        // A form value, the same way; headers are left alone (credentials).
        let v = post_with(
            &[
                ("content-type", b"application/x-www-form-urlencoded"),
                ("authorization", b"Basic YWRtaW46cydvcg=="),
            ],
            b"c=Y2F0IC9ldGMvcGFzc3dk",
            &ViewLimits::default(),
        )
        .unwrap();
        assert!(has(&v, TargetKind::ArgsPost, "c", "cat /etc/passwd"));
        assert_eq!(v.get_all(TargetKind::Headers, b"authorization").count(), 1);
    }

    #[test]
    fn graphql_literal_scanner_takes_any_bytes() {
        // xorshift over the bytes the scanner branches on.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let alphabet = b"\"\\#\nu0a{}() q";
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let doc: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let _ = string_literals(&doc);
            let _ = looks_like_graphql(&doc);
        }
    }

    #[test]
    fn json_syntax_errors_are_400() {
        for bad in [
            &b"{\"a\":1,}"[..],
            b"{\"a\":1} x",
            b"{'a':1}",
            b"[\"\\ud800\"]",
            b"  ",
        ] {
            let e = post("application/json", bad).unwrap_err();
            assert_eq!(
                e,
                ViewError::Malformed("json_syntax"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn text_plain_json_is_also_json() {
        let v = post("text/plain", b"{\"q\":\"<script>\"}").unwrap();
        assert!(v.json_sniffed);
        assert_eq!(v.body_kind, BodyKind::Json);
        assert!(has(&v, TargetKind::Json, "q", "<script>"));
        // Not JSON: raw only, no half-built fields left behind.
        let v = post("text/plain", b"{\"q\":\"<script>\" oops").unwrap();
        assert!(!v.json_sniffed);
        assert_eq!(v.body_kind, BodyKind::Raw);
        assert_eq!(v.values(TargetKind::Json).count(), 0);
        // Too deep is refused even when only sniffed.
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(matches!(
            post("text/plain", deep.as_bytes()),
            Err(ViewError::TooComplex(_))
        ));
    }

    #[test]
    fn missing_content_type_is_raw_only() {
        let p0 = parts("POST", "/", &[]);
        let v = RequestView::build(&p0, b"{\"a\":1}", &ViewLimits::default()).unwrap();
        assert_eq!(v.body_kind, BodyKind::Raw);
        assert_eq!(v.values(TargetKind::Json).count(), 0);
        assert_eq!(v.body().unwrap(), "{\"a\":1}");
        // Unknown types likewise.
        let v = post("application/octet-stream", b"\xff\xfe\x00").unwrap();
        assert_eq!(v.body_kind, BodyKind::Raw);
    }

    #[test]
    fn two_content_types_are_ambiguous() {
        let h: &[(&str, &[u8])] = &[
            ("content-type", b"application/json"),
            ("content-type", b"application/x-www-form-urlencoded"),
        ];
        let e = post_with(h, b"a=1", &ViewLimits::default()).unwrap_err();
        assert_eq!(e, ViewError::Ambiguous("content_type"));
        assert_eq!(e.status(), 400);
        assert_eq!(
            post("application/json; charset=utf-8; charset=latin1", b"{}").unwrap_err(),
            ViewError::Ambiguous("content_type_param")
        );
        assert_eq!(
            post("application/json, text/plain", b"{}").unwrap_err(),
            ViewError::Malformed("content_type_syntax")
        );
    }

    #[test]
    fn truncated_bodies_are_raw_only() {
        let h: &[(&str, &[u8])] = &[
            ("content-type", b"application/json"),
            ("content-length", b"100"),
        ];
        let v = post_with(h, b"{\"a\":", &ViewLimits::default()).unwrap();
        assert!(v.truncated);
        assert_eq!(v.body_kind, BodyKind::Raw);
        assert_eq!(v.body().unwrap(), "{\"a\":");
        let limits = ViewLimits {
            max_body: 10,
            ..ViewLimits::default()
        };
        let h: &[(&str, &[u8])] = &[("content-type", b"application/x-www-form-urlencoded")];
        let v = post_with(h, b"a=1&b=2&c=3&d=4", &limits).unwrap();
        assert!(v.truncated);
        assert_eq!(v.body().unwrap().len(), 10);
        // A form prefix is still parsed (`a=1&b=2&c=`).
        assert_eq!(v.get(TargetKind::ArgsPost, "b").unwrap().value, "2");
        assert_eq!(v.get(TargetKind::ArgsPost, "c").unwrap().value, "");
        let pr = parts("POST", "/", &[("content-type", b"application/json")]);
        let v = RequestView::build_prefix(&pr, Bytes::from_static(b"{}"), &limits).unwrap();
        assert!(v.truncated && v.values(TargetKind::Json).count() == 0);
    }

    // -- charsets -----------------------------------------------------------

    #[test]
    fn latin1_json_is_transcoded() {
        let v = post(
            "application/json; charset=\"iso-8859-1\"",
            b"{\"n\":\"caf\xe9\"}",
        )
        .unwrap();
        assert_eq!(v.get(TargetKind::Json, "n").unwrap().value, "café");
    }

    #[test]
    fn utf16_and_other_charsets_are_refused() {
        let utf16le: Vec<u8> = "{\"a\":1}".bytes().flat_map(|b| [b, 0]).collect();
        let mut bom = vec![0xFF, 0xFE];
        bom.extend_from_slice(&utf16le);
        for (ct, body, want) in [
            ("application/json", &bom[..], "utf-16"),
            ("application/json", &utf16le[..], "utf-16"),
            ("text/xml", &[0, 0, 0, b'<'][..], "utf-32"),
            ("application/json; charset=utf-16", &b"{}"[..], "utf-16"),
            (
                "text/plain; charset=shift_jis",
                &b"x"[..],
                "unsupported_charset",
            ),
            (
                "application/octet-stream; charset=koi8-r",
                &b"x"[..],
                "unsupported_charset",
            ),
        ] {
            let e = post(ct, body).unwrap_err();
            assert_eq!(e, ViewError::UnsupportedCharset(want), "{ct}");
            assert_eq!(e.status(), 415);
        }
        // A UTF-8 BOM contradicting a latin-1 label.
        assert_eq!(
            post("application/json; charset=latin1", b"\xef\xbb\xbf{}").unwrap_err(),
            ViewError::Ambiguous("charset_bom")
        );
        // A UTF-16 BOM on an upload of unknown type is just bytes.
        assert!(post("application/octet-stream", &bom).is_ok());
    }

    // -- content encodings --------------------------------------------------

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn encoded(enc: &str, body: &[u8]) -> Result<RequestView, ViewError> {
        let h: &[(&str, &[u8])] = &[
            ("content-type", b"application/json"),
            ("content-encoding", enc.as_bytes()),
        ];
        post_with(h, body, &ViewLimits::default())
    }

    #[test]
    fn gzip_and_deflate_bodies() {
        let json = br#"{"cmd":"cat /etc/passwd"}"#;
        let v = encoded("gzip", &gzip(json)).unwrap();
        assert_eq!(v.content_coding, ContentCoding::Gzip);
        assert!(has(&v, TargetKind::Json, "cmd", "cat /etc/passwd"));
        assert_eq!(v.body().unwrap(), &json[..]);

        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(json).unwrap();
        let v = encoded("deflate", &z.finish().unwrap()).unwrap();
        assert!(has(&v, TargetKind::Json, "cmd", "cat /etc/passwd"));

        let mut d = DeflateEncoder::new(Vec::new(), Compression::default());
        d.write_all(json).unwrap();
        let v = encoded("Deflate", &d.finish().unwrap()).unwrap();
        assert_eq!(v.content_coding, ContentCoding::Deflate);
        assert!(has(&v, TargetKind::Json, "cmd", "cat /etc/passwd"));

        let v = encoded("identity", json).unwrap();
        assert_eq!(v.content_coding, ContentCoding::Identity);
    }

    #[test]
    fn compressed_trailing_data_and_corruption_are_refused() {
        let mut two = gzip(b"{}");
        two.extend_from_slice(&gzip(b"{\"hidden\":1}"));
        assert_eq!(
            encoded("gzip", &two).unwrap_err(),
            ViewError::Malformed("compressed_trailing_data")
        );
        let mut bad = gzip(b"{\"a\":1}");
        let n = bad.len();
        bad[n - 5] ^= 0xFF; // CRC / length trailer
        assert_eq!(
            encoded("gzip", &bad).unwrap_err(),
            ViewError::Malformed("gzip_corrupt")
        );
        assert_eq!(
            encoded("gzip", b"not gzip").unwrap_err(),
            ViewError::Malformed("gzip_corrupt")
        );
    }

    #[test]
    fn unknown_and_stacked_encodings_are_415() {
        for (enc, want) in [
            ("br", "br"),
            ("zstd", "zstd"),
            ("compress", "compress"),
            ("snappy", "unknown_encoding"),
            ("gzip, gzip", "stacked_encodings"),
            ("deflate,gzip", "stacked_encodings"),
        ] {
            let e = encoded(enc, b"x").unwrap_err();
            assert_eq!(e, ViewError::UnsupportedEncoding(want), "{enc}");
            assert_eq!(e.status(), 415);
        }
        let h: &[(&str, &[u8])] = &[("content-encoding", b"gzip"), ("content-encoding", b"gzip")];
        assert_eq!(
            post_with(h, b"x", &ViewLimits::default()).unwrap_err(),
            ViewError::UnsupportedEncoding("stacked_encodings")
        );
    }

    /// Counts what the decoder hands out, to show the bomb is stopped early.
    struct Counting<R> {
        inner: R,
        produced: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.produced += n;
            Ok(n)
        }
    }

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..10 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        // Big inspection limit, so only the ratio can stop it.
        let limits = ViewLimits {
            max_body: 64 << 20,
            ..ViewLimits::default()
        };
        let h: &[(&str, &[u8])] = &[("content-encoding", b"gzip")];
        let err = post_with(h, &bomb, &limits).unwrap_err();
        assert_eq!(err, ViewError::DecompressionBomb);
        assert_eq!(err.status(), 413);
        let mut r = Counting {
            inner: GzDecoder::new(&bomb[..]),
            produced: 0,
        };
        assert_eq!(
            inflate(&mut r, bomb.len(), true, &limits, "gzip_corrupt").unwrap_err(),
            ViewError::DecompressionBomb
        );
        let cap = (bomb.len() * 100).max(64 * 1024);
        assert!(r.produced <= cap + 16 * 1024, "{} > {cap}", r.produced);
        assert!(r.produced < 10 << 20);
        // With the default limits one of the two 413s stops it.
        let err = post_with(h, &bomb, &ViewLimits::default()).unwrap_err();
        assert!(matches!(
            err,
            ViewError::DecompressionBomb | ViewError::TooLarge
        ));
    }

    #[test]
    fn decoded_body_over_the_limit() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let limits = ViewLimits {
            max_body: 100_000,
            ..ViewLimits::default()
        };
        let h: &[(&str, &[u8])] = &[("content-encoding", b"gzip")];
        assert_eq!(
            post_with(h, &gzip(&data), &limits).unwrap_err(),
            ViewError::TooLarge
        );
        // A compressed prefix is inspected as far as it goes.
        let pr = parts("POST", "/", h);
        let z = gzip(&data);
        let v = RequestView::build_prefix(&pr, Bytes::from(z[..z.len() / 2].to_vec()), &limits)
            .unwrap();
        assert!(v.truncated);
        assert!(!v.body().unwrap().is_empty());
        assert!(v.body().unwrap().len() <= 100_000);
        assert_eq!(v.body().unwrap()[..], data[..v.body().unwrap().len()]);
    }

    // -- multipart ----------------------------------------------------------

    const MP: &str = "multipart/form-data; boundary=XyZ";

    fn mp(body: &str) -> Result<RequestView, ViewError> {
        post(MP, body.as_bytes())
    }

    #[test]
    fn multipart_fields_files_and_part_headers() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\nworld\r\n\
                    --XyZ\r\ncontent-disposition: form-data; name=a\r\n\r\n2\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"shell.php\"\r\n\
                    Content-Type: application/x-php\r\nX-Extra: 1\r\n\r\n<?php system($_GET['c']); ?>\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"empty\"; filename=\"\"\r\n\r\n\r\n\
                    --XyZ--\r\n";
        let v = mp(body).unwrap();
        assert_eq!(v.body_kind, BodyKind::Multipart);
        assert_eq!(
            pairs(&v, TargetKind::ArgsPost),
            vec![
                p("a", "hello\r\nworld"),
                p("a", "2"),
                p("a+", "hello\r\nworld,2")
            ]
        );
        assert_eq!(
            pairs(&v, TargetKind::Files),
            vec![p("up", "shell.php"), p("empty", "")]
        );
        assert_eq!(
            v.get(TargetKind::FilesContent, "up").unwrap().value,
            "<?php system($_GET['c']); ?>"
        );
        assert!(has(
            &v,
            TargetKind::MultipartHeaders,
            "content-type",
            "application/x-php"
        ));
        assert!(has(&v, TargetKind::MultipartHeaders, "x-extra", "1"));
        let names: Vec<_> = pairs(&v, TargetKind::ArgsNames)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(names, ["a", "a", "up", "empty"]);
    }

    #[test]
    fn multipart_boundary_forms_and_file_cap() {
        let body = "--a b'c\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\r\n0123456789\r\n--a b'c--";
        let limits = ViewLimits {
            max_file_bytes: 4,
            ..ViewLimits::default()
        };
        let h: &[(&str, &[u8])] = &[("content-type", b"multipart/form-data; boundary=\"a b'c\"")];
        let v = post_with(h, body.as_bytes(), &limits).unwrap();
        assert_eq!(v.get(TargetKind::FilesContent, "f").unwrap().value, "0123");
        // Empty form: just the close.
        let v = mp("--XyZ--\r\n").unwrap();
        assert_eq!(v.values(TargetKind::ArgsPost).count(), 0);
        // Latin-1 text part.
        let v = mp(
            "--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\u{e9}\r\n--XyZ--",
        );
        // (\u{e9} is sent as UTF-8 here, i.e. two latin-1 characters.)
        assert_eq!(
            v.unwrap().get(TargetKind::ArgsPost, "t").unwrap().value,
            "cafÃ©"
        );
    }

    #[test]
    fn multipart_content_type_rejections() {
        let long = "b".repeat(71);
        for (ct, want) in [
            ("multipart/form-data", "multipart_no_boundary"),
            (
                "multipart/form-data; boundary=a; boundary=b",
                "multipart_duplicate_boundary",
            ),
            (
                "multipart/form-data; BOUNDARY=a; boundary=a",
                "multipart_duplicate_boundary",
            ),
            (
                &format!("multipart/form-data; boundary={long}"),
                "multipart_boundary_syntax",
            ),
            (
                "multipart/form-data; boundary=\"a\\b\"",
                "multipart_boundary_syntax",
            ),
            (
                "multipart/form-data; boundary=\"ab \"",
                "multipart_boundary_syntax",
            ),
            ("multipart/form-data; boundary=a/b", "content_type_syntax"),
            ("multipart/form-data; boundary=", "content_type_syntax"),
        ] {
            let e = match post(ct, b"--a--") {
                Err(e) => e,
                Ok(_) => panic!("accepted {ct}"),
            };
            assert_eq!(e, ViewError::Malformed(want), "{ct}");
            assert_eq!(e.status(), 400);
        }
        assert!(
            post(
                &format!("multipart/form-data; boundary={}", "b".repeat(70)),
                format!("--{}--", "b".repeat(70)).as_bytes()
            )
            .is_ok()
        );
    }

    #[test]
    fn multipart_strict_rejections() {
        let cd = "Content-Disposition: form-data; name=\"a\"";
        let cases: Vec<(String, &str)> = vec![
            ("no boundary here".into(), "multipart_boundary_not_found"),
            (format!("preamble\r\n--XyZ\r\n{cd}\r\n\r\nv\r\n--XyZ--"), "multipart_preamble"),
            (format!("\r\n--XyZ\r\n{cd}\r\n\r\nv\r\n--XyZ--"), "multipart_preamble"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv\r\n--XyZ--\r\nepilogue"), "multipart_epilogue"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv\r\n--XyZ--\r\n\r\n"), "multipart_epilogue"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv\r\n--XyZ--\n"), "multipart_bare_lf"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv\r\n--XyZ"), "multipart_missing_close"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv"), "multipart_missing_close"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv\r\n--XyZ\r\n"), "multipart_missing_close"),
            (format!("--XyZ\r\n{cd}\r\n--XyZ--"), "multipart_headers_unterminated"),
            (format!("--XyZ  \r\n{cd}\r\n\r\nv\r\n--XyZ--"), "multipart_delimiter_suffix"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv\r\n--XyZab\r\n--XyZ--"), "multipart_delimiter_suffix"),
            (format!("--XyZ\n{cd}\n\nv\n--XyZ--"), "multipart_bare_lf"),
            (format!("--XyZ\r\n{cd}\n\r\nv\r\n--XyZ--"), "multipart_bare_lf"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv\n--XyZ--"), "multipart_bare_lf"),
            (format!("--XyZ\r\n{cd}\r\n\r\nv--XyZ\r\n--XyZ--"), "multipart_boundary_in_content"),
            (format!("--XyZ\r\n{cd}\rX\r\n\r\nv\r\n--XyZ--"), "multipart_bare_cr"),
            ("--XyZ\r\n\r\nv\r\n--XyZ--".into(), "multipart_no_disposition"),
            ("--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--".into(), "multipart_no_disposition"),
            (format!("--XyZ\r\n{cd}\r\n{cd}\r\n\r\nv\r\n--XyZ--"), "multipart_duplicate_disposition"),
            (format!("--XyZ\r\n{cd}\r\n x: folded\r\n\r\nv\r\n--XyZ--"), "multipart_obs_fold"),
            (format!("--XyZ\r\n{cd}\r\n\tx\r\n\r\nv\r\n--XyZ--"), "multipart_obs_fold"),
            (format!("--XyZ\r\n{cd}\r\nno colon\r\n\r\nv\r\n--XyZ--"), "multipart_header_syntax"),
            (format!("--XyZ\r\n{cd}\r\nbad name: x\r\n\r\nv\r\n--XyZ--"), "multipart_header_syntax"),
            (format!("--XyZ\r\n{cd}\r\nx: a\u{1}b\r\n\r\nv\r\n--XyZ--"), "multipart_header_syntax"),
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename*=UTF-8''x.php\r\n\r\nv\r\n--XyZ--".into(), "multipart_filename_star"),
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\"; name*=UTF-8''b\r\n\r\nv\r\n--XyZ--".into(), "multipart_extended_param"),
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\"; size=3\r\n\r\nv\r\n--XyZ--".into(), "multipart_disposition_param"),
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nv\r\n--XyZ--".into(), "multipart_duplicate_param"),
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"x\"; filename=\"y\"\r\n\r\nv\r\n--XyZ--".into(), "multipart_duplicate_param"),
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\\\"; filename=\"x.php\"\r\n\r\nv\r\n--XyZ--".into(), "multipart_disposition_escape"),
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XyZ--".into(), "multipart_disposition_syntax"),
            ("--XyZ\r\nContent-Disposition: form-data name=\"a\"\r\n\r\nv\r\n--XyZ--".into(), "multipart_disposition_syntax"),
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\";\r\n\r\nv\r\n--XyZ--".into(), "multipart_disposition_syntax"),
            ("--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--XyZ--".into(), "multipart_disposition_type"),
            ("--XyZ\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nv\r\n--XyZ--".into(), "multipart_disposition_no_name"),
            (format!("--XyZ\r\n{cd}\r\nContent-Type: a/b\r\nContent-Type: a/b\r\n\r\nv\r\n--XyZ--"), "multipart_duplicate_content_type"),
            (format!("--XyZ\r\n{cd}\r\nContent-Type: what\r\n\r\nv\r\n--XyZ--"), "multipart_part_content_type"),
            (format!("--XyZ\r\n{cd}\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\nv\r\n--XyZ--"), "multipart_nested"),
            (format!("--XyZ\r\n{cd}\r\nContent-Transfer-Encoding: base64\r\n\r\ndg==\r\n--XyZ--"), "multipart_transfer_encoding"),
            (format!("--XyZ\r\n{cd}\r\nContent-Transfer-Encoding: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\nv\r\n--XyZ--"), "multipart_duplicate_transfer_encoding"),
            ("--XyZ\r\n--XyZ--".into(), "multipart_empty_part"),
        ];
        for (body, want) in &cases {
            let e = match mp(body) {
                Err(e) => e,
                Ok(v) => panic!("accepted {body:?}: {:?}", v.fields()),
            };
            assert_eq!(e, ViewError::Malformed(want), "{body:?}");
            assert_eq!(e.status(), 400);
        }
        assert_eq!(
            mp(&format!(
                "--XyZ\r\n{cd}\r\nContent-Type: text/plain; charset=utf-16\r\n\r\nv\r\n--XyZ--"
            ))
            .unwrap_err(),
            ViewError::UnsupportedCharset("utf-16")
        );
        // The same constructs well-formed are accepted.
        assert!(
            mp(&format!(
                "--XyZ\r\n{cd}\r\nContent-Transfer-Encoding: 8bit\r\n\r\nv\r\n--XyZ--"
            ))
            .is_ok()
        );
        assert!(mp(&format!("--XyZ\r\n{cd}\r\n\r\n\r\n--XyZ--")).is_ok());
    }

    #[test]
    fn multipart_fields_count_against_the_limit() {
        let part = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n";
        let body = format!("{}--XyZ--", part.repeat(50));
        let limits = ViewLimits {
            max_fields: 60,
            ..ViewLimits::default()
        };
        let h: &[(&str, &[u8])] = &[("content-type", MP.as_bytes())];
        assert_eq!(
            post_with(h, body.as_bytes(), &limits).unwrap_err(),
            ViewError::TooComplex("too_many_fields")
        );
    }

    #[test]
    fn multipart_search_is_linear_on_dash_runs() {
        // A boundary of 69 dashes + `x` over a megabyte of dashes: a naive
        // search does ~70M comparisons here; KMP does one pass.
        let b = format!("{}x", "-".repeat(69));
        let mut body =
            format!("--{b}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n").into_bytes();
        body.extend(std::iter::repeat_n(b'-', 1 << 19));
        body.extend_from_slice(format!("\r\n--{b}--").as_bytes());
        let ct = format!("multipart/form-data; boundary={b}");
        let v = post(&ct, &body).unwrap();
        assert_eq!(
            v.get(TargetKind::ArgsPost, "a").unwrap().value.len(),
            1 << 19
        );
    }

    // -- XML ----------------------------------------------------------------

    #[test]
    fn xml_text_and_attributes() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->\n<root a='1' b=\"\">\n  <user id=\"x&amp;y\">bob &lt;b&gt; &#x41;&#66; &custom;</user>\n  <![CDATA[<script>]]><e/>\n</root>\n";
        let v = post("application/soap+xml", body.as_bytes()).unwrap();
        assert_eq!(v.body_kind, BodyKind::Xml);
        assert!(!v.xml_malformed && !v.xml_has_doctype);
        assert_eq!(
            pairs(&v, TargetKind::Xml),
            vec![
                p("root@a", "1"),
                p("user@id", "x&y"),
                p("user", "bob <b> AB &custom;"),
                p("root", "<script>"),
            ]
        );
    }

    #[test]
    fn xml_doctype_and_entities_are_flagged_not_expanded() {
        let body = "<?xml version=\"1.0\"?>\n<!DOCTYPE foo [<!ELEMENT foo ANY>\n<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<foo>&xxe;</foo>";
        let v = post("text/xml", body.as_bytes()).unwrap();
        assert!(v.xml_has_doctype && v.xml_entities && v.xml_external_dtd);
        assert!(!v.xml_malformed);
        assert_eq!(pairs(&v, TargetKind::Xml), vec![p("foo", "&xxe;")]);
        assert_eq!(v.body().unwrap(), body);

        let v = post("application/xml", b"<!DOCTYPE html><html>x</html>").unwrap();
        assert!(v.xml_has_doctype && !v.xml_entities && !v.xml_external_dtd);
        // Flags survive a malformed document (and a lower-case doctype).
        let v = post(
            "application/xml",
            b"<!doctype a [<!entity % p SYSTEM 'http://x/'>]><a>",
        )
        .unwrap();
        assert!(v.xml_malformed && v.xml_has_doctype && v.xml_entities && v.xml_external_dtd);
    }

    #[test]
    fn malformed_xml_keeps_raw_body_only() {
        for bad in [
            &b"<a><b></a>"[..],
            b"<a>",
            b"<a></a><b></b>",
            b"text<a/>",
            b"<a x=1/>",
            b"<a x='1' x='2'/>",
            b"<a>&bogus</a>",
            b"<a>&#0;</a>",
            b"<a>&#xD800;</a>",
            b"<a x='<'/>",
            b"<a><!-- open</a>",
            b"<a/><?xml version='1.0'?>",
            b"",
            b"  ",
        ] {
            let v = post("text/xml", bad);
            if bad.is_empty() {
                // An empty body is no body.
                assert_eq!(v.unwrap().body_kind, BodyKind::None);
                continue;
            }
            let v = v.unwrap();
            assert!(v.xml_malformed, "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(v.values(TargetKind::Xml).count(), 0);
            assert_eq!(v.body().unwrap(), bad);
        }
    }

    #[test]
    fn xml_depth_and_encodings() {
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        assert_eq!(
            post("text/xml", deep.as_bytes()).unwrap_err(),
            ViewError::TooComplex("xml_depth")
        );
        let v = post(
            "text/xml",
            b"<?xml version='1.0' encoding='ISO-8859-1'?><a>caf\xe9</a>",
        )
        .unwrap();
        assert_eq!(v.charset, Charset::Latin1);
        assert_eq!(v.get(TargetKind::Xml, "a").unwrap().value, "café");
        assert_eq!(
            post("text/xml", b"<?xml version='1.0' encoding='UTF-16'?><a/>").unwrap_err(),
            ViewError::UnsupportedCharset("utf-16")
        );
        assert_eq!(
            post(
                "text/xml; charset=utf-8",
                b"<?xml version='1.0' encoding='latin1'?><a/>"
            )
            .unwrap_err(),
            ViewError::Ambiguous("charset")
        );
        assert!(
            post(
                "text/xml; charset=utf-8",
                b"\xef\xbb\xbf<?xml version='1.0' encoding='utf-8'?><a/>"
            )
            .is_ok()
        );
    }

    // -- errors -------------------------------------------------------------

    #[test]
    fn every_error_has_a_status_and_reason() {
        let all = [
            (ViewError::Malformed("x"), 400),
            (ViewError::Ambiguous("x"), 400),
            (ViewError::TooComplex("x"), 413),
            (ViewError::TooLarge, 413),
            (ViewError::DecompressionBomb, 413),
            (ViewError::UnsupportedEncoding("x"), 415),
            (ViewError::UnsupportedCharset("x"), 415),
        ];
        for (e, s) in all {
            assert_eq!(e.status(), s);
            assert!(!e.reason().is_empty());
            assert!(!e.to_string().is_empty());
        }
        for k in TargetKind::ALL {
            assert_eq!(TargetKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn too_many_query_args() {
        let q: String = (0..50)
            .map(|i| format!("a{i}=1"))
            .collect::<Vec<_>>()
            .join("&");
        let pr = parts("GET", &format!("/?{q}"), &[]);
        let limits = ViewLimits {
            max_fields: 20,
            ..ViewLimits::default()
        };
        assert_eq!(
            RequestView::build(&pr, b"", &limits).unwrap_err(),
            ViewError::TooComplex("too_many_fields")
        );
    }

    // -- no panics on arbitrary input ---------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// Random bytes biased towards the syntax of the parsers under test.
        fn bytes(&mut self, max: usize, alphabet: &[u8]) -> Vec<u8> {
            let n = self.below(max + 1);
            (0..n)
                .map(|_| {
                    if self.below(4) == 0 {
                        self.next() as u8
                    } else {
                        alphabet[self.below(alphabet.len())]
                    }
                })
                .collect()
        }

        /// Flips, inserts and deletes a few bytes of a valid sample.
        fn mutate(&mut self, seed: &[u8], alphabet: &[u8]) -> Vec<u8> {
            let mut v = seed.to_vec();
            for _ in 0..1 + self.below(4) {
                let at = self.below(v.len() + 1);
                match self.below(3) {
                    0 if at < v.len() => v[at] = alphabet[self.below(alphabet.len())],
                    1 => v.insert(at, alphabet[self.below(alphabet.len())]),
                    _ if at < v.len() => {
                        v.remove(at);
                    }
                    _ => {}
                }
            }
            v
        }
    }

    fn run_all(body: &[u8]) {
        let limits = ViewLimits {
            max_fields: 64,
            max_json_depth: 8,
            ..ViewLimits::default()
        };
        let b = Bytes::copy_from_slice(body);
        let mut col = Collector::new(0, limits.max_fields);
        let _ = parse_multipart(&b, b"XyZ", Charset::Utf8, &mut col, &limits);
        let mut col = Collector::new(0, limits.max_fields);
        let _ = parse_json(&b, &mut col, &limits);
        let mut col = Collector::new(0, limits.max_fields);
        let _ = parse_xml(
            &b,
            &mut col,
            limits.max_json_depth,
            &mut XmlFlags::default(),
        );
        let _ = MediaType::parse(body);
        let _ = parse_disposition(&b);
        let _ = xml_decl_encoding(body);
        let _ = check_text_encoding(body);
    }

    #[test]
    fn parsers_never_panic_on_pseudo_random_input() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let alphabet = b"<>/=\"'&;#x![]-?:{}[],\\ \r\n\tXyZabc01nulltrueCDATADOCTYPEENTITY";
        let seeds: [&[u8]; 4] = [
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"f\"\r\nContent-Type: text/plain; charset=latin1\r\n\r\nv\r\n--XyZ--\r\n",
            br#"{"a":[1,{"b":"c\u0041"},true,null,-1.5e3],"d":{}}"#,
            b"<?xml version='1.0' encoding='utf-8'?><!DOCTYPE a [<!ENTITY e 'x'>]><a k='v&amp;'>t&#65;<![CDATA[c]]><b/></a>",
            b"multipart/form-data; boundary=\"x y\"; charset=utf-8",
        ];
        for _ in 0..20_000 {
            let body = if rng.below(2) == 0 {
                rng.bytes(256, alphabet)
            } else {
                let seed = seeds[rng.below(seeds.len())];
                rng.mutate(seed, alphabet)
            };
            run_all(&body);
        }
    }

    #[test]
    fn build_never_panics_on_pseudo_random_requests() {
        let mut rng = XorShift(42);
        let types = [
            "application/json",
            "text/plain",
            "text/xml",
            "application/x-www-form-urlencoded; charset=latin1",
            "multipart/form-data; boundary=XyZ",
        ];
        let alphabet = b"<>/=\"'&;%+{}[],:\\ \r\n-XyZ";
        for _ in 0..3_000 {
            let ct = types[rng.below(types.len())];
            let body = rng.bytes(200, alphabet);
            let limits = ViewLimits {
                max_body: 1 + rng.below(256),
                ..ViewLimits::default()
            };
            let h: &[(&str, &[u8])] = &[("content-type", ct.as_bytes())];
            let _ = post_with(h, &body, &limits);
            let z = gzip(&body);
            let h: &[(&str, &[u8])] = &[
                ("content-type", ct.as_bytes()),
                ("content-encoding", b"gzip"),
            ];
            let cut = rng.below(z.len() + 1);
            let _ = post_with(h, &z[..cut], &limits);
        }
    }
}
