//! The one error shape of the HTTP API: an application error ([`AppError`], whose code table lives in
//! `tactful_app::error`) rendered as `{"error": {"code", "message", …}, "code", "message"}` with the
//! table's status.
//! An internal cause never reaches the client; the logging middleware writes it to the log once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tactful_app::AppError;
pub use tactful_app::ErrorCode;
use tactful_store::StoreError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError(AppError::new(code))
    }

    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(AppError::with_message(code, message))
    }

    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError(AppError::internal(cause))
    }

    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.0.retry_after_seconds = Some(seconds);
        self
    }
}

impl std::ops::Deref for ApiError {
    type Target = AppError;

    fn deref(&self) -> &AppError {
        &self.0
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> ApiError {
        ApiError(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError(error.into())
    }
}

/// The HTTP status of an error code.
pub fn status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Internal detail of an error response, picked up and logged by the request-logging middleware.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

/// The limit that refused a request, picked up and counted by the request-logging middleware.
#[derive(Debug, Clone)]
pub struct RateLimitedBy(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        let detail = error.cause_chain();
        let limit = (error.code == ErrorCode::RateLimited)
            .then(|| error.details.as_ref()?.get("limit")?.as_str().map(str::to_owned))
            .flatten();
        let mut body = json!({"code": error.code.as_str(), "message": error.message});
        if let (Some(Value::Object(extra)), Some(object)) = (error.details, body.as_object_mut()) {
            object.extend(extra);
        }
        // `code` and `message` again at the top level: the Segment-family SDKs' parsers read them
        // there (rudder-sdk-python raises `KeyError('code')` without them) to report the failure.
        let answer = json!({"error": body, "code": error.code.as_str(), "message": body["message"]});
        let mut response = (status(error.code), Json(answer)).into_response();
        if let Some(seconds) = error.retry_after_seconds {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(detail) = detail {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        if let Some(limit) = limit {
            response.extensions_mut().insert(RateLimitedBy(limit));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_an_http_status() {
        for &code in ErrorCode::ALL {
            assert_eq!(status(code).as_u16(), code.status(), "{}", code.as_str());
        }
    }
}
