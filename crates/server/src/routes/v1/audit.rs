//! The audit log for the brand's privacy team: `GET /v1/audit/verify` checks every entry against
//! the signed checkpoints, `GET|POST /v1/audit/checkpoints` lists and signs checkpoints for an
//! outside party to keep. Entries name subjects only by pseudonym.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use tactful_app::audit_log;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audit/verify", get(verify))
        .route("/v1/audit/checkpoints", get(checkpoints).post(checkpoint))
}

/// `GET /v1/audit/verify`: the log checked against its own stored checkpoints. An auditor who kept
/// checkpoints elsewhere checks against those with `tactful audit verify --checkpoint FILE`.
async fn verify(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(audit_log::verify_for(&state, &caller).await?))
}

/// `GET /v1/audit/checkpoints`: every signed checkpoint, oldest first.
async fn checkpoints(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(audit_log::checkpoints(&state, &caller).await?))
}

/// `POST /v1/audit/checkpoints`: signs the log's head now (if it grew) and returns the newest
/// checkpoint, ready to hand to an outside party.
async fn checkpoint(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(audit_log::checkpoint(&state, &caller).await?))
}
