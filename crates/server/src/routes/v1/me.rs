//! The customer's own API (`/v1/me/…`): what the preference center does, for a brand's app to
//! build its own screens on. The caller is the person: a preference-center link's token as a
//! Bearer token, or the pages' session cookie with the CSRF token in `X-CSRF-Token` for changes.
//! Nothing here names a subject; every route acts on the caller's own data.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tactful_domain::request::RequestKind;

use tactful_app::exports::package::{Form, PackageQuery};
use tactful_app::preferences as me;
use tactful_app::reads::Reader;

use crate::AppState;
use crate::auth::{ApiJson, query};
use crate::error::{ApiError, ErrorCode};
use crate::web::MeCaller;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(overview))
        .route("/v1/me/consents", get(consents).post(choose))
        .route("/v1/me/interests", get(interests).put(set_interests))
        .route("/v1/me/recommendations", get(recommendations))
        .route("/v1/me/access-log", get(access_log))
        .route("/v1/me/export", post(export))
        .route("/v1/me/erase", post(erase))
        .route("/v1/me/requests/{id}", get(request))
        .route("/v1/me/requests/{id}/package", get(package))
}

/// `GET /v1/me`: everything the preference center shows, in one answer.
async fn overview(State(state): State<AppState>, caller: MeCaller) -> Result<Json<Value>, ApiError> {
    let found = me::person(&state, &caller.subject).await?;
    Ok(Json(json!({
        "subject": found.subject,
        "jurisdiction": found.jurisdiction,
        "restricted": found.restricted,
        "choices": me::choices(&state, &found, state.now()),
        "known": me::known(&state, &found.subject).await?,
        "interests": me::interests(&state, &found).await?,
        "requests": me::my_requests(&state, &found.subject).await?,
        "kept_if_erased": me::kept_if_erased(&state.catalog)
            .into_iter()
            .map(|(what, how_long)| json!({"what": what, "for": how_long}))
            .collect::<Vec<_>>(),
    })))
}

/// `GET /v1/me/consents`: the caller's choice per purpose.
async fn consents(State(state): State<AppState>, caller: MeCaller) -> Result<Json<Value>, ApiError> {
    let found = me::person(&state, &caller.subject).await?;
    Ok(Json(json!({"choices": me::choices(&state, &found, state.now())})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Choices {
    changes: Vec<ChoiceChange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceChange {
    purpose: String,
    /// `true` to say yes, `false` to say no.
    allow: bool,
}

/// `POST /v1/me/consents` with `{"changes": [{"purpose", "allow"}]}`: each change that changes
/// something is recorded with a signed receipt (method `preference_center`).
async fn choose(
    State(state): State<AppState>,
    caller: MeCaller,
    ApiJson(body): ApiJson<Choices>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let found = me::person(&state, &caller.subject).await?;
    let changes: Vec<(String, bool)> = body.changes.into_iter().map(|c| (c.purpose, c.allow)).collect();
    let receipts = me::choose(&state, &found, &changes).await?;
    let found = me::person(&state, &caller.subject).await?;
    Ok((
        StatusCode::OK,
        Json(json!({"receipts": receipts, "choices": me::choices(&state, &found, state.now())})),
    ))
}

/// `GET /v1/me/interests`.
async fn interests(State(state): State<AppState>, caller: MeCaller) -> Result<Json<Value>, ApiError> {
    let found = me::person(&state, &caller.subject).await?;
    let interests =
        me::interests(&state, &found).await?.ok_or_else(|| ApiError::new(ErrorCode::PersonalizationOff))?;
    Ok(Json(json!(interests)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InterestsBody {
    interests: Vec<String>,
}

/// `PUT /v1/me/interests` with `{"interests": [...]}`: replaces what the caller told us they like.
async fn set_interests(
    State(state): State<AppState>,
    caller: MeCaller,
    ApiJson(body): ApiJson<InterestsBody>,
) -> Result<Json<Value>, ApiError> {
    let found = me::person(&state, &caller.subject).await?;
    let declared = me::set_interests(&state, &found, body.interests).await?;
    Ok(Json(json!({"declared": declared})))
}

/// `GET /v1/me/recommendations`: what the caller would be shown, each with its reason.
async fn recommendations(State(state): State<AppState>, caller: MeCaller) -> Result<Json<Value>, ApiError> {
    let found = me::person(&state, &caller.subject).await?;
    let suggestions =
        me::suggestions(&state, &found).await?.ok_or_else(|| ApiError::new(ErrorCode::PersonalizationOff))?;
    Ok(Json(json!(suggestions)))
}

/// `GET /v1/me/access-log`: who accessed the caller's data, when, what and why.
async fn access_log(State(state): State<AppState>, caller: MeCaller) -> Result<Json<Value>, ApiError> {
    let found = me::person(&state, &caller.subject).await?;
    Ok(Json(json!({"entries": me::access_log(&state, &found.subject, 1000).await?})))
}

/// `POST /v1/me/export`: asks for everything held, as a package to download.
async fn export(
    State(state): State<AppState>,
    caller: MeCaller,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let found = me::person(&state, &caller.subject).await?;
    let id = me::ask(&state, &found.subject, RequestKind::Export).await?;
    let (request, _) = me::request_of(&state, Some(&found.subject), None, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(request))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    /// Must be `true`: the caller understood that deletion cannot be undone.
    confirm: bool,
}

/// `POST /v1/me/erase` with `{"confirm": true}`: asks for erasure everywhere.
async fn erase(
    State(state): State<AppState>,
    caller: MeCaller,
    ApiJson(body): ApiJson<EraseBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !body.confirm {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "confirm (true) that the person understood that deletion cannot be undone",
        ));
    }
    let found = me::person(&state, &caller.subject).await?;
    let id = me::ask(&state, &found.subject, RequestKind::Erase).await?;
    let (request, _) = me::request_of(&state, Some(&found.subject), None, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(request))))
}

/// `GET /v1/me/requests/{id}`: one of the caller's requests (anyone else's is not found).
async fn request(
    State(state): State<AppState>,
    caller: MeCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (request, _) = me::request_of(&state, Some(&caller.subject), None, &id).await?;
    Ok(Json(json!(request)))
}

/// `GET /v1/me/requests/{id}/package?format=json|html`: the caller's own download.
async fn package(
    State(state): State<AppState>,
    caller: MeCaller,
    Path(id): Path<String>,
    params: Result<Query<PackageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let form = query(params)?.form(Form::Json)?;
    let (_, record) = me::request_of(&state, Some(&caller.subject), None, &id).await?;
    let download = tactful_app::exports::package::download(&state.app, &Reader::Person, record, form).await?;
    Ok(super::requests::attachment(download))
}
