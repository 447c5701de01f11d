//! The one background writer: a bounded queue in, group commits out.
//!
//! Producers (request handlers, the admin API) never touch the engine. They
//! queue a command; the writer thread takes everything queued (up to a
//! batch), turns it into one batch of ops (audit records get their sequence
//! number and chain hash here, in one place, so the chain has no races),
//! writes it, and then acknowledges every command in it:
//!
//! - `sync: strict`: the batch is written durably (flush/fsync) before any
//!   acknowledgement, so an acknowledged record survives `kill -9`.
//! - `sync: batched`: the batch is acknowledged once written, and made
//!   durable at most 100 ms later (the loss window on a crash).
//!
//! A full queue never blocks a producer: `try_submit` fails and the caller
//! applies `store.on_store_error` (or counts the dropped event). A failing
//! write (disk full, I/O error) is logged and counted; its ops are kept and
//! retried ahead of new ones (the chain stays contiguous) up to a bound,
//! so the store recovers by itself when space comes back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::chain::{self, Link};
use super::crypto::Keyring;
use super::keys::{self, TIME_KEY_LEN};
use super::model::{AuditIn, BlockedIp, EventIn, seal_personal};
use super::{Op, Space, Store, StoreError};

/// How long `batched` mode may keep written records before making them durable.
pub const BATCHED_WINDOW: Duration = Duration::from_millis(100);
/// How often the observer ticks.
const TICK: Duration = Duration::from_secs(1);
/// Records per group commit at most.
const BATCH_MAX: usize = 512;
/// Failed batches kept for retry, in records; beyond this the oldest are dropped.
const RETRY_MAX_RECORDS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Strict,
    Batched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    FailOpen,
    FailClosed,
}

/// Sees every event as it is stored, in the writer's thread, and may add
/// ops to the same batch (incident correlation: an incident is committed
/// with the event that created it).
pub trait Observer: Send {
    fn event(&mut self, id: &str, ts_us: u64, ev: &EventIn, ops: &mut Vec<Op>);
    /// About once a second (escalation by age, expiry of blocks).
    fn tick(&mut self, now_us: u64, ops: &mut Vec<Op>);
    /// A user was erased: forget them in memory too.
    fn erase(&mut self, user: &str);
}

pub struct WriterConfig {
    pub sync: SyncMode,
    pub on_error: OnError,
    pub queue: usize,
    pub instance_id: String,
    /// A checkpoint every this many audit records (and at shutdown).
    pub checkpoint_every: u64,
    pub masker: Arc<dyn Fn(&mut Value) + Send + Sync>,
    pub observer: Option<Box<dyn Observer>>,
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    /// The audit sequence number, for audit records.
    pub seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the store queue is full")]
    QueueFull,
    #[error("the store writer has stopped")]
    Stopped,
    #[error("store write failed: {0}")]
    Failed(String),
}

type Ack = oneshot::Sender<Result<Receipt, WriteError>>;

pub enum Cmd {
    Event(Box<EventIn>, Option<Ack>),
    Audit(Box<AuditIn>, Option<Ack>),
    /// Pre-built ops (incidents, blocked IPs), acknowledged with `id`.
    Ops(Vec<Op>, String, Option<Ack>),
    Erase(String, Option<Ack>),
    /// Retention: delete what is older than this time (µs).
    Sweep(u64, Ack),
    Sync(Ack),
    Stop(Ack),
}

/// Counters the metrics endpoint reads.
#[derive(Default)]
pub struct WriterStats {
    pub queued: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
    pub events: AtomicU64,
    pub audit_records: AtomicU64,
    pub batches: AtomicU64,
    pub write_micros: AtomicU64,
    pub chain_seq: AtomicU64,
    pub pending_retry: AtomicU64,
    /// The last checkpoint, `N:HASH` (exported in metrics as well as logged).
    pub checkpoint: std::sync::Mutex<String>,
    /// Events per hour over the last day: (hour since the epoch, all, critical).
    pub hourly: std::sync::Mutex<[(u64, u64, u64); 24]>,
}

impl WriterStats {
    fn count_event(&self, ts_us: u64, critical: bool) {
        let hour = ts_us / 3_600_000_000;
        if let Ok(mut h) = self.hourly.lock() {
            let slot = &mut h[(hour % 24) as usize];
            if slot.0 != hour {
                *slot = (hour, 0, 0);
            }
            slot.1 += 1;
            slot.2 += u64::from(critical);
        }
    }

    /// (events, critical events) in the last 24 hours (whole hours).
    pub fn last_day(&self, now_us: u64) -> (u64, u64) {
        let hour = now_us / 3_600_000_000;
        self.hourly.lock().map_or((0, 0), |h| {
            h.iter()
                .filter(|s| s.0 + 24 > hour && s.0 <= hour)
                .fold((0, 0), |a, s| (a.0 + s.1, a.1 + s.2))
        })
    }
}

/// The producers' side: cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    tx: SyncSender<Cmd>,
    pub stats: Arc<WriterStats>,
    pub store: Arc<dyn Store>,
    pub keyring: Arc<Keyring>,
    pub sync: SyncMode,
    pub on_error: OnError,
}

impl StoreHandle {
    // The queue depth is counted before a send (and undone if it fails),
    // so the writer never takes away more than was added.
    fn send(&self, cmd: Cmd) -> Result<(), WriteError> {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let r = self.tx.try_send(cmd);
        if r.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
        match r {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                Err(WriteError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => Err(WriteError::Stopped),
        }
    }

    /// A blocking send (control commands only), counted like `send`.
    fn send_waiting(stats: &WriterStats, tx: &SyncSender<Cmd>, cmd: Cmd) -> Result<(), WriteError> {
        stats.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(cmd).map_err(|_| {
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            WriteError::Stopped
        })
    }

    /// Queues a command built with an acknowledgement and waits for it.
    async fn round_trip(&self, make: impl FnOnce(Ack) -> Cmd) -> Result<Receipt, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Fire and forget (the dropped count says when the queue was full).
    pub fn event(&self, ev: EventIn) -> Result<(), WriteError> {
        self.send(Cmd::Event(Box::new(ev), None))
    }

    /// Waits until the event is written (durably in strict mode).
    pub async fn event_acked(&self, ev: EventIn) -> Result<Receipt, WriteError> {
        self.round_trip(|a| Cmd::Event(Box::new(ev), Some(a))).await
    }

    pub async fn audit(&self, rec: AuditIn) -> Result<Receipt, WriteError> {
        self.round_trip(|a| Cmd::Audit(Box::new(rec), Some(a)))
            .await
    }

    /// Queues an audit record without waiting (batched mode).
    pub fn audit_nowait(&self, rec: AuditIn) -> Result<(), WriteError> {
        self.send(Cmd::Audit(Box::new(rec), None))
    }

    pub async fn ops(&self, ops: Vec<Op>, id: String) -> Result<Receipt, WriteError> {
        self.round_trip(|a| Cmd::Ops(ops, id, Some(a))).await
    }

    pub fn ops_nowait(&self, ops: Vec<Op>, id: String) -> Result<(), WriteError> {
        self.send(Cmd::Ops(ops, id, None))
    }

    /// Crypto-shreds a user: deletes the subject key and the user's index entries.
    pub async fn erase(&self, user: String) -> Result<Receipt, WriteError> {
        self.round_trip(|a| Cmd::Erase(user, Some(a))).await
    }

    /// Runs the retention sweeper for records older than `cutoff_us`.
    pub async fn sweep(&self, cutoff_us: u64) -> Result<Receipt, WriteError> {
        self.round_trip(|a| Cmd::Sweep(cutoff_us, a)).await
    }

    /// Makes everything queued so far durable.
    pub async fn sync(&self) -> Result<Receipt, WriteError> {
        self.queue_behind(Cmd::Sync).await
    }

    /// Writes what is queued, a final checkpoint, and stops the thread.
    pub async fn stop(&self) -> Result<Receipt, WriteError> {
        self.queue_behind(Cmd::Stop).await
    }

    /// A blocking variant for non-async callers (tests, CLI).
    pub fn stop_blocking(&self) -> Result<Receipt, WriteError> {
        let (tx, rx) = oneshot::channel();
        Self::send_waiting(&self.stats, &self.tx, Cmd::Stop(tx))?;
        rx.blocking_recv().unwrap_or(Err(WriteError::Stopped))
    }

    /// Control commands (sync, stop) must not be refused by a full queue:
    /// they wait for room, off the async threads, behind what is queued.
    async fn queue_behind(&self, make: fn(Ack) -> Cmd) -> Result<Receipt, WriteError> {
        let (ack, rx) = oneshot::channel();
        let (tx, stats) = (self.tx.clone(), self.stats.clone());
        tokio::task::spawn_blocking(move || Self::send_waiting(&stats, &tx, make(ack)))
            .await
            .map_err(|_| WriteError::Stopped)??;
        rx.await.unwrap_or(Err(WriteError::Stopped))
    }
}

/// Starts the writer thread over an open store.
pub fn start(
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    cfg: WriterConfig,
) -> Result<StoreHandle, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
    let stats = Arc::new(WriterStats::default());
    // The chain continues from the last record present (the head in meta
    // may lag it by one batch after a crash).
    let head = match chain::last_record(&*store)? {
        Some(l) => l,
        None => chain::base(&*store)?,
    };
    stats.chain_seq.store(head.seq, Ordering::Relaxed);
    // The last day's counts, for the dashboard summary (bounded scan).
    let day_ago = keys::now_micros().saturating_sub(24 * 3_600_000_000);
    let mut seen = 0u32;
    store.scan(
        Space::Events,
        &keys::time_floor(day_ago),
        None,
        false,
        &mut |k, v| {
            if let Some((ts, _)) = keys::split_time_key(k) {
                // Severity without decrypting: only plain payloads are read.
                let critical = v.get(1) == Some(&0)
                    && serde_json::from_slice::<serde_json::Value>(&v[2..])
                        .ok()
                        .and_then(|j| j.get("severity").and_then(Value::as_u64))
                        .is_some_and(|s| s >= 4);
                stats.count_event(ts, critical);
            }
            seen += 1;
            seen < 1_000_000
        },
    )?;
    let handle = StoreHandle {
        tx,
        stats: stats.clone(),
        store: store.clone(),
        keyring: keyring.clone(),
        sync: cfg.sync,
        on_error: cfg.on_error,
    };
    let w = Writer {
        store,
        keyring,
        stats,
        head,
        committed: head,
        last_checkpoint: head.seq,
        head_ts: keys::now_micros(),
        retry: VecDeque::new(),
        cfg,
    };
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || w.run(rx))
        .map_err(|e| StoreError::Other(format!("cannot start the store writer: {e}")))?;
    Ok(handle)
}

struct Writer {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    stats: Arc<WriterStats>,
    cfg: WriterConfig,
    /// The chain position including batches not yet written.
    head: Link,
    /// The chain position of the last written batch.
    committed: Link,
    last_checkpoint: u64,
    /// The time of the last audit record (for checkpoints).
    head_ts: u64,
    /// Failed batches, oldest first: (ops, records, chain head after it).
    retry: VecDeque<(Vec<Op>, usize, Link)>,
}

struct Pending {
    ack: Option<Ack>,
    result: Result<Receipt, WriteError>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Cmd>) {
        let mut dirty_since: Option<Instant> = None;
        let mut last_tick = Instant::now();
        loop {
            if self.cfg.observer.is_some() && last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick();
            }
            // Wake up to retry failed batches, to make a batched write
            // durable within its window, or to tick the observer.
            let mut wait = if !self.retry.is_empty() {
                Some(Duration::from_millis(250))
            } else {
                dirty_since.map(|s| BATCHED_WINDOW.saturating_sub(s.elapsed()))
            };
            if self.cfg.observer.is_some() {
                let t = TICK.saturating_sub(last_tick.elapsed());
                wait = Some(wait.map_or(t, |w| w.min(t)));
            }
            let first = match wait {
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return self.finish(None),
                },
                Some(t) => match rx.recv_timeout(t) {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout) => {
                        if dirty_since.is_none() && self.retry.is_empty() {
                            continue;
                        }
                        if self.flush_retry() && dirty_since.is_some() {
                            match self.store.sync() {
                                Ok(()) => dirty_since = None,
                                Err(e) => {
                                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                                    tracing::error!(error = %e, "store sync failed");
                                }
                            }
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return self.finish(None),
                },
            };
            let mut cmds = vec![first];
            while cmds.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            self.stats
                .queued
                .fetch_sub(cmds.len() as u64, Ordering::Relaxed);
            let mut stop: Option<Ack> = None;
            let mut sweeps: Vec<(u64, Ack)> = Vec::new();
            let mut force_sync = false;
            let mut ops = Vec::new();
            let mut pending = Vec::with_capacity(cmds.len());
            let mut records = 0usize;
            let before = self.head;
            for c in cmds {
                match c {
                    Cmd::Stop(a) => stop = Some(a),
                    Cmd::Sweep(cutoff, a) => sweeps.push((cutoff, a)),
                    Cmd::Sync(a) => {
                        force_sync = true;
                        pending.push(Pending {
                            ack: Some(a),
                            result: Ok(Receipt {
                                id: "sync".into(),
                                seq: None,
                            }),
                        });
                    }
                    other => {
                        records += 1;
                        let (ack, result) = self.build(other, &mut ops);
                        pending.push(Pending { ack, result });
                    }
                }
            }
            if self.head.seq != before.seq {
                ops.push(Op::Put(
                    Space::Meta,
                    chain::META_HEAD.to_vec(),
                    self.head.encode(),
                ));
                if self.head.seq >= self.last_checkpoint + self.cfg.checkpoint_every {
                    self.checkpoint(&mut ops);
                }
            }
            let durable = self.cfg.sync == SyncMode::Strict || force_sync || stop.is_some();
            // Earlier failed batches go first, so the chain stays in order.
            let retried_ok = self.flush_retry();
            let outcome = if !retried_ok {
                Err("earlier batches are still failing".to_string())
            } else if ops.is_empty() {
                if durable {
                    self.store.sync().map_err(|e| e.to_string())
                } else {
                    Ok(())
                }
            } else {
                self.write(&ops, durable)
            };
            match outcome {
                Ok(()) => {
                    self.committed = self.head;
                    if durable {
                        dirty_since = None;
                    } else if dirty_since.is_none() && !ops.is_empty() {
                        dirty_since = Some(Instant::now());
                    }
                    for p in pending {
                        if let Some(a) = p.ack {
                            let _ = a.send(p.result);
                        }
                    }
                }
                Err(e) => {
                    if !ops.is_empty() {
                        self.keep_for_retry(ops, records);
                    }
                    for p in pending {
                        if let Some(a) = p.ack {
                            let _ = a.send(Err(WriteError::Failed(e.clone())));
                        }
                    }
                }
            }
            self.stats
                .chain_seq
                .store(self.committed.seq, Ordering::Relaxed);
            for (cutoff, a) in sweeps {
                let _ = a.send(self.sweep(cutoff));
            }
            if let Some(a) = stop {
                return self.finish(Some(a));
            }
        }
    }

    /// Retention, in its own durable batches between group commits.
    fn sweep(&mut self, cutoff_us: u64) -> Result<Receipt, WriteError> {
        if !self.flush_retry() {
            return Err(WriteError::Failed(
                "the store is failing; retention postponed".into(),
            ));
        }
        let store = self.store.clone();
        let r = super::retention::sweep(&*store, cutoff_us, &mut |ops| store.write(&ops, true))
            .map_err(|e| WriteError::Failed(e.to_string()))?;
        if r.events + r.audit_records + r.incidents > 0 {
            tracing::info!(
                events = r.events,
                audit_records = r.audit_records,
                incidents = r.incidents,
                chain_base = ?r.base,
                "retention: old records deleted"
            );
        }
        Ok(Receipt {
            id: format!(
                "swept {} events, {} audit records, {} incidents",
                r.events, r.audit_records, r.incidents
            ),
            seq: r.base,
        })
    }

    /// The observer's periodic work, written as its own batch.
    fn tick(&mut self) {
        let mut ops = Vec::new();
        if let Some(o) = self.cfg.observer.as_mut() {
            o.tick(keys::now_micros(), &mut ops);
        }
        if !ops.is_empty() {
            let durable = self.cfg.sync == SyncMode::Strict;
            if self.flush_retry() && self.write(&ops, durable).is_err() {
                self.keep_for_retry(ops, 1);
            }
        }
    }

    fn write(&mut self, ops: &[Op], durable: bool) -> Result<(), String> {
        let t = Instant::now();
        let r = self.store.write(ops, durable);
        self.stats
            .write_micros
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        r.map_err(|e| {
            let n = self.stats.errors.fetch_add(1, Ordering::Relaxed) + 1;
            // Retries run every 250 ms while the disk is full: log the 1st,
            // 2nd, 4th, 8th… failure, not every one (the count is a metric).
            if n.is_power_of_two() {
                tracing::error!(error = %e, ops = ops.len(), failures = n, "store write failed; the batch is kept for retry");
            }
            e.to_string()
        })
    }

    fn keep_for_retry(&mut self, ops: Vec<Op>, records: usize) {
        self.retry.push_back((ops, records, self.head));
        let total: usize = self.retry.iter().map(|r| r.1).sum();
        if total > RETRY_MAX_RECORDS {
            // Later batches chain onto earlier ones, so they go together:
            // the chain restarts from the last record written.
            self.retry.clear();
            self.head = self.committed;
            self.stats
                .dropped
                .fetch_add(total as u64, Ordering::Relaxed);
            tracing::error!(
                records = total,
                "store still failing: dropped the failed batches kept for retry"
            );
        }
        self.stats.pending_retry.store(
            self.retry.iter().map(|r| r.1 as u64).sum(),
            Ordering::Relaxed,
        );
    }

    /// Writes the kept failed batches; true when none is left.
    fn flush_retry(&mut self) -> bool {
        while let Some((ops, _, after)) = self.retry.front() {
            let (ops, after) = (ops.clone(), *after);
            if self.write(&ops, true).is_err() {
                return false;
            }
            self.committed = after;
            self.retry.pop_front();
            tracing::info!("store write recovered: a kept batch was written");
        }
        self.stats.pending_retry.store(0, Ordering::Relaxed);
        true
    }

    /// Consumes the writer so the store is closed (its lock released)
    /// before the stop is acknowledged.
    fn finish(mut self, ack: Option<Ack>) {
        let mut ops = Vec::new();
        if self.committed.seq > self.last_checkpoint {
            self.checkpoint(&mut ops);
        }
        let ok = self.flush_retry();
        let r = if !ok {
            Err(WriteError::Failed(
                "failed batches could not be written".into(),
            ))
        } else {
            self.store
                .write(&ops, true)
                .map(|_| Receipt {
                    id: "stopped".into(),
                    seq: Some(self.committed.seq),
                })
                .map_err(|e| WriteError::Failed(e.to_string()))
        };
        drop(self);
        if let Some(a) = ack {
            let _ = a.send(r);
        }
    }

    fn checkpoint(&mut self, ops: &mut Vec<Op>) {
        // The time of the record it covers (retention cuts by it).
        let mut v = self.head_ts.to_be_bytes().to_vec();
        v.extend_from_slice(&self.head.encode());
        ops.push(Op::Put(
            Space::Checkpoints,
            self.head.seq.to_be_bytes().to_vec(),
            v,
        ));
        self.last_checkpoint = self.head.seq;
        if let Ok(mut c) = self.stats.checkpoint.lock() {
            *c = self.head.to_text();
        }
        tracing::info!(
            target: "portcullis::audit",
            checkpoint = %self.head.to_text(),
            "audit chain checkpoint (keep it: `portcullis audit verify --checkpoint` detects truncation against it)"
        );
    }

    fn build(&mut self, cmd: Cmd, ops: &mut Vec<Op>) -> (Option<Ack>, Result<Receipt, WriteError>) {
        match cmd {
            Cmd::Event(ev, ack) => (ack, self.build_event(*ev, ops)),
            Cmd::Audit(a, ack) => (ack, self.build_audit(*a, ops)),
            Cmd::Ops(mut o, id, ack) => {
                ops.append(&mut o);
                (ack, Ok(Receipt { id, seq: None }))
            }
            Cmd::Erase(user, ack) => (ack, self.build_erasure(&user, ops)),
            Cmd::Sync(a) | Cmd::Stop(a) | Cmd::Sweep(_, a) => (Some(a), Err(WriteError::Stopped)),
        }
    }

    fn record_map<T: serde::Serialize>(&self, v: &T) -> Result<Map<String, Value>, WriteError> {
        let mut val = serde_json::to_value(v).map_err(|e| WriteError::Failed(e.to_string()))?;
        (self.cfg.masker)(&mut val);
        match val {
            Value::Object(m) => Ok(m),
            _ => Err(WriteError::Failed("record is not an object".into())),
        }
    }

    fn seal(&self, m: &mut Map<String, Value>, ops: &mut Vec<Op>) -> Result<(), WriteError> {
        let mut new_keys = Vec::new();
        seal_personal(m, &self.keyring, &*self.store, &mut new_keys, ops)
            .map_err(|e| WriteError::Failed(e.to_string()))
    }

    fn payload(&self, m: Map<String, Value>) -> Result<(u8, Vec<u8>), WriteError> {
        let plain = serde_json::to_vec(&m).map_err(|e| WriteError::Failed(e.to_string()))?;
        let flags = if self.keyring.encrypts_payloads() {
            chain::FLAG_SEALED
        } else {
            0
        };
        let p = self
            .keyring
            .seal_payload(plain)
            .map_err(|e| WriteError::Failed(e.to_string()))?;
        Ok((flags, p))
    }

    fn build_event(&mut self, ev: EventIn, ops: &mut Vec<Op>) -> Result<Receipt, WriteError> {
        let ts = if ev.ts_us == 0 {
            keys::now_micros()
        } else {
            ev.ts_us
        };
        let rand: u32 = u32::from_be_bytes(rand4());
        let key = keys::time_key(ts, rand);
        let id = keys::id_of("EVT", ts, rand);
        let ip = ev.ip;
        let kind = ev.kind.clone();
        let user = ev.user.clone();
        let mut m = self.record_map(&ev)?;
        m.insert("id".into(), Value::String(id.clone()));
        m.insert("ts".into(), Value::String(keys::rfc3339_micros(ts)));
        m.insert(
            "instance_id".into(),
            Value::String(self.cfg.instance_id.clone()),
        );
        let mut extra = Vec::new();
        self.seal(&mut m, &mut extra)?;
        let (flags, payload) = self.payload(m)?;
        let mut value = vec![chain::VERSION, flags];
        value.extend_from_slice(&payload);
        ops.append(&mut extra);
        ops.push(Op::Put(Space::Events, key.to_vec(), value));
        if let Some(ip) = ip {
            let mut k = keys::ip_bytes(ip).to_vec();
            k.extend_from_slice(&key);
            ops.push(Op::Put(Space::EventsByIp, k, Vec::new()));
        }
        if let Some(u) = user {
            let mut k = self.keyring.pseudonym(&u).to_vec();
            k.extend_from_slice(&key);
            ops.push(Op::Put(Space::EventsByUser, k, Vec::new()));
        }
        ops.push(Op::Put(
            Space::EventsByType,
            self.keyring.index_term(&kind, &key),
            Vec::new(),
        ));
        if let Some(o) = self.cfg.observer.as_mut() {
            o.event(&id, ts, &ev, ops);
        }
        self.stats.count_event(ts, ev.severity >= 4);
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        Ok(Receipt { id, seq: None })
    }

    fn build_audit(&mut self, a: AuditIn, ops: &mut Vec<Op>) -> Result<Receipt, WriteError> {
        let ts = if a.ts_us == 0 {
            keys::now_micros()
        } else {
            a.ts_us
        };
        let seq = self.head.seq + 1;
        let id = format!("AUD-{seq:012}");
        let (action, resource, user) = (a.action.clone(), a.resource_type.clone(), a.user.clone());
        let mut m = self.record_map(&a)?;
        m.insert("seq".into(), Value::from(seq));
        m.insert("id".into(), Value::String(id.clone()));
        m.insert("ts".into(), Value::String(keys::rfc3339_micros(ts)));
        m.insert(
            "instance_id".into(),
            Value::String(self.cfg.instance_id.clone()),
        );
        let mut extra = Vec::new();
        self.seal(&mut m, &mut extra)?;
        let (flags, payload) = self.payload(m)?;
        let hash = chain::link_hash(&self.head.hash, seq, flags, &payload);
        ops.append(&mut extra);
        let sk = seq.to_be_bytes();
        ops.push(Op::Put(
            Space::Audit,
            sk.to_vec(),
            chain::encode(seq, flags, &hash, &payload),
        ));
        let mut tk = keys::time_floor(ts).to_vec();
        tk.extend_from_slice(&sk);
        ops.push(Op::Put(Space::AuditByTime, tk, Vec::new()));
        if let Some(u) = user {
            let mut k = self.keyring.pseudonym(&u).to_vec();
            k.extend_from_slice(&sk);
            ops.push(Op::Put(Space::AuditByUser, k, Vec::new()));
        }
        ops.push(Op::Put(
            Space::AuditByAction,
            self.keyring.index_term(&action, &sk),
            Vec::new(),
        ));
        if let Some(r) = resource {
            ops.push(Op::Put(
                Space::AuditByResource,
                self.keyring.index_term(&r, &sk),
                Vec::new(),
            ));
        }
        self.head = Link { seq, hash };
        self.head_ts = ts;
        self.stats.audit_records.fetch_add(1, Ordering::Relaxed);
        Ok(Receipt { id, seq: Some(seq) })
    }

    fn build_erasure(&mut self, user: &str, ops: &mut Vec<Op>) -> Result<Receipt, WriteError> {
        let p = self.keyring.pseudonym(user);
        let fail = |e: StoreError| WriteError::Failed(e.to_string());
        ops.push(Op::Delete(Space::SubjectKeys, p.to_vec()));
        let end = super::prefix_end(&p);
        for space in [Space::EventsByUser, Space::AuditByUser] {
            self.store
                .scan(space, &p, end.as_deref(), false, &mut |k, _| {
                    ops.push(Op::Delete(space, k.to_vec()));
                    true
                })
                .map_err(fail)?;
        }
        // Incidents name their source in clear: the user's become erased.
        let mut fail2 = None;
        self.store
            .scan(Space::Incidents, &[], None, false, &mut |k, v| {
                if let Some(mut inc) = crate::incidents::from_bytes(v)
                    && inc.source_user.as_deref() == Some(user)
                {
                    inc.source_user = Some(super::model::ERASED.into());
                    inc.title = inc.title.replace(user, super::model::ERASED);
                    match serde_json::to_vec(&inc) {
                        Ok(b) => ops.push(Op::Put(Space::Incidents, k.to_vec(), b)),
                        Err(e) => fail2 = Some(e.to_string()),
                    }
                }
                true
            })
            .map_err(fail)?;
        if let Some(e) = fail2 {
            return Err(WriteError::Failed(e));
        }
        if let Some(o) = self.cfg.observer.as_mut() {
            o.erase(user);
        }
        // The erasure itself is audited, under the pseudonym only.
        self.build_audit(
            AuditIn {
                category: "privacy".into(),
                action: "erasure".into(),
                outcome: "success".into(),
                resource_type: Some("subject".into()),
                resource_id: Some(super::crypto::hex(&p)),
                ..AuditIn::default()
            },
            ops,
        )
    }
}

fn rand4() -> [u8; 4] {
    super::crypto::random_bytes::<4>().unwrap_or_else(|_| {
        // The clock's low bits are a usable fallback for key uniqueness.
        (keys::now_micros() as u32).to_be_bytes()
    })
}

/// The time-key length, re-exported for readers.
pub const KEY_LEN: usize = TIME_KEY_LEN;

/// For callers that want to block an address via the writer.
pub fn block_ops(b: &BlockedIp) -> Result<Vec<Op>, StoreError> {
    let v = serde_json::to_vec(b).map_err(|e| StoreError::Other(e.to_string()))?;
    Ok(vec![Op::Put(
        Space::BlockedIps,
        b.cidr.as_bytes().to_vec(),
        v,
    )])
}

pub fn unblock_ops(cidr: &str) -> Vec<Op> {
    vec![Op::Delete(Space::BlockedIps, cidr.as_bytes().to_vec())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chain::{ProblemKind, verify};
    use crate::store::query::{self, AuditFilter, EventFilter};
    use crate::store::{Engine, open, tempdir};

    fn start_on(dir: &std::path::Path, engine: Engine, sync: SyncMode) -> StoreHandle {
        let store = open(dir, engine).unwrap();
        let ring = Arc::new(Keyring::load(&*store, None).unwrap());
        start(
            store,
            ring,
            WriterConfig {
                sync,
                on_error: OnError::FailOpen,
                queue: 1024,
                instance_id: "gw-test".into(),
                checkpoint_every: 4,
                masker: Arc::new(|_| {}),
                observer: None,
            },
        )
        .unwrap()
    }

    fn audit(user: Option<&str>, action: &str) -> AuditIn {
        AuditIn {
            category: "admin_action".into(),
            action: action.into(),
            outcome: "success".into(),
            user: user.map(str::to_owned),
            ip: Some("203.0.113.9".parse().unwrap()),
            resource_type: Some("user".into()),
            resource_id: Some("42".into()),
            changes: serde_json::json!({"email": {"old": "a@example.com", "new": "b@example.com"}}),
            ..AuditIn::default()
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Writes `n` records with a writer and stops it.
    fn write_chain(dir: &std::path::Path, engine: Engine, n: u64) {
        let h = start_on(dir, engine, SyncMode::Strict);
        rt().block_on(async {
            for i in 0..n {
                let r = h
                    .audit(audit(Some("alice"), &format!("act{}", i % 3)))
                    .await
                    .unwrap();
                assert_eq!(r.seq, Some(i + 1));
            }
        });
        h.stop_blocking().unwrap();
        drop(h);
    }

    #[test]
    fn the_chain_verifies_and_continues_across_restarts() {
        for engine in [Engine::Sled, Engine::Redb] {
            let dir = tempdir::Dir::new("chain-ok");
            write_chain(dir.path(), engine, 10);
            write_chain(dir.path(), engine, 0);
            let h = start_on(dir.path(), engine, SyncMode::Batched);
            let r = rt().block_on(h.audit(audit(None, "again"))).unwrap();
            assert_eq!(
                r.seq,
                Some(11),
                "{engine:?}: the chain continues after a restart"
            );
            h.stop_blocking().unwrap();
            drop(h);
            let store = open(dir.path(), engine).unwrap();
            let rep = verify(&*store, &[]).unwrap();
            assert_eq!(rep.problem, None, "{engine:?}");
            assert_eq!(rep.records, 11);
            assert_eq!(rep.last.map(|l| l.seq), Some(11));
        }
    }

    fn tamper(dir: &std::path::Path, engine: Engine, f: impl FnOnce(&dyn Store)) -> chain::Report {
        write_chain(dir, engine, 12);
        let store = open(dir, engine).unwrap();
        f(&*store);
        verify(&*store, &[]).unwrap()
    }

    #[test]
    fn a_flipped_byte_is_named() {
        for engine in [Engine::Sled, Engine::Redb] {
            let dir = tempdir::Dir::new("chain-flip");
            let rep = tamper(dir.path(), engine, |s| {
                let k = 7u64.to_be_bytes();
                let mut v = s.get(Space::Audit, &k).unwrap().unwrap();
                let last = v.len() - 3;
                v[last] ^= 0x01;
                s.write(&[Op::Put(Space::Audit, k.to_vec(), v)], true)
                    .unwrap();
            });
            let p = rep.problem.expect("detected");
            assert_eq!(
                (p.seq, p.kind),
                (7, ProblemKind::Altered),
                "{engine:?}: {p:?}"
            );
        }
    }

    #[test]
    fn a_deleted_record_is_named() {
        for engine in [Engine::Sled, Engine::Redb] {
            let dir = tempdir::Dir::new("chain-del");
            let rep = tamper(dir.path(), engine, |s| {
                s.write(
                    &[Op::Delete(Space::Audit, 5u64.to_be_bytes().to_vec())],
                    true,
                )
                .unwrap();
            });
            let p = rep.problem.expect("detected");
            assert_eq!(
                (p.seq, p.kind),
                (5, ProblemKind::Deleted),
                "{engine:?}: {p:?}"
            );
            assert!(p.message.contains("record 5 is missing"), "{}", p.message);
        }
    }

    #[test]
    fn swapped_records_are_named() {
        for engine in [Engine::Sled, Engine::Redb] {
            let dir = tempdir::Dir::new("chain-swap");
            let rep = tamper(dir.path(), engine, |s| {
                let a = s.get(Space::Audit, &3u64.to_be_bytes()).unwrap().unwrap();
                let b = s.get(Space::Audit, &4u64.to_be_bytes()).unwrap().unwrap();
                s.write(
                    &[
                        Op::Put(Space::Audit, 3u64.to_be_bytes().to_vec(), b),
                        Op::Put(Space::Audit, 4u64.to_be_bytes().to_vec(), a),
                    ],
                    true,
                )
                .unwrap();
            });
            let p = rep.problem.expect("detected");
            assert_eq!(
                (p.seq, p.kind),
                (3, ProblemKind::Reordered),
                "{engine:?}: {p:?}"
            );
        }
    }

    #[test]
    fn a_truncated_tail_is_named() {
        for engine in [Engine::Sled, Engine::Redb] {
            let dir = tempdir::Dir::new("chain-trunc");
            let rep = tamper(dir.path(), engine, |s| {
                let ops: Vec<Op> = (10u64..=12)
                    .map(|i| Op::Delete(Space::Audit, i.to_be_bytes().to_vec()))
                    .collect();
                s.write(&ops, true).unwrap();
            });
            let p = rep.problem.expect("detected");
            assert_eq!(
                (p.seq, p.kind),
                (10, ProblemKind::Truncated),
                "{engine:?}: {p:?}"
            );
            // Even with the head and checkpoints rewritten, an exported
            // checkpoint still catches it.
            let store = open(dir.path(), engine).unwrap();
            let anchor = Link::parse(&format!("12:{}", "00".repeat(32))).unwrap();
            let ops = vec![
                Op::Delete(Space::Meta, chain::META_HEAD.to_vec()),
                Op::Delete(Space::Checkpoints, 12u64.to_be_bytes().to_vec()),
            ];
            store.write(&ops, true).unwrap();
            let p = verify(&*store, &[anchor]).unwrap().problem.expect("anchor");
            assert_eq!(p.kind, ProblemKind::Truncated);
        }
    }

    #[test]
    fn erasure_shreds_personal_fields_and_keeps_the_chain() {
        for engine in [Engine::Sled, Engine::Redb] {
            let dir = tempdir::Dir::new("erase");
            let h = start_on(dir.path(), engine, SyncMode::Strict);
            rt().block_on(async {
                h.audit(audit(Some("alice"), "update")).await.unwrap();
                h.audit(audit(Some("bob"), "update")).await.unwrap();
                h.event_acked(EventIn {
                    kind: "login_failure".into(),
                    severity: 2,
                    user: Some("alice".into()),
                    ip: Some("198.51.100.4".parse().unwrap()),
                    action: "log".into(),
                    ..EventIn::default()
                })
                .await
                .unwrap();
                let f = AuditFilter {
                    user: Some("alice".into()),
                    ..AuditFilter::default()
                };
                let mut seen = Vec::new();
                query::audit_records(&*h.store, &h.keyring, &f, &mut |_, m| {
                    seen.push(m);
                    true
                })
                .unwrap();
                assert_eq!(seen.len(), 1);
                assert_eq!(seen[0]["user"], "alice");
                assert_eq!(seen[0]["changes"]["email"]["new"], "b@example.com");
                h.erase("alice".into()).await.unwrap();
            });
            h.stop_blocking().unwrap();
            drop(h);
            let store = open(dir.path(), engine).unwrap();
            let ring = Keyring::load(&*store, None).unwrap();
            let r1 = query::audit_record(&*store, &ring, 1).unwrap().unwrap();
            assert_eq!(r1["user"], crate::store::model::ERASED, "{engine:?}: {r1}");
            assert!(r1.get("changes").is_none() && r1.get("ip").is_none());
            let r2 = query::audit_record(&*store, &ring, 2).unwrap().unwrap();
            assert_eq!(r2["user"], "bob", "other subjects stay readable");
            let evs = query::events(
                &*store,
                &ring,
                &EventFilter {
                    limit: 10,
                    ..EventFilter::default()
                },
            )
            .unwrap();
            assert_eq!(evs[0]["user"], crate::store::model::ERASED);
            let rep = verify(&*store, &[]).unwrap();
            assert_eq!(
                rep.problem, None,
                "{engine:?}: erasure keeps the chain valid"
            );
            assert_eq!(rep.records, 3, "the erasure is itself audited");
            drop(store);
            // Nothing of alice's is left in clear on disk.
            for f in walk(dir.path()) {
                let bytes = std::fs::read(&f).unwrap();
                for needle in [&b"alice"[..], b"a@example.com", b"b@example.com"] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "{engine:?}: {} holds {}",
                        f.display(),
                        String::from_utf8_lossy(needle)
                    );
                }
            }
        }
    }

    pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn events_are_indexed_by_ip_type_and_time() {
        let dir = tempdir::Dir::new("events");
        let h = start_on(dir.path(), Engine::Sled, SyncMode::Batched);
        rt().block_on(async {
            for i in 0..20u32 {
                h.event_acked(EventIn {
                    ts_us: 1_000_000 * u64::from(i + 1),
                    kind: if i % 2 == 0 {
                        "xss_attempt"
                    } else {
                        "sql_injection_attempt"
                    }
                    .into(),
                    severity: (i % 4 + 1) as u8,
                    ip: Some(format!("10.0.0.{}", i % 5).parse().unwrap()),
                    action: "block".into(),
                    ..EventIn::default()
                })
                .await
                .unwrap();
            }
        });
        let q = |f: EventFilter| query::events(&*h.store, &h.keyring, &f).unwrap();
        let all = q(EventFilter {
            limit: 100,
            ..Default::default()
        });
        assert_eq!(all.len(), 20);
        assert!(
            all[0]["ts"].as_str() > all[19]["ts"].as_str(),
            "newest first"
        );
        let by_ip = q(EventFilter {
            ip: Some("10.0.0.3".parse().unwrap()),
            limit: 100,
            ..Default::default()
        });
        assert_eq!(by_ip.len(), 4);
        let xss = q(EventFilter {
            kind: Some("xss_attempt".into()),
            limit: 3,
            ..Default::default()
        });
        assert_eq!(xss.len(), 3);
        assert!(xss.iter().all(|e| e["type"] == "xss_attempt"));
        let window = q(EventFilter {
            since_us: Some(5_000_000),
            until_us: Some(9_000_000),
            limit: 100,
            ..Default::default()
        });
        assert_eq!(window.len(), 5);
        let crit = q(EventFilter {
            min_severity: Some(4),
            limit: 100,
            ..Default::default()
        });
        assert_eq!(crit.len(), 5);
        let id = all[0]["id"].as_str().unwrap().to_string();
        assert_eq!(
            query::event(&*h.store, &h.keyring, &id).unwrap().unwrap()["id"],
            id.as_str()
        );
        h.stop_blocking().unwrap();
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;
    use crate::store::chain::verify;
    use crate::store::query::{self, EventFilter};
    use crate::store::{Engine, open, tempdir};

    #[test]
    fn retention_deletes_old_records_and_the_chain_still_verifies() {
        for engine in [Engine::Sled, Engine::Redb] {
            let dir = tempdir::Dir::new("retention");
            let store = open(dir.path(), engine).unwrap();
            let ring = Arc::new(Keyring::load(&*store, None).unwrap());
            let h = start(
                store,
                ring,
                WriterConfig {
                    sync: SyncMode::Strict,
                    on_error: OnError::FailOpen,
                    queue: 1024,
                    instance_id: "t".into(),
                    checkpoint_every: 5,
                    masker: Arc::new(|_| {}),
                    observer: None,
                },
            )
            .unwrap();
            let day = 86_400_000_000u64;
            let now = keys::now_micros();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // 12 records 100 days old, then 8 fresh ones.
                for i in 0..20u64 {
                    let ts = if i < 12 {
                        now - 100 * day + i
                    } else {
                        now - day + i
                    };
                    h.audit(AuditIn {
                        ts_us: ts,
                        category: "data_access".into(),
                        action: "read".into(),
                        outcome: "success".into(),
                        user: Some(format!("u{}", i % 3)),
                        ..AuditIn::default()
                    })
                    .await
                    .unwrap();
                    h.event_acked(EventIn {
                        ts_us: ts,
                        kind: "xss_attempt".into(),
                        severity: 3,
                        ip: Some("192.0.2.1".parse().unwrap()),
                        action: "block".into(),
                        ..EventIn::default()
                    })
                    .await
                    .unwrap();
                }
                let r = h.sweep(now - 30 * day).await.unwrap();
                // Checkpoints at 5 and 10 are old; 15 and 20 are not: the
                // cut is at 10, records 11 and 12 (old) wait for the next one.
                assert_eq!(r.seq, Some(10), "{engine:?}: {}", r.id);
            });
            let rep = verify(&*h.store, &[]).unwrap();
            assert_eq!(rep.problem, None, "{engine:?}");
            assert_eq!((rep.first, rep.records), (Some(11), 10));
            let evs = query::events(
                &*h.store,
                &h.keyring,
                &EventFilter {
                    limit: 100,
                    ..EventFilter::default()
                },
            )
            .unwrap();
            assert_eq!(evs.len(), 8, "{engine:?}: old events are gone");
            let by_ip = query::events(
                &*h.store,
                &h.keyring,
                &EventFilter {
                    ip: Some("192.0.2.1".parse().unwrap()),
                    limit: 100,
                    ..EventFilter::default()
                },
            )
            .unwrap();
            assert_eq!(by_ip.len(), 8, "index entries went with them");
            assert_eq!(query::count(&*h.store, Space::EventsByIp).unwrap(), 8);
            assert_eq!(query::count(&*h.store, Space::AuditByUser).unwrap(), 10);
            // The chain goes on from its new base.
            let r = rt
                .block_on(h.audit(AuditIn {
                    category: "data_access".into(),
                    action: "x".into(),
                    outcome: "success".into(),
                    ..AuditIn::default()
                }))
                .unwrap();
            assert_eq!(r.seq, Some(21));
            h.stop_blocking().unwrap();
            drop(h);
            let store = open(dir.path(), engine).unwrap();
            assert_eq!(verify(&*store, &[]).unwrap().problem, None);
        }
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;
    use crate::store::{Engine, open, tempdir};

    /// Holds the writer inside its first event until released.
    struct Gate(std::sync::mpsc::Receiver<()>);

    impl Observer for Gate {
        fn event(&mut self, _: &str, _: u64, _: &EventIn, _: &mut Vec<Op>) {
            let _ = self.0.recv();
        }
        fn tick(&mut self, _: u64, _: &mut Vec<Op>) {}
        fn erase(&mut self, _: &str) {}
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let dir = tempdir::Dir::new("queue");
        let store = open(dir.path(), Engine::Sled).unwrap();
        let ring = Arc::new(Keyring::load(&*store, None).unwrap());
        let (release, gate) = std::sync::mpsc::channel();
        let h = start(
            store,
            ring,
            WriterConfig {
                sync: SyncMode::Batched,
                on_error: OnError::FailOpen,
                queue: 4,
                instance_id: "t".into(),
                checkpoint_every: 1000,
                masker: Arc::new(|_| {}),
                observer: Some(Box::new(Gate(gate))),
            },
        )
        .unwrap();
        let ev = || EventIn {
            kind: "xss_attempt".into(),
            severity: 3,
            action: "block".into(),
            ..EventIn::default()
        };
        // The writer takes the first and waits in the gate; four more fill
        // the queue; every further one is refused at once and counted.
        let mut refused = 0;
        for _ in 0..20 {
            match h.event(ev()) {
                Ok(()) => {}
                Err(WriteError::QueueFull) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused >= 15, "refused {refused}");
        assert_eq!(h.stats.dropped.load(Ordering::Relaxed), refused);
        // Released, the writer stores what it accepted.
        for _ in 0..20 {
            let _ = release.send(());
        }
        drop(release);
        h.stop_blocking().unwrap();
        assert_eq!(h.stats.events.load(Ordering::Relaxed), 20 - refused);
        assert_eq!(
            h.stats.queued.load(Ordering::Relaxed),
            0,
            "the depth gauge balances"
        );
    }
}
