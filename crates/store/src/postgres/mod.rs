//! The PostgreSQL store, for many stateless server instances over one database (and for
//! Postgres-compatible distributed engines: see ARCHITECTURE.md for the SQL features avoided).
//! Every write is one transaction whose correctness does not depend on being the only writer:
//! inserts that must not collide use `ON CONFLICT DO NOTHING` and count what they wrote, updates are
//! conditional on what was read, and a write that finds the world changed under it is retried whole.

mod analytics;
mod audit;
mod consent;
mod credentials;
mod deliveries;
mod erasures;
mod forward;
mod ingest;
mod limits;
mod model;
mod operations;
mod requests;
mod retention;
mod rights;
mod sessions;
mod subjects;
mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions};
use tactful_vault::{MasterKeys, Vault};

use crate::{Options, Result, Store, StoreError};

/// Migrations in order; the `tactful_migrations` table records which are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_foundation.sql"),
    include_str!("migrations/0002_coordination.sql"),
    include_str!("migrations/0003_consent_access_audit.sql"),
    include_str!("migrations/0004_requests.sql"),
    include_str!("migrations/0005_personalization.sql"),
    include_str!("migrations/0006_analytics.sql"),
    include_str!("migrations/0007_sign_in_codes.sql"),
    include_str!("migrations/0008_window_envelopes.sql"),
    include_str!("migrations/0009_consent_provenance.sql"),
    include_str!("migrations/0010_rate_limits.sql"),
    include_str!("migrations/0011_web_sessions.sql"),
    include_str!("migrations/0012_erasure_journal.sql"),
    include_str!("migrations/0013_consent_strings.sql"),
    include_str!("migrations/0014_forwarding.sql"),
];

pub struct PostgresStore {
    pool: PgPool,
    vault: Arc<Vault>,
    keys: ingest::KeyCache,
    /// Audit appends waiting to be committed together.
    audit_queue: Arc<crate::audit_queue::AuditQueue>,
}

/// Classifies a database error: what a retry can fix, what means the database is away, and bugs.
pub(crate) fn pg(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) => match database.code().as_deref() {
            // serialization_failure, deadlock_detected: another transaction won; retry.
            Some("40001" | "40P01") => StoreError::Conflict(database.message().to_owned()),
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, read-only,
            // and a database that is not accepting connections (object_not_in_prerequisite_state).
            Some("57P01" | "57P02" | "57P03" | "53300" | "25006" | "55000") => {
                StoreError::Unavailable(database.message().to_owned())
            }
            Some(code) if code.starts_with("08") => StoreError::Unavailable(database.message().to_owned()),
            _ => StoreError::Internal(error.to_string()),
        },
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(error.to_string())
        }
        sqlx::Error::Protocol(_) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Internal(error.to_string()),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        pg(error)
    }
}

/// Where the database is, without the password, for messages.
fn describe(options: &PgConnectOptions) -> String {
    format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or("(default)"))
}

impl PostgresStore {
    /// Connects (retrying with backoff while the database is unreachable, up to
    /// `options.connect_for`), migrates, and opens the vault.
    pub async fn open(
        url: &str,
        master: impl Into<MasterKeys>,
        options: &Options,
    ) -> Result<(PostgresStore, std::sync::Arc<Vault>)> {
        let master = master.into();
        let connect: PgConnectOptions = url
            .parse()
            .map_err(|error| StoreError::Unavailable(format!("the database URL is not valid: {error}")))?;
        let connect = connect.log_statements(tracing::log::LevelFilter::Trace);
        let place = describe(&connect);
        let started = Instant::now();
        let mut delay = Duration::from_millis(250);
        // One plain connection first: it fails fast when the server is down (a pool would wait out
        // its acquire timeout), so the retries and their messages come at a human pace.
        let pool = loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&connect),
            )
            .await;
            let error = match attempt {
                Ok(Ok(conn)) => {
                    let _ = sqlx::Connection::close(conn).await;
                    break PgPoolOptions::new()
                        .max_connections(options.pool_size.max(2))
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_with(connect.clone())
                        .await
                        .map_err(|error| {
                            StoreError::Unavailable(format!("cannot open a pool to {place}: {error}"))
                        })?;
                }
                Ok(Err(error)) => match pg(error) {
                    StoreError::Unavailable(reason) => reason,
                    other => {
                        return Err(StoreError::Unavailable(format!(
                            "cannot connect to PostgreSQL at {place}: {other}"
                        )));
                    }
                },
                Err(_) => "no answer within 5 s".to_owned(),
            };
            if started.elapsed() + delay > options.connect_for {
                return Err(StoreError::Unavailable(format!(
                    "cannot reach PostgreSQL at {place} (tried for {} s): {error}",
                    started.elapsed().as_secs()
                )));
            }
            tracing::warn!(database = %place, %error, retry_in_ms = delay.as_millis() as u64, "PostgreSQL is unreachable; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        };
        migrate(&pool).await?;
        let wrapped_root = index_root(&pool, &master).await?;
        let vault = std::sync::Arc::new(Vault::open(master, &wrapped_root)?);
        // A database restored from a backup taken before an erasure is erased again, before anything
        // reads it.
        let reapplied = erasures::reapply(&pool, &vault, crate::shared::now_millis()).await?;
        if reapplied > 0 {
            tracing::warn!(reapplied, "erased again people a restored database still held");
        }
        tracing::info!(database = %place, pool = options.pool_size, "connected to PostgreSQL");
        Ok((
            PostgresStore {
                pool,
                vault: vault.clone(),
                keys: ingest::KeyCache::default(),
                audit_queue: Arc::default(),
            },
            vault,
        ))
    }
}

/// Applies pending migrations. Several instances may start at once: each migration records its
/// version in the same transaction as its DDL, and a second instance trying the same version waits
/// on the first's row, then finds it applied and moves on.
async fn migrate(pool: &PgPool) -> Result<()> {
    // Instances starting together on an empty database race to create the ledger of migrations:
    // PostgreSQL's `IF NOT EXISTS` is not atomic against another session creating the same table
    // (a unique violation on its catalog, or "already exists"). The loser finds it made and goes
    // on; every migration after that is claimed by one instance in the transaction that applies it.
    for attempt in 1.. {
        let created = sqlx::query(
            "CREATE TABLE IF NOT EXISTS tactful_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(pool)
        .await;
        match created {
            Ok(_) => break,
            Err(sqlx::Error::Database(error))
                if matches!(error.code().as_deref(), Some("23505" | "42P07")) && attempt < 5 =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let found: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM tactful_migrations").fetch_one(pool).await?;
    let found = found.unwrap_or(0);
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        let mut tx = pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO tactful_migrations (version, applied_at) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(crate::shared::now_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(*migration))
            .execute(&mut *tx)
            .await
            .map_err(|error| StoreError::Internal(format!("migration {version} failed: {error}")))?;
        tx.commit().await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    Ok(())
}

/// The wrapped index root, created by whichever instance starts first.
async fn index_root(pool: &PgPool, master: &MasterKeys) -> Result<Vec<u8>> {
    sqlx::query("INSERT INTO keyring (name, wrapped, created_at) VALUES ('index_root', $1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(master.current.new_index_root())
        .bind(crate::shared::now_millis())
        .execute(pool)
        .await?;
    Ok(sqlx::query_scalar("SELECT wrapped FROM keyring WHERE name = 'index_root'").fetch_one(pool).await?)
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }
}

/// The next value of counter `name`, inside the caller's transaction: gapless, because the row stays
/// locked until that transaction ends and a rollback takes the increment with it.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) async fn next_counter_value(tx: &mut sqlx::PgConnection, name: &str) -> Result<i64> {
    sqlx::query("INSERT INTO counters (name, value) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(sqlx::query_scalar("UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value")
        .bind(name)
        .fetch_one(&mut *tx)
        .await?)
}
