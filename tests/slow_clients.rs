//! Slow and idle clients, and the connection cap (SPEC §3 `limits`).
//!
//! Every wait is a bounded socket read (`RAW_READ_TIMEOUT`, 5 s) that the
//! configured 1 s limits must beat; the tests never sleep to synchronise.
//! The only sleeps pace a trickling client, which is the behaviour under test.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Writes `bytes` one at a time, `every` apart, until done, a write fails,
/// or `stop` is set. The pacing is the slow client under test.
fn trickle(
    stream: &TcpStream,
    bytes: Vec<u8>,
    every: Duration,
) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut s = stream.try_clone().unwrap();
    let h = std::thread::spawn(move || {
        for b in bytes {
            if flag.load(Ordering::SeqCst) || s.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(every); // pacing the slow client, not synchronisation
        }
    });
    (stop, h)
}

fn assert_closed_without_response(end: &ReadEnd, bytes: &[u8]) {
    assert!(
        matches!(end, ReadEnd::Eof | ReadEnd::Reset),
        "the gateway did not close the connection within the read bound: {end:?}"
    );
    assert!(
        bytes.is_empty() || status_of(bytes) == Some(408),
        "unexpected answer: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn partial_head_is_cut_off_by_header_read_timeout() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "limits:\n  header_read_timeout: 1s\n");
    let mut c = RawConn::connect(gw.proxy);
    assert!(c.send(b"GET / HTTP/1.1\r\nHost: app.test\r\n"));
    let (end, bytes) = c.read_until_closed();
    assert_closed_without_response(&end, &bytes);
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
}

#[test]
fn trickled_head_is_cut_off_by_header_read_timeout() {
    // Slowloris: a byte of the head every 200 ms keeps the connection busy
    // but must not extend the header deadline.
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "limits:\n  header_read_timeout: 1s\n");
    let mut c = RawConn::connect(gw.proxy);
    let head = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (stop, writer) = trickle(&c.stream, head.to_vec(), Duration::from_millis(200));
    let (end, bytes) = c.read_until_closed();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_closed_without_response(&end, &bytes);
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
}

#[test]
fn stalled_body_gets_408() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "limits:\n  body_read_timeout: 1s\n");
    let mut c = RawConn::connect(gw.proxy);
    assert!(
        c.send(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n0123456789")
    );
    let resp = c.read_response(false);
    assert_eq!(
        status_of(&resp),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(reject_json(&resp)["reason"], "body_read_timeout");
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
}

#[test]
fn stalled_chunked_body_gets_408() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "limits:\n  body_read_timeout: 1s\n");
    let mut c = RawConn::connect(gw.proxy);
    assert!(c.send(
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"
    ));
    let resp = c.read_response(false);
    assert_eq!(
        status_of(&resp),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
}

#[test]
fn body_trickling_below_min_body_rate_gets_408() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(
        up.addr,
        "limits:\n  min_body_rate: 1000\n  min_body_rate_grace: 1s\n  body_read_timeout: 30s\n",
    );
    let mut c = RawConn::connect(gw.proxy);
    assert!(c.send(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n"));
    // 5 bytes a second against a floor of 1000: every byte keeps the idle
    // deadline alive, only the rate check can stop it.
    let (stop, writer) = trickle(&c.stream, vec![b'x'; 100], Duration::from_millis(200));
    let resp = c.read_response(false);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(
        status_of(&resp),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(reject_json(&resp)["reason"], "body_too_slow");
    assert!(
        up.saw_nothing(),
        "upstream saw something: {:?}",
        up.requests()
    );
}

#[test]
fn idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    let up = Upstream::start();
    // A long header timeout so that only the keep-alive timeout can close
    // the idle connection within the read bound.
    let gw = Gateway::with_upstream(
        up.addr,
        "limits:\n  keepalive_timeout: 1s\n  header_read_timeout: 60s\n",
    );
    let mut c = RawConn::connect(gw.proxy);
    assert!(c.send(b"GET /first HTTP/1.1\r\nHost: app.test\r\n\r\n"));
    let resp = c.read_response(false);
    let (status, headers, _) = parse_response(&resp);
    assert_eq!(status, 200);
    assert_eq!(header_of(&headers, "connection"), None, "kept alive");
    let (end, bytes) = c.read_until_closed();
    assert_eq!(end, ReadEnd::Eof, "idle connection was not closed");
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(up.requests().len(), 1);
}

fn get_keepalive(c: &mut RawConn, path: &str) -> u16 {
    assert!(c.send(format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes()));
    status_of(&c.read_response(false)).unwrap_or(0)
}

fn refused_total(gw: &Gateway) -> u64 {
    let raw = raw_exchange(
        gw.admin,
        b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    let (status, _, body) = parse_response(&raw);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("portcullis_connections_refused_total "))
        .unwrap_or_else(|| panic!("no refused counter in metrics:\n{text}"))
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

#[test]
fn connections_over_max_connections_are_closed_at_accept() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "limits:\n  max_connections: 2\n");
    assert_eq!(refused_total(&gw), 0);
    // Two connections, each proven accepted by a full exchange, held open.
    let mut a = RawConn::connect(gw.proxy);
    let mut b = RawConn::connect(gw.proxy);
    assert_eq!(get_keepalive(&mut a, "/a"), 200);
    assert_eq!(get_keepalive(&mut b, "/b"), 200);

    let mut third = RawConn::connect(gw.proxy);
    // The request may or may not be written before the close arrives.
    let _ = third.send(b"GET /c HTTP/1.1\r\nHost: app.test\r\n\r\n");
    let (end, bytes) = third.read_until_closed();
    assert!(
        matches!(end, ReadEnd::Eof | ReadEnd::Reset),
        "third connection not closed: {end:?}"
    );
    assert!(
        bytes.is_empty(),
        "third connection got an answer: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(refused_total(&gw) >= 1);
    let paths: Vec<String> = up.requests().into_iter().map(|s| s.uri).collect();
    assert_eq!(paths, ["/a", "/b"]);

    // The held connections are unaffected.
    assert_eq!(get_keepalive(&mut a, "/a2"), 200);
}
