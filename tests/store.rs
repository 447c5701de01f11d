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

/// A gateway config in front of `up`: the given sections, then an admin
/// listener with `TOKEN` in `role`.
fn config(up: std::net::SocketAddr, sections: &str, role: &str) -> String {
    format!(
        "listen:\n  - addr: \"127.0.0.1:0\"\nupstream:\n  url: \"http://{up}\"\n{sections}admin:\n  listen: \"127.0.0.1:0\"\n  tokens:\n    - token: \"{TOKEN}\"\n      role: {role}\n"
    )
}

/// The audit policy the tests share: admin deletions are audited.
const AUDIT_DELETES: &str = "audit:\n  policies:\n    - match: {method: DELETE, path: \"/api/admin/**\"}\n      category: admin_action\n";

fn start(sync: &str) -> (Upstream, Gateway) {
    let up = Upstream::start();
    let dir = TempDir::new("store");
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/sqli.yaml"), PACK).unwrap();
    let cfg = config(
        up.addr,
        &format!(
            "trusted_proxies: [\"127.0.0.1/32\"]\nwaf:\n  rules: [\"rules/*.yaml\"]\nstore:\n  path: data\n  sync: {sync}\n{AUDIT_DELETES}  checkpoint_every: 2\n"
        ),
        "admin",
    );
    (up, Gateway::start_in(dir, &cfg))
}

/// Every file below `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files
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
    // The checkpoint after record 2 is exported in the metrics.
    let metrics = metrics_text(gw.admin);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("portcullis_audit_checkpoint{"))
        .expect("checkpoint metric");
    assert!(line.ends_with(" 2"), "{line}");
    assert!(
        line.contains(v["hash"].as_str().unwrap()),
        "the hash of record 2: {line}"
    );
    // Export streams from the live store (HTTP/1.0: the body ends at close).
    let export = |format: &str| {
        let req = format!(
            "GET /api/v1/audit/export?format={format} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        );
        let (status, headers, body) = parse_response(&raw_exchange(gw.admin, req.as_bytes()));
        assert_eq!(status, 200);
        (headers, String::from_utf8(body).unwrap())
    };
    let (headers, csv) = export("csv");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/csv"))
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("seq,id,ts,category,action"), "{csv}");
    assert!(lines[2].contains("block_ip"), "{csv}");
    let (_, nd) = export("json");
    let docs: Vec<Value> = nd
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["event"]["action"], "DELETE /api/admin/users/42");
    assert_eq!(docs[0]["source"]["ip"], "203.0.113.5");
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
    // The seeds' alert shape is accepted, and their field names are served.
    let (status, v) = admin(
        &gw,
        "POST",
        "/api/v1/security/alerts",
        r#"{"event_type":"brute_force_attempt","severity":4,"description":"Multiple failed login attempts detected","metadata":{"attempts":10}}"#,
    );
    assert_eq!(status, 201, "{v}");
    let (_, v) = admin(
        &gw,
        "GET",
        "/api/v1/security/events?type=brute_force_attempt",
        "",
    );
    let e = &v["events"][0];
    assert_eq!(e["event_type"], "brute_force_attempt", "{v}");
    assert_eq!(e["description"], "Multiple failed login attempts detected");
    assert_eq!(e["blocked"], false);
    assert_eq!(e["details"]["details"]["attempts"], 10);
    assert!(e["event_id"].as_str().unwrap().starts_with("EVT-"));
    let (_, s) = admin(&gw, "GET", "/api/v1/security/metrics/summary", "");
    assert_eq!(
        (
            s["total_events_24h"].as_u64(),
            s["critical_events_24h"].as_u64()
        ),
        (Some(2), Some(1)),
        "{s}"
    );
    // One critical event opens a critical incident at once.
    assert_eq!(
        (s["threat_level"].as_str(), s["active_incidents"].as_u64()),
        (Some("critical"), Some(1)),
        "{s}"
    );
    assert!(s["security_score"].as_f64().unwrap() < 1.0);
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events?user=carol", "");
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["events"][0]["user"], "carol");
    assert_eq!(v["events"][0]["ip"], "192.0.2.44");
    let (status, v) = admin(
        &gw,
        "POST",
        "/api/v1/audit/records",
        r#"{"category":"data_access","action":"export_profile","outcome":"success","user":"carol","resource_type":"profile","resource_id":"c-1","changes":{"email":{"old":"c@old.example","new":"c@new.example"}}}"#,
    );
    assert_eq!(status, 201, "{v}");
    let (_, v) = admin(&gw, "GET", "/api/v1/audit/records?user=carol", "");
    assert_eq!(
        v["records"][0]["changes"]["email"]["new"], "c@new.example",
        "{v}"
    );
    let (status, _) = admin(
        &gw,
        "POST",
        "/api/v1/audit/records",
        r#"{"category":"nope","action":"x","outcome":"success"}"#,
    );
    assert_eq!(status, 400);
    let (status, v) = admin(
        &gw,
        "POST",
        "/api/v1/privacy/erasure",
        r#"{"user_id":"carol"}"#,
    );
    assert_eq!(status, 200, "{v}");
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events?type=login_failure", "");
    assert_eq!(v["events"][0]["user"], "[erased]", "{v}");
    let (_, v) = admin(
        &gw,
        "GET",
        "/api/v1/audit/records?action=export_profile",
        "",
    );
    assert_eq!(v["records"][0]["user"], "[erased]", "{v}");
    assert!(v["records"][0].get("changes").is_none(), "{v}");
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

/// A webhook receiver on loopback: answers 200 and hands over each request
/// (headers, body).
/// What the receiver hands over per request: its headers and body.
type Delivery = (Vec<(String, String)>, Vec<u8>);

fn webhook_receiver() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<Delivery>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send((headers, body)).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

#[test]
fn incidents_are_created_escalated_notified_auto_blocked_and_resolved() {
    let (hook, deliveries) = webhook_receiver();
    let up = Upstream::start();
    let dir = TempDir::new("incidents");
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
behavior:
  incidents: {{creation_threshold: 3, window: 15m, escalate_after: 1s}}
  auto_block: {{threshold: 5, window: 10m, ttl: 1h}}
store:
  sync: strict   # the 403 follows the stored event and its incident actions
notify:
  webhooks:
    - url: "http://{hook}/hooks/portcullis"
      min_severity: high
      secret: "webhook-secret-0123"
      backoff: 50ms
admin:
  listen: "127.0.0.1:0"
  tokens:
    - token: "{TOKEN}"
      role: operator
"#,
        up.addr
    );
    let gw = Gateway::start_in(dir, &cfg);
    let xff = "X-Forwarded-For: 198.51.100.50\r\n";
    for _ in 0..3 {
        assert_eq!(send(&gw, "GET", "/?q=1'%20OR%20'1'='1", xff).0, 403);
    }
    let wait = std::time::Duration::from_secs(20);
    let (headers, body) = deliveries.recv_timeout(wait).unwrap_or_else(|_| {
        panic!(
            "incident.created not delivered; log:\n{}",
            gw.stderr.lock().unwrap().join("\n")
        )
    });
    let h = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(h("x-portcullis-event"), "incident.created");
    let ts: u64 = h("x-portcullis-timestamp").parse().unwrap();
    assert!(portcullis::notify::verify_signature(
        b"webhook-secret-0123",
        ts,
        &body,
        &h("x-portcullis-signature")
    ));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let id = v["incident"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["incident"]["source_ip"], "198.51.100.50");
    assert_eq!(v["incident"]["severity"], "high");
    assert_eq!(v["incident"]["event_count"], 3);
    // Unacknowledged for escalate_after: one level up, notified again.
    let (headers, body) = deliveries
        .recv_timeout(wait)
        .expect("incident.escalated delivered");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "x-portcullis-event" && v == "incident.escalated")
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (
            v["incident"]["id"].as_str(),
            v["incident"]["severity"].as_str()
        ),
        (Some(id.as_str()), Some("critical"))
    );
    // Two more attacks: five from one address auto-block it.
    for _ in 0..2 {
        assert_eq!(send(&gw, "GET", "/?q=1'%20OR%20'1'='1", xff).0, 403);
    }
    let (_, list) = admin(&gw, "GET", "/api/v1/security/blocked-ips", "");
    assert_eq!(list["blocked_ips"][0]["ip"], "198.51.100.50/32", "{list}");
    assert_eq!(list["blocked_ips"][0]["source"], "auto");
    let seen = up.requests().len();
    assert_eq!(send(&gw, "GET", "/harmless", xff).0, 403);
    assert_eq!(up.requests().len(), seen);
    let (_, st) = admin(&gw, "GET", "/api/v1/security/statistics?hours=1", "");
    assert_eq!(st["events_by_type"]["sql_injection_attempt"], 5, "{st}");
    assert_eq!(st["top_source_ips"][0]["ip"], "198.51.100.50");
    assert_eq!(st["incidents_by_status"]["new"], 1);
    // The workflow: list, assign, resolve; each change audited.
    let (_, v) = admin(&gw, "GET", "/api/v1/security/incidents?status=new", "");
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["incidents"][0]["event_count"], 5);
    let (status, v) = admin(
        &gw,
        "POST",
        &format!("/api/v1/security/incidents/{id}/resolve"),
        r#"{"resolution":"x"}"#,
    );
    assert_eq!(status, 200, "resolving a new incident is allowed: {v}");
    let (status, v) = admin(
        &gw,
        "POST",
        &format!("/api/v1/security/incidents/{id}/assign"),
        r#"{"assignee":"dana"}"#,
    );
    assert_eq!(status, 409, "a resolved incident cannot be assigned: {v}");
    let (_, v) = admin(&gw, "GET", &format!("/api/v1/security/incidents/{id}"), "");
    assert_eq!(v["status"], "resolved");
    let what: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["what"].as_str().unwrap())
        .collect();
    assert!(
        what.contains(&"created") && what.contains(&"escalated") && what.contains(&"resolved"),
        "{what:?}"
    );
    assert!(what.contains(&"auto_blocked"), "{what:?}");
    let (_, v) = admin(
        &gw,
        "GET",
        "/api/v1/audit/records?action=incident_resolve",
        "",
    );
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["records"][0]["changes"]["new"]["status"], "resolved");
    // Operators cannot erase (admin only).
    let (status, _) = admin(&gw, "POST", "/api/v1/privacy/erasure", r#"{"user_id":"x"}"#);
    assert_eq!(status, 403);
}

#[test]
fn secrets_never_reach_the_store_logs_or_metrics() {
    let (_up, gw) = start("strict");
    const PASSWORD: &str = "hunter2-Very-Secret";
    const CARD: &str = "4111111111111111";
    const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLXZhbHVlMTIz";
    const COOKIE: &str = "s3cr3t-session-value-987";
    let headers = format!("Authorization: Bearer {BEARER}\r\nCookie: session={COOKIE}\r\n");
    // Blocked (SQL injection) with every kind of secret in the query.
    let target = format!(
        "/login?password={PASSWORD}&card={CARD}&cc=4111%201111%201111%201111&token={BEARER}&q=1'%20OR%20'1'='1"
    );
    assert_eq!(send(&gw, "GET", &target, &headers).0, 403);
    // Audited (DELETE on the admin path) with the same.
    let target = format!("/api/admin/users/9?password={PASSWORD}&card={CARD}");
    assert_eq!(send(&gw, "DELETE", &target, &headers).0, 200);
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events", "");
    assert_eq!(v["count"], 1, "{v}");
    let q = v["events"][0]["details"]["query"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(q.contains("password=[masked]"), "{q}");
    assert!(q.contains("card=[masked]") || q.contains("****1111"), "{q}");
    let metrics = metrics_text(gw.admin);
    let log = gw.stderr.lock().unwrap().join("\n");
    let dir = gw.dir.path().to_path_buf();
    let gw = gw.restart(false); // a clean stop flushes everything to disk
    let files = files_under(&dir);
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("data")),
        "the store is in the directory"
    );
    for secret in [PASSWORD, CARD, "4111%201111%201111%201111", BEARER, COOKIE] {
        assert!(!metrics.contains(secret), "metrics hold {secret}");
        assert!(!log.contains(secret), "the log holds {secret}");
        for f in &files {
            let bytes = std::fs::read(f).unwrap_or_default();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds {secret}",
                f.display()
            );
        }
    }
    drop(gw);
}

#[test]
fn encryption_at_rest_seals_every_record_and_verify_needs_no_key() {
    let up = Upstream::start();
    let dir = TempDir::new("encrypted");
    let cfg = format!(
        r#"listen:
  - addr: "127.0.0.1:0"
upstream:
  url: "http://{}"
store: {{path: data, sync: strict}}
audit:
  encryption_key: "{}"
  policies:
    - match: {{method: DELETE, path: "/api/admin/**"}}
      category: admin_action
admin:
  listen: "127.0.0.1:0"
  tokens:
    - token: "{TOKEN}"
      role: admin
"#,
        up.addr,
        "5a".repeat(32)
    );
    let gw = Gateway::start_in(dir, &cfg);
    assert_eq!(
        send(&gw, "DELETE", "/api/admin/zebra-unique-resource/77", "").0,
        200
    );
    let (_, v) = admin(&gw, "GET", "/api/v1/audit/records", "");
    assert_eq!(
        v["records"][0]["resource_type"], "zebra-unique-resource",
        "readable through the gateway: {v}"
    );
    let dir = gw.stop(); // the store is free for the CLI
    let data = dir.path().join("data");
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for needle in ["zebra-unique-resource", "admin_action"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds {needle} in clear",
                f.display()
            );
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn b64url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    s
}

fn hs256(secret: &[u8], header: &str, claims: &str) -> String {
    let (h, p) = (b64url(header.as_bytes()), b64url(claims.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let sig = ring::hmac::sign(&key, format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", b64url(sig.as_ref()))
}

#[test]
fn the_identity_layer_names_users_in_audit_records_and_reports_bad_tokens() {
    const SECRET: &str = "jwt-signing-secret-0123456789abcdef";
    let up = Upstream::start();
    let dir = TempDir::new("identity");
    let cfg = config(
        up.addr,
        &format!(
            "store: {{path: data, sync: strict}}\nidentity:\n  jwt: {{verify: {{hs256_secret: \"{SECRET}\"}}, user_claim: sub}}\n{AUDIT_DELETES}"
        ),
        "admin",
    );
    let gw = Gateway::start_in(dir, &cfg);
    let good = hs256(
        SECRET.as_bytes(),
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"sub":"alice","exp":4102444800}"#,
    );
    let forged = hs256(
        b"not-the-secret-000000000000000000",
        r#"{"alg":"HS256"}"#,
        r#"{"sub":"root"}"#,
    );
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none"}"#),
        b64url(br#"{"sub":"root"}"#)
    );
    assert_eq!(
        send(
            &gw,
            "DELETE",
            "/api/admin/users/1",
            &format!("Authorization: Bearer {good}\r\n")
        )
        .0,
        200
    );
    assert_eq!(
        send(
            &gw,
            "DELETE",
            "/api/admin/users/2",
            &format!("Authorization: Bearer {forged}\r\n")
        )
        .0,
        200
    );
    assert_eq!(
        send(
            &gw,
            "GET",
            "/",
            &format!("Authorization: Bearer {none}\r\n")
        )
        .0,
        200
    );
    let (_, v) = admin(&gw, "GET", "/api/v1/audit/records", "");
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs[0]["user"], "alice", "{v}");
    assert!(
        recs[1].get("user").is_none(),
        "a forged token names nobody: {v}"
    );
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events?type=jwt_alg_none", "");
    assert_eq!(v["count"], 1, "{v}");
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events?type=jwt_invalid", "");
    assert_eq!(v["count"], 1, "{v}");
    // The user's audit records are found by user.
    let (_, v) = admin(&gw, "GET", "/api/v1/audit/records?user=alice", "");
    assert_eq!(v["count"], 1, "{v}");
}

#[test]
fn geoip_countries_are_recorded_and_denied_countries_refused() {
    #[derive(serde::Serialize)]
    struct C {
        iso_code: &'static str,
    }
    #[derive(serde::Serialize)]
    struct R {
        country: C,
    }
    let up = Upstream::start();
    let dir = TempDir::new("geo");
    let mut w = mmdb_writer::Writer::new("Test-Country");
    w.insert(
        "203.0.113.0/24".parse::<ipnet::IpNet>().unwrap(),
        &R {
            country: C { iso_code: "FR" },
        },
    )
    .unwrap();
    w.insert(
        "198.51.100.0/24".parse::<ipnet::IpNet>().unwrap(),
        &R {
            country: C { iso_code: "US" },
        },
    )
    .unwrap();
    std::fs::write(dir.path().join("geo.mmdb"), w.to_bytes().unwrap()).unwrap();
    let cfg = config(
        up.addr,
        &format!(
            "trusted_proxies: [\"127.0.0.1/32\"]\ngeoip: {{database: geo.mmdb, deny_countries: [fr]}}\nstore: {{path: data, sync: strict}}\n{AUDIT_DELETES}"
        ),
        "admin",
    );
    let gw = Gateway::start_in(dir, &cfg);
    assert_eq!(
        send(&gw, "GET", "/", "X-Forwarded-For: 203.0.113.8\r\n").0,
        403
    );
    assert!(
        up.requests().is_empty(),
        "refused before reaching the upstream"
    );
    assert_eq!(
        send(
            &gw,
            "DELETE",
            "/api/admin/users/3",
            "X-Forwarded-For: 198.51.100.8\r\n"
        )
        .0,
        200
    );
    assert_eq!(
        send(&gw, "GET", "/", "X-Forwarded-For: 192.0.2.8\r\n").0,
        200,
        "unknown countries pass a deny list"
    );
    let (_, v) = admin(&gw, "GET", "/api/v1/security/events?type=geo_blocked", "");
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["events"][0]["geo"], "FR");
    let (_, v) = admin(&gw, "GET", "/api/v1/audit/records", "");
    assert_eq!(v["records"][0]["geo"], "US", "{v}");
}

#[test]
fn retention_sweeps_old_records_and_the_chain_still_verifies() {
    use portcullis::store::crypto::Keyring;
    use portcullis::store::model::{AuditIn, EventIn};
    use portcullis::store::writer::{self, OnError, SyncMode, WriterConfig};
    use std::sync::Arc;
    let up = Upstream::start();
    let dir = TempDir::new("retention");
    // A store with 100-day-old records (written offline, as a long-running
    // gateway would have), then a gateway with a 30-day retention on it.
    {
        let store =
            portcullis::store::open(&dir.path().join("data"), portcullis::store::Engine::Sled)
                .unwrap();
        let ring = Arc::new(Keyring::load(&*store, None).unwrap());
        let h = writer::start(
            store,
            ring,
            WriterConfig {
                sync: SyncMode::Strict,
                on_error: OnError::FailOpen,
                queue: 64,
                instance_id: "old".into(),
                checkpoint_every: 5,
                masker: Arc::new(|_| {}),
                observer: None,
            },
        )
        .unwrap();
        let old = portcullis::store::keys::now_micros() - 100 * 86_400_000_000;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..10u64 {
                let a = AuditIn {
                    ts_us: old + i,
                    category: "data_access".into(),
                    action: "old_read".into(),
                    outcome: "success".into(),
                    ..AuditIn::default()
                };
                h.audit(a).await.unwrap();
                let e = EventIn {
                    ts_us: old + i,
                    kind: "xss_attempt".into(),
                    severity: 3,
                    action: "block".into(),
                    ..EventIn::default()
                };
                h.event_acked(e).await.unwrap();
            }
        });
        h.stop_blocking().unwrap();
    }
    let cfg = config(
        up.addr,
        "store: {path: data, sync: strict}\naudit:\n  retention_days: 30\n  checkpoint_every: 5\n  policies:\n    - match: {method: DELETE, path: \"/api/admin/**\"}\n      category: admin_action\n",
        "admin",
    );
    let gw = Gateway::start_in(dir, &cfg);
    // The sweep runs at start, in the writer, events first and audit records
    // last (in bounded batches): wait (bounded) until both are gone. All ten
    // audit records go: the chain is cut at the checkpoint of record 10.
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let (_, ev) = admin(&gw, "GET", "/api/v1/security/events?type=xss_attempt", "");
        let (_, au) = admin(&gw, "GET", "/api/v1/audit/records?action=old_read", "");
        if ev["count"] == 0 && au["count"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old records not swept: events {ev}, audit {au}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50)); // polling the API, not synchronising
    }
    assert_eq!(send(&gw, "DELETE", "/api/admin/users/5", "").0, 200);
    let (_, v) = admin(&gw, "GET", "/api/v1/audit/verify", "");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(
        (v["first"].as_u64(), v["records"].as_u64()),
        (Some(11), Some(1)),
        "{v}"
    );
}
