//! What counts as proof of who an event is about, tried as an attacker with only the public write
//! key of the example shop's web source would: a forged consent, an email claimed to take over a
//! customer's recommendations, an alias; and the signed-in flow that does link, with the identity
//! token the shop's backend makes.

use axum::http::StatusCode;
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;

use crate::common::{Harness, web_token};

const WEB: &str = "wk_web_fernhill_demo";
const BACKEND: &str = "wk_backend_fernhill_demo";
const EMAIL_MARKETING: &str = "marketing.communications.email";

async fn shop() -> Harness {
    Harness::open(Catalog::parse(Catalog::example_text()).unwrap(), 64, None).await
}

impl Harness {
    /// Mina, a customer the shop's order service (a server source) knows by userId and email.
    async fn mina(&self) -> String {
        let event = json!({"type": "identify", "userId": "mina-7", "messageId": "m-1",
                           "traits": {"email": "mina@example.com", "first_name": "Mina"}});
        let (status, body) = self.track(BACKEND, event, false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.subject_of("user_id", "mina-7").await.unwrap()
    }

    async fn ledger(&self, subject: &str) -> Vec<Value> {
        let (status, consents) =
            self.get(&format!("/v1/subjects/{subject}/consents"), &self.key("privacy").await).await;
        assert_eq!(status, StatusCode::OK, "{consents}");
        consents["ledger"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn a_consent_forged_with_the_public_key_changes_nothing_for_the_customer_it_names() {
    let h = shop().await;
    let mina = h.mina().await;
    let marketing = h.key("marketing").await;
    for (index, token) in
        [None, Some("00".repeat(32)), Some(web_token("someone-else"))].into_iter().enumerate()
    {
        let mut page = json!({"type": "page", "userId": "mina-7", "anonymousId": "attacker-browser",
            "messageId": format!("forged-{index}"),
            "context": {"consent": {"categoryPreferences": {"Email": true, "Personalization": true, "Advertising": true}}}});
        if let Some(token) = token {
            page["context"]["identityToken"] = json!(token);
        }
        let (status, body) = h.track(WEB, page, false).await;
        assert_eq!(status, StatusCode::OK, "answered like any event, so it tells nothing: {body}");
    }
    assert!(h.ledger(&mina).await.is_empty(), "no consent of Mina's was recorded");
    let (status, read) =
        h.get(&format!("/v1/subjects/{mina}/profile?purpose={EMAIL_MARKETING}"), &marketing).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(read["traits"].get("email").is_none(), "her email stays unread without her consent: {read}");
    // The grants were recorded for the attacker's own browser, as claims.
    let device = h.subject_of("anonymous_id", "attacker-browser").await.unwrap();
    assert_ne!(device, mina);
    let ledger = h.ledger(&device).await;
    assert!(!ledger.is_empty());
    let receipts = h.state.store.receipts(&device).await.unwrap();
    let receipt: Value = serde_json::from_str(&receipts[0].body).unwrap();
    assert_eq!(receipt["receipt"]["iso27560"]["event"]["identity"], "claimed");
    assert_eq!(receipt["receipt"]["services"][0]["purposes"][0]["consentType"], "IMPLICIT");
}

#[tokio::test]
async fn claiming_a_customers_email_shows_the_claimant_nothing_of_theirs() {
    let h = shop().await;
    let mina = h.mina().await;
    // Mina's browsing, from the order service with her consent, and the model learns it.
    let key = h.key("personalization").await;
    let items = json!({"items": [{"id": "kettle", "categories": ["kitchen"]}, {"id": "teapot", "categories": ["kitchen"]}]});
    assert_eq!(h.post_json("/v1/items", &key, &items.to_string()).await.0, StatusCode::OK);
    let viewed = json!({"type": "track", "event": "Product Viewed", "userId": "mina-7", "messageId": "m-2",
        "properties": {"product_id": "kettle"},
        "context": {"consent": {"categoryPreferences": {"Personalization": true}}}});
    assert_eq!(h.track(BACKEND, viewed, false).await.0, StatusCode::OK);
    h.learn().await;

    // The attacker's anonymous browser says it has her email.
    let claim = json!({"type": "identify", "anonymousId": "x-browser", "messageId": "x-1",
                       "traits": {"email": "mina@example.com"}});
    assert_eq!(h.track(WEB, claim, false).await.0, StatusCode::OK);
    let device = h.subject_of("anonymous_id", "x-browser").await.unwrap();
    assert_ne!(device, mina, "not merged into her family");
    assert_eq!(h.subject_of("email", "mina@example.com").await.as_deref(), Some(mina.as_str()));
    let (status, shown) = h
        .get("/v1/recommendations?purpose=personalize.content&subject=anonymous_id:x-browser&n=5", &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_ne!(shown["subject"], mina.as_str());
    assert_eq!(shown["personalized"], false, "nothing of Mina's reaches the claimant: {shown}");
    assert!(!shown.to_string().contains("because_you_viewed"), "{shown}");
}

#[tokio::test]
async fn a_browser_event_names_its_device_and_may_not_alias_people() {
    let h = shop().await;
    h.mina().await;
    let (status, body) = h
        .track(
            WEB,
            json!({"type": "track", "event": "Product Viewed", "userId": "mina-7", "messageId": "n-1"}),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("unproven_identity"), "{body}");
    let alias = json!({"type": "alias", "previousId": "someone", "userId": "mina-7", "messageId": "n-2",
                       "context": {"identityToken": web_token("mina-7")}});
    let (status, body) = h.track(WEB, alias, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("server source"), "{body}");
}

#[tokio::test]
async fn a_signed_in_browser_with_its_token_links_its_history_and_records_the_persons_consent() {
    let h = shop().await;
    let mina = h.mina().await;
    // Browsing before signing in: the device's own.
    let before = json!({"type": "page", "anonymousId": "mina-laptop", "messageId": "b-1"});
    assert_eq!(h.track(WEB, before, false).await.0, StatusCode::OK);
    let device = h.subject_of("anonymous_id", "mina-laptop").await.unwrap();
    assert_ne!(device, mina);
    // Signed in: the shop's page sends the token its backend made for her.
    let signed_in = json!({"type": "identify", "userId": "mina-7", "anonymousId": "mina-laptop", "messageId": "b-2",
        "context": {"identityToken": web_token("mina-7"),
                    "consent": {"categoryPreferences": {"Email": true}}}});
    let (status, body) = h.track(WEB, signed_in, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 1, "{body}");
    assert_eq!(h.subject_of("anonymous_id", "mina-laptop").await.as_deref(), Some(mina.as_str()), "linked");
    let ledger = h.ledger(&mina).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        (ledger[0]["purpose"].as_str(), ledger[0]["method"].as_str()),
        (Some(EMAIL_MARKETING), Some("explicit"))
    );
    let receipt: Value = serde_json::from_str(&h.state.store.receipts(&mina).await.unwrap()[0].body).unwrap();
    assert_eq!(receipt["receipt"]["iso27560"]["event"]["identity"], "verified");
    assert_eq!(receipt["receipt"]["services"][0]["purposes"][0]["consentType"], "EXPLICIT");
    let (status, read) = h
        .get(&format!("/v1/subjects/{mina}/profile?purpose={EMAIL_MARKETING}"), &h.key("marketing").await)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["traits"]["email"], "mina@example.com", "her own yes, proven, opens it: {read}");
}
