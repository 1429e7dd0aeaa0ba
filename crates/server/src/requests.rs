//! The request engine: creates data-subject requests (checking what each kind needs, the deadline
//! of the person's regime, and for self-service requests a one-time code), and carries them out as
//! persistent jobs. Each run claims due requests with a lease, does the steps not yet recorded as
//! done, and records each step as it completes, so a restarted server resumes where it stopped and
//! a failed step is retried without redoing finished ones.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::DestinationMessage;
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod};
use tactful_domain::identity::IdentifierKind;
use tactful_domain::request::{
    self as rules, RequestKind, RequestStatus, VERIFICATION_ATTEMPTS, VERIFICATION_TTL_MS,
};
use tactful_store::{
    DeliveryPayload, FamilyKeys, LegalHold, NewDelivery, NewRequest, RequestRecord, RequestUpdate,
    ShredOutcome, ShredPlan, StoreError, Suppression,
};
use tactful_vault::Zeroizing;

use crate::AppState;
use crate::destinations::{current_identifiers, deliveries_for};
use crate::error::{ApiError, ErrorCode};
use crate::notify::Notification;

/// How long a worker holds a claimed request.
const LEASE_MS: i64 = 60_000;
/// Requests advanced per pass.
const BATCH: u32 = 8;
/// How long a finished access or export package can be downloaded.
pub const DOWNLOAD_FOR_MS: i64 = 7 * 86_400_000;
/// Rows of an erased person deleted right after the erasure (the background purge does the rest).
const PURGE_AT_ONCE: u32 = 50_000;
/// Events opened per page while looking for what the law requires to keep.
const HOLD_PAGE: u32 = 500;

/// What must forget an erased person besides the store: personalization models and analytics inputs
/// implement this (their issues must); erasure calls every hook, and records that it did, before it
/// waits on destinations.
pub trait Forget: Send + Sync {
    fn forget<'a>(
        &'a self,
        subject: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;
}

/// Where a self-service request's code goes.
pub struct Contact {
    pub kind: IdentifierKind,
    pub value: Zeroizing<String>,
}

/// A request to make.
pub struct NewRequestInput {
    pub kind: RequestKind,
    /// The family root it is about; `None` for a self-service request from someone not (or no
    /// longer) known, and for lifting a suppression of an erased person.
    pub subject: Option<String>,
    /// `api`, `cli` or `self_service`.
    pub source: String,
    /// What the kind needs: `{"path"}` to rectify, `{"purpose"}` to object, `{"suppress"}` to erase.
    pub details: Value,
    /// The corrected value of a rectification.
    pub value: Option<Value>,
    /// Identifiers whose suppression is lifted (`unsuppress`), normalized.
    pub identifiers: Vec<(IdentifierKind, String)>,
    /// For a self-service request: where to send the code that proves it is theirs.
    pub verify: Option<Contact>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::with_message(ErrorCode::InvalidRequest, message)
}

/// Checks and stores a request, sends the code of a self-service one, and starts it. Returns its id.
pub async fn create(state: &AppState, input: NewRequestInput) -> Result<String, ApiError> {
    let now = crate::now_millis();
    let id = tactful_vault::new_subject_id().replacen("sub_", "req_", 1);
    let mut details = json!({});
    let mut sealed = None;
    match input.kind {
        RequestKind::Rectify => {
            let path = input.details.get("path").and_then(Value::as_str).unwrap_or_default();
            let declared = state.catalog.property_by_path(path).is_some_and(|property| {
                property.path.starts_with("traits.") && !property.path.contains("[]")
            });
            if !declared {
                return Err(invalid(format!(
                    "{path:?} is not a profile property the catalog declares (traits.…)"
                )));
            }
            let Some(value) = &input.value else {
                return Err(invalid("say the corrected value (\"value\")"));
            };
            let subject = input.subject.as_deref().ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
            let data = state
                .store
                .subject_summary(subject)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
            // Sealed under the person's own key: erasing them makes the correction unreadable too.
            let root = data
                .keys
                .iter()
                .find(|(member, _)| *member == data.subject)
                .ok_or_else(|| ApiError::internal("no key for the family root"))?;
            let key = state.vault.subject_key(&root.0, &root.1).map_err(ApiError::internal)?;
            sealed = Some(key.seal("request", &[id.as_bytes()], value.to_string().as_bytes()));
            details = json!({"path": path});
        }
        RequestKind::Object => {
            let Some(purpose) = input.details.get("purpose").and_then(Value::as_str) else {
                return Err(invalid("say which purpose the person objects to (\"purpose\")"));
            };
            let Some(declared) = state.catalog.purpose(purpose) else {
                return Err(ApiError::with_message(
                    ErrorCode::UnknownPurpose,
                    format!("the catalog declares no purpose {purpose:?}"),
                ));
            };
            if declared.is_essential() {
                return Err(invalid(format!(
                    "{purpose} is needed to provide the service itself; to stop it, the person can ask for erasure"
                )));
            }
            details = json!({"purpose": purpose});
        }
        RequestKind::Erase => {
            details =
                json!({"suppress": input.details.get("suppress").and_then(Value::as_bool).unwrap_or(false)});
        }
        RequestKind::Unsuppress => {
            if input.identifiers.is_empty() {
                return Err(invalid("name the identifiers to lift the suppression of (\"identifiers\")"));
            }
            let identifiers: BTreeMap<String, String> = input
                .identifiers
                .iter()
                .map(|(kind, value)| (kind.as_str().to_owned(), value.clone()))
                .collect();
            // Lifting concerns someone who may be erased: what destinations must be told is sealed
            // under the deployment's outbox key, not a person's.
            sealed = Some(state.vault.outbox_key().seal(
                "request",
                &[id.as_bytes()],
                &serde_json::to_vec(&identifiers).unwrap_or_default(),
            ));
            details = json!({"kinds": identifiers.keys().collect::<Vec<_>>()});
        }
        _ => {}
    }
    let needs_subject = !matches!(input.kind, RequestKind::Unsuppress) && input.verify.is_none();
    if needs_subject && input.subject.is_none() {
        return Err(ApiError::new(ErrorCode::UnknownSubject));
    }
    let jurisdiction = match &input.subject {
        Some(subject) => state.store.subject_state(subject).await?.and_then(|found| found.jurisdiction),
        None => None,
    };
    let due_at = rules::due_at(now, jurisdiction.as_deref().and_then(|key| state.catalog.jurisdiction(key)));
    let mut record = RequestRecord {
        id: id.clone(),
        subject: input.subject.clone(),
        kind: input.kind,
        status: RequestStatus::Received,
        source: input.source.clone(),
        received_at: now,
        due_at,
        extension_reason: None,
        completed_at: None,
        details,
        sealed,
        steps: Vec::new(),
        verification: None,
        verification_attempts: 0,
        verification_expires: None,
        lease_until: None,
        updated_at: now,
    };
    let code = input.verify.as_ref().map(|_| {
        let (code, hash) = state.vault.new_verification_code(&id);
        record.status = RequestStatus::Verifying;
        record.verification = Some(hash);
        record.verification_expires = Some(now + VERIFICATION_TTL_MS);
        code
    });
    let audit = vec![audit(state, &record, "received")];
    match state.store.create_request(record, audit).await? {
        NewRequest::Created => {}
        NewRequest::Duplicate(existing) => {
            return Err(ApiError::with_message(
                ErrorCode::DuplicateRequest,
                format!("this person already has an open {} request: {existing}", input.kind.as_str()),
            )
            .details(json!({"request": existing})));
        }
    }
    if let (Some(contact), Some(code)) = (&input.verify, code)
        && let Err(error) = send_code(state, &id, contact, &code).await
    {
        tracing::warn!(request = %id, %error, "cannot send a verification code");
        fail(state, &id, RequestStatus::Verifying, "the verification code could not be sent").await?;
        return Err(ApiError {
            internal: Some(error),
            ..ApiError::with_message(
                ErrorCode::Unavailable,
                "the verification code could not be sent; try again later",
            )
        });
    }
    Ok(id)
}

async fn send_code(state: &AppState, id: &str, contact: &Contact, code: &str) -> Result<(), String> {
    let brand = &state.catalog.brand().name;
    let body = Zeroizing::new(format!(
        "Your code to confirm your request to {brand}: {} {}\n\nIt expires in {} minutes. If you did not ask for this, ignore this message: nothing happens without the code.",
        &code[..4],
        &code[4..],
        VERIFICATION_TTL_MS / 60_000
    ));
    let notification = Notification {
        channel: contact.kind.as_str().to_owned(),
        to: contact.value.clone(),
        reference: id.to_owned(),
        subject: format!("Your code for {brand}"),
        body,
    };
    state.notifier.send(&notification).await
}

/// Checks a self-service request's code. A right code starts the request; a wrong one counts, and
/// the request fails after [`VERIFICATION_ATTEMPTS`] wrong codes or once the code expired.
pub async fn verify(state: &AppState, id: &str, code: &str) -> Result<RequestStatus, ApiError> {
    let now = crate::now_millis();
    let view = state.store.request(id).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest))?;
    let record = view.record;
    if record.status != RequestStatus::Verifying {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!("this request is {}, not waiting for a code", record.status.as_str()),
        ));
    }
    if record.verification_expires.is_none_or(|end| end <= now) {
        fail(state, id, RequestStatus::Verifying, "the verification code expired").await?;
        return Err(ApiError::with_message(ErrorCode::WrongCode, "the code expired; make the request again"));
    }
    if record.verification != Some(state.vault.verification_code_hash(id, code)) {
        let attempts = record.verification_attempts + 1;
        if attempts >= VERIFICATION_ATTEMPTS {
            fail(state, id, RequestStatus::Verifying, "too many wrong verification codes").await?;
            return Err(ApiError::with_message(
                ErrorCode::WrongCode,
                "too many wrong codes; the request was closed, make it again",
            ));
        }
        let update = RequestUpdate {
            expect: Some(RequestStatus::Verifying),
            verification_attempts: Some(attempts),
            note: Some(format!("wrong verification code ({attempts} of {VERIFICATION_ATTEMPTS})")),
            ..RequestUpdate::default()
        };
        state.store.update_request(id, update).await?;
        return Err(ApiError::with_message(
            ErrorCode::WrongCode,
            format!("that is not the code; {} tries left", VERIFICATION_ATTEMPTS - attempts),
        ));
    }
    // Proven theirs: now it may take the person's one open request of its kind, if that is free.
    if let Some(subject) = &record.subject {
        let open = state.store.requests(Some(subject), 1000).await?;
        if let Some(other) = open
            .iter()
            .find(|other| other.id != record.id && other.kind == record.kind && other.status.holds_the_slot())
        {
            let note = format!("already being handled as {}", other.id);
            fail(state, id, RequestStatus::Verifying, &note).await?;
            return Err(ApiError::with_message(
                ErrorCode::DuplicateRequest,
                format!("this person already has an open {} request: {}", record.kind.as_str(), other.id),
            )
            .details(json!({"request": other.id})));
        }
    }
    let mut verified = record.clone();
    verified.status = RequestStatus::Running;
    let update = RequestUpdate {
        expect: Some(RequestStatus::Verifying),
        status: Some(RequestStatus::Running),
        clear_verification: true,
        note: Some("verified: the person confirmed it is theirs".into()),
        audit: vec![audit(state, &verified, "verified")],
        ..RequestUpdate::default()
    };
    if !state.store.update_request(id, update).await? {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "the request changed meanwhile; look at it again",
        ));
    }
    Ok(RequestStatus::Running)
}

/// Extends a request's deadline once, within what the person's law allows, saying why.
pub async fn extend(state: &AppState, id: &str, days: u32, reason: &str) -> Result<i64, ApiError> {
    let view = state.store.request(id).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest))?;
    let record = view.record;
    let jurisdiction = match &record.subject {
        Some(subject) => state.store.subject_state(subject).await?.and_then(|found| found.jurisdiction),
        None => None,
    };
    let due = rules::extend(
        record.due_at,
        record.status,
        record.extension_reason.is_some(),
        jurisdiction.as_deref().and_then(|key| state.catalog.jurisdiction(key)),
        days,
        reason,
    )
    .map_err(|refused| invalid(refused.to_string()))?;
    let note = format!("deadline extended by {days} days: {}", reason.trim());
    let update = RequestUpdate {
        expect: Some(record.status),
        extend_to: Some((due, reason.trim().to_owned())),
        note: Some(note.clone()),
        audit: vec![audit(state, &record, &note)],
        ..RequestUpdate::default()
    };
    if !state.store.update_request(id, update).await? {
        return Err(invalid("the request changed meanwhile; look at it again"));
    }
    Ok(due)
}

fn audit(state: &AppState, record: &RequestRecord, note: &str) -> AuditEvent {
    AuditEvent::Request {
        request: record.id.clone(),
        request_kind: record.kind.as_str().to_owned(),
        subject: record
            .subject
            .as_deref()
            .map(|subject| state.vault.subject_pseudonym(subject))
            .unwrap_or_default(),
        status: record.status.as_str().to_owned(),
        note: note.to_owned(),
    }
}

async fn fail(state: &AppState, id: &str, from: RequestStatus, why: &str) -> Result<(), StoreError> {
    if let Some(view) = state.store.request(id).await? {
        let mut failed = view.record;
        failed.status = RequestStatus::Failed;
        let update = RequestUpdate {
            expect: Some(from),
            status: Some(RequestStatus::Failed),
            clear_verification: true,
            note: Some(why.to_owned()),
            audit: vec![audit(state, &failed, why)],
            ..RequestUpdate::default()
        };
        state.store.update_request(id, update).await?;
    }
    Ok(())
}

/// What a request needs after a pass.
enum Next {
    /// Nothing from the worker: it is finished, or waiting on destinations or on the person.
    Done,
    /// Another pass, not before this time.
    RetryAt(i64),
}

/// Wait before retrying a request whose step failed.
const RETRY_AFTER_FAILURE_MS: i64 = 5_000;
/// Wait before looking again at an erasure held off by a download.
const RETRY_AFTER_DOWNLOAD_MS: i64 = 2_000;

/// Advances the requests that are due; returns how many were looked at.
pub async fn run_due(state: &AppState, now: i64) -> Result<usize, StoreError> {
    let claimed = state.store.claim_requests(now, LEASE_MS, BATCH).await?;
    let count = claimed.len();
    for record in claimed {
        let id = record.id.clone();
        let next = match advance(state, record, now).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(request = %id, %error, "a request step failed; it will be retried");
                Next::RetryAt(now + RETRY_AFTER_FAILURE_MS)
            }
        };
        // The lease holds a request back until its next pass is due (or frees it at once).
        let lease = match next {
            Next::Done => None,
            Next::RetryAt(at) => Some(at),
        };
        state
            .store
            .update_request(&id, RequestUpdate { lease_until: Some(lease), ..RequestUpdate::default() })
            .await?;
    }
    Ok(count)
}

/// Moves the record (and the stored request) to `status`, if it is still where it was.
async fn step(
    state: &AppState,
    record: &mut RequestRecord,
    status: Option<RequestStatus>,
    done: Option<&str>,
    note: &str,
) -> Result<bool, StoreError> {
    let mut next = record.clone();
    if let Some(status) = status {
        next.status = status;
    }
    let update = RequestUpdate {
        expect: Some(record.status),
        status,
        step: done.map(str::to_owned),
        note: Some(note.to_owned()),
        audit: vec![audit(state, &next, note)],
        ..RequestUpdate::default()
    };
    let applied = state.store.update_request(&record.id, update).await?;
    if applied {
        if let Some(status) = status {
            record.status = status;
        }
        if let Some(done) = done {
            record.steps.push(done.to_owned());
        }
    }
    Ok(applied)
}

async fn advance(state: &AppState, mut record: RequestRecord, now: i64) -> Result<Next, StoreError> {
    if record.status == RequestStatus::Verifying {
        // Claimed only once its code expired unused.
        fail(state, &record.id, RequestStatus::Verifying, "the verification code expired unused").await?;
        return Ok(Next::Done);
    }
    if record.status == RequestStatus::Received
        && !step(state, &mut record, Some(RequestStatus::Running), None, "started").await?
    {
        return Ok(Next::Done);
    }
    let Some(subject) = record.subject.clone() else {
        match record.kind {
            RequestKind::Unsuppress => unsuppress(state, &mut record, now).await?,
            // A self-service request from someone Tactful does not know: nothing is held.
            _ => {
                let note = "nothing is held about this person";
                step(state, &mut record, Some(RequestStatus::Completed), None, note).await?;
            }
        }
        return Ok(Next::Done);
    };
    if state.store.subject_summary(&subject).await?.is_none() && record.kind != RequestKind::Erase {
        step(
            state,
            &mut record,
            Some(RequestStatus::Completed),
            None,
            "nothing is held about this person (erased)",
        )
        .await?;
        return Ok(Next::Done);
    }
    match record.kind {
        RequestKind::Access | RequestKind::Export => {
            step(
                state,
                &mut record,
                Some(RequestStatus::Completed),
                Some("packaged"),
                "the package is ready to download for 7 days",
            )
            .await?;
        }
        RequestKind::Rectify => {
            if !record.done("rectified") {
                let path = record.details["path"].as_str().unwrap_or_default().to_owned();
                let data = state
                    .store
                    .subject_summary(&subject)
                    .await?
                    .ok_or_else(|| StoreError::Internal("the subject vanished".into()))?;
                let root = data
                    .keys
                    .iter()
                    .find(|(member, _)| *member == data.subject)
                    .ok_or_else(|| StoreError::Internal("no root key".into()))?;
                let key = state.vault.subject_key(&root.0, &root.1)?;
                let sealed = record
                    .sealed
                    .clone()
                    .ok_or_else(|| StoreError::Internal("a rectification without its value".into()))?;
                let value = key.open("request", &[record.id.as_bytes()], &sealed)?;
                let audit_entry = audit(state, &record, &format!("rectified {path}"));
                state
                    .store
                    .set_profile_value(&subject, &path, value.to_vec(), now, vec![audit_entry])
                    .await?;
                crate::personalize::changed(state, &subject).await?;
                step(state, &mut record, None, Some("rectified"), &format!("{path} corrected")).await?;
            }
            propagate(state, &mut record, &subject, DestinationMessage::Rectify, now).await?;
        }
        RequestKind::Restrict | RequestKind::Unrestrict => {
            let restricted = record.kind == RequestKind::Restrict;
            let done = if restricted { "restricted" } else { "unrestricted" };
            if !record.done(done) {
                let note = if restricted {
                    "processing restricted: only what the law requires"
                } else {
                    "restriction lifted"
                };
                state.store.set_restricted(&subject, restricted, vec![audit(state, &record, note)]).await?;
                crate::personalize::changed(state, &subject).await?;
                step(state, &mut record, None, Some(done), note).await?;
            }
            let message =
                if restricted { DestinationMessage::Restrict } else { DestinationMessage::Unrestrict };
            propagate(state, &mut record, &subject, message, now).await?;
        }
        RequestKind::Object => {
            if !record.done("withdrawn") {
                let purpose = record.details["purpose"].as_str().unwrap_or_default().to_owned();
                let version = state.catalog.purpose(&purpose).map_or(1, |purpose| purpose.version);
                let found = state.store.subject_state(&subject).await?;
                let event = ConsentEvent {
                    id: tactful_store::new_receipt_id(),
                    purpose: purpose.clone(),
                    kind: ConsentKind::Withdrawn,
                    method: ConsentMethod::Api,
                    at: now,
                    expires_at: None,
                    version,
                    source: Some(format!("request:{}", record.id)),
                    jurisdiction: found.and_then(|found| found.jurisdiction),
                };
                let deliveries = tactful_store::requests::consent_deliveries(
                    &state.vault,
                    &state.catalog,
                    &subject,
                    std::slice::from_ref(&event),
                );
                let (row, audit_entry) =
                    tactful_store::signed_consent(&state.vault, &state.catalog, &subject, event);
                state.store.record_consents(&subject, vec![row], vec![audit_entry], deliveries).await?;
                crate::personalize::changed(state, &subject).await?;
                step(state, &mut record, None, Some("withdrawn"), &format!("{purpose} withdrawn")).await?;
            }
            propagate(state, &mut record, &subject, DestinationMessage::Object, now).await?;
        }
        RequestKind::Suppress => {
            if !record.done("suppressed") {
                let data = state
                    .store
                    .subject_summary(&subject)
                    .await?
                    .ok_or_else(|| StoreError::Internal("the subject vanished".into()))?;
                let identifiers: Vec<Suppression> = data
                    .identities
                    .iter()
                    .map(|identity| Suppression { blind: identity.blind, kind: identity.kind.clone() })
                    .collect();
                let count = identifiers.len();
                state
                    .store
                    .suppress(identifiers, vec![audit(state, &record, "identifiers suppressed")])
                    .await?;
                step(
                    state,
                    &mut record,
                    None,
                    Some("suppressed"),
                    &format!("{count} identifiers suppressed: their events are dropped"),
                )
                .await?;
            }
            propagate(state, &mut record, &subject, DestinationMessage::Suppress, now).await?;
        }
        RequestKind::Erase => return erase(state, &mut record, &subject, now).await,
        RequestKind::Unsuppress => unsuppress(state, &mut record, now).await?,
    }
    Ok(Next::Done)
}

/// Tells destinations (with the identifiers each may know) and waits on them; settles at once when
/// none receives this kind of message.
async fn propagate(
    state: &AppState,
    record: &mut RequestRecord,
    subject: &str,
    message: DestinationMessage,
    now: i64,
) -> Result<(), StoreError> {
    if !record.done("propagated") {
        let identifiers = current_identifiers(state, subject).await?.unwrap_or_default();
        let deliveries = deliveries(state, record, subject, message, identifiers, now);
        state.store.enqueue_deliveries(deliveries, now).await?;
        step(state, record, None, Some("propagated"), "destinations told").await?;
    }
    step(state, record, Some(RequestStatus::WaitingOnDestinations), None, "waiting on destinations").await?;
    Ok(())
}

fn deliveries(
    state: &AppState,
    record: &RequestRecord,
    subject: &str,
    message: DestinationMessage,
    identifiers: BTreeMap<String, String>,
    now: i64,
) -> Vec<NewDelivery> {
    let template = DeliveryPayload {
        request: record.id.clone(),
        destination: String::new(),
        message: message.as_str().to_owned(),
        subject: subject.to_owned(),
        issued_at: now,
        identifiers: Some(identifiers),
        details: record.details.clone(),
    };
    deliveries_for(&state.vault, &state.catalog, message, &template)
}

async fn unsuppress(state: &AppState, record: &mut RequestRecord, now: i64) -> Result<(), StoreError> {
    let sealed = record
        .sealed
        .clone()
        .ok_or_else(|| StoreError::Internal("an unsuppression without identifiers".into()))?;
    let bytes = state.vault.outbox_key().open("request", &[record.id.as_bytes()], &sealed)?;
    let identifiers: BTreeMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|error| StoreError::Internal(error.to_string()))?;
    if !record.done("unsuppressed") {
        let blinds = identifiers.iter().map(|(kind, value)| state.vault.blind(kind, value)).collect();
        let lifted = state.store.unsuppress(blinds, vec![audit(state, record, "suppression lifted")]).await?;
        step(
            state,
            record,
            None,
            Some("unsuppressed"),
            &format!("{lifted} identifiers no longer suppressed"),
        )
        .await?;
    }
    if !record.done("propagated") {
        let deliveries = deliveries(state, record, "", DestinationMessage::Unsuppress, identifiers, now);
        state.store.enqueue_deliveries(deliveries, now).await?;
        step(state, record, None, Some("propagated"), "destinations told").await?;
    }
    step(state, record, Some(RequestStatus::WaitingOnDestinations), None, "waiting on destinations").await?;
    Ok(())
}

/// Erasure: keep what the law requires (re-sealed under the legal-hold key), capture what
/// destinations must be told, destroy the family's keys, and wait on destinations.
async fn erase(
    state: &AppState,
    record: &mut RequestRecord,
    subject: &str,
    now: i64,
) -> Result<Next, StoreError> {
    if !record.done("shredded") {
        let suppress = record.details["suppress"].as_bool().unwrap_or(false);
        for _ in 0..3 {
            let Some(held_through) = hold(state, subject).await? else {
                // Already erased (a resumed request whose shred committed but was not recorded).
                break;
            };
            let identifiers = current_identifiers(state, subject).await?.unwrap_or_default();
            let plan = ShredPlan {
                request: record.id.clone(),
                held_through,
                suppress,
                deliveries: deliveries(state, record, subject, DestinationMessage::Erase, identifiers, now),
                audit: Vec::new(),
            };
            match state.store.shred(subject, plan, now).await? {
                ShredOutcome::Shredded { .. } | ShredOutcome::AlreadyErased => break,
                // An event arrived while holding: look again.
                ShredOutcome::NewEvents { .. } => continue,
                ShredOutcome::ExportInFlight => {
                    if !record.done("download_awaited") {
                        let note = "waiting for a download of this person's data to finish";
                        step(state, record, None, Some("download_awaited"), note).await?;
                    }
                    return Ok(Next::RetryAt(now + RETRY_AFTER_DOWNLOAD_MS));
                }
            }
        }
        if state.store.subject_summary(subject).await?.is_some() {
            return Err(StoreError::Conflict("events kept arriving during the erasure; trying again".into()));
        }
        let note = if suppress {
            "erased: keys destroyed, identifiers suppressed"
        } else {
            "erased: keys destroyed"
        };
        step(state, record, None, Some("shredded"), note).await?;
        // The rows no longer decrypt; delete them now rather than at the next background purge.
        if let Err(error) = state.store.purge_erased(PURGE_AT_ONCE).await {
            tracing::warn!(%error, "cannot purge erased rows now; the background purge will");
        }
    }
    if !record.done("forgotten") {
        for hook in &state.forget {
            hook.forget(subject).await?;
        }
        step(state, record, None, Some("forgotten"), "removed from models and analytics inputs").await?;
    }
    step(state, record, Some(RequestStatus::WaitingOnDestinations), None, "waiting on destinations").await?;
    Ok(Next::Done)
}

/// Copies what the law requires to keep out of the family's events, under the legal-hold key.
/// Returns the newest `received_at` looked at, or `None` if the family is already erased.
pub async fn hold(state: &AppState, subject: &str) -> Result<Option<i64>, StoreError> {
    let Some(data) = state.store.subject_summary(subject).await? else { return Ok(None) };
    if tactful_domain::request::legal_hold_properties(&state.catalog).is_empty() {
        // Nothing is ever held, but events received meanwhile still count.
        let mut newest = 0;
        let mut after = None;
        loop {
            let page = state.store.events_page(subject, after, HOLD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.timestamp, last.source.clone(), last.dedupe));
            newest = page.iter().map(|event| event.received_at).fold(newest, i64::max);
        }
        return Ok(Some(newest));
    }
    let keys = FamilyKeys::unwrap(&state.vault, &data.keys)?;
    let mut newest = 0;
    let mut after = None;
    loop {
        let page = state.store.events_page(subject, after, HOLD_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.timestamp, last.source.clone(), last.dedupe));
        let mut holds = Vec::new();
        for stored in &page {
            newest = newest.max(stored.received_at);
            let event = keys.open_event(stored)?;
            let Value::Object(record) = &event.record else { continue };
            let Some(part) = rules::held_part(&state.catalog, record, stored.timestamp) else { continue };
            let id = format!("lh_{}_{}", stored.source, tactful_domain::encoding::hex(&stored.dedupe));
            let body = json!({"type": stored.kind, "event": stored.name, "data": part.record});
            holds.push(LegalHold {
                sealed: state.vault.legal_hold_key().seal(
                    "legal_hold",
                    &[id.as_bytes()],
                    body.to_string().as_bytes(),
                ),
                id,
                subject: stored.subject.clone(),
                source: stored.source.clone(),
                timestamp: stored.timestamp,
                categories: part.categories,
                retain_until: part.retain_until,
            });
        }
        if !holds.is_empty() {
            state.store.hold(holds).await?;
        }
    }
    Ok(Some(newest))
}
