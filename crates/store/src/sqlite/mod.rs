//! The embedded store: one SQLite file in WAL mode. SQLite has one writer at a time, so all writes go
//! through a single writer thread that commits many requests in one transaction (group commit): each
//! request runs in its own savepoint, one `fsync` makes them all durable, and only then is any of
//! them acknowledged. Reads use a small pool of read-only connections beside it.

mod analytics;
mod audit;
mod consent;
mod credentials;
mod deliveries;
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
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tactful_vault::{MasterKeys, Vault};
use tokio::sync::{mpsc, oneshot};

use crate::shared::now_millis;
use crate::{Result, Store, StoreError};
use writer::{Job, WriteJob, Writer, run_writer};

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
    include_str!("migrations/0009_consent_provenance.sql"),
    include_str!("migrations/0010_rate_limits.sql"),
    include_str!("migrations/0011_web_sessions.sql"),
    include_str!("migrations/0012_consent_strings.sql"),
    include_str!("migrations/0013_forwarding.sql"),
];

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<ReaderPool>,
    /// Dropping this stops the checkpointer.
    _checkpointer: std::sync::mpsc::Sender<()>,
    /// Audit appends waiting for the writer's next group commit.
    audit_queue: Arc<crate::audit_queue::AuditQueue>,
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
            audit_queue: Arc::default(),
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

pub(super) fn sql(error: rusqlite::Error) -> StoreError {
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

/// Plans each statement once, whatever values are bound to it. By default SQLite (3.54) marks a
/// statement whose plan might depend on a bound value (a `col = ?` term no index serves, say) for
/// re-preparing whenever that value changes, and `sqlite3_clear_bindings`, which rusqlite calls
/// when a cached statement is put back, re-prepares such statements on every use. The query
/// planner stability guarantee keeps the plan made at first use.
fn plan_once(conn: &Connection) -> Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

fn configure(conn: &Connection) -> Result<()> {
    plan_once(conn)?;
    // WAL lets readers run beside the writer; synchronous=FULL makes every commit durable (the WAL is
    // fsynced), which is what "acknowledged means committed" needs; secure_delete overwrites deleted
    // content so erased ciphertext does not linger in free pages. The writer checkpoints the WAL
    // itself, but after answering the commit's callers rather than inside `COMMIT` (see
    // [`writer::Checkpoints`]), so SQLite's own automatic checkpoint is off: a checkpoint that
    // completes lets the WAL restart from its beginning and reuse its blocks (a checkpointer on
    // another thread never catches up under sustained writes, and a WAL that only grows costs more
    // in the kernel than the checkpoints do).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -32768;
         PRAGMA wal_autocheckpoint = 0;",
    )?;
    Ok(())
}

/// How often the WAL is truncated to nothing, so that values overwritten or deleted in the database
/// do not linger in it: the bound on how long erased ciphertext can survive in the WAL.
pub const WAL_TRUNCATE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Truncates the WAL periodically from its own connection. Stops when the store is dropped (the
/// channel closes). A truncating checkpoint keeps new writes waiting while it copies the WAL into
/// the database, so a passive one copies first, beside the writer, and the truncation that follows
/// has only what came since to copy.
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
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "WAL checkpoint failed; retrying later");
        }
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
    let mut conn = Connection::open_with_flags(path, flags)
        .map_err(|error| StoreError::Unavailable(format!("cannot open {}: {error}", path.display())))?;
    restrict_permissions(path);
    configure(&conn)?;
    let checkpoints = writer::Checkpoints::watch(&mut conn)?;
    migrate(&conn)?;
    let wrapped_root = index_root(&conn, &master)?;
    let vault = Arc::new(Vault::open(master, &wrapped_root)?);
    let mut writer = Writer {
        conn,
        vault,
        keys: HashMap::new(),
        bindings: HashMap::new(),
        known: HashMap::new(),
        audit_head: None,
        audit_head_dirty: false,
        any_suppressed: None,
        data_version: 0,
        journal: crate::erasures::journal_path(path),
        checkpoints,
    };
    // A database restored from a backup taken before an erasure is erased again, before anything
    // reads it.
    let journal = crate::erasures::read(&writer.journal)?;
    if !journal.is_empty() {
        let reapplied = rights::reapply_erasures(&mut writer, &journal, crate::shared::now_millis())?;
        if reapplied > 0 {
            tracing::warn!(reapplied, "erased again people a restored database still held");
        }
    }
    Ok(writer)
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
                plan_once(&conn)?;
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

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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

    /// SQLite's own checkpoint is off (it would run inside a commit, before its callers are
    /// answered); the writer checkpoints between commits instead, so under a stream of appends the
    /// WAL still restarts from its beginning rather than growing with every commit.
    #[tokio::test]
    async fn the_writer_checkpoints_the_wal_between_commits() {
        use crate::AuditStore;
        use tactful_domain::audit::{AuditEvent, ReadDecision};
        let (dir, store) = store().await;
        // About one page per entry: 250 commits of 40 write some 10,000 frames (40 MiB).
        let filler = "x".repeat(3_000);
        for round in 0..250 {
            let events = (0..40)
                .map(|index| AuditEvent::Read {
                    actor: "key_test".into(),
                    role: "support".into(),
                    purpose: "support".into(),
                    subject: format!("{:064x}", round * 40 + index),
                    returned: vec![filler.clone()],
                    withheld: Vec::new(),
                    decision: ReadDecision::Permitted,
                })
                .collect();
            store.audit_append(events, 0).await.unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("t.db-wal")).unwrap().len();
        assert!(wal < 16 << 20, "the WAL grew to {} MiB", wal >> 20);
    }

    /// A cached statement runs on the plan it was prepared with: putting it back in the cache
    /// (which clears its bindings) does not make SQLite compile it again at its next use.
    #[tokio::test]
    async fn cached_statements_are_not_prepared_again_on_each_use() {
        let (dir, store) = store().await;
        let ledger = "SELECT c.id FROM consent_events c JOIN subjects s ON s.id = c.subject_id
                      WHERE s.id = ?1 OR s.merged_into = ?1 ORDER BY c.at, c.id";
        let reprepared = |conn: &Connection| {
            (0..5)
                .map(|round| {
                    let mut statement = conn.prepare_cached(ledger).unwrap();
                    statement.query_map([format!("sub_{round}")], |_| Ok(())).unwrap().for_each(drop);
                    statement.reset_status(rusqlite::StatementStatus::RePrepare)
                })
                .sum::<i32>()
        };
        let reader = store.readers.with(|conn| Ok(reprepared(conn))).unwrap();
        assert_eq!(reader, 0, "a reader compiled its cached statement again on each use");
        // The same statement on a connection left at SQLite's default is compiled again each time,
        // so the test above can tell.
        let plain = Connection::open(dir.path().join("t.db")).unwrap();
        assert!(reprepared(&plain) > 0);
    }
}
