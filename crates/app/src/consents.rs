//! The one way consent is recorded outside ingestion: the brand's API, the preference center, an
//! objection, a browser's Global Privacy Control on the pages and a consent's expiry all call
//! [`record`], which writes each change with its signed receipt, audit entry and destination
//! notices in one transaction, then tells the engines (a withdrawal has left the model when it
//! returns). Consent that events carry is recorded inside ingestion's own transaction by the same
//! row builder (`tactful_store::signed_consent`), and reaches the engines through the model's dirty
//! marks written in that transaction.

use serde::Deserialize;
use serde_json::{Value, json};
use tactful_domain::consent::{
    self, ConsentEvent, ConsentKind, ConsentMethod, ConsentSignal, ConsentStates, Status,
};
use tactful_domain::segment::{format_time, parse_time};
use tactful_store::{LedgerEntry, Store, StoreError, SubjectState};

use crate::error::{AppError, ErrorCode};
use crate::{App, Change};

/// Most consent changes one request may record.
pub const MAX_CHANGES: usize = 100;
/// How far in the future a consent's `at` may lie (clock skew between the brand and us).
const FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;
/// Lapsed consents recorded per run at most (the next run takes the rest).
const EXPIRY_BATCH: u32 = 1_000;
/// Ledger entries read per page for the export.
const LEDGER_PAGE: u32 = 10_000;

/// Records consent changes of a person: each gets a signed receipt and an audit entry, and the
/// destinations that want consent changes are told, all in one transaction; then every engine is
/// told. Returns the receipts.
pub async fn record(
    app: &App,
    found: &SubjectState,
    events: Vec<ConsentEvent>,
) -> Result<Vec<Value>, AppError> {
    Ok(record_for(app, &found.subject, events).await?)
}

async fn record_for(app: &App, subject: &str, events: Vec<ConsentEvent>) -> Result<Vec<Value>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let deliveries = tactful_store::requests::consent_deliveries(&app.vault, &app.catalog, subject, &events);
    let mut rows = Vec::with_capacity(events.len());
    let mut audit = Vec::with_capacity(events.len());
    for event in events {
        let (row, entry) = tactful_store::signed_consent(&app.vault, &app.catalog, subject, event);
        rows.push(row);
        audit.push(entry);
    }
    let receipts: Vec<Value> =
        rows.iter().map(|(_, receipt)| serde_json::from_str(receipt).unwrap_or(Value::Null)).collect();
    app.store.record_consents(subject, rows, audit, deliveries).await?;
    app.tell(subject, Change::Consent).await?;
    Ok(receipts)
}

/// A withdrawal of one purpose, recorded for a person (an objection). Returns its receipt.
pub async fn withdraw(
    app: &App,
    subject: &str,
    purpose: &str,
    method: ConsentMethod,
    source: String,
) -> Result<Vec<Value>, StoreError> {
    let version = app.catalog.purpose(purpose).map_or(1, |purpose| purpose.version);
    let jurisdiction = app.store.subject_state(subject).await?.and_then(|found| found.jurisdiction);
    let event = ConsentEvent {
        id: tactful_store::new_receipt_id(),
        purpose: purpose.to_owned(),
        kind: ConsentKind::Withdrawn,
        method,
        at: app.now(),
        expires_at: None,
        version,
        source: Some(source),
        jurisdiction,
        // The objection came through a request the brand (or the person's code) verified.
        verified: true,
        provenance: None,
    };
    record_for(app, subject, vec![event]).await
}

/// Records an `expired` ledger entry, with its signed receipt and audit entry, for each consent whose
/// expiry has passed, and tells the engines (decisions already treat it as expired; this makes the
/// ledger, the person's receipts and every engine say so). Returns how many it recorded.
pub async fn record_lapsed(app: &App, now: i64) -> Result<usize, StoreError> {
    let lapsed = app.store.lapsed_consents(now, EXPIRY_BATCH).await?;
    for entry in &lapsed {
        let lapsed = &entry.event;
        let expired = ConsentEvent {
            id: tactful_store::new_receipt_id(),
            purpose: lapsed.purpose.clone(),
            kind: ConsentKind::Expired,
            method: lapsed.method,
            at: lapsed.expires_at.unwrap_or(now),
            expires_at: None,
            version: lapsed.version,
            source: Some("expiry".into()),
            jurisdiction: lapsed.jurisdiction.clone(),
            verified: lapsed.verified,
            provenance: None,
        };
        record_for(app, &entry.subject, vec![expired]).await?;
    }
    Ok(lapsed.len())
}

/// One change the brand asks to record (`POST /v1/subjects/{id}/consents`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    pub purpose: String,
    /// `given`, `withdrawn` or `renewed`.
    pub status: String,
    /// `api` (the default: the brand records what the person told it), `explicit` (the person
    /// acted on the brand's own consent form) or `imported` (from a previous system).
    #[serde(default, deserialize_with = "crate::fields::present")]
    pub method: Option<String>,
    /// The version of the purpose's wording the person saw; the current one if absent.
    #[serde(default, deserialize_with = "crate::fields::some_whole")]
    pub version: Option<u32>,
    /// When the person decided (RFC 3339); now if absent. Imports carry their original times.
    #[serde(default, deserialize_with = "crate::fields::present")]
    pub at: Option<String>,
    /// When a given consent lapses (RFC 3339).
    #[serde(default, deserialize_with = "crate::fields::present")]
    pub expires_at: Option<String>,
}

/// Records the changes the brand sends for a person. Every change is checked before any is
/// recorded: one bad change records nothing. Returns the person's consent view with the receipts.
pub async fn record_changes(
    app: &App,
    caller: &crate::Caller,
    reference: &str,
    changes: &[ConsentChange],
    strings: &ConsentStrings,
) -> Result<Value, AppError> {
    caller.require_privacy()?;
    let has_strings = strings.tc_string.is_some() || strings.gpp_string.is_some();
    if (changes.is_empty() && !has_strings) || changes.len() > MAX_CHANGES {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            format!("send between 1 and {MAX_CHANGES} changes, or a tc_string or gpp_string"),
        ));
    }
    let signals = string_signals(app, strings)?;
    let found = crate::subjects::state_of(app, reference).await?;
    let now = app.now();
    let mut events = Vec::with_capacity(changes.len() + signals.len());
    let mut problems = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        match checked(app, &found, change, now) {
            Ok(event) => events.push(event),
            Err((code, problem)) => problems.push((index, code, problem)),
        }
    }
    if let Some(first) = problems.first() {
        let code = if problems.iter().all(|(_, code, _)| *code == ErrorCode::UnknownPurpose) {
            ErrorCode::UnknownPurpose
        } else {
            ErrorCode::InvalidRequest
        };
        let listed: Vec<Value> =
            problems.iter().map(|(index, _, problem)| json!({"index": index, "problem": problem})).collect();
        return Err(AppError::with_message(
            code,
            format!("changes[{}]: {}; nothing was recorded", first.0, first.2),
        )
        .details(json!({"problems": listed})));
    }
    let skipped = from_strings(app, &found, signals, now, &mut events);
    let receipts = record(app, &found, events).await?;
    let updated = app.store.subject_state(&found.subject).await?.unwrap_or(found);
    let mut view = view(app, &updated);
    if let Value::Object(object) = &mut view {
        object.insert("receipts".into(), Value::Array(receipts));
        if has_strings {
            object.insert("skipped".into(), Value::Array(skipped));
        }
    }
    Ok(view)
}

/// IAB consent strings sent with `POST /v1/subjects/{id}/consents`, read through the catalog's
/// `[iab]` mapping the way the same strings on events are.
#[derive(Debug, Clone, Default)]
pub struct ConsentStrings {
    /// An IAB TCF v2.2 TC string.
    pub tc_string: Option<String>,
    /// An IAB GPP string.
    pub gpp_string: Option<String>,
    /// The GPP section ids that apply (all in the string if absent).
    pub gpp_sid: Option<Vec<i64>>,
}

/// The signals of the strings, or a 400 naming the string, segment and field that is malformed.
fn string_signals(app: &App, strings: &ConsentStrings) -> Result<Vec<ConsentSignal>, AppError> {
    let read = consent::strings::Strings {
        tc: strings.tc_string.as_deref().map(|text| ("tc_string", text)),
        gpp: strings.gpp_string.as_deref().map(|text| ("gpp_string", text)),
        gpp_sid: strings.gpp_sid.clone(),
    };
    let signals = consent::strings::signals(&app.catalog, &read).map_err(|error| {
        AppError::with_message(ErrorCode::InvalidRequest, format!("{error}; nothing was recorded"))
            .details(json!({"reason": "malformed_consent_string"}))
    })?;
    if let Some(named) = &strings.gpp_sid {
        gpp_sections_carried(strings.gpp_string.as_deref(), named)?;
    }
    Ok(signals)
}

/// Refuses a `gpp_sid` naming a section the GPP string does not carry, naming none, or sent without
/// a string:
/// the sections it names are the ones the brand says apply, so one missing would otherwise
/// record nothing for it without a word.
fn gpp_sections_carried(gpp_string: Option<&str>, named: &[i64]) -> Result<(), AppError> {
    let refuse = |message: String, details: Value| {
        Err(AppError::with_message(ErrorCode::InvalidRequest, format!("{message}; nothing was recorded"))
            .details(details))
    };
    let Some(text) = gpp_string else {
        return refuse(
            "gpp_sid names the sections of a gpp_string that apply: send the gpp_string too".into(),
            json!({"reason": "gpp_sid_without_gpp_string"}),
        );
    };
    if named.is_empty() {
        return refuse(
            "gpp_sid names no section, so nothing would apply: name the sections that apply, or leave \
             gpp_sid out for all of the string's"
                .into(),
            json!({"reason": "gpp_sid_empty"}),
        );
    }
    // The string was decoded once already; this only reads which sections it carries.
    let carried = tactful_domain::iab::gpp::decode(text, "gpp_string")
        .map(|decoded| decoded.section_ids)
        .unwrap_or_default();
    let absent: Vec<i64> = named
        .iter()
        .copied()
        .filter(|id| !carried.iter().any(|carried| i64::from(*carried) == *id))
        .collect();
    if absent.is_empty() {
        return Ok(());
    }
    let list = |ids: &mut dyn Iterator<Item = String>| ids.collect::<Vec<_>>().join(", ");
    refuse(
        format!(
            "gpp_sid names {} {} that the gpp_string does not carry (it carries {})",
            if absent.len() == 1 { "section" } else { "sections" },
            list(&mut absent.iter().map(i64::to_string)),
            list(&mut carried.iter().map(u32::to_string))
        ),
        json!({"reason": "gpp_section_absent", "absent": absent, "carried": carried}),
    )
}

/// Turns the strings' signals into ledger entries, as ingestion does: only what changes the
/// person's consent, never undoing a word newer than the string. Returns what was left out, why.
fn from_strings(
    app: &App,
    found: &SubjectState,
    signals: Vec<ConsentSignal>,
    now: i64,
    events: &mut Vec<ConsentEvent>,
) -> Vec<Value> {
    // The changes of the same request count as the person's latest word.
    let mut states = ConsentStates::fold(found.ledger.iter().chain(events.iter()));
    let mut skipped = Vec::new();
    for signal in signals {
        let Some(purpose) = app.catalog.purpose(&signal.purpose) else { continue };
        let Some(at) = states.signal_time(&signal, now) else {
            skipped.push(json!({"purpose": signal.purpose, "reason": "older_than_latest_choice"}));
            continue;
        };
        if !states.changes(&signal, purpose.version, now) {
            continue;
        }
        let event = ConsentEvent {
            id: tactful_store::new_receipt_id(),
            purpose: signal.purpose,
            kind: signal.kind,
            method: signal.method,
            at,
            expires_at: None,
            version: purpose.version,
            source: Some("api".into()),
            jurisdiction: found.jurisdiction.clone(),
            // The brand's API key vouches for whom it records consent for.
            verified: true,
            provenance: signal.provenance,
        };
        states.apply(&event);
        events.push(event);
    }
    skipped
}

/// Checks one requested change and turns it into a ledger entry.
fn checked(
    app: &App,
    found: &SubjectState,
    change: &ConsentChange,
    now: i64,
) -> Result<ConsentEvent, (ErrorCode, String)> {
    let invalid = |problem: String| (ErrorCode::InvalidRequest, problem);
    let purpose = app.catalog.purpose(change.purpose.trim()).ok_or_else(|| {
        (ErrorCode::UnknownPurpose, format!("the catalog declares no purpose {:?}", change.purpose))
    })?;
    let kind = match ConsentKind::parse(&change.status) {
        Some(kind @ (ConsentKind::Given | ConsentKind::Withdrawn | ConsentKind::Renewed)) => kind,
        _ => return Err(invalid(format!("status {:?} is not given, withdrawn or renewed", change.status))),
    };
    let method = match change.method.as_deref().map(ConsentMethod::parse) {
        None => ConsentMethod::Api,
        Some(Some(method @ (ConsentMethod::Api | ConsentMethod::Explicit | ConsentMethod::Imported))) => {
            method
        }
        Some(_) => {
            return Err(invalid(format!(
                "method {:?} is not api, explicit or imported (the others are recorded by the door they name)",
                change.method.as_deref().unwrap_or_default()
            )));
        }
    };
    let version = change.version.unwrap_or(purpose.version);
    if version == 0 || version > purpose.version {
        return Err(invalid(format!(
            "version {version} of {} does not exist (it is at version {})",
            purpose.key, purpose.version
        )));
    }
    let time = |field: &str, text: &Option<String>| -> Result<Option<i64>, (ErrorCode, String)> {
        text.as_deref()
            .map(|text| {
                parse_time(text).ok_or_else(|| invalid(format!("{field} {text:?} is not an RFC 3339 time")))
            })
            .transpose()
    };
    let at = time("at", &change.at)?.unwrap_or(now);
    if at > now + FUTURE_SKEW_MS {
        return Err(invalid("at lies in the future".into()));
    }
    let expires_at = time("expires_at", &change.expires_at)?;
    match (kind, expires_at) {
        (ConsentKind::Withdrawn, Some(_)) => return Err(invalid("a withdrawal does not expire".into())),
        (_, Some(end)) if end <= at => return Err(invalid("expires_at must come after at".into())),
        _ => {}
    }
    Ok(ConsentEvent {
        id: tactful_store::new_receipt_id(),
        purpose: purpose.key.clone(),
        kind,
        method,
        at,
        expires_at,
        version,
        source: Some("api".into()),
        jurisdiction: found.jurisdiction.clone(),
        // The brand's API key vouches for whom it records consent for.
        verified: true,
        provenance: None,
    })
}

/// A person's consent per declared purpose now, and the ledger it is folded from (newest first).
pub fn view(app: &App, found: &SubjectState) -> Value {
    let states = ConsentStates::fold(&found.ledger);
    let now = app.now();
    let purposes: Vec<Value> = app
        .catalog
        .purposes()
        .iter()
        .map(|purpose| {
            let status = match states.status(&purpose.key, purpose.version, now) {
                Status::NoSignal => "no_signal",
                Status::Given { current: false, .. } => "outdated",
                Status::Given { .. } => "given",
                Status::Withdrawn => "withdrawn",
                Status::Expired => "expired",
            };
            let record = states.get(&purpose.key);
            json!({
                "purpose": purpose.key,
                "name": purpose.name,
                "essential": purpose.is_essential(),
                "status": status,
                "method": record.map(|record| record.method.as_str()),
                "at": record.map(|record| format_time(record.at)),
                "expires_at": record.and_then(|record| record.expires_at).map(format_time),
                "version": record.map(|record| record.version),
                "current_version": purpose.version,
                "receipt": record.map(|record| record.id()),
            })
        })
        .collect();
    let ledger: Vec<Value> = found.ledger.iter().rev().map(ledger_entry).collect();
    json!({
        "subject": found.subject,
        "jurisdiction": found.jurisdiction,
        "purposes": purposes,
        "ledger": ledger,
    })
}

/// One ledger entry as the API, the package and the export show it.
pub fn ledger_entry(event: &ConsentEvent) -> Value {
    json!({
        "receipt": event.id,
        "purpose": event.purpose,
        "status": event.kind.as_str(),
        "method": event.method.as_str(),
        "at": format_time(event.at),
        "expires_at": event.expires_at.map(format_time),
        "version": event.version,
        "source": event.source,
        "jurisdiction": event.jurisdiction,
        "verified": event.verified,
        "consent_string": event.provenance,
    })
}

/// How the whole ledger is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerFormat {
    Csv,
    Json,
}

impl LedgerFormat {
    pub fn parse(format: &str) -> Result<LedgerFormat, AppError> {
        match format {
            "csv" => Ok(LedgerFormat::Csv),
            "json" => Ok(LedgerFormat::Json),
            _ => Err(AppError::with_message(ErrorCode::InvalidRequest, "format must be csv or json")),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            LedgerFormat::Csv => "csv",
            LedgerFormat::Json => "json",
        }
    }
}

/// The whole consent ledger, oldest first, read in pages.
pub async fn whole_ledger(store: &dyn Store) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = store.consent_ledger(after, LEDGER_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.event.at, last.event.id.clone()));
        entries.extend(page);
    }
    Ok(entries)
}

/// The CSV columns, in order (new ones are only ever appended; docs/export.md lists them). The
/// `consent_string_*` columns are the IAB consent string a change was read from, empty otherwise.
const CSV_HEADER: &str = "subject,receipt,purpose,status,method,at,expires_at,version,source,jurisdiction,\
                          consent_string_sha256,consent_string_format,consent_string_cmp_id,\
                          consent_string_cmp_version,consent_string_created,consent_string_updated";

/// The export in CSV or JSON.
pub fn render(format: LedgerFormat, entries: &[LedgerEntry]) -> String {
    if format == LedgerFormat::Json {
        let rows: Vec<Value> = entries
            .iter()
            .map(|entry| {
                let mut row = ledger_entry(&entry.event);
                if let Value::Object(object) = &mut row {
                    object.insert("subject".into(), json!(entry.subject));
                }
                row
            })
            .collect();
        return format!("{:#}\n", json!({"consents": rows}));
    }
    let mut csv = format!("{CSV_HEADER}\n");
    for entry in entries {
        csv.push_str(&csv_row(entry));
        csv.push('\n');
    }
    csv
}

/// One CSV line (RFC 4180 quoting).
fn csv_row(entry: &LedgerEntry) -> String {
    let event = &entry.event;
    let provenance = event.provenance.as_ref();
    let fields = [
        entry.subject.clone(),
        event.id.clone(),
        event.purpose.clone(),
        event.kind.as_str().to_owned(),
        event.method.as_str().to_owned(),
        format_time(event.at),
        event.expires_at.map(format_time).unwrap_or_default(),
        event.version.to_string(),
        event.source.clone().unwrap_or_default(),
        event.jurisdiction.clone().unwrap_or_default(),
        provenance.map(|p| p.sha256.clone()).unwrap_or_default(),
        provenance.map(|p| p.format.clone()).unwrap_or_default(),
        provenance.and_then(|p| p.cmp_id).map(|id| id.to_string()).unwrap_or_default(),
        provenance.and_then(|p| p.cmp_version).map(|version| version.to_string()).unwrap_or_default(),
        provenance.and_then(|p| p.created).map(format_time).unwrap_or_default(),
        provenance.and_then(|p| p.updated).map(format_time).unwrap_or_default(),
    ];
    fields
        .iter()
        .map(|field| {
            if field.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod, StringProvenance};
    use tactful_store::LedgerEntry;

    use super::{LedgerFormat, render};

    #[test]
    fn the_csv_export_carries_the_consent_strings_provenance_in_the_last_columns() {
        let event = |id: &str, provenance: Option<StringProvenance>| LedgerEntry {
            subject: "sub_1".into(),
            event: ConsentEvent {
                id: id.into(),
                purpose: "marketing.advertising".into(),
                kind: ConsentKind::Given,
                method: ConsentMethod::Explicit,
                at: 1_700_000_000_000,
                expires_at: None,
                version: 1,
                source: Some("web".into()),
                jurisdiction: Some("eu".into()),
                verified: false,
                provenance,
            },
        };
        let provenance = StringProvenance {
            format: "tcf".into(),
            sha256: "ab12".into(),
            cmp_id: Some(300),
            cmp_version: Some(2),
            created: Some(1_699_999_000_000),
            updated: Some(1_700_000_000_000),
        };
        let csv = render(LedgerFormat::Csv, &[event("cr_1", Some(provenance)), event("cr_2", None)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(
            lines[0].starts_with(
                "subject,receipt,purpose,status,method,at,expires_at,version,source,jurisdiction,"
            ) && lines[0].ends_with(
                ",consent_string_sha256,consent_string_format,consent_string_cmp_id,\
                     consent_string_cmp_version,consent_string_created,consent_string_updated"
            ),
            "{csv}"
        );
        assert!(
            lines[1].ends_with(",1,web,eu,ab12,tcf,300,2,2023-11-14T21:56:40Z,2023-11-14T22:13:20Z"),
            "{csv}"
        );
        assert!(lines[2].ends_with(",1,web,eu,,,,,,"), "{csv}");
    }
}
