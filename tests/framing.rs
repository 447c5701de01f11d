//! Request smuggling and framing (SPEC §4): every ambiguous or malformed
//! framing is answered 400 and not a single byte reaches the upstream. Each
//! refusal runs on a fresh gateway and upstream so `saw_nothing` is strict.

mod common;
use common::*;

/// Sends `raw` on one connection to a fresh gateway and asserts it is refused
/// with `status`, as the only response, with nothing forwarded. Returns the
/// raw response.
fn assert_refused(raw: &[u8], status: u16) -> Vec<u8> {
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
        count_responses(&resp),
        1,
        "exactly one response expected: {:?}",
        String::from_utf8_lossy(&resp)
    );
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
    resp
}

fn count_responses(raw: &[u8]) -> usize {
    raw.windows(9).filter(|w| w == b"HTTP/1.1 ").count()
}

/// The gateway's own refusal names the reason in its JSON body.
fn assert_reason(resp: &[u8], reason: &str) {
    assert_eq!(
        reject_json(resp)["reason"],
        reason,
        "response: {:?}",
        String::from_utf8_lossy(resp)
    );
}

// --- Content-Length / Transfer-Encoding conflicts --------------------------

#[test]
fn content_length_then_transfer_encoding_is_refused() {
    let resp = assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
        400,
    );
    assert_reason(&resp, "content_length_and_transfer_encoding");
}

#[test]
fn transfer_encoding_then_content_length_is_refused() {
    let resp = assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
        400,
    );
    assert_reason(&resp, "content_length_and_transfer_encoding");
}

#[test]
fn duplicate_identical_content_length_is_refused() {
    // hyper folds the two lines into one; the framing guard sees both.
    let resp = assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400,
    );
    assert_reason(&resp, "duplicate_content_length");
}

#[test]
fn differing_content_lengths_are_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    );
}

#[test]
fn content_length_list_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5, 5\r\n\r\nhello",
        400,
    );
}

#[test]
fn content_length_with_sign_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: +5\r\n\r\nhello",
        400,
    );
}

// --- Transfer-Encoding values ----------------------------------------------

#[test]
fn transfer_encoding_gzip_chunked_is_refused() {
    let resp = assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    );
    assert_reason(&resp, "transfer_encoding_not_chunked");
}

#[test]
fn transfer_encoding_chunked_chunked_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn two_transfer_encoding_lines_are_refused() {
    let resp = assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    );
    assert_reason(&resp, "transfer_encoding_not_chunked");
}

#[test]
fn transfer_encoding_identity_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
        400,
    );
}

#[test]
fn transfer_encoding_identity_alone_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: identity\r\n\r\nhello",
        400,
    );
}

#[test]
fn transfer_encoding_on_http10_is_refused() {
    assert_refused(
        b"POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    );
}

// --- Chunk syntax ----------------------------------------------------------

#[test]
fn non_hex_chunk_size_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn overflowing_chunk_size_is_refused() {
    // 17 hex digits: more than 64 bits.
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n1FFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn chunk_data_without_crlf_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
    );
}

#[test]
fn chunk_size_line_with_bare_lf_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn chunk_extension_with_bare_lf_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\nhello\r\n0\r\n\r\n",
        400,
    );
}

// --- Header syntax ---------------------------------------------------------

#[test]
fn obs_fold_header_line_is_refused() {
    assert_refused(
        b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Folded: a\r\n b\r\n\r\n",
        400,
    );
}

#[test]
fn obs_fold_of_transfer_encoding_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\nhello",
        400,
    );
}

#[test]
fn space_before_colon_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
        400,
    );
}

// --- Framing headers in chunked trailers ------------------------------------

#[test]
fn content_length_in_trailers_is_refused() {
    let resp = assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
        400,
    );
    assert_reason(&resp, "forbidden_trailer");
}

#[test]
fn transfer_encoding_in_trailers_is_refused() {
    let resp = assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    );
    assert_reason(&resp, "forbidden_trailer");
}

#[test]
fn host_in_trailers_is_refused() {
    let resp = assert_refused(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nHost: evil.test\r\n\r\n",
        400,
    );
    assert_reason(&resp, "forbidden_trailer");
}

// --- What must still work ----------------------------------------------------

#[test]
fn valid_chunked_body_with_harmless_trailer_is_forwarded_exactly() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let raw = b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;name=v\r\nhello\r\n1\r\n \r\n6\r\n\x00\x01\r\n\xfe\xff\r\n5\r\nworld\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let resp = raw_exchange(gw.proxy, raw);
    let (status, _, _) = parse_response(&resp);
    assert_eq!(status, 200, "{:?}", String::from_utf8_lossy(&resp));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].uri, "/upload");
    assert_eq!(seen[0].body, b"hello \x00\x01\r\n\xfe\xffworld".to_vec());
    // Request trailers are verified, then not forwarded.
    assert_eq!(seen[0].header("x-checksum"), None);
}

#[test]
fn pipelined_requests_are_forwarded_in_order() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let raw = b"POST /one HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhelloGET /two HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let resp = raw_exchange(gw.proxy, raw);
    assert_eq!(
        count_responses(&resp),
        2,
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(
        resp.windows(13).filter(|w| w == b"HTTP/1.1 200 ").count(),
        2,
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    let seen = up.requests();
    let got: Vec<(&str, &str, &[u8])> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.uri.as_str(), s.body.as_slice()))
        .collect();
    assert_eq!(
        got,
        [("POST", "/one", &b"hello"[..]), ("GET", "/two", &b""[..])]
    );
}
