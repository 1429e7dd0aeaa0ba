//! `GET /v1/catalog`: the data map the server enforces (purposes, properties, jurisdictions,
//! guardrails, roles), for any API key; and `GET /v1/signing-key`: the public key receipts and audit
//! checkpoints are signed with, for anyone who wants to check them.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tactful_domain::audit::CHECKPOINT_CONTEXT;
use tactful_domain::receipt::SIGNING_CONTEXT;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/catalog", get(catalog)).route("/v1/signing-key", get(signing_key))
}

async fn catalog(State(state): State<AppState>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let catalog = &state.catalog;
    let brand = catalog.brand();
    Ok(Json(json!({
        "brand": {"name": brand.name, "contact": brand.contact, "policy_url": brand.policy_url},
        "purposes": catalog.purposes().iter().map(|purpose| json!({
            "key": purpose.key,
            "name": purpose.name,
            "description": purpose.description,
            "benefit": purpose.benefit,
            "version": purpose.version,
            "essential": purpose.is_essential(),
        })).collect::<Vec<_>>(),
        "properties": catalog.properties().iter().map(|property| json!({
            "path": property.path,
            "category": property.category,
            "purposes": property.purposes,
            "retention_days": property.retention.as_days(),
            "sensitive": property.sensitive,
            "identifier": property.identifier.as_ref().map(ToString::to_string),
            "description": property.description,
        })).collect::<Vec<_>>(),
        "jurisdictions": catalog.jurisdictions().iter().map(|jurisdiction| json!({
            "key": jurisdiction.key,
            "name": jurisdiction.name,
            "regime": jurisdiction.regime,
            "countries": jurisdiction.countries,
            "channel_consent": jurisdiction.channel_consent,
            "no_personal_data_in_analytics": jurisdiction.no_personal_data_in_analytics,
            "request_deadline_days": jurisdiction.request_deadline_days,
        })).collect::<Vec<_>>(),
        "guardrails": catalog.guardrails().iter().map(|guardrail| json!({
            "name": guardrail.name,
            "description": guardrail.description,
            "categories": guardrail.categories,
            "purposes": guardrail.purposes,
            "jurisdictions": guardrail.jurisdictions,
            "minors": guardrail.minors,
        })).collect::<Vec<_>>(),
        "consent_categories": catalog.consent_categories().iter()
            .map(|(category, purposes)| (category.clone(), json!(purposes)))
            .collect::<serde_json::Map<_, _>>(),
        "roles": catalog.roles().iter().map(|role| json!({
            "name": role.name,
            "description": role.description,
            "purposes": role.purposes,
            "categories": role.categories,
            "requests": role.requests.iter().map(|kind| kind.as_str()).collect::<Vec<_>>(),
            "may": role.may.iter().map(|capability| capability.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "events": catalog.events().iter().map(|event| json!({
            "name": event.name,
            "description": event.description,
        })).collect::<Vec<_>>(),
    })))
}

async fn signing_key(State(state): State<AppState>) -> Json<Value> {
    let key = state.vault.public_key();
    Json(json!({
        "algorithm": "Ed25519",
        "key_id": key.id(),
        "public_key": key.to_base64(),
        "contexts": {"consent_receipt": SIGNING_CONTEXT, "audit_checkpoint": CHECKPOINT_CONTEXT},
        // The same key for JOSE libraries, which check the `jws` of each receipt with it.
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": key.to_base64url(), "alg": "EdDSA", "use": "sig", "kid": key.id()},
    }))
}
