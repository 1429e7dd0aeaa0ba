//! `tactful generate` and `tactful eval`: synthetic shop activity with planted structure, written as
//! files anyone can load elsewhere, and the offline evaluation of the personalization models on it
//! (or on any `user,item,timestamp` CSV), so quality and the cost of privacy are measured, not claimed.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use tactful_personalize::eval::{self, CsvReader, Options, Ranker, Report};
use tactful_personalize::generate::{self, Dataset, Event, Spec};
use tactful_personalize::recommend::ItemInfo;
use tactful_personalize::{DAY_MS, Weights};

/// What to generate (shared by `generate`, `eval` and the benchmark).
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// People. The default is a shop's worth: differential privacy needs many people per item pair
    /// (at 20,000, no pair survives the noise at ε=4 with the default cap).
    #[arg(long, default_value_t = 100_000)]
    pub people: u32,
    /// Items in the catalogue.
    #[arg(long, default_value_t = 2_000)]
    pub items: u32,
    /// Interactions (views, add-to-carts, purchases) in all.
    #[arg(long, default_value_t = 2_000_000)]
    pub interactions: u64,
    /// Taste clusters (each prefers two categories of items).
    #[arg(long, default_value_t = 20)]
    pub clusters: u32,
    /// Zipf exponent of item popularity within a category (0: every item alike).
    #[arg(long, default_value_t = generate::ITEM_SKEW)]
    pub zipf: f64,
    /// Distinct items each person comes to, about (0.6 to 1.4 times it); --interactions is then
    /// not used. Without it, activity is heavy-tailed and sums to --interactions.
    #[arg(long)]
    pub items_per_person: Option<u32>,
    /// Share of items in the sensitive "health" category (and of sessions spent there).
    #[arg(long, default_value_t = 0.02)]
    pub sensitive_share: f64,
    /// Days of activity.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Seed of the data (the same seed gives the same data) and of the sample of people scored.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// When the activity ends (RFC 3339). Fixed by default, so a seed gives the same data any day.
    #[arg(long, default_value = "2026-04-01T00:00:00Z")]
    pub end: String,
}

impl DataArgs {
    pub fn spec(&self) -> anyhow::Result<Spec> {
        anyhow::ensure!(
            (0.0..=0.5).contains(&self.sensitive_share),
            "--sensitive-share must be between 0 and 0.5, not {}",
            self.sensitive_share
        );
        anyhow::ensure!(self.days > 0, "--days must be at least 1");
        anyhow::ensure!(
            self.zipf.is_finite() && (0.0..=5.0).contains(&self.zipf),
            "--zipf must be between 0 and 5, not {}",
            self.zipf
        );
        anyhow::ensure!(
            self.items_per_person.is_none_or(|n| (1..=self.items.max(1)).contains(&n)),
            "--items-per-person must be between 1 and --items ({})",
            self.items
        );
        let end = time::OffsetDateTime::parse(&self.end, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("--end {:?} is not an RFC 3339 time", self.end))?;
        Ok(Spec {
            people: self.people,
            items: self.items,
            interactions: self.interactions,
            clusters: self.clusters,
            item_skew: self.zipf,
            items_per_person: self.items_per_person,
            sensitive_share: self.sensitive_share,
            days: self.days,
            seed: self.seed,
            end: i64::try_from(end.unix_timestamp_nanos() / 1_000_000).context("--end is out of range")?,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Directory to write `items.jsonl` and `interactions.csv` into (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// People scored (a seeded sample of those with two distinct items; training always uses everyone).
    #[arg(long, default_value_t = 5_000)]
    pub users: usize,
    /// Evaluate on a CSV of `user,item,timestamp[,event]` lines instead of generated data
    /// (optional header; Unix seconds or milliseconds, or RFC 3339; no event means a view).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// With --csv: the items, one JSON object per line as `tactful generate` writes them, for their
    /// categories and sensitive flags (without it, items have no category and none is sensitive).
    #[arg(long, requires = "csv")]
    pub catalogue: Option<PathBuf>,
}

/// `tactful generate`.
pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let spec = args.data.spec()?;
    let started = Instant::now();
    let progress = crate::progress::spinner("generating", "");
    let dataset = generate::generate(&spec);
    progress.finish_and_clear();
    let generated = started.elapsed();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let started = Instant::now();
    let items_path = args.out.join("items.jsonl");
    write_items(&items_path, &dataset.items)?;
    let interactions_path = args.out.join("interactions.csv");
    write_interactions(&interactions_path, &dataset)?;
    println!(
        "generated {} people, {} items ({} sensitive), {} interactions over {} days (seed {}) in {:.1} s; wrote {} and {} in {:.1} s",
        thousands(u64::from(dataset.people)),
        thousands(dataset.items.len() as u64),
        dataset.items.iter().filter(|i| i.sensitive).count(),
        thousands(dataset.interactions.len() as u64),
        spec.days,
        spec.seed,
        generated.as_secs_f64(),
        items_path.display(),
        interactions_path.display(),
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// One JSON object per item; prices in minor units.
fn write_items(path: &Path, items: &[ItemInfo]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    #[derive(serde::Serialize)]
    struct Item<'a> {
        id: &'a str,
        name: String,
        categories: &'a [String],
        sensitive: bool,
        available: bool,
        price: Option<i64>,
    }
    for (index, item) in items.iter().enumerate() {
        let category = item.categories.first().map_or("", String::as_str);
        let line = Item {
            id: &item.id,
            name: format!("Product {index} ({category})"),
            categories: &item.categories,
            sensitive: item.sensitive,
            available: item.available,
            price: item.price,
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `user,item,timestamp,event` lines, RFC 3339 times, Segment e-commerce event names.
fn write_interactions(path: &Path, dataset: &Dataset) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(b"user,item,timestamp,event\n")?;
    let progress = crate::progress::bar(dataset.interactions.len() as u64, "writing", "interactions");
    let weights = Weights::default();
    let width = dataset.people.saturating_sub(1).to_string().len().max(6);
    let mut line = String::with_capacity(96);
    for interaction in &dataset.interactions {
        use std::fmt::Write as _;
        line.clear();
        let _ = write!(line, "user-{:0width$},", interaction.person);
        line.push_str(&dataset.items[interaction.touch.item as usize].id);
        line.push(',');
        generate::push_rfc3339(&mut line, interaction.touch.at);
        line.push(',');
        line.push_str(Event::from_weight(interaction.touch.weight, &weights).name());
        line.push('\n');
        out.write_all(line.as_bytes())?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads items as `tactful generate` writes them.
fn read_items(path: &Path) -> anyhow::Result<Vec<ItemInfo>> {
    #[derive(serde::Deserialize)]
    struct Item {
        id: String,
        #[serde(default)]
        categories: Vec<String>,
        #[serde(default)]
        sensitive: bool,
        #[serde(default = "yes")]
        available: bool,
        #[serde(default)]
        price: Option<i64>,
    }
    fn yes() -> bool {
        true
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut items = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let item: Item = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: not an item", path.display(), number + 1))?;
        anyhow::ensure!(
            ids.insert(item.id.clone()),
            "{}: line {}: item {:?} appears twice",
            path.display(),
            number + 1,
            item.id
        );
        items.push(ItemInfo {
            id: item.id,
            categories: item.categories,
            sensitive: item.sensitive,
            available: item.available,
            price: item.price,
            known: true,
        });
    }
    Ok(items)
}

/// Reads a CSV file record by record.
pub(crate) fn read_csv(path: &Path, catalogue: Option<&Path>) -> anyhow::Result<Dataset> {
    let mut reader = match catalogue {
        Some(catalogue) => CsvReader::with_items(read_items(catalogue)?),
        None => CsvReader::new(),
    };
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let progress = crate::progress::bytes(file.metadata().map_or(0, |meta| meta.len()), "reading");
    let read = reader.read(BufReader::with_capacity(1 << 20, progress.wrap_read(file)));
    progress.finish_and_clear();
    read.with_context(|| path.display().to_string())?;
    Ok(reader.finish())
}

/// `tactful eval`.
pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (dataset, source) = match &args.csv {
        Some(path) => {
            let dataset = read_csv(path, args.catalogue.as_deref())?;
            (dataset, format!("{} (read in {:.1} s)", path.display(), started.elapsed().as_secs_f64()))
        }
        None => {
            let spec = args.data.spec()?;
            let progress = crate::progress::spinner("generating", "");
            let dataset = generate::generate(&spec);
            progress.finish_and_clear();
            let per_person =
                spec.items_per_person.map_or_else(String::new, |n| format!(", about {n} items each"));
            let source = format!(
                "generated: {} taste clusters, Zipf {}{per_person}, {} days, seed {} ({:.1} s; `tactful generate` with the same flags writes it)",
                spec.clusters,
                spec.item_skew,
                spec.days,
                spec.seed,
                started.elapsed().as_secs_f64()
            );
            (dataset, source)
        }
    };
    let options = Options { users: args.users, seed: args.data.seed, ..Options::default() };
    let origin = Instant::now();
    let started = Instant::now();
    let progress = crate::progress::spinner("training and scoring every model", "");
    let report = eval::evaluate(&dataset, &options, &|| origin.elapsed());
    progress.finish_and_clear();
    let report = report?;
    print_report(&dataset, &report, &source, &options);
    println!();
    println!("evaluated in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn print_report(dataset: &Dataset, report: &Report, source: &str, options: &Options) {
    let span_days = {
        let (first, last) = dataset
            .interactions
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), i| (lo.min(i.touch.at), hi.max(i.touch.at)));
        if first <= last { (last - first) as f64 / DAY_MS as f64 } else { 0.0 }
    };
    println!(
        "Personalization quality: leave-last-out, the whole catalogue ranked, HR@{n} and NDCG@{n}",
        n = options.n
    );
    println!("  data:     {source}");
    println!(
        "            {} people, {} items ({} sensitive), {} interactions over {:.0} days",
        thousands(report.people as u64),
        thousands(report.items as u64),
        dataset.items.iter().filter(|i| i.sensitive).count(),
        thousands(report.interactions as u64),
        span_days
    );
    println!(
        "  split:    each person's last new item held out (with everything from its first touch on: {} touches);",
        thousands(report.held_out as u64)
    );
    println!(
        "            {} touches of sensitive items excluded from training and targets; trained on {} touches",
        thousands(report.sensitive_dropped as u64),
        thousands(report.training_touches as u64)
    );
    println!(
        "  scored:   {} of {} people with two distinct items or more (sample seed {}); everyone trains",
        thousands(report.evaluated as u64),
        thousands(report.eligible as u64),
        options.seed
    );
    println!();
    println!(
        "  {:<14}{:<42}{:>8}{:>9}{:>9}{:>17}{:>11}{:>12}{:>8}",
        "model",
        "setting",
        format!("HR@{}", options.n),
        format!("NDCG@{}", options.n),
        "vs best",
        "ε, δ spent",
        "pairs",
        "coverage",
        "train"
    );
    for row in &report.rows {
        let spent = match row.spent {
            Some(spent) => format!("{:.2}, {:.0e}", spent.epsilon, spent.delta),
            None => "—".to_owned(),
        };
        let (pairs, coverage) = if row.setting.ranker == Ranker::Personal {
            (
                thousands(row.pairs as u64),
                format!("{:.1}%", 100.0 * row.items_with_neighbours as f64 / report.items.max(1) as f64),
            )
        } else {
            ("—".to_owned(), "—".to_owned())
        };
        println!(
            "  {:<14}{:<42}{:>8.4}{:>9.4}{:>9}{:>17}{:>11}{:>12}{:>7.1}s",
            row.setting.model,
            row.setting.setting,
            row.metrics.hit_rate,
            row.metrics.ndcg,
            format!("{:+.1}%", 100.0 * report.change(row)),
            spent,
            pairs,
            coverage,
            row.train.as_secs_f64()
        );
    }
    println!();
    println!(
        "  vs best: HR@{} against the best row without a privacy protection. pairs: item pairs released;",
        options.n
    );
    println!("  coverage: items with at least one released neighbour. train: contributions and aggregates");
    println!(
        "  ({:.1} s, shared by every row) plus the row's release. Noise is drawn afresh on every run.",
        report.aggregation.as_secs_f64()
    );
    for epsilon in [4.0, 1.0] {
        let at = |gaussian: bool| {
            report
                .rows
                .iter()
                .filter(|r| r.setting.gaussian() == gaussian && r.setting.config.epsilon == Some(epsilon))
                .map(|r| report.kept(r))
                .reduce(f64::max)
        };
        if let (Some(gaussian), Some(threshold)) = (at(true), at(false)) {
            println!(
                "  ε = {epsilon}: the Gaussian release over the catalogue's pairs keeps {:.0}% of the best non-private HR@{}; the noisy threshold at best {:.0}%",
                100.0 * gaussian,
                options.n,
                100.0 * threshold
            );
        }
    }
    for (setting, spent) in report.rows.iter().filter_map(|r| r.spent.map(|s| (&r.setting.setting, s))) {
        if matches!(spent.mechanism, tactful_personalize::Mechanism::Gaussian { .. }) {
            println!("  {setting}: {}", spent.guarantee());
        }
    }
    let baseline = report.best_baseline_hit_rate();
    if let Some(open) = report.row("item-to-item", false, None).filter(|_| baseline > 0.0) {
        println!(
            "  item-to-item (k=1) against the better popularity baseline: {:.2}× the HR@{}",
            open.metrics.hit_rate / baseline,
            options.n
        );
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        for (value, text) in
            [(0, "0"), (999, "999"), (1_000, "1,000"), (5_000_000, "5,000,000"), (12_345, "12,345")]
        {
            assert_eq!(thousands(value), text);
        }
    }

    #[test]
    fn generated_times_are_the_rfc3339_that_time_writes() {
        let format = time::format_description::well_known::Rfc3339;
        for at in [0i64, 1_775_001_599_999, 951_782_400_123, 1_700_000_000_500] {
            let ours = generate::rfc3339(at);
            let parsed = time::OffsetDateTime::parse(&ours, &format).unwrap();
            assert_eq!(parsed.unix_timestamp_nanos() / 1_000_000, i128::from(at), "{ours}");
        }
    }

    #[test]
    fn written_files_read_back_as_the_same_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataArgs {
            people: 200,
            items: 80,
            interactions: 3_000,
            clusters: 4,
            zipf: 1.0,
            items_per_person: None,
            sensitive_share: 0.05,
            days: 30,
            seed: 3,
            end: "2026-04-01T00:00:00Z".into(),
        };
        generate(GenerateArgs { data: data.clone(), out: dir.path().to_path_buf() }).unwrap();
        let written = generate::generate(&data.spec().unwrap());
        let read =
            read_csv(&dir.path().join("interactions.csv"), Some(&dir.path().join("items.jsonl"))).unwrap();
        assert_eq!(read.items, written.items);
        assert_eq!(read.interactions, written.interactions);
        assert_eq!(read.people, written.interactions.last().unwrap().person + 1);
    }

    #[test]
    fn the_default_flags_are_the_default_spec() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            data: DataArgs,
        }
        let flags = <Flags as clap::Parser>::parse_from(["tactful"]);
        assert_eq!(flags.data.spec().unwrap(), Spec::default());
    }

    #[test]
    fn bad_flags_are_named() {
        let data = DataArgs {
            people: 1,
            items: 1,
            interactions: 1,
            clusters: 1,
            zipf: 1.0,
            items_per_person: None,
            sensitive_share: 0.0,
            days: 1,
            seed: 1,
            end: "tomorrow".into(),
        };
        let error = data.spec().unwrap_err().to_string();
        assert!(error.contains("--end \"tomorrow\""), "{error}");
        let error = DataArgs { sensitive_share: 2.0, ..data }.spec().unwrap_err().to_string();
        assert!(error.contains("--sensitive-share"), "{error}");
    }
}
