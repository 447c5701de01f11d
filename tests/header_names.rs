//! Header-name hygiene. Documented policy: a header name containing `_` is
//! refused (many servers map `X_Forwarded_For` and `X-Forwarded-For` to the
//! same CGI variable, which lets a client spoof what the gateway sets).
//! Names with characters outside the RFC 9110 token set are refused too.
//! Every refusal runs on a fresh gateway and upstream so `saw_nothing` is strict.

mod common;
use common::*;

fn assert_refused(raw: &[u8]) -> Vec<u8> {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(gw.proxy, raw);
    assert_eq!(
        status_of(&resp),
        Some(400),
        "response: {:?}",
        String::from_utf8_lossy(&resp)
    );
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
    resp
}

#[test]
fn underscore_in_header_name_is_refused() {
    let resp =
        assert_refused(b"GET / HTTP/1.1\r\nHost: app.test\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n");
    assert_eq!(reject_json(&resp)["reason"], "underscore_in_header_name");
}

#[test]
fn underscore_in_custom_header_name_is_refused() {
    let resp = assert_refused(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-User_Id: 7\r\n\r\n");
    assert_eq!(reject_json(&resp)["reason"], "underscore_in_header_name");
}

#[test]
fn dash_header_name_is_forwarded() {
    // The counterpart of the underscore refusal: the same name with dashes passes.
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(
        gw.proxy,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-User-Id: 7\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), Some(200));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-user-id").as_deref(), Some("7"));
}

#[test]
fn header_name_with_parentheses_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: app.test\r\nX(Evil): 1\r\n\r\n");
}

#[test]
fn header_name_with_slash_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: app.test\r\nX/Evil: 1\r\n\r\n");
}

#[test]
fn header_name_with_control_byte_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Ev\x01il: 1\r\n\r\n");
}

#[test]
fn header_name_with_non_ascii_byte_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-\xc3\xa9vil: 1\r\n\r\n");
}

#[test]
fn empty_header_name_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: app.test\r\n: 1\r\n\r\n");
}
