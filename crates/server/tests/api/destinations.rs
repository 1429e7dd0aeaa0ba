//! Destinations as an operator meets them: one that answers garbage is retried then given up on,
//! verification codes through the brand's mailer webhook, and an erasure that tells every identifier
//! ahead of a long queue of consent changes.

use axum::http::StatusCode;
use serde_json::json;
use tactful_domain::catalog::Catalog;

use crate::access::CATALOG;
use crate::common::Harness;
use crate::requests::{Receiver, SECRET, catalog, harness};

#[tokio::test]
async fn a_destination_answering_garbage_is_retried_then_given_up_on_without_undoing_the_erasure() {
    // Not HTTP at all: whatever it is asked, it answers a line of junk and hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let junk = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let _ = socket.write_all(b"\x00\x01 this is not HTTP\r\n\r\n").await;
        }
    });
    let extra = format!(
        "\n[destinations.junk]\nurl = \"{junk}/hook\"\nsecret = \"{SECRET}\"\nreceives = [\"erase\"]\ngive_up_after = \"1d\"\n"
    );
    let catalog = Catalog::parse(&format!("{CATALOG}{extra}")).unwrap();
    let harness = Harness::open(catalog, 64, None).await;
    let privacy = harness.key("privacy").await;
    harness.identify("j-1", "Whitby").await;
    let (_, created) =
        harness.request(&privacy, json!({"type": "erase", "subject": "user_id:reader-1"})).await;
    let id = created["id"].as_str().unwrap().to_owned();

    let now = tactful_app::now_millis();
    tactful_app::requests::run_due(&harness.state, now).await.unwrap();
    for minute in 0..3 {
        tactful_app::destinations::deliver_due(&harness.state, now + minute * 600_000).await.unwrap();
    }
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "waiting_on_destinations", "{view:#}");
    let attempts = view["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "retried: {view:#}");
    assert!(attempts.iter().all(|attempt| attempt["status_code"].is_null() && !attempt["error"].as_str().unwrap().is_empty()));
    assert_eq!(harness.subject_of("user_id", "reader-1").await, None, "the erasure itself is done");

    // Past its horizon, the destination is given up on: the request says so, and stops.
    let later = now + 2 * 86_400_000;
    tactful_app::destinations::deliver_due(&harness.state, later).await.unwrap();
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "partially_completed", "{view:#}");
    assert_eq!(view["deliveries"][0]["status"], "gave_up");
    assert!(
        harness.state.store.outbox_claim("delivery", 10, later + 86_400_000, 1_000).await.unwrap().is_empty()
    );
}

#[tokio::test]
async fn verification_codes_can_go_through_the_brands_mailer_webhook() {
    let (receiver, base) = Receiver::start().await;
    let secret = "notifier_secret_0123456789";
    let harness = Harness::configured(catalog(&base), 64, None, |config| {
        config.notifier = format!("webhook:{base}/mailer");
        config.notifier_secret = Some(tactful_domain::secret::Secret::new(secret));
    })
    .await;
    let privacy = harness.key("privacy").await;
    let (status, created) =
        harness.request(&privacy, json!({"type": "export", "verify_by": "email:someone@example.com"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let sent = receiver.at("/mailer");
    assert_eq!(sent.len(), 1);
    let (headers, body) = &sent[0];
    let signature = headers["tactful-signature"].to_str().unwrap();
    let (timestamp, mac) = signature.split_once(",v1=").unwrap();
    let timestamp: i64 = timestamp.trim_start_matches("t=").parse().unwrap();
    assert_eq!(tactful_vault::webhook_signature(secret, timestamp, &serde_json::to_vec(body).unwrap()), mac);
    assert_eq!(body["to"], "someone@example.com");
    assert_eq!(body["channel"], "email");
    assert_eq!(body["reference"], created["id"]);
    assert!(body["body"].as_str().unwrap().contains("expires in 15 minutes"));
    assert!(harness.notifications().is_empty(), "nothing written to files");
}

#[tokio::test]
async fn an_erasure_tells_every_identifier_and_goes_ahead_of_a_long_queue_of_consent_changes() {
    let (receiver, base) = Receiver::start().await;
    let harness = harness(&base).await;
    let privacy = harness.key("privacy").await;
    // Lucy signed in from two devices and gave two email addresses, saying yes to the newsletter.
    for (message, device, email) in
        [("l-1", "lucy-phone", "lucy@example.com"), ("l-2", "lucy-laptop", "lucy.w@example.com")]
    {
        let event = json!({"type": "identify", "userId": "lucy-2", "anonymousId": device, "messageId": message,
                           "traits": {"email": email},
                           "context": {"consent": {"categoryPreferences": {"Email": true}}}});
        assert_eq!(harness.track("wk_web_lantern", event, false).await.0, StatusCode::OK);
    }
    // Ten thousand consent notices about someone else are waiting for the CRM.
    harness.identify("e-1", "Whitby").await;
    let reader = harness.subject_of("user_id", "reader-1").await.unwrap();
    let now = tactful_app::now_millis();
    let queued: Vec<_> = (0..10_000)
        .map(|index| {
            tactful_store::DeliveryPayload {
                request: format!("cr_queued_{index}"),
                destination: "crm".into(),
                message: "consent_changed".into(),
                subject: reader.clone(),
                issued_at: now,
                identifiers: None,
                details: json!({}),
            }
            .into_delivery(&harness.state.vault)
        })
        .collect();
    harness.state.store.enqueue_deliveries(queued, now).await.unwrap();

    let (status, created) =
        harness.request(&privacy, json!({"type": "erase", "subject": "user_id:lucy-2"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    tactful_app::requests::run_due(&harness.state, now + 1).await.unwrap();
    // One pass of the delivery worker: the erasure goes first, in its own lane.
    tactful_app::destinations::deliver_due(&harness.state, now + 2).await.unwrap();
    let crm = receiver.at("/crm");
    assert!(crm.len() <= 16, "one pass sends one batch: {}", crm.len());
    let erase =
        crm.iter().find(|(_, body)| body["type"] == "erase").expect("the erasure is in the first pass");
    assert_eq!(erase.1["id"], id.as_str());
    assert_eq!(
        erase.1["identifiers"],
        json!({"anonymous_id": ["lucy-laptop", "lucy-phone"],
               "email": ["lucy.w@example.com", "lucy@example.com"],
               "user_id": ["lucy-2"]}),
        "every identifier of every kind the CRM may know"
    );
}
