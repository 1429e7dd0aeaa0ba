//! The `tactful` command: run the server or the demo, check a catalog, read operational counters, run
//! benchmarks. A thin layer over the server and store crates.

use tactful::{
    admin, bench, breach, demo, destinations, export_dataset, insights, items, personalize, settings,
    shutdown_signal,
};

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tactful_app::{App, Config};
use tactful_domain::catalog::Catalog;

/// mimalloc instead of the system allocator: every event is a tree of small JSON values built on a
/// request thread and freed after its commit, and request bodies are tens of kilobytes; glibc's
/// allocator spent about a quarter of ingestion's CPU consolidating free chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "tactful", version, about = "Personalization that keeps its promises on privacy.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        config: Config,
    },
    /// Run the demo: the example shop's catalog, generated customers, and the server.
    Demo(demo::DemoArgs),
    /// Work with catalogs (data maps).
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Print an annotated example configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show what minimization dropped at ingestion, per source, path and reason (all instances).
    Dropped {
        #[command(flatten)]
        config: Config,
    },
    /// Copy the SQLite database to a new file while the server runs. The copy holds sealed values
    /// and wrapped keys, not the erasure journal; PostgreSQL is backed up with pg_dump (see
    /// docs/deployment.md).
    Backup {
        #[command(flatten)]
        config: Box<Config>,
        /// The file to write (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a backup in place of the SQLite database (stop the server first). The replaced database
    /// is kept beside it; everyone erased since the backup was taken is erased again.
    Restore {
        #[command(flatten)]
        config: Box<Config>,
        /// The backup file written by `tactful backup`.
        file: PathBuf,
    },
    /// Show how much the store holds.
    Stats {
        #[command(flatten)]
        config: Config,
    },
    /// Benchmarks that print their figures beside a reference measured in the same run; with no
    /// subcommand, a quick version of each and one table of their figures.
    Bench(BenchArgs),
    /// Master keys: generate one, rotate to a new one.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// API keys for the brand API: create (shown once), list, revoke.
    #[command(subcommand)]
    ApiKeys(admin::ApiKeysCommand),
    /// The tamper-evident audit log: verify it, sign a checkpoint to keep elsewhere.
    #[command(subcommand)]
    Audit(admin::AuditCommand),
    /// The consent ledger: export it.
    #[command(subcommand)]
    Consents(admin::ConsentsCommand),
    /// A pseudonymized export of one purpose's events (CSV or Parquet): people under tokens of that
    /// purpose, days not times, nothing identifying or sensitive, coarsened as a dataset declares.
    ExportDataset(export_dataset::ExportDatasetArgs),
    /// Aggregate questions about what people do, answered privately (k-thresholds, a DP budget).
    #[command(subcommand)]
    Insights(insights::InsightsCommand),
    /// The brand's item catalogue for recommendations: import it from a JSON-lines file.
    #[command(subcommand)]
    Items(items::ItemsCommand),
    /// The recommendation model: rebuild it from everyone's data and consent.
    #[command(subcommand)]
    Model(items::ModelCommand),
    /// Consent receipts: verify one's signature (needs no database).
    #[command(subcommand)]
    Receipt(admin::ReceiptCommand),
    /// Data-subject requests: record one, list them, show one, write a package to a file.
    #[command(subcommand)]
    Requests(admin::RequestsCommand),
    /// Print a signed, short-lived link to a person's preference center (their privacy settings),
    /// for the brand to show or send them. Recorded in the person's access log.
    Link {
        #[command(flatten)]
        config: Box<Config>,
        /// The person: sub_… or kind:value (email:ada@example.com).
        subject: String,
    },
    /// After a breach: who was affected through a key, a role or a time window, and drafted
    /// notifications for each person.
    Breach(breach::BreachArgs),
    /// Destinations that receive events: how each is doing; send one again what is permitted now.
    #[command(subcommand)]
    Destinations(destinations::DestinationsCommand),
    /// Generate synthetic shop activity with planted structure (items.jsonl, interactions.csv).
    Generate(personalize::GenerateArgs),
    /// Evaluate the recommendation models offline (leave-last-out HR@10 and NDCG@10, the cost of
    /// privacy), on generated data or a CSV.
    Eval(personalize::EvalArgs),
    /// Print shell completions: `tactful completions bash > /etc/bash_completion.d/tactful`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random master key (64 hex digits), or write it to a file with mode 0600.
    Generate {
        /// Write the key to this file (which must not exist) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Re-wrap every subject's data key under the current master key. Run it once all instances
    /// have the new key as current and the old one as previous; see docs/deployment.md.
    Rotate {
        #[command(flatten)]
        config: Box<Config>,
        /// Subjects re-wrapped per database transaction.
        #[arg(long, default_value_t = 1_000)]
        batch: u32,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Check a catalog and report every problem with its line and column.
    Check {
        /// The catalog file.
        file: PathBuf,
    },
    /// Print the annotated example catalog of a web shop.
    Example,
    /// Write the catalog as a fideslang data map (organization, system, dataset YAML) for Fides.
    Export {
        /// The format to write.
        #[arg(long, value_enum)]
        format: tactful::fides::ExportFormat,
        /// The catalog file (default: TACTFUL_CATALOG, else tactful.toml).
        file: Option<PathBuf>,
        /// Write to this file (which must not exist) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Turn a fideslang data map (Fides YAML) into a catalog skeleton; `catalog check` then names
    /// what is missing. Deprecated fideslang keys are replaced, with a warning.
    Import {
        /// The fideslang YAML file.
        file: PathBuf,
        /// Write to this file (which must not exist) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print an annotated configuration file.
    Example,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Events per second through POST /v1/batch, beside a do-nothing handler.
    Ingest(bench::IngestArgs),
    /// Access decisions per field, audit append cost, and verifying a million-entry audit log.
    Access(bench::AccessArgs),
    /// Erasing and exporting a person with many events.
    Requests(bench::RequestsArgs),
    /// Recommendations over HTTP at a fixed request rate, and in-process.
    Serving(bench::ServingArgs),
    /// A grouped count over millions of events, exact and with differential privacy.
    Insights(bench::InsightsArgs),
    /// Item-to-item training on millions of interactions, serving latency in-process, memory.
    Personalize(bench::PersonalizeArgs),
    /// `POST /me/sign-in` for customers' and strangers' addresses: the two medians side by side.
    SignIn(bench::SignInArgs),
    /// Events forwarded per second and their lag to a Segment-protocol receiver; ingestion with
    /// forwarding on and off.
    Forward(bench::ForwardArgs),
}

fn main() -> ExitCode {
    let matches = settings::shape(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // The matches of the innermost subcommand, which holds the flattened configuration flags, and
    // the command's name as typed (`api-keys create`).
    let mut name = Vec::new();
    let mut sub_matches = None;
    let mut next = matches.subcommand();
    while let Some((sub_name, sub)) = next {
        name.push(sub_name);
        sub_matches = Some(sub.clone());
        next = sub.subcommand();
    }
    let name = name.join(" ");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, &name, sub_matches)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, name: &str, matches: Option<clap::ArgMatches>) -> anyhow::Result<ExitCode> {
    if !settings::SERVING.contains(&name)
        && let Some(matches) = &matches
    {
        settings::refuse_serve_only(name, matches)?;
    }
    let with_file = |config: Config| -> anyhow::Result<Config> {
        match &matches {
            Some(matches) => Ok(config.with_file(matches)?),
            None => Ok(config),
        }
    };
    match command {
        Command::Serve { config } => {
            let config = with_file(config)?;
            init_logging(&config.log_format, "info");
            serve(config).await?;
        }
        Command::Demo(args) => {
            // The demo's first screen is the product's: start-up chatter (migrations, retention
            // passes over the generated history) only with RUST_LOG=info.
            init_logging("text", "warn");
            demo::run(args).await?;
        }
        Command::Catalog(CatalogCommand::Check { file }) => return Ok(check_catalog(&file)),
        Command::Catalog(CatalogCommand::Example) => print!("{}", Catalog::example_text()),
        Command::Catalog(CatalogCommand::Export { format, file, out }) => {
            let file = file.unwrap_or_else(tactful::fides::default_catalog);
            return Ok(tactful::fides::export(&file, format, out.as_deref()));
        }
        Command::Catalog(CatalogCommand::Import { file, out }) => {
            return Ok(tactful::fides::import(&file, out.as_deref()));
        }
        Command::Config(ConfigCommand::Example) => print!("{}", Config::example()),
        Command::Dropped { config } => {
            let state = open_quietly(name, with_file(config)?, matches.as_ref()).await?;
            let counts = state.store.drop_counts().await?;
            if counts.is_empty() {
                println!("Nothing has been dropped.");
            } else {
                println!("{:<12} {:<44} {:<22} {:>10}  LAST SEEN", "SOURCE", "PATH", "REASON", "COUNT");
                for count in counts {
                    println!(
                        "{:<12} {:<44} {:<22} {:>10}  {}",
                        count.source,
                        count.path,
                        count.reason.as_str(),
                        count.count,
                        tactful_domain::segment::format_time(count.last_seen)
                    );
                }
            }
        }
        Command::Backup { config, out } => {
            let config = with_file(*config)?;
            settings::require_existing_database(name, &config)?;
            let progress = tactful::progress::spinner("copying the database", "");
            let bytes = tactful_store::backup::backup_sqlite(&config.database, &out);
            progress.finish_and_clear();
            let bytes = bytes?;
            println!("wrote {} ({bytes} bytes)", out.display());
            println!(
                "keep it away from the master key; erasures made after now are applied again on restore \
                 from the erasure journal beside the database, which the backup does not hold"
            );
        }
        Command::Restore { config, file } => {
            let config = with_file(*config)?;
            if config.master_key.is_none() && !config.master_key_file.exists() {
                anyhow::bail!(
                    "no master key at {}: a backup opens only with the key of the database it copied \
                     (--master-key-file or TACTFUL_MASTER_KEY)",
                    config.master_key_file.display()
                );
            }
            let (master, _) = tactful_app::keys::master::load_keys(&config)?;
            let restored = tactful_store::backup::restore_sqlite(&config.database, &file, master)?;
            if let Some(previous) = &restored.previous {
                println!("kept the database it replaced as {}", previous.display());
            }
            // Opening the restored database erases again, before anything reads it.
            let app = open_quietly(name, config, matches.as_ref()).await?;
            app.store.ping().await?;
            println!(
                "restored {}; erased again {} erasure(s) made after the backup was taken",
                file.display(),
                restored.erase_again
            );
        }
        Command::Stats { config } => {
            let state = open_quietly(name, with_file(config)?, matches.as_ref()).await?;
            let stats = state.store.stats().await?;
            println!("backend:        {}", state.store.backend());
            println!("subjects:       {}", stats.subjects);
            println!("identifiers:    {}", stats.identities);
            println!("events:         {}", stats.events);
            println!("profile values: {}", stats.profile_values);
        }
        Command::Keys(KeysCommand::Generate { out }) => {
            let key = tactful_vault::MasterKey::generate();
            match out {
                Some(path) => {
                    let mut options = std::fs::OpenOptions::new();
                    options.write(true).create_new(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::OpenOptionsExt;
                        options.mode(0o600);
                    }
                    let mut file =
                        options.open(&path).with_context(|| format!("creating {}", path.display()))?;
                    std::io::Write::write_all(&mut file, format!("{}\n", key.to_hex().as_str()).as_bytes())?;
                    eprintln!("wrote master key {} to {}", key.id(), path.display());
                }
                None => println!("{}", key.to_hex().as_str()),
            }
        }
        Command::Keys(KeysCommand::Rotate { config, batch }) => {
            let config = with_file(*config)?;
            init_logging_level("warn");
            let state = open_quietly(name, config, matches.as_ref()).await?;
            let (mut cursor, progress) = (None, tactful::progress::spinner("re-wrapping", "keys"));
            loop {
                let page = state.store.rewrap_keys(cursor, batch.max(1)).await?;
                progress.inc(page.rewrapped);
                cursor = page.next;
                if cursor.is_none() {
                    break;
                }
            }
            progress.finish_and_clear();
            println!(
                "Re-wrapped {} keys: every data key is now wrapped under master key {}. Remove the previous key from every instance.",
                progress.position(),
                state.vault.master_key_id()
            );
        }
        Command::ApiKeys(command) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(command.config().clone())?, matches.as_ref()).await?;
            return admin::api_keys(&state, command).await;
        }
        Command::Audit(command) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(command.config().clone())?, matches.as_ref()).await?;
            return admin::audit(&state, command).await;
        }
        Command::Destinations(command) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(command.config().clone())?, matches.as_ref()).await?;
            return destinations::run(&state, command).await;
        }
        Command::Consents(command) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(command.config().clone())?, matches.as_ref()).await?;
            return admin::consents(&state, command).await;
        }
        Command::ExportDataset(args) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(args.config().clone())?, matches.as_ref()).await?;
            return export_dataset::export_dataset(&state, args).await;
        }
        Command::Insights(command) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(command.config().clone())?, matches.as_ref()).await?;
            return insights::insights(&state, command).await;
        }
        Command::Items(command) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(command.config().clone())?, matches.as_ref()).await?;
            return items::items(&state, command).await;
        }
        Command::Model(command) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(command.config().clone())?, matches.as_ref()).await?;
            return items::model(&state, command).await;
        }
        Command::Requests(command) => {
            init_logging_level("warn");
            let state = std::sync::Arc::new(
                open_quietly(name, with_file(command.config().clone())?, matches.as_ref()).await?,
            );
            return admin::requests(state, command).await;
        }
        Command::Link { config, subject } => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file(*config)?, matches.as_ref()).await?;
            let found = tactful_app::subjects::find(&state, &subject).await?;
            let (url, expires_at) = tactful_app::tokens::issue_link(&state, &found, Some("cli")).await?;
            println!("{url}");
            eprintln!(
                "valid until {} (one person's settings: hand it only to them)",
                tactful_domain::segment::format_time(expires_at)
            );
        }
        Command::Breach(args) => {
            init_logging_level("warn");
            let state = open_quietly(name, with_file((*args.config).clone())?, matches.as_ref()).await?;
            breach::run(&state, args).await?;
        }
        Command::Receipt(admin::ReceiptCommand::Verify { file, public_key }) => {
            return admin::verify_receipt(&file, public_key.as_deref());
        }
        Command::Bench(BenchArgs { command: Some(BenchCommand::Ingest(args)) }) => {
            init_logging_level("warn");
            bench::ingest(args).await?;
        }
        Command::Bench(BenchArgs { command: Some(BenchCommand::Access(args)) }) => {
            init_logging_level("warn");
            bench::access(args).await?;
        }
        Command::Bench(BenchArgs { command: Some(BenchCommand::Requests(args)) }) => {
            init_logging_level("warn");
            bench::requests(args).await?;
        }
        Command::Bench(BenchArgs { command: Some(BenchCommand::Insights(args)) }) => {
            init_logging_level("warn");
            bench::insights(args).await?;
        }
        Command::Bench(BenchArgs { command: Some(BenchCommand::Serving(args)) }) => {
            init_logging_level("warn");
            bench::serving(args).await?;
        }
        Command::Bench(BenchArgs { command: Some(BenchCommand::Personalize(args)) }) => {
            bench::personalize(args)?
        }
        Command::Bench(BenchArgs { command: Some(BenchCommand::Forward(args)) }) => {
            init_logging_level("warn");
            bench::forward(args).await?;
        }
        Command::Bench(BenchArgs { command: Some(BenchCommand::SignIn(args)) }) => {
            init_logging_level("warn");
            bench::sign_in(args).await?;
        }
        Command::Bench(BenchArgs { command: None }) => {
            init_logging_level("warn");
            bench::quick().await?;
        }
        Command::Generate(args) => personalize::generate(args)?,
        Command::Eval(args) => personalize::eval(args)?,
        Command::Completions { shell } => {
            let mut command = settings::shape(Cli::command());
            clap_complete::generate(shell, &mut command, "tactful", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_catalog(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("{}: cannot read: {error}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match Catalog::parse(&text) {
        Ok(catalog) => {
            // What the check read differently from how it is written: said, never refused.
            for note in catalog.notes() {
                eprintln!("{}: note: {}", note.position(&file.display().to_string()), note.message);
            }
            println!(
                "{}: ok — {} sources, {} purposes, {} properties, {} events, {} jurisdictions, {} roles",
                file.display(),
                catalog.sources().len(),
                catalog.purposes().len(),
                catalog.properties().len(),
                catalog.events().len(),
                catalog.jurisdictions().len(),
                catalog.roles().len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}", errors.render(&file.display().to_string()));
            eprintln!("{} problem(s) found", errors.problems.len());
            ExitCode::FAILURE
        }
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    let catalog = tactful_app::load_catalog(&config.catalog)?;
    let listener = tactful_server::bind(&config).await?;
    let address = listener.local_addr().context("reading the listening address")?;
    // Links point where the server really listens (port 0 picks one) unless told otherwise.
    config.public_url.get_or_insert_with(|| format!("http://{address}"));
    let state = std::sync::Arc::new(App::open(&config, catalog).await?);
    tactful_app::jobs::start(&state, std::time::Duration::from_secs(config.audit_checkpoint_seconds)).await?;
    tracing::info!(
        %address,
        database = state.store.backend(),
        brand = %state.catalog.brand().name,
        "Tactful is listening"
    );
    tactful_server::serve(listener, tactful_server::AppState::new(state, &config), shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the store for a one-off command, without the server's start-up log lines, under the
/// catalog the server runs with: the one named by `--catalog`, `TACTFUL_CATALOG` or a `--config`
/// file, or else `tactful.toml` where it exists (as `serve` reads it). A named catalog that cannot
/// be read or is invalid is an error, never replaced: a command answering under another data map
/// would decide about purposes, roles and consent by rules the brand did not write. Only when no
/// catalog is named and there is no `tactful.toml` does the command use the example catalog, and
/// it says so. Only the commands that may start a new store create one (see [`settings`]).
async fn open_quietly(name: &str, config: Config, matches: Option<&clap::ArgMatches>) -> anyhow::Result<App> {
    use clap::parser::ValueSource;
    let named = config.config_file.is_some()
        || matches.is_some_and(|matches| {
            matches!(
                matches.value_source("catalog"),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        });
    let catalog = if named || config.catalog.exists() {
        let path = config.catalog.display();
        tactful_app::load_catalog(&config.catalog).map_err(|error| match error {
            tactful_app::StartError::CatalogInvalid(_) => anyhow::anyhow!(
                "{error}\nfix it (`tactful catalog check {path}` lists every problem), or name the catalog the server runs with: --catalog FILE"
            ),
            _ => anyhow::anyhow!(
                "{error}\nname the catalog the server runs with: --catalog FILE (or TACTFUL_CATALOG, or `catalog` in the --config file)"
            ),
        })?
    } else {
        eprintln!(
            "note: no catalog named and no {} here: using the example catalog (name yours with --catalog FILE)",
            config.catalog.display()
        );
        Catalog::parse(Catalog::example_text()).map_err(|errors| anyhow::anyhow!(errors.render("example")))?
    };
    if !settings::MAY_CREATE_STORE.contains(&name) {
        settings::require_existing_store(name, &config)?;
    }
    Ok(App::open(&config, catalog).await?)
}

fn init_logging(format: &str, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}

fn init_logging_level(level: &str) {
    let filter = tracing_subscriber::EnvFilter::new(level);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
