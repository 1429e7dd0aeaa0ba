//! `tactful insights query`: the aggregate API from the command line, for analysts and operators —
//! the same checks, budget and audit entry as `POST /v1/insights/query`.

use std::process::ExitCode;

use tactful_app::Config;
use tactful_app::insights::{Asker, Query};

#[derive(Debug, clap::Subcommand)]
pub enum InsightsCommand {
    /// Answer one aggregate query and print the JSON answer.
    Query {
        #[command(flatten)]
        config: Box<Config>,
        /// The dataset, as the catalog's [analytics.datasets] declares it.
        #[arg(long)]
        dataset: String,
        /// events, people, sum or mean.
        #[arg(long, default_value = "events")]
        metric: String,
        /// The measure a sum or mean is of.
        #[arg(long)]
        property: Option<String>,
        /// Dimensions, comma-separated (event, source, day, week, or a declared property path).
        #[arg(long, value_delimiter = ',')]
        group_by: Vec<String>,
        /// Start of the window (RFC 3339).
        #[arg(long)]
        from: String,
        /// End of the window (RFC 3339, exclusive; not in the future).
        #[arg(long)]
        to: String,
        /// The ε this answer spends (datasets with a privacy budget).
        #[arg(long)]
        epsilon: Option<f64>,
    },
}

impl InsightsCommand {
    pub fn config(&self) -> &Config {
        match self {
            InsightsCommand::Query { config, .. } => config,
        }
    }
}

pub async fn insights(state: &tactful_app::App, command: InsightsCommand) -> anyhow::Result<ExitCode> {
    let InsightsCommand::Query { dataset, metric, property, group_by, from, to, epsilon, .. } = command;
    let query = Query { dataset, metric, property, group_by, from, to, epsilon };
    match tactful_app::insights::run(state, Asker { actor: "cli", role: "operator" }, &query).await {
        Ok(answer) => {
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{}: {}", error.code.as_str(), error.message);
            Ok(ExitCode::FAILURE)
        }
    }
}
