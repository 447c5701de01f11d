//! The rule engine on the request path: blocking, passing, detect mode,
//! exclusions, body parsing (JSON, multipart, gzip), the inspection limit,
//! and hot reload keeping the old rule set when a pack is broken.

mod common;
use common::*;

use std::io::Write;

const PACK: &str = r#"pack: test
rules:
  - id: 942100
    name: SQL injection (lexer)
    severity: critical
    targets: [args, json, cookies]
    transforms: [url_decode_uni]
    match: {sqli: true}
    tags: [attack-sqli]
    tests: {match: ["1' OR '1'='1"], no_match: ["O'Reilly"]}
  - id: 941100
    name: XSS (tokenizer)
    severity: critical
    targets: [args, json]
    transforms: [url_decode_uni, html_entity_decode]
    match: {xss: true}
    tags: [attack-xss]
    tests: {match: ["<script>alert(1)</script>"], no_match: ["a < b"]}
  - id: 913100
    name: scanner user agent
    severity: critical
    targets: ["headers:user-agent"]
    match: {phrases: [sqlmap, nikto], caseless: true}
    tests: {match: ["sqlmap/1.7"], no_match: ["Mozilla/5.0"]}
"#;

/// A gateway in front of a recording upstream with `PACK` and extra `waf` keys.
fn start(waf_extra: &str, limits: &str) -> (Upstream, Gateway) {
    start_with_packs(&[("test", PACK)], &format!("{waf_extra}{limits}"))
}

/// A gateway in front of a recording upstream with `packs` (file stem,
/// text) in `rules/`, rule ids exposed, and `extra` config after `waf`.
fn start_with_packs(packs: &[(&str, &str)], extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start();
    let dir = TempDir::new("waf");
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    for (stem, text) in packs {
        std::fs::write(dir.path().join(format!("rules/{stem}.yaml")), text).unwrap();
    }
    let cfg = format!(
        "listen:\n  - addr: \"127.0.0.1:0\"\nupstream:\n  url: \"http://{}\"\nwaf:\n  rules: [\"rules/*.yaml\"]\n  expose_rule_ids: true\n{extra}",
        up.addr
    );
    (up, Gateway::start_in(dir, &cfg))
}

fn get(gw: &Gateway, target: &str, headers: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: app.test\r\n{headers}Connection: close\r\n\r\n");
    parse_response(&raw_exchange(gw.proxy, req.as_bytes()))
}

fn post(
    gw: &Gateway,
    ctype: &str,
    extra: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = format!(
        "POST /submit HTTP/1.1\r\nHost: app.test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    parse_response(&raw_exchange(gw.proxy, &req))
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
}

#[test]
fn sqli_in_query_is_403_and_names_the_rule_while_oreilly_passes() {
    let (up, gw) = start("", "");
    let (status, headers, body) = get(&gw, "/?id=1'%20OR%201=1--", "");
    assert_eq!(status, 403);
    let v = json(&body);
    assert_eq!(v["error"], "forbidden");
    assert_eq!(v["rule_ids"], serde_json::json!([942100]));
    assert_eq!(
        v["request_id"].as_str(),
        header_of(&headers, "x-request-id")
    );
    assert!(up.saw_nothing(), "a blocked request is not forwarded");

    assert_eq!(get(&gw, "/?q=O'Reilly", "").0, 200);
    assert_eq!(get(&gw, "/search?q=Rock%20'n'%20Roll&page=2", "").0, 200);
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn json_bodies_are_inspected_and_prose_passes() {
    let (up, gw) = start("", "");
    let (status, _, _) = post(
        &gw,
        "application/json",
        "",
        br#"{"q":"<script>alert(1)</script>"}"#,
    );
    assert_eq!(status, 403);
    let prose = br#"{"comment":"I select the union of both lists, as O'Reilly's SQL book says; 1 or 2 chapters","tags":["sql","books"]}"#;
    assert_eq!(post(&gw, "application/json", "", prose).0, 200);
    // The upstream received the prose body byte-exact.
    assert_eq!(up.requests()[0].body, prose);
}

#[test]
fn a_parsed_body_scores_once_through_its_fields_and_raw_bodies_still_score() {
    // 950 looks at arguments, names, JSON and the raw body; 951 at the raw
    // body only. Each is worth 3, the threshold is 5.
    const BODY_PACK: &str = r#"pack: body
rules:
  - id: 950
    name: jndi anywhere
    severity: medium
    targets: [args, args_names, json, body]
    transforms: [url_decode]
    match: {regex: "jndi:"}
  - id: 951
    name: marker in the raw body
    severity: medium
    targets: [body]
    transforms: [url_decode]
    match: {regex: "marker-b"}
"#;
    let (up, gw) = start_with_packs(&[("body", BODY_PACK)], "");
    let form = "application/x-www-form-urlencoded";
    // A form or JSON body: 950 scores on the argument, not again on the
    // body that holds it (3 < 5).
    assert_eq!(
        post(&gw, form, "", b"q=%24%7Bjndi%3Aldap%3A%2F%2Fx%7D").0,
        200
    );
    assert_eq!(
        post(&gw, "application/json", "", br#"{"q":"${jndi:ldap://x}"}"#).0,
        200
    );
    // A rule that looks only at the raw body still sees a parsed one.
    for (ctype, body) in [
        (form, &b"q=%24%7Bjndi%3Aldap%3A%2F%2Fx%7D&n=marker-b"[..]),
        (
            "application/json",
            br#"{"q":"${jndi:ldap://x}","n":"marker-b"}"#,
        ),
    ] {
        let (status, _, resp) = post(&gw, ctype, "", body);
        assert_eq!(status, 403, "{ctype}");
        assert_eq!(
            json(&resp)["rule_ids"],
            serde_json::json!([950, 951]),
            "{ctype}"
        );
    }
    // An unparsed body is scored by every rule that looks at bodies.
    assert_eq!(post(&gw, "text/plain", "", b"${jndi:ldap://x}").0, 200);
    let (status, _, resp) = post(&gw, "text/plain", "", b"${jndi:ldap://x} marker-b");
    assert_eq!(status, 403);
    assert_eq!(json(&resp)["rule_ids"], serde_json::json!([950, 951]));
    assert_eq!(up.requests().len(), 3);
}

#[test]
fn headers_cookies_and_multipart_fields_are_targets() {
    let (_up, gw) = start("", "");
    assert_eq!(get(&gw, "/", "User-Agent: sqlmap/1.7.2#stable\r\n").0, 403);
    assert_eq!(
        get(&gw, "/", "Cookie: session=abc; pref=1' or '1'='1\r\n").0,
        403
    );
    let mp = b"--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\n\"><svg/onload=alert(1)>\r\n--XyZ--\r\n";
    assert_eq!(
        post(&gw, "multipart/form-data; boundary=XyZ", "", mp).0,
        403
    );
    let ok = b"--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello there\r\n--XyZ--\r\n";
    assert_eq!(
        post(&gw, "multipart/form-data; boundary=XyZ", "", ok).0,
        200
    );
}

#[test]
fn malformed_multipart_is_400_and_not_forwarded() {
    let (up, gw) = start("", "");
    // Data outside the parts (a preamble) is ambiguous between parsers.
    let mp = b"junk\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--XyZ--\r\n";
    let (status, _, body) = post(&gw, "multipart/form-data; boundary=XyZ", "", mp);
    assert_eq!(status, 400);
    assert!(
        json(&body)["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("multipart"),
        "{:?}",
        json(&body)
    );
    assert!(up.saw_nothing());
}

#[test]
fn attacks_in_unparseable_bodies_are_scored_and_answered_403() {
    let (up, gw) = start("", "");
    // Broken JSON carrying an injection: the raw body and the headers are
    // still scored, so this is a 403 with its rule, not a parser 400.
    let (status, _, _) = post(
        &gw,
        "application/json",
        "",
        br#"{"id": "1' UNION SELECT password FROM users--", "#,
    );
    assert_eq!(status, 403);
    // A multipart body whose Content-Type the parser refuses, sent by a
    // scanner: the headers are still scored.
    let (status, _, _) = post(
        &gw,
        "multipart/form-data; boundary=",
        "User-Agent: sqlmap/1.7.2\r\n",
        b"--x\r\n",
    );
    assert_eq!(status, 403);
    // Broken JSON without an attack is still the parser's 400.
    let (status, _, _) = post(&gw, "application/json", "", br#"{"name": "Jane", "#);
    assert_eq!(status, 400);
    assert!(up.saw_nothing());
}

#[test]
fn gzip_request_bodies_are_decompressed_and_inspected() {
    let (_up, gw) = start("", "");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"q=1'%20or%20'1'%3D'1").unwrap();
    let gz = enc.finish().unwrap();
    let (status, _, _) = post(
        &gw,
        "application/x-www-form-urlencoded",
        "Content-Encoding: gzip\r\n",
        &gz,
    );
    assert_eq!(status, 403);
}

#[test]
fn detect_mode_forwards_and_logs_what_it_would_block() {
    let (up, gw) = start("  mode: detect\n", "");
    assert_eq!(get(&gw, "/?id=1'%20OR%201=1--", "").0, 200);
    assert_eq!(up.requests().len(), 1);
    let line = detect_line(&gw);
    assert!(line.contains("\"waf_rules\":[942100]"), "{line}");
}

#[test]
fn config_exclusions_disable_a_rule_on_one_path_and_target() {
    let excl = "  exclusions:\n    - when: {path: /api/comments, method: GET}\n      disable: {ids: [942100], targets: [\"args:body\"]}\n";
    let (_up, gw) = start(excl, "");
    assert_eq!(get(&gw, "/api/comments?body=1'%20OR%201=1--", "").0, 200);
    assert_eq!(get(&gw, "/api/comments?other=1'%20OR%201=1--", "").0, 403);
    assert_eq!(get(&gw, "/api/other?body=1'%20OR%201=1--", "").0, 403);
}

#[test]
fn bodies_over_the_inspection_limit_are_413_unless_configured_to_pass() {
    let big = vec![b'a'; 5000];
    let (up, gw) = start("", "limits:\n  inspect_body_bytes: 4096\n");
    assert_eq!(post(&gw, "text/plain", "", &big).0, 413);
    assert!(up.saw_nothing());

    let (up, gw) = start(
        "",
        "limits:\n  inspect_body_bytes: 4096\n  over_inspect_limit: pass\n",
    );
    assert_eq!(post(&gw, "text/plain", "", &big).0, 200);
    assert_eq!(up.requests()[0].body.len(), 5000);
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while !gw.access_log().contains("\"inspection_truncated\":true") {
        assert!(
            std::time::Instant::now() < deadline,
            "no inspection_truncated in the access log"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_broken_pack_on_reload_leaves_the_old_rule_set_serving() {
    let (_up, gw) = start("", "");
    let pack = gw.config_path.parent().unwrap().join("rules/test.yaml");
    std::fs::write(
        &pack,
        PACK.replace("match: {sqli: true}", "match: {regex: \"(unclosed\"}"),
    )
    .unwrap();
    gw.signal("HUP");
    let line = gw.wait_log("reload rejected");
    assert!(
        line.contains("test.yaml"),
        "the error names the pack: {line}"
    );
    assert_eq!(
        get(&gw, "/?id=1'%20OR%201=1--", "").0,
        403,
        "old rules still serve"
    );

    // The admin API reports the same failure with file and line.
    let m = metrics_text(gw.admin);
    assert!(
        m.contains("portcullis_rules_reload_total{result=\"failure\"} 1"),
        "{m}"
    );
    assert!(m.contains("portcullis_rules_loaded 3"), "{m}");

    // A fixed pack reloads and the new rule set takes over.
    std::fs::write(
        &pack,
        PACK.replace("sqlmap, nikto", "sqlmap, nikto, evilbot"),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_log("configuration reloaded");
    assert_eq!(get(&gw, "/", "User-Agent: EvilBot/2\r\n").0, 403);
}

#[test]
fn check_runs_inline_tests_and_reports_failures_with_location() {
    let (dir, cfg) = rules_dir(
        "waf-check",
        &PACK.replace("no_match: [\"O'Reilly\"]", "no_match: [\"1 OR 1=1\"]"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(dir.path())
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("test.yaml:3: rule 942100: expected no match on \"1 OR 1=1\""),
        "{err}"
    );
}

/// `check` compiles the packs once and stores the databases under the
/// store; the next `check` (or start) reads them instead of compiling, and
/// `compile_cache: off` leaves the disk alone.
#[test]
fn check_fills_the_compile_cache_and_the_next_load_reads_it() {
    let dir = TempDir::new("waf-cache");
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/test.yaml"), PACK).unwrap();
    let cfg = dir.path().join("c.yaml");
    let write = |extra: &str| {
        std::fs::write(
            &cfg,
            format!("upstream:\n  url: builtin:echo\nstore:\n  path: st\nwaf:\n  rules: [\"rules/*.yaml\"]\n{extra}"),
        )
        .unwrap()
    };
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .current_dir(dir.path())
            .args(["check", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    // "compile cache DIR: H database(s) read, M compiled and stored"
    let counts = |text: &str| -> Option<(u32, u32)> {
        let line = text.lines().find(|l| l.contains("compile cache"))?;
        let n = |after: &str| -> u32 {
            line.split(after)
                .next()
                .unwrap()
                .rsplit(' ')
                .find(|w| !w.is_empty())
                .unwrap()
                .parse()
                .unwrap()
        };
        Some((n(" database(s) read"), n(" compiled and stored")))
    };
    let cache = dir.path().join("st/rules-cache");
    write("");
    let (read, compiled) = counts(&check()).expect("cache line");
    assert_eq!(read, 0);
    assert!(compiled >= 1);
    let files = || std::fs::read_dir(&cache).map_or(0, |d| d.count()) as u32;
    assert_eq!(files(), compiled);
    assert_eq!(counts(&check()), Some((compiled, 0)));
    // Off: no line, nothing read or written.
    std::fs::remove_dir_all(&cache).unwrap();
    write("  compile_cache: \"off\"\n");
    assert_eq!(counts(&check()), None);
    assert!(!cache.exists());
}

/// A temp dir with `pack` as its only rule pack and a config (`c.yaml`)
/// that loads it in front of the built-in echo upstream.
fn rules_dir(name: &str, pack: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/test.yaml"), pack).unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "upstream:\n  url: builtin:echo\nwaf:\n  rules: [\"rules/*.yaml\"]\n",
    )
    .unwrap();
    (dir, cfg)
}

/// `portcullis rules explain -c CFG ARGS…` run in `dir`: its output (it
/// must succeed).
fn explain(dir: &std::path::Path, cfg: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(dir)
        .args(["rules", "explain", "-c"])
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rules_explain_shows_target_transforms_detector_and_verdict() {
    let (dir, cfg) = rules_dir("waf-explain", PACK);
    let run = |args: &[&str]| explain(dir.path(), &cfg, args);
    let out = run(&["--url", "/s?q=1'%20or%20'1'='1"]);
    assert!(out.contains("rule 942100"), "{out}");
    assert!(out.contains("target args_get:q"), "{out}");
    assert!(out.contains("transforms [url_decode_uni]"), "{out}");
    assert!(out.contains("detector sql:"), "{out}");
    assert!(out.contains("verdict: BLOCK (403)"), "{out}");

    let raw = dir.path().join("req.http");
    std::fs::write(&raw, "POST /c HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{\"q\":\"O'Reilly books\"}").unwrap();
    let out = run(&["--request", raw.to_str().unwrap()]);
    assert!(out.contains("verdict: pass"), "{out}");
    assert!(!out.contains("response"), "{out}");
}

#[test]
fn rules_explain_runs_the_response_rules_on_a_response_file() {
    let (dir, cfg) = rules_dir(
        "waf-explain-resp",
        "pack: leak\nrules:\n  - id: 951900\n    name: key in a response\n    severity: critical\n    phase: response\n    targets: [response_body]\n    match: {regex: '-----BEGIN PRIVATE KEY-----'}\n    tests:\n      match: ['-----BEGIN PRIVATE KEY-----']\n      no_match: ['key']\n  - id: 951901\n    name: stack banner\n    severity: critical\n    phase: response\n    targets: ['response_headers:x-powered-by']\n    match: {regex: 'Leaky/1'}\n    tests:\n      match: ['Leaky/1']\n      no_match: ['Other']\n",
    );
    let run_bytes = |response: &[u8]| {
        let file = dir.path().join("resp.http");
        std::fs::write(&file, response).unwrap();
        let file = file.to_str().unwrap();
        explain(
            dir.path(),
            &cfg,
            &["--url", "/download", "--response", file],
        )
    };
    let run = |response: &str| run_bytes(response.as_bytes());
    let leak = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Powered-By: Leaky/1\r\n\r\n-----BEGIN PRIVATE KEY-----\nMIIE\n";
    let out = run(leak);
    assert!(out.contains("response 200 OK"), "{out}");
    assert!(out.contains("rule 951900"), "{out}");
    assert!(out.contains("target response_body"), "{out}");
    assert!(out.contains("rule 951901"), "{out}");
    assert!(
        out.contains("target response_headers:x-powered-by"),
        "{out}"
    );
    assert!(
        out.contains("response score 10 (detect-only 0), verdict: BLOCK"),
        "{out}"
    );
    // A gzip body is decompressed for the rules (as in the gateway); a body
    // in a coding the gateway does not undo is not inspected, nor is one
    // that does not decode.
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: ";
    let key = [&b"-----BEGIN PRIVATE KEY-----\n"[..], &b"MIIE".repeat(50)].concat();
    let compressed = gzip(&key);
    assert!(
        !contains(&compressed, b"PRIVATE KEY"),
        "stored, not compressed"
    );
    let out = run_bytes(&[head.as_bytes(), b"gzip\r\n\r\n", &compressed].concat());
    assert!(out.contains("rule 951900"), "{out}");
    assert!(out.contains("verdict: BLOCK"), "{out}");
    let out = run(&format!("{head}br\r\n\r\n-----BEGIN PRIVATE KEY-----\n"));
    assert!(out.contains("the body is not inspected"), "{out}");
    assert!(!out.contains("rule 951900"), "{out}");
    assert!(out.contains("verdict: pass"), "{out}");
    let out = run(&format!("{head}gzip\r\n\r\n-----BEGIN PRIVATE KEY-----\n"));
    assert!(out.contains("the body does not decode"), "{out}");
    assert!(out.contains("verdict: pass"), "{out}");
    // A clean response passes.
    let out = run("HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n<h1>Not found</h1>");
    assert!(out.contains("response 404 Not Found"), "{out}");
    assert!(
        out.contains("response score 0 (detect-only 0), verdict: pass"),
        "{out}"
    );
}

#[test]
fn rules_ftw_replays_go_ftw_files_through_an_in_process_gateway() {
    let (dir, cfg) = rules_dir("waf-ftw", PACK);
    std::fs::create_dir_all(dir.path().join("ftw/SQLI")).unwrap();
    let stage = |uri: &str, expect: &str| {
        format!(
            "      - input:\n          method: GET\n          uri: \"{uri}\"\n          headers:\n            Host: localhost\n        output:\n          log:\n            {expect}: [942100]\n"
        )
    };
    let file = format!(
        "---\nrule_id: 942100\ntests:\n  - test_id: 1\n    stages:\n{}  - test_id: 2\n    stages:\n{}  - test_id: 3\n    stages:\n{}",
        stage("/?id=1'%20or%20'1'='1", "expect_ids"),
        stage("/?id=plain", "expect_ids"),
        stage("/?name=O'Reilly", "no_expect_ids"),
    );
    std::fs::write(dir.path().join("ftw/SQLI/942100.yaml"), file).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(dir.path())
        .args(["rules", "ftw"])
        .arg(dir.path().join("ftw"))
        .arg("-c")
        .arg(&cfg)
        .arg("--failures")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| SQLI | 2 | 50.0% | 1 | 0.0% |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Attack") && stdout.contains("test 2"),
        "the missed attack is listed: {stdout}"
    );
}

const RESPONSE_PACK: &str = r#"pack: leak
rules:
  - id: 950110
    name: private key in a response
    severity: critical
    phase: response
    targets: [response_body]
    match: {contains: "-----BEGIN RSA PRIVATE KEY-----"}
    tests: {match: ["-----BEGIN RSA PRIVATE KEY-----"], no_match: ["public"]}
  - id: 950500
    name: upstream server error
    severity: low
    phase: response
    targets: [response_status]
    match: {regex: "^5"}
    tests: {match: ["500"], no_match: ["200"]}
"#;

fn start_with_response_rules(waf_extra: &str) -> (Upstream, Gateway) {
    start_with_packs(&[("test", PACK), ("leak", RESPONSE_PACK)], waf_extra)
}

#[test]
fn response_rules_block_leaks_and_stream_the_rest() {
    let (up, gw) = start_with_response_rules("");
    // The upstream echoes the body: a response carrying a private key is
    // replaced by the block page, which does not contain it.
    let leak = b"config dump\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n";
    let (status, _, body) = post(&gw, "text/plain", "", leak);
    assert_eq!(status, 403);
    assert!(!String::from_utf8_lossy(&body).contains("PRIVATE KEY"));
    assert_eq!(json(&body)["rule_ids"], serde_json::json!([950110]));
    assert_eq!(up.requests().len(), 1, "the request itself was forwarded");
    // A clean response passes unchanged.
    let (status, _, body) = post(&gw, "text/plain", "", b"hello there");
    assert_eq!((status, body.as_slice()), (200, &b"hello there"[..]));
    // A low-severity response hit is below the outbound threshold (4).
    assert_eq!(get(&gw, "/status/503", "").0, 503);
    // A body longer than the inspected prefix (128 KiB) arrives whole: the
    // prefix read for inspection first, then the rest, streamed.
    let (status, _, body) = get(&gw, "/big?bytes=3000000", "");
    assert_eq!(status, 200);
    assert_eq!(dechunk_if_needed(&body).len(), 3_000_000);
}

#[test]
fn response_rules_read_gzip_and_deflate_bodies_decompressed() {
    let (up, gw) = start_with_response_rules("");
    // Long and repetitive enough to be compressed, not stored: the key line
    // is not in the compressed bytes.
    let leak = [
        &b"config dump\n".repeat(40)[..],
        b"-----BEGIN RSA PRIVATE KEY-----\n",
        &b"MIIEpAIBAAKCAQEA".repeat(40),
    ]
    .concat();
    let leak = &leak[..];
    let send = |coding: &str, body: &[u8]| {
        let mut req = format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\nx-echo-content-encoding: {coding}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        raw_exchange(gw.proxy, &req)
    };
    // The upstream answers the leak compressed: decompressed, it is seen
    // and the response is replaced by the block page.
    for (coding, body) in [("gzip", gzip(leak)), ("deflate", zlib(leak))] {
        assert!(
            !contains(&body, b"PRIVATE KEY"),
            "{coding}: stored, not compressed"
        );
        let out = send(coding, &body);
        assert_eq!(status_of(&out), Some(403), "{coding}");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("950110"), "{coding}: {text}");
    }
    // A clean compressed answer reaches the client as the upstream sent
    // it: compressed, byte for byte.
    let clean = gzip(&b"hello there, nothing to see\n".repeat(50));
    let out = send("gzip", &clean);
    assert_eq!(status_of(&out), Some(200));
    assert!(out.ends_with(&clean), "the compressed bytes pass unchanged");
    // A body labelled gzip that is not: passed on as sent, scored on
    // status and headers, and counted.
    let out = send("gzip", b"not gzip at all");
    assert_eq!(status_of(&out), Some(200));
    assert!(out.ends_with(b"not gzip at all"));
    let m = metrics_text(gw.admin);
    assert!(
        m.contains("portcullis_upstream_errors_total{kind=\"undecodable_body\"} 1"),
        "{m}"
    );
    assert_eq!(up.requests().len(), 4);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zlib(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn response_body_rules_ask_the_upstream_for_codings_they_can_read() {
    let browser = "Accept-Encoding: gzip, deflate, br, zstd\r\n";
    // With rules that read response bodies: br and zstd are not offered.
    let (up, gw) = start_with_response_rules("");
    assert_eq!(get(&gw, "/page", browser).0, 200);
    assert_eq!(get(&gw, "/page", "Accept-Encoding: br\r\n").0, 200);
    assert_eq!(get(&gw, "/page", "").0, 200);
    let seen = up.requests();
    assert_eq!(
        seen[0].header("accept-encoding").as_deref(),
        Some("gzip, deflate")
    );
    assert_eq!(
        seen[1].header("accept-encoding").as_deref(),
        Some("identity")
    );
    assert_eq!(seen[2].header("accept-encoding"), None);
    // Without them the header goes on as the client sent it.
    let (up, gw) = start("", "");
    assert_eq!(get(&gw, "/page", browser).0, 200);
    assert_eq!(
        up.requests()[0].header("accept-encoding").as_deref(),
        Some("gzip, deflate, br, zstd")
    );
}

#[test]
fn response_rules_in_detect_mode_log_and_pass() {
    let (_up, gw) = start_with_response_rules("  mode: detect\n");
    let leak = b"-----BEGIN RSA PRIVATE KEY-----\n";
    let (status, _, body) = post(&gw, "text/plain", "", leak);
    assert_eq!((status, body.as_slice()), (200, &leak[..]));
    let line = detect_line(&gw);
    assert!(line.contains("\"waf_rules\":[950110]"), "{line}");
}

/// The first access line with `waf_action: detect`, polled until it is
/// written (the access log is flushed by a writer thread).
fn detect_line(gw: &Gateway) -> String {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let log = gw.access_log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("\"waf_action\":\"detect\""))
        {
            return line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no detect line in {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn dechunk_if_needed(body: &[u8]) -> Vec<u8> {
    if body.len() == 3_000_000 {
        body.to_vec()
    } else {
        dechunk(body)
    }
}
