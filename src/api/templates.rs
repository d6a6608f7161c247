//! Task templates: stored task bodies dispatched with one call (seed 000 section 04).

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{parse_json, Json};
use super::task_body::TaskBody;
use crate::actors::dispatcher::SubmitTask;
use crate::auth::Caller;
use crate::db::models::{NewAuditRow, NewTemplateRow, TemplateRow};
use crate::db::schema::templates;
use crate::domain::now_iso;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::TaskView;

#[derive(Debug, Deserialize)]
pub struct TemplateBody {
    name: Option<String>,
    #[serde(flatten)]
    task: TaskBody,
}

fn template_view(row: &TemplateRow, hub: &Hub) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "title": row.title,
        "prompt": hub.core.vault.open(&row.prompt).map(|o| o.plaintext),
        "required_capability": row.required_capability,
        "assign_to": row.assign_to,
        "priority": row.priority,
        "urgency": row.urgency,
        "model": row.model,
        "created_by": row.created_by,
        "created_at": row.created_at,
    })
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
            .filter(|n| !n.trim().is_empty())
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
    let template = hub
        .core
        .db
        .write(move |conn| {
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
    Ok(HttpResponse::Created().json(template_view(&template, &hub)))
}

pub async fn list_templates(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    if !caller.0.can("admin:templates") {
        caller.0.require("tasks:read")?;
    }
    let rows = crate::db::read(&hub.reads, |conn| {
        Ok(templates::table
            .select(TemplateRow::as_select())
            .order(templates::id.desc())
            .load(conn)?)
    })
    .await?;
    let list: Vec<Value> = rows.iter().map(|r| template_view(r, &hub)).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": list.len(), "templates": list })))
}

pub async fn get_template(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    if !caller.0.can("admin:templates") {
        caller.0.require("tasks:read")?;
    }
    let row = find_template(&hub, template_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(template_view(&row, &hub)))
}

pub async fn delete_template(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("admin:templates")?;
    let id = template_id(&path)?;
    let (target, missing) = (format!("template:{id}"), format!("no template {id}"));
    super::delete_audited(
        &hub,
        caller.0.label(),
        "template.delete",
        target,
        missing,
        move |conn| diesel::delete(templates::table.find(id)).execute(conn),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": id })))
}

/// Creates a task from the template; any field of the (optional) body overrides it.
pub async fn dispatch_template(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:create")?;
    let template = find_template(&hub, template_id(&path)?).await?;
    let overrides: TaskBody = if body.iter().all(u8::is_ascii_whitespace) {
        TaskBody::default()
    } else {
        parse_json(&body)?
    };
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
    let row = hub
        .dispatcher
        .send(SubmitTask {
            task,
            depends_on: vec![],
            actor: caller.0.label(),
            delivery: None,
            crossing: None,
        })
        .await??;
    Ok(HttpResponse::Created().json(TaskView::new(row, &hub.core.vault, vec![], false)))
}
