//! The embedded store: events, audit records, incidents, blocked IPs.
//!
//! [`Store`] is the seam between the product and a storage engine: ordered
//! byte keyspaces ([`Space`]), batched writes with an explicit durability
//! flag, ordered scans. Nothing engine-specific crosses it, so the same
//! conformance and crash suites run against every engine:
//!
//! - [`sled`](sled_engine) (the default): writes go to sled's log; a durable
//!   write is followed by `flush()`, which on Linux uses `sync_file_range`
//!   on the log file (data, not metadata, reaches the disk).
//! - [`redb`](redb_engine): one transaction per batch; a durable batch
//!   commits with `Durability::Immediate` (fsync), others with
//!   `Durability::None` and are made durable by the next [`Store::sync`].
//!
//! All keys are big-endian, so byte order is numeric and time order. Records
//! are written only by the one background [`writer`], which batches them
//! (group commit) and acknowledges a batch once it is as durable as
//! `store.sync` asks.

pub mod chain;
pub mod crypto;
pub mod export;
pub mod keys;
pub mod model;
pub mod query;
pub mod redb_engine;
mod reopen;
pub mod retention;
pub mod sled_engine;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

/// The keyspaces. Each engine maps one to a tree (sled) or table (redb).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Security events by time key (`keys::time_key`).
    Events,
    /// Index: 16-byte IP (v4 mapped into v6) ‖ event key.
    EventsByIp,
    /// Index: user pseudonym (32 bytes) ‖ event key.
    EventsByUser,
    /// Index: event type ‖ 0 ‖ event key.
    EventsByType,
    /// The audit chain by sequence number (u64, from 1).
    Audit,
    /// Index: time key ‖ sequence.
    AuditByTime,
    /// Index: user pseudonym ‖ sequence.
    AuditByUser,
    /// Index: action ‖ 0 ‖ sequence.
    AuditByAction,
    /// Index: resource type ‖ 0 ‖ sequence.
    AuditByResource,
    /// Chain checkpoints by sequence: (sequence, head hash, time).
    Checkpoints,
    /// Incidents by time key.
    Incidents,
    /// Blocked addresses by canonical CIDR text.
    BlockedIps,
    /// Per-subject keys for crypto-shredding, by pseudonym.
    SubjectKeys,
    /// Small named values: chain head, retention base, store secrets.
    Meta,
}

impl Space {
    pub const ALL: [Space; 14] = [
        Space::Events,
        Space::EventsByIp,
        Space::EventsByUser,
        Space::EventsByType,
        Space::Audit,
        Space::AuditByTime,
        Space::AuditByUser,
        Space::AuditByAction,
        Space::AuditByResource,
        Space::Checkpoints,
        Space::Incidents,
        Space::BlockedIps,
        Space::SubjectKeys,
        Space::Meta,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Space::Events => "events",
            Space::EventsByIp => "events_by_ip",
            Space::EventsByUser => "events_by_user",
            Space::EventsByType => "events_by_type",
            Space::Audit => "audit",
            Space::AuditByTime => "audit_by_time",
            Space::AuditByUser => "audit_by_user",
            Space::AuditByAction => "audit_by_action",
            Space::AuditByResource => "audit_by_resource",
            Space::Checkpoints => "checkpoints",
            Space::Incidents => "incidents",
            Space::BlockedIps => "blocked_ips",
            Space::SubjectKeys => "subject_keys",
            Space::Meta => "meta",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Space, Vec<u8>, Vec<u8>),
    Delete(Space, Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(String),
    #[error("store is in use by another process (a running gateway?): {0}")]
    Locked(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Other(String),
}

/// The store engine seam. Implementations are internally synchronised:
/// reads may run from any thread while the writer writes.
pub trait Store: Send + Sync {
    /// `sled` or `redb`.
    fn engine(&self) -> &'static str;
    /// Applies `ops` in order. With `durable`, returns once they are on disk
    /// as far as the engine guarantees (see the module documentation).
    fn write(&self, ops: &[Op], durable: bool) -> Result<(), StoreError>;
    /// Makes every earlier write durable.
    fn sync(&self) -> Result<(), StoreError>;
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Visits the entries with `from <= key < to` (no upper bound when `to`
    /// is `None`) in key order, or in reverse; `visit` returns `false` to stop.
    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Bytes used on disk (approximate).
    fn size_on_disk(&self) -> Result<u64, StoreError>;
}

/// `store.engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sled,
    Redb,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
        }
    }

    pub fn parse(s: &str) -> Option<Engine> {
        match s {
            "sled" => Some(Engine::Sled),
            "redb" => Some(Engine::Redb),
            _ => None,
        }
    }
}

/// Opens (creating if needed) the store under `dir`: sled keeps its files in
/// `dir/sled/`, redb in `dir/portcullis.redb`. A directory holding the other
/// engine's data is refused rather than silently starting empty.
pub fn open(dir: &Path, engine: Engine) -> Result<Arc<dyn Store>, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let (mine, other) = match engine {
        Engine::Sled => (dir.join("sled"), dir.join(redb_engine::FILE)),
        Engine::Redb => (dir.join(redb_engine::FILE), dir.join("sled")),
    };
    if other.exists() && !mine.exists() {
        return Err(StoreError::Other(format!(
            "{} holds a store of the other engine ({}); set store.engine to match or use another store.path",
            dir.display(),
            other.display()
        )));
    }
    Ok(match engine {
        Engine::Sled => Arc::new(sled_engine::SledStore::open(&mine)?),
        Engine::Redb => Arc::new(redb_engine::RedbStore::open(&mine)?),
    })
}

/// Which engine's data `dir` holds, if any.
pub fn detect(dir: &Path) -> Option<Engine> {
    if dir.join(redb_engine::FILE).exists() {
        Some(Engine::Redb)
    } else if dir.join("sled").exists() {
        Some(Engine::Sled)
    } else {
        None
    }
}

/// The exclusive upper bound of all keys starting with `prefix` (`None`
/// when the prefix is all `0xff`: no bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod conformance {
    //! The same behaviour asked of every engine, on a real directory.
    use super::*;

    fn engines() -> Vec<(Engine, tempdir::Dir)> {
        vec![
            (Engine::Sled, tempdir::Dir::new("conf-sled")),
            (Engine::Redb, tempdir::Dir::new("conf-redb")),
        ]
    }

    fn collect(
        s: &dyn Store,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        rev: bool,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        s.scan(space, from, to, rev, &mut |k, _| {
            out.push(k.to_vec());
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn puts_gets_deletes_and_ordered_scans() {
        for (engine, dir) in engines() {
            let s = open(dir.path(), engine).unwrap();
            assert_eq!(s.engine(), engine.name());
            let mut ops = Vec::new();
            for i in [3u64, 1, 256, 2, 65536] {
                ops.push(Op::Put(
                    Space::Audit,
                    i.to_be_bytes().to_vec(),
                    vec![i as u8],
                ));
            }
            ops.push(Op::Put(
                Space::Events,
                b"a".to_vec(),
                b"other space".to_vec(),
            ));
            s.write(&ops, true).unwrap();
            assert_eq!(
                s.get(Space::Audit, &2u64.to_be_bytes()).unwrap(),
                Some(vec![2])
            );
            assert_eq!(
                s.get(Space::Audit, b"a").unwrap(),
                None,
                "{engine:?}: spaces are separate"
            );
            let keys = collect(&*s, Space::Audit, &[], None, false);
            let nums: Vec<u64> = keys
                .iter()
                .map(|k| u64::from_be_bytes(k[..8].try_into().unwrap()))
                .collect();
            assert_eq!(
                nums,
                vec![1, 2, 3, 256, 65536],
                "{engine:?}: big-endian keys scan in numeric order"
            );
            let rev = collect(
                &*s,
                Space::Audit,
                &2u64.to_be_bytes(),
                Some(&256u64.to_be_bytes()),
                true,
            );
            assert_eq!(
                rev,
                vec![3u64.to_be_bytes().to_vec(), 2u64.to_be_bytes().to_vec()]
            );
            // Stop early.
            let mut n = 0;
            s.scan(Space::Audit, &[], None, false, &mut |_, _| {
                n += 1;
                n < 2
            })
            .unwrap();
            assert_eq!(n, 2);
            s.write(
                &[Op::Delete(Space::Audit, 3u64.to_be_bytes().to_vec())],
                false,
            )
            .unwrap();
            s.sync().unwrap();
            assert_eq!(s.get(Space::Audit, &3u64.to_be_bytes()).unwrap(), None);
            assert_eq!(collect(&*s, Space::Audit, &[], None, false).len(), 4);
            assert!(s.size_on_disk().unwrap() > 0);
        }
    }

    #[test]
    fn prefix_scans_stay_inside_the_prefix() {
        for (engine, dir) in engines() {
            let s = open(dir.path(), engine).unwrap();
            let ops: Vec<Op> = ["a\0x", "ab\0y", "a\0z", "b\0w", "a\x01"]
                .iter()
                .map(|k| Op::Put(Space::EventsByType, k.as_bytes().to_vec(), vec![]))
                .collect();
            s.write(&ops, true).unwrap();
            let end = prefix_end(b"a\0");
            let got = collect(&*s, Space::EventsByType, b"a\0", end.as_deref(), false);
            assert_eq!(got, vec![b"a\0x".to_vec(), b"a\0z".to_vec()], "{engine:?}");
        }
    }

    #[test]
    fn data_survives_reopening() {
        for (engine, dir) in engines() {
            {
                let s = open(dir.path(), engine).unwrap();
                s.write(&[Op::Put(Space::Meta, b"k".to_vec(), b"v".to_vec())], true)
                    .unwrap();
            }
            let s = open(dir.path(), engine).unwrap();
            assert_eq!(
                s.get(Space::Meta, b"k").unwrap(),
                Some(b"v".to_vec()),
                "{engine:?}"
            );
            assert_eq!(detect(dir.path()), Some(engine));
        }
    }

    #[test]
    fn a_directory_of_the_other_engine_is_refused() {
        let dir = tempdir::Dir::new("conf-other");
        drop(open(dir.path(), Engine::Redb).unwrap());
        let e = open(dir.path(), Engine::Sled).err().unwrap();
        assert!(e.to_string().contains("other engine"), "{e}");
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}

/// A temporary directory removed on drop (tests only; no extra crate).
#[cfg(test)]
pub(crate) mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Dir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "portcullis-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
