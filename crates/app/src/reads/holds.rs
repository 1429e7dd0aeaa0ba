//! What an erasure kept because the law requires it, read back: only for the legal obligation it was
//! kept for, by a role allowed that purpose and the data's categories, and audited like every read.

use serde::Serialize;
use serde_json::{Value, json};
use tactful_domain::request::RequestKind;
use tactful_domain::segment::format_time;

use super::{Read, Reader};
use crate::error::{AppError, ErrorCode};
use crate::{App, Caller, subjects};

/// What a legal-hold read answers.
#[derive(Debug, Clone, Serialize)]
pub struct Holds {
    pub request: String,
    pub purpose: String,
    pub kept: Vec<Value>,
    /// Holds of categories the role may not read, left out.
    pub withheld: u32,
}

/// Reads what the erase request `id` kept under legal hold, for `purpose`.
pub async fn legal_holds(
    app: &App,
    caller: &Caller,
    id: &str,
    purpose: Option<&str>,
) -> Result<Holds, AppError> {
    let (purpose_key, purpose) = subjects::purpose(app, purpose)?;
    if !tactful_domain::taxonomy::covers("essential.legal_obligation", purpose_key) {
        return Err(AppError::with_message(
            ErrorCode::Forbidden,
            "what an erasure kept may be read only for the legal obligation it was kept for",
        ));
    }
    if !app.policy.role_may_use(&caller.role, purpose) {
        return Err(AppError::with_message(
            ErrorCode::Forbidden,
            format!("role {:?} may not read for {purpose_key}", caller.role.name),
        ));
    }
    let view = app.store.request(id).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownRequest))?;
    let record = view.record;
    let Some(subject) = record.subject.clone().filter(|_| record.kind == RequestKind::Erase) else {
        return Err(AppError::with_message(ErrorCode::Conflict, "only an erase request keeps anything"));
    };
    let mut read = Read::new(app, &Reader::Key(caller), purpose_key, &subject);
    let mut kept = Vec::new();
    let mut withheld = 0u32;
    for hold in app.store.legal_holds(&subject).await? {
        if !hold.categories.iter().all(|category| caller.covers_category(category)) {
            withheld += 1;
            continue;
        }
        let opened = app.vault.legal_hold_key().open("legal_hold", &[hold.id.as_bytes()], &hold.sealed)?;
        let body: Value = serde_json::from_slice(&opened).map_err(AppError::internal)?;
        for category in &hold.categories {
            read.returned(category);
        }
        kept.push(json!({
            "id": hold.id,
            "source": hold.source,
            "timestamp": format_time(hold.timestamp),
            "categories": hold.categories,
            "kept_until": format_time(hold.retain_until),
            "record": body,
        }));
    }
    if withheld > 0 {
        read.withheld("legal_hold", "role_may_not_read", withheld);
    }
    read.commit().await?;
    Ok(Holds { request: id.to_owned(), purpose: purpose_key.to_owned(), kept, withheld })
}
