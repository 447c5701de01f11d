//! The store through the running gateway: security events of blocked
//! requests, audit records from `audit.policies`, blocked addresses that
//! survive a restart, chain verification and erasure over the admin API.

mod common;
use common::*;

use serde_json::Value;

const TOKEN: &str = "store-admin-token-0123456789";

const PACK: &str = r#"pack: sqli
rules:
  - id: 942100
    name: SQL injection (lexer)
    severity: critical
    targets: [args, json]
    transforms: [url_decode_uni]
    match: {sqli: true}
    tests: {match: ["1' OR '1'='1"], no_match: ["O'Reilly"]}
"#;

fn start(sync: &str) -> (Upstream, Gateway) {
    let up = Upstream::start();
    let dir = TempDir::new("store");
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/sqli.yaml"), PACK).unwrap();
    let cfg = format!(
        r#"listen:
  - addr: "127.0.0.1:0"
upstream:
  url: "http://{}"
trusted_proxies: ["127.0.0.1/32"]
waf:
  rules: ["rules/*.yaml"]
store:
  path: data
  sync: {sync}
audit:
  policies:
    - match: {{method: DELETE, path: "/api/admin/**"}}
      category: admin_action
admin:
  listen: "127.0.0.1:0"
  tokens:
    - token: "{TOKEN}"
      role: admin
"#,
        up.addr
    );
    (up, Gateway::start_in(dir, &cfg))
}

fn send(
    gw: &Gateway,
    method: &str,
    target: &str,
    headers: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: app.test\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    parse_response(&raw_exchange(gw.proxy, req.as_bytes()))
}

fn admin(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, Value) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = parse_response(&raw_exchange(gw.admin, req.as_bytes()));
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn request_id(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k == "x-request-id")
        .map(|(_, v)| v.clone())
        .expect("x-request-id")
}

#[test]
fn a_blocked_request_is_a_stored_event_that_survives_a_crash() {
    let (_up, gw) = start("strict");
    let (status, headers, _) = send(
        &gw,
        "GET",
        "/search?q=1'%20OR%20'1'='1",
        "X-Forwarded-For: 198.51.100.23\r\n",
    );
    assert_eq!(status, 403);
    let rid = request_id(&headers);
    // Strict: the 403 was sent after the event was durable, so a kill -9
    // right now must not lose it.
    let gw = gw.restart(true);
    let (status, v) = admin(&gw, "GET", "/api/v1/security/events?ip=198.51.100.23", "");
    assert_eq!(status, 200, "{v}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{v}");
    let e = &events[0];
    assert_eq!(e["type"], "sql_injection_attempt");
    assert_eq!(e["request_id"], rid.as_str());
    assert_eq!(e["action"], "block");
    assert_eq!(e["rule_ids"][0], 942100);
    assert!(e["id"].as_str().unwrap().starts_with("EVT-"));
    // By id, by type; and a type with no events is empty.
    let (status, one) = admin(
        &gw,
        "GET",
        &format!("/api/v1/security/events/{}", e["id"].as_str().unwrap()),
        "",
    );
    assert_eq!((status, &one["request_id"]), (200, &e["request_id"]));
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events?type=xss_attempt", "");
    assert_eq!(v["count"], 0);
    let (status, _) = admin(&gw, "GET", "/api/v1/security/events/EVT-1-nope", "");
    assert_eq!(status, 404);
}

#[test]
fn audited_actions_are_chained_records() {
    let (up, gw) = start("strict");
    let (status, _, _) = send(
        &gw,
        "DELETE",
        "/api/admin/users/42",
        "X-Forwarded-For: 203.0.113.5\r\n",
    );
    assert_eq!(status, 200);
    let (status, _, _) = send(&gw, "GET", "/api/admin/users/42", "");
    assert_eq!(status, 200, "GET is not in the policy");
    assert_eq!(up.requests().len(), 2);
    let (status, v) = admin(&gw, "GET", "/api/v1/audit/records", "");
    assert_eq!(status, 200, "{v}");
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    let r = &recs[0];
    assert_eq!(r["category"], "admin_action");
    assert_eq!(r["action"], "DELETE /api/admin/users/42");
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["resource_type"], "users");
    assert_eq!(r["resource_id"], "42");
    assert_eq!(r["ip"], "203.0.113.5");
    assert_eq!(r["seq"], 1);
    // Admin changes are audited too, and the chain verifies.
    let (status, _) = admin(
        &gw,
        "POST",
        "/api/v1/security/blocked-ips",
        r#"{"ip":"192.0.2.1","reason":"test"}"#,
    );
    assert_eq!(status, 201);
    let (status, v) = admin(&gw, "GET", "/api/v1/audit/verify", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["records"], 2);
    let (_, v) = admin(&gw, "GET", "/api/v1/audit/records?action=block_ip", "");
    assert_eq!(v["records"][0]["role"], "admin");
    assert_eq!(v["records"][0]["resource_id"], "192.0.2.1/32");
    let (status, v) = admin(&gw, "GET", "/api/v1/audit/records/AUD-000000000002", "");
    assert_eq!(status, 200);
    assert_eq!(v["action"], "block_ip");
    assert_eq!(v["hash"].as_str().map(str::len), Some(64));
}

#[test]
fn blocked_ips_are_refused_and_persist_across_restarts() {
    let (up, gw) = start("batched");
    let xff = "X-Forwarded-For: 203.0.113.77\r\n";
    assert_eq!(send(&gw, "GET", "/", xff).0, 200);
    let (status, v) = admin(
        &gw,
        "POST",
        "/api/v1/security/blocked-ips",
        r#"{"ip":"203.0.113.77","ttl":"1h","reason":"abuse"}"#,
    );
    assert_eq!(status, 201, "{v}");
    assert!(v["expires_at"].is_string());
    let (status, v) = admin(
        &gw,
        "POST",
        "/api/v1/security/blocked-ips",
        r#"{"cidr":"198.51.100.0/24"}"#,
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = admin(
        &gw,
        "POST",
        "/api/v1/security/blocked-ips",
        r#"{"ip":"not-an-ip"}"#,
    );
    assert_eq!(status, 400, "{v}");
    let seen = up.requests().len();
    assert_eq!(send(&gw, "GET", "/", xff).0, 403);
    assert_eq!(
        send(&gw, "GET", "/", "X-Forwarded-For: 198.51.100.9\r\n").0,
        403
    );
    assert_eq!(
        up.requests().len(),
        seen,
        "blocked requests never reach the upstream"
    );
    // A clean restart keeps the blocks (loaded from the store).
    let gw = gw.restart(false);
    assert_eq!(send(&gw, "GET", "/", xff).0, 403);
    let (_, v) = admin(&gw, "GET", "/api/v1/security/blocked-ips", "");
    assert_eq!(v["count"], 2, "{v}");
    let (status, _) = admin(
        &gw,
        "DELETE",
        "/api/v1/security/blocked-ips/203.0.113.77",
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(send(&gw, "GET", "/", xff).0, 200);
    let (status, _) = admin(
        &gw,
        "DELETE",
        "/api/v1/security/blocked-ips/203.0.113.77",
        "",
    );
    assert_eq!(status, 404);
    let gw = gw.restart(false);
    assert_eq!(
        send(&gw, "GET", "/", xff).0,
        200,
        "the unblock persisted too"
    );
    assert_eq!(
        send(&gw, "GET", "/", "X-Forwarded-For: 198.51.100.9\r\n").0,
        403
    );
}

#[test]
fn application_alerts_and_erasure() {
    let (_up, gw) = start("batched");
    let (status, v) = admin(
        &gw,
        "POST",
        "/api/v1/security/alerts",
        r#"{"type":"login_failure","severity":"medium","user_id":"carol","ip_address":"192.0.2.44","message":"bad password"}"#,
    );
    assert_eq!(status, 201, "{v}");
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events?user=carol", "");
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["events"][0]["user"], "carol");
    assert_eq!(v["events"][0]["ip"], "192.0.2.44");
    let (status, v) = admin(
        &gw,
        "POST",
        "/api/v1/privacy/erasure",
        r#"{"user_id":"carol"}"#,
    );
    assert_eq!(status, 200, "{v}");
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events?type=login_failure", "");
    assert_eq!(v["events"][0]["user"], "[erased]", "{v}");
    assert!(v["events"][0].get("ip").is_none());
    let (_, v) = admin(&gw, "GET", "/api/v1/audit/verify", "");
    assert_eq!(v["valid"], true, "{v}");
    let (status, _) = admin(
        &gw,
        "POST",
        "/api/v1/security/alerts",
        r#"{"severity":"extreme"}"#,
    );
    assert_eq!(status, 400);
}
