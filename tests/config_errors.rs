//! `portcullis check` and `portcullis run` on good and bad configurations:
//! every error is reported as FILE:LINE:COL, and a bad config never starts.

mod common;
use common::*;

use std::path::Path;

#[test]
fn the_shipped_config_checks_clean() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.yaml");
    let dir = TempDir::new("check-ok");
    let out = run_cli(dir.path(), &["check", "-c", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("configuration OK"));
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

/// One mistake in each of four sections, at known lines.
const BAD: &str = "\
# one mistake per section
listen:
  - addr: \"127.0.0.1:99999\"
upstream:
  url: \"http://127.0.0.1:3000\"
  timeout: forever
limits:
  max_header_bytes: 16KiB
  max_body_byts: 10MiB
redis:
  url: redis://127.0.0.1:6379
admin:
  listen: \"127.0.0.1:0\"
";

#[test]
fn check_lists_every_error_with_file_line_and_column() {
    let dir = TempDir::new("check-bad");
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, BAD).unwrap();
    let f = file.display().to_string();
    let out = run_cli(dir.path(), &["check", "-c", &f]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{f}:")) && !l.ends_with("error(s)"))
        .collect();
    let expected = [
        (3, 11, "listen.addr", "127.0.0.1:99999"),
        (6, 12, "upstream.timeout", "not a duration"),
        (
            9,
            3,
            "limits.max_body_byts",
            "unknown field `max_body_byts`",
        ),
        (10, 1, "redis", "not supported yet"),
    ];
    assert_eq!(errors.len(), expected.len(), "{stderr}");
    for (line, (l, c, key, msg)) in errors.iter().zip(expected) {
        let prefix = format!("{f}:{l}:{c}: `{key}`: ");
        assert!(line.starts_with(&prefix), "expected {prefix:?} in {line:?}");
        assert!(line.contains(msg), "{line}");
    }
    assert!(stderr.contains(&format!("{f}: 4 error(s)")), "{stderr}");
    assert!(!text(&out.stdout).contains("configuration OK"));
}

#[test]
fn check_reports_yaml_syntax_errors_and_missing_files() {
    let dir = TempDir::new("check-syntax");
    let file = dir.path().join("syntax.yaml");
    std::fs::write(
        &file,
        "upstream:\n  url: \"http://127.0.0.1:3000\"\nlimits:\n  max_headers: [1, 2\n",
    )
    .unwrap();
    let f = file.display().to_string();
    let out = run_cli(dir.path(), &["check", "-c", &f]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let first = stderr.lines().next().unwrap_or("");
    let rest = first
        .strip_prefix(&format!("{f}:"))
        .unwrap_or_else(|| panic!("located error expected: {stderr}"));
    let line: usize = rest
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("line number");
    assert_eq!(line, 4, "{stderr}");
    assert!(first.contains("`limits.max_headers`"), "{stderr}");

    let missing = dir.path().join("nope.yaml").display().to_string();
    let out = run_cli(dir.path(), &["check", "-c", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read config"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_with_a_bad_config_exits_nonzero_without_listening() {
    let dir = TempDir::new("run-bad");
    let file = dir.path().join("bad.yaml");
    // A usable listener plus an invalid upstream section: nothing may start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &file,
        format!(
            "listen:\n  - addr: \"127.0.0.1:{port}\"\nupstream:\n  url: \"ftp://127.0.0.1:3000\"\nadmin:\n  listen: \"127.0.0.1:0\"\nlogging:\n  dir: \"{}\"\n",
            dir.path().join("logs").display()
        ),
    )
    .unwrap();
    let f = file.display().to_string();
    let out = run_cli(dir.path(), &["run", "-c", &f]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{f}:4:")) && stderr.contains("upstream.url"),
        "{stderr}"
    );
    assert!(stderr.contains("not starting"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(
        !dir.path().join("logs").exists(),
        "nothing was set up (the access log directory was not created)"
    );
}

#[test]
fn run_exits_nonzero_when_a_listener_cannot_bind() {
    let dir = TempDir::new("run-busy");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let file = dir.path().join("busy.yaml");
    std::fs::write(
        &file,
        format!(
            "listen:\n  - addr: \"{addr}\"\nupstream:\n  url: \"http://127.0.0.1:9\"\nadmin:\n  listen: \"127.0.0.1:0\"\nlogging:\n  dir: \"{}\"\n",
            dir.path().join("logs").display()
        ),
    )
    .unwrap();
    let out = run_cli(dir.path(), &["run", "-c", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("proxy listening"), "{stderr}");
    assert!(!stderr.contains("admin listening"), "{stderr}");
    drop(busy);
}
