//! The PostgreSQL warehouse sink against a real PostgreSQL (when `TACTFUL_TEST_POSTGRES_URL` is set),
//! in a fresh schema per test: tables made and migrated, rows keyed by the destination's token,
//! redelivery idempotent, erasure and restriction reaching every table and only that person.

use std::collections::BTreeMap;
use std::io::Write as _;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tactful_app::forward::sink::{Forget, Forwarded, Recipient, Removal, Sink};
use tactful_app::forward::warehouse::WarehouseSink;
use tactful_domain::catalog::Catalog;
use tactful_domain::secret::Secret;
use time::OffsetDateTime;

use crate::common::Harness;

const ALICE: &str = "tok_wh_alice_7c1e";
const BORIS: &str = "tok_wh_boris_93d0";
const BORIS_EMAIL: &str = "boris@example.com";

/// A fresh schema on the test server, or `None` (said on the terminal) when there is none.
async fn fresh_schema() -> Option<(String, String, PgConnection)> {
    let Ok(url) = std::env::var("TACTFUL_TEST_POSTGRES_URL") else {
        assert!(std::env::var_os("CI").is_none(), "CI must run the PostgreSQL tests");
        let _ =
            writeln!(std::io::stderr(), "\nSKIPPED: the warehouse test (set TACTFUL_TEST_POSTGRES_URL)\n");
        return None;
    };
    let schema = format!("wh_{}", tactful_vault::new_subject_id()[4..16].to_ascii_lowercase());
    let conn = PgConnection::connect(&url).await.expect("connect to TACTFUL_TEST_POSTGRES_URL");
    Some((url, schema, conn))
}

fn person(token: &str, identifiers: &[(&str, &str)]) -> Recipient {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, value) in identifiers {
        map.entry((*kind).to_owned()).or_default().push((*value).to_owned());
    }
    Recipient { token: token.into(), identifiers: map }
}

fn event(id: &str, who: Recipient, kind: &str, name: Option<&str>, properties: Value) -> Forwarded {
    let Value::Object(properties) = properties else { unreachable!() };
    Forwarded {
        message_id: id.into(),
        kind: kind.into(),
        event: name.map(str::to_owned),
        timestamp: OffsetDateTime::now_utc(),
        person: who,
        properties,
        purposes: vec!["analytics.reporting".into()],
    }
}

fn batch() -> Vec<Forwarded> {
    let alice = person(ALICE, &[]);
    let boris = person(BORIS, &[("email", BORIS_EMAIL)]);
    vec![
        event("w-1", alice.clone(), "identify", None, json!({"city": "Whitby"})),
        event("w-2", alice.clone(), "track", Some("Order Completed"), json!({"revenue": 42.5})),
        event("w-3", alice.clone(), "page", Some("Home"), json!({"path": "/"})),
        event("w-4", boris.clone(), "track", Some("Order Completed"), json!({"revenue": 7})),
        // Another spelling of the same words: a table of its own, not a merge into the first.
        event("w-5", boris.clone(), "track", Some("order-completed"), json!({"revenue": 1})),
        event("w-6", boris, "screen", Some("Cart"), json!({})),
    ]
}

/// Every row of every table in the schema, as `table → [row as JSON]`.
async fn contents(conn: &mut PgConnection, schema: &str) -> BTreeMap<String, Vec<Value>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut all = BTreeMap::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT row_to_json(t)::text FROM \"{schema}\".\"{table}\" t ORDER BY 1"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        all.insert(table, rows.iter().map(|row| serde_json::from_str(row).unwrap()).collect());
    }
    all
}

/// How many rows of each event and people table name `token`.
fn rows_of(contents: &BTreeMap<String, Vec<Value>>, token: &str) -> BTreeMap<String, usize> {
    contents
        .iter()
        .filter(|(table, _)| !table.starts_with('_'))
        .map(|(table, rows)| (table.clone(), rows.iter().filter(|row| row["token"] == token).count()))
        .filter(|(_, count)| *count > 0)
        .collect()
}

fn counts(entries: &[(&str, usize)]) -> BTreeMap<String, usize> {
    entries.iter().map(|(table, count)| ((*table).to_owned(), *count)).collect()
}

#[tokio::test]
async fn the_warehouse_holds_tokens_once_and_forgets_a_person_everywhere() {
    let Some((url, schema, mut conn)) = fresh_schema().await else { return };
    let sink = WarehouseSink::new(&Secret::new(url.clone()), &schema);
    sink.deliver(&batch()).await.expect("delivered");

    let first = contents(&mut conn, &schema).await;
    let tables: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        tables,
        [
            "_tactful_migrations",
            "_tactful_tables",
            "groups",
            "identifies",
            "pages",
            "people",
            "screens",
            "track_order_completed",
            "track_order_completed_2"
        ]
    );
    assert_eq!(first["_tactful_migrations"].len(), 1);
    assert_eq!(
        rows_of(&first, ALICE),
        counts(&[("identifies", 1), ("pages", 1), ("people", 1), ("track_order_completed", 1)])
    );
    assert_eq!(
        rows_of(&first, BORIS),
        counts(&[
            ("people", 1),
            ("screens", 1),
            ("track_order_completed", 1),
            ("track_order_completed_2", 1)
        ])
    );
    let order = &first["track_order_completed"].iter().find(|row| row["token"] == ALICE).unwrap();
    assert_eq!(order["properties"], json!({"revenue": 42.5}));
    assert_eq!(order["message_id"], "w-2");
    assert_eq!(order["purposes"], json!(["analytics.reporting"]));
    // The email Boris's destination may know is in the people table, and nowhere else.
    let people = &first["people"];
    let boris = people.iter().find(|row| row["token"] == BORIS).unwrap();
    assert_eq!(boris["identifiers"], json!({"email": [BORIS_EMAIL]}));
    let alice = people.iter().find(|row| row["token"] == ALICE).unwrap();
    assert_eq!((&alice["identifiers"], &alice["traits"]), (&json!({}), &json!({"city": "Whitby"})));
    for (table, rows) in &first {
        if table != "people" {
            assert!(!json!(rows).to_string().contains(BORIS_EMAIL), "{table}: {rows:?}");
        }
    }

    // Redelivered, and by a freshly started sink (already migrated): nothing changes.
    sink.deliver(&batch()).await.expect("redelivered");
    let again = WarehouseSink::new(&Secret::new(url.clone()), &schema);
    again.deliver(&batch()).await.expect("redelivered by another instance");
    let mut second = contents(&mut conn, &schema).await;
    let mut first_people = first.clone();
    for table in [&mut second, &mut first_people] {
        table.remove("people"); // last_seen moves on; the rows are the same ones
    }
    assert_eq!(second, first_people, "redelivery is a no-op");

    // Alice erased: gone from every table, Boris untouched.
    let erase = Forget { request: "req_e".into(), removal: Removal::Erase, person: person(ALICE, &[]) };
    again.forget(&erase).await.expect("erased");
    let after = contents(&mut conn, &schema).await;
    assert_eq!(rows_of(&after, ALICE), BTreeMap::new());
    assert_eq!(rows_of(&after, BORIS), rows_of(&first, BORIS));
    assert!(!json!(after).to_string().contains("Whitby"));

    // Boris restricted: his events go, a marked people row without identifiers stays.
    let restrict = Forget {
        request: "req_r".into(),
        removal: Removal::Restrict,
        person: person(BORIS, &[("email", BORIS_EMAIL)]),
    };
    sink.forget(&restrict).await.expect("restricted");
    let after = contents(&mut conn, &schema).await;
    assert_eq!(rows_of(&after, BORIS), counts(&[("people", 1)]));
    assert_eq!(after["people"][0]["restricted"], true);
    assert!(!json!(after).to_string().contains(BORIS_EMAIL));

    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_warehouse_is_retried_and_a_bad_schema_is_refused() {
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = gone.local_addr().unwrap().port();
    drop(gone);
    let nowhere = WarehouseSink::new(&Secret::new(format!("postgres://u:p@127.0.0.1:{port}/db")), "wh_x");
    let error = nowhere.deliver(&batch()).await.unwrap_err();
    assert!(error.retryable, "{error:?}");
    assert!(!error.message.contains(":p@"), "no password in the message: {error:?}");

    let bad = WarehouseSink::new(&Secret::new(format!("postgres://u:p@127.0.0.1:{port}/db")), "x\"; DROP");
    let error = bad.deliver(&batch()).await.unwrap_err();
    assert!(!error.retryable, "{error:?}");
}

#[tokio::test]
async fn an_erasure_request_empties_the_warehouse_of_the_person_before_it_completes() {
    let Some((url, schema, mut conn)) = fresh_schema().await else { return };
    let destination = format!(
        "\n[destinations.warehouse]\nkind = \"warehouse\"\ndatabase_url = \"{url}\"\nschema = \"{schema}\"\n\
         purposes = [\"personalize.content\"]\nevents = [\"Book Viewed\", \"identify\"]\n\
         properties = [\"properties.book_id\", \"traits.city\"]\n"
    );
    let catalog = Catalog::parse(&format!("{}{destination}", crate::access::CATALOG)).unwrap();
    let harness = Harness::open(catalog, 64, None).await;
    let privacy = harness.key("privacy").await;
    for (user, book) in [("reader-1", "dracula"), ("reader-2", "carmilla")] {
        for event in [
            json!({"type": "identify", "userId": user, "traits": {"city": "Whitby"}}),
            json!({"type": "track", "event": "Book Viewed", "userId": user, "properties": {"book_id": book}}),
        ] {
            let (status, body) = harness.track("wk_ca_lantern", event, false).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    while tactful_app::forward::forward_due(&harness.state).await.unwrap() > 0 {}
    let before = contents(&mut conn, &schema).await;
    let tokens: Vec<String> =
        before["people"].iter().map(|row| row["token"].as_str().unwrap().to_owned()).collect();
    assert_eq!(tokens.len(), 2, "{before:#?}");
    let dracula =
        &before["track_book_viewed"].iter().find(|row| row["properties"]["book_id"] == "dracula").unwrap();
    let erased = dracula["token"].as_str().unwrap().to_owned();
    let kept = tokens.iter().find(|token| **token != erased).unwrap().clone();
    assert!(!json!(before).to_string().contains("reader-1"), "tokens, never the user id");

    let (status, created) =
        harness.request(&privacy, json!({"type": "erase", "subject": "user_id:reader-1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let now = tactful_app::now_millis();
    tactful_app::requests::run_due(&harness.state, now).await.unwrap();
    tactful_app::destinations::deliver_due(&harness.state, now).await.unwrap();
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "completed", "{view:#}");

    let after = contents(&mut conn, &schema).await;
    assert_eq!(rows_of(&after, &erased), BTreeMap::new(), "gone from every table");
    assert_eq!(rows_of(&after, &kept), rows_of(&before, &kept), "the other reader untouched");
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&mut conn).await.unwrap();
}
