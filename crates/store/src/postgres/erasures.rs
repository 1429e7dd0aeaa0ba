//! The erasure journal on PostgreSQL: each erasure records, in its own commit, what it destroyed in
//! a table backups leave out; opening a database restored from an older backup erases again every
//! family the journal names that still holds a key.

use sqlx::{PgConnection, PgPool, Row};
use tactful_domain::audit::AuditEvent;
use tactful_vault::Vault;

use super::audit::append_audit;
use super::requests::root_even_if_erased;
use crate::Result;
use crate::erasures::Erasure;

/// Records the erasure of `members` (and, when it suppresses, the blind indexes it suppresses).
pub(super) async fn journal(
    conn: &mut PgConnection,
    members: &[String],
    suppress: bool,
    now: i64,
) -> Result<()> {
    let suppressed: Vec<(String, String)> = if suppress {
        sqlx::query("SELECT kind, blind FROM identities WHERE subject_id = ANY($1)")
            .bind(members)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("kind")?,
                    tactful_domain::encoding::hex(&row.try_get::<Vec<u8>, _>("blind")?),
                ))
            })
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let erasure = Erasure { at: now, members: members.to_vec(), suppressed };
    sqlx::query("INSERT INTO erasure_journal (at, members, suppressed) VALUES ($1, $2, $3)")
        .bind(now)
        .bind(serde_json::to_string(&erasure.members).unwrap_or_default())
        .bind(serde_json::to_string(&erasure.suppressed).unwrap_or_default())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Destroys a family: identifiers, profile, consent records and sign-in codes deleted, keys emptied
/// (every value sealed under them unreadable from this commit on), and what it lent the shared
/// model removed. Returns how many identifiers went.
pub(super) async fn destroy_family(conn: &mut PgConnection, members: &[String], now: i64) -> Result<u64> {
    let identifiers = sqlx::query("DELETE FROM identities WHERE subject_id = ANY($1)")
        .bind(members)
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
        sqlx::query(statement).bind(members).execute(&mut *conn).await?;
    }
    sqlx::query(
        "UPDATE subjects SET wrapped_key = ''::bytea, erased_at = $2, known = FALSE WHERE id = ANY($1)",
    )
    .bind(members)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    super::model::forget_subjects(conn, members, now).await?;
    Ok(identifiers)
}

/// Every erasure the journal holds, oldest first.
async fn read(conn: &mut PgConnection) -> Result<Vec<Erasure>> {
    let rows = sqlx::query("SELECT at, members, suppressed FROM erasure_journal ORDER BY at")
        .fetch_all(&mut *conn)
        .await?;
    let mut erasures = Vec::with_capacity(rows.len());
    for row in rows {
        let members: String = row.try_get("members")?;
        let suppressed: String = row.try_get("suppressed")?;
        erasures.push(Erasure {
            at: row.try_get("at")?,
            members: serde_json::from_str(&members).unwrap_or_default(),
            suppressed: serde_json::from_str(&suppressed).unwrap_or_default(),
        });
    }
    Ok(erasures)
}

/// Erases again every journaled family a restored database still holds, and suppresses again what
/// was suppressed, in one transaction, each re-applied erasure audited. Returns how many.
pub(super) async fn reapply(pool: &PgPool, vault: &Vault, now: i64) -> Result<usize> {
    let mut tx = pool.begin().await?;
    // One instance at a time: instances starting together wait here, then find nothing to do.
    sqlx::query("LOCK TABLE erasure_journal IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
    let journal = read(&mut tx).await?;
    let mut audit = Vec::new();
    for erasure in &journal {
        for (kind, blind) in &erasure.suppressed {
            let Some(blind) = tactful_domain::encoding::unhex(blind) else { continue };
            sqlx::query(
                "INSERT INTO suppressions (blind, kind, created_at) VALUES ($1, $2, $3) ON CONFLICT (blind) DO NOTHING",
            )
            .bind(blind)
            .bind(kind)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for member in &erasure.members {
            let Some(root) = root_even_if_erased(&mut tx, member).await? else { continue };
            let erased: Option<i64> =
                sqlx::query_scalar("SELECT erased_at FROM subjects WHERE id = $1 FOR UPDATE")
                    .bind(&root)
                    .fetch_one(&mut *tx)
                    .await?;
            if erased.is_some() {
                continue;
            }
            let members: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM subjects WHERE id = $1 OR merged_into = $1 ORDER BY id FOR UPDATE",
            )
            .bind(&root)
            .fetch_all(&mut *tx)
            .await?;
            let identifiers = destroy_family(&mut tx, &members, now).await?;
            audit.push(AuditEvent::Erased {
                request: "restored-backup".into(),
                subject: vault.subject_pseudonym(&root),
                members: members.len(),
                identifiers,
                suppressed: 0,
            });
        }
    }
    let reapplied = audit.len();
    if !audit.is_empty() {
        append_audit(&mut tx, &audit, now).await?;
    }
    tx.commit().await?;
    Ok(reapplied)
}
