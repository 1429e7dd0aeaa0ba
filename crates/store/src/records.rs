//! The records a store takes in and hands back, the same for every backend: events to ingest,
//! what is stored of a subject (sealed), ledger entries, keys, audit entries, items, budgets.

use tactful_domain::catalog::PropertyId;
use tactful_domain::consent::{ConsentEvent, ConsentSignal, ConsentStates};
use tactful_domain::identity::IdentifierKind;
use tactful_domain::minimize::{DropReason, Dropped};
use tactful_domain::segment::MessageType;
use tactful_vault::Blind;

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
    /// `record` as JSON, encoded once where the event is built (the request's thread), so that
    /// resolving a batch only seals it; re-encoded there only when consent withholds part of it.
    pub encoded: Vec<u8>,
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
    /// Whether who the event is about is proven (a server source, or an identity token on a public
    /// one). An unproven event keeps only its anonymousId as an identity: its userId and identifying
    /// traits are claims, kept as the device's data, never linked.
    pub verified: bool,
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
    /// Unproven (a claim from a public write key) on a known person's device, saying who they are
    /// (an identify, traits): nothing of it is stored for them, and of its consent only what
    /// narrows (a withdrawal, GPC) counts.
    Unproven,
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
    /// The message carrying the code, sealed and padded to one length by the caller; written to the
    /// outbox ([`SIGN_IN_TOPIC`](crate::SIGN_IN_TOPIC)) with the code, known address or not.
    pub message: Vec<u8>,
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

/// Totals for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// People: subjects not merged into another.
    pub subjects: u64,
    pub identities: u64,
    pub events: u64,
    pub profile_values: u64,
}

/// Progress of a master-key rotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapBatch {
    /// Keys re-wrapped by this call.
    pub rewrapped: u64,
    /// Where to continue, or `None` when every subject has been visited.
    pub next: Option<String>,
}

impl SubjectData {
    /// Keeps, per path, the newest profile value across the family.
    pub(crate) fn keep_newest_profile_values(&mut self) {
        self.profile.sort_by(|a, b| a.path.cmp(&b.path).then(b.updated_at.cmp(&a.updated_at)));
        self.profile.dedup_by(|later, first| later.path == first.path);
    }
}
