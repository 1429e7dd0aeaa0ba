//! The embedded store: one SQLite file in WAL mode. SQLite has one writer at a time, so all writes go
//! through a single writer thread that commits many requests in one transaction (group commit): each
//! request runs in its own savepoint, one `fsync` makes them all durable, and only then is any of
//! them acknowledged. Reads use a small pool of read-only connections beside it.

mod access;
mod analytics;
mod ingest;
mod model;
mod requests;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tactful_domain::minimize::DropReason;
use tactful_vault::{Blind, MasterKeys, SubjectKey, Vault};
use tokio::sync::{mpsc, oneshot};

use tactful_domain::audit::{AuditEvent, Checkpoint};
use tactful_domain::consent::ConsentEvent;
use tactful_domain::policy::Policy;

use crate::resolve::ConsentRow;
use crate::{
    ApiKeyRecord, Budget, CodeOutcome, DeliveryAttempt, DeliveryOutcome, DeliveryRecord, DropCount,
    EventCursor, FamilyActivity, IngestEvent, IngestOutcome, ItemRecord, LedgerEntry, LegalHold, ModelChange,
    NewDelivery, NewRequest, OutboxMessage, PurgeReport, RequestRecord, RequestUpdate, RequestView, Result,
    RetentionReport, RewrapBatch, Scan, ShredOutcome, ShredPlan, SignInCode, SpendOutcome, Stats, Store,
    StoreError, StoredAuditEntry, StoredEvent, StoredIdentity, StoredProfileValue, StoredReceipt,
    SubjectData, SubjectState, Suppression, WindowCursor, WindowPage, WrappedKeys,
};
use tactful_domain::catalog::Catalog;
use tactful_domain::request::RequestStatus;

/// Migrations in order; `PRAGMA user_version` records how many have been applied.
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

/// Most requests committed together in one transaction.
const MAX_JOBS_PER_COMMIT: usize = 128;
/// Entries kept in each of the writer's caches; beyond this a cache starts over.
pub(super) const CACHE_LIMIT: usize = 100_000;

/// What the writer thread owns. As the only writer of this database, it can cache what it wrote:
/// identity bindings, whether subjects are known, and unwrapped data keys. A job that rolls back
/// clears the caches, since they may hold what it did.
pub(crate) struct Writer {
    conn: Connection,
    vault: Arc<Vault>,
    keys: HashMap<String, Arc<SubjectKey>>,
    bindings: HashMap<Blind, String>,
    known: HashMap<String, bool>,
    /// The audit log's size and Merkle frontier.
    audit_head: Option<(u64, tactful_domain::merkle::Frontier)>,
    /// Whether this transaction appended to the audit log (its head is written before commit).
    audit_head_dirty: bool,
    /// Whether any identifier is suppressed (`None`: not looked at yet). Almost always false, and
    /// then ingestion skips the lookup.
    any_suppressed: Option<bool>,
    /// SQLite's `data_version` when the caches were last known good: it changes when another
    /// connection (another process, a second handle) commits, and then the caches are dropped.
    data_version: i64,
}

/// A unit of work for the writer thread. `run` may be called more than once: when another job of
/// the same group commit fails, the transaction is rolled back and the remaining jobs run again.
trait Job: Send {
    /// Runs inside the group's transaction; says whether it succeeded.
    fn run(&mut self, writer: &mut Writer) -> bool;
    /// Answers the caller once the transaction committed, or could not.
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct WriteJob<F, T> {
    work: F,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<F, T> Job for WriteJob<F, T>
where
    F: FnMut(&mut Writer) -> Result<T> + Send,
    T: Send,
{
    fn run(&mut self, writer: &mut Writer) -> bool {
        let result = (self.work)(writer);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<()>) {
        let result = match (self.result, committed) {
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(error)) => Err(error),
            (None, Ok(())) => {
                Err(StoreError::Internal("a write failed unexpectedly; see the server log".into()))
            }
        };
        let _ = self.reply.send(result);
    }
}

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<ReaderPool>,
    /// Dropping this stops the checkpointer.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`, then opens the vault.
    pub async fn open(
        path: impl AsRef<Path>,
        master: impl Into<MasterKeys>,
    ) -> Result<(SqliteStore, Arc<Vault>)> {
        let master = master.into();
        let path = path.as_ref().to_path_buf();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (job_tx, job_rx) = mpsc::channel::<Box<dyn Job>>(1024);
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("tactful-writer".into())
            .spawn(move || match open_writer(&thread_path, master) {
                Ok(writer) => {
                    let vault = writer.vault.clone();
                    let _ = ready_tx.send(Ok(vault));
                    run_writer(writer, job_rx);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            })
            .map_err(|error| StoreError::Internal(format!("cannot start the writer thread: {error}")))?;
        let vault =
            ready_rx.await.map_err(|_| StoreError::Internal("the writer thread stopped".into()))??;
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let checkpoint_path = path.clone();
        std::thread::Builder::new()
            .name("tactful-checkpoint".into())
            .spawn(move || run_checkpointer(checkpoint_path, stop_rx))
            .map_err(|error| {
                StoreError::Internal(format!("cannot start the checkpointer thread: {error}"))
            })?;
        let store = SqliteStore {
            writer: job_tx,
            readers: Arc::new(ReaderPool { path, idle: Mutex::new(Vec::new()) }),
            _checkpointer: stop_tx,
        };
        Ok((store, vault))
    }

    /// Runs `work` on the writer thread inside the next group commit and returns its result once the
    /// transaction is durable. `work` may run more than once (see [`Job`]); it must not keep effects
    /// outside the transaction.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnMut(&mut Writer) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(WriteJob { work, result: None, reply });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer thread stopped".into()))?;
        rx.await.map_err(|_| StoreError::Internal("a write was abandoned; see the server log".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(work))
            .await
            .map_err(|error| StoreError::Internal(format!("a read task failed: {error}")))?
    }
}

fn sql(error: rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::ReadOnly
            ) =>
        {
            StoreError::Unavailable(error.to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        sql(error)
    }
}

fn configure(conn: &Connection) -> Result<()> {
    // WAL lets readers run beside the writer; synchronous=FULL makes every commit durable (the WAL is
    // fsynced), which is what "acknowledged means committed" needs; secure_delete overwrites deleted
    // content so erased ciphertext does not linger in free pages. The writer checkpoints every 8000
    // pages itself: a checkpoint that completes lets the WAL restart from its beginning and reuse its
    // blocks (a checkpointer on another thread never catches up under sustained writes, and a WAL
    // that only grows costs more in the kernel than the checkpoints do).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -32768;
         PRAGMA wal_autocheckpoint = 8000;",
    )?;
    Ok(())
}

/// How often the WAL is truncated to nothing, so that values overwritten or deleted in the database
/// do not linger in it: the bound on how long erased ciphertext can survive in the WAL.
pub const WAL_TRUNCATE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Truncates the WAL periodically from its own connection. Stops when the store is dropped (the
/// channel closes).
fn run_checkpointer(path: PathBuf, stop: std::sync::mpsc::Receiver<()>) {
    let conn = match Connection::open(&path) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(%error, "the WAL checkpointer cannot open the database");
            return;
        }
    };
    let _ = conn.execute_batch("PRAGMA busy_timeout = 5000;");
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(WAL_TRUNCATE_EVERY) {
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(%error, "WAL checkpoint failed; retrying later");
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

fn open_writer(path: &Path, master: MasterKeys) -> Result<Writer> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| {
            StoreError::Unavailable(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    // Only the writer thread uses this connection, so SQLite's per-call mutex is not needed.
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|error| StoreError::Unavailable(format!("cannot open {}: {error}", path.display())))?;
    restrict_permissions(path);
    configure(&conn)?;
    migrate(&conn)?;
    let wrapped_root = index_root(&conn, &master)?;
    let vault = Arc::new(Vault::open(master, &wrapped_root)?);
    Ok(Writer {
        conn,
        vault,
        keys: HashMap::new(),
        bindings: HashMap::new(),
        known: HashMap::new(),
        audit_head: None,
        audit_head_dirty: false,
        any_suppressed: None,
        data_version: 0,
    })
}

/// The database holds only sealed data, but there is no reason for other users to read it.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

fn migrate(conn: &Connection) -> Result<()> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let version = index + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;\n{migration}\nPRAGMA user_version = {version};\nCOMMIT;"
        ))
        .map_err(|error| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::Internal(format!("migration {version} failed: {error}"))
        })?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

fn index_root(conn: &Connection, master: &MasterKeys) -> Result<Vec<u8>> {
    let existing: Option<Vec<u8>> = conn
        .query_row("SELECT wrapped FROM keyring WHERE name = 'index_root'", [], |row| row.get(0))
        .optional()?;
    if let Some(wrapped) = existing {
        return Ok(wrapped);
    }
    let wrapped = master.current.new_index_root();
    conn.execute(
        "INSERT INTO keyring (name, wrapped, created_at) VALUES ('index_root', ?1, ?2)",
        params![wrapped, now_millis()],
    )?;
    Ok(wrapped)
}

pub(crate) use crate::now_millis;

/// The writer loop: take every job waiting (up to a bound), run them all in one transaction, commit
/// once, then answer them all. If a job fails, the transaction rolls back, that job gets its error,
/// and the others run again without it; failures are rare, so no savepoint is paid for per job.
fn run_writer(mut writer: Writer, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut pending = vec![first];
        while pending.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => pending.push(job),
                Err(_) => break,
            }
        }
        while !pending.is_empty() {
            if let Err(error) = writer.conn.prepare_cached("BEGIN IMMEDIATE").and_then(|mut s| s.execute([]))
            {
                tracing::error!(%error, "cannot begin a transaction");
                for job in pending.drain(..) {
                    job.finish(Err(StoreError::Unavailable(format!("cannot begin a transaction: {error}"))));
                }
                break;
            }
            writer.forget_if_changed_elsewhere();
            let failed = pending.iter_mut().position(|job| {
                let ok = catch_unwind(AssertUnwindSafe(|| job.run(&mut writer)));
                if ok.is_err() {
                    tracing::error!("a write job panicked; its transaction is rolled back");
                }
                !ok.unwrap_or(false)
            });
            match failed {
                None => {
                    let committed = access::flush_audit_head(&mut writer).and_then(|()| {
                        writer
                            .conn
                            .prepare_cached("COMMIT")
                            .and_then(|mut s| s.execute([]))
                            .map(|_| ())
                            .map_err(sql)
                    });
                    if committed.is_err() {
                        let _ = writer.conn.execute_batch("ROLLBACK");
                        writer.forget();
                    }
                    for job in pending.drain(..) {
                        job.finish(match &committed {
                            Ok(()) => Ok(()),
                            Err(error) => Err(StoreError::Unavailable(error.to_string())),
                        });
                    }
                }
                Some(index) => {
                    if let Err(error) = writer.conn.execute_batch("ROLLBACK") {
                        tracing::error!(%error, "cannot roll back a failed write");
                    }
                    writer.forget();
                    pending.remove(index).finish(Ok(()));
                }
            }
        }
    }
}

impl Writer {
    /// Drops the caches if another connection committed since this writer last looked (the
    /// embedded store is meant for one process, but a second handle must not be misled).
    fn forget_if_changed_elsewhere(&mut self) {
        let version: i64 = self.conn.query_row("PRAGMA data_version", [], |row| row.get(0)).unwrap_or(-1);
        if version != self.data_version {
            self.forget();
            self.data_version = version;
        }
    }

    /// Drops what the writer remembers of people (keys, bindings, known flags, whether anyone is
    /// suppressed) after a change to them outside ingestion, inside the current transaction. The
    /// audit head stays: it is this transaction's, and is written before it commits.
    fn forget_people(&mut self) {
        self.keys.clear();
        self.bindings.clear();
        self.known.clear();
        self.any_suppressed = None;
    }

    /// Drops every cache, after a rollback undid what they may remember.
    fn forget(&mut self) {
        self.keys.clear();
        self.bindings.clear();
        self.known.clear();
        self.audit_head = None;
        self.audit_head_dirty = false;
        self.any_suppressed = None;
    }

    /// The data key of `subject`, unwrapped once and cached.
    fn key(&mut self, subject: &str) -> Result<Arc<SubjectKey>> {
        if let Some(key) = self.keys.get(subject) {
            return Ok(key.clone());
        }
        let wrapped: Vec<u8> = self
            .conn
            .prepare_cached("SELECT wrapped_key FROM subjects WHERE id = ?1")?
            .query_row([subject], |row| row.get(0))?;
        let key = Arc::new(self.vault.subject_key(subject, &wrapped)?);
        if self.keys.len() >= CACHE_LIMIT {
            self.keys.clear();
        }
        self.keys.insert(subject.to_owned(), key.clone());
        Ok(key)
    }
}

/// Read-only connections, opened on demand and reused.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn with<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().map_err(|_| StoreError::Internal("reader pool poisoned".into()))?.pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(|error| StoreError::Unavailable(error.to_string()))?;
                // The writer's cache size: window scans and bulk lookups walk many pages.
                conn.execute_batch(
                    "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768;",
                )?;
                conn
            }
        };
        let result = work(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < 8
        {
            idle.push(conn);
        }
        result
    }
}

/// The subject at the root of `subject`'s merge family.
/// Everything stored about a subject's family (its events too, if `events`), sealed; `None` for an
/// unknown or erased subject.
fn subject_data(conn: &Connection, subject: &str, events: bool) -> Result<Option<SubjectData>> {
    let Some(root) = access::root(conn, subject)? else { return Ok(None) };
    let mut data = SubjectData { subject: root.clone(), ..SubjectData::default() };
    let mut members =
        conn.prepare_cached("SELECT id, wrapped_key FROM subjects WHERE id = ?1 OR merged_into = ?1")?;
    data.keys =
        members.query_map([&root], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    for (member, _) in &data.keys {
        let mut identities =
            conn.prepare_cached("SELECT kind, blind, sealed FROM identities WHERE subject_id = ?1")?;
        for row in identities.query_map([member], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, Vec<u8>>(2)?))
        })? {
            let (kind, blind, sealed) = row?;
            data.identities.push(StoredIdentity {
                subject: member.clone(),
                kind,
                blind: crate::blind_from(blind)?,
                sealed,
            });
        }
        let mut profile =
            conn.prepare_cached("SELECT path, sealed, updated_at FROM profile_values WHERE subject_id = ?1")?;
        for row in profile.query_map([member], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))? {
            let (path, sealed, updated_at) = row?;
            data.profile.push(StoredProfileValue { subject: member.clone(), path, sealed, updated_at });
        }
        if !events {
            continue;
        }
        let mut events = conn.prepare_cached(
            "SELECT source, dedupe, type, name, timestamp, received_at, sealed
                     FROM events WHERE subject_id = ?1 ORDER BY timestamp, seq",
        )?;
        for row in events.query_map([member], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, Vec<u8>>(6)?,
            ))
        })? {
            let (source, dedupe, kind, name, timestamp, received_at, sealed) = row?;
            let dedupe = crate::dedupe_from(dedupe)?;
            data.events.push(StoredEvent {
                subject: member.clone(),
                source,
                dedupe,
                kind,
                name,
                timestamp,
                received_at,
                sealed,
            });
        }
    }
    data.events.sort_by_key(|event| event.timestamp);
    // The newest value of a path wins across the family.
    data.keep_newest_profile_values();
    Ok(Some(data))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ingest(&self, events: Vec<IngestEvent>, policy: Arc<Policy>) -> Result<Vec<IngestOutcome>> {
        self.write(move |writer| ingest::ingest(writer, &policy, &events)).await
    }

    async fn subject_state(&self, subject: &str) -> Result<Option<SubjectState>> {
        let subject = subject.to_owned();
        self.read(move |conn| access::subject_state(conn, &subject)).await
    }

    async fn record_consents(
        &self,
        subject: &str,
        events: Vec<(ConsentEvent, String)>,
        audit: Vec<AuditEvent>,
        deliveries: Vec<NewDelivery>,
    ) -> Result<()> {
        let subject = subject.to_owned();
        self.write(move |writer| {
            let root = access::root(&writer.conn, &subject)?
                .ok_or_else(|| StoreError::Internal("consent for a subject that does not exist".into()))?;
            let rows: Vec<ConsentRow> = events
                .iter()
                .map(|(event, receipt)| ConsentRow {
                    subject: root.clone(),
                    event: event.clone(),
                    receipt: receipt.clone(),
                })
                .collect();
            let now = now_millis();
            access::write_consents(&writer.conn, &rows, now)?;
            requests::enqueue(&writer.conn, &deliveries, now)?;
            access::append_audit(writer, &audit, now)?;
            Ok(())
        })
        .await
    }

    async fn consent_ledger(&self, after: Option<(i64, String)>, limit: u32) -> Result<Vec<LedgerEntry>> {
        self.read(move |conn| access::consent_ledger(conn, after, limit)).await
    }

    async fn lapsed_consents(&self, now: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        self.read(move |conn| access::lapsed_consents(conn, now, limit)).await
    }

    async fn receipt(&self, id: &str) -> Result<Option<StoredReceipt>> {
        let id = id.to_owned();
        self.read(move |conn| access::receipt(conn, &id)).await
    }

    async fn receipts(&self, subject: &str) -> Result<Vec<StoredReceipt>> {
        let subject = subject.to_owned();
        self.read(move |conn| access::receipts(conn, &subject)).await
    }

    async fn audit_append(&self, events: Vec<AuditEvent>, at: i64) -> Result<Vec<u64>> {
        self.write(move |writer| access::append_audit(writer, &events, at)).await
    }

    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<StoredAuditEntry>> {
        self.read(move |conn| access::audit_entries(conn, after, limit)).await
    }

    async fn audit_for_subject(&self, pseudonym: &str, limit: u32) -> Result<Vec<StoredAuditEntry>> {
        let pseudonym = pseudonym.to_owned();
        self.read(move |conn| access::audit_for_subject(conn, &pseudonym, limit)).await
    }

    async fn audit_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>> {
        self.write(move |writer| access::audit_checkpoint(writer, at)).await
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.read(access::audit_checkpoints).await
    }

    async fn create_api_key(&self, key: ApiKeyRecord, audit: AuditEvent) -> Result<()> {
        self.write(move |writer| access::create_api_key(writer, &key, &audit)).await
    }

    async fn api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>> {
        self.read(move |conn| access::api_key(conn, &hash)).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.read(access::api_keys).await
    }

    async fn create_sign_in_code(&self, code: SignInCode) -> Result<()> {
        self.write(move |writer| access::create_sign_in_code(writer, &code)).await
    }

    async fn try_sign_in_code(
        &self,
        id: &str,
        hash: [u8; 32],
        now: i64,
        max_attempts: u32,
    ) -> Result<CodeOutcome> {
        let id = id.to_owned();
        self.write(move |writer| access::try_sign_in_code(writer, &id, &hash, now, max_attempts)).await
    }

    async fn revoke_api_key(&self, id: &str, at: i64, audit: AuditEvent) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |writer| access::revoke_api_key(writer, &id, at, &audit)).await
    }

    async fn subject_by_identifier(&self, blind: Blind) -> Result<Option<String>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT subject_id FROM identities WHERE blind = ?1")?
                .query_row([blind.0.as_slice()], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn subject_data(&self, subject: &str) -> Result<Option<SubjectData>> {
        let subject = subject.to_owned();
        self.read(move |conn| subject_data(conn, &subject, true)).await
    }

    async fn drop_counts(&self) -> Result<Vec<DropCount>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT source, path, reason, count, last_seen FROM dropped_properties ORDER BY source, count DESC, path",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })?;
            let mut counts = Vec::new();
            for row in rows {
                let (source, path, reason, count, last_seen) = row?;
                let reason = DropReason::parse(&reason)
                    .ok_or_else(|| StoreError::Internal(format!("unknown drop reason {reason:?}")))?;
                counts.push(DropCount { source, path, reason, count: u64::try_from(count).unwrap_or(0), last_seen });
            }
            Ok(counts)
        })
        .await
    }

    async fn stats(&self) -> Result<Stats> {
        self.read(|conn| {
            let count = |table: &str| -> Result<u64> {
                let n: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            Ok(Stats {
                subjects: count("subjects WHERE merged_into IS NULL")?,
                identities: count("identities")?,
                events: count("events")?,
                profile_values: count("profile_values")?,
            })
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn outbox_enqueue(&self, topic: &str, payload: Vec<u8>, now: i64) -> Result<String> {
        let topic = topic.to_owned();
        let id = crate::new_message_id();
        let returned = id.clone();
        self.write(move |writer| {
            writer
                .conn
                .prepare_cached(
                    "INSERT INTO outbox (id, topic, payload, created_at, not_before) VALUES (?1, ?2, ?3, ?4, ?4)",
                )?
                .execute(params![id, topic, payload, now])?;
            Ok(())
        })
        .await?;
        Ok(returned)
    }

    async fn outbox_claim(
        &self,
        topic: &str,
        limit: u32,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxMessage>> {
        let topic = topic.to_owned();
        self.write(move |writer| {
            let mut statement = writer.conn.prepare_cached(
                "UPDATE outbox SET leased_until = ?3 + ?4, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox
                              WHERE topic = ?1 AND not_before <= ?3 AND (leased_until IS NULL OR leased_until <= ?3)
                              ORDER BY not_before, id LIMIT ?2)
                 RETURNING id, topic, payload, attempts, created_at",
            )?;
            let mut claimed = statement
                .query_map(params![topic, limit, now, lease_ms], |row| {
                    Ok(OutboxMessage {
                        id: row.get(0)?,
                        topic: row.get(1)?,
                        payload: row.get(2)?,
                        attempts: row.get(3)?,
                        created_at: row.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(claimed)
        })
        .await
    }

    async fn outbox_complete(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |writer| {
            writer.conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute([&id])?;
            Ok(())
        })
        .await
    }

    async fn outbox_retry(&self, id: &str, not_before: i64, error: &str) -> Result<()> {
        let (id, error) = (id.to_owned(), error.to_owned());
        self.write(move |writer| {
            writer
                .conn
                .prepare_cached(
                    "UPDATE outbox SET not_before = ?2, leased_until = NULL, last_error = ?3 WHERE id = ?1",
                )?
                .execute(params![id, not_before, error])?;
            Ok(())
        })
        .await
    }

    async fn job_claim(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        every_ms: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.write(move |writer| {
            writer
                .conn
                .prepare_cached(
                    "INSERT INTO jobs (name, next_run_at) VALUES (?1, 0) ON CONFLICT (name) DO NOTHING",
                )?
                .execute([&name])?;
            let claimed = writer
                .conn
                .prepare_cached(
                    "UPDATE jobs SET leased_by = ?2, leased_until = ?3 + ?5, next_run_at = ?3 + ?4
                     WHERE name = ?1 AND next_run_at <= ?3 AND (leased_until IS NULL OR leased_until <= ?3)",
                )?
                .execute(params![name, owner, now, every_ms, lease_ms])?;
            Ok(claimed == 1)
        })
        .await
    }

    async fn job_release(&self, name: &str, owner: &str) -> Result<()> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.write(move |writer| {
            writer
                .conn
                .prepare_cached("UPDATE jobs SET leased_by = NULL, leased_until = NULL WHERE name = ?1 AND leased_by = ?2")?
                .execute([&name, &owner])?;
            Ok(())
        })
        .await
    }

    async fn create_request(&self, record: RequestRecord, audit: Vec<AuditEvent>) -> Result<NewRequest> {
        self.write(move |writer| requests::create_request(writer, &record, &audit)).await
    }

    async fn request(&self, id: &str) -> Result<Option<RequestView>> {
        let id = id.to_owned();
        self.read(move |conn| requests::request(conn, &id)).await
    }

    async fn requests(&self, subject: Option<&str>, limit: u32) -> Result<Vec<RequestRecord>> {
        let subject = subject.map(str::to_owned);
        self.read(move |conn| requests::requests(conn, subject.as_deref(), limit)).await
    }

    async fn open_requests(&self, limit: u32) -> Result<Vec<RequestRecord>> {
        self.read(move |conn| requests::open_requests(conn, limit)).await
    }

    async fn update_request(&self, id: &str, update: RequestUpdate) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |writer| requests::update_request(writer, &id, &update, now_millis())).await
    }

    async fn claim_requests(&self, now: i64, lease_ms: i64, limit: u32) -> Result<Vec<RequestRecord>> {
        self.write(move |writer| requests::claim_requests(writer, now, lease_ms, limit)).await
    }

    async fn hold(&self, holds: Vec<LegalHold>) -> Result<()> {
        self.write(move |writer| requests::hold(&writer.conn, &holds, now_millis())).await
    }

    async fn legal_holds(&self, subject: &str) -> Result<Vec<LegalHold>> {
        let subject = subject.to_owned();
        self.read(move |conn| requests::legal_holds(conn, &subject)).await
    }

    async fn shred(&self, subject: &str, plan: ShredPlan, now: i64) -> Result<ShredOutcome> {
        let subject = subject.to_owned();
        self.write(move |writer| requests::shred(writer, &subject, &plan, now)).await
    }

    async fn purge_erased(&self, limit: u32) -> Result<PurgeReport> {
        self.write(move |writer| requests::purge_erased(&writer.conn, limit, now_millis())).await
    }

    async fn set_restricted(&self, subject: &str, restricted: bool, audit: Vec<AuditEvent>) -> Result<()> {
        let subject = subject.to_owned();
        self.write(move |writer| requests::set_restricted(writer, &subject, restricted, &audit, now_millis()))
            .await
    }

    async fn suppress(&self, identifiers: Vec<Suppression>, audit: Vec<AuditEvent>) -> Result<u64> {
        self.write(move |writer| {
            let added = requests::suppress(writer, &identifiers, &audit, now_millis())?;
            writer.any_suppressed = None;
            Ok(added)
        })
        .await
    }

    async fn unsuppress(&self, blinds: Vec<Blind>, audit: Vec<AuditEvent>) -> Result<u64> {
        self.write(move |writer| {
            let removed = requests::unsuppress(writer, &blinds, &audit, now_millis())?;
            writer.any_suppressed = None;
            Ok(removed)
        })
        .await
    }

    async fn set_profile_value(
        &self,
        subject: &str,
        path: &str,
        value: Vec<u8>,
        at: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<()> {
        let (subject, path) = (subject.to_owned(), path.to_owned());
        self.write(move |writer| requests::set_profile_value(writer, &subject, &path, &value, at, &audit))
            .await
    }

    async fn subject_ids(&self, after: Option<String>, limit: u32) -> Result<Vec<String>> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id FROM subjects WHERE erased_at IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let ids = statement
                .query_map(params![after.unwrap_or_default(), limit], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(ids)
        })
        .await
    }

    async fn subject_summary(&self, subject: &str) -> Result<Option<SubjectData>> {
        let subject = subject.to_owned();
        self.read(move |conn| subject_data(conn, &subject, false)).await
    }

    async fn events_page(
        &self,
        subject: &str,
        after: Option<EventCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let subject = subject.to_owned();
        self.read(move |conn| requests::events_page(conn, &subject, after.as_ref(), limit)).await
    }

    async fn enqueue_deliveries(&self, deliveries: Vec<NewDelivery>, now: i64) -> Result<()> {
        self.write(move |writer| requests::enqueue(&writer.conn, &deliveries, now)).await
    }

    async fn deliveries(&self, request: &str) -> Result<Vec<DeliveryRecord>> {
        let request = request.to_owned();
        self.read(move |conn| requests::deliveries(conn, &request)).await
    }

    async fn delivery_attempts(&self, request: &str, destination: &str) -> Result<Vec<DeliveryAttempt>> {
        let (request, destination) = (request.to_owned(), destination.to_owned());
        self.read(move |conn| requests::delivery_attempts(conn, &request, &destination)).await
    }

    async fn record_delivery(
        &self,
        outbox_id: &str,
        request: &str,
        destination: &str,
        outcome: DeliveryOutcome,
        now: i64,
    ) -> Result<Option<RequestStatus>> {
        let (outbox_id, request, destination) =
            (outbox_id.to_owned(), request.to_owned(), destination.to_owned());
        self.write(move |writer| {
            requests::record_delivery(writer, &outbox_id, &request, &destination, &outcome, now)
        })
        .await
    }

    async fn apply_retention(&self, catalog: &Catalog, now: i64, limit: u32) -> Result<RetentionReport> {
        let catalog = catalog.clone();
        self.write(move |writer| requests::apply_retention(writer, &catalog, now, limit)).await
    }

    async fn rewrap_keys(&self, after: Option<String>, limit: u32) -> Result<RewrapBatch> {
        self.write(move |writer| {
            let mut rewrapped = 0;
            if after.is_none() {
                let root: Vec<u8> = writer.conn.query_row(
                    "SELECT wrapped FROM keyring WHERE name = 'index_root'",
                    [],
                    |row| row.get(0),
                )?;
                if let Some(new) = writer.vault.rewrap_index_root(&root)? {
                    writer
                        .conn
                        .execute("UPDATE keyring SET wrapped = ?1 WHERE name = 'index_root'", [new])?;
                }
            }
            let rows: Vec<(String, Vec<u8>)> = writer
                .conn
                .prepare_cached("SELECT id, wrapped_key FROM subjects WHERE id > ?1 ORDER BY id LIMIT ?2")?
                .query_map(params![after.as_deref().unwrap_or(""), limit], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (id, wrapped) in &rows {
                if let Some(new) = writer.vault.rewrap_subject_key(id, wrapped)? {
                    rewrapped += writer
                        .conn
                        .prepare_cached(
                            "UPDATE subjects SET wrapped_key = ?1 WHERE id = ?2 AND wrapped_key = ?3",
                        )?
                        .execute(params![new, id, wrapped])? as u64;
                }
            }
            let next =
                (rows.len() == limit as usize).then(|| rows.last().map(|(id, _)| id.clone())).flatten();
            Ok(RewrapBatch { rewrapped, next })
        })
        .await
    }

    async fn put_items(&self, items: Vec<ItemRecord>, now: i64) -> Result<i64> {
        self.write(move |writer| model::put_items(&writer.conn, items.clone(), now)).await
    }

    async fn items_since(&self, after: i64, limit: u32) -> Result<Vec<ItemRecord>> {
        self.read(move |conn| model::items_since(conn, after, limit)).await
    }

    async fn item(&self, id: &str) -> Result<Option<ItemRecord>> {
        let id = id.to_owned();
        self.read(move |conn| model::item(conn, &id)).await
    }

    async fn put_contributions(
        &self,
        write: Vec<(String, Vec<u8>)>,
        remove: Vec<String>,
        now: i64,
    ) -> Result<i64> {
        self.write(move |writer| model::put_contributions(&writer.conn, write.clone(), remove.clone(), now))
            .await
    }

    async fn model_changes(&self, after: i64, limit: u32) -> Result<Vec<ModelChange>> {
        self.read(move |conn| model::model_changes(conn, after, limit)).await
    }

    async fn model_version(&self) -> Result<i64> {
        self.read(model::model_version).await
    }

    async fn mark_model_dirty(&self, subjects: Vec<String>, now: i64) -> Result<()> {
        self.write(move |writer| model::mark_dirty(&writer.conn, subjects.iter().map(String::as_str), now))
            .await
    }

    async fn mark_all_model_dirty(&self, now: i64) -> Result<u64> {
        self.write(move |writer| model::mark_all_dirty(&writer.conn, now)).await
    }

    async fn model_dirty(&self, limit: u32) -> Result<Vec<(String, i64)>> {
        self.read(move |conn| model::dirty(conn, limit)).await
    }

    async fn model_clean(&self, marks: Vec<(String, i64)>) -> Result<()> {
        self.write(move |writer| model::clean(&writer.conn, &marks)).await
    }

    async fn spend_budget(
        &self,
        dataset: &str,
        period_start: i64,
        epsilon_micro: i64,
        limit_micro: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<SpendOutcome> {
        let dataset = dataset.to_owned();
        self.write(move |writer| {
            analytics::spend_budget(
                writer,
                &dataset,
                period_start,
                epsilon_micro,
                limit_micro,
                &audit,
                now_millis(),
            )
        })
        .await
    }

    async fn budget(&self, dataset: &str, period_start: i64, limit_micro: i64) -> Result<Budget> {
        let dataset = dataset.to_owned();
        self.read(move |conn| analytics::budget(conn, &dataset, period_start, limit_micro)).await
    }

    async fn budgets(&self) -> Result<Vec<(String, i64, i64)>> {
        self.read(analytics::budgets).await
    }

    async fn events_in_window(
        &self,
        from: i64,
        to: i64,
        after: Option<WindowCursor>,
        limit: u32,
        scan: Scan,
    ) -> Result<WindowPage> {
        self.read(move |conn| analytics::events_in_window(conn, from, to, after.as_ref(), limit, scan)).await
    }

    async fn family_roots(&self, subjects: Vec<String>) -> Result<Vec<(String, String)>> {
        self.read(move |conn| analytics::family_roots(conn, subjects)).await
    }

    async fn family_activity(&self, roots: Vec<String>) -> Result<Vec<FamilyActivity>> {
        self.read(move |conn| analytics::family_activity(conn, roots)).await
    }

    async fn family_keys(&self, roots: Vec<String>) -> Result<Vec<(String, WrappedKeys)>> {
        self.read(move |conn| analytics::family_keys(conn, roots)).await
    }

    async fn subject_states(&self, subjects: Vec<String>) -> Result<Vec<SubjectState>> {
        self.read(move |conn| analytics::subject_states(conn, subjects)).await
    }
}

/// The next value of counter `name`, inside the caller's transaction: gapless, because a
/// transaction that rolls back takes its increment with it.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn next_counter_value(conn: &Connection, name: &str) -> Result<i64> {
    conn.prepare_cached("INSERT INTO counters (name, value) VALUES (?1, 0) ON CONFLICT (name) DO NOTHING")?
        .execute([name])?;
    Ok(conn
        .prepare_cached("UPDATE counters SET value = value + 1 WHERE name = ?1 RETURNING value")?
        .query_row([name], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tactful_vault::MasterKey;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SqliteStore::open(dir.path().join("t.db"), MasterKey::generate()).await.unwrap();
        (dir, store)
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM keyring", [], |row| row.get(0)).unwrap()
    }

    /// A failing job in a group commit rolls back alone: the others commit, and their work ran
    /// exactly as if the failing job had never been there.
    #[tokio::test]
    async fn a_failing_job_does_not_spoil_its_group_commit() {
        let (_dir, store) = store().await;
        let insert = |name: &'static str| {
            move |writer: &mut Writer| -> Result<()> {
                writer.conn.execute(
                    "INSERT INTO keyring (name, wrapped, created_at) VALUES (?1, x'00', 0)",
                    [name],
                )?;
                Ok(())
            }
        };
        let failing = |writer: &mut Writer| -> Result<()> {
            writer
                .conn
                .execute("INSERT INTO keyring (name, wrapped, created_at) VALUES ('doomed', x'00', 0)", [])?;
            Err(StoreError::Internal("this job fails after writing".into()))
        };
        // Hold the writer on a first job so the next three queue up and commit as one group.
        let store = Arc::new(store);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Mutex::new(hold);
        let (started_tx, started) = oneshot::channel::<()>();
        let started_tx = Mutex::new(Some(started_tx));
        let holder = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |_| {
                        if let Some(started) = started_tx.lock().unwrap().take() {
                            let _ = started.send(());
                        }
                        let _ = hold.lock().unwrap().recv();
                        Ok(())
                    })
                    .await
            }
        });
        started.await.unwrap();
        type Work = Box<dyn FnMut(&mut Writer) -> Result<()> + Send>;
        let spawn = |work: Work| {
            let store = store.clone();
            tokio::spawn(async move { store.write(work).await })
        };
        let first = spawn(Box::new(insert("one")));
        let bad = spawn(Box::new(failing));
        let second = spawn(Box::new(insert("two")));
        while store.writer.max_capacity() - store.writer.capacity() < 3 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let (first, bad, second) = (first.await.unwrap(), bad.await.unwrap(), second.await.unwrap());
        assert!(first.is_ok() && second.is_ok());
        assert!(matches!(bad, Err(StoreError::Internal(message)) if message.contains("fails after writing")));
        let names: Vec<String> = store
            .read(|conn| {
                let mut statement = conn.prepare("SELECT name FROM keyring ORDER BY name")?;
                Ok(statement.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?)
            })
            .await
            .unwrap();
        assert_eq!(names, ["index_root", "one", "two"]);
        assert_eq!(store.read(|conn| Ok(count(conn))).await.unwrap(), 3);
    }

    /// Writes that take a counter value and then fail give theirs back: committed values have no gap.
    #[tokio::test]
    async fn counters_stay_gapless_when_writes_fail() {
        let (_dir, store) = store().await;
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for index in 0..24 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .write(move |writer| {
                        let value = next_counter_value(&writer.conn, "audit")?;
                        if index % 3 == 0 {
                            Err(StoreError::Internal("the append fails".into()))
                        } else {
                            Ok(value)
                        }
                    })
                    .await
                    .ok()
            }));
        }
        let mut committed = Vec::new();
        for task in tasks {
            committed.extend(task.await.unwrap());
        }
        committed.sort_unstable();
        assert_eq!(committed, (1..=16).collect::<Vec<i64>>());
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteStore::open(&path, MasterKey::generate()).await.unwrap());
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        match SqliteStore::open(&path, MasterKey::generate()).await {
            Err(StoreError::SchemaTooNew { found: 99, known }) => assert_eq!(known, MIGRATIONS.len() as i64),
            other => panic!("expected SchemaTooNew, got {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn another_master_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteStore::open(&path, MasterKey::generate()).await.unwrap());
        let error = SqliteStore::open(&path, MasterKey::generate()).await.map(|_| ()).unwrap_err();
        assert!(
            error.to_string().contains("start with the master key this database was created with"),
            "{error}"
        );
    }
}
