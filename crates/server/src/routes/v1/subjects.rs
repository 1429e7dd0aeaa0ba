//! The brand's view of one customer, always for a stated purpose: `GET /v1/subjects/{id}/profile`
//! (purpose-gated reads), `GET|POST /v1/subjects/{id}/consents` (the consent ledger and its signed
//! receipts), `GET /v1/subjects/{id}/access-log` (who read their data, when and why) and
//! `POST /v1/subjects/{id}/link` (a link to their preference center) and
//! `POST /v1/subjects/{id}/sessions/end` (signing them out everywhere). `{id}` is a subject id
//! (`sub_…`) or an identifier (`email:ada@example.com`, `user_id:u-1`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tactful_app::consents::{self, ConsentChange, ConsentStrings};
use tactful_app::reads::{self, Reader};
use tactful_domain::segment::format_time;

use crate::AppState;
use crate::auth::{ApiJson, Caller, query};
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/subjects/{id}/profile", get(profile))
        .route("/v1/subjects/{id}/consents", get(consents).post(record_consents))
        .route("/v1/subjects/{id}/consents/receipts", get(receipts))
        .route("/v1/subjects/{id}/consents/receipts/{receipt}", get(receipt))
        .route("/v1/subjects/{id}/access-log", get(access_log))
        .route("/v1/subjects/{id}/link", post(link))
        .route("/v1/subjects/{id}/sessions/end", post(end_sessions))
}

#[derive(Debug, Deserialize)]
struct ProfileQuery {
    purpose: Option<String>,
    /// How many of the newest events to include (0 to 100).
    #[serde(default)]
    events: usize,
}

/// `GET /v1/subjects/{id}/profile?purpose=P[&events=N]`: the subject's traits (and newest events)
/// that may serve P, that the caller's role may read, and that the subject's consent allows. What is
/// left out is counted per category and reason, never shown. Every read is in the audit log before
/// it is answered.
async fn profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    params: Result<Query<ProfileQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let profile =
        reads::profile::profile(&state, &caller, &reference, params.purpose.as_deref(), params.events)
            .await?;
    Ok(Json(json!(profile)))
}

/// `GET /v1/subjects/{id}/consents`.
async fn consents(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(reads::records::consents(&state, &Reader::Key(&caller), &reference).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentChanges {
    #[serde(default)]
    changes: Vec<ConsentChange>,
    /// An IAB TCF v2.2 TC string, read through the catalog's `[iab]` section.
    tc_string: Option<String>,
    /// An IAB GPP string, with the ids of the sections that apply (`gpp_sid`).
    gpp_string: Option<String>,
    gpp_sid: Option<Vec<i64>>,
}

/// `POST /v1/subjects/{id}/consents` with `{"changes": [{purpose, status, method?, version?, at?,
/// expires_at?}], "tc_string"?, "gpp_string"?, "gpp_sid"?}`. Every change is checked before any is recorded: one bad change records
/// nothing. Each recorded change gets a signed receipt and an audit entry, in one transaction.
async fn record_consents(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    ApiJson(body): ApiJson<ConsentChanges>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let strings =
        ConsentStrings { tc_string: body.tc_string, gpp_string: body.gpp_string, gpp_sid: body.gpp_sid };
    let view = consents::record_changes(&state, &caller, &reference, &body.changes, &strings).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/subjects/{id}/consents/receipts`: every signed receipt of the subject, oldest first.
async fn receipts(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(reads::records::receipts(&state, &Reader::Key(&caller), &reference).await?))
}

/// `GET /v1/subjects/{id}/consents/receipts/{receipt}`: one signed receipt, as a file to keep
/// (`tactful receipt verify` checks it).
async fn receipt(
    State(state): State<AppState>,
    caller: Caller,
    Path((reference, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(reads::records::receipt_of(&state, &Reader::Key(&caller), &reference, &id).await?))
}

#[derive(Debug, Deserialize)]
struct AccessLogQuery {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// `GET /v1/subjects/{id}/access-log`: who read the subject's data or changed their consent, when
/// and why, newest first.
async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    params: Result<Query<AccessLogQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    Ok(Json(reads::records::access_log(&state, &Reader::Key(&caller), &reference, params.limit).await?))
}

/// `POST /v1/subjects/{id}/link`: a signed, short-lived link to the person's preference center,
/// for the brand's backend to show a signed-in customer or send them. Audited in their access log.
async fn link(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (subject, url, expires_at) = tactful_app::tokens::link_for(&state, &caller, &reference).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"subject": subject, "url": url, "expires_at": format_time(expires_at)})),
    ))
}

/// `POST /v1/subjects/{id}/sessions/end`: signs the person out everywhere (every preference-center
/// session and unopened link of theirs ends). Recorded in their access log.
async fn end_sessions(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (subject, ended) = tactful_app::tokens::end_sessions(&state, &caller, &reference).await?;
    Ok(Json(json!({"subject": subject, "ended": ended})))
}
