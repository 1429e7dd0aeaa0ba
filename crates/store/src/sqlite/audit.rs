//! The audit log on SQLite: appends on the writer, which keeps the log's size and Merkle frontier
//! in memory and writes them once per group commit; reads and checkpoints beside it.

use async_trait::async_trait;
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tactful_domain::audit::{AuditEntry, AuditEvent, CHECKPOINT_CONTEXT, Checkpoint};
use tactful_domain::encoding::hex;
use tactful_domain::merkle::Frontier;

use super::SqliteStore;
use super::writer::Writer;
use crate::{AuditStore, Result, StoreError, StoredAuditEntry};

/// SQLite integers are signed; positions never come near the limit.
fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
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

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_append(&self, events: Vec<AuditEvent>, at: i64) -> Result<Vec<u64>> {
        self.write(move |writer| append_audit(writer, &events, at)).await
    }

    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<StoredAuditEntry>> {
        self.read(move |conn| audit_entries(conn, after, limit)).await
    }

    async fn audit_for_subject(&self, pseudonym: &str, limit: u32) -> Result<Vec<StoredAuditEntry>> {
        let pseudonym = pseudonym.to_owned();
        self.read(move |conn| audit_for_subject(conn, &pseudonym, limit)).await
    }

    async fn audit_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>> {
        self.write(move |writer| audit_checkpoint(writer, at)).await
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.read(audit_checkpoints).await
    }
}
