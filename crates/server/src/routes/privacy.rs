//! The privacy notice, generated from the catalog the server enforces: `/privacy` for people and
//! `/privacy.json` for machines (and other privacy tools). Both render the one `Notice` the domain
//! builds from the compiled policy, so neither can drift from what the software does. Also `/`, a
//! front door that points to the notice, the preference center and the console.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tactful_domain::notice::{self, Notice};

use crate::AppState;
use crate::error::ApiError;
use crate::web;

/// The version of the machine-readable notice.
pub const FORMAT: &str = "tactful-notice/1";

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(front)).route("/privacy", get(page)).route("/privacy.json", get(json_notice))
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage {
    brand: String,
    notice: Notice,
}

/// `GET /privacy`: the notice for people.
async fn page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let page =
        PrivacyPage { brand: state.catalog.brand().name.clone(), notice: notice::notice(&state.policy) };
    web::page(&page)
}

/// `GET /privacy.json`: the same notice for machines.
async fn json_notice(State(state): State<AppState>) -> Json<Value> {
    Json(notice_json(&notice::notice(&state.policy)))
}

/// The notice as JSON (`tactful-notice/1`).
pub fn notice_json(notice: &Notice) -> Value {
    json!({
        "format": FORMAT,
        "controller": {"name": notice.brand, "contact": notice.contact, "policy_url": notice.policy_url},
        "catalog_sha256": notice.catalog_sha256,
        "purposes": notice.purposes.iter().map(|p| json!({
            "key": p.key,
            "name": p.name,
            "description": p.description,
            "benefit": p.benefit,
            "version": p.version,
            "essential": p.essential,
            "data": p.data.iter().map(|d| json!({
                "category": d.category,
                "name": d.category_name,
                "descriptions": d.descriptions,
                "kept_for": d.kept_for,
                "sensitive": d.sensitive,
            })).collect::<Vec<_>>(),
            "basis": p.basis.iter().map(|b| json!({
                "jurisdiction": b.jurisdiction,
                "jurisdiction_name": b.jurisdiction_name,
                "uses": b.uses.iter().map(|(basis, categories)| json!({
                    "basis": basis.code(),
                    "rule": match basis { notice::Basis::NeverBecause(rule) => Some(rule.as_str()), _ => None },
                    "explained": basis.in_words(),
                    "categories": categories,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "recipients": notice.recipients.iter().map(|r| json!({
            "name": r.name, "told": r.receives, "identifiers": r.identifiers,
        })).collect::<Vec<_>>(),
        "jurisdictions": notice.jurisdictions.iter().map(|j| json!({
            "key": j.key,
            "name": j.name,
            "regime": j.regime,
            "request_deadline_days": j.request_deadline_days,
            "request_extension_days": j.request_extension_days,
            "honours_gpc": j.honours_gpc,
        })).collect::<Vec<_>>(),
        "promises": notice.promises.iter().map(|p| json!({"name": p.name, "text": p.text})).collect::<Vec<_>>(),
        "rights": notice.rights.iter().map(|r| json!({"right": r.key, "title": r.title, "how": r.how})).collect::<Vec<_>>(),
        "identity": notice.identity.iter().map(|s| json!({
            "source": s.source, "kind": s.kind, "proof": s.proof, "explained": s.in_words,
        })).collect::<Vec<_>>(),
        "personalization": notice.personalization.as_ref().map(|p| json!({
            "purpose": p.purpose,
            "min_people_per_pair": p.min_people,
            "items_per_person": p.items_per_person,
            "epsilon": p.epsilon,
            "sensitive_topics_only_when_you_tell_us": p.sensitive_topics,
        })),
        "analytics": notice.analytics.as_ref().map(|a| json!({
            "purpose": a.purpose,
            "min_people_per_group": a.min_people,
            "differential_privacy": a.noise,
        })),
        "preference_center": "/me",
    })
}

#[derive(Template)]
#[template(path = "front.html")]
struct FrontPage {
    brand: String,
}

/// `GET /`: where a visitor (or a newcomer running the demo) can go from here.
async fn front(State(state): State<AppState>) -> Result<Response, ApiError> {
    web::page(&FrontPage { brand: state.catalog.brand().name.clone() })
}
