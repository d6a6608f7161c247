//! Read-only queries: plain functions over a connection, used from the read pool (and at
//! boot). None of them writes.

use crate::db::DbConnection;
use diesel::dsl::max;
use diesel::prelude::*;

use super::models::{AgentRow, AuditRow, PipelineRow, SettingRow, TaskRow, TokenRow};
use super::schema::{
    agents, audit_log, pipelines, settings, task_dependencies, task_stream_chunks, tasks, tokens,
};
use crate::domain::access::Principal;

pub fn task(conn: &mut DbConnection, id: i32) -> QueryResult<Option<TaskRow>> {
    tasks::table
        .find(id)
        .select(TaskRow::as_select())
        .get_result(conn)
        .optional()
}

/// Ids of the tasks `id` depends on.
pub fn dependencies(conn: &mut DbConnection, id: i32) -> QueryResult<Vec<i32>> {
    task_dependencies::table
        .filter(task_dependencies::task_id.eq(id))
        .select(task_dependencies::depends_on_id)
        .order(task_dependencies::depends_on_id)
        .load(conn)
}

/// Filters of `GET /api/tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub assigned_to: Option<String>,
    pub capability: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Tasks newest first, only those `principal` may see. The page's ids are found first
/// from the indexes alone, then only those rows are read: an offset or a sort then costs
/// index entries, not whole rows with their sealed prompts and outputs.
pub fn list_tasks(
    conn: &mut DbConnection,
    principal: &Principal,
    filter: &TaskFilter,
) -> QueryResult<Vec<TaskRow>> {
    let page = page_ids(conn, principal, filter)?;
    tasks::table
        .filter(tasks::id.eq_any(page))
        .select(TaskRow::as_select())
        .order(tasks::id.desc())
        .load(conn)
}

fn page_ids(
    conn: &mut DbConnection,
    principal: &Principal,
    filter: &TaskFilter,
) -> QueryResult<Vec<i32>> {
    let mut query = tasks::table.select(tasks::id).into_boxed();
    if let Some(agent) = principal.confined_to() {
        query = query.filter(
            tasks::assigned_to
                .eq(agent.to_string())
                .or(tasks::created_by.eq(agent.to_string())),
        );
    }
    if let Some(status) = &filter.status {
        query = query.filter(tasks::status.eq(status.clone()));
    }
    if let Some(agent) = &filter.assigned_to {
        query = query.filter(tasks::assigned_to.eq(agent.clone()));
    }
    if let Some(capability) = &filter.capability {
        query = query.filter(tasks::required_capability.eq(capability.clone()));
    }
    query
        .order(tasks::id.desc())
        .limit(filter.limit)
        .offset(filter.offset)
        .load(conn)
}

/// Up to `limit` live tasks (queued, assigned or running) after `after`, in id order.
pub fn live_tasks_after(
    conn: &mut DbConnection,
    after: i32,
    limit: i64,
) -> QueryResult<Vec<TaskRow>> {
    tasks::table
        .filter(tasks::id.gt(after))
        .filter(tasks::status.eq_any(["queued", "assigned", "running"]))
        .select(TaskRow::as_select())
        .order(tasks::id)
        .limit(limit)
        .load(conn)
}

/// Every (live task, task it depends on, that task's status), in one read.
pub fn live_dependency_statuses(conn: &mut DbConnection) -> QueryResult<Vec<(i32, i32, String)>> {
    let (dependent, dependency) = diesel::alias!(tasks as dependent, tasks as dependency);
    task_dependencies::table
        .inner_join(dependent.on(dependent.field(tasks::id).eq(task_dependencies::task_id)))
        .inner_join(
            dependency.on(dependency
                .field(tasks::id)
                .eq(task_dependencies::depends_on_id)),
        )
        .filter(
            dependent
                .field(tasks::status)
                .eq_any(["queued", "assigned", "running"]),
        )
        .select((
            task_dependencies::task_id,
            task_dependencies::depends_on_id,
            dependency.field(tasks::status),
        ))
        .order((task_dependencies::task_id, task_dependencies::depends_on_id))
        .load(conn)
}

/// The next stream chunk sequence number of a task.
pub fn next_chunk_seq(conn: &mut DbConnection, task_id: i32) -> QueryResult<i32> {
    let last: Option<i32> = task_stream_chunks::table
        .filter(task_stream_chunks::task_id.eq(task_id))
        .select(max(task_stream_chunks::seq))
        .get_result(conn)?;
    Ok(last.map_or(0, |seq| seq + 1))
}

/// Up to `limit` stream chunks of a task after sequence number `after` (the first ones,
/// or with `latest` the last ones), in order: `(seq, agent_id, sealed chunk, created_at)`.
pub fn stream_chunks(
    conn: &mut DbConnection,
    task_id: i32,
    after: i32,
    limit: i64,
    latest: bool,
) -> QueryResult<Vec<(i32, String, String, String)>> {
    let query = task_stream_chunks::table
        .filter(task_stream_chunks::task_id.eq(task_id))
        .filter(task_stream_chunks::seq.gt(after))
        .limit(limit)
        .select((
            task_stream_chunks::seq,
            task_stream_chunks::agent_id,
            task_stream_chunks::chunk,
            task_stream_chunks::created_at,
        ));
    if latest {
        let mut newest_first = query.order(task_stream_chunks::seq.desc()).load(conn)?;
        newest_first.reverse();
        Ok(newest_first)
    } else {
        query.order(task_stream_chunks::seq).load(conn)
    }
}

pub fn all_agents(conn: &mut DbConnection) -> QueryResult<Vec<AgentRow>> {
    agents::table
        .select(AgentRow::as_select())
        .order(agents::agent_id)
        .load(conn)
}

pub fn active_tokens(conn: &mut DbConnection) -> QueryResult<Vec<TokenRow>> {
    tokens::table
        .filter(tokens::revoked_at.is_null())
        .select(TokenRow::as_select())
        .order(tokens::created_at.desc())
        .load(conn)
}

pub fn setting(conn: &mut DbConnection, key: &str) -> QueryResult<Option<SettingRow>> {
    settings::table
        .find(key)
        .select(SettingRow::as_select())
        .get_result(conn)
        .optional()
}

/// Whether the database already holds anything sealed at rest.
pub fn holds_sealed_data(conn: &mut DbConnection) -> QueryResult<bool> {
    use crate::db::schema::{memories, peers, tasks, templates, webhooks};
    use diesel::dsl::exists;
    Ok(
        diesel::select(exists(tasks::table.select(tasks::id))).get_result(conn)?
            || diesel::select(exists(memories::table.select(memories::id))).get_result(conn)?
            || diesel::select(exists(templates::table.select(templates::id))).get_result(conn)?
            || diesel::select(exists(webhooks::table.select(webhooks::name))).get_result(conn)?
            || diesel::select(exists(peers::table.select(peers::name))).get_result(conn)?,
    )
}

/// Stores a hub setting (JSON), replacing its previous value.
pub fn put_setting(
    conn: &mut DbConnection,
    key: &str,
    value: &serde_json::Value,
    by: &str,
) -> QueryResult<()> {
    let row = SettingRow {
        key: key.into(),
        value: value.to_string(),
        updated_by: by.into(),
        updated_at: crate::domain::now_iso(),
    };
    crate::on_each_backend!(conn, |inner| diesel::insert_into(settings::table)
        .values(&row)
        .on_conflict(settings::key)
        .do_update()
        .set(&row)
        .execute(inner))?;
    Ok(())
}

/// Filters of `GET /api/admin/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Entries at or after this time (ISO 8601, compared as text like every stored time).
    pub since: Option<String>,
    /// Entries before this time.
    pub until: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Audit entries newest first.
pub fn audit(conn: &mut DbConnection, filter: &AuditFilter) -> QueryResult<Vec<AuditRow>> {
    let mut query = audit_log::table.select(AuditRow::as_select()).into_boxed();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_log::actor.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action.clone()));
    }
    query
        .order(audit_log::id.desc())
        .limit(filter.limit)
        .offset(filter.offset)
        .load(conn)
}

/// Up to `limit` audit entries after id `after`, oldest first (the export's order).
pub fn audit_after(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    after: i32,
) -> QueryResult<Vec<AuditRow>> {
    let mut query = audit_log::table
        .select(AuditRow::as_select())
        .filter(audit_log::id.gt(after))
        .into_boxed();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_log::actor.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action.clone()));
    }
    if let Some(since) = &filter.since {
        query = query.filter(audit_log::at.ge(since.clone()));
    }
    if let Some(until) = &filter.until {
        query = query.filter(audit_log::at.lt(until.clone()));
    }
    query.order(audit_log::id).limit(filter.limit).load(conn)
}

pub fn pipeline(conn: &mut DbConnection, id: i32) -> QueryResult<Option<PipelineRow>> {
    pipelines::table
        .find(id)
        .select(PipelineRow::as_select())
        .get_result(conn)
        .optional()
}

/// Pipelines newest first; a non-master caller sees the ones it created.
pub fn list_pipelines(
    conn: &mut DbConnection,
    principal: &Principal,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<PipelineRow>> {
    let mut query = pipelines::table
        .select(PipelineRow::as_select())
        .into_boxed();
    if let Some(agent) = principal.confined_to() {
        query = query.filter(pipelines::created_by.eq(agent.to_string()));
    }
    query
        .order(pipelines::id.desc())
        .limit(limit)
        .offset(offset)
        .load(conn)
}

/// A pipeline's members in pipeline order.
pub fn pipeline_members(conn: &mut DbConnection, pipeline_id: i32) -> QueryResult<Vec<TaskRow>> {
    tasks::table
        .filter(tasks::pipeline_id.eq(pipeline_id))
        .select(TaskRow::as_select())
        .order(tasks::pipeline_index)
        .load(conn)
}

/// (task, dependency) pairs among `task_ids`.
pub fn edges(conn: &mut DbConnection, task_ids: &[i32]) -> QueryResult<Vec<(i32, i32)>> {
    task_dependencies::table
        .filter(task_dependencies::task_id.eq_any(task_ids))
        .select((task_dependencies::task_id, task_dependencies::depends_on_id))
        .load(conn)
}

pub fn running_pipelines(conn: &mut DbConnection) -> QueryResult<Vec<PipelineRow>> {
    pipelines::table
        .filter(pipelines::status.eq("running"))
        .select(PipelineRow::as_select())
        .order(pipelines::id)
        .load(conn)
}

/// Unexpired sessions of enabled users, keyed by cookie hash.
pub fn live_sessions(
    conn: &mut DbConnection,
) -> QueryResult<Vec<(String, crate::domain::credentials::Session)>> {
    use super::models::UserRow;
    use super::schema::{sessions, users};
    let rows: Vec<(String, String, UserRow)> = sessions::table
        .inner_join(users::table)
        .filter(users::enabled.eq(true))
        .filter(sessions::expires_at.gt(crate::domain::now_iso()))
        .select((sessions::hash, sessions::expires_at, UserRow::as_select()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(hash, expires, user)| {
            let expires_at = chrono::DateTime::parse_from_rfc3339(&expires)
                .ok()?
                .with_timezone(&chrono::Utc);
            Some((
                hash,
                crate::domain::credentials::Session {
                    user_id: user.id,
                    grant: user.grant(),
                    expires_at,
                },
            ))
        })
        .collect())
}

/// How many enabled accounts hold the admin role.
pub fn enabled_admins(conn: &mut DbConnection) -> QueryResult<i64> {
    use super::schema::users;
    users::table
        .filter(users::role.eq("admin"))
        .filter(users::enabled.eq(true))
        .count()
        .get_result(conn)
}
