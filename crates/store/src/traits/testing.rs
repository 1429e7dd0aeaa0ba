//! Test support: store methods that only tests call, kept out of [`Store`] so that nothing in the
//! product can come to depend on them. Import [`StoreTesting`] to call them on an `Arc<dyn Store>`.

use std::any::Any;

use async_trait::async_trait;

use crate::{Budget, PostgresStore, Result, SqliteStore, Store, StoreError};

/// What tests read and write directly, beside the [`Store`] every caller holds: outbox messages the
/// product only ever writes in the transaction of a change, model marks ingestion makes, the model
/// counter and a budget's state. Not a supertrait of [`Store`]: the product never sees these.
#[async_trait]
pub trait StoreTesting: Send + Sync {
    /// Adds a message to the outbox, due at once. Returns its id.
    async fn outbox_enqueue(&self, topic: &str, payload: Vec<u8>, now: i64) -> Result<String>;

    /// The latest version assigned by the model counter (0 when none).
    async fn model_version(&self) -> Result<i64>;

    /// Marks subjects whose contribution must be recomputed (their events or consent changed).
    /// Marking again moves the mark's time forward: to `now`, or past the previous mark if `now` is
    /// not later (clocks of instances differ), so a renewed mark always outlives
    /// [`ModelStore::model_clean`](crate::ModelStore::model_clean) of what was read before.
    async fn mark_model_dirty(&self, subjects: Vec<String>, now: i64) -> Result<()>;

    /// The budget of a dataset for a period (spent 0 when nothing was spent yet).
    async fn budget(&self, dataset: &str, period_start: i64, limit_micro: i64) -> Result<Budget>;
}

/// The backend behind a `dyn Store`: tests hold the store as the product does.
fn backend_of(store: &dyn Store) -> Result<&dyn StoreTesting> {
    let any: &dyn Any = store;
    if let Some(sqlite) = any.downcast_ref::<SqliteStore>() {
        return Ok(sqlite);
    }
    if let Some(postgres) = any.downcast_ref::<PostgresStore>() {
        return Ok(postgres);
    }
    Err(StoreError::Internal(format!("no test support for a {} store", store.backend())))
}

#[async_trait]
impl StoreTesting for dyn Store {
    async fn outbox_enqueue(&self, topic: &str, payload: Vec<u8>, now: i64) -> Result<String> {
        backend_of(self)?.outbox_enqueue(topic, payload, now).await
    }

    async fn model_version(&self) -> Result<i64> {
        backend_of(self)?.model_version().await
    }

    async fn mark_model_dirty(&self, subjects: Vec<String>, now: i64) -> Result<()> {
        backend_of(self)?.mark_model_dirty(subjects, now).await
    }

    async fn budget(&self, dataset: &str, period_start: i64, limit_micro: i64) -> Result<Budget> {
        backend_of(self)?.budget(dataset, period_start, limit_micro).await
    }
}
