//! Writing accepted events to SQLite, inside the writer's transaction: deduplicate, resolve the
//! subject by the domain's identity rules, seal under the subject's key, count what was dropped.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};
use tactful_domain::identity::{self, Binding, Claim, IdentifierKind, Target};
use tactful_vault::Blind;

use super::{Writer, now_millis};
use crate::{IdentityClaim, IngestEvent, IngestOutcome, Result, StoreError, seal_context};

pub(super) fn ingest(writer: &mut Writer, events: &[IngestEvent]) -> Result<Vec<IngestOutcome>> {
    let mut outcomes = Vec::with_capacity(events.len());
    let mut drops: HashMap<(String, String, &'static str), i64> = HashMap::new();
    let now = now_millis();
    for event in events {
        if is_duplicate(writer, event)? {
            outcomes.push(IngestOutcome::Duplicate);
            continue;
        }
        for dropped in &event.dropped {
            *drops
                .entry((event.source.clone(), dropped.path.clone(), dropped.reason.as_str()))
                .or_default() += 1;
        }
        let subject = resolve(writer, event, now)?;
        store_event(writer, &subject, event)?;
        outcomes.push(IngestOutcome::Stored { subject });
    }
    for ((source, path, reason), count) in drops {
        writer
            .conn
            .prepare_cached(
                "INSERT INTO dropped_properties (source, path, reason, count, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (source, path, reason) DO UPDATE SET count = count + excluded.count, last_seen = excluded.last_seen",
            )?
            .execute(params![source, path, reason, count, now])?;
    }
    Ok(outcomes)
}

fn is_duplicate(writer: &Writer, event: &IngestEvent) -> Result<bool> {
    Ok(writer
        .conn
        .prepare_cached("SELECT 1 FROM events WHERE source = ?1 AND dedupe = ?2")?
        .query_row(params![event.source, event.dedupe.as_slice()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The current binding of an identifier, if any, from the writer's caches when it can.
fn lookup(writer: &mut Writer, claim: &IdentityClaim) -> Result<Option<Binding<String>>> {
    let subject = match writer.bindings.get(&claim.blind) {
        Some(subject) => subject.clone(),
        None => {
            let found: Option<String> = writer
                .conn
                .prepare_cached("SELECT subject_id FROM identities WHERE blind = ?1")?
                .query_row([claim.blind.0.as_slice()], |row| row.get(0))
                .optional()?;
            let Some(subject) = found else { return Ok(None) };
            remember(&mut writer.bindings, claim.blind, subject.clone());
            subject
        }
    };
    let known = match writer.known.get(&subject) {
        Some(&known) => known,
        None => {
            let known: bool = writer
                .conn
                .prepare_cached("SELECT known FROM subjects WHERE id = ?1")?
                .query_row([&subject], |row| row.get(0))?;
            remember(&mut writer.known, subject.clone(), known);
            known
        }
    };
    Ok(Some(Binding { subject, known }))
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &mut HashMap<K, V>, key: K, value: V) {
    if cache.len() >= super::CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(key, value);
}

/// Finds or creates the event's subject and brings identifiers up to date, by the domain's rules.
fn resolve(writer: &mut Writer, event: &IngestEvent, now: i64) -> Result<String> {
    if let Some(previous) = &event.alias_previous {
        let user =
            event.identities.iter().find(|claim| claim.kind == IdentifierKind::UserId).ok_or_else(|| {
                StoreError::Internal("an alias event without a userId reached the store".into())
            })?;
        let user_binding = lookup(writer, user)?;
        let previous_bindings = [lookup(writer, &previous[0])?, lookup(writer, &previous[1])?];
        let plan = identity::plan_alias(user_binding, &previous_bindings);
        let target = target_subject(writer, plan.target, now)?;
        for merged in plan.merge {
            merge(writer, &merged, &target)?;
        }
        if plan.bind_user {
            bind(writer, &target, user, now)?;
        }
        if plan.bind_previous {
            bind(writer, &target, &previous[0], now)?;
            bind(writer, &target, &previous[1], now)?;
        }
        return Ok(target);
    }

    let bindings: Vec<Option<Binding<String>>> =
        event.identities.iter().map(|claim| lookup(writer, claim)).collect::<Result<_>>()?;
    let claims: Vec<Claim<String>> = event
        .identities
        .iter()
        .zip(bindings)
        .map(|(claim, bound)| Claim { kind: claim.kind.clone(), bound })
        .collect();
    let plan = identity::plan(&claims);
    let target = target_subject(writer, plan.target, now)?;
    for merged in plan.merge {
        merge(writer, &merged, &target)?;
    }
    for index in plan.bind {
        bind(writer, &target, &event.identities[index], now)?;
    }
    Ok(target)
}

fn target_subject(writer: &mut Writer, target: Target<String>, now: i64) -> Result<String> {
    match target {
        Target::Existing(subject) => Ok(subject),
        Target::New => {
            let created = writer.vault.new_subject();
            writer
                .conn
                .prepare_cached(
                    "INSERT INTO subjects (id, wrapped_key, known, created_at) VALUES (?1, ?2, 0, ?3)",
                )?
                .execute(params![created.id, created.wrapped, now])?;
            writer.keys.insert(created.id.clone(), created.key);
            remember(&mut writer.known, created.id.clone(), false);
            Ok(created.id)
        }
    }
}

/// Points an identifier at `subject`, sealing its value under the subject's key.
fn bind(writer: &mut Writer, subject: &str, claim: &IdentityClaim, now: i64) -> Result<()> {
    let sealed = writer.key(subject)?.seal(
        seal_context::IDENTITY,
        &seal_context::identity(subject, &claim.blind.0),
        claim.value.as_bytes(),
    );
    writer
        .conn
        .prepare_cached(
            "INSERT INTO identities (blind, kind, subject_id, sealed, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (blind) DO UPDATE SET subject_id = excluded.subject_id, sealed = excluded.sealed",
        )?
        .execute(params![claim.blind.0.as_slice(), claim.kind.as_str(), subject, sealed, now])?;
    remember(&mut writer.bindings, claim.blind, subject.to_owned());
    if claim.kind == IdentifierKind::UserId {
        writer.conn.prepare_cached("UPDATE subjects SET known = 1 WHERE id = ?1")?.execute([subject])?;
        remember(&mut writer.known, subject.to_owned(), true);
    }
    Ok(())
}

/// Merges subject `from` into `into`: its identifiers move (re-sealed under the new key), and it and
/// everything merged into it now belong to `into`'s family. Its events and profile stay sealed under
/// its own key, which the family keeps.
fn merge(writer: &mut Writer, from: &str, into: &str) -> Result<()> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = writer
        .conn
        .prepare_cached("SELECT blind, sealed FROM identities WHERE subject_id = ?1")?
        .query_map([from], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (blind, sealed) in rows {
        let blind: [u8; 32] = blind
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Internal("a blind index is not 32 bytes".into()))?;
        let value =
            writer.key(from)?.open(seal_context::IDENTITY, &seal_context::identity(from, &blind), &sealed)?;
        let resealed =
            writer.key(into)?.seal(seal_context::IDENTITY, &seal_context::identity(into, &blind), &value);
        writer
            .conn
            .prepare_cached("UPDATE identities SET subject_id = ?1, sealed = ?2 WHERE blind = ?3")?
            .execute(params![into, resealed, blind.as_slice()])?;
        remember(&mut writer.bindings, Blind(blind), into.to_owned());
    }
    writer
        .conn
        .prepare_cached("UPDATE subjects SET merged_into = ?1 WHERE id = ?2 OR merged_into = ?2")?
        .execute(params![into, from])?;
    writer
        .conn
        .prepare_cached("UPDATE subjects SET known = max(known, (SELECT known FROM subjects WHERE id = ?2)) WHERE id = ?1")?
        .execute(params![into, from])?;
    writer.known.remove(into);
    writer.known.remove(from);
    tracing::debug!("merged a subject into another");
    Ok(())
}

fn store_event(writer: &mut Writer, subject: &str, event: &IngestEvent) -> Result<()> {
    let key = writer.key(subject)?;
    let sealed = key.seal(
        seal_context::EVENT,
        &seal_context::event(subject, &event.source, &event.dedupe),
        &event.record,
    );
    let profile: Vec<(&str, Vec<u8>)> = event
        .profile
        .iter()
        .map(|(path, value)| {
            (path.as_str(), key.seal(seal_context::PROFILE, &seal_context::profile(subject, path), value))
        })
        .collect();
    writer
        .conn
        .prepare_cached(
            "INSERT INTO events (source, dedupe, subject_id, type, name, timestamp, received_at, sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            event.source,
            event.dedupe.as_slice(),
            subject,
            event.kind.as_str(),
            event.name,
            event.timestamp,
            event.received_at,
            sealed
        ])?;
    for (path, sealed) in profile {
        // An older identify arriving late does not overwrite a newer value.
        writer
            .conn
            .prepare_cached(
                "INSERT INTO profile_values (subject_id, path, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (subject_id, path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at
                 WHERE excluded.updated_at >= profile_values.updated_at",
            )?
            .execute(params![subject, path, sealed, event.timestamp])?;
    }
    Ok(())
}
