//! Backups that honour erasure. A SQLite database is copied online (`VACUUM INTO`, consistent while
//! the server runs); its erasure journal stays beside the live database and is not in the copy, so
//! restoring the copy and opening it erases again everyone erased since. PostgreSQL is backed up
//! with `pg_dump`, leaving out the `erasure_journal` table for the same reason.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use tactful_vault::{MasterKeys, Vault};

use crate::{Result, StoreError, erasures, sqlite_path};

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Where the database it replaced was kept (`None` when there was none).
    pub previous: Option<PathBuf>,
    /// Erasures made after the backup was taken, applied again when the database is next opened.
    pub erase_again: usize,
}

fn sqlite_file(url: &str) -> Result<PathBuf> {
    match sqlite_path(url) {
        Some(path) if !url.starts_with("postgres") => Ok(PathBuf::from(path)),
        _ => Err(StoreError::UnsupportedUrl(format!(
            "{url}: `tactful backup` copies SQLite databases; back up PostgreSQL with {}",
            postgres_backup_command()
        ))),
    }
}

/// How to back up a PostgreSQL database so that restores honour erasure.
pub fn postgres_backup_command() -> &'static str {
    "`pg_dump --format=custom --exclude-table=erasure_journal --file=tactful.dump \"$DATABASE_URL\"`, \
     restored into the same database with `pg_restore --clean --if-exists --dbname=\"$DATABASE_URL\" tactful.dump` \
     (see docs/deployment.md)"
}

fn unavailable(what: &str, path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {error}", path.display()))
}

/// Copies the SQLite database named by `url` to `to` (which must not exist yet), consistently, while
/// the server may be running. The copy holds what the database holds: sealed values, blind indexes,
/// the audit log and each person's key wrapped under the master key; not the erasure journal.
/// Returns the size of the copy in bytes.
pub fn backup_sqlite(url: &str, to: &Path) -> Result<u64> {
    let database = sqlite_file(url)?;
    if to.exists() {
        return Err(unavailable("will not overwrite", to, "it exists; choose a new file"));
    }
    let conn = Connection::open_with_flags(&database, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|error| unavailable("cannot open the database", &database, error))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute("VACUUM INTO ?1", [to.to_string_lossy()])
        .map_err(|error| unavailable("cannot write the backup", to, error))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))
            .map_err(|error| unavailable("cannot restrict", to, error))?;
    }
    Ok(std::fs::metadata(to).map_err(|error| unavailable("cannot read", to, error))?.len())
}

/// Puts the backup `from` in place of the SQLite database named by `url` (the server must be
/// stopped), once it is known to open with `master`. The database it replaces is kept beside it,
/// renamed; the erasure journal stays, so the next open erases again everyone erased after the
/// backup was taken.
pub fn restore_sqlite(url: &str, from: &Path, master: MasterKeys) -> Result<Restored> {
    let database = sqlite_file(url)?;
    let journal = erasures::read(&erasures::journal_path(&database))?;
    let erase_again = check_backup(from, master, &journal)?;
    let previous = if database.exists() {
        let mut kept = database.as_os_str().to_owned();
        kept.push(format!(".before-restore-{}", crate::shared::now_millis()));
        let kept = PathBuf::from(kept);
        for suffix in ["", "-wal", "-shm"] {
            let mut from = database.as_os_str().to_owned();
            from.push(suffix);
            let mut to = kept.as_os_str().to_owned();
            to.push(suffix);
            if Path::new(&from).exists() {
                std::fs::rename(&from, &to)
                    .map_err(|error| unavailable("cannot move aside", &database, error))?;
            }
        }
        Some(kept)
    } else {
        None
    };
    let mut staging = database.as_os_str().to_owned();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    std::fs::copy(from, &staging).map_err(|error| unavailable("cannot copy", from, error))?;
    std::fs::File::open(&staging)
        .and_then(|file| file.sync_all())
        .map_err(|error| unavailable("cannot sync", &staging, error))?;
    std::fs::rename(&staging, &database)
        .map_err(|error| unavailable("cannot put in place", &database, error))?;
    Ok(Restored { previous, erase_again })
}

/// Checks that `from` is a Tactful SQLite database that reads whole and opens with `master`, and
/// counts the journaled erasures it does not reflect.
fn check_backup(from: &Path, master: MasterKeys, journal: &[erasures::Erasure]) -> Result<usize> {
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|error| unavailable("cannot open the backup", from, error))?;
    let not_a_backup = |error: rusqlite::Error| unavailable("not a Tactful database backup:", from, error);
    let check: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(not_a_backup)?;
    if check != "ok" {
        return Err(unavailable("the backup is damaged:", from, check));
    }
    let wrapped: Vec<u8> = conn
        .query_row("SELECT wrapped FROM keyring WHERE name = 'index_root'", [], |row| row.get(0))
        .map_err(not_a_backup)?;
    Vault::open(master, &wrapped).map_err(|error| {
        unavailable(
            "the backup does not open with this master key (only with the key of the database it copied):",
            from,
            error,
        )
    })?;
    let mut live =
        conn.prepare("SELECT 1 FROM subjects WHERE id = ?1 AND erased_at IS NULL").map_err(not_a_backup)?;
    let mut erase_again = 0;
    for erasure in journal {
        let mut still_held = false;
        for member in &erasure.members {
            still_held |= live.exists([member]).map_err(not_a_backup)?;
        }
        erase_again += usize::from(still_held);
    }
    Ok(erase_again)
}
