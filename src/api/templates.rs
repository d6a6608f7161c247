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
use crate::db::models::{NewAuditRow, NewTemplateRow, TemplateRow};
use crate::db::schema::{templates, webhooks};
use crate::domain::access::Principal;
use crate::domain::now_iso;
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TemplateBody {
    name: Option<String>,
    #[serde(flatten)]
    task: TaskBody,
}

/// A template as `caller` may see it: the prompt only for its creator, admins and the
/// master token, and never in lists (`with_prompt` false).
fn template_view(row: &TemplateRow, hub: &Hub, caller: &Principal, with_prompt: bool) -> Value {
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
                .returning(TemplateRow::as_returning())
                .get_result(conn)?;
            NewAuditRow::new(
                &row.created_by,
                "template.create",
                format!("template:{}", template.id),
                Some(json!({ "name": template.name })),
            )
            .append(conn)?;
            Ok(template)
        })
        .await?;
    Ok(HttpResponse::Created().json(template_view(&template, &hub, &caller.0, true)))
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
        let rows = templates::table
            .select(TemplateRow::as_select())
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
        .map(|r| template_view(r, &hub, &caller.0, false))
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
    Ok(HttpResponse::Ok().json(template_view(&row, &hub, &caller.0, true)))
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
