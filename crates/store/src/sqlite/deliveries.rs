//! Deliveries to destinations on SQLite: each written with its outbox message in the transaction of
//! the change that causes it, claimed from the outbox, and settled attempt by attempt.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tactful_domain::audit::AuditEvent;
use tactful_domain::request::RequestStatus;

use super::SqliteStore;
use super::audit::append_audit;
use super::requests::{history, load_request, request_audit, settled};
use super::writer::Writer;
use crate::requests::{DeliveryAttempt, DeliveryOutcome, DeliveryRecord, DeliveryStatus, NewDelivery};
use crate::{DeliveryStore, OutboxMessage, Result, StoreError};

/// Writes deliveries and their outbox messages.
pub(super) fn enqueue(conn: &Connection, deliveries: &[NewDelivery], now: i64) -> Result<()> {
    for delivery in deliveries {
        let inserted = conn
            .prepare_cached(
                "INSERT INTO deliveries (request_id, destination, message, status, created_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4) ON CONFLICT (request_id, destination) DO NOTHING",
            )?
            .execute(params![delivery.request, delivery.destination, delivery.message, now])?;
        if inserted == 1 {
            conn.prepare_cached(
                "INSERT INTO outbox (id, topic, payload, created_at, not_before) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![
                crate::shared::new_message_id(),
                crate::shared::delivery_topic(&delivery.message),
                delivery.payload,
                now
            ])?;
        }
    }
    Ok(())
}

pub(super) fn deliveries(conn: &Connection, request: &str) -> Result<Vec<DeliveryRecord>> {
    let mut statement = conn.prepare_cached(
        "SELECT request_id, destination, message, status, attempts, created_at, last_attempt_at, last_error,
                acknowledged_at
         FROM deliveries WHERE request_id = ?1 ORDER BY destination",
    )?;
    let rows = statement.query_map([request], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, u32>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, Option<i64>>(6)?,
            row.get::<_, Option<String>>(7)?,
            row.get::<_, Option<i64>>(8)?,
        ))
    })?;
    rows.map(|row| {
        let (
            request,
            destination,
            message,
            status,
            attempts,
            created_at,
            last_attempt_at,
            last_error,
            acknowledged_at,
        ) = row?;
        Ok(DeliveryRecord {
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Internal(format!("unknown delivery status {status:?}")))?,
            request,
            destination,
            message,
            attempts,
            created_at,
            last_attempt_at,
            last_error,
            acknowledged_at,
        })
    })
    .collect()
}

pub(super) fn delivery_attempts(
    conn: &Connection,
    request: &str,
    destination: &str,
) -> Result<Vec<DeliveryAttempt>> {
    let mut statement = conn.prepare_cached(
        "SELECT at, status_code, error FROM delivery_attempts WHERE request_id = ?1 AND destination = ?2 ORDER BY at, rowid",
    )?;
    let rows = statement.query_map(params![request, destination], |row| {
        Ok(DeliveryAttempt { at: row.get(0)?, status_code: row.get(1)?, error: row.get(2)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn record_delivery(
    writer: &mut Writer,
    outbox_id: &str,
    request: &str,
    destination: &str,
    outcome: &DeliveryOutcome,
    now: i64,
) -> Result<Option<RequestStatus>> {
    let current: Option<(String, String, u32)> = writer
        .conn
        .prepare_cached(
            "SELECT status, message, attempts FROM deliveries WHERE request_id = ?1 AND destination = ?2",
        )?
        .query_row(params![request, destination], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let Some((status, message, attempts)) = current else {
        return Err(StoreError::Internal(format!("no delivery of {request} to {destination}")));
    };
    if status != DeliveryStatus::Pending.as_str() {
        // A duplicate delivery (a claim that outlived its lease): already settled.
        writer.conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute([outbox_id])?;
        return Ok(None);
    }
    let attempt = attempts + 1;
    let (status_code, error) = match outcome {
        DeliveryOutcome::Acknowledged { status_code } => (Some(*status_code), None),
        DeliveryOutcome::Failed { status_code, error, .. } => (*status_code, Some(error.clone())),
    };
    writer
        .conn
        .prepare_cached("INSERT INTO delivery_attempts (request_id, destination, at, status_code, error) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![request, destination, now, status_code, error])?;
    let (new_status, outcome_text) = match outcome {
        DeliveryOutcome::Acknowledged { .. } => (DeliveryStatus::Acknowledged, "acknowledged".to_owned()),
        DeliveryOutcome::Failed { retry_at: Some(_), error, .. } => {
            (DeliveryStatus::Pending, format!("failed: {error}"))
        }
        DeliveryOutcome::Failed { retry_at: None, error, .. } => {
            (DeliveryStatus::GaveUp, format!("gave up: {error}"))
        }
    };
    writer
        .conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?3, attempts = ?4, last_attempt_at = ?5, last_error = ?6,
                 acknowledged_at = CASE WHEN ?3 = 'acknowledged' THEN ?5 ELSE acknowledged_at END
             WHERE request_id = ?1 AND destination = ?2",
        )?
        .execute(params![request, destination, new_status.as_str(), attempt, now, error])?;
    match outcome {
        DeliveryOutcome::Failed { retry_at: Some(retry_at), error, .. } => {
            writer
                .conn
                .prepare_cached(
                    "UPDATE outbox SET not_before = ?2, leased_until = NULL, last_error = ?3 WHERE id = ?1",
                )?
                .execute(params![outbox_id, retry_at, error])?;
        }
        _ => {
            writer.conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute([outbox_id])?;
        }
    }
    let mut audit = vec![AuditEvent::Delivery {
        request: request.to_owned(),
        destination: destination.to_owned(),
        message,
        attempt,
        outcome: outcome_text,
    }];
    let mut settled_status = None;
    if let Some(mut record) = load_request(&writer.conn, request)?
        && record.status == RequestStatus::WaitingOnDestinations
        && let Some(status) = settled(&writer.conn, request)?
    {
        writer
            .conn
            .prepare_cached("UPDATE requests SET status = ?2, open = 0, completed_at = ?3, lease_until = NULL, updated_at = ?3 WHERE id = ?1")?
            .execute(params![request, status.as_str(), now])?;
        record.status = status;
        let note = match status {
            RequestStatus::Completed => "every destination acknowledged".to_owned(),
            _ => "some destinations never acknowledged".to_owned(),
        };
        history(&writer.conn, request, now, status, &note)?;
        audit.push(request_audit(writer, &record, &note));
        settled_status = Some(status);
    }
    append_audit(writer, &audit, now)?;
    Ok(settled_status)
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>, now: i64) -> Result<()> {
        self.write(move |writer| enqueue(&writer.conn, &deliveries, now)).await
    }

    async fn deliveries(&self, request: &str) -> Result<Vec<DeliveryRecord>> {
        let request = request.to_owned();
        self.read(move |conn| deliveries(conn, &request)).await
    }

    async fn delivery_attempts(&self, request: &str, destination: &str) -> Result<Vec<DeliveryAttempt>> {
        let (request, destination) = (request.to_owned(), destination.to_owned());
        self.read(move |conn| delivery_attempts(conn, &request, &destination)).await
    }

    async fn record_delivery(
        &self,
        outbox_id: &str,
        request: &str,
        destination: &str,
        outcome: DeliveryOutcome,
        now: i64,
    ) -> Result<Option<RequestStatus>> {
        let (outbox_id, request, destination) =
            (outbox_id.to_owned(), request.to_owned(), destination.to_owned());
        self.write(move |writer| record_delivery(writer, &outbox_id, &request, &destination, &outcome, now))
            .await
    }

    async fn outbox_claim(
        &self,
        topic: &str,
        limit: u32,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxMessage>> {
        let topic = topic.to_owned();
        self.write(move |writer| {
            let mut statement = writer.conn.prepare_cached(
                "UPDATE outbox SET leased_until = ?3 + ?4, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox
                              WHERE topic = ?1 AND not_before <= ?3 AND (leased_until IS NULL OR leased_until <= ?3)
                              ORDER BY not_before, id LIMIT ?2)
                 RETURNING id, topic, payload, attempts, created_at",
            )?;
            let mut claimed = statement
                .query_map(params![topic, limit, now, lease_ms], |row| {
                    Ok(OutboxMessage {
                        id: row.get(0)?,
                        topic: row.get(1)?,
                        payload: row.get(2)?,
                        attempts: row.get(3)?,
                        created_at: row.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(claimed)
        })
        .await
    }

    async fn outbox_complete(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |writer| {
            writer.conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute([&id])?;
            Ok(())
        })
        .await
    }

    async fn outbox_retry(&self, id: &str, not_before: i64, error: &str) -> Result<()> {
        let (id, error) = (id.to_owned(), error.to_owned());
        self.write(move |writer| {
            writer
                .conn
                .prepare_cached(
                    "UPDATE outbox SET not_before = ?2, leased_until = NULL, last_error = ?3 WHERE id = ?1",
                )?
                .execute(params![id, not_before, error])?;
            Ok(())
        })
        .await
    }

    async fn outbox_oldest(&self) -> Result<Vec<(String, i64)>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached("SELECT topic, MIN(created_at) FROM outbox GROUP BY topic ORDER BY topic")?;
            let oldest = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(oldest)
        })
        .await
    }
}
