//! What is addressed to an agent (seed 004): its pending-work poll (`GET
//! /api/agents/{id}/heartbeat`: tasks it holds, unread messages), direct messages between
//! agents, and their history. Messages are sealed at rest and land in the recipient's
//! durable inbox in the transaction that stores them.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::agents::{agent_view, limit_changes, named_agent, visible_agent};
use super::auth::Caller;
use super::extract::{ConsumerId, Json, Query};
use super::{page_limit, page_offset};
use crate::db::agents as agents_db;
use crate::db::consumers;
use crate::db::inbox::{self, NewMessage};
use crate::db::models::NewAuditRow;
use crate::domain::event::{Audience, HubEvent};
use crate::domain::{now_iso, Blank};
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::message_view;

const MAX_CONTENT_CHARS: usize = 8000;
/// Most unread messages one poll hands over.
const MESSAGES_PER_POLL: i64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PendingQuery {
    /// Pending tasks per page (newest first; default 50, at most 200).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Pending tasks to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/agents/{agent_id}/heartbeat",
    tag = "agents",
    params(("agent_id" = String, Path, description = "The agent's numeric id or its agent_id"), PendingQuery),
    responses((status = 200, description = "The agent's pending work: tasks it holds (newest first) and unread messages (agents:read; an agent's own token, or an overseer). Polled with the agent's own token, the messages shown count as read.", body = Object))
)]
pub async fn pending_work(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    path: web::Path<String>,
    query: Query<PendingQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:read")?;
    let path = path.into_inner();
    let (agent_id, addr) = visible_agent(&hub, &caller.0, &path)?;
    let limit = page_limit(query.0.limit, 50, 200)?;
    let offset = page_offset(query.0.offset)?;
    // The agent reading its own inbox receives it; an overseer only looks.
    let receives = caller.0.confined_to() == Some(agent_id.as_str());
    let owner = agent_id.clone();
    // One read for the pending tasks, the unread messages and the task counts.
    let (tasks, messages, mut stats) = crate::db::read(&hub.reads, move |conn| {
        let tasks = agents_db::pending_tasks(conn, &owner, limit, offset)?;
        let messages = inbox::unread_messages(conn, &owner, MESSAGES_PER_POLL)?;
        let stats = agents_db::task_stats(conn, std::slice::from_ref(&owner))?;
        Ok((tasks, messages, stats))
    })
    .await?;
    if receives && !messages.is_empty() {
        let items: Vec<i32> = messages.iter().map(|(item, _)| *item).collect();
        let owner = agent_id.clone();
        // Receiving acknowledges: a write like any other behind the agent's consumer lease.
        let fence = caller.0.fence(consumer.0);
        hub.core
            .db
            .write(move |conn| {
                consumers::check(conn, fence.as_ref())?;
                Ok(inbox::acknowledge(conn, &owner, &items)?)
            })
            .await?;
    }
    let view = agent_view(&hub, addr, &path).await?;
    let pending: Vec<Value> = tasks
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "title": t.title,
                "status": t.status,
                "priority": t.priority,
                "urgency": t.urgency,
                "required_capability": t.required_capability,
                "deadline": t.deadline,
                "created_at": t.created_at,
                "assigned_at": t.assigned_at,
            })
        })
        .collect();
    let messages: Vec<Value> = messages
        .iter()
        .map(|(_, m)| message_view(m, &hub.core.vault))
        .collect();
    let stats = stats.remove(&agent_id).unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({
        "agent": agent_id,
        "id": view.id,
        "status": view.status,
        "pending_tasks": pending,
        "pending_total": stats.assigned + stats.in_progress,
        "messages": messages,
        "checked_at": now_iso(),
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AgentMessageBody {
    /// The sender's name; an agent's own token may send only as itself.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 64, pattern = r"\S")]
    from: Option<String>,
    /// The recipient agent (its agent_id or numeric id).
    #[schema(required = true, value_type = String, min_length = 1)]
    to: Option<String>,
    #[schema(required = true, value_type = String, min_length = 1, max_length = 8000, pattern = r"\S")]
    content: Option<String>,
    /// notification, request, … (free text)
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64, pattern = r"\S")]
    r#type: Option<String>,
}

fn required(field: &str, value: Option<String>) -> Result<String, HubError> {
    value
        .filter(|v| !v.trim_blank().is_empty())
        .ok_or_else(|| HubError::bad_request(format!("{field} is required")))
}

#[utoipa::path(
    post,
    path = "/api/agents/message",
    tag = "agents",
    request_body = AgentMessageBody,
    responses((status = 201, description = "Send a direct message into an agent's inbox (messages:write)", body = Object))
)]
pub async fn send_agent_message(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<AgentMessageBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("messages:write")?;
    let body = body.0;
    let from = required("from", body.from)?.trim_blank().to_string();
    let to = required("to", body.to)?;
    let content = required("content", body.content)?;
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(HubError::bad_request(format!(
            "content exceeds {MAX_CONTENT_CHARS} characters"
        )));
    }
    let kind = body.r#type.unwrap_or_else(|| "message".into());
    if kind.trim_blank().is_empty() || kind.chars().count() > 64 {
        return Err(HubError::bad_request("type must be 1 to 64 characters"));
    }
    if from.chars().count() > 64 {
        return Err(HubError::bad_request("from must be at most 64 characters"));
    }
    let sender_type = caller.0.sender_type(&from)?;
    let (recipient, _) = named_agent(&hub, &to)?;
    limit_changes(&hub, &caller.0)?;
    let message = NewMessage {
        sender: from,
        sender_type: sender_type.into(),
        recipient: Some(recipient.clone()),
        channel: "direct".into(),
        content,
        message_type: Some(kind),
    };
    let vault = hub.core.vault.clone();
    let actor = caller.0.label();
    let row = hub
        .core
        .db
        .write(move |conn| {
            let row = message.insert(conn, &vault)?;
            let detail =
                json!({ "from": row.sender, "to": row.recipient, "type": row.message_type });
            NewAuditRow::new(
                &actor,
                "message.direct",
                format!("message:{}", row.id),
                Some(detail),
            )
            .append(conn)?;
            Ok(row)
        })
        .await?;
    let view = message_view(&row, &hub.core.vault);
    let audience = Audience::Inbox {
        agent_id: recipient,
    };
    hub.core
        .publish(HubEvent::new("agent_message", view.clone(), audience));
    Ok(HttpResponse::Created().json(json!({ "success": true, "id": row.id, "message": view })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommsQuery {
    /// Only messages this agent sent or received.
    agent: Option<String>,
    /// Most messages (newest first; default 50, at most 200).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/agents/comms",
    tag = "agents",
    params(CommsQuery),
    responses((status = 200, description = "Direct messages between agents, newest first (messages:read; an agent's own token sees its own)", body = Object))
)]
pub async fn list_comms(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<CommsQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("messages:read")?;
    let query = query.0;
    let limit = page_limit(query.limit, 50, 200)?;
    let agent = match (query.agent, caller.0.is_worker()) {
        // A worker sees its own conversations; naming another agent finds nothing of it.
        (Some(agent), true) if caller.0.agent_id() != Some(agent.as_str()) => {
            return Err(HubError::not_found(format!("no agent {agent:?}")));
        }
        (_, true) => caller.0.agent_id().map(str::to_string),
        (agent, false) => agent,
    };
    let rows = crate::db::read(&hub.reads, move |conn| {
        Ok(inbox::direct_messages(conn, agent, limit)?)
    })
    .await?;
    let messages: Vec<Value> = rows
        .iter()
        .map(|m| message_view(m, &hub.core.vault))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "count": messages.len(), "messages": messages })))
}
