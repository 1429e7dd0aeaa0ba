//! Erasure: what the law requires is kept first (re-sealed under the legal-hold key), then the
//! family's keys are destroyed in one commit, every engine is told, and destinations are told.

use super::run::{Next, RETRY_AFTER_DOWNLOAD_MS, deliveries, step};
use super::*;

/// Erasure: keep what the law requires (re-sealed under the legal-hold key), capture what
/// destinations must be told, destroy the family's keys, and wait on destinations.
pub(super) async fn erase(
    app: &App,
    record: &mut RequestRecord,
    subject: &str,
    now: i64,
) -> Result<Next, StoreError> {
    if !record.done("shredded") {
        let suppress = record.details["suppress"].as_bool().unwrap_or(false);
        for _ in 0..3 {
            let Some(held_through) = hold(app, subject).await? else {
                // Already erased (a resumed request whose shred committed but was not recorded).
                break;
            };
            let identifiers = current_identifiers(app, subject).await?.unwrap_or_default();
            let plan = ShredPlan {
                request: record.id.clone(),
                held_through,
                suppress,
                deliveries: deliveries(app, record, subject, DestinationMessage::Erase, identifiers, now),
                audit: Vec::new(),
            };
            match app.store.shred(subject, plan, now).await? {
                ShredOutcome::Shredded { .. } | ShredOutcome::AlreadyErased => break,
                // An event arrived while holding: look again.
                ShredOutcome::NewEvents { .. } => continue,
                ShredOutcome::ExportInFlight => {
                    if !record.done("download_awaited") {
                        let note = "waiting for a download of this person's data to finish";
                        step(app, record, None, Some("download_awaited"), note).await?;
                    }
                    return Ok(Next::RetryAt(now + RETRY_AFTER_DOWNLOAD_MS));
                }
            }
        }
        if app.store.subject_summary(subject).await?.is_some() {
            return Err(StoreError::Conflict("events kept arriving during the erasure; trying again".into()));
        }
        let note = if suppress {
            "erased: keys destroyed, identifiers suppressed"
        } else {
            "erased: keys destroyed"
        };
        step(app, record, None, Some("shredded"), note).await?;
        // The rows no longer decrypt; delete them now rather than at the next background purge.
        if let Err(error) = app.store.purge_erased(PURGE_AT_ONCE).await {
            tracing::warn!(%error, "cannot purge erased rows now; the background purge will");
        }
    }
    if !record.done("forgotten") {
        app.tell(subject, Change::Erased).await?;
        step(app, record, None, Some("forgotten"), "removed from models and analytics inputs").await?;
    }
    step(app, record, Some(RequestStatus::WaitingOnDestinations), None, "waiting on destinations").await?;
    Ok(Next::Done)
}

/// Copies what the law requires to keep out of the family's events, under the legal-hold key.
/// Returns the newest `received_at` looked at, or `None` if the family is already erased.
pub async fn hold(app: &App, subject: &str) -> Result<Option<i64>, StoreError> {
    let Some(data) = app.store.subject_summary(subject).await? else { return Ok(None) };
    if tactful_domain::request::legal_hold_properties(&app.catalog).is_empty() {
        // Nothing is ever held, but events received meanwhile still count.
        let mut newest = 0;
        let mut after = None;
        loop {
            let page = app.store.events_page(subject, after, HOLD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.timestamp, last.source.clone(), last.dedupe));
            newest = page.iter().map(|event| event.received_at).fold(newest, i64::max);
        }
        return Ok(Some(newest));
    }
    let keys = FamilyKeys::unwrap(&app.vault, &data.keys)?;
    let mut newest = 0;
    let mut after = None;
    loop {
        let page = app.store.events_page(subject, after, HOLD_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.timestamp, last.source.clone(), last.dedupe));
        let mut holds = Vec::new();
        for stored in &page {
            newest = newest.max(stored.received_at);
            let event = keys.open_event(stored)?;
            let Value::Object(record) = &event.record else { continue };
            let Some(part) = rules::held_part(&app.catalog, record, stored.timestamp) else { continue };
            let id = format!("lh_{}_{}", stored.source, tactful_domain::encoding::hex(&stored.dedupe));
            let body = json!({"type": stored.kind, "event": stored.name, "data": part.record});
            holds.push(LegalHold {
                sealed: app.vault.legal_hold_key().seal(
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
            app.store.hold(holds).await?;
        }
    }
    Ok(Some(newest))
}
