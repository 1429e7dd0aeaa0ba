//! Finding subjects and reading what is held about them on PostgreSQL: the family root of a
//! subject, family states (attributes and consent ledgers) one or many at a time, sealed data.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{PgConnection, Row};
use tactful_vault::Blind;

use super::PostgresStore;
use super::consent::to_event;
use crate::{
    EventCursor, Result, StoredEvent, StoredIdentity, StoredProfileValue, SubjectData, SubjectState,
    SubjectStore,
};

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
pub(super) async fn states_of_roots(conn: &mut PgConnection, roots: &[String]) -> Result<Vec<SubjectState>> {
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    // One round trip: the roots' attributes first, then their families' ledgers in order, each
    // member's consent rows found by index (the lateral lookup), whatever the planner thinks of
    // small tables.
    let rows = sqlx::query(
        "SELECT 0 AS what, id AS root, NULL::text AS id, NULL::text AS purpose, NULL::text AS kind,
                NULL::text AS method, NULL::int8 AS at, NULL::int8 AS expires_at, NULL::int4 AS version,
                NULL::text AS source, jurisdiction, NULL::bool AS verified, NULL::text AS provenance, minor,
                restricted
         FROM subjects WHERE id = ANY($1)
         UNION ALL
         SELECT 1, m.root, c.id, c.purpose, c.kind, c.method, c.at, c.expires_at, c.version, c.source,
                c.jurisdiction, c.verified, c.provenance, NULL, NULL
         FROM (SELECT id, id AS root FROM subjects WHERE id = ANY($1)
               UNION ALL SELECT id, merged_into FROM subjects WHERE merged_into = ANY($1)) m
         CROSS JOIN LATERAL (SELECT * FROM consent_events c WHERE c.subject_id = m.id OFFSET 0) c
         ORDER BY what, at, id",
    )
    .bind(roots)
    .fetch_all(&mut *conn)
    .await?;
    let mut states: Vec<SubjectState> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        let root: String = row.try_get("root")?;
        if row.try_get::<i32, _>("what")? == 0 {
            index.insert(root.clone(), states.len());
            states.push(SubjectState {
                subject: root,
                jurisdiction: row.try_get("jurisdiction")?,
                minor: row.try_get("minor")?,
                restricted: row.try_get("restricted")?,
                ledger: Vec::new(),
            });
        } else if let Some(&position) = index.get(&root) {
            states[position].ledger.push(to_event(row)?);
        }
    }
    Ok(states)
}

pub(super) async fn subject_state(conn: &mut PgConnection, subject: &str) -> Result<Option<SubjectState>> {
    let Some(root) = root(conn, subject).await? else { return Ok(None) };
    Ok(states_of_roots(conn, &[root]).await?.into_iter().next())
}

/// The states of the ids that are family roots not erased, a chunk of ids at a time.
pub(super) async fn subject_states(
    conn: &mut PgConnection,
    mut subjects: Vec<String>,
) -> Result<Vec<SubjectState>> {
    subjects.sort_unstable();
    subjects.dedup();
    let mut states = Vec::new();
    for chunk in subjects.chunks(crate::shared::SUBJECTS_PER_QUERY) {
        let roots: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM subjects WHERE id = ANY($1) AND merged_into IS NULL AND erased_at IS NULL",
        )
        .bind(chunk)
        .fetch_all(&mut *conn)
        .await?;
        states.extend(states_of_roots(conn, &roots).await?);
    }
    states.sort_by(|a, b| a.subject.cmp(&b.subject));
    Ok(states)
}

/// Everything stored about a subject's family (its events too, if `events`), sealed; `None` for an
/// unknown or erased subject.
pub(super) async fn subject_data(
    conn: &mut PgConnection,
    subject: &str,
    events: bool,
) -> Result<Option<SubjectData>> {
    let Some(root) = root(conn, subject).await? else { return Ok(None) };
    let mut data = SubjectData { subject: root.clone(), ..SubjectData::default() };
    data.keys =
        sqlx::query("SELECT id, wrapped_key FROM subjects WHERE id = $1 OR merged_into = $1 ORDER BY id")
            .bind(&root)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("wrapped_key")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let members: Vec<String> = data.keys.iter().map(|(id, _)| id.clone()).collect();
    for row in
        sqlx::query("SELECT subject_id, kind, blind, sealed FROM identities WHERE subject_id = ANY($1)")
            .bind(&members)
            .fetch_all(&mut *conn)
            .await?
    {
        data.identities.push(StoredIdentity {
            subject: row.try_get("subject_id")?,
            kind: row.try_get("kind")?,
            blind: crate::shared::blind_from(row.try_get("blind")?)?,
            sealed: row.try_get("sealed")?,
        });
    }
    for row in sqlx::query(
        "SELECT subject_id, path, sealed, updated_at FROM profile_values WHERE subject_id = ANY($1)",
    )
    .bind(&members)
    .fetch_all(&mut *conn)
    .await?
    {
        data.profile.push(StoredProfileValue {
            subject: row.try_get("subject_id")?,
            path: row.try_get("path")?,
            sealed: row.try_get("sealed")?,
            updated_at: row.try_get("updated_at")?,
        });
    }
    if events {
        for row in sqlx::query(
            "SELECT subject_id, source, dedupe, type, name, timestamp, received_at, sealed FROM events
             WHERE subject_id = ANY($1) ORDER BY timestamp, received_at, dedupe",
        )
        .bind(&members)
        .fetch_all(&mut *conn)
        .await?
        {
            let dedupe: Vec<u8> = row.try_get("dedupe")?;
            data.events.push(StoredEvent {
                subject: row.try_get("subject_id")?,
                source: row.try_get("source")?,
                dedupe: crate::shared::dedupe_from(dedupe)?,
                kind: row.try_get("type")?,
                name: row.try_get("name")?,
                timestamp: row.try_get("timestamp")?,
                received_at: row.try_get("received_at")?,
                sealed: row.try_get("sealed")?,
            });
        }
    }
    data.keep_newest_profile_values();
    Ok(Some(data))
}

pub(super) async fn events_page(
    conn: &mut PgConnection,
    subject: &str,
    after: Option<&EventCursor>,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let Some(root) = root(conn, subject).await? else { return Ok(Vec::new()) };
    let (timestamp, source, dedupe) = match after {
        Some((timestamp, source, dedupe)) => (*timestamp, source.clone(), dedupe.to_vec()),
        None => (i64::MIN, String::new(), Vec::new()),
    };
    sqlx::query(
        "SELECT subject_id, source, dedupe, type, name, timestamp, received_at, sealed FROM events
         WHERE subject_id IN (SELECT id FROM subjects WHERE id = $1 OR merged_into = $1)
           AND (timestamp, source, dedupe) > ($2, $3, $4)
         ORDER BY timestamp, source, dedupe LIMIT $5",
    )
    .bind(&root)
    .bind(timestamp)
    .bind(source)
    .bind(dedupe)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(StoredEvent {
            subject: row.try_get("subject_id")?,
            source: row.try_get("source")?,
            dedupe: crate::shared::dedupe_from(row.try_get("dedupe")?)?,
            kind: row.try_get("type")?,
            name: row.try_get("name")?,
            timestamp: row.try_get("timestamp")?,
            received_at: row.try_get("received_at")?,
            sealed: row.try_get("sealed")?,
        })
    })
    .collect()
}

#[async_trait]
impl SubjectStore for PostgresStore {
    async fn subject_by_identifier(&self, blind: Blind) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT subject_id FROM identities WHERE blind = $1")
            .bind(blind.0.as_slice())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn subject_state(&self, subject: &str) -> Result<Option<SubjectState>> {
        let mut conn = self.pool.acquire().await?;
        subject_state(&mut conn, subject).await
    }

    async fn subject_states(&self, subjects: Vec<String>) -> Result<Vec<SubjectState>> {
        let mut conn = self.pool.acquire().await?;
        subject_states(&mut conn, subjects).await
    }

    async fn subject_data(&self, subject: &str) -> Result<Option<SubjectData>> {
        let mut tx = self.pool.begin().await?;
        let data = subject_data(&mut tx, subject, true).await?;
        tx.commit().await?;
        Ok(data)
    }

    async fn subject_summary(&self, subject: &str) -> Result<Option<SubjectData>> {
        let mut tx = self.pool.begin().await?;
        let data = subject_data(&mut tx, subject, false).await?;
        tx.commit().await?;
        Ok(data)
    }

    async fn events_page(
        &self,
        subject: &str,
        after: Option<EventCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let mut conn = self.pool.acquire().await?;
        events_page(&mut conn, subject, after.as_ref(), limit).await
    }

    async fn subject_ids(&self, after: Option<String>, limit: u32) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        Ok(sqlx::query_scalar(
            "SELECT id FROM subjects WHERE erased_at IS NULL AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after.unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
    }
}
