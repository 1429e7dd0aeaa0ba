//! Private analytics on SQLite: privacy budgets, checked and spent on the writer (the only writer,
//! so what it reads stays true until its transaction commits), and the scans aggregate queries read.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use tactful_domain::audit::AuditEvent;

use super::Writer;
use super::access::{self, consent_event, to_event};
use crate::{Budget, EventCursor, Result, SpendOutcome, StoredEvent, SubjectState};

/// Spends from a budget in the writer's transaction, with its audit entries; a refusal writes
/// nothing.
pub(super) fn spend_budget(
    writer: &mut Writer,
    dataset: &str,
    period_start: i64,
    epsilon_micro: i64,
    limit_micro: i64,
    audit: &[AuditEvent],
    now: i64,
) -> Result<SpendOutcome> {
    crate::check_spend(epsilon_micro, limit_micro)?;
    let spent_micro = spent_in(&writer.conn, dataset, period_start)?;
    // Both are non-negative, so this cannot overflow; nor can the sum below, once it passes.
    if spent_micro > limit_micro - epsilon_micro {
        return Ok(SpendOutcome::Refused(Budget { limit_micro, spent_micro }));
    }
    let spent_micro: i64 = writer
        .conn
        .prepare_cached(
            "INSERT INTO privacy_budget (dataset, period_start, spent_micro, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (dataset, period_start) DO UPDATE
                 SET spent_micro = spent_micro + excluded.spent_micro, updated_at = excluded.updated_at
             RETURNING spent_micro",
        )?
        .query_row(params![dataset, period_start, epsilon_micro, now], |row| row.get(0))?;
    access::append_audit(writer, audit, now)?;
    Ok(SpendOutcome::Spent(Budget { limit_micro, spent_micro }))
}

fn spent_in(conn: &Connection, dataset: &str, period_start: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT spent_micro FROM privacy_budget WHERE dataset = ?1 AND period_start = ?2")?
        .query_row(params![dataset, period_start], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

pub(super) fn budget(
    conn: &Connection,
    dataset: &str,
    period_start: i64,
    limit_micro: i64,
) -> Result<Budget> {
    Ok(Budget { limit_micro, spent_micro: spent_in(conn, dataset, period_start)? })
}

pub(super) fn budgets(conn: &Connection) -> Result<Vec<(String, i64, i64)>> {
    let mut statement = conn.prepare_cached(
        "SELECT dataset, period_start, spent_micro FROM privacy_budget ORDER BY dataset, period_start",
    )?;
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(super) fn events_in_window(
    conn: &Connection,
    from: i64,
    to: i64,
    after: Option<&EventCursor>,
    limit: u32,
) -> Result<Vec<(String, StoredEvent)>> {
    let (timestamp, source, dedupe) = match after {
        Some((timestamp, source, dedupe)) => (*timestamp, source.clone(), dedupe.to_vec()),
        None => (i64::MIN, String::new(), Vec::new()),
    };
    let mut statement = conn.prepare_cached(
        "SELECT COALESCE(s.merged_into, s.id), e.subject_id, e.source, e.dedupe, e.type, e.name, e.timestamp,
                e.received_at, e.sealed
         FROM events e JOIN subjects s ON s.id = e.subject_id
         WHERE e.timestamp >= ?1 AND e.timestamp < ?2 AND (e.timestamp, e.source, e.dedupe) > (?3, ?4, ?5)
           AND s.erased_at IS NULL
         ORDER BY e.timestamp, e.source, e.dedupe LIMIT ?6",
    )?;
    let rows = statement.query_map(params![from, to, timestamp, source, dedupe, limit], |row| {
        Ok((
            row.get::<_, String>(0)?,
            StoredEvent {
                subject: row.get(1)?,
                source: row.get(2)?,
                dedupe: [0; 16],
                kind: row.get(4)?,
                name: row.get(5)?,
                timestamp: row.get(6)?,
                received_at: row.get(7)?,
                sealed: row.get(8)?,
            },
            row.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (root, mut event, dedupe) = row?;
        event.dedupe = crate::dedupe_from(dedupe)?;
        Ok((root, event))
    })
    .collect()
}

/// The states of the ids that are family roots not erased, a chunk of ids at a time (each chunk
/// passed as one JSON array, so the statements stay the same whatever the chunk's size).
pub(super) fn subject_states(conn: &Connection, mut subjects: Vec<String>) -> Result<Vec<SubjectState>> {
    subjects.sort_unstable();
    subjects.dedup();
    let mut states = Vec::new();
    for chunk in subjects.chunks(crate::SUBJECTS_PER_QUERY) {
        let ids = serde_json::Value::from(chunk).to_string();
        // `+merged_into`: without it the planner may walk the index of every subject not merged
        // (most of them) instead of looking up the ids given.
        let mut roots = conn.prepare_cached(
            "SELECT id, jurisdiction, minor, restricted FROM subjects
             WHERE id IN (SELECT value FROM json_each(?1)) AND +merged_into IS NULL AND erased_at IS NULL
             ORDER BY id",
        )?;
        let found: Vec<SubjectState> = roots
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
        let first = states.len();
        let index: HashMap<String, usize> = found
            .iter()
            .enumerate()
            .map(|(position, state)| (state.subject.clone(), first + position))
            .collect();
        states.extend(found);
        // The families' ledgers, members' entries included, in the order `subject_state` gives.
        let mut ledgers = conn.prepare_cached(
            "SELECT c.id, c.purpose, c.kind, c.method, c.at, c.expires_at, c.version, c.source, c.jurisdiction,
                    COALESCE(s.merged_into, s.id)
             FROM consent_events c JOIN subjects s ON s.id = c.subject_id
             WHERE s.id IN (SELECT value FROM json_each(?1)) OR s.merged_into IN (SELECT value FROM json_each(?1))
             ORDER BY c.at, c.id",
        )?;
        let rows = ledgers.query_map([&ids], |row| Ok((consent_event(row)?, row.get::<_, String>(9)?)))?;
        for row in rows {
            let (columns, root) = row?;
            if let Some(&position) = index.get(&root) {
                states[position].ledger.push(to_event(columns)?);
            }
        }
    }
    Ok(states)
}
