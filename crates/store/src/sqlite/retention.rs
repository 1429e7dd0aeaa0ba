//! Enforced retention on SQLite: what outlived its declared retention (events, properties within
//! events, profile values, legal holds) is deleted or trimmed on the writer, and audited.

use rusqlite::params;
use serde_json::Value;
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::Catalog;

use super::audit::append_audit;
use super::writer::Writer;
use crate::requests::RetentionReport;
use crate::{Result, StoreError, seal_context};

pub(super) fn apply_retention(
    writer: &mut Writer,
    catalog: &Catalog,
    now: i64,
    limit: u32,
) -> Result<RetentionReport> {
    let mut report = RetentionReport {
        events_deleted: writer
            .conn
            .prepare_cached(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE expires_at <= ?1 LIMIT ?2)",
            )?
            .execute(params![now, limit])? as u64,
        ..RetentionReport::default()
    };
    // Events whose shorter-lived properties expired (or whose lifetime is not known yet): open,
    // remove what expired, seal again.
    type Due = (i64, String, String, Vec<u8>, i64, Vec<u8>);
    let due: Vec<Due> = writer
        .conn
        .prepare_cached(
            "SELECT e.seq, e.subject_id, e.source, e.dedupe, e.timestamp, e.sealed FROM events e
             JOIN subjects s ON s.id = e.subject_id
             WHERE s.erased_at IS NULL AND (e.trim_at IS NULL OR e.trim_at <= ?1) LIMIT ?2",
        )?
        .query_map(params![now, limit], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (seq, subject, source, dedupe, timestamp, sealed) in due {
        let dedupe = crate::shared::dedupe_from(dedupe)?;
        let key = writer.key(&subject)?;
        let context = seal_context::event(&subject, &source, &dedupe);
        let opened = key
            .open(seal_context::EVENT, &context, &sealed)
            .ok()
            .and_then(|plain| serde_json::from_slice::<Value>(&plain).ok());
        let Some(Value::Object(mut record)) = opened else {
            // A row that does not open is a bug or damage; it must not hold retention up for every
            // other row. It is looked at again in a day, and logged.
            tracing::error!(seq, "an event does not open during retention; skipped for a day");
            writer
                .conn
                .prepare_cached("UPDATE events SET trim_at = ?2 WHERE seq = ?1")?
                .execute(params![seq, now.saturating_add(86_400_000)])?;
            continue;
        };
        match tactful_domain::retention::trim(catalog, &mut record, timestamp, now) {
            tactful_domain::retention::Trimmed::Expired => {
                writer.conn.prepare_cached("DELETE FROM events WHERE seq = ?1")?.execute([seq])?;
                report.events_deleted += 1;
            }
            tactful_domain::retention::Trimmed::Kept { changed, trim_at, expires_at } => {
                if changed {
                    let bytes = serde_json::to_vec(&record)
                        .map_err(|error| StoreError::Internal(error.to_string()))?;
                    let resealed = key.seal(seal_context::EVENT, &context, &bytes);
                    writer
                        .conn
                        .prepare_cached(
                            "UPDATE events SET sealed = ?2, trim_at = ?3, expires_at = ?4 WHERE seq = ?1",
                        )?
                        .execute(params![seq, resealed, trim_at, expires_at])?;
                    report.events_trimmed += 1;
                } else {
                    writer
                        .conn
                        .prepare_cached("UPDATE events SET trim_at = ?2, expires_at = ?3 WHERE seq = ?1")?
                        .execute(params![seq, trim_at, expires_at])?;
                }
            }
        }
    }
    for property in catalog.properties() {
        if property.path.contains("[]") {
            continue;
        }
        report.profile_values_deleted += writer
            .conn
            .prepare_cached("DELETE FROM profile_values WHERE path = ?1 AND updated_at <= ?2")?
            .execute(params![property.path, now.saturating_sub(property.retention.as_millis())])?
            as u64;
    }
    report.legal_holds_deleted = writer
        .conn
        .prepare_cached("DELETE FROM legal_holds WHERE id IN (SELECT id FROM legal_holds WHERE retain_until <= ?1 LIMIT ?2)")?
        .execute(params![now, limit])? as u64;
    if !report.is_empty() {
        let audit = [AuditEvent::Retention {
            events_deleted: report.events_deleted,
            events_trimmed: report.events_trimmed,
            profile_values_deleted: report.profile_values_deleted,
            legal_holds_deleted: report.legal_holds_deleted,
        }];
        append_audit(writer, &audit, now)?;
    }
    Ok(report)
}
