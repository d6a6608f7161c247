//! `GET /api/overview`: the dashboard's first screen in one read (agents by state, the
//! queue, tasks per minute over the last hour, today's cost against the cap, open
//! escalations, the kill switch), and `GET /api/me`: who the caller is and what it may do,
//! so a console shows only the controls its role allows. Counts only: no task is named.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{DurationRound, TimeDelta, Utc};
use serde_json::{json, Value};

use super::auth::{Caller, MaybeCaller};
use crate::actors::dispatcher::{GetBudget, GetKillSwitch};
use crate::actors::registry::AgentStatuses;
use crate::actors::scheduler::GetRetention;
use crate::db::overview;
use crate::domain::access::{role_of, ALL_PERMISSIONS};
use crate::error::HubError;
use crate::startup::Hub;

/// Minutes in the throughput series (the last hour, this minute included).
const MINUTES: i64 = 60;
/// Capabilities named in the queue breakdown; the rest are only counted in the depth.
const QUEUE_CAPABILITIES: i64 = 20;

#[utoipa::path(
    get,
    path = "/api/overview",
    tag = "operations",
    responses((status = 200, description = "Counts for the dashboard's overview (tasks:read or agents:read): the kill switch for all; task counts for those who see every task (open escalations with escalations:read); cost with admin:analytics; agents with agents:read", body = Object))
)]
pub async fn get_overview(hub: web::Data<Hub>, caller: Caller) -> Result<HttpResponse, HubError> {
    let principal = caller.0;
    let (tasks, agents) = (principal.can("tasks:read"), principal.can("agents:read"));
    if !tasks && !agents {
        return Err(HubError::forbidden(
            "this token lacks the tasks:read and agents:read permissions",
        ));
    }
    let mut view = json!({
        "kill_switch": hub.dispatcher.send(GetKillSwitch).await?,
    });
    // Counts over every task are for those who may see every task (an agent sees only its
    // own); the escalation count needs escalations:read, the money admin:analytics.
    if tasks && principal.confined_to().is_none() {
        view["tasks"] = task_counts(&hub, principal.can("escalations:read")).await?;
    }
    if principal.can("admin:analytics") {
        let budget = hub.dispatcher.send(GetBudget).await?;
        view["cost"] = json!({
            "today_usd": budget.counted_usd,
            "cap_usd": budget.cap_usd,
            "cap_reached": budget.cap_reached,
        });
        view["retention"] = json!(hub.scheduler.send(GetRetention).await?);
    }
    if agents {
        let mut by_status: BTreeMap<&str, usize> =
            ["online", "busy", "offline"].map(|s| (s, 0)).into();
        let list = hub.registry.send(AgentStatuses).await??;
        for agent in &list {
            *by_status.entry(agent.status).or_default() += 1;
        }
        view["agents"] = json!({ "total": list.len(), "by_status": by_status });
    }
    Ok(HttpResponse::Ok().json(view))
}

/// Tasks by status, the queue by capability, per-minute throughput and (when asked for)
/// open escalations.
async fn task_counts(hub: &Hub, escalations: bool) -> Result<Value, HubError> {
    let first_minute = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap_or_else(|_| Utc::now())
        - TimeDelta::minutes(MINUTES - 1);
    let since = crate::domain::iso(first_minute);
    let (by_status, queued, (created, finished), open_escalations, pending_approvals) =
        crate::db::read(&hub.reads, move |conn| {
            Ok((
                overview::tasks_by_status(conn)?,
                overview::queued_by_capability(conn, QUEUE_CAPABILITIES)?,
                overview::per_minute(conn, &since)?,
                if escalations {
                    Some(overview::open_escalations(conn)?)
                } else {
                    None
                },
                crate::db::approvals::count_pending(conn)?,
            ))
        })
        .await?;
    let minutes: Vec<Value> = (0..MINUTES)
        .map(|i| {
            let at = first_minute + TimeDelta::minutes(i);
            let key = at.format("%Y-%m-%dT%H:%M").to_string();
            json!({
                "minute": crate::domain::iso(at),
                "created": created.get(&key).copied().unwrap_or(0),
                "finished": finished.get(&key).copied().unwrap_or(0),
            })
        })
        .collect();
    let mut counts = json!({
        "total": by_status.values().sum::<i64>(),
        "by_status": by_status,
        "queue_depth": by_status.get("queued").copied().unwrap_or(0),
        "queued_by_capability": queued.into_iter().collect::<BTreeMap<_, _>>(),
        "per_minute": minutes,
        "pending_approvals": pending_approvals,
    });
    if let Some(open) = open_escalations {
        counts["open_escalations"] = json!(open);
    }
    Ok(counts)
}

/// Who the caller is. Without a credential the answer is `anonymous` with no permissions
/// (not a 401): a console asks this first, before anyone has signed in.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Who the caller is: name, how it signed in (master, session, token or anonymous), its role preset (if its permissions are one) and permissions", body = Object))
)]
pub async fn get_me(caller: MaybeCaller) -> Result<HttpResponse, HubError> {
    let Some(principal) = caller.0 else {
        return Ok(HttpResponse::Ok().json(json!({
            "name": null,
            "kind": "anonymous",
            "role": null,
            "permissions": [],
            "sees_all_tasks": false,
        })));
    };
    let permissions: Vec<&str> = ALL_PERMISSIONS
        .iter()
        .copied()
        .filter(|p| principal.can(p))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "name": principal.label(),
        "kind": principal.kind(),
        "role": role_of(&permissions),
        "permissions": permissions,
        "sees_all_tasks": principal.confined_to().is_none(),
    })))
}
