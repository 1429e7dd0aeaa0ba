//! Forwarding cursors on SQLite: positions are `events.seq`, which the one writer assigns in commit
//! order, so a reader never sees a smaller one commit after a larger one. Cursor changes go through
//! the writer; reads of events and counts use a reader connection.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::{
    ForwardClaim, ForwardEvent, ForwardPosition, ForwardProgress, ForwardStatus, ForwardStore, Result,
};

fn position(seq: i64) -> ForwardPosition {
    ForwardPosition { seq, ..ForwardPosition::default() }
}

fn events(conn: &Connection, after: i64, limit: u32) -> Result<Vec<ForwardEvent>> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, subject_id, source, dedupe, type, name, timestamp, received_at, sealed FROM events
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = statement.query_map(params![after, limit], |row| {
        Ok((row.get::<_, i64>(0)?, super::subjects::event_row(row, 1)?))
    })?;
    rows.map(|row| {
        let (seq, event) = row?;
        Ok(ForwardEvent { position: position(seq), event: super::subjects::stored_event(event)? })
    })
    .collect()
}

fn claim(conn: &Connection, destination: &str, now: i64, lease_ms: i64) -> Result<Option<ForwardClaim>> {
    let lease = crate::shared::new_lease_id();
    Ok(conn
        .prepare_cached(
            "UPDATE forward_cursors SET lease = ?2, lease_until = ?3
             WHERE destination = ?1 AND lease_until <= ?4 AND not_before <= ?4
             RETURNING position, attempts, failing_since",
        )?
        .query_row(params![destination, lease, now.saturating_add(lease_ms), now], |row| {
            Ok(ForwardClaim {
                destination: destination.to_owned(),
                lease: lease.clone(),
                position: position(row.get(0)?),
                attempts: row.get(1)?,
                failing_since: row.get(2)?,
            })
        })
        .optional()?)
}

fn advance(
    conn: &Connection,
    claim: &ForwardClaim,
    to: &ForwardPosition,
    progress: &ForwardProgress,
    now: i64,
) -> Result<bool> {
    let moved = conn
        .prepare_cached(
            "UPDATE forward_cursors SET position = ?3, lease = NULL, lease_until = 0,
             not_before = 0, attempts = 0, failing_since = NULL, delivered = delivered + ?4, updated_at = ?5,
             failures = failures + (?6 IS NOT NULL), last_error = COALESCE(?6, last_error)
             WHERE destination = ?1 AND lease = ?2",
        )?
        .execute(params![
            claim.destination,
            claim.lease,
            to.seq,
            i64::try_from(progress.delivered).unwrap_or(i64::MAX),
            now,
            progress.failed
        ])?;
    if moved != 1 {
        return Ok(false);
    }
    let mut count = conn.prepare_cached(
        "INSERT INTO forward_refusals (destination, reason, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (destination, reason) DO UPDATE SET count = count + excluded.count",
    )?;
    for (reason, refused) in &progress.refused {
        count.execute(params![claim.destination, reason, i64::try_from(*refused).unwrap_or(i64::MAX)])?;
    }
    Ok(true)
}

fn status(conn: &Connection) -> Result<Vec<ForwardStatus>> {
    let mut refusals: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut statement = conn.prepare_cached("SELECT destination, reason, count FROM forward_refusals")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (destination, reason, count) = row?;
        refusals.entry(destination).or_default().insert(reason, u64::try_from(count).unwrap_or(0));
    }
    let mut statement = conn.prepare_cached(
        "SELECT c.destination, c.delivered, c.failures, c.last_error,
                (SELECT e.received_at FROM events e WHERE e.seq > c.position ORDER BY e.seq LIMIT 1)
         FROM forward_cursors c ORDER BY c.destination",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(ForwardStatus {
            destination: row.get(0)?,
            delivered: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            failures: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
            last_error: row.get(3)?,
            pending_since: row.get(4)?,
            refused: BTreeMap::new(),
        })
    })?;
    let mut found = Vec::new();
    for row in rows {
        let mut status = row?;
        status.refused = refusals.remove(&status.destination).unwrap_or_default();
        found.push(status);
    }
    Ok(found)
}

#[async_trait]
impl ForwardStore for SqliteStore {
    async fn forward_start(&self, destinations: Vec<String>, now: i64) -> Result<()> {
        self.write(move |writer| {
            let end: i64 =
                writer.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0))?;
            let mut insert = writer.conn.prepare_cached(
                "INSERT INTO forward_cursors (destination, position, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (destination) DO NOTHING",
            )?;
            for destination in &destinations {
                insert.execute(params![destination, end, now])?;
            }
            Ok(())
        })
        .await
    }

    async fn forward_claim(
        &self,
        destination: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<ForwardClaim>> {
        let destination = destination.to_owned();
        self.write(move |writer| claim(&writer.conn, &destination, now, lease_ms)).await
    }

    async fn forward_events(
        &self,
        after: &ForwardPosition,
        _now: i64,
        limit: u32,
    ) -> Result<Vec<ForwardEvent>> {
        let after = after.seq;
        self.read(move |conn| events(conn, after, limit)).await
    }

    async fn forward_advance(
        &self,
        claim: &ForwardClaim,
        to: &ForwardPosition,
        progress: ForwardProgress,
        now: i64,
    ) -> Result<bool> {
        let (claim, to) = (claim.clone(), to.clone());
        self.write(move |writer| advance(&writer.conn, &claim, &to, &progress, now)).await
    }

    async fn forward_fail(&self, claim: &ForwardClaim, error: &str, retry_at: i64, now: i64) -> Result<bool> {
        let (claim, error) = (claim.clone(), error.to_owned());
        self.write(move |writer| {
            Ok(writer
                .conn
                .prepare_cached(
                    "UPDATE forward_cursors SET lease = NULL, lease_until = 0, not_before = ?3,
                     attempts = attempts + 1, failing_since = COALESCE(failing_since, ?4),
                     failures = failures + 1, last_error = ?5, updated_at = ?4
                     WHERE destination = ?1 AND lease = ?2",
                )?
                .execute(params![claim.destination, claim.lease, retry_at, now, error])?
                == 1)
        })
        .await
    }

    async fn forward_rewind(&self, destination: &str, since: i64) -> Result<bool> {
        let destination = destination.to_owned();
        self.write(move |writer| {
            // The scan is the operator's, once per replay; ingestion keeps no index on arrival.
            let first: Option<i64> = writer.conn.query_row(
                "SELECT MIN(seq) FROM events WHERE received_at >= ?1",
                params![since],
                |row| row.get(0),
            )?;
            let end: i64 =
                writer.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0))?;
            let to = first.map_or(end, |first| first - 1);
            Ok(writer
                .conn
                .prepare_cached(
                    "UPDATE forward_cursors SET position = MIN(position, ?2), not_before = 0, attempts = 0,
                     failing_since = NULL, lease = NULL, lease_until = 0 WHERE destination = ?1",
                )?
                .execute(params![destination, to])?
                == 1)
        })
        .await
    }

    async fn forward_status(&self) -> Result<Vec<ForwardStatus>> {
        self.read(status).await
    }
}
