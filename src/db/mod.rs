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
pub mod leadership;
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
use diesel::prelude::*;
use diesel::r2d2::{CustomizeConnection, ManageConnection, Pool, R2D2Connection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::HubError;
use crate::settings::{Database, Settings, SQLITE_SYNCHRONOUS};

/// One connection to whichever database the hub's URL names. Queries are written once
/// against it; the few that must differ match on the variant.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

pub type ReadPool = Pool<Connector>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Opens one connection of the kind `database` names (a path is never tried as a server
/// URL).
pub fn connect(database: Database) -> diesel::ConnectionResult<DbConnection> {
    Ok(match database {
        Database::Postgres(url) => DbConnection::Postgres(PgConnection::establish(url)?),
        Database::Sqlite(path) => DbConnection::Sqlite(SqliteConnection::establish(path)?),
    })
}

impl DbConnection {
    /// Runs `body` in a write transaction. SQLite's starts `IMMEDIATE`: it takes the write
    /// lock at once rather than failing to upgrade a read lock halfway.
    pub fn write_transaction<T, E, F>(&mut self, body: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        let sqlite = match self {
            DbConnection::Sqlite(sqlite) => sqlite,
            DbConnection::Postgres(_) => return self.transaction(body),
        };
        AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
        // As Diesel's own `transaction`: commit on success (rolling back if the commit
        // fails), roll back on error.
        match body(self) {
            Ok(value) => match Self::commit_transaction(self) {
                Ok(()) => Ok(value),
                Err(commit) => {
                    let _ = Self::rollback_transaction(self);
                    Err(commit.into())
                }
            },
            Err(error) => {
                Self::rollback_transaction(self)?;
                Err(error)
            }
        }
    }
}

/// The SQLite file at `path`, made (with its directory) for the hub's user alone if it
/// is not there yet, before SQLite opens it.
fn create_sqlite_file(path: &str) -> anyhow::Result<()> {
    if let Some(dir) = files::data_dir(path) {
        files::create_private_dir(dir)?;
    }
    files::create_private_file(std::path::Path::new(path))
}

/// The columns of row type `T`, for `RETURNING` (Diesel 2.3 cannot pass `T::as_returning()`
/// through to both backends at once; the plain column tuple it can).
pub fn columns_of<T: diesel::Selectable<MultiBackend>>() -> T::SelectExpression {
    T::construct_selection()
}

/// Raw SQL written once with `?` placeholders, numbered (`$1`, `$2`, …) on PostgreSQL. No
/// raw SQL of the hub holds a `?` of its own.
pub fn sql_query(conn: &DbConnection, sql: &str) -> diesel::query_builder::SqlQuery {
    match conn {
        DbConnection::Sqlite(_) => diesel::sql_query(sql),
        DbConnection::Postgres(_) => {
            let mut numbered = String::with_capacity(sql.len() + 8);
            let mut placeholders = 0;
            for c in sql.chars() {
                if c == '?' {
                    placeholders += 1;
                    numbered.push_str(&format!("${placeholders}"));
                } else {
                    numbered.push(c);
                }
            }
            diesel::sql_query(numbered)
        }
    }
}

/// Runs one query written once for each backend's own connection: for the SQL Diesel
/// cannot build for both at once (upserts, `ON CONFLICT`).
#[macro_export]
macro_rules! on_each_backend {
    ($conn:expr, |$inner:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($inner) => $body,
            $crate::db::DbConnection::Postgres($inner) => $body,
        }
    };
}

/// Per-connection settings, applied to the writer and to every pooled reader.
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

    /// SQLite: `temp_store = MEMORY`: each write's savepoint keeps the pages it may roll
    /// back in memory rather than in a temporary file (they are never needed after a
    /// crash). PostgreSQL: readers are read-only sessions, and every session works in UTC.
    fn apply(&self, conn: &mut DbConnection) -> diesel::QueryResult<()> {
        match conn {
            DbConnection::Sqlite(sqlite) => sqlite.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = {}; PRAGMA query_only = {}; PRAGMA temp_store = MEMORY;",
                self.busy_timeout_ms, self.synchronous, self.read_only
            )),
            DbConnection::Postgres(pg) => pg.batch_execute(&format!(
                "SET TIME ZONE 'UTC'; SET default_transaction_read_only = {};",
                self.read_only
            )),
        }
    }
}

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        self.apply(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens the writer connection and runs the embedded migrations. Called once at start,
/// before any actor runs, and again when the writer reconnects.
pub fn open_writer(settings: &Settings) -> anyhow::Result<DbConnection> {
    let mut conn = open(settings)?;
    run_migrations(&mut conn)?;
    Ok(conn)
}

/// Opens a read-write connection. For SQLite it first creates the file (and its
/// directory) for the hub's user alone and switches on WAL.
pub fn open(settings: &Settings) -> anyhow::Result<DbConnection> {
    let url = &settings.connection_url();
    let database = Database::of(url);
    let sqlite_files = database.sqlite_file().map(files::database_files);
    if let Some(path) = database.sqlite_file() {
        create_sqlite_file(path)?;
    }
    let mut conn =
        connect(database).with_context(|| format!("cannot open the database {}", redacted(url)))?;
    if let DbConnection::Sqlite(sqlite) = &mut conn {
        sqlite.batch_execute("PRAGMA journal_mode = WAL;")?;
    }
    Pragmas::from_settings(settings, false)?.apply(&mut conn)?;
    if let Some([_, wal, shm]) = sqlite_files {
        // SQLite gives new -wal and -shm files the database's mode, but ones left by an
        // earlier run keep theirs: checked now that WAL mode has opened them.
        files::tighten(&wal)?;
        files::tighten(&shm)?;
    }
    Ok(conn)
}

/// Opens pooled connections of the backend the URL names (Diesel's own manager would try
/// each backend in turn, and SQLite accepts any string as a file name).
#[derive(Debug)]
pub struct Connector {
    url: String,
}

impl ManageConnection for Connector {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        connect(Database::of(&self.url)).map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// `url` without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Applies every pending embedded migration of the connection's backend.
pub fn run_migrations(conn: &mut DbConnection) -> anyhow::Result<Vec<String>> {
    let migrations = match conn {
        DbConnection::Sqlite(_) => SQLITE_MIGRATIONS,
        DbConnection::Postgres(_) => POSTGRES_MIGRATIONS,
    };
    leadership::one_migrator_at_a_time(conn, |conn| {
        let applied = conn
            .run_pending_migrations(migrations)
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
        Ok(applied.iter().map(|m| m.to_string()).collect())
    })
}

/// The pool of read-only connections used from blocking tasks.
pub fn read_pool(settings: &Settings) -> anyhow::Result<ReadPool> {
    let manager = Connector {
        url: settings.connection_url(),
    };
    Pool::builder()
        .max_size(settings.read_pool_size.max(2))
        .connection_timeout(Duration::from_secs(
            settings.database_timeout_seconds.max(1),
        ))
        .connection_customizer(Box::new(Pragmas::from_settings(settings, true)?))
        .build(manager)
        .context("cannot open the read pool")
}

/// Runs a read query on a pooled connection, off the async workers.
pub async fn read<T, F>(pool: &ReadPool, query: F) -> Result<T, HubError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, HubError> + Send + 'static,
{
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get()?;
        query(&mut conn)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redacted("postgres://hub:s3cret@db.example:5432/m3shd"),
            "postgres://hub:***@db.example:5432/m3shd"
        );
        assert_eq!(
            redacted("postgres://hub@db/m3shd"),
            "postgres://hub@db/m3shd"
        );
        assert_eq!(redacted("data/m3shd.db"), "data/m3shd.db");
    }
}
