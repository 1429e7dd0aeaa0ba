//! The package of everything held about a person (access and portability): identifiers, profile,
//! events, consents and receipts, requests, and who read their data — each item with its data
//! category, purposes and retention. JSON for machines (`tactful-export/1`, documented in
//! `docs/export.md`) and one self-contained HTML page for people. Both stream: events are read,
//! opened and written a page at a time, so a long history never sits in memory whole.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value, json};
use tactful_domain::catalog::Catalog;
use tactful_domain::minimize;
use tactful_domain::request::legal_hold_properties;
use tactful_domain::segment::format_time;
use tactful_store::{EventCursor, FamilyKeys, OpenEvent, StoreError, SubjectData};

use crate::AppState;

/// Events read and written per page.
const PAGE: u32 = 500;
/// The version of the JSON format.
pub const FORMAT: &str = "tactful-export/1";

/// Which form of the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Json,
    Html,
}

impl Form {
    /// The form a `format` parameter names (`json` or `html`).
    pub fn parse(format: &str) -> Result<Form, crate::error::ApiError> {
        match format {
            "json" => Ok(Form::Json),
            "html" => Ok(Form::Html),
            _ => Err(crate::error::ApiError::with_message(
                crate::error::ErrorCode::InvalidRequest,
                "format must be json or html",
            )),
        }
    }
}

/// The query of a package download: `?format=json|html`, JSON unless said.
#[derive(Debug, serde::Deserialize)]
pub struct PackageQuery {
    pub format: Option<String>,
}

impl PackageQuery {
    /// The form asked for, or `default`.
    pub fn form(&self, default: Form) -> Result<Form, crate::error::ApiError> {
        self.format.as_deref().map_or(Ok(default), Form::parse)
    }
}

/// Everything but the events, gathered before the first byte is sent.
struct Head {
    json: Map<String, Value>,
    keys: FamilyKeys,
}

/// Reads what the package says before the events. `None` if the subject is gone.
async fn head(state: &AppState, subject: &str, request: &str) -> Result<Option<Head>, StoreError> {
    let Some(data) = state.store.subject_summary(subject).await? else { return Ok(None) };
    let keys = FamilyKeys::unwrap(&state.vault, &data.keys)?;
    let catalog = &state.catalog;
    let identifiers: Vec<Value> = data
        .open_identities(&state.vault)?
        .into_iter()
        .map(|identity| json!({"kind": identity.kind, "value": identity.value.as_str()}))
        .collect();
    let profile: Vec<Value> = data
        .open_profile(&state.vault)?
        .into_iter()
        .map(|value| {
            let mut item = describe(catalog, &value.path);
            item.insert("path".into(), json!(value.path));
            item.insert("value".into(), value.value);
            item.insert("updated_at".into(), json!(format_time(value.updated_at)));
            Value::Object(item)
        })
        .collect();
    let found = state.store.subject_state(subject).await?;
    let ledger: Vec<Value> = found
        .iter()
        .flat_map(|found| found.ledger.iter())
        .map(crate::routes::v1::subjects::ledger_entry)
        .collect();
    let receipts: Vec<Value> = state
        .store
        .receipts(subject)
        .await?
        .into_iter()
        .map(|stored| serde_json::from_str(&stored.body).unwrap_or(Value::Null))
        .collect();
    let requests: Vec<Value> = state
        .store
        .requests(Some(subject), 1000)
        .await?
        .into_iter()
        .map(|request| {
            json!({
                "id": request.id,
                "type": request.kind.as_str(),
                "status": request.status.as_str(),
                "received_at": format_time(request.received_at),
                "due_at": format_time(request.due_at),
                "completed_at": request.completed_at.map(format_time),
            })
        })
        .collect();
    let access_log = access_log(state, &data).await?;
    let kept_if_erased: Vec<Value> = legal_hold_properties(catalog)
        .into_iter()
        .map(|id| {
            let property = catalog.property(id);
            json!({
                "path": property.path,
                "category": property.category,
                "why": "the law requires us to keep it (legal obligation)",
                "for": property.retention.in_words(),
            })
        })
        .collect();
    let brand = catalog.brand();
    let mut json = Map::new();
    json.insert("format".into(), json!(FORMAT));
    json.insert("generated_at".into(), json!(format_time(crate::now_millis())));
    json.insert(
        "controller".into(),
        json!({"name": brand.name, "contact": brand.contact, "policy_url": brand.policy_url}),
    );
    json.insert("request".into(), json!(request));
    json.insert("subject".into(), json!(data.subject));
    json.insert("identifiers".into(), Value::Array(identifiers));
    json.insert("profile".into(), Value::Array(profile));
    json.insert("consents".into(), json!({"ledger": ledger, "receipts": receipts}));
    json.insert("requests".into(), Value::Array(requests));
    json.insert("access_log".into(), Value::Array(access_log));
    json.insert("kept_if_erased".into(), Value::Array(kept_if_erased));
    Ok(Some(Head { json, keys }))
}

/// Who read the person's data, when and why (every member of the family, newest first).
pub(crate) async fn access_log(state: &AppState, data: &SubjectData) -> Result<Vec<Value>, StoreError> {
    let mut entries = Vec::new();
    for (member, _) in &data.keys {
        entries.extend(state.store.audit_for_subject(&state.vault.subject_pseudonym(member), 10_000).await?);
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
    entries.dedup_by_key(|entry| entry.seq);
    Ok(entries
        .into_iter()
        .filter_map(|entry| serde_json::from_str::<Value>(&entry.text).ok())
        .map(|mut entry| {
            // People read dates, not Unix milliseconds; the pseudonym means nothing to them.
            if let Some(object) = entry.as_object_mut() {
                if let Some(at) = object.get("at").and_then(Value::as_i64) {
                    object.insert("at".into(), json!(format_time(at)));
                }
                object.remove("subject");
            }
            entry
        })
        .collect())
}

/// Category, purposes and retention of a path, as the catalog declares them.
fn describe(catalog: &Catalog, path: &str) -> Map<String, Value> {
    let mut item = Map::new();
    if let Some(property) = catalog.property_by_path(path) {
        item.insert("category".into(), json!(property.category));
        item.insert("purposes".into(), json!(property.purposes));
        item.insert("retention".into(), json!(property.retention.in_words()));
    }
    item
}

/// The categories of the properties an event record holds.
pub(crate) fn categories(catalog: &Catalog, record: &Map<String, Value>) -> Vec<String> {
    let all: Vec<_> = catalog.properties().iter().map(|property| property.id).collect();
    let present = minimize::withhold(catalog, &mut record.clone(), &all);
    let set: BTreeSet<&str> = present.iter().map(|&id| catalog.property(id).category.as_str()).collect();
    set.into_iter().map(str::to_owned).collect()
}

fn event_json(catalog: &Catalog, event: OpenEvent) -> Value {
    let Value::Object(mut record) = event.record else { return Value::Null };
    minimize::retain_declared(catalog, &mut record);
    json!({
        "type": event.kind,
        "event": event.name,
        "source": event.source,
        "timestamp": format_time(event.timestamp),
        "categories": categories(catalog, &record),
        "data": record,
    })
}

enum Step {
    Start,
    Events { keys: FamilyKeys, after: Option<EventCursor>, first: bool },
    Done,
}

/// The package as a stream of chunks. The first chunk is an error if the subject is gone; a store
/// error mid-way ends the stream with an error (the client sees a truncated download, never a
/// partial package passed off as whole).
pub fn stream(
    state: Arc<AppState>,
    subject: String,
    request: String,
    form: Form,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Step::Start, move |step| {
        let (state, subject, request) = (state.clone(), subject.clone(), request.clone());
        async move {
            let failed = |error: StoreError| std::io::Error::other(error.to_string());
            match step {
                Step::Done => None,
                Step::Start => match head(&state, &subject, &request).await {
                    Ok(Some(head)) => {
                        let opening = match form {
                            Form::Json => json_opening(&head.json),
                            Form::Html => html_opening(&state.catalog, &head.json),
                        };
                        Some((
                            Ok(Bytes::from(opening)),
                            Step::Events { keys: head.keys, after: None, first: true },
                        ))
                    }
                    Ok(None) => Some((Err(std::io::Error::other("the person was erased")), Step::Done)),
                    Err(error) => Some((Err(failed(error)), Step::Done)),
                },
                Step::Events { keys, after, first } => {
                    let page = match state.store.events_page(&subject, after, PAGE).await {
                        Ok(page) => page,
                        Err(error) => return Some((Err(failed(error)), Step::Done)),
                    };
                    let Some(last) = page.last() else {
                        let closing = match form {
                            Form::Json => "]}\n".to_owned(),
                            Form::Html => HTML_CLOSING.to_owned(),
                        };
                        return Some((Ok(Bytes::from(closing)), Step::Done));
                    };
                    let next = Some((last.timestamp, last.source.clone(), last.dedupe));
                    let mut chunk = String::new();
                    let mut first = first;
                    for stored in &page {
                        let event = match keys.open_event(stored) {
                            Ok(event) => event_json(&state.catalog, event),
                            Err(error) => return Some((Err(failed(error)), Step::Done)),
                        };
                        match form {
                            Form::Json => {
                                if !first {
                                    chunk.push(',');
                                }
                                chunk.push_str(&event.to_string());
                            }
                            Form::Html => html_event(&mut chunk, &event),
                        }
                        first = false;
                    }
                    Some((Ok(Bytes::from(chunk)), Step::Events { keys, after: next, first }))
                }
            }
        }
    })
}

/// The JSON object without its closing brace, opening the events array.
fn json_opening(head: &Map<String, Value>) -> String {
    let text = Value::Object(head.clone()).to_string();
    let without_brace = text.strip_suffix('}').unwrap_or(&text);
    format!("{without_brace},\"events\":[")
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A JSON value as readable text (strings without quotes).
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid #eee}\
th{background:#f6f6f6}code{font-size:.85rem;word-break:break-all}.note{color:#555}";

fn html_opening(catalog: &Catalog, head: &Map<String, Value>) -> String {
    let brand = &catalog.brand().name;
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>What {brand} holds about you</title><style>{STYLE}</style></head><body>\
         <h1>What {brand} holds about you</h1><p class=\"note\">Prepared on {generated} for request <code>{request}</code>. \
         Everything here is what we store today; a machine-readable copy is available in JSON.</p>",
        brand = escape(brand),
        generated = escape(&plain(&head["generated_at"])),
        request = escape(&plain(&head["request"])),
    );
    html.push_str("<h2>How we recognise you</h2><table><tr><th>Kind</th><th>Value</th></tr>");
    for identifier in head["identifiers"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&plain(&identifier["kind"])),
            escape(&plain(&identifier["value"]))
        ));
    }
    html.push_str("</table><h2>Your profile</h2><table><tr><th>What</th><th>Value</th><th>Kind of data</th><th>Why we keep it</th><th>For how long</th></tr>");
    for item in head["profile"].as_array().into_iter().flatten() {
        let purposes: Vec<String> = item["purposes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|purpose| {
                let key = plain(purpose);
                catalog.purpose(&key).map_or(key, |purpose| purpose.name.clone())
            })
            .collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&item["path"])),
            escape(&plain(&item["value"])),
            escape(&plain(&item["category"])),
            escape(&purposes.join(", ")),
            escape(&plain(&item["retention"]))
        ));
    }
    html.push_str("</table><h2>Your choices (consent)</h2><table><tr><th>When</th><th>Purpose</th><th>Choice</th><th>How</th></tr>");
    for entry in head["consents"]["ledger"].as_array().into_iter().flatten() {
        let key = plain(&entry["purpose"]);
        let purpose = catalog.purpose(&key).map_or(key, |purpose| purpose.name.clone());
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&entry["at"])),
            escape(&purpose),
            escape(&plain(&entry["status"])),
            escape(&plain(&entry["method"]))
        ));
    }
    html.push_str("</table><h2>Who looked at your data, and why</h2><table><tr><th>When</th><th>What happened</th><th>Why</th><th>Kinds of data</th></tr>");
    for entry in head["access_log"].as_array().into_iter().flatten() {
        let why = plain(&entry["purpose"]);
        let why = catalog.purpose(&why).map_or(why, |purpose| purpose.name.clone());
        let categories: Vec<String> = entry["returned"].as_array().into_iter().flatten().map(plain).collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&entry["at"])),
            escape(&plain(&entry["kind"])),
            escape(&why),
            escape(&categories.join(", "))
        ));
    }
    html.push_str(
        "</table><h2>Your requests</h2><table><tr><th>Received</th><th>Request</th><th>Status</th></tr>",
    );
    for request in head["requests"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&request["received_at"])),
            escape(&plain(&request["type"])),
            escape(&plain(&request["status"]))
        ));
    }
    html.push_str("</table><h2>What we would keep if you asked us to erase your data</h2><table><tr><th>What</th><th>Why</th><th>For how long</th></tr>");
    for item in head["kept_if_erased"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&item["path"])),
            escape(&plain(&item["why"])),
            escape(&plain(&item["for"]))
        ));
    }
    html.push_str("</table><h2>What you did (events)</h2><table><tr><th>When</th><th>What</th><th>Details</th><th>Kinds of data</th></tr>");
    html
}

fn html_event(html: &mut String, event: &Value) {
    let what = match plain(&event["event"]) {
        name if !name.is_empty() => name,
        _ => plain(&event["type"]),
    };
    let categories: Vec<String> = event["categories"].as_array().into_iter().flatten().map(plain).collect();
    html.push_str(&format!(
        "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
        escape(&plain(&event["timestamp"])),
        escape(&what),
        escape(&event["data"].to_string()),
        escape(&categories.join(", "))
    ));
}

const HTML_CLOSING: &str = "</table></body></html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_what_people_typed() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_json_opening_leaves_the_events_array_open() {
        let mut head = Map::new();
        head.insert("format".into(), json!(FORMAT));
        let text = format!("{}{}]}}", json_opening(&head), r#"{"type":"track"}"#);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["events"][0]["type"], "track");
        assert_eq!(parsed["format"], FORMAT);
    }
}
