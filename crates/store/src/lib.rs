//! Storage: the [`Store`] trait the rest of Tactful programs against, and one implementation per
//! database, each owning its migrations. The backend is chosen once, from the database URL, by
//! [`open`]; everything else holds an `Arc<dyn Store>`.
//!
//! **Boundary:** a store writes only what the vault sealed or blinded. Plaintext personal values
//! arrive in [`IngestEvent`]s and leave through [`tactful_vault::SubjectKey::seal`] inside the same
//! transaction that writes them.

pub mod audit;
mod event;
mod model;
mod postgres;
mod read;
pub mod requests;
mod resolve;
mod sqlite;
#[doc(hidden)]
pub mod testing;
mod window;

use std::sync::Arc;

use async_trait::async_trait;
use tactful_domain::audit::{AuditEvent, Checkpoint};
use tactful_domain::catalog::{Catalog, PropertyId};
use tactful_domain::consent::{ConsentEvent, ConsentSignal, ConsentStates};
use tactful_domain::identity::IdentifierKind;
use tactful_domain::minimize::{DropReason, Dropped};
use tactful_domain::policy::Policy;
use tactful_domain::request::RequestStatus;
use tactful_domain::segment::MessageType;
use tactful_vault::{Blind, MasterKeys, Vault, VaultError};

pub use postgres::PostgresStore;
pub use read::{FamilyKeys, OpenEvent, OpenIdentity, OpenProfileValue};
pub use requests::{
    DeliveryAttempt, DeliveryOutcome, DeliveryPayload, DeliveryRecord, DeliveryStatus, EventCursor,
    LegalHold, NewDelivery, NewRequest, PurgeReport, RequestHistoryEntry, RequestRecord, RequestUpdate,
    RequestView, RetentionReport, ShredOutcome, ShredPlan, Suppression,
};
pub use resolve::signed_consent;
pub use sqlite::SqliteStore;
pub use window::{Scan, WindowCursor, WindowEvent, WindowPage};

/// Errors of a store. The first group is about the database as a whole; `Internal` is a bug or
/// corruption and is logged, never shown to clients in detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database URL {0:?} is not supported: use sqlite:PATH (or a file path) or postgres://…")]
    UnsupportedUrl(String),
    #[error(
        "the database schema is at version {found}, newer than this tactful knows ({known}); \
         run a newer tactful, or restore a backup made for this version"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Another instance changed what this write depended on; the write can be retried.
    #[error("a concurrent change conflicted with this write: {0}")]
    Conflict(String),
    #[error("internal storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One identifier of an event, ready for lookup: its blind index and, for storage, its normalized
/// value (which the store seals under the subject's key).
#[derive(Debug, Clone)]
pub struct IdentityClaim {
    pub kind: IdentifierKind,
    pub blind: Blind,
    pub value: String,
    /// The declared property it came from (`traits.email`); `None` for userId and anonymousId. Such
    /// an identifier is bound to a subject only if the property may be stored for them.
    pub property: Option<PropertyId>,
}

/// An accepted event, minimized and ready to store. Produced by the ingestion pipeline.
#[derive(Debug, Clone)]
pub struct IngestEvent {
    /// Catalog key of the source.
    pub source: String,
    /// Keyed hash of the messageId (per source): retries of the same event have the same key.
    pub dedupe: [u8; 16],
    pub kind: MessageType,
    /// Declared `track` event name, stored in clear (names come from the catalog's tracking plan).
    pub name: Option<String>,
    /// When it happened (Unix milliseconds, corrected for clock skew).
    pub timestamp: i64,
    pub received_at: i64,
    /// Identifiers of the event: userId, anonymousId, declared identifier properties.
    pub identities: Vec<IdentityClaim>,
    /// For `alias`: the previousId looked up as a userId and as an anonymousId.
    pub alias_previous: Option<[IdentityClaim; 2]>,
    /// What minimization kept, shaped like the message. The subject's consent may withhold more
    /// of it before it is sealed.
    pub record: serde_json::Map<String, serde_json::Value>,
    /// Declared properties present in `record`.
    pub kept: Vec<PropertyId>,
    /// Profile values to set (identify traits).
    pub profile: Vec<(PropertyId, serde_json::Value)>,
    /// What minimization dropped, to count.
    pub dropped: Vec<Dropped>,
    /// Consent changes the event carries (its consent context, a GPC header): applied to the
    /// subject before the event's own properties are judged.
    pub consent: Vec<ConsentSignal>,
    /// The subject's jurisdiction as this event tells it (from its country trait), if it does.
    pub jurisdiction: Option<String>,
    /// Whether the subject is a minor, as this event tells it (from its birthday trait), if it does.
    pub minor: Option<bool>,
    /// The jurisdiction of the event's source, for subjects first seen here.
    pub default_jurisdiction: Option<String>,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Stored {
        subject: String,
    },
    /// An event with the same messageId from the same source was already stored.
    Duplicate,
    /// One of its identifiers is suppressed (the person asked for their events to be dropped).
    Suppressed,
}

/// One subject's stored data, still sealed; open it with the keys of [`SubjectData::keys`].
#[derive(Debug, Clone, Default)]
pub struct SubjectData {
    pub subject: String,
    /// Wrapped data keys of the subject and of every subject merged into it.
    pub keys: Vec<(String, Vec<u8>)>,
    pub identities: Vec<StoredIdentity>,
    pub profile: Vec<StoredProfileValue>,
    pub events: Vec<StoredEvent>,
}

#[derive(Debug, Clone)]
pub struct StoredIdentity {
    pub subject: String,
    pub kind: String,
    pub blind: Blind,
    pub sealed: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct StoredProfileValue {
    pub subject: String,
    pub path: String,
    pub sealed: Vec<u8>,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub subject: String,
    pub source: String,
    pub dedupe: [u8; 16],
    pub kind: String,
    pub name: Option<String>,
    pub timestamp: i64,
    pub received_at: i64,
    pub sealed: Vec<u8>,
}

/// How many times a path was dropped at ingestion, per source and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCount {
    pub source: String,
    pub path: String,
    pub reason: DropReason,
    pub count: u64,
    pub last_seen: i64,
}

/// What decisions need to know of a subject (its family root): attributes and consent ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectState {
    /// The family root this state is of.
    pub subject: String,
    pub jurisdiction: Option<String>,
    pub minor: bool,
    pub restricted: bool,
    /// The family's consent ledger, oldest first.
    pub ledger: Vec<ConsentEvent>,
}

impl SubjectState {
    pub fn consents(&self) -> ConsentStates {
        ConsentStates::fold(&self.ledger)
    }
}

/// A consent ledger entry with its subject, for exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub subject: String,
    pub event: ConsentEvent,
}

/// A signed consent receipt as stored (its id is the consent event's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    pub id: String,
    pub subject: String,
    pub created_at: i64,
    /// The signed receipt, JSON.
    pub body: String,
}

/// An API key as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id (`key_…`), shown in logs and the audit log.
    pub id: String,
    pub hash: [u8; 32],
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// An audit log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEntry {
    pub seq: u64,
    pub at: i64,
    /// Its JSON text, which the leaf hash covers.
    pub text: String,
    pub leaf: [u8; 32],
}

/// A message of the transactional outbox: written in the same transaction as the change that
/// caused it, delivered later by whichever instance claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: String,
    pub topic: String,
    /// Opaque to the store; callers seal anything personal before enqueueing.
    pub payload: Vec<u8>,
    /// Claims so far, this one included.
    pub attempts: u32,
    pub created_at: i64,
}

/// An item of the brand's catalogue, as recommendations need it. Not personal data: kept in clear.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    /// The brand's id of the item.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// The brand's categories it belongs to.
    pub categories: Vec<String>,
    /// Tagged sensitive by the brand (health, pregnancy, ...): never recommended from inferred behaviour.
    pub sensitive: bool,
    /// Whether it can be recommended now (in stock, on sale).
    pub available: bool,
    /// Price in minor units (cents), if known.
    pub price: Option<i64>,
    /// Free-form display attributes (url, image, ...), a JSON object.
    pub attributes: serde_json::Value,
    /// When the brand last changed it; stored as given.
    pub updated_at: i64,
    /// Assigned by the store on every write (from the model version counter); ignored on input.
    pub version: i64,
}

/// A change to the shared model: a subject's contribution written, or removed.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelChange {
    /// The subject whose contribution changed.
    pub subject: String,
    /// The model version of the change; a subject's later change has a larger one.
    pub version: i64,
    /// The subject's wrapped data key (the `wrapped_key` of its `subjects` row) and the sealed
    /// contribution; `None` when removed.
    pub contribution: Option<(Vec<u8>, Vec<u8>)>,
}

/// What a privacy budget holds for one dataset and period, in millionths of ε: exact integer
/// arithmetic, so many small spends add up to exactly what was spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The most that may be spent in the period (the catalog's, as of the call).
    pub limit_micro: i64,
    /// What was spent so far.
    pub spent_micro: i64,
}

impl Budget {
    /// What may still be spent (never negative, also when a lowered limit is below what was spent).
    pub fn remaining_micro(&self) -> i64 {
        (self.limit_micro - self.spent_micro).max(0)
    }
}

/// What became of a request to spend privacy budget.
#[derive(Debug, Clone, PartialEq)]
pub enum SpendOutcome {
    /// The spend was recorded together with the audit entries; the budget after it.
    Spent(Budget),
    /// Nothing was recorded: spending would exceed the limit. The budget as it is.
    Refused(Budget),
}

/// A one-time code to sign in to the preference center, as stored: its keyed hash, never the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInCode {
    pub id: String,
    /// The family root the code signs in as; `None` when the address was not known (such a code
    /// never works, and nothing tells the asker so).
    pub subject: Option<String>,
    pub hash: [u8; 32],
    pub created_at: i64,
    pub expires_at: i64,
}

/// What trying a sign-in code came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeOutcome {
    /// The right code, used now: sign in as this family root. It never works again.
    Accepted(String),
    /// Not the code (or a code for an unknown address); this many tries are left.
    Wrong { tries_left: u32 },
    /// No such code, or it expired, was used, or ran out of tries.
    Refused,
}

/// A stored sign-in code as backends read it: subject, hash, tries, expiry, when it was used.
pub(crate) type CodeRow = (Option<String>, Vec<u8>, i64, i64, Option<i64>);

/// What trying a sign-in code does, the same on every backend: the outcome, and what to write —
/// `Some(true)` marks the code used, `Some(false)` counts a try, `None` leaves it alone.
pub(crate) fn judge_sign_in(
    row: Option<CodeRow>,
    hash: &[u8; 32],
    now: i64,
    max_attempts: u32,
) -> (CodeOutcome, Option<bool>) {
    let Some((subject, stored, attempts, expires_at, used_at)) = row else {
        return (CodeOutcome::Refused, None);
    };
    let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
    if used_at.is_some() || expires_at <= now || attempts >= max_attempts {
        return (CodeOutcome::Refused, None);
    }
    match subject {
        Some(subject) if stored.as_slice() == hash.as_slice() => (CodeOutcome::Accepted(subject), Some(true)),
        _ => (CodeOutcome::Wrong { tries_left: max_attempts - attempts - 1 }, Some(false)),
    }
}

/// When a family was first and last active (Unix ms of its earliest and latest event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyActivity {
    pub root: String,
    pub first: i64,
    pub last: i64,
}

impl FamilyActivity {
    /// Folds `(root, first, last)` of each member into one per asked root, in root order.
    pub(crate) fn of_members(
        roots: &[String],
        members: impl IntoIterator<Item = (String, Option<i64>, Option<i64>)>,
    ) -> Vec<FamilyActivity> {
        let asked: std::collections::HashSet<&str> = roots.iter().map(String::as_str).collect();
        let mut found: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for (root, first, last) in members {
            let (Some(first), Some(last)) = (first, last) else { continue };
            if !asked.contains(root.as_str()) {
                continue;
            }
            let span = found.entry(root).or_insert((first, last));
            *span = (span.0.min(first), span.1.max(last));
        }
        found.into_iter().map(|(root, (first, last))| FamilyActivity { root, first, last }).collect()
    }
}

/// A family's members and their wrapped data keys, as [`SubjectData::keys`] holds them.
pub type WrappedKeys = Vec<(String, Vec<u8>)>;

/// Groups `(root, member, wrapped key)` rows by asked root, in root order (see [`Store::family_keys`]).
pub(crate) fn keys_of_members(
    roots: &[String],
    members: impl IntoIterator<Item = (String, String, Vec<u8>)>,
) -> Vec<(String, WrappedKeys)> {
    let asked: std::collections::HashSet<&str> = roots.iter().map(String::as_str).collect();
    let mut found: std::collections::BTreeMap<String, WrappedKeys> = Default::default();
    for (root, member, wrapped) in members {
        if !asked.contains(root.as_str()) {
            continue;
        }
        // A member asked for by id in one chunk of ids, and found through its root in another,
        // comes back twice.
        let family = found.entry(root).or_default();
        if !family.iter().any(|(known, _)| *known == member) {
            family.push((member, wrapped));
        }
    }
    found.into_iter().collect()
}

/// Totals for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// People: subjects not merged into another.
    pub subjects: u64,
    pub identities: u64,
    pub events: u64,
    pub profile_values: u64,
}

/// Associated-data labels: where a sealed value belongs. Opening a value under another label,
/// subject or path fails.
pub mod seal_context {
    pub const EVENT: &str = "event";
    pub const PROFILE: &str = "profile";
    pub const IDENTITY: &str = "identity";

    pub fn event<'a>(subject: &'a str, source: &'a str, dedupe: &'a [u8; 16]) -> [&'a [u8]; 3] {
        [subject.as_bytes(), source.as_bytes(), dedupe]
    }

    pub fn profile<'a>(subject: &'a str, path: &'a str) -> [&'a [u8]; 2] {
        [subject.as_bytes(), path.as_bytes()]
    }

    pub fn identity<'a>(subject: &'a str, blind: &'a [u8; 32]) -> [&'a [u8]; 2] {
        [subject.as_bytes(), blind]
    }

    /// A subject's contribution to the shared recommendation model.
    pub const CONTRIBUTION: &str = "contribution";

    /// The associated data of [`CONTRIBUTION`]: the subject it belongs to.
    pub fn contribution(subject: &str) -> [&[u8]; 1] {
        [subject.as_bytes()]
    }
}

/// The storage interface. Every method is safe to call from many tasks and, for backends that
/// support it, from many server instances at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Stores accepted events, applying their consent signals and then `policy` to what each
    /// subject permits. Returns once they are durably committed: acknowledged means stored.
    async fn ingest(&self, events: Vec<IngestEvent>, policy: Arc<Policy>) -> Result<Vec<IngestOutcome>>;

    /// The attributes and consent ledger of a subject's family, if it exists.
    async fn subject_state(&self, subject: &str) -> Result<Option<SubjectState>>;

    /// Appends consent events (with their signed receipts, same ids) to a subject's family ledger,
    /// their audit entries, and what destinations are told of them
    /// ([`requests::consent_deliveries`]), in one transaction.
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

    /// Stores a new API key (its hash) with the audit entry of its creation.
    async fn create_api_key(&self, key: ApiKeyRecord, audit: AuditEvent) -> Result<()>;

    /// The key whose secret hashes to `hash`, if any (revoked and expired ones included).
    async fn api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>>;

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;

    /// Revokes a key; false if there is no such key or it was already revoked.
    async fn revoke_api_key(&self, id: &str, at: i64, audit: AuditEvent) -> Result<bool>;

    /// The subject an identifier points to, following merges.
    async fn subject_by_identifier(&self, blind: Blind) -> Result<Option<String>>;

    /// Everything stored about a subject (and the subjects merged into it), sealed.
    async fn subject_data(&self, subject: &str) -> Result<Option<SubjectData>>;

    /// Durable drop counters of minimization, per source, path and reason.
    async fn drop_counts(&self) -> Result<Vec<DropCount>>;

    async fn stats(&self) -> Result<Stats>;

    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// Adds a message to the outbox, due at once. Returns its id.
    async fn outbox_enqueue(&self, topic: &str, payload: Vec<u8>, now: i64) -> Result<String>;

    /// Claims up to `limit` due messages of `topic` for `lease_ms`. While the lease runs no other
    /// caller — in this process or another instance — claims them; if the claimer dies, they become
    /// due again when the lease ends.
    async fn outbox_claim(
        &self,
        topic: &str,
        limit: u32,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxMessage>>;

    /// Removes a delivered message.
    async fn outbox_complete(&self, id: &str) -> Result<()>;

    /// Releases a message whose delivery failed, due again at `not_before`.
    async fn outbox_retry(&self, id: &str, not_before: i64, error: &str) -> Result<()>;

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

    // ---- Data-subject requests -------------------------------------------------------------------

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
    /// [`Store::purge_erased`]; they no longer decrypt.
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

    /// Ids of subjects not erased (family members included), in id order after `after`: to find
    /// who an audit pseudonym names (breach response).
    async fn subject_ids(&self, after: Option<String>, limit: u32) -> Result<Vec<String>>;

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

    /// Writes deliveries (and their outbox messages) for a request carried out.
    async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>, now: i64) -> Result<()>;

    async fn deliveries(&self, request: &str) -> Result<Vec<DeliveryRecord>>;

    async fn delivery_attempts(&self, request: &str, destination: &str) -> Result<Vec<DeliveryAttempt>>;

    /// Records an attempt at delivering outbox message `outbox_id` (request `request` to
    /// `destination`): completes or reschedules the message, and moves the request to its final
    /// status once no delivery is pending. Returns the request's status if it changed.
    async fn record_delivery(
        &self,
        outbox_id: &str,
        request: &str,
        destination: &str,
        outcome: DeliveryOutcome,
        now: i64,
    ) -> Result<Option<RequestStatus>>;

    /// Deletes up to `limit` of what outlived its declared retention (events, properties within
    /// events, profile values, legal holds), and audits what it did.
    async fn apply_retention(&self, catalog: &Catalog, now: i64, limit: u32) -> Result<RetentionReport>;

    /// Master-key rotation: re-wraps under the current master key up to `limit` subject keys
    /// (and, on the first call, the keyring), in id order after `after`. Call again with the
    /// returned cursor until it is `None`. Safe to run while servers keep writing.
    async fn rewrap_keys(&self, after: Option<String>, limit: u32) -> Result<RewrapBatch>;

    // ---- Personalization: the catalogue and the shared model ------------------------------------
    //
    // Items and contributions take their versions from one counter, incremented in the writing
    // transaction: versions become visible in increasing order, also with many instances writing, so
    // a reader that has seen version v never later finds a change at v or below.

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

    /// The latest version assigned by the model counter (0 when none).
    async fn model_version(&self) -> Result<i64>;

    /// Marks subjects whose contribution must be recomputed (their events or consent changed).
    /// Marking again moves the mark's time forward: to `now`, or past the previous mark if `now` is
    /// not later (clocks of instances differ), so a renewed mark always outlives [`Store::model_clean`]
    /// of what was read before.
    async fn mark_model_dirty(&self, subjects: Vec<String>, now: i64) -> Result<()>;

    /// Marks every subject not erased (a full rebuild). Returns how many.
    async fn mark_all_model_dirty(&self, now: i64) -> Result<u64>;

    /// Up to `limit` dirty marks `(subject, marked_at)`, oldest mark first. Does not remove them.
    async fn model_dirty(&self, limit: u32) -> Result<Vec<(String, i64)>>;

    /// Removes marks that were not renewed since they were read: deletes `(subject, marked_at)` only
    /// where the stored mark is still `<= marked_at`.
    async fn model_clean(&self, marks: Vec<(String, i64)>) -> Result<()>;

    // ---- Private analytics: privacy budgets and aggregate scans -------------------------------------

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

    /// Keeps a one-time sign-in code (its hash), forgetting codes that expired a day ago or more.
    async fn create_sign_in_code(&self, code: SignInCode) -> Result<()>;

    /// Tries code `hash` for sign-in `id` at `now`, atomically across instances: a match of an
    /// unexpired, unused code of a known person with tries left is used up and accepted; anything
    /// else counts as a try; after `max_attempts` tries, or once expired or used, it is refused.
    async fn try_sign_in_code(
        &self,
        id: &str,
        hash: [u8; 32],
        now: i64,
        max_attempts: u32,
    ) -> Result<CodeOutcome>;

    /// The budget of a dataset for a period (spent 0 when nothing was spent yet).
    async fn budget(&self, dataset: &str, period_start: i64, limit_micro: i64) -> Result<Budget>;

    /// Every recorded spend period of every dataset, `(dataset, period_start, spent_micro)` in
    /// dataset then period order, for the console.
    async fn budgets(&self) -> Result<Vec<(String, i64, i64)>>;

    /// One page of the events with `from <= timestamp < to` (at most `limit`), of every subject, in
    /// time order after `after`: the envelopes only, from one covering index, or with the sealed
    /// records too (`scan`). Events of erased subjects may still be among them until they are
    /// purged (nothing of theirs opens any more); [`Store::family_roots`] leaves erased subjects
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

    /// The states of these family roots (those that exist), for deciding many people's consent at
    /// once: for each, what [`Store::subject_state`] says of it. Ids that are unknown, erased or
    /// merged into another subject (not roots) are left out; each id is answered once, in id order.
    /// Takes a bounded number of queries however many ids are given.
    async fn subject_states(&self, subjects: Vec<String>) -> Result<Vec<SubjectState>>;
}

/// Progress of a master-key rotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapBatch {
    /// Keys re-wrapped by this call.
    pub rewrapped: u64,
    /// Where to continue, or `None` when every subject has been visited.
    pub next: Option<String>,
}

/// A store opened with its vault.
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
}

/// Opens the database named by `url` (`sqlite:PATH`, a plain file path, or `postgres://…`), migrates
/// it, and opens the vault with `master` and the database's index root (created on first start).
pub async fn open(url: &str, master: impl Into<MasterKeys>) -> Result<Opened> {
    open_with(url, master, &Options::default()).await
}

/// How to reach the database; only PostgreSQL uses these.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections in the pool of each server instance.
    pub pool_size: u32,
    /// How long to keep retrying an unreachable database at start before giving up.
    pub connect_for: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { pool_size: 16, connect_for: std::time::Duration::from_secs(30) }
    }
}

/// [`open`] with explicit [`Options`].
pub async fn open_with(url: &str, master: impl Into<MasterKeys>, options: &Options) -> Result<Opened> {
    let master = master.into();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (store, vault) = PostgresStore::open(url, master, options).await?;
        return Ok(Opened { store: Arc::new(store), vault });
    }
    let path = sqlite_path(url).ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
    let (store, vault) = SqliteStore::open(path, master).await?;
    Ok(Opened { store: Arc::new(store), vault })
}

/// A blind index read back from the database.
pub(crate) fn blind_from(bytes: Vec<u8>) -> Result<Blind> {
    let array: [u8; 32] =
        bytes.try_into().map_err(|_| StoreError::Internal("a blind index is not 32 bytes".into()))?;
    Ok(Blind(array))
}

/// A dedupe key read back from the database.
pub(crate) fn dedupe_from(bytes: Vec<u8>) -> Result<[u8; 16]> {
    bytes.try_into().map_err(|_| StoreError::Internal("a dedupe key is not 16 bytes".into()))
}

impl SubjectData {
    /// Keeps, per path, the newest profile value across the family.
    pub(crate) fn keep_newest_profile_values(&mut self) {
        self.profile.sort_by(|a, b| a.path.cmp(&b.path).then(b.updated_at.cmp(&a.updated_at)));
        self.profile.dedup_by(|later, first| later.path == first.path);
    }
}

/// Ids per query when many subjects are looked up at once (a bounded statement, a bounded answer).
pub(crate) const SUBJECTS_PER_QUERY: usize = 500;

/// Checks the numbers of a spend before any is written: a spend never gives budget back.
pub(crate) fn check_spend(epsilon_micro: i64, limit_micro: i64) -> Result<()> {
    if epsilon_micro < 0 || limit_micro < 0 {
        return Err(StoreError::Internal(format!(
            "a privacy budget spend of {epsilon_micro} µε against a limit of {limit_micro} µε: neither may be negative"
        )));
    }
    Ok(())
}

/// Unix milliseconds now.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// The statuses of requests not final yet, as SQL literals (see [`Store::open_requests`]).
pub(crate) const OPEN_STATUSES: &str = "'received', 'verifying', 'running', 'waiting_on_destinations'";

/// The lapsed consents (see [`Store::lapsed_consents`]), the same SQL on every backend: `?1` is now,
/// `?2` the limit (PostgreSQL rewrites them as `$1`, `$2`). A consent is judged against its whole
/// family's ledger, since a merged member's later choice is the family's.
pub(crate) const LAPSED_CONSENTS_SQL: &str = "WITH family AS (
     SELECT c.id, c.purpose, c.kind, c.method, c.at, c.expires_at, c.version, c.source, c.jurisdiction,
            COALESCE(s.merged_into, s.id) AS subject_id
     FROM consent_events c JOIN subjects s ON s.id = c.subject_id)
 SELECT id, purpose, kind, method, at, expires_at, version, source, jurisdiction, subject_id FROM family c
 WHERE c.expires_at IS NOT NULL AND c.expires_at <= ?1 AND c.kind IN ('given', 'renewed')
   AND NOT EXISTS (SELECT 1 FROM family l WHERE l.subject_id = c.subject_id AND l.purpose = c.purpose
                   AND (l.at > c.at OR (l.at = c.at AND l.id > c.id)))
 ORDER BY c.expires_at, c.id LIMIT ?2";

/// A random id for a consent event and its receipt.
pub fn new_receipt_id() -> String {
    tactful_vault::new_subject_id().replacen("sub_", "cr_", 1)
}

/// A random id for an outbox message (random, not a sequence: no hot spot on distributed engines).
pub(crate) fn new_message_id() -> String {
    tactful_vault::new_subject_id().replacen("sub_", "msg_", 1)
}

/// The file path of a SQLite URL: `sqlite:PATH`, `sqlite://PATH`, or a plain path.
fn sqlite_path(url: &str) -> Option<&str> {
    if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return (!rest.is_empty()).then_some(rest);
    }
    (!url.contains("://") && !url.is_empty()).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert_eq!(sqlite_path("sqlite:data/tactful.db"), Some("data/tactful.db"));
        assert_eq!(sqlite_path("sqlite:///var/lib/tactful.db"), Some("/var/lib/tactful.db"));
        assert_eq!(sqlite_path("tactful.db"), Some("tactful.db"));
        assert_eq!(sqlite_path("mysql://host/db"), None);
        assert_eq!(sqlite_path("sqlite:"), None);
    }

    #[test]
    fn open_statuses_are_those_not_final() {
        let open: Vec<String> = tactful_domain::request::RequestStatus::ALL
            .into_iter()
            .filter(|status| !status.is_final())
            .map(|status| format!("'{}'", status.as_str()))
            .collect();
        assert_eq!(OPEN_STATUSES, open.join(", "));
    }
}
