//! `tactful export-dataset`: a pseudonymized export of one purpose's events for analysts, written to a
//! file (whole, or not at all) or to standard output, with what it holds summed up on one line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use tactful_app::exports::dataset::{ExportFormat, ExportRequest, ExportSummary, export};
use tactful_app::{App, Config};
use tactful_domain::segment::parse_time;

use crate::progress::Counted;

/// Who the audit log names for exports from the command line.
const ACTOR: &str = "cli";
const ROLE: &str = "operator";

#[derive(Debug, clap::Args)]
pub struct ExportDatasetArgs {
    #[command(flatten)]
    pub config: Box<Config>,
    /// The purpose the export serves (a purpose key of the catalog): only people who permit it now
    /// are exported, each under a token of that purpose, and only properties that serve it.
    #[arg(long)]
    pub purpose: String,
    /// A dataset of the catalog's [analytics]: its properties are the columns, coarsened by its
    /// generalize rules. Without it, every non-identifying, non-sensitive property serving the
    /// purpose is a column.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Start of the window, included (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long, value_parser = time)]
    pub from: i64,
    /// End of the window, excluded (RFC 3339); not in the future.
    #[arg(long, value_parser = time)]
    pub to: i64,
    /// csv, or parquet (the same columns, each an optional UTF-8 string; empty cells are nulls).
    #[arg(long, default_value = "csv", value_parser = ["csv", "parquet"])]
    pub format: String,
    /// The file to write (`-` for standard output). It appears only once the export is complete.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

impl ExportDatasetArgs {
    pub fn config(&self) -> &Config {
        &self.config
    }
}

fn time(text: &str) -> Result<i64, String> {
    parse_time(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 time (2026-11-01T00:00:00Z)"))
}

pub async fn export_dataset(state: &App, args: ExportDatasetArgs) -> anyhow::Result<ExitCode> {
    let request = ExportRequest {
        purpose: args.purpose,
        dataset: args.dataset,
        from: args.from,
        to: args.to,
        format: ExportFormat::parse(&args.format).context("the format is csv or parquet")?,
        actor: ACTOR.into(),
        role: ROLE.into(),
    };
    let (purpose, dataset) = (request.purpose.clone(), request.dataset.clone());
    let progress = crate::progress::spinner("exporting", "bytes");
    let summary = if args.out.as_os_str() == "-" {
        let out = std::io::BufWriter::new(std::io::stdout());
        export(state, request, Counted::new(out, progress.clone())).await?.0
    } else {
        // Written beside the target and renamed into place, so a failed export leaves no file that
        // looks complete.
        let dir = match args.out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let partial = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        let counted = Counted::new(std::io::BufWriter::new(partial), progress.clone());
        let (summary, out) = export(state, request, counted).await?;
        let mut out = out.into_inner();
        out.flush().with_context(|| format!("writing {}", args.out.display()))?;
        let partial = out.into_inner().map_err(|error| error.into_error())?;
        partial.persist(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
        summary
    };
    progress.finish_and_clear();
    eprintln!("{}", describe(&summary, &purpose, dataset.as_deref(), &args.out));
    Ok(ExitCode::SUCCESS)
}

/// The one-line summary: what was written, who was left out, which properties never are.
fn describe(summary: &ExportSummary, purpose: &str, dataset: Option<&str>, out: &Path) -> String {
    let target =
        if out.as_os_str() == "-" { "standard output".to_owned() } else { out.display().to_string() };
    let mut line = format!(
        "Exported {} rows of {} people for {purpose}{} to {target} ({} columns: {}); {} events left out \
         (people who do not permit {purpose} now)",
        summary.rows,
        summary.people,
        dataset.map(|key| format!(" (dataset {key})")).unwrap_or_default(),
        summary.columns.len(),
        summary.columns.join(", "),
        summary.rows_left_out,
    );
    if !summary.properties_left_out.is_empty() {
        let never: Vec<String> =
            summary.properties_left_out.iter().map(|(path, why)| format!("{path} ({why})")).collect();
        line.push_str(&format!("; never exported: {}", never.join(", ")));
    }
    line.push('.');
    line
}
