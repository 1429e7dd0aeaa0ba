//! How engines learn that a person changed, without calling each other by name: the consent path,
//! the request engine and erasure tell [`App::tell`](crate::App::tell), and every engine that uses
//! personal data (the recommendation model today) implements [`Hooks`] to act on it at once.

use std::future::Future;
use std::pin::Pin;

use tactful_store::StoreError;

use crate::App;

/// What changed about a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Their consent changed: given, withdrawn, expired, by any door.
    Consent,
    /// Their processing was restricted, or the restriction lifted.
    Restriction,
    /// Their data changed outside ingestion: a rectification, declared interests.
    Data,
    /// They were erased: nothing of theirs may remain.
    Erased,
}

/// The future a hook returns.
pub type Acting<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// An engine that must act when a person changes. It acts before the change is answered (a
/// withdrawal has left the model when the API answers), and must be idempotent: a resumed request
/// may tell it again.
pub trait Hooks: Send + Sync {
    fn changed<'a>(&'a self, app: &'a App, subject: &'a str, change: Change) -> Acting<'a>;
}
