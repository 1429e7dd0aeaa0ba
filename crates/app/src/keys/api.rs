//! API keys: who is calling, as a catalog role. Keys are stored hashed; a presented key is checked
//! (unknown, expired, revoked, or its role gone from the catalog) before any use case runs, and
//! [`Caller`] is the one place that says what its role may do beyond reading.

use std::collections::BTreeSet;
use std::net::IpAddr;

use tactful_domain::catalog::{Capability, RequestKind, Role};

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

    /// Refuses unless the role covers consent records: what reading or recording consents, and
    /// reading request records, need.
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

    /// Refuses unless the role's `may` list grants `capability`: nothing beyond reading is allowed
    /// unless the catalog says so. The refusal names what to add.
    pub fn require(&self, capability: Capability) -> Result<(), AppError> {
        if self.role.may(capability) {
            Ok(())
        } else {
            Err(AppError::with_message(
                ErrorCode::Forbidden,
                format!(
                    "role {:?} may not {}: add {:?} to its \"may\" list",
                    self.role.name,
                    capability.in_words(),
                    capability.as_str()
                ),
            ))
        }
    }

    /// Refuses unless the role's `requests` list names this kind: to make such a request for a
    /// person (or start one as self-service), or to extend its deadline.
    pub fn require_request(&self, kind: RequestKind) -> Result<(), AppError> {
        if self.role.may_request(kind) {
            Ok(())
        } else {
            Err(AppError::with_message(
                ErrorCode::Forbidden,
                format!(
                    "role {:?} may not handle {} requests: add {:?} to its \"requests\" list",
                    self.role.name,
                    kind.as_str(),
                    kind.as_str()
                ),
            ))
        }
    }

    /// Refuses a package download unless the role may download packages and covers every category
    /// the package holds (`held`): a package is everything about a person, so a role that may see
    /// only part of it may not take all of it.
    pub fn require_package(&self, held: &BTreeSet<String>) -> Result<(), AppError> {
        self.require(Capability::DownloadPackages)?;
        let uncovered: Vec<&str> =
            held.iter().map(String::as_str).filter(|category| !self.covers_category(category)).collect();
        if uncovered.is_empty() {
            Ok(())
        } else {
            Err(AppError::with_message(
                ErrorCode::Forbidden,
                format!(
                    "role {:?} may not download this package: it holds {}, which the role does not cover",
                    self.role.name,
                    uncovered.join(", ")
                ),
            ))
        }
    }
}

/// The caller a presented API key (`tk_…`) stands for, if the key is valid now and `client` (the
/// caller's address, when known) is not past its refused keys.
pub async fn authenticate(app: &App, token: &str, client: Option<IpAddr>) -> Result<Caller, AppError> {
    crate::limits::api_key(app, client, check(app, token)).await
}

async fn check(app: &App, token: &str) -> Result<Caller, AppError> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tactful_domain::catalog::{Capability, Catalog, RequestKind};

    use super::Caller;

    fn caller(role: &str) -> Caller {
        let catalog = Catalog::parse(Catalog::example_text()).unwrap();
        Caller { key: "key_test".into(), role: catalog.role(role).unwrap().clone() }
    }

    /// What the example's roles may do beyond reading: `x` allowed, `.` refused, in the order
    /// download_packages, issue_links, verify_requests, read_audit_log, end_sessions, then every
    /// request type.
    #[test]
    fn the_example_roles_may_only_what_they_list() {
        let table = [
            ("privacy", "...x.", "...xxx..."),
            ("requests", "xxx.x", "xxxxxxxxx"),
            ("auditor", "...x.", "........."),
            ("marketing", ".....", "........."),
        ];
        for (role, capabilities, requests) in table {
            let caller = caller(role);
            let got: String = Capability::ALL
                .iter()
                .map(|&capability| if caller.require(capability).is_ok() { 'x' } else { '.' })
                .collect();
            assert_eq!(got, capabilities, "{role}");
            let got: String = RequestKind::ALL
                .iter()
                .map(|&kind| if caller.require_request(kind).is_ok() { 'x' } else { '.' })
                .collect();
            assert_eq!(got, requests, "{role}");
        }
    }

    #[test]
    fn a_package_needs_the_capability_and_every_category_it_holds() {
        let held: BTreeSet<String> =
            ["user.contact.email", "user.privacy_preferences", "system.operations"].map(String::from).into();
        assert!(caller("requests").require_package(&held).is_ok());
        let refused = caller("privacy").require_package(&held).unwrap_err();
        assert_eq!(
            refused.message,
            "role \"privacy\" may not download packages: add \"download_packages\" to its \"may\" list"
        );
        let mut partial = caller("requests");
        partial.role.categories = vec!["user.contact".into(), "user.privacy_preferences".into()];
        let refused = partial.require_package(&held).unwrap_err();
        assert_eq!(
            refused.message,
            "role \"requests\" may not download this package: it holds system.operations, which the role \
             does not cover"
        );
    }
}
