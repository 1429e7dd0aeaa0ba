//! Folding the ledger is order-independent; statuses follow time, version and expiry; signals on
//! events are read as consent platforms mean them.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn event(id: &str, purpose: &str, kind: ConsentKind, method: ConsentMethod, at: i64) -> ConsentEvent {
    ConsentEvent {
        id: id.to_owned(),
        purpose: purpose.to_owned(),
        kind,
        method,
        at,
        expires_at: None,
        version: 1,
        source: None,
        jurisdiction: None,
        verified: true,
        provenance: None,
    }
}

fn arbitrary_event() -> impl Strategy<Value = ConsentEvent> {
    (
        "[a-f0-9]{4}",
        prop::sample::select(vec![
            "personalize.content",
            "analytics.reporting",
            "marketing.communications.email",
        ]),
        prop::sample::select(vec![
            ConsentKind::Given,
            ConsentKind::Withdrawn,
            ConsentKind::Expired,
            ConsentKind::Renewed,
        ]),
        prop::sample::select(vec![
            ConsentMethod::Explicit,
            ConsentMethod::Api,
            ConsentMethod::Gpc,
            ConsentMethod::Imported,
        ]),
        0i64..50,
        prop::option::of(0i64..100),
        1u32..3,
    )
        .prop_map(|(id, purpose, kind, method, at, expires_at, version)| ConsentEvent {
            id,
            purpose: purpose.to_owned(),
            kind,
            method,
            at,
            expires_at,
            version,
            source: None,
            jurisdiction: None,
            verified: true,
            provenance: None,
        })
}

proptest! {
    /// Any order, any split into chunks folded separately and merged: the same state.
    #[test]
    fn folding_the_ledger_in_any_split_order_gives_the_same_state(
        events in prop::collection::vec(arbitrary_event(), 0..40),
        seed in any::<u64>(),
        cut in 0usize..40,
    ) {
        let whole = ConsentStates::fold(&events);
        let mut shuffled = events.clone();
        // A deterministic shuffle from the seed.
        let mut state = seed | 1;
        for index in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(index, (state % (index as u64 + 1)) as usize);
        }
        prop_assert_eq!(&ConsentStates::fold(&shuffled), &whole);
        let cut = cut.min(shuffled.len());
        let mut left = ConsentStates::fold(&shuffled[..cut]);
        let right = ConsentStates::fold(&shuffled[cut..]);
        left.merge(&right);
        prop_assert_eq!(&left, &whole);
        let mut incremental = ConsentStates::fold(&shuffled[..cut]);
        for event in &shuffled[cut..] {
            incremental.apply(event);
        }
        prop_assert_eq!(incremental, whole);
    }
}

#[test]
fn the_latest_event_decides() {
    let states = ConsentStates::fold(&[
        event("a", "personalize.content", ConsentKind::Given, ConsentMethod::Explicit, 10),
        event("b", "personalize.content", ConsentKind::Withdrawn, ConsentMethod::PreferenceCenter, 20),
    ]);
    assert_eq!(states.status("personalize.content", 1, 30), Status::Withdrawn);
    assert_eq!(states.status("analytics.reporting", 1, 30), Status::NoSignal);
}

#[test]
fn expiry_and_version_are_judged_at_decision_time() {
    let mut given = event("a", "personalize.content", ConsentKind::Given, ConsentMethod::Api, 10);
    given.expires_at = Some(100);
    let states = ConsentStates::fold(&[given]);
    assert_eq!(states.status("personalize.content", 1, 99), Status::Given { explicit: true, current: true });
    assert_eq!(states.status("personalize.content", 1, 100), Status::Expired);
    // The purpose's wording changed: the consent is to an older version.
    assert_eq!(states.status("personalize.content", 2, 50), Status::Given { explicit: true, current: false });
    let imported = ConsentStates::fold(&[event("b", "x", ConsentKind::Given, ConsentMethod::Imported, 1)]);
    assert_eq!(imported.status("x", 1, 2), Status::Given { explicit: false, current: true });
}

#[test]
fn only_changes_are_worth_recording() {
    let signal =
        |kind, method| ConsentSignal { purpose: "p".into(), kind, method, at: None, provenance: None };
    let given = ConsentStates::fold(&[event("a", "p", ConsentKind::Given, ConsentMethod::Explicit, 1)]);
    assert!(
        !given.changes(&signal(ConsentKind::Given, ConsentMethod::Explicit), 1, 5),
        "repeats are not changes"
    );
    assert!(
        given.changes(&signal(ConsentKind::Given, ConsentMethod::Explicit), 2, 5),
        "a new version is asked again"
    );
    assert!(given.changes(&signal(ConsentKind::Withdrawn, ConsentMethod::Explicit), 1, 5));
    assert!(
        !given.changes(&signal(ConsentKind::Withdrawn, ConsentMethod::Gpc), 1, 5),
        "GPC does not override an explicit yes"
    );
    let implicit = ConsentStates::fold(&[event("a", "p", ConsentKind::Given, ConsentMethod::Imported, 1)]);
    assert!(implicit.changes(&signal(ConsentKind::Withdrawn, ConsentMethod::Gpc), 1, 5));
    let none = ConsentStates::default();
    assert!(none.changes(&signal(ConsentKind::Withdrawn, ConsentMethod::Gpc), 1, 5));
    let withdrawn = ConsentStates::fold(&[event("a", "p", ConsentKind::Withdrawn, ConsentMethod::Gpc, 1)]);
    assert!(!withdrawn.changes(&signal(ConsentKind::Withdrawn, ConsentMethod::Gpc), 1, 5));
}

fn catalog() -> Catalog {
    Catalog::parse(Catalog::example_text()).unwrap()
}

fn signals(context: serde_json::Value) -> Result<Vec<(String, ConsentKind)>, MalformedConsent> {
    signals_from_context(&catalog(), Some(&context))
        .map(|signals| signals.into_iter().map(|signal| (signal.purpose, signal.kind)).collect())
}

#[test]
fn segment_category_preferences() {
    assert_eq!(signals(json!({})), Ok(vec![]), "no consent object: no signal");
    assert_eq!(
        signals(
            json!({"consent": {"categoryPreferences": {"Advertising": false, "Analytics": true, "Unknown": true}}})
        ),
        Ok(vec![
            ("analytics.reporting".into(), ConsentKind::Given),
            ("marketing.advertising.third_party.targeted".into(), ConsentKind::Withdrawn),
        ])
    );
    let everything_denied = signals(json!({"consent": {"categoryPreferences": {}}})).unwrap();
    assert_eq!(everything_denied.len(), 4);
    assert!(everything_denied.iter().all(|(_, kind)| *kind == ConsentKind::Withdrawn));
    assert!(signals(json!({"consent": {"categoryPreferences": {"Advertising": "yes"}}})).is_err());
    assert!(signals(json!({"consent": {"categoryPreferences": ["Advertising"]}})).is_err());
    assert!(signals(json!({"consent": "all"})).is_err());
}

#[test]
fn rudderstack_consent_management() {
    assert_eq!(
        signals(
            json!({"consentManagement": {"provider": "oneTrust", "allowedConsentIds": ["Email"], "deniedConsentIds": ["Personalization"]}})
        ),
        Ok(vec![
            ("marketing.communications.email".into(), ConsentKind::Given),
            ("personalize.content".into(), ConsentKind::Withdrawn),
        ])
    );
    assert!(signals(json!({"consentManagement": {"allowedConsentIds": "Email"}})).is_err());
    assert!(signals(json!({"consentManagement": {"deniedConsentIds": [1, 2]}})).is_err());
}

#[test]
fn denial_wins_when_categories_disagree() {
    let catalog = Catalog::parse(&Catalog::example_text().replace(
        "Email = [\"marketing.communications.email\"]",
        "Email = [\"marketing.communications.email\"]\nNewsletter = [\"marketing.communications.email\"]",
    ))
    .unwrap();
    let context = json!({"consent": {"categoryPreferences": {"Email": true, "Newsletter": false}}});
    let found = signals_from_context(&catalog, Some(&context)).unwrap();
    assert_eq!(found[0].kind, ConsentKind::Withdrawn);
}

#[test]
fn gpc_opts_out_of_sale_and_sharing_only() {
    let purposes: Vec<String> = gpc_signals(&catalog()).into_iter().map(|signal| signal.purpose).collect();
    assert_eq!(purposes, ["marketing.advertising.third_party.targeted"]);
    assert!(is_sale_or_sharing("third_party_sharing.legal_obligation"));
    assert!(!is_sale_or_sharing("marketing.communications.email"));
}

#[test]
fn a_string_older_than_the_latest_word_does_not_take_effect_and_one_of_the_same_day_comes_after() {
    let day = 1_795_996_800_000;
    let string = |at| ConsentSignal {
        purpose: "p".into(),
        kind: ConsentKind::Given,
        method: ConsentMethod::Explicit,
        at: Some(at),
        provenance: None,
    };
    let states =
        ConsentStates::fold(&[event("a", "p", ConsentKind::Withdrawn, ConsentMethod::Api, day + 5_000)]);
    assert_eq!(states.signal_time(&string(day), day + 9_000), None, "older than the withdrawal");
    assert_eq!(states.signal_time(&string(day + 86_400_000), day + 90_000_000), Some(day + 86_400_000));
    // A later string of the same day (CMPs round LastUpdated to the day) wins the fold.
    let states =
        ConsentStates::fold(&[event("z", "p", ConsentKind::Withdrawn, ConsentMethod::Explicit, day)]);
    assert_eq!(states.signal_time(&string(day), day + 9_000), Some(day + 1));
    // A string dated after its arrival is taken at its arrival.
    assert_eq!(ConsentStates::default().signal_time(&string(day), day - 10), Some(day - 10));
}
