//! The compiled rule set and its evaluation against one request.
//!
//! Compile: rules (after paranoia filtering) are grouped by transform chain
//! (a *pass*) and, within a pass, by target (a *group*). Every pattern-type
//! operator of a group (regex, phrases, contains, equals, starts_with) goes
//! into one `MatcherSet`, so a value is transformed once per chain and
//! scanned once per group whatever the number of rules; native detectors
//! (sqli, xss, cmdi, path_traversal) and the small operators (ip_in,
//! length_gt) run on the same transformed value.
//!
//! Evaluate: the caller hands over the request's fields; the result lists
//! every hit with its rule, target and an excerpt, the anomaly score of the
//! rules in `block` mode, and the verdict. A scan error is a hit of its own
//! kind (`inspection_error`), never a silent "no match".

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{ConfigError, ConfigErrors};
use crate::rules::detect::{self, Detection};
use crate::rules::matcher::{self, Backend, MatcherSet, PatternKind, PatternSpec, Scratch};
use crate::rules::schema::{Exclusion, Mode, Operator, Pack, Rule, Target, TargetKind};
use crate::rules::transform::Chain;

/// Longest excerpt of a matched value kept in a hit (bytes).
pub const EXCERPT_BYTES: usize = 96;

/// Engine-wide settings (from the `waf` config section).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub paranoia: u8,
    pub inbound_threshold: u32,
    /// The global mode; packs and rules may narrow it (block → detect → shadow).
    pub mode: Mode,
    pub backend: Backend,
    /// Exclusions from the config (packs may carry their own).
    pub exclusions: Vec<Exclusion>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            paranoia: 1,
            inbound_threshold: 5,
            mode: Mode::Block,
            backend: Backend::default(),
            exclusions: Vec::new(),
        }
    }
}

/// One request field as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub kind: TargetKind,
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// Request facts exclusions are matched against.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Native {
    Sqli,
    Xss,
    Cmdi,
    Path,
}

#[derive(Debug, Clone)]
enum Check {
    Native(Native),
    IpIn(Vec<ipnet::IpNet>),
    LengthGt(u64),
}

struct Group {
    /// Every target any rule of the group looks at (a field outside all of
    /// them is neither transformed nor scanned).
    targets: Vec<Target>,
    matcher: Option<MatcherSet>,
    /// Pattern id (index) → rule index.
    pattern_rule: Vec<usize>,
    /// Rules with a negated pattern operator in this group.
    negated: Vec<usize>,
    checks: Vec<(usize, Check)>,
    /// Index into the per-thread scratch list.
    slot: usize,
}

struct Pass {
    chain: Chain,
    groups: Vec<Group>,
}

/// A compiled, immutable rule set (`Send + Sync`), swapped whole on reload.
pub struct RuleSet {
    uid: u64,
    rules: Vec<Rule>,
    /// Effective mode per rule (global ∧ pack ∧ rule).
    modes: Vec<Mode>,
    passes: Vec<Pass>,
    exclusions: Vec<Exclusion>,
    threshold: u32,
    slots: usize,
    hash: String,
    backend: Backend,
}

/// Per-thread scratch for evaluating a `RuleSet`; rebuilt when the set changes.
#[derive(Default)]
pub struct EngineScratch {
    uid: u64,
    scratch: Vec<Scratch>,
}

/// One rule that fired on one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub rule_id: u32,
    pub rule_name: String,
    pub pack: String,
    pub severity: &'static str,
    pub score: u32,
    pub mode: Mode,
    pub tags: Vec<String>,
    /// `kind` or `kind:name`, e.g. `args:q`.
    pub target: String,
    pub transforms: String,
    /// The transformed value (first `EXCERPT_BYTES` bytes, lossy UTF-8).
    pub excerpt: String,
    /// What a native detector found, if one fired.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block,
}

#[derive(Debug, Clone)]
pub struct Evaluation {
    pub hits: Vec<Hit>,
    /// Sum of the scores of hits in `block` mode.
    pub score: u32,
    /// Sum of the scores of hits in `detect` mode (what would have blocked).
    pub detect_score: u32,
    pub verdict: Verdict,
    /// Values that could not be inspected (a matcher error): the caller must
    /// treat the request as not inspected (`fail closed` by default).
    pub errors: Vec<String>,
}

impl Evaluation {
    pub fn blocking_rule_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .hits
            .iter()
            .filter(|h| h.mode == Mode::Block)
            .map(|h| h.rule_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

impl RuleSet {
    /// Compiles packs into a rule set. Every problem is returned at once,
    /// located at the rule that caused it.
    pub fn compile(packs: &[Pack], settings: &EngineSettings) -> Result<RuleSet, ConfigErrors> {
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut modes: Vec<Mode> = Vec::new();
        let mut seen: BTreeMap<u32, (String, usize)> = BTreeMap::new();
        let mut exclusions = settings.exclusions.clone();
        let mut hasher = Fnv::default();
        for p in packs {
            hasher.write(p.name.as_bytes());
            exclusions.extend(p.exclusions.iter().cloned());
            for r in &p.rules {
                if let Some((f, l)) = seen.get(&r.id) {
                    errors.push(err_at(
                        r,
                        format!("rule id {} is also defined at {f}:{l}", r.id),
                    ));
                    continue;
                }
                seen.insert(r.id, (r.file.display().to_string(), r.line));
                hasher.write(format!("{r:?}").as_bytes());
                if r.paranoia > settings.paranoia {
                    continue;
                }
                modes.push(narrow(narrow(settings.mode, p.mode), r.mode));
                rules.push(r.clone());
            }
        }

        // Group by transform chain. Response-phase rules are compiled too (their
        // targets never select request fields): a broken response pattern is a
        // load error, and their inline tests run like any other.
        let mut by_chain: BTreeMap<Chain, Vec<usize>> = BTreeMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_chain
                .entry(Chain::new(r.transforms.clone()))
                .or_default()
                .push(i);
        }
        // One group (one Hyperscan database) per transform chain, whatever the
        // targets: measured on the bundled packs, one database per (chain,
        // target) compiled the same patterns once per target and made
        // `portcullis check` take ~25 s of CPU; hits are filtered by each
        // rule's own targets instead.
        let mut passes = Vec::new();
        let mut slots = 0;
        for (chain, idxs) in by_chain {
            let mut groups = Vec::new();
            {
                let mut targets: Vec<Target> = idxs
                    .iter()
                    .flat_map(|&i| rules[i].targets.iter().cloned())
                    .collect();
                targets.sort();
                targets.dedup();
                let mut specs = Vec::new();
                let mut pattern_rule = Vec::new();
                let mut negated = Vec::new();
                let mut checks = Vec::new();
                for &i in &idxs {
                    let r = &rules[i];
                    let mut push = |kind: PatternKind| {
                        specs.push(PatternSpec {
                            id: pattern_rule.len() as u32,
                            kind,
                            caseless: r.caseless,
                        });
                        pattern_rule.push(i);
                    };
                    match &r.operator {
                        Operator::Regex(re) => push(PatternKind::Regex(re.clone())),
                        Operator::Phrases(list) => {
                            for p in list {
                                push(PatternKind::Literal(p.as_bytes().to_vec()));
                            }
                        }
                        Operator::Contains(s) => push(PatternKind::Literal(s.as_bytes().to_vec())),
                        Operator::StartsWith(s) => {
                            push(PatternKind::Regex(format!("^{}", regex_syntax::escape(s))))
                        }
                        Operator::Equals(s) => {
                            push(PatternKind::Regex(format!("^{}$", regex_syntax::escape(s))))
                        }
                        Operator::Sqli => checks.push((i, Check::Native(Native::Sqli))),
                        Operator::Xss => checks.push((i, Check::Native(Native::Xss))),
                        Operator::Cmdi => checks.push((i, Check::Native(Native::Cmdi))),
                        Operator::PathTraversal => checks.push((i, Check::Native(Native::Path))),
                        Operator::IpIn(n) => checks.push((i, Check::IpIn(n.clone()))),
                        Operator::LengthGt(n) => checks.push((i, Check::LengthGt(*n))),
                    }
                    if r.negate && is_pattern(&r.operator) {
                        negated.push(i);
                    }
                }
                let matcher = if specs.is_empty() {
                    None
                } else {
                    match matcher::compile(&specs, settings.backend) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            let r = &rules[pattern_rule.get(e.id as usize).copied().unwrap_or(0)];
                            errors.push(err_at(
                                r,
                                format!(
                                    "pattern cannot be compiled by the {} matcher: {}",
                                    settings.backend, e.message
                                ),
                            ));
                            None
                        }
                    }
                };
                groups.push(Group {
                    targets,
                    matcher,
                    pattern_rule,
                    negated,
                    checks,
                    slot: slots,
                });
                slots += 1;
            }
            passes.push(Pass { chain, groups });
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(ConfigErrors(errors));
        }
        hasher.write(&settings.paranoia.to_le_bytes());
        Ok(RuleSet {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            rules,
            modes,
            passes,
            exclusions,
            threshold: settings.inbound_threshold,
            slots,
            hash: format!("{:016x}", hasher.0),
            backend: settings.backend,
        })
    }

    /// Number of rules compiled in (after paranoia filtering).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// A stable hash of the packs and settings (for `portcullis_ruleset_info`).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The inbound anomaly threshold.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Evaluates the request-phase rules against `fields`.
    pub fn evaluate(
        &self,
        fields: &[Field<'_>],
        facts: &RequestFacts<'_>,
        scratch: &mut EngineScratch,
    ) -> Evaluation {
        if scratch.uid != self.uid {
            scratch.uid = self.uid;
            scratch.scratch = (0..self.slots).map(|_| Scratch::default()).collect();
        }
        let excl = self.active_exclusions(facts);
        let mut hits = Vec::new();
        let mut errors = Vec::new();
        let mut matched: Vec<usize> = Vec::new();
        // Detector results per field, keyed by (detector, transformed bytes):
        // most chains leave a clean value unchanged, and a detector must not
        // rerun on the same bytes once per chain.
        type Seen = Vec<(Vec<u8>, Option<Detection>)>;
        let mut det_cache: std::collections::HashMap<(usize, Native), Seen> =
            std::collections::HashMap::new();
        for pass in &self.passes {
            for (fi, f) in fields.iter().enumerate() {
                if excl.skips_target(f) {
                    continue;
                }
                // Transform once per (field, chain), only if some rule wants the field.
                if !pass
                    .groups
                    .iter()
                    .any(|g| g.targets.iter().any(|t| selects(t, f)))
                {
                    continue;
                }
                let value = pass.chain.apply(f.value);
                for g in pass
                    .groups
                    .iter()
                    .filter(|g| g.targets.iter().any(|t| selects(t, f)))
                {
                    let wants = |ri: usize| self.rules[ri].targets.iter().any(|t| selects(t, f));
                    matched.clear();
                    if let Some(m) = &g.matcher {
                        let s = &mut scratch.scratch[g.slot];
                        if let Err(e) = m.scan(s, &value, |id| {
                            if let Some(&ri) = g.pattern_rule.get(id as usize) {
                                matched.push(ri);
                            }
                        }) {
                            errors.push(format!("{}: {e}", target_label(f)));
                            continue;
                        }
                    }
                    matched.sort_unstable();
                    matched.dedup();
                    for &ri in &matched {
                        if !self.rules[ri].negate && wants(ri) {
                            self.push_hit(&mut hits, &excl, ri, f, &pass.chain, &value, None);
                        }
                    }
                    for &ri in &g.negated {
                        if matched.binary_search(&ri).is_err() && wants(ri) {
                            self.push_hit(&mut hits, &excl, ri, f, &pass.chain, &value, None);
                        }
                    }
                    for (ri, check) in &g.checks {
                        if !wants(*ri) {
                            continue;
                        }
                        let found = match check {
                            Check::Native(n) => {
                                let seen = det_cache.entry((fi, *n)).or_default();
                                match seen.iter().find(|(v, _)| v.as_slice() == &*value) {
                                    Some((_, r)) => r.clone(),
                                    None => {
                                        let r = run_check(check, &value);
                                        seen.push((value.to_vec(), r.clone()));
                                        r
                                    }
                                }
                            }
                            _ => run_check(check, &value),
                        };
                        let fired = found.is_some() != self.rules[*ri].negate;
                        if fired {
                            let detail = found.map(|d| format!("{}: {}", d.context, d.detail));
                            self.push_hit(&mut hits, &excl, *ri, f, &pass.chain, &value, detail);
                        }
                    }
                }
            }
        }
        // One hit per (rule, target): the same rule firing on two fields counts twice,
        // the same rule on one field through two transform paths once.
        hits.dedup_by(|a, b| a.rule_id == b.rule_id && a.target == b.target);
        let score = hits
            .iter()
            .filter(|h| h.mode == Mode::Block)
            .map(|h| h.score)
            .sum();
        let detect_score = hits
            .iter()
            .filter(|h| h.mode == Mode::Detect)
            .map(|h| h.score)
            .sum();
        let verdict = if score >= self.threshold && self.threshold > 0 {
            Verdict::Block
        } else {
            Verdict::Allow
        };
        Evaluation {
            hits,
            score,
            detect_score,
            verdict,
            errors,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_hit(
        &self,
        hits: &mut Vec<Hit>,
        excl: &Active<'_>,
        ri: usize,
        f: &Field<'_>,
        chain: &Chain,
        value: &[u8],
        detail: Option<String>,
    ) {
        let r = &self.rules[ri];
        if excl.disables(r, f) {
            return;
        }
        let cut = value.len().min(EXCERPT_BYTES);
        hits.push(Hit {
            rule_id: r.id,
            rule_name: r.name.clone(),
            pack: r
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            severity: r.severity.as_str(),
            score: r.score,
            mode: self.modes[ri],
            tags: r.tags.clone(),
            target: target_label(f),
            transforms: chain.to_string(),
            excerpt: String::from_utf8_lossy(&value[..cut]).into_owned(),
            detail,
        });
    }

    fn active_exclusions<'a>(&'a self, facts: &RequestFacts<'_>) -> Active<'a> {
        let mut a = Active::default();
        for x in &self.exclusions {
            let w = &x.when;
            let applies = w.path.as_deref().is_none_or(|p| p == facts.path)
                && w.path_prefix
                    .as_deref()
                    .is_none_or(|p| facts.path.starts_with(p))
                && w.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(facts.method))
                && w.host
                    .as_deref()
                    .is_none_or(|h| h.eq_ignore_ascii_case(facts.host));
            if applies {
                a.ids.extend(x.ids.iter().copied());
                a.tags.extend(x.tags.iter().map(String::as_str));
                a.targets.extend(x.targets.iter());
                if x.ids.is_empty() && x.tags.is_empty() && !x.targets.is_empty() {
                    a.whole_targets.extend(x.targets.iter());
                }
            }
        }
        a
    }

    /// Runs one rule alone on one value (inline `tests:`), through the same
    /// transforms and the same compiled matcher the request path uses.
    pub fn test_rule(&self, rule_id: u32, input: &[u8]) -> Option<bool> {
        self.test_rule_with(rule_id, input, &mut EngineScratch::default())
    }

    /// `test_rule` with a reusable scratch (allocating one per call costs a
    /// DFA cache or a Hyperscan scratch each time).
    pub fn test_rule_with(
        &self,
        rule_id: u32,
        input: &[u8],
        scratch: &mut EngineScratch,
    ) -> Option<bool> {
        if scratch.uid != self.uid {
            scratch.uid = self.uid;
            scratch.scratch = (0..self.slots).map(|_| Scratch::default()).collect();
        }
        let ri = self.rules.iter().position(|r| r.id == rule_id)?;
        let r = &self.rules[ri];
        let chain = Chain::new(r.transforms.clone());
        let pass = self.passes.iter().find(|p| p.chain == chain)?;
        let g = pass.groups.first()?;
        let value = chain.apply(input);
        let mut fired = false;
        if let Some(check) = g.checks.iter().find(|(i, _)| *i == ri).map(|(_, c)| c) {
            fired = run_check(check, &value).is_some();
        } else if let Some(m) = &g.matcher {
            let s = &mut scratch.scratch[g.slot];
            let _ = m.scan(s, &value, |id| {
                if g.pattern_rule.get(id as usize) == Some(&ri) {
                    fired = true;
                }
            });
        }
        Some(fired != r.negate)
    }
}

fn is_pattern(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Regex(_)
            | Operator::Phrases(_)
            | Operator::Contains(_)
            | Operator::Equals(_)
            | Operator::StartsWith(_)
    )
}

fn run_check(check: &Check, value: &[u8]) -> Option<Detection> {
    match check {
        Check::Native(Native::Sqli) => detect::sqli::detect(value),
        Check::Native(Native::Xss) => detect::xss::detect(value),
        Check::Native(Native::Cmdi) => detect::cmdi::detect(value),
        Check::Native(Native::Path) => detect::path::detect(value),
        Check::IpIn(nets) => {
            let s = std::str::from_utf8(value).ok()?;
            let ip: std::net::IpAddr = s.trim().parse().ok()?;
            nets.iter().any(|n| n.contains(&ip)).then(|| Detection {
                context: "ip",
                detail: s.trim().to_string(),
            })
        }
        Check::LengthGt(n) => (value.len() as u64 > *n).then(|| Detection {
            context: "length",
            detail: value.len().to_string(),
        }),
    }
}

/// Does a rule target select this field?
fn selects(t: &Target, f: &Field<'_>) -> bool {
    let kind_ok = t.kind == f.kind
        || (t.kind == TargetKind::Args
            && matches!(f.kind, TargetKind::ArgsGet | TargetKind::ArgsPost));
    if !kind_ok {
        return false;
    }
    match &t.name {
        None => true,
        Some(n) if matches!(t.kind, TargetKind::Headers | TargetKind::ResponseHeaders) => {
            n.as_bytes().eq_ignore_ascii_case(f.name)
        }
        Some(n) => n.as_bytes() == f.name,
    }
}

fn target_label(f: &Field<'_>) -> String {
    let kind = kind_name(f.kind);
    if f.name.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}:{}", String::from_utf8_lossy(f.name))
    }
}

pub fn kind_name(k: TargetKind) -> &'static str {
    use TargetKind::*;
    match k {
        Args => "args",
        ArgsGet => "args_get",
        ArgsPost => "args_post",
        ArgsNames => "args_names",
        Path => "path",
        Query => "query",
        Uri => "uri",
        Method => "method",
        Headers => "headers",
        HeaderNames => "header_names",
        Cookies => "cookies",
        CookieNames => "cookie_names",
        Body => "body",
        Json => "json",
        Xml => "xml",
        Files => "files",
        FilesContent => "files_content",
        ResponseStatus => "response_status",
        ResponseHeaders => "response_headers",
        ResponseBody => "response_body",
    }
}

/// The exclusions that apply to one request.
#[derive(Default)]
struct Active<'a> {
    ids: HashSet<u32>,
    tags: HashSet<&'a str>,
    /// Targets disabled for the excluded ids/tags only.
    targets: Vec<&'a Target>,
    /// Targets disabled for every rule (an exclusion naming only targets).
    whole_targets: Vec<&'a Target>,
}

impl Active<'_> {
    fn skips_target(&self, f: &Field<'_>) -> bool {
        self.whole_targets.iter().any(|t| selects(t, f))
    }

    fn disables(&self, r: &Rule, f: &Field<'_>) -> bool {
        let by_rule =
            self.ids.contains(&r.id) || r.tags.iter().any(|t| self.tags.contains(t.as_str()));
        if !by_rule {
            return false;
        }
        // With targets listed, the rule is disabled on those targets only.
        self.targets.is_empty() || self.targets.iter().any(|t| selects(t, f))
    }
}

/// block ∧ detect = detect, anything ∧ shadow = shadow.
fn narrow(a: Mode, b: Option<Mode>) -> Mode {
    match (a, b) {
        (Mode::Shadow, _) | (_, Some(Mode::Shadow)) => Mode::Shadow,
        (Mode::Detect, _) | (_, Some(Mode::Detect)) => Mode::Detect,
        _ => Mode::Block,
    }
}

fn err_at(r: &Rule, message: String) -> ConfigError {
    ConfigError {
        file: r.file.clone(),
        line: r.line,
        column: 5,
        key: format!("rules[{}]", r.id),
        message,
    }
}

/// FNV-1a 64: a stable content hash for the rule-set identity (not security).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Keeps `Cow` in the signature of helpers that may borrow.
#[allow(dead_code)]
fn _cow(v: &[u8]) -> Cow<'_, [u8]> {
    Cow::Borrowed(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::schema::parse_pack;
    use std::path::Path;

    fn set(yaml: &str, settings: &EngineSettings) -> RuleSet {
        let p = parse_pack(Path::new("rules/t.yaml"), yaml).unwrap();
        RuleSet::compile(&[p], settings).unwrap()
    }

    const PACK: &str = r#"pack: t
rules:
  - id: 100
    name: union select
    severity: critical
    targets: [args]
    transforms: [url_decode, lowercase]
    match: {regex: "union\\s+select"}
    tags: [attack-sqli]
  - id: 101
    name: bad agent
    severity: high
    targets: ["headers:user-agent"]
    match: {phrases: [sqlmap, nikto]}
    caseless: true
  - id: 102
    name: long arg
    severity: low
    targets: [args]
    match: {length_gt: 20}
  - id: 103
    name: paranoid
    severity: critical
    paranoia: 2
    targets: [args]
    match: {contains: "x"}
"#;

    fn fields<'a>(list: &'a [(TargetKind, &'a str, &'a str)]) -> Vec<Field<'a>> {
        list.iter()
            .map(|(k, n, v)| Field {
                kind: *k,
                name: n.as_bytes(),
                value: v.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn scores_and_blocks() {
        let rs = set(
            &PACK.replace("    caseless: true\n", ""),
            &EngineSettings::default(),
        );
        assert_eq!(rs.len(), 3, "paranoia 2 rule left out");
        let mut sc = EngineScratch::default();
        let f = fields(&[
            (TargetKind::ArgsGet, "q", "1%20UNION%20select%202"),
            (TargetKind::Headers, "user-agent", "sqlmap/1.0"),
        ]);
        let ev = rs.evaluate(&f, &RequestFacts::default(), &mut sc);
        let ids: Vec<u32> = ev.hits.iter().map(|h| h.rule_id).collect();
        assert!(ids.contains(&100) && ids.contains(&101), "{ids:?}");
        assert_eq!(ev.verdict, Verdict::Block);
        assert_eq!(ev.hits[0].target, "args_get:q");
        let clean = fields(&[(TargetKind::ArgsGet, "q", "hello")]);
        assert_eq!(
            rs.evaluate(&clean, &RequestFacts::default(), &mut sc)
                .verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn exclusions_and_modes() {
        let mut s = EngineSettings::default();
        s.exclusions = parse_pack(
            Path::new("x.yaml"),
            "pack: x\nexclusions:\n  - when: {path: /api/comments, method: POST}\n    disable: {ids: [100], targets: [\"args:body\"]}\n",
        )
        .unwrap()
        .exclusions;
        let rs = set(&PACK.replace("    caseless: true\n", ""), &s);
        let mut sc = EngineScratch::default();
        let f = fields(&[
            (TargetKind::ArgsPost, "body", "union select"),
            (TargetKind::ArgsPost, "other", "union select"),
        ]);
        let facts = RequestFacts {
            method: "POST",
            path: "/api/comments",
            host: "",
        };
        let ev = rs.evaluate(&f, &facts, &mut sc);
        let targets: Vec<&str> = ev
            .hits
            .iter()
            .filter(|h| h.rule_id == 100)
            .map(|h| h.target.as_str())
            .collect();
        assert_eq!(targets, ["args_post:other"]);

        s.mode = Mode::Detect;
        let rs = set(&PACK.replace("    caseless: true\n", ""), &s);
        let ev = rs.evaluate(&f, &RequestFacts::default(), &mut sc);
        assert_eq!(ev.verdict, Verdict::Allow);
        assert!(ev.detect_score >= 5);
    }

    #[test]
    fn inline_tests_run_through_the_compiled_matcher() {
        let rs = set(
            &PACK.replace("    caseless: true\n", ""),
            &EngineSettings::default(),
        );
        assert_eq!(rs.test_rule(100, b"1 union   select 2"), Some(true));
        assert_eq!(rs.test_rule(100, b"the union is selected"), Some(false));
        assert_eq!(rs.test_rule(102, b"short"), Some(false));
    }
}
