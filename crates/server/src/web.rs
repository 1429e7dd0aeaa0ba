//! What every web page shares: rendering a template into a response with the security headers a
//! privacy product owes its visitors (a strict Content-Security-Policy, no referrer, no framing, no
//! caching of personal pages), errors shown as a page to browsers and as the JSON shape to
//! everything else, and the sessions of the preference center and the console.

use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use tactful_app::tokens::{self, Kind};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::session::{self, CONSOLE_COOKIE, ME_COOKIE};

/// Pages load only what the server itself serves: no CDN, no fonts, no analytics, no inline code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Renders a template as an HTML page.
pub fn page(template: &impl Template) -> Result<Response, ApiError> {
    let body = template.render().map_err(ApiError::internal)?;
    Ok(Html(body).into_response())
}

/// Adds the pages' security headers to every response of the page routes (errors included).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A preference-center link carries its token in the URL: no page may pass it on.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An error page: what went wrong, in words, and what to do.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    brand: &'a str,
    status: u16,
    code: &'a str,
    title: &'a str,
    message: &'a str,
    /// Where to go from here.
    home: &'a str,
}

/// Shows errors of the page routes as a page to browsers (which ask for `text/html`), keeping the
/// JSON shape for API clients: the same code and message either way.
pub async fn html_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let path = request.uri().path();
    let home = if path.starts_with("/console") {
        "/console"
    } else if path.starts_with("/me") {
        "/me/sign-in"
    } else {
        "/privacy"
    };
    let response = next.run(request).await;
    let is_json_error = response.status().as_u16() >= 400
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !wants_html || !is_json_error {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, "error").into_response();
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = value["error"]["code"].as_str().unwrap_or("internal");
    let message = value["error"]["message"].as_str().unwrap_or("something went wrong");
    let title = match parts.status {
        StatusCode::UNAUTHORIZED => "Please sign in again",
        StatusCode::FORBIDDEN => "This was refused",
        StatusCode::NOT_FOUND => "Not found",
        status if status.is_client_error() => "That did not work",
        _ => "Something went wrong on our side",
    };
    let page = ErrorPage {
        brand: &state.catalog.brand().name,
        status: parts.status.as_u16(),
        code,
        title,
        message,
        home,
    };
    let mut rendered = match page.render() {
        Ok(html) => (parts.status, Html(html)).into_response(),
        Err(_) => (parts.status, message.to_owned()).into_response(),
    };
    // Keep what the original response carried for the logging middleware and the client.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rendered.extensions_mut().extend(parts.extensions);
    rendered
}

/// A signed-in customer of the preference center (from the session cookie).
#[derive(Debug, Clone)]
pub struct MeSession {
    pub subject: String,
    /// The CSRF token its forms carry.
    pub csrf: String,
    pub(crate) token: String,
}

impl MeSession {
    /// Refuses a form post whose CSRF token is not this session's.
    pub fn check_csrf(&self, state: &AppState, token: Option<&str>) -> Result<(), ApiError> {
        match token {
            Some(token) if tokens::csrf_valid(&state.vault, &self.token, token) => Ok(()),
            _ => Err(ApiError::new(ErrorCode::CsrfFailed)),
        }
    }
}

impl MeSession {
    /// The session the request's cookie carries, if it is authentic, not expired and not ended.
    pub async fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<MeSession, ApiError> {
        let expired = || ApiError::new(ErrorCode::SessionExpired);
        let token = session::cookie(headers, ME_COOKIE).ok_or_else(expired)?;
        let subject = tokens::holder(state, Kind::Me, token).await?.ok_or_else(expired)?;
        Ok(MeSession { subject, csrf: tokens::csrf_token(&state.vault, token), token: token.to_owned() })
    }
}

impl FromRequestParts<AppState> for MeSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<MeSession, ApiError> {
        MeSession::from_headers(state, &parts.headers).await
    }
}

/// A form body whose problems are answered in the one error shape.
#[derive(Debug)]
pub struct ApiForm<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiForm<T>
where
    axum::Form<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::FormRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(ApiForm(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(ErrorCode::RequestTooLarge))
            }
            Err(rejection) if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Err(ApiError::with_message(
                    ErrorCode::UnsupportedMediaType,
                    "send the form as application/x-www-form-urlencoded",
                ))
            }
            Err(rejection) => Err(ApiError::with_message(ErrorCode::InvalidRequest, rejection.body_text())),
        }
    }
}

/// Who calls the customer API (`/v1/me/…`): a preference-center link's token as a Bearer token
/// (what a brand's app holds), or the session cookie of the pages; with the cookie, requests that
/// change something must carry the CSRF token in `X-CSRF-Token`.
#[derive(Debug, Clone)]
pub struct MeCaller {
    pub subject: String,
}

impl FromRequestParts<AppState> for MeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<MeCaller, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
        if let Some(token) = bearer {
            // A link not yet opened works as a Bearer token (what a brand's app holds); once
            // opened, ended or expired it gets the answer a forged one gets.
            let subject = tokens::holder(state, Kind::Link, &token)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidLink))?;
            return Ok(MeCaller { subject });
        }
        let session = MeSession::from_headers(state, &parts.headers).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let token = parts.headers.get("x-csrf-token").and_then(|value| value.to_str().ok());
            session.check_csrf(state, token)?;
        }
        Ok(MeCaller { subject: session.subject })
    }
}

/// A brand user signed in to the console with an API key (kept as its id; the key itself never
/// leaves the login form). The session and the key are checked again on every request, so signing
/// out or revoking the key ends the session at once, on every instance.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub key: String,
    pub role: tactful_domain::catalog::Role,
    pub csrf: String,
    pub(crate) token: String,
}

impl ConsoleSession {
    /// Refuses a form post whose CSRF token is not this session's.
    pub fn check_csrf(&self, state: &AppState, token: Option<&str>) -> Result<(), ApiError> {
        match token {
            Some(token) if tokens::csrf_valid(&state.vault, &self.token, token) => Ok(()),
            _ => Err(ApiError::with_message(
                ErrorCode::CsrfFailed,
                "this form was not sent from your console page; reload the page and try again",
            )),
        }
    }
}

impl FromRequestParts<AppState> for ConsoleSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<ConsoleSession, ApiError> {
        let expired =
            || ApiError::with_message(ErrorCode::SessionExpired, "sign in to the console with an API key");
        let token = session::cookie(&parts.headers, CONSOLE_COOKIE).ok_or_else(expired)?;
        let key = tokens::holder(state, Kind::Console, token).await?.ok_or_else(expired)?;
        let caller = tactful_app::keys::api::by_id(state, &key).await?.ok_or_else(expired)?;
        // The catalog may have changed since sign-in: the role must still cover consent records.
        caller.require_privacy()?;
        Ok(ConsoleSession {
            key: caller.key,
            role: caller.role,
            csrf: tokens::csrf_token(&state.vault, token),
            token: token.to_owned(),
        })
    }
}

/// A redirect after a form post (303, so the browser fetches the next page with GET).
pub fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_owned())]).into_response()
}

/// A redirect that also sets a cookie.
pub fn see_other_with_cookie(location: &str, cookie: HeaderValue) -> Response {
    let mut response = see_other(location);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// A time as people read it (`20 Nov 2026, 03:42 UTC`), from the RFC 3339 text the API uses.
pub fn when(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let Some(millis) = tactful_domain::segment::parse_time(rfc3339) else { return rfc3339.to_owned() };
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000)) else {
        return rfc3339.to_owned();
    };
    format!(
        "{} {} {}, {:02}:{:02} UTC",
        at.day(),
        MONTHS[usize::from(u8::from(at.month())) - 1],
        at.year(),
        at.hour(),
        at.minute()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_like_dates() {
        assert_eq!(super::when("2026-11-20T03:42:34.030Z"), "20 Nov 2026, 03:42 UTC");
        assert_eq!(super::when("not a time"), "not a time");
    }
}
