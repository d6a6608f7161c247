//! The runtime API of seed 002, for an agent holding its own credential: its inbox pulled
//! item by item (`/api/v1/runtime/inbox/next`, optionally long-polling) and acknowledged,
//! under a consumer lease that fences every write the agent makes; and its own
//! descriptive fields (`/api/v1/runtime/me`).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::agents::{agent_view, capability_list, named_agent};
use super::auth::Caller;
use super::extract::{optional_json, text, ConsumerId, Query};
use crate::db::inbox::{self, InboxItemRow, InboxKind};
use crate::db::models::MessageRow;
use crate::db::onboarding::{self as store, AgentCredentialRow, Description};
use crate::db::{consumers, inbox as inbox_db};
use crate::domain::access::Principal;
use crate::domain::onboarding::ConsumerFence;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::message_view;

/// The agent whose own credential the caller holds (403 for anyone else: people and the
/// master have no inbox to pull).
fn own_agent(principal: &Principal) -> Result<String, HubError> {
    principal.own_agent().map(str::to_string).ok_or_else(|| {
        HubError::forbidden("the runtime API needs an agent's own credential (mrm_rt_…)")
    })
}

// ---- the inbox -------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct PullOptions {
    /// Seconds to wait for an item when the inbox is empty (0: answer at once; capped by
    /// the hub's inbox_wait_max_seconds).
    #[param(minimum = 0)]
    #[schema(minimum = 0)]
    wait: Option<u64>,
}

/// The type an item has on the wire.
fn item_type(kind: &str) -> &'static str {
    match kind {
        k if k == InboxKind::Task.as_str() => "task_assigned",
        k if k == InboxKind::Wake.as_str() => "wake",
        k if k == InboxKind::Approval.as_str() => "approval_decided",
        k if k == InboxKind::Cancel.as_str() => "task_cancelled",
        _ => "message_received",
    }
}

/// An item as a trigger: what happened and where to read the authoritative state.
fn item_view(hub: &Hub, item: &InboxItemRow, message: Option<&MessageRow>) -> Value {
    let detail = match (item.task_id, item.kind.as_str()) {
        (Some(task), "approval") => Some(format!("/api/approvals?task_id={task}")),
        (Some(task), _) => Some(format!("/api/tasks/{task}")),
        _ => None,
    };
    json!({
        "id": item.id,
        "type": item_type(&item.kind),
        "taskId": item.task_id,
        "messageId": item.message_id,
        "message": message.map(|m| message_view(m, &hub.core.vault)),
        "detailPath": detail,
        "createdAt": item.created_at,
        "deliveredAt": item.delivered_at,
        "deliveries": item.deliveries,
    })
}

/// One pull: renews (or opens) the consumer lease and hands over the oldest unacknowledged
/// item, in one transaction.
async fn pull_once(
    hub: &Hub,
    agent_id: &str,
    consumer: Option<String>,
    lives: chrono::Duration,
) -> Result<(String, Option<(InboxItemRow, Option<MessageRow>)>), HubError> {
    let agent_id = agent_id.to_string();
    hub.core
        .db
        .write(move |conn| {
            let consumer = consumers::pull_lease(conn, &agent_id, consumer.as_deref(), lives)?;
            Ok((consumer, inbox_db::next_item(conn, &agent_id)?))
        })
        .await
}

async fn pull(
    hub: &Hub,
    caller: Caller,
    consumer: ConsumerId,
    options: PullOptions,
) -> Result<HttpResponse, HubError> {
    let agent_id = own_agent(&caller.0)?;
    let settings = &hub.core.settings;
    let wait = Duration::from_secs(
        options
            .wait
            .unwrap_or(0)
            .min(settings.inbox_wait_max_seconds),
    );
    let lives =
        chrono::Duration::seconds((wait.as_secs() + settings.consumer_lease_seconds) as i64);
    let deadline = tokio::time::Instant::now() + wait;
    let listening = hub.core.bell.listen(&agent_id);
    let mut consumer = consumer.0;
    loop {
        // Armed before the read: an item committed after it still wakes this pull.
        let rung = listening.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let (lease, item) = pull_once(hub, &agent_id, consumer.take(), lives).await?;
        let now = tokio::time::Instant::now();
        if item.is_some() || now >= deadline {
            let item = item.map(|(item, message)| item_view(hub, &item, message.as_ref()));
            return Ok(HttpResponse::Ok().json(json!({ "consumerId": lease, "item": item })));
        }
        consumer = Some(lease);
        let _ = tokio::time::timeout_at(deadline, rung).await;
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/runtime/inbox/next",
    tag = "runtime",
    params(PullOptions, ("X-Consumer-Id" = Option<String>, Header, description = "The consumer lease; without it a new lease opens, fencing the old one")),
    responses(
        (status = 200, description = "The oldest unacknowledged item (or item: null) and the consumerId every write must carry (the agent's own credential)", body = Object),
        (status = 409, description = "stale consumer: another pull took the lease", body = super::openapi::ErrorBody),
    )
)]
pub async fn next_item(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    query: Query<PullOptions>,
) -> Result<HttpResponse, HubError> {
    pull(&hub, caller, consumer, query.0).await
}

#[utoipa::path(
    post,
    path = "/api/v1/runtime/inbox/next",
    tag = "runtime",
    params(("X-Consumer-Id" = Option<String>, Header, description = "The consumer lease; without it a new lease opens, fencing the old one")),
    request_body(content = Option<PullOptions>, description = "Optional: {\"wait\": seconds}"),
    responses(
        (status = 200, description = "The oldest unacknowledged item (or item: null) and the consumerId every write must carry (the agent's own credential)", body = Object),
        (status = 409, description = "stale consumer: another pull took the lease", body = super::openapi::ErrorBody),
    )
)]
pub async fn next_item_post(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    pull(&hub, caller, consumer, optional_json(&body)?).await
}

#[utoipa::path(
    post,
    path = "/api/v1/runtime/inbox/{item_id}/ack",
    tag = "runtime",
    params(
        ("item_id" = i32, Path, description = "The item's id"),
        ("X-Consumer-Id" = Option<String>, Header, description = "The consumer lease the pull answered"),
    ),
    responses(
        (status = 200, description = "Acknowledged (again, harmlessly, if it already was)", body = Object),
        (status = 404, description = "No such item in this agent's inbox", body = super::openapi::ErrorBody),
        (status = 409, description = "stale consumer", body = super::openapi::ErrorBody),
    )
)]
pub async fn ack_item(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    let agent_id = own_agent(&caller.0)?;
    let path = path.into_inner();
    let missing = || HubError::not_found(format!("no inbox item {path:?} for this agent"));
    let item_id: i32 = path.parse().map_err(|_| missing())?;
    let fence = ConsumerFence {
        agent_id: agent_id.clone(),
        consumer_id: consumer.0,
    };
    let item = hub
        .core
        .db
        .write(move |conn| {
            consumers::check(conn, Some(&fence))?;
            Ok(inbox::acknowledge_item(conn, &agent_id, item_id)?)
        })
        .await?
        .ok_or_else(missing)?;
    Ok(HttpResponse::Ok()
        .json(json!({ "itemId": item.id, "acked": true, "ackedAt": item.acked_at })))
}

// ---- self-description ------------------------------------------------------------------

/// Fields seed 002 leaves to the owner (`PATCH /api/v1/agents/{id}`).
const OWNER_FIELDS: &[&str] = &[
    "status",
    "visibility",
    "category",
    "pricing",
    "role",
    "permissions",
    "capabilities",
];

fn me_view(row: &AgentCredentialRow, state: &str) -> Value {
    json!({
        "agentId": row.agent_id,
        "displayName": row.display_name,
        "description": row.description,
        "skills": serde_json::from_str::<Value>(&row.skills).unwrap_or(Value::Null),
        "category": row.category,
        "runtimeType": row.runtime_type,
        "status": state,
        "credentialVersion": row.credential_version,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    })
}

fn not_onboarded(agent_id: &str) -> HubError {
    HubError::not_found(format!(
        "agent {agent_id} did not join by onboarding (seed 002), so it has no runtime profile"
    ))
}

/// The agent's state as its actor knows it.
async fn state_of(hub: &Hub, agent_id: &str) -> Result<&'static str, HubError> {
    let (_, addr) = named_agent(hub, agent_id)?;
    Ok(agent_view(hub, addr, agent_id).await?.state)
}

#[utoipa::path(
    get,
    path = "/api/v1/runtime/me",
    tag = "runtime",
    responses(
        (status = 200, description = "The calling agent's runtime profile (its own credential)", body = Object),
        (status = 404, description = "The agent did not join by onboarding", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_me(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    let agent_id = own_agent(&caller.0)?;
    let id = agent_id.clone();
    let row = crate::db::read(&hub.reads, move |conn| {
        Ok(store::credentials_of(conn, &id)?)
    })
    .await?
    .ok_or_else(|| not_onboarded(&agent_id))?;
    Ok(HttpResponse::Ok().json(me_view(&row, state_of(&hub, &agent_id).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
/// The agent's own descriptive fields; owner-only fields are a 403 naming the field.
pub struct MeBody {
    #[schema(value_type = Option<String>, max_length = 2000)]
    description: Option<String>,
    #[schema(value_type = Option<String>, max_length = 128)]
    display_name: Option<String>,
    #[schema(schema_with = super::openapi::capability_list)]
    skills: Option<Vec<String>>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/runtime/me",
    tag = "runtime",
    params(("X-Consumer-Id" = Option<String>, Header, description = "The consumer lease, when the agent pulls under one")),
    request_body = MeBody,
    responses(
        (status = 200, description = "Change the calling agent's description, displayName or skills (ACTIVE, PAUSED or SUSPENDED)", body = Object),
        (status = 403, description = "An owner-only field (named), or a banned agent", body = super::openapi::ErrorBody),
        (status = 404, description = "The agent did not join by onboarding", body = super::openapi::ErrorBody),
        (status = 409, description = "stale consumer", body = super::openapi::ErrorBody),
    )
)]
pub async fn patch_me(
    hub: web::Data<Hub>,
    caller: Caller,
    consumer: ConsumerId,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    let agent_id = own_agent(&caller.0)?;
    let fields: Map<String, Value> = super::extract::parse_json(&body)?;
    if let Some(owned) = fields.keys().find(|k| OWNER_FIELDS.contains(&k.as_str())) {
        return Err(HubError::forbidden(format!(
            "{owned} is an owner-only field: the owner sets it with PATCH /api/v1/agents/{{id}}"
        )));
    }
    let body: MeBody = serde_json::from_value(Value::Object(fields))
        .map_err(|e| HubError::bad_request(format!("invalid body: {e}")))?;
    let change = Description {
        description: text("description", body.description, 2000, true)?.map(Some),
        // A blank display name clears it.
        display_name: text("displayName", body.display_name, 128, true)?
            .map(|n| Some(n.trim().to_string()).filter(|n| !n.is_empty())),
        skills: body
            .skills
            .map(|s| capability_list("skills", s))
            .transpose()?
            .map(|s| json!(s).to_string()),
        ..Description::default()
    };
    let fence = caller.0.fence(consumer.0);
    let id = agent_id.clone();
    let row = hub
        .core
        .db
        .write(move |conn| {
            consumers::check(conn, fence.as_ref())?;
            store::describe(conn, &id, change)?.ok_or_else(|| not_onboarded(&id))
        })
        .await?;
    Ok(HttpResponse::Ok().json(me_view(&row, state_of(&hub, &agent_id).await?)))
}
