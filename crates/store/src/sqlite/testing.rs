//! [`StoreTesting`] on SQLite: what only tests call, kept apart from the backend's product surface.

use async_trait::async_trait;
use rusqlite::params;

use super::{SqliteStore, analytics, model};
use crate::{Budget, Result, StoreTesting};

#[async_trait]
impl StoreTesting for SqliteStore {
    async fn outbox_enqueue(&self, topic: &str, payload: Vec<u8>, now: i64) -> Result<String> {
        let topic = topic.to_owned();
        let id = crate::shared::new_message_id();
        let returned = id.clone();
        self.write(move |writer| {
            writer
                .conn
                .prepare_cached(
                    "INSERT INTO outbox (id, topic, payload, created_at, not_before) VALUES (?1, ?2, ?3, ?4, ?4)",
                )?
                .execute(params![id, topic, payload, now])?;
            Ok(())
        })
        .await?;
        Ok(returned)
    }

    async fn model_version(&self) -> Result<i64> {
        self.read(model::model_version).await
    }

    async fn mark_model_dirty(&self, subjects: Vec<String>, now: i64) -> Result<()> {
        self.write(move |writer| model::mark_dirty(&writer.conn, subjects.iter().map(String::as_str), now))
            .await
    }

    async fn budget(&self, dataset: &str, period_start: i64, limit_micro: i64) -> Result<Budget> {
        let dataset = dataset.to_owned();
        self.read(move |conn| analytics::budget(conn, &dataset, period_start, limit_micro)).await
    }
}
