//! The audit log on SQLite: appends on the writer, which keeps the log's size and Merkle frontier
//! in memory and writes them once per group commit (concurrent callers' appends gathered into one
//! job of it); reads and checkpoints beside it.

use async_trait::async_trait;
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tactful_domain::audit::{AuditEntry, AuditEvent, CHECKPOINT_CONTEXT, Checkpoint, Unnumbered};
use tactful_domain::encoding::hex;
use tactful_domain::merkle::Frontier;

use std::sync::Arc;

use tokio::sync::mpsc;

use super::SqliteStore;
use super::writer::{Job, Writer};
use crate::audit_queue::{AuditQueue, Waiting, answer_all, answered};
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
    let entries: Vec<Unnumbered> = events.iter().map(|event| Unnumbered::new(at, event.clone())).collect();
    append_unnumbered(writer, &entries)
}

/// Appends entries already serialized (by their callers) in the writer's transaction: numbers them,
/// hashes them into the frontier and inserts them.
fn append_unnumbered<'a>(
    writer: &mut Writer,
    entries: impl IntoIterator<Item = &'a Unnumbered>,
) -> Result<Vec<u64>> {
    let mut entries = entries.into_iter().peekable();
    if entries.peek().is_none() {
        return Ok(Vec::new());
    }
    let (mut size, mut frontier) = audit_head(writer)?;
    let mut positions = Vec::new();
    let mut insert = writer.conn.prepare_cached(
        "INSERT INTO audit_log (seq, at, kind, subject, entry, leaf) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for entry in entries {
        size += 1;
        let text = entry.text(size);
        let leaf = AuditEntry::leaf(&text);
        frontier.push(leaf);
        insert.execute(params![
            as_i64(size),
            entry.at(),
            entry.kind(),
            entry.subject(),
            text,
            leaf.as_slice()
        ])?;
        positions.push(size);
    }
    drop(insert);
    // The counter and the frontier are written once per transaction, just before it commits
    // ([`flush_audit_head`]): many appends in one group commit cost one write of each.
    writer.audit_head = Some((size, frontier));
    writer.audit_head_dirty = true;
    Ok(positions)
}

/// Appends a batch of callers' entries, all at once. Should that fail, the batch is undone and each
/// caller's entries are appended on their own, so one caller's failure is that caller's alone: the
/// others' entries land once, in order.
fn append_batch(writer: &mut Writer, waiting: &[Waiting]) -> Vec<Result<Vec<u64>>> {
    let saved = match audit_head(writer) {
        Ok(head) => head,
        Err(error) => {
            let message = error.to_string();
            return waiting.iter().map(|_| Err(StoreError::Unavailable(message.clone()))).collect();
        }
    };
    let all = within_savepoint(writer, &saved, |writer| {
        append_unnumbered(writer, waiting.iter().flat_map(|caller| &caller.entries))
    });
    match all {
        Ok(positions) => {
            let mut positions = positions.into_iter();
            waiting.iter().map(|caller| Ok(positions.by_ref().take(caller.entries.len()).collect())).collect()
        }
        Err(_) => waiting
            .iter()
            .map(|caller| {
                let saved = audit_head(writer)?;
                within_savepoint(writer, &saved, |writer| append_unnumbered(writer, &caller.entries))
            })
            .collect(),
    }
}

/// Runs `work` in a savepoint; if it fails, undoes it and puts the audit head back to `saved`.
fn within_savepoint<T>(
    writer: &mut Writer,
    saved: &(u64, Frontier),
    work: impl FnOnce(&mut Writer) -> Result<T>,
) -> Result<T> {
    writer.conn.prepare_cached("SAVEPOINT audit_batch")?.execute([])?;
    let result = work(writer);
    if result.is_err() {
        writer.conn.prepare_cached("ROLLBACK TO audit_batch")?.execute([])?;
        writer.audit_head = Some(saved.clone());
    }
    writer.conn.prepare_cached("RELEASE audit_batch")?.execute([])?;
    result
}

/// A writer job that takes every caller queued for the audit log when it runs, appends their
/// entries in the group commit it runs in, and answers each once that commit is durable.
struct AuditBatch {
    queue: Arc<AuditQueue>,
    /// Taken from the queue on the first run (a job may run again after another job's failure).
    waiting: Option<Vec<Waiting>>,
    results: Vec<Result<Vec<u64>>>,
    answered: bool,
}

impl Job for AuditBatch {
    fn run(&mut self, writer: &mut Writer) -> bool {
        let waiting = self.waiting.get_or_insert_with(|| self.queue.take());
        self.results = append_batch(writer, waiting);
        true
    }

    fn finish(mut self: Box<Self>, committed: Result<()>) {
        // A job answered without running (the transaction could not begin) still owns the queue.
        let waiting = self.waiting.take().unwrap_or_else(|| self.queue.take());
        self.answered = true;
        let results = std::mem::take(&mut self.results);
        match committed {
            Ok(()) => answer_all(waiting, results),
            Err(error) => {
                let message = error.to_string();
                for caller in waiting {
                    caller.answer(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }
}

impl Drop for AuditBatch {
    /// A job dropped unanswered (the writer stopped) answers its callers rather than strand them.
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let waiting = self.waiting.take().unwrap_or_else(|| self.queue.take());
        for caller in waiting {
            caller.answer(Err(StoreError::Unavailable("the writer thread stopped".into())));
        }
    }
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
    /// Queued for the writer's next group commit with every other caller's entries: one job takes
    /// them all, and each caller is answered once the commit is durable.
    async fn audit_append(&self, events: Vec<AuditEvent>, at: i64) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let entries = events.into_iter().map(|event| Unnumbered::new(at, event)).collect();
        let (answer, start) = self.audit_queue.push(entries);
        if start {
            let job: Box<dyn Job> = Box::new(AuditBatch {
                queue: self.audit_queue.clone(),
                waiting: None,
                results: Vec::new(),
                answered: false,
            });
            // Never awaited here: a caller that stops waiting must not leave the queue without a job.
            match self.writer.try_send(job) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(job)) => {
                    let writer = self.writer.clone();
                    tokio::spawn(async move { writer.send(job).await });
                }
                // The job, dropped, answers everyone queued.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        answered(answer).await
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
