//! The retention sweeper: deletes events and audit records older than
//! `audit.retention_days`, and closed incidents as old, except critical ones.
//!
//! The audit chain is cut only at a checkpoint: every record up to the
//! newest checkpoint older than the cutoff goes, and that checkpoint becomes
//! the chain's base (`meta/chain_base`), from which `audit verify` starts.
//! Records younger than the cutoff but before that checkpoint stay, so
//! nothing is deleted early. Work is done in bounded batches.

use super::chain::{self, Link};
use super::keys::{self, TIME_KEY_LEN};
use super::{Op, Space, Store, StoreError};

/// Ops per batch at most.
const CHUNK: usize = 5_000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub events: u64,
    pub audit_records: u64,
    pub incidents: u64,
    /// The new chain base, when audit records were removed.
    pub base: Option<u64>,
}

/// Sweeps everything older than `cutoff_us`; `write` applies one batch.
pub fn sweep(
    store: &dyn Store,
    cutoff_us: u64,
    write: &mut dyn FnMut(Vec<Op>) -> Result<(), StoreError>,
) -> Result<Swept, StoreError> {
    let mut out = Swept::default();
    let floor = keys::time_floor(cutoff_us);

    // Events: the primary records by time, then index entries whose time
    // suffix is older (indexes end with the event's time key).
    loop {
        let mut ops = Vec::new();
        store.scan(Space::Events, &[], Some(&floor), false, &mut |k, _| {
            ops.push(Op::Delete(Space::Events, k.to_vec()));
            ops.len() < CHUNK
        })?;
        if ops.is_empty() {
            break;
        }
        out.events += ops.len() as u64;
        write(ops)?;
    }
    for space in [Space::EventsByIp, Space::EventsByUser, Space::EventsByType] {
        sweep_index(store, space, write, |k| {
            k.len() >= TIME_KEY_LEN
                && keys::split_time_key(&k[k.len() - TIME_KEY_LEN..])
                    .is_some_and(|(t, _)| t < cutoff_us)
        })?;
    }

    // Audit: cut at the newest checkpoint whose record is older than the cutoff.
    let base = chain::base(store)?;
    let mut cut: Option<Link> = None;
    store.scan(Space::Checkpoints, &[], None, false, &mut |_, v| {
        let ts = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(u64::MAX, u64::from_be_bytes);
        match v.get(8..).and_then(Link::decode) {
            Some(l) if ts < cutoff_us => {
                cut = Some(l);
                true
            }
            _ => false,
        }
    })?;
    if let Some(c) = cut.filter(|c| c.seq > base.seq) {
        let end = (c.seq + 1).to_be_bytes();
        loop {
            let mut ops = Vec::new();
            store.scan(Space::Audit, &[], Some(&end), false, &mut |k, _| {
                ops.push(Op::Delete(Space::Audit, k.to_vec()));
                ops.len() < CHUNK
            })?;
            if ops.is_empty() {
                break;
            }
            out.audit_records += ops.len() as u64;
            write(ops)?;
        }
        // The new base goes in with the last deletions' batch boundary:
        // records up to it are gone, verify starts after it.
        write(vec![Op::Put(
            Space::Meta,
            chain::META_BASE.to_vec(),
            c.encode(),
        )])?;
        let mut ops = Vec::new();
        store.scan(
            Space::Checkpoints,
            &[],
            Some(&c.seq.to_be_bytes()),
            false,
            &mut |k, _| {
                ops.push(Op::Delete(Space::Checkpoints, k.to_vec()));
                true
            },
        )?;
        if !ops.is_empty() {
            write(ops)?;
        }
        let seq_of = |k: &[u8]| {
            k.get(k.len().saturating_sub(8)..)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
        };
        sweep_index(store, Space::AuditByTime, write, |k| {
            seq_of(k).is_some_and(|s| s <= c.seq)
        })?;
        for space in [
            Space::AuditByUser,
            Space::AuditByAction,
            Space::AuditByResource,
        ] {
            sweep_index(store, space, write, |k| {
                seq_of(k).is_some_and(|s| s <= c.seq)
            })?;
        }
        out.base = Some(c.seq);
    }

    // Incidents: closed, older than the cutoff, and not critical.
    let mut ops = Vec::new();
    store.scan(Space::Incidents, &[], Some(&floor), false, &mut |k, v| {
        if let Some(i) = crate::incidents::from_bytes(v)
            && !i.status.is_open()
            && i.severity != crate::severity::Severity::Critical
        {
            ops.push(Op::Delete(Space::Incidents, k.to_vec()));
        }
        true
    })?;
    out.incidents = ops.len() as u64;
    for chunk in ops.chunks(CHUNK) {
        write(chunk.to_vec())?;
    }
    Ok(out)
}

fn sweep_index(
    store: &dyn Store,
    space: Space,
    write: &mut dyn FnMut(Vec<Op>) -> Result<(), StoreError>,
    old: impl Fn(&[u8]) -> bool,
) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    store.scan(space, &[], None, false, &mut |k, _| {
        if old(k) {
            ops.push(Op::Delete(space, k.to_vec()));
        }
        true
    })?;
    for chunk in ops.chunks(CHUNK) {
        write(chunk.to_vec())?;
    }
    Ok(())
}
