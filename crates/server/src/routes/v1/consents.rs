//! `GET /v1/consents/export?format=csv|json`: the whole consent ledger for the brand's records, one
//! row per change, oldest first. Subjects appear by id only.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tactful_app::consents::LedgerFormat;
use tactful_app::reads::Reader;

use crate::AppState;
use crate::auth::{Caller, query};
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/consents/export", get(export))
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    #[serde(default = "json_format")]
    format: String,
}

fn json_format() -> String {
    "json".into()
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_privacy()?;
    let format = LedgerFormat::parse(&query(params)?.format)?;
    let body = tactful_app::reads::records::ledger(&state, &Reader::Key(&caller), format).await?;
    let content_type = match format {
        LedgerFormat::Csv => "text/csv; charset=utf-8",
        LedgerFormat::Json => "application/json",
    };
    let filename = format!("attachment; filename=\"consents.{}\"", format.extension());
    Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, filename)], body)
        .into_response())
}
