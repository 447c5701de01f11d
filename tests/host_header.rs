//! Host header and request-target hygiene (SPEC §4): one Host, well formed,
//! agreeing with an absolute-form target; only the target forms RFC 9112
//! allows for the method. Refusals run on a fresh gateway and upstream so
//! `saw_nothing` is strict.

mod common;
use common::*;

fn assert_refused(raw: &[u8], status: u16, reason: &str) {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(gw.proxy, raw);
    assert_eq!(
        status_of(&resp),
        Some(status),
        "response: {:?}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(
        reject_json(&resp)["reason"],
        reason,
        "response: {:?}",
        String::from_utf8_lossy(&resp)
    );
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
}

#[test]
fn missing_host_on_http11_is_refused() {
    assert_refused(
        b"GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
        400,
        "missing_host",
    );
}

#[test]
fn http10_without_host_is_forwarded() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(gw.proxy, b"GET /old HTTP/1.0\r\nUser-Agent: t\r\n\r\n");
    assert_eq!(
        status_of(&resp),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/old");
    // The gateway supplies a Host (the upstream's authority): upstream
    // requests are always HTTP/1.1.
    assert_eq!(seen[0].header_count("host"), 1);
    assert_eq!(
        seen[0].header("host").as_deref(),
        Some(up.addr.to_string().as_str())
    );
}

#[test]
fn two_host_headers_are_refused() {
    assert_refused(
        b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n\r\n",
        400,
        "duplicate_host",
    );
}

#[test]
fn two_identical_host_headers_are_refused() {
    assert_refused(
        b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: app.test\r\n\r\n",
        400,
        "duplicate_host",
    );
}

#[test]
fn absolute_form_with_different_host_is_refused() {
    assert_refused(
        b"GET http://evil.test/admin HTTP/1.1\r\nHost: app.test\r\n\r\n",
        400,
        "host_mismatch",
    );
}

#[test]
fn absolute_form_with_different_port_is_refused() {
    assert_refused(
        b"GET http://app.test:8081/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
        400,
        "host_mismatch",
    );
}

#[test]
fn absolute_form_matching_host_is_forwarded() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(
        gw.proxy,
        b"GET http://App.Test/p?q=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status_of(&resp),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    // Forwarded in origin form, with the client's Host.
    assert_eq!(seen[0].uri, "/p?q=1");
    assert_eq!(seen[0].header("host").as_deref(), Some("app.test"));
}

#[test]
fn host_with_userinfo_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400, "invalid_host");
}

#[test]
fn empty_host_on_http11_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400, "invalid_host");
}

#[test]
fn host_with_path_is_refused() {
    assert_refused(
        b"GET / HTTP/1.1\r\nHost: app.test/evil\r\n\r\n",
        400,
        "invalid_host",
    );
}

#[test]
fn authority_form_on_get_is_refused() {
    // Authority-form is for CONNECT only; it would be forwarded as `GET /`.
    assert_refused(
        b"GET app.test:80 HTTP/1.1\r\nHost: app.test:80\r\n\r\n",
        400,
        "invalid_target",
    );
}

#[test]
fn asterisk_form_on_get_is_refused() {
    assert_refused(
        b"GET * HTTP/1.1\r\nHost: app.test\r\n\r\n",
        400,
        "invalid_target",
    );
}

#[test]
fn options_asterisk_is_forwarded() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(
        gw.proxy,
        b"OPTIONS * HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status_of(&resp),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "OPTIONS");
    assert_eq!(seen[0].uri, "*", "asterisk-form must stay asterisk-form");
}

#[test]
fn fragment_in_target_is_refused() {
    // A fragment is not part of a request target; http::Uri would drop it.
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(
        gw.proxy,
        b"GET /public#/../admin HTTP/1.1\r\nHost: app.test\r\n\r\n",
    );
    assert_eq!(
        status_of(&resp),
        Some(400),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(reject_json(&resp)["reason"], "invalid_target");
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
}
