//! Replays the committed fuzz corpus (seeds and crash regressions) through
//! the same entry points the fuzz targets use, so `cargo test` keeps them
//! fixed without a nightly toolchain or cargo-fuzz.

use std::path::Path;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn framing_corpus_replays_without_panic_or_split_disagreement() {
    let files = corpus("framing");
    assert!(files.len() >= 5);
    for (name, data) in files {
        let r = std::panic::catch_unwind(|| portcullis::framing::check_split_consistency(&data));
        assert!(r.is_ok(), "{name}");
    }
}

#[test]
fn config_corpus_yields_config_or_located_errors() {
    let files = corpus("config");
    assert!(files.len() >= 4);
    for (name, data) in files {
        let text = String::from_utf8_lossy(&data);
        match portcullis::config::parse(Path::new("fuzz.yaml"), &text) {
            Ok(_) => {}
            Err(errs) => {
                assert!(!errs.0.is_empty(), "{name}");
                assert!(
                    errs.0.iter().all(|e| e.line > 0),
                    "{name}: unlocated error {errs}"
                );
            }
        }
    }
}
