//! The personalization engine of one instance: each person's contribution is computed from their own
//! consented, non-sensitive events (by whichever instance holds the updater lease), sealed under
//! their key in the store, and every instance folds the store's changes into its in-memory
//! aggregates and release. Withdrawal, expiry, restriction and erasure reach it as [`Hooks`] and
//! remove a contribution at once: the aggregates subtract it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::{
    Catalog, Feedback, Personalization as Settings, PropertyId, normalize_category,
};
use tactful_domain::minimize;
use tactful_domain::policy::Reason;
use tactful_personalize::model::{Aggregates, Contribution};
use tactful_personalize::recommend::{self, Ask, Catalogue, Filter, ItemInfo, Reason as Why, Recommendation};
use tactful_personalize::release::Release;
use tactful_personalize::{Config, ItemIx, Mechanism, Touch, Weights};
use tactful_store::FamilyKeys;
use tactful_store::{ItemRecord, Result, Store, StoreError, SubjectState, seal_context};
use tactful_vault::Vault;

use crate::{App, Change, Hooks};

mod contribution;
mod items;
mod serve;
#[cfg(test)]
mod spelling;
mod view;

pub use contribution::{run, update_dirty};
pub use items::{ItemInput, item_record};
pub use serve::{
    Message, Recommendations, Similar, engine, item, next_message, put_item, put_items, recommendations,
    similar,
};
pub use view::{FilterInput, reason_in_words};

/// Items a person's stored contribution keeps (strongest, then most recent): their history for the
/// personal step; the shared part is the first `cap` of them.
const HISTORY_KEPT: usize = 200;
/// Events read per page while computing a contribution.
const PAGE: u32 = 1_000;
/// Changes applied per store read while syncing.
const CHANGES_PER_READ: u32 = 2_000;
/// With differential privacy, how soon after someone leaves the model a noisy release is made
/// without them (each release spends the catalog's ε and is audited as `model_released`).
pub const RELEASE_AFTER_LEAVING_MS: i64 = 60_000;
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
    /// When a whole release was last tried and did not finish in time (the previous release stays
    /// in service; the next try waits for the schedule, as after a release).
    release_tried_at: i64,
    /// Someone left the model (withdrew, lapsed, was restricted or erased) since the last noisy
    /// release: the next one comes within [`RELEASE_AFTER_LEAVING_MS`], not at the schedule's end.
    left_since_release: bool,
}

/// The personalization engine of one serving instance.
pub struct Personalization {
    pub settings: Settings,
    pub config: Config,
    /// Index of the purpose it serves, in the catalog.
    pub purpose: usize,
    model: RwLock<Model>,
    syncing: tokio::sync::Mutex<()>,
    /// The deadline of a whole release and the quality check.
    limits: Arc<crate::work::Limits>,
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
            mechanism: settings
                .gaussian_delta
                .map_or(Mechanism::Threshold, |delta| Mechanism::Gaussian { delta }),
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
            release_tried_at: 0,
            left_since_release: false,
        };
        Some(Personalization {
            settings,
            config,
            purpose,
            model: RwLock::new(model),
            syncing: tokio::sync::Mutex::new(()),
            limits: Arc::new(crate::work::Limits::default()),
        })
    }

    /// The same engine with these deadlines (the application's).
    pub fn with_limits(mut self, limits: Arc<crate::work::Limits>) -> Personalization {
        self.limits = limits;
        self
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

    /// Whether the item is sensitive: flagged, or in a category the catalog calls sensitive (both
    /// compared in their normalized spelling; items stored before categories were normalized whole
    /// may still have a double space).
    pub fn is_sensitive(&self, item: &ItemRecord) -> bool {
        item.sensitive
            || item
                .categories
                .iter()
                .any(|c| self.settings.sensitive_categories.contains(&normalize_category(c)))
    }

    fn info(&self, item: &ItemRecord) -> ItemInfo {
        ItemInfo {
            id: item.id.clone(),
            // Normalized when written; again here for items stored before that was done whole.
            categories: items::categories(&item.categories),
            sensitive: self.is_sensitive(item),
            available: item.available,
            price: item.price,
            known: true,
        }
    }

    /// Why this subject's data may not be used for personalization now, if it may not.
    pub fn refusal(&self, app: &App, found: &SubjectState, now: i64) -> Option<Reason> {
        let context = crate::subjects::context(app, found);
        let consents = app.policy.consents(&context, now);
        let mut first = None;
        for property in self.behaviour_properties(&app.catalog) {
            match app.policy.decide(&context, &consents, property, self.purpose) {
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

    /// Folds the store's item and contribution changes into this instance's model; releases again
    /// what they touched (a noisy model is only released whole, on its schedule).
    pub async fn sync(&self, store: &dyn Store, vault: &Vault) -> Result<usize> {
        self.sync_at(store, vault, crate::now_millis()).await
    }

    /// [`Personalization::sync`] at `now` (the application's clock).
    pub async fn sync_at(&self, store: &dyn Store, vault: &Vault, now: i64) -> Result<usize> {
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
                    Some((wrapped, sealed)) => contribution::open(vault, &change.subject, &wrapped, &sealed),
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
                if old.is_some() && person.is_none() {
                    model.left_since_release = true;
                }
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
        let full_due = {
            let model = self.read();
            // A release that did not finish in time is tried again on the schedule, not every second.
            let last = model.full_release_at.max(model.release_tried_at);
            let every = match self.config.epsilon {
                Some(_) => i64::from(self.settings.release_minutes) * 60_000,
                None => FULL_RELEASE_EVERY_MS,
            };
            // A noisy release is only made whole; someone who left is out of it within a minute.
            let someone_left = self.config.epsilon.is_some()
                && model.left_since_release
                && now - last >= RELEASE_AFTER_LEAVING_MS;
            last == 0 || now - last >= every || someone_left
        };
        if full_due {
            if let Err(late) = self.release_within(store, now).await? {
                tracing::warn!(
                    deadline_ms = late.deadline_ms,
                    "a whole model release did not finish in time; the previous release stays in service until the next try"
                );
                self.write().release_tried_at = now;
            }
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

    /// Releases the model whole now (with noise when configured, recording the ε spent), within
    /// the work deadline: a release not made by then is `too_slow`, and the previous one stays.
    pub async fn release_whole(&self, store: &dyn Store, now: i64) -> Result<(), crate::AppError> {
        match self.release_within(store, now).await? {
            Ok(()) => Ok(()),
            Err(late) => Err(late.into()),
        }
    }

    /// [`Personalization::release_whole`], saying whether it was made in time.
    async fn release_within(&self, store: &dyn Store, now: i64) -> Result<Result<(), crate::work::Late>> {
        let deadline = self.limits.work();
        // Computed on the blocking pool from a copy of the aggregates, so the model keeps serving.
        // The public domain of a Gaussian release: the catalogue's items that may be recommended.
        let (aggregates, domain, config, limits) = {
            let model = self.read();
            let catalogue = &model.catalogue;
            let domain: Vec<ItemIx> = (0..catalogue.len() as ItemIx)
                .filter(|i| catalogue.info(*i).known && !catalogue.info(*i).sensitive)
                .collect();
            (model.aggregates.clone(), domain, self.config.clone(), self.limits.clone())
        };
        let release = match crate::work::blocking(deadline, move || {
            limits.probe("release");
            Release::full_over(&aggregates, &config, &domain, now)
        })
        .await
        {
            Ok(release) => release.map_err(|e| StoreError::Internal(e.to_string()))?,
            Err(crate::work::Stopped::Late(late)) => return Ok(Err(late)),
            Err(failed) => return Err(StoreError::Internal(failed.to_string())),
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
        model.left_since_release = false;
        Ok(Ok(()))
    }

    /// Removes a person's contribution from the store and from this instance's model now.
    pub async fn forget_now(&self, app: &App, subject: &str) -> Result<()> {
        app.store.put_contributions(Vec::new(), vec![subject.to_owned()], app.now()).await?;
        self.sync_at(app.store.as_ref(), &app.vault, app.now()).await?;
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
        picked.into_iter().map(|r| view::view(&model.catalogue, r)).collect()
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
        picked.into_iter().map(|r| view::view(&model.catalogue, r)).collect()
    }
}

/// The engine acts on a person's change before it is answered: a consent, restriction or data change
/// recomputes what they lend the model (a withdrawal has left every aggregate when this returns);
/// an erasure lets go of them at once (the store removed their contribution with their data; other
/// instances drop them on their next sync, within a second).
impl Hooks for Personalization {
    fn changed<'a>(&'a self, app: &'a App, subject: &'a str, change: Change) -> crate::hooks::Acting<'a> {
        Box::pin(async move {
            match change {
                Change::Erased => self.forget_now(app, subject).await,
                Change::Consent | Change::Restriction | Change::Data => {
                    self.recompute(app, &[subject.to_owned()]).await
                }
            }
        })
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
