//! Reputation counters as stored, updated in the transaction of the outcome they count.

use crate::db::DbConnection;
use diesel::prelude::*;

use super::schema::reputation;
use crate::domain::now_iso;
use crate::domain::reputation::{Outcome, Stats};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reputation, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ReputationRow {
    pub agent_id: String,
    pub capability: String,
    pub successes: i32,
    pub failures: i32,
    pub verifications: i32,
    pub updated_at: String,
}

impl ReputationRow {
    pub fn stats(&self) -> Stats {
        let count = |n: i32| u64::try_from(n).unwrap_or(0);
        Stats {
            successes: count(self.successes),
            failures: count(self.failures),
            verifications: count(self.verifications),
        }
    }
}

/// Counts one outcome for `agent_id` on `capability`.
pub fn record(
    conn: &mut DbConnection,
    agent_id: &str,
    capability: &str,
    outcome: Outcome,
) -> QueryResult<()> {
    let (s, f, v) = match outcome {
        Outcome::Done => (1, 0, 0),
        Outcome::Failed => (0, 1, 0),
        Outcome::Verified => (0, 0, 1),
    };
    let now = now_iso();
    crate::on_each_backend!(conn, |inner| diesel::insert_into(reputation::table)
        .values((
            reputation::agent_id.eq(agent_id),
            reputation::capability.eq(capability),
            reputation::successes.eq(s),
            reputation::failures.eq(f),
            reputation::verifications.eq(v),
            reputation::updated_at.eq(&now),
        ))
        .on_conflict((reputation::agent_id, reputation::capability))
        .do_update()
        .set((
            reputation::successes.eq(reputation::successes + s),
            reputation::failures.eq(reputation::failures + f),
            reputation::verifications.eq(reputation::verifications + v),
            reputation::updated_at.eq(&now),
        ))
        .execute(inner))
    .map(drop)
}

pub fn all(conn: &mut DbConnection) -> QueryResult<Vec<ReputationRow>> {
    reputation::table
        .select(ReputationRow::as_select())
        .order((reputation::agent_id, reputation::capability))
        .load(conn)
}
