//! The ingestion pipeline between a door and the store: body → events → write key → validation →
//! minimization → blind indexes → [`IngestEvent`]s, committed, and the per-event outcome back.
//!
//! A batch is judged event by event: valid events are stored even when others in the same batch are
//! refused, and the answer lists each refused event with its index and reason. Only a request in
//! which no event could be accepted fails as a whole (401 when it is for want of a valid write key,
//! 400 otherwise), because SDKs drop a batch that gets a 4xx and retrying it would not help.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tactful_domain::catalog::{Catalog, Source};
use tactful_domain::consent::{self, ConsentSignal};
use tactful_domain::minimize::{self, Verdict};
use tactful_domain::segment::{self, Endpoint, EventError, Message, MessageType};
use tactful_store::{IngestEvent, IngestOutcome};
use tactful_vault::Vault;

use crate::App;
use crate::error::{AppError, ErrorCode};

/// What became of one event of the request, in request order.
enum Slot {
    Rejected(EventError),
    /// Dropped whole by the tracking plan (an undeclared event on a lenient source).
    Dropped {
        source: String,
    },
    /// Handed to the store as `events[index]`.
    Pending {
        index: usize,
        source: String,
    },
}

/// A request turned into events for the store.
pub struct Prepared {
    slots: Vec<Slot>,
    /// Properties dropped by minimization (source, path, reason), for the metrics.
    drops: Vec<(String, String, &'static str)>,
    pub events: Vec<IngestEvent>,
}

/// What became of a request's events, for the answer and for the door's metrics.
#[derive(Debug)]
pub struct Ingested {
    /// The answer: `{"success", "stored", "duplicates", "dropped", "rejected"?}`.
    pub answer: Value,
    /// Each event's source and outcome (`stored`, `duplicate`, `suppressed`, `dropped`, `rejected`).
    pub outcomes: Vec<(String, &'static str)>,
    /// Properties dropped by minimization: (source, path, reason).
    pub drops: Vec<(String, String, &'static str)>,
}

/// Judges a request body and commits what it accepts; answers once the store committed.
pub async fn ingest(
    app: &App,
    endpoint: Endpoint,
    body: &[u8],
    request: &RequestSignals<'_>,
) -> Result<Ingested, AppError> {
    let mut prepared = prepare(&app.catalog, &app.vault, endpoint, body, request)?;
    // Each write key's events count against its limit before any is stored.
    let mut per_source: BTreeMap<&str, u64> = BTreeMap::new();
    for slot in &prepared.slots {
        if let Slot::Pending { source, .. } | Slot::Dropped { source } = slot {
            *per_source.entry(source).or_default() += 1;
        }
    }
    for (source, events) in per_source {
        crate::limits::ingest(app, source, events).await?;
    }
    let events = std::mem::take(&mut prepared.events);
    let outcomes =
        if events.is_empty() { Vec::new() } else { app.store.ingest(events, app.policy.clone()).await? };
    Ok(answer(prepared, &outcomes))
}

/// What the request itself says beyond its body.
pub struct RequestSignals<'a> {
    /// The write key from `Authorization`, if any.
    pub write_key: Option<&'a str>,
    /// `Sec-GPC: 1`: the browser's Global Privacy Control, an opt-out of sale and sharing.
    pub gpc: bool,
    pub received_at: i64,
}

/// Parses and judges a request body.
pub fn prepare(
    catalog: &Catalog,
    vault: &Vault,
    endpoint: Endpoint,
    body: &[u8],
    request: &RequestSignals<'_>,
) -> Result<Prepared, AppError> {
    let parsed = segment::parse_body(endpoint, body).map_err(|error| {
        let code = match error {
            segment::BodyError::InvalidJson(_) => ErrorCode::InvalidJson,
            segment::BodyError::TooDeep(_) => ErrorCode::JsonTooDeep,
            segment::BodyError::NotAnObject => ErrorCode::NotAnObject,
            segment::BodyError::MissingBatch => ErrorCode::MissingBatch,
            segment::BodyError::EmptyBatch => ErrorCode::EmptyBatch,
            segment::BodyError::TooManyEvents(_) => ErrorCode::BatchTooLarge,
            segment::BodyError::InvalidEnvelope(_) => ErrorCode::InvalidRequest,
        };
        AppError::with_message(code, error.to_string())
    })?;
    let mut prepared =
        Prepared { slots: Vec::with_capacity(parsed.events.len()), drops: Vec::new(), events: Vec::new() };
    for raw in parsed.events {
        let slot = match raw {
            Err(error) => Slot::Rejected(error),
            Ok(raw) => judge(catalog, vault, raw, request, &mut prepared),
        };
        prepared.slots.push(slot);
    }
    if prepared.events.is_empty() && !prepared.slots.iter().any(|slot| matches!(slot, Slot::Dropped { .. })) {
        return Err(nothing_accepted(&prepared.slots, endpoint));
    }
    Ok(prepared)
}

/// Judges one event: its write key, validity, the catalog, its consent signals.
fn judge(
    catalog: &Catalog,
    vault: &Vault,
    raw: segment::RawEvent,
    request: &RequestSignals<'_>,
    prepared: &mut Prepared,
) -> Slot {
    let write_key = raw.write_key.clone().or_else(|| request.write_key.map(str::to_owned));
    let source = match write_key.as_deref().map(|key| catalog.source_by_write_key(key)) {
        None => return rejected(ErrorCode::MissingWriteKey),
        Some(None) => return rejected(ErrorCode::UnknownWriteKey),
        Some(Some(source)) => source,
    };
    let message = match segment::validate(raw, request.received_at) {
        Ok(message) => message,
        Err(error) => return Slot::Rejected(error),
    };
    let minimized = match minimize::minimize(catalog, source, &message) {
        Verdict::Keep(minimized) => minimized,
        Verdict::Reject { code, message } => return Slot::Rejected(EventError::new(code, message)),
        Verdict::DropEvent(dropped) => {
            for drop in dropped {
                prepared.drops.push((source.key.clone(), drop.path, drop.reason.as_str()));
            }
            return Slot::Dropped { source: source.key.clone() };
        }
    };
    let verified = match proof(source, &message) {
        Ok(verified) => verified,
        Err(error) => return Slot::Rejected(error),
    };
    let consent = match consent_of(catalog, &message, request.gpc) {
        Ok(consent) => consent,
        Err(error) => return Slot::Rejected(error),
    };
    let event = IngestEvent::from_message(
        catalog,
        vault,
        source,
        &message,
        minimized,
        consent,
        tactful_store::Arrival { at: request.received_at, verified },
    );
    for drop in &event.dropped {
        prepared.drops.push((source.key.clone(), drop.path.clone(), drop.reason.as_str()));
    }
    prepared.events.push(event);
    Slot::Pending { index: prepared.events.len() - 1, source: source.key.clone() }
}

/// Whether who an event is about is proven: a server source's word, or on a public source (a
/// browser or an app, whose write key anyone can read) the identity token of its userId in
/// `context.identityToken`. An unproven event is taken as its device's (its anonymousId) only; one
/// that names no device, or an alias, which links people, is refused.
fn proof(source: &Source, message: &Message) -> Result<bool, EventError> {
    let token = message
        .object
        .get("context")
        .and_then(|context| context.get("identityToken"))
        .and_then(Value::as_str);
    let verified = match message.user_id.as_deref() {
        Some(user) => source.proves(user, token),
        None => !source.is_public() || source.trust_claims,
    };
    if message.kind == MessageType::Alias && source.is_public() && !source.trust_claims {
        return Err(EventError::new(
            "unproven_identity",
            "alias links people: send it from a server source, whose write key is secret",
        ));
    }
    if !verified && message.anonymous_id.is_none() {
        return Err(EventError::new(
            "unproven_identity",
            "an event from a browser or an app names its device (anonymousId), or proves its userId with an identity token (context.identityToken)",
        ));
    }
    Ok(verified)
}

fn rejected(code: ErrorCode) -> Slot {
    Slot::Rejected(EventError::new(code.as_str(), code.default_message()))
}

/// The error for a request of which no event was accepted.
fn nothing_accepted(slots: &[Slot], endpoint: Endpoint) -> AppError {
    let errors: Vec<&EventError> = slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Rejected(error) => Some(error),
            _ => None,
        })
        .collect();
    let all_for = |code: ErrorCode| errors.iter().all(|error| error.code == code.as_str());
    if all_for(ErrorCode::UnknownWriteKey) {
        return AppError::new(ErrorCode::UnknownWriteKey);
    }
    if all_for(ErrorCode::MissingWriteKey) {
        return AppError::new(ErrorCode::MissingWriteKey);
    }
    match (endpoint, errors.as_slice()) {
        (Endpoint::Single(_), [error]) if error.code == "event_too_large" => {
            AppError::with_message(ErrorCode::EventTooLarge, error.message.clone())
        }
        (Endpoint::Single(_), [error]) => {
            AppError::with_message(ErrorCode::InvalidEvent, error.message.clone())
                .details(json!({"reason": error.code}))
        }
        _ => AppError::new(ErrorCode::NoValidEvents).details(json!({"rejected": rejected_list(slots)})),
    }
}

fn rejected_list(slots: &[Slot]) -> Vec<Value> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| match slot {
            Slot::Rejected(error) => {
                Some(json!({"index": index, "code": error.code, "message": error.message}))
            }
            _ => None,
        })
        .collect()
}

/// The consent changes an event carries: its consent context, and the request's GPC signal.
fn consent_of(catalog: &Catalog, message: &Message, gpc: bool) -> Result<Vec<ConsentSignal>, EventError> {
    let mut signals = consent::signals_from_context(catalog, message.object.get("context"))
        .map_err(|error| EventError::new("invalid_consent", error.to_string()))?;
    if gpc {
        signals.extend(consent::gpc_signals(catalog));
    }
    Ok(signals)
}

/// The answer to a request once the store committed its events.
fn answer(prepared: Prepared, outcomes: &[IngestOutcome]) -> Ingested {
    let mut counted = Vec::with_capacity(prepared.slots.len());
    let (mut stored, mut duplicates, mut dropped) = (0u64, 0u64, 0u64);
    for slot in &prepared.slots {
        let (source, outcome) = match slot {
            Slot::Pending { index, source } => match outcomes.get(*index) {
                Some(IngestOutcome::Stored { .. }) => {
                    stored += 1;
                    (source.as_str(), "stored")
                }
                Some(IngestOutcome::Duplicate) => {
                    duplicates += 1;
                    (source.as_str(), "duplicate")
                }
                // The person asked for their events to be dropped. Answered like any dropped event,
                // so a browser cannot tell who is suppressed; counted apart for operators.
                Some(IngestOutcome::Suppressed) => {
                    dropped += 1;
                    (source.as_str(), "suppressed")
                }
                // A claim on a known person's device: answered like a dropped event too, so a
                // browser cannot tell whose device it holds.
                Some(IngestOutcome::Unproven) => {
                    dropped += 1;
                    (source.as_str(), "unproven")
                }
                None => continue,
            },
            Slot::Dropped { source } => {
                dropped += 1;
                (source.as_str(), "dropped")
            }
            Slot::Rejected(_) => ("(unknown)", "rejected"),
        };
        counted.push((source.to_owned(), outcome));
    }
    let mut answer = json!({"success": true, "stored": stored, "duplicates": duplicates, "dropped": dropped});
    let rejected = rejected_list(&prepared.slots);
    if !rejected.is_empty() {
        answer["rejected"] = Value::Array(rejected);
    }
    Ingested { answer, outcomes: counted, drops: prepared.drops }
}
