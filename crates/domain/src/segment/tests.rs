//! The tracking protocol's edge cases, each as an SDK or a hostile client would send it.

use super::*;
use serde_json::json;

const RECEIVED: i64 = 1_700_000_000_000;

fn body(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn single(kind: MessageType, value: Value) -> Result<Message, EventError> {
    let mut parsed = parse_body(Endpoint::Single(kind), &body(value)).expect("body parses");
    validate(parsed.events.remove(0).expect("event parses"), RECEIVED)
}

fn error_code(result: Result<Message, EventError>) -> &'static str {
    result.expect_err("should be refused").code
}

#[test]
fn a_track_call_validates() {
    let message = single(
        MessageType::Track,
        json!({"userId": "u1", "event": "Product Viewed", "messageId": "m1", "properties": {"product_id": "p1"}}),
    )
    .unwrap();
    assert_eq!(message.kind, MessageType::Track);
    assert_eq!(message.event.as_deref(), Some("Product Viewed"));
    assert_eq!(message.message_id.as_deref(), Some("m1"));
    assert_eq!(message.timestamp, RECEIVED);
}

#[test]
fn the_path_decides_the_type_of_a_single_event() {
    let message = single(MessageType::Page, json!({"type": "track", "anonymousId": "a1"})).unwrap();
    assert_eq!(message.kind, MessageType::Page);
}

#[test]
fn ids_are_required_and_typed() {
    assert_eq!(error_code(single(MessageType::Track, json!({"event": "x"}))), "missing_id");
    assert_eq!(error_code(single(MessageType::Track, json!({"userId": "", "event": "x"}))), "missing_id");
    assert_eq!(
        error_code(single(MessageType::Track, json!({"userId": {"a": 1}, "event": "x"}))),
        "invalid_id"
    );
    assert_eq!(single(MessageType::Identify, json!({"userId": 42})).unwrap().user_id.as_deref(), Some("42"));
    assert_eq!(error_code(single(MessageType::Track, json!({"userId": "u"}))), "missing_event");
    assert_eq!(error_code(single(MessageType::Alias, json!({"userId": "u"}))), "missing_id");
    assert_eq!(error_code(single(MessageType::Group, json!({"userId": "u"}))), "missing_id");
    assert_eq!(
        error_code(single(MessageType::Track, json!({"userId": "u", "event": "x", "messageId": 7}))),
        "invalid_message_id"
    );
    let long = "x".repeat(600);
    assert_eq!(error_code(single(MessageType::Identify, json!({"userId": long}))), "invalid_id");
}

#[test]
fn clock_skew_is_corrected() {
    // The device clock is an hour fast: it says it sent at 13:00:05 what happened at 13:00:00.
    let message = single(
        MessageType::Track,
        json!({"userId": "u", "event": "x",
               "originalTimestamp": "2023-11-14T23:13:15.000Z", "sentAt": "2023-11-14T23:13:20.000Z"}),
    )
    .unwrap();
    assert_eq!(message.timestamp, RECEIVED - 5_000);
    // Only a timestamp: taken as stated (server-side libraries, imports).
    let message =
        single(MessageType::Track, json!({"userId": "u", "event": "x", "timestamp": "2020-01-01T00:00:00Z"}))
            .unwrap();
    assert_eq!(message.timestamp, 1_577_836_800_000);
    // A timestamp without offset is UTC; an offset is honoured.
    assert_eq!(parse_time("2020-01-01T00:00:00"), Some(1_577_836_800_000));
    assert_eq!(parse_time("2020-01-01T01:00:00+01:00"), Some(1_577_836_800_000));
    assert_eq!(parse_time("2020-01-01T00:00:00.123456+00:00"), Some(1_577_836_800_123));
    assert_eq!(
        error_code(single(
            MessageType::Track,
            json!({"userId": "u", "event": "x", "timestamp": "yesterday"})
        )),
        "invalid_timestamp"
    );
    assert_eq!(format_time(1_577_836_800_000), "2020-01-01T00:00:00Z");
}

#[test]
fn batch_envelopes_merge_into_events() {
    let parsed = parse_body(
        Endpoint::Batch,
        &body(json!({
            "writeKey": "wk_envelope",
            "sentAt": "2023-11-14T22:13:20.000Z",
            "context": {"library": {"name": "analytics-python"}, "ip": "192.0.2.1"},
            "integrations": {"All": true},
            "batch": [
                {"type": "track", "userId": "u1", "event": "x", "context": {"ip": "198.51.100.7"}},
                {"type": "identify", "userId": "u2", "writeKey": "wk_item"}
            ]
        })),
    )
    .unwrap();
    assert_eq!(parsed.write_key.as_deref(), Some("wk_envelope"));
    let first = parsed.events[0].as_ref().unwrap();
    assert_eq!(first.object["context"]["ip"], "198.51.100.7", "the event's own context wins");
    assert_eq!(first.object["context"]["library"]["name"], "analytics-python");
    assert_eq!(first.object["integrations"]["All"], true);
    assert_eq!(first.object["sentAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(first.write_key.as_deref(), Some("wk_envelope"));
    let second = parsed.events[1].as_ref().unwrap();
    assert_eq!(second.write_key.as_deref(), Some("wk_item"), "a per-item writeKey wins");
    assert_eq!(second.object["context"]["ip"], "192.0.2.1");
}

#[test]
fn identify_traits_sent_in_context_become_the_calls_traits() {
    let lifted = single(
        MessageType::Identify,
        json!({"userId": "u1", "traits": {"name": "Top"},
               "context": {"traits": {"name": "Inner", "email": "a@example.com"}, "ip": "192.0.2.1"}}),
    )
    .unwrap();
    assert_eq!(lifted.object["traits"], json!({"name": "Top", "email": "a@example.com"}));
    assert_eq!(lifted.object["context"], json!({"ip": "192.0.2.1"}));
    let only_context = single(
        MessageType::Identify,
        json!({"userId": "u1", "context": {"traits": {"email": "b@example.com"}}}),
    )
    .unwrap();
    assert_eq!(only_context.object["traits"]["email"], "b@example.com");
    // A track call's context.traits is the SDK's cache of who the person is, not a change to them.
    let track = single(
        MessageType::Track,
        json!({"userId": "u1", "event": "x", "context": {"traits": {"email": "c@example.com"}}}),
    )
    .unwrap();
    assert!(track.object.get("traits").is_none());
}

#[test]
fn whole_body_problems_fail_the_request() {
    let check = |endpoint: Endpoint, bytes: &[u8], code: &str| {
        let error = parse_body(endpoint, bytes).expect_err("refused");
        assert_eq!(error.code(), code, "{}", String::from_utf8_lossy(bytes));
    };
    let track = Endpoint::Single(MessageType::Track);
    check(track, b"{\"userId\": ", "invalid_json");
    check(track, b"[1, 2]", "not_an_object");
    check(track, b"\"text\"", "not_an_object");
    check(track, b"{\"userId\": \"\xff\xfe\"}", "invalid_json");
    check(Endpoint::Batch, b"{\"batch\": {}}", "missing_batch");
    check(Endpoint::Batch, b"{}", "missing_batch");
    check(Endpoint::Batch, b"{\"batch\": []}", "empty_batch");
    check(Endpoint::Batch, b"[]", "not_an_object");
    check(Endpoint::Batch, b"\xff", "invalid_json");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    check(track, deep.as_bytes(), "json_too_deep");
    check(Endpoint::Batch, format!("{{\"batch\": [{{\"a\": {deep}}}]}}").as_bytes(), "json_too_deep");
    let many: Vec<Value> = (0..2_501).map(|i| json!({"type": "track", "userId": i, "event": "x"})).collect();
    check(Endpoint::Batch, &body(json!({"batch": many})), "batch_too_large");
}

#[test]
fn brackets_inside_strings_do_not_count_as_depth() {
    let text = format!("{{\"userId\": \"u\", \"note\": \"{}\"}}", "[{".repeat(1_000));
    assert!(parse_body(Endpoint::Single(MessageType::Identify), text.as_bytes()).is_ok());
}

#[test]
fn one_bad_event_does_not_spoil_the_batch() {
    let big = "x".repeat(MAX_EVENT_BYTES);
    let parsed = parse_body(
        Endpoint::Batch,
        &body(json!({"batch": [
            {"type": "track", "userId": "u1", "event": "x"},
            {"type": "track", "userId": "u1", "event": "x", "properties": {"blob": big}},
            "not an object",
            {"type": "teleport", "userId": "u1"},
            {"userId": "u1"}
        ]})),
    )
    .unwrap();
    let codes: Vec<&str> = parsed
        .events
        .into_iter()
        .map(|event| match event.and_then(|raw| validate(raw, RECEIVED)) {
            Ok(_) => "ok",
            Err(error) => error.code,
        })
        .collect();
    assert_eq!(codes, ["ok", "event_too_large", "not_an_object", "invalid_type", "missing_type"]);
}

#[test]
fn an_oversized_single_event_is_refused() {
    let big = "x".repeat(MAX_EVENT_BYTES);
    let parsed = parse_body(
        Endpoint::Single(MessageType::Track),
        &body(json!({"userId": "u", "event": "x", "p": big})),
    )
    .unwrap();
    assert_eq!(parsed.events[0].as_ref().expect_err("too large").code, "event_too_large");
}

#[test]
fn an_event_never_happens_after_it_arrived() {
    let received = 1_700_000_000_000;
    let at = |body: Value| {
        let raw = RawEvent {
            object: body.as_object().unwrap().clone(),
            write_key: None,
            implied_type: Some(MessageType::Track),
        };
        validate(raw, received).unwrap().timestamp
    };
    let far = json!({"event": "E", "anonymousId": "a", "timestamp": "9999-12-31T23:59:59Z"});
    assert_eq!(at(far), received, "year 9999 would outlive every retention period");
    let skewed = json!({"event": "E", "anonymousId": "a", "originalTimestamp": "2023-11-14T22:14:00Z",
                        "sentAt": "2023-11-14T22:13:00Z"});
    assert_eq!(at(skewed), received, "sent before it happened: taken as received");
    let past = json!({"event": "E", "anonymousId": "a", "timestamp": "2023-11-01T00:00:00Z"});
    assert!(at(past) < received, "a past time stays");
}

#[test]
fn a_batch_envelope_or_event_field_of_the_wrong_type_is_refused() {
    let batch = |envelope: &str| {
        let body = format!(
            r#"{{"batch": [{{"type": "track", "userId": "u-1", "event": "E", "sentAt": "2023-11-14T22:13:20Z"}}]{envelope}}}"#
        );
        parse_body(Endpoint::Batch, body.as_bytes())
    };
    assert!(batch("").is_ok());
    assert!(batch(r#", "sentAt": "2023-11-14T22:13:20Z", "context": {}"#).is_ok());
    for wrong in [
        r#", "sentAt": null"#,
        r#", "sentAt": 5"#,
        r#", "sentAt": "yesterday""#,
        r#", "context": []"#,
        r#", "integrations": null"#,
        r#", "writeKey": 7"#,
    ] {
        assert!(matches!(batch(wrong), Err(BodyError::InvalidEnvelope(_))), "{wrong}");
    }
    let body = parse_body(
        Endpoint::Batch,
        br#"{"batch": [{"type": "track", "userId": "u-1", "event": "E", "writeKey": 7}]}"#,
    )
    .unwrap();
    assert!(body.events[0].as_ref().is_err_and(|error| error.code == "invalid_write_key"));
}
