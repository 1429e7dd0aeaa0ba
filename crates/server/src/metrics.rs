//! Prometheus metrics of this process (`/metrics`). Counters are per instance, as Prometheus expects;
//! sum them across instances. The durable, all-instance totals of dropped properties are in the
//! database (`tactful dropped`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub source: String,
    /// `stored`, `duplicate`, `dropped` (whole event, by the tracking plan) or `rejected`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub source: String,
    pub path: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub destination: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The limit that refused: `sign_in_per_address`, `api_key_failures_per_client`, …
    pub limit: String,
}

pub struct Metrics {
    registry: Registry,
    pub events: Family<EventLabels, Counter>,
    pub dropped_properties: Family<DropLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub ingest_seconds: Histogram,
    pub inflight: Gauge,
    pub rate_limited: Family<LimitLabels, Counter>,
    forward_lag: Family<DestinationLabels, Gauge>,
    forward_delivered: Family<DestinationLabels, Gauge>,
    forward_failures: Family<DestinationLabels, Gauge>,
    forward_refused: Family<RefusalLabels, Gauge>,
    distinct_drop_paths: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

/// Distinct dropped paths tracked per process before further ones are counted as `(other)`, so a
/// client sending random keys cannot blow up the number of time series.
const MAX_DROP_SERIES: usize = 2_000;

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tactful");
        let events = Family::<EventLabels, Counter>::default();
        registry.register("events", "Events received, by source and outcome", events.clone());
        let dropped_properties = Family::<DropLabels, Counter>::default();
        registry.register(
            "properties_dropped",
            "Properties not stored at ingestion (minimization), by source, path and reason",
            dropped_properties.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests, by route template and status", requests.clone());
        let ingest_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "ingest_request_duration_seconds",
            "Time to accept and commit one ingestion request",
            ingest_seconds.clone(),
        );
        let inflight = Gauge::default();
        registry.register("ingest_inflight_requests", "Ingestion requests being processed", inflight.clone());
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register("rate_limited", "Requests refused by a rate limit, by limit", rate_limited.clone());
        let forward_lag = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "forward_lag_seconds",
            "Seconds since the oldest event not yet forwarded to a destination arrived (all instances)",
            forward_lag.clone(),
        );
        let forward_delivered = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "forward_delivered_events",
            "Events a destination acknowledged, all instances together (from the database)",
            forward_delivered.clone(),
        );
        let forward_failures = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "forward_failures",
            "Failed deliveries to a destination, all instances together (from the database)",
            forward_failures.clone(),
        );
        let forward_refused = Family::<RefusalLabels, Gauge>::default();
        registry.register(
            "forward_refused",
            "Events and properties kept from a destination, by reason, all instances together",
            forward_refused.clone(),
        );
        Metrics {
            registry,
            rate_limited,
            forward_lag,
            forward_delivered,
            forward_failures,
            forward_refused,
            events,
            dropped_properties,
            requests,
            ingest_seconds,
            inflight,
            distinct_drop_paths: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub fn count_drop(&self, source: &str, path: &str, reason: &'static str) {
        let path = {
            let Ok(mut seen) = self.distinct_drop_paths.lock() else { return };
            let key = (source.to_owned(), path.to_owned());
            if seen.contains(&key) || seen.len() < MAX_DROP_SERIES {
                seen.insert(key);
                path.to_owned()
            } else {
                "(other)".to_owned()
            }
        };
        self.dropped_properties.get_or_create(&DropLabels { source: source.to_owned(), path, reason }).inc();
    }

    /// Sets the forwarding gauges from the database's figures (the same for every instance).
    pub fn set_forwarding(&self, reports: &[tactful_app::forward::DestinationReport]) {
        let number = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        for report in reports {
            let labels = DestinationLabels { destination: report.key.clone() };
            self.forward_lag.get_or_create(&labels).set(number(report.lag_seconds));
            self.forward_delivered.get_or_create(&labels).set(number(report.delivered));
            self.forward_failures.get_or_create(&labels).set(number(report.failures));
            for (reason, count) in &report.refused {
                let labels = RefusalLabels { destination: report.key.clone(), reason: reason.clone() };
                self.forward_refused.get_or_create(&labels).set(number(*count));
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
