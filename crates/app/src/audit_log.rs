//! The audit log for the brand's privacy team and its auditors: every entry checked against the
//! signed checkpoints (the API and the CLI show the same report), and checkpoints signed on demand
//! for an outside party to keep. Entries name people only by pseudonym.

use serde_json::{Value, json};
use tactful_domain::audit::Report;
use tactful_domain::catalog::Capability;
use tactful_domain::encoding::hex;
use tactful_store::audit::KeptCheckpoint;

use crate::error::AppError;
use crate::{App, Caller};

/// The log checked against its own stored checkpoints, and `kept` ones an auditor held elsewhere.
pub async fn verify(app: &App, kept: Vec<KeptCheckpoint>) -> Result<Report, AppError> {
    Ok(tactful_store::audit::verify(app.store.as_ref(), &[app.vault.public_key()], kept).await?)
}

/// The log verified, for a role that may read the audit log.
pub async fn verify_for(app: &App, caller: &Caller) -> Result<Value, AppError> {
    caller.require(Capability::ReadAuditLog)?;
    Ok(report_json(&verify(app, Vec::new()).await?))
}

/// Every signed checkpoint, oldest first, for a role that may read the audit log.
pub async fn checkpoints(app: &App, caller: &Caller) -> Result<Value, AppError> {
    caller.require(Capability::ReadAuditLog)?;
    Ok(json!({"checkpoints": app.store.audit_checkpoints().await?}))
}

/// Signs the log's head now (if it grew) and returns the newest checkpoint, for a role that may
/// read the audit log (an auditor keeps checkpoints elsewhere to check the log against later).
pub async fn checkpoint(app: &App, caller: &Caller) -> Result<Value, AppError> {
    caller.require(Capability::ReadAuditLog)?;
    Ok(json!({"checkpoint": app.store.audit_checkpoint(app.now()).await?}))
}

/// A verification report as the API and the CLI show it.
pub fn report_json(report: &Report) -> Value {
    json!({
        "intact": report.ok(),
        "entries": report.entries,
        "root": hex(&report.root),
        "checkpoints_checked": report.checkpoints,
        "first_bad_entry": report.first_bad_entry(),
        "first_bad_entry_in_words": report.first_bad_entry_in_words(),
        "problems": report.problems.iter().map(|problem| json!({
            "entry": problem.first_entry(),
            "description": problem.describe(),
        })).collect::<Vec<_>>(),
    })
}
