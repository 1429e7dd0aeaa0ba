//! Rate limits on SQLite: a take reads and counts on the writer (one at a time, so two takes never
//! both fit in the last room); a check reads from a reader connection.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::rate::{judge, window_start};
use crate::{LimitStore, Rate, Result};

/// What `bucket` counted in the window starting at `start`.
fn counted(conn: &Connection, bucket: &str, start: i64) -> Result<u64> {
    let count: Option<i64> = conn
        .prepare_cached("SELECT count FROM rate_limits WHERE bucket = ?1 AND window_start = ?2")?
        .query_row(params![bucket, start], |row| row.get(0))
        .optional()?;
    Ok(u64::try_from(count.unwrap_or(0)).unwrap_or(0))
}

/// Judges `amount` more for `bucket` at `now`.
fn ask(conn: &Connection, bucket: &str, amount: u64, limit: u64, window_ms: i64, now: i64) -> Result<Rate> {
    let start = window_start(now, window_ms);
    let previous = counted(conn, bucket, start - window_ms)?;
    let current = counted(conn, bucket, start)?;
    Ok(judge(previous, current, amount, limit, window_ms, now - start))
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn rate_take(
        &self,
        bucket: &str,
        amount: u64,
        limit: u64,
        window_ms: i64,
        now: i64,
    ) -> Result<Rate> {
        let bucket = bucket.to_owned();
        self.write(move |writer| {
            let rate = ask(&writer.conn, &bucket, amount, limit, window_ms, now)?;
            if rate.allowed() {
                let start = window_start(now, window_ms);
                writer
                    .conn
                    .prepare_cached(
                        "INSERT INTO rate_limits (bucket, window_start, count, expires_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (bucket, window_start) DO UPDATE SET count = count + excluded.count",
                    )?
                    .execute(params![
                        bucket,
                        start,
                        i64::try_from(amount).unwrap_or(i64::MAX),
                        start.saturating_add(window_ms.saturating_mul(2))
                    ])?;
            }
            Ok(rate)
        })
        .await
    }

    async fn rate_check(&self, bucket: &str, limit: u64, window_ms: i64, now: i64) -> Result<Rate> {
        let bucket = bucket.to_owned();
        self.read(move |conn| ask(conn, &bucket, 1, limit, window_ms, now)).await
    }

    async fn forget_expired(&self, now: i64) -> Result<u64> {
        self.write(move |writer| {
            let deleted = writer
                .conn
                .prepare_cached("DELETE FROM rate_limits WHERE expires_at <= ?1")?
                .execute([now])?;
            Ok(u64::try_from(deleted).unwrap_or(0))
        })
        .await
    }
}
