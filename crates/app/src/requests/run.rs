//! Carrying requests out: each pass claims due requests with a lease and does the steps not yet
//! recorded as done, recording each as it completes; then tells destinations and waits on them.

use super::*;

/// What a request needs after a pass.
pub(super) enum Next {
    /// Nothing from the worker: it is finished, or waiting on destinations or on the person.
    Done,
    /// Another pass, not before this time.
    RetryAt(i64),
}

/// Wait before retrying a request whose step failed.
const RETRY_AFTER_FAILURE_MS: i64 = 5_000;
/// Wait before looking again at an erasure held off by a download.
pub(super) const RETRY_AFTER_DOWNLOAD_MS: i64 = 2_000;

/// Advances the requests that are due; returns how many were looked at.
pub async fn run_due(app: &App, now: i64) -> Result<usize, StoreError> {
    let claimed = app.store.claim_requests(now, LEASE_MS, BATCH).await?;
    let count = claimed.len();
    for record in claimed {
        let id = record.id.clone();
        let next = match advance(app, record, now).await {
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
        app.store
            .update_request(&id, RequestUpdate { lease_until: Some(lease), ..RequestUpdate::default() })
            .await?;
    }
    Ok(count)
}

/// Moves the record (and the stored request) to `status`, if it is still where it was.
pub(super) async fn step(
    app: &App,
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
        audit: vec![audit(app, &next, note)],
        ..RequestUpdate::default()
    };
    let applied = app.store.update_request(&record.id, update).await?;
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

async fn advance(app: &App, mut record: RequestRecord, now: i64) -> Result<Next, StoreError> {
    if record.status == RequestStatus::Verifying {
        // Claimed only once its code expired unused.
        fail(app, &record.id, RequestStatus::Verifying, "the verification code expired unused").await?;
        return Ok(Next::Done);
    }
    if record.status == RequestStatus::Received
        && !step(app, &mut record, Some(RequestStatus::Running), None, "started").await?
    {
        return Ok(Next::Done);
    }
    let Some(subject) = record.subject.clone() else {
        match record.kind {
            RequestKind::Unsuppress => unsuppress(app, &mut record, now).await?,
            // A self-service request from someone Tactful does not know: nothing is held.
            _ => {
                let note = "nothing is held about this person";
                step(app, &mut record, Some(RequestStatus::Completed), None, note).await?;
            }
        }
        return Ok(Next::Done);
    };
    if app.store.subject_summary(&subject).await?.is_none() && record.kind != RequestKind::Erase {
        step(
            app,
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
                app,
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
                let data = app
                    .store
                    .subject_summary(&subject)
                    .await?
                    .ok_or_else(|| StoreError::Internal("the subject vanished".into()))?;
                let root = data
                    .keys
                    .iter()
                    .find(|(member, _)| *member == data.subject)
                    .ok_or_else(|| StoreError::Internal("no root key".into()))?;
                let key = app.vault.subject_key(&root.0, &root.1)?;
                let sealed = record
                    .sealed
                    .clone()
                    .ok_or_else(|| StoreError::Internal("a rectification without its value".into()))?;
                let value = key.open("request", &[record.id.as_bytes()], &sealed)?;
                let audit_entry = audit(app, &record, &format!("rectified {path}"));
                app.store.set_profile_value(&subject, &path, value.to_vec(), now, vec![audit_entry]).await?;
                app.tell(&subject, Change::Data).await?;
                step(app, &mut record, None, Some("rectified"), &format!("{path} corrected")).await?;
            }
            propagate(app, &mut record, &subject, DestinationMessage::Rectify, now).await?;
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
                app.store.set_restricted(&subject, restricted, vec![audit(app, &record, note)]).await?;
                app.tell(&subject, Change::Restriction).await?;
                step(app, &mut record, None, Some(done), note).await?;
            }
            let message =
                if restricted { DestinationMessage::Restrict } else { DestinationMessage::Unrestrict };
            propagate(app, &mut record, &subject, message, now).await?;
        }
        RequestKind::Object => {
            if !record.done("withdrawn") {
                let purpose = record.details["purpose"].as_str().unwrap_or_default().to_owned();
                let source = format!("request:{}", record.id);
                crate::consents::withdraw(app, &subject, &purpose, ConsentMethod::Api, source).await?;
                step(app, &mut record, None, Some("withdrawn"), &format!("{purpose} withdrawn")).await?;
            }
            propagate(app, &mut record, &subject, DestinationMessage::Object, now).await?;
        }
        RequestKind::Suppress => {
            if !record.done("suppressed") {
                let data = app
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
                app.store.suppress(identifiers, vec![audit(app, &record, "identifiers suppressed")]).await?;
                step(
                    app,
                    &mut record,
                    None,
                    Some("suppressed"),
                    &format!("{count} identifiers suppressed: their events are dropped"),
                )
                .await?;
            }
            propagate(app, &mut record, &subject, DestinationMessage::Suppress, now).await?;
        }
        RequestKind::Erase => return super::erase::erase(app, &mut record, &subject, now).await,
        RequestKind::Unsuppress => unsuppress(app, &mut record, now).await?,
    }
    Ok(Next::Done)
}

/// Tells destinations (with the identifiers each may know) and waits on them; settles at once when
/// none receives this kind of message.
async fn propagate(
    app: &App,
    record: &mut RequestRecord,
    subject: &str,
    message: DestinationMessage,
    now: i64,
) -> Result<(), StoreError> {
    if !record.done("propagated") {
        let identifiers = current_identifiers(app, subject).await?.unwrap_or_default();
        let deliveries = deliveries(app, record, subject, message, identifiers, now);
        app.store.enqueue_deliveries(deliveries, now).await?;
        step(app, record, None, Some("propagated"), "destinations told").await?;
    }
    step(app, record, Some(RequestStatus::WaitingOnDestinations), None, "waiting on destinations").await?;
    Ok(())
}

pub(super) fn deliveries(
    app: &App,
    record: &RequestRecord,
    subject: &str,
    message: DestinationMessage,
    identifiers: crate::destinations::Identifiers,
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
    deliveries_for(&app.vault, &app.catalog, message, &template)
}

async fn unsuppress(app: &App, record: &mut RequestRecord, now: i64) -> Result<(), StoreError> {
    let sealed = record
        .sealed
        .clone()
        .ok_or_else(|| StoreError::Internal("an unsuppression without identifiers".into()))?;
    let bytes = app.vault.outbox_key().open("request", &[record.id.as_bytes()], &sealed)?;
    let identifiers: BTreeMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|error| StoreError::Internal(error.to_string()))?;
    if !record.done("unsuppressed") {
        let blinds = identifiers.iter().map(|(kind, value)| app.vault.blind(kind, value)).collect();
        let lifted = app.store.unsuppress(blinds, vec![audit(app, record, "suppression lifted")]).await?;
        step(app, record, None, Some("unsuppressed"), &format!("{lifted} identifiers no longer suppressed"))
            .await?;
    }
    if !record.done("propagated") {
        let every = identifiers.into_iter().map(|(kind, value)| (kind, vec![value])).collect();
        let deliveries = deliveries(app, record, "", DestinationMessage::Unsuppress, every, now);
        app.store.enqueue_deliveries(deliveries, now).await?;
        step(app, record, None, Some("propagated"), "destinations told").await?;
    }
    step(app, record, Some(RequestStatus::WaitingOnDestinations), None, "waiting on destinations").await?;
    Ok(())
}
