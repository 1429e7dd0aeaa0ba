//! Tactful's HTTP server (axum). **Boundary:** only this crate knows HTTP and JSON wire shapes; it
//! turns requests into domain calls and store operations, and domain results into responses.

pub mod auth;
pub mod chart;
pub mod config;
pub mod console;
pub mod dataset_export;
pub mod destinations;
pub mod error;
pub mod export;
mod ingest;
pub mod insights;
pub mod jobs;
pub mod keys;
pub mod me;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod personalize;
pub mod requests;
pub mod routes;
pub mod session;
pub mod web;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tactful_domain::catalog::Catalog;
use tactful_domain::policy::Policy;
use tactful_store::Store;
use tactful_vault::Vault;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use config::Config;
pub use routes::v1::tracking::PATHS as TRACKING_PATHS;

/// What every request handler shares.
pub struct AppState {
    pub catalog: Arc<Catalog>,
    /// The catalog's compiled access policy.
    pub policy: Arc<Policy>,
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    pub metrics: Arc<metrics::Metrics>,
    /// Ingestion requests allowed at once; the rest get 429.
    pub inflight: Arc<Semaphore>,
    /// Where verification codes go.
    pub notifier: Arc<dyn notify::Notifier>,
    /// The client for destinations and webhooks.
    pub outbound: outbound::Outbound,
    /// First wait before retrying a destination (ms).
    pub delivery_retry_base_ms: i64,
    /// What else must forget an erased person (models, analytics inputs).
    pub forget: Vec<Arc<dyn requests::Forget>>,
    /// Wakes the request worker when a request was made or verified.
    pub wake_requests: Arc<tokio::sync::Notify>,
    /// The recommendation engine, when the catalog declares a personalization purpose.
    pub personalization: Option<Arc<personalize::Personalization>>,
    /// How the web pages are reached and how long their links and sessions last.
    pub web: WebSettings,
}

/// The web pages' settings, from the configuration.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Where customers reach this server (`https://privacy.example.com`), without a trailing slash.
    pub public_url: String,
    pub link_ttl_ms: i64,
    pub session_ttl_ms: i64,
    /// Whether cookies are marked Secure: always, except over plain HTTP to a non-local address
    /// (where browsers would drop them; such a deployment needs TLS before it faces customers).
    pub secure_cookies: bool,
}

impl WebSettings {
    pub fn from_config(config: &Config) -> WebSettings {
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen))
            .trim_end_matches('/')
            .to_owned();
        let host = public_url.split("://").nth(1).unwrap_or_default();
        let local = host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
        let minutes = |m: u64| i64::try_from(m.max(1)).unwrap_or(i64::MAX / 60_000).saturating_mul(60_000);
        WebSettings {
            secure_cookies: public_url.starts_with("https://") || local,
            public_url,
            link_ttl_ms: minutes(config.link_minutes),
            session_ttl_ms: minutes(config.session_minutes),
        }
    }
}

/// Why the server did not start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the catalog {path}: {error}")]
    CatalogUnreadable { path: String, error: std::io::Error },
    #[error("the catalog is invalid:\n{0}")]
    CatalogInvalid(String),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("cannot open the database")]
    Store(#[from] tactful_store::StoreError),
    #[error("cannot listen on {address}: {error}")]
    Listen { address: String, error: std::io::Error },
    #[error(
        "the notifier {0:?} is not understood: use file:DIR, or webhook:https://… with TACTFUL_NOTIFIER_SECRET set"
    )]
    Notifier(String),
}

/// Reads and validates a catalog file; the errors are those of `tactful catalog check`.
pub fn load_catalog(path: &Path) -> Result<Catalog, StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| StartError::CatalogUnreadable { path: path.display().to_string(), error })?;
    Catalog::parse(&text)
        .map_err(|errors| StartError::CatalogInvalid(errors.render(&path.display().to_string())))
}

impl AppState {
    /// Opens everything the server needs: catalog, master key, database, vault.
    pub async fn open(config: &Config, catalog: Catalog) -> Result<AppState, StartError> {
        let (master, from) = keys::load_keys(config)?;
        tracing::info!(
            %from,
            key = %master.current.id(),
            previous = master.previous.len(),
            "loaded the master key"
        );
        let opened = tactful_store::open_with(&config.database, master, &config.store_options()).await?;
        let catalog = Arc::new(catalog);
        let outbound =
            outbound::Outbound::new(std::time::Duration::from_millis(config.delivery_timeout_ms.max(1)));
        let notifier: Arc<dyn notify::Notifier> =
            match (config.notifier.split_once(':'), &config.notifier_secret) {
                (Some(("file", dir)), _) if !dir.is_empty() => {
                    Arc::new(notify::FileNotifier { dir: dir.into() })
                }
                (Some(("webhook", _)), Some(secret)) if config.notifier.starts_with("webhook:http") => {
                    Arc::new(notify::WebhookNotifier {
                        url: config.notifier["webhook:".len()..].to_owned(),
                        secret: secret.clone(),
                        outbound: outbound.clone(),
                    })
                }
                _ => return Err(StartError::Notifier(config.notifier.clone())),
            };
        let web = WebSettings::from_config(config);
        if !web.secure_cookies {
            tracing::warn!(
                public_url = %web.public_url,
                "the pages are reached over plain HTTP on a non-local address, so their cookies cannot be Secure: serve Tactful behind HTTPS and set --public-url https://…"
            );
        }
        let personalization = personalize::Personalization::new(&catalog).map(Arc::new);
        let mut forget: Vec<Arc<dyn requests::Forget>> = Vec::new();
        if let Some(engine) = &personalization {
            forget.push(Arc::new(personalize::ForgetInModel {
                engine: engine.clone(),
                store: opened.store.clone(),
                vault: opened.vault.clone(),
            }));
        }
        Ok(AppState {
            policy: Arc::new(Policy::new(catalog.clone())),
            catalog,
            store: opened.store,
            vault: opened.vault,
            metrics: Arc::new(metrics::Metrics::new()),
            inflight: Arc::new(Semaphore::new(config.max_inflight.max(1))),
            notifier,
            outbound,
            delivery_retry_base_ms: i64::try_from(config.delivery_retry_base_ms.max(1)).unwrap_or(i64::MAX),
            forget,
            wake_requests: Arc::new(tokio::sync::Notify::new()),
            personalization,
            web,
        })
    }
}

/// The whole HTTP application, ready to serve or to call in tests with `tower::ServiceExt::oneshot`.
pub fn app(state: Arc<AppState>) -> axum::Router {
    routes::router(state)
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// Binds the configured address with a message that says what to do when it is taken.
pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|error| StartError::Listen { address: config.listen.to_string(), error })
}

/// Unix milliseconds now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_point_at_the_public_address_and_cookies_are_secure_unless_they_cannot_be() {
        let web = WebSettings::from_config(&Config::default());
        assert_eq!(web.public_url, "http://127.0.0.1:8080");
        assert!(web.secure_cookies, "browsers keep Secure cookies on loopback");
        assert_eq!(web.link_ttl_ms, 30 * 60_000);
        let public = |url: &str| {
            WebSettings::from_config(&Config { public_url: Some(url.into()), ..Config::default() })
        };
        let https = public("https://privacy.fernhill.example/");
        assert_eq!(https.public_url, "https://privacy.fernhill.example", "no trailing slash");
        assert!(https.secure_cookies);
        assert!(!public("http://192.168.1.5:8080").secure_cookies, "a browser would drop them");
        assert!(public("http://localhost:8080").secure_cookies);
    }
}
