//! The preference center (`/me`), the page a brand's customer reaches through a signed link: what
//! is known about them and why, a switch per purpose, the interests they tell, why they see what
//! they see, who accessed their data, and download and deletion. Server-rendered; every action is a
//! plain form (works without JavaScript) carrying the session's CSRF token.

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tactful_domain::request::RequestKind;
use tactful_domain::segment::format_time;

use tactful_app::exports::package::{self as export, Form, PackageQuery};
use tactful_app::preferences::{self as me, Access, Choice, Interests, Known, MyRequest, Suggestions};
use tactful_app::reads::{self, Reader};
use tactful_app::tokens::{self, Kind};

use crate::AppState;
use crate::auth::{ClientAddress, query};
use crate::error::{ApiError, ErrorCode};
use crate::session::{self, ERASURE_COOKIE, ME_COOKIE, SIGN_IN_COOKIE};
use crate::web::{self, ApiForm, MeSession};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(home))
        .route("/me/consents", post(consents))
        .route("/me/interests", post(interests))
        .route("/me/export", post(ask_export))
        .route("/me/erase", post(ask_erase))
        .route("/me/requests/{id}", get(request))
        .route("/me/requests/{id}/package", get(package))
        .route("/me/receipts/{id}", get(receipt))
        .route("/me/sign-out", post(sign_out))
        .route("/me/sign-in", get(sign_in_page).post(send_code))
        .route("/me/sign-in/code", get(code_page).post(check_code))
}

#[derive(Debug, Deserialize)]
struct HomeQuery {
    /// A signed link's token: exchanged for a session, then dropped from the address.
    t: Option<String>,
    /// Receipts of the change just made, to show.
    receipts: Option<String>,
    /// What was just done, to confirm.
    done: Option<String>,
}

/// A receipt as the page shows it.
struct ReceiptView {
    id: String,
    purpose: String,
    consent_type: String,
    at: String,
    key_id: String,
    signature: String,
}

#[derive(Template)]
#[template(path = "me.html")]
struct MePage {
    brand: String,
    contact: Option<String>,
    csrf: String,
    done: Option<String>,
    /// What the browser's Global Privacy Control signal did, when it sent one.
    gpc: Option<me::Gpc>,
    restricted: bool,
    jurisdiction: Option<String>,
    choices: Vec<Choice>,
    receipts: Vec<ReceiptView>,
    known: Vec<Known>,
    interests: Option<Interests>,
    suggestions: Option<Suggestions>,
    access: Vec<Access>,
    requests: Vec<MyRequest>,
    kept_if_erased: Vec<(String, String)>,
}

/// `GET /me`: with `?t=` a signed link (sets the session and redirects to a clean address);
/// otherwise the page of the signed-in person.
async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<HomeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    if let Some(token) = params.t.as_deref() {
        return sign_in(&state, token).await;
    }
    let session = MeSession::from_headers(&state, &headers).await?;
    let mut found = me::person(&state, &session.subject).await?;
    let gpc = if headers.get("sec-gpc").is_some_and(|value| value.as_bytes() == b"1") {
        let gpc = me::apply_gpc(&state, &found).await?;
        if !gpc.switched_off.is_empty() {
            found = me::person(&state, &session.subject).await?;
        }
        Some(gpc)
    } else {
        None
    };
    let now = state.now();
    let receipts = match params.receipts.as_deref() {
        Some(ids) => shown_receipts(&state, &found.subject, ids).await?,
        None => Vec::new(),
    };
    let page = MePage {
        brand: state.catalog.brand().name.clone(),
        contact: state.catalog.brand().contact.clone(),
        csrf: session.csrf.clone(),
        done: params.done.as_deref().and_then(done_message).map(str::to_owned),
        gpc,
        restricted: found.restricted,
        jurisdiction: found
            .jurisdiction
            .as_deref()
            .and_then(|key| state.catalog.jurisdiction(key))
            .map(|j| j.name.clone()),
        choices: me::choices(&state, &found, now),
        receipts,
        known: me::known(&state, &found.subject).await?,
        interests: me::interests(&state, &found).await?,
        suggestions: me::suggestions(&state, &found).await?,
        access: me::access_log(&state, &found.subject, 50).await?,
        requests: me::my_requests(&state, &found.subject).await?,
        kept_if_erased: me::kept_if_erased(&state.catalog),
    };
    web::page(&page)
}

fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "consents" => "Saved. Your choices apply from now on.",
        "nothing" => "Nothing changed: that is already your choice.",
        "interests" => "Saved. Your recommendations now use what you told us.",
        "export" => "We are putting your data together. It is listed under \"Your requests\" below.",
        _ => return None,
    })
}

/// Exchanges a signed link for a session. An expired, altered or unknown link gets the same
/// answer, whoever it was for: nothing tells whether a person exists.
async fn sign_in(state: &AppState, token: &str) -> Result<Response, ApiError> {
    let session = tokens::open_link(state, token).await?;
    Ok(web::see_other_with_cookie("/me", session_cookie(state, &session)))
}

/// The cookie carrying a preference-center session.
fn session_cookie(state: &AppState, session: &tokens::Session) -> axum::http::HeaderValue {
    let seconds = (session.expires_at - state.now()) / 1000;
    session::set_cookie(ME_COOKIE, &session.token, seconds, state.web.secure_cookies)
}

async fn shown_receipts(state: &AppState, subject: &str, ids: &str) -> Result<Vec<ReceiptView>, ApiError> {
    let mut shown = Vec::new();
    for id in ids.split(',').map(str::trim).filter(|id| !id.is_empty()).take(20) {
        let body = match reads::records::receipt(state, &Reader::Person, subject, id).await {
            Ok(body) => body,
            Err(error) if error.code == ErrorCode::UnknownReceipt => continue,
            Err(error) => return Err(error.into()),
        };
        let receipt = &body["receipt"];
        let purpose = &receipt["services"][0]["purposes"][0];
        shown.push(ReceiptView {
            id: id.to_owned(),
            purpose: purpose["purpose"].as_str().unwrap_or_default().to_owned(),
            consent_type: match purpose["consentType"].as_str().unwrap_or_default() {
                "WITHDRAWN" => "You said no".to_owned(),
                "EXPLICIT" | "IMPLICIT" => "You said yes".to_owned(),
                other => other.to_lowercase(),
            },
            at: receipt["consentTimestamp"].as_i64().map(|s| format_time(s * 1000)).unwrap_or_default(),
            key_id: body["signature"]["keyId"].as_str().unwrap_or_default().to_owned(),
            signature: body["signature"]["value"].as_str().unwrap_or_default().chars().take(24).collect(),
        });
    }
    Ok(shown)
}

/// The fields of a form, with repeated names (checkboxes) kept.
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// Refuses fields a form of ours never sends (a subject id slipped into the form, say): the
/// person acted on is always the session's, and saying so is clearer than ignoring it.
fn only(fields: &Fields, allowed: &[&str]) -> Result<(), ApiError> {
    match fields.iter().find(|(key, _)| !allowed.contains(&key.as_str())) {
        Some((key, _)) => Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            format!(
                "this form does not take the field \"{key}\": your settings only ever change your own data"
            ),
        )),
        None => Ok(()),
    }
}

/// `POST /me/consents`: `purpose=KEY&choice=on|off`, or `all=on|off` for every switchable one.
async fn consents(
    State(state): State<AppState>,
    session: MeSession,
    ApiForm(fields): ApiForm<Fields>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, field(&fields, "csrf"))?;
    only(&fields, &["csrf", "purpose", "choice", "all"])?;
    let found = me::person(&state, &session.subject).await?;
    let on = |value: &str| match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => {
            Err(ApiError::with_message(ErrorCode::InvalidRequest, format!("choose on or off, not {other:?}")))
        }
    };
    let changes: Vec<(String, bool)> = match (field(&fields, "all"), field(&fields, "purpose")) {
        (Some(all), None) => {
            let on = on(all)?;
            me::choices(&state, &found, state.now())
                .into_iter()
                .filter(|c| c.switchable)
                .map(|c| (c.purpose, on))
                .collect()
        }
        (None, Some(purpose)) => {
            let choice = field(&fields, "choice")
                .ok_or_else(|| ApiError::with_message(ErrorCode::InvalidRequest, "choose on or off"))?;
            vec![(purpose.to_owned(), on(choice)?)]
        }
        _ => return Err(ApiError::with_message(ErrorCode::InvalidRequest, "choose a purpose, or all")),
    };
    let receipts = me::choose(&state, &found, &changes).await?;
    if receipts.is_empty() {
        return Ok(web::see_other("/me?done=nothing#choices"));
    }
    let ids: Vec<&str> = receipts.iter().filter_map(|r| r["receipt"]["consentReceiptID"].as_str()).collect();
    Ok(web::see_other(&format!("/me?done=consents&receipts={}#choices", ids.join(","))))
}

/// `POST /me/interests`: `interest=…` repeated (checkboxes), plus `other=` (comma-separated).
async fn interests(
    State(state): State<AppState>,
    session: MeSession,
    ApiForm(fields): ApiForm<Fields>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, field(&fields, "csrf"))?;
    only(&fields, &["csrf", "interest", "other"])?;
    let found = me::person(&state, &session.subject).await?;
    let mut chosen: Vec<String> =
        fields.iter().filter(|(key, _)| key == "interest").map(|(_, value)| value.clone()).collect();
    if let Some(other) = field(&fields, "other") {
        chosen.extend(other.split(',').map(str::to_owned));
    }
    me::set_interests(&state, &found, chosen).await?;
    Ok(web::see_other("/me?done=interests#interests"))
}

/// `POST /me/export`: asks for everything held, as a download.
async fn ask_export(
    State(state): State<AppState>,
    session: MeSession,
    ApiForm(fields): ApiForm<Fields>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, field(&fields, "csrf"))?;
    only(&fields, &["csrf"])?;
    let found = me::person(&state, &session.subject).await?;
    let id = me::ask(&state, &found.subject, RequestKind::Export).await?;
    Ok(web::see_other(&format!("/me/requests/{id}")))
}

/// `POST /me/erase`: asks for erasure, once the person confirmed they understand what it means.
/// Their session ends with their data; a cookie naming the request lets them follow it to the end.
async fn ask_erase(
    State(state): State<AppState>,
    session: MeSession,
    ApiForm(fields): ApiForm<Fields>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, field(&fields, "csrf"))?;
    only(&fields, &["csrf", "confirm"])?;
    if field(&fields, "confirm") != Some("yes") {
        return Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "tick the box to confirm you understand what deletion means",
        ));
    }
    let found = me::person(&state, &session.subject).await?;
    let id = me::ask(&state, &found.subject, RequestKind::Erase).await?;
    let token = tokens::issue(&state.vault, Kind::Erasure, &id, state.now() + 30 * 86_400_000);
    let mut response = web::see_other_with_cookie(
        &format!("/me/requests/{id}"),
        session::set_cookie(ERASURE_COOKIE, &token, 30 * 86_400, state.web.secure_cookies),
    );
    response.headers_mut().append(
        axum::http::header::SET_COOKIE,
        session::set_cookie(ME_COOKIE, "", 0, state.web.secure_cookies),
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "me_request.html")]
struct RequestPage {
    brand: String,
    request: MyRequest,
    /// Still moving: the page refreshes itself.
    in_progress: bool,
    signed_in: bool,
    kept: Vec<(String, String)>,
}

fn erasure_claim(state: &AppState, headers: &HeaderMap) -> Option<String> {
    tokens::named_by(state, Kind::Erasure, session::cookie(headers, ERASURE_COOKIE)?)
}

/// `GET /me/requests/{id}`: one of the person's requests, with its status.
async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = MeSession::from_headers(&state, &headers).await.ok();
    let erasure = erasure_claim(&state, &headers);
    if session.is_none() && erasure.is_none() {
        return Err(ApiError::new(ErrorCode::SessionExpired));
    }
    let subject = session.as_ref().map(|s| s.subject.as_str());
    let (request, record) = me::request_of(&state, subject, erasure.as_deref(), &id).await?;
    let in_progress = !record.status.is_final();
    let page = RequestPage {
        brand: state.catalog.brand().name.clone(),
        kept: match (record.kind, record.status.is_final()) {
            (RequestKind::Erase, true) => me::kept_by(&state, &record).await?,
            (RequestKind::Erase, false) => me::kept_if_erased(&state.catalog),
            _ => Vec::new(),
        },
        request,
        in_progress,
        signed_in: session.is_some(),
    };
    let mut response = web::page(&page)?;
    if in_progress {
        response.headers_mut().insert(axum::http::header::REFRESH, axum::http::HeaderValue::from_static("2"));
    }
    Ok(response)
}

/// `GET /me/requests/{id}/package?format=json|html`: the person's own download.
async fn package(
    State(state): State<AppState>,
    session: MeSession,
    Path(id): Path<String>,
    params: Result<Query<PackageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let form = query(params)?.form(Form::Html)?;
    let (_, record) = me::request_of(&state, Some(&session.subject), None, &id).await?;
    let download = export::download(&state.app, &Reader::Person, record, form).await?;
    Ok(super::v1::requests::attachment(download))
}

/// `GET /me/receipts/{id}`: one of the person's signed receipts, as a file to keep.
async fn receipt(
    State(state): State<AppState>,
    session: MeSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let body = reads::records::receipt(&state, &Reader::Person, &session.subject, &id).await?;
    let mut response = axum::response::IntoResponse::into_response(Json(body));
    response.headers_mut().insert(
        axum::http::header::CONTENT_DISPOSITION,
        axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{id}.json\""))
            .map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// `POST /me/sign-out`: ends the session, on every instance (a copy of the cookie opens nothing).
async fn sign_out(
    State(state): State<AppState>,
    session: MeSession,
    ApiForm(fields): ApiForm<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    session.check_csrf(&state, fields.get("csrf").map(String::as_str))?;
    tokens::end(&state, Kind::Me, &session.token).await?;
    Ok(web::see_other_with_cookie(
        "/privacy",
        session::set_cookie(ME_COOKIE, "", 0, state.web.secure_cookies),
    ))
}

#[derive(Template)]
#[template(path = "me_sign_in.html")]
struct SignInPage {
    brand: String,
    code_step: bool,
    message: Option<String>,
}

fn sign_in_page_with(
    state: &AppState,
    code_step: bool,
    message: Option<String>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let mut response =
        web::page(&SignInPage { brand: state.catalog.brand().name.clone(), code_step, message })?;
    *response.status_mut() = status;
    Ok(response)
}

/// `GET /me/sign-in`: asks for the address to send a one-time code to.
async fn sign_in_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    sign_in_page_with(&state, false, None, StatusCode::OK)
}

/// `POST /me/sign-in` (`address`): has a code sent if the address is a customer's, and asks for it
/// either way (the page cannot tell who is a customer); past a limit, 429 `rate_limited`.
async fn send_code(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    form: Result<ApiForm<Fields>, ApiError>,
) -> Result<Response, ApiError> {
    let fields = match sign_in_form(form, &["address"]) {
        Ok(fields) => fields,
        Err(Shown::Page(message)) => {
            return sign_in_page_with(&state, false, Some(message), StatusCode::BAD_REQUEST);
        }
        Err(Shown::Json(error)) => return Err(error),
    };
    let address = field(&fields, "address").unwrap_or_default();
    let id = match me::start_sign_in(&state, address, client).await {
        Ok(id) => id,
        Err(error) if error.code == ErrorCode::InvalidIdentifier => {
            return sign_in_page_with(&state, false, Some(error.message), StatusCode::BAD_REQUEST);
        }
        Err(error) => return Err(error.into()),
    };
    let token = tokens::issue(&state.vault, Kind::SignIn, &id, state.now() + me::SIGN_IN_CODE_TTL_MS);
    let cookie =
        session::set_cookie(SIGN_IN_COOKIE, &token, me::SIGN_IN_CODE_TTL_MS / 1000, state.web.secure_cookies);
    Ok(web::see_other_with_cookie("/me/sign-in/code", cookie))
}

/// How a problem with a sign-in form is answered.
enum Shown {
    /// On the sign-in page (400): the form came from it, so a person reads the answer.
    Page(String),
    /// In the JSON shape: a body that is no form at all (415) or too large (413).
    Json(ApiError),
}

/// The fields of a sign-in form, which takes only `allowed`.
fn sign_in_form(form: Result<ApiForm<Fields>, ApiError>, allowed: &[&str]) -> Result<Fields, Shown> {
    let fields = match form {
        Ok(ApiForm(fields)) => fields,
        Err(error) if error.0.code == ErrorCode::InvalidRequest => return Err(Shown::Page(error.0.message)),
        Err(error) => return Err(Shown::Json(error)),
    };
    only(&fields, allowed).map_err(|error| Shown::Page(error.0.message))?;
    Ok(fields)
}

/// The sign-in this browser is in the middle of, if any.
fn pending_sign_in(state: &AppState, headers: &HeaderMap) -> Option<String> {
    tokens::named_by(state, Kind::SignIn, session::cookie(headers, SIGN_IN_COOKIE)?)
}

/// `GET /me/sign-in/code`: asks for the code.
async fn code_page(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if pending_sign_in(&state, &headers).is_none() {
        return Ok(web::see_other("/me/sign-in"));
    }
    sign_in_page_with(&state, true, None, StatusCode::OK)
}

/// `POST /me/sign-in/code` (`code`): a right code opens the settings; a wrong one says how many
/// tries are left; an expired or used-up one asks to start again.
async fn check_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<ApiForm<Fields>, ApiError>,
) -> Result<Response, ApiError> {
    let fields = match sign_in_form(form, &["code"]) {
        Ok(fields) => fields,
        Err(Shown::Page(message)) => {
            return sign_in_page_with(&state, true, Some(message), StatusCode::BAD_REQUEST);
        }
        Err(Shown::Json(error)) => return Err(error),
    };
    let Some(id) = pending_sign_in(&state, &headers) else {
        return sign_in_page_with(
            &state,
            false,
            Some("That code has expired. Ask for a new one.".into()),
            StatusCode::UNAUTHORIZED,
        );
    };
    let code = field(&fields, "code").unwrap_or_default();
    match me::finish_sign_in(&state, &id, code).await? {
        me::SignedIn::As(subject) => {
            let session = tokens::session_for(&state, &subject).await?;
            let mut response = web::see_other_with_cookie("/me", session_cookie(&state, &session));
            response.headers_mut().append(
                axum::http::header::SET_COOKIE,
                session::set_cookie(SIGN_IN_COOKIE, "", 0, state.web.secure_cookies),
            );
            Ok(response)
        }
        me::SignedIn::Wrong(left) => sign_in_page_with(
            &state,
            true,
            Some(format!("That is not the code. {left} {} left.", if left == 1 { "try" } else { "tries" })),
            StatusCode::BAD_REQUEST,
        ),
        me::SignedIn::Over => sign_in_page_with(
            &state,
            false,
            Some("That code no longer works (it expired, was used, or was mistyped too often). Ask for a new one.".into()),
            StatusCode::UNAUTHORIZED,
        ),
    }
}
