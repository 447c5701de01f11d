//! The `portcullis` command line: run, check, demo-upstream.

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
    },
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
                },
        } => explain(
            config,
            request.as_deref(),
            url.as_deref(),
            method,
            header,
            body.as_deref(),
        ),
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
    let mut backends = vec![Backend::Pure];
    #[cfg(feature = "hyperscan")]
    backends.insert(0, Backend::Hyperscan);
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
