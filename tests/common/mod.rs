//! Test harness: the real `portcullis` binary on port 0 in front of a real
//! recording upstream on port 0, and raw-socket helpers.
//!
//! Readiness is read from the gateway's own "listening" log lines (stderr),
//! never from sleeps.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Upper bound for waiting on a readiness signal (a failure bound, not a delay).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The gateway process

pub struct Gateway {
    pub child: Child,
    pub proxy: SocketAddr,
    /// Every proxy listener, in config order.
    pub proxies: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub dir: TempDir,
    pub config_path: PathBuf,
    /// Diagnostic log lines (stderr) seen so far, for assertions.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the gateway with `body` as the config after the standard
    /// `listen`/`admin`/`logging` keys (plain listener on 127.0.0.1:0).
    pub fn start(body: &str) -> Gateway {
        Self::start_full(&format!("listen:\n  - addr: \"127.0.0.1:0\"\n{body}"))
    }

    /// Starts the gateway in front of `upstream` with the given extra config.
    pub fn with_upstream(upstream: SocketAddr, extra: &str) -> Gateway {
        Self::start(&format!("upstream:\n  url: \"http://{upstream}\"\n{extra}"))
    }

    /// Starts the gateway with a config that supplies its own `listen`.
    /// `admin` and `logging` are appended unless present.
    pub fn start_full(config: &str) -> Gateway {
        let dir = TempDir::new("gw");
        let mut cfg = config.to_string();
        if !cfg.contains("\nadmin:") && !cfg.starts_with("admin:") {
            cfg.push_str("\nadmin:\n  listen: \"127.0.0.1:0\"\n");
        }
        if !cfg.contains("\nlogging:") {
            cfg.push_str(&format!(
                "\nlogging:\n  dir: \"{}\"\n",
                dir.path().join("logs").display()
            ));
        }
        let config_path = dir.path().join("portcullis.yaml");
        std::fs::write(&config_path, cfg).expect("write config");
        Self::spawn(dir, config_path)
    }

    fn spawn(dir: TempDir, config_path: PathBuf) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "-c"])
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(String, SocketAddr)>();
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let msg = v["message"].as_str().unwrap_or("");
                    if (msg == "proxy listening" || msg == "admin listening")
                        && let Some(a) = v["addr"].as_str().and_then(|a| a.parse().ok())
                    {
                        let _ = tx.send((msg.to_string(), a));
                    }
                }
                keep.lock().unwrap().push(line);
            }
        });
        let n_proxies = std::fs::read_to_string(&config_path)
            .unwrap()
            .matches("- addr:")
            .count();
        let mut proxies = Vec::new();
        let mut admin = None;
        while proxies.len() < n_proxies || admin.is_none() {
            match rx.recv_timeout(READY_TIMEOUT) {
                Ok((m, a)) if m == "proxy listening" => proxies.push(a),
                Ok((_, a)) => admin = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "gateway did not become ready; stderr:\n{}",
                        lines.lock().unwrap().join("\n")
                    );
                }
            }
        }
        Gateway {
            child,
            proxy: proxies[0],
            proxies,
            admin: admin.unwrap(),
            dir,
            config_path,
            stderr: lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for a diagnostic line containing `needle` (bounded).
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line containing {needle:?}"
            );
            std::thread::sleep(Duration::from_millis(20)); // polling a log, not synchronising state
        }
    }

    /// Resident set size of the gateway process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Stops the gateway (`kill -9` when `kill9`, else SIGTERM and a clean
    /// exit) and starts it again on the same directory and config.
    pub fn restart(mut self, kill9: bool) -> Gateway {
        if kill9 {
            let _ = self.child.kill();
        } else {
            self.signal("TERM");
        }
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, TempDir::new("moved"));
        let config_path = self.config_path.clone();
        drop(self);
        Self::spawn(dir, config_path)
    }

    /// Stops the gateway cleanly (SIGTERM) and hands back its directory.
    pub fn stop(mut self) -> TempDir {
        self.signal("TERM");
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, TempDir::new("moved"))
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join("access.log")).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// A temporary directory removed on drop (no extra crate needed).

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "portcullis-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// The recording upstream

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }
}

#[derive(Default)]
pub struct UpstreamState {
    pub connections: AtomicUsize,
    pub bytes_in: AtomicU64,
    pub requests: Mutex<Vec<Seen>>,
}

/// A real HTTP/1.1 server on 127.0.0.1:0 on its own runtime thread.
///
/// Paths: `/big?bytes=N` streams N bytes; `/slow?ms=N` answers after N ms;
/// `/ws` accepts a WebSocket upgrade and echoes raw bytes; `/status/N`
/// answers N; anything else echoes the request body with 200 (labelled
/// `text/plain` in the Content-Encoding named by the request's
/// `x-echo-content-encoding`, when it has one).
pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<UpstreamState>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let state = Arc::new(UpstreamState::default());
        let (tx, rx) = mpsc::channel();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((sock, _)) = l.accept().await else {
                        continue;
                    };
                    st.connections.fetch_add(1, Ordering::SeqCst);
                    let st2 = st.clone();
                    tokio::spawn(async move {
                        let io = Counting {
                            inner: sock,
                            count: st2.clone(),
                        };
                        let svc = service_fn(move |req| upstream_handle(st2.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(io), svc)
                            .with_upgrades()
                            .await;
                    });
                }
            });
        });
        let addr = rx.recv_timeout(READY_TIMEOUT).expect("upstream ready");
        Upstream { addr, state }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().unwrap().clone()
    }

    /// True when not a single byte reached the upstream.
    pub fn saw_nothing(&self) -> bool {
        self.state.connections.load(Ordering::SeqCst) == 0
            && self.state.bytes_in.load(Ordering::SeqCst) == 0
            && self.state.requests.lock().unwrap().is_empty()
    }
}

struct Counting {
    inner: tokio::net::TcpStream,
    count: Arc<UpstreamState>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
        r
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn query_num(uri: &hyper::Uri, key: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

async fn upstream_handle(
    st: Arc<UpstreamState>,
    mut req: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        record(&st, req, Vec::new());
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let resp = Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
        return Ok(resp);
    }
    let uri = req.uri().clone();
    let (parts, body) = req.into_parts();
    let echo_coding = parts.headers.get("x-echo-content-encoding").cloned();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    record(&st, Request::from_parts(parts, ()), body.clone());
    if path == "/big" {
        let total = query_num(&uri, "bytes").unwrap_or(1 << 20);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_stream(total, chunk);
        return Ok(Response::builder()
            .header("content-length", total.to_string())
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap());
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(query_num(&uri, "ms").unwrap_or(500))).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let mut resp = Response::builder()
        .status(status)
        .header("x-upstream", "test");
    if let Some(ce) = echo_coding {
        resp = resp
            .header("content-type", "text/plain")
            .header("content-encoding", ce);
    }
    Ok(resp.body(Full::new(Bytes::from(body)).boxed()).unwrap())
}

fn record<B>(st: &UpstreamState, req: Request<B>, body: Vec<u8>) {
    let seen = Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        version: format!("{:?}", req.version()),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
    };
    st.requests.lock().unwrap().push(seen);
}

/// A body stream of `total` bytes in `chunk`-sized frames, produced lazily.
fn futures_stream(
    total: u64,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    struct S {
        left: u64,
        chunk: Bytes,
    }
    impl futures_core::Stream for S {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let n = self.left.min(self.chunk.len() as u64) as usize;
            self.left -= n as u64;
            Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
        }
    }
    S { left: total, chunk }
}

// ---------------------------------------------------------------------------
// Raw sockets

/// Sends `raw` on a fresh connection and returns everything the gateway
/// answered until it closed the connection (bounded by a read timeout).
pub fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The admin listener's `/metrics` answer (head and Prometheus text).
pub fn metrics_text(admin: SocketAddr) -> String {
    let raw = raw_exchange(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    String::from_utf8_lossy(&raw).into_owned()
}

/// Status code of the first response in `raw`, if any.
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(raw.get(..12)?).ok()?;
    s.strip_prefix("HTTP/1.1 ")
        .or_else(|| s.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()
}

/// Sends one request with `Connection: close` semantics left to the caller
/// and returns (status, headers lower-cased, body) of the first response.
pub fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(raw).expect("parseable response") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("partial response: {:?}", String::from_utf8_lossy(raw)),
    };
    let hs: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    (r.code.unwrap_or(0), hs, raw[n..].to_vec())
}

/// Runs an async block on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

// ---------------------------------------------------------------------------
// Added helpers (transport / lifecycle / admin tests)

impl Gateway {
    /// Like [`Gateway::start_full`], but in a directory the caller prepared
    /// (certificates, token files) before the gateway starts.
    pub fn start_in(dir: TempDir, config: &str) -> Gateway {
        let mut cfg = config.to_string();
        if !cfg.contains("\nadmin:") && !cfg.starts_with("admin:") {
            cfg.push_str("\nadmin:\n  listen: \"127.0.0.1:0\"\n");
        }
        if !cfg.contains("\nlogging:") {
            cfg.push_str(&format!(
                "\nlogging:\n  dir: \"{}\"\n",
                dir.path().join("logs").display()
            ));
        }
        let config_path = dir.path().join("portcullis.yaml");
        std::fs::write(&config_path, cfg).expect("write config");
        Self::spawn(dir, config_path)
    }

    /// Waits (bounded by `limit`) for the process to exit; `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20)); // polling for exit, not synchronising state
        }
    }
}

// ---------------------------------------------------------------------------
// Raw keep-alive connections (added for the protocol-hygiene tests)

/// How a bounded read on a raw connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The peer closed the connection (read returned 0).
    Eof,
    /// The peer reset the connection.
    Reset,
    /// Nothing arrived before the read timeout.
    TimedOut,
    /// Bytes arrived.
    Data(Vec<u8>),
}

/// A raw client connection that reads responses one at a time, so that
/// keep-alive and pipelining can be observed. Every read is bounded by the
/// socket read timeout (`RAW_READ_TIMEOUT` unless changed).
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// Default read timeout of a [`RawConn`] (a failure bound, not a delay).
pub const RAW_READ_TIMEOUT: Duration = Duration::from_secs(5);

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(RAW_READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    /// Writes `raw`; returns false when the peer already refused it.
    pub fn send(&mut self, raw: &[u8]) -> bool {
        self.stream.write_all(raw).is_ok() && self.stream.flush().is_ok()
    }

    fn fill(&mut self) -> ReadEnd {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => ReadEnd::Eof,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                ReadEnd::Data(chunk[..n].to_vec())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                ReadEnd::TimedOut
            }
            Err(_) => ReadEnd::Reset,
        }
    }

    /// Reads exactly one complete response (head and body, framed by
    /// Content-Length or chunked; `head_request` for a response to HEAD) and
    /// returns its raw bytes. Panics if the connection ends or times out first.
    pub fn read_response(&mut self, head_request: bool) -> Vec<u8> {
        loop {
            if let Some(n) = complete_response_len(&self.buf, head_request) {
                return self.buf.drain(..n).collect();
            }
            match self.fill() {
                ReadEnd::Data(_) => {}
                other => panic!(
                    "connection ended ({other:?}) before a complete response; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Reads until the connection ends or the read times out and returns how
    /// it ended, together with every byte received.
    pub fn read_until_closed(&mut self) -> (ReadEnd, Vec<u8>) {
        loop {
            match self.fill() {
                ReadEnd::Data(_) => {}
                end => return (end, std::mem::take(&mut self.buf)),
            }
        }
    }
}

/// Length of the first complete response in `buf`, if it is all there.
pub fn complete_response_len(buf: &[u8], head_request: bool) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(buf).expect("parseable response") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let code = r.code.unwrap_or(0);
    if head_request || (100..200).contains(&code) || code == 204 || code == 304 {
        return Some(head);
    }
    let get = |name: &str| {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut pos = head;
        loop {
            let line_end = buf[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
            let size_str = std::str::from_utf8(&buf[pos..line_end]).ok()?;
            let size_str = size_str.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16).expect("chunk size");
            pos = line_end + 2;
            if size == 0 {
                // Trailers (if any) end with an empty line.
                loop {
                    let e = buf[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
                    let empty = e == pos;
                    pos = e + 2;
                    if empty {
                        return Some(pos);
                    }
                }
            }
            if buf.len() < pos + size + 2 {
                return None;
            }
            pos += size + 2;
        }
    }
    match get("content-length") {
        Some(n) => {
            let n: usize = n.trim().parse().expect("content-length");
            (buf.len() >= head + n).then_some(head + n)
        }
        // Close-delimited: complete only when the caller sees EOF.
        None => None,
    }
}

/// Decodes a chunked body (as produced by the gateway) into its data.
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let e = b.windows(2).position(|w| w == b"\r\n").expect("chunk line");
        let s = std::str::from_utf8(&b[..e]).unwrap();
        let n = usize::from_str_radix(s.split(';').next().unwrap().trim(), 16).unwrap();
        b = &b[e + 2..];
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

/// A header value from a `parse_response` header list.
pub fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The JSON body of a gateway refusal, parsed.
pub fn reject_json(raw: &[u8]) -> serde_json::Value {
    let (_, _, body) = parse_response(raw);
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

/// Runs the binary with `args` in `cwd` (no `PORTCULLIS_CONFIG`), bounded
/// by READY_TIMEOUT: a hung command fails the test instead of hanging it.
pub fn run_cli(cwd: &Path, args: &[&str]) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(cwd)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(out) => out.expect("wait for portcullis"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("portcullis {args:?} did not exit in time");
        }
    }
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
