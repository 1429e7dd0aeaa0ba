//! Links and sessions on SQLite: every change on the writer (so a link is opened by one request
//! only), checks from a reader connection.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tactful_domain::audit::AuditEvent;

use super::SqliteStore;
use super::audit::append_audit;
use super::writer::Writer;
use crate::{Result, SessionStore, WebSession, WebSessionKind};

fn insert(conn: &Connection, session: &WebSession) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO web_sessions (id, kind, holder, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        session.id,
        session.kind.as_str(),
        session.holder,
        session.created_at,
        session.expires_at
    ])?;
    Ok(())
}

fn holder(conn: &Connection, id: &str, kind: WebSessionKind, now: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT holder FROM web_sessions WHERE id = ?1 AND kind = ?2 AND expires_at > ?3
             AND ended_at IS NULL AND opened_at IS NULL",
        )?
        .query_row(params![id, kind.as_str(), now], |row| row.get(0))
        .optional()?)
}

fn open_link(
    writer: &mut Writer,
    id: &str,
    session: &WebSession,
    audit: &[AuditEvent],
    now: i64,
) -> Result<bool> {
    let opened = writer
        .conn
        .prepare_cached(
            "UPDATE web_sessions SET opened_at = ?2 WHERE id = ?1 AND kind = 'link' AND expires_at > ?2
             AND ended_at IS NULL AND opened_at IS NULL",
        )?
        .execute(params![id, now])?;
    if opened != 1 {
        return Ok(false);
    }
    insert(&writer.conn, session)?;
    append_audit(writer, audit, now)?;
    Ok(true)
}

fn end_all(writer: &mut Writer, subject: &str, audit: &[AuditEvent], now: i64) -> Result<u64> {
    let root =
        super::requests::root_even_if_erased(&writer.conn, subject)?.unwrap_or_else(|| subject.to_owned());
    // Opened links are spent already; what counts is what still let someone in.
    let ended = writer
        .conn
        .prepare_cached(
            "UPDATE web_sessions SET ended_at = ?2 WHERE ended_at IS NULL AND opened_at IS NULL
             AND expires_at > ?2 AND kind IN ('link', 'me')
             AND (holder = ?1 OR holder IN (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1))",
        )?
        .execute(params![root, now])? as u64;
    append_audit(writer, audit, now)?;
    Ok(ended)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_web_session(&self, session: WebSession) -> Result<()> {
        self.write(move |writer| insert(&writer.conn, &session)).await
    }

    async fn web_session_holder(&self, id: &str, kind: WebSessionKind, now: i64) -> Result<Option<String>> {
        let id = id.to_owned();
        self.read(move |conn| holder(conn, &id, kind, now)).await
    }

    async fn open_web_link(
        &self,
        id: &str,
        session: WebSession,
        audit: Vec<AuditEvent>,
        now: i64,
    ) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |writer| open_link(writer, &id, &session, &audit, now)).await
    }

    async fn end_web_session(&self, id: &str, now: i64) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |writer| {
            Ok(writer
                .conn
                .prepare_cached(
                    "UPDATE web_sessions SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL AND expires_at > ?2",
                )?
                .execute(params![id, now])?
                == 1)
        })
        .await
    }

    async fn end_web_sessions(&self, subject: &str, audit: Vec<AuditEvent>, now: i64) -> Result<u64> {
        let subject = subject.to_owned();
        self.write(move |writer| end_all(writer, &subject, &audit, now)).await
    }

    async fn purge_web_sessions(&self, now: i64, limit: u32) -> Result<u64> {
        self.write(move |writer| {
            Ok(writer
                .conn
                .prepare_cached(
                    "DELETE FROM web_sessions WHERE id IN
                     (SELECT id FROM web_sessions WHERE expires_at <= ?1 LIMIT ?2)",
                )?
                .execute(params![now, limit])? as u64)
        })
        .await
    }
}
