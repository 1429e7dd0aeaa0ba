//! Prometheus metrics of this process (`/metrics`). Counters are per instance, as Prometheus expects;
//! sum them across instances. The durable, all-instance totals of dropped properties are in the
//! database (`tactful dropped`). OpenMetrics by default; the classic text format 0.0.4 for a
//! scraper whose `Accept` prefers it.

mod classic;
mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    /// The route template (`/v1/subjects/{subject}/profile`), never the path.
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    /// The outbox topic: `erase`, `sign_in`, a destination's lane, …
    pub lane: String,
}

/// Latency buckets in seconds: 0.5 ms to about 4 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

pub struct Metrics {
    registry: Registry,
    pub events: Family<EventLabels, Counter>,
    pub dropped_properties: Family<DropLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub ingest_seconds: Histogram,
    pub inflight: Gauge,
    pub rate_limited: Family<LimitLabels, Counter>,
    /// Time from a request's head to its answer, by route template and method.
    pub request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Age of the oldest message waiting in each outbox lane, refreshed at each scrape.
    outbox_lag: Family<LaneLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
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
        let mut root = Registry::default();
        // The standard names every exporter uses, without the product's prefix.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("tactful");
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
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head to its answer, by route template and method",
            request_seconds.clone(),
        );
        let outbox_lag = Family::<LaneLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "outbox_oldest_message_age_seconds",
            "Age of the oldest message waiting in each outbox lane (deliveries, sign-in codes): how far delivery lags",
            outbox_lag.clone(),
        );
        registry.register(
            "build",
            "The running build",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
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
            registry: root,
            rate_limited,
            request_seconds,
            outbox_lag,
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

    /// Replaces the outbox lag with this reading: `(lane, age in seconds)` of each lane with a
    /// message waiting; lanes absent have none.
    pub fn set_outbox_lag(&self, lanes: &[(String, f64)]) {
        self.outbox_lag.clear();
        for (lane, seconds) in lanes {
            self.outbox_lag.get_or_create(&LaneLabels { lane: lane.clone() }).set(*seconds);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// The exposition in the format asked for.
    pub fn render_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.render(),
            Format::Classic => classic::from_openmetrics(&self.render()),
        }
    }
}

/// The text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Classic,
}

impl Format {
    /// The format a scraper's `Accept` header prefers: the classic one when it weighs `text/plain`
    /// above OpenMetrics, otherwise (no header, `*/*`, OpenMetrics first) OpenMetrics.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut plain) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let weight = parts
                .find_map(|parameter| parameter.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(weight),
                "text/plain" => plain = plain.max(weight),
                _ => {}
            }
        }
        if plain > openmetrics { Format::Classic } else { Format::OpenMetrics }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_only_when_the_scraper_prefers_it() {
        let check = |accept: Option<&str>, expected: Format| {
            assert_eq!(Format::from_accept(accept), expected, "{accept:?}")
        };
        // What Prometheus 2.x and 3.x send: OpenMetrics first.
        check(
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            Format::OpenMetrics,
        );
        check(Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.2"), Format::Classic);
        check(Some("text/plain"), Format::Classic);
        check(Some("*/*"), Format::OpenMetrics);
        check(None, Format::OpenMetrics);
    }
}
