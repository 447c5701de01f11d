//! sled behind [`Store`]: one tree per [`Space`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use super::{Op, Space, Store, StoreError};

struct Inner {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

pub struct SledStore {
    /// `None` only while a reopen failed (the next write tries again).
    inner: RwLock<Option<Inner>>,
    path: PathBuf,
    /// A write failed: sled latches an I/O error as its global error and
    /// returns it from then on, until the database is opened again.
    failed: AtomicBool,
}

fn err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
            StoreError::Locked(io.to_string())
        }
        sled::Error::Io(io) => StoreError::Io(io.to_string()),
        sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Other(other.to_string()),
    }
}

impl SledStore {
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        Ok(SledStore {
            inner: RwLock::new(Some(Self::open_inner(path)?)),
            path: path.to_path_buf(),
            failed: AtomicBool::new(false),
        })
    }

    fn inner(&self) -> Result<RwLockReadGuard<'_, Option<Inner>>, StoreError> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            return Err(StoreError::Io(
                "the database is being reopened after an I/O error".into(),
            ));
        }
        Ok(g)
    }

    fn reopen_if_failed(&self) -> Result<(), StoreError> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        *g = None; // drops every handle: the file and its lock are released
        *g = Some(Self::open_inner(&self.path)?);
        self.failed.store(false, Ordering::Release);
        tracing::warn!(path = %self.path.display(), "store reopened after a write error");
        Ok(())
    }

    fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(
            r,
            Err(StoreError::Io(_)) | Err(StoreError::Corrupt(_)) | Err(StoreError::Other(_))
        ) {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    fn open_inner(path: &Path) -> Result<Inner, StoreError> {
        // The writer decides when to flush (group commit); sled's own
        // background flush is off so a batch's durability is ours to say.
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .cache_capacity(64 << 20)
            .open()
            .map_err(|e| {
                let s = e.to_string();
                if s.contains("lock") || s.contains("Resource temporarily unavailable") {
                    StoreError::Locked(s)
                } else {
                    err(e)
                }
            })?;
        let trees = Space::ALL
            .iter()
            .map(|s| db.open_tree(s.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(Inner { db, trees })
    }

    fn write_once(&self, ops: &[Op], durable: bool) -> Result<(), StoreError> {
        let g = self.inner()?;
        let inner = g.as_ref().ok_or_else(reopening)?;
        // One batch per tree, applied in the order trees first appear: sled
        // logs them in that order, so a crash keeps a prefix of the batch
        // (records before their index entries, the chain head last).
        let mut batches: Vec<(Space, sled::Batch)> = Vec::new();
        for op in ops {
            let space = match op {
                Op::Put(s, ..) | Op::Delete(s, _) => *s,
            };
            let i = match batches.iter().position(|(s, _)| *s == space) {
                Some(i) => i,
                None => {
                    batches.push((space, sled::Batch::default()));
                    batches.len() - 1
                }
            };
            match op {
                Op::Put(_, k, v) => batches[i].1.insert(k.as_slice(), v.as_slice()),
                Op::Delete(_, k) => batches[i].1.remove(k.as_slice()),
            }
        }
        for (space, b) in batches {
            inner.tree(space).apply_batch(b).map_err(err)?;
        }
        if durable {
            inner.db.flush().map_err(err)?;
        }
        Ok(())
    }
}

impl Inner {
    fn tree(&self, s: Space) -> &sled::Tree {
        &self.trees[s.index()]
    }
}

impl Store for SledStore {
    fn engine(&self) -> &'static str {
        "sled"
    }

    fn write(&self, ops: &[Op], durable: bool) -> Result<(), StoreError> {
        self.reopen_if_failed()?;
        let r = self.write_once(ops, durable);
        self.note(r)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.reopen_if_failed()?;
        let r = self
            .inner()?
            .as_ref()
            .ok_or_else(reopening)?
            .db
            .flush()
            .map(|_| ())
            .map_err(err);
        self.note(r)
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let g = self.inner()?;
        Ok(g.as_ref()
            .ok_or_else(reopening)?
            .tree(space)
            .get(key)
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let g = self.inner()?;
        let t = g.as_ref().ok_or_else(reopening)?.tree(space);
        let iter = match to {
            Some(to) if to <= from => return Ok(()),
            Some(to) => t.range(from..to),
            None => t.range(from..),
        };
        let mut step = |r: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, StoreError> {
            let (k, v) = r.map_err(err)?;
            Ok(visit(&k, &v))
        };
        if reverse {
            for r in iter.rev() {
                if !step(r)? {
                    break;
                }
            }
        } else {
            for r in iter {
                if !step(r)? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner()?
            .as_ref()
            .ok_or_else(reopening)?
            .db
            .size_on_disk()
            .map_err(err)
    }
}

/// The handle is closed while a reopen after a write error is pending.
fn reopening() -> StoreError {
    StoreError::Io("the store is being reopened after an I/O error".into())
}
