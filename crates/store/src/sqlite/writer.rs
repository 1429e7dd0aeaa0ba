//! The one writer of a SQLite database: a thread that runs many requests' writes in one transaction
//! (group commit), answers them once it is durable, and, being the only writer, caches what it wrote.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rusqlite::Connection;
use tactful_vault::{Blind, SubjectKey, Vault};
use tokio::sync::{mpsc, oneshot};

use super::sql;
use crate::{Result, StoreError};

/// Most requests committed together in one transaction.
const MAX_JOBS_PER_COMMIT: usize = 128;

/// Entries kept in each of the writer's caches; beyond this a cache starts over.
pub(super) const CACHE_LIMIT: usize = 100_000;

/// What the writer thread owns. As the only writer of this database, it can cache what it wrote:
/// identity bindings, whether subjects are known, and unwrapped data keys. A job that rolls back
/// clears the caches, since they may hold what it did.
pub(crate) struct Writer {
    pub(super) conn: Connection,
    pub(super) vault: Arc<Vault>,
    pub(super) keys: HashMap<String, Arc<SubjectKey>>,
    pub(super) bindings: HashMap<Blind, String>,
    pub(super) known: HashMap<String, bool>,
    /// The audit log's size and Merkle frontier.
    pub(super) audit_head: Option<(u64, tactful_domain::merkle::Frontier)>,
    /// Whether this transaction appended to the audit log (its head is written before commit).
    pub(super) audit_head_dirty: bool,
    /// Whether any identifier is suppressed (`None`: not looked at yet). Almost always false, and
    /// then ingestion skips the lookup.
    pub(super) any_suppressed: Option<bool>,
    /// SQLite's `data_version` when the caches were last known good: it changes when another
    /// connection (another process, a second handle) commits, and then the caches are dropped.
    pub(super) data_version: i64,
    /// The erasure journal beside the database (see [`crate::erasures`]).
    pub(super) journal: std::path::PathBuf,
    /// How full the WAL is, and so when to checkpoint it.
    pub(super) checkpoints: Checkpoints,
}

/// WAL frames past which the writer checkpoints when no write is waiting for it.
const CHECKPOINT_WHEN_IDLE: u32 = 1_000;

/// WAL frames past which it checkpoints even with writes waiting, so that the WAL restarts from its
/// beginning under sustained writes too.
const CHECKPOINT_ANYWAY: u32 = 8_000;

/// When the writer checkpoints the WAL. SQLite's automatic checkpoint runs inside `COMMIT`, so the
/// callers of the commit that crossed its threshold would wait for the checkpoint (pages copied into
/// the database and its `fsync`) before their answer; the writer runs it itself once they are
/// answered: early when no write is waiting, at the latest after [`CHECKPOINT_ANYWAY`] frames.
pub(crate) struct Checkpoints {
    /// Frames in the WAL after the last commit, as SQLite's WAL hook reports them.
    frames: Arc<AtomicU32>,
}

impl Checkpoints {
    /// Follows the WAL's size through the connection's WAL hook (which replaces SQLite's automatic
    /// checkpoint, switched off in `configure`).
    pub(super) fn watch(conn: &mut Connection) -> Result<Checkpoints> {
        let frames = Arc::new(AtomicU32::new(0));
        let seen = frames.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            seen.store(u32::try_from(pages).unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(Checkpoints { frames })
    }

    /// Checkpoints the WAL (passively: readers are never waited for) if it is full enough, given
    /// whether any write is waiting. Called between group commits, outside any transaction.
    fn after_answering(&self, conn: &Connection, idle: bool) {
        let frames = self.frames.load(Ordering::Relaxed);
        if frames < CHECKPOINT_ANYWAY && !(idle && frames >= CHECKPOINT_WHEN_IDLE) {
            return;
        }
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "WAL checkpoint failed; retrying after the next commit");
        }
        // The next commit reports the WAL's size again: smaller once it restarted, the same if a
        // reader kept this checkpoint from completing (and then it is tried again).
        self.frames.store(0, Ordering::Relaxed);
    }
}

/// A unit of work for the writer thread. `run` may be called more than once: when another job of
/// the same group commit fails, the transaction is rolled back and the remaining jobs run again.
pub(super) trait Job: Send {
    /// Runs inside the group's transaction; says whether it succeeded.
    fn run(&mut self, writer: &mut Writer) -> bool;
    /// Answers the caller once the transaction committed, or could not.
    fn finish(self: Box<Self>, committed: Result<()>);
}

pub(super) struct WriteJob<F, T> {
    pub(super) work: F,
    pub(super) result: Option<Result<T>>,
    pub(super) reply: oneshot::Sender<Result<T>>,
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
        let WriteJob { work, result, reply } = *self;
        // What the work captured is released here, before the caller is answered: a caller that
        // keeps its own reference to large inputs (a batch of events) frees them on its thread,
        // not on the writer's.
        drop(work);
        let result = match (result, committed) {
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(error)) => Err(error),
            (None, Ok(())) => {
                Err(StoreError::Internal("a write failed unexpectedly; see the server log".into()))
            }
        };
        let _ = reply.send(result);
    }
}

/// The writer loop: take every job waiting (up to a bound), run them all in one transaction, commit
/// once, then answer them all. If a job fails, the transaction rolls back, that job gets its error,
/// and the others run again without it; failures are rare, so no savepoint is paid for per job.
pub(super) fn run_writer(mut writer: Writer, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
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
                    let committed = super::audit::flush_audit_head(&mut writer).and_then(|()| {
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
        writer.checkpoints.after_answering(&writer.conn, jobs.is_empty());
    }
}

impl Writer {
    /// Drops the caches if another connection committed since this writer last looked (the
    /// embedded store is meant for one process, but a second handle must not be misled).
    fn forget_if_changed_elsewhere(&mut self) {
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .unwrap_or(-1);
        if version != self.data_version {
            self.forget();
            self.data_version = version;
        }
    }

    /// Drops what the writer remembers of people (keys, bindings, known flags, whether anyone is
    /// suppressed) after a change to them outside ingestion, inside the current transaction. The
    /// audit head stays: it is this transaction's, and is written before it commits.
    pub(super) fn forget_people(&mut self) {
        self.keys.clear();
        self.bindings.clear();
        self.known.clear();
        self.any_suppressed = None;
    }

    /// Drops every cache, after a rollback undid what they may remember.
    pub(super) fn forget(&mut self) {
        self.keys.clear();
        self.bindings.clear();
        self.known.clear();
        self.audit_head = None;
        self.audit_head_dirty = false;
        self.any_suppressed = None;
    }

    /// The data key of `subject`, unwrapped once and cached.
    pub(super) fn key(&mut self, subject: &str) -> Result<Arc<SubjectKey>> {
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
