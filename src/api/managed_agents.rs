//! Operator-managed agents (seed 004, Mission Control's Agents API), merged into /api/agents:
//! create, change (by name or by id), read one, soul, wake, and sync from the agents file.
//! Agents made here are the same AgentActors as seed 000's self-registering workers. Every
//! change here is counted against the caller's per-minute budget.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use actix::Addr;

use super::agents::{
    agent_object, agent_view, capability_list, limit_changes, named_agent, no_agent, shown_to,
    visible_agent,
};
use super::auth::Caller;
use super::extract::{optional_json, text, Json};
use crate::actors::agent::{AgentActor, AgentChange, UpdateAgent, Wake};
use crate::actors::registry::CreateAgent;
use crate::agents_file::{self, AgentEntry};
use crate::db::models::NewAgentRow;
use crate::domain::access::Principal;
use crate::domain::agent::{check_new_agent_id, OperatorStatus};
use crate::domain::now_iso;
use crate::error::HubError;
use crate::startup::Hub;
use crate::views::AgentView;

const MAX_ROLE_CHARS: usize = 64;
/// Kept well under the body limit even for text of 4-byte characters sent \u-escaped.
const MAX_SOUL_CHARS: usize = 16_000;
const MAX_SESSION_KEY_CHARS: usize = 512;
const MAX_ACTIVITY_CHARS: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateAgentBody {
    /// The agent's unique handle (its agent_id): letters, digits, `-`, `_`, `.`, not only digits.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]*[A-Za-z._-][A-Za-z0-9._-]*$")]
    name: Option<String>,
    /// The template's role when one is chosen and this is left out.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 64, pattern = r"\S")]
    role: Option<String>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 512, pattern = r"\S")]
    session_key: Option<String>,
    #[schema(value_type = Option<String>, max_length = 16000)]
    soul_content: Option<String>,
    /// online, offline, busy, idle or error; idle, error and offline hold new work back.
    #[schema(value_type = Option<String>, pattern = "^(online|offline|busy|idle|error)$")]
    status: Option<String>,
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    /// The name of an agent template from the hub's config (`agent_templates`); 404 when
    /// there is none of that name.
    #[schema(value_type = Option<String>)]
    template: Option<String>,
    /// Merged over `config`.
    #[schema(value_type = Option<Object>)]
    gateway_config: Option<Value>,
    /// Also write the agent into the agents file.
    write_to_gateway: Option<bool>,
    /// What the agent serves (an m3shd addition; registering sets them too).
    #[schema(schema_with = super::openapi::capability_list)]
    capabilities: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 256)]
    max_concurrent: Option<i32>,
}

/// `PUT /api/agents`: the agent `name` names, and at least one field to change.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NamedUpdateBody {
    /// The agent's agent_id.
    #[schema(required = true, value_type = String, min_length = 1)]
    name: Option<String>,
    #[serde(flatten)]
    fields: UpdateAgentBody,
}

/// The fields both seed 004 updates take. In `PUT /api/agents/{id}`, a `name` other than the
/// agent's own is a 409: an agent's name is its handle in its tasks, tokens and memory.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateAgentBody {
    #[schema(value_type = Option<String>)]
    name: Option<String>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64, pattern = r"\S")]
    role: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^(online|offline|busy|idle|error)$")]
    status: Option<String>,
    #[schema(value_type = Option<String>, max_length = 500)]
    last_activity: Option<String>,
    /// Replaces the agent's config.
    #[schema(value_type = Object, required = false)]
    config: Option<Value>,
    /// Merged over the agent's config (after `config`, if both are given).
    #[schema(value_type = Object, required = false)]
    gateway_config: Option<Value>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 512, pattern = r"\S")]
    session_key: Option<String>,
    #[schema(value_type = Option<String>, max_length = 16000)]
    soul_content: Option<String>,
    #[schema(schema_with = super::openapi::capability_list)]
    capabilities: Option<Vec<String>>,
    /// Also write the agent into the agents file.
    write_to_gateway: Option<bool>,
}

fn object(field: &str, value: Option<Value>) -> Result<Option<Map<String, Value>>, HubError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(HubError::bad_request(format!("{field} must be an object"))),
    }
}

fn status(value: Option<String>) -> Result<Option<OperatorStatus>, HubError> {
    value
        .map(|s| {
            OperatorStatus::parse(&s).ok_or_else(|| {
                HubError::bad_request(format!(
                    "status must be {}, not {s:?}",
                    OperatorStatus::NAMES
                ))
            })
        })
        .transpose()
}

/// `base` with every key of `over` laid on top.
fn merged(mut base: Map<String, Value>, over: Option<Map<String, Value>>) -> Map<String, Value> {
    base.extend(over.unwrap_or_default());
    base
}

fn agents_file_of(hub: &Hub) -> Result<std::path::PathBuf, HubError> {
    agents_file::configured(&hub.core.settings.agents_file)
}

/// Writes the agent into the agents file; a failure is reported beside the success of the
/// change it follows (which is committed by then), as a warning.
async fn write_to_gateway(hub: &Hub, view: &AgentView) -> Option<String> {
    let entry = AgentEntry {
        name: view.agent_id.clone(),
        role: view.role.clone(),
        capabilities: Some(view.capabilities.clone()),
        config: view.config.as_object().cloned(),
        soul: view.soul_content.clone(),
    };
    let written = match agents_file_of(hub) {
        Ok(path) => web::block(move || agents_file::write(&path, entry))
            .await
            .map_err(HubError::internal)
            .and_then(|r| r),
        Err(error) => Err(error),
    };
    written
        .err()
        .map(|error| format!("the agent was saved but not written to the agents file: {error}"))
}

/// Refuses early (changing nothing) when `write_to_gateway` is asked for and the agents file
/// is not configured or cannot be read.
async fn check_agents_file(hub: &Hub, asked: Option<bool>) -> Result<(), HubError> {
    if asked != Some(true) {
        return Ok(());
    }
    let path = agents_file_of(hub)?;
    web::block(move || {
        if path.exists() {
            agents_file::read(&path).map(drop)
        } else {
            Ok(())
        }
    })
    .await
    .map_err(HubError::internal)?
}

/// A new agent as an operator (or the agents file) describes it.
struct NewAgent {
    name: String,
    role: Option<String>,
    capabilities: Vec<String>,
    max_concurrent: i32,
    config: Map<String, Value>,
    soul: Option<String>,
    session_key: Option<String>,
    status: Option<OperatorStatus>,
}

impl NewAgent {
    /// Its row: the soul and session key sealed, offline until the hub hears from it.
    fn row(self, hub: &Hub) -> NewAgentRow {
        let vault = &hub.core.vault;
        let now = now_iso();
        NewAgentRow {
            agent_id: self.name.clone(),
            name: self.name,
            machine: None,
            capabilities: json!(self.capabilities).to_string(),
            excluded: "[]".into(),
            max_concurrent: self.max_concurrent,
            status: "offline".into(),
            role: self.role,
            soul_content: self.soul.as_deref().map(|s| vault.seal(s)),
            config: Value::Object(self.config).to_string(),
            last_heartbeat: None,
            registered_at: now.clone(),
            updated_at: now,
            session_key: self.session_key.as_deref().map(|k| vault.seal(k)),
            operator_status: self.status.map(|s| s.as_str().to_string()),
            last_activity: None,
        }
    }
}

/// Stores a new agent (409 when its name is taken) and answers its actor's address.
async fn create(
    hub: &Hub,
    caller: &Principal,
    agent: NewAgent,
    detail: Value,
) -> Result<Addr<AgentActor>, HubError> {
    let name = agent.name.clone();
    let row = agent.row(hub);
    hub.registry
        .send(CreateAgent {
            row,
            by: caller.label(),
            detail,
            also: None,
        })
        .await??;
    hub.directory
        .agent(&name)
        .ok_or_else(|| HubError::not_found(format!("agent {name:?} was removed meanwhile")))
}

fn created(view: AgentView, warning: Option<String>) -> HttpResponse {
    let mut body = json!({ "agent": view });
    if let Some(warning) = warning {
        body["warning"] = json!(warning);
    }
    HttpResponse::Created().json(body)
}

#[utoipa::path(
    post,
    path = "/api/agents",
    tag = "agents",
    request_body = CreateAgentBody,
    responses(
        (status = 201, description = "Create an agent (agents:manage; seed 004)", body = Object),
        (status = 409, description = "The name is taken, or write_to_gateway asked for with no agents file configured", body = Object),
        (status = 422, description = "write_to_gateway asked for and the agents file is missing or malformed", body = Object),
    )
)]
pub async fn create_agent(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<CreateAgentBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:manage")?;
    let body = body.0;
    let name = text("name", body.name, 64, false)?
        .ok_or_else(|| HubError::bad_request("name is required"))?;
    check_new_agent_id(&name).map_err(HubError::bad_request)?;
    let template = match body.template.as_deref() {
        None => Default::default(),
        Some(wanted) => hub
            .core
            .settings
            .agent_templates
            .get(wanted)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = hub
                    .core
                    .settings
                    .agent_templates
                    .keys()
                    .map(String::as_str)
                    .collect();
                HubError::not_found(format!(
                    "no template {wanted:?} (known: {})",
                    known.join(", ")
                ))
            })?,
    };
    let role = text("role", body.role, MAX_ROLE_CHARS, false)?
        .or(template.role)
        .ok_or_else(|| HubError::bad_request("role is required"))?;
    let config = merged(
        merged(template.config, object("config", body.config)?),
        object("gateway_config", body.gateway_config)?,
    );
    let capabilities = capability_list(
        "capabilities",
        body.capabilities.unwrap_or(template.capabilities),
    )?;
    let max_concurrent = body.max_concurrent.unwrap_or(1);
    if !(1..=256).contains(&max_concurrent) {
        return Err(HubError::bad_request(
            "max_concurrent must be between 1 and 256",
        ));
    }
    let soul = text("soul_content", body.soul_content, MAX_SOUL_CHARS, true)?.or(template.soul);
    let session_key = text(
        "session_key",
        body.session_key,
        MAX_SESSION_KEY_CHARS,
        false,
    )?;
    let status = status(body.status)?;
    check_agents_file(&hub, body.write_to_gateway).await?;
    limit_changes(&hub, &caller.0)?;
    let detail = json!({ "template": body.template, "status": status.map(OperatorStatus::as_str) });
    let agent = NewAgent {
        name: name.clone(),
        role: Some(role),
        capabilities,
        max_concurrent,
        config,
        soul,
        session_key,
        status,
    };
    let addr = create(&hub, &caller.0, agent, detail).await?;
    let full = agent_object(&hub, &Principal::Master, addr, &name).await?;
    let warning = match body.write_to_gateway {
        Some(true) => write_to_gateway(&hub, &full).await,
        _ => None,
    };
    let view = shown_to(full, &caller.0, false);
    Ok(created(view, warning))
}

impl UpdateAgentBody {
    /// The change this body asks for, checked; `current` is the agent's config (for
    /// `gateway_config`).
    fn change(self, current: &Value) -> Result<AgentChange, HubError> {
        let config = object("config", self.config)?;
        let gateway = object("gateway_config", self.gateway_config)?;
        let config = match (config, gateway) {
            (None, None) => None,
            (config, gateway) => {
                let base =
                    config.unwrap_or_else(|| current.as_object().cloned().unwrap_or_default());
                Some(Value::Object(merged(base, gateway)))
            }
        };
        Ok(AgentChange {
            role: text("role", self.role, MAX_ROLE_CHARS, false)?,
            capabilities: self
                .capabilities
                .map(|c| capability_list("capabilities", c))
                .transpose()?,
            operator_status: status(self.status)?,
            state: None,
            config,
            session_key: text(
                "session_key",
                self.session_key,
                MAX_SESSION_KEY_CHARS,
                false,
            )?,
            soul: text("soul_content", self.soul_content, MAX_SOUL_CHARS, true)?,
            last_activity: text(
                "last_activity",
                self.last_activity,
                MAX_ACTIVITY_CHARS,
                true,
            )?,
        })
    }
}

/// What an update that changes nothing answers: seed 004's `PUT /api/agents` refuses it
/// (400), `PUT /api/agents/{id}` shows the agent as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nothing {
    Refused,
    Shown,
}

/// Applies an update body to an agent.
async fn update(
    hub: &Hub,
    caller: &Principal,
    (agent_id, addr): (String, Addr<AgentActor>),
    body: UpdateAgentBody,
    nothing: Nothing,
) -> Result<(AgentView, Option<String>), HubError> {
    if body.name.as_deref().is_some_and(|name| name != agent_id) {
        return Err(HubError::conflict(
            "name cannot change: it is the agent's handle in its tasks, tokens and memory",
        ));
    }
    let write = body.write_to_gateway;
    check_agents_file(hub, write).await?;
    let current = agent_view(hub, addr.clone(), &agent_id).await?;
    let change = body.change(&current.config)?;
    // `write_to_gateway` alone exports the agent as it is.
    if change.is_empty() && write != Some(true) && nothing == Nothing::Refused {
        return Err(HubError::bad_request("no fields to update"));
    }
    limit_changes(hub, caller)?;
    if !change.is_empty() {
        let by = caller.label();
        addr.send(UpdateAgent {
            change,
            by,
            audit: "agent.update",
        })
        .await??;
    }
    let full = agent_object(hub, &Principal::Master, addr, &agent_id).await?;
    let warning = match write {
        Some(true) => write_to_gateway(hub, &full).await,
        _ => None,
    };
    Ok((shown_to(full, caller, false), warning))
}

#[utoipa::path(
    put,
    path = "/api/agents",
    tag = "agents",
    request_body = NamedUpdateBody,
    responses((status = 200, description = "Update the agent `name` names (agents:manage; seed 004); 400 when nothing would change", body = Object))
)]
pub async fn update_agent_by_name(
    hub: web::Data<Hub>,
    caller: Caller,
    body: Json<NamedUpdateBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:manage")?;
    let body = body.0;
    let name = body
        .name
        .ok_or_else(|| HubError::bad_request("name is required"))?;
    let addr = hub.directory.agent(&name).ok_or_else(|| no_agent(&name))?;
    let (_, warning) = update(&hub, &caller.0, (name, addr), body.fields, Nothing::Refused).await?;
    Ok(HttpResponse::Ok().json(json!({ "success": true, "warning": warning })))
}

#[utoipa::path(
    put,
    path = "/api/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's numeric id or its agent_id")),
    request_body = UpdateAgentBody,
    responses((status = 200, description = "Update an agent (agents:manage; seed 004)", body = Object))
)]
pub async fn update_agent(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<UpdateAgentBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:manage")?;
    let agent = named_agent(&hub, &path.into_inner())?;
    let (view, warning) = update(&hub, &caller.0, agent, body.0, Nothing::Shown).await?;
    Ok(HttpResponse::Ok().json(json!({ "agent": view, "warning": warning })))
}

#[utoipa::path(
    get,
    path = "/api/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's numeric id or its agent_id")),
    responses((status = 200, description = "One agent (agents:read)", body = Object))
)]
pub async fn get_agent(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:read")?;
    let path = path.into_inner();
    let (_, addr) = named_agent(&hub, &path)?;
    let view = agent_object(&hub, &caller.0, addr, &path).await?;
    Ok(HttpResponse::Ok().json(json!({ "agent": view })))
}

#[utoipa::path(
    get,
    path = "/api/agents/{id}/soul",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's numeric id or its agent_id")),
    responses((status = 200, description = "The agent's soul (agents:read; an agent's own token, or an overseer)", body = Object))
)]
pub async fn get_soul(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:read")?;
    let path = path.into_inner();
    let (agent_id, addr) = visible_agent(&hub, &caller.0, &path)?;
    let view = agent_object(&hub, &caller.0, addr, &path).await?;
    Ok(HttpResponse::Ok().json(json!({
        "agent_id": agent_id,
        "soul_content": view.soul_content,
        "updated_at": view.updated_at,
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SoulBody {
    #[schema(required = true, value_type = String, max_length = 16000)]
    soul_content: Option<String>,
}

#[utoipa::path(
    put,
    path = "/api/agents/{id}/soul",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's numeric id or its agent_id")),
    request_body = SoulBody,
    responses((status = 200, description = "Replace the agent's soul (agents:manage)", body = Object))
)]
pub async fn put_soul(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: Json<SoulBody>,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:manage")?;
    let path = path.into_inner();
    let (_, addr) = visible_agent(&hub, &caller.0, &path)?;
    let soul = text("soul_content", body.0.soul_content, MAX_SOUL_CHARS, true)?
        .ok_or_else(|| HubError::bad_request("soul_content is required"))?;
    limit_changes(&hub, &caller.0)?;
    let change = AgentChange {
        soul: Some(soul),
        ..AgentChange::default()
    };
    let snapshot = addr
        .send(UpdateAgent {
            change,
            by: caller.0.label(),
            audit: "agent.soul",
        })
        .await??;
    Ok(HttpResponse::Ok().json(json!({ "success": true, "updated_at": snapshot.updated_at })))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct WakeBody {
    /// Why; it reaches the agent as a wake notice in its inbox.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500, pattern = r"\S")]
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/agents/{id}/wake",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's numeric id or its agent_id")),
    request_body = Option<WakeBody>,
    responses((status = 200, description = "Lift an operator's hold (idle, error, offline) and leave a wake notice in the agent's inbox (agents:manage)", body = Object))
)]
pub async fn wake_agent(
    hub: web::Data<Hub>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:manage")?;
    let path = path.into_inner();
    let (_, addr) = visible_agent(&hub, &caller.0, &path)?;
    let body: WakeBody = optional_json(&body)?;
    let reason = text("reason", body.reason, MAX_ACTIVITY_CHARS, false)?
        .unwrap_or_else(|| "Woken by an operator: check your assigned tasks and messages.".into());
    limit_changes(&hub, &caller.0)?;
    addr.send(Wake {
        reason,
        by: caller.0.label(),
    })
    .await??;
    let view = agent_object(&hub, &caller.0, addr, &path).await?;
    Ok(HttpResponse::Ok().json(json!({ "success": true, "agent": view })))
}

#[utoipa::path(
    post,
    path = "/api/agents/sync",
    tag = "agents",
    responses(
        (status = 200, description = "Create and update agents from the agents file (agents:manage)", body = Object),
        (status = 409, description = "No agents file is configured", body = Object),
        (status = 422, description = "The agents file is missing or malformed (the error names the file and the line)", body = Object),
    )
)]
pub async fn sync_agents(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    caller.0.require("agents:manage")?;
    let path = agents_file_of(&hub)?;
    let entries = web::block(move || agents_file::read(&path))
        .await
        .map_err(HubError::internal)??;
    // Every entry is checked before anything changes.
    let mut planned = Vec::with_capacity(entries.len());
    for entry in entries {
        check_new_agent_id(&entry.name).map_err(HubError::Unprocessable)?;
        let capabilities = entry
            .capabilities
            .clone()
            .map(|list| capability_list("capabilities", list))
            .transpose()
            .map_err(|e| HubError::Unprocessable(format!("agent {:?}: {e}", entry.name)))?;
        planned.push((entry, capabilities));
    }
    limit_changes(&hub, &caller.0)?;
    let (mut created, mut updated) = (0, 0);
    let synced = planned.len();
    for (entry, capabilities) in planned {
        let existing = hub.directory.agent(&entry.name);
        match existing {
            None => {
                let agent = NewAgent {
                    name: entry.name,
                    role: entry.role,
                    capabilities: capabilities.unwrap_or_default(),
                    max_concurrent: 1,
                    config: entry.config.unwrap_or_default(),
                    soul: entry.soul,
                    session_key: None,
                    status: None,
                };
                create(&hub, &caller.0, agent, json!({ "source": "agents file" })).await?;
                created += 1;
            }
            Some(addr) => {
                let current = agent_view(&hub, addr.clone(), &entry.name).await?;
                let change = AgentChange {
                    role: entry.role.filter(|r| current.role.as_ref() != Some(r)),
                    capabilities: capabilities.filter(|c| *c != current.capabilities),
                    config: entry
                        .config
                        .map(Value::Object)
                        .filter(|c| *c != current.config),
                    soul: entry
                        .soul
                        .filter(|s| current.soul_content.as_ref() != Some(s)),
                    ..AgentChange::default()
                };
                if !change.is_empty() {
                    addr.send(UpdateAgent {
                        change,
                        by: caller.0.label(),
                        audit: "agent.sync",
                    })
                    .await??;
                    updated += 1;
                }
            }
        }
    }
    Ok(
        HttpResponse::Ok()
            .json(json!({ "synced": synced, "created": created, "updated": updated })),
    )
}
