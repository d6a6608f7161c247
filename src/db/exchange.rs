//! The MESS exchange as stored: exchanges, executors, requests (over tasks), their thread
//! messages, and the events the JSON Lines log is written from.

use crate::db::DbConnection;
use diesel::prelude::*;

use super::schema::{
    exchange_events, exchange_executors, exchange_messages, exchange_requests, exchanges, tasks,
};
use crate::error::HubError;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = exchanges, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ExchangeRow {
    pub exchange_id: String,
    pub open_registration: bool,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = exchange_executors, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ExecutorRow {
    pub exchange_id: String,
    pub executor_id: String,
    pub agent_id: String,
    pub display_name: String,
    /// JSON array.
    pub capabilities: String,
    /// Fernet: JSON array of notification channels.
    pub notifications: String,
    /// JSON object.
    pub preferences: String,
    pub last_seen: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = exchange_requests, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct RequestRow {
    pub task_id: i32,
    pub exchange_id: String,
    pub ref_: String,
    pub requestor_id: String,
    pub priority: String,
}

/// A request with what its task says of it now.
#[derive(Debug, Clone, Queryable)]
pub struct ThreadRow {
    pub request: RequestRow,
    pub status: String,
    pub assigned_to: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Fernet: the intent, as the task's prompt.
    pub prompt: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = exchange_messages, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = true)]
pub struct MessageRow {
    #[diesel(skip_insertion)]
    pub id: i32,
    pub task_id: i32,
    pub from_id: String,
    /// Fernet: the MESS array.
    pub mess: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = exchange_events, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct EventRow {
    #[diesel(skip_insertion)]
    pub id: i32,
    pub uuid: String,
    pub exchange_id: String,
    pub thread_ref: Option<String>,
    pub event_type: String,
    pub at: String,
    /// JSON object: metadata only.
    pub data: String,
    /// Fernet JSON: the content, when the operator logs it.
    pub content: Option<String>,
    pub logged_at: Option<String>,
}

pub fn exchange(conn: &mut DbConnection, id: &str) -> QueryResult<Option<ExchangeRow>> {
    exchanges::table
        .find(id)
        .select(ExchangeRow::as_select())
        .get_result(conn)
        .optional()
}

pub fn all_exchanges(conn: &mut DbConnection) -> QueryResult<Vec<ExchangeRow>> {
    exchanges::table
        .select(ExchangeRow::as_select())
        .order(exchanges::exchange_id)
        .load(conn)
}

pub fn executor(
    conn: &mut DbConnection,
    exchange_id: &str,
    executor_id: &str,
) -> QueryResult<Option<ExecutorRow>> {
    exchange_executors::table
        .find((exchange_id, executor_id))
        .select(ExecutorRow::as_select())
        .get_result(conn)
        .optional()
}

pub fn executors(conn: &mut DbConnection, exchange_id: &str) -> QueryResult<Vec<ExecutorRow>> {
    exchange_executors::table
        .filter(exchange_executors::exchange_id.eq(exchange_id))
        .select(ExecutorRow::as_select())
        .order(exchange_executors::executor_id)
        .load(conn)
}

fn threads() -> _ThreadQuery {
    exchange_requests::table.inner_join(tasks::table).select((
        RequestRow::as_select(),
        tasks::status,
        tasks::assigned_to,
        tasks::created_at,
        tasks::updated_at,
        tasks::prompt,
    ))
}

type _ThreadQuery = diesel::dsl::Select<
    diesel::dsl::InnerJoin<exchange_requests::table, tasks::table>,
    (
        diesel::dsl::AsSelect<RequestRow, crate::db::MultiBackend>,
        tasks::status,
        tasks::assigned_to,
        tasks::created_at,
        tasks::updated_at,
        tasks::prompt,
    ),
>;

/// An exchange's requests, newest first; `statuses` filters by task status.
pub fn list_threads(
    conn: &mut DbConnection,
    exchange_id: &str,
    statuses: Option<Vec<&'static str>>,
    limit: i64,
) -> QueryResult<Vec<ThreadRow>> {
    // Through the task's pin (indexed with its status), newest first, so a page reads only
    // its own rows however many requests the exchange has.
    let mut query = threads()
        .filter(tasks::assign_to.eq(crate::domain::exchange::pin(exchange_id)))
        .filter(exchange_requests::exchange_id.eq(exchange_id.to_string()))
        .order(tasks::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(statuses) = statuses {
        query = query.filter(tasks::status.eq_any(statuses));
    }
    query.load(conn)
}

pub fn thread(
    conn: &mut DbConnection,
    exchange_id: &str,
    ref_: &str,
) -> QueryResult<Option<ThreadRow>> {
    threads()
        .filter(exchange_requests::exchange_id.eq(exchange_id.to_string()))
        .filter(exchange_requests::ref_.eq(ref_.to_string()))
        .get_result(conn)
        .optional()
}

pub fn messages(conn: &mut DbConnection, task_id: i32) -> QueryResult<Vec<MessageRow>> {
    exchange_messages::table
        .filter(exchange_messages::task_id.eq(task_id))
        .select(MessageRow::as_select())
        .order(exchange_messages::id)
        .load(conn)
}

/// Writes a thread message and its event, in the transaction of the change they record.
pub fn record(
    conn: &mut DbConnection,
    message: Option<&MessageRow>,
    event: &EventRow,
) -> Result<(), HubError> {
    if let Some(message) = message {
        diesel::insert_into(exchange_messages::table)
            .values(message)
            .execute(conn)?;
    }
    diesel::insert_into(exchange_events::table)
        .values(event)
        .execute(conn)?;
    Ok(())
}

/// Events not yet in the log, oldest first.
pub fn unlogged(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<EventRow>> {
    exchange_events::table
        .filter(exchange_events::logged_at.is_null())
        .select(EventRow::as_select())
        .order(exchange_events::id)
        .limit(limit)
        .load(conn)
}

pub fn mark_logged(conn: &mut DbConnection, ids: &[i32], at: &str) -> QueryResult<usize> {
    diesel::update(exchange_events::table.filter(exchange_events::id.eq_any(ids)))
        .set(exchange_events::logged_at.eq(at))
        .execute(conn)
}

/// Notes an executor's call (its `last_seen`).
pub fn seen(conn: &mut DbConnection, agent_id: &str, at: &str) -> QueryResult<usize> {
    diesel::update(exchange_executors::table.filter(exchange_executors::agent_id.eq(agent_id)))
        .set(exchange_executors::last_seen.eq(at))
        .execute(conn)
}
