//! Prior-knowledge HTTP/2 in clear text (h2c) on the plain listener.

mod common;
use common::*;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[test]
fn prior_knowledge_h2c_is_proxied_to_http1_with_host_from_authority() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let (version, status, rid, body) = block_on(async {
        let tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        // Only :authority, no Host header.
        let req = Request::post("http://h2c.test:8080/h2c/path?x=1")
            .body(Full::new(Bytes::from_static(b"hello over h2c")))
            .unwrap();
        assert!(!req.headers().contains_key("host"));
        let resp = tokio::time::timeout(READY_TIMEOUT, sender.send_request(req))
            .await
            .expect("response in time")
            .expect("h2 response");
        let version = resp.version();
        let status = resp.status().as_u16();
        let rid = resp.headers().get("x-request-id").cloned();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (version, status, rid, body)
    });
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(status, 200);
    assert!(rid.is_some(), "the gateway answered (x-request-id)");
    assert_eq!(&body[..], b"hello over h2c", "upstream echo came back");

    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(s.version, "HTTP/1.1");
    assert_eq!(s.method, "POST");
    assert_eq!(s.uri, "/h2c/path?x=1");
    assert_eq!(s.header("host").as_deref(), Some("h2c.test:8080"));
    assert_eq!(s.header_count("host"), 1);
    assert_eq!(s.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(s.body, b"hello over h2c");
}
