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
use tactful_domain::segment::{Endpoint, format_time};
use tactful_store::{IngestEvent, IngestOutcome, Scan};

use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct InsightsArgs {
    /// Events stored before measuring (judged by ingestion as SDKs' events are, then written
    /// straight into the store; see --http).
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
    /// Send the events through `POST /v1/batch` (4 senders of 500), as SDKs do, instead of handing
    /// the same judged events to the store in large batches: slower (13 minutes for 5,000,000),
    /// the same rows stored.
    #[arg(long)]
    pub http: bool,
}

const CATEGORIES: [&str; 8] = ["kitchen", "garden", "home", "bath", "outdoor", "pantry", "kids", "wellness"];
const EVENTS: [&str; 3] = ["Product Viewed", "Product Added", "Order Completed"];
const DAYS: u64 = 20;
/// The write key the events are sent with (a server source of the example catalog).
const WRITE_KEY: &str = "wk_backend_fernhill_demo";
/// Events per request body, as the HTTP senders send them.
const PER_BODY: u64 = 500;
/// Events per store call when loading without HTTP: one transaction each.
const PER_INGEST: u64 = 10_000;

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
        let start = now - (DAYS as i64) * 86_400_000;
        let loaded_at = Instant::now();
        if args.http {
            eprintln!("sending {} events of {} people through ingestion…", args.events, args.people);
            let progress = crate::progress::spinner("sending", "");
            send(&client, &args, start).await?;
            progress.finish_and_clear();
        } else {
            eprintln!(
                "loading {} events of {} people: judged by ingestion, {PER_INGEST} per store call…",
                args.events, args.people
            );
            load(&state, &args, start).await?;
        }
        eprintln!("  stored in {:.0} s", loaded_at.elapsed().as_secs_f64());
        if args.database.is_none() {
            let checkpointed = Instant::now();
            let wal = checkpoint(&dir.join("tactful.db"))?;
            eprintln!(
                "  WAL of {:.0} MB checkpointed in {:.0} s",
                wal as f64 / 1e6,
                checkpointed.elapsed().as_secs_f64()
            );
        }
        println!("Loaded {} events in {:.0} s", args.events, loaded_at.elapsed().as_secs_f64());
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

/// Event number `index` of the bench, as an SDK would send it: person, name, time and category
/// follow from the number, so every run (and either load path) makes the same events.
fn event(index: u64, people: u64, start: i64) -> Value {
    let person = index % people;
    let at = start + ((index * 7_919) % (DAYS * 86_400_000)) as i64;
    json!({
        "type": "track",
        "event": EVENTS[(index % 3) as usize],
        "userId": format!("shopper-{person}"),
        "messageId": format!("bench-{index}"),
        "timestamp": format_time(at),
        "properties": {"category": CATEGORIES[(person % 8) as usize]},
        "context": {"consent": {"categoryPreferences": {"Analytics": true}}}
    })
}

/// Loads the events without HTTP: bodies of 500 judged by `tactful_app::ingest::prepare` (what
/// `POST /v1/batch` runs: validation, minimization, consent signals, blind indexes), handed to the
/// store's own ingestion 10,000 at a time (identity, consent ledger, sealing, indexes). Three
/// workers, so one judges while another's batch commits.
async fn load(state: &Arc<App>, args: &InsightsArgs, start: i64) -> anyhow::Result<()> {
    let workers = 3u64;
    let calls = args.events.div_ceil(PER_INGEST);
    let progress = crate::progress::bar(args.events, "loading", "events");
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (state, progress, events, people) = (state.clone(), progress.clone(), args.events, args.people);
        tasks.push(tokio::spawn(async move {
            let mut call = worker;
            while call < calls {
                let range = call * PER_INGEST..((call + 1) * PER_INGEST).min(events);
                let count = range.end - range.start;
                let judging = state.clone();
                let judged =
                    tokio::task::spawn_blocking(move || judge(&judging, range, people, start)).await??;
                let outcomes = ingest(&state, judged).await?;
                let refused = outcomes
                    .iter()
                    .filter(|o| !matches!(o, IngestOutcome::Stored { .. } | IngestOutcome::Duplicate))
                    .count();
                anyhow::ensure!(refused == 0, "the store refused {refused} of the bench's events");
                progress.inc(count);
                call += workers;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    progress.finish_and_clear();
    Ok(())
}

/// Stores judged events, trying again (up to 5 times, a second apart) when the database is busy
/// past its timeout: a call refused that way stored nothing, and what it did store would come back
/// as duplicates. A busy machine made one such refusal end a 5,000,000-event load.
async fn ingest(state: &App, judged: Vec<IngestEvent>) -> anyhow::Result<Vec<IngestOutcome>> {
    let mut tries = 0;
    loop {
        match state.store.ingest(judged.clone(), state.policy.clone()).await {
            Err(tactful_store::StoreError::Unavailable(reason)) if tries < 5 => {
                tries += 1;
                eprintln!("  the store is busy ({reason}); trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// The events of `range`, judged as request bodies of 500 are.
fn judge(
    state: &App,
    range: std::ops::Range<u64>,
    people: u64,
    start: i64,
) -> anyhow::Result<Vec<IngestEvent>> {
    let mut judged = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
    let mut first = range.start;
    while first < range.end {
        let last = (first + PER_BODY).min(range.end);
        let batch: Vec<Value> = (first..last).map(|index| event(index, people, start)).collect();
        let body = json!({ "batch": batch }).to_string();
        let signals = tactful_app::ingest::RequestSignals {
            write_key: Some(WRITE_KEY),
            gpc: false,
            received_at: tactful_app::now_millis(),
        };
        let prepared = tactful_app::ingest::prepare(
            &state.catalog,
            &state.vault,
            Endpoint::Batch,
            body.as_bytes(),
            &signals,
        )
        .map_err(|error| anyhow::anyhow!("ingestion refused a batch: {}", error.message))?;
        anyhow::ensure!(
            prepared.events.len() as u64 == last - first,
            "ingestion accepted {} of {} events",
            prepared.events.len(),
            last - first
        );
        judged.extend(prepared.events);
        first = last;
    }
    Ok(judged)
}

/// Checkpoints the WAL into the database and truncates it, as the store does every 30 s, so the
/// queries measured next read the database file alone; returns the WAL's size before.
fn checkpoint(database: &std::path::Path) -> anyhow::Result<u64> {
    let wal = std::fs::metadata(format!("{}-wal", database.display())).map_or(0, |m| m.len());
    let conn = rusqlite::Connection::open(database)?;
    conn.busy_timeout(std::time::Duration::from_secs(60))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(wal)
}

/// Sends the events with four concurrent senders, 500 per batch.
async fn send(client: &Client, args: &InsightsArgs, start: i64) -> anyhow::Result<()> {
    let senders = 4u64;
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let (client, events, people) = (client.clone(), args.events, args.people);
        tasks.push(tokio::spawn(async move {
            let mut batch: Vec<Value> = Vec::with_capacity(PER_BODY as usize);
            let mut index = sender;
            while index < events {
                batch.push(event(index, people, start));
                if batch.len() as u64 == PER_BODY {
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
    let (status, answer) = client.post("/v1/batch", WRITE_KEY, body).await?;
    anyhow::ensure!(status.is_success(), "ingestion refused a batch: {}", String::from_utf8_lossy(&answer));
    Ok(())
}
