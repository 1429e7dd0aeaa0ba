//! The consent ledger and its signed receipts: recording a person's choices (and what destinations
//! are told of them) in one transaction, and reading the ledger back for exports and expiry.

use async_trait::async_trait;
use tactful_domain::audit::AuditEvent;
use tactful_domain::consent::ConsentEvent;

use crate::{LedgerEntry, NewDelivery, Result, StoredReceipt};

/// The consent ledger and receipts.
#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Appends consent events (with their signed receipts, same ids) to a subject's family ledger,
    /// their audit entries, and what destinations are told of them
    /// ([`consent_deliveries`](crate::requests::consent_deliveries)), in one transaction.
    async fn record_consents(
        &self,
        subject: &str,
        events: Vec<(ConsentEvent, String)>,
        audit: Vec<AuditEvent>,
        deliveries: Vec<NewDelivery>,
    ) -> Result<()>;

    /// The whole consent ledger, for exports, in `(at, id)` order after `after`.
    async fn consent_ledger(&self, after: Option<(i64, String)>, limit: u32) -> Result<Vec<LedgerEntry>>;

    /// Consents given with an expiry that has passed and that are still their family's latest word on
    /// their purpose: what the expiry job records as `expired`. `subject` is the family root.
    async fn lapsed_consents(&self, now: i64, limit: u32) -> Result<Vec<LedgerEntry>>;

    async fn receipt(&self, id: &str) -> Result<Option<StoredReceipt>>;

    /// The receipts of a subject's family, oldest first.
    async fn receipts(&self, subject: &str) -> Result<Vec<StoredReceipt>>;
}
