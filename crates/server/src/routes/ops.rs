//! Operations: `/healthz` (the process answers), `/readyz` (the database answers), `/metrics`
//! (OpenMetrics text, for Prometheus), and `/openapi.json` (the OpenAPI 3.1 document of the HTTP API).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

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

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if state.catalog.destinations().iter().any(|destination| destination.forwards()) {
        match tactful_app::forward::report(&state).await {
            Ok(reports) => state.metrics.set_forwarding(&reports),
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot read forwarding figures for /metrics")
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
