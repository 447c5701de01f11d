//! Large responses are streamed through, not buffered.

mod common;
use common::*;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

const TOTAL: u64 = 200 * 1024 * 1024;
const RSS_LIMIT: u64 = 64 * 1024 * 1024;

#[test]
fn a_200_mb_response_streams_through_in_bounded_memory() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let rss_before = gw.rss_bytes();
    assert!(rss_before > 0, "RSS is readable");
    let (received, content_length, peak) = block_on(async {
        let tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("/big?bytes={TOTAL}"))
            .header("host", "big.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(READY_TIMEOUT, sender.send_request(req))
            .await
            .expect("response head in time")
            .unwrap();
        assert_eq!(resp.status(), 200);
        let content_length = resp
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let mut body = resp.into_body();
        let mut received = 0u64;
        let mut next_sample = 0u64;
        let mut peak = 0u64;
        // Bounded: a stalled transfer fails instead of hanging.
        let read_all = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.expect("body frame");
                if let Some(d) = frame.data_ref() {
                    received += d.len() as u64;
                }
                if received >= next_sample {
                    peak = peak.max(gw.rss_bytes());
                    next_sample += 8 * 1024 * 1024;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(300), read_all)
            .await
            .expect("transfer finished in time");
        peak = peak.max(gw.rss_bytes());
        (received, content_length, peak)
    });
    assert_eq!(received, TOTAL, "every byte arrived");
    if let Some(cl) = content_length {
        assert_eq!(cl, TOTAL);
    }
    assert!(
        peak < RSS_LIMIT,
        "gateway RSS peaked at {} MiB (started at {} MiB)",
        peak >> 20,
        rss_before >> 20
    );
    assert!(gw.rss_bytes() < RSS_LIMIT);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, format!("/big?bytes={TOTAL}"));
}
