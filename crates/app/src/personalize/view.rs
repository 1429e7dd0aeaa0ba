//! Recommendations as they are answered: business filters resolved against the model, each item
//! with its reason, and reasons in words for people.

use super::*;

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
    pub(super) fn resolve(self, catalogue: &Catalogue) -> Filter {
        Filter {
            // Compared with items' categories, which are normalized when they are written.
            categories: self
                .categories
                .iter()
                .map(|c| normalize_category(c))
                .filter(|c| !c.is_empty())
                .collect(),
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

pub(super) fn view(catalogue: &Catalogue, picked: Recommendation) -> Picked {
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
