//! `tactful bench insights`: a grouped count over millions of events, exact (k-thresholds) and with
//! differential privacy, beside merely reading the same window's rows in the same run.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tactful_domain::segment::format_time;
use tactful_server::insights::{Asker, Query};
use tactful_server::{AppState, Config};

use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct InsightsArgs {
    /// Events stored before measuring (sent through ingestion, as SDKs send them).
    #[arg(long, default_value_t = 5_000_000)]
    pub events: u64,
    /// People they belong to.
    #[arg(long, default_value_t = 100_000)]
    pub people: u64,
    /// Times each query runs; the median is printed.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

const CATEGORIES: [&str; 8] = ["kitchen", "garden", "home", "bath", "outdoor", "pantry", "kids", "wellness"];
const EVENTS: [&str; 3] = ["Product Viewed", "Product Added", "Order Completed"];
const DAYS: u64 = 20;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

pub async fn insights(args: InsightsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The example catalog, plus an exact dataset (k-thresholds only) to compare with, and EU
    // shoppers' consent to analytics counting (the example keeps them out of analytics altogether).
    let text = format!(
        "{}\n[analytics.datasets.exact]\ndimensions = [\"event\", \"day\", \"properties.category\"]\n",
        Catalog::example_text()
            .replace("no_personal_data_in_analytics = true", "no_personal_data_in_analytics = false")
    );
    let catalog = Catalog::parse(&text).map_err(|errors| anyhow::anyhow!(errors.render("bench")))?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        database: format!("sqlite:{}", dir.path().join("tactful.db").display()),
        master_key_file: dir.path().join("master.key"),
        max_inflight: 4096,
        ..Config::default()
    };
    let state = Arc::new(AppState::open(&config, catalog).await?);
    let listener = tactful_server::bind(&config).await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(tactful_server::serve(listener, state.clone(), std::future::pending()));
    let client = Client::new(base);

    let now = tactful_server::now_millis();
    let start = now - (DAYS as i64) * 86_400_000;
    eprintln!("sending {} events of {} people through ingestion…", args.events, args.people);
    let sent_at = Instant::now();
    send(&client, &args, start).await?;
    eprintln!("  stored in {:.0} s", sent_at.elapsed().as_secs_f64());

    let (from, to) = (format_time(start - 1), format_time(tactful_server::now_millis()));
    let query = |dataset: &str, epsilon: Option<f64>| Query {
        dataset: dataset.into(),
        metric: "events".into(),
        property: None,
        group_by: vec!["event".into(), "day".into()],
        from: from.clone(),
        to: to.clone(),
        epsilon,
    };
    let asker = || Asker { actor: "bench", role: "operator" };

    // Reference: reading the window's rows and nothing else.
    let mut reference = Vec::new();
    let mut rows = 0u64;
    for _ in 0..args.runs {
        let started = Instant::now();
        rows = 0;
        let mut after = None;
        loop {
            let page =
                state.store.events_in_window(start - 1, tactful_server::now_millis(), after, 10_000).await?;
            let Some((_, last)) = page.last() else { break };
            after = Some((last.timestamp, last.source.clone(), last.dedupe));
            rows += page.len() as u64;
        }
        reference.push(started.elapsed().as_secs_f64());
    }
    let mut exact = Vec::new();
    let mut noisy = Vec::new();
    let mut groups = (0, 0);
    for _ in 0..args.runs {
        let started = Instant::now();
        let answer = tactful_server::insights::run(&state, asker(), &query("exact", None))
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        exact.push(started.elapsed().as_secs_f64());
        groups.0 = answer["groups"].as_array().map_or(0, Vec::len);
        let started = Instant::now();
        let answer = tactful_server::insights::run(&state, asker(), &query("shop", Some(0.5)))
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        noisy.push(started.elapsed().as_secs_f64());
        groups.1 = answer["groups"].as_array().map_or(0, Vec::len);
    }

    println!();
    println!(
        "Grouped count (by event and day) over {rows} events of {} people in a {DAYS}-day window, median of {}:",
        args.people, args.runs
    );
    println!("| figure | seconds | groups |");
    println!("|---|---:|---:|");
    println!("| reference: read the window's rows only | {:.2} | |", median(reference));
    println!(
        "| exact, k-thresholds (consent of every person checked) | {:.2} | {} |",
        median(exact),
        groups.0
    );
    println!(
        "| differentially private, ε = 0.5 (budget spent, noisy threshold) | {:.2} | {} |",
        median(noisy),
        groups.1
    );
    Ok(())
}

/// Sends the events with four concurrent senders, 500 per batch.
async fn send(client: &Client, args: &InsightsArgs, start: i64) -> anyhow::Result<()> {
    let senders = 4u64;
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let (client, events, people) = (client.clone(), args.events, args.people);
        tasks.push(tokio::spawn(async move {
            let mut batch: Vec<Value> = Vec::with_capacity(500);
            let mut index = sender;
            while index < events {
                let person = index % people;
                let at = start + ((index * 7_919) % (DAYS * 86_400_000)) as i64;
                batch.push(json!({
                    "type": "track",
                    "event": EVENTS[(index % 3) as usize],
                    "userId": format!("shopper-{person}"),
                    "messageId": format!("bench-{index}"),
                    "timestamp": format_time(at),
                    "properties": {"category": CATEGORIES[(person % 8) as usize]},
                    "context": {"consent": {"categoryPreferences": {"Analytics": true}}}
                }));
                if batch.len() == 500 {
                    post(&client, std::mem::take(&mut batch)).await?;
                }
                index += senders;
            }
            if !batch.is_empty() {
                post(&client, batch).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn post(client: &Client, batch: Vec<Value>) -> anyhow::Result<()> {
    let body = Bytes::from(json!({ "batch": batch }).to_string());
    let (status, answer) = client.post("/v1/batch", "wk_backend_fernhill_demo", body).await?;
    anyhow::ensure!(status.is_success(), "ingestion refused a batch: {}", String::from_utf8_lossy(&answer));
    Ok(())
}
