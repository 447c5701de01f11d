//! sled behind [`Store`]: one tree per [`Space`].

use std::path::Path;

use super::reopen::Reopen;

use super::{Op, Space, Store, StoreError};

struct Inner {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

pub struct SledStore {
    h: Reopen<Inner>,
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
        // sled latches any error of a write as its global error.
        let latches = |e: &StoreError| {
            matches!(
                e,
                StoreError::Io(_) | StoreError::Corrupt(_) | StoreError::Other(_)
            )
        };
        Ok(SledStore {
            h: Reopen::open(path, Self::open_inner, latches)?,
        })
    }

    fn open_inner(path: &Path) -> Result<Inner, StoreError> {
        // The writer decides when to flush (group commit); sled's own
        // background flush is off so a batch's durability is ours to say.
        let config = sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .cache_capacity(64 << 20);
        let try_open = || {
            config.open().map_err(|e| {
                let s = e.to_string();
                if s.contains("lock") || s.contains("Resource temporarily unavailable") {
                    StoreError::Locked(s)
                } else {
                    err(e)
                }
            })
        };
        // sled's I/O threads release a closed database's file lock a moment
        // after its last handle goes (a reopen after a write error, a tool
        // opening a store the same process just closed): a bounded retry.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let db = loop {
            match try_open() {
                Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => break r?,
            }
        };
        let trees = Space::ALL
            .iter()
            .map(|s| db.open_tree(s.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(Inner { db, trees })
    }

    fn write_once(inner: &Inner, ops: &[Op], durable: bool) -> Result<(), StoreError> {
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
        self.h.write(|inner| Self::write_once(inner, ops, durable))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.h
            .write(|inner| inner.db.flush().map(|_| ()).map_err(err))
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.h
            .read(|inner| Ok(inner.tree(space).get(key).map_err(err)?.map(|v| v.to_vec())))
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.h
            .read(|inner| Self::scan_tree(inner.tree(space), from, to, reverse, visit))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.h.read(|inner| inner.db.size_on_disk().map_err(err))
    }
}

impl SledStore {
    fn scan_tree(
        t: &sled::Tree,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
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
}
