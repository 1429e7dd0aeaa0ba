//! Rate limits on PostgreSQL: a take locks its bucket's window row for the transaction, so takes
//! from every instance count one after another; one that loses a race (a deadlock or serialization
//! failure) is retried whole.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PostgresStore;
use crate::rate::{judge, window_start};
use crate::{LimitStore, Rate, Result, StoreError};

/// Tries before a take that keeps losing races is reported unavailable.
const MAX_ATTEMPTS: u32 = 8;

/// What `bucket` counted in the window starting at `start`, locking that row when `lock`.
async fn counted(conn: &mut PgConnection, bucket: &str, start: i64, lock: bool) -> Result<u64> {
    let sql = if lock {
        "SELECT count FROM rate_limits WHERE bucket = $1 AND window_start = $2 FOR UPDATE"
    } else {
        "SELECT count FROM rate_limits WHERE bucket = $1 AND window_start = $2"
    };
    let count: Option<i64> =
        sqlx::query_scalar(sql).bind(bucket).bind(start).fetch_optional(&mut *conn).await?;
    Ok(u64::try_from(count.unwrap_or(0)).unwrap_or(0))
}

async fn try_take(
    store: &PostgresStore,
    bucket: &str,
    amount: u64,
    limit: u64,
    window_ms: i64,
    now: i64,
) -> Result<Rate> {
    let start = window_start(now, window_ms);
    let mut tx = store.pool.begin().await?;
    // The window's row exists before it is locked, so concurrent takes queue on it.
    sqlx::query(
        "INSERT INTO rate_limits (bucket, window_start, count, expires_at) VALUES ($1, $2, 0, $3)
         ON CONFLICT (bucket, window_start) DO NOTHING",
    )
    .bind(bucket)
    .bind(start)
    .bind(start.saturating_add(window_ms.saturating_mul(2)))
    .execute(&mut *tx)
    .await?;
    let current = counted(&mut tx, bucket, start, true).await?;
    let previous = counted(&mut tx, bucket, start - window_ms, false).await?;
    let rate = judge(previous, current, amount, limit, window_ms, now - start);
    if rate.allowed() {
        sqlx::query("UPDATE rate_limits SET count = count + $3 WHERE bucket = $1 AND window_start = $2")
            .bind(bucket)
            .bind(start)
            .bind(i64::try_from(amount).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(rate)
}

#[async_trait]
impl LimitStore for PostgresStore {
    async fn rate_take(
        &self,
        bucket: &str,
        amount: u64,
        limit: u64,
        window_ms: i64,
        now: i64,
    ) -> Result<Rate> {
        let mut delay = Duration::from_millis(2);
        let mut attempt = 1;
        loop {
            match try_take(self, bucket, amount, limit, window_ms, now).await {
                Err(StoreError::Conflict(reason)) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, %reason, "a concurrent rate-limit take won; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(100));
                    attempt += 1;
                }
                Err(StoreError::Conflict(reason)) => {
                    return Err(StoreError::Unavailable(format!(
                        "gave up a rate-limit take after {attempt} conflicting attempts: {reason}"
                    )));
                }
                other => return other,
            }
        }
    }

    async fn rate_check(&self, bucket: &str, limit: u64, window_ms: i64, now: i64) -> Result<Rate> {
        let start = window_start(now, window_ms);
        let mut conn = self.pool.acquire().await?;
        let current = counted(&mut conn, bucket, start, false).await?;
        let previous = counted(&mut conn, bucket, start - window_ms, false).await?;
        Ok(judge(previous, current, 1, limit, window_ms, now - start))
    }

    async fn forget_expired(&self, now: i64) -> Result<u64> {
        let deleted = sqlx::query("DELETE FROM rate_limits WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
