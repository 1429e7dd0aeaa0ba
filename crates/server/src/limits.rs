//! The guard on every route: what a request may be (path, headers, how long its body and its answer
//! may take), each refusal in the documented JSON shape, and the framework's own plain-text errors
//! rewritten into that shape.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tactful_app::Config;
use tokio::time::Sleep;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// The longest path and query a request may have.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most headers a request may carry, and their most bytes (names, values and separators).
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// What a client is told to wait after a request ran past its deadline.
const DEADLINE_RETRY_AFTER_SECONDS: u32 = 5;

/// How long each part of a connection's life may take (from [`Config`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For a request's head, and for a keep-alive connection to sit idle.
    pub header_timeout: Duration,
    /// For a request's whole body, from when its head is in.
    pub body_timeout: Duration,
    /// From a request's head to its answer.
    pub request_timeout: Duration,
    /// For connections to finish their requests once shutdown begins.
    pub shutdown_timeout: Duration,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let ms = |ms: u64| Duration::from_millis(ms);
        Limits {
            header_timeout: ms(config.header_timeout_ms.max(1)),
            body_timeout: ms(config.body_timeout_ms.max(1)),
            request_timeout: ms(config.request_timeout_ms.max(1)),
            shutdown_timeout: ms(config.shutdown_timeout_ms),
        }
    }
}

/// Refuses requests over the limits, gives the body and the answer their deadlines, and answers
/// framework errors in the JSON shape. The handler runs in its own task, so a request past its
/// deadline is answered while its work still finishes: a use case that has committed to the store
/// must still tell the engines.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(refusal) = check_head(&request) {
        return refusal.into_response();
    }
    let limits = state.limits;
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
            expired: expired.clone(),
        })
    });
    let handler = tokio::spawn(next.run(request));
    let response = match tokio::time::timeout(limits.request_timeout, handler).await {
        Ok(Ok(response)) => response,
        Ok(Err(panicked)) => ApiError::internal(panicked).into_response(),
        Err(_) => ApiError::new(ErrorCode::DeadlineExceeded)
            .retry_after(DEADLINE_RETRY_AFTER_SECONDS)
            .into_response(),
    };
    if expired.load(Ordering::SeqCst) {
        // The rest of the body may still be on its way: the connection cannot carry another request.
        let mut response = ApiError::new(ErrorCode::RequestTimeout).into_response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    as_json(response).await
}

/// What is wrong with a request's head, before anything reads it.
fn check_head(request: &Request) -> Result<(), ApiError> {
    let uri_bytes = request.uri().path_and_query().map_or(0, |path| path.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Err(ApiError::new(ErrorCode::UriTooLong));
    }
    if request.headers().len() > MAX_HEADERS || header_bytes(request.headers()) > MAX_HEADER_BYTES {
        return Err(ApiError::new(ErrorCode::HeadersTooLarge));
    }
    if !path_decodes(request.uri().path()) {
        return Err(ApiError::new(ErrorCode::InvalidPath));
    }
    Ok(())
}

/// The bytes headers take on the wire: `name: value\r\n` each.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum()
}

/// Whether every percent-escape of a path is two hex digits and together they decode to UTF-8.
pub fn path_decodes(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = |offset: usize| bytes.get(at + offset).and_then(|&digit| (digit as char).to_digit(16));
            let (Some(high), Some(low)) = (hex(1), hex(2)) else { return false };
            decoded.push(u8::try_from(high * 16 + low).unwrap_or(0));
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// The error codes a framework answer (routing, extractors) stands for, by status.
const FRAMEWORK_CODES: &[ErrorCode] = &[
    ErrorCode::InvalidRequest,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::RequestTimeout,
    ErrorCode::RequestTooLarge,
    ErrorCode::UriTooLong,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::HeadersTooLarge,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
];

/// Rewrites an error answered as plain text or nothing at all into the JSON shape, with the code
/// the table gives its status. JSON errors and pages are left as they are.
pub async fn as_json(response: Response) -> Response {
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let plain = content_type.is_none_or(|value| value.starts_with(b"text/plain"));
    if status.as_u16() < 400 || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4 * 1024).await.unwrap_or_default();
    let code =
        FRAMEWORK_CODES.iter().copied().find(|code| code.status() == status.as_u16()).unwrap_or(
            if status.is_client_error() { ErrorCode::InvalidRequest } else { ErrorCode::Internal },
        );
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    // What the framework says of a client's mistake helps them (which parameter, which type);
    // what it says of its own failure stays in the server.
    let error = if status.is_client_error() && !text.is_empty() {
        ApiError::with_message(code, text)
    } else {
        ApiError::new(code)
    };
    let mut rewritten = error.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten.extensions_mut().extend(parts.extensions);
    rewritten
}

/// `X-Content-Type-Options: nosniff` on every answer, so no browser takes JSON for a page.
pub async fn nosniff(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A request body that fails if it is still being waited for once its deadline has passed (however
/// it trickles in), and says so.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

/// The error a late body ends with.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        // What has arrived is read however late the handler asks; only waiting is bounded.
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(context) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(context).is_ready() {
            self.expired.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn percent_escapes_must_be_hex_and_decode_to_utf8() {
        let check = |path: &str, expected: bool| assert_eq!(path_decodes(path), expected, "{path}");
        check("/v1/subjects/sub_1/profile", true);
        check("/v1/subjects/email%3Aada%40example.com/profile", true);
        check("/me/caf%C3%A9", true);
        check("/me/caf%c3%a9", true);
        check("/100%", false);
        check("/%4", false);
        check("/%zz", false);
        check("/%FF", false);
        check("/%C3", false);
        check("/%C3%28", false);
    }

    async fn rewritten(response: Response) -> (StatusCode, HeaderMap, serde_json::Value) {
        let response = as_json(response).await;
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn framework_text_becomes_the_json_shape() {
        let (status, _, body) =
            rewritten((StatusCode::BAD_REQUEST, "Invalid URL: bad").into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["message"], "Invalid URL: bad");

        let empty = (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET")]).into_response();
        let (status, headers, body) = rewritten(empty).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert_eq!(headers[header::ALLOW], "GET");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");

        let (status, _, body) = rewritten(StatusCode::PAYLOAD_TOO_LARGE.into_response()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::PAYLOAD_TOO_LARGE, &"request_too_large".into())
        );
        let (status, _, body) = rewritten(StatusCode::UNPROCESSABLE_ENTITY.into_response()).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &"invalid_request".into()));

        // A server failure's own words never reach the client.
        let (_, _, body) =
            rewritten((StatusCode::INTERNAL_SERVER_ERROR, "panic at src/x.rs:1").into_response()).await;
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("src/x.rs"), "{body}");
    }

    #[tokio::test]
    async fn pages_json_and_successes_are_left_alone() {
        for response in [
            (StatusCode::NOT_FOUND, axum::response::Html("<p>gone</p>")).into_response(),
            ApiError::new(ErrorCode::WrongCode).into_response(),
            (StatusCode::OK, "fine").into_response(),
        ] {
            let before = (response.status(), response.headers().clone());
            let after = as_json(response).await;
            assert_eq!((after.status(), after.headers().clone()), before);
        }
    }
}
