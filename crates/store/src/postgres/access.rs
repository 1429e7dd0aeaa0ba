//! Consent ledger, receipts, API keys and the audit log on PostgreSQL. Audit appends from every
//! instance serialize on the `counters` row of the log, locked until the appending transaction ends,
//! which keeps positions gapless and the Merkle frontier consistent; every transaction appends to
//! the log last, so that lock is never held while waiting for another.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use tactful_domain::audit::{AuditEntry, AuditEvent, CHECKPOINT_CONTEXT, Checkpoint};
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod};
use tactful_domain::encoding::hex;
use tactful_domain::merkle::Frontier;
use tactful_vault::Vault;

use crate::resolve::ConsentRow;
use crate::{
    ApiKeyRecord, CodeOutcome, LedgerEntry, Result, SignInCode, StoreError, StoredAuditEntry, StoredReceipt,
    SubjectState,
};

pub(super) fn to_event(row: &PgRow) -> Result<ConsentEvent> {
    let kind: String = row.try_get("kind")?;
    let method: String = row.try_get("method")?;
    Ok(ConsentEvent {
        id: row.try_get("id")?,
        purpose: row.try_get("purpose")?,
        kind: ConsentKind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown consent kind {kind:?}")))?,
        method: ConsentMethod::parse(&method)
            .ok_or_else(|| StoreError::Internal(format!("unknown consent method {method:?}")))?,
        at: row.try_get("at")?,
        expires_at: row.try_get("expires_at")?,
        version: u32::try_from(row.try_get::<i32, _>("version")?).unwrap_or(0),
        source: row.try_get("source")?,
        jurisdiction: row.try_get("jurisdiction")?,
    })
}

/// The family root of a subject; `None` for an unknown or erased one.
pub(super) async fn root(conn: &mut PgConnection, subject: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT merged_into, erased_at FROM subjects WHERE id = $1")
        .bind(subject)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    if row.try_get::<Option<i64>, _>("erased_at")?.is_some() {
        return Ok(None);
    }
    let merged_into: Option<String> = row.try_get("merged_into")?;
    Ok(Some(merged_into.unwrap_or_else(|| subject.to_owned())))
}

/// States of several family roots at once: attributes and the families' consent ledgers.
pub(super) async fn subject_states(conn: &mut PgConnection, roots: &[String]) -> Result<Vec<SubjectState>> {
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let mut states: Vec<SubjectState> =
        sqlx::query("SELECT id, jurisdiction, minor, restricted FROM subjects WHERE id = ANY($1)")
            .bind(roots)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                Ok(SubjectState {
                    subject: row.try_get("id")?,
                    jurisdiction: row.try_get("jurisdiction")?,
                    minor: row.try_get("minor")?,
                    restricted: row.try_get("restricted")?,
                    ledger: Vec::new(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
    let rows = sqlx::query(
        "SELECT COALESCE(s.merged_into, s.id) AS root, c.id, c.purpose, c.kind, c.method, c.at, c.expires_at,
                c.version, c.source, c.jurisdiction
         FROM consent_events c JOIN subjects s ON s.id = c.subject_id
         WHERE s.id = ANY($1) OR s.merged_into = ANY($1) ORDER BY c.at, c.id",
    )
    .bind(roots)
    .fetch_all(&mut *conn)
    .await?;
    let index: HashMap<String, usize> =
        states.iter().enumerate().map(|(position, state)| (state.subject.clone(), position)).collect();
    for row in &rows {
        let root: String = row.try_get("root")?;
        if let Some(&position) = index.get(&root) {
            states[position].ledger.push(to_event(row)?);
        }
    }
    Ok(states)
}

pub(super) async fn subject_state(conn: &mut PgConnection, subject: &str) -> Result<Option<SubjectState>> {
    let Some(root) = root(conn, subject).await? else { return Ok(None) };
    Ok(subject_states(conn, &[root]).await?.into_iter().next())
}

pub(super) async fn write_consents(conn: &mut PgConnection, rows: &[ConsentRow], now: i64) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|row| row.event.id.as_str()).collect();
    let subjects: Vec<&str> = rows.iter().map(|row| row.subject.as_str()).collect();
    let purposes: Vec<&str> = rows.iter().map(|row| row.event.purpose.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|row| row.event.kind.as_str()).collect();
    let methods: Vec<&str> = rows.iter().map(|row| row.event.method.as_str()).collect();
    let at: Vec<i64> = rows.iter().map(|row| row.event.at).collect();
    let expires: Vec<Option<i64>> = rows.iter().map(|row| row.event.expires_at).collect();
    let versions: Vec<i32> =
        rows.iter().map(|row| i32::try_from(row.event.version).unwrap_or(i32::MAX)).collect();
    let sources: Vec<Option<&str>> = rows.iter().map(|row| row.event.source.as_deref()).collect();
    let jurisdictions: Vec<Option<&str>> = rows.iter().map(|row| row.event.jurisdiction.as_deref()).collect();
    let receipts: Vec<&str> = rows.iter().map(|row| row.receipt.as_str()).collect();
    sqlx::query(
        "INSERT INTO consent_events (id, subject_id, purpose, kind, method, at, expires_at, version, source, jurisdiction)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[],
                              $8::int4[], $9::text[], $10::text[])",
    )
    .bind(&ids)
    .bind(&subjects)
    .bind(&purposes)
    .bind(&kinds)
    .bind(&methods)
    .bind(&at)
    .bind(&expires)
    .bind(&versions)
    .bind(&sources)
    .bind(&jurisdictions)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO consent_receipts (id, subject_id, created_at, body)
         SELECT id, subject_id, $3, body FROM UNNEST($1::text[], $2::text[], $4::text[]) AS t(id, subject_id, body)",
    )
    .bind(&ids)
    .bind(&subjects)
    .bind(now)
    .bind(&receipts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn consent_ledger(
    conn: &mut PgConnection,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<LedgerEntry>> {
    let (at, id) = after.unwrap_or((i64::MIN, String::new()));
    let rows = sqlx::query(
        "SELECT subject_id, id, purpose, kind, method, at, expires_at, version, source, jurisdiction FROM consent_events
         WHERE (at, id) > ($1, $2) ORDER BY at, id LIMIT $3",
    )
    .bind(at)
    .bind(id)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok(LedgerEntry { subject: row.try_get("subject_id")?, event: to_event(row)? }))
        .collect()
}

pub(super) async fn lapsed_consents(
    conn: &mut PgConnection,
    now: i64,
    limit: u32,
) -> Result<Vec<LedgerEntry>> {
    let sql = crate::LAPSED_CONSENTS_SQL.replace("?1", "$1").replace("?2", "$2");
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(i64::from(limit)).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| Ok(LedgerEntry { subject: row.try_get("subject_id")?, event: to_event(row)? }))
        .collect()
}

fn to_receipt(row: &PgRow) -> Result<StoredReceipt> {
    Ok(StoredReceipt {
        id: row.try_get("id")?,
        subject: row.try_get("subject_id")?,
        created_at: row.try_get("created_at")?,
        body: row.try_get("body")?,
    })
}

pub(super) async fn receipt(conn: &mut PgConnection, id: &str) -> Result<Option<StoredReceipt>> {
    sqlx::query("SELECT id, subject_id, created_at, body FROM consent_receipts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(to_receipt)
        .transpose()
}

pub(super) async fn receipts(conn: &mut PgConnection, subject: &str) -> Result<Vec<StoredReceipt>> {
    let Some(root) = root(conn, subject).await? else { return Ok(Vec::new()) };
    sqlx::query(
        "SELECT r.id, r.subject_id, r.created_at, r.body FROM consent_receipts r JOIN subjects s ON s.id = r.subject_id
         WHERE s.id = $1 OR s.merged_into = $1 ORDER BY r.created_at, r.id",
    )
    .bind(root)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(to_receipt)
    .collect()
}

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
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (mut size, mut frontier) = lock_head(conn).await?;
    let mut seqs = Vec::with_capacity(events.len());
    let mut texts = Vec::with_capacity(events.len());
    let mut leaves = Vec::with_capacity(events.len());
    for event in events {
        size += 1;
        let text = AuditEntry { seq: size, at, event: event.clone() }.to_text();
        let leaf = AuditEntry::leaf(&text);
        frontier.push(leaf);
        seqs.push(i64::try_from(size).unwrap_or(i64::MAX));
        texts.push(text);
        leaves.push(leaf.to_vec());
    }
    let kinds: Vec<&str> = events.iter().map(AuditEvent::kind).collect();
    let subjects: Vec<Option<&str>> = events.iter().map(AuditEvent::subject).collect();
    sqlx::query(
        "INSERT INTO audit_log (seq, at, kind, subject, entry, leaf)
         SELECT seq, $2, kind, subject, entry, leaf
         FROM UNNEST($1::int8[], $3::text[], $4::text[], $5::text[], $6::bytea[]) AS t(seq, kind, subject, entry, leaf)",
    )
    .bind(&seqs)
    .bind(at)
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

fn to_key(row: &PgRow) -> Result<ApiKeyRecord> {
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        hash: hash.try_into().map_err(|_| StoreError::Internal("an API key hash is not 32 bytes".into()))?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub(super) async fn create_api_key(
    conn: &mut PgConnection,
    key: &ApiKeyRecord,
    audit: &AuditEvent,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, hash, name, role, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&key.id)
    .bind(key.hash.as_slice())
    .bind(&key.name)
    .bind(&key.role)
    .bind(key.created_at)
    .bind(key.expires_at)
    .bind(key.revoked_at)
    .execute(&mut *conn)
    .await?;
    append_audit(conn, std::slice::from_ref(audit), key.created_at).await?;
    Ok(())
}

pub(super) async fn api_key(conn: &mut PgConnection, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>> {
    sqlx::query(
        "SELECT id, hash, name, role, created_at, expires_at, revoked_at FROM api_keys WHERE hash = $1",
    )
    .bind(hash.as_slice())
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(to_key)
    .transpose()
}

pub(super) async fn api_keys(conn: &mut PgConnection) -> Result<Vec<ApiKeyRecord>> {
    sqlx::query("SELECT id, hash, name, role, created_at, expires_at, revoked_at FROM api_keys ORDER BY created_at, id")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(to_key)
        .collect()
}

pub(super) async fn revoke_api_key(
    conn: &mut PgConnection,
    id: &str,
    at: i64,
    audit: &AuditEvent,
) -> Result<bool> {
    let revoked = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if revoked == 1 {
        append_audit(conn, std::slice::from_ref(audit), at).await?;
    }
    Ok(revoked == 1)
}

pub(super) async fn create_sign_in_code(conn: &mut PgConnection, code: &SignInCode) -> Result<()> {
    sqlx::query("DELETE FROM sign_in_codes WHERE expires_at < $1")
        .bind(code.created_at - 86_400_000)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO sign_in_codes (id, subject_id, code_hash, attempts, created_at, expires_at)
         VALUES ($1, $2, $3, 0, $4, $5)",
    )
    .bind(&code.id)
    .bind(&code.subject)
    .bind(code.hash.as_slice())
    .bind(code.created_at)
    .bind(code.expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Locks the code's row for the transaction, so tries from several instances count one by one.
pub(super) async fn try_sign_in_code(
    conn: &mut PgConnection,
    id: &str,
    hash: &[u8; 32],
    now: i64,
    max_attempts: u32,
) -> Result<CodeOutcome> {
    let found: Option<crate::CodeRow> = sqlx::query_as(
        "SELECT subject_id, code_hash, attempts, expires_at, used_at FROM sign_in_codes WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (outcome, write) = crate::judge_sign_in(found, hash, now, max_attempts);
    match write {
        Some(true) => {
            sqlx::query("UPDATE sign_in_codes SET used_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
        Some(false) => {
            sqlx::query("UPDATE sign_in_codes SET attempts = attempts + 1 WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        None => {}
    }
    Ok(outcome)
}
