//! Personalization's shared state on SQLite: the catalogue, subjects' contributions and dirty marks.
//! Versions come from the `model` counter inside the writer's transaction; the writer is the only
//! one, so they are committed in the order they are taken.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use crate::model::{self, ContributionRow};
use crate::{ItemRecord, ModelChange, ModelStore, Result};

/// Takes `count` new versions from the model counter; returns the last.
fn take_versions(conn: &Connection, count: usize) -> Result<i64> {
    Ok(conn
        .prepare_cached("UPDATE counters SET value = value + ?1 WHERE name = 'model' RETURNING value")?
        .query_row([model::version_count(count)?], |row| row.get(0))?)
}

pub(super) fn put_items(conn: &Connection, items: Vec<ItemRecord>, now: i64) -> Result<i64> {
    if items.is_empty() {
        return Ok(0);
    }
    let count = items.len();
    let last = take_versions(conn, count)?;
    let mut statement = conn.prepare_cached(
        "INSERT INTO items (id, name, categories, sensitive, available, price, attributes, updated_at, version,
                            written_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, categories = excluded.categories,
             sensitive = excluded.sensitive, available = excluded.available, price = excluded.price,
             attributes = excluded.attributes, updated_at = excluded.updated_at, version = excluded.version,
             written_at = excluded.written_at",
    )?;
    for item in model::versioned_items(items, model::first_version(last, count)) {
        let (categories, attributes) = model::item_json(&item);
        statement.execute(params![
            item.id,
            item.name,
            categories,
            item.sensitive,
            item.available,
            item.price,
            attributes,
            item.updated_at,
            item.version,
            now
        ])?;
    }
    Ok(last)
}

const ITEM_COLUMNS: &str =
    "id, name, categories, sensitive, available, price, attributes, updated_at, version";

fn item_from(row: &Row<'_>) -> rusqlite::Result<(ItemRecord, String, String)> {
    let item = ItemRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        categories: Vec::new(),
        sensitive: row.get(3)?,
        available: row.get(4)?,
        price: row.get(5)?,
        attributes: serde_json::Value::Null,
        updated_at: row.get(7)?,
        version: row.get(8)?,
    };
    Ok((item, row.get(2)?, row.get(6)?))
}

fn with_json((mut item, categories, attributes): (ItemRecord, String, String)) -> Result<ItemRecord> {
    (item.categories, item.attributes) = model::parse_item_json(&categories, &attributes)?;
    Ok(item)
}

pub(super) fn items_since(conn: &Connection, after: i64, limit: u32) -> Result<Vec<ItemRecord>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM items WHERE version > ?1 ORDER BY version LIMIT ?2"
    ))?;
    let rows =
        statement.query_map(params![after, limit], item_from)?.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(with_json).collect()
}

pub(super) fn item(conn: &Connection, id: &str) -> Result<Option<ItemRecord>> {
    let row = conn
        .prepare_cached(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = ?1"))?
        .query_row([id], item_from)
        .optional()?;
    row.map(with_json).transpose()
}

pub(super) fn put_contributions(
    conn: &Connection,
    write: Vec<(String, Vec<u8>)>,
    remove: Vec<String>,
    now: i64,
) -> Result<i64> {
    let count = write.len() + remove.len();
    if count == 0 {
        return Ok(0);
    }
    let last = take_versions(conn, count)?;
    let mut rows = model::contribution_rows(write, remove, model::first_version(last, count));
    // Nothing is kept for a subject that is gone or erased: its write is a removal.
    let mut live = conn.prepare_cached("SELECT 1 FROM subjects WHERE id = ?1 AND erased_at IS NULL")?;
    for row in &mut rows {
        if row.sealed.is_some() && live.query_row([&row.subject], |_| Ok(())).optional()?.is_none() {
            row.sealed = None;
        }
    }
    write_rows(conn, &rows, now)?;
    Ok(last)
}

fn write_rows(conn: &Connection, rows: &[ContributionRow], now: i64) -> Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO model_contributions (subject_id, version, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (subject_id) DO UPDATE SET version = excluded.version, sealed = excluded.sealed,
             updated_at = excluded.updated_at",
    )?;
    for row in rows {
        statement.execute(params![row.subject, row.version, row.sealed, now])?;
    }
    Ok(())
}

/// Removes the contributions and dirty marks of `members` (an erased family), each removal at a new
/// version.
pub(super) fn forget_subjects(conn: &Connection, members: &[String], now: i64) -> Result<()> {
    if members.is_empty() {
        return Ok(());
    }
    let last = take_versions(conn, members.len())?;
    let rows =
        model::contribution_rows(Vec::new(), members.to_vec(), model::first_version(last, members.len()));
    write_rows(conn, &rows, now)?;
    let mut unmark = conn.prepare_cached("DELETE FROM model_dirty WHERE subject_id = ?1")?;
    for member in members {
        unmark.execute([member])?;
    }
    Ok(())
}

/// For the purge: no sealed contribution or dirty mark stays behind for an erased subject. A
/// contribution found here (none should be) becomes a removal at its own version, which readers
/// already saw as a removal, since its subject is erased.
pub(super) fn purge_erased(conn: &Connection) -> Result<()> {
    let erased = "SELECT id FROM subjects WHERE erased_at IS NOT NULL AND purged_at IS NULL";
    conn.prepare_cached(&format!(
        "UPDATE model_contributions SET sealed = NULL WHERE sealed IS NOT NULL AND subject_id IN ({erased})"
    ))?
    .execute([])?;
    conn.prepare_cached(&format!("DELETE FROM model_dirty WHERE subject_id IN ({erased})"))?.execute([])?;
    Ok(())
}

pub(super) fn model_changes(conn: &Connection, after: i64, limit: u32) -> Result<Vec<ModelChange>> {
    let mut statement = conn.prepare_cached(
        "SELECT c.subject_id, c.version, c.sealed, s.wrapped_key
         FROM model_contributions c
         LEFT JOIN subjects s ON s.id = c.subject_id AND s.erased_at IS NULL AND length(s.wrapped_key) > 0
         WHERE c.version > ?1 ORDER BY c.version LIMIT ?2",
    )?;
    let changes = statement
        .query_map(params![after, limit], |row| {
            let sealed: Option<Vec<u8>> = row.get(2)?;
            let wrapped: Option<Vec<u8>> = row.get(3)?;
            Ok(ModelChange { subject: row.get(0)?, version: row.get(1)?, contribution: wrapped.zip(sealed) })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(changes)
}

pub(super) fn model_version(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM counters WHERE name = 'model'")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Marks (or renews the marks of) `subjects`, in the caller's transaction. A renewed mark moves past
/// the one it replaces even if `now` is not later.
pub(super) fn mark_dirty<'a>(
    conn: &Connection,
    subjects: impl IntoIterator<Item = &'a str>,
    now: i64,
) -> Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO model_dirty (subject_id, marked_at) VALUES (?1, ?2)
         ON CONFLICT (subject_id) DO UPDATE SET marked_at = max(excluded.marked_at, model_dirty.marked_at + 1)",
    )?;
    for subject in subjects {
        statement.execute(params![subject, now])?;
    }
    Ok(())
}

pub(super) fn mark_all_dirty(conn: &Connection, now: i64) -> Result<u64> {
    let marked = conn
        .prepare_cached(
            "INSERT INTO model_dirty (subject_id, marked_at) SELECT id, ?1 FROM subjects WHERE erased_at IS NULL
             ON CONFLICT (subject_id) DO UPDATE SET marked_at = max(excluded.marked_at, model_dirty.marked_at + 1)",
        )?
        .execute([now])?;
    Ok(marked as u64)
}

pub(super) fn dirty(conn: &Connection, limit: u32) -> Result<Vec<(String, i64)>> {
    let mut statement = conn.prepare_cached(
        "SELECT subject_id, marked_at FROM model_dirty ORDER BY marked_at, subject_id LIMIT ?1",
    )?;
    let marks = statement
        .query_map([limit], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(marks)
}

pub(super) fn clean(conn: &Connection, marks: &[(String, i64)]) -> Result<()> {
    let mut statement =
        conn.prepare_cached("DELETE FROM model_dirty WHERE subject_id = ?1 AND marked_at <= ?2")?;
    for (subject, marked_at) in marks {
        statement.execute(params![subject, marked_at])?;
    }
    Ok(())
}

#[async_trait]
impl ModelStore for SqliteStore {
    async fn put_items(&self, items: Vec<ItemRecord>, now: i64) -> Result<i64> {
        self.write(move |writer| put_items(&writer.conn, items.clone(), now)).await
    }

    async fn items_since(&self, after: i64, limit: u32) -> Result<Vec<ItemRecord>> {
        self.read(move |conn| items_since(conn, after, limit)).await
    }

    async fn item(&self, id: &str) -> Result<Option<ItemRecord>> {
        let id = id.to_owned();
        self.read(move |conn| item(conn, &id)).await
    }

    async fn put_contributions(
        &self,
        write: Vec<(String, Vec<u8>)>,
        remove: Vec<String>,
        now: i64,
    ) -> Result<i64> {
        self.write(move |writer| put_contributions(&writer.conn, write.clone(), remove.clone(), now)).await
    }

    async fn model_changes(&self, after: i64, limit: u32) -> Result<Vec<ModelChange>> {
        self.read(move |conn| model_changes(conn, after, limit)).await
    }

    async fn mark_all_model_dirty(&self, now: i64) -> Result<u64> {
        self.write(move |writer| mark_all_dirty(&writer.conn, now)).await
    }

    async fn model_dirty(&self, limit: u32) -> Result<Vec<(String, i64)>> {
        self.read(move |conn| dirty(conn, limit)).await
    }

    async fn model_clean(&self, marks: Vec<(String, i64)>) -> Result<()> {
        self.write(move |writer| clean(&writer.conn, &marks)).await
    }
}
