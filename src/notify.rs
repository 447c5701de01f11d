//! Signed webhook notifications for incidents.
//!
//! [`Notifier::notify`] never blocks the caller: it puts the notification on
//! a bounded queue per hook (a full queue drops it and counts `dropped`).
//! Each hook has its own worker, so a slow or dead receiver only delays its
//! own deliveries; within a hook, every delivery runs as its own task (at
//! most [`MAX_IN_FLIGHT_PER_HOOK`] at once), so one delivery retrying does
//! not hold back newer ones.
//!
//! A delivery is `POST <url>` with the JSON document as body and:
//!
//! - `X-Portcullis-Event: <kind>`
//! - `X-Portcullis-Delivery: <32 hex digits>`, the same on every retry, so a
//!   receiver can drop duplicates (an answer lost in transit is retried);
//! - `X-Portcullis-Timestamp: <unix seconds>` of the attempt;
//! - with a secret, `X-Portcullis-Signature: sha256=<hex>`, the HMAC-SHA256
//!   of `"<timestamp>.<body>"` (see [`sign`], [`verify_signature`]). The
//!   timestamp is signed so that a receiver rejecting old timestamps cannot
//!   be fed a replayed delivery (as Stripe and Slack do). Each attempt is
//!   stamped and signed afresh, so a late retry still passes such a check.
//!
//! A 2xx answer is success. Connect errors, timeouts, 408, 429 and 5xx are
//! retried with exponential backoff and jitter (or after `Retry-After`
//! seconds); any other answer fails the delivery at once.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::severity::Severity;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts, computed or asked by `Retry-After`.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Deliveries in progress at once per hook: enough that a few retrying ones
/// do not stall newer ones, few enough not to flood a struggling receiver.
pub const MAX_IN_FLIGHT_PER_HOOK: usize = 8;

pub const HEADER_EVENT: &str = "x-portcullis-event";
pub const HEADER_DELIVERY: &str = "x-portcullis-delivery";
pub const HEADER_TIMESTAMP: &str = "x-portcullis-timestamp";
pub const HEADER_SIGNATURE: &str = "x-portcullis-signature";

/// One webhook receiver.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// An absolute `http://` URL (see [`WebhookConfig::validate`]).
    pub url: String,
    /// Only incidents at or above this are sent.
    pub min_severity: Severity,
    /// HMAC key for `X-Portcullis-Signature`; `None` sends unsigned.
    pub secret: Option<String>,
    /// Per attempt, from connecting to the answer's status line.
    pub timeout: Duration,
    /// Attempts in all (1 try + retries), at least 1.
    pub max_attempts: u32,
    /// Delay before the first retry, doubled for each next one, capped at
    /// [`MAX_RETRY_DELAY`], with ±20% jitter.
    pub backoff: Duration,
}

impl WebhookConfig {
    /// A hook with the defaults: every severity, unsigned, 5 s per attempt,
    /// 5 attempts, 1 s first backoff.
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            min_severity: Severity::Low,
            secret: None,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
        }
    }

    /// Checks the hook; errors never quote the URL (webhook paths often
    /// carry a token) nor the secret.
    ///
    /// Only `http://` URLs are supported for now: `https://` is rejected,
    /// because the gateway carries no client trust store (no web PKI roots)
    /// to verify a receiver's certificate with. Send to a relay on a trusted
    /// network, or add TLS here once a trust store is configured.
    pub fn validate(&self) -> Result<(), String> {
        self.target().map(drop)
    }

    /// The validated URL.
    fn target(&self) -> Result<Uri, String> {
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| format!("webhook url is not a valid URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(s) if s.eq_ignore_ascii_case("https") => {
                return Err(
                    "webhook url: https:// is not supported yet (no client trust \
                            store to verify the receiver with); use an http:// URL"
                        .into(),
                );
            }
            _ => return Err("webhook url must be an absolute http:// URL".into()),
        }
        let authority = uri.authority().ok_or("webhook url has no host")?;
        if authority.as_str().contains('@') {
            // hyper would not send them anyway, and they would end up in logs.
            return Err(
                "webhook url must not contain credentials (user:password@); \
                        use `secret` to authenticate deliveries"
                    .into(),
            );
        }
        if authority.host().is_empty() {
            return Err("webhook url has no host".into());
        }
        if self.max_attempts == 0 {
            return Err("webhook max_attempts must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("webhook timeout must be greater than zero".into());
        }
        if self.secret.as_deref() == Some("") {
            return Err("webhook secret must not be empty (omit it to send unsigned)".into());
        }
        Ok(uri)
    }
}

/// Never shows the secret (configurations get debug-printed).
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("min_severity", &self.min_severity)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// Counters since [`Notifier::start`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NotifyStats {
    /// Deliveries answered with 2xx.
    pub delivered: u64,
    /// Deliveries given up: a non-retryable answer, or `max_attempts` spent.
    pub failed: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Notifications never attempted to the end: queue full, sent after
    /// shutdown, or still pending when shutdown's deadline passed.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
}

/// Owned by each queued or in-progress delivery. Whatever ends it without a
/// verdict (a refused `try_send`, the queue dropped, the task aborted at
/// shutdown) drops the ticket, which counts it as dropped: every
/// notification is counted exactly once.
struct Ticket(Option<Arc<Counters>>);

enum Outcome {
    Delivered,
    Failed,
}

impl Ticket {
    fn settle(mut self, outcome: Outcome) {
        if let Some(c) = self.0.take() {
            let counter = match outcome {
                Outcome::Delivered => &c.delivered,
                Outcome::Failed => &c.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Job {
    kind: HeaderValue,
    body: Bytes,
    ticket: Ticket,
}

/// A validated hook, as its deliveries use it.
struct Hook {
    uri: Uri,
    /// `host:port` for logs: the path and query often carry a token.
    label: String,
    key: Option<hmac::Key>,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
}

type WebhookClient = Client<HttpConnector, Full<Bytes>>;

/// What every delivery task of one hook shares.
struct HookCtx {
    hook: Hook,
    client: WebhookClient,
    counters: Arc<Counters>,
    rng: SystemRandom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Shutdown: no new notifications; deliver what is queued.
    Draining,
    /// Shutdown's deadline passed: abandon the rest.
    Abort,
}

struct Inner {
    /// One queue per valid hook, with its threshold.
    queues: Vec<(Severity, mpsc::Sender<Job>)>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    phase: watch::Sender<Phase>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// Sends incident notifications to the configured webhooks. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// Spawns one delivery worker per hook on the current tokio runtime
    /// (panics outside one, like `tokio::spawn`). `queue` bounds the
    /// notifications waiting per hook. Hooks failing
    /// [`WebhookConfig::validate`] are logged and left out: validate them
    /// when loading the configuration.
    pub fn start(hooks: Vec<WebhookConfig>, queue: usize) -> Notifier {
        let counters = Arc::new(Counters::default());
        let (phase, _) = watch::channel(Phase::Running);
        let client = build_client();
        let rng = SystemRandom::new();
        let mut queues = Vec::with_capacity(hooks.len());
        let mut workers = Vec::with_capacity(hooks.len());
        for (i, cfg) in hooks.into_iter().enumerate() {
            let uri = match cfg.target() {
                Ok(uri) => uri,
                Err(e) => {
                    tracing::error!(hook = i, error = %e, "webhook left out: invalid configuration");
                    continue;
                }
            };
            let label = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let ctx = Arc::new(HookCtx {
                hook: Hook {
                    uri,
                    label,
                    key: cfg
                        .secret
                        .as_ref()
                        .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())),
                    timeout: cfg.timeout,
                    max_attempts: cfg.max_attempts,
                    backoff: cfg.backoff,
                },
                client: client.clone(),
                counters: counters.clone(),
                rng: rng.clone(),
            });
            // Out-of-range capacities would panic; 0 can only mean "minimal".
            let (tx, rx) = mpsc::channel(queue.clamp(1, Semaphore::MAX_PERMITS));
            queues.push((cfg.min_severity, tx));
            workers.push(tokio::spawn(run_hook(ctx, rx, phase.subscribe())));
        }
        Notifier {
            inner: Arc::new(Inner {
                queues,
                counters,
                closed: AtomicBool::new(false),
                phase,
                workers: Mutex::new(workers),
            }),
        }
    }

    /// Non-blocking: queues `body` for every hook whose `min_severity` is at
    /// or below `severity`. A full queue drops it and counts `dropped`.
    /// `kind` goes into `X-Portcullis-Event` (e.g. `incident.opened`).
    pub fn notify(&self, severity: Severity, kind: &str, body: &serde_json::Value) {
        let inner = &*self.inner;
        let targets: Vec<_> = inner
            .queues
            .iter()
            .filter(|(min, _)| severity >= *min)
            .map(|(_, tx)| tx)
            .collect();
        if targets.is_empty() {
            return;
        }
        // Encoded once, shared by every hook's delivery.
        let (kind, body) = match encode(kind, body) {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::error!(kind, error = %e, "webhook notification not sendable; dropped");
                let n = targets.len() as u64;
                inner.counters.dropped.fetch_add(n, Ordering::Relaxed);
                return;
            }
        };
        let closed = inner.closed.load(Ordering::Acquire);
        for tx in targets {
            let job = Job {
                kind: kind.clone(),
                body: body.clone(),
                ticket: Ticket(Some(inner.counters.clone())),
            };
            // A refused job is dropped here, and its ticket counts it.
            if closed {
                drop(job);
            } else if tx.try_send(job).is_ok() {
                continue;
            }
            // Logged at the 1st, 2nd, 4th, 8th.. drop: a flood stays visible
            // without flooding the log in turn.
            let n = inner.counters.dropped.load(Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped_total = n,
                    closed,
                    "webhook queue full or closed; notification dropped"
                );
            }
        }
    }

    pub fn stats(&self) -> NotifyStats {
        let c = &self.inner.counters;
        NotifyStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting notifications, tries to deliver what is queued or in
    /// progress (retries included) within `deadline`, then abandons the rest
    /// (counted as `dropped`). The counters are final when this returns.
    /// Later calls return at once.
    pub async fn shutdown(&self, deadline: Duration) {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::Release);
        inner.phase.send_replace(Phase::Draining);
        let mut workers =
            std::mem::take(&mut *inner.workers.lock().unwrap_or_else(|e| e.into_inner()));
        // Pop each worker once finished: a JoinHandle must not be polled
        // again after it completed.
        let join_all = async {
            while let Some(w) = workers.last_mut() {
                let _ = w.await;
                workers.pop();
            }
        };
        if tokio::time::timeout(deadline, join_all).await.is_err() {
            let before = inner.counters.dropped.load(Ordering::Relaxed);
            inner.phase.send_replace(Phase::Abort);
            for w in workers {
                let _ = w.await;
            }
            let abandoned = inner.counters.dropped.load(Ordering::Relaxed) - before;
            tracing::warn!(
                abandoned,
                ?deadline,
                "webhook deliveries abandoned at shutdown"
            );
        }
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("hooks", &self.inner.queues.len())
            .field("stats", &self.stats())
            .finish()
    }
}

fn encode(kind: &str, body: &serde_json::Value) -> Result<(HeaderValue, Bytes), String> {
    let kind = HeaderValue::from_str(kind).map_err(|e| format!("event kind: {e}"))?;
    let body = serde_json::to_vec(body).map_err(|e| format!("body: {e}"))?;
    Ok((kind, Bytes::from(body)))
}

fn build_client() -> WebhookClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(conn)
}

/// One hook's worker: takes jobs off its queue and runs each as its own
/// task, at most [`MAX_IN_FLIGHT_PER_HOOK`] at once.
async fn run_hook(ctx: Arc<HookCtx>, mut rx: mpsc::Receiver<Job>, phase: watch::Receiver<Phase>) {
    let mut in_flight = JoinSet::new();
    let mut abort = phase.clone();
    tokio::select! {
        biased;
        () = async {
            // Sender gone = every Notifier dropped: keep delivering, never abort.
            if abort.wait_for(|p| *p == Phase::Abort).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => {}
        () = pump(&ctx, &mut rx, &mut in_flight, phase) => {}
    }
    // Cancel what is left and wait until it is gone, so that shutdown
    // returns with final counters; the jobs still queued go with `rx`.
    in_flight.shutdown().await;
}

async fn pump(
    ctx: &Arc<HookCtx>,
    rx: &mut mpsc::Receiver<Job>,
    in_flight: &mut JoinSet<()>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut closing = false;
    loop {
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT_PER_HOOK {
            // Leave jobs on the queue meanwhile: that is where fullness counts.
            in_flight.join_next().await;
            continue;
        }
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => {
                    in_flight.spawn(deliver(ctx.clone(), job));
                }
                // Closed and empty (shutdown), or every Notifier dropped.
                None => break,
            },
            _ = phase.wait_for(|p| *p != Phase::Running), if !closing => {
                // What is already queued is still delivered.
                rx.close();
                closing = true;
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}

enum Attempt {
    Delivered(StatusCode),
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    Fail(String),
}

async fn deliver(ctx: Arc<HookCtx>, job: Job) {
    let Job { kind, body, ticket } = job;
    let hook = &ctx.hook;
    let id = delivery_id(&ctx.rng);
    let mut attempt = 1;
    loop {
        let (after, reason) = match attempt_once(&ctx, &kind, &body, &id).await {
            Attempt::Delivered(status) => {
                tracing::debug!(hook = %hook.label, delivery = %id, attempt, %status, "webhook delivered");
                ticket.settle(Outcome::Delivered);
                return;
            }
            Attempt::Fail(reason) => {
                tracing::warn!(hook = %hook.label, delivery = %id, event = ?kind, attempt, %reason,
                    "webhook delivery failed; not retried");
                ticket.settle(Outcome::Failed);
                return;
            }
            Attempt::Retry { after, reason } => (after, reason),
        };
        if attempt >= hook.max_attempts {
            tracing::warn!(hook = %hook.label, delivery = %id, event = ?kind, attempts = attempt, %reason,
                "webhook delivery given up");
            ticket.settle(Outcome::Failed);
            return;
        }
        // A receiver's Retry-After wins over our schedule (capped all the same).
        let delay = after
            .unwrap_or_else(|| backoff_delay(hook.backoff, attempt, &ctx.rng))
            .min(MAX_RETRY_DELAY);
        tracing::debug!(hook = %hook.label, delivery = %id, attempt, %reason, ?delay, "webhook attempt failed; retrying");
        tokio::time::sleep(delay).await;
        ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
        attempt += 1;
    }
}

async fn attempt_once(ctx: &HookCtx, kind: &HeaderValue, body: &Bytes, id: &str) -> Attempt {
    let hook = &ctx.hook;
    let req = match build_request(hook, kind, body, id, unix_now()) {
        Ok(req) => req,
        Err(e) => return Attempt::Fail(format!("request not buildable: {e}")),
    };
    match tokio::time::timeout(hook.timeout, ctx.client.request(req)).await {
        Err(_) => Attempt::Retry {
            after: None,
            reason: format!("no answer within {:?}", hook.timeout),
        },
        Ok(Err(e)) => Attempt::Retry {
            after: None,
            reason: error_chain(&e),
        },
        // The answer's body is not read: receivers answer with little or
        // nothing, and leaving it unread only costs the pooled connection.
        Ok(Ok(resp)) => {
            let status = resp.status();
            if status.is_success() {
                Attempt::Delivered(status)
            } else if is_retryable(status) {
                Attempt::Retry {
                    after: retry_after(resp.headers()),
                    reason: format!("answered {status}"),
                }
            } else {
                Attempt::Fail(format!("answered {status}"))
            }
        }
    }
}

fn build_request(
    hook: &Hook,
    kind: &HeaderValue,
    body: &Bytes,
    id: &str,
    timestamp: u64,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(hook.uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("portcullis/", env!("CARGO_PKG_VERSION")),
        )
        .header(HEADER_EVENT, kind.clone())
        .header(HEADER_DELIVERY, id)
        .header(HEADER_TIMESTAMP, timestamp);
    if let Some(key) = &hook.key {
        req = req.header(HEADER_SIGNATURE, sign_with(key, timestamp, body));
    }
    req.body(Full::new(body.clone()))
}

/// 408 and 429 say "later"; 5xx may be a restart or an overload. Any other
/// non-2xx answer (4xx, and redirects, which are not followed) would only
/// get the same answer again.
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After: <seconds>`, capped at [`MAX_RETRY_DELAY`]. The HTTP-date
/// form is ignored (the computed backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_DELAY))
}

/// The wait before retry number `retry` (1 = first): `first · 2^(retry-1)`,
/// capped, with ±20% jitter so that the deliveries queued behind an outage
/// do not all come back at the same instant.
fn backoff_delay(first: Duration, retry: u32, rng: &SystemRandom) -> Duration {
    let doublings = retry.saturating_sub(1).min(20);
    let base = first.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY);
    let mut r = [0u8; 4];
    let factor = match rng.fill(&mut r) {
        Ok(()) => 0.8 + 0.4 * f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    base.mul_f64(factor).min(MAX_RETRY_DELAY)
}

/// 16 random bytes in hex.
fn delivery_id(rng: &SystemRandom) -> String {
    let mut b = [0u8; 16];
    if rng.fill(&mut b).is_err() {
        // The OS generator failing is next to impossible; an id only has to
        // be unique, which the clock and a counter give.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        b[..8].copy_from_slice(&nanos.to_le_bytes());
        b[8..].copy_from_slice(&SEQ.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    to_hex(&b)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// hyper-util's errors say little at the top ("client error (Connect)"):
/// the cause is further down the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `X-Portcullis-Signature` for a body sent at `timestamp` (unix seconds):
/// `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    sign_with(&hmac::Key::new(hmac::HMAC_SHA256, secret), timestamp, body)
}

/// Checks an `X-Portcullis-Signature` value in constant time. A receiver
/// should also reject timestamps far from its clock (say, 5 minutes).
pub fn verify_signature(secret: &[u8], timestamp: u64, body: &[u8], header: &str) -> bool {
    let Some(tag) = header.trim().strip_prefix("sha256=").and_then(from_hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &signed_message(timestamp, body), &tag).is_ok()
}

fn sign_with(key: &hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let tag = hmac::sign(key, &signed_message(timestamp, body));
    format!("sha256={}", to_hex(tag.as_ref()))
}

fn signed_message(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut m = Vec::with_capacity(ts.len() + 1 + body.len());
    m.extend_from_slice(ts.as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(((nibble(p[0])? << 4) | nibble(p[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::VecDeque;
    use std::convert::Infallible;

    use http::Response;
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::json;
    use tokio::net::TcpListener;

    /// In a receiver's script: answer 200 only once released.
    const HANG: u16 = 0;

    #[derive(Debug)]
    struct Received {
        method: Method,
        path: String,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Received {
        fn header(&self, name: &str) -> &str {
            self.headers
                .get(name)
                .map(|v| v.to_str().unwrap())
                .unwrap_or_else(|| panic!("no {name} header"))
        }
    }

    struct Receiver {
        url: String,
        rx: mpsc::UnboundedReceiver<Received>,
        /// `send(true)` lets the HANG answers go.
        release: watch::Sender<bool>,
    }

    /// A webhook receiver on 127.0.0.1: reports every request on the channel
    /// (before answering), then answers with the next status of `script`
    /// (200 once it runs out).
    async fn receiver(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::from(script.to_vec())));
        let (tx, rx) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let (script, tx, released) = (script.clone(), tx.clone(), released.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (script, tx, mut released) = (script.clone(), tx.clone(), released.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let status = script.lock().unwrap().pop_front().unwrap_or(200);
                        let _ = tx.send(Received {
                            method: parts.method,
                            path: parts.uri.path().to_string(),
                            headers: parts.headers,
                            body,
                        });
                        let status = if status == HANG {
                            let _ = released.wait_for(|r| *r).await;
                            200
                        } else {
                            status
                        };
                        let resp = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}"),
            rx,
            release,
        }
    }

    fn hook(url: String) -> WebhookConfig {
        WebhookConfig {
            timeout: Duration::from_secs(10),
            backoff: Duration::from_millis(20),
            ..WebhookConfig::new(url)
        }
    }

    /// Long enough never to be reached when things work: shutdown returns as
    /// soon as every delivery is settled, which is what the tests wait on.
    const DRAIN: Duration = Duration::from_secs(30);

    fn stats(delivered: u64, failed: u64, retries: u64, dropped: u64) -> NotifyStats {
        NotifyStats {
            delivered,
            failed,
            retries,
            dropped,
        }
    }

    #[tokio::test]
    async fn delivers_signed_json_with_headers() {
        let Receiver {
            url: base, mut rx, ..
        } = receiver(&[]).await;
        let cfg = WebhookConfig {
            secret: Some("whsec_test".into()),
            ..hook(format!("{base}/hooks/portcullis?token=abc"))
        };
        let n = Notifier::start(vec![cfg], 16);
        let doc = json!({"incident": "inc-1", "severity": "high", "client_ip": "192.0.2.7"});
        n.notify(Severity::High, "incident.opened", &doc);

        let got = rx.recv().await.unwrap();
        assert_eq!(got.method, Method::POST);
        assert_eq!(got.path, "/hooks/portcullis");
        assert_eq!(got.header("content-type"), "application/json");
        assert_eq!(got.header(HEADER_EVENT), "incident.opened");
        let id = got.header(HEADER_DELIVERY);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        let ts: u64 = got.header(HEADER_TIMESTAMP).parse().unwrap();
        let sig = got.header(HEADER_SIGNATURE);
        assert!(verify_signature(b"whsec_test", ts, &got.body, sig));
        assert_eq!(sig, sign(b"whsec_test", ts, &got.body));
        let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(body, doc);

        n.shutdown(DRAIN).await;
        assert_eq!(n.stats(), stats(1, 0, 0, 0));
    }

    #[tokio::test]
    async fn retries_5xx_with_the_same_delivery_id() {
        let Receiver {
            url: base, mut rx, ..
        } = receiver(&[500, 500]).await;
        let n = Notifier::start(vec![hook(format!("{base}/h"))], 16);
        n.notify(Severity::Critical, "incident.opened", &json!({"n": 1}));

        let mut ids = Vec::new();
        for _ in 0..3 {
            let got = rx.recv().await.unwrap();
            assert_eq!(&got.body[..], br#"{"n":1}"#);
            assert!(
                got.headers.get(HEADER_SIGNATURE).is_none(),
                "no secret, no signature"
            );
            ids.push(got.header(HEADER_DELIVERY).to_string());
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");

        n.shutdown(DRAIN).await;
        assert_eq!(n.stats(), stats(1, 0, 2, 0));
        assert!(rx.try_recv().is_err(), "no attempt after success");
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let Receiver {
            url: base, mut rx, ..
        } = receiver(&[503, 429, 408]).await;
        let cfg = WebhookConfig {
            max_attempts: 3,
            ..hook(format!("{base}/h"))
        };
        let n = Notifier::start(vec![cfg], 16);
        n.notify(Severity::High, "incident.opened", &json!({}));
        for _ in 0..3 {
            rx.recv().await.unwrap();
        }
        n.shutdown(DRAIN).await;
        assert_eq!(n.stats(), stats(0, 1, 2, 0));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let Receiver {
            url: base, mut rx, ..
        } = receiver(&[400]).await;
        let n = Notifier::start(vec![hook(format!("{base}/h"))], 16);
        n.notify(Severity::High, "incident.opened", &json!({}));
        rx.recv().await.unwrap();
        n.shutdown(DRAIN).await;
        assert_eq!(n.stats(), stats(0, 1, 0, 0));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn min_severity_filters_per_hook() {
        let Receiver {
            url: base, mut rx, ..
        } = receiver(&[]).await;
        let all = hook(format!("{base}/all"));
        let high = WebhookConfig {
            min_severity: Severity::High,
            ..hook(format!("{base}/high"))
        };
        let n = Notifier::start(vec![all, high], 16);
        n.notify(Severity::Low, "low", &json!({}));
        n.notify(Severity::Medium, "medium", &json!({}));
        n.notify(Severity::High, "high", &json!({}));
        n.shutdown(DRAIN).await;

        let mut got = Vec::new();
        while let Ok(r) = rx.try_recv() {
            got.push(format!("{} {}", r.path, r.header(HEADER_EVENT)));
        }
        // Deliveries run concurrently: arrival order is not defined.
        got.sort();
        assert_eq!(got, ["/all high", "/all low", "/all medium", "/high high"]);
        assert_eq!(n.stats(), stats(4, 0, 0, 0));
    }

    // One thread: the workers cannot run between the notify calls, so the
    // queue fills exactly.
    #[tokio::test(flavor = "current_thread")]
    async fn full_queue_drops_and_counts() {
        // Never released: whether the two queued ones are still queued or
        // already in flight when the deadline passes, they are abandoned.
        let r = receiver(&[HANG, HANG]).await;
        let n = Notifier::start(vec![hook(format!("{}/h", r.url))], 2);
        for i in 0..5 {
            n.notify(Severity::High, "incident.opened", &json!({ "i": i }));
        }
        assert_eq!(n.stats(), stats(0, 0, 0, 3));

        n.shutdown(Duration::from_millis(50)).await;
        assert_eq!(n.stats(), stats(0, 0, 0, 5));
        // Closed: refused and counted.
        n.notify(Severity::High, "incident.opened", &json!({}));
        assert_eq!(n.stats().dropped, 6);
    }

    #[tokio::test]
    async fn a_pending_delivery_blocks_neither_its_hook_nor_others() {
        let mut a = receiver(&[HANG]).await;
        let mut b = receiver(&[]).await;
        let hooks = vec![hook(format!("{}/a", a.url)), hook(format!("{}/b", b.url))];
        let n = Notifier::start(hooks, 16);

        n.notify(Severity::High, "first", &json!({}));
        assert_eq!(a.rx.recv().await.unwrap().header(HEADER_EVENT), "first");
        assert_eq!(b.rx.recv().await.unwrap().header(HEADER_EVENT), "first");
        // A's first delivery is still waiting for its answer.
        n.notify(Severity::High, "second", &json!({}));
        assert_eq!(a.rx.recv().await.unwrap().header(HEADER_EVENT), "second");
        assert_eq!(b.rx.recv().await.unwrap().header(HEADER_EVENT), "second");

        a.release.send_replace(true);
        n.shutdown(DRAIN).await;
        assert_eq!(n.stats(), stats(4, 0, 0, 0));
    }

    #[tokio::test]
    async fn a_timed_out_attempt_is_retried() {
        // The first attempt is never answered (never released).
        let mut r = receiver(&[HANG]).await;
        let cfg = WebhookConfig {
            timeout: Duration::from_millis(300),
            ..hook(format!("{}/h", r.url))
        };
        let n = Notifier::start(vec![cfg], 4);
        n.notify(Severity::High, "incident.opened", &json!({}));
        let first = r.rx.recv().await.unwrap();
        let second = r.rx.recv().await.unwrap();
        assert_eq!(
            first.header(HEADER_DELIVERY),
            second.header(HEADER_DELIVERY)
        );
        n.shutdown(DRAIN).await;
        // Not `retries == 1`: on a very busy machine the answered attempt
        // could time out too, and be retried.
        let s = n.stats();
        assert_eq!((s.delivered, s.failed, s.dropped), (1, 0, 0));
        assert!(s.retries >= 1);
    }

    #[tokio::test]
    async fn unreachable_hook_is_retried_then_failed() {
        // Bind then drop: nothing listens on that port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = WebhookConfig {
            max_attempts: 2,
            ..hook(format!("http://127.0.0.1:{port}/h"))
        };
        let n = Notifier::start(vec![cfg], 4);
        n.notify(Severity::High, "incident.opened", &json!({}));
        n.shutdown(DRAIN).await;
        assert_eq!(n.stats(), stats(0, 1, 1, 0));
    }

    #[test]
    fn signature_matches_reference_and_rejects_tampering() {
        let body = br#"{"incident":"inc-1"}"#;
        let sig = sign(b"whsec_test", 1_700_000_000, body);
        // Python: hmac.new(b"whsec_test", b'1700000000.{"incident":"inc-1"}', sha256)
        assert_eq!(
            sig,
            "sha256=7183ccc036bdf6883588c7ed1d85ab8db851c40462244818b87ab223b66bbc72"
        );
        assert!(verify_signature(b"whsec_test", 1_700_000_000, body, &sig));
        assert!(verify_signature(
            b"whsec_test",
            1_700_000_000,
            body,
            &sig.to_uppercase().replace("SHA256=", "sha256=")
        ));

        assert!(!verify_signature(
            b"whsec_test",
            1_700_000_000,
            br#"{"incident":"inc-2"}"#,
            &sig
        ));
        assert!(!verify_signature(b"whsec_test", 1_700_000_001, body, &sig));
        assert!(!verify_signature(b"other", 1_700_000_000, body, &sig));
        let hex = sig.trim_start_matches("sha256=");
        for bad in [
            "",
            "sha256=",
            hex,
            &format!("sha1={hex}"),
            &format!("sha256={}", &hex[..62]),
            &format!("sha256={}0", hex),
            &format!("sha256=zz{}", &hex[2..]),
            &format!("sha256=+f{}", &hex[2..]),
        ] {
            assert!(
                !verify_signature(b"whsec_test", 1_700_000_000, body, bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn validate_accepts_http_only() {
        assert_eq!(hook("http://127.0.0.1:9000/hook".into()).validate(), Ok(()));
        assert_eq!(hook("http://alerts.internal".into()).validate(), Ok(()));
        let err = |url: &str| hook(url.into()).validate().unwrap_err();
        assert!(err("https://hooks.example.com/x").contains("https://"));
        assert!(err("ftp://example.com/x").contains("http://"));
        assert!(err("/relative/path").contains("http://"));
        assert!(err("not a url").contains("valid URL"));
        assert!(err("http://user:pw@example.com/x").contains("credentials"));
        // Errors never quote the URL: webhook paths often hold a token.
        assert!(!err("https://example.com/T0KEN").contains("T0KEN"));
    }

    #[test]
    fn validate_checks_limits_and_secret() {
        let base = hook("http://127.0.0.1:9000/".into());
        let bad = [
            WebhookConfig {
                max_attempts: 0,
                ..base.clone()
            },
            WebhookConfig {
                timeout: Duration::ZERO,
                ..base.clone()
            },
            WebhookConfig {
                secret: Some(String::new()),
                ..base.clone()
            },
        ];
        for cfg in bad {
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
        let signed = WebhookConfig {
            secret: Some("s3cr3t-value".into()),
            ..base
        };
        assert_eq!(signed.validate(), Ok(()));
        let shown = format!("{signed:?}");
        assert!(
            !shown.contains("s3cr3t-value") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_cap() {
        let rng = SystemRandom::new();
        let first = Duration::from_secs(1);
        for retry in 1..=12u32 {
            let base = (first * 2u32.pow(retry - 1)).min(MAX_RETRY_DELAY);
            for _ in 0..50 {
                let d = backoff_delay(first, retry, &rng);
                assert!(
                    d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2).min(MAX_RETRY_DELAY),
                    "retry {retry}: {d:?}"
                );
            }
        }
        assert!(backoff_delay(Duration::from_secs(3600), u32::MAX, &rng) <= MAX_RETRY_DELAY);
    }

    #[test]
    fn retry_after_seconds_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_DELAY));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
