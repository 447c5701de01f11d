//! What is stored: security events, audit records, incidents, blocked
//! addresses. Records are JSON objects (self-describing, readable by
//! `audit export` and by any later version); personal fields are sealed
//! per subject (see [`crypto`](super::crypto)).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::crypto::{Keyring, hex, unhex};
use super::{Op, Store, StoreError};
use crate::severity::Severity;

/// Fields that identify or describe a person: sealed with the subject key
/// when the record names a user.
pub const PERSONAL_FIELDS: &[&str] = &["user", "ip", "user_agent", "changes", "details", "geo"];

/// Shown in place of personal fields whose subject was erased.
pub const ERASED: &str = "[erased]";

/// The audit categories of the seeds.
pub const AUDIT_CATEGORIES: &[&str] = &[
    "authentication",
    "authorization",
    "data_access",
    "admin_action",
    "api_access",
    "security_event",
    "privacy",
];

/// A security event as its producer reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventIn {
    #[serde(skip)]
    pub ts_us: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub rule_ids: Vec<u32>,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub score: u32,
    /// `block`, `detect`, `log`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's country (ISO 3166-1 alpha-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<String>,
    #[serde(skip_serializing_if = "Value::is_null", default)]
    pub details: Value,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl EventIn {
    pub fn severity(&self) -> Severity {
        Severity::from_number(self.severity).unwrap_or(Severity::Low)
    }
}

/// An audited action as its producer reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditIn {
    #[serde(skip)]
    pub ts_us: u64,
    pub category: String,
    pub action: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The admin token's role, or the user's role from the identity layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// `{field: {"old": .., "new": ..}}` where known.
    #[serde(skip_serializing_if = "Value::is_null", default)]
    pub changes: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Value::is_null", default)]
    pub details: Value,
}

/// A blocked address or network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockedIp {
    /// Canonical CIDR (`203.0.113.7/32`).
    pub cidr: String,
    pub reason: String,
    /// `admin`, `auto` (incident response), `config`.
    pub source: String,
    pub created_us: u64,
    /// `None`: until removed.
    pub expires_us: Option<u64>,
}

impl BlockedIp {
    pub fn expired(&self, now_us: u64) -> bool {
        self.expires_us.is_some_and(|e| e <= now_us)
    }
}

/// Moves the personal fields of `rec` into one sealed `personal` blob under
/// the subject key of its `user` (created on first use; the op that stores
/// a new key is pushed to `ops`). Without a user, nothing is sealed.
pub fn seal_personal(
    rec: &mut Map<String, Value>,
    ring: &Keyring,
    store: &dyn Store,
    new_keys: &mut Vec<([u8; 32], super::crypto::SubjectKey)>,
    ops: &mut Vec<Op>,
) -> Result<(), StoreError> {
    let Some(user) = rec.get("user").and_then(Value::as_str).map(str::to_owned) else {
        return Ok(());
    };
    let p = ring.pseudonym(&user);
    let mut personal = Map::new();
    for f in PERSONAL_FIELDS {
        if let Some(v) = rec.remove(*f) {
            personal.insert((*f).to_string(), v);
        }
    }
    let plain = serde_json::to_vec(&personal).map_err(|e| StoreError::Other(e.to_string()))?;
    let sealed = if let Some((_, k)) = new_keys.iter().find(|(q, _)| *q == p) {
        ring.seal_subject(k, &plain)?
    } else if let Some(k) = ring.subject_key(store, &p)? {
        ring.seal_subject(&k, &plain)?
    } else {
        let (k, op) = ring.new_subject_key(&p)?;
        ops.push(op);
        let s = ring.seal_subject(&k, &plain)?;
        new_keys.push((p, k));
        s
    };
    rec.insert("subject".into(), Value::String(hex(&p)));
    rec.insert("personal".into(), Value::String(hex(&sealed)));
    Ok(())
}

/// The reverse of [`seal_personal`] for display: personal fields come back
/// when the subject key exists, or read [`ERASED`] when it was shredded.
pub fn open_personal(
    rec: &mut Map<String, Value>,
    ring: &Keyring,
    store: &dyn Store,
) -> Result<(), StoreError> {
    let (Some(Value::String(subject)), Some(Value::String(sealed))) =
        (rec.remove("subject"), rec.remove("personal"))
    else {
        return Ok(());
    };
    let key = match unhex(&subject).and_then(|p| <[u8; 32]>::try_from(p).ok()) {
        Some(p) => ring.subject_key(store, &p)?,
        None => None,
    };
    let opened = key
        .zip(unhex(&sealed))
        .and_then(|(k, s)| Keyring::open_subject(&k, &s))
        .and_then(|plain| serde_json::from_slice::<Map<String, Value>>(&plain).ok());
    match opened {
        Some(fields) => rec.extend(fields),
        None => {
            rec.insert("user".into(), Value::String(ERASED.into()));
            rec.insert("erased".into(), Value::Bool(true));
        }
    }
    Ok(())
}
