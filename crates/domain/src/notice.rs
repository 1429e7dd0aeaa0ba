//! The privacy notice, generated from the catalog and its compiled policy: what is collected, why,
//! the benefit, how long it is kept, on which basis in each jurisdiction, who receives what, and
//! the customer's rights. The basis of each use is read from the same decision table that enforces
//! it (`Policy::rule`), so the notice cannot say one thing while the software does another.

use std::collections::BTreeMap;

use crate::catalog::{Catalog, DestinationMessage, Regime};
use crate::policy::{Policy, Reason, Rule};
use crate::taxonomy::Taxonomy;

/// The whole notice.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub brand: String,
    pub contact: Option<String>,
    pub policy_url: Option<String>,
    /// The SHA-256 of the catalog it was generated from (the notice's version).
    pub catalog_sha256: String,
    pub purposes: Vec<PurposeNotice>,
    pub recipients: Vec<Recipient>,
    pub jurisdictions: Vec<JurisdictionNotice>,
    /// The brand's own rules, in its words.
    pub promises: Vec<Promise>,
    pub rights: Vec<Right>,
    pub personalization: Option<PersonalizationNotice>,
    pub analytics: Option<AnalyticsNotice>,
    /// How each source's events are tied to a person: what counts as proof that they are yours.
    pub identity: Vec<SourceProof>,
}

/// What proves that the events of one source are a person's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProof {
    pub source: String,
    /// `server`, `browser` or `mobile`.
    pub kind: &'static str,
    /// `our_servers` (the brand's own systems say so), `signed_in` (only while you are signed in,
    /// proven by a token from the brand's servers), or `taken_at_its_word` (the brand trusts what a
    /// device says).
    pub proof: &'static str,
    pub in_words: &'static str,
}

/// One purpose, with the data it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct PurposeNotice {
    pub key: String,
    pub name: String,
    pub description: String,
    pub benefit: String,
    pub version: u32,
    /// Needed to provide the service itself (cannot be switched off, only ended by erasure).
    pub essential: bool,
    pub data: Vec<DataNotice>,
    /// The basis per jurisdiction (and for people whose jurisdiction is unknown).
    pub basis: Vec<BasisNotice>,
}

/// A kind of data a purpose uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataNotice {
    /// The fideslang data category.
    pub category: String,
    /// Its name in plain words ("Contact email", "Browsing history").
    pub category_name: String,
    /// What the catalog says the data is, in the brand's words.
    pub descriptions: Vec<String>,
    /// The longest retention of its properties, in words.
    pub kept_for: String,
    pub sensitive: bool,
}

/// How a purpose may use data in one jurisdiction, for adults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasisNotice {
    /// The jurisdiction's key, or `None` for people whose jurisdiction is not known.
    pub jurisdiction: Option<String>,
    pub jurisdiction_name: String,
    /// Each basis that applies, with the categories it applies to.
    pub uses: Vec<(Basis, Vec<String>)>,
}

/// The basis of a use, as the policy enforces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Basis {
    /// Needed for the service; no consent asked.
    Necessary,
    /// Only after the person says yes.
    Consent,
    /// Only after the person says yes themselves (sensitive data, marketing by email or SMS).
    ExplicitConsent,
    /// Used unless the person says no (opt-out regimes).
    UnlessYouOptOut,
    /// Never, because of one of the brand's own rules (the rule's name).
    NeverBecause(String),
    /// Never: this jurisdiction keeps personal data out of analytics.
    NeverInAnalytics,
}

impl Basis {
    /// A stable code for machine-readable notices.
    pub fn code(&self) -> &'static str {
        match self {
            Basis::Necessary => "necessary",
            Basis::Consent => "consent",
            Basis::ExplicitConsent => "explicit_consent",
            Basis::UnlessYouOptOut => "unless_you_opt_out",
            Basis::NeverBecause(_) => "never",
            Basis::NeverInAnalytics => "never_personal_data_in_analytics",
        }
    }

    /// The basis in plain words for the customer.
    pub fn in_words(&self) -> String {
        match self {
            Basis::Necessary => "Needed to provide the service; no consent is asked.".into(),
            Basis::Consent => "Only if you say yes. You can change your mind at any time.".into(),
            Basis::ExplicitConsent => {
                "Only if you say yes yourself, explicitly. You can change your mind at any time.".into()
            }
            Basis::UnlessYouOptOut => "Used unless you say no. You can say no at any time.".into(),
            Basis::NeverBecause(rule) => format!("Never (our rule: {rule})."),
            Basis::NeverInAnalytics => "Never: statistics here use no personal data.".into(),
        }
    }
}

/// A downstream system the brand connected, and what it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub name: String,
    /// What it is told: erasures, restrictions, consent changes…
    pub receives: Vec<String>,
    /// Which of your identifiers it receives (to find you in its own records).
    pub identifiers: Vec<String>,
}

/// A jurisdiction's rules as the customer meets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JurisdictionNotice {
    pub key: String,
    pub name: String,
    /// `opt_in` or `opt_out`.
    pub regime: &'static str,
    pub request_deadline_days: u32,
    pub request_extension_days: u32,
    /// Global Privacy Control is honoured as an opt-out of sale and sharing here.
    pub honours_gpc: bool,
}

/// One of the brand's rules (a guardrail), in its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    pub name: String,
    pub text: String,
}

/// A right and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Right {
    pub key: &'static str,
    pub title: &'static str,
    pub how: &'static str,
}

/// What recommendations promise.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonalizationNotice {
    pub purpose: String,
    pub min_people: u32,
    pub items_per_person: u32,
    pub epsilon: Option<f64>,
    pub sensitive_topics: Vec<String>,
}

/// What statistics promise.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsNotice {
    pub purpose: String,
    /// The smallest group any dataset shows.
    pub min_people: u32,
    /// Whether some dataset adds differential-privacy noise.
    pub noise: bool,
}

/// The rights every customer has, and where to use them.
const RIGHTS: &[Right] = &[
    Right {
        key: "access",
        title: "See what we hold about you",
        how: "Open your privacy settings: \"What we know about you\" lists it, and \"Download my data\" gives you all of it, as a file for people (HTML) and one for machines (JSON).",
    },
    Right {
        key: "consent",
        title: "Say yes or no to each use, and change your mind",
        how: "Each use that needs your consent has a switch in your privacy settings. Every change gives you a signed receipt.",
    },
    Right {
        key: "object",
        title: "Object to a use",
        how: "Switch it off in your privacy settings, or write to us.",
    },
    Right { key: "rectify", title: "Correct what is wrong", how: "Write to us and we correct it." },
    Right {
        key: "restrict",
        title: "Pause the use of your data",
        how: "Write to us: while it is paused we keep your data but use it for nothing except what the law requires.",
    },
    Right {
        key: "erase",
        title: "Have your data deleted everywhere",
        how: "\"Delete my data\" in your privacy settings. We delete it here and tell every system we connected; only what the law requires us to keep stays, sealed, until its time is up.",
    },
    Right {
        key: "access_log",
        title: "See who used your data",
        how: "\"Who accessed my data\" in your privacy settings lists every use: when, which data, and why.",
    },
    Right {
        key: "gpc",
        title: "Opt out with your browser",
        how: "Where the law treats it as an opt-out (California), a Global Privacy Control signal from your browser opts you out of sale and sharing.",
    },
];

/// Builds the notice from the catalog and its compiled policy.
pub fn notice(policy: &Policy) -> Notice {
    let catalog: &Catalog = policy.catalog();
    let taxonomy = Taxonomy::builtin();
    let guardrail_name = |reason: Reason| match reason {
        Reason::Guardrail(index) => {
            catalog.guardrails().get(usize::from(index)).map(|g| g.name.clone()).unwrap_or_default()
        }
        _ => String::new(),
    };
    let mut jurisdictions: Vec<(Option<usize>, Option<String>, String)> = catalog
        .jurisdictions()
        .iter()
        .enumerate()
        .map(|(index, j)| (Some(index), Some(j.key.clone()), j.name.clone()))
        .collect();
    jurisdictions.push((None, None, "Anywhere else".to_owned()));

    let purposes = catalog
        .purposes()
        .iter()
        .enumerate()
        .map(|(index, purpose)| {
            let serving: Vec<_> = catalog
                .properties()
                .iter()
                .filter(|p| p.purposes.iter().any(|served| crate::taxonomy::covers(served, &purpose.key)))
                .collect();
            let mut data: BTreeMap<&str, DataNotice> = BTreeMap::new();
            for property in &serving {
                let entry = data.entry(property.category.as_str()).or_insert_with(|| DataNotice {
                    category: property.category.clone(),
                    category_name: taxonomy.plain_category_name(&property.category),
                    descriptions: Vec::new(),
                    kept_for: String::new(),
                    sensitive: false,
                });
                if let Some(text) = &property.description
                    && !entry.descriptions.contains(text)
                {
                    entry.descriptions.push(text.clone());
                }
                entry.sensitive |= property.sensitive;
            }
            for entry in data.values_mut() {
                let longest =
                    serving.iter().filter(|p| p.category == entry.category).map(|p| p.retention).max();
                entry.kept_for = longest.map(|r| r.in_words()).unwrap_or_default();
            }
            let basis = jurisdictions
                .iter()
                .map(|(jurisdiction, key, name)| {
                    let mut uses: BTreeMap<Basis, Vec<String>> = BTreeMap::new();
                    for property in &serving {
                        let basis = match policy.rule(*jurisdiction, false, property.id, index) {
                            Rule::Allow => Basis::Necessary,
                            Rule::NeedsConsent { explicit: false } => Basis::Consent,
                            Rule::NeedsConsent { explicit: true } => Basis::ExplicitConsent,
                            Rule::UnlessWithdrawn => Basis::UnlessYouOptOut,
                            Rule::Deny(Reason::NoPersonalDataInAnalytics) => Basis::NeverInAnalytics,
                            Rule::Deny(reason @ Reason::Guardrail(_)) => {
                                Basis::NeverBecause(guardrail_name(reason))
                            }
                            Rule::Deny(_) => continue,
                        };
                        let categories = uses.entry(basis).or_default();
                        if !categories.contains(&property.category) {
                            categories.push(property.category.clone());
                        }
                    }
                    BasisNotice {
                        jurisdiction: key.clone(),
                        jurisdiction_name: name.clone(),
                        uses: uses.into_iter().collect(),
                    }
                })
                .collect();
            PurposeNotice {
                key: purpose.key.clone(),
                name: purpose.name.clone(),
                description: purpose.description.clone(),
                benefit: purpose.benefit.clone(),
                version: purpose.version,
                essential: purpose.is_essential(),
                data: data.into_values().collect(),
                basis,
            }
        })
        .collect();

    let recipients = catalog
        .destinations()
        .iter()
        .map(|destination| Recipient {
            name: destination.name.clone(),
            receives: destination.receives.iter().map(|m| message_in_words(*m).to_owned()).collect(),
            identifiers: destination.identifiers.iter().map(|kind| kind.to_string()).collect(),
        })
        .collect();
    let jurisdictions = catalog
        .jurisdictions()
        .iter()
        .map(|j| JurisdictionNotice {
            key: j.key.clone(),
            name: j.name.clone(),
            regime: match j.regime {
                Regime::OptIn => "opt_in",
                Regime::OptOut => "opt_out",
            },
            request_deadline_days: j.request_deadline_days,
            request_extension_days: j.request_extension_days,
            honours_gpc: j.regime == Regime::OptOut,
        })
        .collect();
    let promises = catalog
        .guardrails()
        .iter()
        .map(|g| Promise {
            name: g.name.clone(),
            text: g.description.clone().unwrap_or_else(|| g.name.replace('-', " ")),
        })
        .collect();
    let personalization = catalog.personalization().map(|p| PersonalizationNotice {
        purpose: p.purpose.clone(),
        min_people: p.min_support,
        items_per_person: p.cap,
        epsilon: p.epsilon,
        sensitive_topics: p.sensitive_categories.clone(),
    });
    let analytics = catalog.analytics().map(|a| AnalyticsNotice {
        purpose: a.purpose.clone(),
        min_people: a.datasets.iter().map(|d| d.k).min().unwrap_or(a.k),
        noise: a.datasets.iter().any(|d| d.epsilon.is_some()),
    });
    let brand = catalog.brand();
    Notice {
        brand: brand.name.clone(),
        contact: brand.contact.clone(),
        policy_url: brand.policy_url.clone(),
        catalog_sha256: catalog.sha256().to_owned(),
        purposes,
        recipients,
        jurisdictions,
        promises,
        rights: RIGHTS.to_vec(),
        personalization,
        analytics,
        identity: catalog.sources().iter().map(source_proof).collect(),
    }
}

/// What proves a source's events are a person's, in words for them.
fn source_proof(source: &crate::catalog::Source) -> SourceProof {
    let (proof, in_words) = if !source.is_public() {
        ("our_servers", "Our own systems tell us directly, about the account you hold with us.")
    } else if source.trust_claims {
        (
            "taken_at_its_word",
            "We link what this app or site sends to the account it names, without further proof.",
        )
    } else {
        (
            "signed_in",
            "Linked to your account only while you are signed in (our servers prove it is you). Before \
             that, what a browser or app sends stays with that device, and a choice made there applies \
             to that device only.",
        )
    };
    SourceProof { source: source.name.clone(), kind: source.kind.as_str(), proof, in_words }
}

/// What a destination is told, in words.
fn message_in_words(message: DestinationMessage) -> &'static str {
    match message {
        DestinationMessage::Erase => "when you ask us to delete your data",
        DestinationMessage::Rectify => "when you correct your data",
        DestinationMessage::Restrict => "when you pause the use of your data",
        DestinationMessage::Unrestrict => "when you lift that pause",
        DestinationMessage::Object => "when you object to a use",
        DestinationMessage::Suppress => "when you ask us to ignore your future data",
        DestinationMessage::Unsuppress => "when you lift that",
        DestinationMessage::ConsentChanged => "when you change a consent",
    }
}

#[cfg(test)]
mod tests;
