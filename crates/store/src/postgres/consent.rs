//! The consent ledger and its receipts on PostgreSQL: consent rows written in the transaction of what
//! caused them (with their deliveries and audit entries), and read back for exports and expiry.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use tactful_domain::audit::AuditEvent;
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod};

use super::audit::append_audit;
use super::subjects::root;
use super::{PostgresStore, deliveries};
use crate::signed::ConsentRow;
use crate::{ConsentStore, LedgerEntry, NewDelivery, Result, StoreError, StoredReceipt};

pub(super) fn to_event(row: &PgRow) -> Result<ConsentEvent> {
    let kind: String = row.try_get("kind")?;
    let method: String = row.try_get("method")?;
    Ok(ConsentEvent {
        id: row.try_get("id")?,
        purpose: row.try_get("purpose")?,
        kind: ConsentKind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown consent kind {kind:?}")))?,
        method: ConsentMethod::parse(&method)
            .ok_or_else(|| StoreError::Internal(format!("unknown consent method {method:?}")))?,
        at: row.try_get("at")?,
        expires_at: row.try_get("expires_at")?,
        version: u32::try_from(row.try_get::<i32, _>("version")?).unwrap_or(0),
        source: row.try_get("source")?,
        jurisdiction: row.try_get("jurisdiction")?,
        verified: row.try_get("verified")?,
        provenance: crate::shared::provenance(row.try_get::<Option<String>, _>("provenance")?.as_deref())?,
    })
}

pub(super) async fn write_consents(conn: &mut PgConnection, rows: &[ConsentRow], now: i64) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|row| row.event.id.as_str()).collect();
    let subjects: Vec<&str> = rows.iter().map(|row| row.subject.as_str()).collect();
    let purposes: Vec<&str> = rows.iter().map(|row| row.event.purpose.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|row| row.event.kind.as_str()).collect();
    let methods: Vec<&str> = rows.iter().map(|row| row.event.method.as_str()).collect();
    let at: Vec<i64> = rows.iter().map(|row| row.event.at).collect();
    let expires: Vec<Option<i64>> = rows.iter().map(|row| row.event.expires_at).collect();
    let versions: Vec<i32> =
        rows.iter().map(|row| i32::try_from(row.event.version).unwrap_or(i32::MAX)).collect();
    let sources: Vec<Option<&str>> = rows.iter().map(|row| row.event.source.as_deref()).collect();
    let jurisdictions: Vec<Option<&str>> = rows.iter().map(|row| row.event.jurisdiction.as_deref()).collect();
    let verified: Vec<bool> = rows.iter().map(|row| row.event.verified).collect();
    let provenances: Vec<Option<String>> =
        rows.iter().map(|row| crate::shared::provenance_text(row.event.provenance.as_ref())).collect();
    let receipts: Vec<&str> = rows.iter().map(|row| row.receipt.as_str()).collect();
    sqlx::query(
        "INSERT INTO consent_events (id, subject_id, purpose, kind, method, at, expires_at, version, source, jurisdiction,
                                     verified, provenance)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[],
                              $8::int4[], $9::text[], $10::text[], $11::bool[], $12::text[])",
    )
    .bind(&ids)
    .bind(&subjects)
    .bind(&purposes)
    .bind(&kinds)
    .bind(&methods)
    .bind(&at)
    .bind(&expires)
    .bind(&versions)
    .bind(&sources)
    .bind(&jurisdictions)
    .bind(&verified)
    .bind(&provenances)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO consent_receipts (id, subject_id, created_at, body)
         SELECT id, subject_id, $3, body FROM UNNEST($1::text[], $2::text[], $4::text[]) AS t(id, subject_id, body)",
    )
    .bind(&ids)
    .bind(&subjects)
    .bind(now)
    .bind(&receipts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn consent_ledger(
    conn: &mut PgConnection,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<LedgerEntry>> {
    let (at, id) = after.unwrap_or((i64::MIN, String::new()));
    let rows = sqlx::query(
        "SELECT subject_id, id, purpose, kind, method, at, expires_at, version, source, jurisdiction, verified, provenance FROM consent_events
         WHERE (at, id) > ($1, $2) ORDER BY at, id LIMIT $3",
    )
    .bind(at)
    .bind(id)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok(LedgerEntry { subject: row.try_get("subject_id")?, event: to_event(row)? }))
        .collect()
}

pub(super) async fn lapsed_consents(
    conn: &mut PgConnection,
    now: i64,
    limit: u32,
) -> Result<Vec<LedgerEntry>> {
    let sql = crate::shared::LAPSED_CONSENTS_SQL.replace("?1", "$1").replace("?2", "$2");
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(i64::from(limit)).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| Ok(LedgerEntry { subject: row.try_get("subject_id")?, event: to_event(row)? }))
        .collect()
}

fn to_receipt(row: &PgRow) -> Result<StoredReceipt> {
    Ok(StoredReceipt {
        id: row.try_get("id")?,
        subject: row.try_get("subject_id")?,
        created_at: row.try_get("created_at")?,
        body: row.try_get("body")?,
    })
}

pub(super) async fn receipt(conn: &mut PgConnection, id: &str) -> Result<Option<StoredReceipt>> {
    sqlx::query("SELECT id, subject_id, created_at, body FROM consent_receipts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(to_receipt)
        .transpose()
}

pub(super) async fn receipts(conn: &mut PgConnection, subject: &str) -> Result<Vec<StoredReceipt>> {
    let Some(root) = root(conn, subject).await? else { return Ok(Vec::new()) };
    sqlx::query(
        "SELECT r.id, r.subject_id, r.created_at, r.body FROM consent_receipts r JOIN subjects s ON s.id = r.subject_id
         WHERE s.id = $1 OR s.merged_into = $1 ORDER BY r.created_at, r.id",
    )
    .bind(root)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(to_receipt)
    .collect()
}

#[async_trait]
impl ConsentStore for PostgresStore {
    async fn record_consents(
        &self,
        subject: &str,
        events: Vec<(ConsentEvent, String)>,
        audit: Vec<AuditEvent>,
        deliveries: Vec<NewDelivery>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let root = root(&mut tx, subject)
            .await?
            .ok_or_else(|| StoreError::Internal("consent for a subject that does not exist".into()))?;
        let rows: Vec<ConsentRow> = events
            .into_iter()
            .map(|(event, receipt)| ConsentRow { subject: root.clone(), event, receipt })
            .collect();
        let now = crate::shared::now_millis();
        write_consents(&mut tx, &rows, now).await?;
        deliveries::enqueue(&mut tx, &deliveries, now).await?;
        append_audit(&mut tx, &audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn consent_ledger(&self, after: Option<(i64, String)>, limit: u32) -> Result<Vec<LedgerEntry>> {
        let mut conn = self.pool.acquire().await?;
        consent_ledger(&mut conn, after, limit).await
    }

    async fn lapsed_consents(&self, now: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        let mut conn = self.pool.acquire().await?;
        lapsed_consents(&mut conn, now, limit).await
    }

    async fn receipt(&self, id: &str) -> Result<Option<StoredReceipt>> {
        let mut conn = self.pool.acquire().await?;
        receipt(&mut conn, id).await
    }

    async fn receipts(&self, subject: &str) -> Result<Vec<StoredReceipt>> {
        let mut conn = self.pool.acquire().await?;
        receipts(&mut conn, subject).await
    }
}
