//! `tactful bench ingest`: events per second and latency through `POST /v1/batch` over loopback, for
//! Tactful's full path (auth, catalog, minimization, identity, encryption, durable commit) and, in
//! the same run, for a do-nothing handler that only parses the same bodies — the ceiling the machine
//! allows — with the ratio between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use tactful_app::{App, Config};
use tactful_domain::catalog::Catalog;

use crate::client::Client;
use crate::demo::shop;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Seconds to measure each target.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent clients (each with its own keep-alive connection).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Skip the reference run (for profiling Tactful alone).
    #[arg(long)]
    pub skip_reference: bool,
    /// Send the customers' histories as they were generated, spread over the 90 days before now
    /// (an import of old events), instead of live traffic timestamped as it is sent.
    #[arg(long)]
    pub backfill: bool,
    /// Also measure PostgreSQL, with one and with two server instances, on a fresh database created
    /// (and dropped afterwards) on this server; the role needs CREATEDB.
    #[arg(long, env = "TACTFUL_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

/// Events prepared once as JSON text split around their messageId (and, for live traffic, their
/// timestamp), so requests are cheap to build and every event sent is new.
struct Templates {
    parts: Vec<Template>,
}

/// One event's text: `before` the messageId, then `after` it; a live event's `after` is split again
/// around its timestamp (`after`, timestamp, `rest`).
struct Template {
    before: String,
    after: String,
    rest: Option<String>,
}

const ID: &str = "@@ID@@";
const TIMESTAMP: &str = "\"@@TS@@\"";

impl Templates {
    /// Live traffic (`backfill` false) is what SDKs send: every event timestamped within a moment
    /// of being sent, so it lands at the end of the store's time-ordered indexes. A backfill keeps
    /// the generated histories' timestamps, up to 90 days old, which land anywhere in them.
    fn new(backfill: bool) -> Templates {
        let products = shop::products();
        let now = tactful_app::now_millis();
        let mut parts = Vec::new();
        for index in 0..1_000 {
            for (channel, mut event) in shop::customer(&products, 7, index, now).events {
                event["writeKey"] = json!(channel.write_key());
                event["messageId"] = json!("@@ID@@");
                if !backfill {
                    event["timestamp"] = json!("@@TS@@");
                }
                let text = event.to_string();
                let Some((before, after)) = text.split_once(ID) else { continue };
                let template = match after.split_once(TIMESTAMP) {
                    Some((after, rest)) => Template {
                        before: before.to_owned(),
                        after: after.to_owned(),
                        rest: Some(rest.to_owned()),
                    },
                    None => Template { before: before.to_owned(), after: after.to_owned(), rest: None },
                };
                parts.push(template);
            }
        }
        Templates { parts }
    }

    /// A batch body of `size` events starting at template `start`, with fresh messageIds; live
    /// events are timestamped now, a millisecond apart.
    fn body(&self, run: &str, sequence: u64, start: usize, size: usize) -> Bytes {
        let now = tactful_app::now_millis();
        let mut body = String::with_capacity(size * 700);
        body.push_str(r#"{"batch":["#);
        for offset in 0..size {
            let template = &self.parts[(start + offset) % self.parts.len()];
            if offset > 0 {
                body.push(',');
            }
            body.push_str(&template.before);
            body.push_str(&format!("{run}-{sequence}-{offset}"));
            body.push_str(&template.after);
            if let Some(rest) = &template.rest {
                let at = now - i64::try_from(size - offset).unwrap_or(0);
                body.push_str(&format!("\"{}\"", crate::demo::iso(at)));
                body.push_str(rest);
            }
        }
        body.push_str(&format!(r#"],"sentAt":"{}"}}"#, crate::demo::iso(now)));
        Bytes::from(body)
    }
}

/// What one target achieved.
pub struct Figures {
    pub events_per_second: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub acknowledged: u64,
}

/// Drives the servers at `bases` (clients spread over them) with `clients` concurrent senders for
/// `seconds`.
pub async fn drive(bases: &[String], args: &IngestArgs, run: &str) -> anyhow::Result<Figures> {
    let progress = crate::progress::spinner(&format!("driving {run}"), "");
    let templates = Arc::new(Templates::new(args.backfill));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..args.clients {
        let client = Client::new(bases[client_index % bases.len()].clone());
        let (templates, stop, acknowledged) = (templates.clone(), stop.clone(), acknowledged.clone());
        let (batch, run) = (args.batch, format!("{run}-{client_index}"));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut sequence = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let start = usize::try_from(sequence).unwrap_or(0) * batch + client_index * 7_919;
                let body = templates.body(&run, sequence, start, batch);
                let sent = Instant::now();
                let (status, answer) = client.post("/v1/batch", "wk_web_fernhill_demo", body).await?;
                anyhow::ensure!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&answer));
                latencies.push(sent.elapsed());
                acknowledged.fetch_add(batch as u64, Ordering::Relaxed);
                sequence += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let figures = run_for(args.seconds, &stop, tasks, started, &acknowledged).await?;
    progress.finish_and_clear();
    Ok(figures)
}

/// The reference: parse the body as JSON, answer 200. Nothing a server could do is cheaper.
pub async fn reference_server() -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route(
            "/v1/batch",
            post(|body: Bytes| async move {
                let parsed: Result<Value, _> = serde_json::from_slice(&body);
                axum::Json(json!({"success": parsed.is_ok()}))
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// A Tactful server on `database` with the example catalog and the master key in `key_file`.
pub async fn tactful_server(
    database: String,
    key_file: std::path::PathBuf,
) -> anyhow::Result<(String, Arc<App>)> {
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        database,
        master_key_file: key_file,
        max_inflight: 4096,
        ..Config::default()
    };
    let catalog = Catalog::parse(Catalog::example_text())
        .map_err(|errors| anyhow::anyhow!(errors.render("example")))?;
    let state = Arc::new(App::open(&config, catalog).await?);
    let listener = tactful_server::bind(&config).await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(tactful_server::serve(
        listener,
        tactful_server::AppState::new(state.clone(), &config),
        std::future::pending(),
    ));
    Ok((base, state))
}

/// Measures `instances` servers over `database`, and checks every acknowledged event is stored.
async fn measure(
    database: &str,
    instances: usize,
    dir: &std::path::Path,
    args: &IngestArgs,
    run: &str,
) -> anyhow::Result<Figures> {
    let mut bases = Vec::new();
    let mut states = Vec::new();
    for _ in 0..instances {
        let (base, state) = tactful_server(database.to_owned(), dir.join("master.key")).await?;
        bases.push(base);
        states.push(state);
    }
    let before = states[0].store.stats().await?.events;
    let figures = drive(&bases, args, run).await?;
    let stored = states[0].store.stats().await?.events - before;
    anyhow::ensure!(
        stored >= figures.acknowledged,
        "{} events acknowledged but only {stored} stored",
        figures.acknowledged
    );
    Ok(figures)
}

/// The store's own ceiling: the same events, already parsed and judged in memory, written straight
/// through [`tactful_store::IngestStore::ingest`] by `args.clients` concurrent callers of `args.batch`
/// events each — no HTTP, no JSON, no minimization. What stands between this and the HTTP figure is
/// the request path; what stands between this and the reference is the store.
async fn store_ceiling(dir: &std::path::Path, args: &IngestArgs) -> anyhow::Result<Figures> {
    let database = format!("sqlite:{}", dir.join("ceiling.db").display());
    let (_, app) = tactful_server(database, dir.join("master.key")).await?;
    let templates = Templates::new(args.backfill);
    let signals = tactful_app::ingest::RequestSignals {
        write_key: None,
        gpc: false,
        received_at: tactful_app::now_millis(),
    };
    let before = app.store.stats().await?.events;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..args.clients {
        // Ten batches per caller, judged once; each send gives them fresh messageIds.
        let mut pool = Vec::new();
        for sequence in 0..10u64 {
            let start = usize::try_from(sequence).unwrap_or(0) * args.batch + client_index * 7_919;
            let body = templates.body("pool", sequence, start, args.batch);
            let prepared = tactful_app::ingest::prepare(
                &app.catalog,
                &app.vault,
                tactful_domain::segment::Endpoint::Batch,
                &body,
                &signals,
            )
            .map_err(|error| anyhow::anyhow!("{error:?}"))?;
            pool.push(prepared.events);
        }
        let (app, stop, acknowledged) = (app.clone(), stop.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut sequence = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut events = pool[usize::try_from(sequence % 10).unwrap_or(0)].clone();
                for (offset, event) in events.iter_mut().enumerate() {
                    let id = format!("ceiling-{client_index}-{sequence}-{offset}");
                    event.dedupe = app.vault.dedupe_key(&event.source, &id);
                }
                let count = events.len() as u64;
                let sent = Instant::now();
                app.store.ingest(events, app.policy.clone()).await?;
                latencies.push(sent.elapsed());
                acknowledged.fetch_add(count, Ordering::Relaxed);
                sequence += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let figures = run_for(args.seconds, &stop, tasks, started, &acknowledged).await?;
    let stored = app.store.stats().await?.events - before;
    anyhow::ensure!(
        stored >= figures.acknowledged,
        "{} events acknowledged but only {stored} stored",
        figures.acknowledged
    );
    Ok(figures)
}

/// Callers each answering the latencies they saw, until `stop` is set.
type Callers = Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>;

/// Lets `tasks` run for `seconds`, stops them, and sums up what they saw since `started`.
async fn run_for(
    seconds: u64,
    stop: &AtomicBool,
    tasks: Callers,
    started: Instant,
    acknowledged: &AtomicU64,
) -> anyhow::Result<Figures> {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(figures(started.elapsed().as_secs_f64(), latencies, acknowledged.load(Ordering::Relaxed)))
}

/// Throughput and latency percentiles from what the callers saw.
fn figures(elapsed: f64, mut latencies: Vec<Duration>, acknowledged: u64) -> Figures {
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Figures {
        events_per_second: acknowledged as f64 / elapsed,
        requests_per_second: latencies.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        acknowledged,
    }
}

/// A fresh database on the PostgreSQL server of `url`, dropped when the guard goes.
struct ScratchDatabase {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(admin: &str) -> anyhow::Result<ScratchDatabase> {
        use sqlx::Connection as _;
        let name = format!("tactful_bench_{}", &tactful_vault::new_subject_id()[4..14]);
        let mut conn =
            sqlx::PgConnection::connect(admin).await.context("connecting to the benchmark's PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .context("creating a scratch database (the role needs CREATEDB)")?;
        let (base, query) = admin.split_once('?').map_or((admin, None), |(base, query)| (base, Some(query)));
        let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
        let url = match query {
            Some(query) => format!("{prefix}/{name}?{query}"),
            None => format!("{prefix}/{name}"),
        };
        Ok(ScratchDatabase { admin: admin.to_owned(), name, url })
    }

    async fn drop_database(self) {
        use sqlx::Connection as _;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await;
        }
    }
}

fn resident_megabytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes / 1024.0)
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    println!(
        "Ingestion benchmark: POST /v1/batch, {}, {} events per request, {} concurrent clients, {} s per target, loopback, {} cores",
        if args.backfill {
            "a backfill (histories up to 90 days old)"
        } else {
            "live traffic (timestamped as sent)"
        },
        args.batch,
        args.clients,
        args.seconds,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    super::print_fsync_probe();
    let reference = if args.skip_reference {
        None
    } else {
        let reference_base = reference_server().await?;
        Some(drive(&[reference_base], &args, "ref").await.context("driving the reference server")?)
    };

    let dir = tempfile::tempdir()?;
    let ceiling = if args.skip_reference {
        None
    } else {
        Some(store_ceiling(dir.path(), &args).await.context("writing straight into the store")?)
    };
    let sqlite_url = format!("sqlite:{}", dir.path().join("bench.db").display());
    let memory_before = resident_megabytes();
    let sqlite =
        measure(&sqlite_url, 1, dir.path(), &args, "sqlite").await.context("driving Tactful on SQLite")?;
    let memory_after = resident_megabytes();

    let mut postgres = Vec::new();
    if let Some(admin) = &args.postgres {
        for instances in [1, 2] {
            let scratch = ScratchDatabase::create(admin).await?;
            let measured =
                measure(&scratch.url, instances, dir.path(), &args, &format!("pg{instances}")).await;
            scratch.drop_database().await;
            postgres.push((instances, measured.context("driving Tactful on PostgreSQL")?));
        }
    }

    println!();
    println!("{:<40}{:>12}{:>10}{:>10}{:>10}", "", "events/s", "req/s", "p50 ms", "p99 ms");
    let row = |name: &str, figures: &Figures| {
        println!(
            "{:<40}{:>12.0}{:>10.0}{:>10.1}{:>10.1}",
            name, figures.events_per_second, figures.requests_per_second, figures.p50_ms, figures.p99_ms
        );
    };
    if let Some(reference) = &reference {
        row("reference (parse JSON, answer 200)", reference);
    }
    if let Some(ceiling) = &ceiling {
        row("store alone (judged events, no HTTP)", ceiling);
    }
    row("tactful, embedded SQLite", &sqlite);
    for (instances, figures) in &postgres {
        let name =
            format!("tactful, PostgreSQL, {instances} instance{}", if *instances == 1 { "" } else { "s" });
        row(&name, figures);
    }
    if let Some(reference) = &reference {
        println!(
            "{:<40}{:>12.2}",
            "ratio tactful (SQLite) / reference",
            sqlite.events_per_second / reference.events_per_second
        );
    }
    if let Some(ceiling) = &ceiling {
        println!(
            "{:<40}{:>12.2}",
            "ratio tactful (SQLite) / store alone",
            sqlite.events_per_second / ceiling.events_per_second
        );
    }
    println!();
    println!(
        "Durability: every acknowledged event was found in the store ({} on SQLite{}).",
        sqlite.acknowledged,
        postgres
            .iter()
            .map(|(instances, figures)| format!(", {} on PostgreSQL x{instances}", figures.acknowledged))
            .collect::<String>()
    );
    super::record(
        "ingestion, SQLite, events/s",
        format!("{:.0}", sqlite.events_per_second),
        reference.as_ref().map_or_else(String::new, |reference| {
            format!("{:.2} of parse-only", sqlite.events_per_second / reference.events_per_second)
        }),
        "≥ 100k (≥ 0.25)",
    );
    for (instances, figures) in &postgres {
        super::record(
            &format!("ingestion, PostgreSQL ×{instances}, events/s"),
            format!("{:.0}", figures.events_per_second),
            String::new(),
            if *instances == 1 { "≥ 50k" } else { "" },
        );
    }
    if let (Some(before), Some(after)) = (memory_before, memory_after) {
        println!(
            "Memory (whole process, resident): {before:.0} MB before the SQLite run, {after:.0} MB after."
        );
    }
    if args.postgres.is_none() {
        println!(
            "PostgreSQL: not measured (pass --postgres postgres://… or set TACTFUL_BENCH_POSTGRES_URL)."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Templates;

    fn timestamps(body: &[u8]) -> Vec<i64> {
        let value: serde_json::Value = serde_json::from_slice(body).expect("a body is JSON");
        value["batch"]
            .as_array()
            .expect("a batch")
            .iter()
            .map(|event| {
                let text = event["timestamp"].as_str().expect("every event is timestamped");
                tactful_domain::segment::parse_time(text).expect("an ISO 8601 time")
            })
            .collect()
    }

    #[test]
    fn live_traffic_is_timestamped_as_sent_and_a_backfill_keeps_its_history() {
        let now = tactful_app::now_millis();
        let live = timestamps(&Templates::new(false).body("t", 0, 0, 50));
        assert_eq!(live.len(), 50);
        assert!(live.iter().all(|&at| (now - 1_000..=now + 60_000).contains(&at)), "{live:?}");
        let backfill = timestamps(&Templates::new(true).body("t", 0, 0, 50));
        assert!(backfill.iter().any(|&at| at < now - 86_400_000), "{backfill:?}");
    }
}
