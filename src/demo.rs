//! The built-in echo upstream (`upstream: {url: "builtin:echo"}` and
//! `portcullis demo-upstream`): answers every request with a JSON summary of
//! what reached it, so a fresh install proxies something real and an
//! operator can see exactly which headers the gateway forwards.
//!
//! `POST /reflect` with a JSON object `{"status": 404, "headers": {"X-A":
//! "1"}, "body": "…"}` (or `"encodedBody"`, base64) is answered with that
//! status, those headers and that body instead: the reflect convention of
//! the CRS regression suite's backend, so response rules can be tried (and
//! `portcullis rules ftw` can replay response tests) against a chosen
//! answer. Only clients on this machine may use it (see `from_loopback`).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::accesslog::push_json_str;

/// Bodies beyond this are counted, not kept.
const ECHO_BODY_PREVIEW: usize = 1024;
/// A `/reflect` request body beyond this is echoed, not reflected.
const REFLECT_MAX: usize = 1024 * 1024;

/// Binds `addr` and serves the echo in the background; returns the bound address.
pub async fn start_echo(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((sock, peer)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), service_fn(move |req| echo(req, peer)))
                    .await;
            });
        }
    });
    Ok(local)
}

async fn echo(
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let reflect = parts.method == http::Method::POST
        && parts.uri.path() == "/reflect"
        && from_loopback(peer, &parts.headers);
    let keep = if reflect {
        REFLECT_MAX
    } else {
        ECHO_BODY_PREVIEW
    };
    let mut total = 0usize;
    let mut preview = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            total += d.len();
            let room = keep.saturating_sub(preview.len());
            preview.extend_from_slice(&d[..d.len().min(room)]);
        }
    }
    if reflect
        && total <= REFLECT_MAX
        && let Some(resp) = reflected(&preview)
    {
        return Ok(resp);
    }
    preview.truncate(ECHO_BODY_PREVIEW);
    let mut s = String::with_capacity(512);
    s.push_str("{\"service\":\"portcullis builtin:echo\",\"method\":");
    push_json_str(&mut s, parts.method.as_str());
    s.push_str(",\"uri\":");
    push_json_str(&mut s, &parts.uri.to_string());
    s.push_str(",\"headers\":{");
    for (i, (k, v)) in parts.headers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_json_str(&mut s, k.as_str());
        s.push(':');
        push_json_str(&mut s, &String::from_utf8_lossy(v.as_bytes()));
    }
    s.push_str("},\"body_bytes\":");
    s.push_str(&total.to_string());
    s.push_str(",\"body_preview\":");
    push_json_str(&mut s, &String::from_utf8_lossy(&preview));
    s.push_str("}\n");
    let mut resp = Response::new(Full::new(Bytes::from(s)));
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Only a client on this machine may choose an answer: the connection is
/// from loopback, and so is every address in `X-Forwarded-For` (the
/// gateway appends the client it saw; a proxy before it, the ones it saw).
/// A default install listening on all interfaces must not serve any page a
/// stranger asks for from its origin.
fn from_loopback(peer: SocketAddr, headers: &http::HeaderMap) -> bool {
    peer.ip().is_loopback()
        && headers.get_all("x-forwarded-for").iter().all(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',').all(|ip| {
                    ip.trim()
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
                })
            })
        })
}

/// The answer a `/reflect` request asks for; `None` when its body is not a
/// JSON object (it is echoed then). Unknown members are ignored, a status
/// outside 100–599 is 200, and framing headers and header names or values
/// that are not valid HTTP are left out.
fn reflected(body: &[u8]) -> Option<Response<Full<Bytes>>> {
    let spec: serde_json::Value = serde_json::from_slice(body).ok()?;
    let spec = spec.as_object()?;
    let status = spec
        .get("status")
        .and_then(serde_json::Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .unwrap_or(http::StatusCode::OK);
    let content: Vec<u8> = match (spec.get("encodedBody"), spec.get("body")) {
        (Some(serde_json::Value::String(b64)), _) => crate::rules::transform::apply(
            crate::rules::transform::Transform::Base64Decode,
            b64.as_bytes(),
        )
        .into_owned(),
        (_, Some(serde_json::Value::String(text))) => text.clone().into_bytes(),
        _ => Vec::new(),
    };
    let mut resp = Response::new(Full::new(Bytes::from(content)));
    *resp.status_mut() = status;
    if let Some(headers) = spec.get("headers").and_then(serde_json::Value::as_object) {
        for (name, value) in headers {
            let Some(value) = value.as_str() else {
                continue;
            };
            // The framing is this server's to set.
            if ["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f))
            {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                resp.headers_mut().append(n, v);
            }
        }
    }
    Some(resp)
}
