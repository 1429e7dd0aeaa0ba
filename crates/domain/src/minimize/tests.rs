//! Minimization as a privacy team would check it: declared data is kept whole, everything else is
//! dropped and counted, sensitive data only where allowed, strict sources reject.

use super::*;
use crate::segment::{Endpoint, parse_body, validate};
use serde_json::json;

fn catalog() -> Catalog {
    Catalog::parse(Catalog::example_text()).expect("example catalog")
}

fn message(kind: MessageType, value: Value) -> Message {
    let bytes = serde_json::to_vec(&value).unwrap();
    let mut parsed = parse_body(Endpoint::Single(kind), &bytes).unwrap();
    validate(parsed.events.remove(0).unwrap(), 0).unwrap()
}

fn keep(verdict: Verdict) -> Minimized {
    match verdict {
        Verdict::Keep(minimized) => minimized,
        other => panic!("expected Keep, got {other:?}"),
    }
}

fn dropped(minimized: &Minimized) -> Vec<(&str, &str)> {
    minimized.dropped.iter().map(|d| (d.path.as_str(), d.reason.as_str())).collect()
}

#[test]
fn declared_properties_are_kept_and_the_rest_counted() {
    let catalog = catalog();
    let web = catalog.source_by_key("web").unwrap();
    let event = message(
        MessageType::Track,
        json!({
            "userId": "u1", "event": "Order Completed", "messageId": "m1",
            "properties": {
                "order_id": "o-1", "revenue": 42.5, "coupon": "SPRING",
                "products": [{"product_id": "p1", "quantity": 2, "color": "red"}, {"sku": "x"}]
            },
            "context": {"ip": "192.0.2.1", "library": {"name": "analytics.js"}, "os": {"name": "iOS"},
                        "consent": {"categoryPreferences": {"Advertising": false}}},
            "integrations": {"All": true}
        }),
    );
    let kept = keep(minimize(&catalog, web, &event));
    assert_eq!(
        Value::Object(kept.record.clone()),
        json!({
            "properties": {"order_id": "o-1", "revenue": 42.5, "products": [{"product_id": "p1", "quantity": 2}]},
            "context": {"ip": "192.0.2.1", "library": {"name": "analytics.js"}}
        })
    );
    let mut drops = dropped(&kept);
    drops.sort_unstable();
    assert_eq!(
        drops,
        [
            ("context.os", "undeclared"),
            ("properties.coupon", "undeclared"),
            ("properties.products[].color", "undeclared"),
            ("properties.products[].sku", "undeclared"),
        ]
    );
    let paths: Vec<&str> = kept.kept.iter().map(|&id| catalog.property(id).path.as_str()).collect();
    assert!(
        paths.contains(&"properties.products[].product_id") && paths.contains(&"context.ip"),
        "{paths:?}"
    );
}

#[test]
fn identify_traits_become_profile_values_and_identifiers() {
    let catalog = catalog();
    let web = catalog.source_by_key("web").unwrap();
    let event = message(
        MessageType::Identify,
        json!({"userId": "u1", "traits": {"email": "Ada@Example.com", "first_name": "Ada", "favourite_colour": "blue",
               "address": {"city": "London", "country": "GB"}}}),
    );
    let kept = keep(minimize(&catalog, web, &event));
    let profile: Vec<&str> = kept.profile.iter().map(|(id, _)| catalog.property(*id).path.as_str()).collect();
    assert_eq!(profile, ["traits.address", "traits.email", "traits.first_name"]);
    let email = catalog.property_by_path("traits.email").unwrap().id;
    assert_eq!(kept.identifiers, [(IdentifierKind::Email, "Ada@Example.com".to_owned(), email)]);
    assert_eq!(dropped(&kept), [("traits.favourite_colour", "undeclared")]);
}

#[test]
fn traits_of_other_calls_are_not_profile_values() {
    let catalog = catalog();
    let web = catalog.source_by_key("web").unwrap();
    let event = message(
        MessageType::Group,
        json!({"userId": "u1", "groupId": "g1", "traits": {"email": "team@corp.example"}}),
    );
    let kept = keep(minimize(&catalog, web, &event));
    assert!(kept.profile.is_empty());
    assert_eq!(kept.record["groupId"], "g1");
}

#[test]
fn sensitive_properties_need_a_source_that_may_send_them() {
    let catalog = catalog();
    let event = json!({"anonymousId": "a1", "context": {"location": {"latitude": 51.5, "longitude": -0.12}}});
    let web = keep(minimize(
        &catalog,
        catalog.source_by_key("web").unwrap(),
        &message(MessageType::Page, event.clone()),
    ));
    assert!(web.record.is_empty());
    assert_eq!(dropped(&web), [("context.location", "sensitive_not_allowed")]);
    let ios =
        keep(minimize(&catalog, catalog.source_by_key("ios").unwrap(), &message(MessageType::Page, event)));
    assert_eq!(ios.record["context"]["location"]["latitude"], 51.5);
}

#[test]
fn undeclared_events_are_dropped_or_rejected() {
    let catalog = catalog();
    let event = message(MessageType::Track, json!({"userId": "u1", "event": "Mouse Moved"}));
    assert_eq!(
        minimize(&catalog, catalog.source_by_key("web").unwrap(), &event),
        Verdict::DropEvent(vec![Dropped { path: "event".into(), reason: DropReason::UndeclaredEvent }])
    );
    assert!(matches!(
        minimize(&catalog, catalog.source_by_key("backend").unwrap(), &event),
        Verdict::Reject { code: "undeclared_event", .. }
    ));
}

#[test]
fn strict_sources_reject_undeclared_properties() {
    let catalog = catalog();
    let event = message(
        MessageType::Track,
        json!({"userId": "u1", "event": "Order Completed", "properties": {"coupon": "X"}}),
    );
    let Verdict::Reject { code, message } =
        minimize(&catalog, catalog.source_by_key("backend").unwrap(), &event)
    else {
        panic!("strict source should reject");
    };
    assert_eq!(code, "undeclared_property");
    assert!(message.contains("properties.coupon"), "{message}");
}

#[test]
fn counted_paths_never_carry_values() {
    assert_eq!(counted_path("properties.coupon"), "properties.coupon");
    let catalog = catalog();
    let web = catalog.source_by_key("web").unwrap();
    let event = message(
        MessageType::Identify,
        json!({"userId": "u1", "traits": {"ada@example.com": true}, "ada.lovelace@x.io": 1}),
    );
    assert_eq!(
        dropped(&keep(minimize(&catalog, web, &event))),
        [("*", "undeclared"), ("traits.*", "undeclared")]
    );
    assert_eq!(counted_path("properties.4111111111111111"), "properties.*");
    assert_eq!(counted_path("properties.user 42.name"), "properties.*.name");
    assert_eq!(counted_path("properties.items[].sku"), "properties.items[].sku");
    assert!(counted_path(&format!("properties.{}", "a.".repeat(200))).chars().count() <= 121);
}

#[test]
fn undeclared_top_level_fields_are_counted_but_protocol_fields_are_not() {
    let catalog = catalog();
    let web = catalog.source_by_key("web").unwrap();
    let event = message(
        MessageType::Page,
        json!({"anonymousId": "a1", "name": "Home", "_metadata": {"bundled": []}, "channel": "client", "email": "x@y.z"}),
    );
    let kept = keep(minimize(&catalog, web, &event));
    assert_eq!(dropped(&kept), [("email", "undeclared")]);
    assert_eq!(kept.record["name"], "Home");
}

#[test]
fn records_lose_what_a_later_catalog_no_longer_declares() {
    let catalog = catalog();
    let mut record = json!({
        "traits": {"email": "a@example.com", "shoe_size": 42},
        "properties": {"products": [{"product_id": "p1", "colour": "red"}, {"colour": "blue"}], "gone": 1},
        "context": {"ip": "192.0.2.1", "removed": {"deep": true}},
    });
    let Value::Object(map) = &mut record else { unreachable!() };
    retain_declared(&catalog, map);
    assert_eq!(
        record,
        json!({"traits": {"email": "a@example.com"}, "properties": {"products": [{"product_id": "p1"}]},
               "context": {"ip": "192.0.2.1"}})
    );
}

#[test]
fn withholding_removes_exactly_the_named_properties() {
    let catalog = catalog();
    let web = catalog.source_by_key("web").unwrap();
    let event = message(
        MessageType::Track,
        json!({"userId": "u1", "event": "Order Completed",
               "properties": {"order_id": "o-1", "revenue": 10, "products": [{"product_id": "p1", "quantity": 1}, {"product_id": "p2"}]},
               "context": {"ip": "192.0.2.1"}}),
    );
    let mut kept = keep(minimize(&catalog, web, &event));
    let id = |path: &str| catalog.property_by_path(path).unwrap().id;
    let removed = withhold(
        &catalog,
        &mut kept.record,
        &[
            id("context.ip"),
            id("properties.products[].product_id"),
            id("properties.revenue"),
            id("traits.email"),
        ],
    );
    assert_eq!(
        Value::Object(kept.record),
        json!({"properties": {"order_id": "o-1", "products": [{"quantity": 1}]}})
    );
    assert_eq!(
        removed,
        [id("context.ip"), id("properties.products[].product_id"), id("properties.revenue")],
        "what was absent is not reported as removed"
    );
}
