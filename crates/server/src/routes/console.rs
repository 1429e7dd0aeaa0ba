//! The brand console (`/console`), the privacy team's view of Tactful: sign in with an API key whose
//! role covers consent records, then one server-rendered page of the data map, consent rates, the
//! request queue, the audit log, minimization, the recommendation model and analytics budgets, and a
//! page per request. The browser keeps only a session naming the key, never the key.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tactful_app::console::{self, Dashboard, RequestDetail};
use tactful_domain::segment::format_time;

use crate::AppState;
use crate::auth::ClientAddress;
use crate::error::{ApiError, ErrorCode, status};
use crate::session::{self, CONSOLE_COOKIE};
use crate::web::{self, ApiForm, ConsoleSession};

pub fn routes() -> Router<AppState> {
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
struct DashboardPage {
    brand: String,
    csrf: String,
    key: String,
    role: String,
    now: String,
    people: u64,
    events: u64,
    catalog: console::CatalogOverview,
    rates: console::ConsentRates,
    queue: console::Queue,
    audit: console::AuditState,
    drops: Vec<console::DropRow>,
    dropped_total: u64,
    model: Option<console::ModelView>,
    budgets: console::Budgets,
    forwarding: Vec<tactful_app::forward::DestinationReport>,
}

/// `GET /console`: the dashboard when signed in; otherwise the sign-in page (saying so when a
/// session was there and has ended, and clearing it).
async fn home(
    State(state): State<AppState>,
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
            let mut response = sign_in_page(&state, status(error.code), Some(&error))?;
            response.headers_mut().append(header::SET_COOKIE, clear_cookie(&state));
            return Ok(response);
        }
    };
    let Dashboard {
        now,
        people,
        events,
        catalog,
        rates,
        queue,
        audit,
        drops,
        dropped_total,
        model,
        budgets,
        forwarding,
    } = console::dashboard(&state).await?;
    let page = DashboardPage {
        brand: state.catalog.brand().name.clone(),
        csrf: session.csrf.clone(),
        key: session.key.clone(),
        role: session.role.name.clone(),
        now: format_time(now),
        people,
        events,
        catalog,
        rates,
        queue,
        audit,
        drops,
        dropped_total,
        model,
        budgets,
        forwarding,
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
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    ApiForm(fields): ApiForm<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        let error = ApiError::with_message(
            ErrorCode::CsrfFailed,
            "this sign-in form was sent from another site; open the console here and sign in",
        );
        return sign_in_page(&state, status(error.code), Some(&error));
    }
    let key = fields.get("key").map(String::as_str).unwrap_or_default();
    let (token, expires) = match console::sign_in(&state, key, client).await {
        Ok(session) => session,
        Err(error)
            if matches!(
                error.code,
                ErrorCode::MissingApiKey | ErrorCode::InvalidApiKey | ErrorCode::Forbidden
            ) =>
        {
            let error = ApiError(error);
            return sign_in_page(&state, status(error.code), Some(&error));
        }
        Err(error) => return Err(error.into()),
    };
    let cookie =
        session::set_cookie(CONSOLE_COOKIE, &token, (expires - state.now()) / 1000, state.web.secure_cookies);
    Ok(web::see_other_with_cookie("/console", cookie))
}

/// `POST /console/sign-out`: ends the session, on every instance (a copy of the cookie opens
/// nothing).
async fn sign_out(
    State(state): State<AppState>,
    session: ConsoleSession,
    ApiForm(fields): ApiForm<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, fields.get("csrf").map(String::as_str))?;
    tactful_app::tokens::end(&state, tactful_app::tokens::Kind::Console, &session.token).await?;
    Ok(web::see_other_with_cookie("/console", clear_cookie(&state)))
}

#[derive(Template)]
#[template(path = "console_request.html")]
struct RequestPage {
    brand: String,
    csrf: String,
    request: console::QueueRow,
    details: Vec<(String, String)>,
    history: Vec<console::HistoryLine>,
    deliveries: Vec<(console::DeliveryCell, Vec<console::AttemptLine>)>,
    kept: Vec<(String, String)>,
}

/// `GET /console/requests/{id}`: one request with its history, each destination's attempts and
/// what erasure kept under legal hold.
async fn request(
    State(state): State<AppState>,
    session: ConsoleSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let RequestDetail { request, details, history, deliveries, kept } =
        console::request_detail(&state, &id).await?;
    let page = RequestPage {
        brand: state.catalog.brand().name.clone(),
        csrf: session.csrf.clone(),
        request,
        details,
        history,
        deliveries,
        kept,
    };
    Ok(web::page(&page)?.into_response())
}

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
    State(state): State<AppState>,
    session: ConsoleSession,
    ApiForm(fields): ApiForm<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, fields.get("csrf").map(String::as_str))?;
    let measured = console::quality(&state).await?;
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
