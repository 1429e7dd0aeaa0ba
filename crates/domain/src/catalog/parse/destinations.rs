//! Reading the `[destinations.*]` tables: downstream systems told about requests and consent
//! changes over signed HTTPS, with the identifiers each may know and how long to keep retrying, and
//! those events flow on to (their kind, purposes, events and properties, checked against each other).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Checker, S, check_key, in_file_order};
use crate::catalog::{
    Destination, DestinationKind, DestinationMessage, Forwarding, Property, Purpose, RegulationApi,
    Regulations,
};
use crate::identity::IdentifierKind;
use crate::period::Retention;
use crate::secret::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    name: Option<String>,
    kind: Option<S<String>>,
    url: Option<S<String>>,
    secret: Option<S<String>>,
    #[serde(default)]
    receives: Vec<S<String>>,
    #[serde(default)]
    identifiers: Vec<S<String>>,
    give_up_after: Option<S<String>>,
    #[serde(default)]
    purposes: Vec<S<String>>,
    #[serde(default)]
    events: Vec<S<String>>,
    #[serde(default)]
    properties: Vec<S<String>>,
    #[serde(default)]
    sensitive: Vec<S<String>>,
    batch_size: Option<S<i64>>,
    write_key: Option<S<String>>,
    regulations_api: Option<S<String>>,
    regulations_url: Option<S<String>>,
    regulations_token: Option<S<String>>,
    database_url: Option<S<String>>,
    schema: Option<S<String>>,
}

/// Most events one delivery may carry.
pub const MAX_BATCH: u32 = 1_000;
/// Events per delivery unless the catalog says otherwise.
const DEFAULT_BATCH: u32 = 100;
/// Call kinds a destination may receive besides declared `track` event names.
const CALLS: [&str; 5] = ["track", "identify", "page", "screen", "group"];

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawDestination>,
    properties: &[Property],
    purposes: &[Purpose],
    events: &[crate::catalog::EventSpec],
) -> Vec<Destination> {
    let declared = Declared { properties, purposes, events };
    in_file_order(raw).into_iter().map(|(key, raw)| destination(checker, key, raw, &declared)).collect()
}

/// What a destination may refer to: the catalog's properties, purposes and events.
struct Declared<'a> {
    properties: &'a [Property],
    purposes: &'a [Purpose],
    events: &'a [crate::catalog::EventSpec],
}

fn destination(
    checker: &mut Checker<'_>,
    key: S<String>,
    mut raw: RawDestination,
    declared: &Declared<'_>,
) -> Destination {
    check_key(checker, &key, "destination");
    let properties = declared.properties;
    let kind = kind(checker, &key, &mut raw);
    let url = match &raw.url {
        Some(url) => checked_url(checker, url),
        None if matches!(kind, DestinationKind::Warehouse { .. }) => String::new(),
        None => {
            checker.at(key.span(), "a destination needs a url");
            String::new()
        }
    };
    let secret = match &raw.secret {
        Some(secret) => {
            if secret.get_ref().trim().len() < 16 {
                checker.at(secret.span(), "secret must be at least 16 characters (it signs every request)");
            }
            secret.get_ref().trim().to_owned()
        }
        None if kind == DestinationKind::Webhook => {
            checker.at(key.span(), "a webhook destination needs a secret (it signs every request)");
            String::new()
        }
        None => String::new(),
    };
    let forwarding = forwarding(checker, &key, &raw, declared);
    let mut receives = Vec::new();
    if raw.receives.is_empty() && forwarding.is_none() {
        checker.at(
            key.span(),
            "a destination must receive something (receives = [\"erase\", …], or purposes and events to forward)",
        );
    }
    if kind != DestinationKind::Webhook && !raw.receives.is_empty() {
        checker.at(
            raw.receives[0].span(),
            "only a webhook destination receives notices: this kind is told of erasures by its own protocol",
        );
    }
    for message in &raw.receives {
        match DestinationMessage::parse(message.get_ref()) {
            Some(parsed) => receives.push(parsed),
            None => checker.at(
                message.span(),
                format!(
                    "{:?} is not something a destination can receive: one of {}",
                    message.get_ref(),
                    DestinationMessage::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ),
        }
    }
    let mut identifiers = Vec::new();
    for kind in &raw.identifiers {
        match kind.get_ref().parse::<IdentifierKind>() {
            Ok(parsed)
                if matches!(parsed, IdentifierKind::UserId | IdentifierKind::AnonymousId)
                    || properties.iter().any(|property| property.identifier.as_ref() == Some(&parsed)) =>
            {
                identifiers.push(parsed);
            }
            _ => checker.at(
                kind.span(),
                format!(
                    "{:?} identifies nobody here: use user_id, anonymous_id or an identifier a property declares",
                    kind.get_ref()
                ),
            ),
        }
    }
    let give_up_after = match &raw.give_up_after {
        Some(text) => text.get_ref().parse::<Retention>().unwrap_or_else(|error| {
            checker.at(text.span(), error.to_string());
            Retention::days(3)
        }),
        None => Retention::days(3),
    };
    Destination {
        name: raw.name.unwrap_or_else(|| key.get_ref().clone()),
        key: key.into_inner(),
        url,
        secret: Secret::new(secret),
        receives,
        identifiers,
        give_up_after,
        kind,
        forwarding,
    }
}

/// The destination's kind and the keys that kind needs (and only that kind may have).
fn kind(checker: &mut Checker<'_>, key: &S<String>, raw: &mut RawDestination) -> DestinationKind {
    let named = raw.kind.as_ref().map_or("webhook", |kind| kind.get_ref().as_str());
    let mut misplaced = |value: &Option<S<String>>, name: &str, kind: &str| {
        if let Some(value) = value {
            checker.at(value.span(), format!("{name} belongs to a {kind} destination"));
        }
    };
    match named {
        "webhook" => {
            misplaced(&raw.write_key, "write_key", "segment");
            misplaced(&raw.regulations_api, "regulations_api", "segment");
            misplaced(&raw.regulations_url, "regulations_url", "segment");
            misplaced(&raw.regulations_token, "regulations_token", "segment");
            misplaced(&raw.database_url, "database_url", "warehouse");
            misplaced(&raw.schema, "schema", "warehouse");
            DestinationKind::Webhook
        }
        "segment" => {
            misplaced(&raw.database_url, "database_url", "warehouse");
            misplaced(&raw.schema, "schema", "warehouse");
            let write_key = raw.write_key.take().map(|key| key.into_inner().trim().to_owned());
            if write_key.as_deref().is_none_or(str::is_empty) {
                checker
                    .at(key.span(), "a segment destination needs the write_key of the endpoint it sends to");
            }
            let regulations = regulations(checker, key, raw);
            DestinationKind::Segment { write_key: Secret::new(write_key.unwrap_or_default()), regulations }
        }
        "warehouse" => {
            misplaced(&raw.write_key, "write_key", "segment");
            misplaced(&raw.regulations_api, "regulations_api", "segment");
            misplaced(&raw.regulations_url, "regulations_url", "segment");
            misplaced(&raw.regulations_token, "regulations_token", "segment");
            if let Some(url) = &raw.url {
                checker.at(url.span(), "a warehouse destination is reached at its database_url, not a url");
            }
            let database_url = raw.database_url.take().map(|url| url.into_inner().trim().to_owned());
            match database_url.as_deref() {
                Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {}
                _ => checker.at(key.span(), "a warehouse destination needs database_url = \"postgres://…\""),
            }
            let schema = match raw.schema.take() {
                Some(schema) => {
                    let text = schema.get_ref().trim().to_owned();
                    let simple = !text.is_empty()
                        && text.len() <= 63
                        && text.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !simple {
                        checker.at(
                            schema.span(),
                            "schema may use only a-z, 0-9 and '_', and start with a letter",
                        );
                    }
                    text
                }
                None => "tactful".to_owned(),
            };
            DestinationKind::Warehouse { database_url: Secret::new(database_url.unwrap_or_default()), schema }
        }
        other => {
            let span = raw.kind.as_ref().map_or(key.span(), |kind| kind.span());
            checker
                .at(span, format!("{other:?} is not a kind of destination: webhook, segment or warehouse"));
            DestinationKind::Webhook
        }
    }
}

/// A segment destination's deletion API: `regulations_api`, `regulations_url` and
/// `regulations_token` together, or none of them.
fn regulations(checker: &mut Checker<'_>, key: &S<String>, raw: &mut RawDestination) -> Option<Regulations> {
    let (api, url, token) =
        (raw.regulations_api.take(), raw.regulations_url.take(), raw.regulations_token.take());
    let (api, url, token) = match (api, url, token) {
        (None, None, None) => return None,
        (Some(api), Some(url), Some(token)) => (api, url, token),
        (api, url, token) => {
            let span =
                api.as_ref().or(url.as_ref()).or(token.as_ref()).map_or(key.span(), |given| given.span());
            checker.at(
                span,
                "regulations_api, regulations_url and regulations_token go together: give all three or none",
            );
            return None;
        }
    };
    let parsed = RegulationApi::parse(api.get_ref().trim());
    if parsed.is_none() {
        checker.at(
            api.span(),
            format!("{:?} is not a deletion API Tactful speaks: segment or rudderstack", api.get_ref()),
        );
    }
    let url = checked_url(checker, &url);
    let secret = token.get_ref().trim().to_owned();
    if secret.is_empty() {
        checker.at(token.span(), "regulations_token must not be empty");
    }
    Some(Regulations { api: parsed?, url: url.trim_end_matches('/').to_owned(), token: Secret::new(secret) })
}

fn checked_url(checker: &mut Checker<'_>, raw: &S<String>) -> String {
    let url = raw.get_ref().trim().to_owned();
    match url.split_once("://") {
        Some(("https", rest)) if !rest.is_empty() => {}
        Some(("http", rest)) if is_loopback(rest) => {}
        Some(("http", _)) => checker
            .at(raw.span(), "identifiers would travel in clear: use https:// (http:// only for localhost)"),
        _ => checker.at(raw.span(), format!("{url:?} is not an http(s) URL")),
    }
    url
}

/// What the destination receives of events, checked: declared purposes, events and properties,
/// each property serving one of its purposes, sensitive ones only in a category it is declared for.
fn forwarding(
    checker: &mut Checker<'_>,
    key: &S<String>,
    raw: &RawDestination,
    declared: &Declared<'_>,
) -> Option<Forwarding> {
    let declares = !raw.purposes.is_empty()
        || !raw.events.is_empty()
        || !raw.properties.is_empty()
        || raw.kind.as_ref().is_some_and(|kind| kind.get_ref() != "webhook");
    if !declares {
        for stray in raw.sensitive.iter() {
            checker.at(stray.span(), "sensitive categories are for a destination that receives events");
        }
        return None;
    }
    if raw.purposes.is_empty() {
        checker.at(
            key.span(),
            "a destination that receives events must name the purposes it serves (purposes = […])",
        );
    }
    if raw.events.is_empty() {
        checker.at(key.span(), "a destination that receives events must name them (events = [\"Order Completed\", \"identify\", …])");
    }
    let mut purposes = Vec::new();
    for purpose in &raw.purposes {
        if declared.purposes.iter().any(|declared| &declared.key == purpose.get_ref()) {
            purposes.push(purpose.get_ref().clone());
        } else {
            checker.at(purpose.span(), format!("{:?} is not a purpose of this catalog", purpose.get_ref()));
        }
    }
    let mut events = Vec::new();
    for event in &raw.events {
        let name = event.get_ref();
        if CALLS.contains(&name.as_str()) || declared.events.iter().any(|declared| &declared.name == name) {
            events.push(name.clone());
        } else {
            checker.at(
                event.span(),
                format!("{name:?} is neither a declared event nor one of {}", CALLS.join(", ")),
            );
        }
    }
    let mut sensitive = Vec::new();
    for category in &raw.sensitive {
        super::check_taxonomy_key(checker, category, super::TaxonomyKind::Category);
        sensitive.push(category.get_ref().trim().to_owned());
    }
    let mut properties = Vec::new();
    for path in &raw.properties {
        let Some(property) = declared.properties.iter().find(|property| &property.path == path.get_ref())
        else {
            checker.at(path.span(), format!("{:?} is not a property of this catalog", path.get_ref()));
            continue;
        };
        if !purposes.is_empty() && !property.purposes.iter().any(|serves| purposes.contains(serves)) {
            checker.at(
                path.span(),
                format!(
                    "{} serves none of this destination's purposes ({}): it must not be sent",
                    property.path,
                    purposes.join(", ")
                ),
            );
        }
        if property.sensitive
            && !sensitive.iter().any(|declared| crate::taxonomy::covers(declared, &property.category))
        {
            checker.at(
                path.span(),
                format!(
                    "{} is sensitive ({}): add its category to this destination's sensitive = […] to send it",
                    property.path, property.category
                ),
            );
        }
        if let Some(kind) = &property.identifier
            && !raw.identifiers.iter().any(|declared| declared.get_ref().trim() == kind.as_str())
        {
            checker.at(
                path.span(),
                format!(
                    "{} identifies people ({kind}): add \"{kind}\" to this destination's identifiers to send it",
                    property.path
                ),
            );
        }
        properties.push(property.id);
    }
    let batch_size = match &raw.batch_size {
        Some(size) if (1..=i64::from(MAX_BATCH)).contains(size.get_ref()) => *size.get_ref() as u32,
        Some(size) => {
            checker.at(size.span(), format!("batch_size must be between 1 and {MAX_BATCH}"));
            DEFAULT_BATCH
        }
        None => DEFAULT_BATCH,
    };
    Some(Forwarding { purposes, events, properties, sensitive, batch_size })
}

/// Whether the part of a URL after `http://` names this machine.
fn is_loopback(rest: &str) -> bool {
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(host, _)| host),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}
