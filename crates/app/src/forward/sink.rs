//! The contract between the forwarding pipeline and each kind of destination it delivers to: the
//! pipeline decides what may leave (purposes, consent, minimization, identifiers) and hands a sink
//! only that; a sink only carries it over the wire and says whether the other side took it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Who an event is about, as one destination may know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The destination's own keyed token for the person: stable for that destination, different
    /// for every other one, so two destinations cannot join what they hold.
    pub token: String,
    /// The raw identifiers this destination is declared to know, by kind (`user_id`, `email`,
    /// `anonymous_id`, …). Empty when it may know none.
    pub identifiers: BTreeMap<String, Vec<String>>,
}

/// One event as one destination may receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    /// The event's `messageId`: the idempotency key, the same on every retry and replay.
    pub message_id: String,
    /// The Segment call: `track`, `identify`, `page`, `screen` or `group`.
    pub kind: String,
    /// The event name of a `track` call.
    pub event: Option<String>,
    /// When the event happened (clamped to its arrival).
    pub timestamp: OffsetDateTime,
    pub person: Recipient,
    /// Properties (or traits of an `identify`) that serve a purpose the person permits for this
    /// destination, keyed by their name within the event (not the catalog path).
    pub properties: Map<String, Value>,
    /// The destination purposes the person permitted when the event was sent.
    pub purposes: Vec<String>,
}

/// What a destination must do about a person it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Delete everything held about the person.
    Erase,
    /// Stop processing the person's data (keep it only where the law requires).
    Restrict,
}

/// A person a destination must erase or restrict, named by everything it was ever given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forget {
    /// The data-subject request this belongs to (its id), carried as the idempotency key.
    pub request: String,
    pub removal: Removal,
    pub person: Recipient,
}

/// Why a delivery did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// Worth trying again later (timeouts, 5xx, 429, connection refused); otherwise the destination
    /// refused what it was sent (4xx other than 408 and 429, a bad schema).
    pub retryable: bool,
    /// What the other side said, for the attempt log and the console. Never personal data.
    pub message: String,
}

/// A kind of destination: a signed webhook, a Segment-protocol endpoint, a PostgreSQL warehouse.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers `batch` (all for this destination, in order for each person). `Ok` means the other
    /// side acknowledged every event; a delivery may be repeated, with the same `message_id`s.
    async fn deliver(&self, batch: &[Forwarded]) -> Result<(), SinkError>;

    /// Erases or restricts a person, named by every identifier and the token this destination was
    /// given. `Ok` means the other side acknowledged (for a warehouse: the rows are gone).
    async fn forget(&self, forget: &Forget) -> Result<(), SinkError>;
}
