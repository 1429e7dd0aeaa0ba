//! The one API error type: a single table maps each error code to its HTTP status and default
//! message, and every error renders as `{"error": {"code", "message", …}}`. Internal details never
//! reach the client; the logging middleware writes them to the log once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tactful_store::StoreError;

/// Every error code the API can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    JsonTooDeep,
    NotAnObject,
    MissingBatch,
    EmptyBatch,
    BatchTooLarge,
    RequestTooLarge,
    EventTooLarge,
    InvalidEvent,
    NoValidEvents,
    UnsupportedMediaType,
    UnsupportedEncoding,
    InvalidGzip,
    MissingWriteKey,
    UnknownWriteKey,
    MissingApiKey,
    InvalidApiKey,
    ExpiredApiKey,
    RevokedApiKey,
    Forbidden,
    PurposeRequired,
    UnknownPurpose,
    UnknownSubject,
    InvalidIdentifier,
    InvalidRequest,
    UnknownReceipt,
    UnknownRequest,
    UnknownItem,
    UnknownPlacement,
    UnknownChannel,
    PersonalizationOff,
    UnknownDataset,
    UndeclaredDimension,
    UndeclaredProperty,
    BudgetExhausted,
    AnalyticsOff,
    DuplicateRequest,
    WrongCode,
    NotPermitted,
    SessionExpired,
    InvalidLink,
    CsrfFailed,
    PackageUnavailable,
    Overloaded,
    NotFound,
    MethodNotAllowed,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// Every variant, in the order of the table.
    #[rustfmt::skip]
    pub const ALL: &[ErrorCode] = {
        use ErrorCode::*;
        &[
            InvalidJson, JsonTooDeep, NotAnObject, MissingBatch, EmptyBatch, BatchTooLarge, RequestTooLarge,
            EventTooLarge, InvalidEvent, NoValidEvents, UnsupportedMediaType, UnsupportedEncoding,
            InvalidGzip, MissingWriteKey, UnknownWriteKey, MissingApiKey, InvalidApiKey, ExpiredApiKey,
            RevokedApiKey, Forbidden, PurposeRequired, UnknownPurpose, UnknownSubject, InvalidIdentifier,
            InvalidRequest, UnknownReceipt, UnknownRequest, UnknownItem, UnknownPlacement, UnknownChannel,
            PersonalizationOff, UnknownDataset, UndeclaredDimension, UndeclaredProperty, BudgetExhausted,
            AnalyticsOff, DuplicateRequest, WrongCode, NotPermitted, SessionExpired, InvalidLink, CsrfFailed,
            PackageUnavailable,
            Overloaded, NotFound, MethodNotAllowed, Unavailable, Internal,
        ]
    };

    /// The table: code, status, default message.
    const fn entry(self) -> (&'static str, StatusCode, &'static str) {
        use ErrorCode::*;
        match self {
            InvalidJson => ("invalid_json", StatusCode::BAD_REQUEST, "the body is not valid JSON"),
            JsonTooDeep => ("json_too_deep", StatusCode::BAD_REQUEST, "the body nests JSON too deeply"),
            NotAnObject => ("not_an_object", StatusCode::BAD_REQUEST, "the body must be a JSON object"),
            MissingBatch => ("missing_batch", StatusCode::BAD_REQUEST, "a batch needs a \"batch\" array"),
            EmptyBatch => ("empty_batch", StatusCode::BAD_REQUEST, "a batch must hold at least one event"),
            BatchTooLarge => ("batch_too_large", StatusCode::BAD_REQUEST, "the batch holds too many events"),
            RequestTooLarge => {
                ("request_too_large", StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large")
            }
            EventTooLarge => ("event_too_large", StatusCode::PAYLOAD_TOO_LARGE, "the event is too large"),
            InvalidEvent => ("invalid_event", StatusCode::BAD_REQUEST, "the event is invalid"),
            NoValidEvents => {
                ("no_valid_events", StatusCode::BAD_REQUEST, "no event in the batch could be accepted")
            }
            UnsupportedMediaType => (
                "unsupported_media_type",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json or text/plain",
            ),
            UnsupportedEncoding => (
                "unsupported_encoding",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the only content encoding accepted is gzip",
            ),
            InvalidGzip => {
                ("invalid_gzip", StatusCode::BAD_REQUEST, "the body says gzip but does not decompress")
            }
            MissingWriteKey => (
                "missing_write_key",
                StatusCode::UNAUTHORIZED,
                "send the source's write key as HTTP Basic user name, as \"writeKey\" in the body, or as a Bearer token",
            ),
            UnknownWriteKey => {
                ("unknown_write_key", StatusCode::UNAUTHORIZED, "the write key belongs to no source")
            }
            MissingApiKey => (
                "missing_api_key",
                StatusCode::UNAUTHORIZED,
                "send an API key as \"Authorization: Bearer tk_…\" (create one with tactful api-keys create)",
            ),
            InvalidApiKey => {
                ("invalid_api_key", StatusCode::UNAUTHORIZED, "the API key is not one this server issued")
            }
            ExpiredApiKey => ("expired_api_key", StatusCode::UNAUTHORIZED, "the API key has expired"),
            RevokedApiKey => ("revoked_api_key", StatusCode::UNAUTHORIZED, "the API key has been revoked"),
            Forbidden => ("forbidden", StatusCode::FORBIDDEN, "this key's role may not do this"),
            PurposeRequired => (
                "purpose_required",
                StatusCode::BAD_REQUEST,
                "say why you read: add ?purpose= with one of the catalog's purposes",
            ),
            UnknownPurpose => {
                ("unknown_purpose", StatusCode::BAD_REQUEST, "the catalog declares no such purpose")
            }
            UnknownSubject => {
                ("unknown_subject", StatusCode::NOT_FOUND, "no customer has this id or identifier")
            }
            InvalidIdentifier => (
                "invalid_identifier",
                StatusCode::BAD_REQUEST,
                "name a customer as sub_… or kind:value (email:ada@example.com, user_id:u-1)",
            ),
            InvalidRequest => ("invalid_request", StatusCode::BAD_REQUEST, "the request is invalid"),
            UnknownReceipt => {
                ("unknown_receipt", StatusCode::NOT_FOUND, "this customer has no receipt with this id")
            }
            UnknownRequest => ("unknown_request", StatusCode::NOT_FOUND, "there is no request with this id"),
            UnknownItem => {
                ("unknown_item", StatusCode::NOT_FOUND, "there is no item with this id in the catalogue")
            }
            UnknownPlacement => (
                "unknown_placement",
                StatusCode::BAD_REQUEST,
                "the catalog declares no such placement under [personalization.placements]",
            ),
            UnknownChannel => (
                "unknown_channel",
                StatusCode::BAD_REQUEST,
                "the catalog declares no such channel under [personalization.channels]",
            ),
            UnknownDataset => (
                "unknown_dataset",
                StatusCode::NOT_FOUND,
                "the catalog declares no such dataset under [analytics.datasets]",
            ),
            UndeclaredDimension => (
                "undeclared_dimension",
                StatusCode::BAD_REQUEST,
                "the dataset may not be grouped by this dimension",
            ),
            UndeclaredProperty => (
                "undeclared_property",
                StatusCode::BAD_REQUEST,
                "the property is not a measure of the dataset (sums and means need declared bounds)",
            ),
            BudgetExhausted => (
                "budget_exhausted",
                StatusCode::TOO_MANY_REQUESTS,
                "the dataset's privacy budget for this period cannot pay for this answer",
            ),
            AnalyticsOff => (
                "analytics_off",
                StatusCode::NOT_FOUND,
                "the catalog declares no [analytics] section, so there are no aggregates",
            ),
            PersonalizationOff => (
                "personalization_off",
                StatusCode::NOT_FOUND,
                "the catalog declares no personalization purpose, so there are no recommendations",
            ),
            DuplicateRequest => (
                "duplicate_request",
                StatusCode::CONFLICT,
                "this person already has an open request of this kind",
            ),
            WrongCode => ("wrong_code", StatusCode::BAD_REQUEST, "that is not the verification code"),
            NotPermitted => (
                "not_permitted",
                StatusCode::CONFLICT,
                "this would keep data for a purpose the person has not allowed",
            ),
            SessionExpired => (
                "session_expired",
                StatusCode::UNAUTHORIZED,
                "you are not signed in, or your session has ended: open a new link to your privacy settings",
            ),
            InvalidLink => (
                "invalid_link",
                StatusCode::UNAUTHORIZED,
                "this link is not valid (it may have expired or been changed): ask for a new one",
            ),
            CsrfFailed => (
                "csrf_failed",
                StatusCode::FORBIDDEN,
                "this form was not sent from your own privacy settings page; reload the page and try again",
            ),
            PackageUnavailable => (
                "package_unavailable",
                StatusCode::CONFLICT,
                "there is no package to download for this request (not ready, expired, or the person was erased)",
            ),
            Overloaded => (
                "overloaded",
                StatusCode::TOO_MANY_REQUESTS,
                "the server is busy; retry after the number of seconds in Retry-After",
            ),
            NotFound => ("not_found", StatusCode::NOT_FOUND, "there is nothing at this path"),
            MethodNotAllowed => (
                "method_not_allowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "this path does not accept this method",
            ),
            Unavailable => (
                "unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; nothing was stored, retry later",
            ),
            Internal => (
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                "something went wrong on our side; nothing was stored",
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.entry().0
    }

    pub fn status(self) -> StatusCode {
        self.entry().1
    }

    pub fn default_message(self) -> &'static str {
        self.entry().2
    }
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields merged into the error object (for example the rejected events of a batch).
    pub details: Option<Value>,
    /// Logged by the middleware, never sent.
    pub internal: Option<String>,
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            message: code.default_message().to_owned(),
            details: None,
            internal: None,
            retry_after_seconds: None,
        }
    }

    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { message: message.into(), ..ApiError::new(code) }
    }

    pub fn details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError { internal: Some(detail.to_string()), ..ApiError::new(ErrorCode::Internal) }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Unavailable(_) => ApiError {
                internal: Some(error.to_string()),
                retry_after_seconds: Some(1),
                ..ApiError::new(ErrorCode::Unavailable)
            },
            other => ApiError::internal(other),
        }
    }
}

/// Internal detail of an error response, picked up and logged by the request-logging middleware.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code.as_str(), "message": self.message});
        if let (Some(Value::Object(extra)), Some(object)) = (self.details, error.as_object_mut()) {
            object.extend(extra);
        }
        let mut response = (self.code.status(), Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(detail) = self.internal {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert!(code.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert!(!code.default_message().is_empty());
        }
    }
}
