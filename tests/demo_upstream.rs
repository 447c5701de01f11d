//! The built-in echo upstream's `/reflect` endpoint: a `POST /reflect` with
//! a JSON object is answered with the status, headers and body it asks for
//! (the CRS regression suite's backend convention); anything else is echoed.

mod common;

use common::{Gateway, parse_response, raw_exchange};

/// The echo upstream on a loopback port, served by a runtime that lives as
/// long as the returned guard.
fn echo() -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt
        .block_on(portcullis::demo::start_echo("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    (rt, addr)
}

fn post(addr: std::net::SocketAddr, path: &str, ctype: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw_exchange(addr, &req)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn reflect_answers_with_the_requested_status_headers_and_body() {
    let (_rt, addr) = echo();
    let spec = br#"{"status": 418, "headers": {"X-Test": "yes", "Content-Length": "99", "Bad Name": "x"}, "body": "hello\nworld"}"#;
    let (status, headers, body) = parse_response(&post(addr, "/reflect", "application/json", spec));
    assert_eq!(status, 418);
    assert_eq!(header(&headers, "x-test"), ["yes"]);
    // The framing is the server's: the requested Content-Length is ignored.
    assert_eq!(header(&headers, "content-length"), ["11"]);
    assert!(header(&headers, "bad name").is_empty());
    assert_eq!(body, b"hello\nworld");

    // A base64 body, and the default status.
    let (status, _, body) = parse_response(&post(
        addr,
        "/reflect",
        "application/json",
        br#"{"encodedBody": "aGkgdGhlcmU="}"#,
    ));
    assert_eq!((status, body.as_slice()), (200, &b"hi there"[..]));

    // A status out of range is 200.
    let (status, _, body) = parse_response(&post(
        addr,
        "/reflect",
        "application/json",
        br#"{"status": 99999, "body": "x"}"#,
    ));
    assert_eq!((status, body.as_slice()), (200, &b"x"[..]));
}

/// A client elsewhere (in `X-Forwarded-For`) never chooses the answer.
#[test]
fn only_local_clients_choose_the_answer() {
    let (_rt, addr) = echo();
    let spec = br#"{"status": 418, "body": "<script>x</script>"}"#;
    for xff in [
        "203.0.113.7",
        "203.0.113.7, 127.0.0.1",
        "127.0.0.1, 10.0.0.5",
        "bogus",
    ] {
        let mut req = format!(
            "POST /reflect HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: {xff}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            spec.len()
        )
        .into_bytes();
        req.extend_from_slice(spec);
        let (status, _, answer) = parse_response(&raw_exchange(addr, &req));
        assert_eq!(status, 200, "{xff}");
        assert!(
            String::from_utf8_lossy(&answer).contains("builtin:echo"),
            "{xff}"
        );
    }
    let mut req = format!(
        "POST /reflect HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 127.0.0.1, ::1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        spec.len()
    )
    .into_bytes();
    req.extend_from_slice(spec);
    assert_eq!(parse_response(&raw_exchange(addr, &req)).0, 418);
}

#[test]
fn anything_else_is_echoed() {
    let (_rt, addr) = echo();
    for (path, body) in [
        ("/reflect", &b"not json"[..]),
        ("/reflect", &b"[1, 2]"[..]),
        ("/other", &br#"{"status": 418}"#[..]),
    ] {
        let (status, _, answer) = parse_response(&post(addr, path, "application/json", body));
        assert_eq!(status, 200, "{path}");
        let summary: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(summary["service"], "portcullis builtin:echo");
        assert_eq!(summary["uri"], path);
        assert_eq!(
            summary["body_preview"].as_str().unwrap().as_bytes(),
            body,
            "{path}"
        );
    }
    // GET /reflect is echoed too.
    let raw = raw_exchange(
        addr,
        b"GET /reflect HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    );
    let (status, _, answer) = parse_response(&raw);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&answer).contains("builtin:echo"));
}

/// Through the gateway with the bundled packs: a reflected SQL error page
/// is stopped by the response rules, a reflected 404 passes as it is.
#[test]
fn bundled_response_rules_judge_a_reflected_answer() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/*.yaml");
    let gw = Gateway::start(&format!(
        "upstream:\n  url: \"builtin:echo\"\nwaf:\n  rules: [\"{rules}\"]\n  expose_rule_ids: true\n"
    ));
    let leak = br#"{"body": "<b>Warning</b>: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near '1' at line 1"}"#;
    let (status, _, body) = parse_response(&post(gw.proxy, "/reflect", "application/json", leak));
    assert_eq!(status, 403);
    assert!(!String::from_utf8_lossy(&body).contains("SQL syntax"));
    // Stopped on the way back: the request itself is clean.
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ids = page["rule_ids"].as_array().unwrap();
    assert!(!ids.is_empty());
    assert!(
        ids.iter()
            .all(|id| (950_000..960_000).contains(&id.as_u64().unwrap())),
        "{page}"
    );
    let (status, headers, body) = parse_response(&post(
        gw.proxy,
        "/reflect",
        "application/json",
        br#"{"status": 404, "headers": {"X-Reflected": "1"}, "body": "not here"}"#,
    ));
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "x-reflected"), ["1"]);
    assert_eq!(body, b"not here");
}
