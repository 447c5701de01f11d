//! Routing by host and path prefix, base paths, and upstream failures
//! (connect refused → 502, slow upstream → 504), each answered by the
//! gateway with its JSON body and counted in metrics.

mod common;
use common::*;

fn get(gw: &Gateway, host: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    parse_response(&raw_exchange(gw.proxy, req.as_bytes()))
}

#[test]
fn routes_pick_upstream_by_host_then_longest_prefix() {
    let default = Upstream::start();
    let api = Upstream::start();
    let v2 = Upstream::start();
    let gw = Gateway::with_upstream(
        default.addr,
        &format!(
            "routes:\n  - {{host: api.test, upstream: \"http://{}\"}}\n  - {{path_prefix: /v2, upstream: \"http://{}/base\"}}\n",
            api.addr, v2.addr
        ),
    );
    assert_eq!(get(&gw, "api.test:8080", "/v2/x").0, 200); // host route wins over prefix
    assert_eq!(get(&gw, "other.test", "/v2/items?id=1").0, 200);
    assert_eq!(get(&gw, "other.test", "/v20").0, 200); // not under /v2
    assert_eq!(get(&gw, "other.test", "/").0, 200);

    let api_seen: Vec<String> = api.requests().iter().map(|s| s.uri.clone()).collect();
    let v2_seen: Vec<String> = v2.requests().iter().map(|s| s.uri.clone()).collect();
    let default_seen: Vec<String> = default.requests().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(api_seen, ["/v2/x"]);
    assert_eq!(v2_seen, ["/base/v2/items?id=1"]);
    assert_eq!(default_seen, ["/v20", "/"]);
}

#[test]
fn refused_upstream_is_502_and_counted() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::with_upstream(port, "");
    let (status, headers, body) = get(&gw, "a.test", "/");
    assert_eq!(status, 502);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "upstream_unavailable");
    let rid = headers
        .iter()
        .find(|(k, _)| k == "x-request-id")
        .unwrap()
        .1
        .clone();
    assert_eq!(v["request_id"], rid.as_str());
    let metrics = metrics_text(gw.admin);
    assert!(
        metrics.contains("portcullis_upstream_errors_total{kind=\"connect\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_http_requests_total{class=\"5xx\"} 1"),
        "{metrics}"
    );
}

#[test]
fn slow_upstream_is_504() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "  timeout: 300ms\n");
    let (status, _, body) = get(&gw, "a.test", "/slow?ms=3000");
    assert_eq!(status, 504);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "upstream_timeout");
    // The request did reach the upstream (it was slow, not refused).
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn browsers_get_an_html_error_page() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::with_upstream(port, "");
    let raw = raw_exchange(
        gw.proxy,
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html,application/xhtml+xml\r\nConnection: close\r\n\r\n",
    );
    let (status, headers, body) = parse_response(&raw);
    assert_eq!(status, 502);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/html"))
    );
    assert!(String::from_utf8_lossy(&body).contains("<h1>502"));
}
