//! Verifying the audit log as stored, against the signed checkpoints stored beside it and any an
//! outside party kept: the one procedure `tactful audit verify` and `GET /v1/audit/verify` share.

use base64::Engine as _;
use tactful_domain::audit::{CHECKPOINT_CONTEXT, Checkpoint, Problem, Report, Verifier};
use tactful_vault::PublicKey;

use crate::{Result, Store, StoreError};

/// Entries read per page while verifying.
const PAGE: u32 = 20_000;

/// A checkpoint to check the log against, and where it came from (for the report).
#[derive(Debug, Clone)]
pub struct KeptCheckpoint {
    pub checkpoint: Checkpoint,
    pub origin: String,
}

/// Checks every entry of the log, in order, against the stored checkpoints and `kept` ones. Only
/// checkpoints signed by a `trusted` key count; any other is reported as a bad signature, since a
/// checkpoint an attacker could write proves nothing.
pub async fn verify(store: &dyn Store, trusted: &[PublicKey], kept: Vec<KeptCheckpoint>) -> Result<Report> {
    let mut all: Vec<KeptCheckpoint> = store
        .audit_checkpoints()
        .await?
        .into_iter()
        .map(|checkpoint| KeptCheckpoint {
            origin: format!("stored checkpoint of {} entries", checkpoint.size),
            checkpoint,
        })
        .collect();
    all.extend(kept);
    let mut good = Vec::with_capacity(all.len());
    let mut bad = Vec::new();
    for KeptCheckpoint { checkpoint, origin } in all {
        match checked_root(&checkpoint, trusted) {
            Some(root) => good.push((checkpoint.size, root, origin)),
            None => bad.push(Problem::BadSignature { size: checkpoint.size, origin }),
        }
    }
    let mut verifier = Verifier::new(good);
    for problem in bad {
        verifier.reject(problem);
    }
    // Each page is checked on every core while the next one is read.
    let mut page = store.audit_entries(0, PAGE).await?;
    while let Some(last) = page.last() {
        let after = last.seq;
        let checking = tokio::task::spawn_blocking(move || {
            verifier.entries(&page, |entry| (entry.seq, entry.text.as_str(), &entry.leaf));
            verifier
        });
        let (next, checked) = tokio::join!(store.audit_entries(after, PAGE), checking);
        verifier = checked.map_err(|error| StoreError::Internal(format!("verification stopped: {error}")))?;
        page = next?;
    }
    Ok(verifier.finish())
}

/// The root of a checkpoint whose signature verifies under one of the trusted keys.
fn checked_root(checkpoint: &Checkpoint, trusted: &[PublicKey]) -> Option<[u8; 32]> {
    let key = PublicKey::from_base64(&checkpoint.public_key)?;
    if !trusted.contains(&key) {
        return None;
    }
    let root = checkpoint.root_hash()?;
    let signature: [u8; 64] =
        base64::engine::general_purpose::STANDARD.decode(&checkpoint.signature).ok()?.try_into().ok()?;
    key.verify(CHECKPOINT_CONTEXT, &Checkpoint::message(checkpoint.size, &root, checkpoint.at), &signature)
        .then_some(root)
}
