//! `GET /v1/consents/export?format=csv|json`: the whole consent ledger for the brand's records, one
//! row per change, oldest first. Subjects appear by id only.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tactful_domain::segment::format_time;
use tactful_store::{LedgerEntry, Store, StoreError};

use super::subjects::{ledger_entry, query};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};

const PAGE: u32 = 10_000;

pub fn routes() -> Router<Arc<AppState>> {
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

/// The CSV columns, in order.
const CSV_HEADER: &str = "subject,receipt,purpose,status,method,at,expires_at,version,source,jurisdiction";

async fn export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_privacy()?;
    let params = query(params)?;
    if params.format != "csv" && params.format != "json" {
        return Err(ApiError::with_message(ErrorCode::InvalidRequest, "format must be csv or json"));
    }
    let entries = whole_ledger(state.store.as_ref()).await?;
    let body = render(&params.format, &entries);
    let content_type = if params.format == "csv" { "text/csv; charset=utf-8" } else { "application/json" };
    let filename = format!("attachment; filename=\"consents.{}\"", params.format);
    Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, filename)], body)
        .into_response())
}

/// The whole consent ledger, oldest first, read in pages.
pub async fn whole_ledger(store: &dyn Store) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = store.consent_ledger(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.event.at, last.event.id.clone()));
        entries.extend(page);
    }
    Ok(entries)
}

/// The export in `csv` or `json`.
pub fn render(format: &str, entries: &[LedgerEntry]) -> String {
    if format == "json" {
        let rows: Vec<Value> = entries.iter().map(json_row).collect();
        return format!("{:#}\n", json!({"consents": rows}));
    }
    let mut csv = format!("{CSV_HEADER}\n");
    for entry in entries {
        csv.push_str(&csv_row(entry));
        csv.push('\n');
    }
    csv
}

fn json_row(entry: &LedgerEntry) -> Value {
    let mut row = ledger_entry(&entry.event);
    if let Value::Object(object) = &mut row {
        object.insert("subject".into(), json!(entry.subject));
    }
    row
}

/// One CSV line (RFC 4180 quoting).
fn csv_row(entry: &LedgerEntry) -> String {
    let event = &entry.event;
    let fields = [
        entry.subject.clone(),
        event.id.clone(),
        event.purpose.clone(),
        event.kind.as_str().to_owned(),
        event.method.as_str().to_owned(),
        format_time(event.at),
        event.expires_at.map(format_time).unwrap_or_default(),
        event.version.to_string(),
        event.source.clone().unwrap_or_default(),
        event.jurisdiction.clone().unwrap_or_default(),
    ];
    fields
        .iter()
        .map(|field| {
            if field.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}
