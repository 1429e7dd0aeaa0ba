//! Catalog checks as a user of `tactful catalog check` meets them: the example is valid, and each
//! kind of mistake is reported once, at its line and column, with a useful message.

use super::*;

const MINIMAL: &str = r#"
[brand]
name = "Shop"
[sources.web]
kind = "server"
write_key = "wk_test_12345"

[purposes."essential.service"]
name = "Running the shop"
description = "We use your details to run the shop."
benefit = "Your orders arrive."

[properties."traits.email"]
category = "user.contact.email"
purposes = ["essential.service"]
retention = "1y"
identifier = "email"
"#;

/// Problems for `text` as `(line, column, message fragment)`; panics if the catalog is valid.
fn problems(text: &str) -> Vec<(usize, usize, String)> {
    let errors = Catalog::parse(text).expect_err("catalog should be refused");
    errors.problems.into_iter().map(|problem| (problem.line, problem.column, problem.message)).collect()
}

fn check(text: &str, line: usize, fragment: &str) {
    let found = problems(text);
    assert!(
        found.iter().any(|(at, _, message)| *at == line && message.contains(fragment)),
        "expected {fragment:?} at line {line}, got {found:#?}"
    );
}

#[test]
fn the_shipped_example_is_valid() {
    let catalog = Catalog::parse(Catalog::example_text())
        .unwrap_or_else(|errors| panic!("{}", errors.render("example")));
    assert_eq!(catalog.brand().name, "Fernhill Market");
    assert!(catalog.source_by_write_key("wk_web_fernhill_demo").is_some());
    assert!(
        catalog.property_by_path("traits.email").is_some_and(|p| p.identifier == Some(IdentifierKind::Email))
    );
    assert!(catalog.has_properties_below("properties.products[]"));
    assert!(catalog.has_properties_below("properties.products"));
    assert!(catalog.has_properties_below("properties"));
    assert!(!catalog.has_properties_below("properties.product_id"));
    let order = catalog.event("Order Completed").expect("declared");
    assert_eq!(order.feedback, Some(Feedback::Purchase));
    assert_eq!(catalog.property(order.item.expect("item")).path, "properties.products[].product_id");
    assert!(catalog.purpose("essential.service").expect("declared").is_essential());
    assert!(!catalog.purpose("personalize.content").expect("declared").is_essential());
    assert_eq!(catalog.jurisdiction("us-ca").expect("declared").request_deadline_days, 45);
}

#[test]
fn a_minimal_catalog_is_valid() {
    let catalog = Catalog::parse(MINIMAL).expect("valid");
    assert_eq!(catalog.sources().len(), 1);
    assert_eq!(catalog.source_by_write_key("wk_test_12345").map(|s| s.key.as_str()), Some("web"));
    assert!(catalog.source_by_write_key("wk_test_1234").is_none());
}

#[test]
fn the_controllers_address_and_phone_are_checked() {
    let with = |lines: &str| MINIMAL.replace("name = \"Shop\"", &format!("name = \"Shop\"\n{lines}"));
    let catalog =
        Catalog::parse(&with("address = \"1 Main St, Springfield\"\nphone = \"+1 (415) 555-0100\""))
            .expect("valid");
    assert_eq!(catalog.brand().address.as_deref(), Some("1 Main St, Springfield"));
    assert_eq!(catalog.brand().phone.as_deref(), Some("+1 (415) 555-0100"));
    check(&with("phone = \"call us\""), 4, "brand.phone \"call us\" is not a phone number");
    check(&with("phone = \"12+34\""), 4, "is not a phone number");
    check(&with("phone = \"1234\""), 4, "6 to 15 digits");
    check(&with("address = \"1 Main St\\nSpringfield\""), 4, "brand.address must be one line");
    check(&with("address = \" \""), 4, "brand.address must not be empty");
    assert!(Catalog::parse(MINIMAL).unwrap().brand().phone.is_none(), "both stay optional");
}

#[test]
fn syntax_errors_have_a_position() {
    let found = problems("[brand]\nname = \"Shop\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, 2);
}

#[test]
fn unknown_fields_are_refused_at_their_position() {
    let text = MINIMAL.replace("retention = \"1y\"", "retention = \"1y\"\nretension = \"2y\"");
    check(&text, 17, "unknown field `retension`");
}

#[test]
fn unknown_taxonomy_keys_suggest_the_right_one() {
    let text = MINIMAL.replace("user.contact.email\"", "user.contact.emial\"");
    check(&text, 14, "did you mean \"user.contact.email\"");
    let text = MINIMAL.replace("[purposes.\"essential.service\"]", "[purposes.\"esential.service\"]");
    check(&text, 8, "not a fideslang data use");
}

#[test]
fn custom_children_of_known_keys_are_allowed() {
    let text = MINIMAL.replace("user.contact.email\"", "user.contact.email.work\"");
    assert!(Catalog::parse(&text).is_ok());
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let text = MINIMAL
        .replace("user.contact.email\"", "usr.contact.email\"")
        .replace("retention = \"1y\"", "retention = \"forever\"")
        .replace("[\"essential.service\"]", "[\"marketing.communications.email\"]");
    let found = problems(&text);
    let lines: Vec<usize> = found.iter().map(|(line, _, _)| *line).collect();
    assert_eq!(lines, [14, 15, 16], "{found:#?}");
    assert!(found[0].2.contains("usr.contact.email"));
    assert!(found[1].2.contains("not declared under [purposes]"));
    assert!(found[2].2.contains("retention must look like"));
}

#[test]
fn sensitive_categories_must_be_marked() {
    let text = format!(
        "{MINIMAL}\n[properties.\"traits.diagnosis\"]\ncategory = \"user.health.medical_diagnosis\"\npurposes = [\"essential.service\"]\nretention = \"1y\"\n"
    );
    check(&text, 20, "sensitive category");
    let marked = text.replace("retention = \"1y\"\n", "retention = \"1y\"\nsensitive = true\n");
    assert!(Catalog::parse(&marked).is_ok());
}

#[test]
fn references_must_resolve() {
    let text = MINIMAL.replace(
        "write_key = \"wk_test_12345\"",
        "write_key = \"wk_test_12345\"\ndefault_jurisdiction = \"eu\"",
    );
    check(&text, 7, "unknown jurisdiction \"eu\"");
    let text = format!("{MINIMAL}\n[events.\"Order Completed\"]\nitem = \"properties.order_id\"\n");
    check(&text, 20, "item property \"properties.order_id\" is not declared");
}

#[test]
fn paths_are_checked() {
    let text = MINIMAL.replace("\"traits.email\"", "\"email\"");
    check(&text, 13, "must start with traits., properties. or context.");
    let text = MINIMAL.replace("\"traits.email\"", "\"context.consent.categoryPreferences\"");
    check(&text, 13, "consent signals");
    let text = format!(
        "{MINIMAL}\n[properties.\"traits.email.domain\"]\ncategory = \"user.contact.email\"\npurposes = [\"essential.service\"]\nretention = \"1y\"\n"
    );
    check(&text, 19, "lies inside traits.email");
}

#[test]
fn write_keys_are_unique_and_long_enough() {
    let text = format!("{MINIMAL}\n[sources.app]\nkind = \"server\"\nwrite_key = \"wk_test_12345\"\n");
    check(&text, 21, "already used by another source");
    let text = MINIMAL.replace("wk_test_12345", "short");
    check(&text, 6, "at least 8 characters");
}

#[test]
fn a_source_says_whether_its_write_key_is_secret_or_public() {
    let text = MINIMAL.replace("kind = \"server\"\n", "");
    check(&text, 4, "say where this source's write key lives");
    let text = MINIMAL.replace("kind = \"server\"", "kind = \"web\"");
    check(&text, 5, "is not \"server\", \"browser\" or \"mobile\"");
    let text = MINIMAL.replace("kind = \"server\"", "kind = \"browser\"\nidentity_secret = \"short\"");
    check(&text, 6, "at least 16 characters");
    let text = MINIMAL
        .replace("kind = \"server\"", "kind = \"server\"\nidentity_secret = \"idsec_0123456789abcdef\"");
    check(&text, 6, "needs no identity_secret");
    let text = MINIMAL.replace("kind = \"server\"", "kind = \"server\"\ntrust_claims = true");
    check(&text, 6, "trust_claims is for browser and mobile sources");
    let text = MINIMAL.replace("kind = \"server\"", "kind = \"mobile\"\ntrust_claims = true");
    let notes = Catalog::parse(&text).unwrap().notes().to_vec();
    assert!(
        notes
            .iter()
            .any(|note| note.line == 6 && note.message.contains("anyone holding its public write key")),
        "catalog check says what trusting claims allows: {notes:?}"
    );
    let text = MINIMAL
        .replace("kind = \"server\"", "kind = \"browser\"\nidentity_secret = \"idsec_0123456789abcdef\"");
    let catalog = Catalog::parse(&text).unwrap();
    let source = &catalog.sources()[0];
    assert!(source.is_public());
    let token = crate::identity::token("idsec_0123456789abcdef", "u-1");
    assert!(source.proves("u-1", Some(&token)), "the backend's token proves the person");
    assert!(!source.proves("u-2", Some(&token)), "for that person only");
    assert!(!source.proves("u-1", None), "without a token, a claim");
}

#[test]
fn merge_rules_name_known_kinds_and_sources_and_sane_limits() {
    let rules = |section: &str| format!("{MINIMAL}\n[identity]\n{section}\n");
    let catalog = Catalog::parse(&rules(
        "link_from = { email = [\"web\"] }\nmax_per_person = { email = 2, user_id = 1 }",
    ))
    .unwrap();
    let linking = catalog.linking();
    assert_eq!(linking.limit(&IdentifierKind::Email), Some(2));
    assert!(linking.links(&IdentifierKind::Email, "web") && !linking.links(&IdentifierKind::Email, "app"));
    let line = MINIMAL.lines().count() + 3;
    check(&rules("link = [\"loyalty\"]"), line, "not an identifier kind of this catalog");
    check(&rules("link_from = { email = [\"app\"] }"), line, "unknown source \"app\"");
    check(&rules("max_per_person = { email = 0 }"), line, "at least 1");
}

#[test]
fn a_catalog_without_sources_is_refused() {
    let text = MINIMAL.replace("[sources.web]\nkind = \"server\"\nwrite_key = \"wk_test_12345\"\n", "");
    let found = problems(&text);
    assert!(
        found.iter().any(|(line, _, message)| *line == 0 && message.contains("no [sources.*]")),
        "{found:#?}"
    );
}

#[test]
fn rendering_names_file_line_and_column() {
    let errors = Catalog::parse(&MINIMAL.replace("\"1y\"", "\"1 year\"")).expect_err("invalid");
    let rendered = errors.render("tactful.toml");
    assert!(rendered.starts_with("tactful.toml:16:13: retention must look like"), "{rendered}");
}

#[test]
fn subjects_attributes_come_from_the_declared_traits() {
    let catalog = Catalog::parse(Catalog::example_text()).unwrap();
    let record = |value: serde_json::Value| value.as_object().unwrap().clone();
    let at = 1_700_000_000_000; // 2023-11-14
    let check = |traits: serde_json::Value, expected: (Option<&str>, Option<bool>)| {
        let observed = catalog.observed_attributes(&record(serde_json::json!({ "traits": traits })), at);
        assert_eq!((observed.0.as_deref(), observed.1), expected, "{traits}");
    };
    check(serde_json::json!({"address": {"country": "DE"}}), (Some("eu"), None));
    check(serde_json::json!({"address": {"country": "us", "state": "ca"}}), (Some("us-ca"), None));
    check(serde_json::json!({"address": {"country": "US", "state": "NY"}}), (None, None));
    check(
        serde_json::json!({"address": {"country": "GB"}, "birthday": "2010-01-01"}),
        (Some("uk"), Some(true)),
    );
    check(serde_json::json!({"birthday": "2005-11-14"}), (None, Some(false)));
    check(serde_json::json!({"birthday": "2005-11-15"}), (None, Some(true)));
    check(serde_json::json!({"birthday": "not a date"}), (None, None));
    check(serde_json::json!({}), (None, None));
}

#[test]
fn destinations_are_checked() {
    let good = format!(
        "{MINIMAL}\n[destinations.crm]\nurl = \"https://crm.example/hooks/tactful\"\nsecret = \"whsec_0123456789abcdef\"\n\
         receives = [\"erase\", \"consent_changed\"]\nidentifiers = [\"email\", \"user_id\"]\ngive_up_after = \"2d\"\n\
         [destinations.local]\nurl = \"http://127.0.0.1:9000/hook\"\nsecret = \"whsec_0123456789abcdef\"\nreceives = [\"erase\"]\n"
    );
    let catalog = Catalog::parse(&good).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let crm = catalog.destination("crm").unwrap();
    assert_eq!(crm.receives, [DestinationMessage::Erase, DestinationMessage::ConsentChanged]);
    assert_eq!(crm.identifiers, [IdentifierKind::Email, IdentifierKind::UserId]);
    assert_eq!(crm.give_up_after.as_days(), 2);
    assert_eq!(catalog.destination("local").unwrap().give_up_after.as_days(), 3, "the default");

    let bad = format!(
        "{MINIMAL}\n[destinations.crm]\nurl = \"http://crm.example/hook\"\nsecret = \"short\"\n\
         receives = [\"erase\", \"gossip\"]\nidentifiers = [\"phone\"]\n"
    );
    let base = MINIMAL.lines().count() + 1;
    check(&bad, base + 2, "use https://");
    check(&bad, base + 3, "at least 16 characters");
    check(&bad, base + 4, "\"gossip\" is not something a destination can receive");
    check(&bad, base + 5, "\"phone\" identifies nobody here");
}

#[test]
fn roles_list_the_requests_they_may_make_and_what_else_they_may_do() {
    let good = format!(
        "{MINIMAL}\n[roles.requests]\npurposes = [\"essential\"]\ncategories = [\"user\"]\n\
         requests = [\"access\", \"erase\", \"erase\"]\nmay = [\"download_packages\", \"issue_links\"]\n\
         [roles.support]\npurposes = [\"essential.service\"]\ncategories = [\"user.contact\"]\n"
    );
    let catalog = Catalog::parse(&good).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let requests = catalog.role("requests").unwrap();
    assert_eq!(requests.requests, [RequestKind::Access, RequestKind::Erase], "each once");
    assert!(requests.may(Capability::DownloadPackages) && requests.may(Capability::IssueLinks));
    assert!(!requests.may(Capability::ReadAuditLog) && !requests.may_request(RequestKind::Export));
    let support = catalog.role("support").unwrap();
    assert!(support.requests.is_empty() && support.may.is_empty(), "nothing unless listed");

    // Each unknown name is reported at its own line and column, with the names it could be.
    let bad = format!(
        "{MINIMAL}\n[roles.requests]\npurposes = [\"essential\"]\nrequests = [\"access\", \"forget\"]\n\
         may = [\"issue_links\", \"read_everything\"]\n"
    );
    let base = MINIMAL.lines().count() + 1;
    let found = problems(&bad);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!((found[0].0, found[0].1), (base + 3, 23));
    assert_eq!(
        found[0].2,
        "\"forget\" is not a request type: one of access, export, rectify, restrict, unrestrict, \
         object, erase, suppress, unsuppress"
    );
    assert_eq!((found[1].0, found[1].1), (base + 4, 23));
    assert_eq!(
        found[1].2,
        "\"read_everything\" is not a capability: one of download_packages, issue_links, \
         verify_requests, read_audit_log, end_sessions"
    );
}

#[test]
fn jurisdictions_have_request_deadlines_and_extensions_by_regime() {
    let catalog = Catalog::parse(Catalog::example_text()).unwrap();
    let eu = catalog.jurisdiction("eu").unwrap();
    assert_eq!((eu.request_deadline_days, eu.request_extension_days), (30, 60));
    let california = catalog.jurisdiction("us-ca").unwrap();
    assert_eq!((california.request_deadline_days, california.request_extension_days), (45, 45));
}

#[test]
fn personalization_is_read_with_defaults_and_its_mistakes_are_pointed_at() {
    let example = Catalog::parse(Catalog::example_text()).expect("valid");
    let settings = example.personalization().expect("declared");
    assert_eq!(settings.purpose, "personalize.content");
    assert_eq!(settings.min_support, 5);
    assert!(settings.placement("product").is_some_and(|p| p.context));
    assert_eq!(
        settings.channel("email").map(|c| example.property(c.address).path.as_str()),
        Some("traits.email")
    );
    assert_eq!(settings.messages[0].stages, vec!["new"]);
    assert!(
        Catalog::parse(MINIMAL).expect("valid").personalization().is_none(),
        "no personalize purpose, none"
    );

    let with = |section: &str| format!("{MINIMAL}\n{section}");
    // MINIMAL ends on line 17; the section starts on line 19.
    check(&with("[personalization]\npurpose = \"essential.service\"\n"), 20, "personalize.* purpose");
    check(
        &with(
            "[purposes.\"personalize.content\"]\nname = \"R\"\ndescription = \"D\"\nbenefit = \"B\"\n[personalization]\ninterests = \"traits.likes\"\nmin_support = 0\n",
        ),
        24,
        "not a declared property",
    );
    check(
        &with(
            "[purposes.\"personalize.content\"]\nname = \"R\"\ndescription = \"D\"\nbenefit = \"B\"\n[personalization]\nmin_support = 0\n",
        ),
        24,
        "at least 1",
    );
    let rules = "[purposes.\"personalize.content\"]\nname = \"R\"\ndescription = \"D\"\nbenefit = \"B\"\n\
                 [personalization.channels.email]\npurpose = \"essential.service\"\naddress = \"traits.email\"\n\
                 [[personalization.messages]]\nkey = \"hi\"\nchannel = \"sms\"\nstages = [\"sleepy\"]\ntitle = \"Hi\"\nbody = \"B\"\n";
    let found = problems(&with(rules));
    assert!(found.iter().any(|(_, _, m)| m.contains("channel \"sms\" is not declared")), "{found:?}");
    assert!(found.iter().any(|(_, _, m)| m.contains("\"sleepy\" is not a lifecycle stage")), "{found:?}");
}

/// A category is compared in one spelling (items and interests are normalized alike): the catalog's
/// own spelling of it is normalized too, with a note saying so, and the catalog stays valid. Without
/// this, `"Pregnancy"` never matched the items stored as `pregnancy`, which were then recommended
/// from behaviour like any other.
#[test]
fn category_names_are_matched_in_one_spelling_and_the_check_says_so() {
    let section = "[purposes.\"personalize.content\"]\nname = \"R\"\ndescription = \"D\"\nbenefit = \"B\"\n\
                   [personalization]\nsensitive_categories = [\"Pregnancy\", \" sexual   health \", \"pregnancy\"]\n\
                   [personalization.placements.home]\ncategories = [\"Shoes\"]\n";
    let text = format!("{MINIMAL}\n{section}");
    let catalog = Catalog::parse(&text).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let settings = catalog.personalization().expect("declared");
    assert_eq!(settings.sensitive_categories, ["pregnancy", "sexual health"]);
    assert_eq!(settings.placement("home").unwrap().categories, ["shoes"]);

    let line_of = |needle: &str| text.lines().position(|line| line.contains(needle)).unwrap() + 1;
    let notes: Vec<(usize, usize, &str)> =
        catalog.notes().iter().map(|n| (n.line, n.column, n.message.as_str())).collect();
    assert_eq!(
        notes,
        [
            (
                line_of("sensitive_categories"),
                25,
                "sensitive category \"Pregnancy\" is matched as \"pregnancy\""
            ),
            (
                line_of("sensitive_categories"),
                38,
                "sensitive category \" sexual   health \" is matched as \"sexual health\""
            ),
            (line_of("categories = [\"Shoes\"]"), 15, "placement category \"Shoes\" is matched as \"shoes\""),
        ]
    );
    assert_eq!(catalog.notes()[0].position("shop.toml"), format!("shop.toml:{}:25", line_of("sensitive_")));
    assert!(Catalog::parse(MINIMAL).unwrap().notes().is_empty(), "nothing to say, nothing said");

    // An empty name could match no item: a mistake, pointed at.
    check(&text.replace("\"pregnancy\"]", "\"  \"]"), line_of("sensitive_categories"), "must not be empty");
}

#[test]
fn analytics_datasets_are_read_and_unsafe_ones_refused() {
    let example = Catalog::parse(Catalog::example_text()).expect("valid");
    let analytics = example.analytics().expect("declared");
    let shop = analytics.dataset("shop").expect("declared");
    assert_eq!((shop.k, shop.epsilon, shop.period.as_days(), shop.rows_per_person), (10, Some(10.0), 30, 5));
    let names: Vec<&str> = shop.dimensions.iter().map(|d| example.dimension_name(*d)).collect();
    assert_eq!(
        names,
        ["event", "source", "day", "week", "lifecycle", "properties.category", "context.timezone"]
    );
    assert_eq!(shop.measures.len(), 2);

    let base = format!(
        "{MINIMAL}\n[purposes.\"analytics.reporting\"]\nname = \"A\"\ndescription = \"D\"\nbenefit = \"B\"\n\
         [properties.\"properties.total\"]\ncategory = \"user.behavior.purchase_history\"\npurposes = [\"analytics.reporting\"]\nretention = \"1y\"\n"
    );
    let with = |section: &str| format!("{base}{section}");
    let found = problems(&with(
        "[analytics]\npurpose = \"essential.service\"\nk = 1\n[analytics.datasets.d]\ndimensions = [\"colour\", \"traits.email\"]\n\
         [analytics.datasets.d.measures]\n\"properties.total\" = [5, 1]\n",
    ));
    for expected in [
        "aggregates serve an analytics.* purpose",
        "k must be at least 2",
        "\"colour\" is not a dimension",
        "\"properties.total\" does not serve",
        "min < max",
    ] {
        assert!(found.iter().any(|(_, _, m)| m.contains(expected)), "{expected}: {found:?}");
    }
    let fine = Catalog::parse(&with(
        "[analytics]\npurpose = \"analytics.reporting\"\n[analytics.datasets.d]\ndimensions = [\"day\", \"properties.total\"]\n",
    ))
    .unwrap_or_else(|e| panic!("{}", e.render("test")));
    let d = fine.analytics().unwrap().dataset("d").unwrap();
    assert_eq!((d.k, d.epsilon), (10, None), "defaults: k 10, thresholds only");
}

#[test]
fn a_dataset_groups_by_lifecycle_only_where_the_catalog_states_the_thresholds() {
    let base = format!(
        "{MINIMAL}\n[purposes.\"analytics.reporting\"]\nname = \"A\"\ndescription = \"D\"\nbenefit = \"B\"\n\
         [purposes.\"personalize.content\"]\nname = \"R\"\ndescription = \"D\"\nbenefit = \"B\"\n"
    );
    // MINIMAL and the purposes end on line 26: the dimensions are on line 31 after a
    // `[personalization]` line, on line 30 without it; `"lifecycle"` starts at column 22.
    let analytics = "[analytics]\npurpose = \"analytics.reporting\"\n[analytics.datasets.d]\ndimensions = [\"day\", \"lifecycle\"]\n";
    let found = problems(&format!("{base}[personalization]\n{analytics}"));
    assert_eq!(found.len(), 1, "{found:?}");
    let (line, column, message) = &found[0];
    assert_eq!((*line, *column), (31, 22), "{message}");
    assert!(message.contains("declare [personalization.lifecycle]"), "{message}");
    check(&format!("{base}{analytics}"), 30, "[personalization.lifecycle]");

    let stated = format!(
        "{base}[personalization.lifecycle]\nnew_days = 7\nat_risk_days = 20\nlapsed_days = 60\n{analytics}"
    );
    let catalog = Catalog::parse(&stated).unwrap_or_else(|e| panic!("{}", e.render("test")));
    let d = catalog.analytics().unwrap().dataset("d").unwrap();
    assert_eq!(d.dimensions, [Dimension::Day, Dimension::Lifecycle]);
    assert_eq!(catalog.personalization().unwrap().lifecycle.at_risk_days, 20);
}

#[test]
fn exports_generalize_what_the_dataset_declares() {
    let example = Catalog::parse(Catalog::example_text()).expect("valid");
    let shop = example.analytics().unwrap().dataset("shop").unwrap();
    assert_eq!(shop.generalize.len(), 1);
    use serde_json::json;
    assert_eq!(Generalize::parse("round:10").unwrap().apply(&json!(47.5)), Some(json!(50.0)));
    assert_eq!(Generalize::parse("prefix:3").unwrap().apply(&json!("10115")), Some(json!("101")));
    assert_eq!(Generalize::Year.apply(&json!("1984-06-01")), Some(json!("1984")));
    assert_eq!(Generalize::Month.apply(&json!("1984-06-01")), Some(json!("1984-06")));
    assert_eq!(Generalize::Year.apply(&json!(1984)), None, "no such shape: left out");
    assert!(Generalize::parse("round:0").is_none() && Generalize::parse("blur").is_none());
}

#[test]
fn a_budget_below_the_floor_or_too_many_rows_per_person_is_pointed_at() {
    let base = format!(
        "{MINIMAL}\n[purposes.\"analytics.reporting\"]\nname = \"A\"\ndescription = \"D\"\nbenefit = \"B\"\n\
         [purposes.\"personalize.content\"]\nname = \"R\"\ndescription = \"D\"\nbenefit = \"B\"\n"
    );
    // MINIMAL and the purposes end on line 26; the value of the line after the section header is on
    // line 29 (analytics) or 28 (personalization), after `epsilon = ` (column 11).
    for (value, shown) in [("1e-12", "not 1e-12 "), ("1e-300", "not 1e-300 "), ("0.009", "not 0.009 ")] {
        let dataset = format!(
            "{base}[analytics]\npurpose = \"analytics.reporting\"\n[analytics.datasets.d]\nepsilon = {value}\ndimensions = [\"day\"]\n"
        );
        let found = problems(&dataset);
        assert_eq!(found.len(), 1, "{found:?}");
        let (line, column, message) = &found[0];
        assert_eq!((*line, *column), (30, 11), "{message}");
        assert!(message.contains("at least 0.01") && message.contains(shown), "{message}");

        let model = format!("{base}[personalization]\nepsilon = {value}\n");
        let found = problems(&model);
        assert_eq!(found.len(), 1, "{found:?}");
        let (line, column, message) = &found[0];
        assert_eq!((*line, *column), (28, 11), "{message}");
        assert!(message.contains("at least 0.01"), "{message}");
    }
    let rows = format!(
        "{base}[analytics]\npurpose = \"analytics.reporting\"\n[analytics.datasets.d]\nepsilon = 1\nrows_per_person = 1001\ndimensions = [\"day\"]\n"
    );
    let found = problems(&rows);
    assert_eq!(found.len(), 1, "{found:?}");
    let (line, column, message) = &found[0];
    assert_eq!((*line, *column, message.as_str()), (31, 19, "rows_per_person must be 1 to 1000, not 1001"));
    let fine = rows.replace("epsilon = 1\nrows_per_person = 1001", "epsilon = 0.01\nrows_per_person = 1000");
    Catalog::parse(&fine).unwrap_or_else(|e| panic!("{}", e.render("test")));
}

#[test]
fn a_gaussian_release_is_chosen_with_a_delta_in_range() {
    let base = format!(
        "{MINIMAL}\n[purposes.\"personalize.content\"]\nname = \"R\"\ndescription = \"D\"\nbenefit = \"B\"\n[personalization]\nepsilon = 1\n"
    );
    let delta_of = |extra: &str| {
        let catalog =
            Catalog::parse(&format!("{base}{extra}")).unwrap_or_else(|e| panic!("{}", e.render("test")));
        catalog.personalization().unwrap().gaussian_delta
    };
    assert_eq!(delta_of(""), None, "the noisy threshold unless the catalog says otherwise");
    assert_eq!(delta_of("mechanism = \"threshold\"\n"), None);
    assert_eq!(delta_of("mechanism = \"gaussian\"\n"), Some(1e-7), "δ defaults to 1e-7");
    assert_eq!(delta_of("mechanism = \"gaussian\"\ndelta = 1e-9\n"), Some(1e-9));
    // The section starts on line 23, so `mechanism` is on line 25 and `delta` on line 26.
    let found = problems(&format!("{base}mechanism = \"gaussian\"\ndelta = 0.001\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (26, 9), "{found:?}");
    assert!(found[0].2.contains("delta must be 1e-12 to 1e-5, not 0.001"), "{found:?}");
    check(&format!("{base}mechanism = \"laplace\"\n"), 25, "\"gaussian\" or \"threshold\"");
    check(&format!("{base}delta = 1e-8\n"), 25, "delta is the δ of mechanism = \"gaussian\"");
    let without_epsilon = format!("{base}mechanism = \"gaussian\"\n").replace("epsilon = 1\n", "");
    check(&without_epsilon, 24, "it needs epsilon");
}

#[test]
fn the_iab_section_names_known_numbers_and_declared_purposes() {
    let good = format!(
        "{MINIMAL}\n[iab]\nvendor_id = 755\n[iab.tcf_purposes]\n1 = [\"essential.service\"]\n\
         [iab.gpp_opt_outs]\nsale = [\"essential.service\"]\n"
    );
    let catalog = Catalog::parse(&good).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    assert_eq!(catalog.iab().vendor_id, Some(755));
    assert_eq!(catalog.iab().tcf_purposes, vec![(1, vec!["essential.service".to_owned()])]);
    // The lines of `MINIMAL` and the blank line after it.
    let lines = MINIMAL.lines().count();
    let bad = format!(
        "{MINIMAL}\n[iab]\nvendor_id = 0\n[iab.tcf_purposes]\n12 = [\"essential.service\"]\n\
         [iab.special_features]\n1 = [\"marketing.nothing\"]\n[iab.gpp_opt_outs]\nsell = [\"essential.service\"]\n"
    );
    let found = problems(&bad);
    let expected = [
        (lines + 3, 13, "vendor_id must be a Global Vendor List id (1–65535)"),
        (lines + 5, 1, "\"12\" is not a TCF purpose (1–11)"),
        (lines + 7, 6, "purpose \"marketing.nothing\" is not declared under [purposes]"),
        (lines + 9, 1, "\"sell\" is not a GPP opt-out (sale, sharing, targeted_advertising, sensitive_data)"),
    ];
    for (line, column, message) in expected {
        assert!(
            found.iter().any(|found| *found == (line, column, message.to_owned())),
            "expected {message:?} at {line}:{column}, got {found:#?}"
        );
    }
}

#[test]
fn destinations_that_receive_events_get_only_properties_serving_their_purposes() {
    let extra = r#"
[purposes."marketing.advertising"]
name = "Ads"
description = "We show you ads."
benefit = "Ads you may like."

[properties."properties.total"]
category = "user.financial"
purposes = ["essential.service"]
retention = "1y"

[properties."traits.health"]
category = "user.health_and_medical"
purposes = ["marketing.advertising"]
retention = "1y"
sensitive = true

[events."Order Completed"]
"#;
    let good = format!(
        "{MINIMAL}{extra}\n[destinations.mail]\nurl = \"https://mail.example/in\"\nsecret = \"whsec_0123456789abcdef\"\n\
         purposes = [\"essential.service\"]\nevents = [\"Order Completed\", \"identify\"]\n\
         properties = [\"properties.total\", \"traits.email\"]\nidentifiers = [\"email\"]\nbatch_size = 50\n\
         [destinations.ads]\nkind = \"segment\"\nurl = \"https://api.segment.example\"\nwrite_key = \"wk_downstream\"\n\
         purposes = [\"marketing.advertising\"]\nevents = [\"track\"]\nproperties = [\"traits.health\"]\n\
         sensitive = [\"user.health_and_medical\"]\n\
         [destinations.crm]\nurl = \"https://crm.example/hooks\"\nsecret = \"whsec_0123456789abcdef\"\nreceives = [\"erase\"]\n"
    );
    let catalog = Catalog::parse(&good).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let mail = catalog.destination("mail").unwrap();
    assert_eq!(mail.kind, DestinationKind::Webhook);
    let forwarding = mail.forwarding.as_ref().expect("it forwards");
    assert_eq!(forwarding.batch_size, 50);
    assert!(forwarding.receives_event("track", Some("Order Completed")));
    assert!(forwarding.receives_event("identify", None));
    assert!(!forwarding.receives_event("track", Some("Product Viewed")));
    assert!(!forwarding.receives_event("page", None));
    let ads = catalog.destination("ads").unwrap();
    assert!(
        matches!(&ads.kind, DestinationKind::Segment { write_key, regulations: None } if write_key.expose() == "wk_downstream")
    );
    assert!(ads.forwarding.as_ref().unwrap().receives_event("track", Some("anything")));
    assert!(!catalog.destination("crm").unwrap().forwards(), "a notice-only destination stays one");

    let bad = format!(
        "{MINIMAL}{extra}\n[destinations.mail]\nurl = \"https://mail.example/in\"\nsecret = \"whsec_0123456789abcdef\"\n\
         purposes = [\"marketing.advertising\", \"marketing.unknown\"]\nevents = [\"Order Completed\", \"Cart Viewed\"]\n\
         properties = [\"properties.total\", \"traits.health\", \"traits.nope\", \"traits.email\"]\nbatch_size = 0\n\
         [destinations.dw]\nkind = \"warehouse\"\npurposes = [\"essential.service\"]\nevents = [\"track\"]\n"
    );
    let base = MINIMAL.lines().count() + extra.lines().count() + 1;
    check(&bad, base + 4, "\"marketing.unknown\" is not a purpose of this catalog");
    check(&bad, base + 5, "\"Cart Viewed\" is neither a declared event");
    check(&bad, base + 6, "properties.total serves none of this destination's purposes");
    check(&bad, base + 6, "traits.health is sensitive");
    check(&bad, base + 6, "\"traits.nope\" is not a property of this catalog");
    check(
        &bad,
        base + 6,
        "traits.email identifies people (email): add \"email\" to this destination's identifiers",
    );
    check(&bad, base + 7, "batch_size must be between 1 and");
    check(&bad, base + 8, "needs database_url");
}

#[test]
fn a_segment_destination_may_name_its_pipelines_deletion_api() {
    let extra = "\n[events.\"Order Completed\"]\n";
    let segment = "[destinations.ads]\nkind = \"segment\"\nurl = \"https://api.segment.example\"\n\
                   write_key = \"wk_downstream\"\npurposes = [\"essential.service\"]\nevents = [\"track\"]\n";
    let good = format!(
        "{MINIMAL}{extra}{segment}regulations_api = \"rudderstack\"\n\
         regulations_url = \"https://api.rudderstack.example/\"\nregulations_token = \"rs_token\"\n"
    );
    let catalog = Catalog::parse(&good).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let DestinationKind::Segment { regulations: Some(regulations), .. } =
        &catalog.destination("ads").unwrap().kind
    else {
        panic!("the deletion API is carried")
    };
    assert_eq!(regulations.api, crate::catalog::RegulationApi::RudderStack);
    assert_eq!(regulations.url, "https://api.rudderstack.example");
    assert_eq!(regulations.token.expose(), "rs_token");

    let base = MINIMAL.lines().count() + extra.lines().count() + segment.lines().count() + 1;
    let partial = format!("{MINIMAL}{extra}{segment}regulations_url = \"https://api.segmentapis.example\"\n");
    check(&partial, base, "give all three or none");
    let unknown = format!(
        "{MINIMAL}{extra}{segment}regulations_api = \"mparticle\"\n\
         regulations_url = \"http://api.segmentapis.example\"\nregulations_token = \"t\"\n"
    );
    check(&unknown, base, "\"mparticle\" is not a deletion API");
    check(&unknown, base + 1, "use https://");
    let misplaced = format!(
        "{MINIMAL}{extra}[destinations.crm]\nurl = \"https://crm.example/hooks\"\n\
         secret = \"whsec_0123456789abcdef\"\nreceives = [\"erase\"]\nregulations_api = \"segment\"\n"
    );
    check(&misplaced, base - segment.lines().count() + 4, "regulations_api belongs to a segment destination");
}
