//! API keys and preference-center sign-in codes on SQLite: both stored as hashes, written on the
//! writer (so a code's tries are counted one at a time), looked up from a reader connection.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tactful_domain::audit::AuditEvent;

use super::SqliteStore;
use super::audit::append_audit;
use super::writer::Writer;
use crate::{ApiKeyRecord, CodeOutcome, CredentialStore, Result, SignInCode, StoreError};

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
    writer
        .conn
        .prepare_cached(
            "INSERT INTO outbox (id, topic, payload, created_at, not_before) VALUES (?1, ?2, ?3, ?4, ?4)",
        )?
        .execute(params![
            crate::shared::new_message_id(),
            crate::SIGN_IN_TOPIC,
            code.message,
            code.created_at
        ])?;
    Ok(())
}

pub(super) fn try_sign_in_code(
    writer: &mut Writer,
    id: &str,
    hash: &[u8; 32],
    now: i64,
    max_attempts: u32,
) -> Result<CodeOutcome> {
    let found: Option<crate::shared::CodeRow> = writer
        .conn
        .prepare_cached(
            "SELECT subject_id, code_hash, attempts, expires_at, used_at FROM sign_in_codes WHERE id = ?1",
        )?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
        .optional()?;
    let (outcome, write) = crate::shared::judge_sign_in(found, hash, now, max_attempts);
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

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn create_api_key(&self, key: ApiKeyRecord, audit: AuditEvent) -> Result<()> {
        self.write(move |writer| create_api_key(writer, &key, &audit)).await
    }

    async fn api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>> {
        self.read(move |conn| api_key(conn, &hash)).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.read(api_keys).await
    }

    async fn revoke_api_key(&self, id: &str, at: i64, audit: AuditEvent) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |writer| revoke_api_key(writer, &id, at, &audit)).await
    }

    async fn create_sign_in_code(&self, code: SignInCode) -> Result<()> {
        self.write(move |writer| create_sign_in_code(writer, &code)).await
    }

    async fn try_sign_in_code(
        &self,
        id: &str,
        hash: [u8; 32],
        now: i64,
        max_attempts: u32,
    ) -> Result<CodeOutcome> {
        let id = id.to_owned();
        self.write(move |writer| try_sign_in_code(writer, &id, &hash, now, max_attempts)).await
    }
}
