//! Every door a stranger can knock at is bounded, on every instance at once: sign-in codes per
//! address and per client address (behind a proxy too), refused API keys per client (then even a
//! right key is refused), events per write key; and asking for a code does the same work whether
//! or not the address is a customer's, sending nothing until the worker's pass.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use tactful_app::Config;
use tactful_domain::catalog::Catalog;

use crate::access::CATALOG;
use crate::common::{Harness, basic};

fn catalog() -> Catalog {
    Catalog::parse(CATALOG).unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

/// Two instances over one database: SQLite in one directory, or the PostgreSQL database `url`.
async fn two_instances(url: Option<String>, configure: impl Fn(&mut Config) + Clone) -> (Harness, Harness) {
    let first = Harness::configured(catalog(), 64, url.clone(), configure.clone()).await;
    let database = url.unwrap_or_else(|| format!("sqlite:{}", first.dir.path().join("tactful.db").display()));
    let key_file = first.dir.path().join("master.key");
    let second = Harness::configured(catalog(), 64, Some(database), move |config| {
        configure(config);
        config.master_key_file = key_file.clone();
    })
    .await;
    (first, second)
}

fn limits(
    sign_in_per_address: &str,
    sign_in_per_client: &str,
    api_keys: &str,
    ingest: &str,
) -> impl Fn(&mut Config) + Clone {
    let settings =
        [sign_in_per_address, sign_in_per_client, api_keys, ingest].map(|text| text.parse().unwrap());
    move |config: &mut Config| {
        config.limit_sign_in_per_address = settings[0];
        config.limit_sign_in_per_client = settings[1];
        config.limit_api_key_failures_per_client = settings[2];
        config.limit_ingest_per_write_key = settings[3];
    }
}

/// A request from `peer` (the connection's address, as `serve` records it).
fn from(peer: &str, mut request: Request<Body>) -> Request<Body> {
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn ask_code(address: &str) -> Request<Body> {
    Request::post("/me/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("address={}", address.replace('@', "%40"))))
        .unwrap()
}

/// A customer who signed up for the newsletter (what their address is kept for).
async fn customer(harness: &Harness, user: &str, email: &str) {
    let event = json!({"type": "identify", "userId": user, "messageId": format!("{user}-signup"),
                       "traits": {"email": email},
                       "context": {"consent": {"categoryPreferences": {"Email": true}}}});
    let (status, body) = harness.track("wk_ca_lantern", event, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(harness.subject_of("email", email).await.is_some(), "the address is known");
}

/// Asserts a refusal by `limit`: 429 `rate_limited` naming it, with a `Retry-After`.
fn assert_limited(answer: &(StatusCode, HeaderMap, Value), limit: &str) {
    let (status, headers, body) = answer;
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(body["error"]["limit"], limit, "{body}");
    let retry: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
}

async fn metrics(harness: &Harness) -> String {
    let (_, _, body) = harness.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    body.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_twentieth_code_for_one_address_within_a_minute_is_refused_on_every_instance() {
    codes_per_address(None).await;
}

#[tokio::test]
async fn the_twentieth_code_for_one_address_within_a_minute_is_refused_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    codes_per_address(Some(url)).await;
}

async fn codes_per_address(url: Option<String>) {
    let (first, second) = two_instances(url, limits("19/1m", "off", "off", "off")).await;
    customer(&first, "reader-1", "ada@lantern.example").await;
    // A customer and a stranger alike: 19 codes, asked on either instance, then no more.
    for address in ["ada@lantern.example", "nobody@lantern.example"] {
        for index in 0..19 {
            let instance = if index % 2 == 0 { &first } else { &second };
            let (status, _, body) = instance.send(ask_code(address)).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "code {} for {address}: {body}", index + 1);
        }
        assert_limited(&first.send(ask_code(address)).await, "sign_in_per_address");
        // Another spelling of the same address is the same address.
        assert_limited(&second.send(ask_code(&address.to_uppercase())).await, "sign_in_per_address");
    }
    let (status, ..) = second.send(ask_code("someone.else@lantern.example")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "another address is not limited by these");
    assert!(metrics(&first).await.contains(r#"tactful_rate_limited_total{limit="sign_in_per_address"} 2"#));
}

#[tokio::test]
async fn codes_are_limited_per_client_address_and_behind_a_proxy_per_the_client_it_names() {
    let direct = Harness::configured(catalog(), 64, None, limits("off", "3/1h", "off", "off")).await;
    for index in 0..3 {
        let (status, ..) =
            direct.send(from("192.0.2.1:4000", ask_code(&format!("p{index}@lantern.example")))).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    assert_limited(
        &direct.send(from("192.0.2.1:4001", ask_code("p9@lantern.example"))).await,
        "sign_in_per_client",
    );
    let (status, ..) = direct.send(from("192.0.2.2:4000", ask_code("p9@lantern.example"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "another client is not limited");
    // IPv6 counts per /64: walking the prefix's addresses gains nothing.
    for index in 0..3 {
        let peer = format!("[2001:db8:7:7::{index}]:4000");
        let (status, ..) = direct.send(from(&peer, ask_code(&format!("q{index}@lantern.example")))).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    let peer = "[2001:db8:7:7:ffff::1]:4000";
    assert_limited(&direct.send(from(peer, ask_code("q9@lantern.example"))).await, "sign_in_per_client");

    // Behind a proxy, every connection comes from the proxy; the client is the header's last entry.
    let proxied = Harness::configured(catalog(), 64, None, |config| {
        limits("off", "3/1h", "off", "off")(config);
        config.client_address_header = Some("X-Forwarded-For".into());
    })
    .await;
    let via_proxy = |client: &str, address: &str| {
        let mut request = from("10.0.0.1:5000", ask_code(address));
        // The first entry is whatever the client claimed; the proxy appended what it saw.
        request.headers_mut().insert("x-forwarded-for", format!("198.51.100.99, {client}").parse().unwrap());
        request
    };
    for index in 0..3 {
        let (status, ..) = proxied.send(via_proxy("203.0.113.9", &format!("r{index}@lantern.example"))).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    assert_limited(&proxied.send(via_proxy("203.0.113.9", "r9@lantern.example")).await, "sign_in_per_client");
    let (status, ..) = proxied.send(via_proxy("203.0.113.10", "r9@lantern.example")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "another client behind the same proxy is not limited");
}

fn with_key(peer: &str, key: &str) -> Request<Body> {
    from(
        peer,
        Request::get("/v1/catalog")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap(),
    )
}

fn console_sign_in(peer: &str, key: &str) -> Request<Body> {
    from(
        peer,
        Request::post("/console/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("key={key}")))
            .unwrap(),
    )
}

#[tokio::test]
async fn after_a_flood_of_bad_api_keys_that_client_is_refused_on_every_instance_even_with_a_right_key() {
    let (first, second) = two_instances(None, limits("off", "off", "5/10m", "off")).await;
    let right = first.key("privacy").await;
    let guesser = "192.0.2.50:1234";
    for index in 0..5 {
        let instance = if index % 2 == 0 { &first } else { &second };
        let (status, _, body) = instance.send(with_key(guesser, &format!("tk_guess{index}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    assert_limited(&first.send(with_key(guesser, "tk_guess6")).await, "api_key_failures_per_client");
    assert_limited(&second.send(with_key(guesser, "tk_guess7")).await, "api_key_failures_per_client");
    assert_limited(&second.send(with_key(guesser, &right)).await, "api_key_failures_per_client");
    let (status, ..) = first.send(with_key("192.0.2.51:1234", &right)).await;
    assert_eq!(status, StatusCode::OK, "another client's right key works");
    assert!(
        metrics(&second)
            .await
            .contains(r#"tactful_rate_limited_total{limit="api_key_failures_per_client"} 2"#)
    );

    // The console's sign-in form counts the same way, with the API's refusals.
    let other = "192.0.2.60:1234";
    for index in 0..3 {
        let (status, ..) = first.send(with_key(other, &format!("tk_guess{index}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for index in 0..2 {
        let (status, _, body) = second.send(console_sign_in(other, &format!("tk_guess{index}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, headers, body) = first.send(console_sign_in(other, &right)).await;
    assert_limited(&(status, headers.clone(), body), "api_key_failures_per_client");
    assert!(!headers.contains_key(header::SET_COOKIE), "no session");
}

fn batch(write_key: &str, first: usize, count: usize) -> Request<Body> {
    let events: Vec<Value> = (first..first + count)
        .map(|index| {
            json!({"type": "track", "event": "Book Viewed", "userId": "reader-1",
                            "messageId": format!("{write_key}-{index}")})
        })
        .collect();
    Request::post("/v1/batch")
        .header(header::AUTHORIZATION, basic(write_key))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"batch": events}).to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_write_key_over_its_rate_is_refused_with_retry_after_and_another_key_is_not() {
    let harness = Harness::configured(catalog(), 64, None, limits("off", "off", "off", "10/1h")).await;
    let (status, _, body) = harness.send(batch("wk_web_lantern", 0, 8)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_limited(&harness.send(batch("wk_web_lantern", 8, 3)).await, "ingest_per_write_key");
    let (status, _, body) = harness.send(batch("wk_web_lantern", 8, 2)).await;
    assert_eq!(status, StatusCode::OK, "what still fits is taken: {body}");
    assert_limited(&harness.send(batch("wk_web_lantern", 10, 1)).await, "ingest_per_write_key");
    let (status, _, body) = harness.send(batch("wk_ca_lantern", 0, 10)).await;
    assert_eq!(status, StatusCode::OK, "another key has its own count: {body}");
    assert!(
        metrics(&harness).await.contains(r#"tactful_rate_limited_total{limit="ingest_per_write_key"} 2"#)
    );
}

/// Rows per table of the SQLite database, and the lengths of the sign-in messages in the outbox.
fn tables(harness: &Harness) -> (BTreeMap<String, i64>, Vec<i64>) {
    let conn = rusqlite::Connection::open_with_flags(
        harness.dir.path().join("tactful.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let counts = names
        .into_iter()
        .map(|name| {
            let count =
                conn.query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |row| row.get(0)).unwrap();
            (name, count)
        })
        .collect();
    let lengths = conn
        .prepare("SELECT length(payload) FROM outbox WHERE topic = 'sign_in' ORDER BY created_at, rowid")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (counts, lengths)
}

/// What changed between two snapshots: table → rows added.
fn change(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    after
        .iter()
        .map(|(name, rows)| (name.clone(), rows - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, added)| *added != 0)
        .collect()
}

#[tokio::test]
async fn a_customer_and_a_stranger_asking_for_a_code_cause_the_same_writes_and_only_the_customer_gets_one() {
    let harness = Harness::open(catalog(), 64, None).await;
    customer(&harness, "reader-1", "ada@lantern.example").await;
    let (start, _) = tables(&harness);
    let (status, ..) = harness.send(from("192.0.2.1:1", ask_code("ada@lantern.example"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (known, _) = tables(&harness);
    let (status, ..) = harness.send(from("192.0.2.2:1", ask_code("stranger@lantern.example"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (unknown, lengths) = tables(&harness);
    let by_customer = change(&start, &known);
    assert_eq!(by_customer, change(&known, &unknown), "the same tables, the same rows");
    assert!(
        by_customer.contains_key("sign_in_codes") && by_customer.contains_key("outbox"),
        "{by_customer:?}"
    );
    assert_eq!(lengths.len(), 2);
    assert_eq!(lengths[0], lengths[1], "sealed messages of one length");
    let bytes = harness.database_bytes();
    for address in [&b"ada@lantern"[..], b"stranger@lantern"] {
        assert!(!bytes.windows(address.len()).any(|window| window == address), "sealed, not in clear");
    }

    assert!(harness.notifications().is_empty(), "nothing is sent during the answer");
    assert_eq!(harness.send_codes().await, 2);
    let sent = harness.notifications();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("To: ada@lantern.example") && sent[0].contains("Your code"), "{}", sent[0]);
    assert_eq!(harness.send_codes().await, 0, "both messages left the outbox");
    assert_eq!(tables(&harness).1.len(), 0);
}
