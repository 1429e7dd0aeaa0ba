//! Ingestion's side of the store: accepted events in, durably, and the count of what minimization
//! dropped on the way. The hot path of the product, kept apart from everything that reads.

use std::sync::Arc;

use async_trait::async_trait;
use tactful_domain::policy::Policy;

use crate::{DropCount, IngestEvent, IngestOutcome, Result};

/// Storing accepted events.
#[async_trait]
pub trait IngestStore: Send + Sync {
    /// Stores accepted events, applying their consent signals and then `policy` to what each
    /// subject permits. Returns once they are durably committed: acknowledged means stored.
    async fn ingest(&self, events: Vec<IngestEvent>, policy: Arc<Policy>) -> Result<Vec<IngestOutcome>>;

    /// Durable drop counters of minimization, per source, path and reason.
    async fn drop_counts(&self) -> Result<Vec<DropCount>>;
}
