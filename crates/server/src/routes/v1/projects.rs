//! `GET /v1/projects/{write_key}/settings`: the settings document analytics.js fetches before it
//! sends anything, pointing it back at this server. Its tracking plan enables only the events the
//! catalog declares, and the source middleware it enables drops the others before they are sent.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/projects/{write_key}/settings", get(settings))
}

async fn settings(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    if state.catalog.source_by_write_key(&write_key).is_none() {
        return Err(ApiError::new(ErrorCode::UnknownWriteKey));
    }
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("localhost");
    let protocol = match headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    let mut planned = Map::new();
    planned.insert("__default".into(), json!({"enabled": false, "integrations": {}}));
    for event in state.catalog.events() {
        planned.insert(event.name.clone(), json!({"enabled": true, "integrations": {}}));
    }
    let middleware = crate::routes::next_integrations::NAME;
    Ok(Json(json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host}/v1"),
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]}
            }
        },
        "plan": {
            "track": planned,
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}}
        },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        // analytics-next sends plan-blocked events to this server all the same; this middleware
        // (routes/next_integrations.rs) is what drops them in the browser.
        "enabledMiddleware": {middleware: true},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": []
    })))
}
