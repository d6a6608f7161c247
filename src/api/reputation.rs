//! Reputation (seed 000 section 02): UCB scores per capability, and the leaderboard.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::auth::Caller;
use crate::db::reputation::{self, ReputationRow};
use crate::domain::agent::valid_agent_id;
use crate::domain::reputation::Stats;
use crate::error::HubError;
use crate::startup::Hub;

/// Finished tasks per capability, all agents together (N of UCB1).
fn finished_per_capability(rows: &[ReputationRow]) -> HashMap<&str, u64> {
    let mut totals = HashMap::new();
    for row in rows {
        *totals.entry(row.capability.as_str()).or_default() += row.stats().finished();
    }
    totals
}

fn score(hub: &Hub, stats: &Stats, finished: u64) -> Option<f64> {
    let ucb = stats.ucb(
        (finished.max(1) as f64).ln(),
        hub.core.settings.reputation_exploration,
    );
    // JSON has no infinity: an agent with no history has no score yet (it is tried first).
    ucb.is_finite().then_some(ucb)
}

/// `GET /api/agents/{id}/reputation` (any valid token).
#[utoipa::path(
    get,
    path = "/api/agents/{agent_id}/reputation",
    tag = "agents",
    params(("agent_id" = String, Path, description = "The agent id")),
    responses((status = 200, description = "An agent's reputation per capability", body = Object))
)]
pub async fn get_reputation(
    hub: web::Data<Hub>,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, HubError> {
    let agent_id = path.into_inner();
    if !valid_agent_id(&agent_id) || hub.directory.agent(&agent_id).is_none() {
        return Err(HubError::not_found(format!("no agent {agent_id:?}")));
    }
    let rows = crate::db::read(&hub.reads, |conn| Ok(reputation::all(conn)?)).await?;
    let totals = finished_per_capability(&rows);
    let capabilities: Vec<Value> = rows
        .iter()
        .filter(|r| r.agent_id == agent_id)
        .map(|r| {
            let stats = r.stats();
            json!({
                "capability": r.capability,
                "successes": stats.successes,
                "failures": stats.failures,
                "verifications": stats.verifications,
                "mean": stats.mean(),
                "score": score(&hub, &stats, totals[r.capability.as_str()]),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "agent_id": agent_id, "capabilities": capabilities })))
}

/// `GET /api/admin/reputation/leaderboard` (master): agents ranked by success rate over
/// all capabilities, then by how much they have finished.
#[utoipa::path(
    get,
    path = "/api/admin/reputation/leaderboard",
    tag = "agents",
    responses((status = 200, description = "Reputation leaderboard (master)", body = Object))
)]
pub async fn get_leaderboard(
    hub: web::Data<Hub>,
    caller: Caller,
) -> Result<HttpResponse, HubError> {
    caller.0.require_master()?;
    let rows = crate::db::read(&hub.reads, |conn| Ok(reputation::all(conn)?)).await?;
    let mut per_agent: HashMap<&str, Stats> = HashMap::new();
    for row in &rows {
        let total = per_agent.entry(row.agent_id.as_str()).or_default();
        let stats = row.stats();
        total.successes += stats.successes;
        total.failures += stats.failures;
        total.verifications += stats.verifications;
    }
    let mut ranked: Vec<(&str, Stats)> = per_agent.into_iter().collect();
    ranked.sort_by(|(a_id, a), (b_id, b)| {
        b.mean()
            .total_cmp(&a.mean())
            .then(b.finished().cmp(&a.finished()))
            .then(a_id.cmp(b_id))
    });
    let leaderboard: Vec<Value> = ranked
        .iter()
        .enumerate()
        .map(|(i, (agent_id, stats))| {
            json!({
                "rank": i + 1,
                "agent_id": agent_id,
                "successes": stats.successes,
                "failures": stats.failures,
                "verifications": stats.verifications,
                "success_rate": stats.mean(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "count": leaderboard.len(), "leaderboard": leaderboard })))
}
