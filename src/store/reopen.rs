//! An engine handle that is closed and opened again after a write error.
//!
//! Both engines latch an I/O error: sled keeps it as its global error and
//! returns it from then on; redb answers every later transaction with
//! "close and re-open the database". The writer retries failed batches, so
//! before a write after a failure the handle is dropped (releasing the file
//! and its lock) and opened afresh; the store then recovers by itself once
//! the cause (a full disk) is gone.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::StoreError;

pub(super) struct Reopen<T> {
    /// `None` only while a reopen failed (the next write tries again).
    handle: RwLock<Option<T>>,
    path: PathBuf,
    failed: AtomicBool,
    open: fn(&Path) -> Result<T, StoreError>,
    /// Which errors mean the handle is no longer usable.
    latches: fn(&StoreError) -> bool,
}

impl<T> Reopen<T> {
    pub(super) fn open(
        path: &Path,
        open: fn(&Path) -> Result<T, StoreError>,
        latches: fn(&StoreError) -> bool,
    ) -> Result<Reopen<T>, StoreError> {
        Ok(Reopen {
            handle: RwLock::new(Some(open(path)?)),
            path: path.to_path_buf(),
            failed: AtomicBool::new(false),
            open,
            latches,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on the current handle.
    pub(super) fn read<R>(
        &self,
        f: impl FnOnce(&T) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let g = self.handle.read().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(h) => f(h),
            None => Err(StoreError::Io(
                "the store is being reopened after an I/O error".into(),
            )),
        }
    }

    /// Runs a write, reopening first if an earlier one failed, and notes a
    /// failure for the next call.
    pub(super) fn write<R>(
        &self,
        f: impl FnOnce(&T) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.reopen_if_failed()?;
        let r = self.read(f);
        if let Err(e) = &r
            && (self.latches)(e)
        {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    fn reopen_if_failed(&self) -> Result<(), StoreError> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut g = self.handle.write().unwrap_or_else(|e| e.into_inner());
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        *g = None; // drops every handle: the file and its lock are released
        *g = Some((self.open)(&self.path)?);
        self.failed.store(false, Ordering::Release);
        tracing::warn!(path = %self.path.display(), "store reopened after a write error");
        Ok(())
    }
}
