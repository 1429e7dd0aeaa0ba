//! The audit log on PostgreSQL. Appends from every instance serialize on the `counters` row of the
//! log, locked until the appending transaction ends, which keeps positions gapless and the Merkle
//! frontier consistent; every transaction appends to the log last, so that lock is never held while
//! waiting for another. Within an instance, concurrent callers' appends share one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use tactful_domain::audit::{AuditEntry, AuditEvent, CHECKPOINT_CONTEXT, Checkpoint, Unnumbered};
use tactful_domain::encoding::hex;
use tactful_domain::merkle::Frontier;
use tactful_vault::Vault;

use super::PostgresStore;
use crate::audit_queue::{AuditQueue, Waiting, answer_all, answered};
use crate::{AuditStore, Result, StoreError, StoredAuditEntry};

/// The log's head, locked for the rest of the transaction.
async fn lock_head(conn: &mut PgConnection) -> Result<(u64, Frontier)> {
    let size: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'audit' FOR UPDATE")
        .fetch_one(&mut *conn)
        .await?;
    let bytes: Vec<u8> = sqlx::query_scalar("SELECT frontier FROM audit_frontier WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *conn)
        .await?;
    let frontier = Frontier::from_bytes(&bytes)
        .ok_or_else(|| StoreError::Internal("the audit frontier is damaged".into()))?;
    let size = u64::try_from(size).unwrap_or(0);
    if frontier.size() != size {
        return Err(StoreError::Internal(format!(
            "the audit counter ({size}) and frontier ({}) disagree",
            frontier.size()
        )));
    }
    Ok((size, frontier))
}

/// Appends entries within the caller's transaction. Call it last in the transaction.
pub(super) async fn append_audit(
    conn: &mut PgConnection,
    events: &[AuditEvent],
    at: i64,
) -> Result<Vec<u64>> {
    let entries: Vec<Unnumbered> = events.iter().map(|event| Unnumbered::new(at, event.clone())).collect();
    append_unnumbered(conn, &entries).await
}

/// Appends entries already serialized (by their callers) within the caller's transaction, in one
/// statement. Call it last in the transaction.
async fn append_unnumbered<'a>(
    conn: &mut PgConnection,
    entries: impl IntoIterator<Item = &'a Unnumbered> + Clone,
) -> Result<Vec<u64>> {
    if entries.clone().into_iter().next().is_none() {
        return Ok(Vec::new());
    }
    let (mut size, mut frontier) = lock_head(conn).await?;
    let (mut seqs, mut ats, mut kinds, mut subjects, mut texts, mut leaves) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        size += 1;
        let text = entry.text(size);
        let leaf = AuditEntry::leaf(&text);
        frontier.push(leaf);
        seqs.push(i64::try_from(size).unwrap_or(i64::MAX));
        ats.push(entry.at());
        kinds.push(entry.kind());
        subjects.push(entry.subject());
        texts.push(text);
        leaves.push(leaf.to_vec());
    }
    sqlx::query(
        "INSERT INTO audit_log (seq, at, kind, subject, entry, leaf)
         SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::bytea[])",
    )
    .bind(&seqs)
    .bind(&ats)
    .bind(&kinds)
    .bind(&subjects)
    .bind(&texts)
    .bind(&leaves)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE counters SET value = $1 WHERE name = 'audit'")
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE audit_frontier SET frontier = $1 WHERE id = 1")
        .bind(frontier.to_bytes())
        .execute(&mut *conn)
        .await?;
    Ok(seqs.into_iter().map(|seq| u64::try_from(seq).unwrap_or(0)).collect())
}

/// Commits callers' entries in one transaction. Should appending fail, the transaction is dropped
/// (rolled back) and each caller's entries are committed on their own, so one caller's failure is
/// that caller's alone. A failed `COMMIT` is everyone's: whether it took effect is unknown, and a
/// retry could write entries twice.
async fn commit_batch(pool: &PgPool, waiting: &[Waiting]) -> Vec<Result<Vec<u64>>> {
    let everyone = || waiting.iter().flat_map(|caller| &caller.entries);
    let appended = async {
        let mut tx = pool.begin().await?;
        let positions = append_unnumbered(&mut tx, everyone()).await?;
        Ok::<_, StoreError>((tx, positions))
    }
    .await;
    match appended {
        Ok((tx, positions)) => match tx.commit().await {
            Ok(()) => {
                let mut positions = positions.into_iter();
                waiting
                    .iter()
                    .map(|caller| Ok(positions.by_ref().take(caller.entries.len()).collect()))
                    .collect()
            }
            Err(error) => {
                let message = error.to_string();
                waiting.iter().map(|_| Err(StoreError::Unavailable(message.clone()))).collect()
            }
        },
        Err(_) if waiting.len() > 1 => {
            let mut results = Vec::with_capacity(waiting.len());
            for caller in waiting {
                results.push(commit_one(pool, &caller.entries).await);
            }
            results
        }
        Err(error) => vec![Err(error)],
    }
}

async fn commit_one(pool: &PgPool, entries: &[Unnumbered]) -> Result<Vec<u64>> {
    let mut tx = pool.begin().await?;
    let positions = append_unnumbered(&mut tx, entries).await?;
    tx.commit().await?;
    Ok(positions)
}

/// Commits whatever callers are queued, round after round, until nobody is waiting. Callers who
/// arrive during a commit wait for the next round, which takes them all at once.
async fn drain(pool: PgPool, queue: Arc<AuditQueue>) {
    loop {
        let waiting = queue.take_or_disarm();
        if waiting.is_empty() {
            return;
        }
        let results = commit_batch(&pool, &waiting).await;
        answer_all(waiting, results);
    }
}

fn to_audit(row: &PgRow) -> Result<StoredAuditEntry> {
    let leaf: Vec<u8> = row.try_get("leaf")?;
    Ok(StoredAuditEntry {
        seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
        at: row.try_get("at")?,
        text: row.try_get("entry")?,
        leaf: leaf
            .try_into()
            .map_err(|_| StoreError::Internal("an audit leaf hash is not 32 bytes".into()))?,
    })
}

pub(super) async fn audit_entries(
    conn: &mut PgConnection,
    after: u64,
    limit: u32,
) -> Result<Vec<StoredAuditEntry>> {
    sqlx::query("SELECT seq, at, entry, leaf FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(to_audit)
        .collect()
}

pub(super) async fn audit_for_subject(
    conn: &mut PgConnection,
    pseudonym: &str,
    limit: u32,
) -> Result<Vec<StoredAuditEntry>> {
    sqlx::query("SELECT seq, at, entry, leaf FROM audit_log WHERE subject = $1 ORDER BY seq DESC LIMIT $2")
        .bind(pseudonym)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(to_audit)
        .collect()
}

fn to_checkpoint(row: &PgRow) -> Result<Checkpoint> {
    use base64::Engine as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(Checkpoint {
        size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
        root: hex(&row.try_get::<Vec<u8>, _>("root")?),
        at: row.try_get("at")?,
        key_id: row.try_get("key_id")?,
        public_key: encode(&row.try_get::<Vec<u8>, _>("public_key")?),
        signature: encode(&row.try_get::<Vec<u8>, _>("signature")?),
    })
}

pub(super) async fn audit_checkpoints(conn: &mut PgConnection) -> Result<Vec<Checkpoint>> {
    sqlx::query("SELECT size, root, at, key_id, public_key, signature FROM audit_checkpoints ORDER BY size")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(to_checkpoint)
        .collect()
}

/// Signs the current head unless it is already checkpointed (within the caller's transaction).
pub(super) async fn audit_checkpoint(
    conn: &mut PgConnection,
    vault: &Vault,
    at: i64,
) -> Result<Option<Checkpoint>> {
    let (size, frontier) = lock_head(conn).await?;
    if size == 0 {
        return Ok(None);
    }
    let size_param = i64::try_from(size).unwrap_or(i64::MAX);
    let existing = sqlx::query(
        "SELECT size, root, at, key_id, public_key, signature FROM audit_checkpoints WHERE size = $1",
    )
    .bind(size_param)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(existing) = existing {
        return Ok(Some(to_checkpoint(&existing)?));
    }
    let root = frontier.root();
    let signature = vault.sign(CHECKPOINT_CONTEXT, &Checkpoint::message(size, &root, at));
    let public_key = vault.public_key();
    let row = sqlx::query(
        "INSERT INTO audit_checkpoints (size, root, at, key_id, public_key, signature) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING size, root, at, key_id, public_key, signature",
    )
    .bind(size_param)
    .bind(root.as_slice())
    .bind(at)
    .bind(public_key.id())
    .bind(public_key.0.as_slice())
    .bind(signature.as_slice())
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(to_checkpoint(&row)?))
}

#[async_trait]
impl AuditStore for PostgresStore {
    /// Queued with every other caller's entries; one task commits them together (see [`drain`]),
    /// and each caller is answered once that commit is done.
    async fn audit_append(&self, events: Vec<AuditEvent>, at: i64) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let entries = events.into_iter().map(|event| Unnumbered::new(at, event)).collect();
        let (answer, start) = self.audit_queue.push(entries);
        if start {
            // A task of its own, so a caller that stops waiting does not stop the commit of others.
            tokio::spawn(drain(self.pool.clone(), self.audit_queue.clone()));
        }
        answered(answer).await
    }

    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<StoredAuditEntry>> {
        let mut conn = self.pool.acquire().await?;
        audit_entries(&mut conn, after, limit).await
    }

    async fn audit_for_subject(&self, pseudonym: &str, limit: u32) -> Result<Vec<StoredAuditEntry>> {
        let mut conn = self.pool.acquire().await?;
        audit_for_subject(&mut conn, pseudonym, limit).await
    }

    async fn audit_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>> {
        let mut tx = self.pool.begin().await?;
        let checkpoint = audit_checkpoint(&mut tx, &self.vault, at).await?;
        tx.commit().await?;
        Ok(checkpoint)
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let mut conn = self.pool.acquire().await?;
        audit_checkpoints(&mut conn).await
    }
}
