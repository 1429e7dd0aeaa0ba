//! Tactful's TCF and GPP decoders against strings made by the IAB Tech Lab's own encoders: `node`
//! runs `tests/iab/cases.js` (`@iabtechlabtcf/core`, `@iabgpp/cmpapi`, from the lock file), which
//! prints each case's string and what the IAB's decoder reads from it; every field must agree.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use tactful_domain::iab::gpp::{self, Section};
use tactful_domain::iab::tcf::{self, TcString};
use tactful_domain::iab::us::UsSection;

fn cases() -> Vec<Value> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iab");
    assert!(
        folder.join("node_modules/@iabtechlabtcf/core").is_dir()
            && folder.join("node_modules/@iabgpp/cmpapi").is_dir(),
        "the IAB Tech Lab's encoders are not installed: run `npm ci` in {} (scripts/test does)",
        folder.display()
    );
    let output = Command::new("node").arg("cases.js").current_dir(&folder).output().expect("node runs");
    assert!(output.status.success(), "cases.js failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON case"))
        .collect()
}

fn tc_fields(tc: &TcString) -> Value {
    let restrictions: Vec<Value> = {
        let mut list: Vec<_> = tc
            .publisher_restrictions
            .iter()
            .map(|restriction| (restriction.purpose, restriction.kind.code(), &restriction.vendors))
            .collect();
        list.sort();
        list.into_iter()
            .map(|(purpose, kind, vendors)| json!({"purpose": purpose, "kind": kind, "vendors": vendors}))
            .collect()
    };
    let non_empty = |set: &Option<std::collections::BTreeSet<u32>>| {
        set.as_ref().filter(|set| !set.is_empty()).map(|set| json!(set))
    };
    json!({
        "version": tc.version, "created": tc.created, "last_updated": tc.last_updated,
        "cmp_id": tc.cmp_id, "cmp_version": tc.cmp_version, "consent_screen": tc.consent_screen,
        "consent_language": tc.consent_language, "vendor_list_version": tc.vendor_list_version,
        "policy_version": tc.policy_version, "is_service_specific": tc.is_service_specific,
        "use_non_standard_texts": tc.use_non_standard_texts,
        "special_feature_opt_ins": tc.special_feature_opt_ins, "purpose_consents": tc.purpose_consents,
        "purpose_legitimate_interests": tc.purpose_legitimate_interests,
        "purpose_one_treatment": tc.purpose_one_treatment, "publisher_country_code": tc.publisher_country_code,
        "vendor_consents": tc.vendor_consents, "vendor_legitimate_interests": tc.vendor_legitimate_interests,
        "publisher_restrictions": restrictions,
        "disclosed_vendors": non_empty(&tc.disclosed_vendors),
        "allowed_vendors": non_empty(&tc.allowed_vendors),
        "publisher": tc.publisher.as_ref().map(|publisher| json!({
            "consents": publisher.consents, "legitimate_interests": publisher.legitimate_interests,
            "custom_purposes": publisher.custom_purposes, "custom_consents": publisher.custom_consents,
            "custom_legitimate_interests": publisher.custom_legitimate_interests,
        })),
    })
}

/// A bit field as the GPP library shows it: one boolean per position.
fn flags(set: &std::collections::BTreeSet<u32>, length: u32) -> Value {
    json!((1..=length).map(|id| set.contains(&id)).collect::<Vec<_>>())
}

/// The fields of a US section that the GPP library lists for it, named as it names them.
fn us_fields(section: &UsSection, expected: &Value) -> Value {
    let values = json!({
        "Version": section.version, "SharingNotice": section.sharing_notice,
        "SaleOptOutNotice": section.sale_opt_out_notice, "SharingOptOutNotice": section.sharing_opt_out_notice,
        "TargetedAdvertisingOptOutNotice": section.targeted_advertising_opt_out_notice,
        "SensitiveDataProcessingOptOutNotice": section.sensitive_data_processing_opt_out_notice,
        "SensitiveDataLimitUseNotice": section.sensitive_data_limit_use_notice,
        "SaleOptOut": section.sale_opt_out, "SharingOptOut": section.sharing_opt_out,
        "TargetedAdvertisingOptOut": section.targeted_advertising_opt_out,
        "SensitiveDataProcessing": section.sensitive_data_processing,
        "KnownChildSensitiveDataConsents": section.known_child_sensitive_data_consents,
        "PersonalDataConsents": section.personal_data_consents,
        "MspaCoveredTransaction": section.mspa_covered_transaction,
        "MspaOptOutOptionMode": section.mspa_opt_out_option_mode,
        "MspaServiceProviderMode": section.mspa_service_provider_mode,
        "Gpc": section.gpc,
    });
    let mut fields = serde_json::Map::new();
    for (name, wanted) in expected.as_object().expect("an object") {
        let mut value = values[name].clone();
        // A section with one known-child value has it as a number, not a list.
        if wanted.is_number() && value.as_array().is_some_and(|list| list.len() == 1) {
            value = value[0].clone();
        }
        fields.insert(name.clone(), value);
    }
    Value::Object(fields)
}

#[test]
fn tc_strings_from_the_iab_encoder_decode_field_by_field() {
    let mut seen = 0;
    for case in cases().iter().filter(|case| case["kind"] == "tcf") {
        let string = case["string"].as_str().expect("a string");
        let decoded =
            tcf::decode(string, "tcString").unwrap_or_else(|error| panic!("{}: {error}", case["case"]));
        assert_eq!(tc_fields(&decoded), case["expected"], "case {} ({string})", case["case"]);
        seen += 1;
    }
    assert_eq!(seen, 5, "every TCF case ran");
}

#[test]
fn gpp_strings_from_the_iab_encoder_decode_section_by_section() {
    let mut seen = 0;
    for case in cases().iter().filter(|case| case["kind"] == "gpp") {
        let string = case["string"].as_str().expect("a string");
        let decoded =
            gpp::decode(string, "gppString").unwrap_or_else(|error| panic!("{}: {error}", case["case"]));
        let expected = &case["expected"];
        assert_eq!(json!(decoded.section_ids), expected["section_ids"], "case {}", case["case"]);
        for section in &decoded.sections {
            let (name, fields) = match section {
                Section::TcfEuV2(tc) => {
                    let fields = json!({
                        "CmpId": tc.cmp_id, "CmpVersion": tc.cmp_version,
                        "PurposeConsents": flags(&tc.purpose_consents, 24),
                        "VendorConsents": tc.vendor_consents,
                        "VendorLegitimateInterests": tc.vendor_legitimate_interests,
                        "SpecialFeatureOptins": flags(&tc.special_feature_opt_ins, 12),
                        "Created": tc.created, "LastUpdated": tc.last_updated,
                    });
                    ("tcfeuv2", fields)
                }
                Section::Us(us) => (us.name, us_fields(us, &expected["sections"][us.name])),
                Section::Other { id, .. } => panic!("case {}: section {id} was not read", case["case"]),
            };
            assert_eq!(fields, expected["sections"][name], "case {} section {name} ({string})", case["case"]);
        }
        seen += 1;
    }
    assert_eq!(seen, 5, "every GPP case ran");
}
