//! What one destination may receive of a page of committed events, decided now for each person:
//! the event only if the person permits one of the destination's purposes (the policy's decision
//! on their behaviour: consent, regime, guardrails, restriction), with only the properties the
//! destination is declared for that serve a purpose the person permits, sensitive ones only to a
//! destination declared for their category and with explicit consent. The rest is counted per
//! reason, never shown. Each person's disclosure is one audit entry per batch.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Destination, Forwarding, PropertyId};
use tactful_domain::policy::{BEHAVIOUR, Consents, SubjectContext};
use tactful_domain::{minimize, taxonomy::covers};
use tactful_store::{FamilyKeys, ForwardEvent, StoreError};
use time::OffsetDateTime;

use super::sink::{Forwarded, Recipient};
use crate::reads::{Read, Reader};
use crate::subjects::{Identifiers, current_identifiers};
use crate::{App, subjects};

/// A page of events made ready for one destination.
pub(super) struct Prepared {
    pub batch: Vec<Forwarded>,
    /// What was kept from the destination, per reason: whole events, or properties of sent ones.
    pub refused: BTreeMap<String, u64>,
    /// One read per person the batch discloses something of, for their access log.
    pub audit: Vec<AuditEvent>,
}

/// What is known of one person while their events of the page are judged.
struct Person<'a> {
    root: String,
    keys: FamilyKeys,
    /// Destination purposes (catalog index and key) the person permits for their events now, or
    /// the reason none is.
    purposes: Result<Vec<(usize, String)>, String>,
    /// Per catalog property: may it be sent (and why not)?
    properties: Vec<Result<(), String>>,
    identifiers: Identifiers,
    read: Option<Read<'a>>,
}

pub(super) async fn prepare(
    app: &App,
    destination: &Destination,
    forwarding: &Forwarding,
    events: &[ForwardEvent],
    now: i64,
) -> Result<Prepared, StoreError> {
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut refuse = |reason: &str, count: u64| *refused.entry(reason.to_owned()).or_default() += count;
    let wanted: Vec<&ForwardEvent> = events
        .iter()
        .filter(|item| {
            let receives = forwarding.receives_event(&item.event.kind, item.event.name.as_deref());
            if !receives {
                refuse("not_declared", 1);
            }
            receives
        })
        .collect();
    let (roots, mut people) = people(app, destination, forwarding, &wanted, now).await?;
    let mut batch = Vec::with_capacity(wanted.len());
    for item in wanted {
        let stored = &item.event;
        // Unknown or erased since: nothing of theirs opens any more.
        let Some(person) = roots.get(&stored.subject).and_then(|root| people.get_mut(root)) else {
            refuse("erased", 1);
            continue;
        };
        let purposes = match &person.purposes {
            Ok(purposes) => purposes,
            Err(reason) => {
                refuse(reason, 1);
                continue;
            }
        };
        let Value::Object(mut record) =
            person.keys.open_record(&stored.subject, &stored.source, &stored.dedupe, &stored.sealed)?
        else {
            continue;
        };
        minimize::retain_declared(&app.catalog, &mut record);
        let withheld: Vec<PropertyId> = app
            .catalog
            .properties()
            .iter()
            .filter(|property| person.properties[property.id.index()].is_err())
            .map(|property| property.id)
            .collect();
        let read = person.read.get_or_insert_with(|| {
            let purpose = purposes.iter().map(|(_, key)| key.as_str()).collect::<Vec<_>>().join(",");
            Read::new(app, &Reader::Destination(&destination.key), &purpose, &person.root)
        });
        for property in minimize::withhold(&app.catalog, &mut record, &withheld) {
            if let Err(reason) = &person.properties[property.index()] {
                refuse(reason, 1);
                read.withheld(&app.catalog.property(property).category, reason, 1);
            }
        }
        read.returned(BEHAVIOUR);
        for property in app.catalog.properties() {
            if person.properties[property.id.index()].is_ok()
                && !minimize::values_at(&record, &property.path).is_empty()
            {
                read.returned(&property.category);
            }
        }
        batch.push(Forwarded {
            message_id: app.vault.destination_token(
                &destination.key,
                &format!("event:{}:{}", stored.source, tactful_domain::encoding::hex(&stored.dedupe)),
            ),
            kind: stored.kind.clone(),
            event: stored.name.clone(),
            timestamp: OffsetDateTime::from_unix_timestamp_nanos(i128::from(stored.timestamp) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            person: Recipient {
                token: app.vault.destination_token(&destination.key, &person.root),
                identifiers: person.identifiers.clone(),
            },
            properties: flatten(record),
            purposes: purposes.iter().map(|(_, key)| key.clone()).collect(),
        });
    }
    let audit = people.into_values().filter_map(|person| person.read.map(Read::into_entry)).collect();
    Ok(Prepared { batch, refused, audit })
}

/// Everyone the events are about: the family root of each member subject that sent them, and per
/// root their family's keys and identifiers and what the destination may receive of them now.
async fn people<'a>(
    app: &'a App,
    destination: &Destination,
    forwarding: &Forwarding,
    events: &[&ForwardEvent],
    now: i64,
) -> Result<(HashMap<String, String>, HashMap<String, Person<'a>>), StoreError> {
    let mut members: Vec<String> = events.iter().map(|item| item.event.subject.clone()).collect();
    members.sort();
    members.dedup();
    if members.is_empty() {
        return Ok((HashMap::new(), HashMap::new()));
    }
    let roots: HashMap<String, String> = app.store.family_roots(members).await?.into_iter().collect();
    let mut distinct: Vec<String> = roots.values().cloned().collect();
    distinct.sort();
    distinct.dedup();
    let (states, keys) =
        tokio::try_join!(app.store.subject_states(distinct.clone()), app.store.family_keys(distinct))?;
    let keys: HashMap<String, tactful_store::WrappedKeys> = keys.into_iter().collect();
    let mut people = HashMap::new();
    for state in states {
        let Some(wrapped) = keys.get(&state.subject) else { continue };
        let context = subjects::context(app, &state);
        let consents = app.policy.consents(&context, now);
        let purposes = purposes(app, forwarding, &context, &consents);
        let properties = match &purposes {
            Ok(permitted) => properties(app, destination, forwarding, &context, &consents, permitted),
            Err(_) => Vec::new(),
        };
        let identifiers = if destination.identifiers.is_empty() || purposes.is_err() {
            Identifiers::new()
        } else {
            allowed(destination, current_identifiers(app, &state.subject).await?.unwrap_or_default())
        };
        let person = Person {
            keys: FamilyKeys::unwrap(&app.vault, wrapped)?,
            root: state.subject.clone(),
            purposes,
            properties,
            identifiers,
            read: None,
        };
        people.insert(state.subject, person);
    }
    Ok((roots, people))
}

/// The destination's purposes the person permits for their events now; if none, the reason its
/// first purpose is refused (as the policy words it).
fn purposes(
    app: &App,
    forwarding: &Forwarding,
    context: &SubjectContext,
    consents: &Consents,
) -> Result<Vec<(usize, String)>, String> {
    let mut first = None;
    let mut permitted = Vec::new();
    for key in &forwarding.purposes {
        let Some(index) = app.catalog.purpose_index(key) else { continue };
        match app.policy.decide_behaviour(context, consents, index) {
            Ok(()) => permitted.push((index, key.clone())),
            Err(reason) => {
                first.get_or_insert(reason);
            }
        }
    }
    if permitted.is_empty() {
        Err(first.map_or_else(|| "not_serving".to_owned(), |reason| app.policy.describe(reason)))
    } else {
        Ok(permitted)
    }
}

/// For each catalog property: may it go to the destination for this person, for one of the
/// purposes they permit it for?
fn properties(
    app: &App,
    destination: &Destination,
    forwarding: &Forwarding,
    context: &SubjectContext,
    consents: &Consents,
    permitted: &[(usize, String)],
) -> Vec<Result<(), String>> {
    app.catalog
        .properties()
        .iter()
        .map(|property| {
            if !forwarding.properties.contains(&property.id) {
                return Err("not_declared".to_owned());
            }
            if property.identifier.as_ref().is_some_and(|kind| !destination.identifiers.contains(kind)) {
                return Err("not_declared".to_owned());
            }
            if property.sensitive
                && !forwarding.sensitive.iter().any(|declared| covers(declared, &property.category))
            {
                return Err("sensitive_not_declared".to_owned());
            }
            let mut first = None;
            for (index, key) in permitted {
                if !property.purposes.iter().any(|collected| covers(collected, key)) {
                    continue;
                }
                match app.policy.decide(context, consents, property.id, *index) {
                    Ok(()) => return Ok(()),
                    Err(reason) => {
                        first.get_or_insert(reason);
                    }
                }
            }
            Err(first.map_or_else(|| "not_serving".to_owned(), |reason| app.policy.describe(reason)))
        })
        .collect()
}

/// The identifiers a destination may be told, of those a person has.
fn allowed(destination: &Destination, identifiers: Identifiers) -> Identifiers {
    identifiers
        .into_iter()
        .filter(|(kind, _)| destination.identifiers.iter().any(|allowed| allowed.as_str() == kind.as_str()))
        .collect()
}

/// An event's kept record as a destination receives its properties: what `properties` and `traits`
/// hold by their own names, anything else (`context`) under its own key.
fn flatten(record: Map<String, Value>) -> Map<String, Value> {
    let mut properties = Map::new();
    for (key, value) in record {
        match (key.as_str(), value) {
            ("properties" | "traits", Value::Object(inner)) => properties.extend(inner),
            (_, value) => {
                properties.insert(key, value);
            }
        }
    }
    properties
}
