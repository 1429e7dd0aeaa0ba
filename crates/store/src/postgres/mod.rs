//! The PostgreSQL store, for many stateless server instances over one database (and for
//! Postgres-compatible distributed engines: see ARCHITECTURE.md for the SQL features avoided).
//! Every write is one transaction whose correctness does not depend on being the only writer:
//! inserts that must not collide use `ON CONFLICT DO NOTHING` and count what they wrote, updates are
//! conditional on what was read, and a write that finds the world changed under it is retried whole.

mod access;
mod analytics;
mod ingest;
mod model;
mod requests;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, PgConnection, Row};
use tactful_domain::minimize::DropReason;
use tactful_vault::{Blind, MasterKeys, Vault};

use std::sync::Arc;

use tactful_domain::audit::{AuditEvent, Checkpoint};
use tactful_domain::catalog::Catalog;
use tactful_domain::consent::ConsentEvent;
use tactful_domain::policy::Policy;
use tactful_domain::request::RequestStatus;

use crate::resolve::ConsentRow;
use crate::{
    ApiKeyRecord, Budget, CodeOutcome, DeliveryAttempt, DeliveryOutcome, DeliveryRecord, DropCount,
    EventCursor, FamilyActivity, IngestEvent, IngestOutcome, ItemRecord, LedgerEntry, LegalHold, ModelChange,
    NewDelivery, NewRequest, Options, OutboxMessage, PurgeReport, RequestRecord, RequestUpdate, RequestView,
    Result, RetentionReport, RewrapBatch, Scan, ShredOutcome, ShredPlan, SignInCode, SpendOutcome, Stats,
    Store, StoreError, StoredAuditEntry, StoredEvent, StoredIdentity, StoredProfileValue, StoredReceipt,
    SubjectData, SubjectState, Suppression, WindowCursor, WindowPage, WrappedKeys,
};

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
];

pub struct PostgresStore {
    pool: PgPool,
    vault: std::sync::Arc<Vault>,
    keys: ingest::KeyCache,
}

/// Classifies a database error: what a retry can fix, what means the database is away, and bugs.
pub(crate) fn pg(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) => match database.code().as_deref() {
            // serialization_failure, deadlock_detected: another transaction won; retry.
            Some("40001" | "40P01") => StoreError::Conflict(database.message().to_owned()),
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, read-only.
            Some("57P01" | "57P02" | "57P03" | "53300" | "25006") => {
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
        tracing::info!(database = %place, pool = options.pool_size, "connected to PostgreSQL");
        Ok((PostgresStore { pool, vault: vault.clone(), keys: ingest::KeyCache::default() }, vault))
    }
}

/// Applies pending migrations. Several instances may start at once: each migration records its
/// version in the same transaction as its DDL, and a second instance trying the same version waits
/// on the first's row, then finds it applied and moves on.
async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS tactful_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
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
        .bind(crate::now_millis())
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
        .bind(crate::now_millis())
        .execute(pool)
        .await?;
    Ok(sqlx::query_scalar("SELECT wrapped FROM keyring WHERE name = 'index_root'").fetch_one(pool).await?)
}

/// Everything stored about a subject's family (its events too, if `events`), sealed; `None` for an
/// unknown or erased subject.
async fn subject_data(conn: &mut PgConnection, subject: &str, events: bool) -> Result<Option<SubjectData>> {
    let Some(root) = access::root(conn, subject).await? else { return Ok(None) };
    let mut data = SubjectData { subject: root.clone(), ..SubjectData::default() };
    data.keys =
        sqlx::query("SELECT id, wrapped_key FROM subjects WHERE id = $1 OR merged_into = $1 ORDER BY id")
            .bind(&root)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("wrapped_key")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let members: Vec<String> = data.keys.iter().map(|(id, _)| id.clone()).collect();
    for row in
        sqlx::query("SELECT subject_id, kind, blind, sealed FROM identities WHERE subject_id = ANY($1)")
            .bind(&members)
            .fetch_all(&mut *conn)
            .await?
    {
        data.identities.push(StoredIdentity {
            subject: row.try_get("subject_id")?,
            kind: row.try_get("kind")?,
            blind: crate::blind_from(row.try_get("blind")?)?,
            sealed: row.try_get("sealed")?,
        });
    }
    for row in sqlx::query(
        "SELECT subject_id, path, sealed, updated_at FROM profile_values WHERE subject_id = ANY($1)",
    )
    .bind(&members)
    .fetch_all(&mut *conn)
    .await?
    {
        data.profile.push(StoredProfileValue {
            subject: row.try_get("subject_id")?,
            path: row.try_get("path")?,
            sealed: row.try_get("sealed")?,
            updated_at: row.try_get("updated_at")?,
        });
    }
    if events {
        for row in sqlx::query(
            "SELECT subject_id, source, dedupe, type, name, timestamp, received_at, sealed FROM events
             WHERE subject_id = ANY($1) ORDER BY timestamp, received_at, dedupe",
        )
        .bind(&members)
        .fetch_all(&mut *conn)
        .await?
        {
            let dedupe: Vec<u8> = row.try_get("dedupe")?;
            data.events.push(StoredEvent {
                subject: row.try_get("subject_id")?,
                source: row.try_get("source")?,
                dedupe: crate::dedupe_from(dedupe)?,
                kind: row.try_get("type")?,
                name: row.try_get("name")?,
                timestamp: row.try_get("timestamp")?,
                received_at: row.try_get("received_at")?,
                sealed: row.try_get("sealed")?,
            });
        }
    }
    data.keep_newest_profile_values();
    Ok(Some(data))
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ingest(&self, events: Vec<IngestEvent>, policy: Arc<Policy>) -> Result<Vec<IngestOutcome>> {
        ingest::ingest(self, &policy, &events).await
    }

    async fn subject_state(&self, subject: &str) -> Result<Option<SubjectState>> {
        let mut conn = self.pool.acquire().await?;
        access::subject_state(&mut conn, subject).await
    }

    async fn record_consents(
        &self,
        subject: &str,
        events: Vec<(ConsentEvent, String)>,
        audit: Vec<AuditEvent>,
        deliveries: Vec<NewDelivery>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let root = access::root(&mut tx, subject)
            .await?
            .ok_or_else(|| StoreError::Internal("consent for a subject that does not exist".into()))?;
        let rows: Vec<ConsentRow> = events
            .into_iter()
            .map(|(event, receipt)| ConsentRow { subject: root.clone(), event, receipt })
            .collect();
        let now = crate::now_millis();
        access::write_consents(&mut tx, &rows, now).await?;
        requests::enqueue(&mut tx, &deliveries, now).await?;
        access::append_audit(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn consent_ledger(&self, after: Option<(i64, String)>, limit: u32) -> Result<Vec<LedgerEntry>> {
        let mut conn = self.pool.acquire().await?;
        access::consent_ledger(&mut conn, after, limit).await
    }

    async fn lapsed_consents(&self, now: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        let mut conn = self.pool.acquire().await?;
        access::lapsed_consents(&mut conn, now, limit).await
    }

    async fn receipt(&self, id: &str) -> Result<Option<StoredReceipt>> {
        let mut conn = self.pool.acquire().await?;
        access::receipt(&mut conn, id).await
    }

    async fn receipts(&self, subject: &str) -> Result<Vec<StoredReceipt>> {
        let mut conn = self.pool.acquire().await?;
        access::receipts(&mut conn, subject).await
    }

    async fn audit_append(&self, events: Vec<AuditEvent>, at: i64) -> Result<Vec<u64>> {
        let mut tx = self.pool.begin().await?;
        let positions = access::append_audit(&mut tx, &events, at).await?;
        tx.commit().await?;
        Ok(positions)
    }

    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<StoredAuditEntry>> {
        let mut conn = self.pool.acquire().await?;
        access::audit_entries(&mut conn, after, limit).await
    }

    async fn audit_for_subject(&self, pseudonym: &str, limit: u32) -> Result<Vec<StoredAuditEntry>> {
        let mut conn = self.pool.acquire().await?;
        access::audit_for_subject(&mut conn, pseudonym, limit).await
    }

    async fn audit_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>> {
        let mut tx = self.pool.begin().await?;
        let checkpoint = access::audit_checkpoint(&mut tx, &self.vault, at).await?;
        tx.commit().await?;
        Ok(checkpoint)
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let mut conn = self.pool.acquire().await?;
        access::audit_checkpoints(&mut conn).await
    }

    async fn create_api_key(&self, key: ApiKeyRecord, audit: AuditEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        access::create_api_key(&mut tx, &key, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>> {
        let mut conn = self.pool.acquire().await?;
        access::api_key(&mut conn, &hash).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let mut conn = self.pool.acquire().await?;
        access::api_keys(&mut conn).await
    }

    async fn create_sign_in_code(&self, code: SignInCode) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        access::create_sign_in_code(&mut conn, &code).await
    }

    async fn try_sign_in_code(
        &self,
        id: &str,
        hash: [u8; 32],
        now: i64,
        max_attempts: u32,
    ) -> Result<CodeOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = access::try_sign_in_code(&mut tx, id, &hash, now, max_attempts).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoke_api_key(&self, id: &str, at: i64, audit: AuditEvent) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let revoked = access::revoke_api_key(&mut tx, id, at, &audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn subject_by_identifier(&self, blind: Blind) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT subject_id FROM identities WHERE blind = $1")
            .bind(blind.0.as_slice())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn subject_data(&self, subject: &str) -> Result<Option<SubjectData>> {
        let mut tx = self.pool.begin().await?;
        let data = subject_data(&mut tx, subject, true).await?;
        tx.commit().await?;
        Ok(data)
    }

    async fn drop_counts(&self) -> Result<Vec<DropCount>> {
        let rows = sqlx::query(
            "SELECT source, path, reason, count, last_seen FROM dropped_properties ORDER BY source, count DESC, path",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let reason: String = row.try_get("reason")?;
                Ok(DropCount {
                    source: row.try_get("source")?,
                    path: row.try_get("path")?,
                    reason: DropReason::parse(&reason)
                        .ok_or_else(|| StoreError::Internal(format!("unknown drop reason {reason:?}")))?,
                    count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
                    last_seen: row.try_get("last_seen")?,
                })
            })
            .collect()
    }

    async fn stats(&self) -> Result<Stats> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM subjects WHERE merged_into IS NULL) AS subjects,
                    (SELECT count(*) FROM identities) AS identities,
                    (SELECT count(*) FROM events) AS events,
                    (SELECT count(*) FROM profile_values) AS profile_values",
        )
        .fetch_one(&self.pool)
        .await?;
        let count =
            |name: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
        Ok(Stats {
            subjects: count("subjects")?,
            identities: count("identities")?,
            events: count("events")?,
            profile_values: count("profile_values")?,
        })
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn outbox_enqueue(&self, topic: &str, payload: Vec<u8>, now: i64) -> Result<String> {
        let id = crate::new_message_id();
        sqlx::query(
            "INSERT INTO outbox (id, topic, payload, created_at, not_before) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&id)
        .bind(topic)
        .bind(payload)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    async fn outbox_claim(
        &self,
        topic: &str,
        limit: u32,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxMessage>> {
        // SKIP LOCKED: instances claiming at once each get different messages instead of waiting.
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until = $3 + $4, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE topic = $1 AND not_before <= $3 AND (leased_until IS NULL OR leased_until <= $3)
                          ORDER BY not_before, id LIMIT $2
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, topic, payload, attempts, created_at",
        )
        .bind(topic)
        .bind(i64::from(limit))
        .bind(now)
        .bind(lease_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .into_iter()
            .map(|row| {
                Ok(OutboxMessage {
                    id: row.try_get("id")?,
                    topic: row.try_get("topic")?,
                    payload: row.try_get("payload")?,
                    attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(claimed)
    }

    async fn outbox_complete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn outbox_retry(&self, id: &str, not_before: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET not_before = $2, leased_until = NULL, last_error = $3 WHERE id = $1")
            .bind(id)
            .bind(not_before)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn job_claim(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        every_ms: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        sqlx::query("INSERT INTO jobs (name, next_run_at) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&self.pool)
            .await?;
        let claimed = sqlx::query(
            "UPDATE jobs SET leased_by = $2, leased_until = $3 + $5, next_run_at = $3 + $4
             WHERE name = $1 AND next_run_at <= $3 AND (leased_until IS NULL OR leased_until <= $3)",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(every_ms)
        .bind(lease_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    async fn job_release(&self, name: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET leased_by = NULL, leased_until = NULL WHERE name = $1 AND leased_by = $2",
        )
        .bind(name)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_request(&self, record: RequestRecord, audit: Vec<AuditEvent>) -> Result<NewRequest> {
        let mut tx = self.pool.begin().await?;
        let created = requests::create_request(&mut tx, &record, &audit).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn request(&self, id: &str) -> Result<Option<RequestView>> {
        let mut conn = self.pool.acquire().await?;
        requests::request(&mut conn, id).await
    }

    async fn requests(&self, subject: Option<&str>, limit: u32) -> Result<Vec<RequestRecord>> {
        let mut conn = self.pool.acquire().await?;
        requests::requests(&mut conn, subject, limit).await
    }

    async fn open_requests(&self, limit: u32) -> Result<Vec<RequestRecord>> {
        let mut conn = self.pool.acquire().await?;
        requests::open_requests(&mut conn, limit).await
    }

    async fn update_request(&self, id: &str, update: RequestUpdate) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let applied =
            requests::update_request(&mut tx, &self.vault, id, &update, crate::now_millis()).await?;
        tx.commit().await?;
        Ok(applied)
    }

    async fn claim_requests(&self, now: i64, lease_ms: i64, limit: u32) -> Result<Vec<RequestRecord>> {
        let mut tx = self.pool.begin().await?;
        let claimed = requests::claim_requests(&mut tx, now, lease_ms, limit).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn hold(&self, holds: Vec<LegalHold>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        requests::hold(&mut tx, &holds, crate::now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn legal_holds(&self, subject: &str) -> Result<Vec<LegalHold>> {
        let mut conn = self.pool.acquire().await?;
        requests::legal_holds(&mut conn, subject).await
    }

    async fn shred(&self, subject: &str, plan: ShredPlan, now: i64) -> Result<ShredOutcome> {
        let outcome = requests::shred(&self.pool, &self.vault, subject, &plan, now).await?;
        // This instance forgets the keys at once. Other instances' ingestion caches may hold a copy
        // until they start over or fill up; nothing uses it, since no identifier leads to an erased
        // subject any more and ingestion refuses to write under an erased one.
        if let ShredOutcome::Shredded { members, .. } = &outcome {
            self.keys.forget(members);
        }
        Ok(outcome)
    }

    async fn purge_erased(&self, limit: u32) -> Result<PurgeReport> {
        let mut tx = self.pool.begin().await?;
        let report = requests::purge_erased(&mut tx, limit, crate::now_millis()).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn set_restricted(&self, subject: &str, restricted: bool, audit: Vec<AuditEvent>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        requests::set_restricted(&mut tx, subject, restricted, &audit, crate::now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn suppress(&self, identifiers: Vec<Suppression>, audit: Vec<AuditEvent>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let added = requests::suppress(&mut tx, &identifiers, &audit, crate::now_millis()).await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn unsuppress(&self, blinds: Vec<Blind>, audit: Vec<AuditEvent>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let removed = requests::unsuppress(&mut tx, &blinds, &audit, crate::now_millis()).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn set_profile_value(
        &self,
        subject: &str,
        path: &str,
        value: Vec<u8>,
        at: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        requests::set_profile_value(&mut tx, &self.vault, subject, path, &value, at, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn subject_ids(&self, after: Option<String>, limit: u32) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        Ok(sqlx::query_scalar(
            "SELECT id FROM subjects WHERE erased_at IS NULL AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after.unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
    }

    async fn subject_summary(&self, subject: &str) -> Result<Option<SubjectData>> {
        let mut tx = self.pool.begin().await?;
        let data = subject_data(&mut tx, subject, false).await?;
        tx.commit().await?;
        Ok(data)
    }

    async fn events_page(
        &self,
        subject: &str,
        after: Option<EventCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let mut conn = self.pool.acquire().await?;
        requests::events_page(&mut conn, subject, after.as_ref(), limit).await
    }

    async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        requests::enqueue(&mut tx, &deliveries, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deliveries(&self, request: &str) -> Result<Vec<DeliveryRecord>> {
        let mut conn = self.pool.acquire().await?;
        requests::deliveries(&mut conn, request).await
    }

    async fn delivery_attempts(&self, request: &str, destination: &str) -> Result<Vec<DeliveryAttempt>> {
        let mut conn = self.pool.acquire().await?;
        requests::delivery_attempts(&mut conn, request, destination).await
    }

    async fn record_delivery(
        &self,
        outbox_id: &str,
        request: &str,
        destination: &str,
        outcome: DeliveryOutcome,
        now: i64,
    ) -> Result<Option<RequestStatus>> {
        let mut tx = self.pool.begin().await?;
        let settled =
            requests::record_delivery(&mut tx, &self.vault, outbox_id, request, destination, &outcome, now)
                .await?;
        tx.commit().await?;
        Ok(settled)
    }

    async fn apply_retention(&self, catalog: &Catalog, now: i64, limit: u32) -> Result<RetentionReport> {
        let mut tx = self.pool.begin().await?;
        let report = requests::apply_retention(&mut tx, &self.vault, catalog, now, limit).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn rewrap_keys(&self, after: Option<String>, limit: u32) -> Result<RewrapBatch> {
        self.rewrap(after, limit).await
    }

    async fn put_items(&self, items: Vec<ItemRecord>, now: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let version = model::put_items(&mut tx, items, now).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn items_since(&self, after: i64, limit: u32) -> Result<Vec<ItemRecord>> {
        let mut conn = self.pool.acquire().await?;
        model::items_since(&mut conn, after, limit).await
    }

    async fn item(&self, id: &str) -> Result<Option<ItemRecord>> {
        let mut conn = self.pool.acquire().await?;
        model::item(&mut conn, id).await
    }

    async fn put_contributions(
        &self,
        write: Vec<(String, Vec<u8>)>,
        remove: Vec<String>,
        now: i64,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let version = model::put_contributions(&mut tx, write, remove, now).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn model_changes(&self, after: i64, limit: u32) -> Result<Vec<ModelChange>> {
        let mut conn = self.pool.acquire().await?;
        model::model_changes(&mut conn, after, limit).await
    }

    async fn model_version(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        model::model_version(&mut conn).await
    }

    async fn mark_model_dirty(&self, subjects: Vec<String>, now: i64) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        model::mark_dirty(&mut conn, subjects, now).await
    }

    async fn mark_all_model_dirty(&self, now: i64) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        model::mark_all_dirty(&mut conn, now).await
    }

    async fn model_dirty(&self, limit: u32) -> Result<Vec<(String, i64)>> {
        let mut conn = self.pool.acquire().await?;
        model::dirty(&mut conn, limit).await
    }

    async fn model_clean(&self, marks: Vec<(String, i64)>) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        model::clean(&mut conn, marks).await
    }
    async fn spend_budget(
        &self,
        dataset: &str,
        period_start: i64,
        epsilon_micro: i64,
        limit_micro: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<SpendOutcome> {
        analytics::spend_budget(&self.pool, dataset, period_start, epsilon_micro, limit_micro, &audit).await
    }

    async fn budget(&self, dataset: &str, period_start: i64, limit_micro: i64) -> Result<Budget> {
        let mut conn = self.pool.acquire().await?;
        analytics::budget(&mut conn, dataset, period_start, limit_micro).await
    }

    async fn budgets(&self) -> Result<Vec<(String, i64, i64)>> {
        let mut conn = self.pool.acquire().await?;
        analytics::budgets(&mut conn).await
    }

    async fn events_in_window(
        &self,
        from: i64,
        to: i64,
        after: Option<WindowCursor>,
        limit: u32,
        scan: Scan,
    ) -> Result<WindowPage> {
        let mut conn = self.pool.acquire().await?;
        analytics::events_in_window(&mut conn, from, to, after.as_ref(), limit, scan).await
    }

    async fn family_roots(&self, subjects: Vec<String>) -> Result<Vec<(String, String)>> {
        let mut conn = self.pool.acquire().await?;
        analytics::family_roots(&mut conn, subjects).await
    }

    async fn family_activity(&self, roots: Vec<String>) -> Result<Vec<FamilyActivity>> {
        let mut conn = self.pool.acquire().await?;
        analytics::family_activity(&mut conn, roots).await
    }

    async fn family_keys(&self, roots: Vec<String>) -> Result<Vec<(String, WrappedKeys)>> {
        let mut conn = self.pool.acquire().await?;
        analytics::family_keys(&mut conn, roots).await
    }

    async fn subject_states(&self, subjects: Vec<String>) -> Result<Vec<SubjectState>> {
        let mut conn = self.pool.acquire().await?;
        analytics::subject_states(&mut conn, subjects).await
    }
}

impl PostgresStore {
    async fn rewrap(&self, after: Option<String>, limit: u32) -> Result<RewrapBatch> {
        let mut rewrapped = 0;
        if after.is_none() {
            let root: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM keyring WHERE name = 'index_root'")
                .fetch_one(&self.pool)
                .await?;
            if let Some(new) = self.vault.rewrap_index_root(&root)? {
                sqlx::query("UPDATE keyring SET wrapped = $1 WHERE name = 'index_root' AND wrapped = $2")
                    .bind(new)
                    .bind(&root)
                    .execute(&self.pool)
                    .await?;
            }
        }
        let rows = sqlx::query("SELECT id, wrapped_key FROM subjects WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after.as_deref().unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut last = None;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
            if let Some(new) = self.vault.rewrap_subject_key(&id, &wrapped)? {
                // Conditional: another instance rotating at the same time, or a concurrent erasure,
                // simply wins.
                rewrapped +=
                    sqlx::query("UPDATE subjects SET wrapped_key = $1 WHERE id = $2 AND wrapped_key = $3")
                        .bind(new)
                        .bind(&id)
                        .bind(&wrapped)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
            }
            last = Some(id);
        }
        Ok(RewrapBatch { rewrapped, next: if rows.len() == limit as usize { last } else { None } })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Appenders on several connections, a third of which roll back: the committed values are
    /// exactly 1..=n, with no gap where a rollback was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counters_stay_gapless_when_transactions_roll_back() {
        let Some(url) = crate::testing::fresh_postgres_database().await else { return };
        let (store, _) = PostgresStore::open(&url, tactful_vault::MasterKey::generate(), &Options::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for index in 0..24 {
            let pool = store.pool.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                let value = next_counter_value(&mut tx, "audit").await.unwrap();
                if index % 3 == 0 {
                    tx.rollback().await.unwrap();
                    None
                } else {
                    tx.commit().await.unwrap();
                    Some(value)
                }
            }));
        }
        let mut committed = Vec::new();
        for task in tasks {
            committed.extend(task.await.unwrap());
        }
        committed.sort_unstable();
        assert_eq!(committed, (1..=16).collect::<Vec<i64>>());
    }
}
