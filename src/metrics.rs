//! `GET /metrics`, in the Prometheus text format (the `prometheus` crate).
//!
//! The counters are process-wide and cheap on the request path: the
//! request counter of each (route, status, outcome) is resolved once and
//! kept in a slot, so a request costs an index, an atomic add and a
//! histogram observation (atomics too): no lock, no allocation. The gauges
//! (audit queue, argon2 jobs, cached tokens) are read from the application
//! when Prometheus scrapes.
//!
//! Who may read it: with `--metrics-bind` only that address serves it (to
//! anyone who reaches it; bind it to a private interface). Without it the
//! main address serves it to loopback clients only, the address as the
//! gate determines it (`--trusted-proxy` included); anyone else gets the
//! API's JSON 404, as for a path that does not exist.

use std::sync::{LazyLock, OnceLock};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::audit::Outcome;
use crate::state::AppState;

/// Statuses the API answers, each with a slot; others take the slow path.
/// 502 and 504 are the gateway's when the upstream fails (`upstream_error`).
const STATUSES: [u16; 17] = [200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 502, 503, 504];
/// Route labels with slots of their own (a route table's paths, then one
/// label for everything that matched no route); others take the slow path.
pub const MAX_ROUTES: usize = 256;
pub const UNMATCHED: &str = "unmatched";

/// The request counters of one route table, resolved once per (route,
/// status, outcome) and kept: a request costs an index and an atomic add.
/// A table reloaded from a new document gets counters of its own.
pub struct RouteCounters {
    labels: Vec<String>,
    slots: Box<[OnceLock<IntCounter>]>,
}

impl RouteCounters {
    /// `labels` are the table's path templates; one more, `unmatched`, is added.
    pub fn new(mut labels: Vec<String>) -> Self {
        labels.push(UNMATCHED.to_owned());
        let routes = labels.len().min(MAX_ROUTES);
        let slots = (0..routes * STATUSES.len() * Outcome::ALL.len()).map(|_| OnceLock::new()).collect();
        Self { labels, slots }
    }

    /// The label of route `index` (`unmatched` past the end).
    pub fn label(&self, index: usize) -> &str {
        self.labels.get(index).map_or(UNMATCHED, String::as_str)
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    gate_seconds: Histogram,
    pub audit_rows_written: IntCounter,
    pub audit_batches_written: IntCounter,
    pub token_cache_hits: IntCounter,
    pub token_cache_misses: IntCounter,
    oauth_tokens: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new("keygate_api_requests_total", "API requests answered, by route, status and outcome"),
                &["route", "status", "outcome"],
            )
            .expect("valid metric"),
        );
        let gate_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "keygate_gate_duration_seconds",
                    "Time from the gate taking an API request to its answer (the audit row's latency)",
                )
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            )
            .expect("valid metric"),
        );
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help).expect("valid metric"));
        let audit_rows_written = counter("keygate_audit_rows_written_total", "Audit rows committed by the writer");
        let audit_batches_written = counter(
            "keygate_audit_batches_written_total",
            "Transactions the audit writer committed (rows ÷ this: rows a batch)",
        );
        let token_cache_hits = counter("keygate_token_cache_hits_total", "Gate token lookups answered from memory");
        let token_cache_misses =
            counter("keygate_token_cache_misses_total", "Gate token lookups that read the database");
        let oauth_tokens = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "keygate_oauth_token_requests_total",
                    "Token-endpoint requests by grant type (authorization_code: grants, refresh_token: refreshes, device_code: device polls) and result (ok or the OAuth error code)",
                ),
                &["grant_type", "result"],
            )
            .expect("valid metric"),
        );
        for grant_type in ["authorization_code", "refresh_token"] {
            oauth_tokens.with_label_values(&[grant_type, "ok"]);
        }
        Self {
            registry,
            requests,
            gate_seconds,
            audit_rows_written,
            audit_batches_written,
            token_cache_hits,
            token_cache_misses,
            oauth_tokens,
        }
    }

    /// One API request answered: `route` is the route label's index in
    /// `counters` (`RouteTable::resolve`).
    pub fn api_request(&self, counters: &RouteCounters, route: usize, status: u16, outcome: Outcome, seconds: f64) {
        self.gate_seconds.observe(seconds);
        let label = counters.label(route);
        let outcome_index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        let slot = STATUSES
            .iter()
            .position(|s| *s == status)
            .map(|status_index| (route * STATUSES.len() + status_index) * Outcome::ALL.len() + outcome_index)
            .filter(|slot| *slot < counters.slots.len());
        match slot {
            Some(slot) => counters.slots[slot]
                .get_or_init(|| self.requests.with_label_values(&[label, &status.to_string(), outcome.as_str()]))
                .inc(),
            None => self.requests.with_label_values(&[label, &status.to_string(), outcome.as_str()]).inc(),
        }
    }

    /// A token-endpoint answer.
    pub fn oauth_token(&self, grant_type: &str, result: &str) {
        let grant_type = match grant_type {
            "authorization_code" | "refresh_token" => grant_type,
            crate::oauth::device::GRANT_TYPE => "device_code",
            _ => "other",
        };
        self.oauth_tokens.with_label_values(&[grant_type, result]).inc();
    }

    /// The text exposition of every metric, with this application's gauges.
    pub fn render(&self, state: &AppState) -> String {
        let gauges = Registry::new();
        let gauge = |name: &str, help: &str, value: usize| {
            let gauge = IntGauge::new(name, help).expect("valid metric");
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            gauges.register(Box::new(gauge)).expect("metric names are unique");
        };
        gauge("keygate_audit_queue_depth", "Audit rows waiting for the writer", state.audit.queued());
        gauge(
            "keygate_argon2_jobs_waiting",
            "argon2 jobs (token and password checks) queued or running",
            state.hasher.waiting(),
        );
        gauge("keygate_token_cache_entries", "Credentials the gate holds in memory", state.gate.tokens.len());
        // A count that only grows, rendered as a gauge: the hasher keeps it.
        gauge(
            "keygate_argon2_runs",
            "argon2 checks and hashes run since start (passwords, API token and client secrets)",
            state.hasher.runs(),
        );
        let mut families = self.registry.gather();
        families.extend(gauges.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut text) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

pub const PATH: &str = "/metrics";

fn exposition(state: &AppState) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(global().render(state))
}

/// `/metrics` on the main address: loopback clients only, unless
/// `--metrics-bind` moved it elsewhere (then: 404 for everyone here).
pub async fn on_main_address(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let from = crate::remote::of_request(&req, &state.config.trusted_proxies).ip;
    if state.config.metrics_bind.is_none() && from.is_some_and(|ip| ip.is_loopback()) {
        return exposition(&state);
    }
    crate::error::json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is nothing at this path.",
        &crate::request_id::of(&req),
        [],
    )
}

/// `/metrics` on `--metrics-bind`: to whoever reaches that address.
pub async fn on_metrics_address(state: web::Data<AppState>) -> HttpResponse {
    exposition(&state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition's lines of the request counter, as Prometheus reads them.
    fn request_lines(metrics: &Metrics) -> Vec<String> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&metrics.registry.gather(), &mut text).unwrap();
        String::from_utf8(text)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("keygate_api_requests_total{"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_upstream_error_is_counted_under_its_own_outcome_label() {
        let metrics = Metrics::new();
        let counters = RouteCounters::new(vec!["/api/v1/token".into(), "/api/v1/orders".into()]);
        metrics.api_request(&counters, 1, 502, Outcome::UpstreamError, 0.001);
        metrics.api_request(&counters, 1, 504, Outcome::UpstreamError, 30.0);
        metrics.api_request(&counters, 1, 504, Outcome::UpstreamError, 30.0);
        metrics.api_request(&counters, 1, 500, Outcome::Error, 0.001);
        let mut lines = request_lines(&metrics);
        lines.sort();
        let line = |status: &str, outcome: &str, n: u32| {
            format!(
                "keygate_api_requests_total{{outcome=\"{outcome}\",route=\"/api/v1/orders\",status=\"{status}\"}} {n}"
            )
        };
        assert_eq!(
            lines,
            [line("500", "error", 1), line("502", "upstream_error", 1), line("504", "upstream_error", 2)]
        );
        // Both gateway statuses have a slot of their own: no label is built per request.
        assert!(STATUSES.contains(&502) && STATUSES.contains(&504));
    }
}
