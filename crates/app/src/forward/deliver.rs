//! Delivery from the store, never inline with ingestion: each forwarding destination has a cursor
//! over committed events, claimed with a lease by one instance at a time (so each person's events
//! leave in the order they arrived). A pass reads the next batch after it, decides what may leave
//! now, records the disclosure in each person's access log, hands the batch to the destination's
//! sink, and moves the cursor only once the sink acknowledged: at least once, each event under its
//! messageId. A failure is retried from the same place with backoff until `give_up_after`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tactful_domain::catalog::{Destination, Forwarding};
use tactful_store::{ForwardPosition, ForwardProgress, StoreError};

use super::prepare::prepare;
use super::sink::Sink;
use crate::App;
use crate::error::{AppError, ErrorCode};
use crate::outbound::{jitter, retry_delay_ms};

/// How long a claimed cursor is held beyond the time a delivery may take, before another instance
/// (or this one, restarted) may take it over.
const LEASE_MARGIN_MS: i64 = 10_000;

/// How long an instance that found a destination caught up only peeks (a read) before claiming its
/// cursor again (a write): also how soon a replay made elsewhere is taken up.
const IDLE_PEEK_MS: i64 = 5_000;

/// The sinks of one process, made once per destination (a warehouse keeps its connections), and
/// where each destination stood when this process last found it caught up.
#[derive(Default)]
pub struct Sinks {
    sinks: Mutex<HashMap<String, Arc<dyn Sink>>>,
    idle: Mutex<HashMap<String, (ForwardPosition, i64)>>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sinks")
    }
}

impl Sinks {
    fn idle_since(&self, destination: &str, now: i64) -> Option<ForwardPosition> {
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        idle.get(destination)
            .filter(|(_, since)| now.saturating_sub(*since) < IDLE_PEEK_MS)
            .map(|(at, _)| at.clone())
    }

    fn set_idle(&self, destination: &str, at: Option<(ForwardPosition, i64)>) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match at {
            Some(at) => idle.insert(destination.to_owned(), at),
            None => idle.remove(destination),
        };
    }

    /// The sink of `destination`, made on first use.
    pub fn of(&self, destination: &Destination, outbound: &crate::outbound::Outbound) -> Arc<dyn Sink> {
        let mut sinks = self.sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sinks.entry(destination.key.clone()).or_insert_with(|| super::sink_for(destination, outbound)).clone()
    }
}

/// Gives every forwarding destination that has no cursor yet one at the end of the log: it
/// receives what arrives from now on (`replay` sends older events).
pub async fn start(app: &App) -> Result<(), StoreError> {
    let keys: Vec<String> = forwarding(app).map(|destination| destination.key.clone()).collect();
    if keys.is_empty() {
        return Ok(());
    }
    app.store.forward_start(keys, app.now()).await
}

/// The destinations events flow on to, in catalog order.
fn forwarding(app: &App) -> impl Iterator<Item = &Destination> {
    app.catalog.destinations().iter().filter(|destination| destination.forwards())
}

/// One pass over every forwarding destination that is due and free: sends its next batch. Returns
/// how many events were handled (sent, or kept back for a reason), 0 when every one is caught up.
pub async fn forward_due(app: &App) -> Result<usize, StoreError> {
    let passes = app.catalog.destinations().iter().filter_map(|destination| {
        destination.forwarding.as_ref().map(|forwarding| forward_one(app, destination, forwarding))
    });
    let mut handled = 0;
    for result in futures_util::future::join_all(passes).await {
        handled += result?;
    }
    Ok(handled)
}

async fn forward_one(
    app: &App,
    destination: &Destination,
    forwarding: &Forwarding,
) -> Result<usize, StoreError> {
    let now = app.now();
    let per_call = i64::try_from(app.outbound.timeout().as_millis()).unwrap_or(i64::MAX / 2);
    let lease_ms = per_call.saturating_add(LEASE_MARGIN_MS);
    // Caught up a moment ago: a read tells whether anything arrived, without claiming (a write).
    if let Some(at) = app.sinks.idle_since(&destination.key, now)
        && app.store.forward_events(&at, now, 1).await?.is_empty()
    {
        return Ok(0);
    }
    let Some(claim) = app.store.forward_claim(&destination.key, now, lease_ms).await? else { return Ok(0) };
    let events = app.store.forward_events(&claim.position, now, forwarding.batch_size).await?;
    let Some(last) = events.last().map(|item| item.position.clone()) else {
        app.store.forward_advance(&claim, &claim.position, ForwardProgress::default(), now).await?;
        app.sinks.set_idle(&destination.key, Some((claim.position, now)));
        return Ok(0);
    };
    app.sinks.set_idle(&destination.key, None);
    let prepared = prepare(app, destination, forwarding, &events, now).await?;
    let mut progress =
        ForwardProgress { delivered: 0, refused: prepared.refused, ..ForwardProgress::default() };
    if !prepared.batch.is_empty() {
        // The disclosure is in each person's access log before anything leaves.
        app.store.audit_append(prepared.audit, now).await?;
        let sink = app.sinks.of(destination, &app.outbound);
        match sink.deliver(&prepared.batch).await {
            Ok(()) => progress.delivered = prepared.batch.len() as u64,
            Err(error) => {
                let horizon =
                    claim.failing_since.unwrap_or(now).saturating_add(destination.give_up_after.as_millis());
                let retry_at = now
                    + retry_delay_ms(app.delivery_retry_base_ms, claim.attempts.saturating_add(1), jitter());
                tracing::warn!(destination = %destination.key, attempt = claim.attempts + 1, retryable = error.retryable, error = %error.message, "a forwarding destination did not acknowledge");
                if error.retryable && retry_at < horizon {
                    app.store.forward_fail(&claim, &error.message, retry_at, now).await?;
                    return Ok(0);
                }
                // Refused for good (or for too long): the batch is skipped, counted, and the
                // events after it flow again.
                let reason = if error.retryable { "gave_up" } else { "rejected" };
                *progress.refused.entry(reason.to_owned()).or_default() += prepared.batch.len() as u64;
                progress.failed = Some(error.message);
            }
        }
    }
    app.store.forward_advance(&claim, &last, progress, now).await?;
    Ok(events.len())
}

/// Sends `name` again what arrived since `since` (Unix ms) and is permitted now: its cursor moves
/// back (never forward), and the events flow again under their same messageIds.
pub async fn replay(app: &App, name: &str, since: i64) -> Result<(), AppError> {
    let destination = app
        .catalog
        .destinations()
        .iter()
        .find(|destination| destination.key == name || destination.name == name)
        .filter(|destination| destination.forwards())
        .ok_or_else(|| {
            let forwarding: Vec<&str> = forwarding(app).map(|destination| destination.key.as_str()).collect();
            AppError::with_message(
                ErrorCode::InvalidRequest,
                format!(
                    "{name:?} is no destination that receives events; those that do: {}",
                    forwarding.join(", ")
                ),
            )
        })?;
    start(app).await?;
    app.store.forward_rewind(&destination.key, since).await?;
    // This process takes it up at once; others within IDLE_PEEK_MS.
    app.sinks.set_idle(&destination.key, None);
    Ok(())
}
