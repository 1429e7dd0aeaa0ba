//! The demo's forwarding destinations made real: the example catalog's email tool and analytics
//! pipeline pointed at receivers on loopback (a webhook and a Segment-protocol endpoint), its
//! warehouse enabled when PostgreSQL is at hand, and what each received and was refused, per reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use tactful_app::App;

/// The example catalog's stand-in addresses, replaced by the receivers'.
const EMAIL_URL: &str = "https://email.fernhill.example";
const ANALYTICS_URL: &str = "https://events.fernhill.example";
/// How long the demo waits for forwarding to catch up before printing what it has.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Events each loopback receiver acknowledged (deliveries repeated after a lost answer count again).
#[derive(Default)]
pub struct Received {
    pub email: AtomicU64,
    pub analytics: AtomicU64,
}

/// The email tool's webhook and the analytics pipeline's `/v1/batch` on one loopback port.
pub struct Receivers {
    pub base: String,
    pub received: Arc<Received>,
}

impl Receivers {
    pub async fn start() -> anyhow::Result<Receivers> {
        let received = Arc::new(Received::default());
        let router = axum::Router::new()
            .route("/hooks/tactful", post(email))
            .route("/v1/batch", post(analytics))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Receivers { base, received })
    }
}

async fn email(State(received): State<Arc<Received>>, body: axum::body::Bytes) -> &'static str {
    received.email.fetch_add(count(&body), Ordering::Relaxed);
    "ok"
}

async fn analytics(State(received): State<Arc<Received>>, body: axum::body::Bytes) -> &'static str {
    received.analytics.fetch_add(count(&body), Ordering::Relaxed);
    "{\"success\":true}"
}

/// Events in a delivery: the length of its `batch` (an erasure notice counts as none).
fn count(body: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| body["batch"].as_array().map(|batch| batch.len() as u64))
        .unwrap_or(0)
}

/// The example catalog's text with its email tool and pipeline enabled and pointed at `receivers`,
/// and its warehouse enabled at `warehouse` when given (the example ships them commented out).
pub fn prepare(text: &str, receivers: &Receivers, warehouse: Option<&str>) -> String {
    let text = with_receivers(text, &receivers.base);
    let Some(url) = warehouse else { return text };
    enable(&text, "warehouse", |line| {
        if line.starts_with("database_url") {
            format!("database_url = {}\n", toml_string(url))
        } else {
            line.to_owned()
        }
    })
}

/// The example catalog's text with its email tool and pipeline enabled and pointed at `base`.
pub fn with_receivers(text: &str, base: &str) -> String {
    let text = text.replace(EMAIL_URL, base).replace(ANALYTICS_URL, base);
    let text = enable(&text, "email_tool", |line| line.to_owned());
    enable(&text, "analytics", |line| line.to_owned())
}

/// `text` with the commented-out `[destinations.KEY]` block uncommented, each of its lines passed
/// through `line` (the block ends at the first line that is not commented).
fn enable(text: &str, key: &str, line: impl Fn(&str) -> String) -> String {
    let Some(start) = text.find(&format!("# [destinations.{key}]")) else { return text.to_owned() };
    let (before, block) = text.split_at(start);
    let mut enabled = String::from(before);
    let mut rest = block.split_inclusive('\n');
    for next in rest.by_ref() {
        let Some(uncommented) = next.strip_prefix("# ") else {
            enabled.push_str(next);
            break;
        };
        enabled.push_str(&line(uncommented));
    }
    enabled.extend(rest);
    enabled
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Waits (boundedly) until every destination has caught up, then prints what each received and
/// what it was refused, per reason.
pub async fn show(app: &App, received: &Received) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut reports = tactful_app::forward::report(app).await?;
    while reports.iter().any(|report| report.lag_seconds > 0) && started.elapsed() < CATCH_UP {
        tokio::time::sleep(Duration::from_millis(250)).await;
        reports = tactful_app::forward::report(app).await?;
    }
    if reports.is_empty() {
        return Ok(());
    }
    println!();
    println!("Forwarded to the brand's tools (each only what one of its purposes permits, now):");
    for report in &reports {
        let heard = match report.key.as_str() {
            "email_tool" => {
                format!(", {} acknowledged by its receiver", received.email.load(Ordering::Relaxed))
            }
            "analytics" => {
                format!(", {} acknowledged by its receiver", received.analytics.load(Ordering::Relaxed))
            }
            _ => String::new(),
        };
        println!("  {} ({}): {} events delivered{heard}", report.name, report.kind, report.delivered);
        if report.refused.is_empty() {
            println!("    refused: nothing");
        } else {
            let reasons: Vec<String> =
                report.refused.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
            println!("    refused: {}", reasons.join(", "));
        }
        if report.lag_seconds > 0 || report.failures > 0 {
            println!(
                "    behind by {} s, {} failed deliveries{}",
                report.lag_seconds,
                report.failures,
                report.last_error.as_deref().map(|error| format!(" (last: {error})")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warehouse_is_enabled_only_with_a_database() {
        let receivers = Receivers { base: "http://127.0.0.1:9".into(), received: Arc::default() };
        let example = tactful_domain::catalog::Catalog::example_text();
        let without = prepare(example, &receivers, None);
        assert!(without.contains("url = \"http://127.0.0.1:9/hooks/tactful\""));
        let catalog = tactful_domain::catalog::Catalog::parse(&without).unwrap();
        assert!(catalog.destinations().iter().all(|destination| destination.key != "warehouse"));
        for key in ["email_tool", "analytics"] {
            assert!(
                catalog.destination(key).is_some_and(|destination| destination.forwards()),
                "{key}: {without}"
            );
        }
        let with = prepare(example, &receivers, Some("postgres://u@127.0.0.1/w"));
        let catalog = tactful_domain::catalog::Catalog::parse(&with).unwrap();
        let warehouse = catalog.destinations().iter().find(|destination| destination.key == "warehouse");
        assert!(warehouse.is_some_and(|warehouse| warehouse.forwards()), "{with}");
    }
}
