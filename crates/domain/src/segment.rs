//! The Segment HTTP tracking protocol as data: request bodies (single events and batch envelopes),
//! message validation, and timestamp correction. Pure functions over bytes, so they can be tested
//! and fuzzed without a server.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime};

/// Largest single event, in bytes of JSON (Segment's limit).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Largest request body, in bytes of JSON after decompression (Segment's limit).
pub const MAX_REQUEST_BYTES: usize = 500 * 1024;
/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 2_500;
/// Longest messageId kept for deduplication.
pub const MAX_MESSAGE_ID_BYTES: usize = 256;

/// The kind of a Segment message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Identify => "identify",
            MessageType::Track => "track",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }

    pub fn parse(text: &str) -> Option<MessageType> {
        Some(match text {
            "identify" => MessageType::Identify,
            "track" => MessageType::Track,
            "page" => MessageType::Page,
            "screen" => MessageType::Screen,
            "group" => MessageType::Group,
            "alias" => MessageType::Alias,
            _ => return None,
        })
    }
}

/// What an ingestion path accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/track`, `/v1/t`, … : one message of a known type.
    Single(MessageType),
    /// `/v1/batch`, `/v1/import`, `/v1/b`: a batch envelope.
    Batch,
}

/// A problem with a whole request body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body nests JSON deeper than {0} levels")]
    TooDeep(usize),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("a batch needs a \"batch\" array of events")]
    MissingBatch,
    #[error("a batch holds at most {MAX_BATCH_EVENTS} events; this one has {0}")]
    TooManyEvents(usize),
    #[error("a batch must hold at least one event")]
    EmptyBatch,
    /// A field of the batch envelope that every event would inherit is of the wrong type.
    #[error("{0}")]
    InvalidEnvelope(&'static str),
}

impl BodyError {
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::InvalidJson(_) => "invalid_json",
            BodyError::TooDeep(_) => "json_too_deep",
            BodyError::NotAnObject => "not_an_object",
            BodyError::MissingBatch => "missing_batch",
            BodyError::TooManyEvents(_) => "batch_too_large",
            BodyError::EmptyBatch => "empty_batch",
            BodyError::InvalidEnvelope(_) => "invalid_request",
        }
    }
}

/// A problem with one event; other events of the same batch are judged on their own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub code: &'static str,
    pub message: String,
}

impl EventError {
    pub fn new(code: &'static str, message: impl Into<String>) -> EventError {
        EventError { code, message: message.into() }
    }
}

/// Deepest nesting accepted anywhere in a body. Real events nest a handful of levels; this bound
/// keeps hostile input from costing stack or time.
pub const MAX_DEPTH: usize = 32;

/// A request body split into its events, each parsed on its own.
#[derive(Debug)]
pub struct Body {
    /// `writeKey` of the envelope (or of the single event).
    pub write_key: Option<String>,
    pub events: Vec<Result<RawEvent, EventError>>,
}

/// One event as sent, before validation, with what it inherits from its envelope.
#[derive(Debug)]
pub struct RawEvent {
    pub object: Map<String, Value>,
    pub write_key: Option<String>,
    /// The type implied by the path, for single-event endpoints.
    pub implied_type: Option<MessageType>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default, deserialize_with = "keep_null")]
    context: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    integrations: Option<Value>,
    #[serde(default, rename = "sentAt", deserialize_with = "keep_null")]
    sent_at: Option<Value>,
    #[serde(default, rename = "writeKey", deserialize_with = "keep_null")]
    write_key: Option<Value>,
}

/// An envelope field as sent: `null` is kept (and refused), only a field left out is `None`.
fn keep_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Splits a body into events. Errors that concern the whole body (not JSON, no batch, too many
/// events) fail the request; errors of one event stay with that event.
pub fn parse_body(endpoint: Endpoint, body: &[u8]) -> Result<Body, BodyError> {
    check_depth(body)?;
    match endpoint {
        Endpoint::Single(kind) => {
            let object = parse_object(body)?;
            let write_key = string_field(&object, "writeKey");
            let event = if body.len() > MAX_EVENT_BYTES {
                Err(too_large(body.len()))
            } else if object.get("writeKey").is_some_and(|key| !key.is_string()) {
                Err(EventError::new("invalid_write_key", "an event's writeKey is a string"))
            } else {
                Ok(RawEvent { object, write_key: write_key.clone(), implied_type: Some(kind) })
            };
            Ok(Body { write_key, events: vec![event] })
        }
        Endpoint::Batch => {
            let text =
                std::str::from_utf8(body).map_err(|error| BodyError::InvalidJson(error.to_string()))?;
            // serde would accept a JSON array for a struct; a batch must be an object.
            if !text.trim_start().starts_with('{') {
                return Err(shape_error(text));
            }
            let envelope: Envelope<'_> = match serde_json::from_str(text) {
                Ok(envelope) => envelope,
                Err(error) if error.is_data() => return Err(shape_error(text)),
                Err(error) => return Err(BodyError::InvalidJson(error.to_string())),
            };
            check_envelope(&envelope)?;
            let items = envelope.batch.ok_or(BodyError::MissingBatch)?;
            if items.is_empty() {
                return Err(BodyError::EmptyBatch);
            }
            if items.len() > MAX_BATCH_EVENTS {
                return Err(BodyError::TooManyEvents(items.len()));
            }
            let envelope_key = envelope.write_key.as_ref().and_then(Value::as_str).map(str::to_owned);
            let events = items
                .into_iter()
                .map(|item| {
                    if item.get().len() > MAX_EVENT_BYTES {
                        return Err(too_large(item.get().len()));
                    }
                    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(item.get()) else {
                        return Err(EventError::new(
                            "not_an_object",
                            "each batch item must be a JSON object",
                        ));
                    };
                    merge_envelope(&mut object, "context", envelope.context.as_ref());
                    merge_envelope(&mut object, "integrations", envelope.integrations.as_ref());
                    if !object.contains_key("sentAt")
                        && let Some(sent_at) = &envelope.sent_at
                    {
                        object.insert("sentAt".into(), sent_at.clone());
                    }
                    if object.get("writeKey").is_some_and(|key| !key.is_string()) {
                        return Err(EventError::new("invalid_write_key", "an event's writeKey is a string"));
                    }
                    let write_key = string_field(&object, "writeKey").or_else(|| envelope_key.clone());
                    Ok(RawEvent { object, write_key, implied_type: None })
                })
                .collect();
            Ok(Body { write_key: envelope_key, events })
        }
    }
}

fn too_large(bytes: usize) -> EventError {
    EventError::new(
        "event_too_large",
        format!("an event may be at most {MAX_EVENT_BYTES} bytes; this one is {bytes}"),
    )
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(BodyError::NotAnObject),
        Err(error) => Err(BodyError::InvalidJson(error.to_string())),
    }
}

/// Tells apart "not an object" from "`batch` is not an array" for a clear message.
/// What the envelope gives every event must be what the events themselves would carry, even when
/// every event has its own: a wrong type says the sender meant something else.
fn check_envelope(envelope: &Envelope<'_>) -> Result<(), BodyError> {
    let object_or_absent = |value: &Option<Value>| value.as_ref().is_none_or(Value::is_object);
    if !object_or_absent(&envelope.context) || !object_or_absent(&envelope.integrations) {
        return Err(BodyError::InvalidEnvelope("a batch's context and integrations are JSON objects"));
    }
    match &envelope.sent_at {
        None => {}
        Some(Value::String(text)) if parse_time(text).is_some() => {}
        Some(_) => return Err(BodyError::InvalidEnvelope("a batch's sentAt is an ISO 8601 date-time")),
    }
    if envelope.write_key.as_ref().is_some_and(|key| !key.is_string()) {
        return Err(BodyError::InvalidEnvelope("a batch's writeKey is a string"));
    }
    Ok(())
}

fn shape_error(text: &str) -> BodyError {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => BodyError::MissingBatch,
        Ok(_) => BodyError::NotAnObject,
        Err(error) => BodyError::InvalidJson(error.to_string()),
    }
}

/// Rejects bodies nesting deeper than [`MAX_DEPTH`] before any parser recurses into them. Counting
/// brackets outside strings is enough: the JSON parser rejects whatever else is wrong.
fn check_depth(body: &[u8]) -> Result<(), BodyError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(BodyError::TooDeep(MAX_DEPTH));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Envelope `context` and `integrations` apply to every event; the event's own keys win.
fn merge_envelope(object: &mut Map<String, Value>, key: &str, envelope: Option<&Value>) {
    let Some(Value::Object(shared)) = envelope else { return };
    match object.get_mut(key) {
        Some(Value::Object(own)) => {
            for (name, value) in shared {
                own.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        Some(_) => {}
        None => {
            object.insert(key.into(), Value::Object(shared.clone()));
        }
    }
}

fn string_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// A validated message: type and ids checked, time corrected.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: MessageType,
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// For `alias`: the id being merged into `user_id`.
    pub previous_id: Option<String>,
    /// For `track`: the event name.
    pub event: Option<String>,
    /// When it happened, corrected for the sender's clock skew (Unix milliseconds).
    pub timestamp: i64,
    /// The whole object as sent, for minimization.
    pub object: Map<String, Value>,
}

/// Validates one event, using `received_at` (Unix milliseconds) to correct its clock.
pub fn validate(raw: RawEvent, received_at: i64) -> Result<Message, EventError> {
    let RawEvent { mut object, implied_type, .. } = raw;
    let kind = match (implied_type, object.get("type")) {
        (Some(kind), _) => kind,
        (None, Some(Value::String(text))) => MessageType::parse(text).ok_or_else(|| {
            EventError::new(
                "invalid_type",
                format!("type {text:?} is not one of identify, track, page, screen, group, alias"),
            )
        })?,
        (None, Some(_)) => return Err(EventError::new("invalid_type", "type must be a string")),
        (None, None) => return Err(EventError::new("missing_type", "each batch item needs a \"type\"")),
    };
    let user_id = id_field(&object, "userId")?;
    let anonymous_id = id_field(&object, "anonymousId")?;
    let previous_id = id_field(&object, "previousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(EventError::new("missing_id", "an event needs a userId or an anonymousId"));
    }
    let event = match kind {
        MessageType::Track => match object.get("event") {
            Some(Value::String(name)) if !name.trim().is_empty() => Some(name.clone()),
            _ => {
                return Err(EventError::new(
                    "missing_event",
                    "a track call needs a non-empty \"event\" name",
                ));
            }
        },
        _ => None,
    };
    if kind == MessageType::Alias && (previous_id.is_none() || user_id.is_none()) {
        return Err(EventError::new("missing_id", "an alias call needs both previousId and userId"));
    }
    if kind == MessageType::Group && id_field(&object, "groupId")?.is_none() {
        return Err(EventError::new("missing_id", "a group call needs a groupId"));
    }
    let message_id = match object.get("messageId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.len() <= MAX_MESSAGE_ID_BYTES => Some(id.clone()),
        Some(Value::String(_)) => {
            return Err(EventError::new(
                "invalid_message_id",
                format!("messageId may be at most {MAX_MESSAGE_ID_BYTES} bytes"),
            ));
        }
        Some(_) => return Err(EventError::new("invalid_message_id", "messageId must be a string")),
    };
    let timestamp = corrected_timestamp(&object, received_at)?;
    if kind == MessageType::Identify {
        lift_context_traits(&mut object);
    }
    Ok(Message { kind, message_id, user_id, anonymous_id, previous_id, event, timestamp, object })
}

/// RudderStack's SDKs send identify traits in `context.traits` (the Python SDK only there), so they
/// become the call's `traits`, where the catalog, minimization and consent judge them like any
/// other; a trait present in both places keeps its top-level value.
fn lift_context_traits(object: &mut Map<String, Value>) {
    if object.get("traits").is_some_and(|own| !own.is_object()) {
        return;
    }
    let Some(Value::Object(context)) = object.get_mut("context") else { return };
    if !context.get("traits").is_some_and(Value::is_object) {
        return;
    }
    let Some(Value::Object(lifted)) = context.remove("traits") else { return };
    if let Value::Object(traits) = object.entry("traits").or_insert_with(|| Value::Object(Map::new())) {
        for (name, value) in lifted {
            traits.entry(name).or_insert(value);
        }
    }
}

/// Ids may be strings or numbers (some SDKs send numeric user ids); an empty string counts as absent.
fn id_field(object: &Map<String, Value>, key: &str) -> Result<Option<String>, EventError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) if text.len() > crate::identity::MAX_IDENTIFIER_BYTES => {
            Err(EventError::new(
                "invalid_id",
                format!("{key} may be at most {} bytes", crate::identity::MAX_IDENTIFIER_BYTES),
            ))
        }
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(EventError::new("invalid_id", format!("{key} must be a string or a number"))),
    }
}

/// Segment's rule: `timestamp = receivedAt − (sentAt − originalTimestamp)` when the sender said
/// both when the event happened and when it sent it, so a device clock that is off does not move
/// events in time. `timestamp` stands in for `originalTimestamp` when only it is given. Nothing
/// happened after it arrived: a time in the future (a wrong clock, or a client claiming year 9999
/// so that the event outlives every retention period) is taken as the time it was received.
fn corrected_timestamp(object: &Map<String, Value>, received_at: i64) -> Result<i64, EventError> {
    let original = time_field(object, "originalTimestamp")?;
    let stated = time_field(object, "timestamp")?;
    let sent_at = time_field(object, "sentAt")?;
    let corrected = match (original.or(stated), sent_at) {
        (Some(original), Some(sent_at)) => received_at.saturating_sub(sent_at.saturating_sub(original)),
        (Some(original), None) => original,
        (None, _) => received_at,
    };
    Ok(corrected.min(received_at))
}

fn time_field(object: &Map<String, Value>, key: &str) -> Result<Option<i64>, EventError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_time(text).map(Some).ok_or_else(|| {
            EventError::new("invalid_timestamp", format!("{key} {text:?} is not an ISO 8601 date-time"))
        }),
        Some(_) => Err(EventError::new("invalid_timestamp", format!("{key} must be an ISO 8601 string"))),
    }
}

/// Parses an ISO 8601 / RFC 3339 date-time into Unix milliseconds; a time without offset is UTC.
pub fn parse_time(text: &str) -> Option<i64> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .or_else(|_| PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(PrimitiveDateTime::assume_utc))
        .ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats Unix milliseconds as RFC 3339 (UTC), the way Segment writes times.
pub fn format_time(millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
