//! `portcullis audit verify` and `portcullis audit export` on real stores
//! written through the library's writer: exit codes, the record named on
//! tampering, exports parsed back, time windows, and a store held by a
//! running gateway.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis::store::chain::{self, Link};
use portcullis::store::crypto::{Keyring, master_key_from};
use portcullis::store::model::AuditIn;
use portcullis::store::writer::{self, OnError, SyncMode, WriterConfig};
use portcullis::store::{Engine, Op, Space, open};
use serde_json::{Value, json};

/// A temporary directory removed on drop (the harness in `common` pulls in
/// the whole proxy test kit; this test needs only this).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "portcullis-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const T0: u64 = 1_763_870_400_000_000; // 2025-11-23T04:00:00Z
const MINUTE: u64 = 60_000_000;

/// Record `i` (from 0): one a minute from T0, with awkward text.
fn record(i: u64) -> AuditIn {
    AuditIn {
        ts_us: T0 + i * MINUTE,
        category: ["admin_action", "authentication", "data_access"][i as usize % 3].into(),
        action: if i == 1 {
            "=cmd|' /C calc'!A0".into()
        } else {
            format!("act{i}")
        },
        outcome: if i % 4 == 3 { "denied" } else { "success" }.into(),
        user: i
            .is_multiple_of(2)
            .then(|| format!("user {i}, \"ü\"\nnext")),
        ip: Some(format!("198.51.100.{i}").parse().unwrap()),
        role: Some("admin".into()),
        resource_id: Some(format!("r,{i}")),
        changes: json!({"name": {"old": format!("a{i}"), "new": "b,\"c\"\r\n"}}),
        status: Some(200 + i as u16),
        ..AuditIn::default()
    }
}

/// Writes `n` records into `dir` through the real writer, then closes it.
fn build(dir: &Path, engine: Engine, master: Option<[u8; 32]>, n: u64) {
    let store = open(dir, engine).unwrap();
    let ring = Arc::new(Keyring::load(&*store, master).unwrap());
    let h = writer::start(
        store,
        ring,
        WriterConfig {
            sync: SyncMode::Strict,
            on_error: OnError::FailOpen,
            queue: 256,
            instance_id: "gw-cli".into(),
            checkpoint_every: 5,
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
        for i in 0..n {
            h.audit(record(i)).await.unwrap();
        }
    });
    h.stop_blocking().unwrap();
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn verify(cwd: &Path, data: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["audit", "verify", "--data", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    common::run_cli(cwd, &args)
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
                assert!(c != '"' && c != '\n', "unquoted {c:?}");
                cell.push(c);
            }
        }
    }
    assert!(!quoted && cell.is_empty() && row.is_empty(), "unterminated");
    rows
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    common::text(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn verify_passes_an_intact_chain_and_names_tampered_records() {
    for engine in [Engine::Sled, Engine::Redb] {
        let cwd = TempDir::new("audit-cli-verify");
        let data = cwd.path().join("data");
        build(&data, engine, None, 12);

        let out = verify(cwd.path(), &data, &[]);
        let stdout = common::text(&out.stdout);
        assert_eq!(
            code(&out),
            Some(0),
            "{engine:?}: {}",
            common::text(&out.stderr)
        );
        assert!(
            stdout.starts_with("audit chain OK: 12 records (1..12), head 12:"),
            "{stdout}"
        );
        assert!(stdout.contains("stored checkpoint"), "{stdout}");

        // Checkpoints kept elsewhere: the right one passes, a rewritten or
        // truncated chain fails against it.
        let head = {
            let s = open(&data, engine).unwrap();
            chain::head(&*s).unwrap()
        };
        let good = head.to_text();
        let out = verify(cwd.path(), &data, &["--checkpoint", &good]);
        assert_eq!(code(&out), Some(0), "{}", common::text(&out.stderr));
        assert!(common::text(&out.stdout).contains(&format!("matches checkpoint {good}")));
        let forged = format!("12:{}", "00".repeat(32));
        let out = verify(cwd.path(), &data, &["--checkpoint", &forged]);
        assert_eq!(code(&out), Some(1));
        assert!(
            common::text(&out.stderr).contains("audit chain BROKEN at record 12:"),
            "{}",
            common::text(&out.stderr)
        );
        // Each checkpoint counts, also when two name the same record.
        let out = verify(
            cwd.path(),
            &data,
            &["--checkpoint", &good, "--checkpoint", &forged],
        );
        assert_eq!(code(&out), Some(1), "{}", common::text(&out.stdout));
        let beyond = Link {
            seq: 20,
            hash: head.hash,
        }
        .to_text();
        let out = verify(cwd.path(), &data, &["--checkpoint", &beyond]);
        assert_eq!(code(&out), Some(1));
        assert!(
            common::text(&out.stderr).contains("BROKEN at record 13: the chain ends at record 12"),
            "{}",
            common::text(&out.stderr)
        );

        // One flipped byte in record 7.
        {
            let s = open(&data, engine).unwrap();
            let k = 7u64.to_be_bytes();
            let mut v = s.get(Space::Audit, &k).unwrap().unwrap();
            let at = v.len() - 5;
            v[at] ^= 0x20;
            s.write(&[Op::Put(Space::Audit, k.to_vec(), v)], true)
                .unwrap();
        }
        let out = verify(cwd.path(), &data, &[]);
        assert_eq!(code(&out), Some(1), "{engine:?}");
        let err = common::text(&out.stderr);
        assert!(
            err.contains("audit chain BROKEN at record 7: record 7 was altered"),
            "{err}"
        );
        assert!(err.contains("6 record(s) before it verified"), "{err}");
        assert!(out.stdout.is_empty(), "{}", common::text(&out.stdout));

        // One deleted record, in a fresh chain.
        let data2 = cwd.path().join("data2");
        build(&data2, engine, None, 9);
        {
            let s = open(&data2, engine).unwrap();
            s.write(
                &[Op::Delete(Space::Audit, 5u64.to_be_bytes().to_vec())],
                true,
            )
            .unwrap();
        }
        let out = verify(cwd.path(), &data2, &[]);
        assert_eq!(code(&out), Some(1));
        assert!(
            common::text(&out.stderr)
                .contains("audit chain BROKEN at record 5: record 5 is missing"),
            "{}",
            common::text(&out.stderr)
        );
    }
}

#[test]
fn export_json_and_csv_carry_what_was_written() {
    let cwd = TempDir::new("audit-cli-export");
    let data = cwd.path().join("data");
    build(&data, Engine::Sled, None, 10);
    let d = data.to_str().unwrap();

    let out = common::run_cli(
        cwd.path(),
        &["audit", "export", "--data", d, "--format", "json"],
    );
    assert_eq!(code(&out), Some(0), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stderr).contains("exported 10 audit record(s) as json to stdout"));
    let docs = json_lines(&out.stdout);
    assert_eq!(docs.len(), 10);
    for (i, doc) in docs.iter().enumerate() {
        let a = record(i as u64);
        assert_eq!(doc["event"]["sequence"], i as u64 + 1);
        assert_eq!(doc["event"]["action"], a.action);
        assert_eq!(doc["portcullis"]["audit"]["outcome"], a.outcome);
        let outcome = if a.outcome == "denied" {
            "failure"
        } else {
            "success"
        };
        assert_eq!(doc["event"]["outcome"], outcome);
        match &a.user {
            Some(u) => assert_eq!(doc["user"]["name"], u.as_str()),
            None => assert!(doc["user"].get("name").is_none()),
        }
        assert_eq!(doc["user"]["roles"], json!(["admin"]));
        assert_eq!(doc["source"]["ip"], a.ip.unwrap().to_string());
        assert_eq!(
            doc["portcullis"]["audit"]["resource_id"],
            a.resource_id.unwrap()
        );
        assert_eq!(doc["portcullis"]["audit"]["changes"], a.changes);
        assert_eq!(doc["http"]["response"]["status_code"], a.status.unwrap());
        assert_eq!(doc["observer"]["name"], "gw-cli");
    }

    let csv_path = cwd.path().join("audit.csv");
    let out = common::run_cli(
        cwd.path(),
        &[
            "audit",
            "export",
            "--data",
            d,
            "--format",
            "csv",
            "--output",
            csv_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), Some(0), "{}", common::text(&out.stderr));
    assert!(out.stdout.is_empty(), "--output leaves stdout alone");
    let rows = parse_csv(&std::fs::read_to_string(&csv_path).unwrap());
    assert_eq!(rows.len(), 11, "a header and ten records");
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    for (i, row) in rows[1..].iter().enumerate() {
        let a = record(i as u64);
        assert_eq!(row.len(), rows[0].len());
        assert_eq!(row[col("seq")], (i + 1).to_string());
        assert_eq!(row[col("user")], a.user.clone().unwrap_or_default());
        assert_eq!(row[col("resource_id")], a.resource_id.unwrap());
        let changes: Value = serde_json::from_str(&row[col("changes")]).unwrap();
        assert_eq!(changes, a.changes);
    }
    assert_eq!(
        rows[2][col("action")],
        "'=cmd|' /C calc'!A0",
        "formula cells are defused"
    );
}

#[test]
fn since_and_until_select_a_time_window() {
    let cwd = TempDir::new("audit-cli-window");
    let data = cwd.path().join("data");
    build(&data, Engine::Redb, None, 10);
    let seqs = |extra: &[&str]| -> Vec<u64> {
        let mut args = vec![
            "audit",
            "export",
            "--data",
            data.to_str().unwrap(),
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = common::run_cli(cwd.path(), &args);
        assert_eq!(
            code(&out),
            Some(0),
            "{extra:?}: {}",
            common::text(&out.stderr)
        );
        json_lines(&out.stdout)
            .iter()
            .map(|d| d["event"]["sequence"].as_u64().unwrap())
            .collect()
    };
    // Records are a minute apart from 04:00:00Z (record 1) on.
    assert_eq!(
        seqs(&["--since", "2025-11-23T04:03:00Z"]),
        vec![4, 5, 6, 7, 8, 9, 10]
    );
    assert_eq!(seqs(&["--until", "2025-11-23T05:01:30+01:00"]), vec![1, 2]);
    let t2 = ((T0 + 2 * MINUTE) / 1_000_000).to_string();
    let t5 = ((T0 + 5 * MINUTE) / 1_000_000).to_string();
    assert_eq!(seqs(&["--since", &t2, "--until", &t5]), vec![3, 4, 5, 6]);
    assert_eq!(seqs(&["--since", "2025-11-24"]), Vec::<u64>::new());
    assert_eq!(seqs(&["--until", "2025-11-23"]), Vec::<u64>::new());

    let out = common::run_cli(
        cwd.path(),
        &[
            "audit",
            "export",
            "--data",
            data.to_str().unwrap(),
            "--format",
            "csv",
            "--since",
            "yesterday",
        ],
    );
    assert_ne!(code(&out), Some(0));
    assert!(
        common::text(&out.stderr).contains("RFC 3339"),
        "{}",
        common::text(&out.stderr)
    );
}

#[test]
fn a_store_held_by_a_running_gateway_exits_2_pointing_at_the_admin_api() {
    for engine in [Engine::Sled, Engine::Redb] {
        let cwd = TempDir::new("audit-cli-locked");
        let data = cwd.path().join("data");
        build(&data, engine, None, 3);
        let held = open(&data, engine).unwrap();
        for args in [
            vec!["audit", "verify"],
            vec!["audit", "export", "--format", "json"],
        ] {
            let mut args = args.clone();
            args.extend_from_slice(&["--data", data.to_str().unwrap()]);
            let out = common::run_cli(cwd.path(), &args);
            let err = common::text(&out.stderr);
            assert_eq!(code(&out), Some(2), "{engine:?} {args:?}: {err}");
            assert!(
                err.contains("in use by a running gateway")
                    && err.contains("GET /api/v1/audit/verify")
                    && err.contains("GET /api/v1/audit/export"),
                "{err}"
            );
            assert!(out.stdout.is_empty());
        }
        drop(held);
        assert_eq!(code(&verify(cwd.path(), &data, &[])), Some(0));
    }
}

#[test]
fn the_configuration_names_the_store_and_its_key() {
    let cwd = TempDir::new("audit-cli-config");
    let key = "ab".repeat(32);
    let cfg_dir = cwd.path().join("etc");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let cfg = cfg_dir.join("portcullis.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstream:\n  url: \"http://127.0.0.1:3000\"\nstore:\n  path: store\n  engine: redb\naudit:\n  encryption_key: \"{key}\"\n"
        ),
    )
    .unwrap();
    // store.path is relative to the working directory (like logging.dir).
    let data = cwd.path().join("store");
    build(&data, Engine::Redb, Some(master_key_from(&key).unwrap()), 4);
    let c = cfg.to_str().unwrap();

    let out = common::run_cli(cwd.path(), &["audit", "verify", "-c", c]);
    assert_eq!(code(&out), Some(0), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stdout).starts_with("audit chain OK: 4 records (1..4)"));
    let out = common::run_cli(
        cwd.path(),
        &["audit", "export", "-c", c, "--format", "json"],
    );
    assert_eq!(code(&out), Some(0), "{}", common::text(&out.stderr));
    let docs = json_lines(&out.stdout);
    assert_eq!(docs.len(), 4);
    assert_eq!(docs[0]["user"]["name"], record(0).user.unwrap().as_str());

    // Without the configuration the chain still verifies (hashes cover the
    // ciphertext), but the records cannot be read: said, not guessed.
    let d = data.to_str().unwrap();
    assert_eq!(code(&verify(cwd.path(), &data, &[])), Some(0));
    let out = common::run_cli(
        cwd.path(),
        &["audit", "export", "--data", d, "--format", "csv"],
    );
    assert_eq!(code(&out), Some(1));
    assert!(
        common::text(&out.stderr).contains("audit.encryption_key"),
        "{}",
        common::text(&out.stderr)
    );

    // No store where the configuration or --data points.
    let empty = cwd.path().join("nothing");
    let out = verify(cwd.path(), &empty, &[]);
    assert_eq!(code(&out), Some(1));
    assert!(
        common::text(&out.stderr).contains("no audit store in"),
        "{}",
        common::text(&out.stderr)
    );
    assert!(!empty.exists(), "verify never creates a store");
    // No configuration and no --data.
    let out = common::run_cli(cwd.path(), &["audit", "verify"]);
    assert_eq!(code(&out), Some(1));
    assert!(
        common::text(&out.stderr).contains("--data"),
        "{}",
        common::text(&out.stderr)
    );
}
