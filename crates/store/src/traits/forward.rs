//! Forwarding's side of the store: a cursor per destination over committed events, claimed with a
//! lease (one instance at a time per destination, so each person's events stay in order), moved
//! only once the destination acknowledged, with the counts the console and metrics show.

use crate::{ForwardClaim, ForwardEvent, ForwardPosition, ForwardProgress, ForwardStatus, Result};
use async_trait::async_trait;

/// Cursors of forwarding destinations.
#[async_trait]
pub trait ForwardStore: Send + Sync {
    /// Gives each of these destinations that has no cursor yet one at the end of the log (it
    /// receives what arrives from now on; `forward_rewind` replays older events).
    async fn forward_start(&self, destinations: Vec<String>, now: i64) -> Result<()>;

    /// Claims `destination`'s cursor for `lease_ms` if it is due and nobody holds it; `None`
    /// otherwise. While the lease runs no other caller, here or on another instance, claims it.
    async fn forward_claim(&self, destination: &str, now: i64, lease_ms: i64)
    -> Result<Option<ForwardClaim>>;

    /// Up to `limit` committed events after `after`, in the order the cursor moves (each person's
    /// in the order they arrived), only those surely committed by `now`.
    async fn forward_events(
        &self,
        after: &ForwardPosition,
        now: i64,
        limit: u32,
    ) -> Result<Vec<ForwardEvent>>;

    /// Moves the claimed cursor to `to`, adds `progress` to its counts, and releases the claim.
    /// `false` (and nothing written) if the lease was lost to another caller.
    async fn forward_advance(
        &self,
        claim: &ForwardClaim,
        to: &ForwardPosition,
        progress: ForwardProgress,
        now: i64,
    ) -> Result<bool>;

    /// Records a failed attempt at the events after the claimed position and releases the claim,
    /// due again at `retry_at`. `false` if the lease was lost.
    async fn forward_fail(&self, claim: &ForwardClaim, error: &str, retry_at: i64, now: i64) -> Result<bool>;

    /// Moves `destination`'s cursor back to the first event that arrived at or after `since` (never
    /// forward), so what is permitted now is sent again. `false` if it has no cursor.
    async fn forward_rewind(&self, destination: &str, since: i64) -> Result<bool>;

    /// Every destination's counts and lag, in destination order.
    async fn forward_status(&self) -> Result<Vec<ForwardStatus>>;
}
