//! Running the SQLite store: readiness, totals, leader-free periodic jobs (one process here, but the
//! same contract as PostgreSQL's) and master-key rotation, which re-wraps keys on the writer.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::{OperationsStore, Result, RewrapBatch, Stats};

#[async_trait]
impl OperationsStore for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.read(|conn| {
            let count = |table: &str| -> Result<u64> {
                let n: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            Ok(Stats {
                subjects: count("subjects WHERE merged_into IS NULL")?,
                identities: count("identities")?,
                events: count("events")?,
                profile_values: count("profile_values")?,
            })
        })
        .await
    }

    async fn job_claim(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        every_ms: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.write(move |writer| {
            writer
                .conn
                .prepare_cached(
                    "INSERT INTO jobs (name, next_run_at) VALUES (?1, 0) ON CONFLICT (name) DO NOTHING",
                )?
                .execute([&name])?;
            let claimed = writer
                .conn
                .prepare_cached(
                    "UPDATE jobs SET leased_by = ?2, leased_until = ?3 + ?5, next_run_at = ?3 + ?4
                     WHERE name = ?1 AND next_run_at <= ?3 AND (leased_until IS NULL OR leased_until <= ?3)",
                )?
                .execute(params![name, owner, now, every_ms, lease_ms])?;
            Ok(claimed == 1)
        })
        .await
    }

    async fn job_release(&self, name: &str, owner: &str) -> Result<()> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.write(move |writer| {
            writer
                .conn
                .prepare_cached("UPDATE jobs SET leased_by = NULL, leased_until = NULL WHERE name = ?1 AND leased_by = ?2")?
                .execute([&name, &owner])?;
            Ok(())
        })
        .await
    }

    async fn rewrap_keys(&self, after: Option<String>, limit: u32) -> Result<RewrapBatch> {
        self.write(move |writer| {
            let mut rewrapped = 0;
            if after.is_none() {
                let root: Vec<u8> = writer.conn.query_row(
                    "SELECT wrapped FROM keyring WHERE name = 'index_root'",
                    [],
                    |row| row.get(0),
                )?;
                if let Some(new) = writer.vault.rewrap_index_root(&root)? {
                    writer
                        .conn
                        .execute("UPDATE keyring SET wrapped = ?1 WHERE name = 'index_root'", [new])?;
                }
            }
            let rows: Vec<(String, Vec<u8>)> = writer
                .conn
                .prepare_cached("SELECT id, wrapped_key FROM subjects WHERE id > ?1 ORDER BY id LIMIT ?2")?
                .query_map(params![after.as_deref().unwrap_or(""), limit], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (id, wrapped) in &rows {
                if let Some(new) = writer.vault.rewrap_subject_key(id, wrapped)? {
                    rewrapped += writer
                        .conn
                        .prepare_cached(
                            "UPDATE subjects SET wrapped_key = ?1 WHERE id = ?2 AND wrapped_key = ?3",
                        )?
                        .execute(params![new, id, wrapped])? as u64;
                }
            }
            let next =
                (rows.len() == limit as usize).then(|| rows.last().map(|(id, _)| id.clone())).flatten();
            Ok(RewrapBatch { rewrapped, next })
        })
        .await
    }
}
