//! Template schedules and the occurrences recorded for them.

use crate::db::DbConnection;
use diesel::prelude::*;
use serde::Serialize;

use super::models::TemplateRow;
use super::schema::{schedule_occurrences, template_schedules, templates};
use crate::domain::now_iso;
use crate::error::HubError;

/// A template's schedule as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = template_schedules, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ScheduleRow {
    pub template_id: i32,
    pub cron: String,
    pub time_zone: String,
    pub catch_up: bool,
    pub paused: bool,
    /// Occurrences count from here: the schedule's last change.
    pub since: String,
    pub updated_by: String,
    pub updated_at: String,
}

/// One occurrence: the task it made, or why it was skipped.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = schedule_occurrences, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct OccurrenceRow {
    pub template_id: i32,
    pub occurrence_at: String,
    pub outcome: String,
    pub task_id: Option<i32>,
    pub detail: Option<String>,
    pub recorded_at: String,
}

impl OccurrenceRow {
    pub fn dispatched(template_id: i32, occurrence_at: String, task_id: i32) -> Self {
        Self {
            template_id,
            occurrence_at,
            outcome: "dispatched".into(),
            task_id: Some(task_id),
            detail: None,
            recorded_at: now_iso(),
        }
    }

    pub fn skipped(template_id: i32, occurrence_at: String, why: String) -> Self {
        Self {
            template_id,
            occurrence_at,
            outcome: "skipped".into(),
            task_id: None,
            detail: Some(why),
            recorded_at: now_iso(),
        }
    }
}

/// Sets (or replaces) a template's schedule.
pub fn set(conn: &mut DbConnection, row: &ScheduleRow) -> Result<(), HubError> {
    crate::on_each_backend!(conn, |inner| diesel::insert_into(template_schedules::table)
        .values(row)
        .on_conflict(template_schedules::template_id)
        .do_update()
        .set(row)
        .execute(inner))?;
    Ok(())
}

/// Removes a template's schedule; whether it had one.
pub fn remove(conn: &mut DbConnection, template_id: i32) -> Result<bool, HubError> {
    Ok(diesel::delete(template_schedules::table.find(template_id)).execute(conn)? > 0)
}

pub fn of(conn: &mut DbConnection, template_id: i32) -> QueryResult<Option<ScheduleRow>> {
    template_schedules::table
        .find(template_id)
        .select(ScheduleRow::as_select())
        .get_result(conn)
        .optional()
}

/// A schedule with its template and its last recorded occurrence.
pub type Scheduled = (ScheduleRow, TemplateRow, Option<String>);

/// One template's schedule, for the scheduler.
pub fn scheduled(conn: &mut DbConnection, template_id: i32) -> QueryResult<Option<Scheduled>> {
    Ok(every(conn, Some(template_id))?.pop())
}

/// Every schedule (or `only` one), for the scheduler.
pub fn every(conn: &mut DbConnection, only: Option<i32>) -> QueryResult<Vec<Scheduled>> {
    let mut query = template_schedules::table
        .inner_join(templates::table)
        .select((ScheduleRow::as_select(), TemplateRow::as_select()))
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(template_schedules::template_id.eq(id));
    }
    let rows: Vec<(ScheduleRow, TemplateRow)> = query.load(conn)?;
    rows.into_iter()
        .map(|(schedule, template)| {
            let last = last_occurrence(conn, template.id)?;
            Ok((schedule, template, last))
        })
        .collect()
}

pub fn last_occurrence(conn: &mut DbConnection, template_id: i32) -> QueryResult<Option<String>> {
    schedule_occurrences::table
        .filter(schedule_occurrences::template_id.eq(template_id))
        .select(diesel::dsl::max(schedule_occurrences::occurrence_at))
        .get_result(conn)
}

/// Records an occurrence; one already recorded (by this hub or another process sharing
/// the database) is a conflict, so its dispatch rolls back.
pub fn record(conn: &mut DbConnection, row: &OccurrenceRow) -> Result<(), HubError> {
    diesel::insert_into(schedule_occurrences::table)
        .values(row)
        .execute(conn)
        .map_err(|error| match error {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => HubError::conflict(format!(
                "occurrence {} of template {} is already recorded",
                row.occurrence_at, row.template_id
            )),
            other => other.into(),
        })?;
    Ok(())
}

/// Records skipped occurrences, leaving any already recorded as they are.
pub fn record_skipped(conn: &mut DbConnection, rows: &[OccurrenceRow]) -> Result<(), HubError> {
    for row in rows {
        crate::on_each_backend!(conn, |inner| diesel::insert_into(
            schedule_occurrences::table
        )
        .values(row)
        .on_conflict_do_nothing()
        .execute(inner))?;
    }
    Ok(())
}

/// A template's occurrences, newest first.
pub fn occurrences(
    conn: &mut DbConnection,
    template_id: i32,
    limit: i64,
) -> QueryResult<Vec<OccurrenceRow>> {
    schedule_occurrences::table
        .filter(schedule_occurrences::template_id.eq(template_id))
        .select(OccurrenceRow::as_select())
        .order(schedule_occurrences::occurrence_at.desc())
        .limit(limit)
        .load(conn)
}
