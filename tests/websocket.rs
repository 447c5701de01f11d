//! WebSocket upgrades: tunnelled after the upstream's 101, and not tunnelled
//! when the upstream refuses.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Reads one response head (up to and including the blank line); returns it
/// and any bytes read past it.
fn read_head(s: &mut TcpStream) -> (Vec<u8>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return (buf, rest);
        }
        let n = s.read(&mut chunk).expect("read response head");
        assert!(
            n > 0,
            "closed before a full head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn read_exact_bytes(s: &mut TcpStream, mut have: Vec<u8>, n: usize) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    while have.len() < n {
        let k = s.read(&mut chunk).expect("read");
        assert!(k > 0, "closed after {} of {n} bytes", have.len());
        have.extend_from_slice(&chunk[..k]);
    }
    have
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

const UPGRADE_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[test]
fn websocket_upgrade_is_tunnelled_both_ways() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let mut s = TcpStream::connect(gw.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /ws HTTP/1.1\r\nHost: ws.test\r\n{UPGRADE_HEADERS}\r\n").as_bytes())
        .unwrap();
    let (head, rest) = read_head(&mut s);
    let (status, hs, _) = parse_response(&head);
    assert_eq!(status, 101, "{}", String::from_utf8_lossy(&head));
    assert!(header(&hs, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(header(&hs, "connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")));
    assert_eq!(
        header(&hs, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );

    // The upstream echoes raw bytes; two rounds prove the tunnel stays up.
    // Frame-shaped bytes, but the tunnel must not care what they are.
    for msg in [
        &b"\x81\x05hello"[..],
        &b"GET /not-http HTTP/1.1\r\n\r\n"[..],
    ] {
        s.write_all(msg).unwrap();
        let got = read_exact_bytes(&mut s, Vec::new(), msg.len());
        assert_eq!(got, msg);
    }
    assert!(rest.is_empty());

    let seen = up.requests();
    assert_eq!(seen.len(), 1, "tunnelled bytes are not requests: {seen:?}");
    assert_eq!(seen[0].uri, "/ws");
    assert_eq!(seen[0].header("upgrade").as_deref(), Some("websocket"));
    assert!(
        seen[0]
            .header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
    );
    assert_eq!(
        seen[0].header("sec-websocket-key").as_deref(),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    assert_eq!(seen[0].header("host").as_deref(), Some("ws.test"));
}

#[test]
fn refused_upgrade_returns_the_upstream_status_and_is_not_tunnelled() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let mut s = TcpStream::connect(gw.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("GET /status/403 HTTP/1.1\r\nHost: ws.test\r\n{UPGRADE_HEADERS}\r\n").as_bytes(),
    )
    .unwrap();
    let (head, rest) = read_head(&mut s);
    let (status, hs, _) = parse_response(&head);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&head));
    assert_eq!(
        header(&hs, "x-upstream"),
        Some("test"),
        "the upstream's answer"
    );
    assert!(header(&hs, "upgrade").is_none(), "{hs:?}");
    let len: usize = header(&hs, "content-length")
        .unwrap_or("0")
        .parse()
        .unwrap();
    let body = read_exact_bytes(&mut s, rest, len);
    assert_eq!(body.len(), len, "no bytes beyond the 403 body");

    // The connection still speaks HTTP through the gateway: a second request
    // gets a gateway response (x-request-id) and reaches the upstream with the
    // gateway's forwarding headers. Tunnelled bytes would arrive raw.
    s.write_all(b"GET /second HTTP/1.1\r\nHost: ws.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let (status2, hs2, _) = parse_response(&out);
    assert_eq!(status2, 200, "{}", String::from_utf8_lossy(&out));
    assert!(header(&hs2, "x-request-id").is_some());

    let seen = up.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].uri, "/status/403");
    assert_eq!(seen[1].uri, "/second");
    assert_eq!(
        seen[1].header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert!(seen[1].header("x-request-id").is_some());
}
