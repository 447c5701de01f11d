//! Size limits and methods the gateway refuses (SPEC §3 `limits`, §4).
//! Every refusal runs on a fresh gateway and upstream, asserts the status and
//! that not a single byte reached the upstream.

mod common;
use common::*;

/// Small limits so the tests send little data.
const SMALL: &str = "limits:\n  max_header_bytes: 8KiB\n  max_headers: 10\n  max_uri_bytes: 1KiB\n  max_body_bytes: 1000\n  body_buffer_bytes: 4096\n";

fn start() -> (Upstream, Gateway) {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, SMALL);
    (up, gw)
}

fn assert_status(resp: &[u8], status: u16) {
    assert_eq!(
        status_of(resp),
        Some(status),
        "response: {:?}",
        String::from_utf8_lossy(resp)
    );
}

fn assert_nothing_forwarded(up: &Upstream) {
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
}

#[test]
fn headers_larger_than_max_header_bytes_get_431() {
    let (up, gw) = start();
    let big = "a".repeat(9 * 1024);
    let raw = format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {big}\r\n\r\n");
    let resp = raw_exchange(gw.proxy, raw.as_bytes());
    // hyper answers this itself (its read buffer is capped at max_header_bytes).
    assert_status(&resp, 431);
    assert_nothing_forwarded(&up);
}

#[test]
fn headers_within_max_header_bytes_are_forwarded() {
    // The counterpart of the 431 test: the same shape just under the limit passes.
    let (up, gw) = start();
    let big = "a".repeat(7 * 1024);
    let raw =
        format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let resp = raw_exchange(gw.proxy, raw.as_bytes());
    assert_status(&resp, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-big").map(|v| v.len()), Some(7 * 1024));
}

#[test]
fn more_than_max_headers_get_431() {
    let (up, gw) = start();
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: app.test\r\n");
    for i in 0..20 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let resp = raw_exchange(gw.proxy, raw.as_bytes());
    // hyper's parser has room for max_headers fields and answers 431 itself.
    assert_status(&resp, 431);
    assert_nothing_forwarded(&up);
}

#[test]
fn exactly_max_headers_are_forwarded() {
    let (up, gw) = start();
    // Host + Connection + 8 = 10 = max_headers.
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
    for i in 0..8 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let resp = raw_exchange(gw.proxy, raw.as_bytes());
    assert_status(&resp, 200);
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn uri_longer_than_max_uri_bytes_gets_414() {
    let (up, gw) = start();
    let raw = format!(
        "GET /{} HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "p".repeat(2000)
    );
    let resp = raw_exchange(gw.proxy, raw.as_bytes());
    assert_status(&resp, 414);
    assert_eq!(reject_json(&resp)["reason"], "uri_too_long");
    assert_nothing_forwarded(&up);
}

#[test]
fn long_query_string_counts_towards_max_uri_bytes() {
    let (up, gw) = start();
    let raw = format!(
        "GET /?q={} HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "x".repeat(2000)
    );
    let resp = raw_exchange(gw.proxy, raw.as_bytes());
    assert_status(&resp, 414);
    assert_nothing_forwarded(&up);
}

#[test]
fn content_length_above_max_body_bytes_gets_413() {
    let (up, gw) = start();
    // Only the head is sent: the refusal must not wait for the body.
    let resp = raw_exchange(
        gw.proxy,
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5000\r\n\r\n",
    );
    assert_status(&resp, 413);
    assert_eq!(reject_json(&resp)["reason"], "payload_too_large");
    assert_nothing_forwarded(&up);
}

#[test]
fn content_length_at_max_body_bytes_is_forwarded() {
    let (up, gw) = start();
    let mut raw =
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(&[b'b'; 1000]);
    let resp = raw_exchange(gw.proxy, &raw);
    assert_status(&resp, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, vec![b'b'; 1000]);
}

#[test]
fn chunked_body_growing_past_max_body_bytes_gets_413() {
    let (up, gw) = start();
    // Two 600-byte chunks and no terminator: the gateway must refuse as soon
    // as the running total passes 1000, not wait for the end of the body.
    let mut raw =
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        raw.extend_from_slice(b"258\r\n");
        raw.extend_from_slice(&[b'c'; 600]);
        raw.extend_from_slice(b"\r\n");
    }
    let resp = raw_exchange(gw.proxy, &raw);
    assert_status(&resp, 413);
    assert_nothing_forwarded(&up);
}

#[test]
fn connect_gets_405() {
    let (up, gw) = start();
    let mut c = RawConn::connect(gw.proxy);
    c.send(b"CONNECT internal.test:443 HTTP/1.1\r\nHost: internal.test:443\r\n\r\n");
    let resp = c.read_response(false);
    assert_status(&resp, 405);
    assert_eq!(reject_json(&resp)["reason"], "method_not_allowed");
    let (_, headers, _) = parse_response(&resp);
    let allow = header_of(&headers, "allow").expect("405 carries Allow");
    assert!(
        allow.contains("GET") && !allow.contains("CONNECT"),
        "{allow}"
    );
    assert_nothing_forwarded(&up);
}
