//! Pipelines: dependency-chained task lists created atomically (seed 000 section 04).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{parse_json, Keyed, Query};
use super::idempotency::{settle, Idempotent};
use super::task_body::TaskBody;
use super::{page_limit, page_offset};
use crate::actors::dispatcher::{AfterPipeline, SubmitPipeline};
use crate::actors::pipeline::CancelPipeline;
use crate::crypto::Vault;
use crate::db::models::{PipelineRow, TaskRow};
use crate::db::queries;
use crate::domain::access::Principal;
use crate::domain::graph::{check_pipeline, parse_depends_on};
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::TaskView;

#[derive(Debug, Deserialize, ToSchema)]
pub struct PipelineBody {
    name: Option<String>,
    created_by: Option<String>,
    #[schema(required = true, value_type = Vec<TaskBody>, min_items = 1, max_items = 50)]
    tasks: Option<Vec<TaskBody>>,
}

/// Prefixes a member's validation error with its place in the array.
fn in_member(index: usize, error: HubError) -> HubError {
    match error {
        HubError::BadRequest(message) => {
            HubError::bad_request(format!("tasks[{index}]: {message}"))
        }
        other => other,
    }
}

#[utoipa::path(
    post,
    path = "/api/pipelines",
    tag = "pipelines",
    request_body = PipelineBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats of this key (same caller, same route, within idempotency_retention_hours) answer the first response instead of creating again", max_length = 255, pattern = r"^[\x20-\x7E]*$")),
    responses(
        (status = 201, description = "Create a pipeline (pipelines:create)", body = Object),
        (status = 422, description = "The Idempotency-Key was already used with a different body", body = super::openapi::ErrorBody),
    )
)]
pub async fn create_pipeline(
    hub: web::Data<Hub>,
    caller: Caller,
    keyed: Keyed,
) -> Result<HttpResponse, HubError> {
    caller.0.require("pipelines:create")?;
    let idempotent = Idempotent::of(&hub, &caller.0.label(), "POST /api/pipelines", keyed.key);
    let answer = async {
        let body: PipelineBody = parse_json(&keyed.body)?;
        let members = body
            .tasks
            .ok_or_else(|| HubError::bad_request("tasks is required"))?;
        let depends_on = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                parse_depends_on(m.depends_on.as_ref(), &format!("tasks[{i}].depends_on"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_pipeline(&depends_on)?;
        let created_by = match &caller.0 {
            Principal::Master => body
                .created_by
                .filter(|c| !c.trim_blank().is_empty())
                .unwrap_or_else(|| "master".into()),
            other => other.label(),
        };
        let mut rows = Vec::with_capacity(members.len());
        for (index, member) in members.into_iter().enumerate() {
            let mut row = member
                .into_row(&caller.0, &hub, "pipeline")
                .map_err(|e| in_member(index, e))?;
            row.created_by = created_by.clone();
            rows.push(row);
        }
        let also = idempotent.as_ref().map(|keyed| {
            let (vault, deps) = (hub.core.vault.clone(), depends_on.clone());
            let record = keyed.recorder(hub.core.vault.clone(), StatusCode::CREATED);
            Box::new(
                move |conn: &mut crate::db::DbConnection,
                      pipeline: &PipelineRow,
                      rows: &[TaskRow]| {
                    record(conn, &created(pipeline, rows, &deps, &vault))
                },
            ) as AfterPipeline
        });
        let message = SubmitPipeline {
            name: body.name,
            created_by,
            tasks: rows,
            depends_on: depends_on.clone(),
            actor: caller.0.label(),
            by_master: caller.0.is_master(),
            also,
        };
        let (pipeline, rows) = hub.dispatcher.send(message).await??;
        let answer = created(&pipeline, &rows, &depends_on, &hub.core.vault);
        Ok(HttpResponse::Created().json(answer))
    }
    .await;
    settle(&hub, idempotent.as_ref(), answer).await
}

/// A new pipeline as its create answers it: its id, name and members (dependencies by id).
fn created(
    pipeline: &PipelineRow,
    rows: &[TaskRow],
    depends_on: &[Vec<i64>],
    vault: &Vault,
) -> Value {
    let ids: Vec<i32> = rows.iter().map(|r| r.id).collect();
    let tasks: Vec<TaskView> = rows
        .iter()
        .zip(depends_on)
        .map(|(row, deps)| {
            let deps = deps.iter().map(|&d| ids[d as usize]).collect();
            TaskView::new(row.clone(), vault, deps, false)
        })
        .collect();
    json!({ "pipeline_id": pipeline.id, "name": pipeline.name, "count": tasks.len(), "tasks": tasks })
}

fn pipeline_view(row: &PipelineRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "completed_at": row.completed_at,
    })
}

#[utoipa::path(
    get,
    path = "/api/pipelines/{id}",
    tag = "pipelines",
    params(("id" = i64, Path, description = "The numeric id")),
    responses((status = 200, description = "One pipeline (tasks:read)", body = Object))
)]
pub async fn get_pipeline(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    let (pipeline, members, edges) = visible_pipeline(&hub, &caller.0, &path).await?;
    let tasks: Vec<Value> = members
        .iter()
        .map(|m| {
            let deps: Vec<i32> = edges
                .iter()
                .filter(|(t, _)| *t == m.id)
                .map(|(_, d)| *d)
                .collect();
            json!({
                "id": m.id,
                "index": m.pipeline_index,
                "title": m.title,
                "status": m.status,
                "reason": m.reason,
                "assigned_to": m.assigned_to,
                "depends_on": deps,
                "attempts": m.attempts,
            })
        })
        .collect();
    let mut view = pipeline_view(&pipeline);
    view["count"] = json!(tasks.len());
    view["tasks"] = json!(tasks);
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PipelineListQuery {
    /// Page size (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/pipelines",
    tag = "pipelines",
    params(PipelineListQuery),
    responses((status = 200, description = "Pipelines (tasks:read)", body = Object))
)]
pub async fn list_pipelines(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<PipelineListQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    let limit = page_limit(query.0.limit, 20, hub.core.settings.max_list_limit)?;
    let offset = page_offset(query.0.offset)?;
    let principal = caller.0.clone();
    let rows = crate::db::read(&hub.reads, move |conn| {
        Ok(queries::list_pipelines(conn, &principal, limit, offset)?)
    })
    .await?;
    let list: Vec<Value> = rows.iter().map(pipeline_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": list.len(), "pipelines": list })))
}

/// The pipeline a path names, its members and their edges: a 404 for one the caller may
/// not see (an agent sees only the pipelines it created).
async fn visible_pipeline(
    hub: &Hub,
    principal: &Principal,
    raw: &str,
) -> Result<(PipelineRow, Vec<TaskRow>, Vec<(i32, i32)>), HubError> {
    let missing = || HubError::not_found(format!("no pipeline {raw:?}"));
    let id: i32 = raw.parse().map_err(|_| missing())?;
    let found = crate::db::read(&hub.reads, move |conn| {
        let Some(pipeline) = queries::pipeline(conn, id)? else {
            return Ok(None);
        };
        let members = queries::pipeline_members(conn, id)?;
        let ids: Vec<i32> = members.iter().map(|m| m.id).collect();
        let edges = queries::edges(conn, &ids)?;
        Ok(Some((pipeline, members, edges)))
    })
    .await?;
    found
        .filter(|(p, _, _)| principal.confined_to().is_none_or(|me| me == p.created_by))
        .ok_or_else(missing)
}

#[utoipa::path(
    post,
    path = "/api/pipelines/{id}/cancel",
    tag = "pipelines",
    params(("id" = i64, Path, description = "The numeric id")),
    responses(
        (status = 200, description = "Cancel every unfinished member, dependents first (tasks:update; its creator or an overseer); their holders are told at once", body = Object),
        (status = 404, description = "No such pipeline, or one the caller may not see", body = super::openapi::ErrorBody),
        (status = 409, description = "The pipeline already finished", body = super::openapi::ErrorBody),
    )
)]
pub async fn cancel_pipeline(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:update")?;
    let (pipeline, _, _) = visible_pipeline(&hub, &caller.0, &path).await?;
    let id = pipeline.id;
    // A pipeline is live (an actor) until every member has finished.
    let live = hub.directory.pipeline(id).ok_or_else(|| {
        HubError::conflict(format!(
            "pipeline {id} already finished ({})",
            pipeline.status
        ))
    })?;
    let cancelled = live
        .send(CancelPipeline {
            principal: caller.0,
        })
        .await??;
    Ok(HttpResponse::Ok().json(json!({ "pipeline_id": id, "cancelled": cancelled })))
}
