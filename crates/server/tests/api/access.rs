//! The brand API as a brand's engineers use it: purpose-gated reads that follow the customer's
//! consent, consents recorded through the API with signed receipts, GPC, the access log, the audit
//! log, API keys, and every kind of bad request (none of which changes what is stored).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tactful_domain::receipt;
use tactful_vault::PublicKey;

use crate::common::{Harness, basic};

/// A bookshop selling in the EU (opt-in, with a guardrail keeping location out of ads) and in
/// California (opt-out). Email serves only email marketing here, so without that consent an EU
/// customer's address is not kept at all.
pub(crate) const CATALOG: &str = r#"
[brand]
name = "Lantern Books"
contact = "privacy@lantern.example"
policy_url = "https://lantern.example/privacy"

[sources.web]
kind = "server"
write_key = "wk_web_lantern"
default_jurisdiction = "eu"

[sources.california]
kind = "server"
write_key = "wk_ca_lantern"
default_jurisdiction = "us-ca"

[jurisdictions.eu]
name = "European Union (GDPR)"
regime = "opt_in"
countries = ["DE", "FR"]

[jurisdictions.us-ca]
name = "California (CCPA/CPRA)"
regime = "opt_out"
countries = ["US-CA"]

[purposes."essential.service"]
name = "Running your account"
description = "We use your account details to run the shop."
benefit = "Your orders arrive."

[purposes."marketing.communications.email"]
name = "Newsletter"
description = "We email you about new books."
benefit = "You hear about books you may like."

[purposes."marketing.advertising.third_party.targeted"]
name = "Ads elsewhere"
description = "We share which books you looked at with ad partners."
benefit = "Ads for books you were interested in."

[purposes."personalize.content"]
name = "Recommendations"
description = "We use what you looked at to suggest books. You can switch this off at any time."
benefit = "Books that match your taste."

[properties."traits.email"]
category = "user.contact.email"
purposes = ["marketing.communications.email"]
retention = "2y"
identifier = "email"

[properties."traits.city"]
category = "user.location.imprecise"
purposes = ["marketing.communications.email", "personalize.content", "marketing.advertising.third_party.targeted"]
retention = "1y"

[properties."properties.book_id"]
category = "user.behavior.browsing_history"
purposes = ["personalize.content", "marketing.advertising.third_party.targeted"]
retention = "1y"

[events."Book Viewed"]

[consent_categories]
Email = ["marketing.communications.email"]
Advertising = ["marketing.advertising.third_party.targeted"]

[[guardrails]]
name = "no-location-for-ads-in-the-eu"
categories = ["user.location"]
purposes = ["marketing.advertising"]
jurisdictions = ["eu"]

[roles.marketing]
purposes = ["marketing.communications.email"]
categories = ["user.contact", "user.location"]

[roles.ads]
purposes = ["marketing.advertising"]
categories = ["user.location", "user.behavior"]

[roles.personalization]
purposes = ["personalize"]
categories = ["user"]

[roles.privacy]
purposes = ["essential"]
categories = ["user.privacy_preferences"]
requests = ["access", "export", "rectify", "restrict", "unrestrict", "object", "erase", "suppress", "unsuppress"]
may = ["verify_requests", "read_audit_log"]
"#;

pub(crate) const EMAIL: &str = "mina.harker@example.com";
pub(crate) const MARKETING: &str = "marketing.communications.email";

async fn harness() -> Harness {
    on(None).await
}

/// On SQLite, or on PostgreSQL at `database`.
async fn on(database: Option<String>) -> Harness {
    let catalog = Catalog::parse(CATALOG).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    Harness::open(catalog, 64, database).await
}

impl Harness {
    /// A new API key with `role`, as `tactful api-keys create` makes it.
    pub(crate) async fn key(&self, role: &str) -> String {
        let (_, key) = tactful_app::keys::create_api_key(&self.state, "test", role, None).await.unwrap();
        key.to_string()
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub(crate) async fn post_json(&self, path: &str, key: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    /// Sends one event through the tracking API with a source's write key.
    pub(crate) async fn track(&self, write_key: &str, event: Value, gpc: bool) -> (StatusCode, Value) {
        let mut request = Request::post("/v1/batch")
            .header(header::AUTHORIZATION, basic(write_key))
            .header(header::CONTENT_TYPE, "application/json");
        if gpc {
            request = request.header("sec-gpc", "1");
        }
        let body = json!({"batch": [event]});
        let (status, _, body) = self.send(request.body(Body::from(body.to_string())).unwrap()).await;
        (status, body)
    }

    /// The reader's identify: email and city, as a sign-up form sends them.
    pub(crate) async fn identify(&self, message_id: &str, city: &str) {
        let event = json!({"type": "identify", "userId": "reader-1", "messageId": message_id,
                           "traits": {"email": EMAIL, "city": city}});
        let (status, body) = self.track("wk_web_lantern", event, false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub(crate) async fn consent(&self, key: &str, status: &str) -> Value {
        let body = json!({"changes": [{"purpose": MARKETING, "status": status, "method": "explicit"}]});
        let (code, answer) =
            self.post_json("/v1/subjects/user_id:reader-1/consents", key, &body.to_string()).await;
        assert_eq!(code, StatusCode::CREATED, "{answer}");
        answer
    }

    pub(crate) async fn read(&self, key: &str, purpose: &str) -> Value {
        let (status, body) = self
            .get(&format!("/v1/subjects/user_id:reader-1/profile?purpose={purpose}&events=10"), key)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn withheld(read: &Value, category: &str) -> Option<String> {
    read["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["category"] == category)
        .map(|entry| entry["reason"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_eu_readers_email_and_city_follow_their_marketing_consent() {
    an_eu_reader(harness().await).await;
}

#[tokio::test]
async fn an_eu_readers_email_and_city_follow_their_marketing_consent_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    an_eu_reader(on(Some(url)).await).await;
}

async fn an_eu_reader(harness: Harness) {
    let (marketing, personalization, privacy) =
        (harness.key("marketing").await, harness.key("personalization").await, harness.key("privacy").await);

    // No consent yet: the email and the city are not even stored, and the email does not identify.
    harness.identify("m-1", "Whitby").await;
    let read = harness.read(&marketing, MARKETING).await;
    assert_eq!(read["traits"], json!({}), "{read}");
    let subject = harness.subject_of("user_id", "reader-1").await.unwrap();
    assert!(harness.profile(&subject).await.is_empty(), "nothing kept without consent");
    assert_eq!(
        harness.subject_of("email", EMAIL).await,
        None,
        "the email is not kept as an identifier either"
    );
    assert_eq!(
        harness.get("/v1/subjects/email:mina.harker@example.com/consents", &privacy).await.0,
        StatusCode::NOT_FOUND
    );

    // Consent given through the API: the next event's values are stored and readable for email
    // marketing, and only for it.
    let answer = harness.consent(&privacy, "given").await;
    let marketing_state =
        answer["purposes"].as_array().unwrap().iter().find(|p| p["purpose"] == MARKETING).unwrap();
    assert_eq!(marketing_state["status"], "given");
    assert_eq!(answer["receipts"].as_array().unwrap().len(), 1);
    harness.identify("m-2", "Whitby").await;
    let read = harness.read(&marketing, MARKETING).await;
    assert_eq!(read["traits"], json!({"email": EMAIL, "city": "Whitby"}), "{read}");
    assert_eq!(read["decision"], "permitted");
    assert_eq!(harness.subject_of("email", EMAIL).await, Some(subject.clone()));
    let read = harness.read(&personalization, "personalize.content").await;
    assert_eq!(read["traits"], json!({}), "{read}");
    assert_eq!(withheld(&read, "user.location.imprecise").as_deref(), Some("no_consent"));
    assert_eq!(withheld(&read, "user.contact.email").as_deref(), Some("purpose_not_served"));
    assert_eq!(read["decision"], "denied");

    // Withdrawn: no longer returned, and the reason is said.
    harness.consent(&privacy, "withdrawn").await;
    let read = harness.read(&marketing, MARKETING).await;
    assert_eq!(read["traits"], json!({}), "{read}");
    assert_eq!(withheld(&read, "user.contact.email").as_deref(), Some("consent_withdrawn"));
    assert_eq!(withheld(&read, "user.location.imprecise").as_deref(), Some("consent_withdrawn"));
    for entry in read["withheld"].as_array().unwrap() {
        assert_eq!(entry["count"], 1, "counted, never shown: {entry}");
    }
    // And the next event's values are dropped again, counted as not permitted.
    harness.identify("m-3", "Scarborough").await;
    let profile = harness.profile(&subject).await;
    assert_eq!(profile["traits.city"], "Whitby", "the withdrawn-for value was not replaced: {profile:?}");

    // The person's access log tells who read, when and why; it names categories, never values.
    let (status, log) = harness.get("/v1/subjects/user_id:reader-1/access-log", &privacy).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let kinds: Vec<&str> =
        log["entries"].as_array().unwrap().iter().map(|entry| entry["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["read", "consent", "read", "read", "consent", "read"], "newest first: {log}");
    let first_read = &log["entries"][5];
    assert_eq!(first_read["purpose"], MARKETING);
    assert_eq!(first_read["role"], "marketing");
    assert!(first_read["actor"].as_str().unwrap().starts_with("key_"));
    assert!(!log.to_string().contains(EMAIL) && !log.to_string().contains("Whitby"));

    // Nothing personal in clear in the database, its audit log included (SQLite: the file).
    let bytes = harness.database_bytes();
    assert_eq!(bytes.is_empty(), harness.state.store.backend() == "postgres");
    for secret in [EMAIL.as_bytes(), b"Whitby", b"Scarborough", b"reader-1"] {
        assert!(
            !bytes.windows(secret.len()).any(|window| window == secret),
            "{} in clear",
            String::from_utf8_lossy(secret)
        );
    }
}

#[tokio::test]
async fn guardrails_and_roles_hold_even_with_consent() {
    let harness = harness().await;
    let (ads, privacy) = (harness.key("ads").await, harness.key("privacy").await);
    let event = json!({"type": "identify", "userId": "reader-1", "messageId": "a-1", "traits": {"city": "Lyon"},
                       "context": {"consent": {"categoryPreferences": {"Advertising": true, "Email": true}}}});
    assert_eq!(harness.track("wk_web_lantern", event, false).await.0, StatusCode::OK);
    let view = json!({"type": "track", "event": "Book Viewed", "userId": "reader-1", "messageId": "a-2",
                      "properties": {"book_id": "dracula"}});
    assert_eq!(harness.track("wk_web_lantern", view, false).await.0, StatusCode::OK);

    let read = harness.read(&ads, "marketing.advertising.third_party.targeted").await;
    assert_eq!(
        withheld(&read, "user.location.imprecise").as_deref(),
        Some("guardrail:no-location-for-ads-in-the-eu")
    );
    assert_eq!(read["events"][0]["data"]["properties"]["book_id"], "dracula", "{read}");
    assert_eq!(read["decision"], "partial");

    // The consent the banner sent is in the ledger, with receipts.
    let (_, consents) = harness.get("/v1/subjects/user_id:reader-1/consents", &privacy).await;
    let ledger = consents["ledger"].as_array().unwrap();
    assert_eq!(ledger.len(), 2, "{consents}");
    assert!(ledger.iter().all(|entry| entry["method"] == "explicit" && entry["source"] == "web"));

    // A role reads only for its purposes.
    let (status, body) =
        harness.get(&format!("/v1/subjects/user_id:reader-1/profile?purpose={MARKETING}"), &ads).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (_, log) = harness.get("/v1/subjects/user_id:reader-1/access-log", &privacy).await;
    assert_eq!(log["entries"][0]["decision"], "denied", "refused reads are logged too: {log}");
    // And the refusal does not tell whether a customer exists.
    let (status, _) =
        harness.get(&format!("/v1/subjects/user_id:nobody/profile?purpose={MARKETING}"), &ads).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn gpc_opts_a_californian_out_of_sale_and_sharing() {
    let harness = harness().await;
    let (ads, privacy) = (harness.key("ads").await, harness.key("privacy").await);
    for (user, gpc) in [("ca-opted-out", true), ("ca-default", false)] {
        let view = json!({"type": "track", "event": "Book Viewed", "userId": user, "messageId": format!("{user}-1"),
                          "properties": {"book_id": "carmilla"}});
        let (status, body) = harness.track("wk_ca_lantern", view, gpc).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let read = |user: &'static str| {
        let (harness, ads) = (&harness, &ads);
        async move {
            let path = format!(
                "/v1/subjects/user_id:{user}/profile?purpose=marketing.advertising.third_party.targeted&events=5"
            );
            harness.get(&path, ads).await.1
        }
    };
    let opted_out = read("ca-opted-out").await;
    assert_eq!(opted_out["events"], json!([]), "{opted_out}");
    // Kept for recommendations (allowed until opted out), but not for ads after the GPC opt-out.
    assert_eq!(withheld(&opted_out, "user.behavior.browsing_history").as_deref(), Some("consent_withdrawn"));
    let default = read("ca-default").await;
    assert_eq!(
        default["events"][0]["data"]["properties"]["book_id"], "carmilla",
        "opt-out regime: allowed until opted out"
    );

    let (_, consents) = harness.get("/v1/subjects/user_id:ca-opted-out/consents", &privacy).await;
    let ads_state = consents["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|purpose| purpose["purpose"] == "marketing.advertising.third_party.targeted")
        .unwrap()
        .clone();
    assert_eq!(ads_state["status"], "withdrawn", "{consents}");
    assert_eq!(ads_state["method"], "gpc");
    let (_, receipts) = harness.get("/v1/subjects/user_id:ca-opted-out/consents/receipts", &privacy).await;
    assert_eq!(receipts["receipts"][0]["receipt"]["collectionMethod"], "gpc", "{receipts}");
}

#[tokio::test]
async fn receipts_are_signed_by_the_published_key() {
    let harness = harness().await;
    let privacy = harness.key("privacy").await;
    harness.identify("r-1", "Whitby").await;
    let answer = harness.consent(&privacy, "given").await;
    let id = answer["receipts"][0]["receipt"]["consentReceiptID"].as_str().unwrap().to_owned();

    let (status, signed) =
        harness.get(&format!("/v1/subjects/user_id:reader-1/consents/receipts/{id}"), &privacy).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let (_, _, published) = harness.send(Request::get("/v1/signing-key").body(Body::empty()).unwrap()).await;
    let published = PublicKey::from_base64(published["public_key"].as_str().unwrap()).unwrap();
    let parts = receipt::parts(&signed).unwrap();
    assert_eq!(parts.public_key, published.0);
    assert!(published.verify(
        receipt::SIGNING_CONTEXT,
        &receipt::signing_bytes(&parts.receipt),
        &parts.signature
    ));
    assert_eq!(parts.receipt["iso27560"]["purposes"][0]["key"], MARKETING);

    let mut forged = parts.receipt.clone();
    forged["iso27560"]["event"]["type"] = json!("withdrawn");
    assert!(!published.verify(receipt::SIGNING_CONTEXT, &receipt::signing_bytes(&forged), &parts.signature));

    // A receipt belongs to its person: another subject's path does not reach it.
    let other = json!({"type": "identify", "userId": "reader-2", "messageId": "r-2", "traits": {}});
    assert_eq!(harness.track("wk_web_lantern", other, false).await.0, StatusCode::OK);
    let (status, body) =
        harness.get(&format!("/v1/subjects/user_id:reader-2/consents/receipts/{id}"), &privacy).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_receipt")));
}

#[tokio::test]
async fn the_consent_export_and_the_audit_log_are_there_for_the_privacy_team() {
    let harness = harness().await;
    let (privacy, marketing) = (harness.key("privacy").await, harness.key("marketing").await);
    harness.identify("e-1", "Whitby").await;
    harness.consent(&privacy, "given").await;
    harness.consent(&privacy, "withdrawn").await;
    harness.read(&marketing, MARKETING).await;

    let request = Request::get("/v1/consents/export?format=csv")
        .header(header::AUTHORIZATION, format!("Bearer {privacy}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, csv) = harness.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.as_str().unwrap().to_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0]
            .starts_with("subject,receipt,purpose,status,method,at,expires_at,version,source,jurisdiction,")
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].contains(",marketing.communications.email,given,explicit,")
            && lines[1].ends_with(",1,api,eu,,,,,,")
    );
    assert!(lines[2].contains(",withdrawn,"));
    let (_, exported) = harness.get("/v1/consents/export?format=json", &privacy).await;
    assert_eq!(exported["consents"].as_array().unwrap().len(), 2);
    assert!(!csv.contains(EMAIL) && !exported.to_string().contains(EMAIL));
    assert_eq!(
        harness.get("/v1/consents/export?format=xml", &privacy).await.1["error"]["code"],
        "invalid_request"
    );
    assert_eq!(harness.get("/v1/consents/export", &marketing).await.0, StatusCode::FORBIDDEN);

    let (status, checkpoint) = harness.post_json("/v1/audit/checkpoints", &privacy, "").await;
    assert_eq!(status, StatusCode::OK, "{checkpoint}");
    let size = checkpoint["checkpoint"]["size"].as_u64().unwrap();
    assert_eq!(size, 7, "two key creations, two consent changes, the read and the two exports: {checkpoint}");
    let (_, entries) = harness.get("/v1/audit/verify", &privacy).await;
    assert_eq!(entries["entries"], 7);
    let (status, report) = harness.get("/v1/audit/verify", &privacy).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["checkpoints_checked"], 1);
    let (_, listed) = harness.get("/v1/audit/checkpoints", &privacy).await;
    assert_eq!(listed["checkpoints"][0], checkpoint["checkpoint"]);
    assert_eq!(harness.get("/v1/audit/verify", &marketing).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    bad_requests(harness().await).await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    bad_requests(on(Some(url)).await).await;
}

async fn bad_requests(harness: Harness) {
    let (marketing, privacy) = (harness.key("marketing").await, harness.key("privacy").await);
    harness.identify("b-1", "Whitby").await;
    harness.consent(&privacy, "given").await;
    let subject = harness.subject_of("user_id", "reader-1").await.unwrap();
    let before = (
        harness.state.store.subject_state(&subject).await.unwrap(),
        harness.state.store.receipts(&subject).await.unwrap().len(),
        harness.state.store.stats().await.unwrap(),
        harness.profile(&subject).await,
    );

    let profile = format!("/v1/subjects/user_id:reader-1/profile?purpose={MARKETING}");
    let expired = {
        let past = tactful_app::now_millis() - 1;
        tactful_app::keys::create_api_key(&harness.state, "old", "marketing", Some(past))
            .await
            .unwrap()
            .1
            .to_string()
    };
    let revoked = {
        let (record, key) =
            tactful_app::keys::create_api_key(&harness.state, "gone", "marketing", None).await.unwrap();
        let audit = tactful_domain::audit::AuditEvent::KeyRevoked { key: record.id.clone() };
        assert!(
            harness.state.store.revoke_api_key(&record.id, tactful_app::now_millis(), audit).await.unwrap()
        );
        key.to_string()
    };
    let forged = format!("{}x", &marketing[..marketing.len() - 1]);
    let no_key = harness.send(Request::get(&profile).body(Body::empty()).unwrap()).await;
    assert_eq!(
        (no_key.0, no_key.2["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_api_key"))
    );
    let basic_auth = harness
        .send(
            Request::get(&profile)
                .header(header::AUTHORIZATION, basic("wk_web_lantern"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(basic_auth.2["error"]["code"], "missing_api_key", "a write key is not an API key");

    let cases: Vec<(String, &str, StatusCode, &str)> = vec![
        (profile.clone(), forged.as_str(), StatusCode::UNAUTHORIZED, "invalid_api_key"),
        (profile.clone(), "tk_nonsense", StatusCode::UNAUTHORIZED, "invalid_api_key"),
        (profile.clone(), expired.as_str(), StatusCode::UNAUTHORIZED, "expired_api_key"),
        (profile.clone(), revoked.as_str(), StatusCode::UNAUTHORIZED, "revoked_api_key"),
        (
            "/v1/subjects/user_id:reader-1/profile".into(),
            &marketing,
            StatusCode::BAD_REQUEST,
            "purpose_required",
        ),
        (
            "/v1/subjects/user_id:reader-1/profile?purpose=".into(),
            &marketing,
            StatusCode::BAD_REQUEST,
            "purpose_required",
        ),
        (
            "/v1/subjects/user_id:reader-1/profile?purpose=marketing.telepathy".into(),
            &marketing,
            StatusCode::BAD_REQUEST,
            "unknown_purpose",
        ),
        (
            format!("/v1/subjects/user_id:nobody/profile?purpose={MARKETING}"),
            &marketing,
            StatusCode::NOT_FOUND,
            "unknown_subject",
        ),
        (
            format!("/v1/subjects/sub_nobody/profile?purpose={MARKETING}"),
            &marketing,
            StatusCode::NOT_FOUND,
            "unknown_subject",
        ),
        (
            format!("/v1/subjects/reader-1/profile?purpose={MARKETING}"),
            &marketing,
            StatusCode::BAD_REQUEST,
            "invalid_identifier",
        ),
        (
            format!("/v1/subjects/shoe_size:42/profile?purpose={MARKETING}"),
            &marketing,
            StatusCode::BAD_REQUEST,
            "invalid_identifier",
        ),
        (
            format!("/v1/subjects/email:not-an-email/profile?purpose={MARKETING}"),
            &marketing,
            StatusCode::BAD_REQUEST,
            "invalid_identifier",
        ),
        (format!("{profile}&events=1000"), &marketing, StatusCode::BAD_REQUEST, "invalid_request"),
        (format!("{profile}&events=many"), &marketing, StatusCode::BAD_REQUEST, "invalid_request"),
        ("/v1/subjects/user_id:reader-1/consents".into(), &marketing, StatusCode::FORBIDDEN, "forbidden"),
        (
            "/v1/subjects/user_id:reader-1/consents/receipts/cr_nothing".into(),
            &privacy,
            StatusCode::NOT_FOUND,
            "unknown_receipt",
        ),
        (
            "/v1/subjects/user_id:reader-1/access-log?limit=0".into(),
            &privacy,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (path, key, status, code) in cases {
        let (got, body) = harness.get(&path, key).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }

    let consents = "/v1/subjects/user_id:reader-1/consents";
    let change = |fields: Value| {
        let mut change = json!({"purpose": MARKETING, "status": "withdrawn"});
        change.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        json!({"changes": [change]}).to_string()
    };
    let bodies: Vec<(String, &str)> = vec![
        ("{not json".into(), "invalid_json"),
        ("[]".into(), "invalid_request"),
        ("{}".into(), "invalid_request"),
        (r#"{"changes": []}"#.into(), "invalid_request"),
        (r#"{"changes": [{"purpose": "marketing.communications.email"}]}"#.into(), "invalid_request"),
        (change(json!({"colour": "red"})), "invalid_request"),
        (change(json!({"purpose": "marketing.telepathy"})), "unknown_purpose"),
        (change(json!({"purpose": "analytics.reporting"})), "unknown_purpose"),
        (change(json!({"status": "maybe"})), "invalid_request"),
        (change(json!({"status": "expired"})), "invalid_request"),
        (change(json!({"method": "gpc"})), "invalid_request"),
        (change(json!({"version": 2})), "invalid_request"),
        (change(json!({"version": 0})), "invalid_request"),
        (change(json!({"at": "yesterday"})), "invalid_request"),
        (change(json!({"at": "2999-01-01T00:00:00Z"})), "invalid_request"),
        (change(json!({"expires_at": "2030-01-01T00:00:00Z"})), "invalid_request"),
        (change(json!({"status": "given", "at": "2026-01-02T00:00:00Z", "expires_at": "2026-01-01T00:00:00Z"})), "invalid_request"),
        (
            json!({"changes": [{"purpose": MARKETING, "status": "withdrawn"}, {"purpose": "nope", "status": "given"}]}).to_string(),
            "unknown_purpose",
        ),
        (
            json!({"changes": [{"purpose": MARKETING, "status": "withdrawn"}, {"purpose": MARKETING, "status": "given", "method": "preference_center"}]}).to_string(),
            "invalid_request",
        ),
    ];
    for (body, code) in bodies {
        let (status, answer) = harness.post_json(consents, &privacy, &body).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    let huge = json!({"changes": [{"purpose": MARKETING, "status": "given", "version": 1}], "pad": "x".repeat(3 << 20)});
    let (status, answer) = harness.post_json(consents, &privacy, &huge.to_string()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("request_too_large"))
    );
    let (status, answer) = harness.post_json(consents, &marketing, &change(json!({}))).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (status, answer) =
        harness.post_json("/v1/subjects/user_id:nobody/consents", &privacy, &change(json!({}))).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_subject")));

    // A malformed consent object on an event is refused rather than guessed at.
    let garbled = json!({"type": "identify", "userId": "reader-1", "messageId": "b-2", "traits": {"city": "Leeds"},
                         "context": {"consent": {"categoryPreferences": {"Email": "yes"}}}});
    let (status, answer) = harness.track("wk_web_lantern", garbled, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    let after = (
        harness.state.store.subject_state(&subject).await.unwrap(),
        harness.state.store.receipts(&subject).await.unwrap().len(),
        harness.state.store.stats().await.unwrap(),
        harness.profile(&subject).await,
    );
    assert_eq!(before, after, "no bad request changed what is stored");
}

#[tokio::test]
async fn the_catalog_needs_a_key_and_the_signing_key_does_not() {
    let harness = harness().await;
    let key = harness.key("marketing").await;
    let (status, catalog) = harness.get("/v1/catalog", &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(catalog["purposes"].as_array().unwrap().len(), 4);
    assert_eq!(catalog["guardrails"][0]["name"], "no-location-for-ads-in-the-eu");
    assert_eq!(
        harness.send(Request::get("/v1/catalog").body(Body::empty()).unwrap()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, published) =
        harness.send(Request::get("/v1/signing-key").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(published["public_key"], harness.state.vault.public_key().to_base64());
}

#[tokio::test]
async fn a_consent_that_expires_stops_counting_and_the_ledger_says_so() {
    let harness = harness().await;
    let (marketing, privacy) = (harness.key("marketing").await, harness.key("privacy").await);
    harness.identify("x-1", "Whitby").await;
    let now = tactful_app::now_millis();
    let expires = tactful_domain::segment::format_time(now + 60_000);
    let body = json!({"changes": [{"purpose": MARKETING, "status": "given", "method": "explicit", "expires_at": expires}]});
    let (status, answer) =
        harness.post_json("/v1/subjects/user_id:reader-1/consents", &privacy, &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    harness.identify("x-2", "Whitby").await;
    assert_eq!(harness.read(&marketing, MARKETING).await["traits"]["email"], EMAIL);

    // A minute later (the job runs with the time it is given): recorded once, with a receipt.
    assert_eq!(tactful_app::consents::record_lapsed(&harness.state, now + 60_000).await.unwrap(), 1);
    assert_eq!(tactful_app::consents::record_lapsed(&harness.state, now + 120_000).await.unwrap(), 0);
    let (_, consents) = harness.get("/v1/subjects/user_id:reader-1/consents", &privacy).await;
    assert_eq!(consents["ledger"][0]["status"], "expired", "{consents}");
    assert_eq!(consents["ledger"][0]["source"], "expiry");
    let state =
        consents["purposes"].as_array().unwrap().iter().find(|p| p["purpose"] == MARKETING).unwrap().clone();
    assert_eq!(state["status"], "expired");
    let (_, receipts) = harness.get("/v1/subjects/user_id:reader-1/consents/receipts", &privacy).await;
    let last = receipts["receipts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["receipt"]["iso27560"]["event"]["type"], "expired", "{last}");
    let read = harness.read(&marketing, MARKETING).await;
    assert_eq!(read["traits"], json!({}), "{read}");
    assert_eq!(withheld(&read, "user.contact.email").as_deref(), Some("consent_expired"));
}

#[tokio::test]
async fn data_of_a_property_taken_out_of_the_catalog_is_shown_to_nobody() {
    let first = harness().await;
    let privacy = first.key("privacy").await;
    first.identify("c-1", "Whitby").await;
    first.consent(&privacy, "given").await;
    let event = json!({"type": "track", "event": "Book Viewed", "userId": "reader-1", "messageId": "c-2",
                       "properties": {"book_id": "dracula"}, "traits": {}});
    first.track("wk_web_lantern", event, false).await;
    first.identify("c-3", "Whitby").await;

    // The same database under a catalog that no longer declares the city.
    let cut = |text: &str, block: &str| {
        let start = text.find(block).unwrap();
        let end = start + text[start..].find("\n\n").unwrap();
        format!("{}{}", &text[..start], &text[end..])
    };
    // (Its guardrail goes too: a guardrail that protects nothing is refused at load.)
    let without_city = cut(&cut(CATALOG, "[properties.\"traits.city\"]"), "[[guardrails]]");
    let config = tactful_app::Config {
        database: format!("sqlite:{}", first.dir.path().join("tactful.db").display()),
        master_key_file: first.dir.path().join("master.key"),
        ..tactful_app::Config::default()
    };
    let catalog = Catalog::parse(&without_city).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let state = tactful_server::AppState::new(
        std::sync::Arc::new(tactful_app::App::open(&config, catalog).await.unwrap()),
        &config,
    );
    let later = Harness { state, dir: tempfile::tempdir().unwrap() };
    let marketing = later.key("marketing").await;
    let read = later.read(&marketing, MARKETING).await;
    assert_eq!(read["traits"], json!({"email": EMAIL}), "{read}");
    let shown = read["events"].to_string();
    assert!(!shown.contains("Whitby") && shown.contains(EMAIL), "{read}");
}

#[tokio::test]
async fn every_read_of_consent_records_is_in_the_persons_log_with_who_read_it() {
    let harness = harness().await;
    let privacy = harness.key("privacy").await;
    harness.identify("e-1", "Whitby").await;
    let given = harness.consent(&privacy, "given").await;
    let receipt = given["receipts"][0]["receipt"]["consentReceiptID"].as_str().unwrap().to_owned();
    let reads = [
        "/v1/subjects/user_id:reader-1/consents".to_owned(),
        "/v1/subjects/user_id:reader-1/consents/receipts".to_owned(),
        format!("/v1/subjects/user_id:reader-1/consents/receipts/{receipt}"),
        "/v1/subjects/user_id:reader-1/access-log".to_owned(),
    ];
    for path in &reads {
        let (status, body) = harness.get(path, &privacy).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, log) = harness.get("/v1/subjects/user_id:reader-1/access-log?limit=1000", &privacy).await;
    let entries: Vec<&Value> =
        log["entries"].as_array().unwrap().iter().filter(|entry| entry["kind"] == "read").collect();
    assert_eq!(entries.len(), reads.len(), "one entry per read, the log's own reads included: {log}");
    let key_id = harness.state.store.api_keys().await.unwrap()[0].id.clone();
    for entry in &entries {
        assert_eq!(entry["actor"], key_id.as_str(), "who read: {entry}");
        assert_eq!(entry["role"], "privacy");
        assert_eq!(entry["purpose"], "essential.legal_obligation");
        assert_eq!(entry["decision"], "permitted");
    }
    let returned: Vec<&str> = entries.iter().map(|entry| entry["returned"][0].as_str().unwrap()).collect();
    assert_eq!(
        returned,
        [
            "system.operations",
            "user.privacy_preferences",
            "user.privacy_preferences",
            "user.privacy_preferences"
        ],
        "newest first: the access log, then the receipt, the receipts and the consents"
    );

    // A refused read is no read: nothing is opened, so nothing is logged as read.
    let marketing = harness.key("marketing").await;
    assert_eq!(harness.get(&reads[0], &marketing).await.0, StatusCode::FORBIDDEN);
    let (_, again) = harness.get("/v1/subjects/user_id:reader-1/access-log?limit=1000", &privacy).await;
    let count = again["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "read").count();
    assert_eq!(count, reads.len() + 1, "only the second log read was added");
}
