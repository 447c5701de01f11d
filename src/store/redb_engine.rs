//! redb behind [`Store`]: one table per [`Space`], one transaction per batch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::{Op, Space, Store, StoreError};

/// The database file inside `store.path`.
pub const FILE: &str = "portcullis.redb";

pub struct RedbStore {
    /// `None` only while a reopen failed (the next write tries again).
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// A write failed: redb answers `PreviousIo` to everything after an
    /// I/O error until the database is closed and opened again.
    failed: AtomicBool,
}

fn table(s: Space) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(s.name())
}

fn err(e: impl std::fmt::Display) -> StoreError {
    let s = e.to_string();
    if s.contains("already open") || s.contains("lock") {
        StoreError::Locked(s)
    } else if s.contains("orrupt") {
        StoreError::Corrupt(s)
    } else {
        StoreError::Io(s)
    }
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::create(path).map_err(err)
}

impl RedbStore {
    fn db(&self) -> Result<RwLockReadGuard<'_, Option<Database>>, StoreError> {
        let g = self.db.read().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            return Err(StoreError::Io(
                "the database is being reopened after an I/O error".into(),
            ));
        }
        Ok(g)
    }

    /// Closes and reopens the database after a failed write (redb repairs
    /// it on open if needed).
    fn reopen_if_failed(&self) -> Result<(), StoreError> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut g = self.db.write().unwrap_or_else(|e| e.into_inner());
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        *g = None; // closes the file and releases its lock
        *g = Some(open_db(&self.path)?);
        self.failed.store(false, Ordering::Release);
        tracing::warn!(path = %self.path.display(), "store reopened after a write error");
        Ok(())
    }

    fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(r, Err(StoreError::Io(_)) | Err(StoreError::Corrupt(_))) {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = open_db(path)?;
        // Create every table up front so readers never meet a missing one.
        let txn = db.begin_write().map_err(err)?;
        for s in Space::ALL {
            txn.open_table(table(s)).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(RedbStore {
            db: RwLock::new(Some(db)),
            path: path.to_path_buf(),
            failed: AtomicBool::new(false),
        })
    }
}

impl RedbStore {
    fn write_once(&self, ops: &[Op], durable: bool) -> Result<(), StoreError> {
        let g = self.db()?;
        let mut txn = g
            .as_ref()
            .ok_or_else(reopening)?
            .begin_write()
            .map_err(err)?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(err)?;
        {
            let mut open: Vec<(Space, redb::Table<&[u8], &[u8]>)> = Vec::new();
            for op in ops {
                let space = match op {
                    Op::Put(s, ..) | Op::Delete(s, _) => *s,
                };
                let i = match open.iter().position(|(s, _)| *s == space) {
                    Some(i) => i,
                    None => {
                        open.push((space, txn.open_table(table(space)).map_err(err)?));
                        open.len() - 1
                    }
                };
                match op {
                    Op::Put(_, k, v) => {
                        open[i].1.insert(k.as_slice(), v.as_slice()).map_err(err)?;
                    }
                    Op::Delete(_, k) => {
                        open[i].1.remove(k.as_slice()).map_err(err)?;
                    }
                }
            }
        }
        txn.commit().map_err(err)
    }

    fn sync_once(&self) -> Result<(), StoreError> {
        // An empty commit with immediate durability makes every earlier
        // non-durable commit durable too.
        let g = self.db()?;
        let mut txn = g
            .as_ref()
            .ok_or_else(reopening)?
            .begin_write()
            .map_err(err)?;
        txn.set_durability(Durability::Immediate).map_err(err)?;
        txn.commit().map_err(err)
    }
}

impl Store for RedbStore {
    fn engine(&self) -> &'static str {
        "redb"
    }

    fn write(&self, ops: &[Op], durable: bool) -> Result<(), StoreError> {
        self.reopen_if_failed()?;
        let r = self.write_once(ops, durable);
        self.note(r)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.reopen_if_failed()?;
        let r = self.sync_once();
        self.note(r)
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let g = self.db()?;
        let txn = g
            .as_ref()
            .ok_or_else(reopening)?
            .begin_read()
            .map_err(err)?;
        let t = txn.open_table(table(space)).map_err(err)?;
        Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let g = self.db()?;
        let txn = g
            .as_ref()
            .ok_or_else(reopening)?
            .begin_read()
            .map_err(err)?;
        let t = txn.open_table(table(space)).map_err(err)?;
        let range = match to {
            Some(to) if to <= from => return Ok(()),
            Some(to) => t.range::<&[u8]>(from..to).map_err(err)?,
            None => t.range::<&[u8]>(from..).map_err(err)?,
        };
        let mut step = |r: Result<
            (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>),
            redb::StorageError,
        >| {
            let (k, v) = r.map_err(err)?;
            Ok::<bool, StoreError>(visit(k.value(), v.value()))
        };
        if reverse {
            for r in range.rev() {
                if !step(r)? {
                    break;
                }
            }
        } else {
            for r in range {
                if !step(r)? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        // The file's length: redb preallocates, so this is an upper bound.
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| StoreError::Io(e.to_string()))
    }
}

/// The handle is closed while a reopen after a write error is pending.
fn reopening() -> StoreError {
    StoreError::Io("the store is being reopened after an I/O error".into())
}
