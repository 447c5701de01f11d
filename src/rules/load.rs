//! Loading a rule set from the `waf` config: expand the pack patterns,
//! parse every pack, add the config's own exclusions, compile — all errors
//! at once, located. Runs off the request path (start, reload, `check`).

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, ConfigErrors, WafConfig, WafMode};
use crate::rules::engine::{EngineSettings, RuleSet};
use crate::rules::schema::{self, Mode, Pack};

/// The pack files a `waf.rules` list names, sorted, relative to `base`.
pub fn pack_files(patterns: &[String], base: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for pat in patterns {
        let full = base.join(pat);
        let name = full.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.contains('*') {
            if !full.is_file() {
                return Err(format!("rule pack {} does not exist", full.display()));
            }
            out.push(full);
            continue;
        }
        let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| wildcard(name, n))
            })
            .collect();
        found.sort();
        out.extend(found);
    }
    out.dedup();
    Ok(out)
}

/// `*` matches any run of characters (no `/`); everything else literally.
fn wildcard(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Parses every pack of `waf` (relative to the config file at `config_path`).
pub fn load_packs(waf: &WafConfig, config_path: &Path) -> Result<Vec<Pack>, ConfigErrors> {
    let base = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let files = pack_files(&waf.rules, &base).map_err(|m| {
        ConfigErrors(vec![ConfigError {
            file: config_path.to_path_buf(),
            line: 0,
            column: 0,
            key: "waf.rules".into(),
            message: m,
        }])
    })?;
    let mut packs = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match schema::load_pack(&f) {
            Ok(p) => packs.push(p),
            Err(e) => errors.extend(e.0),
        }
    }
    if let Some(text) = &waf.exclusions_yaml {
        match schema::parse_pack(config_path, text) {
            Ok(p) => packs.push(p),
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() {
        Ok(packs)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Loads and compiles the rule set; `None` when the WAF is off.
pub fn load(waf: &WafConfig, config_path: &Path) -> Result<Option<RuleSet>, ConfigErrors> {
    if waf.mode == WafMode::Off {
        return Ok(None);
    }
    let packs = load_packs(waf, config_path)?;
    let settings = EngineSettings {
        paranoia: waf.paranoia,
        inbound_threshold: waf.inbound_threshold,
        outbound_threshold: waf.outbound_threshold,
        mode: if waf.mode == WafMode::Detect {
            Mode::Detect
        } else {
            Mode::Block
        },
        backend: waf.matcher,
        exclusions: Vec::new(),
        cache_dir: waf.compile_cache.clone(),
    };
    let set = RuleSet::compile(&packs, &settings);
    crate::rules::matcher::release_compiler_memory();
    set.map(Some)
}

/// Runs every rule's inline `tests:` through the compiled set; returns one
/// line per failure (`FILE:LINE: rule ID: expected match on "..."`).
pub fn run_inline_tests(packs: &[Pack], set: &RuleSet) -> (usize, Vec<String>) {
    let mut run = 0;
    let mut failures = Vec::new();
    let mut scratch = crate::rules::engine::EngineScratch::default();
    for p in packs {
        for r in &p.rules {
            for (inputs, want) in [(&r.tests_match, true), (&r.tests_no_match, false)] {
                for input in inputs {
                    // Rules above the configured paranoia are not compiled; skip them.
                    let Some(got) = set.test_rule_with(r.id, input.as_bytes(), &mut scratch) else {
                        continue;
                    };
                    run += 1;
                    if got != want {
                        failures.push(format!(
                            "{}:{}: rule {}: expected {} on {:?}",
                            r.file.display(),
                            r.line,
                            r.id,
                            if want { "a match" } else { "no match" },
                            input
                        ));
                    }
                }
            }
        }
    }
    (run, failures)
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.yaml", "sqli.yaml"));
        assert!(!wildcard("*.yaml", "sqli.yml"));
        assert!(wildcard("9*-*.yaml", "942-sqli.yaml"));
        assert!(!wildcard("9*-*.yaml", "842sqli.yaml"));
        assert!(wildcard("a.yaml", "a.yaml"));
    }
}
