//! Consent receipts: for every consent change, a record the person can keep, with the fields of
//! ISO/IEC TS 27560 and, as its compact export form, Kantara Consent Receipt v1.1. The receipt is
//! signed (Ed25519) over its canonical JSON, so anyone with the brand's public key can check it, and
//! handed out as a compact JWS too, so any JOSE library can (docs/sdks-and-receipts.md).

use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::consent::{ConsentEvent, ConsentKind};
use crate::segment::format_time;

/// What a receipt signature covers, kept apart from every other signature of the brand.
pub const SIGNING_CONTEXT: &str = "tactful-consent-receipt-v1";

/// The unsigned receipt of one consent change of subject `subject` (a random, pseudonymous id).
pub fn receipt(catalog: &Catalog, subject: &str, event: &ConsentEvent) -> Value {
    let brand = catalog.brand();
    let purpose = catalog.purpose(&event.purpose);
    let serving: Vec<&crate::catalog::Property> = catalog
        .properties()
        .iter()
        .filter(|property| property.purposes.iter().any(|key| crate::taxonomy::covers(key, &event.purpose)))
        .collect();
    let mut categories: Vec<&str> = serving.iter().map(|property| property.category.as_str()).collect();
    categories.sort_unstable();
    categories.dedup();
    let mut sensitive: Vec<&str> = serving
        .iter()
        .filter(|property| property.sensitive)
        .map(|property| property.category.as_str())
        .collect();
    sensitive.sort_unstable();
    sensitive.dedup();
    let mut retention: Vec<String> = serving.iter().map(|property| property.retention.in_words()).collect();
    retention.sort_unstable();
    retention.dedup();
    let jurisdiction = event.jurisdiction.as_deref().and_then(|key| catalog.jurisdiction(key));
    let purpose_name = purpose.map_or(event.purpose.as_str(), |purpose| purpose.name.as_str());
    let consent_type = match event.kind {
        ConsentKind::Given | ConsentKind::Renewed if event.verified && event.method.is_explicit() => {
            "EXPLICIT"
        }
        ConsentKind::Given | ConsentKind::Renewed => "IMPLICIT",
        ConsentKind::Withdrawn => "WITHDRAWN",
        ConsentKind::Expired => "EXPIRED",
    };
    // Whom the catalog hands this person's data to for this purpose: every notice-only destination
    // (it is told their identifiers with requests and consent changes) and every forwarding
    // destination that serves the purpose (the others receive nothing for it).
    let receiving: Vec<&crate::catalog::Destination> = catalog
        .destinations()
        .iter()
        .filter(|destination| {
            destination
                .forwarding
                .as_ref()
                .is_none_or(|forwarding| forwarding.purposes.contains(&event.purpose))
        })
        .collect();
    let recipients: Vec<Value> = receiving
        .iter()
        .map(|destination| {
            let told: Vec<&str> = destination.identifiers.iter().map(|kind| kind.as_str()).collect();
            json!({"name": destination.name, "key": destination.key, "identifiers": told})
        })
        .collect();
    let disclosed = crate::consent::is_sale_or_sharing(&event.purpose);
    let mut receipt = json!({
        // Kantara Consent Receipt v1.1.
        "version": "KI-CR-v1.1.0",
        "jurisdiction": jurisdiction.map_or("unknown", |jurisdiction| jurisdiction.name.as_str()),
        "consentTimestamp": event.at.div_euclid(1000),
        "collectionMethod": event.method.as_str(),
        "consentReceiptID": event.id,
        "language": "en",
        "piiPrincipalId": subject,
        "piiControllers": [controller(brand)],
        "policyUrl": brand.policy_url,
        "services": [{
            "service": brand.name,
            "purposes": [{
                "purpose": purpose_name,
                "purposeCategory": [event.purpose],
                "consentType": consent_type,
                "piiCategory": categories,
                "primaryPurpose": false,
                "termination": match event.expires_at {
                    Some(end) => format!("expires {}", format_time(end)),
                    None => "until withdrawn".to_owned(),
                },
                "thirdPartyDisclosure": disclosed,
            }],
        }],
        "sensitive": !sensitive.is_empty(),
        "spiCat": sensitive,
        // ISO/IEC TS 27560 consent record.
        "iso27560": {
            "recordId": event.id,
            "dataSubjectId": subject,
            "controller": brand.name,
            "noticeVersion": event.version,
            "purposes": [{"key": event.purpose, "name": purpose_name, "description": purpose.map(|p| p.description.as_str())}],
            "dataCategories": categories,
            "recipients": recipients,
            "retention": retention,
            "jurisdiction": event.jurisdiction,
            "legalBasis": "consent",
            "event": {
                "type": event.kind.as_str(),
                "timestamp": format_time(event.at),
                "method": event.method.as_str(),
                "source": event.source,
                // Whether who it is about was proven, or only claimed by a public write key.
                "identity": if event.verified { "verified" } else { "claimed" },
                "expires": event.expires_at.map(format_time),
                // The IAB consent string it was read from (hash, CMP, times), if any.
                "consentString": event.provenance,
            },
        },
    });
    // Kantara asks for `thirdPartyName` with every disclosure to third parties: the catalog's
    // destinations that receive it for this purpose are who.
    let names: Vec<&str> = receiving.iter().map(|destination| destination.name.as_str()).collect();
    if disclosed && !names.is_empty() {
        receipt["services"][0]["purposes"][0]["thirdPartyName"] = json!(names.join(", "));
    }
    receipt
}

/// The controller as Kantara v1.1 names it; the address and phone only when the catalog gives them.
fn controller(brand: &crate::catalog::Brand) -> Value {
    let mut controller = json!({
        "piiController": brand.name,
        "contact": brand.contact,
        "email": brand.contact,
        "piiControllerUrl": brand.policy_url,
    });
    if let Some(address) = &brand.address {
        controller["address"] = json!({"streetAddress": address});
    }
    if let Some(phone) = &brand.phone {
        controller["phone"] = json!(phone);
    }
    controller
}

/// The bytes a receipt's signature covers: its canonical JSON (object keys sorted, no whitespace),
/// which any reader can recompute from the receipt, however it was reformatted in between.
pub fn signing_bytes(receipt: &Value) -> Vec<u8> {
    serde_json::to_vec(receipt).unwrap_or_default()
}

/// The protected header of a receipt's compact JWS, as the bytes that are base64url-encoded: its
/// canonical JSON. `typ` is `JWT` because Kantara v1.1 defines a signed receipt as a JWT.
pub fn jws_header(key_id: &str) -> Vec<u8> {
    signing_bytes(&json!({"alg": "EdDSA", "kid": key_id, "typ": "JWT"}))
}

/// A signed receipt as handed out: the receipt, the signature with the key that made it, and the
/// same receipt as a compact JWS (EdDSA) whose payload is [`signing_bytes`] of the receipt.
pub fn signed(receipt: Value, signature: &[u8; 64], public_key: &[u8; 32], key_id: &str, jws: &str) -> Value {
    use base64::Engine as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    json!({
        "receipt": receipt,
        "signature": {"algorithm": "Ed25519", "keyId": key_id, "publicKey": encode(public_key), "value": encode(signature)},
        "jws": jws,
    })
}

/// The parts of a signed receipt needed to check it.
#[derive(Debug)]
pub struct Parts {
    pub receipt: Value,
    pub signature: [u8; 64],
    pub public_key: [u8; 32],
    /// The compact JWS, on receipts signed since it was added.
    pub jws: Option<String>,
}

/// Splits a signed receipt, or says what is wrong with its shape.
pub fn parts(signed: &Value) -> Result<Parts, String> {
    use base64::Engine as _;
    let decode = |field: &str| -> Result<Vec<u8>, String> {
        let text =
            signed["signature"][field].as_str().ok_or_else(|| format!("signature.{field} is missing"))?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| format!("signature.{field} is not base64"))
    };
    if signed["signature"]["algorithm"] != "Ed25519" {
        return Err("signature.algorithm must be Ed25519".into());
    }
    let receipt =
        signed.get("receipt").filter(|receipt| receipt.is_object()).ok_or("receipt is missing")?.clone();
    let signature = decode("value")?.try_into().map_err(|_| "signature.value must be 64 bytes".to_owned())?;
    let public_key =
        decode("publicKey")?.try_into().map_err(|_| "signature.publicKey must be 32 bytes".to_owned())?;
    let jws = match signed.get("jws") {
        None | Some(Value::Null) => None,
        Some(Value::String(jws)) => Some(jws.clone()),
        Some(_) => return Err("jws must be a string".into()),
    };
    Ok(Parts { receipt, signature, public_key, jws })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentMethod;

    #[test]
    fn a_receipt_carries_kantara_and_iso_fields_and_no_personal_value() {
        let catalog = Catalog::parse(Catalog::example_text()).unwrap();
        let event = ConsentEvent {
            id: "cr_1".into(),
            purpose: "personalize.content".into(),
            kind: ConsentKind::Given,
            method: ConsentMethod::PreferenceCenter,
            at: 1_700_000_000_123,
            expires_at: None,
            version: 1,
            source: Some("preference_center".into()),
            jurisdiction: Some("eu".into()),
            verified: true,
            provenance: None,
        };
        let receipt = receipt(&catalog, "sub_abc", &event);
        assert_eq!(receipt["version"], "KI-CR-v1.1.0");
        assert_eq!(receipt["consentTimestamp"], 1_700_000_000);
        assert_eq!(receipt["piiPrincipalId"], "sub_abc");
        assert_eq!(receipt["jurisdiction"], "European Union and EEA (GDPR)");
        assert_eq!(receipt["services"][0]["purposes"][0]["consentType"], "EXPLICIT");
        assert_eq!(receipt["services"][0]["purposes"][0]["purpose"], "Product recommendations");
        assert!(
            receipt["services"][0]["purposes"][0]["piiCategory"]
                .as_array()
                .unwrap()
                .contains(&json!("user.behavior.browsing_history"))
        );
        assert_eq!(receipt["iso27560"]["event"]["type"], "given");
        assert_eq!(receipt["iso27560"]["noticeVersion"], 1);
        assert_eq!(receipt["piiControllers"][0]["phone"], "+353 1 555 0100");
        assert_eq!(
            receipt["piiControllers"][0]["address"]["streetAddress"],
            "12 Fernhill Road, Dublin 8, D08 X2Y3, Ireland"
        );
        assert!(receipt["services"][0]["purposes"][0].get("thirdPartyName").is_none(), "no disclosure");
        assert_eq!(
            receipt["iso27560"]["recipients"],
            json!([]),
            "no destination of the example serves this purpose"
        );
        // Canonical bytes do not depend on formatting.
        let reformatted: Value =
            serde_json::from_str(&serde_json::to_string_pretty(&receipt).unwrap()).unwrap();
        assert_eq!(signing_bytes(&reformatted), signing_bytes(&receipt));
    }

    #[test]
    fn a_disclosure_names_the_catalogs_destinations_as_third_parties() {
        let text = format!(
            "{}\n[destinations.crm]\nname = \"Service CRM\"\nurl = \"https://crm.example/hook\"\n\
             secret = \"whsec_a_long_enough_random_secret_1234\"\nreceives = [\"erase\"]\nidentifiers = [\"email\"]\n\
             [destinations.ads]\nname = \"Ad Network\"\nurl = \"https://ads.example/hook\"\n\
             secret = \"whsec_another_long_random_secret_5678\"\nreceives = [\"consent_changed\"]\nidentifiers = [\"user_id\"]\n",
            with_forwarding(Catalog::example_text())
        );
        let catalog = Catalog::parse(&text).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
        let event = |purpose: &str| ConsentEvent {
            id: "cr_2".into(),
            purpose: purpose.into(),
            kind: ConsentKind::Given,
            method: ConsentMethod::PreferenceCenter,
            at: 1_700_000_000_000,
            expires_at: None,
            version: 1,
            source: None,
            jurisdiction: None,
            verified: true,
            provenance: None,
        };
        let sold = receipt(&catalog, "sub_abc", &event("marketing.advertising.third_party.targeted"));
        let purpose = &sold["services"][0]["purposes"][0];
        assert_eq!(purpose["thirdPartyDisclosure"], true);
        assert_eq!(purpose["thirdPartyName"], "Service CRM, Ad Network");
        assert_eq!(
            sold["iso27560"]["recipients"],
            json!([{"name": "Service CRM", "key": "crm", "identifiers": ["email"]},
                   {"name": "Ad Network", "key": "ads", "identifiers": ["user_id"]}])
        );
        let kept = receipt(&catalog, "sub_abc", &event("personalize.content"));
        assert_eq!(kept["services"][0]["purposes"][0]["thirdPartyDisclosure"], false);
        assert!(kept["services"][0]["purposes"][0].get("thirdPartyName").is_none());

        // Among forwarding destinations, only those serving the purpose receive for it; notice-only
        // ones are told identifiers with every request, so they stay listed.
        let keys = |receipt: &Value| -> Vec<String> {
            receipt["iso27560"]["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|recipient| recipient["key"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            keys(&receipt(&catalog, "sub_abc", &event("marketing.communications.email"))),
            ["email_tool", "crm", "ads"]
        );
        assert_eq!(
            keys(&receipt(&catalog, "sub_abc", &event("analytics.reporting"))),
            ["analytics", "crm", "ads"]
        );
        assert_eq!(keys(&sold), ["crm", "ads"], "no forwarding destination serves targeted advertising");
    }

    /// The example catalog with the email tool and the pipeline it ships commented out switched on.
    fn with_forwarding(text: &str) -> String {
        let mut inside = false;
        let mut out = String::new();
        for line in text.lines() {
            inside = line == "# [destinations.email_tool]"
                || line == "# [destinations.analytics]"
                || (inside && line.starts_with("# "));
            out.push_str(if inside { &line[2..] } else { line });
            out.push('\n');
        }
        out
    }

    #[test]
    fn signed_receipts_split_back_and_malformed_ones_are_named() {
        let signed = signed(json!({"a": 1}), &[7u8; 64], &[9u8; 32], "k1", "h.p.s");
        let split = parts(&signed).unwrap();
        assert_eq!(split.signature, [7u8; 64]);
        assert_eq!(split.public_key, [9u8; 32]);
        assert_eq!(split.receipt, json!({"a": 1}));
        assert_eq!(split.jws.as_deref(), Some("h.p.s"));
        let mut broken = signed.clone();
        broken["signature"]["value"] = json!("not base64!");
        assert!(parts(&broken).unwrap_err().contains("base64"));
        assert!(parts(&json!({"receipt": {}})).is_err());
    }
}
