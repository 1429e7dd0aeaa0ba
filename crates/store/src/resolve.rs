//! Turning a batch of accepted events into rows, the same way on every backend: which events are
//! duplicates, which subject each belongs to (the domain's identity rules, applied event by event in
//! order), which identifiers bind or move, which subjects merge, what the event says of the
//! subject's jurisdiction and consent — and then what of the event the subject's consent permits,
//! sealed under the right person's key. Backends only look things up and write the rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Catalog, PropertyId};
use tactful_domain::consent::{ConsentEvent, ConsentStates};
use tactful_domain::identity::{self, Binding, Claim, IdentifierKind, Target};
use tactful_domain::minimize::{self, DropReason};
use tactful_domain::policy::{Policy, SubjectContext};
use tactful_domain::segment::MessageType;
use tactful_vault::{Blind, SubjectKey, Vault};

use crate::signed::{ConsentRow, consent_row};
use crate::{IdentityClaim, IngestEvent, IngestOutcome, Result, SubjectState, seal_context};

/// What a backend must answer while a batch is resolved.
pub(crate) trait Lookup {
    /// The subject an identifier points to now (its family root), and whether it is known.
    fn binding(&mut self, blind: &Blind) -> Result<Option<Binding<String>>>;
    /// The data key of an existing subject.
    fn key(&mut self, subject: &str) -> Result<Arc<SubjectKey>>;
    /// Attributes and consent ledger of an existing family root.
    fn state(&mut self, subject: &str) -> Result<SubjectState>;
    /// Whether any of these identifiers is suppressed (its events are dropped at the door).
    fn suppressed(&mut self, blinds: &[Blind]) -> Result<bool>;
    /// How many identifiers of each kind an existing family holds (asked only when the catalog
    /// limits them).
    fn identifier_counts(&mut self, root: &str) -> Result<BTreeMap<String, u32>>;
}

/// A subject created by the batch.
pub(crate) struct CreatedSubject {
    pub id: String,
    pub wrapped: Vec<u8>,
    pub known: bool,
    pub jurisdiction: Option<String>,
    pub minor: bool,
    pub key: Arc<SubjectKey>,
}

/// An identifier to point at `subject`. `previous` is where it pointed before the batch (`None`:
/// it was unbound); a backend shared by several servers writes the row only if that still holds.
pub(crate) struct IdentityRow {
    pub blind: Blind,
    pub kind: String,
    pub subject: String,
    pub sealed: Vec<u8>,
    pub previous: Option<String>,
}

pub(crate) struct Merge {
    pub from: String,
    pub into: String,
    /// Whether `from` was known when the merge was decided; a backend shared by several servers
    /// merges only if that still holds (a person who logged in meanwhile is not merged implicitly).
    pub from_known: bool,
}

pub(crate) struct EventRow {
    pub source: String,
    pub dedupe: [u8; 16],
    pub subject: String,
    pub kind: &'static str,
    pub name: Option<String>,
    pub timestamp: i64,
    pub received_at: i64,
    pub sealed: Vec<u8>,
    /// When its shortest-lived property expires, and its longest-lived one (retention).
    pub trim_at: i64,
    pub expires_at: i64,
}

pub(crate) struct ProfileRow {
    pub subject: String,
    pub path: String,
    pub sealed: Vec<u8>,
    pub updated_at: i64,
}

/// New attributes of an existing subject.
pub(crate) struct AttributeRow {
    pub subject: String,
    pub jurisdiction: Option<String>,
    pub minor: bool,
}

/// Everything a batch writes. Backends write it in field order: subjects, their merges within the
/// batch, identities, merges of existing subjects, known flags, attributes, consents, events,
/// profile values, drops, audit entries.
pub(crate) struct Rows {
    /// Per event, in order.
    pub outcomes: Vec<IngestOutcome>,
    pub created: Vec<CreatedSubject>,
    /// Subjects created by this batch that merged into another: `(subject, family root)`.
    pub created_merged: Vec<(String, String)>,
    pub identities: Vec<IdentityRow>,
    /// Existing family roots merged into another family. The backend moves the identifiers still
    /// pointing at `from` (re-sealing them) and re-roots `from`'s family.
    pub merges: Vec<Merge>,
    /// Existing subjects that became known (a userId now points to them).
    pub known: Vec<String>,
    pub attributes: Vec<AttributeRow>,
    pub consents: Vec<ConsentRow>,
    /// What destinations are told of the consent changes.
    pub deliveries: Vec<crate::NewDelivery>,
    pub events: Vec<EventRow>,
    /// The newest value per subject and path.
    pub profile: Vec<ProfileRow>,
    /// `(source, path, reason, count)`.
    pub drops: Vec<(String, String, &'static str, i64)>,
    pub audit: Vec<AuditEvent>,
}

/// Resolves `events` (those with `duplicate[i]` set are already stored) into rows, at `now`.
pub(crate) fn resolve(
    vault: &Vault,
    policy: &Policy,
    events: &[IngestEvent],
    duplicate: &[bool],
    lookup: &mut dyn Lookup,
    now: i64,
) -> Result<Rows> {
    let mut state = State {
        lookup,
        vault,
        policy,
        catalog: policy.catalog().clone(),
        bindings: HashMap::new(),
        initial: HashMap::new(),
        touched: Vec::new(),
        known: HashMap::new(),
        known_before: HashMap::new(),
        parent: HashMap::new(),
        created: Vec::new(),
        created_ids: HashSet::new(),
        subjects: HashMap::new(),
        attributes_changed: HashSet::new(),
        consents: Vec::new(),
        audit: Vec::new(),
        held: HashMap::new(),
        refused: Vec::new(),
    };
    let mut outcomes = Vec::with_capacity(events.len());
    let mut seen: HashSet<(&str, [u8; 16])> = HashSet::new();
    let mut stored: Vec<Stored> = Vec::with_capacity(events.len());
    let mut drops: HashMap<(String, String, &'static str), i64> = HashMap::new();

    for (index, event) in events.iter().enumerate() {
        if duplicate.get(index).copied().unwrap_or(false)
            || !seen.insert((event.source.as_str(), event.dedupe))
        {
            outcomes.push(IngestOutcome::Duplicate);
            continue;
        }
        let mut blinds: Vec<Blind> = event.identities.iter().map(|claim| claim.blind).collect();
        blinds.extend(event.alias_previous.iter().flatten().map(|claim| claim.blind));
        if state.lookup.suppressed(&blinds)? {
            outcomes.push(IngestOutcome::Suppressed);
            continue;
        }
        for dropped in &event.dropped {
            *drops
                .entry((event.source.clone(), dropped.path.clone(), dropped.reason.as_str()))
                .or_default() += 1;
        }
        let (subject, deferred) = match &event.alias_previous {
            Some(previous) => (state.alias(event, previous)?, Vec::new()),
            None => state.event(event)?,
        };
        let claim_on_a_known_device = !event.verified && state.known.get(&subject).copied().unwrap_or(false);
        if claim_on_a_known_device && (event.kind == MessageType::Identify || !event.profile.is_empty()) {
            // What an unproven device says about a known person (traits, who they are) is not
            // theirs to hear: it may narrow their consent, nothing more.
            state.consent(&subject, event)?;
            outcomes.push(IngestOutcome::Unproven);
            continue;
        }
        // What the device did is its person's history; what it claims about them (their country,
        // their age) is not learnt from an unproven event.
        if !claim_on_a_known_device {
            state.learn(&subject, event)?;
        }
        // Consent arriving with the event counts before the event's own properties are judged.
        state.consent(&subject, event)?;
        let withheld = state.withheld(&subject, event, now)?;
        // An identifier from a property the subject's consent does not permit is not kept either.
        for index in deferred {
            let claim = &event.identities[index];
            if claim.property.is_none_or(|property| !withheld.contains(&property)) {
                state.bind_within_limits(&subject, claim)?;
            }
        }
        // Links the merge rules refused are counted, never made silently.
        for kind in state.refused.drain(..) {
            *drops
                .entry((
                    event.source.clone(),
                    format!("identity.{kind}"),
                    DropReason::IdentityRefused.as_str(),
                ))
                .or_default() += 1;
        }
        for property in &withheld {
            let path = state.catalog.property(*property).path.clone();
            *drops.entry((event.source.clone(), path, DropReason::NotPermitted.as_str())).or_default() += 1;
        }
        stored.push(Stored { index, subject: subject.clone(), withheld });
        outcomes.push(IngestOutcome::Stored { subject });
    }
    state.finish(events, outcomes, stored, drops)
}

/// An event to store: which one, under which subject, without which properties.
struct Stored {
    index: usize,
    subject: String,
    withheld: Vec<PropertyId>,
}

/// A subject's attributes and consent as the batch sees them.
struct Known {
    jurisdiction: Option<String>,
    minor: bool,
    restricted: bool,
    consents: ConsentStates,
}

struct State<'a> {
    lookup: &'a mut dyn Lookup,
    vault: &'a Vault,
    policy: &'a Policy,
    catalog: Arc<Catalog>,
    /// Current view of identifiers met in this batch (`None`: unbound).
    bindings: HashMap<Blind, Option<String>>,
    /// Where each identifier pointed before the batch.
    initial: HashMap<Blind, Option<String>>,
    /// Identifiers this batch bound or moved, in order, with their kind and value.
    touched: Vec<(Blind, String, String)>,
    /// Known flags of subjects met (overriding the store's), and what the store said.
    known: HashMap<String, bool>,
    known_before: HashMap<String, bool>,
    /// Merges made by this batch: subject → the subject it merged into.
    parent: HashMap<String, String>,
    created: Vec<CreatedSubject>,
    created_ids: HashSet<String>,
    /// Attributes and consent of family roots met.
    subjects: HashMap<String, Known>,
    attributes_changed: HashSet<String>,
    consents: Vec<ConsentRow>,
    audit: Vec<AuditEvent>,
    /// Identifiers each family root holds per kind, once a limit made them matter.
    held: HashMap<String, BTreeMap<String, u32>>,
    /// Links the merge rules refused while resolving the current event: the kinds that would have
    /// passed their limit.
    refused: Vec<String>,
}

impl State<'_> {
    /// The family root of `subject` after this batch's merges so far.
    fn root(&self, subject: &str) -> String {
        let mut current = subject;
        while let Some(next) = self.parent.get(current) {
            current = next;
        }
        current.to_owned()
    }

    fn binding(&mut self, blind: &Blind) -> Result<Option<Binding<String>>> {
        if !self.bindings.contains_key(blind) {
            let found = self.lookup.binding(blind)?;
            if let Some(found) = &found {
                self.known.entry(found.subject.clone()).or_insert(found.known);
                self.known_before.entry(found.subject.clone()).or_insert(found.known);
            }
            let subject = found.map(|found| found.subject);
            self.initial.insert(*blind, subject.clone());
            self.bindings.insert(*blind, subject);
        }
        Ok(self.bindings[blind].as_ref().map(|subject| {
            let root = self.root(subject);
            let known = self.known.get(&root).copied().unwrap_or(false);
            Binding { subject: root, known }
        }))
    }

    fn target(&mut self, target: Target<String>, event: &IngestEvent) -> String {
        match target {
            Target::Existing(subject) => self.root(&subject),
            Target::New => {
                let created = self.vault.new_subject();
                let id = created.id.clone();
                let jurisdiction = event.jurisdiction.clone().or_else(|| event.default_jurisdiction.clone());
                let minor = event.minor.unwrap_or(false);
                self.known.insert(id.clone(), false);
                self.created_ids.insert(id.clone());
                self.subjects.insert(
                    id.clone(),
                    Known {
                        jurisdiction: jurisdiction.clone(),
                        minor,
                        restricted: false,
                        consents: ConsentStates::default(),
                    },
                );
                self.created.push(CreatedSubject {
                    id: created.id,
                    wrapped: created.wrapped,
                    known: false,
                    jurisdiction,
                    minor,
                    key: Arc::new(created.key),
                });
                id
            }
        }
    }

    /// Identifiers `root` holds per kind now (the store's count, plus this batch's binds and merges).
    fn held(&mut self, root: &str) -> Result<&mut BTreeMap<String, u32>> {
        if !self.held.contains_key(root) {
            let counts = if self.created_ids.contains(root) {
                BTreeMap::new()
            } else {
                self.lookup.identifier_counts(root)?
            };
            self.held.insert(root.to_owned(), counts);
        }
        Ok(self.held.get_mut(root).expect("inserted above"))
    }

    /// Binds a claim to `subject` unless the merge rules refuse it (the family would hold more of
    /// its kind than a person may); a refusal is counted.
    fn bind_within_limits(&mut self, subject: &str, claim: &IdentityClaim) -> Result<()> {
        let linking = self.catalog.linking().clone();
        if linking.limit(&claim.kind).is_some()
            && self.bindings.get(&claim.blind).and_then(Clone::clone).is_none()
        {
            let more = BTreeMap::from([(claim.kind.as_str().to_owned(), 1)]);
            let held = self.held(subject)?;
            if linking.allows(held, &more).is_err() {
                self.refused.push(claim.kind.as_str().to_owned());
                return Ok(());
            }
            *held.entry(claim.kind.as_str().to_owned()).or_default() += 1;
        }
        self.bind(subject, claim);
        Ok(())
    }

    /// Merges `from`'s family into `into` unless the merge rules refuse it (together they would
    /// hold more of a kind than one person may); a refusal is counted and the families stay apart.
    fn merge_within_limits(&mut self, from: &str, into: &str) -> Result<()> {
        let linking = self.catalog.linking().clone();
        if linking.limits_anything() {
            let from_root = self.root(from);
            if from_root == into {
                return Ok(());
            }
            let more = self.held(&from_root)?.clone();
            let held = self.held(into)?;
            if let Err(kind) = linking.allows(held, &more) {
                self.refused.push(kind.as_str().to_owned());
                return Ok(());
            }
            for (kind, count) in more {
                *held.entry(kind).or_default() += count;
            }
        }
        self.merge(from, into)
    }

    fn bind(&mut self, subject: &str, claim: &IdentityClaim) {
        self.bindings.insert(claim.blind, Some(subject.to_owned()));
        if !self.touched.iter().any(|(blind, _, _)| *blind == claim.blind) {
            self.touched.push((claim.blind, claim.kind.as_str().to_owned(), claim.value.clone()));
        }
        if claim.kind == IdentifierKind::UserId {
            self.known.insert(subject.to_owned(), true);
        }
    }

    fn merge(&mut self, from: &str, into: &str) -> Result<()> {
        let from = self.root(from);
        if from == into {
            return Ok(());
        }
        let known =
            self.known.get(&from).copied().unwrap_or(false) || self.known.get(into).copied().unwrap_or(false);
        self.known.insert(into.to_owned(), known);
        // The person's consents and attributes follow them into the family: consents fold together
        // (the latest choice per purpose wins); a jurisdiction known on either side is kept.
        let merged = self.take_known(&from)?;
        let target = self.known_of(into)?;
        target.consents.merge(&merged.consents);
        if target.jurisdiction.is_none() && merged.jurisdiction.is_some() {
            target.jurisdiction = merged.jurisdiction;
            self.attributes_changed.insert(into.to_owned());
        }
        let target = self.known_of(into)?;
        if merged.minor && !target.minor {
            target.minor = true;
            self.attributes_changed.insert(into.to_owned());
        }
        self.parent.insert(from, into.to_owned());
        Ok(())
    }

    fn known_of(&mut self, subject: &str) -> Result<&mut Known> {
        if !self.subjects.contains_key(subject) {
            let state = self.lookup.state(subject)?;
            let consents = state.consents();
            self.subjects.insert(
                subject.to_owned(),
                Known {
                    jurisdiction: state.jurisdiction,
                    minor: state.minor,
                    restricted: state.restricted,
                    consents,
                },
            );
        }
        Ok(self.subjects.get_mut(subject).expect("inserted above"))
    }

    fn take_known(&mut self, subject: &str) -> Result<Known> {
        self.known_of(subject)?;
        Ok(self.subjects.remove(subject).expect("loaded above"))
    }

    /// The subject of an event, binding its userId and anonymousId. Identifiers from declared
    /// properties are returned to bind once the subject's consent is known.
    fn event(&mut self, event: &IngestEvent) -> Result<(String, Vec<usize>)> {
        let mut claims = Vec::with_capacity(event.identities.len());
        for claim in &event.identities {
            claims.push(Claim { kind: claim.kind.clone(), bound: self.binding(&claim.blind)? });
        }
        let plan = identity::plan(&claims);
        let target = self.target(plan.target, event);
        for merged in plan.merge {
            self.merge_within_limits(&merged, &target)?;
        }
        let mut deferred = Vec::new();
        for index in plan.bind {
            if event.identities[index].property.is_some() {
                deferred.push(index);
            } else {
                self.bind_within_limits(&target, &event.identities[index])?;
            }
        }
        Ok((target, deferred))
    }

    fn alias(&mut self, event: &IngestEvent, previous: &[IdentityClaim; 2]) -> Result<String> {
        let user =
            event.identities.iter().find(|claim| claim.kind == IdentifierKind::UserId).ok_or_else(|| {
                crate::StoreError::Internal("an alias event without a userId reached the store".into())
            })?;
        let user_binding = self.binding(&user.blind)?;
        let previous_bindings = [self.binding(&previous[0].blind)?, self.binding(&previous[1].blind)?];
        let plan = identity::plan_alias(user_binding, &previous_bindings);
        let target = self.target(plan.target, event);
        for merged in plan.merge {
            self.merge_within_limits(&merged, &target)?;
        }
        if plan.bind_user {
            self.bind_within_limits(&target, user)?;
        }
        if plan.bind_previous {
            self.bind_within_limits(&target, &previous[0])?;
            self.bind_within_limits(&target, &previous[1])?;
        }
        Ok(target)
    }

    /// What the event tells of the subject: its jurisdiction (from its country), whether a minor.
    fn learn(&mut self, subject: &str, event: &IngestEvent) -> Result<()> {
        let known = self.known_of(subject)?;
        let mut changed = false;
        if let Some(jurisdiction) = &event.jurisdiction {
            if known.jurisdiction.as_ref() != Some(jurisdiction) {
                known.jurisdiction = Some(jurisdiction.clone());
                changed = true;
            }
        } else if known.jurisdiction.is_none() && event.default_jurisdiction.is_some() {
            known.jurisdiction = event.default_jurisdiction.clone();
            changed = true;
        }
        if let Some(minor) = event.minor
            && known.minor != minor
        {
            known.minor = minor;
            changed = true;
        }
        if changed && !self.created_ids.contains(subject) {
            self.attributes_changed.insert(subject.to_owned());
        }
        Ok(())
    }

    /// Records the consent changes the event carries, each with a signed receipt and an audit entry.
    fn consent(&mut self, subject: &str, event: &IngestEvent) -> Result<()> {
        if event.consent.is_empty() {
            return Ok(());
        }
        let catalog = self.catalog.clone();
        let reached_known_person = self.known.get(subject).copied().unwrap_or(false);
        let signals = if event.verified {
            event.consent.clone()
        } else {
            tactful_domain::consent::claimed(&event.consent, reached_known_person)
        };
        let known = self.known_of(subject)?;
        let jurisdiction = known.jurisdiction.clone();
        let mut recorded = Vec::new();
        for signal in &signals {
            let Some(purpose) = catalog.purpose(&signal.purpose) else { continue };
            // An older event (an offline queue, a late retry) or consent string does not undo a
            // newer choice.
            let Some(at) = known.consents.signal_time(signal, event.timestamp) else { continue };
            if !known.consents.changes(signal, purpose.version, event.timestamp) {
                continue;
            }
            let entry = ConsentEvent {
                id: crate::new_receipt_id(),
                purpose: signal.purpose.clone(),
                kind: signal.kind,
                method: signal.method,
                at,
                expires_at: None,
                version: purpose.version,
                source: Some(event.source.clone()),
                jurisdiction: jurisdiction.clone(),
                verified: event.verified,
                provenance: signal.provenance.clone(),
            };
            known.consents.apply(&entry);
            recorded.push(entry);
        }
        for entry in recorded {
            let (row, audit) = consent_row(self.vault, &catalog, subject, entry);
            self.consents.push(row);
            self.audit.push(audit);
        }
        Ok(())
    }

    /// The kept properties of the event that the subject's consent and the policy do not permit.
    fn withheld(&mut self, subject: &str, event: &IngestEvent, now: i64) -> Result<Vec<PropertyId>> {
        let policy = self.policy;
        let catalog = self.catalog.clone();
        let known = self.known_of(subject)?;
        // The consent states are lent to the context and given back, not copied for every event.
        let mut context = SubjectContext {
            jurisdiction: known.jurisdiction.as_deref().and_then(|key| catalog.jurisdiction_index(key)),
            minor: known.minor,
            restricted: known.restricted,
            consents: std::mem::take(&mut known.consents),
        };
        let consents = policy.consents(&context, now);
        let withheld = event
            .kept
            .iter()
            .copied()
            .filter(|&property| policy.storable(&context, &consents, property).is_err())
            .collect();
        known.consents = std::mem::take(&mut context.consents);
        Ok(withheld)
    }

    fn key(&mut self, subject: &str) -> Result<Arc<SubjectKey>> {
        match self.created.iter().find(|created| created.id == subject) {
            Some(created) => Ok(created.key.clone()),
            None => self.lookup.key(subject),
        }
    }

    fn finish(
        mut self,
        events: &[IngestEvent],
        outcomes: Vec<IngestOutcome>,
        stored: Vec<Stored>,
        drops: HashMap<(String, String, &'static str), i64>,
    ) -> Result<Rows> {
        let (created_merged, merges) = self.merges();
        let identities = self.identity_rows()?;
        let (known, attributes) = self.attribute_rows();
        let (rows_events, profile) = self.event_rows(events, stored)?;
        let mut drops: Vec<(String, String, &'static str, i64)> =
            drops.into_iter().map(|((source, path, reason), count)| (source, path, reason, count)).collect();
        drops.sort();

        let mut deliveries = Vec::new();
        for row in &self.consents {
            deliveries.extend(crate::requests::consent_deliveries(
                self.vault,
                &self.catalog,
                &row.subject,
                std::slice::from_ref(&row.event),
            ));
        }
        Ok(Rows {
            deliveries,
            outcomes,
            created: self.created,
            created_merged,
            identities,
            merges,
            known,
            attributes,
            consents: self.consents,
            events: rows_events,
            profile,
            drops,
            audit: self.audit,
        })
    }

    /// The merges of this batch: subjects it created that joined a family at once, and the others.
    fn merges(&self) -> (Vec<(String, String)>, Vec<Merge>) {
        let merged: Vec<String> = self.parent.keys().cloned().collect();
        let mut created_merged = Vec::new();
        let mut merges = Vec::new();
        for subject in merged {
            let root = self.root(&subject);
            if self.created_ids.contains(&subject) {
                created_merged.push((subject, root));
            } else {
                let from_known = self.known_before.get(&subject).copied().unwrap_or(false);
                merges.push(Merge { from: subject, into: root, from_known });
            }
        }
        merges.sort_by(|a, b| a.from.cmp(&b.from));
        created_merged.sort();
        (created_merged, merges)
    }

    /// The identifiers this batch bound or moved, sealed under their subject's key.
    fn identity_rows(&mut self) -> Result<Vec<IdentityRow>> {
        let mut identities = Vec::with_capacity(self.touched.len());
        for (blind, kind, value) in std::mem::take(&mut self.touched) {
            let Some(Some(bound)) = self.bindings.get(&blind).cloned() else { continue };
            let subject = self.root(&bound);
            let previous = self.initial.get(&blind).cloned().flatten();
            if previous.as_deref() == Some(subject.as_str()) {
                continue;
            }
            let key = self.key(&subject)?;
            let sealed = key.seal(
                seal_context::IDENTITY,
                &seal_context::identity(&subject, &blind.0),
                value.as_bytes(),
            );
            identities.push(IdentityRow { blind, kind, subject, sealed, previous });
        }
        Ok(identities)
    }

    /// Subjects that became known, and changed attributes; subjects created by the batch take
    /// theirs as they are written.
    fn attribute_rows(&mut self) -> (Vec<String>, Vec<AttributeRow>) {
        for created in &mut self.created {
            created.known = self.known.get(&created.id).copied().unwrap_or(false);
            if let Some(known) = self.subjects.get(&created.id) {
                created.jurisdiction.clone_from(&known.jurisdiction);
                created.minor = known.minor;
            }
        }
        let mut known: Vec<String> = self
            .known
            .iter()
            .filter(|(subject, known)| {
                **known
                    && self.known_before.get(*subject) == Some(&false)
                    && !self.parent.contains_key(*subject)
            })
            .map(|(subject, _)| subject.clone())
            .collect();
        known.sort();
        let mut attributes: Vec<AttributeRow> = self
            .attributes_changed
            .iter()
            .filter(|subject| !self.created_ids.contains(*subject) && !self.parent.contains_key(*subject))
            .filter_map(|subject| {
                self.subjects.get(subject).map(|known| AttributeRow {
                    subject: subject.clone(),
                    jurisdiction: known.jurisdiction.clone(),
                    minor: known.minor,
                })
            })
            .collect();
        attributes.sort_by(|a, b| a.subject.cmp(&b.subject));
        (known, attributes)
    }

    /// The stored events, sealed with what their subject's consent withholds left out, and the
    /// newest profile value per subject and path they set.
    fn event_rows(
        &mut self,
        events: &[IngestEvent],
        stored: Vec<Stored>,
    ) -> Result<(Vec<EventRow>, Vec<ProfileRow>)> {
        let catalog = self.catalog.clone();
        let mut rows_events = Vec::with_capacity(stored.len());
        let mut profile: HashMap<(String, String), ProfileRow> = HashMap::new();
        for Stored { index, subject, withheld } in stored {
            let event = &events[index];
            let key = self.key(&subject)?;
            let withholding;
            let record = if withheld.is_empty() {
                event.encoded.as_slice()
            } else {
                let mut record = event.record.clone();
                minimize::withhold(&catalog, &mut record, &withheld);
                withholding = serde_json::to_vec(&record).map_err(|error| {
                    crate::StoreError::Internal(format!("cannot encode a record: {error}"))
                })?;
                withholding.as_slice()
            };
            let sealed = key.seal(
                seal_context::EVENT,
                &seal_context::event(&subject, &event.source, &event.dedupe),
                record,
            );
            for (property, value) in &event.profile {
                if withheld.contains(property) {
                    continue;
                }
                let path = catalog.property(*property).path.clone();
                let newer = profile
                    .get(&(subject.clone(), path.clone()))
                    .is_none_or(|existing| existing.updated_at <= event.timestamp);
                if newer {
                    let bytes = serde_json::to_vec(value).unwrap_or_default();
                    let sealed =
                        key.seal(seal_context::PROFILE, &seal_context::profile(&subject, &path), &bytes);
                    profile.insert(
                        (subject.clone(), path.clone()),
                        ProfileRow { subject: subject.clone(), path, sealed, updated_at: event.timestamp },
                    );
                }
            }
            let stored_properties: Vec<PropertyId> =
                event.kept.iter().copied().filter(|property| !withheld.contains(property)).collect();
            let (trim_at, expires_at) =
                tactful_domain::retention::lifetime(&catalog, &stored_properties, event.timestamp);
            rows_events.push(EventRow {
                trim_at,
                expires_at,
                source: event.source.clone(),
                dedupe: event.dedupe,
                subject,
                kind: event.kind.as_str(),
                name: event.name.clone(),
                timestamp: event.timestamp,
                received_at: event.received_at,
                sealed,
            });
        }
        let mut profile: Vec<ProfileRow> = profile.into_values().collect();
        profile.sort_by(|a, b| (&a.subject, &a.path).cmp(&(&b.subject, &b.path)));
        Ok((rows_events, profile))
    }
}
