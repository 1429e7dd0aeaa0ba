//! `tactful bench forward`: events forwarded per second and the lag from acknowledgment to the
//! destination's acknowledgment, at a fixed offered rate, to a Segment-protocol receiver on loopback;
//! and ingestion at full speed with forwarding on and off, alternated (forwarding must not slow it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use serde_json::Value;
use tactful_app::{App, Config};
use tactful_domain::catalog::Catalog;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bench::ingest::{self, IngestArgs};
use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// Events per second offered to ingestion (all of them forwardable to the analytics pipeline).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds to offer them for.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent ingestion clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Events per ingestion request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Alternated rounds of full-speed ingestion with forwarding off and on (0 skips the A/B).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Events per delivery to the analytics pipeline (the destination's `batch_size`, 1 to 1,000).
    #[arg(long, default_value_t = 1_000)]
    pub destination_batch: u32,
}

/// What the Segment-protocol receiver saw: events and, for each, seconds from arrival to receipt.
#[derive(Default)]
struct Receiver {
    events: AtomicU64,
    lags_ms: Mutex<Vec<u32>>,
    last: Mutex<Option<Instant>>,
}

async fn receive(State(receiver): State<Arc<Receiver>>, body: Bytes) -> &'static str {
    let now = OffsetDateTime::now_utc();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let batch = parsed["batch"].as_array().cloned().unwrap_or_default();
    let mut lags = Vec::with_capacity(batch.len());
    for message in &batch {
        if let Some(at) =
            message["timestamp"].as_str().and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        {
            lags.push(u32::try_from((now - at).whole_milliseconds().max(0)).unwrap_or(u32::MAX));
        }
    }
    receiver.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
    receiver.lags_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(lags);
    *receiver.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    "{\"success\":true}"
}

/// The email tool's webhook and the analytics pipeline's `/v1/batch` on loopback.
async fn receiver() -> anyhow::Result<(String, Arc<Receiver>)> {
    let receiver = Arc::new(Receiver::default());
    let router = axum::Router::new()
        .route("/v1/batch", post(receive))
        .route("/hooks/tactful", post(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((base, receiver))
}

/// The example catalog for Californians (opt-out: analytics permitted unless they object), its
/// destinations pointed at `receivers`, or with no forwarding destinations at all.
fn catalog(receivers: Option<&str>, batch: u32) -> anyhow::Result<Catalog> {
    let text =
        Catalog::example_text().replace("default_jurisdiction = \"eu\"", "default_jurisdiction = \"us-ca\"");
    let text = match receivers {
        Some(base) => crate::demo::forwarding::with_receivers(&text, base).replace(
            "write_key = \"wk_pipeline_fernhill_demo_replace_me\"\n",
            &format!("write_key = \"wk_pipeline_fernhill_demo_replace_me\"\nbatch_size = {batch}\n"),
        ),
        None => text
            .split_once("# Destinations that receive events")
            .map_or(text.clone(), |(before, _)| before.to_owned()),
    };
    Catalog::parse(&text).map_err(|errors| anyhow::anyhow!(errors.render("example")))
}

/// A Tactful server on a fresh SQLite with the forwarding worker as `tactful serve` runs it (the
/// same loop: batch after batch while there is work, a look every 200 ms when caught up). Dropping
/// the returned guard stops both.
async fn server(
    catalog: Catalog,
    dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<(String, Arc<App>, Running)> {
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        database: format!("sqlite:{}", dir.join(format!("{name}.db")).display()),
        master_key_file: dir.join("master.key"),
        max_inflight: 4096,
        ..Config::default()
    };
    let state = Arc::new(App::open(&config, catalog).await?);
    let listener = tactful_server::bind(&config).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let serving = tokio::spawn(tactful_server::serve(
        listener,
        tactful_server::AppState::new(state.clone(), &config),
        std::future::pending(),
    ));
    let app = state.clone();
    let forwarding = tokio::spawn(async move {
        loop {
            match tactful_app::forward::forward_due(&app).await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(200)).await,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    });
    Ok((base, state, Running(vec![serving.abort_handle(), forwarding.abort_handle()])))
}

/// A server and its forwarding worker, stopped when dropped.
struct Running(Vec<tokio::task::AbortHandle>);

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A batch of product views by 1,000 Californian customers from the order service, with fresh
/// messageIds and no timestamp (so each happened when it arrived).
fn body(run: &str, sequence: u64, size: usize) -> Bytes {
    let mut body = String::with_capacity(size * 220);
    body.push_str(r#"{"batch":["#);
    for offset in 0..size {
        if offset > 0 {
            body.push(',');
        }
        let n = sequence as usize * size + offset;
        body.push_str(&format!(
            r#"{{"type":"track","event":"Product Viewed","userId":"bench-{}","messageId":"{run}-{sequence}-{offset}","properties":{{"product_id":"p-{}","category":"shoes","price":59.5}}}}"#,
            n % 1_000,
            n % 97
        ));
    }
    body.push_str("]}");
    Bytes::from(body)
}

/// Offers `rate` events/s for `seconds`, spread over the clients; returns how many were acknowledged.
async fn offer(base: &str, args: &ForwardArgs) -> anyhow::Result<u64> {
    let requests_per_second = (args.rate as f64 / args.batch as f64).max(1.0);
    let every = Duration::from_secs_f64(args.clients as f64 / requests_per_second);
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client_index in 0..args.clients {
        let client = Client::new(base.to_owned());
        let (stop, acknowledged, batch) = (stop.clone(), acknowledged.clone(), args.batch);
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sequence = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let (status, answer) = client
                    .post(
                        "/v1/batch",
                        "wk_backend_fernhill_demo",
                        body(&format!("c{client_index}"), sequence, batch),
                    )
                    .await?;
                anyhow::ensure!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&answer));
                acknowledged.fetch_add(batch as u64, Ordering::Relaxed);
                sequence += 1;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    Ok(acknowledged.load(Ordering::Relaxed))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |ms| f64::from(*ms))
}

pub async fn forward(args: ForwardArgs) -> anyhow::Result<()> {
    println!(
        "Forwarding benchmark: {} events/s offered for {} s ({} clients, {} events per request) to Tactful on \
         SQLite, forwarded to a Segment-protocol receiver on loopback, {} cores",
        args.rate,
        args.seconds,
        args.clients,
        args.batch,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let dir = tempfile::tempdir()?;
    let (receivers, received) = receiver().await?;
    let (base, app, running) =
        server(catalog(Some(&receivers), args.destination_batch)?, dir.path(), "forward").await?;
    let started = Instant::now();
    let acknowledged = offer(&base, &args).await?;
    let offered_for = started.elapsed();
    // Wait for the rest (bounded): the analytics pipeline receives every acknowledged event.
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.events.load(Ordering::Relaxed) < acknowledged && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let forwarded = received.events.load(Ordering::Relaxed);
    let last =
        received.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).unwrap_or_else(Instant::now);
    let span = last.duration_since(started).as_secs_f64();
    let mut lags =
        std::mem::take(&mut *received.lags_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    lags.sort_unstable();
    let report = tactful_app::forward::report(&app).await?;
    let analytics = report.iter().find(|report| report.key == "analytics");

    println!();
    println!(
        "offered and acknowledged   {:>10} events in {:.1} s ({:.0} events/s)",
        acknowledged,
        offered_for.as_secs_f64(),
        acknowledged as f64 / offered_for.as_secs_f64()
    );
    println!(
        "forwarded (acknowledged)   {:>10} events in {:.1} s ({:.0} events/s)",
        forwarded,
        span,
        forwarded as f64 / span
    );
    println!(
        "lag, arrival → receiver    p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0)
    );
    if let Some(analytics) = analytics {
        let refused: u64 = analytics.refused.values().sum();
        println!(
            "tactful's own count        {} delivered, {refused} refused, {} failed deliveries",
            analytics.delivered, analytics.failures
        );
    }
    super::record(
        &format!("forwarding at {}/s offered, p99 lag", args.rate),
        format!("{:.2} s", percentile(&lags, 0.99) / 1000.0),
        format!("{:.0} events/s taken", acknowledged as f64 / offered_for.as_secs_f64()),
        "< 2 s",
    );
    anyhow::ensure!(
        forwarded >= acknowledged,
        "only {forwarded} of {acknowledged} acknowledged events were forwarded"
    );
    drop(running);

    if args.rounds > 0 {
        ab(&args, dir.path(), &receivers).await?;
    }
    Ok(())
}

/// Full-speed ingestion (as `bench ingest` drives it) with forwarding off and on, alternated.
async fn ab(args: &ForwardArgs, dir: &std::path::Path, receivers: &str) -> anyhow::Result<()> {
    let ingest_args = IngestArgs {
        seconds: args.seconds,
        clients: args.clients,
        batch: args.batch,
        skip_reference: true,
        backfill: false,
        postgres: None,
    };
    println!();
    println!(
        "Ingestion at full speed (bench ingest's load, {} s each), forwarding off and on, alternated:",
        args.seconds
    );
    for round in 0..args.rounds {
        for on in [false, true] {
            let name = format!("ab{round}{}", if on { "on" } else { "off" });
            let (base, _app, running) =
                server(catalog(on.then_some(receivers), args.destination_batch)?, dir, &name).await?;
            let figures = ingest::drive(&[base], &ingest_args, &name).await?;
            drop(running);
            println!(
                "  round {} forwarding {:<3}  {:>8.0} events/s   p50 {:>6.1} ms   p99 {:>6.1} ms",
                round + 1,
                if on { "on" } else { "off" },
                figures.events_per_second,
                figures.p50_ms,
                figures.p99_ms
            );
        }
    }
    Ok(())
}
