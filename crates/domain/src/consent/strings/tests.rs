//! What a consent string means for the catalog's purposes: the vendor's bits and the publisher's
//! restrictions as the TCF says, the publisher's own purposes, GPP opt-outs of the sections that
//! apply, and denial winning where entries disagree. Strings made by the IAB Tech Lab's encoders.

use super::*;
use crate::iab::tcf::{PublisherRestriction, RestrictionKind};

/// Purposes 1–4 consented, LI for 2 and 7; vendors 2, 6, 8, 755 consented, 2 and 10 on LI.
const TC_STRING: &str = "CQtDjkAQuf10AAfKACENCOFoAPAAAEIAAAqIF5wBAABAAGAAQAvMACiAgAAA";
/// Purpose 1 consented; publisher segment: purposes 1, 3, 4 consented, 2 and 10 on LI, three
/// custom purposes (1 and 3 consented, 2 on LI).
const PUBLISHER_STRING: &str = "CQtDjkAQuf10AAfKACENCOFgAIAAAAAAAAqIF5wAQF5gAAAA.dgAACAgAAdQA";
/// tcfeuv2, usnat (sale opted out, sharing not, targeted ads opted out, sensitive data 2 and 16
/// opted out) and usca (sale not opted out, sharing opted out).
const GPP_STRING: &str = "DBACOPA~CQuf10AQuf10AAfKAAENAAFgANAAAAAAAAAAXdQAwABALzhdwF3QAAAAAAAA.IAAA.YAAAAAAAAAAA~CEAZGAAAAQBA.YA~BAlAAIBA.QA";

fn catalog(iab: &str) -> Catalog {
    let text = format!(
        r#"
[brand]
name = "Shop"
[sources.web]
kind = "server"
write_key = "wk_test_12345"
[purposes."essential.service"]
name = "n"
description = "d"
benefit = "b"
[purposes."marketing.advertising.third_party.targeted"]
name = "n"
description = "d"
benefit = "b"
[purposes."personalize.content"]
name = "n"
description = "d"
benefit = "b"
[purposes."marketing.communications.email"]
name = "n"
description = "d"
benefit = "b"
{iab}"#
    );
    Catalog::parse(&text).unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

const ADS: &str = "marketing.advertising.third_party.targeted";
const CONTENT: &str = "personalize.content";
const EMAIL: &str = "marketing.communications.email";

/// `(purpose, kind, method)` of each signal, in purpose order.
fn read(catalog: &Catalog, strings: Strings<'_>) -> Vec<(String, ConsentKind, ConsentMethod)> {
    signals(catalog, &strings)
        .expect("readable")
        .into_iter()
        .map(|signal| (signal.purpose, signal.kind, signal.method))
        .collect()
}

fn tc(text: &str) -> Strings<'_> {
    Strings { tc: Some(("tcString", text)), ..Strings::default() }
}

#[test]
fn the_brands_vendor_needs_its_own_bit_and_denial_wins_across_purposes() {
    // Purpose 3 with vendor 755's consent; purpose 7 only disclosed as LI, and vendor 755 has no LI
    // bit; purpose 2 for vendor 10, which has neither.
    let with_vendor = |vendor: u32| {
        catalog(&format!(
            "[iab]\nvendor_id = {vendor}\n[iab.tcf_purposes]\n3 = [\"{ADS}\"]\n7 = [\"{CONTENT}\"]\n2 = [\"{EMAIL}\"]\n"
        ))
    };
    let given = |purpose: &str| (purpose.to_owned(), ConsentKind::Given, ConsentMethod::Explicit);
    let withdrawn = |purpose: &str| (purpose.to_owned(), ConsentKind::Withdrawn, ConsentMethod::Explicit);
    assert_eq!(read(&with_vendor(755), tc(TC_STRING)), vec![given(ADS), given(EMAIL), withdrawn(CONTENT)]);
    // Vendor 10: purposes 2 and 7 on legitimate interest (both LI bits), purpose 3 without consent.
    assert_eq!(read(&with_vendor(10), tc(TC_STRING)), vec![withdrawn(ADS), given(EMAIL), given(CONTENT)]);
    // Two TCF purposes on one catalog purpose: a no to either is a no.
    let both =
        catalog(&format!("[iab]\nvendor_id = 755\n[iab.tcf_purposes]\n3 = [\"{ADS}\"]\n5 = [\"{ADS}\"]\n"));
    assert_eq!(read(&both, tc(TC_STRING)), vec![withdrawn(ADS)]);
    // The string's LastUpdated is the signals' time, with its provenance.
    let signal = &signals(&with_vendor(755), &tc(TC_STRING)).unwrap()[0];
    assert_eq!(signal.at, Some(1_795_996_800_000));
    let provenance = signal.provenance.as_ref().unwrap();
    assert_eq!(
        (provenance.cmp_id, provenance.cmp_version, provenance.format.as_str()),
        (Some(31), Some(640), "tcf")
    );
}

#[test]
fn publisher_restrictions_narrow_what_a_vendor_may_do() {
    let mut tc = TcString {
        purpose_consents: [2, 7].into(),
        purpose_legitimate_interests: [7].into(),
        vendor_consents: [755].into(),
        vendor_legitimate_interests: [755].into(),
        ..TcString::default()
    };
    assert!(tc.vendor_permitted(755, 2) && tc.vendor_permitted(755, 7));
    let restrict = |purpose, kind| PublisherRestriction { purpose, kind, vendors: [755].into() };
    tc.publisher_restrictions = vec![restrict(2, RestrictionKind::NotAllowed)];
    assert!(!tc.vendor_permitted(755, 2), "not allowed, whatever the consent");
    tc.purpose_consents = [2].into();
    tc.publisher_restrictions = vec![restrict(7, RestrictionKind::RequireConsent)];
    assert!(!tc.vendor_permitted(755, 7), "consent required, only LI given");
    tc.publisher_restrictions = vec![restrict(7, RestrictionKind::RequireLegitimateInterest)];
    assert!(tc.vendor_permitted(755, 7));
    tc.purpose_legitimate_interests = [].into();
    tc.purpose_consents = [2, 7].into();
    assert!(!tc.vendor_permitted(755, 7), "LI required, only consent given");
    // TCF v2.2 allows no legitimate interest for purposes 1 and 3–6.
    tc.purpose_legitimate_interests = [3].into();
    assert!(!tc.vendor_permitted(755, 3));
}

#[test]
fn without_a_vendor_id_the_brand_speaks_as_the_publisher() {
    let publisher = catalog(&format!(
        "[iab.tcf_purposes]\n3 = [\"{ADS}\"]\n2 = [\"{CONTENT}\"]\n[iab.publisher_purposes]\n1 = [\"{EMAIL}\"]\n2 = [\"essential.service\"]\n"
    ));
    let kinds: Vec<_> = read(&publisher, tc(PUBLISHER_STRING))
        .into_iter()
        .map(|(purpose, kind, _)| (purpose, kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("essential.service".to_owned(), ConsentKind::Given),
            (ADS.to_owned(), ConsentKind::Given),
            (EMAIL.to_owned(), ConsentKind::Given),
            (CONTENT.to_owned(), ConsentKind::Given),
        ],
        "publisher consent for 3, publisher LI for 2, custom 1 consented, custom 2 on LI"
    );
}

#[test]
fn gpp_opt_outs_of_the_sections_that_apply() {
    let mapped = catalog(&format!(
        "[iab.gpp_opt_outs]\nsale = [\"{ADS}\"]\nsharing = [\"{CONTENT}\"]\nsensitive_data = [\"{EMAIL}\"]\n"
    ));
    let gpp = |sid: Option<Vec<i64>>| Strings {
        gpp: Some(("gppString", GPP_STRING)),
        gpp_sid: sid,
        ..Strings::default()
    };
    let withdrawn = |purpose: &str| (purpose.to_owned(), ConsentKind::Withdrawn, ConsentMethod::Explicit);
    let default = |purpose: &str| (purpose.to_owned(), ConsentKind::Given, ConsentMethod::OptOutDefault);
    // usnat alone: sale opted out, sharing not (the opt-out default), sensitive data opted out.
    assert_eq!(read(&mapped, gpp(Some(vec![7]))), vec![withdrawn(ADS), withdrawn(EMAIL), default(CONTENT)]);
    // usca alone: sale not opted out, sharing opted out, sensitive data (limit use) opted out.
    assert_eq!(read(&mapped, gpp(Some(vec![8]))), vec![default(ADS), withdrawn(EMAIL), withdrawn(CONTENT)]);
    // Both: a no in either section wins.
    assert_eq!(read(&mapped, gpp(None)), vec![withdrawn(ADS), withdrawn(EMAIL), withdrawn(CONTENT)]);
    assert_eq!(read(&mapped, gpp(Some(vec![-1]))), vec![]);
}

#[test]
fn strings_on_an_event_read_with_categories_and_refuse_what_is_not_text() {
    let mapped = catalog(&format!("[iab]\nvendor_id = 755\n[iab.tcf_purposes]\n3 = [\"{ADS}\"]\n"));
    let context = serde_json::json!({"consent": {"tcString": TC_STRING}});
    let signals = crate::consent::signals_from_context(&mapped, Some(&context)).unwrap();
    assert_eq!(signals.len(), 1);
    assert_eq!((signals[0].purpose.as_str(), signals[0].kind), (ADS, ConsentKind::Given));
    for (consent, message) in [
        (serde_json::json!({"tcString": 5}), "context.consent.tcString must be a string"),
        (
            serde_json::json!({"gppString": "DBABMA~CQ", "gppSid": {"a": 1}}),
            "context.consent.gppSid must be an array of GPP section ids (integers)",
        ),
        (
            serde_json::json!({"gppString": "DBABM"}),
            "context.consent.gppString: header segment, field SectionIds: the header lists 1 sections but 0 follow",
        ),
    ] {
        let context = serde_json::json!({"consent": consent});
        let error = crate::consent::signals_from_context(&mapped, Some(&context)).unwrap_err();
        assert_eq!(error.0, message);
    }
}
