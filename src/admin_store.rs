//! Admin API over the store: security events, blocked addresses, audit
//! records, chain verification, erasure. Reads run on the blocking pool (the
//! engines do file I/O); every change made here is itself audited
//! (`admin_action`, with the token's role and the caller's address).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::config::Role;
use crate::security::{Security, canonical_cidr};
use crate::store::chain;
use crate::store::keys;
use crate::store::model::{AuditIn, BlockedIp, EventIn};
use crate::store::query::{self, AuditFilter, EventFilter};
use crate::store::writer;

/// An answer: status and JSON body.
pub struct Answer(pub StatusCode, pub String);

fn ok(v: Value) -> Answer {
    Answer(StatusCode::OK, format!("{v}\n"))
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Answer {
    Answer(status, format!("{}\n", json!({ "error": msg.to_string() })))
}

/// `application/x-www-form-urlencoded` query parameters (last one wins).
pub fn query_params(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(pct_decode(k), pct_decode(v));
    }
    out
}

/// `%XX` and `+` decoded (the rule engine's URL decoding, lossy UTF-8).
fn pct_decode(s: &str) -> String {
    let d = crate::rules::transform::Transform::UrlDecode.apply(s.as_bytes());
    String::from_utf8_lossy(&d).into_owned()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

const BODY_MAX: usize = 64 * 1024;

async fn json_body(body: Incoming) -> Result<Value, Answer> {
    let limited = http_body_util::Limited::new(body, BODY_MAX);
    let bytes: Bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over {BODY_MAX} bytes"),
            ));
        }
    };
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("body is not valid JSON: {e}"),
        )
    })
}

fn need(role: Role, min: Role) -> Result<(), Answer> {
    if role < min {
        let name = match min {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        };
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("{name} role required"),
        ));
    }
    Ok(())
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

/// Who did an admin change, for its audit record.
pub struct Caller {
    pub role: Role,
    pub peer: SocketAddr,
}

impl Caller {
    fn audit(
        &self,
        action: &str,
        rtype: &str,
        rid: &str,
        changes: Value,
        outcome: &str,
    ) -> AuditIn {
        AuditIn {
            category: "admin_action".into(),
            action: action.into(),
            outcome: outcome.into(),
            ip: Some(self.peer.ip()),
            role: Some(role_name(self.role).into()),
            resource_type: Some(rtype.into()),
            resource_id: Some(rid.into()),
            changes,
            endpoint: Some("admin_api".into()),
            ..AuditIn::default()
        }
    }
}

/// Routes a store request; `None` when the path is not ours.
pub async fn route(
    sec: &Arc<Security>,
    caller: &Caller,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Incoming,
) -> Option<Answer> {
    let q = query_params(query);
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(3).collect();
    // path = /api/v1/<segs...>
    let r = match (method, segs.as_slice()) {
        (&Method::GET, ["security", "events"]) => list_events(sec, &q).await,
        (&Method::GET, ["security", "metrics", "summary"]) => summary(sec),
        (&Method::GET, ["security", "statistics"]) => statistics(sec, &q).await,
        (&Method::GET, ["security", "events", id]) => get_event(sec, id).await,
        (&Method::POST, ["security", "alerts"]) => match need(caller.role, Role::Operator) {
            Ok(()) => post_alert(sec, caller, body).await,
            Err(a) => a,
        },
        (&Method::GET, ["security", "blocked-ips"]) => {
            let list = sec.blocklist.list(keys::now_micros());
            ok(
                json!({ "blocked_ips": list.iter().map(block_json).collect::<Vec<_>>(), "count": list.len() }),
            )
        }
        (&Method::POST, ["security", "blocked-ips"]) => match need(caller.role, Role::Operator) {
            Ok(()) => post_block(sec, caller, body).await,
            Err(a) => a,
        },
        (&Method::DELETE, ["security", "blocked-ips", ip]) => {
            match need(caller.role, Role::Operator) {
                Ok(()) => delete_block(sec, caller, &pct_decode(ip)).await,
                Err(a) => a,
            }
        }
        (&Method::GET, ["security", "incidents"]) => list_incidents(sec, &q).await,
        (&Method::GET, ["security", "incidents", id]) => get_incident(sec, id).await,
        (&Method::POST, ["security", "incidents", id, op]) => {
            match need(caller.role, Role::Operator) {
                Ok(()) => change_incident(sec, caller, id, op, body).await,
                Err(a) => a,
            }
        }
        (&Method::GET, ["audit", "records"]) => list_audit(sec, &q).await,
        (&Method::POST, ["audit", "records"]) => match need(caller.role, Role::Operator) {
            Ok(()) => post_audit(sec, caller, body).await,
            Err(a) => a,
        },
        (&Method::GET, ["audit", "records", id]) => get_audit(sec, id).await,
        (&Method::GET, ["audit", "verify"]) => verify(sec, &q).await,
        (&Method::GET, ["audit", "statistics"]) => audit_statistics(sec).await,
        (&Method::POST, ["privacy", "erasure"]) => match need(caller.role, Role::Admin) {
            Ok(()) => erasure(sec, caller, body).await,
            Err(a) => a,
        },
        _ => return None,
    };
    Some(r)
}

fn block_json(b: &BlockedIp) -> Value {
    json!({
        "ip": b.cidr,
        "reason": b.reason,
        "source": b.source,
        "blocked_at": keys::rfc3339_micros(b.created_us),
        "expires_at": b.expires_us.map(keys::rfc3339_micros),
    })
}

async fn list_events(sec: &Arc<Security>, q: &HashMap<String, String>) -> Answer {
    let mut f = EventFilter {
        limit: q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100)
            .clamp(1, 1000),
        kind: q.get("type").cloned(),
        user: q.get("user").cloned(),
        ..EventFilter::default()
    };
    if let Some(ip) = q.get("ip") {
        match ip.parse::<IpAddr>() {
            Ok(ip) => f.ip = Some(ip),
            Err(_) => return error(StatusCode::BAD_REQUEST, "ip: not an IP address"),
        }
    }
    if let Some(s) = q.get("severity") {
        match crate::severity::Severity::parse(s) {
            Some(s) => f.min_severity = Some(s.number()),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "severity: low, medium, high, critical or 1-4",
                );
            }
        }
    }
    if let Some(h) = q.get("hours") {
        match h.parse::<u64>() {
            Ok(h) => f.since_us = Some(keys::now_micros().saturating_sub(h * 3_600_000_000)),
            Err(_) => return error(StatusCode::BAD_REQUEST, "hours: a whole number"),
        }
    }
    let (store, ring) = (sec.store.store.clone(), sec.store.keyring.clone());
    match blocking(move || query::events(&*store, &ring, &f).map_err(|e| e.to_string())).await {
        Ok(mut events) => {
            events.iter_mut().for_each(seed_names);
            ok(json!({ "count": events.len(), "events": events }))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn get_event(sec: &Arc<Security>, id: &str) -> Answer {
    let (store, ring, id) = (
        sec.store.store.clone(),
        sec.store.keyring.clone(),
        id.to_string(),
    );
    match blocking(move || query::event(&*store, &ring, &id).map_err(|e| e.to_string())).await {
        Ok(Some(mut e)) => {
            seed_names(&mut e);
            ok(e)
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such event"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// An application-reported event (the seeds' alert shape: `type`,
/// `severity`, `message`, `user_id`, `ip_address`, `details`).
async fn post_alert(sec: &Arc<Security>, caller: &Caller, body: Incoming) -> Answer {
    let v = match json_body(body).await {
        Ok(v) => v,
        Err(a) => return a,
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let severity = match v.get("severity") {
        None => 2,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| (1..=4).contains(n))
            .unwrap_or(0),
        Some(Value::String(t)) => crate::severity::Severity::parse(t).map_or(0, |s| s.number()),
        _ => 0,
    };
    if severity == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "severity: low, medium, high, critical or 1-4",
        );
    }
    let kind = s("type")
        .or_else(|| s("event_type"))
        .unwrap_or_else(|| "app_alert".into());
    let message = s("message").or_else(|| s("description"));
    let extra = v
        .get("details")
        .or_else(|| v.get("metadata"))
        .cloned()
        .unwrap_or(Value::Null);
    if kind.is_empty()
        || kind.len() > 64
        || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            "type: 1-64 characters of [A-Za-z0-9_]",
        );
    }
    let ip = match s("ip_address").or_else(|| s("ip")) {
        Some(t) => match t.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => return error(StatusCode::BAD_REQUEST, "ip_address: not an IP address"),
        },
        None => None,
    };
    let ev = EventIn {
        kind,
        severity,
        ip,
        user: s("user_id").or_else(|| s("user")),
        action: "log".into(),
        details: json!({
            "message": message,
            "details": extra,
            "reported_by": role_name(caller.role),
            "reporter_ip": caller.peer.ip().to_string(),
        }),
        ..EventIn::default()
    };
    match sec.store.event_acked(ev).await {
        Ok(r) => Answer(
            StatusCode::CREATED,
            format!("{}\n", json!({ "event_id": r.id, "status": "recorded" })),
        ),
        Err(e) => store_error(e),
    }
}

fn store_error(e: writer::WriteError) -> Answer {
    error(StatusCode::SERVICE_UNAVAILABLE, e)
}

async fn post_block(sec: &Arc<Security>, caller: &Caller, body: Incoming) -> Answer {
    let v = match json_body(body).await {
        Ok(v) => v,
        Err(a) => return a,
    };
    let target = v
        .get("ip")
        .or_else(|| v.get("cidr"))
        .and_then(Value::as_str);
    let Some(cidr) = target.and_then(canonical_cidr) else {
        return error(
            StatusCode::BAD_REQUEST,
            "give `ip` or `cidr` (e.g. 203.0.113.7 or 10.0.0.0/8)",
        );
    };
    let ttl = match v.get("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().map(std::time::Duration::from_secs),
        Some(Value::String(t)) => crate::config::parse_duration(t),
        _ => None,
    };
    if v.get("ttl").is_some_and(|t| !t.is_null()) && ttl.is_none_or(|d| d.is_zero()) {
        return error(
            StatusCode::BAD_REQUEST,
            "ttl: seconds or a duration such as 30m, 1h, 7d",
        );
    }
    let now = keys::now_micros();
    let b = BlockedIp {
        cidr: cidr.clone(),
        reason: v
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("blocked by an operator")
            .chars()
            .take(256)
            .collect(),
        source: "admin".into(),
        created_us: now,
        expires_us: ttl.map(|d| now.saturating_add(d.as_micros() as u64)),
    };
    let ops = match writer::block_ops(&b) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    if let Err(e) = sec.store.ops(ops, cidr.clone()).await {
        return store_error(e);
    }
    sec.blocklist.add(b.clone());
    let changes = json!({ "blocked": { "old": null, "new": block_json(&b) } });
    if let Err(e) = sec
        .store
        .audit(caller.audit("block_ip", "ip", &cidr, changes, "success"))
        .await
    {
        tracing::error!(error = %e, "the block was applied but its audit record could not be written");
    }
    Answer(StatusCode::CREATED, format!("{}\n", block_json(&b)))
}

async fn delete_block(sec: &Arc<Security>, caller: &Caller, ip: &str) -> Answer {
    let Some(cidr) = canonical_cidr(ip) else {
        return error(StatusCode::BAD_REQUEST, "not an IP address or CIDR");
    };
    let old = sec
        .blocklist
        .list(keys::now_micros())
        .into_iter()
        .find(|b| b.cidr == cidr);
    let Some(old) = old else {
        return error(StatusCode::NOT_FOUND, "not blocked");
    };
    if let Err(e) = sec
        .store
        .ops(writer::unblock_ops(&cidr), cidr.clone())
        .await
    {
        return store_error(e);
    }
    sec.blocklist.remove(&cidr);
    let changes = json!({ "blocked": { "old": block_json(&old), "new": null } });
    if let Err(e) = sec
        .store
        .audit(caller.audit("unblock_ip", "ip", &cidr, changes, "success"))
        .await
    {
        tracing::error!(error = %e, "the unblock was applied but its audit record could not be written");
    }
    ok(json!({ "status": "unblocked", "ip": cidr }))
}

fn audit_filter(q: &HashMap<String, String>) -> Result<AuditFilter, Answer> {
    let time = |k: &str| -> Result<Option<u64>, Answer> {
        match q.get(k) {
            None => Ok(None),
            Some(t) => keys::parse_time(t).map(Some).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("{k}: RFC 3339 time, date or unix seconds"),
                )
            }),
        }
    };
    let after_seq = match q.get("cursor") {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "cursor: as returned in next_cursor",
            )
        })?),
    };
    Ok(AuditFilter {
        since_us: time("since")?,
        until_us: time("until")?,
        user: q.get("user").cloned(),
        action: q.get("action").cloned(),
        resource: q.get("resource").cloned(),
        after_seq,
        limit: q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100)
            .clamp(1, 1000),
    })
}

async fn list_audit(sec: &Arc<Security>, q: &HashMap<String, String>) -> Answer {
    let f = match audit_filter(q) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let (store, ring) = (sec.store.store.clone(), sec.store.keyring.clone());
    let limit = f.limit;
    let r = blocking(move || {
        let mut out = Vec::new();
        let mut last = None;
        query::audit_records(&*store, &ring, &f, &mut |seq, m| {
            last = Some(seq);
            out.push(Value::Object(m));
            true
        })
        .map_err(|e| e.to_string())?;
        Ok((out, last))
    })
    .await;
    match r {
        Ok((records, last)) => {
            let next = if records.len() >= limit { last } else { None };
            ok(
                json!({ "count": records.len(), "records": records, "next_cursor": next.map(|s| s.to_string()) }),
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn get_audit(sec: &Arc<Security>, id: &str) -> Answer {
    let seq = id.strip_prefix("AUD-").unwrap_or(id).parse::<u64>().ok();
    let Some(seq) = seq else {
        return error(StatusCode::NOT_FOUND, "no such audit record");
    };
    let (store, ring) = (sec.store.store.clone(), sec.store.keyring.clone());
    match blocking(move || query::audit_record(&*store, &ring, seq).map_err(|e| e.to_string()))
        .await
    {
        Ok(Some(r)) => ok(r),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such audit record"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn verify(sec: &Arc<Security>, q: &HashMap<String, String>) -> Answer {
    let mut anchors = Vec::new();
    if let Some(c) = q.get("checkpoint") {
        match chain::Link::parse(c) {
            Some(l) => anchors.push(l),
            None => return error(StatusCode::BAD_REQUEST, "checkpoint: N:HASH as logged"),
        }
    }
    // What is queued is written first, so the answer covers it.
    if let Err(e) = sec.store.sync().await {
        return store_error(e);
    }
    let store = sec.store.store.clone();
    match blocking(move || chain::verify(&*store, &anchors).map_err(|e| e.to_string())).await {
        Ok(rep) => {
            let body = json!({
                "valid": rep.problem.is_none(),
                "records": rep.records,
                "first": rep.first,
                "head": rep.last.map(|l| l.to_text()),
                "problem": rep.problem.as_ref().map(|p| json!({
                    "record": p.seq, "kind": p.kind.as_str(), "message": p.message,
                })),
            });
            Answer(
                if rep.problem.is_none() {
                    StatusCode::OK
                } else {
                    StatusCode::CONFLICT
                },
                format!("{body}\n"),
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn audit_statistics(sec: &Arc<Security>) -> Answer {
    let (store, ring) = (sec.store.store.clone(), sec.store.keyring.clone());
    let r = blocking(move || {
        let mut by_category: HashMap<String, u64> = HashMap::new();
        let mut by_outcome: HashMap<String, u64> = HashMap::new();
        let mut total = 0u64;
        query::audit_records(&*store, &ring, &AuditFilter::default(), &mut |_, m| {
            total += 1;
            let get = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string()
            };
            *by_category.entry(get("category")).or_default() += 1;
            *by_outcome.entry(get("outcome")).or_default() += 1;
            true
        })
        .map_err(|e| e.to_string())?;
        Ok(json!({ "total_records": total, "by_category": by_category, "by_outcome": by_outcome }))
    })
    .await;
    match r {
        Ok(v) => ok(v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn erasure(sec: &Arc<Security>, caller: &Caller, body: Incoming) -> Answer {
    let v = match json_body(body).await {
        Ok(v) => v,
        Err(a) => return a,
    };
    let Some(user) = v
        .get("user_id")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return error(StatusCode::BAD_REQUEST, "give `user_id`");
    };
    match sec.store.erase(user.to_string()).await {
        Ok(r) => {
            // The erasure's own audit record names the subject by pseudonym
            // only; this one adds who asked.
            let _ = sec
                .store
                .audit(caller.audit("erasure_request", "subject", &r.id, Value::Null, "success"))
                .await;
            ok(json!({ "status": "erased", "audit_record": r.id }))
        }
        Err(e) => store_error(e),
    }
}

async fn list_incidents(sec: &Arc<Security>, q: &HashMap<String, String>) -> Answer {
    use crate::incidents::Status;
    let status = match q.get("status") {
        None => None,
        Some(s) => match Status::parse(s) {
            Some(s) => Some(s),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "status: new, assigned, investigating, resolved or false_positive",
                );
            }
        },
    };
    let severity = match q.get("severity") {
        None => None,
        Some(s) => match crate::severity::Severity::parse(s) {
            Some(s) => Some(s),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "severity: low, medium, high, critical or 1-4",
                );
            }
        },
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let store = sec.store.store.clone();
    let r = blocking(move || {
        crate::incidents::list(&*store, status, severity, limit).map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(list) => ok(json!({ "count": list.len(), "incidents": list })),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn get_incident(sec: &Arc<Security>, id: &str) -> Answer {
    let (store, id) = (sec.store.store.clone(), id.to_string());
    match blocking(move || crate::incidents::get(&*store, &id).map_err(|e| e.to_string())).await {
        Ok(Some(i)) => ok(json!(i)),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such incident"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `assign {"assignee"}`, `resolve {"resolution", "false_positive"}`,
/// `status {"status", "note"}`, `notes {"note"}`: each is checked by the
/// incident workflow, stored, and audited with its old and new values.
async fn change_incident(
    sec: &Arc<Security>,
    caller: &Caller,
    id: &str,
    op: &str,
    body: Incoming,
) -> Answer {
    use crate::incidents::Status;
    let v = match json_body(body).await {
        Ok(v) => v,
        Err(a) => return a,
    };
    let (store, iid) = (sec.store.store.clone(), id.to_string());
    let mut inc =
        match blocking(move || crate::incidents::get(&*store, &iid).map_err(|e| e.to_string()))
            .await
        {
            Ok(Some(i)) => i,
            Ok(None) => return error(StatusCode::NOT_FOUND, "no such incident"),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    let before =
        json!({ "status": inc.status, "assignee": inc.assignee, "resolution": inc.resolution });
    let by = role_name(caller.role);
    let now = keys::now_micros();
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let result = {
        let Ok(mut c) = sec.correlator.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "incident state unavailable",
            );
        };
        match op {
            "assign" => c.assign(&mut inc, &text("assignee"), by, now),
            "resolve" => c.resolve(
                &mut inc,
                &text("resolution"),
                v.get("false_positive")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                by,
                now,
            ),
            "status" => match Status::parse(&text("status")) {
                Some(s) => {
                    let note = text("note");
                    c.set_status(
                        &mut inc,
                        s,
                        (!note.is_empty()).then_some(note.as_str()),
                        by,
                        now,
                    )
                }
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "status: new, assigned, investigating, resolved or false_positive",
                    );
                }
            },
            "notes" => c.add_note(&mut inc, &text("note"), by, now),
            _ => return error(StatusCode::NOT_FOUND, "unknown incident action"),
        }
    };
    if let Err(e) = result {
        return error(StatusCode::CONFLICT, e);
    }
    let ops = match crate::incidents::to_ops(&inc) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    if let Err(e) = sec.store.ops(ops, inc.id.clone()).await {
        return store_error(e);
    }
    let after =
        json!({ "status": inc.status, "assignee": inc.assignee, "resolution": inc.resolution });
    let changes = json!({ "old": before, "new": after });
    if let Err(e) = sec
        .store
        .audit(caller.audit(
            &format!("incident_{op}"),
            "incident",
            &inc.id,
            changes,
            "success",
        ))
        .await
    {
        tracing::error!(error = %e, "incident changed but its audit record could not be written");
    }
    ok(json!(inc))
}

/// An application-reported audit record (the application knows the user
/// and the old and new values, which a proxy cannot see).
async fn post_audit(sec: &Arc<Security>, caller: &Caller, body: Incoming) -> Answer {
    let v = match json_body(body).await {
        Ok(v) => v,
        Err(a) => return a,
    };
    let mut rec: AuditIn = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not an audit record: {e}")),
    };
    if !crate::store::model::AUDIT_CATEGORIES.contains(&rec.category.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "category: one of {}",
                crate::store::model::AUDIT_CATEGORIES.join(", ")
            ),
        );
    }
    if rec.action.is_empty() || rec.action.len() > 256 {
        return error(StatusCode::BAD_REQUEST, "action: 1 to 256 characters");
    }
    if !["success", "failure", "denied"].contains(&rec.outcome.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "outcome: success, failure or denied",
        );
    }
    // Who reported it is kept apart from who acted.
    let reporter = json!({ "reported_by": role_name(caller.role), "reporter_ip": caller.peer.ip().to_string() });
    rec.details = match rec.details.take() {
        Value::Null => reporter,
        d => json!({ "app": d, "reporter": reporter }),
    };
    rec.ts_us = 0;
    match sec.store.audit(rec).await {
        Ok(r) => Answer(
            StatusCode::CREATED,
            format!(
                "{}\n",
                json!({ "id": r.id, "seq": r.seq, "status": "recorded" })
            ),
        ),
        Err(e) => store_error(e),
    }
}

/// The seeds' field names next to ours, so dashboards written for the
/// in-application API read these events unchanged.
fn seed_names(e: &mut Value) {
    let Value::Object(m) = e else { return };
    for (ours, theirs) in [
        ("id", "event_id"),
        ("type", "event_type"),
        ("ts", "timestamp"),
        ("ip", "source_ip"),
        ("user", "user_id"),
        ("path", "endpoint"),
    ] {
        if let Some(v) = m.get(ours).cloned() {
            m.insert(theirs.into(), v);
        }
    }
    let blocked = m.get("action").and_then(Value::as_str) == Some("block");
    m.insert("blocked".into(), Value::Bool(blocked));
    if let Some(msg) = m.get("details").and_then(|d| d.get("message")).cloned() {
        m.insert("description".into(), msg);
    }
}

/// `GET /api/v1/security/metrics/summary`, the seeds' dashboard summary.
/// `threat_level` and `security_score` are derived from the last day's
/// critical events, open incidents and their worst severity.
fn summary(sec: &Arc<Security>) -> Answer {
    let now = keys::now_micros();
    let (total, critical) = sec.store.stats.last_day(now);
    let (open, worst) = match sec.correlator.lock() {
        Ok(c) => (c.open_incidents() as u64, c.worst_open_severity()),
        Err(_) => (0, None),
    };
    let blocked = sec.blocklist.list(now).len();
    use crate::severity::Severity;
    let threat = match (critical, worst) {
        (_, Some(Severity::Critical)) => "critical",
        (c, _) if c > 0 => "high",
        (_, Some(Severity::High)) => "high",
        (_, Some(_)) => "medium",
        _ if total > 0 => "low",
        _ => "low",
    };
    // 1.0 is quiet; each critical event of the day and each open incident
    // (weighted by severity) takes some off, never below 0.
    let weight = |s: Option<Severity>| s.map_or(0.0, |s| f64::from(s.number()));
    let score = (1.0 - 0.02 * critical as f64 - 0.01 * open as f64 * weight(worst)).clamp(0.0, 1.0);
    ok(json!({
        "total_events_24h": total,
        "critical_events_24h": critical,
        "active_incidents": open,
        "blocked_ips_count": blocked,
        "threat_level": threat,
        "security_score": (score * 100.0).round() / 100.0,
        "last_updated": keys::rfc3339_micros(now),
    }))
}

/// Events at most scanned by one statistics call.
const STATS_SCAN_MAX: usize = 200_000;

/// `GET /api/v1/security/statistics?hours=24`: events by type, severity and
/// action, the top sources, and incidents by status.
async fn statistics(sec: &Arc<Security>, q: &HashMap<String, String>) -> Answer {
    let hours: u64 = q
        .get("hours")
        .and_then(|h| h.parse().ok())
        .unwrap_or(24)
        .clamp(1, 24 * 366);
    let since = keys::now_micros().saturating_sub(hours * 3_600_000_000);
    let (store, ring) = (sec.store.store.clone(), sec.store.keyring.clone());
    let r = blocking(move || {
        let f = EventFilter { since_us: Some(since), limit: STATS_SCAN_MAX, ..EventFilter::default() };
        let events = query::events(&*store, &ring, &f).map_err(|e| e.to_string())?;
        let mut by_type: HashMap<String, u64> = HashMap::new();
        let mut by_severity: HashMap<String, u64> = HashMap::new();
        let mut by_action: HashMap<String, u64> = HashMap::new();
        let mut by_ip: HashMap<String, u64> = HashMap::new();
        for e in &events {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("unknown").to_string();
            *by_type.entry(s("type")).or_default() += 1;
            *by_action.entry(s("action")).or_default() += 1;
            let sev = e
                .get("severity")
                .and_then(Value::as_u64)
                .and_then(|n| u8::try_from(n).ok())
                .and_then(crate::severity::Severity::from_number)
                .map_or("unknown", |s| s.as_str());
            *by_severity.entry(sev.to_string()).or_default() += 1;
            if let Some(ip) = e.get("ip").and_then(Value::as_str) {
                *by_ip.entry(ip.to_string()).or_default() += 1;
            }
        }
        let mut top: Vec<(String, u64)> = by_ip.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(10);
        let mut incidents: HashMap<String, u64> = HashMap::new();
        for i in crate::incidents::list(&*store, None, None, 0).map_err(|e| e.to_string())? {
            *incidents.entry(i.status.as_str().to_string()).or_default() += 1;
        }
        Ok(json!({
            "hours": hours,
            "total_events": events.len(),
            "truncated": events.len() >= STATS_SCAN_MAX,
            "events_by_type": by_type,
            "events_by_severity": by_severity,
            "events_by_action": by_action,
            "top_source_ips": top.iter().map(|(ip, n)| json!({"ip": ip, "events": n})).collect::<Vec<_>>(),
            "incidents_by_status": incidents,
        }))
    })
    .await;
    match r {
        Ok(v) => ok(v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
