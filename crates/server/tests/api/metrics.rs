//! `/metrics` as a scraper and an operator read it: OpenMetrics by default, the classic text format
//! when asked for (clean under `promtool check metrics`), with the standard process metrics, a
//! latency histogram per route template, the build, and how far each outbox lane lags.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use tactful_domain::catalog::Catalog;
use tactful_store::StoreTesting;
use tower::ServiceExt;

use crate::common::Harness;

const T0: i64 = 1_780_000_000_000;

/// The content type and body of `/metrics`, asked for with `accept`.
async fn scrape(harness: &Harness, accept: Option<&str>) -> (String, String) {
    let mut request = Request::get("/metrics");
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = tactful_server::router(harness.state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

async fn harness() -> (Harness, Arc<tactful_app::ManualClock>) {
    let clock = Arc::new(tactful_app::ManualClock::at(T0));
    let catalog = Catalog::parse(Catalog::example_text()).unwrap();
    (Harness::clocked(catalog, clock.clone()).await, clock)
}

#[tokio::test]
async fn an_operator_sees_the_process_each_route_the_build_and_how_far_delivery_lags() {
    let (harness, clock) = harness().await;
    let healthz = Request::get("/healthz").body(Body::empty()).unwrap();
    harness.send(healthz).await;
    // A message waiting 90 s in one lane; nothing waits in the others.
    harness.state.store.outbox_enqueue("lane_under_test", b"waiting".to_vec(), T0).await.unwrap();
    clock.advance(90_000);

    let (content_type, text) = scrape(&harness, None).await;
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(text.ends_with("# EOF\n"));
    for expected in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
        &format!("tactful_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        r#"tactful_http_request_duration_seconds_count{method="GET",route="/healthz"} 1"#,
        r#"tactful_outbox_oldest_message_age_seconds{lane="lane_under_test"} 90"#,
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    let started: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("process_start_time_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started <= now + 1.0 && started > now - 3_600.0, "started {started}, now {now}");

    // Once delivered, the lane no longer lags.
    let claimed =
        harness.state.store.outbox_claim("lane_under_test", 10, clock_now(&clock), 60_000).await.unwrap();
    harness.state.store.outbox_complete(&claimed[0].id).await.unwrap();
    let (_, text) = scrape(&harness, None).await;
    assert!(!text.contains("lane_under_test"), "{text}");
}

fn clock_now(clock: &tactful_app::ManualClock) -> i64 {
    use tactful_app::Clock as _;
    clock.now()
}

#[tokio::test]
async fn a_scraper_asking_for_the_classic_text_format_gets_it_and_promtool_finds_it_clean() {
    let (harness, _) = harness().await;
    harness.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    harness.state.store.outbox_enqueue("erase", b"waiting".to_vec(), T0).await.unwrap();
    // What Prometheus before 2.5 and most other scrapers send.
    let (content_type, text) = scrape(&harness, Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.2")).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    assert!(text.contains("# TYPE tactful_http_requests_total counter"), "{text}");
    assert!(text.contains("# TYPE tactful_build_info gauge"), "{text}");

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut promtool = promtool.unwrap_or_else(|error| {
        panic!("promtool is needed ({error}): install the Debian package `prometheus` (scripts/test does)")
    });
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics found problems:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
