//! `tactful destinations`: how each destination events flow on to is doing, and sending one again
//! what arrived since a time and is permitted now (after it lost data, or was fixed).

use std::process::ExitCode;

use tactful_app::{App, Config};

#[derive(Debug, clap::Subcommand)]
pub enum DestinationsCommand {
    /// Each destination that receives events: delivered, kept from it (per reason), failures, lag.
    Status {
        #[command(flatten)]
        config: Box<Config>,
    },
    /// Send NAME again every event that arrived since T and is permitted now (under the same
    /// messageIds). A running server does the sending.
    Replay {
        #[command(flatten)]
        config: Box<Config>,
        /// The destination's key (or name) in the catalog.
        name: String,
        /// An RFC 3339 time (2026-01-31T00:00:00Z), or how long ago (24h, 7d).
        #[arg(long, value_name = "T")]
        since: String,
    },
}

impl DestinationsCommand {
    pub fn config(&self) -> &Config {
        match self {
            DestinationsCommand::Status { config } | DestinationsCommand::Replay { config, .. } => config,
        }
    }
}

/// A time as `--since` takes it: RFC 3339, or a period back from `now` (`24h`, `7d`).
pub fn since(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(at) = tactful_domain::segment::parse_time(text) {
        return Ok(at);
    }
    let ago = text.trim();
    if let Some(hours) = ago.strip_suffix('h').and_then(|hours| hours.parse::<i64>().ok()) {
        return Ok(now.saturating_sub(hours.saturating_mul(3_600_000)));
    }
    match ago.parse::<tactful_domain::period::Retention>() {
        Ok(period) => Ok(now.saturating_sub(period.as_millis())),
        Err(_) => {
            anyhow::bail!("--since {text:?} is neither an RFC 3339 time nor a period such as 24h or 7d")
        }
    }
}

pub async fn run(app: &App, command: DestinationsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DestinationsCommand::Status { .. } => {
            let reports = tactful_app::forward::report(app).await?;
            if reports.is_empty() {
                println!("No destination receives events (see docs/forwarding.md).");
            }
            for report in reports {
                let refused: Vec<String> =
                    report.refused.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
                println!(
                    "{} ({}): delivered {}, failures {}, lag {} s, kept back: {}{}",
                    report.key,
                    report.kind,
                    report.delivered,
                    report.failures,
                    report.lag_seconds,
                    if refused.is_empty() { "nothing".to_owned() } else { refused.join(", ") },
                    report.last_error.map(|error| format!("; last error: {error}")).unwrap_or_default()
                );
            }
        }
        DestinationsCommand::Replay { name, since: text, .. } => {
            let at = since(&text, app.now())?;
            tactful_app::forward::replay(app, &name, at).await?;
            println!(
                "{name} will be sent again what arrived since {} and is permitted now.",
                tactful_domain::segment::format_time(at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_period_back() {
        let now = 1_800_000_000_000;
        assert_eq!(since("2026-01-31T00:00:00Z", now).unwrap(), 1_769_817_600_000);
        assert_eq!(since("24h", now).unwrap(), now - 86_400_000);
        assert_eq!(since("7d", now).unwrap(), now - 7 * 86_400_000);
        assert!(since("yesterday", now).unwrap_err().to_string().contains("24h"));
    }
}
