//! Private analytics on SQLite: privacy budgets, checked and spent on the writer (the only writer,
//! so what it reads stays true until its transaction commits), and the scans aggregate queries read.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tactful_domain::audit::AuditEvent;

use super::audit::append_audit;
use super::writer::Writer;
use super::{SqliteStore, now_millis};
use crate::window::{PageBuilder, WindowTie};
use crate::{
    AnalyticsStore, Budget, FamilyActivity, Result, Scan, SpendOutcome, StoreError, WindowCursor, WindowPage,
    WrappedKeys,
};

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
    crate::shared::check_spend(epsilon_micro, limit_micro)?;
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
    append_audit(writer, audit, now)?;
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

/// A page of the window in `(timestamp, seq)` order, read from `events_envelope` alone for
/// envelopes (a covering index holding the rowid as cursor), and from the table too for records.
pub(super) fn events_in_window(
    conn: &Connection,
    from: i64,
    to: i64,
    after: Option<&WindowCursor>,
    limit: u32,
    scan: Scan,
) -> Result<WindowPage> {
    let (timestamp, seq) = match after {
        None => (i64::MIN, i64::MIN),
        Some(WindowCursor { timestamp, tie: WindowTie::Seq(seq) }) => (*timestamp, *seq),
        Some(other) => {
            return Err(StoreError::Internal(format!("a window cursor of another backend: {other:?}")));
        }
    };
    // The scan starts at the cursor's time, not the window's: with only the row-value condition, the
    // planner starts each page at `from` and steps over every row before the cursor again (each
    // page costing more than the last, the whole scan quadratic).
    let start = from.max(timestamp);
    let records = scan == Scan::Records;
    let mut statement = conn.prepare_cached(if records {
        "SELECT seq, subject_id, source, COALESCE(name, type), timestamp, dedupe, sealed FROM events
         WHERE timestamp >= ?1 AND timestamp < ?2 AND (timestamp, seq) > (?3, ?4)
         ORDER BY timestamp, seq LIMIT ?5"
    } else {
        "SELECT seq, subject_id, source, COALESCE(name, type), timestamp FROM events INDEXED BY events_envelope
         WHERE timestamp >= ?1 AND timestamp < ?2 AND (timestamp, seq) > (?3, ?4)
         ORDER BY timestamp, seq LIMIT ?5"
    })?;
    let mut rows = statement.query(params![start, to, timestamp, seq, limit])?;
    let mut page = PageBuilder::with_capacity(limit.min(100_000) as usize);
    let mut last = None;
    while let Some(row) = rows.next()? {
        let (seq, timestamp): (i64, i64) = (row.get(0)?, row.get(4)?);
        let sealed = if records {
            Some((crate::shared::dedupe_from(row.get(5)?)?, row.get::<_, Vec<u8>>(6)?))
        } else {
            None
        };
        page.push(text(row, 1)?, text(row, 2)?, text(row, 3)?, timestamp, sealed);
        last = Some(WindowCursor { timestamp, tie: WindowTie::Seq(seq) });
    }
    let full = page.len() >= limit as usize;
    Ok(page.finish(full, last))
}

/// A text column, borrowed from the row (no allocation per row).
fn text<'a>(row: &'a rusqlite::Row<'_>, column: usize) -> Result<&'a str> {
    row.get_ref(column)?.as_str().map_err(|error| StoreError::Internal(format!("column {column}: {error}")))
}

/// Runs `sql` once per chunk of `ids` (sorted and deduplicated first), each chunk passed as one
/// JSON array in `?1` so the statement stays the same whatever the chunk's size; returns every row
/// as `row` reads it.
fn per_chunk<T>(
    conn: &Connection,
    sql: &str,
    ids: &mut Vec<String>,
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    ids.sort_unstable();
    ids.dedup();
    let mut statement = conn.prepare_cached(sql)?;
    let mut found = Vec::new();
    for chunk in ids.chunks(crate::shared::SUBJECTS_PER_QUERY) {
        let chunk = serde_json::Value::from(chunk).to_string();
        for each in statement.query_map([&chunk], &row)? {
            found.push(each?);
        }
    }
    Ok(found)
}

/// The family roots of subjects not erased (nor in an erased family), a chunk of ids at a time.
pub(super) fn family_roots(conn: &Connection, mut subjects: Vec<String>) -> Result<Vec<(String, String)>> {
    per_chunk(
        conn,
        "SELECT s.id, COALESCE(s.merged_into, s.id) FROM subjects s
         WHERE s.id IN (SELECT value FROM json_each(?1)) AND s.erased_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM subjects r WHERE r.id = s.merged_into AND r.erased_at IS NOT NULL)",
        &mut subjects,
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// First and last event times per family root: each member's from `events_subject` (two index
/// seeks per member, however many events it has), folded per root.
pub(super) fn family_activity(conn: &Connection, mut roots: Vec<String>) -> Result<Vec<FamilyActivity>> {
    let members = per_chunk(
        conn,
        "SELECT COALESCE(s.merged_into, s.id),
                (SELECT MIN(timestamp) FROM events WHERE subject_id = s.id),
                (SELECT MAX(timestamp) FROM events WHERE subject_id = s.id)
         FROM subjects s
         WHERE (s.id IN (SELECT value FROM json_each(?1)) OR s.merged_into IN (SELECT value FROM json_each(?1)))
           AND s.erased_at IS NULL",
        &mut roots,
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    Ok(FamilyActivity::of_members(&roots, members))
}

/// The members' wrapped keys of family roots, a chunk of roots at a time.
pub(super) fn family_keys(conn: &Connection, mut roots: Vec<String>) -> Result<Vec<(String, WrappedKeys)>> {
    let members = per_chunk(
        conn,
        "SELECT COALESCE(s.merged_into, s.id), s.id, s.wrapped_key FROM subjects s
         WHERE (s.id IN (SELECT value FROM json_each(?1)) OR s.merged_into IN (SELECT value FROM json_each(?1)))
           AND s.erased_at IS NULL",
        &mut roots,
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    Ok(crate::shared::keys_of_members(&roots, members))
}

#[async_trait]
impl AnalyticsStore for SqliteStore {
    async fn spend_budget(
        &self,
        dataset: &str,
        period_start: i64,
        epsilon_micro: i64,
        limit_micro: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<SpendOutcome> {
        let dataset = dataset.to_owned();
        self.write(move |writer| {
            spend_budget(writer, &dataset, period_start, epsilon_micro, limit_micro, &audit, now_millis())
        })
        .await
    }

    async fn budgets(&self) -> Result<Vec<(String, i64, i64)>> {
        self.read(budgets).await
    }

    async fn events_in_window(
        &self,
        from: i64,
        to: i64,
        after: Option<WindowCursor>,
        limit: u32,
        scan: Scan,
    ) -> Result<WindowPage> {
        self.read(move |conn| events_in_window(conn, from, to, after.as_ref(), limit, scan)).await
    }

    async fn family_roots(&self, subjects: Vec<String>) -> Result<Vec<(String, String)>> {
        self.read(move |conn| family_roots(conn, subjects)).await
    }

    async fn family_activity(&self, roots: Vec<String>) -> Result<Vec<FamilyActivity>> {
        self.read(move |conn| family_activity(conn, roots)).await
    }

    async fn family_keys(&self, roots: Vec<String>) -> Result<Vec<(String, WrappedKeys)>> {
        self.read(move |conn| family_keys(conn, roots)).await
    }
}
