//! Upstream side: the pooled HTTP/1.1 client, route selection, and the
//! header hygiene applied to what crosses the gateway in each direction.

use std::net::{IpAddr, SocketAddr};

use http::Uri;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;

use crate::body::ForwardBody;
use crate::config::{RouteConfig, UpstreamConfig, UpstreamTarget};

pub type UpstreamClient = Client<HttpConnector, ForwardBody>;

/// Builds the pooled client (keep-alive, connect timeout, idle pool expiry).
pub fn build_client(cfg: &UpstreamConfig) -> UpstreamClient {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(cfg.connect_timeout));
    conn.set_nodelay(true);
    conn.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.pool_idle)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // The gateway sets Host itself (the client's Host is preserved).
        .set_host(false)
        .build(conn)
}

/// An upstream with its address resolved (the built-in echo has a real port).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub authority: Authority,
    pub base_path: String,
    /// For health checks and messages.
    pub display: String,
}

impl Resolved {
    pub fn from_target(t: &UpstreamTarget, echo: Option<SocketAddr>) -> Option<Resolved> {
        match t {
            UpstreamTarget::Http {
                authority,
                base_path,
            } => Some(Resolved {
                authority: authority.clone(),
                base_path: base_path.clone(),
                display: format!("http://{authority}{base_path}"),
            }),
            UpstreamTarget::BuiltinEcho => {
                let addr = echo?;
                Some(Resolved {
                    authority: addr.to_string().parse().ok()?,
                    base_path: String::new(),
                    display: format!("builtin:echo (http://{addr})"),
                })
            }
        }
    }

    /// The absolute URI for the client: upstream authority + base path + target.
    pub fn uri_for(&self, pq: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        // `OPTIONS *` stays asterisk-form (the only method allowed to use it).
        if let Some(p) = pq.filter(|p| p.as_str() == "*") {
            return Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(self.authority.clone())
                .path_and_query(p.clone())
                .build();
        }
        let pq = pq.filter(|p| p.as_str().starts_with('/'));
        let full = match (self.base_path.is_empty(), pq) {
            (true, Some(p)) => p.clone(),
            (true, None) => PathAndQuery::from_static("/"),
            (false, p) => {
                let p = p.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{}", self.base_path, p))?
            }
        };
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(full)
            .build()
    }
}

/// Picks the upstream for (host, path): routes are sorted most specific first.
pub fn select<'a>(
    routes: &'a [(RouteConfig, Resolved)],
    default: &'a Resolved,
    host: Option<&str>,
    path: &str,
) -> &'a Resolved {
    for (r, target) in routes {
        if let Some(h) = &r.host {
            match host {
                Some(req_host) if strip_port(req_host).eq_ignore_ascii_case(h) => {}
                _ => continue,
            }
        }
        if path_has_prefix(path, &r.path_prefix) {
            return target;
        }
    }
    default
}

/// `/v2` matches `/v2`, `/v2/x` and `/v2?q` but not `/v20`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let p = prefix.trim_end_matches('/');
    path.strip_prefix(p)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies drop.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];
const HOP_BY_HOP_EXTRA: &[&str] = &["keep-alive", "proxy-connection"];

/// Narrows `Accept-Encoding` to the codings the response rules can read
/// (`gzip`, `deflate`, `identity`), so that the upstream does not answer a
/// text response in `br` or `zstd`, which would be scored on its status and
/// headers only. The client still gets a compressed answer when it accepts
/// gzip or deflate; when it accepts none of them, `identity` is asked for.
/// Tokens keep their parameters (`gzip;q=0.8`); an absent header stays
/// absent. Returns whether the header was changed.
pub fn narrow_accept_encoding(h: &mut HeaderMap) -> bool {
    let mut kept: Vec<&str> = Vec::new();
    let mut dropped = false;
    for v in h.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else {
            dropped = true;
            continue;
        };
        for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let name = token.split(';').next().unwrap_or("").trim();
            if ["gzip", "x-gzip", "deflate", "identity"]
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
            {
                kept.push(token);
            } else {
                dropped = true;
            }
        }
    }
    if !dropped {
        return false;
    }
    let value = if kept.is_empty() {
        "identity".to_string()
    } else {
        kept.join(", ")
    };
    match HeaderValue::from_str(&value) {
        Ok(v) => {
            h.insert(header::ACCEPT_ENCODING, v);
        }
        Err(_) => {
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
    }
    true
}

/// Removes hop-by-hop headers and every header named in `Connection`.
/// With `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive (WebSocket).
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Fast path: most requests carry none of these (one pass over the names
    // instead of nine hashed removals).
    let any = h
        .keys()
        .any(|k| HOP_BY_HOP.contains(k) || HOP_BY_HOP_EXTRA.contains(&k.as_str()));
    if !any && !keep_upgrade {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for v in h.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for tok in s.split(',') {
                let tok = tok.trim();
                if tok.is_empty() || (keep_upgrade && tok.eq_ignore_ascii_case("upgrade")) {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(tok.to_ascii_lowercase().as_bytes()) {
                    named.push(n);
                }
            }
        }
    }
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        if keep_upgrade && (n == header::CONNECTION || n == header::UPGRADE) {
            continue;
        }
        h.remove(n);
    }
    for n in HOP_BY_HOP_EXTRA {
        h.remove(*n);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client address: the peer, unless the peer is a trusted proxy, in
/// which case the right-most untrusted `X-Forwarded-For` entry (like nginx
/// `real_ip_recursive on`).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else { return peer };
        for part in s.split(',') {
            match parse_xff_entry(part.trim()) {
                Some(ip) => hops.push(ip),
                None => return peer, // a malformed list is not believed at all
            }
        }
    }
    let mut client = peer;
    for ip in hops.into_iter().rev() {
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

fn parse_xff_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    // "1.2.3.4:5678" and "[v6]:port" forms
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// What the gateway knows about the request to write forwarding headers.
pub struct ForwardInfo<'a> {
    pub peer: IpAddr,
    pub peer_trusted: bool,
    pub scheme: &'a str,
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
}

/// Writes `X-Forwarded-For/-Proto/-Host`, `Forwarded` and `X-Request-Id`.
/// Headers from an untrusted peer are replaced, never extended.
pub fn set_forwarding_headers(h: &mut HeaderMap, f: &ForwardInfo<'_>) {
    use std::fmt::Write as _;
    let mut buf = String::with_capacity(128);
    if f.peer_trusted
        && let Some(prev) = joined(h, "x-forwarded-for")
    {
        buf.push_str(&prev);
        buf.push_str(", ");
    }
    let _ = write!(buf, "{}", f.peer);
    set(h, "x-forwarded-for", &buf);
    if !(f.peer_trusted && h.contains_key("x-forwarded-proto")) {
        h.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if f.scheme == "https" { "https" } else { "http" }),
        );
    }
    if !(f.peer_trusted && h.contains_key("x-forwarded-host")) {
        match f.host {
            Some(v) => {
                h.insert(HeaderName::from_static("x-forwarded-host"), v.clone());
            }
            None => {
                h.remove("x-forwarded-host");
            }
        }
    }
    buf.clear();
    if f.peer_trusted
        && let Some(prev) = joined(h, "forwarded")
    {
        buf.push_str(&prev);
        buf.push_str(", ");
    }
    match f.peer {
        IpAddr::V4(v4) => {
            let _ = write!(buf, "for={v4}");
        }
        IpAddr::V6(v6) => {
            let _ = write!(buf, "for=\"[{v6}]\"");
        }
    }
    buf.push_str(";proto=");
    buf.push_str(f.scheme);
    if let Some(host) = f.host.and_then(|v| v.to_str().ok()) {
        buf.push_str(";host=\"");
        buf.extend(host.chars().filter(|c| *c != '"' && *c != '\\'));
        buf.push('"');
    }
    set(h, "forwarded", &buf);
    h.insert(
        HeaderName::from_static("x-request-id"),
        f.request_id.clone(),
    );
}

fn joined(h: &HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in h.get_all(name) {
        let s = v.to_str().ok()?;
        match &mut out {
            None => out = Some(s.to_string()),
            Some(o) => {
                o.push_str(", ");
                o.push_str(s);
            }
        }
    }
    out
}

fn set(h: &mut HeaderMap, name: &'static str, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_narrowed_to_what_the_response_rules_read() {
        let narrow = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            let changed = super::narrow_accept_encoding(&mut h);
            let after: Vec<String> = h
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            (changed, after)
        };
        assert_eq!(
            narrow(&["gzip, deflate, br, zstd"]),
            (true, vec!["gzip, deflate".to_string()])
        );
        assert_eq!(
            narrow(&["br;q=1.0, GZIP;q=0.8", "*;q=0.1"]),
            (true, vec!["GZIP;q=0.8".to_string()])
        );
        assert_eq!(narrow(&["br"]), (true, vec!["identity".to_string()]));
        assert_eq!(narrow(&["*"]), (true, vec!["identity".to_string()]));
        // Nothing to drop: the header is left as it was, repeated or not.
        assert_eq!(
            narrow(&["gzip", "deflate;q=0.5"]),
            (false, vec!["gzip".to_string(), "deflate;q=0.5".to_string()])
        );
        assert_eq!(narrow(&["identity"]), (false, vec!["identity".to_string()]));
        assert_eq!(narrow(&[]), (false, Vec::<String>::new()));
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.1.1.1".parse().unwrap());
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted).to_string(),
            "203.0.113.9"
        );
        assert_eq!(
            client_ip("198.51.100.1".parse().unwrap(), &h, &trusted).to_string(),
            "198.51.100.1"
        );
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &h, &trusted).to_string(),
            "10.0.0.2"
        );
    }

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn routes_by_prefix_boundary() {
        assert!(path_has_prefix("/v2/x", "/v2"));
        assert!(path_has_prefix("/v2", "/v2/"));
        assert!(!path_has_prefix("/v20", "/v2"));
        assert_eq!(strip_port("Example.com:8080"), "Example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
