//! The audit log's chain in the database: linking rows written before the chain existed
//! (at start), and reading the log in order for a check or an export.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::models::AuditRow;
use super::schema::audit_log;
use crate::domain::audit::{Break, ChainCheck, GENESIS};

/// Rows read per step: memory stays flat however long the log is.
pub const STEP: i64 = 1000;

/// Chains the rows that have no hash yet (written before the chain existed), in id order,
/// after the last chained row. Run at start, before anything else writes.
pub fn chain_unhashed(conn: &mut SqliteConnection) -> QueryResult<usize> {
    let Some(first) = audit_log::table
        .filter(audit_log::hash.is_null())
        .select(diesel::dsl::min(audit_log::id))
        .first::<Option<i32>>(conn)?
    else {
        return Ok(0);
    };
    let mut prev: String = audit_log::table
        .filter(audit_log::id.lt(first))
        .order(audit_log::id.desc())
        .select(audit_log::hash)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten()
        .unwrap_or_else(|| GENESIS.to_string());
    conn.transaction(|conn| {
        let mut after = first - 1;
        let mut linked = 0;
        loop {
            let rows = after_id(conn, after)?;
            let Some(last) = rows.last() else {
                return Ok(linked);
            };
            after = last.id;
            for row in &rows {
                let hash = row.entry().hash_after(&prev);
                diesel::update(audit_log::table.find(row.id))
                    .set((audit_log::prev_hash.eq(&prev), audit_log::hash.eq(&hash)))
                    .execute(conn)?;
                prev = hash;
                linked += 1;
            }
        }
    })
}

/// Up to [`STEP`] rows after `after`, in id order.
pub fn after_id(conn: &mut SqliteConnection, after: i32) -> QueryResult<Vec<AuditRow>> {
    audit_log::table
        .filter(audit_log::id.gt(after))
        .order(audit_log::id)
        .limit(STEP)
        .select(AuditRow::as_select())
        .load(conn)
}

/// Checks the whole chain in the database: how many rows hold, or the first break.
pub fn verify(conn: &mut SqliteConnection) -> QueryResult<Result<u64, Break>> {
    let mut check = ChainCheck::new();
    let mut after = 0;
    loop {
        let rows = after_id(conn, after)?;
        let Some(last) = rows.last() else {
            return Ok(Ok(check.checked));
        };
        after = last.id;
        for row in &rows {
            if let Err(broken) = check.push(&row.entry()) {
                return Ok(Err(broken));
            }
        }
    }
}
