//! Tasks: create, list, read, report, dependencies and the live output stream
//! (seed 000 section 03).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::delivery::deliver;
use super::extract::{parse_json, ConsumerId, Json, Keyed, Query};
use super::idempotency::{settle, Idempotent};
use super::task_body::TaskBody;
use super::{page_limit, page_offset};
use crate::actors::dispatcher::SubmitTask;
use crate::actors::registry::Wake;
use crate::actors::task::{AppendChunk, Handoff, Report, ReportBody, TaskActor, Usage};
use crate::crypto::provenance::fingerprint;
use crate::crypto::Vault;
use crate::db::models::TaskRow;
use crate::db::queries::{self, TaskFilter};
use crate::domain::access::Principal;
use crate::domain::agent::valid_agent_id;
use crate::domain::graph::parse_depends_on;
use crate::domain::remember::extract;
use crate::domain::task::TaskStatus;
use crate::domain::Blank;
use crate::error::HubError;
use crate::settings::Settings;
use crate::startup::Hub;
use crate::views::TaskView;

/// A changed task as the answer to the call that changed it.
pub(super) async fn task_reply(hub: &Hub, row: TaskRow) -> Result<HttpResponse, HubError> {
    let id = row.id;
    let deps =
        crate::db::read(&hub.reads, move |conn| Ok(queries::dependencies(conn, id)?)).await?;
    Ok(HttpResponse::Ok().json(TaskView::new(row, &hub.core.vault, deps, false)))
}

/// A task id from the path; anything that is not one names no task.
pub(super) fn task_id(raw: &str) -> Result<i32, HubError> {
    raw.parse()
        .map_err(|_| HubError::not_found(format!("no task {raw:?}")))
}

/// One sealed task column to rewrite under the current key.
struct Reseal {
    task_id: i32,
    output: bool,
    old: String,
    new: String,
}

/// 404 for the first of `ids` that does not exist or the caller may not see (a task one
/// cannot see cannot be depended on either). One read for all of them.
async fn check_visible(hub: &Hub, principal: &Principal, ids: &[i32]) -> Result<(), HubError> {
    if ids.is_empty() {
        return Ok(());
    }
    let wanted = ids.to_vec();
    let found: Vec<(i32, Option<String>, String)> = crate::db::read(&hub.reads, move |conn| {
        use crate::db::schema::tasks;
        use diesel::prelude::*;
        Ok(tasks::table
            .filter(tasks::id.eq_any(wanted))
            .select((tasks::id, tasks::assigned_to, tasks::created_by))
            .load(conn)?)
    })
    .await?;
    for id in ids {
        let seen = found.iter().any(|(f, assigned_to, created_by)| {
            f == id && principal.sees_task(assigned_to.as_deref(), created_by)
        });
        if !seen {
            return Err(HubError::not_found(format!("no task {id}")));
        }
    }
    Ok(())
}

/// Re-encrypts, in the background, prompts and outputs still sealed under the legacy key.
/// Each update is conditional on the old ciphertext, so it never overwrites a newer value.
fn reseal_stale(hub: &Hub, rows: &[TaskRow]) {
    let vault = &hub.core.vault;
    let mut stale = Vec::new();
    for row in rows {
        let columns = [(false, Some(&row.prompt)), (true, row.output.as_ref())];
        for (output, sealed) in columns {
            let Some(old) = sealed else { continue };
            if let Some(new) = vault.reseal(old) {
                stale.push(Reseal {
                    task_id: row.id,
                    output,
                    old: old.clone(),
                    new,
                });
            }
        }
    }
    if stale.is_empty() {
        return;
    }
    let db = hub.core.db.clone();
    actix_web::rt::spawn(async move {
        let count = stale.len();
        let written = db
            .write(move |conn| {
                use crate::db::schema::tasks::dsl;
                use diesel::prelude::*;
                for r in stale {
                    let row = dsl::tasks.find(r.task_id);
                    if r.output {
                        diesel::update(row.filter(dsl::output.eq(r.old)))
                            .set(dsl::output.eq(r.new))
                            .execute(conn)?;
                    } else {
                        diesel::update(row.filter(dsl::prompt.eq(r.old)))
                            .set(dsl::prompt.eq(r.new))
                            .execute(conn)?;
                    }
                }
                Ok(())
            })
            .await;
        match written {
            Ok(()) => tracing::info!(
                values = count,
                "re-encrypted task values sealed under the legacy key"
            ),
            Err(error) => tracing::warn!(%error, "could not re-encrypt legacy-sealed task values"),
        }
    });
}

/// The task with its dependency ids, or 404 if it does not exist or the caller may not see it.
pub(super) async fn visible_task(
    hub: &Hub,
    principal: &Principal,
    id: i32,
) -> Result<(TaskRow, Vec<i32>), HubError> {
    let found = crate::db::read(&hub.reads, move |conn| {
        let Some(row) = queries::task(conn, id)? else {
            return Ok(None);
        };
        let deps = queries::dependencies(conn, id)?;
        Ok(Some((row, deps)))
    })
    .await?;
    found
        .filter(|(row, _)| principal.sees_task(row.assigned_to.as_deref(), &row.created_by))
        .inspect(|(row, _)| reseal_stale(hub, std::slice::from_ref(row)))
        .ok_or_else(|| HubError::not_found(format!("no task {id}")))
}

#[utoipa::path(
    post,
    path = "/api/tasks",
    tag = "tasks",
    request_body = TaskBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeats of this key (same caller, same route, within idempotency_retention_hours) answer the first response instead of creating again", max_length = 255, pattern = r"^[\x20-\x7E]*$")),
    responses(
        (status = 201, description = "Create a task (tasks:create)", body = crate::views::TaskView),
        (status = 422, description = "The Idempotency-Key was already used with a different body", body = super::openapi::ErrorBody),
    )
)]
pub async fn create_task(
    hub: web::Data<Hub>,
    caller: Caller,
    keyed: Keyed,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:create")?;
    let idempotent = Idempotent::of(&hub, &caller.0.label(), "POST /api/tasks", keyed.key);
    let answer = async {
        let body: TaskBody = parse_json(&keyed.body)?;
        let depends_on = parse_depends_on(body.depends_on.as_ref(), "depends_on")?;
        let mut dependencies = Vec::with_capacity(depends_on.len());
        for id in depends_on {
            let id = i32::try_from(id).map_err(|_| HubError::not_found(format!("no task {id}")))?;
            if !dependencies.contains(&id) {
                dependencies.push(id);
            }
        }
        check_visible(&hub, &caller.0, &dependencies).await?;
        let mut task = body.into_row(&caller.0, &hub, "api")?;
        let crossing = if dependencies.is_empty() {
            let key = idempotent.as_ref().map(Idempotent::relay_key);
            let by_master = caller.0.is_master();
            super::federation::relay_if_unserved(&hub, &mut task, by_master, None, key.as_deref())
                .await?
        } else {
            None
        };
        let message = SubmitTask {
            task,
            depends_on: dependencies,
            actor: caller.0.label(),
            delivery: None,
            crossings: crossing.into_iter().collect(),
            by_master: caller.0.is_master(),
            also: None,
        };
        submit(&hub, message, idempotent.as_ref()).await
    }
    .await;
    settle(&hub, idempotent.as_ref(), answer).await
}

/// Submits one task and answers 201 with it. With an idempotency key, the key and that
/// answer are recorded in the task's own transaction (see [`settle`] for a repeat).
pub async fn submit(
    hub: &Hub,
    mut message: SubmitTask,
    idempotent: Option<&Idempotent>,
) -> Result<HttpResponse, HubError> {
    let dependencies = message.depends_on.clone();
    if let Some(keyed) = idempotent {
        let (vault, deps) = (hub.core.vault.clone(), dependencies.clone());
        let record = keyed.recorder(hub.core.vault.clone(), StatusCode::CREATED);
        message.also = Some(Box::new(move |conn, row: &TaskRow| {
            record(conn, &created(row, &vault, deps))
        }));
    }
    let row = hub.dispatcher.send(message).await??;
    // Serialized straight from the view: no JSON tree built first and copied again.
    let view = TaskView::new(row, &hub.core.vault, dependencies, false);
    Ok(HttpResponse::Created().json(view))
}

/// A new task as its create answers it.
fn created(row: &TaskRow, vault: &Vault, dependencies: Vec<i32>) -> Value {
    serde_json::to_value(TaskView::new(row.clone(), vault, dependencies, false))
        .unwrap_or(Value::Null)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// queued, assigned, running, done, failed or cancelled.
    #[param(schema_with = super::openapi::task_status)]
    status: Option<String>,
    assigned_to: Option<String>,
    /// Only tasks that need this capability.
    capability: Option<String>,
    /// Page size (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
    compact: Option<bool>,
}

#[utoipa::path(
    get,
    path = "/api/tasks",
    tag = "tasks",
    params(TaskListQuery),
    responses((status = 200, description = "Tasks the caller may see (tasks:read)", body = Object))
)]
pub async fn list_tasks(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<TaskListQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    let query = query.0;
    if let Some(status) = &query.status {
        status.parse::<TaskStatus>()?;
    }
    let filter = TaskFilter {
        status: query.status,
        assigned_to: query.assigned_to,
        capability: query.capability,
        limit: page_limit(query.limit, 20, hub.core.settings.max_list_limit)?,
        offset: page_offset(query.offset)?,
    };
    let principal = caller.0.clone();
    let rows = crate::db::read(&hub.reads, move |conn| {
        Ok(queries::list_tasks(conn, &principal, &filter)?)
    })
    .await?;
    reseal_stale(&hub, &rows);
    let compact = query.compact.unwrap_or(false);
    let mut tasks: Vec<TaskView> = rows
        .into_iter()
        .map(|row| TaskView::new(row, &hub.core.vault, vec![], compact))
        .collect();
    if !compact {
        deliver(&hub, &caller.0, &mut tasks).await?;
    }
    Ok(HttpResponse::Ok().json(json!({ "count": tasks.len(), "tasks": tasks })))
}

#[utoipa::path(
    get,
    path = "/api/tasks/{id}",
    tag = "tasks",
    params(("id" = i64, Path, description = "The numeric id")),
    responses((status = 200, description = "One task (tasks:read)", body = crate::views::TaskView))
)]
pub async fn get_task(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    let (row, deps) = visible_task(&hub, &caller.0, task_id(&path)?).await?;
    let waiting = row.status == "running";
    let id = row.id;
    let mut view = [TaskView::new(row, &hub.core.vault, deps, false)];
    deliver(&hub, &caller.0, &mut view).await?;
    let [mut view] = view;
    if waiting {
        let pending = crate::db::read(&hub.reads, move |conn| {
            Ok(crate::db::approvals::pending_of(conn, id)?)
        })
        .await?;
        view.pending_approval = pending.map(|a| crate::views::approval_event(&a));
    }
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
    get,
    path = "/api/tasks/{id}/deps",
    tag = "tasks",
    params(("id" = i64, Path, description = "The numeric id")),
    responses((status = 200, description = "A task's dependencies (tasks:read)", body = Object))
)]
pub async fn get_task_deps(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    let id = task_id(&path)?;
    let (_, deps) = visible_task(&hub, &caller.0, id).await?;
    let rows = crate::db::read(&hub.reads, move |conn| {
        let mut rows = Vec::with_capacity(deps.len());
        for dep in deps {
            rows.extend(queries::task(conn, dep)?);
        }
        Ok(rows)
    })
    .await?;
    let dependencies: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "id": r.id, "title": r.title, "status": r.status, "assigned_to": r.assigned_to }))
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({ "task_id": id, "count": dependencies.len(), "dependencies": dependencies })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChunkQuery {
    /// Only chunks with a higher sequence number (default: from the first).
    #[param(minimum = -1)]
    after: Option<i32>,
    /// Page size (default 500, capped at 2000).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// The newest `limit` chunks instead of the oldest (still in order): a console's tail.
    latest: Option<bool>,
}

/// The output chunks streamed to a task so far, so a console opened mid-run starts from
/// the beginning and follows on with `task_stream` events.
#[utoipa::path(
    get,
    path = "/api/tasks/{id}/stream",
    tag = "tasks",
    params(("id" = i64, Path, description = "The numeric id"), ChunkQuery),
    responses((status = 200, description = "A task's streamed output chunks in order (tasks:read)", body = Object))
)]
pub async fn list_task_stream(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    query: Query<ChunkQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    let id = task_id(&path)?;
    visible_task(&hub, &caller.0, id).await?;
    let after = query.0.after.unwrap_or(-1);
    if after < -1 {
        return Err(HubError::bad_request("after must be -1 or more"));
    }
    let limit = page_limit(query.0.limit, 500, 2000)?;
    let latest = query.0.latest.unwrap_or(false);
    let rows = crate::db::read(&hub.reads, move |conn| {
        Ok(queries::stream_chunks(conn, id, after, limit, latest)?)
    })
    .await?;
    let chunks: Vec<Value> = rows
        .into_iter()
        .map(|(seq, agent_id, sealed, created_at)| {
            let chunk = crate::views::open_or_unreadable(&hub.core.vault, &sealed);
            json!({ "seq": seq, "agent_id": agent_id, "chunk": chunk, "created_at": created_at })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "task_id": id, "count": chunks.len(), "chunks": chunks })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateTaskBody {
    #[schema(schema_with = super::openapi::optional_task_status)]
    status: Option<String>,
    output: Option<String>,
    reason: Option<String>,
    #[serde(flatten)]
    usage: UsageBody,
    #[schema(minimum = 0, maximum = 1)]
    confidence: Option<f64>,
    model: Option<String>,
}

/// Finds the live actor of a visible task; a finished task is a 409, an unseen one a 404.
pub(super) async fn live_task(
    hub: &Hub,
    principal: &Principal,
    id: i32,
) -> Result<actix::Addr<TaskActor>, HubError> {
    let (row, _) = visible_task(hub, principal, id).await?;
    task_actor(hub, id).await?.ok_or_else(|| {
        HubError::conflict(format!(
            "task {id} is {}; it can no longer change",
            row.status
        ))
    })
}

/// The actor of a live task (woken if it sleeps in the queue); `None` once it finished.
pub(super) async fn task_actor(
    hub: &Hub,
    id: i32,
) -> Result<Option<actix::Addr<TaskActor>>, HubError> {
    match hub.directory.task(id) {
        Some(awake) => Ok(Some(awake)),
        None => hub.registry.send(Wake(id)).await?,
    }
}

/// The task's cost and tokens so far, as a report or a stream chunk carries them.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UsageBody {
    /// The task's total so far, at most max_reported_cost_usd (default 50).
    #[schema(minimum = 0, maximum = 50)]
    cost_usd: Option<f64>,
    /// Each at most max_reported_tokens (default 10,000,000).
    #[schema(minimum = 0, maximum = 10_000_000)]
    tokens_in: Option<i32>,
    #[schema(minimum = 0, maximum = 10_000_000)]
    tokens_out: Option<i32>,
}

/// A report's cost and tokens are the task's totals so far; each is bounded so that no
/// single report can spend the day's budget (or overflow a counter) with one number.
fn check_usage(settings: &Settings, body: &UsageBody) -> Result<Usage, HubError> {
    let max_cost = settings.max_reported_cost_usd;
    if body
        .cost_usd
        .is_some_and(|c| !c.is_finite() || !(0.0..=max_cost).contains(&c))
    {
        return Err(HubError::bad_request(format!(
            "cost_usd must be a number from 0 to {max_cost} (max_reported_cost_usd)"
        )));
    }
    let tokens_in = i64::from(body.tokens_in.unwrap_or(0));
    let tokens_out = i64::from(body.tokens_out.unwrap_or(0));
    if tokens_in < 0 || tokens_out < 0 {
        return Err(HubError::bad_request(
            "tokens_in and tokens_out must not be negative",
        ));
    }
    let max_tokens = settings.max_reported_tokens;
    if tokens_in > max_tokens || tokens_out > max_tokens {
        return Err(HubError::bad_request(format!(
            "tokens_in and tokens_out must each be at most {max_tokens} (max_reported_tokens)"
        )));
    }
    Ok(Usage {
        cost_usd: body.cost_usd,
        tokens_in: body.tokens_in,
        tokens_out: body.tokens_out,
    })
}

#[utoipa::path(
    put,
    path = "/api/tasks/{id}",
    tag = "tasks",
    params(("id" = i64, Path, description = "The numeric id")),
    request_body = UpdateTaskBody,
    responses((status = 200, description = "Report on or cancel a task (tasks:update)", body = crate::views::TaskView))
)]
pub async fn update_task(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    path: web::Path<String>,
    body: Json<UpdateTaskBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:update")?;
    let id = task_id(&path)?;
    let body = body.0;
    let status = body
        .status
        .as_deref()
        .map(str::parse::<TaskStatus>)
        .transpose()?;
    if body.confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
        return Err(HubError::bad_request("confidence must be between 0 and 1"));
    }
    let usage = check_usage(&hub.core.settings, &body.usage)?;
    let report = ReportBody {
        status,
        output: body
            .output
            .as_deref()
            .map(|o| (hub.core.vault.seal(o), fingerprint(o))),
        remember: body.output.as_deref().map(extract).unwrap_or_default(),
        reason: body.reason,
        cost_usd: usage.cost_usd,
        tokens_in: usage.tokens_in,
        tokens_out: usage.tokens_out,
        confidence: body.confidence,
        model: body
            .model
            .filter(|m| !m.trim_blank().is_empty() && m.len() <= 64),
    };
    let task = live_task(&hub, &caller.0, id).await?;
    let row = task
        .send(Report {
            fence: caller.0.fence(consumer.0),
            principal: caller.0,
            body: report,
        })
        .await??;
    task_reply(&hub, row).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChunkBody {
    #[serde(alias = "content", alias = "text", alias = "output")]
    #[schema(required = true, value_type = String, min_length = 1)]
    chunk: Option<String>,
    /// The usage so far, counted against the task's budget as a report's is.
    #[serde(flatten)]
    usage: UsageBody,
}

#[utoipa::path(
    post,
    path = "/api/tasks/{id}/stream",
    tag = "tasks",
    params(("id" = i64, Path, description = "The numeric id")),
    request_body = ChunkBody,
    responses((status = 201, description = "Append a live output chunk (tasks:execute, holder)", body = Object))
)]
pub async fn stream_task(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    path: web::Path<String>,
    body: Json<ChunkBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:execute")?;
    let id = task_id(&path)?;
    let body = body.0;
    let chunk = body
        .chunk
        .filter(|c| !c.is_empty())
        .ok_or_else(|| HubError::bad_request("chunk is required"))?;
    let usage = check_usage(&hub.core.settings, &body.usage)?;
    let task = live_task(&hub, &caller.0, id).await?;
    let seq = task
        .send(AppendChunk {
            fence: caller.0.fence(consumer.0),
            principal: caller.0,
            chunk,
            usage,
        })
        .await??;
    Ok(HttpResponse::Created().json(json!({ "ok": true, "task_id": id, "seq": seq })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct HandoffBody {
    #[schema(required = true, value_type = String, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    to: Option<String>,
    #[schema(value_type = Option<String>)]
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/tasks/{id}/handoff",
    tag = "tasks",
    params(("id" = i64, Path, description = "The numeric id")),
    request_body = HandoffBody,
    responses((status = 200, description = "Hand a task to another agent (tasks:update, holder)", body = crate::views::TaskView))
)]
pub async fn handoff_task(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    path: web::Path<String>,
    body: Json<HandoffBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:update")?;
    let id = task_id(&path)?;
    let to = body
        .0
        .to
        .filter(|t| valid_agent_id(t))
        .ok_or_else(|| HubError::bad_request("to must name an agent"))?;
    if hub.directory.agent(&to).is_none() {
        return Err(HubError::not_found(format!("no agent {to:?}")));
    }
    let task = live_task(&hub, &caller.0, id).await?;
    let row = task
        .send(Handoff {
            fence: caller.0.fence(consumer.0),
            principal: caller.0,
            to,
            reason: body.0.reason,
        })
        .await??;
    task_reply(&hub, row).await
}
