//! Writing accepted events to SQLite inside the writer's transaction: find duplicates, let
//! [`crate::resolve`] decide subjects and seal everything, then write its rows. The writer is this
//! database's only writer, so it can answer lookups from its caches and needs no conflict checks.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tactful_domain::identity::Binding;
use tactful_domain::minimize::DropReason;
use tactful_vault::{Blind, SubjectKey};

use super::writer::{CACHE_LIMIT, Writer};
use super::{SqliteStore, now_millis};
use crate::resolve::{self, Lookup, Rows};
use tactful_domain::policy::Policy;

use crate::{
    DropCount, IngestEvent, IngestOutcome, IngestStore, Result, StoreError, SubjectState, seal_context,
};

pub(super) fn ingest(
    writer: &mut Writer,
    policy: &Policy,
    events: &[IngestEvent],
) -> Result<Vec<IngestOutcome>> {
    let duplicate: Vec<bool> =
        events.iter().map(|event| is_duplicate(writer, event)).collect::<Result<_>>()?;
    let vault = writer.vault.clone();
    let now = now_millis();
    let rows = resolve::resolve(&vault, policy, events, &duplicate, writer, now)?;
    write(writer, rows)
}

fn is_duplicate(writer: &Writer, event: &IngestEvent) -> Result<bool> {
    Ok(writer
        .conn
        .prepare_cached("SELECT 1 FROM events WHERE source = ?1 AND dedupe = ?2")?
        .query_row(params![event.source, event.dedupe.as_slice()], |_| Ok(()))
        .optional()?
        .is_some())
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &mut std::collections::HashMap<K, V>, key: K, value: V) {
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(key, value);
}

impl Lookup for Writer {
    fn binding(&mut self, blind: &Blind) -> Result<Option<Binding<String>>> {
        let subject = match self.bindings.get(blind) {
            Some(subject) => subject.clone(),
            None => {
                let found: Option<String> = self
                    .conn
                    .prepare_cached("SELECT subject_id FROM identities WHERE blind = ?1")?
                    .query_row([blind.0.as_slice()], |row| row.get(0))
                    .optional()?;
                let Some(subject) = found else { return Ok(None) };
                remember(&mut self.bindings, *blind, subject.clone());
                subject
            }
        };
        let known = match self.known.get(&subject) {
            Some(&known) => known,
            None => {
                let known: bool = self
                    .conn
                    .prepare_cached("SELECT known FROM subjects WHERE id = ?1")?
                    .query_row([&subject], |row| row.get(0))?;
                remember(&mut self.known, subject.clone(), known);
                known
            }
        };
        Ok(Some(Binding { subject, known }))
    }

    fn key(&mut self, subject: &str) -> Result<Arc<SubjectKey>> {
        Writer::key(self, subject)
    }

    fn state(&mut self, subject: &str) -> Result<SubjectState> {
        super::subjects::subject_state(&self.conn, subject)?
            .ok_or_else(|| crate::StoreError::Internal("a subject met in a batch does not exist".into()))
    }

    fn identifier_counts(&mut self, root: &str) -> Result<std::collections::BTreeMap<String, u32>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT i.kind, COUNT(*) FROM identities i JOIN subjects s ON s.id = i.subject_id
             WHERE s.id = ?1 OR s.merged_into = ?1 GROUP BY i.kind",
        )?;
        let rows =
            statement.query_map([root], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn suppressed(&mut self, blinds: &[Blind]) -> Result<bool> {
        let any = match self.any_suppressed {
            Some(any) => any,
            None => {
                let any: bool =
                    self.conn
                        .query_row("SELECT EXISTS (SELECT 1 FROM suppressions)", [], |row| row.get(0))?;
                self.any_suppressed = Some(any);
                any
            }
        };
        if !any {
            return Ok(false);
        }
        for blind in blinds {
            if super::rights::suppressed(&self.conn, blind)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn write(writer: &mut Writer, rows: Rows) -> Result<Vec<IngestOutcome>> {
    let now = now_millis();
    for created in &rows.created {
        writer
            .conn
            .prepare_cached(
                "INSERT INTO subjects (id, wrapped_key, known, jurisdiction, minor, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                created.id,
                created.wrapped,
                created.known,
                created.jurisdiction,
                created.minor,
                now
            ])?;
        remember(&mut writer.keys, created.id.clone(), created.key.clone());
        remember(&mut writer.known, created.id.clone(), created.known);
    }
    for (subject, root) in &rows.created_merged {
        writer
            .conn
            .prepare_cached("UPDATE subjects SET merged_into = ?1 WHERE id = ?2")?
            .execute([root, subject])?;
    }
    for row in &rows.identities {
        writer
            .conn
            .prepare_cached(
                "INSERT INTO identities (blind, kind, subject_id, sealed, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (blind) DO UPDATE SET subject_id = excluded.subject_id, sealed = excluded.sealed",
            )?
            .execute(params![row.blind.0.as_slice(), row.kind, row.subject, row.sealed, now])?;
        remember(&mut writer.bindings, row.blind, row.subject.clone());
    }
    for merged in &rows.merges {
        merge(writer, &merged.from, &merged.into)?;
    }
    for subject in &rows.known {
        writer.conn.prepare_cached("UPDATE subjects SET known = 1 WHERE id = ?1")?.execute([subject])?;
        remember(&mut writer.known, subject.clone(), true);
    }
    for attributes in &rows.attributes {
        writer
            .conn
            .prepare_cached("UPDATE subjects SET jurisdiction = ?2, minor = ?3 WHERE id = ?1")?
            .execute(params![attributes.subject, attributes.jurisdiction, attributes.minor])?;
    }
    super::consent::write_consents(&writer.conn, &rows.consents, now)?;
    for event in &rows.events {
        writer
            .conn
            .prepare_cached(
                "INSERT INTO events (source, dedupe, subject_id, type, name, timestamp, received_at, sealed,
                                     trim_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                event.source,
                event.dedupe.as_slice(),
                event.subject,
                event.kind,
                event.name,
                event.timestamp,
                event.received_at,
                event.sealed,
                event.trim_at,
                event.expires_at
            ])?;
    }
    // Their contributions to the shared model must be recomputed: each subject once per batch.
    let mut stored: Vec<&str> = rows.events.iter().map(|event| event.subject.as_str()).collect();
    stored.sort_unstable();
    stored.dedup();
    super::model::mark_dirty(&writer.conn, stored, now)?;
    for value in &rows.profile {
        // An older identify arriving late does not overwrite a newer value.
        writer
            .conn
            .prepare_cached(
                "INSERT INTO profile_values (subject_id, path, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (subject_id, path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at
                 WHERE excluded.updated_at >= profile_values.updated_at",
            )?
            .execute(params![value.subject, value.path, value.sealed, value.updated_at])?;
    }
    for (source, path, reason, count) in &rows.drops {
        writer
            .conn
            .prepare_cached(
                "INSERT INTO dropped_properties (source, path, reason, count, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (source, path, reason) DO UPDATE SET count = count + excluded.count, last_seen = excluded.last_seen",
            )?
            .execute(params![source, path, reason, count, now])?;
    }
    super::deliveries::enqueue(&writer.conn, &rows.deliveries, now)?;
    super::audit::append_audit(writer, &rows.audit, now)?;
    Ok(rows.outcomes)
}

/// Merges family root `from` into `into`: identifiers still pointing at `from` move (re-sealed under
/// the new key), and `from`'s family joins `into`'s. Events and profile values stay sealed under
/// their own subject's key, which the family keeps.
fn merge(writer: &mut Writer, from: &str, into: &str) -> Result<()> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = writer
        .conn
        .prepare_cached("SELECT blind, sealed FROM identities WHERE subject_id = ?1")?
        .query_map([from], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let (from_key, into_key) = (writer.key(from)?, writer.key(into)?);
    for (blind, sealed) in rows {
        let blind = crate::shared::blind_from(blind)?;
        let value =
            from_key.open(seal_context::IDENTITY, &seal_context::identity(from, &blind.0), &sealed)?;
        let resealed = into_key.seal(seal_context::IDENTITY, &seal_context::identity(into, &blind.0), &value);
        writer
            .conn
            .prepare_cached("UPDATE identities SET subject_id = ?1, sealed = ?2 WHERE blind = ?3")?
            .execute(params![into, resealed, blind.0.as_slice()])?;
        remember(&mut writer.bindings, blind, into.to_owned());
    }
    writer
        .conn
        .prepare_cached("UPDATE subjects SET merged_into = ?1 WHERE id = ?2 OR merged_into = ?2")?
        .execute(params![into, from])?;
    writer
        .conn
        .prepare_cached(
            "UPDATE subjects SET known = max(known, (SELECT known FROM subjects WHERE id = ?2)) WHERE id = ?1",
        )?
        .execute(params![into, from])?;
    writer.known.remove(into);
    writer.known.remove(from);
    Ok(())
}

#[async_trait]
impl IngestStore for SqliteStore {
    async fn ingest(&self, events: Vec<IngestEvent>, policy: Arc<Policy>) -> Result<Vec<IngestOutcome>> {
        // The caller holds the last reference, so the events (many small JSON values) are freed on
        // its thread once answered, not on the writer thread every other write waits for.
        let events = Arc::new(events);
        let shared = events.clone();
        let outcomes = self.write(move |writer| ingest(writer, &policy, &shared)).await;
        drop(events);
        outcomes
    }

    async fn drop_counts(&self) -> Result<Vec<DropCount>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT source, path, reason, count, last_seen FROM dropped_properties ORDER BY source, count DESC, path",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })?;
            let mut counts = Vec::new();
            for row in rows {
                let (source, path, reason, count, last_seen) = row?;
                let reason = DropReason::parse(&reason)
                    .ok_or_else(|| StoreError::Internal(format!("unknown drop reason {reason:?}")))?;
                counts.push(DropCount { source, path, reason, count: u64::try_from(count).unwrap_or(0), last_seen });
            }
            Ok(counts)
        })
        .await
    }
}
