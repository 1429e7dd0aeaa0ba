//! Scoring a release: where each held-out item lands in the list ranked for its person, as hit rate
//! and NDCG at n.

use super::{Ranker, Target};
use crate::recommend::{self, Ask, Catalogue, Filter};
use crate::release::Release;
use crate::{Config, ItemIx, Touch};

/// Hit rate and NDCG at n over the people scored.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    pub hit_rate: f64,
    pub ndcg: f64,
    pub evaluated: usize,
}

/// Scores a release: for each target, the whole catalogue ranked for the person (by the baselines,
/// for nobody in particular, minus what the person already had), and where the held-out item
/// lands. Availability is ignored so stock does not bias the comparison.
pub fn score(
    release: &Release,
    catalogue: &Catalogue,
    config: &Config,
    targets: &[Target],
    histories: &[Vec<Touch>],
    ranker: Ranker,
    n: usize,
) -> Metrics {
    let mut metrics = Metrics::default();
    for (target, history) in targets.iter().zip(histories) {
        let ranked: Vec<ItemIx> = match ranker {
            Ranker::MostPopular => release
                .popular()
                .iter()
                .map(|(item, _)| *item)
                .filter(|item| {
                    let showable = (*item as usize) < catalogue.len() && {
                        let info = catalogue.info(*item);
                        info.known && !info.sensitive
                    };
                    showable && history.iter().all(|t| t.item != *item)
                })
                .take(n)
                .collect(),
            Ranker::Fallback | Ranker::Personal => {
                let personal = ranker == Ranker::Personal;
                let exclude = if personal { Vec::new() } else { history.iter().map(|t| t.item).collect() };
                let ask = Ask {
                    history: if personal { history } else { &[] },
                    filter: Filter { include_unavailable: true, exclude, ..Filter::default() },
                    n,
                    ..Ask::default()
                };
                recommend::recommend(release, catalogue, config, &ask).into_iter().map(|r| r.item).collect()
            }
        };
        if let Some(rank) = ranked.iter().position(|item| *item == target.item) {
            metrics.hit_rate += 1.0;
            metrics.ndcg += 1.0 / (rank as f64 + 2.0).log2();
        }
        metrics.evaluated += 1;
    }
    if metrics.evaluated > 0 {
        metrics.hit_rate /= metrics.evaluated as f64;
        metrics.ndcg /= metrics.evaluated as f64;
    }
    metrics
}
