//! Where the master key comes from: the `TACTFUL_MASTER_KEY` environment variable, or a key file that
//! is created (mode 0600, never overwritten) on first start. The key never goes to the database.

use std::io::Write;
use std::path::Path;

use tactful_domain::secret::Secret;
use tactful_vault::{MasterKey, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("TACTFUL_MASTER_KEY is not a valid master key: {0}")]
    Environment(VaultError),
    #[error("the master key file {path} is not a valid master key: {error}")]
    File { path: String, error: VaultError },
    #[error("cannot read or create the master key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// Where the key came from, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    ExistingFile,
    CreatedFile,
}

/// Loads the master key from the environment value if given, else from `file`, creating it if absent.
pub fn load_master_key(from_env: Option<&Secret>, file: &Path) -> Result<(MasterKey, KeySource), KeyError> {
    if let Some(text) = from_env {
        return MasterKey::from_text(text.expose())
            .map(|key| (key, KeySource::Environment))
            .map_err(KeyError::Environment);
    }
    let io = |error| KeyError::Io { path: file.display().to_string(), error };
    match std::fs::read_to_string(file) {
        Ok(text) => {
            warn_if_readable_by_others(file);
            let key = MasterKey::from_text(&text)
                .map_err(|error| KeyError::File { path: file.display().to_string(), error })?;
            Ok((key, KeySource::ExistingFile))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = file.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let key = MasterKey::generate();
            // create_new: two processes starting at once cannot both write a key; the loser reads the
            // winner's file.
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(file) {
                Ok(mut handle) => {
                    handle.write_all(key.to_hex().as_bytes()).map_err(io)?;
                    handle.write_all(b"\n").map_err(io)?;
                    handle.sync_all().map_err(io)?;
                    Ok((key, KeySource::CreatedFile))
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_master_key(None, file)
                }
                Err(error) => Err(io(error)),
            }
        }
        Err(error) => Err(io(error)),
    }
}

fn warn_if_readable_by_others(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(file)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %file.display(), "the master key file is readable by other users; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys/master.key");
        let (first, source) = load_master_key(None, &file).unwrap();
        assert_eq!(source, KeySource::CreatedFile);
        let (second, source) = load_master_key(None, &file).unwrap();
        assert_eq!(source, KeySource::ExistingFile);
        assert_eq!(first.id(), second.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn the_environment_wins_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("master.key");
        let env = Secret::new("ab".repeat(32));
        let (key, source) = load_master_key(Some(&env), &file).unwrap();
        assert_eq!(source, KeySource::Environment);
        assert_eq!(key.id(), MasterKey::from_text(&"ab".repeat(32)).unwrap().id());
        assert!(!file.exists());
        let error = load_master_key(Some(&Secret::new("nope")), &file).unwrap_err();
        assert!(error.to_string().contains("TACTFUL_MASTER_KEY"));
        std::fs::write(&file, "garbage").unwrap();
        assert!(matches!(load_master_key(None, &file), Err(KeyError::File { .. })));
    }
}
