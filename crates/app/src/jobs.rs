//! Work a serving instance does besides answering requests: recording in the audit log which policy
//! it enforces; advancing data-subject requests, delivering to destinations and forwarding events
//! (claimed per item or per destination, so every instance helps); and, on schedules all instances share (whichever finds a run due does
//! it; no leader), signing audit checkpoints, recording lapsed consents, purging erased people's
//! rows, forgetting expired links, sessions and rate-limit windows, and deleting what outlived its
//! retention.

use std::sync::Arc;
use std::time::Duration;

use tactful_domain::audit::AuditEvent;
use tactful_store::StoreError;

use crate::App;

const CHECKPOINT_JOB: &str = "audit-checkpoint";
const EXPIRY_JOB: &str = "consent-expiry";
const RETENTION_JOB: &str = "retention";
const SESSIONS_JOB: &str = "expired-sessions";
/// How often expired links and sessions are forgotten (they are refused from their expiry on).
const SESSIONS_EVERY_MS: i64 = 600_000;
const RATE_LIMITS_JOB: &str = "rate-limits-expiry";
/// How often expired rate-limit windows are deleted.
const RATE_LIMITS_EVERY_MS: i64 = 600_000;
/// How often the retention job runs.
const RETENTION_EVERY_MS: i64 = 3_600_000;
/// Rows the retention job and the purge handle per pass (they run again until nothing is left).
const ROWS_PER_PASS: u32 = 10_000;
/// How often requests and deliveries are looked at when nothing wakes the worker.
const WORK_EVERY: Duration = Duration::from_secs(1);
/// How often forwarding looks for new events when every destination is caught up (bounds the lag
/// an idle destination adds).
const FORWARD_IDLE: Duration = Duration::from_millis(200);
/// How often erased people's rows are purged. Bounds how long their (unreadable) ciphertext stays.
const PURGE_EVERY: Duration = Duration::from_secs(10);
/// How often lapsed consents are looked for.
const EXPIRY_EVERY_MS: i64 = 60_000;

/// Records the policy load and starts the periodic jobs. Call once per serving instance.
pub async fn start(app: &Arc<App>, checkpoint_every: Duration) -> Result<(), StoreError> {
    let catalog = &app.catalog;
    let loaded = AuditEvent::PolicyLoaded {
        catalog_sha256: catalog.sha256().to_owned(),
        purposes: catalog.purposes().len(),
        properties: catalog.properties().len(),
        jurisdictions: catalog.jurisdictions().len(),
        guardrails: catalog.guardrails().iter().map(|guardrail| guardrail.name.clone()).collect(),
    };
    app.store.audit_append(vec![loaded], app.now()).await?;
    tokio::spawn(periodic(app.clone(), checkpoint_every.max(Duration::from_secs(1))));
    tokio::spawn(work(app.clone()));
    tokio::spawn(purge(app.clone()));
    if app.catalog.destinations().iter().any(|destination| destination.forwards()) {
        tokio::spawn(forward(app.clone()));
    }
    if let Some(engine) = &app.personalization {
        engine.sync_at(app.store.as_ref(), &app.vault, app.now()).await?;
        tokio::spawn(crate::personalize::run(app.clone(), engine.clone()));
    }
    Ok(())
}

/// Advances requests, delivers to destinations and sends sign-in codes, every second or when woken.
async fn work(app: Arc<App>) {
    loop {
        let _ = tokio::time::timeout(WORK_EVERY, app.wake_requests.notified()).await;
        // Until nothing is left: a pass handles a bounded batch.
        loop {
            let advanced = match crate::requests::run_due(&app, app.now()).await {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(%error, "cannot advance requests; will retry");
                    0
                }
            };
            let delivered = match crate::destinations::deliver_due(&app, app.now()).await {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(%error, "cannot deliver to destinations; will retry");
                    0
                }
            };
            let codes = match crate::preferences::send_sign_in_codes(&app, app.now()).await {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(%error, "cannot send sign-in codes; will retry");
                    0
                }
            };
            if advanced == 0 && delivered == 0 && codes == 0 {
                break;
            }
        }
    }
}

/// Forwards committed events to the destinations that receive them: batch after batch while there
/// is work, then a look every [`FORWARD_IDLE`].
async fn forward(app: Arc<App>) {
    loop {
        match crate::forward::forward_due(&app).await {
            Ok(0) => tokio::time::sleep(FORWARD_IDLE).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot forward events; will retry");
                tokio::time::sleep(WORK_EVERY).await;
            }
        }
    }
}

/// Deletes erased people's rows (they no longer decrypt) in bounded batches.
async fn purge(app: Arc<App>) {
    let mut ticks = tokio::time::interval(PURGE_EVERY);
    loop {
        ticks.tick().await;
        loop {
            match app.store.purge_erased(ROWS_PER_PASS).await {
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

/// The periodic jobs: audit checkpoints every `every`, lapsed consents every minute, retention
/// hourly, expired links and sessions every ten minutes.
async fn periodic(app: Arc<App>, every: Duration) {
    let owner = tactful_vault::new_subject_id().replacen("sub_", "instance_", 1);
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval((every / 4).max(Duration::from_millis(250)));
    loop {
        ticks.tick().await;
        let now = app.now();
        if claim(&app, CHECKPOINT_JOB, &owner, now, every_ms).await {
            match app.store.audit_checkpoint(now).await {
                Ok(Some(checkpoint)) => {
                    tracing::debug!(size = checkpoint.size, root = %checkpoint.root, "signed an audit checkpoint");
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot sign an audit checkpoint; will retry"),
            }
            release(&app, CHECKPOINT_JOB, &owner).await;
        }
        if claim(&app, RETENTION_JOB, &owner, now, RETENTION_EVERY_MS).await {
            loop {
                match app.store.apply_retention(&app.catalog, app.now(), ROWS_PER_PASS).await {
                    Ok(report) if report.is_empty() => break,
                    Ok(report) => tracing::info!(?report, "deleted what outlived its retention"),
                    Err(error) => {
                        tracing::warn!(%error, "cannot apply retention; will retry");
                        break;
                    }
                }
            }
            release(&app, RETENTION_JOB, &owner).await;
        }
        if claim(&app, SESSIONS_JOB, &owner, now, SESSIONS_EVERY_MS).await {
            loop {
                match app.store.purge_web_sessions(app.now(), ROWS_PER_PASS).await {
                    Ok(count) if count == u64::from(ROWS_PER_PASS) => continue,
                    Ok(count) => {
                        tracing::debug!(count, "forgot expired links and sessions");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot forget expired links and sessions; will retry");
                        break;
                    }
                }
            }
            release(&app, SESSIONS_JOB, &owner).await;
        }
        if claim(&app, EXPIRY_JOB, &owner, now, EXPIRY_EVERY_MS).await {
            match crate::consents::record_lapsed(&app, now).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "recorded consents whose expiry passed"),
                Err(error) => tracing::warn!(%error, "cannot record lapsed consents; will retry"),
            }
            release(&app, EXPIRY_JOB, &owner).await;
        }
        if claim(&app, RATE_LIMITS_JOB, &owner, now, RATE_LIMITS_EVERY_MS).await {
            match app.store.forget_expired(now).await {
                Ok(0) => {}
                Ok(count) => tracing::debug!(count, "deleted expired rate-limit windows"),
                Err(error) => tracing::warn!(%error, "cannot delete expired rate-limit windows; will retry"),
            }
            release(&app, RATE_LIMITS_JOB, &owner).await;
        }
    }
}

async fn claim(app: &App, job: &str, owner: &str, now: i64, every_ms: i64) -> bool {
    match app.store.job_claim(job, owner, now, every_ms, every_ms.max(30_000)).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, job, "cannot claim a periodic job; will retry");
            false
        }
    }
}

async fn release(app: &App, job: &str, owner: &str) {
    if let Err(error) = app.store.job_release(job, owner).await {
        tracing::warn!(%error, job, "cannot release a periodic job");
    }
}
