//! `tactful bench sign-in`: the time `POST /me/sign-in` takes for a customer's address and for a
//! stranger's, alternated on a real server (limits set high, the worker sending codes), so the
//! two medians can be compared: the page must not tell who is a customer by how long it takes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tactful_app::{App, Config};
use tactful_domain::catalog::Catalog;

use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct SignInArgs {
    /// Customers whose addresses are asked for (round robin).
    #[arg(long, default_value_t = 200)]
    pub customers: u64,
    /// Requests of each kind (known and unknown), alternated.
    #[arg(long, default_value_t = 3_000)]
    pub requests: u64,
    /// Requests of each kind sent first and not counted.
    #[arg(long, default_value_t = 300)]
    pub warmup: u64,
}

pub async fn sign_in(args: SignInArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let high = "1000000/1s".parse().map_err(|error: String| anyhow::anyhow!(error))?;
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        database: format!("sqlite:{}", dir.path().join("tactful.db").display()),
        master_key_file: dir.path().join("master.key"),
        notifier: format!("file:{}", dir.path().join("notifications").display()),
        limit_sign_in_per_address: high,
        limit_sign_in_per_client: high,
        ..Config::default()
    };
    let catalog = Catalog::parse(Catalog::example_text())
        .map_err(|errors| anyhow::anyhow!(errors.render("example")))?;
    let state = std::sync::Arc::new(App::open(&config, catalog).await?);
    tactful_app::jobs::start(&state, Duration::from_secs(60)).await?;
    let listener = tactful_server::bind(&config).await?;
    let client = Client::new(format!("http://{}", listener.local_addr()?));
    tokio::spawn(tactful_server::serve(
        listener,
        tactful_server::AppState::new(state.clone(), &config),
        std::future::pending(),
    ));

    let customers = args.customers.max(1);
    let batch: Vec<_> = (0..customers)
        .map(|index| {
            json!({"type": "identify", "userId": format!("bench-{index}"), "messageId": format!("bench-{index}"),
                   "traits": {"email": format!("customer{index}@fernhill.example")}})
        })
        .collect();
    let (status, body) = client
        .post("/v1/batch", "wk_backend_fernhill_demo", Bytes::from(json!({"batch": batch}).to_string()))
        .await?;
    anyhow::ensure!(
        status.is_success(),
        "the customers were not accepted: {}",
        String::from_utf8_lossy(&body)
    );
    let known =
        state.store.subject_by_identifier(state.vault.blind("email", "customer0@fernhill.example")).await?;
    anyhow::ensure!(known.is_some(), "the customers' addresses are not known");

    let ask = |address: String| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            let (status, body) = client.post_form("/me/sign-in", format!("address={address}")).await?;
            anyhow::ensure!(status.as_u16() == 303, "{status} {}", String::from_utf8_lossy(&body));
            Ok(started.elapsed().as_secs_f64() * 1000.0)
        }
    };
    let (mut customer, mut stranger) = (Vec::new(), Vec::new());
    let progress = crate::progress::bar(args.warmup + args.requests, "asking", "pairs");
    for index in 0..args.warmup + args.requests {
        let known = format!("customer{}%40fernhill.example", index % customers);
        let unknown = format!("nobody{}%40fernhill.example", index % customers);
        // Each goes first every other time, so neither gains from the other's warm caches.
        let (known, unknown) = if index % 2 == 0 {
            let known = ask(known).await?;
            (known, ask(unknown).await?)
        } else {
            let unknown = ask(unknown).await?;
            (ask(known).await?, unknown)
        };
        if index >= args.warmup {
            customer.push(known);
            stranger.push(unknown);
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let (known, unknown) = (median(&mut customer), median(&mut stranger));
    println!(
        "POST /me/sign-in, {} of each alternated after {} of each to warm up, embedded SQLite, {} cores:",
        args.requests,
        args.warmup,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!("| address | median |");
    println!("|---|---:|");
    println!("| a customer's | {known:.3} ms |");
    println!("| a stranger's | {unknown:.3} ms |");
    println!(
        "| difference | {:+.3} ms ({:+.1}%; target within ±10%) |",
        known - unknown,
        100.0 * (known - unknown) / unknown
    );
    super::record(
        "sign-in: customer vs stranger, median",
        format!("{known:.2} ms"),
        format!("{unknown:.2} ms stranger"),
        "within ±10%",
    );
    Ok(())
}

fn median(latencies: &mut [f64]) -> f64 {
    latencies.sort_by(f64::total_cmp);
    latencies.get(latencies.len() / 2).copied().unwrap_or(f64::NAN)
}
