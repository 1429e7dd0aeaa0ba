//! The console's health panels: the audit log verified, minimization at work, the recommendation
//! model, and the analytics budgets.

use super::*;

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
pub async fn audit_state(app: &App) -> Result<AuditState, StoreError> {
    let report =
        tactful_store::audit::verify(app.store.as_ref(), &[app.vault.public_key()], Vec::new()).await?;
    let latest = app.store.audit_checkpoints().await?.into_iter().max_by_key(|c| (c.size, c.at));
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
        DropReason::IdentityRefused => {
            "not linked: the person would hold more of this kind than the merge rules allow"
        }
    }
}

/// Everything dropped at the door, most often dropped first.
pub async fn drops(app: &App) -> Result<Vec<DropRow>, StoreError> {
    let mut counts = app.store.drop_counts().await?;
    counts
        .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| (&a.source, &a.path).cmp(&(&b.source, &b.path))));
    Ok(counts
        .into_iter()
        .map(|count| DropRow {
            source: app
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
pub fn model(app: &App) -> Option<ModelView> {
    let engine = app.personalization.as_ref()?;
    let info = engine.info_now();
    Some(ModelView {
        purpose: purpose_name(&app.catalog, &engine.settings.purpose),
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
pub(super) fn epsilon_text(value: f64) -> String {
    let text = format!("{value:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Each dataset's ε spent this period against its budget, from the store's budget rows.
pub async fn budgets(app: &App, now: i64) -> Result<Budgets, StoreError> {
    let Some(analytics) = app.catalog.analytics() else {
        return Ok(Budgets { rows: Vec::new(), chart: None });
    };
    let spends = app.store.budgets().await?;
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
