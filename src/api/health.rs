//! `GET /api/health`: minimal for anonymous callers (container health checks) and tokens
//! without `agents:read`; the agent status map, live task and subscriber counts for those
//! with it.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::auth::MaybeCaller;
use crate::actors::dispatcher::GetKillSwitch;
use crate::actors::registry::{CountSubscribers, ListAgents};
use crate::error::HubError;
use crate::startup::Hub;

#[utoipa::path(
    get,
    path = "/api/health",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Liveness; the agent map and counts with agents:read", body = Object))
)]
pub async fn get_health(
    hub: web::Data<Hub>,
    caller: MaybeCaller,
) -> Result<HttpResponse, HubError> {
    // The agent map and live work are for callers who may read agents.
    if !caller.0.is_some_and(|p| p.can("agents:read")) {
        return Ok(HttpResponse::Ok().json(json!({ "status": "ok" })));
    }
    let agents = hub.registry.send(ListAgents::all()).await??.agents;
    let subscribers = hub.registry.send(CountSubscribers).await?;
    let kill_switch = hub.dispatcher.send(GetKillSwitch).await?;
    let agents: BTreeMap<String, &str> = agents
        .iter()
        .map(|a| (a.agent_id.clone(), a.status))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "subscribers": subscribers,
        "agents": agents,
        "live_tasks": hub.directory.live_tasks(),
        "kill_switch": kill_switch.active,
    })))
}
