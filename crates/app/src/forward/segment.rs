//! The Segment-protocol forwarder: what one destination may receive goes on as `POST {url}/v1/batch`
//! with that endpoint's own write key, so Tactful can sit in front of an existing Segment,
//! RudderStack or PostHog pipeline (or another Tactful) as its privacy firewall.
//!
//! The protocol has no deletion call over a write key. An erasure or restriction therefore goes two
//! ways: always as a notice event on the same protocol (so the endpoint acknowledges it, and whatever
//! reacts to events there can act on it), and, when the destination names one, as a regulation on
//! the pipeline's own deletion API (Segment's Public API `POST /regulations`, RudderStack's
//! `POST /v2/regulations`), which is what actually deletes and suppresses there.

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tactful_domain::secret::Secret;
use tactful_domain::segment::{MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::sink::{Forget, Forwarded, Recipient, Removal, Sink, SinkError};
use crate::outbound::{Outbound, Reply};

/// The event an erasure is announced with on the protocol itself.
pub const ERASURE_EVENT: &str = "Personal Data Erasure Requested";
/// The event a restriction is announced with on the protocol itself.
pub const RESTRICTION_EVENT: &str = "Personal Data Processing Restricted";
/// Room kept in a request for the envelope around the events (`{"batch":[…],"sentAt":"…"}`).
const ENVELOPE_BYTES: usize = 128;

pub use tactful_domain::catalog::{RegulationApi, Regulations};

/// A Segment-compatible endpoint that receives events over the tracking protocol.
#[derive(Debug, Clone)]
pub struct SegmentSink {
    batch_url: String,
    authorization: String,
    regulations: Option<Regulations>,
    outbound: Outbound,
}

impl SegmentSink {
    /// A sink posting to `{url}/v1/batch` with `write_key` as the Basic user name, as SDKs do.
    pub fn new(url: &str, write_key: &Secret, outbound: Outbound) -> SegmentSink {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", write_key.expose()));
        SegmentSink {
            batch_url: format!("{}/v1/batch", url.trim_end_matches('/')),
            authorization: format!("Basic {credentials}"),
            regulations: None,
            outbound,
        }
    }

    /// Also sends every erasure and restriction to the pipeline's deletion API.
    pub fn with_regulations(mut self, regulations: Regulations) -> SegmentSink {
        self.regulations = Some(regulations);
        self
    }

    /// Posts `messages` in as few requests as Segment's limits allow (500 KB, 2,500 events).
    async fn post_all(&self, messages: Vec<Vec<u8>>) -> Result<(), SinkError> {
        for chunk in chunks(messages) {
            let mut body = Vec::with_capacity(chunk.iter().map(Vec::len).sum::<usize>() + ENVELOPE_BYTES);
            body.extend_from_slice(b"{\"batch\":[");
            for (index, message) in chunk.iter().enumerate() {
                if index > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(message);
            }
            body.extend_from_slice(b"],\"sentAt\":");
            body.extend_from_slice(json!(rfc3339(OffsetDateTime::now_utc())).to_string().as_bytes());
            body.push(b'}');
            let reply = self
                .outbound
                .post_json(&self.batch_url, &[("authorization", self.authorization.clone())], body)
                .await;
            judge(reply)?;
        }
        Ok(())
    }

    async fn regulate(&self, regulations: &Regulations, forget: &Forget) -> Result<(), SinkError> {
        let (url, body) = regulation_request(regulations, forget);
        let reply = self
            .outbound
            .post_json(&url, &[("authorization", format!("Bearer {}", regulations.token.expose()))], body)
            .await;
        judge(reply)
    }
}

#[async_trait]
impl Sink for SegmentSink {
    async fn deliver(&self, batch: &[Forwarded]) -> Result<(), SinkError> {
        let mut messages = Vec::with_capacity(batch.len());
        for event in batch {
            let message = serde_json::to_vec(&message(event)).expect("JSON values serialize");
            if message.len() > MAX_EVENT_BYTES {
                return Err(SinkError {
                    retryable: false,
                    message: format!(
                        "event {} is {} bytes, over the protocol's {MAX_EVENT_BYTES}",
                        event.message_id,
                        message.len()
                    ),
                });
            }
            messages.push(message);
        }
        self.post_all(messages).await
    }

    async fn forget(&self, forget: &Forget) -> Result<(), SinkError> {
        let notice = serde_json::to_vec(&notice(forget)).expect("JSON values serialize");
        self.post_all(vec![notice]).await?;
        if let Some(regulations) = &self.regulations {
            self.regulate(regulations, forget).await?;
        }
        Ok(())
    }
}

/// One event as a Segment message: the person as the destination may know them (its own userId
/// when declared, else the destination's token), properties or traits, and the event's messageId.
fn message(event: &Forwarded) -> Value {
    let mut message = Map::new();
    message.insert("type".into(), json!(event.kind));
    message.insert("messageId".into(), json!(event.message_id));
    message.insert("timestamp".into(), json!(rfc3339(event.timestamp)));
    name_person(&mut message, &event.person);
    match event.kind.as_str() {
        "identify" | "group" => {
            let mut traits = event.properties.clone();
            if event.kind == "identify"
                && let Some(email) = first(&event.person, "email")
            {
                traits.entry("email").or_insert_with(|| json!(email));
            }
            message.insert("traits".into(), Value::Object(traits));
        }
        kind => {
            if let Some(name) = &event.event {
                message.insert(if kind == "track" { "event" } else { "name" }.into(), json!(name));
            }
            message.insert("properties".into(), Value::Object(event.properties.clone()));
        }
    }
    Value::Object(message)
}

/// The erasure or restriction as an event on the protocol: every identifier the destination was
/// given, the request as the idempotency key (a repeat is deduplicated by the endpoint).
fn notice(forget: &Forget) -> Value {
    let (event, removal) = match forget.removal {
        Removal::Erase => (ERASURE_EVENT, "erase"),
        Removal::Restrict => (RESTRICTION_EVENT, "restrict"),
    };
    let mut message = Map::new();
    message.insert("type".into(), json!("track"));
    message.insert("event".into(), json!(event));
    message.insert(
        "messageId".into(),
        json!(format!("tactful-{removal}-{}-{}", forget.request, forget.person.token)),
    );
    message.insert("timestamp".into(), json!(rfc3339(OffsetDateTime::now_utc())));
    name_person(&mut message, &forget.person);
    message.insert(
        "properties".into(),
        json!({"request": forget.request, "removal": removal, "token": forget.person.token,
               "identifiers": forget.person.identifiers}),
    );
    Value::Object(message)
}

/// `userId` (the declared one, else the token) and `anonymousId` when the destination may know it.
fn name_person(message: &mut Map<String, Value>, person: &Recipient) {
    let user = first(person, "user_id").unwrap_or(&person.token);
    message.insert("userId".into(), json!(user));
    if let Some(anonymous) = first(person, "anonymous_id") {
        message.insert("anonymousId".into(), json!(anonymous));
    }
}

fn first<'a>(person: &'a Recipient, kind: &str) -> Option<&'a String> {
    person.identifiers.get(kind).and_then(|values| values.first())
}

/// The regulation call for `forget` on the pipeline's deletion API: its URL and JSON body. Segment
/// regulates by userId only; RudderStack takes userId, email and phone.
fn regulation_request(regulations: &Regulations, forget: &Forget) -> (String, Vec<u8>) {
    let person = &forget.person;
    let mut users: Vec<String> = person.identifiers.get("user_id").cloned().unwrap_or_default();
    if users.is_empty() {
        users.push(person.token.clone());
    }
    let base = regulations.url.trim_end_matches('/');
    let (url, body) = match regulations.api {
        RegulationApi::Segment => {
            let kind = match forget.removal {
                Removal::Erase => "SUPPRESS_WITH_DELETE",
                Removal::Restrict => "SUPPRESS_ONLY",
            };
            (
                format!("{base}/regulations"),
                json!({"regulationType": kind, "subjectType": "USER_ID", "subjectIds": users}),
            )
        }
        RegulationApi::RudderStack => {
            let kind = match forget.removal {
                Removal::Erase => "suppress_with_delete",
                Removal::Restrict => "suppress",
            };
            let mut entries: Vec<Value> = users.iter().map(|user| json!({"userId": user})).collect();
            for (kind, field) in [("email", "email"), ("phone", "phone")] {
                for value in person.identifiers.get(kind).into_iter().flatten() {
                    entries.push(json!({ field: value }));
                }
            }
            (format!("{base}/v2/regulations"), json!({"regulationType": kind, "users": entries}))
        }
    };
    (url, serde_json::to_vec(&body).expect("JSON values serialize"))
}

/// Splits serialized messages into requests within the protocol's size and count limits, in order.
fn chunks(messages: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut chunks = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut bytes = ENVELOPE_BYTES;
    for message in messages {
        let size = message.len() + 1;
        if !current.is_empty() && (bytes + size > MAX_REQUEST_BYTES || current.len() == MAX_BATCH_EVENTS) {
            chunks.push(std::mem::take(&mut current));
            bytes = ENVELOPE_BYTES;
        }
        bytes += size;
        current.push(message);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// A reply as the pipeline reads it: 2xx taken; no answer, 408, 429 and 5xx worth another try;
/// any other refusal final.
fn judge(reply: Result<Reply, String>) -> Result<(), SinkError> {
    match reply {
        Ok(reply) if (200..300).contains(&reply.status) => Ok(()),
        Ok(reply) => Err(SinkError {
            retryable: matches!(reply.status, 408 | 429) || reply.status >= 500,
            message: format!("HTTP {}: {}", reply.status, reply.body.chars().take(200).collect::<String>()),
        }),
        Err(error) => Err(SinkError { retryable: true, message: error }),
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn person(identifiers: &[(&str, &str)]) -> Recipient {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (kind, value) in identifiers {
            map.entry((*kind).to_owned()).or_default().push((*value).to_owned());
        }
        Recipient { token: "tok_1".into(), identifiers: map }
    }

    fn event(kind: &str, person: Recipient) -> Forwarded {
        Forwarded {
            message_id: "m-1".into(),
            kind: kind.into(),
            event: Some("Order Completed".into()),
            timestamp: OffsetDateTime::UNIX_EPOCH,
            person,
            properties: json!({"revenue": 12}).as_object().unwrap().clone(),
            purposes: vec!["analytics.reporting".into()],
        }
    }

    #[test]
    fn a_destination_that_may_know_no_one_gets_its_token_as_the_user() {
        let message = message(&event("track", person(&[])));
        assert_eq!(message["userId"], "tok_1");
        assert!(message.get("anonymousId").is_none());
        assert_eq!(message["event"], "Order Completed");
        assert_eq!(message["properties"], json!({"revenue": 12}));
        assert_eq!(message["messageId"], "m-1");
    }

    #[test]
    fn declared_identifiers_name_the_person_and_an_identify_carries_traits() {
        let known = person(&[("user_id", "u-7"), ("anonymous_id", "a-7"), ("email", "e@x.example")]);
        let message = message(&event("identify", known));
        assert_eq!(message["userId"], "u-7");
        assert_eq!(message["anonymousId"], "a-7");
        assert_eq!(message["traits"], json!({"revenue": 12, "email": "e@x.example"}));
        assert!(message.get("properties").is_none());
    }

    #[test]
    fn batches_keep_within_the_protocols_limits_and_order() {
        let big = vec![b'x'; 30_000];
        let split = chunks(vec![big; 40]);
        assert!(split.len() >= 3);
        assert!(
            split.iter().all(|chunk| chunk.iter().map(|m| m.len() + 1).sum::<usize>() + ENVELOPE_BYTES
                <= MAX_REQUEST_BYTES)
        );
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), 40);
        let small = chunks((0..5_001).map(|index| index.to_string().into_bytes()).collect());
        assert_eq!(small.iter().map(Vec::len).collect::<Vec<_>>(), [2_500, 2_500, 1]);
        assert_eq!(small[2][0], b"5000");
    }

    #[test]
    fn regulations_name_every_identifier_the_api_takes() {
        let forget = Forget {
            request: "req_1".into(),
            removal: Removal::Erase,
            person: person(&[("user_id", "u-7"), ("email", "e@x.example")]),
        };
        let segment = Regulations {
            api: RegulationApi::Segment,
            url: "https://api.example/".into(),
            token: Secret::new("t"),
        };
        let (url, body) = regulation_request(&segment, &forget);
        assert_eq!(url, "https://api.example/regulations");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": ["u-7"]})
        );
        let rudder = Regulations { api: RegulationApi::RudderStack, ..segment };
        let (url, body) = regulation_request(&rudder, &forget);
        assert_eq!(url, "https://api.example/v2/regulations");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"regulationType": "suppress_with_delete", "users": [{"userId": "u-7"}, {"email": "e@x.example"}]})
        );
    }
}
