//! `tactful bench requests`: for a person with many events, how long erasure takes to make them
//! unreadable (the shred: keys destroyed, identifiers gone) and how long their access package takes
//! to stream, each beside a reference measured in the same run (one durable commit; reading the
//! same rows without opening them).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tactful_app::App;
use tactful_store::ShredPlan;

use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct RequestsArgs {
    /// Events of the person erased and exported.
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,
    /// Times each figure is measured (a fresh person each time); the median is printed.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// Sends `events` events of one person through the real ingestion path; returns their subject.
async fn person(client: &Client, state: &App, run: usize, events: usize) -> anyhow::Result<String> {
    let user = format!("bench-person-{run}");
    let mut sent = 0;
    while sent < events {
        let batch: Vec<Value> = (sent..(sent + 100).min(events))
            .map(|index| {
                if index == 0 {
                    json!({"type": "identify", "userId": user, "messageId": format!("{user}-{index}"),
                           "traits": {"email": format!("{user}@example.com"), "first_name": "Bench"}})
                } else {
                    json!({"type": "track", "event": "Product Viewed", "userId": user, "messageId": format!("{user}-{index}"),
                           "properties": {"product_id": format!("sku-{:04}", index % 500)}, "context": {"ip": "192.0.2.1"}})
                }
            })
            .collect();
        sent += batch.len();
        let (status, answer) = client
            .post("/v1/batch", "wk_backend_fernhill_demo", Bytes::from(json!({"batch": batch}).to_string()))
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "ingestion refused a batch: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    state
        .store
        .subject_by_identifier(state.vault.blind("user_id", &user))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the benchmark person was not stored"))
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn requests(args: RequestsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = format!("sqlite:{}", dir.path().join("bench.db").display());
    let (base, state): (String, Arc<App>) =
        super::ingest::tactful_server(database, dir.path().join("master.key")).await?;
    let client = Client::new(base);
    println!(
        "Requests benchmark: a person with {} events, embedded SQLite, median of {} runs, {} cores",
        args.events,
        args.runs,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let progress = crate::progress::bar(args.runs.max(1) as u64, "measuring", "runs");
    let (mut shred_ms, mut commit_ms, mut export_ms, mut html_ms, mut read_ms, mut hold_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs.max(1) {
        let subject = person(&client, &state, run, args.events).await?;

        // Export: the package streamed to the end, JSON and HTML.
        let started = Instant::now();
        let mut bytes = 0;
        let mut stream = std::pin::pin!(tactful_app::exports::package::stream(
            state.clone(),
            subject.clone(),
            format!("req_bench_{run}"),
            tactful_app::exports::package::Form::Json
        ));
        while let Some(chunk) = stream.next().await {
            bytes += chunk?.len();
        }
        export_ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(bytes > args.events * 50, "the package is too small to hold every event");
        let started = Instant::now();
        let mut stream = std::pin::pin!(tactful_app::exports::package::stream(
            state.clone(),
            subject.clone(),
            format!("req_bench_{run}"),
            tactful_app::exports::package::Form::Html
        ));
        while let Some(chunk) = stream.next().await {
            chunk?;
        }
        html_ms.push(started.elapsed().as_secs_f64() * 1e3);
        // Reference: the same rows read back, not opened.
        let started = Instant::now();
        let mut after = None;
        let mut rows = 0;
        loop {
            let page = state.store.events_page(&subject, after, 500).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.timestamp, last.source.clone(), last.dedupe));
            rows += page.len();
        }
        read_ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(rows == args.events, "{rows} rows read, {} sent", args.events);

        // Erasure: the legal-hold pass first (not part of "unreadable"), then the shred.
        let started = Instant::now();
        let held_through = tactful_app::requests::hold(&state, &subject)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the person vanished"))?;
        hold_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let plan = ShredPlan {
            request: format!("req_bench_erase_{run}"),
            held_through,
            suppress: false,
            deliveries: Vec::new(),
            audit: Vec::new(),
        };
        let started = Instant::now();
        let outcome = state.store.shred(&subject, plan, tactful_app::now_millis()).await?;
        shred_ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            matches!(outcome, tactful_store::ShredOutcome::Shredded { .. }),
            "the shred did not happen: {outcome:?}"
        );
        anyhow::ensure!(
            state.store.subject_summary(&subject).await?.is_none(),
            "the person is still readable"
        );
        // Reference: one small durable write through the same store (an audit entry).
        let started = Instant::now();
        state
            .store
            .audit_append(
                vec![tactful_domain::audit::AuditEvent::KeyRevoked { key: "bench".into() }],
                tactful_app::now_millis(),
            )
            .await?;
        commit_ms.push(started.elapsed().as_secs_f64() * 1e3);
        state.store.purge_erased(u32::MAX).await?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let row = |name: &str, value: f64| println!("  {name:<56}{value:>10.2} ms");
    let (shred, commit, hold) = (median(shred_ms), median(commit_ms), median(hold_ms));
    let (export, html, read) = (median(export_ms), median(html_ms), median(read_ms));
    println!();
    println!("Erasure");
    row("shred: keys destroyed, identifiers and profile gone", shred);
    row("reference: one durable write through the store", commit);
    row("(before it) legal-hold pass over every event", hold);
    println!("  target: unreadable in under 10 ms, whatever the number of events");
    println!();
    println!("Access and export");
    row("JSON package, streamed to the end", export);
    row("HTML page, streamed to the end", html);
    row("reference: the same rows read back, not opened", read);
    println!("  target: under 200 ms for 10,000 events");
    super::record(
        "erasure: unreadable",
        format!("{shred:.2} ms"),
        format!("{commit:.2} ms one write"),
        "< 10 ms",
    );
    super::record(
        &format!("access package, {} events", args.events),
        format!("{export:.1} ms"),
        format!("{read:.1} ms reading"),
        "< 200 ms per 10k",
    );
    Ok(())
}
