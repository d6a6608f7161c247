//! Escalations: a worker (or the hub) asks a person to look at a task (API.md).

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::extract::{parse_json, Json, Query};
use super::{page_limit, page_offset};
use crate::actors::task::announce_escalation;
use crate::auth::Caller;
use crate::db::models::{EscalationRow, NewAuditRow, NewEscalationRow};
use crate::db::schema::escalations;
use crate::domain::event::{Audience, HubEvent};
use crate::domain::now_iso;
use crate::error::HubError;
use crate::startup::Hub;

#[derive(Debug, Deserialize)]
pub struct EscalationBody {
    task_id: Option<i32>,
    agent_id: Option<String>,
    reason: Option<String>,
}

pub async fn create_escalation(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<EscalationBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("escalations:create")?;
    let body = body.0;
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| HubError::bad_request("reason is required"))?;
    if let Some(task_id) = body.task_id {
        super::tasks::visible_task(&hub, &caller.0, task_id).await?;
    }
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
    announce_escalation(&hub.core, &row);
    Ok(HttpResponse::Created().json(row))
}

#[derive(Debug, Deserialize)]
pub struct EscalationQuery {
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

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
    let rows = crate::db::read(&hub.reads, move |conn| {
        let mut q = escalations::table
            .select(EscalationRow::as_select())
            .into_boxed();
        if let Some(status) = query.status {
            q = q.filter(escalations::status.eq(status));
        }
        Ok(q.order(escalations::id.desc())
            .limit(limit)
            .offset(offset)
            .load(conn)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "count": rows.len(), "escalations": rows })))
}

#[derive(Debug, Default, Deserialize)]
pub struct ResolveBody {
    resolution: Option<String>,
}

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
    let body: ResolveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ResolveBody::default()
    } else {
        parse_json(&body)?
    };
    let actor = caller.0.label();
    let row = hub
        .core
        .db
        .write(move |conn| {
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
            .returning(EscalationRow::as_returning())
            .get_result(conn)
            .optional()?
            .ok_or_else(|| {
                match escalations::table.find(id).count().get_result::<i64>(conn) {
                    Ok(0) => HubError::not_found(format!("no escalation {id}")),
                    _ => HubError::conflict(format!("escalation {id} is already resolved")),
                }
            })?;
            NewAuditRow::new(
                &actor,
                "escalation.resolve",
                format!("escalation:{id}"),
                Some(json!({ "resolution": row.resolution })),
            )
            .append(conn)?;
            Ok(row)
        })
        .await?;
    hub.core.publish(HubEvent::new(
        "escalation_resolved",
        json!(row),
        Audience::Escalations,
    ));
    Ok(HttpResponse::Ok().json(row))
}
