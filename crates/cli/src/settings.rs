//! Which settings each command shows and accepts, and which commands may create a store: a command
//! that only reads never makes up an empty database and a master key for a path that was mistyped.

use std::path::Path;

use clap::parser::ValueSource;
use tactful_app::Config;

/// The settings only a running server uses (listening, connections, sessions, rate limits, the
/// audit checkpoint schedule, the log format). Other commands read them from the environment or a
/// configuration file without complaint, but neither list them in `--help` nor take them as flags.
pub const SERVE_ONLY: &[&str] = &[
    "listen",
    "max_inflight",
    "header_timeout_ms",
    "body_timeout_ms",
    "request_timeout_ms",
    "shutdown_timeout_ms",
    "log_format",
    "audit_checkpoint_seconds",
    "session_minutes",
    "limit_sign_in_per_address",
    "limit_sign_in_per_client",
    "limit_api_key_failures_per_client",
    "limit_ingest_per_write_key",
    "client_address_header",
];

/// The commands that may start a new store (a database and a master key where there are none);
/// every other command refuses a missing one.
pub const MAY_CREATE_STORE: &[&str] = &["serve", "restore", "api-keys create", "items import"];

/// The commands that run the server, and so use the serve-only settings (`demo` has its own).
pub const SERVING: &[&str] = &["serve", "demo"];

/// The command line with the serve-only settings hidden from every command but those that serve.
pub fn shape(command: clap::Command) -> clap::Command {
    command.mut_subcommands(|sub| if SERVING.contains(&sub.get_name()) { sub } else { hide_serve_only(sub) })
}

fn hide_serve_only(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| if SERVE_ONLY.contains(&arg.get_id().as_str()) { arg.hide(true) } else { arg })
        .mut_subcommands(hide_serve_only)
}

/// Refuses a serve-only setting given as a flag to another command (`name` is how it was called).
pub fn refuse_serve_only(name: &str, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    for id in SERVE_ONLY {
        if matches!(matches.try_get_raw(id), Ok(Some(_)))
            && matches.value_source(id) == Some(ValueSource::CommandLine)
        {
            anyhow::bail!(
                "--{} is a setting of `tactful serve`; `tactful {name}` does not use it",
                id.replace('_', "-")
            );
        }
    }
    Ok(())
}

/// For a command that reads an existing store: refuses when the SQLite database or the master key
/// is missing, instead of creating an empty store and a new key (`name` is how it was called).
pub fn require_existing_store(name: &str, config: &Config) -> anyhow::Result<()> {
    require_existing_database(name, config)?;
    if config.master_key.is_none() && !config.master_key_file.exists() {
        anyhow::bail!(
            "no master key at {}: `tactful {name}` opens the store with the key it was created with \
             and makes none up (--master-key-file or TACTFUL_MASTER_KEY)",
            config.master_key_file.display()
        );
    }
    Ok(())
}

/// Refuses when the SQLite database is missing (PostgreSQL's are made by an administrator).
pub fn require_existing_database(name: &str, config: &Config) -> anyhow::Result<()> {
    if let Some(path) = tactful_store::sqlite_path(&config.database).map(Path::new)
        && !path.exists()
    {
        anyhow::bail!(
            "no database at {}: `tactful {name}` reads an existing store and creates none \
             (name it with --database or TACTFUL_DATABASE; `tactful serve` creates a new one)",
            path.display()
        );
    }
    Ok(())
}
