//! Operations: `/healthz` (the process answers), `/readyz` (the database answers), `/metrics`
//! (OpenMetrics or classic text, for Prometheus), and `/openapi.json` (the OpenAPI 3.1 document of the HTTP API).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::Format;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

/// The OpenAPI document, written by hand next to `Cargo.toml`; `tests/api/openapi.rs` keeps it true.
const OPENAPI: &str = include_str!("../../openapi.json");

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({"status": "ready", "database": state.store.backend()})))
}

/// OpenMetrics, or the classic text format when the scraper's `Accept` prefers it.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    match tactful_app::jobs::outbox_lag(&state).await {
        Ok(lanes) => state.metrics.set_outbox_lag(&lanes),
        Err(error) => {
            tracing::warn!(%error, "cannot read the outbox lag");
            state.metrics.set_outbox_lag(&[]);
        }
    }
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok());
    let format = Format::from_accept(accept);
    ([(header::CONTENT_TYPE, format.content_type())], state.metrics.render_as(format))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
