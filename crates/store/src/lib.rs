//! Storage: the [`Store`] trait the rest of Tactful programs against (one trait per part of the
//! product, [`IngestStore`] to [`OperationsStore`], which `Store` gathers), and one implementation per
//! database, each owning its migrations. The backend is chosen once, from the database URL, by
//! [`open`]; everything else holds an `Arc<dyn Store>`.
//!
//! **Boundary:** a store writes only what the vault sealed or blinded. Plaintext personal values
//! arrive in [`IngestEvent`]s and leave through [`tactful_vault::SubjectKey::seal`] inside the same
//! transaction that writes them.

pub mod audit;
mod audit_queue;
pub mod backup;
pub mod erasures;
mod event;
mod forward;
mod model;
mod postgres;
mod rate;
mod read;
mod records;
pub mod requests;
mod resolve;
pub mod seal_context;
mod shared;
mod signed;
mod sqlite;
#[doc(hidden)]
pub mod testing;
mod traits;
mod window;

use std::sync::Arc;

use tactful_vault::{MasterKeys, Vault, VaultError};

pub use event::Arrival;
pub use forward::{ForwardClaim, ForwardEvent, ForwardPosition, ForwardProgress, ForwardStatus};
pub use postgres::PostgresStore;
pub use rate::Rate;
pub use read::{FamilyKeys, OpenEvent, OpenIdentity, OpenProfileValue};
pub use records::{
    ApiKeyRecord, Budget, CodeOutcome, DropCount, FamilyActivity, IdentityClaim, IngestEvent, IngestOutcome,
    ItemRecord, LedgerEntry, ModelChange, OutboxMessage, RewrapBatch, SignInCode, SpendOutcome, Stats,
    StoredAuditEntry, StoredEvent, StoredIdentity, StoredProfileValue, StoredReceipt, SubjectData,
    SubjectState, WrappedKeys,
};
pub use requests::{
    DeliveryAttempt, DeliveryOutcome, DeliveryPayload, DeliveryRecord, DeliveryStatus, EventCursor,
    LegalHold, NewDelivery, NewRequest, PurgeReport, RequestHistoryEntry, RequestRecord, RequestUpdate,
    RequestView, RetentionReport, ShredOutcome, ShredPlan, Suppression,
};
pub use shared::{DELIVERY_TOPIC, DELIVERY_TOPICS, RIGHTS_TOPIC, SIGN_IN_TOPIC, new_receipt_id};
pub use signed::signed_consent;
pub use sqlite::SqliteStore;
pub use traits::{
    AnalyticsStore, AuditStore, ConsentStore, CredentialStore, DeliveryStore, ForwardStore, IngestStore,
    LimitStore, ModelStore, OperationsStore, RequestStore, SessionStore, Store, StoreTesting, SubjectStore,
    WebSession, WebSessionKind,
};
pub use window::{Scan, WindowCursor, WindowEvent, WindowPage};

/// Errors of a store. The first group is about the database as a whole; `Internal` is a bug or
/// corruption and is logged, never shown to clients in detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database URL {0:?} is not supported: use sqlite:PATH (or a file path) or postgres://…")]
    UnsupportedUrl(String),
    #[error(
        "the database schema is at version {found}, newer than this tactful knows ({known}); \
         run a newer tactful, or restore a backup made for this version"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Another instance changed what this write depended on; the write can be retried.
    #[error("a concurrent change conflicted with this write: {0}")]
    Conflict(String),
    #[error("internal storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A store opened with its vault.
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
}

/// Opens the database named by `url` (`sqlite:PATH`, a plain file path, or `postgres://…`), migrates
/// it, and opens the vault with `master` and the database's index root (created on first start).
pub async fn open(url: &str, master: impl Into<MasterKeys>) -> Result<Opened> {
    open_with(url, master, &Options::default()).await
}

/// How to reach the database; only PostgreSQL uses these.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections in the pool of each server instance.
    pub pool_size: u32,
    /// How long to keep retrying an unreachable database at start before giving up.
    pub connect_for: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { pool_size: 16, connect_for: std::time::Duration::from_secs(30) }
    }
}

/// [`open`] with explicit [`Options`].
pub async fn open_with(url: &str, master: impl Into<MasterKeys>, options: &Options) -> Result<Opened> {
    let master = master.into();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (store, vault) = PostgresStore::open(url, master, options).await?;
        return Ok(Opened { store: Arc::new(store), vault });
    }
    let path = sqlite_path(url).ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
    let (store, vault) = SqliteStore::open(path, master).await?;
    Ok(Opened { store: Arc::new(store), vault })
}

/// The file path of a SQLite URL: `sqlite:PATH`, `sqlite://PATH`, or a plain path.
pub fn sqlite_path(url: &str) -> Option<&str> {
    if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return (!rest.is_empty()).then_some(rest);
    }
    (!url.contains("://") && !url.is_empty()).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert_eq!(sqlite_path("sqlite:data/tactful.db"), Some("data/tactful.db"));
        assert_eq!(sqlite_path("sqlite:///var/lib/tactful.db"), Some("/var/lib/tactful.db"));
        assert_eq!(sqlite_path("tactful.db"), Some("tactful.db"));
        assert_eq!(sqlite_path("mysql://host/db"), None);
        assert_eq!(sqlite_path("sqlite:"), None);
    }
}
