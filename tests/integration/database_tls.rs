//! TLS to PostgreSQL (issue 16): `database_tls` is libpq's sslmode for every connection
//! the hub opens, `database_tls_root_cert` the authority it trusts. `.ci/with-postgres`
//! starts its server with TLS on, a certificate signed by an authority made for the run.

use diesel::sql_types::BigInt;
use diesel::RunQueryDsl;
use serde_json::json;

use crate::support::process::{m3shd, run_to_end};
use crate::support::MASTER;
use crate::support::{database_env, database_url_at, open_database, postgres_server, TestHub};

/// The PEM file `.ci/with-postgres` names in `variable`.
fn authority(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} names a certificate authority's file (.ci/with-postgres sets it)")
    })
}

#[derive(diesel::QueryableByName)]
struct Sessions {
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = BigInt)]
    encrypted: i64,
}

/// How many sessions `hub` has open on its database, and how many of them use TLS, as
/// the server sees them.
fn sessions_of(server: &str, hub: &TestHub) -> Sessions {
    let url = database_url_at(&hub.db_path());
    let (_, database) = url.rsplit_once('/').expect("a database URL");
    diesel::sql_query(format!(
        "SELECT count(*) AS total, count(*) FILTER (WHERE s.ssl) AS encrypted \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = '{database}'"
    ))
    .get_result(&mut open_database(&format!("{server}/postgres")))
    .expect("the server reports its sessions")
}

/// A task written and read back through `hub`: its writer and its read pool both work.
async fn write_and_read(hub: &TestHub) {
    let task = hub
        .task(json!({ "title": "over TLS", "prompt": "p" }))
        .await;
    let read = hub
        .get(&format!("/api/tasks/{}", task["id"]), MASTER)
        .await
        .expect(200);
    assert_eq!(read["title"], "over TLS");
}

#[actix_web::test]
async fn a_hub_that_verifies_the_server_encrypts_every_session_and_one_told_not_to_none() {
    let Some(server) = postgres_server() else {
        // A SQLite file has no server to speak TLS to: the settings change nothing.
        let hub = TestHub::spawn_with(|settings| {
            settings.database_tls = "verify-full".into();
            settings.database_tls_root_cert = "/no/such/authority.pem".into();
        })
        .await;
        write_and_read(&hub).await;
        return;
    };
    let trusted = authority("M3SHD_TEST_POSTGRES_CA");
    let verifying = TestHub::spawn_with(|settings| {
        settings.database_tls = "verify-full".into();
        settings.database_tls_root_cert = trusted;
    })
    .await;
    write_and_read(&verifying).await;
    let sessions = sessions_of(&server, &verifying);
    // The writer, the connection holding the leader's lock, and the read pool's.
    assert!(sessions.total >= 3, "{} sessions", sessions.total);
    assert_eq!(sessions.encrypted, sessions.total, "every session uses TLS");

    let plain = TestHub::spawn_with(|settings| settings.database_tls = "disable".into()).await;
    write_and_read(&plain).await;
    let sessions = sessions_of(&server, &plain);
    assert!(sessions.total >= 3, "{} sessions", sessions.total);
    assert_eq!(sessions.encrypted, 0, "no session uses TLS");
}

#[actix_web::test]
async fn a_server_the_hub_cannot_verify_and_tls_set_in_the_url_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // The URL may not set what the TLS settings set (two answers to one question), and
    // the refusal does not print the URL's password.
    let mut command = m3shd();
    command
        .arg("serve")
        .env("M3SHDUP_BIND", "127.0.0.1:0")
        .env("M3SHDUP_TOKEN", MASTER)
        .env(
            "M3SHDUP_DATABASE_URL",
            "postgres://hub:s3cret@127.0.0.1:1/hub?sslmode=disable",
        );
    let ended = run_to_end(command).await;
    assert!(!ended.ok);
    assert!(
        ended.stderr.contains(
            r#"database_url = "…sslmode=…" (from M3SHDUP_DATABASE_URL): expected a URL without sslmode or sslrootcert (TLS is set by database_tls and database_tls_root_cert)"#
        ),
        "{}",
        ended.stderr
    );
    assert!(!ended.stderr.contains("s3cret"), "{}", ended.stderr);
    if postgres_server().is_none() {
        return;
    }
    // An authority that did not sign the server's certificate: the hub must not start.
    let mut command = m3shd();
    command
        .arg("serve")
        .env("M3SHDUP_BIND", "127.0.0.1:0")
        .env("M3SHDUP_TOKEN", MASTER)
        .envs(database_env(&dir.path().join("hub.db")))
        .env("M3SHDUP_DATABASE_TLS", "verify-full")
        .env(
            "M3SHDUP_DATABASE_TLS_ROOT_CERT",
            authority("M3SHD_TEST_POSTGRES_OTHER_CA"),
        );
    let ended = run_to_end(command).await;
    assert!(!ended.ok);
    assert!(!ended.stdout.contains("listening"), "{}", ended.stdout);
    assert!(
        ended.stderr.contains("cannot open the database")
            && ended.stderr.contains("certificate verify failed"),
        "{}",
        ended.stderr
    );
}
