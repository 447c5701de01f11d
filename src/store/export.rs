//! `audit export`: audit records streamed, oldest first, to any writer —
//! one record in memory at a time, whatever the size of the chain.
//!
//! - [`Format::Json`]: NDJSON, one Elastic Common Schema (ECS 8.x) document
//!   per line, ready for Elasticsearch, Filebeat or any SIEM that speaks ECS.
//! - [`Format::Csv`]: RFC 4180 with a header row and fixed columns
//!   ([`CSV_COLUMNS`]), for spreadsheets and auditors.
//!
//! The JSON form is lossless: every field of the stored record lands
//! somewhere, in an ECS field where one fits and under `portcullis.audit`
//! otherwise (fields this version does not know go to
//! `portcullis.audit.extra`, as stored). Absent fields are omitted.
//!
//! | ECS field | from the record |
//! |---|---|
//! | `@timestamp` | `ts` |
//! | `event.id` | `id` |
//! | `event.sequence` | `seq` |
//! | `event.category` | `category`: authentication → `authentication`, authorization → `iam`, data_access → `database`, admin_action → `configuration`, api_access → `web`, security_event → `intrusion_detection`, privacy → `iam`; omitted for other values |
//! | `event.action` | `action` |
//! | `event.outcome` | `outcome`: success → `success`, failure and denied → `failure`, anything else → `unknown` |
//! | `event.kind` | `event` |
//! | `event.module` | `portcullis` |
//! | `event.dataset` | `portcullis.audit` |
//! | `ecs.version` | `8.11.0` |
//! | `user.name` | `user` (`[erased]` once the subject was erased) |
//! | `user.roles` | `[role]` |
//! | `source.ip` | `ip` |
//! | `source.geo.country_iso_code` | `geo` |
//! | `user_agent.original` | `user_agent` |
//! | `url.path` | `endpoint` |
//! | `http.request.method` | `method` |
//! | `http.response.status_code` | `status` |
//! | `http.request.id` | `request_id` |
//! | `observer.name` | `instance_id` |
//! | `observer.type` | `waf` |
//! | `observer.product` | `Portcullis` |
//! | `portcullis.audit.category` | `category`, as stored |
//! | `portcullis.audit.outcome` | `outcome`, as stored (keeps `denied` apart from `failure`) |
//! | `portcullis.audit.resource_type` | `resource_type` |
//! | `portcullis.audit.resource_id` | `resource_id` |
//! | `portcullis.audit.changes` | `changes` (`{field: {old, new}}`) |
//! | `portcullis.audit.details` | `details` |
//! | `portcullis.audit.erased` | `erased` (true once the subject was erased) |
//! | `portcullis.audit.hash` | `hash`, when the reader supplies the chain hash |
//! | `portcullis.audit.extra` | every other field, as stored |
//!
//! CSV cells that a spreadsheet would run as a formula (starting with `=`,
//! `+`, `-`, `@`, TAB or CR) get a leading `'`, as OWASP advises; numbers
//! (`seq`, `status`) never do. `changes` and `details` are JSON text. CSV is
//! the flat view: `erased` shows only as the `[erased]` user, and fields
//! outside the columns are left out (the JSON form keeps them).

use std::io::{BufWriter, Write};

use serde_json::{Map, Value, json};

use super::crypto::Keyring;
use super::query::{self, AuditFilter};
use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    /// For HTTP responses carrying an export.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
}

pub const ECS_VERSION: &str = "8.11.0";

/// The CSV columns, in order; also the record fields they come from.
pub const CSV_COLUMNS: [&str; 19] = [
    "seq",
    "id",
    "ts",
    "category",
    "action",
    "outcome",
    "user",
    "role",
    "ip",
    "resource_type",
    "resource_id",
    "endpoint",
    "method",
    "status",
    "request_id",
    "instance_id",
    "geo",
    "changes",
    "details",
];

/// Record fields copied unchanged into one ECS field: (ECS path, field).
const DIRECT: &[(&str, &str)] = &[
    ("@timestamp", "ts"),
    ("event.id", "id"),
    ("event.sequence", "seq"),
    ("event.action", "action"),
    ("user.name", "user"),
    ("source.ip", "ip"),
    ("source.geo.country_iso_code", "geo"),
    ("user_agent.original", "user_agent"),
    ("url.path", "endpoint"),
    ("http.request.method", "method"),
    ("http.response.status_code", "status"),
    ("http.request.id", "request_id"),
    ("observer.name", "instance_id"),
    ("portcullis.audit.resource_type", "resource_type"),
    ("portcullis.audit.resource_id", "resource_id"),
    ("portcullis.audit.changes", "changes"),
    ("portcullis.audit.details", "details"),
    ("portcullis.audit.erased", "erased"),
    ("portcullis.audit.hash", "hash"),
];

/// The mapping table of the module documentation, for the README.
pub fn ecs_mapping() -> &'static [(&'static str, &'static str)] {
    &[
        ("@timestamp", "ts"),
        ("event.id", "id"),
        ("event.sequence", "seq"),
        (
            "event.category",
            "category: authentication → authentication, authorization → iam, data_access → database, admin_action → configuration, api_access → web, security_event → intrusion_detection, privacy → iam; omitted for other values",
        ),
        ("event.action", "action"),
        (
            "event.outcome",
            "outcome: success → success, failure and denied → failure, anything else → unknown",
        ),
        ("event.kind", "\"event\""),
        ("event.module", "\"portcullis\""),
        ("event.dataset", "\"portcullis.audit\""),
        ("ecs.version", "\"8.11.0\""),
        ("user.name", "user ([erased] once the subject was erased)"),
        ("user.roles", "[role]"),
        ("source.ip", "ip"),
        ("source.geo.country_iso_code", "geo"),
        ("user_agent.original", "user_agent"),
        ("url.path", "endpoint"),
        ("http.request.method", "method"),
        ("http.response.status_code", "status"),
        ("http.request.id", "request_id"),
        ("observer.name", "instance_id"),
        ("observer.type", "\"waf\""),
        ("observer.product", "\"Portcullis\""),
        ("portcullis.audit.category", "category, as stored"),
        (
            "portcullis.audit.outcome",
            "outcome, as stored (keeps denied apart from failure)",
        ),
        ("portcullis.audit.resource_type", "resource_type"),
        ("portcullis.audit.resource_id", "resource_id"),
        ("portcullis.audit.changes", "changes ({field: {old, new}})"),
        ("portcullis.audit.details", "details"),
        (
            "portcullis.audit.erased",
            "erased (true once the subject was erased)",
        ),
        (
            "portcullis.audit.hash",
            "hash, when the reader supplies the chain hash",
        ),
        ("portcullis.audit.extra", "every other field, as stored"),
    ]
}

/// ECS allowed values only: a category without a fitting one gets none
/// (it is still in `portcullis.audit.category`).
fn ecs_category(category: &str) -> Option<&'static str> {
    Some(match category {
        "authentication" => "authentication",
        "authorization" | "privacy" => "iam",
        "data_access" => "database",
        "admin_action" => "configuration",
        "api_access" => "web",
        "security_event" => "intrusion_detection",
        _ => return None,
    })
}

fn ecs_outcome(outcome: Option<&str>) -> &'static str {
    match outcome {
        Some("success") => "success",
        Some("failure" | "denied") => "failure",
        _ => "unknown",
    }
}

/// Sets `path` (dotted) in `doc`, creating the objects on the way.
fn put(doc: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            doc.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let inner = doc.entry(head).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = inner {
                put(m, rest, v);
            }
        }
    }
}

/// Removes `key`; a null counts as absent.
fn take(rec: &mut Map<String, Value>, key: &str) -> Option<Value> {
    rec.remove(key).filter(|v| !v.is_null())
}

/// The ECS document of one decoded audit record (see the module table).
pub fn ecs_document(mut rec: Map<String, Value>) -> Map<String, Value> {
    let mut doc = Map::new();
    for (ecs, field) in DIRECT {
        if let Some(v) = take(&mut rec, field) {
            put(&mut doc, ecs, v);
        }
    }
    if let Some(c) = take(&mut rec, "category") {
        if let Some(e) = c.as_str().and_then(ecs_category) {
            put(&mut doc, "event.category", json!([e]));
        }
        put(&mut doc, "portcullis.audit.category", c);
    }
    if let Some(o) = take(&mut rec, "outcome") {
        put(&mut doc, "event.outcome", json!(ecs_outcome(o.as_str())));
        put(&mut doc, "portcullis.audit.outcome", o);
    }
    if let Some(r) = take(&mut rec, "role") {
        let roles = if r.is_array() { r } else { json!([r]) };
        put(&mut doc, "user.roles", roles);
    }
    put(&mut doc, "event.kind", json!("event"));
    put(&mut doc, "event.module", json!("portcullis"));
    put(&mut doc, "event.dataset", json!("portcullis.audit"));
    put(&mut doc, "ecs.version", json!(ECS_VERSION));
    put(&mut doc, "observer.type", json!("waf"));
    put(&mut doc, "observer.product", json!("Portcullis"));
    if !rec.is_empty() {
        put(&mut doc, "portcullis.audit.extra", Value::Object(rec));
    }
    doc
}

/// Appends one CSV cell: formula-guarded when `guard`, quoted when needed.
fn push_cell(line: &mut String, s: &str, guard: bool) {
    let formula = guard && s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = s.contains([',', '"', '\r', '\n']);
    if quote {
        line.push('"');
    }
    if formula {
        line.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            line.push('"');
        }
        line.push(c);
    }
    if quote {
        line.push('"');
    }
}

/// The CSV header line (CRLF-terminated).
pub fn csv_header() -> String {
    let mut line = CSV_COLUMNS.join(",");
    line.push_str("\r\n");
    line
}

/// Appends the CSV line (CRLF-terminated) of one decoded audit record.
pub fn csv_row(rec: &Map<String, Value>, line: &mut String) {
    for (i, col) in CSV_COLUMNS.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let json_text = matches!(*col, "changes" | "details");
        match rec.get(*col) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !json_text => push_cell(line, s, true),
            // Numbers are data, not formulas: `-5` stays `-5`.
            Some(v @ Value::Number(_)) => push_cell(line, &v.to_string(), false),
            Some(v) => push_cell(line, &v.to_string(), true),
        }
    }
    line.push_str("\r\n");
}

/// Streams the audit records that `filter` selects to `out` in `format`;
/// returns how many were written. `out` is buffered here and flushed at
/// the end, so a caller can pass a raw file or stdout.
pub fn export(
    store: &dyn Store,
    ring: &Keyring,
    filter: &AuditFilter,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let mut w = BufWriter::with_capacity(64 << 10, out);
    if format == Format::Csv {
        w.write_all(csv_header().as_bytes())?;
    }
    let mut n = 0u64;
    let mut failed: Option<std::io::Error> = None;
    let mut line = String::new();
    query::audit_records(store, ring, filter, &mut |_, rec| {
        let written = match format {
            Format::Json => serde_json::to_writer(&mut w, &ecs_document(rec))
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n")),
            Format::Csv => {
                line.clear();
                csv_row(&rec, &mut line);
                w.write_all(line.as_bytes())
            }
        };
        match written {
            Ok(()) => {
                n += 1;
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    w.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::AuditIn;
    use crate::store::writer::{self, OnError, SyncMode, WriterConfig};
    use crate::store::{Engine, keys, open, tempdir};
    use std::sync::Arc;

    const T0: u64 = 1_763_870_400_000_000; // 2025-11-23T04:00:00Z

    /// The awkward values: separators, quotes, line breaks, unicode and a
    /// spreadsheet formula.
    fn records() -> Vec<AuditIn> {
        vec![
            AuditIn {
                ts_us: T0,
                category: "authorization".into(),
                action: "+SUM(1,2)".into(),
                outcome: "denied".into(),
                user: Some("ali,ce \"the\" admin\nline2 ünïcødé 🙂".into()),
                ip: Some("2001:db8::7".parse().unwrap()),
                role: Some("admin".into()),
                resource_type: Some("user".into()),
                resource_id: Some("=cmd|' /C calc'!A0".into()),
                changes: json!({"email": {"old": "a,b@example.com", "new": "x\"y\r\nz"}}),
                endpoint: Some("/api/users/42".into()),
                method: Some("PATCH".into()),
                geo: Some("FR".into()),
                status: Some(403),
                request_id: Some("req-1,2".into()),
                details: json!({"note": "-2+3", "n": -5}),
            },
            AuditIn {
                ts_us: T0 + 60_000_000,
                category: "data_access".into(),
                action: "@export".into(),
                outcome: "success".into(),
                ip: Some("203.0.113.9".parse().unwrap()),
                endpoint: Some("/reports/q3".into()),
                method: Some("GET".into()),
                status: Some(200),
                ..AuditIn::default()
            },
            AuditIn {
                ts_us: T0 + 120_000_000,
                category: "made_up".into(),
                action: "\tindent".into(),
                outcome: "maybe".into(),
                user: Some("bob".into()),
                changes: json!("-1"),
                ..AuditIn::default()
            },
        ]
    }

    /// Writes `recs` through the real writer; returns the open store's parts.
    fn write(dir: &std::path::Path, engine: Engine, recs: Vec<AuditIn>) -> writer::StoreHandle {
        let store = open(dir, engine).unwrap();
        let ring = Arc::new(Keyring::load(&*store, None).unwrap());
        let h = writer::start(
            store,
            ring,
            WriterConfig {
                sync: SyncMode::Strict,
                on_error: OnError::FailOpen,
                queue: 64,
                instance_id: "gw-1".into(),
                checkpoint_every: 1000,
                masker: Arc::new(|_| {}),
                observer: None,
            },
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for r in recs {
                h.audit(r).await.unwrap();
            }
        });
        h
    }

    fn run(h: &writer::StoreHandle, filter: &AuditFilter, format: Format) -> (u64, String) {
        let mut out = Vec::new();
        let n = export(&*h.store, &h.keyring, filter, format, &mut out).unwrap();
        (n, String::from_utf8(out).unwrap())
    }

    /// A strict RFC 4180 reader: quoted fields, doubled quotes, CRLF rows.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let (mut row, mut cell) = (Vec::new(), String::new());
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => cell.push(c),
                (false, '"') if cell.is_empty() => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut cell)),
                (false, '\r') => {
                    assert_eq!(chars.next(), Some('\n'), "a bare CR outside quotes");
                    row.push(std::mem::take(&mut cell));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => {
                    assert!(c != '"' && c != '\n', "unquoted {c:?} in {text:?}");
                    cell.push(c);
                }
            }
        }
        assert!(!quoted && cell.is_empty() && row.is_empty(), "unterminated");
        rows
    }

    /// What a CSV cell must read for a text value.
    fn guarded(s: &str) -> String {
        if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_string()
        }
    }

    #[test]
    fn json_export_round_trips_every_field() {
        for engine in [Engine::Sled, Engine::Redb] {
            let dir = tempdir::Dir::new("export-json");
            let recs = records();
            let h = write(dir.path(), engine, recs.clone());
            let (n, text) = run(&h, &AuditFilter::default(), Format::Json);
            assert_eq!(n, 3);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 3, "one document per line: {text}");
            for (i, (line, a)) in lines.iter().zip(&recs).enumerate() {
                let d: Value = serde_json::from_str(line).unwrap();
                let seq = i as u64 + 1;
                assert_eq!(d["@timestamp"], keys::rfc3339_micros(a.ts_us));
                assert_eq!(d["event"]["id"], format!("AUD-{seq:012}"));
                assert_eq!(d["event"]["sequence"], seq);
                assert_eq!(d["event"]["action"], a.action);
                assert_eq!(d["event"]["kind"], "event");
                assert_eq!(d["event"]["dataset"], "portcullis.audit");
                assert_eq!(d["portcullis"]["audit"]["category"], a.category);
                assert_eq!(d["portcullis"]["audit"]["outcome"], a.outcome);
                assert_eq!(d["observer"]["name"], "gw-1");
                assert_eq!(d["observer"]["type"], "waf");
                let opt = |v: &Value, want: &Option<String>| match want {
                    Some(w) => assert_eq!(v, w.as_str(), "{engine:?} {line}"),
                    None => assert!(v.is_null(), "absent fields are omitted: {line}"),
                };
                opt(&d["user"]["name"], &a.user);
                opt(&d["source"]["ip"], &a.ip.map(|ip| ip.to_string()));
                opt(&d["source"]["geo"]["country_iso_code"], &a.geo);
                opt(&d["url"]["path"], &a.endpoint);
                opt(&d["http"]["request"]["method"], &a.method);
                opt(&d["http"]["request"]["id"], &a.request_id);
                opt(&d["portcullis"]["audit"]["resource_type"], &a.resource_type);
                opt(&d["portcullis"]["audit"]["resource_id"], &a.resource_id);
                match &a.role {
                    Some(r) => assert_eq!(d["user"]["roles"], json!([r])),
                    None => assert!(d["user"].get("roles").is_none()),
                }
                match a.status {
                    Some(s) => assert_eq!(d["http"]["response"]["status_code"], s),
                    None => assert!(d.get("http").is_none_or(|h| h.get("response").is_none())),
                }
                assert_eq!(d["portcullis"]["audit"]["changes"], a.changes);
                assert_eq!(d["portcullis"]["audit"]["details"], a.details);
                assert!(d["portcullis"]["audit"].get("extra").is_none(), "{line}");
            }
            let d: Vec<Value> = lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(d[0]["event"]["category"], json!(["iam"]));
            assert_eq!(d[0]["event"]["outcome"], "failure", "denied is a failure");
            assert_eq!(d[1]["event"]["category"], json!(["database"]));
            assert_eq!(d[1]["event"]["outcome"], "success");
            assert!(d[2]["event"].get("category").is_none(), "no ECS value fits");
            assert_eq!(d[2]["event"]["outcome"], "unknown");
            h.stop_blocking().unwrap();
        }
    }

    #[test]
    fn csv_export_round_trips_through_an_rfc4180_reader() {
        let dir = tempdir::Dir::new("export-csv");
        let recs = records();
        let h = write(dir.path(), Engine::Sled, recs.clone());
        let (n, text) = run(&h, &AuditFilter::default(), Format::Csv);
        assert_eq!(n, 3);
        let rows = parse_csv(&text);
        assert_eq!(rows[0], CSV_COLUMNS.to_vec());
        assert_eq!(rows.len(), 4);
        for (i, (row, a)) in rows[1..].iter().zip(&recs).enumerate() {
            assert_eq!(row.len(), CSV_COLUMNS.len());
            let col = |name: &str| {
                let j = CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
                row[j].as_str()
            };
            let text_cell = |v: &Option<String>| v.as_deref().map(guarded).unwrap_or_default();
            let json_cell = |v: &Value| {
                if v.is_null() {
                    String::new()
                } else {
                    v.to_string()
                }
            };
            assert_eq!(col("seq"), (i + 1).to_string());
            assert_eq!(col("id"), format!("AUD-{:012}", i + 1));
            assert_eq!(col("ts"), keys::rfc3339_micros(a.ts_us));
            assert_eq!(col("category"), a.category);
            assert_eq!(col("action"), guarded(&a.action));
            assert_eq!(col("outcome"), a.outcome);
            assert_eq!(col("user"), text_cell(&a.user));
            assert_eq!(col("role"), text_cell(&a.role));
            assert_eq!(col("ip"), text_cell(&a.ip.map(|ip| ip.to_string())));
            assert_eq!(col("resource_type"), text_cell(&a.resource_type));
            assert_eq!(col("resource_id"), text_cell(&a.resource_id));
            assert_eq!(col("endpoint"), text_cell(&a.endpoint));
            assert_eq!(col("method"), text_cell(&a.method));
            assert_eq!(
                col("status"),
                a.status.map(|s| s.to_string()).unwrap_or_default()
            );
            assert_eq!(col("request_id"), text_cell(&a.request_id));
            assert_eq!(col("instance_id"), "gw-1");
            assert_eq!(col("geo"), text_cell(&a.geo));
            // JSON text parses back to what was written.
            assert_eq!(col("changes"), json_cell(&a.changes));
            assert_eq!(col("details"), json_cell(&a.details));
            if !a.changes.is_null() {
                let back: Value = serde_json::from_str(col("changes")).unwrap();
                assert_eq!(back, a.changes);
            }
        }
        // The formula cells are defused; the raw text never starts a cell.
        assert!(text.contains(",'=cmd|' /C calc'!A0,"), "{text}");
        assert!(!text.contains(",=cmd"));
        assert!(text.contains(",'+SUM(1,2)") || text.contains(",\"'+SUM(1,2)\""));
        h.stop_blocking().unwrap();
    }

    #[test]
    fn since_and_until_select_a_window() {
        let dir = tempdir::Dir::new("export-window");
        let h = write(dir.path(), Engine::Redb, records());
        let window = |since: Option<u64>, until: Option<u64>| {
            let f = AuditFilter {
                since_us: since,
                until_us: until,
                ..AuditFilter::default()
            };
            let (n, text) = run(&h, &f, Format::Json);
            let seqs: Vec<u64> = text
                .lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["event"]["sequence"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            assert_eq!(n as usize, seqs.len());
            seqs
        };
        assert_eq!(window(None, None), vec![1, 2, 3]);
        assert_eq!(window(Some(T0 + 1), None), vec![2, 3]);
        assert_eq!(
            window(None, Some(T0 + 60_000_000)),
            vec![1, 2],
            "until is inclusive"
        );
        assert_eq!(
            window(Some(T0 + 30_000_000), Some(T0 + 90_000_000)),
            vec![2]
        );
        assert_eq!(window(Some(T0 + 500_000_000), None), Vec::<u64>::new());
        let (n, text) = run(
            &h,
            &AuditFilter {
                since_us: Some(T0 + 500_000_000),
                ..AuditFilter::default()
            },
            Format::Csv,
        );
        assert_eq!(
            (n, text),
            (0, csv_header()),
            "an empty CSV still has its header"
        );
        h.stop_blocking().unwrap();
    }

    #[test]
    fn erased_subjects_and_unknown_fields_are_kept() {
        let dir = tempdir::Dir::new("export-erased");
        let h = write(dir.path(), Engine::Sled, records());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(h.erase("bob".into())).unwrap();
        let (n, text) = run(&h, &AuditFilter::default(), Format::Json);
        assert_eq!(n, 4, "the erasure is itself audited");
        let d: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(d[2]["user"]["name"], crate::store::model::ERASED);
        assert_eq!(d[2]["portcullis"]["audit"]["erased"], true);
        assert!(d[2]["portcullis"]["audit"].get("changes").is_none());
        assert_eq!(d[3]["event"]["action"], "erasure");
        assert_eq!(d[3]["event"]["category"], json!(["iam"]));
        let (_, csv) = run(&h, &AuditFilter::default(), Format::Csv);
        assert_eq!(parse_csv(&csv)[3][6], crate::store::model::ERASED);
        h.stop_blocking().unwrap();

        // Fields a later version adds survive under `extra`.
        let rec: Map<String, Value> = serde_json::from_value(json!({
            "seq": 9, "action": "x", "hash": "ab", "tenant": {"id": 7}, "note": null
        }))
        .unwrap();
        let d = Value::Object(ecs_document(rec));
        assert_eq!(
            d["portcullis"]["audit"]["extra"],
            json!({"tenant": {"id": 7}, "note": null})
        );
        assert_eq!(d["portcullis"]["audit"]["hash"], "ab");
        assert_eq!(d["event"]["sequence"], 9);
    }

    #[test]
    fn every_mapped_field_appears_and_the_doc_table_matches() {
        let full: Map<String, Value> = serde_json::from_value(json!({
            "ts": "t", "id": "i", "seq": 1, "category": "authentication", "action": "a",
            "outcome": "success", "user": "u", "role": "r", "ip": "1.2.3.4", "geo": "DE",
            "user_agent": "ua", "endpoint": "/", "method": "GET", "status": 200,
            "request_id": "q", "instance_id": "g", "resource_type": "t", "resource_id": "1",
            "changes": {}, "details": {}, "erased": true, "hash": "h", "other": 1
        }))
        .unwrap();
        let doc = ecs_document(full);
        let src = include_str!("export.rs");
        for (path, _) in ecs_mapping() {
            let mut v = &doc;
            let parts: Vec<&str> = path.split('.').collect();
            let (last, inner) = parts.split_last().unwrap();
            for p in inner {
                v = v
                    .get(*p)
                    .and_then(Value::as_object)
                    .unwrap_or_else(|| panic!("{path}: no object {p} in {doc:?}"));
            }
            assert!(v.contains_key(*last), "{path} missing from {doc:?}");
            assert!(
                src.contains(&format!("//! | `{path}` |")),
                "{path} is not in the module table"
            );
        }
        let rows = src.lines().filter(|l| l.starts_with("//! | `")).count();
        assert_eq!(rows, ecs_mapping().len(), "the module table has extra rows");
    }

    #[test]
    fn csv_quoting_and_formula_guard() {
        let mut line = String::new();
        let rec: Map<String, Value> = serde_json::from_value(json!({
            "seq": 1, "status": -5, "user": "-1", "action": "a\"b", "role": "\r\n",
            "ip": "@x", "endpoint": "plain", "details": "=1", "changes": -3
        }))
        .unwrap();
        csv_row(&rec, &mut line);
        assert_eq!(
            line,
            "1,,,,\"a\"\"b\",,'-1,\"'\r\n\",'@x,,,plain,,-5,,,,-3,\"\"\"=1\"\"\"\r\n"
        );
    }
}
