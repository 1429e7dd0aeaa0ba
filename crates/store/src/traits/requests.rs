//! Data-subject requests and carrying them out: request records and their lifecycle, legal holds,
//! erasure (shred, then purge), restriction, suppression, rectification, and enforced retention.

use async_trait::async_trait;
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::Catalog;
use tactful_vault::Blind;

use crate::{
    LegalHold, NewRequest, PurgeReport, RequestRecord, RequestUpdate, RequestView, Result, RetentionReport,
    ShredOutcome, ShredPlan, Suppression,
};

/// Data-subject requests and the rights they carry out.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores a new request (with its first history line and audit entries), unless the same person
    /// has an open request of the same kind.
    async fn create_request(&self, record: RequestRecord, audit: Vec<AuditEvent>) -> Result<NewRequest>;

    /// A request with its history and deliveries.
    async fn request(&self, id: &str) -> Result<Option<RequestView>>;

    /// Requests, newest first: all, or those of one subject's family.
    async fn requests(&self, subject: Option<&str>, limit: u32) -> Result<Vec<RequestRecord>>;

    /// Requests not final yet (received, verifying, running, waiting on destinations), soonest
    /// deadline first: the privacy team's queue, where an old open request must not hide behind
    /// newer finished ones.
    async fn open_requests(&self, limit: u32) -> Result<Vec<RequestRecord>>;

    /// Applies `update` if the request is still in `update.expect`; false if it moved meanwhile. A
    /// move to `waiting_on_destinations` lands on `completed` or `partially_completed` at once when
    /// no delivery is pending.
    async fn update_request(&self, id: &str, update: RequestUpdate) -> Result<bool>;

    /// Claims up to `limit` requests for a worker to advance (received or running, not held by
    /// another worker) for `lease_ms`.
    async fn claim_requests(&self, now: i64, lease_ms: i64, limit: u32) -> Result<Vec<RequestRecord>>;

    /// Writes legal holds (writing one twice is harmless).
    async fn hold(&self, holds: Vec<LegalHold>) -> Result<()>;

    /// The legal holds of a (possibly erased) subject's family.
    async fn legal_holds(&self, subject: &str) -> Result<Vec<LegalHold>>;

    /// Erases a subject's family at once: destroys their keys (crypto-shredding), removes their
    /// identifiers (optionally keeping them as suppressions), profile values and consent records,
    /// and writes the deliveries of the erasure, in one transaction. Event rows are left for
    /// [`RequestStore::purge_erased`]; they no longer decrypt.
    async fn shred(&self, subject: &str, plan: ShredPlan, now: i64) -> Result<ShredOutcome>;

    /// Physically deletes up to `limit` event rows of erased subjects.
    async fn purge_erased(&self, limit: u32) -> Result<PurgeReport>;

    /// Restricts (or lifts the restriction of) processing for a subject's family.
    async fn set_restricted(&self, subject: &str, restricted: bool, audit: Vec<AuditEvent>) -> Result<()>;

    /// Adds suppressions; returns how many were new.
    async fn suppress(&self, identifiers: Vec<Suppression>, audit: Vec<AuditEvent>) -> Result<u64>;

    /// Lifts suppressions; returns how many there were.
    async fn unsuppress(&self, blinds: Vec<Blind>, audit: Vec<AuditEvent>) -> Result<u64>;

    /// Sets one profile value of a subject (rectification), sealing `value` (JSON) under its key.
    async fn set_profile_value(
        &self,
        subject: &str,
        path: &str,
        value: Vec<u8>,
        at: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<()>;

    /// Deletes up to `limit` of what outlived its declared retention (events, properties within
    /// events, profile values, legal holds), and audits what it did.
    async fn apply_retention(&self, catalog: &Catalog, now: i64, limit: u32) -> Result<RetentionReport>;
}
