//! The phase driver: every request runs the same named phases in order.
//!
//! | phase            | contract                                                        |
//! |------------------|-----------------------------------------------------------------|
//! | `early_request`  | request id, client IP, config snapshot loaded once               |
//! | `check_protocol` | framing verdict, Host, header syntax, URI and size limits → 4xx  |
//! | *(headers)*      | behaviour counters and header rules plug in here (later issues)  |
//! | `read_body`      | bounded prefix read, framing verified before forwarding          |
//! | *(body, decide)* | body rules and the anomaly verdict plug in here                  |
//! | `forward`        | route, header hygiene, pooled upstream call, WebSocket tunnel    |
//! | `respond`        | response hygiene, request id                                     |
//! | `log`            | always runs (on drop of the response body): access log, metrics |
//!
//! A phase returns `Result<_, Reject>`; a refusal is a value turned into a
//! response in exactly one place (`respond::reject_response`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::accesslog::{AccessLog, push_json_str, push_rfc3339};
use crate::body::{BodyError, BodyLimits, ForwardBody, Prefix, read_prefix};
use crate::config::{Config, RouteConfig};
use crate::framing::ConnShared;
use crate::metrics::Metrics;
use crate::request_id;
use crate::request_view::{ContentCoding, RequestView, ViewLimits};
use crate::respond::{BlockInfo, Reject, reject_response, wants_html};
use crate::rules::engine::{EngineScratch, Evaluation, RequestFacts, RuleSet, Verdict};
use crate::rules::schema::Mode;
use crate::security::Security;
use crate::store::model::{AuditIn, EventIn};
use crate::store::writer::{OnError, SyncMode, WriteError};
use crate::upstream::{self, ForwardInfo, Resolved, UpstreamClient};

/// Everything derived from one configuration; swapped whole on reload so a
/// request sees one consistent version from start to end.
pub struct Snapshot {
    pub cfg: Config,
    /// One pooled client per worker, so each worker's upstream connections
    /// live on its own event loop (no cross-thread wake-ups).
    pub clients: Vec<UpstreamClient>,
    pub default_upstream: Resolved,
    pub routes: Vec<(RouteConfig, Resolved)>,
    /// The compiled rule set; `None` without a `waf` section or with `mode: off`.
    pub rules: Option<Arc<RuleSet>>,
    /// The GeoIP database (re-read on reload).
    pub geo: Option<Arc<crate::geo::GeoDb>>,
}

/// Why a configuration could not become a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Rules(#[from] crate::config::ConfigErrors),
    #[error("{0}")]
    Other(String),
}

impl Snapshot {
    /// `workers`: the number of worker threads running (fixed at start).
    pub fn build(
        cfg: Config,
        echo: Option<SocketAddr>,
        workers: usize,
    ) -> Result<Snapshot, SnapshotError> {
        let no_echo = || SnapshotError::Other("the built-in echo upstream is not running".into());
        let default_upstream =
            Resolved::from_target(&cfg.upstream.target, echo).ok_or_else(no_echo)?;
        let mut routes = Vec::new();
        for r in &cfg.routes {
            let t = Resolved::from_target(&r.target, echo).ok_or_else(no_echo)?;
            routes.push((r.clone(), t));
        }
        let rules = match &cfg.waf {
            Some(w) => crate::rules::load::load(w, &cfg.path)?.map(Arc::new),
            None => None,
        };
        if let Some(set) = &rules {
            match (set.cache_stats(), &cfg.waf) {
                (Some(c), Some(w)) => tracing::info!(
                    rules = set.len(),
                    hash = set.hash(),
                    cache_hits = c.hits,
                    cache_misses = c.misses,
                    cache_errors = c.errors,
                    cache_dir = %w.compile_cache.as_deref().unwrap_or(std::path::Path::new("")).display(),
                    "rule set compiled"
                ),
                _ => tracing::info!(rules = set.len(), hash = set.hash(), "rule set compiled"),
            }
        }
        let geo = match &cfg.geoip {
            Some(g) => Some(Arc::new(
                crate::geo::GeoDb::open(g).map_err(SnapshotError::Other)?,
            )),
            None => None,
        };
        let clients = (0..workers.max(1))
            .map(|_| upstream::build_client(&cfg.upstream))
            .collect();
        Ok(Snapshot {
            cfg,
            clients,
            default_upstream,
            routes,
            rules,
            geo,
        })
    }
}

pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// Worker threads running (fixed at start; `workers` changes need a restart).
    pub workers: usize,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    pub echo_addr: Option<SocketAddr>,
    pub started: Instant,
    /// The store, blocked addresses and audit; `None` only in tools and tests
    /// that run the pipeline without a store.
    pub security: Option<Arc<Security>>,
}

/// Per-connection facts the phases need.
pub struct ConnInfo {
    /// Index of the worker thread serving this connection.
    pub worker: usize,
    pub peer: SocketAddr,
    pub tls: bool,
    pub shared: Arc<ConnShared>,
    /// HTTP/1 framing verdicts are queued for this connection.
    pub tracked: bool,
}

impl Gateway {
    pub fn new(
        snapshot: Snapshot,
        metrics: Arc<Metrics>,
        access_log: AccessLog,
        echo_addr: Option<SocketAddr>,
        security: Option<Arc<Security>>,
    ) -> Gateway {
        Gateway {
            workers: snapshot.clients.len(),
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            access_log,
            echo_addr,
            started: Instant::now(),
            security,
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Atomically replaces the running configuration; in-flight requests
    /// finish on the snapshot they started with.
    pub fn swap(&self, s: Snapshot) {
        self.snapshot.store(Arc::new(s));
    }

    /// Entry point for every request on a client connection.
    pub async fn handle(
        self: Arc<Self>,
        conn: Arc<ConnInfo>,
        req: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, Infallible> {
        // phase: early_request
        let snap = self.snapshot.load_full();
        conn.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let request_id = match req.headers().get("x-request-id") {
            Some(v) if request_id::is_valid(v.as_bytes()) => v.clone(),
            _ => request_id::generate(),
        };
        let client_ip =
            upstream::client_ip(conn.peer.ip(), req.headers(), &snap.cfg.trusted_proxies);
        let html = wants_html(req.headers());
        let mut rec = LogRecord {
            start: Instant::now(),
            ts: SystemTime::now(),
            request_id: request_id.clone(),
            client_ip,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            host: req.headers().get(header::HOST).cloned().or_else(|| {
                req.uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            tls: conn.tls,
            status: 0,
            bytes: 0,
            upstream: None,
            reason: None,
            waf: None,
            inspection_truncated: false,
            user: None,
            geo: None,
            jwt_problem: None,
        };
        let geo_refused = match &snap.geo {
            Some(db) => {
                rec.geo = db.country(client_ip);
                db.refuses(rec.geo.as_deref())
            }
            None => false,
        };
        if let Some(icfg) = &snap.cfg.identity {
            let trusted_peer = upstream::is_trusted(conn.peer.ip(), &snap.cfg.trusted_proxies);
            let now_s = rec
                .ts
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let id = crate::identity::identify(icfg, req.headers(), trusted_peer, now_s);
            rec.user = id.user;
            rec.jwt_problem = id.problem;
        }

        // phase: connection — a blocked address is refused before anything
        // of its request is read.
        let blocked = self
            .security
            .as_ref()
            .and_then(|s| s.blocklist.check(client_ip, Security::now()));
        let result = match blocked {
            None if geo_refused => {
                self.metrics
                    .blocked
                    .with_label_values(&["geo_blocked"])
                    .inc();
                Err(Reject::Blocked(Box::new(BlockInfo {
                    status: 403,
                    rule_ids: Vec::new(),
                    expose: false,
                    body: None,
                    reason: "geo_blocked",
                })))
            }
            Some(_) => {
                self.metrics
                    .blocked
                    .with_label_values(&["ip_blocked"])
                    .inc();
                Err(Reject::Blocked(Box::new(BlockInfo {
                    status: 403,
                    rule_ids: Vec::new(),
                    expose: false,
                    body: None,
                    reason: "ip_blocked",
                })))
            }
            None => {
                self.pipeline(&snap, &conn, req, &request_id, client_ip, &mut rec)
                    .await
            }
        };
        // phase: record — events and audit records (durable before the
        // answer in strict mode).
        let result = match &self.security {
            Some(sec) => self.record(sec, &snap, result, &rec).await,
            None => result,
        };
        let (status, body) = match result {
            Ok(resp) => {
                let (parts, inner) = resp.into_parts();
                (parts, inner)
            }
            Err(reject) => {
                self.metrics
                    .rejected
                    .with_label_values(&[reject.reason()])
                    .inc();
                rec.reason = Some(reject.reason());
                let (parts, b) = reject_response(&reject, &request_id, html).into_parts();
                (parts, Inner::Full(Some(b)))
            }
        };
        rec.status = status.status.as_u16();
        let guard = LogGuard {
            gw: self.clone(),
            shared: conn.shared.clone(),
            rec,
        };
        Ok(Response::from_parts(
            status,
            GatewayBody {
                inner: body,
                log: Some(Box::new(guard)),
            },
        ))
    }

    /// Turns a blocked or detected request into a security event, and a
    /// request matching `audit.policies` into an audit record. With
    /// `store.sync: strict` the answer waits until the record is durable;
    /// if it cannot be written, `on_store_error: fail_closed` answers 503
    /// instead of passing an unaudited action.
    async fn record(
        &self,
        sec: &Security,
        snap: &Snapshot,
        result: Result<Response<Inner>, Reject>,
        rec: &LogRecord,
    ) -> Result<Response<Inner>, Reject> {
        let strict = sec.store.sync == SyncMode::Strict;
        let failed = |e: &WriteError, what: &str| {
            self.metrics.store_failures.with_label_values(&[what]).inc();
            tracing::error!(error = %e, record = what, "could not store a record");
        };
        // Every event of the request (a bad token, a block, a detection) is
        // durable before the answer in strict mode, queued otherwise.
        let store_event = |ev: EventIn| async move {
            let stored = if strict {
                sec.store.event_acked(ev).await.map(drop)
            } else {
                sec.store.event(ev)
            };
            if let Err(e) = stored {
                failed(&e, "event");
            }
        };
        if let Some(p) = rec.jwt_problem {
            let ev = EventIn {
                kind: p.event_kind().into(),
                severity: p.severity(),
                ip: Some(rec.client_ip),
                request_id: rec.request_id.to_str().ok().map(str::to_owned),
                method: Some(rec.method.to_string()),
                path: Some(rec.uri.path().to_string()),
                action: "log".into(),
                ..EventIn::default()
            };
            self.count_event(&ev);
            store_event(ev).await;
        }
        match &result {
            Err(Reject::Blocked(b)) if b.reason != "ip_blocked" => {
                let ev = self.event_of(rec, b.reason);
                self.count_event(&ev);
                store_event(ev).await;
            }
            Ok(resp) => {
                if rec.waf.as_ref().is_some_and(|w| w.action == "detect") {
                    let ev = self.event_of(rec, "detect");
                    self.count_event(&ev);
                    store_event(ev).await;
                }
                let host = rec.host.as_ref().and_then(|h| h.to_str().ok());
                let policy = crate::security::audit_policy(
                    &snap.cfg,
                    rec.method.as_str(),
                    host,
                    rec.uri.path(),
                );
                if let Some(p) = policy {
                    let status = resp.status().as_u16();
                    let (rtype, rid) = crate::security::resource_of(rec.uri.path());
                    let a = AuditIn {
                        ts_us: 0,
                        category: p.category.clone(),
                        action: p
                            .action
                            .clone()
                            .unwrap_or_else(|| format!("{} {}", rec.method, rec.uri.path())),
                        outcome: crate::security::outcome(status).into(),
                        ip: Some(rec.client_ip),
                        user: rec.user.clone(),
                        geo: rec.geo.clone(),
                        resource_type: p.resource_type.clone().or(rtype),
                        resource_id: rid,
                        endpoint: Some(rec.uri.path().to_string()),
                        method: Some(rec.method.to_string()),
                        status: Some(status),
                        request_id: rec.request_id.to_str().ok().map(str::to_owned),
                        ..AuditIn::default()
                    };
                    self.metrics
                        .audit_events
                        .with_label_values(&[&a.category])
                        .inc();
                    if strict {
                        if let Err(e) = sec.store.audit(a).await {
                            failed(&e, "audit");
                            if sec.store.on_error == OnError::FailClosed {
                                return Err(Reject::ServiceUnavailable);
                            }
                        }
                    } else if let Err(e) = sec.store.audit_nowait(a) {
                        failed(&e, "audit");
                    }
                }
            }
            Err(_) => {}
        }
        result
    }

    fn count_event(&self, ev: &EventIn) {
        self.metrics
            .security_events
            .with_label_values(&[&ev.kind, ev.severity().as_str()])
            .inc();
    }

    /// The security event of a blocked (or detected) request.
    fn event_of(&self, rec: &LogRecord, why: &str) -> EventIn {
        let (kind, score, rule_ids) = match &rec.waf {
            Some(w) => (
                crate::security::event_kind(&w.pack),
                w.score,
                w.rule_ids.clone(),
            ),
            None => ("rule_match", 0, Vec::new()),
        };
        let kind = match why {
            "inspection_error" | "response_inspection_error" => "protocol_violation",
            "geo_blocked" => "geo_blocked",
            _ => kind,
        };
        // Severity: detect-only medium, a block high, a block at twice the
        // threshold or more critical (several independent strong matches).
        let severity = if why == "geo_blocked" {
            1
        } else if why == "detect" {
            2
        } else if score >= 10 {
            4
        } else {
            3
        };
        EventIn {
            ts_us: 0,
            kind: kind.into(),
            severity,
            ip: Some(rec.client_ip),
            user: rec.user.clone(),
            geo: rec.geo.clone(),
            request_id: rec.request_id.to_str().ok().map(str::to_owned),
            method: Some(rec.method.to_string()),
            host: rec
                .host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned),
            path: Some(rec.uri.path().to_string()),
            rule_ids,
            score,
            action: if why == "detect" { "detect" } else { "block" }.into(),
            status: None,
            user_agent: rec
                .user_agent
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned),
            details: match rec.uri.query() {
                Some(q) => serde_json::json!({ "query": q, "reason": why }),
                None => serde_json::json!({ "reason": why }),
            },
        }
    }

    async fn pipeline(
        &self,
        snap: &Snapshot,
        conn: &ConnInfo,
        mut req: Request<Incoming>,
        request_id: &HeaderValue,
        client_ip: IpAddr,
        rec: &mut LogRecord,
    ) -> Result<Response<Inner>, Reject> {
        check_protocol(snap, conn, &req)?;
        // phase: headers — behaviour counters and header rules plug in here.

        let websocket = is_websocket_upgrade(&req);
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();

        // phase: read_body (up to inspect_body_bytes when rules inspect it)
        let fwd_body = self.read_body(snap, body).await?;

        // phase: inspect + decide
        if let Some(rules) = &snap.rules {
            self.inspect(snap, rules, &parts, &fwd_body, rec)?;
        }

        // Kept for the response phase (exclusions match on them).
        let req_method = parts.method.clone();
        let req_uri = parts.uri.clone();
        let req_host = parts.headers.get(header::HOST).cloned();

        // phase: forward
        let mut resp = self
            .forward(
                snap, conn, parts, fwd_body, request_id, client_ip, websocket, rec,
            )
            .await?;

        // phase: respond
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(Reject::BadGateway("unexpected_101"));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            conn.shared.set_passthrough();
            tokio::spawn(async move {
                if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                    let mut c = TokioIo::new(c);
                    let mut u = TokioIo::new(u);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
            });
            upstream::strip_hop_by_hop(resp.headers_mut(), true);
        } else {
            upstream::strip_hop_by_hop(resp.headers_mut(), false);
        }
        let (mut parts, body) = resp.into_parts();
        // phase: response rules (status, headers, and a body prefix)
        let body = match &snap.rules {
            Some(rules) if parts.status != StatusCode::SWITCHING_PROTOCOLS => {
                let facts = RequestFacts {
                    method: req_method.as_str(),
                    path: req_uri.path(),
                    host: facts_host(req_host.as_ref(), &req_uri),
                    body_as_args: false,
                };
                self.inspect_response(snap, rules, &facts, &parts, body, rec)
                    .await?
            }
            _ => Inner::Upstream(body),
        };
        if !parts.headers.contains_key("x-request-id") {
            parts.headers.insert("x-request-id", request_id.clone());
        }
        Ok(Response::from_parts(parts, body))
    }

    /// phase: response rules. Scores the status, the headers and (when a
    /// rule looks at it and it is uncompressed text) the first
    /// `inspect_body_bytes` of the body against the outbound threshold. A
    /// blocked response is replaced by the block page; the body prefix that
    /// was read is sent first otherwise, then the rest streams.
    async fn inspect_response(
        &self,
        snap: &Snapshot,
        rules: &RuleSet,
        facts: &RequestFacts<'_>,
        parts: &http::response::Parts,
        body: Incoming,
        rec: &mut LogRecord,
    ) -> Result<Inner, Reject> {
        let plan = ResponsePlan::of(rules, &rec.method, parts);
        if !plan.any() {
            return Ok(Inner::Upstream(body));
        }
        let (frames, rest, prefix) = if plan.body {
            read_response_prefix(
                body,
                response_inspect_bytes(&snap.cfg),
                snap.cfg.upstream.timeout,
            )
            .await?
        } else {
            (std::collections::VecDeque::new(), Some(body), Bytes::new())
        };
        let status = parts.status.as_str().to_owned();
        let text = plan
            .body_text(&prefix, response_inspect_bytes(&snap.cfg))
            .unwrap_or_else(|e| {
                // The client gets what the upstream sent; the rules see its
                // status and headers only. Logged and counted.
                tracing::warn!(
                    coding = ?plan.coding,
                    reason = e.reason(),
                    "compressed response body does not decode: not inspected"
                );
                self.metrics
                    .upstream_errors
                    .with_label_values(&["undecodable_body"])
                    .inc();
                Bytes::new()
            });
        let fields = response_fields(&status, &parts.headers, plan.body.then_some(&text[..]));
        let ev = ENGINE_SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => rules.evaluate_response(&fields, facts, &mut s),
            Err(_) => rules.evaluate_response(&fields, facts, &mut EngineScratch::default()),
        });
        self.decide(
            snap,
            &ev,
            rules.outbound_threshold(),
            ("response_inspection_error", "response_rules"),
            rec,
        )?;
        Ok(Inner::Prefixed { frames, rest })
    }

    /// The verdict on one phase's evaluation, shared by the request and the
    /// response phase: counts the hits, adds them to the access line, and
    /// refuses with the block page when the score reaches `threshold` or a
    /// value could not be inspected (fail closed). `reasons` are the access
    /// line's reasons for those two refusals.
    fn decide(
        &self,
        snap: &Snapshot,
        ev: &Evaluation,
        threshold: u32,
        reasons: (&'static str, &'static str),
        rec: &mut LogRecord,
    ) -> Result<(), Reject> {
        for h in &ev.hits {
            self.metrics
                .rule_hits
                .with_label_values(&[&h.pack, mode_name(h.mode)])
                .inc();
        }
        let family = ev
            .hits
            .iter()
            .find(|h| h.mode == Mode::Block)
            .or(ev.hits.first())
            .map_or("unknown", |h| &*h.pack);
        // Merged with what an earlier phase recorded.
        let mut summary = rec.waf.take().unwrap_or(WafSummary {
            action: "pass",
            score: 0,
            rule_ids: Vec::new(),
            pack: String::new(),
        });
        if summary.pack.is_empty() || ev.verdict == Verdict::Block {
            summary.pack = family.to_string();
        }
        summary.rule_ids.extend(ev.hits.iter().map(|h| h.rule_id));
        summary.rule_ids.sort_unstable();
        summary.rule_ids.dedup();
        summary.score = summary.score.max(ev.score.max(ev.detect_score));
        let waf = snap.cfg.waf.as_ref();
        let block = |reason: &'static str, rule_ids: Vec<u32>| {
            Reject::Blocked(Box::new(BlockInfo {
                status: waf.map_or(403, |w| w.block_status),
                rule_ids,
                expose: waf.is_some_and(|w| w.expose_rule_ids),
                body: waf.and_then(|w| w.block_body.clone()),
                reason,
            }))
        };
        let (error_reason, rules_reason) = reasons;
        let outcome = if !ev.errors.is_empty() {
            // Not inspected is not clean: fail closed.
            tracing::warn!(errors = ?ev.errors, phase = error_reason, "could not be inspected; blocking");
            summary.action = "block";
            self.metrics
                .blocked
                .with_label_values(&["inspection_error"])
                .inc();
            Err(block(error_reason, Vec::new()))
        } else if ev.verdict == Verdict::Block {
            summary.action = "block";
            self.metrics.blocked.with_label_values(&[family]).inc();
            Err(block(rules_reason, ev.blocking_rule_ids()))
        } else {
            if ev.detect_score >= threshold && threshold > 0 {
                summary.action = "detect";
                self.metrics.would_block.with_label_values(&[family]).inc();
            }
            Ok(())
        };
        if !summary.rule_ids.is_empty() || summary.action != "pass" {
            rec.waf = Some(summary);
        }
        outcome
    }

    async fn read_body(&self, snap: &Snapshot, body: Incoming) -> Result<ForwardBody, Reject> {
        if body.is_end_stream() {
            return Ok(ForwardBody::Empty);
        }
        let l = &snap.cfg.limits;
        let limits = BodyLimits {
            max_bytes: l.max_body_bytes,
            read_timeout: l.body_read_timeout,
            min_rate: l.min_body_rate,
            min_rate_grace: l.min_body_rate_grace,
        };
        // With rules, the whole inspected prefix is read before deciding.
        let buffer = if snap.rules.is_some() {
            l.body_buffer_bytes.max(l.inspect_body_bytes)
        } else {
            l.body_buffer_bytes
        };
        match read_prefix(body, limits, buffer).await {
            Ok(Prefix::Complete(chunks)) if chunks.is_empty() => Ok(ForwardBody::Empty),
            // The rules read the body as one buffer; otherwise the pieces
            // go upstream as they came, without a copy.
            Ok(Prefix::Complete(chunks)) if snap.rules.is_some() => {
                Ok(ForwardBody::Full(Some(crate::body::concat(chunks))))
            }
            Ok(Prefix::Complete(chunks)) => Ok(ForwardBody::Pieces(chunks)),
            Ok(Prefix::Partial { chunks, rest }) => Ok(ForwardBody::Stream {
                chunks,
                rest: Box::new(rest),
            }),
            Err(e) => Err(body_reject(&e)),
        }
    }

    /// phase: inspect + decide — the request view, the rule engine, the verdict.
    fn inspect(
        &self,
        snap: &Snapshot,
        rules: &RuleSet,
        parts: &Parts,
        body: &ForwardBody,
        rec: &mut LogRecord,
    ) -> Result<(), Reject> {
        let t0 = Instant::now();
        let l = &snap.cfg.limits;
        let whole = |b: Bytes| {
            let over = b.len() > l.inspect_body_bytes;
            (
                if over {
                    b.slice(..l.inspect_body_bytes)
                } else {
                    b
                },
                over,
            )
        };
        let (bytes, truncated) = match body {
            ForwardBody::Empty => (Bytes::new(), false),
            ForwardBody::Full(b) => whole(b.clone().unwrap_or_default()),
            // Not made when rules are on (see `read_body`); joined if it is.
            ForwardBody::Pieces(chunks) => whole(crate::body::concat(chunks.clone())),
            ForwardBody::Stream { chunks, .. } => {
                let mut b = bytes::BytesMut::with_capacity(l.inspect_body_bytes);
                for c in chunks {
                    let room = l.inspect_body_bytes.saturating_sub(b.len());
                    b.extend_from_slice(&c[..c.len().min(room)]);
                }
                (b.freeze(), true)
            }
        };
        if truncated {
            match l.over_inspect_limit {
                crate::config::OverInspectLimit::Block => return Err(Reject::OverInspectLimit),
                crate::config::OverInspectLimit::Pass => rec.inspection_truncated = true,
            }
        }
        let vl = ViewLimits {
            max_body: l.inspect_body_bytes,
            ..ViewLimits::default()
        };
        let raw = bytes.clone();
        let built = if truncated {
            RequestView::build_prefix(parts, bytes, &vl)
        } else {
            RequestView::build_bytes(parts, bytes, &vl)
        };
        // A body the view cannot parse (malformed JSON or multipart, an
        // unknown charset or coding) is refused, but first the rules score
        // what can be read — the request without its body, and the raw body
        // bytes — so an attack wrapped in a malformed body is answered as
        // the attack it is (403, logged with its rules), not as a 400.
        let (view, unprocessable) = match built {
            Ok(v) => (v, None),
            Err(e) => {
                let reject = Reject::Unprocessable {
                    status: e.status(),
                    reason: e.reason(),
                };
                match bodyless_view(parts, &vl) {
                    Some(v) => (v, Some(reject)),
                    None => return Err(reject),
                }
            }
        };
        let mut fields = crate::rules::engine::view_fields(&view);
        if unprocessable.is_some() {
            add_unparseable_fields(&mut fields, parts, &raw);
        }
        let host = facts_host(parts.headers.get(header::HOST), &parts.uri);
        let facts = RequestFacts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            host,
            body_as_args: unprocessable.is_none() && view.body_as_args(),
        };
        let ev = ENGINE_SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => rules.evaluate(&fields, &facts, &mut s),
            Err(_) => rules.evaluate(&fields, &facts, &mut EngineScratch::default()),
        });
        self.metrics
            .inspection_duration
            .observe(t0.elapsed().as_secs_f64());
        self.decide(
            snap,
            &ev,
            rules.threshold(),
            ("inspection_error", "rules"),
            rec,
        )?;
        match unprocessable {
            Some(reject) => Err(reject),
            None => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        snap: &Snapshot,
        conn: &ConnInfo,
        parts: Parts,
        body: ForwardBody,
        request_id: &HeaderValue,
        client_ip: IpAddr,
        websocket: bool,
        rec: &mut LogRecord,
    ) -> Result<Response<Incoming>, Reject> {
        let Parts {
            method,
            uri,
            version,
            mut headers,
            ..
        } = parts;
        let host_hdr = headers.get(header::HOST).cloned();
        let host_str = host_hdr
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        let target = upstream::select(&snap.routes, &snap.default_upstream, host_str, uri.path());
        let up_uri = target
            .uri_for(uri.path_and_query())
            .map_err(|_| Reject::BadRequest("invalid_target"))?;

        upstream::strip_hop_by_hop(&mut headers, websocket);
        // Response rules that read bodies can decode gzip and deflate only:
        // the upstream is not invited to answer in br or zstd.
        if snap
            .rules
            .as_ref()
            .is_some_and(|r| r.looks_at(crate::rules::schema::TargetKind::ResponseBody))
        {
            upstream::narrow_accept_encoding(&mut headers);
        }
        // HTTP/2 carries the host in :authority; HTTP/1.0 may carry none.
        let host_value = match host_hdr {
            Some(h) => h,
            None => match uri.authority() {
                Some(a) => HeaderValue::from_str(a.as_str())
                    .map_err(|_| Reject::BadRequest("invalid_host"))?,
                None => HeaderValue::from_str(target.authority.as_str())
                    .map_err(|_| Reject::BadGateway("invalid_upstream"))?,
            },
        };
        headers.insert(header::HOST, host_value.clone());
        let peer_trusted = upstream::is_trusted(conn.peer.ip(), &snap.cfg.trusted_proxies);
        upstream::set_forwarding_headers(
            &mut headers,
            &ForwardInfo {
                peer: conn.peer.ip(),
                peer_trusted,
                scheme: if conn.tls { "https" } else { "http" },
                host: Some(&host_value),
                request_id,
            },
        );
        let _ = (client_ip, version);

        let mut up = Request::new(body);
        *up.method_mut() = method;
        *up.uri_mut() = up_uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = headers;

        let t0 = Instant::now();
        let res = tokio::time::timeout(
            snap.cfg.upstream.timeout,
            snap.clients[conn.worker % snap.clients.len()].request(up),
        )
        .await;
        let took = t0.elapsed();
        rec.upstream = Some(took);
        self.metrics.upstream_duration.observe(took.as_secs_f64());
        match res {
            Err(_) => {
                self.metrics
                    .upstream_errors
                    .with_label_values(&["timeout"])
                    .inc();
                Err(Reject::UpstreamTimeout)
            }
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                if let Some(be) = find_body_error(&e) {
                    return Err(body_reject(be));
                }
                let kind = if e.is_connect() {
                    "connect"
                } else {
                    "protocol"
                };
                self.metrics
                    .upstream_errors
                    .with_label_values(&[kind])
                    .inc();
                tracing::warn!(error = %e, upstream = %target.display, "upstream request failed");
                Err(if e.is_connect() {
                    Reject::UpstreamUnavailable
                } else {
                    Reject::BadGateway("upstream_error")
                })
            }
        }
    }
}

fn body_reject(e: &BodyError) -> Reject {
    match e {
        BodyError::TooLarge => Reject::PayloadTooLarge,
        BodyError::Timeout => Reject::RequestTimeout("body_read_timeout"),
        BodyError::TooSlow => Reject::RequestTimeout("body_too_slow"),
        BodyError::ForbiddenTrailer(_) => Reject::BadRequest("forbidden_trailer"),
        BodyError::Framing(_) => Reject::BadRequest("invalid_body_framing"),
    }
}

fn find_body_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return Some(b);
        }
        cur = err.source();
    }
    None
}

/// Only WebSocket upgrades are tunnelled. Any other `Upgrade` (notably
/// `h2c`, a known way to smuggle requests past proxies) is stripped as a
/// hop-by-hop header and the request is forwarded as plain HTTP/1.1.
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// phase: check_protocol — refuse what a lenient backend could read
/// differently from us (SPEC §4).
fn check_protocol(snap: &Snapshot, conn: &ConnInfo, req: &Request<Incoming>) -> Result<(), Reject> {
    let limits = &snap.cfg.limits;
    let h1 = req.version() <= Version::HTTP_11;
    if conn.tracked && h1 {
        let v = conn
            .shared
            .next_verdict()
            .ok_or(Reject::BadRequest("framing_desync"))?;
        if let Some(p) = v.problem {
            return Err(Reject::BadRequest(p.as_str()));
        }
        // A fragment is never part of a request target (RFC 9112 §3.2), and
        // `http::Uri` would drop it silently.
        if v.target.contains('#') {
            return Err(Reject::BadRequest("invalid_target"));
        }
        let same_target = !v.target.starts_with('/')
            || req.uri().path_and_query().map(|p| p.as_str()) == Some(&*v.target);
        if &*v.method != req.method().as_str() || !same_target {
            return Err(Reject::BadRequest("framing_desync"));
        }
    }
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(Reject::UriTooLong);
    }
    if req.method() == Method::CONNECT {
        return Err(Reject::MethodNotAllowed);
    }
    // Authority-form is for CONNECT only (refused above), asterisk-form for
    // OPTIONS only (RFC 9112 §3.2.3-4); forwarding either would silently
    // turn the target into `/`.
    let authority_form = req.uri().scheme().is_none() && req.uri().authority().is_some();
    if authority_form || (req.uri().path() == "*" && req.method() != Method::OPTIONS) {
        return Err(Reject::BadRequest("invalid_target"));
    }
    let headers = req.headers();
    if headers.len() > limits.max_headers {
        return Err(Reject::HeadersTooLarge("too_many_headers"));
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reject::BadRequest("duplicate_host"));
    }
    match host {
        None if req.version() == Version::HTTP_11 => {
            return Err(Reject::BadRequest("missing_host"));
        }
        None => {}
        Some(h) => {
            let valid = h
                .to_str()
                .ok()
                .filter(|s| !s.is_empty() && !s.contains('@'))
                .and_then(|s| s.parse::<http::uri::Authority>().ok())
                .is_some();
            if !valid {
                return Err(Reject::BadRequest("invalid_host"));
            }
        }
    }
    if let (Some(auth), Some(h)) = (req.uri().authority(), host)
        && !auth.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes())
    {
        return Err(Reject::BadRequest("host_mismatch"));
    }
    for name in headers.keys() {
        if name.as_str().contains('_') {
            return Err(Reject::BadRequest("underscore_in_header_name"));
        }
    }
    if h1 {
        let mut tes = headers.get_all(header::TRANSFER_ENCODING).iter();
        if let Some(te) = tes.next() {
            if !te.as_bytes().eq_ignore_ascii_case(b"chunked") || tes.next().is_some() {
                return Err(Reject::BadRequest("transfer_encoding_not_chunked"));
            }
            if headers.contains_key(header::CONTENT_LENGTH) {
                return Err(Reject::BadRequest("content_length_and_transfer_encoding"));
            }
        }
    }
    if let Some(n) = req.body().size_hint().exact()
        && n > limits.max_body_bytes
    {
        return Err(Reject::PayloadTooLarge);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Response body and the log phase

pub enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
    /// Frames already read from the upstream (the inspected prefix), then
    /// the rest of its body.
    Prefixed {
        frames: std::collections::VecDeque<Frame<Bytes>>,
        rest: Option<Incoming>,
    },
}

/// The body sent to the client. It counts bytes, and when it is dropped —
/// after the last byte, or when the client goes away — the log phase runs.
pub struct GatewayBody {
    inner: Inner,
    log: Option<Box<LogGuard>>,
}

impl GatewayBody {
    /// A body with no logging attached (admin API, tests).
    pub fn full(b: Bytes) -> GatewayBody {
        GatewayBody {
            inner: Inner::Full(Some(b)),
            log: None,
        }
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            Inner::Upstream(b) => Pin::new(b).poll_frame(cx),
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Prefixed { frames, rest } => match frames.pop_front() {
                Some(f) => Poll::Ready(Some(Ok(f))),
                None => match rest {
                    Some(b) => Pin::new(b).poll_frame(cx),
                    None => Poll::Ready(None),
                },
            },
        };
        if let (Poll::Ready(Some(Ok(f))), Some(log)) = (&r, &mut this.log)
            && let Some(d) = f.data_ref()
        {
            log.rec.bytes += d.len() as u64;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Full(b) => b.is_none(),
            Inner::Prefixed { frames, rest } => {
                frames.is_empty() && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Prefixed { frames, rest } => {
                let queued: u64 = frames
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.len() as u64)
                    .sum();
                let rest = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
                // Upper first: `set_lower` asserts lower <= upper.
                let mut h = SizeHint::new();
                if let Some(u) = rest.upper() {
                    h.set_upper(u.saturating_add(queued));
                }
                h.set_lower(rest.lower().saturating_add(queued));
                h
            }
        }
    }
}

pub struct LogRecord {
    start: Instant,
    ts: SystemTime,
    request_id: HeaderValue,
    client_ip: IpAddr,
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    tls: bool,
    status: u16,
    bytes: u64,
    upstream: Option<Duration>,
    reason: Option<&'static str>,
    waf: Option<WafSummary>,
    inspection_truncated: bool,
    /// From the identity layer (a verified JWT, a trusted proxy's header).
    user: Option<String>,
    /// The client's country (GeoIP).
    geo: Option<String>,
    /// A token that could not be verified (reported as an event).
    jwt_problem: Option<crate::identity::JwtProblem>,
}

/// What the rule engine decided, for the access line.
pub struct WafSummary {
    /// `block`, `detect` (would have blocked) or `pass` (hits below threshold).
    action: &'static str,
    score: u32,
    rule_ids: Vec<u32>,
    /// The pack of the deciding rule (event type).
    pack: String,
}

struct LogGuard {
    gw: Arc<Gateway>,
    shared: Arc<ConnShared>,
    rec: LogRecord,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        let took = self.rec.start.elapsed();
        let m = &self.gw.metrics;
        m.count_status(self.rec.status);
        m.request_duration.observe(took.as_secs_f64());
        let rec = &self.rec;
        self.gw.access_log.log_with(|s| access_line(s, rec, took));
    }
}

/// One JSON access line. The query string is not logged (it may carry
/// secrets); its length is.
fn access_line(s: &mut String, r: &LogRecord, took: Duration) {
    s.push_str("{\"ts\":\"");
    push_rfc3339(s, r.ts);
    s.push_str("\",\"type\":\"access\",\"request_id\":");
    push_json_str(s, r.request_id.to_str().unwrap_or(""));
    let _ = write!(s, ",\"client_ip\":\"{}\",\"method\":", r.client_ip);
    push_json_str(s, r.method.as_str());
    s.push_str(",\"host\":");
    push_json_str(
        s,
        r.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
    );
    s.push_str(",\"path\":");
    push_json_str(s, r.uri.path());
    let _ = write!(
        s,
        ",\"query_len\":{},\"proto\":\"{:?}\",\"tls\":{},\"status\":{},\"bytes_sent\":{},\"duration_ms\":",
        r.uri.query().map_or(0, str::len),
        r.version,
        r.tls,
        r.status,
        r.bytes,
    );
    push_millis(s, took);
    if let Some(u) = r.upstream {
        s.push_str(",\"upstream_ms\":");
        push_millis(s, u);
    }
    if let Some(reason) = r.reason {
        s.push_str(",\"reason\":");
        push_json_str(s, reason);
    }
    if let Some(w) = &r.waf {
        let _ = write!(
            s,
            ",\"waf_action\":\"{}\",\"waf_score\":{},\"waf_rules\":[",
            w.action, w.score
        );
        for (i, id) in w.rule_ids.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{id}");
        }
        s.push(']');
    }
    if r.inspection_truncated {
        s.push_str(",\"inspection_truncated\":true");
    }
    if let Some(ua) = r.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
        s.push_str(",\"user_agent\":");
        push_json_str(s, ua);
    }
    s.push_str("}\n");
}

/// Milliseconds with three decimals, without float formatting (hot path).
fn push_millis(s: &mut String, d: Duration) {
    let us = d.as_micros();
    let _ = write!(s, "{}.{:03}", us / 1000, us % 1000);
}

thread_local! {
    /// Per-worker matcher scratch (each worker is a single-threaded event loop).
    static ENGINE_SCRATCH: std::cell::RefCell<EngineScratch> = std::cell::RefCell::new(EngineScratch::default());
}

/// For a request whose body could not be parsed: the fields scored besides
/// those of [`bodyless_view`] — the body's `Content-Type` and
/// `Content-Encoding` headers, the raw body, and (except for multipart,
/// whose part headers would read as header injection) the raw body as one
/// argument.
pub fn add_unparseable_fields<'a>(
    fields: &mut Vec<crate::rules::engine::Field<'a>>,
    parts: &'a Parts,
    raw: &'a [u8],
) {
    use crate::rules::engine::Field;
    use crate::rules::schema::TargetKind;
    for (name, value) in &parts.headers {
        if matches!(*name, header::CONTENT_TYPE | header::CONTENT_ENCODING) {
            fields.push(Field {
                recurs: false,
                kind: TargetKind::Headers,
                name: name.as_str().as_bytes(),
                value: value.as_bytes(),
            });
            fields.push(Field {
                recurs: false,
                kind: TargetKind::HeaderNames,
                name: name.as_str().as_bytes(),
                value: name.as_str().as_bytes(),
            });
        }
    }
    if !raw.is_empty() {
        fields.push(Field {
            recurs: false,
            kind: TargetKind::Body,
            name: b"",
            value: raw,
        });
        // The same bytes as one argument, so the rules for argument
        // values see them too — except a multipart body, whose part
        // headers would read as header injection.
        let multipart = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes()
                .get(..10)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"multipart/"))
        });
        if !multipart {
            fields.push(Field {
                recurs: false,
                kind: TargetKind::ArgsPost,
                name: b"",
                value: raw,
            });
        }
    }
}

/// The view of a request without its body (headers, cookies, path and
/// query), for scoring a request whose body could not be parsed.
pub fn bodyless_view(parts: &Parts, limits: &ViewLimits) -> Option<RequestView> {
    let mut b = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version);
    for (name, value) in &parts.headers {
        if !matches!(
            *name,
            header::CONTENT_TYPE
                | header::CONTENT_LENGTH
                | header::CONTENT_ENCODING
                | header::TRANSFER_ENCODING
        ) {
            b = b.header(name, value);
        }
    }
    let (p, ()) = b.body(()).ok()?.into_parts();
    RequestView::build_bytes(&p, Bytes::new(), limits).ok()
}

/// At most this much of a response body is held back for the response
/// rules (leaks show up in error pages, which are small; a large page is not
/// delayed or buffered whole, and memory per connection stays bounded).
const RESPONSE_INSPECT_MAX: usize = 128 * 1024;

/// The host exclusions match on: the Host header, else the target's
/// authority, without a port.
fn facts_host<'a>(host: Option<&'a HeaderValue>, uri: &'a Uri) -> &'a str {
    host.and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .map_or("", upstream::strip_port)
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Block => "block",
        Mode::Detect => "detect",
        Mode::Shadow => "shadow",
    }
}

/// What the response phase looks at in one response.
pub struct ResponsePlan {
    pub status: bool,
    pub headers: bool,
    /// The body's first bytes: a rule looks at `response_body`, the
    /// response has a body (not a HEAD request's, not 1xx/204/304) and it
    /// is text, uncompressed or in a coding the view undoes
    /// ([`inspectable_response`]).
    pub body: bool,
    /// The body's Content-Encoding (when `body`).
    pub coding: ContentCoding,
}

impl ResponsePlan {
    pub fn of(rules: &RuleSet, method: &Method, parts: &http::response::Parts) -> ResponsePlan {
        use crate::rules::schema::TargetKind;
        let coding = (rules.looks_at(TargetKind::ResponseBody)
            && method != Method::HEAD
            && !matches!(parts.status.as_u16(), 100..=199 | 204 | 304))
        .then(|| inspectable_response(&parts.headers))
        .flatten();
        ResponsePlan {
            status: rules.looks_at(TargetKind::ResponseStatus),
            headers: rules.looks_at(TargetKind::ResponseHeaders),
            body: coding.is_some(),
            coding: coding.unwrap_or_default(),
        }
    }

    pub fn any(&self) -> bool {
        self.status || self.headers || self.body
    }

    /// What the response rules read of a body whose first bytes (as
    /// sent) are `prefix`: the prefix itself, or what it decodes to, cut at
    /// `cap`. A compressed body that does not decode is not read (its
    /// status and headers still are): the error says why.
    pub fn body_text(
        &self,
        prefix: &Bytes,
        cap: usize,
    ) -> Result<Bytes, crate::request_view::ViewError> {
        if self.coding == ContentCoding::Identity {
            return Ok(prefix.slice(..prefix.len().min(cap)));
        }
        crate::request_view::decode_body_prefix(prefix, self.coding, cap)
    }
}

/// How much of a response body the response rules see.
pub fn response_inspect_bytes(cfg: &Config) -> usize {
    cfg.limits.inspect_body_bytes.min(RESPONSE_INSPECT_MAX)
}

/// The response phase's fields: the status (`status` is its three digits),
/// every header, and the body prefix when it is inspected and not empty.
pub fn response_fields<'a>(
    status: &'a str,
    headers: &'a http::HeaderMap,
    body: Option<&'a [u8]>,
) -> Vec<crate::rules::engine::Field<'a>> {
    use crate::rules::engine::Field;
    use crate::rules::schema::TargetKind;
    let mut fields = Vec::with_capacity(headers.len() + 2);
    fields.push(Field {
        recurs: false,
        kind: TargetKind::ResponseStatus,
        name: b"",
        value: status.as_bytes(),
    });
    for (name, value) in headers {
        fields.push(Field {
            recurs: false,
            kind: TargetKind::ResponseHeaders,
            name: name.as_str().as_bytes(),
            value: value.as_bytes(),
        });
    }
    if let Some(b) = body.filter(|b| !b.is_empty()) {
        fields.push(Field {
            recurs: false,
            kind: TargetKind::ResponseBody,
            name: b"",
            value: b,
        });
    }
    fields
}

/// Is a response body worth handing to the rules: text of some kind (or
/// untyped), uncompressed or in a coding the view undoes (`gzip`,
/// `deflate`)? Its coding if so.
fn inspectable_response(headers: &http::HeaderMap) -> Option<ContentCoding> {
    let coding = crate::request_view::decodable_coding(headers)?;
    let textual = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| {
            let ct = ct.to_ascii_lowercase();
            // Streams that never end (server-sent events, NDJSON feeds,
            // MJPEG-style replace) must not wait for a prefix: their first
            // bytes go out at once, uninspected.
            let stream = ct.starts_with("text/event-stream")
                || ct.contains("ndjson")
                || ct.contains("stream+json")
                || ct.contains("jsonl")
                || ct.starts_with("multipart/x-mixed-replace");
            !stream
                && (ct.starts_with("text/")
                    || ct.contains("json")
                    || ct.contains("xml")
                    || ct.contains("javascript")
                    || ct.contains("x-www-form-urlencoded"))
        });
    textual.then_some(coding)
}

/// Reads up to `cap` bytes of an upstream response body within `timeout`:
/// the frames read (to be sent first), the rest of the body (`None` when it
/// ended), and the data read, joined.
async fn read_response_prefix(
    mut body: Incoming,
    cap: usize,
    timeout: Duration,
) -> Result<
    (
        std::collections::VecDeque<Frame<Bytes>>,
        Option<Incoming>,
        Bytes,
    ),
    Reject,
> {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut frames = std::collections::VecDeque::new();
    let mut data = bytes::BytesMut::new();
    loop {
        if data.len() >= cap {
            return Ok((frames, Some(body), data.freeze()));
        }
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Reject::UpstreamTimeout),
            Ok(None) => return Ok((frames, None, data.freeze())),
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "upstream response body failed while inspecting");
                return Err(Reject::BadGateway("upstream_error"));
            }
            Ok(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let room = cap.saturating_sub(data.len());
                    data.extend_from_slice(&d[..d.len().min(room)]);
                }
                frames.push_back(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(ct: Option<&str>, ce: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        if let Some(ce) = ce {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_str(ce).unwrap());
        }
        h
    }

    #[test]
    fn response_bodies_inspected_are_finite_text_in_a_coding_we_undo() {
        for ct in [
            "text/html; charset=utf-8",
            "application/json",
            "application/problem+json",
            "text/plain",
        ] {
            assert_eq!(
                inspectable_response(&with(Some(ct), None)),
                Some(ContentCoding::Identity),
                "{ct}"
            );
        }
        assert!(inspectable_response(&with(None, None)).is_some(), "untyped");
        for ct in [
            "text/event-stream",
            "application/x-ndjson",
            "application/stream+json",
            "image/png",
            "application/octet-stream",
        ] {
            assert_eq!(inspectable_response(&with(Some(ct), None)), None, "{ct}");
        }
        for (ce, coding) in [
            ("gzip", Some(ContentCoding::Gzip)),
            ("x-gzip", Some(ContentCoding::Gzip)),
            ("deflate", Some(ContentCoding::Deflate)),
            ("identity", Some(ContentCoding::Identity)),
            ("br", None),
            ("zstd", None),
            ("gzip, gzip", None),
            ("gzip, br", None),
        ] {
            assert_eq!(
                inspectable_response(&with(Some("text/html"), Some(ce))),
                coding,
                "{ce}"
            );
        }
        assert_eq!(
            inspectable_response(&with(Some("image/png"), Some("gzip"))),
            None
        );
    }
}
