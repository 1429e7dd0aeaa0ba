//! The ingestion pipeline between HTTP and the store: body → events → write key → validation →
//! minimization → blind indexes → [`IngestEvent`]s, and the per-event outcome back to the client.
//!
//! A batch is judged event by event: valid events are stored even when others in the same batch are
//! refused, and the answer lists each refused event with its index and reason. Only a request in
//! which no event could be accepted fails as a whole (401 when it is for want of a valid write key,
//! 400 otherwise), because SDKs drop a batch that gets a 4xx and retrying it would not help.

use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tactful_domain::identity::IdentifierKind;
use tactful_domain::minimize::{self, Verdict};
use tactful_domain::segment::{self, Endpoint, EventError, Message, MessageType};
use tactful_store::{IdentityClaim, IngestEvent, IngestOutcome};
use tactful_vault::Vault;

use crate::error::{ApiError, ErrorCode};
use crate::metrics::{EventLabels, Metrics};

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
    /// Properties dropped by minimization in the events handed to the store, for the metrics.
    drops: Vec<(String, String, &'static str)>,
    pub events: Vec<IngestEvent>,
}

/// Parses and judges a request body. `header_write_key` is the key from `Authorization`, if any.
pub fn prepare(
    catalog: &Catalog,
    vault: &Vault,
    metrics: &Metrics,
    endpoint: Endpoint,
    body: &[u8],
    header_write_key: Option<&str>,
    received_at: i64,
) -> Result<Prepared, ApiError> {
    let parsed = segment::parse_body(endpoint, body).map_err(|error| {
        let code = match error {
            segment::BodyError::InvalidJson(_) => ErrorCode::InvalidJson,
            segment::BodyError::TooDeep(_) => ErrorCode::JsonTooDeep,
            segment::BodyError::NotAnObject => ErrorCode::NotAnObject,
            segment::BodyError::MissingBatch => ErrorCode::MissingBatch,
            segment::BodyError::EmptyBatch => ErrorCode::EmptyBatch,
            segment::BodyError::TooManyEvents(_) => ErrorCode::BatchTooLarge,
        };
        ApiError::with_message(code, error.to_string())
    })?;
    let mut prepared =
        Prepared { slots: Vec::with_capacity(parsed.events.len()), drops: Vec::new(), events: Vec::new() };
    for raw in parsed.events {
        let slot = match raw {
            Err(error) => Slot::Rejected(error),
            Ok(raw) => {
                let write_key = raw.write_key.clone().or_else(|| header_write_key.map(str::to_owned));
                match write_key.as_deref().map(|key| catalog.source_by_write_key(key)) {
                    None => Slot::Rejected(EventError::new(
                        ErrorCode::MissingWriteKey.as_str(),
                        ErrorCode::MissingWriteKey.default_message(),
                    )),
                    Some(None) => Slot::Rejected(EventError::new(
                        ErrorCode::UnknownWriteKey.as_str(),
                        ErrorCode::UnknownWriteKey.default_message(),
                    )),
                    Some(Some(source)) => match segment::validate(raw, received_at) {
                        Err(error) => Slot::Rejected(error),
                        Ok(message) => match minimize::minimize(catalog, source, &message) {
                            Verdict::Reject { code, message } => {
                                Slot::Rejected(EventError::new(code, message))
                            }
                            Verdict::DropEvent(dropped) => {
                                for drop in dropped {
                                    metrics.count_drop(&source.key, &drop.path, drop.reason.as_str());
                                }
                                Slot::Dropped { source: source.key.clone() }
                            }
                            Verdict::Keep(minimized) => {
                                let event = ingest_event(
                                    catalog,
                                    vault,
                                    &source.key,
                                    &message,
                                    minimized,
                                    received_at,
                                );
                                for drop in &event.dropped {
                                    prepared.drops.push((
                                        source.key.clone(),
                                        drop.path.clone(),
                                        drop.reason.as_str(),
                                    ));
                                }
                                prepared.events.push(event);
                                Slot::Pending { index: prepared.events.len() - 1, source: source.key.clone() }
                            }
                        },
                    },
                }
            }
        };
        prepared.slots.push(slot);
    }
    if prepared.events.is_empty() && !prepared.slots.iter().any(|slot| matches!(slot, Slot::Dropped { .. })) {
        return Err(nothing_accepted(&prepared.slots, endpoint));
    }
    Ok(prepared)
}

/// The error for a request of which no event was accepted.
fn nothing_accepted(slots: &[Slot], endpoint: Endpoint) -> ApiError {
    let errors: Vec<&EventError> = slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Rejected(error) => Some(error),
            _ => None,
        })
        .collect();
    let all_for = |code: ErrorCode| errors.iter().all(|error| error.code == code.as_str());
    if all_for(ErrorCode::UnknownWriteKey) {
        return ApiError::new(ErrorCode::UnknownWriteKey);
    }
    if all_for(ErrorCode::MissingWriteKey) {
        return ApiError::new(ErrorCode::MissingWriteKey);
    }
    match (endpoint, errors.as_slice()) {
        (Endpoint::Single(_), [error]) if error.code == "event_too_large" => {
            ApiError::with_message(ErrorCode::EventTooLarge, error.message.clone())
        }
        (Endpoint::Single(_), [error]) => {
            ApiError::with_message(ErrorCode::InvalidEvent, error.message.clone())
                .details(json!({"reason": error.code}))
        }
        _ => ApiError::new(ErrorCode::NoValidEvents).details(json!({"rejected": rejected_list(slots)})),
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

/// Builds what the store needs: blind indexes of every identifier, the record and profile values as
/// JSON bytes (the store seals them), and the drops to count.
fn ingest_event(
    catalog: &Catalog,
    vault: &Vault,
    source: &str,
    message: &Message,
    minimized: minimize::Minimized,
    received_at: i64,
) -> IngestEvent {
    let claim = |kind: IdentifierKind, raw: &str| {
        kind.normalize(raw).ok().map(|value| IdentityClaim {
            blind: vault.blind(kind.as_str(), &value),
            kind,
            value,
        })
    };
    let mut identities: Vec<IdentityClaim> = Vec::with_capacity(2 + minimized.identifiers.len());
    if let Some(user_id) = message.user_id.as_deref().and_then(|id| claim(IdentifierKind::UserId, id)) {
        identities.push(user_id);
    }
    let alias_previous = match (message.kind, message.previous_id.as_deref()) {
        (MessageType::Alias, Some(previous)) => {
            match (claim(IdentifierKind::UserId, previous), claim(IdentifierKind::AnonymousId, previous)) {
                (Some(as_user), Some(as_anonymous)) => Some([as_user, as_anonymous]),
                _ => None,
            }
        }
        _ => None,
    };
    if alias_previous.is_none() {
        if let Some(anonymous) =
            message.anonymous_id.as_deref().and_then(|id| claim(IdentifierKind::AnonymousId, id))
        {
            identities.push(anonymous);
        }
        for (kind, raw) in &minimized.identifiers {
            if let Some(found) = claim(kind.clone(), raw)
                && !identities.iter().any(|known| known.blind == found.blind)
            {
                identities.push(found);
            }
        }
    }
    let message_id = message.message_id.clone().unwrap_or_else(random_message_id);
    IngestEvent {
        source: source.to_owned(),
        dedupe: vault.dedupe_key(source, &message_id),
        kind: message.kind,
        name: message.event.clone(),
        timestamp: message.timestamp,
        received_at,
        identities,
        alias_previous,
        record: serde_json::to_vec(&minimized.record).unwrap_or_default(),
        profile: minimized
            .profile
            .iter()
            .map(|(id, value)| {
                (catalog.property(*id).path.clone(), serde_json::to_vec(value).unwrap_or_default())
            })
            .collect(),
        dropped: minimized.dropped,
    }
}

/// Events without a messageId cannot be deduplicated; they get a random one.
fn random_message_id() -> String {
    tactful_vault::new_subject_id().replacen("sub_", "gen_", 1)
}

/// The answer to a request once the store committed its events.
pub fn answer(prepared: &Prepared, outcomes: &[IngestOutcome], metrics: &Metrics) -> Value {
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
                None => continue,
            },
            Slot::Dropped { source } => {
                dropped += 1;
                (source.as_str(), "dropped")
            }
            Slot::Rejected(_) => ("(unknown)", "rejected"),
        };
        metrics.events.get_or_create(&EventLabels { source: source.to_owned(), outcome }).inc();
    }
    for (source, path, reason) in &prepared.drops {
        metrics.count_drop(source, path, reason);
    }
    let mut answer = json!({"success": true, "stored": stored, "duplicates": duplicates, "dropped": dropped});
    let rejected = rejected_list(&prepared.slots);
    if !rejected.is_empty() {
        answer["rejected"] = Value::Array(rejected);
    }
    answer
}
