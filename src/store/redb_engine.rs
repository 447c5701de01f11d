//! redb behind [`Store`]: one table per [`Space`], one transaction per batch.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::reopen::Reopen;
use super::{Op, Space, Store, StoreError};

/// The database file inside `store.path`.
pub const FILE: &str = "portcullis.redb";

pub struct RedbStore {
    h: Reopen<Database>,
}

type Bytes<'a> = redb::Table<'a, &'static [u8], &'static [u8]>;
type Entry<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

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

/// Opens (redb repairs after a crash) and creates every table up front, so
/// readers never meet a missing one.
fn open_db(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path).map_err(err)?;
    let txn = db.begin_write().map_err(err)?;
    for s in Space::ALL {
        txn.open_table(table(s)).map_err(err)?;
    }
    txn.commit().map_err(err)?;
    Ok(db)
}

impl RedbStore {
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        // After an I/O error redb answers `PreviousIo` to everything.
        let latches = |e: &StoreError| matches!(e, StoreError::Io(_) | StoreError::Corrupt(_));
        Ok(RedbStore {
            h: Reopen::open(path, open_db, latches)?,
        })
    }
}

fn write_ops(db: &Database, ops: &[Op], durable: bool) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(err)?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })
    .map_err(err)?;
    {
        let mut open: Vec<(Space, Bytes<'_>)> = Vec::new();
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

impl Store for RedbStore {
    fn engine(&self) -> &'static str {
        "redb"
    }

    fn write(&self, ops: &[Op], durable: bool) -> Result<(), StoreError> {
        self.h.write(|db| write_ops(db, ops, durable))
    }

    fn sync(&self) -> Result<(), StoreError> {
        // An empty commit with immediate durability makes every earlier
        // non-durable commit durable too.
        self.h.write(|db| {
            let mut txn = db.begin_write().map_err(err)?;
            txn.set_durability(Durability::Immediate).map_err(err)?;
            txn.commit().map_err(err)
        })
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.h.read(|db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(table(space)).map_err(err)?;
            Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec()))
        })
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.h.read(|db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(table(space)).map_err(err)?;
            let range = match to {
                Some(to) if to <= from => return Ok(()),
                Some(to) => t.range::<&[u8]>(from..to).map_err(err)?,
                None => t.range::<&[u8]>(from..).map_err(err)?,
            };
            let mut step = |r: Entry<'_>| {
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
        })
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        // The file's length: redb preallocates, so this is an upper bound.
        std::fs::metadata(self.h.path())
            .map(|m| m.len())
            .map_err(|e| StoreError::Io(e.to_string()))
    }
}
