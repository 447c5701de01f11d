//! Rule packs (`rules/*.yaml`, SPEC §5): YAML → validated `Pack`, with every
//! problem reported at once as `FILE:LINE:COL: key: message` (the same error
//! type as the configuration, so `portcullis check` prints both alike).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::{ConfigError, ConfigErrors, Errs, yaml_options};
use crate::rules::transform::Transform;

type S<T> = Spanned<T>;

/// Longest regex accepted in a pack (bytes); longer ones are load errors.
pub const MAX_REGEX_LEN: usize = 4096;
/// Most phrases in one rule (inline or file).
pub const MAX_PHRASES: usize = 100_000;

// ---------------------------------------------------------------------------
// File shape

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePack {
    pack: S<String>,
    description: Option<String>,
    mode: Option<S<String>>,
    #[serde(default)]
    rules: Vec<FileRule>,
    #[serde(default)]
    exclusions: Vec<FileExclusion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    id: S<u32>,
    name: S<String>,
    severity: S<String>,
    paranoia: Option<S<u8>>,
    phase: Option<S<String>>,
    targets: S<Vec<S<String>>>,
    #[serde(default)]
    transforms: Vec<S<String>>,
    #[serde(rename = "match")]
    matcher: S<FileMatch>,
    score: Option<S<u32>>,
    mode: Option<S<String>>,
    #[serde(default)]
    tags: Vec<String>,
    tests: Option<FileTests>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMatch {
    regex: Option<S<String>>,
    phrases: Option<Vec<String>>,
    phrases_file: Option<S<String>>,
    contains: Option<S<String>>,
    equals: Option<S<String>>,
    starts_with: Option<S<String>>,
    sqli: Option<bool>,
    /// The SQL lexer on the whole value and on each `/`-separated segment
    /// (URL paths: `/items/1 AND 1=1/view`).
    sqli_path: Option<bool>,
    xss: Option<bool>,
    cmdi: Option<bool>,
    /// The shell tokenizer on the tails of a URL path (the segments from an
    /// unusual one on), never on the whole path, which reads as a command
    /// given by absolute path (`/head`).
    cmdi_path: Option<bool>,
    /// The SQL, HTML, shell and path detectors on the text a base64 value
    /// (or `/`-separated segment) encodes.
    base64_payload: Option<bool>,
    path_traversal: Option<bool>,
    ip_in: Option<Vec<S<String>>>,
    length_gt: Option<u64>,
    /// Invert the operator: the rule fires when the operator does not match.
    negate: Option<bool>,
    /// ASCII case-insensitive matching (regex, phrases, contains, equals, starts_with).
    caseless: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTests {
    #[serde(default, rename = "match")]
    matches: Vec<String>,
    #[serde(default)]
    no_match: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExclusion {
    when: FileWhen,
    disable: FileDisable,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWhen {
    path: Option<S<String>>,
    path_prefix: Option<S<String>>,
    method: Option<S<String>>,
    host: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDisable {
    #[serde(default)]
    ids: Vec<u32>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    targets: Vec<S<String>>,
}

// ---------------------------------------------------------------------------
// Validated shape

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" => Severity::Low,
            "info" => Severity::Info,
            _ => return None,
        })
    }

    /// Default anomaly score (SPEC §5: critical|high|medium|low|info → 5/4/3/2/0).
    pub fn default_score(self) -> u32 {
        match self {
            Severity::Critical => 5,
            Severity::High => 4,
            Severity::Medium => 3,
            Severity::Low => 2,
            Severity::Info => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Counts toward the verdict and blocks.
    Block,
    /// Evaluated and logged as a would-block; never blocks.
    Detect,
    /// Evaluated and logged separately; never counts toward the verdict.
    Shadow,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "block" => Mode::Block,
            "detect" => Mode::Detect,
            "shadow" => Mode::Shadow,
            _ => return None,
        })
    }
}

/// What a rule looks at (SPEC §5 target list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
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
    ResponseStatus,
    ResponseHeaders,
    ResponseBody,
}

impl TargetKind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [TargetKind; 20] = {
        use TargetKind::*;
        [
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
            ResponseStatus,
            ResponseHeaders,
            ResponseBody,
        ]
    };

    pub fn parse(s: &str) -> Option<TargetKind> {
        use TargetKind::*;
        Some(match s {
            "args" => Args,
            "args_get" => ArgsGet,
            "args_post" => ArgsPost,
            "args_names" => ArgsNames,
            "path" => Path,
            "query" => Query,
            "uri" => Uri,
            "method" => Method,
            "headers" => Headers,
            "header_names" => HeaderNames,
            "cookies" => Cookies,
            "cookie_names" => CookieNames,
            "body" => Body,
            "json" => Json,
            "xml" => Xml,
            "files" => Files,
            "files_content" => FilesContent,
            "response_status" => ResponseStatus,
            "response_headers" => ResponseHeaders,
            "response_body" => ResponseBody,
            _ => return None,
        })
    }

    /// Targets that take a `:NAME` selector.
    fn takes_name(self) -> bool {
        matches!(
            self,
            TargetKind::Args
                | TargetKind::ArgsGet
                | TargetKind::ArgsPost
                | TargetKind::Headers
                | TargetKind::Cookies
                | TargetKind::Json
                | TargetKind::ResponseHeaders
        )
    }

    pub fn is_response(self) -> bool {
        matches!(
            self,
            TargetKind::ResponseStatus | TargetKind::ResponseHeaders | TargetKind::ResponseBody
        )
    }
}

/// `kind` or `kind:name` (names of headers are lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub kind: TargetKind,
    pub name: Option<String>,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let (k, name) = match s.split_once(':') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let kind = TargetKind::parse(k).ok_or_else(|| format!("unknown target `{k}`"))?;
        let name = match name {
            None => None,
            Some("") => return Err(format!("target `{s}` has an empty name")),
            Some(_) if !kind.takes_name() => return Err(format!("target `{k}` takes no `:name`")),
            Some(n) if matches!(kind, TargetKind::Headers | TargetKind::ResponseHeaders) => {
                Some(n.to_ascii_lowercase())
            }
            Some(n) => Some(n.to_string()),
        };
        Ok(Target { kind, name })
    }
}

/// The operator of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    Regex(String),
    Phrases(Vec<String>),
    Contains(String),
    Equals(String),
    StartsWith(String),
    Sqli,
    /// [`Operator::Sqli`] on the whole value and on each path segment.
    SqliPath,
    Xss,
    Cmdi,
    /// [`Operator::Cmdi`] on the tails of a path, not the whole path.
    CmdiPath,
    /// The native detectors on the text a base64 value encodes.
    Base64Payload,
    PathTraversal,
    IpIn(Vec<ipnet::IpNet>),
    LengthGt(u64),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: u32,
    pub name: String,
    pub severity: Severity,
    pub paranoia: u8,
    pub phase: Phase,
    pub targets: Vec<Target>,
    pub transforms: Vec<Transform>,
    pub operator: Operator,
    pub negate: bool,
    pub caseless: bool,
    pub score: u32,
    /// The rule's own mode; `None` inherits the pack's, then the global one.
    pub mode: Option<Mode>,
    pub tags: Vec<String>,
    pub tests_match: Vec<String>,
    pub tests_no_match: Vec<String>,
    /// Where the rule is defined, for messages (`file:line`).
    pub file: PathBuf,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct When {
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Exclusion {
    pub when: When,
    pub ids: Vec<u32>,
    pub tags: Vec<String>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone)]
pub struct Pack {
    pub name: String,
    pub description: String,
    pub mode: Option<Mode>,
    pub rules: Vec<Rule>,
    pub exclusions: Vec<Exclusion>,
    pub file: PathBuf,
}

// ---------------------------------------------------------------------------
// Loading

/// Reads and validates one pack file.
pub fn load_pack(path: &Path) -> Result<Pack, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read rule pack: {e}"),
        }])
    })?;
    parse_pack(path, &text)
}

/// Parses and validates pack text; `path` names the file in messages and
/// anchors relative `phrases_file` paths.
pub fn parse_pack(path: &Path, text: &str) -> Result<Pack, ConfigErrors> {
    let mut errs = Errs::new(path, text);
    let file: FilePack = match serde_saphyr::from_str_with_options(text, yaml_options()) {
        Ok(f) => f,
        Err(e) => {
            errs.push_yaml(&e, 1);
            return Err(errs.into_errors());
        }
    };
    let pack = validate(&mut errs, path, file);
    errs.finish(pack)
}

fn validate(errs: &mut Errs<'_>, path: &Path, f: FilePack) -> Pack {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let pack_mode = f.mode.as_ref().and_then(|m| {
        let v = Mode::parse(&m.value);
        if v.is_none() {
            errs.at(m, "mode", "must be block, detect or shadow");
        }
        v
    });
    if f.pack.value.is_empty()
        || !f
            .pack
            .value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        errs.at(
            &f.pack,
            "pack",
            "pack names are letters, digits, `_` and `-`",
        );
    }
    let mut seen = HashSet::new();
    let mut rules = Vec::new();
    for r in f.rules {
        if !seen.insert(r.id.value) {
            errs.at(
                &r.id,
                "rules.id",
                format!("rule id {} appears twice in this pack", r.id.value),
            );
        }
        if let Some(rule) = validate_rule(errs, &base, path, r) {
            rules.push(rule);
        }
    }
    let mut exclusions = Vec::new();
    for x in f.exclusions {
        let mut targets = Vec::new();
        for t in &x.disable.targets {
            match Target::parse(&t.value) {
                Ok(t) => targets.push(t),
                Err(m) => errs.at(t, "exclusions.disable.targets", m),
            }
        }
        exclusions.push(Exclusion {
            when: When {
                path: x.when.path.map(|s| s.value),
                path_prefix: x.when.path_prefix.map(|s| s.value),
                method: x.when.method.map(|s| s.value.to_ascii_uppercase()),
                host: x.when.host.map(|s| s.value.to_ascii_lowercase()),
            },
            ids: x.disable.ids,
            tags: x.disable.tags,
            targets,
        });
    }
    Pack {
        name: f.pack.value,
        description: f.description.unwrap_or_default(),
        mode: pack_mode,
        rules,
        exclusions,
        file: path.to_path_buf(),
    }
}

fn validate_rule(errs: &mut Errs<'_>, base: &Path, file: &Path, r: FileRule) -> Option<Rule> {
    let before = errs.count();
    let line = r.id.referenced.line() as usize;
    let severity = Severity::parse(&r.severity.value);
    if severity.is_none() {
        errs.at(
            &r.severity,
            "rules.severity",
            "must be critical, high, medium, low or info",
        );
    }
    let paranoia = r.paranoia.as_ref().map_or(1, |p| p.value);
    if !(1..=4).contains(&paranoia)
        && let Some(p) = &r.paranoia
    {
        errs.at(p, "rules.paranoia", "must be 1 to 4");
    }
    let phase = match r.phase.as_ref().map(|p| p.value.as_str()) {
        None | Some("request") => Phase::Request,
        Some("response") => Phase::Response,
        Some(_) => {
            if let Some(p) = &r.phase {
                errs.at(p, "rules.phase", "must be request or response");
            }
            Phase::Request
        }
    };
    let mut targets = Vec::new();
    if r.targets.value.is_empty() {
        errs.at(
            &r.targets,
            "rules.targets",
            "at least one target is required",
        );
    }
    for t in &r.targets.value {
        match Target::parse(&t.value) {
            Ok(tg) => {
                if tg.kind.is_response() != (phase == Phase::Response) {
                    errs.at(
                        t,
                        "rules.targets",
                        format!(
                            "target `{}` does not exist in the {:?} phase",
                            t.value, phase
                        )
                        .to_lowercase(),
                    );
                }
                targets.push(tg);
            }
            Err(m) => errs.at(t, "rules.targets", m),
        }
    }
    let mut transforms = Vec::new();
    for t in &r.transforms {
        match Transform::from_name(&t.value) {
            Some(x) => transforms.push(x),
            None => errs.at(
                t,
                "rules.transforms",
                format!("unknown transform `{}`", t.value),
            ),
        }
    }
    let m = &r.matcher.value;
    let mut ops: Vec<Operator> = Vec::new();
    if let Some(re) = &m.regex {
        if re.value.len() > MAX_REGEX_LEN {
            errs.at(
                re,
                "rules.match.regex",
                format!("regex longer than {MAX_REGEX_LEN} bytes"),
            );
        }
        if let Err(e) = regex_syntax::ParserBuilder::new().build().parse(&re.value) {
            errs.at(
                re,
                "rules.match.regex",
                format!("invalid regex: {}", one_line(&e.to_string())),
            );
        }
        ops.push(Operator::Regex(re.value.clone()));
    }
    if let Some(p) = &m.phrases {
        ops.push(Operator::Phrases(p.clone()));
    }
    if let Some(pf) = &m.phrases_file {
        let p = base.join(&pf.value);
        match std::fs::read_to_string(&p) {
            Ok(text) => ops.push(Operator::Phrases(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect(),
            )),
            Err(e) => errs.at(
                pf,
                "rules.match.phrases_file",
                format!("cannot read {}: {e}", p.display()),
            ),
        }
    }
    if let Some(s) = &m.contains {
        ops.push(Operator::Contains(s.value.clone()));
    }
    if let Some(s) = &m.equals {
        ops.push(Operator::Equals(s.value.clone()));
    }
    if let Some(s) = &m.starts_with {
        ops.push(Operator::StartsWith(s.value.clone()));
    }
    for (flag, op) in [
        (m.sqli, Operator::Sqli),
        (m.sqli_path, Operator::SqliPath),
        (m.xss, Operator::Xss),
        (m.cmdi, Operator::Cmdi),
        (m.cmdi_path, Operator::CmdiPath),
        (m.base64_payload, Operator::Base64Payload),
        (m.path_traversal, Operator::PathTraversal),
    ] {
        if flag == Some(true) {
            ops.push(op);
        }
    }
    if let Some(list) = &m.ip_in {
        let mut nets = Vec::new();
        for s in list {
            match s
                .value
                .parse::<ipnet::IpNet>()
                .or_else(|_| s.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            {
                Ok(n) => nets.push(n),
                Err(_) => errs.at(
                    s,
                    "rules.match.ip_in",
                    format!("`{}` is not an IP address or CIDR", s.value),
                ),
            }
        }
        ops.push(Operator::IpIn(nets));
    }
    if let Some(n) = m.length_gt {
        ops.push(Operator::LengthGt(n));
    }
    if let Operator::Phrases(p) = ops.first().unwrap_or(&Operator::Sqli)
        && (p.is_empty() || p.len() > MAX_PHRASES)
    {
        errs.at(
            &r.matcher,
            "rules.match",
            format!("a phrase list needs 1 to {MAX_PHRASES} entries"),
        );
    }
    if ops.len() != 1 {
        errs.at(&r.matcher, "rules.match", "exactly one operator is required (regex, phrases, phrases_file, contains, equals, starts_with, sqli, sqli_path, xss, cmdi, cmdi_path, base64_payload, path_traversal, ip_in, length_gt)");
    }
    let mode = r.mode.as_ref().and_then(|m| {
        let v = Mode::parse(&m.value);
        if v.is_none() {
            errs.at(m, "rules.mode", "must be block, detect or shadow");
        }
        v
    });
    let tests = r.tests.unwrap_or_default();
    if errs.count() > before {
        return None;
    }
    let severity = severity?;
    Some(Rule {
        id: r.id.value,
        name: r.name.value,
        severity,
        paranoia,
        phase,
        targets,
        transforms,
        operator: ops.pop()?,
        negate: m.negate.unwrap_or(false),
        caseless: m.caseless.unwrap_or(false),
        score: r.score.map_or(severity.default_score(), |s| s.value),
        mode,
        tags: r.tags,
        tests_match: tests.matches,
        tests_no_match: tests.no_match,
        file: file.to_path_buf(),
        line,
    })
}

fn one_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"pack: sqli
description: SQL injection
rules:
  - id: 942100
    name: SQL injection found by the SQL lexer
    severity: critical
    paranoia: 1
    targets: [args, "headers:User-Agent", json]
    transforms: [url_decode_uni, lowercase]
    match: {sqli: true}
    tags: [attack-sqli]
    tests: {match: ["1' OR '1'='1"], no_match: ["O'Reilly"]}
  - id: 942200
    name: UNION SELECT
    severity: high
    targets: [args]
    match: {regex: "union\\s+select", caseless: true}
exclusions:
  - when: {path: /api/comments, method: post}
    disable: {ids: [942100], targets: ["args:body"]}
"#;

    #[test]
    fn parses_a_valid_pack() {
        let p = parse_pack(Path::new("rules/sqli.yaml"), GOOD).unwrap();
        assert_eq!(p.name, "sqli");
        assert_eq!(p.rules.len(), 2);
        let r = &p.rules[0];
        assert_eq!(r.score, 5);
        assert_eq!(r.line, 4);
        assert_eq!(r.operator, Operator::Sqli);
        assert_eq!(
            r.targets[1],
            Target {
                kind: TargetKind::Headers,
                name: Some("user-agent".into())
            }
        );
        assert_eq!(p.rules[1].score, 4);
        assert!(p.rules[1].caseless);
        assert_eq!(p.exclusions[0].when.method.as_deref(), Some("POST"));
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let bad = r#"pack: x
rules:
  - id: 1
    name: a
    severity: urgent
    targets: [argz, "path:x"]
    transforms: [rot13]
    match: {regex: "(unclosed", sqli: true}
  - id: 1
    name: b
    severity: low
    phase: response
    targets: [args]
    match: {}
"#;
        let e = parse_pack(Path::new("p.yaml"), bad).unwrap_err().0;
        let lines: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert!(lines.contains(&(5, "rules.severity")), "{lines:?}");
        assert!(
            lines
                .iter()
                .filter(|(l, k)| *l == 6 && *k == "rules.targets")
                .count()
                == 2,
            "{lines:?}"
        );
        assert!(lines.contains(&(7, "rules.transforms")), "{lines:?}");
        assert!(lines.contains(&(8, "rules.match.regex")), "{lines:?}");
        assert!(
            lines.contains(&(8, "rules.match")),
            "two operators: {lines:?}"
        );
        assert!(lines.contains(&(9, "rules.id")), "duplicate id: {lines:?}");
        assert!(
            lines.contains(&(13, "rules.targets")),
            "request target in response phase: {lines:?}"
        );
        assert!(
            lines.contains(&(14, "rules.match")),
            "no operator: {lines:?}"
        );
        assert!(e[0].to_string().starts_with("p.yaml:5:"), "{}", e[0]);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse_pack(
            Path::new("p.yaml"),
            "pack: x\nrules:\n  - id: 1\n    nme: a\n",
        )
        .unwrap_err()
        .0;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 4);
        assert!(e[0].message.contains("unknown field `nme`"), "{}", e[0]);
    }
}
