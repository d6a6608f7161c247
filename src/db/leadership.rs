//! Which of the hub processes sharing a PostgreSQL database leads it (ARCHITECTURE.md,
//! "Scale-out"): the owner lock, the epoch every group commit checks, where the leader
//! answers, and the leader's recent events that the other processes relay.

use anyhow::Context as _;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::PgConnection;

use super::schema::{hub_events, leadership};
use super::{redacted, DbConnection};
use crate::settings::{Database, Settings};

/// The key of the advisory lock the leader holds on its PostgreSQL database ("m3shd" in
/// ASCII).
const OWNER_LOCK: i64 = 0x006d_3373_6864;
/// The key of the lock held while migrations run.
const MIGRATION_LOCK: i64 = OWNER_LOCK + 1;
/// The channel on which the leader announces newly stored events.
pub const EVENTS_CHANNEL: &str = "m3shd_events";

/// A dedicated connection for the owner lock, which the leader holds for as long as it
/// runs: whoever holds it runs the Registry, the Dispatcher and the writer.
pub struct Owner {
    pub conn: PgConnection,
    /// Whether the lock was free at start; if not, [`Owner::wait`] waits for it.
    pub holds: bool,
}

impl Owner {
    /// On PostgreSQL, a connection that holds the owner lock if nobody else does. `None`
    /// on SQLite, where there is one hub process per file.
    pub fn claim(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let url = settings.connection_url();
        let Database::Postgres(url) = Database::of(&url) else {
            return Ok(None);
        };
        let mut conn = PgConnection::establish(url)
            .with_context(|| format!("cannot open the database {}", redacted(url)))?;
        let holds = advisory(&mut conn, "pg_try_advisory_lock", OWNER_LOCK)?;
        Ok(Some(Self { conn, holds }))
    }

    /// Blocks until this connection holds the owner lock: the leader has gone (its
    /// process ended or its connection dropped). Asks every `poll` rather than queue for
    /// the lock: a session waiting in `pg_advisory_lock` made every commit of the leader
    /// cost PostgreSQL several times the CPU (measured: creates/s halved with two such
    /// waiters; BENCHMARKS.md).
    pub fn wait(&mut self, poll: std::time::Duration) -> QueryResult<()> {
        while !advisory(&mut self.conn, "pg_try_advisory_lock", OWNER_LOCK)? {
            std::thread::sleep(poll);
        }
        self.holds = true;
        Ok(())
    }

    /// Whether the connection (and so the lock) is still there.
    pub fn alive(&mut self) -> bool {
        use diesel::connection::SimpleConnection;
        self.conn.batch_execute("SELECT 1").is_ok()
    }

    /// After this process's lock connection dropped: the lock on a fresh connection, if
    /// nobody else holds it and nobody led since (the epoch is still `epoch`). `Ok(None)`
    /// if another process leads, or did.
    pub fn reclaim(settings: &Settings, epoch: i64) -> anyhow::Result<Option<Self>> {
        let Some(mut owner) = Self::claim(settings)? else {
            return Ok(None);
        };
        if !owner.holds {
            return Ok(None);
        }
        let now: i64 = leadership::table
            .find(1)
            .select(leadership::epoch)
            .get_result(&mut owner.conn)?;
        Ok((now == epoch).then_some(owner))
    }

    /// Moves the leadership on to a new epoch and records where this process answers;
    /// the epoch it writes under. Only with the lock held.
    pub fn lead(&mut self, address: &str) -> anyhow::Result<i64> {
        anyhow::ensure!(self.holds, "this process does not hold the owner lock");
        diesel::update(leadership::table.find(1))
            .set((
                leadership::epoch.eq(leadership::epoch + 1),
                leadership::since.eq(crate::domain::now_iso()),
                leadership::address.eq(address),
            ))
            .returning(leadership::epoch)
            .get_result(&mut self.conn)
            .context("cannot take the leadership of the database")
    }
}

/// Runs `<function>(key)`; whether it answered true (`pg_advisory_lock` answers nothing
/// once it holds the lock, read as true).
fn advisory(conn: &mut PgConnection, function: &str, key: i64) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Answer {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        answer: bool,
    }
    let sql = format!("SELECT r::text <> 'false' AS answer FROM {function}($1) AS r");
    let answer: Answer = diesel::sql_query(sql)
        .bind::<BigInt, _>(key)
        .get_result(conn)?;
    Ok(answer.answer)
}

/// Runs `migrate` holding the migration lock, so hub processes starting together on one
/// PostgreSQL database apply each migration once.
pub fn one_migrator_at_a_time<T>(
    conn: &mut DbConnection,
    migrate: impl FnOnce(&mut DbConnection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if let DbConnection::Postgres(pg) = conn {
        advisory(pg, "pg_advisory_lock", MIGRATION_LOCK)?;
    }
    let migrated = migrate(conn);
    if let DbConnection::Postgres(pg) = conn {
        // Released with the session if this fails.
        let _ = advisory(pg, "pg_advisory_unlock", MIGRATION_LOCK);
    }
    migrated
}

/// The current epoch and where its leader answers (empty before any leader).
pub fn leader(conn: &mut DbConnection) -> QueryResult<(i64, String)> {
    leadership::table
        .find(1)
        .select((leadership::epoch, leadership::address))
        .get_result(conn)
}

/// Whether the database is still led by `epoch`, read under a share lock that holds until
/// the caller's transaction ends; `Err` says who leads now. PostgreSQL only.
pub fn still_leading(
    conn: &mut DbConnection,
    epoch: i64,
) -> diesel::QueryResult<Result<(), String>> {
    let DbConnection::Postgres(pg) = conn else {
        return Ok(Ok(()));
    };
    let now: i64 = leadership::table
        .find(1)
        .select(leadership::epoch)
        .for_share()
        .get_result(pg)?;
    Ok(if now == epoch {
        Ok(())
    } else {
        tracing::error!(
            ours = epoch,
            now,
            "another hub process leads this database now; this one writes nothing more"
        );
        Err(format!(
            "this hub process no longer leads the database (epoch {epoch}, now {now}); use the current leader"
        ))
    })
}

/// One event as the leader stores it: `data` is sealed.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = hub_events)]
pub struct StoredEvent {
    pub id: i64,
    pub name: String,
    pub audience: String,
    pub data: String,
}

/// Stores `events` and, once the transaction commits, tells the listening processes.
pub fn append(conn: &mut DbConnection, events: &[StoredEvent]) -> QueryResult<()> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    for event in events {
        diesel::insert_into(hub_events::table)
            .values(event)
            .execute(conn)?;
    }
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query(format!("SELECT pg_notify('{EVENTS_CHANNEL}', $1)"))
            .bind::<diesel::sql_types::Text, _>(last.id.to_string())
            .execute(pg)?;
    }
    Ok(())
}

/// Up to `limit` stored events after `id`, oldest first.
pub fn after(conn: &mut DbConnection, id: i64, limit: i64) -> QueryResult<Vec<StoredEvent>> {
    hub_events::table
        .filter(hub_events::id.gt(id))
        .order(hub_events::id)
        .limit(limit)
        .select(StoredEvent::as_select())
        .load(conn)
}

/// The newest `count` stored events, oldest first.
pub fn latest(conn: &mut DbConnection, count: i64) -> QueryResult<Vec<StoredEvent>> {
    let mut newest: Vec<StoredEvent> = hub_events::table
        .order(hub_events::id.desc())
        .limit(count)
        .select(StoredEvent::as_select())
        .load(conn)?;
    newest.reverse();
    Ok(newest)
}

/// Deletes the stored events older than `id`.
pub fn forget_before(conn: &mut DbConnection, id: i64) -> QueryResult<usize> {
    diesel::delete(hub_events::table.filter(hub_events::id.lt(id))).execute(conn)
}
