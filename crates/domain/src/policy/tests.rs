//! Every regime × purpose × sensitivity × consent state, as a table a privacy lawyer can read, plus
//! guardrails, restriction, roles and the GPC path.

use super::*;
use crate::consent::{ConsentEvent, ConsentKind, ConsentMethod, gpc_signals};

const CATALOG: &str = r#"
[brand]
name = "Test"

[sources.web]
kind = "server"
write_key = "wk_test_12345"

[jurisdictions.optin]
name = "Opt-in"
regime = "opt_in"
countries = ["DE"]

[jurisdictions.optout]
name = "Opt-out"
regime = "opt_out"
countries = ["US-CA"]

[jurisdictions.optout-no-channel]
name = "Opt-out without channel consent"
regime = "opt_out"
channel_consent = false

[jurisdictions.nopii]
name = "Opt-in, no personal data in analytics"
regime = "opt_in"
no_personal_data_in_analytics = true

[purposes."essential.service"]
name = "Service"
description = "d"
benefit = "b"
version = 2

[purposes."personalize.content"]
name = "Personalization"
description = "d"
benefit = "b"
version = 2

[purposes."marketing.communications.email"]
name = "Email"
description = "d"
benefit = "b"
version = 2

[purposes."marketing.advertising.third_party.targeted"]
name = "Ads"
description = "d"
benefit = "b"
version = 2

[purposes."analytics.reporting"]
name = "Analytics"
description = "d"
benefit = "b"
version = 2

[purposes."essential.legal_obligation"]
name = "Legal"
description = "d"
benefit = "b"

[properties."properties.viewed"]
category = "user.behavior.browsing_history"
purposes = ["essential.service", "personalize.content", "marketing.communications.email", "marketing.advertising.third_party.targeted", "analytics.reporting", "essential.legal_obligation"]
retention = "1y"

[properties."traits.condition"]
category = "user.health.condition"
sensitive = true
purposes = ["essential.service", "personalize.content", "marketing.communications.email", "marketing.advertising.third_party.targeted", "analytics.reporting"]
retention = "1y"

[properties."context.library"]
category = "system.operations"
purposes = ["analytics.reporting"]
retention = "1y"

[[guardrails]]
name = "no-personalization-for-minors"
purposes = ["personalize"]
minors = true
"#;

const STATES: [&str; 7] = ["none", "given", "imported", "outdated", "withdrawn", "gpc", "expired"];

fn policy() -> Policy {
    Policy::new(Arc::new(
        Catalog::parse(CATALOG).unwrap_or_else(|errors| panic!("{}", errors.render("test"))),
    ))
}

fn consents_in(state: &str, purpose: &str) -> ConsentStates {
    let (kind, method, version, expires_at) = match state {
        "none" => return ConsentStates::default(),
        "given" => (ConsentKind::Given, ConsentMethod::Explicit, 2, None),
        "imported" => (ConsentKind::Given, ConsentMethod::Imported, 2, None),
        "outdated" => (ConsentKind::Given, ConsentMethod::Explicit, 1, None),
        "withdrawn" => (ConsentKind::Withdrawn, ConsentMethod::PreferenceCenter, 2, None),
        "gpc" => (ConsentKind::Withdrawn, ConsentMethod::Gpc, 2, None),
        "expired" => (ConsentKind::Given, ConsentMethod::Explicit, 2, Some(50)),
        other => panic!("unknown state {other}"),
    };
    ConsentStates::fold(&[ConsentEvent {
        id: "e".into(),
        purpose: purpose.into(),
        kind,
        method,
        at: 10,
        expires_at,
        version,
        source: None,
        jurisdiction: None,
        verified: true,
    }])
}

fn outcome(result: Result<(), Reason>) -> char {
    match result {
        Ok(()) => '+',
        Err(Reason::NoConsent) => 'n',
        Err(Reason::ConsentWithdrawn) => 'w',
        Err(Reason::ConsentOutdated) => 'o',
        Err(Reason::NeedsExplicitConsent) => 'x',
        Err(Reason::ConsentExpired) => 'e',
        Err(Reason::NoPersonalDataInAnalytics) => 'p',
        Err(Reason::Guardrail(_)) => 'g',
        Err(Reason::Restricted) => 'r',
        Err(Reason::PurposeNotServed) => '-',
        Err(Reason::Role) => 'R',
    }
}

/// Outcomes over [`STATES`] for one jurisdiction, property and purpose, as a string: `+` permitted,
/// `n` no consent, `w` withdrawn, `o` outdated wording, `x` needs explicit consent, `e` expired,
/// `p` no personal data in analytics, `g` guardrail, `r` restricted.
fn row(policy: &Policy, jurisdiction: Option<&str>, minor: bool, property: &str, purpose: &str) -> String {
    let catalog = policy.catalog().clone();
    let property = catalog.property_by_path(property).unwrap().id;
    let purpose_index = catalog.purpose_index(purpose).unwrap();
    STATES
        .iter()
        .map(|state| {
            let subject = SubjectContext {
                jurisdiction: jurisdiction.map(|key| catalog.jurisdiction_index(key).unwrap()),
                minor,
                restricted: false,
                consents: consents_in(state, purpose),
            };
            let consents = policy.consents(&subject, 100);
            outcome(policy.decide(&subject, &consents, property, purpose_index))
        })
        .collect()
}

#[test]
fn every_regime_purpose_sensitivity_and_consent_state() {
    let policy = policy();
    let viewed = "properties.viewed";
    let condition = "traits.condition";
    // (jurisdiction, property, purpose, outcomes for: none given imported outdated withdrawn gpc expired)
    let table: &[(Option<&str>, &str, &str, &str)] = &[
        // Opt-in (GDPR): essential purposes need no consent; everything else needs consent to the
        // current wording; email marketing needs it expressed by the person.
        (Some("optin"), viewed, "essential.service", "+++++++"),
        (Some("optin"), viewed, "personalize.content", "n++owwe"),
        (Some("optin"), viewed, "analytics.reporting", "n++owwe"),
        (Some("optin"), viewed, "marketing.advertising.third_party.targeted", "n++owwe"),
        (Some("optin"), viewed, "marketing.communications.email", "n+xowwe"),
        // Sensitive data needs explicit, current consent for every purpose, essential ones too.
        (Some("optin"), condition, "essential.service", "n+xowwe"),
        (Some("optin"), condition, "personalize.content", "n+xowwe"),
        // Opt-out (CCPA/CPRA): allowed until the person opts out (GPC is an opt-out); wording
        // versions and expiry do not matter; channel and sensitive data still need explicit consent.
        (Some("optout"), viewed, "essential.service", "+++++++"),
        (Some("optout"), viewed, "personalize.content", "++++ww+"),
        (Some("optout"), viewed, "analytics.reporting", "++++ww+"),
        (Some("optout"), viewed, "marketing.advertising.third_party.targeted", "++++ww+"),
        (Some("optout"), viewed, "marketing.communications.email", "n+xowwe"),
        (Some("optout"), condition, "essential.service", "n+xowwe"),
        (Some("optout"), condition, "marketing.advertising.third_party.targeted", "n+xowwe"),
        // Without channel consent, email is like any opt-out purpose.
        (Some("optout-no-channel"), viewed, "marketing.communications.email", "++++ww+"),
        // No personal data in analytics: personal categories never, system data as the regime says.
        (Some("nopii"), viewed, "analytics.reporting", "ppppppp"),
        (Some("nopii"), condition, "analytics.reporting", "ppppppp"),
        (Some("nopii"), "context.library", "analytics.reporting", "n++owwe"),
        (Some("nopii"), viewed, "personalize.content", "n++owwe"),
        // An unknown jurisdiction is judged as opt-in.
        (None, viewed, "personalize.content", "n++owwe"),
        (None, viewed, "marketing.communications.email", "n+xowwe"),
        (None, viewed, "essential.service", "+++++++"),
        // A property is never used for a purpose it was not collected for.
        (Some("optout"), "context.library", "personalize.content", "-------"),
    ];
    for (jurisdiction, property, purpose, expected) in table {
        assert_eq!(
            row(&policy, *jurisdiction, false, property, purpose),
            *expected,
            "{jurisdiction:?} {property} for {purpose} over {STATES:?}"
        );
    }
}

#[test]
fn guardrails_apply_to_the_subjects_they_name() {
    let policy = policy();
    assert_eq!(row(&policy, Some("optout"), true, "properties.viewed", "personalize.content"), "ggggggg");
    assert_eq!(row(&policy, Some("optout"), false, "properties.viewed", "personalize.content"), "++++ww+");
    assert_eq!(row(&policy, Some("optout"), true, "properties.viewed", "analytics.reporting"), "++++ww+");
}

#[test]
fn reasons_are_described_by_code_and_guardrails_by_name() {
    let policy = policy();
    let name = &policy.catalog().guardrails()[0].name;
    assert_eq!(policy.describe(Reason::Guardrail(0)), format!("guardrail:{name}"));
    assert_eq!(policy.describe(Reason::NoConsent), "no_consent");
    assert_eq!(policy.describe(Reason::Guardrail(999)), "guardrail");
}

#[test]
fn restriction_stops_everything_but_legal_obligations() {
    let policy = policy();
    let catalog = policy.catalog().clone();
    let viewed = catalog.property_by_path("properties.viewed").unwrap().id;
    let subject = SubjectContext { jurisdiction: Some(1), restricted: true, ..SubjectContext::default() };
    let consents = policy.consents(&subject, 0);
    for purpose in catalog.purposes() {
        let decided =
            policy.decide(&subject, &consents, viewed, catalog.purpose_index(&purpose.key).unwrap());
        if purpose.key == "essential.legal_obligation" {
            assert_eq!(decided, Ok(()));
        } else {
            assert_eq!(decided, Err(Reason::Restricted), "{}", purpose.key);
        }
    }
}

#[test]
fn a_property_is_storable_when_any_of_its_purposes_is_permitted() {
    let policy = policy();
    let catalog = policy.catalog().clone();
    let condition = catalog.property_by_path("traits.condition").unwrap().id;
    let library = catalog.property_by_path("context.library").unwrap().id;
    let optin =
        SubjectContext { jurisdiction: catalog.jurisdiction_index("optin"), ..SubjectContext::default() };
    let consents = policy.consents(&optin, 0);
    assert_eq!(
        policy.storable(&optin, &consents, condition),
        Err(Reason::NoConsent),
        "sensitive: no consent, not stored"
    );
    assert_eq!(policy.storable(&optin, &consents, library), Err(Reason::NoConsent));
    let consenting = SubjectContext { consents: consents_in("given", "personalize.content"), ..optin };
    let consents = policy.consents(&consenting, 0);
    assert_eq!(policy.storable(&consenting, &consents, condition), Ok(()), "one permitted purpose is enough");
}

#[test]
fn gpc_withdraws_sale_and_sharing_in_an_opt_out_regime() {
    let policy = policy();
    let catalog = policy.catalog().clone();
    let viewed = catalog.property_by_path("properties.viewed").unwrap().id;
    let ads = catalog.purpose_index("marketing.advertising.third_party.targeted").unwrap();
    let personalize = catalog.purpose_index("personalize.content").unwrap();
    let mut subject =
        SubjectContext { jurisdiction: catalog.jurisdiction_index("optout"), ..SubjectContext::default() };
    for (index, signal) in gpc_signals(&catalog).into_iter().enumerate() {
        assert!(subject.consents.changes(&signal, 2, 10));
        subject.consents.apply(&ConsentEvent {
            id: format!("gpc-{index}"),
            purpose: signal.purpose,
            kind: signal.kind,
            method: signal.method,
            at: 10,
            expires_at: None,
            version: 2,
            source: None,
            jurisdiction: None,
            verified: true,
        });
    }
    let consents = policy.consents(&subject, 20);
    assert_eq!(policy.decide(&subject, &consents, viewed, ads), Err(Reason::ConsentWithdrawn));
    assert_eq!(
        policy.decide(&subject, &consents, viewed, personalize),
        Ok(()),
        "GPC leaves other purposes alone"
    );
}

#[test]
fn roles_read_only_their_purposes_and_categories() {
    let policy = policy();
    let catalog = policy.catalog().clone();
    let role = Role {
        name: "marketing".into(),
        description: None,
        purposes: vec!["marketing".into()],
        categories: vec!["user.behavior".into()],
        requests: Vec::new(),
        may: Vec::new(),
    };
    let viewed = catalog.property_by_path("properties.viewed").unwrap().id;
    let condition = catalog.property_by_path("traits.condition").unwrap().id;
    let email = catalog.purpose_index("marketing.communications.email").unwrap();
    let personalize = catalog.purpose_index("personalize.content").unwrap();
    assert!(policy.role_may_read(&role, viewed, email));
    assert!(!policy.role_may_read(&role, condition, email), "category outside the role");
    assert!(!policy.role_may_read(&role, viewed, personalize), "purpose outside the role");
    assert!(policy.role_may_use(&role, email));
    assert!(!policy.role_may_use(&role, personalize));
}

#[test]
fn whether_a_persons_events_may_serve_a_purpose_is_decided_as_for_their_behaviour() {
    let policy = policy();
    let catalog = policy.catalog().clone();
    let viewed = catalog.property_by_path("properties.viewed").unwrap().id;
    let jurisdictions = [None, Some(0), Some(1), Some(2), Some(3)];
    for (jurisdiction, minor, restricted) in
        jurisdictions.into_iter().flat_map(|j| [(j, false, false), (j, true, false), (j, false, true)])
    {
        for purpose in catalog.purposes() {
            let index = catalog.purpose_index(&purpose.key).unwrap();
            for state in STATES {
                let subject = SubjectContext {
                    jurisdiction,
                    minor,
                    restricted,
                    consents: consents_in(state, &purpose.key),
                };
                let consents = policy.consents(&subject, 100);
                assert_eq!(
                    policy.decide_behaviour(&subject, &consents, index),
                    policy.decide(&subject, &consents, viewed, index),
                    "{} {state} in {jurisdiction:?}, minor {minor}, restricted {restricted}",
                    purpose.key
                );
            }
        }
    }
    // A sensitive property needs more than the event that carries it.
    let given = SubjectContext {
        jurisdiction: Some(1),
        consents: consents_in("imported", "personalize.content"),
        ..SubjectContext::default()
    };
    let consents = policy.consents(&given, 100);
    let personalize = catalog.purpose_index("personalize.content").unwrap();
    let condition = catalog.property_by_path("traits.condition").unwrap().id;
    assert_eq!(policy.decide_behaviour(&given, &consents, personalize), Ok(()));
    assert_eq!(policy.decide(&given, &consents, condition, personalize), Err(Reason::NeedsExplicitConsent));
}
