//! The built-in echo upstream (`upstream: {url: "builtin:echo"}` and
//! `portcullis demo-upstream`): answers every request with a JSON summary of
//! what reached it, so a fresh install proxies something real and an
//! operator can see exactly which headers the gateway forwards.

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

/// Binds `addr` and serves the echo in the background; returns the bound address.
pub async fn start_echo(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), service_fn(echo))
                    .await;
            });
        }
    });
    Ok(local)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut total = 0usize;
    let mut preview = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            total += d.len();
            let room = ECHO_BODY_PREVIEW.saturating_sub(preview.len());
            preview.extend_from_slice(&d[..d.len().min(room)]);
        }
    }
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
