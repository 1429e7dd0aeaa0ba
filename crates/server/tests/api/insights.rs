//! Aggregates as an analyst asks for them and as the people counted are protected by them: small
//! groups suppressed, only consenting people counted, a privacy budget that refuses overspending
//! (also after a restart), and every query in the audit log.

use axum::http::StatusCode;
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tactful_store::StoreTesting;

use crate::common::Harness;

const CATALOG: &str = r#"
[brand]
name = "Fernhill Market"

[sources.web]
kind = "server"
write_key = "wk_web_fernhill"
default_jurisdiction = "eu"

[jurisdictions.eu]
name = "European Union (GDPR)"
regime = "opt_in"
countries = ["DE"]

[purposes."essential.service"]
name = "Running your account"
description = "We use your account details to run the shop."
benefit = "Your orders arrive."

[purposes."personalize.content"]
name = "Recommendations"
description = "We suggest products from what you looked at."
benefit = "Products you like."

[purposes."analytics.reporting"]
name = "Improving the shop"
description = "We count visits and orders in aggregate. Nobody can be singled out."
benefit = "A better shop."

[properties."properties.category"]
category = "user.behavior.browsing_history"
purposes = ["analytics.reporting"]
retention = "1y"

[properties."properties.revenue"]
category = "user.behavior.purchase_history"
purposes = ["analytics.reporting"]
retention = "1y"

[events."Product Viewed"]
[events."Order Completed"]

[consent_categories]
Analytics = ["analytics.reporting"]

[analytics]
purpose = "analytics.reporting"
k = 3

[analytics.datasets.exact]
dimensions = ["event", "day", "properties.category"]
[analytics.datasets.exact.measures]
"properties.revenue" = [0, 100]

[analytics.datasets.private]
epsilon = 2.0
period = "30d"
rows_per_person = 5
dimensions = ["event", "properties.category"]

[analytics.datasets.stages]
dimensions = ["lifecycle"]

[personalization.lifecycle]
new_days = 14
at_risk_days = 30
lapsed_days = 90

[roles.analyst]
purposes = ["analytics.reporting"]
categories = ["user.behavior"]

[roles.privacy]
purposes = ["essential"]
categories = ["user.privacy_preferences"]
requests = ["restrict"]
"#;

pub(crate) fn catalog() -> Catalog {
    Catalog::parse(CATALOG).unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

impl Harness {
    pub(crate) async fn shop(&self, user: &str, category: &str, revenue: f64, analytics: bool) {
        let events = vec![
            json!({"type": "track", "event": "Product Viewed", "userId": user, "messageId": format!("{user}-v-{category}"),
                   "properties": {"category": category},
                   "context": {"consent": {"categoryPreferences": {"Analytics": analytics}}}}),
            json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": format!("{user}-o-{category}"),
                   "properties": {"category": category, "revenue": revenue},
                   "context": {"consent": {"categoryPreferences": {"Analytics": analytics}}}}),
        ];
        self.batch("wk_web_fernhill", events).await;
    }

    /// The text of every `insights` entry of the audit log, in order.
    pub(crate) async fn insights_entries(&self) -> Vec<String> {
        let entries = self.state.store.audit_entries(0, 10_000).await.unwrap();
        entries.into_iter().map(|e| e.text).filter(|t| t.contains("\"insights\"")).collect()
    }

    /// Sends one `Product Viewed` of `user`, `days_ago` days ago, with their consent to analytics.
    async fn viewed(&self, user: &str, days_ago: i64) {
        let at = tactful_app::now_millis() - days_ago * 86_400_000 - 60_000;
        let event = json!({"type": "track", "event": "Product Viewed", "userId": user,
                           "messageId": format!("{user}-{days_ago}"), "timestamp": tactful_domain::segment::format_time(at),
                           "properties": {"category": "shoes"},
                           "context": {"consent": {"categoryPreferences": {"Analytics": true}}}});
        self.batch("wk_web_fernhill", vec![event]).await;
    }

    pub(crate) async fn query(&self, key: &str, query: Value) -> (StatusCode, Value) {
        self.post_json("/v1/insights/query", key, &query.to_string()).await
    }
}

pub(crate) fn window() -> (String, String) {
    let now = tactful_app::now_millis();
    (tactful_domain::segment::format_time(now - 86_400_000), tactful_domain::segment::format_time(now))
}

fn group<'a>(answer: &'a Value, category: &str) -> Option<&'a Value> {
    answer["groups"].as_array().unwrap().iter().find(|g| g["group"]["properties.category"] == category)
}

#[tokio::test]
async fn small_groups_are_suppressed_and_only_consenting_people_count() {
    small_groups(Harness::open(catalog(), 64, None).await).await;
}

#[tokio::test]
async fn small_groups_are_suppressed_and_only_consenting_people_count_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    small_groups(Harness::open(catalog(), 64, Some(url)).await).await;
}

async fn small_groups(h: Harness) {
    let analyst = h.key("analyst").await;
    for (user, category) in
        [("a", "shoes"), ("b", "shoes"), ("c", "shoes"), ("d", "shoes"), ("e", "hats"), ("f", "hats")]
    {
        h.shop(user, category, 40.0, true).await;
    }
    h.shop("g", "shoes", 90.0, false).await;
    let (from, to) = window();
    let ask = json!({"dataset": "exact", "metric": "people", "group_by": ["properties.category"], "from": from, "to": to});
    let (status, answer) = h.query(&analyst, ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(group(&answer, "shoes").unwrap()["value"], 4.0, "g declined analytics: {answer}");
    assert_eq!(group(&answer, "hats").unwrap()["suppressed"], true, "two people, k = 3: {answer}");
    assert!(group(&answer, "hats").unwrap().get("value").is_none());
    assert_eq!(answer["privacy"]["suppressed_groups"], 1);

    let (_, sum) = h
        .query(&analyst, json!({"dataset": "exact", "metric": "sum", "property": "properties.revenue", "group_by": ["properties.category"], "from": from, "to": to}))
        .await;
    assert_eq!(group(&sum, "shoes").unwrap()["value"], 160.0, "{sum}");

    // A withdrawal: the same query no longer counts them.
    let privacy = h.key("privacy").await;
    let withdraw =
        json!({"changes": [{"purpose": "analytics.reporting", "status": "withdrawn", "method": "explicit"}]});
    let (status, body) =
        h.post_json("/v1/subjects/user_id:a/consents", &privacy, &withdraw.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, answer) = h.query(&analyst, ask.clone()).await;
    assert_eq!(group(&answer, "shoes").unwrap()["value"], 3.0, "{answer}");

    // Restricted people are not counted either.
    let (status, body) = h
        .post_json("/v1/requests", &privacy, &json!({"type": "restrict", "subject": "user_id:b"}).to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    tactful_app::requests::run_due(&h.state, tactful_app::now_millis()).await.unwrap();
    let (_, answer) = h.query(&analyst, ask).await;
    assert_eq!(group(&answer, "shoes").unwrap()["suppressed"], true, "{answer}");

    // Every query is in the audit log with what was asked.
    let entries = h.insights_entries().await;
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(
        entries[0].contains("properties.category") && entries[0].contains("analytics.reporting"),
        "{}",
        entries[0]
    );
}

#[tokio::test]
async fn the_budget_refuses_the_query_that_would_overspend_and_survives_a_restart() {
    budget(None).await;
}

#[tokio::test]
async fn the_budget_is_shared_by_instances_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    budget(Some(url)).await;
}

async fn budget(database: Option<String>) {
    let h = Harness::open(catalog(), 64, database.clone()).await;
    let analyst = h.key("analyst").await;
    for user in 0..30 {
        h.shop(&format!("u{user}"), "shoes", 10.0, true).await;
    }
    let (from, to) = window();
    let ask = |epsilon: f64| json!({"dataset": "private", "metric": "events", "group_by": ["event"], "from": from, "to": to, "epsilon": epsilon});
    let (status, answer) = h.query(&analyst, ask(1.5)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!((answer["privacy"]["epsilon"].as_f64().unwrap() - 1.5).abs() < 1e-9, "{answer}");
    assert!(answer["privacy"]["noise_scale"].as_f64().unwrap() > 0.0);
    assert!((answer["privacy"]["budget"]["remaining"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{answer}");
    let (status, refused) = h.query(&analyst, ask(1.0)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert_eq!(refused["error"]["code"], "budget_exhausted");
    assert!(refused["error"]["message"].as_str().unwrap().contains("0.5 left"), "{refused}");
    // Refused, and on record: who asked what, ε 0 spent, and why it was refused.
    let entries = h.insights_entries().await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(!entries[0].contains("outcome"), "the answered query: {}", entries[0]);
    let refusal: Value = serde_json::from_str(&entries[1]).unwrap();
    assert_eq!(refusal["epsilon"], "0", "{refusal}");
    assert_eq!(refusal["dataset"], "private");
    assert_eq!(refusal["dimensions"], json!(["event"]));
    let outcome = refusal["outcome"].as_str().unwrap();
    assert!(outcome.starts_with("refused: budget_exhausted") && outcome.contains("ε = 1"), "{outcome}");
    assert!(
        !entries[1].contains("u0") && !entries[1].contains("shoes"),
        "nothing about anyone: {}",
        entries[1]
    );

    // Another instance on the same store (or this one restarted) sees the same budget.
    let key_file = h.dir.path().join("master.key");
    let database =
        database.unwrap_or_else(|| format!("sqlite:{}", h.dir.path().join("tactful.db").display()));
    let again =
        Harness::configured(catalog(), 64, Some(database), |config| config.master_key_file = key_file).await;
    let (status, refused) = again.query(&analyst, ask(1.0)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    let (status, answer) = again.query(&analyst, ask(0.5)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["privacy"]["budget"]["remaining"].as_f64().unwrap().abs() < 1e-9);
}

#[tokio::test]
async fn people_are_grouped_by_their_lifecycle_stage_from_all_their_events() {
    stages(Harness::open(catalog(), 64, None).await).await;
}

#[tokio::test]
async fn people_are_grouped_by_their_lifecycle_stage_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    stages(Harness::open(catalog(), 64, Some(url)).await).await;
}

async fn stages(h: Harness) {
    let analyst = h.key("analyst").await;
    // Thresholds: new for 14 days after the first event, at risk after 30 idle days, lapsed after 90.
    for index in 0..3 {
        // First seen 60 days ago, back yesterday: active, though the recent window only sees
        // yesterday (a stage comes from all of a person's events, not just the window's).
        h.viewed(&format!("active-{index}"), 60).await;
        h.viewed(&format!("active-{index}"), 1).await;
        h.viewed(&format!("new-{index}"), 2).await;
        h.viewed(&format!("at-risk-{index}"), 40).await;
        h.viewed(&format!("lapsed-{index}"), 95).await;
    }
    h.viewed("lonely-new", 3).await;
    let now = tactful_app::now_millis();
    let ask = |days: i64| {
        json!({"dataset": "stages", "metric": "people", "group_by": ["lifecycle"],
               "from": tactful_domain::segment::format_time(now - days * 86_400_000),
               "to": tactful_domain::segment::format_time(now)})
    };
    let stage = |answer: &Value, name: &str| {
        answer["groups"].as_array().unwrap().iter().find(|g| g["group"]["lifecycle"] == name).cloned()
    };
    let (status, recent) = h.query(&analyst, ask(10)).await;
    assert_eq!(status, StatusCode::OK, "{recent}");
    assert_eq!(stage(&recent, "active").unwrap()["value"], 3.0, "{recent}");
    assert_eq!(stage(&recent, "new").unwrap()["value"], 4.0, "{recent}");
    assert!(stage(&recent, "at_risk").is_none() && stage(&recent, "lapsed").is_none(), "not in the window");
    let (_, all) = h.query(&analyst, ask(100)).await;
    let values: Vec<(String, f64)> = all["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"]["lifecycle"].as_str().unwrap().to_owned(), g["value"].as_f64().unwrap()))
        .collect();
    let expected = [("active", 3.0), ("at_risk", 3.0), ("lapsed", 3.0), ("new", 4.0)];
    assert_eq!(values, expected.map(|(s, v)| (s.to_owned(), v)), "{all}");
}

#[tokio::test]
async fn bad_queries_get_clear_errors_and_spend_nothing() {
    let h = Harness::open(catalog(), 64, None).await;
    let analyst = h.key("analyst").await;
    let (from, to) = window();
    let future = tactful_domain::segment::format_time(tactful_app::now_millis() + 86_400_000);
    let cases = [
        (
            json!({"dataset": "nope", "metric": "events", "from": from, "to": to}),
            StatusCode::NOT_FOUND,
            "unknown_dataset",
        ),
        (
            json!({"dataset": "exact", "metric": "events", "group_by": ["properties.colour"], "from": from, "to": to}),
            StatusCode::BAD_REQUEST,
            "undeclared_dimension",
        ),
        (
            json!({"dataset": "private", "metric": "events", "group_by": ["day"], "from": from, "to": to, "epsilon": 1}),
            StatusCode::BAD_REQUEST,
            "undeclared_dimension",
        ),
        (
            json!({"dataset": "exact", "metric": "sum", "property": "properties.category", "from": from, "to": to}),
            StatusCode::BAD_REQUEST,
            "undeclared_property",
        ),
        (
            json!({"dataset": "exact", "metric": "sum", "from": from, "to": to}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "exact", "metric": "median", "from": from, "to": to}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "exact", "metric": "events", "from": from, "to": future}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "exact", "metric": "events", "from": to, "to": from}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "exact", "metric": "events", "from": "yesterday", "to": to}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "private", "metric": "events", "from": from, "to": to, "epsilon": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "private", "metric": "events", "from": from, "to": to, "epsilon": -1}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "private", "metric": "events", "from": from, "to": to}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "private", "metric": "events", "from": from, "to": to, "epsilon": 3}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "exact", "metric": "events", "from": from, "to": to, "epsilon": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"dataset": "exact", "metric": "events", "from": from, "to": to, "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (query, status, code) in cases {
        let (got, body) = h.query(&analyst, query.clone()).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{query}: {body}");
    }
    let privacy = h.key("privacy").await;
    let (status, _) =
        h.query(&privacy, json!({"dataset": "exact", "metric": "events", "from": from, "to": to})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let budget = h.state.store.budget("private", 0, 2_000_000).await.unwrap();
    assert_eq!(budget.spent_micro, 0, "nothing was spent");
}
