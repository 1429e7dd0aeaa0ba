//! The erasure journal: what every erasure destroyed (member subject ids, and the blind indexes of
//! what it suppressed), kept **outside** what a backup copies, so that a database restored from a
//! backup taken before an erasure is erased again when it is opened. It holds no personal value:
//! subject ids are random, blind indexes are keyed hashes.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// One erasure, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// When it was made (Unix milliseconds).
    pub at: i64,
    /// Every subject of the family erased.
    pub members: Vec<String>,
    /// Identifiers suppressed with it: `(kind, hex blind index)`.
    #[serde(default)]
    pub suppressed: Vec<(String, String)>,
}

/// Where an SQLite database keeps its journal: a file beside it that a backup of the database does
/// not include (`tactful.db` → `tactful.db.erasures`).
pub fn journal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".erasures");
    PathBuf::from(name)
}

/// Appends an erasure to the journal file and makes it durable before the erasure commits: were
/// the commit lost, the erasure would be applied at the next start anyway, which is what was asked.
pub fn append(journal: &Path, erasure: &Erasure) -> Result<()> {
    let mut line = serde_json::to_string(erasure).map_err(|error| StoreError::Internal(error.to_string()))?;
    line.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let unavailable = |error: std::io::Error| {
        StoreError::Unavailable(format!("cannot write the erasure journal {}: {error}", journal.display()))
    };
    let mut file = options.open(journal).map_err(unavailable)?;
    file.write_all(line.as_bytes()).map_err(unavailable)?;
    file.sync_data().map_err(unavailable)
}

/// Every erasure the journal file holds (none if there is no journal yet). A line cut short by a
/// crash mid-append is skipped: its erasure never committed.
pub fn read(journal: &Path) -> Result<Vec<Erasure>> {
    let file = match std::fs::File::open(journal) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(StoreError::Unavailable(format!(
                "cannot read the erasure journal {}: {error}",
                journal.display()
            )));
        }
    };
    let mut erasures = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|error| StoreError::Unavailable(error.to_string()))?;
        if let Ok(erasure) = serde_json::from_str::<Erasure>(&line) {
            erasures.push(erasure);
        }
    }
    Ok(erasures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_keeps_every_erasure_beside_the_database_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_path(&dir.path().join("tactful.db"));
        assert_eq!(journal.file_name().unwrap(), "tactful.db.erasures");
        assert!(read(&journal).unwrap().is_empty());
        let first = Erasure { at: 1, members: vec!["sub_a".into(), "sub_b".into()], suppressed: vec![] };
        let second =
            Erasure { at: 2, members: vec!["sub_c".into()], suppressed: vec![("email".into(), "ab".into())] };
        append(&journal, &first).unwrap();
        append(&journal, &second).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap()
            .write_all(b"{\"at\": 3, \"memb")
            .unwrap();
        assert_eq!(read(&journal).unwrap(), vec![first, second]);
    }
}
