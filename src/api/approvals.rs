//! Tool-call approvals (seed 001): a task's holder asks (`POST /api/tasks/{id}/approvals`),
//! people with `approvals:decide` allow or deny (`POST /api/approvals/{id}`), and the
//! holder learns the decision from the stream, its inbox, or by long-polling
//! `GET /api/approvals/{id}?wait=N`. An approval is seen by whoever may see its task.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{text, ConsumerId, Json, Query};
use super::tasks::{live_task, task_id, visible_task};
use super::{page_limit, page_offset};
use crate::actors::task::{DecideApproval, RequestApproval};
use crate::db::approvals::{self, ApprovalRow};
use crate::domain::access::Principal;
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::approval_view;

/// The longest `?wait=` a reader may ask for.
const MAX_WAIT_SECONDS: u64 = 60;

#[derive(Debug, Deserialize, ToSchema)]
pub struct ApprovalRequestBody {
    /// The tool about to run (`bash`, `deploy`, …).
    #[schema(required = true, value_type = String, min_length = 1, max_length = 128, pattern = r"\S")]
    tool: Option<String>,
    /// What it would run with (sealed at rest).
    #[schema(value_type = Option<String>, max_length = 8000)]
    input: Option<String>,
    #[schema(value_type = Option<String>, max_length = 1000)]
    reason: Option<String>,
    /// Seconds to wait for a decision before it is denied (at most the hub's
    /// `approval_timeout_seconds`, its default).
    #[schema(value_type = Option<u64>, minimum = 1)]
    timeout_seconds: Option<u64>,
}

#[utoipa::path(
    post,
    path = "/api/tasks/{id}/approvals",
    tag = "approvals",
    params(("id" = i64, Path, description = "The numeric id")),
    request_body = ApprovalRequestBody,
    responses(
        (status = 201, description = "Ask for approval of a risky step (tasks:execute, the task's holder; the task must be running)", body = Object),
        (status = 409, description = "Not the holder, not running, or an approval is already pending", body = Object),
    )
)]
pub async fn request_approval(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    path: web::Path<String>,
    body: Json<ApprovalRequestBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:execute")?;
    let id = task_id(&path)?;
    let body = body.0;
    let tool = body
        .tool
        .map(|t| t.trim_blank().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| HubError::bad_request("tool is required"))?;
    let tool = text("tool", Some(tool), 128, true)?.unwrap_or_default();
    let input = text("input", body.input, 8000, true)?;
    let reason = text("reason", body.reason, 1000, true)?;
    let most = hub.core.settings.approval_timeout_seconds;
    let timeout = match body.timeout_seconds {
        Some(0) => return Err(HubError::bad_request("timeout_seconds must be at least 1")),
        Some(asked) => asked.min(most),
        None => most,
    };
    let task = live_task(&hub, &caller.0, id).await?;
    let row = task
        .send(RequestApproval {
            principal: caller.0.clone(),
            tool,
            input: input.as_deref().map(|i| hub.core.vault.seal(i)),
            reason,
            timeout: Duration::from_secs(timeout),
            fence: caller.0.fence(consumer.0),
        })
        .await??;
    Ok(HttpResponse::Created().json(approval_view(&row, &hub.core.vault)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApprovalListQuery {
    /// pending, allowed or denied.
    #[param(pattern = "^(pending|allowed|denied)$")]
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
    path = "/api/approvals",
    tag = "approvals",
    params(ApprovalListQuery),
    responses((status = 200, description = "Approvals of the tasks the caller may see, newest first (tasks:read)", body = Object))
)]
pub async fn list_approvals(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<ApprovalListQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    let query = query.0;
    if let Some(status) = &query.status {
        if !["pending", "allowed", "denied"].contains(&status.as_str()) {
            return Err(HubError::bad_request(
                "status must be pending, allowed or denied",
            ));
        }
    }
    let limit = page_limit(query.limit, 50, hub.core.settings.max_list_limit)?;
    let offset = page_offset(query.offset)?;
    let principal = caller.0.clone();
    let rows = crate::db::read(&hub.reads, move |conn| {
        Ok(approvals::list(
            conn,
            &principal,
            query.status,
            limit,
            offset,
        )?)
    })
    .await?;
    let list: Vec<_> = rows
        .iter()
        .map(|row| approval_view(row, &hub.core.vault))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "count": list.len(), "approvals": list })))
}

/// The approval, if the caller may see its task (404 otherwise, as for the task).
async fn visible_approval(
    hub: &Hub,
    principal: &Principal,
    raw: &str,
) -> Result<ApprovalRow, HubError> {
    let id: i32 = raw
        .parse()
        .map_err(|_| HubError::not_found(format!("no approval {raw:?}")))?;
    let row = crate::db::read(&hub.reads, move |conn| Ok(approvals::get(conn, id)?))
        .await?
        .ok_or_else(|| HubError::not_found(format!("no approval {id}")))?;
    visible_task(hub, principal, row.task_id)
        .await
        .map_err(|_| HubError::not_found(format!("no approval {id}")))?;
    Ok(row)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the decision while the approval is pending (at most 60; more is
    /// taken as 60).
    #[param(minimum = 0)]
    wait: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/approvals/{id}",
    tag = "approvals",
    params(("id" = i64, Path, description = "The numeric id"), WaitQuery),
    responses((status = 200, description = "One approval (tasks:read, if the caller may see its task); with ?wait=N, answered once it is decided or N seconds have passed", body = Object))
)]
pub async fn get_approval(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    query: Query<WaitQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("tasks:read")?;
    // Listen before reading, so a decision made in between is not missed.
    let mut decided = hub.core.decisions.subscribe();
    let mut row = visible_approval(&hub, &caller.0, &path).await?;
    let wait = Duration::from_secs(query.0.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    if row.status == "pending" && !wait.is_zero() {
        let id = row.id;
        let until_decided = async {
            loop {
                match decided.recv().await {
                    Ok(decided) if decided == id => return,
                    Ok(_) => {}
                    // Fell behind the broadcast: read again to be sure.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        };
        let _ = actix_web::rt::time::timeout(wait, until_decided).await;
        row = visible_approval(&hub, &caller.0, &path).await?;
    }
    Ok(HttpResponse::Ok().json(approval_view(&row, &hub.core.vault)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DecisionBody {
    #[schema(required = true, value_type = String, pattern = "^(allow|deny)$")]
    decision: Option<String>,
    #[schema(value_type = Option<String>, max_length = 1000)]
    note: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/approvals/{id}",
    tag = "approvals",
    params(("id" = i64, Path, description = "The numeric id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "Allow or deny a pending approval (approvals:decide, if the caller may see its task)", body = Object),
        (status = 409, description = "Decided already, or its task no longer waits", body = Object),
    )
)]
pub async fn decide_approval(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<DecisionBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("approvals:decide")?;
    let body = body.0;
    let allowed = match body.decision.as_deref() {
        Some("allow") => true,
        Some("deny") => false,
        _ => return Err(HubError::bad_request("decision must be allow or deny")),
    };
    let note = text("note", body.note, 1000, true)?;
    let row = visible_approval(&hub, &caller.0, &path).await?;
    // Asking is the holder's part; deciding is someone else's.
    if !caller.0.is_master() && caller.0.agent_id() == Some(row.agent_id.as_str()) {
        return Err(HubError::forbidden(
            "an agent cannot decide its own approval request",
        ));
    }
    if row.status != "pending" {
        return Err(HubError::conflict(format!(
            "approval {} was {} already",
            row.id, row.status
        )));
    }
    let task = super::tasks::task_actor(&hub, row.task_id)
        .await?
        .ok_or_else(|| {
            HubError::conflict(format!(
                "task {} no longer waits for approval {}",
                row.task_id, row.id
            ))
        })?;
    let decided = task
        .send(DecideApproval {
            id: row.id,
            allowed,
            by: caller.0.label(),
            note,
        })
        .await??;
    Ok(HttpResponse::Ok().json(approval_view(&decided, &hub.core.vault)))
}
