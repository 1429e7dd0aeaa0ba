//! Rate limits every instance shares: counts per bucket and window, kept in the database so that a
//! limit holds however many instances answer.

use async_trait::async_trait;

use crate::{Rate, Result};

/// Sliding-window rate limits. A bucket names what is limited (a keyed hash of an address or a
/// client, never the value); `limit` may be taken per `window_ms`, the previous window weighed by
/// how much of it the sliding window overlaps.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Takes `amount` from `bucket` if all of it fits under the limit at `now` (atomically across
    /// instances); takes nothing otherwise.
    async fn rate_take(
        &self,
        bucket: &str,
        amount: u64,
        limit: u64,
        window_ms: i64,
        now: i64,
    ) -> Result<Rate>;

    /// Whether one more would fit now, without taking it.
    async fn rate_check(&self, bucket: &str, limit: u64, window_ms: i64, now: i64) -> Result<Rate>;

    /// Deletes the windows no limit looks at any more; returns how many.
    async fn forget_expired(&self, now: i64) -> Result<u64>;
}
