//! Forwarding: methods, bodies (Content-Length and chunked) byte-exact, and
//! the header hygiene of SPEC §4.

mod common;
use common::*;

#[test]
fn get_is_forwarded_with_request_id_and_forwarding_headers() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let raw = raw_exchange(
        gw.proxy,
        b"GET /a/b?x=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    );
    let (status, headers, _) = parse_response(&raw);
    assert_eq!(status, 200);
    let rid = headers
        .iter()
        .find(|(k, _)| k == "x-request-id")
        .map(|(_, v)| v.clone())
        .expect("x-request-id");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].uri, "/a/b?x=1");
    assert_eq!(
        seen[0].header("x-request-id").as_deref(),
        Some(rid.as_str())
    );
    assert_eq!(
        seen[0].header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(seen[0].header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen[0].header("x-forwarded-host").as_deref(),
        Some("app.test")
    );
    assert_eq!(seen[0].header("host").as_deref(), Some("app.test"));
    assert!(
        seen[0]
            .header("forwarded")
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );
}
