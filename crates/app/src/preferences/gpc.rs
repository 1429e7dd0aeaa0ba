//! A browser's Global Privacy Control signal on the person's own settings page, applied the way
//! ingestion applies it: sale-or-sharing purposes switched off, never over a yes given by hand.

use super::*;

/// What a browser's Global Privacy Control signal (`Sec-GPC: 1`) did when the person opened their
/// settings: the sale-or-sharing purposes it switched off now (recorded as `gpc`, with receipts, as
/// ingestion records it), and those it left on because the person said yes to them themselves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Gpc {
    pub switched_off: Vec<String>,
    pub kept_your_yes: Vec<String>,
}

/// Applies a GPC signal the way ingestion does; returns what it did, in purpose names.
pub async fn apply_gpc(app: &App, found: &SubjectState) -> Result<Gpc, AppError> {
    let now = app.now();
    let folded = ConsentStates::fold(&found.ledger);
    let mut gpc = Gpc::default();
    let mut events = Vec::new();
    for signal in tactful_domain::consent::gpc_signals(&app.catalog) {
        let Some(purpose) = app.catalog.purpose(&signal.purpose) else { continue };
        if folded.changes(&signal, purpose.version, now) {
            gpc.switched_off.push(purpose.name.clone());
            events.push(ConsentEvent {
                id: tactful_store::new_receipt_id(),
                purpose: purpose.key.clone(),
                kind: signal.kind,
                method: signal.method,
                at: now,
                expires_at: None,
                version: purpose.version,
                source: Some("preference_center".into()),
                jurisdiction: found.jurisdiction.clone(),
                // The person's own session.
                verified: true,
                provenance: None,
            });
        } else if matches!(
            folded.status(&purpose.key, purpose.version, now),
            Status::Given { explicit: true, .. }
        ) {
            gpc.kept_your_yes.push(purpose.name.clone());
        }
    }
    if !events.is_empty() {
        crate::consents::record(app, found, events).await?;
    }
    Ok(gpc)
}
