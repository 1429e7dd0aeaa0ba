//! Deliveries to destinations on PostgreSQL: each written with its outbox message in the transaction
//! of the change that causes it, claimed by one instance at a time (`FOR UPDATE SKIP LOCKED` and a
//! lease), and settled attempt by attempt.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{PgConnection, Row};
use tactful_domain::audit::AuditEvent;
use tactful_domain::request::RequestStatus;
use tactful_vault::Vault;

use super::PostgresStore;
use super::audit::append_audit;
use super::requests::{attempts_param, history, load_request, request_audit, settled};
use crate::requests::{DeliveryAttempt, DeliveryOutcome, DeliveryRecord, DeliveryStatus, NewDelivery};
use crate::{DeliveryStore, OutboxMessage, Result, StoreError};

/// Writes deliveries and their outbox messages, within the caller's transaction. A delivery that
/// exists already (the same request and destination) is left alone, and gets no second message.
pub(super) async fn enqueue(conn: &mut PgConnection, deliveries: &[NewDelivery], now: i64) -> Result<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    // The first of a delivery named twice is the one written, as if one by one.
    let mut seen = HashSet::new();
    let unique: Vec<&NewDelivery> = deliveries
        .iter()
        .filter(|delivery| seen.insert((delivery.request.as_str(), delivery.destination.as_str())))
        .collect();
    let requests: Vec<&str> = unique.iter().map(|delivery| delivery.request.as_str()).collect();
    let destinations: Vec<&str> = unique.iter().map(|delivery| delivery.destination.as_str()).collect();
    let messages: Vec<&str> = unique.iter().map(|delivery| delivery.message.as_str()).collect();
    let inserted: HashSet<(String, String)> = sqlx::query(
        "INSERT INTO deliveries (request_id, destination, message, status, created_at)
         SELECT request_id, destination, message, 'pending', $4
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(request_id, destination, message)
         ON CONFLICT (request_id, destination) DO NOTHING
         RETURNING request_id, destination",
    )
    .bind(&requests)
    .bind(&destinations)
    .bind(&messages)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("request_id")?, row.try_get("destination")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let new: Vec<&&NewDelivery> = unique
        .iter()
        .filter(|delivery| inserted.contains(&(delivery.request.clone(), delivery.destination.clone())))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = new.iter().map(|_| crate::shared::new_message_id()).collect();
    let payloads: Vec<&[u8]> = new.iter().map(|delivery| delivery.payload.as_slice()).collect();
    let topics: Vec<&str> =
        new.iter().map(|delivery| crate::shared::delivery_topic(&delivery.message)).collect();
    sqlx::query(
        "INSERT INTO outbox (id, topic, payload, created_at, not_before)
         SELECT id, topic, payload, $4, $4 FROM UNNEST($1::text[], $2::bytea[], $3::text[]) AS t(id, payload, topic)",
    )
    .bind(&ids)
    .bind(&payloads)
    .bind(&topics)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn deliveries(conn: &mut PgConnection, request: &str) -> Result<Vec<DeliveryRecord>> {
    sqlx::query(
        "SELECT request_id, destination, message, status, attempts, created_at, last_attempt_at, last_error,
                acknowledged_at
         FROM deliveries WHERE request_id = $1 ORDER BY destination",
    )
    .bind(request)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let status: String = row.try_get("status")?;
        Ok(DeliveryRecord {
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Internal(format!("unknown delivery status {status:?}")))?,
            request: row.try_get("request_id")?,
            destination: row.try_get("destination")?,
            message: row.try_get("message")?,
            attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
            created_at: row.try_get("created_at")?,
            last_attempt_at: row.try_get("last_attempt_at")?,
            last_error: row.try_get("last_error")?,
            acknowledged_at: row.try_get("acknowledged_at")?,
        })
    })
    .collect()
}

pub(super) async fn delivery_attempts(
    conn: &mut PgConnection,
    request: &str,
    destination: &str,
) -> Result<Vec<DeliveryAttempt>> {
    sqlx::query(
        "SELECT at, status_code, error FROM delivery_attempts WHERE request_id = $1 AND destination = $2 ORDER BY at",
    )
    .bind(request)
    .bind(destination)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(DeliveryAttempt {
            at: row.try_get("at")?,
            status_code: row
                .try_get::<Option<i32>, _>("status_code")?
                .map(|code| u16::try_from(code).unwrap_or(u16::MAX)),
            error: row.try_get("error")?,
        })
    })
    .collect()
}

pub(super) async fn record_delivery(
    conn: &mut PgConnection,
    vault: &Vault,
    outbox_id: &str,
    request: &str,
    destination: &str,
    outcome: &DeliveryOutcome,
    now: i64,
) -> Result<Option<RequestStatus>> {
    // The request first, then the delivery, as every writer of both does: deliveries of one request
    // recorded at once (and a move of the request) take turns, so the last of them sees the others
    // done and settles the request. A consent change's delivery has no request row to lock.
    sqlx::query("SELECT id FROM requests WHERE id = $1 FOR UPDATE")
        .bind(request)
        .fetch_optional(&mut *conn)
        .await?;
    let current = sqlx::query(
        "SELECT status, message, attempts FROM deliveries WHERE request_id = $1 AND destination = $2 FOR UPDATE",
    )
    .bind(request)
    .bind(destination)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(current) = current else {
        return Err(StoreError::Internal(format!("no delivery of {request} to {destination}")));
    };
    let status: String = current.try_get("status")?;
    let message: String = current.try_get("message")?;
    let attempts = u32::try_from(current.try_get::<i32, _>("attempts")?).unwrap_or(0);
    if status != DeliveryStatus::Pending.as_str() {
        // A duplicate delivery (a claim that outlived its lease): already settled.
        sqlx::query("DELETE FROM outbox WHERE id = $1").bind(outbox_id).execute(&mut *conn).await?;
        return Ok(None);
    }
    let attempt = attempts + 1;
    let (status_code, error) = match outcome {
        DeliveryOutcome::Acknowledged { status_code } => (Some(*status_code), None),
        DeliveryOutcome::Failed { status_code, error, .. } => (*status_code, Some(error.clone())),
    };
    sqlx::query(
        "INSERT INTO delivery_attempts (request_id, destination, at, status_code, error) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(request)
    .bind(destination)
    .bind(now)
    .bind(status_code.map(i32::from))
    .bind(&error)
    .execute(&mut *conn)
    .await?;
    let (new_status, outcome_text) = match outcome {
        DeliveryOutcome::Acknowledged { .. } => (DeliveryStatus::Acknowledged, "acknowledged".to_owned()),
        DeliveryOutcome::Failed { retry_at: Some(_), error, .. } => {
            (DeliveryStatus::Pending, format!("failed: {error}"))
        }
        DeliveryOutcome::Failed { retry_at: None, error, .. } => {
            (DeliveryStatus::GaveUp, format!("gave up: {error}"))
        }
    };
    let acknowledged_at = (new_status == DeliveryStatus::Acknowledged).then_some(now);
    sqlx::query(
        "UPDATE deliveries SET status = $3, attempts = $4, last_attempt_at = $5, last_error = $6,
             acknowledged_at = COALESCE($7, acknowledged_at)
         WHERE request_id = $1 AND destination = $2",
    )
    .bind(request)
    .bind(destination)
    .bind(new_status.as_str())
    .bind(attempts_param(attempt))
    .bind(now)
    .bind(&error)
    .bind(acknowledged_at)
    .execute(&mut *conn)
    .await?;
    match outcome {
        DeliveryOutcome::Failed { retry_at: Some(retry_at), error, .. } => {
            sqlx::query(
                "UPDATE outbox SET not_before = $2, leased_until = NULL, last_error = $3 WHERE id = $1",
            )
            .bind(outbox_id)
            .bind(retry_at)
            .bind(error)
            .execute(&mut *conn)
            .await?;
        }
        _ => {
            sqlx::query("DELETE FROM outbox WHERE id = $1").bind(outbox_id).execute(&mut *conn).await?;
        }
    }
    let mut audit = vec![AuditEvent::Delivery {
        request: request.to_owned(),
        destination: destination.to_owned(),
        message,
        attempt,
        outcome: outcome_text,
    }];
    let settled_status = settle_request(conn, vault, request, now, &mut audit).await?;
    append_audit(conn, &audit, now).await?;
    Ok(settled_status)
}

/// Moves a request waiting on its destinations to its final status once none is pending, with its
/// history line, and its audit entry added to `audit`. Returns the status it moved to, if it did.
async fn settle_request(
    conn: &mut PgConnection,
    vault: &Vault,
    request: &str,
    now: i64,
    audit: &mut Vec<AuditEvent>,
) -> Result<Option<RequestStatus>> {
    if let Some(mut record) = load_request(conn, request, false).await?
        && record.status == RequestStatus::WaitingOnDestinations
        && let Some(status) = settled(conn, request).await?
    {
        sqlx::query(
            "UPDATE requests SET status = $2, open = FALSE, completed_at = $3, lease_until = NULL, updated_at = $3
             WHERE id = $1",
        )
        .bind(request)
        .bind(status.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        record.status = status;
        let note = match status {
            RequestStatus::Completed => "every destination acknowledged",
            _ => "some destinations never acknowledged",
        };
        history(conn, request, now, status, note).await?;
        audit.push(request_audit(vault, &record, note));
        return Ok(Some(status));
    }
    Ok(None)
}

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        enqueue(&mut tx, &deliveries, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deliveries(&self, request: &str) -> Result<Vec<DeliveryRecord>> {
        let mut conn = self.pool.acquire().await?;
        deliveries(&mut conn, request).await
    }

    async fn delivery_attempts(&self, request: &str, destination: &str) -> Result<Vec<DeliveryAttempt>> {
        let mut conn = self.pool.acquire().await?;
        delivery_attempts(&mut conn, request, destination).await
    }

    async fn record_delivery(
        &self,
        outbox_id: &str,
        request: &str,
        destination: &str,
        outcome: DeliveryOutcome,
        now: i64,
    ) -> Result<Option<RequestStatus>> {
        let mut tx = self.pool.begin().await?;
        let settled =
            record_delivery(&mut tx, &self.vault, outbox_id, request, destination, &outcome, now).await?;
        tx.commit().await?;
        Ok(settled)
    }

    async fn outbox_claim(
        &self,
        topic: &str,
        limit: u32,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxMessage>> {
        // SKIP LOCKED: instances claiming at once each get different messages instead of waiting.
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until = $3 + $4, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE topic = $1 AND not_before <= $3 AND (leased_until IS NULL OR leased_until <= $3)
                          ORDER BY not_before, id LIMIT $2
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, topic, payload, attempts, created_at",
        )
        .bind(topic)
        .bind(i64::from(limit))
        .bind(now)
        .bind(lease_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .into_iter()
            .map(|row| {
                Ok(OutboxMessage {
                    id: row.try_get("id")?,
                    topic: row.try_get("topic")?,
                    payload: row.try_get("payload")?,
                    attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(claimed)
    }

    async fn outbox_complete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn outbox_retry(&self, id: &str, not_before: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET not_before = $2, leased_until = NULL, last_error = $3 WHERE id = $1")
            .bind(id)
            .bind(not_before)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_oldest(&self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT topic, MIN(created_at) AS oldest FROM outbox GROUP BY topic ORDER BY topic")
                .fetch_all(&self.pool)
                .await?;
        let oldest = rows
            .into_iter()
            .map(|row| Ok((row.try_get("topic")?, row.try_get("oldest")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(oldest)
    }
}
