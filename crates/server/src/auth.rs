//! Who is calling the brand API: a `Bearer` API key resolved by the application to a [`Caller`]
//! before any handler runs, and the client address rate limits count; and request bodies and query
//! strings read into the one error shape.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
pub use tactful_app::Caller;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let token = bearer(parts).ok_or_else(|| ApiError::new(ErrorCode::MissingApiKey))?;
        let ClientAddress(client) = ClientAddress::of(parts, state);
        Ok(tactful_app::keys::authenticate(state, &token, client).await?)
    }
}

/// The address a request came from, as rate limits count it: the last entry of the configured
/// `client_address_header` (set by a trusted proxy, which appends the address it saw), else the
/// connection's peer; `None` when neither is known (then limits per client do not apply).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl ClientAddress {
    pub fn of(parts: &Parts, state: &AppState) -> ClientAddress {
        let forwarded = state.client_address_header.as_deref().and_then(|name| {
            let last =
                parts.headers.get_all(name).iter().next_back()?.to_str().ok()?.rsplit(',').next()?.trim();
            // `X-Forwarded-For` holds bare addresses; `Forwarded`-style `for=` and ports are allowed.
            let last = last.strip_prefix("for=").unwrap_or(last).trim_matches('"');
            last.parse::<IpAddr>()
                .ok()
                .or_else(|| last.parse::<SocketAddr>().ok().map(|address| address.ip()))
                .or_else(|| last.trim_start_matches('[').split(']').next()?.parse().ok())
        });
        let peer = || parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
        ClientAddress(forwarded.or_else(peer))
    }
}

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<ClientAddress, Infallible> {
        Ok(ClientAddress::of(parts, state))
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
