//! Serving: a released model, the brand's catalogue and, only when the person permits
//! personalization, their own history and declared interests at request time (the
//! McSherry–Mironov split: what is shared is released, what is personal never leaves the request).
//! Every item comes back with the reason it was chosen.

use hashbrown::{HashMap, HashSet};

use crate::release::Release;
use crate::{Config, ItemIx, Touch};

/// What recommendations need to know about an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInfo {
    pub id: String,
    pub categories: Vec<String>,
    /// Health, pregnancy, …: never recommended from inferred behaviour.
    pub sensitive: bool,
    pub available: bool,
    /// Minor units.
    pub price: Option<i64>,
    /// In the brand's catalogue (items only seen in events are not, and are never recommended).
    pub known: bool,
}

/// The brand's items, interned to dense indices that models use.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    items: Vec<ItemInfo>,
    index: HashMap<String, ItemIx>,
    by_category: HashMap<String, Vec<ItemIx>>,
}

impl Catalogue {
    /// The index of an item, adding it as not (yet) known if new.
    pub fn intern(&mut self, id: &str) -> ItemIx {
        if let Some(ix) = self.index.get(id) {
            return *ix;
        }
        let ix = self.items.len() as ItemIx;
        self.items.push(ItemInfo {
            id: id.to_owned(),
            categories: Vec::new(),
            sensitive: false,
            available: false,
            price: None,
            known: false,
        });
        self.index.insert(id.to_owned(), ix);
        ix
    }

    /// Adds or replaces an item's description (it becomes known).
    pub fn upsert(&mut self, info: ItemInfo) -> ItemIx {
        let ix = self.intern(&info.id);
        for category in &self.items[ix as usize].categories {
            if let Some(members) = self.by_category.get_mut(category) {
                members.retain(|m| *m != ix);
            }
        }
        for category in &info.categories {
            let members = self.by_category.entry(category.clone()).or_default();
            if let Err(at) = members.binary_search(&ix) {
                members.insert(at, ix);
            }
        }
        self.items[ix as usize] = ItemInfo { known: true, ..info };
        ix
    }

    pub fn get(&self, id: &str) -> Option<ItemIx> {
        self.index.get(id).copied()
    }

    /// A known item's index.
    pub fn known(&self, id: &str) -> Option<ItemIx> {
        self.get(id).filter(|ix| self.items[*ix as usize].known)
    }

    pub fn info(&self, item: ItemIx) -> &ItemInfo {
        &self.items[item as usize]
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items in a category, in index order.
    pub fn in_category(&self, category: &str) -> &[ItemIx] {
        self.by_category.get(category).map_or(&[], Vec::as_slice)
    }

    /// The categories of known items, each with whether any item in it is sensitive: the topics a
    /// person can say they like.
    pub fn topics(&self) -> Vec<(String, bool)> {
        let mut topics: Vec<(String, bool)> = self
            .by_category
            .iter()
            .filter(|(_, members)| members.iter().any(|ix| self.items[*ix as usize].known))
            .map(|(category, members)| {
                (category.clone(), members.iter().any(|ix| self.items[*ix as usize].sensitive))
            })
            .collect();
        topics.sort();
        topics
    }

    /// Known items.
    pub fn known_count(&self) -> usize {
        self.items.iter().filter(|i| i.known).count()
    }
}

/// Why an item was recommended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// People who had this item also had `item`, which the person had.
    BecauseYouViewed { item: ItemIx },
    /// In a topic the person told the brand they like.
    YouToldUs { interest: String },
    /// Among the most wanted in `category` (or overall) over the last `window_days`.
    Popular { category: Option<String>, window_days: u32 },
    /// Wanted faster this last `window_days` than before.
    Trending { window_days: u32 },
    /// People who had `item` (the one being looked at) also had this.
    SimilarTo { item: ItemIx },
}

/// A recommended item, its score (only comparable within one answer) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub item: ItemIx,
    pub score: f32,
    pub reason: Reason,
}

/// Business filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only items in one of these categories (none: any).
    pub categories: Vec<String>,
    /// Also items out of stock.
    pub include_unavailable: bool,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// Items not to show (already shown, in the basket, …).
    pub exclude: Vec<ItemIx>,
}

/// One request for recommendations.
#[derive(Debug, Clone, Default)]
pub struct Ask<'a> {
    /// The person's own items (strongest or most recent first), only when they permit personalization.
    pub history: &'a [Touch],
    /// Topics (categories) the person declared, only when they permit personalization.
    pub interests: &'a [String],
    /// The item being looked at, if any.
    pub context: Option<ItemIx>,
    pub filter: Filter,
    pub n: usize,
    pub offset: usize,
}

/// History items used in the personal step (most recent first).
const HISTORY_USED: usize = 30;

/// Ranks items for one person (or anonymous visitor) from a released model.
pub fn recommend(
    release: &Release,
    catalogue: &Catalogue,
    config: &Config,
    ask: &Ask<'_>,
) -> Vec<Recommendation> {
    let wanted = ask.offset + ask.n;
    if ask.n == 0 {
        return Vec::new();
    }
    let mut ranking = Ranking::new(catalogue, ask);
    let strongest =
        f32::from(config.weights.purchase.max(config.weights.add_to_cart).max(config.weights.view).max(1));

    // The personal step: the person's recent items through released neighbours.
    let mut recent: Vec<Touch> = ask.history.to_vec();
    recent.sort_unstable_by(|a, b| b.at.cmp(&a.at).then(b.weight.cmp(&a.weight)));
    for (position, touch) in recent.iter().take(HISTORY_USED).enumerate() {
        let strength = f32::from(touch.weight) / strongest / (1.0 + 0.1 * position as f32);
        for &(item, similarity) in release.neighbours(touch.item) {
            ranking.offer(item, strength * similarity, Reason::BecauseYouViewed { item: touch.item });
        }
    }
    // The item being looked at.
    if let Some(context) = ask.context {
        for &(item, similarity) in release.neighbours(context) {
            ranking.offer(item, 1.5 * similarity, Reason::SimilarTo { item: context });
        }
    }
    // Declared interests: the topic's most popular items that pass (they lead the answer; see
    // `Ranking::finish`).
    for interest in ask.interests {
        let mut members: Vec<ItemIx> = catalogue.in_category(interest).to_vec();
        members.sort_by_key(|m| (release.popular_rank(*m).unwrap_or(usize::MAX), *m));
        members.retain(|m| ranking.passes(*m));
        for item in members.into_iter().take(wanted * 2) {
            ranking.offer(item, 1.0, Reason::YouToldUs { interest: interest.clone() });
        }
    }
    // For everyone: what is rising (a real rise leads the page), then what is popular (in the asked
    // category, or around the item being looked at, or overall).
    let window = config.trending_days;
    ranking
        .offer_list(release.trending(), wanted * 2, 0.07, 1.0, |_| Reason::Trending { window_days: window });
    let scope = match (ask.filter.categories.as_slice(), ask.context) {
        ([one], _) => Some(one.clone()),
        ([], Some(context)) => catalogue.info(context).categories.first().cloned(),
        _ => None,
    };
    if let Some(category) = scope.clone().filter(|_| ask.filter.categories.is_empty()) {
        let in_scope = popular_in(release, catalogue, &category);
        let days = config.popular_days;
        ranking.offer_list(&in_scope, wanted * 2, 0.065, 0.1, |_| Reason::Popular {
            category: Some(category.clone()),
            window_days: days,
        });
    }
    let days = config.popular_days;
    ranking.offer_list(release.popular(), wanted * 2, 0.06, 0.1, |_| Reason::Popular {
        category: scope.clone().filter(|_| !ask.filter.categories.is_empty()),
        window_days: days,
    });

    ranking.finish(release, ask)
}

/// Items like `item` ("also viewed / also bought"), then popular items of its category.
pub fn similar(
    release: &Release,
    catalogue: &Catalogue,
    config: &Config,
    item: ItemIx,
    filter: Filter,
    n: usize,
    offset: usize,
) -> Vec<Recommendation> {
    let ask = Ask { context: Some(item), filter, n, offset, ..Ask::default() };
    let mut ranking = Ranking::new(catalogue, &ask);
    for &(other, similarity) in release.neighbours(item) {
        ranking.offer(other, similarity, Reason::SimilarTo { item });
    }
    if let Some(category) = catalogue.info(item).categories.first() {
        let in_scope = popular_in(release, catalogue, category);
        let days = config.popular_days;
        ranking.offer_list(&in_scope, (offset + n) * 2, 0.0, 0.1, |_| Reason::Popular {
            category: Some(category.clone()),
            window_days: days,
        });
    }
    ranking.finish(release, &ask)
}

/// The popular items of a category, most popular first (from the category's members, so the cost
/// follows the category's size, not the catalogue's).
fn popular_in(release: &Release, catalogue: &Catalogue, category: &str) -> Vec<(ItemIx, f32)> {
    let mut ranked: Vec<(usize, ItemIx)> = catalogue
        .in_category(category)
        .iter()
        .filter_map(|m| release.popular_rank(*m).map(|r| (r, *m)))
        .collect();
    ranked.sort_unstable();
    ranked.into_iter().map(|(rank, item)| (item, release.popular()[rank].1)).collect()
}

/// Candidates with the sum of what recommends them and their strongest reason.
struct Ranking<'a> {
    catalogue: &'a Catalogue,
    interests: &'a [String],
    filter: &'a Filter,
    skip: HashSet<ItemIx>,
    candidates: HashMap<ItemIx, Candidate>,
}

/// Everything that recommends an item, by kind of reason: the reason shown is the kind that
/// contributed most in total (several viewed items add up), named after its strongest single
/// contribution (the viewed item that counted most).
struct Candidate {
    score: f32,
    kinds: Vec<Kind>,
}

struct Kind {
    total: f32,
    best: f32,
    reason: Reason,
}

impl Candidate {
    fn reason(self) -> Reason {
        self.kinds
            .into_iter()
            .max_by(|a, b| a.total.total_cmp(&b.total))
            .map(|k| k.reason)
            .unwrap_or(Reason::Trending { window_days: 0 })
    }
}

impl<'a> Ranking<'a> {
    fn new(catalogue: &'a Catalogue, ask: &'a Ask<'_>) -> Ranking<'a> {
        let mut skip: HashSet<ItemIx> = ask.filter.exclude.iter().copied().collect();
        skip.extend(ask.history.iter().map(|t| t.item));
        skip.extend(ask.context);
        Ranking { catalogue, interests: ask.interests, filter: &ask.filter, skip, candidates: HashMap::new() }
    }

    /// Whether an item may be shown at all: known, not excluded, within the filters, and, if
    /// sensitive, in a topic the person declared.
    fn passes(&self, item: ItemIx) -> bool {
        if item as usize >= self.catalogue.len() || self.skip.contains(&item) {
            return false;
        }
        let info = self.catalogue.info(item);
        let filter = self.filter;
        info.known
            && (info.available || filter.include_unavailable)
            && (filter.categories.is_empty() || info.categories.iter().any(|c| filter.categories.contains(c)))
            && filter.min_price.is_none_or(|min| info.price.is_some_and(|p| p >= min))
            && filter.max_price.is_none_or(|max| info.price.is_some_and(|p| p <= max))
            && (!info.sensitive || self.declared_topic(item).is_some())
    }

    fn declared_topic(&self, item: ItemIx) -> Option<&'a String> {
        let categories = &self.catalogue.info(item).categories;
        self.interests.iter().find(|i| categories.contains(i))
    }

    fn offer(&mut self, item: ItemIx, score: f32, reason: Reason) {
        if score <= 0.0 && !matches!(reason, Reason::Popular { .. }) || !self.passes(item) {
            return;
        }
        let candidate = self.candidates.entry(item).or_insert(Candidate { score: 0.0, kinds: Vec::new() });
        candidate.score += score;
        let kind = std::mem::discriminant(&reason);
        match candidate.kinds.iter_mut().find(|k| std::mem::discriminant(&k.reason) == kind) {
            Some(k) => {
                k.total += score;
                if score > k.best {
                    k.best = score;
                    k.reason = reason;
                }
            }
            None => candidate.kinds.push(Kind { total: score, best: score, reason }),
        }
    }

    /// Offers the first `take` items of a ranked list that pass, the one at place `r` scored
    /// `top / (1 + decay · r)`.
    fn offer_list(
        &mut self,
        list: &[(ItemIx, f32)],
        take: usize,
        top: f32,
        decay: f32,
        reason: impl Fn(ItemIx) -> Reason,
    ) {
        let mut offered = 0;
        for (rank, &(item, _)) in list.iter().enumerate() {
            if offered == take {
                break;
            }
            if self.passes(item) {
                let score = top / (1.0 + decay * rank as f32) + f32::EPSILON;
                self.offer(item, score, reason(item));
                offered += 1;
            }
        }
    }

    /// What the person told comes first (P3: what a person tells us beats what we infer): every
    /// candidate in a declared topic, most popular first, with that topic as its reason (a sensitive
    /// item is only ever here); then what was inferred, by score. Told items are scored above every
    /// inferred one, so scores follow the ranking (spreading categories may then move an item up a
    /// page, as it does among inferred items).
    fn finish(mut self, release: &Release, ask: &Ask<'_>) -> Vec<Recommendation> {
        let mut told: Vec<(usize, Recommendation)> = Vec::new();
        let mut inferred: Vec<Recommendation> = Vec::new();
        for (item, candidate) in std::mem::take(&mut self.candidates) {
            match self.declared_topic(item) {
                Some(interest) => {
                    let reason = Reason::YouToldUs { interest: interest.clone() };
                    let rank = release.popular_rank(item).unwrap_or(usize::MAX);
                    told.push((rank, Recommendation { item, score: 0.0, reason }));
                }
                None => {
                    inferred.push(Recommendation { item, score: candidate.score, reason: candidate.reason() })
                }
            }
        }
        told.sort_unstable_by_key(|(rank, r)| (*rank, r.item));
        inferred.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        let ceiling = inferred.first().map_or(0.0, |r| r.score);
        let mut ranked: Vec<Recommendation> = told
            .into_iter()
            .enumerate()
            .map(|(place, (_, r))| Recommendation { score: ceiling + 1.0 + 1.0 / (1.0 + place as f32), ..r })
            .collect();
        ranked.extend(inferred);
        diversify(&mut ranked, self.catalogue, ask.n);
        ranked.into_iter().skip(ask.offset).take(ask.n).collect()
    }
}

/// Spreads categories: within each page of `n`, no main category takes more than half the
/// places while others are waiting; what is held back moves to the next places.
fn diversify(ranked: &mut Vec<Recommendation>, catalogue: &Catalogue, n: usize) {
    let per_page = n.div_ceil(2).max(1);
    let mut pending: std::collections::VecDeque<Recommendation> = std::mem::take(ranked).into();
    let mut page: HashMap<Option<&String>, usize> = HashMap::new();
    while !pending.is_empty() {
        if ranked.len().is_multiple_of(n) {
            page.clear();
        }
        let position = pending
            .iter()
            .position(|r| {
                page.get(&catalogue.info(r.item).categories.first()).copied().unwrap_or(0) < per_page
            })
            .unwrap_or(0);
        let Some(next) = pending.remove(position) else { break };
        *page.entry(catalogue.info(next.item).categories.first()).or_default() += 1;
        ranked.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Aggregates, Contribution};
    use crate::{DAY_MS, Touch};

    const NOW: i64 = 50 * DAY_MS;

    fn item(id: &str, category: &str, sensitive: bool) -> ItemInfo {
        ItemInfo {
            id: id.into(),
            categories: vec![category.into()],
            sensitive,
            available: true,
            price: Some(1000),
            known: true,
        }
    }

    /// Shoes 0–2 bought together, a pregnancy test (3) seen with shoe 0 by many (it never should
    /// be: sensitive events stay out, but a careless brand may tag late), socks 4 popular.
    fn world() -> (Catalogue, Config, Release) {
        let mut catalogue = Catalogue::default();
        for (id, category, sensitive) in [
            ("shoe-a", "shoes", false),
            ("shoe-b", "shoes", false),
            ("shoe-c", "shoes", false),
            ("test-kit", "pregnancy", true),
            ("socks", "socks", false),
            ("hat", "hats", false),
        ] {
            catalogue.upsert(item(id, category, sensitive));
        }
        let config = Config { min_support: 2, ..Config::default() };
        // Ten days ago: popular, not trending.
        let at = NOW - 10 * DAY_MS;
        let touches = |items: &[ItemIx]| {
            Contribution::from_touches(items.iter().map(|&item| Touch { item, weight: 1, at }))
        };
        let mut people = vec![touches(&[0, 1]); 3];
        people.extend(vec![touches(&[0, 3]); 4]);
        people.extend(vec![touches(&[4]); 6]);
        people.extend(vec![touches(&[1, 2]); 2]);
        let release = Release::full(&Aggregates::train(&config, &people), &config, NOW).unwrap();
        (catalogue, config, release)
    }

    fn viewed(item: ItemIx) -> Vec<Touch> {
        vec![Touch { item, weight: 1, at: NOW }]
    }

    #[test]
    fn each_reason_is_the_right_one() {
        let (catalogue, config, release) = world();
        let history = viewed(0);
        let ask = Ask { history: &history, n: 3, ..Ask::default() };
        let got = recommend(&release, &catalogue, &config, &ask);
        assert_eq!(got[0].item, 1);
        assert_eq!(got[0].reason, Reason::BecauseYouViewed { item: 0 });
        assert_eq!(got[1].reason, Reason::Popular { category: None, window_days: 30 }, "{got:?}");
        assert!(got.iter().all(|r| r.item != 0), "what the person had is not offered again");

        let interests = vec!["hats".to_owned()];
        let ask = Ask { interests: &interests, n: 1, ..Ask::default() };
        let got = recommend(&release, &catalogue, &config, &ask);
        assert_eq!(got[0].item, 5);
        assert_eq!(got[0].reason, Reason::YouToldUs { interest: "hats".into() });

        let ask = Ask { context: Some(1), n: 2, ..Ask::default() };
        let got = recommend(&release, &catalogue, &config, &ask);
        assert_eq!(got[0].reason, Reason::SimilarTo { item: 1 });
        let similar = similar(&release, &catalogue, &config, 2, Filter::default(), 5, 0);
        assert_eq!(
            similar[0],
            Recommendation { item: 1, score: similar[0].score, reason: Reason::SimilarTo { item: 2 } }
        );
        assert_eq!(similar[1].reason, Reason::Popular { category: Some("shoes".into()), window_days: 30 });
    }

    #[test]
    fn trending_has_its_reason() {
        let mut catalogue = Catalogue::default();
        catalogue.upsert(item("new", "hats", false));
        let config = Config { min_support: 2, ..Config::default() };
        let people = vec![Contribution::from_touches([Touch { item: 0, weight: 1, at: NOW }]); 20];
        let release = Release::full(&Aggregates::train(&config, &people), &config, NOW).unwrap();
        let got = recommend(&release, &catalogue, &config, &Ask { n: 1, ..Ask::default() });
        assert_eq!(got[0].reason, Reason::Trending { window_days: 7 });
    }

    #[test]
    fn a_sensitive_item_is_never_recommended_from_behaviour() {
        let (catalogue, config, release) = world();
        let history = viewed(0);
        for ask in [
            Ask { history: &history, n: 10, ..Ask::default() },
            Ask { context: Some(0), n: 10, ..Ask::default() },
        ] {
            let got = recommend(&release, &catalogue, &config, &ask);
            assert!(got.iter().all(|r| r.item != 3), "{got:?}");
        }
        assert!(
            similar(&release, &catalogue, &config, 0, Filter::default(), 10, 0).iter().all(|r| r.item != 3)
        );

        // Only when the person asked for the topic, and then that is the reason.
        let interests = vec!["pregnancy".to_owned()];
        let ask = Ask { history: &history, interests: &interests, n: 10, ..Ask::default() };
        let got = recommend(&release, &catalogue, &config, &ask);
        let kit = got.iter().find(|r| r.item == 3).expect("asked for");
        assert_eq!(kit.reason, Reason::YouToldUs { interest: "pregnancy".into() });
    }

    /// P3: what a person told beats what we infer. Before, a declared topic was a small boost and
    /// came after everything strong in the person's history; now its items lead, most popular
    /// first, still within the filters, stock and sensitivity rules, and behaviour follows.
    #[test]
    fn declared_interests_lead_what_behaviour_suggests() {
        let (mut catalogue, config, release) = world();
        catalogue.upsert(item("cap", "hats", false));
        catalogue.upsert(ItemInfo { available: false, ..item("beanie", "hats", false) });
        let purchase = config.weights.purchase;
        let history =
            vec![Touch { item: 0, weight: purchase, at: NOW }, Touch { item: 1, weight: purchase, at: NOW }];
        let interests = vec!["hats".to_owned()];
        let ask = Ask { history: &history, interests: &interests, n: 4, ..Ask::default() };
        let got = recommend(&release, &catalogue, &config, &ask);
        let told = Reason::YouToldUs { interest: "hats".into() };
        let firsts: Vec<(ItemIx, &Reason)> = got.iter().take(2).map(|r| (r.item, &r.reason)).collect();
        assert_eq!(firsts, [(5, &told), (6, &told)], "{got:?}");
        assert!(got.iter().all(|r| r.item != 7), "an item out of stock is not shown for an interest either");
        assert!(
            got[2..].iter().any(|r| r.reason == Reason::BecauseYouViewed { item: 1 }),
            "behaviour follows: {got:?}"
        );
        assert!(got.windows(2).all(|w| w[0].score > w[1].score), "scores read in order: {got:?}");

        // Within the declared topics, the most popular first (shoe-a before shoe-b before shoe-c
        // before the hats nobody had), whatever the person did; only half a page each while other
        // topics wait.
        let interests = vec!["hats".to_owned(), "shoes".to_owned()];
        let history = viewed(4);
        let ask = Ask { history: &history, interests: &interests, n: 4, ..Ask::default() };
        let got = recommend(&release, &catalogue, &config, &ask);
        assert_eq!(got.iter().map(|r| r.item).collect::<Vec<_>>(), [0, 1, 5, 6], "{got:?}");
        assert!(got.iter().all(|r| matches!(r.reason, Reason::YouToldUs { .. })), "{got:?}");
        let next = recommend(&release, &catalogue, &config, &Ask { offset: 4, ..ask });
        assert_eq!(next[0].item, 2, "the rest of the topic opens the next page: {next:?}");

        // A filter still applies: asking for socks leaves the hats out.
        let filter = Filter { categories: vec!["socks".into()], ..Filter::default() };
        let interests = vec!["hats".to_owned()];
        let ask = Ask { interests: &interests, filter, n: 4, ..Ask::default() };
        let got = recommend(&release, &catalogue, &config, &ask);
        assert_eq!(got.iter().map(|r| r.item).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn filters_paging_and_diversity() {
        let (mut catalogue, config, release) = world();
        catalogue.upsert(ItemInfo { available: false, ..item("shoe-b", "shoes", false) });
        let history = viewed(0);
        let ask = Ask { history: &history, n: 10, ..Ask::default() };
        let got = recommend(&release, &catalogue, &config, &ask);
        assert!(got.iter().all(|r| r.item != 1), "out of stock");
        let filter = Filter { categories: vec!["socks".into()], ..Filter::default() };
        let got = recommend(
            &release,
            &catalogue,
            &config,
            &Ask { history: &history, filter, n: 10, ..Ask::default() },
        );
        assert_eq!(got.iter().map(|r| r.item).collect::<Vec<_>>(), vec![4]);
        assert_eq!(got[0].reason, Reason::Popular { category: Some("socks".into()), window_days: 30 });
        let filter = Filter { max_price: Some(999), ..Filter::default() };
        assert!(
            recommend(&release, &catalogue, &config, &Ask { filter, n: 10, ..Ask::default() }).is_empty()
        );

        let all = recommend(&release, &catalogue, &config, &Ask { n: 4, ..Ask::default() });
        let first = recommend(&release, &catalogue, &config, &Ask { n: 2, ..Ask::default() });
        let second = recommend(&release, &catalogue, &config, &Ask { n: 2, offset: 2, ..Ask::default() });
        assert_eq!(first.len() + second.len(), all.len().min(4));
        assert!(first.iter().chain(&second).all(|r| all.iter().any(|a| a.item == r.item)));
        assert!(first.iter().all(|f| second.iter().all(|s| s.item != f.item)), "pages do not repeat");
    }

    #[test]
    fn no_category_takes_a_whole_page_while_others_wait() {
        let mut catalogue = Catalogue::default();
        for i in 0..6 {
            catalogue.upsert(item(&format!("shoe-{i}"), "shoes", false));
        }
        catalogue.upsert(item("hat", "hats", false));
        let mut ranked: Vec<Recommendation> = (0..7)
            .map(|i| Recommendation {
                item: i,
                score: 10.0 - i as f32,
                reason: Reason::Trending { window_days: 7 },
            })
            .collect();
        diversify(&mut ranked, &catalogue, 4);
        let first_page: Vec<ItemIx> = ranked[..4].iter().map(|r| r.item).collect();
        assert_eq!(first_page, vec![0, 1, 6, 2]);
    }
}
