//! Access decisions: may this property of this subject be stored, or used for this purpose? The
//! regimes of the subject's jurisdiction, channel consent, sensitivity, the brand's guardrails and the
//! subject's consent all weigh in. Everything that does not depend on the subject's consent is
//! compiled once into a table, so a decision is a table lookup and a consent lookup.

use std::sync::Arc;

use crate::catalog::{Catalog, PropertyId, Regime, Role};
use crate::consent::{ConsentStates, Status};
use crate::taxonomy::covers;

/// Why a property was withheld. Codes are stable: they appear in API answers and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The property is not collected for this purpose.
    PurposeNotServed,
    /// The caller's role may not read this category or use this purpose.
    Role,
    /// A brand guardrail forbids it (index into the catalog's guardrails).
    Guardrail(u16),
    /// The jurisdiction keeps personal data out of analytics.
    NoPersonalDataInAnalytics,
    /// Processing of this subject is restricted.
    Restricted,
    NoConsent,
    ConsentWithdrawn,
    ConsentExpired,
    /// Consent was given to an older wording of the purpose; the person must be asked again.
    ConsentOutdated,
    /// Sensitive data or channel marketing need consent the person expressed themselves.
    NeedsExplicitConsent,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::PurposeNotServed => "purpose_not_served",
            Reason::Role => "role_may_not_read",
            Reason::Guardrail(_) => "guardrail",
            Reason::NoPersonalDataInAnalytics => "no_personal_data_in_analytics",
            Reason::Restricted => "restricted",
            Reason::NoConsent => "no_consent",
            Reason::ConsentWithdrawn => "consent_withdrawn",
            Reason::ConsentExpired => "consent_expired",
            Reason::ConsentOutdated => "consent_outdated",
            Reason::NeedsExplicitConsent => "needs_explicit_consent",
        }
    }
}

/// What the subject-independent part of a decision says: also what the privacy notice states as
/// the basis of each use, so the notice says what the policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Allow,
    Deny(Reason),
    /// Allowed with consent given to the current wording (and, if `explicit`, expressed by the person).
    NeedsConsent {
        explicit: bool,
    },
    /// Allowed unless the person withdrew.
    UnlessWithdrawn,
}

/// What is known of a subject when deciding.
#[derive(Debug, Clone, Default)]
pub struct SubjectContext {
    /// Index of the subject's jurisdiction in the catalog; `None` when unknown, which is judged as
    /// opt-in (privacy by default).
    pub jurisdiction: Option<usize>,
    pub minor: bool,
    pub restricted: bool,
    pub consents: ConsentStates,
}

/// A subject's consent, evaluated once per purpose for one moment: what per-field checks read.
#[derive(Debug, Clone)]
pub struct Consents {
    statuses: Vec<Status>,
}

/// The compiled policy of a catalog.
#[derive(Debug)]
pub struct Policy {
    catalog: Arc<Catalog>,
    /// `rules[((jurisdiction * 2 + minor) * properties + property) * purposes + purpose]`, where
    /// jurisdiction `jurisdictions.len()` stands for "unknown".
    rules: Vec<Rule>,
    purposes: usize,
    properties: usize,
    legal_obligation: Vec<bool>,
    /// `behaviour[(jurisdiction * 2 + minor) * purposes + purpose]`: may a person's events (that
    /// they happened: behaviour, the category [`BEHAVIOUR`]) be used for the purpose at all.
    behaviour: Vec<Rule>,
}

/// The data category of the fact that a person did something (an event, whatever it carries).
pub const BEHAVIOUR: &str = "user.behavior";

impl Policy {
    pub fn new(catalog: Arc<Catalog>) -> Policy {
        let purposes = catalog.purposes().len();
        let properties = catalog.properties().len();
        let jurisdictions = catalog.jurisdictions().len() + 1;
        let mut rules = Vec::with_capacity(jurisdictions * 2 * properties * purposes);
        for jurisdiction in 0..jurisdictions {
            for minor in [false, true] {
                for property in catalog.properties() {
                    for purpose in catalog.purposes() {
                        rules.push(compile(
                            &catalog,
                            catalog.jurisdictions().get(jurisdiction),
                            minor,
                            property,
                            purpose,
                        ));
                    }
                }
            }
        }
        let legal_obligation = catalog
            .purposes()
            .iter()
            .map(|purpose| covers("essential.legal_obligation", &purpose.key))
            .collect();
        let mut behaviour = Vec::with_capacity(jurisdictions * 2 * purposes);
        for jurisdiction in 0..jurisdictions {
            for minor in [false, true] {
                for purpose in catalog.purposes() {
                    let event = crate::catalog::Property {
                        id: crate::catalog::PropertyId(0),
                        path: String::new(),
                        category: BEHAVIOUR.to_owned(),
                        purposes: vec![purpose.key.clone()],
                        retention: crate::period::Retention::days(1),
                        sensitive: false,
                        identifier: None,
                        description: None,
                    };
                    behaviour.push(compile(
                        &catalog,
                        catalog.jurisdictions().get(jurisdiction),
                        minor,
                        &event,
                        purpose,
                    ));
                }
            }
        }
        Policy { catalog, rules, purposes, properties, legal_obligation, behaviour }
    }

    /// May this subject's events be used for purpose number `purpose` at all: the decision on the
    /// fact that they happened (category [`BEHAVIOUR`]), made as for any property (regime, channel
    /// consent, guardrails, restriction, the person's consent), before what they carry is judged.
    pub fn decide_behaviour(
        &self,
        subject: &SubjectContext,
        consents: &Consents,
        purpose: usize,
    ) -> Result<(), Reason> {
        if subject.restricted && !self.legal_obligation.get(purpose).copied().unwrap_or(false) {
            return Err(Reason::Restricted);
        }
        let jurisdiction = subject.jurisdiction.unwrap_or(self.catalog.jurisdictions().len());
        let index = (jurisdiction * 2 + usize::from(subject.minor)) * self.purposes + purpose;
        let Some(rule) = self.behaviour.get(index) else { return Err(Reason::PurposeNotServed) };
        apply(*rule, consents.statuses.get(purpose).copied().unwrap_or(Status::NoSignal))
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Evaluates a subject's consents for `now`, once, for many decisions.
    pub fn consents(&self, subject: &SubjectContext, now: i64) -> Consents {
        Consents {
            statuses: self
                .catalog
                .purposes()
                .iter()
                .map(|purpose| subject.consents.status(&purpose.key, purpose.version, now))
                .collect(),
        }
    }

    /// May `property` of this subject be used for purpose number `purpose`?
    pub fn decide(
        &self,
        subject: &SubjectContext,
        consents: &Consents,
        property: PropertyId,
        purpose: usize,
    ) -> Result<(), Reason> {
        if subject.restricted && !self.legal_obligation.get(purpose).copied().unwrap_or(false) {
            return Err(Reason::Restricted);
        }
        let jurisdiction = subject.jurisdiction.unwrap_or(self.catalog.jurisdictions().len());
        let index = ((jurisdiction * 2 + usize::from(subject.minor)) * self.properties + property.index())
            * self.purposes
            + purpose;
        let Some(rule) = self.rules.get(index) else { return Err(Reason::PurposeNotServed) };
        apply(*rule, consents.statuses.get(purpose).copied().unwrap_or(Status::NoSignal))
    }

    /// The compiled rule for `property` used for purpose number `purpose`, for a person of
    /// jurisdiction number `jurisdiction` (`None`: unknown), adult or minor, before their consent
    /// is looked at.
    pub fn rule(
        &self,
        jurisdiction: Option<usize>,
        minor: bool,
        property: PropertyId,
        purpose: usize,
    ) -> Rule {
        let jurisdiction = jurisdiction.unwrap_or(self.catalog.jurisdictions().len());
        let index = ((jurisdiction * 2 + usize::from(minor)) * self.properties + property.index())
            * self.purposes
            + purpose;
        self.rules.get(index).copied().unwrap_or(Rule::Deny(Reason::PurposeNotServed))
    }

    /// May `property` be stored for this subject: is at least one of its purposes permitted? On
    /// refusal, the reason of its first purpose.
    pub fn storable(
        &self,
        subject: &SubjectContext,
        consents: &Consents,
        property: PropertyId,
    ) -> Result<(), Reason> {
        let mut first = None;
        for key in &self.catalog.property(property).purposes {
            let Some(purpose) = self.catalog.purpose_index(key) else { continue };
            match self.decide(subject, consents, property, purpose) {
                Ok(()) => return Ok(()),
                Err(reason) => {
                    first.get_or_insert(reason);
                }
            }
        }
        Err(first.unwrap_or(Reason::PurposeNotServed))
    }

    /// A reason as API answers and the audit log name it: its code, and for a guardrail its name
    /// (`guardrail:no-profiling-of-minors`).
    pub fn describe(&self, reason: Reason) -> String {
        match reason {
            Reason::Guardrail(index) => match self.catalog.guardrails().get(usize::from(index)) {
                Some(guardrail) => format!("guardrail:{}", guardrail.name),
                None => reason.code().to_owned(),
            },
            other => other.code().to_owned(),
        }
    }

    /// May `role` read `property` for purpose number `purpose`, whoever the subject?
    pub fn role_may_read(&self, role: &Role, property: PropertyId, purpose: usize) -> bool {
        let Some(purpose) = self.catalog.purposes().get(purpose) else { return false };
        let category = &self.catalog.property(property).category;
        role.purposes.iter().any(|allowed| covers(allowed, &purpose.key))
            && role.categories.iter().any(|allowed| covers(allowed, category))
    }

    /// May `role` use purpose number `purpose` at all?
    pub fn role_may_use(&self, role: &Role, purpose: usize) -> bool {
        self.catalog
            .purposes()
            .get(purpose)
            .is_some_and(|purpose| role.purposes.iter().any(|allowed| covers(allowed, &purpose.key)))
    }
}

/// A compiled rule applied to the person's consent to the purpose.
fn apply(rule: Rule, status: Status) -> Result<(), Reason> {
    match rule {
        Rule::Allow => Ok(()),
        Rule::Deny(reason) => Err(reason),
        Rule::UnlessWithdrawn => match status {
            Status::Withdrawn => Err(Reason::ConsentWithdrawn),
            _ => Ok(()),
        },
        Rule::NeedsConsent { explicit } => match status {
            Status::Given { current: false, .. } => Err(Reason::ConsentOutdated),
            Status::Given { explicit: false, .. } if explicit => Err(Reason::NeedsExplicitConsent),
            Status::Given { .. } => Ok(()),
            Status::Withdrawn => Err(Reason::ConsentWithdrawn),
            Status::Expired => Err(Reason::ConsentExpired),
            Status::NoSignal => Err(Reason::NoConsent),
        },
    }
}

/// The subject-independent decision for one jurisdiction, age group, property and purpose.
fn compile(
    catalog: &Catalog,
    jurisdiction: Option<&crate::catalog::Jurisdiction>,
    minor: bool,
    property: &crate::catalog::Property,
    purpose: &crate::catalog::Purpose,
) -> Rule {
    // A property serves a purpose it was collected for, or a narrower one (children inherit).
    if !property.purposes.iter().any(|collected| covers(collected, &purpose.key)) {
        return Rule::Deny(Reason::PurposeNotServed);
    }
    let jurisdiction_key = jurisdiction.map(|jurisdiction| jurisdiction.key.as_str());
    for (index, guardrail) in catalog.guardrails().iter().enumerate() {
        if guardrail.applies_to_category(&property.category)
            && guardrail.applies_to_purpose(&purpose.key)
            && guardrail.applies_to_subject(jurisdiction_key, minor)
        {
            return Rule::Deny(Reason::Guardrail(u16::try_from(index).unwrap_or(u16::MAX)));
        }
    }
    if jurisdiction.is_some_and(|jurisdiction| jurisdiction.no_personal_data_in_analytics)
        && covers("analytics", &purpose.key)
        && covers("user", &property.category)
    {
        return Rule::Deny(Reason::NoPersonalDataInAnalytics);
    }
    // Sensitive data needs the person's own explicit consent everywhere, even for essential purposes.
    if property.sensitive {
        return Rule::NeedsConsent { explicit: true };
    }
    if purpose.is_essential() {
        return Rule::Allow;
    }
    let channel = covers("marketing.communications", &purpose.key);
    if channel && jurisdiction.is_none_or(|jurisdiction| jurisdiction.channel_consent) {
        return Rule::NeedsConsent { explicit: true };
    }
    match jurisdiction.map(|jurisdiction| jurisdiction.regime) {
        Some(Regime::OptOut) => Rule::UnlessWithdrawn,
        Some(Regime::OptIn) | None => Rule::NeedsConsent { explicit: false },
    }
}

#[cfg(test)]
mod tests;
