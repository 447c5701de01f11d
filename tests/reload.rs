//! Reload applies connection limits to new connections, and hyper's own
//! refusals (malformed heads, header limits) are counted in metrics.

mod common;
use common::*;

fn request_with_headers(n: usize) -> Vec<u8> {
    let mut r = String::from("GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n");
    for i in 0..n {
        r.push_str(&format!("X-H{i}: v\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn metrics(gw: &Gateway) -> String {
    metrics_text(gw.admin)
}

#[test]
fn sighup_applies_new_limits_to_new_connections() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    assert_eq!(
        status_of(&raw_exchange(gw.proxy, &request_with_headers(20))),
        Some(200)
    );

    let mut cfg = std::fs::read_to_string(&gw.config_path).unwrap();
    cfg.push_str("\nlimits:\n  max_headers: 10\n");
    std::fs::write(&gw.config_path, cfg).unwrap();
    gw.signal("HUP");
    gw.wait_log("configuration reloaded");

    assert_eq!(
        status_of(&raw_exchange(gw.proxy, &request_with_headers(20))),
        Some(431)
    );
    assert_eq!(
        status_of(&raw_exchange(gw.proxy, &request_with_headers(5))),
        Some(200)
    );
    assert_eq!(up.requests().len(), 2);
    wait_metric(
        &gw,
        "portcullis_protocol_rejections_total{reason=\"header_too_large\"} 1",
    );
    let m = metrics(&gw);
    assert!(
        m.contains("portcullis_config_reload_total{result=\"success\"} 1"),
        "{m}"
    );
}

#[test]
fn hyper_refusals_are_counted() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let resp = raw_exchange(
        gw.proxy,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Folded: a\r\n b\r\n\r\n",
    );
    assert_eq!(status_of(&resp), Some(400));
    assert!(up.saw_nothing());
    wait_metric(
        &gw,
        "portcullis_protocol_rejections_total{reason=\"malformed_request\"} 1",
    );
}

/// The connection task records a refusal as it ends, which may be just after
/// the client read the response: poll the metric (bounded).
fn wait_metric(gw: &Gateway, needle: &str) {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let m = metrics(gw);
        if m.contains(needle) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{needle} not in {m}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
