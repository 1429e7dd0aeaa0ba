//! IAB consent strings where consent already arrives: a TC string or a GPP string on an event's
//! `context.consent` and on `POST /v1/subjects/{id}/consents`, mapped through the catalog's `[iab]`
//! section into the ledger with their provenance; an older string never overrides a newer choice,
//! and a malformed one is refused with the segment and field at fault. The strings were made by
//! the IAB Tech Lab's own encoders (`crates/domain/tests/iab/cases.js`).

use axum::http::StatusCode;
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;

use crate::access::CATALOG;
use crate::common::Harness;

/// Purposes 1–4 consented, legitimate interest disclosed for 2 and 7; vendors 2, 6, 8 and 755
/// consented, 2 and 10 on legitimate interest; last updated 2026-11-30 by CMP 31, version 640.
const TC_STRING: &str = "CQtDjkAQuf10AAfKACENCOFoAPAAAEIAAAqIF5wBAABAAGAAQAvMACiAgAAA";
/// SHA-256 of [`TC_STRING`].
const TC_SHA256: &str = "a1c4bc83dc7a615a4e3a90bfce311791244a2f969d8af8ced66a2ef7fb411653";
/// 2026-11-30T00:00:00Z, the TC string's `LastUpdated`.
const TC_UPDATED: i64 = 1_795_996_800_000;
/// Sections tcfeuv2, usnat (sale: opted out) and usca (sale: did not opt out; sharing: opted out).
const GPP_STRING: &str = "DBACOPA~CQuf10AQuf10AAfKAAENAAFgANAAAAAAAAAAXdQAwABALzhdwF3QAAAAAAAA.IAAA.YAAAAAAAAAAA~CEAZGAAAAQBA.YA~BAlAAIBA.QA";

const ADS: &str = "marketing.advertising.third_party.targeted";
const RECOMMENDATIONS: &str = "personalize.content";
const PERSON: &str = "/v1/subjects/user_id:reader-1/consents";

/// The access tests' bookshop, with the brand as vendor 755: TCF purpose 3 (personalised ads
/// profile) means its ads, purpose 7 (measuring ads) its recommendations here, and GPP's sale
/// opt-out its ads.
async fn harness() -> Harness {
    on(None).await
}

/// On SQLite, or on PostgreSQL at `database`.
async fn on(database: Option<String>) -> Harness {
    let text = format!(
        "{CATALOG}\n[iab]\nvendor_id = 755\n\n[iab.tcf_purposes]\n3 = [\"{ADS}\"]\n7 = [\"{RECOMMENDATIONS}\"]\n\n\
         [iab.gpp_opt_outs]\nsale = [\"{ADS}\"]\n"
    );
    let catalog = Catalog::parse(&text).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    Harness::open(catalog, 64, database).await
}

fn event(consent: Value) -> Value {
    json!({"type": "identify", "userId": "reader-1", "messageId": format!("m-{consent}"),
           "traits": {"city": "Whitby"}, "context": {"consent": consent}})
}

/// The person's current state of `purpose` and the newest ledger entry for it.
async fn state(harness: &Harness, key: &str, purpose: &str) -> (Value, Value) {
    let (status, consents) = harness.get(PERSON, key).await;
    assert_eq!(status, StatusCode::OK, "{consents}");
    let current =
        consents["purposes"].as_array().unwrap().iter().find(|entry| entry["purpose"] == purpose).cloned();
    let latest =
        consents["ledger"].as_array().unwrap().iter().find(|entry| entry["purpose"] == purpose).cloned();
    (current.unwrap_or(Value::Null), latest.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_tc_string_on_an_event_grants_and_withdraws_the_mapped_purposes_with_its_provenance() {
    a_tc_string_on_an_event(harness().await).await;
}

#[tokio::test]
async fn a_tc_string_on_an_event_grants_and_withdraws_the_mapped_purposes_with_its_provenance_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    a_tc_string_on_an_event(on(Some(url)).await).await;
}

async fn a_tc_string_on_an_event(harness: Harness) {
    let privacy = harness.key("privacy").await;
    let (status, body) = harness.track("wk_web_lantern", event(json!({"tcString": TC_STRING})), false).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Purpose 3 with vendor 755's consent: given. Purpose 7: not consented, and vendor 755 has no
    // legitimate interest bit, so withdrawn although the purpose's own LI bit is set.
    let (ads, entry) = state(&harness, &privacy, ADS).await;
    assert_eq!(ads["status"], "given", "{ads}");
    assert_eq!(ads["at"], "2026-11-30T00:00:00Z", "a string's time is its LastUpdated");
    assert_eq!(
        entry["consent_string"],
        json!({"format": "tcf", "sha256": TC_SHA256, "cmp_id": 31, "cmp_version": 640,
               "created": 1_793_577_600_000_i64, "updated": TC_UPDATED}),
        "{entry}"
    );
    let (recommendations, _) = state(&harness, &privacy, RECOMMENDATIONS).await;
    assert_eq!(recommendations["status"], "withdrawn", "{recommendations}");

    // The receipt names the string by its hash.
    let receipt = ads["receipt"].as_str().unwrap();
    let (_, signed) = harness.get(&format!("{PERSON}/receipts/{receipt}"), &privacy).await;
    assert_eq!(signed["receipt"]["iso27560"]["event"]["consentString"]["sha256"], TC_SHA256, "{signed}");

    // The same string again (every event of the page carries it) records nothing new.
    let (status, _) =
        harness.track("wk_web_lantern", event(json!({"tcString": TC_STRING, "x": 1})), false).await;
    assert_eq!(status, StatusCode::OK);
    let (_, consents) = harness.get(PERSON, &privacy).await;
    assert_eq!(consents["ledger"].as_array().unwrap().len(), 2, "{consents}");
}

#[tokio::test]
async fn an_older_string_does_not_override_a_newer_choice() {
    let harness = harness().await;
    let privacy = harness.key("privacy").await;
    harness.identify("m-0", "Whitby").await;
    // The person said no to ads today, after the string's LastUpdated (2026-11-30).
    let body = json!({"changes": [{"purpose": ADS, "status": "withdrawn", "method": "explicit"}]});
    let (status, answer) = harness.post_json(PERSON, &privacy, &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let (status, body) = harness.track("wk_web_lantern", event(json!({"tcString": TC_STRING})), false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (ads, entry) = state(&harness, &privacy, ADS).await;
    assert_eq!(
        (ads["status"].as_str(), ads["method"].as_str()),
        (Some("withdrawn"), Some("explicit")),
        "{ads}"
    );
    assert_eq!(entry["consent_string"], Value::Null);

    // The API says what it left out, and why.
    let body = json!({"tc_string": TC_STRING});
    let (status, answer) = harness.post_json(PERSON, &privacy, &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        answer["skipped"],
        json!([{"purpose": ADS, "reason": "older_than_latest_choice"}]),
        "{answer}"
    );
    let (ads, _) = state(&harness, &privacy, ADS).await;
    assert_eq!(ads["status"], "withdrawn");
}

#[tokio::test]
async fn a_gpp_string_through_the_api_records_the_sections_that_apply() {
    let harness = harness().await;
    let privacy = harness.key("privacy").await;
    harness.identify("m-0", "Whitby").await;
    // Only usnat applies: its sale opt-out withdraws ads (usca, which did not opt out, is ignored).
    let body = json!({"gpp_string": GPP_STRING, "gpp_sid": [7]});
    let (status, answer) = harness.post_json(PERSON, &privacy, &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (ads, entry) = state(&harness, &privacy, ADS).await;
    assert_eq!(ads["status"], "withdrawn", "{ads}");
    assert_eq!(entry["consent_string"]["format"], "gpp", "{entry}");
    assert_eq!(entry["consent_string"]["updated"], Value::Null, "US sections carry no time");
    assert_eq!(entry["receipt"], answer["receipts"][0]["receipt"]["consentReceiptID"]);
}

#[tokio::test]
async fn a_gpp_sid_naming_a_section_the_string_lacks_is_refused_and_records_nothing() {
    let harness = harness().await;
    let privacy = harness.key("privacy").await;
    harness.identify("m-0", "Whitby").await;
    let (_, before) = harness.get(PERSON, &privacy).await;
    for (sid, absent) in [(json!([5]), json!([5])), (json!([7, 99999999999_i64]), json!([99999999999_i64]))] {
        let body = json!({"gpp_string": GPP_STRING, "gpp_sid": sid});
        let (status, answer) = harness.post_json(PERSON, &privacy, &body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
        assert_eq!(answer["error"]["absent"], absent, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("that the gpp_string does not carry (it carries "), "{message}");
        assert!(message.ends_with("nothing was recorded"), "{message}");
    }
    let body = json!({"gpp_string": GPP_STRING, "gpp_sid": []});
    let (status, answer) = harness.post_json(PERSON, &privacy, &body.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["reason"], "gpp_sid_empty", "{answer}");
    let body = json!({"changes": [{"purpose": ADS, "status": "given"}], "gpp_sid": [7]});
    let (status, answer) = harness.post_json(PERSON, &privacy, &body.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["reason"], "gpp_sid_without_gpp_string", "{answer}");
    let (_, after) = harness.get(PERSON, &privacy).await;
    assert_eq!(after["ledger"], before["ledger"], "a refused request recorded something");
}

#[tokio::test]
async fn a_malformed_string_is_refused_with_its_segment_and_field_and_records_nothing() {
    let harness = harness().await;
    let privacy = harness.key("privacy").await;
    harness.identify("m-0", "Whitby").await;
    let truncated = &TC_STRING[..30];
    let body = json!({"tc_string": truncated});
    let (status, answer) = harness.post_json(PERSON, &privacy, &body.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_request");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("tc_string: core segment, field PurposesLITransparency:"), "{message}");
    assert!(message.contains("the segment ends before it"), "{message}");

    let body = json!({"gpp_string": "DBABMA~CQuf10A"});
    let (status, answer) = harness.post_json(PERSON, &privacy, &body.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("gpp_string section tcfeuv2: core segment, field LastUpdated"),
        "{answer}"
    );

    // On an event, like any unreadable consent: the event is refused, naming the field.
    let (status, answer) =
        harness.track("wk_web_lantern", event(json!({"tcString": truncated})), false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let rejected = &answer["error"]["rejected"][0];
    assert_eq!(rejected["code"], "invalid_consent", "{answer}");
    assert!(
        rejected["message"].as_str().unwrap().starts_with("context.consent.tcString: core segment, field"),
        "{answer}"
    );

    let (_, consents) = harness.get(PERSON, &privacy).await;
    assert_eq!(consents["ledger"], json!([]), "{consents}");
}
