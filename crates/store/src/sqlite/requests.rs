//! Data-subject requests on SQLite: request records and history, erasure (shred, purge, legal
//! holds, suppressions), deliveries to destinations, and retention. Writes run on the writer thread,
//! inside its group-commit transaction, so each method is all-or-nothing.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::Catalog;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_vault::Blind;

use super::Writer;
use super::access::{append_audit, root};
use crate::requests::{
    DeliveryAttempt, DeliveryOutcome, DeliveryRecord, DeliveryStatus, LegalHold, NewDelivery, NewRequest,
    PurgeReport, RequestHistoryEntry, RequestRecord, RequestUpdate, RequestView, RetentionReport,
    ShredOutcome, ShredPlan, Suppression,
};
use crate::{EventCursor, OPEN_STATUSES, Result, StoreError, StoredEvent, seal_context};

/// The outbox topic of deliveries to destinations.
pub(crate) const DELIVERY_TOPIC: &str = "delivery";

const REQUEST_COLUMNS: &str = "id, subject_id, kind, status, source, received_at, due_at, extension_reason,
     completed_at, details, sealed, steps, verification, verification_attempts, verification_expires,
     lease_until, updated_at";

fn request_row(row: &Row<'_>) -> rusqlite::Result<RequestColumns> {
    Ok(RequestColumns {
        id: row.get(0)?,
        subject: row.get(1)?,
        kind: row.get(2)?,
        status: row.get(3)?,
        source: row.get(4)?,
        received_at: row.get(5)?,
        due_at: row.get(6)?,
        extension_reason: row.get(7)?,
        completed_at: row.get(8)?,
        details: row.get(9)?,
        sealed: row.get(10)?,
        steps: row.get(11)?,
        verification: row.get(12)?,
        verification_attempts: row.get(13)?,
        verification_expires: row.get(14)?,
        lease_until: row.get(15)?,
        updated_at: row.get(16)?,
    })
}

/// A request row before its text columns are parsed.
pub(crate) struct RequestColumns {
    pub id: String,
    pub subject: Option<String>,
    pub kind: String,
    pub status: String,
    pub source: String,
    pub received_at: i64,
    pub due_at: i64,
    pub extension_reason: Option<String>,
    pub completed_at: Option<i64>,
    pub details: String,
    pub sealed: Option<Vec<u8>>,
    pub steps: String,
    pub verification: Option<Vec<u8>>,
    pub verification_attempts: u32,
    pub verification_expires: Option<i64>,
    pub lease_until: Option<i64>,
    pub updated_at: i64,
}

impl RequestColumns {
    pub fn parse(self) -> Result<RequestRecord> {
        let internal =
            |what: &str, text: &str| StoreError::Internal(format!("unknown request {what} {text:?}"));
        Ok(RequestRecord {
            kind: RequestKind::parse(&self.kind).ok_or_else(|| internal("kind", &self.kind))?,
            status: RequestStatus::parse(&self.status).ok_or_else(|| internal("status", &self.status))?,
            details: serde_json::from_str(&self.details)
                .map_err(|error| StoreError::Internal(error.to_string()))?,
            steps: serde_json::from_str(&self.steps)
                .map_err(|error| StoreError::Internal(error.to_string()))?,
            verification: self
                .verification
                .map(|hash| hash.try_into())
                .transpose()
                .map_err(|_| StoreError::Internal("a verification hash is not 32 bytes".into()))?,
            id: self.id,
            subject: self.subject,
            source: self.source,
            received_at: self.received_at,
            due_at: self.due_at,
            extension_reason: self.extension_reason,
            completed_at: self.completed_at,
            sealed: self.sealed,
            verification_attempts: self.verification_attempts,
            verification_expires: self.verification_expires,
            lease_until: self.lease_until,
            updated_at: self.updated_at,
        })
    }
}

fn history(conn: &Connection, request: &str, at: i64, status: RequestStatus, note: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO request_history (request_id, at, status, note) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![request, at, status.as_str(), note])?;
    Ok(())
}

pub(super) fn create_request(
    writer: &mut Writer,
    record: &RequestRecord,
    audit: &[AuditEvent],
) -> Result<NewRequest> {
    let subject = match &record.subject {
        Some(subject) => Some(
            root(&writer.conn, subject)?
                .ok_or_else(|| StoreError::Internal("a request for a subject that does not exist".into()))?,
        ),
        None => None,
    };
    if let Some(subject) = subject.as_ref().filter(|_| record.status.holds_the_slot()) {
        let existing: Option<String> = writer
            .conn
            .prepare_cached("SELECT id FROM requests WHERE subject_id = ?1 AND kind = ?2 AND open = 1")?
            .query_row(params![subject, record.kind.as_str()], |row| row.get(0))
            .optional()?;
        if let Some(existing) = existing {
            return Ok(NewRequest::Duplicate(existing));
        }
    }
    writer
        .conn
        .prepare_cached(&format!(
            "INSERT INTO requests ({REQUEST_COLUMNS}, open)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
        ))?
        .execute(params![
            record.id,
            subject,
            record.kind.as_str(),
            record.status.as_str(),
            record.source,
            record.received_at,
            record.due_at,
            record.extension_reason,
            record.completed_at,
            record.details.to_string(),
            record.sealed,
            serde_json::to_string(&record.steps).unwrap_or_else(|_| "[]".into()),
            record.verification.map(|hash| hash.to_vec()),
            record.verification_attempts,
            record.verification_expires,
            record.lease_until,
            record.updated_at,
            record.status.holds_the_slot(),
        ])?;
    history(&writer.conn, &record.id, record.received_at, record.status, "received")?;
    append_audit(writer, audit, record.received_at)?;
    Ok(NewRequest::Created)
}

fn load_request(conn: &Connection, id: &str) -> Result<Option<RequestRecord>> {
    conn.prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"))?
        .query_row([id], request_row)
        .optional()?
        .map(RequestColumns::parse)
        .transpose()
}

pub(super) fn request(conn: &Connection, id: &str) -> Result<Option<RequestView>> {
    let Some(record) = load_request(conn, id)? else { return Ok(None) };
    let mut statement = conn.prepare_cached(
        "SELECT at, status, note FROM request_history WHERE request_id = ?1 ORDER BY at, rowid",
    )?;
    let history = statement
        .query_map([id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
        })?
        .map(|row| {
            let (at, status, note) = row?;
            let status = RequestStatus::parse(&status)
                .ok_or_else(|| StoreError::Internal(format!("unknown request status {status:?}")))?;
            Ok(RequestHistoryEntry { at, status, note })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(RequestView { deliveries: deliveries(conn, id)?, record, history }))
}

pub(super) fn requests(conn: &Connection, subject: Option<&str>, limit: u32) -> Result<Vec<RequestRecord>> {
    let rows = match subject {
        Some(subject) => {
            let Some(root) = root_even_if_erased(conn, subject)? else { return Ok(Vec::new()) };
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM requests
                 WHERE subject_id IN (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)
                 ORDER BY received_at DESC, id DESC LIMIT ?2"
            ))?;
            statement.query_map(params![root, limit], request_row)?.collect::<rusqlite::Result<Vec<_>>>()?
        }
        None => {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM requests ORDER BY received_at DESC, id DESC LIMIT ?1"
            ))?;
            statement.query_map(params![limit], request_row)?.collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    rows.into_iter().map(RequestColumns::parse).collect()
}

pub(super) fn open_requests(conn: &Connection, limit: u32) -> Result<Vec<RequestRecord>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE status IN ({OPEN_STATUSES}) ORDER BY due_at, id LIMIT ?1"
    ))?;
    let rows = statement.query_map(params![limit], request_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(RequestColumns::parse).collect()
}

/// The family root of a subject, erased or not (requests outlive erasure).
fn root_even_if_erased(conn: &Connection, subject: &str) -> Result<Option<String>> {
    let row: Option<Option<String>> = conn
        .prepare_cached("SELECT merged_into FROM subjects WHERE id = ?1")?
        .query_row([subject], |row| row.get(0))
        .optional()?;
    Ok(row.map(|merged_into| merged_into.unwrap_or_else(|| subject.to_owned())))
}

/// The final status of a request whose deliveries are all done, or `None` while one is pending.
fn settled(conn: &Connection, request: &str) -> Result<Option<RequestStatus>> {
    let (pending, gave_up): (i64, i64) = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(status = 'pending'), 0), COALESCE(SUM(status = 'gave_up'), 0)
             FROM deliveries WHERE request_id = ?1",
        )?
        .query_row([request], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(match (pending, gave_up) {
        (0, 0) => Some(RequestStatus::Completed),
        (0, _) => Some(RequestStatus::PartiallyCompleted),
        _ => None,
    })
}

pub(super) fn update_request(
    writer: &mut Writer,
    id: &str,
    update: &RequestUpdate,
    now: i64,
) -> Result<bool> {
    let Some(mut record) = load_request(&writer.conn, id)? else { return Ok(false) };
    if update.expect.is_some_and(|expected| expected != record.status) {
        return Ok(false);
    }
    let applied = update.apply(&mut record, || settled(&writer.conn, id), now)?;
    let (status_changed, settled_here) = (applied.status_changed, applied.settled_here);
    writer
        .conn
        .prepare_cached(
            "UPDATE requests SET status = ?2, open = ?3, completed_at = ?4, steps = ?5, due_at = ?6,
                 extension_reason = ?7, verification = ?8, verification_attempts = ?9,
                 verification_expires = ?10, lease_until = ?11, updated_at = ?12
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            record.status.as_str(),
            record.status.holds_the_slot(),
            record.completed_at,
            serde_json::to_string(&record.steps).unwrap_or_else(|_| "[]".into()),
            record.due_at,
            record.extension_reason,
            record.verification.map(|hash| hash.to_vec()),
            record.verification_attempts,
            record.verification_expires,
            record.lease_until,
            now,
        ])?;
    if let Some(note) = &update.note {
        history(&writer.conn, id, now, record.status, note)?;
    } else if status_changed {
        history(&writer.conn, id, now, record.status, record.status.as_str())?;
    }
    let mut audit = update.audit.clone();
    if settled_here && status_changed {
        // The store settled the request itself (no delivery was pending): say so in the log.
        let note = "no destination had anything pending";
        history(&writer.conn, id, now, record.status, note)?;
        audit.push(request_audit(writer, &record, note));
    }
    append_audit(writer, &audit, now)?;
    Ok(true)
}

fn request_audit(writer: &Writer, record: &RequestRecord, note: &str) -> AuditEvent {
    AuditEvent::Request {
        request: record.id.clone(),
        request_kind: record.kind.as_str().to_owned(),
        subject: record
            .subject
            .as_deref()
            .map(|subject| writer.vault.subject_pseudonym(subject))
            .unwrap_or_default(),
        status: record.status.as_str().to_owned(),
        note: note.to_owned(),
    }
}

pub(super) fn claim_requests(
    writer: &mut Writer,
    now: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<RequestRecord>> {
    let mut statement = writer.conn.prepare_cached(&format!(
        "UPDATE requests SET lease_until = ?1 + ?2
         WHERE id IN (SELECT id FROM requests
                      WHERE (status IN ('received', 'running')
                             OR (status = 'verifying' AND verification_expires <= ?1))
                        AND (lease_until IS NULL OR lease_until <= ?1)
                      ORDER BY received_at, id LIMIT ?3)
         RETURNING {REQUEST_COLUMNS}"
    ))?;
    let rows = statement
        .query_map(params![now, lease_ms, limit], request_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut claimed = rows.into_iter().map(RequestColumns::parse).collect::<Result<Vec<_>>>()?;
    claimed.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
    Ok(claimed)
}

pub(super) fn hold(conn: &Connection, holds: &[LegalHold], now: i64) -> Result<()> {
    for held in holds {
        conn.prepare_cached(
            "INSERT INTO legal_holds (id, subject_id, source, timestamp, categories, retain_until, sealed, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            held.id,
            held.subject,
            held.source,
            held.timestamp,
            held.categories.join(","),
            held.retain_until,
            held.sealed,
            now
        ])?;
    }
    Ok(())
}

pub(super) fn legal_holds(conn: &Connection, subject: &str) -> Result<Vec<LegalHold>> {
    let Some(root) = root_even_if_erased(conn, subject)? else { return Ok(Vec::new()) };
    let mut statement = conn.prepare_cached(
        "SELECT id, subject_id, source, timestamp, categories, retain_until, sealed FROM legal_holds
         WHERE subject_id IN (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)
         ORDER BY timestamp, id",
    )?;
    let rows = statement.query_map([root], |row| {
        Ok(LegalHold {
            id: row.get(0)?,
            subject: row.get(1)?,
            source: row.get(2)?,
            timestamp: row.get(3)?,
            categories: row
                .get::<_, String>(4)?
                .split(',')
                .filter(|category| !category.is_empty())
                .map(str::to_owned)
                .collect(),
            retain_until: row.get(5)?,
            sealed: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn shred(writer: &mut Writer, subject: &str, plan: &ShredPlan, now: i64) -> Result<ShredOutcome> {
    let Some(root) = root_even_if_erased(&writer.conn, subject)? else {
        return Err(StoreError::Internal("erasing a subject that does not exist".into()));
    };
    let erased: Option<i64> = writer
        .conn
        .prepare_cached("SELECT erased_at FROM subjects WHERE id = ?1")?
        .query_row([&root], |row| row.get(0))?;
    if erased.is_some() {
        return Ok(ShredOutcome::AlreadyErased);
    }
    let members: Vec<String> = writer
        .conn
        .prepare_cached("SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1 ORDER BY id")?
        .query_map([&root], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let newest: Option<i64> = writer
        .conn
        .prepare_cached(
            "SELECT MAX(received_at) FROM events WHERE subject_id IN
             (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)",
        )?
        .query_row([&root], |row| row.get(0))?;
    if let Some(newest) = newest
        && newest > plan.held_through
    {
        return Ok(ShredOutcome::NewEvents { received_through: newest });
    }
    let in_flight: i64 = writer
        .conn
        .prepare_cached(
            "SELECT COUNT(*) FROM requests WHERE kind IN ('access', 'export') AND lease_until > ?2 AND id != ?3
             AND subject_id IN (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)",
        )?
        .query_row(params![root, now, plan.request], |row| row.get(0))?;
    if in_flight > 0 {
        return Ok(ShredOutcome::ExportInFlight);
    }
    let family = "SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1";
    let mut suppressed = 0;
    if plan.suppress {
        suppressed = writer
            .conn
            .prepare_cached(&format!(
                "INSERT INTO suppressions (blind, kind, created_at)
                 SELECT blind, kind, ?2 FROM identities WHERE subject_id IN ({family})
                 ON CONFLICT (blind) DO NOTHING"
            ))?
            .execute(params![root, now])? as u64;
    }
    let identifiers = writer
        .conn
        .prepare_cached(&format!("DELETE FROM identities WHERE subject_id IN ({family})"))?
        .execute([&root])? as u64;
    for table in ["profile_values", "consent_receipts", "consent_events", "sign_in_codes"] {
        writer
            .conn
            .prepare_cached(&format!("DELETE FROM {table} WHERE subject_id IN ({family})"))?
            .execute([&root])?;
    }
    // The keys go: every value sealed under them is unreadable from this commit on. secure_delete
    // overwrites the old key bytes in the database file; the WAL is truncated within a bound.
    writer
        .conn
        .prepare_cached(&format!(
            "UPDATE subjects SET wrapped_key = x'', erased_at = ?2, known = 0 WHERE id IN ({family})"
        ))?
        .execute(params![root, now])?;
    // What they contributed to the shared model goes too, and readers of the model are told.
    super::model::forget_subjects(&writer.conn, &members, now)?;
    enqueue(&writer.conn, &plan.deliveries, now)?;
    let mut audit = plan.audit.clone();
    audit.push(AuditEvent::Erased {
        request: plan.request.clone(),
        subject: writer.vault.subject_pseudonym(&root),
        members: members.len(),
        identifiers,
        suppressed,
    });
    append_audit(writer, &audit, now)?;
    // What the writer remembers of them (keys, bindings) goes too.
    writer.forget_people();
    Ok(ShredOutcome::Shredded { members, identifiers, suppressed })
}

pub(super) fn purge_erased(conn: &Connection, limit: u32, now: i64) -> Result<PurgeReport> {
    super::model::purge_erased(conn)?;
    let events = conn
        .prepare_cached(
            "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e JOIN subjects s ON s.id = e.subject_id
             WHERE s.erased_at IS NOT NULL LIMIT ?1)",
        )?
        .execute([limit])? as u64;
    let subjects = conn
        .prepare_cached(
            "UPDATE subjects SET purged_at = ?1 WHERE erased_at IS NOT NULL AND purged_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.subject_id = subjects.id)",
        )?
        .execute([now])? as u64;
    Ok(PurgeReport { events, subjects })
}

pub(super) fn set_restricted(
    writer: &mut Writer,
    subject: &str,
    restricted: bool,
    audit: &[AuditEvent],
    now: i64,
) -> Result<()> {
    let Some(root) = root(&writer.conn, subject)? else {
        return Err(StoreError::Internal("restricting a subject that does not exist".into()));
    };
    writer
        .conn
        .prepare_cached("UPDATE subjects SET restricted = ?2 WHERE id = ?1")?
        .execute(params![root, restricted])?;
    append_audit(writer, audit, now)?;
    // The writer's cached view of the subject (used by ingestion) must see it.
    writer.forget_people();
    Ok(())
}

pub(super) fn suppress(
    writer: &mut Writer,
    identifiers: &[Suppression],
    audit: &[AuditEvent],
    now: i64,
) -> Result<u64> {
    let mut added = 0;
    for suppression in identifiers {
        added += writer
            .conn
            .prepare_cached(
                "INSERT INTO suppressions (blind, kind, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (blind) DO NOTHING",
            )?
            .execute(params![suppression.blind.0.as_slice(), suppression.kind, now])? as u64;
    }
    append_audit(writer, audit, now)?;
    Ok(added)
}

pub(super) fn unsuppress(
    writer: &mut Writer,
    blinds: &[Blind],
    audit: &[AuditEvent],
    now: i64,
) -> Result<u64> {
    let mut removed = 0;
    for blind in blinds {
        removed += writer
            .conn
            .prepare_cached("DELETE FROM suppressions WHERE blind = ?1")?
            .execute([blind.0.as_slice()])? as u64;
    }
    append_audit(writer, audit, now)?;
    Ok(removed)
}

/// Whether any of these blind indexes is suppressed.
pub(super) fn suppressed(conn: &Connection, blind: &Blind) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM suppressions WHERE blind = ?1")?
        .query_row([blind.0.as_slice()], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(super) fn set_profile_value(
    writer: &mut Writer,
    subject: &str,
    path: &str,
    value: &[u8],
    at: i64,
    audit: &[AuditEvent],
) -> Result<()> {
    let Some(root) = root(&writer.conn, subject)? else {
        return Err(StoreError::Internal("rectifying a subject that does not exist".into()));
    };
    let key = writer.key(&root)?;
    let sealed = key.seal(seal_context::PROFILE, &seal_context::profile(&root, path), value);
    // Other family members' values of the path are older; the root's is now the newest.
    writer
        .conn
        .prepare_cached(
            "INSERT INTO profile_values (subject_id, path, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (subject_id, path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
        )?
        .execute(params![root, path, sealed, at])?;
    writer
        .conn
        .prepare_cached(
            "DELETE FROM profile_values WHERE path = ?2 AND subject_id IN (SELECT id FROM subjects WHERE merged_into = ?1)",
        )?
        .execute(params![root, path])?;
    append_audit(writer, audit, at)?;
    Ok(())
}

pub(super) fn events_page(
    conn: &Connection,
    subject: &str,
    after: Option<&EventCursor>,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let Some(root) = root(conn, subject)? else { return Ok(Vec::new()) };
    let (timestamp, source, dedupe) = match after {
        Some((timestamp, source, dedupe)) => (*timestamp, source.clone(), dedupe.to_vec()),
        None => (i64::MIN, String::new(), Vec::new()),
    };
    let mut statement = conn.prepare_cached(
        "SELECT subject_id, source, dedupe, type, name, timestamp, received_at, sealed FROM events
         WHERE subject_id IN (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)
           AND (timestamp, source, dedupe) > (?2, ?3, ?4)
         ORDER BY timestamp, source, dedupe LIMIT ?5",
    )?;
    let rows = statement.query_map(params![root, timestamp, source, dedupe, limit], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Vec<u8>>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, i64>(6)?,
            row.get::<_, Vec<u8>>(7)?,
        ))
    })?;
    rows.map(|row| {
        let (subject, source, dedupe, kind, name, timestamp, received_at, sealed) = row?;
        Ok(StoredEvent {
            subject,
            source,
            dedupe: crate::dedupe_from(dedupe)?,
            kind,
            name,
            timestamp,
            received_at,
            sealed,
        })
    })
    .collect()
}

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
            .execute(params![crate::new_message_id(), DELIVERY_TOPIC, delivery.payload, now])?;
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

pub(super) fn apply_retention(
    writer: &mut Writer,
    catalog: &Catalog,
    now: i64,
    limit: u32,
) -> Result<RetentionReport> {
    let mut report = RetentionReport {
        events_deleted: writer
            .conn
            .prepare_cached(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE expires_at <= ?1 LIMIT ?2)",
            )?
            .execute(params![now, limit])? as u64,
        ..RetentionReport::default()
    };
    // Events whose shorter-lived properties expired (or whose lifetime is not known yet): open,
    // remove what expired, seal again.
    type Due = (i64, String, String, Vec<u8>, i64, Vec<u8>);
    let due: Vec<Due> = writer
        .conn
        .prepare_cached(
            "SELECT e.seq, e.subject_id, e.source, e.dedupe, e.timestamp, e.sealed FROM events e
             JOIN subjects s ON s.id = e.subject_id
             WHERE s.erased_at IS NULL AND (e.trim_at IS NULL OR e.trim_at <= ?1) LIMIT ?2",
        )?
        .query_map(params![now, limit], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (seq, subject, source, dedupe, timestamp, sealed) in due {
        let dedupe = crate::dedupe_from(dedupe)?;
        let key = writer.key(&subject)?;
        let context = seal_context::event(&subject, &source, &dedupe);
        let opened = key
            .open(seal_context::EVENT, &context, &sealed)
            .ok()
            .and_then(|plain| serde_json::from_slice::<Value>(&plain).ok());
        let Some(Value::Object(mut record)) = opened else {
            // A row that does not open is a bug or damage; it must not hold retention up for every
            // other row. It is looked at again in a day, and logged.
            tracing::error!(seq, "an event does not open during retention; skipped for a day");
            writer
                .conn
                .prepare_cached("UPDATE events SET trim_at = ?2 WHERE seq = ?1")?
                .execute(params![seq, now.saturating_add(86_400_000)])?;
            continue;
        };
        match tactful_domain::retention::trim(catalog, &mut record, timestamp, now) {
            tactful_domain::retention::Trimmed::Expired => {
                writer.conn.prepare_cached("DELETE FROM events WHERE seq = ?1")?.execute([seq])?;
                report.events_deleted += 1;
            }
            tactful_domain::retention::Trimmed::Kept { changed, trim_at, expires_at } => {
                if changed {
                    let bytes = serde_json::to_vec(&record)
                        .map_err(|error| StoreError::Internal(error.to_string()))?;
                    let resealed = key.seal(seal_context::EVENT, &context, &bytes);
                    writer
                        .conn
                        .prepare_cached(
                            "UPDATE events SET sealed = ?2, trim_at = ?3, expires_at = ?4 WHERE seq = ?1",
                        )?
                        .execute(params![seq, resealed, trim_at, expires_at])?;
                    report.events_trimmed += 1;
                } else {
                    writer
                        .conn
                        .prepare_cached("UPDATE events SET trim_at = ?2, expires_at = ?3 WHERE seq = ?1")?
                        .execute(params![seq, trim_at, expires_at])?;
                }
            }
        }
    }
    for property in catalog.properties() {
        if property.path.contains("[]") {
            continue;
        }
        report.profile_values_deleted += writer
            .conn
            .prepare_cached("DELETE FROM profile_values WHERE path = ?1 AND updated_at <= ?2")?
            .execute(params![property.path, now.saturating_sub(property.retention.as_millis())])?
            as u64;
    }
    report.legal_holds_deleted = writer
        .conn
        .prepare_cached("DELETE FROM legal_holds WHERE id IN (SELECT id FROM legal_holds WHERE retain_until <= ?1 LIMIT ?2)")?
        .execute(params![now, limit])? as u64;
    if !report.is_empty() {
        let audit = [AuditEvent::Retention {
            events_deleted: report.events_deleted,
            events_trimmed: report.events_trimmed,
            profile_values_deleted: report.profile_values_deleted,
            legal_holds_deleted: report.legal_holds_deleted,
        }];
        append_audit(writer, &audit, now)?;
    }
    Ok(report)
}
