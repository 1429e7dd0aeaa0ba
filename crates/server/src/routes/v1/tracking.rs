//! `POST /v1/{track,identify,page,screen,group,alias,batch,import,b,t,i,p,s,g,a}`: the Segment HTTP
//! tracking protocol, so analytics SDKs work unchanged with their host pointed here. Each path also
//! answers with a trailing slash (analytics-java posts to `/v1/import/`).

use std::io::Read;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::routing::post;
use base64::Engine as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tactful_domain::segment::{Endpoint, MAX_REQUEST_BYTES, MessageType};

use tactful_app::ingest;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::EventLabels;

/// Every tracking path and what it accepts.
pub const PATHS: &[(&str, Endpoint)] = &[
    ("/v1/identify", Endpoint::Single(MessageType::Identify)),
    ("/v1/track", Endpoint::Single(MessageType::Track)),
    ("/v1/page", Endpoint::Single(MessageType::Page)),
    ("/v1/screen", Endpoint::Single(MessageType::Screen)),
    ("/v1/group", Endpoint::Single(MessageType::Group)),
    ("/v1/alias", Endpoint::Single(MessageType::Alias)),
    ("/v1/i", Endpoint::Single(MessageType::Identify)),
    ("/v1/t", Endpoint::Single(MessageType::Track)),
    ("/v1/p", Endpoint::Single(MessageType::Page)),
    ("/v1/s", Endpoint::Single(MessageType::Screen)),
    ("/v1/g", Endpoint::Single(MessageType::Group)),
    ("/v1/a", Endpoint::Single(MessageType::Alias)),
    ("/v1/batch", Endpoint::Batch),
    ("/v1/import", Endpoint::Batch),
    ("/v1/b", Endpoint::Batch),
];

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for &(path, endpoint) in PATHS {
        let handler = move |State(state): State<AppState>, headers: HeaderMap, body: Body| async move {
            ingest_request(&state, endpoint, &headers, body).await
        };
        router = router.route(path, post(handler)).route(&format!("{path}/"), post(handler));
    }
    router
}

async fn ingest_request(
    state: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    check_content_type(headers)?;
    // The body is read before a slot is taken: a client that sends it slowly (or never) holds a
    // connection, never a slot, until the body deadline answers it 408.
    let bytes = read_body(headers, body).await?;
    // Shed load before doing any work, so an overloaded server stays responsive and SDKs back off.
    let Ok(_permit) = state.inflight.clone().try_acquire_owned() else {
        return Err(ApiError::new(ErrorCode::Overloaded).retry_after(1));
    };
    state.metrics.inflight.inc();
    let started = Instant::now();
    let result = ingest_permitted(state, endpoint, headers, bytes).await;
    state.metrics.inflight.dec();
    state.metrics.ingest_seconds.observe(started.elapsed().as_secs_f64());
    result
}

async fn ingest_permitted(
    state: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let bytes = decode(headers, bytes)?;
    let received_at = state.now();
    let write_key = header_write_key(headers);
    let signals = ingest::RequestSignals { write_key: write_key.as_deref(), gpc: gpc(headers)?, received_at };
    let ingested = ingest::ingest(state, endpoint, &bytes, &signals).await?;
    for (source, outcome) in &ingested.outcomes {
        state.metrics.events.get_or_create(&EventLabels { source: source.clone(), outcome }).inc();
    }
    for (source, path, reason) in &ingested.drops {
        state.metrics.count_drop(source, path, reason);
    }
    Ok(Json(ingested.answer))
}

/// `Sec-GPC: 1` is the browser's Global Privacy Control; the header has no other value, so any
/// other is refused rather than read as a choice the person may not have made.
fn gpc(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut values = headers.get_all("sec-gpc").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(false),
        (Some(value), None) if value.as_bytes().trim_ascii() == b"1" => Ok(true),
        _ => Err(ApiError::with_message(
            ErrorCode::InvalidRequest,
            "Sec-GPC is 1 (Global Privacy Control) when sent; send it once, or not at all",
        )),
    }
}

/// Browsers send `text/plain` to avoid a CORS preflight; SDKs send `application/json`; some send
/// nothing. Anything else is a client mistake worth naming, and so is a type that cannot be read
/// (bytes beyond visible ASCII) or two of them: taking either for absent would store what the
/// client did not mean to send.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = values.next() else { return Ok(()) };
    if values.next().is_some() {
        return Err(ApiError::with_message(
            ErrorCode::UnsupportedMediaType,
            "send one Content-Type: application/json or text/plain",
        ));
    }
    let Ok(value) = value.to_str() else {
        return Err(ApiError::with_message(
            ErrorCode::UnsupportedMediaType,
            "the Content-Type is not readable text; send application/json or text/plain",
        ));
    };
    let media_type = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/json" | "text/plain" | "" => Ok(()),
        // The RudderStack node SDK gzips its JSON batch and axios labels the Buffer as a form; no
        // form is ever gzipped by a browser, so this pair can only be that SDK's JSON, which the
        // body parser still has to accept as JSON.
        "application/x-www-form-urlencoded" if is_gzip(headers) => Ok(()),
        other => Err(ApiError::with_message(
            ErrorCode::UnsupportedMediaType,
            format!("content type {other:?} is not accepted; send application/json or text/plain"),
        )),
    }
}

fn too_large() -> ApiError {
    ApiError::with_message(
        ErrorCode::RequestTooLarge,
        format!("a request body may be at most {} KB", MAX_REQUEST_BYTES / 1024),
    )
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_REQUEST_BYTES) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(ApiError::with_message(
            ErrorCode::InvalidJson,
            format!("the body could not be read: {error}"),
        )),
    }
}

fn is_gzip(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let first = values.next().and_then(|value| value.to_str().ok());
    values.next().is_none()
        && first.is_some_and(|value| matches!(value.trim().to_ascii_lowercase().as_str(), "gzip" | "x-gzip"))
}

/// Decompresses a gzip body (analytics-python with `gzip=True`, analytics-kotlin), refusing to
/// inflate beyond the request limit, so a small "zip bomb" cannot exhaust memory.
fn decode(headers: &HeaderMap, bytes: Bytes) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .unwrap_or_default();
    match encoding.as_str() {
        "" | "identity" => Ok(bytes),
        "gzip" | "x-gzip" => {
            let mut inflated = Vec::with_capacity(bytes.len() * 4);
            let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX) + 1;
            flate2::read::MultiGzDecoder::new(bytes.as_ref())
                .take(limit)
                .read_to_end(&mut inflated)
                .map_err(|error| {
                    ApiError::with_message(
                        ErrorCode::InvalidGzip,
                        format!("the gzip body is damaged: {error}"),
                    )
                })?;
            if inflated.len() > MAX_REQUEST_BYTES {
                return Err(too_large());
            }
            Ok(Bytes::from(inflated))
        }
        other => Err(ApiError::with_message(
            ErrorCode::UnsupportedEncoding,
            format!("content encoding {other:?} is not accepted; send gzip or nothing"),
        )),
    }
}

/// The write key from `Authorization`: HTTP Basic with the key as user name (`key:` or `key`,
/// base64), or a Bearer token (SDKs that send Bearer also send the key in the body, which wins).
fn header_write_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
        (!user.is_empty()).then(|| user.to_owned())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        (!credentials.is_empty()).then(|| credentials.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn write_keys_from_authorization() {
        let basic = |text: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text));
        assert_eq!(header_write_key(&with_auth(&basic("wk_123:"))).as_deref(), Some("wk_123"));
        assert_eq!(header_write_key(&with_auth(&basic("wk_123"))).as_deref(), Some("wk_123"));
        assert_eq!(header_write_key(&with_auth("Bearer wk_456")).as_deref(), Some("wk_456"));
        assert_eq!(header_write_key(&with_auth(&basic(":"))), None);
        assert_eq!(header_write_key(&with_auth("Basic !!!")), None);
        assert_eq!(header_write_key(&with_auth("Digest x")), None);
        assert_eq!(header_write_key(&HeaderMap::new()), None);
    }
}
