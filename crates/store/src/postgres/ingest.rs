//! Ingestion on PostgreSQL: one transaction per request, a handful of set-based statements whatever
//! the batch size (round trips, not rows, are what costs over a network), and optimistic concurrency
//! between instances: every write that depends on what was read checks it still holds, and a batch
//! that lost a race is retried whole, seeing the winner's writes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, Row};
use tactful_domain::identity::Binding;
use tactful_domain::minimize::DropReason;
use tactful_vault::{Blind, SubjectKey};

use super::PostgresStore;
use crate::resolve::{self, Lookup, Merge, Rows};
use tactful_domain::policy::Policy;

use crate::{
    DropCount, IngestEvent, IngestOutcome, IngestStore, Result, StoreError, SubjectState, seal_context,
};

/// Attempts of one batch before giving up with 503 (each lost race means another instance made
/// progress, so this is reached only under pathological contention).
const MAX_ATTEMPTS: u32 = 8;
/// Unwrapped data keys kept per instance; beyond this the cache starts over.
const KEY_CACHE_LIMIT: usize = 100_000;

/// Unwrapped data keys, shared by this instance's requests.
#[derive(Default)]
pub(crate) struct KeyCache(Mutex<HashMap<String, Arc<SubjectKey>>>);

impl KeyCache {
    fn get(&self, subject: &str) -> Option<Arc<SubjectKey>> {
        self.0.lock().ok()?.get(subject).cloned()
    }

    /// Drops the keys of erased subjects, so this instance keeps no copy in memory.
    pub(super) fn forget(&self, subjects: &[String]) {
        if let Ok(mut keys) = self.0.lock() {
            for subject in subjects {
                keys.remove(subject);
            }
        }
    }

    fn put(&self, subject: &str, key: Arc<SubjectKey>) {
        if let Ok(mut keys) = self.0.lock() {
            if keys.len() >= KEY_CACHE_LIMIT {
                keys.clear();
            }
            keys.insert(subject.to_owned(), key);
        }
    }
}

pub(super) async fn ingest(
    store: &PostgresStore,
    policy: &Policy,
    events: &[IngestEvent],
) -> Result<Vec<IngestOutcome>> {
    let mut delay = Duration::from_millis(5);
    let mut attempt = 1;
    loop {
        match try_ingest(store, policy, events).await {
            Err(StoreError::Conflict(reason)) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, %reason, "a concurrent write won; retrying the batch");
                // Jitter spreads out instances that collided so they do not collide again.
                let jitter = rand_jitter(delay);
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(Duration::from_millis(500));
                attempt += 1;
            }
            Err(StoreError::Conflict(reason)) => {
                return Err(StoreError::Unavailable(format!(
                    "gave up after {attempt} conflicting attempts: {reason}"
                )));
            }
            other => return other,
        }
    }
}

fn rand_jitter(delay: Duration) -> Duration {
    let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX).max(1);
    let random =
        u64::from_le_bytes(tactful_vault::new_subject_id().as_bytes()[4..12].try_into().unwrap_or([0; 8]));
    Duration::from_nanos(random % nanos)
}

/// What the batch read before resolving: bindings (by family root), raw identity targets, and the
/// wrapped keys of every subject met.
struct Snapshot<'a> {
    store: &'a PostgresStore,
    bindings: HashMap<Blind, Binding<String>>,
    wrapped: HashMap<String, Vec<u8>>,
    states: HashMap<String, SubjectState>,
    /// The batch's identifiers that are suppressed.
    suppressed: HashSet<Blind>,
    /// Identifiers per kind of each family root met, read when the catalog limits them.
    held: HashMap<String, std::collections::BTreeMap<String, u32>>,
}

impl Lookup for Snapshot<'_> {
    fn binding(&mut self, blind: &Blind) -> Result<Option<Binding<String>>> {
        Ok(self.bindings.get(blind).cloned())
    }

    fn key(&mut self, subject: &str) -> Result<Arc<SubjectKey>> {
        if let Some(key) = self.store.keys.get(subject) {
            return Ok(key);
        }
        let wrapped = self.wrapped.get(subject).ok_or_else(|| {
            StoreError::Internal("no wrapped key was read for a subject of the batch".into())
        })?;
        let key = Arc::new(self.store.vault.subject_key(subject, wrapped)?);
        self.store.keys.put(subject, key.clone());
        Ok(key)
    }

    fn state(&mut self, subject: &str) -> Result<SubjectState> {
        self.states
            .get(subject)
            .cloned()
            .ok_or_else(|| StoreError::Internal("no state was read for a subject of the batch".into()))
    }

    fn suppressed(&mut self, blinds: &[Blind]) -> Result<bool> {
        Ok(blinds.iter().any(|blind| self.suppressed.contains(blind)))
    }

    fn identifier_counts(&mut self, root: &str) -> Result<std::collections::BTreeMap<String, u32>> {
        Ok(self.held.get(root).cloned().unwrap_or_default())
    }
}

/// A foreign-key violation here means a subject vanished (erased by another instance) between read
/// and write: retry, and the batch resolves against what is there now.
fn conflict_on_missing_subject(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(database) = &error
        && database.code().as_deref() == Some("23503")
    {
        return StoreError::Conflict("a subject was removed concurrently".into());
    }
    super::pg(error)
}

async fn try_ingest(
    store: &PostgresStore,
    policy: &Policy,
    events: &[IngestEvent],
) -> Result<Vec<IngestOutcome>> {
    let mut tx = store.pool.begin().await?;

    // One round trip reads which events are already stored, which identifiers are suppressed, and
    // where the identifiers point (those of a duplicate too: they are not consulted). The family
    // roots are share-locked until this batch commits: an erasure of one of them (which locks them
    // for update) waits, and then sees this batch's events. Each identifier finds its subject and
    // root by index (the lateral lookups), whatever the planner thinks of small tables.
    let sources: Vec<&str> = events.iter().map(|event| event.source.as_str()).collect();
    let dedupes: Vec<&[u8]> = events.iter().map(|event| event.dedupe.as_slice()).collect();
    let mut blinds: Vec<&[u8]> = Vec::new();
    for event in events {
        blinds.extend(event.identities.iter().map(|claim| claim.blind.0.as_slice()));
        if let Some(previous) = &event.alias_previous {
            blinds.extend(previous.iter().map(|claim| claim.blind.0.as_slice()));
        }
    }
    blinds.sort_unstable();
    blinds.dedup();
    let mut snapshot = Snapshot {
        store,
        bindings: HashMap::new(),
        wrapped: HashMap::new(),
        states: HashMap::new(),
        suppressed: HashSet::new(),
        held: HashMap::new(),
    };
    let mut raw_targets: HashMap<Blind, String> = HashMap::new();
    let mut stored: HashSet<(String, Vec<u8>)> = HashSet::new();
    for row in sqlx::query(
        "WITH bound AS (
             SELECT i.blind, i.subject_id, r.id AS root, r.known, r.wrapped_key
             FROM identities i
             CROSS JOIN LATERAL (SELECT COALESCE(s.merged_into, s.id) AS root FROM subjects s
                                 WHERE s.id = i.subject_id OFFSET 0) s
             JOIN subjects r ON r.id = s.root
             WHERE i.blind = ANY($3)
             FOR SHARE OF r)
         SELECT 0 AS what, e.source, e.dedupe, NULL::bytea AS blind, NULL::text AS subject_id, NULL::text AS root,
                NULL::bool AS known, NULL::bytea AS wrapped_key
         FROM events e JOIN UNNEST($1::text[], $2::bytea[]) AS k(source, dedupe)
             ON e.source = k.source AND e.dedupe = k.dedupe
         UNION ALL
         SELECT 1, NULL, NULL, blind, NULL, NULL, NULL, NULL FROM suppressions WHERE blind = ANY($3)
         UNION ALL
         SELECT 2, NULL, NULL, blind, subject_id, root, known, wrapped_key FROM bound",
    )
    .bind(&sources)
    .bind(&dedupes)
    .bind(&blinds)
    .fetch_all(&mut *tx)
    .await?
    {
        match row.try_get::<i32, _>("what")? {
            0 => {
                stored.insert((row.try_get("source")?, row.try_get("dedupe")?));
            }
            1 => {
                snapshot.suppressed.insert(crate::shared::blind_from(row.try_get("blind")?)?);
            }
            _ => {
                let blind = crate::shared::blind_from(row.try_get("blind")?)?;
                let root: String = row.try_get("root")?;
                raw_targets.insert(blind, row.try_get("subject_id")?);
                snapshot.wrapped.insert(root.clone(), row.try_get("wrapped_key")?);
                snapshot.bindings.insert(blind, Binding { subject: root, known: row.try_get("known")? });
            }
        }
    }
    let duplicate: Vec<bool> =
        events.iter().map(|event| stored.contains(&(event.source.clone(), event.dedupe.to_vec()))).collect();

    let roots: Vec<String> = snapshot.wrapped.keys().cloned().collect();
    for state in super::subjects::states_of_roots(&mut tx, &roots).await? {
        snapshot.states.insert(state.subject.clone(), state);
    }
    if policy.catalog().linking().limits_anything() && !roots.is_empty() {
        for row in sqlx::query(
            "SELECT m.root, i.kind, COUNT(*) AS held
             FROM (SELECT id, id AS root FROM subjects WHERE id = ANY($1)
                   UNION ALL SELECT id, merged_into FROM subjects WHERE merged_into = ANY($1)) m
             CROSS JOIN LATERAL (SELECT kind FROM identities i WHERE i.subject_id = m.id OFFSET 0) i
             GROUP BY 1, 2",
        )
        .bind(&roots)
        .fetch_all(&mut *tx)
        .await?
        {
            let held: i64 = row.try_get("held")?;
            snapshot
                .held
                .entry(row.try_get("root")?)
                .or_default()
                .insert(row.try_get("kind")?, u32::try_from(held).unwrap_or(u32::MAX));
        }
    }
    let now = crate::shared::now_millis();
    let rows = resolve::resolve(&store.vault, policy, events, &duplicate, &mut snapshot, now)?;
    // On any error the transaction is dropped, which rolls it back: nothing is half-written.
    let outcomes = write(&mut tx, &mut snapshot, &raw_targets, rows).await?;
    tx.commit().await?;
    Ok(outcomes)
}

async fn write(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    snapshot: &mut Snapshot<'_>,
    raw_targets: &HashMap<Blind, String>,
    mut rows: Rows,
) -> Result<Vec<IngestOutcome>> {
    let now = crate::shared::now_millis();
    write_subjects(tx, snapshot, &rows, now).await?;
    write_identities(tx, &mut rows, raw_targets, now).await?;
    for merge in &rows.merges {
        merge_subjects(tx, snapshot, &rows, merge).await?;
    }
    write_attributes(tx, &rows).await?;
    super::consent::write_consents(tx, &rows.consents, now).await?;
    super::deliveries::enqueue(tx, &rows.deliveries, now).await?;
    write_events(tx, &mut rows, now).await?;
    // Last: the audit log's lock is held only from here to the commit.
    super::audit::append_audit(tx, &rows.audit, now).await?;
    Ok(rows.outcomes)
}

/// The subjects this batch created, and those of them merged into another at once.
async fn write_subjects(
    conn: &mut PgConnection,
    snapshot: &Snapshot<'_>,
    rows: &Rows,
    now: i64,
) -> Result<()> {
    if !rows.created.is_empty() {
        let ids: Vec<&str> = rows.created.iter().map(|created| created.id.as_str()).collect();
        let wrapped: Vec<&[u8]> = rows.created.iter().map(|created| created.wrapped.as_slice()).collect();
        let known: Vec<bool> = rows.created.iter().map(|created| created.known).collect();
        let jurisdictions: Vec<Option<&str>> =
            rows.created.iter().map(|created| created.jurisdiction.as_deref()).collect();
        let minors: Vec<bool> = rows.created.iter().map(|created| created.minor).collect();
        sqlx::query(
            "INSERT INTO subjects (id, wrapped_key, known, jurisdiction, minor, created_at)
             SELECT id, wrapped_key, known, jurisdiction, minor, $4
             FROM UNNEST($1::text[], $2::bytea[], $3::bool[], $5::text[], $6::bool[]) AS t(id, wrapped_key, known, jurisdiction, minor)",
        )
        .bind(&ids)
        .bind(&wrapped)
        .bind(&known)
        .bind(now)
        .bind(&jurisdictions)
        .bind(&minors)
        .execute(&mut *conn)
        .await?;
        for created in &rows.created {
            snapshot.store.keys.put(&created.id, created.key.clone());
        }
    }
    if !rows.created_merged.is_empty() {
        let (ids, roots): (Vec<&str>, Vec<&str>) =
            rows.created_merged.iter().map(|(id, root)| (id.as_str(), root.as_str())).unzip();
        sqlx::query(
            "UPDATE subjects SET merged_into = t.root FROM UNNEST($1::text[], $2::text[]) AS t(id, root)
             WHERE subjects.id = t.id",
        )
        .bind(&ids)
        .bind(&roots)
        .execute(&mut *conn)
        .await
        .map_err(conflict_on_missing_subject)?;
    }
    Ok(())
}

/// Identifiers: new bindings only where still unbound, moves only from where they were read.
async fn write_identities(
    conn: &mut PgConnection,
    rows: &mut Rows,
    raw_targets: &HashMap<Blind, String>,
    now: i64,
) -> Result<()> {
    rows.identities.sort_by_key(|a| a.blind);
    let (new, moved): (Vec<_>, Vec<_>) = rows.identities.iter().partition(|row| row.previous.is_none());
    if !new.is_empty() {
        let blinds: Vec<&[u8]> = new.iter().map(|row| row.blind.0.as_slice()).collect();
        let kinds: Vec<&str> = new.iter().map(|row| row.kind.as_str()).collect();
        let subjects: Vec<&str> = new.iter().map(|row| row.subject.as_str()).collect();
        let sealed: Vec<&[u8]> = new.iter().map(|row| row.sealed.as_slice()).collect();
        let written = sqlx::query(
            "INSERT INTO identities (blind, kind, subject_id, sealed, created_at)
             SELECT blind, kind, subject_id, sealed, $5
             FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::bytea[]) AS t(blind, kind, subject_id, sealed)
             ON CONFLICT (blind) DO NOTHING",
        )
        .bind(&blinds)
        .bind(&kinds)
        .bind(&subjects)
        .bind(&sealed)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(conflict_on_missing_subject)?
        .rows_affected();
        if written != new.len() as u64 {
            return Err(StoreError::Conflict("an identifier was bound concurrently".into()));
        }
    }
    if !moved.is_empty() {
        let blinds: Vec<&[u8]> = moved.iter().map(|row| row.blind.0.as_slice()).collect();
        let subjects: Vec<&str> = moved.iter().map(|row| row.subject.as_str()).collect();
        let sealed: Vec<&[u8]> = moved.iter().map(|row| row.sealed.as_slice()).collect();
        let expected: Vec<&str> = moved
            .iter()
            .map(|row| {
                raw_targets.get(&row.blind).map_or(row.previous.as_deref().unwrap_or(""), String::as_str)
            })
            .collect();
        let written = sqlx::query(
            "UPDATE identities SET subject_id = t.subject_id, sealed = t.sealed
             FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::text[]) AS t(blind, subject_id, sealed, expected)
             WHERE identities.blind = t.blind AND identities.subject_id = t.expected",
        )
        .bind(&blinds)
        .bind(&subjects)
        .bind(&sealed)
        .bind(&expected)
        .execute(&mut *conn)
        .await
        .map_err(conflict_on_missing_subject)?
        .rows_affected();
        if written != moved.len() as u64 {
            return Err(StoreError::Conflict("an identifier moved concurrently".into()));
        }
    }
    Ok(())
}

/// Merges `merge.from` into `merge.into`, if `from` is still what was read: its members follow it,
/// and its remaining identifiers are sealed again under the key of `into`.
async fn merge_subjects(
    conn: &mut PgConnection,
    snapshot: &mut Snapshot<'_>,
    rows: &Rows,
    merge: &Merge,
) -> Result<()> {
    let merged = sqlx::query(
        "UPDATE subjects SET merged_into = $2 WHERE id = $1 AND merged_into IS NULL AND known = $3",
    )
    .bind(&merge.from)
    .bind(&merge.into)
    .bind(merge.from_known)
    .execute(&mut *conn)
    .await
    .map_err(conflict_on_missing_subject)?
    .rows_affected();
    if merged != 1 {
        return Err(StoreError::Conflict("a subject changed while it was being merged".into()));
    }
    sqlx::query("UPDATE subjects SET merged_into = $2 WHERE merged_into = $1")
        .bind(&merge.from)
        .bind(&merge.into)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE subjects SET known = known OR $2 WHERE id = $1")
        .bind(&merge.into)
        .bind(merge.from_known)
        .execute(&mut *conn)
        .await?;
    let remaining =
        sqlx::query("SELECT blind, sealed FROM identities WHERE subject_id = $1 ORDER BY blind FOR UPDATE")
            .bind(&merge.from)
            .fetch_all(&mut *conn)
            .await?;
    let (from_key, into_key) = (key_for(snapshot, rows, &merge.from)?, key_for(snapshot, rows, &merge.into)?);
    let mut blinds = Vec::with_capacity(remaining.len());
    let mut sealed = Vec::with_capacity(remaining.len());
    for row in remaining {
        let blind = crate::shared::blind_from(row.try_get("blind")?)?;
        let value: Vec<u8> = row.try_get("sealed")?;
        let plain =
            from_key.open(seal_context::IDENTITY, &seal_context::identity(&merge.from, &blind.0), &value)?;
        sealed.push(into_key.seal(
            seal_context::IDENTITY,
            &seal_context::identity(&merge.into, &blind.0),
            &plain,
        ));
        blinds.push(blind.0.to_vec());
    }
    if !blinds.is_empty() {
        sqlx::query(
            "UPDATE identities SET subject_id = $3, sealed = t.sealed
             FROM UNNEST($1::bytea[], $2::bytea[]) AS t(blind, sealed) WHERE identities.blind = t.blind",
        )
        .bind(&blinds)
        .bind(&sealed)
        .bind(&merge.into)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Subjects that became known, and what events told of their jurisdiction and age.
async fn write_attributes(conn: &mut PgConnection, rows: &Rows) -> Result<()> {
    if !rows.known.is_empty() {
        sqlx::query("UPDATE subjects SET known = TRUE WHERE id = ANY($1)")
            .bind(&rows.known)
            .execute(&mut *conn)
            .await?;
    }
    if !rows.attributes.is_empty() {
        let subjects: Vec<&str> = rows.attributes.iter().map(|row| row.subject.as_str()).collect();
        let jurisdictions: Vec<Option<&str>> =
            rows.attributes.iter().map(|row| row.jurisdiction.as_deref()).collect();
        let minors: Vec<bool> = rows.attributes.iter().map(|row| row.minor).collect();
        sqlx::query(
            "UPDATE subjects SET jurisdiction = t.jurisdiction, minor = t.minor
             FROM UNNEST($1::text[], $2::text[], $3::bool[]) AS t(id, jurisdiction, minor) WHERE subjects.id = t.id",
        )
        .bind(&subjects)
        .bind(&jurisdictions)
        .bind(&minors)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The events, with a dirty mark for each subject that had one stored, the profile values they set
/// and what minimization dropped, in one round trip; an event a racing retry stored first is
/// answered as a duplicate.
async fn write_events(conn: &mut PgConnection, rows: &mut Rows, now: i64) -> Result<()> {
    if rows.events.is_empty() && rows.profile.is_empty() && rows.drops.is_empty() {
        return Ok(());
    }
    let events = &rows.events;
    let sources: Vec<&str> = events.iter().map(|event| event.source.as_str()).collect();
    let dedupes: Vec<&[u8]> = events.iter().map(|event| event.dedupe.as_slice()).collect();
    let subjects: Vec<&str> = events.iter().map(|event| event.subject.as_str()).collect();
    let kinds: Vec<&str> = events.iter().map(|event| event.kind).collect();
    let names: Vec<Option<&str>> = events.iter().map(|event| event.name.as_deref()).collect();
    let timestamps: Vec<i64> = events.iter().map(|event| event.timestamp).collect();
    let received: Vec<i64> = events.iter().map(|event| event.received_at).collect();
    let sealed: Vec<&[u8]> = events.iter().map(|event| event.sealed.as_slice()).collect();
    let trim_at: Vec<i64> = events.iter().map(|event| event.trim_at).collect();
    let expires_at: Vec<i64> = events.iter().map(|event| event.expires_at).collect();
    let profile = &rows.profile;
    let profile_subjects: Vec<&str> = profile.iter().map(|value| value.subject.as_str()).collect();
    let profile_paths: Vec<&str> = profile.iter().map(|value| value.path.as_str()).collect();
    let profile_sealed: Vec<&[u8]> = profile.iter().map(|value| value.sealed.as_slice()).collect();
    let profile_updated: Vec<i64> = profile.iter().map(|value| value.updated_at).collect();
    let drops = &rows.drops;
    let drop_sources: Vec<&str> = drops.iter().map(|drop| drop.0.as_str()).collect();
    let drop_paths: Vec<&str> = drops.iter().map(|drop| drop.1.as_str()).collect();
    let drop_reasons: Vec<&str> = drops.iter().map(|drop| drop.2).collect();
    let drop_counts: Vec<i64> = drops.iter().map(|drop| drop.3).collect();
    // A retry racing its original on another instance: the first to commit stores the event; here
    // it simply does not come back, and is answered as a duplicate. Each subject that had an event
    // stored is marked: its contribution to the shared model must be recomputed. An older identify
    // arriving late does not overwrite a newer profile value.
    let inserted: HashSet<(String, Vec<u8>)> = sqlx::query(concat!(
        "WITH inserted AS (
             INSERT INTO events (source, dedupe, subject_id, type, name, timestamp, received_at, sealed, trim_at,
                                 expires_at)
             SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::int8[],
                                  $7::int8[], $8::bytea[], $9::int8[], $10::int8[])
             ON CONFLICT (source, dedupe) DO NOTHING
             RETURNING source, dedupe, subject_id),
         marked AS (
             INSERT INTO model_dirty (subject_id, marked_at)
             SELECT DISTINCT subject_id, $11::int8 FROM inserted ORDER BY subject_id",
        super::model::renew_mark!(),
        "),
         profile AS (
             INSERT INTO profile_values (subject_id, path, sealed, updated_at)
             SELECT * FROM UNNEST($12::text[], $13::text[], $14::bytea[], $15::int8[])
             ON CONFLICT (subject_id, path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at
             WHERE excluded.updated_at >= profile_values.updated_at),
         dropped AS (
             INSERT INTO dropped_properties (source, path, reason, count, last_seen)
             SELECT source, path, reason, count, $11 FROM UNNEST($16::text[], $17::text[], $18::text[], $19::int8[])
                 AS t(source, path, reason, count)
             ON CONFLICT (source, path, reason)
             DO UPDATE SET count = dropped_properties.count + excluded.count, last_seen = excluded.last_seen)
         SELECT source, dedupe FROM inserted"
    ))
    .bind(&sources)
    .bind(&dedupes)
    .bind(&subjects)
    .bind(&kinds)
    .bind(&names)
    .bind(&timestamps)
    .bind(&received)
    .bind(&sealed)
    .bind(&trim_at)
    .bind(&expires_at)
    .bind(now)
    .bind(&profile_subjects)
    .bind(&profile_paths)
    .bind(&profile_sealed)
    .bind(&profile_updated)
    .bind(&drop_sources)
    .bind(&drop_paths)
    .bind(&drop_reasons)
    .bind(&drop_counts)
    .fetch_all(&mut *conn)
    .await
    .map_err(conflict_on_missing_subject)?
    .into_iter()
    .map(|row| Ok((row.try_get("source")?, row.try_get("dedupe")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    if inserted.len() != rows.events.len() {
        let lost: HashSet<[u8; 16]> = rows
            .events
            .iter()
            .filter(|event| !inserted.contains(&(event.source.clone(), event.dedupe.to_vec())))
            .map(|event| event.dedupe)
            .collect();
        let mut stored_events = rows.events.iter();
        for outcome in &mut rows.outcomes {
            if matches!(outcome, IngestOutcome::Stored { .. })
                && let Some(event) = stored_events.next()
                && lost.contains(&event.dedupe)
            {
                *outcome = IngestOutcome::Duplicate;
            }
        }
    }
    Ok(())
}

/// The key of a subject met in this batch: created by it, or read with its bindings.
fn key_for(snapshot: &mut Snapshot<'_>, rows: &Rows, subject: &str) -> Result<Arc<SubjectKey>> {
    match rows.created.iter().find(|created| created.id == subject) {
        Some(created) => Ok(created.key.clone()),
        None => snapshot.key(subject),
    }
}

#[async_trait]
impl IngestStore for PostgresStore {
    async fn ingest(&self, events: Vec<IngestEvent>, policy: Arc<Policy>) -> Result<Vec<IngestOutcome>> {
        ingest(self, &policy, &events).await
    }

    async fn drop_counts(&self) -> Result<Vec<DropCount>> {
        let rows = sqlx::query(
            "SELECT source, path, reason, count, last_seen FROM dropped_properties ORDER BY source, count DESC, path",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let reason: String = row.try_get("reason")?;
                Ok(DropCount {
                    source: row.try_get("source")?,
                    path: row.try_get("path")?,
                    reason: DropReason::parse(&reason)
                        .ok_or_else(|| StoreError::Internal(format!("unknown drop reason {reason:?}")))?,
                    count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
                    last_seen: row.try_get("last_seen")?,
                })
            })
            .collect()
    }
}
