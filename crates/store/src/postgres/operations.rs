//! Running the PostgreSQL store: readiness, totals, leader-free periodic jobs (a job row with its next
//! run time and a lease, taken by a conditional update) and master-key rotation.

use async_trait::async_trait;
use sqlx::Row;

use super::PostgresStore;
use crate::{OperationsStore, Result, RewrapBatch, Stats};

#[async_trait]
impl OperationsStore for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn stats(&self) -> Result<Stats> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM subjects WHERE merged_into IS NULL) AS subjects,
                    (SELECT count(*) FROM identities) AS identities,
                    (SELECT count(*) FROM events) AS events,
                    (SELECT count(*) FROM profile_values) AS profile_values",
        )
        .fetch_one(&self.pool)
        .await?;
        let count =
            |name: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
        Ok(Stats {
            subjects: count("subjects")?,
            identities: count("identities")?,
            events: count("events")?,
            profile_values: count("profile_values")?,
        })
    }

    async fn job_claim(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        every_ms: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        sqlx::query("INSERT INTO jobs (name, next_run_at) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&self.pool)
            .await?;
        let claimed = sqlx::query(
            "UPDATE jobs SET leased_by = $2, leased_until = $3 + $5, next_run_at = $3 + $4
             WHERE name = $1 AND next_run_at <= $3 AND (leased_until IS NULL OR leased_until <= $3)",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(every_ms)
        .bind(lease_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    async fn job_release(&self, name: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET leased_by = NULL, leased_until = NULL WHERE name = $1 AND leased_by = $2",
        )
        .bind(name)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn rewrap_keys(&self, after: Option<String>, limit: u32) -> Result<RewrapBatch> {
        self.rewrap(after, limit).await
    }
}

impl PostgresStore {
    async fn rewrap(&self, after: Option<String>, limit: u32) -> Result<RewrapBatch> {
        let mut rewrapped = 0;
        if after.is_none() {
            let root: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM keyring WHERE name = 'index_root'")
                .fetch_one(&self.pool)
                .await?;
            if let Some(new) = self.vault.rewrap_index_root(&root)? {
                sqlx::query("UPDATE keyring SET wrapped = $1 WHERE name = 'index_root' AND wrapped = $2")
                    .bind(new)
                    .bind(&root)
                    .execute(&self.pool)
                    .await?;
            }
        }
        let rows = sqlx::query("SELECT id, wrapped_key FROM subjects WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after.as_deref().unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut last = None;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
            if let Some(new) = self.vault.rewrap_subject_key(&id, &wrapped)? {
                // Conditional: another instance rotating at the same time, or a concurrent erasure,
                // simply wins.
                rewrapped +=
                    sqlx::query("UPDATE subjects SET wrapped_key = $1 WHERE id = $2 AND wrapped_key = $3")
                        .bind(new)
                        .bind(&id)
                        .bind(&wrapped)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
            }
            last = Some(id);
        }
        Ok(RewrapBatch { rewrapped, next: if rows.len() == limit as usize { last } else { None } })
    }
}
