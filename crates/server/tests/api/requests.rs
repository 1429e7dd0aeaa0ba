//! Data-subject requests as a privacy team runs them: erasure that reaches a real webhook receiver
//! (one that fails at first), keeps only what the law requires and suppresses on request; access
//! packages in JSON and HTML; self-service verification; and every bad request.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tower::ServiceExt;

use crate::access::{CATALOG, EMAIL, MARKETING};
use crate::common::Harness;

pub(crate) const SECRET: &str = "whsec_lantern_0123456789";

/// A destination on loopback: records every request; `/flaky` fails its first two attempts.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    received: Arc<Mutex<Vec<(String, HeaderMap, Value)>>>,
}

impl Receiver {
    pub(crate) async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let recorded = receiver.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let recorded = recorded.clone();
            async move {
                let path = request.uri().path().to_owned();
                let headers = request.headers().clone();
                let bytes = request.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let mut received = recorded.received.lock().unwrap();
                received.push((path.clone(), headers, body));
                let tries = received.iter().filter(|(seen, ..)| *seen == path).count();
                if path == "/flaky" && tries <= 2 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, base)
    }

    pub(crate) fn at(&self, path: &str) -> Vec<(HeaderMap, Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(seen, ..)| seen == path)
            .map(|(_, headers, body)| (headers.clone(), body.clone()))
            .collect()
    }
}

/// The bookshop with invoices kept for tax law and two destinations.
pub(crate) fn catalog(receiver: &str) -> Catalog {
    let extra = format!(
        r#"
[purposes."essential.legal_obligation"]
name = "Tax records"
description = "Tax law requires us to keep invoices for ten years."
benefit = "We meet our legal duties."

[properties."properties.order_id"]
category = "user.behavior.purchase_history"
purposes = ["essential.legal_obligation", "essential.service"]
retention = "10y"

[events."Order Completed"]

[roles.legal]
purposes = ["essential.legal_obligation"]
categories = ["user.behavior.purchase_history"]

[roles.requests]
purposes = ["essential.legal_obligation"]
categories = ["user"]
may = ["download_packages"]

[destinations.crm]
url = "{receiver}/crm"
secret = "{SECRET}"
receives = ["erase", "restrict", "consent_changed"]
identifiers = ["email", "user_id", "anonymous_id"]

[destinations.flaky]
url = "{receiver}/flaky"
secret = "{SECRET}"
receives = ["erase"]
identifiers = ["user_id"]
"#
    );
    Catalog::parse(&format!("{CATALOG}{extra}")).unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

pub(crate) async fn harness(receiver: &str) -> Harness {
    Harness::open(catalog(receiver), 64, None).await
}

impl Harness {
    /// Runs the request engine and the delivery worker as the server does, moving the clock a
    /// minute per pass (so retries come due), until nothing is left to do.
    async fn settle(&self) {
        let mut now = tactful_app::now_millis();
        let mut idle = 0;
        for _ in 0..30 {
            let advanced = tactful_app::requests::run_due(&self.state, now).await.unwrap();
            let delivered = tactful_app::destinations::deliver_due(&self.state, now).await.unwrap();
            idle = if advanced + delivered == 0 { idle + 1 } else { 0 };
            if idle == 2 {
                return;
            }
            now += 60_000;
        }
        panic!("requests and deliveries never settled");
    }

    pub(crate) async fn request(&self, key: &str, body: Value) -> (StatusCode, Value) {
        self.post_json("/v1/requests", key, &body.to_string()).await
    }
}

fn verify_signature(headers: &HeaderMap, body: &Value) {
    let signature = headers["tactful-signature"].to_str().unwrap();
    let (timestamp, mac) = signature.split_once(",v1=").unwrap();
    let timestamp: i64 = timestamp.strip_prefix("t=").unwrap().parse().unwrap();
    let bytes = serde_json::to_vec(body).unwrap();
    assert_eq!(
        tactful_vault::webhook_signature(SECRET, timestamp, &bytes),
        mac,
        "signed over timestamp and body"
    );
}

#[tokio::test]
async fn an_erasure_reaches_every_destination_and_keeps_only_what_the_law_requires() {
    let (receiver, base) = Receiver::start().await;
    let harness = harness(&base).await;
    let privacy = harness.key("privacy").await;
    let marketing = harness.key("marketing").await;
    harness.identify("e-1", "Whitby").await;
    harness.consent(&privacy, "given").await;
    harness.identify("e-2", "Whitby").await;
    let order = json!({"type": "track", "event": "Order Completed", "userId": "reader-1", "messageId": "e-3",
                       "properties": {"order_id": "LB-1001"}});
    assert_eq!(harness.track("wk_web_lantern", order, false).await.0, StatusCode::OK);
    let subject = harness.subject_of("user_id", "reader-1").await.unwrap();
    assert_eq!(harness.read(&marketing, MARKETING).await["traits"]["email"], EMAIL);

    let (status, created) = harness
        .request(
            &privacy,
            json!({"type": "erase", "subject": "email:mina.harker@example.com", "suppress": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "received");
    assert!(created["due_at"].as_str().unwrap() > created["received_at"].as_str().unwrap());
    harness.settle().await;

    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "completed", "{view:#}");
    let deliveries = view["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|delivery| delivery["status"] == "acknowledged"), "{view:#}");
    let flaky = deliveries.iter().find(|delivery| delivery["destination"] == "flaky").unwrap();
    assert_eq!(flaky["attempts"].as_array().unwrap().len(), 3, "two failures, then acknowledged");
    assert_eq!(flaky["attempts"][0]["status_code"], 503);
    assert_eq!(view["kept_under_legal_hold"][0]["categories"], json!(["user.behavior.purchase_history"]));

    // Each destination got a signed erase request with only the identifiers it may know; retries
    // carry the same id, so a destination can tell a retry from a new request.
    let crm = receiver.at("/crm");
    let erase: Vec<&(HeaderMap, Value)> = crm.iter().filter(|(_, body)| body["type"] == "erase").collect();
    assert_eq!(erase.len(), 1);
    let (headers, body) = erase[0];
    verify_signature(headers, body);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["identifiers"], json!({"email": [EMAIL], "user_id": ["reader-1"]}));
    let flaky = receiver.at("/flaky");
    assert_eq!(flaky.len(), 3);
    assert!(flaky.iter().all(|(headers, body)| body["id"] == id.as_str() && headers["tactful-delivery-id"] == id.as_str()));
    assert_eq!(flaky[2].1["identifiers"], json!({"user_id": ["reader-1"]}), "flaky may not know the email");

    // Gone from every read; the invoice stays, readable with the legal-hold key only.
    let (status, body) =
        harness.get(&format!("/v1/subjects/user_id:reader-1/profile?purpose={MARKETING}"), &marketing).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_subject")));
    let (status, _) = harness.get(&format!("/v1/subjects/{subject}/consents"), &privacy).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let holds = harness.state.store.legal_holds(&subject).await.unwrap();
    assert_eq!(holds.len(), 1);
    let held = harness
        .state
        .vault
        .legal_hold_key()
        .open("legal_hold", &[holds[0].id.as_bytes()], &holds[0].sealed)
        .unwrap();
    let held: Value = serde_json::from_slice(&held).unwrap();
    assert_eq!(held["data"], json!({"properties": {"order_id": "LB-1001"}}));

    // Readable for the legal obligation only, by a role allowed it and the data's category.
    let legal = harness.key("legal").await;
    let holds_path = |purpose: &str| format!("/v1/requests/{id}/legal-holds?purpose={purpose}");
    let (status, kept) = harness.get(&holds_path("essential.legal_obligation"), &legal).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["kept"][0]["record"]["data"], json!({"properties": {"order_id": "LB-1001"}}));
    let (status, _) = harness.get(&holds_path(MARKETING), &marketing).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = harness.get(&holds_path("essential.legal_obligation"), &marketing).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "marketing may not use the legal purpose");
    let (_, other_role) = harness.get(&holds_path("essential.legal_obligation"), &privacy).await;
    assert_eq!((other_role["kept"].as_array().unwrap().len(), other_role["withheld"].as_u64()), (0, Some(1)));
    let (_, log) = harness.get("/v1/audit/verify", &privacy).await;
    assert_eq!(log["intact"], true);
    // Ten years on (the clock of the retention job is the caller's), the invoice goes too.
    let ten_years_on = tactful_app::now_millis() + 11 * 365 * 86_400_000;
    let report =
        harness.state.store.apply_retention(&harness.state.catalog, ten_years_on, 1_000).await.unwrap();
    assert_eq!(report.legal_holds_deleted, 1);
    let (_, kept) = harness.get(&holds_path("essential.legal_obligation"), &legal).await;
    assert_eq!(kept["kept"], json!([]));

    // Suppressed: their next events are dropped at the door, answered like any dropped event.
    let (status, answer) = harness
        .track(
            "wk_web_lantern",
            json!({"type": "identify", "userId": "reader-1", "messageId": "e-4", "traits": {"email": EMAIL}}),
            false,
        )
        .await;
    assert_eq!(
        (status, answer["stored"].as_u64(), answer["dropped"].as_u64()),
        (StatusCode::OK, Some(0), Some(1))
    );
    assert_eq!(harness.subject_of("user_id", "reader-1").await, None);

    // Once the suppression is lifted, the same person comes back as someone new.
    let (status, lifted) = harness.request(&privacy, json!({"type": "unsuppress", "identifiers": ["user_id:reader-1", "email:mina.harker@example.com"]})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{lifted}");
    harness.settle().await;
    let (_, lifted) =
        harness.get(&format!("/v1/requests/{}", lifted["id"].as_str().unwrap()), &privacy).await;
    assert_eq!(lifted["status"], "completed", "{lifted:#}");
    harness.identify("e-5", "Scarborough").await;
    let returning = harness.subject_of("user_id", "reader-1").await.unwrap();
    assert_ne!(returning, subject, "no link to the erased record");

    // The erased rows go in the background; nothing of them is readable or in clear meanwhile.
    harness.state.store.purge_erased(1_000).await.unwrap();
    let bytes = harness.database_bytes();
    for secret in [EMAIL.as_bytes(), b"Whitby", b"LB-1001"] {
        assert!(
            !bytes.windows(secret.len()).any(|window| window == secret),
            "{} in clear",
            String::from_utf8_lossy(secret)
        );
    }
}

#[tokio::test]
async fn an_access_request_gives_everything_held_in_json_and_in_a_page_for_people() {
    let (_, base) = Receiver::start().await;
    let harness = harness(&base).await;
    let (privacy, marketing) = (harness.key("privacy").await, harness.key("marketing").await);
    harness.identify("a-1", "Whitby").await;
    harness.consent(&privacy, "given").await;
    harness.identify("a-2", "<Whitby & Co>").await;
    for batch in 0..12 {
        let events: Vec<Value> = (0..100)
            .map(|index| {
                let index = batch * 100 + index;
                json!({"type": "track", "event": "Book Viewed", "userId": "reader-1", "messageId": format!("v-{index}"),
                       "properties": {"book_id": format!("book-{index}")},
                       "context": {"consent": {"categoryPreferences": {"Advertising": true, "Email": true}}}})
            })
            .collect();
        let request = Request::post("/v1/batch")
            .header(header::AUTHORIZATION, crate::common::basic("wk_web_lantern"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"batch": events}).to_string()))
            .unwrap();
        let (status, _, answer) = harness.send(request).await;
        assert_eq!((status, answer["stored"].as_u64()), (StatusCode::OK, Some(100)), "{answer}");
    }
    harness.read(&marketing, MARKETING).await;

    let (status, created) =
        harness.request(&privacy, json!({"type": "access", "subject": "user_id:reader-1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let requests = harness.key("requests").await;
    let (status, early) = harness.get(&format!("/v1/requests/{id}/package"), &requests).await;
    assert_eq!(
        (status, early["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("package_unavailable")),
        "not ready yet"
    );
    harness.settle().await;
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["package"], format!("/v1/requests/{id}/package"));

    let (status, package) = harness.get(&format!("/v1/requests/{id}/package?format=json"), &requests).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(package["format"], "tactful-export/1");
    assert_eq!(package["controller"]["name"], "Lantern Books");
    let identifiers: Vec<(&str, &str)> = package["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["kind"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    assert!(
        identifiers.contains(&("email", EMAIL)) && identifiers.contains(&("user_id", "reader-1")),
        "{identifiers:?}"
    );
    let email =
        package["profile"].as_array().unwrap().iter().find(|item| item["path"] == "traits.email").unwrap();
    assert_eq!(email["value"], EMAIL);
    assert_eq!(email["category"], "user.contact.email");
    assert_eq!(email["purposes"], json!([MARKETING]));
    assert_eq!(email["retention"], "2 years");
    let events = package["events"].as_array().unwrap();
    assert_eq!(events.len(), 1_202, "every event, across pages");
    let view_event = events.iter().find(|event| event["event"] == "Book Viewed").unwrap();
    assert_eq!(view_event["categories"], json!(["user.behavior.browsing_history"]));
    assert_eq!(package["consents"]["ledger"][0]["status"], "given");
    assert_eq!(package["consents"]["receipts"][0]["receipt"]["version"], "KI-CR-v1.1.0");
    let reads: Vec<&Value> =
        package["access_log"].as_array().unwrap().iter().filter(|entry| entry["kind"] == "read").collect();
    // The download itself is in the person's access log before its first byte, with who downloaded.
    assert_eq!(reads[0]["purpose"], "essential.legal_obligation");
    assert_eq!(reads[0]["role"], "requests");
    assert!(reads[0]["actor"].as_str().unwrap().starts_with("key_"));
    assert!(reads[0]["returned"].as_array().unwrap().contains(&json!("user.contact.email")));
    let read = reads.iter().find(|entry| entry["purpose"] == MARKETING).unwrap();
    assert!(read.get("subject").is_none());
    assert_eq!(package["requests"][0]["id"], id.as_str());

    let request = Request::get(format!("/v1/requests/{id}/package?format=html"))
        .header(header::AUTHORIZATION, format!("Bearer {requests}"))
        .body(Body::empty())
        .unwrap();
    let response = tactful_server::router(harness.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let html = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("What Lantern Books holds about you"));
    assert!(html.contains(EMAIL));
    assert!(
        html.contains("&lt;Whitby &amp; Co&gt;") && !html.contains("<Whitby"),
        "what people typed is escaped"
    );
    assert!(html.contains("Newsletter"), "purposes in their plain names");
    for external in ["<script", "src=", "<link", "@import", "url("] {
        assert!(!html.contains(external), "a self-contained page loads nothing: {external}");
    }
    assert_eq!(html.matches("<td>Book Viewed</td>").count(), 1_200);
}

#[tokio::test]
async fn self_service_requests_wait_for_the_code_sent_to_the_person() {
    let (_, base) = Receiver::start().await;
    let harness = harness(&base).await;
    let privacy = harness.key("privacy").await;
    harness.identify("s-1", "Whitby").await;
    harness.consent(&privacy, "given").await;
    harness.identify("s-2", "Whitby").await;

    let (status, created) = harness
        .request(&privacy, json!({"type": "access", "verify_by": "email:Mina.Harker@example.com"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["status"], "verifying");
    let id = created["id"].as_str().unwrap().to_owned();
    let message = harness.notifications().pop().unwrap();
    assert!(message.starts_with(&format!("To: {EMAIL} (email)")), "{message}");
    let code: String = message
        .split("Lantern Books: ")
        .nth(1)
        .unwrap()
        .chars()
        .take(9)
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(code.len(), 8);

    // Nothing happens before the code; wrong codes count down.
    harness.settle().await;
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "verifying");
    let wrong = if code == "00000000" { "11111111" } else { "00000000" };
    let (status, answer) = harness
        .post_json(&format!("/v1/requests/{id}/verify"), &privacy, &json!({"code": wrong}).to_string())
        .await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_code")));
    assert!(answer["error"]["message"].as_str().unwrap().contains("4 tries left"), "{answer}");
    let (status, answer) = harness
        .post_json(
            &format!("/v1/requests/{id}/verify"),
            &privacy,
            &json!({"code": format!("{} {}", &code[..4], &code[4..])}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    harness.settle().await;
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(view["source"], "self_service");

    // A request someone typed the address for does not block the person's own: unverified, it
    // holds nothing, and it lapses when its code expires.
    let (_, typed) = harness
        .request(&privacy, json!({"type": "erase", "verify_by": "email:mina.harker@example.com"}))
        .await;
    let (status, own) =
        harness.request(&privacy, json!({"type": "erase", "subject": "user_id:reader-1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{own}");
    let typed_id = typed["id"].as_str().unwrap();
    let late = tactful_app::now_millis() + 16 * 60_000;
    tactful_app::requests::run_due(&harness.state, late).await.unwrap();
    let (_, view) = harness.get(&format!("/v1/requests/{typed_id}"), &privacy).await;
    assert_eq!(view["status"], "failed", "{view:#}");
    assert_eq!(
        view["history"].as_array().unwrap().last().unwrap()["note"],
        "the verification code expired unused"
    );

    // Someone unknown gets the same answer (nobody learns who is a customer), and after the code,
    // the request says nothing is held.
    let (status, stranger) =
        harness.request(&privacy, json!({"type": "access", "verify_by": "email:lucy@example.com"})).await;
    assert_eq!((status, stranger["status"].as_str()), (StatusCode::ACCEPTED, Some("verifying")));
    assert!(stranger["subject"].is_null());
    let stranger_id = stranger["id"].as_str().unwrap().to_owned();
    for attempt in 1..=5 {
        let (_, answer) = harness
            .post_json(
                &format!("/v1/requests/{stranger_id}/verify"),
                &privacy,
                &json!({"code": "12345678"}).to_string(),
            )
            .await;
        assert_eq!(answer["error"]["code"], "wrong_code", "attempt {attempt}: {answer}");
    }
    let (_, view) = harness.get(&format!("/v1/requests/{stranger_id}"), &privacy).await;
    assert_eq!(view["status"], "failed", "five wrong codes close it");
    let (status, answer) = harness
        .post_json(
            &format!("/v1/requests/{stranger_id}/verify"),
            &privacy,
            &json!({"code": "12345678"}).to_string(),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "a failed request waits for no code"
    );
}

#[tokio::test]
async fn an_erasure_waits_for_a_download_of_the_same_person_to_end() {
    let (_, base) = Receiver::start().await;
    let harness = harness(&base).await;
    let privacy = harness.key("privacy").await;
    harness.identify("d-1", "Whitby").await;
    let (_, access) =
        harness.request(&privacy, json!({"type": "export", "subject": "user_id:reader-1"})).await;
    harness.settle().await;
    let requests = harness.key("requests").await;
    let request = Request::get(format!("/v1/requests/{}/package", access["id"].as_str().unwrap()))
        .header(header::AUTHORIZATION, format!("Bearer {requests}"))
        .body(Body::empty())
        .unwrap();
    let download = tactful_server::router(harness.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);

    let (_, erase) = harness.request(&privacy, json!({"type": "erase", "subject": "user_id:reader-1"})).await;
    let erase_id = erase["id"].as_str().unwrap().to_owned();
    tactful_app::requests::run_due(&harness.state, tactful_app::now_millis()).await.unwrap();
    let (_, view) = harness.get(&format!("/v1/requests/{erase_id}"), &privacy).await;
    assert_eq!(view["status"], "running", "{view:#}");
    assert!(
        view["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line["note"].as_str().unwrap().contains("download"))
    );
    assert!(
        harness.subject_of("user_id", "reader-1").await.is_some(),
        "still readable while the download runs"
    );

    // The download finishes (its body is read to the end and dropped): the erasure goes ahead.
    let package = download.into_body().collect().await.unwrap().to_bytes();
    let package: Value = serde_json::from_slice(&package).unwrap();
    assert_eq!(package["identifiers"].as_array().unwrap().len(), 1);
    tokio::task::yield_now().await;
    for _ in 0..50 {
        if harness.subject_of("user_id", "reader-1").await.is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        tactful_app::requests::run_due(&harness.state, tactful_app::now_millis() + 10_000).await.unwrap();
    }
    assert_eq!(harness.subject_of("user_id", "reader-1").await, None);
    harness.settle().await;
    let (_, view) = harness.get(&format!("/v1/requests/{erase_id}"), &privacy).await;
    assert_eq!(view["status"], "completed", "{view:#}");
}

#[tokio::test]
async fn restriction_objection_and_rectification_change_what_reads_return() {
    let (receiver, base) = Receiver::start().await;
    let harness = harness(&base).await;
    let (privacy, marketing) = (harness.key("privacy").await, harness.key("marketing").await);
    harness.identify("r-1", "Whitby").await;
    harness.consent(&privacy, "given").await;
    harness.identify("r-2", "Whitby").await;

    let (status, rectify) = harness.request(&privacy, json!({"type": "rectify", "subject": "user_id:reader-1", "path": "traits.city", "value": "Scarborough"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rectify}");
    harness.settle().await;
    assert_eq!(harness.read(&marketing, MARKETING).await["traits"]["city"], "Scarborough");

    harness.request(&privacy, json!({"type": "restrict", "subject": "user_id:reader-1"})).await;
    harness.settle().await;
    let read = harness.read(&marketing, MARKETING).await;
    assert_eq!(read["traits"], json!({}), "{read}");
    assert!(read["withheld"].as_array().unwrap().iter().all(|entry| entry["reason"] == "restricted"));
    let restrict = receiver
        .at("/crm")
        .into_iter()
        .find(|(_, body)| body["type"] == "restrict")
        .expect("the CRM was told");
    verify_signature(&restrict.0, &restrict.1);
    harness.request(&privacy, json!({"type": "unrestrict", "subject": "user_id:reader-1"})).await;
    harness.settle().await;
    assert_eq!(harness.read(&marketing, MARKETING).await["traits"]["email"], EMAIL);

    let (status, object) = harness
        .request(&privacy, json!({"type": "object", "subject": "user_id:reader-1", "purpose": MARKETING}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{object}");
    harness.settle().await;
    let read = harness.read(&marketing, MARKETING).await;
    assert_eq!(read["traits"], json!({}), "objecting withdraws the purpose: {read}");
    let (_, consents) = harness.get("/v1/subjects/user_id:reader-1/consents", &privacy).await;
    assert_eq!(consents["ledger"][0]["status"], "withdrawn");
    assert!(consents["ledger"][0]["source"].as_str().unwrap().starts_with("request:req_"));
    let changed: Vec<Value> = receiver
        .at("/crm")
        .into_iter()
        .filter(|(_, body)| body["type"] == "consent_changed")
        .map(|(_, body)| body)
        .collect();
    assert!(
        changed
            .iter()
            .any(|body| body["details"]["status"] == "withdrawn"
                && body["identifiers"]["email"] == json!([EMAIL])),
        "{changed:?}"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_clearly() {
    let (_, base) = Receiver::start().await;
    let harness = harness(&base).await;
    let (privacy, marketing) = (harness.key("privacy").await, harness.key("marketing").await);
    harness.identify("b-1", "Whitby").await;
    let subject = json!("user_id:reader-1");
    let cases = [
        (json!({"type": "forget", "subject": subject}), StatusCode::BAD_REQUEST, "invalid_request"),
        (json!({"type": "erase"}), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            json!({"type": "erase", "subject": subject, "verify_by": "email:x@example.com"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (json!({"type": "erase", "subject": "user_id:nobody"}), StatusCode::NOT_FOUND, "unknown_subject"),
        (json!({"type": "erase", "subject": "reader-1"}), StatusCode::BAD_REQUEST, "invalid_identifier"),
        (
            json!({"type": "access", "verify_by": "user_id:reader-1"}),
            StatusCode::BAD_REQUEST,
            "invalid_identifier",
        ),
        (
            json!({"type": "object", "subject": subject, "purpose": "marketing.telepathy"}),
            StatusCode::BAD_REQUEST,
            "unknown_purpose",
        ),
        (
            json!({"type": "object", "subject": subject, "purpose": "essential.service"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"type": "rectify", "subject": subject, "path": "traits.shoe_size", "value": 42}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"type": "rectify", "subject": subject, "path": "traits.city"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (json!({"type": "unsuppress", "identifiers": []}), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            json!({"type": "erase", "subject": subject, "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = harness.request(&privacy, body.clone()).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
    let (status, _) = harness.request(&marketing, json!({"type": "access", "subject": subject})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only a role whose requests list names it");

    let (_, first) = harness.request(&privacy, json!({"type": "export", "subject": subject})).await;
    let (status, duplicate) = harness.request(&privacy, json!({"type": "export", "subject": subject})).await;
    assert_eq!(
        (status, duplicate["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate_request"))
    );
    assert_eq!(duplicate["error"]["request"], first["id"]);

    let id = first["id"].as_str().unwrap();
    let extend = |days: u32, reason: &str| json!({"days": days, "reason": reason}).to_string();
    let (status, answer) = harness
        .post_json(&format!("/v1/requests/{id}/extend"), &privacy, &extend(61, "lots to search"))
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "GDPR allows 60 more days"
    );
    let (status, answer) =
        harness.post_json(&format!("/v1/requests/{id}/extend"), &privacy, &extend(30, "  ")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = harness
        .post_json(&format!("/v1/requests/{id}/extend"), &privacy, &extend(30, "three archives to search"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) =
        harness.post_json(&format!("/v1/requests/{id}/extend"), &privacy, &extend(10, "more")).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "once only"
    );
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["extension_reason"], "three archives to search");

    let (status, answer) = harness.get("/v1/requests/req_nothing", &privacy).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_request")));
    let (status, answer) = harness.get(&format!("/v1/requests/{id}/package?format=pdf"), &privacy).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (_, listed) = harness.get("/v1/requests?subject=user_id:reader-1", &privacy).await;
    assert_eq!(listed["requests"].as_array().unwrap().len(), 1);
    assert_eq!(listed["requests"][0]["overdue"], false);
}
