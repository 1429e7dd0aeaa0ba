//! Data-subject requests on SQLite: request records with their history, claims by workers, and the
//! [`RequestStore`] of this backend, whose erasure and retention live in `rights.rs` and
//! `retention.rs`. Writes run on the writer thread, inside its group-commit transaction, so each
//! method is all-or-nothing.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::Catalog;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_vault::Blind;

use super::audit::append_audit;
use super::deliveries::deliveries;
use super::subjects::root;
use super::writer::Writer;
use super::{SqliteStore, now_millis, retention, rights};
use crate::requests::{
    LegalHold, NewRequest, PurgeReport, RequestHistoryEntry, RequestRecord, RequestUpdate, RequestView,
    RetentionReport, ShredOutcome, ShredPlan, Suppression,
};
use crate::shared::OPEN_STATUSES;
use crate::{RequestStore, Result, StoreError};

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

pub(super) fn history(
    conn: &Connection,
    request: &str,
    at: i64,
    status: RequestStatus,
    note: &str,
) -> Result<()> {
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

pub(super) fn load_request(conn: &Connection, id: &str) -> Result<Option<RequestRecord>> {
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
pub(super) fn root_even_if_erased(conn: &Connection, subject: &str) -> Result<Option<String>> {
    let row: Option<Option<String>> = conn
        .prepare_cached("SELECT merged_into FROM subjects WHERE id = ?1")?
        .query_row([subject], |row| row.get(0))
        .optional()?;
    Ok(row.map(|merged_into| merged_into.unwrap_or_else(|| subject.to_owned())))
}

/// The final status of a request whose deliveries are all done, or `None` while one is pending.
pub(super) fn settled(conn: &Connection, request: &str) -> Result<Option<RequestStatus>> {
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

pub(super) fn request_audit(writer: &Writer, record: &RequestRecord, note: &str) -> AuditEvent {
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

#[async_trait]
impl RequestStore for SqliteStore {
    async fn create_request(&self, record: RequestRecord, audit: Vec<AuditEvent>) -> Result<NewRequest> {
        self.write(move |writer| create_request(writer, &record, &audit)).await
    }

    async fn request(&self, id: &str) -> Result<Option<RequestView>> {
        let id = id.to_owned();
        self.read(move |conn| request(conn, &id)).await
    }

    async fn requests(&self, subject: Option<&str>, limit: u32) -> Result<Vec<RequestRecord>> {
        let subject = subject.map(str::to_owned);
        self.read(move |conn| requests(conn, subject.as_deref(), limit)).await
    }

    async fn open_requests(&self, limit: u32) -> Result<Vec<RequestRecord>> {
        self.read(move |conn| open_requests(conn, limit)).await
    }

    async fn update_request(&self, id: &str, update: RequestUpdate) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |writer| update_request(writer, &id, &update, now_millis())).await
    }

    async fn claim_requests(&self, now: i64, lease_ms: i64, limit: u32) -> Result<Vec<RequestRecord>> {
        self.write(move |writer| claim_requests(writer, now, lease_ms, limit)).await
    }

    async fn hold(&self, holds: Vec<LegalHold>) -> Result<()> {
        self.write(move |writer| rights::hold(&writer.conn, &holds, now_millis())).await
    }

    async fn legal_holds(&self, subject: &str) -> Result<Vec<LegalHold>> {
        let subject = subject.to_owned();
        self.read(move |conn| rights::legal_holds(conn, &subject)).await
    }

    async fn shred(&self, subject: &str, plan: ShredPlan, now: i64) -> Result<ShredOutcome> {
        let subject = subject.to_owned();
        self.write(move |writer| rights::shred(writer, &subject, &plan, now)).await
    }

    async fn purge_erased(&self, limit: u32) -> Result<PurgeReport> {
        self.write(move |writer| rights::purge_erased(&writer.conn, limit, now_millis())).await
    }

    async fn set_restricted(&self, subject: &str, restricted: bool, audit: Vec<AuditEvent>) -> Result<()> {
        let subject = subject.to_owned();
        self.write(move |writer| rights::set_restricted(writer, &subject, restricted, &audit, now_millis()))
            .await
    }

    async fn suppress(&self, identifiers: Vec<Suppression>, audit: Vec<AuditEvent>) -> Result<u64> {
        self.write(move |writer| {
            let added = rights::suppress(writer, &identifiers, &audit, now_millis())?;
            writer.any_suppressed = None;
            Ok(added)
        })
        .await
    }

    async fn unsuppress(&self, blinds: Vec<Blind>, audit: Vec<AuditEvent>) -> Result<u64> {
        self.write(move |writer| {
            let removed = rights::unsuppress(writer, &blinds, &audit, now_millis())?;
            writer.any_suppressed = None;
            Ok(removed)
        })
        .await
    }

    async fn set_profile_value(
        &self,
        subject: &str,
        path: &str,
        value: Vec<u8>,
        at: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let (subject, path) = (subject.to_owned(), path.to_owned());
        self.write(move |writer| rights::set_profile_value(writer, &subject, &path, &value, at, &audit)).await
    }

    async fn apply_retention(&self, catalog: &Catalog, now: i64, limit: u32) -> Result<RetentionReport> {
        let catalog = catalog.clone();
        self.write(move |writer| retention::apply_retention(writer, &catalog, now, limit)).await
    }
}
