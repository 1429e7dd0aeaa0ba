//! The one configuration struct. Every setting is a flag with a `TACTFUL_…` environment variable and
//! may also come from a TOML file (`--config`); precedence is file < environment < flag, and unknown
//! keys in the file are refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use serde::Deserialize;
use tactful_domain::secret::Secret;

use crate::limits::LimitSetting;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATABASE: &str = "sqlite:tactful-data/tactful.db";
const DEFAULT_CATALOG: &str = "tactful.toml";
const DEFAULT_MASTER_KEY_FILE: &str = "tactful-data/master.key";
const DEFAULT_MAX_INFLIGHT: usize = 512;
const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_POOL_SIZE: u32 = 16;
const DEFAULT_CONNECT_TIMEOUT: u64 = 30;
const DEFAULT_AUDIT_CHECKPOINT_SECONDS: u64 = 60;
const DEFAULT_NOTIFIER: &str = "file:tactful-data/notifications";
const DEFAULT_DELIVERY_RETRY_BASE_MS: u64 = 5_000;
const DEFAULT_DELIVERY_TIMEOUT_MS: u64 = 15_000;
const DEFAULT_LINK_MINUTES: u64 = 30;
const DEFAULT_SESSION_MINUTES: u64 = 60;
const DEFAULT_WORK_DEADLINE_MS: u64 = 10_000;
const DEFAULT_EXPORT_DEADLINE_MS: u64 = 600_000;
const DEFAULT_LIMIT_SIGN_IN_PER_ADDRESS: &str = "5/15m";
const DEFAULT_LIMIT_SIGN_IN_PER_CLIENT: &str = "20/1h";
const DEFAULT_LIMIT_API_KEY_FAILURES_PER_CLIENT: &str = "20/10m";
const DEFAULT_LIMIT_INGEST_PER_WRITE_KEY: &str = "100000/1s";

/// How the server runs. `tactful config example` prints this as an annotated TOML file.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TOML file with any of these settings (flags and environment variables override it).
    #[arg(long = "config", env = "TACTFUL_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "TACTFUL_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Database URL: `sqlite:PATH` (embedded, the default) or `postgres://…`.
    #[arg(long, env = "TACTFUL_DATABASE", default_value = DEFAULT_DATABASE)]
    pub database: String,

    /// Connections each instance keeps to PostgreSQL.
    #[arg(long, env = "TACTFUL_DATABASE_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE)]
    pub database_pool_size: u32,

    /// Seconds to keep retrying an unreachable database at start before giving up.
    #[arg(long, env = "TACTFUL_DATABASE_CONNECT_TIMEOUT", default_value_t = DEFAULT_CONNECT_TIMEOUT)]
    pub database_connect_timeout: u64,

    /// The catalog (data map).
    #[arg(long, env = "TACTFUL_CATALOG", default_value = DEFAULT_CATALOG)]
    pub catalog: PathBuf,

    /// File holding the master key (64 hex digits); created with mode 0600 on first start.
    #[arg(long, env = "TACTFUL_MASTER_KEY_FILE", default_value = DEFAULT_MASTER_KEY_FILE)]
    pub master_key_file: PathBuf,

    /// The master key itself (64 hex digits or base64), instead of the file. Environment only.
    #[arg(long, env = "TACTFUL_MASTER_KEY", hide = true, hide_env_values = true)]
    pub master_key: Option<Secret>,

    /// During a master-key rotation: files holding the keys being replaced (repeatable). Data they
    /// wrapped stays readable until `tactful keys rotate` has re-wrapped it.
    #[arg(
        long = "previous-master-key-file",
        env = "TACTFUL_PREVIOUS_MASTER_KEY_FILES",
        value_delimiter = ','
    )]
    pub previous_master_key_files: Vec<PathBuf>,

    /// During a master-key rotation: the keys being replaced, comma-separated. Environment only.
    #[arg(
        long = "previous-master-keys",
        env = "TACTFUL_PREVIOUS_MASTER_KEYS",
        value_delimiter = ',',
        hide = true,
        hide_env_values = true
    )]
    pub previous_master_keys: Vec<Secret>,

    /// Requests processed at once; beyond this, ingestion answers 429 with Retry-After.
    #[arg(long, env = "TACTFUL_MAX_INFLIGHT", default_value_t = DEFAULT_MAX_INFLIGHT)]
    pub max_inflight: usize,

    /// How long a client may take to send a request's head (line and headers), in milliseconds; a
    /// keep-alive connection idle this long is closed too.
    #[arg(long, env = "TACTFUL_HEADER_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,

    /// How long a request's whole body may take to arrive once its head is in, in milliseconds;
    /// later, the request is answered 408.
    #[arg(long, env = "TACTFUL_BODY_TIMEOUT_MS", default_value_t = DEFAULT_BODY_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,

    /// How long a request may take from its head to its answer, in milliseconds; later, it is
    /// answered 503 with Retry-After while its work still finishes.
    #[arg(long, env = "TACTFUL_REQUEST_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// On shutdown, how long requests in flight may take to finish, in milliseconds; connections
    /// still open then are dropped.
    #[arg(long, env = "TACTFUL_SHUTDOWN_TIMEOUT_MS", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_MS)]
    pub shutdown_timeout_ms: u64,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "TACTFUL_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Seconds between signed checkpoints of the audit log (one instance signs per period).
    #[arg(long, env = "TACTFUL_AUDIT_CHECKPOINT_SECONDS", default_value_t = DEFAULT_AUDIT_CHECKPOINT_SECONDS)]
    pub audit_checkpoint_seconds: u64,

    /// Where verification codes for self-service requests go: `file:DIR` (development: one file
    /// per message) or `webhook:https://…` (the brand's mailer or SMS gateway, signed with
    /// TACTFUL_NOTIFIER_SECRET).
    #[arg(long, env = "TACTFUL_NOTIFIER", default_value = DEFAULT_NOTIFIER)]
    pub notifier: String,

    /// The secret that signs notification webhooks. Environment only.
    #[arg(long, env = "TACTFUL_NOTIFIER_SECRET", hide = true, hide_env_values = true)]
    pub notifier_secret: Option<Secret>,

    /// First wait before retrying a destination that did not acknowledge, in milliseconds; each
    /// further failure doubles it (up to an hour), with jitter.
    #[arg(long, env = "TACTFUL_DELIVERY_RETRY_BASE_MS", default_value_t = DEFAULT_DELIVERY_RETRY_BASE_MS)]
    pub delivery_retry_base_ms: u64,

    /// How long a destination or notification webhook may take to answer, in milliseconds.
    #[arg(long, env = "TACTFUL_DELIVERY_TIMEOUT_MS", default_value_t = DEFAULT_DELIVERY_TIMEOUT_MS)]
    pub delivery_timeout_ms: u64,

    /// The address customers and the brand reach this server at (`https://privacy.example.com`),
    /// used in preference-center links. Defaults to `http://` and the listen address.
    #[arg(long, env = "TACTFUL_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Minutes a preference-center link stays valid after it is issued.
    #[arg(long, env = "TACTFUL_LINK_MINUTES", default_value_t = DEFAULT_LINK_MINUTES)]
    pub link_minutes: u64,

    /// Minutes a preference-center or console session lasts after signing in.
    #[arg(long, env = "TACTFUL_SESSION_MINUTES", default_value_t = DEFAULT_SESSION_MINUTES)]
    pub session_minutes: u64,

    /// How long a query answer, a whole model release or the console's quality check may compute,
    /// in milliseconds (at least 1); a query still computing then is answered 503 `too_slow`.
    #[arg(long, env = "TACTFUL_WORK_DEADLINE_MS", default_value_t = DEFAULT_WORK_DEADLINE_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub work_deadline_ms: u64,

    /// How long a dataset export may take, in milliseconds (at least 1).
    #[arg(long, env = "TACTFUL_EXPORT_DEADLINE_MS", default_value_t = DEFAULT_EXPORT_DEADLINE_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub export_deadline_ms: u64,
    /// Sign-in codes sent to one address, customer or not: `COUNT/WINDOW` (`5/15m`) or `off`.
    #[arg(long, env = "TACTFUL_LIMIT_SIGN_IN_PER_ADDRESS", default_value = DEFAULT_LIMIT_SIGN_IN_PER_ADDRESS)]
    pub limit_sign_in_per_address: LimitSetting,

    /// Sign-in codes one client address may ask for: `COUNT/WINDOW` or `off`.
    #[arg(long, env = "TACTFUL_LIMIT_SIGN_IN_PER_CLIENT", default_value = DEFAULT_LIMIT_SIGN_IN_PER_CLIENT)]
    pub limit_sign_in_per_client: LimitSetting,

    /// Refused API keys (API or console sign-in) from one client address; past it, that client's
    /// keys are refused even when right. `COUNT/WINDOW` or `off`.
    #[arg(
        long,
        env = "TACTFUL_LIMIT_API_KEY_FAILURES_PER_CLIENT",
        default_value = DEFAULT_LIMIT_API_KEY_FAILURES_PER_CLIENT
    )]
    pub limit_api_key_failures_per_client: LimitSetting,

    /// Events one write key may send: `COUNT/WINDOW` or `off`.
    #[arg(long, env = "TACTFUL_LIMIT_INGEST_PER_WRITE_KEY", default_value = DEFAULT_LIMIT_INGEST_PER_WRITE_KEY)]
    pub limit_ingest_per_write_key: LimitSetting,

    /// Behind a trusted reverse proxy: the header naming the client (`X-Forwarded-For`), whose last
    /// entry is taken as the client address. Unset, the connection's peer address is the client.
    #[arg(long, env = "TACTFUL_CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<String>,
}

impl Default for Config {
    /// The defaults of every setting, without reading flags, environment or file.
    fn default() -> Self {
        Config {
            config_file: None,
            listen: DEFAULT_LISTEN.parse().expect("the default address parses"),
            database: DEFAULT_DATABASE.to_owned(),
            database_pool_size: DEFAULT_POOL_SIZE,
            database_connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            catalog: DEFAULT_CATALOG.into(),
            master_key_file: DEFAULT_MASTER_KEY_FILE.into(),
            master_key: None,
            previous_master_key_files: Vec::new(),
            previous_master_keys: Vec::new(),
            max_inflight: DEFAULT_MAX_INFLIGHT,
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            body_timeout_ms: DEFAULT_BODY_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
            log_format: "text".to_owned(),
            audit_checkpoint_seconds: DEFAULT_AUDIT_CHECKPOINT_SECONDS,
            notifier: DEFAULT_NOTIFIER.to_owned(),
            notifier_secret: None,
            delivery_retry_base_ms: DEFAULT_DELIVERY_RETRY_BASE_MS,
            delivery_timeout_ms: DEFAULT_DELIVERY_TIMEOUT_MS,
            public_url: None,
            link_minutes: DEFAULT_LINK_MINUTES,
            session_minutes: DEFAULT_SESSION_MINUTES,
            work_deadline_ms: DEFAULT_WORK_DEADLINE_MS,
            export_deadline_ms: DEFAULT_EXPORT_DEADLINE_MS,
            limit_sign_in_per_address: default_limit(DEFAULT_LIMIT_SIGN_IN_PER_ADDRESS),
            limit_sign_in_per_client: default_limit(DEFAULT_LIMIT_SIGN_IN_PER_CLIENT),
            limit_api_key_failures_per_client: default_limit(DEFAULT_LIMIT_API_KEY_FAILURES_PER_CLIENT),
            limit_ingest_per_write_key: default_limit(DEFAULT_LIMIT_INGEST_PER_WRITE_KEY),
            client_address_header: None,
        }
    }
}

fn default_limit(text: &str) -> LimitSetting {
    text.parse().expect("the default limits parse")
}

impl Config {
    /// What the store needs to know beyond the URL.
    pub fn store_options(&self) -> tactful_store::Options {
        tactful_store::Options {
            pool_size: self.database_pool_size,
            connect_for: std::time::Duration::from_secs(self.database_connect_timeout),
        }
    }
}

/// The same settings as they may appear in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    database: Option<String>,
    database_pool_size: Option<u32>,
    database_connect_timeout: Option<u64>,
    catalog: Option<PathBuf>,
    master_key_file: Option<PathBuf>,
    max_inflight: Option<usize>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    log_format: Option<String>,
    audit_checkpoint_seconds: Option<u64>,
    notifier: Option<String>,
    delivery_retry_base_ms: Option<u64>,
    delivery_timeout_ms: Option<u64>,
    public_url: Option<String>,
    link_minutes: Option<u64>,
    session_minutes: Option<u64>,
    work_deadline_ms: Option<u64>,
    export_deadline_ms: Option<u64>,
    limit_sign_in_per_address: Option<LimitSetting>,
    limit_sign_in_per_client: Option<LimitSetting>,
    limit_api_key_failures_per_client: Option<LimitSetting>,
    limit_ingest_per_write_key: Option<LimitSetting>,
    client_address_header: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("the configuration file {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Applies the `--config` file beneath flags and environment variables: a file value is used only
    /// where the command line and the environment left the default. Relative paths in the file are
    /// relative to the file.
    pub fn with_file(mut self, matches: &ArgMatches) -> Result<Config, ConfigError> {
        let Some(path) = self.config_file.clone() else { return Ok(self) };
        let text = std::fs::read_to_string(&path)
            .map_err(|error| ConfigError::Read { path: path.clone(), error })?;
        let file: FileConfig = toml::from_str(&text).map_err(|error| ConfigError::Invalid {
            path: path.clone(),
            message: error.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let defaulted = |id: &str| matches!(matches.value_source(id), None | Some(ValueSource::DefaultValue));
        if let (Some(listen), true) = (file.listen, defaulted("listen")) {
            self.listen = listen;
        }
        if let (Some(database), true) = (file.database, defaulted("database")) {
            self.database = database;
        }
        if let (Some(size), true) = (file.database_pool_size, defaulted("database_pool_size")) {
            self.database_pool_size = size;
        }
        if let (Some(seconds), true) = (file.database_connect_timeout, defaulted("database_connect_timeout"))
        {
            self.database_connect_timeout = seconds;
        }
        if let (Some(catalog), true) = (file.catalog, defaulted("catalog")) {
            self.catalog = base.join(catalog);
        }
        if let (Some(key_file), true) = (file.master_key_file, defaulted("master_key_file")) {
            self.master_key_file = base.join(key_file);
        }
        if let (Some(max_inflight), true) = (file.max_inflight, defaulted("max_inflight")) {
            self.max_inflight = max_inflight;
        }
        let timeouts = [
            ("header_timeout_ms", file.header_timeout_ms, &mut self.header_timeout_ms),
            ("body_timeout_ms", file.body_timeout_ms, &mut self.body_timeout_ms),
            ("request_timeout_ms", file.request_timeout_ms, &mut self.request_timeout_ms),
        ];
        for (key, value, setting) in timeouts {
            if let (Some(ms), true) = (value, defaulted(key)) {
                if ms == 0 {
                    return Err(ConfigError::Invalid { path, message: format!("{key} must be at least 1") });
                }
                *setting = ms;
            }
        }
        if let (Some(ms), true) = (file.shutdown_timeout_ms, defaulted("shutdown_timeout_ms")) {
            self.shutdown_timeout_ms = ms;
        }
        if let (Some(format), true) = (file.log_format, defaulted("log_format")) {
            if format != "text" && format != "json" {
                return Err(ConfigError::Invalid {
                    path,
                    message: "log_format must be \"text\" or \"json\"".into(),
                });
            }
            self.log_format = format;
        }
        if let (Some(seconds), true) = (file.audit_checkpoint_seconds, defaulted("audit_checkpoint_seconds"))
        {
            self.audit_checkpoint_seconds = seconds;
        }
        if let (Some(notifier), true) = (file.notifier, defaulted("notifier")) {
            // A relative file: directory is relative to the configuration file, like other paths.
            self.notifier = match notifier.strip_prefix("file:") {
                Some(dir) => format!("file:{}", base.join(dir).display()),
                None => notifier,
            };
        }
        if let (Some(base_ms), true) = (file.delivery_retry_base_ms, defaulted("delivery_retry_base_ms")) {
            self.delivery_retry_base_ms = base_ms;
        }
        if let (Some(timeout_ms), true) = (file.delivery_timeout_ms, defaulted("delivery_timeout_ms")) {
            self.delivery_timeout_ms = timeout_ms;
        }
        if let (Some(url), None) = (file.public_url, &self.public_url) {
            self.public_url = Some(url);
        }
        if let (Some(minutes), true) = (file.link_minutes, defaulted("link_minutes")) {
            self.link_minutes = minutes;
        }
        if let (Some(minutes), true) = (file.session_minutes, defaulted("session_minutes")) {
            self.session_minutes = minutes;
        }
        for (value, id, field) in [
            (file.work_deadline_ms, "work_deadline_ms", &mut self.work_deadline_ms),
            (file.export_deadline_ms, "export_deadline_ms", &mut self.export_deadline_ms),
        ] {
            if let (Some(ms), true) = (value, defaulted(id)) {
                if ms == 0 {
                    return Err(ConfigError::Invalid {
                        path,
                        message: format!("{id} must be at least 1 (milliseconds)"),
                    });
                }
                *field = ms;
            }
        }
        for (value, id, field) in [
            (
                file.limit_sign_in_per_address,
                "limit_sign_in_per_address",
                &mut self.limit_sign_in_per_address,
            ),
            (file.limit_sign_in_per_client, "limit_sign_in_per_client", &mut self.limit_sign_in_per_client),
            (
                file.limit_api_key_failures_per_client,
                "limit_api_key_failures_per_client",
                &mut self.limit_api_key_failures_per_client,
            ),
            (
                file.limit_ingest_per_write_key,
                "limit_ingest_per_write_key",
                &mut self.limit_ingest_per_write_key,
            ),
        ] {
            if let (Some(value), true) = (value, defaulted(id)) {
                *field = value;
            }
        }
        if let (Some(header), None) = (file.client_address_header, &self.client_address_header) {
            self.client_address_header = Some(header);
        }
        Ok(self)
    }

    /// An annotated example configuration file.
    pub fn example() -> &'static str {
        r#"# Tactful server configuration. Every setting can also be given as a flag (--listen) or an
# environment variable (TACTFUL_LISTEN); flags beat the environment, which beats this file.

# Address to listen on.
listen = "127.0.0.1:8080"

# Database: "sqlite:PATH" for the embedded store (one server process), or
# "postgres://user:pass@host:5432/db" for several stateless instances over one database.
database = "sqlite:tactful-data/tactful.db"

# PostgreSQL only: connections each instance keeps, and how long to keep retrying an unreachable
# database at start (with backoff) before giving up.
database_pool_size = 16
database_connect_timeout = 30

# The catalog (data map). Relative paths are relative to this file.
catalog = "tactful.toml"

# The master key file (created with mode 0600 on first start). Keep a backup somewhere safe:
# without it the data in the database cannot be read. In production prefer the TACTFUL_MASTER_KEY
# environment variable, filled from your secret manager.
master_key_file = "tactful-data/master.key"

# Requests processed at once; beyond this, ingestion answers 429 with Retry-After.
max_inflight = 512

# Limits on every connection (milliseconds). A client that has not sent a request's head (line and
# headers) within header_timeout_ms is disconnected, and so is a keep-alive connection idle that
# long; a body that has not arrived whole within body_timeout_ms of its head is answered 408; a
# request not answered within request_timeout_ms is answered 503 with Retry-After (its work still
# finishes). None may be 0. On shutdown the server stops accepting, lets each connection finish its
# request, and drops what is still open after shutdown_timeout_ms.
header_timeout_ms = 10000
body_timeout_ms = 30000
request_timeout_ms = 60000
shutdown_timeout_ms = 30000

# "text" for people, "json" for log collectors.
log_format = "text"

# Seconds between signed checkpoints of the audit log. Whichever instance finds one due signs it;
# hand checkpoints to an outside party (tactful audit checkpoint --out FILE) to make the log
# tamper-evident even against someone who controls the database.
audit_checkpoint_seconds = 60

# Where verification codes of self-service requests go: "file:DIR" writes one file per message
# (development: the files hold addresses and codes, keep the directory private), or
# "webhook:https://mailer.example/tactful" POSTs them, signed with TACTFUL_NOTIFIER_SECRET, to the
# brand's mailer or SMS gateway.
notifier = "file:tactful-data/notifications"

# First wait before retrying a destination that did not acknowledge (ms); it doubles with each
# failure, up to an hour, with jitter, until the destination's give_up_after horizon.
delivery_retry_base_ms = 5000

# How long a destination or notification webhook may take to answer (ms). A delivery whose server
# died mid-call is tried again once this (times the batch of 16) has passed.
delivery_timeout_ms = 15000

# The address customers and the brand reach this server at; preference-center links point here.
# Serve it over HTTPS in production (sign-in cookies are Secure). Default: http:// + listen.
# public_url = "https://privacy.example.com"

# How long a preference-center link stays valid after the brand issues it, and how long a
# preference-center or console session lasts after signing in (minutes).
link_minutes = 30
session_minutes = 60

# How long heavy work may compute (ms, at least 1): a query answer, a whole model release or the
# console's quality check (a query still computing then is answered 503 too_slow and spends
# nothing; a late release keeps the previous one in service), and a dataset export.
work_deadline_ms = 10000
export_deadline_ms = 600000
# Rate limits, shared by every instance (counted in the database): "COUNT/WINDOW" with a window in
# s, m, h or d, or "off". Past one, the answer is 429 rate_limited with Retry-After.
# Sign-in codes sent to one address (customer or not), and asked for by one client address.
limit_sign_in_per_address = "5/15m"
limit_sign_in_per_client = "20/1h"
# Refused API keys (API or console sign-in) from one client address; past it, that client's keys
# are refused even when right, so guessing learns nothing.
limit_api_key_failures_per_client = "20/10m"
# Events one write key may send.
limit_ingest_per_write_key = "100000/1s"

# Behind a trusted reverse proxy, the header naming the client; its last entry is the client
# address (IPv6 counted per /64). Unset, the connection's peer is the client. Set it only behind a
# proxy that sets the header, or clients could name any address they like.
# client_address_header = "X-Forwarded-For"
"#
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn load(args: &[&str], file: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tactful-server.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["tactful".to_owned(), "--config".to_owned(), path.display().to_string()];
        argv.extend(args.iter().map(|arg| (*arg).to_owned()));
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        cli.config.with_file(&matches)
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let config =
            load(&["--listen", "0.0.0.0:9000"], "listen = \"127.0.0.1:7000\"\nmax_inflight = 64\n").unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.max_inflight, 64);
        assert_eq!(config.database, "sqlite:tactful-data/tactful.db");
    }

    #[test]
    fn defaults_match_the_flags_defaults() {
        let parsed = Cli::try_parse_from(["tactful"]).unwrap().config;
        let default = Config::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = load(&[], "listne = \"127.0.0.1:7000\"\n").unwrap_err();
        assert!(error.to_string().contains("unknown field `listne`"), "{error}");
    }

    #[test]
    fn the_example_is_a_valid_file() {
        let config = load(&[], Config::example()).unwrap();
        assert!(config.catalog.ends_with("tactful.toml"));
    }

    #[test]
    fn timeouts_of_zero_are_refused() {
        let error = load(&[], "body_timeout_ms = 0\n").unwrap_err();
        assert!(error.to_string().contains("body_timeout_ms must be at least 1"), "{error}");
        let config = load(&[], "header_timeout_ms = 250\nshutdown_timeout_ms = 0\n").unwrap();
        assert_eq!((config.header_timeout_ms, config.shutdown_timeout_ms), (250, 0));
        let flag = Cli::try_parse_from(["tactful", "--request-timeout-ms", "0"]);
        assert!(flag.is_err());
    }

    #[test]
    fn deadlines_are_read_from_flags_and_the_file_and_must_be_at_least_one_millisecond() {
        let config = load(&["--work-deadline-ms", "300"], "export_deadline_ms = 9000\n").unwrap();
        assert_eq!((config.work_deadline_ms, config.export_deadline_ms), (300, 9000));
        let error = load(&[], "work_deadline_ms = 0\n").unwrap_err();
        assert!(error.to_string().contains("work_deadline_ms must be at least 1"), "{error}");
        let refused = Cli::try_parse_from(["tactful", "--export-deadline-ms", "0"]);
        assert!(refused.is_err(), "a zero deadline is refused on the command line too");
        assert_eq!(Config::default().work_deadline_ms, 10_000);
        assert_eq!(Config::default().export_deadline_ms, 600_000);
    }

    #[test]
    fn the_master_key_never_prints() {
        let config = Config { master_key: Some(Secret::new("00".repeat(32))), ..Config::default() };
        assert!(!format!("{config:?}").contains(&"00".repeat(32)));
    }
}
