//! Finding subjects and reading what is held about them on SQLite, from a reader connection: the
//! family root of a subject, its state (attributes and consent ledger), its sealed data.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tactful_vault::Blind;

use super::SqliteStore;
use super::consent::{consent_event, to_event};
use crate::{
    EventCursor, Result, StoredEvent, StoredIdentity, StoredProfileValue, SubjectData, SubjectState,
    SubjectStore,
};

/// The family root of `subject` (itself when not merged), or `None` if there is no such subject or
/// it was erased.
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
        "SELECT c.id, c.purpose, c.kind, c.method, c.at, c.expires_at, c.version, c.source, c.jurisdiction, c.verified,
                c.provenance
         FROM consent_events c JOIN subjects s ON s.id = c.subject_id
         WHERE s.id = ?1 OR s.merged_into = ?1 ORDER BY c.at, c.id",
    )?;
    let ledger = statement
        .query_map([&root], consent_event)?
        .map(|columns| to_event(columns?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(SubjectState { subject: root, jurisdiction, minor, restricted, ledger }))
}

/// The states of the ids that are family roots not erased, a chunk of ids at a time (each chunk
/// passed as one JSON array, so the statements stay the same whatever the chunk's size).
pub(super) fn subject_states(conn: &Connection, mut subjects: Vec<String>) -> Result<Vec<SubjectState>> {
    subjects.sort_unstable();
    subjects.dedup();
    let mut states = Vec::new();
    for chunk in subjects.chunks(crate::shared::SUBJECTS_PER_QUERY) {
        let ids = serde_json::Value::from(chunk).to_string();
        // `+merged_into`: without it the planner may walk the index of every subject not merged
        // (most of them) instead of looking up the ids given. Sorted here, not by SQLite (a third of
        // the statement's time).
        let mut roots = conn.prepare_cached(
            "SELECT id, jurisdiction, minor, restricted FROM subjects
             WHERE id IN (SELECT value FROM json_each(?1)) AND +merged_into IS NULL AND erased_at IS NULL",
        )?;
        let mut found: Vec<SubjectState> = roots
            .query_map([&ids], |row| {
                Ok(SubjectState {
                    subject: row.get(0)?,
                    jurisdiction: row.get(1)?,
                    minor: row.get(2)?,
                    restricted: row.get(3)?,
                    ledger: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        found.sort_unstable_by(|a, b| a.subject.cmp(&b.subject));
        let first = states.len();
        let index: HashMap<String, usize> = found
            .iter()
            .enumerate()
            .map(|(position, state)| (state.subject.clone(), first + position))
            .collect();
        states.extend(found);
        // The families' ledgers, members' entries included, in the order `subject_state` gives: the
        // roots' own entries, and their members' (the two halves each from an index; one `OR` costs
        // twice as much).
        let mut ledgers = conn.prepare_cached(
            "SELECT c.id, c.purpose, c.kind, c.method, c.at, c.expires_at, c.version, c.source, c.jurisdiction, c.verified,
                    c.provenance, m.root
             FROM (SELECT id, id AS root FROM subjects
                   WHERE id IN (SELECT value FROM json_each(?1)) AND +merged_into IS NULL
                   UNION ALL
                   SELECT id, merged_into FROM subjects WHERE merged_into IN (SELECT value FROM json_each(?1))) m
             JOIN consent_events c ON c.subject_id = m.id
             ORDER BY c.at, c.id",
        )?;
        let rows = ledgers.query_map([&ids], |row| Ok((consent_event(row)?, row.get::<_, String>(11)?)))?;
        for row in rows {
            let (columns, root) = row?;
            if let Some(&position) = index.get(&root) {
                states[position].ledger.push(to_event(columns)?);
            }
        }
    }
    Ok(states)
}

/// Everything stored about a subject's family (its events too, if `events`), sealed; `None` for an
/// unknown or erased subject.
pub(super) fn subject_data(conn: &Connection, subject: &str, events: bool) -> Result<Option<SubjectData>> {
    let Some(root) = root(conn, subject)? else { return Ok(None) };
    let mut data = SubjectData { subject: root.clone(), ..SubjectData::default() };
    let mut members =
        conn.prepare_cached("SELECT id, wrapped_key FROM subjects WHERE id = ?1 OR merged_into = ?1")?;
    data.keys =
        members.query_map([&root], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    for (member, _) in &data.keys {
        let mut identities =
            conn.prepare_cached("SELECT kind, blind, sealed FROM identities WHERE subject_id = ?1")?;
        for row in identities.query_map([member], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, Vec<u8>>(2)?))
        })? {
            let (kind, blind, sealed) = row?;
            data.identities.push(StoredIdentity {
                subject: member.clone(),
                kind,
                blind: crate::shared::blind_from(blind)?,
                sealed,
            });
        }
        let mut profile =
            conn.prepare_cached("SELECT path, sealed, updated_at FROM profile_values WHERE subject_id = ?1")?;
        for row in profile.query_map([member], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))? {
            let (path, sealed, updated_at) = row?;
            data.profile.push(StoredProfileValue { subject: member.clone(), path, sealed, updated_at });
        }
        if !events {
            continue;
        }
        let mut events = conn.prepare_cached(
            "SELECT source, dedupe, type, name, timestamp, received_at, sealed
                     FROM events WHERE subject_id = ?1 ORDER BY timestamp, seq",
        )?;
        for row in events.query_map([member], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, Vec<u8>>(6)?,
            ))
        })? {
            let (source, dedupe, kind, name, timestamp, received_at, sealed) = row?;
            let dedupe = crate::shared::dedupe_from(dedupe)?;
            data.events.push(StoredEvent {
                subject: member.clone(),
                source,
                dedupe,
                kind,
                name,
                timestamp,
                received_at,
                sealed,
            });
        }
    }
    data.events.sort_by_key(|event| event.timestamp);
    // The newest value of a path wins across the family.
    data.keep_newest_profile_values();
    Ok(Some(data))
}

pub(super) fn events_page(
    conn: &Connection,
    subject: &str,
    after: Option<&EventCursor>,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let Some(root) = root(conn, subject)? else { return Ok(Vec::new()) };
    let (timestamp, source, dedupe) = match after {
        Some((timestamp, source, dedupe)) => (*timestamp, source.clone(), dedupe.to_vec()),
        None => (i64::MIN, String::new(), Vec::new()),
    };
    let mut statement = conn.prepare_cached(
        "SELECT subject_id, source, dedupe, type, name, timestamp, received_at, sealed FROM events
         WHERE subject_id IN (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)
           AND (timestamp, source, dedupe) > (?2, ?3, ?4)
         ORDER BY timestamp, source, dedupe LIMIT ?5",
    )?;
    let rows =
        statement.query_map(params![root, timestamp, source, dedupe, limit], |row| event_row(row, 0))?;
    rows.map(|row| stored_event(row?)).collect()
}

/// The columns of an event (`subject_id, source, dedupe, type, name, timestamp, received_at,
/// sealed`), read from column `from` on.
pub(super) type EventRow = (String, String, Vec<u8>, String, Option<String>, i64, i64, Vec<u8>);

pub(super) fn event_row(row: &rusqlite::Row<'_>, from: usize) -> rusqlite::Result<EventRow> {
    Ok((
        row.get(from)?,
        row.get(from + 1)?,
        row.get(from + 2)?,
        row.get(from + 3)?,
        row.get(from + 4)?,
        row.get(from + 5)?,
        row.get(from + 6)?,
        row.get(from + 7)?,
    ))
}

pub(super) fn stored_event(row: EventRow) -> Result<StoredEvent> {
    let (subject, source, dedupe, kind, name, timestamp, received_at, sealed) = row;
    Ok(StoredEvent {
        subject,
        source,
        dedupe: crate::shared::dedupe_from(dedupe)?,
        kind,
        name,
        timestamp,
        received_at,
        sealed,
    })
}

#[async_trait]
impl SubjectStore for SqliteStore {
    async fn subject_by_identifier(&self, blind: Blind) -> Result<Option<String>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT subject_id FROM identities WHERE blind = ?1")?
                .query_row([blind.0.as_slice()], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn subject_state(&self, subject: &str) -> Result<Option<SubjectState>> {
        let subject = subject.to_owned();
        self.read(move |conn| subject_state(conn, &subject)).await
    }

    async fn subject_states(&self, subjects: Vec<String>) -> Result<Vec<SubjectState>> {
        self.read(move |conn| subject_states(conn, subjects)).await
    }

    async fn subject_data(&self, subject: &str) -> Result<Option<SubjectData>> {
        let subject = subject.to_owned();
        self.read(move |conn| subject_data(conn, &subject, true)).await
    }

    async fn subject_summary(&self, subject: &str) -> Result<Option<SubjectData>> {
        let subject = subject.to_owned();
        self.read(move |conn| subject_data(conn, &subject, false)).await
    }

    async fn events_page(
        &self,
        subject: &str,
        after: Option<EventCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let subject = subject.to_owned();
        self.read(move |conn| events_page(conn, &subject, after.as_ref(), limit)).await
    }

    async fn subject_ids(&self, after: Option<String>, limit: u32) -> Result<Vec<String>> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id FROM subjects WHERE erased_at IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let ids = statement
                .query_map(params![after.unwrap_or_default(), limit], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(ids)
        })
        .await
    }
}
