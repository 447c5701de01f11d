//! Access log: one JSON line per request, to stdout and to a size-rotated
//! file in `logging.dir`. Lines are handed to one writer thread through a
//! bounded queue so the request path never waits on a disk or a slow pipe;
//! when the queue is full the line is dropped and counted.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;

/// Lines buffered between the request path and the writer thread.
const QUEUE_LINES: usize = 16 * 1024;
pub const ACCESS_LOG_FILE: &str = "access.log";

#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    dropped: IntCounter,
}

pub struct AccessLogOptions {
    pub dir: PathBuf,
    pub to_stdout: bool,
    pub max_file_bytes: u64,
    pub max_files: usize,
}

impl AccessLog {
    /// A log that writes nothing (access logging disabled).
    pub fn disabled(dropped: IntCounter) -> AccessLog {
        AccessLog { tx: None, dropped }
    }

    /// Opens `dir/access.log` (creating `dir`) and starts the writer thread.
    pub fn start(opts: AccessLogOptions, dropped: IntCounter) -> io::Result<AccessLog> {
        std::fs::create_dir_all(&opts.dir)?;
        let path = opts.dir.join(ACCESS_LOG_FILE);
        let file = RotatingFile::open(path, opts.max_file_bytes, opts.max_files)?;
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE_LINES);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                writer_loop(rx, file, opts.to_stdout);
            })?;
        Ok(AccessLog {
            tx: Some(tx),
            dropped,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn send(&self, line: String) {
        if let Some(tx) = &self.tx {
            match tx.try_send(line) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.dropped.inc()
                }
            }
        }
    }
}

fn writer_loop(rx: mpsc::Receiver<String>, mut file: RotatingFile, to_stdout: bool) {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut dirty = false;
    loop {
        let line = if dirty {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = out.flush();
                    file.flush();
                    dirty = false;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(l) => l,
                Err(_) => break,
            }
        };
        if to_stdout {
            let _ = out.write_all(line.as_bytes());
        }
        file.write_line(line.as_bytes());
        dirty = true;
        // Drain what is queued before flushing, so bursts cost one write.
        while let Ok(l) = rx.try_recv() {
            if to_stdout {
                let _ = out.write_all(l.as_bytes());
            }
            file.write_line(l.as_bytes());
        }
    }
    let _ = out.flush();
    file.flush();
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

    fn write_line(&mut self, line: &[u8]) {
        if self.size + line.len() as u64 > self.max_bytes && self.size > 0 {
            self.rotate();
        }
        if let Some(out) = &mut self.out {
            if out.write_all(line).is_ok() {
                self.size += line.len() as u64;
            }
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
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
            f.write_line(&[b'x'; 30]);
        }
        f.flush();
        assert!(dir.join("a.log.1").exists());
        assert!(dir.join("a.log.2").exists());
        assert!(!dir.join("a.log.3").exists());
        assert!(std::fs::metadata(dir.join("a.log")).unwrap().len() <= 100);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
