//! `tactful demo`: the whole product on the embedded store with the example catalog, filled with a
//! generated shop sent through the real ingestion path (HTTP, as SDKs send), so a newcomer can look
//! around at once.

pub mod forwarding;
pub mod shop;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::{Value, json};
use tactful_app::{App, Config};
use tactful_domain::catalog::Catalog;

use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps everything it writes: its database, master key and notifications.
    #[arg(long, default_value = "tactful-demo")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// How many customers to generate.
    #[arg(long, default_value_t = 2_000)]
    pub customers: u64,
    /// Seed of the generated shop (the same seed generates the same shop).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// A catalog to use instead of the shipped example (it must declare the example's sources).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// A database to use instead of SQLite in the data directory, e.g. postgres://…
    #[arg(long, env = "TACTFUL_DATABASE")]
    pub database: Option<String>,
    /// A PostgreSQL database for the example's warehouse destination (postgres://…); by default the
    /// demo's own database when that is PostgreSQL, else no warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
}

/// RFC 3339 for Unix milliseconds.
pub fn iso(millis: i64) -> String {
    tactful_domain::segment::format_time(millis)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // The example's email tool and analytics pipeline, on loopback; its warehouse when PostgreSQL is at hand.
    let receivers = forwarding::Receivers::start().await?;
    let warehouse =
        args.warehouse.clone().or_else(|| args.database.clone().filter(|url| url.starts_with("postgres")));
    let catalog = match &args.catalog {
        Some(path) => tactful_app::load_catalog(path)?,
        None => {
            Catalog::parse(&forwarding::prepare(Catalog::example_text(), &receivers, warehouse.as_deref()))
                .map_err(|errors| anyhow::anyhow!(errors.render("example")))?
        }
    };
    let config = Config {
        listen: args.listen,
        database: args
            .database
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", args.data_dir.join("tactful.db").display())),
        catalog: args.catalog.clone().unwrap_or_else(|| "examples/tactful.toml".into()),
        master_key_file: args.data_dir.join("master.key"),
        // Everything the demo writes stays in its data directory.
        notifier: format!("file:{}", args.data_dir.join("notifications").display()),
        ..Config::default()
    };
    let listener = tactful_server::bind(&config)
        .await
        .context("is another Tactful running? `tactful demo --listen 127.0.0.1:0` picks a free port")?;
    let address = listener.local_addr()?;
    let base = format!("http://{address}");
    let config = Config { public_url: Some(base.clone()), ..config };
    let state = Arc::new(App::open(&config, catalog).await?);
    tactful_app::jobs::start(&state, std::time::Duration::from_secs(config.audit_checkpoint_seconds)).await?;
    let server = tokio::spawn(tactful_server::serve(
        listener,
        tactful_server::AppState::new(state.clone(), &config),
        crate::shutdown_signal(),
    ));

    let client = Client::new(base.clone());
    // The shop's items first, so what customers do with them is learned as it arrives.
    if let Some(engine) = &state.personalization {
        state.store.put_items(shop::items(&shop::products()), tactful_app::now_millis()).await?;
        engine.sync(state.store.as_ref(), &state.vault).await?;
    }
    let summary = generate(&client, args.customers, args.seed).await?;
    // Learn from everyone who permits it now (the server does this every second anyway).
    if let Some(engine) = &state.personalization {
        while tactful_app::personalize::update_dirty(&state, engine).await? > 0 {}
        engine.release_whole(state.store.as_ref(), tactful_app::now_millis()).await?;
    }
    let stats = state.store.stats().await?;
    let drops: u64 = state.store.drop_counts().await?.iter().map(|count| count.count).sum();
    let example_email = summary.example_email.clone().unwrap_or_else(|| "ada.lovelace.0@example.com".into());
    let keys = demo_api_keys(&state).await?;

    println!();
    println!("Tactful is running at {base}");
    let database = match state.store.backend() {
        "sqlite" => format!("embedded SQLite in {}", args.data_dir.display()),
        other => format!("{other}, master key in {}", args.data_dir.display()),
    };
    println!("  data:    {database} (every personal value encrypted per person)");
    println!("  catalog: {} — {}", config.catalog.display(), state.catalog.brand().name);
    println!();
    println!(
        "Generated {} customers: {} events sent, {} newly stored, {} already there.",
        args.customers, summary.sent, summary.stored, summary.duplicates
    );
    println!(
        "The store holds {} people, {} events; minimization has dropped {} undeclared or refused properties.",
        stats.subjects, stats.events, drops
    );
    println!();
    println!("Try:");
    println!("  # send an event the way analytics SDKs do (the undeclared `coupon` is dropped and counted)");
    println!(
        "  curl -s {base}/v1/track -u wk_web_fernhill_demo: -H 'content-type: application/json' \\\n    -d '{}'",
        json!({"anonymousId": "your-browser", "event": "Product Viewed", "properties": {"product_id": "sku-0001", "coupon": "SAVE10"}})
    );
    println!("  # what minimization dropped, per source and path");
    println!("  curl -s {base}/metrics | grep properties_dropped");
    println!(
        "  cargo run --release -- dropped --database '{}' --master-key-file {}/master.key",
        redact_password(&config.database),
        args.data_dir.display()
    );
    println!("  # the settings analytics.js loads");
    println!("  curl -s {base}/v1/projects/wk_web_fernhill_demo/settings");
    if let Some(keys) = &keys {
        println!();
        println!("The brand API (keys made for this run; `tactful api-keys create` makes real ones):");
        println!("  # what the email team may see of a customer, and what is withheld and why");
        println!(
            "  curl -s '{base}/v1/subjects/email:{example_email}/profile?purpose=marketing.communications.email&events=3' \\\n    -H 'authorization: Bearer {}'",
            keys.marketing.as_str()
        );
        println!("  # their consents, the ledger and signed receipts (the privacy team's key)");
        println!(
            "  curl -s {base}/v1/subjects/email:{example_email}/consents -H 'authorization: Bearer {}'",
            keys.privacy.as_str()
        );
        println!("  # record a consent the customer gave you, and get its signed receipt");
        println!(
            "  curl -s {base}/v1/subjects/email:{example_email}/consents -H 'authorization: Bearer {}' \\\n    -H 'content-type: application/json' -d '{}'",
            keys.privacy.as_str(),
            json!({"changes": [{"purpose": "marketing.communications.email", "status": "given", "method": "explicit"}]})
        );
        println!("  # who read this customer's data, when and why; and whether the audit log is intact");
        println!(
            "  curl -s {base}/v1/subjects/email:{example_email}/access-log -H 'authorization: Bearer {}'",
            keys.privacy.as_str()
        );
        println!("  curl -s {base}/v1/audit/verify -H 'authorization: Bearer {}'", keys.privacy.as_str());
        if let Some(requests) = &keys.requests {
            println!(
                "  # everything held about this customer: an access request, then its package (HTML for people;"
            );
            println!("  #  the requests team's key: the privacy team's cannot see all a package holds)");
            println!(
                "  curl -s {base}/v1/requests -H 'authorization: Bearer {}' -H 'content-type: application/json' \\\n    -d '{}'",
                requests.as_str(),
                json!({"type": "access", "subject": format!("email:{example_email}")})
            );
            println!(
                "  curl -s {base}/v1/requests/REQUEST_ID/package?format=html -H 'authorization: Bearer {}' > package.html",
                requests.as_str()
            );
        }
        if let Some(personalization) = &keys.personalization {
            show_recommendations(&state, &base, personalization.as_str(), &summary).await?;
        }
        if let Some(analyst) = &keys.analyst {
            let now = tactful_app::now_millis();
            println!(
                "  # aggregates that single no one out: how many people did what, with noise, interval and budget"
            );
            println!(
                "  # (UK customers who said yes and Californians who did not say no count; EU customers never do:"
            );
            println!("  #  the example's EU jurisdiction keeps personal data out of analytics altogether)");
            println!(
                "  curl -s {base}/v1/insights/query -H 'authorization: Bearer {}' -H 'content-type: application/json' \\\n    -d '{}'",
                analyst.as_str(),
                json!({"dataset": "shop", "metric": "people", "group_by": ["event"], "epsilon": 1.0,
                       "from": iso(now - 91 * 86_400_000), "to": iso(now)})
            );
        }
    }
    let store_flags = format!(
        "--database '{}' --master-key-file {}/master.key",
        redact_password(&config.database),
        args.data_dir.display()
    );
    show_pages(&state, &base, &store_flags, keys.as_ref(), &summary).await?;
    forwarding::show(&state, &receivers.received).await?;
    println!();
    println!("Press Ctrl-C to stop.");
    server.await??;
    Ok(())
}

/// Prints the pages: a generated customer's preference-center link, the console login, the notice.
async fn show_pages(
    state: &Arc<App>,
    base: &str,
    store_flags: &str,
    keys: Option<&DemoKeys>,
    summary: &Summary,
) -> anyhow::Result<()> {
    println!();
    println!("In a browser:");
    println!("  privacy notice (generated from the catalog): {base}/privacy");
    let customer = match &summary.example_email {
        Some(email) => tactful_app::subjects::find(state, &format!("email:{email}")).await.ok(),
        None => None,
    };
    if let Some(subject) = customer {
        let (url, expires_at) = tactful_app::tokens::issue_link(state, &subject, Some("demo"))
            .await
            .map_err(|error| anyhow::anyhow!("{}", error.message))?;
        println!(
            "  {}'s privacy settings (a signed link, valid until {}):",
            summary.example_email.as_deref().unwrap_or("a customer"),
            iso(expires_at)
        );
        println!("    {url}");
        println!(
            "    a fresh one: cargo run --release -- link email:{} --public-url {base} {store_flags}",
            summary.example_email.as_deref().unwrap_or("…")
        );
    }
    if let Some(keys) = keys {
        println!("  the brand console: {base}/console  (sign in with the privacy team's key:");
        println!("    {})", keys.privacy.as_str());
    }
    Ok(())
}

struct DemoKeys {
    privacy: tactful_vault::Zeroizing<String>,
    marketing: tactful_vault::Zeroizing<String>,
    requests: Option<tactful_vault::Zeroizing<String>>,
    personalization: Option<tactful_vault::Zeroizing<String>>,
    analyst: Option<tactful_vault::Zeroizing<String>>,
}

/// Prints what the recommendation engine says for a generated customer who permits it, with the
/// reasons, and how to ask for it.
async fn show_recommendations(
    state: &Arc<App>,
    base: &str,
    key: &str,
    summary: &Summary,
) -> anyhow::Result<()> {
    let Some(engine) = &state.personalization else { return Ok(()) };
    let info = engine.info_now();
    println!();
    println!(
        "Recommendations: learned from {} customers who permit personalization ({} of {} items with neighbours; \
         a pair needs {} people, each lends at most {} items).",
        info.people, info.items_with_neighbours, info.items, info.min_support, info.cap
    );
    let now = tactful_app::now_millis();
    for email in &summary.registered_emails {
        let Some(subject) = state.store.subject_by_identifier(state.vault.blind("email", email)).await?
        else {
            continue;
        };
        let Some(found) = state.store.subject_state(&subject).await? else { continue };
        if engine.refusal(state, &found, now).is_some() {
            continue;
        }
        let Some(person) = engine.person(&found.subject) else { continue };
        if person.contribution.is_empty() {
            continue;
        }
        let picked = engine.recommend(Some(&person), None, Default::default(), 5, 0);
        if picked.is_empty() {
            continue;
        }
        let names: HashMap<String, String> = shop::products().into_iter().map(|p| (p.id, p.name)).collect();
        let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
        println!("  for {email}:");
        for item in &picked {
            println!(
                "    {:<24} {}",
                name(&item.item.id),
                tactful_app::personalize::reason_in_words(&item.reason, &name)
            );
        }
        println!(
            "  curl -s '{base}/v1/recommendations?purpose=personalize.content&subject=email:{email}&placement=home' \\\n    -H 'authorization: Bearer {key}'"
        );
        println!(
            "  # customers who viewed this also viewed (only pairs with at least {} people behind them)",
            info.min_support
        );
        println!(
            "  curl -s '{base}/v1/items/sku-0001/similar?purpose=personalize.content&n=5' -H 'authorization: Bearer {key}'"
        );
        break;
    }
    Ok(())
}

/// Fresh API keys for this demo run (the previous run's are revoked: a key is shown only once), if
/// the catalog declares the example's privacy and marketing roles (and a requests team's key when
/// it declares the example's requests role).
async fn demo_api_keys(state: &App) -> anyhow::Result<Option<DemoKeys>> {
    const PRIVACY: &str = "demo: privacy team";
    const MARKETING: &str = "demo: email marketing";
    const REQUESTS: &str = "demo: requests team";
    const PERSONALIZATION: &str = "demo: recommendations";
    const ANALYST: &str = "demo: analyst";
    let now = tactful_app::now_millis();
    for key in state.store.api_keys().await? {
        if [PRIVACY, MARKETING, REQUESTS, PERSONALIZATION, ANALYST].contains(&key.name.as_str())
            && key.revoked_at.is_none()
        {
            let audit = tactful_domain::audit::AuditEvent::KeyRevoked { key: key.id.clone() };
            state.store.revoke_api_key(&key.id, now, audit).await?;
        }
    }
    let create = |name, role| tactful_app::keys::create_api_key(state, name, role, None);
    if state.catalog.role("privacy").is_none() || state.catalog.role("marketing").is_none() {
        return Ok(None);
    }
    let privacy = create(PRIVACY, "privacy").await?.1;
    let marketing = create(MARKETING, "marketing").await?.1;
    let requests = match state.catalog.role("requests") {
        Some(_) => Some(create(REQUESTS, "requests").await?.1),
        None => None,
    };
    let personalization = match state.catalog.role("personalization") {
        Some(_) => Some(create(PERSONALIZATION, "personalization").await?.1),
        None => None,
    };
    let analyst = match (state.catalog.role("analyst"), state.catalog.analytics()) {
        (Some(_), Some(_)) => Some(create(ANALYST, "analyst").await?.1),
        _ => None,
    };
    Ok(Some(DemoKeys { privacy, marketing, requests, personalization, analyst }))
}

/// A database URL fit to print: the password, if any, replaced by `***`.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub struct Summary {
    pub sent: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub example_email: Option<String>,
    /// Registered customers' emails, in customer order.
    pub registered_emails: Vec<String>,
}

/// Sends the generated shop through `client` with a few concurrent senders, each keeping its
/// customers' events in order, batched per source like SDKs batch.
pub async fn generate(client: &Client, customers: u64, seed: u64) -> anyhow::Result<Summary> {
    const SENDERS: u64 = 4;
    const BATCH: usize = 100;
    let products = Arc::new(shop::products());
    let now = tactful_app::now_millis();
    let progress = crate::progress::bar(customers, "generating", "customers");
    let sent = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (client, products, progress) = (client.clone(), products.clone(), progress.clone());
        let (sent, stored, duplicates) = (sent.clone(), stored.clone(), duplicates.clone());
        tasks.push(tokio::spawn(async move {
            let mut pending: HashMap<shop::Channel, Vec<Value>> = HashMap::new();
            for index in (sender..customers).step_by(usize::try_from(SENDERS).unwrap_or(1)) {
                for (channel, event) in shop::customer(&products, seed, index, now).events {
                    let queue = pending.entry(channel).or_default();
                    queue.push(event);
                    if queue.len() >= BATCH {
                        let batch = std::mem::take(queue);
                        send(&client, channel, batch, &sent, &stored, &duplicates).await?;
                    }
                }
                progress.inc(1);
            }
            for (channel, batch) in pending {
                if !batch.is_empty() {
                    send(&client, channel, batch, &sent, &stored, &duplicates).await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    progress.finish_with_message("done");
    let registered_emails: Vec<String> = (0..customers.min(200))
        .map(|index| shop::customer(&products, seed, index, now))
        .filter(|customer| customer.registered)
        .map(|customer| customer.email)
        .collect();
    let example_email = registered_emails.first().cloned();
    Ok(Summary {
        sent: sent.load(Ordering::Relaxed),
        stored: stored.load(Ordering::Relaxed),
        duplicates: duplicates.load(Ordering::Relaxed),
        example_email,
        registered_emails,
    })
}

async fn send(
    client: &Client,
    channel: shop::Channel,
    batch: Vec<Value>,
    sent: &AtomicU64,
    stored: &AtomicU64,
    duplicates: &AtomicU64,
) -> anyhow::Result<()> {
    let count = batch.len() as u64;
    let body =
        Bytes::from(serde_json::to_vec(&json!({"batch": batch, "sentAt": iso(tactful_app::now_millis())}))?);
    let (status, answer) = client.post("/v1/batch", channel.write_key(), body).await?;
    anyhow::ensure!(
        status.is_success(),
        "the server refused a demo batch ({status}): {}",
        String::from_utf8_lossy(&answer)
    );
    let answer: Value = serde_json::from_slice(&answer)?;
    sent.fetch_add(count, Ordering::Relaxed);
    stored.fetch_add(answer["stored"].as_u64().unwrap_or(0), Ordering::Relaxed);
    duplicates.fetch_add(answer["duplicates"].as_u64().unwrap_or(0), Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            super::redact_password("postgres://app:s3cret@db:5432/tactful"),
            "postgres://app:***@db:5432/tactful"
        );
        assert_eq!(
            super::redact_password("sqlite:tactful-demo/tactful.db"),
            "sqlite:tactful-demo/tactful.db"
        );
        assert_eq!(super::redact_password("postgres://app@db/tactful"), "postgres://app@db/tactful");
    }
}
