//! Aggregate reads for the dashboard's overview: counts only, each answered from an index.

use std::collections::BTreeMap;

use crate::db::DbConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::schema::{escalations, task_status_counts, tasks};

/// How many tasks there are in each status.
pub fn tasks_by_status(conn: &mut DbConnection) -> QueryResult<BTreeMap<String, i64>> {
    // Kept by triggers on every task write (migration 000017): no count over the table.
    let rows: Vec<(String, i32)> = task_status_counts::table
        .filter(task_status_counts::tasks.gt(0))
        .select((task_status_counts::status, task_status_counts::tasks))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(status, tasks)| (status, i64::from(tasks)))
        .collect())
}

/// Queued tasks per required capability, the longest queues first, at most `limit`.
pub fn queued_by_capability(
    conn: &mut DbConnection,
    limit: i64,
) -> QueryResult<Vec<(String, i64)>> {
    let mut rows: Vec<(String, i64)> = tasks::table
        .filter(tasks::status.eq("queued"))
        .group_by(tasks::required_capability)
        .select((tasks::required_capability, diesel::dsl::count_star()))
        .load(conn)?;
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(rows)
}

#[derive(QueryableByName)]
struct MinuteCount {
    #[diesel(sql_type = Text)]
    minute: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Tasks created and tasks finished (done, failed or cancelled) per minute since `since`
/// (an ISO timestamp), keyed by `YYYY-MM-DDTHH:MM`. Timestamps are stored as ISO strings
/// of one fixed format, so their first 16 characters name the minute.
pub fn per_minute(
    conn: &mut DbConnection,
    since: &str,
) -> QueryResult<(BTreeMap<String, i64>, BTreeMap<String, i64>)> {
    let count = |conn: &mut DbConnection, column: &str| -> QueryResult<BTreeMap<String, i64>> {
        // `column` is one of two fixed names below, never input.
        let rows: Vec<MinuteCount> = crate::db::sql_query(
            conn,
            &format!(
                "SELECT substr({column}, 1, 16) AS minute, count(*) AS count FROM tasks \
                 WHERE {column} >= ? GROUP BY minute"
            ),
        )
        .bind::<Text, _>(since)
        .load(conn)?;
        Ok(rows.into_iter().map(|r| (r.minute, r.count)).collect())
    };
    Ok((count(conn, "created_at")?, count(conn, "completed_at")?))
}

pub fn open_escalations(conn: &mut DbConnection) -> QueryResult<i64> {
    escalations::table
        .filter(escalations::status.eq("open"))
        .count()
        .get_result(conn)
}
