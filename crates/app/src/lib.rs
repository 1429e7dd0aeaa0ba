//! Tactful's use cases, one place each, for every door: the HTTP server and the CLI both call these
//! functions and never each other. **Boundary:** this crate knows no HTTP framework (no axum, askama
//! or tower); it takes parsed input, applies the catalog's rules through the store and the vault,
//! and returns results and [`AppError`]s that a door renders.

pub mod audit_log;
pub mod config;
pub mod consents;
pub mod console;
pub mod destinations;
pub mod error;
pub mod exports;
pub mod forward;
pub mod hooks;
pub mod ingest;
pub mod insights;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod notify;
pub mod outbound;
pub mod personalize;
pub mod preferences;
pub mod reads;
pub mod requests;
pub mod subjects;
pub mod tokens;
pub mod work;

use std::path::Path;
use std::sync::Arc;

use tactful_domain::catalog::Catalog;
use tactful_domain::policy::Policy;
use tactful_store::Store;
use tactful_vault::Vault;

pub use config::Config;
pub use error::{AppError, ErrorCode};
pub use hooks::{Change, Hooks};
pub use keys::Caller;

/// What every use case works with: the catalog and its compiled policy, the store, the vault, the
/// engines, and the clock. One per process; the server and the CLI hold it in an `Arc`.
pub struct App {
    pub catalog: Arc<Catalog>,
    /// The catalog's compiled access policy.
    pub policy: Arc<Policy>,
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
    /// Where verification and sign-in codes go.
    pub notifier: Arc<dyn notify::Notifier>,
    /// The client for destinations and webhooks.
    pub outbound: outbound::Outbound,
    /// First wait before retrying a destination (ms).
    pub delivery_retry_base_ms: i64,
    /// The engines told when a person's consent, restriction or data changes, or they are erased.
    pub hooks: Vec<Arc<dyn Hooks>>,
    /// Wakes the request worker when a request was made or verified.
    pub wake_requests: Arc<tokio::sync::Notify>,
    /// The recommendation engine, when the catalog declares a personalization purpose.
    pub personalization: Option<Arc<personalize::Personalization>>,
    /// How the web pages are reached and how long their links and sessions last.
    pub web: WebSettings,
    /// The deadlines of heavy work (queries, exports, releases, the quality check).
    pub limits: Arc<work::Limits>,
    /// Rate limits on sign-in codes, API keys and ingestion.
    pub rate_limits: limits::Limits,
    /// The sinks of forwarding destinations, made on first use.
    pub sinks: forward::Sinks,
    clock: Arc<dyn Clock>,
}

/// Where the time comes from: the system's, or a test's.
pub trait Clock: Send + Sync {
    /// Unix milliseconds now.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        now_millis()
    }
}

/// A clock a test moves by hand, so what depends on time (expiry, deadlines) is tested without waiting.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn at(millis: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(millis))
    }

    pub fn set(&self, millis: i64) {
        self.0.store(millis, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
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

/// Why Tactful did not start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the catalog {path}: {error}")]
    CatalogUnreadable { path: String, error: std::io::Error },
    #[error("the catalog is invalid:\n{0}")]
    CatalogInvalid(String),
    #[error(transparent)]
    Key(#[from] keys::master::KeyError),
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

impl App {
    /// Opens everything the use cases need: catalog, master key, database, vault, engines.
    pub async fn open(config: &Config, catalog: Catalog) -> Result<App, StartError> {
        let (master, from) = keys::master::load_keys(config)?;
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
        let limits = Arc::new(work::Limits::from_config(config));
        let personalization = personalize::Personalization::new(&catalog)
            .map(|engine| Arc::new(engine.with_limits(limits.clone())));
        let mut hooks: Vec<Arc<dyn Hooks>> = Vec::new();
        if let Some(engine) = &personalization {
            hooks.push(engine.clone());
        }
        let app = App {
            policy: Arc::new(Policy::new(catalog.clone())),
            catalog,
            store: opened.store,
            vault: opened.vault,
            notifier,
            outbound,
            delivery_retry_base_ms: i64::try_from(config.delivery_retry_base_ms.max(1)).unwrap_or(i64::MAX),
            hooks,
            wake_requests: Arc::new(tokio::sync::Notify::new()),
            personalization,
            web,
            limits,
            rate_limits: limits::Limits::from_config(config),
            sinks: forward::Sinks::default(),
            clock: Arc::new(SystemClock),
        };
        // Destinations new to the catalog receive events from the moment they were added.
        forward::start(&app).await?;
        Ok(app)
    }

    /// The same application reading the time from `clock` (tests move time by hand).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> App {
        self.clock = clock;
        self
    }

    /// Unix milliseconds now, by this application's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Tells every engine that a person changed (their consent, restriction or data) or was
    /// erased, so none keeps using what it may no longer use. Returns once every engine has acted.
    pub async fn tell(&self, subject: &str, change: Change) -> Result<(), tactful_store::StoreError> {
        for hook in &self.hooks {
            hook.changed(self, subject, change).await?;
        }
        Ok(())
    }
}

/// Unix milliseconds now, by the system clock (for what no [`App`] is at hand for, like file names).
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

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_000);
        assert_eq!(clock.now(), 1_000);
        clock.advance(500);
        assert_eq!(clock.now(), 1_500);
        clock.set(7);
        assert_eq!(clock.now(), 7);
    }
}
