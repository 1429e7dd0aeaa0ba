//! `POST /v1/insights/query`: aggregate questions about what people do, answered without singling
//! anyone out (k-suppression, and noise spending a budget when the dataset says so), and audited.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use crate::AppState;
use crate::auth::{ApiJson, Caller};
use crate::error::{ApiError, ErrorCode};
use crate::insights::{Asker, Query};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/insights/query", post(query))
}

/// Answers one query for a role that may use the analytics purpose.
async fn query(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(query): ApiJson<Query>,
) -> Result<Json<Value>, ApiError> {
    let analytics = state.catalog.analytics().ok_or_else(|| ApiError::new(ErrorCode::AnalyticsOff))?;
    let purpose =
        state.catalog.purpose_index(&analytics.purpose).ok_or_else(|| ApiError::new(ErrorCode::Internal))?;
    if !state.policy.role_may_use(&caller.role, purpose) {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not use {}", caller.role.name, analytics.purpose),
        ));
    }
    let asker = Asker { actor: &caller.key, role: &caller.role.name };
    Ok(Json(crate::insights::run(&state, asker, &query).await?))
}
