//! `tactful items import` (the brand's item catalogue from a JSON-lines file) and
//! `tactful model rebuild` (recompute every person's contribution from their data and consent).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tactful_app::personalize::{ItemInput, item_record};
use tactful_app::{App, Config};

/// Items written per store call.
const CHUNK: usize = 1_000;

#[derive(Debug, clap::Subcommand)]
pub enum ItemsCommand {
    /// Add or replace items from a file with one JSON object per line:
    /// {"id", "name", "categories", "sensitive", "available", "price" (minor units), "attributes"}.
    /// Every line is checked first; nothing is written if one is wrong.
    Import {
        #[command(flatten)]
        config: Box<Config>,
        /// The JSON-lines file (`tactful generate` writes one as items.jsonl).
        file: PathBuf,
    },
}

impl ItemsCommand {
    pub fn config(&self) -> &Config {
        match self {
            ItemsCommand::Import { config, .. } => config,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Recompute every person's contribution from their data and consent now (recovery after a
    /// restore, or after changing feedback events in the catalog). Running servers pick it up.
    Rebuild {
        #[command(flatten)]
        config: Box<Config>,
    },
}

impl ModelCommand {
    pub fn config(&self) -> &Config {
        match self {
            ModelCommand::Rebuild { config } => config,
        }
    }
}

fn engine(state: &App) -> anyhow::Result<&std::sync::Arc<tactful_app::personalize::Personalization>> {
    state
        .personalization
        .as_ref()
        .context("the catalog declares no personalization purpose, so there is no recommendation model")
}

pub async fn items(state: &App, command: ItemsCommand) -> anyhow::Result<ExitCode> {
    let ItemsCommand::Import { file, .. } = command;
    let engine = engine(state)?;
    let opened = std::fs::File::open(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let reading = crate::progress::bytes(opened.metadata().map_or(0, |meta| meta.len()), "checking");
    let reader = std::io::BufReader::new(reading.wrap_read(opened));
    let now = tactful_app::now_millis();
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<ItemInput>(&line)
            .map_err(|error| error.to_string())
            .and_then(|input| item_record(input, None, now));
        match parsed {
            Ok(record) => records.push(record),
            Err(problem) => problems.push(format!("{}:{}: {problem}", file.display(), number + 1)),
        }
    }
    reading.finish_and_clear();
    if !problems.is_empty() {
        for problem in problems.iter().take(20) {
            eprintln!("{problem}");
        }
        if problems.len() > 20 {
            eprintln!("… and {} more", problems.len() - 20);
        }
        eprintln!("nothing was imported");
        return Ok(ExitCode::FAILURE);
    }
    let total = records.len();
    let progress = crate::progress::bar(total as u64, "importing", "items");
    while !records.is_empty() {
        let rest = records.split_off(records.len().min(CHUNK));
        let written = records.len() as u64;
        engine.write_items(state, "cli: tactful items import", records).await?;
        progress.inc(written);
        records = rest;
    }
    progress.finish_and_clear();
    println!("imported {total} items from {}", file.display());
    Ok(ExitCode::SUCCESS)
}

pub async fn model(state: &App, command: ModelCommand) -> anyhow::Result<ExitCode> {
    let engine = engine(state)?;
    match command {
        ModelCommand::Rebuild { .. } => {
            let marked = state.store.mark_all_model_dirty(tactful_app::now_millis()).await?;
            let progress = crate::progress::bar(marked, "recomputing", "people");
            loop {
                let count = tactful_app::personalize::update_dirty(state, engine).await?;
                if count == 0 {
                    break;
                }
                progress.inc(count as u64);
            }
            progress.finish_and_clear();
            let progress = crate::progress::spinner("releasing the model", "");
            engine.release_whole(state.store.as_ref(), tactful_app::now_millis()).await?;
            progress.finish_and_clear();
            let info = engine.info_now();
            println!(
                "rebuilt: {} people lend the model, {} items, {} pairs released (k = {})",
                info.people, info.items, info.pairs_released, info.min_support
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
