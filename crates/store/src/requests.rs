//! What the store keeps of data-subject requests and of erasure: request records with their history,
//! deliveries to destinations with every attempt, legal holds, suppressions, and the reports of the
//! background work (purge, retention). Types only; each backend implements `RequestStore` and
//! `DeliveryStore` with them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Catalog, DestinationMessage};
use tactful_domain::consent::ConsentEvent;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_vault::{Blind, Vault};

use crate::{Result, StoreError};

/// A request as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// `req_…`, random.
    pub id: String,
    /// The subject's family root when the request was made; `None` for a self-service request from
    /// someone not known, and for lifting the suppression of an erased person.
    pub subject: Option<String>,
    pub kind: RequestKind,
    pub status: RequestStatus,
    /// Who made it: `api`, `cli`, `self_service`.
    pub source: String,
    pub received_at: i64,
    pub due_at: i64,
    /// Set when the deadline was extended (once), with the reason the person is told.
    pub extension_reason: Option<String>,
    pub completed_at: Option<i64>,
    /// Parameters without personal values (the purpose objected to, whether to suppress, the path
    /// to rectify).
    pub details: Value,
    /// A personal parameter (the rectified value), sealed under the subject's key.
    pub sealed: Option<Vec<u8>>,
    /// Steps done, in order: a resumed request skips them.
    pub steps: Vec<String>,
    /// Keyed hash of the verification code of a self-service request.
    pub verification: Option<[u8; 32]>,
    pub verification_attempts: u32,
    pub verification_expires: Option<i64>,
    /// While set and in the future, one worker (or one download) holds the request.
    pub lease_until: Option<i64>,
    pub updated_at: i64,
}

impl RequestRecord {
    pub fn done(&self, step: &str) -> bool {
        self.steps.iter().any(|done| done == step)
    }
}

/// One line of a request's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHistoryEntry {
    pub at: i64,
    pub status: RequestStatus,
    pub note: String,
}

/// Where a delivery to a destination stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Acknowledged,
    /// Never acknowledged within the destination's horizon.
    GaveUp,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Acknowledged => "acknowledged",
            DeliveryStatus::GaveUp => "gave_up",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [DeliveryStatus::Pending, DeliveryStatus::Acknowledged, DeliveryStatus::GaveUp]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// What one destination was told about one request (or one consent change), and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The request id, or the consent receipt id of a consent change.
    pub request: String,
    pub destination: String,
    /// What it was told (`erase`, `consent_changed`, …).
    pub message: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub acknowledged_at: Option<i64>,
}

/// How an attempt at a delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The destination answered 2xx.
    Acknowledged { status_code: u16 },
    /// It did not; try again at `retry_at`, or give up when that is `None`.
    Failed { status_code: Option<u16>, error: String, retry_at: Option<i64> },
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub at: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

/// A request with everything that happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    pub record: RequestRecord,
    pub history: Vec<RequestHistoryEntry>,
    pub deliveries: Vec<DeliveryRecord>,
}

/// What creating a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewRequest {
    Created,
    /// An open request of the same kind for the same person exists: its id.
    Duplicate(String),
}

/// A change to a request, applied only if the request is still in `expect` (another worker or a
/// person may have moved it meanwhile).
#[derive(Debug, Clone, Default)]
pub struct RequestUpdate {
    pub expect: Option<RequestStatus>,
    pub status: Option<RequestStatus>,
    /// A step now done.
    pub step: Option<String>,
    /// A line for the history (written with the status, or alone).
    pub note: Option<String>,
    /// An extended deadline and its reason.
    pub extend_to: Option<(i64, String)>,
    pub verification_attempts: Option<u32>,
    /// Forget the verification code (verified, or failed).
    pub clear_verification: bool,
    /// `Some(None)` releases the lease.
    pub lease_until: Option<Option<i64>>,
    pub audit: Vec<AuditEvent>,
}

/// What [`RequestUpdate::apply`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub status_changed: bool,
    /// The store settled the request itself: it was to wait on destinations, and none was pending.
    pub settled_here: bool,
}

impl RequestUpdate {
    /// Applies the update to a loaded request, the same on every backend. `settled` is the final
    /// status the request's deliveries allow (`None` while one is pending); it is asked only for a
    /// move to waiting on destinations. Refuses a move the domain does not allow.
    pub fn apply(
        &self,
        record: &mut RequestRecord,
        settled: impl FnOnce() -> Result<Option<RequestStatus>>,
        now: i64,
    ) -> Result<Applied> {
        let mut applied = Applied::default();
        let mut status = self.status;
        if status == Some(RequestStatus::WaitingOnDestinations)
            && let Some(settled) = settled()?
        {
            status = Some(settled);
            applied.settled_here = true;
        }
        if let Some(next) = status
            && next != record.status
        {
            // A request settled on the way to waiting on destinations passes through that status.
            let via_waiting =
                applied.settled_here && record.status.may_become(RequestStatus::WaitingOnDestinations);
            if !record.status.may_become(next) && !via_waiting {
                return Err(StoreError::Internal(format!(
                    "request {} cannot go from {} to {}",
                    record.id,
                    record.status.as_str(),
                    next.as_str()
                )));
            }
            record.status = next;
            applied.status_changed = true;
            if next.is_final() {
                record.completed_at = Some(now);
                record.lease_until = None;
            }
        }
        if let Some(step) = &self.step
            && !record.done(step)
        {
            record.steps.push(step.clone());
        }
        if let Some((due, reason)) = &self.extend_to {
            record.due_at = *due;
            record.extension_reason = Some(reason.clone());
        }
        if let Some(attempts) = self.verification_attempts {
            record.verification_attempts = attempts;
        }
        if self.clear_verification {
            record.verification = None;
            record.verification_expires = None;
        }
        if let Some(lease) = self.lease_until {
            record.lease_until = lease;
        }
        Ok(applied)
    }
}

/// A message to a destination, written with the change that causes it and delivered later by
/// whichever instance claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub request: String,
    pub destination: String,
    pub message: String,
    /// The body to send, sealed under the vault's outbox key (it may carry identifiers).
    pub payload: Vec<u8>,
}

/// A record kept under legal hold through an erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    /// Derived from the event's source and dedupe key, so holding the same event twice is harmless.
    pub id: String,
    pub subject: String,
    pub source: String,
    pub timestamp: i64,
    pub categories: Vec<String>,
    pub retain_until: i64,
    /// The held part of the record, sealed under the legal-hold key.
    pub sealed: Vec<u8>,
}

/// What an erasure should do once the legal holds are written.
#[derive(Debug, Clone, Default)]
pub struct ShredPlan {
    /// The erase request.
    pub request: String,
    /// Events received up to this time were examined for legal holds; a later one means the holds
    /// must be looked at again before the key goes.
    pub held_through: i64,
    /// Keep the family's blind indexes as suppressions, so their later events are dropped.
    pub suppress: bool,
    /// What destinations are told, written in the same transaction.
    pub deliveries: Vec<NewDelivery>,
    pub audit: Vec<AuditEvent>,
}

/// What a shred did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShredOutcome {
    /// The family's keys are gone: every sealed value is unreadable.
    Shredded { members: Vec<String>, identifiers: u64, suppressed: u64 },
    /// An event arrived after `held_through`: look for legal holds again, then shred.
    NewEvents { received_through: i64 },
    /// An access or export of the family is being downloaded; shred when it ends.
    ExportInFlight,
    /// The family was erased already (a resumed request).
    AlreadyErased,
}

/// The physical purge of erased subjects' rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub events: u64,
    /// Subjects whose rows are all gone.
    pub subjects: u64,
}

/// What the retention job deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub events_deleted: u64,
    /// Events whose shorter-lived properties were removed.
    pub events_trimmed: u64,
    pub profile_values_deleted: u64,
    pub legal_holds_deleted: u64,
}

impl RetentionReport {
    pub fn is_empty(&self) -> bool {
        *self == RetentionReport::default()
    }

    /// Counts another batch's deletions in this report.
    pub fn add(&mut self, other: &RetentionReport) {
        self.events_deleted += other.events_deleted;
        self.events_trimmed += other.events_trimmed;
        self.profile_values_deleted += other.profile_values_deleted;
        self.legal_holds_deleted += other.legal_holds_deleted;
    }
}

/// A suppressed identifier: its blind index and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub blind: Blind,
    pub kind: String,
}

/// Where a page of a family's events ends: `(timestamp, source, dedupe)`.
pub type EventCursor = (i64, String, [u8; 16]);

/// What a delivery says, sealed in its outbox message under the vault's outbox key. The wire body
/// the destination receives is built from it when it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryPayload {
    /// The request id, or the consent receipt id of a consent change; destinations dedupe on it.
    pub request: String,
    pub destination: String,
    /// `erase`, `consent_changed`, …
    pub message: String,
    pub subject: String,
    pub issued_at: i64,
    /// The identifiers the destination may know, every one of each kind, captured when the message
    /// was written (erasure destroys them right after); `None` means "look them up when sending".
    #[serde(deserialize_with = "every_identifier")]
    pub identifiers: Option<BTreeMap<String, Vec<String>>>,
    /// What else the message says (the purpose and new status of a consent change, …).
    pub details: Value,
}

const DELIVERY_SEAL: &str = "delivery";

/// Reads the identifiers of a payload, also as written before a kind could hold several (one value
/// per kind), so messages queued by an older version are still sent whole.
fn every_identifier<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<BTreeMap<String, Vec<String>>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let read: Option<BTreeMap<String, OneOrMany>> = Option::deserialize(deserializer)?;
    Ok(read.map(|identifiers| {
        identifiers
            .into_iter()
            .map(|(kind, values)| match values {
                OneOrMany::One(value) => (kind, vec![value]),
                OneOrMany::Many(values) => (kind, values),
            })
            .collect()
    }))
}

impl DeliveryPayload {
    pub fn seal(&self, vault: &Vault) -> Vec<u8> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        vault.outbox_key().seal(DELIVERY_SEAL, &[], &bytes)
    }

    pub fn open(vault: &Vault, sealed: &[u8]) -> Result<DeliveryPayload> {
        let bytes = vault.outbox_key().open(DELIVERY_SEAL, &[], sealed)?;
        serde_json::from_slice(&bytes)
            .map_err(|error| StoreError::Internal(format!("a delivery payload: {error}")))
    }

    pub fn into_delivery(self, vault: &Vault) -> NewDelivery {
        NewDelivery {
            payload: self.seal(vault),
            request: self.request,
            destination: self.destination,
            message: self.message,
        }
    }
}

/// The deliveries of consent changes of `subject`: one per change and destination that receives
/// consent changes. Identifiers are looked up when they are sent.
pub fn consent_deliveries(
    vault: &Vault,
    catalog: &Catalog,
    subject: &str,
    events: &[ConsentEvent],
) -> Vec<NewDelivery> {
    let mut deliveries = Vec::new();
    for destination in catalog.destinations() {
        if !destination.receives.contains(&DestinationMessage::ConsentChanged) {
            continue;
        }
        for event in events {
            let payload = DeliveryPayload {
                request: event.id.clone(),
                destination: destination.key.clone(),
                message: DestinationMessage::ConsentChanged.as_str().to_owned(),
                subject: subject.to_owned(),
                issued_at: event.at,
                identifiers: None,
                details: serde_json::json!({
                    "purpose": event.purpose,
                    "status": event.kind.as_str(),
                    "method": event.method.as_str(),
                    "version": event.version,
                    "at": tactful_domain::segment::format_time(event.at),
                    "expires_at": event.expires_at.map(tactful_domain::segment::format_time),
                }),
            };
            deliveries.push(payload.into_delivery(vault));
        }
    }
    deliveries
}
