//! `tactful bench serving`: recommendations over HTTP at a fixed request rate, end to end (API key,
//! the person's consent, the model, the audit entry committed before the answer), beside a trivial
//! endpoint driven the same way in the same run, and the same recommendations in-process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tactful_app::App;
use tactful_domain::audit::{AuditEvent, ReadDecision};

use crate::client::Client;
use crate::demo;

#[derive(Debug, clap::Args)]
pub struct ServingArgs {
    /// Generated shop customers to learn from (and to ask for).
    #[arg(long, default_value_t = 3_000)]
    pub customers: u64,
    /// Requests per second, sent on a fixed schedule whatever the answers' latency (open loop).
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Seconds each measurement lasts.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

/// Latencies in milliseconds, sorted.
struct Latencies(Vec<f64>);

impl Latencies {
    fn at(&self, p: f64) -> f64 {
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(index).copied().unwrap_or(f64::NAN)
    }
}

/// GETs `paths` (round robin) at `rate` per second for `seconds`; fails on any non-2xx.
async fn drive(
    client: &Client,
    key: &str,
    paths: &[String],
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Latencies> {
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, key, path) = (client.clone(), key.to_owned(), paths[i as usize % paths.len()].clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (status, body) = client.get_with_key(&path, &key).await?;
            anyhow::ensure!(status.is_success(), "{path}: {status} {}", String::from_utf8_lossy(&body));
            Ok(sent.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await??);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Latencies(latencies))
}

pub async fn serving(args: ServingArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (base, state) = super::ingest::tactful_server(
        format!("sqlite:{}", dir.path().join("tactful.db").display()),
        dir.path().join("master.key"),
    )
    .await?;
    let engine = state
        .personalization
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the example catalog declares personalization"))?;
    let products = demo::shop::products();
    state.store.put_items(demo::shop::items(&products), tactful_app::now_millis()).await?;
    let client = Client::new(base.clone());
    eprintln!("sending {} generated customers through ingestion…", args.customers);
    demo::generate(&client, args.customers, 7).await?;
    while tactful_app::personalize::update_dirty(&state, &engine).await? > 0 {}
    engine.release_whole(state.store.as_ref(), tactful_app::now_millis()).await?;
    let info = engine.info_now();
    let (_, key) = tactful_app::keys::create_api_key(&state, "bench", "personalization", None).await?;

    let people: Vec<String> = (0..args.customers).map(|index| format!("cust-7-{index}")).collect();
    let known = known_people(&state, &people).await?;
    anyhow::ensure!(!known.is_empty(), "no generated customer is known");
    let paths: Vec<String> = known
        .iter()
        .map(|user| {
            format!("/v1/recommendations?purpose=personalize.content&subject=user_id:{user}&placement=home")
        })
        .collect();

    eprintln!(
        "{} people lend the model ({} known customers asked for); measuring…",
        info.people,
        known.len()
    );
    let progress = crate::progress::spinner("measuring", "");
    let reference = drive(&client, key.as_str(), &["/healthz".to_owned()], args.rate, args.seconds).await?;
    let http = drive(&client, key.as_str(), &paths, args.rate, args.seconds).await?;
    // What the personalized answer adds: asked for nobody in particular, a recommendation reads no
    // person and writes no access-log entry; the access-log entry alone and the person's state
    // alone are timed in-process at the same rate.
    let anonymous = ["/v1/recommendations?purpose=personalize.content&placement=home".to_owned()];
    let nobody = drive(&client, key.as_str(), &anonymous, args.rate, args.seconds).await?;
    let commits = drive_appends(&state, args.rate, args.seconds).await?;
    let reads = drive_person_reads(&state, &known, args.rate, args.seconds).await?;

    // The same asks in-process: the person's entry and the ranking, without HTTP, store or audit.
    let mut in_process = Vec::with_capacity(20_000);
    for i in 0..20_000 {
        let subject =
            state.store.subject_by_identifier(state.vault.blind("user_id", &known[i % known.len()])).await?;
        let person = subject.and_then(|s| engine.person(&s));
        let started = Instant::now();
        let picked = engine.recommend(person.as_ref(), None, Default::default(), 8, 0);
        in_process.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(picked);
    }
    in_process.sort_by(f64::total_cmp);
    let in_process = Latencies(in_process);
    progress.finish_and_clear();

    println!();
    println!(
        "Recommendations for {} generated customers ({} lend the model, {} items), {} requests/s for {} s:",
        args.customers, info.people, info.items, args.rate, args.seconds
    );
    println!("| figure | p50 | p99 | target |");
    println!("|---|---:|---:|---:|");
    println!(
        "| reference: GET /healthz over HTTP | {:.2} ms | {:.2} ms | |",
        reference.at(0.5),
        reference.at(0.99)
    );
    let mark = |p99: f64, target: f64| if p99 < target { "✓" } else { "✗" };
    println!(
        "| GET /v1/recommendations over HTTP (key, consent, model, audit entry committed) | {:.2} ms | {:.2} ms | < 2 ms {} |",
        http.at(0.5),
        http.at(0.99),
        mark(http.at(0.99), 2.0)
    );
    println!(
        "| GET /v1/recommendations for nobody in particular (key, model; no person read, no audit entry) | {:.2} ms | {:.2} ms | |",
        nobody.at(0.5),
        nobody.at(0.99)
    );
    println!(
        "| the access-log entry alone, committed in-process at the same rate | {:.2} ms | {:.2} ms | |",
        commits.at(0.5),
        commits.at(0.99)
    );
    println!(
        "| the person's state alone (identifier, record, consent ledger), read in-process at the same rate | {:.2} ms | {:.2} ms | |",
        reads.at(0.5),
        reads.at(0.99)
    );
    println!(
        "| the same ranking in-process | {:.3} ms | {:.3} ms | < 1 ms {} |",
        in_process.at(0.5),
        in_process.at(0.99),
        mark(in_process.at(0.99), 1.0)
    );
    super::record(
        &format!("recommendations over HTTP at {}/s, p99", args.rate),
        format!("{:.2} ms", http.at(0.99)),
        format!("{:.2} ms /healthz", reference.at(0.99)),
        "< 2 ms",
    );
    Ok(())
}

/// Runs `work(i)` in-process at `rate` per second for `seconds` (open loop), each timed until it
/// is done.
async fn drive_in_process<F, W>(rate: u64, seconds: u64, work: F) -> anyhow::Result<Latencies>
where
    F: Fn(u64) -> W,
    W: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until((start + period.mul_f64(i as f64)).into()).await;
        let done = work(i);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            done.await?;
            anyhow::Ok(sent.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await??);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Latencies(latencies))
}

/// Appends one access-log entry like a recommendation's at `rate` per second for `seconds`, each
/// timed until it is durable.
async fn drive_appends(state: &Arc<App>, rate: u64, seconds: u64) -> anyhow::Result<Latencies> {
    drive_in_process(rate, seconds, |i| {
        let store = state.store.clone();
        let event = AuditEvent::Read {
            actor: "key_bench".into(),
            role: "personalization".into(),
            purpose: "personalize.content".into(),
            subject: state.vault.subject_pseudonym(&format!("sub_bench_{i}")),
            returned: vec!["user.behavior.purchase_history".into()],
            withheld: Vec::new(),
            decision: ReadDecision::Permitted,
        };
        async move {
            store.audit_append(vec![event], tactful_app::now_millis()).await?;
            Ok(())
        }
    })
    .await
}

/// Reads a known person's state (identifier lookup, record and consent ledger) the way a
/// recommendation does, at `rate` per second for `seconds`.
async fn drive_person_reads(
    state: &Arc<App>,
    known: &[String],
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Latencies> {
    drive_in_process(rate, seconds, |i| {
        let (state, reference) = (state.clone(), format!("user_id:{}", known[i as usize % known.len()]));
        async move {
            tactful_app::subjects::state_of(&state, &reference).await?;
            Ok(())
        }
    })
    .await
}

/// The generated customers the store knows (some never registered).
async fn known_people(state: &Arc<App>, people: &[String]) -> anyhow::Result<Vec<String>> {
    let mut known = Vec::new();
    for user in people {
        if state.store.subject_by_identifier(state.vault.blind("user_id", user)).await?.is_some() {
            known.push(user.clone());
        }
    }
    Ok(known)
}
