//! Telling destinations (the brand's downstream systems) about requests and consent changes: each
//! delivery is an outbox message, claimed by whichever instance is free, POSTed as JSON signed with
//! HMAC-SHA256 over timestamp and body (`Tactful-Signature: t=…,v1=…`, the convention of Stripe and
//! GitHub), and retried with exponential backoff and jitter until the destination answers 2xx or
//! its horizon passes. Retries carry the same id, so a destination that saw one already can ignore it.

use serde_json::{Value, json};
use tactful_domain::catalog::{Catalog, Destination, DestinationMessage};
use tactful_domain::segment::format_time;
use tactful_store::{DeliveryOutcome, DeliveryPayload, NewDelivery, OutboxMessage, StoreError};
use tactful_vault::Vault;

use crate::App;
use crate::forward::sink::{Forget, Recipient, Removal};
use crate::outbound::Reply;
pub use crate::outbound::{jitter, retry_delay_ms};
pub use crate::subjects::{Identifiers, current_identifiers};

/// Messages claimed per pass.
const BATCH: u32 = 16;
/// How long a claimed message is held beyond the time its call may take, before another instance
/// (or this one, restarted) may try it.
const LEASE_MARGIN_MS: i64 = 1_000;

/// The deliveries telling every destination that receives `message` what `template` says (its
/// `destination` is filled in per destination, and its identifiers reduced to those each may know).
pub fn deliveries_for(
    vault: &Vault,
    catalog: &Catalog,
    message: DestinationMessage,
    template: &DeliveryPayload,
) -> Vec<NewDelivery> {
    catalog
        .destinations()
        .iter()
        .filter(|destination| destination.receives.contains(&message) || forgets(destination, message))
        .map(|destination| {
            DeliveryPayload {
                destination: destination.key.clone(),
                message: message.as_str().to_owned(),
                identifiers: template
                    .identifiers
                    .as_ref()
                    .map(|identifiers| allowed(destination, identifiers)),
                ..template.clone()
            }
            .into_delivery(vault)
        })
        .collect()
}

/// Whether `message` is one a forwarding destination must act on (erase or restrict what it was
/// sent), whatever it lists in `receives`: it is told through its own sink.
fn forgets(destination: &Destination, message: DestinationMessage) -> bool {
    destination.forwards() && matches!(message, DestinationMessage::Erase | DestinationMessage::Restrict)
}

/// The identifiers a destination may be told.
fn allowed(destination: &Destination, identifiers: &Identifiers) -> Identifiers {
    identifiers
        .iter()
        .filter(|(kind, _)| destination.identifiers.iter().any(|allowed| allowed.as_str() == kind.as_str()))
        .map(|(kind, value)| (kind.clone(), value.clone()))
        .collect()
}

/// The body a destination receives.
pub fn wire_body(payload: &DeliveryPayload, identifiers: &Identifiers) -> Value {
    json!({
        "id": payload.request,
        "type": payload.message,
        "issued_at": format_time(payload.issued_at),
        "identifiers": identifiers,
        "details": payload.details,
    })
}

/// Delivers what is due, people's rights first (erasure, restriction, … have a lane of their own, so
/// they never wait behind consent notices); returns how many messages were tried.
pub async fn deliver_due(app: &App, now: i64) -> Result<usize, StoreError> {
    // The batch is sent at once, so the lease covers one call.
    let per_call = i64::try_from(app.outbound.timeout().as_millis()).unwrap_or(i64::MAX);
    let mut messages = Vec::new();
    for topic in tactful_store::DELIVERY_TOPICS {
        let room = BATCH.saturating_sub(u32::try_from(messages.len()).unwrap_or(u32::MAX));
        if room == 0 {
            break;
        }
        messages.extend(
            app.store.outbox_claim(topic, room, now, per_call.saturating_add(LEASE_MARGIN_MS)).await?,
        );
    }
    let count = messages.len();
    let sent =
        futures_util::future::join_all(messages.into_iter().map(|message| deliver(app, message, now))).await;
    for result in sent {
        result?;
    }
    Ok(count)
}

async fn deliver(app: &App, message: OutboxMessage, now: i64) -> Result<(), StoreError> {
    let payload = DeliveryPayload::open(&app.vault, &message.payload)?;
    let record = |outcome| {
        app.store.record_delivery(&message.id, &payload.request, &payload.destination, outcome, now)
    };
    let Some(destination) = app.catalog.destination(&payload.destination) else {
        let error = format!("the destination {} is no longer in the catalog", payload.destination);
        record(DeliveryOutcome::Failed { status_code: None, error, retry_at: None }).await?;
        return Ok(());
    };
    let identifiers = match &payload.identifiers {
        Some(identifiers) => identifiers.clone(),
        None => match current_identifiers(app, &payload.subject).await? {
            Some(identifiers) => allowed(destination, &identifiers),
            None => {
                let error = "the person was erased before this could be sent".to_owned();
                record(DeliveryOutcome::Failed { status_code: None, error, retry_at: None }).await?;
                return Ok(());
            }
        },
    };
    let removal =
        DestinationMessage::parse(&payload.message).filter(|message| forgets(destination, *message));
    let reply = match removal {
        Some(message) => forget(app, destination, message, &payload, identifiers).await,
        None => post(app, destination, &payload, &identifiers, message.attempts, now).await,
    };
    let outcome = match reply {
        Ok(reply) if (200..300).contains(&reply.status) => {
            DeliveryOutcome::Acknowledged { status_code: reply.status }
        }
        failed => {
            let (status_code, error) = match failed {
                Ok(reply) => {
                    (Some(reply.status), format!("answered {}: {}", reply.status, first_line(&reply.body)))
                }
                Err(error) => (None, error),
            };
            let horizon = message.created_at.saturating_add(destination.give_up_after.as_millis());
            let next = now + retry_delay_ms(app.delivery_retry_base_ms, message.attempts, jitter());
            let retry_at = (next < horizon).then_some(next);
            DeliveryOutcome::Failed { status_code, error, retry_at }
        }
    };
    if let DeliveryOutcome::Failed { error, retry_at, .. } = &outcome {
        tracing::warn!(destination = %destination.key, attempt = message.attempts, giving_up = retry_at.is_none(), %error, "a destination did not acknowledge");
    }
    record(outcome).await?;
    Ok(())
}

/// A notice POSTed to a destination, signed.
async fn post(
    app: &App,
    destination: &Destination,
    payload: &DeliveryPayload,
    identifiers: &Identifiers,
    attempt: u32,
    now: i64,
) -> Result<Reply, String> {
    let body = serde_json::to_vec(&wire_body(payload, identifiers)).unwrap_or_default();
    let timestamp = now.div_euclid(1000);
    let signature = tactful_vault::webhook_signature(destination.secret.expose(), timestamp, &body);
    let headers = [
        ("tactful-signature", format!("t={timestamp},v1={signature}")),
        ("tactful-delivery-id", payload.request.clone()),
        ("tactful-attempt", attempt.to_string()),
    ];
    app.outbound.post_json(&destination.url, &headers, body).await
}

/// An erasure or restriction reaching a forwarding destination through its own sink, with every
/// identifier it may know and the token it was given. A refusal for good is answered as a 4xx
/// would be (no retry), one worth retrying as no answer.
async fn forget(
    app: &App,
    destination: &Destination,
    message: DestinationMessage,
    payload: &DeliveryPayload,
    identifiers: Identifiers,
) -> Result<Reply, String> {
    let removal = if message == DestinationMessage::Erase { Removal::Erase } else { Removal::Restrict };
    let forget = Forget {
        request: payload.request.clone(),
        removal,
        person: Recipient {
            token: app.vault.destination_token(&destination.key, &payload.subject),
            identifiers,
        },
    };
    match app.sinks.of(destination, &app.outbound).forget(&forget).await {
        Ok(()) => Ok(Reply { status: 200, body: String::new() }),
        Err(error) if error.retryable => Err(error.message),
        Err(error) => Ok(Reply { status: 422, body: error.message }),
    }
}

fn first_line(body: &str) -> String {
    body.lines().next().unwrap_or_default().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_an_hour() {
        assert_eq!(retry_delay_ms(1_000, 1, 0.0), 1_000);
        assert_eq!(retry_delay_ms(1_000, 2, 0.0), 2_000);
        assert_eq!(retry_delay_ms(1_000, 5, 0.0), 16_000);
        assert_eq!(retry_delay_ms(1_000, 40, 0.0), 3_600_000, "capped");
        assert_eq!(retry_delay_ms(1_000, 1, 1.0), 1_200);
        assert_eq!(retry_delay_ms(1_000, 1, -1.0), 800);
        for _ in 0..100 {
            let sample = jitter();
            assert!((-1.0..=1.0).contains(&sample), "{sample}");
        }
    }
}
