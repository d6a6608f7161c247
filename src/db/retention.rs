//! Retention of finished tasks: which may go, their rows as archive lines, and the
//! delete. A task may go once it finished before the cutoff and nothing live still needs
//! it: no unfinished member of its pipeline, no unfinished task depending on it, no
//! federation result still owed for it, and it is no exchange request (an exchange keeps
//! its requests). Rows are archived as stored: prompts, outputs and chunks stay sealed.

use crate::db::DbConnection;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};

/// The condition a task `t` meets to be archived and deleted; `?` is the cutoff.
const MAY_GO: &str = "t.status IN ('done', 'failed', 'cancelled')
    AND COALESCE(t.completed_at, t.updated_at) < ?
    AND (t.assign_to IS NULL OR t.assign_to NOT LIKE 'exchange:%')
    AND NOT EXISTS (SELECT 1 FROM tasks m WHERE t.pipeline_id IS NOT NULL
        AND m.pipeline_id = t.pipeline_id AND m.status NOT IN ('done', 'failed', 'cancelled'))
    AND NOT EXISTS (SELECT 1 FROM task_dependencies d JOIN tasks l ON l.id = d.task_id
        WHERE d.depends_on_id = t.id AND l.status NOT IN ('done', 'failed', 'cancelled'))
    AND NOT EXISTS (SELECT 1 FROM relays r WHERE r.task_id = t.id
        AND r.direction = 'inbound' AND r.result_sent_at IS NULL)";

/// The tables archived with a task, each under its key, with the order of its rows.
const RELATED: [(&str, &str, &str); 3] = [
    ("chunks", "task_stream_chunks", "seq"),
    ("provenance", "provenance", "seq"),
    ("approvals", "approvals", "id"),
];

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Integer)]
    id: i32,
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Up to `limit` tasks that may go, after `after` in id order. Tasks are numbered as
/// they are created, so the scan stops at the first created after the cutoff.
pub fn next_batch(
    conn: &mut DbConnection,
    cutoff: &str,
    after: i32,
    limit: i64,
) -> QueryResult<Vec<i32>> {
    let ids: Vec<Id> = crate::db::sql_query(
        conn,
        &format!(
            "SELECT t.id AS id FROM tasks t WHERE t.id > ? AND t.created_at < ? AND {MAY_GO}
             ORDER BY t.id LIMIT ?"
        ),
    )
    .bind::<Integer, _>(after)
    .bind::<Text, _>(cutoff)
    .bind::<Text, _>(cutoff)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)?;
    Ok(ids.into_iter().map(|i| i.id).collect())
}

/// One JSON object per task, in id order: `{"task": {…}, "chunks": […], "provenance": […],
/// "approvals": […]}`, every column of every row as stored (new columns included).
pub fn archive_lines(conn: &mut DbConnection, ids: &[i32]) -> QueryResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = match conn {
        DbConnection::Sqlite(_) => sqlite_archive_query(conn, ids)?,
        DbConnection::Postgres(_) => postgres_archive_query(ids),
    };
    let lines: Vec<Line> = diesel::sql_query(sql).load(conn)?;
    Ok(lines.into_iter().map(|l| l.line).collect())
}

/// SQLite has no row-to-JSON: each row's object is spelt out from the table's columns.
fn sqlite_archive_query(conn: &mut DbConnection, ids: &[i32]) -> QueryResult<String> {
    let mut parts = vec![format!(
        "'task', json((SELECT {} FROM tasks r WHERE r.id = t.id))",
        row_object(conn, "tasks")?
    )];
    for (key, table, order) in RELATED {
        parts.push(format!(
            "'{key}', json((SELECT COALESCE(json_group_array(json(o)), '[]') FROM
                (SELECT {} AS o FROM {table} r WHERE r.task_id = t.id ORDER BY r.{order})))",
            row_object(conn, table)?
        ));
    }
    Ok(format!(
        "SELECT json_object({}) AS line FROM tasks t WHERE t.id IN ({}) ORDER BY t.id",
        parts.join(", "),
        id_list(ids)
    ))
}

fn postgres_archive_query(ids: &[i32]) -> String {
    let mut parts = vec!["'task', row_to_json(t)".to_string()];
    for (key, table, order) in RELATED {
        parts.push(format!(
            "'{key}', COALESCE((SELECT json_agg(r ORDER BY r.{order}) FROM {table} r \
             WHERE r.task_id = t.id), '[]'::json)"
        ));
    }
    format!(
        // Through jsonb: json_agg's own text breaks lines between elements.
        "SELECT json_build_object({})::jsonb::text AS line FROM tasks t WHERE t.id IN ({}) ORDER BY t.id",
        parts.join(", "),
        id_list(ids)
    )
}

/// Deletes those of `ids` that still may go, with their chunks, provenance, approvals
/// and inbox items, in the caller's transaction; answers the ids deleted.
pub fn delete(conn: &mut DbConnection, ids: &[i32], cutoff: &str) -> QueryResult<Vec<i32>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let going: Vec<Id> = crate::db::sql_query(
        conn,
        &format!(
            "SELECT t.id AS id FROM tasks t WHERE t.id IN ({}) AND {MAY_GO}",
            id_list(ids)
        ),
    )
    .bind::<Text, _>(cutoff)
    .load(conn)?;
    let going: Vec<i32> = going.into_iter().map(|i| i.id).collect();
    if going.is_empty() {
        return Ok(going);
    }
    let list = id_list(&going);
    // Chunks, provenance, dependencies, relays and exchange rows follow by cascade;
    // escalations and schedule occurrences keep their rows without the task.
    for table in ["inbox_items", "approvals"] {
        diesel::sql_query(format!("DELETE FROM {table} WHERE task_id IN ({list})"))
            .execute(conn)?;
    }
    diesel::sql_query(format!("DELETE FROM tasks WHERE id IN ({list})")).execute(conn)?;
    Ok(going)
}

/// `json_object('column', r.column, …)` over every column of `table`.
fn row_object(conn: &mut DbConnection, table: &str) -> QueryResult<String> {
    let columns: Vec<Column> =
        diesel::sql_query(format!("SELECT name FROM pragma_table_info('{table}')")).load(conn)?;
    let pairs: Vec<String> = columns
        .iter()
        .map(|c| format!("'{0}', r.\"{0}\"", c.name))
        .collect();
    Ok(format!("json_object({})", pairs.join(", ")))
}

/// Task ids written into SQL: whole numbers, so nothing to escape.
fn id_list(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
