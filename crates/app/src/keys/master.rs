//! Where the master key comes from: the `TACTFUL_MASTER_KEY` environment variable, or a key file that
//! is created (mode 0600, never overwritten) on first start. The key never goes to the database.

use std::io::Write;
use std::path::Path;

use tactful_domain::secret::Secret;
use tactful_vault::{MasterKey, MasterKeys, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("TACTFUL_MASTER_KEY is not a valid master key: {0}")]
    Environment(VaultError),
    #[error("the master key file {path} is not a valid master key: {error}")]
    File { path: String, error: VaultError },
    #[error("cannot read or create the master key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("TACTFUL_PREVIOUS_MASTER_KEYS holds something that is not a master key: {0}")]
    Previous(VaultError),
}

/// Where the master key comes from. The environment and a key file are built in; a KMS (AWS KMS,
/// Google Cloud KMS, HashiCorp Vault's transit engine…) plugs in by implementing this trait, for
/// example by asking the KMS to decrypt a key it wrapped. Every instance of a deployment must load
/// the same key.
pub trait MasterKeySource: Send + Sync {
    /// Where the key is, for logs. Never the key itself.
    fn describe(&self) -> String;
    fn load(&self) -> Result<MasterKey, KeyError>;
}

/// The key in `TACTFUL_MASTER_KEY` (64 hex digits or base64), typically filled by a secret manager.
pub struct EnvironmentKey(pub Secret);

impl MasterKeySource for EnvironmentKey {
    fn describe(&self) -> String {
        "the TACTFUL_MASTER_KEY environment variable".into()
    }

    fn load(&self) -> Result<MasterKey, KeyError> {
        MasterKey::from_text(self.0.expose()).map_err(KeyError::Environment)
    }
}

/// A key file, created (mode 0600, never overwritten) on first start when absent.
pub struct KeyFile(pub std::path::PathBuf);

impl MasterKeySource for KeyFile {
    fn describe(&self) -> String {
        format!("the key file {}", self.0.display())
    }

    fn load(&self) -> Result<MasterKey, KeyError> {
        load_or_create(&self.0)
    }
}

/// The keys of a configuration: the current one (see [`source`]) and, during a rotation, the ones it
/// replaces.
pub fn load_keys(config: &crate::Config) -> Result<(MasterKeys, String), KeyError> {
    let current = source(config.master_key.as_ref(), &config.master_key_file);
    let mut keys = MasterKeys::from(current.load()?);
    for file in &config.previous_master_key_files {
        let text = std::fs::read_to_string(file)
            .map_err(|error| KeyError::Io { path: file.display().to_string(), error })?;
        keys.previous.push(
            MasterKey::from_text(&text)
                .map_err(|error| KeyError::File { path: file.display().to_string(), error })?,
        );
    }
    for text in &config.previous_master_keys {
        keys.previous.push(MasterKey::from_text(text.expose()).map_err(KeyError::Previous)?);
    }
    Ok((keys, current.describe()))
}

/// The source the configuration names: the environment value if given, else the key file.
pub fn source(from_env: Option<&Secret>, file: &Path) -> Box<dyn MasterKeySource> {
    match from_env {
        Some(text) => Box::new(EnvironmentKey(text.clone())),
        None => Box::new(KeyFile(file.to_path_buf())),
    }
}

fn load_or_create(file: &Path) -> Result<MasterKey, KeyError> {
    let io = |error| KeyError::Io { path: file.display().to_string(), error };
    match std::fs::read_to_string(file) {
        Ok(text) => {
            warn_if_readable_by_others(file);
            MasterKey::from_text(&text)
                .map_err(|error| KeyError::File { path: file.display().to_string(), error })
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
                    tracing::warn!(
                        file = %file.display(),
                        "created a new master key; back it up: without it the stored data cannot be read"
                    );
                    Ok(key)
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(file),
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
        let first = KeyFile(file.clone()).load().unwrap();
        let second = KeyFile(file.clone()).load().unwrap();
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
        let chosen = source(Some(&env), &file);
        assert!(chosen.describe().contains("TACTFUL_MASTER_KEY"));
        assert_eq!(chosen.load().unwrap().id(), MasterKey::from_text(&"ab".repeat(32)).unwrap().id());
        assert!(!file.exists());
        let error = source(Some(&Secret::new("nope")), &file).load().map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("TACTFUL_MASTER_KEY"));
        std::fs::write(&file, "garbage").unwrap();
        assert!(matches!(source(None, &file).load(), Err(KeyError::File { .. })));
    }
}
