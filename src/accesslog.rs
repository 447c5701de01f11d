//! Access log: one JSON line per request, to stdout and to a size-rotated
//! file in `logging.dir`.
//!
//! Lines are appended to a shared buffer that one writer thread swaps out
//! every 100 ms, or earlier once 256 KiB are pending. Why not a channel: a
//! send per line wakes the writer per line, and on a pinned core that costs
//! two context switches per request (measured with `benches/proxy.sh`: about
//! 15 µs of a 45 µs request). The request path never waits on a disk or a
//! slow pipe; past 8 MiB pending, lines are dropped and counted.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;

/// Pending bytes past which lines are dropped (the writer is stuck).
const MAX_PENDING_BYTES: usize = 8 << 20;
/// Pending bytes that wake the writer before its next tick.
const HIGH_WATER_BYTES: usize = 256 << 10;
/// The writer's tick: the most a line waits before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
pub const ACCESS_LOG_FILE: &str = "access.log";

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    woken: bool,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    writer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
    dropped: IntCounter,
}

pub struct AccessLogOptions {
    pub dir: PathBuf,
    pub to_stdout: bool,
    pub max_file_bytes: u64,
    pub max_files: usize,
}

thread_local! {
    /// Per-thread scratch for formatting a line without allocating.
    static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(512));
}

impl AccessLog {
    /// A log that writes nothing (access logging disabled).
    pub fn disabled(dropped: IntCounter) -> AccessLog {
        AccessLog {
            shared: None,
            dropped,
        }
    }

    /// Opens `dir/access.log` (creating `dir`) and starts the writer thread.
    pub fn start(opts: AccessLogOptions, dropped: IntCounter) -> io::Result<AccessLog> {
        std::fs::create_dir_all(&opts.dir)?;
        let path = opts.dir.join(ACCESS_LOG_FILE);
        let file = RotatingFile::open(path, opts.max_file_bytes, opts.max_files)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            writer: Mutex::new(None),
        });
        let s2 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer_loop(&s2, file, opts.to_stdout))?;
        if let Ok(mut w) = shared.writer.lock() {
            *w = Some(handle);
        }
        Ok(AccessLog {
            shared: Some(shared),
            dropped,
        })
    }

    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Formats one line with `f` into a reused buffer and queues it.
    pub fn log_with(&self, f: impl FnOnce(&mut String)) {
        let Some(shared) = &self.shared else { return };
        SCRATCH.with(|cell| {
            let Ok(mut line) = cell.try_borrow_mut() else {
                return;
            };
            line.clear();
            f(&mut line);
            let Ok(mut p) = shared.pending.lock() else {
                self.dropped.inc();
                return;
            };
            if p.closed || p.bytes.len() + line.len() > MAX_PENDING_BYTES {
                drop(p);
                self.dropped.inc();
                return;
            }
            p.bytes.extend_from_slice(line.as_bytes());
            if p.bytes.len() >= HIGH_WATER_BYTES && !p.woken {
                p.woken = true;
                shared.wake.notify_one();
            }
        });
    }

    /// Writes what is pending and stops the writer (at shutdown).
    pub fn close(&self) {
        let Some(shared) = &self.shared else { return };
        if let Ok(mut p) = shared.pending.lock() {
            p.closed = true;
            shared.wake.notify_one();
        }
        let handle = shared.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn writer_loop(shared: &Shared, mut file: RotatingFile, to_stdout: bool) {
    let mut batch: Vec<u8> = Vec::with_capacity(HIGH_WATER_BYTES * 2);
    loop {
        let closed = {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if !p.woken && !p.closed {
                p = match shared.wake.wait_timeout(p, FLUSH_INTERVAL) {
                    Ok((p, _)) => p,
                    Err(_) => return,
                };
            }
            p.woken = false;
            std::mem::swap(&mut p.bytes, &mut batch);
            p.closed
        };
        if !batch.is_empty() {
            if to_stdout {
                let mut out = io::stdout().lock();
                let _ = out.write_all(&batch);
                let _ = out.flush();
            }
            file.write_batch(&batch);
            file.flush();
            batch.clear();
        }
        if closed {
            return;
        }
    }
}

/// A file that rotates to `name.1 … name.N` past a size.
struct RotatingFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    size: u64,
    max_bytes: u64,
    max_files: usize,
}

impl RotatingFile {
    fn open(path: PathBuf, max_bytes: u64, max_files: usize) -> io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = f.metadata()?.len();
        Ok(RotatingFile {
            path,
            out: Some(BufWriter::with_capacity(64 * 1024, f)),
            size,
            max_bytes,
            max_files,
        })
    }

    /// Writes whole lines; rotation happens between batches.
    fn write_batch(&mut self, line: &[u8]) {
        if self.size + line.len() as u64 > self.max_bytes && self.size > 0 {
            self.rotate();
        }
        if let Some(out) = &mut self.out
            && out.write_all(line).is_ok()
        {
            self.size += line.len() as u64;
        }
    }

    fn flush(&mut self) {
        if let Some(out) = &mut self.out {
            let _ = out.flush();
        }
    }

    fn rotate(&mut self) {
        self.flush();
        self.out = None;
        let numbered = |n: usize| -> PathBuf {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let _ = std::fs::remove_file(numbered(self.max_files));
        for n in (1..self.max_files).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        let _ = std::fs::rename(&self.path, numbered(1));
        if let Ok(f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            self.out = Some(BufWriter::with_capacity(64 * 1024, f));
            self.size = 0;
        }
    }
}

/// Appends `s` as a JSON string literal (with quotes).
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut s = String::with_capacity(24);
    push_rfc3339(&mut s, t);
    s
}

/// Appends `t` as RFC 3339 UTC with milliseconds.
pub fn push_rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        d.subsec_millis()
    );
}

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Path of the access log inside a log directory.
pub fn access_log_path(dir: &Path) -> PathBuf {
    dir.join(ACCESS_LOG_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_437_296_789);
        assert_eq!(rfc3339(t), "2026-11-23T12:34:56.789Z");
    }

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, r#""a\"b\\c\n\u0001""#);
        assert!(serde_json::from_str::<String>(&s).is_ok());
    }

    #[test]
    fn rotation_keeps_bounded_files() {
        let dir = std::env::temp_dir().join(format!("pc-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = RotatingFile::open(dir.join("a.log"), 100, 2).unwrap();
        for _ in 0..50 {
            f.write_batch(&[b'x'; 30]);
        }
        f.flush();
        assert!(dir.join("a.log.1").exists());
        assert!(dir.join("a.log.2").exists());
        assert!(!dir.join("a.log.3").exists());
        assert!(std::fs::metadata(dir.join("a.log")).unwrap().len() <= 100);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
