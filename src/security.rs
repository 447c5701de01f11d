//! The gateway's security state outside the rule engine: the store writer,
//! the blocked-address list, and the mapping from what the request path saw
//! to security events and audit records.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::config::{AuditPolicy, Config};
use crate::store::keys;
use crate::store::model::BlockedIp;
use crate::store::writer::StoreHandle;

/// Blocked addresses, read on every request: a hash set of single hosts and
/// a short list of networks behind one atomic pointer (no lock to read).
#[derive(Default)]
pub struct Blocklist {
    inner: ArcSwap<BlockSet>,
}

#[derive(Default, Clone)]
struct BlockSet {
    hosts: HashMap<IpAddr, BlockedIp>,
    nets: Vec<(IpNet, BlockedIp)>,
}

impl Blocklist {
    pub fn new(entries: Vec<BlockedIp>) -> Blocklist {
        let b = Blocklist::default();
        b.replace(entries);
        b
    }

    fn replace(&self, entries: Vec<BlockedIp>) {
        let mut s = BlockSet::default();
        for e in entries {
            s.insert(e);
        }
        self.inner.store(Arc::new(s));
    }

    /// The entry blocking `ip` now, if any (expired entries do not count).
    pub fn check(&self, ip: IpAddr, now_us: u64) -> Option<BlockedIp> {
        let s = self.inner.load();
        if s.hosts.is_empty() && s.nets.is_empty() {
            return None;
        }
        let ip = ip.to_canonical();
        if let Some(b) = s.hosts.get(&ip)
            && !b.expired(now_us)
        {
            return Some(b.clone());
        }
        s.nets
            .iter()
            .find(|(n, b)| n.contains(&ip) && !b.expired(now_us))
            .map(|(_, b)| b.clone())
    }

    pub fn add(&self, b: BlockedIp) {
        let mut s = BlockSet::clone(&self.inner.load());
        s.insert(b);
        self.inner.store(Arc::new(s));
    }

    pub fn remove(&self, cidr: &str) -> bool {
        let mut s = BlockSet::clone(&self.inner.load());
        let before = s.hosts.len() + s.nets.len();
        s.hosts.retain(|_, b| b.cidr != cidr);
        s.nets.retain(|(_, b)| b.cidr != cidr);
        let removed = s.hosts.len() + s.nets.len() < before;
        self.inner.store(Arc::new(s));
        removed
    }

    /// Entries in force now.
    pub fn list(&self, now_us: u64) -> Vec<BlockedIp> {
        let s = self.inner.load();
        let mut v: Vec<BlockedIp> = s
            .hosts
            .values()
            .chain(s.nets.iter().map(|(_, b)| b))
            .filter(|b| !b.expired(now_us))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.cidr.cmp(&b.cidr));
        v
    }

    /// Drops expired entries from memory; returns their CIDRs (for the store).
    pub fn sweep(&self, now_us: u64) -> Vec<String> {
        let s = self.inner.load();
        let expired: Vec<String> = s
            .hosts
            .values()
            .chain(s.nets.iter().map(|(_, b)| b))
            .filter(|b| b.expired(now_us))
            .map(|b| b.cidr.clone())
            .collect();
        if !expired.is_empty() {
            let mut n = BlockSet::clone(&s);
            n.hosts.retain(|_, b| !b.expired(now_us));
            n.nets.retain(|(_, b)| !b.expired(now_us));
            self.inner.store(Arc::new(n));
        }
        expired
    }
}

impl BlockSet {
    fn insert(&mut self, b: BlockedIp) {
        let Ok(net) = b.cidr.parse::<IpNet>() else {
            return;
        };
        if net.prefix_len() == net.max_prefix_len() {
            self.hosts.insert(net.addr().to_canonical(), b);
        } else {
            self.nets.retain(|(n, _)| *n != net);
            self.nets.push((net, b));
        }
    }
}

/// Parses `ip` or `cidr` text into its canonical CIDR (`203.0.113.7/32`).
pub fn canonical_cidr(s: &str) -> Option<String> {
    let net = s.parse::<IpNet>().ok().or_else(|| {
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| IpNet::from(ip.to_canonical()))
    })?;
    Some(net.trunc().to_string())
}

/// The runtime state built once at start (the store is not reloaded).
pub struct Security {
    pub store: StoreHandle,
    pub blocklist: Arc<Blocklist>,
    pub instance_id: String,
    pub correlator: Arc<std::sync::Mutex<crate::incidents::Correlator>>,
    pub notifier: Option<crate::notify::Notifier>,
}

impl Security {
    pub fn now() -> u64 {
        keys::now_micros()
    }
}

/// The event type of a block by a rule pack (the seeds' event kinds).
pub fn event_kind(pack: &str) -> &'static str {
    let p = pack.to_ascii_lowercase();
    if p.contains("sql") {
        "sql_injection_attempt"
    } else if p.contains("xss") {
        "xss_attempt"
    } else if p.contains("lfi") || p.contains("traversal") || p.contains("path") {
        "path_traversal_attempt"
    } else if p.contains("rce") || p.contains("command") || p.contains("shell") {
        "command_injection_attempt"
    } else if p.contains("protocol") {
        "protocol_violation"
    } else if p.contains("scanner") {
        "scanner_detected"
    } else {
        "rule_match"
    }
}

/// The first `audit.policies` entry matching a request.
pub fn audit_policy<'a>(
    cfg: &'a Config,
    method: &str,
    host: Option<&str>,
    path: &str,
) -> Option<&'a AuditPolicy> {
    cfg.audit.policies.iter().find(|p| {
        (p.methods.is_empty() || p.methods.iter().any(|m| m == method))
            && p.host.as_deref().is_none_or(|h| {
                host.is_some_and(|x| x.split(':').next().unwrap_or(x).eq_ignore_ascii_case(h))
            })
            && p.path
                .as_deref()
                .is_none_or(|g| glob(g.as_bytes(), path.as_bytes()))
    })
}

/// Path globs: `*` matches within one segment, `**` across segments.
pub fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        [b'*', rest @ ..] => {
            let seg = s.iter().position(|&c| c == b'/').unwrap_or(s.len());
            (0..=seg).any(|i| glob(rest, &s[i..]))
        }
        [c, rest @ ..] => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// `success`, `denied` (401/403) or `failure` from an upstream status.
pub fn outcome(status: u16) -> &'static str {
    match status {
        401 | 403 => "denied",
        400..=599 => "failure",
        _ => "success",
    }
}

/// The resource an admin path names: `/api/admin/users/42` → (`users`, `42`).
pub fn resource_of(path: &str) -> (Option<String>, Option<String>) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let looks_like_id = |s: &str| {
        s.bytes().any(|b| b.is_ascii_digit())
            || (s.len() >= 16 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
    };
    match segs.as_slice() {
        [.., kind, id] if looks_like_id(id) => (Some((*kind).to_string()), Some((*id).to_string())),
        [.., kind] => (Some((*kind).to_string()), None),
        [] => (None, None),
    }
}

/// Incident correlation, auto-blocking and notification, run by the store
/// writer on every stored event.
pub struct IncidentObserver {
    pub correlator: Arc<std::sync::Mutex<crate::incidents::Correlator>>,
    pub blocklist: Arc<Blocklist>,
    pub notifier: Option<crate::notify::Notifier>,
}

impl IncidentObserver {
    fn apply(
        &self,
        actions: Vec<crate::incidents::Action>,
        now_us: u64,
        ops: &mut Vec<crate::store::Op>,
    ) {
        use crate::incidents::{Action, to_ops};
        for a in actions {
            let (inc, notify) = match a {
                Action::Create(i) => (i, Some("incident.created")),
                Action::Escalated(i) => (i, Some("incident.escalated")),
                Action::Update(i) => (i, None),
                Action::Block { ip, ttl, reason } => {
                    let b = BlockedIp {
                        cidr: IpNet::from(ip.to_canonical()).to_string(),
                        reason,
                        source: "auto".into(),
                        created_us: now_us,
                        expires_us: Some(now_us.saturating_add(ttl.as_micros() as u64)),
                    };
                    match crate::store::writer::block_ops(&b) {
                        Ok(mut o) => ops.append(&mut o),
                        Err(e) => tracing::error!(error = %e, "auto-block not stored"),
                    }
                    tracing::warn!(ip = %b.cidr, ttl_s = ttl.as_secs(), reason = %b.reason, "auto-blocked");
                    self.blocklist.add(b);
                    continue;
                }
            };
            match to_ops(&inc) {
                Ok(mut o) => ops.append(&mut o),
                Err(e) => tracing::error!(error = %e, incident = %inc.id, "incident not stored"),
            }
            if let Some(kind) = notify {
                tracing::warn!(incident = %inc.id, severity = inc.severity.as_str(), title = %inc.title, "{kind}");
                if let Some(n) = &self.notifier
                    && let Ok(body) = serde_json::to_value(&inc)
                {
                    n.notify(
                        inc.severity,
                        kind,
                        &serde_json::json!({ "event": kind, "incident": body }),
                    );
                }
            }
        }
    }
}

impl crate::store::writer::Observer for IncidentObserver {
    fn event(
        &mut self,
        id: &str,
        ts_us: u64,
        ev: &crate::store::model::EventIn,
        ops: &mut Vec<crate::store::Op>,
    ) {
        let mut o = crate::incidents::Observed::from_event(id.to_string(), ev);
        o.ts_us = ts_us;
        let actions = match self.correlator.lock() {
            Ok(mut c) => c.observe(&o, ts_us),
            Err(_) => return,
        };
        self.apply(actions, ts_us, ops);
    }

    fn erase(&mut self, user: &str) {
        if let Ok(mut c) = self.correlator.lock() {
            c.erase_user(user);
        }
    }

    fn tick(&mut self, now_us: u64, ops: &mut Vec<crate::store::Op>) {
        let actions = match self.correlator.lock() {
            Ok(mut c) => c.tick(now_us),
            Err(_) => return,
        };
        self.apply(actions, now_us, ops);
        for cidr in self.blocklist.sweep(now_us) {
            ops.extend(crate::store::writer::unblock_ops(&cidr));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(cidr: &str, expires: Option<u64>) -> BlockedIp {
        BlockedIp {
            cidr: cidr.into(),
            reason: "test".into(),
            source: "admin".into(),
            created_us: 0,
            expires_us: expires,
        }
    }

    #[test]
    fn blocklist_matches_hosts_networks_and_expiry() {
        let l = Blocklist::new(vec![b("203.0.113.7/32", None), b("10.1.0.0/16", Some(100))]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.check(ip("203.0.113.7"), 50).is_some());
        assert!(l.check(ip("::ffff:203.0.113.7"), 50).is_some(), "mapped v4");
        assert!(l.check(ip("203.0.113.8"), 50).is_none());
        assert!(l.check(ip("10.1.2.3"), 50).is_some());
        assert!(l.check(ip("10.1.2.3"), 100).is_none(), "expired");
        assert_eq!(l.sweep(100), vec!["10.1.0.0/16".to_string()]);
        assert!(l.remove("203.0.113.7/32"));
        assert!(l.check(ip("203.0.113.7"), 50).is_none());
        assert_eq!(canonical_cidr("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(
            canonical_cidr("::ffff:1.2.3.4").as_deref(),
            Some("1.2.3.4/32")
        );
        assert_eq!(canonical_cidr("nope"), None);
    }

    #[test]
    fn globs_and_resources() {
        assert!(glob(b"/api/admin/*", b"/api/admin/users"));
        assert!(!glob(b"/api/admin/*", b"/api/admin/users/7"));
        assert!(glob(b"/api/admin/**", b"/api/admin/users/7"));
        assert!(glob(b"/api/*/orders", b"/api/v2/orders"));
        assert!(!glob(b"/api/admin/*", b"/api/adminx"));
        assert_eq!(
            resource_of("/api/admin/users/42"),
            (Some("users".into()), Some("42".into()))
        );
        assert_eq!(
            resource_of("/api/admin/users"),
            (Some("users".into()), None)
        );
        assert_eq!(outcome(204), "success");
        assert_eq!(outcome(403), "denied");
        assert_eq!(outcome(500), "failure");
        assert_eq!(event_kind("sqli"), "sql_injection_attempt");
        assert_eq!(event_kind("xss"), "xss_attempt");
    }
}
