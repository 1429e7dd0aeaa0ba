//! Reading a query's window: pages of envelopes (and records, when a property is asked for) read
//! ahead while the last is tallied, each person judged once per query, group keys as numbers.

use super::*;

/// A person counted by a query: their lifecycle stage (if asked for) and, once a record of theirs
/// is opened, their family's keys.
struct Person {
    stage: u64,
    keys: Option<FamilyKeys>,
}

/// Reads a window page by page, asking for the next page before the current one is used, so the
/// store reads (on its own threads) while the caller tallies.
pub(crate) struct Pages {
    store: Arc<dyn tactful_store::Store>,
    window: (i64, i64),
    limit: u32,
    scan: Scan,
    next: Option<tokio::task::JoinHandle<Result<WindowPage, StoreError>>>,
}

impl Pages {
    pub(crate) fn new(app: &App, window: (i64, i64), limit: u32, scan: Scan) -> Pages {
        let mut pages = Pages { store: app.store.clone(), window, limit, scan, next: None };
        pages.fetch(None);
        pages
    }

    fn fetch(&mut self, after: Option<tactful_store::WindowCursor>) {
        let (store, (from, to), limit, scan) = (self.store.clone(), self.window, self.limit, self.scan);
        self.next =
            Some(tokio::spawn(async move { store.events_in_window(from, to, after, limit, scan).await }));
    }

    /// The next page, or `None` once the window is read.
    pub(crate) async fn next(&mut self) -> Result<Option<WindowPage>, StoreError> {
        let Some(task) = self.next.take() else { return Ok(None) };
        let page =
            task.await.map_err(|error| StoreError::Internal(format!("a window read failed: {error}")))??;
        if let Some(after) = page.next.clone() {
            self.fetch(Some(after));
        }
        Ok(Some(page))
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Some(task) = self.next.take() {
            task.abort();
        }
    }
}

/// The family keys of these roots, unwrapped: one bulk read for many families (erased ones left out).
pub(crate) async fn family_keys(
    app: &App,
    roots: Vec<String>,
) -> Result<Vec<(String, FamilyKeys)>, StoreError> {
    let wrapped = app.store.family_keys(roots).await?;
    wrapped.into_iter().map(|(root, members)| Ok((root, FamilyKeys::unwrap(&app.vault, &members)?))).collect()
}

/// Who a window's subjects are, each looked up once per scan: subject → family root, in bulk;
/// root → whether and as whom it counts (what `admit` says of its state), in bulk, once. A few
/// store calls per page, fewer as the scan goes on and most people have been met. Used by
/// queries and exports alike.
pub(crate) struct People<P> {
    subjects: hashbrown::HashMap<String, Option<u32>>,
    roots: hashbrown::HashMap<String, Option<u32>>,
    /// The people admitted, with their family roots, by number.
    pub(crate) admitted: Vec<(String, P)>,
    /// The person of each subject of the page met last (looked up once, as it was met).
    page: Vec<Option<u32>>,
}

impl<P> Default for People<P> {
    fn default() -> Self {
        People {
            subjects: Default::default(),
            roots: Default::default(),
            admitted: Vec::new(),
            page: Vec::new(),
        }
    }
}

impl<P> People<P> {
    /// Meets the page's subjects; for each family root not met yet, `admit` says whom it counts
    /// as, if at all. Returns the numbers of the people admitted by this call.
    pub(crate) async fn meet(
        &mut self,
        app: &App,
        page: &WindowPage,
        mut admit: impl FnMut(&SubjectState) -> Option<P>,
    ) -> Result<Vec<u32>, StoreError> {
        let unknown = self.look_up(page);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let roots: HashMap<String, String> = app
            .store
            .family_roots(unknown.iter().map(|(_, subject)| subject.clone()).collect())
            .await?
            .into_iter()
            .collect();
        let mut new_roots: Vec<String> =
            roots.values().filter(|r| !self.roots.contains_key(*r)).cloned().collect();
        new_roots.sort_unstable();
        new_roots.dedup();
        let mut admitted = Vec::new();
        if !new_roots.is_empty() {
            for found in app.store.subject_states(new_roots.clone()).await? {
                if let Some(person) = admit(&found) {
                    let number = u32::try_from(self.admitted.len()).unwrap_or(u32::MAX);
                    self.roots.insert(found.subject.clone(), Some(number));
                    self.admitted.push((found.subject, person));
                    admitted.push(number);
                }
            }
            // Unknown, erased, merged since, or not admitted: left out of this scan.
            for root in new_roots {
                self.roots.entry(root).or_insert(None);
            }
        }
        self.settle(unknown, &roots);
        Ok(admitted)
    }

    /// Looks each of the page's subjects up once (most were met on earlier pages): their people
    /// are kept for [`People::of_page`]; returns the subjects not met yet, with their positions.
    fn look_up(&mut self, page: &WindowPage) -> Vec<(usize, String)> {
        let mut persons = Vec::with_capacity(page.subjects.len());
        let mut unknown = Vec::new();
        for (at, subject) in page.subjects.iter().enumerate() {
            match self.subjects.get(subject.as_str()) {
                Some(person) => persons.push(*person),
                None => {
                    persons.push(None);
                    unknown.push((at, subject.clone()));
                }
            }
        }
        self.page = persons;
        unknown
    }

    /// Records whom the subjects met for the first time count as, through their family roots
    /// (`roots`: subject → root) once the roots are judged.
    fn settle(&mut self, unknown: Vec<(usize, String)>, roots: &HashMap<String, String>) {
        for (at, subject) in unknown {
            let person = roots.get(&subject).and_then(|root| self.roots.get(root).copied().flatten());
            if let Some(slot) = self.page.get_mut(at) {
                *slot = person;
            }
            self.subjects.insert(subject, person);
        }
    }

    /// The number of the person of each of the page's subjects, if they were admitted (`page` is
    /// the one met last).
    pub(crate) fn of_page(&mut self, page: &WindowPage) -> Vec<Option<u32>> {
        if self.page.len() == page.subjects.len() {
            return std::mem::take(&mut self.page);
        }
        page.subjects.iter().map(|s| self.subjects.get(s.as_str()).copied().flatten()).collect()
    }
}

/// Strings of group keys (event names, sources, property values), numbered once.
#[derive(Default)]
pub(super) struct Strings {
    numbers: hashbrown::HashMap<String, u64>,
    texts: Vec<String>,
}

impl Strings {
    fn number(&mut self, text: &str) -> u64 {
        if let Some(number) = self.numbers.get(text) {
            return *number;
        }
        let number = self.texts.len() as u64;
        self.texts.push(text.to_owned());
        self.numbers.insert(text.to_owned(), number);
        number
    }

    fn text(&self, number: u64) -> String {
        usize::try_from(number).ok().and_then(|at| self.texts.get(at)).cloned().unwrap_or_default()
    }
}

/// A group key as numbers, one per dimension (at most 4): strings by their number, days and weeks
/// by their count since 1970, stages by their place in [`Stage::ALL`]. Labels are made once per
/// group at the end, never per event.
type Parts = [u64; 4];

/// What a query counts as it goes, moved to the blocking pool for each page and back.
struct Counting {
    tally: Tally,
    people: People<Person>,
    strings: Strings,
    groups: hashbrown::HashMap<Parts, usize>,
    keys: Vec<Parts>,
}

/// What the counting of every page needs to know of the query.
struct Plan {
    catalog: Arc<tactful_domain::catalog::Catalog>,
    dimensions: Vec<Dimension>,
    measure: Option<PropertyId>,
}

/// Reads the window's events of people who permit the analytics purpose now and tallies them by
/// group: envelopes only (one covering index) unless a property is grouped by or measured. Store
/// reads are async; each page is counted, and the answer computed, on the blocking pool before
/// `deadline` (`too_slow` after it).
pub(super) async fn tally(
    app: &App,
    analytics: &Analytics,
    checked: &Checked<'_>,
    noise: Option<Noise>,
    deadline: Deadline,
) -> Result<Answer, AppError> {
    let catalog = &app.catalog;
    let purpose = catalog
        .purpose_index(&analytics.purpose)
        .ok_or_else(|| StoreError::Internal("undeclared analytics purpose".into()))?;
    // The properties whose values the query needs: each must be permitted for the person, and the
    // event is only opened when one is needed.
    let needed: Vec<PropertyId> = checked
        .dimensions
        .iter()
        .filter_map(|d| match d {
            Dimension::Property(p) => Some(*p),
            _ => None,
        })
        .chain(checked.measure)
        .collect();
    // Without a property, whether the person may be counted at all is judged on the purpose's
    // first property (consent, regime, restriction and "no personal data in analytics" all apply).
    let proxy = catalog
        .properties()
        .iter()
        .find(|p| p.purposes.iter().any(|k| k == &analytics.purpose))
        .map(|p| p.id);
    let judged: Vec<PropertyId> =
        if needed.is_empty() { proxy.into_iter().collect() } else { needed.clone() };
    let thresholds = match checked.dimensions.contains(&Dimension::Lifecycle) {
        true => Some(
            catalog
                .personalization()
                .map(|settings| crate::personalize::lifecycle_thresholds(&settings.lifecycle))
                .ok_or_else(|| StoreError::Internal("a lifecycle dimension without thresholds".into()))?,
        ),
        false => None,
    };
    let (scan, limit) = if needed.is_empty() {
        (Scan::Envelopes, ENVELOPES_PER_PAGE)
    } else {
        (Scan::Records, RECORDS_PER_PAGE)
    };
    let now = app.now();
    let plan = Arc::new(Plan {
        catalog: app.catalog.clone(),
        dimensions: checked.dimensions.clone(),
        measure: checked.measure,
    });
    let mut counting = Some(Counting {
        tally: Tally::new(checked.metric, noise).map_err(|e| invalid(e.to_string()))?,
        people: People::default(),
        strings: Strings::default(),
        groups: Default::default(),
        keys: Vec::new(),
    });
    let mut pages = Pages::new(app, (checked.from, checked.to), limit, scan);
    while let Some(page) = pages.next().await? {
        let Some(mut state) = counting.take() else { break };
        let admitted = state
            .people
            .meet(app, &page, |found| {
                let context = subject_context(app, found);
                let consents = app.policy.consents(&context, now);
                let counts = !judged.is_empty()
                    && judged.iter().all(|p| app.policy.decide(&context, &consents, *p, purpose).is_ok());
                counts.then_some(Person { stage: 0, keys: None })
            })
            .await?;
        let numbers: HashMap<String, u32> =
            admitted.iter().map(|n| (state.people.admitted[*n as usize].0.clone(), *n)).collect();
        if scan == Scan::Records && !numbers.is_empty() {
            for (root, keys) in family_keys(app, numbers.keys().cloned().collect()).await? {
                if let Some(number) = numbers.get(&root) {
                    state.people.admitted[*number as usize].1.keys = Some(keys);
                }
            }
        }
        if let Some(thresholds) = &thresholds
            && !numbers.is_empty()
        {
            let roots = numbers.keys().cloned().collect();
            for activity in app.store.family_activity(roots).await? {
                if let Some(number) = numbers.get(&activity.root) {
                    let stage = lifecycle::stage(Some(activity.first), Some(activity.last), now, thresholds);
                    state.people.admitted[*number as usize].1.stage = stage_number(stage);
                }
            }
        }
        let (plan, limits) = (plan.clone(), app.limits.clone());
        let (state, counted) = crate::work::blocking(deadline, move || {
            limits.probe("count");
            let counted = state.count(&page, &plan);
            (state, counted)
        })
        .await?;
        counted?;
        counting = Some(state);
    }
    let Some(state) = counting else { return Err(AppError::new(ErrorCode::Internal)) };
    let (plan, limits, k) = (plan.clone(), app.limits.clone(), checked.dataset.k);
    crate::work::blocking(deadline, move || {
        limits.probe("answer");
        let labels: Vec<Vec<String>> = state
            .keys
            .iter()
            .map(|parts| {
                plan.dimensions
                    .iter()
                    .zip(parts)
                    .map(|(dimension, part)| label(*dimension, *part, &state.strings))
                    .collect()
            })
            .collect();
        state.tally.answer(labels, k)
    })
    .await?
    .map_err(|e| invalid(e.to_string()))
}

impl Counting {
    /// Tallies one page's events of the people admitted.
    fn count(&mut self, page: &WindowPage, plan: &Plan) -> Result<(), StoreError> {
        let catalog = &plan.catalog;
        let persons = self.people.of_page(page);
        let names: Vec<u64> = page.names.iter().map(|n| self.strings.number(n)).collect();
        let sources: Vec<u64> = page.sources.iter().map(|s| self.strings.number(s)).collect();
        for event in &page.events {
            let Some(person) = persons.get(event.subject as usize).copied().flatten() else { continue };
            let record = match &event.sealed {
                Some((dedupe, sealed)) => {
                    // No keys: the family was erased since it was met.
                    let Some(keys) = &self.people.admitted[person as usize].1.keys else { continue };
                    match keys.open_record(page.subject(event), page.source(event), dedupe, sealed)? {
                        Value::Object(record) => Some(record),
                        _ => None,
                    }
                }
                None => None,
            };
            let mut key: Parts = [0; 4];
            let mut complete = true;
            for (part, dimension) in key.iter_mut().zip(&plan.dimensions) {
                *part = match dimension {
                    Dimension::Event => names.get(event.name as usize).copied().unwrap_or_default(),
                    Dimension::Source => sources.get(event.source as usize).copied().unwrap_or_default(),
                    Dimension::Day => day_number(event.timestamp) as u64,
                    Dimension::Week => week_number(event.timestamp) as u64,
                    Dimension::Lifecycle => self.people.admitted[person as usize].1.stage,
                    Dimension::Property(p) => {
                        match record.as_ref().and_then(|r| scalar(r, &catalog.property(*p).path)) {
                            Some(text) => self.strings.number(&text),
                            None => {
                                complete = false;
                                break;
                            }
                        }
                    }
                };
            }
            if !complete {
                continue;
            }
            let value = match plan.measure {
                Some(p) => match record.as_ref().and_then(|r| {
                    minimize::values_at(r, &catalog.property(p).path).first().and_then(|v| v.as_f64())
                }) {
                    Some(value) => Some(value),
                    None => continue,
                },
                None => None,
            };
            let keys = &mut self.keys;
            let group = *self.groups.entry(key).or_insert_with(|| {
                keys.push(key);
                keys.len() - 1
            });
            self.tally.add(u64::from(person), group, value);
        }
        Ok(())
    }
}

/// A group key part in words: what analysts read.
fn label(dimension: Dimension, part: u64, strings: &Strings) -> String {
    match dimension {
        Dimension::Event | Dimension::Source | Dimension::Property(_) => strings.text(part),
        Dimension::Day => day_label(part as i64),
        Dimension::Week => week_label(part as i64),
        Dimension::Lifecycle => usize::try_from(part)
            .ok()
            .and_then(|at| Stage::ALL.get(at))
            .map_or("unknown", |s| s.as_str())
            .to_owned(),
    }
}

fn stage_number(stage: Stage) -> u64 {
    Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0) as u64
}

/// A value to group by: strings and numbers as text; objects, arrays and nulls are not groupable.
fn scalar(record: &serde_json::Map<String, Value>, path: &str) -> Option<String> {
    match minimize::values_at(record, path).first()? {
        Value::String(text) => Some(text.chars().take(100).collect()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Days since 1970-01-01 (UTC).
fn day_number(at: i64) -> i64 {
    at.div_euclid(DAY_MS)
}

/// ISO weeks (Monday to Sunday) since the one holding 1970-01-01, a Thursday.
fn week_number(at: i64) -> i64 {
    (day_number(at) + 3).div_euclid(7)
}

/// `YYYY-MM-DD` of a day number.
fn day_label(day: i64) -> String {
    format_time(day.saturating_mul(DAY_MS)).get(..10).unwrap_or_default().to_owned()
}

/// `YYYY-Www` of a week number: the ISO year and week of its Thursday (day `7 · week`).
fn week_label(week: i64) -> String {
    OffsetDateTime::from_unix_timestamp(week.saturating_mul(7 * 86_400))
        .map(|thursday| {
            let (year, week, _) = thursday.to_iso_week_date();
            format!("{year}-W{week:02}")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_weeks_from_numbers_name_what_the_calendar_says() {
        // Around year ends (ISO years that start early or late), leap days, and before 1970.
        let times = [
            "1969-12-28T23:59:59Z",
            "1969-12-29T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "2020-02-29T12:00:00Z",
            "2020-12-31T23:59:59Z",
            "2021-01-03T10:00:00Z",
            "2021-01-04T00:00:00Z",
            "2024-12-30T08:00:00Z",
            "2026-11-22T23:59:59Z",
            "2027-01-01T00:00:00Z",
        ];
        for text in times {
            let at = parse_time(text).unwrap();
            assert_eq!(day_label(day_number(at)), text[..10], "{text}");
            let (year, week, _) =
                OffsetDateTime::from_unix_timestamp(at.div_euclid(1000)).unwrap().to_iso_week_date();
            assert_eq!(week_label(week_number(at)), format!("{year}-W{week:02}"), "{text}");
        }
        assert_eq!(week_label(week_number(parse_time("2021-01-03T10:00:00Z").unwrap())), "2020-W53");
        assert_eq!(week_label(week_number(parse_time("2024-12-30T08:00:00Z").unwrap())), "2025-W01");
    }

    #[test]
    fn each_subject_of_a_page_is_its_person_whether_met_on_this_page_or_an_earlier_one() {
        let page = |subjects: &[&str]| WindowPage {
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            ..WindowPage::default()
        };
        let mut people = People::<()>::default();
        // Ann (person 0) and Bob (whose family root Cy is not admitted) on the first page; Dee, a
        // member of Ann's family, first met on the second.
        people.roots.insert("ann".into(), Some(0));
        people.roots.insert("cy".into(), None);
        let roots: HashMap<String, String> =
            [("ann", "ann"), ("bob", "cy"), ("dee", "ann")].map(|(s, r)| (s.into(), r.into())).into();
        let first = page(&["ann", "bob"]);
        let unknown = people.look_up(&first);
        assert_eq!(unknown.len(), 2);
        people.settle(unknown, &roots);
        assert_eq!(people.of_page(&first), [Some(0), None]);
        let second = page(&["bob", "eve", "dee", "ann"]);
        let unknown = people.look_up(&second);
        assert_eq!(unknown, [(1, "eve".to_owned()), (2, "dee".to_owned())]);
        people.settle(unknown, &roots);
        assert_eq!(people.of_page(&second), [None, None, Some(0), Some(0)]);
    }

    #[test]
    fn stages_are_numbered_and_named_back() {
        let strings = Strings::default();
        for stage in Stage::ALL {
            assert_eq!(label(Dimension::Lifecycle, stage_number(stage), &strings), stage.as_str());
        }
    }
}
