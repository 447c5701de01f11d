//! Durability acceptance tests of the store, on the real binary.
//!
//! - `kill -9` under load, both engines, `store.sync: strict`: every record
//!   whose response reached a client (a 403 for a blocked request: its
//!   security event; a 200 for an audited DELETE: its audit record) is in
//!   the store after the crash. Audit records are checked offline with
//!   `portcullis audit verify` / `audit export`, events through the admin
//!   API of the restarted gateway.
//! - A full disk (a small tmpfs, so this part needs root; it says
//!   `skipped` otherwise): the gateway keeps answering (`fail_open`) or
//!   refuses audited actions (`fail_closed`), never crashes, counts and
//!   logs the failure; after a restart with space back the store opens, its
//!   chain verifies and it writes again; and without a restart, once space
//!   is back, the writer's retries write what was kept (the engines reopen
//!   their files after a write error).

mod common;
use common::*;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "crash-admin-token-0123456789";

const PACK: &str = r#"pack: sqli
rules:
  - id: 942100
    name: SQL injection (lexer)
    severity: critical
    targets: [args, json]
    transforms: [url_decode_uni]
    match: {sqli: true}
    tests: {match: ["1' OR '1'='1"], no_match: ["O'Reilly"]}
"#;

/// A failure bound for one exchange or one CLI run, not a delay.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The gateway's configuration for these tests. `store_path` is relative to
/// the configuration's directory or absolute.
fn config(up: SocketAddr, engine: &str, store_path: &str, on_error: &str) -> String {
    format!(
        r#"listen:
  - addr: "127.0.0.1:0"
upstream:
  url: "http://{up}"
trusted_proxies: ["127.0.0.1/32"]
waf:
  rules: ["rules/*.yaml"]
behavior:
  auto_block: {{enabled: false}}   # a 403 must always be the WAF's (an event)
store:
  path: "{store_path}"
  engine: {engine}
  sync: strict
  on_store_error: {on_error}
audit:
  policies:
    - match: {{method: DELETE, path: "/api/admin/**"}}
      category: admin_action
admin:
  listen: "127.0.0.1:0"
  tokens:
    - token: "{TOKEN}"
      role: admin
"#
    )
}

fn gateway_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/sqli.yaml"), PACK).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// A client that reports failures instead of panicking (the gateway dies
// under it on purpose).

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One request on a fresh connection (`Connection: close`), every step
/// bounded. A response whose head arrived counts even if its body was cut:
/// the gateway sends the head only after the record was stored.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Result<Answer, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(raw).map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let read_err = s.read_to_end(&mut out).err();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(&out) {
        Ok(httparse::Status::Complete(n)) => Ok(Answer {
            status: r.code.unwrap_or(0),
            headers: r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            body: out[n..].to_vec(),
        }),
        _ => Err(format!(
            "no response ({} bytes; read error: {read_err:?})",
            out.len()
        )),
    }
}

fn request(method: &str, target: &str, headers: &str) -> Vec<u8> {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: app.test\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A blocked request (SQL injection in the query) from `ip`, with our id.
fn attack(ip: &str, rid: &str) -> Vec<u8> {
    request(
        "GET",
        "/search?q=1'%20OR%20'1'='1",
        &format!("X-Forwarded-For: {ip}\r\nX-Request-Id: {rid}\r\n"),
    )
}

/// An audited action (DELETE on the policy's path) from `ip`, with our id.
fn audited(ip: &str, rid: &str, n: usize) -> Vec<u8> {
    request(
        "DELETE",
        &format!("/api/admin/items/{n}"),
        &format!("X-Forwarded-For: {ip}\r\nX-Request-Id: {rid}\r\n"),
    )
}

fn admin(gw: &Gateway, method: &str, path: &str) -> (u16, Value) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let a = exchange(gw.admin, req.as_bytes())
        .unwrap_or_else(|e| panic!("admin {method} {path}: {e}\n{}", log_of(gw)));
    (a.status, a.json())
}

/// `/metrics` of the admin listener.
fn metrics(gw: &Gateway) -> String {
    let a = exchange(
        gw.admin,
        b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .unwrap_or_else(|e| panic!("metrics: {e}\n{}", log_of(gw)));
    String::from_utf8_lossy(&a.body).into_owned()
}

/// The sum of every sample of a metric family (all label sets).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn log_of(gw: &Gateway) -> String {
    gw.stderr.lock().unwrap().join("\n")
}

// ---------------------------------------------------------------------------
// The offline CLI

/// `audit verify` (must exit 0) and `audit export --format json` of the
/// store in `data`: the chain's record count and the exported request ids.
fn offline_audit(cwd: &Path, data: &Path, ctx: &str) -> (u64, HashSet<String>) {
    let d = data.to_str().unwrap();
    let out = run_cli(cwd, &["audit", "verify", "--data", d]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{ctx}: audit verify failed after kill -9:\nstdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    let records: u64 = if stdout.starts_with("audit chain OK: no records") {
        0
    } else {
        stdout
            .strip_prefix("audit chain OK: ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{ctx}: unexpected verify output: {stdout}"))
    };
    let out = run_cli(cwd, &["audit", "export", "--data", d, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{ctx}: audit export failed: {}",
        text(&out.stderr)
    );
    let mut ids = HashSet::new();
    let mut seqs = Vec::new();
    for line in text(&out.stdout).lines() {
        let doc: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{ctx}: {e}: {line}"));
        seqs.push(doc["event"]["sequence"].as_u64().unwrap_or(0));
        if let Some(id) = doc["http"]["request"]["id"].as_str() {
            ids.insert(id.to_string());
        }
    }
    assert_eq!(
        seqs,
        (1..=records).collect::<Vec<_>>(),
        "{ctx}: the export holds exactly the verified chain, in order"
    );
    (records, ids)
}

// ---------------------------------------------------------------------------
// 1. kill -9 under load

/// What one round of load saw.
#[derive(Default)]
struct Acked {
    events: Vec<String>,
    audits: Vec<String>,
    /// Requests whose connection ended without a response after the kill.
    unanswered: usize,
    /// Anything else (an unexpected status, an error before the kill).
    unexpected: Vec<String>,
}

const CLIENTS: usize = 4;
/// Requests one client sends in a round at most (keeps the events of a
/// round well under the admin API's page of 1000).
const PER_CLIENT_CAP: usize = 150;

/// Runs `CLIENTS` threads against `gw` until `target` acknowledgements
/// were seen, then `kill -9`s the gateway with requests in flight.
fn load_then_kill(gw: &mut Gateway, tag: &str, ip: &str, target: usize) -> Acked {
    let acked = Arc::new(Mutex::new(Acked::default()));
    let killed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<()>();
    let addr = gw.proxy;
    let mut threads = Vec::new();
    for c in 0..CLIENTS {
        let (acked, killed, sent, tx) = (acked.clone(), killed.clone(), sent.clone(), tx.clone());
        let (tag, ip) = (tag.to_string(), ip.to_string());
        threads.push(std::thread::spawn(move || {
            for i in 0..PER_CLIENT_CAP {
                if killed.load(Ordering::SeqCst) {
                    break;
                }
                let rid = format!("{tag}-c{c}-{i}");
                let blocked = (c + i) % 2 == 0;
                let raw = if blocked {
                    attack(&ip, &rid)
                } else {
                    audited(&ip, &rid, c * 1000 + i)
                };
                sent.fetch_add(1, Ordering::SeqCst);
                let r = exchange(addr, &raw);
                let mut a = acked.lock().unwrap();
                match r {
                    Ok(ans) if blocked && ans.status == 403 => {
                        assert_eq!(ans.header("x-request-id"), Some(rid.as_str()));
                        a.events.push(rid);
                        let _ = tx.send(());
                    }
                    Ok(ans) if !blocked && ans.status == 200 => {
                        a.audits.push(rid);
                        let _ = tx.send(());
                    }
                    Ok(ans) => a.unexpected.push(format!(
                        "{rid}: status {} {}",
                        ans.status,
                        text(&ans.body)
                    )),
                    Err(e) if killed.load(Ordering::SeqCst) => {
                        a.unanswered += 1;
                        let _ = e;
                        break;
                    }
                    Err(e) => a.unexpected.push(format!("{rid}: {e} (before the kill)")),
                }
            }
        }));
    }
    drop(tx);
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut seen = 0;
    while seen < target {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(()) => seen += 1,
            Err(_) => break, // all clients ended, or the bound passed
        }
    }
    // The flag first: a client that sees its connection die knows why.
    killed.store(true, Ordering::SeqCst);
    let _ = gw.child.kill();
    let _ = gw.child.wait();
    for t in threads {
        t.join().expect("client thread");
    }
    let a = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        seen >= target,
        "{tag}: only {seen} of {target} acknowledgements before the bound; unexpected: {:?}\n{}",
        a.unexpected,
        log_of(gw)
    );
    assert!(
        a.unexpected.is_empty(),
        "{tag}: unexpected answers under load: {:?}\n{}",
        a.unexpected,
        log_of(gw)
    );
    a
}

/// The ids in `acked` that the admin API does not list among the SQL
/// injection events from `ip`.
fn events_lost(gw: &Gateway, ip: &str, acked: &[String]) -> Vec<String> {
    let (status, v) = admin(
        gw,
        "GET",
        &format!("/api/v1/security/events?limit=1000&type=sql_injection_attempt&ip={ip}"),
    );
    assert_eq!(status, 200, "{v}");
    let events = v["events"].as_array().expect("events");
    assert!(events.len() < 1000, "{ip}: a round fits one page");
    let stored: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    acked
        .iter()
        .filter(|r| !stored.contains(r.as_str()))
        .cloned()
        .collect()
}

fn crash_suite(engine: &str, rounds: usize) {
    let up = Upstream::start();
    let dir = gateway_dir(&format!("crash-{engine}"));
    let data = dir.path().join("data");
    let cli_cwd = TempDir::new(&format!("crash-cli-{engine}"));
    // fail_closed: a 200 to an audited action then always means its record
    // was stored (fail_open answers 200 even when the write failed).
    let mut gw = Gateway::start_in(dir, &config(up.addr, engine, "data", "fail_closed"));
    let mut rounds_events: Vec<(String, Vec<String>)> = Vec::new();
    let mut chain_len = 0u64;
    let (mut total_events, mut total_audits, mut total_unanswered) = (0, 0, 0);
    for round in 0..rounds {
        let tag = format!("{engine}-r{round}");
        // One source address per round: the admin API lists a round's
        // events by address.
        let ip = format!("198.18.{}.{}", round / 250, round % 250 + 1);
        // Vary how far into the load the kill lands.
        let target = 20 + (round * 13) % 80;
        let acked = load_then_kill(&mut gw, &tag, &ip, target);
        total_events += acked.events.len();
        total_audits += acked.audits.len();
        total_unanswered += acked.unanswered;

        // The gateway is dead: the store is read offline.
        let (records, ids) = offline_audit(cli_cwd.path(), &data, &tag);
        let lost: Vec<&String> = acked.audits.iter().filter(|r| !ids.contains(*r)).collect();
        assert!(
            lost.is_empty(),
            "{tag}: acknowledged audit records lost by kill -9: {lost:?} ({} acknowledged, chain {records})",
            acked.audits.len()
        );
        assert!(
            records >= chain_len + acked.audits.len() as u64,
            "{tag}: the chain went from {chain_len} to {records} records with {} new acknowledged",
            acked.audits.len()
        );
        chain_len = records;

        // Events: through the restarted gateway (the next round's).
        gw = gw.restart(true);
        let lost = events_lost(&gw, &ip, &acked.events);
        assert!(
            lost.is_empty(),
            "{tag}: acknowledged events lost by kill -9: {lost:?} (of {} acknowledged)",
            acked.events.len()
        );
        rounds_events.push((ip, acked.events.clone()));
        eprintln!(
            "{tag}: acknowledged {} events, {} audit records; {} unanswered at the kill; chain {records}",
            acked.events.len(),
            acked.audits.len(),
            acked.unanswered
        );
    }
    // Later crashes lost nothing of earlier rounds either.
    for (round, (ip, acked)) in rounds_events.iter().enumerate() {
        let lost = events_lost(&gw, ip, acked);
        assert!(
            lost.is_empty(),
            "{engine}-r{round}: events lost by a later kill -9: {lost:?}"
        );
    }
    // The restarted gateway continues the same chain, and it verifies.
    let (status, v) = admin(&gw, "GET", "/api/v1/audit/verify");
    assert_eq!((status, &v["valid"]), (200, &Value::Bool(true)), "{v}");
    assert!(v["records"].as_u64().unwrap() >= chain_len, "{v}");
    assert!(
        total_unanswered > 0,
        "{engine}: no kill ever landed with a request in flight (the test did not test)"
    );
    eprintln!(
        "{engine}: {rounds} rounds, {total_events} events and {total_audits} audit records acknowledged, none lost; {total_unanswered} requests in flight at the kills"
    );
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_record_sled() {
    crash_suite("sled", 30);
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_record_redb() {
    crash_suite("redb", 30);
}

// ---------------------------------------------------------------------------
// 2. A full disk

/// A tmpfs mounted for the test, unmounted on drop (even on panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(tag: &str, size: &str) -> Result<Tmpfs, String> {
        // Unique per mount: tests run in parallel in one process, and a
        // second mount on the same directory would hide the first.
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "portcullis-test-tmpfs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&p)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                let _ = std::fs::remove_dir(&p);
                format!("mount: {e}")
            })?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&p);
            return Err(text(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(p))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the filesystem of `dir` with `file` until it refuses (bounded by
/// the tmpfs size).
fn fill(file: &Path) {
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0xa5u8; 16 * 1024];
    for _ in 0..(64 << 20) / chunk.len() {
        match f.write(&chunk) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    panic!("{} never filled up", file.display());
}

/// Sends attacks until the store reports failed writes; returns the ids
/// that were answered 403 (all of them must be). Bounded in count.
fn attack_until_write_errors(gw: &mut Gateway, ip: &str, tag: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..5000 {
        let rid = format!("{tag}-full-{i}");
        let a = exchange(gw.proxy, &attack(ip, &rid)).unwrap_or_else(|e| {
            panic!(
                "{tag}: attack {i} on a full disk: {e}; exited: {:?}\n{}",
                gw.child.try_wait(),
                log_of(gw)
            )
        });
        assert_eq!(a.status, 403, "{tag}: attack {i} on a full disk");
        ids.push(rid);
        if i % 10 == 9 && metric_sum(&metrics(gw), "portcullis_store_write_errors_total") > 0.0 {
            return ids;
        }
    }
    panic!(
        "{tag}: 5000 attacks and no failed store write on a full disk\n{}",
        log_of(gw)
    );
}

fn no_panic(gw: &mut Gateway, tag: &str) {
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "{tag}: the gateway exited\n{}",
        log_of(gw)
    );
    no_panic_in_log(gw, tag);
}

fn no_panic_in_log(gw: &Gateway, tag: &str) {
    let log = log_of(gw);
    assert!(!log.contains("panicked"), "{tag}: a panic:\n{log}");
}

/// The request ids of the stored audit records, through the admin API.
fn audit_request_ids(gw: &Gateway) -> HashSet<String> {
    let (status, v) = admin(gw, "GET", "/api/v1/audit/records?limit=1000");
    assert_eq!(status, 200, "{v}");
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
        .collect()
}

/// A gateway whose store sits on a full tmpfs, after the checks of the
/// time the disk is full.
struct FullDisk {
    tag: String,
    ip: &'static str,
    gw: Gateway,
    _up: Upstream,
    filler: PathBuf,
    /// Attacks answered 403 while the store was failing.
    during: Vec<String>,
    /// Declared last: unmounted after the gateway is gone.
    _fs: Tmpfs,
}

/// Mounts a 6 MiB tmpfs, puts the store there, fills the rest, and checks
/// what the gateway does while writes fail. `None` (after saying so) when
/// this machine cannot mount a tmpfs.
fn fill_the_disk(engine: &str, on_error: &str) -> Option<FullDisk> {
    let tag = format!("{engine}-{on_error}");
    let fs = match Tmpfs::mount(&tag, "6m") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped: cannot mount tmpfs ({e})");
            return None;
        }
    };
    let store = fs.path().join("data");
    let filler = fs.path().join("filler");
    let up = Upstream::start();
    let dir = gateway_dir(&format!("full-{tag}"));
    let mut gw = Gateway::start_in(
        dir,
        &config(up.addr, engine, store.to_str().unwrap(), on_error),
    );
    let ip = "198.18.200.1";
    // Healthy first.
    let a = exchange(gw.proxy, &audited(ip, &format!("{tag}-before"), 1)).unwrap();
    assert_eq!(a.status, 200);
    assert!(audit_request_ids(&gw).contains(&format!("{tag}-before")));

    fill(&filler);
    let during = attack_until_write_errors(&mut gw, ip, &tag);
    let m = metrics(&gw);
    assert!(metric_sum(&m, "portcullis_store_write_errors_total") > 0.0);
    assert!(metric_sum(&m, "portcullis_store_failures_total{record=\"event\"}") > 0.0);
    no_panic(&mut gw, &tag);
    assert!(
        log_of(&gw).contains("store write failed"),
        "{tag}: the failure is logged\n{}",
        log_of(&gw)
    );
    // Still answering: attacks refused, clean requests passed.
    for i in 0..5 {
        let a = exchange(gw.proxy, &attack(ip, &format!("{tag}-still-{i}"))).unwrap();
        assert_eq!(a.status, 403, "{tag}");
        let a = exchange(gw.proxy, &request("GET", &format!("/clean/{i}"), "")).unwrap();
        assert_eq!(a.status, 200, "{tag}: a clean request on a full disk");
    }
    let a = exchange(gw.proxy, &audited(ip, &format!("{tag}-denied"), 2)).unwrap();
    if on_error == "fail_closed" {
        assert_eq!(
            a.status, 503,
            "{tag}: an audited action is refused while its record cannot be stored"
        );
    } else {
        assert_eq!(a.status, 200, "{tag}: fail_open passes the audited action");
        assert!(
            metric_sum(
                &metrics(&gw),
                "portcullis_store_failures_total{record=\"audit\"}"
            ) > 0.0,
            "{tag}: the unstored record is counted"
        );
    }
    no_panic(&mut gw, &tag);
    Some(FullDisk {
        tag,
        ip,
        gw,
        _up: up,
        filler,
        during,
        _fs: fs,
    })
}

/// Space is back: an audited action is stored again (a 200, and its record
/// listed) and the chain verifies.
fn writes_again(d: &mut FullDisk, n: usize) {
    let tag = d.tag.clone();
    let rid = format!("{tag}-after-{n}");
    let a = exchange(d.gw.proxy, &audited(d.ip, &rid, 100 + n)).unwrap();
    assert_eq!(
        a.status,
        200,
        "{tag}: an audited action after space came back\n{}",
        log_of(&d.gw)
    );
    let ids = audit_request_ids(&d.gw);
    assert!(
        ids.contains(&rid),
        "{tag}: the audit record written after space came back is stored: {ids:?}"
    );
    let (status, v) = admin(&d.gw, "GET", "/api/v1/audit/verify");
    assert_eq!(
        (status, &v["valid"]),
        (200, &Value::Bool(true)),
        "{tag}: {v}"
    );
    no_panic(&mut d.gw, &tag);
}

/// The ids of `d.during` that are not among the stored events.
fn events_missing(d: &FullDisk) -> Vec<String> {
    let (status, v) = admin(
        &d.gw,
        "GET",
        &format!("/api/v1/security/events?limit=1000&ip={}", d.ip),
    );
    assert_eq!(status, 200, "{v}");
    let stored: HashSet<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    d.during
        .iter()
        .filter(|r| !stored.contains(r.as_str()))
        .cloned()
        .collect()
}

/// The acceptance criterion: once space is back the store writes again by
/// itself (the writer retries the batches it kept), with no restart.
fn recovers_without_restart(engine: &str, on_error: &str) {
    let Some(mut d) = fill_the_disk(engine, on_error) else {
        return;
    };
    let tag = d.tag.clone();
    std::fs::remove_file(&d.filler).unwrap();
    // The writer retries what it kept every 250 ms: wait (bounded) until
    // nothing is pending.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let pending = metric_sum(&metrics(&d.gw), "portcullis_store_pending_retry_records");
        if pending == 0.0 {
            break;
        }
        if Instant::now() >= deadline {
            let log = log_of(&d.gw);
            let tail: Vec<&str> = log.lines().rev().take(4).collect();
            panic!(
                "{tag}: {pending} records still pending {IO_TIMEOUT:?} after space came back (no recovery without a restart); last log lines:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50)); // polling a metric, not synchronising state
    }
    writes_again(&mut d, 0);
    // What was kept for retry while the disk was full was written too.
    let missing = events_missing(&d);
    assert!(
        missing.is_empty(),
        "{tag}: events answered while the disk was full were not written after it recovered: {} of {}",
        missing.len(),
        d.during.len()
    );
}

/// Today's way back: free the space and restart the gateway (a clean
/// stop). The store must open, its chain verify, and writes succeed.
fn recovers_after_restart(engine: &str, on_error: &str, kill9: bool) {
    let Some(d) = fill_the_disk(engine, on_error) else {
        return;
    };
    let tag = d.tag.clone();
    std::fs::remove_file(&d.filler).unwrap();
    let mut d = d;
    if !kill9 {
        // A clean stop, bounded; the restart below then finds it exited.
        d.gw.signal("TERM");
        let st = d.gw.wait_exit(IO_TIMEOUT);
        assert!(
            st.is_some(),
            "{tag}: no exit after SIGTERM\n{}",
            log_of(&d.gw)
        );
        no_panic_in_log(&d.gw, &tag);
    }
    let mut d = FullDisk {
        gw: d.gw.restart(true),
        ..d
    };
    no_panic(&mut d.gw, &tag);
    writes_again(&mut d, 0);
    let missing = events_missing(&d);
    eprintln!(
        "{tag}: after a restart, {} of the {} events answered while the disk was full are not stored",
        missing.len(),
        d.during.len()
    );
}

#[test]
fn full_disk_sled_fail_open_keeps_answering_and_a_restart_recovers() {
    recovers_after_restart("sled", "fail_open", true);
}

#[test]
fn full_disk_sled_fail_closed_refuses_audited_actions_and_a_restart_recovers() {
    recovers_after_restart("sled", "fail_closed", false);
}

#[test]
fn full_disk_redb_fail_open_keeps_answering_and_a_restart_recovers() {
    recovers_after_restart("redb", "fail_open", true);
}

#[test]
fn full_disk_redb_fail_closed_refuses_audited_actions_and_a_restart_recovers() {
    recovers_after_restart("redb", "fail_closed", false);
}

// After a failed write sled keeps returning the ENOSPC it latched as its
// global error, and redb answers every later transaction with `PreviousIo`
// ("close and re-open the database"): the engines reopen their files after
// a write error, so the writer's retries succeed once space is back.

#[test]
fn full_disk_sled_recovers_without_restart() {
    recovers_without_restart("sled", "fail_open");
    recovers_without_restart("sled", "fail_closed");
}

#[test]
fn full_disk_redb_recovers_without_restart() {
    recovers_without_restart("redb", "fail_open");
    recovers_without_restart("redb", "fail_closed");
}
