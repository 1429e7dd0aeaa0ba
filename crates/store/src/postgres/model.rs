//! Personalization's shared state on PostgreSQL: the catalogue, subjects' contributions and dirty
//! marks. Versions come from the `model` counter row, incremented first in the writing transaction:
//! the row stays locked until that transaction ends, so writers from every instance take versions
//! one after the other and commit in that order. A reader that has seen version v never later finds
//! a change at v or below.

use async_trait::async_trait;
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use crate::model::{self, ContributionRow};
use crate::{ItemRecord, ModelChange, ModelStore, Result};

/// Takes `count` new versions from the model counter; returns the last. Call it before reading what
/// the write depends on: the statements after it see every earlier version's commit.
async fn take_versions(conn: &mut PgConnection, count: usize) -> Result<i64> {
    Ok(sqlx::query_scalar("UPDATE counters SET value = value + $1 WHERE name = 'model' RETURNING value")
        .bind(model::version_count(count)?)
        .fetch_one(&mut *conn)
        .await?)
}

pub(super) async fn put_items(conn: &mut PgConnection, items: Vec<ItemRecord>, now: i64) -> Result<i64> {
    if items.is_empty() {
        return Ok(0);
    }
    let count = items.len();
    let last = take_versions(conn, count).await?;
    let items = model::versioned_items(items, model::first_version(last, count));
    let json: Vec<(String, String)> = items.iter().map(model::item_json).collect();
    sqlx::query(
        "INSERT INTO items (id, name, categories, sensitive, available, price, attributes, updated_at, version,
                            written_at)
         SELECT *, $10 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::bool[], $6::int8[],
                                   $7::text[], $8::int8[], $9::int8[])
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, categories = excluded.categories,
             sensitive = excluded.sensitive, available = excluded.available, price = excluded.price,
             attributes = excluded.attributes, updated_at = excluded.updated_at, version = excluded.version,
             written_at = excluded.written_at",
    )
    .bind(items.iter().map(|item| item.id.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|item| item.name.as_str()).collect::<Vec<_>>())
    .bind(json.iter().map(|(categories, _)| categories.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|item| item.sensitive).collect::<Vec<_>>())
    .bind(items.iter().map(|item| item.available).collect::<Vec<_>>())
    .bind(items.iter().map(|item| item.price).collect::<Vec<_>>())
    .bind(json.iter().map(|(_, attributes)| attributes.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|item| item.updated_at).collect::<Vec<_>>())
    .bind(items.iter().map(|item| item.version).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(last)
}

const ITEM_COLUMNS: &str =
    "id, name, categories, sensitive, available, price, attributes, updated_at, version";

fn item_from(row: &sqlx::postgres::PgRow) -> Result<ItemRecord> {
    let (categories, attributes) =
        model::parse_item_json(row.try_get("categories")?, row.try_get("attributes")?)?;
    Ok(ItemRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        categories,
        sensitive: row.try_get("sensitive")?,
        available: row.try_get("available")?,
        price: row.try_get("price")?,
        attributes,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

pub(super) async fn items_since(conn: &mut PgConnection, after: i64, limit: u32) -> Result<Vec<ItemRecord>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ITEM_COLUMNS} FROM items WHERE version > $1 ORDER BY version LIMIT $2"
    )))
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(item_from)
    .collect()
}

pub(super) async fn item(conn: &mut PgConnection, id: &str) -> Result<Option<ItemRecord>> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(item_from)
        .transpose()
}

pub(super) async fn put_contributions(
    conn: &mut PgConnection,
    write: Vec<(String, Vec<u8>)>,
    remove: Vec<String>,
    now: i64,
) -> Result<i64> {
    let count = write.len() + remove.len();
    if count == 0 {
        return Ok(0);
    }
    let last = take_versions(conn, count).await?;
    let mut rows = model::contribution_rows(write, remove, model::first_version(last, count));
    // Nothing is kept for a subject that is gone or erased: its write is a removal. An erasure that
    // committed before the versions were taken is seen here; one that commits later takes its
    // versions after this write and removes what it wrote.
    let written: Vec<&str> =
        rows.iter().filter(|row| row.sealed.is_some()).map(|row| row.subject.as_str()).collect();
    if !written.is_empty() {
        let live: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT id FROM subjects WHERE id = ANY($1) AND erased_at IS NULL")
                .bind(&written)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
        for row in &mut rows {
            if !live.contains(&row.subject) {
                row.sealed = None;
            }
        }
    }
    write_rows(conn, &rows, now).await?;
    Ok(last)
}

async fn write_rows(conn: &mut PgConnection, rows: &[ContributionRow], now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO model_contributions (subject_id, version, sealed, updated_at)
         SELECT *, $4 FROM UNNEST($1::text[], $2::int8[], $3::bytea[])
         ON CONFLICT (subject_id) DO UPDATE SET version = excluded.version, sealed = excluded.sealed,
             updated_at = excluded.updated_at",
    )
    .bind(rows.iter().map(|row| row.subject.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.version).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.sealed.as_deref()).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes the contributions and dirty marks of `members` (an erased family, locked by the caller),
/// each removal at a new version.
pub(super) async fn forget_subjects(conn: &mut PgConnection, members: &[String], now: i64) -> Result<()> {
    if members.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM model_dirty WHERE subject_id = ANY($1)")
        .bind(members)
        .execute(&mut *conn)
        .await?;
    let last = take_versions(conn, members.len()).await?;
    let rows =
        model::contribution_rows(Vec::new(), members.to_vec(), model::first_version(last, members.len()));
    write_rows(conn, &rows, now).await
}

/// For the purge: no sealed contribution or dirty mark stays behind for an erased subject. A
/// contribution found here (none should be) becomes a removal at its own version, which readers
/// already saw as a removal, since its subject is erased.
pub(super) async fn purge_erased(conn: &mut PgConnection) -> Result<()> {
    let erased = "SELECT id FROM subjects WHERE erased_at IS NOT NULL AND purged_at IS NULL";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE model_contributions SET sealed = NULL WHERE sealed IS NOT NULL AND subject_id IN ({erased})"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM model_dirty WHERE subject_id IN ({erased})")))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn model_changes(
    conn: &mut PgConnection,
    after: i64,
    limit: u32,
) -> Result<Vec<ModelChange>> {
    sqlx::query(
        "SELECT c.subject_id, c.version, c.sealed, s.wrapped_key
         FROM model_contributions c
         LEFT JOIN subjects s ON s.id = c.subject_id AND s.erased_at IS NULL AND length(s.wrapped_key) > 0
         WHERE c.version > $1 ORDER BY c.version LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| {
        let sealed: Option<Vec<u8>> = row.try_get("sealed")?;
        let wrapped: Option<Vec<u8>> = row.try_get("wrapped_key")?;
        Ok(ModelChange {
            subject: row.try_get("subject_id")?,
            version: row.try_get("version")?,
            contribution: wrapped.zip(sealed),
        })
    })
    .collect()
}

pub(super) async fn model_version(conn: &mut PgConnection) -> Result<i64> {
    let value: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'model'")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(value.unwrap_or(0))
}

/// How a mark is renewed: to the new time, or past the old mark if the new time is not later
/// (instances' clocks differ), so a renewal always outlives a clean of what was read before it.
macro_rules! renew_mark {
    () => {
        " ON CONFLICT (subject_id) DO UPDATE SET marked_at = GREATEST(excluded.marked_at, model_dirty.marked_at + 1)"
    };
}
pub(super) use renew_mark;

/// Marks (or renews the marks of) `subjects`, each once and in order.
pub(super) async fn mark_dirty(conn: &mut PgConnection, subjects: Vec<String>, now: i64) -> Result<()> {
    let subjects = model::distinct_sorted(subjects);
    if subjects.is_empty() {
        return Ok(());
    }
    sqlx::query(concat!(
        "INSERT INTO model_dirty (subject_id, marked_at)
         SELECT subject_id, $2 FROM UNNEST($1::text[]) WITH ORDINALITY AS t(subject_id, n) ORDER BY n",
        renew_mark!()
    ))
    .bind(&subjects)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn mark_all_dirty(conn: &mut PgConnection, now: i64) -> Result<u64> {
    Ok(sqlx::query(concat!(
        "INSERT INTO model_dirty (subject_id, marked_at) SELECT id, $1 FROM subjects WHERE erased_at IS NULL ORDER BY id",
        renew_mark!()
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

pub(super) async fn dirty(conn: &mut PgConnection, limit: u32) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT subject_id, marked_at FROM model_dirty ORDER BY marked_at, subject_id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?)
}

pub(super) async fn clean(conn: &mut PgConnection, mut marks: Vec<(String, i64)>) -> Result<()> {
    if marks.is_empty() {
        return Ok(());
    }
    marks.sort();
    let (subjects, times): (Vec<String>, Vec<i64>) = marks.into_iter().unzip();
    sqlx::query(
        "DELETE FROM model_dirty USING UNNEST($1::text[], $2::int8[]) AS t(subject_id, marked_at)
         WHERE model_dirty.subject_id = t.subject_id AND model_dirty.marked_at <= t.marked_at",
    )
    .bind(&subjects)
    .bind(&times)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl ModelStore for PostgresStore {
    async fn put_items(&self, items: Vec<ItemRecord>, now: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let version = put_items(&mut tx, items, now).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn items_since(&self, after: i64, limit: u32) -> Result<Vec<ItemRecord>> {
        let mut conn = self.pool.acquire().await?;
        items_since(&mut conn, after, limit).await
    }

    async fn item(&self, id: &str) -> Result<Option<ItemRecord>> {
        let mut conn = self.pool.acquire().await?;
        item(&mut conn, id).await
    }

    async fn put_contributions(
        &self,
        write: Vec<(String, Vec<u8>)>,
        remove: Vec<String>,
        now: i64,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let version = put_contributions(&mut tx, write, remove, now).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn model_changes(&self, after: i64, limit: u32) -> Result<Vec<ModelChange>> {
        let mut conn = self.pool.acquire().await?;
        model_changes(&mut conn, after, limit).await
    }

    async fn mark_all_model_dirty(&self, now: i64) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        mark_all_dirty(&mut conn, now).await
    }

    async fn model_dirty(&self, limit: u32) -> Result<Vec<(String, i64)>> {
        let mut conn = self.pool.acquire().await?;
        dirty(&mut conn, limit).await
    }

    async fn model_clean(&self, marks: Vec<(String, i64)>) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        clean(&mut conn, marks).await
    }
}
