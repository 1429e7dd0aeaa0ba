//! Every door bounded, as an attacker and an operator would try it: ε and windows out of range are
//! refused at once and spend nothing; heavy work runs off the request workers, so `/healthz` and
//! ingestion answer while answers are being counted; and work past its deadline is `too_slow`,
//! spends nothing, and is on record.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tactful_app::ErrorCode;
use tactful_app::exports::dataset::{ExportError, ExportFormat, ExportRequest, export};
use tactful_app::work::Late;
use tactful_domain::catalog::Catalog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::common::{Harness, basic};
use crate::insights::{catalog, window};

/// Holds heavy work at one point (`"count"`, `"release"`, …) until opened; tells the test each
/// time work arrives there. Opens on drop, so a failing test never leaves threads held.
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

struct Held {
    gate: Arc<Gate>,
    arrived: UnboundedReceiver<&'static str>,
}

impl Held {
    fn on(h: &Harness, point: &'static str) -> Held {
        let gate = Arc::new(Gate { open: Mutex::new(false), opened: Condvar::new() });
        let (tell, arrived) = tokio::sync::mpsc::unbounded_channel();
        let held = gate.clone();
        h.state.app.limits.set_probe(Some(Arc::new(move |at| {
            if at != point {
                return;
            }
            tell.send(at).ok();
            let mut open = held.open.lock().unwrap();
            while !*open {
                open = held.opened.wait(open).unwrap();
            }
        })));
        Held { gate, arrived }
    }

    /// Waits (at most 10 s) until work arrives at the point.
    async fn arrival(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.arrived.recv())
            .await
            .expect("work arrives at the held point")
            .expect("the probe is set");
    }

    fn open(&self) {
        *self.gate.open.lock().unwrap() = true;
        self.gate.opened.notify_all();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open();
    }
}

async fn shop(h: &Harness) {
    for (user, category) in [("a", "shoes"), ("b", "shoes"), ("c", "shoes"), ("d", "hats")] {
        h.shop(user, category, 40.0, true).await;
    }
}

fn private(epsilon: f64) -> Value {
    let (from, to) = window();
    json!({"dataset": "private", "metric": "events", "group_by": ["event"], "from": from, "to": to, "epsilon": epsilon})
}

async fn spent(h: &Harness) -> Vec<(String, i64, i64)> {
    h.state.store.budgets().await.unwrap()
}

#[tokio::test]
async fn epsilon_and_windows_out_of_range_are_refused_at_once_and_spend_nothing() {
    out_of_range(None).await;
}

#[tokio::test]
async fn epsilon_and_windows_out_of_range_are_refused_at_once_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    out_of_range(Some(url)).await;
}

async fn out_of_range(database: Option<String>) {
    let h = Harness::open(catalog(), 64, database).await;
    let analyst = h.key("analyst").await;
    shop(&h).await;
    // The dataset's budget is 2 per period: ε may be 0.01 to 2.
    for epsilon in [1e-300, 1e-12, 0.009, 2.5, 11.0, -1.0, 0.0] {
        let started = Instant::now();
        let (status, body) = h.query(&analyst, private(epsilon)).await;
        assert!(started.elapsed() < Duration::from_millis(500), "ε = {epsilon:e}: {:?}", started.elapsed());
        assert_eq!(status, StatusCode::BAD_REQUEST, "ε = {epsilon:e}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("allowed: 0.01 to 2"), "{message}");
    }
    let now = tactful_app::now_millis();
    let long = (
        tactful_domain::segment::format_time(now - 367 * 86_400_000),
        tactful_domain::segment::format_time(now),
    );
    for (dataset, epsilon) in [("private", Some(1.0)), ("exact", None)] {
        let started = Instant::now();
        let ask =
            json!({"dataset": dataset, "metric": "events", "from": long.0, "to": long.1, "epsilon": epsilon});
        let (status, body) = h.query(&analyst, ask).await;
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("366 days"), "{body}");
    }
    assert!(spent(&h).await.is_empty(), "nothing spent");
    assert!(h.insights_entries().await.is_empty(), "nothing audited: nothing was asked of the data");

    // The floor itself is answered and paid for.
    let (status, body) = h.query(&analyst, private(0.01)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["privacy"]["budget"]["spent"], 0.01, "{body}");
    let budgets = spent(&h).await;
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0].2, 10_000, "0.01 in millionths");
    assert_eq!(h.insights_entries().await.len(), 1);
}

/// An HTTP/1.1 request on a real socket; the status and the body.
async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

#[tokio::test]
async fn answers_being_counted_leave_healthz_and_ingestion_answering_on_two_workers() {
    let h = Harness::open(catalog(), 64, None).await;
    let analyst = h.key("analyst").await;
    shop(&h).await;
    // The server on a socket, on a runtime of its own with two workers (the test's runtime only
    // sends requests, so it can time them even if the server's workers were stuck).
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let state = h.state.clone();
    server.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tactful_server::serve(listener, state, std::future::pending()).await
    });
    let mut held = Held::on(&h, "count");
    let ask = |epsilon: f64| {
        let (key, body) = (analyst.clone(), private(epsilon).to_string());
        tokio::spawn(async move {
            let headers =
                [("Authorization", format!("Bearer {key}")), ("Content-Type", "application/json".to_owned())];
            http(address, "POST", "/v1/insights/query", &headers, &body).await
        })
    };
    let first = ask(0.5);
    let second = ask(0.5);
    held.arrival().await;
    held.arrival().await;

    // Two answers are mid-count; the server still answers.
    let within = |what| async move {
        tokio::time::timeout(Duration::from_secs(5), what).await.expect("answered while answers are counted")
    };
    let (status, body) = within(http(address, "GET", "/healthz", &[], "")).await;
    assert_eq!(status, 200, "{body}");
    let event = json!({"batch": [{"type": "track", "event": "Product Viewed", "userId": "e", "messageId": "e-1",
                                  "properties": {"category": "shoes"}}]});
    let headers =
        [("Authorization", basic("wk_web_fernhill")), ("Content-Type", "application/json".to_owned())];
    let (status, body) = within(http(address, "POST", "/v1/batch", &headers, &event.to_string())).await;
    assert_eq!(status, 200, "{body}");
    let third = ask(0.5);
    held.arrival().await;

    held.open();
    for answer in [first, second, third] {
        let (status, body) = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("answered once let go")
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    h.state.app.limits.set_probe(None);
    server.shutdown_background();
}

#[tokio::test]
async fn an_answer_past_its_deadline_is_too_slow_spends_nothing_and_is_on_record() {
    too_slow(None).await;
}

#[tokio::test]
async fn an_answer_past_its_deadline_is_too_slow_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    too_slow(Some(url)).await;
}

async fn too_slow(database: Option<String>) {
    let h = Harness::configured(catalog(), 64, database, |config| config.work_deadline_ms = 300).await;
    let analyst = h.key("analyst").await;
    shop(&h).await;
    let mut held = Held::on(&h, "count");
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), h.query(&analyst, private(1.0)))
        .await
        .expect("answered at the deadline, not when the work ends");
    held.arrival().await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "too_slow");
    assert_eq!(body["error"]["deadline_ms"], 300);
    assert!(spent(&h).await.is_empty(), "nothing spent");
    let entries = h.insights_entries().await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].contains("refused: too_slow (not computed within 300 ms"), "{}", entries[0]);
    assert!(entries[0].contains("\"epsilon\":\"0\""), "{}", entries[0]);

    // The late count finishes now, and its answer goes nowhere: the next answer pays only for itself.
    held.open();
    h.state.app.limits.set_probe(None);
    let (status, body) = h.query(&analyst, private(1.0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(spent(&h).await[0].2, 1_000_000, "only the answer given was paid for");
}

#[tokio::test]
async fn an_answer_whose_budget_another_spent_while_it_computed_is_refused_unpaid() {
    outspent(None).await;
}

#[tokio::test]
async fn an_answer_whose_budget_another_spent_while_it_computed_is_refused_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    outspent(Some(url)).await;
}

/// Two answers of 1.5 against a budget of 2: both pass the read-only check, both are computed,
/// and only the first to spend is paid for and answered.
async fn outspent(database: Option<String>) {
    let h = Harness::open(catalog(), 64, database).await;
    let analyst = h.key("analyst").await;
    shop(&h).await;
    let mut held = Held::on(&h, "answer");
    let h = Arc::new(h);
    let ask = || {
        let (h, analyst) = (h.clone(), analyst.clone());
        tokio::spawn(async move { h.query(&analyst, private(1.5)).await })
    };
    let (first, second) = (ask(), ask());
    held.arrival().await;
    held.arrival().await;
    assert!(spent(&h).await.is_empty(), "computing spends nothing");
    held.open();
    let mut statuses = Vec::new();
    for answer in [first, second] {
        let (status, body) = answer.await.unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "budget_exhausted", "{body}");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    assert_eq!(spent(&h).await[0].2, 1_500_000, "only the answer given was paid for");
    let entries = h.insights_entries().await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let refused: Vec<&String> = entries.iter().filter(|e| e.contains("refused: budget_exhausted")).collect();
    assert_eq!(refused.len(), 1, "{entries:?}");
    assert!(refused[0].contains("\"epsilon\":\"0\""), "{}", refused[0]);
}

#[tokio::test]
async fn an_export_past_its_deadline_stops_with_the_deadline_error() {
    let h = Harness::configured(catalog(), 64, None, |config| config.export_deadline_ms = 300).await;
    shop(&h).await;
    let now = tactful_app::now_millis();
    let request = ExportRequest {
        purpose: "analytics.reporting".into(),
        dataset: None,
        from: now - 86_400_000,
        to: now + 1,
        format: ExportFormat::Csv,
        actor: "test".into(),
        role: "operator".into(),
    };
    let mut held = Held::on(&h, "export");
    let result = tokio::time::timeout(Duration::from_secs(5), export(&h.state, request.clone(), Vec::new()))
        .await
        .expect("stopped at the deadline");
    held.arrival().await;
    assert!(matches!(result, Err(ExportError::Late(Late { deadline_ms: 300 }))), "{result:?}");
    held.open();
    h.state.app.limits.set_probe(None);
    let (summary, _) = export(&h.state, request, Vec::new()).await.unwrap();
    assert_eq!(summary.rows, 8, "in time, the same export is written");
}

#[tokio::test]
async fn late_model_releases_and_quality_checks_say_so_and_the_sync_goes_on() {
    let clock = Arc::new(tactful_app::ManualClock::at(tactful_app::now_millis()));
    let text =
        crate::personalize::CATALOG.replace("min_support = 3", "min_support = 3\nepsilon = 2.0\ncap = 5");
    let catalog = Catalog::parse(&text).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let h = crate::personalize::with_items(Harness::clocked(catalog, clock.clone()).await).await;
    for person in 0..20 {
        h.views(&format!("p{person}"), &["boot", "sock"], true).await;
    }
    h.learn().await;
    let engine = h.state.personalization.clone().unwrap();
    engine.release_whole(h.state.store.as_ref(), h.state.now()).await.unwrap();
    let served = engine.info_now();
    assert_eq!(served.people, 20);
    let releases = || async {
        let entries = h.state.store.audit_entries(0, 10_000).await.unwrap();
        entries.iter().filter(|e| e.text.contains("model_released")).count()
    };
    let released = releases().await;
    h.state.app.limits.set_deadlines(300, 600_000);

    let mut held = Held::on(&h, "release");
    let error = tokio::time::timeout(
        Duration::from_secs(5),
        engine.release_whole(h.state.store.as_ref(), h.state.now()),
    )
    .await
    .expect("stopped at the deadline")
    .unwrap_err();
    held.arrival().await;
    assert_eq!((error.code, error.details.clone()), (ErrorCode::TooSlow, Some(json!({"deadline_ms": 300}))));

    // The scheduled release is late too: the sync goes on, the previous release stays in service,
    // and the next try waits for the schedule (not the next second).
    h.views("p20", &["boot", "sock"], true).await;
    clock.advance(i64::from(engine.settings.release_minutes) * 60_000 + 1_000);
    while tactful_app::personalize::update_dirty(&h.state, &engine).await.unwrap() > 0 {}
    let synced = tokio::time::timeout(
        Duration::from_secs(5),
        engine.sync_at(h.state.store.as_ref(), &h.state.vault, h.state.now()),
    )
    .await
    .expect("the sync is not held by its release");
    synced.unwrap();
    assert_eq!(engine.dataset().people, 21, "the sync applied the new contribution");
    held.arrival().await;
    assert_eq!(engine.info_now().released_at, served.released_at, "the previous release is served");
    clock.advance(1_000);
    engine.sync_at(h.state.store.as_ref(), &h.state.vault, h.state.now()).await.unwrap();
    assert!(held.arrived.try_recv().is_err(), "no new try a second later");
    assert_eq!(releases().await, released, "no late release was recorded or served");

    let mut quality = Held::on(&h, "quality");
    let error = tokio::time::timeout(Duration::from_secs(5), tactful_app::console::quality(&h.state))
        .await
        .expect("stopped at the deadline")
        .unwrap_err();
    quality.arrival().await;
    assert_eq!(error.code, ErrorCode::TooSlow);
    held.open();
    quality.open();
    h.state.app.limits.set_probe(None);

    // In time, the next release goes out.
    h.state.app.limits.set_deadlines(10_000, 600_000);
    engine.release_whole(h.state.store.as_ref(), h.state.now()).await.unwrap();
    assert_eq!(engine.info_now().people, 21);
    assert_eq!(releases().await, released + 1);
}
