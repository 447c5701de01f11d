//! Request bodies: read a bounded prefix before forwarding, then stream the
//! rest under a size cap, an idle deadline and a minimum data rate.
//!
//! Why a prefix is read first: a body that fits in `limits.body_buffer_bytes`
//! is received whole, its framing (chunk sizes, trailers) verified by hyper
//! and by us, before a single byte reaches the upstream — so a framing error
//! answers 400 and forwards nothing. Longer bodies are streamed; a framing
//! error past the prefix aborts the upstream request mid-body (the upstream
//! sees a truncated request and a reset, never a complete second request).
//! Later phases that inspect bodies read up to `inspect_body_bytes` here.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

/// Why reading a request body failed. Each maps to one response in `respond`.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds max_body_bytes")]
    TooLarge,
    #[error("request body not received within body_read_timeout")]
    Timeout,
    #[error("request body arrived below the minimum data rate")]
    TooSlow,
    #[error("forbidden field `{0}` in request trailers")]
    ForbiddenTrailer(String),
    #[error("malformed request body: {0}")]
    Framing(#[from] hyper::Error),
}

/// Trailer fields that must never arrive after the body: framing, routing,
/// authentication and content metadata that a lenient backend might merge
/// into the head.
const FORBIDDEN_TRAILERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-type",
    "content-encoding",
    "content-range",
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-forwarded-for",
    "forwarded",
];

fn check_trailers(t: &HeaderMap) -> Result<(), BodyError> {
    for name in t.keys() {
        if FORBIDDEN_TRAILERS.contains(&name.as_str()) {
            return Err(BodyError::ForbiddenTrailer(name.as_str().to_string()));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: u64,
    /// Deadline for the buffered prefix, and the longest gap between reads after it.
    pub read_timeout: Duration,
    pub min_rate: u64,
    pub min_rate_grace: Duration,
}

/// An incoming body with our limits applied on every frame.
///
/// The deadlines count only time spent *waiting on the client*: while the
/// gateway is not polling (the upstream applies back-pressure), the clock
/// stops, so a slow upstream never turns into a 408 for a fast client.
pub struct GuardedIncoming {
    inner: Incoming,
    limits: BodyLimits,
    received: u64,
    /// Time spent waiting for client data, over completed waits.
    waited: Duration,
    /// Start of the current wait, if the last poll returned `Pending`.
    waiting_since: Option<tokio::time::Instant>,
    /// Created on the first wait: bodies already buffered never arm a timer.
    idle: Option<Pin<Box<Sleep>>>,
    done: bool,
}

impl GuardedIncoming {
    pub fn new(inner: Incoming, limits: BodyLimits) -> Self {
        GuardedIncoming {
            inner,
            limits,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            idle: None,
            done: false,
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Ends the current wait (a frame or the end of the body arrived).
    fn stop_waiting(&mut self) {
        if let Some(t) = self.waiting_since.take() {
            self.waited += t.elapsed();
        }
    }

    fn poll_guarded(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.stop_waiting();
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    if self.received > self.limits.max_bytes {
                        self.done = true;
                        return Poll::Ready(Some(Err(BodyError::TooLarge)));
                    }
                    if self.limits.min_rate > 0 && self.waited > self.limits.min_rate_grace {
                        let counted = (self.waited - self.limits.min_rate_grace).as_secs_f64();
                        if (self.received as f64) < self.limits.min_rate as f64 * counted {
                            self.done = true;
                            return Poll::Ready(Some(Err(BodyError::TooSlow)));
                        }
                    }
                } else if let Some(t) = frame.trailers_ref()
                    && let Err(e) = check_trailers(t)
                {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(BodyError::Framing(e))))
            }
            Poll::Ready(None) => {
                self.stop_waiting();
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.waiting_since.is_none() {
                    // A new wait begins: the allowed gap is measured from here.
                    let now = tokio::time::Instant::now();
                    self.waiting_since = Some(now);
                    let deadline = now + self.limits.read_timeout;
                    match &mut self.idle {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => self.idle = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                if let Some(sleep) = &mut self.idle
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    self.done = true;
                    return Poll::Ready(Some(Err(BodyError::Timeout)));
                }
                Poll::Pending
            }
        }
    }

    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        std::future::poll_fn(|cx| self.poll_guarded(cx)).await
    }
}

/// The start of a request body, read before forwarding.
pub enum Prefix {
    /// The whole body (trailers verified and dropped), as it was read:
    /// joined into one buffer only if something inspects it.
    Complete(VecDeque<Bytes>),
    /// The first `limit` bytes or more; the rest is still in `rest`.
    Partial {
        chunks: VecDeque<Bytes>,
        rest: GuardedIncoming,
    },
}

/// Reads up to `limit` bytes of `body` within `limits.read_timeout`.
pub async fn read_prefix(
    body: Incoming,
    limits: BodyLimits,
    limit: usize,
) -> Result<Prefix, BodyError> {
    let deadline = tokio::time::Instant::now() + limits.read_timeout;
    let mut g = GuardedIncoming::new(body, limits);
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    let mut have = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, g.next_frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => break,
            Ok(Some(f)) => f?,
        };
        if let Ok(data) = frame.into_data() {
            if data.is_empty() {
                continue;
            }
            have += data.len();
            chunks.push_back(data);
            if have >= limit {
                return Ok(Prefix::Partial { chunks, rest: g });
            }
        }
    }
    Ok(Prefix::Complete(chunks))
}

/// `chunks` as one buffer (copied only when there are several).
pub fn concat(mut chunks: VecDeque<Bytes>) -> Bytes {
    let len = chunks.iter().map(Bytes::len).sum();
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop_front().unwrap_or_default(),
        _ => {
            let mut b = BytesMut::with_capacity(len);
            for c in chunks {
                b.extend_from_slice(&c);
            }
            b.freeze()
        }
    }
}

/// The body sent upstream.
pub enum ForwardBody {
    Empty,
    Full(Option<Bytes>),
    /// A complete body in the pieces it was read in (nothing inspected it,
    /// so it was never joined): sent piece by piece, framed by its length.
    Pieces(VecDeque<Bytes>),
    Stream {
        chunks: VecDeque<Bytes>,
        rest: Box<GuardedIncoming>,
    },
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ForwardBody::Empty => Poll::Ready(None),
            ForwardBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ForwardBody::Pieces(chunks) => {
                Poll::Ready(chunks.pop_front().map(|c| Ok(Frame::data(c))))
            }
            ForwardBody::Stream { chunks, rest } => {
                if let Some(c) = chunks.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(c))));
                }
                loop {
                    return match rest.poll_guarded(cx) {
                        // Request trailers are verified, then not forwarded.
                        Poll::Ready(Some(Ok(f))) if f.is_trailers() => continue,
                        other => other,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Empty => true,
            ForwardBody::Full(b) => b.is_none(),
            ForwardBody::Pieces(chunks) => chunks.is_empty(),
            ForwardBody::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Empty => SizeHint::with_exact(0),
            ForwardBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ForwardBody::Pieces(chunks) => {
                SizeHint::with_exact(chunks.iter().map(|c| c.len() as u64).sum())
            }
            ForwardBody::Stream { chunks, rest } => {
                // Keep Content-Length framing when the client declared one.
                let buffered: u64 = chunks.iter().map(|c| c.len() as u64).sum();
                match rest.inner.size_hint().exact() {
                    Some(n) => SizeHint::with_exact(buffered + n),
                    None => {
                        let mut h = SizeHint::new();
                        h.set_lower(buffered);
                        h
                    }
                }
            }
        }
    }
}
