//! Reading the `[personalization]` section: what recommendations learn under, how private their
//! releases are, the brand's placements, lifecycle thresholds, channels and message rules.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Checker, S, check_key, in_file_order};
use crate::bounds;
use crate::catalog::{
    Channel, LIFECYCLE_STAGES, Lifecycle, MessageRule, Personalization, Placement, Property, PropertyId,
    Purpose, normalize_category,
};
use crate::taxonomy::covers;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPersonalization {
    purpose: Option<S<String>>,
    interests: Option<S<String>>,
    #[serde(default)]
    sensitive_categories: Vec<S<String>>,
    min_support: Option<S<u32>>,
    cap: Option<S<u32>>,
    neighbors: Option<S<u32>>,
    epsilon: Option<S<f64>>,
    mechanism: Option<S<String>>,
    delta: Option<S<f64>>,
    release_minutes: Option<S<u32>>,
    popular_days: Option<S<u32>>,
    trending_days: Option<S<u32>>,
    half_life_days: Option<S<u32>>,
    lifecycle: Option<RawLifecycle>,
    #[serde(default)]
    placements: BTreeMap<S<String>, RawPlacement>,
    #[serde(default)]
    channels: BTreeMap<S<String>, RawChannel>,
    #[serde(default)]
    messages: Vec<RawMessage>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    new_days: Option<u32>,
    at_risk_days: Option<u32>,
    lapsed_days: Option<S<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    description: Option<String>,
    n: Option<S<u32>>,
    #[serde(default)]
    categories: Vec<S<String>>,
    #[serde(default)]
    context: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    purpose: S<String>,
    address: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    key: S<String>,
    channel: S<String>,
    stages: Vec<S<String>>,
    #[serde(default)]
    interests: Vec<S<String>>,
    title: S<String>,
    body: String,
}

/// The largest page of recommendations a placement or a request may ask for.
pub const MAX_N: u32 = 100;

/// Whether the catalog writes its lifecycle thresholds down (`[personalization.lifecycle]`), as
/// an aggregate by lifecycle stage needs: a stage is only as meaningful as its stated definition.
pub(super) fn declares_lifecycle(raw: Option<&RawPersonalization>) -> bool {
    raw.is_some_and(|raw| raw.lifecycle.is_some())
}

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: Option<RawPersonalization>,
    purposes: &[Purpose],
    properties: &[Property],
) -> Option<Personalization> {
    let declared = raw.is_some();
    let raw = raw.unwrap_or_default();
    let purpose = purpose(checker, raw.purpose.as_ref(), declared, purposes)?;
    let interests =
        raw.interests.as_ref().and_then(|path| property(checker, properties, path, "interests property"));
    let min_support = positive(checker, &raw.min_support, 5, "min_support");
    let cap = positive(checker, &raw.cap, 20, "cap");
    if let Some(v) = raw.cap.as_ref().filter(|_| cap > 200) {
        checker.at(v.span(), "cap must be at most 200 (it bounds what one person lends the model)");
    }
    let epsilon = raw.epsilon.as_ref().map(|e| {
        if let Some(problem) = bounds::catalog_epsilon(*e.get_ref(), "epsilon") {
            checker.at(e.span(), problem);
        }
        *e.get_ref()
    });
    let gaussian_delta = mechanism(checker, &raw, epsilon.is_some());
    let popular_days = positive(checker, &raw.popular_days, 30, "popular_days");
    let trending_days = positive(checker, &raw.trending_days, 7, "trending_days");
    if let Some(v) = raw.trending_days.as_ref().filter(|_| trending_days >= popular_days) {
        checker.at(v.span(), "trending_days must be shorter than popular_days (trends compare against it)");
    }
    let sensitive_categories = categories(checker, raw.sensitive_categories, "sensitive category");
    let lifecycle = lifecycle(checker, raw.lifecycle.unwrap_or_default());
    let placements = placements(checker, raw.placements);
    let channels = channels(checker, raw.channels, purposes, properties);
    let messages = messages(checker, raw.messages, &channels);

    Some(Personalization {
        purpose,
        interests,
        sensitive_categories,
        min_support,
        cap,
        neighbors: positive(checker, &raw.neighbors, 50, "neighbors"),
        epsilon,
        gaussian_delta,
        release_minutes: positive(checker, &raw.release_minutes, 60, "release_minutes"),
        popular_days,
        trending_days,
        half_life_days: positive(checker, &raw.half_life_days, 7, "half_life_days"),
        lifecycle,
        placements,
        channels,
        messages,
    })
}

/// How a noisy release hides one person: `mechanism = "threshold"` (the default: Laplace noise,
/// pairs above a noisy threshold) or `"gaussian"` (Gaussian noise over every pair of catalogue
/// items, at `delta`); the δ of the Gaussian one, if chosen.
fn mechanism(checker: &mut Checker<'_>, raw: &RawPersonalization, noisy: bool) -> Option<f64> {
    let gaussian = match &raw.mechanism {
        None => false,
        Some(m) if m.get_ref() == "gaussian" => true,
        Some(m) if m.get_ref() == "threshold" => false,
        Some(m) => {
            checker.at(
                m.span(),
                format!("mechanism must be \"gaussian\" or \"threshold\", not {:?}", m.get_ref()),
            );
            false
        }
    };
    if let Some(m) = raw.mechanism.as_ref().filter(|_| !noisy) {
        checker.at(m.span(), "mechanism chooses how noise is added: it needs epsilon");
    }
    if let Some(d) = &raw.delta {
        if let Some(problem) = bounds::catalog_delta(*d.get_ref()) {
            checker.at(d.span(), problem);
        } else if !gaussian {
            checker.at(
                d.span(),
                "delta is the δ of mechanism = \"gaussian\" (the threshold's is fixed at 1e-7)",
            );
        }
    }
    gaussian.then(|| raw.delta.as_ref().map_or(bounds::DELTA_DEFAULT, |d| *d.get_ref()))
}

/// The purpose recommendations serve; none when the catalog neither declares the section nor any
/// personalization purpose (no personalization at all).
fn purpose(
    checker: &mut Checker<'_>,
    purpose: Option<&S<String>>,
    declared: bool,
    purposes: &[Purpose],
) -> Option<String> {
    match purpose {
        Some(purpose) => {
            if !purposes.iter().any(|declared| &declared.key == purpose.get_ref()) {
                checker.at(
                    purpose.span(),
                    format!("purpose {:?} is not declared under [purposes]", purpose.get_ref()),
                );
            } else if !covers("personalize", purpose.get_ref()) {
                checker.at(purpose.span(), "recommendations serve a personalize.* purpose");
            }
            Some(purpose.get_ref().clone())
        }
        // Without the section: the first personalization purpose, or no personalization at all.
        None => {
            match purposes.iter().find(|p| covers("personalize", &p.key)) {
                Some(found) => Some(found.key.clone()),
                None if declared => {
                    checker.at(0..0, "[personalization] needs a purpose, and the catalog declares no personalize.* purpose");
                    Some(String::new())
                }
                None => None,
            }
        }
    }
}

fn property(
    checker: &mut Checker<'_>,
    properties: &[Property],
    path: &S<String>,
    what: &str,
) -> Option<PropertyId> {
    let found = properties.iter().find(|p| &p.path == path.get_ref()).map(|p| p.id);
    if found.is_none() {
        checker.at(path.span(), format!("{what} {:?} is not a declared property", path.get_ref()));
    }
    found
}

/// Item categories (topics) in the one spelling every comparison uses (items and declared
/// interests are normalized alike), with a note for each written otherwise: "Pregnancy" would
/// otherwise never match the items it is meant to protect.
fn categories(checker: &mut Checker<'_>, raw: Vec<S<String>>, what: &str) -> Vec<String> {
    let mut normal: Vec<String> = Vec::with_capacity(raw.len());
    for name in raw {
        let normalized = normalize_category(name.get_ref());
        if normalized.is_empty() {
            checker.at(name.span(), format!("{what} must not be empty (it would match no item)"));
            continue;
        }
        if &normalized != name.get_ref() {
            checker.note(name.span(), format!("{what} {:?} is matched as {normalized:?}", name.get_ref()));
        }
        if !normal.contains(&normalized) {
            normal.push(normalized);
        }
    }
    normal
}

fn positive(checker: &mut Checker<'_>, value: &Option<S<u32>>, default: u32, what: &str) -> u32 {
    match value {
        Some(v) if *v.get_ref() == 0 => {
            checker.at(v.span(), format!("{what} must be at least 1"));
            default
        }
        Some(v) => *v.get_ref(),
        None => default,
    }
}

fn lifecycle(checker: &mut Checker<'_>, raw: RawLifecycle) -> Lifecycle {
    let lifecycle = Lifecycle {
        new_days: raw.new_days.unwrap_or(14),
        at_risk_days: raw.at_risk_days.unwrap_or(30),
        lapsed_days: raw.lapsed_days.as_ref().map_or(90, |d| *d.get_ref()),
    };
    if lifecycle.lapsed_days <= lifecycle.at_risk_days {
        let span = raw.lapsed_days.as_ref().map_or(0..0, Spanned::span);
        checker.at(span, "lifecycle.lapsed_days must be more than at_risk_days");
    }
    lifecycle
}

fn placements(checker: &mut Checker<'_>, raw: BTreeMap<S<String>, RawPlacement>) -> Vec<Placement> {
    in_file_order(raw)
        .into_iter()
        .map(|(key, raw)| {
            check_key(checker, &key, "placement");
            let n = positive(checker, &raw.n, 10, "n");
            if n > MAX_N {
                checker.at(raw.n.as_ref().map_or(0..0, Spanned::span), format!("n must be at most {MAX_N}"));
            }
            Placement {
                key: key.into_inner(),
                description: raw.description,
                n,
                categories: categories(checker, raw.categories, "placement category"),
                context: raw.context,
            }
        })
        .collect()
}

fn channels(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawChannel>,
    purposes: &[Purpose],
    properties: &[Property],
) -> Vec<Channel> {
    in_file_order(raw)
        .into_iter()
        .map(|(key, raw)| {
            check_key(checker, &key, "channel");
            if !purposes.iter().any(|declared| &declared.key == raw.purpose.get_ref()) {
                checker.at(
                    raw.purpose.span(),
                    format!("purpose {:?} is not declared under [purposes]", raw.purpose.get_ref()),
                );
            }
            let address = property(checker, properties, &raw.address, "address");
            Channel {
                key: key.into_inner(),
                purpose: raw.purpose.into_inner(),
                address: address.unwrap_or(PropertyId(0)),
            }
        })
        .collect()
}

fn messages(checker: &mut Checker<'_>, raw: Vec<RawMessage>, channels: &[Channel]) -> Vec<MessageRule> {
    let mut messages: Vec<MessageRule> = Vec::new();
    for raw in raw {
        let key = checker.non_empty(&raw.key, "message key");
        if messages.iter().any(|m| m.key == key) {
            checker.at(raw.key.span(), format!("another message is already keyed {key:?}"));
        }
        if !channels.iter().any(|c| &c.key == raw.channel.get_ref()) {
            checker.at(
                raw.channel.span(),
                format!(
                    "channel {:?} is not declared under [personalization.channels]",
                    raw.channel.get_ref()
                ),
            );
        }
        if raw.stages.is_empty() {
            checker.at(raw.key.span(), "a message needs the lifecycle stages it is for");
        }
        for stage in &raw.stages {
            if !LIFECYCLE_STAGES.contains(&stage.get_ref().as_str()) {
                checker.at(
                    stage.span(),
                    format!(
                        "{:?} is not a lifecycle stage: one of {}",
                        stage.get_ref(),
                        LIFECYCLE_STAGES.join(", ")
                    ),
                );
            }
        }
        messages.push(MessageRule {
            key,
            channel: raw.channel.into_inner(),
            stages: raw.stages.into_iter().map(Spanned::into_inner).collect(),
            interests: categories(checker, raw.interests, "message interest"),
            title: checker.non_empty(&raw.title, "message title"),
            body: raw.body,
        });
    }
    messages
}
