//! Building an [`IngestEvent`] from a validated, minimized message: identifiers turned into blind
//! indexes, the deduplication key, and what the message says of its subject. The ingestion
//! pipeline and the tests build events the same way, here.

use tactful_domain::catalog::{Catalog, Source};
use tactful_domain::consent::ConsentSignal;
use tactful_domain::identity::IdentifierKind;
use tactful_domain::minimize::Minimized;
use tactful_domain::segment::{Message, MessageType};
use tactful_vault::Vault;

use crate::{IdentityClaim, IngestEvent};

/// How an event arrived: when, and whether who it is about is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Unix milliseconds.
    pub at: i64,
    /// A server source's word, or an identity token on a public one (see [`IngestEvent::verified`]).
    pub verified: bool,
}

impl IngestEvent {
    /// The event to store for `message` from `source`, kept as `minimized`, carrying `consent`.
    pub fn from_message(
        catalog: &Catalog,
        vault: &Vault,
        source: &Source,
        message: &Message,
        minimized: Minimized,
        consent: Vec<ConsentSignal>,
        arrival: Arrival,
    ) -> IngestEvent {
        let Arrival { at: received_at, verified } = arrival;
        let claim = |kind: IdentifierKind, raw: &str| {
            kind.normalize(raw).ok().map(|value| IdentityClaim {
                blind: vault.blind(kind.as_str(), &value),
                kind,
                value,
                property: None,
            })
        };
        let mut identities: Vec<IdentityClaim> = Vec::with_capacity(2 + minimized.identifiers.len());
        // An unproven event's userId and identifying traits are claims: data of the device, never
        // identities that could find, merge or bind a person.
        if let Some(user_id) =
            message.user_id.as_deref().filter(|_| verified).and_then(|id| claim(IdentifierKind::UserId, id))
        {
            identities.push(user_id);
        }
        let alias_previous = match (message.kind, message.previous_id.as_deref()) {
            (MessageType::Alias, Some(previous)) => {
                match (claim(IdentifierKind::UserId, previous), claim(IdentifierKind::AnonymousId, previous))
                {
                    (Some(as_user), Some(as_anonymous)) => Some([as_user, as_anonymous]),
                    _ => None,
                }
            }
            _ => None,
        };
        if alias_previous.is_none() {
            if let Some(anonymous) =
                message.anonymous_id.as_deref().and_then(|id| claim(IdentifierKind::AnonymousId, id))
            {
                identities.push(anonymous);
            }
            // Identifiers the catalog's merge rules do not link (by kind or source) are data only.
            let linking = catalog.linking();
            for (kind, raw, property) in minimized
                .identifiers
                .iter()
                .filter(|(kind, _, _)| verified && linking.links(kind, &source.key))
            {
                if let Some(found) = claim(kind.clone(), raw)
                    && !identities.iter().any(|known| known.blind == found.blind)
                {
                    identities.push(IdentityClaim { property: Some(*property), ..found });
                }
            }
        }
        // Events without a messageId cannot be deduplicated; they get a random one.
        let message_id = message
            .message_id
            .clone()
            .unwrap_or_else(|| tactful_vault::new_subject_id().replacen("sub_", "gen_", 1));
        let (jurisdiction, minor) = catalog.observed_attributes(&minimized.record, message.timestamp);
        IngestEvent {
            source: source.key.clone(),
            dedupe: vault.dedupe_key(&source.key, &message_id),
            kind: message.kind,
            name: message.event.clone(),
            timestamp: message.timestamp,
            received_at,
            identities,
            alias_previous,
            encoded: serde_json::to_vec(&minimized.record).unwrap_or_default(),
            record: minimized.record,
            kept: minimized.kept,
            profile: minimized.profile,
            dropped: minimized.dropped,
            consent,
            jurisdiction,
            minor,
            default_jurisdiction: source.default_jurisdiction.clone(),
            verified,
        }
    }
}
