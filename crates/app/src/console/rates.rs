//! Consent rates over time: the ledger folded day by day into people per purpose and
//! jurisdiction who say yes, charted for the console.

use super::*;

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
                verified: true,
                provenance: None,
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
        assert_eq!(super::state::epsilon_text(2.5), "2.5");
        assert_eq!(super::state::epsilon_text(10.0), "10");
        assert_eq!(super::state::epsilon_text(0.000_001), "0.000001");
    }
}
