//! `portcullis rules ftw DIR`: replays go-ftw regression files (the format
//! of the CRS test suite) against a gateway started in this process on a
//! loopback port, and prints the per-family table of attack and benign
//! stages answered 403.
//!
//! Why a real gateway and not a direct engine call: operators use this to
//! predict what the deployed gateway will do, so the requests go through the
//! same listener, framing guard, protocol checks, body parsing and rules. A
//! stage counts as *blocked* only when answered 403 — exactly as the network
//! replay tool counts — so the two agree by construction.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Config, ListenerConfig, UpstreamTarget};

/// How a stage is classified (the replay tool's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Attack,
    Benign,
    Other,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub attack: usize,
    pub attack_blocked: usize,
    pub benign: usize,
    pub benign_blocked: usize,
    pub other: usize,
}

/// One stage's outcome, for `--verbose` listings.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub file: PathBuf,
    pub test: String,
    pub class: Class,
    pub status: Option<u16>,
}

/// Classifies a stage from its `output` (same rules as the replay tool).
pub fn classify(output: &Value) -> Class {
    let ids = |v: Option<&Value>| -> usize {
        match v {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Null) | None => 0,
            Some(_) => 1,
        }
    };
    let log = output.get("log");
    let pos = ids(output.get("log_contains"))
        + ids(log.and_then(|l| l.get("expect_ids")))
        + ids(output.get("expect_ids"))
        + usize::from(log.and_then(|l| l.get("match_regex")).is_some());
    let neg = ids(output.get("no_log_contains"))
        + ids(log.and_then(|l| l.get("no_expect_ids")))
        + ids(output.get("no_expect_ids"));
    let statuses: Vec<u64> = match output.get("status") {
        Some(Value::Number(n)) => n.as_u64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).collect(),
        _ => Vec::new(),
    };
    if pos > 0 || (!statuses.is_empty() && statuses.iter().all(|s| *s == 403)) {
        Class::Attack
    } else if neg > 0 || statuses.iter().any(|s| (200..300).contains(s)) {
        Class::Benign
    } else {
        Class::Other
    }
}

/// Builds the raw request of a go-ftw stage input (go-ftw's autocompletion:
/// form bodies without escapes are URL-encoded, `Content-Type`,
/// `Connection: close` and `Content-Length` are added).
pub fn build_request(input: &Value) -> Vec<u8> {
    let s = |k: &str| input.get(k).and_then(Value::as_str);
    if let Some(enc) = s("encoded_request") {
        use crate::rules::transform::Transform;
        return Transform::Base64Decode
            .apply(enc.trim().as_bytes())
            .into_owned();
    }
    if let Some(raw) = s("raw_request") {
        return raw.as_bytes().to_vec();
    }
    let method = s("method").unwrap_or("GET");
    let uri = input.get("uri").map(scalar).unwrap_or_else(|| "/".into());
    let version = s("version").unwrap_or("HTTP/1.1");
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(h)) = input.get("headers") {
        for (k, v) in h {
            headers.push((k.clone(), scalar(v)));
        }
    }
    let mut data = match input.get("data") {
        Some(Value::Array(a)) => a.iter().map(scalar).collect::<Vec<_>>().join("\r\n"),
        Some(Value::Null) | None => String::new(),
        Some(v) => scalar(v),
    };
    let has = |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let autocomplete = input
        .get("autocomplete_headers")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !data.is_empty() && autocomplete {
        if !has(&headers, "content-type") {
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        let form = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type") && v == "application/x-www-form-urlencoded"
        });
        if form && query_unescape(&data).as_deref() == Some(data.as_str()) {
            data = data
                .split('&')
                .map(|tok| match tok.split_once('=') {
                    Some((k, v)) => format!("{}={}", quote_plus(k), quote_plus(v)),
                    None => quote_plus(tok),
                })
                .collect::<Vec<_>>()
                .join("&");
        }
    }
    let multipart = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type") && v.starts_with("multipart/form-data;")
    });
    if multipart {
        data = data.replace('\n', "\r\n");
    }
    if autocomplete {
        if !has(&headers, "connection") {
            headers.push(("Connection".into(), "close".into()));
        }
        let bodyish = matches!(method, "POST" | "PUT" | "PATCH" | "DELETE");
        if (!data.is_empty() || bodyish) && !has(&headers, "content-length") {
            headers.push(("Content-Length".into(), data.len().to_string()));
        }
    }
    let mut out = format!("{method} {uri} {version}\r\n");
    for (k, v) in &headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(data.as_bytes());
    bytes
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Go's `url.QueryUnescape`: `+` → space, `%XX` decoded; `None` on a bad escape.
fn query_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = |c: u8| (c as char).to_digit(16);
                let (hi, lo) = (h(*b.get(i + 1)?)?, h(*b.get(i + 2)?)?);
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Python's `urllib.parse.quote_plus(s, safe="")`.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Every `*.yaml` under `dir`, with its family (the first directory below `dir`).
fn test_files(dir: &Path) -> Vec<(String, PathBuf)> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files
        .into_iter()
        .map(|p| {
            let fam = p
                .strip_prefix(dir)
                .ok()
                .and_then(|r| r.components().next())
                .filter(|_| p.parent() != Some(dir))
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_else(|| "(top)".into());
            (fam, p)
        })
        .collect()
}

/// The stages of one test file: (test name, input, output).
fn stages(doc: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    let Some(Value::Array(tests)) = doc.get("tests") else {
        return out;
    };
    for t in tests {
        let name = t
            .get("test_id")
            .or_else(|| t.get("test_title"))
            .map(scalar)
            .unwrap_or_default();
        let Some(Value::Array(st)) = t.get("stages") else {
            continue;
        };
        for s in st {
            let s = s.get("stage").unwrap_or(s);
            out.push((
                name.clone(),
                s.get("input").cloned().unwrap_or(Value::Null),
                s.get("output").cloned().unwrap_or(Value::Null),
            ));
        }
    }
    out
}

/// Sends one raw request and returns the status of the first response.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> Option<u16> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        // No half-close after writing: like a real client (and the network
        // replay tool), keep the socket open until the answer arrives.
        s.write_all(raw).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // The status line is all we need.
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = std::str::from_utf8(buf.split(|b| *b == b'\n').next()?).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .ok()
        .flatten()
}

/// Runs every stage under `dir` against a gateway built from `cfg` (its
/// listeners, admin port and upstream are replaced by loopback ones).
pub fn run(
    mut cfg: Config,
    dir: &Path,
) -> Result<(BTreeMap<String, Tally>, Vec<StageResult>), String> {
    cfg.listeners = vec![ListenerConfig {
        addr: ([127, 0, 0, 1], 0).into(),
        tls: None,
        http2: false,
    }];
    cfg.admin.listen = ([127, 0, 0, 1], 0).into();
    cfg.upstream.target = UpstreamTarget::BuiltinEcho;
    cfg.routes.clear();
    cfg.logging.access_log = false;
    cfg.workers = 1;
    // A throwaway store: replays must not fill (or need the lock of) the
    // operator's store, nor notify or block anyone.
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let scratch = std::env::temp_dir().join(format!(
        "portcullis-ftw-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    cfg.store.path = scratch.clone();
    cfg.store.sync = crate::store::writer::SyncMode::Batched;
    cfg.auto_block.enabled = false;
    cfg.webhooks.clear();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(scratch);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let running = crate::server::start(cfg).await.map_err(|e| e.to_string())?;
        let addr = running.proxy_addrs[0];
        let mut table: BTreeMap<String, Tally> = BTreeMap::new();
        let mut results = Vec::new();
        for (family, file) in test_files(dir) {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let doc: Value = match serde_saphyr::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{}: skipped: {e}", file.display());
                    continue;
                }
            };
            for (test, input, output) in stages(&doc) {
                let class = classify(&output);
                let status = exchange(addr, &build_request(&input)).await;
                let t = table.entry(family.clone()).or_default();
                let blocked = status == Some(403);
                match class {
                    Class::Attack => {
                        t.attack += 1;
                        t.attack_blocked += usize::from(blocked);
                    }
                    Class::Benign => {
                        t.benign += 1;
                        t.benign_blocked += usize::from(blocked);
                    }
                    Class::Other => t.other += 1,
                }
                results.push(StageResult {
                    file: file.clone(),
                    test,
                    class,
                    status,
                });
            }
        }
        running.shutdown().await;
        Ok((table, results))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_replay_tool() {
        let v = |s: &str| -> Value { serde_json::from_str(s).unwrap() };
        assert_eq!(
            classify(&v(r#"{"log":{"expect_ids":[942100]}}"#)),
            Class::Attack
        );
        assert_eq!(
            classify(&v(r#"{"log":{"no_expect_ids":[942100]}}"#)),
            Class::Benign
        );
        assert_eq!(classify(&v(r#"{"status":403}"#)), Class::Attack);
        assert_eq!(classify(&v(r#"{"status":[200]}"#)), Class::Benign);
        assert_eq!(classify(&v(r#"{"status":400}"#)), Class::Other);
    }

    #[test]
    fn go_ftw_autocompletion() {
        let input: Value = serde_json::from_str(
            r#"{"method":"POST","uri":"/","headers":{"Host":"localhost"},"data":"a=1 2&b=<x>"}"#,
        )
        .unwrap();
        let raw = String::from_utf8(build_request(&input)).unwrap();
        assert!(
            raw.starts_with("POST / HTTP/1.1\r\nHost: localhost\r\n"),
            "{raw}"
        );
        assert!(
            raw.contains("Content-Type: application/x-www-form-urlencoded\r\n"),
            "{raw}"
        );
        assert!(raw.contains("Connection: close\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\na=1+2&b=%3Cx%3E"), "{raw}");
        assert!(raw.contains("Content-Length: 15\r\n"), "{raw}");
        // Already-escaped bodies are sent as they are.
        let input: Value = serde_json::from_str(r#"{"method":"POST","data":"a=%27"}"#).unwrap();
        assert!(
            String::from_utf8(build_request(&input))
                .unwrap()
                .ends_with("a=%27")
        );
    }
}
