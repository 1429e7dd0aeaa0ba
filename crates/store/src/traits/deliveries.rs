//! Telling destinations (the brand's downstream systems) about erasures and consent changes: the
//! deliveries of a request with every attempt, and the transactional outbox they travel through.

use async_trait::async_trait;
use tactful_domain::request::RequestStatus;

use crate::{DeliveryAttempt, DeliveryOutcome, DeliveryRecord, NewDelivery, OutboxMessage, Result};

/// Deliveries to destinations and the outbox. Messages are written in the transaction of the change
/// that causes them, and claimed with a lease, so each is delivered by one instance at a time.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Writes deliveries (and their outbox messages) for a request carried out.
    async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>, now: i64) -> Result<()>;

    async fn deliveries(&self, request: &str) -> Result<Vec<DeliveryRecord>>;

    async fn delivery_attempts(&self, request: &str, destination: &str) -> Result<Vec<DeliveryAttempt>>;

    /// Records an attempt at delivering outbox message `outbox_id` (request `request` to
    /// `destination`): completes or reschedules the message, and moves the request to its final
    /// status once no delivery is pending. Returns the request's status if it changed.
    async fn record_delivery(
        &self,
        outbox_id: &str,
        request: &str,
        destination: &str,
        outcome: DeliveryOutcome,
        now: i64,
    ) -> Result<Option<RequestStatus>>;

    /// Claims up to `limit` due messages of `topic` for `lease_ms`. While the lease runs no other
    /// caller — in this process or another instance — claims them; if the claimer dies, they become
    /// due again when the lease ends.
    async fn outbox_claim(
        &self,
        topic: &str,
        limit: u32,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxMessage>>;

    /// Removes a message that was sent (or need not be).
    async fn outbox_complete(&self, id: &str) -> Result<()>;

    /// Releases a message whose sending failed, due again at `not_before`.
    async fn outbox_retry(&self, id: &str, not_before: i64, error: &str) -> Result<()>;

    /// When the oldest message still waiting in each topic's outbox was written (Unix ms), by
    /// topic: how far delivery lags. Topics with nothing waiting are absent.
    async fn outbox_oldest(&self) -> Result<Vec<(String, i64)>>;
}
