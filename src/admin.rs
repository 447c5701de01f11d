//! Admin API on its own listener (loopback by default). Health and metrics
//! are open, for probes and Prometheus; every other path needs a bearer
//! token, compared in constant time. Mutating calls are refused from
//! non-loopback peers even with a token (as linkerd does), so exposing the
//! admin port for scraping never exposes control.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accesslog::push_json_str;
use crate::config::{AdminToken, Role};
use crate::server::{ReloadError, Reloader};

type Resp = Response<AdminBody>;

/// A whole answer, or a stream fed through a channel (exports).
pub enum AdminBody {
    Full(Full<Bytes>),
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

impl From<Full<Bytes>> for AdminBody {
    fn from(f: Full<Bytes>) -> Self {
        AdminBody::Full(f)
    }
}

impl http_body::Body for AdminBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            AdminBody::Full(f) => std::pin::Pin::new(f).poll_frame(cx),
            AdminBody::Stream(rx) => rx
                .poll_recv(cx)
                .map(|o| o.map(|b| Ok(http_body::Frame::data(b)))),
        }
    }

    // Known lengths give `Content-Length` (clients and tests rely on it).
    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            AdminBody::Full(f) => f.size_hint(),
            AdminBody::Stream(_) => http_body::SizeHint::default(),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AdminBody::Full(f) => f.is_end_stream(),
            AdminBody::Stream(_) => false,
        }
    }
}

pub async fn serve(listener: TcpListener, r: Arc<Reloader>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (sock, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let r = r.clone();
        tokio::spawn(async move {
            let mut b = auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let svc = service_fn(move |req| handle(r.clone(), peer, req));
            let _ = b.serve_connection(TokioIo::new(sock), svc).await;
        });
    }
}

async fn handle(
    r: Arc<Reloader>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    Ok(match (&method, path.as_str()) {
        (&Method::GET, "/api/v1/security/health") => health(&r).await,
        (&Method::GET, "/metrics") | (&Method::GET, "/api/v1/metrics") => {
            if let Some(sec) = &r.gw.security {
                r.gw.metrics.observe_store(
                    &sec.store.stats,
                    sec.store.sync == crate::store::writer::SyncMode::Strict,
                    sec.blocklist.list(crate::store::keys::now_micros()).len(),
                    sec.notifier.as_ref().map(|n| n.stats()),
                );
            }
            let mut resp = Response::new(Full::new(Bytes::from(r.gw.metrics.render())).into());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => {
            let snap = r.gw.snapshot();
            let Some(role) = authenticate(
                &snap.cfg.admin.tokens,
                req.headers().get(header::AUTHORIZATION),
            ) else {
                let mut resp = json(
                    StatusCode::UNAUTHORIZED,
                    "{\"error\":\"unauthorized\"}\n".into(),
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
                );
                return Ok(resp);
            };
            if method != Method::GET && !peer.ip().is_loopback() {
                return Ok(json(
                    StatusCode::FORBIDDEN,
                    "{\"error\":\"mutating admin calls are accepted from loopback only\"}\n".into(),
                ));
            }
            if let Some(sec) = &r.gw.security
                && method == Method::GET
                && path == "/api/v1/audit/export"
            {
                return Ok(export(sec, req.uri().query()));
            }
            if let Some(sec) = &r.gw.security {
                let caller = crate::admin_store::Caller { role, peer };
                let query = req.uri().query().map(str::to_owned);
                let body = req.into_body();
                if let Some(crate::admin_store::Answer(status, text)) =
                    crate::admin_store::route(sec, &caller, &method, &path, query.as_deref(), body)
                        .await
                {
                    return Ok(json(status, text));
                }
            }
            match (&method, path.as_str()) {
                (&Method::POST, "/api/v1/rules/reload") => {
                    if role < Role::Admin {
                        json(
                            StatusCode::FORBIDDEN,
                            "{\"error\":\"admin role required\"}\n".into(),
                        )
                    } else {
                        reload(&r).await
                    }
                }
                _ => json(StatusCode::NOT_FOUND, "{\"error\":\"not_found\"}\n".into()),
            }
        }
    })
}

/// The role of the presented bearer token. Every configured token is compared,
/// each in constant time, so timing does not tell which one nearly matched.
pub fn authenticate(tokens: &[AdminToken], auth: Option<&HeaderValue>) -> Option<Role> {
    let presented = auth?.as_bytes();
    let presented = presented
        .strip_prefix(b"Bearer ")
        .or_else(|| presented.strip_prefix(b"bearer "))?;
    let mut found: Option<Role> = None;
    for t in tokens {
        let eq: bool = t.token.as_bytes().ct_eq(presented).into();
        if eq && found.is_none() {
            found = Some(t.role);
        }
    }
    found
}

async fn health(r: &Reloader) -> Resp {
    let snap = r.gw.snapshot();
    let up = &snap.default_upstream;
    let mut addr = up.authority.as_str().to_string();
    if up.authority.port_u16().is_none() {
        addr.push_str(":80");
    }
    let reachable = matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    );
    let mut s = String::new();
    s.push_str(if reachable {
        "{\"status\":\"healthy\""
    } else {
        "{\"status\":\"degraded\""
    });
    s.push_str(",\"version\":");
    push_json_str(&mut s, env!("CARGO_PKG_VERSION"));
    s.push_str(&format!(
        ",\"uptime_seconds\":{}",
        r.gw.started.elapsed().as_secs()
    ));
    s.push_str(",\"upstream\":{\"target\":");
    push_json_str(&mut s, &up.display);
    s.push_str(&format!(",\"reachable\":{reachable}}}}}\n"));
    json(StatusCode::OK, s)
}

async fn reload(r: &Reloader) -> Resp {
    match r.reload().await {
        Ok(()) => json(StatusCode::OK, "{\"status\":\"reloaded\"}\n".into()),
        Err(e) => {
            let msgs: Vec<String> = match &e {
                ReloadError::Config(c) => c.0.iter().map(|e| e.to_string()).collect(),
                ReloadError::Other(m) => vec![m.clone()],
            };
            let body = serde_json::json!({"status": "rejected", "errors": msgs}).to_string();
            json(StatusCode::UNPROCESSABLE_ENTITY, body)
        }
    }
}

/// `GET /api/v1/audit/export?format=json|csv&since=&until=`: streamed from
/// the live store (the CLI cannot open a store a running gateway holds).
fn export(sec: &Arc<crate::security::Security>, query: Option<&str>) -> Resp {
    use crate::store::export::{self, Format};
    let q = crate::admin_store::query_params(query);
    let format = match q.get("format").map(String::as_str) {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => {
            return json(
                StatusCode::BAD_REQUEST,
                "{\"error\":\"format: json or csv\"}\n".into(),
            );
        }
    };
    let mut filter = crate::store::query::AuditFilter::default();
    for (k, slot) in [
        ("since", &mut filter.since_us),
        ("until", &mut filter.until_us),
    ] {
        if let Some(t) = q.get(k) {
            match crate::store::keys::parse_time(t) {
                Some(v) => *slot = Some(v),
                None => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        format!("{{\"error\":\"{k}: RFC 3339 time, date or unix seconds\"}}\n"),
                    );
                }
            }
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (store, ring) = (sec.store.store.clone(), sec.store.keyring.clone());
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(64 * 1024),
        };
        let r = export::export(&*store, &ring, &filter, format, &mut w);
        if let Err(e) = r {
            // The status is sent; the stream ends early and says why.
            tracing::error!(error = %e, "audit export failed");
            w.buf
                .extend_from_slice(format!("\n# export failed: {e}\n").as_bytes());
        }
        let _ = std::io::Write::flush(&mut w);
    });
    let mut resp = Response::new(AdminBody::Stream(rx));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `Write` into the response channel, in 64 KiB chunks (blocking sends:
/// this runs on the blocking pool, and a slow reader slows the export).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

fn json(status: StatusCode, body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)).into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_map_to_roles() {
        let tokens = vec![
            AdminToken {
                token: "viewer-token-0123456789".into(),
                role: Role::Viewer,
            },
            AdminToken {
                token: "admin-token-0123456789".into(),
                role: Role::Admin,
            },
        ];
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            authenticate(&tokens, Some(&h("Bearer admin-token-0123456789"))),
            Some(Role::Admin)
        );
        assert_eq!(
            authenticate(&tokens, Some(&h("Bearer viewer-token-0123456789"))),
            Some(Role::Viewer)
        );
        assert_eq!(
            authenticate(&tokens, Some(&h("Bearer admin-token-012345678"))),
            None
        );
        assert_eq!(
            authenticate(&tokens, Some(&h("admin-token-0123456789"))),
            None
        );
        assert_eq!(authenticate(&tokens, None), None);
        assert_eq!(authenticate(&[], Some(&h("Bearer x"))), None);
    }
}
