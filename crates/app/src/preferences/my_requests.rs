//! The person's own requests: a download of everything or erasure, asked for from their settings,
//! followed to the end (even after an erasure ended their session), and what erasure keeps.

use super::*;

/// One of the person's requests.
#[derive(Debug, Clone, Serialize)]
pub struct MyRequest {
    pub id: String,
    /// `export`, `erase`, …
    pub kind: String,
    pub status: String,
    /// The status in words.
    pub explained: String,
    pub received_at: String,
    pub due_at: String,
    pub completed_at: Option<String>,
    /// Whether the package can be downloaded now.
    pub download: bool,
}

fn my_request(record: &RequestRecord, now: i64) -> MyRequest {
    let explained = match (record.kind, record.status) {
        (_, RequestStatus::Received | RequestStatus::Running) => "We are working on it.",
        (_, RequestStatus::Verifying) => "Waiting for the code we sent you.",
        (_, RequestStatus::WaitingOnDestinations) => {
            "Done here; waiting for the other systems we connected to confirm."
        }
        (RequestKind::Access | RequestKind::Export, RequestStatus::Completed) => {
            if downloadable(record, now) {
                "Ready to download."
            } else {
                "Done; the download has expired (ask again for a fresh one)."
            }
        }
        (RequestKind::Erase, RequestStatus::Completed) => "Done: your data is deleted everywhere.",
        (_, RequestStatus::Completed) => "Done.",
        (_, RequestStatus::PartiallyCompleted) => {
            "Done here, but a connected system did not confirm in time; our privacy team follows up."
        }
        (_, RequestStatus::Failed) => "It could not be completed; our privacy team follows up.",
    };
    MyRequest {
        id: record.id.clone(),
        kind: record.kind.as_str().to_owned(),
        status: record.status.as_str().to_owned(),
        explained: explained.to_owned(),
        received_at: format_time(record.received_at),
        due_at: format_time(record.due_at),
        completed_at: record.completed_at.map(format_time),
        download: downloadable(record, now),
    }
}

/// The person's requests, newest first.
pub async fn my_requests(app: &App, subject: &str) -> Result<Vec<MyRequest>, AppError> {
    let now = app.now();
    let mut records = app.store.requests(Some(subject), 50).await?;
    records.sort_by_key(|r| std::cmp::Reverse(r.received_at));
    Ok(records.iter().map(|r| my_request(r, now)).collect())
}

/// One request, if it is the person's (`subject`) — or, after an erasure ended their data and
/// session, the erasure they were given a token for. Anyone else's answers as if it did not exist.
pub async fn request_of(
    app: &App,
    subject: Option<&str>,
    erasure: Option<&str>,
    id: &str,
) -> Result<(MyRequest, RequestRecord), AppError> {
    let view = app.store.request(id).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownRequest))?;
    let record = view.record;
    let theirs = (subject.is_some() && record.subject.as_deref() == subject) || erasure == Some(id);
    if !theirs {
        return Err(AppError::new(ErrorCode::UnknownRequest));
    }
    Ok((my_request(&record, app.now()), record))
}

/// Asks for a download of everything (`export`) or for erasure (`erase`). The person is signed
/// in, which the brand's link vouches for, so no further code is needed.
pub async fn ask(app: &App, subject: &str, kind: RequestKind) -> Result<String, AppError> {
    if !matches!(kind, RequestKind::Export | RequestKind::Erase) {
        return Err(AppError::with_message(ErrorCode::InvalidRequest, "ask for export or erase"));
    }
    let input = NewRequestInput {
        kind,
        subject: Some(subject.to_owned()),
        source: "preference_center".into(),
        details: json!({"suppress": false}),
        value: None,
        identifiers: Vec::new(),
        verify: None,
    };
    let id = requests::create(app, input).await?;
    app.wake_requests.notify_one();
    Ok(id)
}

/// What erasure keeps because the law requires it, in words: (kind of data, for how long).
pub fn kept_if_erased(catalog: &Catalog) -> Vec<(String, String)> {
    let taxonomy = Taxonomy::builtin();
    let mut kept: BTreeMap<String, tactful_domain::period::Retention> = BTreeMap::new();
    for id in legal_hold_properties(catalog) {
        let property = catalog.property(id);
        let name = taxonomy.plain_category_name(&property.category);
        let entry = kept.entry(name).or_insert(property.retention);
        *entry = (*entry).max(property.retention);
    }
    kept.into_iter().map(|(name, retention)| (name, retention.in_words())).collect()
}

/// What an erasure actually kept under legal hold, in words: (kind of data, until when), one line
/// per kind with the latest date.
pub async fn kept_by(app: &App, record: &RequestRecord) -> Result<Vec<(String, String)>, AppError> {
    let Some(subject) = record.subject.as_deref().filter(|_| record.kind == RequestKind::Erase) else {
        return Ok(Vec::new());
    };
    let taxonomy = Taxonomy::builtin();
    let mut kept: BTreeMap<String, i64> = BTreeMap::new();
    for hold in app.store.legal_holds(subject).await? {
        for category in &hold.categories {
            let name = taxonomy.plain_category_name(category);
            let until = kept.entry(name).or_insert(hold.retain_until);
            *until = (*until).max(hold.retain_until);
        }
    }
    Ok(kept.into_iter().map(|(name, until)| (name, format!("until {}", &format_time(until)[..10]))).collect())
}
