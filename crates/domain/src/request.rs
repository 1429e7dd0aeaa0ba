//! Data-subject requests as data: what a person can ask for (access, export, rectify, restrict,
//! object, erase, suppress), the life of a request (statuses, legal deadlines and their extension),
//! and what erasure keeps under legal hold. The engine that runs requests lives in the server; the
//! rules it follows live here.

use serde_json::{Map, Value};

pub use crate::catalog::RequestKind;
use crate::catalog::{Catalog, Jurisdiction, PropertyId};
use crate::minimize;
use crate::taxonomy::covers;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    Received,
    /// Waiting for the person to prove who they are (self-service requests).
    Verifying,
    Running,
    /// Carried out here; waiting for destinations to acknowledge.
    WaitingOnDestinations,
    Completed,
    /// Carried out here, but some destination never acknowledged within its horizon.
    PartiallyCompleted,
    Failed,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 7] = [
        RequestStatus::Received,
        RequestStatus::Verifying,
        RequestStatus::Running,
        RequestStatus::WaitingOnDestinations,
        RequestStatus::Completed,
        RequestStatus::PartiallyCompleted,
        RequestStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Received => "received",
            RequestStatus::Verifying => "verifying",
            RequestStatus::Running => "running",
            RequestStatus::WaitingOnDestinations => "waiting_on_destinations",
            RequestStatus::Completed => "completed",
            RequestStatus::PartiallyCompleted => "partially_completed",
            RequestStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RequestStatus> {
        RequestStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// A request in a final status never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, RequestStatus::Completed | RequestStatus::PartiallyCompleted | RequestStatus::Failed)
    }

    /// Whether a request in this status is the person's open request of its kind (one at a time).
    /// A self-service request waiting for its code does not count yet: anyone can type an address,
    /// and that must not block the person's own requests.
    pub fn holds_the_slot(self) -> bool {
        !self.is_final() && self != RequestStatus::Verifying
    }

    /// The moves a request may make; anything else is a bug or a race, and is refused.
    pub fn may_become(self, next: RequestStatus) -> bool {
        use RequestStatus::*;
        matches!(
            (self, next),
            (Received, Verifying | Running | Failed)
                | (Verifying, Running | Failed)
                | (Running, WaitingOnDestinations | Completed | Failed)
                | (WaitingOnDestinations, Completed | PartiallyCompleted)
        )
    }
}

const DAY_MS: i64 = 86_400_000;

/// Days to answer a person whose jurisdiction is unknown: the shortest common deadline (GDPR's).
pub const UNKNOWN_JURISDICTION_DEADLINE_DAYS: u32 = 30;

/// When a request received at `received_at` must be answered, by the person's jurisdiction.
pub fn due_at(received_at: i64, jurisdiction: Option<&Jurisdiction>) -> i64 {
    let days = jurisdiction
        .map_or(UNKNOWN_JURISDICTION_DEADLINE_DAYS, |jurisdiction| jurisdiction.request_deadline_days);
    received_at.saturating_add(i64::from(days) * DAY_MS)
}

/// Why a deadline could not be extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionRefused {
    #[error("the deadline was already extended once")]
    AlreadyExtended,
    #[error("say why the deadline is extended: the person is told the reason")]
    NoReason,
    #[error("the law here allows at most {allowed} more days")]
    TooLong { allowed: u32 },
    #[error("an extension must be at least one day")]
    TooShort,
    #[error("a finished request has no deadline to extend")]
    Finished,
}

/// The new deadline of a request extended once by `days` (with a reason), within what the person's
/// jurisdiction allows.
pub fn extend(
    due: i64,
    status: RequestStatus,
    already_extended: bool,
    jurisdiction: Option<&Jurisdiction>,
    days: u32,
    reason: &str,
) -> Result<i64, ExtensionRefused> {
    if status.is_final() {
        return Err(ExtensionRefused::Finished);
    }
    if already_extended {
        return Err(ExtensionRefused::AlreadyExtended);
    }
    if reason.trim().is_empty() {
        return Err(ExtensionRefused::NoReason);
    }
    // Unknown jurisdiction: the strictest common rule (CCPA's single 45 days is shorter than GDPR's 60).
    let allowed = jurisdiction.map_or(45, |jurisdiction| jurisdiction.request_extension_days);
    if days == 0 {
        return Err(ExtensionRefused::TooShort);
    }
    if days > allowed {
        return Err(ExtensionRefused::TooLong { allowed });
    }
    Ok(due.saturating_add(i64::from(days) * DAY_MS))
}

/// How many wrong verification codes end a self-service request.
pub const VERIFICATION_ATTEMPTS: u32 = 5;
/// How long a verification code is valid.
pub const VERIFICATION_TTL_MS: i64 = 15 * 60 * 1000;

/// The properties the law requires to keep through an erasure: those collected for a legal
/// obligation (invoices for tax law, say), kept for their declared retention.
pub fn legal_hold_properties(catalog: &Catalog) -> Vec<PropertyId> {
    catalog
        .properties()
        .iter()
        .filter(|property| {
            property.purposes.iter().any(|purpose| covers("essential.legal_obligation", purpose))
        })
        .map(|property| property.id)
        .collect()
}

/// What of an event record erasure keeps under legal hold: the record reduced to its legal-hold
/// properties, the data categories it holds, and when it is to be deleted (the event's time plus
/// the longest retention among the properties kept). `None` when the record holds none.
pub fn held_part(catalog: &Catalog, record: &Map<String, Value>, timestamp: i64) -> Option<HeldPart> {
    let held = legal_hold_properties(catalog);
    if held.is_empty() {
        return None;
    }
    let others: Vec<PropertyId> =
        catalog.properties().iter().map(|property| property.id).filter(|id| !held.contains(id)).collect();
    let mut kept = record.clone();
    minimize::retain_declared(catalog, &mut kept);
    let _ = minimize::withhold(catalog, &mut kept, &others);
    if kept.is_empty() {
        return None;
    }
    // Which held properties are present: withholding them from a copy says so.
    let present = minimize::withhold(catalog, &mut kept.clone(), &held);
    let retain_until = present
        .iter()
        .map(|&id| timestamp.saturating_add(catalog.property(id).retention.as_millis()))
        .max()
        .unwrap_or(timestamp);
    let mut categories: Vec<String> =
        present.iter().map(|&id| catalog.property(id).category.clone()).collect();
    categories.sort();
    categories.dedup();
    Some(HeldPart { record: kept, categories, retain_until })
}

/// The part of a record kept under legal hold.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldPart {
    pub record: Map<String, Value>,
    pub categories: Vec<String>,
    pub retain_until: i64,
}

#[cfg(test)]
mod tests;
