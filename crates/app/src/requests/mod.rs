//! The request engine: creates data-subject requests (checking what each kind needs, the deadline
//! of the person's regime, and for self-service requests a one-time code), and carries them out as
//! persistent jobs. Each run claims due requests with a lease, does the steps not yet recorded as
//! done, and records each step as it completes, so a restarted server resumes where it stopped and
//! a failed step is retried without redoing finished ones.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Capability, DestinationMessage};
use tactful_domain::consent::ConsentMethod;
use tactful_domain::identity::IdentifierKind;
use tactful_domain::request::{
    self as rules, RequestKind, RequestStatus, VERIFICATION_ATTEMPTS, VERIFICATION_TTL_MS,
};
use tactful_store::{
    DeliveryPayload, FamilyKeys, LegalHold, NewDelivery, NewRequest, RequestRecord, RequestUpdate,
    ShredOutcome, ShredPlan, StoreError, Suppression,
};
use tactful_vault::Zeroizing;

use crate::destinations::{current_identifiers, deliveries_for};
use crate::error::{AppError, ErrorCode};
use crate::notify::Notification;
use crate::{App, Caller, Change};

mod create;
mod erase;
mod run;
mod view;

pub use create::{Submission, create, extend, submit, verify};
pub use erase::hold;
pub use run::run_due;
pub use view::{details, list, show};

/// How long a worker holds a claimed request.
const LEASE_MS: i64 = 60_000;
/// Requests advanced per pass.
const BATCH: u32 = 8;
/// Rows of an erased person deleted right after the erasure (the background purge does the rest).
const PURGE_AT_ONCE: u32 = 50_000;
/// Events opened per page while looking for what the law requires to keep.
const HOLD_PAGE: u32 = 500;

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

fn audit(app: &App, record: &RequestRecord, note: &str) -> AuditEvent {
    AuditEvent::Request {
        request: record.id.clone(),
        request_kind: record.kind.as_str().to_owned(),
        subject: record
            .subject
            .as_deref()
            .map(|subject| app.vault.subject_pseudonym(subject))
            .unwrap_or_default(),
        status: record.status.as_str().to_owned(),
        note: note.to_owned(),
    }
}

async fn fail(app: &App, id: &str, from: RequestStatus, why: &str) -> Result<(), StoreError> {
    if let Some(view) = app.store.request(id).await? {
        let mut failed = view.record;
        failed.status = RequestStatus::Failed;
        let update = RequestUpdate {
            expect: Some(from),
            status: Some(RequestStatus::Failed),
            clear_verification: true,
            note: Some(why.to_owned()),
            audit: vec![audit(app, &failed, why)],
            ..RequestUpdate::default()
        };
        app.store.update_request(id, update).await?;
    }
    Ok(())
}
