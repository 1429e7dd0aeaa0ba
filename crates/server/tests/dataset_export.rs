//! Pseudonymized exports as the people in them are protected by them: tokens that do not join across
//! purposes, people who declined left out, nothing identifying or sensitive in the bytes, quasi-
//! identifiers coarsened, and every export in the audit log. Events arrive through `POST /v1/batch`
//! as in production; exports are written in-process.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tactful_app::exports::dataset::{
    ExportError, ExportFormat, ExportRequest, ExportSummary, Refusal, export,
};
use tactful_app::{App, Config, now_millis};
use tactful_domain::catalog::Catalog;
use tactful_server::AppState;
use tower::ServiceExt;

const CATALOG: &str = r#"
[brand]
name = "Fernhill Market"

[sources.web]
kind = "server"
write_key = "wk_web_fernhill"
default_jurisdiction = "eu"
allow_sensitive = true

[jurisdictions.eu]
name = "European Union (GDPR)"
regime = "opt_in"
countries = ["DE"]

[purposes."essential.service"]
name = "Running your account"
description = "We use your account details to run the shop."
benefit = "Your orders arrive."

[purposes."analytics.reporting"]
name = "Improving the shop"
description = "We count visits and orders. Nobody can be singled out."
benefit = "A better shop."

[purposes."personalize.content"]
name = "Recommendations"
description = "We suggest products from what you looked at."
benefit = "Products that match your taste."

[properties."traits.email"]
category = "user.contact.email"
purposes = ["essential.service", "analytics.reporting", "personalize.content"]
retention = "3y"
identifier = "email"

[properties."traits.name"]
category = "user.name"
purposes = ["essential.service", "analytics.reporting"]
retention = "3y"

[properties."properties.category"]
category = "user.behavior.browsing_history"
purposes = ["analytics.reporting", "personalize.content"]
retention = "1y"

[properties."properties.price"]
category = "user.behavior.purchase_history"
purposes = ["analytics.reporting"]
retention = "1y"

[properties."properties.symptom"]
category = "user.health"
sensitive = true
purposes = ["analytics.reporting", "personalize.content"]
retention = "30d"

[events."Product Viewed"]
[events."Order Completed"]

[consent_categories]
Analytics = ["analytics.reporting"]
Personalization = ["personalize.content"]

[analytics]
purpose = "analytics.reporting"
k = 2

[analytics.datasets.shop]
dimensions = ["event", "day", "properties.category"]
[analytics.datasets.shop.measures]
"properties.price" = [0, 500]
[analytics.datasets.shop.generalize]
"properties.price" = "round:10"
"#;

struct Shop {
    state: AppState,
    _dir: tempfile::TempDir,
}

impl Shop {
    async fn open() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            database: format!("sqlite:{}", dir.path().join("tactful.db").display()),
            master_key_file: dir.path().join("master.key"),
            notifier: format!("file:{}", dir.path().join("notifications").display()),
            ..Config::default()
        };
        let catalog = Catalog::parse(CATALOG).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
        let state = AppState::new(Arc::new(App::open(&config, catalog).await.unwrap()), &config);
        Shop { state, _dir: dir }
    }

    /// A person's visit: who they are, a view and an order, with their banner choices on each event.
    async fn visit(&self, user: &str, analytics: bool, personalization: bool) {
        let consent = json!({"consent": {"categoryPreferences": {
            "Analytics": analytics, "Personalization": personalization
        }}});
        let events = vec![
            json!({"type": "identify", "userId": user, "messageId": format!("{user}-i"),
                   "traits": {"email": format!("{user}@example.com"), "name": format!("Name of {user}")},
                   "context": consent}),
            json!({"type": "track", "event": "Product Viewed", "userId": user, "messageId": format!("{user}-v"),
                   "properties": {"category": "shoes, \"trail\"", "symptom": "migraine"},
                   "context": consent}),
            json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": format!("{user}-o"),
                   "properties": {"category": "shoes, \"trail\"", "price": 47.5},
                   "context": consent}),
        ];
        let request = Request::post("/v1/batch")
            .header(header::AUTHORIZATION, basic("wk_web_fernhill"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "batch": events }).to_string()))
            .unwrap();
        let response = tactful_server::router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }

    async fn export(
        &self,
        purpose: &str,
        dataset: Option<&str>,
        format: ExportFormat,
    ) -> Result<(ExportSummary, Vec<u8>), ExportError> {
        let now = now_millis();
        let request = ExportRequest {
            purpose: purpose.into(),
            dataset: dataset.map(Into::into),
            from: now - 86_400_000,
            // Just past now, so an event stored in this very millisecond is in the window.
            to: now + 1,
            format,
            actor: "test".into(),
            role: "operator".into(),
        };
        export(&self.state, request, Vec::new()).await
    }

    async fn csv(&self, purpose: &str, dataset: Option<&str>) -> (ExportSummary, String) {
        let (summary, bytes) = self.export(purpose, dataset, ExportFormat::Csv).await.unwrap();
        (summary, String::from_utf8(bytes).unwrap())
    }

    async fn subject(&self, user: &str) -> String {
        let blind = self.state.vault.blind("user_id", user);
        self.state.store.subject_by_identifier(blind).await.unwrap().expect("the user is known")
    }
}

fn basic(key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

/// The CSV as rows of fields (RFC 4180, enough for these tests: quoted fields may hold commas and
/// doubled quotes, not line breaks).
fn parse(csv: &str) -> Vec<Vec<String>> {
    csv.lines()
        .map(|line| {
            let (mut fields, mut field, mut quoted, mut chars) =
                (Vec::new(), String::new(), false, line.chars().peekable());
            while let Some(c) = chars.next() {
                match (c, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => fields.push(std::mem::take(&mut field)),
                    (c, _) => field.push(c),
                }
            }
            fields.push(field);
            fields
        })
        .collect()
}

fn tokens(csv: &str) -> BTreeSet<String> {
    parse(csv).into_iter().skip(1).map(|row| row[0].clone()).collect()
}

#[tokio::test]
async fn exports_for_different_purposes_cannot_be_joined_and_leave_out_who_declined() {
    let shop = Shop::open().await;
    shop.visit("user-ada-7", true, true).await;
    shop.visit("user-bo-8", true, true).await;
    shop.visit("user-cy-9", false, true).await; // declined analytics
    shop.visit("user-di-10", true, false).await; // declined personalization

    let (summary, analytics) = shop.csv("analytics.reporting", None).await;
    let (_, again) = shop.csv("analytics.reporting", None).await;
    let (personal_summary, personal) = shop.csv("personalize.content", None).await;

    let header = parse(&analytics)[0].clone();
    assert_eq!(header, ["token", "event", "source", "day", "properties.category", "properties.price"]);
    assert_eq!(summary.columns, header);
    assert_eq!((summary.rows, summary.people, summary.rows_left_out), (9, 3, 3), "{summary:?}");
    let left_out: Vec<&str> = summary.properties_left_out.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(left_out, ["traits.email", "traits.name", "properties.symptom"]);

    // The same purpose gives the same tokens; another purpose shares none of them.
    assert_eq!(tokens(&analytics).len(), 3);
    assert_eq!(tokens(&analytics), tokens(&again));
    assert_eq!(tokens(&personal).len(), 3);
    assert!(tokens(&analytics).is_disjoint(&tokens(&personal)), "{analytics}\n{personal}");
    assert_eq!(parse(&personal)[0], ["token", "event", "source", "day", "properties.category"]);
    assert_eq!(personal_summary.people, 3);

    // Who declined a purpose is not in its export, under any token.
    let token = |purpose: &str, user: String| shop.state.vault.export_token(purpose, &user);
    assert!(!tokens(&analytics).contains(&token("analytics.reporting", shop.subject("user-cy-9").await)));
    assert!(tokens(&analytics).contains(&token("analytics.reporting", shop.subject("user-di-10").await)));
    assert!(!tokens(&personal).contains(&token("personalize.content", shop.subject("user-di-10").await)));

    // Rows keep what the purpose may use, to the day; a field with a comma and quotes survives.
    let rows = parse(&analytics);
    let order = rows.iter().find(|row| row[1] == "Order Completed").unwrap();
    assert_eq!(order[2], "web");
    assert_eq!(order[3], tactful_domain::segment::format_time(now_millis())[..10]);
    assert_eq!(order[4], "shoes, \"trail\"");
    assert_eq!(order[5], "47.5", "no dataset: nothing coarsened");
    assert!(rows.iter().any(|row| row[1] == "identify" && row[4].is_empty()));
    assert!(analytics.contains("\"shoes, \"\"trail\"\"\""), "{analytics}");

    // Nothing that names a person or is sensitive is anywhere in the bytes.
    for export in [&analytics, &personal] {
        for user in ["user-ada-7", "user-bo-8", "user-cy-9", "user-di-10"] {
            assert!(!export.contains(user), "raw user id {user} in\n{export}");
            assert!(!export.contains(&shop.subject(user).await), "subject id of {user} in\n{export}");
            assert!(!export.contains(&shop.state.vault.subject_pseudonym(&shop.subject(user).await)));
        }
        for secret in ["@example.com", "Name of", "migraine", "symptom", "email"] {
            assert!(!export.contains(secret), "{secret} in\n{export}");
        }
    }
    // The sensitive value was stored (so it is the export that keeps it out).
    let data = shop.state.store.subject_data(&shop.subject("user-ada-7").await).await.unwrap().unwrap();
    let stored = data.open_events(&shop.state.vault).unwrap();
    assert!(stored.iter().any(|event| event.record.to_string().contains("migraine")));
}

#[tokio::test]
async fn a_dataset_export_coarsens_as_declared_and_is_audited_before_any_row() {
    let shop = Shop::open().await;
    shop.visit("user-ada-7", true, true).await;
    shop.visit("user-cy-9", false, true).await;

    let (summary, csv) = shop.csv("analytics.reporting", Some("shop")).await;
    let rows = parse(&csv);
    assert_eq!(rows[0], ["token", "event", "source", "day", "properties.category", "properties.price"]);
    let order = rows.iter().find(|row| row[1] == "Order Completed").unwrap();
    assert_eq!(order[5], "50", "round:10 of 47.5");
    assert!(!csv.contains("47.5"), "{csv}");
    assert_eq!((summary.rows, summary.people, summary.rows_left_out), (3, 1, 3));

    // Each export is one audit entry: purpose, dataset, the columns, no ε spent.
    let entries: Vec<Value> = shop
        .state
        .store
        .audit_entries(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| serde_json::from_str(&entry.text).unwrap())
        .filter(|entry: &Value| entry["kind"] == "insights" && entry["metric"] == "export")
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["purpose"], "analytics.reporting");
    assert_eq!(entries[0]["dataset"], "shop");
    assert_eq!(entries[0]["epsilon"], "0");
    assert_eq!(entries[0]["actor"], "test");
    assert_eq!(entries[0]["dimensions"], json!(rows[0]));

    // Parquet holds the same rows, empty cells as nulls.
    let (parquet_summary, bytes) =
        shop.export("analytics.reporting", Some("shop"), ExportFormat::Parquet).await.unwrap();
    assert_eq!(parquet_summary.rows, 3);
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    let metadata = reader.metadata().file_metadata();
    let names: Vec<&str> = metadata.schema_descr().columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, rows[0]);
    let about = metadata.key_value_metadata().unwrap();
    assert!(
        about
            .iter()
            .any(|kv| kv.key == "tactful.purpose" && kv.value.as_deref() == Some("analytics.reporting"))
    );
    let read: Vec<String> = reader.get_row_iter(None).unwrap().map(|row| row.unwrap().to_string()).collect();
    assert_eq!(read.len(), 3);
    assert!(read.iter().any(|row| row.contains("properties.price: \"50\"")), "{read:?}");
    assert!(read.iter().any(|row| row.contains("properties.price: null")), "{read:?}");
}

#[tokio::test]
async fn bad_exports_are_refused_before_anything_is_read_or_audited() {
    let shop = Shop::open().await;
    shop.visit("user-ada-7", true, true).await;
    let audited = || async { shop.state.store.audit_entries(0, 10_000).await.unwrap().len() };
    let before = audited().await;
    let refused = |result: Result<(ExportSummary, Vec<u8>), ExportError>| match result {
        Err(ExportError::Refused(refusal)) => refusal,
        other => panic!("not refused: {other:?}"),
    };
    let refusal = refused(shop.export("analytics.reprting", None, ExportFormat::Csv).await);
    assert!(matches!(refusal, Refusal::UnknownPurpose { .. }));
    assert!(refusal.to_string().contains("declared: essential.service, analytics.reporting"), "{refusal}");
    let refusal = refused(shop.export("analytics.reporting", Some("shops"), ExportFormat::Csv).await);
    assert!(refusal.to_string().contains("no dataset \"shops\"; declared: shop"), "{refusal}");
    let refusal = refused(shop.export("personalize.content", Some("shop"), ExportFormat::Csv).await);
    assert!(matches!(refusal, Refusal::DatasetPurpose { .. }), "{refusal}");

    let now = now_millis();
    let mut request = ExportRequest {
        purpose: "analytics.reporting".into(),
        dataset: None,
        from: now,
        to: now,
        format: ExportFormat::Csv,
        actor: "test".into(),
        role: "operator".into(),
    };
    let result = export(&shop.state, request.clone(), Vec::new()).await;
    assert!(matches!(result, Err(ExportError::Refused(Refusal::EmptyWindow))), "{result:?}");
    request.to = now + 86_400_000;
    let result = export(&shop.state, request.clone(), Vec::new()).await;
    assert!(matches!(result, Err(ExportError::Refused(Refusal::FutureWindow { .. }))), "{result:?}");
    // A window longer than 366 days is refused before anything is read or audited.
    (request.from, request.to) = (now - 367 * 86_400_000, now);
    match export(&shop.state, request, Vec::new()).await {
        Err(ExportError::Refused(Refusal::LongWindow(message))) => {
            assert!(message.contains("366 days"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(audited().await, before, "a refused export is not audited");
}
