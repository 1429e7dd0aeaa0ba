//! Naming people: a subject by its id (`sub_…`) or by an identifier (`email:ada@example.com`),
//! normalized once here, at the edge, before anything is looked up; and what the policy needs to
//! know of a person's family.

use std::collections::BTreeMap;

use tactful_domain::identity::IdentifierKind;
use tactful_domain::policy::SubjectContext;
use tactful_store::{StoreError, SubjectState};

use crate::App;
use crate::error::{AppError, ErrorCode};

/// Finds the subject a reference names: `sub_…`, or `kind:value` (`email:ada@example.com`,
/// `user_id:u-1`, `anonymous_id:…`, `phone:…`, a custom identity type). Returns its family root.
pub async fn find(app: &App, reference: &str) -> Result<String, AppError> {
    Ok(state_of(app, reference).await?.subject)
}

/// The family state of the subject a reference names (read once: the state names the family root).
pub async fn state_of(app: &App, reference: &str) -> Result<SubjectState, AppError> {
    let subject = if reference.starts_with("sub_") {
        reference.to_owned()
    } else {
        let (kind, value) = identifier(app, reference)?;
        app.store
            .subject_by_identifier(app.vault.blind(kind.as_str(), &value))
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UnknownSubject))?
    };
    app.store.subject_state(&subject).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownSubject))
}

/// Reads `kind:value` (`email:Ada@Example.com`) into a kind the catalog identifies people by and a
/// normalized value.
pub fn identifier(app: &App, reference: &str) -> Result<(IdentifierKind, String), AppError> {
    let (kind, value) =
        reference.split_once(':').ok_or_else(|| AppError::new(ErrorCode::InvalidIdentifier))?;
    let kind: IdentifierKind = kind.parse().map_err(|_| AppError::new(ErrorCode::InvalidIdentifier))?;
    let declared = matches!(kind, IdentifierKind::UserId | IdentifierKind::AnonymousId)
        || app.catalog.properties().iter().any(|property| property.identifier.as_ref() == Some(&kind));
    if !declared {
        return Err(AppError::with_message(
            ErrorCode::InvalidIdentifier,
            format!(
                "no catalog property identifies people by {kind}: use user_id, anonymous_id or a declared identifier"
            ),
        ));
    }
    let value = kind
        .normalize(value)
        .map_err(|error| AppError::with_message(ErrorCode::InvalidIdentifier, format!("{kind}: {error}")))?;
    Ok((kind, value))
}

/// What the policy needs to know of a subject's family.
pub fn context(app: &App, found: &SubjectState) -> SubjectContext {
    SubjectContext {
        jurisdiction: found.jurisdiction.as_deref().and_then(|key| app.catalog.jurisdiction_index(key)),
        minor: found.minor,
        restricted: found.restricted,
        consents: found.consents(),
    }
}

/// The error for a purpose the catalog does not declare, listing those it does.
pub fn unknown_purpose(app: &App, purpose: &str) -> AppError {
    let declared: Vec<&str> = app.catalog.purposes().iter().map(|purpose| purpose.key.as_str()).collect();
    AppError::with_message(
        ErrorCode::UnknownPurpose,
        format!("the catalog declares no purpose \"{purpose}\"; declared: {}", declared.join(", ")),
    )
}

/// The purpose a read names (`?purpose=`), trimmed and declared: its key and catalog index.
pub fn purpose<'a>(app: &App, named: Option<&'a str>) -> Result<(&'a str, usize), AppError> {
    let key = named
        .map(str::trim)
        .filter(|purpose| !purpose.is_empty())
        .ok_or_else(|| AppError::new(ErrorCode::PurposeRequired))?;
    let index = app.catalog.purpose_index(key).ok_or_else(|| unknown_purpose(app, key))?;
    Ok((key, index))
}

/// Every identifier of a person, by kind: a person may have several emails and devices, and a
/// destination told of their erasure must be able to find every record it holds of them.
pub type Identifiers = BTreeMap<String, Vec<String>>;

/// Every identifier a person has now (kind → values, each once, in order), or `None` if they were
/// erased.
pub async fn current_identifiers(app: &App, subject: &str) -> Result<Option<Identifiers>, StoreError> {
    let Some(data) = app.store.subject_summary(subject).await? else { return Ok(None) };
    let mut identifiers = Identifiers::new();
    for identity in data.open_identities(&app.vault)? {
        identifiers.entry(identity.kind).or_default().push(identity.value.to_string());
    }
    for values in identifiers.values_mut() {
        values.sort();
        values.dedup();
    }
    Ok(Some(identifiers))
}
