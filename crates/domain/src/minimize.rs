//! Minimization at the door: of an incoming message, keep only what the catalog declares, and say
//! what was dropped and why. Nothing undeclared ever reaches the store.

use serde_json::{Map, Value};

use crate::catalog::{Catalog, Property, PropertyId, Source, looks_like_field_name};
use crate::identity::IdentifierKind;
use crate::segment::{Message, MessageType};

/// Why a property of an incoming event was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The catalog does not declare this path.
    Undeclared,
    /// The property is in a sensitive category and its source may not deliver sensitive data.
    SensitiveNotAllowed,
    /// The `track` event name is not in the catalog's tracking plan; the whole event was dropped.
    UndeclaredEvent,
    /// No purpose of the property is currently permitted for this subject.
    NotPermitted,
    /// An identifier the catalog's merge rules refused to link (the person would hold more of its
    /// kind than allowed); counted under `identity.<kind>`.
    IdentityRefused,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Undeclared => "undeclared",
            DropReason::SensitiveNotAllowed => "sensitive_not_allowed",
            DropReason::UndeclaredEvent => "undeclared_event",
            DropReason::NotPermitted => "not_permitted",
            DropReason::IdentityRefused => "identity_refused",
        }
    }

    pub fn parse(text: &str) -> Option<DropReason> {
        Some(match text {
            "undeclared" => DropReason::Undeclared,
            "sensitive_not_allowed" => DropReason::SensitiveNotAllowed,
            "undeclared_event" => DropReason::UndeclaredEvent,
            "not_permitted" => DropReason::NotPermitted,
            "identity_refused" => DropReason::IdentityRefused,
            _ => return None,
        })
    }
}

/// A dropped path, written so it can be counted without revealing data: segments that do not look
/// like field names (they might hold an email or an id) are replaced by `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dropped {
    pub path: String,
    pub reason: DropReason,
}

/// What may be stored of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Minimized {
    /// The kept parts, shaped like the message: `traits`, `properties`, `context` and the message's
    /// own descriptive fields (`name`, `category`, `groupId`).
    pub record: Map<String, Value>,
    /// Declared properties present in `record`.
    pub kept: Vec<PropertyId>,
    /// Profile values to set (identify traits at declared paths outside arrays).
    pub profile: Vec<(PropertyId, Value)>,
    /// Identifiers found in declared identifier properties.
    pub identifiers: Vec<(IdentifierKind, String, PropertyId)>,
    pub dropped: Vec<Dropped>,
}

/// What happens to an event that breaks the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep(Minimized),
    /// The whole event is dropped (undeclared event name on a lenient source); count these.
    DropEvent(Vec<Dropped>),
    /// The event is refused (strict source).
    Reject {
        code: &'static str,
        message: String,
    },
}

/// Message fields that are part of the protocol rather than data about the person; they are used
/// (ids, times) or ignored (SDK bookkeeping) but never counted as dropped properties.
const PROTOCOL_FIELDS: &[&str] = &[
    "type",
    "userId",
    "anonymousId",
    "previousId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "event",
    "integrations",
    "writeKey",
    "version",
    "channel",
    "_metadata",
    "sequence",
    "options",
];

/// Applies the catalog to a validated message from `source`.
pub fn minimize(catalog: &Catalog, source: &Source, message: &Message) -> Verdict {
    if let Some(name) = &message.event
        && catalog.event(name).is_none()
    {
        let dropped = vec![Dropped { path: "event".into(), reason: DropReason::UndeclaredEvent }];
        if source.strict {
            return Verdict::Reject {
                code: "undeclared_event",
                message: "this track event is not in the catalog's [events] tracking plan".into(),
            };
        }
        return Verdict::DropEvent(dropped);
    }
    let mut walk =
        Walk { catalog, source, kind: message.kind, out: Minimized::default(), path: String::new() };
    for (key, value) in &message.object {
        match key.as_str() {
            "traits" | "properties" | "context" => {
                walk.path.clear();
                walk.path.push_str(key);
                if let Some(kept) = walk.value(value) {
                    walk.out.record.insert(key.clone(), kept);
                }
            }
            // Descriptive fields of the call itself; sealed with the event like any property.
            "name" | "category" | "groupId" => {
                walk.out.record.insert(key.clone(), value.clone());
            }
            field if PROTOCOL_FIELDS.contains(&field) => {}
            other => {
                let path = if looks_like_field_name(other) { other.to_owned() } else { "*".to_owned() };
                walk.drop(path, DropReason::Undeclared);
            }
        }
    }
    let mut out = walk.out;
    out.kept.sort_unstable();
    out.kept.dedup();
    if source.strict
        && let Some(first) = out.dropped.iter().find(|dropped| dropped.reason == DropReason::Undeclared)
    {
        return Verdict::Reject {
            code: "undeclared_property",
            message: format!("{} is not declared in the catalog and this source is strict", first.path),
        };
    }
    Verdict::Keep(out)
}

struct Walk<'a> {
    catalog: &'a Catalog,
    source: &'a Source,
    kind: MessageType,
    out: Minimized,
    /// Path of the value being walked, e.g. `properties.products[]`.
    path: String,
}

impl Walk<'_> {
    /// Returns what is kept of the value at `self.path`, recording drops on the way.
    fn value(&mut self, value: &Value) -> Option<Value> {
        if let Some(property) = self.catalog.property_by_path(&self.path) {
            return self.declared(property, value);
        }
        // Consent signals and the identity token ride in `context` but are not properties: the
        // consent ledger and the identity check read them; neither is stored.
        if matches!(
            self.path.as_str(),
            "context.consent" | "context.consentManagement" | "context.identityToken"
        ) {
            return None;
        }
        match value {
            Value::Object(object) if self.catalog.has_properties_below(&self.path) => {
                let mut kept = Map::new();
                for (key, child) in object {
                    if !looks_like_field_name(key) {
                        // Declared paths are made of field names, so this key matches none; it may be
                        // someone's email used as a key, so it is counted as `*`.
                        let path = format!("{}.*", counted_path(&self.path));
                        self.drop(path, DropReason::Undeclared);
                        continue;
                    }
                    let length = self.path.len();
                    self.path.push('.');
                    self.path.push_str(key);
                    if let Some(child) = self.value(child) {
                        kept.insert(key.clone(), child);
                    }
                    self.path.truncate(length);
                }
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            Value::Array(items) if self.catalog.has_properties_below(&format!("{}[]", self.path)) => {
                let length = self.path.len();
                self.path.push_str("[]");
                let kept: Vec<Value> = items.iter().filter_map(|item| self.value(item)).collect();
                self.path.truncate(length);
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            _ => {
                let path = counted_path(&self.path);
                self.drop(path, DropReason::Undeclared);
                None
            }
        }
    }

    fn declared(&mut self, property: &Property, value: &Value) -> Option<Value> {
        if property.sensitive && !self.source.allow_sensitive {
            self.drop(property.path.clone(), DropReason::SensitiveNotAllowed);
            return None;
        }
        self.out.kept.push(property.id);
        if let (Some(kind), Some(text)) = (&property.identifier, identifier_text(value))
            && kind.normalize(&text).is_ok()
        {
            self.out.identifiers.push((kind.clone(), text, property.id));
        }
        let at_top_of_traits = self.path.starts_with("traits.") && !self.path.contains("[]");
        if at_top_of_traits && self.kind == MessageType::Identify {
            self.out.profile.push((property.id, value.clone()));
        }
        Some(value.clone())
    }

    fn drop(&mut self, path: String, reason: DropReason) {
        self.out.dropped.push(Dropped { path, reason });
    }
}

fn identifier_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Removes the given declared properties from a kept record (for example those a subject's consent
/// does not permit), dropping objects and arrays left empty. Paths are those of the catalog.
/// Returns the properties that were present and removed.
pub fn withhold(
    catalog: &Catalog,
    record: &mut Map<String, Value>,
    withheld: &[PropertyId],
) -> Vec<PropertyId> {
    if withheld.is_empty() {
        return Vec::new();
    }
    let paths: Vec<&str> = withheld.iter().map(|&id| catalog.property(id).path.as_str()).collect();
    let mut removed = vec![false; paths.len()];
    let mut path = String::new();
    record.retain(|key, value| {
        path.clear();
        path.push_str(key);
        prune(value, &mut path, &paths, &mut removed)
    });
    withheld.iter().zip(removed).filter(|(_, removed)| *removed).map(|(&id, _)| id).collect()
}

/// Removes from a stored record every value the catalog no longer declares (a property taken out of
/// the catalog after the record was stored), so reads only ever show what the data map declares now.
pub fn retain_declared(catalog: &Catalog, record: &mut Map<String, Value>) {
    let mut path = String::new();
    record.retain(|key, value| {
        path.clear();
        path.push_str(key);
        keep_declared(catalog, value, &mut path)
    });
}

/// Keeps what is declared of `value` at `path`; false when nothing of it is.
fn keep_declared(catalog: &Catalog, value: &mut Value, path: &mut String) -> bool {
    if catalog.property_by_path(path).is_some() {
        return true;
    }
    let length = path.len();
    let keep = match value {
        Value::Object(object) if catalog.has_properties_below(path) => {
            object.retain(|key, child| {
                path.truncate(length);
                path.push('.');
                path.push_str(key);
                keep_declared(catalog, child, path)
            });
            !object.is_empty()
        }
        Value::Array(items) if catalog.has_properties_below(&format!("{path}[]")) => {
            path.push_str("[]");
            let inner = path.len();
            items.retain_mut(|item| {
                path.truncate(inner);
                keep_declared(catalog, item, path)
            });
            !items.is_empty()
        }
        _ => false,
    };
    path.truncate(length);
    keep
}

/// Prunes `value` at `path`, marking in `removed` which withheld paths it removed; false when
/// nothing of it is left.
fn prune(value: &mut Value, path: &mut String, withheld: &[&str], removed: &mut [bool]) -> bool {
    if let Some(index) = withheld.iter().position(|candidate| *candidate == path.as_str()) {
        removed[index] = true;
        return false;
    }
    if !withheld.iter().any(|candidate| candidate.len() > path.len() && candidate.starts_with(path.as_str()))
    {
        return true;
    }
    match value {
        Value::Object(object) => {
            object.retain(|key, child| {
                let length = path.len();
                path.push('.');
                path.push_str(key);
                let keep = prune(child, path, withheld, removed);
                path.truncate(length);
                keep
            });
            !object.is_empty()
        }
        Value::Array(items) => {
            let length = path.len();
            path.push_str("[]");
            items.retain_mut(|item| prune(item, path, withheld, removed));
            path.truncate(length);
            !items.is_empty()
        }
        _ => true,
    }
}

/// A path safe to count: field-name-like segments are kept, anything else (which could be a
/// person's email or id used as a key) becomes `*`, and the whole is bounded in length.
pub fn counted_path(path: &str) -> String {
    let mut counted = String::with_capacity(path.len().min(128));
    for (index, segment) in path.split('.').enumerate() {
        if index > 0 {
            counted.push('.');
        }
        let (name, array) = match segment.strip_suffix("[]") {
            Some(name) => (name, "[]"),
            None => (segment, ""),
        };
        if looks_like_field_name(name) {
            counted.push_str(name);
        } else {
            counted.push('*');
        }
        counted.push_str(array);
        if counted.len() > 120 {
            counted.truncate(120);
            counted.push('…');
            break;
        }
    }
    counted
}

#[cfg(test)]
mod tests;

/// The values a record holds at a catalog path (`[]` steps into every element of an array).
pub fn values_at<'a>(record: &'a Map<String, Value>, path: &str) -> Vec<&'a Value> {
    fn walk<'a>(value: &'a Value, steps: &[&str], found: &mut Vec<&'a Value>) {
        let Some((step, rest)) = steps.split_first() else {
            found.push(value);
            return;
        };
        let Value::Object(object) = value else { return };
        match step.strip_suffix("[]") {
            Some(name) => {
                if let Some(Value::Array(items)) = object.get(name) {
                    for item in items {
                        walk(item, rest, found);
                    }
                }
            }
            None => {
                if let Some(child) = object.get(*step) {
                    walk(child, rest, found);
                }
            }
        }
    }
    let steps: Vec<&str> = path.split('.').collect();
    let mut found = Vec::new();
    if let Some((first, rest)) = steps.split_first() {
        match first.strip_suffix("[]") {
            Some(name) => {
                if let Some(Value::Array(items)) = record.get(name) {
                    for item in items {
                        walk(item, rest, &mut found);
                    }
                }
            }
            None => {
                if let Some(child) = record.get(*first) {
                    walk(child, rest, &mut found);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod values_at_tests {
    use serde_json::json;

    use super::values_at;

    #[test]
    fn paths_step_into_arrays() {
        let record = json!({"properties": {"product_id": "a", "products": [{"product_id": "b"}, {"product_id": "c"}, {}]}});
        let record = record.as_object().unwrap();
        assert_eq!(values_at(record, "properties.product_id"), vec![&json!("a")]);
        assert_eq!(values_at(record, "properties.products[].product_id"), vec![&json!("b"), &json!("c")]);
        assert!(values_at(record, "properties.missing").is_empty());
    }
}
