//! `tactful breach`: given a compromised API key, a role, or a time window, finds in the audit log
//! every read that exposed personal data, names the people and the kinds of data affected, and
//! drafts one notification per person in plain words (what happened, which data, what to do).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tactful_app::reads::{RIGHTS_PURPOSE, Read, Reader};
use tactful_app::{App, Config};
use tactful_domain::segment::{format_time, parse_time};
use tactful_domain::taxonomy::Taxonomy;

#[derive(Debug, clap::Args)]
pub struct BreachArgs {
    #[command(flatten)]
    pub config: Box<Config>,
    /// The compromised API key, by its id (key_…, as `tactful api-keys list` shows it).
    #[arg(long)]
    pub key: Option<String>,
    /// The compromised role (every key that had it).
    #[arg(long)]
    pub role: Option<String>,
    /// Start of the window (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long, value_parser = time)]
    pub since: Option<i64>,
    /// End of the window (RFC 3339).
    #[arg(long, value_parser = time)]
    pub until: Option<i64>,
    /// Where to write the report and the drafted notifications.
    #[arg(long, default_value = "breach-report")]
    pub out: PathBuf,
}

fn time(text: &str) -> Result<i64, String> {
    parse_time(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 time (2026-11-01T00:00:00Z)"))
}

/// What one person had exposed.
#[derive(Debug, Default)]
struct Exposure {
    reads: u64,
    first: i64,
    last: i64,
    categories: BTreeSet<String>,
    purposes: BTreeSet<String>,
}

pub async fn run(state: &App, args: BreachArgs) -> anyhow::Result<()> {
    if args.key.is_none() && args.role.is_none() && args.since.is_none() && args.until.is_none() {
        bail!("say what was compromised: --key, --role, and/or a window with --since/--until");
    }
    let (since, until) = (args.since.unwrap_or(i64::MIN), args.until.unwrap_or(i64::MAX));
    if since > until {
        bail!("--since comes after --until");
    }
    // Reads that returned something, by the subject pseudonym they name.
    let mut exposed: HashMap<String, Exposure> = HashMap::new();
    let every_category: Vec<String> = state
        .catalog
        .properties()
        .iter()
        .map(|property| property.category.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut after = 0;
    loop {
        let page = state.store.audit_entries(after, 20_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            let Ok(read) = serde_json::from_str::<Value>(&entry.text) else { continue };
            let returned: Vec<String> = read["returned"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect();
            // A link to a person's privacy settings shows them everything held: its issuer could
            // have opened it, so it counts as a read of every kind of data the catalog holds.
            let link = read["kind"] == "preference_center" && read["action"] == "link_issued";
            let returned = if link { every_category.clone() } else { returned };
            let matches = (read["kind"] == "read" || (link && args.role.is_none()))
                && !returned.is_empty()
                && args.key.as_deref().is_none_or(|key| read["actor"] == key)
                && args.role.as_deref().is_none_or(|role| read["role"] == role)
                && (since..=until).contains(&entry.at);
            if !matches {
                continue;
            }
            let pseudonym = read["subject"].as_str().unwrap_or_default().to_owned();
            let exposure = exposed
                .entry(pseudonym)
                .or_insert_with(|| Exposure { first: entry.at, ..Exposure::default() });
            exposure.reads += 1;
            exposure.first = exposure.first.min(entry.at);
            exposure.last = exposure.last.max(entry.at);
            exposure.categories.extend(returned);
            if let Some(purpose) = read["purpose"].as_str() {
                exposure.purposes.insert(purpose.to_owned());
            }
        }
    }
    // Who the pseudonyms name: every subject's pseudonym, computed with the deployment's key.
    let mut subjects: HashMap<String, String> = HashMap::new();
    let mut cursor = None;
    loop {
        let page = state.store.subject_ids(cursor.clone(), 10_000).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.clone());
        for subject in page {
            let pseudonym = state.vault.subject_pseudonym(&subject);
            if exposed.contains_key(&pseudonym) {
                subjects.insert(pseudonym, subject);
            }
        }
    }

    std::fs::create_dir_all(args.out.join("notifications"))
        .with_context(|| format!("creating {}", args.out.display()))?;
    restrict(&args.out);
    let mut people = Vec::new();
    let mut categories_total: BTreeMap<String, u64> = BTreeMap::new();
    let mut without_contact = 0;
    let mut erased = 0;
    let mut ordered: Vec<(&String, &Exposure)> = exposed.iter().collect();
    ordered.sort_by_key(|(_, exposure)| exposure.first);
    for (pseudonym, exposure) in ordered {
        for category in &exposure.categories {
            *categories_total.entry(category.clone()).or_default() += 1;
        }
        let Some(subject) = subjects.get(pseudonym) else {
            erased += 1;
            continue;
        };
        let contact = contact(state, subject).await?;
        if contact.is_none() {
            without_contact += 1;
        }
        let draft = notification(state, exposure, contact.as_ref());
        write_private(&args.out.join("notifications").join(format!("{subject}.txt")), draft.as_bytes())?;
        people.push(json!({
            "subject": subject,
            "reads": exposure.reads,
            "first": format_time(exposure.first),
            "last": format_time(exposure.last),
            "categories": exposure.categories,
            "purposes": exposure.purposes,
            "contact": contact.as_ref().map(|(kind, _)| kind),
        }));
    }
    let report = json!({
        "generated_at": format_time(tactful_app::now_millis()),
        "filters": {
            "key": args.key, "role": args.role,
            "since": args.since.map(format_time), "until": args.until.map(format_time),
        },
        "people_affected": people.len() + erased,
        "erased_since": erased,
        "categories": categories_total,
        "people": people,
    });
    write_private(&args.out.join("report.json"), format!("{report:#}\n").as_bytes())?;
    println!(
        "{} people affected ({} erased since, {} without an email or phone to reach them).",
        people.len() + erased,
        erased,
        without_contact
    );
    for (category, count) in &categories_total {
        println!("  {count:>6}  {category}");
    }
    println!(
        "Report and one drafted notification per person in {} (they hold contact details: keep the folder private).",
        args.out.display()
    );
    Ok(())
}

/// How to reach a person: their email, else their phone. Opening it is a read like any other: it is
/// in the person's access log, by the operator, for the legal obligation to notify them.
async fn contact(state: &App, subject: &str) -> anyhow::Result<Option<(String, String)>> {
    let Some(data) = state.store.subject_summary(subject).await? else { return Ok(None) };
    let identities = data.open_identities(&state.vault)?;
    for kind in ["email", "phone"] {
        if let Some(found) = identities.iter().find(|identity| identity.kind == kind) {
            let category = state
                .catalog
                .properties()
                .iter()
                .find(|property| property.identifier.as_ref().is_some_and(|k| k.as_str() == kind))
                .map_or("user.contact", |property| property.category.as_str());
            let mut read = Read::new(state, &Reader::Operator, RIGHTS_PURPOSE, subject);
            read.returned(category);
            read.commit().await?;
            return Ok(Some((kind.to_owned(), found.value.to_string())));
        }
    }
    Ok(None)
}

/// A plain-words notification for one person.
fn notification(state: &App, exposure: &Exposure, contact: Option<&(String, String)>) -> String {
    let brand = state.catalog.brand();
    let taxonomy = Taxonomy::builtin();
    let kinds: Vec<String> = exposure
        .categories
        .iter()
        .map(|category| {
            // Mid-sentence: "contact email", but "IP address".
            let name = taxonomy.plain_category_name(category);
            let mut chars = name.chars();
            match (chars.next(), chars.next()) {
                (Some(first), Some(second)) if !second.is_uppercase() => {
                    first.to_lowercase().chain(name[first.len_utf8()..].chars()).collect()
                }
                _ => name,
            }
        })
        .collect();
    let to = contact.map_or_else(
        || "(no email or phone on record: reach them another way)".to_owned(),
        |(_, value)| value.clone(),
    );
    let when = if exposure.first == exposure.last {
        format!("on {}", format_time(exposure.first))
    } else {
        format!("between {} and {}", format_time(exposure.first), format_time(exposure.last))
    };
    let contact_line = brand.contact.as_deref().map_or_else(String::new, |contact| format!(" at {contact}"));
    format!(
        "To: {to}\nSubject: About your information at {name}\n\n\
         We are writing to tell you about a security incident that concerns some of your information.\n\n\
         What happened: {when}, someone who should not have had access was able to read information we \
         hold about you.\n\n\
         Which information: {kinds}.\n\n\
         What we are doing: we have closed that access and are reviewing how it happened.\n\n\
         What you can do: be careful with unexpected messages that seem to come from us or mention your \
         purchases. You can ask us for a copy of everything we hold about you, or to erase it, at any time.\n\n\
         If you have questions, contact us{contact_line}.\n\n{name}\n",
        name = brand.name,
        kinds = kinds.join(", "),
    )
}

fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)?;
    Ok(())
}
