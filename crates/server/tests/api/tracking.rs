//! The HTTP API in-process (`tower::ServiceExt::oneshot`): real SDK requests, every kind of bad
//! input, deduplication, identity linking, minimization, and what ends up on disk.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tower::ServiceExt;

/// The example catalog plus the sources and events the recorded SDK fixtures use. Its sources are
/// placed in an opt-out jurisdiction: these tests are about the protocol, not about consent (which
/// has tests of its own, with an EU source).
fn test_catalog() -> Catalog {
    test_catalog_with("")
}

/// The same, with `more` catalog text appended (more sources, for other SDKs).
pub(crate) fn test_catalog_with(more: &str) -> Catalog {
    let extra = r#"
[sources.python]
kind = "server"
write_key = "wk_python_fixture"
[sources.node]
kind = "server"
write_key = "wk_node_fixture"
[sources.browser]
kind = "server"
write_key = "wk_browser_fixture"
allowed_origins = ["http://localhost:8080"]
[sources.java]
kind = "server"
write_key = "wk_java_fixture"

[events."Subscription Started"]
[events."Invoice Paid"]
[events."Signup Clicked"]

[properties."properties.plan"]
category = "user.account"
purposes = ["essential.service"]
retention = "3y"

[properties."properties.invoice_id"]
category = "user.behavior.purchase_history"
purposes = ["essential.legal_obligation"]
retention = "10y"
"#;
    // These tests exercise the Segment protocol: the example's web and iOS sources trust what their
    // events claim here, so a userId links as the protocol expects. What counts as proof on public
    // sources (identity tokens) is tested in `identity.rs`.
    let example = Catalog::example_text()
        .replace("default_jurisdiction = \"eu\"", "default_jurisdiction = \"us-ca\"")
        .replace("kind = \"browser\"", "kind = \"browser\"\ntrust_claims = true")
        .replace("kind = \"mobile\"", "kind = \"mobile\"\ntrust_claims = true");
    let extra = extra
        .replace(
            "write_key = \"wk_python_fixture\"",
            "write_key = \"wk_python_fixture\"\ndefault_jurisdiction = \"us-ca\"",
        )
        .replace(
            "write_key = \"wk_node_fixture\"",
            "write_key = \"wk_node_fixture\"\ndefault_jurisdiction = \"us-ca\"",
        )
        .replace(
            "write_key = \"wk_browser_fixture\"",
            "write_key = \"wk_browser_fixture\"\ndefault_jurisdiction = \"us-ca\"",
        )
        .replace(
            "write_key = \"wk_java_fixture\"",
            "write_key = \"wk_java_fixture\"\ndefault_jurisdiction = \"us-ca\"",
        );
    Catalog::parse(&format!("{example}{extra}{more}")).expect("test catalog")
}

use crate::common::{Harness, basic};

impl Harness {
    async fn new() -> Harness {
        Harness::with_inflight(64).await
    }

    async fn with_inflight(max_inflight: usize) -> Harness {
        Harness::open(test_catalog(), max_inflight, None).await
    }

    /// On PostgreSQL at `url`.
    async fn on(url: String) -> Harness {
        Harness::open(test_catalog(), 64, Some(url)).await
    }

    /// POSTs JSON with the web source's write key as HTTP Basic.
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, basic("wk_web_fernhill_demo"))
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }
}

/// A recorded SDK request, replayed as sent.
pub(crate) fn fixture(name: &str) -> Request<Body> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdk").join(name);
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut request = Request::builder()
        .method(recorded["method"].as_str().unwrap())
        .uri(recorded["path"].as_str().unwrap());
    for pair in recorded["headers"].as_array().unwrap() {
        request = request.header(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    }
    let body = match recorded["body_base64"].as_str() {
        Some(encoded) => base64::engine::general_purpose::STANDARD.decode(encoded).unwrap(),
        None => Vec::new(),
    };
    request.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn python_sdk_gzip_batch_with_body_write_key_is_stored() {
    let harness = Harness::new().await;
    let (status, _, body) = harness.send(fixture("python_batch_gzip.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["stored"], 3, "{body}");
    let subject = harness.subject_of("user_id", "user-py-1").await.expect("userId indexed");
    assert_eq!(
        harness.subject_of("email", "ada@example.com").await,
        Some(subject.clone()),
        "declared email indexed"
    );
    let records = harness.records(&subject).await;
    let kinds: Vec<&str> = records.iter().map(|(kind, ..)| kind.as_str()).collect();
    assert_eq!(kinds, ["identify", "track", "page"]);
    let track = &records[1];
    assert_eq!(track.1.as_deref(), Some("Product Viewed"));
    assert_eq!(track.3["properties"]["product_id"], "sku-123");
    let profile = harness.profile(&subject).await;
    assert_eq!(profile["traits.email"], "ada@example.com");
    assert_eq!(profile["traits.name"], "Ada Lovelace");
    assert!(!profile.contains_key("traits.plan"), "undeclared trait must not be stored");
}

#[tokio::test]
async fn node_sdk_batch_with_basic_auth_links_the_alias() {
    let harness = Harness::new().await;
    let (status, _, body) = harness.send(fixture("node_batch_basic.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 3, "{body}");
    let user = harness.subject_of("user_id", "user-node-1").await.expect("user indexed");
    assert_eq!(
        harness.subject_of("anonymous_id", "anon-node-1").await,
        Some(user.clone()),
        "alias binds previousId"
    );
    let records = harness.records(&user).await;
    let order =
        records.iter().find(|record| record.1.as_deref() == Some("Order Completed")).expect("order stored");
    assert_eq!(order.3["properties"]["products"][0]["product_id"], "sku-1");
    assert_eq!(order.3["properties"]["revenue"], 42.5);
}

#[tokio::test]
async fn browser_single_letter_paths_with_text_plain_are_stored_with_cors() {
    let harness = Harness::new().await;
    let (status, headers, _) = harness.send(fixture("extra/browser_preflight_options.json")).await;
    assert!(status.is_success(), "preflight answered {status}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://localhost:8080");
    let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");

    for name in ["browser_page.json", "browser_identify.json", "browser_track.json"] {
        let (status, headers, body) = harness.send(fixture(name)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://localhost:8080", "{name}");
        assert_eq!(body["stored"], 1, "{name}: {body}");
    }
    // The page came before identify, anonymously; identify linked it to the user.
    let user = harness.subject_of("user_id", "user-browser-1").await.expect("identified");
    assert_eq!(harness.subject_of("anonymous_id", "anon-browser-1").await, Some(user.clone()));
    assert_eq!(harness.records(&user).await.len(), 3);

    // Origins no source lists get no CORS grant.
    let request = Request::post("/v1/t")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"anonymousId":"a","event":"Product Viewed","writeKey":"wk_browser_fixture"}"#))
        .unwrap();
    let (_, headers, _) = harness.send(request).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn java_import_with_trailing_slash_is_stored_at_its_historical_time() {
    let harness = Harness::new().await;
    let (status, _, body) = harness.send(fixture("java_import.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 2, "{body}");
    let subject = harness.subject_of("user_id", "user-java-1").await.expect("indexed");
    let records = harness.records(&subject).await;
    let received = tactful_app::now_millis();
    assert!(
        records.iter().all(|record| record.2 < received - 24 * 3600 * 1000),
        "historical timestamps kept"
    );
    assert_eq!(records.iter().filter(|record| record.1.as_deref() == Some("Invoice Paid")).count(), 1);
}

#[tokio::test]
async fn analytics_js_settings_point_back_here_and_carry_the_tracking_plan() {
    let harness = Harness::new().await;
    let (status, headers, body) = harness.send(fixture("extra/browser_settings_get.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://localhost:8080");
    assert_eq!(body["integrations"]["Segment.io"]["apiKey"], "wk_browser_fixture");
    assert!(body["integrations"]["Segment.io"]["apiHost"].as_str().unwrap().ends_with("/v1"));
    assert_eq!(body["plan"]["track"]["Product Viewed"]["enabled"], true);
    assert_eq!(body["plan"]["track"]["__default"]["enabled"], false);
    let (status, _, body) =
        harness.send(Request::get("/v1/projects/wk_nope_nope/settings").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unknown_write_key");
}

#[tokio::test]
async fn write_keys_in_every_form() {
    let harness = Harness::new().await;
    let event =
        |id: &str| json!({"userId": id, "event": "Product Viewed", "properties": {"product_id": "p1"}});
    // Basic with and without the colon.
    for (index, credentials) in ["wk_web_fernhill_demo:", "wk_web_fernhill_demo"].iter().enumerate() {
        let request = Request::post("/v1/track")
            .header(
                header::AUTHORIZATION,
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)),
            )
            .body(Body::from(event(&format!("basic-{index}")).to_string()))
            .unwrap();
        assert_eq!(harness.send(request).await.0, StatusCode::OK);
    }
    // Body writeKey, with a Bearer token beside it.
    let mut body = event("bearer");
    body["writeKey"] = json!("wk_web_fernhill_demo");
    let request = Request::post("/v1/track")
        .header(header::AUTHORIZATION, "Bearer some-oauth-token")
        .body(Body::from(body.to_string()))
        .unwrap();
    assert_eq!(harness.send(request).await.0, StatusCode::OK);
    // Per item inside a batch, for two sources at once.
    let batch = json!({"batch": [
        {"type": "track", "userId": "item-1", "event": "Product Viewed", "writeKey": "wk_web_fernhill_demo"},
        {"type": "track", "userId": "item-2", "event": "Product Viewed", "writeKey": "wk_ios_fernhill_demo"}
    ]});
    let (status, _, body) =
        harness.send(Request::post("/v1/batch").body(Body::from(batch.to_string())).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 2);
    assert!(harness.subject_of("user_id", "item-2").await.is_some());
}

/// Each bad input: its status and error code, checked against a store that already holds data,
/// which must be unchanged afterwards.
#[tokio::test]
async fn bad_inputs_get_clear_errors_and_lose_nothing() {
    let harness = Harness::new().await;
    let (status, _) = harness
        .post("/v1/identify", json!({"userId": "keeper", "traits": {"email": "keeper@example.com"}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = harness.event_count().await;

    let request = |path: &str, content_type: Option<&str>, auth: Option<String>, body: Vec<u8>| {
        let mut builder = Request::post(path);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        builder.body(Body::from(body)).unwrap()
    };
    let web = || Some(basic("wk_web_fernhill_demo"));
    let json_type = Some("application/json");
    let deep = format!("{{\"userId\":\"u\",\"traits\":{}{}}}", "{\"a\":".repeat(100), "}".repeat(100));
    let big_property = "x".repeat(40 * 1024);
    let huge = json!({"batch": (0..20).map(|i| json!({"type": "track", "userId": i, "event": "Product Viewed", "properties": {"pad": "y".repeat(30_000)}})).collect::<Vec<_>>()});
    let mut gzip_bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gzip_bomb, &vec![b' '; 5 * 1024 * 1024]).unwrap();
    let gzip_bomb = gzip_bomb.finish().unwrap();

    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            request("/v1/track", json_type, web(), b"{\"userId\": ".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "invalid UTF-8",
            request("/v1/track", json_type, web(), b"{\"userId\": \"\xff\"}".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "not an object",
            request("/v1/track", json_type, web(), b"[1,2,3]".to_vec()),
            StatusCode::BAD_REQUEST,
            "not_an_object",
        ),
        (
            "wrong content type",
            request("/v1/track", Some("application/x-www-form-urlencoded"), web(), b"userId=u".to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "missing ids",
            request("/v1/track", json_type, web(), br#"{"event":"Product Viewed"}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "missing event name",
            request("/v1/track", json_type, web(), br#"{"userId":"u"}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "oversize event",
            request(
                "/v1/track",
                json_type,
                web(),
                json!({"userId": "u", "event": "Product Viewed", "properties": {"blob": big_property}})
                    .to_string()
                    .into_bytes(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
        ),
        (
            "oversize request",
            request("/v1/batch", json_type, web(), huge.to_string().into_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
        ),
        (
            "gzip bomb",
            {
                let mut r = request("/v1/batch", json_type, web(), gzip_bomb);
                r.headers_mut().insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
                r
            },
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
        ),
        (
            "damaged gzip",
            {
                let mut r = request("/v1/batch", json_type, web(), b"\x1f\x8bnot really gzip".to_vec());
                r.headers_mut().insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
                r
            },
            StatusCode::BAD_REQUEST,
            "invalid_gzip",
        ),
        (
            "brotli",
            {
                let mut r = request("/v1/batch", json_type, web(), b"....".to_vec());
                r.headers_mut().insert(header::CONTENT_ENCODING, "br".parse().unwrap());
                r
            },
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
        ),
        (
            "unknown write key",
            request(
                "/v1/track",
                json_type,
                Some(basic("wk_not_a_real_key")),
                br#"{"userId":"u","event":"Product Viewed"}"#.to_vec(),
            ),
            StatusCode::UNAUTHORIZED,
            "unknown_write_key",
        ),
        (
            "no write key",
            request("/v1/track", json_type, None, br#"{"userId":"u","event":"Product Viewed"}"#.to_vec()),
            StatusCode::UNAUTHORIZED,
            "missing_write_key",
        ),
        (
            "deeply nested JSON",
            request("/v1/identify", json_type, web(), deep.into_bytes()),
            StatusCode::BAD_REQUEST,
            "json_too_deep",
        ),
        (
            "batch that is not an array",
            request("/v1/batch", json_type, web(), br#"{"batch": {"type": "track"}}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "missing_batch",
        ),
        (
            "empty batch",
            request("/v1/batch", json_type, web(), br#"{"batch": []}"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "empty_batch",
        ),
        (
            "batch of only bad events",
            request(
                "/v1/batch",
                json_type,
                web(),
                br#"{"batch": [{"type": "track"}, {"userId": "u"}]}"#.to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "no_valid_events",
        ),
        (
            "strict source, undeclared property",
            request(
                "/v1/track",
                json_type,
                Some(basic("wk_backend_fernhill_demo")),
                br#"{"userId":"u","event":"Order Completed","properties":{"coupon":"X"}}"#.to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "empty body",
            request("/v1/track", json_type, web(), Vec::new()),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (name, request, expected_status, expected_code) in cases {
        let (status, _, body) = harness.send(request).await;
        assert_eq!(status, expected_status, "{name}: {body}");
        assert_eq!(body["error"]["code"], expected_code, "{name}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {body}");
    }

    let (status, _, body) = harness.send(Request::get("/v1/nothing-here").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, _, body) = harness.send(Request::get("/v1/track").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );

    assert_eq!(harness.event_count().await, before, "no bad input stored or removed anything");
    assert!(harness.subject_of("user_id", "keeper").await.is_some());
    let (status, _, _) = harness.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "the server still answers");
}

#[tokio::test]
async fn a_mixed_batch_stores_the_good_events_and_names_the_bad_ones() {
    let harness = Harness::new().await;
    let (status, body) = harness
        .post(
            "/v1/batch",
            json!({"batch": [
                {"type": "track", "userId": "good-1", "event": "Product Viewed", "messageId": "mixed-1"},
                {"type": "track", "event": "Product Viewed"},
                {"type": "teleport", "userId": "u"},
                {"type": "identify", "userId": "good-2", "timestamp": "not a time"},
                {"type": "identify", "userId": "good-3", "traits": {"email": "good3@example.com"}}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 2);
    let rejected: Vec<(u64, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["index"].as_u64().unwrap(), item["code"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, [(1, "missing_id"), (2, "invalid_type"), (3, "invalid_timestamp")]);
    assert!(harness.subject_of("user_id", "good-1").await.is_some());
    assert!(harness.subject_of("email", "good3@example.com").await.is_some());
    assert!(harness.subject_of("user_id", "good-2").await.is_none());
}

#[tokio::test]
async fn a_retried_message_is_stored_once() {
    let harness = Harness::new().await;
    let event = json!({"userId": "u1", "event": "Product Viewed", "messageId": "retry-me", "properties": {"product_id": "p1"}});
    let (_, first) = harness.post("/v1/track", event.clone()).await;
    let (_, second) = harness.post("/v1/track", event.clone()).await;
    assert_eq!((first["stored"].as_u64(), first["duplicates"].as_u64()), (Some(1), Some(0)));
    assert_eq!((second["stored"].as_u64(), second["duplicates"].as_u64()), (Some(0), Some(1)));
    // Twice in one batch, too.
    let (_, body) = harness
        .post(
            "/v1/batch",
            json!({"batch": [
                {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": "twice"},
                {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": "twice"}
            ]}),
        )
        .await;
    assert_eq!((body["stored"].as_u64(), body["duplicates"].as_u64()), (Some(1), Some(1)));
    assert_eq!(harness.event_count().await, 2);
    // The same messageId from another source is another event.
    let mut other = event;
    other["writeKey"] = json!("wk_ios_fernhill_demo");
    let request = Request::post("/v1/track").body(Body::from(other.to_string())).unwrap();
    let (_, _, body) = harness.send(request).await;
    assert_eq!(body["stored"], 1);
}

#[tokio::test]
async fn clock_skew_is_corrected_from_sent_at() {
    let harness = Harness::new().await;
    // The device clock runs one hour fast: it stamps both times an hour ahead.
    let (status, body) = harness
        .post(
            "/v1/track",
            json!({"userId": "skewed", "event": "Product Viewed",
                   "originalTimestamp": "2099-01-01T01:00:00Z", "sentAt": "2099-01-01T01:00:10Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let subject = harness.subject_of("user_id", "skewed").await.unwrap();
    let timestamp = harness.records(&subject).await[0].2;
    let expected = tactful_app::now_millis() - 10_000;
    assert!((timestamp - expected).abs() < 5_000, "occurred 10 s before it was received, not in 2099");
}

#[tokio::test]
async fn logging_in_links_the_anonymous_history_and_a_shared_device_does_not_merge_people() {
    let harness = Harness::new().await;
    harness.post("/v1/page", json!({"anonymousId": "device-1", "name": "Home"})).await;
    harness.post("/v1/track", json!({"anonymousId": "device-1", "event": "Product Viewed"})).await;
    harness
        .post(
            "/v1/identify",
            json!({"anonymousId": "device-1", "userId": "alice", "traits": {"email": "alice@example.com"}}),
        )
        .await;
    let alice = harness.subject_of("user_id", "alice").await.unwrap();
    assert_eq!(harness.subject_of("anonymous_id", "device-1").await, Some(alice.clone()));
    assert_eq!(harness.records(&alice).await.len(), 3, "anonymous history follows the login");

    // Bob logs in on Alice's device: the device moves to Bob, but Alice's history stays hers.
    harness.post("/v1/identify", json!({"anonymousId": "device-1", "userId": "bob"})).await;
    let bob = harness.subject_of("user_id", "bob").await.unwrap();
    assert_ne!(alice, bob);
    assert_eq!(harness.subject_of("anonymous_id", "device-1").await, Some(bob.clone()));
    assert_eq!(harness.records(&alice).await.len(), 3);
    assert_eq!(harness.records(&bob).await.len(), 1);

    // An email seen first on a newsletter form joins the account that later logs in with it.
    harness
        .post("/v1/identify", json!({"anonymousId": "form-7", "traits": {"email": "carol@example.com"}}))
        .await;
    let anonymous = harness.subject_of("email", "carol@example.com").await.unwrap();
    harness.post("/v1/identify", json!({"anonymousId": "form-7", "userId": "carol"})).await;
    assert_eq!(harness.subject_of("user_id", "carol").await, Some(anonymous));
}

#[tokio::test]
async fn undeclared_properties_are_dropped_counted_and_visible_in_metrics() {
    let harness = Harness::new().await;
    let (status, body) = harness
        .post(
            "/v1/track",
            json!({"userId": "u1", "event": "Product Viewed",
                   "properties": {"product_id": "p1", "coupon": "SAVE10", "ada@example.com": true},
                   "context": {"ip": "192.0.2.55", "os": {"name": "Linux"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    harness.post("/v1/track", json!({"userId": "u1", "event": "Mouse Moved"})).await;
    let counts: Vec<(String, String, &str, u64)> = harness
        .state
        .store
        .drop_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|count| (count.source, count.path, count.reason.as_str(), count.count))
        .collect();
    for expected in [
        ("web", "properties.coupon", "undeclared", 1),
        ("web", "properties.*", "undeclared", 1),
        ("web", "context.os", "undeclared", 1),
    ] {
        assert!(
            counts.iter().any(|c| (c.0.as_str(), c.1.as_str(), c.2, c.3) == expected),
            "{expected:?} missing from {counts:?}"
        );
    }
    let subject = harness.subject_of("user_id", "u1").await.unwrap();
    let record = &harness.records(&subject).await[0].3;
    assert_eq!(record, &json!({"properties": {"product_id": "p1"}, "context": {"ip": "192.0.2.55"}}));

    let (status, _, _) = harness.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let response = tactful_server::router(harness.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.contains(
            r#"tactful_properties_dropped_total{source="web",path="properties.coupon",reason="undeclared"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"tactful_events_total{source="web",outcome="dropped"} 1"#), "{text}");
    assert!(!text.contains("ada@example.com"));
}

#[tokio::test]
async fn an_overloaded_server_answers_429_with_retry_after() {
    let harness = Harness::with_inflight(1).await;
    let _held = harness.state.inflight.clone().try_acquire_owned().unwrap();
    let request = Request::post("/v1/track")
        .header(header::AUTHORIZATION, basic("wk_web_fernhill_demo"))
        .body(Body::from(r#"{"userId":"u","event":"Product Viewed"}"#))
        .unwrap();
    let (status, headers, body) = harness.send(request).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(body["error"]["code"], "overloaded");
}

/// A database connection dropped in the middle of a request: the client gets a clear 503 with
/// Retry-After, nothing of the request is half-written, and its retry is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_request_answers_503_and_the_retry_stores_once() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    let harness = Harness::on(url.clone()).await;
    // A test-only trigger that stalls inserts into events while armed, so the request can be caught
    // mid-transaction and its connection terminated, as a network failure or failover would.
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE test_switch (armed BOOLEAN NOT NULL); INSERT INTO test_switch VALUES (TRUE);
         CREATE FUNCTION test_stall() RETURNS trigger AS $$
         BEGIN IF (SELECT armed FROM test_switch) THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER test_stall BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION test_stall();",
    )
    .execute(&admin)
    .await
    .unwrap();
    let batch = json!({"batch": [
        {"type": "identify", "userId": "nina", "messageId": "n-1", "traits": {"email": "nina@example.com"}},
        {"type": "track", "userId": "nina", "event": "Product Viewed", "messageId": "n-2"}
    ]});
    let request = {
        let state = harness.state.clone();
        let batch = batch.clone();
        tokio::spawn(async move {
            let request = Request::post("/v1/batch")
                .header(header::AUTHORIZATION, basic("wk_web_fernhill_demo"))
                .body(Body::from(batch.to_string()))
                .unwrap();
            let response = tactful_server::router(state).oneshot(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body: Value =
                serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
            (status, headers, body)
        })
    };
    // Wait for the request's transaction to reach the stalled insert, then cut its connection.
    let stalled = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let pid: Option<i32> =
                sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
                    .fetch_optional(&admin)
                    .await
                    .unwrap();
            if let Some(pid) = pid {
                break pid;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the request reached the database");
    sqlx::query("SELECT pg_terminate_backend($1)").bind(stalled).execute(&admin).await.unwrap();
    let (status, headers, body) = request.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let stats = harness.state.store.stats().await.unwrap();
    assert_eq!((stats.subjects, stats.identities, stats.events), (0, 0, 0), "nothing half-written");

    sqlx::raw_sql("UPDATE test_switch SET armed = FALSE").execute(&admin).await.unwrap();
    let (status, body) = harness.post("/v1/batch", batch.clone()).await;
    assert_eq!((status, body["stored"].as_u64()), (StatusCode::OK, Some(2)), "{body}");
    let (_, body) = harness.post("/v1/batch", batch).await;
    assert_eq!((body["stored"].as_u64(), body["duplicates"].as_u64()), (Some(0), Some(2)));
    let stats = harness.state.store.stats().await.unwrap();
    assert_eq!((stats.subjects, stats.events), (1, 2));
}

/// The promise: no personal value is stored in clear anywhere in the database file or its WAL, and
/// none is logged.
#[tokio::test]
async fn no_personal_value_reaches_the_disk_or_the_log_in_clear() {
    let log = LogCapture::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(log.clone()).finish(),
    );
    let harness = Harness::new().await;
    let people = [
        ("grace.hopper@navy.example", "Grace", "Hopper", "203.0.113.77", "+1 555 010 2222"),
        ("ada.lovelace@analytical.example", "Augusta", "Lovelace", "198.51.100.23", "+44 20 7946 0958"),
        ("linus.t@kernel.example", "Linus", "Torvalds", "192.0.2.199", "+358 40 123 4567"),
    ];
    for (index, (email, first, last, ip, phone)) in people.iter().enumerate() {
        let user_id = format!("customer-{index}");
        let (status, body) = harness
            .post(
                "/v1/identify",
                json!({"userId": user_id, "anonymousId": format!("anon-{first}"),
                       "traits": {"email": email, "first_name": first, "last_name": last, "phone": phone,
                                  "address": {"street": "12 Analytical Row", "city": "Marylebone"}},
                       "context": {"ip": ip, "userAgent": "Mozilla/5.0 (Secret Browser)"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        harness
            .post(
                "/v1/track",
                json!({"userId": user_id, "event": "Order Completed",
                   "properties": {"order_id": format!("order-{last}-771"), "revenue": 99.5, "coupon": email},
                   "context": {"ip": ip}}),
            )
            .await;
        // A bad request carrying personal data must not log it either.
        harness.post("/v1/track", json!({"traits": {"email": email}, "event": "Product Viewed"})).await;
    }
    let bytes = harness.database_bytes();
    assert!(bytes.len() > 10_000, "the database holds the data");
    let lowercase = String::from_utf8_lossy(&bytes).to_lowercase();
    let logged = log.text().to_lowercase();
    for (email, first, last, ip, phone) in people {
        for secret in
            [email, first, last, ip, phone, "customer-0", "anon-grace", "analytical row", "secret browser"]
        {
            let secret = secret.to_lowercase();
            assert!(!lowercase.contains(&secret), "{secret:?} found in clear in the database");
            assert!(!logged.contains(&secret), "{secret:?} found in the log");
        }
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        assert!(!lowercase.contains(&digits), "phone digits found in clear");
    }
    assert!(!logged.is_empty(), "the capture works");
}

/// Collects log output in memory.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
