//! Carrying out a person's rights on PostgreSQL: legal holds, the shred and the purge after it,
//! restriction, suppression and rectification. An erasure locks its family (ingestion share-locks
//! the same roots) before it looks for what it must not destroy, and retries when it lost a race.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};
use tactful_domain::audit::AuditEvent;
use tactful_vault::{Blind, Vault};

use super::audit::append_audit;
use super::deliveries;
use super::requests::root_even_if_erased;
use super::subjects::root;
use crate::requests::{LegalHold, PurgeReport, ShredOutcome, ShredPlan, Suppression};
use crate::{Result, StoreError, seal_context};

/// Attempts of an erasure that lost a race (its family changed under it) before giving up.
const SHRED_ATTEMPTS: u32 = 5;

pub(super) async fn hold(conn: &mut PgConnection, holds: &[LegalHold], now: i64) -> Result<()> {
    if holds.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = holds.iter().map(|held| held.id.as_str()).collect();
    let subjects: Vec<&str> = holds.iter().map(|held| held.subject.as_str()).collect();
    let sources: Vec<&str> = holds.iter().map(|held| held.source.as_str()).collect();
    let timestamps: Vec<i64> = holds.iter().map(|held| held.timestamp).collect();
    let categories: Vec<String> = holds.iter().map(|held| held.categories.join(",")).collect();
    let until: Vec<i64> = holds.iter().map(|held| held.retain_until).collect();
    let sealed: Vec<&[u8]> = holds.iter().map(|held| held.sealed.as_slice()).collect();
    sqlx::query(
        "INSERT INTO legal_holds (id, subject_id, source, timestamp, categories, retain_until, sealed, created_at)
         SELECT id, subject_id, source, timestamp, categories, retain_until, sealed, $8
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[], $7::bytea[])
             AS t(id, subject_id, source, timestamp, categories, retain_until, sealed)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&subjects)
    .bind(&sources)
    .bind(&timestamps)
    .bind(&categories)
    .bind(&until)
    .bind(&sealed)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn legal_holds(conn: &mut PgConnection, subject: &str) -> Result<Vec<LegalHold>> {
    let Some(root) = root_even_if_erased(conn, subject).await? else { return Ok(Vec::new()) };
    sqlx::query(
        "SELECT id, subject_id, source, timestamp, categories, retain_until, sealed FROM legal_holds
         WHERE subject_id IN (SELECT id FROM subjects WHERE id = $1 OR merged_into = $1)
         ORDER BY timestamp, id",
    )
    .bind(root)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let categories: String = row.try_get("categories")?;
        Ok(LegalHold {
            id: row.try_get("id")?,
            subject: row.try_get("subject_id")?,
            source: row.try_get("source")?,
            timestamp: row.try_get("timestamp")?,
            categories: categories
                .split(',')
                .filter(|category| !category.is_empty())
                .map(str::to_owned)
                .collect(),
            retain_until: row.try_get("retain_until")?,
            sealed: row.try_get("sealed")?,
        })
    })
    .collect()
}

/// Erases a family, retrying (a few times) when its root was merged into another family while the
/// erasure was looking at it.
pub(super) async fn shred(
    pool: &PgPool,
    vault: &Vault,
    subject: &str,
    plan: &ShredPlan,
    now: i64,
) -> Result<ShredOutcome> {
    let mut attempt = 1;
    loop {
        let mut tx = pool.begin().await?;
        match try_shred(&mut tx, vault, subject, plan, now).await {
            Ok(outcome) => {
                tx.commit().await?;
                return Ok(outcome);
            }
            Err(StoreError::Conflict(reason)) if attempt < SHRED_ATTEMPTS => {
                drop(tx);
                tracing::debug!(attempt, %reason, "an erasure lost a race; retrying");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn try_shred(
    conn: &mut PgConnection,
    vault: &Vault,
    subject: &str,
    plan: &ShredPlan,
    now: i64,
) -> Result<ShredOutcome> {
    let Some(root) = root_even_if_erased(conn, subject).await? else {
        return Err(StoreError::Internal("erasing a subject that does not exist".into()));
    };
    // The root first: ingestion share-locks the roots of its batch until it commits, so this waits
    // for batches in flight, and no new one starts on this family until the erasure is done. The
    // row read here is the newest, committed version.
    let row = sqlx::query("SELECT merged_into, erased_at FROM subjects WHERE id = $1 FOR UPDATE")
        .bind(&root)
        .fetch_one(&mut *conn)
        .await?;
    if row.try_get::<Option<i64>, _>("erased_at")?.is_some() {
        return Ok(ShredOutcome::AlreadyErased);
    }
    if row.try_get::<Option<String>, _>("merged_into")?.is_some() {
        return Err(StoreError::Conflict("the subject was merged into another while being erased".into()));
    }
    // Then the members, read after the root's lock (so a merge committed meanwhile is seen), in id
    // order (so two erasures never lock in opposite orders).
    let members: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM subjects WHERE id = $1 OR merged_into = $1 ORDER BY id FOR UPDATE",
    )
    .bind(&root)
    .fetch_all(&mut *conn)
    .await?;
    let newest: Option<i64> =
        sqlx::query_scalar("SELECT max(received_at) FROM events WHERE subject_id = ANY($1)")
            .bind(&members)
            .fetch_one(&mut *conn)
            .await?;
    if let Some(newest) = newest
        && newest > plan.held_through
    {
        return Ok(ShredOutcome::NewEvents { received_through: newest });
    }
    let in_flight: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM requests WHERE kind IN ('access', 'export') AND lease_until > $2 AND id <> $3
         AND subject_id = ANY($1)",
    )
    .bind(&members)
    .bind(now)
    .bind(&plan.request)
    .fetch_one(&mut *conn)
    .await?;
    if in_flight > 0 {
        return Ok(ShredOutcome::ExportInFlight);
    }
    let mut suppressed = 0;
    if plan.suppress {
        suppressed = sqlx::query(
            "INSERT INTO suppressions (blind, kind, created_at)
             SELECT blind, kind, $2 FROM identities WHERE subject_id = ANY($1)
             ON CONFLICT (blind) DO NOTHING",
        )
        .bind(&members)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    let identifiers = sqlx::query("DELETE FROM identities WHERE subject_id = ANY($1)")
        .bind(&members)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    for statement in [
        "DELETE FROM profile_values WHERE subject_id = ANY($1)",
        "DELETE FROM consent_receipts WHERE subject_id = ANY($1)",
        "DELETE FROM consent_events WHERE subject_id = ANY($1)",
        "DELETE FROM sign_in_codes WHERE subject_id = ANY($1)",
        // Their links and sessions go with them (a link or cookie still held opens nothing).
        "DELETE FROM web_sessions WHERE holder = ANY($1)",
    ] {
        sqlx::query(statement).bind(&members).execute(&mut *conn).await?;
    }
    // The keys go: every value sealed under them is unreadable from this commit on.
    sqlx::query(
        "UPDATE subjects SET wrapped_key = ''::bytea, erased_at = $2, known = FALSE WHERE id = ANY($1)",
    )
    .bind(&members)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // What they contributed to the shared model goes too, and readers of the model are told.
    super::model::forget_subjects(conn, &members, now).await?;
    deliveries::enqueue(conn, &plan.deliveries, now).await?;
    let mut audit = plan.audit.clone();
    audit.push(AuditEvent::Erased {
        request: plan.request.clone(),
        subject: vault.subject_pseudonym(&root),
        members: members.len(),
        identifiers,
        suppressed,
    });
    append_audit(conn, &audit, now).await?;
    Ok(ShredOutcome::Shredded { members, identifiers, suppressed })
}

pub(super) async fn purge_erased(conn: &mut PgConnection, limit: u32, now: i64) -> Result<PurgeReport> {
    super::model::purge_erased(conn).await?;
    let events = sqlx::query(
        "DELETE FROM events WHERE (source, dedupe) IN
             (SELECT e.source, e.dedupe FROM events e JOIN subjects s ON s.id = e.subject_id
              WHERE s.erased_at IS NOT NULL LIMIT $1)",
    )
    .bind(i64::from(limit))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let subjects = sqlx::query(
        "UPDATE subjects SET purged_at = $1 WHERE erased_at IS NOT NULL AND purged_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.subject_id = subjects.id)",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(PurgeReport { events, subjects })
}

pub(super) async fn set_restricted(
    conn: &mut PgConnection,
    subject: &str,
    restricted: bool,
    audit: &[AuditEvent],
    now: i64,
) -> Result<()> {
    let Some(root) = root(conn, subject).await? else {
        return Err(StoreError::Internal("restricting a subject that does not exist".into()));
    };
    sqlx::query("UPDATE subjects SET restricted = $2 WHERE id = $1")
        .bind(root)
        .bind(restricted)
        .execute(&mut *conn)
        .await?;
    append_audit(conn, audit, now).await?;
    Ok(())
}

pub(super) async fn suppress(
    conn: &mut PgConnection,
    identifiers: &[Suppression],
    audit: &[AuditEvent],
    now: i64,
) -> Result<u64> {
    let mut added = 0;
    // The first of a blind named twice is the one written, as if one by one.
    let mut seen = HashSet::new();
    let (blinds, kinds): (Vec<&[u8]>, Vec<&str>) = identifiers
        .iter()
        .filter(|suppression| seen.insert(suppression.blind))
        .map(|suppression| (suppression.blind.0.as_slice(), suppression.kind.as_str()))
        .unzip();
    if !blinds.is_empty() {
        added = sqlx::query(
            "INSERT INTO suppressions (blind, kind, created_at)
             SELECT blind, kind, $3 FROM UNNEST($1::bytea[], $2::text[]) AS t(blind, kind)
             ON CONFLICT (blind) DO NOTHING",
        )
        .bind(&blinds)
        .bind(&kinds)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    append_audit(conn, audit, now).await?;
    Ok(added)
}

pub(super) async fn unsuppress(
    conn: &mut PgConnection,
    blinds: &[Blind],
    audit: &[AuditEvent],
    now: i64,
) -> Result<u64> {
    let mut removed = 0;
    if !blinds.is_empty() {
        let blinds: Vec<&[u8]> = blinds.iter().map(|blind| blind.0.as_slice()).collect();
        removed = sqlx::query("DELETE FROM suppressions WHERE blind = ANY($1)")
            .bind(&blinds)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    append_audit(conn, audit, now).await?;
    Ok(removed)
}

pub(super) async fn set_profile_value(
    conn: &mut PgConnection,
    vault: &Vault,
    subject: &str,
    path: &str,
    value: &[u8],
    at: i64,
    audit: &[AuditEvent],
) -> Result<()> {
    let missing = || StoreError::Internal("rectifying a subject that does not exist".into());
    let root = root(conn, subject).await?.ok_or_else(missing)?;
    // Share-locked, and read again if an erasure committed meanwhile: a value is never written
    // under a key already destroyed.
    let wrapped: Vec<u8> =
        sqlx::query_scalar("SELECT wrapped_key FROM subjects WHERE id = $1 AND erased_at IS NULL FOR SHARE")
            .bind(&root)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(missing)?;
    let key = vault.subject_key(&root, &wrapped)?;
    let sealed = key.seal(seal_context::PROFILE, &seal_context::profile(&root, path), value);
    // Other family members' values of the path are older; the root's is now the newest.
    sqlx::query(
        "INSERT INTO profile_values (subject_id, path, sealed, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (subject_id, path) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
    )
    .bind(&root)
    .bind(path)
    .bind(sealed)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM profile_values WHERE path = $2 AND subject_id IN (SELECT id FROM subjects WHERE merged_into = $1)",
    )
    .bind(&root)
    .bind(path)
    .execute(&mut *conn)
    .await?;
    append_audit(conn, audit, at).await?;
    Ok(())
}
