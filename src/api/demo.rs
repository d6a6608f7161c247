//! Demo mode: read-only synthetic agents and tasks under `/api/demo/*` for showing the
//! dashboard without a real mesh. Off by default, when every demo path is a 404. Nothing
//! here touches the database.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::error::HubError;
use crate::startup::Hub;

fn enabled(hub: &Hub) -> Result<(), HubError> {
    if hub.core.settings.demo_enabled {
        Ok(())
    } else {
        Err(HubError::not_found("demo mode is off"))
    }
}

const AGENTS: &[(&str, &str, &str, &[&str])] = &[
    (
        "rex",
        "rex-mac-mini",
        "online",
        &["research", "code_write", "git"],
    ),
    ("crucible", "crucible-vps", "busy", &["deploy", "docker"]),
    (
        "archon",
        "archon-desktop",
        "online",
        &["research", "web_search"],
    ),
    (
        "pi-node-01",
        "raspberrypi5",
        "offline",
        &["research", "file_ops"],
    ),
];

const TASKS: &[(i32, &str, &str, &str, &str)] = &[
    (1, "Summarize README", "research", "rex", "done"),
    (
        2,
        "Review PR #42: Add caching layer",
        "code_write",
        "rex",
        "running",
    ),
    (3, "Deploy staging", "deploy", "crucible", "running"),
    (
        4,
        "Alert: my-service is DOWN",
        "research",
        "archon",
        "assigned",
    ),
    (5, "Weekly dependency audit", "research", "", "queued"),
];

fn demo_agents() -> Vec<Value> {
    AGENTS
        .iter()
        .map(|(id, machine, status, caps)| json!({ "agent_id": id, "name": id, "machine": machine, "status": status, "capabilities": caps, "max_concurrent": 2 }))
        .collect()
}

fn demo_tasks() -> Vec<Value> {
    TASKS
        .iter()
        .map(|(id, title, capability, agent, status)| {
            json!({ "id": id, "title": title, "required_capability": capability, "assigned_to": (!agent.is_empty()).then_some(agent), "status": status, "demo": true })
        })
        .collect()
}

#[utoipa::path(
    get,
    path = "/api/demo/agents",
    tag = "demo",
    security(()),
    responses((status = 200, description = "Synthetic agents (demo mode only)", body = Object))
)]
pub async fn demo_agents_list(hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    enabled(&hub)?;
    let agents = demo_agents();
    Ok(HttpResponse::Ok().json(json!({ "agents": agents, "total": agents.len() })))
}

#[utoipa::path(
    get,
    path = "/api/demo/tasks",
    tag = "demo",
    security(()),
    responses((status = 200, description = "Synthetic tasks (demo mode only)", body = Object))
)]
pub async fn demo_tasks_list(hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    enabled(&hub)?;
    let tasks = demo_tasks();
    Ok(HttpResponse::Ok().json(json!({ "tasks": tasks, "count": tasks.len() })))
}

#[utoipa::path(
    get,
    path = "/api/demo/health",
    tag = "demo",
    security(()),
    responses((status = 200, description = "Synthetic health (demo mode only)", body = Object))
)]
pub async fn demo_health(hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    enabled(&hub)?;
    let agents: serde_json::Map<String, Value> = AGENTS
        .iter()
        .map(|(id, _, status, _)| (id.to_string(), json!(status)))
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({ "status": "ok", "demo": true, "subscribers": 0, "agents": agents })))
}
