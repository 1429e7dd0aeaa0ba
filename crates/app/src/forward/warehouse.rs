//! The PostgreSQL warehouse a brand owns: Tactful creates and migrates, in the schema it is given,
//! one table per kind of event (a table per `track` event name, `identifies`, `pages`, `screens`,
//! `groups`) plus a `people` table, keyed by the destination's own token instead of an identity.
//!
//! Rows are keyed by `message_id`, so a redelivery changes nothing. Properties are kept as JSONB (a
//! sink is handed values, not catalog types; views can type them). Raw identifiers appear only in
//! `people.identifiers`, and only those the destination is declared to know. An erasure deletes the
//! person's rows from every table in one transaction; a restriction deletes their events and traits
//! too and keeps only a `people` row marked `restricted` (processing stops; a replay after the
//! restriction is lifted restores what is permitted then).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use tactful_domain::secret::Secret;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Mutex, OnceCell};

use super::sink::{Forget, Forwarded, Removal, Sink, SinkError};

/// The warehouse's own migrations, in order; the version is the position plus one. Tables made for
/// `track` events later follow [`track_table`]'s shape of the latest version.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE people (
    token text PRIMARY KEY,
    identifiers jsonb NOT NULL DEFAULT '{}',
    traits jsonb NOT NULL DEFAULT '{}',
    restricted boolean NOT NULL DEFAULT false,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL
);
CREATE TABLE _tactful_tables (
    event text PRIMARY KEY,
    table_name text NOT NULL UNIQUE
);
CREATE TABLE identifies (message_id text PRIMARY KEY, token text NOT NULL, "timestamp" timestamptz NOT NULL,
    traits jsonb NOT NULL, purposes jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX identifies_token ON identifies (token);
CREATE TABLE groups (message_id text PRIMARY KEY, token text NOT NULL, "timestamp" timestamptz NOT NULL,
    traits jsonb NOT NULL, purposes jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX groups_token ON groups (token);
CREATE TABLE pages (message_id text PRIMARY KEY, token text NOT NULL, "timestamp" timestamptz NOT NULL,
    name text, properties jsonb NOT NULL, purposes jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX pages_token ON pages (token);
CREATE TABLE screens (message_id text PRIMARY KEY, token text NOT NULL, "timestamp" timestamptz NOT NULL,
    name text, properties jsonb NOT NULL, purposes jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX screens_token ON screens (token);
"#];

/// Tables every warehouse has besides those of `track` events, with the column their JSON goes in.
const FIXED: &[(&str, &str, &str)] = &[
    ("identify", "identifies", "traits"),
    ("group", "groups", "traits"),
    ("page", "pages", "properties"),
    ("screen", "screens", "properties"),
];

/// Longest table name made from an event name (PostgreSQL allows 63 bytes; room for a suffix).
const MAX_TABLE_NAME: usize = 56;

/// A PostgreSQL database the brand owns, reached lazily: nothing connects until the first delivery.
pub struct WarehouseSink {
    connect: Result<PgConnectOptions, String>,
    schema: String,
    pool: OnceCell<PgPool>,
    /// Track tables already made, by event name.
    tables: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for WarehouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseSink").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl WarehouseSink {
    /// A warehouse at `database_url` whose tables live in `schema` (created when missing). A bad URL
    /// or schema name is reported by the first delivery, as a refusal not worth retrying.
    pub fn new(database_url: &Secret, schema: &str) -> WarehouseSink {
        let connect = database_url
            .expose()
            .parse::<PgConnectOptions>()
            .map_err(|error| format!("the warehouse URL is not valid: {error}"));
        WarehouseSink {
            connect,
            schema: schema.to_owned(),
            pool: OnceCell::new(),
            tables: Mutex::new(HashMap::new()),
        }
    }

    /// The pool, connected and migrated on first use.
    async fn pool(&self) -> Result<&PgPool, SinkError> {
        self.pool
            .get_or_try_init(|| async {
                if !is_identifier(&self.schema) {
                    return Err(refused(format!(
                        "the warehouse schema {:?} is not a plain lower-case SQL name",
                        self.schema
                    )));
                }
                let connect = self.connect.clone().map_err(refused)?;
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect_lazy_with(connect.options([("search_path", self.schema.as_str())]));
                migrate(&pool, &self.schema).await?;
                Ok(pool)
            })
            .await
    }

    /// The table of `track` event `event`, made (and registered) the first time it is seen.
    async fn track_table(&self, conn: &mut PgConnection, event: &str) -> Result<String, SinkError> {
        if let Some(table) = self.tables.lock().await.get(event) {
            return Ok(table.clone());
        }
        let found: Option<String> =
            sqlx::query_scalar("SELECT table_name FROM _tactful_tables WHERE event = $1")
                .bind(event)
                .fetch_optional(&mut *conn)
                .await
                .map_err(failed)?;
        let table = match found {
            Some(table) => table,
            None => create_track_table(conn, event).await?,
        };
        self.tables.lock().await.insert(event.to_owned(), table.clone());
        Ok(table)
    }
}

#[async_trait]
impl Sink for WarehouseSink {
    async fn deliver(&self, batch: &[Forwarded]) -> Result<(), SinkError> {
        let pool = self.pool().await?;
        // Tables first, each in its own short transaction, so a batch's rows go in one commit.
        let mut groups: Vec<(String, &'static str, Vec<&Forwarded>)> = Vec::new();
        {
            let mut conn = pool.acquire().await.map_err(failed)?;
            for event in batch {
                let (table, column) = match FIXED.iter().find(|(kind, ..)| *kind == event.kind) {
                    Some((_, table, column)) => ((*table).to_owned(), *column),
                    None if event.kind == "track" => (
                        self.track_table(&mut conn, event.event.as_deref().unwrap_or("")).await?,
                        "properties",
                    ),
                    None => return Err(refused(format!("a warehouse keeps no {:?} calls", event.kind))),
                };
                match groups.iter_mut().find(|(name, ..)| *name == table) {
                    Some((_, _, events)) => events.push(event),
                    None => groups.push((table, column, vec![event])),
                }
            }
        }
        let mut tx = pool.begin().await.map_err(failed)?;
        upsert_people(&mut tx, batch).await?;
        for (table, column, events) in &groups {
            let inserted = insert_rows(&mut tx, table, column, events).await?;
            if *table == "identifies" {
                for event in events.iter().filter(|event| inserted.contains(&event.message_id)) {
                    sqlx::query("UPDATE people SET traits = traits || $2::jsonb WHERE token = $1")
                        .bind(&event.person.token)
                        .bind(Value::Object(event.properties.clone()).to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                }
            }
        }
        tx.commit().await.map_err(failed)
    }

    async fn forget(&self, forget: &Forget) -> Result<(), SinkError> {
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(failed)?;
        let mut tables: Vec<String> = FIXED.iter().map(|(_, table, _)| (*table).to_owned()).collect();
        tables.extend(
            sqlx::query_scalar::<_, String>("SELECT table_name FROM _tactful_tables ORDER BY table_name")
                .fetch_all(&mut *tx)
                .await
                .map_err(failed)?,
        );
        for table in &tables {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM \"{table}\" WHERE token = $1")))
                .bind(&forget.person.token)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        let people = match forget.removal {
            Removal::Erase => "DELETE FROM people WHERE token = $1",
            Removal::Restrict => {
                "UPDATE people SET restricted = true, traits = '{}', identifiers = '{}' WHERE token = $1"
            }
        };
        sqlx::query(people).bind(&forget.person.token).execute(&mut *tx).await.map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
}

/// Creates the schema and applies the migrations it lacks, one transaction each, refusing a
/// warehouse migrated by a newer Tactful.
async fn migrate(pool: &PgPool, schema: &str) -> Result<(), SinkError> {
    let mut conn = pool.acquire().await.map_err(failed)?;
    for statement in [
        format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
        "CREATE TABLE IF NOT EXISTS _tactful_migrations (version integer PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT now())"
            .to_owned(),
    ] {
        match sqlx::query(AssertSqlSafe(statement)).execute(&mut *conn).await {
            // Another instance made it at the same moment.
            Err(sqlx::Error::Database(error))
                if matches!(error.code().as_deref(), Some("23505" | "42P06" | "42P07")) => {}
            other => {
                other.map_err(failed)?;
            }
        }
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(failed)?;
    sqlx::query("LOCK TABLE _tactful_migrations IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    let applied: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM _tactful_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
    let applied = usize::try_from(applied.unwrap_or(0)).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(refused(format!(
            "the warehouse schema {schema} is at version {applied}, newer than this Tactful knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        sqlx::raw_sql(AssertSqlSafe(*migration)).execute(&mut *tx).await.map_err(failed)?;
        sqlx::query("INSERT INTO _tactful_migrations (version) VALUES ($1)")
            .bind(i32::try_from(index + 1).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}

/// Registers and creates the table of a `track` event, named after it (`track_` plus the name in
/// lower-case letters, digits and underscores), with a number added when another event took the name.
async fn create_track_table(conn: &mut PgConnection, event: &str) -> Result<String, SinkError> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(failed)?;
    sqlx::query("LOCK TABLE _tactful_tables IN EXCLUSIVE MODE").execute(&mut *tx).await.map_err(failed)?;
    let taken: Vec<(String, String)> = sqlx::query("SELECT event, table_name FROM _tactful_tables")
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    if let Some((_, table)) = taken.iter().find(|(name, _)| name == event) {
        return Ok(table.clone());
    }
    let base = track_table(event);
    let mut table = base.clone();
    let mut number = 2;
    while taken.iter().any(|(_, name)| *name == table) {
        table = format!("{base}_{number}");
        number += 1;
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE \"{table}\" (message_id text PRIMARY KEY, token text NOT NULL, \
         \"timestamp\" timestamptz NOT NULL, event text NOT NULL, properties jsonb NOT NULL, \
         purposes jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now()); \
         CREATE INDEX \"{table}_token\" ON \"{table}\" (token);"
    )))
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    sqlx::query("INSERT INTO _tactful_tables (event, table_name) VALUES ($1, $2)")
        .bind(event)
        .bind(&table)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(table)
}

/// The table name for a `track` event: `Order Completed` → `track_order_completed`.
fn track_table(event: &str) -> String {
    let mut name = String::from("track_");
    let mut gap = false;
    for character in event.chars() {
        if character.is_ascii_alphanumeric() {
            if gap && !name.ends_with('_') {
                name.push('_');
            }
            name.push(character.to_ascii_lowercase());
            gap = false;
        } else {
            gap = true;
        }
        if name.len() >= MAX_TABLE_NAME {
            break;
        }
    }
    if name == "track_" {
        name.push_str("unnamed");
    }
    name
}

/// A person in a batch: the identifiers last given, and the first and last event times.
type Seen<'a> = (&'a BTreeMap<String, Vec<String>>, OffsetDateTime, OffsetDateTime);

/// One row per person in the batch: the declared identifiers as last given, first and last seen.
/// A delivery means the person is permitted again, so it lifts a restriction mark.
async fn upsert_people(conn: &mut PgConnection, batch: &[Forwarded]) -> Result<(), SinkError> {
    let mut people: BTreeMap<&str, Seen<'_>> = BTreeMap::new();
    for event in batch {
        let entry = people.entry(event.person.token.as_str()).or_insert((
            &event.person.identifiers,
            event.timestamp,
            event.timestamp,
        ));
        entry.0 = &event.person.identifiers;
        entry.1 = entry.1.min(event.timestamp);
        entry.2 = entry.2.max(event.timestamp);
    }
    let tokens: Vec<&str> = people.keys().copied().collect();
    let identifiers: Vec<String> =
        people.values().map(|(ids, ..)| serde_json::to_string(ids).expect("JSON values serialize")).collect();
    let first: Vec<String> = people.values().map(|(_, first, _)| rfc3339(*first)).collect();
    let last: Vec<String> = people.values().map(|(.., last)| rfc3339(*last)).collect();
    sqlx::query(
        "INSERT INTO people (token, identifiers, first_seen, last_seen) \
         SELECT token, identifiers::jsonb, first_seen::timestamptz, last_seen::timestamptz \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(token, identifiers, first_seen, last_seen) \
         ON CONFLICT (token) DO UPDATE SET identifiers = EXCLUDED.identifiers, restricted = false, \
         first_seen = LEAST(people.first_seen, EXCLUDED.first_seen), \
         last_seen = GREATEST(people.last_seen, EXCLUDED.last_seen)",
    )
    .bind(tokens)
    .bind(identifiers)
    .bind(first)
    .bind(last)
    .execute(&mut *conn)
    .await
    .map_err(failed)?;
    Ok(())
}

/// Inserts `events` into `table`, skipping message ids already there; returns those inserted.
async fn insert_rows(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
    events: &[&Forwarded],
) -> Result<Vec<String>, SinkError> {
    let ids: Vec<&str> = events.iter().map(|event| event.message_id.as_str()).collect();
    let tokens: Vec<&str> = events.iter().map(|event| event.person.token.as_str()).collect();
    let times: Vec<String> = events.iter().map(|event| rfc3339(event.timestamp)).collect();
    let names: Vec<Option<&str>> = events.iter().map(|event| event.event.as_deref()).collect();
    let values: Vec<String> =
        events.iter().map(|event| Value::Object(event.properties.clone()).to_string()).collect();
    let purposes: Vec<String> = events
        .iter()
        .map(|event| serde_json::to_string(&event.purposes).expect("JSON values serialize"))
        .collect();
    let (name_column, name_value) = match table {
        "identifies" | "groups" => ("", ""),
        "pages" | "screens" => (", name", ", name"),
        _ => (", event", ", coalesce(name, '')"),
    };
    let sql = format!(
        "INSERT INTO \"{table}\" (message_id, token, \"timestamp\"{name_column}, {column}, purposes) \
         SELECT id, token, at::timestamptz{name_value}, value::jsonb, purposes::jsonb \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
         AS u(id, token, at, name, value, purposes) \
         ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(ids)
        .bind(tokens)
        .bind(times)
        .bind(names)
        .bind(values)
        .bind(purposes)
        .fetch_all(&mut *conn)
        .await
        .map_err(failed)
}

/// A plain lower-case SQL name: letters, digits and underscores, starting with a letter or `_`.
fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn refused(message: String) -> SinkError {
    SinkError { retryable: false, message }
}

/// A database failure: retryable when the warehouse was unreachable or busy, final when it refused
/// the statement (permissions, a table changed by hand).
fn failed(error: sqlx::Error) -> SinkError {
    let retryable = match &error {
        sqlx::Error::Database(database) => match database.code().as_deref() {
            Some(code) => {
                code.starts_with("08")
                    || code.starts_with("40")
                    || code.starts_with("53")
                    || code.starts_with("57")
            }
            None => true,
        },
        _ => true,
    };
    let message = match &error {
        sqlx::Error::Database(database) => {
            format!("warehouse refused ({}): {}", database.code().unwrap_or_default(), database.message())
        }
        other => format!("warehouse unreachable: {other}"),
    };
    SinkError { retryable, message }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_become_plain_table_names() {
        assert_eq!(track_table("Order Completed"), "track_order_completed");
        assert_eq!(track_table("  sign-up: step 2 "), "track_sign_up_step_2");
        assert_eq!(track_table("\"; DROP TABLE people; --"), "track_drop_table_people");
        assert_eq!(track_table("日本"), "track_unnamed");
        assert!(track_table(&"x".repeat(200)).len() <= MAX_TABLE_NAME);
    }

    #[test]
    fn only_plain_schema_names_are_taken() {
        assert!(is_identifier("tactful_forwarded"));
        assert!(!is_identifier("Public"));
        assert!(!is_identifier("a\"b"));
        assert!(!is_identifier(""));
    }
}
