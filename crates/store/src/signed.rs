//! Signing consent: every consent change, whichever door it came in by (an event's consent, the
//! API, the preference center, an objection, an expiry), becomes a ledger row with a receipt signed
//! by the vault and an audit entry naming the person by pseudonym only.

use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::Catalog;
use tactful_domain::consent::ConsentEvent;
use tactful_domain::receipt;
use tactful_vault::Vault;

/// A consent ledger entry to append, with its signed receipt.
pub(crate) struct ConsentRow {
    pub subject: String,
    pub event: ConsentEvent,
    pub receipt: String,
}

/// A consent event with its signed receipt and its audit entry, as
/// [`crate::ConsentStore::record_consents`] takes them. Every consent change, whichever door it came
/// in by, is signed here.
pub fn signed_consent(
    vault: &Vault,
    catalog: &Catalog,
    subject: &str,
    event: ConsentEvent,
) -> ((ConsentEvent, String), AuditEvent) {
    let (row, audit) = consent_row(vault, catalog, subject, event);
    ((row.event, row.receipt), audit)
}

/// The ledger row, signed receipt and audit entry of one consent change of `subject`.
pub(crate) fn consent_row(
    vault: &Vault,
    catalog: &Catalog,
    subject: &str,
    event: ConsentEvent,
) -> (ConsentRow, AuditEvent) {
    let body = receipt::receipt(catalog, subject, &event);
    let signature = vault.sign(receipt::SIGNING_CONTEXT, &receipt::signing_bytes(&body));
    let public_key = vault.public_key();
    let jws = vault.sign_jws(&receipt::jws_header(&public_key.id()), &receipt::signing_bytes(&body));
    let signed = receipt::signed(body, &signature, &public_key.0, &public_key.id(), &jws);
    let audit = AuditEvent::Consent {
        subject: vault.subject_pseudonym(subject),
        purpose: event.purpose.clone(),
        change: event.kind,
        method: event.method,
        version: event.version,
        receipt: event.id.clone(),
        source: event.source.clone(),
    };
    (ConsentRow { subject: subject.to_owned(), receipt: signed.to_string(), event }, audit)
}
