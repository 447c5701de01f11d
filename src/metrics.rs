//! Prometheus registry and typed handles. Labelled series used on the request
//! path are resolved once here, so a request never hashes label values.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets in seconds: 100 µs to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

pub struct Metrics {
    pub registry: Registry,
    /// Requests by status class, index 0 = 1xx … 4 = 5xx.
    by_class: [IntCounter; 5],
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub open_connections: IntGauge,
    pub rejected: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub connections_refused: IntCounter,
    pub access_log_dropped: IntCounter,
    pub config_reloads: IntCounterVec,
    pub rules_reloads: IntCounterVec,
    pub ruleset_info: IntGaugeVec,
    pub rules_loaded: IntGauge,
    pub blocked: IntCounterVec,
    pub would_block: IntCounterVec,
    pub rule_hits: IntCounterVec,
    pub inspection_duration: Histogram,
    pub store_failures: IntCounterVec,
    pub security_events: IntCounterVec,
    pub audit_events: IntCounterVec,
    store: StoreFamilies,
}

/// Store and notifier figures, copied from their atomics at scrape time.
struct StoreFamilies {
    queue_depth: IntGauge,
    dropped: IntCounter,
    write_errors: IntCounter,
    batches: IntCounter,
    write_seconds: prometheus::Counter,
    chain_records: IntGauge,
    pending_retry: IntGauge,
    loss_window: prometheus::Gauge,
    active_blocks: IntGauge,
    webhooks: IntCounterVec,
    checkpoint: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "portcullis_http_requests_total",
                "Requests answered, by status class",
            ),
            &["class"],
        )
        .expect("valid metric");
        let by_class =
            ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| requests.with_label_values(&[c]));
        let request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_http_request_duration_seconds",
                "Time from request head to end of response",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let upstream_duration = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_upstream_duration_seconds",
                "Time from sending upstream to its response head",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let open_connections =
            IntGauge::new("portcullis_open_connections", "Client connections open")
                .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "portcullis_protocol_rejections_total",
                "Requests refused by protocol checks (framing, limits, timeouts), by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "portcullis_upstream_errors_total",
                "Upstream failures, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let connections_refused = IntCounter::new(
            "portcullis_connections_refused_total",
            "Connections closed at accept because max_connections was reached",
        )
        .expect("valid metric");
        let access_log_dropped = IntCounter::new(
            "portcullis_access_log_dropped_total",
            "Access log lines dropped because the log writer fell behind",
        )
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "portcullis_config_reload_total",
                "Configuration reloads, by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let rules_reloads = IntCounterVec::new(
            Opts::new(
                "portcullis_rules_reload_total",
                "Rule set reloads (with the configuration), by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let ruleset_info = IntGaugeVec::new(
            Opts::new(
                "portcullis_ruleset_info",
                "The rule set in force (1 for its hash)",
            ),
            &["hash"],
        )
        .expect("valid metric");
        let rules_loaded = IntGauge::new(
            "portcullis_rules_loaded",
            "Rules compiled in the rule set in force",
        )
        .expect("valid metric");
        let blocked = IntCounterVec::new(
            Opts::new(
                "portcullis_blocked_requests_total",
                "Requests blocked by the rule engine, by rule family (pack)",
            ),
            &["rule_type"],
        )
        .expect("valid metric");
        let would_block = IntCounterVec::new(
            Opts::new(
                "portcullis_detect_only_total",
                "Requests that would have been blocked (detect mode), by rule family",
            ),
            &["rule_type"],
        )
        .expect("valid metric");
        let rule_hits = IntCounterVec::new(
            Opts::new(
                "portcullis_rule_hits_total",
                "Rule matches, by rule family and mode",
            ),
            &["rule_type", "mode"],
        )
        .expect("valid metric");
        let inspection_duration = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_inspection_duration_seconds",
                "Time spent building the request view and evaluating rules",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("portcullis_build_info", "Build information (always 1)"),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let store_failures = counter_vec(
            "portcullis_store_failures_total",
            "Records that could not be stored (queue full or write error), by record kind",
            &["record"],
        );
        let security_events = counter_vec(
            "portcullis_security_events_total",
            "Security events recorded, by type and severity",
            &["type", "severity"],
        );
        let audit_events = counter_vec(
            "portcullis_audit_events_total",
            "Audit records written, by category",
            &["category"],
        );
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let store = StoreFamilies {
            queue_depth: gauge(
                "portcullis_store_queue_depth",
                "Records queued for the store writer",
            ),
            dropped: counter(
                "portcullis_store_dropped_events_total",
                "Records dropped because the store queue was full or failed batches overflowed",
            ),
            write_errors: counter("portcullis_store_write_errors_total", "Failed store writes"),
            batches: counter("portcullis_store_batches_total", "Group commits written"),
            write_seconds: prometheus::Counter::new(
                "portcullis_store_write_seconds_total",
                "Time spent writing batches (divide by batches for the mean commit latency)",
            )
            .expect("valid metric"),
            chain_records: gauge(
                "portcullis_audit_chain_head",
                "Sequence number of the last committed audit record",
            ),
            pending_retry: gauge(
                "portcullis_store_pending_retry_records",
                "Records of failed batches waiting to be written again",
            ),
            loss_window: prometheus::Gauge::new(
                "portcullis_store_loss_window_seconds",
                "Longest span of acknowledged records a crash can lose (0 in strict mode)",
            )
            .expect("valid metric"),
            active_blocks: gauge(
                "portcullis_blocked_ips_active",
                "Blocked addresses in force",
            ),
            checkpoint: IntGaugeVec::new(
                Opts::new(
                    "portcullis_audit_checkpoint",
                    "The last audit chain checkpoint: its record number, with the chain hash there as a label",
                ),
                &["hash"],
            )
            .expect("valid metric"),
            webhooks: counter_vec(
                "portcullis_webhook_notifications_total",
                "Webhook notifications by result (delivered, failed, retried, dropped)",
                &["result"],
            ),
        };
        for c in [
            Box::new(store_failures.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(security_events.clone()),
            Box::new(audit_events.clone()),
            Box::new(store.queue_depth.clone()),
            Box::new(store.dropped.clone()),
            Box::new(store.write_errors.clone()),
            Box::new(store.batches.clone()),
            Box::new(store.write_seconds.clone()),
            Box::new(store.chain_records.clone()),
            Box::new(store.pending_retry.clone()),
            Box::new(store.loss_window.clone()),
            Box::new(store.active_blocks.clone()),
            Box::new(store.webhooks.clone()),
            Box::new(store.checkpoint.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for c in [
            Box::new(requests) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(open_connections.clone()),
            Box::new(rejected.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(connections_refused.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(config_reloads.clone()),
            Box::new(rules_reloads.clone()),
            Box::new(ruleset_info.clone()),
            Box::new(rules_loaded.clone()),
            Box::new(blocked.clone()),
            Box::new(would_block.clone()),
            Box::new(rule_hits.clone()),
            Box::new(inspection_duration.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            by_class,
            request_duration,
            upstream_duration,
            open_connections,
            rejected,
            upstream_errors,
            connections_refused,
            access_log_dropped,
            config_reloads,
            rules_reloads,
            ruleset_info,
            rules_loaded,
            blocked,
            would_block,
            rule_hits,
            inspection_duration,
            store_failures,
            security_events,
            audit_events,
            store,
        }
    }

    /// Copies the store writer's and the notifier's counters into their
    /// families (called at scrape time; the sources are monotonic atomics).
    pub fn observe_store(
        &self,
        w: &crate::store::writer::WriterStats,
        strict: bool,
        active_blocks: usize,
        notify: Option<crate::notify::NotifyStats>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.store;
        let catch_up = |c: &IntCounter, v: u64| c.inc_by(v.saturating_sub(c.get()));
        s.queue_depth.set(w.queued.load(Relaxed) as i64);
        catch_up(&s.dropped, w.dropped.load(Relaxed));
        catch_up(&s.write_errors, w.errors.load(Relaxed));
        catch_up(&s.batches, w.batches.load(Relaxed));
        let secs = w.write_micros.load(Relaxed) as f64 / 1e6;
        s.write_seconds
            .inc_by((secs - s.write_seconds.get()).max(0.0));
        s.chain_records.set(w.chain_seq.load(Relaxed) as i64);
        s.pending_retry.set(w.pending_retry.load(Relaxed) as i64);
        s.loss_window.set(if strict {
            0.0
        } else {
            crate::store::writer::BATCHED_WINDOW.as_secs_f64()
        });
        s.active_blocks.set(active_blocks as i64);
        if let Ok(c) = w.checkpoint.lock()
            && let Some((n, hash)) = c.split_once(':')
            && let Ok(n) = n.parse::<i64>()
        {
            s.checkpoint.reset();
            s.checkpoint.with_label_values(&[hash]).set(n);
        }
        if let Some(n) = notify {
            for (label, v) in [
                ("delivered", n.delivered),
                ("failed", n.failed),
                ("retried", n.retries),
                ("dropped", n.dropped),
            ] {
                catch_up(&s.webhooks.with_label_values(&[label]), v);
            }
        }
    }

    pub fn count_status(&self, status: u16) {
        let i = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[i].inc();
    }

    /// Publishes the identity of the rule set now in force.
    pub fn set_ruleset(&self, hash: Option<&str>, rules: usize) {
        self.ruleset_info.reset();
        if let Some(h) = hash {
            self.ruleset_info.with_label_values(&[h]).set(1);
        }
        self.rules_loaded.set(rules as i64);
    }

    /// Prometheus text exposition of every registered family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
