//! Operations: `/healthz` (the process answers), `/readyz` (the database answers), `/metrics`
//! (OpenMetrics or classic text, for Prometheus), and `/openapi.json` (the OpenAPI 3.1 document of the HTTP API).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use tactful_domain::identity::IdentifierKind;

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
pub const OPENAPI: &str = include_str!("../../openapi.json");

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
    if state.catalog.destinations().iter().any(|destination| destination.forwards()) {
        match tactful_app::forward::report(&state).await {
            Ok(reports) => state.metrics.set_forwarding(&reports),
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot read forwarding figures for /metrics")
            }
        }
    }
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok());
    let format = Format::from_accept(accept);
    ([(header::CONTENT_TYPE, format.content_type())], state.metrics.render_as(format))
}

/// The document as this deployment answers: the catalog's own purposes, channels and identifier
/// kinds in place of the generic patterns, so a client (or a fuzzer) sends what the server takes.
async fn openapi(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut document: Value = serde_json::from_str(OPENAPI).map_err(ApiError::internal)?;
    let catalog = &state.catalog;
    let schemas = &mut document["components"]["schemas"];
    let purposes: Vec<&str> = catalog.purposes().iter().map(|purpose| purpose.key.as_str()).collect();
    narrow(&mut schemas["PurposeKey"], &purposes);
    let objectable: Vec<&str> = catalog
        .purposes()
        .iter()
        .filter(|purpose| !purpose.is_essential())
        .map(|purpose| purpose.key.as_str())
        .collect();
    narrow(&mut schemas["ObjectablePurpose"], &objectable);
    // What `rectify` may correct: the declared traits outside lists.
    let traits: Vec<&str> = catalog
        .properties()
        .iter()
        .map(|property| property.path.as_str())
        .filter(|path| path.starts_with("traits.") && !path.contains("[]"))
        .collect();
    if !traits.is_empty() {
        let path = &mut schemas["NewRequest"]["properties"]["path"];
        narrow(path, &traits);
    }
    let newest = catalog.purposes().iter().map(|purpose| purpose.version).max().unwrap_or(1);
    schemas["ConsentChange"]["properties"]["version"]["maximum"] = json!(newest);
    if let Some(personalization) = catalog.personalization() {
        narrow(&mut schemas["RecommendationPurpose"], &[personalization.purpose.as_str()]);
        let channels: Vec<&str> =
            personalization.channels.iter().map(|channel| channel.key.as_str()).collect();
        narrow(&mut schemas["ChannelKey"], &channels);
        let purposes: Vec<&str> =
            personalization.channels.iter().map(|channel| channel.purpose.as_str()).collect();
        narrow(&mut schemas["ChannelPurpose"], &purposes);
    }
    // An extension may be as long as the strictest jurisdiction allows (45 days where none is known).
    let allowed = catalog.jurisdictions().iter().map(|j| j.request_extension_days).fold(45, u32::min);
    schemas["RequestExtension"]["properties"]["days"]["maximum"] = json!(allowed);
    let mut kinds = vec!["user_id".to_owned(), "anonymous_id".to_owned()];
    for property in catalog.properties() {
        match &property.identifier {
            Some(IdentifierKind::Custom(kind)) if !kinds.contains(kind) => kinds.push(kind.clone()),
            _ => {}
        }
    }
    let declares =
        |kind: &IdentifierKind| catalog.properties().iter().any(|p| p.identifier.as_ref() == Some(kind));
    let escaped: Vec<String> = kinds.iter().map(|kind| regex_escaped(kind)).collect();
    let mut identifier = format!("({}):[!-~][ -~]{{0,99}}", escaped.join("|"));
    if declares(&IdentifierKind::Email) {
        identifier.push_str(&format!("|email:{EMAIL}"));
    }
    if declares(&IdentifierKind::Phone) {
        identifier.push_str(&format!("|phone:{PHONE}"));
    }
    schemas["IdentifierReference"]["pattern"] = json!(format!("^({identifier})$"));
    schemas["SubjectReference"]["pattern"] = json!(format!("^(sub_[a-z0-9]{{1,64}}|{identifier})$"));
    Ok(Json(document))
}

/// The email addresses and phone numbers the document's patterns admit (as its `Contact`).
const EMAIL: &str = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,4}";
const PHONE: &str = r"\+?[0-9]{5,15}";

/// A generic key schema narrowed to the keys this catalog declares (left as it is if none).
fn narrow(schema: &mut Value, keys: &[&str]) {
    if keys.is_empty() {
        return;
    }
    if let Some(object) = schema.as_object_mut() {
        object.remove("pattern");
        object.insert("enum".to_owned(), json!(keys));
    }
}

fn regex_escaped(text: &str) -> String {
    text.chars()
        .flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', c] })
        .collect()
}
