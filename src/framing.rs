//! HTTP/1 framing guard: sits between the client socket and hyper and reads
//! the same bytes hyper reads, to see what hyper hides from the handler.
//!
//! Why it exists: hyper resolves ambiguous framing on its own — with both
//! `Content-Length` and `Transfer-Encoding` it drops the length and uses
//! chunked; two equal `Content-Length` lines become one. The request the
//! handler receives then looks clean, but such a request is a smuggling probe
//! and must be answered 400 without being forwarded (SPEC §4). This guard
//! parses every request head with the same parser hyper uses (`httparse`),
//! follows the body framing exactly as hyper's decoder does, and queues one
//! [`HeadVerdict`] per request. The handler pops the verdict for its request
//! (HTTP/1 requests on one connection are handled in order) and cross-checks
//! the method and target, so a guard that ever lost sync fails closed.
//!
//! The same wrapper records the last I/O activity of the connection, which
//! the server uses for its idle keep-alive timeout (hyper has none).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most header lines a head may have before the guard stops tracking (hyper
/// answers 431 well before this with the configured limits).
pub const MAX_HEADERS: usize = 256;
/// hyper's limit on chunk-extension bytes per chunk line.
const CHUNK_EXT_LIMIT: u64 = 16 * 1024;

/// A framing problem the handler must answer 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingProblem {
    ContentLengthAndTransferEncoding,
    DuplicateContentLength,
    InvalidContentLength,
    TransferEncodingNotChunked,
    TransferEncodingOnHttp10,
    /// The guard could not follow the stream; fail closed.
    Desync,
}

impl FramingProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentLengthAndTransferEncoding => "content_length_and_transfer_encoding",
            Self::DuplicateContentLength => "duplicate_content_length",
            Self::InvalidContentLength => "invalid_content_length",
            Self::TransferEncodingNotChunked => "transfer_encoding_not_chunked",
            Self::TransferEncodingOnHttp10 => "transfer_encoding_on_http10",
            Self::Desync => "framing_desync",
        }
    }
}

/// What the guard saw in one request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadVerdict {
    pub problem: Option<FramingProblem>,
    pub method: Box<str>,
    pub target: Box<str>,
}

/// State shared by the I/O wrapper, the connection task and the handler.
#[derive(Debug)]
pub struct ConnShared {
    verdicts: Mutex<VecDeque<HeadVerdict>>,
    /// Set once the connection is upgraded (101) or speaks HTTP/2: stop parsing.
    passthrough: AtomicBool,
    /// Milliseconds since `epoch` of the last read or write.
    last_active_ms: AtomicU64,
    /// Requests whose response has not finished yet.
    pub in_flight: AtomicUsize,
    epoch: Instant,
}

impl ConnShared {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnShared {
            verdicts: Mutex::new(VecDeque::new()),
            passthrough: AtomicBool::new(false),
            last_active_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    /// The verdict for the next request handled on this connection.
    pub fn next_verdict(&self) -> Option<HeadVerdict> {
        self.verdicts.lock().ok().and_then(|mut q| q.pop_front())
    }

    pub fn set_passthrough(&self) {
        self.passthrough.store(true, Ordering::Relaxed);
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last byte moved in either direction.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = self.last_active_ms.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(last))
    }

    fn push(&self, v: HeadVerdict) {
        if let Ok(mut q) = self.verdicts.lock() {
            q.push_back(v);
        }
    }
}

#[derive(Debug)]
enum State {
    /// Reading a request head into `Tracker::head`.
    Head,
    Length(u64),
    ChunkStart,
    ChunkSize(u64),
    ChunkLws,
    ChunkExt(u64),
    ChunkSizeLf(u64),
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    /// Not HTTP/1 any more (h2 preface, upgrade) or framing already rejected.
    Off,
}

/// The byte-level tracker (no I/O): feed it what hyper reads.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    /// The request head read so far (reused across requests).
    head: Vec<u8>,
    /// The chunk size survives the LWS / extension states here rather than
    /// widening every variant.
    pending_size: Option<u64>,
    max_head: usize,
    shared: Arc<ConnShared>,
}

impl Tracker {
    pub fn new(shared: Arc<ConnShared>, max_head: usize) -> Self {
        Tracker {
            state: State::Head,
            head: Vec::new(),
            pending_size: None,
            max_head,
            shared,
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Head => {
                    let had = self.head.len();
                    let take = data
                        .len()
                        .min(self.max_head.saturating_add(1).saturating_sub(had));
                    // A head that arrives whole in one read (the common
                    // case) is parsed where it lies, without copying it and
                    // the body bytes behind it into `head`.
                    if had == 0 && data[..take].contains(&b'\n') {
                        match parse_head(&self.shared, &data[..take]) {
                            HeadResult::Partial => {}
                            HeadResult::Done { head_len, next } => {
                                data = &data[head_len..];
                                self.state = next;
                                continue;
                            }
                            HeadResult::Stop => {
                                self.state = State::Off;
                                return;
                            }
                        }
                    }
                    self.head.extend_from_slice(&data[..take]);
                    // Re-parse only when a line end arrived (cheap for trickles).
                    if !data[..take].contains(&b'\n') {
                        if self.head.len() > self.max_head {
                            self.state = State::Off; // hyper answers 431
                        }
                        return;
                    }
                    match parse_head(&self.shared, &self.head) {
                        HeadResult::Partial => {
                            if self.head.len() > self.max_head {
                                self.state = State::Off;
                            }
                            return;
                        }
                        HeadResult::Done { head_len, next } => {
                            let used = head_len - had;
                            data = &data[used..];
                            self.head.clear();
                            self.state = next;
                        }
                        HeadResult::Stop => {
                            self.state = State::Off;
                            return;
                        }
                    }
                }
                State::Length(n) => {
                    let k = (*n).min(data.len() as u64);
                    *n -= k;
                    data = &data[k as usize..];
                    if *n == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkData(n) => {
                    let k = (*n).min(data.len() as u64);
                    *n -= k;
                    data = &data[k as usize..];
                    if *n == 0 {
                        self.state = State::ChunkDataCr;
                    }
                }
                _ => {
                    let b = data[0];
                    data = &data[1..];
                    self.state = match self.chunk_byte(b) {
                        Some(s) => s,
                        None => State::Off, // hyper reports this body error itself
                    };
                }
            }
        }
    }

    /// One byte of the chunked state machine, exactly as hyper decodes it.
    fn chunk_byte(&mut self, b: u8) -> Option<State> {
        let hex = |b: u8| match b {
            b'0'..=b'9' => Some(u64::from(b - b'0')),
            b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
            b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
            _ => None,
        };
        Some(match std::mem::replace(&mut self.state, State::Off) {
            State::ChunkStart => State::ChunkSize(hex(b)?),
            State::ChunkSize(n) => match b {
                b'\t' | b' ' => {
                    self.pending_size = Some(n);
                    State::ChunkLws
                }
                b';' => {
                    self.pending_size = Some(n);
                    State::ChunkExt(0)
                }
                b'\r' => State::ChunkSizeLf(n),
                _ => State::ChunkSize(n.checked_mul(16)?.checked_add(hex(b)?)?),
            },
            State::ChunkLws => match b {
                b'\t' | b' ' => State::ChunkLws,
                b';' => State::ChunkExt(0),
                b'\r' => return self.size_after_lws(),
                _ => return None,
            },
            State::ChunkExt(n) => match b {
                b'\r' => return self.size_after_lws(),
                b'\n' => return None,
                _ if n + 1 >= CHUNK_EXT_LIMIT => return None,
                _ => State::ChunkExt(n + 1),
            },
            State::ChunkSizeLf(n) => match b {
                b'\n' if n == 0 => State::EndCr,
                b'\n' => State::ChunkData(n),
                _ => return None,
            },
            State::ChunkDataCr => (b == b'\r').then_some(State::ChunkDataLf)?,
            State::ChunkDataLf => (b == b'\n').then_some(State::ChunkStart)?,
            State::Trailer => {
                if b == b'\r' {
                    State::TrailerLf
                } else {
                    State::Trailer
                }
            }
            State::TrailerLf => (b == b'\n').then_some(State::EndCr)?,
            State::EndCr => {
                if b == b'\r' {
                    State::EndLf
                } else {
                    State::Trailer
                }
            }
            State::EndLf => (b == b'\n').then_some(State::Head)?,
            _ => return None,
        })
    }

    /// After LWS or an extension the size comes back from `pending_size`.
    fn size_after_lws(&mut self) -> Option<State> {
        Some(State::ChunkSizeLf(self.pending_size.take()?))
    }
}

enum HeadResult {
    Partial,
    Done { head_len: usize, next: State },
    Stop,
}

/// Parses one request head at the start of `buf` and queues its framing
/// verdict on `shared`.
fn parse_head(shared: &ConnShared, buf: &[u8]) -> HeadResult {
    if buf.starts_with(b"PRI * HTTP/2.0") {
        shared.set_passthrough();
        return HeadResult::Stop;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return HeadResult::Partial,
        Err(_) => return HeadResult::Stop, // hyper answers 400 itself
    };
    let is_http11 = req.version == Some(1);
    let mut cl: Option<u64> = None;
    let mut cl_count = 0usize;
    let mut te_count = 0usize;
    let mut te_chunked_final = false;
    let mut te_exact = true;
    let mut problem = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            cl_count += 1;
            match parse_content_length(h.value) {
                Some(v) => cl = Some(v),
                None => problem = problem.or(Some(FramingProblem::InvalidContentLength)),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te_count += 1;
            te_chunked_final = last_coding_is_chunked(h.value);
            te_exact &= h.value.eq_ignore_ascii_case(b"chunked");
        }
    }
    if te_count > 0 && !is_http11 {
        problem = Some(FramingProblem::TransferEncodingOnHttp10);
    } else if te_count > 0 && cl_count > 0 {
        problem = Some(FramingProblem::ContentLengthAndTransferEncoding);
    } else if te_count > 1 || (te_count == 1 && !te_exact) {
        problem = Some(FramingProblem::TransferEncodingNotChunked);
    } else if cl_count > 1 {
        problem = problem.or(Some(FramingProblem::DuplicateContentLength));
    }
    let verdict = HeadVerdict {
        problem,
        method: req.method.unwrap_or("").into(),
        target: req.path.unwrap_or("").into(),
    };
    shared.push(verdict);
    if problem.is_some() {
        // The handler rejects and closes; nothing after this is HTTP we serve.
        return HeadResult::Stop;
    }
    let next = if te_count > 0 && te_chunked_final {
        State::ChunkStart
    } else {
        match cl {
            Some(n) if n > 0 => State::Length(n),
            _ => State::Head,
        }
    };
    HeadResult::Done { head_len, next }
}

fn parse_content_length(v: &[u8]) -> Option<u64> {
    // hyper accepts only digits (it also folds "a, a" lists; we do not: a
    // list is itself ambiguous and rejected as invalid here).
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn last_coding_is_chunked(v: &[u8]) -> bool {
    let last = v.rsplit(|&b| b == b',').next().unwrap_or(v);
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// The connection I/O as hyper sees it: every read goes through the tracker.
pub struct GuardedIo<T> {
    inner: T,
    tracker: Option<Tracker>,
    shared: Arc<ConnShared>,
}

impl<T> GuardedIo<T> {
    /// `track_http1`: false for connections that are HTTP/2 from the start (ALPN h2).
    pub fn new(inner: T, shared: Arc<ConnShared>, max_head: usize, track_http1: bool) -> Self {
        let tracker = track_http1.then(|| Tracker::new(shared.clone(), max_head));
        shared.touch();
        GuardedIo {
            inner,
            tracker,
            shared,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.shared.touch();
                if let Some(t) = &mut this.tracker {
                    if this.shared.passthrough.load(Ordering::Relaxed) {
                        this.tracker = None;
                    } else {
                        t.feed(new);
                    }
                }
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.shared.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.shared.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Fuzzing and corpus-replay entry point: feeds `data` whole and split at a
/// data-derived point, and panics if the two verdict sequences differ.
pub fn check_split_consistency(data: &[u8]) {
    let whole = verdicts_of(&[data]);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let split = verdicts_of(&[&data[..cut], &data[cut..]]);
    assert_eq!(whole, split, "split feeding disagrees with whole feeding");
}

/// The verdicts a fresh tracker (16 KiB head limit) queues when fed
/// `parts` in order, as successive reads.
fn verdicts_of(parts: &[&[u8]]) -> Vec<HeadVerdict> {
    let shared = ConnShared::new();
    let mut t = Tracker::new(shared.clone(), 16 * 1024);
    for p in parts {
        t.feed(p);
    }
    let mut v = Vec::new();
    while let Some(x) = shared.next_verdict() {
        v.push(x);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<HeadVerdict> {
        verdicts_of(chunks)
    }

    #[test]
    fn follows_pipelined_requests_across_bodies() {
        let data: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nGET /\r\n0\r\nX-T: 1\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        // Byte by byte and in one piece must agree.
        let whole = run(&[data]);
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        let split = run(&bytes);
        assert_eq!(whole, split);
        let targets: Vec<&str> = whole.iter().map(|v| &*v.target).collect();
        assert_eq!(targets, ["/a", "/b", "/c"]);
        assert!(whole.iter().all(|v| v.problem.is_none()));
    }

    #[test]
    fn a_head_split_anywhere_reads_like_one_piece() {
        // A head that arrives whole is parsed in place; one that arrives in
        // parts is gathered first. Every two-piece split must agree.
        let data: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        let whole = run(&[data]);
        assert_eq!(whole.len(), 2);
        assert_eq!(
            whole[1].problem,
            Some(FramingProblem::ContentLengthAndTransferEncoding)
        );
        for at in 1..data.len() {
            let (a, b) = data.split_at(at);
            assert_eq!(run(&[a, b]), whole, "split at {at}");
        }
    }

    #[test]
    fn an_oversized_head_in_one_read_turns_tracking_off() {
        // Over the head limit (16 KiB in `run`): hyper answers 431, the
        // tracker reports nothing and stops, in one read or in many.
        let mut data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        data.extend(std::iter::repeat_n(b'a', 20 * 1024));
        data.extend_from_slice(b"\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(run(&[&data]).is_empty());
        let pieces: Vec<&[u8]> = data.chunks(1000).collect();
        assert!(run(&pieces).is_empty());
    }

    #[test]
    fn flags_what_hyper_would_hide() {
        let v = run(&[b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert_eq!(
            v[0].problem,
            Some(FramingProblem::ContentLengthAndTransferEncoding)
        );
        let v = run(&[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        ]);
        assert_eq!(v[0].problem, Some(FramingProblem::DuplicateContentLength));
        let v = run(&[b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"]);
        assert_eq!(
            v[0].problem,
            Some(FramingProblem::TransferEncodingNotChunked)
        );
        let v = run(&[b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert_eq!(
            v[0].problem,
            Some(FramingProblem::TransferEncodingNotChunked)
        );
    }

    #[test]
    fn chunk_size_with_lws_and_extension_keeps_size() {
        let v = run(&[b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n2;a=b\r\nde\r\n0\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n"]);
        assert_eq!(v.len(), 2);
        assert_eq!(&*v[1].target, "/y");
    }

    #[test]
    fn h2_preface_turns_tracking_off() {
        let v = run(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert!(v.is_empty());
    }
}
