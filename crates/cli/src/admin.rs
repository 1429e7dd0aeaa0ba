//! Commands for the brand's privacy team and operators: API keys (`tactful api-keys`), the audit
//! log (`tactful audit verify|checkpoint`), consent receipts (`tactful receipt verify`), the consent
//! export (`tactful consents export`) and data-subject requests (`tactful requests`). They open the
//! store directly, like the server does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tactful_app::reads::Reader;
use tactful_app::{App, Config};
use tactful_domain::audit::Checkpoint;
use tactful_domain::period::Retention;
use tactful_domain::receipt;
use tactful_domain::segment::format_time;
use tactful_store::audit::KeptCheckpoint;
use tactful_vault::PublicKey;

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key with one of the catalog's roles. The key is printed once and stored hashed.
    Create {
        #[command(flatten)]
        config: Box<Config>,
        /// The catalog role (what the key may read, and for which purposes).
        #[arg(long)]
        role: String,
        /// Who or what uses the key ("recommendation service").
        #[arg(long)]
        name: String,
        /// Expire the key after this long: 30d, 12w, 1y.
        #[arg(long, value_name = "PERIOD")]
        expires_in: Option<Retention>,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Revoke a key by its id (key_…); requests with it are refused at once.
    Revoke {
        #[command(flatten)]
        config: Box<Config>,
        /// The key's id, as `api-keys list` shows it.
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every entry of the audit log against the signed checkpoints stored beside it and any
    /// kept elsewhere. Exits 1 and names the first bad entry if anything was altered, removed,
    /// reordered or truncated.
    Verify {
        #[command(flatten)]
        config: Box<Config>,
        /// A checkpoint kept outside the database (from `tactful audit checkpoint --out`); repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign the log's head now and print the checkpoint (or write it to a file) for an outside party
    /// to keep.
    Checkpoint {
        #[command(flatten)]
        config: Box<Config>,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ReceiptCommand {
    /// Check a consent receipt's signature. Without --public-key, the key the receipt names is
    /// used: compare its id with the brand's published key (GET /v1/signing-key).
    Verify {
        /// The receipt (JSON, as GET /v1/subjects/{id}/consents/receipts/{receipt} returns it).
        file: PathBuf,
        /// The brand's public key (base64), to check the receipt was signed by it.
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ConsentsCommand {
    /// Export the whole consent ledger, one row per change, oldest first.
    Export {
        #[command(flatten)]
        config: Box<Config>,
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

impl ApiKeysCommand {
    pub fn config(&self) -> &Config {
        match self {
            ApiKeysCommand::Create { config, .. }
            | ApiKeysCommand::List { config }
            | ApiKeysCommand::Revoke { config, .. } => config,
        }
    }
}

impl AuditCommand {
    pub fn config(&self) -> &Config {
        match self {
            AuditCommand::Verify { config, .. } | AuditCommand::Checkpoint { config, .. } => config,
        }
    }
}

impl ConsentsCommand {
    pub fn config(&self) -> &Config {
        let ConsentsCommand::Export { config, .. } = self;
        config
    }
}

pub async fn api_keys(state: &App, command: ApiKeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApiKeysCommand::Create { role, name, expires_in, .. } => {
            let expires_at = expires_in.map(|period| tactful_app::now_millis() + period.as_millis());
            let (record, key) = tactful_app::keys::create_api_key(state, &name, &role, expires_at).await?;
            eprintln!(
                "Created {} ({}), role {}{}. This is the only time the key is shown; store it in your secret manager:",
                record.id,
                record.name,
                record.role,
                expires_at.map(|at| format!(", expires {}", format_time(at))).unwrap_or_default()
            );
            println!("{}", key.as_str());
        }
        ApiKeysCommand::List { .. } => {
            let keys = state.store.api_keys().await?;
            if keys.is_empty() {
                println!("No API keys yet. Create one with: tactful api-keys create --role ROLE --name NAME");
            } else {
                println!("{:<20} {:<16} {:<28} {:<22} STATUS", "ID", "ROLE", "NAME", "CREATED");
                let now = tactful_app::now_millis();
                for key in keys {
                    let status = match (key.revoked_at, key.expires_at) {
                        (Some(at), _) => format!("revoked {}", format_time(at)),
                        (None, Some(at)) if at <= now => format!("expired {}", format_time(at)),
                        (None, Some(at)) => format!("active until {}", format_time(at)),
                        (None, None) => "active".to_owned(),
                    };
                    println!(
                        "{:<20} {:<16} {:<28} {:<22} {status}",
                        key.id,
                        key.role,
                        key.name,
                        format_time(key.created_at)
                    );
                }
            }
        }
        ApiKeysCommand::Revoke { id, .. } => {
            let audit = tactful_domain::audit::AuditEvent::KeyRevoked { key: id.clone() };
            if !state.store.revoke_api_key(&id, tactful_app::now_millis(), audit).await? {
                bail!("there is no active key {id} (see tactful api-keys list)");
            }
            println!("Revoked {id}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(state: &App, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { checkpoints, json, .. } => {
            let mut kept = Vec::new();
            for path in &checkpoints {
                kept.extend(read_checkpoints(path)?);
            }
            let external = kept.len();
            let report =
                tactful_store::audit::verify(state.store.as_ref(), &[state.vault.public_key()], kept).await?;
            if json {
                println!("{}", tactful_app::audit_log::report_json(&report));
            } else if report.ok() {
                println!(
                    "The audit log is intact: {} entries, root {}, checked against {} signed checkpoints ({} kept outside the database).",
                    report.entries,
                    tactful_domain::encoding::hex(&report.root),
                    report.checkpoints,
                    external
                );
            } else {
                println!("The audit log has been tampered with.");
                if let Some(first) = report.first_bad_entry_in_words() {
                    println!("First bad entry: {first}");
                }
                for problem in &report.problems {
                    println!("  - {}", problem.describe());
                }
            }
            return Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        AuditCommand::Checkpoint { out, .. } => {
            let Some(checkpoint) = state.store.audit_checkpoint(tactful_app::now_millis()).await? else {
                bail!("the audit log is empty: there is nothing to sign yet");
            };
            let text = serde_json::to_string_pretty(&checkpoint)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("Wrote the checkpoint of {} entries to {}.", checkpoint.size, path.display());
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Checkpoints from a file: one checkpoint, `{"checkpoint": …}`, a list, or `{"checkpoints": […]}`
/// (what the CLI and the API write).
fn read_checkpoints(path: &Path) -> anyhow::Result<Vec<KeptCheckpoint>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let list = match value {
        Value::Array(items) => items,
        Value::Object(mut object) if object.contains_key("checkpoints") => match object.remove("checkpoints")
        {
            Some(Value::Array(items)) => items,
            _ => bail!("{}: \"checkpoints\" must be a list", path.display()),
        },
        Value::Object(mut object) if object.contains_key("checkpoint") => {
            vec![object.remove("checkpoint").unwrap_or(Value::Null)]
        }
        other => vec![other],
    };
    list.into_iter()
        .map(|item| {
            let checkpoint: Checkpoint = serde_json::from_value(item)
                .with_context(|| format!("{} does not hold audit checkpoints", path.display()))?;
            Ok(KeptCheckpoint { checkpoint, origin: format!("kept in {}", path.display()) })
        })
        .collect()
}

pub fn verify_receipt(file: &Path, public_key: Option<&str>) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let signed: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let parts =
        receipt::parts(&signed).map_err(|problem| anyhow::anyhow!("{}: {problem}", file.display()))?;
    let named = PublicKey(parts.public_key);
    if let Some(expected) = public_key {
        let expected =
            PublicKey::from_base64(expected).context("--public-key is not a base64 Ed25519 key")?;
        if expected != named {
            println!(
                "INVALID: the receipt was not signed by the key you gave (it names key {}).",
                named.id()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    if !named.verify(receipt::SIGNING_CONTEXT, &receipt::signing_bytes(&parts.receipt), &parts.signature) {
        println!("INVALID: the signature does not match the receipt; it was altered or forged.");
        return Ok(ExitCode::FAILURE);
    }
    // The JWS must carry this very receipt, signed by the same key, or it is a second story.
    if let Some(jws) = &parts.jws {
        let carries_this_receipt = named
            .verify_jws(jws)
            .is_some_and(|(_, payload)| payload == receipt::signing_bytes(&parts.receipt));
        if !carries_this_receipt {
            println!(
                "INVALID: the jws does not carry this receipt under this key; it was altered or forged."
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    let field = |name: &str| parts.receipt.get(name).and_then(Value::as_str).unwrap_or("?").to_owned();
    let forms = if parts.jws.is_some() { " (signature and JWS)" } else { "" };
    println!("Valid receipt {} signed by key {}{forms}.", field("consentReceiptID"), named.id());
    if public_key.is_none() {
        println!("Check that {} is the brand's key: GET /v1/signing-key shows it.", named.to_base64());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn consents(state: &App, command: ConsentsCommand) -> anyhow::Result<ExitCode> {
    let ConsentsCommand::Export { format, out, .. } = command;
    let format = tactful_app::consents::LedgerFormat::parse(&format)?;
    let text = tactful_app::reads::records::ledger(state, &Reader::Operator, format).await?;
    match out {
        Some(path) => {
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("Wrote the consent ledger to {}.", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Subcommand)]
pub enum RequestsCommand {
    /// Record a data-subject request the brand has verified (a running server carries it out).
    Create {
        #[command(flatten)]
        config: Box<Config>,
        /// access, export, rectify, restrict, unrestrict, object, erase, suppress, unsuppress.
        #[arg(long = "type")]
        kind: String,
        /// The person: sub_… or kind:value (email:ada@example.com). Not for unsuppress.
        #[arg(long)]
        subject: Option<String>,
        /// erase: also drop their future events (a keyed hash of their identifiers is kept).
        #[arg(long)]
        suppress: bool,
        /// object: the purpose objected to.
        #[arg(long)]
        purpose: Option<String>,
        /// rectify: the profile path (traits.…) and its corrected value (JSON, or plain text).
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        value: Option<String>,
        /// unsuppress: identifiers to lift (kind:value), repeatable.
        #[arg(long = "identifier")]
        identifiers: Vec<String>,
    },
    /// List requests, newest first, with their deadlines.
    List {
        #[command(flatten)]
        config: Box<Config>,
        #[arg(long)]
        subject: Option<String>,
    },
    /// Show a request: status, deadline, history, each destination's answer.
    Show {
        #[command(flatten)]
        config: Box<Config>,
        id: String,
    },
    /// Write the package of a completed access or export request to a file.
    Package {
        #[command(flatten)]
        config: Box<Config>,
        id: String,
        #[arg(long, default_value = "json", value_parser = ["json", "html"])]
        format: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

impl RequestsCommand {
    pub fn config(&self) -> &Config {
        match self {
            RequestsCommand::Create { config, .. }
            | RequestsCommand::List { config, .. }
            | RequestsCommand::Show { config, .. }
            | RequestsCommand::Package { config, .. } => config,
        }
    }
}

pub async fn requests(state: std::sync::Arc<App>, command: RequestsCommand) -> anyhow::Result<ExitCode> {
    match command {
        RequestsCommand::Create { kind, subject, suppress, purpose, path, value, identifiers, .. } => {
            let value = value.map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)));
            let submission = tactful_app::requests::Submission {
                kind,
                subject,
                suppress,
                purpose,
                path,
                value,
                identifiers,
                ..Default::default()
            };
            let (id, _) = tactful_app::requests::submit(&state, None, submission).await?;
            println!("{id}");
            eprintln!(
                "Recorded. A running Tactful carries it out; follow it with: tactful requests show {id}"
            );
        }
        RequestsCommand::List { subject, .. } => {
            let subject = match &subject {
                Some(reference) => Some(tactful_app::subjects::find(&state, reference).await?),
                None => None,
            };
            let now = tactful_app::now_millis();
            let listed = state.store.requests(subject.as_deref(), 1000).await?;
            if listed.is_empty() {
                println!("No requests.");
            }
            for record in listed {
                let overdue = if !record.status.is_final() && record.due_at < now { "  OVERDUE" } else { "" };
                println!(
                    "{:<32} {:<10} {:<24} received {}  due {}{overdue}",
                    record.id,
                    record.kind.as_str(),
                    record.status.as_str(),
                    format_time(record.received_at),
                    format_time(record.due_at)
                );
            }
        }
        RequestsCommand::Show { id, .. } => {
            let shown = tactful_app::requests::show(&state, &id).await?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        RequestsCommand::Package { id, format, out, .. } => {
            use futures_util::StreamExt as _;
            let form = tactful_app::exports::package::Form::parse(&format)?;
            let download =
                tactful_app::exports::package::download_request(&state, &Reader::Operator, &id, form).await?;
            let mut stream = download.body;
            let written = async {
                let mut file =
                    std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
                while let Some(chunk) = stream.next().await {
                    std::io::Write::write_all(&mut file, &chunk?)?;
                }
                anyhow::Ok(())
            }
            .await;
            drop(stream);
            // This process exits next: end the download now, so an erasure waits no longer.
            tactful_app::exports::package::end_download(&state, &id).await?;
            written?;
            eprintln!(
                "Wrote the package of {id} to {}. It holds personal data: hand it to the person, then delete it.",
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
