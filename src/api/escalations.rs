//! Escalations: a worker (or the hub) asks a person to look at a task (API.md).

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{optional_json, Json, Query};
use super::{page_limit, page_offset};
use crate::actors::task::{announce_escalation, escalation_scope};
use crate::db::models::{EscalationRow, NewAuditRow, NewEscalationRow, TaskRow};
use crate::db::schema::{escalations, tasks};
use crate::domain::event::{Audience, HubEvent};
use crate::domain::now_iso;
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;

#[derive(Debug, Deserialize, ToSchema)]
pub struct EscalationBody {
    #[schema(value_type = Option<i32>)]
    task_id: Option<i32>,
    #[schema(value_type = Option<String>)]
    agent_id: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1, pattern = r"\S")]
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/escalations",
    tag = "escalations",
    request_body = EscalationBody,
    responses((status = 201, description = "Open an escalation (escalations:create)", body = Object))
)]
pub async fn create_escalation(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<EscalationBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("escalations:create")?;
    let body = body.0;
    let reason = body
        .reason
        .filter(|r| !r.trim_blank().is_empty())
        .ok_or_else(|| HubError::bad_request("reason is required"))?;
    let task = match body.task_id {
        Some(task_id) => Some(
            super::tasks::visible_task(&hub, &caller.0, task_id)
                .await?
                .0,
        ),
        None => None,
    };
    // A token escalates as its own agent; the master token may name one.
    let agent_id = match caller.0.agent_id() {
        Some(own) => Some(own.to_string()),
        None => body.agent_id,
    };
    let escalation = NewEscalationRow::open(body.task_id, agent_id, reason, &caller.0.label());
    let row = hub
        .core
        .db
        .write(move |conn| Ok(escalation.insert(conn)?))
        .await?;
    announce_escalation(&hub.core, &row, escalation_scope(&row, task.as_ref()));
    Ok(HttpResponse::Created().json(row))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EscalationQuery {
    /// open or resolved.
    #[param(pattern = "^(open|resolved)$")]
    status: Option<String>,
    /// Page size (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/escalations",
    tag = "escalations",
    params(EscalationQuery),
    responses((status = 200, description = "Escalations the caller may see (escalations:read)", body = Object))
)]
pub async fn list_escalations(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<EscalationQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("escalations:read")?;
    let query = query.0;
    if query
        .status
        .as_deref()
        .is_some_and(|s| s != "open" && s != "resolved")
    {
        return Err(HubError::bad_request("status must be open or resolved"));
    }
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = page_offset(query.offset)?;
    // Principal::sees_escalation in SQL: a token sees escalations of tasks it holds or
    // made, and task-less ones it opened or that name its agent.
    let viewer = caller.0.confined_to().map(str::to_string);
    let rows = crate::db::read(&hub.reads, move |conn| {
        let mut q = escalations::table
            .left_join(tasks::table)
            .select(EscalationRow::as_select())
            .into_boxed();
        if let Some(status) = query.status {
            q = q.filter(escalations::status.eq(status));
        }
        if let Some(me) = viewer {
            q = q.filter(
                tasks::assigned_to
                    .eq(me.clone())
                    .or(tasks::created_by.eq(me.clone()))
                    .or(escalations::task_id.is_null().and(
                        escalations::agent_id
                            .eq(me.clone())
                            .or(escalations::created_by.eq(me)),
                    )),
            );
        }
        Ok(q.order(escalations::id.desc())
            .limit(limit)
            .offset(offset)
            .load(conn)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "count": rows.len(), "escalations": rows })))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ResolveBody {
    #[schema(value_type = Option<String>)]
    resolution: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/escalations/{id}/resolve",
    tag = "escalations",
    params(("id" = i64, Path, description = "The numeric id")),
    request_body = Option<ResolveBody>,
    responses((status = 200, description = "Resolve an escalation (escalations:resolve)", body = Object))
)]
pub async fn resolve_escalation(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    caller.0.require("escalations:resolve")?;
    let raw = path.into_inner();
    let id: i32 = raw
        .parse()
        .map_err(|_| HubError::not_found(format!("no escalation {raw:?}")))?;
    let body: ResolveBody = optional_json(&body)?;
    let actor = caller.0.label();
    let principal = caller.0;
    let (row, scope) = hub
        .core
        .db
        .write(move |conn| {
            let (current, task) = escalations::table
                .find(id)
                .left_join(tasks::table)
                .select((EscalationRow::as_select(), Option::<TaskRow>::as_select()))
                .get_result::<(EscalationRow, Option<TaskRow>)>(conn)
                .optional()?
                .ok_or_else(|| HubError::not_found(format!("no escalation {id}")))?;
            let scope = escalation_scope(&current, task.as_ref());
            if !principal.sees_escalation(&scope) {
                return Err(HubError::not_found(format!("no escalation {id}")));
            }
            let row: EscalationRow = diesel::update(
                escalations::table
                    .find(id)
                    .filter(escalations::status.eq("open")),
            )
            .set((
                escalations::status.eq("resolved"),
                escalations::resolved_by.eq(&actor),
                escalations::resolved_at.eq(now_iso()),
                escalations::resolution.eq(&body.resolution),
            ))
            .returning(crate::db::columns_of::<EscalationRow>())
            .get_result(conn)
            .optional()?
            .ok_or_else(|| HubError::conflict(format!("escalation {id} is already resolved")))?;
            NewAuditRow::new(
                &actor,
                "escalation.resolve",
                format!("escalation:{id}"),
                Some(json!({ "resolution": row.resolution })),
            )
            .append(conn)?;
            Ok((row, scope))
        })
        .await?;
    hub.core.publish(HubEvent::new(
        "escalation_resolved",
        json!(row),
        Audience::Escalation(scope),
    ));
    Ok(HttpResponse::Ok().json(row))
}
