//! Request rules as a privacy team reads them: which status may follow which, deadlines per regime
//! and their one extension, and what an erasure keeps under legal hold.

use serde_json::json;

use super::*;

fn catalog() -> Catalog {
    Catalog::parse(Catalog::example_text()).unwrap()
}

#[test]
fn statuses_move_only_forward() {
    use RequestStatus::*;
    // Rows: from; columns: to, in the order of ALL. `x` = allowed.
    let table = [
        (Received, ".xx...x"),
        (Verifying, "..x...x"),
        (Running, "...xx.x"),
        (WaitingOnDestinations, "....xx."),
        (Completed, "......."),
        (PartiallyCompleted, "......."),
        (Failed, "......."),
    ];
    for (from, row) in table {
        let got: String =
            RequestStatus::ALL.iter().map(|&to| if from.may_become(to) { 'x' } else { '.' }).collect();
        assert_eq!(got, row, "from {}", from.as_str());
        assert_eq!(from.is_final(), row == ".......", "{}", from.as_str());
    }
    for status in RequestStatus::ALL {
        assert_eq!(RequestStatus::parse(status.as_str()), Some(status));
    }
    for kind in RequestKind::ALL {
        assert_eq!(RequestKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(RequestKind::parse("forget"), None);
}

#[test]
fn deadlines_follow_the_regime_and_extend_once_within_the_law() {
    let catalog = catalog();
    let (eu, california) = (catalog.jurisdiction("eu"), catalog.jurisdiction("us-ca"));
    let day = 86_400_000;
    assert_eq!(due_at(0, eu), 30 * day);
    assert_eq!(due_at(0, california), 45 * day);
    assert_eq!(due_at(0, None), 30 * day, "unknown: the shortest");

    let running = RequestStatus::Running;
    assert_eq!(extend(30 * day, running, false, eu, 60, "many systems to search"), Ok(90 * day));
    assert_eq!(extend(30 * day, running, false, eu, 61, "x"), Err(ExtensionRefused::TooLong { allowed: 60 }));
    assert_eq!(
        extend(45 * day, running, false, california, 46, "x"),
        Err(ExtensionRefused::TooLong { allowed: 45 })
    );
    assert_eq!(
        extend(30 * day, running, false, None, 46, "x"),
        Err(ExtensionRefused::TooLong { allowed: 45 })
    );
    assert_eq!(extend(30 * day, running, true, eu, 10, "x"), Err(ExtensionRefused::AlreadyExtended));
    assert_eq!(extend(30 * day, running, false, eu, 10, "  "), Err(ExtensionRefused::NoReason));
    assert_eq!(extend(30 * day, running, false, eu, 0, "x"), Err(ExtensionRefused::TooShort));
    assert_eq!(
        extend(30 * day, RequestStatus::Completed, false, eu, 10, "x"),
        Err(ExtensionRefused::Finished)
    );
}

#[test]
fn erasure_keeps_only_what_the_law_requires_for_as_long_as_it_requires() {
    let catalog = catalog();
    let held: Vec<&str> =
        legal_hold_properties(&catalog).iter().map(|&id| catalog.property(id).path.as_str()).collect();
    assert_eq!(held, ["properties.order_id", "properties.revenue", "properties.currency"]);

    let order = json!({
        "properties": {"order_id": "FH-1", "revenue": 42.5, "currency": "EUR",
                       "products": [{"product_id": "sku-1", "price": 42.5, "quantity": 1}]},
        "context": {"ip": "192.0.2.1"},
        "traits": {"email": "ada@example.com"},
    });
    let Value::Object(order) = order else { unreachable!() };
    let part = held_part(&catalog, &order, 1_000).expect("an order is held");
    assert_eq!(
        Value::Object(part.record),
        json!({"properties": {"order_id": "FH-1", "revenue": 42.5, "currency": "EUR"}})
    );
    assert_eq!(part.categories, ["user.behavior.purchase_history"]);
    let ten_years = catalog.property_by_path("properties.order_id").unwrap().retention.as_millis();
    assert_eq!(part.retain_until, 1_000 + ten_years);

    let view = json!({"properties": {"product_id": "sku-1"}, "context": {"ip": "192.0.2.1"}});
    let Value::Object(view) = view else { unreachable!() };
    assert_eq!(held_part(&catalog, &view, 1_000), None, "nothing of a product view is held");
}
