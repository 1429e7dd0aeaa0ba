//! `tactful bench access`: the cost of an access decision per field, of appending to the audit log,
//! and of verifying a log of a million entries, each beside a reference measured in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use tactful_domain::audit::{AuditEntry, AuditEvent, ReadDecision, Withheld};
use tactful_domain::catalog::Catalog;
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod, ConsentStates};
use tactful_domain::policy::{Policy, SubjectContext};
use tactful_store::Store;

#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    /// Decisions to time.
    #[arg(long, default_value_t = 20_000_000)]
    pub decisions: u64,
    /// Audit entries appended one per call by concurrent tasks, as reads append them.
    #[arg(long, default_value_t = 50_000)]
    pub appends: u64,
    /// Concurrent callers appending (each waits for its entry's commit, as a read does).
    #[arg(long, default_value_t = 64)]
    pub callers: u64,
    /// Entries in the log to verify.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
}

pub async fn access(args: AccessArgs) -> anyhow::Result<()> {
    println!(
        "Access benchmark: example catalog, embedded SQLite, {} cores",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!();
    decisions(args.decisions)?;
    let dir = tempfile::tempdir()?;
    let opened = tactful_store::open(
        &format!("sqlite:{}", dir.path().join("bench.db").display()),
        tactful_vault::MasterKey::generate(),
    )
    .await?;
    let store = opened.store;
    appends(&store, dir.path(), args.appends, args.callers.max(1)).await?;
    verification(&store, &opened.vault, args.entries).await?;
    Ok(())
}

/// Decisions over every (subject kind, property, purpose) of the example catalog, beside a lookup
/// of the same key in a `HashMap` of precomputed answers.
fn decisions(count: u64) -> anyhow::Result<()> {
    let progress = crate::progress::spinner("deciding", "");
    let catalog = Arc::new(
        Catalog::parse(Catalog::example_text())
            .map_err(|errors| anyhow::anyhow!(errors.render("example")))?,
    );
    let policy = Policy::new(catalog.clone());
    let now = tactful_app::now_millis();
    // Subjects across jurisdictions, ages and consent states.
    let mut subjects = Vec::new();
    for jurisdiction in (0..catalog.jurisdictions().len()).map(Some).chain([None]) {
        for minor in [false, true] {
            for (index, purpose) in catalog.purposes().iter().enumerate() {
                let consent = ConsentEvent {
                    id: format!("cr_{index}"),
                    purpose: purpose.key.clone(),
                    kind: if index % 2 == 0 { ConsentKind::Given } else { ConsentKind::Withdrawn },
                    method: ConsentMethod::Explicit,
                    at: now - 1_000,
                    expires_at: None,
                    version: purpose.version,
                    source: None,
                    jurisdiction: None,
                    verified: true,
                    provenance: None,
                };
                subjects.push(SubjectContext {
                    jurisdiction,
                    minor,
                    restricted: false,
                    consents: ConsentStates::fold(&[consent]),
                });
            }
        }
    }
    let evaluated: Vec<_> = subjects.iter().map(|subject| policy.consents(subject, now)).collect();
    let (properties, purposes) = (catalog.properties(), catalog.purposes().len());
    let per_subject = (properties.len() * purposes) as u64;

    let started = Instant::now();
    let mut permitted = 0u64;
    let mut done = 0u64;
    'outer: loop {
        for (subject, consents) in subjects.iter().zip(&evaluated) {
            for property in properties {
                for purpose in 0..purposes {
                    permitted +=
                        u64::from(black_box(policy.decide(subject, consents, property.id, purpose)).is_ok());
                }
            }
            done += per_subject;
            if done >= count {
                break 'outer;
            }
        }
    }
    let decision_ns = started.elapsed().as_nanos() as f64 / done as f64;

    // Reference: the answers precomputed into a HashMap, looked up by the same key.
    let mut answers = std::collections::HashMap::new();
    for (index, (subject, consents)) in subjects.iter().zip(&evaluated).enumerate() {
        for property in properties {
            for purpose in 0..purposes {
                answers.insert(
                    (index, property.id.index(), purpose),
                    policy.decide(subject, consents, property.id, purpose).is_ok(),
                );
            }
        }
    }
    let started = Instant::now();
    let mut reference_permitted = 0u64;
    let mut reference_done = 0u64;
    'reference: loop {
        for index in 0..subjects.len() {
            for property in properties {
                for purpose in 0..purposes {
                    reference_permitted += u64::from(
                        *black_box(answers.get(&(index, property.id.index(), purpose))).unwrap_or(&false),
                    );
                }
            }
            reference_done += per_subject;
            if reference_done >= count {
                break 'reference;
            }
        }
    }
    let reference_ns = started.elapsed().as_nanos() as f64 / reference_done as f64;
    anyhow::ensure!(permitted == reference_permitted, "the decisions and the reference disagree");
    progress.finish_and_clear();
    println!(
        "Access decisions ({done} field decisions; {:.0}% permitted)",
        100.0 * permitted as f64 / done as f64
    );
    println!(
        "  {:<52}{:>10.1} ns  {:>8.1} M/s",
        "policy.decide (purpose, role-free, consent)",
        decision_ns,
        1e3 / decision_ns
    );
    println!(
        "  {:<52}{:>10.1} ns  {:>8.1} M/s",
        "reference: HashMap lookup of the same answer",
        reference_ns,
        1e3 / reference_ns
    );
    println!("  {:<52}{:>10.2}", "ratio decide / reference", decision_ns / reference_ns);
    println!("  target: under 1 µs per field (1000 ns)");
    super::record(
        "access decision per field",
        format!("{decision_ns:.0} ns"),
        format!("{reference_ns:.0} ns lookup"),
        "< 1 µs",
    );
    println!();
    Ok(())
}

fn read_entry(index: u64) -> AuditEvent {
    AuditEvent::Read {
        actor: "key_benchmark".into(),
        role: "marketing".into(),
        purpose: "marketing.communications.email".into(),
        subject: format!("{:032x}", u128::from(index) * 0x9e37_79b9_7f4a_7c15),
        returned: vec!["user.contact.email".into(), "user.name.first".into()],
        withheld: vec![Withheld {
            category: "user.contact.address".into(),
            reason: "role_may_not_read".into(),
            count: 1,
        }],
        decision: ReadDecision::Partial,
    }
}

/// Entries appended one per call by concurrent tasks (each waiting for its commit, as a read does),
/// and in batches of 100, beside serializing and hashing the same entries only, and beside one
/// durable SQLite commit on the same disk (the floor every acknowledged write pays).
async fn appends(
    store: &Arc<dyn Store>,
    dir: &std::path::Path,
    count: u64,
    callers: u64,
) -> anyhow::Result<()> {
    let progress = crate::progress::spinner("appending to the audit log", "");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..callers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut index = task;
            while index < count {
                store.audit_append(vec![read_entry(index)], tactful_app::now_millis()).await?;
                index += callers;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let single_us = started.elapsed().as_secs_f64() * 1e6 / count as f64;

    let started = Instant::now();
    let mut index = 0;
    while index < count {
        let batch: Vec<AuditEvent> = (index..(index + 100).min(count)).map(read_entry).collect();
        index += batch.len() as u64;
        store.audit_append(batch, tactful_app::now_millis()).await?;
    }
    let batched_us = started.elapsed().as_secs_f64() * 1e6 / count as f64;

    let started = Instant::now();
    for index in 0..count {
        let entry = AuditEntry { seq: index + 1, at: tactful_app::now_millis(), event: read_entry(index) };
        black_box(AuditEntry::leaf(&entry.to_text()));
    }
    let hashing_us = started.elapsed().as_secs_f64() * 1e6 / count as f64;

    let commit_us = durable_commit_micros(&dir.join("reference.db"), 300)?;
    progress.finish_and_clear();
    println!("Audit log append ({count} entries each way, every one committed before it is answered)");
    println!("  {:<52}{:>10.2} µs", format!("one entry per call, {callers} concurrent callers"), single_us);
    println!("  {:<52}{:>10.2} µs", "batches of 100 entries", batched_us);
    println!("  {:<52}{:>10.2} µs", "reference: serialize and hash the entry only", hashing_us);
    println!("  {:<52}{:>10.2} µs", "reference: one durable SQLite commit, same disk", commit_us);
    // Each caller waits for its own entry's commit, so no schedule does better than every commit
    // shared by all the callers at once.
    let floor_us = commit_us / callers as f64;
    println!("  {:<52}{:>10.2} µs", format!("floor: that commit shared by {callers} callers"), floor_us);
    println!("  {:<52}{:>10.2}", "ratio one entry per call / floor", single_us / floor_us);
    println!("  target: under 5 µs amortized with 64 callers");
    super::record(
        &format!("audit append, {callers} callers"),
        format!("{single_us:.2} µs"),
        format!("{floor_us:.2} µs shared commit"),
        "< 5 µs",
    );
    println!();
    Ok(())
}

/// The time of one small durable commit (WAL, synchronous=FULL, as the store runs), in µs.
fn durable_commit_micros(path: &std::path::Path, commits: u32) -> anyhow::Result<f64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)",
    )?;
    let started = Instant::now();
    for index in 0..commits {
        conn.execute("INSERT INTO t (id, v) VALUES (?1, zeroblob(200))", [index])?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(commits))
}

/// A log grown to `entries`, then verified in full against its signed checkpoint, beside only reading
/// the same entries back.
async fn verification(
    store: &Arc<dyn Store>,
    vault: &tactful_vault::Vault,
    entries: u64,
) -> anyhow::Result<()> {
    let progress = crate::progress::spinner("filling and verifying the audit log", "");
    // The log's size so far, from a checkpoint of its head.
    let mut index = store.audit_checkpoint(tactful_app::now_millis()).await?.map_or(0, |head| head.size);
    let started = Instant::now();
    while index < entries {
        let batch: Vec<AuditEvent> = (index..(index + 10_000).min(entries)).map(read_entry).collect();
        index += batch.len() as u64;
        store.audit_append(batch, tactful_app::now_millis()).await?;
    }
    let filled = started.elapsed();
    store.audit_checkpoint(tactful_app::now_millis()).await?;

    let started = Instant::now();
    let mut after = 0;
    let mut read = 0u64;
    loop {
        let page = store.audit_entries(after, 20_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        read += page.len() as u64;
        black_box(&page);
    }
    let reading = started.elapsed();

    let started = Instant::now();
    let report = tactful_store::audit::verify(store.as_ref(), &[vault.public_key()], Vec::new()).await?;
    let verifying = started.elapsed();
    anyhow::ensure!(report.ok() && report.entries == read, "the benchmark log does not verify: {report:?}");
    progress.finish_and_clear();
    println!(
        "Audit log verification ({read} entries, in batches of 10,000 appended in {:.1} s)",
        filled.as_secs_f64()
    );
    println!(
        "  {:<52}{:>10.2} s",
        "tactful audit verify (every leaf, the root, checkpoints)",
        verifying.as_secs_f64()
    );
    println!("  {:<52}{:>10.2} s", "reference: read the same entries from the store", reading.as_secs_f64());
    println!("  {:<52}{:>10.2}", "ratio verify / reference", verifying.as_secs_f64() / reading.as_secs_f64());
    println!("  target: under 1 s for 1,000,000 entries");
    super::record(
        &format!("audit verify, {read} entries"),
        format!("{:.2} s", verifying.as_secs_f64()),
        format!("{:.2} s reading", reading.as_secs_f64()),
        "< 1 s per 1M",
    );
    Ok(())
}
