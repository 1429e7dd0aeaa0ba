//! Personalization's shared state: the brand's catalogue of items, each person's sealed
//! contribution to the shared model, and the marks of who must be recomputed.

use async_trait::async_trait;

use crate::{ItemRecord, ModelChange, Result};

/// The catalogue and the shared model.
///
/// Items and contributions take their versions from one counter, incremented in the writing
/// transaction: versions become visible in increasing order, also with many instances writing, so
/// a reader that has seen version v never later finds a change at v or below.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Upserts items by id; each written item gets a new version from the model version counter.
    /// Returns the last version assigned (0 if `items` is empty). An id given twice keeps its last
    /// record.
    async fn put_items(&self, items: Vec<ItemRecord>, now: i64) -> Result<i64>;

    /// Items written after `after` (by version), oldest first, at most `limit`: how instances keep
    /// their copy of the catalogue fresh.
    async fn items_since(&self, after: i64, limit: u32) -> Result<Vec<ItemRecord>>;

    /// One item by id.
    async fn item(&self, id: &str) -> Result<Option<ItemRecord>>;

    /// In one transaction: writes (upserts) the sealed contribution of each `(subject, sealed)` in
    /// `write`, and removes the contribution of each subject in `remove` (a removal of a subject that
    /// has none still records a removal change). Every write and removal gets its own new version
    /// from the model counter, in the order given (writes first, then removals); a subject both
    /// written and removed ends up removed. A write for a subject that does not exist or is erased is
    /// recorded as a removal (nothing is kept under a destroyed key). Returns the last version
    /// assigned (0 if both are empty).
    async fn put_contributions(
        &self,
        write: Vec<(String, Vec<u8>)>,
        remove: Vec<String>,
        now: i64,
    ) -> Result<i64>;

    /// Changes to contributions after `after`, in version order, at most `limit`. A subject appears
    /// once, with its latest state (a written contribution, or `None` if removed), at its latest
    /// version. Contributions of subjects that no longer have a `subjects` row (or whose key was
    /// shredded) come back as removals.
    async fn model_changes(&self, after: i64, limit: u32) -> Result<Vec<ModelChange>>;

    /// Marks every subject not erased (a full rebuild). Returns how many.
    async fn mark_all_model_dirty(&self, now: i64) -> Result<u64>;

    /// Up to `limit` dirty marks `(subject, marked_at)`, oldest mark first. Does not remove them.
    async fn model_dirty(&self, limit: u32) -> Result<Vec<(String, i64)>>;

    /// Removes marks that were not renewed since they were read: deletes `(subject, marked_at)` only
    /// where the stored mark is still `<= marked_at`.
    async fn model_clean(&self, marks: Vec<(String, i64)>) -> Result<()>;
}
