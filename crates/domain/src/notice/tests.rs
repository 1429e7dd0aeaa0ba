//! The notice says what the software does: every purpose and kind of data appears, and the basis
//! it states for each use is the decision the policy takes for a person who has not been asked,
//! who said yes, and who said no.

use std::sync::Arc;

use super::*;
use crate::catalog::Catalog;
use crate::consent::{ConsentEvent, ConsentKind, ConsentMethod, ConsentStates};
use crate::policy::SubjectContext;

fn example() -> Policy {
    Policy::new(Arc::new(Catalog::parse(Catalog::example_text()).unwrap()))
}

fn basis_of(notice: &Notice, purpose: &str, jurisdiction: Option<&str>, category: &str) -> Option<Basis> {
    let purpose = notice.purposes.iter().find(|p| p.key == purpose)?;
    let basis = purpose.basis.iter().find(|b| b.jurisdiction.as_deref() == jurisdiction)?;
    basis.uses.iter().find(|(_, categories)| categories.iter().any(|c| c == category)).map(|(b, _)| b.clone())
}

#[test]
fn every_purpose_and_every_kind_of_data_collected_is_in_the_notice() {
    let policy = example();
    let notice = notice(&policy);
    let catalog = policy.catalog();
    assert_eq!(notice.brand, "Fernhill Market");
    assert_eq!(notice.catalog_sha256, catalog.sha256());
    for purpose in catalog.purposes() {
        let stated = notice.purposes.iter().find(|p| p.key == purpose.key).expect("every purpose");
        assert_eq!(stated.benefit, purpose.benefit);
    }
    for property in catalog.properties() {
        for purpose in &property.purposes {
            let stated = notice.purposes.iter().find(|p| &p.key == purpose).unwrap();
            let data = stated.data.iter().find(|d| d.category == property.category);
            let data = data.unwrap_or_else(|| panic!("{} for {purpose}", property.path));
            assert!(!data.kept_for.is_empty());
            assert!(data.sensitive || !property.sensitive, "{} is sensitive", property.path);
        }
    }
    let invoices = notice.purposes.iter().find(|p| p.key == "essential.legal_obligation").unwrap();
    let purchases = invoices.data.iter().find(|d| d.category == "user.behavior.purchase_history").unwrap();
    assert_eq!(purchases.kept_for, "10 years", "the longest retention of the category");
    assert_eq!(purchases.category_name, "Purchase history");
    assert!(notice.rights.iter().any(|r| r.key == "erase"));
    assert_eq!(notice.promises.len(), catalog.guardrails().len());
}

#[test]
fn the_stated_basis_is_the_one_the_policy_enforces() {
    let policy = example();
    let notice = notice(&policy);
    let check = |purpose: &str, jurisdiction: Option<&str>, category: &str, expected: Basis| {
        assert_eq!(
            basis_of(&notice, purpose, jurisdiction, category),
            Some(expected),
            "{purpose} / {jurisdiction:?} / {category}"
        );
    };
    check("personalize.content", Some("eu"), "user.behavior.browsing_history", Basis::Consent);
    check("personalize.content", Some("us-ca"), "user.behavior.browsing_history", Basis::UnlessYouOptOut);
    check("personalize.content", None, "user.behavior.browsing_history", Basis::Consent);
    check("essential.service", Some("eu"), "user.contact.email", Basis::Necessary);
    check("essential.service", Some("eu"), "user.location.precise", Basis::ExplicitConsent);
    check("marketing.communications.email", Some("us-ca"), "user.contact.email", Basis::ExplicitConsent);
    check("analytics.reporting", Some("eu"), "user.behavior.browsing_history", Basis::NeverInAnalytics);
    check("analytics.reporting", Some("uk"), "user.behavior.browsing_history", Basis::Consent);
    check(
        "marketing.advertising.third_party.targeted",
        Some("eu"),
        "user.location.coarse",
        Basis::NeverBecause("no-location-for-ads-in-europe".into()),
    );
    check(
        "marketing.advertising.third_party.targeted",
        Some("us-ca"),
        "user.location.coarse",
        Basis::UnlessYouOptOut,
    );

    // And the policy agrees, decision by decision, for someone never asked, someone who said yes
    // themselves, and someone who said no.
    let catalog = policy.catalog();
    for stated in &notice.purposes {
        let purpose = catalog.purpose_index(&stated.key).unwrap();
        for basis in &stated.basis {
            let jurisdiction = basis.jurisdiction.as_deref().and_then(|k| catalog.jurisdiction_index(k));
            for (kind, categories) in &basis.uses {
                for property in catalog.properties().iter().filter(|p| categories.contains(&p.category)) {
                    if !property.purposes.iter().any(|p| crate::taxonomy::covers(p, &stated.key)) {
                        continue;
                    }
                    let decide = |consent: Option<ConsentKind>| {
                        let mut consents = ConsentStates::default();
                        if let Some(kind) = consent {
                            consents = ConsentStates::fold(&[ConsentEvent {
                                id: "e".into(),
                                purpose: stated.key.clone(),
                                kind,
                                method: ConsentMethod::Explicit,
                                at: 10,
                                expires_at: None,
                                version: stated.version,
                                source: None,
                                jurisdiction: None,
                                verified: true,
                                provenance: None,
                            }]);
                        }
                        let subject = SubjectContext { jurisdiction, consents, ..SubjectContext::default() };
                        policy.decide(&subject, &policy.consents(&subject, 20), property.id, purpose).is_ok()
                    };
                    let (unasked, yes, no) = (
                        decide(None),
                        decide(Some(ConsentKind::Given)),
                        decide(Some(ConsentKind::Withdrawn)),
                    );
                    let same_category_other_basis = basis
                        .uses
                        .iter()
                        .filter(|(other, cats)| other != kind && cats.contains(&property.category))
                        .count();
                    if same_category_other_basis > 0 {
                        continue; // the category is split between bases; each property checked under its own
                    }
                    let expected = match kind {
                        Basis::Necessary => (true, true, true),
                        Basis::Consent | Basis::ExplicitConsent => (false, true, false),
                        Basis::UnlessYouOptOut => (true, true, false),
                        Basis::NeverBecause(_) | Basis::NeverInAnalytics => (false, false, false),
                    };
                    assert_eq!(
                        (unasked, yes, no),
                        expected,
                        "{} for {} in {:?}: stated {kind:?}",
                        property.path,
                        stated.key,
                        basis.jurisdiction
                    );
                }
            }
        }
    }
}

#[test]
fn a_changed_catalog_changes_the_notice() {
    let text = Catalog::example_text().replace("regime = \"opt_out\"", "regime = \"opt_in\"");
    let policy = Policy::new(Arc::new(Catalog::parse(&text).unwrap()));
    let notice = notice(&policy);
    assert_eq!(
        basis_of(&notice, "personalize.content", Some("us-ca"), "user.behavior.browsing_history"),
        Some(Basis::Consent)
    );
    assert!(notice.jurisdictions.iter().all(|j| !j.honours_gpc));
    assert_ne!(notice.catalog_sha256, self::example().catalog().sha256());
}
