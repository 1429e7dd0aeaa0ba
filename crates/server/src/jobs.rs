//! Work a serving instance does besides answering requests: recording in the audit log which policy
//! it enforces; advancing data-subject requests and delivering to destinations (claimed per item,
//! so every instance helps); and, on schedules all instances share (whichever finds a run due does
//! it; no leader), signing audit checkpoints, recording lapsed consents, purging erased people's
//! rows and deleting what outlived its retention.

use std::sync::Arc;
use std::time::Duration;

use tactful_domain::audit::AuditEvent;
use tactful_domain::consent::{ConsentEvent, ConsentKind};
use tactful_store::StoreError;

use crate::{AppState, now_millis};

const CHECKPOINT_JOB: &str = "audit-checkpoint";
const EXPIRY_JOB: &str = "consent-expiry";
const RETENTION_JOB: &str = "retention";
/// How often the retention job runs.
const RETENTION_EVERY_MS: i64 = 3_600_000;
/// Rows the retention job and the purge handle per pass (they run again until nothing is left).
const ROWS_PER_PASS: u32 = 10_000;
/// How often requests and deliveries are looked at when nothing wakes the worker.
const WORK_EVERY: Duration = Duration::from_secs(1);
/// How often erased people's rows are purged. Bounds how long their (unreadable) ciphertext stays.
const PURGE_EVERY: Duration = Duration::from_secs(10);
/// How often lapsed consents are looked for.
const EXPIRY_EVERY_MS: i64 = 60_000;
/// Lapsed consents recorded per run at most (the next run takes the rest).
const EXPIRY_BATCH: u32 = 1_000;

/// Records the policy load and starts the periodic jobs. Call once per serving instance.
pub async fn start(state: &Arc<AppState>, checkpoint_every: Duration) -> Result<(), StoreError> {
    let catalog = &state.catalog;
    let loaded = AuditEvent::PolicyLoaded {
        catalog_sha256: catalog.sha256().to_owned(),
        purposes: catalog.purposes().len(),
        properties: catalog.properties().len(),
        jurisdictions: catalog.jurisdictions().len(),
        guardrails: catalog.guardrails().iter().map(|guardrail| guardrail.name.clone()).collect(),
    };
    state.store.audit_append(vec![loaded], now_millis()).await?;
    tokio::spawn(periodic(state.clone(), checkpoint_every.max(Duration::from_secs(1))));
    tokio::spawn(work(state.clone()));
    tokio::spawn(purge(state.clone()));
    if let Some(engine) = &state.personalization {
        engine.sync(state.store.as_ref(), &state.vault).await?;
        tokio::spawn(crate::personalize::run(state.clone(), engine.clone()));
    }
    Ok(())
}

/// Advances requests and delivers to destinations, every second or when woken.
async fn work(state: Arc<AppState>) {
    loop {
        let _ = tokio::time::timeout(WORK_EVERY, state.wake_requests.notified()).await;
        // Until nothing is left: a pass handles a bounded batch.
        loop {
            let advanced = match crate::requests::run_due(&state, now_millis()).await {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(%error, "cannot advance requests; will retry");
                    0
                }
            };
            let delivered = match crate::destinations::deliver_due(&state, now_millis()).await {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(%error, "cannot deliver to destinations; will retry");
                    0
                }
            };
            if advanced == 0 && delivered == 0 {
                break;
            }
        }
    }
}

/// Deletes erased people's rows (they no longer decrypt) in bounded batches.
async fn purge(state: Arc<AppState>) {
    let mut ticks = tokio::time::interval(PURGE_EVERY);
    loop {
        ticks.tick().await;
        loop {
            match state.store.purge_erased(ROWS_PER_PASS).await {
                Ok(report) if report.events == u64::from(ROWS_PER_PASS) => continue,
                Ok(report) => {
                    if report.events > 0 || report.subjects > 0 {
                        tracing::info!(
                            events = report.events,
                            subjects = report.subjects,
                            "purged erased rows"
                        );
                    }
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot purge erased rows; will retry");
                    break;
                }
            }
        }
    }
}

/// The periodic jobs: audit checkpoints every `every`, lapsed consents every minute.
async fn periodic(state: Arc<AppState>, every: Duration) {
    let owner = tactful_vault::new_subject_id().replacen("sub_", "instance_", 1);
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval((every / 4).max(Duration::from_millis(250)));
    loop {
        ticks.tick().await;
        let now = now_millis();
        if claim(&state, CHECKPOINT_JOB, &owner, now, every_ms).await {
            match state.store.audit_checkpoint(now).await {
                Ok(Some(checkpoint)) => {
                    tracing::debug!(size = checkpoint.size, root = %checkpoint.root, "signed an audit checkpoint");
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot sign an audit checkpoint; will retry"),
            }
            release(&state, CHECKPOINT_JOB, &owner).await;
        }
        if claim(&state, RETENTION_JOB, &owner, now, RETENTION_EVERY_MS).await {
            loop {
                match state.store.apply_retention(&state.catalog, now_millis(), ROWS_PER_PASS).await {
                    Ok(report) if report.is_empty() => break,
                    Ok(report) => tracing::info!(?report, "deleted what outlived its retention"),
                    Err(error) => {
                        tracing::warn!(%error, "cannot apply retention; will retry");
                        break;
                    }
                }
            }
            release(&state, RETENTION_JOB, &owner).await;
        }
        if claim(&state, EXPIRY_JOB, &owner, now, EXPIRY_EVERY_MS).await {
            match record_lapsed_consents(&state, now).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "recorded consents whose expiry passed"),
                Err(error) => tracing::warn!(%error, "cannot record lapsed consents; will retry"),
            }
            release(&state, EXPIRY_JOB, &owner).await;
        }
    }
}

async fn claim(state: &AppState, job: &str, owner: &str, now: i64, every_ms: i64) -> bool {
    match state.store.job_claim(job, owner, now, every_ms, every_ms.max(30_000)).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, job, "cannot claim a periodic job; will retry");
            false
        }
    }
}

async fn release(state: &AppState, job: &str, owner: &str) {
    if let Err(error) = state.store.job_release(job, owner).await {
        tracing::warn!(%error, job, "cannot release a periodic job");
    }
}

/// Records an `expired` ledger entry, with its signed receipt and audit entry, for each consent whose
/// expiry has passed (decisions already treat it as expired; this makes the ledger and the person's
/// receipts say so). Returns how many it recorded.
pub async fn record_lapsed_consents(state: &AppState, now: i64) -> Result<usize, StoreError> {
    let lapsed = state.store.lapsed_consents(now, EXPIRY_BATCH).await?;
    for entry in &lapsed {
        let lapsed = &entry.event;
        let expired = ConsentEvent {
            id: tactful_store::new_receipt_id(),
            purpose: lapsed.purpose.clone(),
            kind: ConsentKind::Expired,
            method: lapsed.method,
            at: lapsed.expires_at.unwrap_or(now),
            expires_at: None,
            version: lapsed.version,
            source: Some("expiry".into()),
            jurisdiction: lapsed.jurisdiction.clone(),
        };
        let deliveries = tactful_store::requests::consent_deliveries(
            &state.vault,
            &state.catalog,
            &entry.subject,
            std::slice::from_ref(&expired),
        );
        let (row, audit) =
            tactful_store::signed_consent(&state.vault, &state.catalog, &entry.subject, expired);
        state.store.record_consents(&entry.subject, vec![row], vec![audit], deliveries).await?;
    }
    Ok(lapsed.len())
}
