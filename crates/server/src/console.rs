//! What the brand console shows, computed from the store and the catalog on every visit so that no
//! figure can drift from what the software holds: the data map, consent rates over time, the
//! request queue, the audit log's state, minimization at work, the recommendation model and the
//! analytics budgets. Aggregates and ids only: nothing here opens a person's data.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use tactful_domain::catalog::{Catalog, Regime};
use tactful_domain::consent::ConsentKind;
use tactful_domain::minimize::DropReason;
use tactful_domain::notice::{self, Basis};
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_domain::segment::format_time;
use tactful_domain::taxonomy::Taxonomy;
use tactful_store::{DeliveryRecord, DeliveryStatus, LedgerEntry, RequestRecord, Store, StoreError};

use crate::AppState;
use crate::chart::{self, BarChart, LineChart};

pub const DAY_MS: i64 = 86_400_000;
/// Days the consent charts cover, today included.
pub const DAYS: usize = 30;
/// Ledger entries read at a time while folding consent rates.
const LEDGER_PAGE: u32 = 5_000;
/// Open requests the queue shows, soonest deadline first.
pub const QUEUE_LIMIT: u32 = 200;
/// Finished requests shown below the queue.
const FINISHED_SHOWN: usize = 20;

// ---- The data map --------------------------------------------------------------------------------

/// The catalog as a privacy team reads it.
#[derive(Debug, Clone)]
pub struct CatalogOverview {
    pub catalog_sha256: String,
    pub categories: Vec<CategoryGroup>,
    pub purposes: Vec<PurposeRow>,
    /// The columns of the purposes' legal bases: each jurisdiction, then "anywhere else".
    pub basis_columns: Vec<String>,
    pub jurisdictions: Vec<JurisdictionRow>,
    pub sources: Vec<SourceRow>,
    pub guardrails: Vec<(String, String)>,
}

/// The properties of one data category.
#[derive(Debug, Clone)]
pub struct CategoryGroup {
    pub key: String,
    /// The taxonomy's name for it.
    pub name: String,
    pub sensitive: bool,
    pub properties: Vec<PropertyRow>,
}

#[derive(Debug, Clone)]
pub struct PropertyRow {
    pub path: String,
    pub description: String,
    /// The purposes it serves, by name.
    pub purposes: Vec<String>,
    pub retention: String,
    pub sensitive: bool,
    /// The identifier kind it is, if it identifies people.
    pub identifier: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PurposeRow {
    pub key: String,
    pub name: String,
    pub essential: bool,
    pub version: u32,
    /// How many properties serve it.
    pub properties: usize,
    /// Its basis per column of [`CatalogOverview::basis_columns`], in short words.
    pub bases: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct JurisdictionRow {
    pub key: String,
    pub name: String,
    pub regime: &'static str,
    pub deadline_days: u32,
    pub extension_days: u32,
    pub places: String,
    pub channel_consent: bool,
    pub no_personal_data_in_analytics: bool,
    pub honours_gpc: bool,
}

#[derive(Debug, Clone)]
pub struct SourceRow {
    pub key: String,
    pub name: String,
    /// Whether an event with an undeclared property is rejected (rather than the property dropped).
    pub strict: bool,
    pub default_jurisdiction: Option<String>,
    pub allow_sensitive: bool,
}

fn basis_in_short(basis: &Basis) -> String {
    match basis {
        Basis::Necessary => "necessary".into(),
        Basis::Consent => "opt-in consent".into(),
        Basis::ExplicitConsent => "explicit consent".into(),
        Basis::UnlessYouOptOut => "unless they opt out".into(),
        Basis::NeverBecause(rule) => format!("never (rule {rule})"),
        Basis::NeverInAnalytics => "never (no personal data in analytics)".into(),
    }
}

fn purpose_name(catalog: &Catalog, key: &str) -> String {
    catalog.purpose(key).map_or_else(|| key.to_owned(), |purpose| purpose.name.clone())
}

fn jurisdiction_name(catalog: &Catalog, key: Option<&str>) -> String {
    match key {
        Some(key) => catalog.jurisdiction(key).map_or_else(|| key.to_owned(), |j| j.name.clone()),
        None => "Jurisdiction not known".to_owned(),
    }
}

/// The data map: properties by category, purposes with their basis per jurisdiction,
/// jurisdictions, sources and the brand's own rules.
pub fn catalog_overview(state: &AppState) -> CatalogOverview {
    let catalog = &state.catalog;
    let taxonomy = Taxonomy::builtin();
    let mut categories: BTreeMap<&str, CategoryGroup> = BTreeMap::new();
    for property in catalog.properties() {
        let group = categories.entry(property.category.as_str()).or_insert_with(|| CategoryGroup {
            key: property.category.clone(),
            name: taxonomy
                .category(&property.category)
                .map_or_else(|| property.category.clone(), |entry| entry.name.to_owned()),
            sensitive: false,
            properties: Vec::new(),
        });
        group.sensitive |= property.sensitive;
        group.properties.push(PropertyRow {
            path: property.path.clone(),
            description: property.description.clone().unwrap_or_default(),
            purposes: property.purposes.iter().map(|key| purpose_name(catalog, key)).collect(),
            retention: property.retention.in_words(),
            sensitive: property.sensitive,
            identifier: property.identifier.as_ref().map(ToString::to_string),
        });
    }
    let notice = notice::notice(&state.policy);
    let mut basis_columns: Vec<String> = catalog.jurisdictions().iter().map(|j| j.name.clone()).collect();
    basis_columns.push("Anywhere else".to_owned());
    let purposes = notice
        .purposes
        .iter()
        .map(|purpose| PurposeRow {
            key: purpose.key.clone(),
            name: purpose.name.clone(),
            essential: purpose.essential,
            version: purpose.version,
            properties: catalog
                .properties()
                .iter()
                .filter(|p| {
                    p.purposes.iter().any(|served| tactful_domain::taxonomy::covers(served, &purpose.key))
                })
                .count(),
            bases: purpose
                .basis
                .iter()
                .map(|basis| match basis.uses.as_slice() {
                    [] => "no data".to_owned(),
                    [(only, _)] => basis_in_short(only),
                    uses => uses
                        .iter()
                        .map(|(basis, categories)| {
                            let n = categories.len();
                            format!(
                                "{} ({n} categor{})",
                                basis_in_short(basis),
                                if n == 1 { "y" } else { "ies" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                })
                .collect(),
        })
        .collect();
    let jurisdictions = catalog
        .jurisdictions()
        .iter()
        .map(|j| JurisdictionRow {
            key: j.key.clone(),
            name: j.name.clone(),
            regime: match j.regime {
                Regime::OptIn => "opt-in (consent first)",
                Regime::OptOut => "opt-out (allowed until they say no)",
            },
            deadline_days: j.request_deadline_days,
            extension_days: j.request_extension_days,
            places: j.countries.join(", "),
            channel_consent: j.channel_consent,
            no_personal_data_in_analytics: j.no_personal_data_in_analytics,
            honours_gpc: j.regime == Regime::OptOut,
        })
        .collect();
    let sources = catalog
        .sources()
        .iter()
        .map(|source| SourceRow {
            key: source.key.clone(),
            name: source.name.clone(),
            strict: source.strict,
            default_jurisdiction: source
                .default_jurisdiction
                .as_deref()
                .map(|key| jurisdiction_name(catalog, Some(key))),
            allow_sensitive: source.allow_sensitive,
        })
        .collect();
    let guardrails = catalog
        .guardrails()
        .iter()
        .map(|g| (g.name.clone(), g.description.clone().unwrap_or_default()))
        .collect();
    CatalogOverview {
        catalog_sha256: catalog.sha256().to_owned(),
        categories: categories.into_values().collect(),
        purposes,
        basis_columns,
        jurisdictions,
        sources,
        guardrails,
    }
}

// ---- Consent rates -------------------------------------------------------------------------------

/// How many people with a recorded signal say yes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    pub yes: u64,
    pub people: u64,
}

impl Rate {
    pub fn percent(self) -> Option<f64> {
        (self.people > 0).then(|| self.yes as f64 * 100.0 / self.people as f64)
    }

    /// `62% (31 of 50)`, or that nobody has a signal.
    pub fn in_words(&self) -> String {
        match self.percent() {
            Some(percent) => format!("{percent:.0}% ({} of {})", self.yes, self.people),
            None => "no signal".to_owned(),
        }
    }

    fn add(&mut self, other: Rate) {
        self.yes += other.yes;
        self.people += other.people;
    }
}

/// The latest ledger entry of one person and purpose, as far as the rates care.
#[derive(Debug, Clone)]
struct Latest {
    id: String,
    yes: bool,
    jurisdiction: usize,
}

/// The consent ledger folded in time order into counts of people per purpose and jurisdiction:
/// each person counts once per purpose, under the jurisdiction of their latest signal, as a yes
/// when that signal gave (or renewed) consent that has not expired. Counts are kept as entries
/// arrive, so a snapshot at each day's end costs only the counts.
#[derive(Debug, Default)]
pub struct RateFold {
    purposes: Vec<String>,
    jurisdictions: Vec<Option<String>>,
    latest: HashMap<(String, usize), Latest>,
    counts: HashMap<(usize, usize), Rate>,
    /// `(expires_at, subject, purpose, entry id)` of consents given with an expiry.
    expiries: BinaryHeap<Reverse<(i64, String, usize, String)>>,
}

/// Counts per `(purpose, jurisdiction)` index at one moment.
pub type Snapshot = HashMap<(usize, usize), Rate>;

fn intern<T: PartialEq + Clone>(list: &mut Vec<T>, value: &T) -> usize {
    match list.iter().position(|known| known == value) {
        Some(index) => index,
        None => {
            list.push(value.clone());
            list.len() - 1
        }
    }
}

impl RateFold {
    /// Takes in the next ledger entry; entries must come in the ledger's `(at, id)` order, so the
    /// last one applied is each person's latest word.
    pub fn apply(&mut self, entry: &LedgerEntry) {
        let event = &entry.event;
        let purpose = intern(&mut self.purposes, &event.purpose);
        let jurisdiction = intern(&mut self.jurisdictions, &event.jurisdiction);
        let yes = matches!(event.kind, ConsentKind::Given | ConsentKind::Renewed);
        let next = Latest { id: event.id.clone(), yes, jurisdiction };
        if let Some(previous) = self.latest.insert((entry.subject.clone(), purpose), next) {
            let count = self.counts.entry((purpose, previous.jurisdiction)).or_default();
            count.people = count.people.saturating_sub(1);
            if previous.yes {
                count.yes = count.yes.saturating_sub(1);
            }
        }
        let count = self.counts.entry((purpose, jurisdiction)).or_default();
        count.people += 1;
        if yes {
            count.yes += 1;
            if let Some(end) = event.expires_at {
                self.expiries.push(Reverse((end, entry.subject.clone(), purpose, event.id.clone())));
            }
        }
    }

    /// Consents whose expiry is at or before `at` stop counting as a yes (the expiry job records
    /// them later; until then they already do not permit anything). Call with times that only grow.
    pub fn expire_until(&mut self, at: i64) {
        while let Some(Reverse((end, _, _, _))) = self.expiries.peek()
            && *end <= at
        {
            let Some(Reverse((_, subject, purpose, id))) = self.expiries.pop() else { break };
            if let Some(latest) = self.latest.get_mut(&(subject, purpose))
                && latest.id == id
                && latest.yes
            {
                latest.yes = false;
                let count = self.counts.entry((purpose, latest.jurisdiction)).or_default();
                count.yes = count.yes.saturating_sub(1);
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.counts.clone()
    }

    fn purpose_index(&self, key: &str) -> Option<usize> {
        self.purposes.iter().position(|known| known == key)
    }
}

/// The fold of the ledger with the counts taken at the end of each of the last [`DAYS`] days.
#[derive(Debug)]
pub struct Daily {
    starts: Vec<i64>,
    /// When each day but today ends (today's counts are taken at the end, at now).
    ends: Vec<i64>,
    fold: RateFold,
    snapshots: Vec<Snapshot>,
}

impl Daily {
    pub fn new(now: i64) -> Daily {
        let today = now.div_euclid(DAY_MS) * DAY_MS;
        let starts: Vec<i64> = (0..DAYS).map(|k| today - (DAYS - 1 - k) as i64 * DAY_MS).collect();
        let ends = starts.iter().take(DAYS - 1).map(|start| start + DAY_MS).collect();
        Daily { starts, ends, fold: RateFold::default(), snapshots: Vec::with_capacity(DAYS) }
    }

    /// Takes in the next ledger entry (in ledger order), first closing the days that ended before it.
    pub fn push(&mut self, entry: &LedgerEntry) {
        while let Some(&end) = self.ends.get(self.snapshots.len())
            && entry.event.at >= end
        {
            self.fold.expire_until(end);
            self.snapshots.push(self.fold.snapshot());
        }
        self.fold.apply(entry);
    }

    /// The days' starts, the fold, and one snapshot per day (the last one at `now`).
    pub fn finish(mut self, now: i64) -> (Vec<i64>, RateFold, Vec<Snapshot>) {
        while let Some(&end) = self.ends.get(self.snapshots.len()) {
            self.fold.expire_until(end);
            self.snapshots.push(self.fold.snapshot());
        }
        self.fold.expire_until(now);
        self.snapshots.push(self.fold.snapshot());
        (self.starts, self.fold, self.snapshots)
    }
}

/// One line of a consent chart: all people, or those of one jurisdiction.
#[derive(Debug, Clone)]
pub struct RateSeries {
    pub label: String,
    pub class: &'static str,
    /// One per day of [`ConsentRates::days`]; the last is now.
    pub daily: Vec<Rate>,
}

impl RateSeries {
    pub fn now(&self) -> Rate {
        self.daily.last().copied().unwrap_or_default()
    }

    /// The first day charted.
    pub fn start(&self) -> Rate {
        self.daily.first().copied().unwrap_or_default()
    }
}

/// The consent rates of one purpose.
#[derive(Debug, Clone)]
pub struct PurposeRates {
    pub key: String,
    pub name: String,
    pub series: Vec<RateSeries>,
    pub chart: LineChart,
    /// The chart in one sentence, for screen readers.
    pub summary: String,
}

impl PurposeRates {
    /// The chart's numbers as table rows: each day with every line's rate that day.
    pub fn rows(&self, days: &[String]) -> Vec<(String, Vec<String>)> {
        days.iter()
            .enumerate()
            .map(|(index, day)| {
                let cells = self
                    .series
                    .iter()
                    .map(|line| line.daily.get(index).copied().unwrap_or_default().in_words())
                    .collect();
                (day.clone(), cells)
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct ConsentRates {
    /// The days charted, oldest first (`3 Nov`); the last is today, up to now.
    pub days: Vec<String>,
    /// Purposes that ask for consent, in catalog order.
    pub purposes: Vec<PurposeRates>,
    /// Ledger entries read.
    pub entries: u64,
}

/// A day as the charts label it: `3 Nov`.
pub fn day_label(millis: i64) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    match time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000)) {
        Ok(at) => format!("{} {}", at.day(), MONTHS[usize::from(u8::from(at.month())) - 1]),
        Err(_) => String::new(),
    }
}

/// Folds the whole ledger, a page at a time in time order, taking the counts at the end of each of
/// the last [`DAYS`] days (today's: now).
pub async fn consent_rates(
    store: &dyn Store,
    catalog: &Catalog,
    now: i64,
) -> Result<ConsentRates, StoreError> {
    let mut daily = Daily::new(now);
    let mut after = None;
    let mut entries = 0u64;
    loop {
        let page = store.consent_ledger(after.take(), LEDGER_PAGE).await?;
        for entry in &page {
            daily.push(entry);
        }
        entries += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == LEDGER_PAGE as usize => {
                after = Some((last.event.at, last.event.id.clone()));
            }
            _ => break,
        }
    }
    let (starts, fold, snapshots) = daily.finish(now);

    let days: Vec<String> = starts.iter().map(|start| day_label(*start)).collect();
    let purposes = catalog
        .purposes()
        .iter()
        .filter(|purpose| !purpose.is_essential())
        .map(|purpose| {
            let index = fold.purpose_index(&purpose.key);
            let daily_of = |jurisdiction: Option<usize>| -> Vec<Rate> {
                snapshots
                    .iter()
                    .map(|snapshot| {
                        let mut rate = Rate::default();
                        for (&(p, j), count) in snapshot {
                            if Some(p) == index && jurisdiction.is_none_or(|wanted| wanted == j) {
                                rate.add(*count);
                            }
                        }
                        rate
                    })
                    .collect()
            };
            // Jurisdictions seen for this purpose: the catalog's first, then others, unknown last.
            let mut seen: Vec<usize> = (0..fold.jurisdictions.len())
                .filter(|&j| {
                    snapshots
                        .iter()
                        .any(|s| index.is_some_and(|p| s.get(&(p, j)).is_some_and(|r| r.people > 0)))
                })
                .collect();
            let rank = |j: &usize| match &fold.jurisdictions[*j] {
                Some(key) => (catalog.jurisdiction_index(key).unwrap_or(usize::MAX - 1), key.clone()),
                None => (usize::MAX, String::new()),
            };
            seen.sort_by_key(rank);
            let mut labelled = vec![("All people".to_owned(), daily_of(None))];
            for j in seen {
                labelled
                    .push((jurisdiction_name(catalog, fold.jurisdictions[j].as_deref()), daily_of(Some(j))));
            }
            let series: Vec<RateSeries> = labelled
                .into_iter()
                .enumerate()
                .map(|(number, (label, daily))| RateSeries {
                    label,
                    class: chart::SERIES_CLASSES[number % chart::SERIES_CLASSES.len()],
                    daily,
                })
                .collect();
            let values: Vec<(String, Vec<Option<f64>>)> = series
                .iter()
                .map(|s| (s.label.clone(), s.daily.iter().map(|rate| rate.percent()).collect()))
                .collect();
            let chart = chart::percent_lines(&days, &values, 7);
            let summary = rates_summary(&purpose.name, &series, &days);
            PurposeRates { key: purpose.key.clone(), name: purpose.name.clone(), series, chart, summary }
        })
        .collect();
    Ok(ConsentRates { days, purposes, entries })
}

/// A chart of rates in one sentence: where each line stands now and where it started.
fn rates_summary(name: &str, series: &[RateSeries], days: &[String]) -> String {
    let mut parts = Vec::new();
    for line in series {
        let first = line.daily.iter().position(|rate| rate.people > 0);
        let text = match first {
            None => format!("{}: no signal", line.label),
            Some(first) if first + 1 == line.daily.len() => {
                format!("{}: {} now", line.label, line.now().in_words())
            }
            Some(first) => format!(
                "{}: {} now, {} on {}",
                line.label,
                line.now().in_words(),
                line.daily[first].in_words(),
                days.get(first).map_or("", String::as_str)
            ),
        };
        parts.push(text);
    }
    format!(
        "Share of people who said yes to {name}, day by day over {} days. {}.",
        days.len(),
        parts.join("; ")
    )
}

// ---- Requests ------------------------------------------------------------------------------------

/// A request as the queue lists it.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub status_code: &'static str,
    /// `sub_…`, or a dash when the person is not known (self-service from an unknown address).
    pub subject: String,
    pub source: String,
    pub received_at: String,
    pub due_at: String,
    /// `in 12 days`, `today`, `3 days overdue`.
    pub due_in_words: String,
    pub overdue: bool,
    pub extended: Option<String>,
    pub completed_at: Option<String>,
    /// Finished by its deadline.
    pub on_time: bool,
    pub deliveries: Vec<DeliveryCell>,
}

/// Where one destination stands with a request.
#[derive(Debug, Clone)]
pub struct DeliveryCell {
    pub destination: String,
    pub message: String,
    pub status: &'static str,
    pub status_code: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub acknowledged_at: Option<String>,
}

pub fn kind_in_words(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Access => "Access",
        RequestKind::Export => "Export (portability)",
        RequestKind::Rectify => "Rectification",
        RequestKind::Restrict => "Restriction",
        RequestKind::Unrestrict => "Lift a restriction",
        RequestKind::Object => "Objection",
        RequestKind::Erase => "Erasure",
        RequestKind::Suppress => "Suppression",
        RequestKind::Unsuppress => "Lift a suppression",
    }
}

pub fn status_in_words(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Received => "Received",
        RequestStatus::Verifying => "Waiting for the person's code",
        RequestStatus::Running => "Running",
        RequestStatus::WaitingOnDestinations => "Waiting on destinations",
        RequestStatus::Completed => "Completed",
        RequestStatus::PartiallyCompleted => "Partially completed (a destination never confirmed)",
        RequestStatus::Failed => "Failed",
    }
}

fn source_in_words(source: &str) -> String {
    match source {
        "api" => "API".into(),
        "cli" => "CLI".into(),
        "self_service" => "Self-service (verified by code)".into(),
        "preference_center" => "Preference center".into(),
        other => other.to_owned(),
    }
}

fn delivery_status_in_words(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Acknowledged => "acknowledged",
        DeliveryStatus::GaveUp => "gave up (never confirmed)",
    }
}

/// Days until `due` in words, from `now`.
pub fn due_in_words(due: i64, now: i64) -> String {
    if due < now {
        // Late by part of a day is late by a day.
        let late = (now - due).saturating_add(DAY_MS - 1) / DAY_MS;
        return if late == 1 { "1 day overdue".into() } else { format!("{late} days overdue") };
    }
    // Part of a day left is a day left: a deadline 30 days out reads "in 30 days".
    match (due - now).saturating_add(DAY_MS - 1) / DAY_MS {
        0 => "due now".into(),
        1 => "in 1 day".into(),
        days => format!("in {days} days"),
    }
}

pub fn delivery_cell(catalog: &Catalog, delivery: &DeliveryRecord) -> DeliveryCell {
    DeliveryCell {
        destination: catalog
            .destination(&delivery.destination)
            .map_or_else(|| delivery.destination.clone(), |d| d.name.clone()),
        message: delivery.message.clone(),
        status: delivery_status_in_words(delivery.status),
        status_code: delivery.status.as_str(),
        attempts: delivery.attempts,
        last_error: delivery.last_error.clone(),
        acknowledged_at: delivery.acknowledged_at.map(format_time),
    }
}

pub fn queue_row(
    catalog: &Catalog,
    record: &RequestRecord,
    deliveries: &[DeliveryRecord],
    now: i64,
) -> QueueRow {
    let finished = record.status.is_final();
    QueueRow {
        id: record.id.clone(),
        kind: kind_in_words(record.kind),
        status: status_in_words(record.status),
        status_code: record.status.as_str(),
        subject: record.subject.clone().unwrap_or_else(|| "—".to_owned()),
        source: source_in_words(&record.source),
        received_at: format_time(record.received_at),
        due_at: format_time(record.due_at),
        due_in_words: due_in_words(record.due_at, now),
        overdue: !finished && record.due_at < now,
        extended: record.extension_reason.clone(),
        completed_at: record.completed_at.map(format_time),
        on_time: record.completed_at.is_some_and(|done| done <= record.due_at),
        deliveries: deliveries.iter().map(|delivery| delivery_cell(catalog, delivery)).collect(),
    }
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub open: Vec<QueueRow>,
    pub overdue: usize,
    /// More open requests exist than shown.
    pub more_open: bool,
    pub finished: Vec<QueueRow>,
}

/// Open requests, soonest deadline first, with each destination's answer; then recent finished ones.
pub async fn queue(state: &AppState, now: i64) -> Result<Queue, StoreError> {
    let open_records = state.store.open_requests(QUEUE_LIMIT + 1).await?;
    let more_open = open_records.len() > QUEUE_LIMIT as usize;
    let mut open = Vec::new();
    for record in open_records.iter().take(QUEUE_LIMIT as usize) {
        let deliveries = state.store.deliveries(&record.id).await?;
        open.push(queue_row(&state.catalog, record, &deliveries, now));
    }
    let mut finished = Vec::new();
    for record in
        state.store.requests(None, 100).await?.iter().filter(|r| r.status.is_final()).take(FINISHED_SHOWN)
    {
        let deliveries = state.store.deliveries(&record.id).await?;
        finished.push(queue_row(&state.catalog, record, &deliveries, now));
    }
    Ok(Queue { overdue: open.iter().filter(|row| row.overdue).count(), open, more_open, finished })
}

// ---- Audit log -----------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct AuditState {
    pub intact: bool,
    pub entries: u64,
    pub first_bad_entry: Option<String>,
    pub problems: Vec<String>,
    /// Signed checkpoints the log was checked against.
    pub checked_against: usize,
    pub latest: Option<CheckpointView>,
    /// Entries written since the latest checkpoint.
    pub since_latest: u64,
}

#[derive(Debug, Clone)]
pub struct CheckpointView {
    pub at: String,
    pub size: u64,
    /// The first 16 hex digits of the Merkle root.
    pub root_prefix: String,
    pub key_id: String,
}

/// The log checked as `GET /v1/audit/verify` checks it, with its latest signed checkpoint.
pub async fn audit_state(state: &AppState) -> Result<AuditState, StoreError> {
    let report =
        tactful_store::audit::verify(state.store.as_ref(), &[state.vault.public_key()], Vec::new()).await?;
    let latest = state.store.audit_checkpoints().await?.into_iter().max_by_key(|c| (c.size, c.at));
    Ok(AuditState {
        intact: report.ok(),
        entries: report.entries,
        first_bad_entry: report.first_bad_entry_in_words(),
        problems: report.problems.iter().map(|problem| problem.describe()).collect(),
        checked_against: report.checkpoints,
        since_latest: report.entries.saturating_sub(latest.as_ref().map_or(0, |c| c.size)),
        latest: latest.map(|c| CheckpointView {
            at: format_time(c.at),
            size: c.size,
            root_prefix: c.root.chars().take(16).collect(),
            key_id: c.key_id,
        }),
    })
}

// ---- Minimization --------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct DropRow {
    pub source: String,
    pub path: String,
    pub reason: &'static str,
    pub reason_code: &'static str,
    pub count: u64,
    pub last_seen: String,
}

pub fn reason_in_words(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Undeclared => "not declared in the catalog",
        DropReason::SensitiveNotAllowed => "sensitive, and this source may not send sensitive data",
        DropReason::UndeclaredEvent => "event not in the tracking plan (the whole event was dropped)",
        DropReason::NotPermitted => "none of its purposes was allowed for that person then",
    }
}

/// Everything dropped at the door, most often dropped first.
pub async fn drops(state: &AppState) -> Result<Vec<DropRow>, StoreError> {
    let mut counts = state.store.drop_counts().await?;
    counts
        .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| (&a.source, &a.path).cmp(&(&b.source, &b.path))));
    Ok(counts
        .into_iter()
        .map(|count| DropRow {
            source: state
                .catalog
                .source_by_key(&count.source)
                .map_or_else(|| count.source.clone(), |source| source.name.clone()),
            path: count.path,
            reason: reason_in_words(count.reason),
            reason_code: count.reason.as_str(),
            count: count.count,
            last_seen: format_time(count.last_seen),
        })
        .collect())
}

// ---- Recommendations -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ModelView {
    pub purpose: String,
    pub people: u32,
    pub items: usize,
    pub items_with_neighbours: usize,
    /// Items with neighbours, of all items, in percent.
    pub coverage: String,
    pub pairs_released: usize,
    pub min_support: u32,
    pub cap: usize,
    pub epsilon: Option<String>,
    pub released_at: Option<String>,
}

/// This instance's model as it serves now, if the catalog declares personalization.
pub fn model(state: &AppState) -> Option<ModelView> {
    let engine = state.personalization.as_ref()?;
    let info = engine.info_now();
    Some(ModelView {
        purpose: purpose_name(&state.catalog, &engine.settings.purpose),
        people: info.people,
        items: info.items,
        items_with_neighbours: info.items_with_neighbours,
        coverage: if info.items == 0 {
            "—".to_owned()
        } else {
            format!("{:.0}%", info.items_with_neighbours as f64 * 100.0 / info.items as f64)
        },
        pairs_released: info.pairs_released,
        min_support: info.min_support,
        cap: info.cap,
        epsilon: info.epsilon.map(|e| format!("{e}")),
        released_at: (info.released_at > 0).then(|| format_time(info.released_at)),
    })
}

// ---- Analytics budgets ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct BudgetRow {
    pub dataset: String,
    pub description: String,
    pub k: u32,
    /// ε per period, when answers carry noise.
    pub limit: Option<f64>,
    pub spent: f64,
    pub period_days: u32,
    pub period_start: String,
    pub period_end: String,
    /// Earlier periods: start and ε spent, newest first.
    pub earlier: Vec<(String, f64)>,
}

#[derive(Debug, Clone)]
pub struct Budgets {
    pub rows: Vec<BudgetRow>,
    pub chart: Option<BarChart>,
}

/// A number of ε as people read it: `2.5`, `10`, `0.000001`.
fn epsilon_text(value: f64) -> String {
    let text = format!("{value:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Each dataset's ε spent this period against its budget, from the store's budget rows.
pub async fn budgets(state: &AppState, now: i64) -> Result<Budgets, StoreError> {
    let Some(analytics) = state.catalog.analytics() else {
        return Ok(Budgets { rows: Vec::new(), chart: None });
    };
    let spends = state.store.budgets().await?;
    let rows: Vec<BudgetRow> = analytics
        .datasets
        .iter()
        .map(|dataset| {
            let start = crate::insights::period_start(dataset, now);
            let mine = spends.iter().filter(|(key, _, _)| *key == dataset.key);
            let spent = mine
                .clone()
                .filter(|(_, period, _)| *period == start)
                .map(|(_, _, micro)| *micro)
                .sum::<i64>();
            let mut earlier: Vec<(String, f64)> = mine
                .filter(|(_, period, _)| *period < start)
                .map(|(_, period, micro)| (format_time(*period), *micro as f64 / crate::insights::MICRO))
                .collect();
            earlier.reverse();
            earlier.truncate(6);
            BudgetRow {
                dataset: dataset.key.clone(),
                description: dataset.description.clone().unwrap_or_default(),
                k: dataset.k,
                limit: dataset.epsilon,
                spent: spent as f64 / crate::insights::MICRO,
                period_days: dataset.period.as_days(),
                period_start: format_time(start),
                period_end: format_time(start + dataset.period.as_millis()),
                earlier,
            }
        })
        .collect();
    let bars: Vec<(String, f64, f64, String)> = rows
        .iter()
        .filter_map(|row| {
            let limit = row.limit?;
            Some((
                row.dataset.clone(),
                row.spent,
                limit,
                format!("ε {} of {} spent", epsilon_text(row.spent), epsilon_text(limit)),
            ))
        })
        .collect();
    let chart = (!bars.is_empty()).then(|| chart::used_of_whole(&bars));
    Ok(Budgets { rows, chart })
}

pub fn epsilon(value: &f64) -> String {
    epsilon_text(*value)
}

#[cfg(test)]
mod tests {
    use tactful_domain::consent::{ConsentEvent, ConsentMethod};

    use super::*;

    fn entry(
        subject: &str,
        purpose: &str,
        kind: ConsentKind,
        at: i64,
        jurisdiction: Option<&str>,
    ) -> LedgerEntry {
        LedgerEntry {
            subject: subject.into(),
            event: ConsentEvent {
                id: format!("ce_{subject}_{at}"),
                purpose: purpose.into(),
                kind,
                method: ConsentMethod::Api,
                at,
                expires_at: None,
                version: 1,
                source: None,
                jurisdiction: jurisdiction.map(str::to_owned),
            },
        }
    }

    /// The rate of `purpose` (in `jurisdiction`, or all) after folding `entries` and expiring at `at`.
    fn check(
        entries: &[LedgerEntry],
        at: i64,
        purpose: &str,
        jurisdiction: Option<Option<&str>>,
        expected: (u64, u64),
    ) {
        let mut fold = RateFold::default();
        for entry in entries {
            fold.apply(entry);
        }
        fold.expire_until(at);
        let p = fold.purpose_index(purpose);
        let mut rate = Rate::default();
        for ((pi, ji), count) in fold.snapshot() {
            let j = fold.jurisdictions[ji].as_deref();
            if Some(pi) == p && jurisdiction.is_none_or(|wanted| wanted == j) {
                rate.add(count);
            }
        }
        assert_eq!((rate.yes, rate.people), expected, "{entries:#?}");
    }

    const EMAIL: &str = "marketing.communications.email";

    #[test]
    fn each_person_counts_once_by_their_latest_word() {
        use ConsentKind::*;
        let eu = Some("eu");
        check(&[], 0, EMAIL, None, (0, 0));
        check(&[entry("a", EMAIL, Given, 1, eu)], 1, EMAIL, None, (1, 1));
        check(
            &[entry("a", EMAIL, Given, 1, eu), entry("a", EMAIL, Withdrawn, 2, eu)],
            2,
            EMAIL,
            None,
            (0, 1),
        );
        check(
            &[
                entry("a", EMAIL, Withdrawn, 1, eu),
                entry("a", EMAIL, Renewed, 2, eu),
                entry("b", EMAIL, Expired, 3, eu),
            ],
            3,
            EMAIL,
            None,
            (1, 2),
        );
        // Another purpose does not count here.
        check(&[entry("a", "personalize.content", Given, 1, eu)], 1, EMAIL, None, (0, 0));
    }

    #[test]
    fn a_person_counts_under_the_jurisdiction_of_their_latest_signal() {
        use ConsentKind::*;
        let moved = [entry("a", EMAIL, Given, 1, Some("eu")), entry("a", EMAIL, Given, 2, Some("us-ca"))];
        check(&moved, 2, EMAIL, Some(Some("eu")), (0, 0));
        check(&moved, 2, EMAIL, Some(Some("us-ca")), (1, 1));
        check(&[entry("a", EMAIL, Given, 1, None)], 1, EMAIL, Some(None), (1, 1));
    }

    #[test]
    fn consent_stops_counting_as_yes_when_it_expires() {
        let mut given = entry("a", EMAIL, ConsentKind::Given, 1, None);
        given.event.expires_at = Some(100);
        check(std::slice::from_ref(&given), 99, EMAIL, None, (1, 1));
        check(std::slice::from_ref(&given), 100, EMAIL, None, (0, 1));
        // Renewed before the old expiry: the old expiry no longer applies.
        let renewed = entry("a", EMAIL, ConsentKind::Renewed, 50, None);
        check(&[given, renewed], 1_000, EMAIL, None, (1, 1));
    }

    #[test]
    fn each_day_shows_the_counts_at_its_end() {
        use ConsentKind::*;
        let now = 100 * DAY_MS + 3_600_000;
        let day = |ago: i64, hour: i64| now - now.rem_euclid(DAY_MS) - ago * DAY_MS + hour * 3_600_000;
        let mut expiring = entry("c", EMAIL, Given, day(3, 1), None);
        expiring.event.expires_at = Some(day(1, 12));
        let ledger = [
            entry("old", EMAIL, Given, day(60, 0), None),
            entry("a", EMAIL, Given, day(5, 10), None),
            expiring,
            entry("a", EMAIL, Withdrawn, day(2, 23), None),
            entry("b", EMAIL, Given, day(0, 0), None),
        ];
        let mut daily = Daily::new(now);
        for entry in &ledger {
            daily.push(entry);
        }
        let (starts, fold, snapshots) = daily.finish(now);
        assert_eq!((starts.len(), snapshots.len()), (DAYS, DAYS));
        assert_eq!(starts[DAYS - 1], day(0, 0), "the last day is today");
        let p = fold.purpose_index(EMAIL).unwrap();
        let rate = |ago: usize| snapshots[DAYS - 1 - ago].get(&(p, 0)).map(|r| (r.yes, r.people));
        assert_eq!(rate(29), Some((1, 1)), "someone from before the window counts from its start");
        assert_eq!(rate(5), Some((2, 2)));
        assert_eq!(rate(3), Some((3, 3)));
        assert_eq!(rate(2), Some((2, 3)), "a changed their mind late that day");
        assert_eq!(rate(1), Some((1, 3)), "c's consent ran out at noon");
        assert_eq!(rate(0), Some((2, 4)), "today, up to now");
    }

    #[test]
    fn rates_read_plainly() {
        assert_eq!(Rate { yes: 31, people: 50 }.in_words(), "62% (31 of 50)");
        assert_eq!(Rate::default().in_words(), "no signal");
        assert_eq!(Rate::default().percent(), None);
    }

    #[test]
    fn deadlines_read_plainly() {
        let now = 10 * DAY_MS;
        assert_eq!(due_in_words(now + 12 * DAY_MS, now), "in 12 days");
        assert_eq!(due_in_words(now + 30 * DAY_MS - 5, now), "in 30 days");
        assert_eq!(due_in_words(now + DAY_MS, now), "in 1 day");
        assert_eq!(due_in_words(now + 5, now), "in 1 day");
        assert_eq!(due_in_words(now, now), "due now");
        assert_eq!(due_in_words(now - 5, now), "1 day overdue");
        assert_eq!(due_in_words(now - 3 * DAY_MS, now), "3 days overdue");
    }

    #[test]
    fn days_and_epsilons_read_plainly() {
        assert_eq!(day_label(0), "1 Jan");
        assert_eq!(day_label(1_794_000_000_000), "6 Nov");
        assert_eq!(epsilon_text(2.5), "2.5");
        assert_eq!(epsilon_text(10.0), "10");
        assert_eq!(epsilon_text(0.000_001), "0.000001");
    }
}
