//! Who is calling the brand API: a `Bearer` API key resolved by the application to a [`Caller`]
//! before any handler runs; and request bodies and query strings read into the one error shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
pub use tactful_app::Caller;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let token = bearer(parts).ok_or_else(|| ApiError::new(ErrorCode::MissingApiKey))?;
        Ok(tactful_app::keys::authenticate(state, &token).await?)
    }
}

/// The `Authorization: Bearer …` token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

/// A JSON body whose problems (not JSON, wrong shape, unknown fields) are answered in the one error
/// shape, naming what is wrong.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::JsonDataError(error)) => {
                Err(ApiError::with_message(ErrorCode::InvalidRequest, error.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(error)) => {
                Err(ApiError::with_message(ErrorCode::InvalidJson, error.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::with_message(
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            )),
            Err(other) if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(ErrorCode::RequestTooLarge))
            }
            Err(other) => Err(ApiError::with_message(ErrorCode::InvalidRequest, other.body_text())),
        }
    }
}

/// Reads a query string into `T`, answering problems in the one error shape.
pub fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(value)| value).map_err(|error| {
        let text = error.body_text();
        let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
        ApiError::with_message(ErrorCode::InvalidRequest, format!("the query string is invalid: {detail}"))
    })
}
