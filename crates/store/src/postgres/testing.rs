//! [`StoreTesting`] on PostgreSQL: what only tests call, kept apart from the backend's product surface.

use async_trait::async_trait;

use super::{PostgresStore, analytics, model};
use crate::{Budget, Result, StoreTesting};

#[async_trait]
impl StoreTesting for PostgresStore {
    async fn outbox_enqueue(&self, topic: &str, payload: Vec<u8>, now: i64) -> Result<String> {
        let id = crate::shared::new_message_id();
        sqlx::query(
            "INSERT INTO outbox (id, topic, payload, created_at, not_before) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&id)
        .bind(topic)
        .bind(payload)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    async fn model_version(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        model::model_version(&mut conn).await
    }

    async fn mark_model_dirty(&self, subjects: Vec<String>, now: i64) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        model::mark_dirty(&mut conn, subjects, now).await
    }

    async fn budget(&self, dataset: &str, period_start: i64, limit_micro: i64) -> Result<Budget> {
        let mut conn = self.pool.acquire().await?;
        analytics::budget(&mut conn, dataset, period_start, limit_micro).await
    }
}
