//! The pages' own assets, embedded in the binary: a privacy product loads nothing from anyone else.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

const CSS: &str = include_str!("../../assets/tactful.css");
const JS: &str = include_str!("../../assets/tactful.js");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/assets/tactful.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/assets/tactful.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .route("/assets/favicon.svg", get(|| async { asset("image/svg+xml", FAVICON) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body)
}
