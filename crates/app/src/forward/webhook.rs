//! The signed-webhook kind of forwarding destination: batches of events as one JSON POST, signed
//! exactly as erasure notices are (`Tactful-Signature: t=…,v1=…`, HMAC-SHA256 over timestamp and
//! body), each event under its messageId so the receiver can drop what it already has.

use async_trait::async_trait;
use serde_json::{Value, json};
use tactful_domain::catalog::Destination;
use tactful_domain::secret::Secret;
use tactful_domain::segment::format_time;

use super::sink::{Forget, Forwarded, Removal, Sink, SinkError};
use crate::outbound::{Outbound, Reply};

/// POSTs to one destination's URL, signed with its secret.
pub struct WebhookSink {
    url: String,
    secret: Secret,
    outbound: Outbound,
}

impl WebhookSink {
    pub fn new(destination: &Destination, outbound: Outbound) -> WebhookSink {
        WebhookSink { url: destination.url.clone(), secret: destination.secret.clone(), outbound }
    }

    async fn post(&self, id: &str, body: &Value) -> Result<(), SinkError> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        let timestamp = crate::now_millis().div_euclid(1000);
        let signature = tactful_vault::webhook_signature(self.secret.expose(), timestamp, &body);
        let headers = [
            ("tactful-signature", format!("t={timestamp},v1={signature}")),
            ("tactful-delivery-id", id.to_owned()),
        ];
        match self.outbound.post_json(&self.url, &headers, body).await {
            Ok(Reply { status, .. }) if (200..300).contains(&status) => Ok(()),
            Ok(Reply { status, body }) => Err(SinkError {
                retryable: status >= 500 || status == 408 || status == 429,
                message: format!(
                    "answered {status}: {}",
                    body.lines().next().unwrap_or_default().chars().take(200).collect::<String>()
                ),
            }),
            Err(error) => Err(SinkError { retryable: true, message: error }),
        }
    }
}

/// One event as the webhook body carries it.
pub fn event_body(event: &Forwarded) -> Value {
    json!({
        "messageId": event.message_id,
        "type": event.kind,
        "event": event.event,
        "timestamp": format_time(event.timestamp.unix_timestamp_nanos().div_euclid(1_000_000) as i64),
        "token": event.person.token,
        "identifiers": event.person.identifiers,
        "properties": event.properties,
        "purposes": event.purposes,
    })
}

#[async_trait]
impl Sink for WebhookSink {
    async fn deliver(&self, batch: &[Forwarded]) -> Result<(), SinkError> {
        let Some(first) = batch.first() else { return Ok(()) };
        let body = json!({
            "type": "events",
            "batch": batch.iter().map(event_body).collect::<Vec<_>>(),
        });
        self.post(&first.message_id, &body).await
    }

    async fn forget(&self, forget: &Forget) -> Result<(), SinkError> {
        let body = json!({
            "id": forget.request,
            "type": match forget.removal {
                Removal::Erase => "erase",
                Removal::Restrict => "restrict",
            },
            "issued_at": format_time(crate::now_millis()),
            "token": forget.person.token,
            "identifiers": forget.person.identifiers,
        });
        self.post(&forget.request, &body).await
    }
}
