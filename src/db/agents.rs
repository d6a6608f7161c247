//! Agent rows beyond what the AgentActor writes: inserting an operator-made agent, the
//! task counters behind `taskStats`, and an agent's pending work.

use std::collections::HashMap;

use crate::db::DbConnection;
use diesel::prelude::*;

use super::models::{AgentRow, NewAgentRow, TaskRow};
use super::schema::{agent_task_counts, agents, tasks};
use crate::domain::agent::TaskStats;

/// Inserts a new agent; `None` when its agent_id is taken.
pub fn insert_agent(conn: &mut DbConnection, row: &NewAgentRow) -> QueryResult<Option<AgentRow>> {
    crate::on_each_backend!(conn, |inner| diesel::insert_into(agents::table)
        .values(row)
        .on_conflict_do_nothing()
        .returning(crate::db::columns_of::<AgentRow>())
        .get_result(inner))
    .optional()
}

/// `taskStats` of each agent named, from the counters the task triggers keep; an agent
/// that never held a task is absent (all zero).
pub fn task_stats(
    conn: &mut DbConnection,
    agent_ids: &[String],
) -> QueryResult<HashMap<String, TaskStats>> {
    let rows: Vec<(String, i32, i32, i32, i32)> = agent_task_counts::table
        .filter(agent_task_counts::agent_id.eq_any(agent_ids))
        .select((
            agent_task_counts::agent_id,
            agent_task_counts::total,
            agent_task_counts::assigned,
            agent_task_counts::running,
            agent_task_counts::done,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(agent_id, total, assigned, in_progress, completed)| {
            let stats = TaskStats {
                total,
                assigned,
                in_progress,
                completed,
            };
            (agent_id, stats)
        })
        .collect())
}

/// The tasks `agent_id` holds and has not finished (assigned or running), newest first.
pub fn pending_tasks(
    conn: &mut DbConnection,
    agent_id: &str,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<TaskRow>> {
    tasks::table
        .filter(tasks::assigned_to.eq(agent_id))
        .filter(tasks::status.eq_any(["assigned", "running"]))
        .order(tasks::id.desc())
        .limit(limit)
        .offset(offset)
        .select(TaskRow::as_select())
        .load(conn)
}
