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
use tactful_domain::catalog::{Capability, Catalog};
use tactful_domain::minimize;
use tactful_domain::request::legal_hold_properties;
use tactful_domain::segment::format_time;
use tactful_store::{EventCursor, FamilyKeys, OpenEvent, StoreError, SubjectData};

use crate::App;
use crate::error::{AppError, ErrorCode};
use crate::reads::{RIGHTS_PURPOSE, Read, Reader};

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
    pub fn parse(format: &str) -> Result<Form, AppError> {
        match format {
            "json" => Ok(Form::Json),
            "html" => Ok(Form::Html),
            _ => Err(AppError::with_message(ErrorCode::InvalidRequest, "format must be json or html")),
        }
    }

    /// The media type and file extension of this form.
    pub fn media_type(self) -> (&'static str, &'static str) {
        match self {
            Form::Json => ("application/json", "json"),
            Form::Html => ("text/html; charset=utf-8", "html"),
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
    pub fn form(&self, default: Form) -> Result<Form, AppError> {
        self.format.as_deref().map_or(Ok(default), Form::parse)
    }
}

/// How long a finished access or export package can be downloaded.
pub const DOWNLOAD_FOR_MS: i64 = 7 * 86_400_000;
/// How long a download may hold off an erasure of the same person.
const DOWNLOAD_LEASE_MS: i64 = 30 * 60_000;

/// Whether a request's package may be downloaded now (a completed access or export, for 7 days).
pub fn downloadable(record: &tactful_store::RequestRecord, now: i64) -> bool {
    use tactful_domain::request::{RequestKind, RequestStatus};
    matches!(record.kind, RequestKind::Access | RequestKind::Export)
        && record.status == RequestStatus::Completed
        && record.completed_at.is_some_and(|done| now < done + DOWNLOAD_FOR_MS)
}

/// A package download, ready to stream.
pub struct Download {
    /// `req_….json` or `req_….html`.
    pub filename: String,
    pub content_type: &'static str,
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("filename", &self.filename).finish_non_exhaustive()
    }
}

/// The package of a finished access or export request, for `reader`: the read is in the person's
/// access log before the first byte, and an erasure of the same person waits while it streams. The
/// brand API, the person's own preference center and the CLI all download through here. A brand key
/// needs a role that may download packages and covers every category this one holds; a refusal
/// changes nothing.
pub async fn download(
    app: &Arc<App>,
    reader: &Reader<'_>,
    record: tactful_store::RequestRecord,
    form: Form,
) -> Result<Download, AppError> {
    may_download(reader)?;
    let id = record.id.clone();
    let now = app.now();
    let Some(subject) = record.subject.clone().filter(|_| downloadable(&record, now)) else {
        return Err(AppError::new(ErrorCode::PackageUnavailable));
    };
    let Some(summary) = app.store.subject_summary(&subject).await? else {
        return Err(AppError::new(ErrorCode::PackageUnavailable));
    };
    let held = held_categories(app, &summary).await?;
    if let Reader::Key(caller) = reader {
        caller.require_package(&held)?;
    }
    let mut read = Read::new(app, reader, RIGHTS_PURPOSE, &subject);
    for category in &held {
        read.returned(category);
    }
    read.commit().await?;
    // While the download runs, an erasure of the same person waits (it checks this lease).
    let hold = tactful_store::RequestUpdate {
        lease_until: Some(Some(now + DOWNLOAD_LEASE_MS)),
        ..tactful_store::RequestUpdate::default()
    };
    app.store.update_request(&id, hold).await?;
    let guard = LeaseGuard { app: app.clone(), request: id.clone() };
    let stream = stream(app.clone(), subject, id.clone(), form);
    let stream = futures_util::StreamExt::map(stream, move |chunk| {
        let _held = &guard;
        chunk
    });
    let (content_type, extension) = form.media_type();
    Ok(Download { filename: format!("{id}.{extension}"), content_type, body: Box::pin(stream) })
}

/// The package of request `id`, for a reader who names it (the brand's API, the CLI).
pub async fn download_request(
    app: &Arc<App>,
    reader: &Reader<'_>,
    id: &str,
    form: Form,
) -> Result<Download, AppError> {
    may_download(reader)?;
    let view = app.store.request(id).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownRequest))?;
    download(app, reader, view.record, form).await
}

/// Refuses a brand key whose role may not download packages at all, before anything is looked up.
/// The person downloading their own package and the operator at the command line are not roles.
fn may_download(reader: &Reader<'_>) -> Result<(), AppError> {
    match reader {
        Reader::Key(caller) => caller.require(Capability::DownloadPackages),
        Reader::Person | Reader::Operator => Ok(()),
        Reader::Destination(_) => Err(AppError::new(ErrorCode::Forbidden)),
    }
}

/// The categories a package of this person holds: their identifiers' and profile's, and, when they
/// have events, every category events may carry (an over-count rather than an under-count, so a
/// breach report never misses what a download exposed).
async fn held_categories(app: &App, data: &SubjectData) -> Result<BTreeSet<String>, StoreError> {
    let catalog = &app.catalog;
    let mut categories = BTreeSet::new();
    for identity in &data.identities {
        let category = catalog
            .properties()
            .iter()
            .find(|p| p.identifier.as_ref().is_some_and(|kind| kind.as_str() == identity.kind))
            .map_or("user.unique_id", |p| p.category.as_str());
        categories.insert(category.to_owned());
    }
    for value in &data.profile {
        if let Some(property) = catalog.property_by_path(&value.path) {
            categories.insert(property.category.clone());
        }
    }
    if !app.store.events_page(&data.subject, None, 1).await?.is_empty() {
        for property in catalog.properties().iter().filter(|p| !p.path.starts_with("traits.")) {
            categories.insert(property.category.clone());
        }
    }
    categories.insert("user.privacy_preferences".to_owned());
    Ok(categories)
}

/// Ends a download of request `id`: an erasure of the same person no longer waits for it. Streams
/// end it by themselves (when dropped); a process about to exit calls this so the end is not lost.
pub async fn end_download(app: &App, id: &str) -> Result<(), StoreError> {
    let release =
        tactful_store::RequestUpdate { lease_until: Some(None), ..tactful_store::RequestUpdate::default() };
    app.store.update_request(id, release).await?;
    app.wake_requests.notify_one();
    Ok(())
}

/// Releases a download's lease when the download ends, finished or abandoned.
struct LeaseGuard {
    app: Arc<App>,
    request: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let (app, request) = (self.app.clone(), self.request.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let release = tactful_store::RequestUpdate {
                    lease_until: Some(None),
                    ..tactful_store::RequestUpdate::default()
                };
                if let Err(error) = app.store.update_request(&request, release).await {
                    tracing::warn!(%error, %request, "cannot release a download's lease; it ends by itself");
                }
                app.wake_requests.notify_one();
            });
        }
    }
}

/// Everything but the events, gathered before the first byte is sent.
struct Head {
    json: Map<String, Value>,
    keys: FamilyKeys,
}

/// Reads what the package says before the events. `None` if the subject is gone.
async fn head(app: &App, subject: &str, request: &str) -> Result<Option<Head>, StoreError> {
    let Some(data) = app.store.subject_summary(subject).await? else { return Ok(None) };
    let keys = FamilyKeys::unwrap(&app.vault, &data.keys)?;
    let catalog = &app.catalog;
    let identifiers: Vec<Value> = data
        .open_identities(&app.vault)?
        .into_iter()
        .map(|identity| json!({"kind": identity.kind, "value": identity.value.as_str()}))
        .collect();
    let profile: Vec<Value> = data
        .open_profile(&app.vault)?
        .into_iter()
        .map(|value| {
            let mut item = describe(catalog, &value.path);
            item.insert("path".into(), json!(value.path));
            item.insert("value".into(), value.value);
            item.insert("updated_at".into(), json!(format_time(value.updated_at)));
            Value::Object(item)
        })
        .collect();
    let found = app.store.subject_state(subject).await?;
    let ledger: Vec<Value> =
        found.iter().flat_map(|found| found.ledger.iter()).map(crate::consents::ledger_entry).collect();
    let receipts: Vec<Value> = app
        .store
        .receipts(subject)
        .await?
        .into_iter()
        .map(|stored| serde_json::from_str(&stored.body).unwrap_or(Value::Null))
        .collect();
    let requests: Vec<Value> = app
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
    let access_log = access_log(app, &data).await?;
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
    json.insert("generated_at".into(), json!(format_time(app.now())));
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
pub async fn access_log(app: &App, data: &SubjectData) -> Result<Vec<Value>, StoreError> {
    let mut entries = Vec::new();
    for (member, _) in &data.keys {
        entries.extend(app.store.audit_for_subject(&app.vault.subject_pseudonym(member), 10_000).await?);
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
    app: Arc<App>,
    subject: String,
    request: String,
    form: Form,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Step::Start, move |step| {
        let (app, subject, request) = (app.clone(), subject.clone(), request.clone());
        async move {
            let failed = |error: StoreError| std::io::Error::other(error.to_string());
            match step {
                Step::Done => None,
                Step::Start => match head(&app, &subject, &request).await {
                    Ok(Some(head)) => {
                        let opening = match form {
                            Form::Json => json_opening(&head.json),
                            Form::Html => super::package_html::opening(&app.catalog, &head.json),
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
                    let page = match app.store.events_page(&subject, after, PAGE).await {
                        Ok(page) => page,
                        Err(error) => return Some((Err(failed(error)), Step::Done)),
                    };
                    let Some(last) = page.last() else {
                        let closing = match form {
                            Form::Json => "]}\n".to_owned(),
                            Form::Html => super::package_html::CLOSING.to_owned(),
                        };
                        return Some((Ok(Bytes::from(closing)), Step::Done));
                    };
                    let next = Some((last.timestamp, last.source.clone(), last.dedupe));
                    let mut chunk = String::new();
                    let mut first = first;
                    for stored in &page {
                        let event = match keys.open_event(stored) {
                            Ok(event) => event_json(&app.catalog, event),
                            Err(error) => return Some((Err(failed(error)), Step::Done)),
                        };
                        match form {
                            Form::Json => {
                                if !first {
                                    chunk.push(',');
                                }
                                chunk.push_str(&event.to_string());
                            }
                            Form::Html => super::package_html::event(&mut chunk, &event),
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

#[cfg(test)]
mod tests {
    use super::*;

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
