//! Task templates: stored task bodies dispatched with one call (seed 000 section 04).

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{optional_json, Json, Keyed, Query};
use super::idempotency::{settle, Idempotent};
use super::task_body::TaskBody;
use super::{page_limit, page_offset};
use crate::actors::dispatcher::SubmitTask;
use crate::actors::scheduler::Reload;
use crate::db::models::{NewAuditRow, NewTemplateRow, TemplateRow};
use crate::db::schedules::{self, ScheduleRow};
use crate::db::schema::{template_schedules, templates, webhooks};
use crate::domain::access::Principal;
use crate::domain::iso;
use crate::domain::now_iso;
use crate::domain::schedule::Schedule;
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TemplateBody {
    name: Option<String>,
    /// Dispatch the template on a schedule.
    schedule: Option<ScheduleBody>,
    #[serde(flatten)]
    task: TaskBody,
}

/// When a template is dispatched by itself.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScheduleBody {
    /// A cron expression: five fields (minute hour day-of-month month day-of-week), six
    /// with seconds first, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[schema(required = true, value_type = String, example = "0 9 * * 1-5")]
    cron: Option<String>,
    /// An IANA time zone name (default UTC).
    #[schema(value_type = Option<String>, example = "Europe/Paris")]
    time_zone: Option<String>,
    /// Dispatch the occurrences missed while the hub was down (at most 100) instead of
    /// recording them as skipped.
    catch_up: Option<bool>,
    /// Keep the schedule without running it.
    paused: Option<bool>,
}

impl ScheduleBody {
    /// Checks the expression and the zone; the row to store for `template_id`.
    fn into_row(self, template_id: i32, by: &Principal) -> Result<ScheduleRow, HubError> {
        let cron = self
            .cron
            .filter(|c| !c.trim_blank().is_empty())
            .ok_or_else(|| HubError::bad_request("schedule.cron is required"))?;
        let time_zone = self
            .time_zone
            .filter(|z| !z.trim_blank().is_empty())
            .unwrap_or_else(|| "UTC".into());
        Schedule::parse(&cron, &time_zone)?;
        let now = now_iso();
        Ok(ScheduleRow {
            template_id,
            cron,
            time_zone,
            catch_up: self.catch_up.unwrap_or(false),
            paused: self.paused.unwrap_or(false),
            since: now.clone(),
            updated_by: by.label(),
            updated_at: now,
        })
    }
}

/// How many upcoming runs a template's view lists.
const NEXT_RUNS: usize = 5;

/// A schedule as the API shows it, with its next run times (none while paused).
fn schedule_view(row: &ScheduleRow) -> Value {
    let next_runs: Vec<String> = match Schedule::parse(&row.cron, &row.time_zone) {
        Ok(schedule) if !row.paused => schedule
            .upcoming(chrono::Utc::now(), NEXT_RUNS)
            .into_iter()
            .map(iso)
            .collect(),
        _ => vec![],
    };
    json!({
        "cron": row.cron,
        "time_zone": row.time_zone,
        "catch_up": row.catch_up,
        "paused": row.paused,
        "since": row.since,
        "updated_by": row.updated_by,
        "next_runs": next_runs,
    })
}

/// A template as `caller` may see it: the prompt only for its creator, admins and the
/// master token, and never in lists (`with_prompt` false).
fn template_view(
    row: &TemplateRow,
    schedule: Option<&ScheduleRow>,
    hub: &Hub,
    caller: &Principal,
    with_prompt: bool,
) -> Value {
    let mut view = json!({
        "id": row.id,
        "name": row.name,
        "title": row.title,
        "required_capability": row.required_capability,
        "assign_to": row.assign_to,
        "priority": row.priority,
        "urgency": row.urgency,
        "model": row.model,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "schedule": schedule.map(schedule_view),
    });
    if with_prompt && owns(caller, row) {
        view["prompt"] = json!(hub.core.vault.open(&row.prompt).map(|o| o.plaintext));
    }
    view
}

/// The creator, admins and the master token own a template: they see its prompt and may
/// delete it.
fn owns(caller: &Principal, row: &TemplateRow) -> bool {
    caller.is_admin() || caller.label() == row.created_by
}

/// The template as a task body, to be overridden field by field by a dispatch.
fn as_body(row: &TemplateRow, hub: &Hub) -> TaskBody {
    TaskBody {
        title: Some(row.title.clone()),
        prompt: hub.core.vault.open(&row.prompt).map(|o| o.plaintext),
        required_capability: Some(row.required_capability.clone()),
        assign_to: row.assign_to.clone(),
        priority: Some(row.priority),
        urgency: Some(row.urgency.clone()),
        model: Some(row.model.clone()),
        ..TaskBody::default()
    }
}

fn template_id(raw: &str) -> Result<i32, HubError> {
    raw.parse()
        .map_err(|_| HubError::not_found(format!("no template {raw:?}")))
}

pub(super) async fn find_template(hub: &Hub, id: i32) -> Result<TemplateRow, HubError> {
    crate::db::read(&hub.reads, move |conn| {
        Ok(templates::table
            .find(id)
            .select(TemplateRow::as_select())
            .get_result(conn)
            .optional()?)
    })
    .await?
    .ok_or_else(|| HubError::not_found(format!("no template {id}")))
}

#[utoipa::path(
    post,
    path = "/api/templates",
    tag = "templates",
    request_body = TemplateBody,
    responses((status = 201, description = "Create a template (admin:templates)", body = Object))
)]
pub async fn create_template(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<TemplateBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:templates")?;
    let body = body.0;
    // The same rules as a task: a template must be dispatchable as it stands.
    let task = body.task.into_row(&caller.0, &hub, "template")?;
    // Checked now; stored with the template once its id is known.
    let schedule = body
        .schedule
        .map(|s| s.into_row(0, &caller.0))
        .transpose()?;
    let row = NewTemplateRow {
        name: body
            .name
            .filter(|n| !n.trim_blank().is_empty())
            .unwrap_or_else(|| task.title.clone()),
        title: task.title,
        prompt: task.prompt,
        required_capability: task.required_capability,
        assign_to: task.assign_to,
        priority: task.priority,
        urgency: task.urgency,
        model: task.model,
        created_by: caller.0.label(),
        created_at: now_iso(),
    };
    let cap = hub.core.settings.max_templates_per_creator;
    let template = hub
        .core
        .db
        .write(move |conn| {
            let kept: i64 = templates::table
                .filter(templates::created_by.eq(&row.created_by))
                .count()
                .get_result(conn)?;
            if kept >= cap {
                return Err(HubError::conflict(format!(
                    "{} already keeps {kept} templates (max_templates_per_creator is {cap}); delete one first",
                    row.created_by
                )));
            }
            let template: TemplateRow = diesel::insert_into(templates::table)
                .values(&row)
                .returning(crate::db::columns_of::<TemplateRow>())
                .get_result(conn)?;
            let schedule = schedule.map(|s| ScheduleRow {
                template_id: template.id,
                ..s
            });
            if let Some(schedule) = &schedule {
                schedules::set(conn, schedule)?;
            }
            let detail = json!({ "name": template.name, "schedule": schedule.as_ref().map(|s| &s.cron) });
            NewAuditRow::new(
                &row.created_by,
                "template.create",
                format!("template:{}", template.id),
                Some(detail),
            )
            .append(conn)?;
            Ok((template, schedule))
        })
        .await?;
    let (template, schedule) = template;
    if schedule.is_some() {
        hub.scheduler.do_send(Reload {
            template_id: template.id,
        });
    }
    let view = template_view(&template, schedule.as_ref(), &hub, &caller.0, true);
    Ok(HttpResponse::Created().json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateListQuery {
    /// Page size (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

fn require_read(caller: &Principal) -> Result<(), HubError> {
    if caller.can("admin:templates") {
        Ok(())
    } else {
        caller.require("tasks:read")
    }
}

/// Templates newest first, a page at a time, without their prompts.
#[utoipa::path(
    get,
    path = "/api/templates",
    tag = "templates",
    params(TemplateListQuery),
    responses((status = 200, description = "Templates, without prompts (tasks:read or admin:templates)", body = Object))
)]
pub async fn list_templates(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<TemplateListQuery>,
) -> Result<HttpResponse, HubError> {
    require_read(&caller.0)?;
    let limit = page_limit(query.0.limit, 50, hub.core.settings.max_list_limit)?;
    let offset = page_offset(query.0.offset)?;
    let (rows, total) = crate::db::read(&hub.reads, move |conn| {
        let rows: Vec<(TemplateRow, Option<ScheduleRow>)> = templates::table
            .left_join(template_schedules::table)
            .select((TemplateRow::as_select(), Option::<ScheduleRow>::as_select()))
            .order(templates::id.desc())
            .limit(limit)
            .offset(offset)
            .load(conn)?;
        let total: i64 = templates::table.count().get_result(conn)?;
        Ok((rows, total))
    })
    .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|(r, s)| template_view(r, s.as_ref(), &hub, &caller.0, false))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "count": list.len(),
        "total": total,
        "limit": limit,
        "offset": offset,
        "templates": list,
    })))
}

#[utoipa::path(
    get,
    path = "/api/templates/{id}",
    tag = "templates",
    params(("id" = i64, Path, description = "The numeric id")),
    responses((status = 200, description = "One template (tasks:read or admin:templates)", body = Object))
)]
pub async fn get_template(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    require_read(&caller.0)?;
    let row = find_template(&hub, template_id(&path)?).await?;
    let id = row.id;
    let schedule = crate::db::read(&hub.reads, move |conn| Ok(schedules::of(conn, id)?)).await?;
    Ok(HttpResponse::Ok().json(template_view(
        &row,
        schedule.as_ref(),
        &hub,
        &caller.0,
        true,
    )))
}

/// Deletes a template its caller owns (others get 404); one a webhook still dispatches
/// is a 409 naming the webhook, so no webhook is silently left without its template.
#[utoipa::path(
    delete,
    path = "/api/templates/{id}",
    tag = "templates",
    params(("id" = i64, Path, description = "The numeric id")),
    responses((status = 200, description = "Delete one's own template (admin:templates)", body = Object))
)]
pub async fn delete_template(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:templates")?;
    let id = template_id(&path)?;
    let principal = caller.0.clone();
    hub.core
        .db
        .write(move |conn| {
            let row = templates::table
                .find(id)
                .select(TemplateRow::as_select())
                .get_result(conn)
                .optional()?
                .filter(|row| owns(&principal, row))
                .ok_or_else(|| HubError::not_found(format!("no template {id}")))?;
            let bound: Option<String> = webhooks::table
                .filter(webhooks::template_id.eq(id))
                .select(webhooks::name)
                .first(conn)
                .optional()?;
            if let Some(webhook) = bound {
                return Err(HubError::conflict(format!(
                    "template {id} is used by webhook {webhook:?}; delete or change the webhook first"
                )));
            }
            diesel::delete(templates::table.find(id)).execute(conn)?;
            NewAuditRow::new(
                &principal.label(),
                "template.delete",
                format!("template:{id}"),
                Some(json!({ "name": row.name })),
            )
            .append(conn)?;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": id })))
}

/// Creates a task from the template; any field of the (optional) body overrides it.
#[utoipa::path(
    post,
    path = "/api/templates/{id}/dispatch",
    tag = "templates",
    params(("id" = i64, Path, description = "The numeric id"), ("Idempotency-Key" = Option<String>, Header, description = "Repeats of this key (same caller, same route, within idempotency_retention_hours) answer the first response instead of creating again", max_length = 255, pattern = r"^[\x20-\x7E]*$")),
    request_body = Option<TaskBody>,
    responses(
        (status = 201, description = "Create a task from a template (tasks:create)", body = crate::views::TaskView),
        (status = 422, description = "The Idempotency-Key was already used with a different body", body = super::openapi::ErrorBody),
    )
)]
pub async fn dispatch_template(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    keyed: Keyed,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:create")?;
    let route = format!("POST /api/templates/{}/dispatch", path.as_str());
    let idempotent = Idempotent::of(&hub, &caller.0.label(), &route, keyed.key);
    let answer = async {
        let template = find_template(&hub, template_id(&path)?).await?;
        let overrides: TaskBody = optional_json(&keyed.body)?;
        let base = as_body(&template, &hub);
        let merged = TaskBody {
            title: overrides.title.or(base.title),
            prompt: overrides.prompt.or(base.prompt),
            required_capability: overrides.required_capability.or(base.required_capability),
            assign_to: overrides.assign_to.or(base.assign_to),
            priority: overrides.priority.or(base.priority),
            urgency: overrides.urgency.or(base.urgency),
            model: overrides.model.or(base.model),
            ..overrides
        };
        let mut task = merged.into_row(&caller.0, &hub, "template")?;
        task.template_id = Some(template.id);
        let message = SubmitTask {
            task,
            depends_on: vec![],
            actor: caller.0.label(),
            delivery: None,
            crossings: vec![],
            by_master: caller.0.is_master(),
            also: None,
        };
        super::tasks::submit(&hub, message, idempotent.as_ref()).await
    }
    .await;
    settle(&hub, idempotent.as_ref(), answer).await
}

/// The template `id` if `caller` owns it (others get 404, as for delete).
async fn owned_template(hub: &Hub, caller: &Principal, id: i32) -> Result<TemplateRow, HubError> {
    let row = find_template(hub, id).await?;
    if owns(caller, &row) {
        Ok(row)
    } else {
        Err(HubError::not_found(format!("no template {id}")))
    }
}

/// Sets or replaces a template's schedule (pausing and resuming included); occurrences
/// count from now.
#[utoipa::path(
    put,
    path = "/api/templates/{id}/schedule",
    tag = "templates",
    params(("id" = i64, Path, description = "The numeric id")),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "Schedule one's own template, pause or resume it (admin:templates)", body = Object),
        (status = 400, description = "Not a cron expression or a time zone", body = super::openapi::ErrorBody),
        (status = 404, description = "No such template of the caller's", body = super::openapi::ErrorBody),
    )
)]
pub async fn set_schedule(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<ScheduleBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:templates")?;
    let template = owned_template(&hub, &caller.0, template_id(&path)?).await?;
    let row = body.0.into_row(template.id, &caller.0)?;
    let actor = caller.0.label();
    let stored = row.clone();
    hub.core
        .db
        .write(move |conn| {
            schedules::set(conn, &stored)?;
            let detail = json!({ "cron": stored.cron, "time_zone": stored.time_zone, "paused": stored.paused, "catch_up": stored.catch_up });
            NewAuditRow::new(&actor, "template.schedule", format!("template:{}", stored.template_id), Some(detail)).append(conn)?;
            Ok(())
        })
        .await?;
    hub.scheduler.do_send(Reload {
        template_id: template.id,
    });
    Ok(HttpResponse::Ok().json(template_view(&template, Some(&row), &hub, &caller.0, true)))
}

/// Removes a template's schedule; the template stays, dispatched by hand only.
#[utoipa::path(
    delete,
    path = "/api/templates/{id}/schedule",
    tag = "templates",
    params(("id" = i64, Path, description = "The numeric id")),
    responses(
        (status = 200, description = "Unschedule one's own template (admin:templates)", body = Object),
        (status = 404, description = "No such template of the caller's, or it has no schedule", body = super::openapi::ErrorBody),
    )
)]
pub async fn remove_schedule(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:templates")?;
    let template = owned_template(&hub, &caller.0, template_id(&path)?).await?;
    let (id, actor) = (template.id, caller.0.label());
    hub.core
        .db
        .write(move |conn| {
            if !schedules::remove(conn, id)? {
                return Err(HubError::not_found(format!(
                    "template {id} has no schedule"
                )));
            }
            NewAuditRow::new(
                &actor,
                "template.unschedule",
                format!("template:{id}"),
                None,
            )
            .append(conn)?;
            Ok(())
        })
        .await?;
    hub.scheduler.do_send(Reload { template_id: id });
    Ok(HttpResponse::Ok().json(template_view(&template, None, &hub, &caller.0, true)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OccurrenceQuery {
    /// How many, newest first (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

/// A template's scheduled occurrences, newest first: the task each made, or why it was
/// skipped (missed while the hub was down, the kill switch, the cost cap).
#[utoipa::path(
    get,
    path = "/api/templates/{id}/occurrences",
    tag = "templates",
    params(("id" = i64, Path, description = "The numeric id"), OccurrenceQuery),
    responses((status = 200, description = "A template's scheduled occurrences (tasks:read or admin:templates)", body = Object))
)]
pub async fn list_occurrences(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    query: Query<OccurrenceQuery>,
) -> Result<HttpResponse, HubError> {
    require_read(&caller.0)?;
    let template = find_template(&hub, template_id(&path)?).await?;
    let limit = page_limit(query.0.limit, 50, hub.core.settings.max_list_limit)?;
    let id = template.id;
    let list = crate::db::read(&hub.reads, move |conn| {
        Ok(schedules::occurrences(conn, id, limit)?)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "template_id": id, "count": list.len(), "occurrences": list })))
}
