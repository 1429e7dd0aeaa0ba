//! The brand's reads of one person's consent records and access log: their consent per purpose and
//! ledger, their signed receipts, and who read their data. Consent records are personal data too,
//! so each read is in the person's access log, for the legal obligation they are kept for.

use serde_json::{Value, json};

use super::{RIGHTS_PURPOSE, Read, Reader};
use crate::consents::LedgerFormat;
use crate::error::{AppError, ErrorCode};
use crate::{App, consents, subjects};

/// The category of consent records.
const CONSENT_RECORDS: &str = "user.privacy_preferences";
/// The category of the access log: records of how a person's data was processed.
const PROCESSING_RECORDS: &str = "system.operations";

/// A person's consent per purpose now, and their ledger.
pub async fn consents(app: &App, reader: &Reader<'_>, reference: &str) -> Result<Value, AppError> {
    reader.require_privacy()?;
    let found = subjects::state_of(app, reference).await?;
    let mut read = Read::new(app, reader, RIGHTS_PURPOSE, &found.subject);
    read.returned(CONSENT_RECORDS);
    read.commit().await?;
    Ok(consents::view(app, &found))
}

/// Every signed receipt of a person, oldest first.
pub async fn receipts(app: &App, reader: &Reader<'_>, reference: &str) -> Result<Value, AppError> {
    reader.require_privacy()?;
    let subject = subjects::find(app, reference).await?;
    let receipts: Vec<Value> = app
        .store
        .receipts(&subject)
        .await?
        .into_iter()
        .map(|stored| serde_json::from_str(&stored.body).unwrap_or(Value::Null))
        .collect();
    let mut read = Read::new(app, reader, RIGHTS_PURPOSE, &subject);
    read.returned(CONSENT_RECORDS);
    read.commit().await?;
    Ok(json!({"subject": subject, "receipts": receipts}))
}

/// One signed receipt, if it is the person's (`subject`, a family root); anyone else's is unknown.
pub async fn receipt(app: &App, reader: &Reader<'_>, subject: &str, id: &str) -> Result<Value, AppError> {
    let stored = app.store.receipt(id).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownReceipt))?;
    // The receipt was written to the family root of its time; families only grow, so its subject
    // now resolves to this family's root.
    let owner = app.store.subject_state(&stored.subject).await?.map(|owner| owner.subject);
    if owner.as_deref() != Some(subject) {
        return Err(AppError::new(ErrorCode::UnknownReceipt));
    }
    let body = serde_json::from_str(&stored.body).map_err(AppError::internal)?;
    let mut read = Read::new(app, reader, RIGHTS_PURPOSE, subject);
    read.returned(CONSENT_RECORDS);
    read.commit().await?;
    Ok(body)
}

/// A receipt the brand asks for by the person's reference.
pub async fn receipt_of(
    app: &App,
    reader: &Reader<'_>,
    reference: &str,
    id: &str,
) -> Result<Value, AppError> {
    reader.require_privacy()?;
    let subject = subjects::find(app, reference).await?;
    receipt(app, reader, &subject, id).await
}

/// Who read a person's data or changed their consent, when and why, newest first (at most `limit`
/// entries, 1 to 1,000). Reading the log is itself in the log.
pub async fn access_log(
    app: &App,
    reader: &Reader<'_>,
    reference: &str,
    limit: u32,
) -> Result<Value, AppError> {
    reader.require_privacy()?;
    if !(1..=1000).contains(&limit) {
        return Err(AppError::with_message(ErrorCode::InvalidRequest, "limit must be between 1 and 1000"));
    }
    let subject = subjects::find(app, reference).await?;
    // Entries name the family root of their time: gather every member's, newest first.
    let members: Vec<String> = match app.store.subject_summary(&subject).await? {
        Some(data) => data.keys.into_iter().map(|(member, _)| member).collect(),
        None => vec![subject.clone()],
    };
    let mut entries = Vec::new();
    for member in members {
        entries.extend(app.store.audit_for_subject(&app.vault.subject_pseudonym(&member), limit).await?);
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
    entries.dedup_by_key(|entry| entry.seq);
    entries.truncate(limit as usize);
    let entries: Vec<Value> =
        entries.into_iter().filter_map(|entry| serde_json::from_str::<Value>(&entry.text).ok()).collect();
    let mut read = Read::new(app, reader, RIGHTS_PURPOSE, &subject);
    read.returned(PROCESSING_RECORDS);
    read.commit().await?;
    Ok(json!({"subject": subject, "entries": entries}))
}

/// The whole consent ledger for the brand's records, one row per change, oldest first; subjects by
/// id only. For a role that covers consent records (or the operator at the CLI), and audited.
pub async fn ledger(app: &App, exporter: &Reader<'_>, format: LedgerFormat) -> Result<String, AppError> {
    exporter.require_privacy()?;
    let entries = consents::whole_ledger(app.store.as_ref()).await?;
    let entry = tactful_domain::audit::AuditEvent::Export {
        actor: exporter.actor().to_owned(),
        role: exporter.role().to_owned(),
        purpose: RIGHTS_PURPOSE.to_owned(),
        dataset: "consent_ledger".to_owned(),
        rows: entries.len() as u64,
    };
    app.store.audit_append(vec![entry], app.now()).await?;
    Ok(consents::render(format, &entries))
}
