//! Reading the store: events, audit records, incidents, blocked addresses.
//! Used by the admin API and the CLI (`audit export`); safe while the
//! writer writes (engines give consistent point reads and scans).

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::chain;
use super::crypto::Keyring;
use super::keys::{self, TIME_KEY_LEN};
use super::model::{BlockedIp, open_personal};
use super::{Space, Store, StoreError, prefix_end};

/// Decodes a stored event or audit payload into its display form.
pub fn decode_payload(
    store: &dyn Store,
    ring: &Keyring,
    flags: u8,
    payload: &[u8],
) -> Result<Map<String, Value>, StoreError> {
    let plain = ring.open_payload(payload, flags & chain::FLAG_SEALED != 0)?;
    let mut m: Map<String, Value> = serde_json::from_slice(&plain)
        .map_err(|e| StoreError::Corrupt(format!("record is not JSON: {e}")))?;
    open_personal(&mut m, ring, store)?;
    Ok(m)
}

fn decode_event(
    store: &dyn Store,
    ring: &Keyring,
    v: &[u8],
) -> Result<Map<String, Value>, StoreError> {
    if v.len() < 2 || v[0] != chain::VERSION {
        return Err(StoreError::Corrupt("event of unknown version".into()));
    }
    decode_payload(store, ring, v[1], &v[2..])
}

#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    pub kind: Option<String>,
    pub ip: Option<IpAddr>,
    pub user: Option<String>,
    pub min_severity: Option<u8>,
    pub limit: usize,
}

/// Newest first.
pub fn events(
    store: &dyn Store,
    ring: &Keyring,
    f: &EventFilter,
) -> Result<Vec<Value>, StoreError> {
    let since = f.since_us.unwrap_or(0);
    let until = f.until_us.unwrap_or(u64::MAX);
    // Pick the narrowest index; the time bound is then a key range on it.
    let (space, prefix): (Space, Vec<u8>) = if let Some(u) = &f.user {
        (Space::EventsByUser, ring.pseudonym(u).to_vec())
    } else if let Some(ip) = f.ip {
        (Space::EventsByIp, keys::ip_bytes(ip).to_vec())
    } else if let Some(k) = &f.kind {
        (Space::EventsByType, ring.index_term(k, &[]))
    } else {
        (Space::Events, Vec::new())
    };
    let mut from = prefix.clone();
    from.extend_from_slice(&keys::time_floor(since));
    let mut to = prefix.clone();
    to.extend_from_slice(&keys::time_floor(until.saturating_add(1)));
    let mut keys_found: Vec<Vec<u8>> = Vec::new();
    let mut out = Vec::new();
    let mut err = None;
    let limit = f.limit.max(1);
    store.scan(space, &from, Some(&to), true, &mut |k, v| {
        if space == Space::Events {
            match decode_event(store, ring, v) {
                Ok(m) => {
                    if keep(&m, f) {
                        out.push(Value::Object(m));
                    }
                }
                Err(e) => err = Some(e),
            }
        } else if let Some(key) = k.get(prefix.len()..).filter(|t| t.len() == TIME_KEY_LEN) {
            keys_found.push(key.to_vec());
        }
        out.len() < limit && keys_found.len() < limit * 50 && err.is_none()
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    for k in keys_found {
        if out.len() >= limit {
            break;
        }
        if let Some(v) = store.get(Space::Events, &k)? {
            let m = decode_event(store, ring, &v)?;
            if keep(&m, f) {
                out.push(Value::Object(m));
            }
        }
    }
    Ok(out)
}

fn keep(m: &Map<String, Value>, f: &EventFilter) -> bool {
    if let Some(k) = &f.kind
        && m.get("type").and_then(Value::as_str) != Some(k.as_str())
    {
        return false;
    }
    if let Some(min) = f.min_severity
        && m.get("severity").and_then(Value::as_u64).unwrap_or(0) < u64::from(min)
    {
        return false;
    }
    true
}

pub fn event(store: &dyn Store, ring: &Keyring, id: &str) -> Result<Option<Value>, StoreError> {
    let Some(k) = keys::key_of("EVT", id) else {
        return Ok(None);
    };
    match store.get(Space::Events, &k)? {
        Some(v) => Ok(Some(Value::Object(decode_event(store, ring, &v)?))),
        None => Ok(None),
    }
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    pub user: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    /// Records after this sequence number (pagination cursor).
    pub after_seq: Option<u64>,
    pub limit: usize,
}

/// Oldest first, from `after_seq`; `visit` returns false to stop (streaming).
pub fn audit_records(
    store: &dyn Store,
    ring: &Keyring,
    f: &AuditFilter,
    visit: &mut dyn FnMut(u64, Map<String, Value>) -> bool,
) -> Result<(), StoreError> {
    let start = f.after_seq.map_or(0, |s| s.saturating_add(1));
    let since = f.since_us.unwrap_or(0);
    let until = f.until_us.unwrap_or(u64::MAX);
    let mut n = 0usize;
    let limit = if f.limit == 0 { usize::MAX } else { f.limit };
    let mut err = None;
    let mut emit = |seq: u64, v: &[u8], err: &mut Option<StoreError>| -> bool {
        let Some((flags, _, _, payload)) = chain::decode(v) else {
            *err = Some(StoreError::Corrupt(format!(
                "audit record {seq} is unreadable"
            )));
            return false;
        };
        match decode_payload(store, ring, flags, payload) {
            Ok(m) => {
                let ts = m
                    .get("ts")
                    .and_then(Value::as_str)
                    .and_then(keys::parse_time)
                    .unwrap_or(0);
                if ts < since || ts > until {
                    return true;
                }
                n += 1;
                visit(seq, m) && n < limit
            }
            Err(e) => {
                *err = Some(e);
                false
            }
        }
    };
    let index: Option<(Space, Vec<u8>)> = if let Some(u) = &f.user {
        Some((Space::AuditByUser, ring.pseudonym(u).to_vec()))
    } else if let Some(a) = &f.action {
        Some((Space::AuditByAction, ring.index_term(a, &[])))
    } else {
        f.resource
            .as_ref()
            .map(|r| (Space::AuditByResource, ring.index_term(r, &[])))
    };
    match index {
        None if f.since_us.is_some() && f.after_seq.is_none() => {
            // Time index: find the first sequence at or after `since`.
            let mut first = None;
            store.scan(
                Space::AuditByTime,
                &keys::time_floor(since),
                None,
                false,
                &mut |k, _| {
                    first = k
                        .get(8..16)
                        .and_then(|s| s.try_into().ok())
                        .map(u64::from_be_bytes);
                    false
                },
            )?;
            let Some(first) = first else { return Ok(()) };
            store.scan(
                Space::Audit,
                &first.to_be_bytes(),
                None,
                false,
                &mut |k, v| {
                    let seq = k.try_into().map(u64::from_be_bytes).unwrap_or(0);
                    emit(seq, v, &mut err)
                },
            )?;
        }
        None => {
            store.scan(
                Space::Audit,
                &start.to_be_bytes(),
                None,
                false,
                &mut |k, v| {
                    let seq = k.try_into().map(u64::from_be_bytes).unwrap_or(0);
                    emit(seq, v, &mut err)
                },
            )?;
        }
        Some((space, prefix)) => {
            let mut from = prefix.clone();
            from.extend_from_slice(&start.to_be_bytes());
            let end = prefix_end(&prefix);
            let mut seqs = Vec::new();
            store.scan(space, &from, end.as_deref(), false, &mut |k, _| {
                if let Some(s) = k
                    .get(prefix.len()..)
                    .and_then(|s| <[u8; 8]>::try_from(s).ok())
                {
                    seqs.push(u64::from_be_bytes(s));
                }
                true
            })?;
            for seq in seqs {
                if let Some(v) = store.get(Space::Audit, &seq.to_be_bytes())?
                    && !emit(seq, &v, &mut err)
                {
                    break;
                }
            }
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn audit_record(
    store: &dyn Store,
    ring: &Keyring,
    seq: u64,
) -> Result<Option<Value>, StoreError> {
    match store.get(Space::Audit, &seq.to_be_bytes())? {
        Some(v) => {
            let (flags, _, hash, payload) = chain::decode(&v)
                .ok_or_else(|| StoreError::Corrupt(format!("audit record {seq} is unreadable")))?;
            let mut m = decode_payload(store, ring, flags, payload)?;
            m.insert("hash".into(), Value::String(super::crypto::hex(&hash)));
            Ok(Some(Value::Object(m)))
        }
        None => Ok(None),
    }
}

pub fn blocked_ips(store: &dyn Store) -> Result<Vec<BlockedIp>, StoreError> {
    let mut out = Vec::new();
    store.scan(Space::BlockedIps, &[], None, false, &mut |_, v| {
        if let Ok(b) = serde_json::from_slice::<BlockedIp>(v) {
            out.push(b);
        }
        true
    })?;
    Ok(out)
}

/// Counts of a keyspace (statistics; a full scan).
pub fn count(store: &dyn Store, space: Space) -> Result<u64, StoreError> {
    let mut n = 0u64;
    store.scan(space, &[], None, false, &mut |_, _| {
        n += 1;
        true
    })?;
    Ok(n)
}
