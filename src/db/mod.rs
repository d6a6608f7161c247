//! The database: connection set-up (pragmas), embedded migrations, the read pool, row
//! models and read queries. Writes go through [`crate::actors::db_executor::DbExecutor`].

pub mod agents;
pub mod analytics;
pub mod approvals;
pub mod audit;
pub mod consumers;
pub mod exchange;
pub mod files;
pub mod idempotency;
pub mod inbox;
pub mod memory;
pub mod models;
pub mod onboarding;
pub mod overview;
pub mod provenance;
pub mod queries;
pub mod reputation;
pub mod retention;
pub mod schedules;
pub mod schema;
pub mod usage;

use std::time::Duration;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::HubError;
use crate::settings::{Settings, SQLITE_SYNCHRONOUS};

pub type ReadPool = Pool<ConnectionManager<SqliteConnection>>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Per-connection pragmas, applied to the writer and to every pooled reader.
#[derive(Debug, Clone)]
pub struct Pragmas {
    synchronous: String,
    busy_timeout_ms: u64,
    read_only: bool,
}

impl Pragmas {
    pub fn from_settings(settings: &Settings, read_only: bool) -> anyhow::Result<Self> {
        let synchronous = settings.sqlite_synchronous.to_ascii_uppercase();
        // Settings are checked at start; this guards the ones tests build in code, as the
        // value is written into a PRAGMA.
        anyhow::ensure!(
            SQLITE_SYNCHRONOUS.contains(&synchronous.as_str()),
            "sqlite_synchronous must be one of {}, not {synchronous:?}",
            SQLITE_SYNCHRONOUS.join(", ")
        );
        Ok(Self {
            synchronous,
            busy_timeout_ms: settings.sqlite_busy_timeout_ms,
            read_only,
        })
    }

    /// `temp_store = MEMORY`: each write's savepoint keeps the pages it may roll back in
    /// memory rather than in a temporary file (they are never needed after a crash).
    fn apply(&self, conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = {}; PRAGMA query_only = {}; PRAGMA temp_store = MEMORY;",
            self.busy_timeout_ms, self.synchronous, self.read_only
        ))
    }
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        self.apply(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens the writer connection: creates the file (and its directory) for the hub's user
/// alone, switches on WAL and runs the embedded migrations. Called once at start, before
/// any actor runs, and again when the writer reconnects.
pub fn open_writer(settings: &Settings) -> anyhow::Result<SqliteConnection> {
    let url = &settings.database_url;
    if let Some(dir) = files::data_dir(url) {
        files::create_private_dir(dir)?;
    }
    let [db, wal, shm] = files::database_files(url);
    files::create_private_file(&db)?;
    let mut conn = SqliteConnection::establish(url)
        .with_context(|| format!("cannot open the database {url}"))?;
    conn.batch_execute("PRAGMA journal_mode = WAL;")?;
    Pragmas::from_settings(settings, false)?.apply(&mut conn)?;
    run_migrations(&mut conn)?;
    // SQLite gives new -wal and -shm files the database's mode, but ones left by an
    // earlier run keep theirs: checked now that WAL mode has opened them.
    files::tighten(&wal)?;
    files::tighten(&shm)?;
    Ok(conn)
}

/// Applies every pending embedded migration.
pub fn run_migrations(conn: &mut SqliteConnection) -> anyhow::Result<Vec<String>> {
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    Ok(applied.iter().map(|m| m.to_string()).collect())
}

/// The pool of read-only connections used from blocking tasks.
pub fn read_pool(settings: &Settings) -> anyhow::Result<ReadPool> {
    let manager = ConnectionManager::<SqliteConnection>::new(&settings.database_url);
    Pool::builder()
        .max_size(settings.read_pool_size.max(2))
        .connection_timeout(Duration::from_secs(5))
        .connection_customizer(Box::new(Pragmas::from_settings(settings, true)?))
        .build(manager)
        .context("cannot open the read pool")
}

/// Runs a read query on a pooled connection, off the async workers.
pub async fn read<T, F>(pool: &ReadPool, query: F) -> Result<T, HubError>
where
    T: Send + 'static,
    F: FnOnce(&mut SqliteConnection) -> Result<T, HubError> + Send + 'static,
{
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get()?;
        query(&mut conn)
    })
    .await?
}
