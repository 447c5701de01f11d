//! Who is behind a request, as far as a proxy can tell: a verified JWT's
//! user claim, or a user header set by a trusted proxy in front (an auth
//! gateway). The result names the user in events and audit records.
//!
//! JWTs are verified (HS256 with `identity.jwt.verify.hs256_secret`); an
//! unverifiable token names nobody and is reported: `jwt_alg_none` (a token
//! that asks not to be verified), `jwt_expired`, `jwt_invalid` (bad shape,
//! signature or algorithm).

use http::HeaderMap;
use ring::hmac;

/// `identity` from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityConfig {
    /// Believed only when the peer is a trusted proxy (else anyone could
    /// claim to be anyone).
    pub user_header: Option<String>,
    pub jwt: Option<JwtConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    /// `authorization` (Bearer) or another header carrying the bare token.
    pub header: String,
    pub hs256_secret: Vec<u8>,
    pub user_claim: String,
    /// Allowed clock skew for `exp`/`nbf`.
    pub leeway_s: u64,
}

/// What the identity layer found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub user: Option<String>,
    /// A token problem to report as a security event.
    pub problem: Option<JwtProblem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtProblem {
    AlgNone,
    Expired,
    Invalid,
}

impl JwtProblem {
    pub fn event_kind(self) -> &'static str {
        match self {
            JwtProblem::AlgNone => "jwt_alg_none",
            JwtProblem::Expired => "jwt_expired",
            JwtProblem::Invalid => "jwt_invalid",
        }
    }

    /// alg=none is an attack; a bad signature likely one; expiry is routine.
    pub fn severity(self) -> u8 {
        match self {
            JwtProblem::AlgNone => 3,
            JwtProblem::Invalid => 2,
            JwtProblem::Expired => 1,
        }
    }
}

const MAX_USER: usize = 256;

pub fn identify(
    cfg: &IdentityConfig,
    headers: &HeaderMap,
    trusted_peer: bool,
    now_s: u64,
) -> Identity {
    let mut id = Identity::default();
    if let Some(j) = &cfg.jwt
        && let Some(token) = token_of(j, headers)
    {
        match verify(j, token, now_s) {
            Ok(user) => id.user = user,
            Err(p) => id.problem = Some(p),
        }
    }
    if id.user.is_none()
        && trusted_peer
        && let Some(h) = &cfg.user_header
        && let Some(v) = headers.get(h.as_str()).and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if !v.is_empty() && v.len() <= MAX_USER {
            id.user = Some(v.to_string());
        }
    }
    id
}

fn token_of<'a>(j: &JwtConfig, headers: &'a HeaderMap) -> Option<&'a str> {
    let v = headers.get(j.header.as_str())?.to_str().ok()?.trim();
    let t = if j.header.eq_ignore_ascii_case("authorization") {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?
    } else {
        v
    };
    // Only JWT-shaped bearer tokens are ours to judge (opaque tokens pass).
    (t.matches('.').count() == 2 && t.starts_with("eyJ")).then_some(t.trim())
}

/// The user claim of a valid token (`None` when the claim is absent).
pub fn verify(j: &JwtConfig, token: &str, now_s: u64) -> Result<Option<String>, JwtProblem> {
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwtProblem::Invalid);
    };
    let header: serde_json::Value = serde_json::from_slice(&b64url(h).ok_or(JwtProblem::Invalid)?)
        .map_err(|_| JwtProblem::Invalid)?;
    match header.get("alg").and_then(|a| a.as_str()) {
        Some(a) if a.eq_ignore_ascii_case("none") => return Err(JwtProblem::AlgNone),
        Some("HS256") => {}
        _ => return Err(JwtProblem::Invalid),
    }
    let sig = b64url(s).ok_or(JwtProblem::Invalid)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &j.hs256_secret);
    let signed = &token[..h.len() + 1 + p.len()];
    hmac::verify(&key, signed.as_bytes(), &sig).map_err(|_| JwtProblem::Invalid)?;
    let claims: serde_json::Value = serde_json::from_slice(&b64url(p).ok_or(JwtProblem::Invalid)?)
        .map_err(|_| JwtProblem::Invalid)?;
    let num = |k: &str| claims.get(k).and_then(|v| v.as_u64());
    if num("exp").is_some_and(|e| e.saturating_add(j.leeway_s) < now_s) {
        return Err(JwtProblem::Expired);
    }
    if num("nbf").is_some_and(|n| n > now_s.saturating_add(j.leeway_s)) {
        return Err(JwtProblem::Invalid);
    }
    Ok(match claims.get(&j.user_claim) {
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= MAX_USER => {
            Some(s.clone())
        }
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// base64url without padding (padding tolerated).
pub fn b64url(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) fn b64url_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(secret: &[u8], header: &str, claims: &str) -> String {
        let h = b64url_encode(header.as_bytes());
        let p = b64url_encode(claims.as_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let sig = hmac::sign(&key, format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", b64url_encode(sig.as_ref()))
    }

    fn cfg() -> IdentityConfig {
        IdentityConfig {
            user_header: Some("x-user-id".into()),
            jwt: Some(JwtConfig {
                header: "authorization".into(),
                hs256_secret: b"jwt-secret-0123456789".to_vec(),
                user_claim: "sub".into(),
                leeway_s: 30,
            }),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn verified_tokens_name_their_user() {
        let t = jwt(
            b"jwt-secret-0123456789",
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"alice","exp":2000}"#,
        );
        let h = headers(&[("authorization", &format!("Bearer {t}"))]);
        assert_eq!(
            identify(&cfg(), &h, false, 1000).user.as_deref(),
            Some("alice")
        );
        // Expired (beyond the leeway), forged, alg=none.
        assert_eq!(
            identify(&cfg(), &h, false, 2031).problem,
            Some(JwtProblem::Expired)
        );
        let forged = jwt(b"other-secret", r#"{"alg":"HS256"}"#, r#"{"sub":"admin"}"#);
        let h = headers(&[("authorization", &format!("Bearer {forged}"))]);
        let id = identify(&cfg(), &h, false, 1000);
        assert_eq!((id.user, id.problem), (None, Some(JwtProblem::Invalid)));
        let none = format!(
            "{}.{}.",
            b64url_encode(br#"{"alg":"none"}"#),
            b64url_encode(br#"{"sub":"admin"}"#)
        );
        let h = headers(&[("authorization", &format!("Bearer {none}"))]);
        assert_eq!(
            identify(&cfg(), &h, false, 1000).problem,
            Some(JwtProblem::AlgNone)
        );
        // An opaque bearer token is not ours to judge.
        let h = headers(&[("authorization", "Bearer opaque-token-123")]);
        assert_eq!(identify(&cfg(), &h, false, 1000), Identity::default());
    }

    #[test]
    fn the_user_header_is_believed_only_from_trusted_proxies() {
        let h = headers(&[("x-user-id", "bob")]);
        assert_eq!(identify(&cfg(), &h, true, 0).user.as_deref(), Some("bob"));
        assert_eq!(identify(&cfg(), &h, false, 0).user, None);
    }

    #[test]
    fn base64url_round_trips() {
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\xfe\x00"] {
            assert_eq!(b64url(&b64url_encode(s)).unwrap(), s);
        }
        assert_eq!(b64url("a+b"), None);
    }
}
