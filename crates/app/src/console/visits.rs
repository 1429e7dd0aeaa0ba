//! What a console visit does: signing a brand user in with an API key, the dashboard computed whole
//! from the store and the catalog, one request in detail, and the recommendation quality measured
//! on demand. Aggregates, ids and categories only: nothing here opens a person's data.

use std::net::IpAddr;

use tactful_domain::audit::AuditEvent;
use tactful_domain::segment::format_time;

use super::*;
use crate::error::{AppError, ErrorCode};
use crate::tokens::{self, Kind};

/// Signs a brand user in with an API key: only a valid key may learn that its role is not enough;
/// any other gets the same answer, whether it never existed, was revoked or expired. The sign-in is
/// audited; the session (its token and end) never outlives the key. A refused key counts against
/// `client` as on the API, and past the limit every key from it is refused.
pub async fn sign_in(app: &App, key: &str, client: Option<IpAddr>) -> Result<(String, i64), AppError> {
    crate::limits::api_key(app, client, check_key(app, key)).await
}

async fn check_key(app: &App, key: &str) -> Result<(String, i64), AppError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(AppError::with_message(
            ErrorCode::MissingApiKey,
            "paste an API key (it starts with tk_)",
        ));
    }
    let now = app.now();
    let record = app
        .store
        .api_key(tactful_vault::api_key_hash(key))
        .await?
        .filter(|record| record.revoked_at.is_none() && record.expires_at.is_none_or(|end| end > now))
        .ok_or_else(|| {
            AppError::with_message(
                ErrorCode::InvalidApiKey,
                "this key was not accepted: check it, or ask for a new one (it may have been revoked or have expired)",
            )
        })?;
    let caller =
        app.catalog.role(&record.role).cloned().map(|role| crate::Caller { key: record.id.clone(), role });
    let Some(caller) = caller.filter(|caller| caller.require_privacy().is_ok()) else {
        return Err(AppError::with_message(
            ErrorCode::Forbidden,
            format!(
                "this key's role ({}) may not open the console: it needs a role covering consent records (user.privacy_preferences)",
                record.role
            ),
        ));
    };
    let entry = AuditEvent::ConsoleSignIn { actor: caller.key.clone(), role: caller.role.name.clone() };
    app.store.audit_append(vec![entry], now).await?;
    let expires =
        record.expires_at.map_or(now + app.web.session_ttl_ms, |end| end.min(now + app.web.session_ttl_ms));
    Ok((tokens::issue_recorded(app, Kind::Console, &caller.key, expires).await?, expires))
}

/// Everything the dashboard shows, computed now.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub now: i64,
    pub people: u64,
    pub events: u64,
    pub catalog: CatalogOverview,
    pub rates: ConsentRates,
    pub queue: Queue,
    pub audit: AuditState,
    pub drops: Vec<DropRow>,
    pub dropped_total: u64,
    pub model: Option<ModelView>,
    pub budgets: Budgets,
    /// Each destination events flow on to: what it received, was refused (per reason) and failed,
    /// and how far behind it is.
    pub forwarding: Vec<crate::forward::DestinationReport>,
}

/// The dashboard: the data map, consent rates, the queue, the audit log, minimization, the model
/// and the budgets.
pub async fn dashboard(app: &App) -> Result<Dashboard, AppError> {
    let now = app.now();
    let stats = app.store.stats().await?;
    let drops = drops(app).await?;
    Ok(Dashboard {
        now,
        people: stats.subjects,
        events: stats.events,
        catalog: catalog_overview(app),
        rates: consent_rates(app.store.as_ref(), &app.catalog, now).await?,
        queue: queue(app, now).await?,
        audit: audit_state(app).await?,
        dropped_total: drops.iter().map(|row| row.count).sum(),
        drops,
        model: model(app),
        budgets: budgets(app, now).await?,
        forwarding: crate::forward::report(app).await?,
    })
}

/// An attempt at a delivery.
#[derive(Debug, Clone)]
pub struct AttemptLine {
    pub at: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

/// A line of a request's history.
#[derive(Debug, Clone)]
pub struct HistoryLine {
    pub at: String,
    pub status: &'static str,
    pub note: String,
}

/// One request in detail, as the console shows it.
#[derive(Debug, Clone)]
pub struct RequestDetail {
    pub request: QueueRow,
    /// Request parameters without personal values (purpose objected to, path rectified…).
    pub details: Vec<(String, String)>,
    pub history: Vec<HistoryLine>,
    pub deliveries: Vec<(DeliveryCell, Vec<AttemptLine>)>,
    /// What an erasure kept under legal hold: categories and until when (never the values).
    pub kept: Vec<(String, String)>,
}

/// One request with its history, each destination's attempts and what erasure kept.
pub async fn request_detail(app: &App, id: &str) -> Result<RequestDetail, AppError> {
    let view = app.store.request(id).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownRequest))?;
    let record = &view.record;
    let mut deliveries = Vec::new();
    for delivery in &view.deliveries {
        let attempts = app
            .store
            .delivery_attempts(&delivery.request, &delivery.destination)
            .await?
            .into_iter()
            .map(|attempt| AttemptLine {
                at: format_time(attempt.at),
                status_code: attempt.status_code,
                error: attempt.error,
            })
            .collect();
        deliveries.push((delivery_cell(&app.catalog, delivery), attempts));
    }
    let kept = match (&record.subject, record.kind) {
        (Some(subject), RequestKind::Erase) => app
            .store
            .legal_holds(subject)
            .await?
            .into_iter()
            .map(|held| (held.categories.join(", "), format_time(held.retain_until)))
            .collect(),
        _ => Vec::new(),
    };
    let details = record
        .details
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter(|(_, value)| !value.is_null() && *value != &serde_json::Value::Bool(false))
                .map(|(key, value)| {
                    (key.clone(), value.as_str().map_or_else(|| value.to_string(), str::to_owned))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(RequestDetail {
        request: queue_row(&app.catalog, record, &view.deliveries, app.now()),
        details,
        history: view
            .history
            .iter()
            .map(|line| HistoryLine {
                at: format_time(line.at),
                status: status_in_words(line.status),
                note: line.note.clone(),
            })
            .collect(),
        deliveries,
        kept,
    })
}

/// People the quality measurement scores at most (all of them train the model).
const QUALITY_USERS: usize = 5_000;

/// The served model's quality on the people it learns from now, beside the popularity baseline
/// (leave-last-out, HR@10 and NDCG@10), measured off the async workers within the work deadline
/// (`too_slow` after it). `Ok(Err(…))` says why there is nothing to measure yet.
pub async fn quality(
    app: &App,
) -> Result<Result<tactful_personalize::eval::Report, tactful_personalize::eval::EvalError>, AppError> {
    let engine = app.personalization.clone().ok_or_else(|| AppError::new(ErrorCode::PersonalizationOff))?;
    let limits = app.limits.clone();
    Ok(crate::work::blocking(app.limits.work(), move || {
        limits.probe("quality");
        engine.quality(QUALITY_USERS)
    })
    .await?)
}
