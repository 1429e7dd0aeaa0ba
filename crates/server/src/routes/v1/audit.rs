//! The audit log for the brand's privacy team: `GET /v1/audit/verify` checks every entry against
//! the signed checkpoints, `GET|POST /v1/audit/checkpoints` lists and signs checkpoints for an
//! outside party to keep. Entries name subjects only by pseudonym.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tactful_domain::audit::Report;
use tactful_domain::encoding::hex;
use tactful_store::audit::verify as verify_log;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::{AppState, now_millis};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/audit/verify", get(verify))
        .route("/v1/audit/checkpoints", get(checkpoints).post(checkpoint))
}

/// A verification report as the API and the CLI show it.
pub fn report_json(report: &Report) -> Value {
    json!({
        "intact": report.ok(),
        "entries": report.entries,
        "root": hex(&report.root),
        "checkpoints_checked": report.checkpoints,
        "first_bad_entry": report.first_bad_entry(),
        "first_bad_entry_in_words": report.first_bad_entry_in_words(),
        "problems": report.problems.iter().map(|problem| json!({
            "entry": problem.first_entry(),
            "description": problem.describe(),
        })).collect::<Vec<_>>(),
    })
}

/// `GET /v1/audit/verify`: the log checked against its own stored checkpoints. An auditor who kept
/// checkpoints elsewhere checks against those with `tactful audit verify --checkpoint FILE`.
async fn verify(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let report = verify_log(state.store.as_ref(), &[state.vault.public_key()], Vec::new()).await?;
    Ok(Json(report_json(&report)))
}

/// `GET /v1/audit/checkpoints`: every signed checkpoint, oldest first.
async fn checkpoints(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let checkpoints = state.store.audit_checkpoints().await?;
    Ok(Json(json!({"checkpoints": checkpoints})))
}

/// `POST /v1/audit/checkpoints`: signs the log's head now (if it grew) and returns the newest
/// checkpoint, ready to hand to an outside party.
async fn checkpoint(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let checkpoint = state.store.audit_checkpoint(now_millis()).await?;
    Ok(Json(json!({"checkpoint": checkpoint})))
}
