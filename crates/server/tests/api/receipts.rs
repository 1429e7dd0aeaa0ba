//! Consent receipts as a privacy team or a person checks them: the Kantara v1.1 fields a
//! controller owes (address, phone, the third parties and recipients of the data), and the compact
//! JWS beside each receipt, checked by panva/jose (`tests/js/`, installed by `scripts/test` from
//! its lock file) — a JOSE library this project does not write.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tactful_domain::receipt;
use tactful_vault::PublicKey;

use crate::access::CATALOG;
use crate::common::{Harness, NodeScripts};

const ADS: &str = "marketing.advertising.third_party.targeted";

/// The bookshop of `access.rs`, with its address and phone, and the two systems it hands data to.
fn catalog() -> Catalog {
    let text = CATALOG.replace(
        "policy_url = \"https://lantern.example/privacy\"",
        "policy_url = \"https://lantern.example/privacy\"\naddress = \"3 Quay Street, Galway, H91 X2Y3, Ireland\"\n\
         phone = \"+353 91 555 0199\"",
    ) + r#"
[destinations.crm]
name = "Lantern CRM"
url = "https://crm.lantern.example/hooks/tactful"
secret = "whsec_a_long_enough_random_secret_for_tests"
receives = ["erase"]
identifiers = ["email", "user_id"]

[destinations.ads]
name = "Bookish Ads"
url = "https://ads.example/hooks/tactful"
secret = "whsec_another_long_random_secret_for_tests"
receives = ["erase"]
identifiers = ["user_id"]
"#;
    Catalog::parse(&text).unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

/// A consent to targeted ads (a disclosure to third parties) and its signed receipt, as served.
async fn signed_receipt(harness: &Harness) -> (Value, Value) {
    let privacy = harness.key("privacy").await;
    harness.identify("r-1", "Whitby").await;
    let change = json!({"changes": [{"purpose": ADS, "status": "given", "method": "explicit"}]});
    let (status, answer) =
        harness.post_json("/v1/subjects/user_id:reader-1/consents", &privacy, &change.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let id = answer["receipts"][0]["receipt"]["consentReceiptID"].as_str().unwrap().to_owned();
    let (status, signed) =
        harness.get(&format!("/v1/subjects/user_id:reader-1/consents/receipts/{id}"), &privacy).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let (_, _, published) = harness.send(Request::get("/v1/signing-key").body(Body::empty()).unwrap()).await;
    (signed, published)
}

#[tokio::test]
async fn a_receipt_names_the_controller_and_whoever_receives_the_data() {
    let harness = Harness::open(catalog(), 64, None).await;
    let (signed, _) = signed_receipt(&harness).await;
    let receipt = &signed["receipt"];
    let controller = &receipt["piiControllers"][0];
    assert_eq!(controller["piiController"], "Lantern Books");
    assert_eq!(controller["address"]["streetAddress"], "3 Quay Street, Galway, H91 X2Y3, Ireland");
    assert_eq!(controller["phone"], "+353 91 555 0199");
    let purpose = &receipt["services"][0]["purposes"][0];
    assert_eq!(purpose["thirdPartyDisclosure"], true, "{purpose}");
    assert_eq!(purpose["thirdPartyName"], "Lantern CRM, Bookish Ads");
    let names: Vec<&str> = receipt["iso27560"]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Lantern CRM", "Bookish Ads"]);
}

#[tokio::test]
async fn the_receipts_jws_carries_its_canonical_json_under_the_published_key() {
    let harness = Harness::open(catalog(), 64, None).await;
    let (signed, published) = signed_receipt(&harness).await;
    let jws = signed["jws"].as_str().expect("a compact JWS beside the receipt");
    let key = PublicKey::from_base64(published["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(published["jwk"]["x"], key.to_base64url());
    let (header, payload) = key.verify_jws(jws).expect("verifies under the published key");
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header, json!({"alg": "EdDSA", "kid": key.id(), "typ": "JWT"}));
    assert_eq!(payload, receipt::signing_bytes(&signed["receipt"]));

    let Some(node) = NodeScripts::ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = |signed: &Value| {
        let (key, receipt) = (dir.path().join("signing-key.json"), dir.path().join("receipt.json"));
        std::fs::write(&key, published.to_string()).unwrap();
        std::fs::write(&receipt, serde_json::to_string_pretty(signed).unwrap()).unwrap();
        node.run("verify_receipt.mjs", &[&key, &receipt])
    };
    let (ok, out) = run(&signed);
    assert!(ok, "jose refused a genuine receipt: {out}");
    assert_eq!(out.trim(), format!("verified {}", signed["receipt"]["consentReceiptID"].as_str().unwrap()));
    // Changing the receipt beside the JWS, or the JWS itself, is caught by the independent check.
    let mut altered = signed.clone();
    altered["receipt"]["services"][0]["purposes"][0]["consentType"] = json!("WITHDRAWN");
    assert!(!run(&altered).0, "a receipt that no longer matches its JWS");
    let mut forged = signed.clone();
    let (input, signature) = jws.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    forged["jws"] = json!(format!("{input}.{flipped}{}", &signature[1..]));
    assert!(!run(&forged).0, "a JWS whose signature was changed");
}
