//! The RudderStack SDKs as recorded on the wire (`tests/fixtures/sdk/rudder_*.json`), replayed
//! unchanged: what they send must be stored, and what they are answered must be what they parse.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;

use crate::common::{Harness, basic};
use crate::tracking::{fixture, test_catalog_with};

/// The fixtures' write keys, on server sources in an opt-out jurisdiction (as in `tracking.rs`).
const SOURCES: &str = r#"
[sources.rudder_node]
kind = "server"
write_key = "wk_rudder_node_fixture"
default_jurisdiction = "us-ca"
[sources.rudder_python]
kind = "server"
write_key = "wk_rudder_python_fixture"
default_jurisdiction = "us-ca"
"#;

async fn harness() -> Harness {
    Harness::open(test_catalog_with(SOURCES), 64, None).await
}

#[tokio::test]
async fn rudderstack_node_gzip_labelled_as_a_form_is_stored() {
    let harness = harness().await;
    for (name, stored) in [("rudder_node_identify_gzip.json", 1), ("rudder_node_batch_gzip.json", 2)] {
        let (status, _, body) = harness.send(fixture(name)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["stored"], stored, "{name}: {body}");
    }
    let user = harness.subject_of("user_id", "user-rudder-node-1").await.expect("user indexed");
    assert_eq!(harness.subject_of("anonymous_id", "anon-rudder-node-2").await, Some(user.clone()));
    let profile = harness.profile(&user).await;
    assert_eq!(profile["traits.email"], "katherine@example.com");
    let records = harness.records(&user).await;
    let order = records.iter().find(|record| record.1.as_deref() == Some("Order Completed")).expect("order");
    assert_eq!(order.3["properties"]["revenue"], 12.5);
}

#[tokio::test]
async fn a_form_label_is_still_refused_on_a_body_that_is_not_gzip() {
    let harness = harness().await;
    let request = Request::post("/v1/batch")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, basic("wk_rudder_node_fixture"))
        .body(Body::from(r#"{"batch":[{"type":"track","userId":"u","event":"Order Completed"}]}"#))
        .unwrap();
    let (status, _, body) = harness.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    // Gzip does not make a real form readable: it is still not JSON.
    let request = Request::post("/v1/batch")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_ENCODING, "gzip")
        .header(header::AUTHORIZATION, basic("wk_rudder_node_fixture"))
        .body(Body::from(gzip(b"userId=u&event=Order+Completed")))
        .unwrap();
    let (status, _, body) = harness.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_json");
    assert_eq!(harness.event_count().await, 0);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn rudderstack_python_identify_traits_in_context_reach_the_profile() {
    let harness = harness().await;
    let (status, _, body) = harness.send(fixture("rudder_python_batch_gzip.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 2, "{body}");
    let user = harness.subject_of("user_id", "user-rudder-py-1").await.expect("user indexed");
    assert_eq!(harness.subject_of("email", "dorothy@example.com").await, Some(user.clone()), "email indexed");
    let profile = harness.profile(&user).await;
    assert_eq!(profile["traits.email"], "dorothy@example.com");
    assert_eq!(profile["traits.name"], "Dorothy Vaughan");
    assert!(!profile.contains_key("traits.plan"), "an undeclared trait is minimized away as at the top");
    let identify = &harness.records(&user).await[0];
    assert!(identify.3["context"].get("traits").is_none(), "{}", identify.3);
}

/// rudder-sdk-python's `request.post` reads `payload['code']` and `payload['message']` from any
/// answer but 200; the documented `error` object stays as it was.
#[tokio::test]
async fn error_answers_carry_what_rudderstack_python_parses() {
    let harness = harness().await;
    let request = Request::post("/v1/batch")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, basic("wk_not_a_source"))
        .body(Body::from(r#"{"batch":[{"type":"track","userId":"u","event":"Order Completed"}]}"#))
        .unwrap();
    let (status, _, body) = harness.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "unknown_write_key", "{body}");
    assert_eq!(body["code"], body["error"]["code"]);
    assert!(body["message"].as_str().is_some_and(|text| !text.is_empty()), "{body}");
    assert_eq!(body["message"], body["error"]["message"]);
    let (_, _, body) = harness.send(Request::post("/v1/batch").body(Body::from("{")).unwrap()).await;
    assert_eq!((&body["code"], &body["error"]["code"]), (&Value::from("invalid_json"), &Value::from("invalid_json")));
}
