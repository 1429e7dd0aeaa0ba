//! `GET /next-integrations/middleware/tactful-tracking-plan/latest/tactful-tracking-plan.js.gz`: the
//! source middleware analytics.js loads from its CDN (this server, through `cdnURL`) because the
//! settings document enables it. It drops, in the browser, every track event the catalog's tracking
//! plan does not declare: the `plan` alone cannot, as analytics-next still sends plan-blocked events
//! to its `Segment.io` destination (marked `All: false`) and leaves dropping them to the server.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Map, Value};

use crate::AppState;

/// The middleware's name in `enabledMiddleware`; analytics-next loads
/// `{cdn}/next-integrations/middleware/{name}/latest/{name}.js.gz` and reads `window["{name}Middleware"]`.
pub const NAME: &str = "tactful-tracking-plan";

/// The middleware, with `DECLARED_EVENTS` standing for the object of declared event names.
const SCRIPT: &str = include_str!("tracking_plan_middleware.js");

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/next-integrations/middleware/tactful-tracking-plan/latest/tactful-tracking-plan.js.gz",
        get(middleware),
    )
}

async fn middleware(State(state): State<AppState>) -> impl IntoResponse {
    let declared: Map<String, Value> =
        state.catalog.events().iter().map(|event| (event.name.clone(), Value::Bool(true))).collect();
    // JSON is a JavaScript expression, so the names need no escaping of their own.
    let declared = Value::Object(declared).to_string();
    let script = SCRIPT.replace("DECLARED_EVENTS", &declared);
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // The plan changes with the catalog, which changes with a restart: keep it briefly.
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        script,
    )
}
