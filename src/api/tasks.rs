//! Tasks: create, list, read, report, dependencies and the live output stream
//! (seed 000 section 03).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Json, Query};
use super::{page_limit, page_offset};
use crate::actors::dispatcher::SubmitTask;
use crate::actors::task::{AppendChunk, Report, ReportBody};
use crate::auth::Caller;
use crate::db::models::{NewTaskRow, TaskRow};
use crate::db::queries::{self, TaskFilter};
use crate::domain::access::Principal;
use crate::domain::agent::valid_agent_id;
use crate::domain::task::{TaskStatus, Urgency, MODELS};
use crate::domain::{iso, now_iso};
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::TaskView;

const MAX_TITLE_CHARS: usize = 500;

#[derive(Debug, Deserialize)]
pub struct CreateTaskBody {
    title: Option<String>,
    prompt: Option<String>,
    required_capability: Option<String>,
    assign_to: Option<String>,
    priority: Option<i32>,
    urgency: Option<String>,
    deadline: Option<String>,
    depends_on: Option<Value>,
    model: Option<String>,
    created_by: Option<String>,
    timeout_seconds: Option<i32>,
}

impl CreateTaskBody {
    /// Validates the body into a row to insert, the prompt sealed.
    fn into_row(self, principal: &Principal, hub: &Hub) -> Result<NewTaskRow, HubError> {
        let title = self
            .title
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let title = title.ok_or_else(|| HubError::bad_request("title is required"))?;
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(HubError::bad_request(format!(
                "title exceeds {MAX_TITLE_CHARS} characters"
            )));
        }
        let prompt = self
            .prompt
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| HubError::bad_request("prompt is required"))?;
        let max_prompt = hub.core.settings.max_prompt_bytes;
        if prompt.len() > max_prompt {
            return Err(HubError::bad_request(format!(
                "prompt exceeds {max_prompt} bytes"
            )));
        }
        let capability = self
            .required_capability
            .unwrap_or_else(|| "research".into());
        if capability.trim().is_empty() || capability.len() > 64 {
            return Err(HubError::bad_request(
                "required_capability must be 1 to 64 characters",
            ));
        }
        if let Some(agent) = &self.assign_to {
            if !valid_agent_id(agent) {
                return Err(HubError::bad_request(format!(
                    "assign_to {agent:?} is not a valid agent id"
                )));
            }
        }
        let urgency: Urgency = self.urgency.as_deref().unwrap_or("normal").parse()?;
        let deadline = self.deadline.as_deref().map(parse_deadline).transpose()?;
        let model = self.model.unwrap_or_else(|| "auto".into());
        if !MODELS.contains(&model.as_str()) {
            return Err(HubError::bad_request(format!(
                "unknown model {model:?} (expected auto, haiku, sonnet or opus)"
            )));
        }
        if self
            .depends_on
            .as_ref()
            .is_some_and(|d| !d.is_null() && d.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(HubError::Unprocessable(
                "depends_on is accepted through POST /api/pipelines in this version".into(),
            ));
        }
        if self.timeout_seconds.is_some_and(|t| t <= 0) {
            return Err(HubError::bad_request("timeout_seconds must be positive"));
        }
        // Only the master token may name another creator; a token creates as itself.
        let created_by = match principal {
            Principal::Master => self
                .created_by
                .filter(|c| !c.trim().is_empty())
                .unwrap_or_else(|| "master".into()),
            other => other.label(),
        };
        let now = now_iso();
        Ok(NewTaskRow {
            title,
            prompt: hub.core.vault.seal(&prompt),
            required_capability: capability,
            assign_to: self.assign_to,
            assigned_to: None,
            status: TaskStatus::Queued.as_str().into(),
            priority: self.priority.unwrap_or(0),
            urgency: urgency.as_str().into(),
            deadline,
            model,
            created_by,
            pipeline_id: None,
            pipeline_index: None,
            template_id: None,
            source: "api".into(),
            hop_count: 0,
            timeout_seconds: self.timeout_seconds,
            attempts: 0,
            created_at: now.clone(),
            updated_at: now,
            assigned_at: None,
        })
    }
}

fn parse_deadline(raw: &str) -> Result<String, HubError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|at| iso(at.with_timezone(&chrono::Utc)))
        .map_err(|_| {
            HubError::bad_request(format!(
                "deadline {raw:?} is not an ISO 8601 timestamp like 2026-04-20T18:00:00Z"
            ))
        })
}

/// A task id from the path; anything that is not one names no task.
fn task_id(raw: &str) -> Result<i32, HubError> {
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
async fn visible_task(
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

pub async fn create_task(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<CreateTaskBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:create")?;
    let task = body.0.into_row(&caller.0, &hub)?;
    let row = hub
        .dispatcher
        .send(SubmitTask {
            task,
            actor: caller.0.label(),
        })
        .await??;
    Ok(HttpResponse::Created().json(TaskView::new(row, &hub.core.vault, vec![], false)))
}

#[derive(Debug, Deserialize)]
pub struct TaskListQuery {
    status: Option<String>,
    assigned_to: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    compact: Option<bool>,
}

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
    let tasks: Vec<TaskView> = rows
        .into_iter()
        .map(|row| TaskView::new(row, &hub.core.vault, vec![], compact))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "count": tasks.len(), "tasks": tasks })))
}

pub async fn get_task(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    let (row, deps) = visible_task(&hub, &caller.0, task_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(TaskView::new(row, &hub.core.vault, deps, false)))
}

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

#[derive(Debug, Deserialize)]
pub struct UpdateTaskBody {
    status: Option<String>,
    output: Option<String>,
    reason: Option<String>,
    cost_usd: Option<f64>,
    tokens_in: Option<i32>,
    tokens_out: Option<i32>,
    confidence: Option<f64>,
}

/// Finds the live actor of a visible task; a finished task is a 409, an unseen one a 404.
async fn live_task(
    hub: &Hub,
    principal: &Principal,
    id: i32,
) -> Result<actix::Addr<crate::actors::task::TaskActor>, HubError> {
    let (row, _) = visible_task(hub, principal, id).await?;
    hub.directory.task(id).ok_or_else(|| {
        HubError::conflict(format!(
            "task {id} is {}; it can no longer change",
            row.status
        ))
    })
}

pub async fn update_task(
    hub: web::Data<Hub>,
    caller: Caller,
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
    if body.cost_usd.is_some_and(|c| !c.is_finite() || c < 0.0) {
        return Err(HubError::bad_request(
            "cost_usd must be a non-negative number",
        ));
    }
    let report = ReportBody {
        status,
        output: body.output.as_deref().map(|o| hub.core.vault.seal(o)),
        reason: body.reason,
        cost_usd: body.cost_usd,
        tokens_in: body.tokens_in,
        tokens_out: body.tokens_out,
        confidence: body.confidence,
    };
    let task = live_task(&hub, &caller.0, id).await?;
    let row = task
        .send(Report {
            principal: caller.0.clone(),
            body: report,
        })
        .await??;
    let deps =
        crate::db::read(&hub.reads, move |conn| Ok(queries::dependencies(conn, id)?)).await?;
    Ok(HttpResponse::Ok().json(TaskView::new(row, &hub.core.vault, deps, false)))
}

#[derive(Debug, Deserialize)]
pub struct ChunkBody {
    #[serde(alias = "content", alias = "text", alias = "output")]
    chunk: Option<String>,
}

pub async fn stream_task(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<ChunkBody>,
) -> Result<HttpResponse, HubError> {
    let id = task_id(&path)?;
    let chunk = body
        .0
        .chunk
        .filter(|c| !c.is_empty())
        .ok_or_else(|| HubError::bad_request("chunk is required"))?;
    let task = live_task(&hub, &caller.0, id).await?;
    let seq = task
        .send(AppendChunk {
            principal: caller.0.clone(),
            chunk,
        })
        .await??;
    Ok(HttpResponse::Created().json(json!({ "ok": true, "task_id": id, "seq": seq })))
}
