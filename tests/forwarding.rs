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

// ---------------------------------------------------------------------------
// Methods

/// Sends one `method` request (with a small body where the method has one)
/// and checks the upstream received exactly it.
fn forwards_method(method: &str) {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let with_body = matches!(method, "POST" | "PUT" | "PATCH");
    let raw = if with_body {
        format!(
            "{method} /m HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        )
    } else {
        format!("{method} /m HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
    };
    let resp = raw_exchange(gw.proxy, raw.as_bytes());
    let (status, _, body) = parse_response(&resp);
    assert_eq!(status, 200, "{:?}", String::from_utf8_lossy(&resp));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, method);
    assert_eq!(seen[0].uri, "/m");
    if with_body {
        assert_eq!(seen[0].body, b"abc");
        assert_eq!(body, b"abc");
    } else {
        assert!(seen[0].body.is_empty());
    }
    if method == "HEAD" {
        assert!(body.is_empty(), "HEAD response carried a body");
    }
}

#[test]
fn get_is_forwarded() {
    forwards_method("GET");
}

#[test]
fn head_is_forwarded() {
    forwards_method("HEAD");
}

#[test]
fn post_is_forwarded() {
    forwards_method("POST");
}

#[test]
fn put_is_forwarded() {
    forwards_method("PUT");
}

#[test]
fn patch_is_forwarded() {
    forwards_method("PATCH");
}

#[test]
fn delete_is_forwarded() {
    forwards_method("DELETE");
}

#[test]
fn options_is_forwarded() {
    forwards_method("OPTIONS");
}

// ---------------------------------------------------------------------------
// Bodies, byte-exact

/// Every byte value, several times, in an order that exposes reordering.
fn all_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + i / 256) % 256) as u8).collect()
}

fn post_content_length(body: &[u8]) -> (Vec<u8>, Seen) {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let mut raw = format!(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let resp = raw_exchange(gw.proxy, &raw);
    let (status, headers, echoed) = parse_response(&resp);
    assert_eq!(status, 200);
    let echoed = if header_of(&headers, "transfer-encoding") == Some("chunked") {
        dechunk(&echoed)
    } else {
        echoed
    };
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    (echoed, seen.into_iter().next().unwrap())
}

#[test]
fn content_length_body_with_every_byte_value_is_forwarded_exactly() {
    let body = all_bytes(256 * 4);
    assert_eq!(
        body.iter().collect::<std::collections::HashSet<_>>().len(),
        256
    );
    let (echoed, seen) = post_content_length(&body);
    assert!(seen.body == body, "upstream body differs");
    assert!(echoed == body, "echoed body differs");
    assert_eq!(seen.header("content-length").as_deref(), Some("1024"));
}

#[test]
fn one_megabyte_body_larger_than_the_buffer_streams_exactly() {
    // 1 MiB against the default body_buffer_bytes of 64 KiB: streamed.
    let body = all_bytes(1 << 20);
    let (echoed, seen) = post_content_length(&body);
    assert_eq!(seen.body.len(), body.len());
    assert!(seen.body == body, "upstream body differs");
    assert!(echoed == body, "echoed body differs");
    // The client's Content-Length framing is kept while streaming.
    assert_eq!(seen.header("content-length").as_deref(), Some("1048576"));
    assert_eq!(seen.header("transfer-encoding"), None);
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn post_chunked(body: &[u8], chunk: usize) -> Seen {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let mut raw = b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend_from_slice(&chunked(body, chunk));
    let resp = raw_exchange(gw.proxy, &raw);
    assert_eq!(status_of(&resp), Some(200));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    seen.into_iter().next().unwrap()
}

#[test]
fn chunked_body_with_every_byte_value_is_forwarded_exactly() {
    let body = all_bytes(256 * 4);
    let seen = post_chunked(&body, 100);
    assert!(seen.body == body, "upstream body differs");
    // Read whole in eleven pieces and sent on as they came: still framed by
    // its length.
    assert_eq!(seen.header("content-length").as_deref(), Some("1024"));
    assert_eq!(seen.header("transfer-encoding"), None);
}

#[test]
fn chunked_body_larger_than_the_buffer_streams_exactly() {
    let body = all_bytes(300 * 1024 + 17);
    let seen = post_chunked(&body, 7000);
    assert_eq!(seen.body.len(), body.len());
    assert!(seen.body == body, "upstream body differs");
}

// ---------------------------------------------------------------------------
// Hop-by-hop headers

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let mut c = RawConn::connect(gw.proxy);
    assert!(c.send(
        b"GET /hop HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n"
    ));
    let resp = c.read_response(false);
    assert_eq!(
        status_of(&resp),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    for h in [
        "connection",
        "x-custom-hop",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(seen[0].header(h), None, "{h} reached the upstream");
    }
    assert_eq!(seen[0].header("x-kept").as_deref(), Some("yes"));
}

#[test]
fn h2c_upgrade_is_not_tunnelled() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let mut c = RawConn::connect(gw.proxy);
    assert!(c.send(
        b"GET /h2c HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    ));
    let resp = c.read_response(false);
    // A plain answer, not 101: the request was forwarded as HTTP/1.1.
    assert_eq!(
        status_of(&resp),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    for h in ["connection", "upgrade", "http2-settings"] {
        assert_eq!(seen[0].header(h), None, "{h} reached the upstream");
    }
    // The connection still speaks HTTP/1.1.
    assert!(c.send(b"GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n"));
    assert_eq!(status_of(&c.read_response(false)), Some(200));
}

/// A minimal upstream that answers every request with `response` (raw
/// bytes), so the gateway's response hygiene can be checked.
fn raw_upstream(response: &'static [u8]) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    // Bodiless requests only: answer each complete head.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(response).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn hop_by_hop_response_headers_are_not_passed_to_the_client() {
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop-Resp\r\nKeep-Alive: timeout=5, max=100\r\nX-Hop-Resp: secret\r\nProxy-Connection: keep-alive\r\nX-Kept-Resp: yes\r\n\r\nok",
    );
    let gw = Gateway::with_upstream(up, "");
    let mut c = RawConn::connect(gw.proxy);
    assert!(c.send(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"));
    let resp = c.read_response(false);
    let (status, headers, body) = parse_response(&resp);
    assert_eq!(status, 200);
    assert_eq!(body, b"ok");
    for h in ["connection", "keep-alive", "x-hop-resp", "proxy-connection"] {
        assert_eq!(header_of(&headers, h), None, "{h} reached the client");
    }
    assert_eq!(header_of(&headers, "x-kept-resp"), Some("yes"));
    assert!(header_of(&headers, "x-request-id").is_some());
}

// ---------------------------------------------------------------------------
// X-Request-Id

/// Sends a request with the given `X-Request-Id` line and returns the id the
/// upstream saw and the id of the response.
fn request_id_roundtrip(incoming: &str) -> (String, String) {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: {incoming}\r\nConnection: close\r\n\r\n"
    );
    let resp = raw_exchange(gw.proxy, raw.as_bytes());
    let (status, headers, _) = parse_response(&resp);
    assert_eq!(status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header_count("x-request-id"), 1);
    (
        seen[0].header("x-request-id").unwrap(),
        header_of(&headers, "x-request-id")
            .expect("response x-request-id")
            .to_string(),
    )
}

fn assert_generated(id: &str) {
    assert_eq!(id.len(), 36, "{id:?}");
    assert_eq!(id.matches('-').count(), 4, "{id:?}");
    assert!(
        id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
        "{id:?}"
    );
}

#[test]
fn valid_incoming_request_id_is_kept() {
    let id = "req-42.abc:Z+/=@";
    let (up_id, resp_id) = request_id_roundtrip(id);
    assert_eq!(up_id, id);
    assert_eq!(resp_id, id);
}

#[test]
fn request_id_with_a_space_is_replaced() {
    let (up_id, resp_id) = request_id_roundtrip("evil id");
    assert_generated(&up_id);
    assert_eq!(resp_id, up_id);
}

#[test]
fn overlong_request_id_is_replaced() {
    let long = "a".repeat(200);
    let (up_id, resp_id) = request_id_roundtrip(&long);
    assert_generated(&up_id);
    assert_eq!(resp_id, up_id);
}

#[test]
fn request_id_with_injection_characters_is_replaced() {
    let (up_id, _) = request_id_roundtrip("a\"}{<script>");
    assert_generated(&up_id);
}

// ---------------------------------------------------------------------------
// X-Forwarded-For and the client address

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(
        gw.proxy,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nForwarded: for=1.2.3.4\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), Some(200));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header_count("x-forwarded-for"), 1);
    assert_eq!(
        seen[0].header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(seen[0].header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen[0].header("x-forwarded-host").as_deref(),
        Some("app.test")
    );
    let fwd = seen[0].header("forwarded").unwrap();
    assert!(!fwd.contains("1.2.3.4"), "{fwd}");
    assert!(fwd.starts_with("for=127.0.0.1;"), "{fwd}");
}

/// Waits (bounded) for the access-log line of `request_id`.
fn access_line(gw: &Gateway, request_id: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found = gw.access_log().lines().find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v["request_id"] == request_id)
        });
        if let Some(v) = found {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line for {request_id}:\n{}",
            gw.access_log()
        );
        // Polling a file the writer flushes every 100 ms, not synchronising.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn forwarded_for_from_a_trusted_proxy_is_extended_and_logged() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "trusted_proxies: [\"127.0.0.0/8\"]\n");
    let resp = raw_exchange(
        gw.proxy,
        b"GET /t HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 1.2.3.4\r\nX-Request-Id: trusted-xff-1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), Some(200));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("x-forwarded-for").as_deref(),
        Some("1.2.3.4, 127.0.0.1")
    );
    let line = access_line(&gw, "trusted-xff-1");
    assert_eq!(line["client_ip"], "1.2.3.4", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["path"], "/t", "{line}");
}

#[test]
fn forwarded_for_from_an_untrusted_peer_is_not_logged_as_client() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(
        gw.proxy,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 1.2.3.4\r\nX-Request-Id: untrusted-xff-1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), Some(200));
    let line = access_line(&gw, "untrusted-xff-1");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
}
