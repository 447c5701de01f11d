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
