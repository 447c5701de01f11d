//! Configuration: YAML file → `FileConfig` (serde, unknown keys rejected) →
//! validated `Config`. Every error carries file, line, column and key, and
//! `load` returns all of them at once (like `nginx -t` / `vector validate`).
//!
//! Why the file is parsed section by section: serde stops at the first error,
//! but an operator fixing a config wants every mistake in one pass. Each
//! top-level section is deserialized on its own (padded with blank lines so
//! line numbers stay exact), so one bad section does not hide the others.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

/// Default proxy listener when `listen` is absent.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin listener: loopback only, never exposed by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(90);
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 256;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_INSPECT_BODY_BYTES: usize = 1024 * 1024;
/// Bodies up to this size are read completely (and their framing verified)
/// before anything is sent upstream; longer bodies are streamed after it.
pub const DEFAULT_BODY_BUFFER_BYTES: usize = 64 * 1024;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Minimum average request-body rate once the grace period has passed.
pub const DEFAULT_MIN_BODY_RATE: u64 = 1024;
pub const DEFAULT_MIN_BODY_RATE_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_LOG_DIR: &str = "logs/security";
pub const DEFAULT_LOG_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
pub const DEFAULT_LOG_MAX_FILES: usize = 10;
/// The HTTP/1 framing guard parses at most this many header lines.
pub const MAX_HEADERS_LIMIT: usize = crate::framing::MAX_HEADERS;
/// hyper refuses read buffers below 8 KiB; the header limit cannot go lower.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// Upper bound for `workers`.
pub const MAX_WORKERS: usize = 256;

/// `workers: auto`: the CPUs this process may run on (honours `taskset` and
/// cgroup CPU limits through `available_parallelism`).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The special upstream served by the gateway itself (demo / first start).
pub const BUILTIN_ECHO: &str = "builtin:echo";

// ---------------------------------------------------------------------------
// Errors

/// One configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All the problems found in one configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// File shape (what the YAML may contain)

type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// Worker threads: `auto` (one per CPU the process may run on) or a number.
    workers: Option<S<SizeValue>>,
    listen: Option<S<Vec<FileListener>>>,
    upstream: Option<FileUpstream>,
    routes: Option<Vec<FileRoute>>,
    trusted_proxies: Option<Vec<S<String>>>,
    limits: Option<FileLimits>,
    admin: Option<FileAdmin>,
    logging: Option<FileLogging>,
    // Sections of SPEC §3 that later work implements. They are recognised so
    // that an operator gets "not supported yet" rather than "unknown key", and
    // they are never silently ignored.
    waf: Option<FileWaf>,
    ip_lists: Option<S<IgnoredAny>>,
    geoip: Option<FileGeo>,
    identity: Option<FileIdentity>,
    behavior: Option<FileBehavior>,
    audit: Option<FileAudit>,
    store: Option<FileStore>,
    instance_id: Option<S<String>>,
    redis: Option<S<IgnoredAny>>,
    notify: Option<FileNotify>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWaf {
    mode: Option<S<String>>,
    paranoia: Option<S<u8>>,
    inbound_threshold: Option<S<u32>>,
    outbound_threshold: Option<S<u32>>,
    rules: Option<Vec<S<String>>>,
    exclusions: Option<S<IgnoredAny>>,
    /// `hyperscan` (default when built with it) or `pure`.
    matcher: Option<S<String>>,
    /// Put the ids of the rules that blocked in the 403 body.
    expose_rule_ids: Option<bool>,
    /// Custom block page: status and body.
    block_status: Option<S<u16>>,
    block_body: Option<String>,
    /// Directory of compiled Hyperscan databases, or `off`.
    compile_cache: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    path: Option<S<String>>,
    engine: Option<S<String>>,
    sync: Option<S<String>>,
    on_store_error: Option<S<String>>,
    /// Records the writer's queue holds before producers see it full.
    queue: Option<S<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    policies: Option<Vec<FileAuditPolicy>>,
    retention_days: Option<S<u32>>,
    encryption_key: Option<S<String>>,
    mask_fields: Option<Vec<String>>,
    /// A chain checkpoint every this many records.
    checkpoint_every: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuditPolicy {
    #[serde(rename = "match")]
    matches: FileAuditMatch,
    category: S<String>,
    action: Option<String>,
    resource_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuditMatch {
    method: Option<S<OneOrMany>>,
    path: Option<S<String>>,
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBehavior {
    incidents: Option<FileIncidents>,
    auto_block: Option<FileAutoBlock>,
    // Detectors of later work: recognised, refused until built.
    rate_limits: Option<S<IgnoredAny>>,
    brute_force: Option<S<IgnoredAny>>,
    scanner: Option<S<IgnoredAny>>,
    sessions: Option<S<IgnoredAny>>,
    unusual_login: Option<S<IgnoredAny>>,
    exfiltration: Option<S<IgnoredAny>>,
    uploads: Option<S<IgnoredAny>>,
    csrf: Option<S<IgnoredAny>>,
    high_risk_score: Option<S<IgnoredAny>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIncidents {
    creation_threshold: Option<S<u32>>,
    window: Option<S<String>>,
    /// Escalate an open incident one severity level after this long.
    escalate_after: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGeo {
    database: S<String>,
    deny_countries: Option<Vec<S<String>>>,
    allow_countries: Option<Vec<S<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    user_header: Option<S<String>>,
    jwt: Option<FileJwt>,
    session_cookie: Option<S<IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwt {
    header: Option<S<String>>,
    verify: FileJwtVerify,
    user_claim: Option<String>,
    leeway: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwtVerify {
    hs256_secret: Option<S<String>>,
    rs256_public_key: Option<S<IgnoredAny>>,
    jwks_file: Option<S<IgnoredAny>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNotify {
    webhooks: Option<Vec<FileWebhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    url: S<String>,
    min_severity: Option<S<String>>,
    secret: Option<S<String>>,
    timeout: Option<S<String>>,
    max_attempts: Option<S<u32>>,
    backoff: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAutoBlock {
    /// Addresses never auto-blocked (fail2ban's `ignoreip`); default loopback.
    exempt: Option<Vec<S<String>>>,
    enabled: Option<bool>,
    threshold: Option<S<u32>>,
    window: Option<S<String>>,
    ttl: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    addr: S<String>,
    tls: Option<FileTls>,
    /// Accept HTTP/2 (ALPN `h2` on TLS, prior-knowledge h2c in clear). Default true.
    http2: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<S<String>>,
    key: Option<S<String>>,
    certificates: Option<Vec<FileCertPair>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCertPair {
    cert: S<String>,
    key: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    url: S<String>,
    connect_timeout: Option<S<String>>,
    timeout: Option<S<String>>,
    pool_idle: Option<S<String>>,
    pool_max_idle_per_host: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    host: Option<S<String>>,
    path_prefix: Option<S<String>>,
    upstream: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_header_bytes: Option<S<SizeValue>>,
    max_headers: Option<S<usize>>,
    max_uri_bytes: Option<S<SizeValue>>,
    max_body_bytes: Option<S<SizeValue>>,
    inspect_body_bytes: Option<S<SizeValue>>,
    over_inspect_limit: Option<OverInspectLimit>,
    body_buffer_bytes: Option<S<SizeValue>>,
    header_read_timeout: Option<S<String>>,
    body_read_timeout: Option<S<String>>,
    min_body_rate: Option<S<SizeValue>>,
    min_body_rate_grace: Option<S<String>>,
    keepalive_timeout: Option<S<String>>,
    max_connections: Option<S<usize>>,
    drain_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    listen: Option<S<String>>,
    tokens: Option<Vec<FileToken>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    token: S<String>,
    role: Option<Role>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLogging {
    dir: Option<S<String>>,
    level: Option<S<String>>,
    format: Option<LogFormat>,
    access_log: Option<bool>,
    max_file_bytes: Option<S<SizeValue>>,
    max_files: Option<usize>,
}

/// A size: a plain integer (bytes) or a string such as `16KiB`, `10MB`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Int(u64),
    Text(String),
}

// ---------------------------------------------------------------------------
// Validated shape (what the gateway runs on)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverInspectLimit {
    #[default]
    Block,
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    #[default]
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this config came from (for reload and messages).
    pub path: PathBuf,
    /// Worker threads, each with its own event loop, listening sockets
    /// (`SO_REUSEPORT`) and upstream pool — nginx's worker model.
    pub workers: usize,
    pub listeners: Vec<ListenerConfig>,
    pub upstream: UpstreamConfig,
    pub routes: Vec<RouteConfig>,
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    pub admin: AdminConfig,
    pub logging: LoggingConfig,
    /// `None` when the config has no `waf` section (no rules run).
    pub waf: Option<WafConfig>,
    pub store: StoreConfig,
    pub audit: AuditConfig,
    pub incidents: IncidentConfig,
    pub auto_block: AutoBlockConfig,
    /// `geoip`: countries of clients, allow/deny lists.
    pub geoip: Option<crate::geo::GeoConfig>,
    /// `identity`: who is behind a request (`None`: nobody is named).
    pub identity: Option<crate::identity::IdentityConfig>,
    /// `notify.webhooks`: incident notifications.
    pub webhooks: Vec<crate::notify::WebhookConfig>,
    /// Stamped on every record (fleets); the host name by default.
    pub instance_id: String,
}

/// `store`: where and how records are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Relative paths are relative to the working directory.
    pub path: PathBuf,
    pub engine: crate::store::Engine,
    pub sync: crate::store::writer::SyncMode,
    pub on_error: crate::store::writer::OnError,
    pub queue: usize,
}

/// `audit`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub policies: Vec<AuditPolicy>,
    pub retention_days: u32,
    pub encryption_key: Option<[u8; 32]>,
    pub mask_fields: Vec<String>,
    pub checkpoint_every: u64,
}

/// One `audit.policies` entry: proxied requests that match become audit records.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPolicy {
    /// Upper-case methods; empty = any.
    pub methods: Vec<String>,
    /// Path glob (`*` within a segment run, `**` anything); `None` = any.
    pub path: Option<String>,
    pub host: Option<String>,
    pub category: String,
    /// Default: `<METHOD> <path>` of the request.
    pub action: Option<String>,
    pub resource_type: Option<String>,
}

/// `behavior.incidents`.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentConfig {
    pub creation_threshold: u32,
    pub window: Duration,
    pub escalate_after: Duration,
}

/// `behavior.auto_block`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoBlockConfig {
    pub exempt: Vec<IpNet>,
    pub enabled: bool,
    pub threshold: u32,
    pub window: Duration,
    pub ttl: Duration,
}

/// `waf.mode`: `off` compiles nothing; `detect` logs what it would block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafMode {
    Block,
    Detect,
    Off,
}

#[derive(Debug, Clone)]
pub struct WafConfig {
    pub mode: WafMode,
    pub paranoia: u8,
    pub inbound_threshold: u32,
    pub outbound_threshold: u32,
    /// Pack file patterns (relative to the config file; `*` in the file name).
    pub rules: Vec<String>,
    /// The config file's own `exclusions` block, re-parsed as a pack fragment.
    pub exclusions_yaml: Option<String>,
    pub matcher: crate::rules::matcher::Backend,
    pub expose_rule_ids: bool,
    pub block_status: u16,
    pub block_body: Option<String>,
    /// Where compiled Hyperscan databases are kept between starts and
    /// reloads (`waf.compile_cache`, default `<store.path>/rules-cache`;
    /// relative to the working directory); `None`: `off`.
    pub compile_cache: Option<PathBuf>,
}

/// Default pack locations when `waf.rules` is not given.
pub const DEFAULT_RULES: &str = "rules/*.yaml";

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub http2: bool,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// (cert PEM path, key PEM path); the first pair is the default certificate.
    pub certificates: Vec<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// `http://host:port[/base]`
    Http {
        authority: http::uri::Authority,
        base_path: String,
    },
    /// The built-in echo server (demo and first start).
    BuiltinEcho,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub target: UpstreamTarget,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub pool_idle: Duration,
    pub pool_max_idle_per_host: usize,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Lower-case host without port; `None` matches every host.
    pub host: Option<String>,
    pub path_prefix: String,
    pub target: UpstreamTarget,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    pub inspect_body_bytes: usize,
    pub over_inspect_limit: OverInspectLimit,
    pub body_buffer_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub min_body_rate: u64,
    pub min_body_rate_grace: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            inspect_body_bytes: DEFAULT_INSPECT_BODY_BYTES,
            over_inspect_limit: OverInspectLimit::Block,
            body_buffer_bytes: DEFAULT_BODY_BUFFER_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            min_body_rate_grace: DEFAULT_MIN_BODY_RATE_GRACE,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

#[derive(Clone)]
pub struct AdminToken {
    pub token: String,
    pub role: Role,
}

impl fmt::Debug for AdminToken {
    // Never print a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AdminToken {{ token: <redacted>, role: {:?} }}",
            self.role
        )
    }
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub tokens: Vec<AdminToken>,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub dir: PathBuf,
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
    pub max_file_bytes: u64,
    pub max_files: usize,
}

// ---------------------------------------------------------------------------
// Loading

/// Reads, parses and validates `path`, returning every problem found.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read config: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Parses and validates config text; `path` is used for messages and for
/// resolving relative `file:` secrets and certificate paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut errs = Errs::new(path, text);
    let file = parse_sections(&mut errs, text);
    let cfg = validate(&mut errs, path, file);
    errs.finish(cfg)
}

pub(crate) fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.with_snippet = false;
    o
}

/// Deserializes each top-level section separately (see the module comment).
fn parse_sections(errs: &mut Errs<'_>, text: &str) -> FileConfig {
    // First pass: the set of top-level keys with their lines; this also
    // reports YAML syntax errors and duplicate keys.
    let keys: std::collections::HashMap<Spanned<String>, IgnoredAny> =
        match serde_saphyr::from_str_with_options::<
            Option<std::collections::HashMap<Spanned<String>, IgnoredAny>>,
        >(text, yaml_options())
        {
            Ok(Some(k)) => k,
            Ok(None) => return FileConfig::default(), // empty file: all defaults
            Err(e) => {
                errs.push_yaml(&e, 0);
                errs.failed_sections.push("*".into());
                return FileConfig::default();
            }
        };
    let mut starts: Vec<usize> = keys.keys().map(|k| k.referenced.line() as usize).collect();
    let name_at = |line: usize| {
        keys.keys()
            .find(|k| k.referenced.line() as usize == line)
            .map(|k| k.value.clone())
    };
    starts.sort_unstable();
    starts.dedup();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let block_style = starts.len() == keys.len()
        && starts.iter().all(|&l| {
            l >= 1
                && lines
                    .get(l - 1)
                    .is_some_and(|s| !s.starts_with([' ', '\t', '{', '-']))
        });
    if !block_style {
        // Flow-style or unusual root: fall back to one pass.
        return match serde_saphyr::from_str_with_options::<FileConfig>(text, yaml_options()) {
            Ok(f) => f,
            Err(e) => {
                errs.push_yaml(&e, 0);
                errs.failed_sections.push("*".into());
                FileConfig::default()
            }
        };
    }
    let mut merged = FileConfig::default();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(lines.len(), |&n| n - 1);
        let mut chunk = "\n".repeat(start - 1);
        for l in &lines[start - 1..end] {
            chunk.push_str(l);
        }
        match serde_saphyr::from_str_with_options::<FileConfig>(&chunk, yaml_options()) {
            Ok(part) => merge(&mut merged, part),
            Err(e) => {
                errs.push_yaml(&e, start);
                errs.failed_sections.extend(name_at(start));
            }
        }
    }
    merged
}

fn merge(into: &mut FileConfig, part: FileConfig) {
    macro_rules! take {
        ($($f:ident),*) => { $( if part.$f.is_some() { into.$f = part.$f; } )* };
    }
    take!(
        workers,
        listen,
        upstream,
        routes,
        trusted_proxies,
        limits,
        admin,
        logging,
        waf,
        ip_lists,
        geoip,
        identity,
        behavior,
        audit,
        store,
        instance_id,
        redis,
        notify
    );
}

/// Collects located errors for one YAML file (config and rule packs alike).
pub(crate) struct Errs<'a> {
    file: PathBuf,
    text: &'a str,
    list: Vec<ConfigError>,
    /// Sections already reported as unparseable: no "missing" errors for them.
    failed_sections: Vec<String>,
}

impl<'a> Errs<'a> {
    pub(crate) fn new(file: &Path, text: &'a str) -> Errs<'a> {
        Errs {
            file: file.to_path_buf(),
            text,
            list: Vec::new(),
            failed_sections: Vec::new(),
        }
    }

    /// `Ok(value)` when nothing was reported, else every error sorted by place.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(self.into_errors())
        }
    }

    /// The errors reported so far, sorted by place.
    pub(crate) fn into_errors(mut self) -> ConfigErrors {
        self.list.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(self.list)
    }

    /// How many errors have been reported.
    pub(crate) fn count(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn push(
        &mut self,
        line: usize,
        column: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(crate) fn at<T>(&mut self, s: &Spanned<T>, key: &str, message: impl Into<String>) {
        self.push(
            s.referenced.line() as usize,
            s.referenced.column() as usize,
            key,
            message,
        );
    }

    /// Records a serde-saphyr error, naming the key at its location.
    pub(crate) fn push_yaml(&mut self, e: &serde_saphyr::Error, fallback_line: usize) {
        let (line, col) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .filter(|(l, _)| *l > 0)
            .unwrap_or((fallback_line, 1));
        let mut msg = e.without_snippet().to_string();
        if let Some(i) = msg.rfind(" at line ") {
            msg.truncate(i);
        }
        let key = key_path_at(self.text, line, col);
        self.push(line, col, key, msg);
    }
}

/// The dotted key path of the YAML node at (line, column), read from the
/// indentation of block-style YAML. Best effort: used only to label errors.
pub fn key_path_at(text: &str, line: usize, column: usize) -> String {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if i + 1 > line {
            break;
        }
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed;
        while let Some(r) = rest.strip_prefix("- ") {
            indent += 2;
            rest = r.trim_start();
        }
        let Some(colon) = rest.find(':') else {
            continue;
        };
        let key = rest[..colon].trim().trim_matches(['"', '\'']);
        if key.is_empty() || key.contains(['{', '[', ' ']) {
            continue;
        }
        if i + 1 == line && column <= indent {
            break;
        }
        while stack.last().is_some_and(|(ind, _)| *ind >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
    }
    stack
        .into_iter()
        .map(|(_, k)| k)
        .collect::<Vec<_>>()
        .join(".")
}

fn validate(errs: &mut Errs<'_>, path: &Path, f: FileConfig) -> Config {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for (name, sec) in [("ip_lists", &f.ip_lists), ("redis", &f.redis)] {
        if let Some(s) = sec {
            // The location of an ignored mapping is its first entry; point at
            // the section key instead, which is the line before for blocks.
            let line = find_top_key_line(errs.text, name).unwrap_or(s.referenced.line() as usize);
            errs.push(
                line,
                1,
                name,
                format!(
                    "section `{name}` is not supported yet by this build of portcullis; remove it"
                ),
            );
        }
    }

    let mut listeners = Vec::new();
    match &f.listen {
        None => listeners.push(ListenerConfig {
            addr: DEFAULT_LISTEN.parse().expect("constant address parses"),
            tls: None,
            http2: true,
        }),
        Some(list) => {
            if list.value.is_empty() {
                errs.at(list, "listen", "at least one listener is required");
            }
            for l in &list.value {
                let addr = match l.addr.value.parse::<SocketAddr>() {
                    Ok(a) => a,
                    Err(_) => {
                        errs.at(
                            &l.addr,
                            "listen.addr",
                            format!("`{}` is not an IP:port address", l.addr.value),
                        );
                        continue;
                    }
                };
                let tls = l
                    .tls
                    .as_ref()
                    .and_then(|t| tls_config(errs, &base, t, &l.addr));
                listeners.push(ListenerConfig {
                    addr,
                    tls,
                    http2: l.http2.unwrap_or(true),
                });
            }
            let mut seen = std::collections::HashSet::new();
            for l in &listeners {
                if !seen.insert(l.addr) {
                    errs.at(
                        list,
                        "listen",
                        format!("address {} is listed twice", l.addr),
                    );
                }
            }
        }
    }

    let upstream = match &f.upstream {
        None => {
            if !errs
                .failed_sections
                .iter()
                .any(|s| s == "upstream" || s == "*")
            {
                errs.push(1, 1, "upstream", "`upstream` is required (e.g. `upstream: {url: \"http://127.0.0.1:3000\"}` or `builtin:echo`)");
            }
            UpstreamConfig {
                target: UpstreamTarget::BuiltinEcho,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                timeout: DEFAULT_UPSTREAM_TIMEOUT,
                pool_idle: DEFAULT_POOL_IDLE,
                pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            }
        }
        Some(u) => UpstreamConfig {
            target: upstream_target(errs, &u.url, "upstream.url"),
            connect_timeout: duration(
                errs,
                &u.connect_timeout,
                "upstream.connect_timeout",
                DEFAULT_CONNECT_TIMEOUT,
            ),
            timeout: duration(
                errs,
                &u.timeout,
                "upstream.timeout",
                DEFAULT_UPSTREAM_TIMEOUT,
            ),
            pool_idle: duration(errs, &u.pool_idle, "upstream.pool_idle", DEFAULT_POOL_IDLE),
            pool_max_idle_per_host: u
                .pool_max_idle_per_host
                .unwrap_or(DEFAULT_POOL_MAX_IDLE_PER_HOST),
        },
    };

    let mut routes = Vec::new();
    for r in f.routes.iter().flatten() {
        let target = upstream_target(errs, &r.upstream, "routes.upstream");
        let path_prefix = match &r.path_prefix {
            Some(p) if !p.value.starts_with('/') => {
                errs.at(p, "routes.path_prefix", "must start with `/`");
                continue;
            }
            Some(p) => p.value.clone(),
            None => "/".to_string(),
        };
        let host = r.host.as_ref().map(|h| h.value.to_ascii_lowercase());
        routes.push(RouteConfig {
            host,
            path_prefix,
            target,
        });
    }
    // Most specific first: host routes before host-less, longer prefixes first.
    routes.sort_by(|a, b| {
        b.host
            .is_some()
            .cmp(&a.host.is_some())
            .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
    });

    let mut trusted_proxies = Vec::new();
    for p in f.trusted_proxies.iter().flatten() {
        match parse_net(&p.value) {
            Some(n) => trusted_proxies.push(n),
            None => errs.at(
                p,
                "trusted_proxies",
                format!("`{}` is not an IP address or CIDR", p.value),
            ),
        }
    }

    let limits = limits(errs, f.limits.unwrap_or_default());

    let admin = {
        let (listen_s, tokens) = match &f.admin {
            Some(a) => (a.listen.as_ref(), a.tokens.as_deref().unwrap_or(&[])),
            None => (None, &[][..]),
        };
        let listen = match listen_s {
            Some(s) => match s.value.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    errs.at(
                        s,
                        "admin.listen",
                        format!("`{}` is not an IP:port address", s.value),
                    );
                    DEFAULT_ADMIN_LISTEN
                        .parse()
                        .expect("constant address parses")
                }
            },
            None => DEFAULT_ADMIN_LISTEN
                .parse()
                .expect("constant address parses"),
        };
        let mut out = Vec::new();
        for t in tokens {
            match resolve_secret(&base, &t.token.value) {
                Ok(tok) if tok.len() < 16 => errs.at(
                    &t.token,
                    "admin.tokens.token",
                    "token must be at least 16 characters",
                ),
                Ok(tok) => out.push(AdminToken {
                    token: tok,
                    role: t.role.unwrap_or_default(),
                }),
                Err(m) => errs.at(&t.token, "admin.tokens.token", m),
            }
        }
        AdminConfig {
            listen,
            tokens: out,
        }
    };

    let logging = {
        let l = f.logging.as_ref();
        let dir = match l.and_then(|l| l.dir.as_ref()) {
            Some(d) => PathBuf::from(&d.value),
            None => std::env::var_os("SECURITY_LOG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR)),
        };
        let level = match l.and_then(|l| l.level.as_ref()) {
            Some(s) => {
                let v = s.value.to_ascii_lowercase();
                if !["error", "warn", "info", "debug", "trace"].contains(&v.as_str()) {
                    errs.at(
                        s,
                        "logging.level",
                        "must be one of error, warn, info, debug, trace",
                    );
                }
                v
            }
            None => "info".to_string(),
        };
        LoggingConfig {
            dir,
            level,
            format: l.and_then(|l| l.format).unwrap_or_default(),
            access_log: l.and_then(|l| l.access_log).unwrap_or(true),
            max_file_bytes: l
                .and_then(|l| l.max_file_bytes.as_ref())
                .map_or(DEFAULT_LOG_MAX_FILE_BYTES, |s| {
                    size(errs, s, "logging.max_file_bytes")
                }),
            max_files: l
                .and_then(|l| l.max_files)
                .unwrap_or(DEFAULT_LOG_MAX_FILES)
                .max(1),
        }
    };

    let workers = match &f.workers {
        None => default_workers(),
        Some(w) => match &w.value {
            SizeValue::Text(t) if t == "auto" => default_workers(),
            SizeValue::Int(n) if (1..=MAX_WORKERS as u64).contains(n) => *n as usize,
            _ => {
                errs.at(
                    w,
                    "workers",
                    format!("must be `auto` or a number from 1 to {MAX_WORKERS}"),
                );
                1
            }
        },
    };

    let mut waf = f.waf.as_ref().map(|w| waf_config(errs, w));
    let store = store_config(errs, f.store.as_ref());
    if let (Some(waf), Some(w)) = (&mut waf, &f.waf) {
        waf.compile_cache = match w.compile_cache.as_ref().map(|c| c.value.trim()) {
            None => Some(store.path.join("rules-cache")),
            Some("off") => None,
            Some("") => {
                if let Some(c) = &w.compile_cache {
                    errs.at(c, "waf.compile_cache", "must be a directory or `off`");
                }
                None
            }
            Some(dir) => Some(PathBuf::from(dir)),
        };
    }
    let audit = audit_config(errs, &base, f.audit.as_ref());
    let (incidents, auto_block) = behavior_config(errs, f.behavior.as_ref());
    let webhooks = notify_config(errs, &base, f.notify.as_ref());
    let identity = f.identity.as_ref().map(|i| identity_config(errs, &base, i));
    let geoip = f.geoip.as_ref().map(|g| geo_config(errs, &base, g));
    let instance_id = match &f.instance_id {
        Some(s) if s.value.trim().is_empty() || s.value.len() > 64 => {
            errs.at(s, "instance_id", "must be 1 to 64 characters");
            s.value.clone()
        }
        Some(s) => s.value.clone(),
        None => default_instance_id(),
    };

    Config {
        store,
        audit,
        incidents,
        auto_block,
        webhooks,
        identity,
        geoip,
        instance_id,
        path: path.to_path_buf(),
        waf,
        workers,
        listeners,
        upstream,
        routes,
        trusted_proxies,
        limits,
        admin,
        logging,
    }
}

/// The host name (`/proc/sys/kernel/hostname`, `HOSTNAME`), or `portcullis`.
fn default_instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portcullis".into())
}

fn one_of<T: Copy>(
    errs: &mut Errs<'_>,
    v: &Option<S<String>>,
    key: &str,
    choices: &[(&str, T)],
    def: T,
) -> T {
    let Some(s) = v else { return def };
    match choices.iter().find(|(n, _)| *n == s.value) {
        Some((_, t)) => *t,
        None => {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            errs.at(s, key, format!("must be one of {}", names.join(", ")));
            def
        }
    }
}

fn store_config(errs: &mut Errs<'_>, f: Option<&FileStore>) -> StoreConfig {
    use crate::store::Engine;
    use crate::store::writer::{OnError, SyncMode};
    let d = FileStore::default();
    let f = f.unwrap_or(&d);
    let path = f
        .path
        .as_ref()
        .map_or_else(|| PathBuf::from("data"), |p| PathBuf::from(&p.value));
    let queue = match &f.queue {
        Some(q) if q.value == 0 || q.value > 10_000_000 => {
            errs.at(q, "store.queue", "must be 1 to 10000000");
            65_536
        }
        Some(q) => q.value,
        None => 65_536,
    };
    StoreConfig {
        // Like `logging.dir`: relative to the working directory (systemd's
        // WorkingDirectory=/var/lib/portcullis gives /var/lib/portcullis/data).
        path,
        engine: one_of(
            errs,
            &f.engine,
            "store.engine",
            &[("sled", Engine::Sled), ("redb", Engine::Redb)],
            Engine::Sled,
        ),
        sync: one_of(
            errs,
            &f.sync,
            "store.sync",
            &[("batched", SyncMode::Batched), ("strict", SyncMode::Strict)],
            SyncMode::Batched,
        ),
        on_error: one_of(
            errs,
            &f.on_store_error,
            "store.on_store_error",
            &[
                ("fail_open", OnError::FailOpen),
                ("fail_closed", OnError::FailClosed),
            ],
            OnError::FailOpen,
        ),
        queue,
    }
}

fn audit_config(errs: &mut Errs<'_>, base: &Path, f: Option<&FileAudit>) -> AuditConfig {
    let d = FileAudit::default();
    let f = f.unwrap_or(&d);
    let mut policies = Vec::new();
    for p in f.policies.iter().flatten() {
        if !crate::store::model::AUDIT_CATEGORIES.contains(&p.category.value.as_str()) {
            errs.at(
                &p.category,
                "audit.policies.category",
                format!(
                    "must be one of {}",
                    crate::store::model::AUDIT_CATEGORIES.join(", ")
                ),
            );
        }
        let methods = match p.matches.method.as_ref().map(|m| &m.value) {
            None => Vec::new(),
            Some(OneOrMany::One(m)) => vec![m.to_ascii_uppercase()],
            Some(OneOrMany::Many(v)) => v.iter().map(|m| m.to_ascii_uppercase()).collect(),
        };
        if let Some(m) = &p.matches.method
            && methods
                .iter()
                .any(|x| x.is_empty() || !x.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            errs.at(
                m,
                "audit.policies.match.method",
                "must be HTTP method names",
            );
        }
        if let Some(path) = &p.matches.path
            && !path.value.starts_with('/')
        {
            errs.at(path, "audit.policies.match.path", "must start with `/`");
        }
        policies.push(AuditPolicy {
            methods,
            path: p.matches.path.as_ref().map(|p| p.value.clone()),
            host: p.matches.host.as_ref().map(|h| h.to_ascii_lowercase()),
            category: p.category.value.clone(),
            action: p.action.clone(),
            resource_type: p.resource_type.clone(),
        });
    }
    let encryption_key = f.encryption_key.as_ref().and_then(|k| {
        match resolve_secret(base, &k.value).and_then(|m| crate::store::crypto::master_key_from(&m))
        {
            Ok(key) => Some(key),
            Err(m) => {
                errs.at(k, "audit.encryption_key", m);
                None
            }
        }
    });
    let retention_days = match &f.retention_days {
        Some(r) if r.value == 0 => {
            errs.at(r, "audit.retention_days", "must be at least 1");
            2555
        }
        Some(r) => r.value,
        None => 2555,
    };
    let checkpoint_every = match &f.checkpoint_every {
        Some(c) if c.value == 0 => {
            errs.at(c, "audit.checkpoint_every", "must be at least 1");
            1000
        }
        Some(c) => c.value,
        None => 1000,
    };
    AuditConfig {
        policies,
        retention_days,
        encryption_key,
        mask_fields: f.mask_fields.clone().unwrap_or_default(),
        checkpoint_every,
    }
}

fn geo_config(errs: &mut Errs<'_>, base: &Path, f: &FileGeo) -> crate::geo::GeoConfig {
    let database = base.join(&f.database.value);
    if let Err(m) = crate::geo::open_reader(&database) {
        errs.at(&f.database, "geoip.database", m);
    }
    let mut list = |v: &Option<Vec<S<String>>>, key: &str| -> Vec<String> {
        v.iter()
            .flatten()
            .filter_map(|c| {
                let code = c.value.trim().to_ascii_uppercase();
                if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
                    Some(code)
                } else {
                    errs.at(c, key, "a country is an ISO 3166-1 alpha-2 code such as FR");
                    None
                }
            })
            .collect()
    };
    let deny_countries = list(&f.deny_countries, "geoip.deny_countries");
    let allow_countries = list(&f.allow_countries, "geoip.allow_countries");
    crate::geo::GeoConfig {
        database,
        deny_countries,
        allow_countries,
    }
}

fn identity_config(
    errs: &mut Errs<'_>,
    base: &Path,
    f: &FileIdentity,
) -> crate::identity::IdentityConfig {
    let later = "is not supported yet by this build of portcullis; remove it";
    if let Some(s) = &f.session_cookie {
        errs.at(
            s,
            "identity.session_cookie",
            format!("`identity.session_cookie` {later}"),
        );
    }
    let user_header = f.user_header.as_ref().and_then(|h| {
        match http::HeaderName::from_bytes(h.value.as_bytes()) {
            Ok(n) => Some(n.as_str().to_string()),
            Err(_) => {
                errs.at(h, "identity.user_header", "not a header name");
                None
            }
        }
    });
    let jwt = f.jwt.as_ref().and_then(|j| {
        for (k, v) in [
            ("rs256_public_key", &j.verify.rs256_public_key),
            ("jwks_file", &j.verify.jwks_file),
        ] {
            if let Some(v) = v {
                errs.at(
                    v,
                    &format!("identity.jwt.verify.{k}"),
                    format!("`{k}` {later} (use hs256_secret)"),
                );
            }
        }
        let Some(secret) = &j.verify.hs256_secret else {
            return None;
        };
        let secret = match resolve_secret(base, &secret.value) {
            Ok(v) if v.trim_end().len() >= 32 => v.trim_end().as_bytes().to_vec(),
            Ok(_) => {
                errs.at(
                    secret,
                    "identity.jwt.verify.hs256_secret",
                    "must be at least 32 bytes (RFC 7518 §3.2)",
                );
                return None;
            }
            Err(m) => {
                errs.at(secret, "identity.jwt.verify.hs256_secret", m);
                return None;
            }
        };
        let header = match &j.header {
            Some(h) => match http::HeaderName::from_bytes(h.value.as_bytes()) {
                Ok(n) => n.as_str().to_string(),
                Err(_) => {
                    errs.at(h, "identity.jwt.header", "not a header name");
                    return None;
                }
            },
            None => "authorization".into(),
        };
        Some(crate::identity::JwtConfig {
            header,
            hs256_secret: secret,
            user_claim: j.user_claim.clone().unwrap_or_else(|| "sub".into()),
            leeway_s: duration(
                errs,
                &j.leeway,
                "identity.jwt.leeway",
                Duration::from_secs(30),
            )
            .as_secs(),
        })
    });
    crate::identity::IdentityConfig { user_header, jwt }
}

fn notify_config(
    errs: &mut Errs<'_>,
    base: &Path,
    f: Option<&FileNotify>,
) -> Vec<crate::notify::WebhookConfig> {
    let mut out = Vec::new();
    for h in f.and_then(|n| n.webhooks.as_ref()).into_iter().flatten() {
        let mut w = crate::notify::WebhookConfig::new(h.url.value.clone());
        if let Some(m) = &h.min_severity {
            match crate::severity::Severity::parse(&m.value) {
                Some(s) => w.min_severity = s,
                None => errs.at(
                    m,
                    "notify.webhooks.min_severity",
                    "must be low, medium, high or critical",
                ),
            }
        }
        if let Some(s) = &h.secret {
            match resolve_secret(base, &s.value) {
                Ok(v) => w.secret = Some(v.trim_end_matches(['\r', '\n']).to_string()),
                Err(m) => errs.at(s, "notify.webhooks.secret", m),
            }
        }
        w.timeout = duration(errs, &h.timeout, "notify.webhooks.timeout", w.timeout);
        w.backoff = duration(errs, &h.backoff, "notify.webhooks.backoff", w.backoff);
        if let Some(m) = &h.max_attempts {
            w.max_attempts = m.value;
        }
        match w.validate() {
            Ok(()) => out.push(w),
            Err(m) => errs.at(&h.url, "notify.webhooks", m),
        }
    }
    out
}

fn behavior_config(
    errs: &mut Errs<'_>,
    f: Option<&FileBehavior>,
) -> (IncidentConfig, AutoBlockConfig) {
    let d = FileBehavior::default();
    let f = f.unwrap_or(&d);
    for (name, sec) in [
        ("rate_limits", &f.rate_limits),
        ("brute_force", &f.brute_force),
        ("scanner", &f.scanner),
        ("sessions", &f.sessions),
        ("unusual_login", &f.unusual_login),
        ("exfiltration", &f.exfiltration),
        ("uploads", &f.uploads),
        ("csrf", &f.csrf),
        ("high_risk_score", &f.high_risk_score),
    ] {
        if let Some(s) = sec {
            errs.at(
                s,
                &format!("behavior.{name}"),
                format!(
                    "`behavior.{name}` is not supported yet by this build of portcullis; remove it"
                ),
            );
        }
    }
    let di = FileIncidents::default();
    let i = f.incidents.as_ref().unwrap_or(&di);
    let creation_threshold = match &i.creation_threshold {
        Some(t) if t.value == 0 => {
            errs.at(
                t,
                "behavior.incidents.creation_threshold",
                "must be at least 1",
            );
            3
        }
        Some(t) => t.value,
        None => 3,
    };
    let incidents = IncidentConfig {
        creation_threshold,
        window: duration(
            errs,
            &i.window,
            "behavior.incidents.window",
            Duration::from_secs(900),
        ),
        escalate_after: duration(
            errs,
            &i.escalate_after,
            "behavior.incidents.escalate_after",
            Duration::from_secs(3600),
        ),
    };
    let da = FileAutoBlock::default();
    let a = f.auto_block.as_ref().unwrap_or(&da);
    let threshold = match &a.threshold {
        Some(t) if t.value == 0 => {
            errs.at(t, "behavior.auto_block.threshold", "must be at least 1");
            5
        }
        Some(t) => t.value,
        None => 5,
    };
    let exempt = match &a.exempt {
        None => vec![
            parse_net("127.0.0.0/8").unwrap_or_default(),
            parse_net("::1/128").unwrap_or_default(),
        ],
        Some(list) => list
            .iter()
            .filter_map(|s| {
                let n = parse_net(&s.value);
                if n.is_none() {
                    errs.at(s, "behavior.auto_block.exempt", "not an IP address or CIDR");
                }
                n
            })
            .collect(),
    };
    let auto_block = AutoBlockConfig {
        exempt,
        enabled: a.enabled.unwrap_or(true),
        threshold,
        window: duration(
            errs,
            &a.window,
            "behavior.auto_block.window",
            Duration::from_secs(600),
        ),
        ttl: duration(
            errs,
            &a.ttl,
            "behavior.auto_block.ttl",
            Duration::from_secs(3600),
        ),
    };
    (incidents, auto_block)
}

fn waf_config(errs: &mut Errs<'_>, w: &FileWaf) -> WafConfig {
    let mode = match w.mode.as_ref().map(|m| m.value.as_str()) {
        None | Some("block") => WafMode::Block,
        Some("detect") => WafMode::Detect,
        Some("off") => WafMode::Off,
        Some(_) => {
            if let Some(m) = &w.mode {
                errs.at(m, "waf.mode", "must be block, detect or off");
            }
            WafMode::Block
        }
    };
    let paranoia = w.paranoia.as_ref().map_or(1, |p| p.value);
    if let Some(p) = &w.paranoia
        && !(1..=4).contains(&p.value)
    {
        errs.at(p, "waf.paranoia", "must be 1 to 4");
    }
    let matcher = match w.matcher.as_ref().map(|m| m.value.as_str()) {
        None => crate::rules::matcher::Backend::default(),
        Some("pure") => crate::rules::matcher::Backend::Pure,
        #[cfg(feature = "hyperscan")]
        Some("hyperscan") => crate::rules::matcher::Backend::Hyperscan,
        Some(other) => {
            if let Some(m) = &w.matcher {
                errs.at(
                    m,
                    "waf.matcher",
                    format!("`{other}` is not available in this build (hyperscan, pure)"),
                );
            }
            crate::rules::matcher::Backend::default()
        }
    };
    let block_status = w.block_status.as_ref().map_or(403, |s| s.value);
    if let Some(s) = &w.block_status
        && !(400..=599).contains(&s.value)
    {
        errs.at(s, "waf.block_status", "must be a 4xx or 5xx status");
    }
    let exclusions_yaml = w.exclusions.as_ref().map(|x| {
        // Re-read the block from the file text: the engine parses it as the
        // `exclusions` of a pack, with line numbers kept by padding.
        let start = x.referenced.line() as usize;
        let lines: Vec<&str> = errs.text.lines().collect();
        let key_line = (1..=start)
            .rev()
            .find(|&l| {
                lines
                    .get(l - 1)
                    .is_some_and(|s| s.trim_start().starts_with("exclusions:"))
            })
            .unwrap_or(start);
        let indent = lines
            .get(key_line - 1)
            .map_or(0, |s| s.len() - s.trim_start().len());
        let mut out = "\n".repeat(key_line.saturating_sub(2));
        out.push_str("pack: config\n");
        for (i, l) in lines.iter().enumerate().skip(key_line - 1) {
            let ind = l.len() - l.trim_start().len();
            if i >= key_line && !l.trim().is_empty() && ind <= indent {
                break;
            }
            out.push_str(l.get(indent.min(ind)..).unwrap_or(""));
            out.push('\n');
        }
        out
    });
    WafConfig {
        mode,
        paranoia,
        inbound_threshold: w.inbound_threshold.as_ref().map_or(5, |t| t.value),
        outbound_threshold: w.outbound_threshold.as_ref().map_or(4, |t| t.value),
        rules: w
            .rules
            .as_ref()
            .map(|r| r.iter().map(|s| s.value.clone()).collect())
            .unwrap_or_else(|| vec![DEFAULT_RULES.to_string()]),
        exclusions_yaml,
        matcher,
        expose_rule_ids: w.expose_rule_ids.unwrap_or(false),
        block_status,
        block_body: w.block_body.clone(),
        // Filled in by `build` once `store.path` is known.
        compile_cache: None,
    }
}

fn find_top_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

fn limits(errs: &mut Errs<'_>, l: FileLimits) -> Limits {
    let d = Limits::default();
    let sz = |errs: &mut Errs<'_>, v: &Option<S<SizeValue>>, key: &str, def: u64| {
        v.as_ref().map_or(def, |s| size(errs, s, key))
    };
    let max_header_bytes = sz(
        errs,
        &l.max_header_bytes,
        "limits.max_header_bytes",
        d.max_header_bytes as u64,
    ) as usize;
    if max_header_bytes < MIN_HEADER_BYTES
        && let Some(s) = &l.max_header_bytes
    {
        errs.at(s, "limits.max_header_bytes", "must be at least 8KiB");
    }
    let out = Limits {
        max_header_bytes: max_header_bytes.max(MIN_HEADER_BYTES),
        max_headers: l.max_headers.as_ref().map_or(d.max_headers, |s| s.value),
        max_uri_bytes: sz(
            errs,
            &l.max_uri_bytes,
            "limits.max_uri_bytes",
            d.max_uri_bytes as u64,
        ) as usize,
        max_body_bytes: sz(
            errs,
            &l.max_body_bytes,
            "limits.max_body_bytes",
            d.max_body_bytes,
        ),
        inspect_body_bytes: sz(
            errs,
            &l.inspect_body_bytes,
            "limits.inspect_body_bytes",
            d.inspect_body_bytes as u64,
        ) as usize,
        over_inspect_limit: l.over_inspect_limit.unwrap_or_default(),
        body_buffer_bytes: sz(
            errs,
            &l.body_buffer_bytes,
            "limits.body_buffer_bytes",
            d.body_buffer_bytes as u64,
        ) as usize,
        header_read_timeout: duration(
            errs,
            &l.header_read_timeout,
            "limits.header_read_timeout",
            d.header_read_timeout,
        ),
        body_read_timeout: duration(
            errs,
            &l.body_read_timeout,
            "limits.body_read_timeout",
            d.body_read_timeout,
        ),
        min_body_rate: sz(
            errs,
            &l.min_body_rate,
            "limits.min_body_rate",
            d.min_body_rate,
        ),
        min_body_rate_grace: duration(
            errs,
            &l.min_body_rate_grace,
            "limits.min_body_rate_grace",
            d.min_body_rate_grace,
        ),
        keepalive_timeout: duration(
            errs,
            &l.keepalive_timeout,
            "limits.keepalive_timeout",
            d.keepalive_timeout,
        ),
        max_connections: l
            .max_connections
            .as_ref()
            .map_or(d.max_connections, |s| s.value),
        drain_timeout: duration(
            errs,
            &l.drain_timeout,
            "limits.drain_timeout",
            d.drain_timeout,
        ),
    };
    if let Some(s) = &l.max_headers
        && (s.value == 0 || s.value > MAX_HEADERS_LIMIT)
    {
        errs.at(
            s,
            "limits.max_headers",
            format!("must be between 1 and {MAX_HEADERS_LIMIT}"),
        );
    }
    if let Some(s) = &l.max_connections
        && s.value == 0
    {
        errs.at(s, "limits.max_connections", "must be at least 1");
    }
    if out.max_uri_bytes < 256
        && let Some(s) = &l.max_uri_bytes
    {
        errs.at(s, "limits.max_uri_bytes", "must be at least 256 bytes");
    }
    out
}

fn tls_config(errs: &mut Errs<'_>, base: &Path, t: &FileTls, at: &S<String>) -> Option<TlsConfig> {
    let mut certificates = Vec::new();
    match (&t.cert, &t.key) {
        (Some(c), Some(k)) => certificates.push((base.join(&c.value), base.join(&k.value))),
        (None, None) => {}
        (Some(c), None) => errs.at(c, "listen.tls.key", "`cert` needs a `key`"),
        (None, Some(k)) => errs.at(k, "listen.tls.cert", "`key` needs a `cert`"),
    }
    for p in t.certificates.iter().flatten() {
        certificates.push((base.join(&p.cert.value), base.join(&p.key.value)));
    }
    if certificates.is_empty() {
        errs.at(
            at,
            "listen.tls",
            "TLS needs `cert` and `key` or a `certificates` list",
        );
        return None;
    }
    for (c, k) in &certificates {
        for p in [c, k] {
            if !p.is_file() {
                errs.at(at, "listen.tls", format!("cannot read {}", p.display()));
            }
        }
    }
    Some(TlsConfig { certificates })
}

fn upstream_target(errs: &mut Errs<'_>, s: &S<String>, key: &str) -> UpstreamTarget {
    if s.value == BUILTIN_ECHO {
        return UpstreamTarget::BuiltinEcho;
    }
    match parse_http_url(&s.value) {
        Ok(t) => t,
        Err(m) => {
            errs.at(s, key, m);
            UpstreamTarget::BuiltinEcho
        }
    }
}

/// Parses `http://host:port[/base]` into an upstream target.
pub fn parse_http_url(s: &str) -> Result<UpstreamTarget, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(
            "https upstreams are not supported yet; use http:// (TLS is terminated at the gateway)"
                .into(),
        ),
        _ => {
            return Err(format!(
                "`{s}` must start with http:// (or be `{BUILTIN_ECHO}`)"
            ));
        }
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if uri.query().is_some() {
        return Err(format!("`{s}` must not carry a query string"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(UpstreamTarget::Http {
        authority,
        base_path,
    })
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn duration(errs: &mut Errs<'_>, v: &Option<S<String>>, key: &str, def: Duration) -> Duration {
    match v {
        None => def,
        Some(s) => match parse_duration(&s.value) {
            Some(d) => d,
            None => {
                errs.at(
                    s,
                    key,
                    format!("`{}` is not a duration (e.g. 500ms, 10s, 5m, 1h)", s.value),
                );
                def
            }
        },
    }
}

fn size(errs: &mut Errs<'_>, s: &S<SizeValue>, key: &str) -> u64 {
    match &s.value {
        SizeValue::Int(n) => *n,
        SizeValue::Text(t) => parse_size(t).unwrap_or_else(|| {
            errs.at(
                s,
                key,
                format!("`{t}` is not a size (e.g. 4096, 16KiB, 10MiB)"),
            );
            0
        }),
    }
}

/// `500ms`, `10s`, `5m`, `1h`, `1d`; a bare number means seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// `4096`, `16KiB`, `16KB`, `10MiB`, `1GiB` (KB/MB mean 1000-multiples).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "k" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Resolves `env:NAME`, `file:PATH` (relative to the config file) or a literal.
pub fn resolve_secret(base: &Path, v: &str) -> Result<String, String> {
    if let Some(name) = v.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))
    } else if let Some(p) = v.strip_prefix("file:") {
        let path = base.join(p);
        std::fs::read_to_string(&path)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))
    } else {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<ConfigError> {
        parse(Path::new("t.yaml"), text)
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    }

    #[test]
    fn store_audit_identity_and_behavior_keys_are_checked() {
        let text = "upstream: {url: \"http://a:1\"}\nstore:\n  engine: rocks\n  sync: sometimes\naudit:\n  policies:\n    - match: {method: DELETE, path: admin}\n      category: admin\n  encryption_key: short\nbehavior:\n  incidents: {creation_threshold: 0}\n  auto_block: {exempt: [nope]}\n  rate_limits: []\nidentity:\n  jwt: {verify: {hs256_secret: tiny, jwks_file: x}}\nnotify:\n  webhooks:\n    - {url: \"https://h/x\", min_severity: huge}\n";
        let e = errs(text);
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "store.engine",
            "store.sync",
            "audit.policies.match.path",
            "audit.policies.category",
            "audit.encryption_key",
            "behavior.incidents.creation_threshold",
            "behavior.auto_block.exempt",
            "behavior.rate_limits",
            "identity.jwt.verify.jwks_file",
            "identity.jwt.verify.hs256_secret",
            "notify.webhooks.min_severity",
            "notify.webhooks",
        ] {
            assert!(keys.contains(&k), "{k} not reported: {e:?}");
        }
        assert!(e.iter().all(|e| e.line > 1), "{e:?}");
        let ok = parse(
            Path::new("/etc/p/t.yaml"),
            "upstream: {url: \"http://a:1\"}\nstore: {path: d, engine: redb, sync: strict, on_store_error: fail_closed}\n",
        )
        .unwrap();
        assert_eq!(
            ok.store.path,
            Path::new("d"),
            "relative to the working directory"
        );
        assert_eq!(ok.store.engine, crate::store::Engine::Redb);
        assert_eq!(ok.auto_block.exempt.len(), 2, "loopback exempt by default");
    }

    #[test]
    fn compile_cache_defaults_to_the_store_and_can_be_moved_or_turned_off() {
        let load = |waf: &str| {
            parse(
                Path::new("/etc/p/t.yaml"),
                &format!("upstream: {{url: \"http://a:1\"}}\nstore: {{path: st}}\nwaf: {waf}\n"),
            )
        };
        let cache = |waf: &str| load(waf).unwrap().waf.unwrap().compile_cache;
        assert_eq!(cache("{}"), Some(PathBuf::from("st/rules-cache")));
        assert_eq!(cache("{compile_cache: off}"), None);
        assert_eq!(
            cache("{compile_cache: /var/cache/portcullis}"),
            Some(PathBuf::from("/var/cache/portcullis"))
        );
        let e = load("{compile_cache: \"\"}").unwrap_err().0;
        assert!(
            e.iter()
                .any(|e| e.key == "waf.compile_cache" && e.line == 3),
            "{e:?}"
        );
    }

    #[test]
    fn minimal_config_validates() {
        let c = parse(
            Path::new("t.yaml"),
            "upstream: {url: \"http://127.0.0.1:3000\"}\n",
        )
        .unwrap();
        assert_eq!(c.listeners[0].addr.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.admin.listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert!(matches!(c.upstream.target, UpstreamTarget::Http { .. }));
    }

    #[test]
    fn every_section_error_is_reported_with_line_and_key() {
        let text = "listen:\n  - addr: \"0.0.0.0:8080\"\nupstream:\n  url: http://a:1\n  tmeout: 5s\nlimits:\n  header_read_timeout: soon\nadmin:\n  listen: nope\n";
        let e = errs(text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!((e[0].line, e[0].column), (5, 3));
        assert!(e[0].message.contains("unknown field `tmeout`"), "{}", e[0]);
        assert_eq!(e[1].line, 7);
        assert_eq!(e[1].key, "limits.header_read_timeout");
        assert_eq!(e[2].line, 9);
        assert_eq!(e[2].key, "admin.listen");
        assert!(e[0].to_string().starts_with("t.yaml:5:3: "));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = errs("upstream:\n  url: http://a:1\nlimits:\n  max_headers: lots\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 4);
        assert_eq!(e[0].key, "limits.max_headers");
    }

    #[test]
    fn unsupported_sections_are_rejected_not_ignored() {
        let e = errs("upstream: {url: \"http://a:1\"}\nredis:\n  url: x\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 2);
        assert!(e[0].message.contains("not supported yet"));
    }

    #[test]
    fn secrets_from_env_and_file() {
        let path = std::env::var("PATH").unwrap();
        assert_eq!(resolve_secret(Path::new("."), "env:PATH").unwrap(), path);
        assert!(resolve_secret(Path::new("."), "env:PORTCULLIS_NOPE_NOT_SET").is_err());
        assert!(resolve_secret(Path::new("."), "file:/nonexistent/x").is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("16KiB"), Some(16384));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5 parsecs"), None);
    }

    #[test]
    fn key_path_follows_indentation() {
        let t = "a:\n  b:\n    - c: 1\n      d: 2\n  e: 3\n";
        assert_eq!(key_path_at(t, 4, 7), "a.b.d");
        assert_eq!(key_path_at(t, 5, 3), "a.e");
    }
}
