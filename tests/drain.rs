//! Graceful shutdown: SIGTERM lets the in-flight request finish, refuses new
//! connections, and exits 0.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let up = Upstream::start();
    let mut gw = Gateway::with_upstream(up.addr, "");

    let mut inflight = TcpStream::connect(gw.proxy).unwrap();
    inflight
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    inflight
        .write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: drain.test\r\n\r\n")
        .unwrap();

    // Readiness: the upstream has the request, so it is in flight.
    let deadline = Instant::now() + READY_TIMEOUT;
    while !up.requests().iter().any(|s| s.uri.starts_with("/slow")) {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(10)); // polling a readiness condition
    }

    gw.signal("TERM");
    // Logged once the shutdown signal has gone out to the listeners.
    gw.wait_log("shutting down");

    // A new connection is refused, or closed without a response.
    match TcpStream::connect(gw.proxy) {
        // Refused; or reset when the SYN met the listener as it closed.
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        ),
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ =
                s.write_all(b"GET /late HTTP/1.1\r\nHost: drain.test\r\nConnection: close\r\n\r\n");
            let mut out = Vec::new();
            match s.read_to_end(&mut out) {
                Ok(_) => assert!(
                    out.is_empty(),
                    "a connection made after shutdown got an answer: {:?}",
                    String::from_utf8_lossy(&out)
                ),
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ),
                    "{e}"
                ),
            }
        }
    }

    // The in-flight request completes normally.
    let mut out = Vec::new();
    let _ = inflight.read_to_end(&mut out);
    let (status, headers, body) = parse_response(&out);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    assert!(headers.iter().any(|(k, _)| k == "x-request-id"));
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    assert_eq!(body.len(), len);

    let st = gw
        .wait_exit(READY_TIMEOUT)
        .expect("the gateway exits after draining");
    assert!(st.success(), "exit status {st:?}");
    assert!(
        !up.requests().iter().any(|s| s.uri == "/late"),
        "nothing accepted after shutdown reached the upstream"
    );
    gw.wait_log("all connections drained");
    // The access line of the drained request was written before exit.
    let log = gw.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"path\":\"/slow\"") && l.contains("\"status\":200")),
        "access log after exit: {log}"
    );
}
