//! The tamper-evident audit log as stored: gapless appends, reads in order or by subject, and the
//! signed checkpoints that let anyone verify it (`crate::audit::verify`).

use async_trait::async_trait;
use tactful_domain::audit::{AuditEvent, Checkpoint};

use crate::{Result, StoredAuditEntry};

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends entries to the audit log; returns their positions.
    async fn audit_append(&self, events: Vec<AuditEvent>, at: i64) -> Result<Vec<u64>>;

    /// Audit entries after position `after`, in order.
    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<StoredAuditEntry>>;

    /// The audit entries about the subject with this pseudonym, newest first.
    async fn audit_for_subject(&self, pseudonym: &str, limit: u32) -> Result<Vec<StoredAuditEntry>>;

    /// Signs the log's current head (if it grew since the last checkpoint) and returns the newest
    /// checkpoint, if the log has any entry.
    async fn audit_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>>;

    /// Every stored checkpoint, oldest first.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>>;
}
