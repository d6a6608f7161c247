//! The counts the analytics endpoints read, kept by triggers on `tasks` (migration
//! 000017) so that no call scans the task table.

use crate::db::DbConnection;
use diesel::prelude::*;

use super::schema::{agent_task_counts, confidence_counts, task_day_counts};

/// Tasks created on one day (UTC), and how many of them are done or failed.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = task_day_counts, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct DayCounts {
    pub day: String,
    pub created: i32,
    pub done: i32,
    pub failed: i32,
}

/// The tasks one agent held to the end: how many, done, failed, and their cost.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = agent_task_counts, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct AgentCounts {
    pub agent_id: String,
    pub total: i32,
    pub done: i32,
    pub failed: i32,
    pub cost_usd: f64,
}

/// Tasks of one status whose reported confidence falls in one tenth, and its sum.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = confidence_counts, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ConfidenceCounts {
    pub bucket: i32,
    pub status: String,
    pub tasks: i32,
    pub total: f64,
}

/// Per day from `since` (YYYY-MM-DD) on, oldest first.
pub fn days_since(conn: &mut DbConnection, since: &str) -> QueryResult<Vec<DayCounts>> {
    task_day_counts::table
        .filter(task_day_counts::day.ge(since))
        .filter(task_day_counts::created.gt(0))
        .select(DayCounts::as_select())
        .order(task_day_counts::day)
        .load(conn)
}

/// Per agent that held a task, by agent_id.
pub fn agents(conn: &mut DbConnection) -> QueryResult<Vec<AgentCounts>> {
    agent_task_counts::table
        .filter(agent_task_counts::total.gt(0))
        .select(AgentCounts::as_select())
        .order(agent_task_counts::agent_id)
        .load(conn)
}

/// Reported confidence per tenth and status.
pub fn confidence(conn: &mut DbConnection) -> QueryResult<Vec<ConfidenceCounts>> {
    confidence_counts::table
        .filter(confidence_counts::tasks.gt(0))
        .select(ConfidenceCounts::as_select())
        .load(conn)
}
