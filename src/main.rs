//! The `portcullis` command line: run, check, rules, audit, demo-upstream.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Reverse-proxy security gateway (WAF)"
)]
struct Cli {
    /// Diagnostic log format (stderr). Access lines are always JSON.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// More diagnostics (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Fewer diagnostics (errors only).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Compile every pack in DIR (all paranoia levels) and run each rule's
    /// inline `tests:` on every matcher backend; print a table; exit 0 or 1.
    Test {
        #[arg(default_value = "rules")]
        dir: PathBuf,
    },
    /// Replay go-ftw test files (e.g. a CRS regression suite) through a
    /// gateway started in-process with this configuration's rules and limits;
    /// print attack/benign stages answered 403, per family.
    Ftw {
        dir: PathBuf,
        #[arg(
            short,
            long,
            env = "PORTCULLIS_CONFIG",
            default_value = "config/portcullis.yaml"
        )]
        config: PathBuf,
        /// List every stage whose outcome is wrong (attack passed, benign blocked).
        #[arg(long)]
        failures: bool,
    },
    /// Show every rule that matches a request: target, transforms, excerpt,
    /// score, and the verdict, with the rule set of the configuration.
    Explain {
        #[arg(
            short,
            long,
            env = "PORTCULLIS_CONFIG",
            default_value = "config/portcullis.yaml"
        )]
        config: PathBuf,
        /// A raw HTTP/1.1 request in a file (request line, headers, body).
        #[arg(long, conflicts_with_all = ["url", "method", "header", "body"])]
        request: Option<PathBuf>,
        /// Target URI (path and query), e.g. "/search?q=1' OR 1=1--".
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value = "GET")]
        method: String,
        /// A header as "Name: value" (repeatable).
        #[arg(long)]
        header: Vec<String>,
        #[arg(long)]
        body: Option<String>,
        /// A raw HTTP/1.1 response in a file (status line, headers, body as
        /// sent without chunked framing): the response-phase rules are run
        /// on it too, as the gateway would for this request.
        #[arg(long)]
        response: Option<PathBuf>,
    },
}

/// Where the audit store is: `--data`, or the configuration's `store.path`.
#[derive(clap::Args)]
struct StoreArgs {
    /// The store directory (default: `store.path` of the configuration).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The configuration: `store.path`, and `audit.encryption_key` to read
    /// encrypted records. Not needed with --data on an unencrypted store.
    #[arg(
        short,
        long,
        env = "PORTCULLIS_CONFIG",
        default_value = "config/portcullis.yaml"
    )]
    config: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// NDJSON, one Elastic Common Schema document per line.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Walk the audit hash chain: exit 0 when intact, 1 naming the first
    /// altered, deleted, reordered or truncated record, 2 when a running
    /// gateway holds the store.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// A checkpoint kept outside the store (from the logs or metrics)
        /// that the chain must still contain (repeatable).
        #[arg(long = "checkpoint", value_name = "N:HASH", value_parser = parse_checkpoint)]
        checkpoints: Vec<portcullis::store::chain::Link>,
    },
    /// Stream audit records, oldest first, to stdout or --output.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Records at or after T (RFC 3339, a date, or unix seconds).
        #[arg(long, value_name = "T", value_parser = parse_time)]
        since: Option<u64>,
        /// Records at or before T (RFC 3339, a date, or unix seconds).
        #[arg(long, value_name = "T", value_parser = parse_time)]
        until: Option<u64>,
        /// Write here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn parse_checkpoint(s: &str) -> Result<portcullis::store::chain::Link, String> {
    portcullis::store::chain::Link::parse(s)
        .ok_or_else(|| "expected N:HASH (a sequence number and 64 hex digits)".into())
}

fn parse_time(s: &str) -> Result<u64, String> {
    portcullis::store::keys::parse_time(s).ok_or_else(|| {
        "expected RFC 3339 (2025-11-23T05:06:07Z), a date (2025-11-23) or unix seconds".into()
    })
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the proxy listeners and the admin listener.
    Run {
        #[arg(
            short,
            long,
            env = "PORTCULLIS_CONFIG",
            default_value = "config/portcullis.yaml"
        )]
        config: PathBuf,
    },
    /// Validate the configuration; print FILE:LINE:COL errors; exit 0 or 1.
    Check {
        #[arg(
            short,
            long,
            env = "PORTCULLIS_CONFIG",
            default_value = "config/portcullis.yaml"
        )]
        config: PathBuf,
    },
    /// Rule packs: run their inline tests.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// The audit trail: verify its hash chain, export it (JSON/ECS, CSV).
    /// For a running gateway, use the admin API instead.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Serve the built-in echo upstream on its own (for trials and benchmarks).
    DemoUpstream {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
    },
}

fn init_tracing(cli: &Cli, level: &str) {
    use tracing_subscriber::EnvFilter;
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => level,
            1 => "debug",
            _ => "trace",
        }
    };
    let filter =
        EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => b.json().flatten_event(true).init(),
        LogFormat::Pretty => b.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::Check { config } => check(config),
        Cmd::Rules {
            cmd: RulesCmd::Test { dir },
        } => rules_test(dir),
        Cmd::Rules {
            cmd:
                RulesCmd::Ftw {
                    dir,
                    config,
                    failures,
                },
        } => ftw(config, dir, *failures),
        Cmd::Rules {
            cmd:
                RulesCmd::Explain {
                    config,
                    request,
                    url,
                    method,
                    header,
                    body,
                    response,
                },
        } => explain(
            config,
            request.as_deref(),
            url.as_deref(),
            method,
            header,
            body.as_deref(),
            response.as_deref(),
        ),
        Cmd::Audit {
            cmd: AuditCmd::Verify { store, checkpoints },
        } => audit_verify(store, checkpoints),
        Cmd::Audit {
            cmd:
                AuditCmd::Export {
                    store,
                    format,
                    since,
                    until,
                    output,
                },
        } => audit_export(store, *format, *since, *until, output.as_deref()),
        Cmd::Run { config } => {
            let cfg = match portcullis::config::load(config) {
                Ok(c) => c,
                Err(errs) => {
                    eprintln!("{errs}");
                    eprintln!(
                        "{}: {} error(s); not starting",
                        config.display(),
                        errs.0.len()
                    );
                    return ExitCode::FAILURE;
                }
            };
            init_tracing(&cli, &cfg.logging.level);
            // The main thread runs the control loop (signals, admin API,
            // reload); the proxy listeners run on `workers` threads of their own.
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(portcullis::server::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start");
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::DemoUpstream { listen } => {
            init_tracing(&cli, "info");
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async {
                match portcullis::demo::start_echo(*listen).await {
                    Ok(a) => {
                        tracing::info!(addr = %a, "demo upstream listening");
                        let _ = tokio::signal::ctrl_c().await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("cannot listen on {listen}: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

/// `portcullis check`: the config, then every pack it names (compiled with
/// the configured matcher, inline tests run), all errors at once.
fn check(config: &std::path::Path) -> ExitCode {
    let cfg = match portcullis::config::load(config) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            eprintln!("{}: {} error(s)", config.display(), errs.0.len());
            return ExitCode::FAILURE;
        }
    };
    if let Some(waf) = &cfg.waf {
        use portcullis::rules::load;
        let packs = match load::load_packs(waf, config) {
            Ok(p) => p,
            Err(errs) => {
                eprintln!("{errs}");
                eprintln!(
                    "{}: {} error(s) in rule packs",
                    config.display(),
                    errs.0.len()
                );
                return ExitCode::FAILURE;
            }
        };
        match load::load(waf, config) {
            Ok(Some(set)) => {
                let (run, failures) = load::run_inline_tests(&packs, &set);
                for f in &failures {
                    eprintln!("{f}");
                }
                if !failures.is_empty() {
                    eprintln!("{} of {run} inline rule tests failed", failures.len());
                    return ExitCode::FAILURE;
                }
                println!(
                    "{}: {} rules compiled ({} matcher, ruleset {}), {run} inline tests passed",
                    config.display(),
                    set.len(),
                    set.backend(),
                    set.hash()
                );
                if let (Some(c), Some(dir)) = (set.cache_stats(), &waf.compile_cache) {
                    println!(
                        "{}: compile cache {}: {} database(s) read, {} compiled and stored{}",
                        config.display(),
                        dir.display(),
                        c.hits,
                        c.misses,
                        if c.errors > 0 {
                            format!(", {} read/write error(s) (see the log)", c.errors)
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(None) => println!("{}: waf is off", config.display()),
            Err(errs) => {
                eprintln!("{errs}");
                eprintln!(
                    "{}: {} error(s) in rule packs",
                    config.display(),
                    errs.0.len()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}: configuration OK", config.display());
    ExitCode::SUCCESS
}

/// `portcullis rules test DIR`.
fn rules_test(dir: &std::path::Path) -> ExitCode {
    use portcullis::rules::engine::{EngineSettings, RuleSet};
    use portcullis::rules::load;
    use portcullis::rules::matcher::Backend;
    let files = match load::pack_files(&["*.yaml".to_string()], dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut packs = Vec::new();
    let mut bad = false;
    for f in &files {
        match portcullis::rules::schema::load_pack(f) {
            Ok(p) => packs.push(p),
            Err(e) => {
                eprintln!("{e}");
                bad = true;
            }
        }
    }
    if bad {
        return ExitCode::FAILURE;
    }
    let backends = [
        #[cfg(feature = "hyperscan")]
        Backend::Hyperscan,
        Backend::Pure,
    ];
    let mut failed = false;
    println!(
        "{:<28} {:>6} {:>8} {:>8}  matcher",
        "pack", "rules", "tests", "failed"
    );
    for backend in backends {
        let settings = EngineSettings {
            paranoia: 4,
            backend,
            ..EngineSettings::default()
        };
        let set = match RuleSet::compile(&packs, &settings) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        for p in &packs {
            let (run, failures) = load::run_inline_tests(std::slice::from_ref(p), &set);
            println!(
                "{:<28} {:>6} {:>8} {:>8}  {backend}",
                p.name,
                p.rules.len(),
                run,
                failures.len()
            );
            for f in &failures {
                eprintln!("  {f}");
            }
            failed |= !failures.is_empty();
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `portcullis rules explain`.
fn explain(
    config: &std::path::Path,
    request: Option<&std::path::Path>,
    url: Option<&str>,
    method: &str,
    headers: &[String],
    body: Option<&str>,
    response: Option<&std::path::Path>,
) -> ExitCode {
    use portcullis::request_view::{RequestView, ViewLimits};
    use portcullis::rules::engine::{EngineScratch, Field, RequestFacts, Verdict};
    let cfg = match portcullis::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(waf) = &cfg.waf else {
        eprintln!(
            "{}: no `waf` section: no rules to explain",
            config.display()
        );
        return ExitCode::FAILURE;
    };
    let set = match portcullis::rules::load::load(waf, config) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!("waf is off");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Build the request from a raw file or from the flags.
    let raw: Vec<u8> = match request {
        Some(p) => match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => {
            let mut r = format!("{method} {} HTTP/1.1\r\n", url.unwrap_or("/"));
            if !headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("host:"))
            {
                r.push_str("Host: localhost\r\n");
            }
            for h in headers {
                r.push_str(h);
                r.push_str("\r\n");
            }
            if let Some(b) = body {
                r.push_str(&format!("Content-Length: {}\r\n", b.len()));
            }
            r.push_str("\r\n");
            r.push_str(body.unwrap_or(""));
            r.into_bytes()
        }
    };
    let mut hbuf = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut hbuf);
    let head_len = match req.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            eprintln!("incomplete request head (a blank line ends the headers)");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("malformed request: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut b = http::Request::builder()
        .method(req.method.unwrap_or("GET"))
        .uri(req.path.unwrap_or("/"));
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    let parts = match b.body(()) {
        Ok(r) => r.into_parts().0,
        Err(e) => {
            eprintln!("invalid request: {e}");
            return ExitCode::FAILURE;
        }
    };
    let vl = ViewLimits {
        max_body: cfg.limits.inspect_body_bytes,
        ..ViewLimits::default()
    };
    let body = &raw[head_len..];
    // As the gateway does: a body that cannot be parsed is refused, but the
    // rules score what can be read first (a block wins over the refusal).
    let (view, unparseable) = match RequestView::build(&parts, body, &vl) {
        Ok(v) => (v, None),
        Err(e) => match portcullis::gateway::bodyless_view(&parts, &vl) {
            Some(v) => (v, Some(e)),
            None => {
                println!(
                    "verdict: {} {} (the body cannot be inspected)",
                    e.status(),
                    e.reason()
                );
                return ExitCode::SUCCESS;
            }
        },
    };
    let mut fields: Vec<Field<'_>> = portcullis::rules::engine::view_fields(&view);
    if let Some(e) = &unparseable {
        println!(
            "the body cannot be parsed ({} {}): scoring the headers, path, query and raw body",
            e.status(),
            e.reason()
        );
        portcullis::gateway::add_unparseable_fields(&mut fields, &parts, body);
    }
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let facts = RequestFacts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        host,
        body_as_args: unparseable.is_none() && view.body_as_args(),
    };
    let ev = set.evaluate(&fields, &facts, &mut EngineScratch::default());
    println!(
        "rule set {} ({} rules, {} matcher, paranoia {}, threshold {})",
        set.hash(),
        set.len(),
        set.backend(),
        waf.paranoia,
        set.threshold()
    );
    println!("{} fields inspected", fields.len());
    print_hits(&ev);
    let verdict = if !ev.errors.is_empty() || ev.verdict == Verdict::Block {
        "BLOCK (403)".to_string()
    } else if let Some(e) = &unparseable {
        format!(
            "{} {} (the body cannot be inspected)",
            e.status(),
            e.reason()
        )
    } else {
        "pass".to_string()
    };
    println!(
        "score {} (detect-only {}), verdict: {verdict}",
        ev.score, ev.detect_score
    );
    match response {
        Some(path) => explain_response(&cfg, &set, &parts.method, &facts, path),
        None => ExitCode::SUCCESS,
    }
}

fn print_hits(ev: &portcullis::rules::engine::Evaluation) {
    for h in &ev.hits {
        println!(
            "  rule {} [{}] {} — {} {:?} score {}\n    target {}  transforms {}\n    value {:?}{}",
            h.rule_id,
            h.pack,
            h.rule_name,
            h.severity,
            h.mode,
            h.score,
            h.target,
            h.transforms,
            h.excerpt,
            h.detail
                .as_deref()
                .map(|d| format!("\n    detector {d}"))
                .unwrap_or_default()
        );
    }
    for e in &ev.errors {
        println!("  not inspected: {e}");
    }
}

/// `rules explain --response FILE`: the response phase, as the gateway runs
/// it on the upstream's answer to the explained request.
fn explain_response(
    cfg: &portcullis::config::Config,
    set: &portcullis::rules::engine::RuleSet,
    method: &http::Method,
    facts: &portcullis::rules::engine::RequestFacts<'_>,
    path: &std::path::Path,
) -> ExitCode {
    use portcullis::gateway::{ResponsePlan, response_fields, response_inspect_bytes};
    use portcullis::rules::engine::{EngineScratch, Verdict};
    let raw = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let mut hbuf = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut hbuf);
    let head_len = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            eprintln!(
                "{}: incomplete response head (a blank line ends the headers)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{}: malformed response: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let mut b = http::Response::builder().status(resp.code.unwrap_or(200));
    for h in resp.headers.iter() {
        b = b.header(h.name, h.value);
    }
    let parts = match b.body(()) {
        Ok(r) => r.into_parts().0,
        Err(e) => {
            eprintln!("{}: invalid response: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let plan = ResponsePlan::of(set, method, &parts);
    println!(
        "response {} (outbound threshold {})",
        parts.status,
        set.outbound_threshold()
    );
    if !plan.any() {
        println!("no response rule is loaded: the response is not inspected");
        return ExitCode::SUCCESS;
    }
    let body = bytes::Bytes::copy_from_slice(&raw[head_len..]);
    if !plan.body && !body.is_empty() {
        println!(
            "the body is not inspected (a HEAD request, a bodiless status, a coding other than gzip or deflate, or not text)"
        );
    }
    let text = match plan.body_text(&body, response_inspect_bytes(cfg)) {
        Ok(t) => t,
        Err(e) => {
            println!(
                "the body does not decode ({:?}: {}): not inspected",
                plan.coding,
                e.reason()
            );
            bytes::Bytes::new()
        }
    };
    let status = parts.status.as_str().to_owned();
    let fields = response_fields(&status, &parts.headers, plan.body.then_some(&text[..]));
    let ev = set.evaluate_response(&fields, facts, &mut EngineScratch::default());
    println!("{} fields inspected", fields.len());
    print_hits(&ev);
    let verdict = if !ev.errors.is_empty() || ev.verdict == Verdict::Block {
        "BLOCK (the block page replaces the response)"
    } else {
        "pass"
    };
    println!(
        "response score {} (detect-only {}), verdict: {verdict}",
        ev.score, ev.detect_score
    );
    ExitCode::SUCCESS
}

/// `portcullis rules ftw DIR`.
fn ftw(config: &std::path::Path, dir: &std::path::Path, failures: bool) -> ExitCode {
    use portcullis::ftw::{self, Class};
    let cfg = match portcullis::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (table, results) = match ftw::run(cfg, dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pct = |n: usize, d: usize| {
        if d == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * n as f64 / d as f64)
        }
    };
    println!("| family | attack stages | blocked | benign stages | blocked |");
    println!("|---|---:|---:|---:|---:|");
    let mut total = ftw::Tally::default();
    for (fam, t) in &table {
        println!(
            "| {fam} | {} | {} | {} | {} |",
            t.attack,
            pct(t.attack_blocked, t.attack),
            t.benign,
            pct(t.benign_blocked, t.benign)
        );
        total.attack += t.attack;
        total.attack_blocked += t.attack_blocked;
        total.benign += t.benign;
        total.benign_blocked += t.benign_blocked;
        total.other += t.other;
    }
    println!(
        "| **all** | {} | {} | {} | {} |",
        total.attack,
        pct(total.attack_blocked, total.attack),
        total.benign,
        pct(total.benign_blocked, total.benign)
    );
    println!(
        "({} stages neither attack nor benign were sent but not counted)",
        total.other
    );
    if failures {
        for r in &results {
            let wrong = match r.class {
                Class::Attack => r.status != Some(403),
                Class::Benign => r.status == Some(403),
                Class::Other => false,
            };
            if wrong {
                println!(
                    "{:?} {} test {} → {:?}",
                    r.class,
                    r.file.display(),
                    r.test,
                    r.status
                );
            }
        }
    }
    ExitCode::SUCCESS
}

/// Exit status when a running gateway holds the store.
const EXIT_STORE_IN_USE: u8 = 2;

/// An open store and the master key that reads its records, if configured.
type AuditStore = (
    std::sync::Arc<dyn portcullis::store::Store>,
    Option<[u8; 32]>,
);

/// Opens the audit store of `args`, or returns the exit code after saying
/// why it cannot.
fn open_audit_store(args: &StoreArgs) -> Result<AuditStore, ExitCode> {
    use portcullis::store::{self, StoreError};
    // With --data and no configuration file, the store is all there is
    // (a copied store, a backup); otherwise the configuration must load,
    // since it holds the key that opens encrypted records.
    let (dir, master) = match &args.data {
        Some(d) if !args.config.exists() => (d.clone(), None),
        data => match portcullis::config::load(&args.config) {
            Ok(c) => (data.clone().unwrap_or(c.store.path), c.audit.encryption_key),
            Err(errs) => {
                eprintln!("{errs}");
                eprintln!(
                    "{}: {} error(s); pass --data DIR to name the store without a configuration",
                    args.config.display(),
                    errs.0.len()
                );
                return Err(ExitCode::FAILURE);
            }
        },
    };
    // The engine is whatever is on disk; opening never creates a store here.
    let Some(engine) = store::detect(&dir) else {
        eprintln!(
            "portcullis: no audit store in {} (neither sled/ nor {} is there)",
            dir.display(),
            store::redb_engine::FILE
        );
        return Err(ExitCode::FAILURE);
    };
    match store::open(&dir, engine) {
        Ok(s) => Ok((s, master)),
        Err(StoreError::Locked(_)) => {
            eprintln!(
                "portcullis: the store in {} is in use by a running gateway; \
                 use its admin API instead: GET /api/v1/audit/verify, GET /api/v1/audit/export",
                dir.display()
            );
            Err(ExitCode::from(EXIT_STORE_IN_USE))
        }
        Err(e) => {
            eprintln!(
                "portcullis: cannot open the store in {}: {e}",
                dir.display()
            );
            Err(ExitCode::FAILURE)
        }
    }
}

/// `portcullis audit verify`.
fn audit_verify(args: &StoreArgs, anchors: &[portcullis::store::chain::Link]) -> ExitCode {
    use portcullis::store::{Space, chain};
    let store = match open_audit_store(args) {
        Ok((s, _)) => s,
        Err(code) => return code,
    };
    let checked = chain::verify(&*store, anchors).and_then(|report| {
        let base = chain::base(&*store)?;
        let head = chain::head(&*store)?;
        let mut stored = Vec::new();
        store.scan(Space::Checkpoints, &[], None, false, &mut |_, v| {
            if let Some(l) = v.get(8..).and_then(chain::Link::decode) {
                stored.push(l);
            }
            true
        })?;
        Ok((report, base, head, stored))
    });
    let (report, base, head, stored) = match checked {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: cannot read the audit chain: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(p) = &report.problem {
        eprintln!("audit chain BROKEN at record {}: {}", p.seq, p.message);
        eprintln!(
            "  {} record(s) before it verified; nothing from record {} on can be trusted",
            report.records, p.seq
        );
        return ExitCode::FAILURE;
    }
    match (report.first, report.last) {
        (Some(first), Some(last)) => println!(
            "audit chain OK: {} records ({first}..{}), head {}",
            report.records,
            last.seq,
            last.to_text()
        ),
        _ => println!("audit chain OK: no records"),
    }
    if base.seq > 0 {
        println!(
            "  the kept chain continues from {} (older records removed by retention)",
            base.to_text()
        );
    }
    // What the chain was checked against (verify fails on any mismatch).
    if head.seq > base.seq {
        println!("  matches the stored chain head {}", head.to_text());
    }
    let kept: Vec<_> = stored.iter().filter(|c| c.seq > base.seq).collect();
    if let Some(latest) = kept.last() {
        println!(
            "  matches {} stored checkpoint(s), the latest {}",
            kept.len(),
            latest.to_text()
        );
    }
    for a in anchors {
        if a.seq > base.seq {
            println!("  matches checkpoint {}", a.to_text());
        } else {
            // Retention removed that part of the chain: nothing to compare.
            println!(
                "  NOT CHECKED: checkpoint {} predates the kept chain (from {})",
                a.to_text(),
                base.seq + 1
            );
        }
    }
    ExitCode::SUCCESS
}

/// `portcullis audit export`.
fn audit_export(
    args: &StoreArgs,
    format: ExportFormat,
    since: Option<u64>,
    until: Option<u64>,
    output: Option<&std::path::Path>,
) -> ExitCode {
    use portcullis::store::crypto::Keyring;
    use portcullis::store::export::{self, ExportError, Format};
    use portcullis::store::query::AuditFilter;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        eprintln!("portcullis: --since is after --until");
        return ExitCode::FAILURE;
    }
    let (store, master) = match open_audit_store(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let ring = match Keyring::load(&*store, master) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = match format {
        ExportFormat::Json => Format::Json,
        ExportFormat::Csv => Format::Csv,
    };
    let filter = AuditFilter {
        since_us: since,
        until_us: until,
        ..AuditFilter::default()
    };
    let result = match output {
        Some(path) => std::fs::File::create(path)
            .map_err(ExportError::from)
            .and_then(|mut f| {
                let n = export::export(&*store, &ring, &filter, format, &mut f)?;
                f.sync_all()?;
                Ok(n)
            }),
        None => export::export(
            &*store,
            &ring,
            &filter,
            format,
            &mut std::io::stdout().lock(),
        ),
    };
    let to = output.map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
    match result {
        Ok(n) => {
            // stderr, so stdout carries nothing but the export.
            eprintln!("exported {n} audit record(s) as {} to {to}", format.name());
            ExitCode::SUCCESS
        }
        // The reader stopped early (`| head`): its choice, not a failure.
        Err(ExportError::Io(e))
            if output.is_none() && e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: audit export failed: {e}; {to} is incomplete");
            ExitCode::FAILURE
        }
    }
}
