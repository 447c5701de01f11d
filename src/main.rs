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
