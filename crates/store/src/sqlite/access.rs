//! Consent ledger, receipts, API keys and the audit log on SQLite: the statements behind those
//! `Store` methods, run on the writer (writes) or a reader connection (reads).

use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tactful_domain::audit::{AuditEntry, AuditEvent, CHECKPOINT_CONTEXT, Checkpoint};
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod};
use tactful_domain::encoding::hex;
use tactful_domain::merkle::Frontier;

use super::Writer;
use crate::resolve::ConsentRow;
use crate::{
    ApiKeyRecord, CodeOutcome, LedgerEntry, Result, SignInCode, StoreError, StoredAuditEntry, StoredReceipt,
    SubjectState,
};

/// SQLite integers are signed; positions never come near the limit.
fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

const CONSENT_COLUMNS: &str = "id, purpose, kind, method, at, expires_at, version, source, jurisdiction";

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
    })
}

pub(super) fn to_event(columns: ConsentColumns) -> Result<ConsentEvent> {
    let ConsentColumns { id, purpose, kind, method, at, expires_at, version, source, jurisdiction } = columns;
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
    })
}

/// The family root of `subject` (itself when not merged), if it exists.
/// The family root of a subject, or `None` if there is no such subject or it was erased.
pub(super) fn root(conn: &Connection, subject: &str) -> Result<Option<String>> {
    let row: Option<(Option<String>, Option<i64>)> = conn
        .prepare_cached("SELECT merged_into, erased_at FROM subjects WHERE id = ?1")?
        .query_row([subject], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((_, Some(_))) | None => None,
        Some((merged_into, None)) => Some(merged_into.unwrap_or_else(|| subject.to_owned())),
    })
}

pub(super) fn subject_state(conn: &Connection, subject: &str) -> Result<Option<SubjectState>> {
    let Some(root) = root(conn, subject)? else { return Ok(None) };
    let (jurisdiction, minor, restricted): (Option<String>, bool, bool) = conn
        .prepare_cached("SELECT jurisdiction, minor, restricted FROM subjects WHERE id = ?1")?
        .query_row([&root], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    let mut statement = conn.prepare_cached(
        "SELECT c.id, c.purpose, c.kind, c.method, c.at, c.expires_at, c.version, c.source, c.jurisdiction
         FROM consent_events c JOIN subjects s ON s.id = c.subject_id
         WHERE s.id = ?1 OR s.merged_into = ?1 ORDER BY c.at, c.id",
    )?;
    let ledger = statement
        .query_map([&root], consent_event)?
        .map(|columns| to_event(columns?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(SubjectState { subject: root, jurisdiction, minor, restricted, ledger }))
}

/// Appends consent rows (ledger entries and their receipts).
pub(super) fn write_consents(conn: &Connection, rows: &[ConsentRow], now: i64) -> Result<()> {
    for row in rows {
        let event = &row.event;
        conn.prepare_cached(&format!(
            "INSERT INTO consent_events (subject_id, {CONSENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
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
            event.jurisdiction
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
        .query_map(params![at, id, limit], |row| Ok((consent_event(row)?, row.get::<_, String>(9)?)))?;
    rows.map(|row| {
        let (columns, subject) = row?;
        Ok(LedgerEntry { subject, event: to_event(columns)? })
    })
    .collect()
}

pub(super) fn lapsed_consents(conn: &Connection, now: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
    let mut statement = conn.prepare_cached(crate::LAPSED_CONSENTS_SQL)?;
    let rows = statement
        .query_map(params![now, limit], |row| Ok((consent_event(row)?, row.get::<_, String>(9)?)))?;
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

/// The log's head: how many entries, and the Merkle frontier over them.
fn audit_head(writer: &mut Writer) -> Result<(u64, Frontier)> {
    if let Some(head) = &writer.audit_head {
        return Ok(head.clone());
    }
    let size: i64 =
        writer.conn.query_row("SELECT value FROM counters WHERE name = 'audit'", [], |row| row.get(0))?;
    let bytes: Vec<u8> =
        writer.conn.query_row("SELECT frontier FROM audit_frontier WHERE id = 1", [], |row| row.get(0))?;
    let frontier = Frontier::from_bytes(&bytes)
        .ok_or_else(|| StoreError::Internal("the audit frontier is damaged".into()))?;
    let size = u64::try_from(size).unwrap_or(0);
    if frontier.size() != size {
        return Err(StoreError::Internal(format!(
            "the audit log's counter ({size}) and frontier ({}) disagree",
            frontier.size()
        )));
    }
    writer.audit_head = Some((size, frontier.clone()));
    Ok((size, frontier))
}

/// Appends entries in the writer's transaction: gapless positions, leaf hashes, frontier.
pub(super) fn append_audit(writer: &mut Writer, events: &[AuditEvent], at: i64) -> Result<Vec<u64>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (mut size, mut frontier) = audit_head(writer)?;
    let mut positions = Vec::with_capacity(events.len());
    for event in events {
        size += 1;
        let entry = AuditEntry { seq: size, at, event: event.clone() };
        let text = entry.to_text();
        let leaf = AuditEntry::leaf(&text);
        frontier.push(leaf);
        writer
            .conn
            .prepare_cached(
                "INSERT INTO audit_log (seq, at, kind, subject, entry, leaf) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![as_i64(size), at, event.kind(), event.subject(), text, leaf.as_slice()])?;
        positions.push(size);
    }
    // The counter and the frontier are written once per transaction, just before it commits
    // ([`flush_audit_head`]): many appends in one group commit cost one write of each.
    writer.audit_head = Some((size, frontier));
    writer.audit_head_dirty = true;
    Ok(positions)
}

/// Writes the audit log's size and frontier if this transaction appended entries. Called by the
/// writer loop right before `COMMIT`.
pub(super) fn flush_audit_head(writer: &mut Writer) -> Result<()> {
    if !writer.audit_head_dirty {
        return Ok(());
    }
    let Some((size, frontier)) = &writer.audit_head else {
        return Err(StoreError::Internal("audit entries were appended without a head".into()));
    };
    writer
        .conn
        .prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'audit'")?
        .execute([as_i64(*size)])?;
    writer
        .conn
        .prepare_cached("UPDATE audit_frontier SET frontier = ?1 WHERE id = 1")?
        .execute([frontier.to_bytes()])?;
    writer.audit_head_dirty = false;
    Ok(())
}

fn audit_row(row: &Row<'_>) -> rusqlite::Result<(u64, i64, String, Vec<u8>)> {
    Ok((u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0), row.get(1)?, row.get(2)?, row.get(3)?))
}

fn to_audit((seq, at, text, leaf): (u64, i64, String, Vec<u8>)) -> Result<StoredAuditEntry> {
    let leaf =
        leaf.try_into().map_err(|_| StoreError::Internal("an audit leaf hash is not 32 bytes".into()))?;
    Ok(StoredAuditEntry { seq, at, text, leaf })
}

pub(super) fn audit_entries(conn: &Connection, after: u64, limit: u32) -> Result<Vec<StoredAuditEntry>> {
    let mut statement = conn
        .prepare_cached("SELECT seq, at, entry, leaf FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    statement.query_map(params![as_i64(after), limit], audit_row)?.map(|row| to_audit(row?)).collect()
}

pub(super) fn audit_for_subject(
    conn: &Connection,
    pseudonym: &str,
    limit: u32,
) -> Result<Vec<StoredAuditEntry>> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, at, entry, leaf FROM audit_log WHERE subject = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    statement.query_map(params![pseudonym, limit], audit_row)?.map(|row| to_audit(row?)).collect()
}

fn checkpoint_row(row: &Row<'_>) -> rusqlite::Result<Checkpoint> {
    let encode = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(Checkpoint {
        size: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
        root: hex(&row.get::<_, Vec<u8>>(1)?),
        at: row.get(2)?,
        key_id: row.get(3)?,
        public_key: encode(row.get(4)?),
        signature: encode(row.get(5)?),
    })
}

pub(super) fn audit_checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>> {
    let mut statement = conn.prepare_cached(
        "SELECT size, root, at, key_id, public_key, signature FROM audit_checkpoints ORDER BY size",
    )?;
    Ok(statement.query_map([], checkpoint_row)?.collect::<rusqlite::Result<_>>()?)
}

/// Signs the current head unless it is already checkpointed.
pub(super) fn audit_checkpoint(writer: &mut Writer, at: i64) -> Result<Option<Checkpoint>> {
    let (size, frontier) = audit_head(writer)?;
    if size == 0 {
        return Ok(None);
    }
    let existing = writer
        .conn
        .prepare_cached(
            "SELECT size, root, at, key_id, public_key, signature FROM audit_checkpoints WHERE size = ?1",
        )?
        .query_row([as_i64(size)], checkpoint_row)
        .optional()?;
    if let Some(existing) = existing {
        return Ok(Some(existing));
    }
    let root = frontier.root();
    let signature = writer.vault.sign(CHECKPOINT_CONTEXT, &Checkpoint::message(size, &root, at));
    let public_key = writer.vault.public_key();
    writer
        .conn
        .prepare_cached(
            "INSERT INTO audit_checkpoints (size, root, at, key_id, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![as_i64(size), root.as_slice(), at, public_key.id(), public_key.0.as_slice(), signature.as_slice()])?;
    Ok(Some(Checkpoint {
        size,
        root: hex(&root),
        at,
        key_id: public_key.id(),
        public_key: public_key.to_base64(),
        signature: base64::engine::general_purpose::STANDARD.encode(signature),
    }))
}

/// An API key row; its hash is checked for length by [`to_key`].
fn key_row(row: &Row<'_>) -> rusqlite::Result<(ApiKeyRecord, Vec<u8>)> {
    let record = ApiKeyRecord {
        id: row.get(0)?,
        hash: [0; 32],
        name: row.get(2)?,
        role: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        revoked_at: row.get(6)?,
    };
    Ok((record, row.get(1)?))
}

fn to_key((mut record, hash): (ApiKeyRecord, Vec<u8>)) -> Result<ApiKeyRecord> {
    record.hash =
        hash.try_into().map_err(|_| StoreError::Internal("an API key hash is not 32 bytes".into()))?;
    Ok(record)
}

const KEY_COLUMNS: &str = "id, hash, name, role, created_at, expires_at, revoked_at";

pub(super) fn create_api_key(writer: &mut Writer, key: &ApiKeyRecord, audit: &AuditEvent) -> Result<()> {
    writer
        .conn
        .prepare_cached(&format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"))?
        .execute(params![
            key.id,
            key.hash.as_slice(),
            key.name,
            key.role,
            key.created_at,
            key.expires_at,
            key.revoked_at
        ])?;
    append_audit(writer, std::slice::from_ref(audit), key.created_at)?;
    Ok(())
}

pub(super) fn api_key(conn: &Connection, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>> {
    conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1"))?
        .query_row([hash.as_slice()], key_row)
        .optional()?
        .map(to_key)
        .transpose()
}

pub(super) fn api_keys(conn: &Connection) -> Result<Vec<ApiKeyRecord>> {
    let mut statement =
        conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"))?;
    statement.query_map([], key_row)?.map(|row| to_key(row?)).collect()
}

pub(super) fn revoke_api_key(writer: &mut Writer, id: &str, at: i64, audit: &AuditEvent) -> Result<bool> {
    let revoked = writer
        .conn
        .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![id, at])?;
    if revoked == 1 {
        append_audit(writer, std::slice::from_ref(audit), at)?;
    }
    Ok(revoked == 1)
}

pub(super) fn create_sign_in_code(writer: &mut Writer, code: &SignInCode) -> Result<()> {
    writer
        .conn
        .prepare_cached("DELETE FROM sign_in_codes WHERE expires_at < ?1")?
        .execute([code.created_at - 86_400_000])?;
    writer
        .conn
        .prepare_cached(
            "INSERT INTO sign_in_codes (id, subject_id, code_hash, attempts, created_at, expires_at)
             VALUES (?1, ?2, ?3, 0, ?4, ?5)",
        )?
        .execute(params![code.id, code.subject, code.hash.as_slice(), code.created_at, code.expires_at])?;
    Ok(())
}

pub(super) fn try_sign_in_code(
    writer: &mut Writer,
    id: &str,
    hash: &[u8; 32],
    now: i64,
    max_attempts: u32,
) -> Result<CodeOutcome> {
    let found: Option<crate::CodeRow> = writer
        .conn
        .prepare_cached(
            "SELECT subject_id, code_hash, attempts, expires_at, used_at FROM sign_in_codes WHERE id = ?1",
        )?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
        .optional()?;
    let (outcome, write) = crate::judge_sign_in(found, hash, now, max_attempts);
    match write {
        Some(true) => {
            writer
                .conn
                .prepare_cached("UPDATE sign_in_codes SET used_at = ?2 WHERE id = ?1")?
                .execute(params![id, now])?;
        }
        Some(false) => {
            writer
                .conn
                .prepare_cached("UPDATE sign_in_codes SET attempts = attempts + 1 WHERE id = ?1")?
                .execute([id])?;
        }
        None => {}
    }
    Ok(outcome)
}
