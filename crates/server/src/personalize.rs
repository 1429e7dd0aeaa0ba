//! Personalization in the server: each person's contribution is computed from their own consented,
//! non-sensitive events (by whichever instance holds the updater lease), sealed under their key in
//! the store, and every instance folds the store's changes into its in-memory aggregates and
//! release. Withdrawal, restriction and erasure remove a contribution: the aggregates subtract it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{Catalog, Feedback, Personalization as Settings, PropertyId};
use tactful_domain::minimize;
use tactful_domain::policy::Reason;
use tactful_personalize::model::{Aggregates, Contribution};
use tactful_personalize::recommend::{self, Ask, Catalogue, Filter, ItemInfo, Reason as Why, Recommendation};
use tactful_personalize::release::Release;
use tactful_personalize::{Config, ItemIx, Touch, Weights};
use tactful_store::FamilyKeys;
use tactful_store::{ItemRecord, Result, Store, StoreError, SubjectState, seal_context};
use tactful_vault::Vault;

use crate::requests::Forget;
use crate::routes::v1::subjects::subject_context;
use crate::{AppState, now_millis};

/// Items a person's stored contribution keeps (strongest, then most recent): their history for the
/// personal step; the shared part is the first `cap` of them.
const HISTORY_KEPT: usize = 200;
/// Events read per page while computing a contribution.
const PAGE: u32 = 1_000;
/// Changes applied per store read while syncing.
const CHANGES_PER_READ: u32 = 2_000;
/// How often an exact release is rebuilt whole (scores of untouched items drift in between).
const FULL_RELEASE_EVERY_MS: i64 = 10 * 60_000;

/// What a person lent the model, as stored (sealed under their key).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Stored {
    /// `(item id, weight, at)`, strongest first.
    items: Vec<(String, u8, i64)>,
    interests: Vec<String>,
    first_seen: Option<i64>,
    last_seen: Option<i64>,
}

/// A person the model knows, in memory.
#[derive(Debug, Clone)]
pub struct Person {
    pub contribution: Contribution,
    pub interests: Vec<String>,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
}

struct Model {
    catalogue: Catalogue,
    aggregates: Aggregates,
    release: Arc<Release>,
    people: HashMap<String, Person>,
    /// Model changes applied up to.
    version: i64,
    items_version: i64,
    full_release_at: i64,
}

/// The personalization engine of one serving instance.
pub struct Personalization {
    pub settings: Settings,
    pub config: Config,
    /// Index of the purpose it serves, in the catalog.
    pub purpose: usize,
    model: RwLock<Model>,
    syncing: tokio::sync::Mutex<()>,
}

/// The model's state, for answers and the console.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub version: i64,
    pub people: u32,
    pub items: usize,
    pub items_with_neighbours: usize,
    pub pairs_released: usize,
    pub released_at: i64,
    pub epsilon: Option<f64>,
    pub delta: Option<f64>,
    pub min_support: u32,
    pub cap: usize,
}

/// A recommendation, ready to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    pub item: ItemRecordView,
    pub score: f32,
    pub reason: Value,
}

/// What an answer shows of an item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemRecordView {
    pub id: String,
    pub categories: Vec<String>,
    pub price: Option<i64>,
}

impl Personalization {
    /// The engine for a catalog with a personalization purpose.
    pub fn new(catalog: &Catalog) -> Option<Personalization> {
        let settings = catalog.personalization()?.clone();
        let purpose = catalog.purpose_index(&settings.purpose)?;
        let config = Config {
            cap: settings.cap as usize,
            min_support: settings.min_support,
            neighbors: settings.neighbors as usize,
            epsilon: settings.epsilon,
            popular_days: settings.popular_days,
            half_life_days: settings.half_life_days,
            trending_days: settings.trending_days,
            weights: Weights::default(),
        };
        let model = Model {
            catalogue: Catalogue::default(),
            aggregates: Aggregates::new(&config),
            release: Arc::new(Release::empty(0)),
            people: HashMap::new(),
            version: 0,
            items_version: 0,
            full_release_at: 0,
        };
        Some(Personalization {
            settings,
            config,
            purpose,
            model: RwLock::new(model),
            syncing: tokio::sync::Mutex::new(()),
        })
    }

    fn weight(&self, feedback: Feedback) -> u8 {
        match feedback {
            Feedback::View => self.config.weights.view,
            Feedback::AddToCart => self.config.weights.add_to_cart,
            Feedback::Purchase => self.config.weights.purchase,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Model> {
        self.model.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the item is sensitive: flagged, or in a category the catalog calls sensitive.
    pub fn is_sensitive(&self, item: &ItemRecord) -> bool {
        item.sensitive || item.categories.iter().any(|c| self.settings.sensitive_categories.contains(c))
    }

    fn info(&self, item: &ItemRecord) -> ItemInfo {
        ItemInfo {
            id: item.id.clone(),
            categories: item.categories.clone(),
            sensitive: self.is_sensitive(item),
            available: item.available,
            price: item.price,
            known: true,
        }
    }

    /// Why this subject's data may not be used for personalization now, if it may not.
    pub fn refusal(&self, state: &AppState, found: &SubjectState, now: i64) -> Option<Reason> {
        let context = subject_context(state, found);
        let consents = state.policy.consents(&context, now);
        let mut first = None;
        for property in self.behaviour_properties(&state.catalog) {
            match state.policy.decide(&context, &consents, property, self.purpose) {
                Ok(()) => return None,
                Err(reason) => {
                    first.get_or_insert(reason);
                }
            }
        }
        Some(first.unwrap_or(Reason::PurposeNotServed))
    }

    /// The properties holding the items of feedback events: what the model learns from.
    fn behaviour_properties(&self, catalog: &Catalog) -> Vec<PropertyId> {
        let mut found: Vec<PropertyId> =
            catalog.events().iter().filter(|e| e.feedback.is_some()).filter_map(|e| e.item).collect();
        found.sort_unstable_by_key(|p| p.index());
        found.dedup();
        found
    }

    /// The data category of what the model learns from (for access logs).
    pub fn categories_used(&self, catalog: &Catalog, interests: bool) -> Vec<String> {
        let mut categories: Vec<String> = self
            .behaviour_properties(catalog)
            .into_iter()
            .map(|p| catalog.property(p).category.clone())
            .collect();
        if interests {
            categories.extend(self.settings.interests.map(|p| catalog.property(p).category.clone()));
        }
        categories.sort();
        categories.dedup();
        categories
    }

    /// Computes the contributions of these subjects from their data now and writes them (or their
    /// removal) to the store, then brings this instance's model up to date.
    pub async fn recompute(&self, state: &AppState, subjects: &[String]) -> Result<()> {
        let now = now_millis();
        let mut write: Vec<(String, Vec<u8>)> = Vec::new();
        let mut remove: Vec<String> = Vec::new();
        let mut done: Vec<String> = Vec::new();
        for subject in subjects {
            let Some(found) = state.store.subject_state(subject).await? else {
                remove.push(subject.clone());
                continue;
            };
            let root = found.subject.clone();
            if &root != subject {
                // Merged into another family: only the family root lends a contribution.
                remove.push(subject.clone());
            }
            if done.contains(&root) {
                continue;
            }
            done.push(root.clone());
            if self.refusal(state, &found, now).is_some() {
                remove.push(root);
                continue;
            }
            match self.contribution_of(state, &found, now).await? {
                Some((stored, sealed)) if !stored.items.is_empty() || !stored.interests.is_empty() => {
                    write.push((root, sealed));
                }
                _ => remove.push(root),
            }
        }
        remove.retain(|r| !write.iter().any(|(w, _)| w == r));
        remove.sort();
        remove.dedup();
        if !write.is_empty() || !remove.is_empty() {
            state.store.put_contributions(write, remove, now).await?;
        }
        self.sync(state.store.as_ref(), &state.vault).await?;
        Ok(())
    }

    /// Reads a family's events and interests and seals what it lends the model.
    async fn contribution_of(
        &self,
        state: &AppState,
        found: &SubjectState,
        now: i64,
    ) -> Result<Option<(Stored, Vec<u8>)>> {
        let root = &found.subject;
        let Some(summary) = state.store.subject_summary(root).await? else { return Ok(None) };
        let keys = FamilyKeys::unwrap(&state.vault, &summary.keys)?;
        let catalog = &state.catalog;
        let context = subject_context(state, found);
        let consents = state.policy.consents(&context, now);
        let permitted =
            |property: PropertyId| state.policy.decide(&context, &consents, property, self.purpose).is_ok();
        let sensitive: Vec<&str> =
            catalog.properties().iter().filter(|p| p.sensitive).map(|p| p.path.as_str()).collect();

        let mut stored = Stored::default();
        if let Some(interests) = self.settings.interests.filter(|p| permitted(*p)) {
            let path = &catalog.property(interests).path;
            let profile = summary.open_profile(&state.vault)?;
            if let Some(value) = profile.iter().find(|v| &v.path == path) {
                stored.interests = interest_list(&value.value);
            }
        }
        let mut touches: HashMap<String, (u8, i64)> = HashMap::new();
        let mut after = None;
        loop {
            let page = state.store.events_page(root, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.timestamp, last.source.clone(), last.dedupe));
            for event in &page {
                stored.first_seen =
                    Some(stored.first_seen.map_or(event.timestamp, |f| f.min(event.timestamp)));
                stored.last_seen = Some(stored.last_seen.map_or(event.timestamp, |l| l.max(event.timestamp)));
                let Some(spec) = event.name.as_deref().and_then(|name| catalog.event(name)) else { continue };
                let (Some(feedback), Some(item_property)) = (spec.feedback, spec.item) else { continue };
                if !permitted(item_property) {
                    continue;
                }
                let open = keys.open_event(event)?;
                let Value::Object(record) = &open.record else { continue };
                // Events touching a sensitive category never reach shared aggregates.
                if sensitive.iter().any(|path| !minimize::values_at(record, path).is_empty()) {
                    continue;
                }
                let weight = self.weight(feedback);
                for id in minimize::values_at(record, &catalog.property(item_property).path) {
                    let Some(id) = item_id(id) else { continue };
                    if self.item_is_sensitive(state, &id).await? {
                        continue;
                    }
                    let entry = touches.entry(id).or_insert((weight, event.timestamp));
                    entry.0 = entry.0.max(weight);
                    entry.1 = entry.1.max(event.timestamp);
                }
            }
        }
        let mut items: Vec<(String, u8, i64)> =
            touches.into_iter().map(|(id, (w, at))| (id, w, at)).collect();
        items.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        items.truncate(HISTORY_KEPT);
        stored.items = items;
        let plain = serde_json::to_vec(&stored).map_err(|e| StoreError::Internal(e.to_string()))?;
        let wrapped = summary
            .keys
            .iter()
            .find(|(member, _)| member == root)
            .map(|(_, wrapped)| wrapped.clone())
            .ok_or_else(|| StoreError::Internal(format!("no key for {root}")))?;
        let key = state.vault.subject_key(root, &wrapped)?;
        let sealed = key.seal(seal_context::CONTRIBUTION, &seal_context::contribution(root), &plain);
        Ok(Some((stored, sealed)))
    }

    async fn item_is_sensitive(&self, state: &AppState, id: &str) -> Result<bool> {
        {
            let model = self.read();
            if let Some(ix) = model.catalogue.known(id) {
                return Ok(model.catalogue.info(ix).sensitive);
            }
        }
        Ok(state.store.item(id).await?.is_some_and(|item| self.is_sensitive(&item)))
    }

    /// Folds the store's item and contribution changes into this instance's model; releases again
    /// what they touched (a noisy model is only released whole, on its schedule).
    pub async fn sync(&self, store: &dyn Store, vault: &Vault) -> Result<usize> {
        let _one = self.syncing.lock().await;
        let mut applied = 0;
        loop {
            let after = self.read().items_version;
            let items = store.items_since(after, CHANGES_PER_READ).await?;
            let Some(last) = items.last().map(|i| i.version) else { break };
            let mut model = self.write();
            for item in &items {
                model.catalogue.upsert(self.info(item));
            }
            model.items_version = last;
        }
        let mut touched: Vec<ItemIx> = Vec::new();
        loop {
            let after = self.read().version;
            let changes = store.model_changes(after, CHANGES_PER_READ).await?;
            let Some(last) = changes.last().map(|c| c.version) else { break };
            // Open outside the lock; apply inside.
            let mut opened: Vec<(String, Option<Stored>)> = Vec::with_capacity(changes.len());
            for change in changes {
                let stored = match change.contribution {
                    Some((wrapped, sealed)) => open(vault, &change.subject, &wrapped, &sealed),
                    None => None,
                };
                opened.push((change.subject, stored));
            }
            let mut model = self.write();
            let model = &mut *model;
            for (subject, stored) in opened {
                let person = stored.map(|stored| {
                    let touches: Vec<Touch> = stored
                        .items
                        .iter()
                        .map(|(id, weight, at)| Touch {
                            item: model.catalogue.intern(id),
                            weight: *weight,
                            at: *at,
                        })
                        .collect();
                    Person {
                        contribution: Contribution::from_touches(touches),
                        interests: stored.interests,
                        first_seen: stored.first_seen,
                        last_seen: stored.last_seen,
                    }
                });
                let old = model.people.remove(&subject);
                touched.extend(model.aggregates.replace(
                    old.as_ref().map(|p| &p.contribution),
                    person.as_ref().map(|p| &p.contribution),
                ));
                if let Some(person) = person {
                    model.people.insert(subject, person);
                }
                applied += 1;
            }
            model.version = last;
        }
        let now = now_millis();
        let full_due = {
            let model = self.read();
            let every = match self.config.epsilon {
                Some(_) => i64::from(self.settings.release_minutes) * 60_000,
                None => FULL_RELEASE_EVERY_MS,
            };
            model.full_release_at == 0 || now - model.full_release_at >= every
        };
        if full_due {
            self.release_whole(store, now).await?;
        } else if self.config.epsilon.is_none() && (!touched.is_empty() || applied > 0) {
            touched.sort_unstable();
            touched.dedup();
            let mut model = self.write();
            let mut release = (*model.release).clone();
            release.refresh(&model.aggregates, &self.config, &touched, now);
            model.release = Arc::new(release);
        }
        Ok(applied)
    }

    /// Releases the model whole now (with noise when configured, recording the ε spent).
    pub async fn release_whole(&self, store: &dyn Store, now: i64) -> Result<()> {
        let release = {
            let model = self.read();
            Release::full(&model.aggregates, &self.config, now)
                .map_err(|e| StoreError::Internal(e.to_string()))?
        };
        if let Some(spent) = release.spent {
            let entry = AuditEvent::ModelReleased {
                people: release.people,
                pairs: release.pair_count() as u64,
                epsilon: format!("{}", spent.epsilon),
                delta: format!("{:e}", spent.delta),
            };
            store.audit_append(vec![entry], now).await?;
        }
        let mut model = self.write();
        model.release = Arc::new(release);
        model.full_release_at = now;
        Ok(())
    }

    /// Removes a person's contribution from the store and from this instance's model now.
    pub async fn forget_now(&self, store: &dyn Store, vault: &Vault, subject: &str) -> Result<()> {
        store.put_contributions(Vec::new(), vec![subject.to_owned()], now_millis()).await?;
        self.sync(store, vault).await?;
        Ok(())
    }

    pub fn info_now(&self) -> ModelInfo {
        let model = self.read();
        ModelInfo {
            version: model.version,
            people: model.release.people,
            items: model.catalogue.known_count(),
            items_with_neighbours: model.release.items_with_neighbours(),
            pairs_released: model.release.pair_count(),
            released_at: model.release.at,
            epsilon: model.release.spent.map(|s| s.epsilon),
            delta: model.release.spent.map(|s| s.delta),
            min_support: self.config.min_support,
            cap: self.config.cap,
        }
    }

    /// The topics a person can tell their interest in: the categories of the catalogue's items,
    /// each with whether it is sensitive (used only because a person says so, never inferred).
    pub fn topics(&self) -> Vec<(String, bool)> {
        let sensitive = &self.settings.sensitive_categories;
        let mut topics = self.read().catalogue.topics();
        for (name, flag) in &mut topics {
            *flag |= sensitive.contains(name);
        }
        for name in sensitive {
            if !topics.iter().any(|(known, _)| known == name) {
                topics.push((name.clone(), true));
            }
        }
        topics.sort();
        topics
    }

    /// The people the model learns from now, as an evaluation dataset: their items in time order,
    /// with the catalogue (nothing leaves the process; people are numbered, not named).
    pub fn dataset(&self) -> tactful_personalize::generate::Dataset {
        let model = self.read();
        let items = (0..model.catalogue.len())
            .map(|ix| model.catalogue.info(ix as tactful_personalize::ItemIx).clone())
            .collect();
        let mut interactions = Vec::new();
        for (person, entry) in model.people.values().enumerate() {
            for touch in entry.contribution.touches() {
                interactions.push(tactful_personalize::Interaction { person: person as u32, touch: *touch });
            }
        }
        tactful_personalize::generate::Dataset { items, interactions, people: model.people.len() as u32 }
    }

    /// Measures recommendation quality on the people the model learns from now (leave-last-out,
    /// HR@10 and NDCG@10 over up to `users` of them): the model as served beside the popularity
    /// baseline. CPU-bound; run it off the async workers.
    pub fn quality(
        &self,
        users: usize,
    ) -> Result<tactful_personalize::eval::Report, tactful_personalize::eval::EvalError> {
        let dataset = self.dataset();
        let started = std::time::Instant::now();
        let clock = move || started.elapsed();
        let options = tactful_personalize::eval::Options { users, seed: 1, n: 10 };
        tactful_personalize::eval::evaluate_settings(
            &dataset,
            &options,
            tactful_personalize::eval::served_settings(&self.config),
            &clock,
        )
    }

    /// A person's model entry, if they lend one.
    pub fn person(&self, subject: &str) -> Option<Person> {
        self.read().people.get(subject).cloned()
    }

    /// Stores items (audited with who wrote them) and folds them into this instance's model; an
    /// item that became sensitive sends everyone to be recomputed.
    pub async fn write_items(&self, state: &AppState, actor: &str, items: Vec<ItemRecord>) -> Result<usize> {
        let engine = self;
        let count = items.len();
        let became_sensitive = {
            let mut any = false;
            for item in &items {
                if engine.is_sensitive(item) {
                    let before = state.store.item(&item.id).await?;
                    any |= !before.is_some_and(|b| engine.is_sensitive(&b));
                }
            }
            any
        };
        let now = now_millis();
        state.store.put_items(items, now).await?;
        state
            .store
            .audit_append(
                vec![AuditEvent::ItemsWritten { actor: actor.to_owned(), count: count as u64 }],
                now,
            )
            .await?;
        if became_sensitive {
            // What people did with it must leave the shared aggregates: everyone is recomputed.
            state.store.mark_all_model_dirty(now).await?;
        }
        engine.sync(state.store.as_ref(), &state.vault).await?;
        Ok(count)
    }

    /// Whether an item is in the catalogue.
    pub fn knows(&self, id: &str) -> bool {
        self.read().catalogue.known(id).is_some()
    }

    /// Ranks items. `person` only when they permit personalization now.
    pub fn recommend(
        &self,
        person: Option<&Person>,
        context: Option<&str>,
        filter: FilterInput,
        n: usize,
        offset: usize,
    ) -> Vec<Picked> {
        let model = self.read();
        let history: Vec<Touch> = person.map(|p| p.contribution.touches().to_vec()).unwrap_or_default();
        let interests: &[String] = person.map_or(&[], |p| p.interests.as_slice());
        let ask = Ask {
            history: &history,
            interests,
            context: context.and_then(|id| model.catalogue.known(id)),
            filter: filter.resolve(&model.catalogue),
            n,
            offset,
        };
        let picked = recommend::recommend(&model.release, &model.catalogue, &self.config, &ask);
        picked.into_iter().map(|r| view(&model.catalogue, r)).collect()
    }

    /// Items like `item`.
    pub fn similar(&self, item: &str, filter: FilterInput, n: usize, offset: usize) -> Vec<Picked> {
        let model = self.read();
        let Some(ix) = model.catalogue.known(item) else { return Vec::new() };
        let picked = recommend::similar(
            &model.release,
            &model.catalogue,
            &self.config,
            ix,
            filter.resolve(&model.catalogue),
            n,
            offset,
        );
        picked.into_iter().map(|r| view(&model.catalogue, r)).collect()
    }
}

/// An item as the API and `tactful items import` take it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default = "yes")]
    pub available: bool,
    /// Minor units (cents).
    pub price: Option<i64>,
    #[serde(default)]
    pub attributes: Option<Value>,
}

fn yes() -> bool {
    true
}

/// Checks an item (`id` from the path, if any) into a record to store; the error says what is wrong.
pub fn item_record(input: ItemInput, id: Option<String>, now: i64) -> Result<ItemRecord, String> {
    let id = id.or(input.id).map(|i| i.trim().to_owned()).unwrap_or_default();
    if id.is_empty() || id.len() > 200 {
        return Err("an item needs an id of 1 to 200 characters".into());
    }
    if input.price.is_some_and(|p| p < 0) {
        return Err(format!("item {id:?}: price must not be negative (minor units, e.g. cents)"));
    }
    let mut categories: Vec<String> =
        input.categories.iter().map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty()).collect();
    categories.dedup();
    if categories.len() > 20 || categories.iter().any(|c| c.len() > 64) {
        return Err(format!("item {id:?}: at most 20 categories of at most 64 characters"));
    }
    let attributes = match input.attributes {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(object)) => Value::Object(object),
        Some(_) => return Err(format!("item {id:?}: attributes must be a JSON object")),
    };
    Ok(ItemRecord {
        name: input.name.unwrap_or_else(|| id.clone()),
        id,
        categories,
        sensitive: input.sensitive,
        available: input.available,
        price: input.price,
        attributes,
        updated_at: now,
        version: 0,
    })
}

/// Business filters as a request states them (item ids), before they are resolved to the model.
#[derive(Debug, Clone, Default)]
pub struct FilterInput {
    pub categories: Vec<String>,
    pub include_unavailable: bool,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub exclude: Vec<String>,
}

impl FilterInput {
    fn resolve(self, catalogue: &Catalogue) -> Filter {
        Filter {
            categories: self.categories,
            include_unavailable: self.include_unavailable,
            min_price: self.min_price,
            max_price: self.max_price,
            exclude: self.exclude.iter().filter_map(|id| catalogue.get(id)).collect(),
        }
    }
}

/// A recommendation's reason (as [`view`] writes it) in words for people: "Because you looked at
/// Oak Skillet", "Popular in shoes over the last 30 days". `name` names an item by its id.
pub fn reason_in_words(reason: &Value, name: &dyn Fn(&str) -> String) -> String {
    let text = |field: &str| reason[field].as_str().unwrap_or_default();
    let days = text("window").trim_end_matches('d');
    match text("type") {
        "because_you_viewed" => format!("Because you looked at {}", name(text("item"))),
        "similar_to" => format!("Similar to {}", name(text("item"))),
        "you_told_us" => format!("You told us you like {}", text("interest")),
        "popular" => match text("scope").strip_prefix("category:") {
            Some(category) => format!("Popular in {category} over the last {days} days"),
            None => format!("Popular with everyone over the last {days} days"),
        },
        "trending" => format!("Wanted more than usual over the last {days} days"),
        other => other.replace('_', " "),
    }
}

fn view(catalogue: &Catalogue, picked: Recommendation) -> Picked {
    let info = catalogue.info(picked.item);
    let id = |ix: ItemIx| Value::String(catalogue.info(ix).id.clone());
    let mut reason = Map::new();
    match picked.reason {
        Why::BecauseYouViewed { item } => {
            reason.insert("type".into(), "because_you_viewed".into());
            reason.insert("item".into(), id(item));
        }
        Why::YouToldUs { interest } => {
            reason.insert("type".into(), "you_told_us".into());
            reason.insert("interest".into(), interest.into());
        }
        Why::Popular { category, window_days } => {
            reason.insert("type".into(), "popular".into());
            reason.insert(
                "scope".into(),
                category.map_or_else(|| "all".into(), |c| format!("category:{c}")).into(),
            );
            reason.insert("window".into(), format!("{window_days}d").into());
        }
        Why::Trending { window_days } => {
            reason.insert("type".into(), "trending".into());
            reason.insert("window".into(), format!("{window_days}d").into());
        }
        Why::SimilarTo { item } => {
            reason.insert("type".into(), "similar_to".into());
            reason.insert("item".into(), id(item));
        }
    }
    Picked {
        item: ItemRecordView { id: info.id.clone(), categories: info.categories.clone(), price: info.price },
        score: picked.score,
        reason: Value::Object(reason),
    }
}

fn open(vault: &Vault, subject: &str, wrapped: &[u8], sealed: &[u8]) -> Option<Stored> {
    let key = vault.subject_key(subject, wrapped).ok()?;
    let plain = key.open(seal_context::CONTRIBUTION, &seal_context::contribution(subject), sealed).ok()?;
    match serde_json::from_slice(&plain) {
        Ok(stored) => Some(stored),
        Err(error) => {
            tracing::warn!(%error, "a stored contribution does not decode; it is left out");
            None
        }
    }
}

/// Interests as people declare them: a list of topics, or one comma-separated string.
fn interest_list(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Value::String(text) => text.split(',').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    for interest in &mut list {
        *interest = interest.trim().to_lowercase();
    }
    list.retain(|i| !i.is_empty() && i.len() <= 64);
    list.sort();
    list.dedup();
    list.truncate(50);
    list
}

/// An item id from an event value (strings, or numbers as many shops send them).
fn item_id(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() && text.len() <= 200 => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Erasure's hook: the store removed the person's contribution with their data; this instance's
/// model lets go of it at once (other instances on their next sync, within a second).
pub struct ForgetInModel {
    pub engine: Arc<Personalization>,
    pub store: Arc<dyn Store>,
    pub vault: Arc<Vault>,
}

impl Forget for ForgetInModel {
    fn forget<'a>(&'a self, subject: &'a str) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move { self.engine.forget_now(self.store.as_ref(), &self.vault, subject).await })
    }
}

/// The updater: takes dirty marks (new events, changed consent) and recomputes those people.
/// Runs on whichever instance holds the lease.
pub async fn update_dirty(state: &AppState, engine: &Personalization) -> Result<usize> {
    let marks = state.store.model_dirty(500).await?;
    if marks.is_empty() {
        return Ok(0);
    }
    let subjects: Vec<String> = marks.iter().map(|(s, _)| s.clone()).collect();
    engine.recompute(state, &subjects).await?;
    let count = marks.len();
    state.store.model_clean(marks).await?;
    Ok(count)
}

/// A person's consent, restriction or declared interests changed: recompute what they lend the
/// model now (a withdrawal takes their contribution out of every aggregate before this returns).
pub async fn changed(state: &AppState, subject: &str) -> Result<()> {
    match &state.personalization {
        Some(engine) => engine.recompute(state, &[subject.to_owned()]).await,
        None => Ok(()),
    }
}

/// Every second: the instance holding the updater lease recomputes dirty people; every instance
/// then folds the store's changes into its model.
pub async fn run(state: Arc<AppState>, engine: Arc<Personalization>) {
    const UPDATER_JOB: &str = "model-updater";
    let owner = tactful_vault::new_subject_id().replacen("sub_", "instance_", 1);
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticks.tick().await;
        if let Ok(true) = state.store.job_claim(UPDATER_JOB, &owner, now_millis(), 1_000, 60_000).await {
            loop {
                match update_dirty(&state, &engine).await {
                    Ok(0) => break,
                    Ok(count) => tracing::debug!(count, "recomputed contributions"),
                    Err(error) => {
                        tracing::warn!(%error, "cannot update the recommendation model; will retry");
                        break;
                    }
                }
            }
            if let Err(error) = state.store.job_release(UPDATER_JOB, &owner).await {
                tracing::warn!(%error, "cannot release the model updater lease");
            }
        }
        if let Err(error) = engine.sync(state.store.as_ref(), &state.vault).await {
            tracing::warn!(%error, "cannot sync the recommendation model; will retry");
        }
    }
}

/// The catalog's lifecycle thresholds as the stage function takes them (next-best-message and the
/// analytics `lifecycle` dimension judge stages alike).
pub fn lifecycle_thresholds(
    lifecycle: &tactful_domain::catalog::Lifecycle,
) -> tactful_personalize::lifecycle::Thresholds {
    tactful_personalize::lifecycle::Thresholds {
        new_days: lifecycle.new_days,
        at_risk_days: lifecycle.at_risk_days,
        lapsed_days: lifecycle.lapsed_days,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn reasons_read_as_sentences_with_item_names() {
        let name = |id: &str| if id == "sku-1" { "Oak Skillet".to_owned() } else { id.to_owned() };
        let check = |reason: serde_json::Value, expected: &str| {
            assert_eq!(super::reason_in_words(&reason, &name), expected);
        };
        check(json!({"type": "because_you_viewed", "item": "sku-1"}), "Because you looked at Oak Skillet");
        check(json!({"type": "similar_to", "item": "sku-1"}), "Similar to Oak Skillet");
        check(json!({"type": "you_told_us", "interest": "hats"}), "You told us you like hats");
        check(
            json!({"type": "popular", "scope": "category:shoes", "window": "30d"}),
            "Popular in shoes over the last 30 days",
        );
        check(
            json!({"type": "popular", "scope": "all", "window": "14d"}),
            "Popular with everyone over the last 14 days",
        );
        check(json!({"type": "trending", "window": "7d"}), "Wanted more than usual over the last 7 days");
    }
}
