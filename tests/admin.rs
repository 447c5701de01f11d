//! Admin API: open health and metrics, token-protected control, roles, and
//! reload through the API (accepted and rejected with located errors).

mod common;
use common::*;

use std::net::SocketAddr;

const ADMIN_TOKEN: &str = "admin-token-from-file-0123456789";
const VIEWER_TOKEN: &str = "viewer-token-0123456789";

/// One admin call on a fresh connection: (status, lower-cased headers, body).
fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let raw = raw_exchange(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let (status, headers, body) = parse_response(&raw);
    (status, headers, String::from_utf8(body).unwrap())
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn proxied_get(gw: &Gateway, path: &str) -> u16 {
    let raw = raw_exchange(
        gw.proxy,
        format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    status_of(&raw).unwrap_or(0)
}

/// An address nothing listens on, held for as long as the guard lives: the
/// socket is bound but never listens, so a connect is refused and no other
/// test (or the gateway itself, binding port 0) can be handed the port. A
/// listener dropped at once would free it for reuse by a concurrent test.
struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    ClosedPort {
        _socket: socket,
        addr,
    }
}

/// The config of a gateway with tokens, in front of `upstream`.
fn token_config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        "listen:\n  - addr: \"127.0.0.1:0\"\nupstream:\n  url: \"http://{upstream}\"\n{extra}admin:\n  listen: \"127.0.0.1:0\"\n  tokens:\n    - token: \"file:token.txt\"\n      role: admin\n    - token: \"{VIEWER_TOKEN}\"\n      role: viewer\n"
    )
}

fn token_gateway(upstream: SocketAddr) -> Gateway {
    let dir = TempDir::new("admin");
    std::fs::write(dir.path().join("token.txt"), format!("{ADMIN_TOKEN}\n")).unwrap();
    Gateway::start_in(dir, &token_config(upstream, ""))
}

#[test]
fn health_is_open_and_reports_a_reachable_upstream() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    let (status, hs, body) = admin(gw.admin, "GET", "/api/v1/security/health", None);
    assert_eq!(status, 200, "{body}");
    assert!(header(&hs, "content-type").is_some_and(|v| v.starts_with("application/json")));
    let v: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(v["status"], "healthy", "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_seconds"].is_u64(), "{v}");
    assert_eq!(v["upstream"]["reachable"], true, "{v}");
    assert_eq!(
        v["upstream"]["target"].as_str(),
        Some(format!("http://{}", up.addr).as_str())
    );
}

#[test]
fn health_reports_an_unreachable_upstream_as_degraded() {
    let closed = closed_port();
    let gw = Gateway::with_upstream(closed.addr, "");
    let (status, _, body) = admin(gw.admin, "GET", "/api/v1/security/health", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["upstream"]["reachable"], false, "{v}");
}

/// The value of a sample line `name value` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn metrics_are_open_on_both_paths_and_count_proxied_requests() {
    let up = Upstream::start();
    let gw = Gateway::with_upstream(up.addr, "");
    assert_eq!(proxied_get(&gw, "/counted"), 200);
    for path in ["/metrics", "/api/v1/metrics"] {
        let (status, hs, body) = admin(gw.admin, "GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            header(&hs, "content-type").is_some_and(|v| v.starts_with("text/plain")),
            "{hs:?}"
        );
        for name in [
            "portcullis_http_requests_total",
            "portcullis_http_request_duration_seconds",
            "portcullis_upstream_duration_seconds",
            "portcullis_open_connections",
            "portcullis_build_info",
        ] {
            assert!(
                body.contains(&format!("# TYPE {name} ")),
                "{path}: no {name}\n{body}"
            );
        }
        let ok = sample(&body, "portcullis_http_requests_total{class=\"2xx\"}")
            .expect("2xx counter present");
        assert!(ok >= 1.0, "2xx counter is {ok}\n{body}");
        let observed = sample(&body, "portcullis_upstream_duration_seconds_count")
            .expect("upstream histogram count");
        assert!(observed >= 1.0, "{body}");
        assert_eq!(
            sample(
                &body,
                &format!(
                    "portcullis_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                )
            ),
            Some(1.0),
            "{body}"
        );
    }
}

#[test]
fn control_paths_need_a_valid_token() {
    let up = Upstream::start();
    let gw = token_gateway(up.addr);
    for (method, path) in [
        ("GET", "/api/v1/config"),
        ("POST", "/api/v1/rules/reload"),
        ("GET", "/"),
    ] {
        let (status, hs, body) = admin(gw.admin, method, path, None);
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert!(
            header(&hs, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")),
            "{hs:?}"
        );
    }
    for bad in [
        "Bearer wrong-token-0123456789".to_string(),
        format!("Bearer {ADMIN_TOKEN}x"),
        format!("Basic {ADMIN_TOKEN}"),
        ADMIN_TOKEN.to_string(),
    ] {
        let (status, hs, _) = admin(gw.admin, "POST", "/api/v1/rules/reload", Some(&bad));
        assert_eq!(status, 401, "{bad}");
        assert!(header(&hs, "www-authenticate").is_some());
    }
    assert!(
        !gw.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("SIGHUP") || l.contains("configuration reload")),
        "no reload may have run"
    );
}

#[test]
fn reload_through_the_api_needs_the_admin_role_and_applies_the_new_config() {
    let up = Upstream::start();
    let up2 = Upstream::start();
    let gw = token_gateway(up.addr);
    assert_eq!(proxied_get(&gw, "/one"), 200);

    let viewer = format!("Bearer {VIEWER_TOKEN}");
    let (status, _, body) = admin(gw.admin, "POST", "/api/v1/rules/reload", Some(&viewer));
    assert_eq!(status, 403, "{body}");

    // The admin token (read from token.txt next to the config) may reload;
    // point the gateway at a second upstream to see the new config applied.
    std::fs::write(&gw.config_path, token_config(up2.addr, "")).unwrap();
    let (status, _, body) = admin(
        gw.admin,
        "POST",
        "/api/v1/rules/reload",
        Some(&format!("Bearer {ADMIN_TOKEN}")),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "reloaded");
    gw.wait_log("configuration reloaded");

    assert_eq!(proxied_get(&gw, "/two"), 200);
    let first: Vec<String> = up.requests().into_iter().map(|s| s.uri).collect();
    let second: Vec<String> = up2.requests().into_iter().map(|s| s.uri).collect();
    assert_eq!(first, ["/one"]);
    assert_eq!(second, ["/two"]);
}

#[test]
fn invalid_config_reload_is_rejected_with_located_errors_and_old_config_keeps_serving() {
    let up = Upstream::start();
    let gw = token_gateway(up.addr);
    assert_eq!(proxied_get(&gw, "/before"), 200);

    // Line 5 has a bad duration, line 7 an unknown key; the upstream moves
    // to a dead port, which must not take effect.
    let closed = closed_port();
    let broken = token_config(
        closed.addr,
        "  timeout: forever\nlimits:\n  max_hedaers: 10\n",
    );
    assert_eq!(broken.lines().nth(4), Some("  timeout: forever"));
    assert_eq!(broken.lines().nth(6), Some("  max_hedaers: 10"));
    std::fs::write(&gw.config_path, &broken).unwrap();

    let (status, hs, body) = admin(
        gw.admin,
        "POST",
        "/api/v1/rules/reload",
        Some(&format!("Bearer {ADMIN_TOKEN}")),
    );
    assert_eq!(status, 422, "{body}");
    assert!(header(&hs, "content-type").is_some_and(|v| v.starts_with("application/json")));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "rejected");
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    let file = gw.config_path.display().to_string();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{file}:5:")) && errors[0].contains("upstream.timeout"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with(&format!("{file}:7:")) && errors[1].contains("max_hedaers"),
        "{errors:?}"
    );
    gw.wait_log("reload rejected");

    assert_eq!(
        proxied_get(&gw, "/after"),
        200,
        "the old config keeps serving"
    );
    let uris: Vec<String> = up.requests().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/before", "/after"]);
}
