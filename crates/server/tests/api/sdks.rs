//! The RudderStack SDKs as recorded on the wire (`tests/fixtures/sdk/rudder_*.json`), replayed
//! unchanged: what they send must be stored, and what they are answered must be what they parse.
//! And analytics.js: what the settings document makes it drop, run through analytics-next's own
//! code (`tests/js/`, installed by `scripts/test` from its lock file).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;

use crate::common::{Harness, NodeScripts, basic};
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

[events."Said \"hi\" </script>"]
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
    let json = br#"{"batch":[{"type":"track","userId":"u","event":"Order Completed"}]}"#;
    let (status, _, body) = harness.send(post_batch("application/x-www-form-urlencoded", None, json)).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    // Gzip does not make a real form readable: it is still not JSON.
    let form = gzip(b"userId=u&event=Order+Completed");
    let (status, _, body) =
        harness.send(post_batch("application/x-www-form-urlencoded", Some("gzip"), &form)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_json");
    assert_eq!(harness.event_count().await, 0);
}

/// A `POST /v1/batch` with the RudderStack node fixture's write key.
fn post_batch(content_type: &str, encoding: Option<&str>, body: &[u8]) -> Request<Body> {
    let mut request = Request::post("/v1/batch")
        .header(header::CONTENT_TYPE, content_type)
        .header(header::AUTHORIZATION, basic("wk_rudder_node_fixture"));
    if let Some(encoding) = encoding {
        request = request.header(header::CONTENT_ENCODING, encoding);
    }
    request.body(Body::from(body.to_vec())).unwrap()
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
    let mut request = post_batch("application/json", None, br#"{"batch":[{"type":"track","userId":"u"}]}"#);
    request.headers_mut().insert(header::AUTHORIZATION, basic("wk_not_a_source").parse().unwrap());
    let (status, _, body) = harness.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "unknown_write_key", "{body}");
    assert_eq!(body["code"], body["error"]["code"]);
    assert!(body["message"].as_str().is_some_and(|text| !text.is_empty()), "{body}");
    assert_eq!(body["message"], body["error"]["message"]);
    let (_, _, body) = harness.send(Request::post("/v1/batch").body(Body::from("{")).unwrap()).await;
    assert_eq!(
        (&body["code"], &body["error"]["code"]),
        (&Value::from("invalid_json"), &Value::from("invalid_json"))
    );
}

/// analytics-next applies a settings `plan` to device-mode destinations only and still sends
/// plan-blocked events to its `Segment.io` destination; the source middleware the settings enable
/// is what keeps undeclared track events in the browser.
#[tokio::test]
async fn analytics_next_drops_undeclared_track_events_before_sending_them() {
    let harness = harness().await;
    let (status, _, settings) = harness.send(fixture("extra/browser_settings_get.json")).await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["enabledMiddleware"], serde_json::json!({"tactful-tracking-plan": true}));
    assert_eq!(settings["plan"]["track"]["__default"]["enabled"], false);
    let path = "/next-integrations/middleware/tactful-tracking-plan/latest/tactful-tracking-plan.js.gz";
    let (status, headers, script) = harness.send(Request::get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{script}");
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    let script = script.as_str().expect("a script, not JSON");

    let Some(node) = NodeScripts::ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (settings_file, script_file) = (dir.path().join("settings.json"), dir.path().join("plan.js"));
    std::fs::write(&settings_file, settings.to_string()).unwrap();
    std::fs::write(&script_file, script).unwrap();
    let names = ["Signup Clicked", "Said \"hi\" </script>", "Coupon Hunted", "signup clicked"];
    let mut args: Vec<&std::path::Path> = vec![&settings_file, &script_file];
    args.extend(names.iter().map(std::path::Path::new));
    let (ok, out) = node.run("plan_filtering.mjs", &args);
    assert!(ok, "{out}");
    let outcome: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}"));
    let verdict = |name: &str| outcome[name]["middleware"].as_str().unwrap_or("?").to_owned();
    assert_eq!(verdict("Signup Clicked"), "sent", "{outcome}");
    assert_eq!(verdict("Said \"hi\" </script>"), "sent", "a declared name however spelled: {outcome}");
    assert_eq!(verdict("Coupon Hunted"), "dropped", "{outcome}");
    assert_eq!(
        verdict("signup clicked"),
        "dropped",
        "names are matched exactly, as the server does: {outcome}"
    );
    assert_eq!(verdict("(identify)"), "sent", "{outcome}");
}
