//! Forwarding cursors on PostgreSQL: positions are `(received_at, timestamp, source, dedupe)`, read through
//! the `events_arrival` index. Instances commit in any order, so a pass reads only events that
//! arrived more than [`SETTLE_MS`] ago: a transaction still committing is not passed by. Claims
//! are one conditional update, so of several instances one holds a destination at a time.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::Row;

use super::PostgresStore;
use crate::{
    ForwardClaim, ForwardEvent, ForwardPosition, ForwardProgress, ForwardStatus, ForwardStore, Result,
    StoredEvent,
};

/// How long after arriving an event is surely committed (or refused): ingestion commits a batch
/// well within this, and forwarding lags at least by it on PostgreSQL.
pub const SETTLE_MS: i64 = 2_000;

fn position(row: &sqlx::postgres::PgRow) -> Result<ForwardPosition> {
    Ok(ForwardPosition {
        seq: 0,
        at: row.try_get("position_at")?,
        timestamp: row.try_get("position_ts")?,
        source: row.try_get("position_source")?,
        dedupe: row.try_get("position_dedupe")?,
    })
}

#[async_trait]
impl ForwardStore for PostgresStore {
    async fn forward_start(&self, destinations: Vec<String>, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO forward_cursors
               (destination, position_at, position_ts, position_source, position_dedupe, updated_at)
             SELECT d, $2, -9223372036854775807, '', ''::bytea, $3 FROM UNNEST($1::text[]) AS d
             ON CONFLICT (destination) DO NOTHING",
        )
        .bind(&destinations)
        .bind(now.saturating_sub(SETTLE_MS))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forward_claim(
        &self,
        destination: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<ForwardClaim>> {
        let lease = crate::shared::new_lease_id();
        let row = sqlx::query(
            "UPDATE forward_cursors SET lease = $2, lease_until = $3
             WHERE destination = $1 AND lease_until <= $4 AND not_before <= $4
             RETURNING position_at, position_ts, position_source, position_dedupe, attempts, failing_since",
        )
        .bind(destination)
        .bind(&lease)
        .bind(now.saturating_add(lease_ms))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ForwardClaim {
                destination: destination.to_owned(),
                lease,
                position: position(&row)?,
                attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                failing_since: row.try_get("failing_since")?,
            })
        })
        .transpose()
    }

    async fn forward_events(
        &self,
        after: &ForwardPosition,
        now: i64,
        limit: u32,
    ) -> Result<Vec<ForwardEvent>> {
        let rows = sqlx::query(
            "SELECT subject_id, source, dedupe, type, name, timestamp, received_at, sealed FROM events
             WHERE (received_at, timestamp, source, dedupe) > ($1, $6, $2, $3) AND received_at < $4
             ORDER BY received_at, timestamp, source, dedupe LIMIT $5",
        )
        .bind(after.at)
        .bind(&after.source)
        .bind(&after.dedupe)
        .bind(now.saturating_sub(SETTLE_MS))
        .bind(i64::from(limit))
        .bind(after.timestamp)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let dedupe: Vec<u8> = row.try_get("dedupe")?;
                let event = StoredEvent {
                    subject: row.try_get("subject_id")?,
                    source: row.try_get("source")?,
                    dedupe: crate::shared::dedupe_from(dedupe.clone())?,
                    kind: row.try_get("type")?,
                    name: row.try_get("name")?,
                    timestamp: row.try_get("timestamp")?,
                    received_at: row.try_get("received_at")?,
                    sealed: row.try_get("sealed")?,
                };
                let position = ForwardPosition {
                    seq: 0,
                    at: event.received_at,
                    timestamp: event.timestamp,
                    source: event.source.clone(),
                    dedupe,
                };
                Ok(ForwardEvent { position, event })
            })
            .collect()
    }

    async fn forward_advance(
        &self,
        claim: &ForwardClaim,
        to: &ForwardPosition,
        progress: ForwardProgress,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE forward_cursors SET position_at = $3, position_source = $4, position_dedupe = $5, position_ts = $9,
             lease = NULL, lease_until = 0, not_before = 0, attempts = 0, failing_since = NULL,
             delivered = delivered + $6, updated_at = $7,
             failures = failures + CASE WHEN $8::text IS NULL THEN 0 ELSE 1 END,
             last_error = COALESCE($8::text, last_error)
             WHERE destination = $1 AND lease = $2",
        )
        .bind(&claim.destination)
        .bind(&claim.lease)
        .bind(to.at)
        .bind(&to.source)
        .bind(&to.dedupe)
        .bind(i64::try_from(progress.delivered).unwrap_or(i64::MAX))
        .bind(now)
        .bind(&progress.failed)
        .bind(to.timestamp)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Ok(false);
        }
        let (reasons, counts): (Vec<String>, Vec<i64>) = progress
            .refused
            .into_iter()
            .map(|(reason, count)| (reason, i64::try_from(count).unwrap_or(i64::MAX)))
            .unzip();
        sqlx::query(
            "INSERT INTO forward_refusals (destination, reason, count)
             SELECT $1, r, c FROM UNNEST($2::text[], $3::bigint[]) AS t(r, c)
             ON CONFLICT (destination, reason) DO UPDATE SET count = forward_refusals.count + excluded.count",
        )
        .bind(&claim.destination)
        .bind(&reasons)
        .bind(&counts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn forward_fail(&self, claim: &ForwardClaim, error: &str, retry_at: i64, now: i64) -> Result<bool> {
        let failed = sqlx::query(
            "UPDATE forward_cursors SET lease = NULL, lease_until = 0, not_before = $3,
             attempts = attempts + 1, failing_since = COALESCE(failing_since, $4),
             failures = failures + 1, last_error = $5, updated_at = $4
             WHERE destination = $1 AND lease = $2",
        )
        .bind(&claim.destination)
        .bind(&claim.lease)
        .bind(retry_at)
        .bind(now)
        .bind(error)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(failed == 1)
    }

    async fn forward_rewind(&self, destination: &str, since: i64) -> Result<bool> {
        let rewound = sqlx::query(
            "UPDATE forward_cursors SET
               position_ts = CASE WHEN position_at >= $2 THEN -9223372036854775807 ELSE position_ts END,
               position_source = CASE WHEN position_at >= $2 THEN '' ELSE position_source END,
               position_dedupe = CASE WHEN position_at >= $2 THEN ''::bytea ELSE position_dedupe END,
               position_at = LEAST(position_at, $2),
               not_before = 0, attempts = 0, failing_since = NULL, lease = NULL, lease_until = 0
             WHERE destination = $1",
        )
        .bind(destination)
        .bind(since)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(rewound == 1)
    }

    async fn forward_status(&self) -> Result<Vec<ForwardStatus>> {
        let mut refusals: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for row in sqlx::query("SELECT destination, reason, count FROM forward_refusals")
            .fetch_all(&self.pool)
            .await?
        {
            refusals
                .entry(row.try_get("destination")?)
                .or_default()
                .insert(row.try_get("reason")?, u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0));
        }
        let rows = sqlx::query(
            "SELECT c.destination, c.delivered, c.failures, c.last_error,
                    (SELECT e.received_at FROM events e
                     WHERE (e.received_at, e.timestamp, e.source, e.dedupe)
                         > (c.position_at, c.position_ts, c.position_source, c.position_dedupe)
                     ORDER BY e.received_at, e.timestamp, e.source, e.dedupe LIMIT 1) AS pending_since
             FROM forward_cursors c ORDER BY c.destination",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let destination: String = row.try_get("destination")?;
                Ok(ForwardStatus {
                    refused: refusals.remove(&destination).unwrap_or_default(),
                    destination,
                    delivered: u64::try_from(row.try_get::<i64, _>("delivered")?).unwrap_or(0),
                    failures: u64::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(0),
                    last_error: row.try_get("last_error")?,
                    pending_since: row.try_get("pending_since")?,
                })
            })
            .collect()
    }
}
