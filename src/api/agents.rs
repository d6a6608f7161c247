//! Agents: register, heartbeat, list, delete (seed 000 section 02; list shape and fields of
//! 004), and how a path names an agent (its numeric id or its agent_id).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::extract::{Json, Query};
use super::{page_limit, page_offset};
use actix::Addr;

use crate::actors::agent::{AgentActor, AgentSnapshot, Heartbeat, Registration, RemoveAgent};
use crate::actors::registry::{DescribeAgent, ListAgents, RegisterAgent};
use crate::db::agents as agents_db;
use crate::domain::access::Principal;
use crate::domain::agent::{check_new_agent_id, valid_agent_id, AgentRef, Profile};
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::AgentView;

/// Most capabilities (or exclusions) one agent may declare.
const MAX_CAPABILITIES: usize = 64;
/// Most parallel tasks one agent may claim.
const MAX_CONCURRENT: i32 = 256;

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterBody {
    #[schema(required = true, value_type = String, min_length = 1, pattern = r"\S")]
    name: Option<String>,
    machine: Option<String>,
    #[schema(minimum = 1, maximum = 256)]
    max_concurrent: Option<i32>,
    #[schema(schema_with = super::openapi::capability_list)]
    capabilities: Option<Vec<String>>,
    #[schema(schema_with = super::openapi::capability_list)]
    excluded: Option<Vec<String>>,
}

impl RegisterBody {
    fn validate(self) -> Result<Registration, HubError> {
        let name = self
            .name
            .map(|n| n.trim_blank().to_string())
            .filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| HubError::bad_request("name is required"))?;
        let max_concurrent = self.max_concurrent.unwrap_or(1);
        if !(1..=MAX_CONCURRENT).contains(&max_concurrent) {
            return Err(HubError::bad_request(format!(
                "max_concurrent must be between 1 and {MAX_CONCURRENT}"
            )));
        }
        let capabilities = capability_list(
            "capabilities",
            self.capabilities.unwrap_or_else(|| vec!["research".into()]),
        )?;
        let excluded = capability_list("excluded", self.excluded.unwrap_or_default())?;
        Ok(Registration {
            name,
            machine: self.machine,
            profile: Profile {
                capabilities,
                excluded,
                max_concurrent,
            },
        })
    }
}

pub fn capability_list(field: &str, list: Vec<String>) -> Result<Vec<String>, HubError> {
    if list.len() > MAX_CAPABILITIES {
        return Err(HubError::bad_request(format!(
            "{field} may list at most {MAX_CAPABILITIES} entries"
        )));
    }
    let mut clean: Vec<String> = Vec::with_capacity(list.len());
    for cap in list {
        let cap = cap.trim_blank().to_string();
        if cap.is_empty() || cap.chars().count() > 64 {
            return Err(HubError::bad_request(format!(
                "{field} entries must be 1 to 64 characters"
            )));
        }
        if !clean.contains(&cap) {
            clean.push(cap);
        }
    }
    Ok(clean)
}

/// 403 unless the caller may act for this agent.
fn authorise_for(principal: &Principal, agent_id: &str) -> Result<(), HubError> {
    if principal.acts_for(agent_id) {
        Ok(())
    } else {
        Err(HubError::forbidden(
            "registering and heartbeating need the agents:register permission, for the token's own agent_id",
        ))
    }
}

pub fn no_agent(text: &str) -> HubError {
    HubError::not_found(format!("no agent {text:?}"))
}

/// The registered agent a path names (its numeric id or its agent_id), or a 404.
pub fn named_agent(hub: &Hub, text: &str) -> Result<(String, Addr<AgentActor>), HubError> {
    hub.directory
        .agent_by(&AgentRef::parse(text))
        .ok_or_else(|| no_agent(text))
}

/// The agent_id a path names: a known numeric id's agent, or a well-formed agent_id (which
/// need not be registered yet). 404 otherwise.
pub fn agent_id_of(hub: &Hub, text: &str) -> Result<String, HubError> {
    match AgentRef::parse(text) {
        AgentRef::Handle(handle) if valid_agent_id(&handle) => Ok(handle),
        AgentRef::Handle(_) => Err(no_agent(text)),
        id => hub
            .directory
            .agent_by(&id)
            .map(|(agent_id, _)| agent_id)
            .ok_or_else(|| no_agent(text)),
    }
}

/// The registered agent a path names, if the caller may see its private side (soul,
/// memory, inbox, pending work): another agent's is a 404, as its tasks are.
pub fn visible_agent(
    hub: &Hub,
    principal: &Principal,
    text: &str,
) -> Result<(String, Addr<AgentActor>), HubError> {
    named_agent(hub, text)
        .ok()
        .filter(|(agent_id, _)| principal.sees_agent(agent_id))
        .ok_or_else(|| no_agent(text))
}

/// What this caller may see of an agent: its soul only if it sees the agent's private side
/// (and never in lists), its session key only with every permission.
pub fn shown_to(mut view: AgentView, principal: &Principal, in_list: bool) -> AgentView {
    if in_list || !principal.sees_agent(&view.agent_id) {
        view.soul_content = None;
    }
    if !principal.is_admin() {
        view.session_key = None;
    }
    view
}

/// Adds `taskStats` (zero for an agent that never held a task).
pub async fn with_task_stats(
    hub: &Hub,
    mut views: Vec<AgentView>,
) -> Result<Vec<AgentView>, HubError> {
    let ids: Vec<String> = views.iter().map(|v| v.agent_id.clone()).collect();
    let mut stats = crate::db::read(&hub.reads, move |conn| {
        Ok(agents_db::task_stats(conn, &ids)?)
    })
    .await?;
    for view in &mut views {
        view.task_stats = Some(stats.remove(&view.agent_id).unwrap_or_default());
    }
    Ok(views)
}

/// One agent as the hub knows it, every field, without `taskStats` (a database read).
pub async fn agent_view(
    hub: &Hub,
    addr: Addr<AgentActor>,
    name: &str,
) -> Result<AgentView, HubError> {
    hub.registry
        .send(DescribeAgent(addr))
        .await??
        .ok_or_else(|| no_agent(name))
}

/// One agent as a response shows it to this caller, with its `taskStats`.
pub async fn agent_object(
    hub: &Hub,
    principal: &Principal,
    addr: Addr<AgentActor>,
    name: &str,
) -> Result<AgentView, HubError> {
    let view = shown_to(agent_view(hub, addr, name).await?, principal, false);
    let mut views = with_task_stats(hub, vec![view]).await?;
    Ok(views.remove(0))
}

fn registered(snapshot: &AgentSnapshot) -> serde_json::Value {
    json!({
        "ok": true,
        "id": snapshot.id,
        "agent_id": snapshot.agent_id,
        "name": snapshot.name,
        "machine": snapshot.machine,
        "capabilities": snapshot.profile.capabilities,
        "excluded": snapshot.profile.excluded,
        "max_concurrent": snapshot.profile.max_concurrent,
        "status": if snapshot.online { "online" } else { "offline" },
        "last_heartbeat": snapshot.last_heartbeat,
        "registered_at": snapshot.registered_at,
    })
}

#[utoipa::path(
    post,
    path = "/api/agents/{agent_id}/register",
    tag = "agents",
    params(("agent_id" = String, Path, description = "The agent id: letters, digits, '-', '_', '.', not only digits (a registered agent may also be named by its numeric id)", max_length = 64, pattern = r"^[A-Za-z0-9._-]*[A-Za-z._-][A-Za-z0-9._-]*$")),
    request_body = RegisterBody,
    responses((status = 200, description = "Register as this agent (agents:register, own agent_id)", body = Object))
)]
pub async fn register_agent(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<RegisterBody>,
) -> Result<HttpResponse, HubError> {
    let text = path.into_inner();
    // A known agent by either name; otherwise a new agent_id, which must not read as a number.
    let agent_id = match hub.directory.agent_by(&AgentRef::parse(&text)) {
        Some((agent_id, _)) => agent_id,
        None if !valid_agent_id(&text) => return Err(no_agent(&text)),
        None => {
            check_new_agent_id(&text).map_err(HubError::bad_request)?;
            text
        }
    };
    authorise_for(&caller.0, &agent_id)?;
    let registration = body.0.validate()?;
    let message = RegisterAgent {
        agent_id,
        registration,
        by: caller.0.label(),
    };
    let snapshot = hub.registry.send(message).await??;
    Ok(HttpResponse::Ok().json(registered(&snapshot)))
}

#[utoipa::path(
    post,
    path = "/api/agents/{agent_id}/heartbeat",
    tag = "agents",
    params(("agent_id" = String, Path, description = "The agent id")),
    responses((status = 200, description = "Heartbeat as this agent (agents:register, own agent_id)", body = Object))
)]
pub async fn heartbeat_agent(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    let agent_id = agent_id_of(&hub, &path.into_inner())?;
    authorise_for(&caller.0, &agent_id)?;
    let agent = hub
        .directory
        .agent(&agent_id)
        .ok_or_else(|| HubError::not_found(format!("agent {agent_id} is not registered")))?;
    agent.send(Heartbeat).await??;
    Ok(HttpResponse::Ok()
        .json(json!({ "ok": true, "success": true, "agent_id": agent_id, "status": "online" })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentListQuery {
    status: Option<String>,
    role: Option<String>,
    /// Page size (capped by the hub).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/agents",
    tag = "agents",
    params(AgentListQuery),
    responses((status = 200, description = "Agents (agents:read)", body = Object))
)]
pub async fn list_agents(
    hub: web::Data<Hub>,
    caller: Caller,
    query: Query<AgentListQuery>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:read")?;
    let query = query.0;
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = page_offset(query.offset)?;
    let list = hub
        .registry
        .send(ListAgents {
            status: query.status,
            role: query.role,
            offset: usize::try_from(offset).unwrap_or(usize::MAX),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
        .await??;
    let total = list.total;
    let page: Vec<_> = list
        .agents
        .into_iter()
        .map(|view| shown_to(view, &caller.0, true))
        .collect();
    let agents = with_task_stats(&hub, page).await?;
    // Serialized straight from the views: a page is up to 200 agents, too many to copy into
    // a JSON tree first.
    Ok(HttpResponse::Ok().json(AgentPage {
        agents,
        total,
        // Saturating: an offset near i64::MAX is a valid (empty) page, not an overflow.
        page: (offset / limit).saturating_add(1),
        limit,
    }))
}

#[derive(Serialize)]
struct AgentPage {
    agents: Vec<AgentView>,
    total: usize,
    page: i64,
    limit: i64,
}

#[utoipa::path(
    delete,
    path = "/api/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's numeric id or its agent_id")),
    responses((status = 200, description = "Remove an agent; its tasks go back to the queue (agents:delete)", body = Object))
)]
pub async fn delete_agent(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:delete")?;
    limit_changes(&hub, &caller.0)?;
    let (agent_id, agent) = named_agent(&hub, &path.into_inner())?;
    let revoked = agent
        .send(RemoveAgent {
            by: caller.0.label(),
        })
        .await??;
    if let Some(hash) = revoked {
        hub.credentials.revoke(&hash);
    }
    Ok(HttpResponse::Ok().json(json!({ "deleted": agent_id, "success": true })))
}

/// Counts one change through seed 004's agents API against the caller's per-minute budget
/// (the master token is never limited).
pub fn limit_changes(hub: &Hub, principal: &Principal) -> Result<(), HubError> {
    if principal.is_master() {
        return Ok(());
    }
    hub.agent_mutation_limiter
        .admit(&principal.label())
        .map_err(|seconds| {
            HubError::Throttled(
                "too many agent changes from this caller; slow down".into(),
                seconds,
            )
        })
}
