//! `tactful bench insights`: a grouped count over millions of events, exact (k-thresholds) and with
//! differential privacy, beside merely reading the same window's rows in the same run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use tactful_app::insights::{Asker, Query};
use tactful_app::{App, Config};
use tactful_domain::catalog::Catalog;
use tactful_domain::segment::format_time;
use tactful_store::Scan;

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
    /// Keep the database and its master key in this directory, and reuse them when the bench runs
    /// again (sending nothing when the store already holds the events). A temporary directory,
    /// removed afterwards, by default.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Measure on this database (postgres://…) instead of SQLite in the directory.
    #[arg(long)]
    pub database: Option<String>,
}

const CATEGORIES: [&str; 8] = ["kitchen", "garden", "home", "bath", "outdoor", "pantry", "kids", "wellness"];
const EVENTS: [&str; 3] = ["Product Viewed", "Product Added", "Order Completed"];
const DAYS: u64 = 20;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn insights(args: InsightsArgs) -> anyhow::Result<()> {
    let temporary = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temporary.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    // The example catalog, with EU shoppers' consent to analytics counting (the example keeps
    // them out of analytics altogether), plus two datasets of the bench's own: exact (k-thresholds
    // only), and private with a budget large enough for every run.
    let text = format!(
        "{}\n[analytics.datasets.exact]\ndimensions = [\"event\", \"day\", \"lifecycle\", \"properties.category\"]\n\
         [analytics.datasets.private]\nepsilon = 1000.0\nrows_per_person = 5\ndimensions = [\"event\", \"day\"]\n",
        Catalog::example_text()
            .replace("no_personal_data_in_analytics = true", "no_personal_data_in_analytics = false")
    );
    let catalog = Catalog::parse(&text).map_err(|errors| anyhow::anyhow!(errors.render("bench")))?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        database: args
            .database
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", dir.join("tactful.db").display())),
        master_key_file: dir.join("master.key"),
        max_inflight: 4096,
        // A benchmark measures how long an answer takes, so it lets every one finish (the default
        // of 10 s would stop the slowest, which open every record of 5,000,000 events).
        work_deadline_ms: 3_600_000,
        ..Config::default()
    };
    let state = Arc::new(App::open(&config, catalog).await?);
    let listener = tactful_server::bind(&config).await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(tactful_server::serve(
        listener,
        tactful_server::AppState::new(state.clone(), &config),
        std::future::pending(),
    ));
    let client = Client::new(base);

    let now = tactful_app::now_millis();
    let stored = state.store.stats().await?.events;
    if stored >= args.events {
        eprintln!("reusing the {stored} events stored in {}", dir.display());
    } else {
        eprintln!("sending {} events of {} people through ingestion…", args.events, args.people);
        let sent_at = Instant::now();
        let progress = crate::progress::spinner("sending", "");
        send(&client, &args, now - (DAYS as i64) * 86_400_000).await?;
        progress.finish_and_clear();
        eprintln!("  stored in {:.0} s", sent_at.elapsed().as_secs_f64());
    }

    // A window that holds every event sent, also when they were sent days ago.
    let (from, to) = (now - 40 * 86_400_000, tactful_app::now_millis());
    let query = |dataset: &str, group_by: &[&str], epsilon: Option<f64>| Query {
        dataset: dataset.into(),
        metric: "events".into(),
        property: None,
        group_by: group_by.iter().map(|d| (*d).to_owned()).collect(),
        from: format_time(from),
        to: format_time(to),
        epsilon,
    };
    let asker = || Asker { actor: "bench", role: "operator" };
    let run = |query: Query, runs: usize| {
        let state = state.clone();
        async move {
            let mut seconds = Vec::new();
            let mut groups = 0;
            for _ in 0..runs {
                let started = Instant::now();
                let answer = tactful_app::insights::run(&state, asker(), &query)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                seconds.push(started.elapsed().as_secs_f64());
                groups = answer["groups"].as_array().map_or(0, Vec::len);
            }
            anyhow::Ok((median(seconds), groups))
        }
    };

    // Reference: reading the window's envelopes and nothing else.
    let mut reference = Vec::new();
    let mut rows = 0u64;
    for _ in 0..args.runs {
        let started = Instant::now();
        rows = 0;
        let mut after = None;
        loop {
            let page = state.store.events_in_window(from, to, after, 50_000, Scan::Envelopes).await?;
            rows += page.events.len() as u64;
            after = page.next;
            if after.is_none() {
                break;
            }
        }
        reference.push(started.elapsed().as_secs_f64());
    }
    let progress = crate::progress::spinner("counting", "");
    let exact = run(query("exact", &["event", "day"], None), args.runs).await?;
    let noisy = run(query("private", &["event", "day"], Some(0.5)), args.runs).await?;
    let stages = run(query("exact", &["lifecycle"], None), args.runs).await?;
    // A property opens every event's sealed record: measured once, it takes a while.
    let category = run(query("exact", &["properties.category"], None), 1).await?;
    progress.finish_and_clear();

    println!();
    println!(
        "Grouped counts over {rows} events of {} people in a {DAYS}-day window, {} (median of {}):",
        args.people,
        state.store.backend(),
        args.runs
    );
    println!("| figure | seconds | groups |");
    println!("|---|---:|---:|");
    println!("| reference: read the window's envelopes only | {:.2} | |", median(reference));
    println!(
        "| by event and day, exact (k-thresholds, every person's consent checked) | {:.2} | {} |",
        exact.0, exact.1
    );
    println!(
        "| by event and day, differentially private, ε = 0.5 (budget spent, noisy threshold) | {:.2} | {} |",
        noisy.0, noisy.1
    );
    println!(
        "| by lifecycle stage, exact (each person's first and last event) | {:.2} | {} |",
        stages.0, stages.1
    );
    println!(
        "| by a property (properties.category), exact: every record opened (one run) | {:.2} | {} |",
        category.0, category.1
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
