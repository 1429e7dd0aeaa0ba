//! Tactful's HTTP server (axum). **Boundary:** only this crate knows HTTP, cookies and JSON wire
//! shapes; every handler parses a request, calls one `tactful_app` use case and renders its result
//! (or its error) as JSON or a page.

pub mod auth;
pub mod connections;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod session;
pub mod web;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use tactful_app::{App, Config, StartError};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use routes::v1::tracking::PATHS as TRACKING_PATHS;

/// What every request handler shares: the application and what only HTTP needs (metrics, the
/// ingestion slots). Handlers reach the application's parts through it (`state.catalog`).
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub metrics: Arc<metrics::Metrics>,
    /// Ingestion requests allowed at once; the rest get 429.
    pub inflight: Arc<Semaphore>,
    /// How long a request's head, body and answer may take, and a shutdown.
    pub limits: limits::Limits,
    /// The header a trusted proxy names the client in, if configured (see [`auth::ClientAddress`]).
    pub client_address_header: Option<Arc<str>>,
}

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

impl AppState {
    /// The HTTP state of an application, with the configured ingestion slots.
    pub fn new(app: Arc<App>, config: &Config) -> AppState {
        AppState {
            app,
            metrics: Arc::new(metrics::Metrics::new()),
            inflight: Arc::new(Semaphore::new(config.max_inflight.max(1))),
            limits: limits::Limits::new(config),
            client_address_header: config
                .client_address_header
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(Arc::from),
        }
    }
}

/// The whole HTTP application, ready to serve or to call in tests with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Serves until `shutdown` completes, then finishes the requests in flight within the configured
/// shutdown deadline, under the configured timeouts (see [`connections`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits;
    connections::serve(listener, router(state), limits, shutdown).await
}

/// Binds the configured address with a message that says what to do when it is taken.
pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|error| StartError::Listen { address: config.listen.to_string(), error })
}
