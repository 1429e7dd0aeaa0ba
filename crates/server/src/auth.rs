//! Who is calling the brand API, and about whom: API keys (stored hashed) resolved to a catalog role,
//! subjects named by id or by identifier, and request bodies read into the one error shape.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use tactful_domain::catalog::Role;
use tactful_domain::identity::IdentifierKind;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// The caller of a brand API route: the API key's public id and its role. Every route that reads
/// or changes personal data takes one, so a request without a valid key never reaches a handler.
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

    /// Refuses unless the role covers consent records: what consent, receipt and audit routes need.
    pub fn require_privacy(&self) -> Result<(), ApiError> {
        if self.covers_category("user.privacy_preferences") {
            Ok(())
        } else {
            Err(ApiError::with_message(
                ErrorCode::Forbidden,
                format!(
                    "role {:?} does not cover user.privacy_preferences (consent records)",
                    self.role.name
                ),
            ))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        let token = header
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::MissingApiKey))?;
        let record = state
            .store
            .api_key(tactful_vault::api_key_hash(token))
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey))?;
        if record.revoked_at.is_some() {
            return Err(ApiError::new(ErrorCode::RevokedApiKey));
        }
        if record.expires_at.is_some_and(|end| end <= crate::now_millis()) {
            return Err(ApiError::new(ErrorCode::ExpiredApiKey));
        }
        let role = state.catalog.role(&record.role).cloned().ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::Forbidden,
                format!("this key's role {:?} is no longer in the catalog", record.role),
            )
        })?;
        Ok(Caller { key: record.id, role })
    }
}

/// Finds the subject a path names: `sub_…`, or `kind:value` (`email:ada@example.com`,
/// `user_id:u-1`, `anonymous_id:…`, `phone:…`, a custom identity type). Returns its family root.
pub async fn subject(state: &AppState, reference: &str) -> Result<String, ApiError> {
    let subject = if reference.starts_with("sub_") {
        reference.to_owned()
    } else {
        let (kind, value) = identifier(state, reference)?;
        state
            .store
            .subject_by_identifier(state.vault.blind(kind.as_str(), &value))
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?
    };
    let found =
        state.store.subject_state(&subject).await?.ok_or_else(|| ApiError::new(ErrorCode::UnknownSubject))?;
    Ok(found.subject)
}

/// Reads `kind:value` (`email:Ada@Example.com`) into a kind the catalog identifies people by and a
/// normalized value.
pub fn identifier(state: &AppState, reference: &str) -> Result<(IdentifierKind, String), ApiError> {
    let (kind, value) =
        reference.split_once(':').ok_or_else(|| ApiError::new(ErrorCode::InvalidIdentifier))?;
    let kind: IdentifierKind = kind.parse().map_err(|_| ApiError::new(ErrorCode::InvalidIdentifier))?;
    let declared = matches!(kind, IdentifierKind::UserId | IdentifierKind::AnonymousId)
        || state.catalog.properties().iter().any(|property| property.identifier.as_ref() == Some(&kind));
    if !declared {
        return Err(ApiError::with_message(
            ErrorCode::InvalidIdentifier,
            format!(
                "no catalog property identifies people by {kind}: use user_id, anonymous_id or a declared identifier"
            ),
        ));
    }
    let value = kind
        .normalize(value)
        .map_err(|error| ApiError::with_message(ErrorCode::InvalidIdentifier, format!("{kind}: {error}")))?;
    Ok((kind, value))
}

/// A JSON body whose problems (not JSON, wrong shape, unknown fields) are answered in the one error
/// shape, naming what is wrong.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::JsonDataError(error)) => {
                Err(ApiError::with_message(ErrorCode::InvalidRequest, error.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(error)) => {
                Err(ApiError::with_message(ErrorCode::InvalidJson, error.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::with_message(
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            )),
            Err(other) if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(ErrorCode::RequestTooLarge))
            }
            Err(other) => Err(ApiError::with_message(ErrorCode::InvalidRequest, other.body_text())),
        }
    }
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
    state: &AppState,
    name: &str,
    role: &str,
    expires_at: Option<i64>,
) -> Result<(tactful_store::ApiKeyRecord, tactful_vault::Zeroizing<String>), CreateKeyError> {
    if state.catalog.role(role).is_none() {
        let declared: Vec<&str> = state.catalog.roles().iter().map(|role| role.name.as_str()).collect();
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
        created_at: crate::now_millis(),
        expires_at,
        revoked_at: None,
    };
    let audit = tactful_domain::audit::AuditEvent::KeyCreated {
        key: id,
        name: name.to_owned(),
        role: role.to_owned(),
        expires_at,
    };
    state.store.create_api_key(record.clone(), audit).await?;
    Ok((record, key))
}
