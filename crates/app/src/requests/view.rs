//! A request as the brand's privacy team sees it: status, deadline, history, each destination's
//! answers, what was kept under legal hold, and where its package is.

use serde_json::{Value, json};
use tactful_domain::request::RequestKind;
use tactful_domain::segment::format_time;
use tactful_store::RequestView;

use crate::App;
use crate::error::{AppError, ErrorCode};

/// One request in full.
pub async fn details(app: &App, view: &RequestView) -> Result<Value, AppError> {
    let record = &view.record;
    let mut deliveries = Vec::new();
    for delivery in &view.deliveries {
        let attempts = app.store.delivery_attempts(&delivery.request, &delivery.destination).await?;
        deliveries.push(json!({
            "destination": delivery.destination,
            "message": delivery.message,
            "status": delivery.status.as_str(),
            "attempts": attempts.iter().map(|attempt| json!({
                "at": format_time(attempt.at),
                "status_code": attempt.status_code,
                "error": attempt.error,
            })).collect::<Vec<_>>(),
            "acknowledged_at": delivery.acknowledged_at.map(format_time),
        }));
    }
    let kept = match (&record.subject, record.kind) {
        (Some(subject), RequestKind::Erase) => app
            .store
            .legal_holds(subject)
            .await?
            .into_iter()
            .map(|held| {
                json!({
                    "categories": held.categories,
                    "why": "the law requires us to keep it (legal obligation)",
                    "until": format_time(held.retain_until),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    let package = crate::exports::package::downloadable(record, app.now())
        && match &record.subject {
            Some(subject) => app.store.subject_summary(subject).await?.is_some(),
            None => false,
        };
    Ok(json!({
        "id": record.id,
        "type": record.kind.as_str(),
        "status": record.status.as_str(),
        "subject": record.subject,
        "source": record.source,
        "received_at": format_time(record.received_at),
        "due_at": format_time(record.due_at),
        "extension_reason": record.extension_reason,
        "completed_at": record.completed_at.map(format_time),
        "details": record.details,
        "history": view.history.iter().map(|entry| json!({
            "at": format_time(entry.at),
            "status": entry.status.as_str(),
            "note": entry.note,
        })).collect::<Vec<_>>(),
        "deliveries": deliveries,
        "kept_under_legal_hold": kept,
        "package": package.then(|| format!("/v1/requests/{}/package", record.id)),
    }))
}

/// One request by id, in full.
pub async fn show(app: &App, id: &str) -> Result<Value, AppError> {
    let view = app.store.request(id).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownRequest))?;
    details(app, &view).await
}

/// Requests, newest first: a person's (`reference`: `sub_…`, which still lists an erased person's,
/// or an identifier), or everyone's; at most `limit` (1 to 1,000).
pub async fn list(app: &App, reference: Option<&str>, limit: u32) -> Result<Vec<Value>, AppError> {
    if !(1..=1000).contains(&limit) {
        return Err(AppError::with_message(ErrorCode::InvalidRequest, "limit must be between 1 and 1000"));
    }
    let subject = match reference {
        Some(reference) if reference.starts_with("sub_") => Some(reference.to_owned()),
        Some(reference) => Some(crate::subjects::find(app, reference).await?),
        None => None,
    };
    let now = app.now();
    Ok(app
        .store
        .requests(subject.as_deref(), limit)
        .await?
        .into_iter()
        .map(|record| {
            json!({
                "id": record.id,
                "type": record.kind.as_str(),
                "status": record.status.as_str(),
                "subject": record.subject,
                "received_at": format_time(record.received_at),
                "due_at": format_time(record.due_at),
                "overdue": !record.status.is_final() && record.due_at < now,
            })
        })
        .collect())
}
