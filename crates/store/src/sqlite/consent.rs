//! The consent ledger and its receipts on SQLite: consent rows written on the writer, in the
//! transaction of what caused them, and read back from a reader connection.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tactful_domain::audit::AuditEvent;
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod};

use super::audit::append_audit;
use super::subjects::root;
use super::{SqliteStore, deliveries, now_millis};
use crate::signed::ConsentRow;
use crate::{ConsentStore, LedgerEntry, NewDelivery, Result, StoreError, StoredReceipt};

const CONSENT_COLUMNS: &str =
    "id, purpose, kind, method, at, expires_at, version, source, jurisdiction, verified, provenance";

/// A consent ledger row, before its kind and method are parsed.
pub(super) struct ConsentColumns {
    id: String,
    purpose: String,
    kind: String,
    method: String,
    at: i64,
    expires_at: Option<i64>,
    version: u32,
    source: Option<String>,
    jurisdiction: Option<String>,
    verified: bool,
    provenance: Option<String>,
}

/// Reads the columns of [`CONSENT_COLUMNS`], starting at the first.
pub(super) fn consent_event(row: &Row<'_>) -> rusqlite::Result<ConsentColumns> {
    Ok(ConsentColumns {
        id: row.get(0)?,
        purpose: row.get(1)?,
        kind: row.get(2)?,
        method: row.get(3)?,
        at: row.get(4)?,
        expires_at: row.get(5)?,
        version: row.get(6)?,
        source: row.get(7)?,
        jurisdiction: row.get(8)?,
        verified: row.get(9)?,
        provenance: row.get(10)?,
    })
}

pub(super) fn to_event(columns: ConsentColumns) -> Result<ConsentEvent> {
    let ConsentColumns {
        id,
        purpose,
        kind,
        method,
        at,
        expires_at,
        version,
        source,
        jurisdiction,
        verified,
        provenance,
    } = columns;
    Ok(ConsentEvent {
        id,
        purpose,
        kind: ConsentKind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown consent kind {kind:?}")))?,
        method: ConsentMethod::parse(&method)
            .ok_or_else(|| StoreError::Internal(format!("unknown consent method {method:?}")))?,
        at,
        expires_at,
        version,
        source,
        jurisdiction,
        verified,
        provenance: crate::shared::provenance(provenance.as_deref())?,
    })
}

/// Appends consent rows (ledger entries and their receipts).
pub(super) fn write_consents(conn: &Connection, rows: &[ConsentRow], now: i64) -> Result<()> {
    for row in rows {
        let event = &row.event;
        conn.prepare_cached(&format!(
            "INSERT INTO consent_events (subject_id, {CONSENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))?
        .execute(params![
            row.subject,
            event.id,
            event.purpose,
            event.kind.as_str(),
            event.method.as_str(),
            event.at,
            event.expires_at,
            event.version,
            event.source,
            event.jurisdiction,
            event.verified,
            crate::shared::provenance_text(event.provenance.as_ref())
        ])?;
        conn.prepare_cached(
            "INSERT INTO consent_receipts (id, subject_id, created_at, body) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![event.id, row.subject, now, row.receipt])?;
    }
    Ok(())
}

pub(super) fn consent_ledger(
    conn: &Connection,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<LedgerEntry>> {
    let (at, id) = after.unwrap_or((i64::MIN, String::new()));
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {CONSENT_COLUMNS}, subject_id FROM consent_events WHERE (at, id) > (?1, ?2) ORDER BY at, id LIMIT ?3"
    ))?;
    let rows = statement
        .query_map(params![at, id, limit], |row| Ok((consent_event(row)?, row.get::<_, String>(11)?)))?;
    rows.map(|row| {
        let (columns, subject) = row?;
        Ok(LedgerEntry { subject, event: to_event(columns)? })
    })
    .collect()
}

pub(super) fn lapsed_consents(conn: &Connection, now: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
    let mut statement = conn.prepare_cached(crate::shared::LAPSED_CONSENTS_SQL)?;
    let rows = statement
        .query_map(params![now, limit], |row| Ok((consent_event(row)?, row.get::<_, String>(11)?)))?;
    rows.map(|row| {
        let (columns, subject) = row?;
        Ok(LedgerEntry { subject, event: to_event(columns)? })
    })
    .collect()
}

fn receipt_row(row: &Row<'_>) -> rusqlite::Result<StoredReceipt> {
    Ok(StoredReceipt { id: row.get(0)?, subject: row.get(1)?, created_at: row.get(2)?, body: row.get(3)? })
}

pub(super) fn receipt(conn: &Connection, id: &str) -> Result<Option<StoredReceipt>> {
    Ok(conn
        .prepare_cached("SELECT id, subject_id, created_at, body FROM consent_receipts WHERE id = ?1")?
        .query_row([id], receipt_row)
        .optional()?)
}

pub(super) fn receipts(conn: &Connection, subject: &str) -> Result<Vec<StoredReceipt>> {
    let Some(root) = root(conn, subject)? else { return Ok(Vec::new()) };
    let mut statement = conn.prepare_cached(
        "SELECT r.id, r.subject_id, r.created_at, r.body FROM consent_receipts r JOIN subjects s ON s.id = r.subject_id
         WHERE s.id = ?1 OR s.merged_into = ?1 ORDER BY r.created_at, r.id",
    )?;
    Ok(statement.query_map([root], receipt_row)?.collect::<rusqlite::Result<_>>()?)
}

#[async_trait]
impl ConsentStore for SqliteStore {
    async fn record_consents(
        &self,
        subject: &str,
        events: Vec<(ConsentEvent, String)>,
        audit: Vec<AuditEvent>,
        deliveries: Vec<NewDelivery>,
    ) -> Result<()> {
        let subject = subject.to_owned();
        self.write(move |writer| {
            let root = root(&writer.conn, &subject)?
                .ok_or_else(|| StoreError::Internal("consent for a subject that does not exist".into()))?;
            let rows: Vec<ConsentRow> = events
                .iter()
                .map(|(event, receipt)| ConsentRow {
                    subject: root.clone(),
                    event: event.clone(),
                    receipt: receipt.clone(),
                })
                .collect();
            let now = now_millis();
            write_consents(&writer.conn, &rows, now)?;
            deliveries::enqueue(&writer.conn, &deliveries, now)?;
            append_audit(writer, &audit, now)?;
            Ok(())
        })
        .await
    }

    async fn consent_ledger(&self, after: Option<(i64, String)>, limit: u32) -> Result<Vec<LedgerEntry>> {
        self.read(move |conn| consent_ledger(conn, after, limit)).await
    }

    async fn lapsed_consents(&self, now: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        self.read(move |conn| lapsed_consents(conn, now, limit)).await
    }

    async fn receipt(&self, id: &str) -> Result<Option<StoredReceipt>> {
        let id = id.to_owned();
        self.read(move |conn| receipt(conn, &id)).await
    }

    async fn receipts(&self, subject: &str) -> Result<Vec<StoredReceipt>> {
        let subject = subject.to_owned();
        self.read(move |conn| receipts(conn, &subject)).await
    }
}
