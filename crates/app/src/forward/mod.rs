//! Forwarding events to the brand's own tools (email tool, analytics pipeline, warehouse), each
//! receiving only what one of its purposes permits for that person when it is sent.

mod deliver;
mod prepare;
pub mod segment;
pub mod sink;
pub mod warehouse;
pub mod webhook;

pub use deliver::{Sinks, forward_due, replay, start};

use std::collections::BTreeMap;
use std::sync::Arc;

use tactful_domain::catalog::{Destination, DestinationKind};

use crate::outbound::Outbound;
use crate::{App, AppError};
use sink::Sink;

/// How one forwarding destination is doing, for the console, the demo and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationReport {
    pub key: String,
    pub name: String,
    /// `webhook`, `segment` or `warehouse`.
    pub kind: String,
    /// Events the destination acknowledged (a replayed event counts again).
    pub delivered: u64,
    /// Events (or, for `not_declared` and `sensitive_not_declared`, properties) kept from it, by
    /// reason: `no_consent`, `consent_withdrawn`, `restricted`, `guardrail`, `not_declared`,
    /// `sensitive_not_declared`, `needs_explicit_consent`, `not_serving`, … Numbers only.
    pub refused: BTreeMap<String, u64>,
    /// Deliveries that failed (each attempt counts).
    pub failures: u64,
    /// Seconds since the oldest event not yet delivered arrived; 0 when it is caught up.
    pub lag_seconds: u64,
    /// What the destination last answered when it failed (never personal data).
    pub last_error: Option<String>,
}

/// The kind of a destination as reports and metrics name it.
pub fn kind_name(kind: &DestinationKind) -> &'static str {
    match kind {
        DestinationKind::Webhook => "webhook",
        DestinationKind::Segment { .. } => "segment",
        DestinationKind::Warehouse { .. } => "warehouse",
    }
}

/// Every forwarding destination of the catalog, in catalog order, with what it received, what it
/// was refused (per reason), its failures and its lag now.
pub async fn report(app: &App) -> Result<Vec<DestinationReport>, AppError> {
    let now = app.now();
    let statuses = app.store.forward_status().await?;
    Ok(app
        .catalog
        .destinations()
        .iter()
        .filter(|destination| destination.forwards())
        .map(|destination| {
            let status = statuses.iter().find(|status| status.destination == destination.key);
            DestinationReport {
                key: destination.key.clone(),
                name: destination.name.clone(),
                kind: kind_name(&destination.kind).to_owned(),
                delivered: status.map_or(0, |status| status.delivered),
                refused: status.map(|status| status.refused.clone()).unwrap_or_default(),
                failures: status.map_or(0, |status| status.failures),
                lag_seconds: status
                    .and_then(|status| status.pending_since)
                    .map_or(0, |since| u64::try_from(now.saturating_sub(since) / 1000).unwrap_or(0)),
                last_error: status.and_then(|status| status.last_error.clone()),
            }
        })
        .collect())
}

/// The sink that carries events to `destination`, by its kind.
pub fn sink_for(destination: &Destination, outbound: &Outbound) -> Arc<dyn Sink> {
    match &destination.kind {
        DestinationKind::Webhook => Arc::new(webhook::WebhookSink::new(destination, outbound.clone())),
        DestinationKind::Segment { write_key, regulations } => {
            let sink = segment::SegmentSink::new(&destination.url, write_key, outbound.clone());
            match regulations {
                Some(regulations) => Arc::new(sink.with_regulations(regulations.clone())),
                None => Arc::new(sink),
            }
        }
        DestinationKind::Warehouse { database_url, schema } => {
            Arc::new(warehouse::WarehouseSink::new(database_url, schema))
        }
    }
}
