//! Turning a batch of accepted events into rows, the same way on every backend: which events are
//! duplicates, which subject each belongs to (the domain's identity rules, applied event by event in
//! order), which identifiers bind or move, which subjects merge — and every personal value sealed
//! under the right person's key. Backends only look things up and write the rows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tactful_domain::identity::{self, Binding, Claim, IdentifierKind, Target};
use tactful_vault::{Blind, SubjectKey, Vault};

use crate::{IdentityClaim, IngestEvent, IngestOutcome, Result, seal_context};

/// What a backend must answer while a batch is resolved.
pub(crate) trait Lookup {
    /// The subject an identifier points to now, and whether that subject is known.
    fn binding(&mut self, blind: &Blind) -> Result<Option<Binding<String>>>;
    /// The data key of an existing subject.
    fn key(&mut self, subject: &str) -> Result<Arc<SubjectKey>>;
}

/// A subject created by the batch.
pub(crate) struct CreatedSubject {
    pub id: String,
    pub wrapped: Vec<u8>,
    pub known: bool,
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
}

pub(crate) struct ProfileRow {
    pub subject: String,
    pub path: String,
    pub sealed: Vec<u8>,
    pub updated_at: i64,
}

/// Everything a batch writes. Backends write it in field order: subjects, their merges within the
/// batch, identities, merges of existing subjects, known flags, events, profile values, drops.
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
    pub events: Vec<EventRow>,
    /// The newest value per subject and path.
    pub profile: Vec<ProfileRow>,
    /// `(source, path, reason, count)`.
    pub drops: Vec<(String, String, &'static str, i64)>,
}

/// Resolves `events` (those with `duplicate[i]` set are already stored) into rows.
pub(crate) fn resolve(
    vault: &Vault,
    events: &[IngestEvent],
    duplicate: &[bool],
    lookup: &mut dyn Lookup,
) -> Result<Rows> {
    let mut state = State {
        lookup,
        vault,
        bindings: HashMap::new(),
        initial: HashMap::new(),
        touched: Vec::new(),
        known: HashMap::new(),
        known_before: HashMap::new(),
        parent: HashMap::new(),
        created: Vec::new(),
        created_ids: HashSet::new(),
    };
    let mut outcomes = Vec::with_capacity(events.len());
    let mut seen: HashSet<(&str, [u8; 16])> = HashSet::new();
    let mut event_subjects: Vec<(usize, String)> = Vec::with_capacity(events.len());
    let mut drops: HashMap<(String, String, &'static str), i64> = HashMap::new();

    for (index, event) in events.iter().enumerate() {
        if duplicate.get(index).copied().unwrap_or(false)
            || !seen.insert((event.source.as_str(), event.dedupe))
        {
            outcomes.push(IngestOutcome::Duplicate);
            continue;
        }
        for dropped in &event.dropped {
            *drops
                .entry((event.source.clone(), dropped.path.clone(), dropped.reason.as_str()))
                .or_default() += 1;
        }
        let subject = match &event.alias_previous {
            Some(previous) => state.alias(event, previous)?,
            None => state.event(event)?,
        };
        event_subjects.push((index, subject.clone()));
        outcomes.push(IngestOutcome::Stored { subject });
    }
    state.finish(events, outcomes, event_subjects, drops)
}

struct State<'a> {
    lookup: &'a mut dyn Lookup,
    vault: &'a Vault,
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

    fn target(&mut self, target: Target<String>) -> String {
        match target {
            Target::Existing(subject) => self.root(&subject),
            Target::New => {
                let created = self.vault.new_subject();
                let id = created.id.clone();
                self.known.insert(id.clone(), false);
                self.created_ids.insert(id.clone());
                self.created.push(CreatedSubject {
                    id: created.id,
                    wrapped: created.wrapped,
                    known: false,
                    key: Arc::new(created.key),
                });
                id
            }
        }
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

    fn merge(&mut self, from: &str, into: &str) {
        let from = self.root(from);
        if from == into {
            return;
        }
        let known =
            self.known.get(&from).copied().unwrap_or(false) || self.known.get(into).copied().unwrap_or(false);
        self.known.insert(into.to_owned(), known);
        self.parent.insert(from, into.to_owned());
    }

    fn event(&mut self, event: &IngestEvent) -> Result<String> {
        let mut claims = Vec::with_capacity(event.identities.len());
        for claim in &event.identities {
            claims.push(Claim { kind: claim.kind.clone(), bound: self.binding(&claim.blind)? });
        }
        let plan = identity::plan(&claims);
        let target = self.target(plan.target);
        for merged in plan.merge {
            self.merge(&merged, &target);
        }
        for index in plan.bind {
            self.bind(&target, &event.identities[index]);
        }
        Ok(target)
    }

    fn alias(&mut self, event: &IngestEvent, previous: &[IdentityClaim; 2]) -> Result<String> {
        let user =
            event.identities.iter().find(|claim| claim.kind == IdentifierKind::UserId).ok_or_else(|| {
                crate::StoreError::Internal("an alias event without a userId reached the store".into())
            })?;
        let user_binding = self.binding(&user.blind)?;
        let previous_bindings = [self.binding(&previous[0].blind)?, self.binding(&previous[1].blind)?];
        let plan = identity::plan_alias(user_binding, &previous_bindings);
        let target = self.target(plan.target);
        for merged in plan.merge {
            self.merge(&merged, &target);
        }
        if plan.bind_user {
            self.bind(&target, user);
        }
        if plan.bind_previous {
            self.bind(&target, &previous[0]);
            self.bind(&target, &previous[1]);
        }
        Ok(target)
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
        event_subjects: Vec<(usize, String)>,
        drops: HashMap<(String, String, &'static str), i64>,
    ) -> Result<Rows> {
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

        for created in &mut self.created {
            created.known = self.known.get(&created.id).copied().unwrap_or(false);
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

        let mut rows_events = Vec::with_capacity(event_subjects.len());
        let mut profile: HashMap<(String, String), ProfileRow> = HashMap::new();
        for (index, subject) in event_subjects {
            let event = &events[index];
            let key = self.key(&subject)?;
            let sealed = key.seal(
                seal_context::EVENT,
                &seal_context::event(&subject, &event.source, &event.dedupe),
                &event.record,
            );
            for (path, value) in &event.profile {
                let newer = profile
                    .get(&(subject.clone(), path.clone()))
                    .is_none_or(|existing| existing.updated_at <= event.timestamp);
                if newer {
                    let sealed =
                        key.seal(seal_context::PROFILE, &seal_context::profile(&subject, path), value);
                    profile.insert(
                        (subject.clone(), path.clone()),
                        ProfileRow {
                            subject: subject.clone(),
                            path: path.clone(),
                            sealed,
                            updated_at: event.timestamp,
                        },
                    );
                }
            }
            rows_events.push(EventRow {
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
        let mut drops: Vec<(String, String, &'static str, i64)> =
            drops.into_iter().map(|((source, path, reason), count)| (source, path, reason, count)).collect();
        drops.sort();

        Ok(Rows {
            outcomes,
            created: self.created,
            created_merged,
            identities,
            merges,
            known,
            events: rows_events,
            profile,
            drops,
        })
    }
}
