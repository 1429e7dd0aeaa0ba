//! Links and sessions on PostgreSQL: a link is opened by one conditional update, so of two
//! instances opening it at once one wins (the other's update finds it opened and changes nothing).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgConnection;
use tactful_domain::audit::AuditEvent;

use super::PostgresStore;
use super::audit::append_audit;
use crate::{Result, SessionStore, StoreError, WebSession, WebSessionKind};

/// Tries of a transaction that lost a race (a deadlock or serialization failure) before giving up.
const ATTEMPTS: u32 = 5;

async fn insert(conn: &mut PgConnection, session: &WebSession) -> Result<()> {
    sqlx::query(
        "INSERT INTO web_sessions (id, kind, holder, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&session.id)
    .bind(session.kind.as_str())
    .bind(&session.holder)
    .bind(session.created_at)
    .bind(session.expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn open_link(
    conn: &mut PgConnection,
    id: &str,
    session: &WebSession,
    audit: &[AuditEvent],
    now: i64,
) -> Result<bool> {
    let opened = sqlx::query(
        "UPDATE web_sessions SET opened_at = $2 WHERE id = $1 AND kind = 'link' AND expires_at > $2
         AND ended_at IS NULL AND opened_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if opened != 1 {
        return Ok(false);
    }
    insert(conn, session).await?;
    append_audit(conn, audit, now).await?;
    Ok(true)
}

async fn end_all(conn: &mut PgConnection, subject: &str, audit: &[AuditEvent], now: i64) -> Result<u64> {
    let root =
        super::requests::root_even_if_erased(conn, subject).await?.unwrap_or_else(|| subject.to_owned());
    // Opened links are spent already; what counts is what still let someone in.
    let ended = sqlx::query(
        "UPDATE web_sessions SET ended_at = $2 WHERE ended_at IS NULL AND opened_at IS NULL
         AND expires_at > $2 AND kind IN ('link', 'me')
         AND (holder = $1 OR holder IN (SELECT id FROM subjects WHERE id = $1 OR merged_into = $1))",
    )
    .bind(&root)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    append_audit(conn, audit, now).await?;
    Ok(ended)
}

/// Runs `$work` (given the transaction) and commits, trying again (a few times) when it lost a race
/// another transaction won (a deadlock or serialization failure).
macro_rules! retrying {
    ($store:expr, |$tx:ident| $work:expr) => {{
        let mut attempt = 1;
        loop {
            let mut $tx = $store.pool.begin().await?;
            match $work.await {
                Err(StoreError::Conflict(reason)) if attempt < ATTEMPTS => {
                    drop($tx);
                    tracing::debug!(attempt, %reason, "a session change lost a race; retrying");
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                    attempt += 1;
                }
                outcome => {
                    let value = outcome?;
                    $tx.commit().await?;
                    break Ok(value);
                }
            }
        }
    }};
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_web_session(&self, session: WebSession) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, &session).await
    }

    async fn web_session_holder(&self, id: &str, kind: WebSessionKind, now: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT holder FROM web_sessions WHERE id = $1 AND kind = $2 AND expires_at > $3
             AND ended_at IS NULL AND opened_at IS NULL",
        )
        .bind(id)
        .bind(kind.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn open_web_link(
        &self,
        id: &str,
        session: WebSession,
        audit: Vec<AuditEvent>,
        now: i64,
    ) -> Result<bool> {
        retrying!(self, |tx| open_link(&mut tx, id, &session, &audit, now))
    }

    async fn end_web_session(&self, id: &str, now: i64) -> Result<bool> {
        let ended = sqlx::query(
            "UPDATE web_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL AND expires_at > $2",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(ended == 1)
    }

    async fn end_web_sessions(&self, subject: &str, audit: Vec<AuditEvent>, now: i64) -> Result<u64> {
        retrying!(self, |tx| end_all(&mut tx, subject, &audit, now))
    }

    async fn purge_web_sessions(&self, now: i64, limit: u32) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM web_sessions WHERE id IN
             (SELECT id FROM web_sessions WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
