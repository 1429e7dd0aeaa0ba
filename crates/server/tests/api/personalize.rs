//! Recommendations as a brand uses them and as its customers are protected by them: learned only
//! from people who permit personalization, never from sensitive events, released only with k
//! people behind a pair, forgotten at once on withdrawal or erasure, explained item by item, and
//! next-best-messages only through channels people consented to.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;

use crate::common::{Harness, basic};

pub(crate) const CATALOG: &str = r#"
[brand]
name = "Fernhill Market"
contact = "privacy@fernhill.example"

[sources.web]
kind = "server"
write_key = "wk_web_fernhill"
default_jurisdiction = "eu"

[sources.app]
kind = "server"
write_key = "wk_app_fernhill"
default_jurisdiction = "eu"
allow_sensitive = true

[jurisdictions.eu]
name = "European Union (GDPR)"
regime = "opt_in"
countries = ["DE"]

[purposes."essential.service"]
name = "Running your account"
description = "We use your account details to run the shop."
benefit = "Your orders arrive."

[purposes."personalize.content"]
name = "Product recommendations"
description = "We use what you looked at to suggest products you may like. You can switch this off at any time."
benefit = "Products that match your taste."

[purposes."marketing.communications.email"]
name = "Newsletter"
description = "We email you about new products."
benefit = "You hear about products you may like."

[properties."traits.email"]
category = "user.contact.email"
purposes = ["marketing.communications.email"]
retention = "2y"
identifier = "email"

[properties."traits.interests"]
category = "user.demographic.profile"
purposes = ["personalize.content"]
retention = "2y"

[properties."properties.product_id"]
category = "user.behavior.browsing_history"
purposes = ["personalize.content"]
retention = "1y"

[properties."properties.products[].product_id"]
category = "user.behavior.purchase_history"
purposes = ["personalize.content"]
retention = "1y"

[properties."context.location"]
category = "user.location.precise"
purposes = ["personalize.content"]
retention = "30d"
sensitive = true

[events."Product Viewed"]
feedback = "view"
item = "properties.product_id"

[events."Order Completed"]
feedback = "purchase"
item = "properties.products[].product_id"

[consent_categories]
Personalization = ["personalize.content"]
Email = ["marketing.communications.email"]

[personalization]
purpose = "personalize.content"
interests = "traits.interests"
sensitive_categories = ["pregnancy"]
min_support = 3

[personalization.placements.home]
n = 5

[personalization.placements.product]
n = 4
context = true

[personalization.channels.email]
purpose = "marketing.communications.email"
address = "traits.email"

[[personalization.messages]]
key = "welcome"
channel = "email"
stages = ["new"]
title = "Welcome"
body = "Thanks for joining us."

[roles.personalization]
purposes = ["personalize"]
categories = ["user"]

[roles.marketing]
purposes = ["marketing.communications.email"]
categories = ["user.contact"]

[roles.privacy]
purposes = ["essential"]
categories = ["user.privacy_preferences"]
requests = ["restrict", "erase"]
may = ["issue_links"]
"#;

const PURPOSE: &str = "personalize.content";

async fn harness() -> Harness {
    on(None).await
}

async fn on(database: Option<String>) -> Harness {
    let catalog = Catalog::parse(CATALOG).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    with_items(Harness::open(catalog, 64, database).await).await
}

pub(crate) async fn with_items(harness: Harness) -> Harness {
    let key = harness.key("personalization").await;
    let items = json!({"items": [
        {"id": "boot", "name": "Hiking Boot", "categories": ["shoes"], "price": 12000},
        {"id": "sock", "name": "Wool Sock", "categories": ["socks"], "price": 1500},
        {"id": "sandal", "name": "Sandal", "categories": ["shoes"], "price": 4000},
        {"id": "lace", "name": "Laces", "categories": ["shoes"], "price": 300},
        {"id": "hat", "name": "Sun Hat", "categories": ["hats"], "price": 2500},
        {"id": "test-kit", "name": "Pregnancy Test", "categories": ["pregnancy"], "price": 900}
    ]});
    let (status, body) = harness.post_json("/v1/items", &key, &items.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    harness
}

impl Harness {
    /// A customer's events through the tracking API: each a `Product Viewed` of `item`, with the
    /// banner choice for personalization.
    pub(crate) async fn views(&self, user: &str, items: &[&str], personalize: bool) {
        let batch: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                json!({"type": "track", "event": "Product Viewed", "userId": user,
                       "messageId": format!("{user}-{item}-{i}"),
                       "properties": {"product_id": item},
                       "context": {"consent": {"categoryPreferences": {"Personalization": personalize, "Email": true}}}})
            })
            .collect();
        self.batch("wk_web_fernhill", batch).await;
    }

    pub(crate) async fn batch(&self, write_key: &str, batch: Vec<Value>) {
        let request = Request::post("/v1/batch")
            .header(header::AUTHORIZATION, basic(write_key))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "batch": batch }).to_string()))
            .unwrap();
        let (status, _, body) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// What the serving instance's updater does every second.
    pub(crate) async fn learn(&self) {
        let engine = self.state.personalization.clone().expect("personalization is on");
        while tactful_app::personalize::update_dirty(&self.state, &engine).await.unwrap() > 0 {}
        engine.sync(self.state.store.as_ref(), &self.state.vault).await.unwrap();
    }

    async fn similar_ids(&self, key: &str, item: &str) -> Vec<(String, String)> {
        let (status, body) = self.get(&format!("/v1/items/{item}/similar?purpose={PURPOSE}&n=10"), key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        reasons(&body)
    }
}

/// `(item, reason type)` of each recommended item.
fn reasons(body: &Value) -> Vec<(String, String)> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_owned(), i["reason"]["type"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn people_who_permit_it_get_recommendations_explained_and_others_only_non_personalized_ones() {
    consenting_and_not(harness().await).await;
}

#[tokio::test]
async fn people_who_permit_it_get_recommendations_explained_and_others_only_non_personalized_ones_on_postgres()
 {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    consenting_and_not(on(Some(url)).await).await;
}

async fn consenting_and_not(h: Harness) {
    let key = h.key("personalization").await;
    for person in ["p1", "p2", "p3"] {
        h.views(person, &["boot", "sock"], true).await;
    }
    for person in ["p4", "p5"] {
        h.views(person, &["boot", "sandal"], true).await;
    }
    h.views("ada", &["boot"], true).await;
    h.learn().await;

    // Boot–sock has three people behind it (k = 3); boot–sandal only two, so it never shows.
    let similar = h.similar_ids(&key, "boot").await;
    assert_eq!(similar[0], ("sock".to_owned(), "similar_to".to_owned()), "{similar:?}");
    assert!(similar.iter().all(|(id, reason)| id != "sandal" || reason == "popular"), "{similar:?}");

    let (status, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:ada&n=3"), &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["personalized"], true);
    assert_eq!(body["items"][0]["id"], "sock");
    assert_eq!(body["items"][0]["reason"], json!({"type": "because_you_viewed", "item": "boot"}));
    assert!(reasons(&body).iter().all(|(id, _)| id != "boot"), "what Ada has is not offered again");

    // Someone who declined: their views change no aggregate, and they get popular items only.
    let before = (h.similar_ids(&key, "boot").await, h.similar_ids(&key, "sock").await);
    let model_before = h.state.personalization.as_ref().unwrap().info_now();
    h.views("bram", &["boot", "sock", "hat"], false).await;
    h.views("bram2", &["boot", "sandal"], false).await;
    h.learn().await;
    assert_eq!((h.similar_ids(&key, "boot").await, h.similar_ids(&key, "sock").await), before);
    assert_eq!(h.state.personalization.as_ref().unwrap().info_now().people, model_before.people);
    let (status, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:bram&n=5"), &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["personalized"], false);
    assert_eq!(body["not_personalized_because"], "consent_withdrawn");
    assert!(!body["items"].as_array().unwrap().is_empty(), "still useful: {body}");
    assert!(reasons(&body).iter().all(|(_, reason)| reason == "popular" || reason == "trending"), "{body}");

    // Both reads are in the audit log, the refused one as denied.
    let entries = h.state.store.audit_entries(0, 10_000).await.unwrap();
    let reads: Vec<String> = entries
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.text).unwrap())
        .filter(|e| e["kind"] == "read" || e["event"]["kind"] == "read" || e.to_string().contains("\"read\""))
        .map(|e| e.to_string())
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads[0].contains("permitted") && reads[1].contains("denied"), "{reads:?}");

    // A person who withdraws leaves every aggregate before the answer to their withdrawal.
    let withdraw = json!({"changes": [{"purpose": PURPOSE, "status": "withdrawn", "method": "explicit"}]});
    let privacy = h.key("privacy").await;
    let (status, body) =
        h.post_json("/v1/subjects/user_id:p1/consents", &privacy, &withdraw.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let similar = h.similar_ids(&key, "boot").await;
    assert!(
        similar.iter().all(|(id, reason)| id != "sock" || reason != "similar_to"),
        "two people are left behind boot–sock: {similar:?}"
    );
    let (_, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:p1&n=5"), &key).await;
    assert_eq!(body["personalized"], false, "{body}");
}

#[tokio::test]
async fn sensitive_events_and_items_never_reach_the_model_and_are_shown_only_to_who_asked() {
    let h = harness().await;
    let key = h.key("personalization").await;
    // Five people viewed the boot and the pregnancy test; three more did from the app with their
    // precise location (a sensitive category) on the event.
    for person in ["s1", "s2", "s3", "s4", "s5"] {
        h.views(person, &["boot", "test-kit", "sock"], true).await;
    }
    let located: Vec<Value> = ["l1", "l2", "l3"]
        .iter()
        .flat_map(|person| {
            ["hat", "lace"].map(|item| {
                json!({"type": "track", "event": "Product Viewed", "userId": person, "messageId": format!("{person}-{item}"),
                       "properties": {"product_id": item},
                       "context": {"location": {"latitude": 52.37, "longitude": 4.89},
                                   "consent": {"categoryPreferences": {"Personalization": true}}}})
            })
        })
        .collect();
    h.batch("wk_app_fernhill", located).await;
    h.views("ada", &["boot"], true).await;
    h.learn().await;

    // The test kit was viewed with the boot by five people: still never similar, never recommended.
    let similar = h.similar_ids(&key, "boot").await;
    assert!(similar.iter().all(|(id, _)| id != "test-kit"), "{similar:?}");
    assert_eq!(similar[0].0, "sock");
    // Hat and lace were only ever seen on located events: they are not even popular.
    assert!(h.similar_ids(&key, "hat").await.iter().all(|(id, _)| id != "lace"));
    let (_, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:ada&n=10"), &key).await;
    let got = reasons(&body);
    assert!(got.iter().all(|(id, _)| id != "test-kit" && id != "hat" && id != "lace"), "{got:?}");

    // Ada tells the shop she wants to see pregnancy products (zero-party data): now, and only
    // therefore, the test kit is there, with that reason.
    let identify = json!({"type": "identify", "userId": "ada", "messageId": "ada-interests",
                          "traits": {"interests": ["pregnancy", "hats"]},
                          "context": {"consent": {"categoryPreferences": {"Personalization": true}}}});
    h.batch("wk_web_fernhill", vec![identify]).await;
    h.learn().await;
    let (_, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:ada&n=10"), &key).await;
    let kit = body["items"].as_array().unwrap().iter().find(|i| i["id"] == "test-kit").expect("asked for");
    assert_eq!(kit["reason"], json!({"type": "you_told_us", "interest": "pregnancy"}));
    let hat = body["items"].as_array().unwrap().iter().find(|i| i["id"] == "hat").expect("asked for");
    assert_eq!(hat["reason"], json!({"type": "you_told_us", "interest": "hats"}));

    // What she lends the model is sealed: neither her interests nor her items are in clear.
    let bytes = h.database_bytes();
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains("\"interests\""), "interests in clear");
}

/// The catalog spells its sensitive categories as people write them ("Pregnancy", "Health"), the
/// brand's items spell theirs otherwise: still one category each. Before every side was normalized
/// alike, the catalog's list never matched the stored (lower-cased) item categories, so the
/// pregnancy test was learned from, recommended "because you viewed" and popular with everyone.
#[tokio::test]
async fn a_sensitive_category_is_one_category_in_any_spelling() {
    let catalog = CATALOG.replace(
        "sensitive_categories = [\"pregnancy\"]",
        "sensitive_categories = [\"Pregnancy\", \"Health\"]",
    );
    let catalog = Catalog::parse(&catalog).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let h = Harness::open(catalog, 64, None).await;
    let key = h.key("personalization").await;
    let items = json!({"items": [
        {"id": "boot", "name": "Hiking Boot", "categories": ["Shoes"]},
        {"id": "sock", "name": "Wool Sock", "categories": ["socks"]},
        {"id": "test-kit", "name": "Pregnancy Test", "categories": ["PREGNANCY "]},
        {"id": "vitamins", "name": "Prenatal Vitamins", "categories": ["health"]}
    ]});
    let (status, body) = h.post_json("/v1/items", &key, &items.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, kit) = h.get("/v1/items/test-kit", &key).await;
    assert_eq!((&kit["sensitive"], &kit["categories"]), (&json!(true), &json!(["pregnancy"])), "{kit}");

    // Six people viewed the boot with the kit and the vitamins (more than anything else), Ada the
    // boot.
    for person in ["s1", "s2", "s3", "s4", "s5", "s6"] {
        h.views(person, &["boot", "test-kit", "vitamins", "sock"], true).await;
    }
    h.views("ada", &["boot"], true).await;
    h.learn().await;
    let sensitive = |got: &[(String, String)]| got.iter().any(|(id, _)| id == "test-kit" || id == "vitamins");
    let (_, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:ada&n=10"), &key).await;
    let for_ada = reasons(&body);
    assert!(for_ada.contains(&("sock".to_owned(), "because_you_viewed".to_owned())), "{for_ada:?}");
    assert!(!sensitive(&for_ada), "not because she viewed the boot: {for_ada:?}");
    let (_, body) = h.get(&format!("/v1/recommendations?purpose={PURPOSE}&n=10"), &key).await;
    let for_anyone = reasons(&body);
    assert!(!for_anyone.is_empty() && !sensitive(&for_anyone), "not popular or trending: {for_anyone:?}");
    let (_, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&category=Pregnancy&n=10"), &key).await;
    assert!(!sensitive(&reasons(&body)), "not even when a filter names the category: {body}");
    assert!(!sensitive(&h.similar_ids(&key, "boot").await), "not like the boot");

    // Ada tells the shop, in her own spelling, that she wants pregnancy products: only now, and
    // only therefore, the kit is there.
    let identify = json!({"type": "identify", "userId": "ada", "messageId": "ada-interests",
                          "traits": {"interests": ["  Pregnancy"]},
                          "context": {"consent": {"categoryPreferences": {"Personalization": true}}}});
    h.batch("wk_web_fernhill", vec![identify]).await;
    h.learn().await;
    let (_, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:ada&n=10"), &key).await;
    let items = body["items"].as_array().unwrap();
    let kit = items.iter().find(|i| i["id"] == "test-kit").expect("asked for");
    assert_eq!(kit["reason"], json!({"type": "you_told_us", "interest": "pregnancy"}));
    assert!(items.iter().all(|i| i["id"] != "vitamins"), "health was not asked for: {body}");
}

/// P3: what a person tells us beats what we infer. Ada viewed shoes and socks again and again and
/// told the shop she likes hats: hats come first, because she said so, and what her views suggest
/// follows. (Before, a declared topic was a small boost and came after four items her views
/// suggested.)
#[tokio::test]
async fn declared_interests_come_before_what_behaviour_suggests() {
    let h = harness().await;
    let key = h.key("personalization").await;
    let cap = json!({"items": [{"id": "cap", "name": "Flat Cap", "categories": ["hats"], "price": 3000}]});
    let (status, body) = h.post_json("/v1/items", &key, &cap.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for person in ["p1", "p2", "p3", "p4"] {
        h.views(person, &["boot", "sock", "sandal", "lace"], true).await;
    }
    h.views("ada", &["boot", "sock", "boot", "sock", "boot", "sandal"], true).await;
    let identify = json!({"type": "identify", "userId": "ada", "messageId": "ada-interests",
                          "traits": {"interests": ["Hats"]},
                          "context": {"consent": {"categoryPreferences": {"Personalization": true}}}});
    h.batch("wk_web_fernhill", vec![identify]).await;
    h.learn().await;

    let (status, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:ada&n=5"), &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    let told = json!({"type": "you_told_us", "interest": "hats"});
    let mut first: Vec<&str> = items[..2].iter().map(|i| i["id"].as_str().unwrap()).collect();
    first.sort_unstable();
    assert_eq!(first, ["cap", "hat"], "{body}");
    assert!(items[..2].iter().all(|i| i["reason"] == told), "{body}");
    assert_eq!(items[2]["reason"]["type"], "because_you_viewed", "behaviour follows: {body}");
}

#[tokio::test]
async fn erasure_and_restriction_take_a_person_out_of_the_model() {
    let h = harness().await;
    let key = h.key("personalization").await;
    for person in ["p1", "p2", "p3"] {
        h.views(person, &["boot", "sock"], true).await;
    }
    h.learn().await;
    assert_eq!(h.similar_ids(&key, "boot").await[0], ("sock".to_owned(), "similar_to".to_owned()));
    let people = || h.state.personalization.as_ref().unwrap().info_now().people;
    assert_eq!(people(), 3);

    // Restricting processing: out at once.
    let privacy = h.key("privacy").await;
    let (status, body) = h
        .post_json(
            "/v1/requests",
            &privacy,
            &json!({"type": "restrict", "subject": "user_id:p2"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    tactful_app::requests::run_due(&h.state, tactful_app::now_millis()).await.unwrap();
    assert_eq!(people(), 2);
    assert!(
        h.similar_ids(&key, "boot").await.iter().all(|(id, reason)| id != "sock" || reason != "similar_to")
    );
    let (_, body) = h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:p2"), &key).await;
    assert_eq!(body["not_personalized_because"], "restricted", "{body}");

    // Erasure: out at once, and for good.
    let (status, body) = h
        .post_json("/v1/requests", &privacy, &json!({"type": "erase", "subject": "user_id:p1"}).to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for _ in 0..5 {
        tactful_app::requests::run_due(&h.state, tactful_app::now_millis()).await.unwrap();
    }
    assert_eq!(people(), 1);
    h.learn().await;
    assert_eq!(people(), 1, "nothing brings them back");
    let changes = h.state.store.model_changes(0, 100).await.unwrap();
    assert!(changes.iter().filter(|c| c.contribution.is_some()).count() == 1, "{changes:?}");
}

#[tokio::test]
async fn next_message_goes_only_through_channels_people_consented_to_and_says_why() {
    let h = harness().await;
    let marketing = h.key("marketing").await;
    let with_email = |user: &str, email_ok: bool| {
        json!({"type": "identify", "userId": user, "messageId": format!("{user}-id"),
               "traits": {"email": format!("{user}@example.com")},
               "context": {"consent": {"categoryPreferences": {"Personalization": true, "Email": email_ok}}}})
    };
    h.batch("wk_web_fernhill", vec![with_email("nia", true), with_email("otto", false)]).await;
    h.views("nia", &["boot"], true).await;
    h.learn().await;

    let (status, body) = h.get("/v1/subjects/user_id:nia/next-message?channel=email", &marketing).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stage"]["name"], "new");
    assert_eq!(body["message"]["key"], "welcome");
    assert_eq!(body["reason"]["code"], "rule");

    let (status, body) = h.get("/v1/subjects/user_id:otto/next-message?channel=email", &marketing).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], Value::Null);
    assert_eq!(body["reason"]["code"], "consent_withdrawn", "{body}");

    let (status, body) = h.get("/v1/subjects/user_id:nia/next-message?channel=sms", &marketing).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_channel")),
        "{body}"
    );
    let (status, _) = h.get("/v1/subjects/user_id:nia/next-message", &marketing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let personalization = h.key("personalization").await;
    let (status, _) = h.get("/v1/subjects/user_id:nia/next-message?channel=email", &personalization).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the personalization role may not use email marketing");
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let h = harness().await;
    let key = h.key("personalization").await;
    h.views("ada", &["boot"], true).await;
    h.learn().await;
    let cases: &[(&str, StatusCode, &str)] = &[
        ("/v1/recommendations?subject=user_id:ada", StatusCode::BAD_REQUEST, "purpose_required"),
        ("/v1/recommendations?purpose=personalize.nothing", StatusCode::BAD_REQUEST, "unknown_purpose"),
        (
            "/v1/recommendations?purpose=marketing.communications.email",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("/v1/recommendations?purpose=personalize.content&n=0", StatusCode::BAD_REQUEST, "invalid_request"),
        ("/v1/recommendations?purpose=personalize.content&n=101", StatusCode::BAD_REQUEST, "invalid_request"),
        ("/v1/recommendations?purpose=personalize.content&n=ten", StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "/v1/recommendations?purpose=personalize.content&offset=-1",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/recommendations?purpose=personalize.content&placement=footer",
            StatusCode::BAD_REQUEST,
            "unknown_placement",
        ),
        (
            "/v1/recommendations?purpose=personalize.content&placement=product",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/recommendations?purpose=personalize.content&subject=user_id:nobody",
            StatusCode::NOT_FOUND,
            "unknown_subject",
        ),
        (
            "/v1/recommendations?purpose=personalize.content&subject=sub_nobody",
            StatusCode::NOT_FOUND,
            "unknown_subject",
        ),
        (
            "/v1/recommendations?purpose=personalize.content&item=nothing",
            StatusCode::NOT_FOUND,
            "unknown_item",
        ),
        ("/v1/items/nothing/similar?purpose=personalize.content", StatusCode::NOT_FOUND, "unknown_item"),
        ("/v1/items/boot/similar", StatusCode::BAD_REQUEST, "purpose_required"),
        ("/v1/items/nothing", StatusCode::NOT_FOUND, "unknown_item"),
    ];
    for (path, status, code) in cases {
        let (got, body) = h.get(path, &key).await;
        assert_eq!((got, body["error"]["code"].as_str()), (*status, Some(*code)), "{path}: {body}");
    }
    let bad_items: &[&str] = &[
        r#"{"items": []}"#,
        r#"{"items": [{"name": "no id"}]}"#,
        r#"{"items": [{"id": "x", "price": -1}]}"#,
        r#"{"items": [{"id": "x", "colour": "red"}]}"#,
        r#"{"items": [{"id": "x", "attributes": [1]}]}"#,
        r#"{"items": "boot"}"#,
        "not json",
    ];
    for body in bad_items {
        let (status, answer) = h.post_json("/v1/items", &key, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, answer) = h.get("/v1/items/x", &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing of the bad batches was stored: {answer}");
    // A good request still works, with a placement and paging.
    let (status, body) = h
        .get("/v1/recommendations?purpose=personalize.content&subject=user_id:ada&placement=home&n=2", &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["placement"], "home");
}

#[tokio::test]
async fn two_instances_share_one_model_through_the_store_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    let first = on(Some(url.clone())).await;
    let catalog = Catalog::parse(CATALOG).unwrap();
    let key_file = first.dir.path().join("master.key");
    let second =
        Harness::configured(catalog, 64, Some(url), |config| config.master_key_file = key_file).await;
    let key = first.key("personalization").await;
    for person in ["p1", "p2", "p3"] {
        first.views(person, &["boot", "sock"], true).await;
    }
    // The first instance's updater learns; the second only reads the store's changes.
    first.learn().await;
    let engine = second.state.personalization.clone().unwrap();
    engine.sync(second.state.store.as_ref(), &second.state.vault).await.unwrap();
    assert_eq!(second.similar_ids(&key, "boot").await, first.similar_ids(&key, "boot").await);
    assert_eq!(second.similar_ids(&key, "boot").await[0], ("sock".to_owned(), "similar_to".to_owned()));

    // A withdrawal on the second instance: out of its model at once, out of the first's on its
    // next sync.
    let privacy = second.key("privacy").await;
    let withdraw = json!({"changes": [{"purpose": PURPOSE, "status": "withdrawn", "method": "explicit"}]});
    let (status, body) =
        second.post_json("/v1/subjects/user_id:p3/consents", &privacy, &withdraw.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(engine.info_now().people, 2);
    let first_engine = first.state.personalization.clone().unwrap();
    first_engine.sync(first.state.store.as_ref(), &first.state.vault).await.unwrap();
    assert_eq!(first_engine.info_now().people, 2);
    assert!(first.similar_ids(&key, "boot").await.iter().all(|(id, r)| id != "sock" || r != "similar_to"));
}

#[tokio::test]
async fn a_noisy_release_records_the_privacy_it_spent_in_the_audit_log() {
    let catalog = CATALOG.replace("min_support = 3", "min_support = 3\nepsilon = 2.0\ncap = 5");
    let catalog = Catalog::parse(&catalog).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let h = Harness::open(catalog, 64, None).await;
    for person in 0..40 {
        h.views(&format!("p{person}"), &["boot", "sock"], true).await;
    }
    h.learn().await;
    let engine = h.state.personalization.clone().unwrap();
    engine.release_whole(h.state.store.as_ref(), tactful_app::now_millis()).await.unwrap();
    let released: Vec<Value> = h
        .state
        .store
        .audit_entries(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.text).unwrap())
        .filter(|e| e.to_string().contains("model_released"))
        .collect();
    assert!(!released.is_empty(), "every noisy release is audited");
    let text = released.last().unwrap().to_string();
    let epsilon: f64 =
        text.split("\"epsilon\":\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().parse().unwrap();
    assert!((epsilon - 2.0).abs() < 1e-9, "{text}");
    assert!(engine.info_now().epsilon.is_some_and(|e| (e - 2.0).abs() < 1e-9));
}

#[tokio::test]
async fn a_gaussian_release_puts_noise_on_the_catalogues_pairs_and_names_only_its_items() {
    let settings = "min_support = 3\nepsilon = 4.0\nmechanism = \"gaussian\"\ncap = 3";
    let catalog = CATALOG.replace("min_support = 3", settings);
    let catalog = Catalog::parse(&catalog).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let h = with_items(Harness::open(catalog, 64, None).await).await;
    // "ghost" is seen in events but is not in the catalogue: it is outside the public domain.
    for person in 0..40 {
        h.views(&format!("p{person}"), &["boot", "sock", "ghost"], true).await;
    }
    h.learn().await;
    let engine = h.state.personalization.clone().unwrap();
    engine.release_whole(h.state.store.as_ref(), tactful_app::now_millis()).await.unwrap();
    let info = engine.info_now();
    assert_eq!(info.delta, Some(1e-7), "the catalog's default δ: {info:?}");
    assert!(info.epsilon.is_some_and(|e| (e - 4.0).abs() < 1e-5), "{info:?}");
    let key = h.key("personalization").await;
    let similar = h.similar_ids(&key, "boot").await;
    assert_eq!(similar.first(), Some(&("sock".to_owned(), "similar_to".to_owned())), "{similar:?}");
    assert!(similar.iter().all(|(id, _)| id != "ghost"), "{similar:?}");
}

#[tokio::test]
async fn a_consent_that_lapses_takes_the_person_out_of_the_model() {
    let clock = std::sync::Arc::new(tactful_app::ManualClock::at(tactful_app::now_millis()));
    let catalog = Catalog::parse(CATALOG).unwrap();
    let h = with_items(Harness::clocked(catalog, clock.clone()).await).await;
    let (key, privacy) = (h.key("personalization").await, h.key("privacy").await);
    for person in ["p1", "p2", "p3"] {
        h.views(person, &["boot", "sock"], true).await;
    }
    // Ada says yes to personalization for one hour, through the brand's API; her events carry no
    // banner choice of their own.
    h.batch("wk_web_fernhill", vec![json!({"type": "identify", "userId": "ada", "messageId": "ada-0"})])
        .await;
    let expires = tactful_domain::segment::format_time(h.state.now() + 3_600_000);
    let changes = json!({"changes": [{"purpose": PURPOSE, "status": "given", "expires_at": expires}]});
    let (status, body) =
        h.post_json("/v1/subjects/user_id:ada/consents", &privacy, &changes.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let views: Vec<Value> = ["boot", "hat"]
        .iter()
        .map(|item| {
            json!({"type": "track", "event": "Product Viewed", "userId": "ada",
                   "messageId": format!("ada-{item}"), "properties": {"product_id": item}})
        })
        .collect();
    h.batch("wk_web_fernhill", views).await;
    h.learn().await;
    let ada = h.subject_of("user_id", "ada").await.unwrap();
    let engine = h.state.personalization.clone().unwrap();
    assert!(engine.person(&ada).is_some(), "Ada lends the model what she viewed while she permits it");
    let people = engine.info_now().people;

    // Two hours on, the expiry job records the lapse: she leaves the model at once, without waiting
    // for anything else of hers to happen.
    clock.advance(2 * 3_600_000);
    assert_eq!(tactful_app::consents::record_lapsed(&h.state, h.state.now()).await.unwrap(), 1);
    assert!(engine.person(&ada).is_none(), "a lapsed consent takes the person out of the model");
    assert_eq!(engine.info_now().people, people - 1);
    let (status, body) =
        h.get(&format!("/v1/recommendations?purpose={PURPOSE}&subject=user_id:ada&n=3"), &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["personalized"], false);
    assert_eq!(body["not_personalized_because"], "consent_expired");
}

#[tokio::test]
async fn with_differential_privacy_someone_who_leaves_is_out_of_what_is_served_within_a_minute() {
    let clock = std::sync::Arc::new(tactful_app::ManualClock::at(tactful_app::now_millis()));
    let catalog = CATALOG.replace("min_support = 3", "min_support = 3\nepsilon = 2.0\ncap = 5");
    let catalog = Catalog::parse(&catalog).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let h = with_items(Harness::clocked(catalog, clock.clone()).await).await;
    let privacy = h.key("privacy").await;
    for person in 0..20 {
        h.views(&format!("p{person}"), &["boot", "sock"], true).await;
    }
    h.learn().await;
    let engine = h.state.personalization.clone().unwrap();
    // The scheduled noisy release, with everyone in it.
    engine.release_whole(h.state.store.as_ref(), h.state.now()).await.unwrap();
    let released = |h: &Harness| {
        let h = h.state.store.clone();
        async move {
            h.audit_entries(0, 10_000)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.text.contains("model_released"))
                .count()
        }
    };
    let (people, releases) = (engine.info_now().people, released(&h).await);
    assert_eq!(people, 20);

    // A second later p0 withdraws: they leave the aggregates at once, and what is served a minute
    // later at most.
    clock.advance(1_000);
    let changes = json!({"changes": [{"purpose": PURPOSE, "status": "withdrawn"}]});
    let (status, body) =
        h.post_json("/v1/subjects/user_id:p0/consents", &privacy, &changes.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(engine.info_now().people >= people - 1, "a noisy release is only ever made whole");
    clock.advance(tactful_app::personalize::RELEASE_AFTER_LEAVING_MS + 1_000);
    engine.sync_at(h.state.store.as_ref(), &h.state.vault, h.state.now()).await.unwrap();
    assert_eq!(engine.info_now().people, people - 1, "served without them within a minute");
    assert_eq!(released(&h).await, releases + 1, "the release, and the ε it spent, is in the audit log");
}
