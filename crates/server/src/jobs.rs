//! Work a serving instance does besides answering requests: recording in the audit log which policy
//! it enforces, and signing audit checkpoints on a schedule all instances share (whichever finds a
//! checkpoint due signs it; no leader).

use std::sync::Arc;
use std::time::Duration;

use tactful_domain::audit::AuditEvent;
use tactful_store::StoreError;

use crate::{AppState, now_millis};

const CHECKPOINT_JOB: &str = "audit-checkpoint";

/// Records the policy load and starts the checkpoint job. Call once per serving instance.
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
    let state = state.clone();
    tokio::spawn(checkpoints(state, checkpoint_every.max(Duration::from_secs(1))));
    Ok(())
}

async fn checkpoints(state: Arc<AppState>, every: Duration) {
    let owner = tactful_vault::new_subject_id().replacen("sub_", "instance_", 1);
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval((every / 4).max(Duration::from_millis(250)));
    loop {
        ticks.tick().await;
        let now = now_millis();
        match state.store.job_claim(CHECKPOINT_JOB, &owner, now, every_ms, every_ms.max(30_000)).await {
            Ok(true) => {
                match state.store.audit_checkpoint(now).await {
                    Ok(Some(checkpoint)) => {
                        tracing::debug!(size = checkpoint.size, root = %checkpoint.root, "signed an audit checkpoint");
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "cannot sign an audit checkpoint; will retry"),
                }
                if let Err(error) = state.store.job_release(CHECKPOINT_JOB, &owner).await {
                    tracing::warn!(%error, "cannot release the audit checkpoint job");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot claim the audit checkpoint job; will retry"),
        }
    }
}
