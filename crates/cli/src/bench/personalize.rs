//! `tactful bench personalize`: how long item-to-item takes to train on millions of interactions,
//! how fast it answers in-process, and how much memory it holds, each beside a reference measured
//! in the same run (sorting the same interactions; reading the same neighbour lists).

use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use tactful_personalize::generate::{self, Dataset, Spec};
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
    /// Training runs; the fastest is reported.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// Train on a `user,item,timestamp[,event]` CSV instead of generated data (as `tactful eval
    /// --csv` reads it: optional header, no event means a view), for instance the file `tactful
    /// generate` writes; people, items, interactions and clusters are then the file's.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Also write the person × item matrices trained on into this directory, for another library
    /// to learn from the very same data: `all.u32` (every distinct person–item pair) and
    /// `shared.u32` (only what people lend to the model, within the cap), each a run of
    /// little-endian u32 triples (person, item, weight: the strongest signal of the pair); and the
    /// model's released neighbours in `neighbours.u32` (item, neighbour, similarity as f32 bits).
    #[arg(long)]
    pub matrix: Option<PathBuf>,
}

const TRAIN_TARGET: Duration = Duration::from_secs(20);
const SERVE_TARGET: Duration = Duration::from_millis(1);

pub fn personalize(args: PersonalizeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (dataset, now, source) = match &args.csv {
        Some(path) => {
            let dataset = crate::personalize::read_csv(path, None)?;
            let now = dataset.interactions.iter().map(|i| i.touch.at).max().unwrap_or(0).saturating_add(1);
            let source = format!("{} (read in {:.1} s)", path.display(), started.elapsed().as_secs_f64());
            (dataset, now, source)
        }
        None => {
            let spec = Spec {
                people: args.people,
                items: args.items,
                interactions: args.interactions,
                clusters: args.clusters,
                seed: args.seed,
                ..Spec::default()
            };
            let progress = crate::progress::spinner("generating", "");
            let dataset = generate::generate(&spec);
            progress.finish_and_clear();
            let source = format!(
                "{} clusters, seed {}; generated in {:.1} s",
                args.clusters,
                args.seed,
                started.elapsed().as_secs_f64()
            );
            (dataset, spec.end, source)
        }
    };
    anyhow::ensure!(
        !dataset.interactions.is_empty(),
        "nothing to train on: give people, items and interactions, or a CSV with rows"
    );
    let config = Config::default();
    println!(
        "Personalization benchmark: {} people, {} items, {} interactions ({source}), {} cores",
        thousands(u64::from(dataset.people)),
        thousands(dataset.items.len() as u64),
        thousands(dataset.interactions.len() as u64),
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
    // into their contribution, sum the contributions, release. With several runs, the fastest counts.
    let mut best: Option<Trained> = None;
    for _ in 0..args.runs.max(1) {
        let trained = train(&dataset, &config, now)?;
        if best.as_ref().is_none_or(|b| trained.total() < b.total()) {
            best = Some(trained);
        }
    }
    let Some(Trained { contributions, aggregates, release, folding, summing, releasing }) = best else {
        anyhow::bail!("no training run");
    };
    let training = folding + summing + releasing;
    let peak_after_training = peak_rss();
    progress.finish_and_clear();
    if let Some(dir) = &args.matrix {
        write_matrices(dir, &contributions, config.cap, &release)?;
    }

    let row = |name: &str, value: String, note: String| println!("  {name:<56}{value:>12}  {note}");
    let seconds = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    println!(
        "Training item-to-item (cap {}, k={}, {} neighbours per item; {} pairs held, {} released; {})",
        config.cap,
        config.min_support,
        config.neighbors,
        thousands(aggregates.pair_count() as u64),
        thousands(release.pair_count() as u64),
        match args.runs {
            0 | 1 => "one run".to_owned(),
            runs => format!("fastest of {runs} runs"),
        }
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
    super::record(
        &format!("training item-to-item, {} interactions", thousands(dataset.interactions.len() as u64)),
        seconds(training),
        format!("{} sorting", seconds(sorting)),
        "≤ 0.5× implicit",
    );

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
        (0..args.requests.max(1)).map(|_| rng.random_range(0..dataset.items.len() as ItemIx)).collect();
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

/// One training run and how long each step took.
struct Trained {
    contributions: Vec<Contribution>,
    aggregates: Aggregates,
    release: Release,
    folding: Duration,
    summing: Duration,
    releasing: Duration,
}

impl Trained {
    fn total(&self) -> Duration {
        self.folding + self.summing + self.releasing
    }
}

fn train(dataset: &Dataset, config: &Config, now: i64) -> anyhow::Result<Trained> {
    let started = Instant::now();
    let contributions = contributions(&dataset.interactions, dataset.people as usize);
    let folding = started.elapsed();
    let started = Instant::now();
    let aggregates = Aggregates::train(config, &contributions);
    let summing = started.elapsed();
    let started = Instant::now();
    let release = Release::full(&aggregates, config, now)?;
    let releasing = started.elapsed();
    Ok(Trained { contributions, aggregates, release, folding, summing, releasing })
}

/// The matrices trained on, as `--matrix` describes them.
fn write_matrices(
    dir: &Path,
    contributions: &[Contribution],
    cap: usize,
    release: &Release,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, triples: &mut dyn Iterator<Item = [u32; 3]>| -> anyhow::Result<()> {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        for value in triples.flatten() {
            out.write_all(&value.to_le_bytes())?;
        }
        out.flush().with_context(|| format!("writing {}", path.display()))
    };
    for (name, capped) in [("all.u32", false), ("shared.u32", true)] {
        write(
            name,
            &mut contributions.iter().enumerate().flat_map(|(person, contribution)| {
                let touches = if capped { contribution.shared(cap) } else { contribution.touches() };
                touches.iter().map(move |t| [person as u32, t.item, u32::from(t.weight)])
            }),
        )?;
    }
    let items = contributions.iter().flat_map(|c| c.touches()).map(|t| t.item + 1).max().unwrap_or(0);
    write(
        "neighbours.u32",
        &mut (0..items).flat_map(|item| {
            release.neighbours(item).iter().map(move |&(other, score)| [item, other, score.to_bits()])
        }),
    )
}

/// Every person's contribution, whatever order the interactions come in.
fn contributions(interactions: &[Interaction], people: usize) -> Vec<Contribution> {
    Contribution::by_person(interactions, people)
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
            runs: 2,
            csv: None,
            matrix: None,
        })
        .unwrap();
        assert!(peak_rss().is_none_or(|bytes| bytes > 1_000_000));
    }
}
