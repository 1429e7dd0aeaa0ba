//! Reading the `[destinations.*]` tables: downstream systems told about requests and consent
//! changes over signed HTTPS, with the identifiers each may know and how long to keep retrying.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Checker, S, check_key, in_file_order};
use crate::catalog::{Destination, DestinationMessage, Property};
use crate::identity::IdentifierKind;
use crate::period::Retention;
use crate::secret::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    name: Option<String>,
    url: S<String>,
    secret: S<String>,
    receives: Vec<S<String>>,
    #[serde(default)]
    identifiers: Vec<S<String>>,
    give_up_after: Option<S<String>>,
}

pub(super) fn check(
    checker: &mut Checker<'_>,
    raw: BTreeMap<S<String>, RawDestination>,
    properties: &[Property],
) -> Vec<Destination> {
    in_file_order(raw).into_iter().map(|(key, raw)| destination(checker, key, raw, properties)).collect()
}

fn destination(
    checker: &mut Checker<'_>,
    key: S<String>,
    raw: RawDestination,
    properties: &[Property],
) -> Destination {
    check_key(checker, &key, "destination");
    let url = raw.url.get_ref().trim().to_owned();
    match url.split_once("://") {
        Some(("https", rest)) if !rest.is_empty() => {}
        Some(("http", rest)) if is_loopback(rest) => {}
        Some(("http", _)) => checker.at(
            raw.url.span(),
            "identifiers would travel in clear: use https:// (http:// only for localhost)",
        ),
        _ => checker.at(raw.url.span(), format!("{url:?} is not an http(s) URL")),
    }
    if raw.secret.get_ref().trim().len() < 16 {
        checker.at(raw.secret.span(), "secret must be at least 16 characters (it signs every request)");
    }
    let mut receives = Vec::new();
    if raw.receives.is_empty() {
        checker.at(key.span(), "a destination must receive something (receives = [\"erase\", …])");
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
        secret: Secret::new(raw.secret.into_inner().trim()),
        receives,
        identifiers,
        give_up_after,
    }
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
