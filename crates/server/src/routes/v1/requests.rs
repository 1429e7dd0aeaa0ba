//! Data-subject requests for the brand's privacy team: `POST|GET /v1/requests`,
//! `GET /v1/requests/{id}` (status, deadline, history, each destination's answer, what was kept
//! under legal hold), `POST /v1/requests/{id}/verify` and `…/extend`,
//! `GET /v1/requests/{id}/package?format=json|html` (the access or export package, streamed) and
//! `GET /v1/requests/{id}/legal-holds` (what an erasure kept, for the legal obligation only).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tactful_app::exports::package::{self, Download, Form, PackageQuery};
use tactful_app::reads::Reader;
use tactful_app::requests::{self, Submission};
use tactful_domain::segment::format_time;

use crate::AppState;
use crate::auth::{ApiJson, Caller, query};
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/requests", post(create).get(list))
        .route("/v1/requests/{id}", get(show))
        .route("/v1/requests/{id}/verify", post(verify))
        .route("/v1/requests/{id}/extend", post(extend))
        .route("/v1/requests/{id}/package", get(download))
        .route("/v1/requests/{id}/legal-holds", get(legal_holds))
}

#[derive(Debug, Deserialize)]
struct HoldsQuery {
    purpose: Option<String>,
}

/// `GET /v1/requests/{id}/legal-holds?purpose=essential.legal_obligation`: what an erasure kept
/// because the law requires it, readable only for that legal obligation, by a role allowed it and
/// the data's categories. Audited like every read.
async fn legal_holds(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<HoldsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let holds =
        tactful_app::reads::holds::legal_holds(&state, &caller, &id, params.purpose.as_deref()).await?;
    Ok(Json(json!(holds)))
}

/// `POST /v1/requests`: a request the brand's privacy team makes for a person (or a self-service
/// one, `verify_by`, whose answer is the same whether or not the person is known), by a role whose
/// `requests` list names its type.
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Submission>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (_, answer) = requests::submit(&state, Some(&caller), body).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    subject: Option<String>,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    let params = query(params)?;
    let requests = requests::list(&state, params.subject.as_deref(), params.limit).await?;
    Ok(Json(json!({"requests": requests})))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_privacy()?;
    Ok(Json(requests::show(&state, &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    code: String,
}

async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Json<Value>, ApiError> {
    let status = requests::verify(&state, &caller, &id, &body.code).await?;
    Ok(Json(json!({"id": id, "status": status.as_str()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    #[serde(deserialize_with = "tactful_app::fields::whole")]
    days: u32,
    reason: String,
}

async fn extend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExtendBody>,
) -> Result<Json<Value>, ApiError> {
    let due = requests::extend(&state, &caller, &id, body.days, &body.reason).await?;
    Ok(Json(json!({"id": id, "due_at": format_time(due)})))
}

/// `GET /v1/requests/{id}/package?format=json|html`: the package of a finished access or export
/// request, streamed; in the person's access log with the key that downloaded it. Only for a role
/// that may download packages and covers every category the package holds.
async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<PackageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let form = query(params)?.form(Form::Json)?;
    let download = package::download_request(&state.app, &Reader::Key(&caller), &id, form).await?;
    Ok(attachment(download))
}

/// A package download as an HTTP attachment, streamed.
pub fn attachment(download: Download) -> Response {
    (
        [
            (header::CONTENT_TYPE, download.content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", download.filename)),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(download.body),
    )
        .into_response()
}
