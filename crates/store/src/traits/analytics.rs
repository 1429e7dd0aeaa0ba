//! Private analytics' side of the store: privacy budgets spent without ever passing their limit,
//! and the bulk reads aggregates are built from (window scans, family roots, activity and keys).

use async_trait::async_trait;
use tactful_domain::audit::AuditEvent;

use crate::{FamilyActivity, Result, Scan, SpendOutcome, WindowCursor, WindowPage, WrappedKeys};

/// Privacy budgets and aggregate scans.
#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    /// Spends `epsilon_micro` of dataset `dataset`'s budget for the period starting at `period_start`
    /// (Unix ms), whose limit is `limit_micro`, in one transaction with `audit` (appended to the
    /// audit log in that transaction). The limit is taken from the caller (the catalog) each time,
    /// so a changed limit applies at once. Refuses, recording nothing (no audit entry either), when
    /// spent + `epsilon_micro` would exceed `limit_micro`. Concurrent spends, also from several
    /// instances, never together exceed the limit. A negative `epsilon_micro` or `limit_micro` is an
    /// error: a spend never gives budget back.
    async fn spend_budget(
        &self,
        dataset: &str,
        period_start: i64,
        epsilon_micro: i64,
        limit_micro: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<SpendOutcome>;

    /// Every recorded spend period of every dataset, `(dataset, period_start, spent_micro)` in
    /// dataset then period order, for the console.
    async fn budgets(&self) -> Result<Vec<(String, i64, i64)>>;

    /// One page of the events with `from <= timestamp < to` (at most `limit`), of every subject, in
    /// time order after `after`: the envelopes only, from one covering index, or with the sealed
    /// records too (`scan`). Events of erased subjects may still be among them until they are
    /// purged (nothing of theirs opens any more); [`AnalyticsStore::family_roots`] leaves erased subjects
    /// out, so readers that count people through it never count them.
    async fn events_in_window(
        &self,
        from: i64,
        to: i64,
        after: Option<WindowCursor>,
        limit: u32,
        scan: Scan,
    ) -> Result<WindowPage>;

    /// The family root of each of these subjects (itself, or the subject it was merged into), as
    /// `(subject, root)`: subjects that are unknown or erased, or whose root is erased, are left
    /// out. Takes a bounded number of queries however many ids are given.
    async fn family_roots(&self, subjects: Vec<String>) -> Result<Vec<(String, String)>>;

    /// When each of these family roots was first and last active: the earliest and latest
    /// timestamp among all its members' events, whatever their window. Roots that are unknown,
    /// erased, not roots, or without events are left out; each root once, in id order.
    async fn family_activity(&self, roots: Vec<String>) -> Result<Vec<FamilyActivity>>;

    /// The wrapped data keys of these family roots' members, as [`SubjectData::keys`] holds them
    /// (`(member, wrapped key)`, the root among them), to open many families' records at once.
    /// Roots that are unknown, erased or not roots are left out; each root once, in id order.
    async fn family_keys(&self, roots: Vec<String>) -> Result<Vec<(String, WrappedKeys)>>;
}
