//! On-disk cache of compiled Hyperscan databases (`waf.compile_cache`).
//!
//! Compiling the bundled packs is almost all Hyperscan's compiler: seconds
//! of CPU and tens of MB of short-lived memory at every start and reload.
//! A database is a pure function of its patterns, their flags and the
//! library that compiled it, so each one is stored under the SHA-256 of
//! exactly that, and the next load with the same patterns deserializes it
//! instead of compiling.
//!
//! A cache is never trusted over the compiler and never fatal:
//! - a file is `MAGIC`, the SHA-256 of its payload, then the payload that
//!   `hs_serialize_database` wrote; a torn or altered file fails the
//!   digest, and a database from another Hyperscan build or CPU fails
//!   `hs_deserialize_database`: either way the patterns are compiled again
//!   and the file rewritten;
//! - compile errors are never cached: a pattern the compiler refuses is
//!   refused at every load;
//! - an unreadable or unwritable directory is logged and counted, and the
//!   load goes on compiling.
//!
//! Deserializing is not hardened against a hostile file (Hyperscan trusts
//! its input): the directory is created owner-only (0700, files 0600) and
//! must be kept as private as the store it sits in by default.
//!
//! The pure backend builds its automata in well under a second and has
//! nothing to cache; in a build without Hyperscan this type only carries
//! the configured directory.
#![cfg_attr(not(feature = "hyperscan"), allow(dead_code))]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// First bytes of every cache file (format version in the last digit).
const MAGIC: &[u8; 8] = b"PCHSDB1\n";
const DIGEST_LEN: usize = 32;
/// Cache files end with this; [`DbCache::prune`] only ever removes these.
const EXT: &str = "hsdb";

/// What one load did with the cache, for the log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Databases read from the cache.
    pub hits: u32,
    /// Databases compiled (absent, stale or damaged file) and stored.
    pub misses: u32,
    /// Reads or writes that failed (the database was compiled instead).
    pub errors: u32,
}

/// A directory of compiled databases, shared by the compiler threads of one
/// load. Cheap to create; nothing touches the disk until a database is asked
/// for.
#[derive(Debug)]
pub struct DbCache {
    dir: PathBuf,
    hits: AtomicU32,
    misses: AtomicU32,
    errors: AtomicU32,
    /// The file names this load read or wrote (kept by [`DbCache::prune`]).
    used: Mutex<Vec<String>>,
}

/// Distinguishes the temporary files of concurrent writers.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl DbCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DbCache {
            dir: dir.into(),
            hits: AtomicU32::new(0),
            misses: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            used: Mutex::new(Vec::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// The database compiled from `patterns`: from the cache when a sound
    /// file for exactly these patterns exists, else from `build` (and then
    /// stored). `build`'s error is returned as is and nothing is stored.
    #[cfg(feature = "hyperscan")]
    pub(crate) fn get_or_build<E>(
        &self,
        patterns: &[hyperscan::Pattern],
        build: impl FnOnce() -> Result<hyperscan::BlockDatabase, E>,
    ) -> Result<hyperscan::BlockDatabase, E> {
        use hyperscan::SerializedDatabase as _;
        let name = format!("{}.{EXT}", key(patterns));
        self.remember(&name);
        let path = self.dir.join(&name);
        match std::fs::read(&path) {
            Ok(bytes) => match payload(&bytes).map(|p| p.deserialize::<hyperscan::BlockMode>()) {
                Some(Ok(db)) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(db);
                }
                Some(Err(e)) => tracing::info!(
                    file = %path.display(),
                    error = %e,
                    "compiled-rules cache: database from another Hyperscan build or CPU; compiling again"
                ),
                None => tracing::warn!(
                    file = %path.display(),
                    "compiled-rules cache: damaged file (digest mismatch); compiling again"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %path.display(), error = %e, "compiled-rules cache: cannot read");
            }
        }
        let db = build()?;
        self.misses.fetch_add(1, Ordering::Relaxed);
        match db.serialize() {
            Ok(ser) => {
                if let Err(e) = self.store(&name, &ser) {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        dir = %self.dir.display(),
                        error = %e,
                        "compiled-rules cache: cannot write (the next start compiles again)"
                    );
                }
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "compiled-rules cache: cannot serialize a database");
            }
        }
        Ok(db)
    }

    fn remember(&self, name: &str) {
        if let Ok(mut used) = self.used.lock() {
            used.push(name.to_string());
        }
    }

    /// Writes `MAGIC`, the digest and `payload` to a private temporary file
    /// and renames it into place: a reader sees the old file, the new one
    /// or none, never half of one.
    fn store(&self, name: &str, payload: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(ring::digest::digest(&ring::digest::SHA256, payload).as_ref())?;
            f.write_all(payload)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(name))
        };
        let r = write();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// Removes the cache files this load did not use (databases of packs
    /// or settings no longer loaded). Call after a load that succeeded;
    /// returns how many files went.
    pub fn prune(&self) -> usize {
        let Ok(used) = self.used.lock() else {
            return 0;
        };
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = name.ends_with(&format!(".{EXT}"))
                && !name.starts_with('.')
                && name.len() == 64 + 1 + EXT.len();
            if ours && !used.iter().any(|u| u == name) && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

/// The payload of a cache file whose magic and digest check out.
fn payload(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < DIGEST_LEN {
        return None;
    }
    let (digest, payload) = rest.split_at(DIGEST_LEN);
    let want = ring::digest::digest(&ring::digest::SHA256, payload);
    // Not a secret: a plain comparison is fine.
    (want.as_ref() == digest).then_some(payload)
}

/// Hex SHA-256 of everything a compiled database depends on: the library
/// build, and each pattern's expression, flags, id and extensions in order.
#[cfg(feature = "hyperscan")]
fn key(patterns: &[hyperscan::Pattern]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(MAGIC);
    ctx.update(hyperscan::version_str().to_bytes());
    ctx.update(&[0]);
    ctx.update(&(patterns.len() as u64).to_le_bytes());
    for p in patterns {
        ctx.update(&(p.expression.len() as u64).to_le_bytes());
        ctx.update(p.expression.as_bytes());
        ctx.update(&p.flags.bits().to_le_bytes());
        ctx.update(&(p.id.map_or(u64::MAX, |i| i as u64)).to_le_bytes());
        let rest = format!("{:?}|{:?}", p.ext, p.som);
        ctx.update(&(rest.len() as u64).to_le_bytes());
        ctx.update(rest.as_bytes());
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(all(test, feature = "hyperscan"))]
mod tests {
    use super::*;
    use hyperscan::{Builder as _, PatternFlags};

    fn pats(exprs: &[&str]) -> Vec<hyperscan::Pattern> {
        exprs
            .iter()
            .enumerate()
            .map(|(i, e)| hyperscan::Pattern {
                expression: (*e).to_string(),
                flags: PatternFlags::DOTALL,
                id: Some(i),
                ext: hyperscan::ExprExt::default(),
                som: None,
            })
            .collect()
    }

    fn build(p: &[hyperscan::Pattern]) -> hyperscan::Result<hyperscan::BlockDatabase> {
        hyperscan::Patterns(p.to_vec()).build::<hyperscan::BlockMode>()
    }

    fn matches(db: &hyperscan::BlockDatabase, hay: &str) -> Vec<u32> {
        let s = db.alloc_scratch().expect("scratch");
        let mut out = Vec::new();
        db.scan(hay, &s, |id, _, _, _| {
            out.push(id);
            hyperscan::Matching::Continue
        })
        .expect("scan");
        out
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn second_load_reads_what_the_first_compiled() {
        let dir = tempdir("roundtrip");
        let p = pats(&["foo[0-9]+", "bar"]);
        let first = DbCache::new(&dir);
        let db = first.get_or_build(&p, || build(&p)).expect("build");
        assert_eq!(
            first.stats(),
            CacheStats {
                hits: 0,
                misses: 1,
                errors: 0
            }
        );
        assert_eq!(files(&dir).len(), 1);

        let second = DbCache::new(&dir);
        let cached = second
            .get_or_build(&p, || -> hyperscan::Result<_> {
                panic!("must not compile")
            })
            .expect("cached");
        assert_eq!(
            second.stats(),
            CacheStats {
                hits: 1,
                misses: 0,
                errors: 0
            }
        );
        for hay in ["xx foo12 bar", "nothing", "bar"] {
            assert_eq!(matches(&db, hay), matches(&cached, hay), "{hay}");
        }
        // Other patterns, other flags: another file.
        let q = pats(&["foo[0-9]+"]);
        second.get_or_build(&q, || build(&q)).expect("build");
        assert_eq!(second.stats().misses, 1);
        assert_eq!(files(&dir).len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_compiled_again_and_rewritten() {
        let dir = tempdir("damaged");
        let p = pats(&["evil", "x{2,5}y"]);
        DbCache::new(&dir)
            .get_or_build(&p, || build(&p))
            .expect("build");
        let file = files(&dir).remove(0);
        let mut bytes = std::fs::read(&file).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&file, &bytes).expect("write");

        let again = DbCache::new(&dir);
        let db = again.get_or_build(&p, || build(&p)).expect("rebuilt");
        assert_eq!(
            again.stats(),
            CacheStats {
                hits: 0,
                misses: 1,
                errors: 0
            }
        );
        assert_eq!(matches(&db, "an evil xxxy"), vec![0, 1]);
        // The rewrite is sound: the next load reads it.
        let third = DbCache::new(&dir);
        third.get_or_build(&p, || build(&p)).expect("cached");
        assert_eq!(third.stats().hits, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn compile_errors_are_returned_and_never_stored() {
        let dir = tempdir("errors");
        let p = pats(&["(unclosed"]);
        let c = DbCache::new(&dir);
        assert!(c.get_or_build(&p, || build(&p)).is_err());
        assert!(files(&dir).is_empty());
        assert_eq!(c.stats(), CacheStats::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_place_is_counted_and_the_database_still_built() {
        let dir = tempdir("unwritable");
        std::fs::create_dir_all(&dir).expect("mkdir");
        // A file where the directory should be: nothing can be created.
        let blocker = dir.join("not-a-dir");
        std::fs::write(&blocker, b"x").expect("write");
        let p = pats(&["abc"]);
        let c = DbCache::new(blocker.join("cache"));
        let db = c.get_or_build(&p, || build(&p)).expect("built anyway");
        assert_eq!(matches(&db, "xabc"), vec![0]);
        // The read (not a directory) and the write both failed.
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 0,
                misses: 1,
                errors: 2
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn prune_keeps_what_the_load_used_and_only_removes_cache_files() {
        let dir = tempdir("prune");
        let (p, q) = (pats(&["one"]), pats(&["two"]));
        let old = DbCache::new(&dir);
        old.get_or_build(&p, || build(&p)).expect("p");
        old.get_or_build(&q, || build(&q)).expect("q");
        std::fs::write(dir.join("operator-notes.txt"), b"keep me").expect("write");
        let now = DbCache::new(&dir);
        now.get_or_build(&q, || build(&q)).expect("q");
        assert_eq!(now.prune(), 1);
        let names: Vec<String> = files(&dir)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"operator-notes.txt".to_string()));
        assert!(names.contains(&format!("{}.{EXT}", key(&q))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempdir("private");
        let p = pats(&["secret"]);
        DbCache::new(&dir)
            .get_or_build(&p, || build(&p))
            .expect("build");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&files(&dir)[0]), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "portcullis-dbcache-{tag}-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
