//! What forwarding keeps in the store: one cursor per destination over the log of committed events
//! (so ingestion writes nothing more), claimed with a lease by one instance at a time, with what
//! the destination received, was refused (per reason) and failed.

use std::collections::BTreeMap;

use crate::StoredEvent;

/// Where a destination's cursor stands in the log of committed events. Opaque outside the store:
/// each backend orders events its own way (SQLite by commit sequence, PostgreSQL by arrival, then
/// by when they happened, so a person's events of one batch keep their order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardPosition {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) timestamp: i64,
    pub(crate) source: String,
    pub(crate) dedupe: Vec<u8>,
}

/// A committed event and the position just past it.
#[derive(Debug, Clone)]
pub struct ForwardEvent {
    pub position: ForwardPosition,
    pub event: StoredEvent,
}

/// A destination's cursor, claimed: only the holder of `lease` may move it until the lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardClaim {
    pub destination: String,
    pub lease: String,
    pub position: ForwardPosition,
    /// Failed attempts at the events after `position` so far.
    pub attempts: u32,
    /// When the first of those attempts failed (Unix ms), if one did.
    pub failing_since: Option<i64>,
}

/// How a destination's forwarding stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardStatus {
    pub destination: String,
    pub delivered: u64,
    /// Refusals by reason.
    pub refused: BTreeMap<String, u64>,
    pub failures: u64,
    pub last_error: Option<String>,
    /// When the oldest event past the cursor arrived (Unix ms); `None` when there is none.
    pub pending_since: Option<i64>,
}

/// What a pass over a destination's events came to, recorded as the cursor moves past them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardProgress {
    pub delivered: u64,
    pub refused: BTreeMap<String, u64>,
    /// Why the batch was skipped undelivered (the destination refused it for good, or for longer
    /// than its horizon): counted as a failure, kept as the last error.
    pub failed: Option<String>,
}
