//! `tactful bench personalize`: how long item-to-item takes to train on millions of interactions,
//! how fast it answers in-process, and how much memory it holds, each beside a reference measured
//! in the same run (sorting the same interactions; reading the same neighbour lists).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use tactful_personalize::generate::{self, Spec};
use tactful_personalize::model::{Aggregates, Contribution};
use tactful_personalize::recommend::{self, Ask, Catalogue, Filter};
use tactful_personalize::release::Release;
use tactful_personalize::{Config, Interaction, ItemIx, Touch};

use crate::personalize::thousands;

#[derive(Debug, clap::Args)]
pub struct PersonalizeArgs {
    /// People in the generated data.
    #[arg(long, default_value_t = 100_000)]
    pub people: u32,
    /// Items in the catalogue.
    #[arg(long, default_value_t = 10_000)]
    pub items: u32,
    /// Interactions trained on.
    #[arg(long, default_value_t = 5_000_000)]
    pub interactions: u64,
    /// Taste clusters in the generated data.
    #[arg(long, default_value_t = 20)]
    pub clusters: u32,
    /// Requests timed for each serving call.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

const TRAIN_TARGET: Duration = Duration::from_secs(20);
const SERVE_TARGET: Duration = Duration::from_millis(1);

pub fn personalize(args: PersonalizeArgs) -> anyhow::Result<()> {
    let spec = Spec {
        people: args.people,
        items: args.items,
        interactions: args.interactions,
        clusters: args.clusters,
        seed: args.seed,
        ..Spec::default()
    };
    let started = Instant::now();
    let progress = crate::progress::spinner("generating", "");
    let dataset = generate::generate(&spec);
    progress.finish_and_clear();
    let generated = started.elapsed();
    anyhow::ensure!(
        !dataset.interactions.is_empty(),
        "nothing generated: give people, items and interactions"
    );
    let config = Config::default();
    println!(
        "Personalization benchmark: {} people, {} items, {} interactions ({} clusters, seed {}; generated in {:.1} s), {} cores",
        thousands(u64::from(args.people)),
        thousands(u64::from(args.items)),
        thousands(dataset.interactions.len() as u64),
        args.clusters,
        args.seed,
        generated.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!();

    let progress = crate::progress::spinner("training", "");
    // Reference: only putting the same interactions, shuffled, in person and time order.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed);
    let mut sorted: Vec<Interaction> = dataset.interactions.clone();
    sorted.shuffle(&mut rng);
    let started = Instant::now();
    sorted.sort_unstable_by_key(|i| (i.person, i.touch.at));
    let sorting = started.elapsed();
    black_box(&sorted);
    drop(sorted);

    // Training: group by person (a counting sort, assuming no order), fold each person's touches
    // into their contribution, sum the contributions, release.
    let started = Instant::now();
    let contributions = contributions(&dataset.interactions, dataset.people as usize);
    let folding = started.elapsed();
    let started = Instant::now();
    let aggregates = Aggregates::train(&config, &contributions);
    let summing = started.elapsed();
    let started = Instant::now();
    let release = Release::full(&aggregates, &config, spec.end)?;
    let releasing = started.elapsed();
    let training = folding + summing + releasing;
    let peak_after_training = peak_rss();
    progress.finish_and_clear();

    let row = |name: &str, value: String, note: String| println!("  {name:<56}{value:>12}  {note}");
    let seconds = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    println!(
        "Training item-to-item (cap {}, k={}, {} neighbours per item; {} pairs held, {} released)",
        config.cap,
        config.min_support,
        config.neighbors,
        thousands(aggregates.pair_count() as u64),
        thousands(release.pair_count() as u64)
    );
    row("contributions: group by person, fold per item", seconds(folding), String::new());
    row("aggregates: item and pair sums", seconds(summing), String::new());
    row("release: k-threshold, neighbours ranked", seconds(releasing), String::new());
    row("total", seconds(training), verdict(training < TRAIN_TARGET, "target under 20 s"));
    row("reference: sort the shuffled interactions by person, time", seconds(sorting), String::new());
    row(
        "ratio total / reference",
        format!("{:.1}", training.as_secs_f64() / sorting.as_secs_f64()),
        String::new(),
    );
    println!();

    // Serving: the catalogue, and random people's histories as the server holds them.
    let mut catalogue = Catalogue::default();
    for item in &dataset.items {
        catalogue.upsert(item.clone());
    }
    let people: Vec<usize> = (0..contributions.len()).filter(|p| !contributions[*p].is_empty()).collect();
    let histories: Vec<Vec<Touch>> = (0..args.requests.max(1))
        .map(|_| contributions[people[rng.random_range(0..people.len())]].recent())
        .collect();
    let items: Vec<ItemIx> =
        (0..args.requests.max(1)).map(|_| rng.random_range(0..args.items.max(1))).collect();
    let history_len = histories.iter().map(Vec::len).sum::<usize>() as f64 / histories.len() as f64;

    let recommending = latencies(&histories, |history| {
        let ask = Ask { history, n: 10, ..Ask::default() };
        recommend::recommend(&release, &catalogue, &config, &ask).len()
    });
    let similar = latencies(&items, |item| {
        recommend::similar(&release, &catalogue, &config, *item, Filter::default(), 10, 0).len()
    });
    // Reference: reading the same neighbour lists the personal step reads, and summing their scores.
    let reading = latencies(&histories, |history| {
        let mut sum = 0.0f32;
        for touch in history.iter().take(30) {
            for &(_, score) in release.neighbours(touch.item) {
                sum += score;
            }
        }
        sum as usize
    });
    println!(
        "Serving in-process ({} requests each, n=10; histories of {:.1} items on average)",
        thousands(histories.len() as u64),
        history_len
    );
    println!("  {:<56}{:>12}{:>12}{:>12}", "", "p50", "p99", "max");
    let serving_row = |name: &str, samples: &Latencies, note: String| {
        println!(
            "  {name:<56}{:>12}{:>12}{:>12}  {note}",
            micros(samples.p50),
            micros(samples.p99),
            micros(samples.max)
        );
    };
    serving_row(
        "recommend: a person's history",
        &recommending,
        verdict(recommending.p99 < SERVE_TARGET, "target p99 under 1 ms"),
    );
    serving_row("similar: an item", &similar, verdict(similar.p99 < SERVE_TARGET, "target p99 under 1 ms"));
    serving_row("reference: read the same neighbour lists", &reading, String::new());
    println!();

    let release_bytes: usize = (0..aggregates.len() as ItemIx)
        .map(|item| std::mem::size_of_val(release.neighbours(item)))
        .sum::<usize>()
        + (release.popular().len() + release.trending().len()) * std::mem::size_of::<(ItemIx, f32)>();
    println!("Memory");
    row("aggregates (approximate)", megabytes(aggregates.approx_bytes()), String::new());
    row("released model (neighbour lists, popular, trending)", megabytes(release_bytes), String::new());
    row(
        "the interactions themselves",
        megabytes(dataset.interactions.len() * std::mem::size_of::<Interaction>()),
        String::new(),
    );
    match peak_after_training {
        Some(bytes) => row("process peak RSS after training (VmHWM)", megabytes(bytes), String::new()),
        None => row("process peak RSS", "unknown".into(), "(no /proc/self/status)".into()),
    }
    Ok(())
}

/// Every person's contribution: interactions grouped by person with a counting sort, so the order
/// they come in does not matter.
fn contributions(interactions: &[Interaction], people: usize) -> Vec<Contribution> {
    let people = interactions.iter().map(|i| i.person as usize + 1).max().unwrap_or(0).max(people);
    let mut offsets = vec![0usize; people + 1];
    for interaction in interactions {
        offsets[interaction.person as usize + 1] += 1;
    }
    for p in 0..people {
        offsets[p + 1] += offsets[p];
    }
    let mut next = offsets.clone();
    let mut touches = vec![Touch { item: 0, weight: 0, at: 0 }; interactions.len()];
    for interaction in interactions {
        let slot = &mut next[interaction.person as usize];
        touches[*slot] = interaction.touch;
        *slot += 1;
    }
    (0..people)
        .map(|p| Contribution::from_touches(touches[offsets[p]..offsets[p + 1]].iter().copied()))
        .collect()
}

struct Latencies {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Times `call` once per input (after a warm-up pass over the first few hundred).
fn latencies<T>(inputs: &[T], mut call: impl FnMut(&T) -> usize) -> Latencies {
    for input in inputs.iter().take(500) {
        black_box(call(input));
    }
    let mut samples: Vec<Duration> = inputs
        .iter()
        .map(|input| {
            let started = Instant::now();
            black_box(call(black_box(input)));
            started.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Latencies { p50: at(0.5), p99: at(0.99), max: samples[samples.len() - 1] }
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

fn megabytes(bytes: usize) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn verdict(met: bool, target: &str) -> String {
    format!("{} {target}", if met { "✓" } else { "✗" })
}

/// The process's peak resident memory, from `/proc/self/status` (Linux).
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_by_person_ignores_the_order_of_interactions() {
        let data = generate::generate(&Spec { people: 50, items: 40, interactions: 800, ..Spec::default() });
        let mut shuffled = data.interactions.clone();
        shuffled.reverse();
        let ordered = contributions(&data.interactions, 50);
        assert_eq!(ordered, contributions(&shuffled, 50));
        let first: Vec<Touch> = data.interactions.iter().filter(|i| i.person == 0).map(|i| i.touch).collect();
        assert_eq!(ordered[0], Contribution::from_touches(first));
    }

    #[test]
    fn the_benchmark_runs_small() {
        personalize(PersonalizeArgs {
            people: 300,
            items: 100,
            interactions: 5_000,
            clusters: 4,
            requests: 50,
            seed: 1,
        })
        .unwrap();
        assert!(peak_rss().is_none_or(|bytes| bytes > 1_000_000));
    }
}
