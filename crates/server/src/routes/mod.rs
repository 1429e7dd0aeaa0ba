//! The router: every route (the API under `/v1`, the web pages, operations), the JSON fallbacks for unknown paths and methods, CORS for browser
//! sources, and the request-logging middleware that logs internal errors once.

mod assets;
mod console;
mod me;
mod next_integrations;
mod ops;
mod privacy;
pub mod v1;

use std::collections::HashSet;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::AppState;
use crate::error::{ApiError, ErrorCode, InternalDetail, RateLimitedBy};
use crate::metrics::{LimitLabels, RequestLabels, RouteLabels};

pub fn router(state: AppState) -> Router {
    // Every route is guarded (limits, deadlines, errors in the JSON shape); for pages inside the
    // layer that shows errors as pages to browsers.
    let guard = middleware::from_fn_with_state(state.clone(), crate::limits::guard);
    // The web pages: errors as pages for browsers, and the security headers pages need.
    let pages = Router::new()
        .merge(me::routes())
        .merge(console::routes())
        .merge(privacy::routes())
        .merge(assets::routes())
        .layer(guard.clone())
        .layer(middleware::from_fn_with_state(state.clone(), crate::web::html_errors))
        .layer(middleware::from_fn(crate::web::security_headers));
    let api = Router::new()
        .merge(v1::tracking::routes())
        .merge(v1::projects::routes())
        .merge(next_integrations::routes())
        .merge(v1::subjects::routes())
        .merge(v1::requests::routes())
        .merge(v1::consents::routes())
        .merge(v1::audit::routes())
        .merge(v1::catalog::routes())
        .merge(v1::personalize::routes())
        .merge(v1::insights::routes())
        .merge(v1::me::routes())
        .merge(ops::routes())
        .fallback(|| async { ApiError::new(ErrorCode::NotFound) })
        .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed) })
        .layer(guard);
    Router::new()
        .merge(pages)
        .merge(api)
        .layer(middleware::from_fn_with_state(state.clone(), log_requests))
        .layer(cors(&state))
        .layer(middleware::from_fn(crate::limits::nosniff))
        .with_state(state)
}

/// CORS for browser sources, on the paths browsers send to (tracking and settings) and only for
/// origins some source lists (any, if one lists `*`). analytics.js sends `Authorization`, so
/// preflights must allow it. Other paths never grant cross-origin access.
fn cors(state: &AppState) -> CorsLayer {
    let origins: HashSet<String> =
        state.catalog.sources().iter().flat_map(|source| source.allowed_origins.iter().cloned()).collect();
    let any = origins.contains("*");
    let allow_origin = AllowOrigin::predicate(move |origin: &HeaderValue, request: &Parts| {
        let path = request.uri.path().trim_end_matches('/');
        let browser_path = v1::tracking::PATHS.iter().any(|(tracking, _)| *tracking == path)
            || (path.starts_with("/v1/projects/") && path.ends_with("/settings"));
        browser_path
            && (any || origin.to_str().is_ok_and(|origin| origins.contains(origin.trim_end_matches('/'))))
    });
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::CONTENT_ENCODING])
        .max_age(Duration::from_secs(24 * 3600))
}

/// Logs each request by its route template (never the raw path, which may hold a write key), counts
/// it (and, when a rate limit refused it, which), and writes the detail of internal errors, which
/// clients never see.
async fn log_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unmatched)".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { route: route.clone(), status: status.as_u16() })
        .inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&RouteLabels { method: method.to_string(), route: route.clone() })
        .observe(elapsed_ms / 1000.0);
    if let Some(RateLimitedBy(limit)) = response.extensions().get::<RateLimitedBy>() {
        state.metrics.rate_limited.get_or_create(&LimitLabels { limit: limit.clone() }).inc();
    }
    if let Some(InternalDetail(detail)) = response.extensions().get::<InternalDetail>() {
        tracing::error!(%method, %route, status = status.as_u16(), elapsed_ms, error = %detail, "request failed");
    } else if status.is_client_error() {
        tracing::info!(%method, %route, status = status.as_u16(), elapsed_ms, "request refused");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), elapsed_ms, "request");
    }
    response.into_response()
}
