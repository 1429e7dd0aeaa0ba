//! Running the service: readiness, totals for operators, leader-free periodic jobs, and master-key
//! rotation. Nothing here is about one person.

use async_trait::async_trait;

use crate::{Result, RewrapBatch, Stats};

/// Operating the store.
#[async_trait]
pub trait OperationsStore: Send + Sync {
    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    async fn stats(&self) -> Result<Stats>;

    /// Leader-free periodic jobs: whether `owner` should run job `name` now. True for exactly one
    /// caller per period (`every_ms`) across all instances; that caller holds a lease for `lease_ms`
    /// (if it dies, another runs the job once the lease ends).
    async fn job_claim(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        every_ms: i64,
        lease_ms: i64,
    ) -> Result<bool>;

    /// Ends `owner`'s lease on job `name` early, once the run is done.
    async fn job_release(&self, name: &str, owner: &str) -> Result<()>;

    /// Master-key rotation: re-wraps under the current master key up to `limit` subject keys
    /// (and, on the first call, the keyring), in id order after `after`. Call again with the
    /// returned cursor until it is `None`. Safe to run while servers keep writing.
    async fn rewrap_keys(&self, after: Option<String>, limit: u32) -> Result<RewrapBatch>;
}
