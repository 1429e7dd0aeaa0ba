//! Carrying out a person's rights on SQLite: legal holds, the shred (crypto-shredding a family in one
//! transaction) and the purge after it, restriction, suppression and rectification.

use rusqlite::{Connection, OptionalExtension, params};
use tactful_domain::audit::AuditEvent;
use tactful_vault::Blind;

use super::audit::append_audit;
use super::deliveries;
use super::requests::root_even_if_erased;
use super::subjects::root;
use super::writer::Writer;
use crate::requests::{LegalHold, PurgeReport, ShredOutcome, ShredPlan, Suppression};
use crate::{Result, StoreError, seal_context};

pub(super) fn hold(conn: &Connection, holds: &[LegalHold], now: i64) -> Result<()> {
    for held in holds {
        conn.prepare_cached(
            "INSERT INTO legal_holds (id, subject_id, source, timestamp, categories, retain_until, sealed, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            held.id,
            held.subject,
            held.source,
            held.timestamp,
            held.categories.join(","),
            held.retain_until,
            held.sealed,
            now
        ])?;
    }
    Ok(())
}

pub(super) fn legal_holds(conn: &Connection, subject: &str) -> Result<Vec<LegalHold>> {
    let Some(root) = root_even_if_erased(conn, subject)? else { return Ok(Vec::new()) };
    let mut statement = conn.prepare_cached(
        "SELECT id, subject_id, source, timestamp, categories, retain_until, sealed FROM legal_holds
         WHERE subject_id IN (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)
         ORDER BY timestamp, id",
    )?;
    let rows = statement.query_map([root], |row| {
        Ok(LegalHold {
            id: row.get(0)?,
            subject: row.get(1)?,
            source: row.get(2)?,
            timestamp: row.get(3)?,
            categories: row
                .get::<_, String>(4)?
                .split(',')
                .filter(|category| !category.is_empty())
                .map(str::to_owned)
                .collect(),
            retain_until: row.get(5)?,
            sealed: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn shred(writer: &mut Writer, subject: &str, plan: &ShredPlan, now: i64) -> Result<ShredOutcome> {
    let Some(root) = root_even_if_erased(&writer.conn, subject)? else {
        return Err(StoreError::Internal("erasing a subject that does not exist".into()));
    };
    let erased: Option<i64> = writer
        .conn
        .prepare_cached("SELECT erased_at FROM subjects WHERE id = ?1")?
        .query_row([&root], |row| row.get(0))?;
    if erased.is_some() {
        return Ok(ShredOutcome::AlreadyErased);
    }
    let members: Vec<String> = writer
        .conn
        .prepare_cached("SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1 ORDER BY id")?
        .query_map([&root], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let newest: Option<i64> = writer
        .conn
        .prepare_cached(
            "SELECT MAX(received_at) FROM events WHERE subject_id IN
             (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)",
        )?
        .query_row([&root], |row| row.get(0))?;
    if let Some(newest) = newest
        && newest > plan.held_through
    {
        return Ok(ShredOutcome::NewEvents { received_through: newest });
    }
    let in_flight: i64 = writer
        .conn
        .prepare_cached(
            "SELECT COUNT(*) FROM requests WHERE kind IN ('access', 'export') AND lease_until > ?2 AND id != ?3
             AND subject_id IN (SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1)",
        )?
        .query_row(params![root, now, plan.request], |row| row.get(0))?;
    if in_flight > 0 {
        return Ok(ShredOutcome::ExportInFlight);
    }
    let family = "SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1";
    // Journaled (durably, beside the database) before it commits, so a restore of an older backup
    // is erased again.
    let suppressed_blinds: Vec<(String, Vec<u8>)> = if plan.suppress {
        writer
            .conn
            .prepare_cached(&format!("SELECT kind, blind FROM identities WHERE subject_id IN ({family})"))?
            .query_map([&root], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    crate::erasures::append(
        &writer.journal,
        &crate::erasures::Erasure {
            at: now,
            members: members.clone(),
            suppressed: suppressed_blinds
                .iter()
                .map(|(kind, blind)| (kind.clone(), tactful_domain::encoding::hex(blind)))
                .collect(),
        },
    )?;
    let mut suppressed = 0;
    if plan.suppress {
        suppressed = writer
            .conn
            .prepare_cached(&format!(
                "INSERT INTO suppressions (blind, kind, created_at)
                 SELECT blind, kind, ?2 FROM identities WHERE subject_id IN ({family})
                 ON CONFLICT (blind) DO NOTHING"
            ))?
            .execute(params![root, now])? as u64;
    }
    let identifiers = destroy_family(&writer.conn, &root, &members, now)?;
    deliveries::enqueue(&writer.conn, &plan.deliveries, now)?;
    let mut audit = plan.audit.clone();
    audit.push(AuditEvent::Erased {
        request: plan.request.clone(),
        subject: writer.vault.subject_pseudonym(&root),
        members: members.len(),
        identifiers,
        suppressed,
    });
    append_audit(writer, &audit, now)?;
    // What the writer remembers of them (keys, bindings) goes too.
    writer.forget_people();
    Ok(ShredOutcome::Shredded { members, identifiers, suppressed })
}

/// Destroys a family: its identifiers, profile, consent records and sign-in codes deleted, its keys
/// emptied (every value sealed under them is unreadable from this commit on; secure_delete
/// overwrites the old key bytes in the file, and the WAL is truncated within a bound), and what it
/// lent the shared model removed. Returns how many identifiers went.
fn destroy_family(conn: &Connection, root: &str, members: &[String], now: i64) -> Result<u64> {
    let family = "SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1";
    let identifiers = conn
        .prepare_cached(&format!("DELETE FROM identities WHERE subject_id IN ({family})"))?
        .execute([root])? as u64;
    for table in ["profile_values", "consent_receipts", "consent_events", "sign_in_codes"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE subject_id IN ({family})"))?
            .execute([root])?;
    }
    // Their links and sessions go with them (a link or cookie still held opens nothing).
    conn.prepare_cached(&format!("DELETE FROM web_sessions WHERE holder IN ({family})"))?.execute([root])?;
    conn.prepare_cached(&format!(
        "UPDATE subjects SET wrapped_key = x'', erased_at = ?2, known = 0 WHERE id IN ({family})"
    ))?
    .execute(params![root, now])?;
    super::model::forget_subjects(conn, members, now)?;
    Ok(identifiers)
}

/// Applies again every journaled erasure that a (restored) database does not reflect: each family
/// that still holds a journaled member's key is destroyed, and what was suppressed is suppressed
/// again; each re-applied erasure is audited. Returns how many families were erased again.
pub(super) fn reapply_erasures(
    writer: &mut Writer,
    journal: &[crate::erasures::Erasure],
    now: i64,
) -> Result<usize> {
    writer.conn.execute_batch("BEGIN IMMEDIATE")?;
    match reapply_in_transaction(writer, journal, now) {
        Ok(reapplied) => {
            writer.conn.execute_batch("COMMIT")?;
            writer.forget_people();
            Ok(reapplied)
        }
        Err(error) => {
            let _ = writer.conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn reapply_in_transaction(
    writer: &mut Writer,
    journal: &[crate::erasures::Erasure],
    now: i64,
) -> Result<usize> {
    let mut reapplied = 0;
    let mut audit = Vec::new();
    for erasure in journal {
        for (kind, blind) in &erasure.suppressed {
            let Some(blind) = tactful_domain::encoding::unhex(blind) else { continue };
            writer
                .conn
                .prepare_cached(
                    "INSERT INTO suppressions (blind, kind, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (blind) DO NOTHING",
                )?
                .execute(params![blind, kind, now])?;
        }
        for member in &erasure.members {
            let Some(root) = root_even_if_erased(&writer.conn, member)? else { continue };
            let erased: Option<i64> = writer
                .conn
                .prepare_cached("SELECT erased_at FROM subjects WHERE id = ?1")?
                .query_row([&root], |row| row.get(0))?;
            if erased.is_some() {
                continue;
            }
            let members: Vec<String> = writer
                .conn
                .prepare_cached("SELECT id FROM subjects WHERE id = ?1 OR merged_into = ?1 ORDER BY id")?
                .query_map([&root], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let identifiers = destroy_family(&writer.conn, &root, &members, now)?;
            audit.push(AuditEvent::Erased {
                request: "restored-backup".into(),
                subject: writer.vault.subject_pseudonym(&root),
                members: members.len(),
                identifiers,
                suppressed: 0,
            });
            reapplied += 1;
        }
    }
    if !audit.is_empty() {
        append_audit(writer, &audit, now)?;
        super::audit::flush_audit_head(writer)?;
    }
    Ok(reapplied)
}

pub(super) fn purge_erased(conn: &Connection, limit: u32, now: i64) -> Result<PurgeReport> {
    super::model::purge_erased(conn)?;
    let events = conn
        .prepare_cached(
            "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e JOIN subjects s ON s.id = e.subject_id
             WHERE s.erased_at IS NOT NULL LIMIT ?1)",
        )?
        .execute([limit])? as u64;
    let subjects = conn
        .prepare_cached(
            "UPDATE subjects SET purged_at = ?1 WHERE erased_at IS NOT NULL AND purged_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.subject_id = subjects.id)",
        )?
        .execute([now])? as u64;
    Ok(PurgeReport { events, subjects })
}

pub(super) fn set_restricted(
    writer: &mut Writer,
    subject: &str,
    restricted: bool,
    audit: &[AuditEvent],
    now: i64,
) -> Result<()> {
    let Some(root) = root(&writer.conn, subject)? else {
        return Err(StoreError::Internal("restricting a subject that does not exist".into()));
    };
    writer
        .conn
        .prepare_cached("UPDATE subjects SET restricted = ?2 WHERE id = ?1")?
        .execute(params![root, restricted])?;
    append_audit(writer, audit, now)?;
    // The writer's cached view of the subject (used by ingestion) must see it.
    writer.forget_people();
    Ok(())
}

pub(super) fn suppress(
    writer: &mut Writer,
    identifiers: &[Suppression],
    audit: &[AuditEvent],
    now: i64,
) -> Result<u64> {
    let mut added = 0;
    for suppression in identifiers {
        added += writer
            .conn
            .prepare_cached(
                "INSERT INTO suppressions (blind, kind, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (blind) DO NOTHING",
            )?
            .execute(params![suppression.blind.0.as_slice(), suppression.kind, now])? as u64;
    }
    append_audit(writer, audit, now)?;
    Ok(added)
}

pub(super) fn unsuppress(
    writer: &mut Writer,
    blinds: &[Blind],
    audit: &[AuditEvent],
    now: i64,
) -> Result<u64> {
    let mut removed = 0;
    for blind in blinds {
        removed += writer
            .conn
            .prepare_cached("DELETE FROM suppressions WHERE blind = ?1")?
            .execute([blind.0.as_slice()])? as u64;
    }
    append_audit(writer, audit, now)?;
    Ok(removed)
}

/// Whether any of these blind indexes is suppressed.
pub(super) fn suppressed(conn: &Connection, blind: &Blind) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM suppressions WHERE blind = ?1")?
        .query_row([blind.0.as_slice()], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(super) fn set_profile_value(
    writer: &mut Writer,
    subject: &str,
    path: &str,
    value: &[u8],
    at: i64,
    audit: &[AuditEvent],
) -> Result<()> {
    let Some(root) = root(&writer.conn, subject)? else {
        return Err(StoreError::Internal("rectifying a subject that does not exist".into()));
    };
    let key = writer.key(&root)?;
    let sealed = key.seal(seal_context::PROFILE, &seal_context::profile(&root, path), value);
    // Other family members' values of the path are older; the root's is now the newest.
    writer
        .conn
        .prepare_cached(
            "INSERT INTO profile_values (subject_id, path, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (subject_id, path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
        )?
        .execute(params![root, path, sealed, at])?;
    writer
        .conn
        .prepare_cached(
            "DELETE FROM profile_values WHERE path = ?2 AND subject_id IN (SELECT id FROM subjects WHERE merged_into = ?1)",
        )?
        .execute(params![root, path])?;
    append_audit(writer, audit, at)?;
    Ok(())
}
