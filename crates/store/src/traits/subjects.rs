//! Finding a person and reading what is held about them, still sealed: by identifier, their
//! family's state (attributes and consent ledger), their data whole or a page of events at a time.

use async_trait::async_trait;
use tactful_vault::Blind;

use crate::{EventCursor, Result, StoredEvent, SubjectData, SubjectState};

/// Reading subjects. A merged subject's reads gather its whole family (see ARCHITECTURE.md).
#[async_trait]
pub trait SubjectStore: Send + Sync {
    /// The subject an identifier points to, following merges.
    async fn subject_by_identifier(&self, blind: Blind) -> Result<Option<String>>;

    /// The attributes and consent ledger of a subject's family, if it exists.
    async fn subject_state(&self, subject: &str) -> Result<Option<SubjectState>>;

    /// The states of these family roots (those that exist), for deciding many people's consent at
    /// once: for each, what [`SubjectStore::subject_state`] says of it. Ids that are unknown, erased or
    /// merged into another subject (not roots) are left out; each id is answered once, in id order.
    /// Takes a bounded number of queries however many ids are given.
    async fn subject_states(&self, subjects: Vec<String>) -> Result<Vec<SubjectState>>;

    /// Everything stored about a subject (and the subjects merged into it), sealed.
    async fn subject_data(&self, subject: &str) -> Result<Option<SubjectData>>;

    /// Everything about a subject's family except its events (keys, identities, profile).
    async fn subject_summary(&self, subject: &str) -> Result<Option<SubjectData>>;

    /// A page of a family's events in `(timestamp, source, dedupe)` order after `after`, for
    /// exports that stream.
    async fn events_page(
        &self,
        subject: &str,
        after: Option<EventCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// Ids of subjects not erased (family members included), in id order after `after`: to find
    /// who an audit pseudonym names (breach response).
    async fn subject_ids(&self, after: Option<String>, limit: u32) -> Result<Vec<String>>;
}
