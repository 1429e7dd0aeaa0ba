//! Data-subject requests on PostgreSQL: request records and history, erasure (shred, purge, legal
//! holds, suppressions), deliveries to destinations, and retention. Each write is one transaction
//! that is correct with other instances writing at once: the one-open-request rule is the partial
//! unique index `requests_open`, moves of a request lock its row, and an erasure locks its family
//! (ingestion share-locks the same roots) before it looks for what it must not destroy.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::Catalog;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_vault::{Blind, SubjectKey, Vault};

use super::access::{append_audit, root};
use crate::requests::{
    DeliveryAttempt, DeliveryOutcome, DeliveryRecord, DeliveryStatus, LegalHold, NewDelivery, NewRequest,
    PurgeReport, RequestHistoryEntry, RequestRecord, RequestUpdate, RequestView, RetentionReport,
    ShredOutcome, ShredPlan, Suppression,
};
use crate::{EventCursor, Result, StoreError, StoredEvent, seal_context};

/// The outbox topic of deliveries to destinations (the same on every backend).
const DELIVERY_TOPIC: &str = "delivery";

/// The history line of a request the store settled itself.
const SETTLED_AT_ONCE: &str = "no destination had anything pending";

/// Attempts of an erasure that lost a race (its family changed under it) before giving up.
const SHRED_ATTEMPTS: u32 = 5;

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

fn attempts_param(attempts: u32) -> i32 {
    i32::try_from(attempts).unwrap_or(i32::MAX)
}

async fn history(
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
async fn root_even_if_erased(conn: &mut PgConnection, subject: &str) -> Result<Option<String>> {
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

async fn load_request(conn: &mut PgConnection, id: &str, lock: bool) -> Result<Option<RequestRecord>> {
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
        crate::OPEN_STATUSES
    )))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(to_request).collect()
}

/// The final status of a request whose deliveries are all done, or `None` while one is pending.
async fn settled(conn: &mut PgConnection, request: &str) -> Result<Option<RequestStatus>> {
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

fn request_audit(vault: &Vault, record: &RequestRecord, note: &str) -> AuditEvent {
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

pub(super) async fn hold(conn: &mut PgConnection, holds: &[LegalHold], now: i64) -> Result<()> {
    if holds.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = holds.iter().map(|held| held.id.as_str()).collect();
    let subjects: Vec<&str> = holds.iter().map(|held| held.subject.as_str()).collect();
    let sources: Vec<&str> = holds.iter().map(|held| held.source.as_str()).collect();
    let timestamps: Vec<i64> = holds.iter().map(|held| held.timestamp).collect();
    let categories: Vec<String> = holds.iter().map(|held| held.categories.join(",")).collect();
    let until: Vec<i64> = holds.iter().map(|held| held.retain_until).collect();
    let sealed: Vec<&[u8]> = holds.iter().map(|held| held.sealed.as_slice()).collect();
    sqlx::query(
        "INSERT INTO legal_holds (id, subject_id, source, timestamp, categories, retain_until, sealed, created_at)
         SELECT id, subject_id, source, timestamp, categories, retain_until, sealed, $8
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[], $7::bytea[])
             AS t(id, subject_id, source, timestamp, categories, retain_until, sealed)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&subjects)
    .bind(&sources)
    .bind(&timestamps)
    .bind(&categories)
    .bind(&until)
    .bind(&sealed)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn legal_holds(conn: &mut PgConnection, subject: &str) -> Result<Vec<LegalHold>> {
    let Some(root) = root_even_if_erased(conn, subject).await? else { return Ok(Vec::new()) };
    sqlx::query(
        "SELECT id, subject_id, source, timestamp, categories, retain_until, sealed FROM legal_holds
         WHERE subject_id IN (SELECT id FROM subjects WHERE id = $1 OR merged_into = $1)
         ORDER BY timestamp, id",
    )
    .bind(root)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let categories: String = row.try_get("categories")?;
        Ok(LegalHold {
            id: row.try_get("id")?,
            subject: row.try_get("subject_id")?,
            source: row.try_get("source")?,
            timestamp: row.try_get("timestamp")?,
            categories: categories
                .split(',')
                .filter(|category| !category.is_empty())
                .map(str::to_owned)
                .collect(),
            retain_until: row.try_get("retain_until")?,
            sealed: row.try_get("sealed")?,
        })
    })
    .collect()
}

/// Erases a family, retrying (a few times) when its root was merged into another family while the
/// erasure was looking at it.
pub(super) async fn shred(
    pool: &PgPool,
    vault: &Vault,
    subject: &str,
    plan: &ShredPlan,
    now: i64,
) -> Result<ShredOutcome> {
    let mut attempt = 1;
    loop {
        let mut tx = pool.begin().await?;
        match try_shred(&mut tx, vault, subject, plan, now).await {
            Ok(outcome) => {
                tx.commit().await?;
                return Ok(outcome);
            }
            Err(StoreError::Conflict(reason)) if attempt < SHRED_ATTEMPTS => {
                drop(tx);
                tracing::debug!(attempt, %reason, "an erasure lost a race; retrying");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn try_shred(
    conn: &mut PgConnection,
    vault: &Vault,
    subject: &str,
    plan: &ShredPlan,
    now: i64,
) -> Result<ShredOutcome> {
    let Some(root) = root_even_if_erased(conn, subject).await? else {
        return Err(StoreError::Internal("erasing a subject that does not exist".into()));
    };
    // The root first: ingestion share-locks the roots of its batch until it commits, so this waits
    // for batches in flight, and no new one starts on this family until the erasure is done. The
    // row read here is the newest, committed version.
    let row = sqlx::query("SELECT merged_into, erased_at FROM subjects WHERE id = $1 FOR UPDATE")
        .bind(&root)
        .fetch_one(&mut *conn)
        .await?;
    if row.try_get::<Option<i64>, _>("erased_at")?.is_some() {
        return Ok(ShredOutcome::AlreadyErased);
    }
    if row.try_get::<Option<String>, _>("merged_into")?.is_some() {
        return Err(StoreError::Conflict("the subject was merged into another while being erased".into()));
    }
    // Then the members, read after the root's lock (so a merge committed meanwhile is seen), in id
    // order (so two erasures never lock in opposite orders).
    let members: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM subjects WHERE id = $1 OR merged_into = $1 ORDER BY id FOR UPDATE",
    )
    .bind(&root)
    .fetch_all(&mut *conn)
    .await?;
    let newest: Option<i64> =
        sqlx::query_scalar("SELECT max(received_at) FROM events WHERE subject_id = ANY($1)")
            .bind(&members)
            .fetch_one(&mut *conn)
            .await?;
    if let Some(newest) = newest
        && newest > plan.held_through
    {
        return Ok(ShredOutcome::NewEvents { received_through: newest });
    }
    let in_flight: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM requests WHERE kind IN ('access', 'export') AND lease_until > $2 AND id <> $3
         AND subject_id = ANY($1)",
    )
    .bind(&members)
    .bind(now)
    .bind(&plan.request)
    .fetch_one(&mut *conn)
    .await?;
    if in_flight > 0 {
        return Ok(ShredOutcome::ExportInFlight);
    }
    let mut suppressed = 0;
    if plan.suppress {
        suppressed = sqlx::query(
            "INSERT INTO suppressions (blind, kind, created_at)
             SELECT blind, kind, $2 FROM identities WHERE subject_id = ANY($1)
             ON CONFLICT (blind) DO NOTHING",
        )
        .bind(&members)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    let identifiers = sqlx::query("DELETE FROM identities WHERE subject_id = ANY($1)")
        .bind(&members)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    for statement in [
        "DELETE FROM profile_values WHERE subject_id = ANY($1)",
        "DELETE FROM consent_receipts WHERE subject_id = ANY($1)",
        "DELETE FROM consent_events WHERE subject_id = ANY($1)",
        "DELETE FROM sign_in_codes WHERE subject_id = ANY($1)",
    ] {
        sqlx::query(statement).bind(&members).execute(&mut *conn).await?;
    }
    // The keys go: every value sealed under them is unreadable from this commit on.
    sqlx::query(
        "UPDATE subjects SET wrapped_key = ''::bytea, erased_at = $2, known = FALSE WHERE id = ANY($1)",
    )
    .bind(&members)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // What they contributed to the shared model goes too, and readers of the model are told.
    super::model::forget_subjects(conn, &members, now).await?;
    enqueue(conn, &plan.deliveries, now).await?;
    let mut audit = plan.audit.clone();
    audit.push(AuditEvent::Erased {
        request: plan.request.clone(),
        subject: vault.subject_pseudonym(&root),
        members: members.len(),
        identifiers,
        suppressed,
    });
    append_audit(conn, &audit, now).await?;
    Ok(ShredOutcome::Shredded { members, identifiers, suppressed })
}

pub(super) async fn purge_erased(conn: &mut PgConnection, limit: u32, now: i64) -> Result<PurgeReport> {
    super::model::purge_erased(conn).await?;
    let events = sqlx::query(
        "DELETE FROM events WHERE (source, dedupe) IN
             (SELECT e.source, e.dedupe FROM events e JOIN subjects s ON s.id = e.subject_id
              WHERE s.erased_at IS NOT NULL LIMIT $1)",
    )
    .bind(i64::from(limit))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let subjects = sqlx::query(
        "UPDATE subjects SET purged_at = $1 WHERE erased_at IS NOT NULL AND purged_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.subject_id = subjects.id)",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(PurgeReport { events, subjects })
}

pub(super) async fn set_restricted(
    conn: &mut PgConnection,
    subject: &str,
    restricted: bool,
    audit: &[AuditEvent],
    now: i64,
) -> Result<()> {
    let Some(root) = root(conn, subject).await? else {
        return Err(StoreError::Internal("restricting a subject that does not exist".into()));
    };
    sqlx::query("UPDATE subjects SET restricted = $2 WHERE id = $1")
        .bind(root)
        .bind(restricted)
        .execute(&mut *conn)
        .await?;
    append_audit(conn, audit, now).await?;
    Ok(())
}

pub(super) async fn suppress(
    conn: &mut PgConnection,
    identifiers: &[Suppression],
    audit: &[AuditEvent],
    now: i64,
) -> Result<u64> {
    let mut added = 0;
    // The first of a blind named twice is the one written, as if one by one.
    let mut seen = HashSet::new();
    let (blinds, kinds): (Vec<&[u8]>, Vec<&str>) = identifiers
        .iter()
        .filter(|suppression| seen.insert(suppression.blind))
        .map(|suppression| (suppression.blind.0.as_slice(), suppression.kind.as_str()))
        .unzip();
    if !blinds.is_empty() {
        added = sqlx::query(
            "INSERT INTO suppressions (blind, kind, created_at)
             SELECT blind, kind, $3 FROM UNNEST($1::bytea[], $2::text[]) AS t(blind, kind)
             ON CONFLICT (blind) DO NOTHING",
        )
        .bind(&blinds)
        .bind(&kinds)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    append_audit(conn, audit, now).await?;
    Ok(added)
}

pub(super) async fn unsuppress(
    conn: &mut PgConnection,
    blinds: &[Blind],
    audit: &[AuditEvent],
    now: i64,
) -> Result<u64> {
    let mut removed = 0;
    if !blinds.is_empty() {
        let blinds: Vec<&[u8]> = blinds.iter().map(|blind| blind.0.as_slice()).collect();
        removed = sqlx::query("DELETE FROM suppressions WHERE blind = ANY($1)")
            .bind(&blinds)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    append_audit(conn, audit, now).await?;
    Ok(removed)
}

pub(super) async fn set_profile_value(
    conn: &mut PgConnection,
    vault: &Vault,
    subject: &str,
    path: &str,
    value: &[u8],
    at: i64,
    audit: &[AuditEvent],
) -> Result<()> {
    let missing = || StoreError::Internal("rectifying a subject that does not exist".into());
    let root = root(conn, subject).await?.ok_or_else(missing)?;
    // Share-locked, and read again if an erasure committed meanwhile: a value is never written
    // under a key already destroyed.
    let wrapped: Vec<u8> =
        sqlx::query_scalar("SELECT wrapped_key FROM subjects WHERE id = $1 AND erased_at IS NULL FOR SHARE")
            .bind(&root)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(missing)?;
    let key = vault.subject_key(&root, &wrapped)?;
    let sealed = key.seal(seal_context::PROFILE, &seal_context::profile(&root, path), value);
    // Other family members' values of the path are older; the root's is now the newest.
    sqlx::query(
        "INSERT INTO profile_values (subject_id, path, sealed, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (subject_id, path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
    )
    .bind(&root)
    .bind(path)
    .bind(sealed)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM profile_values WHERE path = $2 AND subject_id IN (SELECT id FROM subjects WHERE merged_into = $1)",
    )
    .bind(&root)
    .bind(path)
    .execute(&mut *conn)
    .await?;
    append_audit(conn, audit, at).await?;
    Ok(())
}

pub(super) async fn events_page(
    conn: &mut PgConnection,
    subject: &str,
    after: Option<&EventCursor>,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let Some(root) = root(conn, subject).await? else { return Ok(Vec::new()) };
    let (timestamp, source, dedupe) = match after {
        Some((timestamp, source, dedupe)) => (*timestamp, source.clone(), dedupe.to_vec()),
        None => (i64::MIN, String::new(), Vec::new()),
    };
    sqlx::query(
        "SELECT subject_id, source, dedupe, type, name, timestamp, received_at, sealed FROM events
         WHERE subject_id IN (SELECT id FROM subjects WHERE id = $1 OR merged_into = $1)
           AND (timestamp, source, dedupe) > ($2, $3, $4)
         ORDER BY timestamp, source, dedupe LIMIT $5",
    )
    .bind(&root)
    .bind(timestamp)
    .bind(source)
    .bind(dedupe)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(StoredEvent {
            subject: row.try_get("subject_id")?,
            source: row.try_get("source")?,
            dedupe: crate::dedupe_from(row.try_get("dedupe")?)?,
            kind: row.try_get("type")?,
            name: row.try_get("name")?,
            timestamp: row.try_get("timestamp")?,
            received_at: row.try_get("received_at")?,
            sealed: row.try_get("sealed")?,
        })
    })
    .collect()
}

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
    let ids: Vec<String> = new.iter().map(|_| crate::new_message_id()).collect();
    let payloads: Vec<&[u8]> = new.iter().map(|delivery| delivery.payload.as_slice()).collect();
    sqlx::query(
        "INSERT INTO outbox (id, topic, payload, created_at, not_before)
         SELECT id, $3, payload, $4, $4 FROM UNNEST($1::text[], $2::bytea[]) AS t(id, payload)",
    )
    .bind(&ids)
    .bind(&payloads)
    .bind(DELIVERY_TOPIC)
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
    let mut settled_status = None;
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
        settled_status = Some(status);
    }
    append_audit(conn, &audit, now).await?;
    Ok(settled_status)
}

pub(super) async fn apply_retention(
    conn: &mut PgConnection,
    vault: &Vault,
    catalog: &Catalog,
    now: i64,
    limit: u32,
) -> Result<RetentionReport> {
    let events_deleted = sqlx::query(
        "DELETE FROM events WHERE (source, dedupe) IN
             (SELECT source, dedupe FROM events WHERE expires_at <= $1 LIMIT $2)",
    )
    .bind(now)
    .bind(i64::from(limit))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let mut report = RetentionReport { events_deleted, ..RetentionReport::default() };
    // Events whose shorter-lived properties expired (or whose lifetime is not known yet): open,
    // remove what expired, seal again.
    let due = sqlx::query(
        "SELECT e.subject_id, e.source, e.dedupe, e.timestamp, e.sealed, s.wrapped_key FROM events e
         JOIN subjects s ON s.id = e.subject_id
         WHERE s.erased_at IS NULL AND (e.trim_at IS NULL OR e.trim_at <= $1) LIMIT $2",
    )
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut keys: HashMap<String, SubjectKey> = HashMap::new();
    let mut expired: (Vec<String>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    let mut kept = Kept::default();
    for row in &due {
        let subject: String = row.try_get("subject_id")?;
        let source: String = row.try_get("source")?;
        let dedupe = crate::dedupe_from(row.try_get("dedupe")?)?;
        let timestamp: i64 = row.try_get("timestamp")?;
        let sealed: Vec<u8> = row.try_get("sealed")?;
        if !keys.contains_key(&subject) {
            let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
            keys.insert(subject.clone(), vault.subject_key(&subject, &wrapped)?);
        }
        let Some(key) = keys.get(&subject) else { continue };
        let context = seal_context::event(&subject, &source, &dedupe);
        let opened = key
            .open(seal_context::EVENT, &context, &sealed)
            .ok()
            .and_then(|plain| serde_json::from_slice::<Value>(&plain).ok());
        let Some(Value::Object(mut record)) = opened else {
            // A row that does not open is a bug or damage; it must not hold retention up for every
            // other row. It is looked at again in a day, and logged.
            tracing::error!(%source, "an event does not open during retention; skipped for a day");
            sqlx::query("UPDATE events SET trim_at = $3 WHERE source = $1 AND dedupe = $2")
                .bind(&source)
                .bind(dedupe.as_slice())
                .bind(now.saturating_add(86_400_000))
                .execute(&mut *conn)
                .await?;
            continue;
        };
        match tactful_domain::retention::trim(catalog, &mut record, timestamp, now) {
            tactful_domain::retention::Trimmed::Expired => {
                expired.0.push(source);
                expired.1.push(dedupe.to_vec());
            }
            tactful_domain::retention::Trimmed::Kept { changed, trim_at, expires_at } => {
                let resealed = if changed {
                    let bytes = serde_json::to_vec(&record)
                        .map_err(|error| StoreError::Internal(error.to_string()))?;
                    report.events_trimmed += 1;
                    Some(key.seal(seal_context::EVENT, &context, &bytes))
                } else {
                    None
                };
                kept.sources.push(source);
                kept.dedupes.push(dedupe.to_vec());
                kept.sealed.push(resealed);
                kept.trim_at.push(trim_at);
                kept.expires_at.push(expires_at);
            }
        }
    }
    if !expired.0.is_empty() {
        report.events_deleted += sqlx::query(
            "DELETE FROM events WHERE (source, dedupe) IN
                 (SELECT source, dedupe FROM UNNEST($1::text[], $2::bytea[]) AS t(source, dedupe))",
        )
        .bind(&expired.0)
        .bind(&expired.1)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    if !kept.sources.is_empty() {
        sqlx::query(
            "UPDATE events SET sealed = COALESCE(t.sealed, events.sealed), trim_at = t.trim_at, expires_at = t.expires_at
             FROM UNNEST($1::text[], $2::bytea[], $3::bytea[], $4::int8[], $5::int8[])
                 AS t(source, dedupe, sealed, trim_at, expires_at)
             WHERE events.source = t.source AND events.dedupe = t.dedupe",
        )
        .bind(&kept.sources)
        .bind(&kept.dedupes)
        .bind(&kept.sealed)
        .bind(&kept.trim_at)
        .bind(&kept.expires_at)
        .execute(&mut *conn)
        .await?;
    }
    let (paths, before): (Vec<&str>, Vec<i64>) = catalog
        .properties()
        .iter()
        .filter(|property| !property.path.contains("[]"))
        .map(|property| (property.path.as_str(), now.saturating_sub(property.retention.as_millis())))
        .unzip();
    if !paths.is_empty() {
        report.profile_values_deleted = sqlx::query(
            "DELETE FROM profile_values WHERE EXISTS
                 (SELECT 1 FROM UNNEST($1::text[], $2::int8[]) AS t(path, before)
                  WHERE t.path = profile_values.path AND profile_values.updated_at <= t.before)",
        )
        .bind(&paths)
        .bind(&before)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    report.legal_holds_deleted = sqlx::query(
        "DELETE FROM legal_holds WHERE id IN (SELECT id FROM legal_holds WHERE retain_until <= $1 LIMIT $2)",
    )
    .bind(now)
    .bind(i64::from(limit))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if !report.is_empty() {
        let audit = [AuditEvent::Retention {
            events_deleted: report.events_deleted,
            events_trimmed: report.events_trimmed,
            profile_values_deleted: report.profile_values_deleted,
            legal_holds_deleted: report.legal_holds_deleted,
        }];
        append_audit(conn, &audit, now).await?;
    }
    Ok(report)
}

/// Events the retention job keeps: their new lifetimes, and their new sealed record where a
/// property was removed.
#[derive(Default)]
struct Kept {
    sources: Vec<String>,
    dedupes: Vec<Vec<u8>>,
    sealed: Vec<Option<Vec<u8>>>,
    trim_at: Vec<i64>,
    expires_at: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::postgres::PostgresStore;
    use crate::{Options, Store};

    async fn store() -> Option<Arc<PostgresStore>> {
        let url = crate::testing::fresh_postgres_database().await?;
        let (store, _) = PostgresStore::open(&url, tactful_vault::MasterKey::generate(), &Options::default())
            .await
            .unwrap();
        Some(Arc::new(store))
    }

    async fn subject(store: &PostgresStore, id: &str) {
        sqlx::query("INSERT INTO subjects (id, wrapped_key, created_at) VALUES ($1, '\\x00'::bytea, 0)")
            .bind(id)
            .execute(&store.pool)
            .await
            .unwrap();
    }

    fn record(id: &str, subject: &str) -> RequestRecord {
        RequestRecord {
            id: id.into(),
            subject: Some(subject.into()),
            kind: RequestKind::Restrict,
            status: RequestStatus::Received,
            source: "api".into(),
            received_at: 1,
            due_at: 2,
            extension_reason: None,
            completed_at: None,
            details: serde_json::json!({}),
            sealed: None,
            steps: Vec::new(),
            verification: None,
            verification_attempts: 0,
            verification_expires: None,
            lease_until: None,
            updated_at: 1,
        }
    }

    fn moving(from: RequestStatus, to: RequestStatus) -> RequestUpdate {
        RequestUpdate { expect: Some(from), status: Some(to), ..RequestUpdate::default() }
    }

    /// Instances creating the same person's request at once: one is created, the others are told
    /// its id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn requests_made_at_once_make_one() {
        let Some(store) = store().await else { return };
        subject(&store, "sub_a").await;
        let tasks: Vec<_> = (0..12)
            .map(|index| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.create_request(record(&format!("req_{index}"), "sub_a"), Vec::new()).await.unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let created = outcomes.iter().filter(|outcome| **outcome == NewRequest::Created).count();
        assert_eq!(created, 1, "{outcomes:?}");
        let open = store.requests(Some("sub_a"), 100).await.unwrap();
        assert_eq!(open.len(), 1);
        for outcome in outcomes {
            assert!(
                matches!(outcome, NewRequest::Created)
                    || outcome == NewRequest::Duplicate(open[0].id.clone())
            );
        }
    }

    /// The last deliveries of a request acknowledged at the same moment (and the move to waiting on
    /// them): exactly one of them settles the request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn deliveries_recorded_at_once_settle_their_request_once() {
        let Some(store) = store().await else { return };
        subject(&store, "sub_a").await;
        for round in 0..10 {
            let id = format!("req_{round}");
            let destinations = ["crm", "ads", "mail"];
            store.create_request(record(&id, "sub_a"), Vec::new()).await.unwrap();
            store.update_request(&id, moving(RequestStatus::Received, RequestStatus::Running)).await.unwrap();
            let deliveries = destinations
                .iter()
                .map(|destination| NewDelivery {
                    request: id.clone(),
                    destination: (*destination).into(),
                    message: "restrict".into(),
                    payload: vec![1],
                })
                .collect();
            store.enqueue_deliveries(deliveries, 1).await.unwrap();
            let messages = store.outbox_claim(DELIVERY_TOPIC, 10, 1, 60_000).await.unwrap();
            assert_eq!(messages.len(), destinations.len());
            let mut tasks = Vec::new();
            for (message, destination) in messages.iter().zip(destinations) {
                let (store, id, message) = (store.clone(), id.clone(), message.id.clone());
                tasks.push(tokio::spawn(async move {
                    let ack = DeliveryOutcome::Acknowledged { status_code: 200 };
                    store.record_delivery(&message, &id, destination, ack, 2).await.unwrap()
                }));
            }
            let waiting = {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    let update = moving(RequestStatus::Running, RequestStatus::WaitingOnDestinations);
                    store.update_request(&id, update).await.unwrap()
                })
            };
            let mut settled = Vec::new();
            for task in tasks {
                settled.extend(task.await.unwrap());
            }
            assert!(waiting.await.unwrap());
            let view = store.request(&id).await.unwrap().unwrap();
            assert_eq!(view.record.status, RequestStatus::Completed, "round {round}: {:?}", view.history);
            assert!(settled.len() <= 1, "{settled:?}");
            let lines = view.history.iter().filter(|line| line.status == RequestStatus::Completed).count();
            assert!(lines <= 2, "settled once: {:?}", view.history);
            // Settled by the store or by a delivery, never both.
            assert_eq!(
                settled.len() + usize::from(view.history.iter().any(|line| line.note == SETTLED_AT_ONCE)),
                1,
                "{:?}",
                view.history
            );
        }
    }

    /// An erasure waits for an ingestion batch of the family still in flight, then sees its events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_erasure_waits_for_a_batch_in_flight() {
        let Some(store) = store().await else { return };
        subject(&store, "sub_a").await;
        // What ingestion does: share-lock the root, write an event, commit later.
        let mut batch = store.pool.begin().await.unwrap();
        sqlx::query("SELECT id FROM subjects WHERE id = 'sub_a' FOR SHARE")
            .execute(&mut *batch)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO events (source, dedupe, subject_id, type, timestamp, received_at, sealed)
             VALUES ('web', '\\x00000000000000000000000000000000'::bytea, 'sub_a', 'track', 0, 500, '\\x00'::bytea)",
        )
        .execute(&mut *batch)
        .await
        .unwrap();
        let erasure = {
            let store = store.clone();
            tokio::spawn(async move {
                let plan = ShredPlan { request: "req_e".into(), held_through: 100, ..ShredPlan::default() };
                store.shred("sub_a", plan, 1_000).await.unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!erasure.is_finished(), "the erasure waits for the batch");
        batch.commit().await.unwrap();
        assert_eq!(erasure.await.unwrap(), ShredOutcome::NewEvents { received_through: 500 });
        let plan = ShredPlan { request: "req_e".into(), held_through: 500, ..ShredPlan::default() };
        assert!(matches!(store.shred("sub_a", plan, 1_000).await.unwrap(), ShredOutcome::Shredded { .. }));
    }
}
