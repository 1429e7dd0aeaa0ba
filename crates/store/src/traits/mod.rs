//! The storage interface, one trait per part of the product, and [`Store`], which is all of them:
//! the rest of Tactful holds an `Arc<dyn Store>` and calls any of their methods on it.

mod analytics;
mod audit;
mod consent;
mod credentials;
mod deliveries;
mod forward;
mod ingest;
mod limits;
mod model;
mod operations;
mod requests;
mod sessions;
mod subjects;
mod testing;

use std::any::Any;

pub use analytics::AnalyticsStore;
pub use audit::AuditStore;
pub use consent::ConsentStore;
pub use credentials::CredentialStore;
pub use deliveries::DeliveryStore;
pub use forward::ForwardStore;
pub use ingest::IngestStore;
pub use limits::LimitStore;
pub use model::ModelStore;
pub use operations::OperationsStore;
pub use requests::RequestStore;
pub use sessions::{SessionStore, WebSession, WebSessionKind};
pub use subjects::SubjectStore;
pub use testing::StoreTesting;

/// The storage interface: every topic trait, implemented by each backend. Every method is safe to
/// call from many tasks and, for backends that support it, from many server instances at once.
///
/// Methods of the topic traits can be called on a `dyn Store` without importing them. `Any` lets
/// test support find the backend behind one ([`StoreTesting`]).
pub trait Store:
    IngestStore
    + SubjectStore
    + ConsentStore
    + AuditStore
    + CredentialStore
    + LimitStore
    + RequestStore
    + DeliveryStore
    + ForwardStore
    + ModelStore
    + AnalyticsStore
    + OperationsStore
    + SessionStore
    + Any
    + Send
    + Sync
    + 'static
{
    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    fn backend(&self) -> &'static str;
}
