//! API keys: who is calling, as a catalog role. Keys are stored hashed; a presented key is checked
//! (unknown, expired, revoked, or its role gone from the catalog) before any use case runs.

use tactful_domain::catalog::Role;

use crate::App;
use crate::error::{AppError, ErrorCode};

/// The caller of a brand use case: the API key's public id and its role. Every use case that reads
/// or changes personal data for the brand takes one.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: String,
    pub role: Role,
}

impl Caller {
    /// Whether the role covers a data category (consent records are `user.privacy_preferences`).
    pub fn covers_category(&self, category: &str) -> bool {
        self.role.categories.iter().any(|allowed| tactful_domain::taxonomy::covers(allowed, category))
    }

    /// Refuses unless the role covers consent records: what consent, receipt and audit use cases need.
    pub fn require_privacy(&self) -> Result<(), AppError> {
        if self.covers_category("user.privacy_preferences") {
            Ok(())
        } else {
            Err(AppError::with_message(
                ErrorCode::Forbidden,
                format!(
                    "role {:?} does not cover user.privacy_preferences (consent records)",
                    self.role.name
                ),
            ))
        }
    }
}

/// The caller a presented API key (`tk_…`) stands for, if the key is valid now.
pub async fn authenticate(app: &App, token: &str) -> Result<Caller, AppError> {
    let record = app
        .store
        .api_key(tactful_vault::api_key_hash(token))
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::InvalidApiKey))?;
    if record.revoked_at.is_some() {
        return Err(AppError::new(ErrorCode::RevokedApiKey));
    }
    if record.expires_at.is_some_and(|end| end <= app.now()) {
        return Err(AppError::new(ErrorCode::ExpiredApiKey));
    }
    let role = app.catalog.role(&record.role).cloned().ok_or_else(|| {
        AppError::with_message(
            ErrorCode::Forbidden,
            format!("this key's role {:?} is no longer in the catalog", record.role),
        )
    })?;
    Ok(Caller { key: record.id, role })
}

/// The caller a key id stands for, if that key is still valid now (a console session names its key
/// by id and is checked again on every request, so revoking the key ends the session).
pub async fn by_id(app: &App, id: &str) -> Result<Option<Caller>, AppError> {
    let now = app.now();
    let Some(record) = app
        .store
        .api_keys()
        .await?
        .into_iter()
        .find(|key| key.id == id)
        .filter(|key| key.revoked_at.is_none() && key.expires_at.is_none_or(|end| end > now))
    else {
        return Ok(None);
    };
    Ok(app.catalog.role(&record.role).cloned().map(|role| Caller { key: record.id, role }))
}

/// Why an API key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateKeyError {
    #[error("the catalog declares no role {role:?}; declared: {declared}")]
    UnknownRole { role: String, declared: String },
    #[error("give the key a name saying who or what uses it")]
    EmptyName,
    #[error(transparent)]
    Store(#[from] tactful_store::StoreError),
}

/// Creates an API key with a catalog role. Returns its record and the key itself, which exists only
/// here: the store keeps its hash, so show it once.
pub async fn create_api_key(
    app: &App,
    name: &str,
    role: &str,
    expires_at: Option<i64>,
) -> Result<(tactful_store::ApiKeyRecord, tactful_vault::Zeroizing<String>), CreateKeyError> {
    if app.catalog.role(role).is_none() {
        let declared: Vec<&str> = app.catalog.roles().iter().map(|role| role.name.as_str()).collect();
        return Err(CreateKeyError::UnknownRole { role: role.to_owned(), declared: declared.join(", ") });
    }
    let name = name.trim();
    if name.is_empty() {
        return Err(CreateKeyError::EmptyName);
    }
    let (id, key, hash) = tactful_vault::new_api_key();
    let record = tactful_store::ApiKeyRecord {
        id: id.clone(),
        hash,
        name: name.to_owned(),
        role: role.to_owned(),
        created_at: app.now(),
        expires_at,
        revoked_at: None,
    };
    let audit = tactful_domain::audit::AuditEvent::KeyCreated {
        key: id,
        name: name.to_owned(),
        role: role.to_owned(),
        expires_at,
    };
    app.store.create_api_key(record.clone(), audit).await?;
    Ok((record, key))
}
