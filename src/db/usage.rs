//! Reported cost and token usage per UTC day, agent and model.

use crate::db::DbConnection;
use diesel::dsl::sum;
use diesel::prelude::*;

use super::schema::cost_usage;

/// Today's date in UTC, the key of the daily budgets.
pub fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// Adds usage to (`day`, `agent_id`, `model`).
pub fn record(
    conn: &mut DbConnection,
    day: &str,
    agent_id: &str,
    model: &str,
    cost_usd: f64,
    tokens: (i32, i32),
) -> QueryResult<()> {
    let (tokens_in, tokens_out) = tokens;
    crate::on_each_backend!(conn, |inner| diesel::insert_into(cost_usage::table)
        .values((
            cost_usage::day.eq(day),
            cost_usage::agent_id.eq(agent_id),
            cost_usage::model.eq(model),
            cost_usage::cost_usd.eq(cost_usd),
            cost_usage::tokens_in.eq(tokens_in),
            cost_usage::tokens_out.eq(tokens_out),
        ))
        .on_conflict((cost_usage::day, cost_usage::agent_id, cost_usage::model))
        .do_update()
        .set((
            cost_usage::cost_usd.eq(cost_usage::cost_usd + cost_usd),
            cost_usage::tokens_in.eq(cost_usage::tokens_in + tokens_in),
            cost_usage::tokens_out.eq(cost_usage::tokens_out + tokens_out),
        ))
        .execute(inner))
    .map(drop)
}

/// Usage of one day, agent and model.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cost_usage, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct UsageRow {
    pub day: String,
    pub agent_id: String,
    pub model: String,
    pub cost_usd: f64,
    pub tokens_in: i32,
    pub tokens_out: i32,
}

/// Rows of `day` and later.
pub fn since(conn: &mut DbConnection, day: &str) -> QueryResult<Vec<UsageRow>> {
    cost_usage::table
        .filter(cost_usage::day.ge(day))
        .select(UsageRow::as_select())
        .order((cost_usage::day, cost_usage::agent_id, cost_usage::model))
        .load(conn)
}

/// Total cost reported on `day`.
pub fn spent(conn: &mut DbConnection, day: &str) -> QueryResult<f64> {
    Ok(cost_usage::table
        .filter(cost_usage::day.eq(day))
        .select(sum(cost_usage::cost_usd))
        .get_result::<Option<f64>>(conn)?
        .unwrap_or(0.0))
}
