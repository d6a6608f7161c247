//! Approvals as stored: asked for by a task's holder, decided once (conditional on still
//! being pending), read with the visibility of their task.

use crate::db::DbConnection;
use diesel::prelude::*;

use super::inbox::{self, InboxKind};
use super::models::NewAuditRow;
use super::schema::{approvals, tasks};
use crate::domain::access::Principal;
use crate::domain::now_iso;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = approvals, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ApprovalRow {
    pub id: i32,
    pub task_id: i32,
    pub agent_id: String,
    pub tool: String,
    /// Sealed.
    pub input: Option<String>,
    pub reason: Option<String>,
    pub status: String,
    pub decided_by: Option<String>,
    pub note: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
}

/// A request to store (its input already sealed).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = approvals)]
pub struct NewApproval {
    pub task_id: i32,
    pub agent_id: String,
    pub tool: String,
    pub input: Option<String>,
    pub reason: Option<String>,
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
}

pub fn insert(conn: &mut DbConnection, new: &NewApproval) -> QueryResult<ApprovalRow> {
    diesel::insert_into(approvals::table)
        .values(new)
        .returning(crate::db::columns_of::<ApprovalRow>())
        .get_result(conn)
}

/// A decision on an approval of `task_id`, whose holder (if any) is told.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub id: i32,
    pub task_id: i32,
    pub holder: Option<&'a str>,
    pub allowed: bool,
    pub by: &'a str,
    pub note: Option<&'a str>,
}

/// Records a decision: the approval (if still pending), its audit row naming who decided,
/// and an item in the holder's inbox, in the caller's transaction. `None` when it was
/// decided already.
pub fn settle(conn: &mut DbConnection, d: Decision) -> QueryResult<Option<ApprovalRow>> {
    let Some(row) = decide(conn, d.id, d.allowed, d.by, d.note)? else {
        return Ok(None);
    };
    let action = if d.allowed {
        "approval.allow"
    } else {
        "approval.deny"
    };
    let detail = serde_json::json!({ "approval": row.id, "tool": row.tool, "decided_by": row.decided_by, "note": row.note });
    NewAuditRow::new(d.by, action, format!("task:{}", d.task_id), Some(detail)).append(conn)?;
    if let Some(holder) = d.holder {
        inbox::deliver(conn, holder, InboxKind::Approval, None, Some(d.task_id))?;
    }
    Ok(Some(row))
}

/// Decides a pending approval; `None` when it was decided already.
fn decide(
    conn: &mut DbConnection,
    id: i32,
    allowed: bool,
    by: &str,
    note: Option<&str>,
) -> QueryResult<Option<ApprovalRow>> {
    diesel::update(
        approvals::table
            .find(id)
            .filter(approvals::status.eq("pending")),
    )
    .set((
        approvals::status.eq(if allowed { "allowed" } else { "denied" }),
        approvals::decided_by.eq(by),
        approvals::note.eq(note),
        approvals::decided_at.eq(now_iso()),
    ))
    .returning(crate::db::columns_of::<ApprovalRow>())
    .get_result(conn)
    .optional()
}

pub fn get(conn: &mut DbConnection, id: i32) -> QueryResult<Option<ApprovalRow>> {
    approvals::table
        .find(id)
        .select(ApprovalRow::as_select())
        .get_result(conn)
        .optional()
}

/// The approval a task waits for, if any.
pub fn pending_of(conn: &mut DbConnection, task_id: i32) -> QueryResult<Option<ApprovalRow>> {
    approvals::table
        .filter(approvals::task_id.eq(task_id))
        .filter(approvals::status.eq("pending"))
        .select(ApprovalRow::as_select())
        .first(conn)
        .optional()
}

/// How many approvals wait for a decision.
pub fn count_pending(conn: &mut DbConnection) -> QueryResult<i64> {
    approvals::table
        .filter(approvals::status.eq("pending"))
        .count()
        .get_result(conn)
}

/// Approvals `principal` may see (those of tasks it may see), newest first.
pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    status: Option<String>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<ApprovalRow>> {
    let mut query = approvals::table
        .inner_join(tasks::table)
        .select(ApprovalRow::as_select())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(approvals::status.eq(status));
    }
    if let Some(me) = principal.confined_to() {
        query = query.filter(
            tasks::assigned_to
                .eq(me.to_string())
                .or(tasks::created_by.eq(me.to_string())),
        );
    }
    query
        .order(approvals::id.desc())
        .limit(limit)
        .offset(offset)
        .load(conn)
}
