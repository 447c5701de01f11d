//! Correlation of security events into incidents, the incident workflow, and
//! response automation (auto-block).
//!
//! [`Correlator`] is a pure state machine: time is passed in, nothing here
//! reads a clock (except as the fallback for the random part of an id) or
//! does I/O. It answers with [`Action`]s that the caller persists
//! ([`to_ops`]), notifies and enforces.
//!
//! Events correlate by `(source, class)`: the source is the user when the
//! event names one, else the client IP; the class groups related event
//! types ([`class_of`]). `creation_threshold` related events within the
//! sliding `window` (or one critical event) open an incident; while it is
//! open, further related events link to it.
//!
//! Memory is bounded: correlation windows live per source (at most
//! [`DEFAULT_MAX_SOURCES`], least recently seen evicted first), open
//! incidents in a separate map (at most [`DEFAULT_MAX_OPEN`]), so evicting a
//! source never loses an open incident. Closed incidents leave the map at
//! once (the store keeps them), so its cap only ever evicts open ones: the
//! least recently updated, which then stops collecting events (a new burst
//! from its source opens a new incident) and stops escalating; it stays in
//! the store and operators can still act on it (which tracks it again).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{AutoBlockConfig, IncidentConfig};
use crate::severity::Severity;
use crate::store::model::EventIn;
use crate::store::{Op, Space, Store, StoreError, keys};

pub const DEFAULT_MAX_SOURCES: usize = 100_000;
pub const DEFAULT_MAX_OPEN: usize = 10_000;
/// `by` of entries made by the correlator itself.
pub const SYSTEM: &str = "system";

/// `event_ids` keeps the first events (how it started) and the latest.
const IDS_HEAD: usize = 10;
const IDS_MAX: usize = 100;
/// The timeline keeps its first entries; past the cap, linked-event entries
/// go first so operator actions survive an event flood.
const TIMELINE_HEAD: usize = 10;
const TIMELINE_MAX: usize = 200;
/// Event types are a fixed set in practice; this only guards against a
/// producer inventing unbounded types.
const CLASSES_PER_SOURCE: usize = 16;
/// Risk raises the severity one level once either is reached.
const HIGH_RISK_EVENTS: u64 = 10;
const HIGH_RISK_SCORE: u64 = 100;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    Assigned,
    Investigating,
    Resolved,
    FalsePositive,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::New,
        Status::Assigned,
        Status::Investigating,
        Status::Resolved,
        Status::FalsePositive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Assigned => "assigned",
            Status::Investigating => "investigating",
            Status::Resolved => "resolved",
            Status::FalsePositive => "false_positive",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Not resolved and not a false positive.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Resolved | Status::FalsePositive)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    pub ts_us: u64,
    /// `created`, `event`, `escalated`, `assigned`, `status`, `note`,
    /// `resolved`, `auto_blocked`.
    pub what: String,
    pub by: String,
    pub detail: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Incident {
    /// `INC-<secs>-<µs><rand>`: encodes its store key ([`incident_key`]).
    pub id: String,
    pub created_us: u64,
    pub updated_us: u64,
    pub title: String,
    /// The correlated class ([`class_of`]).
    pub kind: String,
    pub source_ip: Option<String>,
    pub source_user: Option<String>,
    /// The worst linked event's, raised by risk and by escalation; never lowered.
    pub severity: Severity,
    /// 0–100, from severity, event count and total score.
    pub risk_score: u32,
    /// Sum of the linked events' scores (the input of `risk_score`).
    #[serde(default)]
    pub score_total: u64,
    pub status: Status,
    pub assignee: Option<String>,
    pub resolution: Option<String>,
    /// The first [`IDS_HEAD`] and the latest linked events; `event_count` counts all.
    pub event_ids: Vec<String>,
    pub event_count: u64,
    pub timeline: Vec<TimelineEntry>,
    /// Escalations by age (status `new` for `escalate_after` periods).
    pub escalations: u32,
}

impl Incident {
    fn push_event_id(&mut self, id: &str) {
        if self.event_ids.len() >= IDS_MAX {
            self.event_ids.remove(IDS_HEAD);
        }
        self.event_ids.push(id.to_owned());
        self.event_count += 1;
    }

    fn note(&mut self, ts_us: u64, what: &str, by: &str, detail: String) {
        self.timeline.push(TimelineEntry {
            ts_us,
            what: what.to_owned(),
            by: by.to_owned(),
            detail,
        });
        if self.timeline.len() > TIMELINE_MAX {
            let drop = self.timeline[TIMELINE_HEAD..]
                .iter()
                .position(|e| e.what == "event")
                .map_or(TIMELINE_HEAD, |i| TIMELINE_HEAD + i);
            self.timeline.remove(drop);
        }
    }

    fn refresh_risk(&mut self) {
        let sev = u32::from(self.severity.number()) * 15;
        let count = self.event_count.saturating_mul(2).min(20) as u32;
        let score = (self.score_total / 25).min(20) as u32;
        self.risk_score = (sev + count + score).min(100);
    }

    fn high_risk(&self) -> bool {
        self.event_count >= HIGH_RISK_EVENTS || self.score_total >= HIGH_RISK_SCORE
    }
}

/// One stored security event, as the correlator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub id: String,
    pub ts_us: u64,
    pub kind: String,
    pub severity: Severity,
    pub ip: Option<IpAddr>,
    pub user: Option<String>,
    pub score: u32,
}

impl Observed {
    /// From an event as stored under `id`.
    pub fn from_event(id: String, ev: &EventIn) -> Observed {
        Observed {
            id,
            ts_us: ev.ts_us,
            kind: ev.kind.clone(),
            severity: ev.severity(),
            ip: ev.ip,
            user: ev.user.clone(),
            score: ev.score,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A new incident: persist and notify.
    Create(Incident),
    /// Changed (event linked, timeline entry): persist.
    Update(Incident),
    /// Severity went up (by age, by a worse event or by risk): persist and notify.
    Escalated(Incident),
    /// Response automation: block `ip` for `ttl`.
    Block {
        ip: IpAddr,
        ttl: Duration,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot change incident status from {from} to {to}: {why}")]
    Invalid {
        from: Status,
        to: Status,
        why: &'static str,
    },
    #[error("incident {id} is {status}; reopen it (status investigating) first")]
    Closed { id: String, status: Status },
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

/// The correlation class of an event type: related types correlate together.
pub fn class_of(kind: &str) -> &str {
    match kind {
        "sql_injection_attempt"
        | "xss_attempt"
        | "command_injection_attempt"
        | "path_traversal_attempt"
        | "rule_match" => "injection",
        "brute_force_attempt" | "credential_stuffing" | "login_failure" => "auth",
        k if k.starts_with("jwt_") => "auth",
        "scanner_detected" | "suspicious_user_agent" => "recon",
        "rate_limit_exceeded" | "excessive_requests" => "abuse",
        "data_exfiltration_suspected" | "bulk_export" => "data",
        k if k.contains("upload") => "uploads",
        "session_hijack_suspected" | "concurrent_sessions" | "csrf_violation" => "session",
        other => other,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Source {
    User(String),
    Ip(IpAddr),
    /// Events naming neither still correlate (with each other).
    Unknown,
}

impl Source {
    fn of(user: Option<&str>, ip: Option<IpAddr>) -> Source {
        match (user.filter(|u| !u.is_empty()), ip) {
            (Some(u), _) => Source::User(u.to_owned()),
            (None, Some(ip)) => Source::Ip(ip),
            (None, None) => Source::Unknown,
        }
    }

    fn of_incident(inc: &Incident) -> Source {
        let ip = inc.source_ip.as_deref().and_then(|s| s.parse().ok());
        Source::of(inc.source_user.as_deref(), ip)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::User(u) => write!(f, "user {u}"),
            Source::Ip(ip) => write!(f, "{ip}"),
            Source::Unknown => f.write_str("unknown source"),
        }
    }
}

type CorrKey = (Source, String);

/// An event waiting in a correlation window.
#[derive(Debug)]
struct Hit {
    ts_us: u64,
    id: String,
    severity: Severity,
    score: u32,
}

#[derive(Debug, Default)]
struct SourceState {
    /// Order of last use (the correlator's observe counter): eviction order.
    touched: u64,
    /// Per class: the latest related events not yet in an incident, at most
    /// `creation_threshold` (all the decision needs).
    windows: Vec<(String, VecDeque<Hit>)>,
    /// Times of the latest medium-or-worse events (IP sources), at most `auto.threshold`.
    auto: VecDeque<u64>,
    /// An auto-block is in force until then (0: none).
    blocked_until: u64,
}

impl SourceState {
    fn idle(&self) -> bool {
        self.windows.is_empty() && self.auto.is_empty() && self.blocked_until == 0
    }
}

pub struct Correlator {
    inc: IncidentConfig,
    auto: AutoBlockConfig,
    exempt: Vec<IpNet>,
    max_sources: usize,
    max_open: usize,
    sources: HashMap<Source, SourceState>,
    open: HashMap<String, Incident>,
    /// The open incident events of a key link to.
    by_key: HashMap<CorrKey, String>,
    clock: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn raise(s: Severity) -> Severity {
    Severity::from_number(s.number() + 1).unwrap_or(Severity::Critical)
}

/// `15m`, `1h`, `90s`.
fn human(us: u64) -> String {
    let s = us / 1_000_000;
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn random_u32() -> u32 {
    match crate::store::crypto::random_bytes::<4>() {
        Ok(b) => u32::from_be_bytes(b),
        // Sub-second clock bits: unique enough with the µs already in the id.
        Err(_) => (keys::now_micros() as u32).rotate_left(13),
    }
}

impl Correlator {
    pub fn new(inc: IncidentConfig, auto: AutoBlockConfig, exempt: Vec<IpNet>) -> Correlator {
        Correlator {
            inc,
            auto,
            exempt,
            max_sources: DEFAULT_MAX_SOURCES,
            max_open: DEFAULT_MAX_OPEN,
            sources: HashMap::new(),
            open: HashMap::new(),
            by_key: HashMap::new(),
            clock: 0,
        }
    }

    /// Other caps than [`DEFAULT_MAX_SOURCES`] and [`DEFAULT_MAX_OPEN`].
    pub fn with_limits(mut self, max_sources: usize, max_open: usize) -> Correlator {
        self.max_sources = max_sources.max(1);
        self.max_open = max_open.max(1);
        self
    }

    /// Sources with correlation or auto-block state.
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Open incidents being correlated and escalated.
    pub fn open_incidents(&self) -> usize {
        self.open.len()
    }

    /// The worst severity among open incidents.
    pub fn worst_open_severity(&self) -> Option<Severity> {
        self.open.values().map(|i| i.severity).max()
    }

    /// Erasure: open incidents stop naming `user` (the store copy is
    /// rewritten by the writer).
    pub fn erase_user(&mut self, user: &str) {
        for inc in self.open.values_mut() {
            if inc.source_user.as_deref() == Some(user) {
                inc.source_user = Some(crate::store::model::ERASED.into());
                inc.title = inc.title.replace(user, crate::store::model::ERASED);
            }
        }
    }

    /// Restore open incidents after a restart (from the store, e.g. [`open_incidents`]).
    pub fn restore(&mut self, mut open: Vec<Incident>) {
        open.retain(|i| i.status.is_open());
        // Newest first: when two are open for one key, the newest gets its events.
        open.sort_by_key(|i| std::cmp::Reverse(i.created_us));
        for inc in open {
            self.track(inc);
        }
    }

    /// One stored event. Windows run on the event's time; incident times and
    /// block expiry on `now_us`.
    pub fn observe(&mut self, ev: &Observed, now_us: u64) -> Vec<Action> {
        self.clock += 1;
        // `::ffff:a.b.c.d` is the IPv4 client: one source, one block, exemptions apply.
        let ip = ev.ip.map(|ip| ip.to_canonical());
        let key: CorrKey = (
            Source::of(ev.user.as_deref(), ip),
            class_of(&ev.kind).to_owned(),
        );
        // (incident id, created now, severity before this event)
        let mut mine: Option<(String, bool, Severity)> = None;
        if let Some(inc) = self.by_key.get(&key).and_then(|id| self.open.get_mut(id)) {
            let before = inc.severity;
            link(inc, ev, now_us);
            mine = Some((inc.id.clone(), false, before));
        } else if let Some(hits) = self.window(&key, ev) {
            let inc = self.create(&key, ev, ip, hits, now_us);
            mine = Some((inc.id.clone(), true, inc.severity));
            self.track(inc);
        }

        let mut others = Vec::new();
        let block = ip.and_then(|ip| self.auto_block(ip, ev, now_us));
        if let Some(Action::Block { ip, reason, .. }) = &block {
            let ip_text = ip.to_string();
            let own = mine.as_ref().map(|m| m.0.as_str());
            for inc in self.open.values_mut() {
                let is_own = own == Some(inc.id.as_str());
                if is_own || inc.source_ip.as_deref() == Some(ip_text.as_str()) {
                    inc.note(now_us, "auto_blocked", SYSTEM, format!("{ip}: {reason}"));
                    inc.updated_us = now_us;
                    if !is_own {
                        others.push(inc.id.clone());
                    }
                }
            }
            others.sort();
        }

        let mut actions = Vec::new();
        if let Some((id, created, before)) = mine
            && let Some(inc) = self.open.get(&id)
        {
            actions.push(if created {
                Action::Create(inc.clone())
            } else if inc.severity > before {
                Action::Escalated(inc.clone())
            } else {
                Action::Update(inc.clone())
            });
        }
        actions.extend(
            others
                .iter()
                .filter_map(|id| self.open.get(id))
                .map(|i| Action::Update(i.clone())),
        );
        actions.extend(block);
        self.evict_sources();
        actions
    }

    /// Periodic: escalation by age and expiry of windows and blocks.
    ///
    /// An incident still `new` goes up one severity level (at most to
    /// critical) for each `escalate_after` since it was created; a zero
    /// `escalate_after` disables escalation.
    pub fn tick(&mut self, now_us: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let period = micros(self.inc.escalate_after);
        if period > 0 {
            let owed = |i: &Incident| now_us.saturating_sub(i.created_us) / period;
            let mut due: Vec<String> = self
                .open
                .values()
                .filter(|i| {
                    i.status == Status::New
                        && i.severity < Severity::Critical
                        && owed(i) > u64::from(i.escalations)
                })
                .map(|i| i.id.clone())
                .collect();
            due.sort();
            for id in due {
                let Some(inc) = self.open.get_mut(&id) else {
                    continue;
                };
                let before = inc.severity;
                let owed = owed(inc);
                while u64::from(inc.escalations) < owed && inc.severity < Severity::Critical {
                    inc.severity = raise(inc.severity);
                    inc.escalations += 1;
                }
                let detail = format!(
                    "severity {before} → {} (unacknowledged for {})",
                    inc.severity,
                    human(now_us.saturating_sub(inc.created_us))
                );
                inc.note(now_us, "escalated", SYSTEM, detail);
                inc.updated_us = now_us;
                inc.refresh_risk();
                actions.push(Action::Escalated(inc.clone()));
            }
        }
        let (cw, aw) = (micros(self.inc.window), micros(self.auto.window));
        self.sources.retain(|_, st| {
            st.windows.retain_mut(|(_, q)| {
                q.retain(|h| h.ts_us.saturating_add(cw) > now_us);
                !q.is_empty()
            });
            st.auto.retain(|t| t.saturating_add(aw) > now_us);
            if st.blocked_until <= now_us {
                st.blocked_until = 0;
            }
            !st.idle()
        });
        actions
    }

    /// Assigns (or reassigns) an open incident: status becomes `assigned`.
    pub fn assign(
        &mut self,
        inc: &mut Incident,
        assignee: &str,
        by: &str,
        now_us: u64,
    ) -> Result<(), TransitionError> {
        let assignee = assignee.trim();
        if assignee.is_empty() {
            return Err(TransitionError::Empty("assignee"));
        }
        self.operate(inc, |cur| {
            if !cur.status.is_open() {
                return Err(TransitionError::Closed {
                    id: cur.id.clone(),
                    status: cur.status,
                });
            }
            if cur.status == Status::Assigned && cur.assignee.as_deref() == Some(assignee) {
                return Ok(false);
            }
            let detail = match &cur.assignee {
                Some(old) => format!("{old} → {assignee}"),
                None => format!("→ {assignee}"),
            };
            cur.assignee = Some(assignee.to_owned());
            cur.status = Status::Assigned;
            cur.note(now_us, "assigned", by, detail);
            Ok(true)
        })?;
        Ok(())
    }

    /// Status changes: `assigned → investigating`, `investigating → assigned`
    /// (and `new → assigned` once an assignee is set), open → `resolved` or
    /// `false_positive` (`note` becomes the resolution), closed →
    /// `investigating` (reopen).
    pub fn set_status(
        &mut self,
        inc: &mut Incident,
        to: Status,
        note: Option<&str>,
        by: &str,
        now_us: u64,
    ) -> Result<(), TransitionError> {
        use Status::*;
        let note = note.map(str::trim).filter(|n| !n.is_empty());
        self.operate(inc, |cur| {
            let from = cur.status;
            let invalid = |why| Err(TransitionError::Invalid { from, to, why });
            match (from, to) {
                _ if from == to => return invalid("it already is"),
                (_, New) => return invalid("an incident cannot become new again"),
                (Assigned, Investigating) => {}
                (New | Investigating, Assigned) if cur.assignee.is_some() => {}
                (New | Investigating, Assigned) => return invalid("assign it to someone"),
                (New, Investigating) => return invalid("assign it first"),
                (New | Assigned | Investigating, Resolved | FalsePositive) => {}
                (Resolved | FalsePositive, Investigating) => {}
                _ => return invalid("reopen it (status investigating) first"),
            }
            cur.status = to;
            let mut detail = format!("{from} → {to}");
            if let Some(n) = note {
                detail = format!("{detail}: {n}");
            }
            if to.is_open() {
                if !from.is_open() {
                    cur.resolution = None;
                }
                cur.note(now_us, "status", by, detail);
            } else {
                cur.resolution = note.map(str::to_owned);
                cur.note(now_us, "resolved", by, detail);
            }
            Ok(true)
        })
    }

    /// Closes an open incident as resolved or as a false positive.
    pub fn resolve(
        &mut self,
        inc: &mut Incident,
        resolution: &str,
        false_positive: bool,
        by: &str,
        now_us: u64,
    ) -> Result<(), TransitionError> {
        if resolution.trim().is_empty() {
            return Err(TransitionError::Empty("resolution"));
        }
        if !inc.status.is_open() {
            return Err(TransitionError::Closed {
                id: inc.id.clone(),
                status: inc.status,
            });
        }
        let to = if false_positive {
            Status::FalsePositive
        } else {
            Status::Resolved
        };
        self.set_status(inc, to, Some(resolution), by, now_us)
    }

    /// A timeline note, in any status.
    pub fn add_note(
        &mut self,
        inc: &mut Incident,
        note: &str,
        by: &str,
        now_us: u64,
    ) -> Result<(), TransitionError> {
        let note = note.trim();
        if note.is_empty() {
            return Err(TransitionError::Empty("note"));
        }
        self.operate(inc, |cur| {
            cur.note(now_us, "note", by, note.to_owned());
            Ok(true)
        })
    }

    /// Applies an operator change. The correlator's copy, when it has one,
    /// is the base: it may hold linked events the caller's copy (read back
    /// from the store while the writer was still writing) lacks. `inc` is
    /// left alone on error.
    fn operate(
        &mut self,
        inc: &mut Incident,
        change: impl FnOnce(&mut Incident) -> Result<bool, TransitionError>,
    ) -> Result<(), TransitionError> {
        let mut cur = self
            .open
            .get(&inc.id)
            .cloned()
            .unwrap_or_else(|| inc.clone());
        if !change(&mut cur)? {
            *inc = cur;
            return Ok(());
        }
        if let Some(last) = cur.timeline.last() {
            cur.updated_us = cur.updated_us.max(last.ts_us);
        }
        if cur.status.is_open() {
            self.track(cur.clone());
        } else {
            self.untrack(&cur.id);
        }
        *inc = cur;
        Ok(())
    }

    /// Adds `ev` to its correlation window; returns the window's events when
    /// they make an incident.
    fn window(&mut self, key: &CorrKey, ev: &Observed) -> Option<Vec<Hit>> {
        let threshold = self.inc.creation_threshold.max(1) as usize;
        let window = micros(self.inc.window);
        let st = self.sources.entry(key.0.clone()).or_default();
        st.touched = self.clock;
        let i = match st.windows.iter().position(|(c, _)| *c == key.1) {
            Some(i) => i,
            None => {
                if st.windows.len() >= CLASSES_PER_SOURCE {
                    let stalest = st
                        .windows
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, q))| q.back().map_or(0, |h| h.ts_us))
                        .map_or(0, |(i, _)| i);
                    st.windows.swap_remove(stalest);
                }
                st.windows.push((key.1.clone(), VecDeque::new()));
                st.windows.len() - 1
            }
        };
        let q = &mut st.windows[i].1;
        q.retain(|h| h.ts_us.saturating_add(window) > ev.ts_us);
        q.push_back(Hit {
            ts_us: ev.ts_us,
            id: ev.id.clone(),
            severity: ev.severity,
            score: ev.score,
        });
        while q.len() > threshold {
            q.pop_front();
        }
        if q.len() < threshold && ev.severity < Severity::Critical {
            return None;
        }
        // These events now belong to the incident: a later burst starts afresh.
        let (_, hits) = st.windows.swap_remove(i);
        Some(hits.into())
    }

    fn create(
        &self,
        key: &CorrKey,
        ev: &Observed,
        ip: Option<IpAddr>,
        hits: Vec<Hit>,
        now_us: u64,
    ) -> Incident {
        let mut inc = Incident {
            id: keys::id_of("INC", now_us, random_u32()),
            created_us: now_us,
            updated_us: now_us,
            title: format!("{} from {}", ev.kind, key.0),
            kind: key.1.clone(),
            source_ip: ip.map(|i| i.to_string()),
            source_user: ev.user.clone().filter(|u| !u.is_empty()),
            severity: hits.iter().map(|h| h.severity).max().unwrap_or(ev.severity),
            risk_score: 0,
            score_total: hits.iter().map(|h| u64::from(h.score)).sum(),
            status: Status::New,
            assignee: None,
            resolution: None,
            event_ids: Vec::new(),
            event_count: 0,
            timeline: Vec::new(),
            escalations: 0,
        };
        for h in &hits {
            inc.push_event_id(&h.id);
        }
        let mut detail = if hits.len() >= self.inc.creation_threshold.max(1) as usize {
            format!(
                "{} related {} events within {}",
                hits.len(),
                key.1,
                human(micros(self.inc.window))
            )
        } else {
            format!("critical event {} ({})", ev.kind, ev.id)
        };
        if inc.high_risk() {
            inc.severity = raise(inc.severity);
            detail.push_str("; high risk");
        }
        inc.note(now_us, "created", SYSTEM, detail);
        inc.refresh_risk();
        inc
    }

    /// Counts a medium-or-worse event from `ip`; the block when it makes `auto.threshold`.
    fn auto_block(&mut self, ip: IpAddr, ev: &Observed, now_us: u64) -> Option<Action> {
        if !self.auto.enabled
            || ev.severity < Severity::Medium
            || self.exempt.iter().any(|n| n.contains(&ip))
        {
            return None;
        }
        let threshold = self.auto.threshold.max(1) as usize;
        let window = micros(self.auto.window);
        let st = self.sources.entry(Source::Ip(ip)).or_default();
        st.touched = self.clock;
        if st.blocked_until > now_us {
            return None;
        }
        st.blocked_until = 0;
        st.auto.retain(|t| t.saturating_add(window) > ev.ts_us);
        st.auto.push_back(ev.ts_us);
        while st.auto.len() > threshold {
            st.auto.pop_front();
        }
        if st.auto.len() < threshold {
            return None;
        }
        st.auto.clear();
        st.blocked_until = now_us.saturating_add(micros(self.auto.ttl));
        Some(Action::Block {
            ip,
            ttl: self.auto.ttl,
            reason: format!(
                "{threshold} events of severity medium or higher within {} (last: {})",
                human(window),
                ev.kind
            ),
        })
    }

    fn track(&mut self, inc: Incident) {
        if !self.open.contains_key(&inc.id) && self.open.len() >= self.max_open {
            let stalest = self
                .open
                .values()
                .min_by(|a, b| (a.updated_us, &a.id).cmp(&(b.updated_us, &b.id)))
                .map(|i| i.id.clone());
            if let Some(id) = stalest {
                self.untrack(&id);
            }
        }
        self.by_key
            .entry((Source::of_incident(&inc), inc.kind.clone()))
            .or_insert_with(|| inc.id.clone());
        self.open.insert(inc.id.clone(), inc);
    }

    fn untrack(&mut self, id: &str) {
        let Some(inc) = self.open.remove(id) else {
            return;
        };
        let key = (Source::of_incident(&inc), inc.kind);
        if self.by_key.get(&key).map(String::as_str) == Some(id) {
            self.by_key.remove(&key);
            // Another open incident of the key (a reopened one) takes over.
            let next = self
                .open
                .values()
                .filter(|i| i.kind == key.1 && Source::of_incident(i) == key.0)
                .max_by_key(|i| i.created_us)
                .map(|i| i.id.clone());
            if let Some(next) = next {
                self.by_key.insert(key, next);
            }
        }
    }

    /// Over the cap, drops the least recently seen tenth of the sources: the
    /// selection is O(n), so amortised over the next tenth of inserts it is O(1).
    /// An evicted IP with a block in force could be blocked again; harmless
    /// (the same block, extended), and the gateway refuses a blocked IP early,
    /// so it seldom produces events.
    fn evict_sources(&mut self) {
        if self.sources.len() <= self.max_sources {
            return;
        }
        let keep = self.max_sources - self.max_sources / 10;
        let mut touched: Vec<u64> = self.sources.values().map(|s| s.touched).collect();
        let excess = touched.len() - keep;
        let (_, cut, _) = touched.select_nth_unstable(excess - 1);
        let cut = *cut;
        self.sources.retain(|_, s| s.touched > cut);
    }
}

/// Links `ev` to an open incident.
fn link(inc: &mut Incident, ev: &Observed, now_us: u64) {
    let was_high = inc.high_risk();
    inc.push_event_id(&ev.id);
    inc.score_total += u64::from(ev.score);
    inc.updated_us = now_us;
    inc.note(
        now_us,
        "event",
        SYSTEM,
        format!("{} {} ({})", ev.kind, ev.id, ev.severity),
    );
    let before = inc.severity;
    let mut sev = inc.severity.max(ev.severity);
    let mut why = "worse event";
    if !was_high && inc.high_risk() {
        sev = raise(sev);
        why = "high risk";
    }
    if sev > before {
        inc.severity = sev;
        inc.note(
            now_us,
            "escalated",
            SYSTEM,
            format!("severity {before} → {sev} ({why})"),
        );
    }
    inc.refresh_risk();
}

/// The store key an incident's id names.
pub fn incident_key(inc: &Incident) -> Option<[u8; keys::TIME_KEY_LEN]> {
    keys::key_of("INC", &inc.id)
}

/// The write that stores `inc` (JSON under its key in [`Space::Incidents`]).
pub fn to_ops(inc: &Incident) -> Result<Vec<Op>, serde_json::Error> {
    let key = incident_key(inc).ok_or_else(|| {
        <serde_json::Error as serde::ser::Error>::custom(format!(
            "{:?} is not an incident id",
            inc.id
        ))
    })?;
    Ok(vec![Op::Put(
        Space::Incidents,
        key.to_vec(),
        serde_json::to_vec(inc)?,
    )])
}

pub fn from_bytes(v: &[u8]) -> Option<Incident> {
    serde_json::from_slice(v).ok()
}

/// Newest first (by creation); `limit` 0: all. Unreadable records are skipped.
pub fn list(
    store: &dyn Store,
    status: Option<Status>,
    min_severity: Option<Severity>,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let mut out = Vec::new();
    store.scan(Space::Incidents, &[], None, true, &mut |_, v| {
        if let Some(inc) = from_bytes(v)
            && status.is_none_or(|s| inc.status == s)
            && min_severity.is_none_or(|m| inc.severity >= m)
        {
            out.push(inc);
        }
        out.len() < limit
    })?;
    Ok(out)
}

/// All open incidents (for [`Correlator::restore`]).
pub fn open_incidents(store: &dyn Store) -> Result<Vec<Incident>, StoreError> {
    let mut all = list(store, None, None, 0)?;
    all.retain(|i| i.status.is_open());
    Ok(all)
}

/// `None` for an unknown or malformed id.
pub fn get(store: &dyn Store, id: &str) -> Result<Option<Incident>, StoreError> {
    let Some(key) = keys::key_of("INC", id) else {
        return Ok(None);
    };
    match store.get(Space::Incidents, &key)? {
        Some(v) => from_bytes(&v)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("incident {id} is unreadable"))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Engine, tempdir};

    const T0: u64 = 1_700_000_000_000_000;
    const SEC: u64 = 1_000_000;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;

    fn correlator() -> Correlator {
        Correlator::new(
            IncidentConfig {
                creation_threshold: 3,
                window: Duration::from_secs(900),
                escalate_after: Duration::from_secs(3600),
            },
            AutoBlockConfig {
                exempt: Vec::new(),
                enabled: true,
                threshold: 5,
                window: Duration::from_secs(600),
                ttl: Duration::from_secs(3600),
            },
            vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        )
    }

    fn ev(at: u64, kind: &str, severity: Severity, ip: &str) -> Observed {
        Observed {
            id: format!("EVT-{at}-{kind}-{ip}"),
            ts_us: T0 + at,
            kind: kind.into(),
            severity,
            ip: Some(ip.parse().unwrap()),
            user: None,
            score: 5,
        }
    }

    /// Observes at the event's own time.
    fn see(c: &mut Correlator, e: Observed) -> Vec<Action> {
        let now = e.ts_us;
        c.observe(&e, now)
    }

    fn names(a: &[Action]) -> Vec<&'static str> {
        a.iter()
            .map(|a| match a {
                Action::Create(_) => "create",
                Action::Update(_) => "update",
                Action::Escalated(_) => "escalated",
                Action::Block { .. } => "block",
            })
            .collect()
    }

    fn incident(a: &[Action]) -> Incident {
        a.iter()
            .find_map(|a| match a {
                Action::Create(i) | Action::Update(i) | Action::Escalated(i) => Some(i.clone()),
                Action::Block { .. } => None,
            })
            .expect("an incident action")
    }

    /// Three events of `kind` from `ip` starting at `at`: the created incident.
    fn burst(c: &mut Correlator, at: u64, kind: &str, sev: Severity, ip: &str) -> Incident {
        assert!(see(c, ev(at, kind, sev, ip)).is_empty());
        assert!(see(c, ev(at + SEC, kind, sev, ip)).is_empty());
        let a = see(c, ev(at + 2 * SEC, kind, sev, ip));
        assert_eq!(names(&a), ["create"]);
        incident(&a)
    }

    const IP: &str = "203.0.113.7";

    #[test]
    fn the_threshold_within_the_window_creates_one_incident() {
        let mut c = correlator();
        let sqli = "sql_injection_attempt";
        assert!(see(&mut c, ev(0, sqli, Severity::Low, IP)).is_empty());
        assert!(see(&mut c, ev(SEC, sqli, Severity::Low, IP)).is_empty());
        // 20 minutes later the first two have left the 15-minute window.
        assert!(see(&mut c, ev(20 * MIN, sqli, Severity::Low, IP)).is_empty());
        assert!(see(&mut c, ev(20 * MIN + SEC, sqli, Severity::Low, IP)).is_empty());
        let a = see(
            &mut c,
            ev(20 * MIN + 2 * SEC, "xss_attempt", Severity::Low, IP),
        );
        assert_eq!(names(&a), ["create"]);
        let inc = incident(&a);
        assert_eq!(inc.kind, "injection");
        assert_eq!(inc.title, "xss_attempt from 203.0.113.7");
        assert_eq!(inc.source_ip.as_deref(), Some(IP));
        assert_eq!(inc.status, Status::New);
        assert_eq!(inc.event_count, 3);
        assert_eq!(inc.event_ids.len(), 3);
        assert_eq!(inc.event_ids[0], format!("EVT-{}-{sqli}-{IP}", 20 * MIN));
        assert_eq!(inc.created_us, T0 + 20 * MIN + 2 * SEC);
        assert_eq!(inc.timeline[0].what, "created");
        assert!(incident_key(&inc).is_some(), "{}", inc.id);
        assert!(inc.risk_score > 0 && inc.risk_score <= 100);

        // Unrelated classes and other sources do not add up.
        let mut c = correlator();
        assert!(see(&mut c, ev(0, sqli, Severity::Low, IP)).is_empty());
        assert!(see(&mut c, ev(1, "login_failure", Severity::Low, IP)).is_empty());
        assert!(see(&mut c, ev(2, "scanner_detected", Severity::Low, IP)).is_empty());
        assert!(see(&mut c, ev(3, sqli, Severity::Low, "198.51.100.1")).is_empty());
    }

    #[test]
    fn related_events_link_to_the_open_incident() {
        let mut c = correlator();
        let inc = burst(&mut c, 0, "login_failure", Severity::Low, IP);
        let a = see(&mut c, ev(10 * SEC, "jwt_invalid", Severity::Low, IP));
        assert_eq!(names(&a), ["update"]);
        let linked = incident(&a);
        assert_eq!(linked.id, inc.id);
        assert_eq!(linked.kind, "auth");
        assert_eq!(linked.event_count, 4);
        assert_eq!(linked.updated_us, T0 + 10 * SEC);
        assert_eq!(linked.timeline.last().unwrap().what, "event");
        // Long after the window: still linked while open.
        let a = see(&mut c, ev(5 * HOUR, "login_failure", Severity::Low, IP));
        assert_eq!(incident(&a).id, inc.id);
        assert_eq!(c.open_incidents(), 1);
    }

    #[test]
    fn a_closed_incident_makes_way_for_a_new_one() {
        let mut c = correlator();
        let mut inc = burst(&mut c, 0, "xss_attempt", Severity::Low, "198.51.100.9");
        c.resolve(&mut inc, "WAF blocked it", false, "ann", T0 + MIN)
            .unwrap();
        assert_eq!(c.open_incidents(), 0);
        // The burst that made the first incident does not count again.
        let again = burst(
            &mut c,
            2 * MIN,
            "xss_attempt",
            Severity::Low,
            "198.51.100.9",
        );
        assert_ne!(again.id, inc.id);
    }

    #[test]
    fn severity_is_the_worst_event_raised_by_risk() {
        let mut c = correlator();
        assert!(see(&mut c, ev(0, "xss_attempt", Severity::Low, IP)).is_empty());
        assert!(see(&mut c, ev(1, "xss_attempt", Severity::High, IP)).is_empty());
        let inc = incident(&see(&mut c, ev(2, "xss_attempt", Severity::Medium, IP)));
        assert_eq!(inc.severity, Severity::High);

        // Ten low events: high risk, one level up, notified.
        let mut c = correlator();
        let ip = "192.0.2.44";
        burst(&mut c, 0, "rate_limit_exceeded", Severity::Low, ip);
        for i in 3..9 {
            let a = see(
                &mut c,
                ev(i * SEC, "rate_limit_exceeded", Severity::Low, ip),
            );
            assert_eq!(names(&a), ["update"]);
        }
        let a = see(&mut c, ev(9 * SEC, "excessive_requests", Severity::Low, ip));
        assert_eq!(names(&a), ["escalated"]);
        let inc = incident(&a);
        assert_eq!((inc.event_count, inc.severity), (10, Severity::Medium));
        assert_eq!(inc.escalations, 0, "not an escalation by age");
        // Raised once, not at every later event.
        let a = see(
            &mut c,
            ev(10 * SEC, "rate_limit_exceeded", Severity::Low, ip),
        );
        assert_eq!(incident(&a).severity, Severity::Medium);
        // A worse event raises it.
        let a = see(
            &mut c,
            ev(11 * SEC, "rate_limit_exceeded", Severity::High, ip),
        );
        assert_eq!(names(&a), ["escalated"]);
        assert_eq!(incident(&a).severity, Severity::High);
    }

    #[test]
    fn one_critical_event_creates_an_incident_at_once() {
        let mut c = correlator();
        let a = see(
            &mut c,
            ev(0, "data_exfiltration_suspected", Severity::Critical, IP),
        );
        assert_eq!(names(&a), ["create"]);
        let inc = incident(&a);
        assert_eq!(
            (inc.severity, inc.kind.as_str()),
            (Severity::Critical, "data")
        );
        assert_eq!(inc.event_count, 1);
    }

    #[test]
    fn unacknowledged_incidents_escalate_by_age() {
        let mut c = correlator();
        let mut watched = burst(&mut c, 0, "scanner_detected", Severity::Low, IP);
        let mut taken = burst(&mut c, 0, "scanner_detected", Severity::Low, "192.0.2.1");
        c.assign(&mut taken, "bob", "ann", T0 + 3 * SEC).unwrap();
        let born = watched.created_us;
        assert!(c.tick(born + HOUR - 1).is_empty());
        for (at, sev) in [
            (HOUR, Severity::Medium),
            (2 * HOUR, Severity::High),
            (3 * HOUR, Severity::Critical),
        ] {
            let a = c.tick(born + at);
            assert_eq!(names(&a), ["escalated"], "at {at}");
            watched = incident(&a);
            assert_eq!(watched.severity, sev);
            assert_eq!(watched.timeline.last().unwrap().what, "escalated");
            // Once per period.
            assert!(c.tick(born + at + SEC).is_empty());
        }
        assert_eq!(watched.escalations, 3);
        assert!(c.tick(born + 10 * HOUR).is_empty(), "critical is the top");

        // A late tick catches up in one step (one notification).
        let mut c = correlator();
        let inc = burst(&mut c, 0, "scanner_detected", Severity::Low, IP);
        let a = c.tick(inc.created_us + 2 * HOUR + MIN);
        assert_eq!(names(&a), ["escalated"]);
        assert_eq!(incident(&a).severity, Severity::High);
        assert_eq!(incident(&a).escalations, 2);
    }

    #[test]
    fn repeated_medium_events_from_one_ip_auto_block_it_once_per_ttl() {
        let mut c = correlator();
        let ip: IpAddr = IP.parse().unwrap();
        for i in 0..4 {
            let a = see(&mut c, ev(i * SEC, "rule_match", Severity::Medium, IP));
            assert!(!names(&a).contains(&"block"), "{i}");
        }
        let a = see(&mut c, ev(4 * SEC, "rule_match", Severity::Medium, IP));
        assert_eq!(names(&a), ["update", "block"]);
        let Action::Block {
            ip: got,
            ttl,
            reason,
        } = &a[1]
        else {
            panic!()
        };
        assert_eq!((*got, *ttl), (ip, Duration::from_secs(3600)));
        assert!(reason.contains("5 events"), "{reason}");
        assert_eq!(incident(&a).timeline.last().unwrap().what, "auto_blocked");
        // Not again while the block is in force.
        for i in 5..20 {
            let a = see(&mut c, ev(i * SEC, "rule_match", Severity::High, IP));
            assert!(!names(&a).contains(&"block"), "{i}");
        }
        // Again once it has expired.
        let later = 4 * SEC + HOUR;
        for i in 0..4 {
            let a = see(
                &mut c,
                ev(later + i * SEC, "rule_match", Severity::Medium, IP),
            );
            assert!(!names(&a).contains(&"block"), "{i}");
        }
        let a = see(
            &mut c,
            ev(later + 4 * SEC, "rule_match", Severity::Medium, IP),
        );
        assert_eq!(names(&a), ["update", "block"]);

        // Low events do not count; neither do events outside the window.
        let mut c = correlator();
        for i in 0..10 {
            assert!(
                !names(&see(&mut c, ev(i, "rule_match", Severity::Low, IP))).contains(&"block")
            );
        }
        for i in 0..4 {
            see(
                &mut c,
                ev(i * 11 * MIN, "bulk_export", Severity::Medium, IP),
            );
        }
        assert!(
            !names(&see(
                &mut c,
                ev(44 * MIN, "bulk_export", Severity::Medium, IP)
            ))
            .contains(&"block")
        );
    }

    #[test]
    fn exempt_addresses_and_a_disabled_auto_block_never_block() {
        let mut c = correlator();
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            for i in 0..10 {
                let a = see(&mut c, ev(i * SEC, "rule_match", Severity::High, ip));
                assert!(!names(&a).contains(&"block"), "{ip}");
            }
        }
        let mut c = correlator();
        c.auto.enabled = false;
        for i in 0..10 {
            let a = see(&mut c, ev(i * SEC, "rule_match", Severity::High, IP));
            assert!(!names(&a).contains(&"block"));
        }
    }

    #[test]
    fn status_transitions_are_checked() {
        let mut c = correlator();
        let mut inc = burst(&mut c, 0, "csrf_violation", Severity::Medium, IP);
        assert_eq!(inc.kind, "session");
        let t = T0 + MIN;
        let err = |r: Result<(), TransitionError>| r.unwrap_err().to_string();
        assert!(
            err(c.set_status(&mut inc, Status::Investigating, None, "ann", t))
                .contains("assign it first")
        );
        assert!(
            err(c.set_status(&mut inc, Status::Assigned, None, "ann", t))
                .contains("assign it to someone")
        );
        assert!(err(c.set_status(&mut inc, Status::New, None, "ann", t)).contains("new to new"));
        assert_eq!(
            c.assign(&mut inc, " ", "ann", t),
            Err(TransitionError::Empty("assignee"))
        );
        c.assign(&mut inc, "bob", "ann", t).unwrap();
        assert_eq!(
            (inc.status, inc.assignee.as_deref()),
            (Status::Assigned, Some("bob"))
        );
        assert_eq!(inc.updated_us, t);
        c.assign(&mut inc, "carol", "ann", t + 1).unwrap();
        let last = inc.timeline.last().unwrap();
        assert_eq!((last.what.as_str(), last.by.as_str()), ("assigned", "ann"));
        assert_eq!(last.detail, "bob → carol");
        c.set_status(
            &mut inc,
            Status::Investigating,
            Some("looking"),
            "carol",
            t + 2,
        )
        .unwrap();
        assert!(
            err(c.set_status(&mut inc, Status::New, None, "carol", t + 3))
                .contains("cannot become new")
        );
        // Reassign from investigating.
        c.assign(&mut inc, "dave", "ann", t + 3).unwrap();
        assert_eq!(inc.status, Status::Assigned);
        c.set_status(&mut inc, Status::Investigating, None, "dave", t + 4)
            .unwrap();
        c.add_note(&mut inc, "seen before", "dave", t + 5).unwrap();
        assert_eq!(inc.timeline.last().unwrap().what, "note");
        assert_eq!(
            c.resolve(&mut inc, "", false, "dave", t + 6),
            Err(TransitionError::Empty("resolution"))
        );
        c.resolve(&mut inc, "scanner test", true, "dave", t + 6)
            .unwrap();
        assert_eq!(inc.status, Status::FalsePositive);
        assert_eq!(inc.resolution.as_deref(), Some("scanner test"));
        assert_eq!(inc.timeline.last().unwrap().what, "resolved");
        // Closed: no assign, no second resolution, no status but reopen.
        let before = inc.clone();
        assert!(matches!(
            c.assign(&mut inc, "bob", "ann", t + 7),
            Err(TransitionError::Closed { .. })
        ));
        assert!(matches!(
            c.resolve(&mut inc, "x", false, "ann", t + 7),
            Err(TransitionError::Closed { .. })
        ));
        assert!(
            err(c.set_status(&mut inc, Status::Resolved, None, "ann", t + 7)).contains("reopen")
        );
        assert!(
            err(c.set_status(&mut inc, Status::Assigned, None, "ann", t + 7)).contains("reopen")
        );
        assert_eq!(inc, before, "left alone on error");
        c.add_note(&mut inc, "post-mortem done", "ann", t + 8)
            .unwrap();
        // Reopen: correlated again.
        c.set_status(
            &mut inc,
            Status::Investigating,
            Some("it is back"),
            "ann",
            t + 9,
        )
        .unwrap();
        assert_eq!(
            (inc.status, inc.resolution.as_deref()),
            (Status::Investigating, None)
        );
        let a = see(&mut c, ev(2 * MIN, "csrf_violation", Severity::Medium, IP));
        assert_eq!(incident(&a).id, inc.id);
    }

    #[test]
    fn operator_changes_keep_events_linked_meanwhile() {
        let mut c = correlator();
        let mut stale = burst(&mut c, 0, "xss_attempt", Severity::Low, IP);
        see(&mut c, ev(5 * SEC, "xss_attempt", Severity::Low, IP));
        c.assign(&mut stale, "bob", "ann", T0 + MIN).unwrap();
        assert_eq!(stale.event_count, 4);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut c = correlator();
        for i in 0..200_000u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            let e = Observed {
                id: format!("EVT-{i}"),
                ts_us: T0 + u64::from(i),
                kind: "sql_injection_attempt".into(),
                severity: Severity::Medium,
                ip: Some(ip),
                user: None,
                score: 5,
            };
            c.observe(&e, e.ts_us);
            assert!(c.tracked_sources() <= DEFAULT_MAX_SOURCES);
        }
        assert!(c.tracked_sources() >= DEFAULT_MAX_SOURCES * 8 / 10);
        // Windows expire.
        assert!(c.tick(T0 + 2 * HOUR).is_empty());
        assert_eq!(c.tracked_sources(), 0);

        // Open incidents: capped, the least recently updated dropped.
        let mut c = correlator().with_limits(1000, 50);
        for i in 0..200u64 {
            let ip = format!("192.0.2.{}", i % 250);
            let ip = if i < 100 {
                ip
            } else {
                format!("198.51.100.{}", i % 250)
            };
            let a = see(
                &mut c,
                ev(i, "session_hijack_suspected", Severity::Critical, &ip),
            );
            assert_eq!(names(&a), ["create"]);
        }
        assert_eq!(c.open_incidents(), 50);
        // The newest is still tracked: its events link.
        let a = see(
            &mut c,
            ev(
                300,
                "session_hijack_suspected",
                Severity::Low,
                "198.51.100.199",
            ),
        );
        assert_eq!(names(&a), ["update"]);
    }

    #[test]
    fn eviction_of_a_source_keeps_its_open_incident() {
        let mut c = correlator().with_limits(10, 10);
        let inc = burst(&mut c, 0, "xss_attempt", Severity::Low, IP);
        for i in 0..100u64 {
            see(
                &mut c,
                ev(
                    10 * SEC + i,
                    "xss_attempt",
                    Severity::Low,
                    &format!("192.0.2.{i}"),
                ),
            );
        }
        assert!(c.tracked_sources() <= 10);
        let a = see(&mut c, ev(MIN, "xss_attempt", Severity::Low, IP));
        assert_eq!(incident(&a).id, inc.id);
    }

    #[test]
    fn users_are_the_source_when_known() {
        let mut c = correlator();
        let mut e = |at: u64, ip: &str| {
            let mut e = ev(at, "credential_stuffing", Severity::Low, ip);
            e.user = Some("alice".into());
            see(&mut c, e)
        };
        assert!(e(0, "192.0.2.1").is_empty());
        assert!(e(1, "192.0.2.2").is_empty());
        let inc = incident(&e(2, "192.0.2.3"));
        assert_eq!(inc.title, "credential_stuffing from user alice");
        assert_eq!(inc.source_user.as_deref(), Some("alice"));
    }

    #[test]
    fn classes_group_related_types() {
        for (kind, class) in [
            ("sql_injection_attempt", "injection"),
            ("rule_match", "injection"),
            ("jwt_expired", "auth"),
            ("brute_force_attempt", "auth"),
            ("suspicious_user_agent", "recon"),
            ("excessive_requests", "abuse"),
            ("bulk_export", "data"),
            ("malicious_upload", "uploads"),
            ("concurrent_sessions", "session"),
            ("geo_anomaly", "geo_anomaly"),
        ] {
            assert_eq!(class_of(kind), class, "{kind}");
        }
    }

    #[test]
    fn bounded_lists_keep_head_and_tail() {
        let mut c = correlator();
        let first = burst(&mut c, 0, "rule_match", Severity::Low, IP);
        let mut last = first.clone();
        for i in 3..500u64 {
            let a = see(&mut c, ev(i * SEC, "rule_match", Severity::Low, IP));
            last = incident(&a);
        }
        assert_eq!(last.event_count, 500);
        assert_eq!(last.event_ids.len(), IDS_MAX);
        assert_eq!(last.event_ids[..3], first.event_ids[..]);
        assert!(
            last.event_ids
                .last()
                .unwrap()
                .starts_with(&format!("EVT-{}-", 499 * SEC))
        );
        assert_eq!(last.timeline.len(), TIMELINE_MAX);
        assert_eq!(last.timeline[0].what, "created");
        assert!(
            last.timeline.iter().any(|e| e.what == "escalated"),
            "kept over events"
        );
    }

    #[test]
    fn incidents_persist_list_and_restore() {
        let dir = tempdir::Dir::new("incidents");
        let store = crate::store::open(dir.path(), Engine::Sled).unwrap();
        let mut c = correlator();
        let low = burst(&mut c, 0, "scanner_detected", Severity::Low, "192.0.2.1");
        let high = burst(&mut c, MIN, "xss_attempt", Severity::High, "192.0.2.2");
        let mut done = burst(
            &mut c,
            2 * MIN,
            "bulk_export",
            Severity::Medium,
            "192.0.2.3",
        );
        c.resolve(&mut done, "expected export", false, "ann", T0 + 3 * MIN)
            .unwrap();
        for inc in [&low, &high, &done] {
            store.write(&to_ops(inc).unwrap(), true).unwrap();
        }
        assert_eq!(get(&*store, &high.id).unwrap().as_ref(), Some(&high));
        assert_eq!(get(&*store, "INC-1-000000deadbeef").unwrap(), None);
        assert_eq!(get(&*store, "nonsense").unwrap(), None);
        let bad = Incident {
            id: "x".into(),
            ..low.clone()
        };
        assert!(to_ops(&bad).is_err());

        let ids = |v: Vec<Incident>| v.into_iter().map(|i| i.id).collect::<Vec<String>>();
        let all = list(&*store, None, None, 0).unwrap();
        assert_eq!(ids(all), [&*done.id, &*high.id, &*low.id], "newest first");
        assert_eq!(
            ids(list(&*store, None, None, 2).unwrap()),
            [&*done.id, &*high.id]
        );
        assert_eq!(
            ids(list(&*store, Some(Status::New), None, 0).unwrap()),
            [&*high.id, &*low.id]
        );
        assert_eq!(
            ids(list(&*store, Some(Status::Resolved), None, 0).unwrap()),
            [&*done.id]
        );
        assert_eq!(
            ids(list(&*store, None, Some(Severity::Medium), 0).unwrap()),
            [&*done.id, &*high.id]
        );
        assert_eq!(
            ids(list(&*store, Some(Status::New), Some(Severity::High), 0).unwrap()),
            [&*high.id]
        );

        // After a restart, the open ones are correlated and escalated again.
        drop(store);
        let store = crate::store::open(dir.path(), Engine::Sled).unwrap();
        let mut c = correlator();
        c.restore(open_incidents(&*store).unwrap());
        assert_eq!(c.open_incidents(), 2);
        let a = see(
            &mut c,
            ev(10 * MIN, "xss_attempt", Severity::Low, "192.0.2.2"),
        );
        assert_eq!(names(&a), ["update"]);
        assert_eq!(incident(&a).id, high.id);
        let a = c.tick(high.created_us + HOUR);
        assert_eq!(names(&a), ["escalated", "escalated"]);
        // A round trip through JSON is lossless.
        assert_eq!(
            from_bytes(&serde_json::to_vec(&high).unwrap()).as_ref(),
            Some(&high)
        );
    }
}
