//! What a person lends the model: their consented, non-sensitive events folded into a sealed
//! contribution, recomputed when they change and by the updater for people marked dirty.

use super::*;

impl Personalization {
    /// Computes the contributions of these subjects from their data now and writes them (or their
    /// removal) to the store, then brings this instance's model up to date.
    pub async fn recompute(&self, app: &App, subjects: &[String]) -> Result<()> {
        let now = app.now();
        let mut write: Vec<(String, Vec<u8>)> = Vec::new();
        let mut remove: Vec<String> = Vec::new();
        let mut done: Vec<String> = Vec::new();
        for subject in subjects {
            let Some(found) = app.store.subject_state(subject).await? else {
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
            if self.refusal(app, &found, now).is_some() {
                remove.push(root);
                continue;
            }
            match self.contribution_of(app, &found, now).await? {
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
            app.store.put_contributions(write, remove, now).await?;
        }
        self.sync_at(app.store.as_ref(), &app.vault, app.now()).await?;
        Ok(())
    }

    /// Reads a family's events and interests and seals what it lends the model.
    async fn contribution_of(
        &self,
        app: &App,
        found: &SubjectState,
        now: i64,
    ) -> Result<Option<(Stored, Vec<u8>)>> {
        let root = &found.subject;
        let Some(summary) = app.store.subject_summary(root).await? else { return Ok(None) };
        let keys = FamilyKeys::unwrap(&app.vault, &summary.keys)?;
        let catalog = &app.catalog;
        let context = crate::subjects::context(app, found);
        let consents = app.policy.consents(&context, now);
        let permitted =
            |property: PropertyId| app.policy.decide(&context, &consents, property, self.purpose).is_ok();
        let sensitive: Vec<&str> =
            catalog.properties().iter().filter(|p| p.sensitive).map(|p| p.path.as_str()).collect();

        let mut stored = Stored::default();
        if let Some(interests) = self.settings.interests.filter(|p| permitted(*p)) {
            let path = &catalog.property(interests).path;
            let profile = summary.open_profile(&app.vault)?;
            if let Some(value) = profile.iter().find(|v| &v.path == path) {
                stored.interests = interest_list(&value.value);
            }
        }
        let mut touches: HashMap<String, (u8, i64)> = HashMap::new();
        let mut after = None;
        loop {
            let page = app.store.events_page(root, after, PAGE).await?;
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
                    if self.item_is_sensitive(app, &id).await? {
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
        let key = app.vault.subject_key(root, &wrapped)?;
        let sealed = key.seal(seal_context::CONTRIBUTION, &seal_context::contribution(root), &plain);
        Ok(Some((stored, sealed)))
    }

    async fn item_is_sensitive(&self, app: &App, id: &str) -> Result<bool> {
        {
            let model = self.read();
            if let Some(ix) = model.catalogue.known(id) {
                return Ok(model.catalogue.info(ix).sensitive);
            }
        }
        Ok(app.store.item(id).await?.is_some_and(|item| self.is_sensitive(&item)))
    }
}

pub(super) fn open(vault: &Vault, subject: &str, wrapped: &[u8], sealed: &[u8]) -> Option<Stored> {
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
pub(super) fn interest_list(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Value::String(text) => text.split(',').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    for interest in &mut list {
        *interest = normalize_category(interest);
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

/// The updater: takes dirty marks (new events, changed consent) and recomputes those people.
/// Runs on whichever instance holds the lease.
pub async fn update_dirty(app: &App, engine: &Personalization) -> Result<usize> {
    let marks = app.store.model_dirty(500).await?;
    if marks.is_empty() {
        return Ok(0);
    }
    let subjects: Vec<String> = marks.iter().map(|(s, _)| s.clone()).collect();
    engine.recompute(app, &subjects).await?;
    let count = marks.len();
    app.store.model_clean(marks).await?;
    Ok(count)
}

/// Every second: the instance holding the updater lease recomputes dirty people; every instance
/// then folds the store's changes into its model.
pub async fn run(app: Arc<App>, engine: Arc<Personalization>) {
    const UPDATER_JOB: &str = "model-updater";
    let owner = tactful_vault::new_subject_id().replacen("sub_", "instance_", 1);
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticks.tick().await;
        if let Ok(true) = app.store.job_claim(UPDATER_JOB, &owner, app.now(), 1_000, 60_000).await {
            loop {
                match update_dirty(&app, &engine).await {
                    Ok(0) => break,
                    Ok(count) => tracing::debug!(count, "recomputed contributions"),
                    Err(error) => {
                        tracing::warn!(%error, "cannot update the recommendation model; will retry");
                        break;
                    }
                }
            }
            if let Err(error) = app.store.job_release(UPDATER_JOB, &owner).await {
                tracing::warn!(%error, "cannot release the model updater lease");
            }
        }
        if let Err(error) = engine.sync_at(app.store.as_ref(), &app.vault, app.now()).await {
            tracing::warn!(%error, "cannot sync the recommendation model; will retry");
        }
    }
}
