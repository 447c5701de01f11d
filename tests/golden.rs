//! The detection golden corpus (`tests/golden/`): go-ftw files of realistic
//! attacks (`attack/<family>.yaml`, every stage expects 403) and deliberately
//! hard benign traffic (`benign/<family>.yaml`, every stage expects 200),
//! replayed with `ftw::run` through an in-process gateway with the bundled
//! packs and the default configuration (paranoia 1, threshold 5), once per
//! matcher backend.
//!
//! What is asserted:
//! 1. both backends answer every stage with the same status;
//! 2. every attack stage is 403 and every benign stage is 2xx, except the
//!    stages listed in `tests/golden/known_gaps.txt` (reported, not failing);
//! 3. the corpus holds at least 400 attack and 400 benign stages;
//! 4. (printed) detection and pass rates per family.
//!
//! `known_gaps.txt`: one `FILE TEST-TITLE REASON…` per line, FILE relative
//! to `tests/golden/` (e.g. `attack/sqli.yaml union-inline-comments-query
//! MySQL version comments hide the keywords`); `#` starts a comment. An
//! entry naming no stage fails the test; an entry whose stage now behaves is
//! reported so it can be removed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use portcullis::ftw::{self, Class, StageResult};
use portcullis::rules::matcher::Backend;

const MIN_STAGES: usize = 400;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn run(backend: Backend) -> Vec<StageResult> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.yaml");
    let mut cfg = portcullis::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let waf = cfg
        .waf
        .as_mut()
        .expect("the default config has a waf section");
    assert_eq!(waf.paranoia, 1);
    assert_eq!(waf.inbound_threshold, 5);
    waf.matcher = backend;
    cfg.logging.dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden-logs");
    // Compiled databases go to the build's scratch space, not the checkout's
    // `data/`: a rerun reads them, so the cache is exercised on every pack.
    waf.compile_cache = Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden-rules-cache"));
    let start = std::time::Instant::now();
    let (_, results) = ftw::run(cfg, &golden_dir()).unwrap_or_else(|e| panic!("ftw: {e}"));
    eprintln!(
        "{backend:?}: {} stages in {:.1}s",
        results.len(),
        start.elapsed().as_secs_f64()
    );
    results
}

/// `attack/sqli.yaml` → ("attack", "sqli", "attack/sqli.yaml").
fn locate(file: &Path) -> (String, String, String) {
    let rel = file.strip_prefix(golden_dir()).unwrap_or(file);
    let kind = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    let family = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    (kind, family, rel.to_string_lossy().replace('\\', "/"))
}

fn known_gaps() -> BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(golden_dir().join("known_gaps.txt")).unwrap_or_default();
    let mut gaps = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.splitn(3, char::is_whitespace);
        let (Some(file), Some(test)) = (it.next(), it.next()) else {
            panic!("known_gaps.txt:{}: want `FILE TEST-TITLE REASON`", n + 1);
        };
        let reason = it.next().unwrap_or("").trim().to_string();
        assert!(
            !reason.is_empty(),
            "known_gaps.txt:{}: give a one-line reason",
            n + 1
        );
        let dup = gaps.insert((file.to_string(), test.to_string()), reason);
        assert!(dup.is_none(), "known_gaps.txt:{}: listed twice", n + 1);
    }
    gaps
}

fn ok(kind: &str, status: Option<u16>) -> bool {
    match kind {
        "attack" => status == Some(403),
        _ => status.is_some_and(|s| (200..300).contains(&s)),
    }
}

#[test]
fn golden_corpus_on_both_backends() {
    #[cfg(feature = "hyperscan")]
    let hs = Some(run(Backend::Hyperscan));
    #[cfg(not(feature = "hyperscan"))]
    let hs: Option<Vec<StageResult>> = None;
    let pure = run(Backend::Pure);
    let gaps = known_gaps();

    // Every stage once, classified as its directory says.
    let mut seen = BTreeSet::new();
    for r in &pure {
        let (kind, _, rel) = locate(&r.file);
        assert!(
            seen.insert((rel.clone(), r.test.clone())),
            "{rel}: test title `{}` is not unique (one stage per test)",
            r.test
        );
        let want = match kind.as_str() {
            "attack" => Class::Attack,
            "benign" => Class::Benign,
            other => panic!("{rel}: unexpected directory `{other}`"),
        };
        assert_eq!(
            r.class, want,
            "{rel} {}: output does not classify as {kind}",
            r.test
        );
    }

    // (1) Both backends agree stage by stage.
    if let Some(hs) = &hs {
        assert_eq!(hs.len(), pure.len(), "backends ran different stage counts");
        let diff: Vec<String> = hs
            .iter()
            .zip(&pure)
            .filter(|(a, b)| a.status != b.status || a.test != b.test || a.file != b.file)
            .map(|(a, b)| {
                format!(
                    "  {} {}: hyperscan {:?}, pure {:?}",
                    locate(&a.file).2,
                    a.test,
                    a.status,
                    b.status
                )
            })
            .collect();
        assert!(
            diff.is_empty(),
            "the backends disagree on {} stages:\n{}",
            diff.len(),
            diff.join("\n")
        );
    }

    // (2) Outcomes, per family.
    #[derive(Default)]
    struct Row {
        stages: usize,
        ok: usize,
        gaps: usize,
    }
    let mut table: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut listed = Vec::new();
    let mut fixed = Vec::new();
    let mut used = BTreeSet::new();
    for r in &pure {
        let (kind, family, rel) = locate(&r.file);
        let row = table.entry((kind.clone(), family)).or_default();
        row.stages += 1;
        let good = ok(&kind, r.status);
        row.ok += usize::from(good);
        let key = (rel.clone(), r.test.clone());
        match (good, gaps.get(&key)) {
            (true, None) => {}
            (true, Some(_)) => fixed.push(format!("  {rel} {}", r.test)),
            (false, Some(reason)) => {
                row.gaps += 1;
                listed.push(format!("  {rel} {} ({:?}): {reason}", r.test, r.status));
            }
            (false, None) => failures.push(format!(
                "  {rel} {}: got {:?}, want {}",
                r.test,
                r.status,
                if kind == "attack" { "403" } else { "2xx" }
            )),
        }
        if gaps.contains_key(&key) {
            used.insert(key);
        }
    }
    let stale: Vec<String> = gaps
        .keys()
        .filter(|k| !used.contains(*k))
        .map(|(f, t)| format!("  {f} {t}"))
        .collect();

    // (4) The table.
    let pct = |n: usize, d: usize| {
        if d == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * n as f64 / d as f64)
        }
    };
    let mut out = String::from(
        "\n| kind | family | stages | correct | rate | known gaps |\n|---|---|---:|---:|---:|---:|\n",
    );
    let mut totals: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for ((kind, family), row) in &table {
        out.push_str(&format!(
            "| {kind} | {family} | {} | {} | {} | {} |\n",
            row.stages,
            row.ok,
            pct(row.ok, row.stages),
            row.gaps
        ));
        let t = totals.entry(kind.clone()).or_default();
        t.0 += row.stages;
        t.1 += row.ok;
        t.2 += row.gaps;
    }
    for (kind, (stages, okn, g)) in &totals {
        let what = if kind == "attack" {
            "detection rate"
        } else {
            "pass rate"
        };
        out.push_str(&format!(
            "| **{kind}** | **all** ({what}) | {stages} | {okn} | **{}** | {g} |\n",
            pct(*okn, *stages)
        ));
    }
    println!("{out}");
    if !listed.is_empty() {
        println!("known gaps ({}):\n{}", listed.len(), listed.join("\n"));
    }
    if !failures.is_empty() {
        println!(
            "wrong outcome, not in known_gaps.txt ({}):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    if !fixed.is_empty() {
        println!(
            "listed in known_gaps.txt but now correct (remove them):\n{}",
            fixed.join("\n")
        );
    }

    // (3) Size.
    let attack = totals.get("attack").map_or(0, |t| t.0);
    let benign = totals.get("benign").map_or(0, |t| t.0);
    assert!(attack >= MIN_STAGES, "only {attack} attack stages");
    assert!(benign >= MIN_STAGES, "only {benign} benign stages");

    assert!(
        stale.is_empty(),
        "known_gaps.txt names stages that do not exist:\n{}",
        stale.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} stages have the wrong outcome and are not in known_gaps.txt (listed above)",
        failures.len()
    );
}
