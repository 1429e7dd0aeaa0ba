//! Private analytics on PostgreSQL: privacy budgets that many instances spend from without ever
//! together exceeding the limit, and the scans aggregate queries read. A spend serializes on its
//! budget row, locked by the conditional update until the spending transaction ends.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use tactful_domain::audit::AuditEvent;

use super::PostgresStore;
use super::audit::append_audit;
use crate::window::{PageBuilder, WindowTie};
use crate::{
    AnalyticsStore, Budget, FamilyActivity, Result, Scan, SpendOutcome, StoreError, WindowCursor, WindowPage,
    WrappedKeys,
};

/// Spends from a budget in one transaction with its audit entries; a refusal rolls everything back.
pub(super) async fn spend_budget(
    pool: &PgPool,
    dataset: &str,
    period_start: i64,
    epsilon_micro: i64,
    limit_micro: i64,
    audit: &[AuditEvent],
) -> Result<SpendOutcome> {
    crate::shared::check_spend(epsilon_micro, limit_micro)?;
    let now = crate::shared::now_millis();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO privacy_budget (dataset, period_start, spent_micro, updated_at) VALUES ($1, $2, 0, $3)
         ON CONFLICT (dataset, period_start) DO NOTHING",
    )
    .bind(dataset)
    .bind(period_start)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // The row stays locked until this transaction ends: a concurrent spend waits here, then checks
    // its condition against what this one committed. Written as `spent <= limit - ε` so that no sum
    // can overflow (both are non-negative).
    let spent: Option<i64> = sqlx::query_scalar(
        "UPDATE privacy_budget SET spent_micro = spent_micro + $3, updated_at = $5
         WHERE dataset = $1 AND period_start = $2 AND spent_micro <= $4 - $3
         RETURNING spent_micro",
    )
    .bind(dataset)
    .bind(period_start)
    .bind(epsilon_micro)
    .bind(limit_micro)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    match spent {
        Some(spent_micro) => {
            // The audit log is appended last, as in every transaction (see `access`).
            append_audit(&mut tx, audit, now).await?;
            tx.commit().await?;
            Ok(SpendOutcome::Spent(Budget { limit_micro, spent_micro }))
        }
        None => {
            let spent_micro = spent_in(&mut tx, dataset, period_start).await?;
            // Nothing is recorded, not even the empty row this transaction may have inserted.
            tx.rollback().await?;
            Ok(SpendOutcome::Refused(Budget { limit_micro, spent_micro }))
        }
    }
}

async fn spent_in(conn: &mut PgConnection, dataset: &str, period_start: i64) -> Result<i64> {
    let spent: Option<i64> =
        sqlx::query_scalar("SELECT spent_micro FROM privacy_budget WHERE dataset = $1 AND period_start = $2")
            .bind(dataset)
            .bind(period_start)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(spent.unwrap_or(0))
}

pub(super) async fn budget(
    conn: &mut PgConnection,
    dataset: &str,
    period_start: i64,
    limit_micro: i64,
) -> Result<Budget> {
    Ok(Budget { limit_micro, spent_micro: spent_in(conn, dataset, period_start).await? })
}

pub(super) async fn budgets(conn: &mut PgConnection) -> Result<Vec<(String, i64, i64)>> {
    sqlx::query(
        "SELECT dataset, period_start, spent_micro FROM privacy_budget ORDER BY dataset, period_start",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("dataset")?, row.try_get("period_start")?, row.try_get("spent_micro")?)))
    .collect()
}

/// A page of the window in `(timestamp, source, dedupe)` order: for envelopes, an index-only scan
/// of `events_envelope` where the visibility map allows.
pub(super) async fn events_in_window(
    conn: &mut PgConnection,
    from: i64,
    to: i64,
    after: Option<&WindowCursor>,
    limit: u32,
    scan: Scan,
) -> Result<WindowPage> {
    let (timestamp, source, dedupe) = match after {
        None => (i64::MIN, String::new(), Vec::new()),
        Some(WindowCursor { timestamp, tie: WindowTie::Key(source, dedupe) }) => {
            (*timestamp, source.clone(), dedupe.to_vec())
        }
        Some(other) => {
            return Err(StoreError::Internal(format!("a window cursor of another backend: {other:?}")));
        }
    };
    // Start at the cursor's time, so no page steps over the rows before it again.
    let start = from.max(timestamp);
    let records = scan == Scan::Records;
    let rows = sqlx::query(if records {
        "SELECT subject_id, source, COALESCE(name, type), timestamp, dedupe, sealed FROM events
         WHERE timestamp >= $1 AND timestamp < $2 AND (timestamp, source, dedupe) > ($3, $4, $5)
         ORDER BY timestamp, source, dedupe LIMIT $6"
    } else {
        "SELECT subject_id, source, COALESCE(name, type), timestamp, dedupe FROM events
         WHERE timestamp >= $1 AND timestamp < $2 AND (timestamp, source, dedupe) > ($3, $4, $5)
         ORDER BY timestamp, source, dedupe LIMIT $6"
    })
    .bind(start)
    .bind(to)
    .bind(timestamp)
    .bind(source)
    .bind(dedupe)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let mut page = PageBuilder::with_capacity(rows.len());
    for row in &rows {
        let timestamp: i64 = row.try_get(3)?;
        let dedupe = crate::shared::dedupe_from(row.try_get(4)?)?;
        let sealed = if records { Some((dedupe, row.try_get::<Vec<u8>, _>(5)?)) } else { None };
        page.push(
            row.try_get::<&str, _>(0)?,
            row.try_get::<&str, _>(1)?,
            row.try_get::<&str, _>(2)?,
            timestamp,
            sealed,
        );
    }
    let last = match rows.last() {
        Some(row) => Some(WindowCursor {
            timestamp: row.try_get(3)?,
            tie: WindowTie::Key(row.try_get(1)?, crate::shared::dedupe_from(row.try_get(4)?)?),
        }),
        None => None,
    };
    Ok(page.finish(rows.len() >= limit as usize, last))
}

/// Runs `sql` once per chunk of `ids` (sorted and deduplicated first), each chunk bound as `$1`;
/// returns every row.
async fn per_chunk(conn: &mut PgConnection, sql: &'static str, ids: &mut Vec<String>) -> Result<Vec<PgRow>> {
    ids.sort_unstable();
    ids.dedup();
    let mut found = Vec::new();
    for chunk in ids.chunks(crate::shared::SUBJECTS_PER_QUERY) {
        found.extend(sqlx::query(sql).bind(chunk).fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// The family roots of subjects not erased (nor in an erased family), a chunk of ids at a time.
pub(super) async fn family_roots(
    conn: &mut PgConnection,
    mut subjects: Vec<String>,
) -> Result<Vec<(String, String)>> {
    let rows = per_chunk(
        conn,
        "SELECT s.id, COALESCE(s.merged_into, s.id) AS root FROM subjects s
         LEFT JOIN subjects r ON r.id = s.merged_into
         WHERE s.id = ANY($1) AND s.erased_at IS NULL AND (r.id IS NULL OR r.erased_at IS NULL)",
        &mut subjects,
    )
    .await?;
    rows.iter().map(|row| Ok((row.try_get("id")?, row.try_get("root")?))).collect()
}

/// First and last event times per family root: each member's from `events_subject` (two index
/// probes per member, however many events it has), folded per root.
pub(super) async fn family_activity(
    conn: &mut PgConnection,
    mut roots: Vec<String>,
) -> Result<Vec<FamilyActivity>> {
    let rows = per_chunk(
        conn,
        "SELECT COALESCE(s.merged_into, s.id) AS root,
                (SELECT MIN(e.timestamp) FROM events e WHERE e.subject_id = s.id) AS first,
                (SELECT MAX(e.timestamp) FROM events e WHERE e.subject_id = s.id) AS last
         FROM subjects s
         WHERE (s.id = ANY($1) OR s.merged_into = ANY($1)) AND s.erased_at IS NULL",
        &mut roots,
    )
    .await?;
    let members = rows
        .iter()
        .map(|row| Ok((row.try_get("root")?, row.try_get("first")?, row.try_get("last")?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(FamilyActivity::of_members(&roots, members))
}

/// The members' wrapped keys of family roots, a chunk of roots at a time.
pub(super) async fn family_keys(
    conn: &mut PgConnection,
    mut roots: Vec<String>,
) -> Result<Vec<(String, WrappedKeys)>> {
    let rows = per_chunk(
        conn,
        "SELECT COALESCE(s.merged_into, s.id) AS root, s.id, s.wrapped_key FROM subjects s
         WHERE (s.id = ANY($1) OR s.merged_into = ANY($1)) AND s.erased_at IS NULL",
        &mut roots,
    )
    .await?;
    let members = rows
        .iter()
        .map(|row| Ok((row.try_get("root")?, row.try_get("id")?, row.try_get("wrapped_key")?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::shared::keys_of_members(&roots, members))
}

#[async_trait]
impl AnalyticsStore for PostgresStore {
    async fn spend_budget(
        &self,
        dataset: &str,
        period_start: i64,
        epsilon_micro: i64,
        limit_micro: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<SpendOutcome> {
        spend_budget(&self.pool, dataset, period_start, epsilon_micro, limit_micro, &audit).await
    }

    async fn budgets(&self) -> Result<Vec<(String, i64, i64)>> {
        let mut conn = self.pool.acquire().await?;
        budgets(&mut conn).await
    }

    async fn events_in_window(
        &self,
        from: i64,
        to: i64,
        after: Option<WindowCursor>,
        limit: u32,
        scan: Scan,
    ) -> Result<WindowPage> {
        let mut conn = self.pool.acquire().await?;
        events_in_window(&mut conn, from, to, after.as_ref(), limit, scan).await
    }

    async fn family_roots(&self, subjects: Vec<String>) -> Result<Vec<(String, String)>> {
        let mut conn = self.pool.acquire().await?;
        family_roots(&mut conn, subjects).await
    }

    async fn family_activity(&self, roots: Vec<String>) -> Result<Vec<FamilyActivity>> {
        let mut conn = self.pool.acquire().await?;
        family_activity(&mut conn, roots).await
    }

    async fn family_keys(&self, roots: Vec<String>) -> Result<Vec<(String, WrappedKeys)>> {
        let mut conn = self.pool.acquire().await?;
        family_keys(&mut conn, roots).await
    }
}
