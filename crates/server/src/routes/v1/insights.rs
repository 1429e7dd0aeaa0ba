//! `POST /v1/insights/query`: aggregate questions about what people do, answered without singling
//! anyone out (k-suppression, and noise spending a budget when the dataset says so), and audited.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use tactful_app::insights::Query;

use crate::AppState;
use crate::auth::{ApiJson, Caller};
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/insights/query", post(query))
}

/// Answers one query for a role that may use the analytics purpose.
async fn query(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(query): ApiJson<Query>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(tactful_app::insights::query(&state, &caller, &query).await?))
}
