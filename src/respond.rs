//! The one place that turns a gateway decision or failure into an HTTP
//! response. Every refusal has a stable machine-readable `error` code, the
//! request id, and (for browsers) an HTML page.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::accesslog::push_json_str;

/// Why the gateway answers instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// Malformed or ambiguous request (framing, Host, header syntax). The
    /// connection is closed after the answer.
    BadRequest(&'static str),
    HeadersTooLarge(&'static str),
    UriTooLong,
    PayloadTooLarge,
    RequestTimeout(&'static str),
    MethodNotAllowed,
    /// The request body could not be parsed for inspection (view error).
    Unprocessable {
        status: u16,
        reason: &'static str,
    },
    /// The body is larger than `inspect_body_bytes` and the policy is `block`.
    OverInspectLimit,
    /// The rule engine blocked the request.
    Blocked(Box<BlockInfo>),
    UpstreamUnavailable,
    UpstreamTimeout,
    BadGateway(&'static str),
    ServiceUnavailable,
}

/// What a WAF block answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    pub status: u16,
    pub rule_ids: Vec<u32>,
    /// Put `rule_ids` in the body (`waf.expose_rule_ids`).
    pub expose: bool,
    /// Custom body (`waf.block_body`).
    pub body: Option<String>,
    /// `inspection_error` when the request could not be inspected (fail closed).
    pub reason: &'static str,
}

impl Reject {
    pub fn status(&self) -> StatusCode {
        match self {
            Reject::Unprocessable { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Reject::OverInspectLimit => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::Blocked(b) => StatusCode::from_u16(b.status).unwrap_or(StatusCode::FORBIDDEN),
            Reject::BadRequest(_) => StatusCode::BAD_REQUEST,
            Reject::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reject::UriTooLong => StatusCode::URI_TOO_LONG,
            Reject::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Reject::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Reject::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable code for the JSON body and the `reason` label of metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::Unprocessable { status: 413, .. } => "payload_too_large",
            Reject::Unprocessable { status: 415, .. } => "unsupported_media_type",
            Reject::Unprocessable { .. } => "bad_request",
            Reject::OverInspectLimit => "payload_too_large",
            Reject::Blocked(_) => "forbidden",
            Reject::BadRequest(_) => "bad_request",
            Reject::HeadersTooLarge(_) => "request_header_fields_too_large",
            Reject::UriTooLong => "uri_too_long",
            Reject::PayloadTooLarge => "payload_too_large",
            Reject::RequestTimeout(_) => "request_timeout",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::UpstreamUnavailable => "upstream_unavailable",
            Reject::UpstreamTimeout => "upstream_timeout",
            Reject::BadGateway(_) => "bad_gateway",
            Reject::ServiceUnavailable => "service_unavailable",
        }
    }

    /// Detail for logs and the response (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Unprocessable { reason, .. } => reason,
            Reject::OverInspectLimit => "over_inspect_limit",
            Reject::Blocked(b) => b.reason,
            Reject::BadRequest(r)
            | Reject::HeadersTooLarge(r)
            | Reject::RequestTimeout(r)
            | Reject::BadGateway(r) => r,
            other => other.code(),
        }
    }

    /// Client-side protocol faults close the connection: after a framing
    /// problem nothing later on the same connection can be trusted.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Reject::BadRequest(_)
                | Reject::Unprocessable { .. }
                | Reject::OverInspectLimit
                | Reject::HeadersTooLarge(_)
                | Reject::UriTooLong
                | Reject::PayloadTooLarge
                | Reject::RequestTimeout(_)
        )
    }
}

/// Builds the response for `reject`. `wants_html` comes from `Accept`.
pub fn reject_response(
    reject: &Reject,
    request_id: &HeaderValue,
    wants_html: bool,
) -> Response<Bytes> {
    let status = reject.status();
    let rid = request_id.to_str().unwrap_or("");
    let (ctype, body) = if let Reject::Blocked(b) = reject
        && let Some(custom) = &b.body
    {
        let ctype = if custom.trim_start().starts_with('<') {
            "text/html; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        (ctype, custom.replace("{request_id}", rid))
    } else if wants_html {
        let title = status.canonical_reason().unwrap_or("Error");
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {title}</title></head>\
             <body><h1>{code} {title}</h1><p>The request was not accepted by the gateway.</p>\
             <p>Request ID: <code>{rid}</code></p></body></html>\n",
            code = status.as_u16(),
            rid = html_escape(rid),
        );
        ("text/html; charset=utf-8", html)
    } else {
        let mut s = String::with_capacity(96);
        s.push_str("{\"error\":");
        push_json_str(&mut s, reject.code());
        if !matches!(reject, Reject::Blocked(_)) {
            s.push_str(",\"reason\":");
            push_json_str(&mut s, reject.reason());
        }
        s.push_str(",\"request_id\":");
        push_json_str(&mut s, rid);
        if let Reject::Blocked(b) = reject
            && b.expose
        {
            s.push_str(",\"rule_ids\":[");
            for (i, id) in b.rule_ids.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&id.to_string());
            }
            s.push(']');
        }
        s.push_str("}\n");
        ("application/json", s)
    };
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-request-id", request_id.clone());
    if *reject == Reject::MethodNotAllowed {
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
    }
    if reject.closes_connection() {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// True when the client prefers HTML (a browser) over JSON.
pub fn wants_html(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_is_valid_and_closes_on_protocol_faults() {
        let rid = HeaderValue::from_static("abc");
        let r = reject_response(&Reject::BadRequest("duplicate_host"), &rid, false);
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["connection"], "close");
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"], "bad_request");
        assert_eq!(v["reason"], "duplicate_host");
        assert_eq!(v["request_id"], "abc");
        let r = reject_response(&Reject::UpstreamTimeout, &rid, true);
        assert_eq!(r.status(), 504);
        assert!(r.headers().get("connection").is_none());
        assert!(std::str::from_utf8(r.body()).unwrap().contains("<h1>504"));
    }
}
