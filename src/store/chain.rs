//! The audit hash chain.
//!
//! Record `n` is stored under key `n` (u64 big-endian) as
//! `version ‖ flags ‖ n ‖ hash ‖ payload` where
//! `hash = SHA-256(hash of n-1 ‖ n ‖ flags ‖ payload)`. The hash covers the
//! stored bytes (ciphertext when payloads are encrypted), so the chain
//! verifies without any key and still verifies after a subject's key is
//! shredded. `meta/chain_head` holds the last committed (n, hash): a
//! truncated tail is caught against it, and against checkpoints that were
//! exported to logs and metrics (`audit verify --checkpoint N:HASH`). After
//! the retention sweeper deletes old records, `meta/chain_base` holds the
//! (n, hash) the kept chain starts from.

use ring::digest;

use super::crypto::hex;
use super::{Space, Store, StoreError};

pub const VERSION: u8 = 1;
pub const FLAG_SEALED: u8 = 1;
pub const HEADER: usize = 2 + 8 + 32;
pub const META_HEAD: &[u8] = b"chain_head";
pub const META_BASE: &[u8] = b"chain_base";

pub type Hash = [u8; 32];

/// A position in the chain: the last record's sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    pub seq: u64,
    pub hash: Hash,
}

impl Link {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.seq.to_be_bytes().to_vec();
        v.extend_from_slice(&self.hash);
        v
    }

    pub fn decode(v: &[u8]) -> Option<Link> {
        if v.len() < 40 {
            return None;
        }
        Some(Link {
            seq: u64::from_be_bytes(v[..8].try_into().ok()?),
            hash: v[8..40].try_into().ok()?,
        })
    }

    /// `N:HEX`, as checkpoints are logged.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.seq, hex(&self.hash))
    }

    pub fn parse(s: &str) -> Option<Link> {
        let (n, h) = s.split_once(':')?;
        let hash = super::crypto::unhex(h)?;
        Some(Link {
            seq: n.parse().ok()?,
            hash: hash.try_into().ok()?,
        })
    }
}

pub fn link_hash(prev: &Hash, seq: u64, flags: u8, payload: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&[flags]);
    ctx.update(payload);
    let mut h = [0u8; 32];
    h.copy_from_slice(ctx.finish().as_ref());
    h
}

pub fn encode(seq: u64, flags: u8, hash: &Hash, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.push(VERSION);
    v.push(flags);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(hash);
    v.extend_from_slice(payload);
    v
}

/// A stored record's parts: (flags, claimed sequence, hash, payload).
pub fn decode(v: &[u8]) -> Option<(u8, u64, Hash, &[u8])> {
    if v.len() < HEADER || v[0] != VERSION {
        return None;
    }
    let seq = u64::from_be_bytes(v[2..10].try_into().ok()?);
    let hash: Hash = v[10..42].try_into().ok()?;
    Some((v[1], seq, hash, &v[HEADER..]))
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records checked.
    pub records: u64,
    /// The first and last sequence numbers present.
    pub first: Option<u64>,
    pub last: Option<Link>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The sequence number of the first broken record.
    pub seq: u64,
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Altered,
    Deleted,
    Reordered,
    Truncated,
    Unreadable,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

/// The committed chain head (zero link for an empty chain).
pub fn head(store: &dyn Store) -> Result<Link, StoreError> {
    Ok(store
        .get(Space::Meta, META_HEAD)?
        .and_then(|v| Link::decode(&v))
        .unwrap_or_default())
}

/// Where the kept chain starts (after retention), zero link otherwise.
pub fn base(store: &dyn Store) -> Result<Link, StoreError> {
    Ok(store
        .get(Space::Meta, META_BASE)?
        .and_then(|v| Link::decode(&v))
        .unwrap_or_default())
}

/// The last record actually present (the writer's starting point after a
/// crash: the head in meta can lag the records by one batch).
pub fn last_record(store: &dyn Store) -> Result<Option<Link>, StoreError> {
    let mut out = None;
    let mut bad = None;
    store.scan(Space::Audit, &[], None, true, &mut |k, v| {
        match (k.try_into().map(u64::from_be_bytes), decode(v)) {
            (Ok(seq), Some((_, _, hash, _))) => out = Some(Link { seq, hash }),
            _ => bad = Some(k.to_vec()),
        }
        false
    })?;
    if let Some(k) = bad {
        return Err(StoreError::Corrupt(format!(
            "the last audit record (key {}) is unreadable; run `portcullis audit verify`",
            hex(&k)
        )));
    }
    Ok(out)
}

/// Walks the whole chain from its base and reports the first problem.
/// `anchors` are externally kept checkpoints (from logs or metrics) that the
/// chain must still contain.
pub fn verify(store: &dyn Store, anchors: &[Link]) -> Result<Report, StoreError> {
    let base = base(store)?;
    let head = head(store)?;
    let mut checkpoints = Vec::new();
    store.scan(Space::Checkpoints, &[], None, false, &mut |_, v| {
        if let Some(l) = v.get(8..).and_then(Link::decode) {
            checkpoints.push(l);
        }
        true
    })?;
    let mut must: Vec<Link> = anchors.to_vec();
    must.extend(checkpoints.iter().filter(|c| c.seq > base.seq));
    if head.seq > base.seq {
        must.push(head);
    }
    must.sort_by_key(|l| l.seq);

    let mut report = Report {
        records: 0,
        first: None,
        last: None,
        problem: None,
    };
    let mut prev = base;
    let mut problem: Option<Problem> = None;
    store.scan(Space::Audit, &[], None, false, &mut |k, v| {
        let Ok(key) = <[u8; 8]>::try_from(k) else {
            problem = Some(Problem {
                seq: prev.seq + 1,
                kind: ProblemKind::Unreadable,
                message: format!("a key of the wrong shape ({}) is in the audit chain", hex(k)),
            });
            return false;
        };
        let seq = u64::from_be_bytes(key);
        if seq <= base.seq {
            // Kept by retention's boundary? Only the base itself may remain.
            problem = Some(Problem {
                seq,
                kind: ProblemKind::Reordered,
                message: format!("record {seq} is older than the chain's base {}", base.seq),
            });
            return false;
        }
        if report.first.is_none() {
            report.first = Some(seq);
        }
        if seq != prev.seq + 1 {
            let (a, b) = (prev.seq + 1, seq - 1);
            problem = Some(Problem {
                seq: a,
                kind: ProblemKind::Deleted,
                message: if a == b {
                    format!("record {a} is missing (deleted)")
                } else {
                    format!("records {a} to {b} are missing (deleted)")
                },
            });
            return false;
        }
        let Some((flags, claimed, hash, payload)) = decode(v) else {
            problem = Some(Problem {
                seq,
                kind: ProblemKind::Altered,
                message: format!("record {seq} is unreadable (its header was altered)"),
            });
            return false;
        };
        if claimed != seq {
            problem = Some(Problem {
                seq,
                kind: ProblemKind::Reordered,
                message: format!(
                    "record {claimed} was found at position {seq} (records were reordered or moved)"
                ),
            });
            return false;
        }
        let want = link_hash(&prev.hash, seq, flags, payload);
        if want != hash {
            problem = Some(Problem {
                seq,
                kind: ProblemKind::Altered,
                message: format!(
                    "record {seq} was altered: its content does not match its hash"
                ),
            });
            return false;
        }
        // Every checkpoint naming this record must match, not just the
        // first one found (an operator's anchor and the stored head can
        // name the same record).
        if let Some(m) = must.iter().find(|m| m.seq == seq && m.hash != hash) {
            problem = Some(Problem {
                seq,
                kind: ProblemKind::Altered,
                message: format!(
                    "record {seq} differs from the checkpoint {} (the chain was rewritten from here or earlier)",
                    m.to_text()
                ),
            });
            return false;
        }
        prev = Link { seq, hash };
        report.records += 1;
        true
    })?;
    if problem.is_none()
        && let Some(m) = must.iter().rev().find(|m| m.seq > prev.seq)
    {
        problem = Some(Problem {
            seq: prev.seq + 1,
            kind: ProblemKind::Truncated,
            message: format!(
                "the chain ends at record {} but a checkpoint or the chain head names record {} ({}): records {} to {} were removed",
                prev.seq,
                m.seq,
                m.to_text(),
                prev.seq + 1,
                m.seq
            ),
        });
    }
    if prev.seq > base.seq {
        report.last = Some(prev);
    }
    report.problem = problem;
    Ok(report)
}
