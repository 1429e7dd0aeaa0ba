//! The brand's item catalogue as the engine takes it: checked items, written with an audit entry,
//! and a full recompute when an item becomes sensitive.

use super::*;

impl Personalization {
    /// Stores items (audited with who wrote them) and folds them into this instance's model; an
    /// item that became sensitive sends everyone to be recomputed.
    pub async fn write_items(&self, app: &App, actor: &str, items: Vec<ItemRecord>) -> Result<usize> {
        let engine = self;
        let count = items.len();
        let became_sensitive = {
            let mut any = false;
            for item in &items {
                if engine.is_sensitive(item) {
                    let before = app.store.item(&item.id).await?;
                    any |= !before.is_some_and(|b| engine.is_sensitive(&b));
                }
            }
            any
        };
        let now = app.now();
        app.store.put_items(items, now).await?;
        app.store
            .audit_append(
                vec![AuditEvent::ItemsWritten { actor: actor.to_owned(), count: count as u64 }],
                now,
            )
            .await?;
        if became_sensitive {
            // What people did with it must leave the shared aggregates: everyone is recomputed.
            app.store.mark_all_model_dirty(now).await?;
        }
        engine.sync_at(app.store.as_ref(), &app.vault, app.now()).await?;
        Ok(count)
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
    #[serde(default, deserialize_with = "crate::fields::whole_or_null")]
    pub price: Option<i64>,
    #[serde(default)]
    pub attributes: Option<Value>,
}

fn yes() -> bool {
    true
}

/// An item's categories in the one spelling they are compared in (the catalog's sensitive
/// categories and declared interests are normalized alike, so no spelling of a sensitive category
/// slips past its rule), each once, in the order given.
pub(super) fn categories(names: &[String]) -> Vec<String> {
    let mut categories: Vec<String> = Vec::with_capacity(names.len());
    for category in names.iter().map(|c| normalize_category(c)) {
        if !category.is_empty() && !categories.contains(&category) {
            categories.push(category);
        }
    }
    categories
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
    let categories = categories(&input.categories);
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
