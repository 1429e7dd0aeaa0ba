//! What is held about the person, as they read it: grouped by kind of data, each value once with
//! how often and when it was last seen, why it is used and how long it is kept.

use super::*;

/// A kind of data held about the person.
#[derive(Debug, Clone, Serialize)]
pub struct Known {
    pub category: String,
    pub name: String,
    pub sensitive: bool,
    /// What is held, newest first: values, or what happened and when.
    pub items: Vec<KnownItem>,
    /// Items not shown.
    pub more: usize,
    /// Why it is used (purpose names) and what the person gets from it.
    pub used_for: Vec<String>,
    pub kept_for: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KnownItem {
    /// What the value is ("Your email address", "Products you looked at").
    pub label: String,
    pub value: String,
    /// When it was last seen (RFC 3339), empty for identifiers.
    pub at: String,
    /// How many times it was seen.
    pub times: u32,
}

/// Everything held about the person, grouped by data category, each with why it is used and how
/// long it is kept: each distinct value once, newest first, with how often it was seen. The
/// person's own data, opened for them alone.
pub async fn known(app: &App, subject: &str) -> Result<Vec<Known>, AppError> {
    let catalog = &app.catalog;
    let data =
        app.store.subject_data(subject).await?.ok_or_else(|| AppError::new(ErrorCode::SessionExpired))?;
    // category → ((label, value) → (last seen, times)), and the paths seen.
    type Seen = BTreeMap<(String, String), (i64, u32)>;
    let mut groups: BTreeMap<String, (Seen, BTreeSet<String>)> = BTreeMap::new();
    let mut note = |category: &str, path: Option<&str>, label: String, value: String, at: i64| {
        let entry = groups.entry(category.to_owned()).or_default();
        if let Some(path) = path {
            entry.1.insert(path.to_owned());
        }
        let seen = entry.0.entry((label, value)).or_insert((at, 0));
        seen.0 = seen.0.max(at);
        seen.1 += 1;
    };
    for identity in data.open_identities(&app.vault)? {
        let category = match identity.kind.as_str() {
            "user_id" => "user.unique_id",
            "anonymous_id" => "user.unique_id.pseudonymous",
            other => catalog
                .properties()
                .iter()
                .find(|p| p.identifier.as_ref().is_some_and(|k| k.as_str() == other))
                .map_or("user.unique_id", |p| p.category.as_str()),
        };
        let label = match identity.kind.as_str() {
            "user_id" => "Your account id".to_owned(),
            "anonymous_id" => "A random id of your browser or app".to_owned(),
            other => format!("Identifies you ({other})"),
        };
        note(category, None, label, short(identity.value.as_str()), 0);
    }
    for value in data.open_profile(&app.vault)? {
        let Some(property) = catalog.property_by_path(&value.path) else { continue };
        note(
            &property.category,
            Some(&property.path),
            label_of(property),
            shown(&value.value),
            value.updated_at,
        );
    }
    for event in data.open_events(&app.vault)? {
        let Value::Object(mut record) = event.record else { continue };
        minimize::retain_declared(catalog, &mut record);
        for property in catalog.properties() {
            for found in minimize::values_at(&record, &property.path) {
                note(
                    &property.category,
                    Some(&property.path),
                    label_of(property),
                    shown(found),
                    event.timestamp,
                );
            }
        }
    }
    // The person reading their own data is a read like any other: in their access log.
    let mut read =
        crate::reads::Read::new(app, &crate::reads::Reader::Person, crate::reads::RIGHTS_PURPOSE, subject);
    for category in groups.keys() {
        read.returned(category);
    }
    read.commit().await?;
    let taxonomy = Taxonomy::builtin();
    Ok(groups
        .into_iter()
        .map(|(category, (seen, paths))| {
            let mut items: Vec<KnownItem> = seen
                .into_iter()
                .map(|((label, value), (at, times))| KnownItem {
                    label,
                    value,
                    at: if at > 0 { format_time(at) } else { String::new() },
                    times,
                })
                .collect();
            items.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.times.cmp(&a.times)));
            let total = items.len();
            items.truncate(SHOWN_VALUES);
            let properties: Vec<_> = catalog
                .properties()
                .iter()
                .filter(|p| p.category == category && (paths.is_empty() || paths.contains(&p.path)))
                .collect();
            let mut used_for: Vec<String> = properties
                .iter()
                .flat_map(|p| p.purposes.iter())
                .filter_map(|key| catalog.purpose(key).map(|p| p.name.clone()))
                .collect();
            used_for.sort();
            used_for.dedup();
            if used_for.is_empty() {
                used_for.push("Recognizing you when you come back".into());
            }
            let kept_for =
                properties.iter().map(|p| p.retention).max().map(|r| r.in_words()).unwrap_or_default();
            Known {
                name: taxonomy.plain_category_name(&category),
                sensitive: properties.iter().any(|p| p.sensitive),
                more: total.saturating_sub(items.len()),
                items,
                used_for,
                kept_for,
                category,
            }
        })
        .collect())
}

/// What a property is, for the person: its description, or its name made readable
/// (`properties.products[].price` → "Price").
fn label_of(property: &tactful_domain::catalog::Property) -> String {
    property.description.clone().unwrap_or_else(|| {
        let last = property.path.rsplit('.').next().unwrap_or(&property.path).trim_end_matches("[]");
        let words = last.replace('_', " ");
        let mut chars = words.chars();
        chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
    })
}

/// A value as one line of text.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => short(text),
        Value::Array(items) => short(&items.iter().map(shown).collect::<Vec<_>>().join(", ")),
        Value::Object(fields) => short(
            &fields
                .iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, v)| format!("{k}: {}", shown(v)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => other.to_string(),
    }
}

fn short(text: &str) -> String {
    if text.chars().count() <= SHORT {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(SHORT - 1).collect();
        cut.push('…');
        cut
    }
}
