//! API keys and preference-center sign-in codes on PostgreSQL: both stored as hashes; a code's try
//! locks its row, so instances count tries one at a time.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use tactful_domain::audit::AuditEvent;

use super::PostgresStore;
use super::audit::append_audit;
use crate::{ApiKeyRecord, CodeOutcome, CredentialStore, Result, SignInCode, StoreError};

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
    sqlx::query(
        "INSERT INTO outbox (id, topic, payload, created_at, not_before) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(crate::shared::new_message_id())
    .bind(crate::SIGN_IN_TOPIC)
    .bind(&code.message)
    .bind(code.created_at)
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
    let found: Option<crate::shared::CodeRow> = sqlx::query_as(
        "SELECT subject_id, code_hash, attempts, expires_at, used_at FROM sign_in_codes WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (outcome, write) = crate::shared::judge_sign_in(found, hash, now, max_attempts);
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

#[async_trait]
impl CredentialStore for PostgresStore {
    async fn create_api_key(&self, key: ApiKeyRecord, audit: AuditEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        create_api_key(&mut tx, &key, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>> {
        let mut conn = self.pool.acquire().await?;
        api_key(&mut conn, &hash).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let mut conn = self.pool.acquire().await?;
        api_keys(&mut conn).await
    }

    async fn revoke_api_key(&self, id: &str, at: i64, audit: AuditEvent) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let revoked = revoke_api_key(&mut tx, id, at, &audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn create_sign_in_code(&self, code: SignInCode) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        create_sign_in_code(&mut tx, &code).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn try_sign_in_code(
        &self,
        id: &str,
        hash: [u8; 32],
        now: i64,
        max_attempts: u32,
    ) -> Result<CodeOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = try_sign_in_code(&mut tx, id, &hash, now, max_attempts).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}
