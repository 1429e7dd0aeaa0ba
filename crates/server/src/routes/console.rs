//! The brand console (`/console`), the privacy team's view of Tactful: sign in with an API key whose
//! role covers consent records, then one server-rendered page of the data map, consent rates, the
//! request queue, the audit log, minimization, the recommendation model and analytics budgets, and a
//! page per request. The browser keeps only a session naming the key, never the key.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tactful_domain::audit::AuditEvent;
use tactful_domain::segment::format_time;

use crate::auth::Caller;
use crate::console::{
    self, AuditState, Budgets, CatalogOverview, ConsentRates, DeliveryCell, DropRow, ModelView, Queue,
    QueueRow,
};
use crate::error::{ApiError, ErrorCode};
use crate::session::{self, CONSOLE_COOKIE, Kind};
use crate::web::{self, ApiForm, ConsoleSession};
use crate::{AppState, now_millis};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(home))
        .route("/console/sign-in", post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/requests/{id}", get(request))
        .route("/console/quality", post(quality))
}

#[derive(Template)]
#[template(path = "console_sign_in.html")]
struct SignInPage {
    brand: String,
    /// Why the last attempt or session did not work, in words, with its error code.
    problem: Option<(String, &'static str)>,
    session_minutes: i64,
}

fn sign_in_page(
    state: &AppState,
    status: StatusCode,
    problem: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let page = SignInPage {
        brand: state.catalog.brand().name.clone(),
        problem: problem.map(|error| (error.message.clone(), error.code.as_str())),
        session_minutes: state.web.session_ttl_ms / 60_000,
    };
    let mut response = web::page(&page)?;
    *response.status_mut() = status;
    Ok(response)
}

fn clear_cookie(state: &AppState) -> HeaderValue {
    session::set_cookie(CONSOLE_COOKIE, "", 0, state.web.secure_cookies)
}

#[derive(Template)]
#[template(path = "console.html")]
struct Dashboard {
    brand: String,
    csrf: String,
    key: String,
    role: String,
    now: String,
    people: u64,
    events: u64,
    catalog: CatalogOverview,
    rates: ConsentRates,
    queue: Queue,
    audit: AuditState,
    drops: Vec<DropRow>,
    dropped_total: u64,
    model: Option<ModelView>,
    budgets: Budgets,
}

/// `GET /console`: the dashboard when signed in; otherwise the sign-in page (saying so when a
/// session was there and has ended, and clearing it).
async fn home(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    signed_in: Result<ConsoleSession, ApiError>,
) -> Result<Response, ApiError> {
    let session = match signed_in {
        Ok(session) => session,
        Err(_) if session::cookie(&headers, CONSOLE_COOKIE).is_none() => {
            return sign_in_page(&state, StatusCode::OK, None);
        }
        Err(error) => {
            let error = match error.code {
                ErrorCode::SessionExpired => ApiError::with_message(
                    ErrorCode::SessionExpired,
                    "your console session has ended (it expired, or its key was revoked): sign in again",
                ),
                ErrorCode::Forbidden => error,
                // The session could not be checked (the database is away, say): it has not ended.
                _ => return Err(error),
            };
            let mut response = sign_in_page(&state, error.code.status(), Some(&error))?;
            response.headers_mut().append(header::SET_COOKIE, clear_cookie(&state));
            return Ok(response);
        }
    };
    let now = now_millis();
    let stats = state.store.stats().await?;
    let drops = console::drops(&state).await?;
    let page = Dashboard {
        brand: state.catalog.brand().name.clone(),
        csrf: session.csrf.clone(),
        key: session.key.clone(),
        role: session.role.name.clone(),
        now: format_time(now),
        people: stats.subjects,
        events: stats.events,
        catalog: console::catalog_overview(&state),
        rates: console::consent_rates(state.store.as_ref(), &state.catalog, now).await?,
        queue: console::queue(&state, now).await?,
        audit: console::audit_state(&state).await?,
        dropped_total: drops.iter().map(|row| row.count).sum(),
        drops,
        model: console::model(&state),
        budgets: console::budgets(&state, now).await?,
    };
    web::page(&page)
}

/// Whether a browser says the form was posted from another site: a sign-in form there could sign
/// a brand user into a key of someone else's choosing.
fn cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").is_some_and(|value| value.as_bytes() == b"cross-site")
}

/// `POST /console/sign-in` (`key=tk_…`): checks the key once, and on success sets a session naming
/// it. Only a key that is valid may learn that its role is not enough; any other gets the same
/// answer, whether it never existed, was revoked or expired.
async fn sign_in(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiForm(fields): ApiForm<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        let error = ApiError::with_message(
            ErrorCode::CsrfFailed,
            "this sign-in form was sent from another site; open the console here and sign in",
        );
        return sign_in_page(&state, error.code.status(), Some(&error));
    }
    let key = fields.get("key").map(|key| key.trim()).unwrap_or_default();
    if key.is_empty() {
        let error = ApiError::with_message(ErrorCode::MissingApiKey, "paste an API key (it starts with tk_)");
        return sign_in_page(&state, error.code.status(), Some(&error));
    }
    let now = now_millis();
    let record = state
        .store
        .api_key(tactful_vault::api_key_hash(key))
        .await?
        .filter(|record| record.revoked_at.is_none() && record.expires_at.is_none_or(|end| end > now));
    let Some(record) = record else {
        let error = ApiError::with_message(
            ErrorCode::InvalidApiKey,
            "this key was not accepted: check it, or ask for a new one (it may have been revoked or have expired)",
        );
        return sign_in_page(&state, error.code.status(), Some(&error));
    };
    let role = state.catalog.role(&record.role).cloned();
    let caller = role.map(|role| Caller { key: record.id.clone(), role });
    let Some(caller) = caller.filter(|caller| caller.require_privacy().is_ok()) else {
        let error = ApiError::with_message(
            ErrorCode::Forbidden,
            format!(
                "this key's role ({}) may not open the console: it needs a role covering consent records (user.privacy_preferences)",
                record.role
            ),
        );
        return sign_in_page(&state, error.code.status(), Some(&error));
    };
    state
        .store
        .audit_append(
            vec![AuditEvent::ConsoleSignIn { actor: caller.key.clone(), role: caller.role.name.clone() }],
            now,
        )
        .await?;
    // A session never outlives its key.
    let expires = record
        .expires_at
        .map_or(now + state.web.session_ttl_ms, |end| end.min(now + state.web.session_ttl_ms));
    let token = session::issue(&state.vault, Kind::Console, &caller.key, expires);
    let cookie =
        session::set_cookie(CONSOLE_COOKIE, &token, (expires - now) / 1000, state.web.secure_cookies);
    Ok(web::see_other_with_cookie("/console", cookie))
}

/// `POST /console/sign-out`: ends the session on this browser.
async fn sign_out(
    State(state): State<Arc<AppState>>,
    session: ConsoleSession,
    ApiForm(fields): ApiForm<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, fields.get("csrf").map(String::as_str))?;
    Ok(web::see_other_with_cookie("/console", clear_cookie(&state)))
}

/// A line of a request's history.
struct HistoryLine {
    at: String,
    status: &'static str,
    note: String,
}

/// An attempt at a delivery.
struct AttemptLine {
    at: String,
    status_code: Option<u16>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console_request.html")]
struct RequestPage {
    brand: String,
    csrf: String,
    request: QueueRow,
    /// Request parameters without personal values (purpose objected to, path rectified…).
    details: Vec<(String, String)>,
    history: Vec<HistoryLine>,
    deliveries: Vec<(DeliveryCell, Vec<AttemptLine>)>,
    /// What an erasure kept under legal hold: categories and until when (never the values).
    kept: Vec<(String, String)>,
}

/// `GET /console/requests/{id}`: one request with its history, each destination's attempts and
/// what erasure kept under legal hold.
async fn request(
    State(state): State<Arc<AppState>>,
    session: ConsoleSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = state.store.request(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownRequest))?;
    let record = &view.record;
    let mut deliveries = Vec::new();
    for delivery in &view.deliveries {
        let attempts = state
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
        deliveries.push((console::delivery_cell(&state.catalog, delivery), attempts));
    }
    let kept = match (&record.subject, record.kind) {
        (Some(subject), tactful_domain::request::RequestKind::Erase) => state
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
    let page = RequestPage {
        brand: state.catalog.brand().name.clone(),
        csrf: session.csrf.clone(),
        request: console::queue_row(&state.catalog, record, &view.deliveries, now_millis()),
        details,
        history: view
            .history
            .iter()
            .map(|line| HistoryLine {
                at: format_time(line.at),
                status: console::status_in_words(line.status),
                note: line.note.clone(),
            })
            .collect(),
        deliveries,
        kept,
    };
    Ok(web::page(&page)?.into_response())
}

/// People the quality measurement scores at most (all of them train the model).
const QUALITY_USERS: usize = 5_000;

/// A row of the quality table.
struct QualityRow {
    model: &'static str,
    setting: String,
    hit_rate: String,
    ndcg: String,
    pairs: usize,
    train_ms: u128,
}

#[derive(Template)]
#[template(path = "console_quality.html")]
struct QualityPage {
    brand: String,
    csrf: String,
    problem: Option<String>,
    people: usize,
    evaluated: usize,
    rows: Vec<QualityRow>,
    lift: Option<String>,
}

/// `POST /console/quality`: measures the served model's quality on the people it learns from now,
/// beside the popularity baseline (leave-last-out, HR@10 and NDCG@10).
async fn quality(
    State(state): State<Arc<AppState>>,
    session: ConsoleSession,
    ApiForm(fields): ApiForm<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, fields.get("csrf").map(String::as_str))?;
    let engine = state.personalization.clone().ok_or_else(|| ApiError::new(ErrorCode::PersonalizationOff))?;
    let measured = tokio::task::spawn_blocking(move || engine.quality(QUALITY_USERS))
        .await
        .map_err(ApiError::internal)?;
    let mut page = QualityPage {
        brand: state.catalog.brand().name.clone(),
        csrf: session.csrf.clone(),
        problem: None,
        people: 0,
        evaluated: 0,
        rows: Vec::new(),
        lift: None,
    };
    match measured {
        Ok(report) => {
            page.people = report.eligible;
            page.evaluated = report.evaluated;
            page.rows = report
                .rows
                .iter()
                .map(|row| QualityRow {
                    model: row.setting.model,
                    setting: row.setting.setting.clone(),
                    hit_rate: format!("{:.3}", row.metrics.hit_rate),
                    ndcg: format!("{:.3}", row.metrics.ndcg),
                    pairs: row.pairs,
                    train_ms: row.train.as_millis(),
                })
                .collect();
            let baseline = report.best_baseline_hit_rate();
            let served = report.rows.last().map(|row| row.metrics.hit_rate).unwrap_or_default();
            page.lift = (baseline > 0.0).then(|| {
                format!(
                    "The model as served finds the hidden item {:.1}× as often as the popular list.",
                    served / baseline
                )
            });
        }
        Err(error) => page.problem = Some(format!("Nothing to measure yet: {error}.")),
    }
    web::page(&page)
}
