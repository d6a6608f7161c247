//! The audit log's chain in the database: linking rows written before the chain existed
//! (at start), and reading the log in order for a check or an export.

use std::cell::RefCell;

use crate::db::DbConnection;
use diesel::prelude::*;

use super::models::AuditRow;
use super::schema::audit_log;
use crate::domain::audit::{Break, ChainCheck, GENESIS};

/// Rows read per step: memory stays flat however long the log is.
pub const STEP: i64 = 1000;

thread_local! {
    /// The last row this thread chained (id, hash). Every row is appended by the hub's one
    /// writer thread, so the tip need not be read back for each new row; it is forgotten
    /// whenever a write or a commit fails (the row it names may have been rolled back).
    static TIP: RefCell<Option<(i32, String)>> = const { RefCell::new(None) };
    /// Set on the writer thread, the only one that may trust its remembered tip (other
    /// threads write, at start, to databases that may not be the writer's).
    static REMEMBERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by the writer thread when it starts: it appends every row from then on.
pub fn remember_tips() {
    REMEMBERS.with(|r| r.set(true));
}

/// The row a new entry follows: the remembered tip, else the last row in the table.
pub fn tip(conn: &mut DbConnection) -> QueryResult<Option<(i32, Option<String>)>> {
    if let Some((id, hash)) = TIP.with(|tip| tip.borrow().clone()) {
        return Ok(Some((id, Some(hash))));
    }
    audit_log::table
        .select((audit_log::id, audit_log::hash))
        .order(audit_log::id.desc())
        .first(conn)
        .optional()
}

/// Remembers the row just appended as the tip.
pub fn advance_tip(id: i32, hash: String) {
    if REMEMBERS.with(|r| r.get()) {
        TIP.with(|tip| *tip.borrow_mut() = Some((id, hash)));
    }
}

/// Forgets the tip: the next entry reads it from the table.
pub fn forget_tip() {
    TIP.with(|tip| *tip.borrow_mut() = None);
}

/// Chains the rows written before the chain existed: those without a hash after the last
/// chained row (all of them, on a database that has none), in id order. An unhashed row
/// *before* a chained one is not something the hub wrote, so it is left for `m3shd audit
/// verify` to report (chaining it would bless an edit). Run at start, before anything
/// else writes.
pub fn chain_unhashed(conn: &mut DbConnection) -> QueryResult<usize> {
    let last_chained: Option<(i32, Option<String>)> = audit_log::table
        .filter(audit_log::hash.is_not_null())
        .order(audit_log::id.desc())
        .select((audit_log::id, audit_log::hash))
        .first(conn)
        .optional()?;
    let (after, mut prev) = match last_chained {
        Some((id, hash)) => (id, hash.unwrap_or_else(|| GENESIS.to_string())),
        None => (0, GENESIS.to_string()),
    };
    let unchained_inside: i64 = audit_log::table
        .filter(audit_log::hash.is_null())
        .filter(audit_log::id.lt(after))
        .count()
        .get_result(conn)?;
    if unchained_inside > 0 {
        tracing::error!(
            rows = unchained_inside,
            "audit rows without a hash sit among chained ones: the log was edited (see m3shd audit verify)"
        );
    }
    conn.transaction(|conn| {
        let mut after = after;
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
pub fn after_id(conn: &mut DbConnection, after: i32) -> QueryResult<Vec<AuditRow>> {
    audit_log::table
        .filter(audit_log::id.gt(after))
        .order(audit_log::id)
        .limit(STEP)
        .select(AuditRow::as_select())
        .load(conn)
}

/// Checks the whole chain in the database: how many rows hold, or the first break.
pub fn verify(conn: &mut DbConnection) -> QueryResult<Result<u64, Break>> {
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
