//! Test support shared by this crate's tests and the other crates' tests: a fresh PostgreSQL
//! database per test, or a clear word that the PostgreSQL half was skipped.

use std::io::Write as _;

/// The URL of a fresh, empty database on the server named by `TACTFUL_TEST_POSTGRES_URL` (whose
/// role may create databases), or `None` when that variable is not set — which is an error when
/// `CI` is set, and otherwise said once on the terminal.
pub async fn fresh_postgres_database() -> Option<String> {
    let Ok(admin) = std::env::var("TACTFUL_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL tests: set TACTFUL_TEST_POSTGRES_URL (see scripts/test-postgres)"
        );
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            // Written to the terminal directly, so the test harness does not swallow it.
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: the PostgreSQL tests (set TACTFUL_TEST_POSTGRES_URL, or run \
                 `scripts/test-postgres cargo test --workspace`)\n"
            );
        });
        return None;
    };
    use sqlx::Connection as _;
    let mut admin_conn =
        sqlx::PgConnection::connect(&admin).await.expect("connect to TACTFUL_TEST_POSTGRES_URL");
    let name = format!("tactful_t_{}", &tactful_vault::new_subject_id()[4..16]);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin_conn)
        .await
        .unwrap();
    let (base, query) =
        admin.split_once('?').map_or((admin.as_str(), None), |(base, query)| (base, Some(query)));
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    Some(match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    })
}
