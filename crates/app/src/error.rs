//! The one error of every use case, for every door: a single table maps each error code to its HTTP
//! status and default message (the server renders it as `{"error": {"code", "message", …}}`, the
//! CLI as text). An internal failure keeps its cause for the log and the operator, never the client.

use serde_json::Value;
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
    InvalidPath,
    UriTooLong,
    HeadersTooLarge,
    RequestTimeout,
    DeadlineExceeded,
    TooSlow,
    RateLimited,
    NotFound,
    MethodNotAllowed,
    Unavailable,
    Internal,
    Conflict,
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
            Overloaded, InvalidPath, UriTooLong, HeadersTooLarge, RequestTimeout, DeadlineExceeded,
            TooSlow, RateLimited, NotFound, MethodNotAllowed, Unavailable, Internal, Conflict,
        ]
    };

    /// The table: code, HTTP status, default message.
    const fn entry(self) -> (&'static str, u16, &'static str) {
        use ErrorCode::*;
        match self {
            InvalidJson => ("invalid_json", 400, "the body is not valid JSON"),
            JsonTooDeep => ("json_too_deep", 400, "the body nests JSON too deeply"),
            NotAnObject => ("not_an_object", 400, "the body must be a JSON object"),
            MissingBatch => ("missing_batch", 400, "a batch needs a \"batch\" array"),
            EmptyBatch => ("empty_batch", 400, "a batch must hold at least one event"),
            BatchTooLarge => ("batch_too_large", 400, "the batch holds too many events"),
            RequestTooLarge => ("request_too_large", 413, "the request body is too large"),
            EventTooLarge => ("event_too_large", 413, "the event is too large"),
            InvalidEvent => ("invalid_event", 400, "the event is invalid"),
            NoValidEvents => ("no_valid_events", 400, "no event in the batch could be accepted"),
            UnsupportedMediaType => {
                ("unsupported_media_type", 415, "send the body as application/json or text/plain")
            }
            UnsupportedEncoding => {
                ("unsupported_encoding", 415, "the only content encoding accepted is gzip")
            }
            InvalidGzip => ("invalid_gzip", 400, "the body says gzip but does not decompress"),
            MissingWriteKey => (
                "missing_write_key",
                401,
                "send the source's write key as HTTP Basic user name, as \"writeKey\" in the body, or as a Bearer token",
            ),
            UnknownWriteKey => ("unknown_write_key", 401, "the write key belongs to no source"),
            MissingApiKey => (
                "missing_api_key",
                401,
                "send an API key as \"Authorization: Bearer tk_…\" (create one with tactful api-keys create)",
            ),
            InvalidApiKey => ("invalid_api_key", 401, "the API key is not one this server issued"),
            ExpiredApiKey => ("expired_api_key", 401, "the API key has expired"),
            RevokedApiKey => ("revoked_api_key", 401, "the API key has been revoked"),
            Forbidden => ("forbidden", 403, "this key's role may not do this"),
            PurposeRequired => (
                "purpose_required",
                400,
                "say why you read: add ?purpose= with one of the catalog's purposes",
            ),
            UnknownPurpose => ("unknown_purpose", 400, "the catalog declares no such purpose"),
            UnknownSubject => ("unknown_subject", 404, "no customer has this id or identifier"),
            InvalidIdentifier => (
                "invalid_identifier",
                400,
                "name a customer as sub_… or kind:value (email:ada@example.com, user_id:u-1)",
            ),
            InvalidRequest => ("invalid_request", 400, "the request is invalid"),
            UnknownReceipt => ("unknown_receipt", 404, "this customer has no receipt with this id"),
            UnknownRequest => ("unknown_request", 404, "there is no request with this id"),
            UnknownItem => ("unknown_item", 404, "there is no item with this id in the catalogue"),
            UnknownPlacement => (
                "unknown_placement",
                400,
                "the catalog declares no such placement under [personalization.placements]",
            ),
            UnknownChannel => (
                "unknown_channel",
                400,
                "the catalog declares no such channel under [personalization.channels]",
            ),
            UnknownDataset => {
                ("unknown_dataset", 404, "the catalog declares no such dataset under [analytics.datasets]")
            }
            UndeclaredDimension => {
                ("undeclared_dimension", 400, "the dataset may not be grouped by this dimension")
            }
            UndeclaredProperty => (
                "undeclared_property",
                400,
                "the property is not a measure of the dataset (sums and means need declared bounds)",
            ),
            BudgetExhausted => (
                "budget_exhausted",
                429,
                "the dataset's privacy budget for this period cannot pay for this answer",
            ),
            AnalyticsOff => (
                "analytics_off",
                404,
                "the catalog declares no [analytics] section, so there are no aggregates",
            ),
            PersonalizationOff => (
                "personalization_off",
                404,
                "the catalog declares no personalization purpose, so there are no recommendations",
            ),
            DuplicateRequest => {
                ("duplicate_request", 409, "this person already has an open request of this kind")
            }
            WrongCode => ("wrong_code", 403, "that is not the verification code"),
            NotPermitted => {
                ("not_permitted", 409, "this would keep data for a purpose the person has not allowed")
            }
            SessionExpired => (
                "session_expired",
                401,
                "you are not signed in, or your session has ended: open a new link to your privacy settings",
            ),
            InvalidLink => (
                "invalid_link",
                401,
                "this link is not valid (it may have expired or been changed): ask for a new one",
            ),
            CsrfFailed => (
                "csrf_failed",
                403,
                "this form was not sent from your own privacy settings page; reload the page and try again",
            ),
            PackageUnavailable => (
                "package_unavailable",
                409,
                "there is no package to download for this request (not ready, expired, or the person was erased)",
            ),
            Overloaded => {
                ("overloaded", 429, "the server is busy; retry after the number of seconds in Retry-After")
            }
            InvalidPath => (
                "invalid_path",
                400,
                "the path holds a percent-escape that is malformed or does not decode to UTF-8",
            ),
            UriTooLong => ("uri_too_long", 414, "the path and query may be at most 8 KB"),
            HeadersTooLarge => {
                ("headers_too_large", 431, "a request may carry at most 100 headers and 32 KB of them")
            }
            RequestTimeout => (
                "request_timeout",
                408,
                "the request body did not arrive in time (or was shorter than its Content-Length); nothing was stored",
            ),
            DeadlineExceeded => (
                "deadline_exceeded",
                503,
                "the request took too long to answer; it may still complete, so check before retrying after Retry-After",
            ),
            TooSlow => (
                "too_slow",
                503,
                "this did not finish within its deadline, so it was stopped; nothing was spent",
            ),
            RateLimited => (
                "rate_limited",
                429,
                "too many requests of this kind; retry after the number of seconds in Retry-After",
            ),
            NotFound => ("not_found", 404, "there is nothing at this path"),
            MethodNotAllowed => ("method_not_allowed", 405, "this path does not accept this method"),
            Unavailable => {
                ("unavailable", 503, "the database is unavailable; nothing was stored, retry later")
            }
            Internal => ("internal", 500, "something went wrong on our side; nothing was stored"),
            Conflict => (
                "conflict",
                409,
                "the request is in a state that does not allow this (finished, already done, or changed meanwhile)",
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.entry().0
    }

    /// The HTTP status the server answers with.
    pub fn status(self) -> u16 {
        self.entry().1
    }

    pub fn default_message(self) -> &'static str {
        self.entry().2
    }
}

/// What went wrong in a use case: the code (and so the status) and message a client sees, extra
/// fields for the answer, and the cause of an internal failure, which only the log and the CLI show.
#[derive(Debug)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields merged into the error object (for example the rejected events of a batch).
    pub details: Option<Value>,
    /// Why it failed inside: logged once by the server, printed by the CLI, never sent to a client.
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    pub retry_after_seconds: Option<u32>,
}

impl AppError {
    pub fn new(code: ErrorCode) -> AppError {
        AppError {
            code,
            message: code.default_message().to_owned(),
            details: None,
            cause: None,
            retry_after_seconds: None,
        }
    }

    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError { message: message.into(), ..AppError::new(code) }
    }

    pub fn details(mut self, details: Value) -> AppError {
        self.details = Some(details);
        self
    }

    /// An internal failure with its cause.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> AppError {
        AppError { cause: Some(cause.into()), ..AppError::new(ErrorCode::Internal) }
    }

    /// The cause and its own causes, as one line (`a: b: c`), if there is one.
    pub fn cause_chain(&self) -> Option<String> {
        let mut next: Option<&(dyn std::error::Error + 'static)> =
            self.cause.as_deref().map(|cause| cause as &(dyn std::error::Error + 'static));
        let mut parts = Vec::new();
        while let Some(error) = next {
            parts.push(error.to_string());
            next = error.source();
        }
        (!parts.is_empty()).then(|| parts.join(": "))
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> AppError {
        match error {
            StoreError::Unavailable(_) => AppError {
                cause: Some(Box::new(error)),
                retry_after_seconds: Some(1),
                ..AppError::new(ErrorCode::Unavailable)
            },
            other => AppError::internal(other),
        }
    }
}

impl From<tactful_vault::VaultError> for AppError {
    fn from(error: tactful_vault::VaultError) -> AppError {
        AppError::internal(error)
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
            assert!((400..600).contains(&code.status()));
            assert!(!code.default_message().is_empty());
        }
    }

    #[test]
    fn an_internal_error_keeps_its_cause_for_the_operator() {
        let error = AppError::from(StoreError::Internal("disk I/O error".into()));
        assert_eq!(error.code, ErrorCode::Internal);
        assert!(error.cause_chain().unwrap().contains("disk I/O error"), "{:?}", error.cause_chain());
        assert!(!error.message.contains("disk"), "the client never sees it");
    }
}
