//! Data-subject requests on PostgreSQL: request records with their history, claims by workers, and
//! the [`RequestStore`] of this backend, whose erasure and retention live in `rights.rs` and
//! `retention.rs`. Each write is one transaction
//! that is correct with other instances writing at once: the one-open-request rule is the partial
//! unique index `requests_open`, moves of a request lock its row, and an erasure locks its family
//! (ingestion share-locks the same roots) before it looks for what it must not destroy.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::Catalog;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_vault::{Blind, Vault};

use super::audit::append_audit;
use super::deliveries::deliveries;
use super::subjects::root;
use super::{PostgresStore, retention, rights};
use crate::requests::{
    LegalHold, NewRequest, PurgeReport, RequestHistoryEntry, RequestRecord, RequestUpdate, RequestView,
    RetentionReport, ShredOutcome, ShredPlan, Suppression,
};
use crate::{RequestStore, Result, StoreError};

/// The history line of a request the store settled itself.
pub(super) const SETTLED_AT_ONCE: &str = "no destination had anything pending";

const REQUEST_COLUMNS: &str = "id, subject_id, kind, status, source, received_at, due_at, extension_reason,
     completed_at, details, sealed, steps, verification, verification_attempts, verification_expires,
     lease_until, updated_at";

fn to_request(row: &PgRow) -> Result<RequestRecord> {
    let internal = |what: &str, text: &str| StoreError::Internal(format!("unknown request {what} {text:?}"));
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let details: String = row.try_get("details")?;
    let steps: String = row.try_get("steps")?;
    let verification: Option<Vec<u8>> = row.try_get("verification")?;
    Ok(RequestRecord {
        id: row.try_get("id")?,
        subject: row.try_get("subject_id")?,
        kind: RequestKind::parse(&kind).ok_or_else(|| internal("kind", &kind))?,
        status: RequestStatus::parse(&status).ok_or_else(|| internal("status", &status))?,
        source: row.try_get("source")?,
        received_at: row.try_get("received_at")?,
        due_at: row.try_get("due_at")?,
        extension_reason: row.try_get("extension_reason")?,
        completed_at: row.try_get("completed_at")?,
        details: serde_json::from_str(&details).map_err(|error| StoreError::Internal(error.to_string()))?,
        sealed: row.try_get("sealed")?,
        steps: serde_json::from_str(&steps).map_err(|error| StoreError::Internal(error.to_string()))?,
        verification: verification
            .map(|hash| hash.try_into())
            .transpose()
            .map_err(|_| StoreError::Internal("a verification hash is not 32 bytes".into()))?,
        verification_attempts: u32::try_from(row.try_get::<i32, _>("verification_attempts")?).unwrap_or(0),
        verification_expires: row.try_get("verification_expires")?,
        lease_until: row.try_get("lease_until")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn steps_text(steps: &[String]) -> String {
    serde_json::to_string(steps).unwrap_or_else(|_| "[]".into())
}

pub(super) fn attempts_param(attempts: u32) -> i32 {
    i32::try_from(attempts).unwrap_or(i32::MAX)
}

pub(super) async fn history(
    conn: &mut PgConnection,
    request: &str,
    at: i64,
    status: RequestStatus,
    note: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO request_history (request_id, at, status, note) VALUES ($1, $2, $3, $4)")
        .bind(request)
        .bind(at)
        .bind(status.as_str())
        .bind(note)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The family root of a subject, erased or not (requests and legal holds outlive erasure).
pub(super) async fn root_even_if_erased(conn: &mut PgConnection, subject: &str) -> Result<Option<String>> {
    let row: Option<Option<String>> = sqlx::query_scalar("SELECT merged_into FROM subjects WHERE id = $1")
        .bind(subject)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|merged_into| merged_into.unwrap_or_else(|| subject.to_owned())))
}

async fn open_request(conn: &mut PgConnection, subject: &str, kind: RequestKind) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM requests WHERE subject_id = $1 AND kind = $2 AND open")
        .bind(subject)
        .bind(kind.as_str())
        .fetch_optional(&mut *conn)
        .await?)
}

pub(super) async fn create_request(
    conn: &mut PgConnection,
    record: &RequestRecord,
    audit: &[AuditEvent],
) -> Result<NewRequest> {
    let subject = match &record.subject {
        Some(subject) => Some(
            root(conn, subject)
                .await?
                .ok_or_else(|| StoreError::Internal("a request for a subject that does not exist".into()))?,
        ),
        None => None,
    };
    if let Some(subject) = subject.as_ref().filter(|_| record.status.holds_the_slot())
        && let Some(existing) = open_request(conn, subject, record.kind).await?
    {
        return Ok(NewRequest::Duplicate(existing));
    }
    // Two instances creating the same request at once: the partial unique index `requests_open`
    // lets one in; the other waits for it to commit, writes nothing, and reads the winner's id.
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO requests ({REQUEST_COLUMNS}, open)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT DO NOTHING"
    )))
    .bind(&record.id)
    .bind(&subject)
    .bind(record.kind.as_str())
    .bind(record.status.as_str())
    .bind(&record.source)
    .bind(record.received_at)
    .bind(record.due_at)
    .bind(&record.extension_reason)
    .bind(record.completed_at)
    .bind(record.details.to_string())
    .bind(&record.sealed)
    .bind(steps_text(&record.steps))
    .bind(record.verification.map(|hash| hash.to_vec()))
    .bind(attempts_param(record.verification_attempts))
    .bind(record.verification_expires)
    .bind(record.lease_until)
    .bind(record.updated_at)
    .bind(record.status.holds_the_slot())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        let Some(subject) = &subject else {
            return Err(StoreError::Internal(format!("request {} already exists", record.id)));
        };
        return match open_request(conn, subject, record.kind).await? {
            Some(existing) => Ok(NewRequest::Duplicate(existing)),
            None => Err(StoreError::Internal(format!("request {} already exists", record.id))),
        };
    }
    history(conn, &record.id, record.received_at, record.status, "received").await?;
    append_audit(conn, audit, record.received_at).await?;
    Ok(NewRequest::Created)
}

pub(super) async fn load_request(
    conn: &mut PgConnection,
    id: &str,
    lock: bool,
) -> Result<Option<RequestRecord>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query(AssertSqlSafe(format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1{lock}")))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(to_request)
        .transpose()
}

/// Where a status comes in a request's life: lines of one millisecond are shown in this order.
fn rank(status: RequestStatus) -> usize {
    RequestStatus::ALL.iter().position(|each| *each == status).unwrap_or(usize::MAX)
}

pub(super) async fn request(conn: &mut PgConnection, id: &str) -> Result<Option<RequestView>> {
    let Some(record) = load_request(conn, id, false).await? else { return Ok(None) };
    let mut history =
        sqlx::query("SELECT at, status, note FROM request_history WHERE request_id = $1 ORDER BY at")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                Ok(RequestHistoryEntry {
                    at: row.try_get("at")?,
                    status: RequestStatus::parse(&status)
                        .ok_or_else(|| StoreError::Internal(format!("unknown request status {status:?}")))?,
                    note: row.try_get("note")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
    // No insertion counter (no sequences): lines written in the same millisecond are put in the
    // order a request lives them (statuses only move forward, and the store's own settling line
    // follows the line of the move it settled).
    history.sort_by_key(|entry| (entry.at, rank(entry.status), entry.note == SETTLED_AT_ONCE));
    Ok(Some(RequestView { deliveries: deliveries(conn, id).await?, record, history }))
}

pub(super) async fn requests(
    conn: &mut PgConnection,
    subject: Option<&str>,
    limit: u32,
) -> Result<Vec<RequestRecord>> {
    let rows = match subject {
        Some(subject) => {
            let Some(root) = root_even_if_erased(conn, subject).await? else { return Ok(Vec::new()) };
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {REQUEST_COLUMNS} FROM requests
                 WHERE subject_id IN (SELECT id FROM subjects WHERE id = $1 OR merged_into = $1)
                 ORDER BY received_at DESC, id DESC LIMIT $2"
            )))
            .bind(root)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {REQUEST_COLUMNS} FROM requests ORDER BY received_at DESC, id DESC LIMIT $1"
            )))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    rows.iter().map(to_request).collect()
}

pub(super) async fn open_requests(conn: &mut PgConnection, limit: u32) -> Result<Vec<RequestRecord>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE status IN ({}) ORDER BY due_at, id LIMIT $1",
        crate::shared::OPEN_STATUSES
    )))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(to_request).collect()
}

/// The final status of a request whose deliveries are all done, or `None` while one is pending.
pub(super) async fn settled(conn: &mut PgConnection, request: &str) -> Result<Option<RequestStatus>> {
    // count() rather than sum(): it is BIGINT on every engine (sum of integers is not).
    let row = sqlx::query(
        "SELECT count(CASE WHEN status = 'pending' THEN 1 END) AS pending,
                count(CASE WHEN status = 'gave_up' THEN 1 END) AS gave_up
         FROM deliveries WHERE request_id = $1",
    )
    .bind(request)
    .fetch_one(&mut *conn)
    .await?;
    let (pending, gave_up): (i64, i64) = (row.try_get("pending")?, row.try_get("gave_up")?);
    Ok(match (pending, gave_up) {
        (0, 0) => Some(RequestStatus::Completed),
        (0, _) => Some(RequestStatus::PartiallyCompleted),
        _ => None,
    })
}

pub(super) fn request_audit(vault: &Vault, record: &RequestRecord, note: &str) -> AuditEvent {
    AuditEvent::Request {
        request: record.id.clone(),
        request_kind: record.kind.as_str().to_owned(),
        subject: record
            .subject
            .as_deref()
            .map(|subject| vault.subject_pseudonym(subject))
            .unwrap_or_default(),
        status: record.status.as_str().to_owned(),
        note: note.to_owned(),
    }
}

pub(super) async fn update_request(
    conn: &mut PgConnection,
    vault: &Vault,
    id: &str,
    update: &RequestUpdate,
    now: i64,
) -> Result<bool> {
    // Locked until commit: another instance moving the same request waits, then sees this move
    // (and its `expect` fails). A delivery being recorded locks it too, so exactly one of the two
    // settles a request waiting on destinations.
    let Some(mut record) = load_request(conn, id, true).await? else { return Ok(false) };
    if update.expect.is_some_and(|expected| expected != record.status) {
        return Ok(false);
    }
    // Asked before applying: the update's closure cannot wait on the database.
    let settled = match update.status {
        Some(RequestStatus::WaitingOnDestinations) => settled(conn, id).await?,
        _ => None,
    };
    let applied = update.apply(&mut record, || Ok(settled), now)?;
    let (status_changed, settled_here) = (applied.status_changed, applied.settled_here);
    sqlx::query(
        "UPDATE requests SET status = $2, open = $3, completed_at = $4, steps = $5, due_at = $6,
             extension_reason = $7, verification = $8, verification_attempts = $9,
             verification_expires = $10, lease_until = $11, updated_at = $12
         WHERE id = $1",
    )
    .bind(id)
    .bind(record.status.as_str())
    .bind(record.status.holds_the_slot())
    .bind(record.completed_at)
    .bind(steps_text(&record.steps))
    .bind(record.due_at)
    .bind(&record.extension_reason)
    .bind(record.verification.map(|hash| hash.to_vec()))
    .bind(attempts_param(record.verification_attempts))
    .bind(record.verification_expires)
    .bind(record.lease_until)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if let Some(note) = &update.note {
        history(conn, id, now, record.status, note).await?;
    } else if status_changed {
        history(conn, id, now, record.status, record.status.as_str()).await?;
    }
    let mut audit = update.audit.clone();
    if settled_here && status_changed {
        // The store settled the request itself (no delivery was pending): say so in the log.
        history(conn, id, now, record.status, SETTLED_AT_ONCE).await?;
        audit.push(request_audit(vault, &record, SETTLED_AT_ONCE));
    }
    append_audit(conn, &audit, now).await?;
    Ok(true)
}

pub(super) async fn claim_requests(
    conn: &mut PgConnection,
    now: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<RequestRecord>> {
    // SKIP LOCKED: workers of several instances claiming at once each get different requests.
    let rows = sqlx::query(AssertSqlSafe(format!(
        "UPDATE requests SET lease_until = $1 + $2
         WHERE id IN (SELECT id FROM requests
                      WHERE (status IN ('received', 'running')
                             OR (status = 'verifying' AND verification_expires <= $1))
                        AND (lease_until IS NULL OR lease_until <= $1)
                      ORDER BY received_at, id LIMIT $3
                      FOR UPDATE SKIP LOCKED)
         RETURNING {REQUEST_COLUMNS}"
    )))
    .bind(now)
    .bind(lease_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed = rows.iter().map(to_request).collect::<Result<Vec<_>>>()?;
    claimed.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
    Ok(claimed)
}

#[async_trait]
impl RequestStore for PostgresStore {
    async fn create_request(&self, record: RequestRecord, audit: Vec<AuditEvent>) -> Result<NewRequest> {
        let mut tx = self.pool.begin().await?;
        let created = create_request(&mut tx, &record, &audit).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn request(&self, id: &str) -> Result<Option<RequestView>> {
        let mut conn = self.pool.acquire().await?;
        request(&mut conn, id).await
    }

    async fn requests(&self, subject: Option<&str>, limit: u32) -> Result<Vec<RequestRecord>> {
        let mut conn = self.pool.acquire().await?;
        requests(&mut conn, subject, limit).await
    }

    async fn open_requests(&self, limit: u32) -> Result<Vec<RequestRecord>> {
        let mut conn = self.pool.acquire().await?;
        open_requests(&mut conn, limit).await
    }

    async fn update_request(&self, id: &str, update: RequestUpdate) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let applied = update_request(&mut tx, &self.vault, id, &update, crate::shared::now_millis()).await?;
        tx.commit().await?;
        Ok(applied)
    }

    async fn claim_requests(&self, now: i64, lease_ms: i64, limit: u32) -> Result<Vec<RequestRecord>> {
        let mut tx = self.pool.begin().await?;
        let claimed = claim_requests(&mut tx, now, lease_ms, limit).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn hold(&self, holds: Vec<LegalHold>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        rights::hold(&mut tx, &holds, crate::shared::now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn legal_holds(&self, subject: &str) -> Result<Vec<LegalHold>> {
        let mut conn = self.pool.acquire().await?;
        rights::legal_holds(&mut conn, subject).await
    }

    async fn shred(&self, subject: &str, plan: ShredPlan, now: i64) -> Result<ShredOutcome> {
        let outcome = rights::shred(&self.pool, &self.vault, subject, &plan, now).await?;
        // This instance forgets the keys at once. Other instances' ingestion caches may hold a copy
        // until they start over or fill up; nothing uses it, since no identifier leads to an erased
        // subject any more and ingestion refuses to write under an erased one.
        if let ShredOutcome::Shredded { members, .. } = &outcome {
            self.keys.forget(members);
        }
        Ok(outcome)
    }

    async fn purge_erased(&self, limit: u32) -> Result<PurgeReport> {
        let mut tx = self.pool.begin().await?;
        let report = rights::purge_erased(&mut tx, limit, crate::shared::now_millis()).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn set_restricted(&self, subject: &str, restricted: bool, audit: Vec<AuditEvent>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        rights::set_restricted(&mut tx, subject, restricted, &audit, crate::shared::now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn suppress(&self, identifiers: Vec<Suppression>, audit: Vec<AuditEvent>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let added = rights::suppress(&mut tx, &identifiers, &audit, crate::shared::now_millis()).await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn unsuppress(&self, blinds: Vec<Blind>, audit: Vec<AuditEvent>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let removed = rights::unsuppress(&mut tx, &blinds, &audit, crate::shared::now_millis()).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn set_profile_value(
        &self,
        subject: &str,
        path: &str,
        value: Vec<u8>,
        at: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        rights::set_profile_value(&mut tx, &self.vault, subject, path, &value, at, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn apply_retention(&self, catalog: &Catalog, now: i64, limit: u32) -> Result<RetentionReport> {
        let mut tx = self.pool.begin().await?;
        let report = retention::apply_retention(&mut tx, &self.vault, catalog, now, limit).await?;
        tx.commit().await?;
        Ok(report)
    }
}
