//! `GET /api/health`: minimal for anonymous callers (container health checks); the
//! answering process's role (leader or follower) and epoch for any caller signed in; the
//! agent status map, live task and subscriber counts for those with `agents:read`.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::auth::MaybeCaller;
use crate::actors::dispatcher::GetKillSwitch;
use crate::actors::registry::{AgentStatuses, CountSubscribers};
use crate::error::HubError;
use crate::startup::Hub;

#[utoipa::path(
    get,
    path = "/api/health",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Liveness. Signed in: also `role` (`leader`, or `follower` for a process that forwards to the leader of its PostgreSQL database, named in `leader`) and `epoch` (the leadership's number; null on SQLite). With agents:read: the live-event `subscribers` of this process, and on the leader the agent map, `live_tasks` and `kill_switch`", body = Object))
)]
pub async fn get_health(
    hub: web::Data<Hub>,
    caller: MaybeCaller,
) -> Result<HttpResponse, HubError> {
    let Some(caller) = caller.0 else {
        return Ok(HttpResponse::Ok().json(json!({ "status": "ok" })));
    };
    let cluster = &hub.cluster;
    let mut health = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "role": cluster.role(),
        "epoch": cluster.epoch(),
    });
    if !cluster.leads() {
        health["leader"] = json!(cluster.leader(&hub.reads, false).await);
    }
    // The agent map and live work are for callers who may read agents.
    if !caller.can("agents:read") {
        return Ok(HttpResponse::Ok().json(health));
    }
    health["subscribers"] = json!(hub.registry.send(CountSubscribers).await?);
    if !cluster.leads() {
        // A follower holds no agents or tasks: the leader answers for those.
        return Ok(HttpResponse::Ok().json(health));
    }
    let agents = hub.registry.send(AgentStatuses).await??;
    let kill_switch = hub.dispatcher.send(GetKillSwitch).await?;
    let agents: BTreeMap<&str, &str> = agents
        .iter()
        .map(|a| (a.agent_id.as_str(), a.status))
        .collect();
    health["agents"] = json!(agents);
    health["live_tasks"] = json!(hub.directory.live_tasks());
    health["kill_switch"] = json!(kill_switch.active);
    Ok(HttpResponse::Ok().json(health))
}

#[utoipa::path(
    get,
    path = "/api/version",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The hub's version, to anyone", body = Object))
)]
pub async fn get_version() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

#[utoipa::path(
    get,
    path = "/api/system/status",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Whether the hub runs, how long it has, whether setup is finished and whether data is encrypted at rest: nothing an attacker could use (no names, no counts)", body = Object))
)]
pub async fn get_system_status(hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let admins = crate::db::read(&hub.reads, |conn| {
        Ok(crate::db::queries::enabled_admins(conn)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "running": true,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": hub.started.elapsed().as_secs(),
        // Nobody but the master token can sign in, or that token is still the generated one.
        "setup_required": admins == 0 || hub.generated_master,
        "at_rest": { "enabled": true, "provider": "fernet" },
    })))
}
